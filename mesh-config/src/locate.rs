//! Maps between byte offsets in a TOML text, line:column positions and [`KeyPath`]s,
//! using the spans the `toml` parser records for every key and value. Tables opened
//! by a `[header]` only span their header, so lookups search the whole tree rather
//! than assuming that a parent's span encloses its children.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::path::{KeyPath, PathSegment};

/// A parsed document kept for locating things in it.
pub(crate) struct Locator<'a> {
    text: &'a str,
    root: Spanned<DeTable<'a>>,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(text: &'a str, root: Spanned<DeTable<'a>>) -> Self {
        Locator { text, root }
    }

    /// Where `path` is written: the value's span, or the nearest enclosing key or
    /// table that is written when the key itself is absent (a default was used).
    pub(crate) fn span_of(&self, path: &KeyPath) -> Range<usize> {
        let mut best = self.root.span();
        let mut table = Some(self.root.get_ref());
        let mut value: Option<&Spanned<DeValue<'a>>> = None;
        for segment in path.segments() {
            let next = match (segment, value, table) {
                (PathSegment::Key(key), None, Some(t)) => t.get(key.as_str()),
                (PathSegment::Key(key), Some(v), _) => v.get_ref().get(key.as_str()),
                (PathSegment::Index(i), Some(v), _) => v.get_ref().get(*i),
                _ => None,
            };
            let Some(next) = next else { break };
            best = next.span();
            value = Some(next);
            table = None;
        }
        best
    }

    /// The path of the innermost key or value whose span contains `offset`.
    pub(crate) fn path_at(&self, offset: usize) -> KeyPath {
        find_in_table(self.root.get_ref(), offset, &KeyPath::root()).unwrap_or_default()
    }

    /// The string value written at `path`, if that is a string.
    pub(crate) fn string_at(&self, path: &KeyPath) -> Option<String> {
        let raw = self.text.get(self.span_of(path))?;
        let value = DeValue::parse(raw).ok()?;
        value.get_ref().as_str().map(str::to_owned)
    }
}

fn find_in_table(table: &DeTable<'_>, offset: usize, at: &KeyPath) -> Option<KeyPath> {
    for (key, value) in table.iter() {
        let here = at.key(key.get_ref());
        if let Some(deeper) = find_in_value(value, offset, &here) {
            return Some(deeper);
        }
        if key.span().contains(&offset) {
            return Some(here);
        }
    }
    None
}

fn find_in_value(value: &Spanned<DeValue<'_>>, offset: usize, at: &KeyPath) -> Option<KeyPath> {
    let deeper = match value.get_ref() {
        DeValue::Table(table) => find_in_table(table, offset, at),
        DeValue::Array(array) => array
            .iter()
            .enumerate()
            .find_map(|(i, element)| find_in_value(element, offset, &at.index(i))),
        _ => None,
    };
    deeper.or_else(|| contains(value.span(), offset).then(|| at.clone()))
}

/// Like `Range::contains`, but an empty span (an error at end of input) contains its start.
fn contains(span: Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

/// 1-based line and column (in characters) of a byte offset into `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[node]\nname = \"a\"\nendpoints = [\"x:1\", \"y:2\"]\n\n[[peer]]\nname = \"b\"\n[[peer]]\nname = \"c\"\nimport = { default = \"accept\" }\n";

    fn locator() -> Locator<'static> {
        Locator::new(TEXT, DeTable::parse(TEXT).unwrap())
    }

    fn path(s: &[&str]) -> KeyPath {
        s.iter()
            .fold(KeyPath::root(), |p, seg| match seg.parse::<usize>() {
                Ok(i) => p.index(i),
                Err(_) => p.key(seg),
            })
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab\ncd", 99), (2, 3));
        assert_eq!(line_column("é\né", 4), (2, 1));
        assert_eq!(line_column("é\né", 5), (2, 2));
        assert_eq!(line_column("é", 1), (1, 1));
    }

    #[test]
    fn span_of_existing_and_missing_keys() {
        let l = locator();
        let pos = |p: &[&str]| line_column(TEXT, l.span_of(&path(p)).start);
        assert_eq!(pos(&["node", "name"]), (2, 8));
        assert_eq!(pos(&["node", "endpoints", "1"]), (3, 21));
        assert_eq!(pos(&["peer", "1", "name"]), (8, 8));
        assert_eq!(pos(&["peer", "1", "import", "default"]), (9, 22));
        // Absent keys fall back to the enclosing table's header.
        assert_eq!(pos(&["peer", "1", "endpoints", "0"]), (7, 1));
        assert_eq!(pos(&["node", "listen_port"]), (1, 1));
        assert_eq!(pos(&["mesh", "pool4"]), (1, 1));
    }

    #[test]
    fn path_at_offsets() {
        let l = locator();
        let at = |needle: &str| l.path_at(TEXT.find(needle).unwrap()).to_string();
        assert_eq!(at("\"y:2\""), "node.endpoints[1]");
        assert_eq!(at("name = \"a\""), "node.name");
        assert_eq!(at("\"c\""), "peer[1].name");
        assert_eq!(at("\"accept\""), "peer[1].import.default");
        assert_eq!(at("[[peer]]\nname = \"c\""), "peer[1]");
        assert_eq!(
            l.string_at(&path(&["peer", "0", "name"])),
            Some("b".to_owned())
        );
    }
}
