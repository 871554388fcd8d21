//! The object identifier of the meshd node-identity extension, and how it gets into a
//! certificate even though rcgen cannot write it.
//!
//! We own an OID arc without registering anything by using a UUID OID (ITU-T X.667 / RFC 4122
//! section 4.1 of ISO/IEC 9834-8): `2.25.<UUID as one decimal integer>`. The UUID below was drawn
//! once from ring's `SystemRandom` and is fixed forever: changing it would make every issued
//! certificate unreadable.
//!
//! rcgen only writes OID arcs that fit in a `u64`, and a UUID arc is 122+ bits. So certificates
//! are built with a *placeholder* OID whose DER encoding has exactly the same length, and the
//! signer swaps placeholder for real OID in the to-be-signed bytes before signing; the issuer
//! then makes the same swap in the finished certificate. Lengths are equal, so no DER length
//! changes and the signature covers the certificate exactly as it is published.

use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};

/// The UUID behind our OID arc, in its usual text form.
pub const MESHD_IDENTITY_UUID: &str = "1eead2fa-58f9-4e14-b745-ce4945e3a75f";

/// The node-identity extension OID in dotted form.
pub const MESHD_IDENTITY_OID: &str = "2.25.41096116479038093389152917573440087903";

/// The same UUID as a number (the arc below `2.25`).
const UUID_VALUE: u128 = 0x1eea_d2fa_58f9_4e14_b745_ce49_45e3_a75f;

/// Number of base-128 digits needed for `v` (at least one).
const fn base128_len(mut v: u128) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Appends `v` in base 128, most significant digit first, high bit set on all but the last digit
/// (X.690 8.19.2). Returns the new write position.
const fn write_base128<const N: usize>(out: &mut [u8; N], mut pos: usize, v: u128) -> usize {
    let len = base128_len(v);
    let mut i = 0;
    while i < len {
        let shift = 7 * (len - 1 - i);
        let digit = ((v >> shift) & 0x7f) as u8;
        out[pos] = if i + 1 < len { digit | 0x80 } else { digit };
        pos += 1;
        i += 1;
    }
    pos
}

/// First content octet for `2.25`: 40 * 2 + 25 (X.690 8.19.4).
const ARC_2_25: u8 = 105;

/// Length of the OID's DER content octets.
pub(crate) const OID_CONTENT_LEN: usize = 1 + base128_len(UUID_VALUE);

/// DER content octets (no tag, no length) of [`MESHD_IDENTITY_OID`].
pub(crate) const OID_CONTENT: [u8; OID_CONTENT_LEN] = {
    let mut out = [0u8; OID_CONTENT_LEN];
    out[0] = ARC_2_25;
    let end = write_base128(&mut out, 1, UUID_VALUE);
    assert!(end == OID_CONTENT_LEN);
    out
};

/// Placeholder arcs `2.25.A.B`: both fit a `u64` so rcgen can write them, and their encoding
/// takes exactly as many octets as the real OID (10 + 8 = 18 digits). The values spell
/// "meshd1" / "placeho" so a stray placeholder is easy to recognise in a hex dump.
const PLACEHOLDER_A: u64 = 0x8000_6d65_7368_6431;
const PLACEHOLDER_B: u64 = 0x0070_6c61_6365_686f;

/// Placeholder OID arcs, as rcgen wants them.
pub(crate) const PLACEHOLDER_ARCS: [u64; 4] = [2, 25, PLACEHOLDER_A, PLACEHOLDER_B];

const _: () = assert!(
    1 + base128_len(PLACEHOLDER_A as u128) + base128_len(PLACEHOLDER_B as u128) == OID_CONTENT_LEN
);

/// Tag, length and content octets of the placeholder OID.
const PLACEHOLDER_TLV: [u8; 2 + OID_CONTENT_LEN] = {
    let mut out = [0u8; 2 + OID_CONTENT_LEN];
    out[0] = 0x06; // OBJECT IDENTIFIER
    out[1] = OID_CONTENT_LEN as u8;
    out[2] = ARC_2_25;
    let pos = write_base128(&mut out, 3, PLACEHOLDER_A as u128);
    let end = write_base128(&mut out, pos, PLACEHOLDER_B as u128);
    assert!(end == out.len());
    out
};

/// Replaces the one placeholder OID in `der` by the real OID, in place.
///
/// Fails (returns `false`, leaving `der` untouched) unless the placeholder occurs exactly once:
/// a second occurrence could only come from attacker-chosen bytes (say, a WireGuard key crafted
/// to contain it), and we refuse to guess which one is ours.
pub(crate) fn swap_placeholder(der: &mut [u8]) -> bool {
    let needle = &PLACEHOLDER_TLV;
    let mut found = der
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w == needle)
        .map(|(i, _)| i);
    let (Some(at), None) = (found.next(), found.next()) else {
        return false;
    };
    der[at + 2..at + needle.len()].copy_from_slice(&OID_CONTENT);
    true
}

/// A signer that signs the to-be-signed bytes *after* swapping in the real OID, so that the
/// signature is valid for the certificate once [`swap_placeholder`] has been applied to it.
pub(crate) struct OidSwappingSigner<'a, K> {
    inner: &'a K,
}

impl<'a, K: SigningKey> OidSwappingSigner<'a, K> {
    pub(crate) fn new(inner: &'a K) -> Self {
        OidSwappingSigner { inner }
    }
}

impl<K: SigningKey> PublicKeyData for OidSwappingSigner<'_, K> {
    fn der_bytes(&self) -> &[u8] {
        self.inner.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.inner.algorithm()
    }
}

impl<K: SigningKey> SigningKey for OidSwappingSigner<'_, K> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let mut tbs = msg.to_vec();
        if !swap_placeholder(&mut tbs) {
            // The issuer checks the finished certificate the same way and reports this clearly;
            // the signature made here is then thrown away.
            return Err(rcgen::Error::RemoteKeyError);
        }
        self.inner.sign(&tbs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_number_and_oid_agree() {
        let hex: String = MESHD_IDENTITY_UUID.chars().filter(|c| *c != '-').collect();
        assert_eq!(u128::from_str_radix(&hex, 16).unwrap(), UUID_VALUE);
        assert_eq!(MESHD_IDENTITY_OID, format!("2.25.{UUID_VALUE}"));
        // Version 4 (random) and the RFC 4122 variant.
        assert_eq!((UUID_VALUE >> 76) & 0xf, 4);
        assert_eq!((UUID_VALUE >> 62) & 0x3, 0b10);
    }

    #[test]
    fn oid_content_decodes_back_to_the_dotted_form() {
        // Decode the base-128 digits by hand, independently of the encoder.
        assert_eq!(OID_CONTENT[0], 105);
        let mut value: u128 = 0;
        for (i, b) in OID_CONTENT[1..].iter().enumerate() {
            value = (value << 7) | u128::from(b & 0x7f);
            let last = i + 2 == OID_CONTENT.len();
            assert_eq!(b & 0x80 == 0, last, "continuation bit wrong at {i}");
        }
        assert_eq!(value, UUID_VALUE);
    }

    #[test]
    fn placeholder_matches_what_yasna_writes() {
        let der = yasna::construct_der(|w| {
            w.write_oid(&yasna::models::ObjectIdentifier::from_slice(
                &PLACEHOLDER_ARCS,
            ))
        });
        assert_eq!(der, PLACEHOLDER_TLV);
    }

    #[test]
    fn swap_requires_exactly_one_placeholder() {
        let mut none = vec![0u8; 40];
        assert!(!swap_placeholder(&mut none));

        let mut one = [&[1u8, 2][..], &PLACEHOLDER_TLV, &[3]].concat();
        assert!(swap_placeholder(&mut one));
        assert_eq!(&one[4..4 + OID_CONTENT_LEN], &OID_CONTENT);

        let mut two = [&PLACEHOLDER_TLV[..], &PLACEHOLDER_TLV].concat();
        let before = two.clone();
        assert!(!swap_placeholder(&mut two));
        assert_eq!(two, before);
    }
}
