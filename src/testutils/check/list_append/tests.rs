use std::collections::BTreeMap;

use super::*;
use crate::backoff::SplitMix64;

fn append(key: u64, value: u64) -> Micro {
    Micro::Append { key, value }
}

fn read(key: u64, list: &[u64]) -> Micro {
    Micro::Read {
        key,
        list: list.to_vec(),
    }
}

fn with(status: Status, micros: Vec<Micro>) -> Txn {
    Txn {
        micros,
        invoke: 0,
        complete: 10,
        status,
    }
}

fn ok(micros: Vec<Micro>) -> Txn {
    with(Status::Ok, micros)
}

fn run(txns: Vec<Txn>) -> Result<Stats, Vec<Anomaly>> {
    check(&History { txns })
}

fn kinds(txns: Vec<Txn>) -> Vec<AnomalyKind> {
    let anomalies = run(txns).expect_err("the history must be flagged");
    anomalies.into_iter().map(|a| a.kind).collect()
}

fn steps(cycle: &[(usize, Dependency, u64, usize)]) -> Vec<Step> {
    cycle
        .iter()
        .map(|&(from, kind, key, to)| Step {
            from,
            to,
            kind,
            key,
        })
        .collect()
}

use Dependency::{ReadWrite as RW, WriteRead as WR, WriteWrite as WW};

#[test]
fn an_empty_history_passes() {
    assert_eq!(run(vec![]).unwrap(), Stats::default());
}

#[test]
fn a_serial_history_passes_with_its_dependencies_counted() {
    let stats = run(vec![
        ok(vec![append(0, 1)]),
        ok(vec![read(0, &[1]), append(0, 2)]),
        ok(vec![read(0, &[1, 2]), read(1, &[])]),
    ])
    .unwrap();
    assert_eq!((stats.committed, stats.reads, stats.keys), (3, 3, 2));
    assert_eq!((stats.ww, stats.wr, stats.rw, stats.longest), (1, 2, 0, 2));
}

#[test]
fn write_skew_is_allowed_under_snapshot_isolation() {
    // Two rw edges in the cycle: G2, which snapshot isolation permits.
    let stats = run(vec![
        ok(vec![read(0, &[]), read(1, &[]), append(0, 1)]),
        ok(vec![read(0, &[]), read(1, &[]), append(1, 2)]),
        ok(vec![read(0, &[1]), read(1, &[2])]),
    ])
    .unwrap();
    assert_eq!(stats.rw, 2);
}

#[test]
fn a_garbage_read_is_flagged() {
    let found = kinds(vec![ok(vec![append(0, 1)]), ok(vec![read(0, &[1, 9])])]);
    let expected = AnomalyKind::GarbageRead {
        reader: 1,
        key: 0,
        value: 9,
    };
    assert_eq!(found, vec![expected]);
}

#[test]
fn duplicate_elements_are_flagged() {
    let found = kinds(vec![ok(vec![append(0, 1)]), ok(vec![read(0, &[1, 1])])]);
    let expected = AnomalyKind::DuplicateElements {
        reader: 1,
        key: 0,
        value: 1,
    };
    assert_eq!(found, vec![expected]);
}

#[test]
fn an_aborted_read_is_g1a() {
    let found = kinds(vec![
        with(Status::Failed, vec![append(0, 1)]),
        ok(vec![read(0, &[1])]),
    ]);
    let expected = AnomalyKind::G1a {
        reader: 1,
        writer: 0,
        key: 0,
        value: 1,
    };
    assert_eq!(found, vec![expected]);
}

#[test]
fn an_intermediate_read_is_g1b() {
    // Seeing 1 but not 2 also means the reader both follows (wr) and precedes (rw) #0.
    let found = kinds(vec![
        ok(vec![append(0, 1), append(0, 2)]),
        ok(vec![read(0, &[1])]),
        ok(vec![read(0, &[1, 2])]),
    ]);
    let g1b = AnomalyKind::G1b {
        reader: 1,
        writer: 0,
        key: 0,
        value: 1,
    };
    let cycle = steps(&[(1, RW, 0, 0), (0, WR, 0, 1)]);
    assert_eq!(found, vec![g1b, AnomalyKind::GSingle { cycle }]);
}

#[test]
fn a_transaction_may_read_its_own_intermediate_appends() {
    run(vec![
        ok(vec![append(0, 1), read(0, &[1]), append(0, 2)]),
        ok(vec![read(0, &[1, 2])]),
    ])
    .unwrap();
}

#[test]
fn reads_that_are_no_prefix_of_each_other_are_an_incompatible_order() {
    let found = kinds(vec![
        ok(vec![append(0, 1)]),
        ok(vec![append(0, 2)]),
        ok(vec![read(0, &[1, 2])]),
        ok(vec![read(0, &[2])]),
    ]);
    let expected = AnomalyKind::IncompatibleOrder {
        key: 0,
        reader: 3,
        longest: 2,
    };
    assert_eq!(found, vec![expected]);
}

#[test]
fn a_cycle_of_write_dependencies_is_g0() {
    // Key 0 says #0 wrote first, key 1 says #1 did.
    let found = kinds(vec![
        ok(vec![append(0, 1), append(1, 2)]),
        ok(vec![append(0, 3), append(1, 4)]),
        ok(vec![read(0, &[1, 3]), read(1, &[4, 2])]),
    ]);
    let cycle = steps(&[(0, WW, 0, 1), (1, WW, 1, 0)]);
    assert_eq!(found, vec![AnomalyKind::G0 { cycle }]);
}

#[test]
fn each_reading_the_other_is_g1c() {
    let found = kinds(vec![
        ok(vec![append(0, 1), read(1, &[2])]),
        ok(vec![append(1, 2), read(0, &[1])]),
    ]);
    let cycle = steps(&[(0, WR, 0, 1), (1, WR, 1, 0)]);
    assert_eq!(found, vec![AnomalyKind::G1c { cycle }]);
}

#[test]
fn seeing_half_of_a_transaction_is_g_single() {
    let found = kinds(vec![
        ok(vec![append(0, 1), append(1, 1)]),
        ok(vec![read(0, &[1]), read(1, &[])]),
        ok(vec![read(1, &[1])]),
    ]);
    let cycle = steps(&[(1, RW, 1, 0), (0, WR, 0, 1)]);
    assert_eq!(found, vec![AnomalyKind::GSingle { cycle }]);
}

#[test]
fn two_appends_after_reading_the_same_version_are_a_lost_update() {
    let found = kinds(vec![
        ok(vec![append(0, 1)]),
        ok(vec![read(0, &[1]), append(0, 2)]),
        ok(vec![read(0, &[1]), append(0, 3)]),
        ok(vec![read(0, &[1, 2])]),
    ]);
    let expected = AnomalyKind::LostUpdate {
        key: 0,
        read: vec![1],
        txns: vec![1, 2],
    };
    assert_eq!(found, vec![expected]);
}

#[test]
fn an_unobserved_indeterminate_transaction_is_left_out_with_its_reads() {
    let stats = run(vec![
        with(Status::Unknown, vec![read(0, &[9]), append(0, 5)]),
        ok(vec![read(0, &[])]),
    ])
    .unwrap();
    assert_eq!((stats.unknown_ignored, stats.unknown_committed), (1, 0));
}

#[test]
fn an_observed_indeterminate_transaction_counts_as_committed() {
    let found = kinds(vec![
        with(Status::Unknown, vec![append(0, 1), append(1, 1)]),
        ok(vec![read(0, &[1]), read(1, &[])]),
        ok(vec![read(1, &[1])]),
    ]);
    assert!(
        matches!(found[..], [AnomalyKind::GSingle { .. }]),
        "{found:?}"
    );
}

#[test]
fn the_report_prints_the_cycle_and_its_transactions() {
    let anomalies = run(vec![
        ok(vec![append(0, 1), read(1, &[2])]),
        ok(vec![append(1, 2), read(0, &[1])]),
    ])
    .unwrap_err();
    let text = anomalies[0].to_string();
    assert_eq!(
        text,
        "G1c (circular information flow): #0 -wr(0)-> #1 -wr(1)-> #0\n    \
         #0 append(0, 1), read(1) = [2] [0, 10]\n    \
         #1 append(1, 2), read(0) = [1] [0, 10]"
    );
}

#[test]
#[should_panic(expected = "appended values must be unique per key")]
fn a_value_appended_twice_to_a_key_is_a_workload_bug() {
    let _ = run(vec![ok(vec![append(0, 1)]), ok(vec![append(0, 1)])]);
}

/// A history of `count` overlapping transactions on `keys` keys, run by a snapshot isolation
/// model: each reads the state as of its start plus its own appends, and commits unless another
/// transaction committed an append to one of its keys since it started (first committer wins).
/// Some commits fail or end indeterminate (taking effect or not); only committed reads are kept.
fn generated(seed: u64, count: u64, keys: u64) -> History {
    let mut rng = SplitMix64::new(seed);
    let mut fresh = 0;
    let mut txns = Vec::new();
    let mut events = Vec::new();
    for t in 0..count {
        let invoke = t * 10;
        let complete = invoke + 1 + rng.below(60);
        let micros = (0..1 + rng.below(4))
            .map(|_| {
                let key = rng.below(keys);
                if rng.below(2) == 0 {
                    fresh += 1;
                    append(key, fresh)
                } else {
                    read(key, &[])
                }
            })
            .collect();
        txns.push(with(Status::Ok, micros));
        txns[t as usize].invoke = invoke;
        txns[t as usize].complete = complete;
        events.push((invoke, 1, t as usize));
        events.push((complete, 0, t as usize));
    }
    events.sort_unstable();
    let mut state: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut last_commit: BTreeMap<u64, Time> = BTreeMap::new();
    let mut snapshots = vec![BTreeMap::new(); txns.len()];
    for (time, is_start, t) in events {
        if is_start == 1 {
            snapshots[t] = state.clone();
            continue;
        }
        let txn = &mut txns[t];
        let view = &mut snapshots[t];
        let mut written = Vec::new();
        for micro in &mut txn.micros {
            match micro {
                Micro::Append { key, value } => {
                    view.entry(*key).or_default().push(*value);
                    written.push((*key, *value));
                }
                Micro::Read { key, list } => *list = view.get(key).cloned().unwrap_or_default(),
            }
        }
        let conflict = written
            .iter()
            .any(|(key, _)| last_commit.get(key).is_some_and(|&at| at > txn.invoke));
        let roll = rng.below(20);
        txn.status = match roll {
            _ if conflict => Status::Failed,
            0 => Status::Failed,
            1 | 2 => Status::Unknown,
            _ => Status::Ok,
        };
        let takes_effect = match txn.status {
            Status::Ok => true,
            Status::Failed => false,
            Status::Unknown => roll == 1,
        };
        if txn.status != Status::Ok {
            for micro in &mut txn.micros {
                if let Micro::Read { list, .. } = micro {
                    list.clear();
                }
            }
        }
        if takes_effect {
            for (key, value) in written {
                state.entry(key).or_default().push(value);
                last_commit.insert(key, time);
            }
        }
    }
    let mut final_reads = (0..keys).map(|key| read(key, &[])).collect::<Vec<_>>();
    for micro in &mut final_reads {
        if let Micro::Read { key, list } = micro {
            *list = state.get(key).cloned().unwrap_or_default();
        }
    }
    txns.push(with(Status::Ok, final_reads));
    History { txns }
}

#[test]
fn a_long_snapshot_isolated_history_passes() {
    let stats = check(&generated(3, 2000, 5)).unwrap();
    assert!(stats.committed > 1000 && stats.failed > 100, "{stats}");
    assert!(
        stats.unknown_committed > 10 && stats.unknown_ignored > 10,
        "{stats}"
    );
    assert!(
        stats.ww > 100 && stats.wr > 100 && stats.rw > 100,
        "{stats}"
    );
}

#[test]
fn a_long_history_with_one_failed_writer_that_was_read_is_flagged() {
    let mut history = generated(5, 2000, 5);
    let last = history.txns.len() - 1;
    let Micro::Read { key, list } = &history.txns[last].micros[0] else {
        unreachable!()
    };
    let value = list[list.len() / 2];
    let writer = (0..last)
        .find(|&t| history.txns[t].micros.contains(&append(*key, value)))
        .unwrap();
    history.txns[writer].status = Status::Failed;
    let anomalies = check(&history).unwrap_err();
    assert!(
        anomalies
            .iter()
            .any(|a| matches!(a.kind, AnomalyKind::G1a { writer: w, .. } if w == writer)),
        "{anomalies:?}"
    );
}
