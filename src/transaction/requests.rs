//! The writes a transaction sends outside its own calls: committing or rolling back keys in
//! bulk, releasing pessimistic locks, and the background tasks that run them.

use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoffer;
use crate::interceptor::Interceptors;
use crate::proto::kvrpcpb;
use crate::request::{BatchLimits, KvRequest, RAW_BATCH_BYTES};
use crate::rt;
use crate::timestamp::Timestamp;
use crate::{Error, Result};

use super::Core;

/// client-go's prewrite and commit budgets: 40 s each.
pub(super) const WRITE_BUDGET: Duration = Duration::from_secs(40);
/// client-go's largest computed lock TTL (`ManagedLockTTL`).
pub(super) const MAX_LOCK_TTL_MS: u64 = 20_000;

/// Runs background work of a transaction, logging its failure (readers resolve what it
/// leaves behind). Without a runtime to run it on, it is left to lock resolution.
pub(super) fn background(
    what: String,
    work: impl std::future::Future<Output = Result<()>> + rt::MaybeSend + 'static,
) {
    let started = rt::detach(async move {
        if let Err(e) = work.await {
            log::warn!("{what} failed: {e}");
        }
    });
    if !started {
        log::warn!("no runtime to run background work on; lock resolution will settle it");
    }
}

/// Sends one request per region batch of `keys` (at most 16 KiB of keys each) with the
/// write budget, and returns every response.
pub(super) async fn for_keys<R: KvRequest>(
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
    let rt = &core.pd.config().runtime;
    let mut backoffer =
        Backoffer::new(WRITE_BUDGET).with_timeout(core.pd.config().operation_timeout, rt.now());
    core.exec
        .run_grouped(keys, |k| k, limits, interceptors, &mut backoffer, &build)
        .await
}

/// Commits `keys` (secondaries of a committed transaction) at `commit_ts`.
pub(super) async fn commit_keys(
    core: &Core,
    interceptors: &Interceptors,
    start: u64,
    keys: Vec<Vec<u8>>,
    commit_ts: Timestamp,
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let responses = for_keys(core, interceptors, keys, |keys| kvrpcpb::CommitRequest {
        start_version: start,
        keys,
        commit_version: commit_ts.version(),
        ..Default::default()
    })
    .await?;
    match responses.into_iter().find_map(|r| r.error) {
        Some(e) => Err(Error::from_key_error(e)),
        None => Ok(()),
    }
}

/// Removes this transaction's pessimistic locks (no rollback record is written).
pub(super) async fn pessimistic_rollback(
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

/// Rolls `keys` back (nothing of the transaction may be committed).
pub(super) async fn batch_rollback(
    core: &Core,
    interceptors: &Interceptors,
    start: u64,
    keys: Vec<Vec<u8>>,
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
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

/// Removes, in the background, the pessimistic locks of `keys` taken up to `for_update_ts`.
pub(super) fn release_locks(
    core: Arc<Core>,
    interceptors: Interceptors,
    start: u64,
    for_update_ts: u64,
    keys: Vec<Vec<u8>>,
) {
    let what = format!("releasing the pessimistic locks of txn {start}");
    background(what, async move {
        pessimistic_rollback(&core, &interceptors, start, for_update_ts, keys).await
    });
}
