//! The execution loop.

use std::future::Future;

use futures::stream::{self, StreamExt};

use super::classify::{classify, Action};
use super::{KvRequest, KvResponse};
use crate::backoff::{BackoffKind, Backoffer};
use crate::interceptor::Interceptors;
use crate::proto::{errorpb, kvrpcpb};
use crate::region_cache::{InvalidReason, Region, RegionCache};
use crate::store::Stores;
use crate::{transport, Config, Error, Result};

/// How many times in a row one region may ask for a retry in place before it is located
/// again (client-go caps replica attempts similarly).
const MAX_RETRIES_IN_PLACE: u32 = 10;
/// How many region requests of one operation are in flight at once.
const CONCURRENCY: usize = 16;
/// How many times in a row a request may be re-split without sleeping (its region changed and
/// the error carried the new regions) before further re-splits back off.
const MAX_FREE_RELOCATIONS: u32 = 3;

/// Where a request goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Locate<'a> {
    /// The region holding this key.
    Key(&'a [u8]),
    /// The region holding the keys just below this one (reverse scans).
    EndKey(&'a [u8]),
}

/// What one attempt came to.
enum Step<T> {
    Done(T),
    /// Send the same request to the (possibly updated) same region again.
    Retry,
    /// Locate the region(s) again and rebuild the request.
    Relocate,
    /// A replica could not serve a replica or stale read: send the same read to the leader,
    /// as a plain leader read, as an in-place retry.
    LeaderRead,
}

/// Turns a replica or stale read into a plain leader read.
fn leader_read(ctx: &mut kvrpcpb::Context) {
    ctx.replica_read = false;
    ctx.stale_read = false;
}

/// How one region group of a multi-region request ended.
enum Outcome<T, Reply> {
    /// The reply, with the items of the request that got it.
    Done(Vec<T>, Reply),
    /// The group's region changed: group its items again, keeping its retry state and how
    /// many times in a row it was relocated.
    Relocated(Vec<T>, Backoffer, u32),
    /// The group failed (only kept when every group is to be settled).
    Failed(Vec<T>, Error, Backoffer),
}

/// The answer of each region group of a multi-region request: its items and its reply, or
/// why it failed.
pub(crate) type Settled<T, Reply> = Vec<(Vec<T>, Result<Reply>)>;

/// Sends requests to regions and retries them as client-go does.
pub(crate) struct Executor {
    pub cache: RegionCache,
    stores: Stores,
    config: Config,
    api_version: kvrpcpb::ApiVersion,
    keyspace_id: Option<u32>,
    /// Spreads replica and stale reads over the peers in turn.
    replica_cursor: std::sync::atomic::AtomicUsize,
}

impl Executor {
    pub(crate) fn new(
        cache: RegionCache,
        config: Config,
        api_version: kvrpcpb::ApiVersion,
        keyspace_id: Option<u32>,
    ) -> Self {
        Executor {
            cache,
            stores: Stores::new(config.clone()),
            config,
            api_version,
            keyspace_id,
            replica_cursor: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn next_replica(&self) -> usize {
        self.replica_cursor
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `future` within what is left of the operation's deadline.
    async fn within<T>(
        &self,
        backoffer: &Backoffer,
        future: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let rt = &self.config.runtime;
        match backoffer.remaining(rt.now()) {
            None => future.await,
            Some(left) if left.is_zero() => Err(backoffer.deadline_exceeded(None)),
            Some(left) => match rt.timeout(left, future).await {
                Ok(result) => result,
                Err(_) => Err(backoffer.deadline_exceeded(None)),
            },
        }
    }

    /// The region for `locate`, from the cache or PD, within the operation's deadline. A key
    /// PD knows no region for is looked up again after a `pdRPC` backoff (spec 8.4).
    pub(crate) async fn locate(
        &self,
        locate: Locate<'_>,
        backoffer: &mut Backoffer,
    ) -> Result<Region> {
        loop {
            let found = match locate {
                Locate::Key(k) => self.within(backoffer, self.cache.locate(k)).await,
                Locate::EndKey(k) => self.within(backoffer, self.cache.locate_end_key(k)).await,
            };
            match found {
                Err(e @ Error::NoRegion { .. }) => {
                    backoffer
                        .backoff(&self.config.runtime, BackoffKind::PdRpc, e)
                        .await?
                }
                found => return found,
            }
        }
    }

    /// A timestamp from PD, within the operation's deadline.
    pub(crate) async fn timestamp(&self, backoffer: &Backoffer) -> Result<crate::Timestamp> {
        self.within(backoffer, self.cache.pd().get_timestamp())
            .await
    }

    /// Runs a request built for the region found by `locate`, rebuilding it whenever the
    /// region has to be located again. Returns the response and the region that served it.
    pub(crate) async fn run_located<R, F>(
        &self,
        locate: Locate<'_>,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
        build: F,
    ) -> Result<(R::Reply, Region)>
    where
        R: KvRequest,
        F: Fn(&Region) -> R,
    {
        let mut resent = false;
        let mut relocations = 0;
        loop {
            let mut region = Box::pin(self.locate(locate, backoffer)).await?;
            let mut request = build(&region);
            let mut retries = 0;
            loop {
                let step = self.attempt(&request, &region, interceptors, backoffer, resent);
                let step = Box::pin(step).await?;
                resent = true;
                if let Step::LeaderRead = step {
                    leader_read(request.context_mut());
                }
                match step {
                    Step::Done(resp) => return Ok((resp, region)),
                    Step::Retry | Step::LeaderRead => {
                        match self.retry_on(&region, &mut retries, backoffer).await? {
                            Some(updated) => region = updated,
                            None => break,
                        }
                    }
                    Step::Relocate => {
                        self.pace_relocation(&mut relocations, backoffer).await?;
                        break;
                    }
                }
            }
        }
    }

    /// Sends the same `request` to the region holding `key`, with the usual retries.
    pub(crate) async fn run_at_key<R: KvRequest>(
        &self,
        key: &[u8],
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
        request: R,
    ) -> Result<R::Reply> {
        let (resp, _) = self
            .run_located(Locate::Key(key), interceptors, backoffer, |_| {
                request.clone()
            })
            .await?;
        Ok(resp)
    }

    /// Splits `items` by region, builds one request per region group (`build` may be called
    /// with any non-empty subset, in key order as given), sends the groups concurrently and
    /// returns every response, or the first error. A group whose region changed is split
    /// again. The groups' retries are charged to `backoffer`.
    pub(crate) async fn run_grouped<T, R, F>(
        &self,
        items: Vec<T>,
        key: fn(&T) -> &[u8],
        limits: BatchLimits<T>,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
        build: &F,
    ) -> Result<Vec<R::Reply>>
    where
        T: Clone + crate::rt::MaybeSend + crate::rt::MaybeSync + 'static,
        R: KvRequest,
        F: Fn(Vec<T>) -> R + crate::rt::MaybeSync,
    {
        let replies = self
            .run_grouped_keyed(items, key, limits, interceptors, backoffer, build)
            .await?;
        Ok(replies.into_iter().map(|(_, reply)| reply).collect())
    }

    /// As [`Executor::run_grouped`], pairing each response with the items its request
    /// carried (for replies that answer item by item, like pessimistic lock values).
    pub(crate) async fn run_grouped_keyed<T, R, F>(
        &self,
        items: Vec<T>,
        key: fn(&T) -> &[u8],
        limits: BatchLimits<T>,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
        build: &F,
    ) -> Result<Vec<(Vec<T>, R::Reply)>>
    where
        T: Clone + crate::rt::MaybeSend + crate::rt::MaybeSync + 'static,
        R: KvRequest,
        F: Fn(Vec<T>) -> R + crate::rt::MaybeSync,
    {
        let settled = self
            .run_rounds(items, key, limits, interceptors, backoffer, build, false)
            .await?;
        settled
            .into_iter()
            .map(|(items, reply)| reply.map(|r| (items, r)))
            .collect()
    }

    /// As [`Executor::run_grouped_keyed`], but a failed group does not stop the others: every
    /// group is settled, and the result says which items got a reply and which failed (for
    /// writes that must report what they could not confirm).
    pub(crate) async fn run_grouped_settled<T, R, F>(
        &self,
        items: Vec<T>,
        key: fn(&T) -> &[u8],
        limits: BatchLimits<T>,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
        build: &F,
    ) -> Settled<T, R::Reply>
    where
        T: Clone + crate::rt::MaybeSend + crate::rt::MaybeSync + 'static,
        R: KvRequest,
        F: Fn(Vec<T>) -> R + crate::rt::MaybeSync,
    {
        let all = items.clone();
        match self
            .run_rounds(items, key, limits, interceptors, backoffer, build, true)
            .await
        {
            Ok(settled) => settled,
            // Grouping a round failed (no region could be found in time): nothing can be
            // confirmed, not even what an earlier round may have sent.
            Err(e) => vec![(all, Err(e))],
        }
    }

    /// The rounds of a multi-region request. Each round groups what is left by region, sends
    /// every group until it is done, fails, or must be relocated, and carries the relocated
    /// ones (with their retry state) into the next round. Without `settle`, the first failure
    /// ends the request (the other groups' requests are dropped, wherever they were).
    #[allow(clippy::too_many_arguments)]
    async fn run_rounds<T, R, F>(
        &self,
        items: Vec<T>,
        key: fn(&T) -> &[u8],
        limits: BatchLimits<T>,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
        build: &F,
        settle: bool,
    ) -> Result<Settled<T, R::Reply>>
    where
        T: Clone + crate::rt::MaybeSend + crate::rt::MaybeSync + 'static,
        R: KvRequest,
        F: Fn(Vec<T>) -> R + crate::rt::MaybeSync,
    {
        let mut settled = Vec::new();
        // After the first round every group is a resend (TiKV's `is_retry_request`).
        let mut resent = false;
        let mut pending: Vec<(Vec<T>, Backoffer, u32)> = vec![(items, backoffer.clone(), 0)];
        while !pending.is_empty() {
            let mut groups = Vec::new();
            for (items, mut fork, relocations) in pending {
                let grouped = self.group(items, key, limits, &mut fork).await;
                backoffer.absorb(&fork);
                for (region, group) in grouped? {
                    groups.push((region, group, fork.clone(), relocations));
                }
            }
            let this_round = resent;
            let mut outcomes = stream::iter(groups)
                .map(|(region, group, fork, relocations)| {
                    let sent = (group, fork, relocations, this_round);
                    self.run_group(region, sent, interceptors, build)
                })
                .buffer_unordered(CONCURRENCY);
            pending = Vec::new();
            resent = true;
            while let Some(outcome) = outcomes.next().await {
                match outcome {
                    Outcome::Done(items, reply) => settled.push((items, Ok(reply))),
                    Outcome::Relocated(items, fork, relocations) => {
                        backoffer.absorb(&fork);
                        pending.push((items, fork, relocations));
                    }
                    Outcome::Failed(items, e, fork) => {
                        backoffer.absorb(&fork);
                        if !settle {
                            return Err(e);
                        }
                        settled.push((items, Err(e)));
                    }
                }
            }
        }
        Ok(settled)
    }

    /// Sends one region group (its items, retry state, relocations in a row so far, and
    /// whether it may have been sent before) until it is done, fails or has to be grouped
    /// again; re-splits are paced as in [`Executor::run_located`].
    async fn run_group<T, R, F>(
        &self,
        mut region: Region,
        (group, mut backoffer, mut relocations, mut resent): (Vec<T>, Backoffer, u32, bool),
        interceptors: &Interceptors,
        build: &F,
    ) -> Outcome<T, R::Reply>
    where
        T: Clone,
        R: KvRequest,
        F: Fn(Vec<T>) -> R,
    {
        let mut request = build(group.clone());
        let mut retries = 0;
        let relocate = |group, mut backoffer: Backoffer, mut relocations| async move {
            match self.pace_relocation(&mut relocations, &mut backoffer).await {
                Ok(()) => Outcome::Relocated(group, backoffer, relocations),
                Err(e) => Outcome::Failed(group, e, backoffer),
            }
        };
        loop {
            let step = self.attempt(&request, &region, interceptors, &mut backoffer, resent);
            let step = match Box::pin(step).await {
                Ok(step) => step,
                Err(e) => return Outcome::Failed(group, e, backoffer),
            };
            resent = true;
            if let Step::LeaderRead = step {
                leader_read(request.context_mut());
            }
            match step {
                Step::Done(resp) => return Outcome::Done(group, resp),
                Step::Retry | Step::LeaderRead => {
                    match self.retry_on(&region, &mut retries, &mut backoffer).await {
                        Ok(Some(updated)) => {
                            region = updated;
                            relocations = 0;
                        }
                        Ok(None) => return relocate(group, backoffer, relocations).await,
                        Err(e) => return Outcome::Failed(group, e, backoffer),
                    }
                }
                Step::Relocate => return relocate(group, backoffer, relocations).await,
            }
        }
    }

    /// Paces re-splits: the first few in a row are free (the error carried the new regions),
    /// later ones back off so that a region that keeps changing is not hammered.
    async fn pace_relocation(&self, count: &mut u32, backoffer: &mut Backoffer) -> Result<()> {
        *count += 1;
        if *count <= MAX_FREE_RELOCATIONS {
            return Ok(());
        }
        let cause =
            Error::UnexpectedResponse(format!("the request was re-split {count} times in a row"));
        backoffer
            .backoff(&self.config.runtime, BackoffKind::RegionMiss, cause)
            .await
    }

    /// Sends a store-level request (one that names no region) to the store at `address`,
    /// retrying connection failures with the `tikvRPC` backoff.
    pub(crate) async fn run_on_store<R: KvRequest>(
        &self,
        address: &str,
        mut request: R,
        backoffer: &mut Backoffer,
    ) -> Result<R::Reply> {
        let rt = &self.config.runtime;
        request.context_mut().api_version = self.api_version as i32;
        loop {
            let generation = self.stores.generation(address);
            let deadline = match backoffer.remaining(rt.now()) {
                Some(left) if left.is_zero() => return Err(backoffer.deadline_exceeded(None)),
                Some(left) => left.min(self.config.long_timeout),
                None => self.config.long_timeout,
            };
            let sent = async {
                let client = self.stores.client(address).await?;
                let mut req = tonic::Request::new(request.clone());
                req.set_timeout(deadline);
                R::dispatch(client, req)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|status| transport::status_to_error(status, address))
            };
            let err = match rt.timeout(deadline, sent).await {
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(e)) => e,
                Err(_) => Error::Timeout {
                    operation: R::METHOD,
                    after: deadline,
                },
            };
            if !err.is_retryable() {
                return Err(err);
            }
            if matches!(err, Error::Transport(_)) {
                self.stores.forget(address, generation);
            }
            backoffer.backoff(rt, BackoffKind::TikvRpc, err).await?;
        }
    }

    /// After a request asked to be retried in place: the region to retry on, or `None` to
    /// locate again, when the cached region's epoch changed (the request was built for the old
    /// one) or the region asked for too many retries in a row.
    async fn retry_on(
        &self,
        region: &Region,
        retries: &mut u32,
        backoffer: &mut Backoffer,
    ) -> Result<Option<Region>> {
        *retries += 1;
        if *retries > MAX_RETRIES_IN_PLACE {
            self.cache.invalidate(region.id, InvalidReason::Other);
            let cause = Error::UnexpectedResponse(format!(
                "region {} asked for {MAX_RETRIES_IN_PLACE} retries in a row",
                region.id
            ));
            backoffer
                .backoff(&self.config.runtime, BackoffKind::RegionMiss, cause)
                .await?;
            return Ok(None);
        }
        Ok(match self.cache.get_by_id(region.id) {
            Some(updated) if updated.epoch == region.epoch => Some(updated),
            Some(_) => None,
            None => Some(region.clone()),
        })
    }

    /// Groups items by the region holding their key, then cuts each group into batches.
    async fn group<T>(
        &self,
        items: Vec<T>,
        key: fn(&T) -> &[u8],
        limits: BatchLimits<T>,
        backoffer: &mut Backoffer,
    ) -> Result<Vec<(Region, Vec<T>)>> {
        let mut groups: Vec<(Region, Vec<T>)> = Vec::new();
        for item in items {
            let k = key(&item);
            match groups.iter_mut().find(|(r, _)| r.contains(k)) {
                Some((_, g)) => g.push(item),
                None => {
                    let region = Box::pin(self.locate(Locate::Key(k), backoffer)).await?;
                    groups.push((region, vec![item]));
                }
            }
        }
        let mut batches = Vec::new();
        for (region, group) in groups {
            let mut batch = Vec::new();
            let mut bytes = 0;
            for item in group {
                let size = (limits.size)(&item);
                if !batch.is_empty()
                    && (batch.len() >= limits.max_count || bytes + size > limits.max_bytes)
                {
                    batches.push((region.clone(), std::mem::take(&mut batch)));
                    bytes = 0;
                }
                bytes += size;
                batch.push(item);
            }
            if !batch.is_empty() {
                batches.push((region, batch));
            }
        }
        Ok(batches)
    }

    /// One send to the region's leader, and what to do next.
    /// Sends `request` once to `region`'s target peer; `resent` marks a request that an
    /// earlier attempt may have delivered (`is_retry_request`, so TiKV can recognise a
    /// duplicate prewrite or lock).
    async fn attempt<R: KvRequest>(
        &self,
        request: &R,
        region: &Region,
        interceptors: &Interceptors,
        backoffer: &mut Backoffer,
        resent: bool,
    ) -> Result<Step<R::Reply>> {
        let rt = &self.config.runtime;
        let (replica_read, stale_read) = request.replica_flags();
        let peer = if replica_read || stale_read {
            region.replica_peer(self.next_replica(), stale_read)
        } else {
            region.target_peer()
        };
        let Some(peer) = peer.cloned() else {
            self.cache.invalidate(region.id, InvalidReason::NoLeader);
            backoffer
                .backoff(
                    rt,
                    BackoffKind::RegionMiss,
                    Error::Pd(format!("region {} has no peer", region.id)),
                )
                .await?;
            return Ok(Step::Relocate);
        };
        let address = match self
            .within(backoffer, self.cache.store_address(peer.store_id))
            .await
        {
            Err(e @ Error::DeadlineExceeded { .. }) => return Err(e),
            Ok(a) => a,
            Err(e) => {
                self.cache
                    .invalidate(region.id, InvalidReason::StoreNotFound);
                backoffer.backoff(rt, BackoffKind::RegionMiss, e).await?;
                return Ok(Step::Relocate);
            }
        };
        let mut request = request.clone();
        {
            let ctx = request.context_mut();
            ctx.region_id = region.id;
            ctx.region_epoch = Some(region.epoch);
            ctx.peer = Some(peer);
            ctx.api_version = self.api_version as i32;
            ctx.is_retry_request |= resent;
            if let Some(id) = self.keyspace_id {
                ctx.keyspace = Some(kvrpcpb::context::Keyspace::KeyspaceId(id));
            }
            interceptors.apply(R::METHOD, ctx);
        }
        let rpc_timeout = if R::SLOW {
            self.config.long_timeout
        } else {
            self.config.timeout
        };
        // The attempt may not outlast the operation's deadline.
        let deadline = match backoffer.remaining(rt.now()) {
            Some(left) if left.is_zero() => return Err(backoffer.deadline_exceeded(None)),
            Some(left) => left.min(rpc_timeout),
            None => rpc_timeout,
        };
        let generation = self.stores.generation(&address);
        let sent = async {
            // gRPC-web cannot stream requests: the browser build always sends unary calls.
            let batch = transport::STREAMING_REQUESTS && self.config.batch_commands;
            let request = if batch && self.stores.batches_to(&address) {
                match request.into_batch() {
                    Ok(cmd) => {
                        let answer = self.stores.call_batched(&address, cmd).await?;
                        return R::reply_from_batch(answer).ok_or_else(|| {
                            Error::UnexpectedResponse(format!(
                                "a batch answer of another kind for {}",
                                R::METHOD
                            ))
                        });
                    }
                    Err(request) => request,
                }
            } else {
                request
            };
            let client = self.stores.client(&address).await?;
            let mut req = tonic::Request::new(request);
            req.set_timeout(deadline);
            // Boxed: a batched request should not carry a unary call's state.
            Box::pin(R::dispatch(client, req))
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| transport::status_to_error(status, &address))
        };
        let outcome = match rt.timeout(deadline, sent).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::Timeout {
                operation: R::METHOD,
                after: deadline,
            }),
        };
        let mut resp = match outcome {
            Ok(resp) => resp,
            Err(e) => {
                log::debug!(
                    "{} to store {} ({address}) failed: {e}",
                    R::METHOD,
                    peer.store_id
                );
                if e.may_have_been_sent() {
                    // Whatever it says, the request was handed to the transport: it may have
                    // been applied (a broken answer, an unexpected reply, a server error).
                    backoffer.mark_uncertain();
                }
                if !e.is_retryable() {
                    // A definite refusal (invalid argument, unimplemented, cluster mismatch).
                    return Err(e);
                }
                // A broken connection is replaced, once however many requests it failed. A slow
                // answer (a timeout) says nothing about the connection: HTTP/2 keepalive finds
                // a dead one, and dropping it would fail every other request on it.
                if matches!(e, Error::Transport(_)) {
                    self.stores.forget(&address, generation);
                    self.cache.invalidate_store(peer.store_id);
                    self.cache.invalidate(region.id, InvalidReason::Other);
                }
                backoffer.backoff(rt, BackoffKind::TikvRpc, e).await?;
                return Ok(Step::Relocate);
            }
        };
        let Some(region_error) = resp.take_region_error() else {
            return Ok(Step::Done(resp));
        };
        let from_replica =
            (replica_read || stale_read) && region.target_peer().map(|p| p.id) != Some(peer.id);
        self.on_region_error(region, peer.store_id, from_replica, region_error, backoffer)
            .await
    }

    async fn on_region_error<T>(
        &self,
        region: &Region,
        store: u64,
        from_replica: bool,
        e: errorpb::Error,
        backoffer: &mut Backoffer,
    ) -> Result<Step<T>> {
        let rt = &self.config.runtime;
        log::debug!("region {} on store {store}: {}", region.id, e.message);
        match classify(&e, from_replica) {
            Action::RetryOnLeader(leader) => {
                if self.cache.update_leader(region.id, &leader) {
                    Ok(Step::Retry)
                } else {
                    self.cache.invalidate(region.id, InvalidReason::NoLeader);
                    Ok(Step::Relocate)
                }
            }
            Action::ReadFromLeader { invalidate } => {
                if let Some(reason) = invalidate {
                    self.cache.invalidate(region.id, reason);
                }
                Ok(Step::LeaderRead)
            }
            Action::Retry(kind) => {
                backoffer.backoff(rt, kind, Error::from(e)).await?;
                Ok(Step::Retry)
            }
            Action::EpochNotMatch(current) => {
                let inserted = self.cache.on_epoch_not_match(region, &current, store)?;
                if !inserted {
                    backoffer
                        .backoff(rt, BackoffKind::RegionMiss, Error::from(e))
                        .await?;
                }
                Ok(Step::Relocate)
            }
            Action::Reshard {
                invalidate,
                backoff,
                invalidate_store,
            } => {
                self.cache.invalidate(region.id, invalidate);
                if invalidate_store {
                    self.cache.invalidate_store(store);
                }
                backoffer.backoff(rt, backoff, Error::from(e)).await?;
                Ok(Step::Relocate)
            }
            Action::Fail => {
                let e = Error::from(e);
                // An UndeterminedResult may have been applied.
                backoffer.record_failure(&e);
                Err(e)
            }
        }
    }
}

/// How a group of items is cut into requests.
pub(crate) struct BatchLimits<T> {
    /// The most items per request.
    pub max_count: usize,
    /// The most bytes per request (by `size`).
    pub max_bytes: usize,
    /// The size of one item.
    pub size: fn(&T) -> usize,
}

impl<T> Clone for BatchLimits<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for BatchLimits<T> {}

/// client-go's raw batch limits: 16 KiB and 512 pairs per RPC.
pub(crate) const RAW_BATCH_BYTES: usize = 16 * 1024;
/// See [`RAW_BATCH_BYTES`].
pub(crate) const RAW_BATCH_COUNT: usize = 512;
