//! Deterministic simulation: the client and the mock cluster in one seeded world.
//!
//! Every PD member, every store and every client is a host of a [turmoil] simulation: one
//! thread, simulated time, and a simulated network between the hosts. The client reaches the
//! stores through the transport seam's simulation connector and the mock serves on simulated
//! listeners; nothing else changes. Every random choice (the workload's operations, the fault
//! schedule, the mock's fault rules, the network's, the client's backoff jitter and, when
//! built with `--cfg tokio_unstable`, the order in which tasks run) is drawn from one seed, so
//! a run is a function of its seed: [`run`] returns a hash of its event trace, and running a
//! seed again gives the same hash.
//!
//! A run starts the cluster, lets a workload's clients run for a while under a fault schedule
//! drawn from the seed ([`Fault`]), heals everything, and judges the recorded history with a
//! checker from [`super::check`]. A failing seed prints a command that replays it.
//!
//! What the simulated world does not have: real sockets, wall-clock sleeps, TLS.

mod bank;
mod list_append;
mod nemesis;
mod register;
mod set;
mod workload;
mod world;

use std::fmt;
use std::time::Duration;

pub use nemesis::Fault;

/// What a simulation run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// The seed every random choice is drawn from.
    pub seed: u64,
    /// The workload the clients run.
    pub workload: Workload,
    /// The faults the schedule may inject (empty: none).
    pub faults: Vec<Fault>,
    /// Simulated time the clients run for; the cluster is then healed and the history read
    /// back.
    pub duration: Duration,
    /// Client hosts, each with its own client.
    pub clients: usize,
    /// Concurrent callers per client.
    pub callers: usize,
    /// Stores.
    pub stores: usize,
    /// PD members.
    pub pd_members: usize,
    /// A bug to plant in the client for this run (none by default).
    pub planted: Option<PlantedBug>,
}

impl Options {
    /// Every fault that applies to the workload, 2 clients of 3 callers, 3 stores, 3 PD
    /// members, 10 s of workload.
    pub fn new(seed: u64, workload: Workload) -> Self {
        Options {
            seed,
            workload,
            faults: Fault::ALL
                .into_iter()
                .filter(|f| f.applies(workload))
                .collect(),
            duration: Duration::from_secs(10),
            clients: 2,
            callers: 3,
            stores: 3,
            pd_members: 3,
            planted: None,
        }
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let planted = match self.planted {
            Some(bug) => format!(" --plant {bug}"),
            None => String::new(),
        };
        format!(
            "scripts/sim.sh --seed {} --workload {}{planted}",
            self.seed, self.workload
        )
    }
}

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Raw get and compare-and-swap on a few keys, checked for linearizability
    /// ([`super::check::register`]).
    Register,
    /// Transfers between accounts in transactions of every kind; every snapshot keeps the
    /// total ([`super::check::bank`]).
    Bank,
    /// Transactions of every kind reading and appending to lists; no anomaly snapshot
    /// isolation forbids ([`super::check::list_append`]).
    ListAppend,
    /// Transactional inserts of unique keys and snapshot scans; every acknowledged insert is
    /// read back at the end ([`super::check::set`]).
    Set,
}

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 4] = [
        Workload::Register,
        Workload::Bank,
        Workload::ListAppend,
        Workload::Set,
    ];
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::Register => "register",
            Workload::Bank => "bank",
            Workload::ListAppend => "list-append",
            Workload::Set => "set",
        })
    }
}

impl std::str::FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.to_string() == s)
            .ok_or_else(|| format!("no workload {s:?}: one of register, bank, list-append, set"))
    }
}

/// A bug the simulation can plant in the client, to show that it finds such bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// Raw compare-and-swap believes the answer to a resend after an attempt that may have
    /// reached TiKV: a resent swap that finds the value its first attempt wrote reports "not
    /// swapped" although it swapped (the client must report it undetermined instead).
    CasTrustsResend,
    /// A commit whose primary's commit (or async-commit/1PC prewrite) may have landed rolls
    /// the transaction back when its outcome is undetermined or the commit is cancelled (the
    /// client must leave it to the primary): where the primary did commit, the keys in other
    /// regions are rolled back and the transaction is torn. This is the bug the client had
    /// before cancellation was made safe.
    RollbackUndetermined,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 2] = [
        PlantedBug::CasTrustsResend,
        PlantedBug::RollbackUndetermined,
    ];

    /// Its name, as the client's hook asks for it (`rt::simulation::planted`).
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::CasTrustsResend => "cas-trusts-resend",
            PlantedBug::RollbackUndetermined => "rollback-undetermined",
        }
    }

    /// The workload that finds it.
    pub fn workload(self) -> Workload {
        match self {
            PlantedBug::CasTrustsResend => Workload::Register,
            PlantedBug::RollbackUndetermined => Workload::Bank,
        }
    }
}

impl fmt::Display for PlantedBug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PlantedBug {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PlantedBug::ALL
            .into_iter()
            .find(|b| b.to_string() == s)
            .ok_or_else(|| {
                format!("no planted bug {s:?}: cas-trusts-resend or rollback-undetermined")
            })
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The run's options.
    pub options: Options,
    /// FNV-1a hash of the event trace (operations with their results and times, faults).
    pub trace_hash: u64,
    /// Events in the trace.
    pub events: u64,
    /// Client operations recorded.
    pub operations: usize,
    /// Faults injected, by kind, in [`Fault::ALL`] order.
    pub faults: Vec<(Fault, usize)>,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// The checker's verdict: its statistics, or the anomalies it found.
    pub verdict: Result<String, String>,
}

impl Outcome {
    /// Whether the checker found nothing wrong.
    pub fn passed(&self) -> bool {
        self.verdict.is_ok()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} {}: {} ops, {} events, trace {:016x}, {:?} simulated; faults",
            self.options.seed,
            self.options.workload,
            self.operations,
            self.events,
            self.trace_hash,
            self.simulated
        )?;
        for (fault, n) in &self.faults {
            write!(f, " {fault}={n}")?;
        }
        match &self.verdict {
            Ok(stats) => write!(f, "; ok: {stats}"),
            Err(anomalies) => write!(
                f,
                "; ANOMALY: {anomalies}\nreplay: {}",
                self.options.replay_command()
            ),
        }
    }
}

/// Runs one simulation. A harness failure (the cluster could not start, a host panicked) is an
/// `Err`; anomalies are in the [`Outcome`].
pub fn run(options: &Options) -> Result<Outcome, String> {
    world::run(options)
}

/// Whether every trace event is printed (`SIM_TRACE=1`), to compare two runs line by line.
static PRINT_TRACE: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::var_os("SIM_TRACE").is_some_and(|v| v == "1"));

/// The run's event trace: a running FNV-1a hash of every event.
#[derive(Debug)]
pub(crate) struct Trace {
    seed: u64,
    hash: u64,
    events: u64,
}

impl Trace {
    fn new(seed: u64) -> Self {
        Trace {
            seed,
            hash: 0xcbf2_9ce4_8422_2325,
            events: 0,
        }
    }

    /// Adds an event at simulated time `at`.
    pub(crate) fn record(&mut self, at: Duration, event: &str) {
        self.events += 1;
        if *PRINT_TRACE {
            eprintln!("sim {} {at:?}: {event}", self.seed);
        }
        let at = at.as_nanos().to_le_bytes();
        for byte in at.iter().chain(event.as_bytes()).chain([&0xff]) {
            self.hash ^= u64::from(*byte);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The time since the simulation started.
pub(crate) fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}
