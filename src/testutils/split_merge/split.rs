//! TiKV's split checkers (raftstore `coprocessor/split_check/size.rs` and `keys.rs`) as pure
//! functions over a region's entries in key order.
//!
//! A checker runs only when the region's total (bytes, or keys) reached its maximum. It then
//! walks the entries accumulating their weight; at the first entry that takes the sum past the
//! split threshold, that entry's key becomes a split key and the sum starts again (from the
//! entry's own weight when the sum before it was exactly the threshold, else from zero, as
//! TiKV does). At the end the last split key is dropped when the piece after it plus one
//! threshold stays below the maximum, so that no piece is left much smaller than the others.
//! Split keys are user keys: an entry's timestamp is not part of its key here (TiKV's split
//! observer strips it), so every version of a key lands in the same region, and a split key
//! equal to the region's start or to the previous split key is dropped.

use super::SplitLimit;

/// One stored entry as the split checker sees it: a raw pair, a transactional write record
/// (one per version) or a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The internal key (region boundaries live in this key space), without a timestamp.
    pub key: Vec<u8>,
    /// Whether the key checker counts it: TiKV counts write-CF entries, the commit versions.
    pub counted: bool,
    /// Its key and value bytes.
    pub size: u64,
}

/// The keys to split a region starting at `start` at: the size checker's if it finds any,
/// else the key checker's (TiKV consults them in that order). Empty when neither applies.
pub(crate) fn split_keys(
    entries: &[Entry],
    start: &[u8],
    size: Option<SplitLimit>,
    keys: Option<SplitLimit>,
) -> Vec<Vec<u8>> {
    let by_size = size.map(|limit| check(entries, start, limit, |e| Some(e.size)));
    let by_keys = || keys.map(|limit| check(entries, start, limit, |e| e.counted.then_some(1)));
    match by_size {
        Some(found) if !found.is_empty() => found,
        _ => by_keys().unwrap_or_default(),
    }
}

/// One checker: `weigh` gives an entry's weight, `None` for entries it skips.
fn check(
    entries: &[Entry],
    start: &[u8],
    limit: SplitLimit,
    weigh: impl Fn(&Entry) -> Option<u64>,
) -> Vec<Vec<u8>> {
    let total: u64 = entries.iter().filter_map(&weigh).sum();
    if total < limit.max {
        return Vec::new();
    }
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut current = 0u64;
    for entry in entries {
        let Some(weight) = weigh(entry) else {
            continue;
        };
        current = current.saturating_add(weight);
        if current > limit.split {
            keys.push(&entry.key);
            current = if current - weight == limit.split {
                weight
            } else {
                0
            };
        }
    }
    if current.saturating_add(limit.split) < limit.max {
        keys.pop();
    }
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(keys.len());
    for key in keys {
        if key > start && out.last().is_none_or(|last| last.as_slice() != key) {
            out.push(key.to_vec());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, size: u64) -> Entry {
        Entry {
            key: key.as_bytes().to_vec(),
            counted: true,
            size,
        }
    }

    fn numbered(range: std::ops::Range<u32>, size: u64) -> Vec<Entry> {
        range.map(|i| entry(&format!("{i:04}"), size)).collect()
    }

    fn limit(max: u64, split: u64) -> Option<SplitLimit> {
        Some(SplitLimit { max, split })
    }

    fn strings(keys: Vec<Vec<u8>>) -> Vec<String> {
        keys.into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect()
    }

    #[test]
    fn keys_split_where_the_threshold_is_passed_once_the_maximum_is_reached() {
        let keys = limit(10, 7);
        assert!(split_keys(&numbered(0..9, 1), b"", None, keys).is_empty());
        // 10 keys: the 8th starts a piece, and the last piece (3) plus 7 reaches the maximum.
        assert_eq!(
            strings(split_keys(&numbered(0..10, 1), b"", None, keys)),
            ["0007"]
        );
        assert_eq!(
            strings(split_keys(&numbered(0..30, 1), b"", None, keys)),
            ["0007", "0014", "0021"],
            "0028 would leave a piece of 2, and 2 + 7 < 10"
        );
        // 27 keys: the piece after 0021 would hold 6, and 6 + 7 >= 10 keeps it; with 23 keys
        // it would hold 2 and is joined to the one before.
        assert_eq!(
            strings(split_keys(&numbered(0..27, 1), b"", None, keys)),
            ["0007", "0014", "0021"]
        );
        assert_eq!(
            strings(split_keys(&numbered(0..23, 1), b"", None, keys)),
            ["0007", "0014"]
        );
    }

    #[test]
    fn keys_count_commit_versions_only() {
        let mut entries = numbered(0..12, 1);
        for e in entries.iter_mut().step_by(2) {
            e.counted = false;
        }
        assert!(
            split_keys(&entries, b"", None, limit(10, 7)).is_empty(),
            "6 counted entries"
        );
        assert_eq!(
            strings(split_keys(&entries, b"", None, limit(4, 3))),
            ["0007"]
        );
    }

    #[test]
    fn size_splits_as_tikv_with_ten_byte_entries() {
        // TiKV's own size-checker case: max 100, split 60, entries of 10 bytes.
        let size = limit(100, 60);
        assert!(split_keys(&numbered(0..7, 10), b"", size, None).is_empty());
        assert_eq!(
            strings(split_keys(&numbered(0..11, 10), b"", size, None)),
            ["0006"]
        );
        assert_eq!(
            strings(split_keys(&numbered(0..19, 10), b"", size, None)),
            ["0006", "0012"]
        );
    }

    #[test]
    fn size_restarts_from_zero_unless_the_threshold_was_met_exactly() {
        // 7-byte entries, split 10: the 2nd entry passes it (14) after 7, so the sum restarts
        // at 0 and the 4th entry is the next split key; the 6th would leave an empty piece.
        let entries = numbered(0..6, 7);
        assert_eq!(
            strings(split_keys(&entries, b"", limit(20, 10), None)),
            ["0001", "0003"]
        );
    }

    #[test]
    fn size_goes_first_and_keys_decide_when_size_finds_nothing() {
        let entries = numbered(0..10, 10);
        let by_size = split_keys(&entries, b"", limit(100, 50), limit(10, 3));
        assert_eq!(strings(by_size), ["0005"]);
        let by_keys = split_keys(&entries, b"", limit(1000, 500), limit(10, 3));
        assert_eq!(strings(by_keys), ["0003", "0006"]);
    }

    #[test]
    fn versions_of_a_key_stay_together() {
        // Five versions of "b": the split key is "b" once, never in the middle of its versions.
        let mut entries = vec![entry("a", 1)];
        entries.extend((0..5).map(|_| entry("b", 1)));
        entries.extend([entry("c", 1), entry("d", 1)]);
        assert_eq!(strings(split_keys(&entries, b"", None, limit(8, 2))), ["b"]);
        // A split key at the region's start is no split.
        assert!(split_keys(&entries[1..6], b"b", None, limit(5, 2)).is_empty());
    }
}
