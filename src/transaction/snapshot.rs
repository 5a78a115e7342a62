//! Reads at one timestamp, resolving the locks they meet.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use futures::Stream;

use crate::backoff::{BackoffKind, Backoffer};
use crate::interceptor::Interceptors;
use crate::proto::kvrpcpb;
use crate::request::{BatchLimits, Locate};
use crate::timestamp::Timestamp;
use crate::{BoundRange, Error, Key, KvPair, Result, Value};

use super::{unbounded_upper, Core};

/// client-go's snapshot read budget: 20 s (doubled by its backoff weight: 40 s).
const READ_BUDGET: std::time::Duration = std::time::Duration::from_secs(40);
/// The most pairs one scan may return.
pub const MAX_SCAN_LIMIT: u32 = 10240;
/// How many pairs a scan stream fetches per request (client-go's scan batch size).
pub(crate) const STREAM_PAGE: u32 = 256;

/// A consistent read-only view of the database at one timestamp.
#[derive(Clone)]
pub struct Snapshot {
    core: Arc<Core>,
    ts: Timestamp,
    read: ReadOptions,
    interceptors: Interceptors,
}

/// Which replica serves a snapshot's reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaRead {
    /// The leader (default).
    #[default]
    Leader,
    /// A follower, in turn (client-go's `ReplicaReadFollower`): it asks the leader for the
    /// read index, so reads stay linearizable while the leader's load is spread; falls back
    /// to the leader when a region has no follower.
    Follower,
}

/// How a snapshot reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadOptions {
    pub isolation: kvrpcpb::IsolationLevel,
    pub replica: ReplicaRead,
    pub stale: bool,
    /// The total deadline of each read (`None`: the configured default).
    pub operation_timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("ts", &self.ts)
            .field("read", &self.read)
            .finish()
    }
}

/// Locks a read may pass (their timestamps go in the request context).
#[derive(Default, Clone)]
struct Passes {
    resolved: Vec<u64>,
    committed: Vec<u64>,
}

impl Snapshot {
    pub(crate) fn new(
        core: Arc<Core>,
        ts: Timestamp,
        read: ReadOptions,
        interceptors: Interceptors,
    ) -> Self {
        Snapshot {
            core,
            ts,
            read,
            interceptors,
        }
    }

    /// The interceptors every request of this snapshot passes through.
    /// A backoffer for one read: the read budget, within the operation deadline.
    fn backoffer(&self) -> Backoffer {
        let config = self.core.pd.config();
        let timeout = self
            .read
            .operation_timeout
            .unwrap_or(config.operation_timeout);
        Backoffer::new(READ_BUDGET).with_timeout(timeout, config.runtime.now())
    }

    pub(crate) fn interceptors(&self) -> &Interceptors {
        &self.interceptors
    }

    /// The timestamp this snapshot reads at.
    pub fn timestamp(&self) -> Timestamp {
        self.ts
    }

    fn context(&self, passes: &Passes) -> Option<kvrpcpb::Context> {
        Some(kvrpcpb::Context {
            isolation_level: self.read.isolation as i32,
            replica_read: self.read.replica == ReplicaRead::Follower,
            stale_read: self.read.stale,
            resolved_locks: passes.resolved.clone(),
            committed_locks: passes.committed.clone(),
            ..Default::default()
        })
    }

    /// Resolves `locks`; waits when one is alive. Extends `passes`.
    async fn handle_locks(
        &self,
        locks: Vec<kvrpcpb::LockInfo>,
        passes: &mut Passes,
        backoffer: &mut Backoffer,
    ) -> Result<()> {
        let outcome = self
            .core
            .resolver
            .resolve(&locks, self.ts.version(), &self.interceptors, backoffer)
            .await?;
        passes.resolved.extend(outcome.resolved);
        passes.committed.extend(outcome.committed);
        if outcome.blocked {
            let cause = Error::KeyError(Box::new(kvrpcpb::KeyError {
                locked: locks.into_iter().next(),
                ..Default::default()
            }));
            let rt = &self.core.pd.config().runtime;
            backoffer
                .backoff(rt, BackoffKind::TxnLockFast, cause)
                .await?;
        }
        Ok(())
    }

    /// The value of `key` at this snapshot's timestamp.
    pub async fn get(&self, key: impl Into<Key>) -> Result<Option<Value>> {
        self.core.check_visibility(self.ts.version()).await?;
        let key = self.core.encode(key.into());
        let mut backoffer = self.backoffer();
        let mut passes = Passes::default();
        loop {
            let req = kvrpcpb::GetRequest {
                context: self.context(&passes),
                key: key.clone(),
                version: self.ts.version(),
                ..Default::default()
            };
            let resp = self
                .core
                .exec
                .run_at_key(&key, &self.interceptors, &mut backoffer, req)
                .await?;
            match resp.error {
                None => return Ok((!resp.not_found).then_some(resp.value)),
                Some(e) => match e.locked {
                    Some(lock) => {
                        self.handle_locks(vec![lock], &mut passes, &mut backoffer)
                            .await?
                    }
                    None => return Err(Error::from_key_error(e)),
                },
            }
        }
    }

    /// The pairs found for `keys`, in key order (missing keys are left out).
    pub async fn batch_get(
        &self,
        keys: impl IntoIterator<Item = impl Into<Key>>,
    ) -> Result<Vec<KvPair>> {
        self.core.check_visibility(self.ts.version()).await?;
        let mut pending: Vec<Vec<u8>> = keys
            .into_iter()
            .map(|k| self.core.encode(k.into()))
            .collect();
        pending.sort();
        pending.dedup();
        let mut backoffer = self.backoffer();
        let mut passes = Passes::default();
        let mut found = Vec::new();
        while !pending.is_empty() {
            let ctx = self.context(&passes);
            let version = self.ts.version();
            let build = |keys: Vec<Vec<u8>>| kvrpcpb::BatchGetRequest {
                context: ctx.clone(),
                keys,
                version,
                ..Default::default()
            };
            let limits: BatchLimits<Vec<u8>> = BatchLimits {
                max_count: 2048,
                max_bytes: usize::MAX,
                size: Vec::len,
            };
            let responses = self
                .core
                .exec
                .run_grouped(
                    pending.clone(),
                    |k| k,
                    limits,
                    &self.interceptors,
                    &mut backoffer,
                    &build,
                )
                .await?;
            let mut locks = Vec::new();
            for resp in responses {
                if let Some(e) = resp.error {
                    return Err(Error::from_key_error(e));
                }
                for pair in resp.pairs {
                    match pair.error {
                        Some(e) => match e.locked {
                            Some(lock) => locks.push(lock),
                            None => return Err(Error::from_key_error(e)),
                        },
                        None => found.push(KvPair::new(self.core.decode(pair.key)?, pair.value)),
                    }
                }
            }
            pending = locks.iter().map(|l| l.key.clone()).collect();
            if !locks.is_empty() {
                self.handle_locks(locks, &mut passes, &mut backoffer)
                    .await?;
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// Up to `limit` pairs in `range`, ascending.
    pub async fn scan(&self, range: impl Into<BoundRange>, limit: u32) -> Result<Vec<KvPair>> {
        self.scan_inner(range.into(), limit, false, false).await
    }

    /// Up to `limit` keys in `range`, ascending.
    pub async fn scan_keys(&self, range: impl Into<BoundRange>, limit: u32) -> Result<Vec<Key>> {
        Ok(self
            .scan_inner(range.into(), limit, true, false)
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
        self.scan_inner(range.into(), limit, false, true).await
    }

    pub(crate) async fn scan_inner(
        &self,
        range: BoundRange,
        limit: u32,
        key_only: bool,
        reverse: bool,
    ) -> Result<Vec<KvPair>> {
        let (start, end) = self.core.encode_range(range)?;
        self.scan_encoded(start, end, limit, key_only, reverse)
            .await?
            .into_iter()
            .map(|(k, v)| Ok(KvPair::new(self.core.decode(k)?, v)))
            .collect()
    }

    /// Pairs of `range`, ascending, fetched 256 at a time as the stream is polled.
    pub fn scan_stream(
        &self,
        range: impl Into<BoundRange>,
    ) -> impl Stream<Item = Result<KvPair>> + '_ {
        self.stream(range.into(), false, false)
    }

    /// Pairs of `range`, descending, fetched page by page.
    pub fn scan_stream_reverse(
        &self,
        range: impl Into<BoundRange>,
    ) -> impl Stream<Item = Result<KvPair>> + '_ {
        self.stream(range.into(), false, true)
    }

    /// Keys of `range`, ascending, fetched page by page without their values.
    pub fn scan_keys_stream(
        &self,
        range: impl Into<BoundRange>,
    ) -> impl Stream<Item = Result<Key>> + '_ {
        use futures::StreamExt;
        self.stream(range.into(), true, false)
            .map(|pair| pair.map(|p| p.key))
    }

    /// Keys of `range`, descending, fetched page by page without their values.
    pub fn scan_keys_stream_reverse(
        &self,
        range: impl Into<BoundRange>,
    ) -> impl Stream<Item = Result<Key>> + '_ {
        use futures::StreamExt;
        self.stream(range.into(), true, true)
            .map(|pair| pair.map(|p| p.key))
    }

    fn stream(
        &self,
        range: BoundRange,
        key_only: bool,
        reverse: bool,
    ) -> impl Stream<Item = Result<KvPair>> + '_ {
        let cursor = Cursor::new(&self.core, range, reverse);
        decoded(
            &self.core,
            paged(cursor, move |c| self.page(c, STREAM_PAGE, key_only)),
        )
    }

    /// One page of at most `limit` pairs from `cursor` (encoded keys, in scan order); the
    /// cursor moves past it.
    pub(crate) async fn page(
        &self,
        mut cursor: Cursor,
        limit: u32,
        key_only: bool,
    ) -> Result<(Cursor, Vec<(Vec<u8>, Vec<u8>)>)> {
        let pairs = self
            .scan_encoded(
                cursor.start.clone(),
                cursor.end.clone(),
                limit,
                key_only,
                cursor.reverse,
            )
            .await?;
        cursor.advance(pairs.len(), limit, pairs.last().map(|p| &p.0[..]));
        Ok((cursor, pairs))
    }

    /// Up to `limit` pairs of the encoded range `[start, end)` (an empty `end` is unbounded).
    async fn scan_encoded(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
        key_only: bool,
        reverse: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if limit > MAX_SCAN_LIMIT {
            return Err(Error::InvalidArgument(format!(
                "scan limit {limit} exceeds the maximum {MAX_SCAN_LIMIT}"
            )));
        }
        self.core.check_visibility(self.ts.version()).await?;
        let mut out = Vec::new();
        let mut backoffer = self.backoffer();
        let mut passes = Passes::default();
        // Forward: the cursor is the next start; reverse: the exclusive upper bound.
        let mut cursor = if reverse {
            if end.is_empty() {
                unbounded_upper()
            } else {
                end.clone()
            }
        } else {
            start.clone()
        };
        while out.len() < limit as usize {
            let remaining = limit - out.len() as u32;
            let locate = if reverse {
                Locate::EndKey(&cursor)
            } else {
                Locate::Key(&cursor)
            };
            let ctx = self.context(&passes);
            let (resp, region) = self
                .core
                .exec
                .run_located(locate, &self.interceptors, &mut backoffer, |region| {
                    let (start_key, end_key) = if reverse {
                        (cursor.clone(), start.clone().max(region.start_key.clone()))
                    } else {
                        let region_end = region.end_key.clone();
                        let end_key = match (end.is_empty(), region_end.is_empty()) {
                            (true, _) => region_end,
                            (false, true) => end.clone(),
                            (false, false) => end.clone().min(region_end),
                        };
                        (cursor.clone(), end_key)
                    };
                    kvrpcpb::ScanRequest {
                        context: ctx.clone(),
                        start_key,
                        end_key,
                        limit: remaining,
                        version: self.ts.version(),
                        key_only,
                        reverse,
                        ..Default::default()
                    }
                })
                .await?;
            if let Some(e) = resp.error {
                return Err(Error::from_key_error(e));
            }
            let locks: Vec<kvrpcpb::LockInfo> = resp
                .pairs
                .iter()
                .filter_map(|p| p.error.as_ref()?.locked.clone())
                .collect();
            if !locks.is_empty() {
                // Resolve, then read this region again from the same cursor.
                self.handle_locks(locks, &mut passes, &mut backoffer)
                    .await?;
                continue;
            }
            for pair in resp.pairs {
                if let Some(e) = pair.error {
                    return Err(Error::from_key_error(e));
                }
                out.push((pair.key, pair.value));
            }
            let done = if reverse {
                region.start_key.is_empty() || region.start_key <= start
            } else {
                region.end_key.is_empty() || (!end.is_empty() && region.end_key >= end)
            };
            if done {
                break;
            }
            cursor = if reverse {
                region.start_key
            } else {
                region.end_key
            };
        }
        out.truncate(limit as usize);
        Ok(out)
    }
}

/// The part of a range a paged scan has not read yet, in encoded keys (an empty `end` is
/// unbounded).
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    pub(crate) start: Vec<u8>,
    pub(crate) end: Vec<u8>,
    pub(crate) reverse: bool,
    pub(crate) done: bool,
}

impl Cursor {
    pub(crate) fn new(core: &Core, range: BoundRange, reverse: bool) -> Result<Cursor> {
        let (start, end) = core.encode_range(range)?;
        Ok(Cursor {
            start,
            end,
            reverse,
            done: false,
        })
    }

    /// Moves past a page of `got` pairs asked with `limit`, whose last key in scan order is
    /// `last`; a short page means the range is exhausted.
    fn advance(&mut self, got: usize, limit: u32, last: Option<&[u8]>) {
        match last {
            Some(last) if got >= limit as usize => {
                if self.reverse {
                    self.end = last.to_vec();
                } else {
                    self.start = last.iter().copied().chain([0]).collect();
                }
            }
            _ => self.done = true,
        }
    }

    /// The half-open part of the range read between this cursor and `after` (the same
    /// cursor moved past one page); an empty upper bound is unbounded.
    pub(crate) fn covered(&self, after: &Cursor) -> (Vec<u8>, Vec<u8>) {
        match (self.reverse, after.done) {
            (false, true) => (self.start.clone(), self.end.clone()),
            (false, false) => (self.start.clone(), after.start.clone()),
            (true, true) => (self.start.clone(), self.end.clone()),
            (true, false) => (after.end.clone(), self.end.clone()),
        }
    }
}

/// A stream over the pages `fetch` returns from `cursor` until it is exhausted.
pub(crate) fn paged<'a, T, F, Fut>(
    cursor: Result<Cursor>,
    fetch: F,
) -> impl Stream<Item = Result<T>> + 'a
where
    T: 'a,
    F: Fn(Cursor) -> Fut + Copy + 'a,
    Fut: Future<Output = Result<(Cursor, Vec<T>)>> + 'a,
{
    futures::stream::unfold(Some((cursor, VecDeque::new())), move |state| async move {
        let (cursor, mut page) = state?;
        let mut cursor = match cursor {
            Ok(c) => c,
            Err(e) => return Some((Err(e), None)),
        };
        loop {
            if let Some(item) = page.pop_front() {
                return Some((Ok(item), Some((Ok(cursor), page))));
            }
            if cursor.done {
                return None;
            }
            match fetch(cursor).await {
                Ok((next, items)) => {
                    cursor = next;
                    page = items.into();
                }
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
}

/// The stream of `pairs` with their keys decoded.
pub(crate) fn decoded<'a>(
    core: &'a Core,
    pairs: impl Stream<Item = Result<(Vec<u8>, Vec<u8>)>> + 'a,
) -> impl Stream<Item = Result<KvPair>> + 'a {
    use futures::StreamExt;
    pairs.map(move |pair| {
        let (k, v) = pair?;
        Ok(KvPair::new(core.decode(k)?, v))
    })
}
