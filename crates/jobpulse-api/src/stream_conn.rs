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

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, Version, header};
use futures::StreamExt;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::outlet::{Outlet, SharedSocket, Tap};
use crate::server::StallGuard;

/// The request line prefix served here.
pub const STREAM_REQUEST: &[u8] = b"GET /api/v1/progress/stream";
/// Largest request head accepted on this path (the token may ride in the query): hyper's
/// default read buffer (8 KiB + 100 × 4 KiB), so a head is refused with 431 on this path
/// exactly when hyper would refuse it on every other route — with 16 KiB here a 16 KB token
/// was answered 431 or 401 depending on how the request's bytes arrived.
pub const MAX_HEAD: usize = 8 * 1024 + 100 * 4 * 1024;
/// Most header lines accepted (hyper's default).
const MAX_HEADERS: usize = 100;
/// Largest non-stream answer (an error envelope) written by this path.
const MAX_PLAIN_BODY: usize = 64 * 1024;

/// Bytes read to tell a stream request from anything else.
const SNIFF: usize = STREAM_REQUEST.len() + 1;

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// A stream request, told apart after this long: serve it with [`serve`].
    Stream(Duration),
    /// Anything else, told apart after this long (a client sending its request line slowly):
    /// hyper gets what is left of the header-read timeout.
    Other(Duration),
    /// Closed, or not even the request line's start within the header-read timeout: drop it.
    Gone,
}

/// The first bytes of a connection, read (not peeked: waiting for more bytes must not spin)
/// and kept to be replayed by [`Prefixed`].
#[derive(Debug, Clone, Copy)]
pub struct Prefix {
    bytes: [u8; SNIFF],
    len: usize,
}

impl Prefix {
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Reads up to [`SNIFF`] bytes, stopping as soon as they cannot be a stream request.
pub async fn sniff(stream: &mut TcpStream, within: Duration) -> (Sniffed, Prefix) {
    let started = Instant::now();
    let deadline = started + within;
    let mut p = Prefix {
        bytes: [0; SNIFF],
        len: 0,
    };
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut p.bytes[p.len..])).await;
        match read {
            Ok(Ok(n)) if n > 0 => p.len += n,
            _ => return (Sniffed::Gone, p),
        }
        let m = p.len.min(STREAM_REQUEST.len());
        if p.bytes[..m] != STREAM_REQUEST[..m] {
            return (Sniffed::Other(started.elapsed()), p);
        }
        if p.len == SNIFF {
            let stream_request = matches!(p.bytes[STREAM_REQUEST.len()], b'?' | b' ');
            let spent = started.elapsed();
            let sniffed = if stream_request {
                Sniffed::Stream(spent)
            } else {
                Sniffed::Other(spent)
            };
            return (sniffed, p);
        }
    }
}

/// An IO that first replays the bytes [`sniff`] read, then reads from the connection.
#[derive(Debug)]
pub struct Prefixed<IO> {
    prefix: Prefix,
    pos: usize,
    io: IO,
}

impl<IO> Prefixed<IO> {
    pub fn new(prefix: Prefix, io: IO) -> Self {
        Self { prefix, pos: 0, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let rest = &self.prefix.as_slice()[self.pos..];
        if !rest.is_empty() {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

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

fn plain(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// The status line and headers, plus ours: `Date`, `Connection: close` and the framing.
fn head(response: &Response<Body>, version: Version, framing: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let status = response.status();
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        if matches!(
            *name,
            header::CONNECTION | header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::DATE
        ) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let date = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now()))
        .unwrap_or(HeaderValue::from_static(""));
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(date.as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\n");
    out.extend_from_slice(framing.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// A whole (short) answer, then the connection closes.
async fn write_plain(
    stream: &mut TcpStream,
    response: Response<Body>,
    version: Version,
) -> std::io::Result<()> {
    let (parts, body) = response.into_parts();
    let response = Response::from_parts(parts, Body::empty());
    let bytes = match http_body_util::Limited::new(body, MAX_PLAIN_BODY)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(_) => bytes::Bytes::new(),
    };
    let mut out = head(
        &response,
        version,
        &format!("content-length: {}\r\n", bytes.len()),
    );
    out.extend_from_slice(&bytes);
    stream.write_all(&out).await?;
    stream.shutdown().await
}

/// An event stream: chunked (HTTP/1.1) or close-delimited (HTTP/1.0), one write per frame,
/// until the body ends, the client goes away, a write stalls, or shutdown.
async fn write_stream(
    stream: TcpStream,
    response: Response<Body>,
    version: Version,
    config: ConnConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let chunked = version == Version::HTTP_11;
    let framing = if chunked {
        "transfer-encoding: chunked\r\n"
    } else {
        ""
    };
    let (mut parts, body) = response.into_parts();
    // Direct writes need the chunked framing (each event one chunk).
    let tap = parts.extensions.remove::<Tap>().filter(|_| chunked);
    let out = head(
        &Response::from_parts(parts, Body::empty()),
        version,
        framing,
    );
    let sock = Arc::new(stream);
    let mut rd = SharedSocket(sock.clone());
    let mut wr = StallGuard::new(SharedSocket(sock.clone()), config.write_stall_timeout);
    wr.write_all(&out).await?;
    drop(out);
    let attached = tap.map(|Tap(outlet)| {
        outlet.attach(sock);
        Attached(outlet)
    });
    let mut frames = body.into_data_stream();
    let mut probe = [0u8; 16];
    // Registered once: every stream shares the token, and a registration per event would make
    // them all take turns on its lock.
    let stop = shutdown.cancelled();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            r = rd.read(&mut probe) => match r {
                // The client went away (or broke the connection): the stream ends here.
                Ok(0) | Err(_) => return Ok(()),
                // Bytes after the request (pipelining is not served here): ignored.
                Ok(_) => {}
            },
            // A direct write left bytes behind: they go first.
            _ = flushed(attached.as_ref()) => write_leftover(&mut wr, attached.as_ref()).await?,
            frame = frames.next() => match frame {
                Some(Ok(data)) if !data.is_empty() => {
                    write_leftover(&mut wr, attached.as_ref()).await?;
                    write_frame(&mut wr, &data, chunked).await?;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    if let Some(left) = attached.as_ref().and_then(|a| a.0.detach()) {
        wr.write_all(&left).await?;
    }
    if chunked {
        wr.write_all(b"0\r\n\r\n").await?;
    }
    wr.shutdown().await
}

/// A stream's outlet with this connection's socket attached; detached when the stream ends
/// (the hub writes no more).
struct Attached(Arc<Outlet>);

impl Drop for Attached {
    fn drop(&mut self) {
        self.0.detach();
    }
}

/// Resolves when a direct write left bytes for this task (never without an outlet).
async fn flushed(attached: Option<&Attached>) {
    match attached {
        Some(a) => a.0.flush.notified().await,
        None => std::future::pending().await,
    }
}

async fn write_leftover<W: AsyncWrite + Unpin>(
    wr: &mut W,
    attached: Option<&Attached>,
) -> std::io::Result<()> {
    match attached.and_then(|a| a.0.take_leftover()) {
        Some(left) => wr.write_all(&left).await,
        None => Ok(()),
    }
}

/// One body frame in one write: `{len:x}\r\n{data}\r\n` when chunked.
async fn write_frame<W: AsyncWrite + Unpin>(
    wr: &mut W,
    data: &[u8],
    chunked: bool,
) -> std::io::Result<()> {
    if !chunked {
        return wr.write_all(data).await;
    }
    wr.write_all(&chunk(data)).await
}

/// `data` as one HTTP/1.1 chunk: `{len:x}\r\n{data}\r\n`.
pub fn chunk(data: &[u8]) -> bytes::Bytes {
    let mut buf = Vec::with_capacity(data.len() + 12);
    buf.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\r\n");
    buf.into()
}
