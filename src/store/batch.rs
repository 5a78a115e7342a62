//! BatchCommands: the requests to one store share one long-lived bidirectional stream, as in
//! client-go. Requests waiting to go out are sent together (at most 128 per message); answers
//! come back in any order and are matched by request id. When the stream breaks, every
//! request still waiting fails as a transport error that may have been sent, and the next
//! request opens a new stream.
//!
//! The queue of commands waiting to go out is bounded ([`MAX_QUEUED`]): when the store does
//! not keep up, callers wait for room (within their deadline) instead of piling up memory. A
//! command whose caller gave up before it went out is not sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::channel::{mpsc, oneshot};
use futures::future::Either;
use futures::{SinkExt, StreamExt};

use crate::proto::tikvpb::batch_commands_request::{self, request::Cmd};
use crate::proto::tikvpb::batch_commands_response::response::Cmd as Answer;
use crate::proto::tikvpb::tikv_client::TikvClient;
use crate::proto::tikvpb::{BatchCommandsRequest, BatchCommandsResponse};
use crate::rt;
use crate::transport::{self, Channel};
use crate::{Error, Result, TransportError, TransportErrorKind};

/// Commands per request message (client-go's `max-batch-size`).
const MAX_BATCH: usize = 128;
/// Commands that may wait to go out on one stream.
pub(crate) const MAX_QUEUED: usize = 1024;

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Answer>>>>>;

/// One store's BatchCommands stream.
pub(crate) struct BatchStream {
    address: String,
    /// One sender, behind a lock, so that the channel's bound is the queue's bound.
    outgoing: futures::lock::Mutex<mpsc::Sender<(u64, Cmd)>>,
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
        // A sender's own slot counts too: the bound is the buffer plus one.
        let (outgoing, queued) = mpsc::channel::<(u64, Cmd)>(MAX_QUEUED - 1);
        let waiting: Waiters = Arc::default();
        let still_waiting = waiting.clone();
        let messages = queued
            .ready_chunks(MAX_BATCH)
            .filter_map(move |commands| std::future::ready(message(commands, &still_waiting)));
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
            outgoing: futures::lock::Mutex::new(outgoing),
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

    /// Sends `cmd` and waits for its answer, after waiting for room in the queue. Dropping
    /// the future (a timeout) forgets it; if it had not gone out yet, it never does.
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
        let queued = async {
            let mut outgoing = self.outgoing.lock().await;
            !self.is_closed() && outgoing.send((id, cmd)).await.is_ok()
        };
        // The stream can end while this caller waits for room: then it was never sent.
        let mut rx = rx;
        futures::pin_mut!(queued);
        match futures::future::select(queued, &mut rx).await {
            Either::Left((true, _)) => {}
            Either::Left((false, _)) | Either::Right(_) => {
                return Err(broken(&self.address, "the batch stream is closed", false));
            }
        }
        let answer = rx.await;
        drop(forget);
        answer.unwrap_or_else(|_| Err(broken(&self.address, "the batch stream ended", true)))
    }
}

/// The request message for `commands`, leaving out those whose caller stopped waiting;
/// `None` when none is left.
fn message(commands: Vec<(u64, Cmd)>, waiting: &Waiters) -> Option<BatchCommandsRequest> {
    let waiting = lock(waiting);
    let (request_ids, requests): (Vec<u64>, Vec<_>) = commands
        .into_iter()
        .filter(|(id, _)| waiting.contains_key(id))
        .map(|(id, cmd)| (id, batch_commands_request::Request { cmd: Some(cmd) }))
        .unzip();
    (!requests.is_empty()).then(|| BatchCommandsRequest {
        requests,
        request_ids,
        ..Default::default()
    })
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
    // In request order, so that what the callers do next does not depend on hashing.
    let mut waiters: Vec<_> = lock(waiting).drain().collect();
    waiters.sort_unstable_by_key(|(id, _)| *id);
    for (_, waiter) in waiters {
        let _ = waiter.send(Err(error.clone()));
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::future::Future;

    use super::*;
    use crate::proto::kvrpcpb;

    fn get(id: u64) -> (u64, Cmd) {
        (id, Cmd::Get(kvrpcpb::GetRequest::default()))
    }

    #[test]
    fn commands_whose_callers_gave_up_are_not_sent() {
        let waiting: Waiters = Arc::default();
        for id in [1, 3] {
            lock(&waiting).insert(id, oneshot::channel().0);
        }
        let sent = message(vec![get(1), get(2), get(3)], &waiting).unwrap();
        assert_eq!(sent.request_ids, vec![1, 3]);
        assert_eq!(sent.requests.len(), 2);
        assert!(message(vec![get(2), get(4)], &waiting).is_none());
    }

    /// A store that accepts connections and never answers: nothing goes out.
    async fn silent_store() -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        (listener, address)
    }

    #[tokio::test]
    async fn callers_wait_for_room_once_the_queue_is_full() {
        let (listener, address) = silent_store().await;
        let held = crate::rt::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect_lazy();
        let stream = BatchStream::open(TikvClient::new(channel), &address);
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut calls: Vec<_> = (0..MAX_QUEUED + 1)
            .map(|_| Box::pin(stream.call(Cmd::Get(kvrpcpb::GetRequest::default()))))
            .collect();
        for call in &mut calls {
            assert!(call.as_mut().poll(&mut cx).is_pending());
        }
        // Nothing goes out: past the bound, a caller waits for room holding the sender (and
        // the callers after it wait for the sender) instead of growing the queue.
        assert!(stream.outgoing.try_lock().is_none());
        drop(calls);
        assert!(
            stream.outgoing.try_lock().is_some(),
            "waiters that gave up let go"
        );
        assert!(
            lock(&stream.waiting).is_empty(),
            "callers that gave up are forgotten"
        );
        drop(held);
    }
}
