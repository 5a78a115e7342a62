//! An in-memory TiKV + PD cluster for tests and examples, served over real gRPC (HTTP/2) and,
//! on the same ports, gRPC-web (HTTP/1.1 with CORS) so browsers and Node reach it directly.
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
//! [`MockCluster::merge`], [`MockCluster::transfer_leader`], [`MockCluster::stop_store`]),
//! inject faults with [`Rule`]s, and read the [`Call`] log.
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

mod cluster;
mod fault;
mod mvcc;
mod pd;
mod pd_http;
mod raw;
mod router;
mod server;
mod tikv;
mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::codec::CompressionEncoding;

use crate::backoff::SplitMix64;
use crate::proto::metapb;
use crate::proto::tikvpb::tikv_server::TikvServer;

pub use cluster::ApiVersion;
pub use fault::{
    region_error_kind, Call, Labels, Outcome, Reaction, Rule, RuleBuilder, RuleId,
    CALL_LOG_CAPACITY,
};
pub use tikv::BATCH_COMMANDS_IN_FLIGHT;
pub use tls::{MockTls, TestPki, TestPkiFiles};

use cluster::{Cluster, DataKind};
use router::Router;
use server::ServerHandle;
use tikv::{MockTikv, Node};

/// The largest message the mock accepts or sends: 256 MiB.
const MAX_MESSAGE: usize = 256 << 20;

/// Configures and starts a [`MockCluster`].
#[derive(Debug, Clone)]
pub struct MockClusterBuilder {
    pd_port: u16,
    store_ports: Vec<u16>,
    stores: usize,
    cluster_id: Option<u64>,
    api_version: ApiVersion,
    keyspaces: Vec<String>,
    raw_splits: Vec<Vec<u8>>,
    txn_splits: Vec<Vec<u8>>,
    seed: u64,
    tls: Option<MockTls>,
}

impl Default for MockClusterBuilder {
    fn default() -> Self {
        MockClusterBuilder {
            pd_port: 0,
            store_ports: Vec::new(),
            stores: 3,
            cluster_id: None,
            api_version: ApiVersion::V1,
            keyspaces: Vec::new(),
            raw_splits: Vec::new(),
            txn_splits: Vec::new(),
            seed: 0x5EED,
            tls: None,
        }
    }
}

impl MockClusterBuilder {
    /// Serves PD on this port of 127.0.0.1; 0 (the default) picks a free one.
    pub fn pd_port(mut self, port: u16) -> Self {
        self.pd_port = port;
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

    /// Serves PD and the stores over TLS (mutual TLS when [`MockTls::require_client_cert`]
    /// is set); PD then advertises `https://` client URLs. gRPC-web and PD's HTTP API stay
    /// on the same ports, over HTTPS.
    pub fn tls(mut self, tls: MockTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Binds the ports and starts serving on the current tokio runtime. Unusable TLS
    /// material is an `InvalidInput` error.
    pub async fn start(self) -> std::io::Result<MockCluster> {
        let tls = self.tls.as_ref().map(MockTls::acceptor).transpose()?;
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
        let node = Arc::new(Node::new(cluster.clone(), self.seed));

        let pd_listener = TcpListener::bind(("127.0.0.1", self.pd_port)).await?;
        let pd_addr = pd_listener.local_addr()?;
        let store_ids: Vec<u64> = cluster.meta().stores.keys().copied().collect();
        let mut stores = Vec::new();
        for (i, store_id) in store_ids.into_iter().enumerate() {
            let port = self.store_ports.get(i).copied().unwrap_or(0);
            let listener = TcpListener::bind(("127.0.0.1", port)).await?;
            let addr = listener.local_addr()?;
            if let Some(store) = cluster.meta().stores.get_mut(&store_id) {
                store.meta.address = addr.to_string();
                store.meta.peer_address = addr.to_string();
                store.meta.status_address = addr.to_string();
            }
            let handle = serve_store(&node, store_id, listener, tls.clone());
            stores.push(StoreServer {
                id: store_id,
                addr,
                handle: Some(handle),
            });
        }
        let pd = server::serve(
            pd_listener,
            pd::MockPd::new(node.clone(), pd_addr, tls.is_some()).into_router(),
            Some(pd_http::PdHttp::new(cluster.clone())),
            tls.clone(),
        );
        log::info!(
            "mock cluster {id} ({:?}): PD {pd_addr}, stores {:?}",
            self.api_version,
            stores.iter().map(|s| s.addr).collect::<Vec<_>>()
        );
        Ok(MockCluster {
            node,
            pd_addr,
            _pd: pd,
            stores: Mutex::new(stores),
            tls,
        })
    }
}

fn serve_store(
    node: &Arc<Node>,
    store_id: u64,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
) -> ServerHandle {
    let service = TikvServer::new(MockTikv::new(node.clone(), store_id))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let handle = server::serve(listener, Router::default().add(service), None, tls);
    node.set_killer(store_id, handle.connection_killer());
    handle
}

#[derive(Debug)]
struct StoreServer {
    id: u64,
    addr: SocketAddr,
    handle: Option<ServerHandle>,
}

/// A running in-memory cluster. Dropping it stops every server.
pub struct MockCluster {
    node: Arc<Node>,
    pd_addr: SocketAddr,
    _pd: ServerHandle,
    stores: Mutex<Vec<StoreServer>>,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for MockCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockCluster")
            .field("cluster_id", &self.cluster_id())
            .field("pd", &self.pd_addr)
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

    /// PD's address, `127.0.0.1:port`.
    pub fn pd_endpoint(&self) -> String {
        self.pd_addr.to_string()
    }

    /// PD's socket address.
    pub fn pd_addr(&self) -> SocketAddr {
        self.pd_addr
    }

    /// The stores' addresses, in store-id order.
    pub fn store_addrs(&self) -> Vec<String> {
        self.lock_stores()
            .iter()
            .map(|s| s.addr.to_string())
            .collect()
    }

    /// The store ids, in order.
    pub fn store_ids(&self) -> Vec<u64> {
        self.lock_stores().iter().map(|s| s.id).collect()
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
        // The merged range's leader now answers for reads its store never saw: sync it.
        if let Some(store) = self.leader_of(left) {
            self.node.new_leader(left, store);
        }
        Ok(())
    }

    /// Moves the leader of `region` to `store`.
    pub fn transfer_leader(&self, region: u64, store: u64) -> Result<(), String> {
        self.cluster().transfer_leader(region, store)?;
        self.node.new_leader(region, store);
        Ok(())
    }

    /// How long a new leader (after a leader transfer or a merge) takes to sync its max_ts
    /// from PD. Until it has, it answers async-commit and 1PC prewrites, and raw writes under
    /// API v2, with `MaxTimestampNotSynced`, as TiKV does after an election. Zero (sync at
    /// once) by default; applies to leader changes from now on.
    pub fn set_max_ts_sync_delay(&self, delay: std::time::Duration) {
        self.node.set_max_ts_sync_delay(delay);
    }

    /// Stops a store's server: open connections fail and new ones are refused. Data is kept.
    pub fn stop_store(&self, store: u64) -> bool {
        let mut stores = self.lock_stores();
        let Some(s) = stores.iter_mut().find(|s| s.id == store) else {
            return false;
        };
        let was_up = s.handle.take().is_some();
        if let Some(meta) = self.cluster().meta().stores.get_mut(&store) {
            meta.up = false;
        }
        was_up
    }

    /// Starts a stopped store again on its old address.
    pub async fn start_store(&self, store: u64) -> std::io::Result<()> {
        let addr = self
            .lock_stores()
            .iter()
            .find(|s| s.id == store)
            .map(|s| s.addr)
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("no store {store}"))
            })?;
        let listener = TcpListener::bind(addr).await?;
        let handle = serve_store(&self.node, store, listener, self.tls.clone());
        if let Some(s) = self.lock_stores().iter_mut().find(|s| s.id == store) {
            s.handle = Some(handle);
        }
        if let Some(meta) = self.cluster().meta().stores.get_mut(&store) {
            meta.up = true;
        }
        Ok(())
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

    fn lock_stores(&self) -> std::sync::MutexGuard<'_, Vec<StoreServer>> {
        self.stores.lock().unwrap_or_else(PoisonError::into_inner)
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
