//! Running the `nft` program: a child process with arguments (no shell), the JSON batch on its
//! standard input, and its standard error kept for the error message.
//!
//! This is the `nftables` crate's `helper::apply_ruleset` less one flaw: that helper leaves
//! nft's standard error attached to ours (upstream issue #209), so the reason nft gives for
//! refusing a batch would reach the journal on a line of its own and never the error meshd
//! reports. The JSON itself is the crate's ([`super::ruleset`]).

use std::io::{ErrorKind, Write};
use std::process::{Command, ExitStatus, Stdio};

use nftables::schema::Nftables;

use super::{ENOENT, EOPNOTSUPP, EPERM, ExitNatError};

/// Found on `PATH`; [`FALLBACK`] where `PATH` lacks the sbin directories (`su` without `-`).
const NFT: &str = "nft";
const FALLBACK: &str = "/usr/sbin/nft";

/// Applies `batch` as one transaction (`nft -j -f -`).
pub(super) fn apply(operation: &'static str, batch: &Nftables) -> Result<(), ExitNatError> {
    let input = serde_json::to_string(batch).map_err(|error| ExitNatError::Nftables {
        operation,
        detail: format!("cannot encode the batch as JSON: {error}"),
        errno: None,
    })?;
    run(operation, &["-j", "-f", "-"], Some(&input)).map(drop)
}

/// This namespace's tables (`nft -j list tables`), as a step of `operation`.
pub(super) fn list_tables(operation: &'static str) -> Result<Nftables<'static>, ExitNatError> {
    let output = run(operation, &["-j", "list", "tables"], None)?;
    serde_json::from_str(&output).map_err(|error| ExitNatError::Nftables {
        operation,
        detail: format!("cannot read nft's JSON: {error}"),
        errno: None,
    })
}

/// Runs nft with `args`, `input` on its standard input; its standard output when it succeeds.
fn run(
    operation: &'static str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, ExitNatError> {
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
        ErrorKind::NotFound => ExitNatError::NftMissing { operation },
        _ => ExitNatError::Nftables {
            operation,
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
        return Err(refusal(operation, &stderr, output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The error for nft exiting with `status` after printing `stderr`: its message on one line,
/// and the kernel's errno where the message names one meshd has advice for.
fn refusal(operation: &'static str, stderr: &str, status: ExitStatus) -> ExitNatError {
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
    ExitNatError::Nftables {
        operation,
        detail,
        errno,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn nft_s_complaint_and_its_errno_go_into_the_error() {
        // What nft 1.0.6 prints without CAP_NET_ADMIN.
        let error = refusal(
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

        let error = refusal("delete", "", exited(2));
        assert_eq!(error.errno(), None);
        assert_eq!(
            error.to_string(),
            "cannot delete the nftables table inet meshd: nft failed (exit status: 2) without \
             saying why"
        );
    }
}
