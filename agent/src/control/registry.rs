//! The CA registry record as it travels: a body (mesh-config `registry`) and the CA key's
//! signature over it (`pki::ca_signed`). Pure. Only a CA copy can make one; every node checks
//! the signature before it keeps or relays one, so a peer cannot spread a forged registry.

use mesh_config::registry::{MAX_BODY_LEN, RegistryRecord, SIGNING_CONTEXT};
use pki::{CertificateAuthority, PkiError};
use serde::{Deserialize, Serialize};

/// A record with its signature, as gossip carries it ([`super::message::Gossip::Registry`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRegistry {
    /// The record's body, as signed (JSON).
    #[serde(with = "super::message::bytes")]
    pub body: Vec<u8>,
    /// ECDSA P-256 by the CA key over the signing context and the body.
    #[serde(with = "super::message::bytes")]
    pub signature: Vec<u8>,
}

/// A record whose signature verified and whose body is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRegistry {
    pub record: RegistryRecord,
    /// SHA-256 (hex) of the body: how the next record names this one.
    pub hash: String,
    pub signed: SignedRegistry,
}

impl SignedRegistry {
    /// Signs `record` with the CA key.
    pub fn sign(ca: &CertificateAuthority, record: &RegistryRecord) -> Result<Self, PkiError> {
        let body = record.to_body();
        let signature = ca.sign_detached(SIGNING_CONTEXT, &body)?;
        Ok(Self { body, signature })
    }

    /// Checks the signature against the mesh CA certificate `ca_der`, then the body. The
    /// error says why, for the log. Never panics on what a peer sends.
    pub fn verify(&self, ca_der: &[u8]) -> Result<VerifiedRegistry, String> {
        if self.body.len() > MAX_BODY_LEN {
            return Err(format!(
                "it is {} bytes, more than the {MAX_BODY_LEN} allowed",
                self.body.len()
            ));
        }
        pki::verify_detached(ca_der, SIGNING_CONTEXT, &self.body, &self.signature)
            .map_err(|e| e.to_string())?;
        let record = RegistryRecord::parse(&self.body).map_err(|e| e.to_string())?;
        Ok(VerifiedRegistry {
            record,
            hash: pki::sha256_hex(&self.body),
            signed: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_config::{AddressPlan, Allocator, Role};
    use time::{Duration, macros::datetime};

    #[test]
    fn only_a_record_signed_by_the_mesh_ca_verifies() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let ca = CertificateAuthority::create("friends", now, Duration::days(365)).unwrap();
        let other = CertificateAuthority::create("friends", now, Duration::days(365)).unwrap();
        let plan = AddressPlan::new(
            "10.0.0.0/8".parse().unwrap(),
            16,
            "fd00:1:2::/48".parse().unwrap(),
        )
        .unwrap();
        let mut allocator = Allocator::new(plan).unwrap();
        allocator
            .allocate_node("alpha", Role::Core, None, None)
            .unwrap();
        let record = RegistryRecord::build(&allocator, "friends", 1, "alpha", 1, None);
        let signed = SignedRegistry::sign(&ca, &record).unwrap();
        let verified = signed.verify(ca.cert_der()).unwrap();
        assert_eq!(verified.record, record);
        assert_eq!(verified.hash, pki::sha256_hex(&signed.body));

        let forged = SignedRegistry::sign(&other, &record).unwrap();
        let error = forged.verify(ca.cert_der()).unwrap_err();
        assert!(error.contains("not signed with the mesh CA key"), "{error}");
        let mut changed = signed.clone();
        changed.body[10] ^= 1;
        assert!(changed.verify(ca.cert_der()).is_err());
        let huge = SignedRegistry {
            body: vec![b' '; MAX_BODY_LEN + 1],
            signature: vec![],
        };
        assert!(
            huge.verify(ca.cert_der())
                .unwrap_err()
                .contains("more than")
        );
    }
}
