//! The exit side of Internet exits: mesh traffic that arrives on the TUN and leaves through
//! one of the host's uplinks is masqueraded (source NAT to the uplink's address), so replies
//! come back to this node and through the tunnel to the sender.
//!
//! meshd keeps this in an nftables table of its own, `inet meshd` ([`super::nft`] says how
//! meshd's tables are made and replaced), with one nat chain on the postrouting hook and one
//! `iifname TUN oifname UPLINK masquerade` rule per uplink. `ruleset` builds the table (pure,
//! tested without root).
//!
//! Forwarding (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`) is switched on only
//! where it is off, and put back as it was when the NAT is removed.

mod ruleset;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::nft::{NftError, OwnedTable};

/// The name of meshd's nftables table (family `inet`: one table for IPv4 and IPv6).
pub const NAT_TABLE: &str = "meshd";
/// Its chain on the postrouting hook.
pub const NAT_CHAIN: &str = "postrouting";

/// The exit's table.
pub static NAT: OwnedTable = OwnedTable {
    name: NAT_TABLE,
    needed_by: "an exit",
    kernel_hint: "the kernel lacks nftables NAT: load nft_chain_nat and nft_masq, or build with \
                  CONFIG_NFT_NAT and CONFIG_NFT_MASQ",
};

const IPV4_FORWARDING: &str = "/proc/sys/net/ipv4/ip_forward";
const IPV6_FORWARDING: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

/// Which families the exit serves (the certificate approves each separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Families {
    pub ipv4: bool,
    pub ipv6: bool,
}

impl Families {
    pub const BOTH: Families = Families {
        ipv4: true,
        ipv6: true,
    };
}

/// What went wrong setting up or removing the exit's NAT; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ExitNatError {
    #[error(
        "no uplink to masquerade mesh traffic out of: name them in [exit] interfaces, or give \
         the host a default route"
    )]
    NoUplinks,

    #[error(
        "{name:?} is not an interface name meshd can match (1 to 15 bytes; no NUL, `*` or `\\`, \
         and no leading `@`, which nft reads as a wildcard, an escape or a set)"
    )]
    InterfaceName { name: String },

    #[error("the exit serves neither IPv4 nor IPv6")]
    NoFamily,

    /// Creating or deleting the table failed.
    #[error(transparent)]
    Nft(#[from] NftError),

    #[error("cannot read {}: {source}", path.display())]
    ReadSysctl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "cannot write {value} to {} ({source}); meshd needs root (or CAP_NET_ADMIN) and a \
         writable /proc/sys",
        path.display()
    )]
    WriteSysctl {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
}

impl ExitNatError {
    /// The kernel's errno, for nftables errors that have one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ExitNatError::Nft(error) => error.errno(),
            _ => None,
        }
    }
}

/// A forwarding switch meshd turned on, and what it was before.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChangedSysctl {
    path: PathBuf,
    previous: String,
}

/// The installed NAT: the table exists and forwarding is on until [`ExitNat::remove`] (or drop,
/// best effort).
#[derive(Debug)]
pub struct ExitNat {
    tun: String,
    uplinks: Vec<String>,
    changed: Vec<ChangedSysctl>,
    removed: bool,
}

impl ExitNat {
    /// Replaces any stale `inet meshd` table with one that masquerades what comes in on `tun`
    /// and goes out of one of `uplinks`, for `families`, and turns forwarding on for them.
    /// Blocking (runs nft twice, writes /proc).
    pub fn install(
        tun: &str,
        uplinks: &[String],
        families: Families,
    ) -> Result<Self, ExitNatError> {
        let batch = ruleset::install_batch(tun, uplinks, families)?;
        if NAT.install(&batch)? {
            tracing::warn!(
                table = NAT_TABLE,
                "replaced the nftables table inet {NAT_TABLE} an earlier run left behind"
            );
        }
        let mut nat = ExitNat {
            tun: tun.to_owned(),
            uplinks: uplinks.to_vec(),
            changed: Vec::new(),
            removed: false,
        };
        // On failure `nat` drops here, which deletes the table and restores what was changed.
        nat.enable_forwarding(families)?;
        tracing::info!(
            tun,
            uplinks = ?uplinks,
            ipv4 = families.ipv4,
            ipv6 = families.ipv6,
            "masquerading mesh traffic out of the uplinks (nftables table inet {NAT_TABLE})"
        );
        if families.ipv6 {
            warn_about_router_advertisements(uplinks);
        }
        Ok(nat)
    }

    /// Whether the table `inet meshd` exists in this network namespace.
    pub fn table_exists() -> Result<bool, ExitNatError> {
        Ok(NAT.exists()?)
    }

    /// The TUN and uplinks the rules name.
    pub fn interfaces(&self) -> (&str, &[String]) {
        (&self.tun, &self.uplinks)
    }

    /// Deletes the table and puts forwarding back as it was. Tries everything and returns the
    /// first failure.
    pub fn remove(mut self) -> Result<(), ExitNatError> {
        self.remove_inner()
    }

    fn remove_inner(&mut self) -> Result<(), ExitNatError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        // Succeeds also when the table is already gone.
        let mut first_error = NAT.remove().err().map(ExitNatError::from);
        for changed in self.changed.drain(..).rev() {
            match write_sysctl(&changed.path, &changed.previous) {
                Ok(()) => tracing::info!(
                    "restored {} to {}",
                    changed.path.display(),
                    changed.previous
                ),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => {
                tracing::info!("removed the nftables table inet {NAT_TABLE}");
                Ok(())
            }
        }
    }

    fn enable_forwarding(&mut self, families: Families) -> Result<(), ExitNatError> {
        let switches = [
            (families.ipv4, IPV4_FORWARDING),
            (families.ipv6, IPV6_FORWARDING),
        ];
        for (wanted, path) in switches {
            if !wanted {
                continue;
            }
            let path = Path::new(path);
            let current = match std::fs::read_to_string(path) {
                Ok(current) => current,
                // IPv6 switched off in the kernel: nothing to forward.
                Err(error) if error.kind() == ErrorKind::NotFound && path == IPV6_FORWARDING => {
                    tracing::warn!("IPv6 is disabled on this host; the exit serves IPv4 only");
                    continue;
                }
                Err(source) => {
                    return Err(ExitNatError::ReadSysctl {
                        path: path.to_owned(),
                        source,
                    });
                }
            };
            if let Some(previous) = needs_enabling(&current) {
                write_sysctl(path, "1")?;
                tracing::info!(
                    "set {} to 1 (was {previous}); it is restored at stop",
                    path.display()
                );
                self.changed.push(ChangedSysctl {
                    path: path.to_owned(),
                    previous,
                });
            }
        }
        Ok(())
    }
}

impl Drop for ExitNat {
    fn drop(&mut self) {
        if let Err(error) = self.remove_inner() {
            tracing::warn!(%error, "cannot undo the exit NAT");
        }
    }
}

/// `Some(previous value)` when a forwarding switch reading `current` must be turned on.
fn needs_enabling(current: &str) -> Option<String> {
    let current = current.trim();
    (current != "1").then(|| current.to_owned())
}

fn write_sysctl(path: &Path, value: &str) -> Result<(), ExitNatError> {
    std::fs::write(path, value).map_err(|source| ExitNatError::WriteSysctl {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// With IPv6 forwarding on, the kernel ignores router advertisements on interfaces whose
/// `accept_ra` is 1, so an uplink that learns its default route by SLAAC would lose it.
fn warn_about_router_advertisements(uplinks: &[String]) {
    for uplink in uplinks {
        let path = format!("/proc/sys/net/ipv6/conf/{uplink}/accept_ra");
        if std::fs::read_to_string(&path).is_ok_and(|value| value.trim() == "1") {
            tracing::warn!(
                %uplink,
                "IPv6 forwarding makes the kernel ignore router advertisements on {uplink}; \
                 set net.ipv6.conf.{uplink}.accept_ra=2 if its default route comes from them"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_is_changed_only_when_off() {
        assert_eq!(needs_enabling("1\n"), None);
        assert_eq!(needs_enabling("0\n"), Some("0".to_owned()));
        assert_eq!(needs_enabling("2"), Some("2".to_owned()));
    }

    #[test]
    fn errors_say_how_to_fix_them() {
        let error = ExitNatError::from(NftError::Refused {
            operation: "create",
            table: &NAT,
            detail: "Operation not permitted".into(),
            errno: Some(super::super::nft::EPERM),
        });
        assert_eq!(
            error.to_string(),
            "cannot create the nftables table inet meshd: Operation not permitted \
             (meshd needs root or CAP_NET_ADMIN)"
        );
        assert!(
            ExitNatError::NoUplinks
                .to_string()
                .contains("[exit] interfaces")
        );
        assert!(
            ExitNatError::from(NftError::Missing {
                operation: "create",
                table: &NAT,
            })
            .to_string()
            .contains("an exit needs it: install the Debian package nftables")
        );
    }
}
