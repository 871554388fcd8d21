//! TLS for the control plane (rustls, TLS 1.3 only, ring). Node certificates serve as both
//! client and server certificates; the verifiers call [`pki::verify_node_certificate`], the
//! same check the rest of meshd uses, with the current revocation list, so TLS and membership
//! can never disagree about who is in the mesh.
//!
//! - Between members: each side presents `[node cert, CA cert]`; the dialer names the node it
//!   wants (`<name>.meshd.invalid`) and the answering certificate must be that node's.
//! - A joining node has no certificate yet: the server offers but does not require client
//!   authentication, and a connection without a client certificate may only ask to join.
//! - The joiner trusts nothing but the CA whose fingerprint its token carries: its verifier
//!   finds that CA certificate in the server's chain (by SHA-256 of the DER) before anything
//!   else, and the handshake fails — before the joiner sends a byte of its own — otherwise.
//! - ALPN tells connections apart before any message is read: [`RENEWAL_ALPN`] for a
//!   renewal, [`MEMBER_ALPN`] for a member connection of protocol version 2 (with the
//!   hello, see [`super::protocol`]), none for a join or a member connection of version 1.
//! - A certificate that expired less than the renewal grace window ago
//!   ([`crate::identity::RENEWAL_GRACE`] by default) is accepted on a renewal connection
//!   only: [`ControlAcceptor`] reads the client hello first and answers a client that offers
//!   [`RENEWAL_ALPN`] with a configuration that agrees on nothing else and whose verifier
//!   ([`ClientCheck::Renewal`]) allows the grace; every other connection gets the strict
//!   one. Everything but the expiry is checked as strictly on both.

use std::sync::{Arc, RwLock};

use pki::{NodeCertificate, node_dns_name};
use ring::digest::{SHA256, digest};
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use time::OffsetDateTime;

/// The server name a joiner sends: it does not know the CA holder's node name.
pub const JOIN_SERVER_NAME: &str = "join.meshd.invalid";
/// The ALPN protocol of a certificate renewal connection: one request, one answer. Member
/// connections offer [`MEMBER_ALPN`] (or, from a node older than the hello, none) and joins
/// none, so they are told apart from renewals in the handshake, before any message is read.
pub const RENEWAL_ALPN: &[u8] = b"meshd-renew/1";
pub use super::protocol::MEMBER_ALPN;

/// What a node trusts: the mesh CA and the newest revocation list. Shared with the
/// membership task, which replaces the CRL when a newer one arrives.
#[derive(Debug)]
pub struct Trust {
    ca_der: Vec<u8>,
    crl: RwLock<Option<Vec<u8>>>,
}

impl Trust {
    pub fn new(ca_der: Vec<u8>, crl: Option<Vec<u8>>) -> Arc<Self> {
        Arc::new(Self {
            ca_der,
            crl: RwLock::new(crl),
        })
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// Replaces the revocation list used for new handshakes.
    pub fn set_crl(&self, der: Vec<u8>) {
        *self.crl.write().unwrap_or_else(|e| e.into_inner()) = Some(der);
    }

    /// Verifies a member's certificate at `now`.
    fn verify(&self, der: &[u8], now: UnixTime) -> Result<NodeCertificate, rustls::Error> {
        let now = to_datetime(now);
        let crl = self.crl();
        pki::verify_node_certificate(der, &self.ca_der, crl.as_deref(), now)
            .map_err(|e| rustls::Error::General(format!("peer certificate refused: {e}")))
    }

    /// Verifies the certificate of a member asking for its renewal at `now`: as
    /// [`Self::verify`], but one that expired up to `grace` ago is accepted.
    fn verify_for_renewal(
        &self,
        der: &[u8],
        now: UnixTime,
        grace: time::Duration,
    ) -> Result<NodeCertificate, rustls::Error> {
        let now = to_datetime(now);
        let crl = self.crl();
        pki::verify_node_certificate_for_renewal(der, &self.ca_der, crl.as_deref(), now, grace)
            .map_err(|e| rustls::Error::General(format!("renewal refused: {e}")))
    }

    fn crl(&self) -> Option<Vec<u8>> {
        self.crl.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Our own certificate chain and key, as presented in handshakes. The certificate is
/// replaced when it is renewed (the key stays): every handshake after that presents the new
/// one, connections already up keep going.
#[derive(Debug)]
pub struct OwnCertificate {
    ca_der: Vec<u8>,
    key: Arc<dyn SigningKey>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl OwnCertificate {
    /// `[node cert, CA cert]` and the node's PKCS#8 key; refused if they do not belong
    /// together.
    pub fn new(
        node_cert_der: Vec<u8>,
        ca_der: Vec<u8>,
        key_pkcs8: Vec<u8>,
    ) -> Result<Arc<Self>, rustls::Error> {
        let key = provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8)))?;
        let current = Self::certified(&key, node_cert_der, &ca_der)?;
        Ok(Arc::new(Self {
            ca_der,
            key,
            current: RwLock::new(current),
        }))
    }

    /// Presents `node_cert_der` from now on; refused (and the old one kept) if it is not for
    /// our key.
    pub fn replace(&self, node_cert_der: Vec<u8>) -> Result<(), rustls::Error> {
        let certified = Self::certified(&self.key, node_cert_der, &self.ca_der)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = certified;
        Ok(())
    }

    /// The node certificate presented now (DER).
    pub fn certificate_der(&self) -> Vec<u8> {
        self.get().cert[0].to_vec()
    }

    fn certified(
        key: &Arc<dyn SigningKey>,
        node_cert_der: Vec<u8>,
        ca_der: &[u8],
    ) -> Result<Arc<CertifiedKey>, rustls::Error> {
        let chain = vec![node_cert_der.into(), ca_der.to_vec().into()];
        let certified = CertifiedKey::new(chain, key.clone());
        certified.keys_match()?;
        Ok(Arc::new(certified))
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for OwnCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for OwnCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The handshake signatures every meshd verifier accepts: the mesh uses ECDSA P-256 keys only.
const SIGNATURE_SCHEMES: [SignatureScheme; 1] = [SignatureScheme::ECDSA_NISTP256_SHA256];

/// The handshake-signature methods of a rustls verifier, the same in every meshd verifier
/// (the server's check of clients and the clients' checks of servers differ only in how they
/// judge the certificate). rustls has two verifier traits with these three methods each, so
/// this is a macro expanded inside each `impl`:
/// - TLS 1.2: refused (the configs never offer it: the control plane speaks TLS 1.3 only);
/// - TLS 1.3: checked with the algorithms meshd allows;
/// - schemes: [`SIGNATURE_SCHEMES`].
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.2 is not used".into()))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            SIGNATURE_SCHEMES.to_vec()
        }
    };
}

/// The signature algorithms ring verifies, taken once: building a whole provider for every
/// handshake's signature check would allocate its cipher-suite lists each time.
fn algorithms() -> WebPkiSupportedAlgorithms {
    static ALGORITHMS: std::sync::LazyLock<WebPkiSupportedAlgorithms> =
        std::sync::LazyLock::new(|| {
            rustls::crypto::ring::default_provider().signature_verification_algorithms
        });
    *ALGORITHMS
}

fn to_datetime(now: UnixTime) -> OffsetDateTime {
    let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The TLS server side of a node: client certificates optional (joiners have none). A
/// member that offers [`RENEWAL_ALPN`] asks for a new certificate on that connection; one
/// that offers [`MEMBER_ALPN`] speaks protocol version 2.
pub fn server_config(
    trust: Arc<Trust>,
    own: Arc<OwnCertificate>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    // Joiners and members older than the hello offer no ALPN and get none. A client that
    // offers ALPN but none of these is refused in the handshake (no_application_protocol):
    // that is how a node of this version learns that the node it dialed is older.
    let alpn = vec![RENEWAL_ALPN.to_vec(), MEMBER_ALPN.to_vec()];
    node_server_config(trust, own, ClientCheck::Member, alpn)
}

/// The TLS server side of a renewal connection: a client certificate is required, and it
/// may have expired up to `grace` ago; [`RENEWAL_ALPN`] is the only protocol agreed on.
fn renewal_server_config(
    trust: Arc<Trust>,
    own: Arc<OwnCertificate>,
    grace: time::Duration,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let alpn = vec![RENEWAL_ALPN.to_vec()];
    node_server_config(trust, own, ClientCheck::Renewal { grace }, alpn)
}

/// A node's TLS 1.3 server side, checking client certificates as `check` says and agreeing on
/// one of `alpn`.
fn node_server_config(
    trust: Arc<Trust>,
    own: Arc<OwnCertificate>,
    check: ClientCheck,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(ClientVerifier { trust, check }))
        .with_cert_resolver(own);
    config.alpn_protocols = alpn;
    // No session resumption: every handshake checks the client certificate against the
    // current revocation list, and a handshake (anyone's, a stranger's included) leaves no
    // session in a cache behind.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// Accepts control connections: a client hello that offers [`RENEWAL_ALPN`] is answered with
/// the renewal configuration (expired certificates within the grace window accepted, the
/// renewal protocol the only one agreed on), every other with [`server_config`]'s. So an
/// expired certificate can never carry a member connection or a join.
#[derive(Clone)]
pub struct ControlAcceptor {
    member: Arc<ServerConfig>,
    renewal: Arc<ServerConfig>,
}

impl ControlAcceptor {
    /// Both configurations, presenting `own`, checking against `trust`; renewals accept a
    /// certificate that expired up to `grace` ago.
    pub fn new(
        trust: Arc<Trust>,
        own: Arc<OwnCertificate>,
        grace: time::Duration,
    ) -> Result<Self, rustls::Error> {
        Ok(Self {
            member: server_config(trust.clone(), own.clone())?,
            renewal: renewal_server_config(trust, own, grace)?,
        })
    }

    /// The server handshake on `io`, with the configuration its client hello asks for.
    pub async fn accept<IO>(&self, io: IO) -> std::io::Result<tokio_rustls::server::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let config = if offers_renewal(&start.client_hello()) {
            self.renewal.clone()
        } else {
            self.member.clone()
        };
        start.into_stream(config).await
    }
}

impl std::fmt::Debug for ControlAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlAcceptor").finish_non_exhaustive()
    }
}

/// Whether a client hello offers [`RENEWAL_ALPN`] (among others or alone).
fn offers_renewal(hello: &ClientHello<'_>) -> bool {
    hello
        .alpn()
        .is_some_and(|mut offered| offered.any(|p| p == RENEWAL_ALPN))
}

/// The TLS client side between members, as a node dials: our certificate, the peer must be
/// the node named in the server name, and [`MEMBER_ALPN`] is offered. A node older than the
/// hello refuses that handshake ([`refused_alpn`]); it is dialed again with
/// [`legacy_member_client_config`].
pub fn member_client_config(
    trust: Arc<Trust>,
    own: Arc<OwnCertificate>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut config = Arc::unwrap_or_clone(legacy_member_client_config(trust, own)?);
    config.alpn_protocols = vec![MEMBER_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// [`member_client_config`] without ALPN: a member connection of protocol version 1, as
/// nodes older than the hello dial (no hello, the base set of message types).
pub fn legacy_member_client_config(
    trust: Arc<Trust>,
    own: Arc<OwnCertificate>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MemberServerVerifier { trust }))
        .with_client_cert_resolver(own);
    Ok(Arc::new(config))
}

/// Whether a failed client handshake was the server refusing our ALPN: the node dialed is
/// older than [`MEMBER_ALPN`] (its server knows only [`RENEWAL_ALPN`]).
pub fn refused_alpn(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            *e == rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
        })
}

/// The TLS client side of a renewal request to the CA holder: a member connection (our
/// current certificate proves who asks) that offers [`RENEWAL_ALPN`].
pub fn renewal_client_config(
    trust: Arc<Trust>,
    own: Arc<OwnCertificate>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut config = Arc::unwrap_or_clone(member_client_config(trust, own)?);
    config.alpn_protocols = vec![RENEWAL_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The TLS client side of `meshd join`: trusts only the CA with `ca_fingerprint`.
pub fn join_client_config(ca_fingerprint: [u8; 32]) -> Result<Arc<ClientConfig>, rustls::Error> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(JoinServerVerifier { ca_fingerprint }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server name to dial node `name` with.
pub fn member_server_name(name: &str) -> Result<ServerName<'static>, rustls::Error> {
    ServerName::try_from(node_dns_name(name))
        .map_err(|e| rustls::Error::General(format!("node name {name:?}: {e}")))
}

/// The node name in a verified peer certificate chain (the first certificate).
pub fn peer_name(chain: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let first = chain?.first()?;
    NodeCertificate::parse(first).ok().map(|c| c.identity.name)
}

/// Checks the server certificate of a member we dialed.
#[derive(Debug)]
struct MemberServerVerifier {
    trust: Arc<Trust>,
}

impl ServerCertVerifier for MemberServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = self.trust.verify(end_entity, now)?;
        let expected = server_name.to_str();
        if node_dns_name(&cert.identity.name) != expected {
            return Err(rustls::Error::General(format!(
                "dialed {expected} but the peer is node {:?}",
                cert.identity.name
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

/// What a client certificate must be for: a member connection (a connection without one may
/// only join), or a renewal (mandatory, and one that expired up to `grace` ago is accepted;
/// everything else as strict). Only [`ControlAcceptor`]'s renewal configuration uses the latter.
#[derive(Debug, Clone, Copy)]
enum ClientCheck {
    Member,
    Renewal { grace: time::Duration },
}

/// Checks the client certificate of a control connection as its [`ClientCheck`] says.
#[derive(Debug)]
struct ClientVerifier {
    trust: Arc<Trust>,
    check: ClientCheck,
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        matches!(self.check, ClientCheck::Renewal { .. })
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.check {
            ClientCheck::Member => self.trust.verify(end_entity, now)?,
            ClientCheck::Renewal { grace } => {
                self.trust.verify_for_renewal(end_entity, now, grace)?
            }
        };
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

/// The joiner's check: the chain must carry the token's CA, and the server's certificate
/// must come from it.
#[derive(Debug)]
struct JoinServerVerifier {
    ca_fingerprint: [u8; 32],
}

impl ServerCertVerifier for JoinServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| digest(&SHA256, c.as_ref()).as_ref() == self.ca_fingerprint)
        else {
            let found = intermediates.last().map_or("none".to_owned(), |c| {
                hex_of(digest(&SHA256, c.as_ref()).as_ref())
            });
            return Err(rustls::Error::General(format!(
                "wrong CA: the server presents CA fingerprint {found}, but the invitation was made for CA {}; refusing to join (wrong endpoint, or someone in the middle)",
                hex_of(&self.ca_fingerprint)
            )));
        };
        pki::verify_node_certificate(end_entity, ca, None, to_datetime(now))
            .map_err(|e| rustls::Error::General(format!("the CA holder's certificate: {e}")))?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pki::{CertificateAuthority, NodeIdentity, NodeKeyPair, NodeRole};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    /// A node of a fresh CA, valid now (the verifiers use the clock).
    fn node(ca: &CertificateAuthority, name: &str, index: u8) -> Arc<OwnCertificate> {
        let now = OffsetDateTime::now_utc();
        node_issued(ca, name, index, now, time::Duration::days(1)).0
    }

    /// A node whose certificate was issued at `at` for `validity` (in the past: expired), and
    /// the certificate's serial.
    fn node_issued(
        ca: &CertificateAuthority,
        name: &str,
        index: u8,
        at: OffsetDateTime,
        validity: time::Duration,
    ) -> (Arc<OwnCertificate>, pki::SerialNumber) {
        let key = NodeKeyPair::generate().unwrap();
        let identity = NodeIdentity {
            name: name.into(),
            role: NodeRole::Core,
            core: None,
            prefixes: vec![format!("10.{index}.0.0/16").parse().unwrap()],
            lan_prefixes: vec![],
            wireguard_key: [index; 32],
            approvals: Default::default(),
            foreign: false,
        };
        let issued = ca
            .issue_node_certificate(&key.csr(name).unwrap(), &identity, at, validity)
            .unwrap();
        let own =
            OwnCertificate::new(issued.der, ca.cert_der().to_vec(), key.to_pkcs8_der()).unwrap();
        (own, issued.serial)
    }

    /// One handshake in memory with a [`ControlAcceptor`]: the ALPN agreed on, or the
    /// server's error (in TLS 1.3 the client is done before the server has checked its
    /// certificate, so the refusal shows on the server side).
    async fn accepted(
        client: Arc<ClientConfig>,
        acceptor: &ControlAcceptor,
    ) -> Result<Option<Vec<u8>>, String> {
        let (a, b) = tokio::io::duplex(1 << 16);
        let name = member_server_name("alpha").unwrap();
        let connector = TlsConnector::from(client);
        let (client, server) = tokio::join!(connector.connect(name, a), acceptor.accept(b));
        let server = server.map_err(|e| e.to_string())?;
        let _ = client;
        Ok(server.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
    }

    #[tokio::test]
    async fn an_expired_certificate_is_accepted_for_a_renewal_within_the_grace_only() {
        let now = OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let ca = CertificateAuthority::create("t", now - day * 400, day * 800).unwrap();
        let grace = time::Duration::days(180);
        let alpha = node(&ca, "alpha", 1);
        // Offline for three months after its certificate ran out.
        let (expired, _) = node_issued(&ca, "beta", 2, now - day * 120, day * 30);
        // Past the grace window.
        let (ancient, _) = node_issued(&ca, "gamma", 3, now - day * 300, day * 30);
        // Expired within the window, but revoked.
        let (revoked, serial) = node_issued(&ca, "delta", 4, now - day * 60, day * 30);
        let crl = ca
            .issue_crl(
                &[pki::RevokedEntry {
                    serial,
                    revoked_at: now - day,
                }],
                1,
                now - day,
                now + day * 7,
            )
            .unwrap();
        let trust = Trust::new(ca.cert_der().to_vec(), Some(crl));
        let acceptor = ControlAcceptor::new(trust.clone(), alpha, grace).unwrap();
        let renewal =
            |own: &Arc<OwnCertificate>| renewal_client_config(trust.clone(), own.clone()).unwrap();
        let member =
            |own: &Arc<OwnCertificate>| member_client_config(trust.clone(), own.clone()).unwrap();
        let legacy = |own: &Arc<OwnCertificate>| {
            legacy_member_client_config(trust.clone(), own.clone()).unwrap()
        };

        // Within the grace, on the renewal ALPN: accepted, and renewal is all it agrees on.
        assert_eq!(
            accepted(renewal(&expired), &acceptor).await.unwrap(),
            Some(RENEWAL_ALPN.to_vec())
        );
        let mut both = Arc::unwrap_or_clone(renewal(&expired));
        both.alpn_protocols = vec![MEMBER_ALPN.to_vec(), RENEWAL_ALPN.to_vec()];
        assert_eq!(
            accepted(Arc::new(both), &acceptor).await.unwrap(),
            Some(RENEWAL_ALPN.to_vec())
        );
        // A member connection with it, of either version: refused as expired.
        for client in [member(&expired), legacy(&expired)] {
            let error = accepted(client, &acceptor).await.unwrap_err();
            assert!(error.contains("expired"), "{error}");
        }
        // Beyond the grace: refused, with the way back.
        let error = accepted(renewal(&ancient), &acceptor).await.unwrap_err();
        assert!(
            error.contains("grace window ended") && error.contains("meshd ca free-name"),
            "{error}"
        );
        // Revoked: refused, within the window too.
        let error = accepted(renewal(&revoked), &acceptor).await.unwrap_err();
        assert!(error.contains("revoked"), "{error}");
        // Another CA's certificate, expired or not: refused.
        let other = CertificateAuthority::create("t", now - day * 400, day * 800).unwrap();
        let (stranger, _) = node_issued(&other, "beta", 2, now - day * 40, day * 30);
        let error = accepted(renewal(&stranger), &acceptor).await.unwrap_err();
        assert!(error.contains("not by this mesh's CA"), "{error}");
        // A renewal connection without a certificate: refused (only joins go without).
        let mut anonymous = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(MemberServerVerifier {
                trust: trust.clone(),
            }))
            .with_no_client_auth();
        anonymous.alpn_protocols = vec![RENEWAL_ALPN.to_vec()];
        assert!(accepted(Arc::new(anonymous), &acceptor).await.is_err());
        // A valid certificate: as before, on every ALPN.
        let beta = node(&ca, "beta", 2);
        assert_eq!(
            accepted(renewal(&beta), &acceptor).await.unwrap(),
            Some(RENEWAL_ALPN.to_vec())
        );
        assert_eq!(
            accepted(member(&beta), &acceptor).await.unwrap(),
            Some(MEMBER_ALPN.to_vec())
        );
        assert_eq!(accepted(legacy(&beta), &acceptor).await.unwrap(), None);
    }

    /// One handshake in memory: the ALPN both sides agreed on, or the client's error.
    async fn handshake(
        client: Arc<ClientConfig>,
        server: Arc<ServerConfig>,
    ) -> Result<Option<Vec<u8>>, std::io::Error> {
        let (a, b) = tokio::io::duplex(1 << 16);
        let name = member_server_name("alpha").unwrap();
        let connector = TlsConnector::from(client);
        let acceptor = TlsAcceptor::from(server);
        let (client, server) = tokio::join!(connector.connect(name, a), acceptor.accept(b));
        let client = client?;
        let server = server?;
        let agreed = client.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(agreed.as_deref(), server.get_ref().1.alpn_protocol());
        Ok(agreed)
    }

    #[tokio::test]
    async fn members_agree_on_the_version_and_an_older_server_is_recognised() {
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::create("t", now, time::Duration::days(2)).unwrap();
        let trust = Trust::new(ca.cert_der().to_vec(), None);
        let alpha = node(&ca, "alpha", 1);
        let beta = node(&ca, "beta", 2);
        let server = server_config(trust.clone(), alpha.clone()).unwrap();
        let dialer = member_client_config(trust.clone(), beta.clone()).unwrap();
        let legacy = legacy_member_client_config(trust.clone(), beta.clone()).unwrap();
        let renewal = renewal_client_config(trust.clone(), beta.clone()).unwrap();

        assert_eq!(
            handshake(dialer.clone(), server.clone()).await.unwrap(),
            Some(MEMBER_ALPN.to_vec())
        );
        assert_eq!(
            handshake(legacy.clone(), server.clone()).await.unwrap(),
            None
        );
        assert_eq!(
            handshake(renewal.clone(), server.clone()).await.unwrap(),
            Some(RENEWAL_ALPN.to_vec())
        );

        // A server of the version before the hello knew only the renewal ALPN.
        let mut old = Arc::unwrap_or_clone(server);
        old.alpn_protocols = vec![RENEWAL_ALPN.to_vec()];
        let old = Arc::new(old);
        let error = handshake(dialer, old.clone()).await.unwrap_err();
        assert!(refused_alpn(&error), "{error}");
        assert_eq!(handshake(legacy, old.clone()).await.unwrap(), None);
        assert_eq!(
            handshake(renewal, old).await.unwrap(),
            Some(RENEWAL_ALPN.to_vec())
        );
        let other = std::io::Error::other("connection refused");
        assert!(!refused_alpn(&other));
    }
}
