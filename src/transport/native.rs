//! Native transport: tonic's HTTP/2 channel over tokio, with optional mutual TLS.

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::error::{TransportError, TransportErrorKind};
use crate::{Config, Error, Result};

/// The channel generated clients run over.
pub(crate) type Channel = tonic::transport::Channel;

/// HTTP/2 streams requests: bidirectional calls stay open.
pub(crate) const STREAMING_REQUESTS: bool = true;

/// TLS from PEM files is available here.
pub(crate) const TLS_FILES_SUPPORTED: bool = true;

/// Opens a connection to `address` (mapped to a URL by the config's address mapper).
/// Failing to connect is a [`TransportErrorKind::Connect`] error: nothing was sent.
pub(crate) async fn connect(address: &str, config: &Config) -> Result<Channel> {
    let url = config.address_mapper.map(address, config.tls.is_some());
    let transport_error = |kind, message: String| -> Error {
        TransportError {
            kind,
            address: url.clone(),
            message,
            may_have_been_sent: false,
        }
        .into()
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| transport_error(TransportErrorKind::InvalidAddress, e.to_string()))?
        .connect_timeout(config.dial_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(10))
        .keep_alive_timeout(std::time::Duration::from_secs(3))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(128 << 20)
        .initial_connection_window_size(128 << 20);
    if let Some(tls) = &config.tls {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                transport_error(TransportErrorKind::Tls, format!("{}: {e}", path.display()))
            })
        };
        let ca = read(&tls.ca_path)?;
        let cert = read(&tls.cert_path)?;
        let key = read(&tls.key_path)?;
        endpoint = endpoint
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .identity(Identity::from_pem(cert, key)),
            )
            .map_err(|e| transport_error(TransportErrorKind::Tls, describe(&e)))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| transport_error(TransportErrorKind::Connect, describe(&e)))
}

/// Whether a status was made by the client's transport rather than sent by the server:
/// `Connect` when the connection could not be opened (the request never left this process),
/// `Broken` when the connection failed while the request was in flight.
pub(super) fn transport_failure(status: &tonic::Status) -> Option<TransportErrorKind> {
    let mut source = std::error::Error::source(status);
    let mut kind = None;
    while let Some(e) = source {
        if e.downcast_ref::<tonic::transport::Error>().is_some()
            || e.downcast_ref::<std::io::Error>().is_some()
        {
            kind = Some(TransportErrorKind::Broken);
        }
        if kind.is_some() && e.to_string().contains("connect") {
            return Some(TransportErrorKind::Connect);
        }
        source = e.source();
    }
    kind
}

/// An error and its causes on one line.
pub(super) fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
