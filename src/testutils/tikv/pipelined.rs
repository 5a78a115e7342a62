//! Pipelined DML (spec 4.17): KvFlush writes a transaction's mutations as locks, in numbered
//! generations, while the transaction is still running; KvBufferBatchGet reads them back.
//! The locks are committed or rolled back like prewrite locks.

// Key errors become protobuf messages at once; boxing them would only add noise here.
#![allow(clippy::result_large_err)]

use super::txn::{assertion_failure, ApiCheck};
use super::MockTikv;
use crate::proto::kvrpcpb;
use crate::testutils::cluster::{DataKind, Region};
use crate::testutils::mvcc::{KeyErr, Lock, LockType, Mvcc, TxnStatus};

impl MockTikv {
    pub(super) fn kv_flush(
        &self,
        req: &kvrpcpb::FlushRequest,
        region: &Region,
    ) -> kvrpcpb::FlushResponse {
        let failed = |e: KeyErr| kvrpcpb::FlushResponse {
            errors: vec![e.into_proto()],
            ..Default::default()
        };
        let keys: Vec<&[u8]> = req.mutations.iter().map(|m| &m.key[..]).collect();
        if let Err(e) = self.check_txn_write(req.context.as_ref(), "flush", &keys) {
            return failed(e);
        }
        if let Some(outside) = self.outside_region(region, keys) {
            return outside;
        }
        if req.generation == 0 {
            return failed(KeyErr::Abort(
                "Error(Other(\"generation should be greater than 0 for Flush requests\"))".into(),
            ));
        }
        let mut mvcc = self.node.store_mvcc(self.store);
        match flush(&mut mvcc, req) {
            Ok(locked) => kvrpcpb::FlushResponse {
                errors: locked.into_iter().map(KeyErr::into_proto).collect(),
                ..Default::default()
            },
            Err(e) => failed(e),
        }
    }

    pub(super) fn kv_buffer_batch_get(
        &self,
        req: &kvrpcpb::BufferBatchGetRequest,
        region: &Region,
    ) -> kvrpcpb::BufferBatchGetResponse {
        let keys: Vec<&[u8]> = req.keys.iter().map(|k| &k[..]).collect();
        let api = ApiCheck::Keys(&keys);
        if let Err(text) = self.check_txn_api(req.context.as_ref(), "buffer_batch_get", api) {
            return kvrpcpb::BufferBatchGetResponse {
                error: Some(KeyErr::Abort(text).into_proto()),
                ..Default::default()
            };
        }
        let mut keys = req.keys.clone();
        keys.sort();
        keys.dedup();
        let mut mvcc = self.node.store_mvcc(self.store);
        self.observe_read(&mut mvcc, req.context.as_ref(), region, req.version);
        // Only the transaction's own flushed locks count; a deletion reads as an empty value
        // (as TiDB's memdb holds it), unlike KvBatchGet.
        let pairs = keys
            .into_iter()
            .filter_map(|key| {
                if !self.in_region(region, &key, DataKind::Txn) {
                    return Some(kvrpcpb::KvPair {
                        error: Some(self.out_of_region(region, &key).into_proto()),
                        ..Default::default()
                    });
                }
                let lock = mvcc.locks.get(&key).filter(|l| l.ts == req.version)?;
                let value = match lock.lock_type {
                    LockType::Put => lock.value.clone(),
                    LockType::Delete => Vec::new(),
                    LockType::Lock | LockType::Pessimistic => return None,
                };
                Some(kvrpcpb::KvPair {
                    key,
                    value,
                    ..Default::default()
                })
            })
            .collect();
        kvrpcpb::BufferBatchGetResponse {
            pairs,
            ..Default::default()
        }
    }
}

/// Flushes one generation: optimistic prewrite per key, except that a newer generation
/// overwrites the transaction's own lock (an older one is ignored) and keys locked by other
/// transactions are reported while the others are written. Returns those lock errors, or the
/// error that failed the whole request (then nothing is written).
fn flush(mvcc: &mut Mvcc, req: &kvrpcpb::FlushRequest) -> Result<Vec<KeyErr>, KeyErr> {
    let start = req.start_ts;
    let mut staged: Vec<(Vec<u8>, Lock)> = Vec::new();
    let mut locked = Vec::new();
    let mut assertion = None;
    let committed = |mvcc: &Mvcc, key: &[u8]| {
        matches!(mvcc.txn_status(key, start), Some(TxnStatus::Committed(_)))
    };
    for m in &req.mutations {
        let key = &m.key;
        let Ok(op) = kvrpcpb::Op::try_from(m.op) else {
            return Err(KeyErr::Abort(format!(
                "unsupported mutation op {} in flush",
                m.op
            )));
        };
        let lock_type = match op {
            kvrpcpb::Op::Put | kvrpcpb::Op::Insert => Some(LockType::Put),
            kvrpcpb::Op::Del => Some(LockType::Delete),
            kvrpcpb::Op::Lock => Some(LockType::Lock),
            kvrpcpb::Op::CheckNotExists => None,
            other => {
                return Err(KeyErr::Abort(format!(
                    "unsupported mutation {other:?} in flush"
                )))
            }
        };
        let checks_existence = matches!(op, kvrpcpb::Op::Insert | kvrpcpb::Op::CheckNotExists);
        if checks_existence {
            mvcc.observe_ts(start);
        }
        let own = match mvcc.locks.get(key) {
            Some(l) if l.ts != start => {
                if committed(mvcc, key) {
                    // A retried flush of a committed transaction: success, nothing written.
                    return Ok(Vec::new());
                }
                locked.push(KeyErr::Locked(l.info(key)));
                continue;
            }
            // A generation already flushed, or flushed later: ignored.
            Some(l) if l.generation >= req.generation => continue,
            Some(l) if l.lock_type == LockType::Pessimistic => {
                return Err(KeyErr::Abort(format!(
                    "Error(LockTypeNotMatch {{ start_ts: {start}, key: {key:?} }})"
                )));
            }
            own => own.cloned(),
        };
        if own.is_none() {
            if let Err(e) = mvcc.check_conflict(key, start, &req.primary_key) {
                if committed(mvcc, key) {
                    return Ok(Vec::new());
                }
                return Err(e);
            }
        }
        // The value this transaction sees: its own flushed write, else the committed one.
        let exists = match own.as_ref().map(|l| l.lock_type) {
            Some(LockType::Put) => true,
            Some(LockType::Delete) => false,
            _ => mvcc.exists(key).is_some(),
        };
        if checks_existence && exists {
            return Err(KeyErr::AlreadyExist(key.clone()));
        }
        if assertion.is_none() {
            assertion = assertion_failure(mvcc, m, start, req.assertion_level, exists);
        }
        let Some(lock_type) = lock_type else {
            continue;
        };
        staged.push((
            key.clone(),
            Lock {
                lock_type,
                primary: req.primary_key.clone(),
                ts: start,
                ttl: req.lock_ttl,
                value: if lock_type == LockType::Put {
                    m.value.clone()
                } else {
                    Vec::new()
                },
                for_update_ts: 0,
                // Unknown until the end: never resolved "lite".
                txn_size: u64::MAX,
                // Readers may push it; the request's min_commit_ts is not used.
                min_commit_ts: start.saturating_add(1),
                use_async_commit: false,
                secondaries: Vec::new(),
                rollback_ts: own.map(|l| l.rollback_ts).unwrap_or_default(),
                generation: req.generation,
            },
        ));
    }
    if let Some(a) = assertion {
        return Err(a);
    }
    for (key, lock) in staged {
        mvcc.locks.insert(key, lock);
    }
    Ok(locked)
}
