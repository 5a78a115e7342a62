//! The timestamp oracle: concurrent callers are batched into one `Tso` request.
//!
//! A background task takes every waiting caller, asks PD for that many timestamps at once and
//! hands them out in order. Natively the requests go over one long-lived bidirectional stream;
//! where the transport cannot stream requests (gRPC-web on wasm32) each batch is one call with
//! a single request message.

use std::sync::Weak;

use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};

use super::{check_header, Inner, PdRequest};
use crate::backoff::{BackoffKind, Backoffer};
use crate::proto::pdpb::{self, pd_client::PdClient as PdGrpc};
use crate::rt::{self, JoinHandle};
use crate::timestamp::Timestamp;
use crate::transport::{self, Channel};
use crate::{Error, Result};

/// At most this many callers share one request.
const MAX_BATCH: usize = 10_000;

type Waiter = oneshot::Sender<Result<Timestamp>>;

/// Hands out timestamps; stops its task when dropped.
pub(super) struct Oracle {
    waiters: mpsc::UnboundedSender<Waiter>,
    _task: JoinHandle<()>,
}

impl Oracle {
    pub(super) fn start(pd: Weak<Inner>) -> Self {
        let (tx, rx) = mpsc::unbounded();
        Oracle {
            waiters: tx,
            _task: rt::spawn(run(pd, rx)),
        }
    }

    pub(super) async fn get(&self) -> Result<Timestamp> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .unbounded_send(tx)
            .map_err(|_| Error::Pd("the timestamp oracle has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Pd("the timestamp oracle has stopped".into()))?
    }
}

/// An open `Tso` stream: where requests go and where replies come from.
struct Stream {
    requests: mpsc::Sender<pdpb::TsoRequest>,
    replies: tonic::Streaming<pdpb::TsoResponse>,
}

async fn run(pd: Weak<Inner>, mut waiters: mpsc::UnboundedReceiver<Waiter>) {
    let mut stream: Option<Stream> = None;
    // The last timestamp handed out: every later one must be greater.
    let mut previous: Option<Timestamp> = None;
    while let Some(first) = waiters.next().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiters.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        batch.retain(|w| !w.is_canceled());
        if batch.is_empty() {
            continue;
        }
        let Some(pd) = pd.upgrade() else {
            return;
        };
        let count = batch.len() as u32;
        let fetched = fetch(&pd, count, &mut stream)
            .await
            .and_then(|last| first_of_batch(previous, last, count));
        match fetched {
            Ok(first) => {
                for (i, waiter) in batch.into_iter().enumerate() {
                    let ts = Timestamp::new(first.physical, first.logical + i as i64);
                    previous = Some(ts);
                    let _ = waiter.send(Ok(ts));
                }
            }
            Err(e) => {
                for waiter in batch {
                    let _ = waiter.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The first of the `count` timestamps that end at `last` (PD answers the last of a batch;
/// they share its physical part). Refuses a batch PD could not have issued (its logical part
/// too small for the count) or one not above every timestamp handed out before.
fn first_of_batch(previous: Option<Timestamp>, last: Timestamp, count: u32) -> Result<Timestamp> {
    let first_logical = last.logical - i64::from(count) + 1;
    if first_logical < 0 || last.logical >= 1 << crate::timestamp::LOGICAL_BITS || last.physical < 0
    {
        return Err(Error::UnexpectedResponse(format!(
            "PD answered {last:?} as the last of {count} timestamps"
        )));
    }
    let first = Timestamp::new(last.physical, first_logical);
    if previous.is_some_and(|p| first <= p) {
        return Err(Error::UnexpectedResponse(format!(
            "PD's timestamps went backwards: {first:?} after {previous:?}"
        )));
    }
    Ok(first)
}

/// `count` timestamps: returns the last; retries with the `pdRPC` backoff.
async fn fetch(pd: &Inner, count: u32, stream: &mut Option<Stream>) -> Result<Timestamp> {
    let rt = &pd.config.runtime;
    let mut backoffer = Backoffer::new(TSO_BUDGET);
    let mut follows = 0;
    loop {
        let refreshes = pd.refreshes();
        let address = pd.leader().member.client_urls[0].clone();
        let attempt = rt
            .timeout(pd.config.timeout, request(pd, count, stream))
            .await;
        let err = match attempt {
            Ok(Ok(ts)) => return Ok(ts),
            Ok(Err(e)) => e,
            Err(_) => Error::Timeout {
                operation: "PD Tso",
                after: pd.config.timeout,
            },
        };
        *stream = None;
        log::debug!("TSO request failed: {err}");
        if matches!(&err, Error::Grpc { message, .. } if message.contains("mismatch cluster id")) {
            return Err(err);
        }
        if pd.follow_leader(refreshes, &address, &mut follows).await {
            continue;
        }
        backoffer.backoff(rt, BackoffKind::PdRpc, err).await?;
    }
}

/// client-go's TSO budget: 15 s.
const TSO_BUDGET: std::time::Duration = std::time::Duration::from_secs(15);

async fn request(pd: &Inner, count: u32, stream: &mut Option<Stream>) -> Result<Timestamp> {
    let leader = pd.leader();
    let address = leader.member.client_urls[0].clone();
    let mut req = pdpb::TsoRequest {
        count,
        ..Default::default()
    };
    req.set_header(pd.header());
    let resp = if transport::STREAMING_REQUESTS {
        if stream.is_none() {
            *stream = Some(open(leader.channel, &address).await?);
        }
        let open = stream.as_mut().expect("opened above");
        open.requests
            .send(req)
            .await
            .map_err(|_| Error::Pd("the TSO stream closed".into()))?;
        open.replies.message().await
    } else {
        let mut client = PdGrpc::new(leader.channel);
        let mut replies = client
            .tso(futures::stream::iter([req]))
            .await
            .map_err(|s| transport::status_to_error(s, &address))?
            .into_inner();
        replies.message().await
    };
    let resp = resp
        .map_err(|s| transport::status_to_error(s, &address))?
        .ok_or_else(|| Error::Pd("the TSO stream ended".into()))?;
    let resp = check_header(resp)?;
    if resp.count != count {
        return Err(Error::UnexpectedResponse(format!(
            "PD answered {} timestamps for a request of {count}",
            resp.count
        )));
    }
    let ts = resp
        .timestamp
        .ok_or_else(|| Error::UnexpectedResponse("TSO response without a timestamp".into()))?;
    Ok(Timestamp::new(ts.physical, ts.logical))
}

async fn open(channel: Channel, address: &str) -> Result<Stream> {
    let (tx, rx) = mpsc::channel(16);
    let replies = PdGrpc::new(channel)
        .tso(rx)
        .await
        .map_err(|s| transport::status_to_error(s, address))?
        .into_inner();
    Ok(Stream {
        requests: tx,
        replies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_must_fit_their_count_and_move_forward() {
        let last = Timestamp::new(100, 9);
        assert_eq!(
            first_of_batch(None, last, 10).unwrap(),
            Timestamp::new(100, 0)
        );
        assert!(
            first_of_batch(None, last, 11).is_err(),
            "10 logicals cannot hold 11 timestamps"
        );
        assert!(first_of_batch(None, Timestamp::new(100, 1 << 18), 1).is_err());
        assert!(first_of_batch(None, Timestamp::new(-1, 0), 1).is_err());
        let previous = Some(Timestamp::new(100, 4));
        assert!(first_of_batch(previous, last, 5).is_ok());
        assert!(
            first_of_batch(previous, last, 6).is_err(),
            "the batch would start at the last timestamp handed out"
        );
        assert!(first_of_batch(previous, Timestamp::new(99, 100), 1).is_err());
    }
}
