//! The mock TiKV's transactional reads (spec 3, gotchas 10.1-10.4, 10.28) and request-context
//! checks (spec 2.1), through the raw generated stubs.

use tikv_client::kv::memcomparable;
use tikv_client::proto::kvrpcpb::{self, IsolationLevel, Op};
use tikv_client::testutils::MockCluster;

use super::mock_txn::{abort_of, put, region_store, store, ts, Store};

fn mutation(op: Op, key: &str) -> kvrpcpb::Mutation {
    kvrpcpb::Mutation {
        op: op as i32,
        key: key.into(),
        ..Default::default()
    }
}

/// Prewrites `mutations` at `start` (the first key is the primary) and commits them at `commit`.
async fn commit_txn(s: &mut Store, mutations: Vec<kvrpcpb::Mutation>, start: u64, commit: u64) {
    let keys: Vec<String> = mutations
        .iter()
        .map(|m| String::from_utf8(m.key.clone()).unwrap())
        .collect();
    let r = s.prewrite(mutations, &keys[0], start).await;
    assert!(r.errors.is_empty(), "{r:?}");
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let r = s.commit(&keys, start, commit).await;
    assert!(r.error.is_none() && r.region_error.is_none(), "{r:?}");
}

async fn get_with(
    s: &mut Store,
    ctx: &kvrpcpb::Context,
    key: &str,
    version: u64,
    need_commit_ts: bool,
) -> kvrpcpb::GetResponse {
    let req = kvrpcpb::GetRequest {
        context: Some(ctx.clone()),
        key: key.into(),
        version,
        need_commit_ts,
    };
    s.client.kv_get(req).await.unwrap().into_inner()
}

async fn batch_get(
    s: &mut Store,
    ctx: &kvrpcpb::Context,
    keys: &[&str],
    version: u64,
    need_commit_ts: bool,
) -> kvrpcpb::BatchGetResponse {
    let req = kvrpcpb::BatchGetRequest {
        context: Some(ctx.clone()),
        keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        version,
        need_commit_ts,
    };
    s.client.kv_batch_get(req).await.unwrap().into_inner()
}

/// A forward scan of `[start, end)` at ts 1000 ms.
fn scan_req(ctx: &kvrpcpb::Context, start: &str, end: &str, limit: u32) -> kvrpcpb::ScanRequest {
    kvrpcpb::ScanRequest {
        context: Some(ctx.clone()),
        start_key: start.into(),
        end_key: end.into(),
        limit,
        version: ts(1000),
        ..Default::default()
    }
}

async fn scan(s: &mut Store, req: kvrpcpb::ScanRequest) -> kvrpcpb::ScanResponse {
    s.client.kv_scan(req).await.unwrap().into_inner()
}

/// Read pairs as `Ok((key, value))`, or `Err(locked key)` for a lock error, which must come
/// in a pair without a key.
fn entries(pairs: &[kvrpcpb::KvPair]) -> Vec<Result<(String, String), String>> {
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    pairs
        .iter()
        .map(|p| match &p.error {
            None => Ok((text(&p.key), text(&p.value))),
            Some(e) => {
                assert!(p.key.is_empty() && p.value.is_empty(), "{p:?}");
                Err(text(&e.locked.as_ref().expect("a lock error").key))
            }
        })
        .collect()
}

fn kv(key: &str, value: &str) -> Result<(String, String), String> {
    Ok((key.to_owned(), value.to_owned()))
}

fn locked(key: &str) -> Result<(String, String), String> {
    Err(key.to_owned())
}

#[tokio::test]
async fn a_lock_record_never_blocks_reads() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    commit_txn(&mut s, vec![put("a", "1"), put("b", "2")], ts(10), ts(20)).await;
    // One transaction: a Lock on "a" and on the value-less "c", a Put on "b".
    let r = s
        .prewrite(
            vec![
                mutation(Op::Lock, "a"),
                put("b", "3"),
                mutation(Op::Lock, "c"),
            ],
            "a",
            ts(100),
        )
        .await;
    assert!(r.errors.is_empty(), "{r:?}");
    let locks = s
        .client
        .kv_scan_lock(kvrpcpb::ScanLockRequest {
            context: s.ctx(),
            max_version: ts(200),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .locks;
    let types: Vec<(&[u8], i32)> = locks
        .iter()
        .map(|l| (l.key.as_slice(), l.lock_type))
        .collect();
    assert_eq!(
        types,
        vec![
            (&b"a"[..], Op::Lock as i32),
            (b"b", Op::Put as i32),
            (b"c", Op::Lock as i32)
        ]
    );

    let r = s.get("a", ts(200)).await;
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!((r.value.as_slice(), r.commit_ts), (&b"1"[..], ts(20)));
    assert!(s.get("b", ts(200)).await.error.unwrap().locked.is_some());
    let r = s.get("c", ts(200)).await;
    assert!(r.error.is_none() && r.not_found, "{r:?}");
    let r = batch_get(&mut s, &ctx, &["a", "c"], ts(200), false).await;
    assert_eq!(entries(&r.pairs), vec![kv("a", "1")]);
    let r = scan(&mut s, scan_req(&ctx, "", "", 10)).await;
    assert_eq!(entries(&r.pairs), vec![kv("a", "1"), locked("b")]);
}

#[tokio::test]
async fn a_reader_at_max_ts_reads_through_plain_primary_locks_only() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    commit_txn(
        &mut s,
        vec![put("p", "1"), put("s", "1"), put("x", "1")],
        ts(10),
        ts(20),
    )
    .await;
    let r = s
        .prewrite(vec![put("p", "2"), put("s", "2")], "p", ts(100))
        .await;
    assert!(r.errors.is_empty(), "{r:?}");
    let r = s
        .prewrite_req(kvrpcpb::PrewriteRequest {
            context: s.ctx(),
            mutations: vec![put("x", "2")],
            primary_lock: b"x".to_vec(),
            start_version: ts(200),
            lock_ttl: 3000,
            use_async_commit: true,
            ..Default::default()
        })
        .await;
    assert!(r.errors.is_empty() && r.min_commit_ts > 0, "{r:?}");

    // The primary of a 2PC transaction: the newest committed value, as of u64::MAX.
    let r = s.get("p", u64::MAX).await;
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!((r.value.as_slice(), r.commit_ts), (&b"1"[..], ts(20)));
    // Its secondary, and an async-commit primary, still block.
    let info = s.get("s", u64::MAX).await.error.unwrap().locked.unwrap();
    assert_eq!(info.lock_version, ts(100));
    let info = s.get("x", u64::MAX).await.error.unwrap().locked.unwrap();
    assert!(info.use_async_commit && info.lock_version == ts(200));
    let r = batch_get(&mut s, &ctx, &["p", "s", "x"], u64::MAX, false).await;
    assert_eq!(
        entries(&r.pairs),
        vec![kv("p", "1"), locked("s"), locked("x")]
    );
    let r = scan(
        &mut s,
        kvrpcpb::ScanRequest {
            version: u64::MAX,
            ..scan_req(&ctx, "", "", 10)
        },
    )
    .await;
    assert_eq!(
        entries(&r.pairs),
        vec![kv("p", "1"), locked("s"), locked("x")]
    );
}

#[tokio::test]
async fn committed_locks_read_the_lock_data_unless_a_commit_ts_is_needed() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    commit_txn(
        &mut s,
        vec![put("d", "old"), put("k", "old")],
        ts(10),
        ts(20),
    )
    .await;
    let r = s
        .prewrite(vec![put("k", "new"), mutation(Op::Del, "d")], "k", ts(100))
        .await;
    assert!(r.errors.is_empty(), "{r:?}");
    let committed = kvrpcpb::Context {
        committed_locks: vec![ts(100)],
        ..s.ctx.clone()
    };

    let r = get_with(&mut s, &committed, "k", ts(200), false).await;
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!((r.value.as_slice(), r.commit_ts), (&b"new"[..], 0));
    let r = get_with(&mut s, &committed, "d", ts(200), false).await;
    assert!(
        r.error.is_none() && r.not_found,
        "a Delete lock reads as absent: {r:?}"
    );
    let r = batch_get(&mut s, &committed, &["d", "k"], ts(200), false).await;
    assert_eq!(entries(&r.pairs), vec![kv("k", "new")]);
    let r = scan(&mut s, scan_req(&committed, "", "", 10)).await;
    assert_eq!(entries(&r.pairs), vec![kv("k", "new")]);

    // A lock has no commit ts to report: a read that needs one is blocked.
    let r = get_with(&mut s, &committed, "k", ts(200), true).await;
    assert_eq!(r.error.unwrap().locked.unwrap().lock_version, ts(100));
    let r = batch_get(&mut s, &committed, &["d", "k"], ts(200), true).await;
    assert_eq!(entries(&r.pairs), vec![locked("d"), locked("k")]);
    // Without the list, the same reads are blocked.
    let plain = s.ctx.clone();
    let r = get_with(&mut s, &plain, "d", ts(200), false).await;
    assert!(r.error.unwrap().locked.is_some());
}

#[tokio::test]
async fn read_committed_isolation_ignores_locks() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    commit_txn(&mut s, vec![put("a", "1"), put("b", "1")], ts(10), ts(20)).await;
    let r = s
        .prewrite(vec![put("a", "2"), mutation(Op::Del, "b")], "a", ts(100))
        .await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(s.get("a", ts(200)).await.error.unwrap().locked.is_some());

    let rc = kvrpcpb::Context {
        isolation_level: IsolationLevel::Rc as i32,
        ..s.ctx.clone()
    };
    let r = s.get_rc("a", ts(200)).await;
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(r.value, b"1", "the committed value, not the lock's");
    let r = batch_get(&mut s, &rc, &["a", "b"], ts(200), false).await;
    assert_eq!(entries(&r.pairs), vec![kv("a", "1"), kv("b", "1")]);
    let r = scan(&mut s, scan_req(&rc, "", "", 10)).await;
    assert_eq!(entries(&r.pairs), vec![kv("a", "1"), kv("b", "1")]);
}

#[tokio::test]
async fn an_empty_value_is_found_and_commit_ts_comes_only_on_request() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    commit_txn(&mut s, vec![put("e", "")], ts(10), ts(20)).await;

    let r = get_with(&mut s, &ctx, "e", ts(30), true).await;
    assert!(r.error.is_none() && !r.not_found, "{r:?}");
    assert_eq!((r.value.as_slice(), r.commit_ts), (&b""[..], ts(20)));
    let r = get_with(&mut s, &ctx, "e", ts(30), false).await;
    assert!(!r.not_found && r.commit_ts == 0, "{r:?}");
    let r = get_with(&mut s, &ctx, "missing", ts(30), true).await;
    assert!(
        r.error.is_none() && r.not_found && r.value.is_empty(),
        "{r:?}"
    );
    assert_eq!(r.commit_ts, 0);
    let r = batch_get(&mut s, &ctx, &["e", "missing"], ts(30), true).await;
    assert_eq!(entries(&r.pairs), vec![kv("e", "")]);
    assert_eq!(r.pairs[0].commit_ts, ts(20));
}

#[tokio::test]
async fn batch_get_keeps_request_order_omits_missing_keys_and_reports_locks_without_a_key() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    commit_txn(&mut s, vec![put("a", "1")], ts(10), ts(20)).await;
    commit_txn(&mut s, vec![put("c", "3")], ts(30), ts(40)).await;
    let r = s.prewrite(vec![put("l", "v")], "l", ts(100)).await;
    assert!(r.errors.is_empty(), "{r:?}");

    let keys = ["c", "missing", "l", "a"];
    let r = batch_get(&mut s, &ctx, &keys, ts(200), true).await;
    assert!(r.error.is_none() && r.region_error.is_none(), "{r:?}");
    assert_eq!(
        entries(&r.pairs),
        vec![kv("c", "3"), locked("l"), kv("a", "1")]
    );
    let commit_ts: Vec<u64> = r.pairs.iter().map(|p| p.commit_ts).collect();
    assert_eq!(commit_ts, vec![ts(40), 0, ts(20)]);
    let r = batch_get(&mut s, &ctx, &keys, ts(200), false).await;
    assert_eq!(r.pairs.len(), 3);
    assert!(r.pairs.iter().all(|p| p.commit_ts == 0), "{r:?}");
}

#[tokio::test]
async fn scans_return_empty_values_for_key_only_and_sample_every_step_th_visible_key() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    let all = ["a", "b", "c", "d", "e", "f", "g"];
    commit_txn(
        &mut s,
        all.iter().map(|k| put(k, "v")).collect(),
        ts(10),
        ts(20),
    )
    .await;
    commit_txn(&mut s, vec![mutation(Op::Del, "e")], ts(30), ts(40)).await;
    let r = s.prewrite(vec![put("c", "w")], "c", ts(100)).await;
    assert!(r.errors.is_empty(), "{r:?}");

    let r = scan(
        &mut s,
        kvrpcpb::ScanRequest {
            key_only: true,
            ..scan_req(&ctx, "a", "", 10)
        },
    )
    .await;
    assert_eq!(
        entries(&r.pairs),
        vec![
            kv("a", ""),
            kv("b", ""),
            locked("c"),
            kv("d", ""),
            kv("f", ""),
            kv("g", "")
        ]
    );
    // Visible keys a b d f g: the 1st, 3rd and 5th; the lock is reported without counting.
    let sampled = |limit| kvrpcpb::ScanRequest {
        sample_step: 2,
        ..scan_req(&ctx, "a", "", limit)
    };
    let r = scan(&mut s, sampled(10)).await;
    assert_eq!(
        entries(&r.pairs),
        vec![kv("a", "v"), locked("c"), kv("d", "v"), kv("g", "v")]
    );
    let r = scan(&mut s, sampled(2)).await;
    assert_eq!(entries(&r.pairs), vec![kv("a", "v"), locked("c")]);
}

#[tokio::test]
async fn lock_entries_count_against_the_scan_limit() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    commit_txn(
        &mut s,
        vec![put("a", "1"), put("b", "1"), put("c", "1"), put("d", "1")],
        ts(10),
        ts(20),
    )
    .await;
    let r = s.prewrite(vec![put("b", "2")], "b", ts(100)).await;
    assert!(r.errors.is_empty(), "{r:?}");

    let r = scan(&mut s, scan_req(&ctx, "a", "", 3)).await;
    assert_eq!(
        entries(&r.pairs),
        vec![kv("a", "1"), locked("b"), kv("c", "1")]
    );
    let r = scan(
        &mut s,
        kvrpcpb::ScanRequest {
            reverse: true,
            ..scan_req(&ctx, "d", "", 2)
        },
    )
    .await;
    assert_eq!(entries(&r.pairs), vec![kv("c", "1"), locked("b")]);
}

#[tokio::test]
async fn scan_bounds_outside_the_region_are_aborts_but_a_misplaced_seek_is_key_not_in_region() {
    let cluster = MockCluster::builder()
        .stores(1)
        .split_txn(["m"])
        .start()
        .await
        .unwrap();
    let mut first = region_store(&cluster, 0).await;
    let mut second = region_store(&cluster, 1).await;
    let (c0, c1) = (first.ctx.clone(), second.ctx.clone());
    let reverse = |ctx, start, end| kvrpcpb::ScanRequest {
        reverse: true,
        ..scan_req(ctx, start, end, 10)
    };

    // An upper bound above the region end (forward end, reverse start) or a lower bound
    // below its start (reverse end): InvalidReqRange in `error` and `pairs[0]`.
    let invalid_range = |r: kvrpcpb::ScanResponse| {
        assert!(r.region_error.is_none(), "{r:?}");
        assert!(
            abort_of(r.error.as_ref()).contains("InvalidReqRange"),
            "{r:?}"
        );
        assert_eq!(r.pairs.len(), 1);
        assert_eq!(r.pairs[0].error, r.error);
    };
    invalid_range(scan(&mut first, scan_req(&c0, "a", "n", 10)).await);
    invalid_range(scan(&mut first, reverse(&c0, "n", "a")).await);
    invalid_range(scan(&mut second, reverse(&c1, "p", "c")).await);

    // A seek past the region: forward from beyond its end, reverse from below its start.
    let end = memcomparable::encode(b"m");
    let r = scan(&mut first, scan_req(&c0, "n", "", 10)).await;
    let e = r.region_error.unwrap().key_not_in_region.unwrap();
    assert_eq!(
        (e.region_id, e.start_key.as_slice(), e.end_key.as_slice()),
        (c0.region_id, &b""[..], end.as_slice())
    );
    let r = scan(&mut second, reverse(&c1, "c", "")).await;
    let e = r.region_error.unwrap().key_not_in_region.unwrap();
    assert_eq!(
        (e.region_id, e.start_key.as_slice()),
        (c1.region_id, end.as_slice())
    );
    // The region end itself is still seekable (inclusive), and finds nothing.
    let r = scan(&mut first, scan_req(&c0, "m", "", 10)).await;
    assert!(
        r.region_error.is_none() && r.error.is_none() && r.pairs.is_empty(),
        "{r:?}"
    );
}

#[tokio::test]
async fn epochs_compare_only_the_version_in_both_directions() {
    let cluster = MockCluster::builder()
        .stores(1)
        .split_txn(["m"])
        .start()
        .await
        .unwrap();
    let mut s = region_store(&cluster, 0).await;
    let base = s.ctx.clone();
    let current = cluster.regions()[0].clone();
    let epoch = current.region_epoch.unwrap();
    let with_epoch = |conf_ver, version| kvrpcpb::Context {
        region_epoch: Some(tikv_client::proto::metapb::RegionEpoch { conf_ver, version }),
        ..base.clone()
    };

    // Another conf_ver, either way, is served: reads and writes alike.
    for (i, conf_ver) in [epoch.conf_ver + 5, 0].into_iter().enumerate() {
        let start = ts(100 * (i as u64 + 1));
        let ctx = with_epoch(conf_ver, epoch.version);
        let r = get_with(&mut s, &ctx, "a", ts(10), false).await;
        assert!(r.region_error.is_none() && r.not_found, "{r:?}");
        let r = s
            .client
            .kv_prewrite(kvrpcpb::PrewriteRequest {
                context: Some(ctx),
                mutations: vec![put("a", "v")],
                primary_lock: b"a".to_vec(),
                start_version: start,
                lock_ttl: 3000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
        let r = s.commit(&["a"], start, start + ts(10)).await;
        assert!(r.region_error.is_none() && r.error.is_none(), "{r:?}");
    }
    // A newer version is as wrong as an older one; only an older one learns the siblings.
    let ctx = with_epoch(epoch.conf_ver, epoch.version + 1);
    let r = get_with(&mut s, &ctx, "a", ts(500), false).await;
    let e = r.region_error.unwrap().epoch_not_match.unwrap();
    assert_eq!(e.current_regions, vec![current.clone()]);
    let ctx = with_epoch(epoch.conf_ver, epoch.version - 1);
    let r = get_with(&mut s, &ctx, "a", ts(500), false).await;
    let e = r.region_error.unwrap().epoch_not_match.unwrap();
    assert_eq!(e.current_regions[0], current);
    assert!(e.current_regions.len() > 1, "{e:?}");
}

#[tokio::test]
async fn a_request_for_another_cluster_fails_with_invalid_argument_before_anything_runs() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let id = cluster.cluster_id();
    let foreign = kvrpcpb::Context {
        cluster_id: id + 1,
        ..s.ctx.clone()
    };
    let refused = |status: tonic::Status| {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert_eq!(
            status.message(),
            "the cluster id of the request does not match the TiKV cluster"
        );
    };

    let status = s
        .client
        .kv_prewrite(kvrpcpb::PrewriteRequest {
            context: Some(foreign.clone()),
            mutations: vec![put("k", "v")],
            primary_lock: b"k".to_vec(),
            start_version: ts(10),
            lock_ttl: 3000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(status);
    // It wins over the region checks too.
    let nowhere = kvrpcpb::Context {
        region_id: 12_345,
        ..foreign.clone()
    };
    let status = s
        .client
        .kv_get(kvrpcpb::GetRequest {
            context: Some(nowhere),
            key: b"k".to_vec(),
            version: ts(20),
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(status);

    // The right id, or none, is served; the refused prewrite left no lock.
    for cluster_id in [id, 0] {
        let ctx = kvrpcpb::Context {
            cluster_id,
            ..s.ctx.clone()
        };
        let r = get_with(&mut s, &ctx, "k", ts(20), false).await;
        assert!(
            r.region_error.is_none() && r.error.is_none() && r.not_found,
            "{r:?}"
        );
    }
}
