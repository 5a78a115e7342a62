//! The fault schedule: drawn from the seed before the run, applied as simulated time
//! reaches each fault, and undone after a while (or at the end of the workload).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use super::world::Cluster;
use super::{bank, list_append, register, set, Options, Trace, Workload};
use crate::backoff::SplitMix64;
use crate::testutils::cluster::DataKind;
use crate::testutils::{Rule, RuleId};

/// A kind of fault a schedule may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The network between a client and a store or PD member drops everything for a while.
    Partition,
    /// A store is cut off from PD for a while (it still serves clients): PD names the old
    /// leaders of regions whose leadership the store takes, those leaders cannot sync max_ts
    /// for async commit and 1PC, and the store's regions neither split nor merge.
    StorePdPartition,
    /// A store's server stops at once (its connections fail, its port closes) and restarts
    /// later with its data.
    StoreCrash,
    /// PD's leadership moves to another member.
    PdLeaderChange,
    /// A region splits at a key the workload uses.
    Split,
    /// Two neighbouring regions merge.
    Merge,
    /// A region's leader moves to another store.
    LeaderTransfer,
    /// For a while, stores execute some requests and then lose the reply (the connection is
    /// cut after the effect).
    LostReply,
    /// For a while, stores delay some replies after executing them (replies overtake each
    /// other).
    DelayedReply,
    /// PD's clock jumps forward by 1 to 10 s: every lock looks that much older to the
    /// timestamps issued after, so lock resolution may roll back transactions still running
    /// (their locks' TTL seems past).
    TimeJump,
    /// A client advances the GC safe point to 0.5 to 5 s ago (never past a transaction or
    /// snapshot in use), resolving the locks older than that first (transactional workloads
    /// only).
    Gc,
    /// Clients give up on some calls after a random time, at whatever await they reached.
    Cancellation,
}

impl Fault {
    /// Every kind.
    pub const ALL: [Fault; 12] = [
        Fault::Partition,
        Fault::StorePdPartition,
        Fault::StoreCrash,
        Fault::PdLeaderChange,
        Fault::Split,
        Fault::Merge,
        Fault::LeaderTransfer,
        Fault::LostReply,
        Fault::DelayedReply,
        Fault::TimeJump,
        Fault::Gc,
        Fault::Cancellation,
    ];

    /// Whether the fault means anything to `workload` (raw data has no versions to collect).
    pub fn applies(self, workload: Workload) -> bool {
        !(self == Fault::Gc && workload == Workload::Register)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::Partition => "partition",
            Fault::StorePdPartition => "store-pd-partition",
            Fault::StoreCrash => "store-crash",
            Fault::PdLeaderChange => "pd-leader-change",
            Fault::Split => "split",
            Fault::Merge => "merge",
            Fault::LeaderTransfer => "leader-transfer",
            Fault::LostReply => "lost-reply",
            Fault::DelayedReply => "delayed-reply",
            Fault::TimeJump => "time-jump",
            Fault::Gc => "gc",
            Fault::Cancellation => "cancellation",
        })
    }
}

/// How to undo a fault.
enum Undo {
    Repair(String, String),
    /// Starts the store at this position again.
    Restart(usize),
    RemoveRule(RuleId),
    /// Lets the store reach PD again.
    Reconnect(u64),
}

/// The schedule and the faults in force.
pub(super) struct Nemesis {
    workload: Workload,
    /// Where to ask for a GC (none: the workload has no versions to collect).
    gc: Option<tokio::sync::mpsc::UnboundedSender<Duration>>,
    rng: SplitMix64,
    planned: VecDeque<(Duration, Fault)>,
    active: Vec<(Duration, Undo)>,
    counts: Vec<(Fault, usize)>,
}

impl Nemesis {
    /// Draws when each fault strikes: one every 100 to 600 ms of the workload.
    pub(super) fn plan(
        options: &Options,
        seed: u64,
        gc: Option<tokio::sync::mpsc::UnboundedSender<Duration>>,
    ) -> Nemesis {
        let mut rng = SplitMix64::new(seed);
        let kinds: Vec<Fault> = Fault::ALL
            .into_iter()
            .filter(|f| options.faults.contains(f) && *f != Fault::Cancellation)
            .collect();
        let mut planned = VecDeque::new();
        let mut at = Duration::from_millis(100);
        while !kinds.is_empty() && at < options.duration {
            let kind = kinds[rng.below(kinds.len() as u64) as usize];
            planned.push_back((at, kind));
            at += Duration::from_millis(100 + rng.below(500));
        }
        Nemesis {
            workload: options.workload,
            gc,
            rng,
            planned,
            active: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// How many faults of `kind` were injected.
    pub(super) fn count(&self, kind: Fault) -> usize {
        self.counts
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }

    /// Injects the faults due and undoes those that have run their course.
    pub(super) fn act(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        cluster: &Cluster,
        trace: &std::cell::RefCell<Trace>,
    ) {
        let now = sim.elapsed();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.active = later;
        for (_, undo) in due {
            undo_fault(sim, cluster, undo, now, trace);
        }
        while self.planned.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, kind)) = self.planned.pop_front() else {
                break;
            };
            if let Some((what, undo)) = self.inject(sim, cluster, kind) {
                trace
                    .borrow_mut()
                    .record(now, &format!("fault {kind}: {what}"));
                match self.counts.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, n)) => *n += 1,
                    None => self.counts.push((kind, 1)),
                }
                if let Some(undo) = undo {
                    let lasts = Duration::from_millis(100 + self.rng.below(1900));
                    self.active.push((now + lasts, undo));
                }
            }
        }
    }

    /// Undoes every fault still in force.
    pub(super) fn heal(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        cluster: &Cluster,
        trace: &std::cell::RefCell<Trace>,
    ) {
        let now = sim.elapsed();
        for (_, undo) in std::mem::take(&mut self.active) {
            undo_fault(sim, cluster, undo, now, trace);
        }
    }

    /// Injects one fault: what it did, and how to undo it (if it is undone). `None` when it
    /// does not apply now (no second region to merge, ...).
    fn inject(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        cluster: &Cluster,
        kind: Fault,
    ) -> Option<(String, Option<Undo>)> {
        let rng = &mut self.rng;
        match kind {
            Fault::Partition => {
                let client = pick(rng, &cluster.clients)?.clone();
                let servers: Vec<&String> = cluster
                    .stores
                    .iter()
                    .map(|(_, h)| h)
                    .chain(&cluster.pd_hosts)
                    .collect();
                let server = (*pick(rng, &servers)?).clone();
                sim.partition(client.as_str(), server.as_str());
                let what = format!("{client} <-> {server}");
                Some((what, Some(Undo::Repair(client, server))))
            }
            Fault::StorePdPartition => {
                let (store, _) = *pick(rng, &cluster.stores)?;
                if cluster.node.cluster.meta().is_cut_off(store) {
                    return None;
                }
                cluster.node.cut_off_from_pd(store, true);
                Some((format!("store {store}"), Some(Undo::Reconnect(store))))
            }
            Fault::StoreCrash => {
                let index = rng.below(cluster.stores.len() as u64) as usize;
                let up = cluster.store_up.get(index)?;
                if !*up.borrow() {
                    return None;
                }
                up.send_replace(false);
                let host = cluster.stores[index].1.clone();
                Some((host, Some(Undo::Restart(index))))
            }
            Fault::PdLeaderChange => {
                let members = cluster.pd_hosts.len();
                if members < 2 {
                    return None;
                }
                let to =
                    (cluster.pd.leader() + 1 + rng.below(members as u64 - 1) as usize) % members;
                cluster.pd.transfer(to).ok()?;
                Some((cluster.pd_hosts[to].clone(), None))
            }
            Fault::Split => {
                let (key, kind) = split_key(self.workload, rng);
                let c = &cluster.node.cluster;
                let left = c.split(&c.internal_key(key.as_bytes(), kind))?;
                Some((format!("at {key:?}, new region {}", left.id), None))
            }
            Fault::Merge => {
                let c = &cluster.node.cluster;
                let ids: Vec<u64> = c.meta().all_regions().map(|r| r.meta.id).collect();
                if ids.len() < 2 {
                    return None;
                }
                let right = 1 + rng.below(ids.len() as u64 - 1) as usize;
                let (left, right) = (ids[right - 1], ids[right]);
                c.merge(left, right).ok()?;
                cluster.node.merged_into(left);
                Some((format!("{right} into {left}"), None))
            }
            Fault::LeaderTransfer => {
                let c = &cluster.node.cluster;
                let regions: Vec<(u64, u64)> = c
                    .meta()
                    .all_regions()
                    .map(|r| (r.meta.id, r.leader_store))
                    .collect();
                let (region, leader) = *pick(rng, &regions)?;
                let others: Vec<u64> = cluster
                    .stores
                    .iter()
                    .map(|(id, _)| *id)
                    .filter(|id| *id != leader)
                    .collect();
                let to = *pick(rng, &others)?;
                cluster.node.transfer_leader(region, to).ok()?;
                Some((format!("region {region} to store {to}"), None))
            }
            Fault::LostReply => {
                let p = 0.05 + rng.below(25) as f64 / 100.0;
                let id = cluster
                    .node
                    .faults
                    .add(Rule::on("*").probability(p).lose_reply());
                Some((format!("p={p:.2}"), Some(Undo::RemoveRule(id))))
            }
            Fault::DelayedReply => {
                let by = Duration::from_millis(1 + rng.below(80));
                let p = 0.1 + rng.below(40) as f64 / 100.0;
                let rule = Rule::on("*").probability(p).delay_reply(by);
                let id = cluster.node.faults.add(rule);
                Some((format!("p={p:.2} by {by:?}"), Some(Undo::RemoveRule(id))))
            }
            Fault::TimeJump => {
                let by = Duration::from_millis(1000 + rng.below(9000));
                cluster.node.cluster.jump_clock(by);
                Some((format!("by {by:?}"), None))
            }
            Fault::Gc => {
                let behind = Duration::from_millis(500 + rng.below(4500));
                self.gc.as_ref()?.send(behind).ok()?;
                Some((format!("to {behind:?} ago"), None))
            }
            Fault::Cancellation => None,
        }
    }
}

fn undo_fault(
    sim: &mut turmoil::Sim<'_>,
    cluster: &Cluster,
    undo: Undo,
    now: Duration,
    trace: &std::cell::RefCell<Trace>,
) {
    let what = match undo {
        Undo::Repair(a, b) => {
            sim.repair(a.as_str(), b.as_str());
            format!("repair {a} <-> {b}")
        }
        Undo::Restart(index) => {
            cluster.store_up[index].send_replace(true);
            format!("restart {}", cluster.stores[index].1)
        }
        Undo::RemoveRule(id) => {
            cluster.node.faults.remove(id);
            format!("remove rule {id:?}")
        }
        Undo::Reconnect(store) => {
            cluster.node.cut_off_from_pd(store, false);
            format!("store {store} reaches PD again")
        }
    };
    trace.borrow_mut().record(now, &what);
}

/// A key the workload uses (or the one after its last), where a split fault may cut.
fn split_key(workload: Workload, rng: &mut SplitMix64) -> (String, DataKind) {
    match workload {
        Workload::Register => (
            register::key_name(rng.below(register::KEYS + 1)),
            DataKind::Raw,
        ),
        Workload::Bank => (bank::key_name(rng.below(bank::ACCOUNTS + 1)), DataKind::Txn),
        Workload::ListAppend => (
            list_append::key_name(rng.below(list_append::KEYS + 1)),
            DataKind::Txn,
        ),
        // Between the elements of two callers, or within one caller's.
        Workload::Set => {
            let caller = (rng.below(3) << 40) | (rng.below(4) << 32);
            (set::key_name(caller | rng.below(300)), DataKind::Txn)
        }
    }
}

fn pick<'a, T>(rng: &mut SplitMix64, items: &'a [T]) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[rng.below(items.len() as u64) as usize])
}
