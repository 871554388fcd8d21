//! Bounded waiting.

use std::time::{Duration, Instant};

/// Polls `condition` every 50 ms until it returns `true` or `timeout` has passed; returns whether
/// it became true. Never waits unbounded.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
