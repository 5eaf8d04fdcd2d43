//! Writing the answer on the lean path: a short answer whole, or an event stream chunked, one
//! write per frame, sharing the socket with the hub's direct writes ([`crate::outlet`]).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, Version, header};
use futures::StreamExt;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::ConnConfig;
use crate::outlet::{Outlet, SharedSocket, Tap};
use crate::server::StallGuard;

/// Largest non-stream answer (an error envelope) written by this path.
const MAX_PLAIN_BODY: usize = 64 * 1024;

pub(super) fn plain(status: StatusCode) -> Response<Body> {
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
pub(super) async fn write_plain(
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
pub(super) async fn write_stream(
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
