//! Sending kvproto requests to the right region, with client-go's retries.
//!
//! One execution loop serves every RPC: locate the region (cache, else PD), fill the request
//! context (region, epoch, leader peer, API version, keyspace, interceptors), send to the
//! leader's store with a deadline, and classify the outcome. A region error is handled as
//! client-go does ([`classify`]): move to the new leader at once, cache the regions an
//! `EpochNotMatch` carries and re-split, back off with the named kind, or give up. Multi-key
//! requests are split by region and sent concurrently; a request whose region changed under it
//! is split again. Every operation has a total sleep budget ([`crate::backoff::Backoffer`]).

mod classify;
mod executor;

use std::time::Duration;

use crate::Key;

pub use classify::{classify, Action};
pub(crate) use executor::{
    BatchLimits, Executor, Locate, Settled, RAW_BATCH_BYTES, RAW_BATCH_COUNT,
};

use crate::proto::{errorpb, kvrpcpb, tikvpb::tikv_client::TikvClient};
use crate::rt::{BoxFuture, MaybeSend, MaybeSync};
use crate::transport::Channel;

/// A kvproto request the execution loop can route and retry. Implemented for the TiKV
/// requests this crate sends; the trait is sealed.
pub trait KvRequest:
    private::Dispatch<Reply: KvResponse> + Clone + MaybeSend + MaybeSync + 'static
{
    /// The gRPC method name, as TiKV and the call log name it.
    const METHOD: &'static str;
    /// Whether the request may take long (scans, batch gets, checksums): it then gets
    /// [`crate::Config::long_timeout`] instead of [`crate::Config::timeout`].
    const SLOW: bool;
    /// The request's context, to be filled before sending.
    fn context_mut(&mut self) -> &mut kvrpcpb::Context;
    /// Whether the request asks to be served by a replica: `(replica_read, stale_read)`.
    fn replica_flags(&self) -> (bool, bool);
}

/// Where a lowered request goes and how long it may retry.
///
/// ```
/// use std::time::Duration;
/// use tikv_client::request::RequestOptions;
/// let options = RequestOptions::key("user/1").with_backoff_budget(Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestOptions {
    /// The region to send to.
    pub routing: Routing,
    /// The total time retries may sleep.
    pub backoff_budget: Duration,
    /// The total deadline of the request, attempts included (`None`: the client's
    /// configured [`crate::Config::operation_timeout`]).
    pub timeout: Option<Duration>,
}

/// How a request finds its region. Keys are in the same space as the request's own keys (as
/// TiKV receives them: with the keyspace prefix in API v2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Routing {
    /// The region holding this key.
    Key(Key),
    /// The region holding the keys just below this one (for reverse scans).
    EndKey(Key),
}

impl RequestOptions {
    /// Send to the region holding `key`, with the raw operation budget (20 s).
    pub fn key(key: impl Into<Key>) -> Self {
        RequestOptions {
            routing: Routing::Key(key.into()),
            backoff_budget: crate::backoff::RAW_OPERATION_BUDGET,
            timeout: None,
        }
    }

    /// Send to the region holding the keys just below `key`.
    pub fn end_key(key: impl Into<Key>) -> Self {
        RequestOptions {
            routing: Routing::EndKey(key.into()),
            backoff_budget: crate::backoff::RAW_OPERATION_BUDGET,
            timeout: None,
        }
    }

    /// Sets the retry budget.
    pub fn with_backoff_budget(mut self, budget: Duration) -> Self {
        self.backoff_budget = budget;
        self
    }

    /// Sets the total deadline of the request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// A response that may carry a region error.
pub trait KvResponse: Default + MaybeSend + 'static {
    /// Takes the region error out of the response, if it has one.
    fn take_region_error(&mut self) -> Option<errorpb::Error>;
}

mod private {
    use super::*;

    /// How a request is sent; private so that no transport type is part of the public API.
    pub trait Dispatch: Sized {
        /// The response type.
        type Reply;
        fn dispatch(
            client: TikvClient<Channel>,
            request: tonic::Request<Self>,
        ) -> BoxFuture<'static, Result<tonic::Response<Self::Reply>, tonic::Status>>;
        /// The request as a BatchCommands command, or itself when it cannot be batched.
        fn into_batch(self) -> Result<BatchCmd, Self>;
        /// The reply carried by a BatchCommands answer, if it is of this request's kind.
        fn reply_from_batch(answer: BatchReply) -> Option<Self::Reply>;
    }
}

use crate::proto::tikvpb::batch_commands_request::request::Cmd as BatchCmd;
use crate::proto::tikvpb::batch_commands_response::response::Cmd as BatchReply;

macro_rules! into_batch {
    ($req:ident) => {
        Err($req)
    };
    ($req:ident, $variant:ident) => {
        Ok(BatchCmd::$variant($req))
    };
}

macro_rules! reply_from_batch {
    ($answer:ident) => {{
        let _ = $answer;
        None
    }};
    ($answer:ident, $variant:ident) => {
        match $answer {
            BatchReply::$variant(reply) => Some(reply),
            _ => None,
        }
    };
}

macro_rules! kv_requests {
    ($($method:ident, $name:literal, $req:ident => $resp:ident, $slow:literal $(, batch $variant:ident)?;)*) => {$(
        impl private::Dispatch for kvrpcpb::$req {
            type Reply = kvrpcpb::$resp;
            fn dispatch(
                mut client: TikvClient<Channel>,
                request: tonic::Request<Self>,
            ) -> BoxFuture<'static, Result<tonic::Response<Self::Reply>, tonic::Status>> {
                Box::pin(async move { client.$method(request).await })
            }
            fn into_batch(self) -> Result<BatchCmd, Self> {
                into_batch!(self $(, $variant)?)
            }
            fn reply_from_batch(answer: BatchReply) -> Option<Self::Reply> {
                reply_from_batch!(answer $(, $variant)?)
            }
        }
        impl KvRequest for kvrpcpb::$req {
            const METHOD: &'static str = $name;
            const SLOW: bool = $slow;
            fn context_mut(&mut self) -> &mut kvrpcpb::Context {
                self.context.get_or_insert_with(Default::default)
            }
            fn replica_flags(&self) -> (bool, bool) {
                self.context
                    .as_ref()
                    .map_or((false, false), |c| (c.replica_read, c.stale_read))
            }
        }
        impl KvResponse for kvrpcpb::$resp {
            fn take_region_error(&mut self) -> Option<errorpb::Error> {
                self.region_error.take()
            }
        }
    )*};
}

kv_requests! {
    raw_get, "RawGet", RawGetRequest => RawGetResponse, false, batch RawGet;
    raw_batch_get, "RawBatchGet", RawBatchGetRequest => RawBatchGetResponse, true, batch RawBatchGet;
    raw_put, "RawPut", RawPutRequest => RawPutResponse, false, batch RawPut;
    raw_batch_put, "RawBatchPut", RawBatchPutRequest => RawBatchPutResponse, false, batch RawBatchPut;
    raw_delete, "RawDelete", RawDeleteRequest => RawDeleteResponse, false, batch RawDelete;
    raw_batch_delete, "RawBatchDelete", RawBatchDeleteRequest => RawBatchDeleteResponse, false, batch RawBatchDelete;
    raw_scan, "RawScan", RawScanRequest => RawScanResponse, true, batch RawScan;
    raw_batch_scan, "RawBatchScan", RawBatchScanRequest => RawBatchScanResponse, true;
    raw_delete_range, "RawDeleteRange", RawDeleteRangeRequest => RawDeleteRangeResponse, true, batch RawDeleteRange;
    raw_get_key_ttl, "RawGetKeyTTL", RawGetKeyTtlRequest => RawGetKeyTtlResponse, false;
    raw_compare_and_swap, "RawCompareAndSwap", RawCasRequest => RawCasResponse, false;
    raw_checksum, "RawChecksum", RawChecksumRequest => RawChecksumResponse, true;
    split_region, "SplitRegion", SplitRegionRequest => SplitRegionResponse, false;
    kv_get, "KvGet", GetRequest => GetResponse, false, batch Get;
    kv_batch_get, "KvBatchGet", BatchGetRequest => BatchGetResponse, true, batch BatchGet;
    kv_scan, "KvScan", ScanRequest => ScanResponse, true, batch Scan;
    kv_prewrite, "KvPrewrite", PrewriteRequest => PrewriteResponse, false, batch Prewrite;
    kv_commit, "KvCommit", CommitRequest => CommitResponse, false, batch Commit;
    kv_batch_rollback, "KvBatchRollback", BatchRollbackRequest => BatchRollbackResponse, false, batch BatchRollback;
    kv_cleanup, "KvCleanup", CleanupRequest => CleanupResponse, false, batch Cleanup;
    kv_check_txn_status, "KvCheckTxnStatus", CheckTxnStatusRequest => CheckTxnStatusResponse, false, batch CheckTxnStatus;
    kv_check_secondary_locks, "KvCheckSecondaryLocks", CheckSecondaryLocksRequest => CheckSecondaryLocksResponse, false, batch CheckSecondaryLocks;
    kv_resolve_lock, "KvResolveLock", ResolveLockRequest => ResolveLockResponse, true, batch ResolveLock;
    kv_txn_heart_beat, "KvTxnHeartBeat", TxnHeartBeatRequest => TxnHeartBeatResponse, false, batch TxnHeartBeat;
    kv_scan_lock, "KvScanLock", ScanLockRequest => ScanLockResponse, true, batch ScanLock;
    kv_pessimistic_lock, "KvPessimisticLock", PessimisticLockRequest => PessimisticLockResponse, false, batch PessimisticLock;
    kv_pessimistic_rollback, "KVPessimisticRollback", PessimisticRollbackRequest => PessimisticRollbackResponse, false, batch PessimisticRollback;
    kv_delete_range, "KvDeleteRange", DeleteRangeRequest => DeleteRangeResponse, true, batch DeleteRange;
    unsafe_destroy_range, "UnsafeDestroyRange", UnsafeDestroyRangeRequest => UnsafeDestroyRangeResponse, true;
}
