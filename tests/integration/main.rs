//! Integration tests against the in-memory cluster over real gRPC on 127.0.0.1.
//! One binary, one module per topic.

// Native tests drive tokio directly; the disallowed list guards library code meant for wasm32.
#![allow(clippy::disallowed_methods)]

mod batch;
mod deadline;
mod mock;
mod mock_admin;
mod mock_batch;
mod mock_faults;
mod mock_fuzz;
mod mock_http_guard;
mod mock_pd;
mod mock_pd_members;
mod mock_pd_partition;
mod mock_pipelined;
mod mock_raw;
mod mock_reads;
mod mock_split_merge;
mod mock_txn;
mod mock_writes;
mod pd;
mod raw;
mod raw_faults;
mod region_cache;
mod robustness;
mod split_merge;
mod tls;
mod txn;
mod txn_api;
mod txn_cancel;
mod txn_faults;
mod util;
