//! Telling a stream request from anything else by a connection's first bytes ([`sniff`]), and
//! replaying those bytes to hyper when it is not one ([`Prefixed`]).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::STREAM_REQUEST;
#[cfg(doc)]
use super::serve;

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

/// Reads up to `SNIFF` bytes, stopping as soon as they cannot be a stream request.
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
