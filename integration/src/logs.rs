//! Captures the log lines of everything running in the test process (every node's planes
//! log through the one global `tracing` subscriber), so a test can assert that a refusal was
//! logged and said why.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// The log lines written since [`capture`] was called.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    text: Arc<Mutex<Vec<u8>>>,
}

/// Installs a subscriber that keeps every line at `info` and above (and still prints them
/// through the test harness's captured stderr, so a failing test shows them). Call once per test binary, before the nodes start.
pub fn capture() -> Logs {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(move || Tee(writer.clone()))
        .try_init()
        .expect("no other log subscriber in this test binary");
    logs
}

impl Logs {
    /// Every line captured so far.
    pub fn lines(&self) -> Vec<String> {
        let text = self.text.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The lines that contain every one of `words`.
    pub fn matching(&self, words: &[&str]) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|line| words.iter().all(|w| line.contains(w)))
            .collect()
    }

    /// How many lines were captured so far (to look only at what comes later).
    pub fn mark(&self) -> usize {
        self.lines().len()
    }

    /// The lines after `mark` that contain every one of `words`.
    pub fn matching_since(&self, mark: usize, words: &[&str]) -> Vec<String> {
        self.lines()
            .into_iter()
            .skip(mark)
            .filter(|line| words.iter().all(|w| line.contains(w)))
            .collect()
    }
}

/// Writes to the capture and to the harness's stderr.
struct Tee(Logs);

impl Write for Tee {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .text
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        // eprint! (not io::stderr) so libtest shows it only for a failing test.
        eprint!("{}", String::from_utf8_lossy(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
