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

/// How a bank transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transfer {
    /// Its commit returned `Ok`: it must be visible.
    Acknowledged,
    /// Its commit was cancelled or undetermined: it may be visible, whole.
    Unknown,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_transfers_survive_lost_replies_pd_failover_and_cancelled_commits() {
    let cluster = Arc::new(
        MockCluster::builder()
            .pd_members(3)
            .split_txn(["acct03", "acct06"])
            .seed(7)
            .start()
            .await
            .unwrap(),
    );
    let client = TransactionClient::new(cluster.pd_endpoints())
        .await
        .unwrap();
    let accounts: Vec<String> = (0..10).map(|i| format!("acct{i:02}")).collect();
    let mut init = client.begin_optimistic().await.unwrap();
    for account in &accounts {
        init.put(account.as_str(), "100").await.unwrap();
    }
    init.commit().await.unwrap();
    let latency = commit_latency(&client, 4).await;

    // Replies lost after prewrites and commits took effect, and PD's leader moving around.
    cluster.add_rule(Rule::on("KvPrewrite").probability(0.03).lose_reply());
    cluster.add_rule(Rule::on("KvCommit").probability(0.05).lose_reply());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failover = {
        let (cluster, stop) = (cluster.clone(), stop.clone());
        tokio::spawn(async move {
            let mut moves = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let next = (cluster.pd_leader() + 1) % 3;
                cluster.transfer_pd_leader(next).unwrap();
                moves += 1;
            }
            moves
        })
    };

    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            let (client, accounts) = (client.clone(), accounts.clone());
            tokio::spawn(async move {
                let mut rng = Lcg(t * 7919 + 1);
                let mut ended: Vec<(String, Transfer)> = Vec::new();
                let mut attempt = 0;
                while ended.len() < 60 {
                    attempt += 1;
                    let from = &accounts[rng.next() as usize % 10];
                    let to = &accounts[rng.next() as usize % 10];
                    if from == to {
                        continue;
                    }
                    let Ok(mut txn) = client.begin_optimistic().await else {
                        continue;
                    };
                    let balance = |v: Option<Vec<u8>>| -> i64 {
                        String::from_utf8(v.unwrap()).unwrap().parse().unwrap()
                    };
                    let (Ok(a), Ok(b)) = (txn.get(from.as_str()).await, txn.get(to.as_str()).await)
                    else {
                        continue;
                    };
                    let marker = format!("xfer/{t}/{attempt}");
                    txn.put(from.as_str(), (balance(a) - 1).to_string())
                        .await
                        .unwrap();
                    txn.put(to.as_str(), (balance(b) + 1).to_string())
                        .await
                        .unwrap();
                    txn.put(marker.as_str(), format!("{from}>{to}"))
                        .await
                        .unwrap();
                    // A third of the commits are cut short at a random point.
                    let limit = if rng.next() % 3 == 0 {
                        rng.up_to(latency * 2)
                    } else {
                        Duration::from_secs(120)
                    };
                    match tokio::time::timeout(limit, txn.commit()).await {
                        Ok(Ok(_)) => ended.push((marker, Transfer::Acknowledged)),
                        Ok(Err(Error::CommitUndetermined(_))) | Err(_) => {
                            ended.push((marker, Transfer::Unknown))
                        }
                        // Not committed (a conflict, or out of time before the commit point):
                        // its marker must never appear.
                        Ok(Err(e)) => {
                            assert!(e.is_retryable(), "transfer failed for good: {e}");
                            ended.push((marker, Transfer::Unknown));
                            ended.pop();
                        }
                    }
                }
                ended
            })
        })
        .collect();
    let started = tokio::time::Instant::now();
    let mut ended = std::collections::HashMap::new();
    for worker in workers {
        ended.extend(worker.await.unwrap());
    }
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let moves = failover.await.unwrap();
    cluster.clear_rules();
    assert!(moves >= 2, "PD's leader moved {moves} times");

    // Readers settle every lock left behind (waiting out the TTL of live-looking ones).
    let reader = client.begin_optimistic().await.unwrap();
    let balances = reader
        .batch_get_values(accounts.iter().cloned())
        .await
        .unwrap();
    let balances: Vec<i64> = balances
        .into_iter()
        .map(|v| String::from_utf8(v.unwrap()).unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        balances.iter().sum::<i64>(),
        1000,
        "money is neither made nor lost"
    );
    let markers = reader.scan("xfer/".."xfer0", 10_000).await.unwrap();
    let mut expected: Vec<i64> = vec![100; 10];
    for pair in &markers {
        let marker = String::from_utf8(pair.key.to_vec()).unwrap();
        assert!(
            ended.contains_key(&marker),
            "{marker} is visible but its transfer failed"
        );
        let value = String::from_utf8(pair.value.clone()).unwrap();
        let (from, to) = value.split_once('>').unwrap();
        expected[from[4..].parse::<usize>().unwrap()] -= 1;
        expected[to[4..].parse::<usize>().unwrap()] += 1;
    }
    let visible: std::collections::HashSet<String> = markers
        .iter()
        .map(|p| String::from_utf8(p.key.to_vec()).unwrap())
        .collect();
    for (marker, how) in &ended {
        if *how == Transfer::Acknowledged {
            assert!(
                visible.contains(marker),
                "acknowledged {marker} is not visible"
            );
        }
    }
    assert_eq!(
        balances, expected,
        "the balances are exactly the visible transfers applied"
    );
    let acknowledged = ended
        .values()
        .filter(|h| **h == Transfer::Acknowledged)
        .count();
    eprintln!(
        "bank: {} transfers ended in {took:?}, {acknowledged} acknowledged, {} visible, {moves} \
         PD leader moves",
        ended.len(),
        visible.len()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while remaining_locks(&cluster).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "locks left behind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
