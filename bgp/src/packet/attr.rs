//! Path attributes (RFC 4271 §4.3 and §5, RFC 1997, 4456, 4760, 6793, 8092) and the RFC 7606
//! rules for what a malformed one costs: the session, the UPDATE's routes, or just itself.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::aspath::AsPath;
use super::error::{AttrProblem, DecodeError, EncodeError, ErrorAction};
use super::nlri::{Family, decode_prefixes, encode_prefix};
use super::open::AS_TRANS;
use super::reader::Reader;

pub mod types {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MED: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH: u8 = 14;
    pub const MP_UNREACH: u8 = 15;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

pub mod flags {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    pub asn: u32,
    pub address: Ipv4Addr,
}

/// RFC 8092 large community: global administrator and two local data parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global: u32,
    pub local1: u32,
    pub local2: u32,
}

/// An attribute meshd does not interpret, kept to pass on (optional transitive ones only).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// The attributes of a route, with AS numbers always 4 octets wide (an AS4_PATH or
/// AS4_AGGREGATOR from a 2-octet speaker is merged in while decoding). Empty lists mean absent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PathAttributes {
    pub origin: Option<Origin>,
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    pub communities: Vec<u32>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub large_communities: Vec<LargeCommunity>,
    pub unknown: Vec<RawAttribute>,
}

/// The next hop of an MP_REACH_NLRI: an IPv4 address, or an IPv6 global address with an
/// optional link-local one (RFC 2545 §3); RFC 8950 allows the IPv6 form for IPv4 routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHop {
    V4(Ipv4Addr),
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub family: Family,
    pub next_hop: NextHop,
    pub nlri: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: Family,
    pub withdrawn: Vec<IpNet>,
}

/// Everything the path attribute field of an UPDATE decoded to.
#[derive(Debug, Default)]
pub(crate) struct DecodedAttributes {
    pub attributes: PathAttributes,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    pub problems: Vec<AttrProblem>,
    /// Type codes seen, for the well-known-mandatory check.
    pub seen: Vec<u8>,
    /// An attribute ran past the end of the field, so attributes after it were not seen.
    pub overrun: bool,
}

/// What a malformed value of a known attribute costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnMalformed {
    /// The session survives (RFC 7606): the problem is recorded with this action.
    Recorded(ErrorAction),
    /// The session is reset: MP_REACH_NLRI and MP_UNREACH_NLRI, whose routes cannot be found
    /// once the attribute is malformed (and which may not appear twice, RFC 7606 §3 g).
    ResetSession,
}

/// A value decoder: stores what `value` says in `d`, or names what is wrong with it. The
/// length rule is the decoder's own, since AGGREGATOR's depends on the session and the AS4
/// attributes are ignored on a 4-octet session whatever their length.
type Decoder = fn(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str>;

/// One attribute meshd knows: the flags RFC 4271 fixes for it (optional and transitive bits),
/// what a malformed one costs, and its decoder.
#[derive(Debug)]
struct AttrSpec {
    type_code: u8,
    flags: u8,
    on_malformed: OnMalformed,
    decode: Decoder,
}

const WELL_KNOWN: u8 = flags::TRANSITIVE;
const OPTIONAL_TRANSITIVE: u8 = flags::OPTIONAL | flags::TRANSITIVE;
const OPTIONAL: u8 = flags::OPTIONAL;
const WITHDRAW: OnMalformed = OnMalformed::Recorded(ErrorAction::TreatAsWithdraw);
const DISCARD: OnMalformed = OnMalformed::Recorded(ErrorAction::AttributeDiscard);
const RESET: OnMalformed = OnMalformed::ResetSession;

const fn row(type_code: u8, flags: u8, on_malformed: OnMalformed, decode: Decoder) -> AttrSpec {
    AttrSpec {
        type_code,
        flags,
        on_malformed,
        decode,
    }
}

/// Every attribute meshd interprets. The third column follows RFC 7606 §7 (RFC 6793 §6 for the
/// AS4 attributes): attribute discard where the attribute does not choose routes, a session
/// reset for the MP attributes, treat-as-withdraw for the rest.
const KNOWN: &[AttrSpec] = &[
    row(types::ORIGIN, WELL_KNOWN, WITHDRAW, decode_origin),
    row(types::AS_PATH, WELL_KNOWN, WITHDRAW, decode_as_path),
    row(types::NEXT_HOP, WELL_KNOWN, WITHDRAW, decode_next_hop),
    row(types::MED, OPTIONAL, WITHDRAW, decode_med),
    row(types::LOCAL_PREF, WELL_KNOWN, WITHDRAW, decode_local_pref),
    row(
        types::ATOMIC_AGGREGATE,
        WELL_KNOWN,
        DISCARD,
        decode_atomic_aggregate,
    ),
    row(
        types::AGGREGATOR,
        OPTIONAL_TRANSITIVE,
        DISCARD,
        decode_aggregator_attr,
    ),
    row(
        types::COMMUNITIES,
        OPTIONAL_TRANSITIVE,
        WITHDRAW,
        decode_communities,
    ),
    row(
        types::ORIGINATOR_ID,
        OPTIONAL,
        WITHDRAW,
        decode_originator_id,
    ),
    row(types::CLUSTER_LIST, OPTIONAL, WITHDRAW, decode_cluster_list),
    row(types::MP_REACH, OPTIONAL, RESET, decode_mp_reach_attr),
    row(types::MP_UNREACH, OPTIONAL, RESET, decode_mp_unreach_attr),
    row(
        types::AS4_PATH,
        OPTIONAL_TRANSITIVE,
        DISCARD,
        decode_as4_path,
    ),
    row(
        types::AS4_AGGREGATOR,
        OPTIONAL_TRANSITIVE,
        DISCARD,
        decode_as4_aggregator,
    ),
    row(
        types::LARGE_COMMUNITIES,
        OPTIONAL_TRANSITIVE,
        WITHDRAW,
        decode_large_communities,
    ),
];

fn spec(type_code: u8) -> Option<&'static AttrSpec> {
    KNOWN.iter().find(|s| s.type_code == type_code)
}

/// The flags meshd sends a known attribute with.
fn known_flags(type_code: u8) -> u8 {
    spec(type_code).map_or(0, |s| s.flags)
}

/// The state of one decoding: what is decoded so far, and the AS4 attributes that are merged
/// in at the end.
#[derive(Debug)]
struct Decoding {
    out: DecodedAttributes,
    four_octet_as: bool,
    as4_path: Option<AsPath>,
    as4_aggregator: Option<Aggregator>,
}

/// Decodes the path attribute field. `four_octet_as` is whether both speakers announced the
/// 4-octet AS capability, which decides the width of AS numbers in AS_PATH and AGGREGATOR.
pub(crate) fn decode_attributes(
    bytes: &[u8],
    four_octet_as: bool,
) -> Result<DecodedAttributes, DecodeError> {
    let mut d = Decoding {
        out: DecodedAttributes::default(),
        four_octet_as,
        as4_path: None,
        as4_aggregator: None,
    };
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let start = bytes.len() - r.remaining();
        let flag_bits = r.u8();
        let type_code = r.u8();
        let len = match flag_bits {
            Some(f) if f & flags::EXTENDED_LENGTH != 0 => r.u16().map(usize::from),
            _ => r.u8().map(usize::from),
        };
        let (Some(flag_bits), Some(type_code), Some(value)) =
            (flag_bits, type_code, len.and_then(|len| r.take(len)))
        else {
            // RFC 7606 §4: an attribute that overruns the field leaves the rest of the field
            // unparseable. The caller decides between treat-as-withdraw and a session reset.
            d.out.overrun = true;
            d.out.problems.push(AttrProblem {
                type_code: type_code.unwrap_or(0),
                action: ErrorAction::TreatAsWithdraw,
                what: "attribute length runs past the path attribute field",
            });
            break;
        };
        let whole = &bytes[start..bytes.len() - r.remaining()];
        let problem = |action, what| AttrProblem {
            type_code,
            action,
            what,
        };
        let known = spec(type_code);
        let resets = known.is_some_and(|s| s.on_malformed == OnMalformed::ResetSession);

        if d.out.seen.contains(&type_code) {
            // RFC 7606 §3 g: only MP_REACH/MP_UNREACH repeated ends the session.
            if resets {
                return Err(DecodeError::MalformedAttributeList {
                    what: "MP_REACH_NLRI or MP_UNREACH_NLRI appears twice",
                });
            }
            d.out.problems.push(problem(
                ErrorAction::AttributeDiscard,
                "repeated attribute, all but the first ignored",
            ));
            continue;
        }
        d.out.seen.push(type_code);

        let Some(known) = known else {
            if flag_bits & flags::OPTIONAL == 0 {
                return Err(DecodeError::UnrecognizedWellKnown {
                    type_code,
                    attribute: whole.to_vec(),
                });
            }
            // Unknown optional non-transitive attributes are dropped silently (RFC 4271 §5).
            if flag_bits & flags::TRANSITIVE != 0 {
                d.out.attributes.unknown.push(RawAttribute {
                    flags: flag_bits & !flags::EXTENDED_LENGTH,
                    type_code,
                    value: value.to_vec(),
                });
            }
            continue;
        };
        let malformed_mp = |what| DecodeError::MalformedMpAttribute {
            what,
            attribute: whole.to_vec(),
        };
        if flag_bits & (flags::OPTIONAL | flags::TRANSITIVE) != known.flags {
            if resets {
                return Err(malformed_mp("MP attribute flags"));
            }
            d.out.problems.push(problem(
                ErrorAction::TreatAsWithdraw,
                "attribute flags are wrong",
            ));
            continue;
        }
        if let Err(what) = (known.decode)(&mut d, value) {
            match known.on_malformed {
                OnMalformed::Recorded(action) => d.out.problems.push(problem(action, what)),
                OnMalformed::ResetSession => return Err(malformed_mp(what)),
            }
        }
    }

    let mut out = d.out;
    if let (Some(path), Some(as4)) = (&out.attributes.as_path, &d.as4_path) {
        out.attributes.as_path = Some(path.merge_as4(as4));
    }
    // RFC 6793 §4.2.3: AS4_AGGREGATOR counts only when AGGREGATOR carries AS_TRANS.
    if let (Some(agg), Some(agg4)) = (out.attributes.aggregator, d.as4_aggregator)
        && agg.asn == u32::from(AS_TRANS)
    {
        out.attributes.aggregator = Some(agg4);
    }
    Ok(out)
}

/// `value` as exactly `N` octets.
fn exactly<const N: usize>(value: &[u8]) -> Option<[u8; N]> {
    value.try_into().ok()
}

/// `value` as one or more items of `N` octets.
fn items<const N: usize>(value: &[u8]) -> Option<impl Iterator<Item = [u8; N]> + '_> {
    (!value.is_empty() && value.len().is_multiple_of(N)).then(|| {
        value
            .chunks_exact(N)
            .map(|c| <[u8; N]>::try_from(c).expect("chunks_exact gives N octets"))
    })
}

fn decode_origin(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    d.out.attributes.origin = Some(match value {
        [0] => Origin::Igp,
        [1] => Origin::Egp,
        [2] => Origin::Incomplete,
        _ => return Err("ORIGIN is not one octet of 0, 1 or 2"),
    });
    Ok(())
}

fn decode_as_path(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    let width = if d.four_octet_as { 4 } else { 2 };
    d.out.attributes.as_path = Some(AsPath::decode(value, width).ok_or("AS_PATH is malformed")?);
    Ok(())
}

fn decode_next_hop(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    let octets = exactly::<4>(value).ok_or("NEXT_HOP is not 4 octets")?;
    d.out.attributes.next_hop = Some(Ipv4Addr::from(octets));
    Ok(())
}

fn decode_med(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    let octets = exactly::<4>(value).ok_or("MULTI_EXIT_DISC is not 4 octets")?;
    d.out.attributes.med = Some(u32::from_be_bytes(octets));
    Ok(())
}

fn decode_local_pref(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    let octets = exactly::<4>(value).ok_or("LOCAL_PREF is not 4 octets")?;
    d.out.attributes.local_pref = Some(u32::from_be_bytes(octets));
    Ok(())
}

fn decode_atomic_aggregate(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    if !value.is_empty() {
        return Err("ATOMIC_AGGREGATE has a value");
    }
    d.out.attributes.atomic_aggregate = true;
    Ok(())
}

fn decode_aggregator_attr(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    let agg = decode_aggregator(value, d.four_octet_as).ok_or("AGGREGATOR has the wrong length")?;
    d.out.attributes.aggregator = Some(agg);
    Ok(())
}

fn decode_communities(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    let items = items::<4>(value).ok_or("COMMUNITIES is not a multiple of 4 octets")?;
    d.out.attributes.communities = items.map(u32::from_be_bytes).collect();
    Ok(())
}

fn decode_originator_id(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    let octets = exactly::<4>(value).ok_or("ORIGINATOR_ID is not 4 octets")?;
    d.out.attributes.originator_id = Some(Ipv4Addr::from(octets));
    Ok(())
}

fn decode_cluster_list(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    let items = items::<4>(value).ok_or("CLUSTER_LIST is not a multiple of 4 octets")?;
    d.out.attributes.cluster_list = items.map(Ipv4Addr::from).collect();
    Ok(())
}

fn decode_large_communities(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    let items = items::<12>(value).ok_or("LARGE_COMMUNITIES is not a multiple of 12 octets")?;
    d.out.attributes.large_communities = items
        .map(|c| {
            let word = |i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            LargeCommunity {
                global: word(0),
                local1: word(4),
                local2: word(8),
            }
        })
        .collect();
    Ok(())
}

// RFC 6793 §6: malformed AS4 attributes are discarded; a 4-octet session ignores them
// entirely (§4.1).
fn decode_as4_path(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    if d.four_octet_as {
        return Ok(());
    }
    d.as4_path = Some(AsPath::decode(value, 4).ok_or("AS4_PATH is malformed")?);
    Ok(())
}

fn decode_as4_aggregator(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    if d.four_octet_as {
        return Ok(());
    }
    d.as4_aggregator =
        Some(decode_aggregator(value, true).ok_or("AS4_AGGREGATOR is not 8 octets")?);
    Ok(())
}

fn decode_mp_reach_attr(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    d.out.mp_reach = Some(decode_mp_reach(value)?);
    Ok(())
}

fn decode_mp_unreach_attr(d: &mut Decoding, value: &[u8]) -> Result<(), &'static str> {
    d.out.mp_unreach = Some(decode_mp_unreach(value)?);
    Ok(())
}

fn decode_aggregator(value: &[u8], four_octet_as: bool) -> Option<Aggregator> {
    let mut r = Reader::new(value);
    let asn = if four_octet_as {
        if value.len() != 8 {
            return None;
        }
        r.u32()?
    } else {
        if value.len() != 6 {
            return None;
        }
        u32::from(r.u16()?)
    };
    Some(Aggregator {
        asn,
        address: Ipv4Addr::from(r.u32()?),
    })
}

fn decode_family(r: &mut Reader<'_>) -> Result<Family, &'static str> {
    let afi = r.u16().ok_or("truncated AFI")?;
    let safi = r.u8().ok_or("truncated SAFI")?;
    Family::from_afi_safi(afi, safi).ok_or("address family that was not negotiated")
}

fn decode_mp_reach(value: &[u8]) -> Result<MpReach, &'static str> {
    let mut r = Reader::new(value);
    let family = decode_family(&mut r)?;
    let nh_len = r.u8().ok_or("truncated next hop length")?;
    let nh = r
        .take(usize::from(nh_len))
        .ok_or("next hop runs past the attribute")?;
    let v6 = |b: &[u8]| -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ipv6Addr::from(a)
    };
    let next_hop = match (family, nh.len()) {
        (Family::Ipv4Unicast, 4) => NextHop::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3])),
        (_, 16) => NextHop::V6 {
            global: v6(nh),
            link_local: None,
        },
        (_, 32) => NextHop::V6 {
            global: v6(&nh[..16]),
            link_local: Some(v6(&nh[16..])),
        },
        _ => return Err("next hop length does not fit the address family"),
    };
    r.u8().ok_or("missing reserved octet")?;
    let nlri = decode_prefixes(family, r.rest()).map_err(|e| e.describe())?;
    Ok(MpReach {
        family,
        next_hop,
        nlri,
    })
}

fn decode_mp_unreach(value: &[u8]) -> Result<MpUnreach, &'static str> {
    let mut r = Reader::new(value);
    let family = decode_family(&mut r)?;
    let withdrawn = decode_prefixes(family, r.rest()).map_err(|e| e.describe())?;
    Ok(MpUnreach { family, withdrawn })
}

fn push_attr(
    out: &mut Vec<u8>,
    mut flag_bits: u8,
    type_code: u8,
    value: &[u8],
) -> Result<(), EncodeError> {
    let len = u16::try_from(value.len()).map_err(|_| EncodeError::FieldTooLong {
        what: "path attribute",
    })?;
    flag_bits &= !flags::EXTENDED_LENGTH;
    if len > 255 {
        out.push(flag_bits | flags::EXTENDED_LENGTH);
        out.push(type_code);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(flag_bits);
        out.push(type_code);
        out.push(len as u8);
    }
    out.extend_from_slice(value);
    Ok(())
}

/// Appends a known attribute with the flags of its row in [`KNOWN`].
fn push_known(out: &mut Vec<u8>, type_code: u8, value: &[u8]) -> Result<(), EncodeError> {
    push_attr(out, known_flags(type_code), type_code, value)
}

pub(crate) fn encode_mp_reach(mp: &MpReach, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut v = Vec::new();
    v.extend_from_slice(&mp.family.afi().to_be_bytes());
    v.push(mp.family.safi());
    match mp.next_hop {
        NextHop::V4(a) => {
            v.push(4);
            v.extend_from_slice(&a.octets());
        }
        NextHop::V6 { global, link_local } => {
            v.push(if link_local.is_some() { 32 } else { 16 });
            v.extend_from_slice(&global.octets());
            if let Some(ll) = link_local {
                v.extend_from_slice(&ll.octets());
            }
        }
    }
    v.push(0);
    for p in &mp.nlri {
        encode_prefix(p, &mut v);
    }
    push_known(out, types::MP_REACH, &v)
}

pub(crate) fn encode_mp_unreach(mp: &MpUnreach, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut v = Vec::new();
    v.extend_from_slice(&mp.family.afi().to_be_bytes());
    v.push(mp.family.safi());
    for p in &mp.withdrawn {
        encode_prefix(p, &mut v);
    }
    push_known(out, types::MP_UNREACH, &v)
}

impl PathAttributes {
    /// Appends the attributes in type-code order. With `four_octet_as` false (the peer lacks
    /// the capability), AS numbers above 65535 are sent as AS_TRANS plus AS4_PATH and
    /// AS4_AGGREGATOR (RFC 6793 §4.2.2).
    pub(crate) fn encode(&self, four_octet_as: bool, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let width = if four_octet_as { 4 } else { 2 };
        if let Some(o) = self.origin {
            push_known(out, types::ORIGIN, &[o as u8])?;
        }
        if let Some(p) = &self.as_path {
            let mut v = Vec::new();
            p.encode(width, &mut v);
            push_known(out, types::AS_PATH, &v)?;
        }
        if let Some(nh) = self.next_hop {
            push_known(out, types::NEXT_HOP, &nh.octets())?;
        }
        if let Some(m) = self.med {
            push_known(out, types::MED, &m.to_be_bytes())?;
        }
        if let Some(lp) = self.local_pref {
            push_known(out, types::LOCAL_PREF, &lp.to_be_bytes())?;
        }
        if self.atomic_aggregate {
            push_known(out, types::ATOMIC_AGGREGATE, &[])?;
        }
        if let Some(agg) = self.aggregator {
            let mut v = Vec::new();
            if four_octet_as {
                v.extend_from_slice(&agg.asn.to_be_bytes());
            } else {
                v.extend_from_slice(&u16::try_from(agg.asn).unwrap_or(AS_TRANS).to_be_bytes());
            }
            v.extend_from_slice(&agg.address.octets());
            push_known(out, types::AGGREGATOR, &v)?;
        }
        if !self.communities.is_empty() {
            let v: Vec<u8> = self
                .communities
                .iter()
                .flat_map(|c| c.to_be_bytes())
                .collect();
            push_known(out, types::COMMUNITIES, &v)?;
        }
        if let Some(id) = self.originator_id {
            push_known(out, types::ORIGINATOR_ID, &id.octets())?;
        }
        if !self.cluster_list.is_empty() {
            let v: Vec<u8> = self.cluster_list.iter().flat_map(|c| c.octets()).collect();
            push_known(out, types::CLUSTER_LIST, &v)?;
        }
        if !four_octet_as {
            if let Some(p) = self.as_path.as_ref().filter(|p| p.needs_four_octets()) {
                let mut v = Vec::new();
                p.encode(4, &mut v);
                push_known(out, types::AS4_PATH, &v)?;
            }
            if let Some(agg) = self.aggregator.filter(|a| a.asn > 0xffff) {
                let mut v = agg.asn.to_be_bytes().to_vec();
                v.extend_from_slice(&agg.address.octets());
                push_known(out, types::AS4_AGGREGATOR, &v)?;
            }
        }
        if !self.large_communities.is_empty() {
            let v: Vec<u8> = self
                .large_communities
                .iter()
                .flat_map(|c| {
                    let mut b = [0u8; 12];
                    b[..4].copy_from_slice(&c.global.to_be_bytes());
                    b[4..8].copy_from_slice(&c.local1.to_be_bytes());
                    b[8..].copy_from_slice(&c.local2.to_be_bytes());
                    b
                })
                .collect();
            push_known(out, types::LARGE_COMMUNITIES, &v)?;
        }
        for raw in &self.unknown {
            // A transitive attribute we pass on without understanding it gets the Partial bit
            // (RFC 4271 §5).
            let bits = if raw.flags & flags::TRANSITIVE != 0 {
                raw.flags | flags::PARTIAL
            } else {
                raw.flags
            };
            push_attr(out, bits, raw.type_code, &raw.value)?;
        }
        Ok(())
    }
}
