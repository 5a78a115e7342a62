//! A transaction: a local write buffer over a snapshot. Committing is in `commit.rs`,
//! pessimistic locking in `pessimistic.rs`, the writes they send in bulk in `requests.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};

use crate::backoff::Backoffer;
use crate::interceptor::Interceptors;
use crate::proto::kvrpcpb;
use crate::rt::{self, Instant};
use crate::timestamp::Timestamp;
use crate::{BoundRange, Error, Key, KvPair, Result, Value};

use super::options::{DropCheck, TransactionOptions};
use super::requests::release_locks;
use super::snapshot::{decoded, paged, Cursor, ReadOptions, MAX_SCAN_LIMIT, STREAM_PAGE};
use super::{Core, Snapshot};

/// How a commit is attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommitMode {
    TwoPc,
    Async,
    OnePc,
}

/// A commit that may have reached TiKV: what finishing it, or asking about it, needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pending {
    pub mode: CommitMode,
    /// The primary key, encoded.
    pub primary: Vec<u8>,
    /// Two-phase commit: the timestamp sent with the primary's commit.
    pub commit_ts: Option<Timestamp>,
}

/// A buffered write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Mutation {
    Put(Value),
    Insert(Value),
    Delete,
    Lock,
}

impl Mutation {
    /// The size of the value it writes.
    pub(super) fn value_len(&self) -> usize {
        match self {
            Mutation::Put(v) | Mutation::Insert(v) => v.len(),
            Mutation::Delete | Mutation::Lock => 0,
        }
    }
}

/// How far the transaction got (see the commit module for what each state allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    Active,
    /// Prewrite may have started: locks may exist on TiKV, nothing is committed.
    Prewriting,
    /// A request that decides the commit may have reached TiKV.
    Committing(Pending),
    Committed,
    RolledBack,
}

/// A transaction. Reads see its own writes; nothing reaches TiKV before [`Transaction::commit`].
pub struct Transaction {
    pub(super) core: Arc<Core>,
    snapshot: Snapshot,
    pub(super) buffer: BTreeMap<Vec<u8>, Mutation>,
    pub(super) state: State,
    pub(super) options: TransactionOptions,
    pub(super) started: Instant,
    /// Pessimistic: the primary, chosen by the first lock.
    pub(super) primary: Option<Vec<u8>>,
    /// Pessimistic: the keys locked so far.
    pub(super) locked: BTreeSet<Vec<u8>>,
    /// Pessimistic: the largest for_update_ts used (shared with the guard that releases a
    /// cancelled lock request's locks).
    pub(super) for_update_ts: Arc<AtomicU64>,
    /// Keeps the primary lock alive while the transaction runs; dropping it stops.
    pub(super) heartbeat: Option<rt::JoinHandle<()>>,
    /// Existence assertions sent with the keys' mutations at prewrite.
    pub(super) assertions: BTreeMap<Vec<u8>, kvrpcpb::Assertion>,
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
            for_update_ts: Arc::default(),
            heartbeat: None,
            assertions: BTreeMap::new(),
        }
    }

    pub(super) fn interceptors(&self) -> &Interceptors {
        self.snapshot.interceptors()
    }

    /// The start timestamp.
    pub fn start_timestamp(&self) -> Timestamp {
        self.snapshot.timestamp()
    }

    pub(super) fn start_version(&self) -> u64 {
        self.start_timestamp().version()
    }

    /// Pessimistic: the largest for_update_ts used so far.
    pub(super) fn for_update_ts(&self) -> u64 {
        self.for_update_ts.load(Ordering::Acquire)
    }

    /// How long the transaction has run.
    pub(super) fn age(&self) -> Duration {
        let rt = &self.core.pd.config().runtime;
        rt.now().saturating_duration_since(self.started)
    }

    /// The total deadline of each of the transaction's operations.
    pub(super) fn operation_timeout(&self) -> Duration {
        self.options
            .operation_timeout
            .unwrap_or(self.core.pd.config().operation_timeout)
    }

    /// A backoffer for one operation of the transaction: `budget` of sleep, within the
    /// operation deadline.
    pub(super) fn operation_backoffer(&self, budget: Duration) -> Backoffer {
        let rt = &self.core.pd.config().runtime;
        Backoffer::new(budget).with_timeout(self.operation_timeout(), rt.now())
    }

    /// Moves to a final state and stops the heartbeats.
    pub(super) fn finish(&mut self, state: State) {
        self.state = state;
        self.heartbeat = None;
    }

    pub(super) fn check_active(&self) -> Result<()> {
        match &self.state {
            State::Active => Ok(()),
            other => Err(Error::InvalidArgument(format!(
                "the transaction is no longer active ({other:?})"
            ))),
        }
    }

    pub(super) fn buffered(&self, key: &Key) -> Option<&Mutation> {
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
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let State::Committing(pending) = &self.state {
            if super::commit::rollback_undetermined_planted() {
                self.rollback_in_background();
            } else {
                self.finish_in_background(&pending.clone());
            }
            return;
        }
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
            let keys: Vec<Vec<u8>> = self.locked.iter().cloned().collect();
            release_locks(
                self.core.clone(),
                self.interceptors().clone(),
                self.start_version(),
                self.for_update_ts(),
                keys,
            );
        }
    }
}
