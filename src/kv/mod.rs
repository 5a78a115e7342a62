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
