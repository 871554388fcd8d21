//! NOTIFICATION messages (RFC 4271 §4.5) and the error codes meshd sends and understands.

use std::fmt;

/// Error codes (RFC 4271 §4.5, RFC 7313 for route refresh).
pub mod codes {
    pub const HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;
}

/// OPEN error subcodes (RFC 4271 §6.2, RFC 5492 §5).
pub mod open_subcodes {
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
}

/// FSM error subcodes (RFC 6608): which state received the unexpected message.
pub mod fsm_subcodes {
    pub const IN_OPEN_SENT: u8 = 1;
    pub const IN_OPEN_CONFIRM: u8 = 2;
    pub const IN_ESTABLISHED: u8 = 3;
}

/// Cease subcodes (RFC 4486).
pub mod cease_subcodes {
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const CONNECTION_COLLISION: u8 = 7;
}

/// A NOTIFICATION: the reason a session is closed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8) -> Self {
        Notification {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    pub fn cease(subcode: u8) -> Self {
        Notification::new(codes::CEASE, subcode)
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = match self.code {
            codes::HEADER => "message header error",
            codes::OPEN => "OPEN message error",
            codes::UPDATE => "UPDATE message error",
            codes::HOLD_TIMER_EXPIRED => "hold timer expired",
            codes::FSM => "finite state machine error",
            codes::CEASE => "cease",
            codes::ROUTE_REFRESH => "ROUTE-REFRESH message error",
            _ => "unknown error code",
        };
        write!(f, "{code} ({}/{})", self.code, self.subcode)?;
        if !self.data.is_empty() {
            write!(f, ", data ")?;
            for b in &self.data {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}
