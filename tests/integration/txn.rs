//! TransactionClient end to end against the mock cluster over real gRPC, on many regions:
//! isolation, conflicts, lock resolution of abandoned and half-committed transactions, GC,
//! faults, and a bank workload.

use std::sync::Arc;
use std::time::Duration;

use tikv_client::proto::{errorpb, kvrpcpb};
use tikv_client::testutils::{MockCluster, Rule};
use tikv_client::{Error, Key, TransactionClient, TransactionOptions};

use super::util::{channel, peer_on};

const SPLITS: [&str; 8] = ["b", "d", "f", "h", "j", "l", "n", "p"];

pub(crate) async fn cluster() -> MockCluster {
    MockCluster::builder()
        .split_txn(SPLITS)
        .start()
        .await
        .unwrap()
}

pub(crate) async fn client(cluster: &MockCluster) -> TransactionClient {
    TransactionClient::new(vec![cluster.pd_endpoint()])
        .await
        .unwrap()
}

pub(crate) async fn put_all(client: &TransactionClient, pairs: &[(&str, &str)]) {
    let mut txn = client.begin_optimistic().await.unwrap();
    for (k, v) in pairs {
        txn.put(*k, *v).await.unwrap();
    }
    txn.commit().await.unwrap();
}

pub(crate) fn value(v: &str) -> Option<Vec<u8>> {
    Some(v.as_bytes().to_vec())
}

#[tokio::test]
async fn read_your_writes_and_snapshot_isolation() {
    let cluster = cluster().await;
    assert_eq!(cluster.regions().len(), 9);
    let client = client(&cluster).await;
    put_all(&client, &[("a", "1"), ("c", "1"), ("o", "1")]).await;

    let mut writer = client.begin_optimistic().await.unwrap();
    let reader = client.begin_optimistic().await.unwrap();
    writer.put("a", "2").await.unwrap();
    writer.delete("c").await.unwrap();
    writer.put("z", "new").await.unwrap();
    assert_eq!(writer.get("a").await.unwrap(), value("2"), "own write");
    assert_eq!(writer.get("c").await.unwrap(), None, "own delete");
    let keys: Vec<Key> = writer.scan_keys(.., 10).await.unwrap();
    assert_eq!(keys, vec![Key::from("a"), Key::from("o"), Key::from("z")]);
    let rev = writer.scan_reverse("a".."z", 10).await.unwrap();
    assert_eq!(
        rev.iter().map(|p| p.key.clone()).collect::<Vec<_>>(),
        vec![Key::from("o"), Key::from("a")]
    );
    let commit_ts = writer.commit().await.unwrap().unwrap();
    assert!(commit_ts > reader.start_timestamp());

    // The reader started before the commit: no dirty, no non-repeatable reads.
    assert_eq!(reader.get("a").await.unwrap(), value("1"));
    assert_eq!(reader.get("c").await.unwrap(), value("1"));
    assert_eq!(reader.batch_get(["a", "c", "z"]).await.unwrap().len(), 2);
    let later = client.begin_optimistic().await.unwrap();
    assert_eq!(later.get("a").await.unwrap(), value("2"));
    assert_eq!(
        later.get("z").await.unwrap(),
        value("new"),
        "secondaries resolve for readers"
    );
    assert_eq!(
        later.batch_get_values(["c", "o"]).await.unwrap(),
        vec![None, value("1")]
    );
    let snap = client.snapshot(reader.start_timestamp(), TransactionOptions::default());
    assert_eq!(
        snap.scan(.., 10).await.unwrap().len(),
        3,
        "an old snapshot sees the old data"
    );
}

#[tokio::test]
async fn conflicts_are_reported_and_lost_updates_prevented() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("counter", "0")]).await;
    let mut t1 = client.begin_optimistic().await.unwrap();
    let mut t2 = client.begin_optimistic().await.unwrap();
    let v1 = t1.get("counter").await.unwrap();
    let v2 = t2.get("counter").await.unwrap();
    assert_eq!(v1, v2);
    t1.put("counter", "1").await.unwrap();
    t2.put("counter", "1").await.unwrap();
    let committed = t1.commit().await.unwrap().unwrap();
    let err = t2.commit().await.unwrap_err();
    let Error::WriteConflict(c) = &err else {
        panic!("expected a write conflict, got {err:?}");
    };
    assert_eq!(c.key, b"counter");
    assert_eq!(c.conflict_commit_ts, committed.version());
    assert!(err.is_retryable());

    // Inserting an existing key.
    let mut t3 = client.begin_optimistic().await.unwrap();
    t3.insert("counter", "x").await.unwrap();
    assert!(matches!(t3.commit().await, Err(Error::KeyExists(_))));

    // Write skew is allowed under snapshot isolation.
    put_all(&client, &[("a", "on"), ("b", "on")]).await;
    let mut x = client.begin_optimistic().await.unwrap();
    let mut y = client.begin_optimistic().await.unwrap();
    assert_eq!(x.get("b").await.unwrap(), value("on"));
    assert_eq!(y.get("a").await.unwrap(), value("on"));
    x.put("a", "off").await.unwrap();
    y.put("b", "off").await.unwrap();
    x.commit().await.unwrap();
    y.commit().await.unwrap();
}

#[tokio::test]
async fn finished_transactions_refuse_more_work_and_rollback_discards() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let mut txn = client.begin_optimistic().await.unwrap();
    txn.put("k", "v").await.unwrap();
    txn.rollback().await.unwrap();
    assert!(matches!(
        txn.put("k", "v").await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        client
            .begin_optimistic()
            .await
            .unwrap()
            .get("k")
            .await
            .unwrap(),
        None
    );
    let mut empty = client.begin_optimistic().await.unwrap();
    assert_eq!(empty.commit().await.unwrap(), None, "nothing to write");
    let snap = client.snapshot(
        client.current_timestamp().await.unwrap(),
        TransactionOptions::default(),
    );
    assert!(matches!(
        snap.scan(.., 10241).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        snap.scan("z".."a", 10).await,
        Err(Error::InvalidArgument(_))
    ));
}

/// A raw stub aimed at the leader of the region holding a transactional key.
pub(crate) async fn stub_for(
    cluster: &MockCluster,
    key: &[u8],
) -> (
    tikv_client::proto::tikvpb::tikv_client::TikvClient<tonic::transport::Channel>,
    kvrpcpb::Context,
) {
    let encoded = tikv_client::kv::memcomparable::encode(key);
    let region = cluster
        .regions()
        .into_iter()
        .find(|r| r.start_key <= encoded && (r.end_key.is_empty() || encoded < r.end_key))
        .unwrap();
    let leader = cluster.leader_of(region.id).unwrap();
    let idx = cluster
        .store_ids()
        .iter()
        .position(|s| *s == leader)
        .unwrap();
    let client = tikv_client::proto::tikvpb::tikv_client::TikvClient::new(
        channel(&cluster.store_addrs()[idx]).await,
    );
    let ctx = kvrpcpb::Context {
        region_id: region.id,
        region_epoch: region.region_epoch,
        peer: Some(peer_on(&region, leader)),
        ..Default::default()
    };
    (client, ctx)
}

/// Prewrites `keys` (the first is the primary) as a transaction that then vanishes.
pub(crate) async fn abandoned_prewrite(
    cluster: &MockCluster,
    keys: &[&str],
    start: u64,
    ttl_ms: u64,
    async_commit: bool,
) {
    for key in keys {
        prewrite_member(
            cluster,
            key,
            keys[0],
            &keys[1..],
            start,
            ttl_ms,
            async_commit,
        )
        .await;
    }
}

/// Prewrites `key` ("abandoned") as one member of a transaction with this primary and these
/// secondaries, listed on the primary when `async_commit`.
async fn prewrite_member(
    cluster: &MockCluster,
    key: &str,
    primary: &str,
    secondaries: &[&str],
    start: u64,
    ttl_ms: u64,
    async_commit: bool,
) {
    let (mut stub, ctx) = stub_for(cluster, key.as_bytes()).await;
    let resp = stub
        .kv_prewrite(kvrpcpb::PrewriteRequest {
            context: Some(ctx),
            mutations: vec![kvrpcpb::Mutation {
                op: kvrpcpb::Op::Put as i32,
                key: key.as_bytes().to_vec(),
                value: b"abandoned".to_vec(),
                ..Default::default()
            }],
            primary_lock: primary.as_bytes().to_vec(),
            start_version: start,
            lock_ttl: ttl_ms,
            txn_size: secondaries.len() as u64 + 1,
            use_async_commit: async_commit,
            secondaries: if async_commit && key == primary {
                secondaries.iter().map(|k| k.as_bytes().to_vec()).collect()
            } else {
                Vec::new()
            },
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        resp.errors.is_empty() && resp.region_error.is_none(),
        "{resp:?}"
    );
}

pub(crate) async fn remaining_locks(cluster: &MockCluster) -> usize {
    let mut total = 0;
    for region in cluster.regions() {
        let leader = cluster.leader_of(region.id).unwrap();
        let idx = cluster
            .store_ids()
            .iter()
            .position(|s| *s == leader)
            .unwrap();
        let mut stub = tikv_client::proto::tikvpb::tikv_client::TikvClient::new(
            channel(&cluster.store_addrs()[idx]).await,
        );
        let resp = stub
            .kv_scan_lock(kvrpcpb::ScanLockRequest {
                context: Some(kvrpcpb::Context {
                    region_id: region.id,
                    region_epoch: region.region_epoch,
                    peer: Some(peer_on(&region, leader)),
                    ..Default::default()
                }),
                max_version: u64::MAX,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        total += resp.locks.len();
    }
    total
}

#[tokio::test]
async fn an_abandoned_transaction_is_rolled_back_by_readers_after_its_ttl() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("a", "old"), ("m", "old")]).await;
    let start = client.current_timestamp().await.unwrap().version();
    abandoned_prewrite(&cluster, &["a", "m"], start, 100, false).await;
    assert_eq!(remaining_locks(&cluster).await, 2);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.get("m").await.unwrap(),
        value("old"),
        "the secondary's lock is rolled back via its primary"
    );
    assert_eq!(reader.get("a").await.unwrap(), value("old"));
    // A writer can now write the keys.
    put_all(&client, &[("a", "new"), ("m", "new")]).await;
    assert_eq!(remaining_locks(&cluster).await, 0);
}

#[tokio::test]
async fn a_committed_primary_rolls_its_secondaries_forward() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let start = client.current_timestamp().await.unwrap().version();
    abandoned_prewrite(&cluster, &["c", "k"], start, 60_000, false).await;
    let commit = client.current_timestamp().await.unwrap().version();
    let (mut stub, ctx) = stub_for(&cluster, b"c").await;
    let resp = stub
        .kv_commit(kvrpcpb::CommitRequest {
            context: Some(ctx),
            start_version: start,
            keys: vec![b"c".to_vec()],
            commit_version: commit,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.error.is_none());
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.get("k").await.unwrap(),
        value("abandoned"),
        "committed with its primary"
    );
    assert_eq!(remaining_locks(&cluster).await, 0);
}

#[tokio::test]
async fn orphaned_async_commit_secondaries_are_resolved() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let start = client.current_timestamp().await.unwrap().version();
    abandoned_prewrite(&cluster, &["e", "g", "q"], start, 50, true).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reader = client.begin_optimistic().await.unwrap();
    // Every key was prewritten: the async-commit transaction counts as committed.
    assert_eq!(reader.get("g").await.unwrap(), value("abandoned"));
    assert_eq!(reader.get("q").await.unwrap(), value("abandoned"));
    assert_eq!(remaining_locks(&cluster).await, 0);
}

/// Prewrites `key` in an async-commit transaction with primary "e" and secondaries "g" and
/// "q"; `async_lock` false writes a plain lock.
async fn async_member(cluster: &MockCluster, key: &str, start: u64, async_lock: bool) {
    prewrite_member(cluster, key, "e", &["g", "q"], start, 50, async_lock).await;
}

#[tokio::test]
async fn an_async_commit_transaction_missing_a_secondary_is_rolled_back() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("g", "old")]).await;
    let start = client.current_timestamp().await.unwrap().version();
    // "q" was never prewritten: the transaction cannot have committed.
    async_member(&cluster, "e", start, true).await;
    async_member(&cluster, "g", start, true).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reader = client.begin_optimistic().await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.get("g")).await;
    assert_eq!(read.expect("resolved in time").unwrap(), value("old"));
    assert_eq!(reader.get("e").await.unwrap(), None);
    assert_eq!(remaining_locks(&cluster).await, 0);
    let checks = super::util::calls_of(&cluster, "KvCheckSecondaryLocks");
    assert!(!checks.is_empty(), "the secondaries were checked");
}

#[tokio::test]
async fn a_plain_lock_among_async_commit_secondaries_forces_a_sync_commit_check() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("g", "old")]).await;
    let start = client.current_timestamp().await.unwrap().version();
    async_member(&cluster, "e", start, true).await;
    async_member(&cluster, "g", start, false).await;
    async_member(&cluster, "q", start, true).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A plain lock means the transaction fell back to 2PC: its expired primary decides, and
    // the primary is rolled back (only force_sync_commit lets TiKV roll back an async lock).
    let reader = client.begin_optimistic().await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.get("q")).await;
    assert_eq!(read.expect("resolved in time").unwrap(), None);
    assert_eq!(reader.get("g").await.unwrap(), value("old"));
    assert_eq!(remaining_locks(&cluster).await, 0);
}

#[tokio::test]
async fn a_prewrite_conflicts_with_a_younger_lock_and_resolves_an_older_one() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let mut txn = client.begin_optimistic().await.unwrap();
    txn.put("k", "mine").await.unwrap();
    let younger = client.current_timestamp().await.unwrap().version();
    abandoned_prewrite(&cluster, &["k"], younger, 60_000, false).await;
    cluster.clear_calls();
    let err = txn.commit().await.unwrap_err();
    let Error::WriteConflict(conflict) = &err else {
        panic!("expected a write conflict, got {err:?}");
    };
    assert_eq!(conflict.conflict_ts, younger);
    assert!(
        super::util::calls_of(&cluster, "KvCheckTxnStatus").is_empty(),
        "a younger lock is not resolved"
    );

    let older = client.current_timestamp().await.unwrap().version();
    abandoned_prewrite(&cluster, &["m"], older, 10, false).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut txn = client.begin_optimistic().await.unwrap();
    txn.put("m", "mine").await.unwrap();
    txn.commit().await.unwrap();
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(reader.get("m").await.unwrap(), value("mine"));
}

#[tokio::test]
async fn a_read_retried_past_locks_names_them_as_committed_or_resolved() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    // Transaction a: its primary "e" committed, its secondary "g" still locked.
    let a = client.current_timestamp().await.unwrap().version();
    abandoned_prewrite(&cluster, &["e", "g"], a, 60_000, false).await;
    let commit = client.current_timestamp().await.unwrap().version();
    let (mut stub, ctx) = stub_for(&cluster, b"e").await;
    stub.kv_commit(kvrpcpb::CommitRequest {
        context: Some(ctx),
        start_version: a,
        keys: vec![b"e".to_vec()],
        commit_version: commit,
        ..Default::default()
    })
    .await
    .unwrap();
    // Transaction b: an expired lock on "i" (its primary, rolled back by the reader).
    let b = client.current_timestamp().await.unwrap().version();
    abandoned_prewrite(&cluster, &["i"], b, 10, false).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let reader = client.begin_optimistic().await.unwrap();
    cluster.clear_calls();
    assert_eq!(reader.get("g").await.unwrap(), value("abandoned"));
    assert_eq!(reader.get("i").await.unwrap(), None);
    let gets = super::util::calls_of(&cluster, "KvGet");
    assert!(
        gets.iter().any(|c| c.labels.committed_locks == vec![a]),
        "a committed before the reader: {gets:?}"
    );
    assert!(
        gets.iter().any(|c| c.labels.resolved_locks == vec![b]),
        "b rolled back: {gets:?}"
    );
}

#[tokio::test]
async fn a_lock_whose_primary_was_never_written_is_rolled_back_once_expired() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("q", "old")]).await;
    let start = client.current_timestamp().await.unwrap().version();
    // A secondary whose primary "p" was never prewritten: CheckTxnStatus finds nothing.
    prewrite_member(&cluster, "q", "p", &["q"], start, 10, false).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reader = client.begin_optimistic().await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.get("q")).await;
    assert_eq!(read.expect("resolved in time").unwrap(), value("old"));
    assert_eq!(remaining_locks(&cluster).await, 0);
}

#[tokio::test]
async fn a_live_lock_makes_readers_wait() {
    let cluster = Arc::new(cluster().await);
    let client = client(&cluster).await;
    let start = client.current_timestamp().await.unwrap().version();
    abandoned_prewrite(&cluster, &["w"], start, 60_000, false).await;
    let committer = {
        let cluster = cluster.clone();
        let client = client.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let commit = client.current_timestamp().await.unwrap().version();
            let (mut stub, ctx) = stub_for(&cluster, b"w").await;
            stub.kv_commit(kvrpcpb::CommitRequest {
                context: Some(ctx),
                start_version: start,
                keys: vec![b"w".to_vec()],
                commit_version: commit,
                ..Default::default()
            })
            .await
            .unwrap();
        })
    };
    let reader = client.begin_optimistic().await.unwrap();
    // The reader started before the commit: it waits for the lock, then reads the old (absent) value.
    assert_eq!(reader.get("w").await.unwrap(), None);
    committer.await.unwrap();
    assert_eq!(
        client
            .begin_optimistic()
            .await
            .unwrap()
            .get("w")
            .await
            .unwrap(),
        value("abandoned")
    );
}

#[tokio::test]
async fn gc_resolves_old_locks_and_advances_the_safe_point() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let start = client.current_timestamp().await.unwrap().version();
    abandoned_prewrite(&cluster, &["a", "i", "x"], start, 10, false).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let safe_point = client.current_timestamp().await.unwrap();
    let new = client.gc(safe_point).await.unwrap();
    assert_eq!(new, safe_point);
    assert_eq!(remaining_locks(&cluster).await, 0);
    let pd = tikv_client::pd::PdClient::connect(&[cluster.pd_endpoint()], &Default::default())
        .await
        .unwrap();
    assert_eq!(pd.get_gc_safe_point().await.unwrap(), safe_point.version());
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
async fn region_errors_during_prewrite_and_commit_are_survived() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("a", "0")]).await;
    cluster.add_rule(
        Rule::on("KvPrewrite")
            .nth(1)
            .region_error(region_error(|e| e.stale_command = Some(Default::default()))),
    );
    cluster.add_rule(Rule::on("KvCommit").nth(1).region_error(region_error(|e| {
        e.region_not_found = Some(Default::default())
    })));
    let mut txn = client.begin_optimistic().await.unwrap();
    txn.put("a", "1").await.unwrap();
    txn.put("m", "1").await.unwrap();
    cluster.split_txn("c");
    txn.commit().await.unwrap();
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.batch_get_values(["a", "m"]).await.unwrap(),
        vec![value("1"), value("1")]
    );
}

#[tokio::test]
async fn bank_transfers_keep_the_total_under_faults() {
    let cluster = Arc::new(
        MockCluster::builder()
            .split_txn(["acct03", "acct06"])
            .seed(42)
            .start()
            .await
            .unwrap(),
    );
    let client = client(&cluster).await;
    let accounts: Vec<String> = (0..10).map(|i| format!("acct{i:02}")).collect();
    let pairs: Vec<(&str, &str)> = accounts.iter().map(|a| (a.as_str(), "100")).collect();
    put_all(&client, &pairs).await;
    cluster.add_rule(
        Rule::on("*")
            .probability(0.05)
            .region_error(region_error(|e| e.stale_command = Some(Default::default()))),
    );
    cluster.add_rule(
        Rule::on("*")
            .probability(0.03)
            .region_error(region_error(|e| {
                e.region_not_found = Some(Default::default())
            })),
    );

    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let client = client.clone();
            let accounts = accounts.clone();
            tokio::spawn(async move {
                let mut rng = t * 7919 + 1;
                let mut done = 0;
                while done < 65 {
                    rng = rng
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let from = &accounts[(rng >> 33) as usize % 10];
                    let to = &accounts[(rng >> 17) as usize % 10];
                    if from == to {
                        continue;
                    }
                    let mut txn = client.begin_optimistic().await.unwrap();
                    let a: i64 = String::from_utf8(txn.get(from.as_str()).await.unwrap().unwrap())
                        .unwrap()
                        .parse()
                        .unwrap();
                    let b: i64 = String::from_utf8(txn.get(to.as_str()).await.unwrap().unwrap())
                        .unwrap()
                        .parse()
                        .unwrap();
                    txn.put(from.as_str(), (a - 1).to_string()).await.unwrap();
                    txn.put(to.as_str(), (b + 1).to_string()).await.unwrap();
                    match txn.commit().await {
                        Ok(_) => done += 1,
                        Err(Error::WriteConflict(_)) => {}
                        Err(e) => panic!("transfer failed: {e}"),
                    }
                }
                done
            })
        })
        .collect();
    let mut transfers = 0;
    for task in tasks {
        transfers += task.await.unwrap();
    }
    assert!(transfers >= 500, "{transfers}");
    cluster.clear_rules();
    let reader = client.begin_optimistic().await.unwrap();
    let balances = reader.scan("acct".."acct~", 100).await.unwrap();
    let total: i64 = balances
        .iter()
        .map(|p| {
            String::from_utf8(p.value.clone())
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert_eq!(balances.len(), 10);
    assert_eq!(total, 1000, "money is neither created nor destroyed");
    // Secondaries commit in the background; give them a moment, then no lock may remain.
    let mut locks = usize::MAX;
    for _ in 0..50 {
        locks = remaining_locks(&cluster).await;
        if locks == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(locks, 0, "no lock left behind");
}

#[tokio::test]
async fn pessimistic_transactions_serialize_on_locked_keys() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("counter", "0")]).await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut txn = client.begin_pessimistic().await.unwrap();
                let n: i64 =
                    String::from_utf8(txn.get_for_update("counter").await.unwrap().unwrap())
                        .unwrap()
                        .parse()
                        .unwrap();
                txn.put("counter", (n + 1).to_string()).await.unwrap();
                txn.commit().await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.get("counter").await.unwrap(),
        value("4"),
        "no lost update and no conflict error"
    );
}

#[tokio::test]
async fn lock_wait_options_and_rollback_release() {
    use tikv_client::transaction::LockWait;
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let mut holder = client.begin_pessimistic().await.unwrap();
    holder.lock_keys(["k"]).await.unwrap();

    let mut no_wait = client
        .begin_with_options(TransactionOptions::new_pessimistic().lock_wait(LockWait::NoWait))
        .await
        .unwrap();
    let err = no_wait.put("k", "x").await.unwrap_err();
    assert!(
        matches!(&err, Error::LockWaitTimeout(l) if l.key == b"k"),
        "{err:?}"
    );

    let mut short = client
        .begin_with_options(
            TransactionOptions::new_pessimistic()
                .lock_wait(LockWait::Timeout(Duration::from_millis(300))),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(
        short.get_for_update("k").await,
        Err(Error::LockWaitTimeout(_))
    ));
    assert!(started.elapsed() >= Duration::from_millis(280));

    holder.rollback().await.unwrap();
    let mut after = client
        .begin_with_options(TransactionOptions::new_pessimistic().lock_wait(LockWait::NoWait))
        .await
        .unwrap();
    after.put("k", "mine").await.unwrap();
    after.commit().await.unwrap();
    assert_eq!(
        client
            .begin_optimistic()
            .await
            .unwrap()
            .get("k")
            .await
            .unwrap(),
        value("mine")
    );
}

#[tokio::test]
async fn a_two_transaction_deadlock_is_reported_to_one_of_them() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let mut t1 = client.begin_pessimistic().await.unwrap();
    let mut t2 = client.begin_pessimistic().await.unwrap();
    t1.put("a", "t1").await.unwrap();
    t2.put("m", "t2").await.unwrap();
    let t1_task = tokio::spawn(async move {
        t1.put("m", "t1").await.unwrap();
        t1.commit().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = t2.put("a", "t2").await.unwrap_err();
    let Error::Deadlock {
        deadlock,
        lock_retryable,
    } = &err
    else {
        panic!("expected a deadlock, got {err:?}");
    };
    assert_eq!(deadlock.wait_chain.len(), 2);
    // t1 waits for "m", which t2 locked before this request: retrying the lock cannot help.
    assert_eq!(deadlock.deadlock_key_hash, farmhash::fingerprint64(b"m"));
    assert!(!lock_retryable);
    assert!(err.is_retryable());
    t2.rollback().await.unwrap();
    t1_task.await.unwrap();
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.batch_get_values(["a", "m"]).await.unwrap(),
        vec![value("t1"), value("t1")]
    );
}

#[tokio::test]
async fn a_deadlock_through_the_failed_lock_request_itself_is_lock_retryable() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let mut t1 = client.begin_pessimistic().await.unwrap();
    let mut t2 = client.begin_pessimistic().await.unwrap();
    t1.put("a", "t1").await.unwrap();
    // t2 has its primary; then it locks "a" and "m" in one request, whose part for "a"
    // arrives late, after t1 has started waiting for the "m" that t2 has just locked, and
    // closes the cycle.
    t2.lock_keys(["z"]).await.unwrap();
    cluster.add_rule(
        Rule::on("KvPessimisticLock")
            .key_prefix("a")
            .times(1)
            .delay(Duration::from_millis(300)),
    );
    let t2_task = tokio::spawn(async move {
        let err = t2.lock_keys(["a", "m"]).await.unwrap_err();
        (t2, err)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    t1.put("m", "t1").await.unwrap();
    let (mut t2, err) = t2_task.await.unwrap();
    let Error::Deadlock {
        deadlock,
        lock_retryable,
    } = &err
    else {
        panic!("expected a deadlock, got {err:?}");
    };
    assert_eq!(deadlock.deadlock_key_hash, farmhash::fingerprint64(b"m"));
    assert!(lock_retryable);
    // The failed request's lock on "m" was released, so t1 went on; t2's retry waits for t1.
    t1.commit().await.unwrap();
    t2.lock_keys(["a", "m"]).await.unwrap();
    t2.put("a", "t2").await.unwrap();
    t2.commit().await.unwrap();
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.batch_get_values(["a", "m"]).await.unwrap(),
        vec![value("t2"), value("t1")]
    );
}

#[tokio::test]
async fn a_deadlock_through_a_key_locked_earlier_is_not_lock_retryable() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let mut t1 = client.begin_pessimistic().await.unwrap();
    let mut t2 = client.begin_pessimistic().await.unwrap();
    t1.lock_keys(["a"]).await.unwrap();
    t2.lock_keys(["b"]).await.unwrap();
    let t2_task = tokio::spawn(async move {
        t2.lock_keys(["a"]).await.unwrap();
        t2
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // t2 waits for "a", which t1 holds from before: naming it again does not release it.
    let err = t1.lock_keys(["a", "b"]).await.unwrap_err();
    let Error::Deadlock {
        deadlock,
        lock_retryable,
    } = &err
    else {
        panic!("expected a deadlock, got {err:?}");
    };
    assert_eq!(deadlock.deadlock_key_hash, farmhash::fingerprint64(b"a"));
    assert!(!lock_retryable);
    t1.rollback().await.unwrap();
    t2_task.await.unwrap().rollback().await.unwrap();
}

#[tokio::test]
async fn heartbeats_extend_the_primary_lock_until_the_transaction_ends() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let options = TransactionOptions::new_pessimistic().heartbeat(Some(Duration::from_millis(100)));
    let mut txn = client.begin_with_options(options).await.unwrap();
    txn.put("hb", "v").await.unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let (mut stub, ctx) = stub_for(&cluster, b"hb").await;
    let locks = stub
        .kv_scan_lock(kvrpcpb::ScanLockRequest {
            context: Some(ctx),
            max_version: u64::MAX,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .locks;
    let ttl = locks.iter().find(|l| l.key == b"hb").unwrap().lock_ttl;
    assert!(
        ttl > 20_300,
        "the TTL grew with the transaction's age: {ttl}"
    );
    let beats = |c: &MockCluster| {
        c.calls()
            .iter()
            .filter(|c| c.method == "KvTxnHeartBeat")
            .count()
    };
    assert!(beats(&cluster) >= 3);
    txn.commit().await.unwrap();
    let after_commit = beats(&cluster);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        beats(&cluster),
        after_commit,
        "heartbeats stop with the transaction"
    );
}

fn commits(cluster: &MockCluster) -> usize {
    cluster
        .calls()
        .iter()
        .filter(|c| c.method == "KvCommit")
        .count()
}

#[tokio::test]
async fn one_pc_commits_in_one_round_trip_when_it_fits_one_region() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let mut txn = client
        .begin_with_options(TransactionOptions::new_optimistic().try_one_pc(true))
        .await
        .unwrap();
    txn.put("a1", "x").await.unwrap();
    txn.put("a2", "y").await.unwrap();
    let ts = txn.commit().await.unwrap().unwrap();
    assert_eq!(commits(&cluster), 0, "1PC needs no commit phase");
    let reader = client.snapshot(ts, TransactionOptions::default());
    assert_eq!(reader.batch_get(["a1", "a2"]).await.unwrap().len(), 2);
    assert_eq!(remaining_locks(&cluster).await, 0);

    // Keys in two regions: 1PC is not attempted, 2PC commits.
    let mut wide = client
        .begin_with_options(TransactionOptions::new_optimistic().try_one_pc(true))
        .await
        .unwrap();
    wide.put("a3", "x").await.unwrap();
    wide.put("z3", "y").await.unwrap();
    wide.commit().await.unwrap();
    assert!(commits(&cluster) >= 1);
}

#[tokio::test]
async fn async_commit_returns_after_prewrite_and_falls_back_when_max_ts_is_ahead() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let options = TransactionOptions::new_optimistic().use_async_commit(true);
    let mut txn = client.begin_with_options(options.clone()).await.unwrap();
    for k in ["a", "g", "q"] {
        txn.put(k, "async").await.unwrap();
    }
    let start = txn.start_timestamp();
    let ts = txn.commit().await.unwrap().unwrap();
    assert!(ts > start);
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.batch_get_values(["a", "g", "q"]).await.unwrap(),
        vec![value("async"); 3]
    );
    let mut locks = usize::MAX;
    for _ in 0..50 {
        locks = remaining_locks(&cluster).await;
        if locks == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(locks, 0, "the background commits finish");

    // A reader far in the future pushes the stores' max_ts beyond any max_commit_ts: the
    // prewrite falls back to 2PC and the primary is committed synchronously.
    let future = tikv_client::Timestamp::new(
        client.current_timestamp().await.unwrap().physical + 3_600_000,
        0,
    );
    client
        .snapshot(future, TransactionOptions::default())
        .get("a")
        .await
        .unwrap();
    cluster.clear_calls();
    let mut fallback = client.begin_with_options(options).await.unwrap();
    fallback.put("a", "2pc").await.unwrap();
    fallback.put("q", "2pc").await.unwrap();
    let ts = fallback.commit().await.unwrap().unwrap();
    assert!(
        ts < future,
        "committed at a PD timestamp, not the pushed one"
    );
    assert!(commits(&cluster) >= 1, "2PC commit phase ran");
    assert_eq!(
        client
            .snapshot(ts, TransactionOptions::default())
            .get("q")
            .await
            .unwrap(),
        value("2pc")
    );
}

#[tokio::test]
async fn delete_range_and_unsafe_destroy_range() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(
        &client,
        &[("a", "1"), ("c", "1"), ("k", "1"), ("q", "1"), ("z", "1")],
    )
    .await;
    client.delete_range("b".."r").await.unwrap();
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.scan_keys(.., 10).await.unwrap(),
        vec![Key::from("a"), Key::from("z")]
    );
    client.delete_range("y"..).await.unwrap();
    assert_eq!(
        client
            .begin_optimistic()
            .await
            .unwrap()
            .scan_keys(.., 10)
            .await
            .unwrap(),
        vec![Key::from("a")]
    );

    assert!(matches!(
        client.unsafe_destroy_range(..).await,
        Err(Error::InvalidArgument(_))
    ));
    put_all(&client, &[("m1", "1"), ("m2", "1")]).await;
    client.unsafe_destroy_range("m".."n").await.unwrap();
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.scan_keys(.., 10).await.unwrap(),
        vec![Key::from("a")]
    );
    let destroys = cluster
        .calls()
        .iter()
        .filter(|c| c.method == "UnsafeDestroyRange")
        .count();
    assert_eq!(destroys, 3, "sent to every store");
}

#[tokio::test]
async fn stale_timestamps_read_the_past() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("s", "old")]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    put_all(&client, &[("s", "new")]).await;
    let stale = client.stale_timestamp(1).await.unwrap();
    let now = client.current_timestamp().await.unwrap();
    assert!(stale < now && now.physical - stale.physical >= 1000);
    let past = client.snapshot(stale, TransactionOptions::default());
    assert_eq!(past.get("s").await.unwrap(), value("old"));
}

#[tokio::test]
async fn a_pessimistic_insert_of_an_existing_key_fails() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    put_all(&client, &[("exists", "1")]).await;
    let mut txn = client.begin_pessimistic().await.unwrap();
    assert!(matches!(
        txn.insert("exists", "2").await,
        Err(Error::KeyExists(_))
    ));
    txn.insert("fresh", "2").await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(
        client
            .begin_optimistic()
            .await
            .unwrap()
            .get("exists")
            .await
            .unwrap(),
        value("1")
    );
}

#[tokio::test]
async fn one_pc_is_not_applied_to_part_of_a_transaction_after_a_split() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    // The client caches the region of "a1" and "a2"; then it splits between them.
    client
        .begin_optimistic()
        .await
        .unwrap()
        .get("a1")
        .await
        .unwrap();
    cluster.split_txn("a15");
    cluster.clear_calls();
    let mut txn = client
        .begin_with_options(TransactionOptions::new_optimistic().try_one_pc(true))
        .await
        .unwrap();
    txn.put("a1", "x").await.unwrap();
    txn.put("a2", "y").await.unwrap();
    txn.commit().await.unwrap();
    assert!(
        commits(&cluster) >= 1,
        "fell back to 2PC instead of committing each half alone"
    );
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.batch_get_values(["a1", "a2"]).await.unwrap(),
        vec![value("x"), value("y")]
    );
}

#[tokio::test]
async fn an_abandoned_pessimistic_lock_is_removed_after_its_ttl() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let start = client.current_timestamp().await.unwrap().version();
    let (mut stub, ctx) = stub_for(&cluster, b"p").await;
    let resp = stub
        .kv_pessimistic_lock(kvrpcpb::PessimisticLockRequest {
            context: Some(ctx),
            mutations: vec![kvrpcpb::Mutation {
                op: kvrpcpb::Op::PessimisticLock as i32,
                key: b"p".to_vec(),
                ..Default::default()
            }],
            primary_lock: b"p".to_vec(),
            start_version: start,
            lock_ttl: 50,
            for_update_ts: start,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.errors.is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut txn = client.begin_pessimistic().await.unwrap();
    txn.put("p", "mine").await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(
        client
            .begin_optimistic()
            .await
            .unwrap()
            .get("p")
            .await
            .unwrap(),
        value("mine")
    );
    assert_eq!(remaining_locks(&cluster).await, 0);
}
