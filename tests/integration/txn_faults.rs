//! Transactions under faults that cut a commit short: cancellation at any await, lost replies,
//! PD failover. A transaction must end whole (every key committed) or not at all.

use std::sync::Arc;
use std::time::Duration;

use tikv_client::testutils::MockCluster;
use tikv_client::{Error, TransactionClient};

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
