//! RawClient and TransactionClient against a mock whose regions split by themselves as they
//! are written (TiKV's test configuration: 10 keys split into pieces of 7): scans running
//! while regions split see every key once, in order, and batch writes whose regions split
//! under them mid-way succeed. Also, clients working through a store cut off from PD, whose
//! leaderships PD does not know.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tikv_client::testutils::{MockCluster, Outcome, SplitPolicy};
use tikv_client::{Key, KvPair, RawClient, TransactionClient, TransactionOptions};

use super::util::{calls_of, wait_until};

async fn splitting_cluster(policy: SplitPolicy) -> MockCluster {
    MockCluster::builder()
        .split_policy(policy)
        .start()
        .await
        .unwrap()
}

fn ten_by_seven() -> SplitPolicy {
    SplitPolicy::default().keys(10, 7)
}

/// The `i`-th of `n` keys written in a scattered order, so that splits happen all over.
fn scattered(i: usize, n: usize) -> String {
    format!("k{:03}", (i * 37) % n)
}

/// Fails unless the keys are strictly ascending: in order, none twice.
fn assert_ascending(keys: &[Key], what: &str) {
    for pair in keys.windows(2) {
        assert!(
            pair[0] < pair[1],
            "{what}: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// Whether any call of `method` met an EpochNotMatch: a region split under the client.
fn met_a_split(cluster: &MockCluster, method: &str) -> bool {
    calls_of(cluster, method)
        .iter()
        .any(|c| c.outcome == Outcome::RegionError("EpochNotMatch"))
}

#[tokio::test]
async fn raw_scans_while_regions_split_see_every_written_key_once_in_order() {
    const N: usize = 150;
    let cluster = splitting_cluster(ten_by_seven()).await;
    let pd = vec![cluster.pd_endpoint()];
    let writer_client = RawClient::new(pd.clone()).await.unwrap();
    let reader = RawClient::new(pd).await.unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn({
        let written = written.clone();
        async move {
            for i in 0..N {
                writer_client.put(scattered(i, N), "v").await.unwrap();
                written.store(i + 1, Ordering::SeqCst);
            }
        }
    });
    let mut scans = 0;
    while !writer.is_finished() && scans < 10_000 {
        let done = written.load(Ordering::SeqCst);
        let keys = reader.scan_keys(.., 1000).await.unwrap();
        assert_ascending(&keys, "a scan during the writes");
        for i in 0..done {
            assert!(
                keys.binary_search(&Key::from(scattered(i, N))).is_ok(),
                "{} was written before the scan began",
                scattered(i, N)
            );
        }
        scans += 1;
    }
    writer.await.unwrap();
    assert!(scans > 0, "no scan ran while the writer did");
    let keys = reader.scan_keys(.., 1000).await.unwrap();
    let expected: Vec<Key> = (0..N).map(|i| Key::from(format!("k{i:03}"))).collect();
    assert_eq!(keys, expected);
    assert!(cluster.regions().len() >= N / 10, "{:?}", cluster.regions());
    assert!(
        met_a_split(&cluster, "RawScan") || met_a_split(&cluster, "RawPut"),
        "the clients' cached regions went stale"
    );
}

#[tokio::test]
async fn a_raw_batch_put_whose_region_splits_mid_way_succeeds() {
    const N: usize = 1000;
    let cluster = splitting_cluster(ten_by_seven()).await;
    let raw = RawClient::new(vec![cluster.pd_endpoint()]).await.unwrap();
    // About 100 KiB: several RPCs to the one region the client knows of.
    let pairs: Vec<KvPair> = (0..N)
        .map(|i| KvPair::new(format!("b{i:04}"), vec![b'x'; 100]))
        .collect();
    raw.batch_put(pairs.clone()).await.unwrap();
    assert!(
        met_a_split(&cluster, "RawBatchPut"),
        "the first RPC split the region under the others"
    );
    assert!(cluster.regions().len() >= N / 10);
    assert_eq!(raw.scan(.., N as u32 + 1).await.unwrap(), pairs);
}

#[tokio::test]
async fn a_transaction_whose_regions_split_while_it_prewrites_and_commits_succeeds() {
    const N: usize = 300;
    // Locks count bytes: with a size limit, prewrites split regions too.
    let cluster = splitting_cluster(ten_by_seven().size(4096, 3072)).await;
    let client = TransactionClient::new(vec![cluster.pd_endpoint()])
        .await
        .unwrap();
    let mut txn = client.begin_optimistic().await.unwrap();
    for i in 0..N {
        txn.put(scattered(i, N), vec![b'x'; 100]).await.unwrap();
    }
    txn.commit().await.unwrap();
    assert!(met_a_split(&cluster, "KvPrewrite") || met_a_split(&cluster, "KvCommit"));
    let keys = latest_keys(&client).await;
    let expected: Vec<Key> = (0..N).map(|i| Key::from(format!("k{i:03}"))).collect();
    assert_eq!(keys, expected);
    // The secondaries' commits (in the background) add the write records the key limit
    // counts: then every piece of 26 or so keys the size limit made splits again.
    wait_until(
        "regions of at most 10 committed keys",
        || cluster.regions().len(),
        |n| *n >= N / 10,
    )
    .await;
}

/// Every key a snapshot at the latest timestamp sees, up to 1000.
async fn latest_keys(client: &TransactionClient) -> Vec<Key> {
    let ts = client.current_timestamp().await.unwrap();
    client
        .snapshot(ts, TransactionOptions::default())
        .scan_keys(.., 1000)
        .await
        .unwrap()
}

#[tokio::test]
async fn transactional_scans_while_regions_split_see_whole_transactions_in_order() {
    const TXNS: usize = 15;
    const KEYS: usize = 20;
    let cluster = splitting_cluster(ten_by_seven()).await;
    let pd = vec![cluster.pd_endpoint()];
    let writer_client = TransactionClient::new(pd.clone()).await.unwrap();
    let reader = TransactionClient::new(pd).await.unwrap();
    // Transaction i writes "{j}-{i}" for every j: its keys spread over every region.
    let writer = tokio::spawn(async move {
        for i in 0..TXNS {
            let mut txn = writer_client.begin_optimistic().await.unwrap();
            for j in 0..KEYS {
                txn.put(format!("{j:02}-{i:02}"), "v").await.unwrap();
            }
            txn.commit().await.unwrap();
        }
    });
    let mut scans = 0;
    while !writer.is_finished() && scans < 10_000 {
        let keys = latest_keys(&reader).await;
        assert_ascending(&keys, "a snapshot scan during the commits");
        assert_eq!(keys.len() % KEYS, 0, "whole transactions only: {keys:?}");
        scans += 1;
    }
    writer.await.unwrap();
    assert!(scans > 0, "no scan ran while the writer did");
    let keys = latest_keys(&reader).await;
    assert_ascending(&keys, "the final scan");
    assert_eq!(keys.len(), TXNS * KEYS);
    assert!(cluster.regions().len() >= TXNS * KEYS / 10);
}

/// A store cut off from PD takes a region's leadership that PD does not hear of: the
/// clients, sent to the old leader by PD, follow `NotLeader` to the new one. Raw writes land
/// and read back at once; an async commit there waits out `MaxTimestampNotSynced` (the new
/// leader cannot sync its max_ts) and commits once the store reaches PD again.
#[tokio::test]
async fn clients_work_through_a_store_cut_off_from_pd() {
    let cluster = MockCluster::builder().stores(2).start().await.unwrap();
    let region = cluster.regions()[0].id;
    let old = cluster.leader_of(region).unwrap();
    let new = cluster.store_ids().into_iter().find(|s| *s != old).unwrap();
    cluster.partition_store_from_pd(new, true);
    cluster.transfer_leader(region, new).unwrap();

    let raw = RawClient::new(vec![cluster.pd_endpoint()]).await.unwrap();
    let pairs: Vec<KvPair> = ["a", "d", "g"]
        .into_iter()
        .map(|k| KvPair::new(k, format!("v-{k}")))
        .collect();
    raw.batch_put(pairs.clone()).await.unwrap();
    assert_eq!(raw.batch_get(["a", "d", "g"]).await.unwrap(), pairs);
    let redirected = calls_of(&cluster, "RawBatchPut")
        .iter()
        .any(|c| c.store == old && c.outcome == Outcome::RegionError("NotLeader"));
    assert!(redirected, "PD named the old leader, which redirected");

    let client = TransactionClient::new(vec![cluster.pd_endpoint()])
        .await
        .unwrap();
    let mut txn = client
        .begin_with_options(TransactionOptions::new_optimistic().use_async_commit(true))
        .await
        .unwrap();
    txn.put("x", "1").await.unwrap();
    let commit = tokio::spawn(async move { txn.commit().await });
    wait_until(
        "a prewrite refused for an unsynced max_ts",
        || {
            calls_of(&cluster, "KvPrewrite")
                .iter()
                .filter(|c| c.outcome == Outcome::RegionError("MaxTimestampNotSynced"))
                .count()
        },
        |n| *n > 0,
    )
    .await;
    cluster.partition_store_from_pd(new, false);
    commit.await.unwrap().unwrap();
    let mut check = client.begin_optimistic().await.unwrap();
    assert_eq!(check.get("x").await.unwrap(), Some(b"1".to_vec()));
    check.rollback().await.unwrap();
}
