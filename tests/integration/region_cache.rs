//! The region cache against the mock PD: what it asks PD, and when.

use std::time::Duration;

use tikv_client::pd::PdClient;
use tikv_client::region_cache::{InvalidReason, KeyEncoding, RegionCache};
use tikv_client::rt::{ManualClock, Runtime};
use tikv_client::testutils::MockCluster;
use tikv_client::Config;

async fn setup(splits: &[&str]) -> (MockCluster, RegionCache, ManualClock) {
    let cluster = MockCluster::builder()
        .split_raw(splits.iter().copied())
        .start()
        .await
        .unwrap();
    let clock = ManualClock::new();
    let config = Config::default().with_runtime(Runtime::manual(clock.clone()));
    let pd = PdClient::connect(&[cluster.pd_endpoint()], &config)
        .await
        .unwrap();
    (cluster, RegionCache::new(pd, KeyEncoding::Plain), clock)
}

fn pd_calls(cluster: &MockCluster, method: &str) -> usize {
    cluster
        .calls()
        .iter()
        .filter(|c| c.store == 0 && c.method == method)
        .count()
}

#[tokio::test]
async fn concurrent_misses_for_one_key_share_one_pd_query() {
    let (cluster, cache, _) = setup(&["m"]).await;
    let lookups: Vec<_> = (0..20).map(|_| cache.locate(b"k")).collect();
    let regions = futures::future::try_join_all(lookups).await.unwrap();
    assert!(regions.iter().all(|r| r.end_key == b"m"));
    assert_eq!(pd_calls(&cluster, "GetRegion"), 1);
    cache.locate(b"a").await.unwrap();
    assert_eq!(
        pd_calls(&cluster, "GetRegion"),
        1,
        "a cached region answers other keys too"
    );
}

#[tokio::test]
async fn lookups_by_end_key_id_and_version() {
    let (cluster, cache, _) = setup(&["m", "t"]).await;
    let middle = cache.locate_end_key(b"t").await.unwrap();
    assert_eq!(
        (middle.start_key.as_slice(), middle.end_key.as_slice()),
        (&b"m"[..], &b"t"[..])
    );
    let last = cache.locate_end_key(b"").await.unwrap();
    assert!(last.end_key.is_empty());
    assert_eq!(cache.get_by_id(middle.id), Some(middle.clone()));
    assert_eq!(cache.get_by_ver_id(middle.ver_id()), Some(middle.clone()));
    cluster.split_raw("p");
    let fresh = cache.load_by_id(middle.id).await.unwrap();
    assert_ne!(
        fresh.ver_id(),
        middle.ver_id(),
        "the split bumped the version"
    );
    assert_eq!(
        cache.get_by_ver_id(middle.ver_id()),
        None,
        "the old version is gone"
    );
    assert_eq!(fresh.start_key, b"p");
}

#[tokio::test]
async fn invalidation_and_expiry_send_the_next_lookup_to_pd() {
    let (cluster, cache, clock) = setup(&["m"]).await;
    let region = cache.locate(b"a").await.unwrap();
    cache.invalidate(region.id, InvalidReason::RegionNotFound);
    cache.locate(b"a").await.unwrap();
    assert_eq!(pd_calls(&cluster, "GetRegion"), 2);
    clock.advance(Duration::from_secs(599));
    cache.locate(b"a").await.unwrap();
    assert_eq!(
        pd_calls(&cluster, "GetRegion"),
        2,
        "still within the 600 s TTL"
    );
    clock.advance(Duration::from_secs(62));
    cache.locate(b"a").await.unwrap();
    assert_eq!(
        pd_calls(&cluster, "GetRegion"),
        3,
        "expired after TTL plus jitter"
    );
}

#[tokio::test]
async fn a_range_preload_is_one_scan_regions_call() {
    let (cluster, cache, _) = setup(&["b", "d", "f", "h"]).await;
    cache.preload(b"", b"").await.unwrap();
    for key in [&b"a"[..], b"c", b"e", b"g", b"z"] {
        cache.locate(key).await.unwrap();
    }
    assert_eq!(pd_calls(&cluster, "ScanRegions"), 1);
    assert_eq!(pd_calls(&cluster, "GetRegion"), 0);
    cache.preload(b"", b"").await.unwrap();
    assert_eq!(
        pd_calls(&cluster, "ScanRegions"),
        1,
        "nothing to load the second time"
    );
}

#[tokio::test]
async fn store_addresses_are_cached_until_invalidated() {
    let (cluster, cache, _) = setup(&[]).await;
    let id = cluster.store_ids()[1];
    assert_eq!(
        cache.store_address(id).await.unwrap(),
        cluster.store_addrs()[1]
    );
    cache.store_address(id).await.unwrap();
    assert_eq!(pd_calls(&cluster, "GetStore"), 1);
    cache.invalidate_store(id);
    cache.store_address(id).await.unwrap();
    assert_eq!(pd_calls(&cluster, "GetStore"), 2);
}
