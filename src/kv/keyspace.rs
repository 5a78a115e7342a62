//! API v2 keyspaces: every key carries a 4-byte prefix.
//!
//! In API v2 a key starts with a mode byte (`'r'` for raw data, `'x'` for transactional data)
//! followed by the keyspace id as 3 big-endian bytes. A client bound to a keyspace adds the
//! prefix to every key it sends, gives open-ended ranges the keyspace's end (the prefix of the
//! next keyspace id), and strips the prefix from every key it receives.
//!
//! ```
//! use tikv_client::kv::keyspace::{KeyMode, Keyspace};
//! let ks = Keyspace::new(KeyMode::Raw, 1).unwrap();
//! assert_eq!(ks.encode_key(b"k"), b"r\x00\x00\x01k");
//! assert_eq!(ks.decode_key(b"r\x00\x00\x01k").unwrap(), b"k");
//! // An unbounded end becomes the start of the next keyspace.
//! assert_eq!(ks.encode_range(b"", b"").1, b"r\x00\x00\x02");
//! ```

use crate::{Error, Result};

/// The largest keyspace id: ids are 3 bytes.
pub const MAX_KEYSPACE_ID: u32 = 0xFF_FFFF;

/// Which kind of data a key belongs to in API v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyMode {
    /// Raw KV data: prefix byte `'r'`.
    Raw,
    /// Transactional data: prefix byte `'x'`.
    Txn,
}

impl KeyMode {
    /// The mode byte.
    pub fn prefix_byte(self) -> u8 {
        match self {
            KeyMode::Raw => b'r',
            KeyMode::Txn => b'x',
        }
    }
}

/// A keyspace's key prefix for one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keyspace {
    mode: KeyMode,
    id: u32,
}

impl Keyspace {
    /// The prefix for keyspace `id`; fails if the id does not fit in 3 bytes.
    pub fn new(mode: KeyMode, id: u32) -> Result<Self> {
        if id > MAX_KEYSPACE_ID {
            return Err(Error::InvalidArgument(format!(
                "keyspace id {id} exceeds the maximum {MAX_KEYSPACE_ID}"
            )));
        }
        Ok(Keyspace { mode, id })
    }

    /// The keyspace id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The mode.
    pub fn mode(&self) -> KeyMode {
        self.mode
    }

    /// The 4-byte prefix of every key in the keyspace.
    pub fn prefix(&self) -> [u8; 4] {
        let id = self.id.to_be_bytes();
        [self.mode.prefix_byte(), id[1], id[2], id[3]]
    }

    /// The first key after the keyspace: the prefix as a 4-byte integer, plus one. For the
    /// last id of a mode this is the next mode byte followed by zeros.
    pub fn end(&self) -> [u8; 4] {
        let next = u32::from_be_bytes(self.prefix()) + 1;
        next.to_be_bytes()
    }

    /// The key as stored: prefix followed by `key`.
    pub fn encode_key(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + key.len());
        out.extend_from_slice(&self.prefix());
        out.extend_from_slice(key);
        out
    }

    /// A half-open user range `[start, end)` (an empty end meaning unbounded) as stored. The
    /// result always has an explicit end, as API v2 servers require.
    pub fn encode_range(&self, start: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let end = if end.is_empty() {
            self.end().to_vec()
        } else {
            self.encode_key(end)
        };
        (self.encode_key(start), end)
    }

    /// Strips the prefix from a key received from the server; fails for a key of another
    /// keyspace or mode.
    pub fn decode_key<'a>(&self, key: &'a [u8]) -> Result<&'a [u8]> {
        key.strip_prefix(&self.prefix()[..]).ok_or_else(|| {
            Error::UnexpectedResponse(format!(
                "key {} is outside keyspace {} ({:?})",
                key.iter().map(|b| format!("{b:02X}")).collect::<String>(),
                self.id,
                self.mode
            ))
        })
    }

    /// Maps a stored key range (for example a region's, after memcomparable decoding) to the
    /// user range it covers inside this keyspace, or `None` if they do not overlap. Empty bounds
    /// mean unbounded on both sides.
    pub fn clamp_range(&self, start: &[u8], end: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let prefix = self.prefix();
        let ks_end = self.end();
        if (!end.is_empty() && end <= &prefix[..]) || start >= &ks_end[..] {
            return None;
        }
        let user_start = if start <= &prefix[..] {
            Vec::new()
        } else {
            start[4..].to_vec()
        };
        let user_end = if end.is_empty() || end >= &ks_end[..] {
            Vec::new()
        } else {
            end[4..].to_vec()
        };
        Some((user_start, user_end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_ends() {
        let raw = Keyspace::new(KeyMode::Raw, 0x010203).unwrap();
        assert_eq!(raw.prefix(), [b'r', 1, 2, 3]);
        assert_eq!(raw.end(), [b'r', 1, 2, 4]);
        let txn = Keyspace::new(KeyMode::Txn, 0).unwrap();
        assert_eq!(txn.prefix(), *b"x\0\0\0");
        let last = Keyspace::new(KeyMode::Raw, MAX_KEYSPACE_ID).unwrap();
        assert_eq!(last.end(), [b's', 0, 0, 0]);
        assert!(Keyspace::new(KeyMode::Raw, MAX_KEYSPACE_ID + 1).is_err());
    }

    #[test]
    fn keys_round_trip_and_foreign_keys_fail() {
        let ks = Keyspace::new(KeyMode::Txn, 7).unwrap();
        let stored = ks.encode_key(b"user");
        assert_eq!(ks.decode_key(&stored).unwrap(), b"user");
        let other = Keyspace::new(KeyMode::Txn, 8).unwrap();
        assert!(other.decode_key(&stored).is_err());
        let raw = Keyspace::new(KeyMode::Raw, 7).unwrap();
        assert!(raw.decode_key(&stored).is_err());
        assert!(ks.decode_key(b"x\0").is_err(), "short keys fail");
    }

    #[test]
    fn ranges_always_get_an_explicit_end() {
        let ks = Keyspace::new(KeyMode::Raw, 1).unwrap();
        assert_eq!(
            ks.encode_range(b"a", b"b"),
            (b"r\0\0\x01a".to_vec(), b"r\0\0\x01b".to_vec())
        );
        assert_eq!(
            ks.encode_range(b"", b""),
            (b"r\0\0\x01".to_vec(), b"r\0\0\x02".to_vec())
        );
    }

    #[test]
    fn region_ranges_clamp_to_the_keyspace() {
        let ks = Keyspace::new(KeyMode::Raw, 1).unwrap();
        // A region covering everything covers the whole keyspace.
        assert_eq!(ks.clamp_range(b"", b""), Some((vec![], vec![])));
        // A region inside the keyspace.
        assert_eq!(
            ks.clamp_range(b"r\0\0\x01a", b"r\0\0\x01m"),
            Some((b"a".to_vec(), b"m".to_vec()))
        );
        // Straddling the keyspace start and end.
        assert_eq!(
            ks.clamp_range(b"r\0\0\0zz", b"r\0\0\x01m"),
            Some((vec![], b"m".to_vec()))
        );
        assert_eq!(
            ks.clamp_range(b"r\0\0\x01m", b"r\0\0\x05"),
            Some((b"m".to_vec(), vec![]))
        );
        // Entirely before or after.
        assert_eq!(ks.clamp_range(b"", b"r\0\0\x01"), None);
        assert_eq!(ks.clamp_range(b"r\0\0\x02", b""), None);
    }
}
