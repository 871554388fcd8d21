//! The config file as `meshd init` and `meshd join` find and write it, and the hint they
//! print on how to start the daemon.
//!
//! The Debian package installs /etc/meshd/meshd.toml as a commented template (every line a
//! comment: see packaging/meshd.toml). That file carries no settings, so init and join treat
//! it like a missing file and replace it with the node's settings; a file with any setting in
//! it is the operator's and must agree with the command line instead.

use std::path::Path;

use mesh_config::Config;

use super::{CommandError, Context};
use crate::state::{Overwrite, PUBLIC_FILE_MODE, StateError, write_atomic};

/// Mode of a config directory meshd creates (`/etc/meshd`): the config holds no secret.
const CONFIG_DIR_MODE: u32 = 0o755;

/// Where the package's systemd unit may be installed; `systemctl start meshd` is suggested
/// only when one of them exists.
const UNIT_PATHS: [&str; 3] = [
    "/etc/systemd/system/meshd.service",
    "/usr/lib/systemd/system/meshd.service",
    "/lib/systemd/system/meshd.service",
];

/// What is at the config path before init or join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExistingConfig {
    /// No file: write one.
    Absent,
    /// Only comments and blank lines (the package's template): replace it.
    Template,
    /// A config with settings: it must agree with the command line; never overwritten.
    Settings,
}

impl ExistingConfig {
    /// Looks at `path`. A file that cannot be read counts as [`ExistingConfig::Settings`], so
    /// that loading it reports the problem instead of meshd overwriting it.
    pub(crate) fn of(path: &Path) -> ExistingConfig {
        match std::fs::read_to_string(path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => ExistingConfig::Absent,
            Err(_) => ExistingConfig::Settings,
            Ok(text) if is_template(&text) => ExistingConfig::Template,
            Ok(_) => ExistingConfig::Settings,
        }
    }
}

/// Whether `text` holds no TOML setting: every line blank or a comment.
pub(crate) fn is_template(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#')
    })
}

/// Writes the config `command` (init or join) generated. Replaces the package's template,
/// refuses to overwrite anything else.
pub(crate) fn write_generated(
    path: &Path,
    config: &Config,
    command: &str,
    existing: ExistingConfig,
) -> Result<(), CommandError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(CONFIG_DIR_MODE)
            .create(dir)
            .map_err(|source| StateError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    let text = format!(
        "# meshd configuration, written by `{command}`. Every setting is described in the \
         commented example\n# meshd.toml (/usr/share/doc/meshd/examples/meshd.toml when \
         installed from the Debian package).\n{}",
        config.to_toml_string()
    );
    let overwrite = match existing {
        ExistingConfig::Template => Overwrite::Replace,
        ExistingConfig::Absent | ExistingConfig::Settings => Overwrite::Refuse,
    };
    write_atomic(path, text.as_bytes(), PUBLIC_FILE_MODE, overwrite)?;
    Ok(())
}

/// How to start the daemon for this node: the systemd service when the node uses the
/// default paths (which the unit uses) and the unit is installed, `meshd run` otherwise.
pub(crate) fn start_hint(context: &Context) -> String {
    let prefix = context.command_prefix();
    let unit_installed = UNIT_PATHS.iter().any(|path| Path::new(path).exists());
    if prefix == "meshd" && unit_installed {
        "Start it: `systemctl start meshd` (it also starts at boot; logs: `journalctl -u meshd`)"
            .to_owned()
    } else {
        format!("Start it: `{prefix} run` (the daemon, in the foreground)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_comments_and_blank_lines_make_a_template() {
        assert!(is_template(""));
        assert!(is_template(
            "# a comment\n\n   # indented\n#name = \"alpha\"\n"
        ));
        assert!(!is_template("# a comment\n[node]\n"));
        assert!(!is_template("name = \"alpha\""));
    }

    #[test]
    fn the_packaged_example_is_a_template() {
        let example = include_str!("../../../packaging/meshd.toml");
        assert!(is_template(example));
    }

    #[test]
    fn existing_config_tells_the_three_cases_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meshd.toml");
        assert_eq!(ExistingConfig::of(&path), ExistingConfig::Absent);
        std::fs::write(&path, "# only comments\n").unwrap();
        assert_eq!(ExistingConfig::of(&path), ExistingConfig::Template);
        std::fs::write(&path, "[node]\nname = \"a\"\n").unwrap();
        assert_eq!(ExistingConfig::of(&path), ExistingConfig::Settings);
        // A directory where the file should be: reported by the loader, not overwritten.
        let dir_path = dir.path().join("dir.toml");
        std::fs::create_dir(&dir_path).unwrap();
        assert_eq!(ExistingConfig::of(&dir_path), ExistingConfig::Settings);
    }

    #[test]
    fn a_template_is_replaced_and_a_real_config_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/meshd.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "# template\n").unwrap();
        let mut config = Config::new("alpha", mesh_config::Role::Core);
        config.node.endpoints = vec!["vpn.example.net:51820".parse().unwrap()];
        write_generated(&path, &config, "meshd init", ExistingConfig::Template).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.contains("name = \"alpha\""), "{written}");
        assert!(mesh_config::parse(&written, &path).is_ok());
        assert!(write_generated(&path, &config, "meshd init", ExistingConfig::Settings).is_err());
    }
}
