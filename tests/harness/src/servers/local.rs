//! Small servers on threads of this process, their sockets inside a
//! namespace: a UDP server that counts (and optionally echoes) datagrams and
//! remembers their senders, and a TCP echo server.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use super::ServerThread;
use crate::{
    netns::{Netns, sockets::is_timeout},
    process::wait_until,
};

/// A UDP server: counts the datagrams it receives, remembers their senders
/// and, with `echo`, sends each one back. Stops when dropped.
pub struct UdpServer {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    senders: Arc<Mutex<Vec<SocketAddr>>>,
    _thread: ServerThread,
}

impl UdpServer {
    pub fn start(ns: &Netns, addr: SocketAddr, echo: bool) -> anyhow::Result<Self> {
        let socket = ns.udp_bind(addr)?;
        let addr = socket.local_addr()?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let received = Arc::new(AtomicU64::new(0));
        let senders = Arc::new(Mutex::new(Vec::new()));
        let thread = ServerThread::spawn({
            let (received, senders) = (received.clone(), senders.clone());
            move |stop| {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    received.fetch_add(1, Ordering::Relaxed);
                    let mut senders = senders.lock().unwrap();
                    if !senders.contains(&from) {
                        senders.push(from);
                    }
                    drop(senders);
                    if echo {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            }
        });
        Ok(Self {
            addr,
            received,
            senders,
            _thread: thread,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Datagrams received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until `n` datagrams have arrived or `timeout` passed; returns the count.
    pub fn wait_for(&self, n: u64, timeout: Duration) -> u64 {
        let _ = wait_until(timeout, Duration::from_millis(10), || {
            Ok(self.received() >= n)
        });
        self.received()
    }

    /// The distinct source addresses seen, in order of arrival.
    pub fn senders(&self) -> Vec<SocketAddr> {
        self.senders.lock().unwrap().clone()
    }
}

/// A TCP echo server: echoes each connection until the peer closes it, one
/// connection at a time. Stops when dropped.
pub struct TcpEchoServer {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    _thread: ServerThread,
}

impl TcpEchoServer {
    pub fn start(ns: &Netns, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = ns.tcp_listen(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let connections = Arc::new(AtomicU64::new(0));
        let thread = ServerThread::spawn({
            let connections = connections.clone();
            move |stop| {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            let _ = echo(stream, &stop);
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        });
        Ok(Self {
            addr,
            connections,
            _thread: thread,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

fn echo(mut stream: TcpStream, stop: &AtomicBool) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => stream.write_all(&buf[..n])?,
            Err(err) if is_timeout(&err) => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
