//! A small SMTP server with a fixed number of session slots, like a mail
//! server's process limit, and its clients: a sender that delivers one
//! message per connection, and a slot-holder that says HELO and nothing more
//! ([`hold_slots`], which the lab also turns on Postfix, [`super::mail`]).
//!
//! The server speaks enough SMTP for both (greeting, HELO/EHLO, MAIL, RCPT,
//! DATA, NOOP, RSET, QUIT). Each accepted connection takes a slot until it
//! closes; with every slot taken, a new connection gets `421` and is closed
//! at once, as a real server's would. It records, per client address, the
//! sessions holding a slot now and the most it ever held, and the messages
//! delivered. It runs on threads of this process, its listening socket
//! inside a namespace, and stops when dropped.

use std::{
    collections::HashMap,
    io::{self, BufRead as _, BufReader, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::ServerThread;
use crate::netns::{Netns, sockets::is_timeout};

/// What the server saw.
#[derive(Clone, Debug, Default)]
pub struct SmtpStats {
    /// Sessions holding a slot now, per client address.
    pub sessions: HashMap<IpAddr, usize>,
    /// The most sessions each client address held at once.
    pub peak: HashMap<IpAddr, usize>,
    /// Messages accepted (250 after DATA), per client address.
    pub delivered: HashMap<IpAddr, u64>,
    /// Connections refused with 421 because every slot was taken.
    pub refused: u64,
}

impl SmtpStats {
    pub fn in_use(&self) -> usize {
        self.sessions.values().sum()
    }
}

/// The server; stops (and closes every session) when dropped.
pub struct SmtpServer {
    addr: SocketAddr,
    stats: Arc<Mutex<SmtpStats>>,
    _thread: ServerThread,
}

impl SmtpServer {
    /// Listens on `addr` inside `ns` with `slots` session slots.
    pub fn start(ns: &Netns, addr: SocketAddr, slots: usize) -> anyhow::Result<Self> {
        let listener = ns.tcp_listen(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stats = Arc::new(Mutex::new(SmtpStats::default()));
        let thread = ServerThread::spawn({
            let stats = stats.clone();
            move |stop| {
                let mut workers: Vec<JoinHandle<()>> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            let client = peer.ip().to_canonical();
                            if !take_slot(&stats, client, slots) {
                                let _ = refuse(stream);
                                continue;
                            }
                            let (stats, stop) = (stats.clone(), stop.clone());
                            workers.push(thread::spawn(move || {
                                let _ = session(stream, client, &stats, &stop);
                                let mut stats = stats.lock().unwrap();
                                if let Some(n) = stats.sessions.get_mut(&client) {
                                    *n -= 1;
                                }
                            }));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                    workers.retain(|w| !w.is_finished());
                }
                for worker in workers {
                    let _ = worker.join();
                }
            }
        });
        Ok(Self {
            addr,
            stats,
            _thread: thread,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> SmtpStats {
        self.stats.lock().unwrap().clone()
    }

    /// Forgets the peaks (the sessions now stay), to measure a new phase.
    pub fn reset_peaks(&self) {
        let mut stats = self.stats.lock().unwrap();
        stats.peak = stats.sessions.clone();
    }
}

/// A slot for `client` if one is free.
fn take_slot(stats: &Mutex<SmtpStats>, client: IpAddr, slots: usize) -> bool {
    let mut stats = stats.lock().unwrap();
    if stats.in_use() >= slots {
        stats.refused += 1;
        return false;
    }
    let now = {
        let n = stats.sessions.entry(client).or_default();
        *n += 1;
        *n
    };
    let peak = stats.peak.entry(client).or_default();
    *peak = (*peak).max(now);
    true
}

fn refuse(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.write_all(b"421 gw.example too many connections, try again later\r\n")
}

/// One session, until QUIT, the client closing, or the server stopping.
fn session(
    stream: TcpStream,
    client: IpAddr,
    stats: &Mutex<SmtpStats>,
    stop: &AtomicBool,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 gw.example ESMTP\r\n")?;
    let mut line = String::new();
    let mut in_data = false;
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) if !line.ends_with('\n') => continue,
            Ok(_) => {}
            Err(err) if is_timeout(&err) => continue,
            Err(err) => return Err(err),
        }
        let command = line.trim_end().to_owned();
        line.clear();
        if in_data {
            if command == "." {
                in_data = false;
                *stats.lock().unwrap().delivered.entry(client).or_default() += 1;
                writer.write_all(b"250 2.0.0 queued\r\n")?;
            }
            continue;
        }
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "HELO" | "EHLO" => b"250 gw.example\r\n",
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 ok\r\n",
            "DATA" => {
                in_data = true;
                b"354 end with <CRLF>.<CRLF>\r\n"
            }
            "QUIT" => {
                writer.write_all(b"221 2.0.0 bye\r\n")?;
                return Ok(());
            }
            _ => b"500 5.5.2 unknown command\r\n",
        };
        writer.write_all(reply)?;
    }
    Ok(())
}

/// A client connection: commands and their replies.
pub struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl SmtpClient {
    /// Connects from inside `ns` and reads the greeting; `timeout` bounds
    /// the handshake (a dropped SYN is sent again after 1 s) and each reply.
    /// A 421 (no slot free) is an error.
    pub fn connect(ns: &Netns, to: SocketAddr, timeout: Duration) -> anyhow::Result<Self> {
        let stream = ns.tcp_connect(to, timeout)?;
        let writer = stream.try_clone()?;
        let mut client = Self {
            reader: BufReader::new(stream),
            writer,
        };
        client.expect("220").context("the greeting")?;
        Ok(client)
    }

    /// Reads one reply line; fails unless it starts with `code`.
    fn expect(&mut self, code: &str) -> anyhow::Result<()> {
        let mut reply = String::new();
        if self.reader.read_line(&mut reply)? == 0 {
            bail!("connection closed, expected {code}");
        }
        if !reply.starts_with(code) {
            bail!("expected {code}, got {:?}", reply.trim_end());
        }
        Ok(())
    }

    fn command(&mut self, line: &str, code: &str) -> anyhow::Result<()> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.expect(code).with_context(|| format!("after {line}"))
    }

    /// Says HELO and nothing more: the session holds its slot until dropped.
    pub fn helo(&mut self, name: &str) -> anyhow::Result<()> {
        self.command(&format!("HELO {name}"), "250")
    }

    /// Delivers one message and says QUIT.
    pub fn deliver(mut self, from: &str, to: &str, body: &str) -> anyhow::Result<()> {
        self.helo("sender.example")?;
        self.command(&format!("MAIL FROM:<{from}>"), "250")?;
        self.command(&format!("RCPT TO:<{to}>"), "250")?;
        self.command("DATA", "354")?;
        self.writer
            .write_all(format!("Subject: test\r\n\r\n{body}\r\n.\r\n").as_bytes())?;
        self.expect("250").context("after the message")?;
        self.command("QUIT", "221")
    }
}

/// A slot-holder: opens sessions from `host` to `to` that say HELO and then
/// nothing, trying for `want` at once (each failed try again after 100 ms)
/// until `stop`; returns how many it opened. The sessions close only once
/// every attempt has ended, so that none gets a slot a closing one freed.
pub fn hold_slots(host: &Netns, to: SocketAddr, want: usize, stop: &AtomicBool) -> usize {
    let held: Vec<SmtpClient> = thread::scope(|scope| {
        let holders: Vec<_> = (0..want)
            .map(|_| {
                scope.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        match SmtpClient::connect(host, to, Duration::from_secs(2))
                            .and_then(|mut client| client.helo("holder.example").map(|()| client))
                        {
                            Ok(client) => {
                                while !stop.load(Ordering::Relaxed) {
                                    thread::sleep(Duration::from_millis(50));
                                }
                                return Some(client);
                            }
                            Err(_) => thread::sleep(Duration::from_millis(100)),
                        }
                    }
                    None
                })
            })
            .collect();
        holders
            .into_iter()
            .filter_map(|h| h.join().expect("a holder thread panicked"))
            .collect()
    });
    held.len()
}
