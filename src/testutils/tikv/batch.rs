//! `BatchCommands` (spec 9): one bidirectional stream carrying many requests, each run as if
//! it were its own unary call (same checks, faults and call log) and answered by id in
//! whatever response message is going out when it finishes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Status, Streaming};

use super::{MockTikv, Node};
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

/// The commands one BatchCommands stream runs at once. At the bound the stream reads no
/// further request until one finishes, so a client sending faster than the mock answers is
/// held back by HTTP/2 flow control instead of growing the mock's memory. TiKV bounds its
/// work too (its read pool refuses tasks beyond `max-tasks-per-worker`, 2000 per worker).
pub const BATCH_COMMANDS_IN_FLIGHT: usize = 1024;

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

/// Counts the batched commands running, across every store's streams (for tests).
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl InFlight {
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// One running command, counted in [`InFlight`] until dropped (finished or cancelled).
struct Counted(Arc<Node>);

impl Counted {
    fn start(node: &Arc<Node>) -> Counted {
        let now = node.batch_in_flight.running.fetch_add(1, Ordering::SeqCst) + 1;
        node.batch_in_flight.peak.fetch_max(now, Ordering::SeqCst);
        Counted(node.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0
            .batch_in_flight
            .running
            .fetch_sub(1, Ordering::SeqCst);
    }
}

/// Marks a request as one command of a BatchCommands stream (for the call log).
#[derive(Clone, Copy)]
pub(super) struct Batched;

fn batched<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(Batched);
    request
}

/// One answer for the stream: the id and the command's response, or a status failing the
/// stream, with the place the command held among those [`BATCH_COMMANDS_IN_FLIGHT`]: a place
/// is free again only when its answer goes out, so a client that stops reading stops the
/// reading of more commands, and the answers waiting stay bounded.
struct Answer {
    result: Result<(u64, Option<RespCmd>), Status>,
    _place: Option<OwnedSemaphorePermit>,
}

type Answers = mpsc::UnboundedSender<Answer>;

impl MockTikv {
    /// Serves one BatchCommands stream until the client closes it and every command is
    /// answered. A command whose handler fails at the gRPC level gets no answer (as in TiKV);
    /// a command for another cluster fails the whole stream. At most
    /// [`BATCH_COMMANDS_IN_FLIGHT`] commands run at once; when the client goes away, the
    /// running ones stop.
    pub(super) fn serve_batch_commands(
        &self,
        incoming: Streaming<BatchCommandsRequest>,
    ) -> BoxStream<BatchCommandsResponse> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.record_stream_open();
        tokio::spawn(self.clone().run_batch_commands(incoming, tx));
        let responses = UnboundedReceiverStream::new(rx)
            .ready_chunks(MAX_RESPONSES)
            .map(|answers| {
                let mut out = BatchCommandsResponse::default();
                for answer in answers {
                    let (id, cmd) = answer.result?;
                    out.request_ids.push(id);
                    out.responses
                        .push(batch_commands_response::Response { cmd });
                }
                Ok(out)
            });
        Box::pin(responses)
    }

    /// Reads the stream's commands and runs each in its own task, reading no further while
    /// [`BATCH_COMMANDS_IN_FLIGHT`] answers are running or waiting to go out, until the client
    /// closes its side. When the client stops listening, the reading and every command still
    /// running stop.
    async fn run_batch_commands(self, mut incoming: Streaming<BatchCommandsRequest>, tx: Answers) {
        let places = Arc::new(Semaphore::new(BATCH_COMMANDS_IN_FLIGHT));
        loop {
            let batch = tokio::select! {
                () = tx.closed() => return,
                batch = incoming.next() => batch,
            };
            let Some(Ok(batch)) = batch else {
                return;
            };
            for (request, id) in batch.requests.into_iter().zip(batch.request_ids) {
                let cluster = request
                    .cmd
                    .as_ref()
                    .and_then(context_of)
                    .map_or(0, |c| c.cluster_id);
                if cluster != 0 && cluster != self.cluster().id {
                    let _ = tx.send(Answer {
                        result: Err(Status::invalid_argument(format!(
                            "the cluster id {cluster} of request {id} does not match the TiKV cluster"
                        ))),
                        _place: None,
                    });
                    return;
                }
                let place = tokio::select! {
                    () = tx.closed() => return,
                    place = places.clone().acquire_owned() => place.expect("the semaphore is never closed"),
                };
                let Some(cmd) = request.cmd else {
                    let _ = tx.send(Answer {
                        result: Ok((id, None)),
                        _place: Some(place),
                    });
                    continue;
                };
                let counted = Counted::start(&self.node);
                let (tikv, tx) = (self.clone(), tx.clone());
                tokio::spawn(async move {
                    let _counted = counted;
                    tokio::select! {
                        biased;
                        answer = dispatch(&tikv, cmd) => match answer {
                            Ok(resp) => {
                                let _ = tx.send(Answer {
                                    result: Ok((id, Some(resp))),
                                    _place: Some(place),
                                });
                            }
                            Err(status) => {
                                log::debug!("batched request {id} failed, left unanswered: {status}")
                            }
                        },
                        () = tx.closed() => {}
                    }
                });
            }
        }
    }
}
