//! The stores' servers: one per store on its own port, stopped and started again on the same
//! address while the cluster runs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_rustls::TlsAcceptor;
use tonic::codec::CompressionEncoding;

use super::guard::HttpPolicy;
use super::router::Router;
use super::server::{self, Listener, ServerHandle};
use super::tikv::{MockTikv, Node};
use super::MAX_MESSAGE;
use crate::proto::tikvpb::tikv_server::TikvServer;

#[derive(Debug)]
struct StoreServer {
    id: u64,
    addr: SocketAddr,
    handle: Option<ServerHandle>,
}

/// Every store's server, in store-id order.
pub(crate) struct Stores {
    node: Arc<Node>,
    policy: Arc<HttpPolicy>,
    tls: Option<TlsAcceptor>,
    servers: Mutex<Vec<StoreServer>>,
}

impl Stores {
    /// Binds each store's port (0 picks a free one; missing entries are 0), records the
    /// address in the store's metadata and starts serving (over TLS when `tls` is given).
    pub(crate) async fn start(
        node: Arc<Node>,
        ports: &[u16],
        policy: Arc<HttpPolicy>,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<Stores> {
        let ids: Vec<u64> = node.cluster.meta().stores.keys().copied().collect();
        let mut servers = Vec::new();
        for (i, id) in ids.into_iter().enumerate() {
            let port = ports.get(i).copied().unwrap_or(0);
            let listener = Listener::bind(([127, 0, 0, 1], port).into()).await?;
            let addr = listener.local_addr()?;
            if let Some(store) = node.cluster.meta().stores.get_mut(&id) {
                store.meta.address = addr.to_string();
                store.meta.peer_address = addr.to_string();
                store.meta.status_address = addr.to_string();
            }
            let handle = serve_store(&node, id, listener, &policy, tls.clone());
            servers.push(StoreServer {
                id,
                addr,
                handle: Some(handle),
            });
        }
        Ok(Stores {
            node,
            policy,
            tls,
            servers: Mutex::new(servers),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<StoreServer>> {
        self.servers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stores' addresses, in store-id order.
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.lock().iter().map(|s| s.addr).collect()
    }

    /// The store ids, in order.
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.lock().iter().map(|s| s.id).collect()
    }

    /// Stops a store's server; false if it is unknown or already stopped.
    pub(crate) fn stop(&self, store: u64) -> bool {
        let mut servers = self.lock();
        let Some(s) = servers.iter_mut().find(|s| s.id == store) else {
            return false;
        };
        let was_up = s.handle.take().is_some();
        if let Some(meta) = self.node.cluster.meta().stores.get_mut(&store) {
            meta.up = false;
        }
        was_up
    }

    /// Starts a stopped store again on its old address.
    pub(crate) async fn start_again(&self, store: u64) -> std::io::Result<()> {
        let addr = self
            .lock()
            .iter()
            .find(|s| s.id == store)
            .map(|s| s.addr)
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("no store {store}"))
            })?;
        let listener = Listener::bind(addr).await?;
        let handle = serve_store(&self.node, store, listener, &self.policy, self.tls.clone());
        if let Some(s) = self.lock().iter_mut().find(|s| s.id == store) {
            s.handle = Some(handle);
        }
        if let Some(meta) = self.node.cluster.meta().stores.get_mut(&store) {
            meta.up = true;
        }
        Ok(())
    }
}

/// Serves store `store_id` on `listener` until the handle is dropped.
pub(crate) fn serve_store(
    node: &Arc<Node>,
    store_id: u64,
    listener: Listener,
    policy: &Arc<HttpPolicy>,
    tls: Option<TlsAcceptor>,
) -> ServerHandle {
    let mut service = TikvServer::new(MockTikv::new(node.clone(), store_id))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
        .accept_compressed(CompressionEncoding::Gzip);
    if node.compress_responses {
        service = service.send_compressed(CompressionEncoding::Gzip);
    }
    let handle = server::serve(listener, Router::default().add(service), None, policy, tls);
    node.set_killer(store_id, handle.connection_killer());
    handle
}
