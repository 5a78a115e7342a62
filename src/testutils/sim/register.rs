//! The register workload: callers read and compare-and-swap a few raw keys with unique
//! values; the history is checked for linearizability.
//!
//! Writes are compare-and-swaps only. A plain raw put is at-least-once (as in client-go): a
//! put resent after a lost reply can take effect twice, the second time after other writes,
//! which no single linearization point explains (seed 1 showed it: a put whose first attempt
//! landed and whose resend landed again after a later compare-and-swap). A compare-and-swap
//! resent that way finds its own value and the client reports it undetermined instead.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::now;
use super::workload::{verdict, Env, Judge};
use crate::backoff::SplitMix64;
use crate::testutils::check::register::{self, Action, Op};
use crate::testutils::check::Status;
use crate::{Config, RawClient};

/// The keys the callers share.
pub(super) const KEYS: u64 = 3;

/// The raw key of register `i`.
pub(super) fn key_name(i: u64) -> String {
    format!("reg/{i}")
}

/// The operations recorded so far.
struct History {
    env: Env,
    ops: Rc<RefCell<Vec<Op>>>,
}

impl Judge for History {
    fn cancelled(&self) -> usize {
        self.env.cancelled()
    }

    fn judge(&self) -> (usize, Result<String, String>) {
        let history = register::History {
            ops: self.ops.borrow().clone(),
        };
        (history.ops.len(), verdict(register::check(&history)))
    }
}

/// Registers the client hosts.
pub(super) fn start(
    sim: &mut turmoil::Sim<'_>,
    clients: &[String],
    env: &Env,
    rng: &mut SplitMix64,
) -> Box<dyn Judge> {
    let ops = Rc::new(RefCell::new(Vec::new()));
    for (c, host) in clients.iter().enumerate() {
        let seed = rng.next_u64();
        let (ops, env, host) = (ops.clone(), env.clone(), host.clone());
        sim.client(host.clone().as_str(), async move {
            let Some(client) = connect(&env).await else {
                return Ok(());
            };
            let callers = (0..env.options.callers).map(|i| {
                let caller = Caller {
                    name: format!("{host}/{i}"),
                    client: &client,
                    rng: SplitMix64::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9)),
                    values: ((c as u64) << 40) | ((i as u64) << 32),
                    seen: [None; KEYS as usize],
                    ops: &ops,
                    env: &env,
                };
                caller.run()
            });
            futures::future::join_all(callers).await;
            Ok(())
        });
    }
    Box::new(History {
        env: env.clone(),
        ops,
    })
}

/// A client, once PD answers (retried until the workload's time is up).
async fn connect(env: &Env) -> Option<RawClient> {
    let config = Config::default().with_operation_timeout(Duration::from_secs(5));
    while !env.over() {
        match RawClient::new_with_config(env.endpoints.clone(), config.clone()).await {
            Ok(client) => return Some(client.with_atomic_for_cas()),
            Err(e) => log::debug!("sim client: {e}"),
        }
    }
    None
}

struct Caller<'a> {
    name: String,
    client: &'a RawClient,
    rng: SplitMix64,
    /// The next value to write (unique over the run).
    values: u64,
    /// The last value seen per key, expected by the next compare-and-swap.
    seen: [Option<u64>; KEYS as usize],
    ops: &'a RefCell<Vec<Op>>,
    env: &'a Env,
}

impl Caller<'_> {
    async fn run(mut self) {
        while !self.env.over() {
            self.one().await;
            self.env.think(&mut self.rng).await;
        }
    }

    /// Runs one random operation and records it (a read that did not return observed
    /// nothing and is not recorded).
    async fn one(&mut self) {
        let key = self.rng.below(KEYS);
        let name = key_name(key);
        let cancel = self.env.cancel_after(&mut self.rng);
        let invoke = now();
        let client = self.client;
        let (action, status) = match self.rng.below(10) {
            0..=3 => match self.env.within(cancel, client.get(name)).await {
                Some(Ok(value)) => (Action::Get(value.as_deref().map(decode)), Status::Ok),
                _ => return,
            },
            _ => {
                let (expect, new) = (self.seen[key as usize], self.next_value());
                let cas = client.compare_and_swap(name, expect.map(encode), encode(new));
                match self.env.within(cancel, cas).await {
                    Some(Ok((previous, swapped))) => {
                        let previous = previous.as_deref().map(decode);
                        self.seen[key as usize] = if swapped { Some(new) } else { previous };
                        let action = Action::Cas {
                            expect,
                            new,
                            previous,
                            swapped,
                        };
                        (action, Status::Ok)
                    }
                    _ => {
                        let action = Action::Cas {
                            expect,
                            new,
                            previous: None,
                            swapped: false,
                        };
                        (action, Status::Unknown)
                    }
                }
            }
        };
        if let (Action::Get(value), Status::Ok) = (&action, status) {
            self.seen[key as usize] = *value;
        }
        let complete = now();
        let event = format!(
            "{} key {key} {action:?} {status} [{invoke:?}, {complete:?}]",
            self.name
        );
        self.env.record(&event);
        self.ops.borrow_mut().push(Op {
            key,
            action,
            invoke: invoke.as_nanos() as u64,
            complete: complete.as_nanos() as u64,
            status,
        });
    }

    fn next_value(&mut self) -> u64 {
        self.values += 1;
        self.values
    }
}

fn encode(value: u64) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

/// A value read back; anything not written by this workload reads as `u64::MAX`, which the
/// checker cannot explain.
fn decode(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(u64::MAX, u64::from_be_bytes)
}
