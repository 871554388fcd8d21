//! The command side of the control socket: blocking, one request at a time, with timeouts,
//! so `meshd status` never hangs on a stuck daemon.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::protocol::{MAX_RESPONSE_BYTES, Request, Response};

/// How long a command waits for the daemon to accept, read or answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to the daemon's control socket.
#[derive(Debug)]
pub struct ApiClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
}

impl ApiClient {
    /// Connects to the daemon listening on `path`.
    pub fn connect(path: &Path) -> Result<Self, ApiError> {
        let stream = UnixStream::connect(path).map_err(|source| {
            let path = path.to_path_buf();
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                ApiError::ConnectDenied { path, source }
            } else {
                ApiError::Connect { path, source }
            }
        })?;
        let io_error = |source| ApiError::Io {
            path: path.to_path_buf(),
            source,
        };
        stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .map_err(io_error)?;
        stream
            .set_write_timeout(Some(REQUEST_TIMEOUT))
            .map_err(io_error)?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
        })
    }

    /// Sends `request` and returns the daemon's payload, or its refusal as
    /// [`ApiError::Refused`].
    pub fn call(&mut self, request: &Request) -> Result<serde_json::Value, ApiError> {
        let io_error = |source| ApiError::Io {
            path: self.path.clone(),
            source,
        };
        self.reader
            .get_mut()
            .write_all(&request.to_line())
            .map_err(io_error)?;
        let mut line = Vec::new();
        let limit = u64::try_from(MAX_RESPONSE_BYTES).unwrap_or(u64::MAX);
        (&mut self.reader)
            .take(limit + 1)
            .read_until(b'\n', &mut line)
            .map_err(io_error)?;
        let protocol = |message: String| ApiError::Protocol {
            path: self.path.clone(),
            message,
        };
        if line.is_empty() {
            return Err(protocol(
                "the daemon closed the connection without answering".to_owned(),
            ));
        }
        if line.len() > MAX_RESPONSE_BYTES {
            return Err(protocol(format!(
                "the daemon's answer is longer than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        match Response::decode(&line).map_err(protocol)? {
            Ok(payload) => Ok(payload),
            Err(failure) => Err(ApiError::Refused { failure }),
        }
    }

    /// [`ApiClient::call`], with the payload read as `T`.
    pub fn call_as<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, ApiError> {
        let payload = self.call(request)?;
        serde_json::from_value(payload).map_err(|error| ApiError::Protocol {
            path: self.path.clone(),
            message: format!("the daemon's answer does not have the expected fields: {error}"),
        })
    }
}

/// Connects, sends one request and reads the payload as `T`.
pub fn request<T: DeserializeOwned>(path: &Path, request: &Request) -> Result<T, ApiError> {
    ApiClient::connect(path)?.call_as(request)
}
