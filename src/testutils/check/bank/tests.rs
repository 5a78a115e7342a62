use super::*;
use crate::backoff::SplitMix64;

fn transfer(from: usize, to: usize, amount: i64, status: Status) -> Op {
    Op {
        action: Action::Transfer { from, to, amount },
        invoke: 0,
        complete: 10,
        status,
    }
}

fn read(balances: &[Option<i64>]) -> Op {
    Op {
        action: Action::Read(balances.to_vec()),
        invoke: 20,
        complete: 30,
        status: Status::Ok,
    }
}

fn kinds(total: i64, ops: Vec<Op>) -> Vec<AnomalyKind> {
    let anomalies = check(&History { total, ops }).expect_err("the history must be flagged");
    anomalies.into_iter().map(|a| a.kind).collect()
}

#[test]
fn reads_that_keep_the_total_pass_whatever_the_transfers_did() {
    let stats = check(&History {
        total: 20,
        ops: vec![
            transfer(0, 1, 5, Status::Ok),
            transfer(1, 0, 3, Status::Unknown),
            transfer(0, 1, 50, Status::Failed),
            read(&[Some(10), Some(10)]),
            read(&[Some(5), Some(15)]),
            Op {
                status: Status::Unknown,
                ..read(&[None, Some(-4)])
            },
        ],
    })
    .unwrap();
    assert_eq!(
        (
            stats.reads,
            stats.transfers_ok,
            stats.transfers_unknown,
            stats.transfers_failed
        ),
        (2, 1, 1, 1)
    );
}

#[test]
fn a_read_with_another_total_is_flagged() {
    let found = kinds(
        20,
        vec![read(&[Some(10), Some(10)]), read(&[Some(5), Some(10)])],
    );
    let expected = AnomalyKind::WrongTotal {
        read: 1,
        sum: 15,
        total: 20,
    };
    assert_eq!(found, vec![expected]);
}

#[test]
fn a_negative_balance_is_flagged_even_when_the_total_holds() {
    let found = kinds(20, vec![read(&[Some(-5), Some(25)])]);
    let expected = AnomalyKind::Negative {
        read: 0,
        account: 0,
        balance: -5,
    };
    assert_eq!(found, vec![expected]);
}

#[test]
fn an_absent_account_is_flagged_instead_of_a_wrong_total() {
    let found = kinds(20, vec![read(&[Some(10), None])]);
    let expected = AnomalyKind::MissingAccount {
        read: 0,
        account: 1,
    };
    assert_eq!(found, vec![expected]);
}

#[test]
fn the_report_prints_the_read_and_its_balances() {
    let anomalies = check(&History {
        total: 20,
        ops: vec![read(&[Some(10), None, Some(-1)])],
    })
    .unwrap_err();
    let text: Vec<String> = anomalies.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            "missing account: #0 found no account 1\n    #0 read [10, absent, -1] [20, 30]",
            "negative balance: #0 read account 2 at -1\n    #0 read [10, absent, -1] [20, 30]",
        ]
    );
}

/// A serial bank of `accounts` accounts holding 100 each: random transfers that fail when they
/// would overdraw (or at random), indeterminate ones that take effect or not, and reads of the
/// state.
fn generated(seed: u64, count: u64, accounts: usize) -> History {
    let mut rng = SplitMix64::new(seed);
    let mut balances = vec![100i64; accounts];
    let mut ops = Vec::new();
    for i in 0..count {
        let (invoke, complete) = (i * 10, i * 10 + 5);
        if rng.below(3) == 0 {
            let action = Action::Read(balances.iter().copied().map(Some).collect());
            ops.push(Op {
                action,
                invoke,
                complete,
                status: Status::Ok,
            });
            continue;
        }
        let from = rng.below(accounts as u64) as usize;
        let to = rng.below(accounts as u64) as usize;
        let amount = 1 + rng.below(60) as i64;
        let status = match rng.below(10) {
            _ if balances[from] < amount => Status::Failed,
            0 => Status::Failed,
            1 => Status::Unknown,
            _ => Status::Ok,
        };
        let takes_effect = match status {
            Status::Ok => true,
            Status::Failed => false,
            Status::Unknown => rng.below(2) == 0,
        };
        if takes_effect {
            balances[from] -= amount;
            balances[to] += amount;
        }
        ops.push(Op {
            action: Action::Transfer { from, to, amount },
            invoke,
            complete,
            status,
        });
    }
    History {
        total: 100 * accounts as i64,
        ops,
    }
}

#[test]
fn a_long_serial_history_passes() {
    let stats = check(&generated(1, 3000, 5)).unwrap();
    assert!(stats.reads > 500 && stats.transfers_ok > 1000, "{stats}");
    assert!(
        stats.transfers_unknown > 50 && stats.transfers_failed > 100,
        "{stats}"
    );
}

#[test]
fn a_long_history_with_one_read_missing_a_transfer_is_flagged() {
    let mut history = generated(2, 3000, 5);
    let middle = (history.ops.len() / 2..)
        .find(|&i| matches!(history.ops[i].action, Action::Read(_)))
        .unwrap();
    let Action::Read(balances) = &mut history.ops[middle].action else {
        unreachable!()
    };
    // One side of a transfer of 7 seen, the other not.
    balances[0] = balances[0].map(|b| b + 7);
    let found = check(&history).unwrap_err();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(matches!(found[0].kind, AnomalyKind::WrongTotal { read, .. } if read == middle));
}
