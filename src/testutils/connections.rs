//! Cutting a server's open connections on demand (a crashed store, a lost reply), and
//! counting the connections it accepted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// Cuts a server's open connections on demand, and counts the connections it accepted.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionKiller {
    current: Arc<Mutex<CancellationToken>>,
    accepted: Arc<AtomicU64>,
}

impl ConnectionKiller {
    pub(crate) fn new() -> Self {
        ConnectionKiller {
            current: Arc::new(Mutex::new(CancellationToken::new())),
            accepted: Arc::default(),
        }
    }

    /// Counts a newly accepted connection; the token it is cut by.
    pub(crate) fn accept(&self) -> CancellationToken {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many connections the server accepted.
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Fails every connection open now.
    pub(crate) fn kill(&self) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = CancellationToken::new();
        std::mem::replace(&mut *current, fresh).cancel();
    }
}
