//! The BGP-4 message codec (RFC 4271 §4) with the extensions meshd speaks. Pure: bytes in,
//! messages out, and back. Decoding never panics; every error says which NOTIFICATION to send,
//! and UPDATE attribute damage is classified per RFC 7606.

mod aspath;
mod attr;
mod error;
mod nlri;
mod notification;
mod open;
mod reader;
mod update;

pub use aspath::{AsPath, AsSegment, SegmentKind};
pub use attr::{
    Aggregator, LargeCommunity, MpReach, MpUnreach, NextHop, Origin, PathAttributes, RawAttribute,
    flags as attr_flags, types as attr_types,
};
pub use error::{AttrProblem, DecodeError, EncodeError, ErrorAction};
pub use nlri::{AFI_IPV4, AFI_IPV6, Family, SAFI_UNICAST, encoded_prefix_len};
pub use notification::{Notification, cease_subcodes, codes, fsm_subcodes, open_subcodes};
pub use open::{AS_TRANS, Capability, ExtendedNextHopEntry, Open};
pub use update::Update;

use reader::Reader;

/// Every message starts with a 16-octet marker, a 2-octet length and a type octet.
pub const HEADER_LEN: usize = 19;
/// RFC 4271 §4.1 (meshd does not negotiate RFC 8654 extended messages).
pub const MAX_MESSAGE_LEN: usize = 4096;

const TYPE_OPEN: u8 = 1;
const TYPE_UPDATE: u8 = 2;
const TYPE_NOTIFICATION: u8 = 3;
const TYPE_KEEPALIVE: u8 = 4;
const TYPE_ROUTE_REFRESH: u8 = 5;

/// What decoding an UPDATE depends on: the session's negotiated options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecOptions {
    /// Both speakers sent the 4-octet AS capability (RFC 6793).
    pub four_octet_as: bool,
}

impl Default for CodecOptions {
    /// Until the OPENs are exchanged nothing but OPEN, NOTIFICATION and KEEPALIVE can arrive,
    /// and meshd only peers with 4-octet speakers' defaults in mind.
    fn default() -> Self {
        CodecOptions {
            four_octet_as: true,
        }
    }
}

/// A ROUTE-REFRESH request (RFC 2918) for one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub afi: u16,
    pub safi: u8,
}

/// One BGP message. UPDATEs dominate the traffic, so boxing them to shrink the rare variants
/// would cost an allocation on the common path for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

impl Message {
    /// The length of the next message in `buf`, once its header is complete; an error when
    /// the header is invalid. The session reader uses this to cut messages out of a stream.
    pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let (length, _) = check_header(&buf[..HEADER_LEN])?;
        Ok(Some(usize::from(length)))
    }

    /// Decodes one whole message (header included). `buf` must be exactly one message.
    pub fn decode(buf: &[u8], options: CodecOptions) -> Result<Message, DecodeError> {
        let header = buf.get(..HEADER_LEN).ok_or(DecodeError::BadLength {
            length: u16::try_from(buf.len()).unwrap_or(u16::MAX),
            kind: 0,
        })?;
        let (length, kind) = check_header(header)?;
        if usize::from(length) != buf.len() {
            return Err(DecodeError::BadLength { length, kind });
        }
        let body = &buf[HEADER_LEN..];
        match kind {
            TYPE_OPEN => Open::decode(body).map(Message::Open),
            TYPE_UPDATE => Update::decode(body, options.four_octet_as).map(Message::Update),
            TYPE_NOTIFICATION => {
                let mut r = Reader::new(body);
                let (Some(code), Some(subcode)) = (r.u8(), r.u8()) else {
                    return Err(DecodeError::ShortNotification);
                };
                Ok(Message::Notification(Notification {
                    code,
                    subcode,
                    data: r.rest().to_vec(),
                }))
            }
            TYPE_KEEPALIVE => Ok(Message::Keepalive),
            TYPE_ROUTE_REFRESH => {
                let mut r = Reader::new(body);
                match (r.u16(), r.u8(), r.u8()) {
                    (Some(afi), Some(_), Some(safi)) => {
                        Ok(Message::RouteRefresh(RouteRefresh { afi, safi }))
                    }
                    _ => Err(DecodeError::BadRouteRefreshLength { length }),
                }
            }
            _ => Err(DecodeError::BadType { kind }),
        }
    }

    /// Encodes the message with its header.
    pub fn encode(&self, options: CodecOptions) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![0xff; 16];
        out.extend_from_slice(&[0, 0, 0]);
        let kind = match self {
            Message::Open(open) => {
                open.encode(&mut out)?;
                TYPE_OPEN
            }
            Message::Update(update) => {
                update.encode(options.four_octet_as, &mut out)?;
                TYPE_UPDATE
            }
            Message::Notification(n) => {
                out.push(n.code);
                out.push(n.subcode);
                out.extend_from_slice(&n.data);
                TYPE_NOTIFICATION
            }
            Message::Keepalive => TYPE_KEEPALIVE,
            Message::RouteRefresh(rr) => {
                out.extend_from_slice(&rr.afi.to_be_bytes());
                out.push(0);
                out.push(rr.safi);
                TYPE_ROUTE_REFRESH
            }
        };
        if out.len() > MAX_MESSAGE_LEN {
            return Err(EncodeError::TooLong { length: out.len() });
        }
        let length = out.len() as u16; // at most MAX_MESSAGE_LEN, checked above
        out[16..18].copy_from_slice(&length.to_be_bytes());
        out[18] = kind;
        Ok(out)
    }
}

/// Checks marker, length and type (RFC 4271 §6.1) and returns (length, type).
fn check_header(header: &[u8]) -> Result<(u16, u8), DecodeError> {
    if header[..16].iter().any(|&b| b != 0xff) {
        return Err(DecodeError::BadMarker);
    }
    let length = u16::from_be_bytes([header[16], header[17]]);
    let kind = header[18];
    let (min, max) = match kind {
        TYPE_OPEN => (29, MAX_MESSAGE_LEN),
        TYPE_UPDATE => (23, MAX_MESSAGE_LEN),
        TYPE_NOTIFICATION => (21, MAX_MESSAGE_LEN),
        TYPE_KEEPALIVE => (19, 19),
        TYPE_ROUTE_REFRESH => (23, 23),
        _ => return Err(DecodeError::BadType { kind }),
    };
    let l = usize::from(length);
    if l < min || l > max {
        if kind == TYPE_ROUTE_REFRESH {
            return Err(DecodeError::BadRouteRefreshLength { length });
        }
        return Err(DecodeError::BadLength { length, kind });
    }
    Ok((length, kind))
}
