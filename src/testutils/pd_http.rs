//! The part of PD's HTTP API that tools read (`pd-ctl`, TiDB's status pages, client-go's
//! `pdhttp`): `GET /pd/api/v1/version`, `/pd/api/v1/stores` and `/pd/api/v1/regions`, served
//! on PD's port next to gRPC with JSON shaped like PD's (keys as upper-case hex, state and
//! role names spelled out). The same layer serves the mock's own admin API (`admin`).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tonic::body::Body;
use tower::{Layer, Service};

use super::admin::{self, Admin};
use super::cluster::{Cluster, Region, PD_VERSION};
use crate::proto::metapb;

/// Answers PD's HTTP API paths from the cluster's metadata.
#[derive(Debug, Clone)]
pub(crate) struct PdHttp {
    cluster: Arc<Cluster>,
}

impl PdHttp {
    pub(crate) fn new(cluster: Arc<Cluster>) -> Self {
        PdHttp { cluster }
    }

    /// The status and JSON body for `method path`, or `None` when the path is not PD's HTTP
    /// API (so gRPC handles it).
    fn answer(&self, method: &Method, path: &str) -> Option<(StatusCode, String)> {
        let path = path.strip_prefix("/pd/api/v1/")?;
        if method != Method::GET {
            return Some((
                StatusCode::METHOD_NOT_ALLOWED,
                "405 method not allowed".into(),
            ));
        }
        if !self.cluster.meta().pd_available {
            return Some((StatusCode::SERVICE_UNAVAILABLE, "\"PD unavailable\"".into()));
        }
        let body = match path.trim_end_matches('/') {
            "version" => json!({ "version": format!("v{PD_VERSION}") }),
            "stores" => self.stores(),
            "regions" => self.regions(),
            _ => return Some((StatusCode::NOT_FOUND, "404 page not found\n".into())),
        };
        Some((StatusCode::OK, body.to_string()))
    }

    fn stores(&self) -> Value {
        let meta = self.cluster.meta();
        let regions: Vec<&Region> = meta.all_regions().collect();
        let stores: Vec<Value> = meta
            .stores
            .values()
            .map(|store| {
                let s = &store.meta;
                let region_count = regions
                    .iter()
                    .filter(|r| r.peer_on(s.id).is_some())
                    .count();
                let leader_count = regions.iter().filter(|r| r.leader_store == s.id).count();
                json!({
                    "store": {
                        "id": s.id,
                        "address": s.address,
                        "labels": s.labels.iter().map(|l| json!({"key": l.key, "value": l.value})).collect::<Vec<_>>(),
                        "version": s.version,
                        "peer_address": s.peer_address,
                        "status_address": s.status_address,
                        "state_name": if store.up { state_name(s.state) } else { "Disconnected" },
                    },
                    "status": {
                        "leader_count": leader_count,
                        "leader_weight": 1,
                        "region_count": region_count,
                        "region_weight": 1,
                    },
                })
            })
            .collect();
        json!({ "count": stores.len(), "stores": stores })
    }

    fn regions(&self) -> Value {
        let meta = self.cluster.meta();
        let regions: Vec<Value> = meta.all_regions().map(region_json).collect();
        json!({ "count": regions.len(), "regions": regions })
    }
}

fn state_name(state: i32) -> &'static str {
    match metapb::StoreState::try_from(state) {
        Ok(metapb::StoreState::Offline) => "Offline",
        Ok(metapb::StoreState::Tombstone) => "Tombstone",
        _ => "Up",
    }
}

fn peer_json(p: &metapb::Peer) -> Value {
    let role = match metapb::PeerRole::try_from(p.role) {
        Ok(metapb::PeerRole::Learner) => "Learner",
        Ok(metapb::PeerRole::IncomingVoter) => "IncomingVoter",
        Ok(metapb::PeerRole::DemotingVoter) => "DemotingVoter",
        _ => "Voter",
    };
    json!({ "id": p.id, "store_id": p.store_id, "role_name": role })
}

pub(crate) fn region_json(r: &Region) -> Value {
    let m = &r.meta;
    let epoch = m.region_epoch.unwrap_or_default();
    json!({
        "id": m.id,
        "start_key": hex_upper(&m.start_key),
        "end_key": hex_upper(&m.end_key),
        "epoch": { "conf_ver": epoch.conf_ver, "version": epoch.version },
        "peers": m.peers.iter().map(peer_json).collect::<Vec<_>>(),
        "leader": r.leader_peer().map(peer_json).unwrap_or_else(|| json!({})),
        "written_bytes": 0,
        "read_bytes": 0,
        "written_keys": 0,
        "read_keys": 0,
        "approximate_size": 1,
        "approximate_keys": 0,
    })
}

/// PD's `HexRegionKeyStr`: upper-case hex.
pub(crate) fn hex_upper(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02X}")).collect()
}

/// The HTTP APIs a PD member serves next to gRPC: PD's own and the mock's admin API.
#[derive(Clone)]
pub(crate) struct HttpApis {
    pub pd: PdHttp,
    pub admin: Admin,
}

/// Serves the HTTP APIs ahead of the gRPC and gRPC-web services it wraps (which would refuse
/// plain HTTP/1.1 requests).
#[derive(Clone, Default)]
pub(crate) struct HttpApiLayer(Option<HttpApis>);

impl HttpApiLayer {
    pub(crate) fn new(apis: Option<HttpApis>) -> Self {
        HttpApiLayer(apis)
    }
}

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
pub(crate) struct HttpApi<S> {
    apis: Option<HttpApis>,
    inner: S,
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(
            http::header::CONTENT_TYPE,
            "application/json; charset=UTF-8",
        )
        .body(Body::new(http_body_util::Full::new(bytes::Bytes::from(
            body,
        ))))
        .unwrap_or_default()
}

impl<S> Service<Request<Body>> for HttpApi<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures::future::Either<
        std::future::Ready<Result<Response<Body>, Infallible>>,
        futures::future::Either<BoxFuture<'static, Result<Response<Body>, Infallible>>, S::Future>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        use futures::future::Either::{Left, Right};
        let Some(apis) = &self.apis else {
            return Right(Right(self.inner.call(request)));
        };
        if let Some((status, body)) = apis.pd.answer(request.method(), request.uri().path()) {
            return Left(std::future::ready(Ok(json_response(status, body))));
        }
        if request.uri().path().starts_with(admin::PREFIX) {
            let admin = apis.admin.clone();
            return Right(Left(Box::pin(async move {
                let (status, body) = admin.serve(request).await;
                Ok(json_response(status, body.to_string()))
            })));
        }
        Right(Right(self.inner.call(request)))
    }
}
