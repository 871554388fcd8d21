//! Invitation tokens: round trip, and each way an invitation is refused.

mod common;

use ::time::Duration;
use common::{NOW, ca};
use pki::{
    CertificateAuthority, InvitationRecord, InvitationRequest, InvitationSecret, InvitationToken,
    NodeRole, TokenError, check_ca, create_invitation, redeem,
};
use proptest::prelude::*;

fn request() -> InvitationRequest {
    InvitationRequest {
        name: "beta".into(),
        role: NodeRole::Spoke,
        core: Some("alpha".into()),
        lan_prefixes: vec![
            "192.168.42.0/24".parse().unwrap(),
            "2001:db8:42::/48".parse().unwrap(),
        ],
        approvals: Default::default(),
        foreign: false,
        endpoints: vec![
            "vpn.example.net:51820".into(),
            "203.0.113.1:51820".into(),
            "[2001:db8::1]:51820".into(),
        ],
        ttl: Duration::hours(24),
    }
}

fn invitation() -> (CertificateAuthority, InvitationToken, InvitationRecord) {
    let ca = ca();
    let (token, record) = ca.invite(&request(), NOW).unwrap();
    (ca, token, record)
}

#[test]
fn token_round_trips() {
    let (ca, token, record) = invitation();
    let text = token.encode().unwrap();
    assert!(text.starts_with("meshd1-"));
    assert!(
        text[7..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let back: InvitationToken = text.parse().unwrap();
    assert_eq!(back, token);
    assert_eq!(back.ca_fingerprint, ca.fingerprint());
    assert_eq!(back.expires_at, NOW + Duration::hours(24));
    assert_eq!(record.secret_hash, token.secret.hash());
    assert_eq!(record.expires_at, token.expires_at);
    assert!(!record.used);
    // Line breaks and surrounding spaces from a mail client do not matter.
    let wrapped = format!("  {}\n{}\n", &text[..30], &text[30..]);
    assert_eq!(InvitationToken::parse(&wrapped).unwrap(), token);
    // A core invitation without LANs is short enough to paste comfortably.
    let core = InvitationRequest {
        name: "gamma".into(),
        role: NodeRole::Core,
        core: None,
        lan_prefixes: vec![],
        approvals: Default::default(),
        foreign: false,
        endpoints: vec!["vpn.example.net:51820".into()],
        ttl: Duration::hours(1),
    };
    let (core_token, _) = ca.invite(&core, NOW).unwrap();
    let core_text = core_token.encode().unwrap();
    assert!(core_text.len() < 160, "{} chars", core_text.len());
    assert_eq!(InvitationToken::parse(&core_text).unwrap(), core_token);
}

#[test]
fn a_fresh_invitation_redeems_once() {
    let (_, token, mut record) = invitation();
    redeem(&mut record, &token.secret, "beta", NOW + Duration::hours(1)).unwrap();
    assert!(record.used);
    let err = redeem(&mut record, &token.secret, "beta", NOW + Duration::hours(2)).unwrap_err();
    assert_eq!(err, TokenError::AlreadyUsed);
}

#[test]
fn expired_invitations_are_refused() {
    let (_, token, mut record) = invitation();
    let at = NOW + Duration::hours(24);
    let err = redeem(&mut record, &token.secret, "beta", at).unwrap_err();
    assert_eq!(err, TokenError::Expired { expires_at: at });
    assert!(!record.used);
    assert!(token.check_not_expired(at).is_err());
    assert!(token.check_not_expired(at - Duration::seconds(1)).is_ok());
}

#[test]
fn a_cancelled_invitation_is_refused_as_cancelled_and_only_to_the_secret_holder() {
    let (_, token, mut record) = invitation();
    let at = NOW + Duration::minutes(10);
    record.cancel(at);
    assert!(
        record.used,
        "set too, for meshd versions without cancelled_at"
    );
    let err = redeem(&mut record, &token.secret, "beta", at).unwrap_err();
    assert_eq!(
        err,
        TokenError::Cancelled {
            name: "beta".into(),
            cancelled_at: at,
        }
    );
    assert!(
        err.to_string()
            .contains("the invitation for beta was cancelled at 2025-06-01T12:10:00Z"),
        "{err}"
    );
    // Cancellation is checked before expiry: the reason given is the one that came first.
    let later = NOW + Duration::days(2);
    assert!(matches!(
        redeem(&mut record, &token.secret, "beta", later),
        Err(TokenError::Cancelled { .. })
    ));
    let guess = InvitationSecret::from_bytes([0; 32]);
    assert_eq!(
        redeem(&mut record, &guess, "beta", at),
        Err(TokenError::WrongSecret)
    );
}

#[test]
fn a_cancellation_is_stored_only_when_there_is_one() {
    let (_, _, mut record) = invitation();
    let plain = serde_json::to_value(&record).unwrap();
    assert!(
        plain.get("cancelled_at").is_none(),
        "an uncancelled record is written as before: {plain}"
    );
    let back: InvitationRecord = serde_json::from_value(plain).unwrap();
    assert_eq!(back.cancelled_at, None);

    record.cancel(NOW + Duration::seconds(90));
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(json["cancelled_at"], "2025-06-01T12:01:30Z");
    let back: InvitationRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back, record);
}

#[test]
fn wrong_secret_and_wrong_name_are_refused() {
    let (_, _, mut record) = invitation();
    let guess = InvitationSecret::from_bytes([0; 32]);
    assert_eq!(
        redeem(&mut record, &guess, "beta", NOW),
        Err(TokenError::WrongSecret)
    );
    // Without the secret, even a used invitation only says "wrong secret".
    record.used = true;
    assert_eq!(
        redeem(&mut record, &guess, "beta", NOW),
        Err(TokenError::WrongSecret)
    );

    let (_, token, mut record) = invitation();
    let err = redeem(&mut record, &token.secret, "mallory", NOW).unwrap_err();
    assert!(matches!(err, TokenError::WrongName { .. }), "{err}");
    assert!(!record.used);
}

#[test]
fn the_joiner_detects_a_wrong_ca() {
    let (ca, token, _) = invitation();
    check_ca(&token, ca.cert_der()).unwrap();
    let impostor = CertificateAuthority::create("friends", NOW, Duration::days(1)).unwrap();
    let err = check_ca(&token, impostor.cert_der()).unwrap_err();
    assert_eq!(
        err,
        TokenError::WrongCa {
            expected: ca.fingerprint_hex(),
            found: impostor.fingerprint_hex(),
        }
    );
}

#[test]
fn mangled_tokens_are_reported_as_mangled() {
    let (_, token, _) = invitation();
    let text = token.encode().unwrap();

    // Truncation at every length.
    for cut in 0..text.len() {
        let err = InvitationToken::parse(&text[..cut]).unwrap_err();
        assert!(matches!(err, TokenError::Mangled(_)), "cut {cut}: {err}");
    }
    // Every single-character typo in the payload.
    for at in 7..text.len() {
        let mut bytes = text.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let typo = String::from_utf8(bytes).unwrap();
        let err = InvitationToken::parse(&typo).unwrap_err();
        assert!(matches!(err, TokenError::Mangled(_)), "typo at {at}: {err}");
    }
    let err = InvitationToken::parse("wg0-abc").unwrap_err();
    assert!(
        err.to_string().contains("does not start with \"meshd1-\""),
        "{err}"
    );
    let err = InvitationToken::parse("meshd2-abc").unwrap_err();
    assert!(err.to_string().contains("unknown token version"), "{err}");
}

#[test]
fn bad_requests_are_refused() {
    let fp = [1u8; 32];
    let mut r = request();
    r.endpoints.clear();
    assert!(matches!(
        create_invitation(&r, fp, NOW),
        Err(TokenError::Request(_))
    ));
    for bad in [
        "vpn.example.net",
        "vpn.example.net:0",
        "2001:db8::1:51820",
        ":51820",
        "a b:1",
    ] {
        let mut r = request();
        r.endpoints = vec![bad.into()];
        let err = create_invitation(&r, fp, NOW).unwrap_err();
        assert!(matches!(err, TokenError::Request(_)), "{bad}: {err}");
    }
    let mut r = request();
    r.ttl = Duration::ZERO;
    assert!(create_invitation(&r, fp, NOW).is_err());
    let mut r = request();
    r.core = None;
    assert!(matches!(
        create_invitation(&r, fp, NOW),
        Err(TokenError::Identity(_))
    ));
    let mut r = request();
    r.name = "Beta".into();
    assert!(matches!(
        create_invitation(&r, fp, NOW),
        Err(TokenError::Identity(_))
    ));
}

#[test]
fn records_and_secrets_serialize_for_the_ca_database() {
    let (_, token, record) = invitation();
    let json = serde_json::to_string(&record).unwrap();
    assert!(json.contains(&hex::encode(record.secret_hash)), "{json}");
    assert!(json.contains("\"role\":\"spoke\""), "{json}");
    let back: InvitationRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, record);
    let secret_json = serde_json::to_string(&token.secret).unwrap();
    let secret: InvitationSecret = serde_json::from_str(&secret_json).unwrap();
    assert_eq!(secret, token.secret);
    assert!(!format!("{:?}", token).contains(&secret_json.trim_matches('"').to_string()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        let _ = InvitationToken::parse(&text);
    }

    #[test]
    fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        // Give random bodies a valid checksum so the body decoder itself is exercised.
        use base64::Engine;
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let mut payload = bytes.clone();
        payload.extend_from_slice(&digest.as_ref()[..4]);
        let text = format!("meshd1-{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload));
        if let Err(e) = InvitationToken::parse(&text) {
            prop_assert!(matches!(e, TokenError::Invalid(_)), "{}", e);
        }
    }
}
