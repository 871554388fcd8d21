//! BIRD 2 in a namespace, in the foreground so that it dies with the test.

use std::path::{Path, PathBuf};

use crate::namespace::Namespace;
use crate::process::ChildGuard;

/// A running BIRD: the process, its configuration file and its control socket.
#[derive(Debug)]
pub struct Bird {
    pub process: ChildGuard,
    pub config: PathBuf,
    pub socket: PathBuf,
}

impl Bird {
    /// Writes `config` to `dir/bird.conf` and starts `bird -f` on it in `namespace`, with its
    /// control socket at `dir/bird.ctl`.
    pub fn start(namespace: &Namespace, dir: &Path, config: &str) -> Bird {
        let file = dir.join("bird.conf");
        std::fs::write(&file, config)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        let socket = dir.join("bird.ctl");
        let process = namespace.spawn(
            "bird",
            "bird",
            &[
                "-f",
                "-c",
                &file.display().to_string(),
                "-s",
                &socket.display().to_string(),
            ],
            &[],
        );
        Bird {
            process,
            config: file,
            socket,
        }
    }

    /// `birdc ARGS...` in `namespace` on this BIRD's socket; panics if it fails.
    pub fn birdc(&self, namespace: &Namespace, args: &[&str]) -> String {
        let socket = self.socket.display().to_string();
        let mut full = vec!["-s", socket.as_str()];
        full.extend_from_slice(args);
        namespace.exec_ok("birdc", &full)
    }
}
