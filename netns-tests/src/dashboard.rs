//! Reading a Grafana dashboard in tests: the PromQL it runs and the metric names those
//! queries select, so a test can check each name against a scrape of a running meshd
//! (packaging/grafana/meshd-dashboard.json, issue #16.5).
//!
//! The PromQL reader is deliberately small: it does not evaluate or fully parse, it only
//! finds selectors. A word is a metric name unless it is a function or aggregation (followed
//! by `(`, or an aggregation operator), a keyword (`by`, `on`, `bool`, `offset`, ...), a label
//! list after `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`, a number or
//! duration, or inside a string, `{...}` matchers or a `[...]` range. Grafana's `$variables`
//! are skipped. A selector with no name (`{__name__="x"}`) is an error, because the name it
//! matches could not be checked.

use std::collections::BTreeSet;

/// One PromQL expression of a dashboard, with where it is (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardQuery {
    /// `panel 7 "Handshake age" target A`, or `variable instance`.
    pub place: String,
    pub expr: String,
}

/// Every PromQL expression of a Grafana dashboard: the `expr` of each panel's targets (panels
/// inside collapsed rows included) and the PromQL inside query variables (`label_values(EXPR,
/// label)`, `query_result(EXPR)`, or a plain expression).
pub fn dashboard_queries(json: &str) -> Result<Vec<DashboardQuery>, String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("the dashboard is not JSON: {e}"))?;
    let mut queries = Vec::new();
    let mut stack: Vec<&serde_json::Value> = panels(&dashboard).collect();
    while let Some(panel) = stack.pop() {
        stack.extend(panels(panel));
        let targets = panel.get("targets").and_then(|t| t.as_array());
        for target in targets.into_iter().flatten() {
            if let Some(expr) = target.get("expr").and_then(|e| e.as_str()) {
                queries.push(DashboardQuery {
                    place: format!(
                        "panel {} {} target {}",
                        panel.get("id").unwrap_or(&serde_json::Value::Null),
                        panel.get("title").unwrap_or(&serde_json::Value::Null),
                        target.get("refId").and_then(|r| r.as_str()).unwrap_or("?"),
                    ),
                    expr: expr.to_owned(),
                });
            }
        }
    }
    let variables = dashboard
        .pointer("/templating/list")
        .and_then(|l| l.as_array());
    for variable in variables.into_iter().flatten() {
        if variable.get("type").and_then(|t| t.as_str()) != Some("query") {
            continue;
        }
        let name = variable.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        // Grafana keeps the query as a string (older) or as {"query": "..."} (current).
        let query = variable
            .get("query")
            .and_then(|q| q.as_str().or_else(|| q.get("query")?.as_str()))
            .ok_or_else(|| format!("variable {name} has no query"))?;
        if let Some(expr) = variable_promql(query)? {
            queries.push(DashboardQuery {
                place: format!("variable {name}"),
                expr,
            });
        }
    }
    Ok(queries)
}

/// The panels directly under `value` (the dashboard, or a row's `panels`).
fn panels(value: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    value
        .get("panels")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
}

/// The PromQL inside a Grafana Prometheus variable query, `None` for the forms that select no
/// metric (`label_values(label)`, `label_names()`, `metrics(regex)`).
fn variable_promql(query: &str) -> Result<Option<String>, String> {
    let query = query.trim();
    let call = |function: &str| {
        query
            .strip_prefix(function)
            .map(str::trim_start)
            .and_then(|rest| rest.strip_prefix('('))
            .and_then(|rest| rest.strip_suffix(')'))
    };
    if let Some(arguments) = call("label_values") {
        // label_values(EXPR, label): the label is after the last comma outside brackets.
        let mut depth = 0i32;
        let mut split = None;
        let mut in_string = None;
        for (i, c) in arguments.char_indices() {
            match (in_string, c) {
                (Some(q), c) if c == q => in_string = None,
                (Some(_), _) => {}
                (None, '"' | '\'' | '`') => in_string = Some(c),
                (None, '(' | '{' | '[') => depth += 1,
                (None, ')' | '}' | ']') => depth -= 1,
                (None, ',') if depth == 0 => split = Some(i),
                _ => {}
            }
        }
        return Ok(split.map(|at| arguments[..at].trim().to_owned()));
    }
    if let Some(expr) = call("query_result") {
        return Ok(Some(expr.to_owned()));
    }
    if call("label_names").is_some() || call("metrics").is_some() {
        return Ok(None);
    }
    Ok(Some(query.to_owned()))
}

/// PromQL aggregation operators: never metric names, whether `(` or `by (...)` follows.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Other keywords and literals that are words.
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];

/// The metric names `expr` selects, as written (`x_total`, `x_bucket`): the names Prometheus
/// looks samples up by. Errors on what the reader cannot follow (unclosed strings or
/// brackets, a selector without a name).
pub fn promql_metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let error = |what: String| Err(format!("{what} in {expr:?}"));
    let mut names = BTreeSet::new();
    let mut depth = 0usize;
    // Whether the last token could end a selector's name (so a `{` or `[` may follow it).
    let mut after_name = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let word_start = c.is_ascii_alphabetic() || c == '_' || c == ':';
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            // A comment runs to the end of the line.
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if matches!(c, '"' | '\'' | '`') {
            i = match skip_string(&chars, i) {
                Some(end) => end,
                None => return error(format!("unclosed string at {i}")),
            };
            after_name = false;
            continue;
        }
        if c == '$' {
            // A Grafana variable: `$name` or `${name}` / `${name:format}`.
            i += 1;
            if chars.get(i) == Some(&'{') {
                match chars[i..].iter().position(|&c| c == '}') {
                    Some(n) => i += n + 1,
                    None => return error("unclosed ${".to_owned()),
                }
            } else {
                while i < chars.len() && is_word(chars[i]) {
                    i += 1;
                }
            }
            after_name = false;
            continue;
        }
        if c == '{' || c == '[' {
            if c == '{' && !after_name {
                return error(format!(
                    "a selector without a metric name at {i} (write the name before {{)"
                ));
            }
            let close = if c == '{' { '}' } else { ']' };
            i = match skip_to(&chars, i + 1, close) {
                Some(end) => end,
                None => return error(format!("{c} at {i} is not closed")),
            };
            // `x{...}[5m]` and `x[5m] offset 1h`: a range may follow matchers.
            after_name = c == '{';
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // A number or duration (`8`, `1e3`, `0x1f`, `5m30s`).
            while i < chars.len() && (is_word(chars[i]) || chars[i] == '.') {
                i += 1;
            }
            after_name = false;
            continue;
        }
        if word_start {
            let start = i;
            while i < chars.len() && is_word(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let lower = word.to_ascii_lowercase();
            after_name = false;
            if LABEL_LIST_KEYWORDS.contains(&word.as_str()) {
                // by (a, b): skip the label names.
                if next == Some(&'(') {
                    let open = i + chars[i..].iter().position(|&c| c == '(').unwrap_or(0);
                    i = match skip_label_list(&chars, open + 1) {
                        Some(end) => end,
                        None => {
                            return error(format!(
                                "the label list of {word} is not closed or not only names"
                            ));
                        }
                    };
                }
            } else if next == Some(&'(')
                || AGGREGATIONS.contains(&word.as_str())
                || KEYWORDS.contains(&lower.as_str())
            {
                // A function, an aggregation or a keyword.
            } else {
                names.insert(word);
                after_name = true;
            }
            continue;
        }
        match c {
            '(' => depth += 1,
            ')' => match depth.checked_sub(1) {
                Some(less) => depth = less,
                None => return error(format!(") at {i} closes nothing")),
            },
            _ => {}
        }
        after_name = false;
        i += 1;
    }
    if depth != 0 {
        return error(format!("{depth} ( not closed"));
    }
    Ok(names)
}

/// Every metric name the dashboard's queries select.
pub fn dashboard_metrics(json: &str) -> Result<BTreeSet<String>, String> {
    let mut names = BTreeSet::new();
    for query in dashboard_queries(json)? {
        let selected =
            promql_metric_names(&query.expr).map_err(|e| format!("{}: {e}", query.place))?;
        names.extend(selected);
    }
    Ok(names)
}

/// The family a sample name belongs to if it is a histogram's or summary's series
/// (`x_seconds_bucket`, `_sum`, `_count` to `x_seconds`), else the name itself: docs list
/// histograms by family.
pub fn histogram_family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The index after the string that starts at `start` (its quote), `None` if unclosed.
/// Backquoted strings are raw; the others have backslash escapes.
fn skip_string(chars: &[char], start: usize) -> Option<usize> {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index after the `)` of a label list (`by (a, b)`) whose names start at `from`:
/// words, commas and quoted names only, so a `(` left open inside is not taken for a list.
fn skip_label_list(chars: &[char], from: usize) -> Option<usize> {
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            ')' => return Some(i + 1),
            '"' | '\'' | '`' => i = skip_string(chars, i)?,
            c if is_word(c) || c == ',' || c.is_whitespace() => i += 1,
            _ => return None,
        }
    }
    None
}

/// The index after the `close` that ends the bracket opened just before `from`, skipping
/// strings (a `}` inside a label value does not close the matchers).
fn skip_to(chars: &[char], from: usize, close: char) -> Option<usize> {
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i)?,
            c if c == close => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        promql_metric_names(expr)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .collect()
    }

    #[test]
    fn selectors_are_found_and_everything_else_is_not() {
        for (expr, expected) in [
            ("up", &["up"][..]),
            (
                "sum by (state) (meshd_peer_state{instance=~\"$instance\", state=\"up\"})",
                &["meshd_peer_state"],
            ),
            (
                "rate(a_total{x=\"y}{z\"}[$__rate_interval]) * 8",
                &["a_total"],
            ),
            ("sum(rate(a_total[5m])) without (peer)", &["a_total"]),
            (
                "sum by (peer) (a * on (instance, peer, local) group_left(kind) b{state=\"up\"})",
                &["a", "b"],
            ),
            (
                "histogram_quantile(0.9, sum by (le) (rate(x_seconds_bucket[5m30s])))",
                &["x_seconds_bucket"],
            ),
            ("c_seconds - time() < 15 * 86400", &["c_seconds"]),
            ("x offset 1h > bool 0 or vector(0)", &["x"]),
            ("topk(3, y) and z unless Inf", &["y", "z"]),
            ("x{a='b\\'c'} # a comment naming not_a_metric", &["x"]),
            (
                "label_replace(x, \"dst\", \"$1\", \"src\", \"(.*)\")",
                &["x"],
            ),
            ("rate(x[${__range_s}s]) / .5e1", &["x"]),
            ("recording:rule:name{job=\"j\"}", &["recording:rule:name"]),
        ] {
            assert_eq!(names(expr), expected, "{expr}");
        }
    }

    #[test]
    fn what_it_cannot_check_is_an_error() {
        for bad in [
            "{__name__=\"x\"}",
            "rate(x[5m]",
            "x)",
            "x{a=\"b}",
            "sum by (a (x)",
            "x{a=\"b\"",
        ] {
            assert!(promql_metric_names(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_come_from_targets_rows_and_variables() {
        let json = r#"{
            "panels": [
                {"id": 1, "title": "a", "targets": [{"refId": "A", "expr": "rate(a_total[1m])"}]},
                {"id": 2, "type": "row", "collapsed": true, "panels": [
                    {"id": 3, "title": "b", "targets": [{"refId": "B", "expr": "b"}]}
                ]}
            ],
            "templating": {"list": [
                {"name": "instance", "type": "query",
                 "query": {"query": "label_values(c_info{job=~\"a,b\"}, instance)"}},
                {"name": "peer", "type": "query", "query": "label_values(peer)"},
                {"name": "ds", "type": "datasource", "query": "prometheus"},
                {"name": "q", "type": "query", "query": "query_result(d > 0)"}
            ]}
        }"#;
        let queries = dashboard_queries(json).unwrap();
        assert_eq!(queries.len(), 4, "{queries:?}");
        assert!(
            queries
                .iter()
                .any(|q| q.place == "panel 3 \"b\" target B" && q.expr == "b")
        );
        let metrics: Vec<String> = dashboard_metrics(json).unwrap().into_iter().collect();
        assert_eq!(metrics, ["a_total", "b", "c_info", "d"]);
        assert!(dashboard_metrics("{\"panels\": [").is_err());
        let nameless = r#"{"panels": [{"id": 1, "targets": [{"expr": "{a=\"b\"}"}]}]}"#;
        let message = dashboard_metrics(nameless).unwrap_err();
        assert!(message.starts_with("panel 1 null target ?"), "{message}");
    }

    #[test]
    fn histogram_series_belong_to_their_family() {
        assert_eq!(histogram_family("x_seconds_bucket"), "x_seconds");
        assert_eq!(histogram_family("x_seconds_count"), "x_seconds");
        assert_eq!(histogram_family("x_total"), "x_total");
    }
}
