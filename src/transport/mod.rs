//! The transport seam: how bytes reach a server.
//!
//! On native targets a channel is tonic's HTTP/2 channel (with TLS when configured); on
//! wasm32 it is a gRPC-web client over the JavaScript `fetch`, so the same generated stubs run
//! in browsers, Node and workers. Only `pd/`, `rpc/` and `store/` open channels.
//!
//! Servers are known by the addresses PD hands out (`host:port`). An [`AddressMapper`] turns
//! such an address into the URL to dial. The default adds `http://` (or `https://` with TLS;
//! natively, a URL whose scheme contradicts the TLS setting is refused before dialling);
//! [`UrlTemplate`] sends every connection through one proxy, as browsers need when the stores
//! are not reachable directly (an Envoy `grpc_web` filter in front of the cluster).

use std::fmt;

use crate::error::{GrpcCode, TransportError, TransportErrorKind};
use crate::rt::{MaybeSend, MaybeSync};
use crate::Error;

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(target_arch = "wasm32")]
mod wasm;

#[cfg(not(target_arch = "wasm32"))]
use native as imp;
#[cfg(target_arch = "wasm32")]
use wasm as imp;

pub(crate) use imp::{connect, Channel, STREAMING_REQUESTS, TLS_FILES_SUPPORTED};

/// Turns a server address (as PD reports it) into the URL to connect to.
pub trait AddressMapper: fmt::Debug + MaybeSend + MaybeSync {
    /// The URL for `address`. `tls` says whether the client is configured for TLS.
    fn map(&self, address: &str, tls: bool) -> String;
}

/// `host:port` becomes `http://host:port` (`https://` with TLS); an address that already has a
/// scheme is kept as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultAddressMapper;

impl AddressMapper for DefaultAddressMapper {
    fn map(&self, address: &str, tls: bool) -> String {
        if address.contains("://") {
            address.to_owned()
        } else if tls {
            format!("https://{address}")
        } else {
            format!("http://{address}")
        }
    }
}

/// A URL template in which `{addr}` stands for the server address (without scheme), `{host}`
/// for its host and `{port}` for its port: for example
/// `https://proxy.example.com/tikv/{host}/{port}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate(String);

impl UrlTemplate {
    /// A template; it must contain `{addr}`, or `{host}` and `{port}`, unless every address
    /// should go to one fixed URL.
    pub fn new(template: impl Into<String>) -> Self {
        UrlTemplate(template.into())
    }
}

impl AddressMapper for UrlTemplate {
    fn map(&self, address: &str, _tls: bool) -> String {
        let bare = address.split_once("://").map_or(address, |(_, rest)| rest);
        let (host, port) = bare.rsplit_once(':').unwrap_or((bare, ""));
        self.0
            .replace("{addr}", bare)
            .replace("{host}", host)
            .replace("{port}", port)
    }
}

/// Maps a gRPC status from `address` into our error.
pub(crate) fn status_to_error(status: tonic::Status, address: &str) -> Error {
    let code = GrpcCode::from(status.code());
    let message = status.message().to_owned();
    if deadline_expired(&status) {
        // The call's own gRPC deadline passed: a slow answer, not a broken connection.
        return Error::Grpc {
            code: GrpcCode::DeadlineExceeded,
            message,
            address: address.to_owned(),
            may_have_been_sent: true,
        };
    }
    if let Some(kind) = imp::transport_failure(&status) {
        return TransportError {
            kind,
            address: address.to_owned(),
            message: imp::describe(&status),
            may_have_been_sent: !matches!(
                kind,
                TransportErrorKind::Connect | TransportErrorKind::Tls
            ),
        }
        .into();
    }
    Error::Grpc {
        code,
        message,
        address: address.to_owned(),
        may_have_been_sent: true,
    }
}

/// Whether tonic failed the call because its deadline (`grpc-timeout`) passed.
fn deadline_expired(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.downcast_ref::<tonic::TimeoutExpired>().is_some() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_call_deadline_is_a_slow_answer_not_a_broken_connection() {
        let expired = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        let e = status_to_error(expired, "store");
        assert!(
            matches!(
                e,
                Error::Grpc {
                    code: GrpcCode::DeadlineExceeded,
                    may_have_been_sent: true,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.is_retryable());
    }

    #[test]
    fn default_mapper_adds_a_scheme_once() {
        let m = DefaultAddressMapper;
        assert_eq!(m.map("10.0.0.1:2379", false), "http://10.0.0.1:2379");
        assert_eq!(m.map("10.0.0.1:2379", true), "https://10.0.0.1:2379");
        assert_eq!(m.map("http://pd:2379", true), "http://pd:2379");
    }

    #[test]
    fn templates_substitute_address_parts() {
        let t = UrlTemplate::new("https://proxy/tikv/{host}/{port}");
        assert_eq!(
            t.map("store-1:20160", false),
            "https://proxy/tikv/store-1/20160"
        );
        let t = UrlTemplate::new("https://proxy/{addr}");
        assert_eq!(
            t.map("http://store-1:20160", false),
            "https://proxy/store-1:20160"
        );
        let t = UrlTemplate::new("https://one-proxy");
        assert_eq!(t.map("a:1", false), "https://one-proxy");
    }

    #[test]
    fn statuses_map_to_grpc_errors() {
        let e = status_to_error(
            tonic::Status::failed_precondition("mismatch cluster id"),
            "pd",
        );
        assert!(matches!(
            e,
            Error::Grpc { code: GrpcCode::FailedPrecondition, ref message, .. } if message == "mismatch cluster id"
        ));
        assert!(e.may_have_been_sent());
    }
}
