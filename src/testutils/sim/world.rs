//! The simulated world: PD members and stores as turmoil hosts serving the mock cluster, the
//! workload's clients as client hosts, and the loop that steps time and injects the fault
//! schedule.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::nemesis::{Fault, Nemesis};
use super::workload::{start_gc, start_txn, Env, Judge};
use super::{bank, list_append, register, set, Options, Outcome, PlantedBug, Trace, Workload};
use crate::backoff::SplitMix64;
use crate::testutils::guard::HttpPolicy;
use crate::testutils::pd::{MockPd, PdGroup};
use crate::testutils::server::{self, Listener};
use crate::testutils::stores::serve_store;
use crate::testutils::tikv::Node;
use crate::testutils::MockCluster;

/// The simulated wall clock's start: the same for every run (2026-01-01T00:00:00Z).
const EPOCH: Duration = Duration::from_secs(1_767_225_600);
const PD_PORT: u16 = 2379;
const STORE_PORT: u16 = 20160;
/// Simulated time a run may take beyond its workload (retries, heal, final reads) before it
/// is called stuck.
const GRACE: Duration = Duration::from_secs(300);

/// The cluster's hosts and the handles the nemesis acts through.
pub(super) struct Cluster {
    pub node: Arc<Node>,
    pub pd: Arc<PdGroup>,
    /// PD members' host names, by index.
    pub pd_hosts: Vec<String>,
    /// Stores' ids and host names.
    pub stores: Vec<(u64, String)>,
    /// Each store's switch: whether its server runs (by position in `stores`).
    pub store_up: Vec<tokio::sync::watch::Sender<bool>>,
    /// Client host names.
    pub clients: Vec<String>,
    /// PD's endpoints, for clients.
    pub pd_endpoints: Vec<String>,
}

pub(super) fn run(options: &Options) -> Result<Outcome, String> {
    let mut entropy = SplitMix64::new(options.seed);
    let planted = options.planted.map(PlantedBug::name);
    crate::rt::simulation::simulate(Some(Box::new(move || entropy.next_u64())), planted);
    let outcome = run_seeded(options);
    crate::rt::simulation::simulate(None, None);
    outcome
}

fn run_seeded(options: &Options) -> Result<Outcome, String> {
    let mut rng = SplitMix64::new(options.seed);
    let mut sim = turmoil::Builder::new()
        .epoch(std::time::UNIX_EPOCH + EPOCH)
        .rng_seed(rng.next_u64())
        .simulation_duration(options.duration + GRACE)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_micros(200))
        .max_message_latency(Duration::from_millis(5))
        .enable_random_order()
        .build();
    let trace = Rc::new(RefCell::new(Trace::new(options.seed)));
    let cluster = start_cluster(&mut sim, options, rng.next_u64())?;
    let env = Env::new(options, &cluster.pd_endpoints, &trace);
    let history = start_workload(&mut sim, &cluster.clients, &env, &mut rng);
    // Raw data has no versions to collect.
    let gc = (options.workload != Workload::Register).then(|| start_gc(&mut sim, &env));
    let mut nemesis = Nemesis::plan(options, rng.next_u64(), gc);
    let mut healed = false;
    loop {
        if sim.elapsed() < options.duration {
            nemesis.act(&mut sim, &cluster, &trace);
        } else if !healed {
            // The workload's time is up: the final reads run on a whole cluster.
            nemesis.heal(&mut sim, &cluster, &trace);
            healed = true;
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(format!("seed {}: {e}", options.seed)),
        }
    }
    nemesis.heal(&mut sim, &cluster, &trace);
    let simulated = sim.elapsed();
    let (operations, verdict) = history.judge();
    let trace = trace.borrow();
    Ok(Outcome {
        options: options.clone(),
        trace_hash: trace.hash,
        events: trace.events,
        operations,
        faults: Fault::ALL
            .iter()
            .filter(|f| options.faults.contains(f))
            .map(|f| match f {
                Fault::Cancellation => (*f, history.cancelled()),
                _ => (*f, nemesis.count(*f)),
            })
            .collect(),
        simulated,
        verdict,
    })
}

/// Registers the workload's client hosts.
fn start_workload(
    sim: &mut turmoil::Sim<'_>,
    clients: &[String],
    env: &Env,
    rng: &mut SplitMix64,
) -> Box<dyn Judge> {
    match env.options.workload {
        Workload::Register => register::start(sim, clients, env, rng),
        Workload::Bank => txn_workload(sim, clients, env, rng, bank::Bank::new(env)),
        Workload::ListAppend => {
            txn_workload(sim, clients, env, rng, list_append::ListAppend::new(env))
        }
        Workload::Set => txn_workload(sim, clients, env, rng, set::Set::new(env)),
    }
}

fn txn_workload<W: super::workload::TxnWorkload + Judge>(
    sim: &mut turmoil::Sim<'_>,
    clients: &[String],
    env: &Env,
    rng: &mut SplitMix64,
    workload: W,
) -> Box<dyn Judge> {
    let workload = Rc::new(workload);
    start_txn(sim, clients, env, rng, workload.clone());
    Box::new(workload)
}

/// Registers the PD members and the stores as hosts serving one mock cluster.
fn start_cluster(
    sim: &mut turmoil::Sim<'_>,
    options: &Options,
    seed: u64,
) -> Result<Cluster, String> {
    let pd_hosts: Vec<String> = (1..=options.pd_members).map(|i| format!("pd{i}")).collect();
    let store_hosts: Vec<String> = (1..=options.stores).map(|i| format!("store{i}")).collect();
    let clients: Vec<String> = (1..=options.clients)
        .map(|i| format!("client{i}"))
        .collect();
    let pd_addrs: Vec<SocketAddr> = pd_hosts
        .iter()
        .map(|h| SocketAddr::new(sim.lookup(h.as_str()), PD_PORT))
        .collect();
    let store_addrs: Vec<SocketAddr> = store_hosts
        .iter()
        .map(|h| SocketAddr::new(sim.lookup(h.as_str()), STORE_PORT))
        .collect();
    let node = MockCluster::builder()
        .stores(options.stores)
        .pd_members(options.pd_members)
        .cluster_id(seed | 1)
        .seed(seed)
        .node()
        .map_err(|e| e.to_string())?;
    let ids: Vec<u64> = node.cluster.meta().stores.keys().copied().collect();
    for (id, addr) in ids.iter().zip(&store_addrs) {
        if let Some(store) = node.cluster.meta().stores.get_mut(id) {
            store.meta.address = addr.to_string();
            store.meta.peer_address = addr.to_string();
            store.meta.status_address = addr.to_string();
        }
    }
    let pd = Arc::new(PdGroup::new(node.cluster.id, pd_addrs.clone(), false));
    let hosts = pd_addrs
        .iter()
        .chain(&store_addrs)
        .map(|a| a.ip().to_string());
    let policy = Arc::new(HttpPolicy::new(hosts.collect::<Vec<_>>(), Vec::new()));
    for (index, host) in pd_hosts.iter().enumerate() {
        let (node, pd, policy) = (node.clone(), pd.clone(), policy.clone());
        sim.host(host.as_str(), move || {
            let router = MockPd::new(node.clone(), pd.clone(), index).into_router();
            let policy = policy.clone();
            async move {
                let listener = Listener::bind(([0, 0, 0, 0], PD_PORT).into()).await?;
                let _server = server::serve(listener, router, None, &policy, None);
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
    let mut store_up = Vec::new();
    for (id, host) in ids.iter().zip(&store_hosts) {
        let (node, policy, id) = (node.clone(), policy.clone(), *id);
        let (up, watch) = tokio::sync::watch::channel(true);
        store_up.push(up);
        sim.host(host.as_str(), move || {
            let (node, policy, mut watch) = (node.clone(), policy.clone(), watch.clone());
            // A crash stops the server (its connections fail, its port closes) rather than
            // turmoil's host crash, which drops the host's tasks in an order set by tokio's
            // process-wide task ids, so not by the seed.
            async move {
                loop {
                    watch.wait_for(|up| *up).await?;
                    let listener = Listener::bind(([0, 0, 0, 0], STORE_PORT).into()).await?;
                    let server = serve_store(&node, id, listener, &policy, None);
                    watch.wait_for(|up| !*up).await?;
                    drop(server);
                }
            }
        });
    }
    Ok(Cluster {
        node,
        pd,
        pd_endpoints: pd_addrs.iter().map(SocketAddr::to_string).collect(),
        pd_hosts,
        stores: ids.into_iter().zip(store_hosts).collect(),
        store_up,
        clients,
    })
}
