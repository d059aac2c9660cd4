//! How a run ends: one stop signal that every part watches, and the first
//! fatal error, which `run()` returns.

use crate::error::Error;
use std::sync::{Mutex, PoisonError};
use tokio_util::sync::CancellationToken;

/// The run-wide stop signal and the error that stopped the run, if any.
/// Shutdown (a signal or a [`ShutdownHandle`](crate::ShutdownHandle))
/// cancels the token; a fatal error records itself and cancels it too.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    token: CancellationToken,
    error: Mutex<Option<Error>>,
    /// Set with the first error, and never cleared (`error` is taken).
    fatal_seen: std::sync::atomic::AtomicBool,
}

impl Stop {
    pub(crate) fn new(token: CancellationToken) -> Self {
        Stop {
            token,
            error: Mutex::new(None),
            fatal_seen: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The token that is cancelled when the run stops.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Whether the run is stopping.
    pub(crate) fn is_stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Whether a fatal error stopped the run.
    pub(crate) fn has_error(&self) -> bool {
        self.fatal_seen.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops the run with `error`; the first error wins.
    pub(crate) fn fatal(&self, error: Error) {
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(error);
        }
        self.fatal_seen
            .store(true, std::sync::atomic::Ordering::Release);
        drop(slot);
        self.token.cancel();
    }

    /// The error that stopped the run, if one did.
    pub(crate) fn take_error(&self) -> Option<Error> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}
