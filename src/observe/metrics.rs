//! Prometheus metrics, registered in the registry returned by [`registry`].

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, Registry};

struct Metrics {
    registry: Registry,
    pd_request_seconds: HistogramVec,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let registry = Registry::new();
        let pd_request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tikv_client_pd_request_seconds",
                "Duration of requests to PD, by method and result.",
            ),
            &["method", "result"],
        )
        .expect("static metric definition is valid");
        registry
            .register(Box::new(pd_request_seconds.clone()))
            .expect("metric registered once");
        Metrics {
            registry,
            pd_request_seconds,
        }
    })
}

/// The registry holding every metric of this crate; gather it into your exporter.
pub fn registry() -> &'static Registry {
    &metrics().registry
}

pub(crate) fn pd_request(method: &'static str, duration: Duration, ok: bool) {
    metrics()
        .pd_request_seconds
        .with_label_values(&[method, if ok { "ok" } else { "err" }])
        .observe(duration.as_secs_f64());
}
