//! The part of PD's HTTP API that tools read (`pd-ctl`, TiDB's status pages, client-go's
//! `pdhttp`): `GET /pd/api/v1/version`, `/pd/api/v1/stores` and `/pd/api/v1/regions`, served
//! on PD's port next to gRPC with JSON shaped like PD's (keys as upper-case hex, state and
//! role names spelled out). `http_api` serves it, with the mock's own admin API (`admin`).

use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::cluster::{Cluster, Region, PD_VERSION};
use crate::proto::metapb;

/// Where PD's HTTP API lives.
const PREFIX: &str = "/pd/api/v1/";

/// Answers PD's HTTP API paths from the cluster's metadata.
#[derive(Debug, Clone)]
pub(crate) struct PdHttp {
    cluster: Arc<Cluster>,
}

impl PdHttp {
    pub(crate) fn new(cluster: Arc<Cluster>) -> Self {
        PdHttp { cluster }
    }

    /// Whether `path` is one of PD's HTTP API.
    pub(crate) fn serves(path: &str) -> bool {
        path.starts_with(PREFIX)
    }

    /// The status and JSON body for `method path`, or `None` when the path is not PD's HTTP
    /// API (so gRPC handles it).
    pub(crate) fn answer(&self, method: &Method, path: &str) -> Option<(StatusCode, String)> {
        let path = path.strip_prefix(PREFIX)?;
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
