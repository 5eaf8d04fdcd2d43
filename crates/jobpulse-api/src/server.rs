//! The HTTP server: binds, serves with hardened connection settings, shuts down gracefully.
//!
//! We drive hyper directly (as `axum::serve` does internally) because three protections need
//! connection-level settings axum does not expose: a header-read timeout, so a client that
//! sends headers one byte at a time is cut off; a write-stall timeout ([`StallGuard`]), so a
//! client that stops reading (an SSE stream it never drains, a download it never reads) is
//! disconnected instead of holding its connection, its stream and its memory forever; and a
//! cap on open connections. Event-stream requests take a leaner path than hyper
//! ([`crate::stream_conn`]): a connection whose first bytes are `GET /api/v1/progress/stream`
//! is served there, without hyper's two 8 KiB per-connection buffers.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::stream_conn::{Prefixed, Sniffed};

/// Listener and connection settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub bind: IpAddr,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// A client must finish sending request headers within this time.
    pub header_read_timeout: Duration,
    /// A connection whose writes made no progress for this long (the client stopped reading)
    /// is closed.
    pub write_stall_timeout: Duration,
    /// Open connections beyond this wait in the kernel's accept queue.
    pub max_connections: usize,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            header_read_timeout: Duration::from_secs(10),
            write_stall_timeout: Duration::from_secs(30),
            max_connections: 25_000,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A bound, not yet running server (zero2prod's `Application`).
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    config: HttpConfig,
    /// The event-stream route's hub, when [`Application::build`] serves the route.
    pub(crate) hub: Option<crate::hub::Hub>,
}

impl Application {
    /// Binds the listener. With `port: 0` the OS picks a free port; see [`Application::port`].
    pub async fn bind(config: HttpConfig, router: Router) -> io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(config.bind, config.port)).await?;
        Ok(Self {
            listener,
            router,
            config,
            hub: None,
        })
    }

    /// Serves on a listener bound beforehand (e.g. to learn the port before building the
    /// router, when the router needs its own public URL). `config.bind`/`port` are not used.
    pub fn with_listener(listener: TcpListener, config: HttpConfig, router: Router) -> Self {
        Self {
            listener,
            router,
            config,
            hub: None,
        }
    }

    /// The event-stream route's hub, when it is served.
    pub fn hub(&self) -> Option<&crate::hub::Hub> {
        self.hub.as_ref()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(self.config.bind, self.config.port))
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and drains in-flight requests
    /// for at most `shutdown_grace`.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> io::Result<()> {
        let Self {
            listener,
            router,
            config,
            hub: _,
        } = self;
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .keep_alive(true);
        let graceful = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let lean = crate::stream_conn::ConnConfig {
            header_read_timeout: config.header_read_timeout,
            write_stall_timeout: config.write_stall_timeout,
        };
        let streams_router = router.clone();
        let service = router.map_request(|req: Request<Incoming>| req.map(Body::new));
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (stream, _peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let (http, service, watcher) = (http.clone(), service.clone(), graceful.watcher());
            let (router, stop) = (streams_router.clone(), shutdown.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let mut http = http;
                // A slow request line keeps its deadline: what comes next gets what is left.
                let mut stream = stream;
                // A connection that has not sent a request yet (a client's pre-connect, a
                // pooled connection opened early) is dropped at shutdown: waiting for its first
                // bytes would hold the graceful shutdown for the whole header-read timeout.
                let (sniffed, prefix) = tokio::select! {
                    r = crate::stream_conn::sniff(&mut stream, lean.header_read_timeout) => r,
                    () = stop.cancelled() => return,
                };
                let spent = match sniffed {
                    Sniffed::Gone => return,
                    Sniffed::Stream(spent) => {
                        let left = lean.header_read_timeout.saturating_sub(spent);
                        let config = crate::stream_conn::ConnConfig {
                            header_read_timeout: left,
                            ..lean
                        };
                        crate::stream_conn::serve(stream, prefix, router, config, stop).await;
                        return;
                    }
                    Sniffed::Other(spent) => spent,
                };
                if spent > Duration::from_millis(100) {
                    http.header_read_timeout(lean.header_read_timeout.saturating_sub(spent));
                }
                let conn = http.serve_connection(
                    TokioIo::new(StallGuard::new(
                        Prefixed::new(prefix, stream),
                        lean.write_stall_timeout,
                    )),
                    TowerToHyperService::new(service),
                );
                // Boxed: a stream connection's task must not carry room for hyper's state.
                if let Err(e) = Box::pin(watcher.watch(conn)).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(config.shutdown_grace) => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
            }
        }
        Ok(())
    }
}

/// An IO object whose writes fail once the client stopped reading: while writes are held
/// back by the socket (a write that is pending, or only partly accepted), at least
/// [`MIN_PROGRESS`] bytes must go out within `limit`.
///
/// hyper has no write timeout: when a client stops reading, the connection's task waits for
/// the socket forever, and what it holds (an SSE stream's registration and queued events, a
/// response body, hyper's write buffer) stays alive with it. Waiting for *no* progress at all
/// is not enough: a client that never reads still lets a few hundred bytes through now and then
/// (its kernel compacts the receive queue and reopens the window a crack), so the clock only
/// restarts on real progress — a write accepted whole (no back-pressure), or `MIN_PROGRESS`
/// bytes since the back-pressure began. While it waits, the guard also waits on a timer, so the
/// connection's task is woken when the time is up even if the socket never becomes writable.
#[derive(Debug)]
pub struct StallGuard<IO> {
    io: IO,
    limit: Duration,
    /// Since when writes are held back, and how much went out since.
    stalled: Option<(Pin<Box<Sleep>>, usize)>,
}

/// Bytes that must go out within the stall limit once writes are held back.
pub const MIN_PROGRESS: usize = 16 * 1024;

impl<IO> StallGuard<IO> {
    pub fn new(io: IO, limit: Duration) -> Self {
        Self {
            io,
            limit,
            stalled: None,
        }
    }

    /// Applies the rule to the result of a write of `wanted` bytes.
    fn check(
        &mut self,
        cx: &mut Context<'_>,
        wanted: usize,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) if n >= wanted => {
                self.stalled = None;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Ok(n)) => {
                let limit = self.limit;
                let (_, sent) = self
                    .stalled
                    .get_or_insert_with(|| (Box::pin(tokio::time::sleep(limit)), 0));
                *sent += n;
                if *sent >= MIN_PROGRESS {
                    self.stalled = None;
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                let limit = self.limit;
                let (timer, _) = self
                    .stalled
                    .get_or_insert_with(|| (Box::pin(tokio::time::sleep(limit)), 0));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for StallGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for StallGuard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.check(cx, buf.len(), r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let wanted = bufs.iter().map(|b| b.len()).sum();
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(cx, wanted, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Resolves when the process gets Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
