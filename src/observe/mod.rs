//! Observability: metrics (feature `metrics`) and tracing events (feature `tracing`).
//!
//! Call sites use the functions here without any `cfg`: with a feature off, its twin module of
//! inline no-ops is used instead.

use std::time::Duration;

#[cfg(feature = "metrics")]
mod metrics;
#[cfg(not(feature = "metrics"))]
#[path = "metrics_noop.rs"]
mod metrics;

#[cfg(feature = "metrics")]
pub use metrics::registry;

/// Records one PD request: its method, duration and whether it succeeded.
pub(crate) fn pd_request(method: &'static str, duration: Duration, ok: bool) {
    metrics::pd_request(method, duration, ok);
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "tikv_client::pd", method, ?duration, ok, "PD request");
}
