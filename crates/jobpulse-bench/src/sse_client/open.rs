//! Opening the streams: at most [`OPENING`] at a time, each request written by hand, its head
//! parsed with `httparse` and its initial snapshot read before it counts as opened.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};

use super::Shared;
use super::reader::{Cmd, Conn, Reader, find, scan};
use crate::sse::{ClientConfig, Opened, PAGE, layout, path};

/// Stream opens in flight at once (keeps the server's accept backlog from overflowing).
const OPENING: usize = 128;
/// `EMFILE`: this process is out of file descriptors.
const EMFILE: i32 = 24;
/// Largest response head accepted while opening.
const MAX_HEAD: usize = 16 * 1024;

/// Why a stream did not open.
#[derive(Debug)]
struct OpenError {
    why: String,
    fd_limit: bool,
}

impl OpenError {
    fn new(why: impl Into<String>) -> Self {
        Self {
            why: why.into(),
            fd_limit: false,
        }
    }
}

/// Opens every stream (stopping early when out of file descriptors); returns once each has
/// opened or failed.
pub(super) async fn open_all(
    cfg: Arc<ClientConfig>,
    shared: &Arc<Shared>,
    reader: &Arc<Reader>,
) -> Opened {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(OPENING));
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<(), OpenError>>();
    let mut spawned = 0;
    for i in 0..cfg.streams {
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        if shared.fd_limited.load(Ordering::Relaxed) {
            break;
        }
        let (cfg, shared, tx, reader) = (cfg.clone(), shared.clone(), tx.clone(), reader.clone());
        tokio::spawn(async move {
            let timeout = Duration::from_secs(cfg.open_timeout_secs);
            let result = tokio::time::timeout(timeout, open(&cfg, i))
                .await
                .unwrap_or_else(|_| {
                    Err(OpenError::new(format!(
                        "no snapshot within {}s (server at its open-files limit or overloaded?)",
                        timeout.as_secs()
                    )))
                });
            drop(permit);
            match result.and_then(|(tcp, buf)| {
                let std = tcp
                    .into_std()
                    .map_err(|e| OpenError::new(format!("into_std: {e}")))?;
                Ok(Conn {
                    stream: MioStream::from_std(std),
                    buf,
                    watching: i < cfg.watchers,
                })
            }) {
                Ok(conn) => {
                    shared.open.fetch_add(1, Ordering::Relaxed);
                    if conn.watching {
                        shared.watching.fetch_add(1, Ordering::Relaxed);
                    }
                    reader.send(Cmd::Add(conn));
                    let _ = tx.send(Ok(()));
                }
                Err(e) => {
                    if e.fd_limit {
                        shared.fd_limited.store(true, Ordering::Relaxed);
                    }
                    let _ = tx.send(Err(e));
                }
            }
        });
        spawned += 1;
    }
    drop(tx);
    let (mut verified, mut failed, mut first_error) = (0, 0, None);
    for _ in 0..spawned {
        match rx.recv().await {
            Some(Ok(())) => verified += 1,
            Some(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e.why);
            }
            None => break,
        }
    }
    Opened {
        verified,
        failed: failed + (cfg.streams - spawned),
        first_error,
        fd_limited: shared.fd_limited.load(Ordering::Relaxed),
        secs: started.elapsed().as_secs_f64(),
        rss_kb: None,
    }
}

/// Connects, asks for stream `i` and reads its initial snapshot; returns the socket and the
/// bytes read past the snapshot.
async fn open(cfg: &ClientConfig, i: usize) -> Result<(tokio::net::TcpStream, Vec<u8>), OpenError> {
    let (tenant, first) = layout(i, cfg.watchers, cfg.tenants);
    let token = usize::try_from(tenant - 1)
        .ok()
        .and_then(|t| cfg.tokens.get(t))
        .ok_or_else(|| OpenError::new(format!("no token for tenant {tenant}")))?;
    let mut tcp = tokio::net::TcpStream::connect(cfg.addr)
        .await
        .map_err(|e| OpenError {
            fd_limit: e.raw_os_error() == Some(EMFILE),
            why: format!("connect: {e}"),
        })?;
    let _ = tcp.set_nodelay(true);
    let mut req = Vec::with_capacity(1024);
    if cfg.reuse_connection {
        // A first request on the connection: the stream then rides a connection hyper serves.
        req.extend_from_slice(b"GET /healthz HTTP/1.1\r\nhost: bench\r\n\r\n");
    }
    req.extend_from_slice(
        format!(
            "GET {} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\n\
             accept: text/event-stream\r\n\r\n",
            path(first)
        )
        .as_bytes(),
    );
    tcp.write_all(&req)
        .await
        .map_err(|e| OpenError::new(format!("request: {e}")))?;
    let mut buf = Vec::with_capacity(4096);
    if cfg.reuse_connection {
        let (status, len) = read_head(&mut tcp, &mut buf).await?;
        if status != 200 {
            return Err(OpenError::new(format!("first request: status {status}")));
        }
        match len {
            Some(len) => {
                while buf.len() < len {
                    read_more(&mut tcp, &mut buf).await?;
                }
                buf.drain(..len);
            }
            None => skip_chunked(&mut tcp, &mut buf).await?,
        }
    }
    let (status, _) = read_head(&mut tcp, &mut buf).await?;
    if status != 200 {
        return Err(OpenError::new(format!("status {status}")));
    }
    let mut seen = 0;
    loop {
        scan(&mut buf, |video, _| seen += i64::from(video));
        if seen >= PAGE {
            return Ok((tcp, buf));
        }
        read_more(&mut tcp, &mut buf)
            .await
            .map_err(|e| OpenError::new(format!("before the snapshot was complete: {}", e.why)))?;
    }
}

/// Reads past a chunked body at the front of `buf`.
async fn skip_chunked(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Result<(), OpenError> {
    loop {
        let Some(line) = find(buf, b"\r\n") else {
            read_more(tcp, buf).await?;
            continue;
        };
        let size = std::str::from_utf8(&buf[..line])
            .ok()
            .and_then(|h| usize::from_str_radix(h.split(';').next()?.trim(), 16).ok())
            .ok_or_else(|| OpenError::new("first request: a bad chunk size"))?;
        let end = line + 2 + size + 2;
        while buf.len() < end {
            read_more(tcp, buf).await?;
        }
        buf.drain(..end);
        if size == 0 {
            return Ok(());
        }
    }
}

async fn read_more(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Result<(), OpenError> {
    let mut chunk = [0u8; 4096];
    match tcp.read(&mut chunk).await {
        Ok(0) => Err(OpenError::new("the connection closed")),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(OpenError::new(format!("reading: {e}"))),
    }
}

/// Reads one response head off the front of `buf` (reading more as needed): its status and
/// `content-length`.
async fn read_head(
    tcp: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Result<(u16, Option<usize>), OpenError> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut res = httparse::Response::new(&mut headers);
            match res.parse(&buf[..end + 4]) {
                Ok(httparse::Status::Complete(_)) => {}
                _ => return Err(OpenError::new("a malformed response head")),
            }
            let status = res.code.unwrap_or(0);
            let len = res
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok());
            buf.drain(..end + 4);
            return Ok((status, len));
        }
        if buf.len() > MAX_HEAD {
            return Err(OpenError::new("a response head over 16 KiB"));
        }
        read_more(tcp, buf).await?;
    }
}
