//! Numbers for people, in the style of `wg show`: byte counts in binary units and durations
//! spelt out.

/// `1536` -> `1.50 KiB`; below 1 KiB the exact count (`512 B`).
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    // Precision is for display only; f64 holds every count we can reach to 3 digits.
    #[allow(clippy::cast_precision_loss)]
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// `3725` -> `1 hour, 2 minutes, 5 seconds`; `0` -> `0 seconds`. At most three parts:
/// a person reading "3 days, 4 hours, 1 minute" does not need the seconds.
pub fn duration(seconds: u64) -> String {
    let parts = [
        (seconds / 86_400, "day"),
        (seconds / 3600 % 24, "hour"),
        (seconds / 60 % 60, "minute"),
        (seconds % 60, "second"),
    ];
    let words: Vec<String> = parts
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(3)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    if words.is_empty() {
        "0 seconds".to_owned()
    } else {
        words.join(", ")
    }
}

/// A list for one line: `a, b, c`, or `(none)`.
pub fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.00 MiB");
        assert_eq!(bytes(u64::MAX), "16.00 EiB");
    }

    #[test]
    fn durations_are_spelt_out() {
        assert_eq!(duration(0), "0 seconds");
        assert_eq!(duration(1), "1 second");
        assert_eq!(duration(65), "1 minute, 5 seconds");
        assert_eq!(duration(3725), "1 hour, 2 minutes, 5 seconds");
        assert_eq!(duration(3600), "1 hour");
        assert_eq!(
            duration(2 * 86_400 + 3 * 3600 + 60 + 9),
            "2 days, 3 hours, 1 minute"
        );
    }

    #[test]
    fn lists_name_emptiness() {
        assert_eq!(list::<String>(&[]), "(none)");
        assert_eq!(list(&["a", "b"]), "a, b");
    }
}
