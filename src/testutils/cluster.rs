//! The cluster's metadata, as PD knows it: regions with epochs and leaders, stores, the
//! timestamp oracle, GC safe points and keyspaces. One instance is shared by the mock PD and
//! every mock TiKV store, standing in for Raft replication and PD heartbeats.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::kv::memcomparable;
use crate::proto::{keyspacepb, metapb};

/// Which API version the stores run, as TiKV's `storage.api-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    /// Raw and transactional data side by side, raw values without TTL.
    V1,
    /// Raw data only, with TTL.
    V1Ttl,
    /// Keyspaces: every key starts with a mode byte and a 3-byte keyspace id.
    V2,
}

impl ApiVersion {
    /// The name `tikv-mock` prints and accepts.
    pub fn name(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1",
            ApiVersion::V1Ttl => "v1ttl",
            ApiVersion::V2 => "v2",
        }
    }

    /// The name TiKV uses in error texts.
    pub(crate) fn storage_name(self) -> &'static str {
        match self {
            ApiVersion::V1 => "V1",
            ApiVersion::V1Ttl => "V1ttl",
            ApiVersion::V2 => "V2",
        }
    }

    /// Whether raw values may carry a TTL.
    pub(crate) fn ttl_enabled(self) -> bool {
        self != ApiVersion::V1
    }
}

impl std::str::FromStr for ApiVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v1" => Ok(ApiVersion::V1),
            "v1ttl" => Ok(ApiVersion::V1Ttl),
            "v2" => Ok(ApiVersion::V2),
            other => Err(format!("unknown API version {other} (v1, v1ttl or v2)")),
        }
    }
}

/// Whether a key is raw or transactional data, which decides how it maps to the internal key
/// space that region boundaries live in (spec 6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataKind {
    Raw,
    Txn,
}

/// A region as PD and the stores know it.
#[derive(Debug, Clone)]
pub(crate) struct Region {
    pub meta: metapb::Region,
    pub leader_store: u64,
    /// When a new leader will have synced its max_ts from PD (spec 1.5); `None` once it has.
    pub max_ts_synced_at: Option<std::time::Instant>,
    /// When it last split (or was split off), for PD's merge checker; `None` if never.
    pub split_at: Option<tokio::time::Instant>,
}

impl Region {
    pub(crate) fn leader_peer(&self) -> Option<&metapb::Peer> {
        self.meta
            .peers
            .iter()
            .find(|p| p.store_id == self.leader_store)
    }

    pub(crate) fn peer_on(&self, store: u64) -> Option<&metapb::Peer> {
        self.meta.peers.iter().find(|p| p.store_id == store)
    }

    /// Whether the internal key lies in `[start, end)` (an empty end is unbounded).
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        key >= &self.meta.start_key[..]
            && (self.meta.end_key.is_empty() || key < &self.meta.end_key[..])
    }
}

/// A store: its metadata and whether its server runs.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pub meta: metapb::Store,
    pub up: bool,
}

/// The mutable metadata.
#[derive(Debug)]
pub(crate) struct Meta {
    next_id: u64,
    /// Regions by start key (internal key space).
    regions: BTreeMap<Vec<u8>, Region>,
    pub stores: BTreeMap<u64, Store>,
    pub gc_safe_point: u64,
    /// service id -> (safe point, expire at unix seconds; i64::MAX = never)
    pub service_safe_points: HashMap<Vec<u8>, (u64, i64)>,
    pub keyspaces: Vec<keyspacepb::KeyspaceMeta>,
    pub pd_available: bool,
    /// Stores cut off from PD, each with the regions whose leadership it took since, and the
    /// leader's store PD still believes in for them.
    cut_off: BTreeMap<u64, HashMap<u64, u64>>,
}

/// Shared cluster metadata and the timestamp oracle.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub id: u64,
    pub api_version: ApiVersion,
    meta: Mutex<Meta>,
    tso: Mutex<(i64, i64)>,
    /// How far PD's clock runs ahead of the wall clock, in ms (a clock that jumped).
    tso_ahead_ms: std::sync::atomic::AtomicI64,
}

/// The version the mock's PD and stores claim.
pub(crate) const PD_VERSION: &str = "8.5.0";

/// Logical bits of a TSO timestamp.
pub(crate) const LOGICAL_BITS: u32 = 18;
const MAX_LOGICAL: i64 = 1 << LOGICAL_BITS;

/// The wall-clock time: the system's, or the simulation's inside one.
pub(crate) fn unix_now() -> std::time::Duration {
    crate::rt::unix_time()
}

impl Cluster {
    /// A cluster with `stores` stores (addresses filled in later), one region covering
    /// everything, and the keyspaces of API v2.
    pub(crate) fn new(
        id: u64,
        api_version: ApiVersion,
        stores: usize,
        keyspaces: &[String],
    ) -> Cluster {
        let mut meta = Meta {
            next_id: 1,
            regions: BTreeMap::new(),
            stores: BTreeMap::new(),
            gc_safe_point: 0,
            service_safe_points: HashMap::new(),
            keyspaces: Vec::new(),
            pd_available: true,
            cut_off: BTreeMap::new(),
        };
        for _ in 0..stores.max(1) {
            let id = meta.alloc_id();
            meta.stores.insert(
                id,
                Store {
                    meta: metapb::Store {
                        id,
                        state: metapb::StoreState::Up as i32,
                        version: PD_VERSION.into(),
                        node_state: metapb::NodeState::Serving as i32,
                        ..Default::default()
                    },
                    up: true,
                },
            );
        }
        let region_id = meta.alloc_id();
        let peers = meta.new_peers();
        let leader_store = *meta.stores.keys().next().expect("at least one store");
        meta.regions.insert(
            Vec::new(),
            Region {
                meta: metapb::Region {
                    id: region_id,
                    region_epoch: Some(metapb::RegionEpoch {
                        conf_ver: 1,
                        version: 1,
                    }),
                    peers,
                    ..Default::default()
                },
                leader_store,
                max_ts_synced_at: None,
                split_at: None,
            },
        );
        let now = unix_now().as_secs() as i64;
        let mut names: Vec<String> = Vec::new();
        if api_version == ApiVersion::V2 {
            names.push("DEFAULT".into());
        }
        names.extend(keyspaces.iter().filter(|n| *n != "DEFAULT").cloned());
        for (id, name) in names.into_iter().enumerate() {
            meta.keyspaces.push(keyspacepb::KeyspaceMeta {
                name,
                state: keyspacepb::KeyspaceState::Enabled as i32,
                created_at: now,
                state_changed_at: now,
                keyspace: Some(keyspacepb::keyspace_meta::Keyspace::Id(id as u32)),
                ..Default::default()
            });
        }
        let cluster = Cluster {
            id,
            api_version,
            meta: Mutex::new(meta),
            tso: Mutex::new((0, 0)),
            tso_ahead_ms: Default::default(),
        };
        if api_version == ApiVersion::V2 {
            // PD splits the regions of every keyspace at its boundaries when it is created.
            let ids: Vec<u32> = cluster
                .meta()
                .keyspaces
                .iter()
                .filter_map(keyspace_id)
                .collect();
            for id in ids {
                for mode in [b'r', b'x'] {
                    let prefix = u32::from_be_bytes([mode, 0, 0, 0]) | id;
                    cluster.split(&memcomparable::encode(&prefix.to_be_bytes()));
                    cluster.split(&memcomparable::encode(&(prefix + 1).to_be_bytes()));
                }
            }
        }
        cluster
    }

    pub(crate) fn meta(&self) -> MutexGuard<'_, Meta> {
        self.meta.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The internal key for a user key of the given kind (spec 6.4).
    pub(crate) fn internal_key(&self, key: &[u8], kind: DataKind) -> Vec<u8> {
        match (self.api_version, kind) {
            (ApiVersion::V2, _) | (_, DataKind::Txn) => memcomparable::encode(key),
            _ => key.to_vec(),
        }
    }

    /// Whether an internal key is a keyspace's boundary, which PD never merges away (API v2:
    /// the encoded 4-byte prefix of a keyspace's raw or transactional range).
    pub(crate) fn is_keyspace_bound(&self, key: &[u8]) -> bool {
        self.api_version == ApiVersion::V2
            && memcomparable::decode_exact(key)
                .is_ok_and(|k| k.len() == 4 && matches!(k[0], b'r' | b'x'))
    }

    /// `count` timestamps: returns the last of them (physical ms, logical).
    /// The last timestamp issued.
    pub(crate) fn last_ts(&self) -> crate::timestamp::Timestamp {
        let (physical, logical) = *self.tso.lock().unwrap_or_else(PoisonError::into_inner);
        crate::timestamp::Timestamp::new(physical, logical)
    }

    pub(crate) fn tso(&self, count: u32) -> (i64, i64) {
        let mut last = self.tso.lock().unwrap_or_else(PoisonError::into_inner);
        let ahead = self.tso_ahead_ms.load(std::sync::atomic::Ordering::Relaxed);
        let now = unix_now().as_millis() as i64 + ahead;
        let count = i64::from(count);
        let (physical, logical) = if now > last.0 {
            (now, count - 1)
        } else if last.1 + count < MAX_LOGICAL {
            (last.0, last.1 + count)
        } else {
            (last.0 + 1, count - 1)
        };
        *last = (physical, logical);
        (physical, logical)
    }

    /// Moves PD's clock forward by `by`, as a clock stepped by NTP: timestamps jump, so every
    /// lock looks older by `by` to anyone comparing it with a new timestamp.
    pub(crate) fn jump_clock(&self, by: std::time::Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.tso_ahead_ms
            .fetch_add(by, std::sync::atomic::Ordering::Relaxed);
    }

    /// Splits the region containing `key` (an internal key) at `key`. Returns the new region
    /// (the left half gets a new id, as TiKV does: the original id keeps the right half) or
    /// `None` when `key` is already a boundary.
    pub(crate) fn split(&self, key: &[u8]) -> Option<metapb::Region> {
        let mut meta = self.meta();
        let (start, region) = meta
            .region_containing(key)
            .map(|r| (r.meta.start_key.clone(), r.clone()))?;
        if start == key || meta.is_cut_off(region.leader_store) {
            return None;
        }
        let new_id = meta.alloc_id();
        let new_peers = meta.new_peers();
        let mut right = region.clone();
        let version = right.meta.region_epoch.as_ref().map_or(1, |e| e.version) + 1;
        let epoch = metapb::RegionEpoch {
            conf_ver: right.meta.region_epoch.as_ref().map_or(1, |e| e.conf_ver),
            version,
        };
        let now = tokio::time::Instant::now();
        right.meta.start_key = key.to_vec();
        right.meta.region_epoch = Some(epoch);
        right.split_at = Some(now);
        let left = Region {
            meta: metapb::Region {
                id: new_id,
                start_key: start.clone(),
                end_key: key.to_vec(),
                region_epoch: Some(epoch),
                peers: new_peers,
                ..Default::default()
            },
            leader_store: region.leader_store,
            // Same leader, same concurrency manager: as (un)synced as the parent.
            max_ts_synced_at: region.max_ts_synced_at,
            split_at: Some(now),
        };
        meta.regions.insert(start, left.clone());
        meta.regions.insert(key.to_vec(), right);
        Some(left.meta)
    }

    /// Merges the region `right` into its left neighbour `left`. Fails unless they are
    /// adjacent.
    pub(crate) fn merge(&self, left: u64, right: u64) -> Result<(), String> {
        let meta = self.meta();
        let in_order = meta
            .region_by_id(left)
            .zip(meta.region_by_id(right))
            .is_none_or(|(l, r)| l.meta.end_key == r.meta.start_key);
        drop(meta);
        if !in_order {
            return Err(format!("regions {left} and {right} are not adjacent"));
        }
        self.merge_into(right, left)
    }

    /// Merges region `source` into its neighbour `target` (on either side), as TiKV's
    /// PrepareMerge and CommitMerge: `source` goes away (PrepareMerge had bumped its version
    /// and conf_ver), `target` keeps its id, peers, leader and conf_ver, takes the joint range,
    /// and its version becomes one past the larger of both (the source's counted after
    /// PrepareMerge). Fails unless they are adjacent.
    pub(crate) fn merge_into(&self, source: u64, target: u64) -> Result<(), String> {
        let mut meta = self.meta();
        let s = meta
            .region_by_id(source)
            .ok_or(format!("no region {source}"))?
            .clone();
        let t = meta
            .region_by_id(target)
            .ok_or(format!("no region {target}"))?
            .clone();
        let (start, end) = if s.meta.end_key == t.meta.start_key && !s.meta.end_key.is_empty() {
            (s.meta.start_key.clone(), t.meta.end_key.clone())
        } else if t.meta.end_key == s.meta.start_key && !t.meta.end_key.is_empty() {
            (t.meta.start_key.clone(), s.meta.end_key.clone())
        } else {
            return Err(format!("regions {source} and {target} are not adjacent"));
        };
        if let Some(store) = [s.leader_store, t.leader_store]
            .into_iter()
            .find(|store| meta.is_cut_off(*store))
        {
            return Err(format!(
                "PD cannot merge regions {source} and {target}: store {store} is cut off from it"
            ));
        }
        let epoch = |reg: &Region| reg.meta.region_epoch.unwrap_or_default();
        let (se, te) = (epoch(&s), epoch(&t));
        meta.regions.remove(&s.meta.start_key);
        meta.regions.remove(&t.meta.start_key);
        let mut merged = t;
        merged.meta.start_key = start.clone();
        merged.meta.end_key = end;
        merged.meta.region_epoch = Some(metapb::RegionEpoch {
            conf_ver: te.conf_ver,
            version: (se.version + 1).max(te.version) + 1,
        });
        meta.regions.insert(start, merged);
        Ok(())
    }

    /// Moves the leader of `region` to `store`.
    pub(crate) fn transfer_leader(&self, region: u64, store: u64) -> Result<(), String> {
        let mut meta = self.meta();
        if !meta.stores.contains_key(&store) {
            return Err(format!("no store {store}"));
        }
        let start = meta
            .region_by_id(region)
            .ok_or(format!("no region {region}"))?
            .meta
            .start_key
            .clone();
        // A store cut off from PD cannot report its new leadership.
        if let Some(known) = meta.regions.get(&start).map(|r| meta.pd_leader_store(r)) {
            if let Some(taken) = meta.cut_off.get_mut(&store) {
                taken.entry(region).or_insert(known);
            }
        }
        if let Some(r) = meta.regions.get_mut(&start) {
            r.leader_store = store;
        }
        Ok(())
    }

    /// Cuts `store` off from PD (`cut`), or lets it reach PD again. While cut off, the store
    /// serves as before (its peers still reach it), but PD hears nothing from it: PD keeps
    /// naming the old leaders of regions whose leadership the store takes, cannot merge the
    /// regions it leads, and the store cannot split them (TiKV asks PD for the new regions'
    /// ids first). Once the store reaches PD again, its heartbeats bring PD up to date at
    /// once. False if there is no such store.
    pub(crate) fn cut_off_from_pd(&self, store: u64, cut: bool) -> bool {
        let mut meta = self.meta();
        if !meta.stores.contains_key(&store) {
            return false;
        }
        if cut {
            meta.cut_off.entry(store).or_default();
        } else {
            meta.cut_off.remove(&store);
        }
        true
    }
}

impl Meta {
    /// Whether `store` is cut off from PD.
    pub(crate) fn is_cut_off(&self, store: u64) -> bool {
        self.cut_off.contains_key(&store)
    }

    /// The store PD believes leads `region`: while the store that took its leadership is cut
    /// off from PD, the leader before.
    fn pd_leader_store(&self, region: &Region) -> u64 {
        self.cut_off
            .get(&region.leader_store)
            .and_then(|taken| taken.get(&region.meta.id))
            .copied()
            .unwrap_or(region.leader_store)
    }

    /// `region` as PD knows it.
    fn as_pd_knows(&self, region: &Region) -> Region {
        Region {
            leader_store: self.pd_leader_store(region),
            ..region.clone()
        }
    }

    /// The region holding `key`, as PD knows it.
    pub(crate) fn pd_region_containing(&self, key: &[u8]) -> Option<Region> {
        self.region_containing(key).map(|r| self.as_pd_knows(r))
    }

    /// The region with this id, as PD knows it.
    pub(crate) fn pd_region_by_id(&self, id: u64) -> Option<Region> {
        self.region_by_id(id).map(|r| self.as_pd_knows(r))
    }

    /// The region before the one holding `key`, as PD knows it.
    pub(crate) fn pd_prev_region(&self, key: &[u8]) -> Option<Region> {
        let region = self.region_containing(key)?;
        self.prev_region(region).map(|r| self.as_pd_knows(r))
    }

    /// The regions overlapping `[start, end)`, as PD knows them, in key order.
    pub(crate) fn pd_regions_in(&self, start: &[u8], end: &[u8]) -> Vec<Region> {
        self.regions_in(start, end)
            .map(|r| self.as_pd_knows(r))
            .collect()
    }

    pub(crate) fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn new_peers(&mut self) -> Vec<metapb::Peer> {
        let stores: Vec<u64> = self.stores.keys().copied().collect();
        stores
            .into_iter()
            .map(|store_id| metapb::Peer {
                id: self.alloc_id(),
                store_id,
                role: metapb::PeerRole::Voter as i32,
                ..Default::default()
            })
            .collect()
    }

    /// The region whose range holds the internal key.
    pub(crate) fn region_containing(&self, key: &[u8]) -> Option<&Region> {
        self.regions
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.contains(key))
    }

    pub(crate) fn region_by_id(&self, id: u64) -> Option<&Region> {
        self.regions.values().find(|r| r.meta.id == id)
    }

    pub(crate) fn region_by_id_mut(&mut self, id: u64) -> Option<&mut Region> {
        self.regions.values_mut().find(|r| r.meta.id == id)
    }

    /// The region right before `region` (adjacent), if any.
    pub(crate) fn prev_region(&self, region: &Region) -> Option<&Region> {
        if region.meta.start_key.is_empty() {
            return None;
        }
        self.regions
            .range::<[u8], _>((
                Bound::Unbounded,
                Bound::Excluded(&region.meta.start_key[..]),
            ))
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.meta.end_key == region.meta.start_key)
    }

    /// Regions overlapping `[start, end)` (empty end unbounded), in key order.
    pub(crate) fn regions_in(&self, start: &[u8], end: &[u8]) -> impl Iterator<Item = &Region> {
        let first = self
            .region_containing(start)
            .map(|r| r.meta.start_key.clone())
            .unwrap_or_else(|| start.to_vec());
        let end = end.to_vec();
        self.regions
            .range(first..)
            .map(|(_, r)| r)
            .take_while(move |r| end.is_empty() || r.meta.start_key < end)
    }

    pub(crate) fn all_regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.values()
    }

    pub(crate) fn keyspace_by_name(&self, name: &str) -> Option<&keyspacepb::KeyspaceMeta> {
        self.keyspaces.iter().find(|k| k.name == name)
    }
}

pub(crate) fn keyspace_id(meta: &keyspacepb::KeyspaceMeta) -> Option<u32> {
    match meta.keyspace {
        Some(keyspacepb::keyspace_meta::Keyspace::Id(id)) => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster::new(1, ApiVersion::V1, 3, &[])
    }

    #[test]
    fn a_clock_jump_moves_every_later_timestamp_forward_by_at_least_the_jump() {
        let c = cluster();
        let (before, _) = c.tso(1);
        c.jump_clock(std::time::Duration::from_secs(7));
        let (after, _) = c.tso(1);
        assert!(after >= before + 7000, "{before} then {after}");
        let (next, _) = c.tso(1);
        assert!(next >= after, "timestamps stay monotonic after a jump");
    }

    #[test]
    fn starts_with_one_region_over_everything_with_a_peer_per_store() {
        let c = cluster();
        let meta = c.meta();
        let regions: Vec<_> = meta.all_regions().collect();
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].meta.peers.len(), 3);
        assert!(regions[0].contains(b"") && regions[0].contains(b"\xff\xff"));
        assert!(regions[0].leader_peer().is_some());
    }

    #[test]
    fn splits_bump_the_version_and_keep_ranges_contiguous() {
        let c = cluster();
        let right_id = c.meta().all_regions().next().unwrap().meta.id;
        let left = c.split(b"m").unwrap();
        assert!(c.split(b"m").is_none(), "already a boundary");
        c.split(b"c").unwrap();
        let meta = c.meta();
        let regions: Vec<_> = meta.all_regions().collect();
        assert_eq!(regions.len(), 3);
        assert_eq!(regions[0].meta.end_key, regions[1].meta.start_key);
        assert_eq!(regions[1].meta.end_key, b"m");
        assert_eq!(
            regions[2].meta.id, right_id,
            "the original id keeps the right half"
        );
        assert_eq!(left.end_key, b"m");
        assert_eq!(meta.region_containing(b"d").unwrap().meta.start_key, b"c");
        assert_eq!(meta.region_containing(b"zz").unwrap().meta.id, right_id);
        assert_eq!(regions[2].meta.region_epoch.as_ref().unwrap().version, 2);
        assert_eq!(
            meta.prev_region(regions[2]).unwrap().meta.id,
            regions[1].meta.id
        );
        assert!(meta.prev_region(regions[0]).is_none());
        assert_eq!(meta.regions_in(b"d", b"n").count(), 2);
        assert_eq!(meta.regions_in(b"", b"").count(), 3);
        assert_eq!(meta.regions_in(b"a", b"c").count(), 1);
    }

    #[test]
    fn merge_joins_adjacent_regions_only() {
        let c = cluster();
        c.split(b"m").unwrap();
        c.split(b"t").unwrap();
        let ids: Vec<u64> = c.meta().all_regions().map(|r| r.meta.id).collect();
        assert!(c.merge(ids[0], ids[2]).is_err());
        c.merge(ids[0], ids[1]).unwrap();
        let meta = c.meta();
        let regions: Vec<_> = meta.all_regions().collect();
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[0].meta.end_key, b"t");
        assert_eq!(
            regions[0].meta.region_epoch.as_ref().unwrap().version,
            5,
            "max(3 + 1 after PrepareMerge, 2) + 1"
        );
        assert_eq!(regions[0].meta.region_epoch.as_ref().unwrap().conf_ver, 1);
    }

    #[test]
    fn tso_is_strictly_increasing_and_batches_share_a_physical() {
        let c = cluster();
        let mut last = 0u64;
        for count in [1u32, 5, 100, 1] {
            let (p, l) = c.tso(count);
            let first = ((p as u64) << LOGICAL_BITS) | (l as u64 + 1 - u64::from(count));
            assert!(first > last, "batch starts after the previous one");
            assert!(l < MAX_LOGICAL);
            last = ((p as u64) << LOGICAL_BITS) | l as u64;
        }
    }

    #[test]
    fn v2_clusters_split_at_keyspace_boundaries() {
        let c = Cluster::new(1, ApiVersion::V2, 1, &["tenant".into()]);
        let meta = c.meta();
        assert_eq!(meta.keyspaces.len(), 2);
        assert_eq!(
            meta.keyspace_by_name("DEFAULT").and_then(keyspace_id),
            Some(0)
        );
        assert_eq!(
            meta.keyspace_by_name("tenant").and_then(keyspace_id),
            Some(1)
        );
        let key = memcomparable::encode(b"r\0\0\x01user");
        let region = meta.region_containing(&key).unwrap();
        assert_eq!(region.meta.start_key, memcomparable::encode(b"r\0\0\x01"));
        assert_eq!(region.meta.end_key, memcomparable::encode(b"r\0\0\x02"));
    }
}
