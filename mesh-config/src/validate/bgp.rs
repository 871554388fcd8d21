//! Checks of `[bgp]`: neighbours (addresses, timers, TCP-MD5 keys, the policies they name) and
//! the policies themselves (terms that can never be reached or do nothing, prepend counts).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Checker;
use crate::path::KeyPath;
use crate::policy::{Policy, PolicySpec, TermAction};
use crate::schema::{BgpNeighbor, BgpSection};

/// Linux `TCP_MD5SIG_MAXKEYLEN`: the longest TCP-MD5 key the kernel takes.
pub const MAX_MD5_KEY_LEN: usize = 80;
/// The most extra AS numbers one term may prepend (RouterOS allows the same); longer paths only
/// get the route filtered by peers with a path-length limit.
pub const MAX_PREPEND: u8 = 16;

impl Checker {
    pub(super) fn bgp(&mut self, bgp: &BgpSection, local_asn: u32, path: &KeyPath) {
        let neighbors = path.key("neighbor");
        self.unique(&neighbors, &bgp.neighbors, (Some("name"), "name"), |n| {
            &n.name
        });
        self.unique(
            &neighbors,
            &bgp.neighbors,
            (Some("address"), "address"),
            |n| &n.address,
        );
        for (i, neighbor) in bgp.neighbors.iter().enumerate() {
            self.neighbor(neighbor, bgp, local_asn, &neighbors.index(i));
        }
        let policies = path.key("policy");
        for (name, policy) in &bgp.policies {
            let here = policies.key(name);
            if let Err(message) = crate::names::check_node_name(name) {
                self.report(&here, format!("policy {message}"));
            }
            self.policy(policy, &here);
        }
    }

    fn neighbor(&mut self, n: &BgpNeighbor, bgp: &BgpSection, local_asn: u32, path: &KeyPath) {
        self.name(&path.key("name"), &n.name);
        self.asn(&path.key("remote_asn"), n.remote_asn);
        if let Some(problem) = unusable_address(n.address) {
            self.report(&path.key("address"), problem);
        }
        if let Some(local) = n.local_address {
            let at = path.key("local_address");
            if let Some(problem) = unusable_address(local) {
                self.report(&at, problem);
            } else if local.is_ipv4() != n.address.is_ipv4() {
                self.report(
                    &at,
                    format!(
                        "{local} and the neighbour's address {} are of different address families",
                        n.address
                    ),
                );
            } else if local == n.address {
                self.report(&at, format!("{local} is the neighbour's own address"));
            }
        }
        if n.port == Some(0) {
            self.report(
                &path.key("port"),
                "port 0 is not allowed; leave the key out for BGP's port 179",
            );
        }
        if let Some(hold) = n.hold_time
            && (hold == 1 || hold == 2)
        {
            self.report(
                &path.key("hold_time"),
                format!(
                    "a hold time of {hold} s is not allowed; use 0 (no keepalives) or at least \
                     3 seconds (RFC 4271 §4.2)"
                ),
            );
        }
        if n.connect_retry == Some(0) {
            self.report(
                &path.key("connect_retry"),
                "0 seconds would retry without pause; use at least 1 (default 30)",
            );
        }
        if let Some(families) = &n.families {
            let at = path.key("families");
            if families.is_empty() {
                self.report(
                    &at,
                    "no address family; list \"ipv4\", \"ipv6\" or both (or leave the key out for both)",
                );
            }
            self.unique(&at, families, (None, "family"), |f| f);
        }
        self.md5_key(n, path);
        if n.multihop == Some(0) {
            self.report(
                &path.key("multihop"),
                "a TTL of 0 cannot reach anyone; use 1 to 255, or leave the key out for a \
                 directly connected neighbour",
            );
        }
        let external = n.remote_asn != local_asn;
        self.policy_spec(&n.import, bgp, &path.key("import"), None);
        let export_to = external.then_some(n.name.as_str());
        self.policy_spec(&n.export, bgp, &path.key("export"), export_to);
    }

    fn md5_key(&mut self, n: &BgpNeighbor, path: &KeyPath) {
        if let Some(file) = &n.password_file
            && !file.is_absolute()
        {
            self.report(
                &path.key("password_file"),
                format!(
                    "{:?} is not an absolute path (such as /etc/meshd/bgp-{}.key)",
                    file.display().to_string(),
                    n.name
                ),
            );
        }
        let Some(password) = &n.password else {
            return;
        };
        let at = path.key("password");
        if n.password_file.is_some() {
            self.report(
                &at,
                "both password and password_file are given; keep only one (password_file is \
                 preferred: it keeps the key out of the config)",
            );
        } else if password.is_empty() {
            self.report(
                &at,
                "the password is empty; leave the key out for a session without TCP-MD5",
            );
        } else if password.len() > MAX_MD5_KEY_LEN {
            self.report(
                &at,
                format!(
                    "the password is {} bytes long; TCP-MD5 keys are at most {MAX_MD5_KEY_LEN} bytes",
                    password.len()
                ),
            );
        }
    }

    /// A neighbour's import or export. `export_to` is the neighbour's name when this is an
    /// export to another AS, where LOCAL_PREF may not be set.
    fn policy_spec(
        &mut self,
        spec: &PolicySpec,
        bgp: &BgpSection,
        path: &KeyPath,
        export_to: Option<&str>,
    ) {
        let used: Vec<(KeyPath, &Policy)> = match spec {
            PolicySpec::Inline(policy) => {
                self.policy(policy, path);
                vec![(path.clone(), policy)]
            }
            PolicySpec::Named(names) => {
                if names.is_empty() {
                    self.report(
                        path,
                        "names no policy; leave the key out to let nothing through (RFC 8212)",
                    );
                }
                self.unique(path, names, (None, "policy"), |n| n);
                let mut found = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    match bgp.policies.get(name) {
                        Some(policy) => {
                            found.push((KeyPath::root().key("bgp").key("policy").key(name), policy))
                        }
                        // `import = "a"` has no element to point at; `import = ["a", "b"]` has.
                        None => self.report(
                            &if names.len() > 1 {
                                path.index(i)
                            } else {
                                path.clone()
                            },
                            format!("no policy named {name:?}; {}", defined(&bgp.policies)),
                        ),
                    }
                }
                found
            }
        };
        let Some(neighbor) = export_to else {
            return;
        };
        for (policy_path, policy) in used {
            for (j, term) in policy.terms.iter().enumerate() {
                if term.set.local_pref.is_some() {
                    self.report(
                        &policy_path.key("term").index(j).key("set").key("local_pref"),
                        format!(
                            "LOCAL_PREF is not sent to another AS (RFC 4271 §5.1.5), but this \
                             policy is the export of external neighbour {neighbor:?}; set it on import"
                        ),
                    );
                }
            }
        }
    }

    fn policy(&mut self, policy: &Policy, path: &KeyPath) {
        let terms = path.key("term");
        let mut decided_all: Option<usize> = None;
        for (j, term) in policy.terms.iter().enumerate() {
            let here = terms.index(j);
            if let Some(first) = decided_all {
                self.report(
                    &here,
                    format!(
                        "this term is never reached: term[{first}] has no match conditions and \
                         decides every route"
                    ),
                );
            }
            if term.action == TermAction::Next && term.set.is_empty() {
                self.report(
                    &here.key("action"),
                    "\"next\" without a `set` does nothing; add what to change, or use \
                     \"accept\" or \"reject\"",
                );
            }
            if let Some(prepend) = term.set.prepend
                && !(1..=MAX_PREPEND).contains(&prepend)
            {
                self.report(
                    &here.key("set").key("prepend"),
                    format!("prepend {prepend} is out of range; expected 1 to {MAX_PREPEND}"),
                );
            }
            if term.matches.is_empty() && term.action != TermAction::Next && decided_all.is_none() {
                decided_all = Some(j);
            }
        }
        if let Some(first) = decided_all
            && !policy.prefixes.is_empty()
        {
            self.report(
                &path.key("prefixes"),
                format!(
                    "these prefixes are never looked at: term[{first}] has no match conditions \
                     and decides every route"
                ),
            );
        }
    }
}

/// Why a neighbour (or local) address cannot be used for a BGP session, if it cannot.
fn unusable_address(address: IpAddr) -> Option<String> {
    let broadcast = matches!(address, IpAddr::V4(a) if a.is_broadcast());
    if address.is_unspecified() || address.is_multicast() || broadcast {
        return Some(format!(
            "{address} is not the address of one router (unspecified, multicast or broadcast)"
        ));
    }
    None
}

/// "defined: a, b" or a hint where to define one.
fn defined(policies: &BTreeMap<String, Policy>) -> String {
    if policies.is_empty() {
        return "define it as [bgp.policy.NAME]".to_owned();
    }
    let names: Vec<&str> = policies.keys().map(String::as_str).collect();
    format!("defined are: {}", names.join(", "))
}
