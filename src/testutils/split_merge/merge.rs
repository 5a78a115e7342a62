//! PD's merge checker (`pkg/schedule/checker/merge_checker.go`) as a pure function over the
//! regions' statistics.
//!
//! A region is merged into a neighbour when it is small (at most `max-merge-region-keys` keys
//! and `max-merge-region-size` bytes), neither split within `split-merge-interval` (nor has PD
//! been up for less than that), the two share no boundary PD must keep (a keyspace's), the
//! neighbour is not too large (at most four region maxima, and at least 500 MiB are allowed),
//! and the merged region would not split again leaving a piece small enough to merge once
//! more. The next region is preferred; the previous one when it is smaller (PD's two-way
//! merge, its default).

use tokio::time::Instant;

use super::{MergeLimits, SplitLimit};

/// What PD knows of a region when it checks it.
#[derive(Debug, Clone)]
pub(crate) struct Stat {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    pub keys: u64,
    pub size: u64,
    /// When it last split (or was split off).
    pub split_at: Option<Instant>,
}

/// The checker's settings and clock.
pub(crate) struct Rules<'a> {
    pub merge: MergeLimits,
    /// The stores' split limits (TiKV's defaults where none are set).
    pub split_keys: SplitLimit,
    pub split_size: SplitLimit,
    pub now: Instant,
    /// When PD started.
    pub started: Instant,
    /// Whether a boundary must stay (a keyspace's).
    pub fixed: &'a dyn Fn(&[u8]) -> bool,
}

/// The least size PD lets a merge target reach, 500 MiB, and how many region maxima beyond it.
const MAX_TARGET_SIZE: u64 = 500 << 20;
const MAX_TARGET_FACTOR: u64 = 4;

impl Rules<'_> {
    fn recently_split(&self, stat: &Stat) -> bool {
        stat.split_at
            .is_some_and(|at| self.now < at + self.merge.split_merge_interval)
    }

    /// The index of the region PD merges region `i` into, if any.
    pub(crate) fn target(&self, stats: &[Stat], i: usize) -> Option<usize> {
        let region = stats.get(i)?;
        if self.now < self.started + self.merge.split_merge_interval
            || self.recently_split(region)
            || region.keys > self.merge.max_keys
            || region.size > self.merge.max_size
        {
            return None;
        }
        let next = i.checked_add(1).filter(|n| {
            !region.end.is_empty() && stats.get(*n).is_some_and(|s| s.start == region.end)
        });
        let prev = i
            .checked_sub(1)
            .filter(|p| !region.start.is_empty() && stats[*p].end == region.start);
        let eligible = |j: usize| {
            let boundary = if j > i { &region.end } else { &region.start };
            !self.recently_split(&stats[j]) && !(self.fixed)(boundary)
        };
        let mut target = next.filter(|n| eligible(*n));
        if let Some(p) = prev.filter(|p| eligible(*p)) {
            // PD compares with the next region even when that one is not eligible.
            if target.is_none() || next.is_some_and(|n| stats[p].size < stats[n].size) {
                target = Some(p);
            }
        }
        let target = target?;
        let biggest = MAX_TARGET_SIZE.max(self.split_size.max.saturating_mul(MAX_TARGET_FACTOR));
        let t = &stats[target];
        if t.size > biggest
            || splits_again(t.size + region.size, self.split_size, self.merge.max_size)
            || splits_again(t.keys + region.keys, self.split_keys, self.merge.max_keys)
        {
            return None;
        }
        Some(target)
    }
}

/// Whether a region of `total` would split again leaving a last piece (`total % split`) small
/// enough to be merged once more (PD's `CheckRegionSize` and `CheckRegionKeys`).
fn splits_again(total: u64, limit: SplitLimit, merge_max: u64) -> bool {
    if total < limit.max || limit.split == 0 {
        return false;
    }
    let rest = total % limit.split;
    rest != 0 && rest <= merge_max
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn stat(start: &str, end: &str, keys: u64) -> Stat {
        Stat {
            start: start.into(),
            end: end.into(),
            keys,
            size: keys * 10,
            split_at: None,
        }
    }

    fn layout(keys: &[u64]) -> Vec<Stat> {
        let bounds = ["", "b", "c", "d", "e", "f", "g"];
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                let end = if i + 1 == keys.len() {
                    ""
                } else {
                    bounds[i + 1]
                };
                stat(bounds[i], end, *k)
            })
            .collect()
    }

    fn rules(now: Instant, fixed: &dyn Fn(&[u8]) -> bool) -> Rules<'_> {
        Rules {
            merge: MergeLimits {
                max_keys: 2,
                max_size: 1000,
                split_merge_interval: Duration::ZERO,
            },
            split_keys: SplitLimit { max: 10, split: 7 },
            split_size: SplitLimit {
                max: 1 << 30,
                split: 1 << 29,
            },
            now,
            started: now,
            fixed,
        }
    }

    const NONE: &dyn Fn(&[u8]) -> bool = &|_| false;

    #[test]
    fn a_small_region_merges_into_its_next_neighbour_or_a_smaller_previous_one() {
        let r = rules(Instant::now(), NONE);
        let stats = layout(&[5, 1, 3]);
        assert_eq!(
            r.target(&stats, 1),
            Some(2),
            "next (3 keys) is smaller than 5"
        );
        let stats = layout(&[2, 1, 3]);
        assert_eq!(r.target(&stats, 1), Some(0), "the previous one is smaller");
        assert_eq!(
            r.target(&stats, 0),
            Some(1),
            "the first region has no previous"
        );
        assert_eq!(r.target(&stats, 2), None, "3 keys is not small");
        assert_eq!(r.target(&layout(&[1]), 0), None, "no neighbour");
        // Only the source must be small: a big neighbour takes it.
        assert_eq!(r.target(&layout(&[9, 0]), 1), Some(0));
    }

    #[test]
    fn recent_splits_and_a_young_pd_hold_merges_back() {
        // Ahead of the clock, so that going back two minutes cannot underflow.
        let now = Instant::now() + Duration::from_secs(600);
        let mut r = rules(now, NONE);
        r.merge.split_merge_interval = Duration::from_secs(60);
        r.started = now - Duration::from_secs(120);
        let mut stats = layout(&[1, 1, 1]);
        assert_eq!(r.target(&stats, 1), Some(2));
        stats[1].split_at = Some(now - Duration::from_secs(30));
        assert_eq!(r.target(&stats, 1), None, "split 30 s ago");
        assert_eq!(
            r.target(&stats, 0),
            None,
            "its only neighbour split recently"
        );
        assert_eq!(
            r.target(&stats, 2),
            None,
            "the other neighbour has none else"
        );
        stats[1].split_at = Some(now - Duration::from_secs(61));
        assert_eq!(r.target(&stats, 1), Some(2));
        r.started = now - Duration::from_secs(59);
        assert_eq!(r.target(&stats, 1), None, "PD started 59 s ago");
    }

    #[test]
    fn fixed_boundaries_are_never_merged_away() {
        let fixed = |k: &[u8]| k == b"c";
        let r = rules(Instant::now(), &fixed);
        let stats = layout(&[1, 1, 1]);
        assert_eq!(r.target(&stats, 1), Some(0), "not across c");
        assert_eq!(r.target(&stats, 2), None);
    }

    #[test]
    fn no_merge_that_would_split_again_into_a_mergeable_piece() {
        let r = rules(Instant::now(), NONE);
        // 1 + 9 = 10 keys reach the maximum: split 7 + 3, and 3 > 2 merges no more.
        assert_eq!(r.target(&layout(&[1, 9]), 0), Some(1));
        // 2 + 7 = 9: no split at all.
        assert_eq!(r.target(&layout(&[2, 7]), 0), Some(1));
        // 1 + 15 = 16 = 7 + 7 + 2: the 2 would be merged again.
        assert_eq!(r.target(&layout(&[1, 15]), 0), None);
        // 0 + 14: 14 % 7 == 0, every piece full.
        assert_eq!(r.target(&layout(&[0, 14]), 0), Some(1));
    }

    #[test]
    fn splits_again_follows_pd() {
        let limit = SplitLimit { max: 10, split: 7 };
        assert!(!splits_again(9, limit, 5));
        assert!(splits_again(10, limit, 3));
        assert!(!splits_again(10, limit, 2));
        assert!(!splits_again(14, limit, 6));
        assert!(!splits_again(100, SplitLimit { max: 10, split: 0 }, 5));
    }
}
