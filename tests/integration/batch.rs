//! The client's BatchCommands transport (`Config::with_batch_commands`) against the mock: the
//! same operations carried by one stream per store, unbatchable requests still unary, and a
//! broken stream or a lost answer survived.

use std::time::Duration;

use futures::future::try_join_all;
use tikv_client::testutils::{MockCluster, Rule};
use tikv_client::{Config, GrpcCode, RawClient, TransactionClient, TransactionOptions};

use super::util::calls_of;

async fn cluster() -> MockCluster {
    // Transactional boundaries: the raw client takes any, the transactional one decodes them.
    MockCluster::builder()
        .split_txn(["g", "p"])
        .start()
        .await
        .unwrap()
}

fn batched() -> Config {
    Config::default().with_batch_commands(true)
}

#[tokio::test]
async fn raw_and_transactional_requests_share_one_stream_per_store() {
    let cluster = cluster().await;
    let raw = RawClient::new_with_config(vec![cluster.pd_endpoint()], batched())
        .await
        .unwrap();
    raw.batch_put([("a", "1"), ("h", "2"), ("q", "3")])
        .await
        .unwrap();
    let gets = (0..60).map(|i| {
        let raw = raw.clone();
        async move { raw.get(["a", "h", "q"][i % 3]).await }
    });
    let values = try_join_all(gets).await.unwrap();
    assert!(values.iter().all(Option::is_some));
    assert_eq!(raw.scan("a".., 10).await.unwrap().len(), 3);
    raw.with_atomic_for_cas()
        .compare_and_swap("cas", None::<Vec<u8>>, "v")
        .await
        .unwrap();

    let txns = TransactionClient::new_with_config(vec![cluster.pd_endpoint()], batched())
        .await
        .unwrap();
    let mut txn = txns
        .begin_with_options(TransactionOptions::new_pessimistic())
        .await
        .unwrap();
    txn.put("b", "x").await.unwrap();
    txn.put("r", "y").await.unwrap();
    txn.commit().await.unwrap();
    let snapshot = txns.snapshot(
        txns.current_timestamp().await.unwrap(),
        TransactionOptions::default(),
    );
    assert_eq!(snapshot.batch_get(["b", "r"]).await.unwrap().len(), 2);

    // Two clients, each with at most one stream per store.
    for store in cluster.store_ids() {
        let streams = calls_of(&cluster, "BatchCommands")
            .iter()
            .filter(|c| c.store == store)
            .count();
        assert!(streams <= 2, "store {store}: {streams} streams");
    }
    for method in [
        "RawBatchPut",
        "RawGet",
        "RawScan",
        "KvPessimisticLock",
        "KvPrewrite",
        "KvCommit",
        "KvBatchGet",
    ] {
        let of = calls_of(&cluster, method);
        assert!(!of.is_empty(), "{method} was sent");
        assert!(
            of.iter().all(|c| c.batched),
            "{method} went through the stream"
        );
    }
    let cas = calls_of(&cluster, "RawCompareAndSwap");
    assert!(
        !cas.is_empty() && cas.iter().all(|c| !c.batched),
        "CAS cannot be batched"
    );
}

#[tokio::test]
async fn a_broken_stream_is_reopened_and_the_request_retried() {
    let cluster = cluster().await;
    let raw = RawClient::new_with_config(vec![cluster.pd_endpoint()], batched())
        .await
        .unwrap();
    raw.put("k", "v").await.unwrap();
    let opened = calls_of(&cluster, "BatchCommands").len();
    cluster.add_rule(Rule::on("RawGet").nth(1).drop_connection());
    assert_eq!(raw.get("k").await.unwrap(), Some(b"v".to_vec()));
    assert!(
        calls_of(&cluster, "BatchCommands").len() > opened,
        "a new stream after the cut"
    );
}

#[tokio::test]
async fn an_answer_that_never_comes_times_out_and_is_retried() {
    let cluster = cluster().await;
    let config = batched().with_timeout(Duration::from_millis(300));
    let raw = RawClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap();
    raw.put("k", "v").await.unwrap();
    cluster.add_rule(Rule::on("RawGet").nth(1).delay(Duration::from_secs(2)));
    let started = std::time::Instant::now();
    assert_eq!(raw.get("k").await.unwrap(), Some(b"v".to_vec()));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not waiting for the late answer"
    );
    // The stream survives: the late answer, for an id nobody waits on, is ignored.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let opened = calls_of(&cluster, "BatchCommands").len();
    assert_eq!(raw.get("k").await.unwrap(), Some(b"v".to_vec()));
    assert_eq!(calls_of(&cluster, "BatchCommands").len(), opened);
    let gets = calls_of(&cluster, "RawGet");
    assert!(
        gets.len() >= 3 && gets.iter().all(|c| c.batched),
        "{gets:?}"
    );
}

#[tokio::test]
async fn a_store_without_batch_commands_gets_unary_calls() {
    let cluster = cluster().await;
    cluster.add_rule(Rule::on("BatchCommands").status(GrpcCode::Unimplemented, "unknown method"));
    let raw = RawClient::new_with_config(vec![cluster.pd_endpoint()], batched())
        .await
        .unwrap();
    raw.put("k", "v").await.unwrap();
    assert_eq!(raw.get("k").await.unwrap(), Some(b"v".to_vec()));
    assert_eq!(raw.get("k").await.unwrap(), Some(b"v".to_vec()));
    let gets = calls_of(&cluster, "RawGet");
    assert_eq!(gets.len(), 2);
    assert!(gets.iter().all(|c| !c.batched), "fell back to unary calls");
}
