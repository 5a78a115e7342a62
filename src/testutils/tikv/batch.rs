//! `BatchCommands` (spec 9): one bidirectional stream carrying many requests, each run as if
//! it were its own unary call (same checks, faults and call log) and answered by id in
//! whatever response message is going out when it finishes.

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Status, Streaming};

use super::MockTikv;
use crate::proto::kvrpcpb;
use crate::proto::tikvpb::batch_commands_request::request::Cmd as ReqCmd;
use crate::proto::tikvpb::batch_commands_response::response::Cmd as RespCmd;
use crate::proto::tikvpb::tikv_server::Tikv;
use crate::proto::tikvpb::{
    batch_commands_response, BatchCommandsEmptyResponse, BatchCommandsRequest,
    BatchCommandsResponse,
};

/// Responses gathered into one message at most (client-go's batch size).
const MAX_RESPONSES: usize = 128;

/// An `Empty` command shorter than this is answered at once (TiKV's rule).
const MIN_EMPTY_DELAY_MS: u64 = 10;

macro_rules! commands {
    ($($variant:ident => $method:ident,)*) => {
        /// Runs one command through the unary handler it stands for.
        async fn dispatch(tikv: &MockTikv, cmd: ReqCmd) -> Result<RespCmd, Status> {
            Ok(match cmd {
                $(ReqCmd::$variant(r) => {
                    RespCmd::$variant(Tikv::$method(tikv, batched(r)).await?.into_inner())
                })*
                ReqCmd::Empty(e) => {
                    if e.delay_time >= MIN_EMPTY_DELAY_MS {
                        tokio::time::sleep(std::time::Duration::from_millis(e.delay_time)).await;
                    }
                    RespCmd::Empty(BatchCommandsEmptyResponse { test_id: e.test_id })
                }
            })
        }

        /// The context a command carries.
        fn context_of(cmd: &ReqCmd) -> Option<&kvrpcpb::Context> {
            match cmd {
                $(ReqCmd::$variant(r) => r.context.as_ref(),)*
                ReqCmd::Empty(_) => None,
            }
        }
    };
}

commands! {
    Get => kv_get,
    Scan => kv_scan,
    Prewrite => kv_prewrite,
    Commit => kv_commit,
    Cleanup => kv_cleanup,
    BatchGet => kv_batch_get,
    BatchRollback => kv_batch_rollback,
    ScanLock => kv_scan_lock,
    ResolveLock => kv_resolve_lock,
    Gc => kv_gc,
    DeleteRange => kv_delete_range,
    RawGet => raw_get,
    RawBatchGet => raw_batch_get,
    RawPut => raw_put,
    RawBatchPut => raw_batch_put,
    RawDelete => raw_delete,
    RawBatchDelete => raw_batch_delete,
    RawScan => raw_scan,
    RawDeleteRange => raw_delete_range,
    RawBatchScan => raw_batch_scan,
    PessimisticLock => kv_pessimistic_lock,
    PessimisticRollback => kv_pessimistic_rollback,
    CheckTxnStatus => kv_check_txn_status,
    TxnHeartBeat => kv_txn_heart_beat,
    CheckSecondaryLocks => kv_check_secondary_locks,
    Flush => kv_flush,
    BufferBatchGet => kv_buffer_batch_get,
}

/// Marks a request as one command of a BatchCommands stream (for the call log).
#[derive(Clone, Copy)]
pub(super) struct Batched;

fn batched<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(Batched);
    request
}

impl MockTikv {
    /// Serves one BatchCommands stream until the client closes it and every command is
    /// answered. A command whose handler fails at the gRPC level gets no answer (as in TiKV);
    /// a command for another cluster fails the whole stream.
    pub(super) fn serve_batch_commands(
        &self,
        mut incoming: Streaming<BatchCommandsRequest>,
    ) -> BoxStream<BatchCommandsResponse> {
        let (tx, rx) = mpsc::unbounded_channel::<Result<(u64, Option<RespCmd>), Status>>();
        self.record_stream_open();
        let tikv = self.clone();
        tokio::spawn(async move {
            while let Some(Ok(batch)) = incoming.next().await {
                for (request, id) in batch.requests.into_iter().zip(batch.request_ids) {
                    let Some(cmd) = request.cmd else {
                        let _ = tx.send(Ok((id, None)));
                        continue;
                    };
                    let cluster = context_of(&cmd).map_or(0, |c| c.cluster_id);
                    if cluster != 0 && cluster != tikv.cluster().id {
                        let _ = tx.send(Err(Status::invalid_argument(format!(
                            "the cluster id {cluster} of request {id} does not match the TiKV cluster"
                        ))));
                        return;
                    }
                    let (tikv, tx) = (tikv.clone(), tx.clone());
                    tokio::spawn(async move {
                        match dispatch(&tikv, cmd).await {
                            Ok(resp) => {
                                let _ = tx.send(Ok((id, Some(resp))));
                            }
                            Err(status) => log::debug!(
                                "batched request {id} failed, left unanswered: {status}"
                            ),
                        }
                    });
                }
            }
        });
        let responses = UnboundedReceiverStream::new(rx)
            .ready_chunks(MAX_RESPONSES)
            .map(|answers| {
                let mut out = BatchCommandsResponse::default();
                for answer in answers {
                    let (id, cmd) = answer?;
                    out.request_ids.push(id);
                    out.responses
                        .push(batch_commands_response::Response { cmd });
                }
                Ok(out)
            });
        Box::pin(responses)
    }
}
