//! No-op twin of `metrics.rs`, used when the `metrics` feature is off.

use std::time::Duration;

#[inline(always)]
pub(crate) fn pd_request(_method: &'static str, _duration: Duration, _ok: bool) {}
