//! The mock TiKV's raw KV and region checks, against the spec (sections 2, 5, 6), through the
//! raw generated stubs.

use std::time::Duration;

use tikv_client::proto::{errorpb, kvrpcpb, tikvpb};
use tikv_client::testutils::{
    region_error_kind, ApiVersion, Call, Labels, MockCluster, Outcome, Rule,
};
use tikv_client::GrpcCode;

use super::util::{ctx_for, peer_on, tikv};

pub(crate) async fn put(cluster: &MockCluster, key: &[u8], value: &[u8]) {
    let (ctx, leader) = ctx_for(cluster, key);
    let resp = tikv(cluster, leader)
        .await
        .raw_put(kvrpcpb::RawPutRequest {
            context: Some(ctx),
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        resp.region_error.is_none() && resp.error.is_empty(),
        "{resp:?}"
    );
}

pub(crate) async fn get(cluster: &MockCluster, key: &[u8]) -> kvrpcpb::RawGetResponse {
    let (ctx, leader) = ctx_for(cluster, key);
    tikv(cluster, leader)
        .await
        .raw_get(kvrpcpb::RawGetRequest {
            context: Some(ctx),
            key: key.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn region_checks_come_in_tikv_order() {
    let cluster = MockCluster::builder()
        .split_raw(["m"])
        .start()
        .await
        .unwrap();
    let (ctx, leader) = ctx_for(&cluster, b"a");
    let follower = *cluster.store_ids().iter().find(|s| **s != leader).unwrap();
    let region = cluster.region_of_raw_key(b"a").unwrap();
    let send = |store, ctx: kvrpcpb::Context, key: &'static [u8]| {
        let cluster = &cluster;
        async move {
            tikv(cluster, store)
                .await
                .raw_get(kvrpcpb::RawGetRequest {
                    context: Some(ctx),
                    key: key.to_vec(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .region_error
        }
    };
    // The right request succeeds.
    assert_eq!(send(leader, ctx.clone(), b"a").await, None);
    // A peer of another store, sent to the leader: StoreNotMatch wins over everything.
    let mut wrong_store = ctx.clone();
    wrong_store.peer = Some(peer_on(&region, follower));
    wrong_store.region_id = 424242;
    let e = send(leader, wrong_store, b"a").await.unwrap();
    assert_eq!(region_error_kind(&e), "StoreNotMatch");
    assert_eq!(e.store_not_match.unwrap().actual_store_id, leader);
    // Unknown region.
    let mut unknown = ctx.clone();
    unknown.region_id = 424242;
    assert_eq!(
        region_error_kind(&send(leader, unknown, b"a").await.unwrap()),
        "RegionNotFound"
    );
    // Wrong peer id.
    let mut wrong_peer = ctx.clone();
    wrong_peer.peer.as_mut().unwrap().id += 1000;
    assert_eq!(
        region_error_kind(&send(leader, wrong_peer, b"a").await.unwrap()),
        "MismatchPeerId"
    );
    // A follower answers NotLeader naming the leader.
    let mut at_follower = ctx.clone();
    at_follower.peer = Some(peer_on(&region, follower));
    let e = send(follower, at_follower.clone(), b"a").await.unwrap();
    assert_eq!(e.not_leader.unwrap().leader.unwrap().store_id, leader);
    // NotLeader comes before EpochNotMatch.
    at_follower.region_epoch.as_mut().unwrap().version += 5;
    assert_eq!(
        region_error_kind(&send(follower, at_follower, b"a").await.unwrap()),
        "NotLeader"
    );
    // A stale epoch gets the current region (and its neighbours).
    cluster.split_raw("f");
    let e = send(leader, ctx.clone(), b"a").await.unwrap();
    let current = e.epoch_not_match.unwrap().current_regions;
    assert!(current.len() >= 2, "{current:?}");
    assert_eq!(current[0].id, ctx.region_id);
    // A key outside the region.
    let (ctx, leader) = ctx_for(&cluster, b"a");
    let e = send(leader, ctx, b"z").await.unwrap();
    let kn = e.key_not_in_region.unwrap();
    assert_eq!(
        (kn.key.as_slice(), kn.end_key.as_slice()),
        (&b"z"[..], &b"f"[..])
    );
}

#[tokio::test]
async fn point_and_batch_operations() {
    let cluster = MockCluster::builder().start().await.unwrap();
    put(&cluster, b"k1", b"v1").await;
    put(&cluster, b"k2", b"").await;
    assert_eq!(get(&cluster, b"k1").await.value, b"v1");
    let empty = get(&cluster, b"k2").await;
    assert!(
        !empty.not_found && empty.value.is_empty(),
        "an empty value is not absent"
    );
    assert!(get(&cluster, b"nope").await.not_found);

    let (ctx, leader) = ctx_for(&cluster, b"k");
    let mut client = tikv(&cluster, leader).await;
    let pairs = client
        .raw_batch_get(kvrpcpb::RawBatchGetRequest {
            context: Some(ctx.clone()),
            keys: vec![b"k2".to_vec(), b"missing".to_vec(), b"k1".to_vec()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pairs;
    let keys: Vec<&[u8]> = pairs.iter().map(|p| p.key.as_slice()).collect();
    assert_eq!(
        keys,
        vec![&b"k2"[..], &b"k1"[..]],
        "found keys only, in request order"
    );

    client
        .raw_batch_delete(kvrpcpb::RawBatchDeleteRequest {
            context: Some(ctx.clone()),
            keys: vec![b"k1".to_vec(), b"never".to_vec()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(get(&cluster, b"k1").await.not_found);
}

async fn scan_keys(
    client: &mut tikvpb::tikv_client::TikvClient<tonic::transport::Channel>,
    req: kvrpcpb::RawScanRequest,
) -> Vec<String> {
    let resp = client.raw_scan(req).await.unwrap().into_inner();
    resp.kvs
        .into_iter()
        .map(|p| String::from_utf8(p.key).unwrap())
        .collect()
}

#[tokio::test]
async fn scans_follow_tikv_bounds_in_both_directions() {
    let cluster = MockCluster::builder().start().await.unwrap();
    for k in ["a", "b", "c", "d", "e"] {
        put(&cluster, k.as_bytes(), k.as_bytes()).await;
    }
    let (ctx, leader) = ctx_for(&cluster, b"a");
    let mut client = tikv(&cluster, leader).await;
    let scan = |start: &str, end: &str, limit: u32, reverse: bool| kvrpcpb::RawScanRequest {
        context: Some(ctx.clone()),
        start_key: start.as_bytes().to_vec(),
        end_key: end.as_bytes().to_vec(),
        limit,
        reverse,
        ..Default::default()
    };
    assert_eq!(
        scan_keys(&mut client, scan("b", "d", 10, false)).await,
        ["b", "c"]
    );
    assert_eq!(
        scan_keys(&mut client, scan("b", "", 2, false)).await,
        ["b", "c"]
    );
    // Reverse: start is the exclusive upper bound, end the inclusive lower bound.
    assert_eq!(
        scan_keys(&mut client, scan("d", "b", 10, true)).await,
        ["c", "b"]
    );
    // An empty reverse start is the empty key, not +infinity.
    assert!(scan_keys(&mut client, scan("", "", 10, true))
        .await
        .is_empty());
    // limit 0 returns nothing; key_only drops values.
    assert!(scan_keys(&mut client, scan("a", "", 0, false))
        .await
        .is_empty());
    let mut key_only = scan("a", "c", 10, false);
    key_only.key_only = true;
    let resp = client.raw_scan(key_only).await.unwrap().into_inner();
    assert!(resp.kvs.iter().all(|p| p.value.is_empty()) && resp.kvs.len() == 2);

    let range = |s: &str, e: &str| kvrpcpb::KeyRange {
        start_key: s.as_bytes().to_vec(),
        end_key: e.as_bytes().to_vec(),
    };
    let batch = client
        .raw_batch_scan(kvrpcpb::RawBatchScanRequest {
            context: Some(ctx.clone()),
            ranges: vec![range("a", ""), range("c", "e")],
            each_limit: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<String> = batch
        .kvs
        .into_iter()
        .map(|p| String::from_utf8(p.key).unwrap())
        .collect();
    assert_eq!(
        got,
        ["a", "b", "c", "d"],
        "an empty end becomes the next range's start"
    );
    let invalid = client
        .raw_batch_scan(kvrpcpb::RawBatchScanRequest {
            context: Some(ctx.clone()),
            ranges: vec![range("d", "b")],
            each_limit: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(invalid.kvs[0]
        .error
        .as_ref()
        .unwrap()
        .abort
        .contains("Invalid KeyRanges"));
}

#[tokio::test]
async fn scans_are_confined_to_the_region() {
    let cluster = MockCluster::builder()
        .split_raw(["c"])
        .start()
        .await
        .unwrap();
    for k in ["a", "b", "c", "d"] {
        put(&cluster, k.as_bytes(), k.as_bytes()).await;
    }
    let (ctx, leader) = ctx_for(&cluster, b"a");
    let mut client = tikv(&cluster, leader).await;
    let resp = client
        .raw_scan(kvrpcpb::RawScanRequest {
            context: Some(ctx.clone()),
            start_key: b"a".to_vec(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.kvs.len(), 2, "clamped at the region end");
    let outside = client
        .raw_scan(kvrpcpb::RawScanRequest {
            context: Some(ctx),
            start_key: b"d".to_vec(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        region_error_kind(&outside.region_error.unwrap()),
        "KeyNotInRegion"
    );
}

#[tokio::test]
async fn delete_range_checks_its_bounds() {
    let cluster = MockCluster::builder().start().await.unwrap();
    for k in ["a", "b", "c"] {
        put(&cluster, k.as_bytes(), b"v").await;
    }
    let (ctx, leader) = ctx_for(&cluster, b"a");
    let mut client = tikv(&cluster, leader).await;
    let inverted = client
        .raw_delete_range(kvrpcpb::RawDeleteRangeRequest {
            context: Some(ctx.clone()),
            start_key: b"c".to_vec(),
            end_key: b"a".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let e = inverted.region_error.unwrap();
    assert!(e.message.contains("invalid delete range command"), "{e:?}");
    assert_eq!(region_error_kind(&e), "Other");
    client
        .raw_delete_range(kvrpcpb::RawDeleteRangeRequest {
            context: Some(ctx),
            start_key: b"a".to_vec(),
            end_key: b"c".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(get(&cluster, b"a").await.not_found);
    assert!(get(&cluster, b"b").await.not_found);
    assert!(!get(&cluster, b"c").await.not_found);
}

#[tokio::test]
async fn ttl_is_an_error_on_v1_and_expires_on_v1ttl() {
    let v1 = MockCluster::builder().start().await.unwrap();
    let (ctx, leader) = ctx_for(&v1, b"k");
    let resp = tikv(&v1, leader)
        .await
        .raw_put(kvrpcpb::RawPutRequest {
            context: Some(ctx),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ttl: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.error,
        "ttl is not enabled, but get put request with ttl"
    );

    let cluster = MockCluster::builder()
        .api_version(ApiVersion::V1Ttl)
        .start()
        .await
        .unwrap();
    let (ctx, leader) = ctx_for(&cluster, b"k");
    let mut client = tikv(&cluster, leader).await;
    client
        .raw_batch_put(kvrpcpb::RawBatchPutRequest {
            context: Some(ctx.clone()),
            pairs: vec![
                kvrpcpb::KvPair {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                },
                kvrpcpb::KvPair {
                    key: b"short".to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                },
            ],
            ttls: vec![100, 1],
            ..Default::default()
        })
        .await
        .unwrap();
    let ttl = client
        .raw_get_key_ttl(kvrpcpb::RawGetKeyTtlRequest {
            context: Some(ctx.clone()),
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ttl.ttl > 90 && ttl.ttl <= 100, "{ttl:?}");
    // TTLs are wall-clock seconds: after at most 2 s the 1-second value is gone.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(get(&cluster, b"short").await.not_found);
    assert!(!get(&cluster, b"k").await.not_found);
}

#[tokio::test]
async fn compare_and_swap() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let (ctx, leader) = ctx_for(&cluster, b"k");
    let mut client = tikv(&cluster, leader).await;
    let cas = |prev: Option<&[u8]>, value: &[u8]| kvrpcpb::RawCasRequest {
        context: Some(ctx.clone()),
        key: b"k".to_vec(),
        value: value.to_vec(),
        previous_not_exist: prev.is_none(),
        previous_value: prev.unwrap_or_default().to_vec(),
        ..Default::default()
    };
    let r = client
        .raw_compare_and_swap(cas(None, b"1"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.succeed && r.previous_not_exist);
    let r = client
        .raw_compare_and_swap(cas(None, b"2"))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.succeed && !r.previous_not_exist && r.previous_value == b"1");
    let r = client
        .raw_compare_and_swap(cas(Some(b""), b"2"))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.succeed, "an empty expected value is not 'absent'");
    let r = client
        .raw_compare_and_swap(cas(Some(b"1"), b"2"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.succeed && r.previous_value == b"1");
    let mut delete = cas(Some(b"2"), b"");
    delete.delete = true;
    assert!(
        client
            .raw_compare_and_swap(delete)
            .await
            .unwrap()
            .into_inner()
            .succeed
    );
    assert!(get(&cluster, b"k").await.not_found);
}

#[tokio::test]
async fn checksum_is_crc64_xor_over_key_and_value() {
    let cluster = MockCluster::builder().start().await.unwrap();
    put(&cluster, b"a", b"1").await;
    put(&cluster, b"b", b"22").await;
    let (ctx, leader) = ctx_for(&cluster, b"a");
    let resp = tikv(&cluster, leader)
        .await
        .raw_checksum(kvrpcpb::RawChecksumRequest {
            context: Some(ctx),
            ranges: vec![kvrpcpb::KeyRange::default()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.total_kvs, 2);
    assert_eq!(resp.total_bytes, 5);
    assert_eq!(resp.checksum, crc64_xz(b"a1") ^ crc64_xz(b"b22"));
}

/// An independent bitwise CRC-64/XZ, to check the mock's table-driven one.
fn crc64_xz(data: &[u8]) -> u64 {
    let mut crc = !0u64;
    for byte in data {
        crc ^= u64::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xC96C_5795_D787_0F42
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn api_v2_validates_key_mode_and_version() {
    let cluster = MockCluster::builder()
        .api_version(ApiVersion::V2)
        .start()
        .await
        .unwrap();
    let key = b"r\0\0\0user".to_vec();
    let (mut ctx, leader) = ctx_for(&cluster, &key);
    let mut client = tikv(&cluster, leader).await;
    let req = |ctx: &kvrpcpb::Context, key: &[u8]| kvrpcpb::RawPutRequest {
        context: Some(ctx.clone()),
        key: key.to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    let resp = client.raw_put(req(&ctx, &key)).await.unwrap().into_inner();
    assert!(resp.error.starts_with("Api version in request does not match with TiKV storage, cmd: raw_put, storage: V2, request: V1"), "{}", resp.error);
    ctx.api_version = kvrpcpb::ApiVersion::V2 as i32;
    assert!(client
        .raw_put(req(&ctx, &key))
        .await
        .unwrap()
        .into_inner()
        .error
        .is_empty());
    let (mut xctx, xleader) = ctx_for(&cluster, b"x\0\0\0k");
    xctx.api_version = kvrpcpb::ApiVersion::V2 as i32;
    let resp = tikv(&cluster, xleader)
        .await
        .raw_put(req(&xctx, b"x\0\0\0k"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.error,
        "Key mode mismatched with the request mode, cmd: raw_put, storage: V2, key: 780000006B"
    );
}

#[tokio::test]
async fn api_v2_raw_writes_wait_for_a_new_leader_to_sync_its_max_ts() {
    let cluster = MockCluster::builder()
        .api_version(ApiVersion::V2)
        .stores(2)
        .start()
        .await
        .unwrap();
    cluster.set_max_ts_sync_delay(Duration::from_millis(300));
    let key = b"r\0\0\0user".to_vec();
    let (_, old) = ctx_for(&cluster, &key);
    let region = cluster.region_of_raw_key(&key).unwrap();
    let new = cluster.store_ids().into_iter().find(|s| *s != old).unwrap();
    cluster.transfer_leader(region.id, new).unwrap();
    let (mut ctx, leader) = ctx_for(&cluster, &key);
    assert_eq!(leader, new);
    ctx.api_version = kvrpcpb::ApiVersion::V2 as i32;
    let mut client = tikv(&cluster, new).await;
    let write = |ctx: &kvrpcpb::Context| kvrpcpb::RawPutRequest {
        context: Some(ctx.clone()),
        key: key.clone(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    let resp = client.raw_put(write(&ctx)).await.unwrap().into_inner();
    let e = resp.region_error.expect("refused while not synced");
    assert!(e.max_timestamp_not_synced.is_some(), "{e:?}");
    let delete = client
        .raw_batch_delete(kvrpcpb::RawBatchDeleteRequest {
            context: Some(ctx.clone()),
            keys: vec![key.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(delete
        .region_error
        .unwrap()
        .max_timestamp_not_synced
        .is_some());
    // Reads and delete-range carry no causal timestamp: served.
    let read = client
        .raw_get(kvrpcpb::RawGetRequest {
            context: Some(ctx.clone()),
            key: key.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(read.region_error.is_none() && read.not_found, "{read:?}");
    let range = client
        .raw_delete_range(kvrpcpb::RawDeleteRangeRequest {
            context: Some(ctx.clone()),
            start_key: b"r\0\0\0a".to_vec(),
            end_key: b"r\0\0\0z".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        range.region_error.is_none() && range.error.is_empty(),
        "{range:?}"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let resp = client.raw_put(write(&ctx)).await.unwrap().into_inner();
    assert!(
        resp.region_error.is_none() && resp.error.is_empty(),
        "{resp:?}"
    );
}

#[tokio::test]
async fn raw_writes_refuse_keys_over_8_kib() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let big = vec![b'k'; 8193];
    let (ctx, leader) = ctx_for(&cluster, &big);
    let mut client = tikv(&cluster, leader).await;
    let write = |key: &[u8]| kvrpcpb::RawPutRequest {
        context: Some(ctx.clone()),
        key: key.to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    let resp = client.raw_put(write(&big)).await.unwrap().into_inner();
    assert_eq!(resp.error, "max key size exceeded, size: 8193, limit: 8192");
    assert!(get(&cluster, &big).await.not_found, "nothing written");
    let resp = client
        .raw_put(write(&big[..8192]))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.error.is_empty(), "8192 bytes fit: {resp:?}");
}

#[tokio::test]
async fn fault_rules_and_the_call_log() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let (ctx, leader) = ctx_for(&cluster, b"k");
    let mut client = tikv(&cluster, leader).await;
    let busy = errorpb::Error {
        message: "busy".into(),
        server_is_busy: Some(errorpb::ServerIsBusy {
            reason: "scheduler is busy".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let rule = cluster.add_rule(Rule::on("RawGet").nth(2).region_error(busy));
    cluster.add_rule(
        Rule::on("RawPut")
            .key_prefix("fail")
            .times(1)
            .status(GrpcCode::Unavailable, "injected"),
    );
    let get = || kvrpcpb::RawGetRequest {
        context: Some(ctx.clone()),
        key: b"k".to_vec(),
        ..Default::default()
    };
    assert!(client
        .raw_get(get())
        .await
        .unwrap()
        .into_inner()
        .region_error
        .is_none());
    let e = client
        .raw_get(get())
        .await
        .unwrap()
        .into_inner()
        .region_error
        .unwrap();
    assert_eq!(region_error_kind(&e), "ServerIsBusy");
    assert!(client
        .raw_get(get())
        .await
        .unwrap()
        .into_inner()
        .region_error
        .is_none());
    assert!(cluster.remove_rule(rule));

    let put = |key: &[u8]| kvrpcpb::RawPutRequest {
        context: Some(ctx.clone()),
        key: key.to_vec(),
        ..Default::default()
    };
    let status = client.raw_put(put(b"fail-1")).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::Unavailable, "injected")
    );
    assert!(client.raw_put(put(b"fail-2")).await.is_ok(), "times(1)");

    let region = ctx.region_id;
    let call = |method, outcome, key: &[u8]| Call {
        method,
        store: leader,
        region,
        outcome,
        labels: Labels::default(),
        batched: false,
        first_key: key.to_vec(),
    };
    assert_eq!(
        cluster.calls(),
        vec![
            call("RawGet", Outcome::Ok, b"k"),
            call("RawGet", Outcome::RegionError("ServerIsBusy"), b"k"),
            call("RawGet", Outcome::Ok, b"k"),
            call("RawPut", Outcome::Status(GrpcCode::Unavailable), b"fail-1"),
            call("RawPut", Outcome::Ok, b"fail-2"),
        ]
    );
}

#[tokio::test]
async fn a_stopped_store_refuses_connections_and_keeps_its_data() {
    let cluster = MockCluster::builder().start().await.unwrap();
    put(&cluster, b"k", b"v").await;
    let (_, leader) = ctx_for(&cluster, b"k");
    let addr = cluster.store_addrs()[cluster
        .store_ids()
        .iter()
        .position(|s| *s == leader)
        .unwrap()]
    .clone();
    assert!(cluster.stop_store(leader));
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "{addr} still accepts connections");
    cluster.start_store(leader).await.unwrap();
    assert_eq!(get(&cluster, b"k").await.value, b"v");
}

#[tokio::test]
async fn leader_transfer_and_merge_change_routing() {
    let cluster = MockCluster::builder()
        .split_raw(["m"])
        .start()
        .await
        .unwrap();
    let (ctx, leader) = ctx_for(&cluster, b"a");
    let other = *cluster.store_ids().iter().find(|s| **s != leader).unwrap();
    cluster.transfer_leader(ctx.region_id, other).unwrap();
    let mut old = tikv(&cluster, leader).await;
    let req = kvrpcpb::RawGetRequest {
        context: Some(ctx.clone()),
        key: b"a".to_vec(),
        ..Default::default()
    };
    let e = old
        .raw_get(req)
        .await
        .unwrap()
        .into_inner()
        .region_error
        .unwrap();
    assert_eq!(e.not_leader.unwrap().leader.unwrap().store_id, other);

    let right = cluster.region_of_raw_key(b"z").unwrap().id;
    cluster.merge(ctx.region_id, right).unwrap();
    assert_eq!(cluster.regions().len(), 1);
    let (ctx2, leader2) = ctx_for(&cluster, b"z");
    assert_eq!(
        ctx2.region_id, ctx.region_id,
        "the left region absorbed the right one"
    );
    assert_eq!(leader2, other);
}

fn pair(key: &[u8], value: &[u8]) -> kvrpcpb::KvPair {
    kvrpcpb::KvPair {
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    }
}

fn scanned_keys(kvs: Vec<kvrpcpb::KvPair>) -> Vec<String> {
    kvs.into_iter()
        .map(|p| {
            assert!(p.error.is_none(), "{p:?}");
            String::from_utf8(p.key).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn column_families_outside_the_known_set_are_refused_by_name() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let (ctx, leader) = ctx_for(&cluster, b"k");
    let mut client = tikv(&cluster, leader).await;
    let put_cf = |cf: &str| kvrpcpb::RawPutRequest {
        context: Some(ctx.clone()),
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        cf: cf.into(),
        ..Default::default()
    };
    let resp = client.raw_put(put_cf("nope")).await.unwrap().into_inner();
    assert_eq!(resp.error, "invalid cf name: nope");
    assert!(get(&cluster, b"k").await.not_found, "nothing written");
    // "default", "lock" and "write" are accepted ("" is default).
    for cf in ["default", "lock", "write"] {
        let resp = client.raw_put(put_cf(cf)).await.unwrap().into_inner();
        assert!(resp.error.is_empty(), "{cf}: {resp:?}");
    }
    let resp = client
        .raw_get(kvrpcpb::RawGetRequest {
            context: Some(ctx.clone()),
            key: b"k".to_vec(),
            cf: "bogus".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.error, "invalid cf name: bogus");
    // RawBatchGet has no error string: the failure is one pair with error.abort.
    let resp = client
        .raw_batch_get(kvrpcpb::RawBatchGetRequest {
            context: Some(ctx.clone()),
            keys: vec![b"k".to_vec()],
            cf: "bogus".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.pairs.len(), 1, "{resp:?}");
    assert_eq!(
        resp.pairs[0].error.as_ref().unwrap().abort,
        "invalid cf name: bogus"
    );
}

#[tokio::test]
async fn api_v2_requires_an_empty_column_family() {
    let cluster = MockCluster::builder()
        .api_version(ApiVersion::V2)
        .start()
        .await
        .unwrap();
    let key = b"r\0\0\0k".to_vec();
    let (mut ctx, leader) = ctx_for(&cluster, &key);
    ctx.api_version = kvrpcpb::ApiVersion::V2 as i32;
    let mut client = tikv(&cluster, leader).await;
    let put_cf = |cf: &str| kvrpcpb::RawPutRequest {
        context: Some(ctx.clone()),
        key: key.clone(),
        value: b"v".to_vec(),
        cf: cf.into(),
        ..Default::default()
    };
    let resp = client
        .raw_put(put_cf("default"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.error, "cf is deprecated in API V2, cf name: default");
    let resp = client.raw_put(put_cf("")).await.unwrap().into_inner();
    assert!(
        resp.error.is_empty() && resp.region_error.is_none(),
        "{resp:?}"
    );
}

#[tokio::test]
async fn writes_outside_the_region_get_key_not_in_region_and_write_nothing() {
    let cluster = MockCluster::builder()
        .split_raw(["m"])
        .start()
        .await
        .unwrap();
    let (ctx, leader) = ctx_for(&cluster, b"a");
    let mut client = tikv(&cluster, leader).await;
    let kn = |e: Option<errorpb::Error>| {
        let e = e.expect("a region error");
        let kn = e.key_not_in_region.expect("key_not_in_region");
        assert_eq!(kn.key, b"z", "names the offending key");
        assert_eq!(kn.end_key, b"m", "and the region's bounds");
    };
    kn(client
        .raw_put(kvrpcpb::RawPutRequest {
            context: Some(ctx.clone()),
            key: b"z".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .region_error);
    kn(client
        .raw_batch_put(kvrpcpb::RawBatchPutRequest {
            context: Some(ctx.clone()),
            pairs: vec![pair(b"b", b"v"), pair(b"z", b"v")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .region_error);
    assert!(
        get(&cluster, b"b").await.not_found,
        "a batch with one key outside writes nothing"
    );
    assert!(get(&cluster, b"z").await.not_found);

    put(&cluster, b"z", b"v").await;
    kn(client
        .raw_delete(kvrpcpb::RawDeleteRequest {
            context: Some(ctx.clone()),
            key: b"z".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .region_error);
    kn(client
        .raw_batch_delete(kvrpcpb::RawBatchDeleteRequest {
            context: Some(ctx.clone()),
            keys: vec![b"z".to_vec()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .region_error);
    assert_eq!(get(&cluster, b"z").await.value, b"v", "not deleted");
}

#[tokio::test]
async fn batch_get_answers_a_key_outside_the_region_with_a_per_key_abort() {
    let cluster = MockCluster::builder()
        .split_raw(["m"])
        .start()
        .await
        .unwrap();
    put(&cluster, b"a", b"1").await;
    put(&cluster, b"z", b"2").await;
    let (ctx, leader) = ctx_for(&cluster, b"a");
    let resp = tikv(&cluster, leader)
        .await
        .raw_batch_get(kvrpcpb::RawBatchGetRequest {
            context: Some(ctx),
            keys: vec![b"a".to_vec(), b"z".to_vec()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.region_error.is_none(), "not a region error: {resp:?}");
    assert_eq!(resp.pairs.len(), 2, "{resp:?}");
    assert_eq!(
        (&resp.pairs[0].key[..], &resp.pairs[0].value[..]),
        (&b"a"[..], &b"1"[..])
    );
    let outside = &resp.pairs[1];
    assert!(
        outside.key.is_empty() && outside.value.is_empty(),
        "only error.abort: {outside:?}"
    );
    let e = outside.error.as_ref().unwrap();
    assert!(!e.abort.is_empty() && e.locked.is_none(), "{e:?}");
}

#[tokio::test]
async fn a_v1_server_refuses_ttl_in_batch_put_and_cas_and_errors_on_get_key_ttl() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let (ctx, leader) = ctx_for(&cluster, b"k");
    let mut client = tikv(&cluster, leader).await;
    const TTL_ERROR: &str = "ttl is not enabled, but get put request with ttl";
    let resp = client
        .raw_batch_put(kvrpcpb::RawBatchPutRequest {
            context: Some(ctx.clone()),
            pairs: vec![pair(b"k", b"v"), pair(b"k2", b"v")],
            ttls: vec![0, 10],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.error, TTL_ERROR);
    assert!(get(&cluster, b"k").await.not_found, "nothing written");
    // An all-zero `ttls` is no TTL and is accepted.
    let resp = client
        .raw_batch_put(kvrpcpb::RawBatchPutRequest {
            context: Some(ctx.clone()),
            pairs: vec![pair(b"k", b"v")],
            ttls: vec![0],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.error.is_empty(), "{resp:?}");

    let resp = client
        .raw_compare_and_swap(kvrpcpb::RawCasRequest {
            context: Some(ctx.clone()),
            key: b"c".to_vec(),
            value: b"v".to_vec(),
            previous_not_exist: true,
            ttl: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.error, TTL_ERROR);
    assert!(!resp.succeed);
    assert!(get(&cluster, b"c").await.not_found, "nothing written");

    // Real TiKV panics; the mock answers with an error instead of a TTL.
    let resp = client
        .raw_get_key_ttl(kvrpcpb::RawGetKeyTtlRequest {
            context: Some(ctx.clone()),
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!resp.error.is_empty(), "{resp:?}");
    assert_eq!((resp.ttl, resp.not_found), (0, false));
}

#[tokio::test]
async fn compare_and_swap_treats_an_expired_value_as_absent() {
    let cluster = MockCluster::builder()
        .api_version(ApiVersion::V1Ttl)
        .start()
        .await
        .unwrap();
    let (ctx, leader) = ctx_for(&cluster, b"k");
    let mut client = tikv(&cluster, leader).await;
    let resp = client
        .raw_put(kvrpcpb::RawPutRequest {
            context: Some(ctx.clone()),
            key: b"k".to_vec(),
            value: b"old".to_vec(),
            ttl: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.error.is_empty(), "{resp:?}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let ttl = client
        .raw_get_key_ttl(kvrpcpb::RawGetKeyTtlRequest {
            context: Some(ctx.clone()),
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ttl.not_found, "an expired key has no TTL: {ttl:?}");
    let cas = |prev: Option<&[u8]>| kvrpcpb::RawCasRequest {
        context: Some(ctx.clone()),
        key: b"k".to_vec(),
        value: b"new".to_vec(),
        previous_not_exist: prev.is_none(),
        previous_value: prev.unwrap_or_default().to_vec(),
        ..Default::default()
    };
    let r = client
        .raw_compare_and_swap(cas(Some(b"old")))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !r.succeed && r.previous_not_exist && r.previous_value.is_empty(),
        "the expired value does not match: {r:?}"
    );
    let r = client
        .raw_compare_and_swap(cas(None))
        .await
        .unwrap()
        .into_inner();
    assert!(r.succeed && r.previous_not_exist, "{r:?}");
    assert_eq!(get(&cluster, b"k").await.value, b"new");
}

#[tokio::test]
async fn batch_put_broadcasts_a_single_ttl_refuses_mismatched_lengths_and_ignores_the_scalar_ttl() {
    let cluster = MockCluster::builder()
        .api_version(ApiVersion::V1Ttl)
        .start()
        .await
        .unwrap();
    let (ctx, leader) = ctx_for(&cluster, b"a");
    let mut client = tikv(&cluster, leader).await;
    let batch =
        |pairs: Vec<kvrpcpb::KvPair>, ttls: Vec<u64>, ttl: u64| kvrpcpb::RawBatchPutRequest {
            context: Some(ctx.clone()),
            pairs,
            ttls,
            ttl,
            ..Default::default()
        };
    let key_ttl = |key: &[u8]| kvrpcpb::RawGetKeyTtlRequest {
        context: Some(ctx.clone()),
        key: key.to_vec(),
        ..Default::default()
    };
    // One ttl applies to every pair.
    let resp = client
        .raw_batch_put(batch(
            vec![pair(b"a", b"1"), pair(b"b", b"2"), pair(b"c", b"3")],
            vec![100],
            0,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.error.is_empty(), "{resp:?}");
    for k in [b"a", b"b", b"c"] {
        let ttl = client
            .raw_get_key_ttl(key_ttl(k))
            .await
            .unwrap()
            .into_inner();
        assert!(
            !ttl.not_found && ttl.ttl > 90 && ttl.ttl <= 100,
            "{k:?}: {ttl:?}"
        );
    }
    // Neither empty, nor 1, nor the number of pairs.
    let resp = client
        .raw_batch_put(batch(
            vec![pair(b"d", b"1"), pair(b"e", b"2"), pair(b"f", b"3")],
            vec![10, 20],
            0,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.error,
        "The length of ttls does not equal to the length of pairs"
    );
    assert!(get(&cluster, b"d").await.not_found, "nothing written");
    // The deprecated scalar `ttl` is ignored: no TTL is stored.
    let resp = client
        .raw_batch_put(batch(vec![pair(b"g", b"1")], vec![], 100))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.error.is_empty(), "{resp:?}");
    let ttl = client
        .raw_get_key_ttl(key_ttl(b"g"))
        .await
        .unwrap()
        .into_inner();
    assert!(!ttl.not_found && ttl.ttl == 0, "{ttl:?}");
}

#[tokio::test]
async fn a_v1_server_ignores_the_deprecated_scalar_ttl_of_batch_put() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let (ctx, leader) = ctx_for(&cluster, b"k");
    let resp = tikv(&cluster, leader)
        .await
        .raw_batch_put(kvrpcpb::RawBatchPutRequest {
            context: Some(ctx),
            pairs: vec![pair(b"k", b"v")],
            ttl: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.error.is_empty(), "not a TTL error: {resp:?}");
    assert_eq!(get(&cluster, b"k").await.value, b"v");
}

#[tokio::test]
async fn batch_scan_truncates_each_range_to_each_limit_in_both_directions() {
    let cluster = MockCluster::builder().start().await.unwrap();
    for k in ["a", "b", "c", "d", "e", "f"] {
        put(&cluster, k.as_bytes(), k.as_bytes()).await;
    }
    let (ctx, leader) = ctx_for(&cluster, b"a");
    let mut client = tikv(&cluster, leader).await;
    let range = |s: &str, e: &str| kvrpcpb::KeyRange {
        start_key: s.as_bytes().to_vec(),
        end_key: e.as_bytes().to_vec(),
    };
    let batch_scan = |ranges: Vec<kvrpcpb::KeyRange>, each_limit: u32, reverse: bool| {
        kvrpcpb::RawBatchScanRequest {
            context: Some(ctx.clone()),
            ranges,
            each_limit,
            reverse,
            ..Default::default()
        }
    };
    let resp = client
        .raw_batch_scan(batch_scan(vec![range("a", "d"), range("d", "")], 2, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scanned_keys(resp.kvs), ["a", "b", "d", "e"]);
    // Reverse: each range's start is its exclusive upper bound, end its inclusive lower
    // bound; each range descends, ranges come in request order.
    let resp = client
        .raw_batch_scan(batch_scan(vec![range("c", "a"), range("f", "d")], 5, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scanned_keys(resp.kvs), ["b", "a", "e", "d"]);
    let resp = client
        .raw_batch_scan(batch_scan(vec![range("f", "a"), range("c", "")], 1, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scanned_keys(resp.kvs), ["e", "b"]);
    // Reverse, an empty end becomes the next range's start; the last range is unbounded.
    let resp = client
        .raw_batch_scan(batch_scan(vec![range("f", ""), range("c", "")], 5, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scanned_keys(resp.kvs), ["e", "d", "c", "b", "a"]);
    // A forward-ordered range in a reverse scan is invalid.
    let resp = client
        .raw_batch_scan(batch_scan(vec![range("a", "c")], 5, true))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.kvs[0]
        .error
        .as_ref()
        .unwrap()
        .abort
        .contains("Invalid KeyRanges"));
}

#[tokio::test]
async fn checksum_refuses_algorithms_other_than_crc64_xor() {
    let cluster = MockCluster::builder().start().await.unwrap();
    put(&cluster, b"a", b"1").await;
    let (ctx, leader) = ctx_for(&cluster, b"a");
    let resp = tikv(&cluster, leader)
        .await
        .raw_checksum(kvrpcpb::RawChecksumRequest {
            context: Some(ctx),
            algorithm: kvrpcpb::ChecksumAlgorithm::Crc64Xor as i32 + 1,
            ranges: vec![kvrpcpb::KeyRange::default()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!resp.error.is_empty(), "{resp:?}");
    assert_eq!((resp.checksum, resp.total_kvs, resp.total_bytes), (0, 0, 0));
}

#[tokio::test]
async fn api_v2_scans_with_an_empty_bound_are_refused() {
    let cluster = MockCluster::builder()
        .api_version(ApiVersion::V2)
        .start()
        .await
        .unwrap();
    let key = b"r\0\0\0a".to_vec();
    let (mut ctx, leader) = ctx_for(&cluster, &key);
    ctx.api_version = kvrpcpb::ApiVersion::V2 as i32;
    let mut client = tikv(&cluster, leader).await;
    let resp = client
        .raw_put(kvrpcpb::RawPutRequest {
            context: Some(ctx.clone()),
            key: key.clone(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.error.is_empty(), "{resp:?}");
    let scan = |start: &[u8], end: &[u8], reverse: bool| kvrpcpb::RawScanRequest {
        context: Some(ctx.clone()),
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        limit: 10,
        reverse,
        ..Default::default()
    };
    let refused = |kvs: &[kvrpcpb::KvPair], cmd: &str| {
        assert_eq!(kvs.len(), 1, "{kvs:?}");
        let abort = &kvs[0].error.as_ref().expect("error.abort").abort;
        let prefix =
            format!("Key mode mismatched with the request mode, cmd: {cmd}, storage: V2, range: ");
        assert!(abort.starts_with(&prefix), "{abort}");
    };
    // Forward with an empty end, and reverse with an empty lower bound (its end_key).
    let resp = client
        .raw_scan(scan(b"r\0\0\0", b"", false))
        .await
        .unwrap()
        .into_inner();
    refused(&resp.kvs, "raw_scan");
    let resp = client
        .raw_scan(scan(b"r\0\0\x01", b"", true))
        .await
        .unwrap()
        .into_inner();
    refused(&resp.kvs, "raw_scan");
    // An empty start is refused too.
    let resp = client
        .raw_scan(scan(b"", b"s", false))
        .await
        .unwrap()
        .into_inner();
    refused(&resp.kvs, "raw_scan");
    let resp = client
        .raw_batch_scan(kvrpcpb::RawBatchScanRequest {
            context: Some(ctx.clone()),
            ranges: vec![kvrpcpb::KeyRange {
                start_key: b"r\0\0\0".to_vec(),
                end_key: Vec::new(),
            }],
            each_limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    refused(&resp.kvs, "raw_batch_scan");
    // An explicit end (the keyspace end, or the next mode byte) is accepted.
    for end in [&b"r\0\0\x01"[..], &b"s"[..]] {
        let resp = client
            .raw_scan(scan(b"r\0\0\0", end, false))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(scanned_keys(resp.kvs), ["r\0\0\0a"]);
    }
}

/// TiKV sends responses uncompressed unless `server.grpc-compression-type` says otherwise,
/// whatever the client accepts; the mock does the same unless asked to compress.
#[tokio::test]
async fn responses_are_compressed_only_when_configured() {
    use tonic::codec::CompressionEncoding;

    for compress in [false, true] {
        let cluster = MockCluster::builder()
            .compress_responses(compress)
            .start()
            .await
            .unwrap();
        put(&cluster, b"k", &[b'v'; 256]).await;
        let (ctx, leader) = ctx_for(&cluster, b"k");
        let resp = tikv(&cluster, leader)
            .await
            .accept_compressed(CompressionEncoding::Gzip)
            .raw_get(kvrpcpb::RawGetRequest {
                context: Some(ctx),
                key: b"k".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
        let encoding = resp.metadata().get("grpc-encoding").cloned();
        assert_eq!(
            encoding.as_ref().and_then(|e| e.to_str().ok()),
            compress.then_some("gzip"),
            "compress_responses({compress})"
        );
        assert_eq!(resp.into_inner().value, vec![b'v'; 256]);
    }
}
