//! Invitation tokens: the string `meshd invite` prints and `meshd join` takes.
//!
//! Format: `meshd1-` followed by base64url (no padding) of `body || checksum`, where checksum is
//! the first 4 bytes of SHA-256(body). The checksum lets a typo or a truncated paste be reported
//! as "damaged token" instead of surfacing later as a confusing "wrong secret".
//!
//! Body (all lengths are one byte, strings are UTF-8):
//!
//! ```text
//! name          len + bytes
//! role          1 byte: 0 core, 1 spoke
//! core          len + bytes (len 0: none)
//! lan prefixes  count, then per prefix: len (5 or 17) + address bytes + prefix length
//! ca fingerprint 32 bytes, SHA-256 of the CA certificate DER
//! endpoints     count (>= 1), then per endpoint: len + "host:port"
//! secret        32 bytes
//! expires at    8 bytes, big-endian signed Unix seconds
//! ```
//!
//! A new layout gets a new prefix (`meshd2-`); the prefix is the version.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ipnet::IpNet;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};
use time::OffsetDateTime;

use crate::encoding::{prefix_from_bytes, prefix_to_bytes};
use crate::identity::{
    IdentityError, NodeRole, validate_node_name, validate_prefixes, validate_role,
};
use crate::x509::{fingerprint_hex, sha256};

/// What every token starts with; it names the format version too.
pub const TOKEN_PREFIX: &str = "meshd1-";

/// Bytes of SHA-256 appended as checksum.
const CHECKSUM_LEN: usize = 4;
/// At most this many endpoints and LAN prefixes fit in a token.
pub const MAX_TOKEN_LIST: usize = 32;

/// Why an invitation could not be created, parsed or redeemed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "this is not a complete meshd invitation token ({0}); copy it again, whole, \
         from the `meshd invite` output"
    )]
    Mangled(String),
    #[error("the invitation token is intact but its contents are invalid: {0}")]
    Invalid(String),
    #[error("invalid invitation: {0}")]
    Request(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(
        "the CA presents certificate fingerprint {found}, but the invitation was made for CA \
         {expected}: refusing to join (wrong endpoint, or someone in the middle)"
    )]
    WrongCa { expected: String, found: String },
    #[error("the invitation expired at {expires_at}; ask for a new one")]
    Expired { expires_at: OffsetDateTime },
    #[error(
        "the invitation for {name} was cancelled at {}; ask for a new one",
        rfc3339(*.cancelled_at)
    )]
    Cancelled {
        name: String,
        cancelled_at: OffsetDateTime,
    },
    #[error("this invitation has already been used; ask for a new one")]
    AlreadyUsed,
    #[error("the invitation secret does not match")]
    WrongSecret,
    #[error("the invitation was made for node {invited:?}, not {presented:?}")]
    WrongName { invited: String, presented: String },
    #[error("the system random number generator failed")]
    Random,
}

/// A time as RFC 3339 (`2026-11-22T10:00:00Z`), the form people and scripts read best; the
/// times in messages about invitations, here and in meshd's commands, are written so.
pub fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| time.to_string())
}

/// The 32-byte one-time secret of an invitation. Its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct InvitationSecret([u8; 32]);

impl InvitationSecret {
    /// A fresh random secret.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, TokenError> {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes).map_err(|_| TokenError::Random)?;
        Ok(InvitationSecret(bytes))
    }

    /// Wraps secret bytes received from a joiner.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        InvitationSecret(bytes)
    }

    /// The raw secret, to send to the CA over the (TLS) join connection.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// SHA-256 of the secret: all the CA keeps.
    pub fn hash(&self) -> [u8; 32] {
        sha256(&self.0)
    }
}

impl fmt::Debug for InvitationSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InvitationSecret(<redacted>)")
    }
}

impl Serialize for InvitationSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for InvitationSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text.as_bytes())
            .map_err(|e| D::Error::custom(format!("invitation secret is not base64url: {e}")))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| D::Error::custom("invitation secret must be 32 bytes"))?;
        Ok(InvitationSecret(bytes))
    }
}

/// Everything a joining node learns from its invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationToken {
    /// The name the node is invited under.
    pub name: String,
    /// Core or spoke.
    pub role: NodeRole,
    /// For a spoke, its core.
    pub core: Option<String>,
    /// LAN prefixes approved for the node.
    pub lan_prefixes: Vec<IpNet>,
    /// SHA-256 of the CA certificate DER: the joiner checks the CA it reaches against it.
    pub ca_fingerprint: [u8; 32],
    /// Where to reach the CA holder, each `host:port`.
    pub endpoints: Vec<String>,
    /// The one-time secret.
    pub secret: InvitationSecret,
    /// After this the CA refuses the invitation.
    pub expires_at: OffsetDateTime,
}

/// Checks a `host:port` endpoint: a port 1..=65535 and a host that is a name, an IPv4 address
/// or a bracketed IPv6 address.
pub fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("endpoint {endpoint:?} {why}"));
    if endpoint.is_empty() || endpoint.len() > 255 {
        return bad("must be 1 to 255 characters");
    }
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return bad("has no port (expected host:port)");
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 => {}
        _ => return bad("has no valid port 1-65535"),
    }
    if let Some(inner) = host.strip_prefix('[') {
        let ok = inner
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        return if ok {
            Ok(())
        } else {
            bad("has a bad [IPv6] address")
        };
    }
    if host.is_empty() {
        return bad("has an empty host");
    }
    if host.contains(':') {
        return bad("has an IPv6 address without brackets (write [addr]:port)");
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return bad("has characters not allowed in a host name");
    }
    Ok(())
}

/// Checks the fields a token carries besides the secret; used when creating and when parsing.
pub(crate) fn validate_terms(
    name: &str,
    role: NodeRole,
    core: Option<&str>,
    lan_prefixes: &[IpNet],
    endpoints: &[String],
) -> Result<(), TokenError> {
    validate_node_name(name)?;
    validate_role(name, role, core)?;
    validate_prefixes("LAN", lan_prefixes)?;
    if lan_prefixes.len() > MAX_TOKEN_LIST {
        return Err(TokenError::Request(format!(
            "at most {MAX_TOKEN_LIST} LAN prefixes fit in an invitation"
        )));
    }
    if endpoints.is_empty() || endpoints.len() > MAX_TOKEN_LIST {
        return Err(TokenError::Request(format!(
            "an invitation needs 1 to {MAX_TOKEN_LIST} bootstrap endpoints"
        )));
    }
    for endpoint in endpoints {
        validate_endpoint(endpoint).map_err(TokenError::Request)?;
    }
    Ok(())
}

impl InvitationToken {
    /// The copy-pasteable token string.
    pub fn encode(&self) -> Result<String, TokenError> {
        validate_terms(
            &self.name,
            self.role,
            self.core.as_deref(),
            &self.lan_prefixes,
            &self.endpoints,
        )?;
        let mut body = Vec::with_capacity(160);
        put_str(&mut body, &self.name);
        body.push(match self.role {
            NodeRole::Core => 0,
            NodeRole::Spoke => 1,
        });
        put_str(&mut body, self.core.as_deref().unwrap_or(""));
        body.push(self.lan_prefixes.len() as u8);
        for prefix in &self.lan_prefixes {
            put_bytes(&mut body, &prefix_to_bytes(prefix));
        }
        body.extend_from_slice(&self.ca_fingerprint);
        body.push(self.endpoints.len() as u8);
        for endpoint in &self.endpoints {
            put_str(&mut body, endpoint);
        }
        body.extend_from_slice(self.secret.as_bytes());
        body.extend_from_slice(&self.expires_at.unix_timestamp().to_be_bytes());
        let checksum = sha256(&body);
        body.extend_from_slice(&checksum[..CHECKSUM_LEN]);
        Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(body)))
    }

    /// Parses a token string. Whitespace anywhere (line breaks from a mail client, a trailing
    /// newline) is ignored.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let Some(payload) = compact.strip_prefix(TOKEN_PREFIX) else {
            return Err(if compact.starts_with("meshd") {
                TokenError::Mangled("unknown token version; is this meshd too old?".into())
            } else {
                TokenError::Mangled(format!("it does not start with {TOKEN_PREFIX:?}"))
            });
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|e| TokenError::Mangled(format!("not base64url: {e}")))?;
        if bytes.len() < CHECKSUM_LEN {
            return Err(TokenError::Mangled("far too short".into()));
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if sha256(body)[..CHECKSUM_LEN] != *checksum {
            return Err(TokenError::Mangled("checksum mismatch".into()));
        }
        let token = decode_body(body).map_err(TokenError::Invalid)?;
        validate_terms(
            &token.name,
            token.role,
            token.core.as_deref(),
            &token.lan_prefixes,
            &token.endpoints,
        )
        .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(token)
    }

    /// Fails with [`TokenError::Expired`] once `now` has reached the expiry.
    pub fn check_not_expired(&self, now: OffsetDateTime) -> Result<(), TokenError> {
        if now >= self.expires_at {
            Err(TokenError::Expired {
                expires_at: self.expires_at,
            })
        } else {
            Ok(())
        }
    }
}

impl FromStr for InvitationToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InvitationToken::parse(s)
    }
}

/// Checks that the CA certificate a joiner was shown is the one the invitation names.
pub fn check_ca(token: &InvitationToken, ca_cert_der: &[u8]) -> Result<(), TokenError> {
    let found = sha256(ca_cert_der);
    if found == token.ca_fingerprint {
        Ok(())
    } else {
        Err(TokenError::WrongCa {
            expected: fingerprint_hex(&token.ca_fingerprint),
            found: fingerprint_hex(&found),
        })
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Callers validated lengths (names <= 63, endpoints <= 255, prefixes <= 17).
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// Reads the body fields in order; every read is bounds-checked.
struct BodyReader<'a> {
    rest: &'a [u8],
}

impl<'a> BodyReader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!("it ends inside the {what}"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn byte(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let bytes = self.take(N, what)?;
        Ok(bytes.try_into().expect("take returned N bytes"))
    }

    fn sized(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.byte(what)?;
        self.take(usize::from(len), what)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let bytes = self.sized(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("the {what} is not UTF-8"))
    }
}

fn decode_body(body: &[u8]) -> Result<InvitationToken, String> {
    let mut r = BodyReader { rest: body };
    let name = r.string("name")?;
    let role = match r.byte("role")? {
        0 => NodeRole::Core,
        1 => NodeRole::Spoke,
        other => return Err(format!("unknown role value {other}")),
    };
    let core = Some(r.string("core name")?).filter(|c| !c.is_empty());
    let lan_count = r.byte("LAN prefix count")?;
    let lan_prefixes = (0..lan_count)
        .map(|_| prefix_from_bytes(r.sized("LAN prefix")?).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let ca_fingerprint = r.array::<32>("CA fingerprint")?;
    let endpoint_count = r.byte("endpoint count")?;
    let endpoints = (0..endpoint_count)
        .map(|_| r.string("endpoint"))
        .collect::<Result<Vec<_>, _>>()?;
    let secret = InvitationSecret(r.array::<32>("secret")?);
    let expires = i64::from_be_bytes(r.array::<8>("expiry time")?);
    let expires_at = OffsetDateTime::from_unix_timestamp(expires)
        .map_err(|_| format!("expiry time {expires} is out of range"))?;
    if !r.rest.is_empty() {
        return Err(format!("{} unexpected bytes at the end", r.rest.len()));
    }
    Ok(InvitationToken {
        name,
        role,
        core,
        lan_prefixes,
        ca_fingerprint,
        endpoints,
        secret,
        expires_at,
    })
}

/// A fresh secret from the system RNG.
pub(crate) fn fresh_secret() -> Result<InvitationSecret, TokenError> {
    InvitationSecret::generate(&SystemRandom::new())
}
