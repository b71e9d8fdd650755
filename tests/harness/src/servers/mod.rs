//! Servers the tests, the lab and the benchmark talk to:
//!
//! - [`local`]: a UDP counter/echo server and a TCP echo server, on threads of
//!   this process with their sockets inside a namespace;
//! - [`http`]: a tiny HTTP/1.1 server and keep-alive client, the same way;
//! - [`smtp`]: an SMTP server with a fixed number of session slots, a
//!   sender delivering one message per connection and a slot-holder;
//! - [`real`]: real DNS and NTP servers from Debian packages (dnsmasq,
//!   chronyd) as child processes, and the real clients (`dig`, `chronyd -Q`);
//! - [`reflector`]: the gateway's own DNS server as an attacker's amplifier
//!   (an authoritative dnsmasq with a 3 KB record), and the lookups of real
//!   resolvers and NTP clients at addresses of their own;
//! - [`mail`]: Postfix with a fixed number of SMTP slots, and swaks sending;
//! - [`web`]: nginx, and curl loading a page over parallel connections.
//!
//! The in-process servers share [`ServerThread`]: a thread that runs until its
//! handle is dropped.

pub mod http;
pub mod local;
pub mod mail;
pub mod real;
pub mod reflector;
pub mod smtp;
pub mod web;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
};

/// A server's thread: `serve` runs until the stop flag it is given is set,
/// which dropping this does (and then waits for the thread to end). The flag
/// is shared, so that `serve` can hand it on to threads of its own.
pub struct ServerThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    pub fn spawn(serve: impl FnOnce(Arc<AtomicBool>) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let stop = stop.clone();
            move || serve(stop)
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
