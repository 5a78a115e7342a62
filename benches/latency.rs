//! Sequential `RawClient::get` latency from native code against a running cluster: the
//! native side of `scripts/bench-latency.sh`, which compares it with the same loop in Node
//! and in headless Chromium (the wasm build) on the same `tikv-mock`.
//!
//! Run: `TIKV_MOCK_PD=127.0.0.1:2379 cargo bench --bench latency` (`GETS` sets the count,
//! default 2000). Prints one JSON line: `{"runtime":"native","gets":N,"mean_us":..,...}`.

#![allow(clippy::disallowed_methods)] // a benchmark drives tokio and reads the wall clock

use std::time::{Duration, Instant};

use tikv_client::RawClient;

/// Percentile `p` (0..=100) of sorted samples.
fn percentile(sorted: &[Duration], p: usize) -> f64 {
    let i = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e6
}

fn main() {
    let Ok(pd) = std::env::var("TIKV_MOCK_PD") else {
        eprintln!(
            "set TIKV_MOCK_PD to a running cluster's PD address (scripts/bench-latency.sh does)"
        );
        return;
    };
    let gets: usize = std::env::var("GETS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
        .max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let client = RawClient::new(vec![pd]).await.expect("cluster reachable");
        client.put("bench/latency", "v").await.expect("put");
        // Warm up connections and the region cache.
        for _ in 0..50 {
            client.get("bench/latency").await.expect("get");
        }
        let mut samples = Vec::with_capacity(gets);
        for _ in 0..gets {
            let started = Instant::now();
            client.get("bench/latency").await.expect("get");
            samples.push(started.elapsed());
        }
        samples.sort();
        let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1e6 / gets as f64;
        println!(
            "{{\"runtime\":\"native\",\"gets\":{gets},\"mean_us\":{mean:.1},\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
            percentile(&samples, 50),
            percentile(&samples, 99)
        );
    });
}
