//! Decoding errors. Each one knows the NOTIFICATION (code, subcode, data) that RFC 4271 §6
//! prescribes for it, so the session can answer a bad message without a second lookup table.

use super::notification::{Notification, codes};

/// A received message that cannot be accepted. Sending [`DecodeError::notification`] and
/// closing the session is the right answer to every one of these (RFC 7606 keeps a session up
/// only for the attribute problems recorded in [`AttrProblem`], which are not errors here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message header: the marker is not sixteen 0xff octets")]
    BadMarker,
    #[error("message header: length {length} is invalid for message type {kind}")]
    BadLength { length: u16, kind: u8 },
    #[error("message header: unknown message type {kind}")]
    BadType { kind: u8 },
    #[error("OPEN: unsupported BGP version {version} (only 4 is spoken)")]
    UnsupportedVersion { version: u8 },
    #[error("OPEN: {what}")]
    MalformedOpen { what: &'static str },
    #[error("OPEN: unsupported optional parameter type {kind}")]
    UnsupportedOptionalParameter { kind: u8 },
    #[error("UPDATE: {what}")]
    MalformedAttributeList { what: &'static str },
    #[error("UPDATE: unrecognized well-known attribute type {type_code}")]
    UnrecognizedWellKnown { type_code: u8, attribute: Vec<u8> },
    #[error("UPDATE: invalid NLRI: {what}")]
    InvalidNetworkField { what: &'static str },
    #[error("UPDATE: malformed {what} attribute")]
    MalformedMpAttribute {
        what: &'static str,
        attribute: Vec<u8>,
    },
    #[error("NOTIFICATION: shorter than code and subcode")]
    ShortNotification,
    #[error("ROUTE-REFRESH: length must be 23 octets, not {length}")]
    BadRouteRefreshLength { length: u16 },
}

impl DecodeError {
    /// The NOTIFICATION to send before closing the session.
    pub fn notification(&self) -> Notification {
        use DecodeError::*;
        let (code, subcode, data) = match self {
            BadMarker => (codes::HEADER, 1, vec![]),
            BadLength { length, .. } => (codes::HEADER, 2, length.to_be_bytes().to_vec()),
            BadType { kind } => (codes::HEADER, 3, vec![*kind]),
            // RFC 4271 §6.2: the data is the largest version we support.
            UnsupportedVersion { .. } => (codes::OPEN, 1, 4u16.to_be_bytes().to_vec()),
            MalformedOpen { .. } => (codes::OPEN, 0, vec![]),
            UnsupportedOptionalParameter { .. } => (codes::OPEN, 4, vec![]),
            MalformedAttributeList { .. } => (codes::UPDATE, 1, vec![]),
            UnrecognizedWellKnown { attribute, .. } => (codes::UPDATE, 2, attribute.clone()),
            InvalidNetworkField { .. } => (codes::UPDATE, 10, vec![]),
            MalformedMpAttribute { attribute, .. } => (codes::UPDATE, 9, attribute.clone()),
            ShortNotification => (codes::HEADER, 2, vec![]),
            BadRouteRefreshLength { length } => {
                (codes::ROUTE_REFRESH, 1, length.to_be_bytes().to_vec())
            }
        };
        Notification {
            code,
            subcode,
            data,
        }
    }
}

/// How RFC 7606 says to handle a malformed path attribute that does not end the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorAction {
    /// Drop just this attribute and use the rest of the UPDATE (RFC 7606 §2 "attribute discard").
    AttributeDiscard,
    /// Handle every prefix the UPDATE announces as if it had been withdrawn (RFC 7606 §2).
    TreatAsWithdraw,
}

/// A malformed attribute that RFC 7606 lets the session survive, recorded on the decoded UPDATE
/// so it can be logged and acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrProblem {
    pub type_code: u8,
    pub action: ErrorAction,
    pub what: &'static str,
}

/// A message that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {length} octets exceeds the BGP maximum of 4096")]
    TooLong { length: usize },
    #[error("{what} is too long for its length field")]
    FieldTooLong { what: &'static str },
}
