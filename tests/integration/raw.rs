//! RawClient end to end against the mock cluster over real gRPC: every operation on a cluster
//! of many regions, then with faults injected, asserting on the attempts the call log shows.

use std::time::Duration;

use futures::TryStreamExt;
use tikv_client::backoff::BackoffKind;
use tikv_client::proto::{errorpb, metapb};
use tikv_client::raw::ColumnFamily;
use tikv_client::rt::{ManualClock, Runtime};
use tikv_client::testutils::{ApiVersion, MockCluster, Outcome, Rule};
use tikv_client::{Config, Error, Key, KvPair, RawClient};

use super::util::calls_of;

const SPLITS: [&str; 9] = ["b", "d", "f", "h", "j", "l", "n", "p", "r"];

async fn cluster() -> MockCluster {
    MockCluster::builder()
        .split_raw(SPLITS)
        .start()
        .await
        .unwrap()
}

async fn client(cluster: &MockCluster) -> RawClient {
    RawClient::new(vec![cluster.pd_endpoint()]).await.unwrap()
}

/// A client on manual time: backoffs return at once and the clock shows what they slept.
async fn manual_client(cluster: &MockCluster) -> (RawClient, ManualClock) {
    let clock = ManualClock::new();
    let config = Config::default().with_runtime(Runtime::manual(clock.clone()));
    let client = RawClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap();
    (client, clock)
}

fn alphabet() -> Vec<KvPair> {
    ('a'..='z')
        .map(|c| KvPair::new(c.to_string(), format!("value-{c}")))
        .collect()
}

fn keys(pairs: &[KvPair]) -> String {
    pairs
        .iter()
        .map(|p| String::from_utf8(p.key.to_vec()).unwrap())
        .collect()
}

#[tokio::test]
async fn every_operation_across_ten_regions() {
    let cluster = cluster().await;
    assert_eq!(cluster.regions().len(), 10);
    let raw = client(&cluster).await;

    raw.put("a", "1").await.unwrap();
    assert_eq!(raw.get("a").await.unwrap(), Some(b"1".to_vec()));
    raw.put("empty", "").await.unwrap();
    assert_eq!(
        raw.get("empty").await.unwrap(),
        Some(vec![]),
        "empty is not absent"
    );
    raw.delete("empty").await.unwrap();
    raw.delete("a").await.unwrap();
    assert_eq!(raw.get("a").await.unwrap(), None);

    raw.batch_put(alphabet()).await.unwrap();
    let found = raw.batch_get(["z", "a", "missing", "m"]).await.unwrap();
    assert_eq!(keys(&found), "amz");
    assert_eq!(found[0].value, b"value-a");
    let values = raw.batch_get_values(["z", "missing", "a"]).await.unwrap();
    assert_eq!(
        values,
        vec![Some(b"value-z".to_vec()), None, Some(b"value-a".to_vec())]
    );

    assert_eq!(
        keys(&raw.scan("a"..="z", 100).await.unwrap()),
        "abcdefghijklmnopqrstuvwxyz"
    );
    assert_eq!(keys(&raw.scan("c".."k", 100).await.unwrap()), "cdefghij");
    assert_eq!(keys(&raw.scan("c".., 5).await.unwrap()), "cdefg");
    assert_eq!(
        keys(&raw.scan_reverse("c".."k", 100).await.unwrap()),
        "jihgfedc"
    );
    assert_eq!(keys(&raw.scan_reverse(.., 4).await.unwrap()), "zyxw");
    assert_eq!(keys(&raw.scan_reverse(..="e", 100).await.unwrap()), "edcba");
    let ks = raw.scan_keys("x".., 10).await.unwrap();
    assert_eq!(ks, vec![Key::from("x"), Key::from("y"), Key::from("z")]);
    assert_eq!(
        raw.scan_keys_reverse(.."c", 10).await.unwrap(),
        vec![Key::from("b"), Key::from("a")]
    );
    let batch = raw.batch_scan(["a".."c", "m".."o"], 10).await.unwrap();
    assert_eq!(keys(&batch), "abmn");
    assert_eq!(
        raw.batch_scan_keys(["y"..], 1).await.unwrap(),
        vec![Key::from("y")]
    );

    let streamed: Vec<KvPair> = raw.scan_stream("b".."y").try_collect().await.unwrap();
    assert_eq!(keys(&streamed), "bcdefghijklmnopqrstuvwx");

    raw.batch_delete(["a", "b", "zz"]).await.unwrap();
    assert_eq!(raw.get("b").await.unwrap(), None);
    raw.delete_range("e".."s").await.unwrap();
    assert_eq!(keys(&raw.scan(.., 100).await.unwrap()), "cdstuvwxyz");
}

#[tokio::test]
async fn scans_return_each_key_once_even_at_the_last_region() {
    let cluster = cluster().await;
    let raw = client(&cluster).await;
    raw.batch_put(alphabet()).await.unwrap();
    // Limits larger than the data, ranges ending in and beyond the last region.
    for range in [
        ("a".to_owned(), "".to_owned()),
        ("q".into(), "zz".into()),
        ("s".into(), "".into()),
    ] {
        let (start, end) = range;
        let r: tikv_client::BoundRange = if end.is_empty() {
            (start.clone()..).into()
        } else {
            (start.clone()..end.clone()).into()
        };
        let pairs = raw.scan(r.clone(), 10240).await.unwrap();
        let mut seen: Vec<Key> = pairs.iter().map(|p| p.key.clone()).collect();
        let n = seen.len();
        seen.dedup();
        assert_eq!(seen.len(), n, "duplicates scanning {start}..{end}");
        let reversed = raw.scan_reverse(r, 10240).await.unwrap();
        assert_eq!(reversed.len(), n);
    }
}

#[tokio::test]
async fn large_batches_are_split_into_requests_of_at_most_512_pairs_and_16_kib() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let raw = client(&cluster).await;
    let pairs: Vec<KvPair> = (0..1200)
        .map(|i| KvPair::new(format!("k{i:05}"), vec![b'x'; 10]))
        .collect();
    raw.batch_put(pairs).await.unwrap();
    let puts = cluster
        .calls()
        .into_iter()
        .filter(|c| c.method == "RawBatchPut")
        .count();
    assert_eq!(puts, 3, "1200 small pairs: 512 + 512 + 176");
    cluster.clear_calls();
    let big: Vec<KvPair> = (0..8)
        .map(|i| KvPair::new(format!("big{i}"), vec![b'x'; 5000]))
        .collect();
    raw.batch_put(big).await.unwrap();
    let puts = cluster
        .calls()
        .into_iter()
        .filter(|c| c.method == "RawBatchPut")
        .count();
    assert_eq!(puts, 3, "5 KB values: three per 16 KiB request");
    assert_eq!(raw.scan("k".., 10240).await.unwrap().len(), 1200);
}

fn invalid<T>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::InvalidArgument(_)))
}

#[tokio::test]
async fn bad_input_gets_typed_errors_before_any_request() {
    let cluster = cluster().await;
    let raw = client(&cluster).await;
    cluster.clear_calls();
    assert!(invalid(raw.scan("z".."a", 10).await));
    assert!(invalid(raw.scan("a".., 10241).await));
    assert!(invalid(raw.delete_range("z".."a").await));
    assert!(invalid(raw.get(vec![0u8; 8193]).await));
    assert!(invalid(raw.put("k", vec![0u8; 8 * 1024 * 1024 + 1]).await));
    assert!(
        invalid(raw.compare_and_swap("k", None, "v").await),
        "CAS without atomic mode"
    );
    assert!(cluster.calls().is_empty(), "nothing was sent");
    // A TTL on an API v1 cluster is refused by TiKV and reported as unsupported.
    assert!(matches!(
        raw.put_with_ttl("k", "v", 5).await,
        Err(Error::Unsupported(_))
    ));
}

#[tokio::test]
async fn ttl_cas_checksum_and_column_families() {
    let cluster = MockCluster::builder()
        .api_version(ApiVersion::V1Ttl)
        .split_raw(SPLITS)
        .start()
        .await
        .unwrap();
    let raw = client(&cluster).await;
    raw.put_with_ttl("t", "v", 100).await.unwrap();
    let ttl = raw.get_key_ttl_secs("t").await.unwrap().unwrap();
    assert!(ttl > 90 && ttl <= 100, "{ttl}");
    raw.put("forever", "v").await.unwrap();
    assert_eq!(raw.get_key_ttl_secs("forever").await.unwrap(), Some(0));
    assert_eq!(raw.get_key_ttl_secs("absent").await.unwrap(), None);
    raw.batch_put_with_ttl([("b1", "v"), ("b2", "v")], 1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(raw.get("b1").await.unwrap(), None, "expired");

    let atomic = raw.with_atomic_for_cas();
    assert_eq!(
        atomic.compare_and_swap("c", None, "1").await.unwrap(),
        (None, true)
    );
    assert_eq!(
        atomic.compare_and_swap("c", None, "2").await.unwrap(),
        (Some(b"1".to_vec()), false)
    );
    assert_eq!(
        atomic
            .compare_and_swap_with_ttl("c", Some(b"1".to_vec()), "2", 50)
            .await
            .unwrap(),
        (Some(b"1".to_vec()), true)
    );
    assert_eq!(atomic.get("c").await.unwrap(), Some(b"2".to_vec()));

    let lock_cf = raw.with_cf(ColumnFamily::Lock);
    lock_cf.put("t", "in-lock-cf").await.unwrap();
    assert_eq!(
        lock_cf.get("t").await.unwrap(),
        Some(b"in-lock-cf".to_vec())
    );
    assert_eq!(
        raw.get("t").await.unwrap(),
        Some(b"v".to_vec()),
        "column families are separate"
    );

    let fresh = MockCluster::builder()
        .split_raw(SPLITS)
        .start()
        .await
        .unwrap();
    let raw = client(&fresh).await;
    raw.batch_put(alphabet()).await.unwrap();
    let sum = raw.checksum(..).await.unwrap();
    assert_eq!(sum.total_kvs, 26);
    assert_eq!(sum.total_bytes, 26 * (1 + 7));
    let expected = alphabet().iter().fold(0, |acc, p| {
        acc ^ crc64_xz(&[p.key.as_ref(), &p.value[..]].concat())
    });
    assert_eq!(sum.crc64_xor, expected);
    assert_eq!(raw.checksum("a".."c").await.unwrap().total_kvs, 2);
}

fn crc64_xz(data: &[u8]) -> u64 {
    let mut crc = !0u64;
    for byte in data {
        crc ^= u64::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xC96C_5795_D787_0F42
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn api_v2_keyspaces_isolate_data() {
    let cluster = MockCluster::builder()
        .api_version(ApiVersion::V2)
        .keyspaces(["tenant"])
        .start()
        .await
        .unwrap();
    let default = RawClient::new_with_config(
        vec![cluster.pd_endpoint()],
        Config::default().with_keyspace("DEFAULT"),
    )
    .await
    .unwrap();
    let tenant = RawClient::new_with_config(
        vec![cluster.pd_endpoint()],
        Config::default().with_keyspace("tenant"),
    )
    .await
    .unwrap();
    default
        .batch_put([("a", "default"), ("b", "default")])
        .await
        .unwrap();
    tenant.put("a", "tenant").await.unwrap();
    assert_eq!(tenant.get("a").await.unwrap(), Some(b"tenant".to_vec()));
    assert_eq!(default.get("a").await.unwrap(), Some(b"default".to_vec()));
    assert_eq!(keys(&tenant.scan(.., 100).await.unwrap()), "a");
    assert_eq!(keys(&default.scan_reverse(.., 100).await.unwrap()), "ba");
    tenant.delete_range(..).await.unwrap();
    assert_eq!(
        default.scan(.., 100).await.unwrap().len(),
        2,
        "other keyspaces untouched"
    );
    let missing = RawClient::new_with_config(
        vec![cluster.pd_endpoint()],
        Config::default().with_keyspace("nope"),
    )
    .await;
    assert!(matches!(missing, Err(Error::Pd(m)) if m.contains("ENTRY_NOT_FOUND")));
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn not_leader_with_a_leader_is_retried_at_once_on_the_new_leader() {
    let cluster = cluster().await;
    let (raw, clock) = manual_client(&cluster).await;
    raw.put("k", "v").await.unwrap();
    let region = cluster.region_of_raw_key(b"k").unwrap().id;
    let old = cluster.leader_of(region).unwrap();
    let new = *cluster.store_ids().iter().find(|s| **s != old).unwrap();
    cluster.transfer_leader(region, new).unwrap();
    cluster.clear_calls();
    assert_eq!(raw.get("k").await.unwrap(), Some(b"v".to_vec()));
    let outcomes: Vec<(u64, Outcome)> = calls_of(&cluster, "RawGet")
        .into_iter()
        .map(|c| (c.store, c.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![(old, Outcome::RegionError("NotLeader")), (new, Outcome::Ok)]
    );
    assert_eq!(clock.elapsed(), Duration::ZERO, "no sleep");
}

#[tokio::test]
async fn epoch_not_match_is_resharded_by_the_carried_regions() {
    let cluster = cluster().await;
    let (raw, clock) = manual_client(&cluster).await;
    raw.batch_put([("c1", "x"), ("c5", "y")]).await.unwrap();
    cluster.split_raw("c3");
    cluster.clear_calls();
    let found = raw.batch_get(["c1", "c5"]).await.unwrap();
    assert_eq!(keys(&found), "c1c5");
    let outcomes: Vec<Outcome> = calls_of(&cluster, "RawBatchGet")
        .into_iter()
        .map(|c| c.outcome)
        .collect();
    assert_eq!(outcomes[0], Outcome::RegionError("EpochNotMatch"));
    assert_eq!(
        &outcomes[1..],
        &[Outcome::Ok, Outcome::Ok],
        "one request per new region"
    );
    assert_eq!(
        clock.elapsed(),
        Duration::ZERO,
        "carried regions need no backoff"
    );
}

fn region_error(f: fn(&mut errorpb::Error)) -> errorpb::Error {
    let mut e = errorpb::Error {
        message: "injected".into(),
        ..Default::default()
    };
    f(&mut e);
    e
}

#[tokio::test]
async fn retryable_region_errors_back_off_with_their_kind() {
    let cluster = cluster().await;
    let (raw, clock) = manual_client(&cluster).await;
    raw.put("k", "v").await.unwrap();
    // Each row: the injected error and the least the client must have slept (first attempt of
    // its backoff kind: equal jitter sleeps at least half the base).
    let rows: Vec<(&str, errorpb::Error, Duration)> = vec![
        (
            "ServerIsBusy",
            region_error(|e| e.server_is_busy = Some(Default::default())),
            Duration::from_millis(1000),
        ),
        (
            "StaleCommand",
            region_error(|e| e.stale_command = Some(Default::default())),
            Duration::from_millis(2),
        ),
        (
            "RegionNotFound",
            region_error(|e| e.region_not_found = Some(Default::default())),
            Duration::from_millis(2),
        ),
        (
            "KeyNotInRegion",
            region_error(|e| e.key_not_in_region = Some(Default::default())),
            Duration::from_millis(2),
        ),
        (
            "MaxTimestampNotSynced",
            region_error(|e| e.max_timestamp_not_synced = Some(Default::default())),
            Duration::from_millis(2),
        ),
        (
            "DiskFull",
            region_error(|e| e.disk_full = Some(Default::default())),
            Duration::from_millis(500),
        ),
        (
            "RegionNotInitialized",
            region_error(|e| e.region_not_initialized = Some(Default::default())),
            Duration::from_millis(2),
        ),
        (
            "IsWitness",
            region_error(|e| e.is_witness = Some(Default::default())),
            Duration::from_millis(500),
        ),
    ];
    for (name, error, least) in rows {
        cluster.clear_calls();
        let before = clock.elapsed();
        let rule = cluster.add_rule(Rule::on("RawGet").times(1).region_error(error));
        assert_eq!(raw.get("k").await.unwrap(), Some(b"v".to_vec()), "{name}");
        cluster.remove_rule(rule);
        let outcomes: Vec<Outcome> = calls_of(&cluster, "RawGet")
            .into_iter()
            .map(|c| c.outcome)
            .collect();
        assert_eq!(
            outcomes,
            vec![Outcome::RegionError(name), Outcome::Ok],
            "{name}"
        );
        let slept = clock.elapsed() - before;
        assert!(
            slept >= least,
            "{name}: slept {slept:?}, expected at least {least:?}"
        );
    }
}

#[tokio::test]
async fn fatal_region_errors_are_not_retried() {
    let cluster = cluster().await;
    let (raw, _) = manual_client(&cluster).await;
    for (name, error) in [
        (
            "RaftEntryTooLarge",
            region_error(|e| e.raft_entry_too_large = Some(Default::default())),
        ),
        (
            "UndeterminedResult",
            region_error(|e| e.undetermined_result = Some(Default::default())),
        ),
    ] {
        cluster.clear_calls();
        let rule = cluster.add_rule(Rule::on("RawPut").region_error(error));
        let err = raw.put("k", "v").await.unwrap_err();
        cluster.remove_rule(rule);
        assert!(matches!(err, Error::Region(_)), "{name}: {err:?}");
        assert_eq!(calls_of(&cluster, "RawPut").len(), 1, "{name}: sent once");
    }
}

#[tokio::test]
async fn an_invalid_max_ts_update_is_not_retried() {
    let cluster = cluster().await;
    let (raw, _) = manual_client(&cluster).await;
    let refused = region_error(|e| {
        e.message = "invalid max_ts update: 9 exceeds the limit 5, source=raw_get".into();
    });
    cluster.add_rule(Rule::on("RawGet").region_error(refused));
    let err = raw.get("k").await.unwrap_err();
    assert!(matches!(err, Error::Region(_)), "{err:?}");
    assert_eq!(calls_of(&cluster, "RawGet").len(), 1, "sent once");
}

#[tokio::test]
async fn a_not_leader_naming_an_unknown_peer_reloads_the_region_from_pd() {
    let cluster = cluster().await;
    let (raw, _) = manual_client(&cluster).await;
    raw.put("k", "v").await.unwrap();
    let stranger = region_error(|e| {
        e.not_leader = Some(errorpb::NotLeader {
            region_id: 0,
            leader: Some(metapb::Peer {
                id: 999,
                store_id: 99,
                ..Default::default()
            }),
        });
    });
    cluster.clear_calls();
    cluster.add_rule(Rule::on("RawGet").times(1).region_error(stranger));
    assert_eq!(raw.get("k").await.unwrap(), Some(b"v".to_vec()));
    let calls = cluster.calls();
    let methods: Vec<&str> = calls.iter().map(|c| c.method).collect();
    let refused = methods.iter().position(|m| *m == "RawGet").unwrap();
    assert!(
        methods[refused + 1..].contains(&"GetRegion"),
        "the region is looked up again: {methods:?}"
    );
    assert_eq!(calls_of(&cluster, "RawGet").len(), 2);
}

#[tokio::test]
async fn an_epoch_not_match_carrying_an_older_region_is_retried_without_caching_it() {
    let cluster = cluster().await;
    let (raw, _) = manual_client(&cluster).await;
    raw.put("k", "v").await.unwrap();
    let mut older = cluster.region_of_raw_key(b"k").unwrap();
    let epoch = older.region_epoch.as_mut().unwrap();
    epoch.version -= 1;
    let stale = errorpb::Error {
        message: "injected".into(),
        epoch_not_match: Some(errorpb::EpochNotMatch {
            current_regions: vec![older],
        }),
        ..Default::default()
    };
    cluster.clear_calls();
    cluster.add_rule(Rule::on("RawGet").times(1).region_error(stale));
    assert_eq!(raw.get("k").await.unwrap(), Some(b"v".to_vec()));
    // Had the stale meta been cached, the retry would carry an old epoch and be refused.
    let outcomes: Vec<Outcome> = calls_of(&cluster, "RawGet")
        .into_iter()
        .map(|c| c.outcome)
        .collect();
    assert_eq!(
        outcomes,
        vec![Outcome::RegionError("EpochNotMatch"), Outcome::Ok]
    );
}

#[tokio::test]
async fn an_exhausted_budget_names_the_backoff_kind_and_the_last_error() {
    let cluster = cluster().await;
    let (raw, clock) = manual_client(&cluster).await;
    let raw = raw.with_backoff_budget(Duration::from_millis(300));
    cluster.add_rule(
        Rule::on("RawGet")
            .region_error(region_error(|e| e.stale_command = Some(Default::default()))),
    );
    let err = raw.get("k").await.unwrap_err();
    let Error::BackoffExhausted {
        kind,
        total_sleep,
        last,
        ..
    } = err
    else {
        panic!("expected an exhausted budget, got {err:?}");
    };
    assert_eq!(kind, BackoffKind::StaleCommand);
    assert!(total_sleep >= Duration::from_millis(300));
    assert_eq!(clock.elapsed(), total_sleep);
    assert!(matches!(*last, Error::Region(ref e) if e.stale_command.is_some()));
}

#[tokio::test]
async fn a_stopped_store_is_retried_until_it_returns() {
    let cluster = cluster().await;
    let raw = client(&cluster).await;
    raw.put("k", "v").await.unwrap();
    let region = cluster.region_of_raw_key(b"k").unwrap().id;
    let leader = cluster.leader_of(region).unwrap();
    assert!(cluster.stop_store(leader));
    let cluster = std::sync::Arc::new(cluster);
    let restarter = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            cluster.start_store(leader).await.unwrap();
        })
    };
    assert_eq!(raw.get("k").await.unwrap(), Some(b"v".to_vec()));
    restarter.await.unwrap();
}

#[tokio::test]
async fn a_long_scan_survives_splits_and_leader_moves() {
    let cluster = MockCluster::builder()
        .split_raw(["m"])
        .start()
        .await
        .unwrap();
    let raw = client(&cluster).await;
    let pairs: Vec<KvPair> = (0..3000)
        .map(|i| KvPair::new(format!("key{i:05}"), "v"))
        .collect();
    raw.batch_put(pairs).await.unwrap();
    let mut stream = Box::pin(raw.scan_stream("key".."kez"));
    let mut seen = Vec::new();
    while let Some(pair) = stream.try_next().await.unwrap() {
        seen.push(pair.key);
        if seen.len() == 500 {
            cluster.split_raw("key01500");
            cluster.split_raw("key02500");
        }
        if seen.len() == 1700 {
            let region = cluster.region_of_raw_key(b"key02000").unwrap().id;
            let leader = cluster.leader_of(region).unwrap();
            let other = *cluster.store_ids().iter().find(|s| **s != leader).unwrap();
            cluster.transfer_leader(region, other).unwrap();
        }
    }
    let expected: Vec<Key> = (0..3000).map(|i| Key::from(format!("key{i:05}"))).collect();
    assert_eq!(seen, expected, "every key once, in order");
}

#[tokio::test]
async fn pd_unavailable_for_a_while_is_retried() {
    let cluster = std::sync::Arc::new(cluster().await);
    let raw = client(&cluster).await;
    cluster.set_pd_available(false);
    let restorer = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            cluster.set_pd_available(true);
        })
    };
    // The region is not cached yet: the client must reach PD.
    raw.put("k", "v").await.unwrap();
    restorer.await.unwrap();
    assert_eq!(raw.get("k").await.unwrap(), Some(b"v".to_vec()));
}

#[tokio::test]
async fn lowered_requests_gzip_and_interceptors() {
    use std::sync::{Arc, Mutex};
    use tikv_client::interceptor::Interceptor;
    use tikv_client::proto::kvrpcpb;
    use tikv_client::request::RequestOptions;

    #[derive(Debug, Default)]
    struct Seen(Mutex<Vec<(String, String)>>);
    #[derive(Debug)]
    struct Record(Arc<Seen>);
    impl Interceptor for Record {
        fn before_send(&self, method: &str, ctx: &mut kvrpcpb::Context) {
            self.0
                 .0
                .lock()
                .unwrap()
                .push((method.to_owned(), ctx.request_source.clone()));
        }
    }

    // Compressed both ways: requests by the client, responses by the stores.
    let cluster = MockCluster::builder()
        .split_raw(SPLITS)
        .compress_responses(true)
        .start()
        .await
        .unwrap();
    let config = Config::default().with_gzip(true);
    let raw = RawClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap();
    let seen = Arc::new(Seen::default());
    let raw = raw
        .with_request_source("test-suite")
        .with_interceptor(Record(seen.clone()));
    raw.put("k", "v").await.unwrap();
    // A lowered request finds its region (after a split the cache is stale) and is retried.
    cluster.split_raw("j5");
    let resp = raw
        .send(
            kvrpcpb::RawGetRequest {
                key: b"k".to_vec(),
                ..Default::default()
            },
            RequestOptions::key("k"),
        )
        .await
        .unwrap();
    assert_eq!(resp.value, b"v");
    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(
        seen[0],
        ("RawPut".to_owned(), "test-suite".to_owned()),
        "interceptors run in order"
    );
    assert!(
        seen.iter().filter(|(m, _)| m == "RawGet").count() >= 2,
        "{seen:?}"
    );
}

#[tokio::test]
async fn concurrent_gets_of_one_cold_key_ask_pd_once() {
    let cluster = cluster().await;
    let raw = client(&cluster).await;
    let gets: Vec<_> = (0..16).map(|_| raw.get("k")).collect();
    futures::future::try_join_all(gets).await.unwrap();
    let lookups = cluster
        .calls()
        .iter()
        .filter(|c| c.store == 0 && c.method == "GetRegion")
        .count();
    assert_eq!(lookups, 1);
}

#[tokio::test]
async fn definite_grpc_refusals_are_not_retried() {
    let cluster = cluster().await;
    // Unary calls: inside a BatchCommands stream a refused command gets no answer at all
    // (as from TiKV) and only times out, so a refusal is seen only on unary calls.
    let clock = ManualClock::new();
    let config = Config::default()
        .with_runtime(Runtime::manual(clock.clone()))
        .with_batch_commands(false);
    let raw = RawClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap();
    cluster
        .add_rule(Rule::on("RawGet").status(tikv_client::GrpcCode::InvalidArgument, "bad request"));
    let err = raw.get("k").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Grpc {
                code: tikv_client::GrpcCode::InvalidArgument,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(calls_of(&cluster, "RawGet").len(), 1);
    assert_eq!(clock.elapsed(), Duration::ZERO);
}
