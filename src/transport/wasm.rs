//! wasm32 transport: gRPC-web over the JavaScript `fetch` (browsers, Node, workers).

use crate::error::TransportErrorKind;
use crate::{Config, Result};

/// The channel generated clients run over.
pub(crate) type Channel = tonic_web_wasm_client::Client;

/// gRPC-web sends a request body whole: a bidirectional call must end its request stream
/// before any reply arrives, so each exchange is its own call.
pub(crate) const STREAMING_REQUESTS: bool = false;

/// Browsers do TLS themselves (https:// URLs); PEM files cannot be used.
pub(crate) const TLS_FILES_SUPPORTED: bool = false;

/// A gRPC-web client for `address` (mapped to a URL by the config's address mapper). Nothing
/// is sent until the first call.
pub(crate) async fn connect(address: &str, config: &Config) -> Result<Channel> {
    let url = config.address_mapper.map(address, false);
    Ok(tonic_web_wasm_client::Client::new(url))
}

/// Whether a status was made by the client's transport: a failed `fetch` is reported as a
/// broken connection (it does not say whether the request reached the server).
pub(super) fn transport_failure(status: &tonic::Status) -> Option<TransportErrorKind> {
    std::error::Error::source(status)
        .and_then(|e| e.downcast_ref::<tonic_web_wasm_client::Error>())
        .map(|_| TransportErrorKind::Broken)
}

/// The status message.
pub(super) fn describe(status: &tonic::Status) -> String {
    status.message().to_owned()
}
