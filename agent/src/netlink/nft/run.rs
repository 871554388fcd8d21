//! Running the `nft` program: a child process with arguments (no shell), the JSON batch on its
//! standard input, and its standard error kept for the error message. Every run is on behalf
//! of one of meshd's tables, which the errors name.
//!
//! This is the `nftables` crate's `helper::apply_ruleset` less one flaw: that helper leaves
//! nft's standard error attached to ours (upstream issue #209), so the reason nft gives for
//! refusing a batch would reach the journal on a line of its own and never the error meshd
//! reports. The JSON itself is the crate's ([`super::ruleset`]).

use std::io::{ErrorKind, Write};
use std::process::{Command, ExitStatus, Stdio};

use nftables::schema::Nftables;

use super::{ENOENT, EOPNOTSUPP, EPERM, NftError, OwnedTable};

/// Found on `PATH`; [`FALLBACK`] where `PATH` lacks the sbin directories (`su` without `-`).
const NFT: &str = "nft";
const FALLBACK: &str = "/usr/sbin/nft";

/// Applies `batch` as one transaction (`nft -j -f -`).
pub(super) fn apply(
    table: &'static OwnedTable,
    operation: &'static str,
    batch: &Nftables,
) -> Result<(), NftError> {
    let input = serde_json::to_string(batch).map_err(|error| NftError::Refused {
        operation,
        table,
        detail: format!("cannot encode the batch as JSON: {error}"),
        errno: None,
    })?;
    run(table, operation, &["-j", "-f", "-"], Some(&input)).map(drop)
}

/// This namespace's tables (`nft -j list tables`), as a step of `operation` on `table`.
pub(super) fn list_tables(
    table: &'static OwnedTable,
    operation: &'static str,
) -> Result<Nftables<'static>, NftError> {
    let output = run(table, operation, &["-j", "list", "tables"], None)?;
    parse(table, operation, &output)
}

/// `table` with its chains, rules, sets and counters (`nft -j list table inet NAME`).
pub(super) fn list_table(
    table: &'static OwnedTable,
    operation: &'static str,
) -> Result<Nftables<'static>, NftError> {
    let output = run(
        table,
        operation,
        &["-j", "list", "table", "inet", table.name],
        None,
    )?;
    parse(table, operation, &output)
}

fn parse(
    table: &'static OwnedTable,
    operation: &'static str,
    output: &str,
) -> Result<Nftables<'static>, NftError> {
    serde_json::from_str(output).map_err(|error| NftError::Refused {
        operation,
        table,
        detail: format!("cannot read nft's JSON: {error}"),
        errno: None,
    })
}

/// Runs nft with `args`, `input` on its standard input; its standard output when it succeeds.
fn run(
    table: &'static OwnedTable,
    operation: &'static str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, NftError> {
    let spawn = |program: &str| {
        Command::new(program)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let spawned = match spawn(NFT) {
        Err(error) if error.kind() == ErrorKind::NotFound => spawn(FALLBACK),
        spawned => spawned,
    };
    let failed = |error: std::io::Error| match error.kind() {
        ErrorKind::NotFound => NftError::Missing { operation, table },
        _ => NftError::Refused {
            operation,
            table,
            detail: format!("cannot run nft: {error}"),
            errno: None,
        },
    };
    let mut child = spawned.map_err(failed)?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        // nft reads all of its input before it answers. One that quit early closed the
        // pipe: its exit status and standard error below say why.
        match stdin.write_all(input.as_bytes()) {
            Err(error) if error.kind() != ErrorKind::BrokenPipe => return Err(failed(error)),
            _ => {}
        }
    }
    let output = child.wait_with_output().map_err(failed)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(refusal(table, operation, &stderr, output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The error for nft exiting with `status` after printing `stderr`: its message on one line,
/// and the kernel's errno where the message names one meshd has advice for.
fn refusal(
    table: &'static OwnedTable,
    operation: &'static str,
    stderr: &str,
    status: ExitStatus,
) -> NftError {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        // nft's position for JSON input carries nothing.
        .map(|line| line.strip_prefix("internal:0:0-0: ").unwrap_or(line))
        .collect();
    let detail = if lines.is_empty() {
        format!("nft failed ({status}) without saying why")
    } else {
        format!("nft: {}", lines.join("; "))
    };
    // nft prints the kernel's errno with strerror, as glibc words it.
    let errno = [
        (EPERM, "Operation not permitted"),
        (ENOENT, "No such file or directory"),
        (EOPNOTSUPP, "Operation not supported"),
    ]
    .into_iter()
    .find(|(_, text)| stderr.contains(text))
    .map(|(errno, _)| errno);
    NftError::Refused {
        operation,
        table,
        detail,
        errno,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;
    use crate::netlink::exit_nat::NAT;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn nft_s_complaint_and_its_errno_go_into_the_error() {
        // What nft 1.0.6 prints without CAP_NET_ADMIN.
        let error = refusal(
            &NAT,
            "create",
            "netlink: Error: cache initialization failed: Operation not permitted\n",
            exited(1),
        );
        assert_eq!(error.errno(), Some(EPERM));
        assert_eq!(
            error.to_string(),
            "cannot create the nftables table inet meshd: nft: netlink: Error: cache \
             initialization failed: Operation not permitted (meshd needs root or CAP_NET_ADMIN)"
        );

        // A kernel without the nat chain type or the masquerade expression.
        let error = refusal(
            &NAT,
            "create",
            "internal:0:0-0: Error: Could not process rule: No such file or directory\n\n",
            exited(1),
        );
        assert_eq!(error.errno(), Some(ENOENT));
        let message = error.to_string();
        assert!(
            message.starts_with(
                "cannot create the nftables table inet meshd: nft: Error: Could not process \
                 rule: No such file or directory (the kernel lacks nftables NAT"
            ),
            "{message}"
        );

        let error = refusal(&NAT, "delete", "", exited(2));
        assert_eq!(error.errno(), None);
        assert_eq!(
            error.to_string(),
            "cannot delete the nftables table inet meshd: nft failed (exit status: 2) without \
             saying why"
        );
    }
}
