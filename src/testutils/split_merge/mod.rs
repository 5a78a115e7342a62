//! Organic splits and merges: regions split by themselves when they grow past configured
//! limits, as TiKV's split checker splits them, and PD merges small neighbours, as its merge
//! checker does. Both are off unless configured ([`SplitPolicy`], [`MergePolicy`]).
//!
//! Where TiKV checks a region on a timer once enough was written to it, and PD patrols regions
//! in the background, the mock checks at once and deterministically: after every request that
//! changed data (the region it wrote is split-checked, then, with merging on, every region is
//! merge-checked), and after a GC safe point advance (merge-checked). The check runs before the
//! request is answered, so a client's next request already sees the new regions.
//!
//! What counts (exact sums, where TiKV reads approximate ones from its SST properties):
//! - a raw pair counts one key and its key and value bytes, in every column family, expired
//!   values included (TiKV keeps them until compaction). TiKV itself counts raw keys as zero
//!   (its key count reads the write column family only, tikv/tikv#14503), so a raw cluster
//!   splits only by size there; the mock counts them so that key limits work for raw data too;
//! - a transactional key counts one key per version in its write column family (every Put,
//!   Delete, Lock and Rollback record, until GC removes them), each sized as the encoded key,
//!   8 bytes of timestamp and the value; its lock counts no key and the encoded key, the
//!   primary and the value bytes;
//! - sizes are bytes (PD counts regions in whole MiB, and its `max-merge-region-size` is in
//!   MiB).

mod merge;
mod split;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::cluster::{DataKind, Region};
use super::tikv::Node;
use crate::kv::memcomparable;
use split::Entry;

/// A maximum, and the size of the pieces a region that reached it is split into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SplitLimit {
    pub max: u64,
    pub split: u64,
}

/// TiKV's defaults (`region-max-keys`, `region-split-keys`, `region-max-size`,
/// `region-split-size`), which PD's merge checker assumes when none are set.
const TIKV_KEYS: SplitLimit = SplitLimit {
    max: 1_440_000,
    split: 960_000,
};
const TIKV_SIZE: SplitLimit = SplitLimit {
    max: 144 << 20,
    split: 96 << 20,
};

/// When a region splits by itself, as TiKV's split checker decides: by its number of keys
/// (`region-max-keys`, `region-split-keys`), by its size (`region-max-size`,
/// `region-split-size`), or both (size is checked first). The default splits nothing: regions
/// then split only when asked ([`MockCluster::split_raw`](super::MockCluster::split_raw), the
/// admin API, `SplitRegion`).
///
/// A region is checked after every request that wrote to it. Once it holds `max` keys (or
/// bytes) or more, it is split before the request is answered, at each key where the running
/// sum passes `split`: every piece but the last holds `split` keys (or about `split` bytes:
/// the entry that takes the sum past it starts the next piece), and the last is joined to the
/// one before when it plus `split` stays below `max`. Versions of one key are never parted.
/// Pieces are checked again until none needs splitting (TiKV gets there over several checks).
///
/// What counts, as exact sums where TiKV reads estimates: a transactional key counts once per
/// version in its write column family (until GC removes old versions), sized as its encoded
/// key, 8 timestamp bytes and the value; its lock counts no key but its size. A raw pair
/// counts one key and its key and value bytes; TiKV counts raw keys as zero (tikv/tikv#14503),
/// so a raw TiKV splits by size only, but here key limits work for raw data too.
///
/// ```
/// use tikv_client::testutils::SplitPolicy;
/// // TiKV's test configuration of region-max-keys 10 and region-split-keys 7.
/// let policy = SplitPolicy::default().keys(10, 7);
/// assert_eq!(policy.max_keys(), Some(10));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitPolicy {
    keys: Option<SplitLimit>,
    size: Option<SplitLimit>,
}

impl SplitPolicy {
    /// Splits regions holding `max` keys or more into pieces of `split` keys. `max` must be at
    /// least `split`, and `split` at least 1 ([`MockClusterBuilder::start`] refuses others).
    ///
    /// [`MockClusterBuilder::start`]: super::MockClusterBuilder::start
    pub fn keys(mut self, max: u64, split: u64) -> Self {
        self.keys = Some(SplitLimit { max, split });
        self
    }

    /// Splits regions of `max_bytes` or more into pieces of about `split_bytes`. `max_bytes`
    /// must be at least `split_bytes`, and `split_bytes` at least 1.
    pub fn size(mut self, max_bytes: u64, split_bytes: u64) -> Self {
        self.size = Some(SplitLimit {
            max: max_bytes,
            split: split_bytes,
        });
        self
    }

    /// The key count at which a region splits, if it splits by keys.
    pub fn max_keys(&self) -> Option<u64> {
        self.keys.map(|l| l.max)
    }

    /// The size in bytes at which a region splits, if it splits by size.
    pub fn max_size(&self) -> Option<u64> {
        self.size.map(|l| l.max)
    }

    /// Whether regions split by themselves at all.
    pub fn is_off(&self) -> bool {
        self.keys.is_none() && self.size.is_none()
    }

    /// TiKV's validation: a split threshold of at least 1, a maximum of at least it.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for (what, limit) in [("keys", self.keys), ("size", self.size)] {
            let Some(SplitLimit { max, split }) = limit else {
                continue;
            };
            if split == 0 {
                return Err(format!("region split {what} must be at least 1"));
            }
            if max < split {
                return Err(format!(
                    "region max {what} {max} is below the split {what} {split}: regions \
                     would split into pieces larger than the size that splits them"
                ));
            }
        }
        Ok(())
    }
}

/// The limits of PD's merge checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MergeLimits {
    pub max_keys: u64,
    pub max_size: u64,
    pub split_merge_interval: Duration,
}

/// When PD merges a small region into a neighbour, as its merge checker does: the region holds
/// at most `max_keys` keys and `max_size_bytes` bytes (`max-merge-region-keys`,
/// `max-merge-region-size`), neither it nor that neighbour split within the
/// [`split_merge_interval`](Self::split_merge_interval) (and PD has run at least that long),
/// no keyspace boundary lies between them, and the merged region would not split again into
/// a piece small enough to merge once more. The next neighbour is taken, or the previous one
/// when it is smaller. The merged region keeps the neighbour's id and leader; its version goes
/// past both regions' (clients holding either see `EpochNotMatch` or `RegionNotFound`), and its
/// leader syncs its max_ts from PD as after [`MockCluster::merge`](super::MockCluster::merge).
///
/// Regions are merge-checked after every request that changed data and after a GC safe point
/// advance. Regions that were split on purpose are merged too when small (an empty region
/// always is): PD does not tell them apart.
///
/// ```
/// use std::time::Duration;
/// use tikv_client::testutils::MergePolicy;
/// let policy = MergePolicy::new(2, 1 << 20).split_merge_interval(Duration::from_secs(3600));
/// assert_eq!(policy.max_keys(), 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergePolicy(MergeLimits);

impl MergePolicy {
    /// PD's defaults: `max-merge-region-keys` 200000, `max-merge-region-size` 20 MiB (and no
    /// split-merge interval, where PD's is an hour).
    pub const PD_DEFAULT: MergePolicy = MergePolicy(MergeLimits {
        max_keys: 200_000,
        max_size: 20 << 20,
        split_merge_interval: Duration::ZERO,
    });

    /// Merges regions of at most `max_keys` keys and `max_size_bytes` bytes, right after a
    /// split if need be (a zero interval; PD's default is an hour).
    pub fn new(max_keys: u64, max_size_bytes: u64) -> Self {
        MergePolicy(MergeLimits {
            max_keys,
            max_size: max_size_bytes,
            split_merge_interval: Duration::ZERO,
        })
    }

    /// PD's `split-merge-interval`: how long after a split neither piece is merged (by the
    /// tokio clock), and how long after the cluster starts nothing is.
    pub fn split_merge_interval(mut self, interval: Duration) -> Self {
        self.0.split_merge_interval = interval;
        self
    }

    /// The most keys a region may hold to be merged.
    pub fn max_keys(&self) -> u64 {
        self.0.max_keys
    }

    /// The most bytes a region may hold to be merged.
    pub fn max_size(&self) -> u64 {
        self.0.max_size
    }
}

/// The policies and state of the checks, one per cluster.
#[derive(Debug)]
pub(crate) struct RegionChecks {
    split: SplitPolicy,
    merge: Option<MergeLimits>,
    /// When the cluster (PD) started.
    started: Instant,
    /// Held while a check runs: one at a time, so none works on a layout another is changing.
    running: Mutex<()>,
}

impl RegionChecks {
    pub(crate) fn new(split: SplitPolicy, merge: Option<MergePolicy>) -> Self {
        RegionChecks {
            split,
            merge: merge.map(|m| m.0),
            started: Instant::now(),
            running: Mutex::new(()),
        }
    }

    fn is_off(&self) -> bool {
        self.split.is_off() && self.merge.is_none()
    }
}

/// The user key to start a scan of data of `kind` from, to find every key whose internal
/// form is at least `start`.
fn scan_from(node: &Node, start: &[u8], kind: DataKind) -> Vec<u8> {
    if node.cluster.internal_key(b"", kind).is_empty() {
        return start.to_vec();
    }
    // Encoded keys sort as their keys: whatever follows start's first key sorts after it.
    memcomparable::decode(start).map_or_else(|_| Vec::new(), |(key, _)| key)
}

/// Collects entries in `[start, end)` (internal keys, an empty end unbounded).
struct Collect<'a> {
    start: &'a [u8],
    end: &'a [u8],
    out: Vec<Entry>,
}

impl Collect<'_> {
    /// Takes an entry in range; false once past the end.
    fn take(&mut self, key: Vec<u8>, counted: bool, size: u64) -> bool {
        if !self.end.is_empty() && key.as_slice() >= self.end {
            return false;
        }
        if key.as_slice() >= self.start {
            self.out.push(Entry { key, counted, size });
        }
        true
    }
}

/// The stored entries of `[start, end)`, in key order (versions of a key together).
fn entries(node: &Node, start: &[u8], end: &[u8]) -> Vec<Entry> {
    let cluster = &node.cluster;
    let mut collect = Collect {
        start,
        end,
        out: Vec::new(),
    };
    node.raw()
        .visit_from(&scan_from(node, start, DataKind::Raw), |key, size| {
            collect.take(cluster.internal_key(key, DataKind::Raw), true, size)
        });
    {
        let mvcc = node.mvcc();
        let from = scan_from(node, start, DataKind::Txn);
        let bounds = (
            std::ops::Bound::Included(from.as_slice()),
            std::ops::Bound::Unbounded,
        );
        for (key, records) in mvcc.writes.range::<[u8], _>(bounds) {
            let internal = cluster.internal_key(key, DataKind::Txn);
            let sizes: Vec<u64> = records
                .values()
                .map(|w| (internal.len() + 8 + w.value.len()) as u64)
                .collect();
            if !sizes
                .into_iter()
                .all(|size| collect.take(internal.clone(), true, size))
            {
                break;
            }
        }
        for (key, lock) in mvcc.locks.range::<[u8], _>(bounds) {
            let internal = cluster.internal_key(key, DataKind::Txn);
            let size = internal.len() + lock.primary.len() + lock.value.len();
            if !collect.take(internal, false, size as u64) {
                break;
            }
        }
    }
    let mut out = collect.out;
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

impl Node {
    /// Runs the organic checks after data changed: splits the regions now covering `written`
    /// (the range of the region a request wrote to) as far as they need, then, with merging
    /// on, merges every small region PD would.
    pub(crate) fn check_regions(&self, written: Option<&Region>) {
        let checks = &self.region_checks;
        if checks.is_off() {
            return;
        }
        let _running = checks
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(region) = written.filter(|_| !checks.split.is_off()) {
            let ranges: Vec<(Vec<u8>, Vec<u8>)> = self
                .cluster
                .meta()
                .regions_in(&region.meta.start_key, &region.meta.end_key)
                .map(|r| (r.meta.start_key.clone(), r.meta.end_key.clone()))
                .collect();
            self.split_ranges(ranges);
        }
        if let Some(limits) = checks.merge {
            self.merge_small(limits);
        }
    }

    /// Splits each region range until no piece needs splitting.
    fn split_ranges(&self, mut work: Vec<(Vec<u8>, Vec<u8>)>) {
        let policy = self.region_checks.split;
        while let Some((start, end)) = work.pop() {
            let entries = entries(self, &start, &end);
            let keys = split::split_keys(&entries, &start, policy.size, policy.keys);
            if keys.is_empty() {
                continue;
            }
            let mut from = start;
            for key in keys {
                if let Some(left) = self.cluster.split(&key) {
                    log::debug!(
                        "region {} split by itself at {}",
                        left.id,
                        super::tikv::hex(&key)
                    );
                }
                work.push((std::mem::replace(&mut from, key.clone()), key));
            }
            work.push((from, end));
        }
    }

    /// PD's merge checker over every region, merging as it goes; merged regions that reached
    /// a split limit are split again.
    fn merge_small(&self, limits: MergeLimits) {
        let (mut ids, mut stats): (Vec<u64>, Vec<merge::Stat>) = {
            let meta = self.cluster.meta();
            meta.all_regions()
                .map(|r| {
                    let stat = merge::Stat {
                        start: r.meta.start_key.clone(),
                        end: r.meta.end_key.clone(),
                        keys: 0,
                        size: 0,
                        split_at: r.split_at,
                    };
                    (r.meta.id, stat)
                })
                .unzip()
        };
        let mut i = 0;
        for entry in entries(self, b"", b"") {
            while stats
                .get(i)
                .is_some_and(|s| !s.end.is_empty() && entry.key >= s.end)
            {
                i += 1;
            }
            let Some(stat) = stats.get_mut(i).filter(|s| entry.key >= s.start) else {
                continue;
            };
            stat.keys += u64::from(entry.counted);
            stat.size += entry.size;
        }
        let split = self.region_checks.split;
        let fixed = |key: &[u8]| self.cluster.is_keyspace_bound(key);
        let rules = merge::Rules {
            merge: limits,
            split_keys: split.keys.unwrap_or(TIKV_KEYS),
            split_size: split.size.unwrap_or(TIKV_SIZE),
            now: Instant::now(),
            started: self.region_checks.started,
            fixed: &fixed,
        };
        let mut merged = Vec::new();
        let mut i = 0;
        while i < stats.len() {
            let Some(t) = rules.target(&stats, i) else {
                i += 1;
                continue;
            };
            if let Err(e) = self.cluster.merge_into(ids[i], ids[t]) {
                // The layout changed under the check (a test reshaping the cluster).
                log::debug!("merge of region {} into {} skipped: {e}", ids[i], ids[t]);
                i += 1;
                continue;
            }
            log::debug!("region {} merged into {}", ids[i], ids[t]);
            self.merged_into(ids[t]);
            let source = stats.remove(i);
            ids.remove(i);
            // The target, now at `t` or one before it; check it again from there.
            let at = if t > i { t - 1 } else { t };
            let target = &mut stats[at];
            target.keys += source.keys;
            target.size += source.size;
            if target.start == source.end {
                target.start = source.start;
            } else {
                target.end = source.end;
            }
            merged.push(ids[at]);
            i = at;
        }
        let ranges: Vec<(Vec<u8>, Vec<u8>)> = {
            let meta = self.cluster.meta();
            merged.sort_unstable();
            merged.dedup();
            merged
                .iter()
                .filter_map(|id| meta.region_by_id(*id))
                .map(|r| (r.meta.start_key.clone(), r.meta.end_key.clone()))
                .collect()
        };
        if !split.is_off() {
            self.split_ranges(ranges);
        }
    }
}
