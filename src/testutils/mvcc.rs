//! Percolator storage: locks and write records per key (spec 1.2-1.5), and the per-key rules
//! of reads, prewrite, commit and rollback (spec 3, 4). Keys are user keys; values are kept
//! inline (the short-value distinction is invisible to clients).

// Key errors become protobuf messages at once; boxing them would only add noise here.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use super::key_bounds;
use crate::proto::kvrpcpb::{self, write_conflict::Reason};

/// A lock's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockType {
    Put,
    Delete,
    Lock,
    Pessimistic,
}

impl LockType {
    fn op(self) -> kvrpcpb::Op {
        match self {
            LockType::Put => kvrpcpb::Op::Put,
            LockType::Delete => kvrpcpb::Op::Del,
            LockType::Lock => kvrpcpb::Op::Lock,
            LockType::Pessimistic => kvrpcpb::Op::PessimisticLock,
        }
    }
}

/// The single current lock of a key.
#[derive(Debug, Clone)]
pub(crate) struct Lock {
    pub lock_type: LockType,
    pub primary: Vec<u8>,
    pub ts: u64,
    pub ttl: u64,
    pub value: Vec<u8>,
    pub for_update_ts: u64,
    pub txn_size: u64,
    pub min_commit_ts: u64,
    pub use_async_commit: bool,
    pub secondaries: Vec<Vec<u8>>,
    pub rollback_ts: Vec<u64>,
    /// The flush generation that wrote it (pipelined DML); 0 for prewrites.
    pub generation: u64,
}

impl Lock {
    pub(crate) fn info(&self, key: &[u8]) -> kvrpcpb::LockInfo {
        kvrpcpb::LockInfo {
            primary_lock: self.primary.clone(),
            lock_version: self.ts,
            key: key.to_vec(),
            lock_ttl: self.ttl,
            txn_size: self.txn_size,
            lock_type: self.lock_type.op() as i32,
            lock_for_update_ts: self.for_update_ts,
            use_async_commit: self.use_async_commit,
            min_commit_ts: self.min_commit_ts,
            secondaries: self.secondaries.clone(),
            ..Default::default()
        }
    }

    /// Expired by TiKV's rule: lock ttl against physical parts, strictly (spec 4.9). The sum
    /// saturates: any TTL a client sends is accepted, and one past the end of time never
    /// expires (TiKV's release builds wrap it instead, making such a lock look expired).
    pub(crate) fn expired(&self, current_ts: u64) -> bool {
        current_ts == u64::MAX || physical(self.ts).saturating_add(self.ttl) < physical(current_ts)
    }
}

pub(crate) fn physical(ts: u64) -> u64 {
    ts >> crate::timestamp::LOGICAL_BITS
}

/// A write record's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    Put,
    Delete,
    Lock,
    Rollback,
}

/// A write record, keyed by commit ts (rollbacks: by the rolled-back start ts).
#[derive(Debug, Clone)]
pub(crate) struct Write {
    pub kind: WriteKind,
    pub start_ts: u64,
    pub value: Vec<u8>,
    pub protected: bool,
    pub overlapped_rollback: bool,
}

/// A transaction's fate on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnStatus {
    Committed(u64),
    RolledBack,
}

/// Why a per-key step failed: a key error for the client.
#[derive(Debug, Clone)]
pub(crate) enum KeyErr {
    Locked(kvrpcpb::LockInfo),
    Conflict(kvrpcpb::WriteConflict),
    AlreadyExist(Vec<u8>),
    TxnLockNotFound(Vec<u8>, u64),
    TxnNotFound(u64, Vec<u8>),
    CommitTsExpired(kvrpcpb::CommitTsExpired),
    Assertion(kvrpcpb::AssertionFailed),
    PrimaryMismatch(kvrpcpb::LockInfo),
    Abort(String),
}

impl KeyErr {
    pub(crate) fn into_proto(self) -> kvrpcpb::KeyError {
        let mut e = kvrpcpb::KeyError::default();
        match self {
            KeyErr::Locked(info) => e.locked = Some(info),
            KeyErr::Conflict(c) => {
                e.retryable = format!("Error(Txn(Error(Mvcc(Error(WriteConflict {{ {c:?} }})))))");
                e.conflict = Some(c);
            }
            KeyErr::AlreadyExist(key) => e.already_exist = Some(kvrpcpb::AlreadyExist { key }),
            KeyErr::TxnLockNotFound(key, start_ts) => {
                e.retryable = format!(
                    "Error(Txn(Error(Mvcc(Error(TxnLockNotFound {{ start_ts: {start_ts}, key: {key:?} }})))))"
                );
                e.txn_lock_not_found = Some(kvrpcpb::TxnLockNotFound { key });
            }
            KeyErr::TxnNotFound(start_ts, primary_key) => {
                e.txn_not_found = Some(kvrpcpb::TxnNotFound {
                    start_ts,
                    primary_key,
                })
            }
            KeyErr::CommitTsExpired(c) => e.commit_ts_expired = Some(c),
            KeyErr::Assertion(a) => e.assertion_failed = Some(a),
            KeyErr::PrimaryMismatch(info) => {
                e.primary_mismatch = Some(kvrpcpb::PrimaryMismatch {
                    lock_info: Some(info),
                })
            }
            KeyErr::Abort(text) => e.abort = text,
        }
        e
    }
}

/// The lock CF, the write CF and the store's max_ts.
#[derive(Debug, Default)]
pub(crate) struct Mvcc {
    pub locks: BTreeMap<Vec<u8>, Lock>,
    /// key -> commit ts -> record (iterate `.rev()` for newest first).
    pub writes: BTreeMap<Vec<u8>, BTreeMap<u64, Write>>,
    pub max_ts: u64,
}

/// What a read sees in a key's lock (spec 3.1).
pub(crate) enum LockCheck {
    Clear,
    Blocked(kvrpcpb::LockInfo),
    /// The lock's txn is known committed: read its data.
    ReadLockData(Option<Vec<u8>>),
    /// RCCheckTS met a lock: the read fails with this write conflict.
    Conflict(kvrpcpb::WriteConflict),
}

/// The read options of a request's context.
pub(crate) struct ReadCtx<'a> {
    pub ts: u64,
    pub isolation: kvrpcpb::IsolationLevel,
    pub resolved: &'a [u64],
    pub committed: &'a [u64],
}

/// A conflict if the record at `commit_ts` is the transaction's own rollback.
fn self_rollback(
    key: &[u8],
    start_ts: u64,
    commit_ts: u64,
    w: &Write,
    primary: &[u8],
) -> Result<(), KeyErr> {
    if commit_ts == start_ts && (w.kind == WriteKind::Rollback || w.overlapped_rollback) {
        return Err(KeyErr::Conflict(conflict(
            key,
            start_ts,
            w.start_ts,
            commit_ts,
            primary,
            Reason::SelfRolledBack,
        )));
    }
    Ok(())
}

impl Mvcc {
    /// MVCC garbage collection up to `safe_point` (spec 1.6): per key, records committed after
    /// it stay; below it, Lock and Rollback records go up to the newest Put or Delete, which
    /// is kept if a Put; everything older goes. Locks are not touched.
    pub(crate) fn gc(&mut self, safe_point: u64) {
        self.writes.retain(|_, records| {
            let newest_data = records
                .range(..=safe_point)
                .rev()
                .find(|(_, w)| matches!(w.kind, WriteKind::Put | WriteKind::Delete))
                .map(|(ts, w)| (*ts, w.kind));
            records.retain(|ts, _| match newest_data {
                _ if *ts > safe_point => true,
                Some((kept, WriteKind::Put)) => *ts == kept,
                _ => false,
            });
            !records.is_empty()
        });
    }

    pub(crate) fn observe_ts(&mut self, ts: u64) {
        if ts != u64::MAX {
            self.max_ts = self.max_ts.max(ts);
        }
    }

    /// Newest record first.
    fn records(&self, key: &[u8]) -> impl Iterator<Item = (u64, &Write)> {
        self.writes
            .get(key)
            .into_iter()
            .flat_map(|m| m.iter().rev().map(|(ts, w)| (*ts, w)))
    }

    fn newest(&self, key: &[u8]) -> Option<(u64, &Write)> {
        self.records(key).next()
    }

    /// The newest Put/Delete at or below `ts`, looking through Lock/Rollback records.
    fn data_version(&self, key: &[u8], ts: u64) -> Option<(u64, &Write)> {
        self.records(key)
            .filter(|(c, _)| *c <= ts)
            .find(|(_, w)| matches!(w.kind, WriteKind::Put | WriteKind::Delete))
    }

    /// The value visible at `ts` and its commit ts.
    pub(crate) fn read_committed(&self, key: &[u8], ts: u64) -> Option<(Vec<u8>, u64)> {
        match self.data_version(key, ts) {
            Some((c, w)) if w.kind == WriteKind::Put => Some((w.value.clone(), c)),
            _ => None,
        }
    }

    /// Whether txn `start_ts` committed or rolled back `key` (spec 1.3).
    pub(crate) fn txn_status(&self, key: &[u8], start_ts: u64) -> Option<TxnStatus> {
        for (commit_ts, w) in self.records(key) {
            if commit_ts < start_ts {
                break;
            }
            if w.start_ts == start_ts {
                return Some(match w.kind {
                    WriteKind::Rollback => TxnStatus::RolledBack,
                    _ => TxnStatus::Committed(commit_ts),
                });
            }
            if commit_ts == start_ts && w.overlapped_rollback {
                return Some(TxnStatus::RolledBack);
            }
        }
        None
    }

    /// The read rules of spec 3.1 for `key`.
    pub(crate) fn check_lock(&self, key: &[u8], r: &ReadCtx<'_>) -> LockCheck {
        let Some(lock) = self.locks.get(key) else {
            return LockCheck::Clear;
        };
        match r.isolation {
            kvrpcpb::IsolationLevel::Rc => return LockCheck::Clear,
            kvrpcpb::IsolationLevel::RcCheckTs => {
                if matches!(lock.lock_type, LockType::Lock | LockType::Pessimistic)
                    || r.resolved.contains(&lock.ts)
                {
                    return LockCheck::Clear;
                }
                return LockCheck::Conflict(conflict(
                    key,
                    r.ts,
                    lock.ts,
                    0,
                    &lock.primary,
                    Reason::RcCheckTs,
                ));
            }
            kvrpcpb::IsolationLevel::Si => {}
        }
        let ignored = lock.ts > r.ts
            || matches!(lock.lock_type, LockType::Lock | LockType::Pessimistic)
            || lock.min_commit_ts > r.ts
            || r.resolved.contains(&lock.ts)
            || (r.ts == u64::MAX && key == lock.primary.as_slice() && !lock.use_async_commit);
        if ignored {
            LockCheck::Clear
        } else if r.committed.contains(&lock.ts) {
            LockCheck::ReadLockData((lock.lock_type == LockType::Put).then(|| lock.value.clone()))
        } else {
            LockCheck::Blocked(lock.info(key))
        }
    }

    /// A point read (KvGet): value and commit ts, or the blocking lock.
    pub(crate) fn get(
        &self,
        key: &[u8],
        r: &ReadCtx<'_>,
    ) -> Result<Option<(Vec<u8>, u64)>, KeyErr> {
        match self.check_lock(key, r) {
            LockCheck::Blocked(info) => Err(KeyErr::Locked(info)),
            LockCheck::Conflict(c) => Err(KeyErr::Conflict(c)),
            LockCheck::ReadLockData(v) => Ok(v.map(|v| (v, 0))),
            LockCheck::Clear => {
                if r.isolation == kvrpcpb::IsolationLevel::RcCheckTs {
                    // A newer commit than the read timestamp: the read is stale (spec 3.1).
                    if let Some((commit_ts, _)) = self.newest(key).filter(|(c, _)| *c > r.ts) {
                        return Err(KeyErr::Conflict(conflict(
                            key,
                            r.ts,
                            0,
                            commit_ts,
                            b"",
                            Reason::RcCheckTs,
                        )));
                    }
                }
                Ok(self.read_committed(key, r.ts))
            }
        }
    }

    /// The oldest start ts of the locks in `[start, end)` (empty end = unbounded).
    pub(crate) fn min_lock_ts(&self, start: &[u8], end: &[u8]) -> Option<u64> {
        self.locks
            .range::<[u8], _>(key_bounds(start, end)?)
            .map(|(_, l)| l.ts)
            .min()
    }

    /// Keys with a lock or a record in `[start, end)` (empty end = unbounded), in order.
    pub(crate) fn keys_in(&self, start: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
        let Some(bounds) = key_bounds(start, end) else {
            return Vec::new();
        };
        let mut keys: Vec<Vec<u8>> = self
            .writes
            .range::<[u8], _>(bounds)
            .map(|(k, _)| k.clone())
            .chain(self.locks.range::<[u8], _>(bounds).map(|(k, _)| k.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    fn put_write(&mut self, key: &[u8], commit_ts: u64, write: Write) {
        self.writes
            .entry(key.to_vec())
            .or_default()
            .insert(commit_ts, write);
    }

    /// Commits the own lock on `key` (spec 4.5).
    pub(crate) fn commit(
        &mut self,
        key: &[u8],
        start_ts: u64,
        commit_ts: u64,
    ) -> Result<(), KeyErr> {
        match self.locks.get(key) {
            Some(lock) if lock.ts == start_ts => {
                if commit_ts < lock.min_commit_ts {
                    return Err(KeyErr::CommitTsExpired(kvrpcpb::CommitTsExpired {
                        start_ts,
                        attempted_commit_ts: commit_ts,
                        key: key.to_vec(),
                        min_commit_ts: lock.min_commit_ts,
                    }));
                }
                let lock = self.locks.remove(key).expect("checked above");
                let kind = match lock.lock_type {
                    LockType::Pessimistic => return Ok(()),
                    LockType::Put => WriteKind::Put,
                    LockType::Delete => WriteKind::Delete,
                    LockType::Lock => WriteKind::Lock,
                };
                let write = Write {
                    kind,
                    start_ts,
                    value: lock.value,
                    protected: false,
                    overlapped_rollback: lock.rollback_ts.contains(&commit_ts),
                };
                self.put_write(key, commit_ts, write);
                Ok(())
            }
            _ => match self.txn_status(key, start_ts) {
                Some(TxnStatus::Committed(_)) => Ok(()),
                _ => Err(KeyErr::TxnLockNotFound(key.to_vec(), start_ts)),
            },
        }
    }

    /// Writes a rollback record for txn `start_ts` at `key@start_ts` (spec 1.3, 4.6).
    fn write_rollback(&mut self, key: &[u8], start_ts: u64, protected: bool, collapse: bool) {
        if let Some(existing) = self.writes.get_mut(key).and_then(|m| m.get_mut(&start_ts)) {
            if existing.start_ts != start_ts {
                // Another txn committed at exactly this ts: overlapped rollback.
                if protected {
                    existing.overlapped_rollback = true;
                }
                return;
            }
        }
        if collapse {
            let prev = self
                .records(key)
                .find(|(c, _)| *c < start_ts)
                .filter(|(_, w)| w.kind == WriteKind::Rollback && !w.protected)
                .map(|(c, _)| c);
            if let (Some(c), Some(m)) = (prev, self.writes.get_mut(key)) {
                m.remove(&c);
            }
        }
        let write = Write {
            kind: WriteKind::Rollback,
            start_ts,
            value: if protected { b"p".to_vec() } else { Vec::new() },
            protected,
            overlapped_rollback: false,
        };
        self.put_write(key, start_ts, write);
    }

    /// Rolls back txn `start_ts` on `key` (spec 4.6). `protect_missing` decides whether a
    /// rollback written for a missing lock is protected. Fails with the commit ts when the
    /// txn already committed the key.
    pub(crate) fn rollback(
        &mut self,
        key: &[u8],
        start_ts: u64,
        protect_missing: bool,
        collapse: bool,
    ) -> Result<(), u64> {
        if let Some(lock) = self.locks.get(key).filter(|l| l.ts == start_ts) {
            let protected = lock.primary == key;
            self.locks.remove(key);
            self.write_rollback(key, start_ts, protected, collapse);
            return Ok(());
        }
        match self.txn_status(key, start_ts) {
            Some(TxnStatus::Committed(c)) => Err(c),
            Some(TxnStatus::RolledBack) => Ok(()),
            None => {
                self.write_rollback(key, start_ts, protect_missing, collapse && !protect_missing);
                if protect_missing {
                    if let Some(other) = self.locks.get_mut(key) {
                        if other.use_async_commit && other.min_commit_ts <= start_ts {
                            other.rollback_ts.push(start_ts);
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// The write-conflict check of an optimistic prewrite on the newest record (spec 4.2).
    pub(crate) fn check_conflict(
        &self,
        key: &[u8],
        start_ts: u64,
        primary: &[u8],
    ) -> Result<(), KeyErr> {
        let Some((commit_ts, w)) = self.newest(key) else {
            return Ok(());
        };
        self_rollback(key, start_ts, commit_ts, w, primary)?;
        if commit_ts > start_ts {
            return Err(KeyErr::Conflict(conflict(
                key,
                start_ts,
                w.start_ts,
                commit_ts,
                primary,
                Reason::Optimistic,
            )));
        }
        Ok(())
    }

    /// The constraint check of a retried pessimistic prewrite of a key it did not lock
    /// (spec 4.2, `SKIP_PESSIMISTIC_CHECK` with `is_retry_request`): its own rollback is a
    /// conflict; any newer non-rollback record than `for_update_ts` means the lock is gone.
    pub(crate) fn check_retried_prewrite(
        &self,
        key: &[u8],
        start_ts: u64,
        for_update_ts: u64,
        primary: &[u8],
    ) -> Result<(), KeyErr> {
        for (commit_ts, w) in self.records(key) {
            self_rollback(key, start_ts, commit_ts, w, primary)?;
            if commit_ts <= for_update_ts {
                break;
            }
            if w.kind != WriteKind::Rollback {
                return Err(KeyErr::Abort(format!(
                    "Error(PessimisticLockNotFound {{ start_ts: {start_ts}, key: {key:?} }})"
                )));
            }
        }
        Ok(())
    }

    /// Whether the newest data version (through Lock/Rollback records) is a Put.
    pub(crate) fn exists(&self, key: &[u8]) -> Option<(u64, u64)> {
        match self.data_version(key, u64::MAX) {
            Some((c, w)) if w.kind == WriteKind::Put => Some((w.start_ts, c)),
            _ => None,
        }
    }

    /// The newest record's commit ts, if any.
    pub(crate) fn newest_commit_ts(&self, key: &[u8]) -> Option<u64> {
        self.newest(key).map(|(c, _)| c)
    }

    /// Writes a committed record directly (1PC).
    pub(crate) fn commit_directly(&mut self, key: &[u8], lock: &Lock, commit_ts: u64) {
        let kind = match lock.lock_type {
            LockType::Put => WriteKind::Put,
            LockType::Delete => WriteKind::Delete,
            LockType::Lock => WriteKind::Lock,
            LockType::Pessimistic => return,
        };
        self.locks.remove(key);
        self.put_write(
            key,
            commit_ts,
            Write {
                kind,
                start_ts: lock.ts,
                value: lock.value.clone(),
                protected: false,
                overlapped_rollback: false,
            },
        );
    }
}

pub(crate) fn conflict(
    key: &[u8],
    start_ts: u64,
    conflict_ts: u64,
    commit_ts: u64,
    primary: &[u8],
    reason: Reason,
) -> kvrpcpb::WriteConflict {
    kvrpcpb::WriteConflict {
        start_ts,
        conflict_ts,
        conflict_commit_ts: commit_ts,
        key: key.to_vec(),
        primary: primary.to_vec(),
        reason: reason as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(ts: u64, primary: &[u8], t: LockType) -> Lock {
        Lock {
            lock_type: t,
            primary: primary.to_vec(),
            ts,
            ttl: 3000,
            value: b"v".to_vec(),
            for_update_ts: 0,
            txn_size: 1,
            min_commit_ts: 0,
            use_async_commit: false,
            secondaries: vec![],
            rollback_ts: vec![],
            generation: 0,
        }
    }

    fn si(ts: u64) -> ReadCtx<'static> {
        ReadCtx {
            ts,
            isolation: kvrpcpb::IsolationLevel::Si,
            resolved: &[],
            committed: &[],
        }
    }

    #[test]
    fn reads_see_the_newest_committed_version_at_their_ts() {
        let mut m = Mvcc::default();
        m.locks.insert(b"k".to_vec(), lock(10, b"k", LockType::Put));
        m.commit(b"k", 10, 20).unwrap();
        m.locks
            .insert(b"k".to_vec(), lock(30, b"k", LockType::Lock));
        m.commit(b"k", 30, 40).unwrap();
        assert_eq!(m.get(b"k", &si(15)).unwrap(), None);
        assert_eq!(m.get(b"k", &si(20)).unwrap(), Some((b"v".to_vec(), 20)));
        assert_eq!(
            m.get(b"k", &si(50)).unwrap(),
            Some((b"v".to_vec(), 20)),
            "Lock records are skipped"
        );
    }

    #[test]
    fn ttl_expiry_compares_physical_times_and_saturates() {
        let at = |ms: u64| ms << crate::timestamp::LOGICAL_BITS;
        let mut l = lock(at(1000), b"k", LockType::Put);
        assert!(!l.expired(at(4000)), "1000 + 3000 is not before 4000");
        assert!(l.expired(at(4001)));
        assert!(l.expired(u64::MAX), "the maximal ts expires every lock");
        l.ttl = u64::MAX;
        assert!(!l.expired(u64::MAX - 1), "a maximal ttl outlives every ts");
    }

    #[test]
    fn lock_blocking_rules() {
        let mut m = Mvcc::default();
        m.locks.insert(b"k".to_vec(), lock(10, b"p", LockType::Put));
        assert!(
            matches!(m.check_lock(b"k", &si(5)), LockCheck::Clear),
            "lock newer than the read"
        );
        assert!(
            matches!(m.check_lock(b"k", &si(10)), LockCheck::Blocked(_)),
            "own ts is blocked"
        );
        let resolved = [10];
        let r = ReadCtx {
            resolved: &resolved,
            ..si(20)
        };
        assert!(matches!(m.check_lock(b"k", &r), LockCheck::Clear));
        let committed = [10];
        let r = ReadCtx {
            committed: &committed,
            ..si(20)
        };
        assert!(matches!(
            m.check_lock(b"k", &r),
            LockCheck::ReadLockData(Some(_))
        ));
        m.locks.get_mut(&b"k"[..]).unwrap().min_commit_ts = 25;
        assert!(
            matches!(m.check_lock(b"k", &si(20)), LockCheck::Clear),
            "pushed past the reader"
        );
        m.locks
            .insert(b"p".to_vec(), lock(10, b"p", LockType::Pessimistic));
        assert!(
            matches!(m.check_lock(b"p", &si(20)), LockCheck::Clear),
            "pessimistic locks never block"
        );
    }

    #[test]
    fn gc_keeps_the_newest_version_below_the_safe_point_and_everything_above() {
        let mut m = Mvcc::default();
        let record = |kind, start_ts| Write {
            kind,
            start_ts,
            value: if kind == WriteKind::Put {
                format!("v{start_ts}").into_bytes()
            } else {
                Vec::new()
            },
            protected: true,
            overlapped_rollback: false,
        };
        let history = [
            (20, WriteKind::Put),
            (30, WriteKind::Rollback),
            (40, WriteKind::Put),
            (45, WriteKind::Lock),
            (60, WriteKind::Delete),
            (80, WriteKind::Put),
        ];
        for (ts, kind) in history {
            m.writes
                .entry(b"k".to_vec())
                .or_default()
                .insert(ts, record(kind, ts - 1));
        }
        m.writes
            .entry(b"gone".to_vec())
            .or_default()
            .insert(10, record(WriteKind::Delete, 9));
        m.locks
            .insert(b"locked".to_vec(), lock(5, b"locked", LockType::Put));

        m.gc(50);
        let left: Vec<u64> = m.writes[&b"k"[..]].keys().copied().collect();
        assert_eq!(
            left,
            vec![40, 60, 80],
            "the newest Put below 50 and all above"
        );
        assert_eq!(m.read_committed(b"k", 50), Some((b"v39".to_vec(), 40)));
        assert_eq!(m.read_committed(b"k", 25), None, "older versions are gone");
        assert!(
            !m.writes.contains_key(&b"gone"[..]),
            "a Delete below goes with its key"
        );
        assert!(m.locks.contains_key(&b"locked"[..]), "locks stay");

        m.gc(40);
        assert_eq!(
            m.writes[&b"k"[..]].len(),
            3,
            "a lower safe point does nothing"
        );
        m.gc(70);
        let left: Vec<u64> = m.writes[&b"k"[..]].keys().copied().collect();
        assert_eq!(
            left,
            vec![80],
            "a Delete below the safe point goes with all older"
        );
    }

    #[test]
    fn rollbacks_protect_primaries_and_collapse_unprotected_ones() {
        let mut m = Mvcc::default();
        m.rollback(b"k", 5, false, true).unwrap();
        m.rollback(b"k", 7, false, true).unwrap();
        assert_eq!(
            m.writes[&b"k"[..]].len(),
            1,
            "the older unprotected rollback collapsed"
        );
        m.rollback(b"k", 9, true, true).unwrap();
        m.rollback(b"k", 11, false, true).unwrap();
        assert!(
            m.writes[&b"k"[..]][&9].protected,
            "protected rollbacks stay"
        );
        assert_eq!(m.txn_status(b"k", 9), Some(TxnStatus::RolledBack));
        m.locks.insert(b"k".to_vec(), lock(20, b"k", LockType::Put));
        m.commit(b"k", 20, 30).unwrap();
        assert_eq!(
            m.rollback(b"k", 20, true, true),
            Err(30),
            "committed txns cannot be rolled back"
        );
        // A rollback of txn 30 on a key where another txn committed at 30: overlapped.
        m.rollback(b"k", 30, true, false).unwrap();
        assert_eq!(m.txn_status(b"k", 30), Some(TxnStatus::RolledBack));
        assert_eq!(
            m.read_committed(b"k", 40),
            Some((b"v".to_vec(), 30)),
            "data stays"
        );
    }

    #[test]
    fn commit_checks_min_commit_ts_and_is_idempotent() {
        let mut m = Mvcc::default();
        let mut l = lock(10, b"k", LockType::Put);
        l.min_commit_ts = 15;
        m.locks.insert(b"k".to_vec(), l);
        assert!(matches!(
            m.commit(b"k", 10, 12),
            Err(KeyErr::CommitTsExpired(_))
        ));
        m.commit(b"k", 10, 16).unwrap();
        m.commit(b"k", 10, 16).unwrap();
        assert!(matches!(
            m.commit(b"x", 10, 16),
            Err(KeyErr::TxnLockNotFound(..))
        ));
    }
}
