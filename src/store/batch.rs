//! BatchCommands: the requests to one store share one long-lived bidirectional stream, as in
//! client-go. Requests waiting to go out are sent together (at most 128 per message); answers
//! come back in any order and are matched by request id. When the stream breaks, every
//! request still waiting fails as a transport error that may have been sent, and the next
//! request opens a new stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::channel::{mpsc, oneshot};
use futures::StreamExt;

use crate::proto::tikvpb::batch_commands_request::{self, request::Cmd};
use crate::proto::tikvpb::batch_commands_response::response::Cmd as Answer;
use crate::proto::tikvpb::tikv_client::TikvClient;
use crate::proto::tikvpb::{BatchCommandsRequest, BatchCommandsResponse};
use crate::rt;
use crate::transport::{self, Channel};
use crate::{Error, Result, TransportError, TransportErrorKind};

/// Commands per request message (client-go's `max-batch-size`).
const MAX_BATCH: usize = 128;

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Answer>>>>>;

/// One store's BatchCommands stream.
pub(crate) struct BatchStream {
    address: String,
    outgoing: mpsc::UnboundedSender<(u64, Cmd)>,
    waiting: Waiters,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
    unsupported: Arc<AtomicBool>,
    _receiver: rt::JoinHandle<()>,
}

impl BatchStream {
    /// Starts a stream on `client`. It does not wait for the store's response headers:
    /// TiKV sends them with its first answer, so commands must be able to go out first.
    pub(crate) fn open(mut client: TikvClient<Channel>, address: &str) -> Self {
        let (outgoing, queued) = mpsc::unbounded::<(u64, Cmd)>();
        let messages = queued.ready_chunks(MAX_BATCH).map(|commands| {
            let (request_ids, requests) = commands
                .into_iter()
                .map(|(id, cmd)| (id, batch_commands_request::Request { cmd: Some(cmd) }))
                .unzip();
            BatchCommandsRequest {
                requests,
                request_ids,
                ..Default::default()
            }
        });
        let waiting: Waiters = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let unsupported = Arc::new(AtomicBool::new(false));
        let (w, c, u, addr) = (
            waiting.clone(),
            closed.clone(),
            unsupported.clone(),
            address.to_owned(),
        );
        let receiver = rt::spawn(async move {
            let ended = match client.batch_commands(messages).await {
                Ok(answers) => receive(answers.into_inner(), &w, &addr).await,
                Err(status) => Ending::Status(status),
            };
            finish(ended, &w, &c, &u, &addr);
        });
        BatchStream {
            address: address.to_owned(),
            outgoing,
            waiting,
            next_id: AtomicU64::new(1),
            closed,
            unsupported,
            _receiver: receiver,
        }
    }

    /// Whether the store refused BatchCommands altogether (send unary calls instead).
    pub(crate) fn is_unsupported(&self) -> bool {
        self.unsupported.load(Ordering::Acquire)
    }

    /// Whether the stream broke (a new one is needed).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Sends `cmd` and waits for its answer. Dropping the future (a timeout) forgets it.
    pub(crate) async fn call(&self, cmd: Cmd) -> Result<Answer> {
        if self.is_closed() {
            return Err(broken(&self.address, "the batch stream is closed", false));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(id, tx);
        let forget = Forget {
            id,
            waiting: &self.waiting,
        };
        // The receiver marks the stream closed before failing the waiters it finds: a waiter
        // added after that would never hear back.
        if self.is_closed() || self.outgoing.unbounded_send((id, cmd)).is_err() {
            return Err(broken(&self.address, "the batch stream is closed", false));
        }
        let answer = rx.await;
        drop(forget);
        answer.unwrap_or_else(|_| Err(broken(&self.address, "the batch stream ended", true)))
    }
}

/// Removes a request from the waiting set when its caller stops waiting.
struct Forget<'a> {
    id: u64,
    waiting: &'a Waiters,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.waiting).remove(&self.id);
    }
}

fn lock(
    waiting: &Waiters,
) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Result<Answer>>>> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

fn broken(address: &str, message: &str, may_have_been_sent: bool) -> Error {
    TransportError {
        kind: TransportErrorKind::Broken,
        address: address.to_owned(),
        message: message.to_owned(),
        may_have_been_sent,
    }
    .into()
}

/// How a stream ended.
enum Ending {
    /// The store closed it.
    Closed,
    /// With a gRPC status.
    Status(tonic::Status),
}

/// Hands each answer to its waiter until the stream ends.
async fn receive(
    mut answers: tonic::Streaming<BatchCommandsResponse>,
    waiting: &Waiters,
    address: &str,
) -> Ending {
    loop {
        match answers.message().await {
            Ok(Some(message)) => {
                let mut waiting = lock(waiting);
                for (id, response) in message.request_ids.into_iter().zip(message.responses) {
                    // Unknown ids (callers that gave up) are ignored.
                    if let Some(waiter) = waiting.remove(&id) {
                        let answer = response.cmd.ok_or_else(|| {
                            Error::UnexpectedResponse(format!(
                                "batch answer {id} from {address} carries no response"
                            ))
                        });
                        let _ = waiter.send(answer);
                    }
                }
            }
            Ok(None) => return Ending::Closed,
            Err(status) => return Ending::Status(status),
        }
    }
}

/// Marks the stream closed and fails everyone still waiting: with the store's status when
/// it is a definite refusal, else as a broken connection that may have delivered them.
fn finish(
    ended: Ending,
    waiting: &Waiters,
    closed: &AtomicBool,
    unsupported: &AtomicBool,
    address: &str,
) {
    closed.store(true, Ordering::Release);
    let error = match ended {
        Ending::Closed => broken(address, "the store closed the batch stream", true),
        Ending::Status(status) if status.code() == tonic::Code::Unimplemented => {
            // No BatchCommands here (an old store or a proxy): nothing was executed.
            unsupported.store(true, Ordering::Release);
            broken(address, "the store does not serve BatchCommands", false)
        }
        // A definite refusal from the store (a foreign cluster id, a message too large, no
        // permission) is the callers' answer; anything else broke the connection.
        Ending::Status(status)
            if matches!(
                status.code(),
                tonic::Code::InvalidArgument
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated
            ) =>
        {
            transport::status_to_error(status, address)
        }
        Ending::Status(status) => {
            let e = transport::status_to_error(status, address);
            broken(address, &e.to_string(), true)
        }
    };
    log::debug!("batch stream to {address} ended: {error}");
    for (_, waiter) in lock(waiting).drain() {
        let _ = waiter.send(Err(error.clone()));
    }
}
