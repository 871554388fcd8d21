//! Reading `meshd.toml`: TOML syntax, then the schema, then [`validate`]; every failure
//! becomes a [`Diagnostic`] with file, line, column and key.

use std::path::Path;

use toml::de::DeTable;

use crate::error::{ConfigError, Diagnostic};
use crate::locate::{Locator, line_column};
use crate::path::{KeyPath, PathSegment};
use crate::schema::Config;
use crate::validate::{Issue, validate};

/// Reads and checks the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and checks config `text`; `file` is only used to name it in diagnostics.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let diagnostic = |offset: usize, key: &KeyPath, message: String| {
        let (line, column) = line_column(text, offset);
        Diagnostic {
            file: file.to_owned(),
            line,
            column,
            key: key.to_string(),
            message,
        }
    };

    let root = DeTable::parse(text).map_err(|error| {
        let span = error.span().unwrap_or_default();
        let mut message = error.message().to_owned();
        // toml does not say which key is repeated; its span covers the key.
        if message == "duplicate key"
            && let Some(key) = text.get(span.clone()).filter(|k| !k.is_empty())
        {
            message = format!("duplicate key `{key}`");
        }
        ConfigError::Invalid(vec![diagnostic(span.start, &KeyPath::root(), message)])
    })?;
    let locator = Locator::new(text, root);

    let config: Config = toml::from_str(text).map_err(|error| {
        let span = error.span().unwrap_or_default();
        // The root table has an empty span (it has no header); so does an error about it.
        let path = if span.is_empty() {
            KeyPath::root()
        } else {
            locator.path_at(span.start)
        };
        let (key, message) = explain_schema_error(&locator, path, error.message());
        ConfigError::Invalid(vec![diagnostic(span.start, &key, message)])
    })?;

    let mut diagnostics: Vec<Diagnostic> = validate(&config)
        .into_iter()
        .map(|Issue { path, message }| diagnostic(locator.span_of(&path).start, &path, message))
        .collect();
    if diagnostics.is_empty() {
        return Ok(config);
    }
    diagnostics.sort_by_key(|d| (d.line, d.column));
    Err(ConfigError::Invalid(diagnostics))
}

/// Serde's messages name Rust types and fields; say the same in the config's terms.
fn explain_schema_error(locator: &Locator<'_>, path: KeyPath, message: &str) -> (KeyPath, String) {
    if let Some(field) = between(message, "missing field `", "`") {
        return (path.key(field), "required key is missing".to_owned());
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return (path, format!("unknown key {rest}"));
    }
    // `ipnet` and `std::net` both say only this; name the value and the expected form.
    if message == "invalid IP address syntax" {
        let value = locator.string_at(&path).unwrap_or_default();
        return (
            path.clone(),
            format!("{value:?} is not {}", expected_address(&path)),
        );
    }
    if message == "invalid socket address syntax" {
        let value = locator.string_at(&path).unwrap_or_default();
        return (
            path.clone(),
            format!("{value:?} is not an address with port such as 127.0.0.1:9474 or [::1]:9474"),
        );
    }
    let mut message = message.to_owned();
    // "expected struct NodeSection": every struct in the schema is a TOML table.
    if let Some((before, after)) = message.split_once("expected struct ") {
        let rest = after.split_once(' ').map_or("", |(_, rest)| rest);
        message = format!("{before}expected a table{rest}");
    }
    for (rust, toml) in [
        ("wanted string or table", "expected a string"),
        ("expected u8", "expected an integer from 0 to 255"),
        ("expected u16", "expected an integer from 0 to 65535"),
        ("expected u32", "expected an integer from 0 to 4294967295"),
        ("expected a sequence", "expected an array"),
        ("invalid type: map", "invalid type: table"),
        ("invalid type: sequence", "invalid type: array"),
    ] {
        message = message.replace(rust, toml);
    }
    (path, message)
}

/// What an address-typed key holds, for "is not ..." messages.
fn expected_address(path: &KeyPath) -> &'static str {
    let leaf = path.segments().iter().rev().find_map(|s| match s {
        PathSegment::Key(key) => Some(key.as_str()),
        PathSegment::Index(_) => None,
    });
    match leaf {
        Some("pool4") => "an IPv4 prefix such as 10.0.0.0/8",
        Some("pool6") => "an IPv6 prefix such as fd12:3456:789a::/48",
        Some("native6") => "an IPv6 /64 such as 2001:db8:1:2::/64",
        Some("address") => "an IP address such as 192.168.42.1",
        Some("addresses") => "an address with prefix length such as 10.1.0.1/16",
        _ => "an IP prefix such as 192.168.42.0/24",
    }
}

/// The text between `start` and the next `end` in `s`, if `s` begins with `start`.
fn between<'s>(s: &'s str, start: &str, end: &str) -> Option<&'s str> {
    s.strip_prefix(start)?.split(end).next()
}
