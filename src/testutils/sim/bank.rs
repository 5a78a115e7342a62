//! The bank workload: callers move money between a few accounts in transactions of every kind
//! (optimistic, pessimistic, async commit, 1PC) and read every account in one snapshot; each
//! read must sum to the total the accounts were created with, with no negative balance
//! ([`crate::testutils::check::bank`]). A transaction torn by a fault (one account debited,
//! the other not credited) changes the total.

use std::cell::Cell;
use std::time::Duration;

use super::now;
use super::workload::{failed, transact, verdict, Caller, Env, Judge, Kind, Ops, TxnWorkload};
use crate::testutils::check::bank::{self, Action};
use crate::testutils::check::Status;
use crate::Error;

/// Accounts.
pub(super) const ACCOUNTS: u64 = 5;
/// Each account's balance when created.
const INITIAL: i64 = 100;

/// The key of account `i`.
pub(super) fn key_name(i: u64) -> String {
    format!("bank/{i}")
}

/// The bank's history.
pub(super) struct Bank {
    env: Env,
    ops: Ops<Action>,
    /// Whether the accounts exist.
    created: Cell<bool>,
}

impl Bank {
    pub(super) fn new(env: &Env) -> Self {
        Bank {
            env: env.clone(),
            ops: Ops::new(),
            created: Cell::new(false),
        }
    }

    async fn transfer(&self, caller: &mut Caller) {
        let rng = &mut caller.rng;
        let kind = Kind::draw(rng);
        let from = rng.below(ACCOUNTS);
        let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
        let amount = 1 + rng.below(20) as i64;
        let cancel = caller.env.cancel_after(rng);
        let invoke = now();
        let moved = transact(caller, kind, async |txn| {
            let keys = [key_name(from), key_name(to)];
            let pairs = if kind == Kind::Pessimistic {
                txn.batch_get_for_update(keys).await?
            } else {
                txn.batch_get(keys).await?
            };
            let balance = |account| {
                pairs
                    .iter()
                    .find(|p| p.key == key_name(account).into())
                    .map_or(i64::MIN, |p| decode(&p.value))
            };
            let (debited, credited) = (balance(from), balance(to));
            if debited < amount || credited == i64::MIN {
                return Ok(false);
            }
            txn.put(key_name(from), encode(debited - amount)).await?;
            txn.put(key_name(to), encode(credited + amount)).await?;
            Ok(true)
        });
        let status = match caller.env.within(cancel, moved).await {
            Some(Ok(true)) => Status::Ok,
            // Nothing to move: nothing written.
            Some(Ok(false)) => Status::Failed,
            Some(Err(e)) => failed(&e),
            None => Status::Unknown,
        };
        let action = Action::Transfer {
            from: from as usize,
            to: to as usize,
            amount,
        };
        self.ops.push(caller, action, invoke, status);
    }
}

impl Judge for Bank {
    fn cancelled(&self) -> usize {
        self.env.cancelled()
    }

    fn judge(&self) -> (usize, Result<String, String>) {
        let history = bank::History {
            total: INITIAL * ACCOUNTS as i64,
            ops: self.ops.all(),
        };
        (history.ops.len(), verdict(bank::check(&history)))
    }
}

impl TxnWorkload for Bank {
    async fn set_up(&self, caller: &mut Caller) {
        while !caller.env.over() {
            let create = transact(caller, Kind::Optimistic, async |txn| {
                for i in 0..ACCOUNTS {
                    txn.insert(key_name(i), encode(INITIAL)).await?;
                }
                Ok(())
            });
            match create.await {
                // Already there: an attempt whose commit was undetermined landed.
                Ok(()) | Err(Error::KeyExists(_)) => {
                    caller.env.record("bank: accounts created");
                    self.created.set(true);
                    return;
                }
                Err(e) => log::debug!("sim bank set-up: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn ready(&self) -> bool {
        self.created.get()
    }

    async fn step(&self, caller: &mut Caller) {
        if caller.rng.below(3) == 0 {
            self.ops.read(caller, read_all, Action::Read).await;
        } else {
            self.transfer(caller).await;
        }
    }

    /// A last read once every lock left by an undetermined commit can be resolved.
    async fn finish(&self, caller: &mut Caller) {
        self.ops.final_read(caller, read_all, Action::Read).await;
    }
}

/// Every balance, in one snapshot at a fresh timestamp.
async fn read_all(caller: &Caller) -> crate::Result<Vec<Option<i64>>> {
    let (snapshot, _held) = caller.env.snapshot(&caller.client).await?;
    let pairs = snapshot.batch_get((0..ACCOUNTS).map(key_name)).await?;
    Ok((0..ACCOUNTS)
        .map(|i| {
            let key = key_name(i).into();
            pairs
                .iter()
                .find(|p| p.key == key)
                .map(|p| decode(&p.value))
        })
        .collect())
}

fn encode(balance: i64) -> Vec<u8> {
    balance.to_be_bytes().to_vec()
}

/// A balance read back; anything not written by this workload reads as `i64::MIN`, which
/// breaks the total.
fn decode(bytes: &[u8]) -> i64 {
    bytes.try_into().map_or(i64::MIN, i64::from_be_bytes)
}
