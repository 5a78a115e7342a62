//! The one error type of the crate.
//!
//! Variants are grouped by what the caller does next:
//!
//! * **Fix the call**: [`Error::InvalidArgument`], [`Error::InvalidConfig`],
//!   [`Error::Unsupported`], [`Error::Rejected`]. Retrying the same call cannot help.
//! * **Decide at the application level**: key errors reported by TiKV for a transaction
//!   ([`Error::WriteConflict`], [`Error::KeyExists`], [`Error::Deadlock`],
//!   [`Error::AssertionFailed`], [`Error::KeyError`]) and outcomes such as
//!   [`Error::TransactionRolledBack`]. Usually: restart the transaction, or report.
//! * **The outcome of a write is not known**: [`Error::CommitUndetermined`] (ask
//!   [`crate::TransactionClient::transaction_status`]), [`Error::WriteUndetermined`] (read the
//!   data), [`Error::PartialWrite`] (write the unconfirmed keys again). Nothing was undone.
//! * **The cluster did not answer well enough in time**: [`Error::DeadlineExceeded`] (the
//!   operation's total deadline passed), [`Error::BackoffExhausted`] (its retry budget is spent;
//!   it names the backoff kind that slept longest and the last error), [`Error::Region`] (a
//!   region error that is never retried), [`Error::NoRegion`], [`Error::Timeout`]. Retrying
//!   later may help: see [`Error::is_retryable`]; [`Error::may_have_been_sent`] says whether a
//!   failed write may have taken effect.
//! * **Transport and PD**: [`Error::Transport`] (with [`TransportError::may_have_been_sent`]),
//!   [`Error::Grpc`], [`Error::Pd`], [`Error::ClusterIdMismatch`].
//!
//! Large protobuf payloads are boxed so that `Result<T, Error>` stays small.

use std::fmt;
use std::time::Duration;

use crate::backoff::BackoffKind;
use crate::proto::{errorpb, kvrpcpb};
use crate::timestamp::Timestamp;
use crate::Key;

/// A specialised `Result` for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a call to TiKV or PD.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument of the call is invalid (an inverted range, an oversized key or value, a
    /// limit above the maximum, ...). The message says which and why.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The client configuration is invalid. The message names the setting.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The operation is not available on this target, with this configuration, or on this
    /// cluster (for example a TTL on a cluster that does not store TTLs).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// TiKV refused the request and said why (a raw request's `error` text).
    #[error("TiKV rejected the request: {0}")]
    Rejected(String),

    /// Another transaction committed a write to the key after this transaction started.
    #[error("write conflict on key {key:?}: start_ts {start_ts}, conflicting commit_ts {conflict_commit_ts}", key = KeyDisplay(&.0.key), start_ts = .0.start_ts, conflict_commit_ts = .0.conflict_commit_ts)]
    WriteConflict(Box<kvrpcpb::WriteConflict>),
    /// An insert found the key already present.
    #[error("key {key:?} already exists", key = KeyDisplay(&.0.key))]
    KeyExists(Box<kvrpcpb::AlreadyExist>),
    /// Waiting for a pessimistic lock would close a cycle of waiting transactions.
    ///
    /// `lock_retryable` says the cycle runs through a key the failed lock request itself was
    /// locking (client-go's `IsRetryable`): that request's locks are released (in the
    /// background), so the same lock may be tried again. Otherwise the other transaction waits
    /// for a key this one locked earlier, and only rolling back breaks the cycle.
    #[error("deadlock: waiting for lock on key {key:?} held by txn {holder}", key = KeyDisplay(&deadlock.lock_key), holder = deadlock.lock_ts)]
    Deadlock {
        /// What TiKV reported: the awaited lock, the key hash closing the cycle, the wait chain.
        deadlock: Box<kvrpcpb::Deadlock>,
        /// Retrying the failed lock request may succeed without rolling back.
        lock_retryable: bool,
    },
    /// A mutation's assertion (the key exists / does not exist) did not hold.
    #[error("assertion failed on key {key:?}: {assertion:?}", key = KeyDisplay(&.0.key), assertion = .0.assertion)]
    AssertionFailed(Box<kvrpcpb::AssertionFailed>),
    /// A pessimistic lock could not be taken within the lock-wait time: the key stayed locked
    /// by the transaction this lock belongs to.
    #[error("lock wait timeout: key {key:?} is locked by txn {holder}", key = KeyDisplay(&.0.key), holder = .0.lock_version)]
    LockWaitTimeout(Box<kvrpcpb::LockInfo>),
    /// Any other key error TiKV reported for a transactional request.
    #[error("key error: {}", describe_key_error(.0))]
    KeyError(Box<kvrpcpb::KeyError>),
    /// The commit may or may not have taken effect: a request that decides it (the primary
    /// key's commit, or an async-commit or 1PC prewrite) may have reached TiKV without a
    /// definite answer. Nothing was rolled back; the transaction's fate is its primary's:
    /// ask [`crate::TransactionClient::transaction_status`] with the details carried here.
    #[error("{0}")]
    CommitUndetermined(Box<UndeterminedCommit>),
    /// A write other than a commit may or may not have taken effect (for example a raw
    /// compare-and-swap resent after an attempt that may have reached TiKV, whose later answer
    /// cannot tell its own effect from another writer's). Read the data to find out.
    #[error("outcome of {operation} undetermined: {reason}")]
    WriteUndetermined {
        /// What was being written.
        operation: &'static str,
        /// Why the outcome cannot be told.
        reason: String,
    },
    /// A multi-region write failed in part: some of its requests were confirmed, the keys of
    /// the others may or may not have been written (raw writes are at-least-once; writing the
    /// same keys again is safe).
    #[error("{} keys may not have been written: {cause}", unconfirmed.len())]
    PartialWrite {
        /// The keys whose write was not confirmed.
        unconfirmed: Vec<crate::Key>,
        /// Why their requests failed.
        #[source]
        cause: Box<Error>,
    },
    /// The transaction was rolled back before it could commit: its primary lock was gone (its
    /// TTL passed and another transaction's lock resolution rolled it back). Nothing of it is
    /// committed; run it again.
    #[error("txn {} was rolled back: {reason}", start_ts.version())]
    TransactionRolledBack {
        /// The transaction's start timestamp.
        start_ts: Timestamp,
        /// What said so.
        reason: String,
    },
    /// The read timestamp is below the GC safe point: versions the read needs may already be
    /// collected, so it is refused rather than answered wrongly (client-go's
    /// `ErrTxnAbortedByGC`). Read at a newer timestamp.
    #[error(
        "read at {start_ts} refused: below the GC safe point {safe_point}, data may be collected"
    )]
    TxnAbortedByGc {
        /// The read timestamp.
        start_ts: u64,
        /// The GC safe point in force.
        safe_point: u64,
    },

    /// The operation's retry budget is spent.
    #[error("{kind} backoff budget exhausted after {total_sleep:?} of sleep; last error: {last}")]
    BackoffExhausted {
        /// The backoff kind that slept longest, which client-go reports as the cause.
        kind: BackoffKind,
        /// The total time slept by the operation.
        total_sleep: Duration,
        /// The error that triggered the last backoff.
        #[source]
        last: Box<Error>,
        /// Whether some attempt failed after the request may have reached the server (a
        /// broken connection or a timeout), so it may have taken effect even if `last` says
        /// the final attempt was never sent.
        uncertain: bool,
    },
    /// The operation did not finish within its total deadline
    /// ([`crate::Config::operation_timeout`], or a per-call one), which bounds its attempts
    /// and its sleeps together.
    #[error("operation deadline of {timeout:?} exceeded{}", describe_last(last))]
    DeadlineExceeded {
        /// The operation's timeout.
        timeout: Duration,
        /// The error of the last attempt, if one failed before the deadline.
        #[source]
        last: Option<Box<Error>>,
        /// Whether some attempt failed after it may have reached the server, so that it may
        /// have taken effect.
        uncertain: bool,
    },
    /// PD knows no region holding this key (for example while a new PD leader has not loaded
    /// the regions yet), and did not learn one within the operation's retries.
    #[error("PD knows no region holding key {key:?}", key = KeyDisplay(.key))]
    NoRegion {
        /// The key, as requests carry it.
        key: Vec<u8>,
    },
    /// A region error that is not retried (for example `RaftEntryTooLarge`, flashback), or one
    /// that outlived the retry budget.
    #[error("region error: {}", .0.message)]
    Region(Box<errorpb::Error>),
    /// An operation did not finish within its deadline.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        operation: &'static str,
        /// The deadline that passed.
        after: Duration,
    },

    /// The connection to a server failed.
    #[error(transparent)]
    Transport(Box<TransportError>),
    /// A server answered with a gRPC error status.
    #[error("gRPC {code:?} from {address}: {message}")]
    Grpc {
        /// The status code.
        code: GrpcCode,
        /// The status message.
        message: String,
        /// The server's address.
        address: String,
        /// Whether the server may have executed the request before failing.
        may_have_been_sent: bool,
    },
    /// PD answered with an error in its response header, or could not be used.
    #[error("PD error: {0}")]
    Pd(String),
    /// PD endpoints disagree on the cluster id, or a server belongs to another cluster.
    #[error("cluster id mismatch: expected {expected}, got {got} from {address}")]
    ClusterIdMismatch {
        /// The cluster id learned first.
        expected: u64,
        /// The cluster id this server reported.
        got: u64,
        /// The server that reported it.
        address: String,
    },
    /// A server sent something this client cannot interpret (a malformed key, a missing field).
    #[error("unexpected response: {0}")]
    UnexpectedResponse(String),
}

impl Error {
    /// Whether repeating the same operation later may succeed. True for exhausted retry budgets,
    /// timeouts, transport failures, unavailable servers and write conflicts (restart the
    /// transaction); false for invalid input, TLS misconfiguration and definitive answers.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(e) => e.kind != TransportErrorKind::Tls,
            Error::BackoffExhausted { .. }
            | Error::DeadlineExceeded { .. }
            | Error::NoRegion { .. }
            | Error::Timeout { .. }
            | Error::Pd(_)
            | Error::WriteConflict(_)
            | Error::TransactionRolledBack { .. }
            | Error::Deadlock { .. }
            | Error::LockWaitTimeout(_) => true,
            Error::Grpc { code, .. } => matches!(
                code,
                GrpcCode::Unavailable
                    | GrpcCode::DeadlineExceeded
                    | GrpcCode::ResourceExhausted
                    | GrpcCode::Aborted
            ),
            _ => false,
        }
    }

    /// Whether the request may have reached the server and taken effect. False only when the
    /// client knows it never sent it (for example the connection could not be opened).
    pub fn may_have_been_sent(&self) -> bool {
        match self {
            Error::Transport(e) => e.may_have_been_sent,
            Error::Grpc {
                may_have_been_sent, ..
            } => *may_have_been_sent,
            Error::InvalidArgument(_)
            | Error::InvalidConfig(_)
            | Error::Unsupported(_)
            | Error::NoRegion { .. } => false,
            Error::DeadlineExceeded { uncertain, .. } => *uncertain,
            _ => true,
        }
    }

    /// Turns a key error reported by TiKV into the most specific variant.
    pub fn from_key_error(mut e: kvrpcpb::KeyError) -> Error {
        if let Some(c) = e.conflict.take() {
            Error::WriteConflict(Box::new(c))
        } else if let Some(a) = e.already_exist.take() {
            Error::KeyExists(Box::new(a))
        } else if let Some(d) = e.deadlock.take() {
            Error::Deadlock {
                deadlock: Box::new(d),
                lock_retryable: false,
            }
        } else if let Some(a) = e.assertion_failed.take() {
            Error::AssertionFailed(Box::new(a))
        } else {
            Error::KeyError(Box::new(e))
        }
    }
}

impl From<errorpb::Error> for Error {
    fn from(e: errorpb::Error) -> Self {
        Error::Region(Box::new(e))
    }
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        Error::Transport(Box::new(e))
    }
}

/// What is known of a commit whose outcome is undetermined ([`Error::CommitUndetermined`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "commit of txn {} undetermined (primary key {:?}, commit ts {}): {}",
    start_ts.version(),
    KeyDisplay(primary),
    commit_ts.map_or("unknown".to_owned(), |ts| ts.version().to_string()),
    cause.as_ref().map_or("the commit was cut short after it may have reached TiKV".to_owned(), Error::to_string)
)]
#[non_exhaustive]
pub struct UndeterminedCommit {
    /// The transaction's start timestamp.
    pub start_ts: Timestamp,
    /// Its primary key, whose status decides the transaction.
    pub primary: Key,
    /// The commit timestamp the transaction has if it committed: for two-phase commit the one
    /// sent with the primary's commit; `None` for async commit and 1PC, where TiKV picks it.
    pub commit_ts: Option<Timestamp>,
    /// The failure that left the outcome open (`None` when the commit was cut short by its
    /// caller, for example dropped by a timeout).
    #[source]
    pub cause: Option<Error>,
}

/// A failure to reach a server.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?} error talking to {address}: {message}")]
pub struct TransportError {
    /// What failed.
    pub kind: TransportErrorKind,
    /// The address (or URL) of the server.
    pub address: String,
    /// The underlying error's description.
    pub message: String,
    /// Whether the request may have reached the server.
    pub may_have_been_sent: bool,
}

/// What part of talking to a server failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The address could not be parsed into an endpoint.
    InvalidAddress,
    /// The connection could not be opened (refused, unreachable, TLS handshake, dial timeout).
    Connect,
    /// The connection broke or the fetch failed while the request was in flight.
    Broken,
    /// TLS is misconfigured: PEM files that cannot be read or parsed, a URL whose scheme
    /// contradicts the TLS setting (`http://` with TLS, `https://` without), or a handshake
    /// that failed (an untrusted server certificate, a client certificate the server requires
    /// or rejects, a server not speaking TLS). Nothing reached the server, and retrying
    /// without changing the settings fails the same way.
    Tls,
}

/// gRPC status codes, mirrored so that no tonic type appears in the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum GrpcCode {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl From<tonic::Code> for GrpcCode {
    fn from(c: tonic::Code) -> Self {
        use tonic::Code as C;
        match c {
            C::Ok => GrpcCode::Ok,
            C::Cancelled => GrpcCode::Cancelled,
            C::Unknown => GrpcCode::Unknown,
            C::InvalidArgument => GrpcCode::InvalidArgument,
            C::DeadlineExceeded => GrpcCode::DeadlineExceeded,
            C::NotFound => GrpcCode::NotFound,
            C::AlreadyExists => GrpcCode::AlreadyExists,
            C::PermissionDenied => GrpcCode::PermissionDenied,
            C::ResourceExhausted => GrpcCode::ResourceExhausted,
            C::FailedPrecondition => GrpcCode::FailedPrecondition,
            C::Aborted => GrpcCode::Aborted,
            C::OutOfRange => GrpcCode::OutOfRange,
            C::Unimplemented => GrpcCode::Unimplemented,
            C::Internal => GrpcCode::Internal,
            C::Unavailable => GrpcCode::Unavailable,
            C::DataLoss => GrpcCode::DataLoss,
            C::Unauthenticated => GrpcCode::Unauthenticated,
        }
    }
}

/// Prints a key as text when it is printable ASCII, else as upper-case hex (as TiKV logs do).
struct KeyDisplay<'a>(&'a [u8]);

impl fmt::Debug for KeyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            write!(f, "\"{}\"", String::from_utf8_lossy(self.0))
        } else {
            f.write_str("0x")?;
            self.0.iter().try_for_each(|b| write!(f, "{b:02X}"))
        }
    }
}

fn describe_last(last: &Option<Box<Error>>) -> String {
    last.as_ref()
        .map_or_else(String::new, |e| format!("; last error: {e}"))
}

fn describe_key_error(e: &kvrpcpb::KeyError) -> String {
    if let Some(lock) = &e.locked {
        format!(
            "key {:?} is locked by txn {} (primary {:?}, ttl {} ms)",
            KeyDisplay(&lock.key),
            lock.lock_version,
            KeyDisplay(&lock.primary_lock),
            lock.lock_ttl
        )
    } else if !e.retryable.is_empty() {
        format!("retryable: {}", e.retryable)
    } else if !e.abort.is_empty() {
        format!("abort: {}", e.abort)
    } else if let Some(t) = &e.txn_not_found {
        format!(
            "txn {} not found (primary {:?})",
            t.start_ts,
            KeyDisplay(&t.primary_key)
        )
    } else if let Some(t) = &e.txn_lock_not_found {
        format!("lock of key {:?} not found", KeyDisplay(&t.key))
    } else if let Some(c) = &e.commit_ts_expired {
        format!(
            "commit ts {} expired: min_commit_ts {} (start_ts {})",
            c.attempted_commit_ts, c.min_commit_ts, c.start_ts
        )
    } else if let Some(c) = &e.commit_ts_too_large {
        format!("commit ts {} too large", c.commit_ts)
    } else if let Some(p) = &e.primary_mismatch {
        format!(
            "primary mismatch: {:?}",
            p.lock_info.as_ref().map(|l| l.lock_version)
        )
    } else {
        format!("{e:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_errors_become_specific_variants() {
        let conflict = kvrpcpb::KeyError {
            conflict: Some(kvrpcpb::WriteConflict {
                start_ts: 10,
                conflict_ts: 11,
                conflict_commit_ts: 12,
                key: b"k1".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = Error::from_key_error(conflict);
        assert!(matches!(&e, Error::WriteConflict(c) if c.conflict_commit_ts == 12));
        assert_eq!(
            e.to_string(),
            "write conflict on key \"k1\": start_ts 10, conflicting commit_ts 12"
        );
        assert!(e.is_retryable());

        let exists = kvrpcpb::KeyError {
            already_exist: Some(kvrpcpb::AlreadyExist { key: vec![0, 0xAB] }),
            ..Default::default()
        };
        let e = Error::from_key_error(exists);
        assert_eq!(e.to_string(), "key 0x00AB already exists");
        assert!(!e.is_retryable());

        let locked = kvrpcpb::KeyError {
            locked: Some(kvrpcpb::LockInfo {
                key: b"a".to_vec(),
                primary_lock: b"p".to_vec(),
                lock_version: 7,
                lock_ttl: 3000,
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = Error::from_key_error(locked);
        assert!(matches!(e, Error::KeyError(_)));
        assert!(e.to_string().contains("locked by txn 7"));
    }

    #[test]
    fn invalid_input_is_not_retryable_and_never_sent() {
        let e = Error::InvalidArgument("inverted range".into());
        assert!(!e.is_retryable());
        assert!(!e.may_have_been_sent());
    }

    #[test]
    fn transport_errors_report_whether_sent() {
        let e: Error = TransportError {
            kind: TransportErrorKind::Connect,
            address: "127.0.0.1:1".into(),
            message: "connection refused".into(),
            may_have_been_sent: false,
        }
        .into();
        assert!(e.is_retryable());
        assert!(!e.may_have_been_sent());
        let e = Error::Grpc {
            code: GrpcCode::Unavailable,
            message: "not leader".into(),
            address: "pd".into(),
            may_have_been_sent: true,
        };
        assert!(e.is_retryable() && e.may_have_been_sent());
        let e = Error::Grpc {
            code: GrpcCode::InvalidArgument,
            message: "bad".into(),
            address: "pd".into(),
            may_have_been_sent: true,
        };
        assert!(!e.is_retryable());
    }

    #[test]
    fn tls_errors_are_neither_retried_nor_sent() {
        let e: Error = TransportError {
            kind: TransportErrorKind::Tls,
            address: "https://127.0.0.1:2379".into(),
            message: "the server's certificate is not trusted".into(),
            may_have_been_sent: false,
        }
        .into();
        assert!(!e.is_retryable());
        assert!(!e.may_have_been_sent());
    }

    #[test]
    fn error_stays_small() {
        assert!(
            std::mem::size_of::<Error>() <= 80,
            "{}",
            std::mem::size_of::<Error>()
        );
    }
}
