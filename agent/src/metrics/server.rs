//! The HTTP side of the metrics: `GET /metrics` on the configured address, nothing else.
//!
//! It runs as one future inside the daemon (like the control socket), borrowing what it
//! reports; connections are served concurrently within it, capped in number and time, so a
//! scraper that misbehaves costs little. The address comes from a watch channel: a reload
//! that changes `[metrics]` rebinds (or stops serving) without touching anything else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::exposition::{self, Snapshot};

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 16;
/// How long one connection may stay open, whatever it does (a scrape takes milliseconds).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of file descriptors) so it is not a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the server reports: the daemon's counters as they are at each scrape.
pub trait MetricsSource {
    fn snapshot(&self) -> Snapshot;
}

/// Serves `GET /metrics` on the address in `address` (`None`: not at all), rebinding when it
/// changes. Never returns; a failed bind is logged and waits for the next address.
pub async fn serve(
    mut address: watch::Receiver<Option<SocketAddr>>,
    source: &impl MetricsSource,
) -> Infallible {
    loop {
        let wanted = *address.borrow_and_update();
        if let Some(wanted) = wanted {
            match TcpListener::bind(wanted).await {
                Ok(listener) => {
                    tracing::info!(address = %wanted, "serving metrics on http://{wanted}/metrics");
                    tokio::select! {
                        never = accept_loop(&listener, source) => match never {},
                        _ = address.changed() => {}
                    }
                    tracing::info!(address = %wanted, "metrics listener closed");
                    continue;
                }
                Err(error) => tracing::error!(
                    address = %wanted,
                    %error,
                    "cannot serve metrics; fix [metrics] listen and reload (SIGHUP)"
                ),
            }
        }
        if address.changed().await.is_err() {
            // Nobody can change the address any more: stay as we are.
            std::future::pending::<()>().await;
        }
    }
}

async fn accept_loop(listener: &TcpListener, source: &impl MetricsSource) -> Infallible {
    let mut connections = FuturesUnordered::new();
    let builder = {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .keep_alive(true);
        builder
    };
    loop {
        tokio::select! {
            accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "metrics: accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let service = hyper::service::service_fn(move |request| async move {
                    Ok::<_, Infallible>(respond(&request, source))
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                connections.push(tokio::time::timeout(CONNECTION_TIMEOUT, connection));
            }
            Some(_) = connections.next() => {}
        }
    }
}

/// The answer to one request.
fn respond(request: &Request<Incoming>, source: &impl MetricsSource) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are allowed on /metrics\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let text = exposition::encode(source.snapshot());
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(exposition::CONTENT_TYPE),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
