//! Keys, values and ranges, and the byte encodings TiKV applies to them.
//!
//! * [`Key`], [`Value`], [`KvPair`]: owned bytes with conversions from strings, byte slices and
//!   vectors. Keys order as bytes, as in TiKV.
//! * [`BoundRange`]: a key range built from any Rust range (`"a".."z"`, `"a"..`, `..=b"k"`,
//!   `..`), lowered to TiKV's half-open `[start, end)` with an empty end meaning "no bound".
//! * [`memcomparable`]: TiKV's memcomparable byte encoding, in which region boundaries of
//!   transactional (and all API v2) data are expressed.
//! * [`keyspace`]: API v2 key prefixes (`'r'`/`'x'` plus a 3-byte keyspace id).
//!
//! Everything here is pure: no I/O, no async.

mod key;
pub mod keyspace;
pub mod memcomparable;
mod range;

pub use key::{Key, KvPair, Value};
pub use range::BoundRange;

/// TiKV's hash of a key (`Key::gen_hash`, farmhash `Fingerprint64` of the key as sent), which
/// names keys in deadlock reports.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    farmhash::fingerprint64(key)
}

#[cfg(test)]
mod tests {
    use super::key_hash;

    #[test]
    fn key_hashes_are_farmhash_fingerprint64() {
        // Values from Google's C++ farmhash (`util::Fingerprint64`, through pyfarmhash 0.5.1).
        assert_eq!(key_hash(b""), 11160318154034397263);
        assert_eq!(key_hash(b"hello"), 13009744463427800296);
        assert_eq!(key_hash(b"tikv-key-0001"), 3185754808701784836);
        assert_eq!(
            key_hash(b"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789"),
            16509776501858429195
        );
    }
}
