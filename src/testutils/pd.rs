//! The mock PD: membership, timestamps, regions, stores, GC safe points and keyspaces
//! (spec 8), over the shared cluster metadata.
//!
//! PD may run as several members ([`PdGroup`]) that share the cluster's state and its timestamp
//! oracle, one of them leading. As in PD (server/grpc_service.go), any member answers
//! GetMembers and GetClusterInfo; a follower refuses every other request with `Unavailable`
//! "not leader" before looking at the cluster id, and fails a Tso request (after the cluster
//! id check) with TSO's own error, `Unknown` "... requested pd is not leader of cluster",
//! which ends the stream.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};

use super::cluster::{keyspace_id, unix_now, ApiVersion, Cluster, Meta, Region, LOGICAL_BITS};
use super::fault::{tonic_code, Call, CallInfo, Labels, Outcome, Reaction};
use super::router::Router;
use super::tikv::Node;
use crate::kv::memcomparable;
use crate::proto::keyspacepb::{self, keyspace_server::Keyspace, keyspace_server::KeyspaceServer};
use crate::proto::pdpb::{self, pd_server::Pd, pd_server::PdServer};
use crate::GrpcCode;

/// The largest TSO batch PD hands out at once.
const MAX_TSO_COUNT: u32 = 1 << (LOGICAL_BITS - 1);

/// PD's TSO error on a member that does not lead (pkg/tso `GenerateTSO`, wrapped in
/// `codes.Unknown` by the Tso handler).
const TSO_NOT_LEADER: &str =
    "[PD:tso:ErrGenerateTimestamp]generate timestamp failed, requested pd is not leader of cluster";

/// The PD members, named `pd-1`..`pd-n`, and which one leads.
#[derive(Debug)]
pub(crate) struct PdGroup {
    members: Vec<pdpb::Member>,
    addrs: Vec<SocketAddr>,
    leader: AtomicUsize,
    /// Tso streams open now, on every member.
    tso_streams: AtomicUsize,
}

/// Counts one open Tso stream for as long as it lives.
struct OpenStream(Arc<PdGroup>);

impl OpenStream {
    fn new(group: &Arc<PdGroup>) -> Self {
        group.tso_streams.fetch_add(1, Ordering::SeqCst);
        OpenStream(group.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.tso_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PdGroup {
    /// Members at these addresses (at least one), advertising `https://` client URLs when
    /// they serve TLS; the first leads.
    pub(crate) fn new(cluster_id: u64, addrs: Vec<SocketAddr>, tls: bool) -> Self {
        let first_id = cluster_id.rotate_left(17) | 1;
        let members = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let url = format!("{}://{addr}", if tls { "https" } else { "http" });
                pdpb::Member {
                    name: format!("pd-{}", i + 1),
                    // Odd, so never 0, and distinct.
                    member_id: first_id.wrapping_add(2 * i as u64),
                    client_urls: vec![url.clone()],
                    peer_urls: vec![url],
                    ..Default::default()
                }
            })
            .collect();
        PdGroup {
            members,
            addrs,
            leader: AtomicUsize::new(0),
            tso_streams: AtomicUsize::new(0),
        }
    }

    /// How many Tso streams are open now, on every member.
    pub(crate) fn tso_streams(&self) -> usize {
        self.tso_streams.load(Ordering::SeqCst)
    }

    /// The index of the leading member.
    pub(crate) fn leader(&self) -> usize {
        self.leader.load(Ordering::SeqCst)
    }

    /// Every member's address, by index.
    pub(crate) fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Makes member `to` the leader.
    pub(crate) fn transfer(&self, to: usize) -> Result<(), String> {
        if to >= self.members.len() {
            return Err(format!(
                "no PD member {to}: there are {} (0-based)",
                self.members.len()
            ));
        }
        self.leader.store(to, Ordering::SeqCst);
        Ok(())
    }
}

/// Which members may serve a request, and how the others refuse it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Only the leader; a follower answers `Unavailable` "not leader" before the id check.
    Leader,
    /// Any member (GetMembers, GetClusterInfo).
    Any,
    /// The TSO allocator: a follower fails after the cluster id check, with TSO's error.
    Tso,
}

#[derive(Clone)]
pub(crate) struct MockPd {
    cluster: Arc<Cluster>,
    node: Arc<Node>,
    group: Arc<PdGroup>,
    /// This member's index in the group.
    index: usize,
}

type Reply<T> = Result<Response<T>, Status>;
type TsoStream = Pin<Box<dyn Stream<Item = Result<pdpb::TsoResponse, Status>> + Send>>;

impl MockPd {
    pub(crate) fn new(node: Arc<Node>, group: Arc<PdGroup>, index: usize) -> Self {
        MockPd {
            cluster: node.cluster.clone(),
            node,
            group,
            index,
        }
    }

    pub(crate) fn into_router(self) -> Router {
        let mut pd = PdServer::new(self.clone())
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20)
            .accept_compressed(CompressionEncoding::Gzip);
        if self.node.compress_responses {
            pd = pd.send_compressed(CompressionEncoding::Gzip);
        }
        Router::default().add(pd).add(KeyspaceServer::new(self))
    }

    fn header(&self) -> Option<pdpb::ResponseHeader> {
        Some(pdpb::ResponseHeader {
            cluster_id: self.cluster.id,
            error: None,
        })
    }

    fn error_header(
        &self,
        kind: pdpb::ErrorType,
        message: impl Into<String>,
    ) -> Option<pdpb::ResponseHeader> {
        Some(pdpb::ResponseHeader {
            cluster_id: self.cluster.id,
            error: Some(pdpb::Error {
                r#type: kind as i32,
                message: message.into(),
            }),
        })
    }

    fn available(&self) -> Result<(), Status> {
        if self.cluster.meta().pd_available {
            Ok(())
        } else {
            Err(Status::unavailable("not leader"))
        }
    }

    fn leads(&self) -> bool {
        self.group.leader() == self.index
    }

    /// Every request but GetMembers and GetClusterInfo must carry this cluster's id (0 included
    /// is a mismatch), and only the leader serves it.
    fn check(
        &self,
        method: &'static str,
        header: Option<&pdpb::RequestHeader>,
    ) -> Result<(), Status> {
        self.admit(
            method,
            Some(header.map_or(0, |h| h.cluster_id)),
            Role::Leader,
            None,
        )
        .map(drop)
    }

    /// As [`MockPd::check`] for a region query about `key`: true when a fault rule makes PD
    /// answer that it knows no region for it.
    fn check_region_query(
        &self,
        method: &'static str,
        header: Option<&pdpb::RequestHeader>,
        key: &[u8],
    ) -> Result<bool, Status> {
        let reaction = self.admit(
            method,
            Some(header.map_or(0, |h| h.cluster_id)),
            Role::Leader,
            Some(key),
        )?;
        Ok(matches!(reaction, Some(Reaction::NoRegion)))
    }

    /// Logs the call (as store 0) with whether it was accepted; `cluster_id: None` skips the
    /// cluster id check, `role` says whether a follower may serve it. A fault rule's gRPC
    /// status applies to PD calls too (other reactions are TiKV's).
    /// Returns the fault rule's reaction left for the handler (PD's `NoRegion`).
    fn admit(
        &self,
        method: &'static str,
        cluster_id: Option<u64>,
        role: Role,
        key: Option<&[u8]>,
    ) -> Result<Option<Reaction>, Status> {
        let info = CallInfo {
            method,
            store: 0,
            region: 0,
            first_key: key,
        };
        let (injected, left) = match self.node.faults.react(&info) {
            Some(Reaction::Status { code, message }) => {
                (Err(Status::new(tonic_code(code), message)), None)
            }
            other => (Ok(()), other),
        };
        let follower = !self.leads();
        let verdict = injected
            .and_then(|()| self.available())
            .and_then(|()| match role {
                Role::Leader if follower => Err(Status::unavailable("not leader")),
                _ => Ok(()),
            })
            .and_then(|()| {
                let Some(got) = cluster_id else {
                    return Ok(());
                };
                if got != self.cluster.id {
                    return Err(Status::failed_precondition(format!(
                        "mismatch cluster id, need {} but got {got}",
                        self.cluster.id
                    )));
                }
                Ok(())
            })
            .and_then(|()| match role {
                Role::Tso if follower => Err(Status::unknown(TSO_NOT_LEADER)),
                _ => Ok(()),
            });
        self.node.faults.record(Call {
            method,
            store: 0,
            region: 0,
            labels: Labels::default(),
            batched: false,
            outcome: match &verdict {
                Ok(()) => Outcome::Ok,
                Err(status) => Outcome::Status(GrpcCode::from(status.code())),
            },
            first_key: key.unwrap_or_default().to_vec(),
        });
        verdict.map(|()| left)
    }

    /// Whether a region starts at each end of the keyspace's transactional range (PD's default
    /// region bound type). Until then PD reports the keyspace as not found by name. Only API v2
    /// clusters split their keyspaces.
    fn keyspace_regions_split(&self, meta: &Meta, keyspace: &keyspacepb::KeyspaceMeta) -> bool {
        let Some(id) = keyspace_id(keyspace) else {
            return false;
        };
        if self.cluster.api_version != ApiVersion::V2 {
            return true;
        }
        let prefix = u32::from_be_bytes([b'x', 0, 0, 0]) | id;
        [prefix, prefix + 1].iter().all(|bound| {
            let key = memcomparable::encode(&bound.to_be_bytes());
            meta.region_containing(&key)
                .is_some_and(|r| r.meta.start_key == key)
        })
    }

    fn timestamp(&self) -> pdpb::Timestamp {
        let (physical, logical) = self.cluster.tso(1);
        pdpb::Timestamp {
            physical,
            logical,
            suffix_bits: 0,
        }
    }

    fn region_response(&self, region: Option<Region>) -> pdpb::GetRegionResponse {
        pdpb::GetRegionResponse {
            header: self.header(),
            leader: region.as_ref().and_then(|r| r.leader_peer().cloned()),
            region: region.map(|r| r.meta),
            ..Default::default()
        }
    }
}

fn pd_region(r: &Region) -> pdpb::Region {
    pdpb::Region {
        region: Some(r.meta.clone()),
        leader: r.leader_peer().cloned(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Pd for MockPd {
    /// Answered by any member without checking the cluster id: this is how clients learn it,
    /// and the leader.
    async fn get_members(
        &self,
        _request: Request<pdpb::GetMembersRequest>,
    ) -> Reply<pdpb::GetMembersResponse> {
        self.admit("GetMembers", None, Role::Any, None)?;
        let leader = self.group.members.get(self.group.leader()).cloned();
        Ok(Response::new(pdpb::GetMembersResponse {
            header: self.header(),
            members: self.group.members.clone(),
            leader: leader.clone(),
            etcd_leader: leader,
            ..Default::default()
        }))
    }

    /// One response per request, in order: the last of `count` consecutive timestamps. An
    /// error ends the stream; on a follower, the first request fails.
    async fn tso(&self, request: Request<Streaming<pdpb::TsoRequest>>) -> Reply<TsoStream> {
        self.available()?;
        let pd = self.clone();
        let inbound = request.into_inner();
        let open = OpenStream::new(&self.group);
        let responses = futures::stream::unfold(
            (inbound, pd, false, open),
            |(mut inbound, pd, failed, open)| async move {
                if failed {
                    return None;
                }
                let req = match inbound.next().await? {
                    Ok(req) => req,
                    Err(status) => return Some((Err(status), (inbound, pd, true, open))),
                };
                let cluster_id = req.header.as_ref().map_or(0, |h| h.cluster_id);
                let answer = pd
                    .admit("Tso", Some(cluster_id), Role::Tso, None)
                    .and_then(|_| {
                        if req.count == 0 {
                            return Err(Status::invalid_argument("tso count should be positive"));
                        }
                        if req.count > MAX_TSO_COUNT {
                            return Err(Status::invalid_argument(format!(
                                "tso count {} exceeds {MAX_TSO_COUNT}",
                                req.count
                            )));
                        }
                        let (physical, logical) = pd.cluster.tso(req.count);
                        Ok(pdpb::TsoResponse {
                            header: pd.header(),
                            count: req.count,
                            timestamp: Some(pdpb::Timestamp {
                                physical,
                                logical,
                                suffix_bits: 0,
                            }),
                        })
                    });
                let failed = answer.is_err();
                Some((answer, (inbound, pd, failed, open)))
            },
        );
        Ok(Response::new(Box::pin(responses)))
    }

    async fn get_region(
        &self,
        request: Request<pdpb::GetRegionRequest>,
    ) -> Reply<pdpb::GetRegionResponse> {
        let req = request.into_inner();
        let hidden = self.check_region_query("GetRegion", req.header.as_ref(), &req.region_key)?;
        let region = self
            .cluster
            .meta()
            .pd_region_containing(&req.region_key)
            .filter(|_| !hidden);
        Ok(Response::new(self.region_response(region)))
    }

    async fn get_prev_region(
        &self,
        request: Request<pdpb::GetRegionRequest>,
    ) -> Reply<pdpb::GetRegionResponse> {
        let req = request.into_inner();
        let hidden =
            self.check_region_query("GetPrevRegion", req.header.as_ref(), &req.region_key)?;
        let prev = self
            .cluster
            .meta()
            .pd_prev_region(&req.region_key)
            .filter(|_| !hidden);
        Ok(Response::new(self.region_response(prev)))
    }

    async fn get_region_by_id(
        &self,
        request: Request<pdpb::GetRegionByIdRequest>,
    ) -> Reply<pdpb::GetRegionResponse> {
        let req = request.into_inner();
        self.check("GetRegionByID", req.header.as_ref())?;
        let region = self.cluster.meta().pd_region_by_id(req.region_id);
        Ok(Response::new(self.region_response(region)))
    }

    async fn scan_regions(
        &self,
        request: Request<pdpb::ScanRegionsRequest>,
    ) -> Reply<pdpb::ScanRegionsResponse> {
        let req = request.into_inner();
        let hidden = self.check_region_query("ScanRegions", req.header.as_ref(), &req.start_key)?;
        let meta = self.cluster.meta();
        let limit = if hidden {
            0
        } else if req.limit <= 0 {
            usize::MAX
        } else {
            req.limit as usize
        };
        let mut regions = meta.pd_regions_in(&req.start_key, &req.end_key);
        regions.truncate(limit);
        Ok(Response::new(pdpb::ScanRegionsResponse {
            header: self.header(),
            region_metas: regions.iter().map(|r| r.meta.clone()).collect(),
            leaders: regions
                .iter()
                .map(|r| r.leader_peer().cloned().unwrap_or_default())
                .collect(),
            regions: regions.iter().map(pd_region).collect(),
        }))
    }

    async fn batch_scan_regions(
        &self,
        request: Request<pdpb::BatchScanRegionsRequest>,
    ) -> Reply<pdpb::BatchScanRegionsResponse> {
        let req = request.into_inner();
        self.check("BatchScanRegions", req.header.as_ref())?;
        let mut previous_end: Option<&[u8]> = None;
        for range in &req.ranges {
            let inverted = !range.end_key.is_empty() && range.start_key > range.end_key;
            let overlapping =
                previous_end.is_some_and(|end| end.is_empty() || range.start_key.as_slice() < end);
            if inverted || overlapping {
                return Ok(Response::new(pdpb::BatchScanRegionsResponse {
                    header: self.error_header(
                        pdpb::ErrorType::Unknown,
                        format!(
                            "invalid key range, start key > end key or ranges overlap: [{:?}, {:?})",
                            range.start_key, range.end_key
                        ),
                    ),
                    regions: Vec::new(),
                }));
            }
            previous_end = Some(&range.end_key);
        }
        let meta = self.cluster.meta();
        let limit = if req.limit <= 0 {
            usize::MAX
        } else {
            req.limit as usize
        };
        let mut regions: Vec<pdpb::Region> = Vec::new();
        for range in &req.ranges {
            for r in meta.pd_regions_in(&range.start_key, &range.end_key) {
                let seen = regions
                    .last()
                    .and_then(|last| last.region.as_ref())
                    .is_some_and(|last| last.id == r.meta.id);
                if !seen && regions.len() < limit {
                    regions.push(pd_region(&r));
                }
            }
        }
        Ok(Response::new(pdpb::BatchScanRegionsResponse {
            header: self.header(),
            regions,
        }))
    }

    async fn get_store(
        &self,
        request: Request<pdpb::GetStoreRequest>,
    ) -> Reply<pdpb::GetStoreResponse> {
        let req = request.into_inner();
        self.check("GetStore", req.header.as_ref())?;
        let store = self
            .cluster
            .meta()
            .stores
            .get(&req.store_id)
            .map(|s| s.meta.clone());
        Ok(Response::new(match store {
            Some(store) => pdpb::GetStoreResponse {
                header: self.header(),
                store: Some(store),
                stats: None,
            },
            None => pdpb::GetStoreResponse {
                header: self.error_header(
                    pdpb::ErrorType::Unknown,
                    format!("invalid store ID {}, not found", req.store_id),
                ),
                ..Default::default()
            },
        }))
    }

    async fn get_all_stores(
        &self,
        request: Request<pdpb::GetAllStoresRequest>,
    ) -> Reply<pdpb::GetAllStoresResponse> {
        let req = request.into_inner();
        self.check("GetAllStores", req.header.as_ref())?;
        let stores = self
            .cluster
            .meta()
            .stores
            .values()
            .filter(|s| {
                !(req.exclude_tombstone_stores
                    && s.meta.state == crate::proto::metapb::StoreState::Tombstone as i32)
            })
            .map(|s| s.meta.clone())
            .collect();
        Ok(Response::new(pdpb::GetAllStoresResponse {
            header: self.header(),
            stores,
        }))
    }

    async fn get_gc_safe_point(
        &self,
        request: Request<pdpb::GetGcSafePointRequest>,
    ) -> Reply<pdpb::GetGcSafePointResponse> {
        let req = request.into_inner();
        self.check("GetGCSafePoint", req.header.as_ref())?;
        Ok(Response::new(pdpb::GetGcSafePointResponse {
            header: self.header(),
            safe_point: self.cluster.meta().gc_safe_point,
        }))
    }

    /// The GC state newer clients read (client-go's read check uses `txn_safe_point`). The
    /// mock keeps PD's classic model: one safe point serves as both, and the other services'
    /// safe points are reported as GC barriers.
    async fn get_gc_state(
        &self,
        request: Request<pdpb::GetGcStateRequest>,
    ) -> Reply<pdpb::GetGcStateResponse> {
        let req = request.into_inner();
        self.check("GetGCState", req.header.as_ref())?;
        let now = unix_now().as_secs() as i64;
        let meta = self.cluster.meta();
        let gc_barriers = if req.exclude_gc_barriers {
            Vec::new()
        } else {
            let mut barriers: Vec<pdpb::GcBarrierInfo> = meta
                .service_safe_points
                .iter()
                .filter(|(id, (_, expire_at))| id.as_slice() != b"gc_worker" && *expire_at > now)
                .map(|(id, (ts, expire_at))| pdpb::GcBarrierInfo {
                    barrier_id: String::from_utf8_lossy(id).into_owned(),
                    barrier_ts: *ts,
                    ttl_seconds: if *expire_at == i64::MAX {
                        i64::MAX
                    } else {
                        expire_at - now
                    },
                })
                .collect();
            barriers.sort_by(|a, b| a.barrier_id.cmp(&b.barrier_id));
            barriers
        };
        Ok(Response::new(pdpb::GetGcStateResponse {
            header: self.header(),
            gc_state: Some(pdpb::GcState {
                keyspace_scope: req.keyspace_scope,
                is_keyspace_level_gc: false,
                txn_safe_point: meta.gc_safe_point,
                gc_safe_point: meta.gc_safe_point,
                gc_barriers,
            }),
        }))
    }

    /// Never decreases; a smaller request is not an error.
    async fn update_gc_safe_point(
        &self,
        request: Request<pdpb::UpdateGcSafePointRequest>,
    ) -> Reply<pdpb::UpdateGcSafePointResponse> {
        let req = request.into_inner();
        self.check("UpdateGCSafePoint", req.header.as_ref())?;
        let safe_point = {
            let mut meta = self.cluster.meta();
            meta.gc_safe_point = meta.gc_safe_point.max(req.safe_point);
            meta.gc_safe_point
        };
        // TiKV's GC worker follows the safe point PD holds; here it runs at once (spec 1.6).
        self.node.mvcc().gc(safe_point);
        self.node.check_regions(None);
        Ok(Response::new(pdpb::UpdateGcSafePointResponse {
            header: self.header(),
            new_safe_point: safe_point,
        }))
    }

    /// The classic service safe-point rules of PD up to v8.5 (spec 8.6).
    async fn update_service_gc_safe_point(
        &self,
        request: Request<pdpb::UpdateServiceGcSafePointRequest>,
    ) -> Reply<pdpb::UpdateServiceGcSafePointResponse> {
        let req = request.into_inner();
        self.check("UpdateServiceGCSafePoint", req.header.as_ref())?;
        let now = unix_now().as_secs() as i64;
        let mut meta = self.cluster.meta();
        let points = &mut meta.service_safe_points;
        if req.ttl <= 0 {
            points.remove(&req.service_id);
        }
        points.retain(|_, (_, expire_at)| *expire_at > now);
        if points.is_empty() {
            points.insert(b"gc_worker".to_vec(), (0, i64::MAX));
        }
        let minimum = |points: &std::collections::HashMap<Vec<u8>, (u64, i64)>| {
            points
                .iter()
                .min_by_key(|(id, (sp, _))| (*sp, (*id).clone()))
                .map(|(id, (sp, exp))| (id.clone(), *sp, *exp))
                .expect("gc_worker is always present")
        };
        let mut min = minimum(points);
        if req.ttl > 0 && req.safe_point >= min.1 {
            let expire_at = if req.service_id == b"gc_worker" {
                i64::MAX
            } else {
                now.saturating_add(req.ttl)
            };
            points.insert(req.service_id.clone(), (req.safe_point, expire_at));
            if min.0 == req.service_id {
                min = minimum(points);
            }
        }
        Ok(Response::new(pdpb::UpdateServiceGcSafePointResponse {
            header: self.header(),
            service_id: min.0,
            ttl: min.2 - now,
            min_safe_point: min.1,
        }))
    }

    async fn get_min_ts(
        &self,
        request: Request<pdpb::GetMinTsRequest>,
    ) -> Reply<pdpb::GetMinTsResponse> {
        let req = request.into_inner();
        self.check("GetMinTS", req.header.as_ref())?;
        Ok(Response::new(pdpb::GetMinTsResponse {
            header: self.header(),
            timestamp: Some(self.timestamp()),
        }))
    }

    /// Split keys are region keys (already encoded by the client).
    async fn split_regions(
        &self,
        request: Request<pdpb::SplitRegionsRequest>,
    ) -> Reply<pdpb::SplitRegionsResponse> {
        let req = request.into_inner();
        self.check("SplitRegions", req.header.as_ref())?;
        let regions_id = req
            .split_keys
            .iter()
            .filter_map(|k| self.cluster.split(k))
            .map(|r| r.id)
            .collect();
        Ok(Response::new(pdpb::SplitRegionsResponse {
            header: self.header(),
            finished_percentage: 100,
            regions_id,
        }))
    }

    /// Every store holds every region already: nothing to move.
    async fn scatter_region(
        &self,
        request: Request<pdpb::ScatterRegionRequest>,
    ) -> Reply<pdpb::ScatterRegionResponse> {
        let req = request.into_inner();
        self.check("ScatterRegion", req.header.as_ref())?;
        Ok(Response::new(pdpb::ScatterRegionResponse {
            header: self.header(),
            finished_percentage: 100,
            failed_regions_id: Vec::new(),
        }))
    }

    async fn get_cluster_info(
        &self,
        _request: Request<pdpb::GetClusterInfoRequest>,
    ) -> Reply<pdpb::GetClusterInfoResponse> {
        // Not checked against the cluster id, as upstream: PD's client calls it during
        // discovery with an empty request.
        self.admit("GetClusterInfo", None, Role::Any, None)?;
        Ok(Response::new(pdpb::GetClusterInfoResponse {
            header: self.header(),
            service_modes: vec![pdpb::ServiceMode::PdSvcMode as i32],
            tso_urls: Vec::new(),
        }))
    }
}

#[tonic::async_trait]
impl Keyspace for MockPd {
    async fn load_keyspace(
        &self,
        request: Request<keyspacepb::LoadKeyspaceRequest>,
    ) -> Reply<keyspacepb::LoadKeyspaceResponse> {
        let req = request.into_inner();
        self.check("LoadKeyspace", req.header.as_ref())?;
        let found = {
            let meta = self.cluster.meta();
            meta.keyspace_by_name(&req.name)
                .filter(|k| self.keyspace_regions_split(&meta, k))
                .cloned()
        };
        Ok(Response::new(match found {
            Some(keyspace) => keyspacepb::LoadKeyspaceResponse {
                header: self.header(),
                keyspace: Some(keyspace),
            },
            None => keyspacepb::LoadKeyspaceResponse {
                header: self.error_header(
                    pdpb::ErrorType::EntryNotFound,
                    format!("keyspace {} not found", req.name),
                ),
                keyspace: None,
            },
        }))
    }

    async fn load_keyspace_by_id(
        &self,
        request: Request<keyspacepb::LoadKeyspaceByIdRequest>,
    ) -> Reply<keyspacepb::LoadKeyspaceResponse> {
        let req = request.into_inner();
        self.check("LoadKeyspaceByID", req.header.as_ref())?;
        let wanted = match req.keyspace {
            Some(keyspacepb::load_keyspace_by_id_request::Keyspace::Id(id)) => Some(id),
            _ => None,
        };
        let found = self
            .cluster
            .meta()
            .keyspaces
            .iter()
            .find(|k| wanted.is_some() && keyspace_id(k) == wanted)
            .cloned();
        Ok(Response::new(match found {
            Some(keyspace) => keyspacepb::LoadKeyspaceResponse {
                header: self.header(),
                keyspace: Some(keyspace),
            },
            None => keyspacepb::LoadKeyspaceResponse {
                header: self.error_header(pdpb::ErrorType::EntryNotFound, "keyspace not found"),
                keyspace: None,
            },
        }))
    }
}
