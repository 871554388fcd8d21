//! At most one log line per window for an event that strangers can cause at will.
//!
//! A core's control port faces the Internet: anyone can open connections that fail the TLS
//! handshake (scanners, a revoked node retrying). One warning each would let them fill the
//! journal, none would hide a real problem. So the first one in a window is logged with its
//! details and the rest are counted, and the count rides on the next line that is logged.
//! Pure: the caller passes `now`.

use std::time::{Duration, Instant};

/// How often a throttled event may be logged.
pub const LOG_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct LogThrottle {
    window: Duration,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub fn new(window: Duration) -> Self {
        LogThrottle {
            window,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// `Some(n)`: log this event, and say that `n` like it were left out since the last line.
    /// `None`: count it and stay quiet.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last_logged {
            Some(last) if now.saturating_duration_since(last) < self.window => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_logged = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_with_the_count_of_the_rest() {
        let start = Instant::now();
        let mut throttle = LogThrottle::new(Duration::from_secs(60));
        assert_eq!(throttle.admit(start), Some(0));
        for second in 1..=59 {
            assert_eq!(throttle.admit(start + Duration::from_secs(second)), None);
        }
        assert_eq!(throttle.admit(start + Duration::from_secs(60)), Some(59));
        assert_eq!(throttle.admit(start + Duration::from_secs(61)), None);
        // A quiet spell: the next event is logged at once, with what the window held back.
        assert_eq!(throttle.admit(start + Duration::from_secs(3600)), Some(1));
        assert_eq!(throttle.admit(start + Duration::from_secs(7200)), Some(0));
    }
}
