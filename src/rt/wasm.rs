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

pub(super) fn sleep(duration: Duration) -> BoxFuture<'static, ()> {
    Box::pin(gloo_timers::future::sleep(duration))
}

pub(super) fn spawn_detached<F: Future<Output = ()> + 'static>(future: F) {
    wasm_bindgen_futures::spawn_local(future);
}
