//! A client for [TiKV](https://tikv.org), the distributed transactional key-value store, that
//! follows the Go client (`client-go` v2) and runs natively and in WebAssembly.
//!
//! # Targets and features
//!
//! | feature | what you get |
//! |---|---|
//! | `native` (default) | tonic over tokio: HTTP/2 with optional TLS, server-only ([`Config::with_tls_ca`]) or mutual ([`Config::with_security`]) |
//! | `wasm` | gRPC-web over `fetch` for `wasm32-unknown-unknown`: browsers, Node, edge workers |
//! | `metrics` | Prometheus metrics, see `observe::registry` |
//! | `tracing` | events through the `tracing` crate |
//! | `testutils` | an in-memory PD (and, in time, TiKV) served over gRPC and gRPC-web, and the `tikv-mock` binary (native only) |
//!
//! For wasm32, build with `--no-default-features --features wasm`.
//!
//! # Layers
//!
//! Everything above the transport is shared by both targets. Two seams carry the difference:
//! [`rt`] (executor, timers, clock; injectable for tests) and the transport (a tonic channel
//! natively, a gRPC-web client on wasm32; see [`transport::AddressMapper`]). On top of them:
//! value types in [`kv`], the retry policy in [`backoff`], errors in [`Error`], settings in
//! [`Config`], the PD client in [`pd`], the region cache in [`region_cache`] and one execution
//! loop in [`request`]. The clients are [`RawClient`] (raw key-value, client-go's `rawkv`) and
//! [`TransactionClient`] (Percolator transactions and snapshots).
//!
//! ```no_run
//! # async fn demo() -> tikv_client::Result<()> {
//! use tikv_client::{pd::PdClient, Config};
//!
//! let pd = PdClient::connect(&["127.0.0.1:2379"], &Config::default()).await?;
//! println!("cluster {} led by {}", pd.cluster_id(), pd.leader().name);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
// On wasm32 nothing is Send (there are no threads); the same Arc-shared state is still right.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

#[cfg(all(target_arch = "wasm32", not(feature = "wasm")))]
compile_error!(
    "tikv-client on wasm32 needs the `wasm` feature: build with \
     `--no-default-features --features wasm`"
);
#[cfg(all(target_arch = "wasm32", feature = "testutils"))]
compile_error!(
    "the `testutils` feature (the in-memory cluster) runs on native targets only: \
     start `tikv-mock` natively and point the wasm32 client at it"
);
#[cfg(all(not(target_arch = "wasm32"), not(feature = "native")))]
compile_error!(
    "tikv-client on a native target needs the `native` feature (on by default); \
     `wasm` is for `--target wasm32-unknown-unknown`"
);

pub mod backoff;
pub mod config;
mod error;
pub mod interceptor;
pub mod kv;
mod observe;
pub mod pd;
pub mod proto;
pub mod raw;
pub mod region_cache;
pub mod request;
pub mod rt;
mod store;
pub mod timestamp;
pub mod transaction;
pub mod transport;

#[cfg(all(feature = "testutils", not(target_arch = "wasm32")))]
pub mod testutils;

pub use config::Config;
pub use error::{Error, GrpcCode, Result, TransportError, TransportErrorKind, UndeterminedCommit};
pub use kv::{BoundRange, Key, KvPair, Value};
#[cfg(feature = "metrics")]
pub use observe::registry as metrics_registry;
pub use raw::RawClient;
pub use timestamp::Timestamp;
pub use transaction::{
    Snapshot, Transaction, TransactionClient, TransactionOptions, TransactionStatus,
};

#[cfg(not(target_arch = "wasm32"))]
#[allow(dead_code)]
fn _assert_public_types_are_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Config>();
    check::<Error>();
    check::<pd::PdClient>();
    check::<Key>();
    check::<BoundRange>();
    check::<backoff::Backoffer>();
    check::<rt::Runtime>();
    check::<RawClient>();
    check::<TransactionClient>();
    check::<Transaction>();
    check::<Snapshot>();
}
