//! A PD of several members whose leader changes (spec 8.1, 8.2, 8.3), through the raw
//! generated stubs: followers refuse what only the leader serves, every member names the
//! leader, and timestamps keep increasing across leaders.

use std::collections::HashSet;

use futures::channel::mpsc;
use tikv_client::proto::pdpb::{self, pd_client::PdClient};
use tikv_client::testutils::MockCluster;
use tonic::transport::Channel;

use super::util::channel;

async fn member(cluster: &MockCluster, index: usize) -> PdClient<Channel> {
    PdClient::new(channel(&cluster.pd_endpoints()[index]).await)
}

fn header(cluster_id: u64) -> Option<pdpb::RequestHeader> {
    Some(pdpb::RequestHeader {
        cluster_id,
        ..Default::default()
    })
}

async fn get_region(
    pd: &mut PdClient<Channel>,
    cluster_id: u64,
) -> Result<pdpb::GetRegionResponse, tonic::Status> {
    pd.get_region(pdpb::GetRegionRequest {
        header: header(cluster_id),
        region_key: b"a".to_vec(),
        ..Default::default()
    })
    .await
    .map(tonic::Response::into_inner)
}

async fn members_seen_by(pd: &mut PdClient<Channel>) -> pdpb::GetMembersResponse {
    pd.get_members(pdpb::GetMembersRequest::default())
        .await
        .unwrap()
        .into_inner()
}

/// A Tso stream on `pd`: the sender of requests and the replies.
async fn tso_stream(
    pd: &mut PdClient<Channel>,
) -> (
    mpsc::UnboundedSender<pdpb::TsoRequest>,
    tonic::Streaming<pdpb::TsoResponse>,
) {
    let (tx, rx) = mpsc::unbounded();
    (tx, pd.tso(rx).await.unwrap().into_inner())
}

fn tso_request(cluster_id: u64) -> pdpb::TsoRequest {
    pdpb::TsoRequest {
        header: header(cluster_id),
        count: 1,
        ..Default::default()
    }
}

fn composed(resp: &pdpb::TsoResponse) -> u64 {
    let ts = resp.timestamp.unwrap();
    ((ts.physical as u64) << 18) | ts.logical as u64
}

#[tokio::test]
async fn one_member_by_default_and_pd_endpoint_follows_the_leader() {
    let single = MockCluster::builder().start().await.unwrap();
    assert_eq!(single.pd_endpoints(), vec![single.pd_endpoint()]);
    assert_eq!(single.pd_leader(), 0);
    assert!(single.transfer_pd_leader(1).is_err());

    let cluster = MockCluster::builder().pd_members(3).start().await.unwrap();
    let endpoints = cluster.pd_endpoints();
    assert_eq!(endpoints.len(), 3);
    assert_eq!(
        endpoints.iter().collect::<HashSet<_>>().len(),
        3,
        "own ports"
    );
    assert!(endpoints.iter().all(|e| e.starts_with("127.0.0.1:")));
    assert_eq!(cluster.pd_endpoint(), endpoints[0]);
    cluster.transfer_pd_leader(2).unwrap();
    assert_eq!(cluster.pd_leader(), 2);
    assert_eq!(cluster.pd_endpoint(), endpoints[2]);
    assert!(cluster.transfer_pd_leader(3).is_err());
    assert_eq!(cluster.pd_leader(), 2, "a failed transfer changes nothing");
}

#[tokio::test]
async fn a_follower_refuses_all_but_membership_and_cluster_info() {
    let cluster = MockCluster::builder().pd_members(3).start().await.unwrap();
    let id = cluster.cluster_id();
    let mut follower = member(&cluster, 1).await;
    // Not leader comes before the cluster id check (PD's validateRoleInRequest).
    for cluster_id in [id, 0, id + 1] {
        let status = get_region(&mut follower, cluster_id).await.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::Unavailable, "not leader"),
            "cluster id {cluster_id}"
        );
    }
    let status = follower
        .get_all_stores(pdpb::GetAllStoresRequest {
            header: header(id),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(members_seen_by(&mut follower).await.members.len(), 3);
    follower
        .get_cluster_info(pdpb::GetClusterInfoRequest::default())
        .await
        .unwrap();
    let mut leader = member(&cluster, 0).await;
    assert!(get_region(&mut leader, id).await.unwrap().region.is_some());
}

#[tokio::test]
async fn every_member_names_the_new_leader_after_a_transfer() {
    let cluster = MockCluster::builder().pd_members(3).start().await.unwrap();
    let id = cluster.cluster_id();
    let endpoints = cluster.pd_endpoints();
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(member(&cluster, i).await);
    }
    let before = members_seen_by(&mut clients[1]).await;
    assert_eq!(before.leader.unwrap().name, "pd-1");

    cluster.transfer_pd_leader(2).unwrap();
    for (i, pd) in clients.iter_mut().enumerate() {
        let resp = members_seen_by(pd).await;
        assert_eq!(resp.header.unwrap().cluster_id, id);
        let names: Vec<&str> = resp.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["pd-1", "pd-2", "pd-3"], "seen by member {i}");
        let ids: HashSet<u64> = resp.members.iter().map(|m| m.member_id).collect();
        assert_eq!(ids.len(), 3, "distinct member ids");
        assert!(!ids.contains(&0));
        for (m, endpoint) in resp.members.iter().zip(&endpoints) {
            assert_eq!(m.client_urls, vec![format!("http://{endpoint}")]);
        }
        let leader = resp.leader.unwrap();
        assert_eq!(leader.name, "pd-3", "seen by member {i}");
        assert_eq!(leader.client_urls, vec![format!("http://{}", endpoints[2])]);
        assert_eq!(resp.etcd_leader.unwrap(), leader);
    }
    // The old leader now refuses; the new one serves.
    let status = get_region(&mut clients[0], id).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::Unavailable, "not leader")
    );
    assert!(get_region(&mut clients[2], id)
        .await
        .unwrap()
        .region
        .is_some());
}

#[tokio::test]
async fn tso_increases_across_a_leader_change_and_the_old_leaders_stream_ends() {
    let cluster = MockCluster::builder().pd_members(2).start().await.unwrap();
    let id = cluster.cluster_id();
    let mut old = member(&cluster, 0).await;
    let (old_tx, mut old_replies) = tso_stream(&mut old).await;
    let mut last = 0;
    for _ in 0..3 {
        old_tx.unbounded_send(tso_request(id)).unwrap();
        let ts = composed(&old_replies.message().await.unwrap().unwrap());
        assert!(ts > last);
        last = ts;
    }

    cluster.transfer_pd_leader(1).unwrap();
    // The open stream on the old leader fails its next request, with PD's TSO error (whose
    // text clients match as a leader change), and ends.
    old_tx.unbounded_send(tso_request(id)).unwrap();
    let status = old_replies.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unknown, "{status:?}");
    assert!(status.message().contains("not leader"), "{status:?}");
    assert!(old_replies.message().await.unwrap().is_none());
    // A new stream on the old leader checks the cluster id before leadership, as PD's Tso.
    let (tx, mut replies) = tso_stream(&mut old).await;
    tx.unbounded_send(tso_request(id + 1)).unwrap();
    let status = replies.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);

    let mut new = member(&cluster, 1).await;
    let (new_tx, mut new_replies) = tso_stream(&mut new).await;
    for _ in 0..3 {
        new_tx.unbounded_send(tso_request(id)).unwrap();
        let ts = composed(&new_replies.message().await.unwrap().unwrap());
        assert!(ts > last, "{ts} after {last}");
        last = ts;
    }
    // And back: the first member leads again, still after every timestamp handed out.
    cluster.transfer_pd_leader(0).unwrap();
    let (tx, mut replies) = tso_stream(&mut old).await;
    tx.unbounded_send(tso_request(id)).unwrap();
    assert!(composed(&replies.message().await.unwrap().unwrap()) > last);
}

#[tokio::test]
async fn an_unavailable_pd_refuses_on_every_member() {
    let cluster = MockCluster::builder().pd_members(2).start().await.unwrap();
    cluster.set_pd_available(false);
    for i in 0..2 {
        let status = member(&cluster, i)
            .await
            .get_members(pdpb::GetMembersRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "member {i}");
    }
    cluster.set_pd_available(true);
    for i in 0..2 {
        let resp = members_seen_by(&mut member(&cluster, i).await).await;
        assert_eq!(resp.leader.unwrap().name, "pd-1");
    }
}
