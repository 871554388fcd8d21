//! Readiness and status for systemd (`Type=notify`, sd_notify(3)).
//!
//! systemd starts units ordered after meshd (and `systemctl start` returns) only when meshd
//! says `READY=1`, so it is sent once the TUN device, its addresses and routes, the data plane
//! and the local control socket are all up: from then on `meshd status` answers and packets
//! flow. Without `NOTIFY_SOCKET` (not started by systemd) every call does nothing.
//!
//! Failing to notify is logged, never fatal: the service manager going away must not take
//! the mesh down with it.

use sd_notify::NotifyState;

/// Start-up is complete; `status` is shown by `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The daemon is shutting down (it removes its routes and interface before it exits).
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// A free-form status line for `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
