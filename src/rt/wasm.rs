//! The wasm32 runtime: the JavaScript event loop, `setTimeout` timers and the JS clock. Works
//! in browsers, Node and workers.

use std::future::Future;
use std::time::Duration;

use super::BoxFuture;

/// A point in monotonic time (`performance.now()` underneath).
pub type Instant = web_time::Instant;

pub(super) fn now() -> Instant {
    Instant::now()
}

pub(super) fn unix_time() -> Duration {
    web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// The longest single JavaScript timer: `setTimeout` takes at most 2^31 - 1 ms.
const MAX_TIMER: Duration = Duration::from_millis(i32::MAX as u64);

pub(super) fn sleep(duration: Duration) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        // Longer waits are a chain of the longest timers (a single one would panic).
        let mut left = duration;
        while !left.is_zero() {
            let step = left.min(MAX_TIMER);
            gloo_timers::future::sleep(step).await;
            left -= step;
        }
    })
}

pub(super) fn spawn_detached<F: Future<Output = ()> + 'static>(future: F) {
    wasm_bindgen_futures::spawn_local(future);
}

/// The JavaScript event loop is always there.
pub(super) fn try_spawn_detached<F: Future<Output = ()> + 'static>(future: F) -> bool {
    spawn_detached(future);
    true
}
