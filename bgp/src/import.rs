//! Turns a received UPDATE into RIB operations: RFC 7606 treat-as-withdraw, the eBGP checks of
//! RFC 4271 §9.1.2 (AS loop, first AS is the neighbour), RFC 4456 loop prevention, and import
//! policy. Every announced prefix yields either a path or a refusal (which withdraws it too,
//! with the reason for the logs and counts), so a route the peer replaced with an unacceptable
//! one does not linger.
//!
//! A member's certificate-authorised prefixes are checked after this, by the speaker's
//! [`super::guard::ImportGuard`] (the agent's `routing::authority`).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::packet::{NextHop, Update};
use super::policy::{Policy, Rejection};
use super::rib::export::{LocalInfo, is_reflection_loop};
use super::rib::{Path, PeerId, PeerInfo};

/// What to do with one prefix of an UPDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RibOp {
    Announce(IpNet, Path),
    Withdraw(IpNet),
    /// Announced but refused: withdrawn from the RIB (the peer replaced whatever it sent
    /// before with this), and counted and logged as refused.
    Refuse(IpNet, Refusal),
}

/// Why an announcement was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// RFC 7606: a malformed attribute.
    Malformed,
    /// eBGP: the AS path does not start with the neighbour's AS (RFC 4271 §6.3, handled by
    /// treat-as-withdraw per RFC 7606 §7.2).
    FirstAsNotNeighbor,
    /// Our own AS is in the path.
    AsLoop,
    /// RFC 4456: the route was reflected back to us.
    ReflectionLoop,
    /// The import policy rejected it (this one prefix; the others of the UPDATE may pass).
    Policy(Rejection),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Imported {
    pub ops: Vec<RibOp>,
    /// Set when every announcement was refused for this reason (never [`Refusal::Policy`],
    /// which is decided per prefix).
    pub refused: Option<Refusal>,
    /// Announcements the import policy rejected.
    pub rejected_by_policy: usize,
}

fn next_hop_addr(nh: NextHop) -> IpAddr {
    match nh {
        NextHop::V4(a) => IpAddr::V4(a),
        // The global address: the kernel can route via a link-local one only with the
        // interface known, and tunnels and eBGP links here are numbered.
        NextHop::V6 { global, .. } => IpAddr::V6(global),
    }
}

pub fn import_update(
    local: &LocalInfo,
    peer_id: PeerId,
    peer: &PeerInfo,
    policy: &Policy,
    update: &Update,
) -> Imported {
    let mut out = Imported::default();
    for p in update.withdrawn_prefixes() {
        out.ops.push(RibOp::Withdraw(p));
    }
    let attrs = &update.attributes;
    let first_as = attrs.as_path.as_ref().and_then(|p| p.neighbor_as());
    out.refused = if update.treat_as_withdraw() {
        Some(Refusal::Malformed)
    } else if !peer.internal && first_as != Some(peer.asn) {
        Some(Refusal::FirstAsNotNeighbor)
    } else if !peer.internal
        && attrs
            .as_path
            .as_ref()
            .is_some_and(|p| p.contains(local.asn))
    {
        Some(Refusal::AsLoop)
    } else if peer.internal && is_reflection_loop(local, attrs) {
        Some(Refusal::ReflectionLoop)
    } else {
        None
    };
    if let Some(refusal) = out.refused {
        let nlri = update.nlri.iter().map(|p| IpNet::V4(*p));
        let mp = update.mp_reach.iter().flat_map(|r| r.nlri.iter().copied());
        out.ops
            .extend(nlri.chain(mp).map(|p| RibOp::Refuse(p, refusal)));
        return out;
    }
    let mut base = attrs.clone();
    if !peer.internal {
        // RFC 7606 §7.5: LOCAL_PREF from an external peer is discarded.
        base.local_pref = None;
    }
    // Routes of one UPDATE share one attribute set unless policy changes it. Prepending on
    // import repeats the neighbour's AS, so the path still starts with it.
    let shared = Arc::new(base);
    for (prefix, nh) in update.announced() {
        match policy.evaluate(&prefix, &shared, peer.asn) {
            Err(rejection) => {
                out.rejected_by_policy += 1;
                out.ops
                    .push(RibOp::Refuse(prefix, Refusal::Policy(rejection)));
            }
            Ok(a) => {
                let attrs = match a {
                    Cow::Borrowed(_) => shared.clone(),
                    Cow::Owned(changed) => Arc::new(changed),
                };
                out.ops.push(RibOp::Announce(
                    prefix,
                    Path {
                        peer: peer_id,
                        next_hop: next_hop_addr(nh),
                        attrs,
                    },
                ));
            }
        }
    }
    out
}
