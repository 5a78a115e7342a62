//! A store cut off from PD, through the raw generated stubs: PD keeps naming the leaders it
//! knew, the store cannot split its regions (TiKV asks PD for the new ids first) and PD
//! cannot merge them, and a leadership the store takes cannot sync max_ts until the store
//! reaches PD again; TiKV itself keeps serving.

use tikv_client::proto::{kvrpcpb, metapb, pdpb};
use tikv_client::testutils::MockCluster;

use super::mock_pd::header;
use super::mock_raw::put;
use super::mock_split_merge::pd_regions;
use super::mock_txn::{issue_timestamp, put as mutation};
use super::util::{pd_client, peer_on, tikv};

/// What PD answers for the region holding `key` (an internal key): the region and its
/// leader's store.
async fn pd_region(cluster: &MockCluster, key: &[u8]) -> (metapb::Region, u64) {
    let resp = pd_client(cluster)
        .await
        .get_region(pdpb::GetRegionRequest {
            header: header(cluster),
            region_key: key.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (resp.region.unwrap(), resp.leader.unwrap().store_id)
}

async fn pd_region_ids(cluster: &MockCluster) -> Vec<u64> {
    pd_regions(cluster).await.iter().map(|r| r.id).collect()
}

#[tokio::test]
async fn a_store_cut_off_from_pd_serves_but_neither_splits_nor_merges() {
    let cluster = MockCluster::builder()
        .split_raw(["m"])
        .start()
        .await
        .unwrap();
    put(&cluster, b"a", b"1").await;
    let left = cluster.region_of_raw_key(b"a").unwrap();
    let right = cluster.region_of_raw_key(b"z").unwrap();
    let leader = cluster.leader_of(left.id).unwrap();
    assert!(cluster.partition_store_from_pd(leader, true));
    assert!(!cluster.partition_store_from_pd(999, true), "no such store");

    // Reads and writes go on.
    put(&cluster, b"b", b"2").await;
    assert_eq!(super::mock_raw::get(&cluster, b"a").await.value, b"1");
    // No split without region ids from PD, asked or organic.
    assert!(cluster.split_raw("c").is_none());
    let resp = tikv(&cluster, leader)
        .await
        .split_region(kvrpcpb::SplitRegionRequest {
            context: Some(kvrpcpb::Context {
                region_id: left.id,
                region_epoch: left.region_epoch,
                peer: Some(peer_on(&left, leader)),
                ..Default::default()
            }),
            split_keys: vec![b"c".to_vec()],
            is_raw_kv: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let refused = resp.region_error.expect("PD is out of reach");
    assert!(refused.message.contains("cannot reach PD"), "{refused:?}");
    assert_eq!(pd_region_ids(&cluster).await, vec![left.id, right.id]);
    // No merge scheduled by a PD that cannot reach the leader.
    assert!(cluster.merge(left.id, right.id).is_err());

    // Healed: both work again.
    assert!(cluster.partition_store_from_pd(leader, false));
    let split_off = cluster.split_raw("c").expect("splits again");
    assert_eq!(pd_region(&cluster, b"a").await.0.id, split_off.id);
    let rest = cluster.region_of_raw_key(b"c").unwrap();
    cluster.merge(split_off.id, rest.id).unwrap();
}

#[tokio::test]
async fn a_leadership_taken_by_a_cut_off_store_is_unknown_to_pd_and_cannot_sync_max_ts() {
    let cluster = MockCluster::builder().stores(2).start().await.unwrap();
    let region = cluster.regions()[0].clone();
    let old = cluster.leader_of(region.id).unwrap();
    let new = cluster.store_ids().into_iter().find(|s| *s != old).unwrap();
    assert!(cluster.partition_store_from_pd(new, true));
    cluster.transfer_leader(region.id, new).unwrap();
    assert_eq!(
        pd_region(&cluster, b"k").await.1,
        old,
        "PD names the old leader"
    );

    let mut client = tikv(&cluster, new).await;
    let start = issue_timestamp(&cluster).await;
    let prewrite = |key: &str| kvrpcpb::PrewriteRequest {
        context: Some(kvrpcpb::Context {
            region_id: region.id,
            region_epoch: region.region_epoch,
            peer: Some(peer_on(&region, new)),
            ..Default::default()
        }),
        mutations: vec![mutation(key, "v")],
        primary_lock: key.as_bytes().to_vec(),
        start_version: start,
        lock_ttl: 3000,
        use_async_commit: true,
        min_commit_ts: start + 1,
        ..Default::default()
    };
    let refused = client
        .kv_prewrite(prewrite("a"))
        .await
        .unwrap()
        .into_inner()
        .region_error
        .expect("no timestamp to sync from");
    assert!(refused.max_timestamp_not_synced.is_some(), "{refused:?}");

    // Healed: PD learns the leader, and the leader syncs its max_ts (no sync delay here).
    let issued = issue_timestamp(&cluster).await;
    assert!(cluster.partition_store_from_pd(new, false));
    assert_eq!(pd_region(&cluster, b"k").await.1, new);
    let r = client
        .kv_prewrite(prewrite("a"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
    assert!(r.min_commit_ts > issued, "{} <= {issued}", r.min_commit_ts);
}
