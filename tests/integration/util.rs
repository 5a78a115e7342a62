//! Helpers shared by the integration tests.

use tikv_client::proto::{kvrpcpb, metapb, pdpb, tikvpb};
use tikv_client::testutils::MockCluster;

pub async fn channel(addr: &str) -> tonic::transport::Channel {
    let url = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub async fn pd_client(
    cluster: &MockCluster,
) -> pdpb::pd_client::PdClient<tonic::transport::Channel> {
    pdpb::pd_client::PdClient::new(channel(&cluster.pd_endpoint()).await)
}

/// A raw stub for the store with this id.
pub async fn tikv(
    cluster: &MockCluster,
    store: u64,
) -> tikvpb::tikv_client::TikvClient<tonic::transport::Channel> {
    let i = cluster
        .store_ids()
        .iter()
        .position(|s| *s == store)
        .expect("known store");
    tikvpb::tikv_client::TikvClient::new(channel(&cluster.store_addrs()[i]).await)
}

/// The context a correct client sends for a raw key: its region, epoch and leader peer.
pub fn ctx_for(cluster: &MockCluster, key: &[u8]) -> (kvrpcpb::Context, u64) {
    ctx_in(cluster, cluster.region_of_raw_key(key))
}

/// The context and leader store for a transactional key.
pub fn txn_ctx_for(cluster: &MockCluster, key: &[u8]) -> (kvrpcpb::Context, u64) {
    ctx_in(cluster, cluster.region_of_txn_key(key))
}

fn ctx_in(cluster: &MockCluster, region: Option<metapb::Region>) -> (kvrpcpb::Context, u64) {
    let region = region.expect("every key has a region");
    let leader = cluster.leader_of(region.id).unwrap();
    let peer = peer_on(&region, leader);
    (
        kvrpcpb::Context {
            region_id: region.id,
            region_epoch: region.region_epoch,
            peer: Some(peer),
            ..Default::default()
        },
        leader,
    )
}

pub fn peer_on(region: &metapb::Region, store: u64) -> metapb::Peer {
    region
        .peers
        .iter()
        .find(|p| p.store_id == store)
        .cloned()
        .unwrap()
}

/// The calls of `method` in the cluster's call log, in order.
pub fn calls_of(cluster: &MockCluster, method: &str) -> Vec<tikv_client::testutils::Call> {
    cluster
        .calls()
        .into_iter()
        .filter(|c| c.method == method)
        .collect()
}

/// Polls `value` until `done` holds of it, failing after 10 s with `what` and the last value.
pub async fn wait_until<T: std::fmt::Debug>(
    what: &str,
    value: impl Fn() -> T,
    done: impl Fn(&T) -> bool,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = value();
        if done(&now) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still {now:?} after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
