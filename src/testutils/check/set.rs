//! A grow-only set: every acknowledged add is eventually readable, and nothing appears that was
//! never added.
//!
//! Clients add unique elements and read the whole set. The **final read** is the successful read
//! invoked last; the check asks that it contains every element known, before it began, to be in
//! the set: added by an add that succeeded, or seen by a read that returned, before the final
//! read's invocation. An element that became known only while the final read ran is counted in
//! [`Stats::unchecked`], not flagged. An indeterminate add may or may not appear, but once a
//! read saw its element, it must stay. Reads before the final one are not asked to be up to
//! date (that would be a linearizability check), only to contain nothing unexpected:
//!
//! - an element that no add attempted, or only failed adds ([`AnomalyKind::Unexpected`]);
//! - an element read before any add of it began ([`AnomalyKind::Early`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use super::{Status, Time};

/// What an operation did, with what it returned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Added this element (unique to this add).
    Add(u64),
    /// Read the whole set (ignored unless the status is [`Status::Ok`]).
    Read(Vec<u64>),
}

/// One operation.
pub type Op = super::Op<Action>;

/// A history of set operations, in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Every operation invoked.
    pub ops: Vec<Op>,
}

/// What a passing check looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Adds that succeeded.
    pub adds_ok: usize,
    /// Indeterminate adds.
    pub adds_unknown: usize,
    /// Failed adds.
    pub adds_failed: usize,
    /// Indeterminate adds whose element some read saw.
    pub unknown_seen: usize,
    /// Successful reads.
    pub reads: usize,
    /// The final read (index in [`History::ops`]), if any read succeeded.
    pub final_read: Option<usize>,
    /// Elements the final read had to contain (and did).
    pub confirmed: usize,
    /// Successful adds the final read did not have to contain (it began before they were
    /// known): unchecked.
    pub unchecked: usize,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} adds ({} indeterminate, {} of them seen; {} failed), {} reads: the final read had \
             all {} elements it had to, {} acknowledged adds unchecked",
            self.adds_ok + self.adds_unknown + self.adds_failed,
            self.adds_unknown,
            self.unknown_seen,
            self.adds_failed,
            self.reads,
            self.confirmed,
            self.unchecked
        )
    }
}

/// What is wrong (operations by their index in [`History::ops`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnomalyKind {
    /// The final read lacks an element known to be in the set before it began.
    Lost {
        /// The element.
        element: u64,
        /// The operation that showed it was in: a successful add, or a read that saw it.
        known_by: usize,
        /// The final read.
        final_read: usize,
    },
    /// A read saw an element that no add attempted, or only failed ones.
    Unexpected {
        /// The element.
        element: u64,
        /// The first read (by index) that saw it.
        read: usize,
    },
    /// A read that completed before any add of the element began saw it.
    Early {
        /// The element.
        element: u64,
        /// The read.
        read: usize,
        /// The earliest add of it.
        add: usize,
    },
}

/// An anomaly and the operations that witness it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// What is wrong.
    pub kind: AnomalyKind,
    /// The operations involved, by index, for printing.
    pub witnesses: Vec<(usize, Op)>,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Add(element) => write!(f, "add {element}"),
            Action::Read(elements) => write!(f, "read ({} elements)", elements.len()),
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnomalyKind::Lost {
                element,
                known_by,
                final_read,
            } => write!(
                f,
                "lost: {element}, in the set since #{known_by}, is missing from the final read \
                 #{final_read}"
            ),
            AnomalyKind::Unexpected { element, read } => write!(
                f,
                "unexpected: #{read} read {element}, which no add that could succeed attempted"
            ),
            AnomalyKind::Early { element, read, add } => write!(
                f,
                "early: #{read} read {element} before its first add #{add} began"
            ),
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::witnessed(f, &self.kind, &self.witnesses)
    }
}

/// Checks a set history (see the module docs).
pub fn check(history: &History) -> Result<Stats, Vec<Anomaly>> {
    let ops = &history.ops;
    let complete = |i: usize| ops[i].complete.max(ops[i].invoke);
    let mut stats = Stats::default();
    // Each element's adds that may have taken effect, and those that failed.
    let mut adds: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut failed_adds: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    // When each element was first known to be in the set, and by which operation.
    let mut known: BTreeMap<u64, (Time, usize)> = BTreeMap::new();
    let mut learn = |element: u64, at: Time, by: usize| {
        let entry = known.entry(element).or_insert((at, by));
        if at < entry.0 {
            *entry = (at, by);
        }
    };
    let mut reads = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match (&op.action, op.status) {
            (Action::Add(element), Status::Failed) => {
                stats.adds_failed += 1;
                failed_adds.entry(*element).or_default().push(i);
            }
            (Action::Add(element), status) => {
                adds.entry(*element).or_default().push(i);
                if status == Status::Ok {
                    stats.adds_ok += 1;
                    learn(*element, complete(i), i);
                } else {
                    stats.adds_unknown += 1;
                }
            }
            (Action::Read(elements), Status::Ok) => {
                reads.push(i);
                for &element in elements {
                    learn(element, complete(i), i);
                }
            }
            (Action::Read(_), _) => {}
        }
    }
    stats.reads = reads.len();
    let mut found: Vec<(AnomalyKind, Vec<usize>)> = Vec::new();
    let mut flagged = HashSet::new();
    let mut seen = HashSet::new();
    for &read in &reads {
        let Action::Read(elements) = &ops[read].action else {
            unreachable!("reads are reads")
        };
        for &element in elements {
            seen.insert(element);
            let Some(candidates) = adds.get(&element) else {
                if flagged.insert(element) {
                    let mut witnesses = vec![read];
                    witnesses.extend(failed_adds.get(&element).into_iter().flatten());
                    found.push((AnomalyKind::Unexpected { element, read }, witnesses));
                }
                continue;
            };
            let &first = candidates.iter().min_by_key(|&&a| ops[a].invoke).unwrap();
            if ops[first].invoke > complete(read) && flagged.insert(element) {
                let kind = AnomalyKind::Early {
                    element,
                    read,
                    add: first,
                };
                found.push((kind, vec![read, first]));
            }
        }
    }
    stats.unknown_seen = adds
        .iter()
        .filter(|(element, _)| seen.contains(element))
        .flat_map(|(_, candidates)| candidates)
        .filter(|&&a| ops[a].status == Status::Unknown)
        .count();
    stats.final_read = reads.iter().copied().max_by_key(|&r| (ops[r].invoke, r));
    match stats.final_read {
        None => stats.unchecked = stats.adds_ok,
        Some(final_read) => {
            let Action::Read(elements) = &ops[final_read].action else {
                unreachable!("reads are reads")
            };
            let last: BTreeSet<u64> = elements.iter().copied().collect();
            let began = ops[final_read].invoke;
            for (&element, &(at, known_by)) in &known {
                if at >= began {
                    let acknowledged = adds.get(&element).into_iter().flatten();
                    stats.unchecked += acknowledged
                        .filter(|&&a| ops[a].status == Status::Ok && !last.contains(&element))
                        .count();
                } else if last.contains(&element) {
                    stats.confirmed += 1;
                } else {
                    let kind = AnomalyKind::Lost {
                        element,
                        known_by,
                        final_read,
                    };
                    found.push((kind, vec![known_by, final_read]));
                }
            }
        }
    }
    if found.is_empty() {
        return Ok(stats);
    }
    Err(found
        .into_iter()
        .map(|(kind, witnesses)| Anomaly {
            kind,
            witnesses: witnesses.into_iter().map(|i| (i, ops[i].clone())).collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests;
