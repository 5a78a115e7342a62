//! Transactions under faults that cut a commit short: cancellation at any await, lost replies,
//! PD failover. A transaction must end whole (every key committed) or not at all.

use std::sync::Arc;
use std::time::Duration;

use tikv_client::testutils::{MockCluster, Outcome, Rule};
use tikv_client::{Error, Timestamp, TransactionClient, TransactionOptions, TransactionStatus};

use super::txn::{client, remaining_locks};

/// Three regions: `a…` keys in the first, `z…` keys in the last.
pub(crate) async fn three_regions() -> MockCluster {
    MockCluster::builder()
        .split_txn(["h", "p"])
        .start()
        .await
        .unwrap()
}

/// A small deterministic generator for the tests' random choices.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    /// Uniform in `[0, bound]`.
    fn up_to(&mut self, bound: Duration) -> Duration {
        let micros = bound.as_micros() as u64;
        Duration::from_micros(self.next() % (micros + 1))
    }
}

/// How a commit ended, from its caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Committed,
    Failed,
    Undetermined,
    Cancelled,
}

/// The mean latency of a plain two-region commit on this cluster with `tasks` committing at
/// once.
async fn commit_latency(client: &TransactionClient, tasks: usize) -> Duration {
    let rounds = 10;
    let started = tokio::time::Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..rounds {
                    let mut txn = client.begin_optimistic().await.unwrap();
                    txn.put(format!("aw{t}-{i}"), "w").await.unwrap();
                    txn.put(format!("zw{t}-{i}"), "w").await.unwrap();
                    txn.commit().await.unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    started.elapsed() / rounds
}

/// Reads every pair after all locks are settled (a reader waits out live locks and resolves
/// them) and counts the torn ones; a pair whose commit returned `Ok` must be whole.
async fn check_pairs(client: &TransactionClient, outcomes: &[Ended]) -> usize {
    let reader = client.begin_optimistic().await.unwrap();
    let mut torn = 0;
    for (i, ended) in outcomes.iter().enumerate() {
        let found = reader
            .batch_get_values([format!("a{i:05}"), format!("z{i:05}")])
            .await
            .unwrap();
        let whole = found[0].is_some() && found[1].is_some();
        let absent = found[0].is_none() && found[1].is_none();
        if !whole && !absent {
            torn += 1;
        }
        match ended {
            Ended::Committed => assert!(whole, "pair {i} committed but reads {found:?}"),
            Ended::Failed => assert!(absent, "pair {i} failed but reads {found:?}"),
            Ended::Undetermined | Ended::Cancelled => {}
        }
    }
    torn
}

/// Runs `count` two-region transactions on `tasks` concurrent tasks, each commit cut short by
/// a timeout drawn uniformly from zero to twice the commit latency.
async fn cancelled_commits(client: &TransactionClient, count: usize, tasks: usize) -> Vec<Ended> {
    let latency = commit_latency(client, tasks).await;
    let outcomes = Arc::new(std::sync::Mutex::new(vec![Ended::Cancelled; count]));
    let workers: Vec<_> = (0..tasks)
        .map(|t| {
            let client = client.clone();
            let outcomes = outcomes.clone();
            tokio::spawn(async move {
                let mut rng = Lcg(t as u64 + 1);
                for i in (t..count).step_by(tasks) {
                    let mut txn = client.begin_optimistic().await.unwrap();
                    txn.put(format!("a{i:05}"), "v").await.unwrap();
                    txn.put(format!("z{i:05}"), "v").await.unwrap();
                    let limit = rng.up_to(latency * 2);
                    let ended = match tokio::time::timeout(limit, txn.commit()).await {
                        Ok(Ok(_)) => Ended::Committed,
                        Ok(Err(Error::CommitUndetermined(_))) => Ended::Undetermined,
                        Ok(Err(Error::TransactionRolledBack { .. })) => Ended::Failed,
                        Ok(Err(e)) => panic!("commit {i} failed: {e}"),
                        Err(_) => Ended::Cancelled,
                    };
                    outcomes.lock().unwrap()[i] = ended;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let outcomes = outcomes.lock().unwrap().clone();
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_commits_never_tear_a_transaction() {
    let cluster = three_regions().await;
    assert_eq!(cluster.regions().len(), 3);
    let client = client(&cluster).await;
    let outcomes = cancelled_commits(&client, 2000, 16).await;
    let count = |e| outcomes.iter().filter(|o| **o == e).count();
    let (committed, cancelled) = (count(Ended::Committed), count(Ended::Cancelled));
    eprintln!(
        "cancellations: {committed} committed, {cancelled} cancelled, {} undetermined",
        count(Ended::Undetermined)
    );
    assert!(
        committed > 100 && cancelled > 100,
        "timeouts around the commit latency cut some commits and not others: \
         {committed} committed, {cancelled} cancelled"
    );
    let torn = check_pairs(&client, &outcomes).await;
    assert_eq!(
        torn, 0,
        "torn pairs among {committed} committed and {cancelled} cancelled commits"
    );
    assert_eq!(remaining_locks(&cluster).await, 0, "every lock settled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_primary_commit_replies_never_tear_and_are_undetermined_only_where_sent() {
    let cluster = three_regions().await;
    let client = client(&cluster).await;
    let count = 2000;
    // A third of the primaries' commits are applied and their reply lost (the store's connections
    // are cut, failing whatever else was in flight on them too); a tight deadline leaves some
    // commits without a definite answer.
    cluster.add_rule(
        Rule::on("KvCommit")
            .key_prefix("a")
            .probability(0.3)
            .lose_reply(),
    );
    let options =
        TransactionOptions::new_optimistic().operation_timeout(Duration::from_millis(400));
    let outcomes = Arc::new(std::sync::Mutex::new(vec![Ended::Cancelled; count]));
    let starts = Arc::new(std::sync::Mutex::new(vec![Timestamp::default(); count]));
    let tasks = 16;
    let workers: Vec<_> = (0..tasks)
        .map(|t| {
            let (client, outcomes, options) = (client.clone(), outcomes.clone(), options.clone());
            let starts = starts.clone();
            tokio::spawn(async move {
                for i in (t..count).step_by(tasks) {
                    let mut txn = client.begin_with_options(options.clone()).await.unwrap();
                    starts.lock().unwrap()[i] = txn.start_timestamp();
                    txn.put(format!("a{i:05}"), "v").await.unwrap();
                    txn.put(format!("z{i:05}"), "v").await.unwrap();
                    let ended = match txn.commit().await {
                        Ok(_) => Ended::Committed,
                        Err(Error::CommitUndetermined(u)) => {
                            assert_eq!(u.primary, tikv_client::Key::from(format!("a{i:05}")));
                            assert_eq!(u.start_ts, txn.start_timestamp());
                            assert!(u.commit_ts.is_some(), "the primary's commit was sent");
                            Ended::Undetermined
                        }
                        // The prewrite ran out of time: nothing was committed.
                        Err(Error::DeadlineExceeded { .. } | Error::BackoffExhausted { .. }) => {
                            Ended::Failed
                        }
                        Err(e) => panic!("commit {i} failed: {e}"),
                    };
                    outcomes.lock().unwrap()[i] = ended;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    cluster.clear_rules();
    let outcomes = outcomes.lock().unwrap().clone();
    let of = |e| outcomes.iter().filter(|o| **o == e).count();
    let (committed, undetermined) = (of(Ended::Committed), of(Ended::Undetermined));
    eprintln!(
        "lost replies: {committed} committed, {undetermined} undetermined, {} failed",
        of(Ended::Failed)
    );
    assert!(
        committed > 100 && undetermined > 0,
        "{committed} committed, {undetermined} undetermined, {} failed",
        of(Ended::Failed)
    );
    // An undetermined commit is one whose primary's commit may have landed: a commit that
    // settles as committed was served by a store (its reply lost or its connection cut);
    // one that settles as rolled back never got there (its connection was cut by another
    // transaction's lost reply before the store read it).
    let calls = cluster.calls();
    for (i, _) in outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| **o == Ended::Undetermined)
    {
        let primary = format!("a{i:05}");
        let served = calls.iter().any(|c| {
            c.method == "KvCommit"
                && c.first_key == primary.as_bytes()
                && matches!(
                    c.outcome,
                    Outcome::ReplyLost | Outcome::Dropped | Outcome::Ok
                )
        });
        let start = starts.lock().unwrap()[i];
        let status = client.transaction_status(primary, start).await.unwrap();
        if let TransactionStatus::Committed(_) = status {
            assert!(
                served,
                "txn {i} committed without a store serving its commit"
            );
        }
    }
    let torn = check_pairs(&client, &outcomes).await;
    assert_eq!(
        torn, 0,
        "torn pairs among {committed} committed and {undetermined} undetermined"
    );
    assert_eq!(remaining_locks(&cluster).await, 0, "every lock settled");
}
