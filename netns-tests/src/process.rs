//! Child processes that are killed when their guard drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A file that collects a child's standard output and error.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
}

impl LogFile {
    fn create(label: &str) -> (LogFile, std::fs::File) {
        let directory =
            std::env::temp_dir().join(format!("meshd-netns-logs-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap_or_else(|error| {
            panic!(
                "cannot create log directory {}: {error}",
                directory.display()
            )
        });
        let path = directory.join(format!("{label}.log"));
        let file = std::fs::File::create(&path)
            .unwrap_or_else(|error| panic!("cannot create log file {}: {error}", path.display()));
        (LogFile { path }, file)
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the process has written so far.
    pub fn contents(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }
}

/// A running child process. Dropping the guard kills it (SIGKILL) and reaps it; when the drop
/// happens during a panic, the log's path and its tail are printed to help the diagnosis.
#[derive(Debug)]
pub struct ChildGuard {
    label: String,
    child: Option<Child>,
    log: LogFile,
}

impl ChildGuard {
    /// Starts `program args...` with `env` added, output to a log file named after `label`.
    /// Panics if it cannot start.
    pub fn spawn(label: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> ChildGuard {
        let (log, file) = LogFile::create(label);
        let stderr = file.try_clone().expect("duplicate a log file descriptor");
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {program} ({label}): {error}"));
        ChildGuard {
            label: label.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The process's log.
    pub fn log(&self) -> &LogFile {
        &self.log
    }

    /// `Some(status)` if the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// Sends `signal` to the process if it still runs (e.g. SIGHUP for a reload).
    pub fn signal(&mut self, signal: Signal) {
        if self.try_exit_status().is_none()
            && let Some(child) = &self.child
        {
            let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
            let _ = kill(pid, signal);
        }
    }

    /// Sends `signal` and waits up to `timeout` for the process to exit. Returns its exit
    /// status, or `None` if it did not exit in time (it is then killed).
    pub fn stop_with(&mut self, signal: Signal, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let _ = kill(pid, signal);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let contents = self.log.contents();
            let tail: Vec<&str> = contents.lines().rev().take(40).collect();
            eprintln!(
                "--- last lines of {} ({}) ---",
                self.label,
                self.log.path.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        } else {
            let _ = std::fs::remove_file(&self.log.path);
            // The per-process log directory goes with its last log (fails while others remain).
            if let Some(directory) = self.log.path.parent() {
                let _ = std::fs::remove_dir(directory);
            }
        }
    }
}
