//! The path probe wire format: meshd's own 64-byte request and reply on the WireGuard port.
//!
//! WireGuard's message types are 1..=4 in the first byte followed by three zero bytes, so the
//! types [`REQUEST`] (0x50) and [`REPLY`] (0x51) never collide with it, and wireguard-go drops
//! them as unknown. Layout (all integers big-endian):
//!
//! ```text
//!  0      type (0x50 request, 0x51 reply)
//!  1..4   zero
//!  4..12  sender id (see [`sender_id`])
//! 12..20  sequence number (chosen by the prober, echoed)
//! 20..28  prober's timestamp in microseconds (echoed)
//! 28..32  path id (opaque to the replier, echoed)
//! 32..48  zero (reserved; keeps the reply exactly as long as the request)
//! 48..64  MAC: HMAC-SHA256(key, bytes 0..48), first 16 bytes
//! ```
//!
//! Why not inside the WireGuard session: a probe must work before a session exists (to pick
//! the path the handshake goes on), on paths the session does not currently use, and across
//! rekeys; the key is derived from the static-static X25519 secret of the two nodes, which
//! only they can compute and which does not change with sessions.
//!
//! A reply is the request with the type changed, the sender id replaced by the replier's and
//! a fresh MAC, so it is never larger than what caused it: no amplification. Unknown senders
//! and bad MACs get no answer. Replays of requests are bounded by the replier's per-peer rate
//! limit; replays of replies are ignored by the prober (it only accepts sequence numbers it
//! is waiting for).

use ring::{digest, hkdf, hmac};
use subtle::ConstantTimeEq;

/// Every probe, request or reply, is exactly this long.
pub const PROBE_LEN: usize = 64;
/// First byte of a probe request.
pub const REQUEST: u8 = 0x50;
/// First byte of a probe reply.
pub const REPLY: u8 = 0x51;

const MAC_START: usize = 48;
const MAC_LEN: usize = 16;
const KEY_LABEL: &[u8] = b"meshd probe v1";
const ID_LABEL: &[u8] = b"meshd probe id";

/// Who sent a probe: the first 8 bytes of SHA-256("meshd probe id" || WireGuard public key).
/// Short enough to keep probes small; the MAC, not the id, is what authenticates.
pub type SenderId = [u8; 8];

/// The sender id of the node with this WireGuard public key.
pub fn sender_id(public_key: &[u8; 32]) -> SenderId {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(ID_LABEL);
    ctx.update(public_key);
    let hash = ctx.finish();
    let mut id = [0u8; 8];
    id.copy_from_slice(&hash.as_ref()[..8]);
    id
}

/// The MAC key for probes between two nodes. Both compute the same key from their X25519
/// static-static shared secret, so one key serves both directions (the type byte and the
/// sender id are under the MAC, so a request cannot be turned into a reply or reflected).
#[derive(Clone)]
pub struct ProbeKey(hmac::Key);

impl std::fmt::Debug for ProbeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeKey(..)")
    }
}

impl ProbeKey {
    /// Derives the key (HKDF-SHA256, salt and info "meshd probe v1") from the 32-byte X25519
    /// shared secret of our static key and the peer's (`StaticSecret::diffie_hellman`).
    pub fn from_shared_secret(shared_secret: &[u8; 32]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, KEY_LABEL).extract(shared_secret);
        let okm = prk
            .expand(&[KEY_LABEL], hmac::HMAC_SHA256)
            .expect("one SHA-256 output is a valid HKDF length");
        ProbeKey(hmac::Key::from(okm))
    }

    pub(crate) fn mac(&self, bytes: &[u8]) -> [u8; MAC_LEN] {
        let tag = hmac::sign(&self.0, bytes);
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&tag.as_ref()[..MAC_LEN]);
        mac
    }
}

/// Request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Request,
    Reply,
}

impl ProbeKind {
    fn byte(self) -> u8 {
        match self {
            ProbeKind::Request => REQUEST,
            ProbeKind::Reply => REPLY,
        }
    }
}

/// A probe's contents (everything but the MAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Probe {
    pub kind: ProbeKind,
    pub sender: SenderId,
    pub seq: u64,
    pub timestamp_us: u64,
    pub path_id: u32,
}

/// Why a datagram is not a valid probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("probe is {0} bytes, expected {PROBE_LEN}")]
    Length(usize),
    #[error("first byte {0:#04x} is not a probe type")]
    Type(u8),
    #[error("probe has non-zero bytes where zeros are required")]
    Reserved,
    #[error("probe MAC does not verify")]
    Mac,
}

/// Whether this datagram claims to be a probe (by its first byte alone): lets the receive
/// path route 0x50/0x51 here before WireGuard parsing. Does not validate anything else.
pub fn is_probe(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(&REQUEST) | Some(&REPLY))
}

/// Reads the kind and sender id without checking the MAC, so the receiver can find the
/// peer (and so the key) to verify it with. Checks length, type and the zero bytes.
pub fn peek(datagram: &[u8]) -> Result<(ProbeKind, SenderId), ProbeError> {
    if datagram.len() != PROBE_LEN {
        return Err(ProbeError::Length(datagram.len()));
    }
    let kind = match datagram[0] {
        REQUEST => ProbeKind::Request,
        REPLY => ProbeKind::Reply,
        other => return Err(ProbeError::Type(other)),
    };
    if datagram[1..4]
        .iter()
        .chain(&datagram[32..48])
        .any(|&b| b != 0)
    {
        return Err(ProbeError::Reserved);
    }
    let mut sender = [0u8; 8];
    sender.copy_from_slice(&datagram[4..12]);
    Ok((kind, sender))
}

/// Parses and authenticates a probe. Never panics, whatever the input.
pub fn decode(datagram: &[u8], key: &ProbeKey) -> Result<Probe, ProbeError> {
    let (kind, sender) = peek(datagram)?;
    let expected = key.mac(&datagram[..MAC_START]);
    if !bool::from(expected.ct_eq(&datagram[MAC_START..])) {
        return Err(ProbeError::Mac);
    }
    Ok(Probe {
        kind,
        sender,
        seq: be_u64(&datagram[12..20]),
        timestamp_us: be_u64(&datagram[20..28]),
        path_id: u32::from_be_bytes([datagram[28], datagram[29], datagram[30], datagram[31]]),
    })
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_be_bytes(b)
}

impl Probe {
    /// A request from `sender` (our own id).
    pub fn request(sender: SenderId, seq: u64, timestamp_us: u64, path_id: u32) -> Self {
        Probe {
            kind: ProbeKind::Request,
            sender,
            seq,
            timestamp_us,
            path_id,
        }
    }

    /// The reply to this request, sent by the node whose id is `own_id`: sequence number,
    /// timestamp and path id echoed.
    pub fn reply(&self, own_id: SenderId) -> Self {
        Probe {
            kind: ProbeKind::Reply,
            sender: own_id,
            ..*self
        }
    }

    /// The 64 bytes on the wire, MAC included.
    pub fn encode(&self, key: &ProbeKey) -> [u8; PROBE_LEN] {
        let mut out = [0u8; PROBE_LEN];
        out[0] = self.kind.byte();
        out[4..12].copy_from_slice(&self.sender);
        out[12..20].copy_from_slice(&self.seq.to_be_bytes());
        out[20..28].copy_from_slice(&self.timestamp_us.to_be_bytes());
        out[28..32].copy_from_slice(&self.path_id.to_be_bytes());
        let mac = key.mac(&out[..MAC_START]);
        out[MAC_START..].copy_from_slice(&mac);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ProbeKey {
        ProbeKey::from_shared_secret(&[b; 32])
    }

    #[test]
    fn round_trip_and_reply_is_same_size() {
        let k = key(7);
        let req = Probe::request(sender_id(&[1; 32]), 42, 1_000_000, 3);
        let bytes = req.encode(&k);
        assert_eq!(bytes[0], REQUEST);
        assert_eq!(decode(&bytes, &k), Ok(req));
        let rep = req.reply(sender_id(&[2; 32]));
        let rbytes = rep.encode(&k);
        assert_eq!(rbytes.len(), bytes.len());
        let got = decode(&rbytes, &k).unwrap();
        assert_eq!(got.kind, ProbeKind::Reply);
        assert_eq!((got.seq, got.timestamp_us, got.path_id), (42, 1_000_000, 3));
        assert_eq!(got.sender, sender_id(&[2; 32]));
    }

    #[test]
    fn wrong_key_and_any_flipped_bit_are_rejected() {
        let k = key(7);
        let bytes = Probe::request(sender_id(&[1; 32]), 1, 2, 3).encode(&k);
        assert_eq!(decode(&bytes, &key(8)), Err(ProbeError::Mac));
        for i in 0..PROBE_LEN * 8 {
            let mut b = bytes;
            b[i / 8] ^= 1 << (i % 8);
            assert!(decode(&b, &k).is_err(), "bit {i} flipped was accepted");
        }
    }

    #[test]
    fn sender_ids_differ_per_key_and_are_stable() {
        assert_eq!(sender_id(&[1; 32]), sender_id(&[1; 32]));
        assert_ne!(sender_id(&[1; 32]), sender_id(&[2; 32]));
    }

    #[test]
    fn never_collides_with_wireguard_types() {
        for t in 1..=4u8 {
            assert!(!is_probe(&[t, 0, 0, 0]));
        }
        assert!(is_probe(&[REQUEST]) && is_probe(&[REPLY]) && !is_probe(&[]));
    }
}
