//! The kernel-side handshake guard: a per-source limit on WireGuard handshake initiations to
//! meshd's listen port, in an nftables table of meshd's own, `inet meshd_guard`, so that a
//! flood from one address is dropped before meshd's UDP socket (and its members' traffic on
//! it) sees it. meshd's userspace limiter (tunnel crate) stays the exact one; the kernel only
//! takes the bulk of a flood away.
//!
//! One chain on prerouting at priority raw (-300): before conntrack (-200), so a flood costs no
//! conntrack lookup or entry, and before routing. A rule per family matches UDP to the port,
//! UDP length 8 + 148 and a first payload word of `01 00 00 00` (a handshake initiation; data
//! (type 4), responses (2) and cookie replies (3) never match), addressed to this host
//! (`fib daddr type local`, so a WireGuard server behind this router is not limited), and
//! keeps a meter per source: IPv4 addresses, IPv6 by /64. A source over [`PER_SECOND`] with a
//! burst of [`BURST`] has its initiations dropped and counted in the named counter
//! [`DROPPED_COUNTER`].
//!
//! The meters are bounded: nft's default meter size, 65535 sources each, and a source idle
//! for [`TIMEOUT_SECONDS`] is forgotten. A full meter lets new sources through to the userspace
//! limiter (nft_dynset does not match when it cannot add), so a spoofed-source flood falls
//! back to what meshd does without the guard.

mod ruleset;

use super::nft::{NftError, OwnedTable};

/// The guard's table (family `inet`).
pub const GUARD_TABLE: &str = "meshd_guard";
/// Its chain, on the prerouting hook.
pub const GUARD_CHAIN: &str = "handshakes";
/// The named counter of initiations dropped.
pub const DROPPED_COUNTER: &str = "initiations_dropped";

/// Initiations per second one source (IPv4 address, IPv6 /64) may send before the kernel
/// drops them, and the burst above that. Twice kernel WireGuard's and meshd's userspace limit
/// (20 per second, burst 5): the userspace limiter stays the one a peer meets, the kernel
/// only cuts what is far beyond it. What passes, 40 a second, costs meshd nothing.
pub const PER_SECOND: u32 = 40;
pub const BURST: u32 = 10;
/// Seconds a source stays in a meter after its last initiation.
pub const TIMEOUT_SECONDS: u32 = 10;

pub static GUARD: OwnedTable = OwnedTable {
    name: GUARD_TABLE,
    needed_by: "the kernel handshake guard",
    kernel_hint: "the kernel lacks an nftables feature the guard uses: load nft_limit and \
                  nft_fib_inet, or build with CONFIG_NFT_LIMIT and CONFIG_NFT_FIB_INET",
};

/// The installed guard: the table exists until [`HandshakeGuard::remove`] (or drop, best
/// effort).
#[derive(Debug)]
pub struct HandshakeGuard {
    port: u16,
    removed: bool,
}

impl HandshakeGuard {
    /// Replaces any stale `inet meshd_guard` table with one guarding UDP `port`. Blocking
    /// (runs nft twice).
    pub fn install(port: u16) -> Result<Self, NftError> {
        if GUARD.install(&ruleset::install_batch(port))? {
            tracing::warn!(
                table = GUARD_TABLE,
                "replaced the nftables table inet {GUARD_TABLE} an earlier run left behind"
            );
        }
        tracing::info!(
            port,
            per_second = PER_SECOND,
            burst = BURST,
            "kernel handshake guard on: handshake initiations over {PER_SECOND}/s per source \
             are dropped before meshd (nftables table inet {GUARD_TABLE})"
        );
        Ok(HandshakeGuard {
            port,
            removed: false,
        })
    }

    /// The UDP port it guards.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Deletes the table.
    pub fn remove(mut self) -> Result<(), NftError> {
        self.remove_inner()
    }

    fn remove_inner(&mut self) -> Result<(), NftError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        GUARD.remove()?;
        tracing::info!("removed the nftables table inet {GUARD_TABLE}");
        Ok(())
    }
}

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        if let Err(error) = self.remove_inner() {
            tracing::warn!(%error, "cannot remove the kernel handshake guard");
        }
    }
}
