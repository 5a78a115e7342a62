//! Bank transfers: every snapshot read of all accounts sums to the fixed total, and shows no
//! negative balance.
//!
//! Clients move money between accounts in transactions (optimistic, pessimistic, async-commit,
//! one-phase: the checker does not care which) that refuse to overdraw, and read every account
//! in one snapshot. Whatever transfers committed, failed or ended indeterminate, each successful
//! read must show every account present ([`AnomalyKind::MissingAccount`]), balances summing to
//! [`History::total`] ([`AnomalyKind::WrongTotal`]), and none negative
//! ([`AnomalyKind::Negative`]).
//!
//! Whether each acknowledged transfer took effect is not checked: balances alone cannot tell
//! which transfers a snapshot includes (amounts repeat and indeterminate transfers may land), so
//! any rule about them would either miss real losses or flag correct histories. The list-append
//! checker ([`super::list_append`]) is the one that checks what each transaction saw.

use std::fmt;

use super::Status;

/// What an operation did, with what it returned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Moved `amount` from account `from` to account `to`.
    Transfer {
        /// The account debited (its index).
        from: usize,
        /// The account credited.
        to: usize,
        /// How much.
        amount: i64,
    },
    /// Read every account in one snapshot: each account's balance, by index (`None`: absent).
    /// Ignored unless the status is [`Status::Ok`].
    Read(Vec<Option<i64>>),
}

/// One operation.
pub type Op = super::Op<Action>;

/// A history of bank operations, in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The sum of all balances, fixed when the accounts were created.
    pub total: i64,
    /// Every operation invoked.
    pub ops: Vec<Op>,
}

/// What a passing check looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Successful reads, all checked.
    pub reads: usize,
    /// Transfers that succeeded.
    pub transfers_ok: usize,
    /// Indeterminate transfers.
    pub transfers_unknown: usize,
    /// Failed transfers.
    pub transfers_failed: usize,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} reads kept the total with no negative balance, over {} transfers ({} \
             indeterminate, {} failed)",
            self.reads,
            self.transfers_ok + self.transfers_unknown + self.transfers_failed,
            self.transfers_unknown,
            self.transfers_failed
        )
    }
}

/// What is wrong with one read (by its index in [`History::ops`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnomalyKind {
    /// An account was absent.
    MissingAccount {
        /// The read.
        read: usize,
        /// The account.
        account: usize,
    },
    /// The balances (all present) did not sum to the total.
    WrongTotal {
        /// The read.
        read: usize,
        /// Their sum.
        sum: i64,
        /// The total expected.
        total: i64,
    },
    /// A balance was negative.
    Negative {
        /// The read.
        read: usize,
        /// The account.
        account: usize,
        /// Its balance.
        balance: i64,
    },
}

/// An anomaly and the read that shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// What is wrong.
    pub kind: AnomalyKind,
    /// The read, by index, for printing with the balances it returned.
    pub witness: (usize, Op),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Transfer { from, to, amount } => {
                write!(f, "transfer {amount} from {from} to {to}")
            }
            Action::Read(balances) => {
                f.write_str("read [")?;
                for (i, balance) in balances.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    match balance {
                        Some(balance) => write!(f, "{sep}{balance}")?,
                        None => write!(f, "{sep}absent")?,
                    }
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnomalyKind::MissingAccount { read, account } => {
                write!(f, "missing account: #{read} found no account {account}")
            }
            AnomalyKind::WrongTotal { read, sum, total } => {
                write!(
                    f,
                    "wrong total: #{read} read balances summing to {sum}, not {total}"
                )
            }
            AnomalyKind::Negative {
                read,
                account,
                balance,
            } => write!(
                f,
                "negative balance: #{read} read account {account} at {balance}"
            ),
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::witnessed(f, &self.kind, std::slice::from_ref(&self.witness))
    }
}

/// Checks every successful read of a bank history (see the module docs).
pub fn check(history: &History) -> Result<Stats, Vec<Anomaly>> {
    let mut stats = Stats::default();
    let mut found = Vec::new();
    for (read, op) in history.ops.iter().enumerate() {
        let balances = match (&op.action, op.status) {
            (Action::Transfer { .. }, Status::Ok) => {
                stats.transfers_ok += 1;
                continue;
            }
            (Action::Transfer { .. }, Status::Unknown) => {
                stats.transfers_unknown += 1;
                continue;
            }
            (Action::Transfer { .. }, Status::Failed) => {
                stats.transfers_failed += 1;
                continue;
            }
            (Action::Read(balances), Status::Ok) => balances,
            (Action::Read(_), _) => continue,
        };
        stats.reads += 1;
        let mut sum = Some(0i64);
        for (account, balance) in balances.iter().enumerate() {
            match *balance {
                None => {
                    found.push(AnomalyKind::MissingAccount { read, account });
                    sum = None;
                }
                Some(balance) => {
                    sum = sum.map(|s| s.saturating_add(balance));
                    if balance < 0 {
                        found.push(AnomalyKind::Negative {
                            read,
                            account,
                            balance,
                        });
                    }
                }
            }
        }
        if let Some(sum) = sum.filter(|&s| s != history.total) {
            found.push(AnomalyKind::WrongTotal {
                read,
                sum,
                total: history.total,
            });
        }
    }
    if found.is_empty() {
        return Ok(stats);
    }
    Err(found
        .into_iter()
        .map(|kind| {
            let read = match kind {
                AnomalyKind::MissingAccount { read, .. }
                | AnomalyKind::WrongTotal { read, .. }
                | AnomalyKind::Negative { read, .. } => read,
            };
            Anomaly {
                kind,
                witness: (read, history.ops[read].clone()),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests;
