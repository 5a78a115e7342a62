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

pub use classify::{classify, Action};
pub(crate) use executor::{BatchLimits, Executor, Locate, RAW_BATCH_BYTES, RAW_BATCH_COUNT};

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
    /// The request's context, to be filled before sending.
    fn context_mut(&mut self) -> &mut kvrpcpb::Context;
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
    }
}

macro_rules! kv_requests {
    ($($method:ident, $name:literal, $req:ident => $resp:ident;)*) => {$(
        impl private::Dispatch for kvrpcpb::$req {
            type Reply = kvrpcpb::$resp;
            fn dispatch(
                mut client: TikvClient<Channel>,
                request: tonic::Request<Self>,
            ) -> BoxFuture<'static, Result<tonic::Response<Self::Reply>, tonic::Status>> {
                Box::pin(async move { client.$method(request).await })
            }
        }
        impl KvRequest for kvrpcpb::$req {
            const METHOD: &'static str = $name;
            fn context_mut(&mut self) -> &mut kvrpcpb::Context {
                self.context.get_or_insert_with(Default::default)
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
    raw_get, "RawGet", RawGetRequest => RawGetResponse;
    raw_batch_get, "RawBatchGet", RawBatchGetRequest => RawBatchGetResponse;
    raw_put, "RawPut", RawPutRequest => RawPutResponse;
    raw_batch_put, "RawBatchPut", RawBatchPutRequest => RawBatchPutResponse;
    raw_delete, "RawDelete", RawDeleteRequest => RawDeleteResponse;
    raw_batch_delete, "RawBatchDelete", RawBatchDeleteRequest => RawBatchDeleteResponse;
    raw_scan, "RawScan", RawScanRequest => RawScanResponse;
    raw_batch_scan, "RawBatchScan", RawBatchScanRequest => RawBatchScanResponse;
    raw_delete_range, "RawDeleteRange", RawDeleteRangeRequest => RawDeleteRangeResponse;
    raw_get_key_ttl, "RawGetKeyTTL", RawGetKeyTtlRequest => RawGetKeyTtlResponse;
    raw_compare_and_swap, "RawCompareAndSwap", RawCasRequest => RawCasResponse;
    raw_checksum, "RawChecksum", RawChecksumRequest => RawChecksumResponse;
    split_region, "SplitRegion", SplitRegionRequest => SplitRegionResponse;
}
