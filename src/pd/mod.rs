//! The PD client: cluster membership, timestamps, regions, stores, safe points and keyspaces.
//!
//! [`PdClient::connect`] asks every configured endpoint for the cluster's members (PD's
//! `GetMembers`, answered without a cluster id), checks that they all belong to one cluster,
//! and connects to the leader's first client URL, as client-go's PD client does. Every later
//! request carries the learned cluster id. A failed request is retried with the `pdRPC`
//! backoff within [`Config::pd_retry_budget`]; a leader change ("not leader", a broken
//! connection) makes the client rediscover the leader first.
//!
//! Timestamps come from an oracle that batches concurrent callers into one `Tso` request:
//! natively over one long-lived stream, on wasm32 (where gRPC-web cannot stream requests) one
//! call per batch.

mod tso;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::backoff::{BackoffKind, Backoffer};
use crate::observe;
use crate::proto::pdpb::{self, pd_client::PdClient as PdGrpc};
use crate::proto::{keyspacepb, metapb};
use crate::timestamp::Timestamp;
use crate::transport::{self, Channel};
use crate::{Config, Error, GrpcCode, Result};

/// A PD server as `GetMembers` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's name.
    pub name: String,
    /// The member's id.
    pub id: u64,
    /// The URLs clients reach it at.
    pub client_urls: Vec<String>,
}

impl From<pdpb::Member> for Member {
    fn from(m: pdpb::Member) -> Self {
        Member {
            name: m.name,
            id: m.member_id,
            client_urls: m.client_urls,
        }
    }
}

/// A region and its leader, as PD reports them (boundaries in TiKV's key space).
#[derive(Debug, Clone, PartialEq)]
pub struct RegionInfo {
    /// The region's metadata: id, range, epoch, peers.
    pub region: metapb::Region,
    /// The peer PD believes leads the region, if known.
    pub leader: Option<metapb::Peer>,
}

/// The answer to a service safe-point update: the minimum over all services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSafePoint {
    /// The service holding the minimum.
    pub service_id: String,
    /// Its remaining time to live, in seconds.
    pub ttl: i64,
    /// The minimum safe point.
    pub min_safe_point: u64,
}

/// A connection to the PD leader of one cluster. Cheap to clone.
#[derive(Clone)]
pub struct PdClient {
    inner: Arc<Inner>,
    _tso: Arc<tso::Oracle>,
}

struct Inner {
    cluster_id: u64,
    endpoints: Vec<String>,
    config: Config,
    leader: Mutex<Leader>,
    /// How many membership refreshes have finished, and a lock held while one runs: the
    /// requests that failed on one leader share one refresh instead of each asking every
    /// endpoint.
    refreshes: AtomicU64,
    refreshing: futures::lock::Mutex<()>,
}

#[derive(Clone)]
struct Leader {
    member: Member,
    members: Vec<Member>,
    channel: Channel,
}

impl std::fmt::Debug for PdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdClient")
            .field("cluster_id", &self.inner.cluster_id)
            .field("leader", &self.inner.leader().member.name)
            .finish()
    }
}

impl PdClient {
    /// Discovers the cluster through `endpoints` (`host:port` or URLs) and connects to its
    /// leader.
    ///
    /// Fails with [`Error::InvalidArgument`] when no endpoint is given, with
    /// [`Error::ClusterIdMismatch`] when endpoints belong to different clusters, and with the
    /// last endpoint's error when none answers.
    pub async fn connect(endpoints: &[impl AsRef<str>], config: &Config) -> Result<PdClient> {
        config.validate()?;
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument("no PD endpoint given".into()));
        }
        let endpoints: Vec<String> = endpoints.iter().map(|e| e.as_ref().to_owned()).collect();
        let (cluster_id, leader) = discover(&endpoints, config, None).await?;
        log::info!(
            "connected to PD leader {} at {} (cluster {cluster_id})",
            leader.member.name,
            leader.member.client_urls[0]
        );
        let inner = Arc::new(Inner {
            cluster_id,
            endpoints,
            config: config.clone(),
            leader: Mutex::new(leader),
            refreshes: AtomicU64::new(0),
            refreshing: futures::lock::Mutex::new(()),
        });
        let tso = Arc::new(tso::Oracle::start(Arc::downgrade(&inner)));
        Ok(PdClient { inner, _tso: tso })
    }

    /// The cluster id every request to PD carries.
    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// The PD leader this client talks to.
    pub fn leader(&self) -> Member {
        self.inner.leader().member
    }

    /// Every PD member, as the leader last reported them.
    pub fn members(&self) -> Vec<Member> {
        self.inner.leader().members
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Asks the configured endpoints for the membership again and follows a new leader.
    pub async fn refresh(&self) -> Result<()> {
        self.inner.refresh().await
    }

    /// A fresh timestamp. Concurrent callers share one TSO request.
    pub async fn get_timestamp(&self) -> Result<Timestamp> {
        self._tso.get().await
    }

    /// The region holding `key` (a key in TiKV's key space), or `None` if no region does.
    pub async fn get_region(&self, key: &[u8]) -> Result<Option<RegionInfo>> {
        let req = pdpb::GetRegionRequest {
            region_key: key.to_vec(),
            ..Default::default()
        };
        let resp = self
            .inner
            .call(
                "GetRegion",
                req,
                |mut c, r| async move { c.get_region(r).await },
            )
            .await?;
        Ok(region_info(resp.region, resp.leader))
    }

    /// The region right before the one holding `key`, or `None`.
    pub async fn get_prev_region(&self, key: &[u8]) -> Result<Option<RegionInfo>> {
        let req = pdpb::GetRegionRequest {
            region_key: key.to_vec(),
            ..Default::default()
        };
        let resp = self
            .inner
            .call("GetPrevRegion", req, |mut c, r| async move {
                c.get_prev_region(r).await
            })
            .await?;
        Ok(region_info(resp.region, resp.leader))
    }

    /// The region with this id, or `None`.
    pub async fn get_region_by_id(&self, region_id: u64) -> Result<Option<RegionInfo>> {
        let req = pdpb::GetRegionByIdRequest {
            region_id,
            ..Default::default()
        };
        let resp = self
            .inner
            .call("GetRegionByID", req, |mut c, r| async move {
                c.get_region_by_id(r).await
            })
            .await?;
        Ok(region_info(resp.region, resp.leader))
    }

    /// Up to `limit` regions (0 = no limit) from the one holding `start`, in key order,
    /// stopping before the first that starts at or after `end` (empty = no end).
    pub async fn scan_regions(
        &self,
        start: &[u8],
        end: &[u8],
        limit: i32,
    ) -> Result<Vec<RegionInfo>> {
        let req = pdpb::ScanRegionsRequest {
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            limit,
            ..Default::default()
        };
        let resp = self
            .inner
            .call("ScanRegions", req, |mut c, r| async move {
                c.scan_regions(r).await
            })
            .await?;
        if !resp.regions.is_empty() {
            return Ok(resp
                .regions
                .into_iter()
                .filter_map(|r| region_info(r.region, r.leader))
                .collect());
        }
        let mut leaders = resp.leaders.into_iter();
        Ok(resp
            .region_metas
            .into_iter()
            .filter_map(|meta| region_info(Some(meta), leaders.next()))
            .collect())
    }

    /// A store by id. Fails with [`Error::Pd`] naming the id if PD does not know it.
    pub async fn get_store(&self, store_id: u64) -> Result<metapb::Store> {
        let req = pdpb::GetStoreRequest {
            store_id,
            ..Default::default()
        };
        let resp = self
            .inner
            .call(
                "GetStore",
                req,
                |mut c, r| async move { c.get_store(r).await },
            )
            .await?;
        resp.store.ok_or_else(|| {
            Error::UnexpectedResponse(format!("PD returned no store for id {store_id}"))
        })
    }

    /// Every store that is not a tombstone.
    pub async fn get_all_stores(&self) -> Result<Vec<metapb::Store>> {
        let req = pdpb::GetAllStoresRequest {
            exclude_tombstone_stores: true,
            ..Default::default()
        };
        let resp = self
            .inner
            .call("GetAllStores", req, |mut c, r| async move {
                c.get_all_stores(r).await
            })
            .await?;
        Ok(resp.stores)
    }

    /// The cluster's GC safe point.
    pub async fn get_gc_safe_point(&self) -> Result<u64> {
        let req = pdpb::GetGcSafePointRequest::default();
        let resp = self
            .inner
            .call("GetGCSafePoint", req, |mut c, r| async move {
                c.get_gc_safe_point(r).await
            })
            .await?;
        Ok(resp.safe_point)
    }

    /// The transaction safe point: reads below it may miss collected data. From PD's
    /// `GetGCState` (newer PD), else its GC safe point (PD up to v8.5 answers Unimplemented).
    pub async fn get_txn_safe_point(&self) -> Result<u64> {
        let req = pdpb::GetGcStateRequest {
            exclude_gc_barriers: true,
            ..Default::default()
        };
        let state = self
            .inner
            .call("GetGCState", req, |mut c, r| async move {
                c.get_gc_state(r).await
            })
            .await;
        match state {
            Ok(resp) => Ok(resp.gc_state.map_or(0, |s| s.txn_safe_point)),
            Err(Error::Grpc {
                code: GrpcCode::Unimplemented,
                ..
            }) => self.get_gc_safe_point().await,
            Err(e) => Err(e),
        }
    }

    /// Raises the GC safe point (it never decreases); returns the value now in force.
    pub async fn update_gc_safe_point(&self, safe_point: u64) -> Result<u64> {
        let req = pdpb::UpdateGcSafePointRequest {
            safe_point,
            ..Default::default()
        };
        let resp = self
            .inner
            .call("UpdateGCSafePoint", req, |mut c, r| async move {
                c.update_gc_safe_point(r).await
            })
            .await?;
        Ok(resp.new_safe_point)
    }

    /// Sets this service's safe point for `ttl` seconds (0 or less removes it).
    pub async fn update_service_safe_point(
        &self,
        service_id: &str,
        ttl: i64,
        safe_point: u64,
    ) -> Result<ServiceSafePoint> {
        let req = pdpb::UpdateServiceGcSafePointRequest {
            service_id: service_id.as_bytes().to_vec(),
            ttl,
            safe_point,
            ..Default::default()
        };
        let resp = self
            .inner
            .call("UpdateServiceGCSafePoint", req, |mut c, r| async move {
                c.update_service_gc_safe_point(r).await
            })
            .await?;
        Ok(ServiceSafePoint {
            service_id: String::from_utf8_lossy(&resp.service_id).into_owned(),
            ttl: resp.ttl,
            min_safe_point: resp.min_safe_point,
        })
    }

    /// Loads an API v2 keyspace by name. Fails with [`Error::Pd`] if it does not exist.
    pub async fn load_keyspace(&self, name: &str) -> Result<keyspacepb::KeyspaceMeta> {
        let req = keyspacepb::LoadKeyspaceRequest {
            name: name.to_owned(),
            ..Default::default()
        };
        let resp = self
            .inner
            .call_keyspace("LoadKeyspace", req, |mut c, r| async move {
                c.load_keyspace(r).await
            })
            .await?;
        resp.keyspace
            .ok_or_else(|| Error::UnexpectedResponse(format!("PD returned no keyspace for {name}")))
    }
}

fn region_info(region: Option<metapb::Region>, leader: Option<metapb::Peer>) -> Option<RegionInfo> {
    let region = region?;
    let leader = leader.filter(|l| l.id != 0 || l.store_id != 0);
    Some(RegionInfo { region, leader })
}

/// A request that carries PD's request header.
trait PdRequest {
    fn set_header(&mut self, header: pdpb::RequestHeader);
}

/// A response that carries PD's response header.
trait PdResponse {
    fn header(&self) -> Option<&pdpb::ResponseHeader>;
}

macro_rules! pd_requests {
    ($($req:ty),* $(,)?) => {$(
        impl PdRequest for $req {
            fn set_header(&mut self, header: pdpb::RequestHeader) {
                self.header = Some(header);
            }
        }
    )*};
}

macro_rules! pd_responses {
    ($($resp:ty),* $(,)?) => {$(
        impl PdResponse for $resp {
            fn header(&self) -> Option<&pdpb::ResponseHeader> {
                self.header.as_ref()
            }
        }
    )*};
}

pd_requests! {
    pdpb::GetRegionRequest,
    pdpb::GetRegionByIdRequest,
    pdpb::ScanRegionsRequest,
    pdpb::GetStoreRequest,
    pdpb::GetAllStoresRequest,
    pdpb::GetGcSafePointRequest,
    pdpb::GetGcStateRequest,
    pdpb::UpdateGcSafePointRequest,
    pdpb::UpdateServiceGcSafePointRequest,
    pdpb::TsoRequest,
    keyspacepb::LoadKeyspaceRequest,
}

pd_responses! {
    pdpb::GetMembersResponse,
    pdpb::GetRegionResponse,
    pdpb::ScanRegionsResponse,
    pdpb::GetStoreResponse,
    pdpb::GetAllStoresResponse,
    pdpb::GetGcSafePointResponse,
    pdpb::GetGcStateResponse,
    pdpb::UpdateGcSafePointResponse,
    pdpb::UpdateServiceGcSafePointResponse,
    pdpb::TsoResponse,
    keyspacepb::LoadKeyspaceResponse,
}

/// How many times in a row a PD request goes straight to a new leader before backing off.
const MAX_LEADER_FOLLOWS: u32 = 3;

/// Whether an error means PD's leader changed or is unreachable, so membership should be
/// refreshed before retrying (pd:client/errs).
fn is_leader_change(e: &Error) -> bool {
    match e {
        Error::Transport(_) => true,
        Error::Grpc { message, .. } | Error::Pd(message) => {
            ["not leader", "no leader", "is not served", "not primary"]
                .iter()
                .any(|s| message.contains(s))
        }
        _ => false,
    }
}

impl Inner {
    fn leader(&self) -> Leader {
        self.leader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn header(&self) -> pdpb::RequestHeader {
        pdpb::RequestHeader {
            cluster_id: self.cluster_id,
            ..Default::default()
        }
    }

    /// How many membership refreshes have happened: note it before a request, and pass it
    /// to [`Inner::refresh_after`] when the request failed.
    fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Acquire)
    }

    /// Refreshes the membership unless another refresh finished since `seen` (it already
    /// found what this one would).
    async fn refresh_after(&self, seen: u64) -> Result<()> {
        let _refreshing = self.refreshing.lock().await;
        if self.refreshes() != seen {
            return Ok(());
        }
        let result = self.discover_leader().await;
        self.refreshes.fetch_add(1, Ordering::AcqRel);
        result
    }

    async fn refresh(&self) -> Result<()> {
        self.refresh_after(self.refreshes()).await
    }

    async fn discover_leader(&self) -> Result<()> {
        let (_, leader) = discover(&self.endpoints, &self.config, Some(self.cluster_id)).await?;
        let mut current = self.leader.lock().unwrap_or_else(PoisonError::into_inner);
        if current.member.client_urls != leader.member.client_urls {
            log::info!(
                "PD leader changed from {} to {}",
                current.member.name,
                leader.member.name
            );
        }
        *current = leader;
        Ok(())
    }

    /// One PD RPC with the cluster header, a deadline, header-error checks and retries.
    async fn call<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        mut req: Req,
        send: F,
    ) -> Result<Resp>
    where
        Req: PdRequest + Clone,
        Resp: PdResponse,
        F: Fn(PdGrpc<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        req.set_header(self.header());
        self.retry(method, |channel| {
            let mut request = tonic::Request::new(req.clone());
            request.set_timeout(self.config.timeout);
            send(grpc_client(channel, &self.config), request)
        })
        .await
    }

    /// As [`Inner::call`], for the Keyspace service on the same connection.
    async fn call_keyspace<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        mut req: Req,
        send: F,
    ) -> Result<Resp>
    where
        Req: PdRequest + Clone,
        Resp: PdResponse,
        F: Fn(keyspacepb::keyspace_client::KeyspaceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        req.set_header(self.header());
        self.retry(method, |channel| {
            let mut request = tonic::Request::new(req.clone());
            request.set_timeout(self.config.timeout);
            let keyspace = keyspacepb::keyspace_client::KeyspaceClient::new(channel)
                .max_decoding_message_size(self.config.max_decoding_message_size);
            send(keyspace, request)
        })
        .await
    }

    async fn retry<Resp, Fut>(
        &self,
        method: &'static str,
        attempt: impl Fn(Channel) -> Fut,
    ) -> Result<Resp>
    where
        Resp: PdResponse,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let rt = &self.config.runtime;
        let mut backoffer = Backoffer::new(self.config.pd_retry_budget);
        let mut follows = 0;
        loop {
            let leader = self.leader();
            let address = leader.member.client_urls[0].clone();
            let refreshes = self.refreshes();
            let started = rt.now();
            let outcome = match rt
                .timeout(self.config.timeout, attempt(leader.channel))
                .await
            {
                Ok(Ok(resp)) => check_header(resp.into_inner()),
                Ok(Err(status)) => Err(transport::status_to_error(status, &address)),
                Err(_) => Err(Error::Timeout {
                    operation: method,
                    after: self.config.timeout,
                }),
            };
            observe::pd_request(
                method,
                rt.now().saturating_duration_since(started),
                outcome.is_ok(),
            );
            let err = match outcome {
                Ok(resp) => return Ok(resp),
                Err(err) => err,
            };
            // Definite answers: retrying cannot change them (an old PD lacks a method, ...).
            let definite = matches!(
                &err,
                Error::Grpc {
                    code: GrpcCode::Unimplemented
                        | GrpcCode::InvalidArgument
                        | GrpcCode::PermissionDenied
                        | GrpcCode::Unauthenticated,
                    ..
                }
            );
            let fatal = definite
                || matches!(&err, Error::Grpc { message, .. } if message.contains("mismatch cluster id"))
                || matches!(&err, Error::Transport(t) if t.kind == crate::TransportErrorKind::Tls)
                || matches!(err, Error::Pd(_) | Error::UnexpectedResponse(_));
            if fatal {
                return Err(err);
            }
            log::debug!("PD {method} failed: {err}");
            if is_leader_change(&err) && self.follow_leader(refreshes, &address, &mut follows).await
            {
                continue;
            }
            backoffer.backoff(rt, BackoffKind::PdRpc, err).await?;
        }
    }

    /// After a request to the leader at `address` failed as if leadership moved: refreshes
    /// the membership (once for every request that failed together) and says whether to try
    /// the new leader at once, which it does a few times in a row at most (a leadership that
    /// keeps moving is then waited out with backoff).
    async fn follow_leader(&self, refreshes: u64, address: &str, follows: &mut u32) -> bool {
        if let Err(e) = self.refresh_after(refreshes).await {
            log::debug!("PD membership refresh failed: {e}");
            return false;
        }
        let moved = self.leader().member.client_urls[0] != address;
        if moved && *follows < MAX_LEADER_FOLLOWS {
            *follows += 1;
            return true;
        }
        false
    }
}

/// Turns an error in a PD response header into our error.
fn check_header<Resp: PdResponse>(resp: Resp) -> Result<Resp> {
    match resp.header().and_then(|h| h.error.as_ref()) {
        Some(e) if e.r#type != pdpb::ErrorType::Ok as i32 => Err(Error::Pd(format!(
            "{}: {}",
            pdpb::ErrorType::try_from(e.r#type)
                .unwrap_or(pdpb::ErrorType::Unknown)
                .as_str_name(),
            e.message
        ))),
        _ => Ok(resp),
    }
}

/// Asks each endpoint for the membership; all answers must agree on the cluster id (and
/// match `expected` when given). Connects to the leader.
async fn discover(
    endpoints: &[String],
    config: &Config,
    expected: Option<u64>,
) -> Result<(u64, Leader)> {
    let mut found: Option<(String, pdpb::GetMembersResponse)> = None;
    let mut last_error = None;
    for endpoint in endpoints {
        match get_members_from(endpoint, config).await {
            Ok(resp) => {
                let id = members_cluster_id(&resp);
                let expected =
                    expected.or_else(|| found.as_ref().map(|(_, first)| members_cluster_id(first)));
                if let Some(expected) = expected.filter(|e| *e != id) {
                    return Err(Error::ClusterIdMismatch {
                        expected,
                        got: id,
                        address: endpoint.clone(),
                    });
                }
                if found.is_none() {
                    found = Some((endpoint.clone(), resp));
                }
            }
            Err(e) => {
                log::warn!("PD endpoint {endpoint} did not answer GetMembers: {e}");
                last_error = Some(e);
            }
        }
    }
    let Some((endpoint, resp)) = found else {
        return Err(last_error.unwrap_or_else(|| Error::Pd("no PD endpoint answered".into())));
    };
    let cluster_id = members_cluster_id(&resp);
    if cluster_id == 0 {
        return Err(Error::UnexpectedResponse(format!(
            "PD {endpoint} reported cluster id 0"
        )));
    }
    let member = resp
        .leader
        .map(Member::from)
        .filter(|m| !m.client_urls.is_empty())
        .ok_or_else(|| Error::Pd(format!("PD {endpoint} knows no leader with a client URL")))?;
    let channel = transport::connect(&member.client_urls[0], config).await?;
    Ok((
        cluster_id,
        Leader {
            member,
            members: resp.members.into_iter().map(Member::from).collect(),
            channel,
        },
    ))
}

fn grpc_client(channel: Channel, config: &Config) -> PdGrpc<Channel> {
    PdGrpc::new(channel)
        .max_decoding_message_size(config.max_decoding_message_size)
        .max_encoding_message_size(config.max_encoding_message_size)
}

fn members_cluster_id(resp: &pdpb::GetMembersResponse) -> u64 {
    resp.header.as_ref().map_or(0, |h| h.cluster_id)
}

/// Connects to `endpoint` and calls `GetMembers` there, within the configured timeout.
async fn get_members_from(endpoint: &str, config: &Config) -> Result<pdpb::GetMembersResponse> {
    let rt = &config.runtime;
    let started = rt.now();
    let call = async {
        let channel = transport::connect(endpoint, config).await?;
        let mut request = tonic::Request::new(pdpb::GetMembersRequest::default());
        request.set_timeout(config.timeout);
        grpc_client(channel, config)
            .get_members(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| transport::status_to_error(status, endpoint))
    };
    let result = match rt.timeout(config.timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            operation: "PD GetMembers",
            after: config.timeout,
        }),
    };
    let result = result.and_then(check_header);
    observe::pd_request(
        "GetMembers",
        rt.now().saturating_duration_since(started),
        result.is_ok(),
    );
    result
}
