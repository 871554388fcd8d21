//! `meshd invite --list` and `meshd invite --cancel NAME` (on the CA holder): the invitations
//! nobody used yet, and taking one back. `meshd revoke NAME` cancels too, for a name that only
//! has an invitation.
//!
//! Listing reads `ca/db.json` without the lock (writes replace it whole, atomically);
//! cancelling changes it under the lock, and the running daemon, which reads the database
//! under the same lock for every join, refuses the token from then on.

use std::io::Write;

use ipnet::IpNet;
use pki::{InvitationRecord, rfc3339};
use serde::Serialize;
use time::OffsetDateTime;

use super::routes::columns;
use super::status::print_report;
use super::{CommandError, Context, Output};
use crate::state::CaDatabase;

/// The `schema` of `meshd invite --list --json` (docs/operations.md, "JSON output").
const SCHEMA: u32 = 1;

/// `meshd invite --list --json`.
#[derive(Debug, Serialize)]
struct InvitationsReport<'a> {
    schema: u32,
    invitations: Vec<InvitationReport<'a>>,
}

/// One open invitation, as `--json` prints it.
#[derive(Debug, Serialize)]
struct InvitationReport<'a> {
    name: &'a str,
    role: &'static str,
    /// The core a spoke attaches to; null for a core.
    core: Option<&'a str>,
    routes: &'a [IpNet],
    exit_ipv4: bool,
    exit_ipv6: bool,
    anycast: &'a [IpNet],
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    expired: bool,
}

impl<'a> InvitationReport<'a> {
    fn new(invitation: &'a InvitationRecord, now: OffsetDateTime) -> Self {
        Self {
            name: &invitation.name,
            role: invitation.role.as_str(),
            core: invitation.core.as_deref(),
            routes: &invitation.lan_prefixes,
            exit_ipv4: invitation.approvals.exit_ipv4,
            exit_ipv6: invitation.approvals.exit_ipv6,
            anycast: &invitation.approvals.anycast,
            expires_at: invitation.expires_at,
            expired: invitation.expires_at <= now,
        }
    }
}

/// Runs `meshd invite --list [--json]`.
pub fn list<O: Write, N: Write>(
    context: &Context,
    json: bool,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let db = context.state.read_ca_db()?;
    let now = OffsetDateTime::now_utc();
    let report = InvitationsReport {
        schema: SCHEMA,
        invitations: db
            .open_invitations()
            .map(|invitation| InvitationReport::new(invitation, now))
            .collect(),
    };
    print_report(&report, json, |report| render(&report.invitations), output)
}

/// The open invitations for people: a table, one line each.
fn render(invitations: &[InvitationReport]) -> String {
    if invitations.is_empty() {
        return "no open invitations\n".to_owned();
    }
    let list = |prefixes: &[IpNet]| {
        if prefixes.is_empty() {
            "-".to_owned()
        } else {
            let text: Vec<String> = prefixes.iter().map(ToString::to_string).collect();
            text.join(",")
        }
    };
    let rows: Vec<[String; 7]> = invitations
        .iter()
        .map(|i| {
            let exit = match (i.exit_ipv4, i.exit_ipv6) {
                (true, true) => "both",
                (true, false) => "ipv4",
                (false, true) => "ipv6",
                (false, false) => "-",
            };
            let expires = rfc3339(i.expires_at);
            [
                i.name.to_owned(),
                i.role.to_owned(),
                i.core.unwrap_or("-").to_owned(),
                list(i.routes),
                exit.to_owned(),
                list(i.anycast),
                if i.expired {
                    format!("{expires} (expired)")
                } else {
                    expires
                },
            ]
        })
        .collect();
    columns(
        [
            "NAME", "ROLE", "CORE", "ROUTES", "EXIT", "ANYCAST", "EXPIRES",
        ],
        &rows,
    )
}

/// Runs `meshd invite --cancel NAME`.
pub fn cancel<O: Write, N: Write>(
    context: &Context,
    name: &str,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let state = &context.state;
    let (_lock, mut db) = super::locked_ca_db(state)?;
    let text = cancel_in(&mut db, name, OffsetDateTime::now_utc())
        .map_err(|err| CommandError::invalid("--cancel", err.to_string()))?;
    state.write_ca_db(&db)?;
    writeln!(output.out, "{text}").map_err(CommandError::Output)
}

/// Cancels the invitation for `name` in `db` (the caller writes it) and says what was
/// cancelled, for the operator.
pub(super) fn cancel_in(
    db: &mut CaDatabase,
    name: &str,
    now: OffsetDateTime,
) -> Result<String, crate::state::CancelError> {
    let invitation = db.cancel_invitation(name, now)?;
    let behind = invitation
        .core
        .as_ref()
        .map_or(String::new(), |core| format!(" behind {core}"));
    let until = if invitation.expires_at <= now {
        format!(
            "it had expired at {} already",
            rfc3339(invitation.expires_at)
        )
    } else {
        format!("it was valid until {}", rfc3339(invitation.expires_at))
    };
    tracing::info!(node = %name, "cancelled an invitation");
    Ok(format!(
        "Cancelled the invitation for {name} as a {}{behind} ({until}): its token is refused \
         from now on, and `meshd invite {name}` may invite the name again.",
        invitation.role
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_table_has_one_line_per_invitation_and_marks_the_expired() {
        let now = datetime!(2026-11-21 10:00 UTC);
        let routes: Vec<IpNet> = vec![
            "192.168.42.0/24".parse().unwrap(),
            "2001:db8:42::/48".parse().unwrap(),
        ];
        let anycast: Vec<IpNet> = vec!["203.0.113.53/32".parse().unwrap()];
        let spoke = InvitationReport {
            name: "beta",
            role: "spoke",
            core: Some("alpha"),
            routes: &routes,
            exit_ipv4: false,
            exit_ipv6: false,
            anycast: &[],
            expires_at: now + time::Duration::hours(2),
            expired: false,
        };
        let core = InvitationReport {
            name: "gamma",
            role: "core",
            core: None,
            routes: &[],
            exit_ipv4: true,
            exit_ipv6: true,
            anycast: &anycast,
            expires_at: now - time::Duration::hours(1),
            expired: true,
        };
        let text = render(&[spoke, core]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("NAME   ROLE   CORE   ROUTES"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("beta   spoke  alpha  192.168.42.0/24,2001:db8:42::/48  -"),
            "{text}"
        );
        assert!(lines[1].ends_with("2026-11-21T12:00:00Z"), "{text}");
        assert!(lines[2].contains("both  203.0.113.53/32"), "{text}");
        assert!(
            lines[2].ends_with("2026-11-21T09:00:00Z (expired)"),
            "{text}"
        );
        assert_eq!(render(&[]), "no open invitations\n");
    }
}
