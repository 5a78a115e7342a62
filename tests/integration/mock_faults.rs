//! Fault reactions that act after a request has run (a lost reply, a delayed reply), through
//! the raw generated stubs: the effect is applied, and the caller sees a broken connection or
//! a late answer.

use std::time::Duration;

use tikv_client::proto::kvrpcpb;
use tikv_client::proto::tikvpb;
use tikv_client::proto::tikvpb::batch_commands_request::request::Cmd as Req;
use tikv_client::testutils::{MockCluster, Outcome, Rule};
use tokio_stream::StreamExt;

use super::mock_batch::{batch, open};
use super::mock_raw::get;
use super::mock_txn::{put, store, ts};
use super::util::{calls_of, ctx_for, tikv};

/// How long a test polls for a condition before failing.
const DEADLINE: Duration = Duration::from_secs(10);

/// Whether a failed call saw its connection break rather than a gRPC answer from the store:
/// an answer would carry the store's own status message.
fn is_broken_connection(status: &tonic::Status) -> bool {
    !status.message().contains("fault rule")
        && matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal
        )
}

/// The value of a raw key, read through a fresh connection.
async fn raw_get(cluster: &MockCluster, key: &[u8]) -> Option<Vec<u8>> {
    let resp = get(cluster, key).await;
    assert!(resp.region_error.is_none(), "{resp:?}");
    (!resp.not_found).then_some(resp.value)
}

fn raw_put(cluster: &MockCluster, key: &[u8], value: &[u8]) -> kvrpcpb::RawPutRequest {
    kvrpcpb::RawPutRequest {
        context: Some(ctx_for(cluster, key).0),
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_lost_reply_breaks_the_connection_after_the_raw_put_applied() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    cluster.add_rule(Rule::on("RawPut").lose_reply());
    let leader = ctx_for(&cluster, b"k").1;
    let status = tikv(&cluster, leader)
        .await
        .raw_put(raw_put(&cluster, b"k", b"v"))
        .await
        .unwrap_err();
    assert!(is_broken_connection(&status), "{status:?}");
    assert_eq!(raw_get(&cluster, b"k").await, Some(b"v".to_vec()));
    let puts = calls_of(&cluster, "RawPut");
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].outcome, Outcome::ReplyLost);
}

#[tokio::test]
async fn a_lost_commit_reply_leaves_the_transaction_committed() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let resp = s.prewrite(vec![put("a", "1")], "a", ts(100)).await;
    assert!(resp.errors.is_empty(), "{resp:?}");
    cluster.add_rule(Rule::on("KvCommit").nth(1).lose_reply());
    let status = s
        .client
        .kv_commit(kvrpcpb::CommitRequest {
            context: s.ctx(),
            start_version: ts(100),
            keys: vec![b"a".to_vec()],
            commit_version: ts(110),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(is_broken_connection(&status), "{status:?}");
    // A fresh connection reads the committed value: the commit happened.
    let mut fresh = store(&cluster).await;
    let got = fresh.get("a", ts(120)).await;
    assert_eq!((got.value.as_slice(), got.commit_ts), (&b"1"[..], ts(110)));
    // The rule fired once: a resent commit is answered, and succeeds (idempotent).
    assert!(fresh.commit(&["a"], ts(100), ts(110)).await.error.is_none());
    let outcomes: Vec<Outcome> = calls_of(&cluster, "KvCommit")
        .into_iter()
        .map(|c| c.outcome)
        .collect();
    assert_eq!(outcomes, vec![Outcome::ReplyLost, Outcome::Ok]);
}

#[tokio::test]
async fn a_lost_reply_inside_batch_commands_breaks_the_stream_after_the_effect() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let leader = ctx_for(&cluster, b"k").1;
    cluster.add_rule(Rule::on("RawPut").lose_reply());
    let (tx, mut responses) = open(&cluster, leader).await;
    let cmd = Req::RawPut(raw_put(&cluster, b"k", b"batched"));
    tx.send(batch(vec![(1, Some(cmd))])).await.unwrap();
    let end = tokio::time::timeout(DEADLINE, responses.next())
        .await
        .expect("the stream ends");
    match end {
        Some(Err(status)) => assert!(is_broken_connection(&status), "{status:?}"),
        other => panic!("expected a broken stream, got {other:?}"),
    }
    assert_eq!(raw_get(&cluster, b"k").await, Some(b"batched".to_vec()));
    let puts = calls_of(&cluster, "RawPut");
    assert_eq!(puts.len(), 1);
    assert!(puts[0].batched);
    assert_eq!(puts[0].outcome, Outcome::ReplyLost);
}

#[tokio::test]
async fn a_delayed_reply_comes_after_the_effect_is_visible() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let reply_delay = Duration::from_secs(3);
    cluster.add_rule(
        Rule::on("RawPut")
            .key_prefix("slow")
            .delay_reply(reply_delay),
    );
    let leader = ctx_for(&cluster, b"slow").1;
    let mut writer = tikv(&cluster, leader).await;
    let request = raw_put(&cluster, b"slow", b"v");
    let started = std::time::Instant::now();
    let delayed = tokio::spawn(async move { writer.raw_put(request).await });
    // A second connection sees the value while the writer still waits for its answer.
    let poll_deadline = std::time::Instant::now() + DEADLINE;
    while raw_get(&cluster, b"slow").await.is_none() {
        assert!(
            std::time::Instant::now() < poll_deadline,
            "the put never became visible"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !delayed.is_finished(),
        "answered before the delay ({:?} after the call)",
        started.elapsed()
    );
    let resp = tokio::time::timeout(DEADLINE, delayed)
        .await
        .expect("the delayed reply arrives")
        .unwrap()
        .unwrap()
        .into_inner();
    assert!(
        resp.region_error.is_none() && resp.error.is_empty(),
        "{resp:?}"
    );
    assert!(started.elapsed() >= reply_delay);
    // Another key is not delayed: the rule's key condition still applies.
    let mut other = tikv(&cluster, leader).await;
    let quick = std::time::Instant::now();
    other
        .raw_put(raw_put(&cluster, b"fast", b"v"))
        .await
        .unwrap();
    assert!(quick.elapsed() < reply_delay);
}

#[tokio::test]
async fn a_delayed_reply_inside_batch_commands_answers_other_commands_first() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let leader = ctx_for(&cluster, b"k").1;
    cluster.add_rule(
        Rule::on("RawPut")
            .nth(1)
            .delay_reply(Duration::from_secs(2)),
    );
    let (tx, mut responses) = open(&cluster, leader).await;
    let get = kvrpcpb::RawGetRequest {
        context: Some(ctx_for(&cluster, b"k").0),
        key: b"k".to_vec(),
        ..Default::default()
    };
    let cmd = Req::RawPut(raw_put(&cluster, b"k", b"v"));
    tx.send(batch(vec![(1, Some(cmd))])).await.unwrap();
    // Once the put has run (the log says so), a get sent after it sees the value and is
    // answered before the put.
    let poll_deadline = std::time::Instant::now() + DEADLINE;
    while calls_of(&cluster, "RawPut").is_empty() {
        assert!(
            std::time::Instant::now() < poll_deadline,
            "the put never ran"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tx.send(batch(vec![(2, Some(Req::RawGet(get)))]))
        .await
        .unwrap();
    let mut order = Vec::new();
    while order.len() < 2 {
        let msg = tokio::time::timeout(DEADLINE, responses.next())
            .await
            .expect("answers arrive")
            .unwrap()
            .unwrap();
        for (id, resp) in msg.request_ids.into_iter().zip(msg.responses) {
            if let Some(tikvpb::batch_commands_response::response::Cmd::RawGet(get)) = resp.cmd {
                assert_eq!(get.value, b"v");
            }
            order.push(id);
        }
    }
    assert_eq!(order, vec![2, 1], "the delayed put answers last");
}
