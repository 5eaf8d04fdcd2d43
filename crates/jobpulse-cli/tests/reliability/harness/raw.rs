//! Raw HTTP/1.1 over TCP, for requests no well-behaved client would send (invalid bytes in the
//! request line, broken headers, lying `Content-Length`s) and for clients that misbehave in
//! time (headers one byte at a time, streams never read).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back for a raw request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The status of the answer.
    Status(u16),
    /// The server closed the connection without an answer.
    Closed,
    /// No answer within the time limit.
    Timeout,
}

/// Sends `request` on a new connection and reads the answer's status line.
pub async fn send(
    addr: SocketAddr,
    request: &[u8],
    limit: Duration,
) -> anyhow::Result<(Outcome, Duration)> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    let _ = s.set_nodelay(true);
    let outcome = tokio::time::timeout(limit, async {
        // The server may answer (and close) before it read everything we send.
        if s.write_all(request).await.is_err() {
            return read_status(&mut s).await;
        }
        read_status(&mut s).await
    })
    .await
    .unwrap_or(Outcome::Timeout);
    let _ = s.set_zero_linger();
    Ok((outcome, started.elapsed()))
}

async fn read_status(s: &mut TcpStream) -> Outcome {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(2).any(|w| w == b"\r\n") {
                    break;
                }
            }
        }
    }
    parse_status(&buf).map_or(Outcome::Closed, Outcome::Status)
}

/// The status of an `HTTP/1.x NNN …` line.
pub fn parse_status(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|b| *b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// A request with the usual headers; `Connection: close` so the server ends it.
pub fn request(method: &str, target: &[u8], headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(target.len() + body.len() + 256);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || method == "POST" {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}
