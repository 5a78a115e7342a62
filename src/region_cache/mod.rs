//! The region cache: which region holds a key, who leads it, and where its stores are.
//!
//! Regions are cached by their start key with client-go's idle TTL (600 s plus up to 60 s of
//! jitter, so entries loaded together do not expire together). Concurrent misses for the same
//! key share one PD query. Region errors invalidate entries (with a reason, for the logs),
//! move leaders, or insert the fresh regions an `EpochNotMatch` carries.
//!
//! Keys here are the keys requests carry (after any API v2 keyspace prefix). PD and TiKV
//! express region boundaries in TiKV's internal key space, which for transactional and API v2
//! data is memcomparable-encoded; the cache encodes lookups and decodes boundaries
//! accordingly, so callers never see encoded keys.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::{FutureExt, Shared};

use crate::backoff::SplitMix64;
use crate::kv::memcomparable;
use crate::pd::{PdClient, RegionInfo};
use crate::proto::metapb;
use crate::rt::{BoxFuture, Instant};
use crate::{Error, Result};

/// client-go's region cache TTL.
pub const REGION_TTL: Duration = Duration::from_secs(600);
/// How many regions one range preload asks PD for (client-go's batch size).
const PRELOAD_REGIONS: i32 = 128;
/// The most jitter added to a region's TTL.
pub const REGION_TTL_JITTER: Duration = Duration::from_secs(60);

/// Identifies one version of a region: its id and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegionVerId {
    /// The region id.
    pub id: u64,
    /// The configuration version.
    pub conf_ver: u64,
    /// The split/merge version.
    pub version: u64,
}

/// A cached region with boundaries in request-key space.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// The region id.
    pub id: u64,
    /// The first key of the region (inclusive).
    pub start_key: Vec<u8>,
    /// The end of the region (exclusive; empty = unbounded).
    pub end_key: Vec<u8>,
    /// The region's epoch.
    pub epoch: metapb::RegionEpoch,
    /// Every peer.
    pub peers: Vec<metapb::Peer>,
    /// The peer believed to lead; requests go to it.
    pub leader: Option<metapb::Peer>,
}

impl Region {
    /// The region's id and epoch.
    pub fn ver_id(&self) -> RegionVerId {
        RegionVerId {
            id: self.id,
            conf_ver: self.epoch.conf_ver,
            version: self.epoch.version,
        }
    }

    /// Whether `key` lies in `[start, end)`.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= &self.start_key[..] && (self.end_key.is_empty() || key < &self.end_key[..])
    }

    /// Whether the region holds keys just below `key`: `start < key <= end`.
    fn contains_end_key(&self, key: &[u8]) -> bool {
        key > &self.start_key[..] && (self.end_key.is_empty() || key <= &self.end_key[..])
    }

    /// The peer requests should go to: the leader, else the first peer.
    pub fn target_peer(&self) -> Option<&metapb::Peer> {
        self.leader.as_ref().or_else(|| self.peers.first())
    }

    /// The `turn`-th peer for a replica read: among the followers (the leader when there is
    /// none), or among every peer with `any` (stale reads, client-go's mixed mode).
    pub fn replica_peer(&self, turn: usize, any: bool) -> Option<&metapb::Peer> {
        let leader = self.leader.as_ref().map(|l| l.id);
        let candidates: Vec<&metapb::Peer> = self
            .peers
            .iter()
            .filter(|p| any || Some(p.id) != leader)
            .collect();
        if candidates.is_empty() {
            return self.target_peer();
        }
        Some(candidates[turn % candidates.len()])
    }
}

/// Why a region left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// No leader is known.
    NoLeader,
    /// The store does not have the region.
    RegionNotFound,
    /// The epoch changed.
    EpochNotMatch,
    /// The store is not the one expected.
    StoreNotFound,
    /// Anything else.
    Other,
}

/// How cached boundaries relate to TiKV's internal key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncoding {
    /// Boundaries are the keys themselves (API v1 raw data).
    Plain,
    /// Boundaries are memcomparable-encoded (transactional data, API v2).
    Memcomparable,
}

impl KeyEncoding {
    /// The internal form of a request key, for PD lookups.
    pub fn encode(self, key: &[u8]) -> Vec<u8> {
        match self {
            KeyEncoding::Plain => key.to_vec(),
            KeyEncoding::Memcomparable if key.is_empty() => Vec::new(),
            KeyEncoding::Memcomparable => memcomparable::encode(key),
        }
    }

    /// A boundary as a request key. Empty stays empty (unbounded).
    pub fn decode(self, bound: &[u8]) -> Result<Vec<u8>> {
        match self {
            KeyEncoding::Plain => Ok(bound.to_vec()),
            KeyEncoding::Memcomparable if bound.is_empty() => Ok(Vec::new()),
            KeyEncoding::Memcomparable => memcomparable::decode(bound).map(|(k, _)| k),
        }
    }
}

struct Entry {
    region: Region,
    expires: Instant,
}

type Loading = Shared<BoxFuture<'static, Result<Region>>>;

struct State {
    regions: BTreeMap<Vec<u8>, Entry>,
    by_id: HashMap<u64, Vec<u8>>,
    /// Region loads in flight, by key, with how many callers wait for each.
    loading: HashMap<Vec<u8>, (Loading, usize)>,
    stores: HashMap<u64, String>,
    rng: SplitMix64,
}

/// The region and store cache. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct RegionCache {
    pd: PdClient,
    encoding: KeyEncoding,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for RegionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionCache")
            .field("encoding", &self.encoding)
            .field("regions", &self.lock().regions.len())
            .finish()
    }
}

impl RegionCache {
    /// An empty cache over `pd`, for keys of the given encoding.
    pub fn new(pd: PdClient, encoding: KeyEncoding) -> Self {
        RegionCache {
            pd,
            encoding,
            state: Arc::new(Mutex::new(State {
                regions: BTreeMap::new(),
                by_id: HashMap::new(),
                loading: HashMap::new(),
                stores: HashMap::new(),
                rng: SplitMix64::from_entropy(),
            })),
        }
    }

    /// The PD client behind the cache.
    pub fn pd(&self) -> &PdClient {
        &self.pd
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Instant {
        self.pd.config().runtime.now()
    }

    /// The region holding `key`, from the cache or PD. Concurrent misses for one key share
    /// one PD query; when every caller waiting for it gives up, the query is dropped.
    pub async fn locate(&self, key: &[u8]) -> Result<Region> {
        let now = self.now();
        let loading = {
            let mut state = self.lock();
            if let Some(region) = state.find(key, now, Region::contains) {
                return Ok(region);
            }
            let (loading, waiters) = state.loading.entry(key.to_vec()).or_insert_with(|| {
                let this = self.clone();
                let owned = key.to_vec();
                let fut: BoxFuture<'static, Result<Region>> =
                    Box::pin(async move { this.load(&owned).await });
                (fut.shared(), 0)
            });
            *waiters += 1;
            loading.clone()
        };
        let _waiting = Waiting { cache: self, key };
        loading.await
    }

    /// The region holding the keys just below `key` (for reverse scans): the one with
    /// `start < key <= end`. An empty `key` means the end of the key space.
    pub async fn locate_end_key(&self, key: &[u8]) -> Result<Region> {
        if key.is_empty() {
            return self.locate_last().await;
        }
        let now = self.now();
        if let Some(region) = self.lock().find_end(key, now) {
            return Ok(region);
        }
        // The PD calls are boxed, so that every cache hit does not carry their state.
        let region = Box::pin(self.load(key)).await?;
        if region.start_key == key {
            let prev = Box::pin(self.pd.get_prev_region(&self.encoding.encode(key)))
                .await?
                .ok_or_else(|| Error::Pd(format!("no region before key {key:?}")))?;
            return self.insert(prev);
        }
        Ok(region)
    }

    /// The last region of the key space.
    async fn locate_last(&self) -> Result<Region> {
        let mut start = Vec::new();
        loop {
            let region = self.locate(&start).await?;
            if region.end_key.is_empty() {
                return Ok(region);
            }
            start = region.end_key;
        }
    }

    /// The cached region with this id, if any and not expired.
    pub fn get_by_id(&self, id: u64) -> Option<Region> {
        let now = self.now();
        let state = self.lock();
        let start = state.by_id.get(&id)?;
        state
            .regions
            .get(start)
            .filter(|e| e.expires > now)
            .map(|e| e.region.clone())
    }

    /// The cached region with this id and epoch, if any.
    pub fn get_by_ver_id(&self, ver: RegionVerId) -> Option<Region> {
        self.get_by_id(ver.id).filter(|r| r.ver_id() == ver)
    }

    /// Loads the region with this id from PD into the cache.
    pub async fn load_by_id(&self, id: u64) -> Result<Region> {
        let info = self
            .pd
            .get_region_by_id(id)
            .await?
            .ok_or_else(|| Error::Pd(format!("PD does not know region {id}")))?;
        self.insert(info)
    }

    async fn load(&self, key: &[u8]) -> Result<Region> {
        let info = self
            .pd
            .get_region(&self.encoding.encode(key))
            .await?
            .ok_or_else(|| Error::NoRegion { key: key.to_vec() })?;
        if info.region.peers.is_empty() {
            return Err(Error::Pd(format!("region {} has no peers", info.region.id)));
        }
        self.insert(info)
    }

    /// Inserts a region reported by PD or TiKV, replacing every cached region it overlaps.
    pub fn insert(&self, info: RegionInfo) -> Result<Region> {
        let region = Region {
            id: info.region.id,
            start_key: self.encoding.decode(&info.region.start_key)?,
            end_key: self.encoding.decode(&info.region.end_key)?,
            epoch: info.region.region_epoch.unwrap_or_default(),
            peers: info.region.peers,
            leader: info.leader,
        };
        let now = self.now();
        let mut state = self.lock();
        if state.has_newer_overlap(&region) {
            // A lagging answer (PD behind TiKV): keep the newer regions cached.
            return Ok(region);
        }
        let jitter = Duration::from_millis(state.rng.below(REGION_TTL_JITTER.as_millis() as u64));
        state.remove_overlapping(&region.start_key, &region.end_key);
        state.by_id.insert(region.id, region.start_key.clone());
        state.regions.insert(
            region.start_key.clone(),
            Entry {
                region: region.clone(),
                expires: now + REGION_TTL + jitter,
            },
        );
        Ok(region)
    }

    /// Drops a region from the cache.
    pub fn invalidate(&self, id: u64, reason: InvalidReason) {
        let mut state = self.lock();
        if let Some(start) = state.by_id.remove(&id) {
            state.regions.remove(&start);
            log::debug!("region {id} invalidated: {reason:?}");
        }
    }

    /// Records that `leader` now leads region `id`. Returns false if the region is not cached
    /// or the peer is not one of its peers (then the caller should re-locate).
    pub fn update_leader(&self, id: u64, leader: &metapb::Peer) -> bool {
        let mut state = self.lock();
        let Some(start) = state.by_id.get(&id).cloned() else {
            return false;
        };
        let Some(entry) = state.regions.get_mut(&start) else {
            return false;
        };
        match entry
            .region
            .peers
            .iter()
            .find(|p| p.store_id == leader.store_id)
        {
            Some(peer) => {
                entry.region.leader = Some(*peer);
                true
            }
            None => false,
        }
    }

    /// Handles `EpochNotMatch`: caches the regions it carries. Returns false when it carried
    /// none, or an older epoch than the cached one (then back off and retry).
    pub fn on_epoch_not_match(
        &self,
        stale: &Region,
        current: &[metapb::Region],
        leader_store: u64,
    ) -> Result<bool> {
        if current.is_empty() {
            self.invalidate(stale.id, InvalidReason::EpochNotMatch);
            return Ok(false);
        }
        let older = current.iter().any(|r| {
            let e = r.region_epoch.unwrap_or_default();
            r.id == stale.id
                && (e.version < stale.epoch.version || e.conf_ver < stale.epoch.conf_ver)
        });
        if older {
            return Ok(false);
        }
        self.invalidate(stale.id, InvalidReason::EpochNotMatch);
        for meta in current {
            let leader = meta
                .peers
                .iter()
                .find(|p| p.store_id == leader_store)
                .cloned();
            self.insert(RegionInfo {
                region: meta.clone(),
                leader,
            })?;
        }
        Ok(true)
    }

    /// The address of a store, from the cache or PD.
    pub async fn store_address(&self, store_id: u64) -> Result<String> {
        if let Some(addr) = self.lock().stores.get(&store_id) {
            return Ok(addr.clone());
        }
        // The PD call is boxed, so that every cache hit does not carry its state.
        let store = Box::pin(self.pd.get_store(store_id)).await?;
        if store.address.is_empty() {
            return Err(Error::Pd(format!("store {store_id} has no address")));
        }
        self.lock().stores.insert(store_id, store.address.clone());
        Ok(store.address)
    }

    /// Forgets a store's address so the next use asks PD again.
    pub fn invalidate_store(&self, store_id: u64) {
        self.lock().stores.remove(&store_id);
    }

    /// Loads the regions of `[start, end)` (up to 128) with one PD `ScanRegions` call, unless
    /// the region holding `start` is cached already: a range walk then finds them cached.
    pub async fn preload(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let now = self.now();
        if self.lock().find(start, now, Region::contains).is_some() {
            return Ok(());
        }
        let end = if end.is_empty() {
            Vec::new()
        } else {
            self.encoding.encode(end)
        };
        let regions = self
            .pd
            .scan_regions(&self.encoding.encode(start), &end, PRELOAD_REGIONS)
            .await?;
        for info in regions {
            self.insert(info)?;
        }
        Ok(())
    }
}

/// One caller's wait for a shared region load. When the last caller stops waiting (it got
/// the answer, or it was cancelled), the load leaves the in-flight map: a finished answer is
/// in the cache, and an abandoned query is dropped rather than kept, with the cache and PD
/// client it holds, forever.
struct Waiting<'a> {
    cache: &'a RegionCache,
    key: &'a [u8],
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.cache.lock();
        if let Some((_, waiters)) = state.loading.get_mut(self.key) {
            *waiters -= 1;
            if *waiters == 0 {
                state.loading.remove(self.key);
            }
        }
    }
}

impl State {
    fn find(&self, key: &[u8], now: Instant, fits: fn(&Region, &[u8]) -> bool) -> Option<Region> {
        let (_, entry) = self
            .regions
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        (entry.expires > now && fits(&entry.region, key)).then(|| entry.region.clone())
    }

    fn find_end(&self, key: &[u8], now: Instant) -> Option<Region> {
        let (_, entry) = self
            .regions
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(key)))
            .next_back()?;
        (entry.expires > now && entry.region.contains_end_key(key)).then(|| entry.region.clone())
    }

    /// Whether a cached region overlapping `region` has a newer split/merge version.
    fn has_newer_overlap(&self, region: &Region) -> bool {
        self.regions.values().any(|e| {
            let r = &e.region;
            let overlaps = (region.end_key.is_empty() || r.start_key < region.end_key)
                && (r.end_key.is_empty() || r.end_key > region.start_key);
            overlaps && r.epoch.version > region.epoch.version
        })
    }

    fn remove_overlapping(&mut self, start: &[u8], end: &[u8]) {
        let doomed: Vec<Vec<u8>> = self
            .regions
            .iter()
            .filter(|(_, e)| {
                let r = &e.region;
                let starts_before_end = end.is_empty() || r.start_key.as_slice() < end;
                let ends_after_start = r.end_key.is_empty() || r.end_key.as_slice() > start;
                starts_before_end && ends_after_start
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            if let Some(e) = self.regions.remove(&k) {
                self.by_id.remove(&e.region.id);
            }
        }
    }
}
