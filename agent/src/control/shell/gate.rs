//! The gate: the limits every listener shares for connections not yet authenticated
//! ([`AcceptLimiter`]), the throttles of the log lines strangers can cause, and the task that
//! reports what the limits refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;

use crate::control::accept_limits::{AcceptLimiter, Reason, Slot};
use crate::control::log_throttle::{LOG_WINDOW, LogThrottle};

/// How often the aggregated refusal report is considered (it is written once per
/// [`crate::control::accept_limits::REPORT_INTERVAL`] at most).
const REPORT_POLL: Duration = Duration::from_secs(1);

/// The unauthenticated connections of every listener: their limits, how to close one that
/// has to make room, and the throttles of the lines strangers can cause.
#[derive(Debug)]
pub(super) struct Gate {
    pub(super) limiter: AcceptLimiter,
    /// The task of each connection that still counts, to close it if it is evicted.
    pub(super) tasks: HashMap<Slot, AbortHandle>,
    /// Failed TLS handshakes: the first in a window is logged with its error, the rest
    /// counted.
    pub(super) handshake_failures: LogThrottle,
    /// Bad join requests, likewise.
    pub(super) bad_joins: LogThrottle,
    /// accept(2) failing (out of file descriptors, mostly), likewise.
    pub(super) accept_errors: LogThrottle,
}

pub(super) type SharedGate = Arc<std::sync::Mutex<Gate>>;

impl Gate {
    pub(super) fn shared() -> SharedGate {
        Arc::new(std::sync::Mutex::new(Gate {
            limiter: AcceptLimiter::default(),
            tasks: HashMap::new(),
            handshake_failures: LogThrottle::new(LOG_WINDOW),
            bad_joins: LogThrottle::new(LOG_WINDOW),
            accept_errors: LogThrottle::new(LOG_WINDOW),
        }))
    }
}

pub(super) fn lock(gate: &SharedGate) -> std::sync::MutexGuard<'_, Gate> {
    gate.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a throttled line adds when others like it were left out.
pub(super) fn left_out(more: u64, what: &str) -> String {
    if more > 0 {
        format!(" ({more} more {what} since the last report)")
    } else {
        String::new()
    }
}

/// A connection's place under the limits, given back when it is dropped: once the
/// connection is authenticated or answered, or when its task ends or is aborted.
pub(super) struct Ticket {
    pub(super) gate: SharedGate,
    pub(super) slot: Slot,
    pub(super) remote: SocketAddr,
}

impl Ticket {
    /// The connection is never closed to make room from now on ([`AcceptLimiter::pin`]).
    pub(super) fn pin(&self) {
        lock(&self.gate).limiter.pin(self.slot);
    }

    /// The connection ends before it was authenticated or answered, for `reason`.
    pub(super) fn closed(self, reason: Reason) {
        lock(&self.gate)
            .limiter
            .closed(reason, self.remote.ip(), Instant::now());
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut gate = lock(&self.gate);
        gate.limiter.release(self.slot);
        gate.tasks.remove(&self.slot);
    }
}

/// Says once per [`crate::control::accept_limits::REPORT_INTERVAL`] at most what the limits refused
/// and what timed out, in one line ([`AcceptLimiter::poll_report`]).
pub(super) async fn report_refusals(gate: SharedGate) {
    let mut tick = tokio::time::interval(REPORT_POLL);
    loop {
        tick.tick().await;
        let (report, open) = {
            let mut gate = lock(&gate);
            (
                gate.limiter.poll_report(Instant::now()),
                gate.limiter.open(),
            )
        };
        if let Some(report) = report {
            tracing::warn!(unauthenticated_open = open, "control port: {report}");
        }
    }
}
