//! An in-memory cluster for tests and examples, served over real gRPC (HTTP/2) and, on the
//! same ports, gRPC-web (HTTP/1.1 with CORS) so browsers and Node reach it directly.
//!
//! Today it serves PD's membership (`GetMembers`); PD's other RPCs answer `Unimplemented`.
//! Everything runs on the caller's tokio runtime and stops when the [`MockCluster`] is dropped.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use tikv_client::testutils::MockCluster;
//! let cluster = MockCluster::builder().start().await?;
//! assert_ne!(cluster.cluster_id(), 0);
//! println!("PD at {}", cluster.pd_endpoint());
//! # Ok(())
//! # }
//! ```

#![allow(clippy::disallowed_methods)] // the mock cluster is a native tokio program

mod pd;
mod router;
mod server;

use std::net::SocketAddr;

use crate::backoff::SplitMix64;

/// Configures and starts a [`MockCluster`].
#[derive(Debug, Clone, Default)]
pub struct MockClusterBuilder {
    pd_port: u16,
    cluster_id: Option<u64>,
}

impl MockClusterBuilder {
    /// Serves PD on this port of 127.0.0.1; 0 (the default) picks a free one.
    pub fn pd_port(mut self, port: u16) -> Self {
        self.pd_port = port;
        self
    }

    /// Uses this cluster id instead of a random one. Zero is not a valid id and is replaced.
    pub fn cluster_id(mut self, id: u64) -> Self {
        self.cluster_id = Some(id);
        self
    }

    /// Binds the ports and starts serving on the current tokio runtime.
    pub async fn start(self) -> std::io::Result<MockCluster> {
        let cluster_id = self
            .cluster_id
            .filter(|id| *id != 0)
            .unwrap_or_else(|| SplitMix64::from_entropy().next_u64().max(1));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.pd_port)).await?;
        let pd_addr = listener.local_addr()?;
        let service = pd::MockPd::new(cluster_id, pd_addr);
        let server = server::serve(listener, service.into_router());
        log::info!("mock PD {cluster_id} serving on {pd_addr}");
        Ok(MockCluster {
            cluster_id,
            pd_addr,
            _server: server,
        })
    }
}

/// A running in-memory cluster. Dropping it stops every server.
#[derive(Debug)]
pub struct MockCluster {
    cluster_id: u64,
    pd_addr: SocketAddr,
    _server: server::ServerHandle,
}

impl MockCluster {
    /// A builder with default settings.
    pub fn builder() -> MockClusterBuilder {
        MockClusterBuilder::default()
    }

    /// The cluster id PD reports.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// PD's address, `127.0.0.1:port`.
    pub fn pd_endpoint(&self) -> String {
        self.pd_addr.to_string()
    }

    /// PD's socket address.
    pub fn pd_addr(&self) -> SocketAddr {
        self.pd_addr
    }
}
