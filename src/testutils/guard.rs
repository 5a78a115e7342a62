//! Who may talk to the mock over HTTP. It listens on well-known ports of 127.0.0.1, serves
//! gRPC-web to browsers, and can be reset through its admin API; without a guard, any web page
//! a developer opens could reach it (cross-origin requests, or DNS rebinding a page's own host
//! name to 127.0.0.1). So:
//!
//! * every request must name a local host in `Host` (or HTTP/2's `:authority`): `localhost`,
//!   `127.0.0.1` or `[::1]`, any port, or an extra allowed host; others get 403 (DNS
//!   rebinding keeps the page's host name, so it fails here);
//! * a request with an `Origin` must come from a local origin (`http(s)://` one of those
//!   hosts, any port) or an extra allowed one, else 403; CORS grants exactly those origins.
//!   Allowing `*` grants every origin.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use tonic::body::Body;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use super::json::json_response;

/// Host names every request may name, without their port.
const LOCAL_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The hosts and origins the mock's HTTP surface answers.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpPolicy {
    /// Extra host names (lower case, without port).
    hosts: Vec<String>,
    /// Extra origins (lower case, without a trailing slash).
    origins: Vec<String>,
    /// `*` was allowed: every origin.
    any_origin: bool,
}

/// The host part of an authority (`host[:port]`, `[v6]:port`), in lower case.
fn host_of(authority: &str) -> String {
    let authority = authority.trim().to_ascii_lowercase();
    let host = if authority.starts_with('[') {
        authority
            .find(']')
            .map_or(authority.as_str(), |end| &authority[..=end])
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority.as_str(),
        }
    };
    host.trim_end_matches('.').to_owned()
}

impl HttpPolicy {
    pub(crate) fn new<H, O>(hosts: H, origins: O) -> Self
    where
        H: IntoIterator<Item = String>,
        O: IntoIterator<Item = String>,
    {
        let mut policy = HttpPolicy {
            hosts: hosts.into_iter().map(|h| host_of(&h)).collect(),
            ..Default::default()
        };
        for origin in origins {
            let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
            if origin == "*" {
                policy.any_origin = true;
            } else {
                policy.origins.push(origin);
            }
        }
        policy
    }

    /// Whether a request naming this authority (`Host` or `:authority`) is served.
    pub(crate) fn host_allowed(&self, authority: &str) -> bool {
        let host = host_of(authority);
        LOCAL_HOSTS.contains(&host.as_str()) || self.hosts.contains(&host)
    }

    /// Whether a browser page of this origin may call the mock.
    pub(crate) fn origin_allowed(&self, origin: &[u8]) -> bool {
        if self.any_origin {
            return true;
        }
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let local = ["http://", "https://"].iter().any(|scheme| {
            origin.strip_prefix(scheme).is_some_and(|authority| {
                !authority.contains('/') && LOCAL_HOSTS.contains(&host_of(authority).as_str())
            })
        });
        local || self.origins.contains(&origin)
    }

    /// Why a request is refused, if it is.
    fn refusal<B>(&self, request: &Request<B>) -> Option<String> {
        let host = request
            .headers()
            .get(http::header::HOST)
            .map(|h| h.to_str().unwrap_or("(not text)"));
        let named = [request.uri().authority().map(|a| a.as_str()), host];
        if let Some(authority) = named.into_iter().flatten().find(|a| !self.host_allowed(a)) {
            return Some(format!(
                "host {authority} is not served: use localhost, 127.0.0.1 or [::1], \
                 or allow it with --allow-host"
            ));
        }
        let origin = request.headers().get(http::header::ORIGIN)?;
        (!self.origin_allowed(origin.as_bytes())).then(|| {
            format!(
                "origin {} is not allowed: allow it with --allow-origin",
                String::from_utf8_lossy(origin.as_bytes())
            )
        })
    }

    /// CORS for the allowed origins, exposing the gRPC headers that browsers otherwise hide:
    /// the status, and the encoding of compressed responses (without it a browser cannot
    /// decode them).
    pub(crate) fn cors(self: &Arc<Self>) -> CorsLayer {
        let allow = if self.any_origin {
            AllowOrigin::any()
        } else {
            let policy = self.clone();
            AllowOrigin::predicate(move |origin: &HeaderValue, _| {
                policy.origin_allowed(origin.as_bytes())
            })
        };
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods(Any)
            .allow_headers(Any)
            // Browsers cap this (Chromium at 2 h); without it they repeat the preflight every
            // 5 s.
            .max_age(std::time::Duration::from_secs(7200))
            .expose_headers([
                HeaderName::from_static("grpc-status"),
                HeaderName::from_static("grpc-message"),
                HeaderName::from_static("grpc-status-details-bin"),
                HeaderName::from_static("grpc-encoding"),
                HeaderName::from_static("grpc-accept-encoding"),
            ])
    }
}

/// A 403 answer: with the reason as JSON, or for a gRPC or gRPC-web request also as a
/// `PermissionDenied` status that its client can read (it would fail to decode a JSON body).
fn refuse<B>(request: &Request<B>, reason: String) -> Response<Body> {
    let content_type = request.headers().get(http::header::CONTENT_TYPE);
    let Some(grpc) = content_type.filter(|t| t.as_bytes().starts_with(b"application/grpc")) else {
        let body = serde_json::json!({ "error": reason }).to_string();
        return json_response(StatusCode::FORBIDDEN, body);
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, grpc.clone());
    if let Err(e) = tonic::Status::permission_denied(reason).add_header(response.headers_mut()) {
        log::warn!("cannot write the refusal's status: {e}");
    }
    response
}

/// Refuses requests the policy does not serve, with 403 and the reason.
#[derive(Clone)]
pub(crate) struct GuardLayer(pub Arc<HttpPolicy>);

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            policy: self.0.clone(),
            inner,
        }
    }
}

/// See [`GuardLayer`].
#[derive(Clone)]
pub(crate) struct Guard<S> {
    policy: Arc<HttpPolicy>,
    inner: S,
}

impl<S> Service<Request<Body>> for Guard<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future =
        futures::future::Either<std::future::Ready<Result<Response<Body>, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match self.policy.refusal(&request) {
            Some(reason) => {
                log::warn!("refused {} {}: {reason}", request.method(), request.uri());
                let response = refuse(&request, reason);
                futures::future::Either::Left(std::future::ready(Ok(response)))
            }
            None => futures::future::Either::Right(self.inner.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str], origins: &[&str]) -> HttpPolicy {
        HttpPolicy::new(
            hosts.iter().map(|h| h.to_string()),
            origins.iter().map(|o| o.to_string()),
        )
    }

    #[test]
    fn local_hosts_with_any_port_and_extra_hosts_are_served() {
        let p = policy(&["Mock.Internal:2379"], &[]);
        for host in [
            "localhost",
            "localhost:2379",
            "LOCALHOST.:1",
            "127.0.0.1:80",
            "[::1]:2379",
            "[::1]",
            "mock.internal",
            "mock.internal:9",
        ] {
            assert!(p.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:2379",
            "127.0.0.1.evil.example",
            "localhost.evil.example:80",
            "[::2]:1",
            "10.0.0.1:2379",
            "",
        ] {
            assert!(!p.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn local_origins_and_extra_origins_are_allowed() {
        let p = policy(&[], &["https://App.example/"]);
        for origin in [
            "http://localhost",
            "http://localhost:5173",
            "https://127.0.0.1:8443",
            "http://[::1]:3000",
            "https://app.example",
        ] {
            assert!(p.origin_allowed(origin.as_bytes()), "{origin}");
        }
        for origin in [
            "null",
            "http://evil.example",
            "https://app.example:444",
            "http://localhost.evil.example",
            "file://localhost",
            "http://localhost/path",
            "ws://localhost",
        ] {
            assert!(!p.origin_allowed(origin.as_bytes()), "{origin}");
        }
        assert!(!p.origin_allowed(&[0xff, 0xfe]));
        assert!(policy(&[], &["*"]).origin_allowed(b"http://evil.example"));
    }
}
