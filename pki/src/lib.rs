//! Certificates, revocation and invitation tokens for meshd.
//!
//! Pure: no file or network I/O. Every operation that depends on time takes `now`; randomness
//! comes from ring's `SystemRandom`. The agent persists what these functions return.
//!
//! - [`CertificateAuthority`]: the mesh CA (create, load/store as PEM, fingerprint), issuing
//!   node certificates ([`CertificateAuthority::issue_node_certificate`]).
//! - [`NodeKeyPair`]: a node's key and CSR.
//! - [`NodeIdentity`] and the meshd certificate extension ([`extension`], `EXTENSION.md`).
//! - [`NodeCertificate::parse`] (DER), [`NodeCertificate::from_pem`] and
//!   [`certificate_der_from_pem`] (PEM), and [`verify_node_certificate`].
//! - Revocation: [`CertificateAuthority::issue_crl`], [`Crl`].
//! - Bodies signed with the CA key itself ([`ca_signed`]): the CA registry record.
//! - Invitations: [`InvitationToken`] (the `meshd1-...` string), [`InvitationRecord`] (what the
//!   CA stores), [`create_invitation`], [`redeem`], [`check_ca`].
//!
//! The whole admission flow, as `meshd init`, `meshd invite` and `meshd join` use it:
//!
//! ```
//! use pki::*;
//! use time::{Duration, macros::datetime};
//!
//! let now = datetime!(2025-06-01 12:00 UTC);
//! // meshd init, on the CA holder.
//! let ca = CertificateAuthority::create("friends", now, Duration::days(3650))?;
//! // meshd invite beta --role spoke --core alpha --route 192.168.42.0/24
//! let request = InvitationRequest {
//!     name: "beta".into(),
//!     role: NodeRole::Spoke,
//!     core: Some("alpha".into()),
//!     lan_prefixes: vec!["192.168.42.0/24".parse()?],
//!     approvals: Default::default(),
//!     foreign: false,
//!     endpoints: vec!["vpn.example.net:51820".into()],
//!     ttl: Duration::hours(24),
//! };
//! let (token, mut record) = ca.invite(&request, now)?;
//! let printed = token.encode()?;
//!
//! // meshd join <printed>, on the new node: check the CA it reaches, send secret and CSR.
//! let token = InvitationToken::parse(&printed)?;
//! check_ca(&token, ca.cert_der())?;
//! let key = NodeKeyPair::generate()?;
//! let csr = key.csr(&token.name)?;
//!
//! // Back on the CA: redeem once, then issue with what the CA decided.
//! redeem(&mut record, &token.secret, "beta", now)?;
//! let identity = NodeIdentity {
//!     name: record.name.clone(),
//!     role: record.role,
//!     core: record.core.clone(),
//!     prefixes: vec!["10.2.0.0/16".parse()?],
//!     lan_prefixes: record.lan_prefixes.clone(),
//!     wireguard_key: [9; 32],
//!     approvals: record.approvals.clone(),
//!     foreign: false,
//! };
//! let issued = ca.issue_node_certificate(&csr, &identity, now, Duration::days(30))?;
//!
//! // Any node, when a peer presents its certificate.
//! let peer = verify_node_certificate(&issued.der, ca.cert_der(), None, now)?;
//! assert_eq!(peer.identity, identity);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod ca;
pub mod ca_signed;
pub mod crl;
mod encoding;
mod error;
pub mod extension;
pub mod identity;
pub mod invitation;
pub mod node_cert;
pub mod node_key;
pub mod oid;
pub mod serial;
pub mod token;
pub mod verify;
mod x509;

pub use ca::{CaPem, CertificateAuthority};
pub use ca_signed::{CaSignatureError, sha256_hex, verify_detached};
pub use crl::{Crl, RevokedEntry};
pub use encoding::PrefixBytesError;
pub use error::{PemError, PkiError};
pub use extension::ExtensionError;
pub use identity::{Approvals, IdentityError, NodeIdentity, NodeRole, validate_node_name};
pub use invitation::{InvitationRecord, InvitationRequest, create_invitation, redeem};
pub use node_cert::{
    IssuedCertificate, NodeCertificate, certificate_der_from_pem, csr_public_key_der, node_dns_name,
};
pub use node_key::NodeKeyPair;
pub use oid::{MESHD_IDENTITY_OID, MESHD_IDENTITY_UUID};
pub use serial::SerialNumber;
pub use token::{InvitationSecret, InvitationToken, TokenError, check_ca, rfc3339};
pub use verify::{VerifyError, verify_node_certificate, verify_node_certificate_for_renewal};
pub use x509::{CLOCK_SKEW_ALLOWANCE, fingerprint_hex};
