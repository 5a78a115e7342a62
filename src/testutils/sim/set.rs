//! The set workload: callers insert unique keys in transactions of every kind and scan them
//! all in snapshots; every acknowledged insert must be in the final scan, and no scan may show
//! a key nobody inserted ([`crate::testutils::check::set`]).

use futures::TryStreamExt;

use super::now;
use super::workload::{failed, transact, verdict, Caller, Env, Judge, Kind, Ops, TxnWorkload};
use crate::testutils::check::set::{self, Action};
use crate::testutils::check::Status;
use crate::Key;

/// Where the elements' keys start.
const PREFIX: &str = "set/";

/// The key of `element`.
pub(super) fn key_name(element: u64) -> String {
    format!("{PREFIX}{element:016x}")
}

/// The set's history.
pub(super) struct Set {
    env: Env,
    ops: Ops<Action>,
}

impl Set {
    pub(super) fn new(env: &Env) -> Self {
        Set {
            env: env.clone(),
            ops: Ops::new(),
        }
    }
}

impl Judge for Set {
    fn cancelled(&self) -> usize {
        self.env.cancelled()
    }

    fn judge(&self) -> (usize, Result<String, String>) {
        let history = set::History {
            ops: self.ops.all(),
        };
        (history.ops.len(), verdict(set::check(&history)))
    }
}

impl TxnWorkload for Set {
    async fn step(&self, caller: &mut Caller) {
        if caller.rng.below(3) == 0 {
            self.ops.read(caller, read_all, Action::Read).await;
            return;
        }
        let kind = Kind::draw(&mut caller.rng);
        let element = caller.next_value();
        let cancel = caller.env.cancel_after(&mut caller.rng);
        let invoke = now();
        let add = transact(caller, kind, async |txn| {
            txn.insert(key_name(element), element.to_be_bytes().to_vec())
                .await
        });
        let status = match caller.env.within(cancel, add).await {
            Some(Ok(())) => Status::Ok,
            Some(Err(e)) => failed(&e),
            None => Status::Unknown,
        };
        self.ops.push(caller, Action::Add(element), invoke, status);
    }

    /// The final read, once the faults are healed and every add has returned.
    async fn finish(&self, caller: &mut Caller) {
        self.ops.final_read(caller, read_all, Action::Read).await;
    }
}

/// Every element, scanned page by page in one snapshot at a fresh timestamp.
async fn read_all(caller: &Caller) -> crate::Result<Vec<u64>> {
    let (snapshot, _held) = caller.env.snapshot(&caller.client).await?;
    let keys: Vec<Key> = snapshot
        .scan_keys_stream(PREFIX.to_owned().."set0".to_owned())
        .try_collect()
        .await?;
    Ok(keys
        .iter()
        .map(|key| {
            let key: &[u8] = key.as_ref();
            std::str::from_utf8(&key[PREFIX.len().min(key.len())..])
                .ok()
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .unwrap_or(u64::MAX)
        })
        .collect())
}
