//! What the CA decided about a node: its name, role, allocated prefixes, approved LANs and
//! WireGuard key. This is what the meshd certificate extension carries.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Longest node name: one DNS label.
pub const MAX_NAME_LEN: usize = 63;

/// The part a node plays in the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Has a public endpoint and meshes with every other core.
    Core,
    /// Connects to exactly one core.
    Spoke,
}

impl NodeRole {
    /// The lowercase name used in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Core => "core",
            NodeRole::Spoke => "spoke",
        }
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeRole {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "core" => Ok(NodeRole::Core),
            "spoke" => Ok(NodeRole::Spoke),
            other => Err(IdentityError::UnknownRole(other.to_owned())),
        }
    }
}

/// Everything the CA binds into a node certificate.
///
/// The CA fills this in from its own records (allocation, invitation); it never copies it from
/// what a joining node asks for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The node name, a DNS label (`[a-z0-9-]`, 1..=63, no leading or trailing `-`).
    pub name: String,
    /// Core or spoke.
    pub role: NodeRole,
    /// For a spoke: the core it hangs off. Always `None` for a core.
    pub core: Option<String>,
    /// Prefixes allocated by the CA: the IPv4 /16, the IPv6 /64 or /80, and the /96 client pool.
    pub prefixes: Vec<IpNet>,
    /// Extra LAN prefixes approved for this node at invitation time.
    pub lan_prefixes: Vec<IpNet>,
    /// The node's WireGuard (Curve25519) public key.
    #[serde(with = "crate::encoding::base64_key")]
    pub wireguard_key: [u8; 32],
    /// What the CA approved beyond the node's own prefixes.
    #[serde(default, skip_serializing_if = "Approvals::is_empty")]
    pub approvals: Approvals,
    /// A spoke that runs no meshd (a RouterOS, wg-quick + BIRD or FRR router): its WireGuard
    /// key is the router's own, and its core stands in for it in the control plane (signs its
    /// membership record) and runs its BGP session. Only a spoke can be foreign.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign: bool,
}

/// What a node may announce besides its allocation and its LANs: the default routes, as an
/// Internet exit, and prefixes it shares with other nodes (anycast).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approvals {
    /// May announce 0.0.0.0/0: traffic from the mesh to the IPv4 Internet leaves through it.
    #[serde(default)]
    pub exit_ipv4: bool,
    /// May announce ::/0.
    #[serde(default)]
    pub exit_ipv6: bool,
    /// Prefixes approved for this node and others alike (a service address several nodes
    /// serve); each is announced by all of them, and the nearest one is used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anycast: Vec<IpNet>,
}

impl Approvals {
    pub fn is_empty(&self) -> bool {
        *self == Approvals::default()
    }

    /// Whether the node is an approved exit for the family of `prefix`.
    pub fn exit_for(&self, prefix: &IpNet) -> bool {
        match prefix {
            IpNet::V4(_) => self.exit_ipv4,
            IpNet::V6(_) => self.exit_ipv6,
        }
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("core", &self.core)
            .field("prefixes", &self.prefixes)
            .field("lan_prefixes", &self.lan_prefixes)
            .field("approvals", &self.approvals)
            .field("foreign", &self.foreign)
            .field(
                "wireguard_key",
                &crate::encoding::base64_key::encode(&self.wireguard_key),
            )
            .finish()
    }
}

/// Why a [`NodeIdentity`] (or a name, role or prefix destined for one) is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("node name {name:?} is invalid: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("unknown role {0:?} (expected \"core\" or \"spoke\")")]
    UnknownRole(String),
    #[error("spoke {0:?} has no core: a spoke must name the core it connects to")]
    SpokeWithoutCore(String),
    #[error("core {name:?} names a core ({core:?}): only spokes hang off a core")]
    CoreWithCore { name: String, core: String },
    #[error("spoke {0:?} names itself as its core")]
    SpokeIsOwnCore(String),
    #[error("{field} prefix {prefix} has host bits set (did you mean {network}?)")]
    HostBitsSet {
        field: &'static str,
        prefix: IpNet,
        network: IpNet,
    },
    #[error("{field} lists prefix {0} twice", field = .1)]
    DuplicatePrefix(IpNet, &'static str),
    #[error("anycast prefix {0} is a default route; approve an Internet exit instead")]
    AnycastDefault(IpNet),
    #[error("core {0:?} is marked foreign: only a spoke can be a router its core stands in for")]
    ForeignCore(String),
}

/// Checks that `name` is a node name: one lowercase DNS label.
///
/// Names end up as certificate subjects, DNS SANs and BGP descriptions, so they are kept to the
/// most portable character set.
pub fn validate_node_name(name: &str) -> Result<(), IdentityError> {
    let fail = |reason| {
        Err(IdentityError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return fail("it is longer than 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return fail("only lowercase letters a-z, digits and '-' are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return fail("it must not start or end with '-'");
    }
    Ok(())
}

/// Checks the role/core pairing: a spoke names a valid core other than itself, a core names none.
pub fn validate_role(name: &str, role: NodeRole, core: Option<&str>) -> Result<(), IdentityError> {
    match (role, core) {
        (NodeRole::Core, None) => Ok(()),
        (NodeRole::Core, Some(core)) => Err(IdentityError::CoreWithCore {
            name: name.to_owned(),
            core: core.to_owned(),
        }),
        (NodeRole::Spoke, None) => Err(IdentityError::SpokeWithoutCore(name.to_owned())),
        (NodeRole::Spoke, Some(core)) if core == name => {
            Err(IdentityError::SpokeIsOwnCore(name.to_owned()))
        }
        (NodeRole::Spoke, Some(core)) => validate_node_name(core),
    }
}

/// Checks that every prefix is a network address (no host bits) and appears once.
pub fn validate_prefixes(field: &'static str, prefixes: &[IpNet]) -> Result<(), IdentityError> {
    for (i, prefix) in prefixes.iter().enumerate() {
        let network = prefix.trunc();
        if network != *prefix {
            return Err(IdentityError::HostBitsSet {
                field,
                prefix: *prefix,
                network,
            });
        }
        if prefixes[..i].contains(prefix) {
            return Err(IdentityError::DuplicatePrefix(*prefix, field));
        }
    }
    Ok(())
}

impl NodeIdentity {
    /// Checks every field; the CA calls this before issuing and the decoder after parsing.
    pub fn validate(&self) -> Result<(), IdentityError> {
        validate_node_name(&self.name)?;
        validate_role(&self.name, self.role, self.core.as_deref())?;
        validate_prefixes("allocated", &self.prefixes)?;
        validate_prefixes("LAN", &self.lan_prefixes)?;
        validate_prefixes("anycast", &self.approvals.anycast)?;
        if let Some(default) = self.approvals.anycast.iter().find(|p| p.prefix_len() == 0) {
            return Err(IdentityError::AnycastDefault(*default));
        }
        if self.foreign && self.role != NodeRole::Spoke {
            return Err(IdentityError::ForeignCore(self.name.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_label_rules() {
        for good in ["a", "alpha", "node-1", "0", &"x".repeat(63)] {
            assert_eq!(validate_node_name(good), Ok(()), "{good}");
        }
        for bad in ["", "-a", "a-", "Alpha", "a.b", "a b", "é", &"x".repeat(64)] {
            assert!(validate_node_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn role_and_core_must_agree() {
        assert!(validate_role("a", NodeRole::Core, None).is_ok());
        assert!(validate_role("a", NodeRole::Spoke, Some("b")).is_ok());
        assert!(matches!(
            validate_role("a", NodeRole::Core, Some("b")),
            Err(IdentityError::CoreWithCore { .. })
        ));
        assert!(matches!(
            validate_role("a", NodeRole::Spoke, None),
            Err(IdentityError::SpokeWithoutCore(_))
        ));
        assert!(matches!(
            validate_role("a", NodeRole::Spoke, Some("a")),
            Err(IdentityError::SpokeIsOwnCore(_))
        ));
        assert!(validate_role("a", NodeRole::Spoke, Some("B")).is_err());
    }

    #[test]
    fn prefixes_must_be_networks_and_unique() {
        let ok: Vec<IpNet> = vec!["10.1.0.0/16".parse().unwrap(), "fd00::/64".parse().unwrap()];
        assert!(validate_prefixes("allocated", &ok).is_ok());
        let host: Vec<IpNet> = vec!["192.168.42.1/24".parse().unwrap()];
        let err = validate_prefixes("LAN", &host).unwrap_err();
        assert_eq!(
            err.to_string(),
            "LAN prefix 192.168.42.1/24 has host bits set (did you mean 192.168.42.0/24?)"
        );
        let dup: Vec<IpNet> = vec![ok[0], ok[0]];
        assert!(matches!(
            validate_prefixes("LAN", &dup),
            Err(IdentityError::DuplicatePrefix(..))
        ));
    }

    #[test]
    fn identity_serializes_with_a_wg_style_key() {
        let id = NodeIdentity {
            name: "alpha".into(),
            role: NodeRole::Core,
            core: None,
            prefixes: vec!["10.1.0.0/16".parse().unwrap()],
            lan_prefixes: vec![],
            wireguard_key: [0xff; 32],
            approvals: Default::default(),
            foreign: false,
        };
        let json = serde_json::to_string(&id).unwrap();
        assert!(
            json.contains("\"wireguard_key\":\"//////////////////////////////////////////8=\""),
            "{json}"
        );
        assert!(json.contains("\"role\":\"core\""), "{json}");
        assert_eq!(serde_json::from_str::<NodeIdentity>(&json).unwrap(), id);
        let short = json.replace("//////////////////////////////////////////8=", "AAAA");
        let err = serde_json::from_str::<NodeIdentity>(&short).unwrap_err();
        assert!(
            err.to_string().contains("key must be 32 bytes, found 3"),
            "{err}"
        );
        assert!(format!("{id:?}").contains("//8="));
    }

    #[test]
    fn role_parses_and_displays() {
        assert_eq!("core".parse::<NodeRole>().unwrap(), NodeRole::Core);
        assert_eq!(NodeRole::Spoke.to_string(), "spoke");
        assert!("Core".parse::<NodeRole>().is_err());
    }
}
