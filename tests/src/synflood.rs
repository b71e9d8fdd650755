//! A minimal TCP SYN flood for the end-to-end tests: crafted Ethernet frames
//! sent through an AF_PACKET socket from a host on the lab's WAN segment
//! ([`crate::lab::Topology::add_wan_host`]), so that they reach the gateway's
//! `wan0` with any source address.
//!
//! Source addresses are checked: only the documentation and benchmarking
//! ranges ([`crate::packet::addr::is_test_address`]) may be spoofed, and the
//! frames only ever leave through the lab's own veths.
//!
//! (A UDP flood generator is being written separately; the two can be merged
//! into one module later.)

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::{
    flood::parse_mac,
    netns::Netns,
    packet::{PacketBuilder, addr::is_test_address, tcp_flags},
};

/// Where the SYNs come from.
#[derive(Clone, Copy, Debug)]
pub enum Sources {
    /// One address, random source ports.
    One(IpAddr),
    /// Random addresses inside a prefix (random host bits), random source ports.
    RandomIn(IpAddr, u8),
}

impl Sources {
    fn check(&self) -> anyhow::Result<()> {
        let (addr, len) = match *self {
            Sources::One(addr) => (addr, if addr.is_ipv4() { 32 } else { 128 }),
            Sources::RandomIn(addr, len) => (addr, len),
        };
        // Every address the prefix holds must be a test address: check its
        // first and last one (the ranges allowed are all wider than /24 or
        // equal to it, and contiguous).
        let (first, last) = bounds(addr, len);
        ensure!(
            is_test_address(first) && is_test_address(last) && first.is_ipv4() == last.is_ipv4(),
            "refusing to spoof {addr}/{len}: only documentation and benchmarking ranges"
        );
        ensure!(
            (addr.is_ipv4() && len >= 15) || (addr.is_ipv6() && len >= 32),
            "prefix /{len} wider than the test ranges"
        );
        Ok(())
    }

    fn pick(&self, rng: &mut XorShift) -> IpAddr {
        match *self {
            Sources::One(addr) => addr,
            Sources::RandomIn(IpAddr::V4(net), len) => {
                let host_bits = 32 - u32::from(len);
                let host = if host_bits == 0 {
                    0
                } else {
                    (rng.next() as u32) & (u32::MAX >> (32 - host_bits))
                };
                IpAddr::V4(Ipv4Addr::from(u32::from(net) | host))
            }
            Sources::RandomIn(IpAddr::V6(net), len) => {
                let host_bits = 128 - u32::from(len);
                let random = u128::from(rng.next()) << 64 | u128::from(rng.next());
                let host = if host_bits == 0 {
                    0
                } else {
                    random & (u128::MAX >> (128 - host_bits))
                };
                IpAddr::V6(Ipv6Addr::from(u128::from(net) | host))
            }
        }
    }
}

fn bounds(addr: IpAddr, len: u8) -> (IpAddr, IpAddr) {
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            let first = u32::from(v4) & mask;
            (
                Ipv4Addr::from(first).into(),
                Ipv4Addr::from(first | !mask).into(),
            )
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            let first = u128::from(v6) & mask;
            (
                Ipv6Addr::from(first).into(),
                Ipv6Addr::from(first | !mask).into(),
            )
        }
    }
}

/// What one flood sent.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub frames: u64,
    /// When the first and the last frame were handed to the kernel.
    pub first: Instant,
    pub last: Instant,
}

impl Sent {
    pub fn duration(&self) -> Duration {
        self.last.duration_since(self.first)
    }
}

/// An AF_PACKET socket on `eth0` of a WAN host, sending frames to the gateway's `wan0`.
pub struct SynFlood {
    socket: OwnedFd,
    ifindex: i32,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    rng: XorShift,
}

impl SynFlood {
    /// A sender on `iface` of `host`, addressing frames to `dst_mac` (the
    /// gateway's `wan0`).
    pub fn new(host: &Netns, iface: &str, dst_mac: &str) -> anyhow::Result<Self> {
        let src_mac = parse_mac(&host.mac(iface)?)?;
        let dst_mac = parse_mac(dst_mac)?;
        let name = std::ffi::CString::new(iface)?;
        let (socket, ifindex) = host.enter(|| {
            // SAFETY: plain socket(2); the fd is owned right away.
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    0, // send only: receive nothing
                )
            };
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("opening an AF_PACKET socket");
            }
            // SAFETY: fd is a fresh descriptor we own.
            let socket = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if ifindex == 0 {
                bail!("no interface {iface} in {}", host.name());
            }
            Ok((socket, ifindex as i32))
        })?;
        Ok(Self {
            socket,
            ifindex,
            src_mac,
            dst_mac,
            rng: XorShift::seeded(),
        })
    }

    /// Sends `count` SYNs from `sources` to `dst` at `rate` frames per second
    /// (0: as fast as possible), pacing in small batches so that no queue on
    /// the way overflows at moderate rates.
    pub fn send(
        &mut self,
        sources: Sources,
        dst: SocketAddr,
        count: u64,
        rate: u64,
    ) -> anyhow::Result<Sent> {
        sources.check()?;
        ensure!(is_test_address(dst.ip()), "{dst} is not a test address");
        const BATCH: u64 = 16;
        let start = Instant::now();
        let mut first = None;
        for i in 0..count {
            if rate > 0 && i % BATCH == 0 {
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
            }
            let src = sources.pick(&mut self.rng);
            let frame = self.frame(src, dst)?;
            self.send_frame(&frame)?;
            first.get_or_insert_with(Instant::now);
        }
        let last = Instant::now();
        Ok(Sent {
            frames: count,
            first: first.unwrap_or(last),
            last,
        })
    }

    /// Sends SYNs for `duration` at `rate` frames per second.
    pub fn send_for(
        &mut self,
        sources: Sources,
        dst: SocketAddr,
        duration: Duration,
        rate: u64,
    ) -> anyhow::Result<Sent> {
        let count = (duration.as_secs_f64() * rate as f64) as u64;
        self.send(sources, dst, count, rate)
    }

    fn frame(&mut self, src: IpAddr, dst: SocketAddr) -> anyhow::Result<Vec<u8>> {
        let sport = 1024 + (self.rng.next() % 64000) as u16;
        let seq = self.rng.next() as u32;
        let builder = match (src, dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s, d),
            _ => bail!("{src} and {dst} are not of one family"),
        };
        Ok(builder
            .macs(self.src_mac, self.dst_mac)
            .tcp(sport, dst.port(), tcp_flags::SYN)
            .tcp_seq_ack(seq, 0)
            .build()
            .bytes)
    }

    fn send_frame(&self, frame: &[u8]) -> anyhow::Result<()> {
        // SAFETY: a zeroed sockaddr_ll filled in below.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = self.ifindex;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&self.dst_mac);
        loop {
            // SAFETY: the buffer and address are valid for the lengths given.
            let sent = unsafe {
                libc::sendto(
                    self.socket.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const to).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if sent == frame.len() as isize {
                return Ok(());
            }
            let err = std::io::Error::last_os_error();
            // The device queue is full for a moment: wait, never lose a frame.
            if err.raw_os_error() == Some(libc::ENOBUFS) {
                thread::sleep(Duration::from_micros(200));
                continue;
            }
            return Err(err).context("sending a SYN frame");
        }
    }
}

/// A small fast PRNG (xorshift64*): ports, sequence numbers, spoofed hosts.
struct XorShift(u64);

impl XorShift {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Self(nanos | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_test_ranges_may_be_spoofed() {
        let ok = [
            Sources::One("192.0.2.66".parse().unwrap()),
            Sources::RandomIn("198.19.66.0".parse().unwrap(), 24),
            Sources::RandomIn("198.18.0.0".parse().unwrap(), 15),
            Sources::RandomIn("2001:db8:66::".parse().unwrap(), 48),
        ];
        for sources in ok {
            sources.check().unwrap();
        }
        let refused = [
            Sources::One("8.8.8.8".parse().unwrap()),
            Sources::RandomIn("198.18.0.0".parse().unwrap(), 14),
            Sources::RandomIn("192.0.2.0".parse().unwrap(), 23),
            Sources::RandomIn("2001:db8::".parse().unwrap(), 31),
            Sources::One("2001:4860::8888".parse().unwrap()),
        ];
        for sources in refused {
            assert!(sources.check().is_err(), "{sources:?}");
        }
    }

    #[test]
    fn random_sources_stay_inside_their_prefix() {
        let mut rng = XorShift::seeded();
        let v4 = Sources::RandomIn("198.19.66.0".parse().unwrap(), 24);
        let v6 = Sources::RandomIn("2001:db8:66::".parse().unwrap(), 48);
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..1000 {
            let IpAddr::V4(a) = v4.pick(&mut rng) else {
                panic!("family")
            };
            assert_eq!(a.octets()[..3], [198, 19, 66]);
            let IpAddr::V6(b) = v6.pick(&mut rng) else {
                panic!("family")
            };
            assert_eq!(b.segments()[..3], [0x2001, 0xdb8, 0x66]);
            distinct.insert(b.segments()[3]);
        }
        assert!(distinct.len() > 900, "many different /64s");
        assert_eq!(parse_mac("02:00:00:00:00:0a").unwrap(), [2, 0, 0, 0, 0, 10]);
    }
}
