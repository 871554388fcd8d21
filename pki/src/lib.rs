//! Certificates, revocation and invitation tokens for meshd.
//!
//! Pure: no file or network I/O. Every operation that depends on time takes `now`; randomness
//! comes from ring's `SystemRandom`. The agent persists what these functions return.
//!
//! - [`CertificateAuthority`]: the mesh CA (create, load/store as PEM, fingerprint), issuing
//!   node certificates ([`CertificateAuthority::issue_node_certificate`]).
//! - [`NodeKeyPair`]: a node's key and CSR.
//! - [`NodeIdentity`] and the meshd certificate extension ([`extension`], `EXTENSION.md`).
//! - [`NodeCertificate::parse`] and [`verify_node_certificate`].
//! - Revocation: [`CertificateAuthority::issue_crl`], [`Crl`].
//! - Invitations: [`InvitationToken`] (the `meshd1-...` string), [`InvitationRecord`] (what the
//!   CA stores), [`create_invitation`], [`redeem`], [`check_ca`].

pub mod ca;
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
pub use crl::{Crl, RevokedEntry};
pub use encoding::PrefixBytesError;
pub use error::PkiError;
pub use extension::ExtensionError;
pub use identity::{IdentityError, NodeIdentity, NodeRole, validate_node_name};
pub use invitation::{InvitationRecord, InvitationRequest, create_invitation, redeem};
pub use node_cert::{IssuedCertificate, NodeCertificate, node_dns_name};
pub use node_key::NodeKeyPair;
pub use oid::{MESHD_IDENTITY_OID, MESHD_IDENTITY_UUID};
pub use serial::SerialNumber;
pub use token::{InvitationSecret, InvitationToken, TokenError, check_ca};
pub use verify::{VerifyError, verify_node_certificate};
pub use x509::{CLOCK_SKEW_ALLOWANCE, fingerprint_hex};
