//! The native runtime: tokio's executor and timers, the system clock.
#![allow(clippy::disallowed_methods)] // this is the native runtime seam

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::BoxFuture;

/// A point in monotonic time.
pub type Instant = std::time::Instant;

/// Tokio's clock: the system's, unless the runtime's time is paused (a simulation).
pub(super) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

pub(super) fn unix_time() -> Duration {
    #[cfg(feature = "simulation")]
    if let Some(simulated) = turmoil::since_epoch() {
        return simulated;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

pub(super) fn sleep(duration: Duration) -> BoxFuture<'static, ()> {
    Box::pin(tokio::time::sleep(duration))
}

pub(super) fn spawn_detached<F: Future<Output = ()> + Send + 'static>(future: F) {
    drop(tokio::spawn(future));
}

pub(super) fn try_spawn_detached<F: Future<Output = ()> + Send + 'static>(future: F) -> bool {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            drop(handle.spawn(future));
            true
        }
        Err(_) => false,
    }
}
