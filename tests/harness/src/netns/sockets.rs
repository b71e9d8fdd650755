//! Sockets inside a namespace, opened from this process: a thread joins the
//! namespace ([`Netns::enter`]) and creates the socket there, where it stays.
//! On top of that, the test traffic of the end-to-end tests: UDP datagrams,
//! UDP request/answer exchanges, TCP connections, `ping`, and waiting for a
//! server to listen.

use std::{
    fs, io,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use nix::sched::{CloneFlags, setns};

use super::Netns;
use crate::process::{output, wait_until};

impl Netns {
    /// Runs `f` on a thread that has joined this network namespace, and returns
    /// its result. Sockets created in `f` stay in this namespace for good, so this
    /// is how tests open sockets "inside" a namespace from this process.
    pub fn enter<T: Send>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send,
    ) -> anyhow::Result<T> {
        let path = self.path();
        let handle = fs::File::open(&path)
            .with_context(|| format!("opening network namespace {}", path.display()))?;
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    // Only this (fresh, short-lived) thread changes namespace.
                    setns(&handle, CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("entering {}", path.display()))?;
                    f()
                })
                .join()
                .map_err(|_| anyhow!("the thread inside {} panicked", self.name()))?
        })
    }

    /// A UDP socket bound to `addr` inside this namespace.
    pub fn udp_bind(&self, addr: SocketAddr) -> anyhow::Result<UdpSocket> {
        self.enter(|| UdpSocket::bind(addr).with_context(|| format!("binding UDP {addr}")))
            .with_context(|| format!("in namespace {}", self.name()))
    }

    /// A TCP listener bound to `addr` inside this namespace.
    pub fn tcp_listen(&self, addr: SocketAddr) -> anyhow::Result<TcpListener> {
        self.enter(|| TcpListener::bind(addr).with_context(|| format!("listening on TCP {addr}")))
            .with_context(|| format!("in namespace {}", self.name()))
    }

    /// A TCP connection to `addr` from inside this namespace.
    pub fn tcp_connect(&self, addr: SocketAddr, timeout: Duration) -> anyhow::Result<TcpStream> {
        self.enter(|| {
            let stream = TcpStream::connect_timeout(&addr, timeout)
                .with_context(|| format!("connecting to TCP {addr}"))?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            Ok(stream)
        })
        .with_context(|| format!("in namespace {}", self.name()))
    }

    /// Sends `count` UDP datagrams of `len` bytes from this namespace to `to`,
    /// from one socket on an ephemeral port, and returns that socket's address. Pauses briefly every 32 datagrams
    /// so that no queue on the way overflows: every datagram must arrive.
    pub fn send_udp(&self, to: SocketAddr, count: u32, len: usize) -> anyhow::Result<SocketAddr> {
        let socket = self.udp_bind(unspecified(to))?;
        // Connected, so that local_addr() tells the source address the route chose.
        socket
            .connect(to)
            .with_context(|| format!("no route to {to}"))?;
        let payload = vec![0x5a_u8; len];
        for i in 0..count {
            socket
                .send(&payload)
                .with_context(|| format!("sending UDP to {to}"))?;
            if i % 32 == 31 {
                thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(socket.local_addr()?)
    }

    /// Sends `count` UDP requests to `to` one at a time, each waiting up to
    /// `timeout` for its answer (e.g. from a [`UdpServer`] with echo). Returns
    /// how many were answered.
    pub fn udp_exchange(
        &self,
        to: SocketAddr,
        count: u32,
        timeout: Duration,
    ) -> anyhow::Result<u32> {
        let socket = self.udp_bind(unspecified(to))?;
        socket.set_read_timeout(Some(timeout))?;
        let mut answered = 0;
        let mut buf = [0u8; 2048];
        for i in 0..count {
            let request = format!("request {i}");
            socket.send_to(request.as_bytes(), to)?;
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) if from == to && buf[..n] == *request.as_bytes() => {
                        answered += 1;
                        break;
                    }
                    Ok(_) => continue,
                    Err(err) if is_timeout(&err) => break,
                    Err(err) => return Err(err).context("receiving a UDP answer"),
                }
            }
        }
        Ok(answered)
    }

    /// Pings `dst` `count` times from this namespace (iputils `ping`, 0.1 s
    /// apart). A ping without answers is not an error: look at the result.
    pub fn ping(&self, dst: IpAddr, count: u32) -> anyhow::Result<Ping> {
        let out = output(self.command("ping").args([
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.1",
            "-W",
            "2",
            &dst.to_string(),
        ]))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ping::parse(&text).ok_or_else(|| {
            anyhow!(
                "unexpected output from ping {dst} in {}: {text}{}",
                self.name(),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Waits until something listens on `port` (TCP or UDP) in this namespace,
    /// e.g. a server started with [`Netns::spawn`].
    pub fn wait_listening(&self, proto: Proto, port: u16, timeout: Duration) -> anyhow::Result<()> {
        let flag = match proto {
            Proto::Tcp => "-Hltn",
            Proto::Udp => "-Hlun",
        };
        let filter = format!("sport = :{port}");
        wait_until(timeout, Duration::from_millis(50), || {
            Ok(!self.run(["ss", flag, &filter])?.trim().is_empty())
        })
        .with_context(|| {
            format!(
                "nothing listens on {proto:?} port {port} in {}",
                self.name()
            )
        })
    }
}

/// The unspecified address of `to`'s family, port 0: bind there to reach `to`.
pub fn unspecified(to: SocketAddr) -> SocketAddr {
    match to {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

pub(crate) fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// The summary line of a `ping` run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping {
    pub transmitted: u32,
    pub received: u32,
}

impl Ping {
    /// Parses "N packets transmitted, M received, ..." out of ping's output.
    pub fn parse(text: &str) -> Option<Self> {
        let line = text
            .lines()
            .find(|line| line.contains("packets transmitted"))?;
        let mut numbers = line
            .split(',')
            .map(|part| part.split_whitespace().next()?.parse::<u32>().ok());
        Some(Self {
            transmitted: numbers.next()??,
            received: numbers.next()??,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary_is_parsed() {
        let text = "PING 203.0.113.2 (203.0.113.2) 56(84) bytes of data.\n\n\
                    --- 203.0.113.2 ping statistics ---\n\
                    5 packets transmitted, 4 received, 20% packet loss, time 404ms\n\
                    rtt min/avg/max/mdev = 0.030/0.041/0.057/0.010 ms\n";
        assert_eq!(
            Ping::parse(text),
            Some(Ping {
                transmitted: 5,
                received: 4
            })
        );
        let errors = "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2ms\n";
        assert_eq!(
            Ping::parse(errors),
            Some(Ping {
                transmitted: 3,
                received: 0
            })
        );
        assert_eq!(Ping::parse("ping: connect: Network is unreachable\n"), None);
    }

    #[test]
    fn unspecified_keeps_the_family() {
        assert_eq!(
            unspecified("203.0.113.2:53".parse().unwrap()),
            "0.0.0.0:0".parse().unwrap()
        );
        assert_eq!(
            unspecified("[2001:db8::1]:53".parse().unwrap()),
            "[::]:0".parse().unwrap()
        );
    }
}
