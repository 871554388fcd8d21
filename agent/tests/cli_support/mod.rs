//! Helpers for the command-line tests: run the built `meshd` binary against a temporary
//! config path and state directory. No root, no network.

#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where the test node alpha says it can be reached (a documentation address).
pub const ALPHA_ENDPOINT: &str = "203.0.113.1:51820";

/// A temporary node: its config path and state directory, removed on drop.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state: PathBuf,
}

impl Node {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("etc/meshd.toml");
        let state = dir.path().join("state");
        Node { dir, config, state }
    }

    /// Runs `meshd --config CONFIG --state-dir STATE ARGS...`.
    pub fn meshd(&self, args: &[&str]) -> Run {
        let mut full = vec![
            "--config",
            self.config.to_str().unwrap(),
            "--state-dir",
            self.state.to_str().unwrap(),
        ];
        full.extend_from_slice(args);
        meshd(&full)
    }

    /// `meshd init` of node alpha at 203.0.113.1:51820, which must succeed.
    pub fn init_alpha(&self) -> Run {
        self.init_alpha_with(&[]).success()
    }

    /// `meshd init --name alpha --endpoint 203.0.113.1:51820 EXTRA...`, whatever its outcome.
    pub fn init_alpha_with(&self, extra: &[&str]) -> Run {
        let mut args = vec!["init", "--name", "alpha", "--endpoint", ALPHA_ENDPOINT];
        args.extend_from_slice(extra);
        self.meshd(&args)
    }

    pub fn state_file(&self, name: &str) -> PathBuf {
        self.state.join(name)
    }
}

/// Runs the built `meshd` binary with `args`.
pub fn meshd(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run meshd");
    Run {
        args: args.iter().map(ToString::to_string).collect(),
        output,
    }
}

/// The result of one `meshd` run.
pub struct Run {
    pub args: Vec<String>,
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Asserts exit code 0 and returns self.
    pub fn success(self) -> Self {
        assert_eq!(
            self.code(),
            Some(0),
            "meshd {:?} failed\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Asserts exit code `code` and that stderr contains every one of `needles`.
    pub fn fails_with(self, code: i32, needles: &[&str]) -> Self {
        assert_eq!(
            self.code(),
            Some(code),
            "meshd {:?}: expected exit code {code}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout(),
            self.stderr()
        );
        let stderr = self.stderr();
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "meshd {:?}: stderr lacks {needle:?}:\n{stderr}",
                self.args
            );
        }
        self
    }
}

/// Permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}
