//! A clock that moves only when told to, for deterministic tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::Instant;

/// A clock for tests: it starts at the real time of its creation and then moves only through
/// [`ManualClock::advance`] (called by the test, or by code sleeping on a
/// [`Runtime::manual`](super::Runtime::manual)).
#[derive(Clone, Debug)]
pub struct ManualClock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    unix_start: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    elapsed: Duration,
    waiters: Vec<Waker>,
}

impl ManualClock {
    /// A clock reading the current real time, frozen.
    pub fn new() -> Self {
        ManualClock {
            inner: Arc::new(Inner {
                start: super::imp::now(),
                unix_start: super::imp::unix_time(),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// How far the clock has been advanced since its creation.
    pub fn elapsed(&self) -> Duration {
        self.lock().elapsed
    }

    /// Moves the clock forward and wakes the waiters whose deadline may have passed.
    pub fn advance(&self, by: Duration) {
        let waiters = {
            let mut state = self.lock();
            state.elapsed += by;
            std::mem::take(&mut state.waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
    }

    pub(super) fn now(&self) -> Instant {
        self.inner.start + self.elapsed()
    }

    pub(super) fn unix_time(&self) -> Duration {
        self.inner.unix_start + self.elapsed()
    }

    /// Completes once the clock shows at least `at` since its creation.
    pub(super) fn wait_until(&self, at: Duration) -> impl Future<Output = ()> + Send + 'static {
        WaitUntil {
            clock: self.clone(),
            at,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

struct WaitUntil {
    clock: ManualClock,
    at: Duration,
}

impl Future for WaitUntil {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.clock.lock();
        if state.elapsed >= self.at {
            Poll::Ready(())
        } else {
            state.waiters.push(cx.waker().clone());
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Runtime;
    use super::*;

    #[test]
    fn sleeping_advances_manual_time_instantly() {
        let clock = ManualClock::new();
        let rt = Runtime::manual(clock.clone());
        let t0 = rt.now();
        let u0 = rt.unix_time();
        futures::executor::block_on(async {
            rt.sleep(Duration::from_secs(3600)).await;
            rt.sleep(Duration::from_millis(5)).await;
        });
        assert_eq!(rt.now() - t0, Duration::from_millis(3_600_005));
        assert_eq!(rt.unix_time() - u0, Duration::from_millis(3_600_005));
        assert_eq!(clock.elapsed(), Duration::from_millis(3_600_005));
    }

    #[test]
    fn timeouts_fire_when_the_clock_passes_the_deadline() {
        let clock = ManualClock::new();
        let rt = Runtime::manual(clock.clone());
        let mut pending =
            Box::pin(rt.timeout(Duration::from_secs(10), futures::future::pending::<()>()));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(pending.as_mut().poll(&mut cx).is_pending());
        clock.advance(Duration::from_secs(9));
        assert!(pending.as_mut().poll(&mut cx).is_pending(), "9 s < 10 s");
        clock.advance(Duration::from_secs(1));
        assert!(matches!(
            pending.as_mut().poll(&mut cx),
            Poll::Ready(Err(_))
        ));

        let done = futures::executor::block_on(rt.timeout(Duration::from_secs(1), async { 5 }));
        assert_eq!(done, Ok(5));
    }

    #[test]
    fn advancing_wakes_waiters() {
        let clock = ManualClock::new();
        let woken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let waker = Waker::from(Arc::new(Flag(woken.clone())));
        let mut wait = Box::pin(clock.wait_until(Duration::from_millis(1)));
        assert!(wait
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        clock.advance(Duration::from_millis(1));
        assert!(woken.load(std::sync::atomic::Ordering::SeqCst));
    }
}
