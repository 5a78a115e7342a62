//! Pessimistic locking (spec 4.13, 4.14): lock acquisition with waiting, wake-up on release,
//! lock-wait timeouts and deadlock detection; pessimistic rollback.

// Key errors become protobuf messages at once; boxing them would only add noise here.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use super::{Exec, MockTikv, Waiting};
use crate::kv::key_hash;
use crate::proto::{deadlock, kvrpcpb};
use crate::testutils::cluster::{DataKind, Region};
use crate::testutils::mvcc::{conflict, KeyErr, Lock, LockType, TxnStatus};

/// TiKV's default `pessimistic-txn.wait-for-lock-timeout`.
const DEFAULT_WAIT: Duration = Duration::from_millis(1000);

/// A failed lock request; force-lock mode also reports the key as failed in `results`.
fn failure(e: KeyErr, force: bool) -> Exec<kvrpcpb::PessimisticLockResponse> {
    let results = if force {
        vec![kvrpcpb::PessimisticLockKeyResult {
            r#type: kvrpcpb::PessimisticLockKeyResultType::LockResultFailed as i32,
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    Exec::Done(kvrpcpb::PessimisticLockResponse {
        errors: vec![e.into_proto()],
        results,
        ..Default::default()
    })
}

/// A NotExist assertion met an existing value: AlreadyExist, or in force mode a write
/// conflict when that value is newer than the requested for_update_ts.
fn not_exist_violated(
    req: &kvrpcpb::PessimisticLockRequest,
    key: &[u8],
    commit_ts: u64,
    force: bool,
) -> KeyErr {
    if force && commit_ts > req.for_update_ts {
        KeyErr::Conflict(conflict(
            key,
            req.start_version,
            0,
            commit_ts,
            &req.primary_lock,
            kvrpcpb::write_conflict::Reason::PessimisticRetry,
        ))
    } else {
        KeyErr::AlreadyExist(key.to_vec())
    }
}

/// Force-lock mode's per-key results: a key locked despite a newer commit always carries its
/// value and existence; others as `return_values` / `check_existence` ask.
fn force_results(
    req: &kvrpcpb::PessimisticLockRequest,
    values: Vec<Vec<u8>>,
    not_founds: Vec<bool>,
    conflicts: Vec<u64>,
) -> Vec<kvrpcpb::PessimisticLockKeyResult> {
    values
        .into_iter()
        .zip(not_founds)
        .zip(conflicts)
        .map(|((value, not_found), conflict_ts)| {
            let with_conflict = conflict_ts > 0;
            kvrpcpb::PessimisticLockKeyResult {
                r#type: if with_conflict {
                    kvrpcpb::PessimisticLockKeyResultType::LockResultLockedWithConflict as i32
                } else {
                    kvrpcpb::PessimisticLockKeyResultType::LockResultNormal as i32
                },
                value: if with_conflict || req.return_values {
                    value
                } else {
                    Vec::new()
                },
                existence: (with_conflict || req.return_values || req.check_existence)
                    && !not_found,
                locked_with_conflict_ts: conflict_ts,
                ..Default::default()
            }
        })
        .collect()
}

impl MockTikv {
    pub(super) fn kv_pessimistic_lock(
        &self,
        req: &kvrpcpb::PessimisticLockRequest,
        region: &Region,
        waiting: &mut Waiting,
    ) -> Exec<kvrpcpb::PessimisticLockResponse> {
        let start = req.start_version;
        // Force-lock mode (TiDB's fair locking): one key, locked even behind a newer commit.
        let force =
            req.wake_up_mode == kvrpcpb::PessimisticLockWakeUpMode::WakeUpModeForceLock as i32;
        let failed = |e: KeyErr| failure(e, force);
        let keys: Vec<&[u8]> = req.mutations.iter().map(|m| &m.key[..]).collect();
        if let Err(e) =
            self.check_txn_write(req.context.as_ref(), "acquire_pessimistic_lock", &keys)
        {
            return failed(e);
        }
        // TiKV panics on other ops (spec 2.6); the mock refuses them.
        if let Some(m) = req
            .mutations
            .iter()
            .find(|m| m.op != kvrpcpb::Op::PessimisticLock as i32)
        {
            return failed(KeyErr::Abort(format!(
                "unsupported mutation op {} in a pessimistic lock request",
                m.op
            )));
        }
        if let Some(outside) = self.outside_region(region, keys) {
            return Exec::Done(outside);
        }
        if force && req.mutations.len() > 1 {
            return failed(KeyErr::Abort(
                "Error(Other(\"multiple keys in a single request with allowed_lock_with_conflict set is not allowed\"))"
                    .into(),
            ));
        }
        let mut mvcc = self.node.store_mvcc(self.store);
        let mut staged: Vec<(Vec<u8>, Lock)> = Vec::new();
        let mut values = Vec::new();
        let mut not_founds = Vec::new();
        // Per key: the newer for_update_ts it was locked with despite a conflict (force mode).
        let mut conflicts: Vec<u64> = Vec::new();
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
            // Woken up: the lock waited for is gone; normal mode answers a write conflict,
            // force-lock mode locks again at once.
            if let Some((waited_key, holder)) = waiting.on.as_ref().filter(|_| !force) {
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
                        let mut info = lock.info(key);
                        // TiKV: ms since the awaited lock was replaced (at least 1), else 0.
                        info.duration_to_last_update_ms = waiting
                            .updated
                            .map_or(0, |t| (t.elapsed().as_millis() as u64).max(1));
                        return failed(KeyErr::Locked(info));
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
                    let awaited = (key.clone(), lock.ts);
                    if waiting.on.as_ref().is_some_and(|on| *on != awaited) {
                        waiting.updated = Some(tokio::time::Instant::now());
                    }
                    waiting.on = Some(awaited);
                    waiting.woken = false;
                    let earlier = waiting.queued.as_ref().map(|(id, _)| *id);
                    waiting.queued = Some(self.node.enqueue(key, lock.ts, start, earlier));
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
                // Force mode keeps the lock's newer for_update_ts and says so.
                let conflict_ts = if force && req.for_update_ts < lock.for_update_ts {
                    lock.for_update_ts
                } else {
                    0
                };
                let read_ts = req.for_update_ts.max(conflict_ts);
                let existing = mvcc.read_committed(key, read_ts);
                if m.assertion == kvrpcpb::Assertion::NotExist as i32 {
                    if let Some((_, commit_ts)) = existing {
                        return failed(not_exist_violated(req, key, commit_ts, force));
                    }
                }
                not_founds.push(existing.is_none());
                values.push(existing.map(|(v, _)| v).unwrap_or_default());
                conflicts.push(conflict_ts);
                staged.push((key.clone(), relocked));
                continue;
            }
            let newer = mvcc
                .newest_commit_ts(key)
                .filter(|c| *c > req.for_update_ts);
            let conflict_ts = if force { newer.unwrap_or(0) } else { 0 };
            if let Some(commit_ts) = newer.filter(|_| !force) {
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
            let lock_for_update_ts = req.for_update_ts.max(conflict_ts);
            let existing = mvcc.read_committed(key, lock_for_update_ts);
            if m.assertion == kvrpcpb::Assertion::NotExist as i32 {
                if let Some((_, commit_ts)) = existing {
                    return failed(not_exist_violated(req, key, commit_ts, force));
                }
            }
            let exists = existing.is_some();
            not_founds.push(!exists);
            values.push(existing.map(|(v, _)| v).unwrap_or_default());
            conflicts.push(conflict_ts);
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
                    for_update_ts: lock_for_update_ts,
                    txn_size: 0,
                    min_commit_ts: req.min_commit_ts,
                    use_async_commit: false,
                    secondaries: Vec::new(),
                    rollback_ts: Vec::new(),
                    generation: 0,
                },
            ));
        }
        for (key, lock) in staged {
            mvcc.locks.insert(key, lock);
        }
        if force {
            return Exec::Done(kvrpcpb::PessimisticLockResponse {
                results: force_results(req, values, not_founds, conflicts),
                ..Default::default()
            });
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
