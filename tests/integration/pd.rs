//! PD discovery through the transport seam.

use std::time::Duration;

use tikv_client::pd::PdClient;
use tikv_client::testutils::MockCluster;
use tikv_client::{Config, Error, TransportErrorKind};

#[tokio::test]
async fn get_members_reports_the_cluster_and_its_leader() {
    let cluster = MockCluster::builder()
        .cluster_id(7001)
        .start()
        .await
        .unwrap();
    let pd = PdClient::connect(&[cluster.pd_endpoint()], &Config::default())
        .await
        .unwrap();
    assert_eq!(pd.cluster_id(), 7001);
    assert_eq!(pd.leader().name, "pd-1");
    assert_eq!(
        pd.leader().client_urls,
        vec![format!("http://{}", cluster.pd_endpoint())]
    );
    assert_eq!(pd.members(), vec![pd.leader()]);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_skipped_when_another_answers() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let dead = unused_address().await;
    let pd = PdClient::connect(&[dead, cluster.pd_endpoint()], &Config::default())
        .await
        .unwrap();
    assert_eq!(pd.cluster_id(), cluster.cluster_id());
}

#[tokio::test]
async fn no_reachable_endpoint_is_a_connect_error_that_was_never_sent() {
    let dead = unused_address().await;
    let config = Config::default().with_dial_timeout(Duration::from_secs(2));
    let err = PdClient::connect(std::slice::from_ref(&dead), &config)
        .await
        .unwrap_err();
    match &err {
        Error::Transport(t) => {
            assert_eq!(t.kind, TransportErrorKind::Connect);
            assert_eq!(t.address, format!("http://{dead}"));
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert!(!err.may_have_been_sent());
    assert!(err.is_retryable());
}

#[tokio::test]
async fn endpoints_of_different_clusters_are_rejected() {
    let a = MockCluster::builder().cluster_id(1).start().await.unwrap();
    let b = MockCluster::builder().cluster_id(2).start().await.unwrap();
    let err = PdClient::connect(&[a.pd_endpoint(), b.pd_endpoint()], &Config::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ClusterIdMismatch { expected: 1, got: 2, ref address } if *address == b.pd_endpoint()),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_input_is_rejected_before_any_connection() {
    let none: [&str; 0] = [];
    let err = PdClient::connect(&none, &Config::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = PdClient::connect(&["not a url at all"], &Config::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Transport(t) if t.kind == TransportErrorKind::InvalidAddress),
        "{err:?}"
    );
    let bad = Config::default().with_timeout(Duration::ZERO);
    let err = PdClient::connect(&["127.0.0.1:1"], &bad).await.unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
}

#[tokio::test]
async fn refresh_reads_membership_again_and_detects_a_stopped_leader() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let pd = PdClient::connect(&[cluster.pd_endpoint()], &Config::default())
        .await
        .unwrap();
    pd.refresh().await.unwrap();
    assert_eq!(pd.cluster_id(), cluster.cluster_id());
    drop(cluster);
    let err = pd.refresh().await.unwrap_err();
    assert!(matches!(&err, Error::Transport(_)), "{err:?}");
    assert!(err.is_retryable(), "{err:?}");
}

/// An address on 127.0.0.1 with nothing listening.
async fn unused_address() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}

#[tokio::test]
async fn concurrent_timestamps_are_unique_and_each_caller_sees_them_increase() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let pd = PdClient::connect(&[cluster.pd_endpoint()], &Config::default())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let pd = pd.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for _ in 0..20 {
                    mine.push(pd.get_timestamp().await.unwrap().version());
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "per caller increasing"
        );
        all.extend(mine);
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "no timestamp handed out twice");
}

#[tokio::test]
async fn regions_stores_and_safe_points_through_pd() {
    let cluster = MockCluster::builder()
        .split_raw(["m"])
        .start()
        .await
        .unwrap();
    let pd = PdClient::connect(&[cluster.pd_endpoint()], &Config::default())
        .await
        .unwrap();
    let region = pd.get_region(b"x").await.unwrap().unwrap();
    assert_eq!(region.region.start_key, b"m");
    assert!(region.leader.is_some());
    let prev = pd.get_prev_region(b"x").await.unwrap().unwrap();
    assert_eq!(prev.region.end_key, b"m");
    assert_eq!(
        pd.get_region_by_id(region.region.id)
            .await
            .unwrap()
            .unwrap()
            .region,
        region.region
    );
    assert_eq!(pd.scan_regions(b"", b"", 0).await.unwrap().len(), 2);
    let stores = pd.get_all_stores().await.unwrap();
    assert_eq!(stores.len(), 3);
    let store = pd.get_store(stores[0].id).await.unwrap();
    assert_eq!(store.address, cluster.store_addrs()[0]);
    let err = pd.get_store(9999).await.unwrap_err();
    assert!(
        matches!(&err, Error::Pd(m) if m.contains("invalid store ID 9999, not found")),
        "{err:?}"
    );
    assert_eq!(pd.update_gc_safe_point(100).await.unwrap(), 100);
    assert_eq!(pd.update_gc_safe_point(50).await.unwrap(), 100);
    assert_eq!(pd.get_gc_safe_point().await.unwrap(), 100);
    let sp = pd.update_service_safe_point("br", 60, 10).await.unwrap();
    assert_eq!(
        (sp.service_id.as_str(), sp.min_safe_point),
        ("gc_worker", 0)
    );
}
