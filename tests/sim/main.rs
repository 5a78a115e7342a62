//! The deterministic simulation (feature `simulation`): seeded fault schedules judged by the
//! checkers, replay, and a planted bug. `scripts/sim.sh` runs it in release with seeded task
//! scheduling and many seeds; under plain `cargo test` it runs a few.
//!
//! Environment: `SIM_SEEDS` (seeds per workload, default 4), `SIM_FIRST_SEED` (default 1),
//! `SIM_WORKLOAD` (one workload, default all), `SIM_PLANT` (a planted bug, default none),
//! `SIM_THREADS` (simulations run at once, default 2).

use std::sync::Mutex;

use tikv_client::testutils::sim::{self, Options, Outcome, PlantedBug, Workload};

fn var<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs `options(seed)` for every seed in `seeds`, on `SIM_THREADS` threads, printing each
/// outcome; returns them in seed order.
fn run_seeds(seeds: std::ops::Range<u64>, options: impl Fn(u64) -> Options + Sync) -> Vec<Outcome> {
    let next = Mutex::new(seeds.clone());
    let done = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..var("SIM_THREADS").unwrap_or(2) {
            scope.spawn(|| loop {
                let Some(seed) = next.lock().unwrap().next() else {
                    return;
                };
                let outcome = sim::run(&options(seed)).unwrap_or_else(|e| panic!("{e}"));
                println!("{outcome}");
                done.lock().unwrap().push(outcome);
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|o| o.options.seed);
    done
}

#[test]
fn every_workload_passes_under_every_fault() {
    let first = var("SIM_FIRST_SEED").unwrap_or(1);
    let seeds = first..first + var("SIM_SEEDS").unwrap_or(4);
    let only: Option<Workload> = var("SIM_WORKLOAD");
    let planted: Option<PlantedBug> = var("SIM_PLANT");
    let mut failed = Vec::new();
    for workload in Workload::ALL
        .into_iter()
        .filter(|w| only.is_none_or(|o| o == *w))
    {
        // The harness's own speed, on the wall clock (the simulation never reads it).
        #[allow(clippy::disallowed_methods)]
        let started = std::time::Instant::now();
        let outcomes = run_seeds(seeds.clone(), |seed| Options {
            planted,
            ..Options::new(seed, workload)
        });
        let took = started.elapsed().as_secs_f64();
        let events: u64 = outcomes.iter().map(|o| o.events).sum();
        let simulated: f64 = outcomes.iter().map(|o| o.simulated.as_secs_f64()).sum();
        let faults = |kind| {
            outcomes
                .iter()
                .map(|o| {
                    o.faults
                        .iter()
                        .find(|(k, _)| *k == kind)
                        .map_or(0, |(_, n)| *n)
                })
                .sum::<usize>()
        };
        let mut not_seen = Vec::new();
        for kind in sim::Fault::ALL.into_iter().filter(|f| f.applies(workload)) {
            if faults(kind) == 0 {
                not_seen.push(kind.to_string());
            }
        }
        println!(
            "{workload}: {} seeds, {} failed; {:.1} schedules/s, {:.0} trace events/s, {:.0}x \
             real time on {} threads; every fault kind injected: {}",
            outcomes.len(),
            outcomes.iter().filter(|o| !o.passed()).count(),
            outcomes.len() as f64 / took,
            events as f64 / took,
            simulated / took,
            var("SIM_THREADS").unwrap_or(2),
            if not_seen.is_empty() {
                "yes".to_owned()
            } else {
                format!("no, never {}", not_seen.join(", "))
            }
        );
        failed.extend(
            outcomes
                .iter()
                .filter(|o| !o.passed())
                .map(|o| o.options.replay_command()),
        );
    }
    assert!(failed.is_empty(), "failing seeds:\n{}", failed.join("\n"));
}

#[test]
fn a_seed_replays_to_the_same_trace() {
    for workload in [Workload::Register, Workload::Bank] {
        let options = Options::new(7, workload);
        let first = sim::run(&options).unwrap();
        let second = sim::run(&options).unwrap();
        assert!(first.events > 100, "a run records its events: {first}");
        assert_eq!(first.trace_hash, second.trace_hash, "{first}\n{second}");
        let other = sim::run(&Options::new(8, workload)).unwrap();
        assert_ne!(
            first.trace_hash, other.trace_hash,
            "the trace depends on the seed"
        );
    }
}

/// Each planted bug is found within this many seeds of its workload.
const PLANTED_BUG_SEEDS: u64 = 20;

#[test]
fn a_planted_bug_is_found_and_its_seed_replays() {
    for bug in PlantedBug::ALL {
        let options = |seed| Options {
            planted: Some(bug),
            ..Options::new(seed, bug.workload())
        };
        let found = (1..=PLANTED_BUG_SEEDS)
            .map(|seed| sim::run(&options(seed)).unwrap())
            .find(|o| !o.passed())
            .unwrap_or_else(|| panic!("{bug}: no anomaly within {PLANTED_BUG_SEEDS} seeds"));
        println!("{bug}: {found}");
        let replayed = sim::run(&found.options).unwrap();
        assert!(!replayed.passed(), "{bug}: the seed it printed fails again");
        assert_eq!(found.trace_hash, replayed.trace_hash);
        let fixed = sim::run(&Options::new(found.options.seed, bug.workload())).unwrap();
        assert!(
            fixed.passed(),
            "{bug}: without the planted bug the same seed passes: {fixed}"
        );
    }
}
