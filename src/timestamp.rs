//! TSO timestamps: a physical part (milliseconds of PD's clock) and an 18-bit logical counter,
//! packed into one `u64` "version" as TiKV sees it.

use std::fmt;
use std::time::Duration;

/// The number of bits of the logical part.
pub const LOGICAL_BITS: u32 = 18;

/// A timestamp from PD's oracle.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Milliseconds since the Unix epoch, by PD's clock.
    pub physical: i64,
    /// The counter within the millisecond, below 2^18.
    pub logical: i64,
}

impl Timestamp {
    /// A timestamp from its parts.
    pub fn new(physical: i64, logical: i64) -> Self {
        Timestamp { physical, logical }
    }

    /// The packed form TiKV uses: `physical << 18 | logical`.
    pub fn version(&self) -> u64 {
        ((self.physical as u64) << LOGICAL_BITS) | (self.logical as u64 & ((1 << LOGICAL_BITS) - 1))
    }

    /// Unpacks a version.
    pub fn from_version(version: u64) -> Self {
        Timestamp {
            physical: (version >> LOGICAL_BITS) as i64,
            logical: (version & ((1 << LOGICAL_BITS) - 1)) as i64,
        }
    }

    /// The physical part as a duration since the Unix epoch.
    pub fn physical_time(&self) -> Duration {
        Duration::from_millis(self.physical.max(0) as u64)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Timestamp({}.{} = {})",
            self.physical,
            self.logical,
            self.version()
        )
    }
}

impl From<Timestamp> for u64 {
    fn from(ts: Timestamp) -> u64 {
        ts.version()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_and_order() {
        let a = Timestamp::new(1_700_000_000_000, 5);
        assert_eq!(Timestamp::from_version(a.version()), a);
        assert_eq!(a.version(), (1_700_000_000_000u64 << 18) | 5);
        assert!(Timestamp::new(1, 0).version() > Timestamp::new(0, (1 << 18) - 1).version());
        assert!(Timestamp::new(1, 2) < Timestamp::new(1, 3));
        assert_eq!(a.physical_time(), Duration::from_millis(1_700_000_000_000));
    }
}
