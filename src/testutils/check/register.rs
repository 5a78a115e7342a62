//! Linearizability of raw put, delete, get and compare-and-swap, key by key.
//!
//! A history is linearizable when every operation can be given a single instant between its
//! invocation and its completion at which it took effect, such that replaying the operations in
//! the order of those instants on one register per key gives every result the clients saw.
//! Linearizability is compositional (Herlihy and Wing): a history is linearizable exactly when
//! each key's sub-history is, so each key is searched on its own.
//!
//! # The search
//!
//! The search is Wing and Gong's, with Lowe's memoisation (as in Jepsen's Knossos `wgl` and
//! Porcupine). Each operation becomes a call entry and a return entry in a list ordered by time;
//! the search walks the list, and at a call entry tries to make that operation the next to take
//! effect: if the register's model accepts it (a get must return the current value, a
//! compare-and-swap must report the current value and whether it matched), and the pair
//! (set of operations taken so far, register value) was never reached before, the operation is
//! taken and removed from the list, and the walk restarts from the head. Reaching a return entry
//! means that operation completed before anything later began and nothing taken so far allows
//! it: the search undoes its last choice and tries the next candidate. The history is
//! linearizable when the list empties, and is not when there is no choice left to undo. The
//! memo (a bitset of taken operations with the value) keeps the search from exploring the same
//! situation twice, which makes it close to linear on histories with bounded concurrency.
//!
//! Indeterminate operations are handled as Knossos and Porcupine do: they never complete (their
//! return entry is last), so the search may make them take effect at any point after their
//! invocation, or at the very end, which is the same as never. Their results are unknown, so an
//! indeterminate get tells nothing and is dropped, and an indeterminate compare-and-swap swaps
//! exactly when the value matches. An indeterminate put whose value nothing ever read, returned
//! as previous, or expected is dropped as well (and likewise an indeterminate compare-and-swap
//! whose new value is unobserved): a linearization that includes it is still one without it, as
//! nothing can tell its value apart. This keeps failure-heavy histories tractable.
//!
//! Every key starts absent. The search is exponential in the worst case (the problem is
//! NP-complete): it stops after a budget of steps ([`DEFAULT_STEP_LIMIT`]) and reports the key
//! as [`Anomaly::Inconclusive`] rather than passing it. A history of 3,000 operations on one
//! key by 6 concurrent clients (5% of writes indeterminate) checks in about
//! 12,000 steps, around 10 ms in a debug build (the `long_concurrent_history_*` tests).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use super::{Status, Time};

/// The search steps allowed per key by [`check`]. A step costs more as a key's history grows
/// (the memo copies a bitset of its operations): about 1 µs in a debug build at 3,000 operations
/// and 10 µs at 10,000, so the budget takes from seconds to minutes. Spread a workload over
/// keys rather than growing one.
pub const DEFAULT_STEP_LIMIT: u64 = 20_000_000;

/// What an operation did, with what it returned (results are ignored unless its status is
/// [`Status::Ok`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Wrote this value.
    Put(u64),
    /// Deleted the key.
    Delete,
    /// Read the key and got this value (`None`: absent).
    Get(Option<u64>),
    /// Compare-and-swap: wrote `new` if the value was `expect`.
    Cas {
        /// The value required (`None`: absent).
        expect: Option<u64>,
        /// The value written when it matched.
        new: u64,
        /// The value it returned as the one it found.
        previous: Option<u64>,
        /// Whether it returned that it swapped.
        swapped: bool,
    },
}

/// One operation on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The key (a runner maps its keys to numbers).
    pub key: u64,
    /// What it did and returned.
    pub action: Action,
    /// When it was invoked.
    pub invoke: Time,
    /// When it returned (read as `invoke` if earlier; ignored unless the status is `Ok`).
    pub complete: Time,
    /// How it ended.
    pub status: Status,
}

/// A history of register operations, in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Every operation invoked.
    pub ops: Vec<Op>,
}

/// What a passing check looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Keys searched.
    pub keys: usize,
    /// Operations that entered the search.
    pub searched: usize,
    /// Indeterminate operations among them.
    pub indeterminate: usize,
    /// Failed operations, left out (they did not happen).
    pub failed: usize,
    /// Indeterminate operations left out because they could not matter (gets, unobserved
    /// writes).
    pub dropped: usize,
    /// Search steps over all keys.
    pub steps: u64,
    /// The most search steps one key took.
    pub max_key_steps: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keys linearizable: {} ops searched ({} indeterminate), {} failed and {} \
             indeterminate left out; {} steps (at most {} on one key)",
            self.keys,
            self.searched,
            self.indeterminate,
            self.failed,
            self.dropped,
            self.steps,
            self.max_key_steps
        )
    }
}

/// Why the search could not linearize a key: the furthest it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample {
    /// The longest sequence of the key's operations found to take effect one after another
    /// consistently (indices into [`History::ops`], in order).
    pub linearized: Vec<usize>,
    /// The register's value after them (`None`: absent).
    pub value: Option<u64>,
    /// Operations none of which can take effect next (index and operation): the first completed
    /// before every operation not listed here began, so one of them had to be next.
    pub stuck: Vec<(usize, Op)>,
    /// The last operations of `linearized` (at most 5), for printing.
    pub recent: Vec<(usize, Op)>,
}

/// A key whose history is not (or could not be shown to be) linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// No order of the key's operations explains what they returned.
    NotLinearizable {
        /// The key.
        key: u64,
        /// Where the search failed.
        counterexample: Box<Counterexample>,
    },
    /// The search ran out of its step budget before deciding.
    Inconclusive {
        /// The key.
        key: u64,
        /// Operations searched on it.
        ops: usize,
        /// Steps taken.
        steps: u64,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Put(v) => write!(f, "put {v}"),
            Action::Delete => write!(f, "delete"),
            Action::Get(v) => write!(f, "get -> {}", Shown(*v)),
            Action::Cas {
                expect,
                new,
                previous,
                swapped,
            } => write!(
                f,
                "cas {} => {new} -> {}, found {}",
                Shown(*expect),
                if *swapped { "swapped" } else { "not swapped" },
                Shown(*previous)
            ),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.action)?;
        super::interval(f, self.invoke, self.complete, self.status)
    }
}

/// A register value for printing.
struct Shown(Option<u64>);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("absent"),
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::NotLinearizable {
                key,
                counterexample: c,
            } => {
                writeln!(
                    f,
                    "key {key} is not linearizable: at most {} of its operations take effect \
                     consistently, ending with:",
                    c.linearized.len()
                )?;
                for (i, op) in &c.recent {
                    writeln!(f, "    #{i} {op}")?;
                }
                write!(
                    f,
                    "  which leave it {}; then none of these can take effect next:",
                    Shown(c.value)
                )?;
                for (i, op) in &c.stuck {
                    write!(f, "\n    #{i} {op}")?;
                }
                Ok(())
            }
            Anomaly::Inconclusive { key, ops, steps } => write!(
                f,
                "key {key}: linearizability undecided after {steps} search steps over {ops} \
                 operations"
            ),
        }
    }
}

/// Checks every key's operations for linearizability, with [`DEFAULT_STEP_LIMIT`] steps per
/// key.
pub fn check(history: &History) -> Result<Stats, Vec<Anomaly>> {
    check_with_limit(history, DEFAULT_STEP_LIMIT)
}

/// As [`check`], with at most `limit` search steps per key.
pub fn check_with_limit(history: &History, limit: u64) -> Result<Stats, Vec<Anomaly>> {
    let mut by_key: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        by_key.entry(op.key).or_default().push(i);
    }
    let mut stats = Stats::default();
    let mut anomalies = Vec::new();
    for (key, indices) in by_key {
        let ops = prepare(&history.ops, &indices, &mut stats);
        stats.keys += 1;
        stats.searched += ops.len();
        stats.indeterminate += ops.iter().filter(|op| op.ret.is_none()).count();
        let (verdict, steps) = Search::new(&ops).run(limit);
        stats.steps += steps;
        stats.max_key_steps = stats.max_key_steps.max(steps);
        match verdict {
            Verdict::Linearizable => {}
            Verdict::Stuck(best) => {
                let described = |i: usize| (ops[i].index, history.ops[ops[i].index].clone());
                let recent_from = best.linearized.len().saturating_sub(5);
                anomalies.push(Anomaly::NotLinearizable {
                    key,
                    counterexample: Box::new(Counterexample {
                        linearized: best.linearized.iter().map(|&i| ops[i].index).collect(),
                        value: best.value,
                        stuck: best.stuck.iter().map(|&i| described(i)).collect(),
                        recent: best.linearized[recent_from..]
                            .iter()
                            .map(|&i| described(i))
                            .collect(),
                    }),
                });
            }
            Verdict::OutOfSteps => anomalies.push(Anomaly::Inconclusive {
                key,
                ops: ops.len(),
                steps,
            }),
        }
    }
    if anomalies.is_empty() {
        Ok(stats)
    } else {
        Err(anomalies)
    }
}

/// An operation as the search sees it.
struct SearchOp {
    /// Its index in the history.
    index: usize,
    action: Action,
    invoke: Time,
    /// When it returned; `None` for an indeterminate operation (it never does).
    ret: Option<Time>,
}

/// The operations of one key that can matter, with failed and irrelevant indeterminate ones left
/// out (see the module docs).
fn prepare(all: &[Op], indices: &[usize], stats: &mut Stats) -> Vec<SearchOp> {
    let mut observed = BTreeSet::new();
    for op in indices.iter().map(|&i| &all[i]) {
        match op.action {
            Action::Get(Some(v)) if op.status == Status::Ok => {
                observed.insert(v);
            }
            Action::Cas {
                expect, previous, ..
            } => {
                observed.extend(expect);
                if op.status == Status::Ok {
                    observed.extend(previous);
                }
            }
            _ => {}
        }
    }
    let mut ops = Vec::with_capacity(indices.len());
    for &index in indices {
        let op = &all[index];
        let ret = match op.status {
            Status::Failed => {
                stats.failed += 1;
                continue;
            }
            Status::Ok => Some(op.complete.max(op.invoke)),
            Status::Unknown => {
                let matters = match op.action {
                    Action::Get(_) => false,
                    Action::Put(v) | Action::Cas { new: v, .. } => observed.contains(&v),
                    Action::Delete => true,
                };
                if !matters {
                    stats.dropped += 1;
                    continue;
                }
                None
            }
        };
        ops.push(SearchOp {
            index,
            action: op.action,
            invoke: op.invoke,
            ret,
        });
    }
    ops
}

/// The register's next value if `op` can take effect on `value`.
fn apply(value: Option<u64>, op: &SearchOp) -> Option<Option<u64>> {
    let returned = op.ret.is_some();
    match op.action {
        Action::Put(v) => Some(Some(v)),
        Action::Delete => Some(None),
        Action::Get(read) => (read == value).then_some(value),
        Action::Cas {
            expect,
            new,
            previous,
            swapped,
        } => {
            let matches = value == expect;
            if returned && (previous != value || swapped != matches) {
                return None;
            }
            Some(if matches { Some(new) } else { value })
        }
    }
}

/// The end of the entry list.
const NIL: usize = usize::MAX;

enum Verdict {
    Linearizable,
    Stuck(Best),
    OutOfSteps,
}

/// The deepest point the search reached (indices into the key's operations).
struct Best {
    linearized: Vec<usize>,
    value: Option<u64>,
    stuck: Vec<usize>,
}

/// One key's search state: a doubly linked list of call and return entries (entry `2i` is
/// operation `i`'s call, `2i + 1` its return; the head sentinel is the last slot).
struct Search<'a> {
    ops: &'a [SearchOp],
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [SearchOp]) -> Self {
        let mut order: Vec<usize> = (0..2 * ops.len()).collect();
        // By time; at equal times calls first, so operations that touch count as concurrent.
        order.sort_by_key(|&e| {
            let op = &ops[e / 2];
            match e % 2 {
                0 => (op.invoke, 0),
                _ => (op.ret.unwrap_or(Time::MAX), 1),
            }
        });
        let head = 2 * ops.len();
        let mut next = vec![NIL; head + 1];
        let mut prev = vec![NIL; head + 1];
        let mut last = head;
        for e in order {
            next[last] = e;
            prev[e] = last;
            last = e;
        }
        Search {
            ops,
            next,
            prev,
            head,
        }
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    /// Puts back an entry removed by `unlink`; entries go back in the reverse order they left.
    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NIL {
            self.prev[n] = e;
        }
    }

    fn run(mut self, limit: u64) -> (Verdict, u64) {
        let words = self.ops.len().div_ceil(64);
        let mut taken = vec![0u64; words];
        let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
        let mut value = None;
        let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
        let mut best: Option<Best> = None;
        let mut entry = self.next[self.head];
        let mut steps = 0;
        while self.next[self.head] != NIL {
            steps += 1;
            if steps > limit {
                return (Verdict::OutOfSteps, steps - 1);
            }
            if entry != NIL && entry % 2 == 0 {
                let op = entry / 2;
                if let Some(after) = apply(value, &self.ops[op]) {
                    taken[op / 64] |= 1 << (op % 64);
                    if seen.insert((taken.clone(), after)) {
                        stack.push((op, value));
                        value = after;
                        self.unlink(entry);
                        self.unlink(entry + 1);
                        entry = self.next[self.head];
                        continue;
                    }
                    taken[op / 64] &= !(1 << (op % 64));
                }
                entry = self.next[entry];
                continue;
            }
            // A return entry: its operation must come before everything after it, and cannot.
            if best
                .as_ref()
                .is_none_or(|b| stack.len() > b.linearized.len())
            {
                best = Some(Best {
                    linearized: stack.iter().map(|&(op, _)| op).collect(),
                    value,
                    stuck: self.stuck_at(entry),
                });
            }
            let Some((op, before)) = stack.pop() else {
                let best = best.unwrap_or(Best {
                    linearized: Vec::new(),
                    value,
                    stuck: Vec::new(),
                });
                return (Verdict::Stuck(best), steps);
            };
            value = before;
            taken[op / 64] &= !(1 << (op % 64));
            self.relink(2 * op + 1);
            self.relink(2 * op);
            entry = self.next[2 * op];
        }
        (Verdict::Linearizable, steps)
    }

    /// The operation whose return entry is `entry`, then the others invoked before it: the
    /// candidates that all failed.
    fn stuck_at(&self, entry: usize) -> Vec<usize> {
        let mut stuck = Vec::new();
        if entry != NIL {
            stuck.push(entry / 2);
        }
        let mut e = self.next[self.head];
        while e != entry && e != NIL {
            if e % 2 == 0 && e / 2 != entry / 2 {
                stuck.push(e / 2);
            }
            e = self.next[e];
        }
        stuck
    }
}

#[cfg(test)]
mod tests;
