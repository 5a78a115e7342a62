//! Backoff: how long to wait before retrying, and when to give up.
//!
//! TiKV clients retry a lot (a region moved, a store is busy, a lock is held), so waiting is
//! named and budgeted as in client-go:
//!
//! * A [`BackoffKind`] names a reason to wait (`regionMiss`, `tikvServerBusy`, `txnLock`, ...)
//!   and carries client-go's base delay, cap and [`Jitter`] for it ([`BackoffConfig`]).
//! * A [`Backoffer`] belongs to one operation. It keeps one attempt counter per kind and a
//!   total sleep budget (20 s for a raw operation, 40 s for a prewrite, ...). When the budget
//!   is spent, it fails with [`Error::BackoffExhausted`], naming the kind that slept longest
//!   and the last error.
//! * An operation may also have a total deadline ([`Backoffer::with_timeout`]), which bounds
//!   the attempts as well as the sleeps: a sleep that would end past it fails at once with
//!   [`Error::DeadlineExceeded`], and the execution loop clips each attempt's RPC timeout to
//!   what is left of it.
//! * Forks of a backoffer (one per region group of a multi-region request) share the
//!   operation: its deadline, and whether some attempt failed after it may have reached the
//!   server ([`Backoffer::is_uncertain`]); [`Backoffer::absorb`] charges a fork's sleeps back
//!   to its parent.
//!
//! Policies decide, the runtime sleeps: [`Backoffer::next_delay`] only computes the delay, and
//! [`Backoffer::backoff`] sleeps it on a [`Runtime`], which tests replace with manual time.
//!
//! ```
//! use std::time::Duration;
//! use tikv_client::backoff::{BackoffKind, Backoffer};
//! use tikv_client::Error;
//!
//! let mut bo = Backoffer::new(Duration::from_millis(1000)).with_seed(7);
//! let cause = || Error::Pd("no leader".into());
//! // regionMiss: 2 ms, 4 ms, 8 ms, ... without jitter.
//! assert_eq!(bo.next_delay(BackoffKind::RegionMiss, cause()).unwrap(), Duration::from_millis(2));
//! assert_eq!(bo.next_delay(BackoffKind::RegionMiss, cause()).unwrap(), Duration::from_millis(4));
//! assert_eq!(bo.total_sleep(), Duration::from_millis(6));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::rt::{Instant, Runtime};
use crate::{Error, Result};

/// How a delay is randomised (the four modes of client-go's `config/retry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Jitter {
    /// Exactly `min(cap, base * 2^attempt)`.
    None,
    /// Uniform in `[0, v)` where `v = min(cap, base * 2^attempt)`.
    Full,
    /// Uniform in `[v/2, v)`.
    Equal,
    /// "Decorrelated": `min(cap, base + rand[0, 3 * last_sleep - base))`.
    Decorrelated,
}

/// A backoff shape: base delay, cap and jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackoffConfig {
    /// The delay before the first retry (clamped to at least 2 ms, as client-go does).
    pub base: Duration,
    /// The largest delay.
    pub cap: Duration,
    /// How the delay is randomised.
    pub jitter: Jitter,
}

impl BackoffConfig {
    /// A shape from base and cap in milliseconds.
    pub const fn from_millis(base: u64, cap: u64, jitter: Jitter) -> Self {
        BackoffConfig {
            base: Duration::from_millis(base),
            cap: Duration::from_millis(cap),
            jitter,
        }
    }

    /// The delay of attempt `attempt` (0-based), given the previous delay of this kind.
    pub fn delay(&self, attempt: u32, last: Duration, rng: &mut SplitMix64) -> Duration {
        let base = ms(self.base).max(2);
        let cap = ms(self.cap).max(base);
        let expo = || base.saturating_mul(1u64 << attempt.min(62)).min(cap);
        let millis = match self.jitter {
            Jitter::None => expo(),
            Jitter::Full => rng.below(expo()),
            Jitter::Equal => {
                let v = expo();
                v / 2 + rng.below(v / 2)
            }
            Jitter::Decorrelated => {
                let last = ms(last).max(base);
                cap.min(base + rng.below(last * 3 - base))
            }
        };
        Duration::from_millis(millis)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

macro_rules! kinds {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, $base:expr, $cap:expr, $jitter:ident; )*) => {
        /// The named reasons to back off, with client-go's delays (`config/retry/config.go`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum BackoffKind {
            $( $(#[$doc])* $variant, )*
        }

        impl BackoffKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [BackoffKind] = &[$(BackoffKind::$variant),*];

            /// The name client-go uses in logs and metrics.
            pub fn name(self) -> &'static str {
                match self { $( BackoffKind::$variant => $name, )* }
            }

            /// client-go's base, cap and jitter for this kind.
            pub fn config(self) -> BackoffConfig {
                match self {
                    $( BackoffKind::$variant => BackoffConfig::from_millis($base, $cap, Jitter::$jitter), )*
                }
            }
        }
    };
}

kinds! {
    /// An RPC to TiKV failed (connection error, timeout).
    TikvRpc => "tikvRPC", 100, 2000, Equal;
    /// An RPC to TiFlash failed.
    TiflashRpc => "tiflashRPC", 100, 2000, Equal;
    /// A lock is held by a live transaction.
    TxnLock => "txnLock", 100, 3000, Equal;
    /// A lock is held; fast variant used on reads (base is client-go's default `BackoffLockFast`).
    TxnLockFast => "txnLockFast", 10, 3000, Equal;
    /// An RPC to PD failed.
    PdRpc => "pdRPC", 500, 3000, Equal;
    /// The region cache was stale (region not found, epoch not match, key not in region).
    RegionMiss => "regionMiss", 2, 500, None;
    /// The region is being scheduled (no leader, read index not ready, merging).
    RegionScheduling => "regionScheduling", 2, 500, None;
    /// TiKV answered ServerIsBusy. Its sleep is excluded from the budget (up to 10 min).
    TikvServerBusy => "tikvServerBusy", 2000, 10000, Equal;
    /// TiFlash answered ServerIsBusy.
    TiflashServerBusy => "tiflashServerBusy", 2000, 10000, Equal;
    /// The store's disk is full.
    TikvDiskFull => "tikvDiskFull", 500, 5000, None;
    /// The region is in unsafe recovery.
    RegionRecoveryInProgress => "regionRecoveryInProgress", 100, 10000, Equal;
    /// The transaction of a lock's primary was not found yet.
    TxnNotFound => "txnNotFound", 2, 500, None;
    /// TiKV answered StaleCommand.
    StaleCommand => "staleCommand", 2, 1000, None;
    /// A new leader has not synced its max timestamp yet.
    MaxTsNotSynced => "maxTsNotSynced", 2, 500, None;
    /// The commit timestamp lags behind.
    CommitTsLag => "commitTSLag", 2, 500, None;
    /// The peer exists but is not initialised yet.
    RegionNotInitialized => "regionNotInitialized", 2, 1000, None;
    /// The peer is a witness.
    IsWitness => "isWitness", 1000, 10000, Equal;
}

impl BackoffKind {
    /// Whether sleeps of this kind are left out of the operation's budget (ServerIsBusy, up to
    /// [`MAX_EXCLUDED_SLEEP`]), as in client-go.
    pub fn excluded_from_budget(self) -> bool {
        matches!(
            self,
            BackoffKind::TikvServerBusy | BackoffKind::TiflashServerBusy
        )
    }
}

impl fmt::Display for BackoffKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The most ServerIsBusy sleep that is left out of a budget: 10 minutes.
pub const MAX_EXCLUDED_SLEEP: Duration = Duration::from_secs(600);

/// The budget of a raw KV operation (client-go's `rawkvMaxBackoff`): 20 s.
pub const RAW_OPERATION_BUDGET: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Default)]
struct KindState {
    attempts: u32,
    last: Duration,
    total: Duration,
}

/// The retry state of one operation: per-kind attempt counters and a total sleep budget.
/// Cloning forks it: the clone starts from the same counters and then counts on its own, but
/// shares the operation's deadline and uncertainty.
#[derive(Debug, Clone)]
pub struct Backoffer {
    budget: Duration,
    slept: Duration,
    excluded: Duration,
    kinds: Vec<(BackoffKind, KindState)>,
    rng: SplitMix64,
    operation: Arc<Operation>,
}

/// What every fork of one operation's backoffer shares.
#[derive(Debug, Default)]
struct Operation {
    /// When the operation must have finished, and the timeout it was computed from.
    deadline: Option<(Instant, Duration)>,
    /// Some attempt failed after possibly reaching the server.
    uncertain: AtomicBool,
}

impl Backoffer {
    /// A backoffer that may sleep `budget` in total. A zero budget allows no sleep at all:
    /// the first backoff fails.
    pub fn new(budget: Duration) -> Self {
        Backoffer {
            budget,
            slept: Duration::ZERO,
            excluded: Duration::ZERO,
            kinds: Vec::new(),
            rng: SplitMix64::from_entropy(),
            operation: Arc::default(),
        }
    }

    /// Gives the operation a total deadline, `timeout` after `now`: attempts and sleeps
    /// together must end by then.
    pub fn with_timeout(mut self, timeout: Duration, now: Instant) -> Self {
        let deadline = now.checked_add(timeout).map(|at| (at, timeout));
        self.operation = Arc::new(Operation {
            deadline,
            uncertain: AtomicBool::new(self.is_uncertain()),
        });
        self
    }

    /// A backoffer for the next phase of the same operation (a commit after its prewrite):
    /// a fresh `budget` and uncertainty, the same deadline.
    pub fn next_phase(&self, budget: Duration) -> Self {
        Backoffer {
            operation: Arc::new(Operation {
                deadline: self.operation.deadline,
                uncertain: AtomicBool::new(false),
            }),
            ..Backoffer::new(budget)
        }
    }

    /// A fork for side requests of the operation (resolving another transaction's lock):
    /// the same counters and deadline, but whether its attempts may have reached the server is
    /// its own, since their effect says nothing about the operation's own requests. Charge
    /// its sleep back with [`Backoffer::absorb`].
    pub fn detached(&self) -> Self {
        Backoffer {
            operation: Arc::new(Operation {
                deadline: self.operation.deadline,
                uncertain: AtomicBool::new(false),
            }),
            ..self.clone()
        }
    }

    /// Fixes the random sequence used for jitter, for reproducible delays.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = SplitMix64::new(seed);
        self
    }

    /// The total budget.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// How long this operation has slept so far, including excluded sleep.
    pub fn total_sleep(&self) -> Duration {
        self.slept
    }

    /// How much of the operation's deadline is left at `now` (`None`: no deadline).
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.operation
            .deadline
            .map(|(at, _)| at.saturating_duration_since(now))
    }

    /// The timeout the operation's deadline was set from, if it has one.
    pub fn timeout(&self) -> Option<Duration> {
        self.operation.deadline.map(|(_, timeout)| timeout)
    }

    /// The error for an operation whose deadline passed, after `last` (if any).
    pub fn deadline_exceeded(&self, last: Option<Error>) -> Error {
        if let Some(e) = &last {
            self.record_failure(e);
        }
        Error::DeadlineExceeded {
            timeout: self.timeout().unwrap_or_default(),
            last: last.map(Box::new),
            uncertain: self.is_uncertain(),
        }
    }

    /// Whether some attempt of the operation (in any fork) failed after it may have reached
    /// the server, so that it may have taken effect whatever later attempts answered.
    pub fn is_uncertain(&self) -> bool {
        self.operation.uncertain.load(Ordering::Acquire)
    }

    /// Records that an attempt may have reached the server without a definite answer.
    pub fn mark_uncertain(&self) {
        self.operation.uncertain.store(true, Ordering::Release);
    }

    /// Records what a failed attempt's error says about whether it may have taken effect
    /// (done by every backoff; call it for a failure that ends the operation at once).
    pub fn record_failure(&self, cause: &Error) {
        let maybe_sent = match cause {
            Error::Transport(_) | Error::Timeout { .. } | Error::Grpc { .. } => {
                cause.may_have_been_sent()
            }
            Error::Region(e) => e.undetermined_result.is_some(),
            _ => false,
        };
        if maybe_sent {
            self.mark_uncertain();
        }
    }

    /// Charges the sleeps of `fork` (a clone that retried on its own, such as one region
    /// group of a multi-region request) to this backoffer: forks sleep concurrently, so the
    /// longest one counts, and each kind continues from the fork that backed off most.
    pub fn absorb(&mut self, fork: &Backoffer) {
        self.slept = self.slept.max(fork.slept);
        self.excluded = self.excluded.max(fork.excluded);
        for (kind, theirs) in &fork.kinds {
            match self.kinds.iter_mut().find(|(k, _)| k == kind) {
                Some((_, ours)) if ours.attempts >= theirs.attempts => {}
                Some((_, ours)) => *ours = theirs.clone(),
                None => self.kinds.push((*kind, theirs.clone())),
            }
        }
    }

    /// How many times `kind` has backed off.
    pub fn attempts(&self, kind: BackoffKind) -> u32 {
        self.state(kind).map_or(0, |s| s.attempts)
    }

    /// The longest-sleeping kind so far and its total sleep.
    pub fn longest(&self) -> Option<(BackoffKind, Duration)> {
        self.kinds
            .iter()
            .max_by_key(|(_, s)| s.total)
            .map(|(k, s)| (*k, s.total))
    }

    /// The delay to wait before retrying after `cause`, recorded as slept; or, when the budget
    /// is already spent, [`Error::BackoffExhausted`] carrying `cause` and naming the
    /// longest-sleeping kind.
    pub fn next_delay(&mut self, kind: BackoffKind, cause: Error) -> Result<Duration> {
        self.record_failure(&cause);
        if self.slept.saturating_sub(self.excluded) >= self.budget {
            let (longest, _) = self.longest().unwrap_or((kind, Duration::ZERO));
            log::warn!(
                "backoff budget {:?} exhausted after {:?}; longest kind {longest}; last error: {cause}",
                self.budget,
                self.slept
            );
            return Err(Error::BackoffExhausted {
                kind: longest,
                total_sleep: self.slept,
                last: Box::new(cause),
                uncertain: self.is_uncertain(),
            });
        }
        let cfg = kind.config();
        let index = match self.kinds.iter().position(|(k, _)| *k == kind) {
            Some(i) => i,
            None => {
                self.kinds.push((kind, KindState::default()));
                self.kinds.len() - 1
            }
        };
        let state = &mut self.kinds[index].1;
        let delay = cfg.delay(state.attempts, state.last, &mut self.rng);
        state.attempts += 1;
        state.last = delay;
        state.total += delay;
        self.slept += delay;
        if kind.excluded_from_budget() {
            self.excluded = (self.excluded + delay).min(MAX_EXCLUDED_SLEEP);
        }
        log::debug!(
            "backoff {kind} #{} for {delay:?} (slept {:?} of {:?}): {cause}",
            state.attempts,
            self.slept,
            self.budget
        );
        Ok(delay)
    }

    /// Computes the delay as [`Backoffer::next_delay`] does, then sleeps it on `rt`; fails
    /// with [`Error::DeadlineExceeded`] instead when the sleep would end past the operation's
    /// deadline.
    pub async fn backoff(&mut self, rt: &Runtime, kind: BackoffKind, cause: Error) -> Result<()> {
        let last = self.operation.deadline.map(|_| cause.clone());
        let delay = self.next_delay(kind, cause)?;
        if let Some(left) = self.remaining(rt.now()) {
            if delay >= left {
                return Err(self.deadline_exceeded(last));
            }
        }
        rt.sleep(delay).await;
        Ok(())
    }

    fn state(&self, kind: BackoffKind) -> Option<&KindState> {
        self.kinds.iter().find(|(k, _)| *k == kind).map(|(_, s)| s)
    }
}

/// A small, fast pseudo-random generator (SplitMix64) for jitter. Not for cryptography.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// A generator seeded from the clock and a process-wide counter, or inside a simulation
    /// from the simulation's seed.
    pub fn from_entropy() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        if let Some(seed) = crate::rt::simulation::entropy() {
            return SplitMix64(seed);
        }
        let nanos = crate::rt::unix_time().as_nanos() as u64;
        let n = COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        SplitMix64(nanos ^ n)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::ManualClock;

    fn cause() -> Error {
        Error::Region(Box::new(crate::proto::errorpb::Error {
            message: "epoch not match".into(),
            ..Default::default()
        }))
    }

    #[test]
    fn seventeen_kinds_with_client_go_values() {
        assert_eq!(BackoffKind::ALL.len(), 17);
        let table: Vec<(&str, u64, u64, Jitter)> = BackoffKind::ALL
            .iter()
            .map(|k| {
                let c = k.config();
                (k.name(), ms(c.base), ms(c.cap), c.jitter)
            })
            .collect();
        use Jitter::*;
        assert_eq!(
            table,
            vec![
                ("tikvRPC", 100, 2000, Equal),
                ("tiflashRPC", 100, 2000, Equal),
                ("txnLock", 100, 3000, Equal),
                ("txnLockFast", 10, 3000, Equal),
                ("pdRPC", 500, 3000, Equal),
                ("regionMiss", 2, 500, None),
                ("regionScheduling", 2, 500, None),
                ("tikvServerBusy", 2000, 10000, Equal),
                ("tiflashServerBusy", 2000, 10000, Equal),
                ("tikvDiskFull", 500, 5000, None),
                ("regionRecoveryInProgress", 100, 10000, Equal),
                ("txnNotFound", 2, 500, None),
                ("staleCommand", 2, 1000, None),
                ("maxTsNotSynced", 2, 500, None),
                ("commitTSLag", 2, 500, None),
                ("regionNotInitialized", 2, 1000, None),
                ("isWitness", 1000, 10000, Equal),
            ]
        );
    }

    #[test]
    fn no_jitter_doubles_up_to_the_cap() {
        let cfg = BackoffKind::RegionMiss.config();
        let mut rng = SplitMix64::new(1);
        let delays: Vec<u64> = (0..10)
            .map(|n| ms(cfg.delay(n, Duration::ZERO, &mut rng)))
            .collect();
        assert_eq!(delays, vec![2, 4, 8, 16, 32, 64, 128, 256, 500, 500]);
        // A huge attempt number does not overflow.
        assert_eq!(ms(cfg.delay(200, Duration::ZERO, &mut rng)), 500);
    }

    #[test]
    fn each_jitter_mode_stays_in_its_interval() {
        let mut rng = SplitMix64::new(42);
        let base = 100;
        let cap = 3000;
        for attempt in 0..8u32 {
            let v = (base << attempt).min(cap);
            for _ in 0..200 {
                let full = BackoffConfig::from_millis(base, cap, Jitter::Full);
                let d = ms(full.delay(attempt, Duration::ZERO, &mut rng));
                assert!(d < v, "full {d} < {v}");
                let equal = BackoffConfig::from_millis(base, cap, Jitter::Equal);
                let d = ms(equal.delay(attempt, Duration::ZERO, &mut rng));
                assert!(d >= v / 2 && d < v, "equal {d} in [{}, {v})", v / 2);
            }
        }
        let decorr = BackoffConfig::from_millis(base, cap, Jitter::Decorrelated);
        let mut last = Duration::ZERO;
        for _ in 0..200 {
            let d = decorr.delay(0, last, &mut rng);
            let lo = base;
            let hi = (ms(last).max(base) * 3).min(cap);
            assert!(
                ms(d) >= lo && ms(d) <= hi,
                "decorrelated {d:?} in [{lo}, {hi}]"
            );
            last = d;
        }
        // Jitter actually varies.
        let equal = BackoffConfig::from_millis(base, cap, Jitter::Equal);
        let samples: std::collections::HashSet<u64> = (0..50)
            .map(|_| ms(equal.delay(5, Duration::ZERO, &mut rng)))
            .collect();
        assert!(samples.len() > 10);
    }

    #[test]
    fn base_is_clamped_to_two_millis() {
        let cfg = BackoffConfig::from_millis(0, 10, Jitter::None);
        assert_eq!(
            cfg.delay(0, Duration::ZERO, &mut SplitMix64::new(0)),
            Duration::from_millis(2)
        );
    }

    #[test]
    fn kinds_count_attempts_separately() {
        let mut bo = Backoffer::new(Duration::from_secs(10)).with_seed(3);
        assert_eq!(
            bo.next_delay(BackoffKind::RegionMiss, cause())
                .unwrap()
                .as_millis(),
            2
        );
        assert_eq!(
            bo.next_delay(BackoffKind::StaleCommand, cause())
                .unwrap()
                .as_millis(),
            2
        );
        assert_eq!(
            bo.next_delay(BackoffKind::RegionMiss, cause())
                .unwrap()
                .as_millis(),
            4
        );
        assert_eq!(bo.attempts(BackoffKind::RegionMiss), 2);
        assert_eq!(bo.attempts(BackoffKind::StaleCommand), 1);
        assert_eq!(bo.attempts(BackoffKind::TxnLock), 0);
    }

    #[test]
    fn budget_is_checked_before_sleeping_and_names_the_longest_kind() {
        // regionMiss sleeps 2+4+8+16+32+64 = 126 ms; then staleCommand 2 ms; budget 100 ms.
        let mut bo = Backoffer::new(Duration::from_millis(100)).with_seed(0);
        let mut slept = Vec::new();
        loop {
            match bo.next_delay(BackoffKind::RegionMiss, cause()) {
                Ok(d) => slept.push(ms(d)),
                Err(err) => {
                    let Error::BackoffExhausted {
                        kind,
                        total_sleep,
                        last,
                        uncertain,
                    } = err
                    else {
                        panic!("unexpected {err}");
                    };
                    assert_eq!(kind, BackoffKind::RegionMiss);
                    assert_eq!(total_sleep, Duration::from_millis(126));
                    assert!(!uncertain, "region errors are definite answers");
                    assert!(
                        matches!(*last, Error::Region(ref r) if r.message == "epoch not match")
                    );
                    break;
                }
            }
        }
        // The last sleep may overshoot the budget, as in client-go: the check precedes it.
        assert_eq!(slept, vec![2, 4, 8, 16, 32, 64]);
    }

    #[test]
    fn exhaustion_reports_longest_kind_not_the_last_one() {
        let mut bo = Backoffer::new(Duration::from_millis(1000)).with_seed(9);
        // pdRPC sleeps at least 250 ms per attempt (equal jitter of 500).
        while bo.total_sleep() < Duration::from_millis(1000) {
            bo.next_delay(BackoffKind::PdRpc, cause()).unwrap();
        }
        let err = bo.next_delay(BackoffKind::RegionMiss, cause()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::BackoffExhausted {
                    kind: BackoffKind::PdRpc,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("pdRPC backoff budget exhausted"),
            "{err}"
        );
    }

    #[test]
    fn server_busy_sleep_is_excluded_from_the_budget() {
        let mut bo = Backoffer::new(Duration::from_millis(100)).with_seed(5);
        for _ in 0..5 {
            bo.next_delay(BackoffKind::TikvServerBusy, cause()).unwrap();
        }
        assert!(bo.total_sleep() >= Duration::from_secs(5));
        // Still within budget: none of that counted.
        assert!(bo.next_delay(BackoffKind::RegionMiss, cause()).is_ok());
    }

    #[test]
    fn forks_share_the_deadline_and_uncertainty_and_charge_their_sleep_back() {
        let clock = ManualClock::new();
        let rt = Runtime::manual(clock.clone());
        let mut parent = Backoffer::new(Duration::from_secs(10))
            .with_seed(1)
            .with_timeout(Duration::from_secs(1), rt.now());
        let mut fork = parent.clone();
        let mut other = parent.clone();
        for _ in 0..5 {
            fork.next_delay(BackoffKind::RegionMiss, cause()).unwrap();
        }
        other.next_delay(BackoffKind::RegionMiss, cause()).unwrap();
        assert_eq!(
            parent.total_sleep(),
            Duration::ZERO,
            "a fork counts on its own"
        );
        parent.absorb(&fork);
        parent.absorb(&other);
        assert_eq!(
            parent.total_sleep(),
            Duration::from_millis(62),
            "the longest fork"
        );
        assert_eq!(parent.attempts(BackoffKind::RegionMiss), 5);
        // The next regionMiss of the parent continues where the fork left off: 64 ms.
        assert_eq!(
            parent.next_delay(BackoffKind::RegionMiss, cause()).unwrap(),
            Duration::from_millis(64)
        );

        assert!(!parent.is_uncertain());
        let sent: Error = crate::TransportError {
            kind: crate::TransportErrorKind::Broken,
            address: "a".into(),
            message: "reset".into(),
            may_have_been_sent: true,
        }
        .into();
        other.record_failure(&sent);
        assert!(
            parent.is_uncertain() && fork.is_uncertain(),
            "one operation"
        );

        assert_eq!(fork.remaining(rt.now()), Some(Duration::from_secs(1)));
        clock.advance(Duration::from_millis(900));
        assert_eq!(fork.remaining(rt.now()), Some(Duration::from_millis(100)));
        // A sleep that would end past the deadline is not slept.
        let err = futures::executor::block_on(fork.backoff(&rt, BackoffKind::PdRpc, cause()))
            .unwrap_err();
        assert!(
            matches!(err, Error::DeadlineExceeded { timeout, uncertain: true, ref last }
                if timeout == Duration::from_secs(1) && last.is_some()),
            "{err:?}"
        );
        assert_eq!(clock.elapsed(), Duration::from_millis(900), "nothing slept");
        // The next phase of the operation keeps the deadline, not the uncertainty.
        let next = parent.next_phase(Duration::from_secs(40));
        assert_eq!(next.remaining(rt.now()), Some(Duration::from_millis(100)));
        assert!(!next.is_uncertain());
    }

    #[test]
    fn a_zero_budget_allows_no_sleep() {
        let mut bo = Backoffer::new(Duration::ZERO).with_seed(1);
        assert!(matches!(
            bo.next_delay(BackoffKind::RegionMiss, cause()),
            Err(Error::BackoffExhausted { .. })
        ));
    }

    #[test]
    fn same_seed_same_delays() {
        let run = |seed| {
            let mut bo = Backoffer::new(Duration::from_secs(60)).with_seed(seed);
            (0..10)
                .map(|_| bo.next_delay(BackoffKind::TxnLock, cause()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(11), run(11));
        assert_ne!(run(11), run(12));
    }

    #[test]
    fn backoff_sleeps_on_manual_time() {
        let clock = ManualClock::new();
        let rt = Runtime::manual(clock.clone());
        let start = rt.now();
        let mut bo = Backoffer::new(Duration::from_millis(500)).with_seed(1);
        let mut attempts = 0;
        let err = futures::executor::block_on(async {
            loop {
                if let Err(err) = bo.backoff(&rt, BackoffKind::RegionMiss, cause()).await {
                    return err;
                }
                attempts += 1;
            }
        });
        // 2+4+...+256 = 510 ms >= 500 ms after 8 sleeps: the ninth call fails.
        assert_eq!(attempts, 8);
        assert_eq!(rt.now() - start, Duration::from_millis(510));
        assert_eq!(clock.elapsed(), Duration::from_millis(510));
        assert!(matches!(
            err,
            Error::BackoffExhausted {
                kind: BackoffKind::RegionMiss,
                ..
            }
        ));
    }

    #[test]
    fn exhaustion_remembers_an_attempt_that_may_have_reached_the_server() {
        let mut bo = Backoffer::new(Duration::from_millis(50)).with_seed(1);
        let broken = |sent| -> Error {
            crate::TransportError {
                kind: crate::TransportErrorKind::Broken,
                address: "127.0.0.1:1".into(),
                message: "cut".into(),
                may_have_been_sent: sent,
            }
            .into()
        };
        bo.next_delay(BackoffKind::TikvRpc, broken(true)).unwrap();
        let err = loop {
            if let Err(e) = bo.next_delay(BackoffKind::TikvRpc, broken(false)) {
                break e;
            }
        };
        let Error::BackoffExhausted {
            last, uncertain, ..
        } = err
        else {
            panic!("unexpected {err}");
        };
        assert!(
            !last.may_have_been_sent(),
            "the last attempt was never sent"
        );
        assert!(uncertain, "but the first may have been applied");
    }
}
