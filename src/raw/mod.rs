//! The raw key-value client: keys and values without transactions, as client-go's `rawkv`.
//!
//! ```no_run
//! # async fn demo() -> tikv_client::Result<()> {
//! use tikv_client::RawClient;
//!
//! let client = RawClient::new(vec!["127.0.0.1:2379"]).await?;
//! client.put("k1", "v1").await?;
//! assert_eq!(client.get("k1").await?, Some(b"v1".to_vec()));
//! let pairs = client.scan("a".."z", 100).await?;
//! client.delete_range("a".."z").await?;
//! # Ok(())
//! # }
//! ```
//!
//! Every operation retries region errors and connection failures as client-go does, within a
//! 20 s sleep budget and a total deadline ([`Config::operation_timeout`], or
//! [`RawClient::with_operation_timeout`]). Batches are split by region and sent concurrently
//! (at most 16 KiB and 512 pairs per request). With a keyspace configured
//! ([`Config::with_keyspace`]) the client speaks API v2 and stays inside that keyspace.
//!
//! # Writes are at least once
//!
//! As in client-go, a put or delete whose attempt failed after it may have reached TiKV (a
//! broken connection, a timeout) is sent again: it may take effect twice, which a put or a
//! delete of the same value cannot tell. When the retries run out the error says whether an
//! attempt may have taken effect ([`Error::may_have_been_sent`]); a batch write that failed
//! in part names the keys it could not confirm ([`Error::PartialWrite`]). A compare-and-swap
//! is not idempotent: after such an attempt, a "swap failed" answer cannot be told from this
//! very swap having succeeded, so it is reported as [`Error::WriteUndetermined`] instead.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;

use crate::backoff::{Backoffer, RAW_OPERATION_BUDGET};
use crate::interceptor::{ContextOptions, Interceptor, Interceptors};
use crate::kv::keyspace::{KeyMode, Keyspace};
use crate::pd::PdClient;
use crate::proto::kvrpcpb;
use crate::region_cache::{KeyEncoding, Region, RegionCache};
use crate::request::{
    BatchLimits, Executor, KvRequest, Locate, RequestOptions, Routing, Settled, RAW_BATCH_BYTES,
    RAW_BATCH_COUNT,
};
use crate::{BoundRange, Config, Error, Key, KvPair, Result, Value};

/// The most pairs one raw scan may return (client-go's `MaxRawKVScanLimit`).
pub const MAX_SCAN_LIMIT: u32 = 10240;
/// The largest key TiKV accepts (`storage.max-key-size`).
pub const MAX_KEY_SIZE: usize = 8192;
/// The largest value this client sends: TiKV's default `raft-entry-max-size`, 8 MiB.
pub const MAX_VALUE_SIZE: usize = 8 * 1024 * 1024;
/// How many pairs [`RawClient::scan_stream`] fetches per request.
const STREAM_PAGE: u32 = 1024;

/// A raw key-value client. Cheap to clone; clones share connections and caches.
#[derive(Clone)]
pub struct RawClient {
    exec: Arc<Executor>,
    pd: PdClient,
    keyspace: Option<Keyspace>,
    cf: String,
    atomic: bool,
    interceptors: Interceptors,
    budget: Duration,
    /// The total deadline of each operation (`None`: the configured default).
    operation_timeout: Option<Duration>,
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawClient")
            .field("cluster_id", &self.pd.cluster_id())
            .field("keyspace", &self.keyspace)
            .field("cf", &self.cf)
            .field("atomic", &self.atomic)
            .finish()
    }
}

/// Which raw column family to use (API v1 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnFamily {
    /// The default column family.
    Default,
    /// The `lock` column family.
    Lock,
    /// The `write` column family.
    Write,
}

impl ColumnFamily {
    fn name(self) -> &'static str {
        match self {
            ColumnFamily::Default => "default",
            ColumnFamily::Lock => "lock",
            ColumnFamily::Write => "write",
        }
    }
}

impl RawClient {
    /// Connects to the cluster through its PD endpoints, with the default configuration.
    pub async fn new<S: AsRef<str>>(pd_endpoints: Vec<S>) -> Result<RawClient> {
        Self::new_with_config(pd_endpoints, Config::default()).await
    }

    /// Connects with `config`. With [`Config::keyspace`] set, the keyspace is loaded from PD and
    /// the client speaks API v2.
    pub async fn new_with_config<S: AsRef<str>>(
        pd_endpoints: Vec<S>,
        config: Config,
    ) -> Result<RawClient> {
        let pd = PdClient::connect(&pd_endpoints, &config).await?;
        let (keyspace, encoding, api_version) = match &config.keyspace {
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
                    Some(Keyspace::new(KeyMode::Raw, id)?),
                    KeyEncoding::Memcomparable,
                    kvrpcpb::ApiVersion::V2,
                )
            }
            None => (None, KeyEncoding::Plain, kvrpcpb::ApiVersion::V1),
        };
        let cache = RegionCache::new(pd.clone(), encoding);
        let exec = Executor::new(cache, config, api_version, keyspace.map(|k| k.id()));
        Ok(RawClient {
            exec: Arc::new(exec),
            pd,
            keyspace,
            cf: String::new(),
            atomic: false,
            interceptors: Interceptors::default(),
            budget: RAW_OPERATION_BUDGET,
            operation_timeout: None,
        })
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.pd.cluster_id()
    }

    /// The PD client this client uses.
    pub fn pd_client(&self) -> &PdClient {
        &self.pd
    }

    /// A client that uses column family `cf` (API v1; API v2 has none).
    #[must_use = "with_cf returns a new client"]
    pub fn with_cf(&self, cf: ColumnFamily) -> RawClient {
        RawClient {
            cf: cf.name().to_owned(),
            ..self.clone()
        }
    }

    /// A client in atomic mode: writes go through TiKV's serialized path so that
    /// [`RawClient::compare_and_swap`] is linearizable. Every writer of CAS keys must use it.
    #[must_use = "with_atomic_for_cas returns a new client"]
    pub fn with_atomic_for_cas(&self) -> RawClient {
        RawClient {
            atomic: true,
            ..self.clone()
        }
    }

    /// A client whose requests also pass through `interceptor`.
    #[must_use = "with_interceptor returns a new client"]
    pub fn with_interceptor(&self, interceptor: impl Interceptor + 'static) -> RawClient {
        RawClient {
            interceptors: self.interceptors.clone().with(interceptor),
            ..self.clone()
        }
    }

    /// A client that labels its requests with `source` (shorthand for a [`ContextOptions`]
    /// interceptor).
    #[must_use = "with_request_source returns a new client"]
    pub fn with_request_source(&self, source: impl Into<String>) -> RawClient {
        self.with_interceptor(ContextOptions::default().request_source(source))
    }

    /// A client whose operations may sleep `budget` in total on retries (default 20 s; zero
    /// allows no retry that needs a sleep).
    #[must_use = "with_backoff_budget returns a new client"]
    pub fn with_backoff_budget(&self, budget: Duration) -> RawClient {
        RawClient {
            budget,
            ..self.clone()
        }
    }

    /// A client whose operations may take `timeout` in total, attempts and retries included
    /// (default [`Config::operation_timeout`]).
    #[must_use = "with_operation_timeout returns a new client"]
    pub fn with_operation_timeout(&self, timeout: Duration) -> RawClient {
        RawClient {
            operation_timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// A backoffer for one operation: the retry budget, within the operation deadline.
    fn backoffer(&self) -> Backoffer {
        let config = self.pd.config();
        let timeout = self.operation_timeout.unwrap_or(config.operation_timeout);
        Backoffer::new(self.budget).with_timeout(timeout, config.runtime.now())
    }

    fn cf(&self) -> String {
        self.cf.clone()
    }

    fn encode(&self, key: Vec<u8>) -> Vec<u8> {
        match &self.keyspace {
            Some(ks) => ks.encode_key(&key),
            None => key,
        }
    }

    fn decode(&self, key: Vec<u8>) -> Result<Key> {
        match &self.keyspace {
            Some(ks) => ks.decode_key(&key).map(|k| Key::from(k.to_vec())),
            None => Ok(Key::from(key)),
        }
    }

    /// `[start, end)` in request-key space; an empty end stays unbounded in API v1 and becomes
    /// the keyspace end in API v2.
    fn encode_range(&self, range: BoundRange) -> Result<(Vec<u8>, Vec<u8>)> {
        let (start, end) = range.to_half_open()?;
        Ok(match &self.keyspace {
            Some(ks) => ks.encode_range(&start, &end),
            None => (start.into_bytes(), end.into_bytes()),
        })
    }

    /// Sends a lowered kvproto request (any raw request, or `SplitRegion`) to the region
    /// `options` names, filling its context and retrying region errors as every operation of
    /// this client does. The response is returned as TiKV sent it, minus the region error.
    ///
    /// ```no_run
    /// # async fn demo(client: tikv_client::RawClient) -> tikv_client::Result<()> {
    /// use tikv_client::proto::kvrpcpb;
    /// use tikv_client::request::RequestOptions;
    ///
    /// let request = kvrpcpb::RawGetRequest { key: b"k".to_vec(), ..Default::default() };
    /// let response = client.send(request, RequestOptions::key("k")).await?;
    /// println!("found: {}", !response.not_found);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send<R: KvRequest>(
        &self,
        request: R,
        options: RequestOptions,
    ) -> Result<R::Reply> {
        let config = self.pd.config();
        let timeout = options.timeout.unwrap_or(config.operation_timeout);
        let mut backoffer =
            Backoffer::new(options.backoff_budget).with_timeout(timeout, config.runtime.now());
        let locate = match &options.routing {
            Routing::Key(k) => Locate::Key(k),
            Routing::EndKey(k) => Locate::EndKey(k),
        };
        let (resp, _) = self
            .exec
            .run_located(locate, &self.interceptors, &mut backoffer, |_| {
                request.clone()
            })
            .await?;
        Ok(resp)
    }

    /// Sends a request to the region holding `key`, with this client's retries.
    async fn at_key<R: KvRequest>(
        &self,
        key: &[u8],
        build: impl FnOnce() -> R,
    ) -> Result<R::Reply> {
        self.exec
            .run_at_key(key, &self.interceptors, &mut self.backoffer(), build())
            .await
    }

    /// Walks the regions of `[start, end)` in order, sending each the request `build` makes
    /// for the part of the range it holds (from the cursor to the range end clipped to the
    /// region).
    async fn for_each_region<R: KvRequest>(
        &self,
        start: Vec<u8>,
        end: &[u8],
        build: impl Fn(Vec<u8>, Vec<u8>) -> R,
        mut consume: impl FnMut(R::Reply) -> Result<()>,
    ) -> Result<()> {
        let mut backoffer = self.backoffer();
        let mut cursor = start;
        loop {
            let (resp, region) = self
                .exec
                .run_located(
                    Locate::Key(&cursor),
                    &self.interceptors,
                    &mut backoffer,
                    |region| build(cursor.clone(), clip_end(end, region)),
                )
                .await?;
            consume(resp)?;
            match next_start(&region, end) {
                Some(next) => cursor = next,
                None => return Ok(()),
            }
        }
    }

    /// The value of `key`, or `None`.
    pub async fn get(&self, key: impl Into<Key>) -> Result<Option<Value>> {
        let key = self.encode(check_key(key.into())?);
        let cf = self.cf();
        let resp = self
            .at_key(&key, || kvrpcpb::RawGetRequest {
                key: key.clone(),
                cf: cf.clone(),
                ..Default::default()
            })
            .await?;
        rejected(resp.error)?;
        Ok((!resp.not_found).then_some(resp.value))
    }

    /// The pairs found for `keys`, in key order (missing keys are left out).
    pub async fn batch_get(
        &self,
        keys: impl IntoIterator<Item = impl Into<Key>>,
    ) -> Result<Vec<KvPair>> {
        let keys = self.encode_keys(keys)?;
        let cf = self.cf();
        let build = |keys: Vec<Vec<u8>>| kvrpcpb::RawBatchGetRequest {
            keys,
            cf: cf.clone(),
            ..Default::default()
        };
        let responses = self
            .exec
            .run_grouped(
                keys,
                |k| k,
                key_limits(),
                &self.interceptors,
                &mut self.backoffer(),
                &build,
            )
            .await?;
        let mut pairs = Vec::new();
        for resp in responses {
            for pair in resp.pairs {
                if let Some(e) = pair.error {
                    return Err(Error::Rejected(e.abort));
                }
                pairs.push(KvPair::new(self.decode(pair.key)?, pair.value));
            }
        }
        pairs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(pairs)
    }

    /// One entry per input key, in input order: its value or `None` (client-go's `BatchGet`).
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

    /// Sets `key` to `value`.
    pub async fn put(&self, key: impl Into<Key>, value: impl Into<Value>) -> Result<()> {
        self.put_with_ttl(key, value, 0).await
    }

    /// Sets `key` to `value` for `ttl_secs` seconds (0 = forever). Needs a cluster that stores
    /// TTLs (API v1ttl or v2); others answer [`Error::Unsupported`].
    pub async fn put_with_ttl(
        &self,
        key: impl Into<Key>,
        value: impl Into<Value>,
        ttl_secs: u64,
    ) -> Result<()> {
        let key = self.encode(check_key(key.into())?);
        let value = check_value(value.into())?;
        let cf = self.cf();
        let resp = self
            .at_key(&key, || kvrpcpb::RawPutRequest {
                key: key.clone(),
                value: value.clone(),
                cf: cf.clone(),
                ttl: ttl_secs,
                for_cas: self.atomic,
                ..Default::default()
            })
            .await?;
        rejected(resp.error)
    }

    /// Writes many pairs, grouped by region (at most 16 KiB and 512 pairs per request).
    pub async fn batch_put(
        &self,
        pairs: impl IntoIterator<Item = impl Into<KvPair>>,
    ) -> Result<()> {
        self.batch_put_with_ttl(pairs, 0).await
    }

    /// Writes many pairs that expire after `ttl_secs` seconds (0 = never).
    pub async fn batch_put_with_ttl(
        &self,
        pairs: impl IntoIterator<Item = impl Into<KvPair>>,
        ttl_secs: u64,
    ) -> Result<()> {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .into_iter()
            .map(|p| {
                let (k, v) = p.into().into_parts();
                Ok((self.encode(check_key(k)?), check_value(v)?))
            })
            .collect::<Result<_>>()?;
        let cf = self.cf();
        let atomic = self.atomic;
        let build = |pairs: Vec<(Vec<u8>, Vec<u8>)>| kvrpcpb::RawBatchPutRequest {
            ttls: if ttl_secs > 0 {
                vec![ttl_secs]
            } else {
                Vec::new()
            },
            pairs: pairs
                .into_iter()
                .map(|(key, value)| kvrpcpb::KvPair {
                    key,
                    value,
                    ..Default::default()
                })
                .collect(),
            cf: cf.clone(),
            for_cas: atomic,
            ..Default::default()
        };
        let limits = BatchLimits {
            max_count: RAW_BATCH_COUNT,
            max_bytes: RAW_BATCH_BYTES,
            size: |(k, v): &(Vec<u8>, Vec<u8>)| k.len() + v.len(),
        };
        let settled = self
            .exec
            .run_grouped_settled(
                pairs,
                |(k, _)| k,
                limits,
                &self.interceptors,
                &mut self.backoffer(),
                &build,
            )
            .await;
        self.confirm(settled, |(k, _)| k, |r| rejected(r.error))
    }

    /// Checks every region group of a batch write: all confirmed, or
    /// [`Error::PartialWrite`] naming the keys that were not (their request failed, or TiKV
    /// refused it), with the first failure as the cause.
    fn confirm<T, Reply>(
        &self,
        settled: Settled<T, Reply>,
        key: fn(T) -> Vec<u8>,
        check: impl Fn(Reply) -> Result<()>,
    ) -> Result<()> {
        let mut unconfirmed = Vec::new();
        let mut cause = None;
        for (items, reply) in settled {
            if let Err(e) = reply.and_then(&check) {
                cause.get_or_insert(e);
                unconfirmed.extend(items.into_iter().map(key));
            }
        }
        let Some(cause) = cause else {
            return Ok(());
        };
        let mut keys = unconfirmed
            .into_iter()
            .map(|k| self.decode(k))
            .collect::<Result<Vec<Key>>>()?;
        keys.sort();
        Err(Error::PartialWrite {
            unconfirmed: keys,
            cause: Box::new(cause),
        })
    }

    /// Deletes `key` (deleting a missing key is not an error).
    pub async fn delete(&self, key: impl Into<Key>) -> Result<()> {
        let key = self.encode(check_key(key.into())?);
        let cf = self.cf();
        let resp = self
            .at_key(&key, || kvrpcpb::RawDeleteRequest {
                key: key.clone(),
                cf: cf.clone(),
                for_cas: self.atomic,
                ..Default::default()
            })
            .await?;
        rejected(resp.error)
    }

    /// Deletes many keys, grouped by region.
    pub async fn batch_delete(&self, keys: impl IntoIterator<Item = impl Into<Key>>) -> Result<()> {
        let keys = self.encode_keys(keys)?;
        let cf = self.cf();
        let atomic = self.atomic;
        let build = |keys: Vec<Vec<u8>>| kvrpcpb::RawBatchDeleteRequest {
            keys,
            cf: cf.clone(),
            for_cas: atomic,
            ..Default::default()
        };
        let settled = self
            .exec
            .run_grouped_settled(
                keys,
                |k| k,
                key_limits(),
                &self.interceptors,
                &mut self.backoffer(),
                &build,
            )
            .await;
        self.confirm(settled, |k| k, |r| rejected(r.error))
    }

    /// Deletes every key in `range`, region by region.
    pub async fn delete_range(&self, range: impl Into<BoundRange>) -> Result<()> {
        let (start, end) = self.encode_range(range.into())?;
        let cf = self.cf();
        let build = |start_key, end_key| kvrpcpb::RawDeleteRangeRequest {
            start_key,
            end_key,
            cf: cf.clone(),
            ..Default::default()
        };
        self.for_each_region(start, &end, build, |resp| rejected(resp.error))
            .await
    }

    /// Up to `limit` pairs (at most [`MAX_SCAN_LIMIT`]) in `range`, in ascending key order.
    pub async fn scan(&self, range: impl Into<BoundRange>, limit: u32) -> Result<Vec<KvPair>> {
        self.scan_inner(range.into(), limit, false, false).await
    }

    /// As [`RawClient::scan`], returning keys only.
    pub async fn scan_keys(&self, range: impl Into<BoundRange>, limit: u32) -> Result<Vec<Key>> {
        let pairs = self.scan_inner(range.into(), limit, true, false).await?;
        Ok(pairs.into_iter().map(|p| p.key).collect())
    }

    /// Up to `limit` pairs in `range`, in descending key order.
    pub async fn scan_reverse(
        &self,
        range: impl Into<BoundRange>,
        limit: u32,
    ) -> Result<Vec<KvPair>> {
        self.scan_inner(range.into(), limit, false, true).await
    }

    /// As [`RawClient::scan_reverse`], returning keys only.
    pub async fn scan_keys_reverse(
        &self,
        range: impl Into<BoundRange>,
        limit: u32,
    ) -> Result<Vec<Key>> {
        let pairs = self.scan_inner(range.into(), limit, true, true).await?;
        Ok(pairs.into_iter().map(|p| p.key).collect())
    }

    /// Scans several ranges, up to `each_limit` pairs from each, concatenated in range order.
    pub async fn batch_scan(
        &self,
        ranges: impl IntoIterator<Item = impl Into<BoundRange>>,
        each_limit: u32,
    ) -> Result<Vec<KvPair>> {
        let mut out = Vec::new();
        for range in ranges {
            out.extend(self.scan(range, each_limit).await?);
        }
        Ok(out)
    }

    /// As [`RawClient::batch_scan`], returning keys only.
    pub async fn batch_scan_keys(
        &self,
        ranges: impl IntoIterator<Item = impl Into<BoundRange>>,
        each_limit: u32,
    ) -> Result<Vec<Key>> {
        let mut out = Vec::new();
        for range in ranges {
            out.extend(self.scan_keys(range, each_limit).await?);
        }
        Ok(out)
    }

    /// Every pair in `range`, in ascending order, fetched lazily page by page: nothing is
    /// requested until the stream is polled, and there is no limit.
    pub fn scan_stream(
        &self,
        range: impl Into<BoundRange>,
    ) -> impl Stream<Item = Result<KvPair>> + '_ {
        let range = range.into();
        let first = range.to_half_open();
        futures::stream::unfold(
            Some((first, Vec::<KvPair>::new())),
            move |state| async move {
                let (bounds, mut page) = state?;
                let (start, end) = match bounds {
                    Ok(b) => b,
                    Err(e) => return Some((Err(e), None)),
                };
                if page.is_empty() {
                    let range = BoundRange::from(start.clone()..end.clone());
                    match self.scan_inner(range, STREAM_PAGE, false, false).await {
                        Ok(pairs) if pairs.is_empty() => return None,
                        Ok(pairs) => {
                            page = pairs;
                            page.reverse();
                        }
                        Err(e) => return Some((Err(e), None)),
                    }
                }
                let pair = page.pop().expect("non-empty page");
                let next_start = pair.key.next_key();
                Some((Ok(pair), Some((Ok((next_start, end)), page))))
            },
        )
    }

    async fn scan_inner(
        &self,
        range: BoundRange,
        limit: u32,
        key_only: bool,
        reverse: bool,
    ) -> Result<Vec<KvPair>> {
        if limit > MAX_SCAN_LIMIT {
            return Err(Error::InvalidArgument(format!(
                "scan limit {limit} exceeds the maximum {MAX_SCAN_LIMIT}"
            )));
        }
        let (start, end) = self.encode_range(range)?;
        let mut out: Vec<KvPair> = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let cf = self.cf();
        let mut backoffer = self.backoffer();
        if !reverse {
            self.exec.cache.preload(&start, &end).await?;
            let mut cursor = start;
            loop {
                let remaining = limit - out.len() as u32;
                let (resp, region) = self
                    .exec
                    .run_located(
                        Locate::Key(&cursor),
                        &self.interceptors,
                        &mut backoffer,
                        |_| kvrpcpb::RawScanRequest {
                            start_key: cursor.clone(),
                            end_key: end.clone(),
                            limit: remaining,
                            key_only,
                            cf: cf.clone(),
                            ..Default::default()
                        },
                    )
                    .await?;
                for pair in resp.kvs {
                    if let Some(e) = pair.error {
                        return Err(Error::Rejected(e.abort));
                    }
                    let in_range = pair.key >= cursor && (end.is_empty() || pair.key < end);
                    if in_range && out.len() < limit as usize {
                        out.push(KvPair::new(self.decode(pair.key)?, pair.value));
                    }
                }
                if out.len() >= limit as usize {
                    return Ok(out);
                }
                match next_start(&region, &end) {
                    Some(next) => cursor = next,
                    None => return Ok(out),
                }
            }
        }
        // Reverse: scan downward from `end` (exclusive) to `start` (inclusive).
        let mut upper = if end.is_empty() {
            unbounded_upper()
        } else {
            end
        };
        loop {
            let remaining = limit - out.len() as u32;
            let (resp, region) = self
                .exec
                .run_located(
                    Locate::EndKey(&upper),
                    &self.interceptors,
                    &mut backoffer,
                    |region| kvrpcpb::RawScanRequest {
                        start_key: upper.clone(),
                        end_key: start.clone().max(region.start_key.clone()),
                        limit: remaining,
                        key_only,
                        cf: cf.clone(),
                        reverse: true,
                        ..Default::default()
                    },
                )
                .await?;
            for pair in resp.kvs {
                if let Some(e) = pair.error {
                    return Err(Error::Rejected(e.abort));
                }
                if pair.key < upper && pair.key >= start && out.len() < limit as usize {
                    out.push(KvPair::new(self.decode(pair.key)?, pair.value));
                }
            }
            if out.len() >= limit as usize
                || region.start_key.is_empty()
                || region.start_key <= start
            {
                return Ok(out);
            }
            upper = region.start_key;
        }
    }

    /// The remaining time to live of `key` in seconds: `None` if the key is absent or
    /// expired, `Some(0)` if it never expires.
    pub async fn get_key_ttl_secs(&self, key: impl Into<Key>) -> Result<Option<u64>> {
        let key = self.encode(check_key(key.into())?);
        let cf = self.cf();
        let resp = self
            .at_key(&key, || kvrpcpb::RawGetKeyTtlRequest {
                key: key.clone(),
                cf: cf.clone(),
                ..Default::default()
            })
            .await?;
        rejected(resp.error)?;
        Ok((!resp.not_found).then_some(resp.ttl))
    }

    /// Sets `key` to `new` if its current value is `expected` (`None` = absent). Returns the
    /// previous value and whether the swap happened. Needs [`RawClient::with_atomic_for_cas`].
    pub async fn compare_and_swap(
        &self,
        key: impl Into<Key>,
        expected: Option<Value>,
        new: impl Into<Value>,
    ) -> Result<(Option<Value>, bool)> {
        self.compare_and_swap_with_ttl(key, expected, new, 0).await
    }

    /// As [`RawClient::compare_and_swap`], with a time to live for the new value.
    pub async fn compare_and_swap_with_ttl(
        &self,
        key: impl Into<Key>,
        expected: Option<Value>,
        new: impl Into<Value>,
        ttl_secs: u64,
    ) -> Result<(Option<Value>, bool)> {
        if !self.atomic {
            return Err(Error::InvalidArgument(
                "compare_and_swap needs atomic mode: use RawClient::with_atomic_for_cas()".into(),
            ));
        }
        let key = self.encode(check_key(key.into())?);
        let value = check_value(new.into())?;
        let request = kvrpcpb::RawCasRequest {
            key: key.clone(),
            value,
            previous_not_exist: expected.is_none(),
            previous_value: expected.unwrap_or_default(),
            cf: self.cf(),
            ttl: ttl_secs,
            ..Default::default()
        };
        let mut backoffer = self.backoffer();
        let resp = self
            .exec
            .run_at_key(&key, &self.interceptors, &mut backoffer, request)
            .await?;
        rejected(resp.error)?;
        if !resp.succeed && backoffer.is_uncertain() && !cas_resend_trusted() {
            // An earlier attempt may have swapped: this answer may describe its effect.
            return Err(Error::WriteUndetermined {
                operation: "compare_and_swap",
                reason: "an attempt failed after it may have reached TiKV, and the resent \
                         swap found a value it did not expect, which the first attempt may have \
                         written"
                    .into(),
            });
        }
        let previous = (!resp.previous_not_exist).then_some(resp.previous_value);
        Ok((previous, resp.succeed))
    }

    /// The CRC-64/XZ XOR checksum, pair count and byte count of `range` (default column
    /// family), computed by TiKV region by region.
    pub async fn checksum(&self, range: impl Into<BoundRange>) -> Result<Checksum> {
        let (start, end) = self.encode_range(range.into())?;
        let mut total = Checksum::default();
        let build = |start_key, end_key| kvrpcpb::RawChecksumRequest {
            algorithm: kvrpcpb::ChecksumAlgorithm::Crc64Xor as i32,
            ranges: vec![kvrpcpb::KeyRange { start_key, end_key }],
            ..Default::default()
        };
        self.for_each_region(start, &end, build, |resp| {
            rejected(resp.error)?;
            total.crc64_xor ^= resp.checksum;
            total.total_kvs += resp.total_kvs;
            total.total_bytes += resp.total_bytes;
            Ok(())
        })
        .await?;
        Ok(total)
    }

    fn encode_keys(&self, keys: impl IntoIterator<Item = impl Into<Key>>) -> Result<Vec<Vec<u8>>> {
        let mut keys: Vec<Vec<u8>> = keys
            .into_iter()
            .map(|k| Ok(self.encode(check_key(k.into())?)))
            .collect::<Result<_>>()?;
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

/// The result of [`RawClient::checksum`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    /// XOR over the pairs of CRC-64/XZ(key ‖ value).
    pub crc64_xor: u64,
    /// The number of pairs.
    pub total_kvs: u64,
    /// The sum of key and value lengths.
    pub total_bytes: u64,
}

fn key_limits() -> BatchLimits<Vec<u8>> {
    BatchLimits {
        max_count: RAW_BATCH_COUNT,
        max_bytes: RAW_BATCH_BYTES,
        size: Vec::len,
    }
}

/// Above every key TiKV accepts: keys are at most 8192 bytes, all of which sort below this.
fn unbounded_upper() -> Vec<u8> {
    vec![0xFF; MAX_KEY_SIZE + 1]
}

/// The end of a per-region request: the range end clipped to the region.
fn clip_end(end: &[u8], region: &Region) -> Vec<u8> {
    match (end.is_empty(), region.end_key.is_empty()) {
        (true, _) => region.end_key.clone(),
        (false, true) => end.to_vec(),
        (false, false) => end.min(&region.end_key[..]).to_vec(),
    }
}

/// Where a range walk continues after `region`, or `None` when the range is done.
fn next_start(region: &Region, end: &[u8]) -> Option<Vec<u8>> {
    let done = region.end_key.is_empty() || (!end.is_empty() && region.end_key.as_slice() >= end);
    (!done).then(|| region.end_key.clone())
}

fn check_key(key: Key) -> Result<Vec<u8>> {
    if key.len() > MAX_KEY_SIZE {
        return Err(Error::InvalidArgument(format!(
            "key of {} bytes exceeds the maximum {MAX_KEY_SIZE}",
            key.len()
        )));
    }
    Ok(key.into_bytes())
}

fn check_value(value: Value) -> Result<Value> {
    if value.len() > MAX_VALUE_SIZE {
        return Err(Error::InvalidArgument(format!(
            "value of {} bytes exceeds the maximum {MAX_VALUE_SIZE} (TiKV's raft-entry-max-size)",
            value.len()
        )));
    }
    Ok(value)
}

/// A raw response's `error` text as our error.
fn rejected(error: String) -> Result<()> {
    if error.is_empty() {
        Ok(())
    } else if error.contains("ttl is not enabled") {
        Err(Error::Unsupported(format!(
            "TTL needs a cluster with API v1ttl or v2; TiKV said: {error}"
        )))
    } else {
        Err(Error::Rejected(error))
    }
}

/// Whether a simulation planted the bug of trusting a resent compare-and-swap (never outside
/// one).
fn cas_resend_trusted() -> bool {
    crate::rt::simulation::planted("cas-trusts-resend")
}
