use std::fmt;
use std::ops::Deref;

/// A key: an arbitrary byte string, ordered bytewise.
///
/// Build one from a `&str`, `String`, `&[u8]`, `[u8; N]` or `Vec<u8>`:
///
/// ```
/// use tikv_client::Key;
/// let a = Key::from("user/1");
/// let b: Key = b"user/2".to_vec().into();
/// assert!(a < b);
/// assert_eq!(a.as_ref(), b"user/1");
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Vec<u8>);

/// A value: an arbitrary byte string.
pub type Value = Vec<u8>;

impl Key {
    /// The empty key. As the start of a range it means "from the first key".
    pub const EMPTY: Key = Key(Vec::new());

    /// Whether the key has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of bytes in the key.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The smallest key greater than this one: the key followed by a zero byte.
    pub fn next_key(&self) -> Key {
        let mut v = Vec::with_capacity(self.0.len() + 1);
        v.extend_from_slice(&self.0);
        v.push(0);
        Key(v)
    }

    /// The key's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for Key {
    fn from(v: Vec<u8>) -> Self {
        Key(v)
    }
}

impl From<&[u8]> for Key {
    fn from(v: &[u8]) -> Self {
        Key(v.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for Key {
    fn from(v: &[u8; N]) -> Self {
        Key(v.to_vec())
    }
}

impl<const N: usize> From<[u8; N]> for Key {
    fn from(v: [u8; N]) -> Self {
        Key(v.to_vec())
    }
}

impl From<String> for Key {
    fn from(v: String) -> Self {
        Key(v.into_bytes())
    }
}

impl From<&str> for Key {
    fn from(v: &str) -> Self {
        Key(v.as_bytes().to_vec())
    }
}

impl From<&String> for Key {
    fn from(v: &String) -> Self {
        Key(v.as_bytes().to_vec())
    }
}

impl From<&Key> for Key {
    fn from(v: &Key) -> Self {
        v.clone()
    }
}

impl From<Key> for Vec<u8> {
    fn from(k: Key) -> Self {
        k.0
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    /// Printable ASCII keys print as text, others as upper-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_empty() && self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            write!(f, "Key(\"{}\")", String::from_utf8_lossy(&self.0))
        } else {
            f.write_str("Key(0x")?;
            self.0.iter().try_for_each(|b| write!(f, "{b:02X}"))?;
            f.write_str(")")
        }
    }
}

/// A key and its value.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KvPair {
    /// The key.
    pub key: Key,
    /// The value.
    pub value: Value,
}

impl KvPair {
    /// Makes a pair from anything that converts into a key and a value.
    pub fn new(key: impl Into<Key>, value: impl Into<Value>) -> Self {
        KvPair {
            key: key.into(),
            value: value.into(),
        }
    }

    /// The key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Splits the pair.
    pub fn into_parts(self) -> (Key, Value) {
        (self.key, self.value)
    }
}

impl<K: Into<Key>, V: Into<Value>> From<(K, V)> for KvPair {
    fn from((k, v): (K, V)) -> Self {
        KvPair::new(k, v)
    }
}

impl fmt::Debug for KvPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KvPair({:?}, {} bytes)", self.key, self.value.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_agree() {
        let expected = Key(b"abc".to_vec());
        assert_eq!(Key::from("abc"), expected);
        assert_eq!(Key::from(String::from("abc")), expected);
        assert_eq!(Key::from(&b"abc"[..]), expected);
        assert_eq!(Key::from(b"abc"), expected);
        assert_eq!(Key::from(*b"abc"), expected);
        assert_eq!(Key::from(b"abc".to_vec()), expected);
        assert_eq!(Vec::<u8>::from(expected.clone()), b"abc".to_vec());
    }

    #[test]
    fn keys_order_bytewise_and_next_key_is_the_successor() {
        let a = Key::from("a");
        assert!(Key::EMPTY < a);
        assert!(a < Key::from("a\0"));
        assert_eq!(a.next_key(), Key::from(b"a\0"));
        assert!(a.next_key() < Key::from("aa"));
        assert!(Key::from(vec![0xFF]) > Key::from("zzz"));
    }

    #[test]
    fn debug_prints_text_or_hex() {
        assert_eq!(format!("{:?}", Key::from("k 1")), "Key(\"k 1\")");
        assert_eq!(format!("{:?}", Key::from(vec![0, 0xFE])), "Key(0x00FE)");
        assert_eq!(format!("{:?}", Key::EMPTY), "Key(0x)");
        assert_eq!(
            format!("{:?}", KvPair::new("k", "vv")),
            "KvPair(Key(\"k\"), 2 bytes)"
        );
    }

    #[test]
    fn pairs_from_tuples() {
        let p: KvPair = ("k", "v").into();
        assert_eq!(p.key(), &Key::from("k"));
        assert_eq!(p.value(), b"v");
        assert_eq!(p.into_parts(), (Key::from("k"), b"v".to_vec()));
    }
}
