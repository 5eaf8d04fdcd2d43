//! The HTTP server: binds, serves with hardened connection settings, shuts down gracefully.
//!
//! We drive hyper directly (as `axum::serve` does internally) because two protections need
//! connection-level settings axum does not expose: a header-read timeout, so a client that
//! sends headers one byte at a time is cut off, and a cap on open connections.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Listener and connection settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub bind: IpAddr,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// A client must finish sending request headers within this time.
    pub header_read_timeout: Duration,
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
}

impl Application {
    /// Binds the listener. With `port: 0` the OS picks a free port; see [`Application::port`].
    pub async fn bind(config: HttpConfig, router: Router) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(config.bind, config.port)).await?;
        Ok(Self {
            listener,
            router,
            config,
        })
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
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let Self {
            listener,
            router,
            config,
        } = self;
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .keep_alive(true);
        let graceful = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(config.max_connections));
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
            let conn = http.serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(service.clone()),
            );
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(permit);
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
