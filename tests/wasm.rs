//! The client inside a real browser (headless Chromium through wasm-bindgen-test), talking
//! gRPC-web to the mock cluster that the test command starts natively.
//!
//! Run by `scripts/test-all.sh`, which starts `tikv-mock --cluster-id N` and passes its PD
//! address and cluster id at compile time (`TIKV_MOCK_PD`, `TIKV_MOCK_CLUSTER_ID`).

#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use tikv_client::pd::PdClient;
use tikv_client::rt::{self, Runtime};
use tikv_client::{Config, Error, KvPair, RawClient, TransactionClient, TransportErrorKind};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn mock_pd() -> (&'static str, u64) {
    // Compile-time settings: a browser test has no process environment.
    let (Some(pd), Some(id)) = (
        option_env!("TIKV_MOCK_PD"),
        option_env!("TIKV_MOCK_CLUSTER_ID"),
    ) else {
        panic!("build with TIKV_MOCK_PD=127.0.0.1:PORT and TIKV_MOCK_CLUSTER_ID of a running tikv-mock");
    };
    (pd, id.parse().expect("cluster id is a number"))
}

#[wasm_bindgen_test]
fn runs_in_a_browser_page() {
    let global = js_sys::global();
    assert!(js_sys::Reflect::has(&global, &"document".into()).unwrap());
}

#[wasm_bindgen_test]
async fn get_members_over_grpc_web() {
    let (pd, cluster_id) = mock_pd();
    let client = PdClient::connect(&[pd], &Config::default()).await.unwrap();
    assert_eq!(client.cluster_id(), cluster_id);
    assert_eq!(client.leader().name, "pd-1");
    assert_eq!(client.leader().client_urls, vec![format!("http://{pd}")]);
    client.refresh().await.unwrap();
    assert_eq!(client.members().len(), 1);
}

#[wasm_bindgen_test]
async fn raw_round_trips_from_the_browser() {
    let (pd, _) = mock_pd();
    let raw = RawClient::new(vec![pd]).await.unwrap();
    raw.put("browser/k1", "v1").await.unwrap();
    assert_eq!(raw.get("browser/k1").await.unwrap(), Some(b"v1".to_vec()));
    raw.batch_put((2..=5).map(|i| KvPair::new(format!("browser/k{i}"), format!("v{i}"))))
        .await
        .unwrap();
    let pairs = raw.scan("browser/".."browser0", 10).await.unwrap();
    let keys: Vec<String> = pairs
        .iter()
        .map(|p| String::from_utf8(p.key.to_vec()).unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "browser/k1",
            "browser/k2",
            "browser/k3",
            "browser/k4",
            "browser/k5"
        ]
    );
    let reversed = raw
        .scan_keys_reverse("browser/".."browser0", 2)
        .await
        .unwrap();
    assert_eq!(reversed.len(), 2);
    raw.delete_range("browser/".."browser0").await.unwrap();
    assert_eq!(raw.get("browser/k3").await.unwrap(), None);
}

#[wasm_bindgen_test]
async fn transactions_from_the_browser() {
    let (pd, _) = mock_pd();
    let client = TransactionClient::new(vec![pd]).await.unwrap();
    let mut txn = client.begin_optimistic().await.unwrap();
    txn.put("browser-txn/a", "1").await.unwrap();
    txn.put("browser-txn/z", "2").await.unwrap();
    assert!(txn.commit().await.unwrap().is_some());
    let mut t1 = client.begin_optimistic().await.unwrap();
    let mut t2 = client.begin_optimistic().await.unwrap();
    assert_eq!(t2.get("browser-txn/a").await.unwrap(), Some(b"1".to_vec()));
    t1.put("browser-txn/a", "x").await.unwrap();
    t2.put("browser-txn/a", "y").await.unwrap();
    t1.commit().await.unwrap();
    assert!(matches!(t2.commit().await, Err(Error::WriteConflict(_))));
    let reader = client.begin_optimistic().await.unwrap();
    let pairs = reader
        .scan("browser-txn/".."browser-txn0", 10)
        .await
        .unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0].value, b"x");
}

#[wasm_bindgen_test]
async fn timestamps_from_the_browser_increase() {
    let (pd, _) = mock_pd();
    let client = PdClient::connect(&[pd], &Config::default()).await.unwrap();
    let a = client.get_timestamp().await.unwrap();
    let b = client.get_timestamp().await.unwrap();
    assert!(b > a, "{a:?} < {b:?}");
}

#[wasm_bindgen_test]
async fn an_unreachable_pd_is_a_transport_error() {
    let err = PdClient::connect(&["127.0.0.1:1"], &Config::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Transport(t) if t.kind == TransportErrorKind::Broken),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[wasm_bindgen_test]
async fn browser_timers_clock_and_tasks() {
    let rt = Runtime::system();
    let t0 = rt.now();
    rt.sleep(Duration::from_millis(30)).await;
    assert!(rt.now() - t0 >= Duration::from_millis(25));
    assert!(rt.unix_time() > Duration::from_secs(1_600_000_000));

    let r = rt
        .timeout(Duration::from_millis(10), futures::future::pending::<()>())
        .await;
    assert!(r.is_err());

    assert_eq!(rt::spawn(async { 6 * 7 }).await, 42);
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    drop(rt::spawn(async move {
        futures::future::pending::<()>().await;
        drop(tx);
    }));
    assert!(rx.await.is_err(), "dropping the handle aborts the task");
}
