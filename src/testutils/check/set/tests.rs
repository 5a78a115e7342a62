use super::*;
use crate::backoff::SplitMix64;

fn op(action: Action, invoke: Time, complete: Time, status: Status) -> Op {
    Op {
        action,
        invoke,
        complete,
        status,
    }
}

fn add(element: u64, invoke: Time, complete: Time) -> Op {
    op(Action::Add(element), invoke, complete, Status::Ok)
}

fn read(elements: &[u64], invoke: Time, complete: Time) -> Op {
    op(
        Action::Read(elements.to_vec()),
        invoke,
        complete,
        Status::Ok,
    )
}

fn run(ops: Vec<Op>) -> Result<Stats, Vec<Anomaly>> {
    check(&History { ops })
}

fn kinds(ops: Vec<Op>) -> Vec<AnomalyKind> {
    let anomalies = run(ops).expect_err("the history must be flagged");
    anomalies.into_iter().map(|a| a.kind).collect()
}

#[test]
fn an_empty_history_passes() {
    assert_eq!(run(vec![]).unwrap(), Stats::default());
}

#[test]
fn acknowledged_adds_in_the_final_read_pass() {
    let stats = run(vec![
        add(1, 0, 10),
        read(&[], 5, 8),
        add(2, 20, 30),
        read(&[1, 2], 40, 50),
    ])
    .unwrap();
    assert_eq!(
        (stats.final_read, stats.confirmed, stats.reads),
        (Some(3), 2, 2)
    );
}

#[test]
fn an_acknowledged_add_missing_from_the_final_read_is_lost() {
    let found = kinds(vec![add(1, 0, 10), add(2, 0, 10), read(&[2], 20, 30)]);
    let expected = AnomalyKind::Lost {
        element: 1,
        known_by: 0,
        final_read: 2,
    };
    assert_eq!(found, vec![expected]);
}

#[test]
fn an_add_acknowledged_while_the_final_read_ran_is_unchecked() {
    let stats = run(vec![add(1, 0, 25), read(&[], 20, 30)]).unwrap();
    assert_eq!((stats.confirmed, stats.unchecked), (0, 1));
}

#[test]
fn an_indeterminate_add_may_or_may_not_appear() {
    let stats = run(vec![
        op(Action::Add(1), 0, 10, Status::Unknown),
        op(Action::Add(2), 0, 10, Status::Unknown),
        read(&[1], 20, 30),
    ])
    .unwrap();
    assert_eq!((stats.adds_unknown, stats.unknown_seen), (2, 1));
}

#[test]
fn an_indeterminate_add_once_seen_must_stay() {
    let found = kinds(vec![
        op(Action::Add(1), 0, 10, Status::Unknown),
        read(&[1], 20, 30),
        read(&[], 40, 50),
    ]);
    let expected = AnomalyKind::Lost {
        element: 1,
        known_by: 1,
        final_read: 2,
    };
    assert_eq!(found, vec![expected]);
}

#[test]
fn an_element_never_added_is_unexpected() {
    let found = kinds(vec![add(1, 0, 10), read(&[1, 7], 20, 30)]);
    assert_eq!(
        found,
        vec![AnomalyKind::Unexpected {
            element: 7,
            read: 1
        }]
    );
}

#[test]
fn an_element_whose_add_failed_is_unexpected() {
    let anomalies = run(vec![
        op(Action::Add(1), 0, 10, Status::Failed),
        read(&[1], 20, 30),
    ])
    .unwrap_err();
    assert_eq!(
        anomalies[0].to_string(),
        "unexpected: #1 read 1, which no add that could succeed attempted\n    \
         #1 read (1 elements) [20, 30]\n    #0 add 1 [0, ?] failed"
    );
}

#[test]
fn an_element_read_before_its_add_began_is_early() {
    let found = kinds(vec![read(&[1], 0, 10), add(1, 20, 30), read(&[1], 40, 50)]);
    let expected = AnomalyKind::Early {
        element: 1,
        read: 0,
        add: 1,
    };
    assert_eq!(found, vec![expected]);
}

#[test]
fn an_element_read_while_its_add_ran_passes() {
    run(vec![add(1, 0, 30), read(&[1], 10, 20), read(&[1], 40, 50)]).unwrap();
}

/// `count` operations by overlapping clients on a set that takes each add at a random instant
/// inside its interval (indeterminate ones at a random instant after invocation, or never) and
/// answers each read with its contents at a random instant inside the read's interval; a final
/// read after everything.
fn generated(seed: u64, count: u64) -> History {
    let mut rng = SplitMix64::new(seed);
    let mut ops = Vec::new();
    let mut effect_at = Vec::new();
    for i in 0..count {
        let invoke = i * 3;
        let complete = invoke + 1 + rng.below(40);
        let (action, status) = match rng.below(10) {
            0..=3 => (Action::Read(Vec::new()), Status::Ok),
            4 => (Action::Add(i), Status::Unknown),
            5 => (Action::Add(i), Status::Failed),
            _ => (Action::Add(i), Status::Ok),
        };
        effect_at.push(match status {
            Status::Ok => Some(invoke + rng.below(complete - invoke + 1)),
            Status::Failed => None,
            Status::Unknown => (rng.below(2) == 0).then(|| invoke + rng.below(200)),
        });
        ops.push(op(action, invoke, complete, status));
    }
    let end = count * 3 + 500;
    ops.push(read(&[], end, end + 1));
    effect_at.push(Some(end));
    let mut order: Vec<usize> = (0..ops.len()).filter(|&i| effect_at[i].is_some()).collect();
    // At equal instants, adds first.
    order.sort_by_key(|&i| (effect_at[i], matches!(ops[i].action, Action::Read(_)), i));
    let mut set = Vec::new();
    for i in order {
        match &mut ops[i].action {
            Action::Add(element) => set.push(*element),
            Action::Read(elements) => elements.clone_from(&set),
        }
    }
    History { ops }
}

#[test]
fn a_long_concurrent_history_passes() {
    let stats = check(&generated(1, 3000)).unwrap();
    assert!(stats.confirmed > 1000 && stats.unknown_seen > 50, "{stats}");
    assert!(
        stats.adds_unknown > stats.unknown_seen && stats.adds_failed > 100,
        "{stats}"
    );
    assert_eq!(stats.unchecked, 0);
}

#[test]
fn a_long_history_whose_final_read_lost_one_element_is_flagged() {
    let mut history = generated(2, 3000);
    let last = history.ops.len() - 1;
    let Action::Read(elements) = &mut history.ops[last].action else {
        unreachable!()
    };
    let lost = elements.remove(elements.len() / 2);
    let found: Vec<AnomalyKind> = check(&history)
        .unwrap_err()
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert!(
        matches!(found[..], [AnomalyKind::Lost { element, .. }] if element == lost),
        "{found:?}"
    );
}
