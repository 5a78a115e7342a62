//! The runtime seam: the only place that knows which executor, timers and clock exist.
//!
//! Core code never names tokio, `std::time::Instant::now` or `SystemTime::now`: they do not
//! exist or panic on `wasm32-unknown-unknown`. It calls this module instead:
//!
//! * [`spawn`] runs background work (TSO batching, heartbeats, secondary commits): tokio on
//!   native targets, the JavaScript event loop on wasm32. The returned [`JoinHandle`] aborts
//!   the task when dropped, unless [`JoinHandle::detach`]ed.
//! * A [`Runtime`] gives the time and sleeps: the system clock and timers by default, or a
//!   [`ManualClock`] in tests, so that backoff and heartbeat logic runs instantly while every
//!   delay is still checked.
//! * [`MaybeSend`], [`MaybeSync`] and [`BoxFuture`] are `Send`/`Sync` on native targets and
//!   nothing on wasm32, where futures are single-threaded.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{Either, RemoteHandle};
use futures::FutureExt;

mod manual;
#[cfg(not(target_arch = "wasm32"))]
mod native;
pub(crate) mod simulation;
#[cfg(target_arch = "wasm32")]
mod wasm;

#[cfg(not(target_arch = "wasm32"))]
use native as imp;
#[cfg(target_arch = "wasm32")]
use wasm as imp;

pub use imp::Instant;
pub use manual::ManualClock;

/// `Send` on native targets; implemented by every type on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
/// `Send` on native targets; implemented by every type on wasm32.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// `Sync` on native targets; implemented by every type on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSync: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync + ?Sized> MaybeSync for T {}
/// `Sync` on native targets; implemented by every type on wasm32.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSync for T {}

/// A boxed future, `Send` on native targets.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A boxed future, `Send` on native targets.
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Runs `future` in the background.
///
/// On native targets this needs a tokio runtime (the caller's). Dropping the handle aborts the
/// task; [`JoinHandle::detach`] lets it run to completion instead. Awaiting the handle gives the
/// task's output, and re-raises a panic of the task.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + MaybeSend + 'static,
    F::Output: MaybeSend + 'static,
{
    let (task, handle) = future.remote_handle();
    imp::spawn_detached(task);
    JoinHandle(handle)
}

/// Runs `future` in the background with nobody waiting for it, if there is a runtime to run
/// it on: false (and the future is dropped unpolled) in native code outside a tokio runtime,
/// for example in a destructor running after the runtime shut down.
pub fn detach<F>(future: F) -> bool
where
    F: Future<Output = ()> + MaybeSend + 'static,
{
    imp::try_spawn_detached(future)
}

/// A handle to a task started by [`spawn`]: awaiting it yields the output; dropping it aborts
/// the task.
#[must_use = "dropping a JoinHandle aborts the task; call detach() to let it run"]
pub struct JoinHandle<T>(RemoteHandle<T>);

impl<T: 'static> JoinHandle<T> {
    /// Lets the task run to completion without anyone waiting for it.
    pub fn detach(self) {
        self.0.forget();
    }
}

impl<T: 'static> Future for JoinHandle<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.0.poll_unpin(cx)
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinHandle")
    }
}

/// The wall-clock time since the Unix epoch, from the system clock.
pub(crate) fn unix_time() -> Duration {
    imp::unix_time()
}

/// Time and timers: the system's, or a [`ManualClock`] for deterministic tests.
#[derive(Clone, Default)]
pub struct Runtime {
    manual: Option<ManualClock>,
}

impl Runtime {
    /// The system clock and timers of this target.
    pub fn system() -> Self {
        Runtime { manual: None }
    }

    /// Time that moves only when `clock` is advanced or when code sleeps: every
    /// [`Runtime::sleep`] advances the clock by its duration and returns at once, so retry and
    /// heartbeat logic runs instantly while the clock still shows the time it would have taken.
    pub fn manual(clock: ManualClock) -> Self {
        Runtime {
            manual: Some(clock),
        }
    }

    /// The monotonic time now.
    pub fn now(&self) -> Instant {
        match &self.manual {
            Some(clock) => clock.now(),
            None => imp::now(),
        }
    }

    /// The wall-clock time since the Unix epoch.
    pub fn unix_time(&self) -> Duration {
        match &self.manual {
            Some(clock) => clock.unix_time(),
            None => imp::unix_time(),
        }
    }

    /// Waits for `duration`.
    pub fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        match &self.manual {
            Some(clock) => {
                clock.advance(duration);
                Box::pin(std::future::ready(()))
            }
            None => imp::sleep(duration),
        }
    }

    /// Runs `future` for at most `duration`. With a manual clock the deadline passes when the
    /// clock is advanced past it (by the test or by sleeping code).
    pub async fn timeout<F: Future>(
        &self,
        duration: Duration,
        future: F,
    ) -> Result<F::Output, Elapsed> {
        let deadline: BoxFuture<'static, ()> = match &self.manual {
            Some(clock) => Box::pin(clock.wait_until(clock.elapsed() + duration)),
            None => imp::sleep(duration),
        };
        let future = std::pin::pin!(future);
        match futures::future::select(future, deadline).await {
            Either::Left((output, _)) => Ok(output),
            Either::Right(((), _)) => Err(Elapsed(duration)),
        }
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual {
            Some(clock) => write!(f, "Runtime::manual(at {:?})", clock.elapsed()),
            None => f.write_str("Runtime::system"),
        }
    }
}

/// A [`Runtime::timeout`] that ran out; holds the duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline of {0:?} has elapsed")]
pub struct Elapsed(pub Duration);

/// The system runtime on tokio; tests/wasm.rs runs the same checks in a browser.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spawned_tasks_return_output_and_abort_on_drop() {
        assert_eq!(spawn(async { 40 + 2 }).await, 42);

        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        let handle = spawn(async move {
            // Holds `tx` until aborted: the receiver sees it dropped.
            futures::future::pending::<()>().await;
            drop(tx);
        });
        drop(handle);
        assert!(rx.await.is_err(), "aborting the task drops what it owned");

        let (tx, rx) = futures::channel::oneshot::channel();
        spawn(async move {
            Runtime::system().sleep(Duration::from_millis(5)).await;
            tx.send(7).unwrap();
        })
        .detach();
        assert_eq!(rx.await.unwrap(), 7, "a detached task runs to completion");
    }

    #[tokio::test]
    async fn system_time_moves_and_timeouts_fire() {
        let rt = Runtime::system();
        let t0 = rt.now();
        rt.sleep(Duration::from_millis(20)).await;
        assert!(rt.now() - t0 >= Duration::from_millis(20));
        assert!(rt.unix_time() > Duration::from_secs(1_600_000_000));
        let r = rt
            .timeout(Duration::from_millis(10), futures::future::pending::<()>())
            .await;
        assert_eq!(r, Err(Elapsed(Duration::from_millis(10))));
        assert_eq!(rt.timeout(Duration::from_secs(5), async { 1 }).await, Ok(1));
    }
}
