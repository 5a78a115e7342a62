//! Raw KV storage: one ordered map per column family, values with an optional expiry in Unix
//! seconds (spec 5). Keys are the keys clients send (with their API v2 prefix, if any).

use super::key_bounds;
use std::collections::{BTreeMap, HashMap};

/// A stored raw value.
#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    /// Unix seconds after which the value is invisible; `None` = no TTL.
    expire_at: Option<u64>,
}

impl Entry {
    fn visible(&self, now: u64) -> bool {
        self.expire_at.is_none_or(|t| t > now)
    }
}

/// The raw column families.
#[derive(Debug, Default)]
pub(crate) struct RawStore {
    cfs: HashMap<String, BTreeMap<Vec<u8>, Entry>>,
}

/// The column-family names TiKV accepts in API v1 ("" means default).
pub(crate) fn normalize_cf(cf: &str) -> Option<&'static str> {
    match cf {
        "" | "default" => Some("default"),
        "lock" => Some("lock"),
        "write" => Some("write"),
        _ => None,
    }
}

impl RawStore {
    fn cf(&mut self, cf: &str) -> &mut BTreeMap<Vec<u8>, Entry> {
        self.cfs.entry(cf.to_owned()).or_default()
    }

    pub(crate) fn get(&self, cf: &str, key: &[u8], now: u64) -> Option<&[u8]> {
        self.cfs
            .get(cf)?
            .get(key)
            .filter(|e| e.visible(now))
            .map(|e| &e.value[..])
    }

    pub(crate) fn put(&mut self, cf: &str, key: Vec<u8>, value: Vec<u8>, ttl: u64, now: u64) {
        let expire_at = (ttl > 0).then(|| now.saturating_add(ttl));
        self.cf(cf).insert(key, Entry { value, expire_at });
    }

    pub(crate) fn delete(&mut self, cf: &str, key: &[u8]) {
        self.cf(cf).remove(key);
    }

    /// Deletes `[start, end)`; an empty end is unbounded.
    pub(crate) fn delete_range(&mut self, cf: &str, start: &[u8], end: &[u8]) {
        let Some(bounds) = key_bounds(start, end) else {
            return;
        };
        let map = self.cf(cf);
        let doomed: Vec<Vec<u8>> = map
            .range::<[u8], _>(bounds)
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            map.remove(&k);
        }
    }

    /// Calls `visit` with the key and size (key and value bytes) of every stored pair from
    /// `from` on, expired ones too (TiKV keeps them until compaction), column family by column
    /// family in key order, going on to the next family when `visit` returns false.
    pub(crate) fn visit_from(&self, from: &[u8], mut visit: impl FnMut(&[u8], u64) -> bool) {
        for map in self.cfs.values() {
            for (key, entry) in
                map.range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
            {
                if !visit(key, (key.len() + entry.value.len()) as u64) {
                    break;
                }
            }
        }
    }

    /// Remaining TTL seconds: `None` if absent or expired, `Some(0)` without TTL.
    pub(crate) fn ttl(&self, cf: &str, key: &[u8], now: u64) -> Option<u64> {
        let e = self.cfs.get(cf)?.get(key).filter(|e| e.visible(now))?;
        Some(e.expire_at.map_or(0, |t| t - now))
    }

    /// Visible pairs in `[lower, upper)` (empty upper = unbounded), ascending or descending,
    /// at most `limit`.
    pub(crate) fn scan(
        &self,
        cf: &str,
        lower: &[u8],
        upper_key: &[u8],
        limit: usize,
        reverse: bool,
        now: u64,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let (Some(map), Some(bounds)) = (self.cfs.get(cf), key_bounds(lower, upper_key)) else {
            return Vec::new();
        };
        let range = map.range::<[u8], _>(bounds);
        let visible =
            |(k, e): (&Vec<u8>, &Entry)| e.visible(now).then(|| (k.clone(), e.value.clone()));
        if reverse {
            range.rev().filter_map(visible).take(limit).collect()
        } else {
            range.filter_map(visible).take(limit).collect()
        }
    }
}

/// CRC-64/XZ (ECMA-182 polynomial, reflected, all-ones init and final XOR), as TiKV's
/// RawChecksum computes it.
pub(crate) fn crc64(parts: &[&[u8]]) -> u64 {
    const POLY: u64 = 0xC96C_5795_D787_0F42;
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u64;
            for _ in 0..8 {
                c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            }
            *slot = c;
        }
        t
    });
    let mut crc = !0u64;
    for part in parts {
        for b in *part {
            crc = table[((crc ^ u64::from(*b)) & 0xFF) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_matches_the_xz_check_values() {
        assert_eq!(crc64(&[b"123456789"]), 0x995d_c9bb_df19_39fa);
        assert_eq!(crc64(&[b"hello world!"]), 0x8483_c0fa_3260_7d61);
        assert_eq!(crc64(&[b"hello ", b"world!"]), crc64(&[b"hello world!"]));
    }

    #[test]
    fn ttl_hides_expired_values() {
        let mut s = RawStore::default();
        s.put("default", b"k".to_vec(), b"v".to_vec(), 10, 100);
        s.put("default", b"p".to_vec(), b"w".to_vec(), 0, 100);
        assert_eq!(s.get("default", b"k", 109), Some(&b"v"[..]));
        assert_eq!(s.ttl("default", b"k", 105), Some(5));
        assert_eq!(s.get("default", b"k", 110), None);
        assert_eq!(s.ttl("default", b"k", 110), None);
        assert_eq!(s.ttl("default", b"p", 1_000_000), Some(0));
        assert_eq!(s.scan("default", b"", b"", 10, false, 110).len(), 1);
    }

    #[test]
    fn scans_and_delete_ranges() {
        let mut s = RawStore::default();
        for k in ["a", "b", "c", "d"] {
            s.put("default", k.into(), k.into(), 0, 0);
        }
        let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(s.scan("default", b"b", b"d", 10, false, 0)),
            vec![b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(
            keys(s.scan("default", b"a", b"d", 2, true, 0)),
            vec![b"c".to_vec(), b"b".to_vec()]
        );
        assert!(
            s.scan("write", b"", b"", 10, false, 0).is_empty(),
            "column families are separate"
        );
        s.delete_range("default", b"b", b"");
        assert_eq!(
            keys(s.scan("default", b"", b"", 10, false, 0)),
            vec![b"a".to_vec()]
        );
    }
}
