//! UPDATE messages (RFC 4271 §4.3) with MP_REACH/MP_UNREACH (RFC 4760) and the RFC 7606
//! decisions that need the whole message (missing mandatory attributes, overruns).

use ipnet::{IpNet, Ipv4Net};

use super::attr::{
    DecodedAttributes, MpReach, MpUnreach, NextHop, PathAttributes, decode_attributes,
    encode_mp_reach, encode_mp_unreach, types,
};
use super::error::{AttrProblem, DecodeError, EncodeError, ErrorAction};
use super::nlri::{Family, decode_v4_prefixes, encode_prefix};
use super::reader::Reader;

/// An UPDATE. `withdrawn` and `nlri` are the IPv4 fields of RFC 4271; other families (and IPv4
/// with an IPv6 next hop) travel in `mp_reach`/`mp_unreach`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Net>,
    pub attributes: PathAttributes,
    pub nlri: Vec<Ipv4Net>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// Malformed attributes RFC 7606 lets the session survive (only set by decoding).
    pub problems: Vec<AttrProblem>,
}

impl Update {
    /// End-of-RIB marker for `family` (RFC 4724 §2): an empty UPDATE for IPv4, an empty
    /// MP_UNREACH for the others.
    pub fn end_of_rib(family: Family) -> Update {
        match family {
            Family::Ipv4Unicast => Update::default(),
            Family::Ipv6Unicast => Update {
                mp_unreach: Some(MpUnreach {
                    family,
                    withdrawn: vec![],
                }),
                ..Update::default()
            },
        }
    }

    /// The family this UPDATE marks the end of the initial table for, if it is such a marker.
    pub fn is_end_of_rib(&self) -> Option<Family> {
        let no_routes =
            self.withdrawn.is_empty() && self.nlri.is_empty() && self.mp_reach.is_none();
        if !no_routes || self.attributes != PathAttributes::default() {
            return None;
        }
        match &self.mp_unreach {
            None => Some(Family::Ipv4Unicast),
            Some(u) if u.withdrawn.is_empty() => Some(u.family),
            Some(_) => None,
        }
    }

    /// Whether RFC 7606 says to handle every announced prefix as withdrawn.
    pub fn treat_as_withdraw(&self) -> bool {
        self.problems
            .iter()
            .any(|p| p.action == ErrorAction::TreatAsWithdraw)
    }

    /// Prefixes this UPDATE withdraws, from both the IPv4 field and MP_UNREACH.
    pub fn withdrawn_prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.withdrawn.iter().map(|p| IpNet::V4(*p)).chain(
            self.mp_unreach
                .iter()
                .flat_map(|u| u.withdrawn.iter().copied()),
        )
    }

    /// Prefixes this UPDATE announces, each with its next hop. A classic IPv4 prefix without a
    /// NEXT_HOP attribute is skipped (decoding makes that a treat-as-withdraw problem).
    pub fn announced(&self) -> impl Iterator<Item = (IpNet, NextHop)> + '_ {
        let v4 = self.attributes.next_hop.into_iter().flat_map(move |nh| {
            self.nlri
                .iter()
                .map(move |p| (IpNet::V4(*p), NextHop::V4(nh)))
        });
        v4.chain(
            self.mp_reach
                .iter()
                .flat_map(|r| r.nlri.iter().map(move |p| (*p, r.next_hop))),
        )
    }

    pub(crate) fn decode(body: &[u8], four_octet_as: bool) -> Result<Update, DecodeError> {
        let mut r = Reader::new(body);
        let malformed = |what| DecodeError::MalformedAttributeList { what };
        let wlen = r
            .u16()
            .ok_or(malformed("truncated withdrawn routes length"))?;
        let wbytes = r
            .take(usize::from(wlen))
            .ok_or(malformed("withdrawn routes length exceeds the message"))?;
        let alen = r
            .u16()
            .ok_or(malformed("truncated total path attribute length"))?;
        let abytes = r
            .take(usize::from(alen))
            .ok_or(malformed("total path attribute length exceeds the message"))?;
        let nlri_bytes = r.rest();
        let withdrawn = decode_v4_prefixes(wbytes)
            .map_err(|e| DecodeError::InvalidNetworkField { what: e.describe() })?;
        let nlri = decode_v4_prefixes(nlri_bytes)
            .map_err(|e| DecodeError::InvalidNetworkField { what: e.describe() })?;
        let DecodedAttributes {
            attributes,
            mp_reach,
            mp_unreach,
            mut problems,
            seen,
            overrun,
        } = decode_attributes(abytes, four_octet_as)?;
        // RFC 7606 §4/§5.3: when the attribute field could not be read to its end, an
        // MP_REACH/MP_UNREACH may have been missed; treat-as-withdraw is only safe when the
        // routes are all in the IPv4 fields and no MP attribute was seen.
        if overrun && (mp_reach.is_some() || mp_unreach.is_some() || nlri.is_empty()) {
            return Err(malformed(
                "attribute length runs past the path attribute field",
            ));
        }
        // RFC 7606 §3 d: a missing well-known mandatory attribute means treat-as-withdraw.
        if !overrun && (!nlri.is_empty() || mp_reach.is_some()) {
            let mut required = vec![types::ORIGIN, types::AS_PATH];
            if !nlri.is_empty() {
                required.push(types::NEXT_HOP);
            }
            for t in required {
                if !seen.contains(&t) {
                    problems.push(AttrProblem {
                        type_code: t,
                        action: ErrorAction::TreatAsWithdraw,
                        what: "missing well-known mandatory attribute",
                    });
                }
            }
        }
        Ok(Update {
            withdrawn,
            attributes,
            nlri,
            mp_reach,
            mp_unreach,
            problems,
        })
    }

    pub(crate) fn encode(&self, four_octet_as: bool, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut w = Vec::new();
        for p in &self.withdrawn {
            encode_prefix(&IpNet::V4(*p), &mut w);
        }
        // RFC 7606 §5.1: MP attributes first, so a receiver finds them even if a later
        // attribute is damaged.
        let mut a = Vec::new();
        if let Some(mp) = &self.mp_reach {
            encode_mp_reach(mp, &mut a)?;
        }
        if let Some(mp) = &self.mp_unreach {
            encode_mp_unreach(mp, &mut a)?;
        }
        self.attributes.encode(four_octet_as, &mut a)?;
        let too_long = |what| EncodeError::FieldTooLong { what };
        out.extend_from_slice(
            &u16::try_from(w.len())
                .map_err(|_| too_long("withdrawn routes"))?
                .to_be_bytes(),
        );
        out.extend_from_slice(&w);
        out.extend_from_slice(
            &u16::try_from(a.len())
                .map_err(|_| too_long("path attributes"))?
                .to_be_bytes(),
        );
        out.extend_from_slice(&a);
        for p in &self.nlri {
            encode_prefix(&IpNet::V4(*p), out);
        }
        Ok(())
    }
}
