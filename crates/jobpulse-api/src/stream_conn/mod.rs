//! A lean HTTP/1.1 connection for the event stream (`GET /api/v1/progress/stream`).
//!
//! hyper keeps two 8 KiB buffers for every connection's whole life: the read buffer (kept for
//! the next request) and the response-head buffer. For a stream that sends a few hundred bytes
//! now and then, those two buffers were most of its memory (docs/benchmarks.md, SSE fan-out).
//! So the accept loop ([`crate::server`]) reads a new connection's first bytes ([`sniff`]) and
//! hands a stream request to [`serve`] instead of hyper (anything else goes to hyper with those
//! bytes replayed, [`Prefixed`]):
//!
//! - the request head is read into a temporary buffer (dropped once parsed, at most
//!   [`MAX_HEAD`] bytes, within the header-read timeout) and parsed with `httparse`;
//! - the request goes through the same router as every other request (authentication, CORS,
//!   error bodies, the stream handler itself);
//! - an event-stream answer is written with chunked encoding straight to the socket, each body
//!   frame in one write, behind the same write-stall guard as hyper's connections; any other
//!   answer (an error) is written whole. The connection closes when the answer ends: a stream
//!   connection is never reused for another request (`Connection: close`).
//!
//! While a stream is open the connection is also read (a few bytes at a time, discarded) so a
//! client that goes away ends it at once, and shutdown ends it too.
//!
//! A chunked stream shares its socket with the hub ([`crate::outlet`]): while the stream's task
//! is idle the hub writes live events to it directly; bytes such a write left behind are
//! written here first, behind the write-stall guard, before anything else.
//!
//! The submodules: `prefix` (telling a stream request apart, and replaying its first bytes) and
//! `write` (the answer: plain, or an event stream written frame by frame).

mod prefix;
mod write;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, Version, header};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use self::prefix::{Prefix, Prefixed, Sniffed, sniff};
pub use self::write::chunk;
use self::write::{plain, write_plain, write_stream};

/// The request line prefix served here.
pub const STREAM_REQUEST: &[u8] = b"GET /api/v1/progress/stream";
/// Largest request head accepted on this path (the token may ride in the query): hyper's
/// default read buffer (8 KiB + 100 × 4 KiB), so a head is refused with 431 on this path
/// exactly when hyper would refuse it on every other route — with 16 KiB here a 16 KB token
/// was answered 431 or 401 depending on how the request's bytes arrived.
pub const MAX_HEAD: usize = 8 * 1024 + 100 * 4 * 1024;
/// Most header lines accepted (hyper's default).
const MAX_HEADERS: usize = 100;

/// Settings of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct ConnConfig {
    pub header_read_timeout: Duration,
    pub write_stall_timeout: Duration,
}

/// Serves one stream request on `stream` (see the module docs), then closes it.
pub async fn serve(
    mut stream: TcpStream,
    prefix: Prefix,
    router: Router,
    config: ConnConfig,
    shutdown: CancellationToken,
) {
    // The steps before the stream are boxed: the task keeps only what the stream needs.
    let reading = Box::pin(tokio::time::timeout(
        config.header_read_timeout,
        read_request(&mut stream, prefix),
    ));
    let request = match reading.await {
        Ok(Ok(r)) => r,
        Ok(Err(status)) => {
            let _ = Box::pin(write_plain(&mut stream, plain(status), Version::HTTP_11)).await;
            return;
        }
        // Too slow to send its headers: dropped, as hyper does.
        Err(_) => return,
    };
    let version = request.version();
    let response = match Box::pin(router.oneshot(request)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let is_stream = response.status() == StatusCode::OK
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !is_stream {
        let _ = Box::pin(write_plain(&mut stream, response, version)).await;
        return;
    }
    let _ = write_stream(stream, response, version, config, shutdown).await;
}

/// Reads and parses the request head; the error is the status to answer with.
async fn read_request(stream: &mut TcpStream, prefix: Prefix) -> Result<Request<Body>, StatusCode> {
    let mut head = Vec::with_capacity(1024);
    head.extend_from_slice(prefix.as_slice());
    let end = loop {
        let mut chunk = [0u8; 1024];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        if n == 0 {
            return Err(StatusCode::BAD_REQUEST);
        }
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(i) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            break from + i + 4;
        }
        if head.len() > MAX_HEAD {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&head[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(StatusCode::BAD_REQUEST),
    }
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut builder = Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"))
        .version(version);
    for h in parsed.headers.iter() {
        // A request body is not expected on a GET; one that announces it is refused.
        if h.name.eq_ignore_ascii_case("content-length") && h.value != b"0"
            || h.name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Err(StatusCode::BAD_REQUEST);
        }
        builder = builder.header(h.name, h.value);
    }
    builder
        .body(Body::empty())
        .map_err(|_| StatusCode::BAD_REQUEST)
}
