//! Pessimistic locking (spec 4.13, 4.14): lock acquisition with waiting, wake-up on release,
//! lock-wait timeouts and deadlock detection; pessimistic rollback.

// Key errors become protobuf messages at once; boxing them would only add noise here.
#![allow(clippy::result_large_err)]

use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::{Exec, MockTikv, Waiting};
use crate::proto::{deadlock, kvrpcpb};
use crate::testutils::cluster::{DataKind, Region};
use crate::testutils::mvcc::{conflict, KeyErr, Lock, LockType, TxnStatus};

/// TiKV's default `pessimistic-txn.wait-for-lock-timeout`.
const DEFAULT_WAIT: Duration = Duration::from_millis(1000);

/// A stand-in for TiKV's key hash (farmhash there; only compared with itself here).
fn key_hash(key: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

fn failed(e: KeyErr) -> Exec<kvrpcpb::PessimisticLockResponse> {
    Exec::Done(kvrpcpb::PessimisticLockResponse {
        errors: vec![e.into_proto()],
        ..Default::default()
    })
}

impl MockTikv {
    pub(super) fn kv_pessimistic_lock(
        &self,
        req: &kvrpcpb::PessimisticLockRequest,
        region: &Region,
        waiting: &mut Waiting,
    ) -> Exec<kvrpcpb::PessimisticLockResponse> {
        if let Some(outside) = self.outside_region(region, req.mutations.iter().map(|m| &m.key[..]))
        {
            return Exec::Done(outside);
        }
        let start = req.start_version;
        let mut mvcc = self.node.store_mvcc(self.store);
        let mut staged: Vec<(Vec<u8>, Lock)> = Vec::new();
        let mut values = Vec::new();
        let mut not_founds = Vec::new();
        for m in &req.mutations {
            let key = &m.key;
            if req.lock_only_if_exists && !req.return_values {
                return failed(KeyErr::Abort(format!(
                    "Error(LockIfExistsFailed {{ start_ts: {start}, key: {key:?} }})"
                )));
            }
            let reading = m.assertion == kvrpcpb::Assertion::NotExist as i32
                || req.return_values
                || req.check_existence;
            if reading {
                mvcc.observe_ts(req.for_update_ts);
            }
            // Woken up: the lock waited for is gone; normal mode answers a write conflict.
            if let Some((waited_key, holder)) = &waiting.on {
                let still_held = mvcc.locks.get(waited_key).is_some_and(|l| l.ts == *holder);
                if waiting.woken && !still_held && waited_key == key {
                    let commit_ts = match mvcc.txn_status(key, *holder) {
                        Some(TxnStatus::Committed(c)) => c,
                        _ => 0,
                    };
                    let c = conflict(
                        key,
                        start,
                        *holder,
                        commit_ts,
                        &req.primary_lock,
                        kvrpcpb::write_conflict::Reason::PessimisticRetry,
                    );
                    return failed(KeyErr::Conflict(c));
                }
            }
            if let Some(lock) = mvcc.locks.get(key).cloned() {
                if lock.ts != start {
                    if req.wait_timeout < 0 || waiting.timed_out {
                        return failed(KeyErr::Locked(lock.info(key)));
                    }
                    if !req.is_first_lock && waiting.edge_of.is_none() {
                        if let Err(chain) = self.node.wait_for(start, lock.ts, key) {
                            let wait_chain: Vec<deadlock::WaitForEntry> = chain
                                .iter()
                                .map(|(txn, wait_for_txn, k)| deadlock::WaitForEntry {
                                    txn: *txn,
                                    wait_for_txn: *wait_for_txn,
                                    key_hash: key_hash(k),
                                    key: k.clone(),
                                    resource_group_tag: req
                                        .context
                                        .as_ref()
                                        .map(|c| c.resource_group_tag.clone())
                                        .unwrap_or_default(),
                                    ..Default::default()
                                })
                                .collect();
                            let held_key = chain
                                .iter()
                                .rev()
                                .nth(1)
                                .map(|(_, _, k)| k.clone())
                                .unwrap_or_default();
                            let e = kvrpcpb::KeyError {
                                deadlock: Some(kvrpcpb::Deadlock {
                                    lock_ts: lock.ts,
                                    lock_key: key.clone(),
                                    deadlock_key_hash: key_hash(&held_key),
                                    wait_chain,
                                    ..Default::default()
                                }),
                                ..Default::default()
                            };
                            return Exec::Done(kvrpcpb::PessimisticLockResponse {
                                errors: vec![e],
                                ..Default::default()
                            });
                        }
                        waiting.edge_of = Some(start);
                    }
                    let wait = match req.wait_timeout {
                        0 => DEFAULT_WAIT,
                        ms => Duration::from_millis(ms as u64).min(DEFAULT_WAIT),
                    };
                    let deadline = *waiting
                        .deadline
                        .get_or_insert_with(|| tokio::time::Instant::now() + wait);
                    waiting.on = Some((key.clone(), lock.ts));
                    waiting.woken = false;
                    return Exec::Wait(deadline);
                }
                if lock.lock_type != LockType::Pessimistic {
                    return failed(KeyErr::Abort(format!(
                        "Error(LockTypeNotMatch {{ start_ts: {start}, key: {key:?} }})"
                    )));
                }
                let mut relocked = lock.clone();
                if req.for_update_ts > lock.for_update_ts {
                    relocked.for_update_ts = req.for_update_ts;
                    relocked.ttl = relocked.ttl.max(req.lock_ttl);
                    relocked.min_commit_ts = relocked.min_commit_ts.max(req.min_commit_ts);
                }
                let existing = mvcc.read_committed(key, req.for_update_ts);
                if m.assertion == kvrpcpb::Assertion::NotExist as i32 && existing.is_some() {
                    return failed(KeyErr::AlreadyExist(key.clone()));
                }
                not_founds.push(existing.is_none());
                values.push(existing.map(|(v, _)| v).unwrap_or_default());
                staged.push((key.clone(), relocked));
                continue;
            }
            if let Some(commit_ts) = mvcc
                .newest_commit_ts(key)
                .filter(|c| *c > req.for_update_ts)
            {
                let conflict_start = mvcc.writes[key][&commit_ts].start_ts;
                let c = conflict(
                    key,
                    start,
                    conflict_start,
                    commit_ts,
                    &req.primary_lock,
                    kvrpcpb::write_conflict::Reason::PessimisticRetry,
                );
                return failed(KeyErr::Conflict(c));
            }
            if mvcc.txn_status(key, start) == Some(TxnStatus::RolledBack) {
                return failed(KeyErr::Abort(format!(
                    "Error(PessimisticLockRolledBack {{ start_ts: {start}, key: {key:?} }})"
                )));
            }
            let existing = mvcc.read_committed(key, req.for_update_ts);
            if m.assertion == kvrpcpb::Assertion::NotExist as i32 && existing.is_some() {
                return failed(KeyErr::AlreadyExist(key.clone()));
            }
            let exists = existing.is_some();
            not_founds.push(!exists);
            values.push(existing.map(|(v, _)| v).unwrap_or_default());
            if req.lock_only_if_exists && !exists {
                continue;
            }
            staged.push((
                key.clone(),
                Lock {
                    lock_type: LockType::Pessimistic,
                    primary: req.primary_lock.clone(),
                    ts: start,
                    ttl: req.lock_ttl,
                    value: Vec::new(),
                    for_update_ts: req.for_update_ts,
                    txn_size: 0,
                    min_commit_ts: req.min_commit_ts,
                    use_async_commit: false,
                    secondaries: Vec::new(),
                    rollback_ts: Vec::new(),
                },
            ));
        }
        for (key, lock) in staged {
            mvcc.locks.insert(key, lock);
        }
        let (values, not_founds) = if req.return_values {
            (values, not_founds)
        } else if req.check_existence {
            (Vec::new(), not_founds)
        } else {
            (Vec::new(), Vec::new())
        };
        Exec::Done(kvrpcpb::PessimisticLockResponse {
            values,
            not_founds,
            ..Default::default()
        })
    }

    pub(super) fn kv_pessimistic_rollback(
        &self,
        req: &kvrpcpb::PessimisticRollbackRequest,
        region: &Region,
    ) -> kvrpcpb::PessimisticRollbackResponse {
        let mut mvcc = self.node.store_mvcc(self.store);
        let keys: Vec<Vec<u8>> = if req.keys.is_empty() {
            let (lo, hi) = self.user_bounds(region, DataKind::Txn);
            mvcc.keys_in(&lo, &hi)
        } else {
            req.keys.clone()
        };
        for key in keys {
            let matches = mvcc.locks.get(&key).is_some_and(|l| {
                l.lock_type == LockType::Pessimistic
                    && l.ts == req.start_version
                    && l.for_update_ts <= req.for_update_ts
            });
            if matches {
                mvcc.locks.remove(&key);
            }
        }
        kvrpcpb::PessimisticRollbackResponse::default()
    }
}
