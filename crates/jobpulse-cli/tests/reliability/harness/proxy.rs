//! A small TCP proxy between jobpulse and Redis or PostgreSQL, with switchable faults:
//!
//! - [`Mode::Pass`]: forwards both ways;
//! - [`Mode::Delay`]: forwards every chunk after a delay;
//! - [`Mode::Blackhole`]: accepts connections but forwards nothing and holds every connection
//!   open (what a network partition or a frozen server looks like: no error, no answer); data
//!   read meanwhile is forwarded once the mode goes back to passing;
//! - [`Mode::Reset`]: closes every connection with a TCP reset and resets new ones at once
//!   (what a restarting server looks like to its clients).
//!
//! The proxy runs on the test's runtime and stops (closing everything) when dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Delay(Duration),
    Blackhole,
    Reset,
}

/// Counters of a proxy.
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    pub open: AtomicU64,
    pub resets: AtomicU64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    pub stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    Reset,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (mode, rx) = watch::channel(Mode::Pass);
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        s.accepted.fetch_add(1, Ordering::Relaxed);
                        conns.spawn(connection(client, target, rx.clone(), s.clone()));
                    }
                    Some(_) = conns.join_next() => {}
                }
            }
        });
        Ok(Proxy {
            port,
            mode,
            stats,
            task,
        })
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Connections currently open through the proxy.
    pub fn open(&self) -> u64 {
        self.stats.open.load(Ordering::Relaxed)
    }
}

async fn connection(
    mut client: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    stats: Arc<Stats>,
) {
    stats.open.fetch_add(1, Ordering::Relaxed);
    let end = relay(&mut client, target, &mut mode).await;
    if end == End::Reset {
        stats.resets.fetch_add(1, Ordering::Relaxed);
        let _ = client.set_zero_linger();
    }
    drop(client);
    stats.open.fetch_sub(1, Ordering::Relaxed);
}

async fn relay(
    client: &mut TcpStream,
    target: SocketAddr,
    mode: &mut watch::Receiver<Mode>,
) -> End {
    // New connections wait out a blackhole before reaching the server.
    loop {
        let m = *mode.borrow_and_update();
        match m {
            Mode::Reset => return End::Reset,
            Mode::Blackhole => {
                if mode.changed().await.is_err() {
                    return End::Closed;
                }
            }
            Mode::Pass | Mode::Delay(_) => break,
        }
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        return End::Reset;
    };
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let end = {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        tokio::select! {
            e = pump(&mut cr, &mut uw, mode.clone()) => e,
            e = pump(&mut ur, &mut cw, mode.clone()) => e,
        }
    };
    if end == End::Reset {
        let _ = upstream.set_zero_linger();
    }
    end
}

async fn pump<R, W>(from: &mut R, to: &mut W, mut mode: watch::Receiver<Mode>) -> End
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let m = *mode.borrow_and_update();
        match m {
            Mode::Reset => return End::Reset,
            // Read nothing: the sender's buffers fill up, as on a dead link.
            Mode::Blackhole => {
                if mode.changed().await.is_err() {
                    return End::Closed;
                }
                continue;
            }
            Mode::Pass | Mode::Delay(_) => {}
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return End::Closed,
                Ok(n) => n,
            },
            c = mode.changed() => {
                if c.is_err() {
                    return End::Closed;
                }
                continue;
            }
        };
        loop {
            let m = *mode.borrow_and_update();
            match m {
                Mode::Reset => return End::Reset,
                Mode::Blackhole => {
                    if mode.changed().await.is_err() {
                        return End::Closed;
                    }
                }
                Mode::Delay(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Mode::Pass => break,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return End::Closed;
        }
    }
}
