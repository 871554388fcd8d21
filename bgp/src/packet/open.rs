//! OPEN messages (RFC 4271 §4.2) and the capabilities meshd advertises (RFC 5492).

use std::net::Ipv4Addr;

use super::error::{DecodeError, EncodeError};
use super::nlri::Family;
use super::reader::Reader;

/// AS_TRANS (RFC 6793): the 2-octet stand-in for a 4-octet AS number.
pub const AS_TRANS: u16 = 23456;

const PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072: an optional-parameters length of 255 followed by this type means 2-octet lengths.
const PARAM_EXTENDED_LENGTH: u8 = 255;

const CAP_MULTIPROTOCOL: u8 = 1;
const CAP_ROUTE_REFRESH: u8 = 2;
const CAP_EXTENDED_NEXT_HOP: u8 = 5;
const CAP_FOUR_OCTET_AS: u8 = 65;

/// One capability (RFC 5492). Those meshd does not use are kept as [`Capability::Unknown`] so
/// that they can be logged and ignored, as RFC 5492 §3 asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    /// RFC 4760: the speaker can exchange routes of this family. An unsupported (AFI, SAFI) is
    /// kept raw so that the pair still counts as advertised.
    Multiprotocol {
        afi: u16,
        safi: u8,
    },
    /// RFC 2918.
    RouteRefresh,
    /// RFC 8950: NLRI of (afi, safi) may carry a next hop of `next_hop_afi`.
    ExtendedNextHop(Vec<ExtendedNextHopEntry>),
    /// RFC 6793: the speaker's real AS number.
    FourOctetAs(u32),
    Unknown {
        code: u8,
        value: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtendedNextHopEntry {
    pub afi: u16,
    pub safi: u16,
    pub next_hop_afi: u16,
}

/// An OPEN message. `my_as` is the 2-octet field; the real AS of a 4-octet speaker is in its
/// [`Capability::FourOctetAs`] (see [`Open::asn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// An OPEN for a 4-octet-AS speaker: `my_as` becomes AS_TRANS when `asn` needs 4 octets.
    pub fn new(
        asn: u32,
        hold_time: u16,
        bgp_id: Ipv4Addr,
        mut capabilities: Vec<Capability>,
    ) -> Open {
        if !capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)))
        {
            capabilities.push(Capability::FourOctetAs(asn));
        }
        Open {
            version: 4,
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_id,
            capabilities,
        }
    }

    /// The sender's AS number: the 4-octet capability if present, else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(u32::from(self.my_as))
    }

    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    /// Families the sender advertised with the multiprotocol capability. A speaker that sends
    /// no multiprotocol capability at all speaks IPv4 unicast only (RFC 4760 §8).
    pub fn families(&self) -> Vec<Family> {
        let mut any_mp = false;
        let mut out = Vec::new();
        for c in &self.capabilities {
            if let Capability::Multiprotocol { afi, safi } = c {
                any_mp = true;
                if let Some(f) = Family::from_afi_safi(*afi, *safi)
                    && !out.contains(&f)
                {
                    out.push(f);
                }
            }
        }
        if !any_mp {
            out.push(Family::Ipv4Unicast);
        }
        out
    }

    pub fn route_refresh(&self) -> bool {
        self.capabilities.contains(&Capability::RouteRefresh)
    }

    /// Whether the sender accepts IPv4 unicast NLRI with an IPv6 next hop (RFC 8950).
    pub fn ipv4_over_ipv6_next_hop(&self) -> bool {
        self.capabilities.iter().any(|c| match c {
            Capability::ExtendedNextHop(entries) => entries.iter().any(|e| {
                e.afi == super::nlri::AFI_IPV4
                    && e.safi == u16::from(super::nlri::SAFI_UNICAST)
                    && e.next_hop_afi == super::nlri::AFI_IPV6
            }),
            _ => false,
        })
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Open, DecodeError> {
        let mut r = Reader::new(body);
        let short = DecodeError::MalformedOpen {
            what: "shorter than its fixed fields",
        };
        let version = r.u8().ok_or(short.clone())?;
        if version != 4 {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let my_as = r.u16().ok_or(short.clone())?;
        let hold_time = r.u16().ok_or(short.clone())?;
        let bgp_id = Ipv4Addr::from(r.u32().ok_or(short.clone())?);
        let mut params_len = usize::from(r.u8().ok_or(short)?);
        let mut extended = false;
        // RFC 9072 §2: a non-extended parameter can never have type 255, so 255/255 is unambiguous.
        if params_len == 255 && r.clone().u8() == Some(PARAM_EXTENDED_LENGTH) {
            r.u8();
            params_len = usize::from(r.u16().ok_or(DecodeError::MalformedOpen {
                what: "truncated extended optional parameters length",
            })?);
            extended = true;
        }
        if params_len != r.remaining() {
            return Err(DecodeError::MalformedOpen {
                what: "optional parameters length does not match the message length",
            });
        }
        let mut capabilities = Vec::new();
        while !r.is_empty() {
            let kind = r.u8().ok_or(DecodeError::MalformedOpen {
                what: "truncated optional parameter",
            })?;
            let len = if extended {
                r.u16()
            } else {
                r.u8().map(u16::from)
            };
            let value =
                len.and_then(|len| r.take(usize::from(len)))
                    .ok_or(DecodeError::MalformedOpen {
                        what: "optional parameter runs past the end of the message",
                    })?;
            if kind != PARAM_CAPABILITIES {
                return Err(DecodeError::UnsupportedOptionalParameter { kind });
            }
            decode_capabilities(value, &mut capabilities)?;
        }
        Ok(Open {
            version,
            my_as,
            hold_time,
            bgp_id,
            capabilities,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.version);
        out.extend_from_slice(&self.my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.bgp_id.octets());
        let mut caps = Vec::new();
        for c in &self.capabilities {
            encode_capability(c, &mut caps)?;
        }
        if caps.is_empty() {
            out.push(0);
            return Ok(());
        }
        // One parameter holding every capability, as BIRD and FRR send them.
        let caps_len = u8::try_from(caps.len()).map_err(|_| EncodeError::FieldTooLong {
            what: "capabilities parameter",
        })?;
        let params_len = caps_len.checked_add(2).ok_or(EncodeError::FieldTooLong {
            what: "optional parameters",
        })?;
        out.push(params_len);
        out.push(PARAM_CAPABILITIES);
        out.push(caps_len);
        out.extend_from_slice(&caps);
        Ok(())
    }
}

fn decode_capabilities(bytes: &[u8], out: &mut Vec<Capability>) -> Result<(), DecodeError> {
    let mut r = Reader::new(bytes);
    let truncated = DecodeError::MalformedOpen {
        what: "capability runs past the end of its parameter",
    };
    while !r.is_empty() {
        let code = r.u8().ok_or(truncated.clone())?;
        let len = r.u8().ok_or(truncated.clone())?;
        let value = r.take(usize::from(len)).ok_or(truncated.clone())?;
        out.push(decode_capability(code, value)?);
    }
    Ok(())
}

fn decode_capability(code: u8, value: &[u8]) -> Result<Capability, DecodeError> {
    let bad = |what| DecodeError::MalformedOpen { what };
    let mut r = Reader::new(value);
    Ok(match code {
        CAP_MULTIPROTOCOL => {
            if value.len() != 4 {
                return Err(bad("multiprotocol capability is not 4 octets"));
            }
            let afi = r.u16().ok_or(bad("multiprotocol capability"))?;
            r.u8();
            let safi = r.u8().ok_or(bad("multiprotocol capability"))?;
            Capability::Multiprotocol { afi, safi }
        }
        CAP_ROUTE_REFRESH => {
            if !value.is_empty() {
                return Err(bad("route refresh capability has a value"));
            }
            Capability::RouteRefresh
        }
        CAP_EXTENDED_NEXT_HOP => {
            if !value.len().is_multiple_of(6) {
                return Err(bad(
                    "extended next hop capability is not a multiple of 6 octets",
                ));
            }
            let mut entries = Vec::new();
            while let (Some(afi), Some(safi), Some(next_hop_afi)) = (r.u16(), r.u16(), r.u16()) {
                entries.push(ExtendedNextHopEntry {
                    afi,
                    safi,
                    next_hop_afi,
                });
            }
            Capability::ExtendedNextHop(entries)
        }
        CAP_FOUR_OCTET_AS => {
            if value.len() != 4 {
                return Err(bad("4-octet AS capability is not 4 octets"));
            }
            Capability::FourOctetAs(r.u32().ok_or(bad("4-octet AS capability"))?)
        }
        _ => Capability::Unknown {
            code,
            value: value.to_vec(),
        },
    })
}

fn encode_capability(c: &Capability, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut value = Vec::new();
    let code = match c {
        Capability::Multiprotocol { afi, safi } => {
            value.extend_from_slice(&afi.to_be_bytes());
            value.push(0);
            value.push(*safi);
            CAP_MULTIPROTOCOL
        }
        Capability::RouteRefresh => CAP_ROUTE_REFRESH,
        Capability::ExtendedNextHop(entries) => {
            for e in entries {
                value.extend_from_slice(&e.afi.to_be_bytes());
                value.extend_from_slice(&e.safi.to_be_bytes());
                value.extend_from_slice(&e.next_hop_afi.to_be_bytes());
            }
            CAP_EXTENDED_NEXT_HOP
        }
        Capability::FourOctetAs(asn) => {
            value.extend_from_slice(&asn.to_be_bytes());
            CAP_FOUR_OCTET_AS
        }
        Capability::Unknown { code, value: v } => {
            value.extend_from_slice(v);
            *code
        }
    };
    out.push(code);
    out.push(
        u8::try_from(value.len()).map_err(|_| EncodeError::FieldTooLong { what: "capability" })?,
    );
    out.extend_from_slice(&value);
    Ok(())
}
