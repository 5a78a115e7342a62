//! An in-memory TiKV + PD cluster for tests and examples, served over real gRPC (HTTP/2) and,
//! on the same ports, gRPC-web (HTTP/1.1 with CORS) so browsers and Node reach it directly.
//! It answers only requests naming a local host, and browser pages of local origins, unless
//! told otherwise ([`MockClusterBuilder::allow_hosts`], [`MockClusterBuilder::allow_origins`]).
//!
//! PD serves membership, timestamps, regions, stores, GC safe points and keyspaces; every store
//! serves raw KV and Percolator transactions (reads, prewrite incl. async commit and 1PC,
//! commit, rollback, transaction status, lock resolution) with TiKV's region checks and
//! errors, and pessimistic locks with waiting and deadlock detection. All stores share one
//! engine, standing in for Raft replication. GC RPCs and BatchCommands answer `Unimplemented`
//! for now.
//!
//! With [`MockClusterBuilder::tls`], PD and the stores serve TLS or mutual TLS (HTTPS for
//! gRPC-web too); [`TestPki`] makes throwaway certificates to serve and trust.
//!
//! While clients run, a test can reshape the cluster ([`MockCluster::split_raw`],
//! [`MockCluster::merge`], [`MockCluster::transfer_leader`], [`MockCluster::stop_store`],
//! [`MockCluster::transfer_pd_leader`] among [`MockClusterBuilder::pd_members`]), inject
//! faults with [`Rule`]s, and read the [`Call`] log. The same controls are served as JSON over
//! HTTP under `/mock/api/v1/` on PD's port (docs/mock-admin.md), for tests in other languages.
//!
//! Regions can also split by themselves as they grow ([`MockClusterBuilder::split_policy`],
//! TiKV's split checker) and be merged by PD when small ([`MockClusterBuilder::merge_policy`],
//! PD's merge checker), so tests written for clusters configured with small regions run
//! against the mock too.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use tikv_client::testutils::MockCluster;
//! let cluster = MockCluster::builder().stores(3).split_raw(["b", "m"]).start().await?;
//! assert_eq!(cluster.regions().len(), 3);
//! assert_eq!(cluster.store_addrs().len(), 3);
//! # Ok(())
//! # }
//! ```

#![allow(clippy::disallowed_methods)] // the mock cluster is a native tokio program

mod admin;
pub mod check;
mod cluster;
mod connections;
mod fault;
mod guard;
mod http_api;
mod json;
mod mvcc;
mod pd;
mod pd_http;
mod raw;
mod router;
mod server;
#[cfg(feature = "simulation")]
pub mod sim;
mod split_merge;
mod stores;
mod tikv;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::backoff::SplitMix64;
use crate::proto::metapb;

pub use admin::parse_key;
pub use cluster::ApiVersion;
pub use fault::{
    region_error, region_error_kind, Call, Labels, Outcome, Reaction, Rule, RuleBuilder, RuleId,
    CALL_LOG_CAPACITY, REGION_ERROR_KINDS,
};
pub use split_merge::{MergePolicy, SplitPolicy};
pub use tikv::BATCH_COMMANDS_IN_FLIGHT;
pub use tls::{MockTls, TestPki, TestPkiFiles};

use cluster::{Cluster, DataKind};
use server::ServerHandle;
use stores::Stores;
use tikv::Node;

/// The largest message the mock accepts or sends: 256 MiB.
pub(crate) const MAX_MESSAGE: usize = 256 << 20;

/// Configures and starts a [`MockCluster`].
#[derive(Debug, Clone)]
pub struct MockClusterBuilder {
    pd_port: u16,
    pd_members: usize,
    store_ports: Vec<u16>,
    stores: usize,
    cluster_id: Option<u64>,
    api_version: ApiVersion,
    keyspaces: Vec<String>,
    raw_splits: Vec<Vec<u8>>,
    txn_splits: Vec<Vec<u8>>,
    seed: u64,
    split_policy: SplitPolicy,
    merge_policy: Option<MergePolicy>,
    allow_origins: Vec<String>,
    allow_hosts: Vec<String>,
    tls: Option<MockTls>,
    compress_responses: bool,
}

impl Default for MockClusterBuilder {
    fn default() -> Self {
        MockClusterBuilder {
            pd_port: 0,
            pd_members: 1,
            store_ports: Vec::new(),
            stores: 3,
            cluster_id: None,
            api_version: ApiVersion::V1,
            keyspaces: Vec::new(),
            raw_splits: Vec::new(),
            txn_splits: Vec::new(),
            seed: 0x5EED,
            split_policy: SplitPolicy::default(),
            merge_policy: None,
            allow_origins: Vec::new(),
            allow_hosts: Vec::new(),
            tls: None,
            compress_responses: false,
        }
    }
}

impl MockClusterBuilder {
    /// Serves PD (its first member) on this port of 127.0.0.1; 0 (the default) picks a free
    /// one.
    pub fn pd_port(mut self, port: u16) -> Self {
        self.pd_port = port;
        self
    }

    /// The number of PD members (default 1, at least 1), `pd-1`..`pd-n`, each on its own port
    /// of 127.0.0.1 (the first on [`pd_port`](Self::pd_port), the others on free ones). They
    /// share the cluster's state and timestamp oracle; the first leads until
    /// [`MockCluster::transfer_pd_leader`].
    pub fn pd_members(mut self, n: usize) -> Self {
        self.pd_members = n.max(1);
        self
    }

    /// Serves the stores on these ports (0 picks a free one); missing entries are 0.
    pub fn store_ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.store_ports = ports.into_iter().collect();
        self
    }

    /// The number of stores (default 3, at least 1). Every region has a peer on each.
    pub fn stores(mut self, n: usize) -> Self {
        self.stores = n.max(1);
        self
    }

    /// Uses this cluster id instead of a random one. Zero is not a valid id and is replaced.
    pub fn cluster_id(mut self, id: u64) -> Self {
        self.cluster_id = Some(id);
        self
    }

    /// The stores' API version (default v1).
    pub fn api_version(mut self, version: ApiVersion) -> Self {
        self.api_version = version;
        self
    }

    /// Keyspaces to create besides `DEFAULT` (which API v2 always has).
    pub fn keyspaces<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.keyspaces = names.into_iter().map(Into::into).collect();
        self
    }

    /// Initial region boundaries at these raw keys (as a raw client sends them: in API v2,
    /// with their `r` keyspace prefix).
    pub fn split_raw<K: Into<Vec<u8>>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        self.raw_splits.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Initial region boundaries at these transactional keys (memcomparable-encoded, as TiKV
    /// stores them).
    pub fn split_txn<K: Into<Vec<u8>>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        self.txn_splits.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Seeds the generator behind probabilistic fault rules (default fixed), so a run
    /// repeats exactly.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Lets regions split by themselves as they grow, as TiKV's split checker splits them
    /// (default: never). See [`SplitPolicy`].
    pub fn split_policy(mut self, policy: SplitPolicy) -> Self {
        self.split_policy = policy;
        self
    }

    /// Lets PD merge small regions into their neighbours, as its merge checker does (default:
    /// never). See [`MergePolicy`].
    pub fn merge_policy(mut self, policy: MergePolicy) -> Self {
        self.merge_policy = Some(policy);
        self
    }

    /// Lets web pages of these origins (`https://app.example:8443`, matched exactly) call the
    /// cluster from a browser, besides local ones (`http://` or `https://` `localhost`,
    /// `127.0.0.1` or `[::1]`, any port), which always may. `"*"` allows every origin: then any
    /// page the browser opens can read and change the cluster's data. A request from another
    /// origin is refused with 403 and granted no CORS.
    pub fn allow_origins<S: Into<String>>(mut self, origins: impl IntoIterator<Item = S>) -> Self {
        self.allow_origins
            .extend(origins.into_iter().map(Into::into));
        self
    }

    /// Serves requests that name these hosts (in `Host` or HTTP/2's `:authority`; any port),
    /// besides `localhost`, `127.0.0.1` and `[::1]`, which are always served. Requests naming
    /// another host are refused with 403, so that a page cannot reach the cluster by DNS
    /// rebinding its own host name to 127.0.0.1.
    pub fn allow_hosts<S: Into<String>>(mut self, hosts: impl IntoIterator<Item = S>) -> Self {
        self.allow_hosts.extend(hosts.into_iter().map(Into::into));
        self
    }

    /// Serves PD and the stores over TLS (mutual TLS when [`MockTls::require_client_cert`]
    /// is set); PD then advertises `https://` client URLs. gRPC-web and PD's HTTP API stay
    /// on the same ports, over HTTPS.
    pub fn tls(mut self, tls: MockTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Compresses PD's and the stores' responses with gzip when the client accepts it (TiKV's
    /// `server.grpc-compression-type = "gzip"`). Default off, as in TiKV and PD: responses go
    /// out uncompressed whatever the client accepts.
    pub fn compress_responses(mut self, compress: bool) -> Self {
        self.compress_responses = compress;
        self
    }

    /// The cluster's state and its stores' logic, with nothing served yet. A split policy
    /// whose maximum is below its split threshold is an `InvalidInput` error.
    fn node(&self) -> std::io::Result<Arc<Node>> {
        self.split_policy
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let id = self
            .cluster_id
            .filter(|id| *id != 0)
            .unwrap_or_else(|| SplitMix64::from_entropy().next_u64().max(1));
        let cluster = Arc::new(Cluster::new(
            id,
            self.api_version,
            self.stores,
            &self.keyspaces,
        ));
        for key in &self.raw_splits {
            cluster.split(&cluster.internal_key(key, DataKind::Raw));
        }
        for key in &self.txn_splits {
            cluster.split(&cluster.internal_key(key, DataKind::Txn));
        }
        let checks = split_merge::RegionChecks::new(self.split_policy, self.merge_policy);
        let mut node = Node::new(cluster, self.seed, checks);
        node.compress_responses = self.compress_responses;
        Ok(Arc::new(node))
    }

    /// Binds the ports and starts serving on the current tokio runtime. Unusable TLS
    /// material, or a split policy whose maximum is below its split threshold, is an
    /// `InvalidInput` error.
    pub async fn start(self) -> std::io::Result<MockCluster> {
        let tls = self.tls.as_ref().map(MockTls::acceptor).transpose()?;
        let node = self.node()?;
        let (id, cluster) = (node.cluster.id, node.cluster.clone());

        let mut pd_listeners = Vec::new();
        for i in 0..self.pd_members {
            let port = if i == 0 { self.pd_port } else { 0 };
            pd_listeners.push(server::Listener::bind(([127, 0, 0, 1], port).into()).await?);
        }
        let pd_addrs = pd_listeners
            .iter()
            .map(server::Listener::local_addr)
            .collect::<std::io::Result<Vec<_>>>()?;
        let pd_group = Arc::new(pd::PdGroup::new(id, pd_addrs, tls.is_some()));
        let policy = Arc::new(guard::HttpPolicy::new(self.allow_hosts, self.allow_origins));
        let stores = Arc::new(
            Stores::start(node.clone(), &self.store_ports, policy.clone(), tls.clone()).await?,
        );
        let pd_servers = pd_listeners
            .into_iter()
            .enumerate()
            .map(|(i, listener)| {
                let pd = pd::MockPd::new(node.clone(), pd_group.clone(), i);
                let http: Arc<dyn server::HttpAnswer> = Arc::new(http_api::HttpApis {
                    pd: pd_http::PdHttp::new(cluster.clone()),
                    admin: admin::Admin::new(node.clone(), pd_group.clone(), &stores),
                });
                server::serve(listener, pd.into_router(), Some(http), &policy, tls.clone())
            })
            .collect();
        log::info!(
            "mock cluster {id} ({:?}): PD {:?}, stores {:?}",
            self.api_version,
            pd_group.addrs(),
            stores.addrs()
        );
        Ok(MockCluster {
            node,
            pd: pd_group,
            _pd_servers: pd_servers,
            stores,
        })
    }
}

/// A running in-memory cluster. Dropping it stops every server.
pub struct MockCluster {
    node: Arc<Node>,
    pd: Arc<pd::PdGroup>,
    _pd_servers: Vec<ServerHandle>,
    stores: Arc<Stores>,
}

impl std::fmt::Debug for MockCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockCluster")
            .field("cluster_id", &self.cluster_id())
            .field("pd", &self.pd.addrs())
            .field("pd_leader", &self.pd_leader())
            .field("stores", &self.store_addrs())
            .finish()
    }
}

impl MockCluster {
    /// A builder with default settings: 3 stores, API v1, one region, ephemeral ports.
    pub fn builder() -> MockClusterBuilder {
        MockClusterBuilder::default()
    }

    fn cluster(&self) -> &Cluster {
        &self.node.cluster
    }

    /// The cluster id PD reports.
    pub fn cluster_id(&self) -> u64 {
        self.cluster().id
    }

    /// The stores' API version.
    pub fn api_version(&self) -> ApiVersion {
        self.cluster().api_version
    }

    /// The PD leader's address, `127.0.0.1:port`.
    pub fn pd_endpoint(&self) -> String {
        self.pd_addr().to_string()
    }

    /// The PD leader's socket address.
    pub fn pd_addr(&self) -> SocketAddr {
        self.pd.addrs()[self.pd.leader()]
    }

    /// Every PD member's address, by member index (`pd-1` first).
    pub fn pd_endpoints(&self) -> Vec<String> {
        self.pd.addrs().iter().map(ToString::to_string).collect()
    }

    /// The index of the PD member that leads (0 for `pd-1`).
    pub fn pd_leader(&self) -> usize {
        self.pd.leader()
    }

    /// How many Tso streams are open on PD now (one per live PD client that has asked for a
    /// timestamp): they close when their client is gone.
    pub fn open_tso_streams(&self) -> usize {
        self.pd.tso_streams()
    }

    /// How many connections `store`'s server accepted since it (last) started.
    pub fn connections_accepted(&self, store: u64) -> u64 {
        self.node.connections_accepted(store)
    }

    /// Makes PD member `to` (by index) the leader. The others then answer every request but
    /// GetMembers and GetClusterInfo with `Unavailable` "not leader", and fail the next request
    /// of an open Tso stream, which ends it; GetMembers on any member names the new leader.
    pub fn transfer_pd_leader(&self, to: usize) -> Result<(), String> {
        self.pd.transfer(to)
    }

    /// The stores' addresses, in store-id order.
    pub fn store_addrs(&self) -> Vec<String> {
        self.stores
            .addrs()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The store ids, in order.
    pub fn store_ids(&self) -> Vec<u64> {
        self.stores.ids()
    }

    /// Every region, in key order (boundaries in TiKV's internal key space).
    pub fn regions(&self) -> Vec<metapb::Region> {
        self.cluster()
            .meta()
            .all_regions()
            .map(|r| r.meta.clone())
            .collect()
    }

    /// The region holding a raw key (as a raw client sends it).
    pub fn region_of_raw_key(&self, key: &[u8]) -> Option<metapb::Region> {
        self.region_of(key, DataKind::Raw)
    }

    /// The region holding a transactional key (as a transaction client sends it).
    pub fn region_of_txn_key(&self, key: &[u8]) -> Option<metapb::Region> {
        self.region_of(key, DataKind::Txn)
    }

    fn region_of(&self, key: &[u8], kind: DataKind) -> Option<metapb::Region> {
        let internal = self.cluster().internal_key(key, kind);
        self.cluster()
            .meta()
            .region_containing(&internal)
            .map(|r| r.meta.clone())
    }

    /// The store leading `region`.
    pub fn leader_of(&self, region: u64) -> Option<u64> {
        self.cluster()
            .meta()
            .region_by_id(region)
            .map(|r| r.leader_store)
    }

    /// Splits at a raw key; returns the new (left) region, or `None` if the key is already a
    /// boundary.
    pub fn split_raw(&self, key: impl AsRef<[u8]>) -> Option<metapb::Region> {
        self.cluster()
            .split(&self.cluster().internal_key(key.as_ref(), DataKind::Raw))
    }

    /// Splits at a transactional key (memcomparable-encoded first).
    pub fn split_txn(&self, key: impl AsRef<[u8]>) -> Option<metapb::Region> {
        self.cluster()
            .split(&self.cluster().internal_key(key.as_ref(), DataKind::Txn))
    }

    /// Merges region `right` into its left neighbour `left`.
    pub fn merge(&self, left: u64, right: u64) -> Result<(), String> {
        self.cluster().merge(left, right)?;
        self.node.merged_into(left);
        Ok(())
    }

    /// Moves the leader of `region` to `store`.
    pub fn transfer_leader(&self, region: u64, store: u64) -> Result<(), String> {
        self.node.transfer_leader(region, store)
    }

    /// How long a new leader (after a leader transfer or a merge) takes to sync its max_ts
    /// from PD. Until it has, it answers async-commit and 1PC prewrites, and raw writes under
    /// API v2, with `MaxTimestampNotSynced`, as TiKV does after an election. Zero (sync at
    /// once) by default; applies to leader changes from now on.
    pub fn set_max_ts_sync_delay(&self, delay: std::time::Duration) {
        self.node.set_max_ts_sync_delay(delay);
    }

    /// Steps PD's clock forward by `by`, as NTP stepping a clock: every later timestamp is at
    /// least `by` ahead of the last one, so locks look older by `by` to anyone comparing
    /// them with a new timestamp (their TTLs may expire at once). Timestamps stay
    /// increasing.
    pub fn jump_pd_clock(&self, by: std::time::Duration) {
        self.cluster().jump_clock(by);
    }

    /// Cuts store `store` off from PD (`partitioned`), or heals the partition. The store
    /// keeps serving clients and its peers, but PD hears nothing from it: PD keeps naming the
    /// old leader of a region whose leadership the store takes (clients are corrected by
    /// `NotLeader`), and such a leader cannot sync its max_ts, so it refuses async-commit and
    /// 1PC prewrites (and API v2 raw writes) with `MaxTimestampNotSynced` until the partition
    /// heals. The store cannot split the regions it leads (TiKV asks PD for the new regions'
    /// ids first: `SplitRegion` answers with a region error, organic splits wait) and PD
    /// cannot merge them. On healing, PD learns the store's leaderships at once. False if
    /// there is no such store.
    pub fn partition_store_from_pd(&self, store: u64, partitioned: bool) -> bool {
        self.node.cut_off_from_pd(store, partitioned)
    }

    /// Stops a store's server: open connections fail and new ones are refused. Data is kept.
    pub fn stop_store(&self, store: u64) -> bool {
        self.stores.stop(store)
    }

    /// Starts a stopped store again on its old address.
    pub async fn start_store(&self, store: u64) -> std::io::Result<()> {
        self.stores.start_again(store).await
    }

    /// Makes followers' safe ts (their resolved ts) trail PD's latest timestamp by `lag`, so
    /// stale reads newer than that get `DataIsNotReady` from followers (default: no lag;
    /// locks hold the safe ts below them either way).
    pub fn set_safe_ts_lag(&self, lag: std::time::Duration) {
        self.node.set_safe_ts_lag(lag);
    }

    /// Makes PD answer every request with `Unavailable` ("not leader"), or serve again.
    pub fn set_pd_available(&self, available: bool) {
        self.cluster().meta().pd_available = available;
    }

    /// Adds a fault rule; it applies to calls that arrive from now on.
    pub fn add_rule(&self, rule: Rule) -> RuleId {
        self.node.faults.add(rule)
    }

    /// Removes a rule; false if it was not there.
    pub fn remove_rule(&self, id: RuleId) -> bool {
        self.node.faults.remove(id)
    }

    /// Removes every rule.
    pub fn clear_rules(&self) {
        self.node.faults.clear()
    }

    /// The calls the stores and PD served so far, in order (the most recent
    /// [`CALL_LOG_CAPACITY`] at most).
    pub fn calls(&self) -> Vec<Call> {
        self.node.faults.calls()
    }

    /// Empties the call log.
    pub fn clear_calls(&self) {
        self.node.faults.clear_calls()
    }

    /// The pessimistic lock requests waiting for a lock now, on every store.
    pub fn waiting_lock_requests(&self) -> usize {
        self.node.waiting_lock_requests()
    }

    /// The commands of BatchCommands streams running now, on every store: read from a stream
    /// and not yet answered (or given up when their client went away).
    pub fn batch_commands_running(&self) -> usize {
        self.node.batch_in_flight.running()
    }

    /// The most commands of BatchCommands streams that ever ran at once.
    pub fn batch_commands_peak(&self) -> usize {
        self.node.batch_in_flight.peak()
    }
}

/// Bounds of a key range, as `BTreeMap::range` takes them.
pub(crate) type KeyBounds<'a> = (std::ops::Bound<&'a [u8]>, std::ops::Bound<&'a [u8]>);

/// The `BTreeMap` bounds of `[start, end)`, an empty end being unbounded; `None` for an
/// inverted range, which holds nothing (`BTreeMap::range` would panic on it).
pub(crate) fn key_bounds<'a>(start: &'a [u8], end: &'a [u8]) -> Option<KeyBounds<'a>> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    if end.is_empty() {
        Some((Included(start), Unbounded))
    } else if start <= end {
        Some((Included(start), Excluded(end)))
    } else {
        None
    }
}
