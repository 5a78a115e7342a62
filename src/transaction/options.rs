//! The options of a transaction and of its pessimistic lock requests.

use std::time::Duration;

use crate::interceptor::ContextOptions;
use crate::proto::kvrpcpb;
use crate::{Key, Value};

use super::snapshot::{ReadOptions, ReplicaRead};

/// client-go's heartbeat period: half the managed lock TTL.
pub(super) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// How a transaction runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionOptions {
    /// Pessimistic: writes and `get_for_update` lock keys at once, so commit cannot meet a
    /// write conflict. Optimistic (default): conflicts are found at commit.
    pub pessimistic: bool,
    /// How long a pessimistic lock request waits for another transaction's lock.
    pub lock_wait: LockWait,
    /// The isolation of reads: snapshot isolation (default) or read committed.
    pub isolation_level: kvrpcpb::IsolationLevel,
    /// What dropping an unfinished transaction does.
    pub drop_check: DropCheck,
    /// Try async commit: the transaction is committed once every key is prewritten, saving a
    /// round trip (client-go limits: 256 keys, 4 KiB of keys; falls back to 2PC otherwise).
    pub async_commit: bool,
    /// Try one-phase commit when every mutation fits one request to one region.
    pub try_one_pc: bool,
    /// How often the primary lock's TTL is extended while the transaction holds pessimistic
    /// locks (client-go: every 10 s, for at most an hour); `None` turns heartbeats off.
    pub heartbeat: Option<Duration>,
    /// Which replica serves reads (default: the leader). Locking reads and writes always go
    /// to the leader.
    pub replica_read: ReplicaRead,
    /// Snapshots only: read from any replica whose data is complete up to the snapshot's
    /// timestamp, without asking the leader (for timestamps in the past, e.g. from
    /// [`super::TransactionClient::stale_timestamp`]). A replica that is behind answers
    /// `DataIsNotReady` and the read goes to the leader instead.
    pub stale_read: bool,
    /// How strictly TiKV checks the assertions set with [`super::Transaction::set_assertion`] at
    /// prewrite (default: off, assertions are not sent).
    pub assertion_level: kvrpcpb::AssertionLevel,
    /// Async commit and 1PC without linearizability: skip fetching a fresh timestamp for the
    /// minimum commit timestamp, so a transaction that starts after this one commits may not
    /// see it, though every transaction still sees what it causally depends on.
    pub causal_consistency: bool,
    /// Context fields stamped on every request of the transaction: priority, resource group
    /// and tag, request source, transaction source, disk-full policy.
    pub context: ContextOptions,
    /// The total deadline of each operation of the transaction (a read, a lock, the commit),
    /// attempts and retries included; `None` uses [`crate::Config::operation_timeout`].
    pub operation_timeout: Option<Duration>,
}

/// How long to wait for another transaction's lock when locking pessimistically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Wait until the lock is released (client-go's `LockAlwaysWait`), within the operation's
    /// deadline ([`TransactionOptions::operation_timeout`]).
    Forever,
    /// Fail at once with [`crate::Error::LockWaitTimeout`] (client-go's `LockNoWait`).
    NoWait,
    /// Wait at most this long.
    Timeout(Duration),
}

/// What happens when a transaction is dropped without commit or rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCheck {
    /// Log a warning, and roll back in the background anything already written to TiKV.
    Warn,
    /// As `Warn`, without the log line.
    Silent,
}

impl TransactionOptions {
    /// An optimistic transaction with snapshot isolation.
    pub fn new_optimistic() -> Self {
        TransactionOptions {
            pessimistic: false,
            lock_wait: LockWait::Forever,
            isolation_level: kvrpcpb::IsolationLevel::Si,
            drop_check: DropCheck::Warn,
            heartbeat: Some(HEARTBEAT_INTERVAL),
            async_commit: false,
            try_one_pc: false,
            replica_read: ReplicaRead::Leader,
            stale_read: false,
            assertion_level: kvrpcpb::AssertionLevel::Off,
            causal_consistency: false,
            context: ContextOptions::default(),
            operation_timeout: None,
        }
    }

    /// Bounds each operation of the transaction (a read, a lock request, the commit) to
    /// `timeout` in total, instead of [`crate::Config::operation_timeout`].
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = Some(timeout);
        self
    }

    /// Turns async commit on or off.
    pub fn use_async_commit(mut self, on: bool) -> Self {
        self.async_commit = on;
        self
    }

    /// Turns one-phase commit on or off.
    pub fn try_one_pc(mut self, on: bool) -> Self {
        self.try_one_pc = on;
        self
    }

    /// Sets how often the primary lock is kept alive (`None`: never).
    pub fn heartbeat(mut self, interval: Option<Duration>) -> Self {
        self.heartbeat = interval;
        self
    }

    /// A pessimistic transaction with snapshot isolation that waits for locks forever.
    pub fn new_pessimistic() -> Self {
        TransactionOptions {
            pessimistic: true,
            ..Self::new_optimistic()
        }
    }

    /// Sets how long pessimistic lock requests wait.
    pub fn lock_wait(mut self, wait: LockWait) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Reads see the latest committed data instead of a snapshot (read committed).
    pub fn read_committed(mut self) -> Self {
        self.isolation_level = kvrpcpb::IsolationLevel::Rc;
        self
    }

    /// Sets what dropping an unfinished transaction does.
    pub fn drop_check(mut self, check: DropCheck) -> Self {
        self.drop_check = check;
        self
    }

    /// Sets which replica serves reads.
    pub fn replica_read(mut self, replica: ReplicaRead) -> Self {
        self.replica_read = replica;
        self
    }

    /// Turns stale reads on (snapshots only).
    pub fn stale_read(mut self, on: bool) -> Self {
        self.stale_read = on;
        self
    }

    /// Checks options a transaction cannot run with.
    pub(crate) fn validate(&self) -> crate::Result<()> {
        let invalid = |m: &str| Err(crate::Error::InvalidArgument(m.to_owned()));
        if self.stale_read {
            return invalid(
                "stale reads are for snapshots: a transaction reads at its start timestamp",
            );
        }
        if self.heartbeat.is_some_and(|d| d.is_zero()) {
            return invalid("a heartbeat interval must be greater than zero (None turns them off)");
        }
        if self.operation_timeout.is_some_and(|d| d.is_zero()) {
            return invalid("an operation timeout must be greater than zero");
        }
        Ok(())
    }

    pub(crate) fn read_options(&self) -> ReadOptions {
        ReadOptions {
            isolation: self.isolation_level,
            replica: self.replica_read,
            stale: self.stale_read,
            operation_timeout: self.operation_timeout,
        }
    }

    /// Sets how strictly TiKV checks assertions.
    pub fn assertion_level(mut self, level: kvrpcpb::AssertionLevel) -> Self {
        self.assertion_level = level;
        self
    }

    /// Gives up linearizability of async commit and 1PC for one timestamp request less.
    pub fn causal_consistency(mut self, on: bool) -> Self {
        self.causal_consistency = on;
        self
    }

    /// Sets the scheduling priority of the transaction's requests.
    pub fn priority(mut self, priority: kvrpcpb::CommandPri) -> Self {
        self.context = self.context.priority(priority);
        self
    }

    /// Runs the transaction's requests under this resource group.
    pub fn resource_group_name(mut self, name: impl Into<String>) -> Self {
        self.context = self.context.resource_group_name(name);
        self
    }

    /// Tags the transaction's requests for TiKV's resource metering.
    pub fn resource_group_tag(mut self, tag: impl Into<Vec<u8>>) -> Self {
        self.context = self.context.resource_group_tag(tag);
        self
    }

    /// Labels the transaction's requests with where they come from.
    pub fn request_source(mut self, source: impl Into<String>) -> Self {
        self.context = self.context.request_source(source);
        self
    }

    /// Marks the transaction's writes with a source (for CDC filtering).
    pub fn txn_source(mut self, source: u64) -> Self {
        self.context = self.context.txn_source(source);
        self
    }

    /// Sets whether the transaction may write to an almost-full disk.
    pub fn disk_full_opt(mut self, opt: kvrpcpb::DiskFullOpt) -> Self {
        self.context = self.context.disk_full_opt(opt);
        self
    }
}

/// Options of one pessimistic lock request ([`super::Transaction::lock_keys_with_options`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockOptions {
    pub(super) return_values: bool,
    pub(super) check_existence: bool,
    pub(super) lock_only_if_exists: bool,
    pub(super) wait: Option<LockWait>,
    pub(super) assert_not_exist: bool,
}

impl LockOptions {
    /// Reads each key's latest committed value with the lock, in the same round trip.
    pub fn return_values(mut self, on: bool) -> Self {
        self.return_values = on;
        self
    }

    /// Reports whether each key has a committed value, without transferring values.
    pub fn check_existence(mut self, on: bool) -> Self {
        self.check_existence = on;
        self
    }

    /// Locks only the keys that have a committed value (implies `return_values`, as TiKV
    /// requires).
    pub fn lock_only_if_exists(mut self, on: bool) -> Self {
        self.lock_only_if_exists = on;
        if on {
            self.return_values = true;
        }
        self
    }

    /// Overrides the transaction's [`LockWait`] for this request.
    pub fn wait(mut self, wait: LockWait) -> Self {
        self.wait = Some(wait);
        self
    }
}

/// What a pessimistic lock request learned about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockedKey {
    /// The key.
    pub key: Key,
    /// Whether the transaction now holds its lock (false only for a missing key under
    /// [`LockOptions::lock_only_if_exists`]).
    pub locked: bool,
    /// Whether the key has a committed value (with `return_values` or `check_existence`).
    pub exists: Option<bool>,
    /// Its latest committed value, if it has one (with `return_values`).
    pub value: Option<Value>,
}

impl Default for TransactionOptions {
    fn default() -> Self {
        Self::new_optimistic()
    }
}
