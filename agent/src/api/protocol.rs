//! The wire protocol of the local control socket: one JSON object per line in each direction.
//!
//! ```text
//! -> {"version": 1, "request": "status"}
//! <- {"version": 1, "ok": {"schema": 1, ...}}
//! -> {"version": 1, "request": "add_client", "name": "laptop"}
//! <- {"version": 1, "error": {"kind": "not_found", "message": "..."}}
//! ```
//!
//! `version` is the version of this envelope; the payload of `ok` carries its own `schema`
//! number (see [`super::report`]), which is what `--json` prints. A connection may carry
//! several requests, answered in order. Decoding is pure and never panics on any input.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this meshd speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// The longest request line accepted (newline excluded). Requests are tiny; the limit keeps a
/// misbehaving local client from making the daemon buffer without bound.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// The longest response line a client accepts: a mesh of thousands of peers fits easily.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// What a local client asks the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The node and data plane summary ([`super::report::StatusReport`]).
    Status,
    /// One entry per peer ([`super::report::PeersReport`]).
    Peers,
    /// The data plane's routing table and the kernel routes meshd installed
    /// ([`super::report::RoutesReport`]).
    Routes,
    /// Accept the client `name` as a peer. The daemon takes the client's key and addresses
    /// from its own state directory (`clients.json`), never from the request, so being able to
    /// reach the socket does not let anyone add an arbitrary key.
    AddClient { name: String },
    /// Renew the node certificate now (after the CA holder changed what it should say, e.g.
    /// `meshd ca approve`). Answered once the request is queued: `{"message": TEXT}`.
    Renew,
    /// Stand in for the foreign routers `meshd router add` stored in the state directory
    /// (`routers/`). The daemon reads them from there, never from the request. Answered once
    /// the request is queued: `{"message": TEXT}`.
    AddRouter,
    /// Start a new handshake now with the peer `name`, or with every peer when there is no
    /// name (`meshd rekey`). Answered once the initiations are queued:
    /// `{"rekeyed": [NAME...], "without_path": [NAME...]}`.
    Rekey {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

/// Why a request failed, as a stable word for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The line is not a request this daemon understands.
    BadRequest,
    /// The request line is longer than [`MAX_REQUEST_BYTES`].
    TooLarge,
    /// The request names a protocol version this daemon does not speak.
    UnsupportedVersion,
    /// The request names something that does not exist (e.g. an unknown client).
    NotFound,
    /// The request was understood but could not be carried out.
    Failed,
    /// The daemon has too many connections open; try again.
    Busy,
}

/// The error half of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// One response line: exactly one of `ok` and `error` is present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

impl Response {
    /// A successful response carrying `payload`.
    pub fn ok(payload: Value) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            ok: Some(payload),
            error: None,
        }
    }

    /// A failed response.
    pub fn error(failure: Failure) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            ok: None,
            error: Some(failure),
        }
    }

    /// The response as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a JSON value always serialises");
        line.push(b'\n');
        line
    }

    /// Reads a response line from the daemon. The `Err` text says what is wrong with it.
    pub fn decode(line: &[u8]) -> Result<Result<Value, Failure>, String> {
        let response: Response = serde_json::from_slice(trim_newline(line))
            .map_err(|error| format!("the daemon's answer is not a valid response: {error}"))?;
        if response.version != PROTOCOL_VERSION {
            return Err(format!(
                "the daemon answered with protocol version {}, this meshd speaks {PROTOCOL_VERSION} \
                 (are `meshd run` and this command the same version?)",
                response.version
            ));
        }
        match (response.ok, response.error) {
            (Some(payload), None) => Ok(Ok(payload)),
            (None, Some(failure)) => Ok(Err(failure)),
            _ => Err("the daemon's answer has neither or both of \"ok\" and \"error\"".to_owned()),
        }
    }
}

impl Request {
    /// The request as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self).expect("a request always serialises");
        if let Value::Object(map) = &mut value {
            map.insert("version".to_owned(), Value::from(PROTOCOL_VERSION));
        }
        let mut line = serde_json::to_vec(&value).expect("a JSON value always serialises");
        line.push(b'\n');
        line
    }

    /// Interprets one request line (without its newline, or with it). The version is checked
    /// before anything else, so that a newer client gets "unsupported version", not a
    /// confusing complaint about a field.
    pub fn decode(line: &[u8]) -> Result<Request, Failure> {
        let bad = |message: String| Failure::new(ErrorKind::BadRequest, message);
        let mut value: Value = serde_json::from_slice(trim_newline(line))
            .map_err(|error| bad(format!("the request is not valid JSON: {error}")))?;
        let object = value
            .as_object_mut()
            .ok_or_else(|| bad("the request must be a JSON object".to_owned()))?;
        let version = object
            .remove("version")
            .ok_or_else(|| bad("the request has no \"version\" field".to_owned()))?;
        match version.as_u64() {
            Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
            Some(v) => {
                return Err(Failure::new(
                    ErrorKind::UnsupportedVersion,
                    format!(
                        "protocol version {v} is not supported; this daemon speaks {PROTOCOL_VERSION}"
                    ),
                ));
            }
            None => return Err(bad(format!("\"version\" must be a number, not {version}"))),
        }
        // Read as a flat record first: serde's internally tagged enums ignore unknown fields
        // of unit variants, and a typo should not pass silently.
        let raw: RawRequest = serde_json::from_value(value)
            .map_err(|error| bad(format!("invalid request: {error}")))?;
        match (raw.request.as_str(), raw.name) {
            ("status", None) => Ok(Request::Status),
            ("peers", None) => Ok(Request::Peers),
            ("routes", None) => Ok(Request::Routes),
            ("renew", None) => Ok(Request::Renew),
            ("add_router", None) => Ok(Request::AddRouter),
            ("add_client", Some(name)) => Ok(Request::AddClient { name }),
            ("rekey", name) => Ok(Request::Rekey { name }),
            ("add_client", None) => Err(bad("add_client needs a \"name\"".to_owned())),
            ("status" | "peers" | "routes" | "renew" | "add_router", Some(_)) => {
                Err(bad(format!("{} takes no \"name\"", raw.request)))
            }
            (other, _) => Err(bad(format!(
                "unknown request {other:?}; expected status, peers, routes, add_client, renew, add_router or rekey"
            ))),
        }
    }
}

/// Every field a request may have, besides `version`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    request: String,
    #[serde(default)]
    name: Option<String>,
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::Status,
            Request::Peers,
            Request::Routes,
            Request::AddClient {
                name: "laptop".into(),
            },
            Request::Renew,
            Request::AddRouter,
            Request::Rekey { name: None },
            Request::Rekey {
                name: Some("beta".into()),
            },
        ] {
            let line = request.to_line();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(Request::decode(&line), Ok(request));
        }
    }

    #[test]
    fn the_wire_form_is_the_documented_one() {
        let line = Request::AddClient {
            name: "laptop".into(),
        }
        .to_line();
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"version": 1, "request": "add_client", "name": "laptop"})
        );
        let response = Response::error(Failure::new(ErrorKind::NotFound, "no client"));
        let value: Value = serde_json::from_slice(&response.to_line()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"version": 1, "error": {"kind": "not_found", "message": "no client"}})
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases: [(&[u8], ErrorKind, &str); 8] = [
            (b"", ErrorKind::BadRequest, "not valid JSON"),
            (b"status", ErrorKind::BadRequest, "not valid JSON"),
            (b"[1]", ErrorKind::BadRequest, "JSON object"),
            (
                br#"{"request":"status"}"#,
                ErrorKind::BadRequest,
                "\"version\"",
            ),
            (
                br#"{"version":"1","request":"status"}"#,
                ErrorKind::BadRequest,
                "number",
            ),
            (
                br#"{"version":2,"request":"status"}"#,
                ErrorKind::UnsupportedVersion,
                "version 2",
            ),
            (
                br#"{"version":1,"request":"reboot"}"#,
                ErrorKind::BadRequest,
                "reboot",
            ),
            (
                br#"{"version":1,"request":"status","x":1}"#,
                ErrorKind::BadRequest,
                "x",
            ),
        ];
        for (line, kind, needle) in cases {
            let failure = Request::decode(line).unwrap_err();
            assert_eq!(failure.kind, kind, "{}", String::from_utf8_lossy(line));
            assert!(failure.message.contains(needle), "{failure:?}");
        }
        let failure = Request::decode(br#"{"version":1,"request":"add_client"}"#).unwrap_err();
        assert!(failure.message.contains("name"), "{failure:?}");
    }

    #[test]
    fn responses_decode_to_payload_or_failure() {
        let ok = Response::ok(serde_json::json!({"schema": 1}));
        assert_eq!(
            Response::decode(&ok.to_line()).unwrap(),
            Ok(serde_json::json!({"schema": 1}))
        );
        let failure = Failure::new(ErrorKind::Busy, "busy");
        assert_eq!(
            Response::decode(&Response::error(failure.clone()).to_line()).unwrap(),
            Err(failure)
        );
        assert!(Response::decode(br#"{"version":1}"#).is_err());
        assert!(
            Response::decode(br#"{"version":9,"ok":1}"#)
                .unwrap_err()
                .contains("version 9")
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
        }

        #[test]
        fn arbitrary_json_objects_never_panic(
            version in any::<i64>(),
            request in "[a-z_]{0,12}",
            name in proptest::option::of(".{0,20}"),
        ) {
            let mut value = serde_json::json!({"version": version, "request": request});
            if let Some(name) = name {
                value["name"] = Value::from(name);
            }
            let _ = Request::decode(value.to_string().as_bytes());
        }
    }
}
