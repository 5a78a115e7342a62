//! Raw writes under faults that hide whether they took effect: a compare-and-swap whose reply
//! was lost, a batch write failing in part, and a key PD knows no region for.

use std::time::Duration;

use tikv_client::proto::{errorpb, pdpb};
use tikv_client::testutils::{MockCluster, Outcome, Rule};
use tikv_client::{Config, Error, Key, KvPair, RawClient};

use super::util::{calls_of, pd_client};

async fn raw(cluster: &MockCluster) -> RawClient {
    RawClient::new(vec![cluster.pd_endpoint()]).await.unwrap()
}

#[tokio::test]
async fn a_swap_whose_reply_was_lost_is_undetermined_not_failed() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let client = raw(&cluster).await.with_atomic_for_cas();
    // The first swap is applied, then its reply is lost; the resent one finds the new value.
    cluster.add_rule(Rule::on("RawCompareAndSwap").times(1).lose_reply());
    let err = client
        .compare_and_swap("k", None, "mine")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::WriteUndetermined {
                operation: "compare_and_swap",
                ..
            }
        ),
        "\"swap failed, previous = my own value\" must not be reported: {err:?}"
    );
    let outcomes: Vec<Outcome> = calls_of(&cluster, "RawCompareAndSwap")
        .into_iter()
        .map(|c| c.outcome)
        .collect();
    assert_eq!(outcomes, vec![Outcome::ReplyLost, Outcome::Ok]);
    assert_eq!(client.get("k").await.unwrap(), Some(b"mine".to_vec()));

    // Without an uncertain attempt, a refused swap is a plain answer.
    let (previous, swapped) = client.compare_and_swap("k", None, "other").await.unwrap();
    assert_eq!((previous, swapped), (Some(b"mine".to_vec()), false));
    // And a swap that succeeded on its resend is a success.
    cluster.add_rule(Rule::on("RawCompareAndSwap").times(1).drop_connection());
    let (previous, swapped) = client
        .compare_and_swap("k", Some(b"mine".to_vec()), "next")
        .await
        .unwrap();
    assert_eq!((previous, swapped), (Some(b"mine".to_vec()), true));
}

fn raft_entry_too_large() -> errorpb::Error {
    errorpb::Error {
        message: "injected".into(),
        raft_entry_too_large: Some(Default::default()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_batch_write_failing_in_one_region_names_the_keys_it_could_not_confirm() {
    let cluster = MockCluster::builder()
        .split_raw(["m"])
        .start()
        .await
        .unwrap();
    let client = raw(&cluster).await;
    let right = cluster.region_of_raw_key(b"x").unwrap().id;
    cluster.add_rule(
        Rule::on("RawBatchPut")
            .region(right)
            .region_error(raft_entry_too_large()),
    );
    let pairs = ["a", "b", "x", "y"].map(|k| KvPair::new(k, "v"));
    let err = client.batch_put(pairs).await.unwrap_err();
    let Error::PartialWrite { unconfirmed, cause } = &err else {
        panic!("expected a partial write, got {err:?}");
    };
    assert_eq!(unconfirmed, &vec![Key::from("x"), Key::from("y")]);
    assert!(matches!(**cause, Error::Region(ref e) if e.raft_entry_too_large.is_some()));
    assert_eq!(
        client.batch_get(["a", "b", "x", "y"]).await.unwrap(),
        vec![KvPair::new("a", "v"), KvPair::new("b", "v")],
        "the other region's keys were written"
    );

    cluster.clear_rules();
    cluster.add_rule(
        Rule::on("RawBatchDelete")
            .region(right)
            .region_error(raft_entry_too_large()),
    );
    let err = client.batch_delete(["a", "x"]).await.unwrap_err();
    assert!(
        matches!(&err, Error::PartialWrite { unconfirmed, .. } if unconfirmed == &vec![Key::from("x")]),
        "{err:?}"
    );
}

#[tokio::test]
async fn pd_answers_no_region_when_a_rule_says_so() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    let header = Some(pdpb::RequestHeader {
        cluster_id: cluster.cluster_id(),
        ..Default::default()
    });
    cluster.add_rule(Rule::on("GetRegion").times(1).no_region());
    let request = || pdpb::GetRegionRequest {
        header: header.clone(),
        region_key: b"k".to_vec(),
        ..Default::default()
    };
    let hidden = pd.get_region(request()).await.unwrap().into_inner();
    assert!(hidden.region.is_none() && hidden.header.unwrap().error.is_none());
    let found = pd.get_region(request()).await.unwrap().into_inner();
    assert!(found.region.is_some());
}

#[tokio::test]
async fn a_key_without_a_region_is_looked_up_again_within_the_deadline() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let client = raw(&cluster).await;
    // PD knows no region for the key three times (a new PD leader loading its regions).
    cluster.add_rule(Rule::on("GetRegion").times(3).no_region());
    client.put("k", "v").await.unwrap();
    let lookups = calls_of(&cluster, "GetRegion").len();
    assert_eq!(lookups, 4, "three empty answers, then the region");

    // A region that never appears fails at the deadline, as a retryable error.
    let config = Config::default().with_operation_timeout(Duration::from_millis(800));
    let impatient = RawClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap();
    cluster.add_rule(Rule::on("GetRegion").no_region());
    let err = impatient.get("k").await.unwrap_err();
    assert!(
        matches!(err, Error::DeadlineExceeded { last: Some(ref last), .. } if matches!(**last, Error::NoRegion { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_region_that_keeps_changing_is_retried_with_backoff_not_in_a_tight_loop() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let clock = tikv_client::rt::ManualClock::new();
    let config = Config::default().with_runtime(tikv_client::rt::Runtime::manual(clock.clone()));
    let client = RawClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap();
    client.put("k", "v").await.unwrap();
    // Every answer says the region changed and carries it: re-splitting is free each time.
    let region = cluster.region_of_raw_key(b"k").unwrap();
    cluster.add_rule(Rule::on("RawGet").region_error(errorpb::Error {
        message: "injected".into(),
        epoch_not_match: Some(errorpb::EpochNotMatch {
            current_regions: vec![region],
        }),
        ..Default::default()
    }));
    let read = tokio::time::timeout(Duration::from_secs(20), client.get("k")).await;
    let err = read.expect("the retries end").unwrap_err();
    assert!(
        matches!(
            err,
            Error::BackoffExhausted {
                kind: tikv_client::backoff::BackoffKind::RegionMiss,
                ..
            }
        ),
        "{err:?}"
    );
    let attempts = calls_of(&cluster, "RawGet").len();
    assert!(
        attempts < 100,
        "{attempts} attempts: after a few free re-splits each one backs off"
    );
}

#[tokio::test]
async fn a_multi_region_request_whose_regions_keep_changing_is_paced_too() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let client = raw(&cluster)
        .await
        .with_operation_timeout(Duration::from_secs(2));
    client.put("k", "v").await.unwrap();
    let region = cluster.region_of_raw_key(b"k").unwrap();
    cluster.add_rule(Rule::on("RawBatchGet").region_error(errorpb::Error {
        message: "injected".into(),
        epoch_not_match: Some(errorpb::EpochNotMatch {
            current_regions: vec![region],
        }),
        ..Default::default()
    }));
    client.batch_get(["k"]).await.unwrap_err();
    let attempts = calls_of(&cluster, "RawBatchGet").len();
    assert!(
        attempts < 100,
        "{attempts} attempts in 2 s: re-splits were not paced"
    );
}
