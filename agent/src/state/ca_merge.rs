//! Bringing a CA registry restored from a backup up to date with what the mesh knows, so that
//! nothing the lost holder handed out after the backup is handed out again (docs/operations.md,
//! "Backing up and moving the CA"). Pure: the caller reads the membership, the revocation list
//! and the node's own clients and writes the result.
//!
//! The sources, all of them signed by the CA or checked against it by the caller:
//! - the newest revocation list: a live node of the registry whose newest recorded certificate
//!   it lists was revoked since the backup;
//! - the members' certificates (every node holds every member's record): each carries the
//!   member's name, role and prefixes, from which the allocator learns a node admitted since
//!   the backup (`Allocator::adopt_node`), and its serial, which the registry must know to
//!   renew it;
//! - the restoring node's own clients, which it numbered itself while it did not hold the CA.
//!
//! What no source knows: a node admitted *and* revoked since the backup (revoked nodes leave
//! the membership). Every revoked serial the registry has no record of may be such a node, so
//! that many numbers of every kind are skipped: a few prefixes wasted, none handed out twice.

use ipnet::IpNet;
use mesh_config::alloc::{AdoptError, Adoption, ClientAllocation, KnownNode};
use mesh_config::{Allocator, Role};
use pki::{NodeCertificate, NodeRole, SerialNumber};

use super::{CaDatabase, CertificateRecord};

/// What the merge changed, for the person running `meshd ca restore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// Nodes admitted since the backup, now in the registry.
    pub added: Vec<String>,
    /// Certificates the registry did not know (of added nodes, and renewals since the backup).
    pub certificates: usize,
    /// Nodes revoked since the backup, revoked in the registry too.
    pub revoked: Vec<String>,
    /// Revoked certificates the registry has no record of, and the node numbers skipped for
    /// them.
    pub unknown_revoked: usize,
    pub skipped_numbers: u32,
    /// Clients of the restoring node recorded in the allocator.
    pub clients: usize,
}

/// A member certificate that contradicts the registry: the restore is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the certificate of member {name:?} does not fit the backup's registry: {reason}; is the \
     backup from this mesh's CA, and the newest one?"
)]
pub struct MergeConflict {
    pub name: String,
    pub reason: String,
}

/// Merges into `db` what the newest revocation list (`revoked`), the members' certificates
/// (`members`, the restoring node's own included) and the restoring node `own`'s clients say.
/// On error `db` may be half-changed: the caller drops it.
pub fn merge_known(
    db: &mut CaDatabase,
    revoked: &[SerialNumber],
    members: &[NodeCertificate],
    own: &str,
    own_clients: &[(String, ClientAllocation)],
) -> Result<MergeReport, MergeConflict> {
    let mut report = MergeReport::default();
    let is_revoked = |serial: &SerialNumber| revoked.contains(serial);

    // 1. Revocations since the backup. `meshd revoke` lists every certificate of the node,
    // so the newest one recorded tells; an older incarnation of a freed name does not.
    let live: Vec<String> = db.allocator.nodes().map(|n| n.name.clone()).collect();
    for name in live {
        let newest = db.certificates.iter().rev().find(|c| c.name == name);
        if newest.is_some_and(|c| is_revoked(&c.serial)) {
            db.allocator.revoke(&name).expect("a live node");
            db.freed_names.retain(|n| *n != name);
            report.revoked.push(name);
        }
    }

    // 2. The members, cores first (a spoke's core must be known before the spoke).
    let mut current: Vec<&NodeCertificate> =
        members.iter().filter(|m| !is_revoked(&m.serial)).collect();
    current.sort_by_key(|m| (m.identity.role != NodeRole::Core, m.identity.name.clone()));
    for member in current {
        let identity = &member.identity;
        let conflict = |reason: String| MergeConflict {
            name: identity.name.clone(),
            reason,
        };
        let known = known_node(member).map_err(conflict)?;
        let adoption = db
            .allocator
            .adopt_node(known)
            .map_err(|AdoptError::Node { problem, .. }| conflict(problem))?;
        let serial_known = db.certificates.iter().any(|c| c.serial == member.serial);
        if adoption == Adoption::Added {
            report.added.push(identity.name.clone());
            db.freed_names.retain(|n| *n != identity.name);
            // Its invitation was redeemed: it is no longer open.
            if let Some(invitation) = db
                .invitations
                .iter_mut()
                .rev()
                .find(|i| i.name == identity.name)
            {
                invitation.used = true;
            }
        }
        if !serial_known {
            // Issued after the backup: what it approves is newer than the registry's copy.
            db.lan_prefixes
                .insert(identity.name.clone(), identity.lan_prefixes.clone());
            if identity.approvals.is_empty() {
                db.approvals.remove(&identity.name);
            } else {
                db.approvals
                    .insert(identity.name.clone(), identity.approvals.clone());
            }
            db.certificates.push(CertificateRecord {
                name: identity.name.clone(),
                serial: member.serial.clone(),
                not_before: member.not_before,
                not_after: member.not_after,
            });
            report.certificates += 1;
        }
    }

    // 3. Revoked certificates nobody has a record of.
    report.unknown_revoked = revoked
        .iter()
        .filter(|serial| !db.certificates.iter().any(|c| c.serial == **serial))
        .count();
    let count = u32::try_from(report.unknown_revoked).unwrap_or(u32::MAX);
    report.skipped_numbers = db.allocator.skip_numbers(count);

    // 4. The restoring node's own clients.
    for (name, addresses) in own_clients {
        let added = db.allocator.adopt_client(own, name, *addresses).map_err(
            |AdoptError::Node { problem, .. }| MergeConflict {
                name: own.to_owned(),
                reason: problem,
            },
        )?;
        report.clients += usize::from(added);
    }
    Ok(report)
}

/// What `member`'s certificate says it was given.
fn known_node(member: &NodeCertificate) -> Result<KnownNode<'_>, String> {
    let identity = &member.identity;
    let ipv4 = identity.prefixes.iter().find_map(|p| match p {
        IpNet::V4(net) => Some(*net),
        IpNet::V6(_) => None,
    });
    // The node's /64 or /80 comes first; the /96 client pool after it.
    let ipv6 = identity.prefixes.iter().find_map(|p| match p {
        IpNet::V6(net) if net.prefix_len() < 96 => Some(*net),
        _ => None,
    });
    let (Some(ipv4), Some(ipv6)) = (ipv4, ipv6) else {
        return Err("it carries no IPv4 prefix or no IPv6 /64 or /80".into());
    };
    Ok(KnownNode {
        name: &identity.name,
        role: match identity.role {
            NodeRole::Core => Role::Core,
            NodeRole::Spoke => Role::Spoke,
        },
        core: identity.core.as_deref(),
        ipv4,
        ipv6,
    })
}

/// How many nodes the registry `allocator` lists, live and revoked (for reports).
pub fn node_counts(allocator: &Allocator, certificates: &[CertificateRecord]) -> (usize, usize) {
    let live = allocator.nodes().count();
    let mut revoked: Vec<&str> = certificates
        .iter()
        .map(|c| c.name.as_str())
        .filter(|name| allocator.is_revoked(name))
        .collect();
    revoked.sort_unstable();
    revoked.dedup();
    (live, revoked.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_config::AddressPlan;
    use mesh_config::alloc::NodeAllocation;
    use pki::{CertificateAuthority, NodeKeyPair};
    use time::macros::datetime;
    use time::{Duration, OffsetDateTime};

    const NOW: OffsetDateTime = datetime!(2026-11-21 10:00 UTC);

    /// The CA, and a registry that is the backup's until `lost` goes on without it.
    struct Mesh {
        ca: CertificateAuthority,
        db: CaDatabase,
    }

    impl Mesh {
        fn new() -> Self {
            let plan = AddressPlan::new(
                "10.0.0.0/8".parse().unwrap(),
                16,
                "fd00:1:2::/48".parse().unwrap(),
            )
            .unwrap();
            let mut mesh = Mesh {
                ca: CertificateAuthority::create("alpha", NOW, Duration::days(3650)).unwrap(),
                db: CaDatabase::new(Allocator::new(plan).unwrap()),
            };
            mesh.admit("alpha", Role::Core, None);
            mesh
        }

        /// Admits and issues, as a join does; returns the certificate.
        fn admit(&mut self, name: &str, role: Role, core: Option<&str>) -> NodeCertificate {
            let allocation = self
                .db
                .allocator
                .allocate_node(name, role, core, None)
                .unwrap();
            self.issue(&allocation)
        }

        fn issue(&mut self, allocation: &NodeAllocation) -> NodeCertificate {
            let key = NodeKeyPair::generate().unwrap();
            let approvals = self
                .db
                .approvals
                .get(&allocation.name)
                .cloned()
                .unwrap_or_default();
            let identity = pki::NodeIdentity {
                name: allocation.name.clone(),
                role: match allocation.role {
                    Role::Core => NodeRole::Core,
                    Role::Spoke => NodeRole::Spoke,
                },
                core: allocation.core.clone(),
                prefixes: vec![
                    IpNet::V4(allocation.ipv4),
                    IpNet::V6(allocation.ipv6),
                    IpNet::V6(allocation.ipv6_clients),
                ],
                lan_prefixes: vec![],
                wireguard_key: [7; 32],
                approvals,
                foreign: false,
            };
            let issued = self
                .ca
                .issue_node_certificate(
                    &key.csr(&allocation.name).unwrap(),
                    &identity,
                    NOW,
                    Duration::days(90),
                )
                .unwrap();
            self.db.certificates.push(CertificateRecord {
                name: allocation.name.clone(),
                serial: issued.serial.clone(),
                not_before: issued.not_before,
                not_after: issued.not_after,
            });
            NodeCertificate::parse(&issued.der).unwrap()
        }

        fn renew(&mut self, name: &str) -> NodeCertificate {
            let allocation = self.db.allocator.node(name).unwrap().clone();
            self.issue(&allocation)
        }

        fn revoke(&mut self, name: &str) -> Vec<SerialNumber> {
            self.db.allocator.revoke(name).unwrap();
            self.db
                .certificates
                .iter()
                .filter(|c| c.name == name)
                .map(|c| c.serial.clone())
                .collect()
        }
    }

    #[test]
    fn what_the_lost_holder_did_after_the_backup_is_learnt_and_nothing_is_reused() {
        let mut mesh = Mesh::new();
        let alpha = mesh.renew("alpha");
        mesh.admit("beta", Role::Core, None);
        mesh.admit("doomed", Role::Core, None);
        let backup = mesh.db.clone();

        // The holder goes on: admits gamma (a spoke of beta) and delta, renews beta with an
        // exit approval, revokes doomed and admits and revokes eve; then its disk dies.
        let gamma = mesh.admit("gamma", Role::Spoke, Some("beta"));
        let delta = mesh.admit("delta", Role::Core, None);
        mesh.db.approvals.insert(
            "beta".into(),
            pki::Approvals {
                exit_ipv4: true,
                ..Default::default()
            },
        );
        let beta2 = mesh.renew("beta");
        let mut revoked = mesh.revoke("doomed");
        mesh.admit("eve", Role::Core, None);
        revoked.extend(mesh.revoke("eve"));
        let lost = mesh.db;

        let mut restored = backup;
        let members = [alpha, beta2.clone(), gamma.clone(), delta.clone()];
        // beta's second client, numbered by beta itself.
        let beta_node = restored.allocator.node("beta").unwrap().clone();
        let phone = ClientAllocation {
            ipv4: "10.2.0.3".parse().unwrap(),
            ipv6: (u128::from(beta_node.ipv6_clients.network()) + 2).into(),
        };
        let clients = [("phone".to_owned(), phone)];
        let merge = |db: &mut CaDatabase| merge_known(db, &revoked, &members, "beta", &clients);
        let report = merge(&mut restored).unwrap();
        assert_eq!(report.added, ["delta", "gamma"]);
        assert_eq!(report.revoked, ["doomed"]);
        assert_eq!(report.certificates, 3, "{report:?}");
        assert_eq!(report.unknown_revoked, 1, "eve's certificate");
        assert_eq!(report.skipped_numbers, 1);
        assert_eq!(report.clients, 1);
        assert!(restored.approvals["beta"].exit_ipv4);
        assert!(
            restored
                .certificates
                .iter()
                .any(|c| c.serial == beta2.serial)
        );
        assert!(restored.allocator.is_revoked("doomed"));
        assert!(restored.name_is_burnt("doomed"));

        // Nothing anybody holds is handed out again: not gamma's, delta's or eve's numbers.
        let next = restored
            .allocator
            .allocate_node("zeta", Role::Core, None, None)
            .unwrap();
        let lost_max = lost.allocator.nodes().map(|n| n.index).max().unwrap();
        assert!(next.index > lost_max + 1, "{} after {lost_max}", next.index);
        let spoke = restored
            .allocator
            .allocate_node("eta", Role::Spoke, Some("beta"), None)
            .unwrap();
        assert_ne!(IpNet::V6(spoke.ipv6), gamma.identity.prefixes[1]);
        let client = restored
            .allocator
            .allocate_client("beta", "tablet")
            .unwrap();
        assert_ne!(client, phone);

        // Merging again changes nothing.
        let again = restored.clone();
        assert_eq!(merge(&mut restored).unwrap().added.len(), 0);
        assert_eq!(
            restored.allocator.nodes().count(),
            again.allocator.nodes().count()
        );
    }

    #[test]
    fn a_certificate_that_contradicts_the_registry_refuses_the_merge() {
        let mut other = Mesh::new();
        let stranger = other.admit("beta", Role::Spoke, Some("alpha"));
        let mut mesh = Mesh::new();
        mesh.admit("beta", Role::Core, None);
        let err = merge_known(&mut mesh.db, &[], &[stranger], "alpha", &[]).unwrap_err();
        assert_eq!(err.name, "beta");
        assert!(err.to_string().contains("newest one"), "{err}");
    }
}
