//! The mock's BatchCommands stream (spec 9) through the raw generated stub: commands answered
//! by id, out of order, with the unary semantics; unanswerable commands left unanswered; a
//! foreign cluster id failing the stream.

use std::collections::BTreeMap;
use std::time::Duration;

use tikv_client::proto::tikvpb::batch_commands_request::request::Cmd as Req;
use tikv_client::proto::tikvpb::batch_commands_response::response::Cmd as Resp;
use tikv_client::proto::tikvpb::{self, BatchCommandsRequest};
use tikv_client::proto::{kvrpcpb, metapb};
use tikv_client::testutils::{MockCluster, Rule, BATCH_COMMANDS_IN_FLIGHT};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::util::{ctx_for, tikv, wait_until};

pub(crate) fn batch(commands: Vec<(u64, Option<Req>)>) -> BatchCommandsRequest {
    let (request_ids, requests) = commands
        .into_iter()
        .map(|(id, cmd)| (id, tikvpb::batch_commands_request::Request { cmd }))
        .unzip();
    BatchCommandsRequest {
        requests,
        request_ids,
        ..Default::default()
    }
}

/// Opens a stream to `store`; returns the sender of request batches and the responses.
pub(crate) async fn open(
    cluster: &MockCluster,
    store: u64,
) -> (
    mpsc::Sender<BatchCommandsRequest>,
    tonic::Streaming<tikvpb::BatchCommandsResponse>,
) {
    let (tx, rx) = mpsc::channel(16);
    let responses = tikv(cluster, store)
        .await
        .batch_commands(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, responses)
}

/// Reads answers until `want` ids arrived (in arrival order), then waits `quiet` for extras.
async fn answers(
    responses: &mut tonic::Streaming<tikvpb::BatchCommandsResponse>,
    want: usize,
    quiet: Duration,
) -> Vec<(u64, Option<Resp>)> {
    let mut got = Vec::new();
    while got.len() < want {
        let msg = responses.next().await.unwrap().unwrap();
        assert_eq!(msg.request_ids.len(), msg.responses.len());
        got.extend(
            msg.request_ids
                .into_iter()
                .zip(msg.responses.into_iter().map(|r| r.cmd)),
        );
    }
    if let Ok(Some(extra)) = tokio::time::timeout(quiet, responses.next()).await {
        panic!("unexpected answer {extra:?}");
    }
    got
}

#[tokio::test]
async fn commands_are_answered_by_id_with_unary_semantics() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let (ctx, leader) = ctx_for(&cluster, b"k");
    let (tx, mut responses) = open(&cluster, leader).await;
    let stale = kvrpcpb::Context {
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 0,
        }),
        ..ctx.clone()
    };
    tx.send(batch(vec![
        (
            1,
            Some(Req::Empty(tikvpb::BatchCommandsEmptyRequest {
                test_id: 77,
                delay_time: 100,
            })),
        ),
        (
            2,
            Some(Req::RawPut(kvrpcpb::RawPutRequest {
                context: Some(ctx.clone()),
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        ),
        (3, None),
        (4, Some(Req::Gc(kvrpcpb::GcRequest::default()))),
        (
            5,
            Some(Req::RawGet(kvrpcpb::RawGetRequest {
                context: Some(stale),
                key: b"k".to_vec(),
                ..Default::default()
            })),
        ),
    ]))
    .await
    .unwrap();
    let first = answers(&mut responses, 4, Duration::from_millis(200)).await;
    let order: Vec<u64> = first.iter().map(|(id, _)| *id).collect();
    assert_eq!(order.last(), Some(&1), "the delayed Empty answers last");
    let by_id: BTreeMap<u64, Option<Resp>> = first.into_iter().collect();
    assert!(
        !by_id.contains_key(&4),
        "GC fails in its handler: no answer"
    );
    assert_eq!(
        by_id[&1],
        Some(Resp::Empty(tikvpb::BatchCommandsEmptyResponse {
            test_id: 77
        }))
    );
    assert!(
        matches!(&by_id[&2], Some(Resp::RawPut(r)) if r.region_error.is_none() && r.error.is_empty())
    );
    assert_eq!(by_id[&3], None, "no command: an empty response");
    match &by_id[&5] {
        Some(Resp::RawGet(r)) => {
            assert!(r.region_error.as_ref().unwrap().epoch_not_match.is_some())
        }
        other => panic!("{other:?}"),
    }

    // Later batches on the same stream see earlier writes.
    tx.send(batch(vec![(
        6,
        Some(Req::RawGet(kvrpcpb::RawGetRequest {
            context: Some(ctx),
            key: b"k".to_vec(),
            ..Default::default()
        })),
    )]))
    .await
    .unwrap();
    let second = answers(&mut responses, 1, Duration::from_millis(50)).await;
    assert!(matches!(&second[0], (6, Some(Resp::RawGet(r))) if r.value == b"v"));
    let logged: Vec<(&str, bool)> = cluster
        .calls()
        .iter()
        .map(|c| (c.method, c.batched))
        .collect();
    assert_eq!(
        logged,
        vec![
            ("BatchCommands", false),
            ("RawPut", true),
            ("RawGet", true),
            ("RawGet", true)
        ],
        "the stream, then each command logged as its RPC"
    );

    // Closing the request side ends the stream once everything is answered.
    drop(tx);
    assert!(responses.next().await.is_none());
}

#[tokio::test]
async fn a_waiting_lock_does_not_hold_back_other_commands() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let region = cluster.regions()[0].clone();
    let leader = cluster.leader_of(region.id).unwrap();
    let ctx = kvrpcpb::Context {
        region_id: region.id,
        region_epoch: region.region_epoch,
        peer: Some(super::util::peer_on(&region, leader)),
        ..Default::default()
    };
    let lock = |start: u64, wait: i64| kvrpcpb::PessimisticLockRequest {
        context: Some(ctx.clone()),
        mutations: vec![kvrpcpb::Mutation {
            op: kvrpcpb::Op::PessimisticLock as i32,
            key: b"x".to_vec(),
            ..Default::default()
        }],
        primary_lock: b"x".to_vec(),
        start_version: start,
        for_update_ts: start,
        lock_ttl: 20_000,
        wait_timeout: wait,
        ..Default::default()
    };
    let held = tikv(&cluster, leader)
        .await
        .kv_pessimistic_lock(lock(10 << 18, -1))
        .await
        .unwrap()
        .into_inner();
    assert!(held.errors.is_empty());
    let (tx, mut responses) = open(&cluster, leader).await;
    tx.send(batch(vec![
        (1, Some(Req::PessimisticLock(lock(20 << 18, 300)))),
        (
            2,
            Some(Req::Get(kvrpcpb::GetRequest {
                context: Some(ctx.clone()),
                key: b"y".to_vec(),
                version: 30 << 18,
                ..Default::default()
            })),
        ),
    ]))
    .await
    .unwrap();
    let got = answers(&mut responses, 2, Duration::from_millis(50)).await;
    assert_eq!(got[0].0, 2, "the read is not queued behind the lock wait");
    match &got[1] {
        (1, Some(Resp::PessimisticLock(r))) => assert!(r.errors[0].locked.is_some()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_command_for_another_cluster_fails_the_stream() {
    let cluster = MockCluster::builder().cluster_id(5).start().await.unwrap();
    let (mut ctx, leader) = ctx_for(&cluster, b"k");
    ctx.cluster_id = 6;
    let (tx, mut responses) = open(&cluster, leader).await;
    tx.send(batch(vec![(
        1,
        Some(Req::RawGet(kvrpcpb::RawGetRequest {
            context: Some(ctx),
            key: b"k".to_vec(),
            ..Default::default()
        })),
    )]))
    .await
    .unwrap();
    let status = responses.next().await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

/// `count` RawGet commands with ids from `first`, in one request message.
fn raw_gets(ctx: &kvrpcpb::Context, first: u64, count: usize) -> BatchCommandsRequest {
    batch(
        (first..first + count as u64)
            .map(|id| {
                let get = kvrpcpb::RawGetRequest {
                    context: Some(ctx.clone()),
                    key: format!("slow-{id}").into_bytes(),
                    ..Default::default()
                };
                (id, Some(Req::RawGet(get)))
            })
            .collect(),
    )
}

/// Waits until `done` holds of the number of batched commands running.
async fn until_running(cluster: &MockCluster, what: &str, done: impl Fn(usize) -> bool) {
    wait_until(what, || cluster.batch_commands_running(), |n| done(*n)).await;
}

#[tokio::test]
async fn a_stream_runs_a_bounded_number_of_commands_at_once() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let store = cluster.store_ids()[0];
    let (ctx, _) = ctx_for(&cluster, b"slow");
    // Long enough that every admitted command is still running when the last is admitted.
    cluster.add_rule(Rule::on("RawGet").delay(Duration::from_millis(500)));
    let (tx, mut responses) = open(&cluster, store).await;
    let total = 2 * BATCH_COMMANDS_IN_FLIGHT + 10;
    tx.send(raw_gets(&ctx, 1, total)).await.unwrap();
    let got = answers(&mut responses, total, Duration::from_millis(50)).await;
    let ids: std::collections::BTreeSet<u64> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), total, "every command answered once");
    assert_eq!(
        cluster.batch_commands_peak(),
        BATCH_COMMANDS_IN_FLIGHT,
        "the bound is reached and never passed"
    );
    until_running(&cluster, "all answered", |n| n == 0).await;
}

#[tokio::test]
async fn commands_stop_when_their_client_goes_away() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let store = cluster.store_ids()[0];
    let (ctx, _) = ctx_for(&cluster, b"slow");
    cluster.add_rule(Rule::on("RawGet").delay(Duration::from_secs(3600)));
    let (tx, responses) = open(&cluster, store).await;
    tx.send(raw_gets(&ctx, 1, 10)).await.unwrap();
    until_running(&cluster, "all started", |n| n == 10).await;
    drop(tx);
    drop(responses);
    until_running(&cluster, "client gone", |n| n == 0).await;
}
