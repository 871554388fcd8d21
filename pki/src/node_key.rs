//! A node's own certificate key pair, and the certificate signing request it sends to the CA.

use std::fmt;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::error::PkiError;
use crate::identity::validate_node_name;

/// A node's ECDSA P-256 key pair for its mesh certificate (TLS control plane).
pub struct NodeKeyPair {
    key: KeyPair,
}

impl fmt::Debug for NodeKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("NodeKeyPair").finish_non_exhaustive()
    }
}

impl NodeKeyPair {
    /// Generates a fresh key pair from the system's secure random source.
    pub fn generate() -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| PkiError::NodeKey(format!("could not generate a P-256 key: {e}")))?;
        Ok(NodeKeyPair { key })
    }

    /// Loads a key written by [`NodeKeyPair::to_pem`] (PKCS#8 PEM).
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        Ok(NodeKeyPair {
            key: load_p256_key(pem).map_err(PkiError::NodeKey)?,
        })
    }

    /// The private key as PKCS#8 PEM, for the state directory (`node.key`, mode 0600).
    pub fn to_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The private key as PKCS#8 DER, the form TLS libraries take.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.key)
    }

    /// A PKCS#10 certificate signing request (PEM) for `name`, signed with this key.
    ///
    /// The CA only takes the public key (and the proof of possession) from it: what goes into
    /// the certificate is decided by the CA.
    pub fn csr(&self, name: &str) -> Result<String, PkiError> {
        validate_node_name(name)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params
            .serialize_request(&self.key)
            .and_then(|csr| csr.pem())
            .map_err(|e| PkiError::Build(format!("certificate signing request: {e}")))
    }
}

/// Parses a PKCS#8 PEM private key and insists on ECDSA P-256.
pub(crate) fn load_p256_key(pem: &str) -> Result<KeyPair, String> {
    let key = KeyPair::from_pem(pem).map_err(|e| format!("not a PKCS#8 PEM private key ({e})"))?;
    if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
        return Err("the key is not ECDSA P-256".into());
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_survives_pem_round_trip() {
        let k = NodeKeyPair::generate().unwrap();
        let back = NodeKeyPair::from_pem(&k.to_pem()).unwrap();
        assert_eq!(k.public_key_der(), back.public_key_der());
        assert!(k.to_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn garbage_key_is_an_error() {
        let err = NodeKeyPair::from_pem("hello").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("node private key: not a PKCS#8 PEM"),
            "{err}"
        );
    }

    #[test]
    fn csr_checks_the_name() {
        let k = NodeKeyPair::generate().unwrap();
        assert!(
            k.csr("beta")
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
        );
        assert!(matches!(k.csr("Bad Name"), Err(PkiError::Identity(_))));
    }
}
