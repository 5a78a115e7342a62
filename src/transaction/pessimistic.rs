//! Pessimistic locking (spec 4.13, client-go's `LockKeys`): keys are locked as they are
//! written or read for update, at a fresh for_update_ts per request, the primary's batch first
//! until the primary is locked; the primary lock is kept alive by heartbeats.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::{BackoffKind, Backoffer};
use crate::interceptor::Interceptors;
use crate::proto::kvrpcpb;
use crate::request::{BatchLimits, Locate, Settled, RAW_BATCH_BYTES};
use crate::rt;
use crate::{Error, Key, KvPair, Result, Value};

use super::options::{LockOptions, LockWait, LockedKey};
use super::requests::{release_locks, MAX_LOCK_TTL_MS, WRITE_BUDGET};
use super::txn::{Mutation, Transaction};
use super::Core;

/// client-go's pessimistic lock budget: 20 s (doubled by its backoff weight).
const LOCK_BUDGET: Duration = Duration::from_secs(40);
/// client-go's `MaxTxnTTL`: heartbeats stop after an hour.
const MAX_TXN_TTL: Duration = Duration::from_secs(3600);
/// The shortest interval between heartbeats.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

impl Transaction {
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
    /// to it; TiKV checks it when [`super::TransactionOptions::assertion_level`] is not off, and a
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
        let start = self.start_version();
        let started = self.started;
        let timeout = self.operation_timeout();
        // A zero interval would spin: heartbeats are at least this far apart.
        let interval = interval.max(MIN_HEARTBEAT_INTERVAL);
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
                    advise_lock_ttl: (alive.as_millis() as u64).saturating_add(MAX_LOCK_TTL_MS),
                    ..Default::default()
                };
                let mut backoffer = Backoffer::new(WRITE_BUDGET).with_timeout(timeout, rt.now());
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

    pub(super) async fn lock_if_pessimistic(&mut self, key: &[u8]) -> Result<()> {
        if self.options.pessimistic && !self.locked.contains(key) {
            self.lock_encoded(vec![key.to_vec()], &LockOptions::default())
                .await?;
        }
        Ok(())
    }

    /// Takes a pessimistic lock asking TiKV to fail with `AlreadyExist` if the key exists
    /// (for inserts).
    pub(super) async fn lock_not_existing(&mut self, key: &[u8]) -> Result<()> {
        if self.options.pessimistic {
            let options = LockOptions {
                assert_not_exist: true,
                ..Default::default()
            };
            self.lock_encoded(vec![key.to_vec()], &options).await?;
        }
        Ok(())
    }

    /// Takes pessimistic locks on `keys` (encoded). When the request fails or is cancelled,
    /// the locks some regions may have granted are released in the background.
    pub(super) async fn lock_encoded(
        &mut self,
        keys: Vec<Vec<u8>>,
        options: &LockOptions,
    ) -> Result<BTreeMap<Vec<u8>, Observed>> {
        let fresh: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| !self.locked.contains(*k))
            .cloned()
            .collect();
        let release = Release {
            core: self.core.clone(),
            interceptors: self.interceptors().clone(),
            start: self.start_version(),
            keys: fresh,
            for_update_ts: self.for_update_ts.clone(),
        };
        let result = Box::pin(self.try_lock_keys(keys, options)).await;
        if result.is_ok() {
            release.disarm();
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
        let start = self.start_version();
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
        // A wait too long to represent is no different from waiting forever.
        let deadline = match lock_wait {
            LockWait::Timeout(d) => rt.now().checked_add(d),
            _ => None,
        };
        let interceptors = self.interceptors().clone();
        let mut backoffer = self.operation_backoffer(LOCK_BUDGET);
        let mut conflicts = 0;
        loop {
            let for_update_ts = self.core.exec.timestamp(&backoffer).await?.version();
            // Recorded before sending: a failed or cancelled attempt's locks are released up
            // to it.
            self.for_update_ts
                .fetch_max(for_update_ts, Ordering::AcqRel);
            // client-go skips deadlock detection only for a transaction's first, single-key lock.
            let is_first_lock = self.locked.is_empty() && keys.len() == 1;
            // TiKV measures the TTL from the start timestamp: add the transaction's age.
            let lock_ttl = (self.age().as_millis() as u64).saturating_add(MAX_LOCK_TTL_MS);
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
                min_commit_ts: for_update_ts.saturating_add(1),
                return_values: options.return_values,
                check_existence: options.check_existence,
                lock_only_if_exists: options.lock_only_if_exists,
                ..Default::default()
            };
            // As client-go: until the primary is locked, the batch holding it (its region's
            // first keys, within one request's size) goes first and the others only once it
            // succeeded, so that no lock points to a primary that was never locked (a
            // resolver would roll the transaction back).
            let (first, rest) = if self.primary.is_none() {
                let locate = self.core.exec.locate(Locate::Key(&primary), &mut backoffer);
                let region = Box::pin(locate).await?;
                primary_batch_first(&keys, |k| region.contains(k))
            } else {
                (keys.clone(), Vec::new())
            };
            let limits: BatchLimits<Vec<u8>> = BatchLimits {
                max_count: usize::MAX,
                max_bytes: RAW_BATCH_BYTES,
                size: Vec::len,
            };
            // Every region's request is settled before a failure is reported, so that the
            // locks released then cannot be granted after the release.
            let exec = &self.core.exec;
            let settled = exec
                .run_grouped_settled(first, |k| k, limits, &interceptors, &mut backoffer, &build)
                .await;
            let mut responses = all_answered(settled)?;
            let primary_done = responses.iter().all(|(_, r)| r.errors.is_empty());
            if primary_done && !rest.is_empty() {
                let settled = exec
                    .run_grouped_settled(rest, |k| k, limits, &interceptors, &mut backoffer, &build)
                    .await;
                responses.extend(all_answered(settled)?);
            }
            let mut conflict = None;
            let mut locks = Vec::new();
            let mut observed = BTreeMap::new();
            for (group, resp) in responses {
                if resp.errors.is_empty() {
                    observe(&group, &resp, options, &mut observed)?;
                }
                for e in resp.errors {
                    if let Some(c) = e.conflict {
                        conflict = Some(c);
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
            if conflict.is_none() && locks.is_empty() {
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
            if let Some(c) = conflict {
                // A newer commit: lock again at a newer for_update_ts, at once the first time,
                // then after a backoff (a key written again and again must not spin).
                conflicts += 1;
                if conflicts > 1 {
                    let cause = Error::WriteConflict(Box::new(c));
                    backoffer
                        .backoff(&rt, BackoffKind::TxnLockFast, cause)
                        .await?;
                }
            }
        }
    }
}

/// Releases, in the background, the locks a pessimistic lock request may have been granted,
/// when the request fails or is dropped before it finishes (unless disarmed). Only locks up
/// to the request's latest for_update_ts go, so a newer request's locks on the same keys stay.
struct Release {
    core: Arc<Core>,
    interceptors: Interceptors,
    start: u64,
    keys: Vec<Vec<u8>>,
    for_update_ts: Arc<AtomicU64>,
}

impl Release {
    /// The request succeeded: its locks are the transaction's.
    fn disarm(mut self) {
        self.keys.clear();
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let core = self.core.clone();
        let interceptors = self.interceptors.clone();
        let (start, keys) = (self.start, std::mem::take(&mut self.keys));
        let for_update_ts = self.for_update_ts.load(Ordering::Acquire);
        release_locks(core, interceptors, start, for_update_ts, keys);
    }
}

/// Every region's answer, or the first failure.
fn all_answered<R>(settled: Settled<Vec<u8>, R>) -> Result<Vec<(Vec<Vec<u8>>, R)>> {
    settled
        .into_iter()
        .map(|(keys, reply)| reply.map(|r| (keys, r)))
        .collect()
}

/// What a pessimistic lock request observed of a key.
#[derive(Debug, Clone)]
pub(super) struct Observed {
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
