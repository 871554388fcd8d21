//! Credentials for simulated nodes: a real mesh CA, the real address allocator and real signed
//! membership records, so the simulator spreads records of the size and cost (certificate
//! parsing, signature checks, prefix conflict checks) the daemon handles.

use std::collections::HashMap;

use ipnet::{Ipv4Net, Ipv6Net};
use mesh_config::{AddressPlan, Allocator, Role};
use pki::{CertificateAuthority, NodeKeyPair, NodeRole};
use time::{Duration, OffsetDateTime};

use super::SimError;
use crate::control::record::{SignedRecord, next_version, sign_record};
use crate::identity::node_identity;

/// How long the simulated certificates live: far beyond any simulated run.
const VALIDITY: Duration = Duration::days(365);

/// What a node needs to sign new versions of its own record.
#[derive(Debug)]
struct Credentials {
    key: NodeKeyPair,
    certificate: Vec<u8>,
    version: u64,
}

/// The CA holder's view of a simulated mesh: issues certificates and signs records for the
/// nodes it admits.
#[derive(Debug)]
pub struct Fleet {
    ca: CertificateAuthority,
    allocator: Allocator,
    now: OffsetDateTime,
    nodes: HashMap<String, Credentials>,
    cores: usize,
}

impl Fleet {
    /// A mesh whose CA and certificates are valid from `now`, with the default address plan
    /// (`10.0.0.0/8` in /16s, a ULA /48).
    pub fn new(now: OffsetDateTime) -> Result<Self, SimError> {
        let plan = AddressPlan::new(
            "10.0.0.0/8".parse::<Ipv4Net>().expect("literal"),
            16,
            "fd51:2e3c:9a00::/48".parse::<Ipv6Net>().expect("literal"),
        )?;
        Ok(Self {
            ca: CertificateAuthority::create("sim", now, VALIDITY)?,
            allocator: Allocator::new(plan)?,
            now,
            nodes: HashMap::new(),
            cores: 0,
        })
    }

    /// The CA certificate (DER) every node trusts.
    pub fn ca_der(&self) -> &[u8] {
        self.ca.cert_der()
    }

    /// Admits a core reachable at a documentation-range endpoint and returns its first record.
    pub fn admit_core(&mut self, name: &str) -> Result<SignedRecord, SimError> {
        let endpoint = documentation_endpoint(self.cores)?;
        let record = self.admit(name, Role::Core, None, vec![endpoint])?;
        self.cores += 1;
        Ok(record)
    }

    /// Admits a spoke of `core`. Spokes publish no endpoint: they sit behind NAT and dial out.
    pub fn admit_spoke(&mut self, name: &str, core: &str) -> Result<SignedRecord, SimError> {
        self.admit(name, Role::Spoke, Some(core), Vec::new())
    }

    /// A newer record of an admitted node with other endpoints (an ISP changed its address).
    pub fn re_sign(
        &mut self,
        name: &str,
        endpoints: Vec<String>,
    ) -> Result<SignedRecord, SimError> {
        let node = self
            .nodes
            .get_mut(name)
            .ok_or_else(|| SimError::UnknownNode(name.to_owned()))?;
        node.version += 1;
        Ok(sign_record(
            &node.key,
            &node.certificate,
            endpoints,
            node.version,
        )?)
    }

    fn admit(
        &mut self,
        name: &str,
        role: Role,
        core: Option<&str>,
        endpoints: Vec<String>,
    ) -> Result<SignedRecord, SimError> {
        let allocation = self.allocator.allocate_node(name, role, core, None)?;
        // The WireGuard key only has to be unique: membership refuses a duplicate.
        let identity = node_identity(&allocation, &[], &Default::default(), rand::random(), false);
        debug_assert_eq!(
            identity.role == NodeRole::Core,
            matches!(role, Role::Core),
            "the allocation keeps the role"
        );
        let key = NodeKeyPair::generate()?;
        let issued =
            self.ca
                .issue_node_certificate(&key.csr(name)?, &identity, self.now, VALIDITY)?;
        let version = next_version(None, self.now);
        let record = sign_record(&key, &issued.der, endpoints, version)?;
        self.nodes.insert(
            name.to_owned(),
            Credentials {
                key,
                certificate: issued.der,
                version,
            },
        );
        Ok(record)
    }
}

/// `203.0.113.N:51820`, then `198.51.100.N:51820`: never contacted, but the size of a real
/// endpoint.
fn documentation_endpoint(index: usize) -> Result<String, SimError> {
    let host = match index {
        0..=253 => format!("203.0.113.{}", index + 1),
        254..=507 => format!("198.51.100.{}", index - 253),
        _ => return Err(SimError::TooManyCores(index + 1)),
    };
    Ok(format!("{host}:51820"))
}
