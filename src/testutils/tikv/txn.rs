//! Transactional requests (spec 3, 4), executed after the context check passed.

// Key errors become protobuf messages at once; boxing them would only add noise here.
#![allow(clippy::result_large_err)]

use super::MockTikv;
use crate::proto::kvrpcpb::{self, prewrite_request::PessimisticAction};
use crate::testutils::cluster::{ApiVersion, DataKind, Region};
use crate::testutils::key_bounds;
use crate::testutils::mvcc::{KeyErr, Lock, LockType, Mvcc, ReadCtx, TxnStatus};

/// TiKV's default `storage.max-key-size`, checked on encoded transactional keys.
const MAX_KEY_SIZE: usize = 8192;

/// What a transactional command's API-version check looks at (spec 6.2): its keys, or its
/// range (an empty end is unbounded). Commands outside that list are not checked at all.
#[derive(Clone, Copy)]
pub(super) enum ApiCheck<'a> {
    Keys(&'a [&'a [u8]]),
    Range(&'a [u8], &'a [u8]),
}

/// API v2's key mode of a transactional key: the first byte of its memcomparable encoding,
/// which is its own first byte, or 0 for the empty key.
fn mode_byte(key: &[u8]) -> u8 {
    key.first().copied().unwrap_or(0)
}

impl MockTikv {
    /// TiKV's API-version check of a transactional command (spec 6.2): V1 storage takes V1
    /// requests; V2 storage takes V2 requests whose keys are in txn mode (`x`) and V1
    /// requests whose keys are all TiDB keys (`m`, `t`); anything else is a mismatch.
    pub(super) fn check_txn_api(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        cmd: &str,
        check: ApiCheck<'_>,
    ) -> Result<(), String> {
        let storage = self.api_version();
        let requested = ctx.map_or(0, |c| c.api_version);
        let modes: &[u8] = match storage {
            ApiVersion::V1 if requested == kvrpcpb::ApiVersion::V1 as i32 => return Ok(()),
            ApiVersion::V2 if requested == kvrpcpb::ApiVersion::V2 as i32 => b"x",
            ApiVersion::V2 if requested == kvrpcpb::ApiVersion::V1 as i32 => b"mt",
            _ => {
                return Err(format!(
                    "Error(ApiVersionNotMatched {{ cmd: {cmd}, storage: {}, req: {requested} }})",
                    storage.storage_name()
                ))
            }
        };
        let storage_name = storage.storage_name();
        match check {
            ApiCheck::Keys(keys) => match keys.iter().find(|k| !modes.contains(&mode_byte(k))) {
                Some(k) => Err(format!(
                    "Error(InvalidKeyMode {{ cmd: {cmd}, storage_api_version: {storage_name}, key: {:?} }})",
                    super::hex(k)
                )),
                None => Ok(()),
            },
            ApiCheck::Range(start, end) => {
                // Both bounds present and in one mode (memcomparable keys are never one byte,
                // so TiKV's `[start[0] + 1]` end never applies to them).
                let mode = mode_byte(start);
                if !end.is_empty() && mode == mode_byte(end) && modes.contains(&mode) {
                    return Ok(());
                }
                Err(format!(
                    "Error(InvalidKeyRangeMode {{ cmd: {cmd}, storage_api_version: {storage_name}, range: ({:?}, {:?}) }})",
                    super::hex(start),
                    super::hex(end)
                ))
            }
        }
    }

    /// What TiKV checks of a write's keys before scheduling it: the API version, then the
    /// size of each key's memcomparable encoding (spec 2.6).
    pub(super) fn check_txn_write(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        cmd: &str,
        keys: &[&[u8]],
    ) -> Result<(), KeyErr> {
        self.check_txn_api(ctx, cmd, ApiCheck::Keys(keys))
            .map_err(KeyErr::Abort)?;
        let too_large = keys
            .iter()
            .map(|k| crate::kv::memcomparable::encoded_len(k.len()))
            .find(|size| *size > MAX_KEY_SIZE);
        match too_large {
            Some(size) => Err(KeyErr::Abort(format!(
                "Error(KeyTooLarge {{ size: {size}, limit: {MAX_KEY_SIZE} }})"
            ))),
            None => Ok(()),
        }
    }

    fn mvcc(&self) -> super::StoreMvcc<'_> {
        self.node.store_mvcc(self.store)
    }

    /// A read at `ts` raises this store's max_ts (not for stale reads), and an SI replica
    /// read the leader's as well: its read index request carries the ts (spec 1.5, 3.5).
    pub(super) fn observe_read(
        &self,
        mvcc: &mut Mvcc,
        ctx: Option<&kvrpcpb::Context>,
        region: &Region,
        ts: u64,
    ) {
        if !stale_read(ctx) {
            mvcc.observe_ts(ts);
        }
        if replica_read_si(ctx) {
            self.node.raise_max_ts(region.leader_store, ts);
        }
    }
}

/// An SI replica read, which raises the leader's max_ts too (spec 1.5).
fn replica_read_si(ctx: Option<&kvrpcpb::Context>) -> bool {
    ctx.is_some_and(|c| {
        c.replica_read && !c.stale_read && c.isolation_level == kvrpcpb::IsolationLevel::Si as i32
    })
}

/// Stale reads leave max_ts alone (spec 3.5).
fn stale_read(ctx: Option<&kvrpcpb::Context>) -> bool {
    ctx.is_some_and(|c| c.stale_read)
}

/// A read's ts, isolation, resolved and committed locks. A read that needs commit ts cannot
/// read lock data, which has none: it ignores `committed_locks` (spec 3.1 rule 7).
fn read_ctx(
    ctx: Option<&kvrpcpb::Context>,
    ts: u64,
    need_commit_ts: bool,
) -> (u64, kvrpcpb::IsolationLevel, Vec<u64>, Vec<u64>) {
    let ctx = ctx.cloned().unwrap_or_default();
    let isolation = kvrpcpb::IsolationLevel::try_from(ctx.isolation_level)
        .unwrap_or(kvrpcpb::IsolationLevel::Si);
    let committed = if need_commit_ts {
        Vec::new()
    } else {
        ctx.committed_locks
    };
    (ts, isolation, ctx.resolved_locks, committed)
}

/// The API-version check of a read; a failure answers the whole request.
macro_rules! api_check {
    ($self:ident, $req:ident, $cmd:literal, $check:expr, $resp:ident) => {
        if let Err(text) = $self.check_txn_api($req.context.as_ref(), $cmd, $check) {
            return kvrpcpb::$resp {
                error: Some(KeyErr::Abort(text).into_proto()),
                ..Default::default()
            };
        }
    };
    // Reads answering pairs also repeat a whole-request error in `pairs[0]` (spec 2.5).
    ($self:ident, $req:ident, $cmd:literal, $check:expr, $resp:ident, pairs) => {
        if let Err(text) = $self.check_txn_api($req.context.as_ref(), $cmd, $check) {
            return PairsReply::failed(KeyErr::Abort(text).into_proto());
        }
    };
}

/// Replies that carry pairs: failed as a whole, they hold `error` and the same in one pair.
trait PairsReply {
    fn failed(e: kvrpcpb::KeyError) -> Self;
}

macro_rules! pairs_reply {
    ($($resp:ident),*) => {$(
        impl PairsReply for kvrpcpb::$resp {
            fn failed(e: kvrpcpb::KeyError) -> Self {
                kvrpcpb::$resp {
                    pairs: vec![kvrpcpb::KvPair {
                        error: Some(e.clone()),
                        ..Default::default()
                    }],
                    error: Some(e),
                    ..Default::default()
                }
            }
        }
    )*};
}

pairs_reply!(BatchGetResponse, ScanResponse);

impl MockTikv {
    pub(super) fn kv_get(
        &self,
        req: &kvrpcpb::GetRequest,
        region: &Region,
    ) -> kvrpcpb::GetResponse {
        api_check!(self, req, "get", ApiCheck::Keys(&[&req.key]), GetResponse);
        let (ts, isolation, resolved, committed) =
            read_ctx(req.context.as_ref(), req.version, req.need_commit_ts);
        if !self.in_region(region, &req.key, DataKind::Txn) {
            // SI and RCCheckTS look the lock up first and fail there; RC seeks the write CF.
            return if isolation == kvrpcpb::IsolationLevel::Rc {
                kvrpcpb::GetResponse {
                    region_error: Some(*self.key_not_in_region(region, &req.key)),
                    ..Default::default()
                }
            } else {
                kvrpcpb::GetResponse {
                    error: Some(self.out_of_region(region, &req.key).into_proto()),
                    ..Default::default()
                }
            };
        }
        let mut mvcc = self.mvcc();
        self.observe_read(&mut mvcc, req.context.as_ref(), region, ts);
        let r = ReadCtx {
            ts,
            isolation,
            resolved: &resolved,
            committed: &committed,
        };
        match mvcc.get(&req.key, &r) {
            Ok(Some((value, commit_ts))) => kvrpcpb::GetResponse {
                value,
                commit_ts: if req.need_commit_ts { commit_ts } else { 0 },
                ..Default::default()
            },
            Ok(None) => kvrpcpb::GetResponse {
                not_found: true,
                ..Default::default()
            },
            Err(e) => kvrpcpb::GetResponse {
                error: Some(e.into_proto()),
                ..Default::default()
            },
        }
    }

    pub(super) fn kv_batch_get(
        &self,
        req: &kvrpcpb::BatchGetRequest,
        region: &Region,
    ) -> kvrpcpb::BatchGetResponse {
        let keys: Vec<&[u8]> = req.keys.iter().map(|k| &k[..]).collect();
        api_check!(
            self,
            req,
            "batch_get",
            ApiCheck::Keys(&keys),
            BatchGetResponse,
            pairs
        );
        let (ts, isolation, resolved, committed) =
            read_ctx(req.context.as_ref(), req.version, req.need_commit_ts);
        let mut mvcc = self.mvcc();
        self.observe_read(&mut mvcc, req.context.as_ref(), region, ts);
        let r = ReadCtx {
            ts,
            isolation,
            resolved: &resolved,
            committed: &committed,
        };
        let pairs = req
            .keys
            .iter()
            .filter_map(|k| match mvcc.get(k, &r) {
                // A key outside the region fails alone, never as a region error (spec 2.3).
                _ if !self.in_region(region, k, DataKind::Txn) => Some(kvrpcpb::KvPair {
                    error: Some(self.out_of_region(region, k).into_proto()),
                    ..Default::default()
                }),
                Ok(Some((value, commit_ts))) => Some(kvrpcpb::KvPair {
                    key: k.clone(),
                    value,
                    commit_ts: if req.need_commit_ts { commit_ts } else { 0 },
                    ..Default::default()
                }),
                Ok(None) => None,
                Err(e) => Some(kvrpcpb::KvPair {
                    error: Some(e.into_proto()),
                    ..Default::default()
                }),
            })
            .collect();
        kvrpcpb::BatchGetResponse {
            pairs,
            ..Default::default()
        }
    }

    pub(super) fn kv_scan(
        &self,
        req: &kvrpcpb::ScanRequest,
        region: &Region,
    ) -> kvrpcpb::ScanResponse {
        api_check!(
            self,
            req,
            "scan",
            ApiCheck::Range(&req.start_key, &req.end_key),
            ScanResponse,
            pairs
        );
        let (r_start, r_end) = self.user_bounds(region, DataKind::Txn);
        // Forward: [start, end); reverse: start is the exclusive upper, end the inclusive lower.
        let (lower, upper) = if req.reverse {
            (&req.end_key, &req.start_key)
        } else {
            (&req.start_key, &req.end_key)
        };
        // TiKV's order: the range check, then nothing to read, then the first seek.
        let below_start = !lower.is_empty() && lower.as_slice() < r_start.as_slice();
        let above_end =
            !upper.is_empty() && !r_end.is_empty() && upper.as_slice() > r_end.as_slice();
        if below_start || above_end {
            let e = KeyErr::Abort(format!(
                "Error(InvalidReqRange {{ start: {lower:?}, end: {upper:?} }})"
            ));
            return PairsReply::failed(e.into_proto());
        }
        if req.limit == 0 {
            return kvrpcpb::ScanResponse::default();
        }
        let seek = &req.start_key;
        let misplaced = if req.reverse {
            // An empty start is the smallest encoded key, not +inf: it seeks below every
            // region but the first, which simply has nothing below it.
            self.cluster().internal_key(seek, DataKind::Txn) < region.meta.start_key
                || (seek.is_empty() && !region.meta.start_key.is_empty())
        } else {
            !self.seekable(region, seek, DataKind::Txn)
        };
        if misplaced {
            return kvrpcpb::ScanResponse {
                region_error: Some(*self.key_not_in_region(region, seek)),
                ..Default::default()
            };
        }
        if req.reverse && seek.is_empty() {
            return kvrpcpb::ScanResponse::default();
        }
        let lo = if lower.is_empty() {
            r_start
        } else {
            lower.clone()
        };
        let hi = if upper.is_empty() {
            r_end
        } else {
            upper.clone()
        };
        let (ts, isolation, resolved, committed) =
            read_ctx(req.context.as_ref(), req.version, false);
        let mut mvcc = self.mvcc();
        self.observe_read(&mut mvcc, req.context.as_ref(), region, ts);
        let r = ReadCtx {
            ts,
            isolation,
            resolved: &resolved,
            committed: &committed,
        };
        let mut keys = mvcc.keys_in(&lo, &hi);
        if req.reverse {
            keys.reverse();
        }
        let step = req.sample_step.max(1) as usize;
        let mut visible = 0usize;
        let mut pairs = Vec::new();
        for key in keys {
            if pairs.len() >= req.limit as usize {
                break;
            }
            match mvcc.get(&key, &r) {
                Ok(Some((value, _))) => {
                    visible += 1;
                    if (visible - 1) % step == 0 {
                        pairs.push(kvrpcpb::KvPair {
                            key,
                            value: if req.key_only { Vec::new() } else { value },
                            ..Default::default()
                        });
                    }
                }
                Ok(None) => {}
                Err(e) => pairs.push(kvrpcpb::KvPair {
                    error: Some(e.into_proto()),
                    ..Default::default()
                }),
            }
        }
        kvrpcpb::ScanResponse {
            pairs,
            ..Default::default()
        }
    }

    pub(super) fn kv_prewrite(
        &self,
        req: &kvrpcpb::PrewriteRequest,
        region: &Region,
    ) -> kvrpcpb::PrewriteResponse {
        let keys: Vec<&[u8]> = req.mutations.iter().map(|m| &m.key[..]).collect();
        if let Err(e) = self.check_txn_write(req.context.as_ref(), "prewrite", &keys) {
            return kvrpcpb::PrewriteResponse {
                errors: vec![e.into_proto()],
                ..Default::default()
            };
        }
        // The max_ts check runs while processing; keys outside the region fail at apply.
        if req.use_async_commit || req.try_one_pc {
            let message = format!(
                "Prewrite for async commit fails due to potentially stale max timestamp, start_ts: {}, region_id: {}",
                req.start_version, region.meta.id
            );
            if let Some(e) = self.unsynced_max_ts(region, message) {
                return kvrpcpb::PrewriteResponse {
                    region_error: Some(*e),
                    ..Default::default()
                };
            }
        }
        if let Some(outside) = self.outside_region(region, keys) {
            return outside;
        }
        let mut mvcc = self.mvcc();
        match prewrite(&mut mvcc, req) {
            Ok((min_commit_ts, one_pc_commit_ts)) => kvrpcpb::PrewriteResponse {
                min_commit_ts,
                one_pc_commit_ts,
                ..Default::default()
            },
            Err(errors) => kvrpcpb::PrewriteResponse {
                errors: errors.into_iter().map(KeyErr::into_proto).collect(),
                ..Default::default()
            },
        }
    }

    pub(super) fn kv_commit(
        &self,
        req: &kvrpcpb::CommitRequest,
        region: &Region,
    ) -> kvrpcpb::CommitResponse {
        let keys: Vec<&[u8]> = req.keys.iter().map(|k| &k[..]).collect();
        if let Some(outside) = self.outside_region(region, keys.iter().map(|k| &k[..])) {
            return outside;
        }
        if req.commit_version <= req.start_version {
            let e = KeyErr::Abort(format!(
                "Error(InvalidTxnTso {{ start_ts: {}, commit_ts: {} }})",
                req.start_version, req.commit_version
            ));
            return kvrpcpb::CommitResponse {
                error: Some(e.into_proto()),
                ..Default::default()
            };
        }
        let mut mvcc = self.mvcc();
        // All or nothing: check every key first, then apply.
        let mut trial = MvccTrial::new(&mvcc, &keys);
        for k in &keys {
            if let Err(e) = trial.mvcc.commit(k, req.start_version, req.commit_version) {
                return kvrpcpb::CommitResponse {
                    error: Some(e.into_proto()),
                    ..Default::default()
                };
            }
        }
        trial.apply(&mut mvcc);
        kvrpcpb::CommitResponse {
            commit_version: req.commit_version,
            ..Default::default()
        }
    }

    pub(super) fn kv_batch_rollback(
        &self,
        req: &kvrpcpb::BatchRollbackRequest,
        region: &Region,
    ) -> kvrpcpb::BatchRollbackResponse {
        let keys: Vec<&[u8]> = req.keys.iter().map(|k| &k[..]).collect();
        if let Some(outside) = self.outside_region(region, keys.iter().map(|k| &k[..])) {
            return outside;
        }
        let mut mvcc = self.mvcc();
        let mut trial = MvccTrial::new(&mvcc, &keys);
        for k in &keys {
            if let Err(commit_ts) = trial.mvcc.rollback(k, req.start_version, false, true) {
                let e = committed_abort(req.start_version, commit_ts, k);
                return kvrpcpb::BatchRollbackResponse {
                    error: Some(e.into_proto()),
                    ..Default::default()
                };
            }
        }
        trial.apply(&mut mvcc);
        kvrpcpb::BatchRollbackResponse::default()
    }

    pub(super) fn kv_cleanup(
        &self,
        req: &kvrpcpb::CleanupRequest,
        region: &Region,
    ) -> kvrpcpb::CleanupResponse {
        if let Some(outside) = self.outside_region(region, [&req.key[..]]) {
            return outside;
        }
        let mut mvcc = self.mvcc();
        mvcc.observe_ts(req.start_version);
        if let Some(lock) = mvcc
            .locks
            .get(&req.key)
            .filter(|l| l.ts == req.start_version)
        {
            if req.current_ts != 0 && !lock.expired(req.current_ts) {
                let e = KeyErr::Locked(lock.info(&req.key));
                return kvrpcpb::CleanupResponse {
                    error: Some(e.into_proto()),
                    ..Default::default()
                };
            }
        }
        match mvcc.rollback(&req.key, req.start_version, true, false) {
            Ok(()) => kvrpcpb::CleanupResponse::default(),
            Err(commit_ts) => kvrpcpb::CleanupResponse {
                commit_version: commit_ts,
                ..Default::default()
            },
        }
    }

    pub(super) fn kv_check_txn_status(
        &self,
        req: &kvrpcpb::CheckTxnStatusRequest,
        region: &Region,
    ) -> kvrpcpb::CheckTxnStatusResponse {
        if let Some(outside) = self.outside_region(region, [&req.primary_key[..]]) {
            return outside;
        }
        let mut mvcc = self.mvcc();
        mvcc.observe_ts(req.lock_ts);
        mvcc.observe_ts(req.current_ts);
        mvcc.observe_ts(req.caller_start_ts);
        match check_txn_status(&mut mvcc, req) {
            Ok(resp) => resp,
            Err(e) => kvrpcpb::CheckTxnStatusResponse {
                error: Some(e.into_proto()),
                ..Default::default()
            },
        }
    }

    pub(super) fn kv_check_secondary_locks(
        &self,
        req: &kvrpcpb::CheckSecondaryLocksRequest,
        region: &Region,
    ) -> kvrpcpb::CheckSecondaryLocksResponse {
        if let Some(outside) = self.outside_region(region, req.keys.iter().map(|k| &k[..])) {
            return outside;
        }
        let mut mvcc = self.mvcc();
        mvcc.observe_ts(req.start_version);
        let mut locks = Vec::new();
        for key in &req.keys {
            if let Some(lock) = mvcc
                .locks
                .get(key)
                .filter(|l| l.ts == req.start_version)
                .cloned()
            {
                if lock.lock_type == LockType::Pessimistic {
                    mvcc.locks.remove(key);
                    let _ = mvcc.rollback(key, req.start_version, true, true);
                    return kvrpcpb::CheckSecondaryLocksResponse::default();
                }
                locks.push(lock.info(key));
                continue;
            }
            match mvcc.txn_status(key, req.start_version) {
                Some(TxnStatus::Committed(c)) => {
                    return kvrpcpb::CheckSecondaryLocksResponse {
                        commit_ts: c,
                        ..Default::default()
                    }
                }
                Some(TxnStatus::RolledBack) => {
                    return kvrpcpb::CheckSecondaryLocksResponse::default()
                }
                None => {
                    let _ = mvcc.rollback(key, req.start_version, true, true);
                    return kvrpcpb::CheckSecondaryLocksResponse::default();
                }
            }
        }
        kvrpcpb::CheckSecondaryLocksResponse {
            locks,
            ..Default::default()
        }
    }

    pub(super) fn kv_resolve_lock(
        &self,
        req: &kvrpcpb::ResolveLockRequest,
        region: &Region,
    ) -> kvrpcpb::ResolveLockResponse {
        if let Some(outside) = self.outside_region(region, req.keys.iter().map(|k| &k[..])) {
            return outside;
        }
        let mut mvcc = self.mvcc();
        let result = if !req.keys.is_empty() {
            resolve_lite(&mut mvcc, req)
        } else {
            let statuses: Vec<(u64, u64)> = if req.start_version > 0 {
                vec![(req.start_version, req.commit_version)]
            } else {
                req.txn_infos.iter().map(|t| (t.txn, t.status)).collect()
            };
            let (lo, hi) = self.user_bounds(region, DataKind::Txn);
            resolve_region(&mut mvcc, &statuses, &lo, &hi)
        };
        match result {
            Ok(()) => kvrpcpb::ResolveLockResponse::default(),
            Err(e) => kvrpcpb::ResolveLockResponse {
                error: Some(e.into_proto()),
                ..Default::default()
            },
        }
    }

    pub(super) fn kv_txn_heart_beat(
        &self,
        req: &kvrpcpb::TxnHeartBeatRequest,
        region: &Region,
    ) -> kvrpcpb::TxnHeartBeatResponse {
        if let Some(outside) = self.outside_region(region, [&req.primary_lock[..]]) {
            return outside;
        }
        let mut mvcc = self.mvcc();
        match mvcc
            .locks
            .get_mut(&req.primary_lock)
            .filter(|l| l.ts == req.start_version)
        {
            Some(lock) => {
                lock.ttl = lock.ttl.max(req.advise_lock_ttl);
                // A pipelined-DML transaction pushes its flushed primary's min_commit_ts.
                if lock.generation > 0 && !lock.use_async_commit {
                    lock.min_commit_ts = lock.min_commit_ts.max(req.min_commit_ts);
                }
                kvrpcpb::TxnHeartBeatResponse {
                    lock_ttl: lock.ttl,
                    ..Default::default()
                }
            }
            None => {
                let e = KeyErr::TxnNotFound(req.start_version, req.primary_lock.clone());
                kvrpcpb::TxnHeartBeatResponse {
                    error: Some(e.into_proto()),
                    ..Default::default()
                }
            }
        }
    }

    pub(super) fn kv_scan_lock(
        &self,
        req: &kvrpcpb::ScanLockRequest,
        region: &Region,
    ) -> kvrpcpb::ScanLockResponse {
        let (r_start, r_end) = self.user_bounds(region, DataKind::Txn);
        let lo = req.start_key.clone().max(r_start);
        let hi = match (req.end_key.is_empty(), r_end.is_empty()) {
            (true, _) => r_end,
            (false, true) => req.end_key.clone(),
            (false, false) => req.end_key.clone().min(r_end),
        };
        let mut mvcc = self.mvcc();
        mvcc.observe_ts(req.max_version);
        let limit = if req.limit == 0 {
            usize::MAX
        } else {
            req.limit as usize
        };
        let Some(bounds) = key_bounds(&lo, &hi) else {
            return kvrpcpb::ScanLockResponse::default();
        };
        let locks = mvcc
            .locks
            .range::<[u8], _>(bounds)
            .filter(|(_, l)| l.ts <= req.max_version)
            .take(limit)
            .map(|(k, l)| l.info(k))
            .collect();
        kvrpcpb::ScanLockResponse {
            locks,
            ..Default::default()
        }
    }
}

fn committed_abort(start_ts: u64, commit_ts: u64, key: &[u8]) -> KeyErr {
    KeyErr::Abort(format!(
        "Error(Txn(Error(Mvcc(Error(Committed {{ start_ts: {start_ts}, commit_ts: {commit_ts}, key: {key:?} }})))))"
    ))
}

/// A scratch copy of the keys a multi-key write touches, so that a failure leaves the store
/// untouched (requests are all-or-nothing).
struct MvccTrial {
    mvcc: Mvcc,
    keys: Vec<Vec<u8>>,
}

impl MvccTrial {
    fn new(from: &Mvcc, keys: &[&[u8]]) -> Self {
        let mut mvcc = Mvcc {
            max_ts: from.max_ts,
            ..Default::default()
        };
        for k in keys {
            if let Some(l) = from.locks.get(*k) {
                mvcc.locks.insert(k.to_vec(), l.clone());
            }
            if let Some(w) = from.writes.get(*k) {
                mvcc.writes.insert(k.to_vec(), w.clone());
            }
        }
        MvccTrial {
            mvcc,
            keys: keys.iter().map(|k| k.to_vec()).collect(),
        }
    }

    fn apply(self, into: &mut Mvcc) {
        for k in self.keys {
            match self.mvcc.locks.get(&k) {
                Some(l) => into.locks.insert(k.clone(), l.clone()),
                None => into.locks.remove(&k),
            };
            match self.mvcc.writes.get(&k) {
                Some(w) => into.writes.insert(k.clone(), w.clone()),
                None => into.writes.remove(&k),
            };
        }
        into.max_ts = into.max_ts.max(self.mvcc.max_ts);
    }
}

/// Prewrite (spec 4.1-4.4). Returns (min_commit_ts, one_pc_commit_ts) or the key errors.
fn prewrite(mvcc: &mut Mvcc, req: &kvrpcpb::PrewriteRequest) -> Result<(u64, u64), Vec<KeyErr>> {
    let start = req.start_version;
    let pessimistic = req.for_update_ts != 0;
    let zipped = req.mutations.len().min(req.pessimistic_actions.len());
    if let Some(c) = req
        .for_update_ts_constraints
        .iter()
        .find(|c| pessimistic && c.index as usize >= zipped)
    {
        return Err(vec![KeyErr::Abort(format!(
            "prewrite request invalid: for_update_ts constraint index {} exceeds mutation count {zipped}",
            c.index
        ))]);
    }
    let mut mutations: Vec<(&kvrpcpb::Mutation, Option<PessimisticAction>, Option<u64>)> =
        if pessimistic {
            req.mutations
                .iter()
                .zip(&req.pessimistic_actions)
                .enumerate()
                .map(|(i, (m, a))| {
                    let expected = req
                        .for_update_ts_constraints
                        .iter()
                        .find(|c| c.index as usize == i)
                        .map(|c| c.expected_for_update_ts);
                    (m, PessimisticAction::try_from(*a).ok(), expected)
                })
                .collect()
        } else {
            req.mutations.iter().map(|m| (m, None, None)).collect()
        };
    if !pessimistic && mutations.len() > 12 {
        mutations.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    }
    let mut async_commit = req.use_async_commit || req.try_one_pc;
    let mut one_pc = req.try_one_pc;
    let mut max_min_commit = 0u64;
    let mut locked = Vec::new();
    let mut assertion: Option<KeyErr> = None;
    let mut new_locks: Vec<(Vec<u8>, Lock)> = Vec::new();
    // Before reporting certain errors, a retried prewrite of a committed txn succeeds.
    let own_commit = |mvcc: &Mvcc, key: &[u8]| match mvcc.txn_status(key, start) {
        Some(TxnStatus::Committed(c)) => Some(c),
        _ => None,
    };
    for (m, action, expected_for_update) in mutations {
        let key = &m.key;
        // TiKV panics on other ops (spec 2.6); the mock refuses them.
        let Ok(op) = kvrpcpb::Op::try_from(m.op) else {
            return Err(vec![KeyErr::Abort(format!(
                "unsupported mutation op {} in prewrite",
                m.op
            ))]);
        };
        let lock_type = match op {
            kvrpcpb::Op::Put | kvrpcpb::Op::Insert => LockType::Put,
            kvrpcpb::Op::Del => LockType::Delete,
            kvrpcpb::Op::Lock => LockType::Lock,
            kvrpcpb::Op::CheckNotExists if !pessimistic => LockType::Lock,
            kvrpcpb::Op::CheckNotExists => {
                return Err(vec![KeyErr::Abort(
                    "Error(Txn(Error(Mvcc(Error(Other(\"cannot handle checkNotExists in pessimistic prewrite\"))))))"
                        .into(),
                )]);
            }
            other => {
                return Err(vec![KeyErr::Abort(format!(
                    "unsupported mutation {other:?} in prewrite"
                ))]);
            }
        };
        if matches!(op, kvrpcpb::Op::Insert | kvrpcpb::Op::CheckNotExists) {
            mvcc.observe_ts(start);
        }
        let mut ttl = req.lock_ttl;
        let mut min_commit = req.min_commit_ts;
        let mut for_update_ts = req.for_update_ts;
        if let Some(existing) = mvcc.locks.get(key).cloned() {
            if existing.ts != start {
                if pessimistic && action == Some(PessimisticAction::DoPessimisticCheck) {
                    if let Some(c) = own_commit(mvcc, key) {
                        return Ok(committed_result(req, c));
                    }
                    return Err(vec![KeyErr::Abort(format!(
                        "Error(PessimisticLockNotFound {{ start_ts: {start}, key: {key:?} }})"
                    ))]);
                }
                if let Some(c) = own_commit(mvcc, key) {
                    return Ok(committed_result(req, c));
                }
                let mut info = existing.info(key);
                if pessimistic {
                    info.lock_ttl = 0;
                }
                locked.push(KeyErr::Locked(info));
                continue;
            }
            if existing.lock_type == LockType::Pessimistic {
                if !pessimistic {
                    return Err(vec![KeyErr::Abort(format!(
                        "Error(LockTypeNotMatch {{ start_ts: {start}, key: {key:?} }})"
                    ))]);
                }
                if expected_for_update.is_some_and(|e| e != existing.for_update_ts) {
                    return Err(vec![KeyErr::Abort(format!(
                        "Error(PessimisticLockNotFound {{ start_ts: {start}, key: {key:?} }})"
                    ))]);
                }
                ttl = ttl.max(existing.ttl);
                min_commit = min_commit.max(existing.min_commit_ts);
                for_update_ts = for_update_ts.max(existing.for_update_ts);
            } else {
                // A duplicate prewrite: nothing to do.
                let contribution = if existing.use_async_commit {
                    existing.min_commit_ts
                } else {
                    0
                };
                if contribution == 0 {
                    async_commit = false;
                    one_pc = false;
                }
                max_min_commit = max_min_commit.max(contribution);
                continue;
            }
        } else if pessimistic
            && action == Some(PessimisticAction::DoPessimisticCheck)
            && mvcc.newest_commit_ts(key).is_some_and(|c| c >= start)
        {
            if let Some(c) = own_commit(mvcc, key) {
                return Ok(committed_result(req, c));
            }
            return Err(vec![KeyErr::Abort(format!(
                "Error(PessimisticLockNotFound {{ start_ts: {start}, key: {key:?} }})"
            ))]);
        }
        let retried = req.context.as_ref().is_some_and(|c| c.is_retry_request);
        if pessimistic && retried && action == Some(PessimisticAction::SkipPessimisticCheck) {
            let for_update_ts = req.for_update_ts;
            if let Err(e) =
                mvcc.check_retried_prewrite(key, start, for_update_ts, &req.primary_lock)
            {
                if let Some(c) = own_commit(mvcc, key) {
                    return Ok(committed_result(req, c));
                }
                return Err(vec![e]);
            }
        }
        let check_constraint = if pessimistic {
            action == Some(PessimisticAction::DoConstraintCheck)
        } else {
            !req.skip_constraint_check
        };
        if check_constraint {
            if let Err(e) = mvcc.check_conflict(key, start, &req.primary_lock) {
                if let Some(c) = own_commit(mvcc, key) {
                    return Ok(committed_result(req, c));
                }
                let e = match e {
                    KeyErr::Conflict(mut c)
                        if pessimistic
                            && c.reason
                                != kvrpcpb::write_conflict::Reason::SelfRolledBack as i32 =>
                    {
                        c.reason = kvrpcpb::write_conflict::Reason::LazyUniquenessCheck as i32;
                        KeyErr::Conflict(c)
                    }
                    other => other,
                };
                return Err(vec![e]);
            }
            if matches!(op, kvrpcpb::Op::Insert | kvrpcpb::Op::CheckNotExists)
                && mvcc.exists(key).is_some()
            {
                return Err(vec![KeyErr::AlreadyExist(key.clone())]);
            }
        }
        if assertion.is_none() {
            let exists = mvcc.exists(key).is_some();
            assertion = assertion_failure(mvcc, m, start, req.assertion_level, exists);
        }
        if op == kvrpcpb::Op::CheckNotExists {
            continue;
        }
        let mut lock = Lock {
            lock_type,
            primary: req.primary_lock.clone(),
            ts: start,
            ttl,
            value: if lock_type == LockType::Put {
                m.value.clone()
            } else {
                Vec::new()
            },
            for_update_ts,
            txn_size: req.txn_size,
            min_commit_ts: min_commit,
            use_async_commit: false,
            secondaries: Vec::new(),
            rollback_ts: Vec::new(),
            generation: 0,
        };
        if async_commit {
            // Above max_commit_ts, or past the maximal timestamp (no commit ts follows it).
            let computed = mvcc
                .max_ts
                .max(start)
                .max(for_update_ts)
                .checked_add(1)
                .map(|ts| ts.max(min_commit))
                .filter(|ts| req.max_commit_ts == 0 || *ts <= req.max_commit_ts);
            match computed {
                Some(computed) => {
                    lock.min_commit_ts = computed;
                    lock.use_async_commit = req.use_async_commit;
                    if req.use_async_commit && *key == req.primary_lock {
                        lock.secondaries = req.secondaries.clone();
                    }
                    max_min_commit = max_min_commit.max(computed);
                }
                None => {
                    // Commit ts too large: this key and the rest fall back to plain 2PC.
                    async_commit = false;
                    one_pc = false;
                }
            }
        }
        new_locks.push((key.clone(), lock));
    }
    if let Some(a) = assertion {
        return Err(vec![a]);
    }
    if !locked.is_empty() {
        return Err(locked);
    }
    if one_pc && async_commit {
        for (key, lock) in &new_locks {
            mvcc.commit_directly(key, lock, max_min_commit);
        }
        return Ok((0, max_min_commit));
    }
    for (key, lock) in new_locks {
        mvcc.locks.insert(key, lock);
    }
    Ok((
        if async_commit && req.use_async_commit {
            max_min_commit
        } else {
            0
        },
        0,
    ))
}

/// A mutation's assertion checked against whether its key exists (spec 4.3): the failure to
/// report, if the level asks for checks and the assertion does not hold.
pub(super) fn assertion_failure(
    mvcc: &Mvcc,
    m: &kvrpcpb::Mutation,
    start_ts: u64,
    level: i32,
    exists: bool,
) -> Option<KeyErr> {
    let checked =
        kvrpcpb::AssertionLevel::try_from(level).is_ok_and(|l| l != kvrpcpb::AssertionLevel::Off);
    let holds = match kvrpcpb::Assertion::try_from(m.assertion) {
        Ok(kvrpcpb::Assertion::Exist) => exists,
        Ok(kvrpcpb::Assertion::NotExist) => !exists,
        _ => true,
    };
    if !checked || holds {
        return None;
    }
    let (existing_start_ts, existing_commit_ts) = mvcc.exists(&m.key).unwrap_or((0, 0));
    Some(KeyErr::Assertion(kvrpcpb::AssertionFailed {
        start_ts,
        key: m.key.clone(),
        assertion: m.assertion,
        existing_start_ts,
        existing_commit_ts,
    }))
}

fn committed_result(req: &kvrpcpb::PrewriteRequest, commit_ts: u64) -> (u64, u64) {
    if req.try_one_pc {
        (0, commit_ts)
    } else if req.use_async_commit {
        (commit_ts, 0)
    } else {
        (0, 0)
    }
}

/// The decision table of spec 4.9.
fn check_txn_status(
    mvcc: &mut Mvcc,
    req: &kvrpcpb::CheckTxnStatusRequest,
) -> Result<kvrpcpb::CheckTxnStatusResponse, KeyErr> {
    use kvrpcpb::Action;
    let key = &req.primary_key;
    let answer = |action: Action| kvrpcpb::CheckTxnStatusResponse {
        action: action as i32,
        ..Default::default()
    };
    if let Some(lock) = mvcc.locks.get(key).filter(|l| l.ts == req.lock_ts).cloned() {
        let stale_pessimistic = req.verify_is_primary && lock.primary != *key;
        if stale_pessimistic {
            if !req.resolving_pessimistic_lock && lock.lock_type == LockType::Pessimistic {
                mvcc.locks.remove(key);
            } else {
                let mut info = lock.info(key);
                info.key = key.clone();
                return Err(KeyErr::PrimaryMismatch(info));
            }
        } else {
            if lock.use_async_commit && !req.force_sync_commit {
                return Ok(kvrpcpb::CheckTxnStatusResponse {
                    lock_ttl: lock.ttl,
                    action: Action::NoAction as i32,
                    lock_info: Some(lock.info(key)),
                    ..Default::default()
                });
            }
            if lock.expired(req.current_ts) {
                if lock.lock_type == LockType::Pessimistic && req.resolving_pessimistic_lock {
                    mvcc.locks.remove(key);
                    return Ok(answer(Action::TtlExpirePessimisticRollback));
                }
                let _ = mvcc.rollback(key, req.lock_ts, true, true);
                return Ok(answer(Action::TtlExpireRollback));
            }
            let mut pushed = req.caller_start_ts == u64::MAX;
            let lock_mut = mvcc.locks.get_mut(key).expect("present");
            if lock_mut.min_commit_ts != 0
                && req.caller_start_ts != u64::MAX
                && req.caller_start_ts >= lock_mut.min_commit_ts
            {
                lock_mut.min_commit_ts = (req.caller_start_ts + 1).max(req.current_ts);
            }
            if req.caller_start_ts != 0 && lock_mut.min_commit_ts > req.caller_start_ts {
                pushed = true;
            }
            let lock = lock_mut.clone();
            return Ok(kvrpcpb::CheckTxnStatusResponse {
                lock_ttl: lock.ttl,
                action: if pushed {
                    Action::MinCommitTsPushed
                } else {
                    Action::NoAction
                } as i32,
                lock_info: Some(lock.info(key)),
                ..Default::default()
            });
        }
    }
    match mvcc.txn_status(key, req.lock_ts) {
        Some(TxnStatus::Committed(c)) => Ok(kvrpcpb::CheckTxnStatusResponse {
            commit_version: c,
            ..Default::default()
        }),
        Some(TxnStatus::RolledBack) => Ok(answer(Action::NoAction)),
        None if !req.rollback_if_not_exist => Err(KeyErr::TxnNotFound(req.lock_ts, key.clone())),
        None if req.resolving_pessimistic_lock => Ok(answer(Action::LockNotExistDoNothing)),
        None => {
            let _ = mvcc.rollback(key, req.lock_ts, true, false);
            Ok(answer(Action::LockNotExistRollback))
        }
    }
}

/// Full resolve: every lock in the region whose txn has a status (spec 4.11).
fn resolve_region(
    mvcc: &mut Mvcc,
    statuses: &[(u64, u64)],
    lo: &[u8],
    hi: &[u8],
) -> Result<(), KeyErr> {
    let Some(bounds) = key_bounds(lo, hi) else {
        return Ok(());
    };
    let targets: Vec<(Vec<u8>, u64, u64, LockType)> = mvcc
        .locks
        .range::<[u8], _>(bounds)
        .filter_map(|(k, l)| {
            statuses
                .iter()
                .find(|(txn, _)| *txn == l.ts)
                .map(|(_, status)| (k.clone(), l.ts, *status, l.lock_type))
        })
        .collect();
    for (key, start, status, lock_type) in targets {
        if status == 0 {
            let _ = mvcc.rollback(&key, start, false, true);
        } else if status > start {
            match mvcc.commit(&key, start, status) {
                Err(KeyErr::TxnLockNotFound(..)) if lock_type == LockType::Pessimistic => {}
                other => other?,
            }
        } else {
            return Err(KeyErr::Abort(format!(
                "Error(InvalidTxnTso {{ start_ts: {start}, commit_ts: {status} }})"
            )));
        }
    }
    Ok(())
}

/// Lite resolve: exactly the given keys (spec 4.11).
fn resolve_lite(mvcc: &mut Mvcc, req: &kvrpcpb::ResolveLockRequest) -> Result<(), KeyErr> {
    if req.start_version == 0 {
        return Err(KeyErr::Abort("lite resolve needs a start version".into()));
    }
    // All or nothing, like every command (spec 4.11).
    let keys: Vec<&[u8]> = req.keys.iter().map(|k| &k[..]).collect();
    let mut trial = MvccTrial::new(mvcc, &keys);
    for key in &req.keys {
        if req.commit_version != 0 {
            trial
                .mvcc
                .commit(key, req.start_version, req.commit_version)?;
        } else if let Err(c) = trial.mvcc.rollback(key, req.start_version, false, true) {
            return Err(committed_abort(req.start_version, c, key));
        }
    }
    trial.apply(mvcc);
    Ok(())
}

impl MockTikv {
    /// Physically deletes every version and lock in `[start, end)` (spec 4.16).
    pub(super) fn kv_delete_range(
        &self,
        req: &kvrpcpb::DeleteRangeRequest,
        region: &Region,
    ) -> kvrpcpb::DeleteRangeResponse {
        let api = ApiCheck::Range(&req.start_key, &req.end_key);
        if let Err(text) = self.check_txn_api(req.context.as_ref(), "delete_range", api) {
            return kvrpcpb::DeleteRangeResponse {
                error: text,
                ..Default::default()
            };
        }
        let start = crate::kv::memcomparable::encode(&req.start_key);
        let end = crate::kv::memcomparable::encode(&req.end_key);
        let region_error = |e: crate::proto::errorpb::Error| kvrpcpb::DeleteRangeResponse {
            region_error: Some(e),
            ..Default::default()
        };
        if start >= end {
            return region_error(crate::proto::errorpb::Error {
                message: format!(
                    "invalid delete range command, start_key: {}, end_key: {}",
                    super::hex(&start),
                    super::hex(&end)
                ),
                ..Default::default()
            });
        }
        if !self.in_region(region, &req.start_key, DataKind::Txn) {
            return region_error(*self.key_not_in_region(region, &req.start_key));
        }
        if !self.seekable(region, &req.end_key, DataKind::Txn) {
            return region_error(*self.key_not_in_region(region, &req.end_key));
        }
        if !req.notify_only {
            let mut mvcc = self.mvcc();
            for key in mvcc.keys_in(&req.start_key, &req.end_key) {
                mvcc.locks.remove(&key);
                mvcc.writes.remove(&key);
            }
        }
        kvrpcpb::DeleteRangeResponse::default()
    }

    /// Store-level: removes all data in the range, whatever the region (spec 4.16).
    pub(super) fn unsafe_destroy_range(
        &self,
        req: &kvrpcpb::UnsafeDestroyRangeRequest,
    ) -> kvrpcpb::UnsafeDestroyRangeResponse {
        if req.start_key.is_empty() || req.end_key.is_empty() {
            // Real TiKV crashes on this; the mock refuses it.
            return kvrpcpb::UnsafeDestroyRangeResponse {
                error: "unsafe destroy range needs a non-empty start and end key".into(),
                ..Default::default()
            };
        }
        let mut mvcc = self.mvcc();
        for key in mvcc.keys_in(&req.start_key, &req.end_key) {
            mvcc.locks.remove(&key);
            mvcc.writes.remove(&key);
        }
        drop(mvcc);
        let mut raw = self.node.raw();
        for cf in ["default", "lock", "write"] {
            raw.delete_range(cf, &req.start_key, &req.end_key);
        }
        kvrpcpb::UnsafeDestroyRangeResponse::default()
    }
}
