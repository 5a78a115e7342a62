//! The kvproto messages and gRPC stubs this client speaks.
//!
//! The definitions in `proto/` are this project's own, wire compatible with upstream kvproto
//! (same packages, message names, field numbers and method paths); the Rust in
//! `src/generated/` is produced from them by `cargo run -p tikv-client-codegen` and checked in,
//! so building the crate needs no protobuf compiler. Client stubs are generic over the channel;
//! server stubs exist only with the `testutils` feature.
//!
//! These types are what the [`request`](crate) layer sends once a call has been lowered, and
//! they appear in errors that carry a server's own report (a region error, a key error).

#![allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]

macro_rules! generated {
    ($($name:ident),* $(,)?) => {
        $(
            #[doc = concat!("Package `", stringify!($name), "`.")]
            pub mod $name {
                include!(concat!("generated/", stringify!($name), ".rs"));
            }
        )*
    };
}

generated!(
    apipb,
    deadlock,
    encryptionpb,
    errorpb,
    keyspacepb,
    kvrpcpb,
    metapb,
    pdpb,
    resource_manager,
    tikvpb,
    tracepb,
);
