//! Cancelling transaction calls at the await that matters: after the primary's commit was
//! applied, during the prewrite, and during a pessimistic lock. Each call is dropped once the
//! store has served the request (its reply is held back), so the state it leaves is known.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tikv_client::interceptor::Interceptor;
use tikv_client::proto::kvrpcpb;
use tikv_client::testutils::{MockCluster, Rule};
use tikv_client::{Error, TransactionClient, TransactionOptions, TransactionStatus};

use super::txn::remaining_locks;
use super::txn_faults::three_regions;
use super::util::wait_until;

async fn client(cluster: &MockCluster) -> TransactionClient {
    TransactionClient::new(vec![cluster.pd_endpoint()])
        .await
        .unwrap()
}

/// Drives `call` until a store has served a `method` call whose first key is `key` (as the
/// call log shows), then drops it: the caller gives up after the request took effect.
async fn cancel_once_served<T: std::fmt::Debug>(
    cluster: &MockCluster,
    method: &str,
    key: &str,
    call: impl Future<Output = T>,
) {
    let served = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = cluster
                .calls()
                .iter()
                .any(|c| c.method == method && c.first_key == key.as_bytes());
            if seen {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{method} of {key} never served"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::select! {
        done = call => panic!("the call finished before it could be cancelled: {done:?}"),
        () = served => {}
    }
}

/// Polls until no lock is left, within a bound.
async fn until_no_lock(cluster: &MockCluster) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while remaining_locks(cluster).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "locks left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn hold_replies(cluster: &MockCluster, method: &str, key: &str) {
    cluster.add_rule(
        Rule::on(method)
            .key_prefix(key)
            .times(1)
            .delay_reply(Duration::from_secs(30)),
    );
}

#[tokio::test]
async fn a_commit_cancelled_after_its_primary_committed_cannot_be_rolled_back_and_finishes() {
    let cluster = three_regions().await;
    let client = client(&cluster).await;
    let mut txn = client.begin_optimistic().await.unwrap();
    txn.put("a1", "v").await.unwrap();
    txn.put("z1", "v").await.unwrap();
    hold_replies(&cluster, "KvCommit", "a1");
    cancel_once_served(&cluster, "KvCommit", "a1", txn.commit()).await;

    let err = txn.rollback().await.unwrap_err();
    let Error::CommitUndetermined(undetermined) = &err else {
        panic!("rolling back after the commit point must refuse: {err:?}");
    };
    assert!(undetermined.cause.is_none(), "cut short by its caller");
    assert!(undetermined.commit_ts.is_some());
    // Committing again sends the primary's commit again; TiKV says it is committed.
    let commit_ts = txn.commit().await.unwrap();
    assert_eq!(commit_ts, undetermined.commit_ts);
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.batch_get_values(["a1", "z1"]).await.unwrap(),
        vec![Some(b"v".to_vec()), Some(b"v".to_vec())]
    );
    until_no_lock(&cluster).await;
}

#[tokio::test]
async fn a_transaction_dropped_after_its_primary_committed_is_finished_in_the_background() {
    let cluster = three_regions().await;
    let client = client(&cluster).await;
    let mut txn = client.begin_optimistic().await.unwrap();
    txn.put("a2", "v").await.unwrap();
    txn.put("z2", "v").await.unwrap();
    hold_replies(&cluster, "KvCommit", "a2");
    cancel_once_served(&cluster, "KvCommit", "a2", txn.commit()).await;
    drop(txn);
    // The secondary's lock goes without any reader resolving it: the drop finished the commit.
    until_no_lock(&cluster).await;
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(reader.get("z2").await.unwrap(), Some(b"v".to_vec()));
}

#[tokio::test]
async fn a_commit_cancelled_during_its_prewrite_rolls_back() {
    let cluster = three_regions().await;
    let client = client(&cluster).await;
    let mut txn = client.begin_optimistic().await.unwrap();
    txn.put("a3", "v").await.unwrap();
    txn.put("z3", "v").await.unwrap();
    hold_replies(&cluster, "KvPrewrite", "z3");
    cancel_once_served(&cluster, "KvPrewrite", "z3", txn.commit()).await;
    // Nothing could have committed: rolling back is safe and removes the locks.
    txn.rollback().await.unwrap();
    assert_eq!(remaining_locks(&cluster).await, 0);
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.batch_get_values(["a3", "z3"]).await.unwrap(),
        vec![None, None]
    );
}

#[tokio::test]
async fn a_cancelled_pessimistic_lock_request_releases_what_it_was_granted() {
    let cluster = three_regions().await;
    let client = client(&cluster).await;
    let mut txn = client.begin_pessimistic().await.unwrap();
    hold_replies(&cluster, "KvPessimisticLock", "a4");
    cancel_once_served(&cluster, "KvPessimisticLock", "a4", txn.put("a4", "v")).await;
    // The lock TiKV granted goes at once, not after its 20 s TTL.
    until_no_lock(&cluster).await;
    // Another transaction can lock the key right away.
    let mut other = client.begin_pessimistic().await.unwrap();
    other.put("a4", "w").await.unwrap();
    other.commit().await.unwrap();
    drop(txn);
}

/// Counts the requests of one method as the client sends them (before any answer).
#[derive(Debug)]
struct Sent(&'static str, Arc<AtomicUsize>);

impl Interceptor for Sent {
    fn before_send(&self, method: &str, _ctx: &mut kvrpcpb::Context) {
        if method == self.0 {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn served(cluster: &MockCluster, method: &str, key: &str) -> usize {
    cluster
        .calls()
        .iter()
        .filter(|c| c.method == method && c.first_key == key.as_bytes())
        .count()
}

#[tokio::test]
async fn a_commit_resumed_after_a_reader_pushed_it_reports_the_timestamp_that_landed() {
    let cluster = three_regions().await;
    let commits = Arc::new(AtomicUsize::new(0));
    let plain = client(&cluster).await;
    let counting = plain.with_interceptor(Sent("KvCommit", commits.clone()));
    let mut txn = counting.begin_pessimistic().await.unwrap();
    let start = txn.start_timestamp();
    txn.put("a6", "v").await.unwrap();
    txn.put("z6", "v").await.unwrap();
    // The first commit of the primary waits long enough for a reader to push its
    // min_commit_ts past it; the second (at a newer ts) lands and its reply is held back.
    // (The first rule that fires decides a call: each fires once, in turn.)
    cluster.add_rule(
        Rule::on("KvCommit")
            .key_prefix("a6")
            .times(1)
            .delay(Duration::from_millis(1500)),
    );
    cluster.add_rule(
        Rule::on("KvCommit")
            .key_prefix("a6")
            .times(1)
            .delay_reply(Duration::from_secs(30)),
    );
    {
        let commit = txn.commit();
        tokio::pin!(commit);
        let push = async {
            let sent = || commits.load(Ordering::SeqCst);
            wait_until("the first commit is sent", sent, |n| *n >= 1).await;
            // A reader that starts now pushes the primary past the first commit ts.
            let reader = plain.begin_optimistic().await.unwrap();
            assert_eq!(reader.get("a6").await.unwrap(), None);
            let landed = || served(&cluster, "KvCommit", "a6");
            wait_until("the second commit landed", landed, |n| *n >= 2).await;
        };
        tokio::select! {
            done = &mut commit => panic!("the commit finished before it could be cut: {done:?}"),
            () = push => {}
        }
    }
    let reported = txn.commit().await.unwrap().unwrap();
    let TransactionStatus::Committed(actual) = plain.transaction_status("a6", start).await.unwrap()
    else {
        panic!("the primary is committed");
    };
    assert_eq!(reported, actual, "the reported commit ts is the primary's");
    until_no_lock(&cluster).await;
    // Both keys are committed at that timestamp: no snapshot sees one without the other.
    let at = plain.snapshot(actual, TransactionOptions::new_optimistic());
    assert_eq!(at.batch_get(["a6", "z6"]).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_cancelled_commit_stops_keeping_its_primary_alive() {
    let cluster = three_regions().await;
    let client = client(&cluster).await;
    let options = TransactionOptions::new_pessimistic()
        .use_async_commit(true)
        .heartbeat(Some(Duration::from_millis(50)));
    let mut txn = client.begin_with_options(options).await.unwrap();
    txn.put("a8", "v").await.unwrap();
    txn.put("z8", "v").await.unwrap();
    hold_replies(&cluster, "KvPrewrite", "z8");
    cancel_once_served(&cluster, "KvPrewrite", "z8", txn.commit()).await;
    let beats = || {
        cluster
            .calls()
            .iter()
            .filter(|c| c.method == "KvTxnHeartBeat")
            .count()
    };
    let after_cancel = beats();
    // Ten heartbeat intervals pass without one: the primary's TTL runs out, so readers and
    // commit() again can decide the transaction.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        beats(),
        after_cancel,
        "heartbeats went on after the commit was cut"
    );
    drop(txn);
}
