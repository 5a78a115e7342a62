//! Key codec throughput, against a plain copy of the same keys measured in the same run.
//!
//! Run: `cargo bench --bench codec`. Prints nanoseconds per key and the ratio to the baseline
//! (copying the key into a fresh `Vec`), so numbers compare across machines.

#![allow(clippy::disallowed_methods)] // a benchmark reads the wall clock

use std::hint::black_box;
use std::time::{Duration, Instant};

use tikv_client::kv::keyspace::{KeyMode, Keyspace};
use tikv_client::kv::memcomparable;

const ROUNDS: usize = 20;

fn keys(len: usize, count: usize) -> Vec<Vec<u8>> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..count)
        .map(|_| {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        })
        .collect()
}

/// The best of `ROUNDS` runs of `f` over `keys`, per key.
fn measure(keys: &[Vec<u8>], mut f: impl FnMut(&[u8]) -> usize) -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let mut sink = 0;
            for k in keys {
                sink += f(black_box(k));
            }
            black_box(sink);
            start.elapsed() / keys.len() as u32
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let ks = Keyspace::new(KeyMode::Txn, 42).expect("valid keyspace id");
    println!(
        "{:<28} {:>10} {:>10} {:>8}",
        "operation (key bytes)", "ns/key", "copy ns", "ratio"
    );
    for len in [16, 64, 256] {
        let input = keys(len, 50_000);
        let encoded: Vec<Vec<u8>> = input.iter().map(|k| memcomparable::encode(k)).collect();
        let baseline = measure(&input, |k| k.to_vec().len());
        let rows: [(&str, Duration); 3] = [
            (
                "memcomparable encode",
                measure(&input, |k| memcomparable::encode(k).len()),
            ),
            (
                "memcomparable decode",
                measure(&encoded, |k| {
                    memcomparable::decode(k).map_or(0, |(v, _)| v.len())
                }),
            ),
            (
                "keyspace prefix",
                measure(&input, |k| ks.encode_key(k).len()),
            ),
        ];
        for (name, t) in rows {
            println!(
                "{:<28} {:>10.1} {:>10.1} {:>7.2}x",
                format!("{name} ({len})"),
                t.as_nanos() as f64,
                baseline.as_nanos() as f64,
                t.as_secs_f64() / baseline.as_secs_f64().max(1e-12)
            );
        }
    }
}
