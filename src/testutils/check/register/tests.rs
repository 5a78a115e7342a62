use super::*;
use crate::backoff::SplitMix64;
use Action::{Cas, Delete, Get, Put};

fn on(key: u64, action: Action, invoke: Time, complete: Time, status: Status) -> Op {
    Op {
        key,
        action,
        invoke,
        complete,
        status,
    }
}

fn ok(action: Action, invoke: Time, complete: Time) -> Op {
    on(0, action, invoke, complete, Status::Ok)
}

fn unknown(action: Action, invoke: Time) -> Op {
    on(0, action, invoke, invoke + 5, Status::Unknown)
}

fn failed(action: Action, invoke: Time) -> Op {
    on(0, action, invoke, invoke + 5, Status::Failed)
}

fn cas(expect: Option<u64>, new: u64, previous: Option<u64>, swapped: bool) -> Action {
    Cas {
        expect,
        new,
        previous,
        swapped,
    }
}

fn run(ops: Vec<Op>) -> Result<Stats, Vec<Anomaly>> {
    check(&History { ops })
}

/// The only anomaly's key and stuck operations, which must be a non-linearizable key.
fn stuck(result: Result<Stats, Vec<Anomaly>>) -> (u64, Vec<usize>) {
    let anomalies = result.expect_err("the history must be flagged");
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    match &anomalies[0] {
        Anomaly::NotLinearizable {
            key,
            counterexample,
        } => (*key, counterexample.stuck.iter().map(|(i, _)| *i).collect()),
        other => panic!("expected NotLinearizable, got {other}"),
    }
}

#[test]
fn an_empty_history_passes() {
    assert_eq!(run(vec![]).unwrap(), Stats::default());
}

#[test]
fn a_get_sees_the_last_acknowledged_put() {
    let stats = run(vec![
        ok(Put(1), 0, 10),
        ok(Put(2), 20, 30),
        ok(Get(Some(2)), 40, 50),
        ok(Delete, 60, 70),
        ok(Get(None), 80, 90),
    ])
    .unwrap();
    assert_eq!((stats.keys, stats.searched), (1, 5));
}

#[test]
fn a_stale_get_after_an_acknowledged_put_is_flagged() {
    let result = run(vec![
        ok(Put(1), 0, 10),
        ok(Put(2), 20, 30),
        ok(Get(Some(1)), 40, 50),
    ]);
    assert_eq!(stuck(result), (0, vec![2]));
}

#[test]
fn a_get_of_a_value_never_written_is_flagged() {
    let (_, stuck) = stuck(run(vec![ok(Put(1), 0, 10), ok(Get(Some(9)), 20, 30)]));
    assert_eq!(stuck, vec![1]);
}

#[test]
fn a_concurrent_put_may_be_seen_late_or_early() {
    run(vec![
        ok(Put(1), 0, 100),
        ok(Get(None), 10, 20),
        ok(Get(Some(1)), 30, 40),
    ])
    .unwrap();
}

#[test]
fn once_a_concurrent_put_is_seen_the_old_value_cannot_come_back() {
    // Sequentially consistent (the second get could go first), but not linearizable.
    let (_, stuck) = stuck(run(vec![
        ok(Put(1), 0, 100),
        ok(Get(Some(1)), 10, 20),
        ok(Get(None), 30, 40),
    ]));
    assert_eq!(stuck, vec![2]);
}

#[test]
fn concurrent_puts_may_take_effect_in_reverse_order_of_invocation() {
    run(vec![
        ok(Put(1), 0, 100),
        ok(Put(2), 1, 100),
        ok(Put(3), 2, 100),
        ok(Get(Some(3)), 10, 20),
        ok(Get(Some(2)), 30, 40),
        ok(Get(Some(1)), 50, 60),
        ok(Get(Some(1)), 110, 120),
    ])
    .unwrap();
}

#[test]
fn operations_that_touch_in_time_count_as_concurrent() {
    run(vec![ok(Put(1), 0, 10), ok(Get(None), 10, 20)]).unwrap();
}

#[test]
fn an_indeterminate_put_may_take_effect_long_after_it_gave_up() {
    let stats = run(vec![
        unknown(Put(1), 0),
        ok(Get(None), 10, 20),
        ok(Put(2), 30, 40),
        ok(Get(Some(2)), 50, 60),
        ok(Get(Some(1)), 1000, 1010),
    ])
    .unwrap();
    assert_eq!((stats.searched, stats.indeterminate), (5, 1));
}

#[test]
fn an_indeterminate_put_nobody_saw_may_never_happen() {
    let stats = run(vec![
        ok(Put(1), 0, 10),
        unknown(Put(2), 20),
        unknown(Get(None), 25),
        ok(Get(Some(1)), 40, 50),
    ])
    .unwrap();
    assert_eq!((stats.searched, stats.dropped), (2, 2));
}

#[test]
fn an_indeterminate_put_cannot_take_effect_before_its_invocation() {
    let (_, stuck) = stuck(run(vec![ok(Get(Some(7)), 0, 10), unknown(Put(7), 20)]));
    assert_eq!(stuck, vec![0]);
}

#[test]
fn an_indeterminate_put_once_seen_cannot_be_undone() {
    let (_, stuck) = stuck(run(vec![
        unknown(Put(1), 0),
        ok(Get(Some(1)), 10, 20),
        ok(Get(None), 30, 40),
    ]));
    assert_eq!(stuck, vec![2]);
}

#[test]
fn a_failed_put_that_was_read_is_flagged() {
    let result = run(vec![failed(Put(7), 0), ok(Get(Some(7)), 10, 20)]);
    assert_eq!(stuck(result).1, vec![1]);
}

#[test]
fn compare_and_swap_results_must_match_the_value_found() {
    run(vec![
        ok(Put(1), 0, 10),
        ok(cas(Some(1), 2, Some(1), true), 20, 30),
        ok(cas(Some(1), 3, Some(2), false), 40, 50),
        ok(cas(None, 4, Some(2), false), 60, 70),
        ok(Get(Some(2)), 80, 90),
    ])
    .unwrap();
    // A swap reported where the value did not match.
    let result = run(vec![
        ok(Put(1), 0, 10),
        ok(cas(Some(5), 2, Some(1), true), 20, 30),
    ]);
    assert_eq!(stuck(result).1, vec![1]);
}

#[test]
fn two_compare_and_swaps_cannot_both_replace_the_same_value() {
    // A lost update: concurrent, yet both claim to have found 1 and swapped.
    let (_, stuck) = stuck(run(vec![
        ok(Put(1), 0, 10),
        ok(cas(Some(1), 2, Some(1), true), 20, 40),
        ok(cas(Some(1), 3, Some(1), true), 25, 45),
    ]));
    // The furthest the search gets: the first swap took effect, the second cannot.
    assert_eq!(stuck, vec![2]);
}

#[test]
fn an_indeterminate_compare_and_swap_may_have_swapped_or_not() {
    run(vec![
        ok(Put(1), 0, 10),
        unknown(cas(Some(1), 2, None, false), 20),
        ok(Get(Some(1)), 30, 40),
        ok(Get(Some(2)), 50, 60),
    ])
    .unwrap();
    // It swaps only if it finds its expected value: here 1 was overwritten first.
    let (_, stuck) = stuck(run(vec![
        ok(Put(1), 0, 10),
        ok(Put(3), 20, 30),
        unknown(cas(Some(1), 2, None, false), 40),
        ok(Get(Some(2)), 50, 60),
    ]));
    assert_eq!(stuck, vec![3]);
}

#[test]
fn keys_are_checked_apart_and_anomalies_name_theirs() {
    let result = run(vec![
        on(1, Put(1), 0, 10, Status::Ok),
        on(2, Put(1), 0, 10, Status::Ok),
        on(2, Put(2), 20, 30, Status::Ok),
        on(1, Get(Some(1)), 40, 50, Status::Ok),
        on(2, Get(Some(1)), 40, 50, Status::Ok),
    ]);
    assert_eq!(stuck(result), (2, vec![4]));
}

#[test]
fn the_report_prints_the_prefix_the_value_and_the_stuck_operations() {
    let anomalies = run(vec![
        ok(Put(1), 0, 10),
        ok(Put(2), 20, 30),
        ok(Get(Some(1)), 40, 50),
    ])
    .unwrap_err();
    let Anomaly::NotLinearizable { counterexample, .. } = &anomalies[0] else {
        panic!("{anomalies:?}");
    };
    assert_eq!(counterexample.linearized, vec![0, 1]);
    assert_eq!(counterexample.value, Some(2));
    let text = anomalies[0].to_string();
    assert!(text.contains("at most 2 of its operations"), "{text}");
    assert!(text.contains("#1 put 2 [20, 30]"), "{text}");
    assert!(text.contains("leave it 2"), "{text}");
    assert!(text.contains("#2 get -> 1 [40, 50]"), "{text}");
}

#[test]
fn running_out_of_steps_is_inconclusive_not_a_pass() {
    let history = History {
        ops: vec![ok(Put(1), 0, 10), ok(Get(Some(1)), 20, 30)],
    };
    let anomalies = check_with_limit(&history, 1).unwrap_err();
    assert_eq!(
        anomalies,
        vec![Anomaly::Inconclusive {
            key: 0,
            ops: 2,
            steps: 1
        }]
    );
    assert!(check_with_limit(&history, 2).is_ok());
}

/// A linearizable history: `clients` clients each run `per_client` operations back to back on
/// key 0. Each operation takes effect at a random instant inside its interval (5% are
/// indeterminate: they take effect at a random instant after their invocation, or never), and
/// results come from replaying those instants in order.
fn generated(seed: u64, clients: u64, per_client: u64) -> History {
    let mut rng = SplitMix64::new(seed);
    let mut ops = Vec::new();
    let mut effect_at = Vec::new();
    let mut fresh = 0;
    for _ in 0..clients {
        let mut now = rng.below(50);
        for _ in 0..per_client {
            fresh += 1;
            let action = match rng.below(10) {
                0..=3 => Get(None),
                4..=6 => Put(fresh),
                7 => Delete,
                _ => {
                    let expect = fresh.checked_sub(1 + rng.below(4)).filter(|v| *v > 0);
                    cas(expect, fresh, None, false)
                }
            };
            let (invoke, complete) = (now, now + 1 + rng.below(100));
            let status = if rng.below(20) == 0 {
                Status::Unknown
            } else {
                Status::Ok
            };
            effect_at.push(match status {
                Status::Ok => Some(invoke + rng.below(complete - invoke + 1)),
                _ => (rng.below(2) == 0).then(|| invoke + rng.below(300)),
            });
            ops.push(on(0, action, invoke, complete, status));
            now = complete + rng.below(30);
        }
    }
    let mut order: Vec<usize> = (0..ops.len()).filter(|&i| effect_at[i].is_some()).collect();
    order.sort_by_key(|&i| (effect_at[i], i));
    let mut value = None;
    for i in order {
        match &mut ops[i].action {
            Get(read) => *read = value,
            Put(v) => value = Some(*v),
            Delete => value = None,
            Cas {
                expect,
                new,
                previous,
                swapped,
            } => {
                *previous = value;
                *swapped = value == *expect;
                if *swapped {
                    value = Some(*new);
                }
            }
        }
    }
    History { ops }
}

#[test]
fn long_concurrent_history_passes_in_near_linear_steps() {
    let history = generated(7, 6, 500);
    let stats = check(&history).unwrap();
    assert_eq!(stats.searched + stats.dropped, 3000);
    assert!(stats.indeterminate > 20, "{stats}");
    // Memoisation keeps the search close to linear: a few steps per operation (each restart
    // from the head of the list walks past the indeterminate operations still pending).
    assert!(stats.steps < 30 * 3000, "{stats}");
}

#[test]
fn long_concurrent_history_with_one_stale_get_is_flagged_at_that_get() {
    let mut history = generated(11, 6, 500);
    let ops = &history.ops;
    let is_ok_put = |op: &Op| op.status == Status::Ok && matches!(op.action, Put(_));
    // The first acknowledged put, then a put that began after it completed.
    let first = (0..ops.len())
        .filter(|&i| is_ok_put(&ops[i]))
        .min_by_key(|&i| ops[i].complete)
        .unwrap();
    let Put(stale) = ops[first].action else {
        unreachable!()
    };
    let overwrite = (0..ops.len())
        .filter(|&i| is_ok_put(&ops[i]) && ops[i].invoke > ops[first].complete)
        .min_by_key(|&i| ops[i].complete)
        .unwrap();
    // A get in the middle of the history, long after that overwrite, now returns the stale value.
    let get = (0..ops.len())
        .filter(|&i| ops[i].status == Status::Ok && matches!(ops[i].action, Get(_)))
        .filter(|&i| ops[i].invoke > ops[overwrite].complete.max(3000))
        .min_by_key(|&i| ops[i].invoke)
        .unwrap();
    history.ops[get].action = Get(Some(stale));
    let (_, stuck) = stuck(check(&history));
    assert!(stuck.contains(&get), "{stuck:?} lacks #{get}");
}
