//! Transactions: Percolator over TiKV, as client-go does it.
//!
//! A [`Transaction`] reads from a snapshot at its start timestamp and buffers its writes
//! locally; [`Transaction::commit`] runs two-phase commit: prewrite every key (grouped by
//! region, concurrently), take a commit timestamp from PD, commit the primary key (the commit
//! point), then the secondaries in the background. Locks of other transactions met on the way
//! are resolved as client-go does (see the lock resolver). A [`Snapshot`] reads at any
//! timestamp without writing.
//!
//! ```no_run
//! # async fn demo() -> tikv_client::Result<()> {
//! use tikv_client::TransactionClient;
//!
//! let client = TransactionClient::new(vec!["127.0.0.1:2379"]).await?;
//! let mut txn = client.begin_optimistic().await?;
//! let balance = txn.get("alice").await?;
//! txn.put("alice", "90").await?;
//! txn.put("bob", "110").await?;
//! txn.commit().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Pessimistic transactions ([`TransactionClient::begin_pessimistic`]) lock keys as they are
//! written or read with `get_for_update`, waiting for other transactions' locks (with deadlock
//! detection on the server); their primary lock is kept alive by heartbeats. Async commit and
//! 1PC ([`TransactionOptions::use_async_commit`], [`TransactionOptions::try_one_pc`]) save the
//! commit round trip when they can, and fall back to 2PC when they cannot.

mod commit;
mod lock;
mod options;
mod pessimistic;
mod requests;
mod snapshot;
mod txn;

use std::sync::Arc;

use crate::backoff::{BackoffKind, Backoffer};
use crate::interceptor::{ContextOptions, Interceptor, Interceptors};
use crate::kv::keyspace::{KeyMode, Keyspace};
use crate::pd::PdClient;
use crate::proto::kvrpcpb;
use crate::region_cache::{KeyEncoding, RegionCache};
use crate::request::{Executor, Locate};
use crate::timestamp::Timestamp;
use crate::{Config, Error, Key, Result};

pub use options::{DropCheck, LockOptions, LockWait, LockedKey, TransactionOptions};
pub use snapshot::{ReplicaRead, Snapshot};
pub use txn::Transaction;

use lock::{LockResolver, PrimaryStatus};

/// client-go's GC lock-resolution budget: 100 s.
const GC_BUDGET: std::time::Duration = std::time::Duration::from_secs(100);
/// Locks read per ScanLock request (client-go's GC scan limit).
const SCAN_LOCK_PAGE: u32 = 1024;

/// Above every valid key: keys are at most 8192 bytes.
fn unbounded_upper() -> Vec<u8> {
    vec![0xFF; 8193]
}

/// How long the GC safe point read from PD is trusted (client-go's poll interval).
const SAFE_POINT_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a cached safe point may still be used when PD cannot be asked (client-go: 90 s).
const SAFE_POINT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(90);

/// What every transaction and snapshot of one client shares.
pub(crate) struct Core {
    exec: Arc<Executor>,
    pd: PdClient,
    resolver: LockResolver,
    keyspace: Option<Keyspace>,
    /// The GC safe point last read from PD, and when.
    safe_point: std::sync::Mutex<Option<(u64, crate::rt::Instant)>>,
}

impl Core {
    /// Refuses a read at `ts` below the GC safe point, which is re-read from PD at most every
    /// 10 s (a stale value serves for 90 s while PD cannot be reached).
    async fn check_visibility(&self, ts: u64) -> Result<()> {
        let now = self.pd.config().runtime.now();
        let cached = *self
            .safe_point
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let age = |at: crate::rt::Instant| now.saturating_duration_since(at);
        let safe_point = match cached {
            Some((sp, at)) if age(at) < SAFE_POINT_REFRESH => sp,
            _ => match self.pd.get_txn_safe_point().await {
                Ok(sp) => {
                    self.remember_safe_point(sp);
                    sp
                }
                Err(e) => match cached {
                    Some((sp, at)) if age(at) < SAFE_POINT_MAX_AGE => {
                        log::warn!("reading the GC safe point failed, using the last one: {e}");
                        sp
                    }
                    _ => return Err(e),
                },
            },
        };
        if ts < safe_point {
            return Err(Error::TxnAbortedByGc {
                start_ts: ts,
                safe_point,
            });
        }
        Ok(())
    }

    fn remember_safe_point(&self, safe_point: u64) {
        let now = self.pd.config().runtime.now();
        *self
            .safe_point
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((safe_point, now));
    }

    fn encode(&self, key: Key) -> Vec<u8> {
        match &self.keyspace {
            Some(ks) => ks.encode_key(&key),
            None => key.into_bytes(),
        }
    }

    fn decode(&self, key: Vec<u8>) -> Result<Key> {
        match &self.keyspace {
            Some(ks) => ks.decode_key(&key).map(|k| Key::from(k.to_vec())),
            None => Ok(Key::from(key)),
        }
    }

    fn encode_range(&self, range: crate::BoundRange) -> Result<(Vec<u8>, Vec<u8>)> {
        let (start, end) = range.to_half_open()?;
        Ok(match &self.keyspace {
            Some(ks) => ks.encode_range(&start, &end),
            None => (start.into_bytes(), end.into_bytes()),
        })
    }
}

/// The fate of a transaction, as its primary key tells it
/// ([`TransactionClient::transaction_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransactionStatus {
    /// Committed at this timestamp.
    Committed(Timestamp),
    /// Rolled back: it never committed and never will.
    RolledBack,
    /// Not decided yet: its primary lock is alive (or its primary's prewrite has not arrived
    /// and may still). Ask again later; once its TTL has passed the answer is final.
    Undecided {
        /// The primary lock's time to live, counted from the transaction's start (for a
        /// primary not written yet, the longest TTL this client gives a lock).
        ttl: std::time::Duration,
    },
}

/// A client for transactions. Cheap to clone; clones share connections and caches.
#[derive(Clone)]
pub struct TransactionClient {
    core: Arc<Core>,
    interceptors: Interceptors,
    /// The total deadline of this client's own operations (GC, lock cleanup, ranges).
    operation_timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for TransactionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionClient")
            .field("cluster_id", &self.core.pd.cluster_id())
            .field("keyspace", &self.core.keyspace)
            .finish()
    }
}

impl TransactionClient {
    /// Connects through the PD endpoints with the default configuration.
    pub async fn new<S: AsRef<str>>(pd_endpoints: Vec<S>) -> Result<TransactionClient> {
        Self::new_with_config(pd_endpoints, Config::default()).await
    }

    /// Connects with `config`; with a keyspace configured, transactions stay inside it (API v2).
    pub async fn new_with_config<S: AsRef<str>>(
        pd_endpoints: Vec<S>,
        config: Config,
    ) -> Result<TransactionClient> {
        let pd = PdClient::connect(&pd_endpoints, &config).await?;
        let (keyspace, api_version) = match &config.keyspace {
            Some(name) => {
                let meta = pd.load_keyspace(name).await?;
                let id = match meta.keyspace {
                    Some(crate::proto::keyspacepb::keyspace_meta::Keyspace::Id(id)) => id,
                    _ => {
                        return Err(Error::UnexpectedResponse(format!(
                            "keyspace {name} has no id"
                        )))
                    }
                };
                (
                    Some(Keyspace::new(KeyMode::Txn, id)?),
                    kvrpcpb::ApiVersion::V2,
                )
            }
            None => (None, kvrpcpb::ApiVersion::V1),
        };
        let cache = RegionCache::new(pd.clone(), KeyEncoding::Memcomparable);
        let exec = Arc::new(Executor::new(
            cache,
            config,
            api_version,
            keyspace.map(|k| k.id()),
        ));
        let resolver = LockResolver::new(exec.clone(), pd.clone());
        Ok(TransactionClient {
            core: Arc::new(Core {
                exec,
                pd,
                resolver,
                keyspace,
                safe_point: std::sync::Mutex::new(None),
            }),
            interceptors: Interceptors::default(),
            operation_timeout: None,
        })
    }

    /// A client whose transactions and snapshots also pass every request through
    /// `interceptor` (after the transaction's own context options).
    pub fn with_interceptor(&self, interceptor: impl Interceptor + 'static) -> TransactionClient {
        TransactionClient {
            interceptors: self.interceptors.clone().with(interceptor),
            ..self.clone()
        }
    }

    /// A client whose own operations ([`TransactionClient::gc`], lock scans and cleanup,
    /// range deletion, [`TransactionClient::transaction_status`]) may take `timeout` in total
    /// instead of [`Config::operation_timeout`] (transactions take theirs from
    /// [`TransactionOptions::operation_timeout`]).
    #[must_use = "with_operation_timeout returns a new client"]
    pub fn with_operation_timeout(&self, timeout: std::time::Duration) -> TransactionClient {
        TransactionClient {
            operation_timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// A backoffer for one of this client's own operations.
    fn backoffer(&self, budget: std::time::Duration) -> Backoffer {
        let config = self.core.pd.config();
        let timeout = self.operation_timeout.unwrap_or(config.operation_timeout);
        Backoffer::new(budget).with_timeout(timeout, config.runtime.now())
    }

    /// What became of the transaction that started at `start_ts` with this primary key (for
    /// example after [`Error::CommitUndetermined`], which carries both).
    ///
    /// Asks the primary, as a reader meeting its lock would: a primary lock whose TTL has
    /// passed is rolled back (an expired async-commit transaction is settled from all its
    /// locks), so that once the TTL is over the answer is final. A live lock is never pushed
    /// or touched.
    pub async fn transaction_status(
        &self,
        primary: impl Into<Key>,
        start_ts: Timestamp,
    ) -> Result<TransactionStatus> {
        let primary = self.core.encode(primary.into());
        let mut backoffer = self.backoffer(GC_BUDGET);
        let status = self
            .core
            .resolver
            .primary_status(
                &primary,
                start_ts.version(),
                &self.interceptors,
                &mut backoffer,
            )
            .await?;
        Ok(match status {
            PrimaryStatus::Committed(ts) => {
                TransactionStatus::Committed(Timestamp::from_version(ts))
            }
            PrimaryStatus::RolledBack => TransactionStatus::RolledBack,
            PrimaryStatus::Undecided { ttl_ms } => TransactionStatus::Undecided {
                ttl: std::time::Duration::from_millis(ttl_ms),
            },
        })
    }

    /// A client labelling every request with `source` (shown in TiKV's metrics).
    pub fn with_request_source(&self, source: impl Into<String>) -> TransactionClient {
        self.with_interceptor(ContextOptions::default().request_source(source))
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.core.pd.cluster_id()
    }

    /// A fresh timestamp from PD.
    pub async fn current_timestamp(&self) -> Result<Timestamp> {
        self.core.pd.get_timestamp().await
    }

    /// A timestamp `seconds_ago` seconds in the past (by PD's clock), for stale reads of data
    /// that was committed by then.
    pub async fn stale_timestamp(&self, seconds_ago: u64) -> Result<Timestamp> {
        let now = self.current_timestamp().await?;
        let back = i64::try_from(seconds_ago.saturating_mul(1000)).unwrap_or(i64::MAX);
        Ok(Timestamp::new(now.physical.saturating_sub(back).max(0), 0))
    }

    /// Begins an optimistic transaction at a fresh timestamp.
    pub async fn begin_optimistic(&self) -> Result<Transaction> {
        self.begin_with_options(TransactionOptions::new_optimistic())
            .await
    }

    /// Begins a pessimistic transaction at a fresh timestamp: writes and `get_for_update`
    /// lock their keys at once, waiting for other transactions' locks.
    pub async fn begin_pessimistic(&self) -> Result<Transaction> {
        self.begin_with_options(TransactionOptions::new_pessimistic())
            .await
    }

    /// Begins a transaction with `options` at a fresh timestamp.
    pub async fn begin_with_options(&self, options: TransactionOptions) -> Result<Transaction> {
        options.validate()?;
        let start = self.current_timestamp().await?;
        Ok(self.begin_at(start, options))
    }

    /// Begins a transaction at an explicit start timestamp.
    pub fn begin_at(&self, start: Timestamp, options: TransactionOptions) -> Transaction {
        Transaction::new(self.core.clone(), start, options, &self.interceptors)
    }

    /// A read-only view at `ts` (the options' isolation level and context settings apply).
    pub fn snapshot(&self, ts: Timestamp, options: TransactionOptions) -> Snapshot {
        let read = options.read_options();
        let chain = Interceptors::default()
            .with(options.context)
            .extend(&self.interceptors);
        Snapshot::new(self.core.clone(), ts, read, chain)
    }

    /// Resolves every lock older than `safe_point` in this client's key space, then advances
    /// PD's GC safe point to it. Returns the safe point now in force (PD never lowers it).
    pub async fn gc(&self, safe_point: Timestamp) -> Result<Timestamp> {
        let cleaned = self
            .cleanup_locks(crate::BoundRange::all(), safe_point)
            .await?;
        log::info!("gc at {safe_point:?}: {cleaned} locks resolved");
        let new = self
            .core
            .pd
            .update_gc_safe_point(safe_point.version())
            .await?;
        self.core.remember_safe_point(new);
        Ok(Timestamp::from_version(new))
    }

    /// Every lock in `range` whose transaction started at or before `safe_point`, read
    /// region by region (keys and primaries without the keyspace prefix).
    pub async fn scan_locks(
        &self,
        range: impl Into<crate::BoundRange>,
        safe_point: Timestamp,
    ) -> Result<Vec<kvrpcpb::LockInfo>> {
        let (start, end) = self.core.encode_range(range.into())?;
        let mut backoffer = self.backoffer(GC_BUDGET);
        let mut locks = Vec::new();
        let mut cursor = Some(start);
        while let Some(from) = cursor {
            let (page, next) = self
                .scan_lock_page(from, &end, safe_point.version(), &mut backoffer)
                .await?;
            for lock in page {
                locks.push(self.decode_lock(lock)?);
            }
            cursor = next;
        }
        Ok(locks)
    }

    /// Resolves every lock in `range` whose transaction started at or before `safe_point`:
    /// committed transactions are rolled forward, dead ones rolled back; locks of live
    /// transactions are waited for (the `txnLock` backoff, within 100 s). Returns how many
    /// locks were resolved.
    pub async fn cleanup_locks(
        &self,
        range: impl Into<crate::BoundRange>,
        safe_point: Timestamp,
    ) -> Result<usize> {
        let (start, end) = self.core.encode_range(range.into())?;
        let mut backoffer = self.backoffer(GC_BUDGET);
        let mut cleaned = 0;
        loop {
            let mut alive: Option<kvrpcpb::LockInfo> = None;
            let mut cursor = Some(start.clone());
            while let Some(from) = cursor {
                let (locks, next) = self
                    .scan_lock_page(from, &end, safe_point.version(), &mut backoffer)
                    .await?;
                cursor = next;
                if locks.is_empty() {
                    continue;
                }
                let outcome = self
                    .core
                    .resolver
                    .resolve(&locks, 0, &self.interceptors, &mut backoffer)
                    .await?;
                let done: std::collections::HashSet<u64> = outcome
                    .resolved
                    .iter()
                    .chain(&outcome.committed)
                    .copied()
                    .collect();
                cleaned += locks
                    .iter()
                    .filter(|l| done.contains(&l.lock_version))
                    .count();
                if outcome.blocked {
                    alive = locks
                        .into_iter()
                        .find(|l| !done.contains(&l.lock_version))
                        .or(alive);
                }
            }
            let Some(lock) = alive else {
                return Ok(cleaned);
            };
            log::info!(
                "cleaning locks below {safe_point:?}: txn {} is alive; waiting",
                lock.lock_version
            );
            let rt = &self.core.pd.config().runtime;
            let cause = Error::KeyError(Box::new(kvrpcpb::KeyError {
                locked: Some(lock),
                ..Default::default()
            }));
            backoffer.backoff(rt, BackoffKind::TxnLock, cause).await?;
        }
    }

    /// Deletes every key in `range`, all versions and locks, region by region (TiKV's
    /// `DeleteRange`). This bypasses transactions: use it on data nobody is writing.
    pub async fn delete_range(&self, range: impl Into<crate::BoundRange>) -> Result<()> {
        let (start, end) = self.core.encode_range(range.into())?;
        let mut backoffer = self.backoffer(GC_BUDGET);
        let mut cursor = start;
        loop {
            let (resp, region) = self
                .core
                .exec
                .run_located(
                    Locate::Key(&cursor),
                    &Interceptors::default(),
                    &mut backoffer,
                    |region| {
                        let end_key = match (end.is_empty(), region.end_key.is_empty()) {
                            (true, true) => unbounded_upper(),
                            (true, false) => region.end_key.clone(),
                            (false, true) => end.clone(),
                            (false, false) => end.clone().min(region.end_key.clone()),
                        };
                        kvrpcpb::DeleteRangeRequest {
                            start_key: cursor.clone(),
                            end_key,
                            ..Default::default()
                        }
                    },
                )
                .await?;
            if !resp.error.is_empty() {
                return Err(Error::Rejected(resp.error));
            }
            if region.end_key.is_empty() || (!end.is_empty() && region.end_key >= end) {
                return Ok(());
            }
            cursor = region.end_key;
        }
    }

    /// Removes all data in `range` from every store at once, bypassing transactions and
    /// regions (TiKV's `UnsafeDestroyRange`, used after GC of a dropped table). Both bounds
    /// must be given.
    pub async fn unsafe_destroy_range(&self, range: impl Into<crate::BoundRange>) -> Result<()> {
        let (start, end) = self.core.encode_range(range.into())?;
        if start.is_empty() || end.is_empty() {
            return Err(Error::InvalidArgument(
                "unsafe_destroy_range needs a range with a non-empty start and end".into(),
            ));
        }
        let mut backoffer = self.backoffer(GC_BUDGET);
        for store in self.core.pd.get_all_stores().await? {
            let req = kvrpcpb::UnsafeDestroyRangeRequest {
                start_key: start.clone(),
                end_key: end.clone(),
                ..Default::default()
            };
            let resp = self
                .core
                .exec
                .run_on_store(&store.address, req, &mut backoffer)
                .await?;
            if !resp.error.is_empty() {
                return Err(Error::Rejected(format!(
                    "store {}: {}",
                    store.id, resp.error
                )));
            }
        }
        Ok(())
    }

    /// One page of locks (at most [`SCAN_LOCK_PAGE`]) from `from` up to `end` (encoded; empty
    /// is unbounded) within one region, and where the next page starts (`None`: done).
    async fn scan_lock_page(
        &self,
        from: Vec<u8>,
        end: &[u8],
        max_version: u64,
        backoffer: &mut Backoffer,
    ) -> Result<(Vec<kvrpcpb::LockInfo>, Option<Vec<u8>>)> {
        let (resp, region) = self
            .core
            .exec
            .run_located(
                Locate::Key(&from),
                &self.interceptors,
                backoffer,
                |region| {
                    let end_key = match (end.is_empty(), region.end_key.is_empty()) {
                        (true, _) => region.end_key.clone(),
                        (false, true) => end.to_vec(),
                        (false, false) => end.min(&region.end_key[..]).to_vec(),
                    };
                    kvrpcpb::ScanLockRequest {
                        max_version,
                        start_key: from.clone(),
                        end_key,
                        limit: SCAN_LOCK_PAGE,
                        ..Default::default()
                    }
                },
            )
            .await?;
        if let Some(e) = resp.error {
            return Err(Error::from_key_error(e));
        }
        let next = if resp.locks.len() >= SCAN_LOCK_PAGE as usize {
            resp.locks
                .last()
                .map(|l| l.key.iter().copied().chain([0]).collect())
        } else if region.end_key.is_empty() || (!end.is_empty() && region.end_key[..] >= *end) {
            None
        } else {
            Some(region.end_key)
        };
        Ok((resp.locks, next))
    }

    /// `lock` with its keys stripped of the keyspace prefix.
    fn decode_lock(&self, mut lock: kvrpcpb::LockInfo) -> Result<kvrpcpb::LockInfo> {
        if self.core.keyspace.is_some() {
            lock.key = self.core.decode(lock.key)?.into_bytes();
            lock.primary_lock = self.core.decode(lock.primary_lock)?.into_bytes();
            lock.secondaries = lock
                .secondaries
                .into_iter()
                .map(|k| Ok(self.core.decode(k)?.into_bytes()))
                .collect::<Result<_>>()?;
        }
        Ok(lock)
    }
}
