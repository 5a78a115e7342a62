//! Checkers that judge a recorded history of operations, as Jepsen does: pure functions (no
//! I/O, no async) from what clients saw to either statistics (nothing wrong found) or the
//! anomalies found, each printable with the operations that witness it.
//!
//! # Concepts
//!
//! - An **operation** is one call a client made: a raw put, a transfer transaction, a read of
//!   every account. A workload runner records each one as it runs, in any order.
//! - Its **invocation** is the time the client issued it; its **completion** the time the call
//!   returned. An operation that completed before another was invoked took effect before it
//!   (real-time order); two operations whose intervals overlap are **concurrent**, and either may
//!   have taken effect first. Times are a [`Time`] in any monotonic unit (virtual nanoseconds in
//!   a simulation); only their order matters, and equal times count as concurrent.
//! - Each operation ends with a [`Status`]: it succeeded ([`Status::Ok`]), it definitely did not
//!   take effect ([`Status::Failed`]: a write conflict, a rollback the client saw through), or
//!   its fate is **indeterminate** ([`Status::Unknown`]: a timeout after the request was sent, a
//!   `CommitUndetermined`). An indeterminate operation may take effect at any time after its
//!   invocation, even after the history ends, or never; a checker accepts every such choice and
//!   flags a history only when no choice explains it. Reads that did not return are not recorded:
//!   they observed nothing.
//!
//! # The checkers
//!
//! | module | workload | a history passes when |
//! |---|---|---|
//! | [`bank`] | transfers between accounts, snapshot reads of every account | every successful read shows every account, balances summing to the fixed total, none negative |
//! | [`list_append`] | transactions appending unique values to lists and reading whole lists (Elle) | no anomaly snapshot isolation forbids: garbage, duplicate, aborted (G1a) or intermediate (G1b) reads, incompatible version orders, lost updates, and dependency cycles G0, G1c and G-single |
//! | [`register`] | raw put, delete, get and compare-and-swap per key | each key's operations are linearizable: some order of them, consistent with real time, replays on a single register and gives every returned result |
//! | [`set`] | adds of unique elements, reads of the whole set | the final read holds every element known to be in before it began; no read holds an element never attempted (or only by failed adds), or one read before its add began |
//!
//! Each module's `check(&History)` returns `Ok(Stats)` or `Err(Vec<Anomaly>)`; both implement
//! `Display`, so a failing simulation prints what went wrong and the operations involved (by
//! their index in the history). A pass proves only the absence of the anomalies a checker looks
//! for in that history: a short or barely concurrent history passes easily, so read the stats
//! (how many reads were checked, how many operations were indeterminate) as well.

use std::fmt;

pub mod bank;
mod graph;
pub mod list_append;
pub mod register;
pub mod set;

/// A point in time: any monotonic unit (virtual nanoseconds in a simulation). Only the order of
/// times matters.
pub type Time = u64;

/// One operation of a history: what a client did (and what it returned), when, and how it
/// ended. Each checker names its own actions (`set::Op` is `Op<set::Action>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op<A> {
    /// What it did and returned.
    pub action: A,
    /// When it was invoked.
    pub invoke: Time,
    /// When it returned (read as `invoke` if earlier; ignored unless the status is `Ok`).
    pub complete: Time,
    /// How it ended.
    pub status: Status,
}

impl<A: fmt::Display> fmt::Display for Op<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.action)?;
        interval(f, self.invoke, self.complete, self.status)
    }
}

/// Prints when an operation ran and how it ended: `[invoke, complete]` if it succeeded, else
/// `[invoke, ?] status`.
fn interval(
    f: &mut fmt::Formatter<'_>,
    invoke: Time,
    complete: Time,
    status: Status,
) -> fmt::Result {
    match status {
        Status::Ok => write!(f, "[{invoke}, {complete}]"),
        status => write!(f, "[{invoke}, ?] {status}"),
    }
}

/// Prints an anomaly, then each witness on a line of its own as `#index operation`.
fn witnessed<W: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    anomaly: &impl fmt::Display,
    witnesses: &[(usize, W)],
) -> fmt::Result {
    write!(f, "{anomaly}")?;
    for (i, witness) in witnesses {
        write!(f, "\n    #{i} {witness}")?;
    }
    Ok(())
}

/// How an operation ended, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// It succeeded: it took effect between its invocation and its completion.
    Ok,
    /// It definitely did not take effect.
    Failed,
    /// Indeterminate: it may take effect at any time after its invocation, or never.
    Unknown,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Unknown => "indeterminate",
        })
    }
}
