//! Organic splits and merges in the mock, through the raw generated stubs: regions that grow
//! past the split policy's maximum split by themselves into pieces PD reports, and PD merges
//! regions made small by deletes (and GC) into a neighbour, bumping epochs as TiKV does.

use tikv_client::kv::memcomparable;
use tikv_client::proto::{kvrpcpb, metapb, pdpb};
use tikv_client::testutils::{region_error_kind, MergePolicy, MockCluster, SplitPolicy};

use super::mock_pd::header;
use super::mock_raw::put;
use super::mock_txn::ts;
use super::util::{ctx_for, pd_client, tikv, txn_ctx_for};

/// TiKV's test configuration: split at 10 keys into pieces of 7.
fn ten_by_seven() -> SplitPolicy {
    SplitPolicy::default().keys(10, 7)
}

/// A cluster splitting by `policy`, and merging regions of at most two keys if `merge`.
async fn cluster(policy: SplitPolicy, merge: bool) -> MockCluster {
    let mut builder = MockCluster::builder().split_policy(policy);
    if merge {
        builder = builder.merge_policy(MergePolicy::new(2, 1 << 20));
    }
    builder.start().await.unwrap()
}

/// `k00`, `k01`, ... `k{n-1}`.
fn numbered(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("k{i:02}").into_bytes()).collect()
}

/// The regions PD reports, in key order.
pub(crate) async fn pd_regions(cluster: &MockCluster) -> Vec<metapb::Region> {
    pd_client(cluster)
        .await
        .scan_regions(pdpb::ScanRegionsRequest {
            header: header(cluster),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .regions
        .into_iter()
        .map(|r| r.region.unwrap())
        .collect()
}

/// The inner region boundaries PD reports.
async fn boundaries(cluster: &MockCluster) -> Vec<Vec<u8>> {
    pd_regions(cluster)
        .await
        .into_iter()
        .skip(1)
        .map(|r| r.start_key)
        .collect()
}

/// How many of `keys` (internal form) each region PD reports holds.
async fn keys_per_region(cluster: &MockCluster, keys: &[Vec<u8>]) -> Vec<usize> {
    pd_regions(cluster)
        .await
        .iter()
        .map(|r| {
            keys.iter()
                .filter(|k| {
                    **k >= r.start_key && (r.end_key.is_empty() || k.as_slice() < &r.end_key[..])
                })
                .count()
        })
        .collect()
}

fn encoded(keys: &[&str]) -> Vec<Vec<u8>> {
    keys.iter()
        .map(|k| memcomparable::encode(k.as_bytes()))
        .collect()
}

/// A RawGet of `key` with an old context: the region error it gets.
async fn stale_get(cluster: &MockCluster, ctx: kvrpcpb::Context, leader: u64) -> String {
    let e = tikv(cluster, leader)
        .await
        .raw_get(kvrpcpb::RawGetRequest {
            context: Some(ctx),
            key: b"k00".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .region_error
        .expect("a region error");
    region_error_kind(&e).to_owned()
}

/// Prewrites and commits `mutations` as one transaction, one request of each per region.
async fn txn_write(cluster: &MockCluster, mutations: Vec<kvrpcpb::Mutation>, start: u64) {
    let primary = mutations[0].key.clone();
    let keys: Vec<Vec<u8>> = mutations.iter().map(|m| m.key.clone()).collect();
    let mut by_region: Vec<(kvrpcpb::Context, u64, Vec<kvrpcpb::Mutation>)> = Vec::new();
    for m in mutations {
        let (ctx, leader) = txn_ctx_for(cluster, &m.key);
        match by_region
            .iter_mut()
            .find(|(c, ..)| c.region_id == ctx.region_id)
        {
            Some((.., ms)) => ms.push(m),
            None => by_region.push((ctx, leader, vec![m])),
        }
    }
    for (ctx, leader, mutations) in by_region {
        let resp = tikv(cluster, leader)
            .await
            .kv_prewrite(kvrpcpb::PrewriteRequest {
                context: Some(ctx),
                mutations,
                primary_lock: primary.clone(),
                start_version: start,
                lock_ttl: 3000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            resp.region_error.is_none() && resp.errors.is_empty(),
            "{resp:?}"
        );
    }
    // Prewrites may have split regions: group the commits by the current layout.
    let mut remaining = keys;
    while let Some(first) = remaining.first().cloned() {
        let (ctx, leader) = txn_ctx_for(cluster, &first);
        let region = cluster.region_of_txn_key(&first).unwrap();
        let (here, rest): (Vec<Vec<u8>>, Vec<Vec<u8>>) = remaining.into_iter().partition(|k| {
            let k = memcomparable::encode(k);
            k >= region.start_key && (region.end_key.is_empty() || k < region.end_key)
        });
        remaining = rest;
        let resp = tikv(cluster, leader)
            .await
            .kv_commit(kvrpcpb::CommitRequest {
                context: Some(ctx),
                start_version: start,
                keys: here,
                commit_version: start + 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            resp.region_error.is_none() && resp.error.is_none(),
            "{resp:?}"
        );
    }
}

fn mutation(op: kvrpcpb::Op, key: &[u8]) -> kvrpcpb::Mutation {
    kvrpcpb::Mutation {
        op: op as i32,
        key: key.to_vec(),
        value: if op == kvrpcpb::Op::Put {
            b"value".to_vec()
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn raw_writes_split_regions_at_ten_keys_into_pieces_of_seven() {
    let cluster = cluster(ten_by_seven(), false).await;
    let (first_ctx, first_leader) = ctx_for(&cluster, b"k00");
    let keys = numbered(25);
    for (i, key) in keys.iter().enumerate() {
        put(&cluster, key, b"v").await;
        let counts = keys_per_region(&cluster, &keys[..=i]).await;
        assert!(
            counts.iter().all(|n| *n < 10),
            "after {} puts: {counts:?}",
            i + 1
        );
    }
    // The 10th key split k00..k09 at k07; the right piece reached 10 again at k16 and k23.
    assert_eq!(
        boundaries(&cluster).await,
        [b"k07".to_vec(), b"k14".to_vec(), b"k21".to_vec()]
    );
    assert_eq!(keys_per_region(&cluster, &keys).await, [7, 7, 7, 4]);
    // The one region's first epoch is three splits old.
    assert_eq!(
        stale_get(&cluster, first_ctx, first_leader).await,
        "EpochNotMatch"
    );
    for key in &keys {
        assert_eq!(
            super::mock_raw::get(&cluster, key).await.value,
            b"v",
            "{key:?}"
        );
    }
}

#[tokio::test]
async fn one_raw_batch_put_splits_as_many_times_as_it_needs() {
    let cluster = cluster(ten_by_seven(), false).await;
    let keys = numbered(25);
    let (ctx, leader) = ctx_for(&cluster, b"k00");
    let resp = tikv(&cluster, leader)
        .await
        .raw_batch_put(kvrpcpb::RawBatchPutRequest {
            context: Some(ctx),
            pairs: keys
                .iter()
                .map(|k| kvrpcpb::KvPair {
                    key: k.clone(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.region_error.is_none() && resp.error.is_empty());
    assert_eq!(keys_per_region(&cluster, &keys).await, [7, 7, 7, 4]);
}

#[tokio::test]
async fn sizes_split_regions_too() {
    // 10-byte pairs (3-byte key, 7-byte value): 100 bytes reach the maximum, pieces of 60.
    let cluster = cluster(SplitPolicy::default().size(100, 60), false).await;
    let keys = numbered(25);
    for key in &keys {
        put(&cluster, key, b"1234567").await;
    }
    let counts = keys_per_region(&cluster, &keys).await;
    assert!(counts.iter().all(|n| *n * 10 < 100), "{counts:?}");
    assert_eq!(
        counts,
        [6, 6, 6, 7],
        "TiKV's size checker cuts after 60 bytes"
    );
}

#[tokio::test]
async fn committed_transactional_keys_split_regions_at_their_encoded_keys() {
    let cluster = cluster(ten_by_seven(), false).await;
    let keys = numbered(25);
    let start = ts(1000);
    txn_write(
        &cluster,
        keys.iter().map(|k| mutation(kvrpcpb::Op::Put, k)).collect(),
        start,
    )
    .await;
    // Locks count no keys: the commit's 25 write records split the region.
    assert_eq!(
        boundaries(&cluster).await,
        encoded(&["k07", "k14", "k21"]),
        "PD reports the boundaries as TiKV stores them"
    );
    let internal: Vec<Vec<u8>> = keys.iter().map(|k| memcomparable::encode(k)).collect();
    assert_eq!(keys_per_region(&cluster, &internal).await, [7, 7, 7, 4]);
    for key in &keys {
        let (ctx, leader) = txn_ctx_for(&cluster, key);
        let got = tikv(&cluster, leader)
            .await
            .kv_get(kvrpcpb::GetRequest {
                context: Some(ctx),
                key: key.clone(),
                version: start + 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.value, b"value", "{got:?}");
    }
}

#[tokio::test]
async fn pd_merges_an_emptied_region_into_its_next_neighbour() {
    let cluster = cluster(ten_by_seven(), true).await;
    let keys = numbered(25);
    for key in &keys {
        put(&cluster, key, b"v").await;
    }
    assert_eq!(keys_per_region(&cluster, &keys).await, [7, 7, 7, 4]);
    let before = pd_regions(&cluster).await;
    let (source_ctx, source_leader) = ctx_for(&cluster, b"k07");
    let (target_ctx, target_leader) = ctx_for(&cluster, b"k14");
    let emptied = tikv(&cluster, source_leader)
        .await
        .raw_batch_delete(kvrpcpb::RawBatchDeleteRequest {
            context: Some(source_ctx.clone()),
            keys: keys[7..14].to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(emptied.region_error.is_none(), "{emptied:?}");
    // Emptied, [k07, k14) was merged into [k14, k21) (the previous region is not smaller),
    // which kept its id and took the range.
    let after = pd_regions(&cluster).await;
    assert_eq!(
        boundaries(&cluster).await,
        [b"k07".to_vec(), b"k21".to_vec()]
    );
    assert_eq!(after[1].id, before[2].id);
    let version = |r: &metapb::Region| r.region_epoch.unwrap().version;
    assert_eq!(
        version(&after[1]),
        (version(&before[1]) + 1).max(version(&before[2])) + 1,
        "max(source + 1 after PrepareMerge, target) + 1"
    );
    assert_eq!(
        after[1].region_epoch.unwrap().conf_ver,
        before[2].region_epoch.unwrap().conf_ver
    );
    assert_eq!(
        stale_get(&cluster, source_ctx, source_leader).await,
        "RegionNotFound",
        "the source region is gone"
    );
    assert_eq!(
        stale_get(&cluster, target_ctx, target_leader).await,
        "EpochNotMatch"
    );
}

#[tokio::test]
async fn gc_of_deleted_transactional_keys_lets_pd_merge_their_regions() {
    let cluster = cluster(ten_by_seven(), true).await;
    let keys = numbered(25);
    txn_write(
        &cluster,
        keys.iter().map(|k| mutation(kvrpcpb::Op::Put, k)).collect(),
        ts(1000),
    )
    .await;
    assert_eq!(boundaries(&cluster).await, encoded(&["k07", "k14", "k21"]));
    txn_write(
        &cluster,
        keys[7..14]
            .iter()
            .map(|k| mutation(kvrpcpb::Op::Del, k))
            .collect(),
        ts(2000),
    )
    .await;
    // Deletes add versions until GC: nothing to merge yet (the region may even split).
    assert!(boundaries(&cluster).await.len() >= 3);
    pd_client(&cluster)
        .await
        .update_gc_safe_point(pdpb::UpdateGcSafePointRequest {
            header: header(&cluster),
            safe_point: ts(3000),
        })
        .await
        .unwrap();
    assert_eq!(
        boundaries(&cluster).await,
        encoded(&["k07", "k21"]),
        "GC emptied [k07, k14), which PD merged into [k14, k21)"
    );
}

#[tokio::test]
async fn a_split_policy_whose_threshold_exceeds_its_maximum_is_refused() {
    let error = MockCluster::builder()
        .split_policy(SplitPolicy::default().keys(5, 7))
        .start()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("max keys 5"), "{error}");
    let error = MockCluster::builder()
        .split_policy(SplitPolicy::default().size(10, 0))
        .start()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("at least 1"), "{error}");
}
