//! JavaScript bindings for tikv-client, built with wasm-bindgen for browsers, Node and edge
//! workers. Every method returns a Promise; errors are JS `Error`s.
//!
//! The crate is empty on native targets so that `cargo build --workspace` stays native-clean.

#![cfg(target_arch = "wasm32")]
#![deny(missing_docs)]

use wasm_bindgen::prelude::*;

/// The version of the bindings (the crate version).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// Connects to PD at `pd_address` (`host:port` or a URL) over gRPC-web and resolves to the
/// cluster id, as a decimal string (ids use all 64 bits, beyond a JS number's precision).
#[wasm_bindgen(js_name = clusterId)]
pub async fn cluster_id(pd_address: String) -> Result<String, JsError> {
    let pd = tikv_client::pd::PdClient::connect(&[pd_address], &tikv_client::Config::default())
        .await
        .map_err(|e| JsError::new(&e.to_string()))?;
    Ok(pd.cluster_id().to_string())
}
