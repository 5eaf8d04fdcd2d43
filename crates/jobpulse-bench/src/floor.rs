//! The floor of the SSE fan-out figure: the least a server can do to get one event to N
//! clients on this machine, measured in the same run as jobpulse.
//!
//! A minimal raw-socket server on a thread of the bench process: it accepts the client's
//! connections, answers each request with an event-stream head and a snapshot of 20 `video`
//! events (what the client waits for before a stream counts as opened), and then, for each
//! write, sends the same bytes jobpulse would send (the change's event rendered by
//! `jobpulse_api`, chunk-framed the same way) to every socket: one non-blocking `write` per
//! socket, in a loop, from one thread — no store, no hub, no task per stream. The client reads
//! these connections with the same reader as the jobpulse streams ([`super::sse_client`]).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;

use super::sse::unix_ns;

/// What the floor thread is told.
enum Cmd {
    /// Send these bytes to every connection; answers (send instant Unix ns, sockets that took
    /// the whole write).
    Write(Vec<u8>, mpsc::Sender<(u64, usize)>),
}

/// A running floor server (stops when dropped).
pub struct Floor {
    pub addr: SocketAddr,
    tx: Option<mpsc::Sender<Cmd>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Floor {
    /// Listens on a free localhost port; `head` is the answer (head and snapshot) to each
    /// request.
    pub fn start(head: Vec<u8>) -> anyhow::Result<Floor> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the floor server")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sse-floor".into())
            .spawn(move || serve(&listener, &head, &rx))
            .context("starting the floor thread")?;
        Ok(Floor {
            addr,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Sends `bytes` to every connection; returns the instant the loop began (Unix ns) and how
    /// many sockets took the whole write.
    pub fn write(&self, bytes: Vec<u8>) -> anyhow::Result<(u64, usize)> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .as_ref()
            .context("floor stopped")?
            .send(Cmd::Write(bytes, tx))
            .ok()
            .context("the floor thread stopped")?;
        rx.recv().context("the floor thread stopped")
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &TcpListener, head: &[u8], rx: &mpsc::Receiver<Cmd>) {
    let mut socks: Vec<TcpStream> = Vec::new();
    loop {
        match listener.accept() {
            Ok((sock, _)) => {
                if let Some(sock) = answer(sock, head) {
                    socks.push(sock);
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
        match rx.try_recv() {
            Ok(Cmd::Write(bytes, reply)) => {
                let at = unix_ns();
                let mut whole = 0;
                for s in &mut socks {
                    if s.write(&bytes).is_ok_and(|n| n == bytes.len()) {
                        whole += 1;
                    }
                }
                let _ = reply.send((at, whole));
            }
            Err(mpsc::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(1)),
            Err(mpsc::TryRecvError::Disconnected) => return,
        }
    }
}

/// Reads the request head and answers it; the socket is then non-blocking.
fn answer(mut sock: TcpStream, head: &[u8]) -> Option<TcpStream> {
    sock.set_nonblocking(false).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    sock.set_nodelay(true).ok()?;
    let mut req = Vec::new();
    let mut chunk = [0u8; 2048];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut chunk).ok().filter(|n| *n > 0)?;
        req.extend_from_slice(&chunk[..n]);
        if req.len() > 16 * 1024 {
            return None;
        }
    }
    sock.write_all(head).ok()?;
    sock.set_nonblocking(true).ok()?;
    Some(sock)
}
