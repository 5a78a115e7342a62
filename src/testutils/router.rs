//! Routes gRPC requests to services by path, so that several services share one port (PD and
//! Keyspace on PD's port) without pulling a web framework into the build.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::server::NamedService;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

type BoxedService = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// A set of gRPC services dispatched by their `/package.Service/` path prefix. Unknown
/// services answer `Unimplemented`, as a real server does.
#[derive(Clone, Default)]
pub(crate) struct Router {
    services: Vec<(String, BoxedService)>,
}

impl Router {
    /// Adds a generated server.
    pub(crate) fn add<S>(mut self, service: S) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.services
            .push((format!("/{}/", S::NAME), BoxCloneSyncService::new(service)));
        self
    }
}

impl Service<http::Request<Body>> for Router {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = tower::util::Oneshot<BoxedService, http::Request<Body>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let service = match self
            .services
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
        {
            Some((_, service)) => service.clone(),
            None => BoxCloneSyncService::new(Unimplemented),
        };
        service.oneshot(request)
    }
}

/// Answers every request with gRPC status `Unimplemented`.
#[derive(Clone, Copy)]
struct Unimplemented;

impl Service<http::Request<Body>> for Unimplemented {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let status =
            tonic::Status::unimplemented(format!("unknown service {}", request.uri().path()));
        std::future::ready(Ok(status.into_http()))
    }
}
