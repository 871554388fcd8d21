//! The reach query wire format: "do you reach this core, and how fast?", asked of another
//! core before traffic is relayed through it ([`super::relay`]). Same port, same size and
//! same MAC key as the path probes ([`super::probe`]); types 0x54 and 0x55 are unknown to
//! WireGuard (1..=4) and to meshd versions without relays, which drop them. Layout (all
//! integers big-endian):
//!
//! ```text
//!  0      type (0x54 query, 0x55 answer)
//!  1..4   zero
//!  4..12  sender id
//! 12..20  sequence number (chosen by the asker, echoed)
//! 20..28  target: the probe sender id of the core asked about (echoed)
//! 28..32  answer: the answerer's smoothed RTT to the target in microseconds, 0xffffffff
//!         for "I do not reach it"; zero in a query
//! 32..48  zero (reserved)
//! 48..64  MAC: HMAC-SHA256(probe key, bytes 0..48), first 16 bytes
//! ```
//!
//! An answer is exactly as long as its query (no amplification), unauthenticated queries
//! get none, and the answerer's per-peer reply budget is shared with probe replies.

use std::time::Duration;

use subtle::ConstantTimeEq;

use super::probe::{ProbeError, ProbeKey, SenderId};

/// Every reach message is exactly this long.
pub const REACH_LEN: usize = 64;
/// First byte of a reach query.
pub const QUERY: u8 = 0x54;
/// First byte of a reach answer.
pub const ANSWER: u8 = 0x55;

const MAC_START: usize = 48;
const UNREACHABLE: u32 = u32::MAX;

/// Query or answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReachKind {
    Query,
    Answer,
}

/// A reach message's contents (everything but the MAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    pub kind: ReachKind,
    pub sender: SenderId,
    pub seq: u64,
    pub target: SenderId,
    /// In an answer: the answerer's RTT to the target (`None`: it does not reach it).
    pub rtt: Option<Duration>,
}

/// Whether this datagram claims to be a reach message (by its first byte alone).
pub fn is_reach(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(&QUERY) | Some(&ANSWER))
}

/// Reads the kind and sender id without checking the MAC (to find the key to check it
/// with). Checks length, type and the zero bytes.
pub fn peek(datagram: &[u8]) -> Result<(ReachKind, SenderId), ProbeError> {
    if datagram.len() != REACH_LEN {
        return Err(ProbeError::Length(datagram.len()));
    }
    let kind = match datagram[0] {
        QUERY => ReachKind::Query,
        ANSWER => ReachKind::Answer,
        other => return Err(ProbeError::Type(other)),
    };
    let answer_zero = kind == ReachKind::Query && datagram[28..32] != [0; 4];
    if answer_zero
        || datagram[1..4]
            .iter()
            .chain(&datagram[32..48])
            .any(|&b| b != 0)
    {
        return Err(ProbeError::Reserved);
    }
    Ok((kind, id_at(datagram, 4)))
}

/// Parses and authenticates a reach message. Never panics, whatever the input.
pub fn decode(datagram: &[u8], key: &ProbeKey) -> Result<Reach, ProbeError> {
    let (kind, sender) = peek(datagram)?;
    let expected = key.mac(&datagram[..MAC_START]);
    if !bool::from(expected.ct_eq(&datagram[MAC_START..])) {
        return Err(ProbeError::Mac);
    }
    let micros = u32::from_be_bytes([datagram[28], datagram[29], datagram[30], datagram[31]]);
    Ok(Reach {
        kind,
        sender,
        seq: u64::from_be_bytes(id_at(datagram, 12)),
        target: id_at(datagram, 20),
        rtt: match kind {
            ReachKind::Query => None,
            ReachKind::Answer => {
                (micros != UNREACHABLE).then(|| Duration::from_micros(u64::from(micros)))
            }
        },
    })
}

fn id_at(datagram: &[u8], at: usize) -> [u8; 8] {
    let mut id = [0u8; 8];
    id.copy_from_slice(&datagram[at..at + 8]);
    id
}

impl Reach {
    /// A query from `sender` (our own id) about `target`.
    pub fn query(sender: SenderId, seq: u64, target: SenderId) -> Self {
        Reach {
            kind: ReachKind::Query,
            sender,
            seq,
            target,
            rtt: None,
        }
    }

    /// The answer to this query from the node whose id is `own_id`.
    pub fn answer(&self, own_id: SenderId, rtt: Option<Duration>) -> Self {
        Reach {
            kind: ReachKind::Answer,
            sender: own_id,
            rtt,
            ..*self
        }
    }

    /// The 64 bytes on the wire, MAC included.
    pub fn encode(&self, key: &ProbeKey) -> [u8; REACH_LEN] {
        let mut out = [0u8; REACH_LEN];
        out[0] = match self.kind {
            ReachKind::Query => QUERY,
            ReachKind::Answer => ANSWER,
        };
        out[4..12].copy_from_slice(&self.sender);
        out[12..20].copy_from_slice(&self.seq.to_be_bytes());
        out[20..28].copy_from_slice(&self.target);
        if self.kind == ReachKind::Answer {
            // RTTs of 71 minutes or more are not a path anyone relays through.
            let micros = self.rtt.map_or(UNREACHABLE, |rtt| {
                u32::try_from(rtt.as_micros()).map_or(UNREACHABLE - 1, |m| m.min(UNREACHABLE - 1))
            });
            out[28..32].copy_from_slice(&micros.to_be_bytes());
        }
        let mac = key.mac(&out[..MAC_START]);
        out[MAC_START..].copy_from_slice(&mac);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::probe::sender_id;

    fn key(b: u8) -> ProbeKey {
        ProbeKey::from_shared_secret(&[b; 32])
    }

    #[test]
    fn query_and_answer_round_trip_at_the_same_size() {
        let k = key(3);
        let query = Reach::query(sender_id(&[1; 32]), 7, sender_id(&[9; 32]));
        let bytes = query.encode(&k);
        assert_eq!(decode(&bytes, &k), Ok(query));
        let yes = query.answer(sender_id(&[2; 32]), Some(Duration::from_micros(12_345)));
        let yes_bytes = yes.encode(&k);
        assert_eq!(yes_bytes.len(), bytes.len());
        assert_eq!(decode(&yes_bytes, &k), Ok(yes));
        let no = query.answer(sender_id(&[2; 32]), None);
        assert_eq!(decode(&no.encode(&k), &k).unwrap().rtt, None);
    }

    #[test]
    fn any_flipped_bit_or_wrong_key_is_rejected() {
        let k = key(3);
        let bytes = Reach::query(sender_id(&[1; 32]), 7, sender_id(&[9; 32])).encode(&k);
        assert_eq!(decode(&bytes, &key(4)), Err(ProbeError::Mac));
        for i in 0..REACH_LEN * 8 {
            let mut b = bytes;
            b[i / 8] ^= 1 << (i % 8);
            assert!(decode(&b, &k).is_err(), "bit {i} flipped was accepted");
        }
    }

    #[test]
    fn never_taken_for_wireguard_or_a_path_probe() {
        for t in [1u8, 2, 3, 4, 0x50, 0x51] {
            assert!(!is_reach(&[t, 0, 0, 0]));
        }
        assert!(is_reach(&[QUERY]) && is_reach(&[ANSWER]) && !is_reach(&[]));
        assert!(peek(&[QUERY; 63]).is_err() && peek(&[]).is_err());
    }
}
