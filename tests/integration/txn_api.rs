//! The transaction API beyond reads and commits: context options and interceptors, lock
//! options, assertions, linearizable async commit, lazy scans, and lock scanning/cleanup.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use tikv_client::interceptor::Interceptor;
use tikv_client::proto::{errorpb, kvrpcpb};
use tikv_client::testutils::{Labels, Outcome, Rule};
use tikv_client::transaction::{LockOptions, LockWait, ReplicaRead};
use tikv_client::{Error, GrpcCode, Key, KvPair, TransactionOptions};

use super::txn::{abandoned_prewrite, client, cluster, put_all, remaining_locks, value};
use super::util::calls_of;

/// Appends a mark to the request source, to show where it runs in the chain.
#[derive(Debug)]
struct Mark;

impl Interceptor for Mark {
    fn before_send(&self, _method: &str, ctx: &mut kvrpcpb::Context) {
        ctx.request_source.push_str("+client");
    }
}

#[tokio::test]
async fn transaction_options_label_every_request() {
    let cluster = cluster().await;
    let client = client(&cluster).await.with_interceptor(Mark);
    put_all(&client, &[("a", "1"), ("m", "1")]).await;
    // Let the background commit of the secondary finish before the log is cleared.
    while remaining_locks(&cluster).await > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.clear_calls();

    let options = TransactionOptions::new_pessimistic()
        .priority(kvrpcpb::CommandPri::High)
        .resource_group_name("rg")
        .resource_group_tag(b"tag".to_vec())
        .request_source("src")
        .txn_source(7)
        .disk_full_opt(kvrpcpb::DiskFullOpt::AllowedOnAlmostFull);
    let mut txn = client.begin_with_options(options.clone()).await.unwrap();
    assert_eq!(txn.get("a").await.unwrap(), value("1"));
    txn.put("m", "2").await.unwrap();
    txn.put("z", "3").await.unwrap();
    txn.commit().await.unwrap();
    let snapshot = client.snapshot(client.current_timestamp().await.unwrap(), options);
    assert_eq!(snapshot.get("m").await.unwrap(), value("2"));

    let mut expected = Labels::default();
    expected.request_source = "src+client".into();
    expected.resource_group = "rg".into();
    expected.resource_group_tag = b"tag".to_vec();
    expected.txn_source = 7;
    expected.priority = kvrpcpb::CommandPri::High as i32;
    expected.disk_full_opt = kvrpcpb::DiskFullOpt::AllowedOnAlmostFull as i32;
    let calls: Vec<_> = cluster
        .calls()
        .into_iter()
        .filter(|c| c.store != 0)
        .collect();
    let methods: Vec<&str> = calls.iter().map(|c| c.method).collect();
    for wanted in ["KvGet", "KvPessimisticLock", "KvPrewrite", "KvCommit"] {
        assert!(
            methods.contains(&wanted),
            "{wanted} missing from {methods:?}"
        );
    }
    for call in calls {
        assert_eq!(call.labels, expected, "{}", call.method);
    }
}

#[tokio::test]
async fn lock_options_read_with_the_lock_and_skip_missing_keys() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("a", "1"), ("c", "3"), ("x", "9")]).await;

    let mut optimistic = client.begin_optimistic().await.unwrap();
    assert!(matches!(
        optimistic
            .lock_keys_with_options(["a"], LockOptions::default().return_values(true))
            .await,
        Err(Error::InvalidArgument(_))
    ));
    let mut fresh = client.begin_pessimistic().await.unwrap();
    assert!(
        matches!(
            fresh
                .lock_keys_with_options(["a"], LockOptions::default().lock_only_if_exists(true))
                .await,
            Err(Error::InvalidArgument(_))
        ),
        "a missing first key would leave no primary lock"
    );
    fresh.rollback().await.unwrap();

    let mut txn = client.begin_pessimistic().await.unwrap();
    cluster.clear_calls();
    let locked = txn
        .lock_keys_with_options(["x", "a", "b"], LockOptions::default().return_values(true))
        .await
        .unwrap();
    let summary: Vec<_> = locked
        .into_iter()
        .map(|l| (l.key, l.locked, l.exists, l.value))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Key::from("x"), true, Some(true), value("9")),
            (Key::from("a"), true, Some(true), value("1")),
            (Key::from("b"), true, Some(false), None),
        ]
    );
    let reads = cluster
        .calls()
        .iter()
        .filter(|c| c.method == "KvGet" || c.method == "KvBatchGet")
        .count();
    assert_eq!(reads, 0, "values come with the lock");

    let existence = txn
        .lock_keys_with_options(["c", "e"], LockOptions::default().check_existence(true))
        .await
        .unwrap();
    assert_eq!(
        existence
            .iter()
            .map(|l| (l.exists, l.value.clone()))
            .collect::<Vec<_>>(),
        vec![(Some(true), None), (Some(false), None)]
    );

    let only = txn
        .lock_keys_with_options(
            ["y", "x", "g"],
            LockOptions::default()
                .lock_only_if_exists(true)
                .wait(LockWait::NoWait),
        )
        .await
        .unwrap();
    assert_eq!(
        only.iter().map(|l| l.locked).collect::<Vec<_>>(),
        vec![false, true, false]
    );
    let locks = client
        .scan_locks(.., client.current_timestamp().await.unwrap())
        .await
        .unwrap();
    let mut locked_keys: Vec<Vec<u8>> = locks.into_iter().map(|l| l.key).collect();
    locked_keys.sort();
    let expected: Vec<Vec<u8>> = ["a", "b", "c", "e", "x"]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
    assert_eq!(locked_keys, expected, "g and y were not locked");

    // get_for_update reads through the lock as well.
    assert_eq!(txn.get_for_update("c").await.unwrap(), value("3"));
    txn.put("b", "2").await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(remaining_locks(&cluster).await, 0);
    let after = client.begin_optimistic().await.unwrap();
    assert_eq!(after.get("b").await.unwrap(), value("2"));
}

#[tokio::test]
async fn assertions_are_checked_at_prewrite_when_enabled() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("a", "1")]).await;
    let strict = TransactionOptions::new_optimistic()
        .assertion_level(kvrpcpb::AssertionLevel::Strict)
        .drop_check(tikv_client::transaction::DropCheck::Silent);

    let mut wrong = client.begin_with_options(strict.clone()).await.unwrap();
    wrong.put("a", "2").await.unwrap();
    wrong.set_assertion("a", kvrpcpb::Assertion::NotExist);
    match wrong.commit().await {
        Err(Error::AssertionFailed(failed)) => {
            assert_eq!(failed.key, b"a");
            assert_eq!(failed.assertion, kvrpcpb::Assertion::NotExist as i32);
        }
        other => panic!("expected an assertion failure, got {other:?}"),
    }

    let mut right = client.begin_with_options(strict).await.unwrap();
    right.put("a", "3").await.unwrap();
    right.put("n", "new").await.unwrap();
    right.set_assertion("a", kvrpcpb::Assertion::Exist);
    right.set_assertion("n", kvrpcpb::Assertion::NotExist);
    right.commit().await.unwrap();

    // With assertions off nothing is sent, so a wrong one does not matter.
    let mut off = client.begin_optimistic().await.unwrap();
    off.put("a", "4").await.unwrap();
    off.set_assertion("a", kvrpcpb::Assertion::NotExist);
    off.commit().await.unwrap();
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(reader.get("a").await.unwrap(), value("4"));
    assert_eq!(remaining_locks(&cluster).await, 0);
}

#[tokio::test]
async fn async_commit_is_linearizable_unless_causal_consistency_is_chosen() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    for (causal, key) in [(false, "a1"), (true, "a2")] {
        let options = TransactionOptions::new_optimistic()
            .use_async_commit(true)
            .causal_consistency(causal);
        let mut txn = client.begin_with_options(options).await.unwrap();
        txn.put(key, "v").await.unwrap();
        // A snapshot taken after the commit was asked for, before it returned.
        let observer = client.current_timestamp().await.unwrap();
        let commit_ts = txn.commit().await.unwrap().unwrap();
        if causal {
            assert!(
                commit_ts <= observer,
                "causal: the commit ts need not pass later snapshots ({commit_ts:?} vs {observer:?})"
            );
        } else {
            assert!(
                commit_ts > observer,
                "linearizable: {commit_ts:?} vs {observer:?}"
            );
            let snapshot = client.snapshot(observer, TransactionOptions::default());
            assert_eq!(snapshot.get(key).await.unwrap(), None);
        }
    }
}

#[tokio::test]
async fn async_commit_waits_for_a_new_leader_to_sync_its_max_ts() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    cluster.set_max_ts_sync_delay(Duration::from_millis(300));
    // Causal consistency leaves min_commit_ts to TiKV's max_ts alone.
    let options = TransactionOptions::new_optimistic()
        .use_async_commit(true)
        .causal_consistency(true);
    let mut writer = client.begin_with_options(options).await.unwrap();
    // A later snapshot reads "k" on the old leader, raising that store's max_ts only.
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(reader.get("k").await.unwrap(), None);
    let region = cluster.region_of_txn_key(b"k").unwrap();
    let old = cluster.leader_of(region.id).unwrap();
    let new = cluster.store_ids().into_iter().find(|s| *s != old).unwrap();
    cluster.transfer_leader(region.id, new).unwrap();
    cluster.clear_calls();

    writer.put("k", "v").await.unwrap();
    let commit_ts = writer.commit().await.unwrap().unwrap();
    let outcomes: Vec<Outcome> = calls_of(&cluster, "KvPrewrite")
        .into_iter()
        .map(|c| c.outcome)
        .collect();
    assert!(
        outcomes.contains(&Outcome::RegionError("MaxTimestampNotSynced")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes.last(), Some(&Outcome::Ok));
    // The synced max_ts covers the reader: its snapshot cannot see the commit.
    assert!(commit_ts > reader.start_timestamp(), "{commit_ts:?}");
    assert_eq!(reader.get("k").await.unwrap(), None);
}

#[tokio::test]
async fn a_first_lock_over_several_regions_takes_the_primary_first() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let primary_region = cluster.region_of_txn_key(b"a").unwrap().id;
    let mut holder = client.begin_pessimistic().await.unwrap();
    holder.lock_keys(["a"]).await.unwrap();

    // The primary is taken: the other key's region is never asked.
    let options = TransactionOptions::new_pessimistic().lock_wait(LockWait::NoWait);
    let mut txn = client.begin_with_options(options).await.unwrap();
    cluster.clear_calls();
    let err = txn.lock_keys(["a", "m"]).await.unwrap_err();
    assert!(matches!(err, Error::LockWaitTimeout(_)), "{err:?}");
    let regions: Vec<u64> = calls_of(&cluster, "KvPessimisticLock")
        .into_iter()
        .map(|c| c.region)
        .collect();
    assert_eq!(regions, vec![primary_region]);

    // Once free, a slow primary region still answers before the other is asked.
    holder.rollback().await.unwrap();
    cluster.add_rule(
        Rule::on("KvPessimisticLock")
            .key_prefix("a")
            .times(1)
            .delay(Duration::from_millis(200)),
    );
    cluster.clear_calls();
    txn.lock_keys(["a", "m"]).await.unwrap();
    let regions: Vec<u64> = calls_of(&cluster, "KvPessimisticLock")
        .into_iter()
        .map(|c| c.region)
        .collect();
    assert_eq!(regions.len(), 2, "{regions:?}");
    assert_eq!(regions[0], primary_region, "{regions:?}");
    txn.rollback().await.unwrap();
}

/// Keys spread over every region: `a000`..`z..`.
fn spread(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{}{:03}", (b'a' + (i % 26) as u8) as char, i))
        .collect()
}

#[tokio::test]
async fn scan_streams_merge_own_writes_page_by_page_in_both_directions() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let keys = spread(700);
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for chunk in keys.chunks(200) {
        let mut txn = client.begin_optimistic().await.unwrap();
        for k in chunk {
            txn.put(k.clone(), format!("v{k}")).await.unwrap();
            model.insert(k.as_bytes().to_vec(), format!("v{k}").into_bytes());
        }
        txn.commit().await.unwrap();
    }

    let mut txn = client.begin_optimistic().await.unwrap();
    for (i, k) in keys.iter().enumerate() {
        if i % 7 == 0 {
            txn.delete(k.clone()).await.unwrap();
            model.remove(k.as_bytes());
        } else if i % 11 == 0 {
            let mine = format!("{k}-mine");
            txn.put(mine.clone(), "own").await.unwrap();
            model.insert(mine.into_bytes(), b"own".to_vec());
        }
    }
    let expected: Vec<KvPair> = model
        .iter()
        .map(|(k, v)| KvPair::new(k.clone(), v.clone()))
        .collect();

    cluster.clear_calls();
    let forward: Vec<KvPair> = txn.scan_stream(..).try_collect().await.unwrap();
    assert_eq!(forward, expected);
    let scans = cluster
        .calls()
        .iter()
        .filter(|c| c.method == "KvScan")
        .count();
    assert!(scans >= 700 / 256, "pages of 256 pairs: {scans} scans");

    let mut reverse: Vec<KvPair> = txn.scan_stream_reverse(..).try_collect().await.unwrap();
    reverse.reverse();
    assert_eq!(reverse, expected);

    let keys_only: Vec<Key> = txn
        .scan_keys_stream_reverse("c".."q")
        .try_collect()
        .await
        .unwrap();
    let mut want: Vec<Key> = model
        .keys()
        .filter(|k| k.as_slice() >= b"c".as_slice() && k.as_slice() < b"q".as_slice())
        .map(|k| Key::from(k.clone()))
        .collect();
    want.reverse();
    assert_eq!(keys_only, want);

    // The eager scans agree, including limits beyond one scan request.
    assert_eq!(txn.scan(.., 20_000).await.unwrap(), expected);
    let first: Vec<KvPair> = txn.scan(.., 300).await.unwrap();
    assert_eq!(first, expected[..300]);

    // Polling lazily reads only the first page (256 pairs, over the first regions).
    cluster.clear_calls();
    let mut stream = Box::pin(txn.scan_stream(..));
    let head = stream.try_next().await.unwrap().unwrap();
    assert_eq!(head, expected[0]);
    let lazy = cluster
        .calls()
        .iter()
        .filter(|c| c.method == "KvScan")
        .count();
    assert!(lazy < scans, "{lazy} scans for one pair, {scans} for all");

    let snapshot = client.snapshot(txn.start_timestamp(), TransactionOptions::default());
    let seen: Vec<KvPair> = snapshot.scan_stream("b".."e").try_collect().await.unwrap();
    let mut in_range: Vec<&String> = keys
        .iter()
        .filter(|k| k.as_str() >= "b" && k.as_str() < "e")
        .collect();
    in_range.sort();
    let committed: Vec<KvPair> = in_range
        .into_iter()
        .map(|k| KvPair::new(k.clone(), format!("v{k}")))
        .collect();
    assert_eq!(seen, committed);
}

#[tokio::test]
async fn scan_locks_and_cleanup_locks_work_on_a_range() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let start = client.current_timestamp().await.unwrap().version();
    abandoned_prewrite(&cluster, &["c", "e", "k", "w"], start, 10, false).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let now = client.current_timestamp().await.unwrap();

    let before = tikv_client::Timestamp::from_version(start - 1);
    assert!(client.scan_locks(.., before).await.unwrap().is_empty());
    let all = client.scan_locks(.., now).await.unwrap();
    let keys: Vec<&[u8]> = all.iter().map(|l| l.key.as_slice()).collect();
    assert_eq!(keys, vec![&b"c"[..], b"e", b"k", b"w"]);
    assert!(all.iter().all(|l| l.primary_lock == b"c"));

    // The locks inside the range are cleaned; checking the expired primary rolled it back
    // too, while the secondary outside the range stays.
    let cleaned = client.cleanup_locks("d".."l", now).await.unwrap();
    assert_eq!(cleaned, 2);
    let left: Vec<Vec<u8>> = client
        .scan_locks(.., now)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert_eq!(left, vec![b"w".to_vec()]);
    assert_eq!(client.cleanup_locks(.., now).await.unwrap(), 1);
    assert_eq!(remaining_locks(&cluster).await, 0);
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(reader.get("e").await.unwrap(), None, "rolled back");
}

#[tokio::test]
async fn resent_requests_are_marked_as_retries() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    cluster.add_rule(Rule::on("KvPrewrite").nth(1).region_error(errorpb::Error {
        server_is_busy: Some(Default::default()),
        ..Default::default()
    }));
    cluster.add_rule(
        // A cut connection: the commit may have arrived, so the resend is a retry.
        Rule::on("KvCommit").nth(1).drop_connection(),
    );
    let mut txn = client.begin_optimistic().await.unwrap();
    txn.put("a", "1").await.unwrap();
    txn.commit().await.unwrap();
    let flags = |method: &str| -> Vec<bool> {
        cluster
            .calls()
            .iter()
            .filter(|c| c.method == method)
            .map(|c| c.labels.is_retry_request)
            .collect()
    };
    assert_eq!(flags("KvPrewrite"), vec![false, true], "after ServerIsBusy");
    assert_eq!(flags("KvCommit"), vec![false, true], "after a failed RPC");
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(reader.get("a").await.unwrap(), value("1"));
}

#[tokio::test]
async fn a_follower_without_the_region_sends_the_read_to_the_leader() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("e", "2")]).await;
    while remaining_locks(&cluster).await > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let missing = errorpb::Error {
        message: "region not found".into(),
        region_not_found: Some(errorpb::RegionNotFound { region_id: 0 }),
        ..Default::default()
    };
    cluster.add_rule(Rule::on("KvGet").times(1).region_error(missing));
    cluster.clear_calls();
    let options = TransactionOptions::new_optimistic().replica_read(ReplicaRead::Follower);
    let snapshot = client.snapshot(client.current_timestamp().await.unwrap(), options);
    assert_eq!(snapshot.get("e").await.unwrap(), value("2"));
    let reads = calls_of(&cluster, "KvGet");
    assert_eq!(reads.len(), 2, "{reads:?}");
    let leader = cluster.leader_of(reads[0].region);
    assert_eq!(reads[0].outcome, Outcome::RegionError("RegionNotFound"));
    assert_ne!(Some(reads[0].store), leader, "first sent to a follower");
    assert_eq!(Some(reads[1].store), leader, "then to the leader");
    assert!(!reads[1].labels.replica_read && reads[1].outcome == Outcome::Ok);
}

#[tokio::test]
async fn follower_reads_are_served_by_followers() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("a", "1"), ("e", "2"), ("k", "3"), ("x", "4")]).await;
    while remaining_locks(&cluster).await > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.clear_calls();
    let options = TransactionOptions::new_optimistic().replica_read(ReplicaRead::Follower);
    let snapshot = client.snapshot(client.current_timestamp().await.unwrap(), options.clone());
    assert_eq!(snapshot.get("e").await.unwrap(), value("2"));
    assert_eq!(snapshot.batch_get(["a", "k", "zz"]).await.unwrap().len(), 2);
    assert_eq!(snapshot.scan(.., 10).await.unwrap().len(), 4);
    let mut txn = client.begin_with_options(options).await.unwrap();
    assert_eq!(txn.get("x").await.unwrap(), value("4"));
    txn.put("x", "5").await.unwrap();
    txn.commit().await.unwrap();

    let reads: Vec<_> = cluster
        .calls()
        .into_iter()
        .filter(|c| matches!(c.method, "KvGet" | "KvBatchGet" | "KvScan"))
        .collect();
    assert!(reads.len() >= 4);
    for call in &reads {
        assert!(call.labels.replica_read, "{call:?}");
        assert_ne!(
            Some(call.store),
            cluster.leader_of(call.region),
            "{} served by the leader",
            call.method
        );
    }
    let writes = cluster
        .calls()
        .into_iter()
        .filter(|c| c.method == "KvPrewrite");
    for call in writes {
        assert!(!call.labels.replica_read);
        assert_eq!(Some(call.store), cluster.leader_of(call.region));
    }
}

#[tokio::test]
async fn stale_reads_fall_back_to_the_leader_when_a_replica_is_behind() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let keys = ["a", "c", "e", "g", "i", "k", "m", "o", "q"];
    let pairs: Vec<(&str, &str)> = keys.iter().map(|k| (*k, "old")).collect();
    put_all(&client, &pairs).await;
    while remaining_locks(&cluster).await > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stale = TransactionOptions::new_optimistic().stale_read(true);
    assert!(matches!(
        client.begin_with_options(stale.clone()).await,
        Err(Error::InvalidArgument(_))
    ));

    // Replicas are caught up: any peer serves, and nothing is refused.
    cluster.clear_calls();
    let ts = client.current_timestamp().await.unwrap();
    let snapshot = client.snapshot(ts, stale.clone());
    for key in keys {
        assert_eq!(snapshot.get(key).await.unwrap(), value("old"));
    }
    let gets = calls_of(&cluster, "KvGet");
    assert!(gets
        .iter()
        .all(|c| c.labels.stale_read && c.outcome == Outcome::Ok));
    assert!(
        gets.iter()
            .any(|c| Some(c.store) != cluster.leader_of(c.region)),
        "followers take part"
    );

    // Replicas an hour behind: followers refuse, the leader answers the same read.
    cluster.set_safe_ts_lag(Duration::from_secs(3600));
    cluster.clear_calls();
    let snapshot = client.snapshot(client.current_timestamp().await.unwrap(), stale);
    for key in keys {
        assert_eq!(snapshot.get(key).await.unwrap(), value("old"));
    }
    let gets = calls_of(&cluster, "KvGet");
    let refused: Vec<_> = gets
        .iter()
        .filter(|c| c.outcome == Outcome::RegionError("DataIsNotReady"))
        .collect();
    assert!(!refused.is_empty(), "{gets:?}");
    for call in refused {
        assert_ne!(Some(call.store), cluster.leader_of(call.region));
    }
    let fallbacks = gets.iter().filter(|c| !c.labels.stale_read).count();
    assert!(fallbacks >= 1);
    assert!(gets
        .iter()
        .filter(|c| !c.labels.stale_read)
        .all(|c| Some(c.store) == cluster.leader_of(c.region) && c.outcome == Outcome::Ok));
}

#[tokio::test]
async fn reads_below_the_gc_safe_point_are_refused() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("a", "1")]).await;
    let old = client.current_timestamp().await.unwrap();
    let long_running = client.begin_optimistic().await.unwrap();
    let safe_point = client.current_timestamp().await.unwrap();
    client.gc(safe_point).await.unwrap();

    let stale = client.snapshot(old, TransactionOptions::default());
    let refused = |r: tikv_client::Result<_>| {
        matches!(r, Err(Error::TxnAbortedByGc { start_ts, safe_point: sp })
            if start_ts == old.version() && sp == safe_point.version())
    };
    assert!(refused(stale.get("a").await.map(|_| ())));
    assert!(refused(stale.batch_get(["a"]).await.map(|_| ())));
    assert!(refused(stale.scan(.., 10).await.map(|_| ())));
    assert!(matches!(
        long_running.get("a").await,
        Err(Error::TxnAbortedByGc { .. })
    ));
    // At or above the safe point reads go on; a fresh client learns the safe point from PD.
    let at = client.snapshot(safe_point, TransactionOptions::default());
    assert_eq!(at.get("a").await.unwrap(), value("1"));
    let other = super::txn::client(&cluster).await;
    assert!(matches!(
        other
            .snapshot(old, TransactionOptions::default())
            .get("a")
            .await,
        Err(Error::TxnAbortedByGc { .. })
    ));
    assert!(!calls_of(&cluster, "GetGCState").is_empty());

    // PD before v9 has no GetGCState: the GC safe point stands in for the txn safe point.
    cluster.add_rule(Rule::on("GetGCState").status(GrpcCode::Unimplemented, "unknown method"));
    let older = super::txn::client(&cluster).await;
    assert!(matches!(
        older
            .snapshot(old, TransactionOptions::default())
            .get("a")
            .await,
        Err(Error::TxnAbortedByGc { .. })
    ));
    assert!(!calls_of(&cluster, "GetGCSafePoint").is_empty());
}
