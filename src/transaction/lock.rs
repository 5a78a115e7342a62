//! The lock resolver: what to do about another transaction's lock (spec 3.6, 4.18c).
//!
//! For each lock met, the resolver asks the lock's primary for the transaction's status
//! (`CheckTxnStatus`). A committed or rolled-back transaction's lock is resolved at once
//! (`ResolveLock`, "lite" on the one key when the transaction is small), and the reader may
//! carry the lock's timestamp in `committed_locks` or `resolved_locks` so it need not wait. A
//! live transaction makes the caller wait (with the `txnLock` backoff). An expired
//! async-commit primary is recovered through `CheckSecondaryLocks` on all its keys. Outcomes
//! are cached for the 2048 most recent transactions.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::backoff::{BackoffKind, Backoffer};
use crate::interceptor::Interceptors;
use crate::pd::PdClient;
use crate::proto::kvrpcpb::{self, Action};
use crate::request::Executor;
use crate::timestamp::LOGICAL_BITS;
use crate::{Error, Result};

use super::requests::MAX_LOCK_TTL_MS;

/// client-go's `ResolveLockLiteThreshold`: below this many keys, resolve only the lock's key.
const LITE_THRESHOLD: u64 = 512;
/// How many transaction outcomes are remembered.
const CACHE_SIZE: usize = 2048;

/// A transaction's fate as its primary reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Committed(u64),
    RolledBack,
    /// Still running: its lock lives `ttl` ms; `pushed` if the reader may ignore it.
    Alive {
        ttl: u64,
        pushed: bool,
    },
}

/// A transaction's fate as a status query reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrimaryStatus {
    Committed(u64),
    RolledBack,
    /// Its primary lock is alive (or not written yet): `ttl_ms` from its start.
    Undecided {
        ttl_ms: u64,
    },
}

/// What a reader learns from resolving the locks it met.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Resolution {
    /// Locks of transactions the reader can read past (rolled back, or committed after it).
    pub resolved: Vec<u64>,
    /// Locks of transactions committed before the reader: read their data.
    pub committed: Vec<u64>,
    /// Whether some lock is still alive (the caller backs off and retries).
    pub blocked: bool,
}

/// Resolves locks; shared by a client's transactions and snapshots.
pub(crate) struct LockResolver {
    exec: Arc<Executor>,
    pd: PdClient,
    cache: Mutex<(HashMap<u64, Status>, VecDeque<u64>)>,
}

fn physical(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

impl LockResolver {
    pub(crate) fn new(exec: Arc<Executor>, pd: PdClient) -> Self {
        LockResolver {
            exec,
            pd,
            cache: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    fn cached(&self, ts: u64) -> Option<Status> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .get(&ts)
            .copied()
    }

    fn remember(&self, ts: u64, status: Status) {
        if matches!(status, Status::Alive { .. }) {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.0.insert(ts, status).is_none() {
            cache.1.push_back(ts);
            if cache.1.len() > CACHE_SIZE {
                if let Some(old) = cache.1.pop_front() {
                    cache.0.remove(&old);
                }
            }
        }
    }

    /// Resolves what can be resolved among `locks` met by a reader at `caller_ts`.
    pub(crate) async fn resolve(
        &self,
        locks: &[kvrpcpb::LockInfo],
        caller_ts: u64,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
    ) -> Result<Resolution> {
        self.resolve_inner(locks, caller_ts, interceptors, backoffer, false)
            .await
    }

    /// As [`LockResolver::resolve`] for a writer: a lock pushed past the caller still blocks
    /// it (pushing only lets readers pass).
    pub(crate) async fn resolve_for_write(
        &self,
        locks: &[kvrpcpb::LockInfo],
        caller_ts: u64,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
    ) -> Result<Resolution> {
        self.resolve_inner(locks, caller_ts, interceptors, backoffer, true)
            .await
    }

    async fn resolve_inner(
        &self,
        locks: &[kvrpcpb::LockInfo],
        caller_ts: u64,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
        for_write: bool,
    ) -> Result<Resolution> {
        let mut out = Resolution::default();
        for lock in locks {
            match self
                .status(lock, caller_ts, interceptors, backoffer)
                .await?
            {
                Status::Committed(commit_ts) => {
                    self.resolve_lock(lock, commit_ts, interceptors, backoffer)
                        .await?;
                    if commit_ts <= caller_ts {
                        out.committed.push(lock.lock_version);
                    } else {
                        out.resolved.push(lock.lock_version);
                    }
                }
                Status::RolledBack => {
                    self.resolve_lock(lock, 0, interceptors, backoffer).await?;
                    out.resolved.push(lock.lock_version);
                }
                Status::Alive { pushed: true, .. } if !for_write => {
                    out.resolved.push(lock.lock_version)
                }
                Status::Alive { .. } => out.blocked = true,
            }
        }
        Ok(out)
    }

    /// What became of the transaction with this primary key and start ts. A live primary is
    /// left alone (not pushed); an expired one is rolled back, as a reader would.
    pub(crate) async fn primary_status(
        &self,
        primary: &[u8],
        start_ts: u64,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
    ) -> Result<PrimaryStatus> {
        let lock = kvrpcpb::LockInfo {
            primary_lock: primary.to_vec(),
            key: primary.to_vec(),
            lock_version: start_ts,
            // How long a missing primary may still receive its prewrite: the largest lock
            // TTL this client gives a transaction at its start.
            lock_ttl: MAX_LOCK_TTL_MS,
            lock_type: kvrpcpb::Op::Put as i32,
            ..Default::default()
        };
        Ok(
            match self
                .status_inner(&lock, 0, interceptors, backoffer, false)
                .await?
            {
                Status::Committed(ts) => PrimaryStatus::Committed(ts),
                Status::RolledBack => PrimaryStatus::RolledBack,
                Status::Alive { ttl, .. } => PrimaryStatus::Undecided { ttl_ms: ttl },
            },
        )
    }

    async fn status(
        &self,
        lock: &kvrpcpb::LockInfo,
        caller_ts: u64,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
    ) -> Result<Status> {
        self.status_inner(lock, caller_ts, interceptors, backoffer, true)
            .await
    }

    /// The status of `lock`'s transaction. A primary with neither lock nor record is waited
    /// for (`wait_missing`) until the lock's TTL passes, then rolled back; without
    /// `wait_missing` it is reported alive until then.
    async fn status_inner(
        &self,
        lock: &kvrpcpb::LockInfo,
        caller_ts: u64,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
        wait_missing: bool,
    ) -> Result<Status> {
        if let Some(status) = self.cached(lock.lock_version) {
            return Ok(status);
        }
        let mut rollback_if_not_exist = false;
        let mut force_sync_commit = false;
        loop {
            // The current time, fresh on every round: waiting for a TTL must see it pass.
            let current_ts = if lock.lock_ttl == 0 {
                u64::MAX
            } else {
                self.exec.timestamp(backoffer).await?.version()
            };
            let req = kvrpcpb::CheckTxnStatusRequest {
                primary_key: lock.primary_lock.clone(),
                lock_ts: lock.lock_version,
                caller_start_ts: caller_ts,
                current_ts,
                rollback_if_not_exist,
                force_sync_commit,
                resolving_pessimistic_lock: lock.lock_type == kvrpcpb::Op::PessimisticLock as i32,
                verify_is_primary: true,
                ..Default::default()
            };
            let resp = self
                .exec
                .run_at_key(&lock.primary_lock, interceptors, backoffer, req.clone())
                .await?;
            if let Some(e) = resp.error {
                if e.txn_not_found.is_some() {
                    let expired = physical(current_ts)
                        >= physical(lock.lock_version).saturating_add(lock.lock_ttl);
                    if expired {
                        rollback_if_not_exist = true;
                    } else if !wait_missing {
                        return Ok(Status::Alive {
                            ttl: lock.lock_ttl,
                            pushed: false,
                        });
                    } else {
                        backoffer
                            .backoff(
                                &self.pd.config().runtime,
                                BackoffKind::TxnNotFound,
                                Error::from_key_error(e),
                            )
                            .await?;
                    }
                    continue;
                }
                return Err(Error::from_key_error(e));
            }
            let status = if resp.lock_ttl != 0 {
                let primary = resp.lock_info.unwrap_or_default();
                let expired = physical(current_ts)
                    >= physical(primary.lock_version).saturating_add(primary.lock_ttl);
                if primary.use_async_commit && expired && !force_sync_commit {
                    match self
                        .recover_async_commit(&primary, interceptors, backoffer)
                        .await?
                    {
                        Some(status) => status,
                        None => {
                            force_sync_commit = true;
                            continue;
                        }
                    }
                } else {
                    Status::Alive {
                        ttl: resp.lock_ttl,
                        pushed: resp.action == Action::MinCommitTsPushed as i32,
                    }
                }
            } else if resp.commit_version != 0 {
                Status::Committed(resp.commit_version)
            } else {
                Status::RolledBack
            };
            // A pessimistic primary removed without a rollback record (or not there yet) says
            // nothing final about the transaction: do not remember it.
            let final_answer = resp.action != Action::LockNotExistDoNothing as i32
                && resp.action != Action::TtlExpirePessimisticRollback as i32;
            if final_answer {
                self.remember(lock.lock_version, status);
            }
            return Ok(status);
        }
    }

    /// Decides an expired async-commit transaction from its keys' locks (spec 4.18c), and
    /// resolves every key. `None` means a key is not async-commit: retry with
    /// `force_sync_commit`.
    async fn recover_async_commit(
        &self,
        primary: &kvrpcpb::LockInfo,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
    ) -> Result<Option<Status>> {
        let start_ts = primary.lock_version;
        let mut keys: Vec<Vec<u8>> = primary.secondaries.clone();
        keys.push(primary.key.clone());
        let mut commit_ts = primary.min_commit_ts;
        let mut decided: Option<Status> = None;
        for key in &keys {
            let req = kvrpcpb::CheckSecondaryLocksRequest {
                keys: vec![key.clone()],
                start_version: start_ts,
                ..Default::default()
            };
            let resp = self
                .exec
                .run_at_key(key, interceptors, backoffer, req.clone())
                .await?;
            if let Some(e) = resp.error {
                return Err(Error::from_key_error(e));
            }
            if resp.locks.is_empty() {
                let status = if resp.commit_ts != 0 {
                    Status::Committed(resp.commit_ts)
                } else {
                    Status::RolledBack
                };
                if matches!((decided, status), (Some(Status::Committed(a)), Status::Committed(b)) if a != b)
                {
                    return Err(Error::UnexpectedResponse(format!(
                        "async-commit txn {start_ts} committed at two timestamps"
                    )));
                }
                decided = Some(status);
                break;
            }
            for l in &resp.locks {
                if !l.use_async_commit || l.lock_version != start_ts {
                    return Ok(None);
                }
                commit_ts = commit_ts.max(l.min_commit_ts);
            }
        }
        let status = decided.unwrap_or(Status::Committed(commit_ts));
        let resolve_ts = match status {
            Status::Committed(c) => c,
            _ => 0,
        };
        for key in &keys {
            let req = kvrpcpb::ResolveLockRequest {
                start_version: start_ts,
                commit_version: resolve_ts,
                keys: vec![key.clone()],
                ..Default::default()
            };
            let resp = self
                .exec
                .run_at_key(key, interceptors, backoffer, req.clone())
                .await?;
            if let Some(e) = resp.error {
                if e.txn_lock_not_found.is_none() {
                    return Err(Error::from_key_error(e));
                }
            }
        }
        Ok(Some(status))
    }

    /// Commits (`commit_ts > 0`) or rolls back the lock's transaction where the lock is:
    /// just that key for small transactions, else the whole region.
    async fn resolve_lock(
        &self,
        lock: &kvrpcpb::LockInfo,
        commit_ts: u64,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
    ) -> Result<()> {
        if lock.lock_type == kvrpcpb::Op::PessimisticLock as i32 {
            // A pessimistic lock of a finished transaction is removed without a record.
            let for_update_ts = if lock.lock_for_update_ts == 0 {
                u64::MAX
            } else {
                lock.lock_for_update_ts
            };
            let req = kvrpcpb::PessimisticRollbackRequest {
                start_version: lock.lock_version,
                for_update_ts,
                keys: vec![lock.key.clone()],
                ..Default::default()
            };
            let resp = self
                .exec
                .run_at_key(&lock.key, interceptors, backoffer, req.clone())
                .await?;
            return match resp.errors.into_iter().next() {
                Some(e) => Err(Error::from_key_error(e)),
                None => Ok(()),
            };
        }
        let lite = lock.txn_size < LITE_THRESHOLD;
        let req = kvrpcpb::ResolveLockRequest {
            start_version: lock.lock_version,
            commit_version: commit_ts,
            keys: if lite {
                vec![lock.key.clone()]
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        let resp = self
            .exec
            .run_at_key(&lock.key, interceptors, backoffer, req.clone())
            .await?;
        match resp.error {
            // Someone else resolved it first.
            Some(e) if e.txn_lock_not_found.is_some() => Ok(()),
            Some(e) => Err(Error::from_key_error(e)),
            None => Ok(()),
        }
    }
}
