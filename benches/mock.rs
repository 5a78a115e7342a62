//! Throughput of the mock cluster and of the raw client over it, on this machine.
//!
//! Run: `cargo bench --bench mock --features testutils`.
//!
//! Three loads, each for a fixed time with many concurrent callers over loopback:
//! 1. baseline: PD `GetMembers` through the raw stub (tonic's cost with a trivial handler);
//! 2. the mock TiKV: `RawGet` through the raw stub (context checks, fault rules, call log);
//! 3. the client with unary calls: `RawClient::get` (region cache, execution loop, the
//!    same RPC);
//! 4. the same client over BatchCommands (`Config::with_batch_commands`): one stream to the
//!    store carries every caller's gets.
//!    Results are RPCs per second and ratios to the baseline of the same run, and the CPU
//!    time the whole process (client and mock) spent per call: throughput on a shared
//!    machine swings with its neighbours, CPU per call much less.

#![allow(clippy::disallowed_methods)] // a benchmark drives tokio and reads the wall clock

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tikv_client::proto::{kvrpcpb, pdpb};
use tikv_client::testutils::MockCluster;
use tikv_client::RawClient;

const CALLERS: usize = 64;
const DURATION: Duration = Duration::from_secs(3);

async fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid address")
        .connect()
        .await
        .expect("mock reachable")
}

/// The CPU time this process has used (user and system), from `/proc/self/stat` in clock
/// ticks of 10 ms (Linux's `USER_HZ`); `None` where that is unreadable.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (which ends with the last ')'): utime is the 12th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// What one load achieved.
struct Rate {
    calls_per_second: f64,
    /// Process CPU time per call, in microseconds.
    cpu_micros_per_call: Option<f64>,
}

/// Runs `CALLERS` loops of `call` for `DURATION`.
async fn measure<F, Fut>(call: F) -> Rate
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let count = Arc::new(AtomicU64::new(0));
    let cpu_before = process_cpu();
    let start = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let call = call.clone();
            let count = count.clone();
            tokio::spawn(async move {
                while start.elapsed() < DURATION {
                    call(i).await;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("caller finished");
    }
    let calls = count.load(Ordering::Relaxed) as f64;
    let cpu = process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| (after - before).as_secs_f64() * 1e6 / calls);
    Rate {
        calls_per_second: calls / start.elapsed().as_secs_f64(),
        cpu_micros_per_call: cpu,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cluster = MockCluster::builder()
        .stores(1)
        .start()
        .await
        .expect("mock starts");
    let raw = RawClient::new_with_config(
        vec![cluster.pd_endpoint()],
        tikv_client::Config::default().with_batch_commands(false),
    )
    .await
    .expect("client connects");
    raw.put("bench-key", vec![b'v'; 64]).await.expect("put");
    let region = cluster.region_of_raw_key(b"bench-key").expect("region");
    let ctx = kvrpcpb::Context {
        region_id: region.id,
        region_epoch: region.region_epoch,
        peer: region.peers.first().copied(),
        ..Default::default()
    };

    // One channel per caller, as separate clients would have.
    let mut pd_stubs = Vec::new();
    let mut kv_stubs = Vec::new();
    for _ in 0..CALLERS {
        pd_stubs.push(pdpb::pd_client::PdClient::new(
            channel(&cluster.pd_endpoint()).await,
        ));
        kv_stubs.push(tikv_client::proto::tikvpb::tikv_client::TikvClient::new(
            channel(&cluster.store_addrs()[0]).await,
        ));
    }
    let pd_stubs = Arc::new(pd_stubs);
    let kv_stubs = Arc::new(kv_stubs);

    let baseline = {
        let stubs = pd_stubs.clone();
        measure(move |i| {
            let mut stub = stubs[i].clone();
            async move {
                stub.get_members(pdpb::GetMembersRequest::default())
                    .await
                    .expect("GetMembers");
            }
        })
        .await
    };
    let mock = {
        let stubs = kv_stubs.clone();
        measure(move |i| {
            let mut stub = stubs[i].clone();
            let req = kvrpcpb::RawGetRequest {
                context: Some(ctx.clone()),
                key: b"bench-key".to_vec(),
                ..Default::default()
            };
            async move {
                let resp = stub.raw_get(req).await.expect("RawGet").into_inner();
                assert!(resp.region_error.is_none() && !resp.not_found);
            }
        })
        .await
    };
    cluster.clear_calls();
    let client = {
        let raw = raw.clone();
        measure(move |_| {
            let raw = raw.clone();
            async move {
                raw.get("bench-key").await.expect("get").expect("found");
            }
        })
        .await
    };
    let batched_raw = RawClient::new_with_config(
        vec![cluster.pd_endpoint()],
        tikv_client::Config::default().with_batch_commands(true),
    )
    .await
    .expect("client connects");
    let batched = measure(move |_| {
        let raw = batched_raw.clone();
        async move {
            raw.get("bench-key").await.expect("get").expect("found");
        }
    })
    .await;
    println!("{CALLERS} concurrent callers, {DURATION:?} each, 2 worker threads");
    println!(
        "{:<44} {:>12} {:>8} {:>14} {:>8}",
        "load", "RPC/s", "ratio", "CPU us/call", "ratio"
    );
    let cpu = |r: &Rate| r.cpu_micros_per_call.unwrap_or(f64::NAN);
    for (name, rate) in [
        ("baseline: PD GetMembers via raw stub", &baseline),
        ("mock TiKV: RawGet via raw stub", &mock),
        ("client, unary calls: RawClient::get", &client),
        ("client over BatchCommands: RawClient::get", &batched),
    ] {
        println!(
            "{name:<44} {:>12.0} {:>7.2}x {:>14.1} {:>7.2}x",
            rate.calls_per_second,
            rate.calls_per_second / baseline.calls_per_second,
            cpu(rate),
            cpu(rate) / cpu(&baseline)
        );
    }
}
