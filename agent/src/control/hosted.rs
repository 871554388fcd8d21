//! Standing in for foreign routers (`meshd router add`): routers that run no meshd, whose
//! certificate this core holds with its key. The core signs their membership records, so the
//! rest of the mesh sees an ordinary spoke of this core, checked against its certificate like
//! any other; their tunnel and BGP session follow from the membership like a spoke's.
//!
//! Their records carry no endpoints (the router dials in, as spokes do) and are signed anew
//! at every start, with a version above the stored one, like this node's own. Their
//! certificates are renewed by this node on the same schedule as its own
//! ([`super::renewal`]): the router cannot, and a certificate left to expire would drop it
//! from the mesh.

use std::collections::BTreeMap;

use pki::{NodeCertificate, NodeKeyPair, SerialNumber};
use time::OffsetDateTime;

use super::record::{SignedRecord, next_version, sign_record};
use super::renewal::{Renewal, RenewalAction, Validity};
use crate::state::HostedFiles;

/// A router this node stands in for.
#[derive(Debug)]
struct HostedRouter {
    serial: SerialNumber,
    version: u64,
    key: NodeKeyPair,
    certificate: NodeCertificate,
    renewal: Renewal,
}

/// What renewing a router's certificate needs.
#[derive(Debug)]
pub struct RenewalJob {
    pub name: String,
    /// A request for the same key (the CA keeps the key across renewals).
    pub csr_pem: String,
    /// The certificate being renewed.
    pub current: NodeCertificate,
    /// Its key (PKCS#8), to present the certificate to the CA holder.
    pub key_pkcs8: Vec<u8>,
}

/// The routers this node stands in for, by name.
#[derive(Debug, Default)]
pub struct HostedRouters {
    routers: BTreeMap<String, HostedRouter>,
}

/// What loading the state directory's routers gave.
#[derive(Debug, Default)]
pub struct Loaded {
    /// A record for each router new to this node (or with a new certificate), to publish.
    pub records: Vec<SignedRecord>,
    /// Routers that cannot be stood in for, each a sentence for the log.
    pub problems: Vec<String>,
}

impl HostedRouters {
    /// The names of the routers stood in for.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.routers.keys().map(String::as_str)
    }

    /// Takes in the routers of the state directory that are new or have a new certificate,
    /// and signs a record for each. `own_name` is this node; `stored_version` gives the
    /// version of a router's record this node already holds (so the new one outranks it).
    pub fn load(
        &mut self,
        files: Vec<HostedFiles>,
        own_name: &str,
        stored_version: impl Fn(&str) -> Option<u64>,
        now: OffsetDateTime,
    ) -> Loaded {
        let mut loaded = Loaded::default();
        for file in files {
            let name = file.name.clone();
            match prepare(&file, own_name) {
                Ok((key, certificate)) => {
                    let serial = certificate.serial.clone();
                    let cert_der = certificate.der.clone();
                    if self.routers.get(&name).is_some_and(|r| r.serial == serial) {
                        continue;
                    }
                    let previous =
                        stored_version(&name).max(self.routers.get(&name).map(|r| r.version));
                    let version = next_version(previous, now);
                    match sign_record(&key, &cert_der, Vec::new(), version) {
                        Ok(record) => {
                            loaded.records.push(record);
                            let validity = Validity::of_certificate(
                                certificate.not_before,
                                certificate.not_after,
                            );
                            let router = HostedRouter {
                                serial,
                                version,
                                key,
                                certificate,
                                renewal: Renewal::new(validity, rand::random()),
                            };
                            self.routers.insert(name, router);
                        }
                        Err(error) => loaded
                            .problems
                            .push(format!("router {name}: cannot sign its record: {error}")),
                    }
                }
                Err(why) => loaded.problems.push(format!(
                    "not standing in for router {name} (routers/{name}/): {why}"
                )),
            }
        }
        loaded
    }

    /// The renewals due at `now`, and warnings to log (a certificate close to expiry).
    pub fn poll_renewals(&mut self, now: OffsetDateTime) -> (Vec<RenewalJob>, Vec<String>) {
        let mut jobs = Vec::new();
        let mut warnings = Vec::new();
        for (name, router) in &mut self.routers {
            for action in router.renewal.poll(now) {
                match action {
                    RenewalAction::Warn(text) => warnings.push(format!("router {name}: {text}")),
                    RenewalAction::Request => match router.key.csr(name) {
                        Ok(csr_pem) => jobs.push(RenewalJob {
                            name: name.clone(),
                            csr_pem,
                            current: router.certificate.clone(),
                            key_pkcs8: router.key.to_pkcs8_der(),
                        }),
                        Err(error) => {
                            let why = format!("cannot make a certificate request: {error}");
                            router.renewal.failed(now, &why);
                            warnings.push(format!("router {name}: renewal failed: {why}"));
                        }
                    },
                }
            }
        }
        (jobs, warnings)
    }

    /// A renewal of `name` failed: try again later.
    pub fn renewal_failed(&mut self, name: &str, now: OffsetDateTime, why: &str) {
        if let Some(router) = self.routers.get_mut(name) {
            router.renewal.failed(now, why);
        }
    }

    /// Takes `name`'s renewed certificate (checked: same router, same keys) and signs a
    /// record for it. The caller stores the certificate first
    /// ([`crate::state::StateDir::replace_hosted_certificate`]).
    pub fn renewed(
        &mut self,
        name: &str,
        certificate: NodeCertificate,
        now: OffsetDateTime,
    ) -> Result<SignedRecord, String> {
        let router = self
            .routers
            .get_mut(name)
            .ok_or_else(|| format!("this node no longer stands in for {name}"))?;
        let old = &router.certificate.identity;
        let new = &certificate.identity;
        if new.name != old.name
            || new.wireguard_key != old.wireguard_key
            || !new.foreign
            || new.core != old.core
            || certificate.public_key_der != router.certificate.public_key_der
        {
            return Err("the new certificate is for another router or key".into());
        }
        let version = next_version(Some(router.version), now);
        let record = sign_record(&router.key, &certificate.der, Vec::new(), version)
            .map_err(|e| format!("cannot sign its membership record: {e}"))?;
        router.version = version;
        router.serial = certificate.serial.clone();
        router.renewal.succeeded(Validity::of_certificate(
            certificate.not_before,
            certificate.not_after,
        ));
        router.certificate = certificate;
        Ok(record)
    }

    /// Stops standing in for the routers `crl` revokes, and returns their names: their
    /// certificates will never be valid again.
    pub fn drop_revoked(&mut self, crl: &pki::Crl) -> Vec<String> {
        let revoked: Vec<String> = self
            .routers
            .iter()
            .filter(|(_, router)| crl.is_revoked(&router.serial))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &revoked {
            self.routers.remove(name);
        }
        revoked
    }

    /// When `name`'s next renewal is due.
    pub fn renewal_due(&self, name: &str) -> Option<OffsetDateTime> {
        self.routers.get(name).map(|r| r.renewal.due())
    }
}

/// The key and certificate of a router's files, after checking they belong together and
/// describe a foreign router of this node.
fn prepare(file: &HostedFiles, own_name: &str) -> Result<(NodeKeyPair, NodeCertificate), String> {
    let cert = NodeCertificate::from_pem(&file.certificate_pem).map_err(|e| match e {
        pki::PkiError::Pem(e) => format!("node.crt is not a PEM certificate: {e}"),
        other => format!("node.crt: {other}"),
    })?;
    let identity = &cert.identity;
    if identity.name != file.name {
        return Err(format!(
            "node.crt is the certificate of {:?}, not of {:?}",
            identity.name, file.name
        ));
    }
    if !identity.foreign || identity.core.as_deref() != Some(own_name) {
        return Err(format!(
            "its certificate does not make it a foreign router of {own_name} (core {:?}, \
             foreign {})",
            identity.core, identity.foreign
        ));
    }
    let key = NodeKeyPair::from_pem(&file.key_pem).map_err(|e| format!("node.key: {e}"))?;
    if key.public_key_der() != cert.public_key_der {
        return Err("node.key is not the key of node.crt".to_owned());
    }
    Ok((key, cert))
}

#[cfg(test)]
mod tests {
    use pki::{CertificateAuthority, NodeIdentity, NodeRole};
    use time::Duration;

    use super::super::record::tests::NOW;
    use super::*;

    const VALIDITY: Duration = Duration::days(30);

    fn router_identity() -> NodeIdentity {
        NodeIdentity {
            name: "mikro".into(),
            role: NodeRole::Spoke,
            core: Some("alpha".into()),
            prefixes: vec!["10.3.0.0/16".parse().unwrap()],
            lan_prefixes: vec!["192.168.77.0/24".parse().unwrap()],
            wireguard_key: [7; 32],
            approvals: Default::default(),
            foreign: true,
        }
    }

    fn issue(
        ca: &CertificateAuthority,
        key: &NodeKeyPair,
        identity: &NodeIdentity,
        at: OffsetDateTime,
    ) -> NodeCertificate {
        let issued = ca
            .issue_node_certificate(&key.csr(&identity.name).unwrap(), identity, at, VALIDITY)
            .unwrap();
        NodeCertificate::parse(&issued.der).unwrap()
    }

    fn files(ca: &CertificateAuthority, key: &NodeKeyPair, identity: &NodeIdentity) -> HostedFiles {
        let issued = ca
            .issue_node_certificate(&key.csr(&identity.name).unwrap(), identity, NOW, VALIDITY)
            .unwrap();
        HostedFiles {
            name: identity.name.clone(),
            certificate_pem: issued.pem,
            key_pem: zeroize::Zeroizing::new(key.to_pem()),
        }
    }

    #[test]
    fn a_router_is_loaded_once_and_renewed_on_schedule_for_the_same_key_only() {
        let ca = CertificateAuthority::create("test", NOW, Duration::days(365)).unwrap();
        let key = NodeKeyPair::generate().unwrap();
        let mut hosted = HostedRouters::default();
        let stored = files(&ca, &key, &router_identity());
        let loaded = hosted.load(vec![stored.clone()], "alpha", |_| Some(5), NOW);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        assert_eq!(loaded.records.len(), 1);
        assert!(loaded.records[0].version > 5);
        assert!(loaded.records[0].endpoints.is_empty());
        assert_eq!(hosted.names().collect::<Vec<_>>(), ["mikro"]);
        // The same files again (`meshd router add` of another router): nothing new.
        assert!(
            hosted
                .load(vec![stored], "alpha", |_| None, NOW)
                .records
                .is_empty()
        );
        // A new certificate in the files (a new serial) is published, above the last version.
        let again = hosted.load(
            vec![files(&ca, &key, &router_identity())],
            "alpha",
            |_| None,
            NOW,
        );
        assert_eq!(again.records.len(), 1);
        assert!(again.records[0].version > loaded.records[0].version);

        // Nothing due at first; at the end of the validity a request for the same key.
        assert!(hosted.poll_renewals(NOW).0.is_empty());
        let late = NOW + Duration::days(29);
        let (jobs, _) = hosted.poll_renewals(late);
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            pki::csr_public_key_der(&jobs[0].csr_pem).unwrap(),
            key.public_key_der()
        );

        let other_key = NodeKeyPair::generate().unwrap();
        let wrong = issue(&ca, &other_key, &router_identity(), late);
        assert!(hosted.renewed("mikro", wrong, late).is_err());
        let renewed = issue(&ca, &key, &router_identity(), late);
        let before = hosted.renewal_due("mikro").unwrap();
        let record = hosted.renewed("mikro", renewed, late).unwrap();
        assert!(record.version > again.records[0].version);
        assert!(hosted.renewal_due("mikro").unwrap() > before);

        // Revoked: dropped, once.
        let serial = hosted.routers["mikro"].serial.clone();
        let crl_der = ca
            .issue_crl(
                &[pki::RevokedEntry {
                    serial,
                    revoked_at: late,
                }],
                1,
                late,
                late + Duration::days(7),
            )
            .unwrap();
        let crl = pki::Crl::parse(&crl_der, ca.cert_der()).unwrap();
        assert_eq!(hosted.drop_revoked(&crl), ["mikro"]);
        assert!(hosted.drop_revoked(&crl).is_empty());
        assert_eq!(hosted.names().count(), 0);
    }

    #[test]
    fn a_router_whose_certificate_expired_while_its_core_was_off_is_renewed_in_the_grace() {
        let ca = CertificateAuthority::create("test", NOW, Duration::days(365)).unwrap();
        let key = NodeKeyPair::generate().unwrap();
        let mut hosted = HostedRouters::default();
        // The core was off for four months: the router's 30-day certificate ran out.
        let back = NOW + Duration::days(120);
        let loaded = hosted.load(
            vec![files(&ca, &key, &router_identity())],
            "alpha",
            |_| None,
            back,
        );
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let (jobs, warnings) = hosted.poll_renewals(back);
        assert_eq!(jobs.len(), 1, "asked at once");
        assert_eq!(
            pki::csr_public_key_der(&jobs[0].csr_pem).unwrap(),
            key.public_key_der()
        );
        assert!(
            warnings.len() == 1
                && warnings[0].starts_with("router mikro: ")
                && warnings[0].contains("renewing within the grace window (until"),
            "{warnings:?}"
        );
        // The CA holder down: retried with the backoff, not every second.
        hosted.renewal_failed("mikro", back, "CA holder down");
        assert!(hosted.renewal_due("mikro").unwrap() - back >= Duration::seconds(4));
        // Renewed for the same router and key: a normal schedule again.
        let renewed = issue(&ca, &key, &router_identity(), back);
        hosted.renewed("mikro", renewed, back).unwrap();
        assert!(hosted.renewal_due("mikro").unwrap() > back + Duration::days(15));
        assert!(hosted.poll_renewals(back).1.is_empty());
    }

    #[test]
    fn routers_of_other_cores_and_meshd_nodes_are_refused() {
        let ca = CertificateAuthority::create("test", NOW, Duration::days(365)).unwrap();
        let key = NodeKeyPair::generate().unwrap();
        let mut hosted = HostedRouters::default();
        let mut not_foreign = router_identity();
        not_foreign.foreign = false;
        let mut elsewhere = router_identity();
        elsewhere.name = "other".into();
        elsewhere.core = Some("beta".into());
        let loaded = hosted.load(
            vec![files(&ca, &key, &not_foreign), files(&ca, &key, &elsewhere)],
            "alpha",
            |_| None,
            NOW,
        );
        assert!(loaded.records.is_empty());
        assert_eq!(loaded.problems.len(), 2, "{:?}", loaded.problems);
        assert!(loaded.problems[0].contains("does not make it a foreign router of alpha"));
    }
}
