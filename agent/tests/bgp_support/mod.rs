//! Helpers shared by the BGP speaker tests.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod netns;

use std::collections::HashMap;
use std::time::Duration;

use ipnet::IpNet;
use meshd::bgp::rib::{BestChange, Path};
use tokio::sync::mpsc;

/// The routing plane's view of a speaker: the latest best path per prefix, from its channel.
pub struct Table {
    rx: mpsc::UnboundedReceiver<BestChange>,
    pub best: HashMap<IpNet, Option<Path>>,
}

impl Table {
    pub fn new(rx: mpsc::UnboundedReceiver<BestChange>) -> Table {
        Table {
            rx,
            best: HashMap::new(),
        }
    }

    /// Waits until `prefix` has a route (`present`) or none, and returns it.
    pub async fn wait(&mut self, prefix: &str, present: bool) -> Option<Path> {
        let what = if present { "learned" } else { "withdrawn" };
        self.wait_for(prefix, what, |best| best.is_some() == present)
            .await
    }

    /// Waits until the best path of `prefix` (`None`: no route) satisfies `check`, and returns it.
    pub async fn wait_for(
        &mut self,
        prefix: &str,
        what: &str,
        check: impl Fn(Option<&Path>) -> bool,
    ) -> Option<Path> {
        let prefix: IpNet = prefix.parse().unwrap();
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let now = self.best.get(&prefix).cloned().flatten();
                if check(now.as_ref()) {
                    return now;
                }
                let c = self.rx.recv().await.expect("speaker running");
                self.best.insert(c.prefix, c.best);
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            let now = self.best.get(&prefix);
            panic!("{prefix} not {what} within 20 s; best path now: {now:?}")
        })
    }

    /// Whether `prefix` currently has a route, as far as the changes read so far tell.
    pub fn has(&self, prefix: &str) -> bool {
        let prefix: IpNet = prefix.parse().unwrap();
        self.best.get(&prefix).is_some_and(|p| p.is_some())
    }
}

/// Runs `program args...` inside namespace `namespace` and returns its standard output.
pub async fn exec_in(namespace: &str, program: &str, args: &[&str]) -> String {
    let mut full = vec!["netns", "exec", namespace, program];
    full.extend_from_slice(args);
    let out = tokio::process::Command::new("ip")
        .args(&full)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `query` every 100 ms until `check` holds on its output, for up to 10 s.
pub async fn poll_until<F, Fut>(what: &str, query: F, check: impl Fn(&str) -> bool) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let mut last = String::new();
    for _ in 0..100 {
        last = query().await;
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not seen within 10 s; last answer:\n{last}");
}
