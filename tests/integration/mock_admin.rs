//! The mock's admin HTTP API (docs/mock-admin.md) over real HTTP/1.1, checked through the raw
//! generated stubs: rules added over HTTP fire on gRPC calls, the call log is readable, and
//! splits, leader moves and store restarts take effect.

use serde_json::{json, Value};
use tikv_client::proto::kvrpcpb;
use tikv_client::testutils::{region_error_kind, MockCluster};

use super::mock_raw::get;
use super::util::{ctx_for, http, tikv, HttpReply};

/// An admin API call to PD's leader; a null `body` sends none.
async fn admin(cluster: &MockCluster, method: &str, path: &str, body: &Value) -> HttpReply {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let path = format!("/mock/api/v1/{path}");
    http(&cluster.pd_endpoint(), method, &path, &[], &body).await
}

/// The status of a bodiless admin API call.
async fn status(cluster: &MockCluster, method: &str, path: &str) -> u16 {
    admin(cluster, method, path, &Value::Null).await.status
}

/// `POST stores/{store}/{action}`.
async fn store_action(cluster: &MockCluster, store: u64, action: &str) -> HttpReply {
    let path = format!("stores/{store}/{action}");
    admin(cluster, "POST", &path, &Value::Null).await
}

/// The JSON a GET of `path` answers.
async fn listed(cluster: &MockCluster, path: &str) -> Value {
    admin(cluster, "GET", path, &Value::Null).await.json()
}

async fn raw_put(
    cluster: &MockCluster,
    key: &[u8],
) -> Result<kvrpcpb::RawPutResponse, tonic::Status> {
    let (ctx, leader) = ctx_for(cluster, key);
    tikv(cluster, leader)
        .await
        .raw_put(kvrpcpb::RawPutRequest {
            context: Some(ctx),
            key: key.to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn rules_added_over_http_fire_on_grpc_calls_until_removed() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let busy = admin(
        &cluster,
        "POST",
        "rules",
        &json!({"method": "RawGet", "key_prefix": "k", "times": 1, "region_error": "ServerIsBusy"}),
    )
    .await;
    assert_eq!(busy.status, 200, "{busy:?}");
    let busy_id = busy.json()["id"].as_u64().unwrap();
    let e = get(&cluster, b"k1").await.region_error.unwrap();
    assert_eq!(region_error_kind(&e), "ServerIsBusy");
    assert!(
        get(&cluster, b"k1").await.region_error.is_none(),
        "times: 1"
    );

    let unavailable = admin(
        &cluster,
        "POST",
        "rules",
        &json!({"method": "RawPut", "status": {"code": "Unavailable", "message": "injected"}}),
    )
    .await
    .json();
    let refused = raw_put(&cluster, b"k").await.unwrap_err();
    assert_eq!(
        (refused.code(), refused.message()),
        (tonic::Code::Unavailable, "injected")
    );

    assert_eq!(
        listed(&cluster, "rules").await,
        json!([
            {"id": busy_id, "method": "RawGet", "key_prefix": "k", "times": 1,
             "region_error": "ServerIsBusy", "fired": 1},
            {"id": unavailable["id"], "method": "RawPut",
             "status": {"code": "Unavailable", "message": "injected"}, "fired": 1},
        ])
    );
    let path = format!("rules/{}", unavailable["id"]);
    assert_eq!(status(&cluster, "DELETE", &path).await, 200);
    assert_eq!(status(&cluster, "DELETE", &path).await, 404);
    raw_put(&cluster, b"k").await.unwrap();

    admin(&cluster, "POST", "rules", &json!({"lose_reply": true})).await;
    assert_eq!(status(&cluster, "DELETE", "rules").await, 200);
    assert_eq!(listed(&cluster, "rules").await, json!([]));
    raw_put(&cluster, b"k").await.unwrap();
}

#[tokio::test]
async fn the_call_log_is_listed_filtered_and_cleared() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    admin(
        &cluster,
        "POST",
        "rules",
        &json!({"method": "RawPut", "lose_reply": true, "nth": 1}),
    )
    .await;
    assert!(raw_put(&cluster, b"lost").await.is_err());
    assert_eq!(get(&cluster, b"lost").await.value, b"v", "the put applied");
    let store = cluster.store_ids()[0];
    let region = cluster.region_of_raw_key(b"lost").unwrap().id;

    let puts = admin(&cluster, "GET", "calls?method=RawPut", &Value::Null).await;
    assert_eq!(puts.status, 200);
    let puts = puts.json();
    assert_eq!(puts.as_array().unwrap().len(), 1, "{puts}");
    assert_eq!(puts[0]["outcome"], "ReplyLost");
    assert_eq!(
        (&puts[0]["store"], &puts[0]["region"], &puts[0]["batched"]),
        (&json!(store), &json!(region), &json!(false))
    );
    let all = listed(&cluster, "calls").await;
    let methods: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["RawPut", "RawGet"]);
    assert_eq!(all[1]["outcome"], "Ok");

    assert_eq!(status(&cluster, "DELETE", "calls").await, 200);
    assert_eq!(listed(&cluster, "calls").await, json!([]));
    assert!(cluster.calls().is_empty());
}

#[tokio::test]
async fn splits_leader_moves_and_store_restarts_over_http() {
    let cluster = MockCluster::builder().stores(2).start().await.unwrap();
    let split = admin(
        &cluster,
        "POST",
        "split",
        &json!({"key": "m", "kind": "raw"}),
    )
    .await;
    assert_eq!(split.status, 200, "{split:?}");
    let regions = cluster.regions();
    assert_eq!(regions.len(), 2);
    assert_eq!(split.json()["region"]["id"], regions[0].id);
    let right = cluster.region_of_raw_key(b"m").unwrap();
    assert_eq!(right.start_key, b"m");
    // The same boundary again: nothing to split.
    let again = admin(
        &cluster,
        "POST",
        "split",
        &json!({"key": "0x6d", "kind": "raw"}),
    )
    .await;
    assert_eq!(again.json(), json!({"region": null}));
    let txn = admin(
        &cluster,
        "POST",
        "split",
        &json!({"key": "t", "kind": "txn"}),
    )
    .await;
    assert_eq!(txn.status, 200);
    assert_eq!(cluster.regions().len(), 3);

    // The txn split cut the region of "m" again: look it up anew.
    let right = cluster.region_of_raw_key(b"m").unwrap();
    let leader = cluster.leader_of(right.id).unwrap();
    let other = *cluster.store_ids().iter().find(|s| **s != leader).unwrap();
    let moved = admin(
        &cluster,
        "POST",
        "transfer-leader",
        &json!({"region": right.id, "store": other}),
    )
    .await;
    assert_eq!(moved.status, 200, "{moved:?}");
    assert_eq!(cluster.leader_of(right.id), Some(other));
    let missing = admin(
        &cluster,
        "POST",
        "transfer-leader",
        &json!({"region": 9999, "store": other}),
    )
    .await;
    assert_eq!(missing.status, 400);
    assert!(missing.json()["error"].as_str().unwrap().contains("9999"));

    // Stop the store leading "m": a raw stub cannot reach it; start it: it serves again.
    let stop = store_action(&cluster, other, "stop").await;
    assert_eq!(stop.json(), json!({"stopped": true}));
    let addr = cluster.store_addrs()[cluster
        .store_ids()
        .iter()
        .position(|s| *s == other)
        .unwrap()]
    .clone();
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    assert!(endpoint.connect().await.is_err(), "stopped");
    let stop = store_action(&cluster, other, "stop").await;
    assert_eq!(stop.json(), json!({"stopped": false}), "already stopped");
    let start = store_action(&cluster, other, "start").await;
    assert_eq!(start.status, 200, "{start:?}");
    assert_eq!(ctx_for(&cluster, b"m").1, other);
    let resp = get(&cluster, b"m").await;
    assert!(resp.region_error.is_none(), "{resp:?}");
    let running = store_action(&cluster, other, "start").await;
    assert_eq!(running.status, 409, "already running: {running:?}");
    assert_eq!(store_action(&cluster, 77, "stop").await.status, 404);

    // Cut the leader of "m" off from PD: it cannot split; healed, it can.
    let cut = admin(
        &cluster,
        "POST",
        &format!("stores/{other}/pd-partition"),
        &json!(null),
    )
    .await;
    assert_eq!(cut.json(), json!({"partitioned": true}));
    assert!(cluster.split_raw("n").is_none(), "no region ids from PD");
    let healed = admin(
        &cluster,
        "DELETE",
        &format!("stores/{other}/pd-partition"),
        &json!(null),
    )
    .await;
    assert_eq!(healed.json(), json!({"partitioned": false}));
    assert!(cluster.split_raw("n").is_some());
    assert_eq!(
        admin(&cluster, "POST", "stores/77/pd-partition", &json!(null))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn the_pd_leader_moves_over_http_and_every_member_serves_the_api() {
    let cluster = MockCluster::builder().pd_members(2).start().await.unwrap();
    let moved = admin(&cluster, "POST", "pd/transfer-leader", &json!({"to": 1})).await;
    assert_eq!(moved.json(), json!({"leader": 1}));
    assert_eq!(cluster.pd_leader(), 1);
    let bad = admin(&cluster, "POST", "pd/transfer-leader", &json!({"to": 2})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(cluster.pd_leader(), 1);
    for endpoint in cluster.pd_endpoints() {
        let rules = http(&endpoint, "GET", "/mock/api/v1/rules", &[], "").await;
        assert_eq!((rules.status, rules.json()), (200, json!([])), "{endpoint}");
    }
}

#[tokio::test]
async fn bad_input_gets_400_unknown_paths_404_and_the_server_keeps_serving() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let pd = cluster.pd_endpoint();
    for (method, path, body, status) in [
        ("POST", "rules", "{", 400),
        ("POST", "rules", "[1]", 400),
        ("POST", "rules", "", 400),
        ("POST", "rules", r#"{"method":"RawGet"}"#, 400),
        ("POST", "rules", r#"{"region_error":"Bogus"}"#, 400),
        ("POST", "rules", r#"{"lose_reply":true,"nth":"x"}"#, 400),
        ("DELETE", "rules/abc", "", 400),
        ("DELETE", "rules/99", "", 404),
        ("GET", "calls?colour=red", "", 400),
        ("POST", "split", r#"{"key":"k"}"#, 400),
        ("POST", "split", r#"{"key":"0xzz","kind":"raw"}"#, 400),
        (
            "POST",
            "split",
            r#"{"key":"k","kind":"raw","extra":1}"#,
            400,
        ),
        ("POST", "transfer-leader", r#"{"region":-1,"store":1}"#, 400),
        ("POST", "stores/x/stop", "", 400),
        (
            "POST",
            "pd/transfer-leader",
            r#"{"to":18446744073709551615}"#,
            400,
        ),
        ("PUT", "rules", "", 405),
        ("GET", "split", "", 405),
        ("GET", "nowhere", "", 404),
        ("POST", "stores/1/explode", "", 404),
        ("GET", "", "", 404),
    ] {
        let reply = http(&pd, method, &format!("/mock/api/v1/{path}"), &[], body).await;
        assert_eq!(reply.status, status, "{method} {path} {body}: {reply:?}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=UTF-8")
        );
        assert!(
            reply.json()["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{method} {path}: a JSON error message: {reply:?}"
        );
    }
    let huge = format!(
        r#"{{"method":"{}","lose_reply":true}}"#,
        "x".repeat(100_000)
    );
    let reply = http(&pd, "POST", "/mock/api/v1/rules", &[], &huge).await;
    assert_eq!(reply.status, 413);
    assert_eq!(
        http(&pd, "GET", "/mock/api/v1/rules", &[], "").await.json(),
        json!([]),
        "nothing was added, and the server still answers"
    );
    raw_put(&cluster, b"k").await.unwrap();
}
