use std::ops::{
    Bound, Range, RangeBounds, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive,
};

use super::Key;
use crate::{Error, Result};

/// A range of keys with any combination of bounds.
///
/// Every Rust range type converts into it, with any key type that converts into [`Key`]:
///
/// ```
/// use tikv_client::{BoundRange, Key};
/// let r: BoundRange = ("a".."m").into();
/// assert_eq!(r.to_half_open().unwrap(), (Key::from("a"), Key::from("m")));
///
/// // An inclusive end becomes the next key; an unbounded end becomes the empty key.
/// let r: BoundRange = ("a"..="m").into();
/// assert_eq!(r.to_half_open().unwrap(), (Key::from("a"), Key::from(b"m\0")));
/// let r: BoundRange = ("a"..).into();
/// assert_eq!(r.to_half_open().unwrap(), (Key::from("a"), Key::EMPTY));
///
/// // An inverted range is an error, not an empty result.
/// let r: BoundRange = ("z".."a").into();
/// assert!(r.to_half_open().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BoundRange {
    /// The lower bound.
    pub from: Bound<Key>,
    /// The upper bound. `Excluded(Key::EMPTY)` is read as "no bound", as TiKV does.
    pub to: Bound<Key>,
}

impl BoundRange {
    /// A range from its two bounds.
    pub fn new(from: Bound<Key>, to: Bound<Key>) -> Self {
        BoundRange { from, to }
    }

    /// Every key.
    pub fn all() -> Self {
        BoundRange::new(Bound::Unbounded, Bound::Unbounded)
    }

    /// The range as TiKV wants it: `[start, end)`, with an empty `end` meaning no upper bound.
    ///
    /// Fails with [`Error::InvalidArgument`] when the start lies after the end.
    pub fn to_half_open(&self) -> Result<(Key, Key)> {
        let start = match &self.from {
            Bound::Included(k) => k.clone(),
            Bound::Excluded(k) => k.next_key(),
            Bound::Unbounded => Key::EMPTY,
        };
        let end = match &self.to {
            Bound::Included(k) => k.next_key(),
            Bound::Excluded(k) => k.clone(),
            Bound::Unbounded => Key::EMPTY,
        };
        if !end.is_empty() && start > end {
            return Err(Error::InvalidArgument(format!(
                "inverted range: start {start:?} is after end {end:?}"
            )));
        }
        Ok((start, end))
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let lower = match &self.from {
            Bound::Included(k) => key >= k.as_ref(),
            Bound::Excluded(k) => key > k.as_ref(),
            Bound::Unbounded => true,
        };
        let upper = match &self.to {
            Bound::Excluded(k) if k.is_empty() => true,
            Bound::Included(k) => key <= k.as_ref(),
            Bound::Excluded(k) => key < k.as_ref(),
            Bound::Unbounded => true,
        };
        lower && upper
    }
}

impl RangeBounds<Key> for BoundRange {
    fn start_bound(&self) -> Bound<&Key> {
        self.from.as_ref()
    }

    fn end_bound(&self) -> Bound<&Key> {
        self.to.as_ref()
    }
}

impl<K: Into<Key>> From<Range<K>> for BoundRange {
    fn from(r: Range<K>) -> Self {
        BoundRange::new(
            Bound::Included(r.start.into()),
            Bound::Excluded(r.end.into()),
        )
    }
}

impl<K: Into<Key>> From<RangeInclusive<K>> for BoundRange {
    fn from(r: RangeInclusive<K>) -> Self {
        let (start, end) = r.into_inner();
        BoundRange::new(Bound::Included(start.into()), Bound::Included(end.into()))
    }
}

impl<K: Into<Key>> From<RangeFrom<K>> for BoundRange {
    fn from(r: RangeFrom<K>) -> Self {
        BoundRange::new(Bound::Included(r.start.into()), Bound::Unbounded)
    }
}

impl<K: Into<Key>> From<RangeTo<K>> for BoundRange {
    fn from(r: RangeTo<K>) -> Self {
        BoundRange::new(Bound::Unbounded, Bound::Excluded(r.end.into()))
    }
}

impl<K: Into<Key>> From<RangeToInclusive<K>> for BoundRange {
    fn from(r: RangeToInclusive<K>) -> Self {
        BoundRange::new(Bound::Unbounded, Bound::Included(r.end.into()))
    }
}

impl From<RangeFull> for BoundRange {
    fn from(_: RangeFull) -> Self {
        BoundRange::all()
    }
}

impl<K: Into<Key>> From<(Bound<K>, Bound<K>)> for BoundRange {
    fn from((from, to): (Bound<K>, Bound<K>)) -> Self {
        BoundRange::new(from.map(Into::into), to.map(Into::into))
    }
}

impl<K: Into<Key>> From<(K, K)> for BoundRange {
    /// `(start, end)` is `start..end`.
    fn from((start, end): (K, K)) -> Self {
        (start..end).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn half_open(r: impl Into<BoundRange>) -> (Key, Key) {
        r.into().to_half_open().unwrap()
    }

    #[test]
    fn every_rust_range_lowers_to_half_open() {
        let k = Key::from;
        assert_eq!(half_open("a".."c"), (k("a"), k("c")));
        assert_eq!(half_open("a"..="c"), (k("a"), k("c\0")));
        assert_eq!(half_open("a"..), (k("a"), Key::EMPTY));
        assert_eq!(half_open(.."c"), (Key::EMPTY, k("c")));
        assert_eq!(half_open(..="c"), (Key::EMPTY, k("c\0")));
        assert_eq!(half_open(..), (Key::EMPTY, Key::EMPTY));
        assert_eq!(
            half_open((Bound::Excluded("a"), Bound::Included("c"))),
            (k("a\0"), k("c\0"))
        );
        assert_eq!(half_open(("a", "c")), (k("a"), k("c")));
        assert_eq!(half_open(b"a".to_vec()..b"c".to_vec()), (k("a"), k("c")));
        assert_eq!(
            half_open(String::from("a")..String::from("c")),
            (k("a"), k("c"))
        );
    }

    #[test]
    fn inverted_ranges_are_rejected_and_empty_ones_allowed() {
        let err = BoundRange::from("c".."a").to_half_open().unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(m) if m.contains("inverted")));
        assert!(
            BoundRange::from((Bound::Excluded("a"), Bound::Excluded("a")))
                .to_half_open()
                .is_err()
        );
        assert_eq!(half_open("a".."a"), (Key::from("a"), Key::from("a")));
        // An empty end is "unbounded", never "before the start".
        assert!(BoundRange::from(Key::from("z")..Key::EMPTY)
            .to_half_open()
            .is_ok());
    }

    #[test]
    fn contains_respects_each_bound() {
        let r = BoundRange::from("b"..="d");
        assert!(!r.contains(b"a"));
        assert!(r.contains(b"b"));
        assert!(r.contains(b"d"));
        assert!(!r.contains(b"d\0"));
        let r = BoundRange::from((Bound::Excluded("b"), Bound::Excluded("d")));
        assert!(!r.contains(b"b") && r.contains(b"b\0") && !r.contains(b"d"));
        assert!(BoundRange::from(Key::from("b")..Key::EMPTY).contains(b"zzzz"));
        assert!(BoundRange::all().contains(b""));
    }
}
