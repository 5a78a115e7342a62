//! Resource bounds and inputs that used to panic: abandoned region lookups, reconnection and
//! refresh storms, extreme lock waits and heartbeats, a transaction dropped without a runtime.

use std::sync::Arc;
use std::time::Duration;

use tikv_client::pd::PdClient;
use tikv_client::testutils::{MockCluster, Rule};
use tikv_client::transaction::LockWait;
use tikv_client::{Config, Error, RawClient, TransactionClient, TransactionOptions};

use super::txn::remaining_locks;
use super::util::{calls_of, wait_until};

#[tokio::test]
async fn a_cancelled_region_lookup_does_not_keep_the_pd_client_alive() {
    let cluster = MockCluster::builder()
        .split_txn(["m"])
        .start()
        .await
        .unwrap();
    let client = TransactionClient::new(vec![cluster.pd_endpoint()])
        .await
        .unwrap();
    let txn = client.begin_optimistic().await.unwrap();
    assert_eq!(
        txn.get("a").await.unwrap(),
        None,
        "caches the safe point and a's region"
    );
    assert_eq!(
        cluster.open_tso_streams(),
        1,
        "the client's timestamp stream"
    );
    // PD stops answering: the lookup of z's region keeps retrying until the read is dropped.
    cluster.set_pd_available(false);
    let read = tokio::time::timeout(Duration::from_millis(300), txn.get("z")).await;
    assert!(read.is_err(), "the read was still looking up its region");
    assert!(calls_of(&cluster, "GetRegion")
        .iter()
        .any(|c| c.outcome != tikv_client::testutils::Outcome::Ok));
    cluster.set_pd_available(true);
    drop(txn);
    drop(client);
    // Nothing holds the PD client any more: its timestamp task ends and its stream closes.
    wait_until(
        "the PD client outlived every client: open Tso streams",
        || cluster.open_tso_streams(),
        |open| *open == 0,
    )
    .await;
}

#[tokio::test]
async fn slow_answers_do_not_make_the_client_reconnect() {
    let cluster = MockCluster::builder().start().await.unwrap();
    // Unary calls: each request goes over the store's connection itself.
    let config = Config::default()
        .with_timeout(Duration::from_millis(100))
        .with_batch_commands(false);
    let client = RawClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap();
    client.put("k", "v").await.unwrap();
    let store = cluster
        .leader_of(cluster.region_of_raw_key(b"k").unwrap().id)
        .unwrap();
    let before = cluster.connections_accepted(store);
    // The first answers come after the client's RPC timeout; the retries are answered.
    cluster.add_rule(
        Rule::on("RawGet")
            .times(32)
            .delay(Duration::from_millis(300)),
    );
    let reads: Vec<_> = (0..32)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("k").await })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().unwrap(), Some(b"v".to_vec()));
    }
    assert_eq!(
        cluster.connections_accepted(store) - before,
        0,
        "a timeout is not a broken connection"
    );

    // A connection cut under every request in flight is replaced once.
    cluster.add_rule(Rule::on("RawGet").nth(20).drop_connection());
    let reads: Vec<_> = (0..64)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("k").await })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().unwrap(), Some(b"v".to_vec()));
    }
    assert_eq!(cluster.connections_accepted(store) - before, 1);
}

#[tokio::test]
async fn a_pd_leader_change_makes_one_membership_refresh() {
    let cluster = MockCluster::builder().pd_members(3).start().await.unwrap();
    let pd = PdClient::connect(&cluster.pd_endpoints(), &Config::default())
        .await
        .unwrap();
    pd.get_all_stores().await.unwrap();
    cluster.clear_calls();
    cluster.transfer_pd_leader(2).unwrap();
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let pd = pd.clone();
            tokio::spawn(async move { pd.get_all_stores().await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().len(), 3);
    }
    // One refresh asks each of the three members once.
    assert_eq!(calls_of(&cluster, "GetMembers").len(), 3);
    assert_eq!(pd.leader().name, "pd-3");
}

#[tokio::test]
async fn extreme_lock_waits_and_heartbeat_intervals_are_handled() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let client = TransactionClient::new(vec![cluster.pd_endpoint()])
        .await
        .unwrap();
    let mut holder = client.begin_pessimistic().await.unwrap();
    holder.put("k", "1").await.unwrap();
    // A wait too long to represent waits until the operation deadline.
    let options = TransactionOptions::new_pessimistic()
        .lock_wait(LockWait::Timeout(Duration::MAX))
        .operation_timeout(Duration::from_millis(500));
    let mut waiter = client.begin_with_options(options).await.unwrap();
    let err = waiter.put("k", "2").await.unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err:?}");
    holder.rollback().await.unwrap();

    let spinning = TransactionOptions::new_pessimistic().heartbeat(Some(Duration::ZERO));
    let err = client.begin_with_options(spinning).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("heartbeat")),
        "{err:?}"
    );
}

#[test]
fn a_transaction_dropped_outside_a_runtime_leaves_its_locks_to_their_ttl() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (cluster, txn) = runtime.block_on(async {
        let cluster = MockCluster::builder().start().await.unwrap();
        let client = TransactionClient::new(vec![cluster.pd_endpoint()])
            .await
            .unwrap();
        let mut txn = client.begin_pessimistic().await.unwrap();
        txn.put("k", "v").await.unwrap();
        (Arc::new(cluster), txn)
    });
    // No runtime here: the lock cannot be released in the background, and nothing panics.
    drop(txn);
    let left = runtime.block_on(remaining_locks(&cluster));
    assert_eq!(left, 1, "the lock waits for its TTL");
}
