//! Reading meshd's Prometheus endpoint in tests: a plain HTTP GET and a parser of the
//! OpenMetrics text format that rejects what Prometheus would reject (so a test that parses
//! the exposition checks it, not just greps it).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// `METHOD path` on `address` with HTTP/1.1 and `Connection: close`.
pub fn http_request(
    address: SocketAddr,
    method: &str,
    path: &str,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let invalid = |what: &str| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what}: {text:?}"))
    };
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no status line"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Metric family name to its type (`counter`, `gauge`, `info`, ...).
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Whether any sample is called `name` (`meshd_peer_sent_bytes_total`, not the family).
    pub fn has_sample(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// The value of the sample called `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }
}

/// Parses OpenMetrics text: `# TYPE`/`# HELP`/`# UNIT` lines, samples, and the final
/// `# EOF`. Every sample must belong to a declared family (`_total` for counters, `_info` for
/// info metrics), and names and labels must be well formed.
pub fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut exposition = Exposition::default();
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.pop() != Some("# EOF") {
        return Err("the exposition does not end with # EOF".to_owned());
    }
    for (n, line) in lines.iter().enumerate() {
        let at = |message: String| format!("line {}: {message}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, family) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            check_name(family).map_err(at)?;
            match keyword {
                "TYPE" => {
                    let kind = parts.next().unwrap_or("").to_owned();
                    if exposition.types.insert(family.to_owned(), kind).is_some() {
                        return Err(at("family declared twice".to_owned()));
                    }
                }
                "HELP" | "UNIT" => {}
                other => return Err(at(format!("unknown keyword {other:?}"))),
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        if !declared(&exposition.types, &sample.name) {
            return Err(at("sample of an undeclared family".to_owned()));
        }
        exposition.samples.push(sample);
    }
    Ok(exposition)
}

/// Whether `sample` is the sample name of a declared family (`_total` for a counter).
fn declared(types: &BTreeMap<String, String>, sample: &str) -> bool {
    types.iter().any(|(family, kind)| {
        let expected = match kind.as_str() {
            "counter" => format!("{family}_total"),
            "info" => format!("{family}_info"),
            _ => family.clone(),
        };
        expected == sample
    })
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("{name:?} is not a metric name"))
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let (series, value) = line.rsplit_once(' ').ok_or_else(|| "no value".to_owned())?;
    let value: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => {
            let inner = rest
                .strip_suffix('}')
                .ok_or_else(|| "labels not closed".to_owned())?;
            (name, parse_labels(inner)?)
        }
        None => (series, BTreeMap::new()),
    };
    check_name(name)?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(mut inner: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    while !inner.is_empty() {
        let (key, rest) = inner
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\" in {inner:?}"))?;
        check_name(key)?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("dangling escape".to_owned()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("label value not closed".to_owned()),
            }
        };
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        inner = &rest[end + 1..];
        inner = inner.strip_prefix(',').unwrap_or(inner);
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_families_samples_and_labels() {
        let text = "# HELP a_total x\n# TYPE a counter\na_total{peer=\"b\\\"c\",k=\"v\"} 3\n\
                    # TYPE g gauge\ng 1.5\n# EOF\n";
        let exposition = parse_exposition(text).unwrap();
        assert_eq!(exposition.value("a_total", &[("peer", "b\"c")]), Some(3.0));
        assert_eq!(exposition.value("g", &[]), Some(1.5));
    }

    #[test]
    fn rejects_what_prometheus_would() {
        for bad in [
            "a 1\n# EOF\n",
            "# TYPE a counter\na 1\n# EOF\n",
            "# TYPE a gauge\na{k=v} 1\n# EOF\n",
            "# TYPE a gauge\na one\n# EOF\n",
            "# TYPE a gauge\na 1\n",
        ] {
            assert!(parse_exposition(bad).is_err(), "{bad:?}");
        }
    }
}
