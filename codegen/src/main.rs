//! Regenerates `src/generated/` from the `.proto` files in `proto/`.
//!
//! The generated Rust is checked in so that users, docs.rs and wasm32 builds need neither a
//! protobuf compiler nor a build script. CI runs this and fails on any difference.
//!
//! Client stubs are generic over the channel (no transport code), so the same file serves the
//! native tonic channel and the gRPC-web client. Server stubs are compiled only with the
//! `testutils` feature, for the in-memory cluster.

use std::path::{Path, PathBuf};

const PROTOS: &[&str] = &[
    "apipb.proto",
    "deadlock.proto",
    "encryptionpb.proto",
    "errorpb.proto",
    "keyspacepb.proto",
    "kvrpcpb.proto",
    "metapb.proto",
    "pdpb.proto",
    "resource_manager.proto",
    "tikvpb.proto",
    "tracepb.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let proto_dir = root.join("proto");
    let out_dir: PathBuf = root.join("src").join("generated");
    std::fs::create_dir_all(&out_dir)?;

    let files = protox::compile(PROTOS, [&proto_dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .generate_default_stubs(true)
        .server_mod_attribute(".", "#[cfg(feature = \"testutils\")]")
        .out_dir(&out_dir)
        .compile_fds(files)?;
    println!("regenerated {}", out_dir.display());
    Ok(())
}
