//! Total deadlines: every operation ends by its deadline, its attempts included, whatever the
//! stores do; a deadline that cuts a commit short leaves it undetermined, never torn.

use std::time::Duration;

use tikv_client::proto::errorpb;
use tikv_client::rt::{ManualClock, Runtime};
use tikv_client::testutils::{MockCluster, Rule};

use super::txn_faults::three_regions;
use tikv_client::{
    Config, Error, GrpcCode, Key, RawClient, TransactionClient, TransactionOptions,
    TransactionStatus,
};

async fn raw_client(cluster: &MockCluster, config: Config) -> RawClient {
    RawClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_unreachable_store_fails_at_the_operation_deadline() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let clock = ManualClock::new();
    let config = Config::default()
        .with_runtime(Runtime::manual(clock.clone()))
        .with_operation_timeout(Duration::from_secs(5));
    // A budget far beyond the deadline: the deadline is what ends the retries.
    let raw = raw_client(&cluster, config)
        .await
        .with_backoff_budget(Duration::from_secs(600));
    raw.put("k", "v").await.unwrap();
    for store in cluster.store_ids() {
        cluster.stop_store(store);
    }
    let before = clock.elapsed();
    let err = raw.get("k").await.unwrap_err();
    let spent = clock.elapsed() - before;
    assert!(
        matches!(err, Error::DeadlineExceeded { timeout, ref last, .. }
            if timeout == Duration::from_secs(5) && last.is_some()),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(
        spent <= Duration::from_secs(5),
        "no sleep past the deadline: {spent:?}"
    );
    // tikvRPC sleeps at most 2 s: the retries went on until the deadline was that close.
    assert!(
        spent >= Duration::from_secs(3),
        "retried until near the deadline: {spent:?}"
    );
}

#[tokio::test]
async fn a_hanging_attempt_is_cut_at_the_deadline_of_its_operation() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let config = Config::default().with_operation_timeout(Duration::from_millis(300));
    let raw = raw_client(&cluster, config).await;
    raw.put("k", "v").await.unwrap();
    cluster.add_rule(Rule::on("RawGet").delay(Duration::from_secs(60)));
    let started = tokio::time::Instant::now();
    let err = raw.get("k").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::DeadlineExceeded {
                uncertain: true,
                ..
            }
        ),
        "a timed-out attempt may have been served: {err:?}"
    );
    // The RPC timeout is 30 s: only the operation deadline ends this so soon.
    assert!(started.elapsed() < Duration::from_secs(10));

    // A per-client deadline overrides the configured one.
    let patient = RawClient::new(vec![cluster.pd_endpoint()]).await.unwrap();
    let started = tokio::time::Instant::now();
    let err = patient
        .with_operation_timeout(Duration::from_millis(200))
        .get("k")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::DeadlineExceeded { timeout, .. } if timeout == Duration::from_millis(200))
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_lock_wait_forever_ends_at_the_operation_deadline() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let client = TransactionClient::new(vec![cluster.pd_endpoint()])
        .await
        .unwrap();
    let mut holder = client.begin_pessimistic().await.unwrap();
    holder.put("k", "1").await.unwrap();
    let options =
        TransactionOptions::new_pessimistic().operation_timeout(Duration::from_millis(1500));
    let mut waiter = client.begin_with_options(options).await.unwrap();
    let err = waiter.put("k", "2").await.unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err:?}");
    holder.commit().await.unwrap();
}

fn region_error(f: fn(&mut errorpb::Error)) -> errorpb::Error {
    let mut e = errorpb::Error {
        message: "injected".into(),
        ..Default::default()
    };
    f(&mut e);
    e
}

/// Polls the primary's status until it is final, within a bound.
async fn settled_status(
    client: &TransactionClient,
    primary: &str,
    start: tikv_client::Timestamp,
) -> TransactionStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = client.transaction_status(primary, start).await.unwrap();
        if !matches!(status, TransactionStatus::Undecided { .. }) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_primary_commit_cut_by_the_deadline_is_undetermined_and_lands_whole() {
    let cluster = three_regions().await;
    let client = TransactionClient::new(vec![cluster.pd_endpoint()])
        .await
        .unwrap();
    let options =
        TransactionOptions::new_optimistic().operation_timeout(Duration::from_millis(500));
    let mut txn = client.begin_with_options(options).await.unwrap();
    txn.put("a1", "v").await.unwrap();
    txn.put("z1", "v").await.unwrap();
    // The primary's commit is applied a second after it arrives, long after the deadline.
    cluster.add_rule(
        Rule::on("KvCommit")
            .key_prefix("a1")
            .times(1)
            .delay(Duration::from_secs(1)),
    );
    let err = txn.commit().await.unwrap_err();
    let Error::CommitUndetermined(undetermined) = &err else {
        panic!("expected an undetermined commit, got {err:?}");
    };
    assert_eq!(undetermined.start_ts, txn.start_timestamp());
    assert_eq!(undetermined.primary, Key::from("a1"));
    let commit_ts = undetermined.commit_ts.expect("2PC knows its commit ts");
    assert!(matches!(
        undetermined.cause,
        Some(Error::DeadlineExceeded {
            uncertain: true,
            ..
        })
    ));
    // Rolling back now could tear it.
    assert!(matches!(
        txn.rollback().await,
        Err(Error::CommitUndetermined(_))
    ));

    let status = settled_status(&client, "a1", txn.start_timestamp()).await;
    assert_eq!(status, TransactionStatus::Committed(commit_ts));
    // Dropping finishes the commit in the background; readers see it whole.
    drop(txn);
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.batch_get_values(["a1", "z1"]).await.unwrap(),
        vec![Some(b"v".to_vec()), Some(b"v".to_vec())]
    );
}

#[tokio::test]
async fn a_refusal_after_an_attempt_that_may_have_landed_stays_undetermined() {
    let cluster = three_regions().await;
    let config = Config::default().with_timeout(Duration::from_millis(200));
    let client = TransactionClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap();
    let mut txn = client.begin_optimistic().await.unwrap();
    txn.put("a2", "v").await.unwrap();
    txn.put("z2", "v").await.unwrap();
    // The first commit of the primary times out but is applied later; the resent one is
    // refused with an error that is never retried.
    cluster.add_rule(
        Rule::on("KvCommit")
            .key_prefix("a2")
            .times(1)
            .delay(Duration::from_millis(600)),
    );
    cluster.add_rule(
        Rule::on("KvCommit")
            .key_prefix("a2")
            .times(1)
            .region_error(region_error(|e| {
                e.raft_entry_too_large = Some(Default::default())
            })),
    );
    let err = txn.commit().await.unwrap_err();
    let Error::CommitUndetermined(undetermined) = &err else {
        panic!("a refusal after an uncertain attempt must not read as a failure: {err:?}");
    };
    assert!(
        matches!(undetermined.cause, Some(Error::Region(ref e)) if e.raft_entry_too_large.is_some())
    );
    let status = settled_status(&client, "a2", txn.start_timestamp()).await;
    assert!(
        matches!(status, TransactionStatus::Committed(_)),
        "{status:?}"
    );
    // Calling commit again finishes it: the primary answers that it committed.
    assert_eq!(txn.commit().await.unwrap(), undetermined.commit_ts);
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.batch_get_values(["a2", "z2"]).await.unwrap(),
        vec![Some(b"v".to_vec()), Some(b"v".to_vec())]
    );
}

#[tokio::test]
async fn a_definite_refusal_of_the_first_commit_attempt_rolls_back() {
    let cluster = three_regions().await;
    let client = TransactionClient::new(vec![cluster.pd_endpoint()])
        .await
        .unwrap();
    let mut txn = client.begin_optimistic().await.unwrap();
    txn.put("a3", "v").await.unwrap();
    txn.put("z3", "v").await.unwrap();
    cluster.add_rule(
        Rule::on("KvCommit")
            .key_prefix("a3")
            .times(1)
            .region_error(region_error(|e| {
                e.raft_entry_too_large = Some(Default::default())
            })),
    );
    let err = txn.commit().await.unwrap_err();
    assert!(
        matches!(err, Error::Region(ref e) if e.raft_entry_too_large.is_some()),
        "{err:?}"
    );
    let status = settled_status(&client, "a3", txn.start_timestamp()).await;
    assert_eq!(status, TransactionStatus::RolledBack);
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.batch_get_values(["a3", "z3"]).await.unwrap(),
        vec![None, None]
    );
}

#[tokio::test]
async fn a_failed_region_lookup_after_the_commit_may_have_landed_stays_undetermined() {
    let cluster = three_regions().await;
    let client = TransactionClient::new(vec![cluster.pd_endpoint()])
        .await
        .unwrap();
    let options =
        TransactionOptions::new_optimistic().operation_timeout(Duration::from_millis(800));
    let mut txn = client.begin_with_options(options).await.unwrap();
    txn.put("a5", "v").await.unwrap();
    txn.put("z5", "v").await.unwrap();
    // Both regions are cached, so the prewrite needs no lookup.
    let cached = client.begin_optimistic().await.unwrap();
    cached.batch_get(["a5", "z5"]).await.unwrap();
    // The primary's commit lands but its reply is lost; the resend must look its region up
    // again, and PD cannot answer (as during a leader change).
    cluster.add_rule(Rule::on("KvCommit").key_prefix("a5").times(1).lose_reply());
    cluster.add_rule(Rule::on("GetRegion").status(GrpcCode::Unavailable, "not leader"));
    let err = txn.commit().await.unwrap_err();
    let Error::CommitUndetermined(undetermined) = &err else {
        panic!("a failed lookup after a commit that may have landed is no failure: {err:?}");
    };
    assert!(
        matches!(undetermined.cause, Some(Error::DeadlineExceeded { .. })),
        "{err:?}"
    );
    cluster.clear_rules();
    let status = settled_status(&client, "a5", txn.start_timestamp()).await;
    assert!(
        matches!(status, TransactionStatus::Committed(_)),
        "{status:?}"
    );
    drop(txn);
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.batch_get_values(["a5", "z5"]).await.unwrap(),
        vec![Some(b"v".to_vec()), Some(b"v".to_vec())]
    );
}

#[tokio::test]
async fn an_async_commit_that_sent_nothing_is_not_undetermined() {
    let cluster = three_regions().await;
    let client = TransactionClient::new(vec![cluster.pd_endpoint()])
        .await
        .unwrap();
    let options = TransactionOptions::new_optimistic()
        .use_async_commit(true)
        .operation_timeout(Duration::from_millis(800));
    let mut txn = client.begin_with_options(options).await.unwrap();
    txn.put("a10", "v").await.unwrap();
    txn.put("z10", "v").await.unwrap();
    // PD cannot hand out the timestamp the prewrite needs: nothing is sent.
    let rule = cluster.add_rule(Rule::on("Tso").status(GrpcCode::Unavailable, "injected"));
    let err = txn.commit().await.unwrap_err();
    cluster.remove_rule(rule);
    assert!(
        !matches!(err, Error::CommitUndetermined(_)),
        "nothing was sent, so nothing is undetermined: {err:?}"
    );
    assert!(super::util::calls_of(&cluster, "KvPrewrite").is_empty());
}
