//! Serving a mock service: gRPC over HTTP/2 and gRPC-web over HTTP/1.1 on one port.
//!
//! Stopping a server is abrupt, like killing a process: the listener closes and every open
//! connection fails at once, so clients see what they would see from a crashed server rather
//! than a polite drain.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::{Future, StreamExt};
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::body::Body;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tower::{Layer, Service};

use super::connections::ConnectionKiller;
use super::guard::{GuardLayer, HttpPolicy};
use super::router::Router;
use super::tls::{handshakes, Conn};

/// Reset streams a connection may have pending before the server closes it.
const MAX_RESET_STREAMS: usize = 4096;

/// Stops the server when dropped.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    stop: CancellationToken,
    connections: ConnectionKiller,
}

impl ServerHandle {
    /// Cuts the open connections; the server keeps accepting new ones.
    pub(crate) fn connection_killer(&self) -> ConnectionKiller {
        self.connections.clone()
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Where a mock server accepts connections.
pub(crate) enum Listener {
    /// A TCP port.
    Tcp(TcpListener),
    /// A port of a host in a simulated network.
    #[cfg(feature = "simulation")]
    Sim(turmoil::net::TcpListener),
}

impl Listener {
    /// Binds `addr`: a TCP port, or inside a simulation a port of the current simulated host.
    pub(crate) async fn bind(addr: SocketAddr) -> io::Result<Listener> {
        #[cfg(feature = "simulation")]
        if turmoil::in_simulation() {
            return turmoil::net::TcpListener::bind(addr)
                .await
                .map(Listener::Sim);
        }
        TcpListener::bind(addr).await.map(Listener::Tcp)
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr(),
            #[cfg(feature = "simulation")]
            Listener::Sim(l) => l.local_addr(),
        }
    }

    /// The accepted connections, through a TLS handshake when `tls` is given (TCP only).
    fn incoming(
        self,
        tls: Option<TlsAcceptor>,
    ) -> futures::stream::BoxStream<'static, io::Result<Conn>> {
        match self {
            Listener::Tcp(l) => handshakes(TcpIncoming::from(l).with_nodelay(Some(true)), tls),
            #[cfg(feature = "simulation")]
            Listener::Sim(l) => Box::pin(futures::stream::unfold(l, |l| async move {
                let accepted = l.accept().await.map(|(io, _)| Conn::Sim(io));
                Some((accepted, l))
            })),
        }
    }
}

/// Serves `router` (and the HTTP APIs `http` answers, when given) on `listener`, over TLS when `tls` is given,
/// until the handle is dropped, to the hosts and origins `policy` allows.
pub(crate) fn serve(
    listener: Listener,
    router: Router,
    http: Option<Arc<dyn HttpAnswer>>,
    policy: &Arc<HttpPolicy>,
    tls: Option<TlsAcceptor>,
) -> ServerHandle {
    let stop = CancellationToken::new();
    let connections = ConnectionKiller::new();
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let (conn_stop, killer) = (stop.clone(), connections.clone());
    let incoming = listener
        .incoming(tls)
        .map(move |conn| conn.map(|io| Killable::new(io, conn_stop.clone(), killer.accept())));
    let server = tonic::transport::Server::builder()
        .accept_http1(true)
        // A client that gives up on many calls at once resets their streams; h2's default
        // guard against reset floods (20 pending) would close the whole connection, which a
        // TiKV server does not do.
        .http2_max_pending_accept_reset_streams(Some(MAX_RESET_STREAMS))
        .layer(GuardLayer(policy.clone()))
        .layer(policy.cors())
        .layer(HttpApiLayer(http))
        .layer(tonic_web::GrpcWebLayer::new())
        .serve_with_incoming_shutdown(router, incoming, stop.clone().cancelled_owned());
    tokio::spawn(async move {
        if let Err(e) = server.await {
            log::error!("mock server on {addr:?} failed: {e}");
        }
    });
    ServerHandle { stop, connections }
}

/// A connection that fails as soon as its server is stopped or its connections are killed.
struct Killable {
    io: Conn,
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Killable {
    fn new(io: Conn, stop: CancellationToken, kill: CancellationToken) -> Self {
        Killable {
            io,
            stopped: Box::pin(stop.cancelled_owned()),
            killed: Box::pin(kill.cancelled_owned()),
        }
    }

    fn check_stopped(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let stopped = self.stopped.as_mut().poll(cx).is_ready();
        if stopped || self.killed.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "mock server cut the connection",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for Killable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_stopped(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Killable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_stopped(cx)?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_stopped(cx)?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connected for Killable {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

/// Plain HTTP endpoints served on a gRPC port, ahead of the gRPC and gRPC-web services
/// (which would refuse plain HTTP/1.1 requests).
pub(crate) trait HttpAnswer: Send + Sync {
    /// Whether requests for `path` are for these endpoints.
    fn serves(&self, path: &str) -> bool;
    /// The response to a request for these endpoints.
    fn answer(&self, request: Request<Body>) -> BoxFuture<'static, Response<Body>>;
}

/// Puts an [`HttpAnswer`] in front of the services it wraps.
#[derive(Clone, Default)]
struct HttpApiLayer(Option<Arc<dyn HttpAnswer>>);

impl<S> Layer<S> for HttpApiLayer {
    type Service = HttpApi<S>;

    fn layer(&self, inner: S) -> HttpApi<S> {
        HttpApi {
            apis: self.0.clone(),
            inner,
        }
    }
}

/// See [`HttpApiLayer`].
#[derive(Clone)]
struct HttpApi<S> {
    apis: Option<Arc<dyn HttpAnswer>>,
    inner: S,
}

impl<S> Service<Request<Body>> for HttpApi<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures::future::Either<
        futures::future::Map<
            BoxFuture<'static, Response<Body>>,
            fn(Response<Body>) -> Result<Response<Body>, Infallible>,
        >,
        S::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        use futures::future::Either::{Left, Right};
        use futures::FutureExt;
        let Some(apis) = &self.apis else {
            return Right(self.inner.call(request));
        };
        if apis.serves(request.uri().path()) {
            Left(apis.answer(request).map(Ok as fn(_) -> _))
        } else {
            Right(self.inner.call(request))
        }
    }
}
