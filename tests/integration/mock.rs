//! The mock cluster checked through the raw generated stubs, independently of the client.

use tikv_client::proto::{kvrpcpb, pdpb, tikvpb};
use tikv_client::testutils::MockCluster;

use super::util::channel;

#[tokio::test]
async fn get_members_needs_no_cluster_id_and_reports_a_reachable_leader() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pdpb::pd_client::PdClient::new(channel(&cluster.pd_endpoint()).await);
    let resp = pd
        .get_members(pdpb::GetMembersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let header = resp.header.unwrap();
    assert_eq!(header.cluster_id, cluster.cluster_id());
    assert!(header.error.is_none());
    let leader = resp.leader.unwrap();
    assert_eq!(
        leader.client_urls,
        vec![format!("http://{}", cluster.pd_endpoint())]
    );
    assert_eq!(resp.members, vec![leader.clone()]);
    assert_eq!(resp.etcd_leader, Some(leader.clone()));

    // The advertised URL really serves PD.
    let mut again = pdpb::pd_client::PdClient::new(
        tonic::transport::Endpoint::from_shared(leader.client_urls[0].clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    assert!(again
        .get_members(pdpb::GetMembersRequest::default())
        .await
        .is_ok());
}

#[tokio::test]
async fn unknown_services_and_methods_answer_unimplemented() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let ch = channel(&cluster.pd_endpoint()).await;
    let mut tikv = tikvpb::tikv_client::TikvClient::new(ch.clone());
    let status = tikv
        .raw_get(kvrpcpb::RawGetRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert!(
        status.message().contains("tikvpb.Tikv"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_stopped_cluster_refuses_new_connections() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let addr = cluster.pd_endpoint();
    drop(cluster);
    // The listener closes asynchronously; give it a moment, bounded.
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{addr} still accepts connections after the cluster was dropped");
}
