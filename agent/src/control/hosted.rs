//! Standing in for foreign routers (`meshd router add`): routers that run no meshd, whose
//! certificate this core holds with its key. The core signs their membership records, so the
//! rest of the mesh sees an ordinary spoke of this core, checked against its certificate like
//! any other; their tunnel and BGP session follow from the membership like a spoke's.
//!
//! Their records carry no endpoints (the router dials in, as spokes do) and are signed anew
//! at every start, with a version above the stored one, like this node's own.

use std::collections::BTreeMap;

use pki::{NodeCertificate, NodeKeyPair, SerialNumber};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;

use super::record::{SignedRecord, next_version, sign_record};
use crate::state::HostedFiles;

/// A router this node stands in for.
#[derive(Debug)]
struct HostedRouter {
    serial: SerialNumber,
    version: u64,
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
                Ok((key, cert_der, serial)) => {
                    if self.routers.get(&name).is_some_and(|r| r.serial == serial) {
                        continue;
                    }
                    let previous =
                        stored_version(&name).max(self.routers.get(&name).map(|r| r.version));
                    let version = next_version(previous, now);
                    match sign_record(&key, &cert_der, Vec::new(), version) {
                        Ok(record) => {
                            loaded.records.push(record);
                            self.routers.insert(name, HostedRouter { serial, version });
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
}

/// The key, certificate DER and serial of a router's files, after checking they belong
/// together and describe a foreign router of this node.
fn prepare(
    file: &HostedFiles,
    own_name: &str,
) -> Result<(NodeKeyPair, Vec<u8>, SerialNumber), String> {
    let der = CertificateDer::from_pem_slice(file.certificate_pem.as_bytes())
        .map_err(|e| format!("node.crt is not a PEM certificate: {e}"))?
        .to_vec();
    let cert = NodeCertificate::parse(&der).map_err(|e| format!("node.crt: {e}"))?;
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
    Ok((key, der, cert.serial))
}
