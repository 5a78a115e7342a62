//! Elle's list-append workload: the anomalies snapshot isolation forbids.
//!
//! Each key holds a list. A transaction is a sequence of micro-operations: append a value to a
//! key's list, or read a key's whole list. Every value appended to a key is unique (the runner's
//! promise; a repeated one panics), so a value read names the transaction that wrote it, and a
//! list read names every version before it: this is what makes the workload's dependencies
//! recoverable from what clients saw (Kingsbury and Alvaro, "Elle: Inferring Isolation
//! Anomalies from Experimental Observations", VLDB 2020).
//!
//! # What is checked
//!
//! Only reads of transactions that committed ([`Status::Ok`]) count; an indeterminate
//! transaction ([`Status::Unknown`]) counts as committed when one of its appends is read, and
//! is left out otherwise; a failed one did not happen.
//!
//! - Anomalies of single reads: a value no transaction appended ([`AnomalyKind::GarbageRead`]),
//!   a value listed twice ([`AnomalyKind::DuplicateElements`]), a value of a failed transaction
//!   ([`AnomalyKind::G1a`]), a list ending in a value after which its writer appended more to
//!   that key ([`AnomalyKind::G1b`]).
//! - Each key's version order is its longest read: every other read of the key must be a prefix
//!   of it ([`AnomalyKind::IncompatibleOrder`] otherwise, and the key adds no edges).
//! - Dependencies between committed transactions, from each key's order (Adya): `ww` from the
//!   writer of a version to the writer of the next; `wr` from the writer of the last value a read
//!   saw to the reader; `rw` from a reader to the writer of the version after the one it saw.
//! - Cycles: of `ww` edges only ([`AnomalyKind::G0`]); of `ww` and `wr` edges with at least one
//!   `wr` ([`AnomalyKind::G1c`]); with exactly one `rw` edge ([`AnomalyKind::GSingle`]).
//!   Cycles with two or more `rw` edges (write skew, G2) are allowed by snapshot isolation and
//!   not reported. Real-time order gives no edges: this is not a check of strict
//!   serializability.
//! - Two committed transactions that read the same version of a key, then both appended to it
//!   ([`AnomalyKind::LostUpdate`]).
//!
//! Cycles are searched per strongly connected component, and one shortest cycle of each kind is
//! reported per component.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use super::graph::{members, Edge, Graph};
use super::{Status, Time};

/// One step of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Micro {
    /// Appended `value` to `key`'s list.
    Append {
        /// The key.
        key: u64,
        /// The value, unique among the key's appends.
        value: u64,
    },
    /// Read `key`'s list (ignored unless the transaction's status is [`Status::Ok`]).
    Read {
        /// The key.
        key: u64,
        /// What it returned (empty: the key was absent).
        list: Vec<u64>,
    },
}

/// One transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// Its steps, in order.
    pub micros: Vec<Micro>,
    /// When it began.
    pub invoke: Time,
    /// When it returned.
    pub complete: Time,
    /// How it ended (`Ok`: committed).
    pub status: Status,
}

/// A history of transactions, in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Every transaction begun.
    pub txns: Vec<Txn>,
}

/// What a passing check looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Committed transactions.
    pub committed: usize,
    /// Indeterminate transactions counted as committed (one of their appends was read).
    pub unknown_committed: usize,
    /// Indeterminate transactions left out (none of their appends was read).
    pub unknown_ignored: usize,
    /// Failed transactions.
    pub failed: usize,
    /// Reads of committed transactions.
    pub reads: usize,
    /// Keys with a version order (read at least once).
    pub keys: usize,
    /// The longest version order of a key.
    pub longest: usize,
    /// `ww` edges.
    pub ww: usize,
    /// `wr` edges.
    pub wr: usize,
    /// `rw` edges.
    pub rw: usize,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no anomaly among {} committed transactions ({} indeterminate counted, {} left out, \
             {} failed): {} reads of {} keys (longest {} values), {} ww, {} wr and {} rw edges",
            self.committed,
            self.unknown_committed,
            self.unknown_ignored,
            self.failed,
            self.reads,
            self.keys,
            self.longest,
            self.ww,
            self.wr,
            self.rw
        )
    }
}

/// Why one transaction depends on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dependency {
    /// The second overwrote (appended after) a version the first wrote.
    WriteWrite,
    /// The second read a version the first wrote.
    WriteRead,
    /// The first read a version the second overwrote (an anti-dependency).
    ReadWrite,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dependency::WriteWrite => "ww",
            Dependency::WriteRead => "wr",
            Dependency::ReadWrite => "rw",
        })
    }
}

/// One edge of a dependency cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The transaction depended on (its index in [`History::txns`]).
    pub from: usize,
    /// The transaction that depends on it.
    pub to: usize,
    /// Why.
    pub kind: Dependency,
    /// The key that made the dependency.
    pub key: u64,
}

/// What is wrong (transactions by their index in [`History::txns`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnomalyKind {
    /// A read saw a value no transaction appended to that key.
    GarbageRead {
        /// The reader.
        reader: usize,
        /// The key.
        key: u64,
        /// The value.
        value: u64,
    },
    /// A read listed a value more than once.
    DuplicateElements {
        /// The reader.
        reader: usize,
        /// The key.
        key: u64,
        /// The value repeated.
        value: u64,
    },
    /// Two reads of a key where neither list is a prefix of the other: no single version order
    /// explains both.
    IncompatibleOrder {
        /// The key.
        key: u64,
        /// A transaction that read it.
        reader: usize,
        /// The transaction with the longest read of it.
        longest: usize,
    },
    /// Aborted read: a read saw a value appended by a failed transaction.
    G1a {
        /// The reader.
        reader: usize,
        /// The failed writer.
        writer: usize,
        /// The key.
        key: u64,
        /// The value.
        value: u64,
    },
    /// Intermediate read: a read's list ended at a value after which its writer appended more to
    /// that key.
    G1b {
        /// The reader.
        reader: usize,
        /// The writer.
        writer: usize,
        /// The key.
        key: u64,
        /// The last value read.
        value: u64,
    },
    /// Two or more committed transactions read the same version of a key and then each appended
    /// to it.
    LostUpdate {
        /// The key.
        key: u64,
        /// The list they read.
        read: Vec<u64>,
        /// The transactions.
        txns: Vec<usize>,
    },
    /// A cycle of `ww` dependencies (dirty write).
    G0 {
        /// The cycle, each step starting where the last ended.
        cycle: Vec<Step>,
    },
    /// A cycle of `ww` and `wr` dependencies, at least one `wr` (circular information flow).
    G1c {
        /// The cycle.
        cycle: Vec<Step>,
    },
    /// A cycle with exactly one `rw` dependency, the others `ww` or `wr` (read skew).
    GSingle {
        /// The cycle.
        cycle: Vec<Step>,
    },
}

/// An anomaly and the transactions that witness it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// What is wrong.
    pub kind: AnomalyKind,
    /// The transactions involved, by index, for printing.
    pub witnesses: Vec<(usize, Txn)>,
}

impl fmt::Display for Micro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Micro::Append { key, value } => write!(f, "append({key}, {value})"),
            Micro::Read { key, list } => write!(f, "read({key}) = {list:?}"),
        }
    }
}

impl fmt::Display for Txn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, micro) in self.micros.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{micro}")?;
        }
        f.write_str(" ")?;
        super::interval(f, self.invoke, self.complete, self.status)
    }
}

/// Prints a cycle as `#1 -ww(3)-> #2 -rw(4)-> #1`.
struct ShownCycle<'a>(&'a [Step]);

impl fmt::Display for ShownCycle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in self.0 {
            write!(f, "#{} -{}({})-> ", step.from, step.kind, step.key)?;
        }
        match self.0.first() {
            Some(step) => write!(f, "#{}", step.from),
            None => Ok(()),
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnomalyKind::GarbageRead { reader, key, value } => write!(
                f,
                "garbage read: #{reader} read {value} in key {key}, which nothing appended there"
            ),
            AnomalyKind::DuplicateElements { reader, key, value } => {
                write!(
                    f,
                    "duplicate elements: #{reader} read {value} twice in key {key}"
                )
            }
            AnomalyKind::IncompatibleOrder {
                key,
                reader,
                longest,
            } => write!(
                f,
                "incompatible order: #{reader}'s read of key {key} is no prefix of #{longest}'s"
            ),
            AnomalyKind::G1a {
                reader,
                writer,
                key,
                value,
            } => write!(
                f,
                "G1a (aborted read): #{reader} read {value} in key {key}, appended by #{writer} \
                 which failed"
            ),
            AnomalyKind::G1b {
                reader,
                writer,
                key,
                value,
            } => write!(
                f,
                "G1b (intermediate read): #{reader} read key {key} up to {value}, after which \
                 #{writer} appended more to it"
            ),
            AnomalyKind::LostUpdate { key, read, txns } => {
                f.write_str("lost update: ")?;
                for (i, t) in txns.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}#{t}")?;
                }
                write!(f, " read key {key} as {read:?}, then each appended to it")
            }
            AnomalyKind::G0 { cycle } => {
                write!(f, "G0 (write cycle): {}", ShownCycle(cycle))
            }
            AnomalyKind::G1c { cycle } => {
                write!(f, "G1c (circular information flow): {}", ShownCycle(cycle))
            }
            AnomalyKind::GSingle { cycle } => {
                write!(f, "G-single (read skew): {}", ShownCycle(cycle))
            }
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::witnessed(f, &self.kind, &self.witnesses)
    }
}

/// Checks a history for the anomalies snapshot isolation forbids (see the module docs).
///
/// # Panics
///
/// If two transactions append the same value to the same key (the workload must not).
pub fn check(history: &History) -> Result<Stats, Vec<Anomaly>> {
    let mut checker = Checker::new(history);
    checker.check_reads();
    checker.check_lost_updates();
    let orders = checker.version_orders();
    let graph = checker.dependencies(&orders);
    checker.check_cycles(&graph);
    if checker.found.is_empty() {
        Ok(checker.stats)
    } else {
        let txns = &history.txns;
        Err(checker
            .found
            .into_iter()
            .map(|(kind, witnesses)| Anomaly {
                kind,
                witnesses: witnesses
                    .into_iter()
                    .map(|t| (t, txns[t].clone()))
                    .collect(),
            })
            .collect())
    }
}

struct Checker<'a> {
    txns: &'a [Txn],
    /// The transaction that appended each (key, value).
    writer: HashMap<(u64, u64), usize>,
    /// Each (transaction, key)'s last value appended.
    last_append: HashMap<(usize, u64), u64>,
    /// Whether each transaction counts as committed.
    committed: Vec<bool>,
    /// Every read of a committed transaction, by key: (reader, list).
    reads: BTreeMap<u64, Vec<(usize, &'a [u64])>>,
    /// Anomalies and their witnesses.
    found: Vec<(AnomalyKind, Vec<usize>)>,
    stats: Stats,
}

impl<'a> Checker<'a> {
    fn new(history: &'a History) -> Self {
        let txns = &history.txns[..];
        let mut writer = HashMap::new();
        let mut last_append = HashMap::new();
        let mut reads: BTreeMap<u64, Vec<(usize, &[u64])>> = BTreeMap::new();
        for (t, txn) in txns.iter().enumerate() {
            for micro in &txn.micros {
                match micro {
                    &Micro::Append { key, value } => {
                        if let Some(other) = writer.insert((key, value), t) {
                            panic!(
                                "#{other} and #{t} both append {value} to key {key}: appended \
                                 values must be unique per key"
                            );
                        }
                        last_append.insert((t, key), value);
                    }
                    Micro::Read { key, list } if txn.status == Status::Ok => {
                        reads.entry(*key).or_default().push((t, list));
                    }
                    Micro::Read { .. } => {}
                }
            }
        }
        let mut committed: Vec<bool> = txns.iter().map(|t| t.status == Status::Ok).collect();
        for (key, list) in reads
            .iter()
            .flat_map(|(k, rs)| rs.iter().map(move |r| (*k, r.1)))
        {
            for value in list {
                if let Some(&w) = writer.get(&(key, *value)) {
                    committed[w] |= txns[w].status == Status::Unknown;
                }
            }
        }
        let mut stats = Stats::default();
        for (txn, &committed) in txns.iter().zip(&committed) {
            match (txn.status, committed) {
                (Status::Ok, _) => stats.committed += 1,
                (Status::Failed, _) => stats.failed += 1,
                (Status::Unknown, true) => stats.unknown_committed += 1,
                (Status::Unknown, false) => stats.unknown_ignored += 1,
            }
        }
        stats.reads = reads.values().map(Vec::len).sum();
        Checker {
            txns,
            writer,
            last_append,
            committed,
            reads,
            found: Vec::new(),
            stats,
        }
    }

    /// Garbage, duplicate, aborted and intermediate reads.
    fn check_reads(&mut self) {
        for (&key, reads) in &self.reads {
            for &(reader, list) in reads {
                let mut seen = HashSet::new();
                let mut failed_writers = HashSet::new();
                for &value in list {
                    if !seen.insert(value) {
                        let kind = AnomalyKind::DuplicateElements { reader, key, value };
                        self.found.push((kind, vec![reader]));
                    }
                    let Some(&writer) = self.writer.get(&(key, value)) else {
                        let kind = AnomalyKind::GarbageRead { reader, key, value };
                        self.found.push((kind, vec![reader]));
                        continue;
                    };
                    if self.txns[writer].status == Status::Failed && failed_writers.insert(writer) {
                        let kind = AnomalyKind::G1a {
                            reader,
                            writer,
                            key,
                            value,
                        };
                        self.found.push((kind, vec![reader, writer]));
                    }
                }
                let Some(&value) = list.last() else { continue };
                let Some(&writer) = self.writer.get(&(key, value)) else {
                    continue;
                };
                if writer != reader && self.last_append[&(writer, key)] != value {
                    let kind = AnomalyKind::G1b {
                        reader,
                        writer,
                        key,
                        value,
                    };
                    self.found.push((kind, vec![reader, writer]));
                }
            }
        }
    }

    /// Committed transactions that read the same version of a key before each appending to it.
    fn check_lost_updates(&mut self) {
        let mut by_version: BTreeMap<(u64, &[u64]), Vec<usize>> = BTreeMap::new();
        for (t, txn) in self.txns.iter().enumerate() {
            if txn.status != Status::Ok {
                continue;
            }
            let mut first_read: HashMap<u64, &[u64]> = HashMap::new();
            let mut appended = HashSet::new();
            for micro in &txn.micros {
                match micro {
                    Micro::Read { key, list } if !appended.contains(key) => {
                        first_read.entry(*key).or_insert(list);
                    }
                    Micro::Read { .. } => {}
                    Micro::Append { key, .. } => {
                        if appended.insert(*key) {
                            if let Some(list) = first_read.get(key) {
                                by_version.entry((*key, list)).or_default().push(t);
                            }
                        }
                    }
                }
            }
        }
        for ((key, read), txns) in by_version {
            if txns.len() > 1 {
                let kind = AnomalyKind::LostUpdate {
                    key,
                    read: read.to_vec(),
                    txns: txns.clone(),
                };
                self.found.push((kind, txns));
            }
        }
    }

    /// Each key's version order: its longest read, when every other read is a prefix of it and
    /// it lists no value twice.
    fn version_orders(&mut self) -> BTreeMap<u64, &'a [u64]> {
        let mut orders = BTreeMap::new();
        for (&key, reads) in &self.reads {
            let Some(&(longest_reader, longest)) = reads.iter().max_by_key(|r| r.1.len()) else {
                continue;
            };
            if longest.iter().collect::<HashSet<_>>().len() < longest.len() {
                continue;
            }
            let incompatible = reads.iter().find(|r| !longest.starts_with(r.1));
            if let Some(&(reader, _)) = incompatible {
                let kind = AnomalyKind::IncompatibleOrder {
                    key,
                    reader,
                    longest: longest_reader,
                };
                self.found.push((kind, vec![reader, longest_reader]));
                continue;
            }
            orders.insert(key, longest);
        }
        self.stats.keys = orders.len();
        self.stats.longest = orders.values().map(|o| o.len()).max().unwrap_or(0);
        orders
    }

    /// The committed writer of `value` in `key`, if any.
    fn committed_writer(&self, key: u64, value: u64) -> Option<usize> {
        let &writer = self.writer.get(&(key, value))?;
        self.committed[writer].then_some(writer)
    }

    /// The dependency graph between committed transactions.
    fn dependencies(&mut self, orders: &BTreeMap<u64, &[u64]>) -> Graph<Dependency> {
        let mut graph = Graph::new(self.txns.len());
        for (&key, order) in orders {
            for pair in order.windows(2) {
                let before = self.committed_writer(key, pair[0]);
                let after = self.committed_writer(key, pair[1]);
                if let (Some(before), Some(after)) = (before, after) {
                    graph.add(before, after, Dependency::WriteWrite, key);
                }
            }
            for &(reader, list) in &self.reads[&key] {
                let last = list.last().and_then(|&v| self.committed_writer(key, v));
                if let Some(writer) = last {
                    graph.add(writer, reader, Dependency::WriteRead, key);
                }
                let next = order.get(list.len());
                if let Some(next) = next.and_then(|&v| self.committed_writer(key, v)) {
                    if last != Some(reader) {
                        graph.add(reader, next, Dependency::ReadWrite, key);
                    }
                }
            }
        }
        for edge in graph.edges() {
            match edge.kind {
                Dependency::WriteWrite => self.stats.ww += 1,
                Dependency::WriteRead => self.stats.wr += 1,
                Dependency::ReadWrite => self.stats.rw += 1,
            }
        }
        graph
    }

    /// G0, G1c and G-single cycles.
    fn check_cycles(&mut self, graph: &Graph<Dependency>) {
        let ww = |k| k == Dependency::WriteWrite;
        let ww_wr = |k| k != Dependency::ReadWrite;
        let g0 = |cycle| AnomalyKind::G0 { cycle };
        self.find_cycles(graph, ww, Dependency::WriteWrite, ww, g0);
        let g1c = |cycle| AnomalyKind::G1c { cycle };
        self.find_cycles(graph, ww_wr, Dependency::WriteRead, ww_wr, g1c);
        let g_single = |cycle| AnomalyKind::GSingle { cycle };
        self.find_cycles(graph, |_| true, Dependency::ReadWrite, ww_wr, g_single);
    }

    /// In each strongly connected component of the edges `component_edges` accepts, one
    /// shortest cycle made of an edge of kind `first` and a path back of edges `path_edges`
    /// accepts.
    fn find_cycles(
        &mut self,
        graph: &Graph<Dependency>,
        component_edges: impl Fn(Dependency) -> bool,
        first: Dependency,
        path_edges: impl Fn(Dependency) -> bool + Copy,
        anomaly: impl Fn(Vec<Step>) -> AnomalyKind,
    ) {
        for component in graph.components(component_edges) {
            let within = members(self.txns.len(), &component);
            let cycle = graph
                .edges()
                .filter(|e| e.kind == first && within[e.from] && within[e.to])
                .find_map(|&e| graph.cycle_through(e, &within, path_edges));
            if let Some(cycle) = cycle {
                let witnesses = cycle.iter().map(|e| e.from).collect();
                self.found
                    .push((anomaly(cycle.iter().map(step).collect()), witnesses));
            }
        }
    }
}

fn step(edge: &Edge<Dependency>) -> Step {
    Step {
        from: edge.from,
        to: edge.to,
        kind: edge.kind,
        key: edge.detail,
    }
}

#[cfg(test)]
mod tests;
