//! The mock TiKV store service.
//!
//! Every store serves the same data (one shared engine stands in for Raft replication), but
//! answers as its own store: the request's context is checked in TiKV's order (spec 2.2) and
//! answered with the region errors real TiKV gives. Fault rules are applied before the
//! checks (and, for lost or delayed replies, after execution), and every call is logged.

mod batch;
mod pessimistic;
mod pipelined;
mod raw;
mod txn;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use batch::BATCH_COMMANDS_IN_FLIGHT;

use tonic::{Request, Response, Status};

use super::cluster::{unix_now, ApiVersion, Cluster, DataKind, Region};
use super::connections::ConnectionKiller;
use super::fault::{
    region_error_kind, tonic_code, Call, CallInfo, Faults, Labels, Outcome, Reaction,
};
use super::mvcc::{KeyErr, Mvcc};
use super::raw::RawStore;
use super::split_merge::RegionChecks;
use crate::proto::{errorpb, kvrpcpb};
use crate::timestamp::Timestamp;

/// The state every store shares: cluster metadata, data, faults.
pub(crate) struct Node {
    pub cluster: Arc<Cluster>,
    pub faults: Faults,
    raw: Mutex<RawStore>,
    mvcc: Mutex<Mvcc>,
    /// Per key, the pessimistic lock requests waiting for its lock (spec 4.13).
    queues: Mutex<std::collections::BTreeMap<Vec<u8>, Vec<Queued>>>,
    next_waiter: std::sync::atomic::AtomicU64,
    /// The wait-for graph: waiting txn -> (txn waited for, key).
    waits: Mutex<std::collections::HashMap<u64, (u64, Vec<u8>)>>,
    killers: Mutex<Vec<(u64, ConnectionKiller)>>,
    /// How far followers' safe ts trails the timestamp oracle (stale reads).
    safe_ts_lag: Mutex<std::time::Duration>,
    /// Each store's max_ts (spec 1.5); the engine is shared, the concurrency managers are not.
    max_ts: Mutex<std::collections::HashMap<u64, u64>>,
    /// How long a new leader takes to sync its max_ts from PD.
    max_ts_sync_delay: Mutex<std::time::Duration>,
    /// The BatchCommands commands running.
    pub batch_in_flight: batch::InFlight,
    /// When regions split and merge by themselves.
    pub region_checks: RegionChecks,
    /// Whether PD and the stores gzip their responses for clients that accept it.
    pub compress_responses: bool,
}

/// How long a leader cut off from PD waits for a timestamp: until it reaches PD again.
const UNREACHABLE_PD: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);

/// TiKV's `wake-up-delay-duration`: how long after waking the head of a key's queue the
/// other waiters queued then are woken.
const WAKE_UP_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// A lock request waiting in a key's queue.
struct Queued {
    id: u64,
    start_ts: u64,
    /// The transaction whose lock it waits for.
    holder: u64,
    wake: Arc<tokio::sync::Notify>,
}

/// Locks a mutex, ignoring poisoning: a panicked handler leaves consistent data behind.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The shared engine as one store sees it: `max_ts` is that store's while the guard lives.
pub(crate) struct StoreMvcc<'a> {
    mvcc: MutexGuard<'a, Mvcc>,
    node: &'a Node,
    store: u64,
}

impl std::ops::Deref for StoreMvcc<'_> {
    type Target = Mvcc;
    fn deref(&self) -> &Mvcc {
        &self.mvcc
    }
}

impl std::ops::DerefMut for StoreMvcc<'_> {
    fn deref_mut(&mut self) -> &mut Mvcc {
        &mut self.mvcc
    }
}

impl Drop for StoreMvcc<'_> {
    fn drop(&mut self) {
        self.node.raise_max_ts(self.store, self.mvcc.max_ts);
    }
}

impl Node {
    pub(crate) fn new(cluster: Arc<Cluster>, seed: u64, region_checks: RegionChecks) -> Self {
        Node {
            cluster,
            faults: Faults::new(seed),
            raw: Mutex::new(RawStore::default()),
            mvcc: Mutex::new(Mvcc::default()),
            queues: Mutex::new(std::collections::BTreeMap::new()),
            next_waiter: std::sync::atomic::AtomicU64::new(1),
            waits: Mutex::new(std::collections::HashMap::new()),
            killers: Mutex::new(Vec::new()),
            safe_ts_lag: Mutex::new(std::time::Duration::ZERO),
            max_ts: Mutex::new(std::collections::HashMap::new()),
            max_ts_sync_delay: Mutex::new(std::time::Duration::ZERO),
            batch_in_flight: batch::InFlight::default(),
            region_checks,
            compress_responses: false,
        }
    }

    /// Queues a request of txn `start_ts` behind `holder`'s lock on `key` (replacing its
    /// earlier place, if any). Called under the engine lock, so no release is missed.
    pub(crate) fn enqueue(
        &self,
        key: &[u8],
        holder: u64,
        start_ts: u64,
        earlier: Option<u64>,
    ) -> (u64, Arc<tokio::sync::Notify>) {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = earlier {
            for waiters in queues.values_mut() {
                waiters.retain(|w| w.id != id);
            }
        }
        let id = self
            .next_waiter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wake = Arc::new(tokio::sync::Notify::new());
        queues.entry(key.to_vec()).or_default().push(Queued {
            id,
            start_ts,
            holder,
            wake: wake.clone(),
        });
        (id, wake)
    }

    /// The lock requests waiting in the keys' queues.
    pub(crate) fn waiting_lock_requests(&self) -> usize {
        lock(&self.queues).values().map(Vec::len).sum()
    }

    /// Takes a finished request out of the queues.
    pub(crate) fn dequeue(&self, id: u64) {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        for waiters in queues.values_mut() {
            waiters.retain(|w| w.id != id);
        }
        queues.retain(|_, waiters| !waiters.is_empty());
    }

    /// After a request that may have released locks: for each key whose awaited lock is gone,
    /// wakes the waiter with the smallest start ts at once and the others queued now after
    /// `WAKE_UP_DELAY` (TiKV's delayed wake-up); they answer a write conflict.
    pub(crate) fn wake_released(&self) {
        if self
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
        {
            return;
        }
        // The engine lock first, as handlers take it before queueing.
        let mvcc = self.mvcc();
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, waiters) in queues.iter_mut() {
            let held_by = mvcc.locks.get(key).map(|l| l.ts);
            let (mut released, still): (Vec<Queued>, Vec<Queued>) = std::mem::take(waiters)
                .into_iter()
                .partition(|w| Some(w.holder) != held_by);
            *waiters = still;
            if released.is_empty() {
                continue;
            }
            released.sort_by_key(|w| w.start_ts);
            let head = released.remove(0);
            head.wake.notify_one();
            if !released.is_empty() {
                tokio::spawn(async move {
                    tokio::time::sleep(WAKE_UP_DELAY).await;
                    for w in released {
                        w.wake.notify_one();
                    }
                });
            }
        }
        queues.retain(|_, waiters| !waiters.is_empty());
    }

    /// The engine with `store`'s max_ts in `Mvcc::max_ts`.
    pub(crate) fn store_mvcc(&self, store: u64) -> StoreMvcc<'_> {
        let mut mvcc = self.mvcc();
        mvcc.max_ts = self.max_ts_of(store);
        StoreMvcc {
            mvcc,
            node: self,
            store,
        }
    }

    fn max_ts_of(&self, store: u64) -> u64 {
        let map = self.max_ts.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&store).copied().unwrap_or(0)
    }

    /// Raises `store`'s max_ts to `ts` (never lowers it).
    pub(crate) fn raise_max_ts(&self, store: u64, ts: u64) {
        if ts == u64::MAX {
            return;
        }
        let mut map = self.max_ts.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = map.entry(store).or_insert(0);
        *slot = (*slot).max(ts);
    }

    /// `store` now leads `region`: it syncs its max_ts from PD's latest timestamp, at once or
    /// after the sync delay, refusing async-commit and 1PC prewrites and API v2 raw writes
    /// until then (spec 1.5).
    pub(crate) fn new_leader(&self, region: u64, store: u64) {
        let delay = *lock(&self.max_ts_sync_delay);
        let now = tokio::time::Instant::now().into_std();
        let mut meta = self.cluster.meta();
        // A store cut off from PD gets no timestamp to sync from until it reaches PD again.
        let synced_at = if meta.is_cut_off(store) {
            Some(now + UNREACHABLE_PD)
        } else {
            (!delay.is_zero()).then(|| now + delay)
        };
        if let Some(r) = meta.region_by_id_mut(region) {
            r.max_ts_synced_at = synced_at;
        }
        drop(meta);
        if synced_at.is_none() {
            self.raise_max_ts(store, self.cluster.last_ts().version());
        }
    }

    /// Cuts `store` off from PD, or lets it reach PD again (see
    /// [`Cluster::cut_off_from_pd`]). A leader that was waiting to sync its max_ts from PD
    /// starts syncing once it reaches PD. False if there is no such store.
    pub(crate) fn cut_off_from_pd(&self, store: u64, cut: bool) -> bool {
        if !self.cluster.cut_off_from_pd(store, cut) {
            return false;
        }
        if !cut {
            let waiting: Vec<u64> = self
                .cluster
                .meta()
                .all_regions()
                .filter(|r| r.leader_store == store && r.max_ts_synced_at.is_some())
                .map(|r| r.meta.id)
                .collect();
            for region in waiting {
                self.new_leader(region, store);
            }
        }
        true
    }

    /// `target` took a merged neighbour's range: its leader now answers for reads its store
    /// never saw, so it syncs its max_ts as a new leader does.
    pub(crate) fn merged_into(&self, target: u64) {
        let store = self
            .cluster
            .meta()
            .region_by_id(target)
            .map(|r| r.leader_store);
        if let Some(store) = store {
            self.new_leader(target, store);
        }
    }

    /// Moves the leader of `region` to `store`, which then syncs its max_ts.
    pub(crate) fn transfer_leader(&self, region: u64, store: u64) -> Result<(), String> {
        self.cluster.transfer_leader(region, store)?;
        self.new_leader(region, store);
        Ok(())
    }

    pub(crate) fn set_max_ts_sync_delay(&self, delay: std::time::Duration) {
        *lock(&self.max_ts_sync_delay) = delay;
    }

    /// Whether `store`, leading `region`, has synced its max_ts; a sync whose delay has
    /// passed completes here, taking PD's latest timestamp (every one issued until then).
    pub(crate) fn max_ts_synced(&self, region: &Region, store: u64) -> bool {
        let Some(at) = region.max_ts_synced_at else {
            return true;
        };
        if tokio::time::Instant::now().into_std() < at {
            return false;
        }
        if let Some(r) = self.cluster.meta().region_by_id_mut(region.meta.id) {
            r.max_ts_synced_at = None;
        }
        self.raise_max_ts(store, self.cluster.last_ts().version());
        true
    }

    pub(crate) fn set_safe_ts_lag(&self, lag: std::time::Duration) {
        *self
            .safe_ts_lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = lag;
    }

    /// A region's safe ts (its resolved ts): below every lock in it, and behind the last
    /// timestamp PD issued by the configured lag.
    fn safe_ts(&self, lo: &[u8], hi: &[u8]) -> u64 {
        let lag = *self
            .safe_ts_lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let last = self.cluster.last_ts();
        let lag_ms = i64::try_from(lag.as_millis()).unwrap_or(i64::MAX);
        let behind = if lag.is_zero() {
            last.version()
        } else {
            Timestamp::new(last.physical.saturating_sub(lag_ms).max(0), 0).version()
        };
        let oldest_lock = self.mvcc().min_lock_ts(lo, hi);
        oldest_lock.map_or(behind, |ts| behind.min(ts.saturating_sub(1)))
    }

    pub(crate) fn raw(&self) -> MutexGuard<'_, RawStore> {
        self.raw.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn mvcc(&self) -> MutexGuard<'_, Mvcc> {
        lock(&self.mvcc)
    }

    /// Records that `txn` waits for `for_txn` on `key`, unless that closes a cycle: then
    /// returns the cycle's edges, starting with `for_txn`'s and ending with `txn`'s (spec 4.13).
    pub(crate) fn wait_for(
        &self,
        txn: u64,
        for_txn: u64,
        key: &[u8],
    ) -> Result<(), Vec<(u64, u64, Vec<u8>)>> {
        let mut waits = self.waits.lock().unwrap_or_else(PoisonError::into_inner);
        let mut chain = Vec::new();
        let mut at = for_txn;
        while let Some((next, k)) = waits.get(&at) {
            chain.push((at, *next, k.clone()));
            if *next == txn {
                chain.push((txn, for_txn, key.to_vec()));
                return Err(chain);
            }
            if chain.len() > waits.len() {
                break;
            }
            at = *next;
        }
        waits.insert(txn, (for_txn, key.to_vec()));
        Ok(())
    }

    pub(crate) fn stop_waiting(&self, txn: u64) {
        self.waits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&txn);
    }

    /// Remembers how to cut the connections of `store`'s current server.
    pub(crate) fn set_killer(&self, store: u64, killer: ConnectionKiller) {
        let mut killers = self.killers.lock().unwrap_or_else(PoisonError::into_inner);
        killers.retain(|(s, _)| *s != store);
        killers.push((store, killer));
    }

    /// How many connections `store`'s current server accepted.
    pub(crate) fn connections_accepted(&self, store: u64) -> u64 {
        let killers = self.killers.lock().unwrap_or_else(PoisonError::into_inner);
        killers
            .iter()
            .filter(|(s, _)| *s == store)
            .map(|(_, k)| k.accepted())
            .sum()
    }

    fn kill_connections(&self, store: u64) {
        let killers = self.killers.lock().unwrap_or_else(PoisonError::into_inner);
        killers
            .iter()
            .filter(|(s, _)| *s == store)
            .for_each(|(_, k)| k.kill());
    }
}

/// What a handler decided: an answer, or to wait (for a lock) until woken or the deadline.
pub(crate) enum Exec<R> {
    Done(R),
    Wait(tokio::time::Instant),
}

/// The state of one request across its waits.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    /// When the wait ends at the latest.
    pub deadline: Option<tokio::time::Instant>,
    /// The key and the transaction waited for.
    pub on: Option<(Vec<u8>, u64)>,
    /// When the lock waited for was last replaced by another one during the wait.
    pub updated: Option<tokio::time::Instant>,
    /// The waiting transaction, if it holds an edge in the wait-for graph.
    pub edge_of: Option<u64>,
    /// A lock was released since the wait began.
    pub woken: bool,
    /// The request's place in a key's wait queue, and how it is woken.
    pub queued: Option<(u64, Arc<tokio::sync::Notify>)>,
    /// The deadline passed.
    pub timed_out: bool,
}

/// What a fault rule leaves to do with the answer of a request that has run.
enum Then {
    /// Answer at once.
    Answer,
    /// Cut the connections instead of answering.
    LoseReply,
    /// Answer after this long.
    DelayReply(std::time::Duration),
}

/// A request's place in the lock-wait bookkeeping (its queue entry and wait-for edge), given
/// up however the request ends: answered, or dropped mid-wait when its client cancels (a
/// leftover entry would make a false deadlock, or wake a waiter that is gone).
struct WaitGuard<'a> {
    node: &'a Node,
    waiting: Waiting,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if let Some((id, _)) = &self.waiting.queued {
            self.node.dequeue(*id);
        }
        if let Some(txn) = self.waiting.edge_of {
            self.node.stop_waiting(txn);
        }
    }
}

/// One store's view of the node.
#[derive(Clone)]
pub(crate) struct MockTikv {
    node: Arc<Node>,
    store: u64,
}

/// What the pipeline needs to know about a request.
pub(crate) trait Rpc {
    fn context(&self) -> Option<&kvrpcpb::Context>;
    /// The first key, for key-prefix fault rules.
    fn first_key(&self) -> Option<&[u8]>;
    /// For reads a replica may serve: the read timestamp (`u64::MAX` for raw reads).
    fn read_ts(&self) -> Option<u64>;
}

/// Where a response carries its region error.
pub(crate) trait Reply: Default {
    fn region_error(&self) -> Option<&errorpb::Error>;
    fn set_region_error(&mut self, e: errorpb::Error);
}

macro_rules! read_ts {
    () => {
        None
    };
    ($ts:expr) => {
        Some($ts)
    };
}

macro_rules! rpc {
    ($($req:ident => $resp:ident, |$r:ident| $key:expr $(, read $ts:expr)?;)*) => {$(
        impl Rpc for kvrpcpb::$req {
            fn context(&self) -> Option<&kvrpcpb::Context> {
                self.context.as_ref()
            }
            fn first_key(&self) -> Option<&[u8]> {
                let $r = self;
                $key
            }
            fn read_ts(&self) -> Option<u64> {
                #[allow(unused_variables)]
                let $r = self;
                read_ts!($($ts)?)
            }
        }
        impl Reply for kvrpcpb::$resp {
            fn region_error(&self) -> Option<&errorpb::Error> {
                self.region_error.as_ref()
            }
            fn set_region_error(&mut self, e: errorpb::Error) {
                self.region_error = Some(e);
            }
        }
    )*};
}

rpc! {
    RawGetRequest => RawGetResponse, |r| Some(&r.key), read u64::MAX;
    RawBatchGetRequest => RawBatchGetResponse, |r| r.keys.first().map(|k| &k[..]), read u64::MAX;
    RawPutRequest => RawPutResponse, |r| Some(&r.key);
    RawBatchPutRequest => RawBatchPutResponse, |r| r.pairs.first().map(|p| &p.key[..]);
    RawDeleteRequest => RawDeleteResponse, |r| Some(&r.key);
    RawBatchDeleteRequest => RawBatchDeleteResponse, |r| r.keys.first().map(|k| &k[..]);
    RawScanRequest => RawScanResponse, |r| Some(&r.start_key), read u64::MAX;
    RawBatchScanRequest => RawBatchScanResponse, |r| r.ranges.first().map(|k| &k.start_key[..]), read u64::MAX;
    RawDeleteRangeRequest => RawDeleteRangeResponse, |r| Some(&r.start_key);
    RawGetKeyTtlRequest => RawGetKeyTtlResponse, |r| Some(&r.key);
    RawCasRequest => RawCasResponse, |r| Some(&r.key);
    RawChecksumRequest => RawChecksumResponse, |r| r.ranges.first().map(|k| &k.start_key[..]);
    SplitRegionRequest => SplitRegionResponse, |r| r.split_keys.first().map(|k| &k[..]);
    GetRequest => GetResponse, |r| Some(&r.key), read r.version;
    BatchGetRequest => BatchGetResponse, |r| r.keys.first().map(|k| &k[..]), read r.version;
    ScanRequest => ScanResponse, |r| Some(&r.start_key), read r.version;
    PrewriteRequest => PrewriteResponse, |r| r.mutations.first().map(|m| &m.key[..]);
    CommitRequest => CommitResponse, |r| r.keys.first().map(|k| &k[..]);
    BatchRollbackRequest => BatchRollbackResponse, |r| r.keys.first().map(|k| &k[..]);
    CleanupRequest => CleanupResponse, |r| Some(&r.key);
    CheckTxnStatusRequest => CheckTxnStatusResponse, |r| Some(&r.primary_key);
    CheckSecondaryLocksRequest => CheckSecondaryLocksResponse, |r| r.keys.first().map(|k| &k[..]);
    ResolveLockRequest => ResolveLockResponse, |r| r.keys.first().map(|k| &k[..]);
    TxnHeartBeatRequest => TxnHeartBeatResponse, |r| Some(&r.primary_lock);
    ScanLockRequest => ScanLockResponse, |r| Some(&r.start_key);
    PessimisticLockRequest => PessimisticLockResponse, |r| r.mutations.first().map(|m| &m.key[..]);
    PessimisticRollbackRequest => PessimisticRollbackResponse, |r| r.keys.first().map(|k| &k[..]);
    DeleteRangeRequest => DeleteRangeResponse, |r| Some(&r.start_key);
    FlushRequest => FlushResponse, |r| r.mutations.first().map(|m| &m.key[..]);
    BufferBatchGetRequest => BufferBatchGetResponse, |r| r.keys.first().map(|k| &k[..]);
    UnsafeDestroyRangeRequest => UnsafeDestroyRangeResponse, |r| Some(&r.start_key);
}

impl MockTikv {
    pub(crate) fn new(node: Arc<Node>, store: u64) -> Self {
        MockTikv { node, store }
    }

    fn cluster(&self) -> &Cluster {
        &self.node.cluster
    }

    /// Runs one RPC through faults, the context check and `exec`, and logs it.
    async fn serve<Req: Rpc + std::fmt::Debug, Resp: Reply + std::fmt::Debug>(
        &self,
        method: &'static str,
        request: Request<Req>,
        exec: impl Fn(&Self, &Req, &Region, &mut Waiting) -> Exec<Resp>,
    ) -> Result<Response<Resp>, Status> {
        let batched = request.extensions().get::<batch::Batched>().is_some();
        let req = request.into_inner();
        log::trace!("{method} to store {}: {req:?}", self.store);
        let region_id = req.context().map_or(0, |c| c.region_id);
        let record = |outcome| {
            self.node.faults.record(Call {
                method,
                store: self.store,
                region: region_id,
                outcome,
                labels: Labels::of(req.context()),
                batched,
                first_key: req.first_key().unwrap_or_default().to_vec(),
            })
        };
        if let Some(ctx) = req.context() {
            if ctx.cluster_id != 0 && ctx.cluster_id != self.cluster().id {
                record(Outcome::Status(crate::GrpcCode::InvalidArgument));
                return Err(Status::invalid_argument(
                    "the cluster id of the request does not match the TiKV cluster",
                ));
            }
        }
        let info = CallInfo {
            method,
            store: self.store,
            region: region_id,
            first_key: req.first_key(),
        };
        let then = match self
            .react_before(self.node.faults.react(&info), &record)
            .await
        {
            Ok(then) => then,
            Err(early) => return early,
        };
        let resp = match self.check_context(req.context(), req.read_ts()) {
            Err(e) => {
                let mut resp = Resp::default();
                resp.set_region_error(*e);
                resp
            }
            Ok(region) => {
                let mut waiting = WaitGuard {
                    node: &self.node,
                    waiting: Waiting::default(),
                };
                let resp = loop {
                    match exec(self, &req, &region, &mut waiting.waiting) {
                        Exec::Done(resp) => break resp,
                        Exec::Wait(deadline) => {
                            // Queued by the handler under the engine lock: a wake-up sent
                            // before this await is kept as a permit.
                            let wake = waiting.waiting.queued.as_ref().map(|(_, w)| w.clone());
                            let woken = async {
                                match wake {
                                    Some(w) => w.notified().await,
                                    None => std::future::pending().await,
                                }
                            };
                            tokio::select! {
                                () = woken => waiting.waiting.woken = true,
                                () = tokio::time::sleep_until(deadline) => waiting.waiting.timed_out = true,
                            }
                        }
                    }
                };
                drop(waiting);
                self.node.wake_released();
                if changes_data(method) && resp.region_error().is_none() {
                    self.node.check_regions(Some(&region));
                }
                resp
            }
        };
        let outcome = match resp.region_error() {
            Some(e) => Outcome::RegionError(region_error_kind(e)),
            None => Outcome::Ok,
        };
        log::trace!("{method} from store {}: {resp:?}", self.store);
        self.answer(then, resp, outcome, &record).await
    }

    /// Applies a fault rule's reaction before the request runs: either an early answer (a
    /// region error, a status, a cut connection), or what to do with the answer once it has
    /// run.
    async fn react_before<Resp: Reply>(
        &self,
        reaction: Option<Reaction>,
        record: &impl Fn(Outcome),
    ) -> Result<Then, Result<Response<Resp>, Status>> {
        match reaction {
            // A PD reaction: a store serves the call as usual.
            None | Some(Reaction::NoRegion) => Ok(Then::Answer),
            Some(Reaction::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(Then::Answer)
            }
            Some(Reaction::LoseReply) => Ok(Then::LoseReply),
            Some(Reaction::DelayReply(d)) => Ok(Then::DelayReply(d)),
            Some(Reaction::RegionError(e)) => {
                record(Outcome::RegionError(region_error_kind(&e)));
                let mut resp = Resp::default();
                resp.set_region_error(*e);
                Err(Ok(Response::new(resp)))
            }
            Some(Reaction::Status { code, message }) => {
                record(Outcome::Status(code));
                Err(Err(Status::new(tonic_code(code), message)))
            }
            Some(Reaction::DropConnection) => {
                record(Outcome::Dropped);
                self.node.kill_connections(self.store);
                Err(Err(Status::unavailable(
                    "connection dropped by a fault rule",
                )))
            }
        }
    }

    /// Answers a request that has run, logging `outcome`, unless a fault rule loses or delays
    /// the reply.
    async fn answer<Resp>(
        &self,
        then: Then,
        resp: Resp,
        outcome: Outcome,
        record: &impl Fn(Outcome),
    ) -> Result<Response<Resp>, Status> {
        match then {
            Then::Answer => record(outcome),
            Then::DelayReply(d) => {
                record(outcome);
                tokio::time::sleep(d).await;
            }
            Then::LoseReply => {
                record(Outcome::ReplyLost);
                // Cut before returning: the connection fails before the status could be sent.
                self.node.kill_connections(self.store);
                return Err(Status::unavailable("reply lost by a fault rule"));
            }
        }
        Ok(Response::new(resp))
    }

    /// A store-level request: faults and the log apply, region checks do not.
    async fn serve_store_level<Req: Rpc, Resp: Reply>(
        &self,
        method: &'static str,
        request: Request<Req>,
        exec: impl FnOnce(&Self, &Req) -> Resp,
    ) -> Result<Response<Resp>, Status> {
        let req = request.into_inner();
        let info = CallInfo {
            method,
            store: self.store,
            region: 0,
            first_key: req.first_key(),
        };
        let record = |outcome| {
            self.node.faults.record(Call {
                method,
                store: self.store,
                region: 0,
                outcome,
                labels: Labels::of(req.context()),
                batched: false,
                first_key: req.first_key().unwrap_or_default().to_vec(),
            })
        };
        let then = match self
            .react_before(self.node.faults.react(&info), &record)
            .await
        {
            Ok(then) => then,
            Err(early) => return early,
        };
        let resp = exec(self, &req);
        self.node.wake_released();
        self.node.check_regions(None);
        self.answer(then, resp, Outcome::Ok, &record).await
    }

    /// Logs the opening of a BatchCommands stream.
    fn record_stream_open(&self) {
        self.node.faults.record(Call {
            method: "BatchCommands",
            store: self.store,
            region: 0,
            outcome: Outcome::Ok,
            labels: Labels::default(),
            batched: false,
            first_key: Vec::new(),
        });
    }

    /// TiKV's raftstore checks, in its order: store, region, peer, leader, epoch, then a
    /// follower's safe ts for stale reads (spec 2.2); `read_ts` marks reads a replica may serve.
    fn check_context(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        read_ts: Option<u64>,
    ) -> Result<Region, Box<errorpb::Error>> {
        let default = kvrpcpb::Context::default();
        let ctx = ctx.unwrap_or(&default);
        let requested_store = ctx.peer.as_ref().map_or(0, |p| p.store_id);
        if requested_store != self.store {
            return Err(Box::new(errorpb::Error {
                message: format!(
                    "store not match, request store id: {requested_store}, actual store id: {}",
                    self.store
                ),
                store_not_match: Some(errorpb::StoreNotMatch {
                    request_store_id: requested_store,
                    actual_store_id: self.store,
                }),
                ..Default::default()
            }));
        }
        let meta = self.cluster().meta();
        let Some(region) = meta.region_by_id(ctx.region_id).cloned() else {
            return Err(Box::new(errorpb::Error {
                message: format!("region {} is missing", ctx.region_id),
                region_not_found: Some(errorpb::RegionNotFound {
                    region_id: ctx.region_id,
                }),
                ..Default::default()
            }));
        };
        let local = region.peer_on(self.store).cloned().unwrap_or_default();
        let requested_peer = ctx.peer.as_ref().map_or(0, |p| p.id);
        if requested_peer != local.id {
            return Err(Box::new(errorpb::Error {
                message: format!(
                    "mismatch peer id {requested_peer} != {} for region {}",
                    local.id, region.meta.id
                ),
                mismatch_peer_id: Some(errorpb::MismatchPeerId {
                    request_peer_id: requested_peer,
                    store_peer_id: local.id,
                }),
                ..Default::default()
            }));
        }
        let replica_read = read_ts.is_some() && (ctx.replica_read || ctx.stale_read);
        if region.leader_store != self.store && !replica_read {
            let leader = region.leader_peer().cloned();
            return Err(Box::new(errorpb::Error {
                message: format!(
                    "peer is not leader for region {}, leader may {leader:?}",
                    region.meta.id
                ),
                not_leader: Some(errorpb::NotLeader {
                    region_id: region.meta.id,
                    leader,
                }),
                ..Default::default()
            }));
        }
        let current = region.meta.region_epoch.unwrap_or_default();
        let requested = ctx.region_epoch.unwrap_or_default();
        if requested.version != current.version {
            let mut current_regions = vec![region.meta.clone()];
            if requested.version < current.version {
                // A stale client also learns the neighbours that split off.
                if let Some(prev) = meta.prev_region(&region) {
                    current_regions.push(prev.meta.clone());
                }
                if let Some(next) = meta
                    .region_containing(&region.meta.end_key)
                    .filter(|_| !region.meta.end_key.is_empty())
                {
                    current_regions.push(next.meta.clone());
                }
            }
            return Err(Box::new(errorpb::Error {
                message: format!("epoch not match: requested {requested:?}, current {current:?}"),
                epoch_not_match: Some(errorpb::EpochNotMatch { current_regions }),
                ..Default::default()
            }));
        }
        if let Some(ts) = read_ts.filter(|_| ctx.stale_read && region.leader_store != self.store) {
            // A follower serves a stale read only up to its safe ts; a leader always can.
            let (lo, hi) = self.user_bounds(&region, DataKind::Txn);
            let safe_ts = self.node.safe_ts(&lo, &hi);
            if ts > safe_ts {
                return Err(Box::new(errorpb::Error {
                    message: format!(
                        "peer is not ready to serve stale read at {ts}, safe ts {safe_ts}"
                    ),
                    data_is_not_ready: Some(errorpb::DataIsNotReady {
                        region_id: region.meta.id,
                        peer_id: local.id,
                        safe_ts,
                    }),
                    ..Default::default()
                }));
            }
        }
        Ok(region)
    }

    /// A response carrying `KeyNotInRegion` for the first transactional key outside `region`.
    fn outside_region<'k, R: Reply>(
        &self,
        region: &Region,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> Option<R> {
        let key = keys
            .into_iter()
            .find(|k| !self.in_region(region, k, DataKind::Txn))?;
        let mut resp = R::default();
        resp.set_region_error(*self.key_not_in_region(region, key));
        Some(resp)
    }

    /// Whether a user key of `kind` lies in `region`.
    fn in_region(&self, region: &Region, key: &[u8], kind: DataKind) -> bool {
        region.contains(&self.cluster().internal_key(key, kind))
    }

    /// Whether a user key lies in the region's range with an inclusive end, as seeks allow.
    fn seekable(&self, region: &Region, key: &[u8], kind: DataKind) -> bool {
        let k = self.cluster().internal_key(key, kind);
        k >= region.meta.start_key && (region.meta.end_key.is_empty() || k <= region.meta.end_key)
    }

    /// `MaxTimestampNotSynced` while this store, a new leader of `region`, has not synced its
    /// max_ts from PD (spec 1.5, 2.3); `message` is TiKV's text for the storage error.
    fn unsynced_max_ts(&self, region: &Region, message: String) -> Option<Box<errorpb::Error>> {
        if self.node.max_ts_synced(region, self.store) {
            return None;
        }
        Some(Box::new(errorpb::Error {
            message,
            max_timestamp_not_synced: Some(errorpb::MaxTimestampNotSynced::default()),
            ..Default::default()
        }))
    }

    fn key_not_in_region(&self, region: &Region, key: &[u8]) -> Box<errorpb::Error> {
        Box::new(errorpb::Error {
            message: format!(
                "key {} is not in region key range [{}, {}) for region {}",
                hex(key),
                hex(&region.meta.start_key),
                hex(&region.meta.end_key),
                region.meta.id
            ),
            key_not_in_region: Some(errorpb::KeyNotInRegion {
                key: key.to_vec(),
                region_id: region.meta.id,
                start_key: region.meta.start_key.clone(),
                end_key: region.meta.end_key.clone(),
            }),
            ..Default::default()
        })
    }

    /// The generic engine error of a point lookup outside the region (a KeyError abort).
    fn out_of_region(&self, region: &Region, key: &[u8]) -> KeyErr {
        KeyErr::Abort(format!(
            "Error(Engine(Other(\"key {} is not in region key range [{}, {}) for region {}\")))",
            hex(key),
            hex(&region.meta.start_key),
            hex(&region.meta.end_key),
            region.meta.id
        ))
    }

    /// The region's bounds as user keys of `kind` (empty end = unbounded).
    fn user_bounds(&self, region: &Region, kind: DataKind) -> (Vec<u8>, Vec<u8>) {
        let decode = |k: &[u8]| -> Vec<u8> {
            if k.is_empty() || self.cluster().internal_key(b"", kind).is_empty() {
                return k.to_vec();
            }
            crate::kv::memcomparable::decode(k).map_or_else(|_| k.to_vec(), |(key, _)| key)
        };
        (decode(&region.meta.start_key), decode(&region.meta.end_key))
    }

    fn now_secs(&self) -> u64 {
        unix_now().as_secs()
    }

    fn api_version(&self) -> ApiVersion {
        self.cluster().api_version
    }
}

/// Whether a method may change stored data (and so have a region split or merged after it).
fn changes_data(method: &str) -> bool {
    matches!(
        method,
        "RawPut"
            | "RawBatchPut"
            | "RawDelete"
            | "RawBatchDelete"
            | "RawDeleteRange"
            | "RawCompareAndSwap"
            | "KvPrewrite"
            | "KvCommit"
            | "KvBatchRollback"
            | "KvCleanup"
            | "KvCheckTxnStatus"
            | "KvCheckSecondaryLocks"
            | "KvResolveLock"
            | "KvPessimisticLock"
            | "KVPessimisticRollback"
            | "KvDeleteRange"
            | "KvFlush"
    )
}

/// Upper-case hex, as TiKV prints keys.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

macro_rules! handlers {
    (
        [$($method:ident, $name:literal, $req:ident => $resp:ident, $exec:ident;)*]
        waiting [$($wmethod:ident, $wname:literal, $wreq:ident => $wresp:ident, $wexec:ident;)*]
        store_level [$($smethod:ident, $sname:literal, $sreq:ident => $sresp:ident, $sexec:ident;)*]
    ) => {
        #[tonic::async_trait]
        impl crate::proto::tikvpb::tikv_server::Tikv for MockTikv {
            $(
                async fn $method(
                    &self,
                    request: Request<kvrpcpb::$req>,
                ) -> Result<Response<kvrpcpb::$resp>, Status> {
                    self.serve($name, request, |s, req, region, _| Exec::Done(s.$exec(req, region))).await
                }
            )*
            $(
                async fn $wmethod(
                    &self,
                    request: Request<kvrpcpb::$wreq>,
                ) -> Result<Response<kvrpcpb::$wresp>, Status> {
                    self.serve($wname, request, |s, req, region, waiting| s.$wexec(req, region, waiting)).await
                }
            )*
            async fn batch_commands(
                &self,
                request: Request<tonic::Streaming<crate::proto::tikvpb::BatchCommandsRequest>>,
            ) -> Result<
                Response<tonic::codegen::BoxStream<crate::proto::tikvpb::BatchCommandsResponse>>,
                Status,
            > {
                let info = CallInfo {
                    method: "BatchCommands",
                    store: self.store,
                    region: 0,
                    first_key: None,
                };
                if let Some(Reaction::Status { code, message }) = self.node.faults.react(&info) {
                    return Err(Status::new(tonic_code(code), message));
                }
                Ok(Response::new(self.serve_batch_commands(request.into_inner())))
            }
            $(
                async fn $smethod(
                    &self,
                    request: Request<kvrpcpb::$sreq>,
                ) -> Result<Response<kvrpcpb::$sresp>, Status> {
                    self.serve_store_level($sname, request, |s, req| s.$sexec(req)).await
                }
            )*
        }
    };
}

handlers! {
    [raw_get, "RawGet", RawGetRequest => RawGetResponse, raw_get;
    raw_batch_get, "RawBatchGet", RawBatchGetRequest => RawBatchGetResponse, raw_batch_get;
    raw_put, "RawPut", RawPutRequest => RawPutResponse, raw_put;
    raw_batch_put, "RawBatchPut", RawBatchPutRequest => RawBatchPutResponse, raw_batch_put;
    raw_delete, "RawDelete", RawDeleteRequest => RawDeleteResponse, raw_delete;
    raw_batch_delete, "RawBatchDelete", RawBatchDeleteRequest => RawBatchDeleteResponse, raw_batch_delete;
    raw_scan, "RawScan", RawScanRequest => RawScanResponse, raw_scan;
    raw_batch_scan, "RawBatchScan", RawBatchScanRequest => RawBatchScanResponse, raw_batch_scan;
    raw_delete_range, "RawDeleteRange", RawDeleteRangeRequest => RawDeleteRangeResponse, raw_delete_range;
    raw_get_key_ttl, "RawGetKeyTTL", RawGetKeyTtlRequest => RawGetKeyTtlResponse, raw_get_key_ttl;
    raw_compare_and_swap, "RawCompareAndSwap", RawCasRequest => RawCasResponse, raw_compare_and_swap;
    raw_checksum, "RawChecksum", RawChecksumRequest => RawChecksumResponse, raw_checksum;
    split_region, "SplitRegion", SplitRegionRequest => SplitRegionResponse, split_region;
    kv_get, "KvGet", GetRequest => GetResponse, kv_get;
    kv_batch_get, "KvBatchGet", BatchGetRequest => BatchGetResponse, kv_batch_get;
    kv_scan, "KvScan", ScanRequest => ScanResponse, kv_scan;
    kv_prewrite, "KvPrewrite", PrewriteRequest => PrewriteResponse, kv_prewrite;
    kv_commit, "KvCommit", CommitRequest => CommitResponse, kv_commit;
    kv_batch_rollback, "KvBatchRollback", BatchRollbackRequest => BatchRollbackResponse, kv_batch_rollback;
    kv_cleanup, "KvCleanup", CleanupRequest => CleanupResponse, kv_cleanup;
    kv_check_txn_status, "KvCheckTxnStatus", CheckTxnStatusRequest => CheckTxnStatusResponse, kv_check_txn_status;
    kv_check_secondary_locks, "KvCheckSecondaryLocks", CheckSecondaryLocksRequest => CheckSecondaryLocksResponse, kv_check_secondary_locks;
    kv_resolve_lock, "KvResolveLock", ResolveLockRequest => ResolveLockResponse, kv_resolve_lock;
    kv_txn_heart_beat, "KvTxnHeartBeat", TxnHeartBeatRequest => TxnHeartBeatResponse, kv_txn_heart_beat;
    kv_scan_lock, "KvScanLock", ScanLockRequest => ScanLockResponse, kv_scan_lock;
    kv_pessimistic_rollback, "KVPessimisticRollback", PessimisticRollbackRequest => PessimisticRollbackResponse, kv_pessimistic_rollback;
    kv_delete_range, "KvDeleteRange", DeleteRangeRequest => DeleteRangeResponse, kv_delete_range;
    kv_flush, "KvFlush", FlushRequest => FlushResponse, kv_flush;
    kv_buffer_batch_get, "KvBufferBatchGet", BufferBatchGetRequest => BufferBatchGetResponse, kv_buffer_batch_get;]
    waiting [kv_pessimistic_lock, "KvPessimisticLock", PessimisticLockRequest => PessimisticLockResponse, kv_pessimistic_lock;]
    store_level [unsafe_destroy_range, "UnsafeDestroyRange", UnsafeDestroyRangeRequest => UnsafeDestroyRangeResponse, unsafe_destroy_range;]
}
