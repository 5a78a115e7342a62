//! An optimistic transaction: a local write buffer over a snapshot, committed with 2PC.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};

use crate::backoff::{BackoffKind, Backoffer};
use crate::interceptor::{ContextOptions, Interceptors};
use crate::proto::kvrpcpb::{self, prewrite_request::PessimisticAction};
use crate::request::{BatchLimits, KvRequest, RAW_BATCH_BYTES};
use crate::rt::{self, Instant};
use crate::timestamp::Timestamp;
use crate::{BoundRange, Error, Key, KvPair, Result, Value};

use super::snapshot::{
    decoded, paged, Cursor, ReadOptions, ReplicaRead, MAX_SCAN_LIMIT, STREAM_PAGE,
};
use super::{Core, Snapshot};

/// client-go's prewrite and commit budgets: 40 s each.
const WRITE_BUDGET: Duration = Duration::from_secs(40);
/// client-go's pessimistic lock budget: 20 s (doubled by its backoff weight).
const LOCK_BUDGET: Duration = Duration::from_secs(40);
/// client-go's async-commit limits: keys per transaction and total key bytes.
const ASYNC_COMMIT_KEYS: usize = 256;
const ASYNC_COMMIT_KEY_BYTES: usize = 4096;
/// client-go's async-commit safe window: how far max_commit_ts lies beyond the start.
const ASYNC_COMMIT_SAFE_WINDOW_MS: i64 = 2000;

/// How a commit is attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommitMode {
    TwoPc,
    Async,
    OnePc,
}

/// client-go's heartbeat period: half the managed lock TTL.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// client-go's `MaxTxnTTL`: heartbeats stop after an hour.
const MAX_TXN_TTL: Duration = Duration::from_secs(3600);
/// client-go's base lock TTL.
const DEFAULT_LOCK_TTL_MS: u64 = 3000;
/// client-go's largest computed lock TTL (`ManagedLockTTL`).
const MAX_LOCK_TTL_MS: u64 = 20_000;
/// Above this size a transaction's lock TTL grows with its size.
const TTL_SIZE_THRESHOLD: usize = 16 * 1024;

/// How a transaction runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionOptions {
    /// Pessimistic: writes and `get_for_update` lock keys at once, so commit cannot meet a
    /// write conflict. Optimistic (default): conflicts are found at commit.
    pub pessimistic: bool,
    /// How long a pessimistic lock request waits for another transaction's lock.
    pub lock_wait: LockWait,
    /// The isolation of reads: snapshot isolation (default) or read committed.
    pub isolation_level: kvrpcpb::IsolationLevel,
    /// What dropping an unfinished transaction does.
    pub drop_check: DropCheck,
    /// Try async commit: the transaction is committed once every key is prewritten, saving a
    /// round trip (client-go limits: 256 keys, 4 KiB of keys; falls back to 2PC otherwise).
    pub async_commit: bool,
    /// Try one-phase commit when every mutation fits one request to one region.
    pub try_one_pc: bool,
    /// How often the primary lock's TTL is extended while the transaction holds pessimistic
    /// locks (client-go: every 10 s, for at most an hour); `None` turns heartbeats off.
    pub heartbeat: Option<Duration>,
    /// Which replica serves reads (default: the leader). Locking reads and writes always go
    /// to the leader.
    pub replica_read: ReplicaRead,
    /// Snapshots only: read from any replica whose data is complete up to the snapshot's
    /// timestamp, without asking the leader (for timestamps in the past, e.g. from
    /// [`super::TransactionClient::stale_timestamp`]). A replica that is behind answers
    /// `DataIsNotReady` and the read goes to the leader instead.
    pub stale_read: bool,
    /// How strictly TiKV checks the assertions set with [`Transaction::set_assertion`] at
    /// prewrite (default: off, assertions are not sent).
    pub assertion_level: kvrpcpb::AssertionLevel,
    /// Async commit and 1PC without linearizability: skip fetching a fresh timestamp for the
    /// minimum commit timestamp, so a transaction that starts after this one commits may not
    /// see it, though every transaction still sees what it causally depends on.
    pub causal_consistency: bool,
    /// Context fields stamped on every request of the transaction: priority, resource group
    /// and tag, request source, transaction source, disk-full policy.
    pub context: ContextOptions,
}

/// How long to wait for another transaction's lock when locking pessimistically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Wait until the lock is released (client-go's `LockAlwaysWait`).
    Forever,
    /// Fail at once with [`Error::LockWaitTimeout`] (client-go's `LockNoWait`).
    NoWait,
    /// Wait at most this long.
    Timeout(Duration),
}

/// What happens when a transaction is dropped without commit or rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCheck {
    /// Log a warning, and roll back in the background anything already written to TiKV.
    Warn,
    /// As `Warn`, without the log line.
    Silent,
}

impl TransactionOptions {
    /// An optimistic transaction with snapshot isolation.
    pub fn new_optimistic() -> Self {
        TransactionOptions {
            pessimistic: false,
            lock_wait: LockWait::Forever,
            isolation_level: kvrpcpb::IsolationLevel::Si,
            drop_check: DropCheck::Warn,
            heartbeat: Some(HEARTBEAT_INTERVAL),
            async_commit: false,
            try_one_pc: false,
            replica_read: ReplicaRead::Leader,
            stale_read: false,
            assertion_level: kvrpcpb::AssertionLevel::Off,
            causal_consistency: false,
            context: ContextOptions::default(),
        }
    }

    /// Turns async commit on or off.
    pub fn use_async_commit(mut self, on: bool) -> Self {
        self.async_commit = on;
        self
    }

    /// Turns one-phase commit on or off.
    pub fn try_one_pc(mut self, on: bool) -> Self {
        self.try_one_pc = on;
        self
    }

    /// Sets how often the primary lock is kept alive (`None`: never).
    pub fn heartbeat(mut self, interval: Option<Duration>) -> Self {
        self.heartbeat = interval;
        self
    }

    /// A pessimistic transaction with snapshot isolation that waits for locks forever.
    pub fn new_pessimistic() -> Self {
        TransactionOptions {
            pessimistic: true,
            ..Self::new_optimistic()
        }
    }

    /// Sets how long pessimistic lock requests wait.
    pub fn lock_wait(mut self, wait: LockWait) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Reads see the latest committed data instead of a snapshot (read committed).
    pub fn read_committed(mut self) -> Self {
        self.isolation_level = kvrpcpb::IsolationLevel::Rc;
        self
    }

    /// Sets what dropping an unfinished transaction does.
    pub fn drop_check(mut self, check: DropCheck) -> Self {
        self.drop_check = check;
        self
    }

    /// Sets which replica serves reads.
    pub fn replica_read(mut self, replica: ReplicaRead) -> Self {
        self.replica_read = replica;
        self
    }

    /// Turns stale reads on (snapshots only).
    pub fn stale_read(mut self, on: bool) -> Self {
        self.stale_read = on;
        self
    }

    pub(crate) fn read_options(&self) -> ReadOptions {
        ReadOptions {
            isolation: self.isolation_level,
            replica: self.replica_read,
            stale: self.stale_read,
        }
    }

    /// Sets how strictly TiKV checks assertions.
    pub fn assertion_level(mut self, level: kvrpcpb::AssertionLevel) -> Self {
        self.assertion_level = level;
        self
    }

    /// Gives up linearizability of async commit and 1PC for one timestamp request less.
    pub fn causal_consistency(mut self, on: bool) -> Self {
        self.causal_consistency = on;
        self
    }

    /// Sets the scheduling priority of the transaction's requests.
    pub fn priority(mut self, priority: kvrpcpb::CommandPri) -> Self {
        self.context = self.context.priority(priority);
        self
    }

    /// Runs the transaction's requests under this resource group.
    pub fn resource_group_name(mut self, name: impl Into<String>) -> Self {
        self.context = self.context.resource_group_name(name);
        self
    }

    /// Tags the transaction's requests for TiKV's resource metering.
    pub fn resource_group_tag(mut self, tag: impl Into<Vec<u8>>) -> Self {
        self.context = self.context.resource_group_tag(tag);
        self
    }

    /// Labels the transaction's requests with where they come from.
    pub fn request_source(mut self, source: impl Into<String>) -> Self {
        self.context = self.context.request_source(source);
        self
    }

    /// Marks the transaction's writes with a source (for CDC filtering).
    pub fn txn_source(mut self, source: u64) -> Self {
        self.context = self.context.txn_source(source);
        self
    }

    /// Sets whether the transaction may write to an almost-full disk.
    pub fn disk_full_opt(mut self, opt: kvrpcpb::DiskFullOpt) -> Self {
        self.context = self.context.disk_full_opt(opt);
        self
    }
}

/// Options of one pessimistic lock request ([`Transaction::lock_keys_with_options`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockOptions {
    return_values: bool,
    check_existence: bool,
    lock_only_if_exists: bool,
    wait: Option<LockWait>,
    assert_not_exist: bool,
}

impl LockOptions {
    /// Reads each key's latest committed value with the lock, in the same round trip.
    pub fn return_values(mut self, on: bool) -> Self {
        self.return_values = on;
        self
    }

    /// Reports whether each key has a committed value, without transferring values.
    pub fn check_existence(mut self, on: bool) -> Self {
        self.check_existence = on;
        self
    }

    /// Locks only the keys that have a committed value (implies `return_values`, as TiKV
    /// requires).
    pub fn lock_only_if_exists(mut self, on: bool) -> Self {
        self.lock_only_if_exists = on;
        if on {
            self.return_values = true;
        }
        self
    }

    /// Overrides the transaction's [`LockWait`] for this request.
    pub fn wait(mut self, wait: LockWait) -> Self {
        self.wait = Some(wait);
        self
    }
}

/// What a pessimistic lock request learned about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockedKey {
    /// The key.
    pub key: Key,
    /// Whether the transaction now holds its lock (false only for a missing key under
    /// [`LockOptions::lock_only_if_exists`]).
    pub locked: bool,
    /// Whether the key has a committed value (with `return_values` or `check_existence`).
    pub exists: Option<bool>,
    /// Its latest committed value, if it has one (with `return_values`).
    pub value: Option<Value>,
}

impl Default for TransactionOptions {
    fn default() -> Self {
        Self::new_optimistic()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mutation {
    Put(Value),
    Insert(Value),
    Delete,
    Lock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    /// Prewrite started: locks may exist on TiKV.
    Prewriting,
    Committed,
    RolledBack,
}

/// A transaction. Reads see its own writes; nothing reaches TiKV before [`Transaction::commit`].
pub struct Transaction {
    core: Arc<Core>,
    snapshot: Snapshot,
    buffer: BTreeMap<Vec<u8>, Mutation>,
    state: State,
    options: TransactionOptions,
    started: Instant,
    /// Pessimistic: the primary, chosen by the first lock.
    primary: Option<Vec<u8>>,
    /// Pessimistic: the keys locked so far.
    locked: BTreeSet<Vec<u8>>,
    /// Pessimistic: the largest for_update_ts used.
    for_update_ts: u64,
    /// Keeps the primary lock alive while the transaction runs; dropping it stops.
    heartbeat: Option<rt::JoinHandle<()>>,
    /// Existence assertions sent with the keys' mutations at prewrite.
    assertions: BTreeMap<Vec<u8>, kvrpcpb::Assertion>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("start_ts", &self.snapshot.timestamp())
            .field("mutations", &self.buffer.len())
            .field("state", &self.state)
            .finish()
    }
}

impl Transaction {
    /// A transaction whose requests pass through the options' context settings, then
    /// through the client's `interceptors`.
    pub(crate) fn new(
        core: Arc<Core>,
        start: Timestamp,
        options: TransactionOptions,
        interceptors: &Interceptors,
    ) -> Self {
        let started = core.pd.config().runtime.now();
        let chain = Interceptors::default()
            .with(options.context.clone())
            .extend(interceptors);
        Transaction {
            // A read-write transaction never reads stale: its snapshot is its start.
            snapshot: Snapshot::new(
                core.clone(),
                start,
                ReadOptions {
                    stale: false,
                    ..options.read_options()
                },
                chain,
            ),
            core,
            buffer: BTreeMap::new(),
            state: State::Active,
            options,
            started,
            primary: None,
            locked: BTreeSet::new(),
            for_update_ts: 0,
            heartbeat: None,
            assertions: BTreeMap::new(),
        }
    }

    fn interceptors(&self) -> &Interceptors {
        self.snapshot.interceptors()
    }

    /// The start timestamp.
    pub fn start_timestamp(&self) -> Timestamp {
        self.snapshot.timestamp()
    }

    fn check_active(&self) -> Result<()> {
        match self.state {
            State::Active => Ok(()),
            other => Err(Error::InvalidArgument(format!(
                "the transaction is no longer active ({other:?})"
            ))),
        }
    }

    fn buffered(&self, key: &Key) -> Option<&Mutation> {
        self.buffer.get(&self.core.encode(key.clone()))
    }

    /// The value of `key`: this transaction's own write, else the snapshot's.
    pub async fn get(&self, key: impl Into<Key>) -> Result<Option<Value>> {
        self.check_active()?;
        let key = key.into();
        match self.buffered(&key) {
            Some(Mutation::Put(v) | Mutation::Insert(v)) => Ok(Some(v.clone())),
            Some(Mutation::Delete) => Ok(None),
            _ => self.snapshot.get(key).await,
        }
    }

    /// Whether `key` has a value.
    pub async fn key_exists(&self, key: impl Into<Key>) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    /// The pairs found for `keys`, in key order, own writes included.
    pub async fn batch_get(
        &self,
        keys: impl IntoIterator<Item = impl Into<Key>>,
    ) -> Result<Vec<KvPair>> {
        self.check_active()?;
        let mut found = Vec::new();
        let mut remote = Vec::new();
        for key in keys.into_iter().map(Into::into) {
            match self.buffered(&key) {
                Some(Mutation::Put(v) | Mutation::Insert(v)) => {
                    found.push(KvPair::new(key, v.clone()))
                }
                Some(Mutation::Delete) => {}
                _ => remote.push(key),
            }
        }
        found.extend(self.snapshot.batch_get(remote).await?);
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found.dedup_by(|a, b| a.key == b.key);
        Ok(found)
    }

    /// One value per key, in the order given (`None` where absent).
    pub async fn batch_get_values(
        &self,
        keys: impl IntoIterator<Item = impl Into<Key>>,
    ) -> Result<Vec<Option<Value>>> {
        let keys: Vec<Key> = keys.into_iter().map(Into::into).collect();
        let found = self.batch_get(keys.iter().cloned()).await?;
        Ok(keys
            .iter()
            .map(|k| {
                found
                    .binary_search_by(|p| p.key.cmp(k))
                    .ok()
                    .map(|i| found[i].value.clone())
            })
            .collect())
    }

    /// Up to `limit` pairs in `range`, ascending, merging own writes with the snapshot.
    pub async fn scan(&self, range: impl Into<BoundRange>, limit: u32) -> Result<Vec<KvPair>> {
        self.scan_merged(range.into(), limit, false).await
    }

    /// Up to `limit` keys in `range`, ascending.
    pub async fn scan_keys(&self, range: impl Into<BoundRange>, limit: u32) -> Result<Vec<Key>> {
        Ok(self
            .scan(range, limit)
            .await?
            .into_iter()
            .map(|p| p.key)
            .collect())
    }

    /// Up to `limit` pairs in `range`, descending.
    pub async fn scan_reverse(
        &self,
        range: impl Into<BoundRange>,
        limit: u32,
    ) -> Result<Vec<KvPair>> {
        self.scan_merged(range.into(), limit, true).await
    }

    /// Pairs of `range`, ascending, own writes merged in, fetched 256 at a time as the stream
    /// is polled.
    pub fn scan_stream(
        &self,
        range: impl Into<BoundRange>,
    ) -> impl Stream<Item = Result<KvPair>> + '_ {
        self.stream(range.into(), false, false)
    }

    /// Pairs of `range`, descending, own writes merged in, fetched page by page.
    pub fn scan_stream_reverse(
        &self,
        range: impl Into<BoundRange>,
    ) -> impl Stream<Item = Result<KvPair>> + '_ {
        self.stream(range.into(), false, true)
    }

    /// Keys of `range`, ascending, own writes merged in, fetched page by page.
    pub fn scan_keys_stream(
        &self,
        range: impl Into<BoundRange>,
    ) -> impl Stream<Item = Result<Key>> + '_ {
        self.stream(range.into(), true, false)
            .map(|pair| pair.map(|p| p.key))
    }

    /// Keys of `range`, descending, own writes merged in, fetched page by page.
    pub fn scan_keys_stream_reverse(
        &self,
        range: impl Into<BoundRange>,
    ) -> impl Stream<Item = Result<Key>> + '_ {
        self.stream(range.into(), true, true)
            .map(|pair| pair.map(|p| p.key))
    }

    fn stream(
        &self,
        range: BoundRange,
        key_only: bool,
        reverse: bool,
    ) -> impl Stream<Item = Result<KvPair>> + '_ {
        let cursor = self
            .check_active()
            .and_then(|()| Cursor::new(&self.core, range, reverse));
        decoded(
            &self.core,
            paged(cursor, move |c| self.merged_page(c, STREAM_PAGE, key_only)),
        )
    }

    async fn scan_merged(
        &self,
        range: BoundRange,
        limit: u32,
        reverse: bool,
    ) -> Result<Vec<KvPair>> {
        self.check_active()?;
        let mut cursor = Cursor::new(&self.core, range, reverse)?;
        // Deletes in the buffer can hide snapshot keys: over-fetch by their number.
        let hidden = self
            .buffer_range(&cursor.start, &cursor.end)
            .filter(|(_, m)| matches!(m, Mutation::Delete))
            .count();
        let mut out = Vec::new();
        while out.len() < limit as usize && !cursor.done {
            let want = (limit as usize - out.len()).saturating_add(hidden);
            let page = u32::try_from(want).unwrap_or(u32::MAX).min(MAX_SCAN_LIMIT);
            let (next, pairs) = self.merged_page(cursor, page, false).await?;
            cursor = next;
            for (k, v) in pairs.into_iter().take(limit as usize - out.len()) {
                out.push(KvPair::new(self.core.decode(k)?, v));
            }
        }
        Ok(out)
    }

    /// Buffered mutations with encoded keys in `[lo, hi)` (an empty `hi` is unbounded).
    fn buffer_range<'a>(
        &'a self,
        lo: &[u8],
        hi: &[u8],
    ) -> impl DoubleEndedIterator<Item = (&'a Vec<u8>, &'a Mutation)> + 'a {
        let upper = if hi.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(hi.to_vec())
        };
        self.buffer.range((Bound::Included(lo.to_vec()), upper))
    }

    /// One page of the snapshot from `cursor` with this transaction's writes to the part of
    /// the range it covered merged in (encoded keys, in scan order).
    async fn merged_page(
        &self,
        cursor: Cursor,
        limit: u32,
        key_only: bool,
    ) -> Result<(Cursor, Vec<(Vec<u8>, Vec<u8>)>)> {
        let before = cursor.clone();
        let (after, remote) = self.snapshot.page(cursor, limit, key_only).await?;
        let (lo, hi) = before.covered(&after);
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = remote.into_iter().collect();
        for (key, m) in self.buffer_range(&lo, &hi) {
            match m {
                Mutation::Put(v) | Mutation::Insert(v) => {
                    let value = if key_only { Vec::new() } else { v.clone() };
                    merged.insert(key.clone(), value);
                }
                Mutation::Delete => {
                    merged.remove(key);
                }
                Mutation::Lock => {}
            }
        }
        let pairs = if before.reverse {
            merged.into_iter().rev().collect()
        } else {
            merged.into_iter().collect()
        };
        Ok((after, pairs))
    }

    /// Sets `key` to `value` (locking it first in a pessimistic transaction).
    pub async fn put(&mut self, key: impl Into<Key>, value: impl Into<Value>) -> Result<()> {
        self.check_active()?;
        let key = self.core.encode(key.into());
        self.lock_if_pessimistic(&key).await?;
        self.buffer.insert(key, Mutation::Put(value.into()));
        Ok(())
    }

    /// Sets `key` to `value`; the commit fails with [`Error::KeyExists`] if the key exists.
    pub async fn insert(&mut self, key: impl Into<Key>, value: impl Into<Value>) -> Result<()> {
        self.check_active()?;
        let key = self.core.encode(key.into());
        self.lock_not_existing(&key).await?;
        let m = match self.buffer.get(&key) {
            Some(Mutation::Delete) => Mutation::Put(value.into()),
            _ => Mutation::Insert(value.into()),
        };
        self.buffer.insert(key, m);
        Ok(())
    }

    /// Deletes `key` (locking it first in a pessimistic transaction).
    pub async fn delete(&mut self, key: impl Into<Key>) -> Result<()> {
        self.check_active()?;
        let key = self.core.encode(key.into());
        self.lock_if_pessimistic(&key).await?;
        self.buffer.insert(key, Mutation::Delete);
        Ok(())
    }

    /// Locks `keys` without writing them: in a pessimistic transaction at once, in an
    /// optimistic one by making the commit fail if another transaction writes them meanwhile.
    pub async fn lock_keys(
        &mut self,
        keys: impl IntoIterator<Item = impl Into<Key>>,
    ) -> Result<()> {
        self.check_active()?;
        let keys: Vec<Vec<u8>> = keys
            .into_iter()
            .map(|k| self.core.encode(k.into()))
            .collect();
        if self.options.pessimistic {
            self.lock_encoded(keys.clone(), &LockOptions::default())
                .await?;
        }
        for key in keys {
            self.buffer.entry(key).or_insert(Mutation::Lock);
        }
        Ok(())
    }

    /// Locks `keys` in a pessimistic transaction with per-request options: read values or
    /// existence in the same round trip, lock only existing keys, or wait differently.
    /// Returns one entry per key, in the order given.
    pub async fn lock_keys_with_options(
        &mut self,
        keys: impl IntoIterator<Item = impl Into<Key>>,
        options: LockOptions,
    ) -> Result<Vec<LockedKey>> {
        self.check_active()?;
        if !self.options.pessimistic {
            return Err(Error::InvalidArgument(
                "lock options apply to pessimistic transactions; use lock_keys".into(),
            ));
        }
        let keys: Vec<Key> = keys.into_iter().map(Into::into).collect();
        let encoded: Vec<Vec<u8>> = keys.iter().map(|k| self.core.encode(k.clone())).collect();
        let observed = self.lock_encoded(encoded.clone(), &options).await?;
        let reports = options.return_values || options.check_existence;
        let mut out = Vec::with_capacity(keys.len());
        for (key, enc) in keys.into_iter().zip(encoded) {
            let seen = observed.get(&enc);
            let locked = self.locked.contains(&enc);
            if locked {
                self.buffer.entry(enc).or_insert(Mutation::Lock);
            }
            out.push(LockedKey {
                key,
                locked,
                exists: reports.then(|| seen.is_some_and(|o| o.exists)),
                value: seen
                    .filter(|o| o.exists && options.return_values)
                    .map(|o| o.value.clone()),
            });
        }
        Ok(out)
    }

    /// Locks `key` and reads its latest committed value (pessimistic transactions; an
    /// optimistic one reads its snapshot and checks the key at commit).
    pub async fn get_for_update(&mut self, key: impl Into<Key>) -> Result<Option<Value>> {
        let key = key.into();
        let values = self.batch_get_for_update([key.clone()]).await?;
        Ok(values.into_iter().find(|p| p.key == key).map(|p| p.value))
    }

    /// Locks `keys` and reads their latest committed values (own writes win). A pessimistic
    /// transaction reads the values with the lock, in one round trip per region.
    pub async fn batch_get_for_update(
        &mut self,
        keys: impl IntoIterator<Item = impl Into<Key>>,
    ) -> Result<Vec<KvPair>> {
        self.check_active()?;
        let keys: Vec<Key> = keys.into_iter().map(Into::into).collect();
        if !self.options.pessimistic {
            self.lock_keys(keys.iter().cloned()).await?;
            return self.batch_get(keys).await;
        }
        let mut found = Vec::new();
        let mut remote = Vec::new();
        for key in keys {
            match self.buffered(&key) {
                Some(Mutation::Put(v) | Mutation::Insert(v)) => {
                    found.push(KvPair::new(key, v.clone()))
                }
                Some(Mutation::Delete) => {}
                _ => remote.push(key),
            }
        }
        let locked = self
            .lock_keys_with_options(remote, LockOptions::default().return_values(true))
            .await?;
        found.extend(
            locked
                .into_iter()
                .filter_map(|l| Some(KvPair::new(l.key, l.value?))),
        );
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found.dedup_by(|a, b| a.key == b.key);
        Ok(found)
    }

    /// Asserts at prewrite that `key` exists (or does not) before this transaction's write
    /// to it; TiKV checks it when [`TransactionOptions::assertion_level`] is not off, and a
    /// failed assertion fails the commit with [`Error::AssertionFailed`]. Applies only to
    /// keys the transaction writes or locks.
    pub fn set_assertion(&mut self, key: impl Into<Key>, assertion: kvrpcpb::Assertion) {
        let key = self.core.encode(key.into());
        self.assertions.insert(key, assertion);
    }

    /// Keeps the primary lock alive in the background until the transaction ends.
    fn start_heartbeat(&mut self, primary: &[u8]) {
        let Some(interval) = self.options.heartbeat else {
            return;
        };
        if self.heartbeat.is_some() {
            return;
        }
        let core = self.core.clone();
        let interceptors = self.interceptors().clone();
        let primary = primary.to_vec();
        let start = self.start_timestamp().version();
        let started = self.started;
        self.heartbeat = Some(rt::spawn(async move {
            let rt = core.pd.config().runtime.clone();
            loop {
                rt.sleep(interval).await;
                let alive = rt.now().saturating_duration_since(started);
                if alive > MAX_TXN_TTL {
                    log::warn!("txn {start} outlived the maximum TTL; heartbeats stop");
                    return;
                }
                let req = kvrpcpb::TxnHeartBeatRequest {
                    primary_lock: primary.clone(),
                    start_version: start,
                    advise_lock_ttl: alive.as_millis() as u64 + MAX_LOCK_TTL_MS,
                    ..Default::default()
                };
                let mut backoffer = Backoffer::new(WRITE_BUDGET);
                let sent = core
                    .exec
                    .run_at_key(&primary, &interceptors, &mut backoffer, req)
                    .await;
                match sent {
                    Ok(resp) if resp.error.is_none() => {}
                    Ok(resp) => {
                        log::warn!("heartbeat of txn {start} refused: {:?}", resp.error);
                        return;
                    }
                    Err(e) => log::warn!("heartbeat of txn {start} failed: {e}"),
                }
            }
        }));
    }

    async fn lock_if_pessimistic(&mut self, key: &[u8]) -> Result<()> {
        if self.options.pessimistic && !self.locked.contains(key) {
            self.lock_encoded(vec![key.to_vec()], &LockOptions::default())
                .await?;
        }
        Ok(())
    }

    /// Takes a pessimistic lock asking TiKV to fail with `AlreadyExist` if the key exists
    /// (for inserts).
    async fn lock_not_existing(&mut self, key: &[u8]) -> Result<()> {
        if self.options.pessimistic {
            let options = LockOptions {
                assert_not_exist: true,
                ..Default::default()
            };
            self.lock_encoded(vec![key.to_vec()], &options).await?;
        }
        Ok(())
    }

    /// Takes pessimistic locks on `keys` (encoded); on failure, releases what some regions
    /// granted.
    async fn lock_encoded(
        &mut self,
        keys: Vec<Vec<u8>>,
        options: &LockOptions,
    ) -> Result<BTreeMap<Vec<u8>, Observed>> {
        let result = self.try_lock_keys(keys.clone(), options).await;
        if result.is_err() {
            // Regions that granted their part keep the locks: release them (no record needed).
            let granted: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| !self.locked.contains(k))
                .collect();
            if !granted.is_empty() {
                let core = self.core.clone();
                let interceptors = self.interceptors().clone();
                let start = self.start_timestamp().version();
                // Only locks of the failed attempt (not newer ones taken after it) may go.
                let for_update_ts = self.for_update_ts;
                rt::spawn(async move {
                    let released =
                        pessimistic_rollback(&core, &interceptors, start, for_update_ts, granted)
                            .await;
                    if let Err(e) = released {
                        log::warn!(
                            "releasing partial pessimistic locks of txn {start} failed: {e}"
                        );
                    }
                })
                .detach();
            }
        }
        result
    }

    /// Takes pessimistic locks on `keys` at a fresh for_update_ts (spec 4.13): a write
    /// conflict retries with a newer one; a lock left after the wait is resolved, or reported
    /// as a lock-wait timeout. Returns what TiKV observed of each key when asked.
    async fn try_lock_keys(
        &mut self,
        mut keys: Vec<Vec<u8>>,
        options: &LockOptions,
    ) -> Result<BTreeMap<Vec<u8>, Observed>> {
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return Ok(BTreeMap::new());
        }
        if options.lock_only_if_exists && self.primary.is_none() {
            // A missing first key would leave the transaction without a primary lock.
            return Err(Error::InvalidArgument(
                "lock_only_if_exists needs a primary: lock another key of the transaction first"
                    .into(),
            ));
        }
        let start = self.start_timestamp().version();
        // The first key becomes the primary once it is locked.
        let primary = self.primary.clone().unwrap_or_else(|| keys[0].clone());
        let assertion = if options.assert_not_exist {
            kvrpcpb::Assertion::NotExist
        } else {
            kvrpcpb::Assertion::None
        };
        let lock_wait = options.wait.unwrap_or(self.options.lock_wait);
        let wait_ms: i64 = match lock_wait {
            LockWait::Forever => i64::MAX,
            LockWait::NoWait => -1,
            LockWait::Timeout(d) => d.as_millis().clamp(1, i64::MAX as u128) as i64,
        };
        let rt = self.core.pd.config().runtime.clone();
        let deadline = match lock_wait {
            LockWait::Timeout(d) => Some(rt.now() + d),
            _ => None,
        };
        let interceptors = self.interceptors().clone();
        let mut backoffer = Backoffer::new(LOCK_BUDGET);
        loop {
            let for_update_ts = self.core.pd.get_timestamp().await?.version();
            // Recorded before sending: a failed attempt's locks are released up to it.
            self.for_update_ts = self.for_update_ts.max(for_update_ts);
            // client-go skips deadlock detection only for a transaction's first, single-key lock.
            let is_first_lock = self.locked.is_empty() && keys.len() == 1;
            // TiKV measures the TTL from the start timestamp: add the transaction's age.
            let lock_ttl = rt.now().saturating_duration_since(self.started).as_millis() as u64
                + MAX_LOCK_TTL_MS;
            let build = |keys: Vec<Vec<u8>>| kvrpcpb::PessimisticLockRequest {
                mutations: keys
                    .into_iter()
                    .map(|key| kvrpcpb::Mutation {
                        op: kvrpcpb::Op::PessimisticLock as i32,
                        key,
                        assertion: assertion as i32,
                        ..Default::default()
                    })
                    .collect(),
                primary_lock: primary.clone(),
                start_version: start,
                lock_ttl,
                for_update_ts,
                is_first_lock,
                wait_timeout: wait_ms,
                min_commit_ts: for_update_ts + 1,
                return_values: options.return_values,
                check_existence: options.check_existence,
                lock_only_if_exists: options.lock_only_if_exists,
                ..Default::default()
            };
            let run = |keys: Vec<Vec<u8>>| {
                let limits: BatchLimits<Vec<u8>> = BatchLimits {
                    max_count: usize::MAX,
                    max_bytes: RAW_BATCH_BYTES,
                    size: Vec::len,
                };
                self.core.exec.run_grouped_keyed(
                    keys,
                    |k| k,
                    limits,
                    &interceptors,
                    &backoffer,
                    &build,
                )
            };
            // As client-go: until the primary is locked, the batch holding it (its region's
            // first keys, within one request's size) goes first and the others only once it
            // succeeded, so that no lock points to a primary that was never locked (a
            // resolver would roll the transaction back).
            let (first, rest) = if self.primary.is_none() {
                let region = self.core.exec.cache.locate(&primary).await?;
                primary_batch_first(&keys, |k| region.contains(k))
            } else {
                (keys.clone(), Vec::new())
            };
            let mut responses = run(first).await?;
            let primary_done = responses.iter().all(|(_, r)| r.errors.is_empty());
            if primary_done && !rest.is_empty() {
                responses.extend(run(rest).await?);
            }
            let mut retry = false;
            let mut locks = Vec::new();
            let mut observed = BTreeMap::new();
            for (group, resp) in responses {
                if resp.errors.is_empty() {
                    observe(&group, &resp, options, &mut observed)?;
                }
                for e in resp.errors {
                    if e.conflict.is_some() {
                        retry = true;
                    } else if let Some(lock) = e.locked {
                        locks.push(lock);
                    } else {
                        // Keys locked by earlier calls stay locked: a cycle through them
                        // is not broken by retrying this request.
                        let released: Vec<Vec<u8>> = keys
                            .iter()
                            .filter(|k| !self.locked.contains(*k))
                            .cloned()
                            .collect();
                        return Err(mark_deadlock(Error::from_key_error(e), &released));
                    }
                }
            }
            if !retry && locks.is_empty() {
                let held = keys.into_iter().filter(|k| {
                    !options.lock_only_if_exists
                        || observed.get(k).is_some_and(|o: &Observed| o.exists)
                });
                self.locked.extend(held);
                self.primary.get_or_insert_with(|| primary.clone());
                self.start_heartbeat(&primary);
                return Ok(observed);
            }
            if let Some(lock) = locks.first() {
                let timed_out =
                    lock_wait == LockWait::NoWait || deadline.is_some_and(|d| rt.now() >= d);
                if timed_out {
                    return Err(Error::LockWaitTimeout(Box::new(lock.clone())));
                }
                // The holder may be gone: resolve its lock; if it lives, wait again.
                self.core
                    .resolver
                    .resolve_for_write(&locks, start, &interceptors, &mut backoffer)
                    .await?;
            }
            // A newer commit or a released lock: lock again at a newer for_update_ts.
        }
    }

    /// Commits with two-phase commit and returns the commit timestamp (`None` if the
    /// transaction wrote nothing).
    ///
    /// Fails with [`Error::WriteConflict`] or [`Error::KeyExists`] when the transaction cannot
    /// commit (everything it wrote is rolled back), and with [`Error::CommitUndetermined`] when
    /// the primary key's commit was sent but its outcome is unknown.
    pub async fn commit(&mut self) -> Result<Option<Timestamp>> {
        self.check_active()?;
        if self.buffer.is_empty() {
            self.state = State::Committed;
            self.heartbeat = None;
            return Ok(None);
        }
        self.state = State::Prewriting;
        let mode = self.commit_mode().await?;
        let (min_commit_ts, one_pc_commit_ts) = match self.prewrite(mode).await {
            Ok(outcome) => outcome,
            Err(e) if mode != CommitMode::TwoPc && is_undetermined(&e) => {
                // The prewrite may have committed the transaction (1PC) or made it
                // committable (async commit): nobody can tell without reading.
                self.state = State::Committed;
                self.heartbeat = None;
                return Err(Error::CommitUndetermined(format!(
                    "{mode:?} prewrite failed: {e}"
                )));
            }
            Err(e) => {
                self.rollback_in_background();
                self.state = State::RolledBack;
                self.heartbeat = None;
                return Err(e);
            }
        };
        if mode == CommitMode::OnePc && one_pc_commit_ts > 0 {
            self.state = State::Committed;
            self.heartbeat = None;
            return Ok(Some(Timestamp::from_version(one_pc_commit_ts)));
        }
        if mode == CommitMode::Async && min_commit_ts > 0 {
            // Every key is prewritten: the transaction is committed at the largest
            // min_commit_ts; the locks are committed in the background.
            let commit_ts = Timestamp::from_version(min_commit_ts);
            self.state = State::Committed;
            self.heartbeat = None;
            self.commit_in_background(self.buffer.keys().cloned().collect(), commit_ts);
            return Ok(Some(commit_ts));
        }
        let commit_ts = self.commit_primary().await?;
        self.state = State::Committed;
        self.heartbeat = None;
        let primary = self.primary();
        let secondaries = self
            .buffer
            .keys()
            .filter(|k| **k != primary)
            .cloned()
            .collect();
        self.commit_in_background(secondaries, commit_ts);
        Ok(Some(commit_ts))
    }

    /// 1PC when asked and every mutation fits one request to one region; async commit when
    /// asked and within client-go's limits; else 2PC.
    async fn commit_mode(&self) -> Result<CommitMode> {
        let size: usize = self
            .buffer
            .iter()
            .map(|(k, m)| k.len() + mutation_size(m))
            .sum();
        if self.options.try_one_pc && size <= RAW_BATCH_BYTES {
            let first = self.buffer.keys().next().expect("non-empty");
            let last = self.buffer.keys().next_back().expect("non-empty");
            let region = self.core.exec.cache.locate(first).await?;
            if region.contains(last) {
                return Ok(CommitMode::OnePc);
            }
        }
        let key_bytes: usize = self.buffer.keys().map(Vec::len).sum();
        if self.options.async_commit
            && self.buffer.len() <= ASYNC_COMMIT_KEYS
            && key_bytes <= ASYNC_COMMIT_KEY_BYTES
        {
            return Ok(CommitMode::Async);
        }
        Ok(CommitMode::TwoPc)
    }

    /// Discards the transaction, removing anything it wrote to TiKV.
    pub async fn rollback(&mut self) -> Result<()> {
        match self.state {
            State::Committed => {
                return Err(Error::InvalidArgument(
                    "the transaction has committed".into(),
                ))
            }
            State::RolledBack => return Ok(()),
            State::Active => {
                let keys = self.locked.iter().cloned().collect();
                let start = self.start_timestamp().version();
                pessimistic_rollback(
                    &self.core,
                    self.interceptors(),
                    start,
                    self.for_update_ts,
                    keys,
                )
                .await?
            }
            State::Prewriting => {
                self.batch_rollback(self.buffer.keys().cloned().collect())
                    .await?
            }
        }
        self.state = State::RolledBack;
        self.heartbeat = None;
        Ok(())
    }

    fn mutations(&self) -> Vec<kvrpcpb::Mutation> {
        self.buffer
            .iter()
            .map(|(key, m)| {
                let (op, value) = match m {
                    Mutation::Put(v) => (kvrpcpb::Op::Put, v.clone()),
                    Mutation::Insert(v) => (kvrpcpb::Op::Insert, v.clone()),
                    Mutation::Delete => (kvrpcpb::Op::Del, Vec::new()),
                    Mutation::Lock => (kvrpcpb::Op::Lock, Vec::new()),
                };
                let assertion = match self.options.assertion_level {
                    kvrpcpb::AssertionLevel::Off => kvrpcpb::Assertion::None,
                    _ => self
                        .assertions
                        .get(key)
                        .copied()
                        .unwrap_or(kvrpcpb::Assertion::None),
                };
                kvrpcpb::Mutation {
                    op: op as i32,
                    key: key.clone(),
                    value,
                    assertion: assertion as i32,
                }
            })
            .collect()
    }

    /// The primary key: the first pessimistically locked key, else the smallest key.
    fn primary(&self) -> Vec<u8> {
        self.primary
            .clone()
            .filter(|p| self.buffer.contains_key(p))
            .unwrap_or_else(|| {
                self.buffer
                    .keys()
                    .next()
                    .cloned()
                    .expect("a non-empty buffer")
            })
    }

    /// client-go's lock TTL: 3 s, growing with the square root of the size above 16 KiB up to
    /// 20 s, plus the time the transaction has run.
    fn lock_ttl(&self, size: usize) -> u64 {
        let mut ttl = DEFAULT_LOCK_TTL_MS;
        if size >= TTL_SIZE_THRESHOLD {
            let mib = size as f64 / (1024.0 * 1024.0);
            ttl = ((6000.0 * mib.sqrt()) as u64).clamp(DEFAULT_LOCK_TTL_MS, MAX_LOCK_TTL_MS);
        }
        let elapsed = self
            .core
            .pd
            .config()
            .runtime
            .now()
            .saturating_duration_since(self.started);
        ttl + elapsed.as_millis() as u64
    }

    /// Prewrites every mutation; returns the largest `min_commit_ts` (0 if any key fell back
    /// from async commit) and the 1PC commit ts (0 if not committed by 1PC).
    async fn prewrite(&self, mode: CommitMode) -> Result<(u64, u64)> {
        let start = self.start_timestamp().version();
        let primary = self.primary();
        let mutations = self.mutations();
        let size: usize = mutations.iter().map(|m| m.key.len() + m.value.len()).sum();
        let ttl = self.lock_ttl(size);
        let txn_size = mutations.len() as u64;
        let for_update_ts = if self.options.pessimistic {
            self.for_update_ts
        } else {
            0
        };
        let locked = &self.locked;
        let secondaries: Vec<Vec<u8>> = self
            .buffer
            .keys()
            .filter(|k| **k != primary)
            .cloned()
            .collect();
        let mut min_commit_ts = (start + 1).max(for_update_ts + 1);
        if mode != CommitMode::TwoPc && !self.options.causal_consistency {
            // Linearizability: commit after every snapshot taken before this commit began.
            let latest = self.core.pd.get_timestamp().await?.version();
            min_commit_ts = min_commit_ts.max(latest + 1);
        }
        let elapsed = self
            .core
            .pd
            .config()
            .runtime
            .now()
            .saturating_duration_since(self.started);
        let max_commit_ts = Timestamp::new(
            self.start_timestamp().physical
                + elapsed.as_millis() as i64
                + ASYNC_COMMIT_SAFE_WINDOW_MS,
            0,
        )
        .version();
        let mutation_count = mutations.len();
        let build = |mutations: Vec<kvrpcpb::Mutation>| {
            // If the region split meanwhile, the groups are partial: never 1PC a part.
            let one_pc = mode == CommitMode::OnePc && mutations.len() == mutation_count;
            kvrpcpb::PrewriteRequest {
                pessimistic_actions: if for_update_ts == 0 {
                    Vec::new()
                } else {
                    mutations
                        .iter()
                        .map(|m| {
                            let action = if locked.contains(&m.key) {
                                PessimisticAction::DoPessimisticCheck
                            } else {
                                PessimisticAction::SkipPessimisticCheck
                            };
                            action as i32
                        })
                        .collect()
                },
                mutations,
                primary_lock: primary.clone(),
                start_version: start,
                lock_ttl: ttl,
                txn_size,
                for_update_ts,
                use_async_commit: mode == CommitMode::Async,
                secondaries: if mode == CommitMode::Async {
                    secondaries.clone()
                } else {
                    Vec::new()
                },
                try_one_pc: one_pc,
                assertion_level: self.options.assertion_level as i32,
                min_commit_ts: if mode == CommitMode::TwoPc {
                    0
                } else {
                    min_commit_ts
                },
                max_commit_ts: if mode == CommitMode::TwoPc {
                    0
                } else {
                    max_commit_ts
                },
                ..Default::default()
            }
        };
        let limits = BatchLimits {
            max_count: usize::MAX,
            max_bytes: RAW_BATCH_BYTES,
            size: |m: &kvrpcpb::Mutation| m.key.len() + m.value.len(),
        };
        let mut backoffer = Backoffer::new(WRITE_BUDGET);
        loop {
            let responses = self
                .core
                .exec
                .run_grouped(
                    mutations.clone(),
                    |m| &m.key,
                    limits,
                    self.interceptors(),
                    &backoffer,
                    &build,
                )
                .await?;
            let mut locks = Vec::new();
            let mut max_min_commit = Some(0u64);
            let mut one_pc_commit_ts = 0;
            for resp in responses {
                max_min_commit = match (max_min_commit, resp.min_commit_ts) {
                    (Some(m), c) if c > 0 => Some(m.max(c)),
                    _ => None,
                };
                one_pc_commit_ts = one_pc_commit_ts.max(resp.one_pc_commit_ts);
                for e in resp.errors {
                    match e.locked {
                        // A lock of a younger transaction: an optimistic txn conflicts at once.
                        Some(lock) if lock.lock_version > start => {
                            return Err(Error::WriteConflict(Box::new(kvrpcpb::WriteConflict {
                                start_ts: start,
                                conflict_ts: lock.lock_version,
                                key: lock.key.clone(),
                                primary: lock.primary_lock.clone(),
                                ..Default::default()
                            })));
                        }
                        Some(lock) => locks.push(lock),
                        None => return Err(Error::from_key_error(e)),
                    }
                }
            }
            if locks.is_empty() {
                return Ok((max_min_commit.unwrap_or(0), one_pc_commit_ts));
            }
            let outcome = self
                .core
                .resolver
                .resolve_for_write(&locks, start, self.interceptors(), &mut backoffer)
                .await?;
            if outcome.blocked {
                let cause = Error::KeyError(Box::new(kvrpcpb::KeyError {
                    locked: locks.into_iter().next(),
                    ..Default::default()
                }));
                let rt = &self.core.pd.config().runtime;
                backoffer.backoff(rt, BackoffKind::TxnLock, cause).await?;
            }
        }
    }

    /// Commits the primary key: the commit point of the transaction.
    async fn commit_primary(&mut self) -> Result<Timestamp> {
        let start = self.start_timestamp().version();
        let primary = self.primary();
        let mut backoffer = Backoffer::new(WRITE_BUDGET);
        let mut commit_ts = self.core.pd.get_timestamp().await?;
        loop {
            let req = kvrpcpb::CommitRequest {
                start_version: start,
                keys: vec![primary.clone()],
                commit_version: commit_ts.version(),
                ..Default::default()
            };
            let sent = self
                .core
                .exec
                .run_at_key(&primary, self.interceptors(), &mut backoffer, req)
                .await;
            let resp = match sent {
                Ok(resp) => resp,
                Err(e) if is_undetermined(&e) => {
                    self.state = State::Committed;
                    self.heartbeat = None;
                    return Err(Error::CommitUndetermined(format!(
                        "the commit of primary key {:?} at {commit_ts:?} may or may not have applied: {e}",
                        Key::from(primary.clone())
                    )));
                }
                Err(e) => {
                    self.rollback_in_background();
                    self.state = State::RolledBack;
                    self.heartbeat = None;
                    return Err(e);
                }
            };
            match resp.error {
                None => return Ok(commit_ts),
                Some(e) if e.commit_ts_expired.is_some() => {
                    // The primary's min_commit_ts was pushed by a reader: commit later.
                    commit_ts = self.core.pd.get_timestamp().await?;
                }
                Some(e) => {
                    self.state = State::RolledBack;
                    self.heartbeat = None;
                    return Err(Error::from_key_error(e));
                }
            }
        }
    }

    /// Commits `keys` in the background; readers resolve any left behind.
    fn commit_in_background(&self, keys: Vec<Vec<u8>>, commit_ts: Timestamp) {
        if keys.is_empty() {
            return;
        }
        let core = self.core.clone();
        let interceptors = self.interceptors().clone();
        let start = self.start_timestamp().version();
        rt::spawn(async move {
            let committed = for_keys(&core, &interceptors, keys, |keys| kvrpcpb::CommitRequest {
                start_version: start,
                keys,
                commit_version: commit_ts.version(),
                ..Default::default()
            })
            .await;
            match committed {
                Ok(responses) => {
                    for e in responses.into_iter().filter_map(|r| r.error) {
                        log::warn!(
                            "committing a secondary of txn {start} failed: {}",
                            Error::from_key_error(e)
                        );
                    }
                }
                Err(e) => log::warn!("committing the secondaries of txn {start} failed: {e}"),
            }
        })
        .detach();
    }

    async fn batch_rollback(&self, keys: Vec<Vec<u8>>) -> Result<()> {
        let start = self.start_timestamp().version();
        batch_rollback(&self.core, self.interceptors(), start, keys).await
    }

    fn rollback_in_background(&self) {
        let core = self.core.clone();
        let interceptors = self.interceptors().clone();
        let start = self.start_timestamp().version();
        let keys: Vec<Vec<u8>> = self.buffer.keys().cloned().collect();
        rt::spawn(async move {
            if let Err(e) = batch_rollback(&core, &interceptors, start, keys).await {
                log::warn!("rolling back txn {start} failed: {e}");
            }
        })
        .detach();
    }
}

fn mutation_size(m: &Mutation) -> usize {
    match m {
        Mutation::Put(v) | Mutation::Insert(v) => v.len(),
        Mutation::Delete | Mutation::Lock => 0,
    }
}

/// Whether a failed request may have reached TiKV and taken effect there.
fn is_undetermined(e: &Error) -> bool {
    match e {
        Error::Transport(_) | Error::Timeout { .. } | Error::Grpc { .. } => e.may_have_been_sent(),
        Error::Region(r) => r.undetermined_result.is_some(),
        Error::BackoffExhausted {
            last, uncertain, ..
        } => *uncertain || is_undetermined(last),
        _ => false,
    }
}

/// Sends one request per region batch of `keys` (at most 16 KiB of keys each) with the
/// write budget, and returns every response.
async fn for_keys<R: KvRequest>(
    core: &Core,
    interceptors: &Interceptors,
    keys: Vec<Vec<u8>>,
    build: impl Fn(Vec<Vec<u8>>) -> R + crate::rt::MaybeSync,
) -> Result<Vec<R::Reply>> {
    let limits: BatchLimits<Vec<u8>> = BatchLimits {
        max_count: usize::MAX,
        max_bytes: RAW_BATCH_BYTES,
        size: Vec::len,
    };
    let backoffer = Backoffer::new(WRITE_BUDGET);
    core.exec
        .run_grouped(keys, |k| k, limits, interceptors, &backoffer, &build)
        .await
}

/// Removes this transaction's pessimistic locks (no rollback record is written).
async fn pessimistic_rollback(
    core: &Core,
    interceptors: &Interceptors,
    start: u64,
    for_update_ts: u64,
    keys: Vec<Vec<u8>>,
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let responses = for_keys(core, interceptors, keys, |keys| {
        kvrpcpb::PessimisticRollbackRequest {
            start_version: start,
            for_update_ts,
            keys,
            ..Default::default()
        }
    })
    .await?;
    match responses.into_iter().flat_map(|r| r.errors).next() {
        Some(e) => Err(Error::from_key_error(e)),
        None => Ok(()),
    }
}

async fn batch_rollback(
    core: &Core,
    interceptors: &Interceptors,
    start: u64,
    keys: Vec<Vec<u8>>,
) -> Result<()> {
    let responses = for_keys(core, interceptors, keys, |keys| {
        kvrpcpb::BatchRollbackRequest {
            start_version: start,
            keys,
            ..Default::default()
        }
    })
    .await?;
    match responses.into_iter().find_map(|r| r.error) {
        Some(e) => Err(Error::from_key_error(e)),
        None => Ok(()),
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        let unfinished =
            matches!(self.state, State::Active | State::Prewriting) && !self.buffer.is_empty();
        if !unfinished {
            return;
        }
        if self.options.drop_check == DropCheck::Warn {
            log::warn!(
                "transaction {:?} dropped without commit or rollback; discarding {} mutations",
                self.start_timestamp(),
                self.buffer.len()
            );
        }
        if self.state == State::Prewriting {
            self.rollback_in_background();
        } else if !self.locked.is_empty() {
            let core = self.core.clone();
            let interceptors = self.interceptors().clone();
            let (start, for_update_ts) = (self.start_timestamp().version(), self.for_update_ts);
            let keys: Vec<Vec<u8>> = self.locked.iter().cloned().collect();
            rt::spawn(async move {
                let released =
                    pessimistic_rollback(&core, &interceptors, start, for_update_ts, keys).await;
                if let Err(e) = released {
                    log::warn!("releasing the pessimistic locks of txn {start} failed: {e}");
                }
            })
            .detach();
        }
    }
}

/// What a pessimistic lock request observed of a key.
#[derive(Debug, Clone)]
struct Observed {
    exists: bool,
    value: Vec<u8>,
}

/// Records what a successful pessimistic lock response says of the keys of its request.
fn observe(
    keys: &[Vec<u8>],
    resp: &kvrpcpb::PessimisticLockResponse,
    options: &LockOptions,
    out: &mut BTreeMap<Vec<u8>, Observed>,
) -> Result<()> {
    if !options.return_values && !options.check_existence {
        return Ok(());
    }
    let values_ok = !options.return_values || resp.values.len() == keys.len();
    if resp.not_founds.len() != keys.len() || !values_ok {
        return Err(Error::UnexpectedResponse(format!(
            "a pessimistic lock of {} keys answered {} values and {} existence flags",
            keys.len(),
            resp.values.len(),
            resp.not_founds.len()
        )));
    }
    for (i, key) in keys.iter().enumerate() {
        let exists = !resp.not_founds[i];
        let value = if options.return_values && exists {
            resp.values[i].clone()
        } else {
            Vec::new()
        };
        out.insert(key.clone(), Observed { exists, value });
    }
    Ok(())
}

/// Splits sorted `keys`, whose first is the primary, into the batch holding the primary (the
/// keys of its region, cut where a request would exceed its size limit) and the rest.
fn primary_batch_first(
    keys: &[Vec<u8>],
    in_primary_region: impl Fn(&[u8]) -> bool,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for key in keys {
        let fits = first.is_empty() || bytes + key.len() <= RAW_BATCH_BYTES;
        if fits && in_primary_region(key) {
            bytes += key.len();
            first.push(key.clone());
        } else {
            rest.push(key.clone());
        }
    }
    (first, rest)
}

/// Marks a deadlock as retryable when the key closing the cycle is one of the lock request's
/// keys (TiKV hashes keys with farmhash `Fingerprint64`, as they were sent).
fn mark_deadlock(e: Error, keys: &[Vec<u8>]) -> Error {
    match e {
        Error::Deadlock { deadlock, .. } => {
            let lock_retryable = keys
                .iter()
                .any(|k| crate::kv::key_hash(k) == deadlock.deadlock_key_hash);
            Error::Deadlock {
                deadlock,
                lock_retryable,
            }
        }
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_batch_is_its_region_keys_within_one_request() {
        let key = |c: u8, len: usize| vec![c; len];
        let keys = vec![key(b'a', 10), key(b'b', 10), key(b'm', 10), key(b'n', 10)];
        let (first, rest) = primary_batch_first(&keys, |k| k[0] < b'c');
        assert_eq!(first, vec![key(b'a', 10), key(b'b', 10)]);
        assert_eq!(rest, vec![key(b'm', 10), key(b'n', 10)]);
        // Past one request's size, the primary's region continues in the second phase.
        let big = RAW_BATCH_BYTES / 2 + 1;
        let keys = vec![key(b'a', big), key(b'b', big), key(b'm', 10)];
        let (first, rest) = primary_batch_first(&keys, |k| k[0] < b'c');
        assert_eq!(first, vec![key(b'a', big)]);
        assert_eq!(rest, vec![key(b'b', big), key(b'm', 10)]);
    }
}
