//! Running a command with a time limit and turning failure into a message that shows what ran
//! and what it said.

use std::io::Read;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long any one command may run before it is killed: every wait in a test is bounded.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A command that could not be started, exited unsuccessfully or ran out of time.
#[derive(Debug)]
pub struct CommandError {
    /// The command line, for the message.
    pub command: String,
    /// What happened.
    pub detail: String,
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` failed: {}", self.command, self.detail)
    }
}

impl std::error::Error for CommandError {}

/// Runs `program args...` to completion (killed after [`COMMAND_TIMEOUT`]) and returns its
/// output if it exited with status 0.
pub fn run_checked(program: &str, args: &[&str]) -> Result<Output, CommandError> {
    run_with_timeout(program, args, COMMAND_TIMEOUT)
}

/// Like [`run_checked`] with a caller-chosen time limit.
pub fn run_with_timeout(
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<Output, CommandError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let failure = |detail: String| CommandError {
        command: command.clone(),
        detail,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failure(format!("cannot start: {error}")))?;
    // Read both pipes on their own threads so that a chatty child never blocks on a full pipe.
    let stdout = read_to_end_in_background(child.stdout.take());
    let stderr = read_to_end_in_background(child.stderr.take());
    let status = wait_bounded(&mut child, timeout);
    let output = Output {
        status: status.unwrap_or_else(|| child.wait().expect("reap a killed child")),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    let describe = |output: &Output| {
        format!(
            "stdout: {:?}; stderr: {:?}",
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
    };
    match status {
        None => Err(failure(format!(
            "still running after {timeout:?}, killed; {}",
            describe(&output)
        ))),
        Some(status) if status.success() => Ok(output),
        Some(status) => Err(failure(format!("{status}; {}", describe(&output)))),
    }
}

/// Waits up to `timeout` for `child`; kills it and returns `None` if it is still running.
fn wait_bounded(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_to_end_in_background(
    pipe: Option<impl Read + Send + 'static>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}
