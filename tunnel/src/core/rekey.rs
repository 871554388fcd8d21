//! A handshake started on request (`meshd rekey`): the same new session the two-minute
//! rekey timer would make, now. Operators use it after suspecting a peer's session state,
//! and the tests use it to rekey many times under load without waiting minutes per rekey.
//!
//! The request only marks the peer; the next [`DataplaneCore::tick`] sends the initiation,
//! so the tick stays the one place that starts handshakes on the clock and from the shell.
//! The session in use keeps carrying traffic both ways until the new one is confirmed, as
//! with any rekey: nothing is dropped while the handshake is in flight.

use std::time::Instant;

use boringtun::noise::TunnResult;

use super::DataplaneCore;
use super::paths::send_path;
use crate::peer::{Peer, PeerState};
use crate::tx::TxBatch;

/// What a rekey request did to one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RekeyRequest {
    pub peer: String,
    /// False when the peer has no path to send on (no endpoint known yet): nothing is sent,
    /// it handshakes on its own once it has one.
    pub started: bool,
}

impl DataplaneCore {
    /// Asks for a new handshake with the peer named `name` (every peer when `None`) at the
    /// next tick, even if one is in flight. Returns what was asked of each peer; empty when
    /// no peer has that name.
    pub fn request_rekey(&self, name: Option<&str>) -> Vec<RekeyRequest> {
        let snap = self.snapshot();
        snap.peers()
            .iter()
            .filter(|peer| name.is_none_or(|name| peer.name == name))
            .map(|peer| {
                let mut state = peer.state.lock();
                let started = send_path(&state).is_some();
                state.rekey_requested = started;
                RekeyRequest {
                    peer: peer.name.clone(),
                    started,
                }
            })
            .collect()
    }

    /// Sends the initiation a [`Self::request_rekey`] asked for (from the tick).
    pub(super) fn start_requested_rekey(
        &self,
        peer: &Peer,
        state: &mut PeerState,
        now: Instant,
        tx: &mut TxBatch,
    ) {
        if !state.rekey_requested || send_path(state).is_none() {
            return;
        }
        state.rekey_requested = false;
        // `force_resend`: a handshake already in flight is replaced by a fresh one, which
        // is what was asked for (boringtun otherwise waits out its retry timer).
        if let TunnResult::WriteToNetwork(p) =
            state.tunn.format_handshake_initiation(tx.room(), true)
        {
            let len = p.len();
            tracing::info!(peer = %peer.name, "rekey requested: handshake initiation sent");
            self.commit_datagram(peer, state, len, now, tx);
        }
    }
}
