//! The list-append workload (Elle's): transactions of every kind read lists and append unique
//! values to them; the history must show none of the anomalies snapshot isolation forbids
//! ([`crate::testutils::check::list_append`]).
//!
//! A key's list is its value: the appended values, 8 bytes each. An append reads the list in
//! the transaction and writes it back longer; a pessimistic transaction locks every key it
//! touches as it reads it (reads of locked keys are current, so every read must be one, or
//! the transaction would mix two snapshots).

use std::cell::RefCell;

use super::now;
use super::workload::{failed, transact, verdict, Caller, Env, Judge, Kind, TxnWorkload};
use crate::testutils::check::list_append::{self, Micro, Txn};
use crate::testutils::check::Status;
use crate::Transaction;

/// Keys.
pub(super) const KEYS: u64 = 8;
/// The most keys one transaction touches.
const MAX_MICROS: u64 = 4;

/// The key of list `k`.
pub(super) fn key_name(k: u64) -> String {
    format!("la/{k}")
}

/// The transactions recorded.
pub(super) struct ListAppend {
    env: Env,
    txns: RefCell<Vec<Txn>>,
}

impl ListAppend {
    pub(super) fn new(env: &Env) -> Self {
        ListAppend {
            env: env.clone(),
            txns: RefCell::default(),
        }
    }

    fn push(&self, caller: &Caller, txn: Txn) {
        caller.env.record(&format!(
            "{} {:?} {} [{}, {}]",
            caller.name, txn.micros, txn.status, txn.invoke, txn.complete
        ));
        self.txns.borrow_mut().push(txn);
    }
}

impl Judge for ListAppend {
    fn cancelled(&self) -> usize {
        self.env.cancelled()
    }

    fn judge(&self) -> (usize, Result<String, String>) {
        let history = list_append::History {
            txns: self.txns.borrow().clone(),
        };
        (history.txns.len(), verdict(list_append::check(&history)))
    }
}

impl TxnWorkload for ListAppend {
    async fn step(&self, caller: &mut Caller) {
        let kind = Kind::draw(&mut caller.rng);
        let mut keys: Vec<u64> = (0..KEYS).collect();
        let mut micros = Vec::new();
        for _ in 0..1 + caller.rng.below(MAX_MICROS) {
            // Distinct keys: a transaction does not read its own appends.
            let key = keys.swap_remove(caller.rng.below(keys.len() as u64) as usize);
            micros.push(match caller.rng.below(2) {
                0 => Micro::Read { key, list: vec![] },
                _ => Micro::Append {
                    key,
                    value: caller.next_value(),
                },
            });
        }
        let cancel = caller.env.cancel_after(&mut caller.rng);
        let invoke = now();
        let run = transact(caller, kind, async |txn| {
            for micro in &mut micros {
                apply(txn, kind, micro).await?;
            }
            Ok(())
        });
        let status = match caller.env.within(cancel, run).await {
            Some(Ok(())) => Status::Ok,
            Some(Err(e)) => failed(&e),
            None => Status::Unknown,
        };
        let txn = Txn {
            micros,
            invoke: invoke.as_nanos() as u64,
            complete: now().as_nanos() as u64,
            status,
        };
        self.push(caller, txn);
    }

    /// Reads every list once the faults are healed, so that the last versions are known.
    async fn finish(&self, caller: &mut Caller) {
        let invoke = now();
        let read = caller
            .env
            .settle(async || {
                let (snapshot, _held) = caller.env.snapshot(&caller.client).await?;
                let pairs = snapshot.batch_get((0..KEYS).map(key_name)).await?;
                Ok((0..KEYS)
                    .map(|key| {
                        let name = key_name(key).into();
                        let list = pairs.iter().find(|p| p.key == name);
                        Micro::Read {
                            key,
                            list: list.map_or_else(Vec::new, |p| decode(&p.value)),
                        }
                    })
                    .collect())
            })
            .await;
        if let Some(micros) = read {
            let txn = Txn {
                micros,
                invoke: invoke.as_nanos() as u64,
                complete: now().as_nanos() as u64,
                status: Status::Ok,
            };
            self.push(caller, txn);
        }
    }
}

/// Runs one step in `txn`: reads the key's list (locking it in a pessimistic transaction),
/// and appends to it.
async fn apply(txn: &mut Transaction, kind: Kind, micro: &mut Micro) -> crate::Result<()> {
    let key = match micro {
        Micro::Read { key, .. } | Micro::Append { key, .. } => key_name(*key),
    };
    let current = if kind == Kind::Pessimistic {
        txn.get_for_update(key.clone()).await?
    } else {
        txn.get(key.clone()).await?
    };
    match micro {
        Micro::Read { list, .. } => *list = current.as_deref().map_or_else(Vec::new, decode),
        Micro::Append { value, .. } => {
            let mut bytes = current.unwrap_or_default();
            bytes.extend_from_slice(&value.to_be_bytes());
            txn.put(key, bytes).await?;
        }
    }
    Ok(())
}

/// A list read back; a length that is not a multiple of 8 ends in `u64::MAX`, a value no
/// transaction appended.
fn decode(bytes: &[u8]) -> Vec<u64> {
    let mut chunks = bytes.chunks_exact(8);
    let mut list: Vec<u64> = chunks
        .by_ref()
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0xff; 8])))
        .collect();
    if !chunks.remainder().is_empty() {
        list.push(u64::MAX);
    }
    list
}
