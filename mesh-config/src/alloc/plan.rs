//! The address plan: which prefix number `N` means, as pure arithmetic. The allocator
//! decides the numbers; this module turns them into prefixes and addresses.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::schema::MeshSection;
use crate::validate::{MAX_NODE_PREFIX_LEN4, MAX_POOL6_PREFIX_LEN};

/// Length of a core's IPv6 prefix.
pub const CORE_PREFIX_LEN6: u8 = 64;
/// Length of a spoke's IPv6 prefix (and of a core's own part of its /64).
pub const NODE_PREFIX_LEN6: u8 = 80;
/// Length of a node's IPv6 client pool (and of the block holding its own address).
pub const CLIENT_POOL_LEN6: u8 = 96;

/// The mesh-wide pools and sizes every allocation is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPlan {
    pub pool4: Ipv4Net,
    pub node_prefix_len4: u8,
    pub pool6: Ipv6Net,
}

/// Why an address plan cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("pool4 {0} has host bits set (did you mean {net}?)", net = .0.trunc())]
    Pool4HostBits(Ipv4Net),
    #[error("pool6 {0} has host bits set (did you mean {net}?)", net = .0.trunc())]
    Pool6HostBits(Ipv6Net),
    #[error(
        "node prefix length /{len} must be longer than pool4's /{pool} and at most /{MAX_NODE_PREFIX_LEN4}"
    )]
    NodePrefixLen4 { len: u8, pool: u8 },
    #[error("pool6 {0} must be a /{MAX_POOL6_PREFIX_LEN} or shorter")]
    Pool6TooSmall(Ipv6Net),
}

impl AddressPlan {
    /// A plan after checking that the pools can be divided as the plan says.
    pub fn new(pool4: Ipv4Net, node_prefix_len4: u8, pool6: Ipv6Net) -> Result<Self, PlanError> {
        let plan = AddressPlan {
            pool4,
            node_prefix_len4,
            pool6,
        };
        plan.check()?;
        Ok(plan)
    }

    /// The plan described by a config's `[mesh]`, if it has a `pool6`.
    pub fn from_mesh(mesh: &MeshSection) -> Option<Result<Self, PlanError>> {
        mesh.pool6
            .map(|pool6| AddressPlan::new(mesh.pool4, mesh.node_prefix_len4, pool6))
    }

    pub fn check(&self) -> Result<(), PlanError> {
        if self.pool4.trunc() != self.pool4 {
            return Err(PlanError::Pool4HostBits(self.pool4));
        }
        if self.pool6.trunc() != self.pool6 {
            return Err(PlanError::Pool6HostBits(self.pool6));
        }
        let len = self.node_prefix_len4;
        if len <= self.pool4.prefix_len() || len > MAX_NODE_PREFIX_LEN4 {
            return Err(PlanError::NodePrefixLen4 {
                len,
                pool: self.pool4.prefix_len(),
            });
        }
        if self.pool6.prefix_len() > MAX_POOL6_PREFIX_LEN {
            return Err(PlanError::Pool6TooSmall(self.pool6));
        }
        Ok(())
    }

    /// How many node prefixes pool4 holds, including the reserved number 0.
    pub(crate) fn node_prefix_count4(&self) -> u64 {
        1u64 << (self.node_prefix_len4 - self.pool4.prefix_len())
    }

    /// How many /64s pool6 holds, including the reserved number 0; capped to `u32`
    /// indexes because no mesh gets near four billion cores.
    pub(crate) fn core_prefix_count6(&self) -> u64 {
        let bits = u32::from(CORE_PREFIX_LEN6 - self.pool6.prefix_len());
        1u64.checked_shl(bits)
            .filter(|n| *n <= 1 << 32)
            .unwrap_or(1 << 32)
    }

    /// The `index`-th node prefix of pool4.
    pub(crate) fn node_prefix4(&self, index: u32) -> Ipv4Net {
        let shift = 32 - u32::from(self.node_prefix_len4);
        let base = u32::from(self.pool4.network());
        let network = base + (index << shift);
        Ipv4Net::new(Ipv4Addr::from(network), self.node_prefix_len4)
            .expect("length checked by plan")
    }

    /// The `index`-th /64 of pool6.
    pub(crate) fn core_prefix6(&self, index: u32) -> Ipv6Net {
        nth_subnet6(self.pool6, CORE_PREFIX_LEN6, index)
    }
}

/// The `index`-th subnet of length `len` inside `parent` (the caller keeps it in range).
pub(crate) fn nth_subnet6(parent: Ipv6Net, len: u8, index: u32) -> Ipv6Net {
    let network = u128::from(parent.network()) + (u128::from(index) << (128 - u32::from(len)));
    Ipv6Net::new(Ipv6Addr::from(network), len).expect("length is at most 128")
}

/// Both halves of a node's IPv4 prefix: clients first, the node's applications second.
pub(crate) fn halves4(prefix: Ipv4Net) -> (Ipv4Net, Ipv4Net) {
    let len = prefix.prefix_len() + 1;
    let mut halves = prefix.subnets(len).expect("node prefixes are at most /30");
    let first = halves.next().expect("two halves");
    let second = halves.next().expect("two halves");
    (first, second)
}

/// The `offset`-th address of `net`.
pub(crate) fn nth_addr4(net: Ipv4Net, offset: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + offset)
}

/// The `offset`-th address of `net`.
pub(crate) fn nth_addr6(net: Ipv6Net, offset: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()) + u128::from(offset))
}

/// A random RFC 4193 unique local /48: `fd` followed by the 40-bit global ID the
/// caller draws (keeping this crate free of randomness and I/O).
pub fn random_ula48(rng_bytes: [u8; 5]) -> Ipv6Net {
    let mut octets = [0u8; 16];
    octets[0] = 0xfd;
    octets[1..6].copy_from_slice(&rng_bytes);
    Ipv6Net::new(Ipv6Addr::from(octets), 48).expect("48 is a valid IPv6 prefix length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> AddressPlan {
        AddressPlan::new(
            "10.0.0.0/8".parse().unwrap(),
            16,
            "fd12:3456:789a::/48".parse().unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn arithmetic_follows_the_plan() {
        let p = plan();
        assert_eq!(p.node_prefix4(1).to_string(), "10.1.0.0/16");
        assert_eq!(p.node_prefix4(255).to_string(), "10.255.0.0/16");
        assert_eq!(p.node_prefix_count4(), 256);
        assert_eq!(p.core_prefix_count6(), 65536);
        assert_eq!(p.core_prefix6(1).to_string(), "fd12:3456:789a:1::/64");
        let (clients, apps) = halves4(p.node_prefix4(2));
        assert_eq!(
            (clients.to_string(), apps.to_string()),
            ("10.2.0.0/17".into(), "10.2.128.0/17".into())
        );
        let core = p.core_prefix6(1);
        assert_eq!(
            nth_subnet6(core, 80, 3).to_string(),
            "fd12:3456:789a:1:3::/80"
        );
        assert_eq!(
            nth_subnet6(nth_subnet6(core, 80, 3), 96, 1).to_string(),
            "fd12:3456:789a:1:3:1::/96"
        );
        assert_eq!(nth_addr4(clients, 1).to_string(), "10.2.0.1");
        assert_eq!(nth_addr6(core, 1).to_string(), "fd12:3456:789a:1::1");
    }

    #[test]
    fn large_pool6_is_capped() {
        let p = AddressPlan::new(
            "10.0.0.0/8".parse().unwrap(),
            16,
            "2001::/16".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(p.core_prefix_count6(), 1 << 32);
        let p =
            AddressPlan::new("10.0.0.0/8".parse().unwrap(), 16, "::/0".parse().unwrap()).unwrap();
        assert_eq!(p.core_prefix_count6(), 1 << 32);
    }

    #[test]
    fn invalid_plans() {
        let v4 = |s: &str| s.parse::<Ipv4Net>().unwrap();
        let v6 = |s: &str| s.parse::<Ipv6Net>().unwrap();
        let ula = v6("fd00::/48");
        assert_eq!(
            AddressPlan::new(v4("10.0.0.1/8"), 16, ula),
            Err(PlanError::Pool4HostBits(v4("10.0.0.1/8")))
        );
        assert!(matches!(
            AddressPlan::new(v4("10.0.0.0/8"), 8, ula),
            Err(PlanError::NodePrefixLen4 { .. })
        ));
        assert!(matches!(
            AddressPlan::new(v4("10.0.0.0/8"), 31, ula),
            Err(PlanError::NodePrefixLen4 { .. })
        ));
        assert!(matches!(
            AddressPlan::new(v4("10.0.0.0/8"), 16, v6("fd00::/56")),
            Err(PlanError::Pool6TooSmall(_))
        ));
        assert!(matches!(
            AddressPlan::new(v4("10.0.0.0/8"), 16, v6("fd00::1/48")),
            Err(PlanError::Pool6HostBits(_))
        ));
        assert_eq!(
            PlanError::Pool4HostBits(v4("10.0.0.1/8")).to_string(),
            "pool4 10.0.0.1/8 has host bits set (did you mean 10.0.0.0/8?)"
        );
    }

    #[test]
    fn ula() {
        let net = random_ula48([0x12, 0x34, 0x56, 0x78, 0x9a]);
        assert_eq!(net.to_string(), "fd12:3456:789a::/48");
        assert!("fc00::/7".parse::<Ipv6Net>().unwrap().contains(&net));
    }
}
