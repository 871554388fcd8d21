//! The exit side of Internet exits: mesh traffic that arrives on the TUN and leaves through
//! one of the host's uplinks is masqueraded (source NAT to the uplink's address), so replies
//! come back to this node and through the tunnel to the sender.
//!
//! meshd keeps this in an nftables table of its own, `inet meshd`, with one nat chain on the
//! postrouting hook and one `iifname TUN oifname UPLINK masquerade` rule per uplink. Nothing
//! else on the host's ruleset is read or changed: removing the table removes all of it, and a
//! table left by a crashed run is found by its name and replaced. The rules go to the kernel
//! over nfnetlink (the `rustables` crate; see docs/architecture.md), not through `nft`.
//!
//! Forwarding (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`) is switched on only
//! where it is off, and put back as it was when the NAT is removed.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use rustables::error::QueryError;
use rustables::expr::{Cmp, CmpOp, Meta, MetaType};
use rustables::{Batch, Chain, ChainPolicy, ChainType, Hook, HookClass, MsgType, ProtocolFamily};
use rustables::{Rule, Table};

/// The name of meshd's nftables table (family `inet`: one table for IPv4 and IPv6).
pub const NAT_TABLE: &str = "meshd";
/// Its chain on the postrouting hook.
pub const NAT_CHAIN: &str = "postrouting";
/// `NF_IP_PRI_NAT_SRC`, the priority `nft` calls `srcnat`.
const SRCNAT_PRIORITY: i32 = 100;
/// `meta nfproto` values.
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
/// Interface names are at most 15 bytes (`IFNAMSIZ` less the terminating NUL).
const MAX_INTERFACE_NAME: usize = 15;

const ENOENT: i32 = 2;
const EPERM: i32 = 1;
const EOPNOTSUPP: i32 = 95;

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

    #[error("{name:?} is not an interface name (1 to 15 bytes, no NUL)")]
    InterfaceName { name: String },

    #[error("the exit serves neither IPv4 nor IPv6")]
    NoFamily,

    /// The kernel refused an nftables request, or the netlink socket failed.
    #[error("cannot {operation} the nftables table inet {NAT_TABLE}: {detail}{}", hint(*errno))]
    Nftables {
        operation: &'static str,
        detail: String,
        /// The kernel's errno, when it gave one.
        errno: Option<i32>,
    },

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

/// What to do about an nftables errno, in words.
fn hint(errno: Option<i32>) -> &'static str {
    match errno {
        Some(EPERM) => " (meshd needs root or CAP_NET_ADMIN)",
        Some(ENOENT | EOPNOTSUPP) => {
            " (the kernel lacks nftables NAT: load nft_chain_nat and nft_masq, or build with \
             CONFIG_NFT_NAT and CONFIG_NFT_MASQ)"
        }
        _ => "",
    }
}

impl ExitNatError {
    fn nftables(operation: &'static str, error: QueryError) -> Self {
        let errno = match &error {
            // The kernel sends a negative errno; rustables hands it on positive in some
            // paths, so take the magnitude.
            QueryError::NetlinkError(message) => Some(message.error.wrapping_abs()),
            _ => None,
        };
        let detail = match errno {
            Some(errno) => std::io::Error::from_raw_os_error(errno).to_string(),
            None => error.to_string(),
        };
        ExitNatError::Nftables {
            operation,
            detail,
            errno,
        }
    }

    fn builder(operation: &'static str, error: rustables::error::BuilderError) -> Self {
        ExitNatError::Nftables {
            operation,
            detail: error.to_string(),
            errno: None,
        }
    }

    /// The kernel's errno, for nftables errors that have one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ExitNatError::Nftables { errno, .. } => *errno,
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
    /// Blocking (a few netlink round trips and /proc writes).
    pub fn install(
        tun: &str,
        uplinks: &[String],
        families: Families,
    ) -> Result<Self, ExitNatError> {
        let batch = nat_batch(tun, uplinks, families)?;
        match delete_table() {
            Ok(()) => tracing::warn!(
                table = NAT_TABLE,
                "removed the nftables table inet {NAT_TABLE} an earlier run left behind"
            ),
            Err(error) if error.errno() == Some(ENOENT) => {}
            Err(error) => return Err(error),
        }
        batch
            .send()
            .map_err(|e| ExitNatError::nftables("create", e))?;
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

    /// Whether a table named `meshd` exists in this network namespace (of any family:
    /// rustables does not expose the family of a listed table).
    pub fn table_exists() -> Result<bool, ExitNatError> {
        let tables = rustables::list_tables().map_err(|e| ExitNatError::nftables("list", e))?;
        Ok(tables
            .iter()
            .any(|table| table.get_name().map(String::as_str) == Some(NAT_TABLE)))
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
        let mut first_error = match delete_table() {
            Err(error) if error.errno() != Some(ENOENT) => Some(error),
            _ => None,
        };
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

fn table() -> Table {
    Table::new(ProtocolFamily::Inet).with_name(NAT_TABLE)
}

fn delete_table() -> Result<(), ExitNatError> {
    let mut batch = Batch::new();
    batch.add(&table(), MsgType::Del);
    batch
        .send()
        .map_err(|e| ExitNatError::nftables("delete", e))
}

fn check_interface_name(name: &str) -> Result<(), ExitNatError> {
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME || name.contains('\0') {
        return Err(ExitNatError::InterfaceName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// The table, its chain and the rules, as one transaction. Pure: builds messages only.
fn nat_batch(tun: &str, uplinks: &[String], families: Families) -> Result<Batch, ExitNatError> {
    if uplinks.is_empty() {
        return Err(ExitNatError::NoUplinks);
    }
    let family_match = match (families.ipv4, families.ipv6) {
        (true, true) => None,
        (true, false) => Some(NFPROTO_IPV4),
        (false, true) => Some(NFPROTO_IPV6),
        (false, false) => return Err(ExitNatError::NoFamily),
    };
    check_interface_name(tun)?;
    for uplink in uplinks {
        check_interface_name(uplink)?;
    }
    let table = table();
    let mut chain = Chain::new(&table).with_name(NAT_CHAIN);
    chain.set_hook(Hook::new(HookClass::PostRouting, SRCNAT_PRIORITY));
    chain.set_type(ChainType::Nat);
    chain.set_policy(ChainPolicy::Accept);

    let mut batch = Batch::new();
    batch.add(&table, MsgType::Add);
    batch.add(&chain, MsgType::Add);
    for uplink in uplinks {
        let mut rule = Rule::new(&chain).map_err(|e| ExitNatError::builder("create", e))?;
        if let Some(nfproto) = family_match {
            rule.add_expr(Meta::new(MetaType::NfProto));
            rule.add_expr(Cmp::new(CmpOp::Eq, [nfproto]));
        }
        let rule = rule
            .iiface(tun)
            .and_then(|rule| rule.oiface(uplink))
            .map_err(|e| ExitNatError::builder("create", e))?
            .masquerade();
        batch.add(&rule, MsgType::Add);
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_nat_needs_an_uplink_a_family_and_valid_names() {
        assert!(matches!(
            nat_batch("mesh0", &[], Families::BOTH),
            Err(ExitNatError::NoUplinks)
        ));
        let none = Families {
            ipv4: false,
            ipv6: false,
        };
        assert!(matches!(
            nat_batch("mesh0", &names(&["eth0"]), none),
            Err(ExitNatError::NoFamily)
        ));
        for bad in ["", "sixteen-bytes-xx", "a\0b"] {
            assert!(matches!(
                nat_batch("mesh0", &names(&[bad]), Families::BOTH),
                Err(ExitNatError::InterfaceName { .. })
            ));
            assert!(matches!(
                nat_batch(bad, &names(&["eth0"]), Families::BOTH),
                Err(ExitNatError::InterfaceName { .. })
            ));
        }
        assert!(nat_batch("mesh0", &names(&["eth0", "wwan0"]), Families::BOTH).is_ok());
    }

    #[test]
    fn one_family_only_adds_a_protocol_match() {
        let v4 = Families {
            ipv4: true,
            ipv6: false,
        };
        let both = nat_batch("mesh0", &names(&["eth0"]), Families::BOTH)
            .unwrap()
            .finalize();
        let only_v4 = nat_batch("mesh0", &names(&["eth0"]), v4)
            .unwrap()
            .finalize();
        assert!(only_v4.len() > both.len());
    }

    #[test]
    fn forwarding_is_changed_only_when_off() {
        assert_eq!(needs_enabling("1\n"), None);
        assert_eq!(needs_enabling("0\n"), Some("0".to_owned()));
        assert_eq!(needs_enabling("2"), Some("2".to_owned()));
    }

    #[test]
    fn errors_say_how_to_fix_them() {
        let error = ExitNatError::Nftables {
            operation: "create",
            detail: "Operation not permitted".into(),
            errno: Some(EPERM),
        };
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
    }
}
