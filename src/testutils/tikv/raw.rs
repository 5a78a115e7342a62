//! Raw KV requests (spec 5), executed after the context check passed.

use super::{hex, MockTikv};
use crate::proto::kvrpcpb;
use crate::testutils::cluster::{ApiVersion, DataKind, Region};
use crate::testutils::raw::{crc64, normalize_cf};

/// TiKV's default `storage.max-key-size`.
const MAX_KEY_SIZE: usize = 8192;

/// A raw failure before execution: an `error` string, or a region error.
enum Reject {
    Text(String),
    Region(Box<crate::proto::errorpb::Error>),
}

macro_rules! reject_into {
    ($resp:ident, $reject:expr) => {{
        let mut resp = kvrpcpb::$resp::default();
        match $reject {
            Reject::Text(t) => resp.error = t,
            Reject::Region(e) => resp.region_error = Some(*e),
        }
        resp
    }};
}

/// One scan: forward `[start, end)`, or reverse with `start` as the exclusive upper bound and
/// `end` as the inclusive lower bound.
struct Scan<'a> {
    start: &'a [u8],
    end: &'a [u8],
    limit: usize,
    key_only: bool,
    reverse: bool,
}

/// Responses without an `error` field carry failures as one pair with `error.abort`.
fn abort_pair(text: String) -> kvrpcpb::KvPair {
    kvrpcpb::KvPair {
        error: Some(kvrpcpb::KeyError {
            abort: text,
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl MockTikv {
    /// API version and key-mode checks (spec 6.2), and the column family (spec 5.1).
    fn raw_prelude(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        cmd: &str,
        keys: &[&[u8]],
        cf: &str,
    ) -> Result<&'static str, String> {
        let storage = self.api_version();
        let requested = ctx.map_or(0, |c| c.api_version);
        let expected = match storage {
            ApiVersion::V1 | ApiVersion::V1Ttl => kvrpcpb::ApiVersion::V1 as i32,
            ApiVersion::V2 => kvrpcpb::ApiVersion::V2 as i32,
        };
        if requested != expected {
            let name =
                kvrpcpb::ApiVersion::try_from(requested).map_or("unknown", |v| v.as_str_name());
            return Err(format!(
                "Api version in request does not match with TiKV storage, cmd: {cmd}, storage: {}, request: {name}",
                storage.storage_name()
            ));
        }
        if storage == ApiVersion::V2 {
            if let Some(bad) = keys.iter().find(|k| k.first() != Some(&b'r')) {
                return Err(format!(
                    "Key mode mismatched with the request mode, cmd: {cmd}, storage: V2, key: {}",
                    hex(bad)
                ));
            }
            if !cf.is_empty() {
                return Err(format!("cf is deprecated in API V2, cf name: {cf}"));
            }
            return Ok("default");
        }
        normalize_cf(cf).ok_or_else(|| format!("invalid cf name: {cf}"))
    }

    /// API v2 ranges need both bounds, in raw key mode; the end may be the next mode's first
    /// key (spec 6.2).
    fn check_v2_range(&self, cmd: &str, start: &[u8], end: &[u8]) -> Result<(), String> {
        if self.api_version() != ApiVersion::V2 {
            return Ok(());
        }
        let end_ok = end.first() == Some(&b'r') || end == [b'r' + 1];
        if start.first() != Some(&b'r') || !end_ok {
            return Err(format!(
                "Key mode mismatched with the request mode, cmd: {cmd}, storage: V2, range: (Some({}), Some({}))",
                hex(start),
                hex(end)
            ));
        }
        Ok(())
    }

    fn check_key_size(&self, keys: &[&[u8]]) -> Result<(), Reject> {
        match keys.iter().find(|k| k.len() > MAX_KEY_SIZE) {
            Some(k) => Err(Reject::Text(format!(
                "max key size exceeded, size: {}, limit: {MAX_KEY_SIZE}",
                k.len()
            ))),
            None => Ok(()),
        }
    }

    /// Checked when the write is applied, after everything else.
    fn check_in_region(&self, region: &Region, keys: &[&[u8]]) -> Result<(), Reject> {
        match keys
            .iter()
            .find(|k| !self.in_region(region, k, DataKind::Raw))
        {
            Some(k) => Err(Reject::Region(self.key_not_in_region(region, k))),
            None => Ok(()),
        }
    }

    /// API v2 writes stamp a causal timestamp, refused until a new leader has synced its
    /// max_ts; other API versions and delete-range do not check (spec 2.3).
    fn check_causal_ts_synced(&self, region: &Region) -> Result<(), Reject> {
        if self.api_version() != ApiVersion::V2 {
            return Ok(());
        }
        let message = format!(
            "RawKV write fails due to potentially stale max timestamp, region_id: {}",
            region.meta.id
        );
        match self.unsynced_max_ts(region, message) {
            Some(e) => Err(Reject::Region(e)),
            None => Ok(()),
        }
    }

    fn check_ttl(&self, ttls: impl IntoIterator<Item = u64>) -> Result<(), Reject> {
        if !self.api_version().ttl_enabled() && ttls.into_iter().any(|t| t > 0) {
            return Err(Reject::Text(
                "ttl is not enabled, but get put request with ttl".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn raw_get(
        &self,
        req: &kvrpcpb::RawGetRequest,
        region: &Region,
    ) -> kvrpcpb::RawGetResponse {
        let cf = match self.raw_prelude(req.context.as_ref(), "raw_get", &[&req.key], &req.cf) {
            Ok(cf) => cf,
            Err(e) => return reject_into!(RawGetResponse, Reject::Text(e)),
        };
        if !self.in_region(region, &req.key, DataKind::Raw) {
            return reject_into!(
                RawGetResponse,
                Reject::Region(self.key_not_in_region(region, &req.key))
            );
        }
        match self.node.raw().get(cf, &req.key, self.now_secs()) {
            Some(v) => kvrpcpb::RawGetResponse {
                value: v.to_vec(),
                ..Default::default()
            },
            None => kvrpcpb::RawGetResponse {
                not_found: true,
                ..Default::default()
            },
        }
    }

    pub(super) fn raw_batch_get(
        &self,
        req: &kvrpcpb::RawBatchGetRequest,
        region: &Region,
    ) -> kvrpcpb::RawBatchGetResponse {
        let keys: Vec<&[u8]> = req.keys.iter().map(|k| &k[..]).collect();
        let cf = match self.raw_prelude(req.context.as_ref(), "raw_batch_get", &keys, &req.cf) {
            Ok(cf) => cf,
            Err(e) => {
                return kvrpcpb::RawBatchGetResponse {
                    pairs: vec![abort_pair(e)],
                    ..Default::default()
                }
            }
        };
        let store = self.node.raw();
        let now = self.now_secs();
        let pairs = req
            .keys
            .iter()
            .filter_map(|k| {
                if !self.in_region(region, k, DataKind::Raw) {
                    return Some(abort_pair(format!(
                        "key {} is not in region {}",
                        hex(k),
                        region.meta.id
                    )));
                }
                store.get(cf, k, now).map(|v| kvrpcpb::KvPair {
                    key: k.clone(),
                    value: v.to_vec(),
                    ..Default::default()
                })
            })
            .collect();
        kvrpcpb::RawBatchGetResponse {
            pairs,
            ..Default::default()
        }
    }

    pub(super) fn raw_put(
        &self,
        req: &kvrpcpb::RawPutRequest,
        region: &Region,
    ) -> kvrpcpb::RawPutResponse {
        let run = || -> Result<(), Reject> {
            let cf = self
                .raw_prelude(req.context.as_ref(), "raw_put", &[&req.key], &req.cf)
                .map_err(Reject::Text)?;
            self.check_key_size(&[&req.key])?;
            self.check_ttl([req.ttl])?;
            self.check_causal_ts_synced(region)?;
            self.check_in_region(region, &[&req.key])?;
            self.node.raw().put(
                cf,
                req.key.clone(),
                req.value.clone(),
                req.ttl,
                self.now_secs(),
            );
            Ok(())
        };
        match run() {
            Ok(()) => kvrpcpb::RawPutResponse::default(),
            Err(r) => reject_into!(RawPutResponse, r),
        }
    }

    pub(super) fn raw_batch_put(
        &self,
        req: &kvrpcpb::RawBatchPutRequest,
        region: &Region,
    ) -> kvrpcpb::RawBatchPutResponse {
        let run = || -> Result<(), Reject> {
            let keys: Vec<&[u8]> = req.pairs.iter().map(|p| &p.key[..]).collect();
            let cf = self
                .raw_prelude(req.context.as_ref(), "raw_batch_put", &keys, &req.cf)
                .map_err(Reject::Text)?;
            self.check_key_size(&keys)?;
            // The deprecated scalar `ttl` is ignored; `ttls` of length 1 applies to all.
            self.check_ttl(req.ttls.iter().copied())?;
            let ttls: Vec<u64> = match req.ttls.len() {
                0 => vec![0; req.pairs.len()],
                1 => vec![req.ttls[0]; req.pairs.len()],
                n if n == req.pairs.len() => req.ttls.clone(),
                _ => {
                    return Err(Reject::Text(
                        "The length of ttls does not equal to the length of pairs".into(),
                    ))
                }
            };
            self.check_causal_ts_synced(region)?;
            self.check_in_region(region, &keys)?;
            let now = self.now_secs();
            let mut store = self.node.raw();
            for (pair, ttl) in req.pairs.iter().zip(ttls) {
                store.put(cf, pair.key.clone(), pair.value.clone(), ttl, now);
            }
            Ok(())
        };
        match run() {
            Ok(()) => kvrpcpb::RawBatchPutResponse::default(),
            Err(r) => reject_into!(RawBatchPutResponse, r),
        }
    }

    pub(super) fn raw_delete(
        &self,
        req: &kvrpcpb::RawDeleteRequest,
        region: &Region,
    ) -> kvrpcpb::RawDeleteResponse {
        let run = || -> Result<(), Reject> {
            let cf = self
                .raw_prelude(req.context.as_ref(), "raw_delete", &[&req.key], &req.cf)
                .map_err(Reject::Text)?;
            self.check_key_size(&[&req.key])?;
            self.check_causal_ts_synced(region)?;
            self.check_in_region(region, &[&req.key])?;
            self.node.raw().delete(cf, &req.key);
            Ok(())
        };
        match run() {
            Ok(()) => kvrpcpb::RawDeleteResponse::default(),
            Err(r) => reject_into!(RawDeleteResponse, r),
        }
    }

    pub(super) fn raw_batch_delete(
        &self,
        req: &kvrpcpb::RawBatchDeleteRequest,
        region: &Region,
    ) -> kvrpcpb::RawBatchDeleteResponse {
        let run = || -> Result<(), Reject> {
            let keys: Vec<&[u8]> = req.keys.iter().map(|k| &k[..]).collect();
            let cf = self
                .raw_prelude(req.context.as_ref(), "raw_batch_delete", &keys, &req.cf)
                .map_err(Reject::Text)?;
            self.check_key_size(&keys)?;
            self.check_causal_ts_synced(region)?;
            self.check_in_region(region, &keys)?;
            let mut store = self.node.raw();
            keys.iter().for_each(|k| store.delete(cf, k));
            Ok(())
        };
        match run() {
            Ok(()) => kvrpcpb::RawBatchDeleteResponse::default(),
            Err(r) => reject_into!(RawBatchDeleteResponse, r),
        }
    }

    pub(super) fn raw_delete_range(
        &self,
        req: &kvrpcpb::RawDeleteRangeRequest,
        region: &Region,
    ) -> kvrpcpb::RawDeleteRangeResponse {
        let run = || -> Result<(), Reject> {
            let cf = self
                .raw_prelude(req.context.as_ref(), "raw_delete_range", &[], &req.cf)
                .map_err(Reject::Text)?;
            self.check_v2_range("raw_delete_range", &req.start_key, &req.end_key)
                .map_err(Reject::Text)?;
            if !self.in_region(region, &req.start_key, DataKind::Raw) {
                return Err(Reject::Region(
                    self.key_not_in_region(region, &req.start_key),
                ));
            }
            let end_ok = if req.end_key.is_empty() {
                region.meta.end_key.is_empty()
            } else {
                self.seekable(region, &req.end_key, DataKind::Raw)
            };
            if !end_ok {
                return Err(Reject::Region(self.key_not_in_region(region, &req.end_key)));
            }
            if !req.end_key.is_empty() && req.end_key <= req.start_key {
                return Err(Reject::Region(Box::new(crate::proto::errorpb::Error {
                    message: format!(
                        "invalid delete range command, start_key: {}, end_key: {}",
                        hex(&req.start_key),
                        hex(&req.end_key)
                    ),
                    ..Default::default()
                })));
            }
            self.node
                .raw()
                .delete_range(cf, &req.start_key, &req.end_key);
            Ok(())
        };
        match run() {
            Ok(()) => kvrpcpb::RawDeleteRangeResponse::default(),
            Err(r) => reject_into!(RawDeleteRangeResponse, r),
        }
    }

    /// One scan confined to the region: forward `[start, end)`, or reverse with `start` as the
    /// exclusive upper bound and `end` as the inclusive lower bound (spec 5.3).
    fn scan_region(
        &self,
        region: &Region,
        cf: &str,
        scan: Scan<'_>,
    ) -> Result<Vec<kvrpcpb::KvPair>, Box<crate::proto::errorpb::Error>> {
        let Scan {
            start,
            end,
            limit,
            key_only,
            reverse,
        } = scan;
        if !self.seekable(region, start, DataKind::Raw) {
            return Err(self.key_not_in_region(region, start));
        }
        let (r_start, r_end) = self.user_bounds(region, DataKind::Raw);
        let (lower, upper) = if reverse {
            if start.is_empty() {
                return Ok(Vec::new());
            }
            let upper = if !r_end.is_empty() && start > &r_end[..] {
                r_end
            } else {
                start.to_vec()
            };
            (end.max(&r_start[..]).to_vec(), upper)
        } else {
            let upper = match (end.is_empty(), r_end.is_empty()) {
                (true, _) => r_end,
                (false, true) => end.to_vec(),
                (false, false) => end.min(&r_end[..]).to_vec(),
            };
            (start.max(&r_start[..]).to_vec(), upper)
        };
        if !upper.is_empty() && lower >= upper {
            return Ok(Vec::new());
        }
        let pairs = self
            .node
            .raw()
            .scan(cf, &lower, &upper, limit, reverse, self.now_secs());
        Ok(pairs
            .into_iter()
            .map(|(key, value)| kvrpcpb::KvPair {
                key,
                value: if key_only { Vec::new() } else { value },
                ..Default::default()
            })
            .collect())
    }

    pub(super) fn raw_scan(
        &self,
        req: &kvrpcpb::RawScanRequest,
        region: &Region,
    ) -> kvrpcpb::RawScanResponse {
        let (low, high) = if req.reverse {
            (&req.end_key, &req.start_key)
        } else {
            (&req.start_key, &req.end_key)
        };
        let checked = self
            .raw_prelude(req.context.as_ref(), "raw_scan", &[], &req.cf)
            .and_then(|cf| self.check_v2_range("raw_scan", low, high).map(|()| cf));
        let cf = match checked {
            Ok(cf) => cf,
            Err(e) => {
                return kvrpcpb::RawScanResponse {
                    kvs: vec![abort_pair(e)],
                    ..Default::default()
                }
            }
        };
        match self.scan_region(
            region,
            cf,
            Scan {
                start: &req.start_key,
                end: &req.end_key,
                limit: req.limit as usize,
                key_only: req.key_only,
                reverse: req.reverse,
            },
        ) {
            Ok(kvs) => kvrpcpb::RawScanResponse {
                kvs,
                ..Default::default()
            },
            Err(e) => kvrpcpb::RawScanResponse {
                region_error: Some(*e),
                ..Default::default()
            },
        }
    }

    pub(super) fn raw_batch_scan(
        &self,
        req: &kvrpcpb::RawBatchScanRequest,
        region: &Region,
    ) -> kvrpcpb::RawBatchScanResponse {
        let fail = |text: String| kvrpcpb::RawBatchScanResponse {
            kvs: vec![abort_pair(text)],
            ..Default::default()
        };
        let checked = self
            .raw_prelude(req.context.as_ref(), "raw_batch_scan", &[], &req.cf)
            .and_then(|cf| {
                req.ranges.iter().try_for_each(|r| {
                    let (low, high) = if req.reverse {
                        (&r.end_key, &r.start_key)
                    } else {
                        (&r.start_key, &r.end_key)
                    };
                    self.check_v2_range("raw_batch_scan", low, high)
                })?;
                Ok(cf)
            });
        let cf = match checked {
            Ok(cf) => cf,
            Err(e) => return fail(e),
        };
        let mut kvs = Vec::new();
        for (i, range) in req.ranges.iter().enumerate() {
            let end = if range.end_key.is_empty() {
                req.ranges
                    .get(i + 1)
                    .map(|next| next.start_key.clone())
                    .unwrap_or_default()
            } else {
                range.end_key.clone()
            };
            let ordered = end.is_empty()
                || if req.reverse {
                    range.start_key > end
                } else {
                    range.start_key < end
                };
            if !ordered {
                return fail("Invalid KeyRanges".into());
            }
            match self.scan_region(
                region,
                cf,
                Scan {
                    start: &range.start_key,
                    end: &end,
                    limit: req.each_limit as usize,
                    key_only: req.key_only,
                    reverse: req.reverse,
                },
            ) {
                Ok(mut found) => kvs.append(&mut found),
                Err(e) => {
                    return kvrpcpb::RawBatchScanResponse {
                        region_error: Some(*e),
                        ..Default::default()
                    }
                }
            }
        }
        kvrpcpb::RawBatchScanResponse {
            kvs,
            ..Default::default()
        }
    }

    pub(super) fn raw_get_key_ttl(
        &self,
        req: &kvrpcpb::RawGetKeyTtlRequest,
        region: &Region,
    ) -> kvrpcpb::RawGetKeyTtlResponse {
        let run = || -> Result<kvrpcpb::RawGetKeyTtlResponse, Reject> {
            let cf = self
                .raw_prelude(
                    req.context.as_ref(),
                    "raw_get_key_ttl",
                    &[&req.key],
                    &req.cf,
                )
                .map_err(Reject::Text)?;
            if !self.api_version().ttl_enabled() {
                // Real TiKV panics here; the mock answers with an error instead.
                return Err(Reject::Text(
                    "ttl is not enabled on this TiKV (API V1)".into(),
                ));
            }
            if !self.in_region(region, &req.key, DataKind::Raw) {
                return Err(Reject::Region(self.key_not_in_region(region, &req.key)));
            }
            Ok(match self.node.raw().ttl(cf, &req.key, self.now_secs()) {
                Some(ttl) => kvrpcpb::RawGetKeyTtlResponse {
                    ttl,
                    ..Default::default()
                },
                None => kvrpcpb::RawGetKeyTtlResponse {
                    not_found: true,
                    ..Default::default()
                },
            })
        };
        run().unwrap_or_else(|r| reject_into!(RawGetKeyTtlResponse, r))
    }

    pub(super) fn raw_compare_and_swap(
        &self,
        req: &kvrpcpb::RawCasRequest,
        region: &Region,
    ) -> kvrpcpb::RawCasResponse {
        let run = || -> Result<kvrpcpb::RawCasResponse, Reject> {
            let cf = self
                .raw_prelude(
                    req.context.as_ref(),
                    "raw_compare_and_swap",
                    &[&req.key],
                    &req.cf,
                )
                .map_err(Reject::Text)?;
            self.check_key_size(&[&req.key])?;
            self.check_ttl([req.ttl])?;
            self.check_causal_ts_synced(region)?;
            self.check_in_region(region, &[&req.key])?;
            let now = self.now_secs();
            let mut store = self.node.raw();
            let previous = store.get(cf, &req.key, now).map(<[u8]>::to_vec);
            let expected = (!req.previous_not_exist).then(|| req.previous_value.clone());
            let succeed = previous == expected;
            if succeed {
                if req.delete {
                    store.delete(cf, &req.key);
                } else {
                    store.put(cf, req.key.clone(), req.value.clone(), req.ttl, now);
                }
            }
            Ok(kvrpcpb::RawCasResponse {
                succeed,
                previous_not_exist: previous.is_none(),
                previous_value: previous.unwrap_or_default(),
                ..Default::default()
            })
        };
        run().unwrap_or_else(|r| reject_into!(RawCasResponse, r))
    }

    pub(super) fn raw_checksum(
        &self,
        req: &kvrpcpb::RawChecksumRequest,
        region: &Region,
    ) -> kvrpcpb::RawChecksumResponse {
        let run = || -> Result<kvrpcpb::RawChecksumResponse, Reject> {
            self.raw_prelude(req.context.as_ref(), "raw_checksum", &[], "")
                .map_err(Reject::Text)?;
            for r in &req.ranges {
                self.check_v2_range("raw_checksum", &r.start_key, &r.end_key)
                    .map_err(Reject::Text)?;
            }
            if req.algorithm != kvrpcpb::ChecksumAlgorithm::Crc64Xor as i32 {
                return Err(Reject::Text(format!(
                    "unknown checksum algorithm {}",
                    req.algorithm
                )));
            }
            let mut resp = kvrpcpb::RawChecksumResponse::default();
            for range in &req.ranges {
                let pairs = self
                    .scan_region(
                        region,
                        "default",
                        Scan {
                            start: &range.start_key,
                            end: &range.end_key,
                            limit: usize::MAX,
                            key_only: false,
                            reverse: false,
                        },
                    )
                    .map_err(Reject::Region)?;
                for pair in pairs {
                    resp.checksum ^= crc64(&[&pair.key, &pair.value]);
                    resp.total_kvs += 1;
                    resp.total_bytes += (pair.key.len() + pair.value.len()) as u64;
                }
            }
            Ok(resp)
        };
        run().unwrap_or_else(|r| reject_into!(RawChecksumResponse, r))
    }

    /// Splits at each key (raw keys as sent when `is_raw_kv` on a v1 cluster, else encoded as
    /// TiKV encodes them) and returns the regions the original range now consists of.
    pub(super) fn split_region(
        &self,
        req: &kvrpcpb::SplitRegionRequest,
        region: &Region,
    ) -> kvrpcpb::SplitRegionResponse {
        let kind = if req.is_raw_kv {
            DataKind::Raw
        } else {
            DataKind::Txn
        };
        let mut keys: Vec<Vec<u8>> = req.split_keys.clone();
        if keys.is_empty() && !req.split_key.is_empty() {
            keys.push(req.split_key.clone());
        }
        let internal: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| self.cluster().internal_key(k, kind))
            .collect();
        if let Some((k, _)) = keys
            .iter()
            .zip(&internal)
            .find(|(_, ik)| !region.contains(ik))
        {
            return kvrpcpb::SplitRegionResponse {
                region_error: Some(*self.key_not_in_region(region, k)),
                ..Default::default()
            };
        }
        if self.cluster().meta().is_cut_off(region.leader_store) {
            // TiKV asks PD for the new regions' ids (AskBatchSplit) before splitting.
            return kvrpcpb::SplitRegionResponse {
                region_error: Some(crate::proto::errorpb::Error {
                    message: format!(
                        "store {} cannot reach PD to ask for the split's region ids",
                        region.leader_store
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            };
        }
        for key in &internal {
            self.cluster().split(key);
        }
        let meta = self.cluster().meta();
        let regions: Vec<_> = meta
            .regions_in(&region.meta.start_key, &region.meta.end_key)
            .map(|r| r.meta.clone())
            .collect();
        kvrpcpb::SplitRegionResponse {
            left: regions.first().cloned(),
            right: regions.last().cloned(),
            regions,
            ..Default::default()
        }
    }
}
