//! A tiny HTTP/1.1 server and client for the SYN end-to-end tests: the server
//! runs on threads of this process with its listening socket inside a
//! namespace, answers every `GET` with a fixed body and keeps connections
//! alive; the client opens connections from another namespace.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::ServerThread;
use crate::netns::{Netns, sockets::is_timeout};

pub const BODY: &[u8] = b"hello from behind the filter\n";

/// The server; stops (and closes every connection) when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    _thread: ServerThread,
}

impl HttpServer {
    pub fn start(ns: &Netns, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = ns.tcp_listen(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let requests = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let thread = ServerThread::spawn({
            let (requests, connections) = (requests.clone(), connections.clone());
            move |stop| {
                let mut workers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            let (requests, stop) = (requests.clone(), stop.clone());
                            workers.push(thread::spawn(move || {
                                let _ = serve(stream, &requests, &stop);
                            }));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                    workers.retain(|w: &JoinHandle<()>| !w.is_finished());
                }
                for worker in workers {
                    let _ = worker.join();
                }
            }
        });
        Ok(Self {
            addr,
            requests,
            connections,
            _thread: thread,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

/// Answers requests on one connection until the peer closes it.
fn serve(mut stream: TcpStream, requests: &AtomicU64, stop: &AtomicBool) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) if is_timeout(&err) => continue,
            Err(err) => return Err(err),
        }
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            requests.fetch_add(1, Ordering::Relaxed);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                BODY.len()
            );
            stream.write_all(head.as_bytes())?;
            stream.write_all(BODY)?;
        }
    }
    Ok(())
}

/// One keep-alive client connection.
pub struct HttpClient {
    stream: TcpStream,
}

impl HttpClient {
    /// Connects from inside `ns`; `timeout` bounds the handshake (a dropped
    /// SYN is retransmitted after 1 s) and every later read or write.
    pub fn connect(ns: &Netns, to: SocketAddr, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            stream: ns.tcp_connect(to, timeout)?,
        })
    }

    /// `GET /` and its whole answer; fails unless it is our 200 with our body.
    pub fn get(&mut self) -> anyhow::Result<()> {
        self.stream
            .write_all(b"GET / HTTP/1.1\r\nHost: gateway\r\nUser-Agent: wft\r\n\r\n")
            .context("sending a request")?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = self.stream.read(&mut chunk).context("reading the answer")?;
            if n == 0 {
                bail!("connection closed after {} bytes", answer.len());
            }
            answer.extend_from_slice(&chunk[..n]);
            if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n")
                && answer.len() >= end + 4 + BODY.len()
            {
                if !answer.starts_with(b"HTTP/1.1 200 OK\r\n") || !answer.ends_with(BODY) {
                    bail!("unexpected answer {:?}", String::from_utf8_lossy(&answer));
                }
                return Ok(());
            }
        }
    }
}
