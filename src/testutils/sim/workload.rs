//! What the workloads share: the callers' environment (trace, cancellation, timestamps in
//! use), the kinds of transactions they run, how a client is connected, and the GC host.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::nemesis::Fault;
use super::{now, Options, Trace};
use crate::backoff::SplitMix64;
use crate::testutils::check::{self, Status};
use crate::{
    Config, Error, Snapshot, Timestamp, Transaction, TransactionClient, TransactionOptions,
};

/// A workload's recorded history, judged once the run is over.
pub(super) trait Judge {
    /// How many calls the callers cancelled.
    fn cancelled(&self) -> usize;
    /// How many operations were recorded, and the checker's verdict: its statistics, or the
    /// anomalies it found, one per line.
    fn judge(&self) -> (usize, Result<String, String>);
}

/// Anomalies printed in full; the count of the others is printed.
const SHOWN_ANOMALIES: usize = 3;

/// A checker's result as a verdict.
pub(super) fn verdict<S: fmt::Display, A: fmt::Display>(
    result: Result<S, Vec<A>>,
) -> Result<String, String> {
    result.map(|s| s.to_string()).map_err(|anomalies| {
        let mut shown: Vec<String> = anomalies
            .iter()
            .take(SHOWN_ANOMALIES)
            .map(ToString::to_string)
            .collect();
        if anomalies.len() > SHOWN_ANOMALIES {
            shown.push(format!(
                "and {} more anomalies",
                anomalies.len() - SHOWN_ANOMALIES
            ));
        }
        shown.join("\n")
    })
}

/// What every caller of a run shares.
#[derive(Clone)]
pub(super) struct Env {
    pub options: Options,
    /// PD's endpoints.
    pub endpoints: Vec<String>,
    trace: Rc<RefCell<Trace>>,
    cancelled: Rc<Cell<usize>>,
    /// The start timestamps of the transactions and snapshots in use: GC stays at or below
    /// the oldest, as TiDB's GC worker stays below its servers' oldest transaction.
    running: Rc<RefCell<Vec<u64>>>,
}

impl Env {
    pub(super) fn new(options: &Options, endpoints: &[String], trace: &Rc<RefCell<Trace>>) -> Self {
        Env {
            options: options.clone(),
            endpoints: endpoints.to_vec(),
            trace: trace.clone(),
            cancelled: Rc::default(),
            running: Rc::default(),
        }
    }

    /// Keeps GC at or below `ts` while the result lives.
    pub(super) fn hold(&self, ts: Timestamp) -> Held {
        self.running.borrow_mut().push(ts.version());
        Held {
            running: self.running.clone(),
            version: ts.version(),
        }
    }

    /// The oldest timestamp in use, if any.
    fn oldest_running(&self) -> Option<u64> {
        self.running.borrow().iter().copied().min()
    }

    /// A snapshot at a fresh timestamp, held back from GC while the result lives.
    pub(super) async fn snapshot(
        &self,
        client: &TransactionClient,
    ) -> crate::Result<(Snapshot, Held)> {
        let ts = client.current_timestamp().await?;
        let held = self.hold(ts);
        Ok((
            client.snapshot(ts, TransactionOptions::new_optimistic()),
            held,
        ))
    }

    /// How many calls were cancelled.
    pub(super) fn cancelled(&self) -> usize {
        self.cancelled.get()
    }

    /// Adds an event to the trace, at the current simulated time.
    pub(super) fn record(&self, event: &str) {
        self.trace.borrow_mut().record(now(), event);
    }

    /// Whether the workload's time is up.
    pub(super) fn over(&self) -> bool {
        now() >= self.options.duration
    }

    /// When to give up on the next call, if the schedule cancels it: one call in ten while
    /// the workload runs, after up to 30 ms.
    pub(super) fn cancel_after(&self, rng: &mut SplitMix64) -> Option<Duration> {
        let cancels = self.options.faults.contains(&Fault::Cancellation) && !self.over();
        (cancels && rng.below(10) == 0).then(|| Duration::from_millis(rng.below(30)))
    }

    /// The call's result, or `None` if it was cancelled first.
    pub(super) async fn within<T>(
        &self,
        cancel: Option<Duration>,
        call: impl Future<Output = T>,
    ) -> Option<T> {
        let Some(after) = cancel else {
            return Some(call.await);
        };
        let result = tokio::time::timeout(after, call).await.ok();
        if result.is_none() {
            self.cancelled.set(self.cancelled.get() + 1);
        }
        result
    }

    /// Sleeps between two operations of a caller: up to 20 ms.
    pub(super) async fn think(&self, rng: &mut SplitMix64) {
        tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
    }

    /// Retries `read` until it succeeds, for up to a minute of simulated time after the
    /// workload: a final read, with every fault healed, must get through.
    pub(super) async fn settle<T>(&self, read: impl AsyncFn() -> crate::Result<T>) -> Option<T> {
        let until = self.options.duration + Duration::from_secs(60);
        while now() < until {
            match read().await {
                Ok(value) => return Some(value),
                Err(e) => log::debug!("sim final read: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

/// A timestamp in use (see [`Env::hold`]).
pub(super) struct Held {
    running: Rc<RefCell<Vec<u64>>>,
    version: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut running = self.running.borrow_mut();
        if let Some(i) = running.iter().position(|v| *v == self.version) {
            running.swap_remove(i);
        }
    }
}

/// A transactional client, once PD answers (retried until the workload's time is up).
pub(super) async fn connect_txn(env: &Env) -> Option<TransactionClient> {
    let config = Config::default().with_operation_timeout(Duration::from_secs(5));
    while !env.over() {
        match TransactionClient::new_with_config(env.endpoints.clone(), config.clone()).await {
            Ok(client) => return Some(client),
            Err(e) => log::debug!("sim client: {e}"),
        }
    }
    None
}

/// The kinds of transactions the transactional workloads mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Optimistic, two-phase commit.
    Optimistic,
    /// Pessimistic: every key read is locked first.
    Pessimistic,
    /// Optimistic with async commit.
    AsyncCommit,
    /// Optimistic, trying one-phase commit (two-phase when the keys span regions).
    OnePc,
}

impl Kind {
    /// One kind, drawn uniformly.
    pub(super) fn draw(rng: &mut SplitMix64) -> Kind {
        [
            Kind::Optimistic,
            Kind::Pessimistic,
            Kind::AsyncCommit,
            Kind::OnePc,
        ][rng.below(4) as usize]
    }

    pub(super) fn options(self) -> TransactionOptions {
        match self {
            Kind::Optimistic => TransactionOptions::new_optimistic(),
            Kind::Pessimistic => TransactionOptions::new_pessimistic(),
            Kind::AsyncCommit => TransactionOptions::new_optimistic().use_async_commit(true),
            Kind::OnePc => TransactionOptions::new_optimistic().try_one_pc(true),
        }
    }
}

/// How a transaction that failed with `error` ended: indeterminate if its commit may have
/// landed (the client says so), else failed.
pub(super) fn failed(error: &Error) -> Status {
    match error {
        Error::CommitUndetermined(_) => Status::Unknown,
        _ => Status::Failed,
    }
}

impl<T: Judge> Judge for Rc<T> {
    fn cancelled(&self) -> usize {
        T::cancelled(self)
    }

    fn judge(&self) -> (usize, Result<String, String>) {
        T::judge(self)
    }
}

/// Runs `body` in a new transaction of `kind`, then commits it; a failure before the commit
/// rolls it back.
pub(super) async fn transact<T>(
    caller: &Caller,
    kind: Kind,
    body: impl AsyncFnOnce(&mut Transaction) -> crate::Result<T>,
) -> crate::Result<T> {
    let mut txn = caller.client.begin_with_options(kind.options()).await?;
    let _held = caller.env.hold(txn.start_timestamp());
    match body(&mut txn).await {
        Ok(value) => txn.commit().await.map(|_| value),
        Err(e) => {
            if let Err(rollback) = txn.rollback().await {
                log::debug!("sim rollback after {e}: {rollback}");
            }
            Err(e)
        }
    }
}

/// The operations of a history judged by one checker (`bank`, `set`), recorded as they end.
pub(super) struct Ops<A>(RefCell<Vec<check::Op<A>>>);

impl<A: fmt::Debug + Clone> Ops<A> {
    pub(super) fn new() -> Self {
        Ops(RefCell::default())
    }

    /// Every operation so far.
    pub(super) fn all(&self) -> Vec<check::Op<A>> {
        self.0.borrow().clone()
    }

    /// Records an operation of `caller` that began at `invoke` and ends now.
    pub(super) fn push(&self, caller: &Caller, action: A, invoke: Duration, status: Status) {
        let complete = now();
        caller.env.record(&format!(
            "{} {action:?} {status} [{invoke:?}, {complete:?}]",
            caller.name
        ));
        self.0.borrow_mut().push(check::Op {
            action,
            invoke: invoke.as_nanos() as u64,
            complete: complete.as_nanos() as u64,
            status,
        });
    }

    /// Runs a read as one of `caller`'s steps, cancelled as the schedule says; records it if
    /// it returned (a read that did not return observed nothing).
    pub(super) async fn read<T>(
        &self,
        caller: &mut Caller,
        read: impl AsyncFnOnce(&Caller) -> crate::Result<T>,
        action: impl FnOnce(T) -> A,
    ) {
        let cancel = caller.env.cancel_after(&mut caller.rng);
        let invoke = now();
        match caller.env.within(cancel, read(caller)).await {
            Some(Ok(value)) => self.push(caller, action(value), invoke, Status::Ok),
            Some(Err(e)) => log::debug!("sim read: {e}"),
            None => {}
        }
    }

    /// The final read, once the faults are healed: retried until it returns (for up to a
    /// minute), and recorded.
    pub(super) async fn final_read<T>(
        &self,
        caller: &Caller,
        read: impl AsyncFn(&Caller) -> crate::Result<T>,
        action: impl FnOnce(T) -> A,
    ) {
        let invoke = now();
        if let Some(value) = caller.env.settle(async || read(caller).await).await {
            self.push(caller, action(value), invoke, Status::Ok);
        }
    }
}

/// One caller of a transactional workload.
pub(super) struct Caller {
    /// `client<i>/<j>`, for the trace.
    pub name: String,
    pub client: Rc<TransactionClient>,
    pub rng: SplitMix64,
    pub env: Env,
    /// The last value this caller wrote (values are unique over the run).
    value: u64,
}

impl Caller {
    /// A value no other caller writes.
    pub(super) fn next_value(&mut self) -> u64 {
        self.value += 1;
        self.value
    }
}

/// A transactional workload: what its callers do, and what it does before and after them.
pub(super) trait TxnWorkload: 'static {
    /// Prepares the data, on the first client before its callers start; the others wait
    /// until it is [`TxnWorkload::ready`].
    async fn set_up(&self, _caller: &mut Caller) {}

    /// Whether the data is prepared.
    fn ready(&self) -> bool {
        true
    }

    /// One operation, recorded by the workload.
    async fn step(&self, caller: &mut Caller);

    /// Once per client after its callers stopped and the faults were healed (a final read).
    async fn finish(&self, _caller: &mut Caller) {}
}

/// Registers one host per client: each connects a transactional client and runs `workload`'s
/// callers until the workload's time is up.
pub(super) fn start_txn<W: TxnWorkload>(
    sim: &mut turmoil::Sim<'_>,
    clients: &[String],
    env: &Env,
    rng: &mut SplitMix64,
    workload: Rc<W>,
) {
    for (c, host) in clients.iter().enumerate() {
        let seed = rng.next_u64();
        let (env, host, workload) = (env.clone(), host.clone(), workload.clone());
        sim.client(host.clone().as_str(), async move {
            let Some(client) = connect_txn(&env).await else {
                return Ok(());
            };
            let client = Rc::new(client);
            let caller = |i: usize| Caller {
                name: format!("{host}/{i}"),
                client: client.clone(),
                rng: SplitMix64::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9)),
                env: env.clone(),
                value: ((c as u64) << 40) | ((i as u64) << 32),
            };
            let callers = env.options.callers;
            let mut own = caller(callers);
            if c == 0 {
                workload.set_up(&mut own).await;
            }
            while !workload.ready() {
                if env.over() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let running = (0..callers).map(|i| {
                let (mut caller, workload) = (caller(i), &workload);
                async move {
                    while !caller.env.over() {
                        workload.step(&mut caller).await;
                        caller.env.think(&mut caller.rng).await;
                    }
                }
            });
            futures::future::join_all(running).await;
            workload.finish(&mut own).await;
            Ok(())
        });
    }
}

/// Registers the host `gc`, which advances the GC safe point when the nemesis says: to the
/// current time less the duration it sends, or to the oldest timestamp in use if that is
/// older, resolving the locks older than that first (the client's
/// [`TransactionClient::gc`]). Returns where to send.
pub(super) fn start_gc(sim: &mut turmoil::Sim<'_>, env: &Env) -> mpsc::UnboundedSender<Duration> {
    let (orders, mut received) = mpsc::unbounded_channel::<Duration>();
    let env = env.clone();
    sim.client("gc", async move {
        let Some(client) = connect_txn(&env).await else {
            return Ok(());
        };
        while !env.over() {
            let Ok(Some(behind)) =
                tokio::time::timeout(Duration::from_millis(100), received.recv()).await
            else {
                continue;
            };
            let outcome = match client.current_timestamp().await {
                Ok(now) => {
                    let behind = (behind.as_millis() as i64).min(now.physical);
                    let mut safe_point = Timestamp {
                        physical: now.physical - behind,
                        logical: 0,
                    };
                    if let Some(oldest) = env.oldest_running() {
                        safe_point = safe_point.min(Timestamp::from_version(oldest));
                    }
                    client
                        .gc(safe_point)
                        .await
                        .map(|ts| format!("safe point {}", ts.version()))
                }
                Err(e) => Err(e),
            };
            env.record(&match outcome {
                Ok(done) => format!("gc: {done}"),
                Err(e) => format!("gc failed: {e}"),
            });
        }
        Ok(())
    });
    orders
}
