//! Rules for the names that appear in a config: node names, DNS host names and
//! Linux interface names. Each check returns a sentence saying what is wrong, so the
//! same rule produces the same message in the config validator and in `FromStr` impls.

/// Longest DNS label (RFC 1035 section 2.3.4).
const MAX_LABEL_LEN: usize = 63;
/// Longest DNS name in presentation form, without the trailing dot.
const MAX_HOSTNAME_LEN: usize = 253;
/// Linux `IFNAMSIZ` is 16 including the terminating NUL.
pub const MAX_IFNAME_LEN: usize = 15;

/// A node (or peer, or BGP neighbour) name: one lowercase DNS label, so it can be used
/// as a host name, in certificate SANs and in file names without escaping.
pub fn check_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is empty".into());
    }
    if name.len() > MAX_LABEL_LEN {
        return Err(format!(
            "name is {} bytes long; at most {MAX_LABEL_LEN} are allowed",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{name:?} contains {c:?}; only lowercase letters a-z, digits 0-9 and '-' are allowed"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!("{name:?} must not start or end with '-'"));
    }
    Ok(())
}

/// A DNS host name as used in an endpoint (`vpn.example.net`). Case-insensitive
/// letters are accepted here because resolvers are; one trailing dot is allowed.
pub fn check_hostname(name: &str) -> Result<(), String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err("host name is empty".into());
    }
    if trimmed.len() > MAX_HOSTNAME_LEN {
        return Err(format!(
            "host name is {} bytes long; at most {MAX_HOSTNAME_LEN} are allowed",
            trimmed.len()
        ));
    }
    let mut last = "";
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err(format!("host name {name:?} has an empty label (\"..\")"));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "label {label:?} of host name {name:?} is longer than {MAX_LABEL_LEN} bytes"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "host name {name:?} contains {c:?}; only letters, digits, '-' and '.' are allowed"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "label {label:?} of host name {name:?} must not start or end with '-'"
            ));
        }
        last = label;
    }
    // An all-numeric last label would make "1.2.3.400" look like a name when it is
    // a mistyped address (RFC 3696 section 2).
    if last.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{name:?} is neither a valid IP address nor a host name (the last label is numeric)"
        ));
    }
    Ok(())
}

/// A Linux network interface name, as the kernel's `dev_valid_name` accepts it.
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("interface name is empty".into());
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(format!(
            "interface name {name:?} is {} bytes long; Linux allows at most {MAX_IFNAME_LEN}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "interface name {name:?} contains {c:?}, which Linux does not allow"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert!(check_node_name("alpha-2").is_ok());
        assert!(check_node_name(&"a".repeat(63)).is_ok());
        assert!(check_node_name("").unwrap_err().contains("empty"));
        assert!(
            check_node_name(&"a".repeat(64))
                .unwrap_err()
                .contains("at most 63")
        );
        assert!(check_node_name("Alpha").unwrap_err().contains("'A'"));
        assert!(check_node_name("a.b").unwrap_err().contains("'.'"));
        assert!(check_node_name("-a").unwrap_err().contains("start or end"));
        assert!(check_node_name("a-").unwrap_err().contains("start or end"));
    }

    #[test]
    fn hostnames() {
        assert!(check_hostname("vpn.example.net").is_ok());
        assert!(check_hostname("VPN.Example.net.").is_ok());
        assert!(check_hostname("localhost").is_ok());
        assert!(check_hostname("").is_err());
        assert!(check_hostname("a..b").unwrap_err().contains("empty label"));
        assert!(check_hostname("a_b.net").unwrap_err().contains("'_'"));
        assert!(
            check_hostname("-a.net")
                .unwrap_err()
                .contains("start or end")
        );
        assert!(check_hostname("1.2.3.400").unwrap_err().contains("numeric"));
        assert!(check_hostname(&format!("{}.net", "a".repeat(64))).is_err());
        assert!(
            check_hostname(&["abc"; 70].join("."))
                .unwrap_err()
                .contains("at most 253")
        );
    }

    #[test]
    fn ifnames() {
        assert!(check_ifname("mesh0").is_ok());
        assert!(check_ifname("a23456789012345").is_ok());
        assert!(
            check_ifname("a234567890123456")
                .unwrap_err()
                .contains("at most 15")
        );
        assert!(check_ifname("").is_err());
        assert!(check_ifname("..").is_err());
        assert!(check_ifname("a/b").unwrap_err().contains("'/'"));
        assert!(check_ifname("a b").is_err());
        assert!(check_ifname("a:1").is_err());
    }
}
