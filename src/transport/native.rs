//! Native transport: tonic's HTTP/2 channel over tokio, with optional TLS (server-only or
//! mutual).

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::TlsConfig;
use crate::error::{TransportError, TransportErrorKind};
use crate::{Config, Error, Result};

/// The channel generated clients run over.
pub(crate) type Channel = tonic::transport::Channel;

/// HTTP/2 streams requests: bidirectional calls stay open.
pub(crate) const STREAMING_REQUESTS: bool = true;

/// TLS from PEM files is available here.
pub(crate) const TLS_FILES_SUPPORTED: bool = true;

/// Opens a connection to `address` (mapped to a URL by the config's address mapper).
/// Failing to connect is a [`TransportErrorKind::Connect`] error, and a TLS problem (a URL
/// whose scheme contradicts the TLS setting, unreadable PEM files, a handshake the client or
/// the server refused) a [`TransportErrorKind::Tls`] one: either way nothing was sent.
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
    check_scheme(&url, config.tls.is_some())
        .map_err(|message| transport_error(TransportErrorKind::Tls, message))?;
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
        endpoint = endpoint
            .tls_config(client_tls(tls).map_err(|m| transport_error(TransportErrorKind::Tls, m))?)
            .map_err(|e| transport_error(TransportErrorKind::Tls, describe(&e)))?;
    }
    #[cfg(feature = "simulation")]
    if turmoil::in_simulation() {
        return endpoint
            .connect_with_connector(simulated_network())
            .await
            .map_err(|e| transport_error(TransportErrorKind::Connect, describe(&e)));
    }
    endpoint.connect().await.map_err(|e| {
        let kind = tls_failure(&e).map_or(TransportErrorKind::Connect, |_| TransportErrorKind::Tls);
        transport_error(kind, describe(&e))
    })
}

/// Connections through the simulated network of the current simulation (no TLS there).
#[cfg(feature = "simulation")]
fn simulated_network() -> impl tower::Service<
    http::Uri,
    Response = hyper_util::rt::TokioIo<turmoil::net::TcpStream>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone {
    tower::service_fn(|uri: http::Uri| async move {
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri.port_u16().unwrap_or(80);
        let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
        Ok(hyper_util::rt::TokioIo::new(stream))
    })
}

/// With TLS configured every URL must be `https://`, and without it none may be: a plain
/// `http://` URL would send requests in the clear, and tonic cannot dial `https://` without
/// TLS settings. The error says what to change.
fn check_scheme(url: &str, tls: bool) -> std::result::Result<(), String> {
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http") if tls => Err(format!(
            "TLS is configured but {url} is plain http://: refusing to send in the clear; \
             give https:// URLs (or bare host:port addresses, which become https://), or drop \
             the TLS settings if the cluster does not use TLS"
        )),
        Some("https") if !tls => Err(format!(
            "{url} needs TLS but none is configured: set the CA that signed the cluster's \
             certificates with Config::with_tls_ca (or Config::with_security for mutual TLS)"
        )),
        _ => Ok(()),
    }
}

/// tonic's TLS settings from the PEM files.
fn client_tls(tls: &TlsConfig) -> std::result::Result<ClientTlsConfig, String> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let mut client =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&tls.ca_path)?));
    match (&tls.cert_path, &tls.key_path) {
        (Some(cert), Some(key)) => {
            client = client.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        (None, None) => {}
        _ => {
            return Err(
                "a client certificate needs its private key and a key its certificate".into(),
            )
        }
    }
    Ok(client)
}

/// The TLS error behind a failure, if TLS caused it: a certificate this client rejected, a
/// handshake the server refused (such as a missing or untrusted client certificate), or a
/// peer that does not speak TLS. Such a connection never carried a request to the server.
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return handshake_error(tls).then(|| tls.clone());
        }
        // io::Error hides its payload from `source()`; look inside.
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return handshake_error(tls).then(|| tls.clone());
                }
                // h2 keeps a failed connection's io::Error as its kind and text only, so an
                // alert that ended the handshake after this side thought it done (TLS 1.3: a
                // refused client certificate) arrives as text: rustls's own.
                if io.kind() == std::io::ErrorKind::InvalidData {
                    let text = inner.to_string();
                    if let Some(alert) = HANDSHAKE_ALERTS
                        .iter()
                        .map(|a| rustls::Error::AlertReceived(*a))
                        .find(|alert| alert.to_string() == text)
                    {
                        return Some(alert);
                    }
                }
            }
        }
        next = e.source();
    }
    None
}

/// The alerts with which a peer refuses a handshake.
const HANDSHAKE_ALERTS: [rustls::AlertDescription; 13] = [
    rustls::AlertDescription::HandshakeFailure,
    // A certificate whose issuer's name matches a trusted CA but whose signature does not.
    rustls::AlertDescription::DecryptError,
    rustls::AlertDescription::BadCertificate,
    rustls::AlertDescription::UnsupportedCertificate,
    rustls::AlertDescription::CertificateRevoked,
    rustls::AlertDescription::CertificateExpired,
    rustls::AlertDescription::CertificateUnknown,
    rustls::AlertDescription::UnknownCA,
    rustls::AlertDescription::AccessDenied,
    rustls::AlertDescription::ProtocolVersion,
    rustls::AlertDescription::InsufficientSecurity,
    rustls::AlertDescription::NoApplicationProtocol,
    rustls::AlertDescription::CertificateRequired,
];

/// Whether a rustls error ends a handshake (rather than an established session).
fn handshake_error(e: &rustls::Error) -> bool {
    match e {
        rustls::Error::AlertReceived(alert) => HANDSHAKE_ALERTS.contains(alert),
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::UnsupportedNameType
        | rustls::Error::PeerIncompatible(_)
        | rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateHandshakeMessage { .. } => true,
        _ => false,
    }
}

/// What to check after a TLS failure.
fn tls_hint(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::InvalidCertificate(_) => {
            "the server's certificate is not trusted: check that the CA file in the TLS \
             settings signed it and that it names the host dialled"
        }
        rustls::Error::AlertReceived(_) => {
            "the server refused the TLS handshake: if it requires client certificates, \
             configure one it trusts with Config::with_security"
        }
        rustls::Error::InvalidMessage(_) => "the server does not seem to speak TLS on this port",
        _ => "check the TLS settings on both sides",
    }
}

/// Whether a status was made by the client's transport rather than sent by the server:
/// `Connect` when the connection could not be opened (the request never left this process),
/// `Tls` when the TLS handshake failed (the server never read the request), `Broken` when the
/// connection failed while the request was in flight.
pub(super) fn transport_failure(status: &tonic::Status) -> Option<TransportErrorKind> {
    let mut source = std::error::Error::source(status);
    if source.is_some_and(|e| tls_failure(e).is_some()) {
        return Some(TransportErrorKind::Tls);
    }
    let mut kind = None;
    while let Some(e) = source {
        let io = e.downcast_ref::<std::io::Error>();
        if e.downcast_ref::<tonic::transport::Error>().is_some() || io.is_some() {
            kind = Some(TransportErrorKind::Broken);
        }
        if kind.is_some() && (never_connected(&e.to_string()) || io.is_some_and(refused)) {
            return Some(TransportErrorKind::Connect);
        }
        source = e.source();
    }
    kind
}

/// Whether an error's text says the connection was never made ("tcp connect error",
/// "connect timeout", ...). A connection that was made and then failed says "connection
/// error" or "connection reset": the request may have reached the server.
fn never_connected(text: &str) -> bool {
    [
        "connect error",
        "connect timeout",
        "error trying to connect",
        "dns error",
    ]
    .iter()
    .any(|phrase| text.contains(phrase))
}

fn refused(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::ConnectionRefused
}

/// An error and its causes on one line, led by what to check when TLS failed.
pub(super) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    match tls_failure(e) {
        Some(tls) => format!("{}; {text}", tls_hint(&tls)),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reset_connection_is_not_a_failure_to_connect() {
        for text in [
            "tcp connect error",
            "connect timeout",
            "dns error: no record",
        ] {
            assert!(super::never_connected(text), "{text}");
        }
        for text in [
            "connection error",
            "connection reset",
            "broken pipe",
            "h2 protocol error",
        ] {
            assert!(!super::never_connected(text), "{text}");
        }
    }

    use super::*;

    #[test]
    fn schemes_must_agree_with_the_tls_setting() {
        assert!(check_scheme("https://pd:2379", true).is_ok());
        assert!(check_scheme("http://pd:2379", false).is_ok());
        let err = check_scheme("http://pd:2379", true).unwrap_err();
        assert!(
            err.contains("plain http://") && err.contains("https://"),
            "{err}"
        );
        let err = check_scheme("HTTP://pd:2379", true).unwrap_err();
        assert!(err.contains("in the clear"), "{err}");
        let err = check_scheme("https://pd:2379", false).unwrap_err();
        assert!(err.contains("Config::with_tls_ca"), "{err}");
    }

    #[test]
    fn handshake_failures_are_found_inside_io_errors() {
        let rejected = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rejected);
        assert!(tls_failure(&io).is_some());
        let text = describe(&io);
        assert!(
            text.starts_with("the server's certificate is not trusted"),
            "{text}"
        );
        let refused = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        );
        assert!(describe(&refused).contains("Config::with_security"));
        // As h2 hands it back: the kind and rustls's text.
        let flattened = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRequired",
        );
        assert!(describe(&flattened).contains("Config::with_security"));
        let other = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad frame");
        assert!(tls_failure(&other).is_none());
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(tls_failure(&plain).is_none());
        assert_eq!(describe(&plain), "refused");
    }
}
