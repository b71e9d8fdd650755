//! TCP SYN floods for the end-to-end tests: crafted SYNs (random source ports
//! and sequence numbers) from spoofed sources ([`Prefix`]), sent through the
//! [`RawSender`] of a host on the lab's WAN segment
//! ([`crate::lab::Topology::add_wan_host`]), so that they reach the gateway's
//! `wan0` with any source address and only ever leave through the lab's veths.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure};
use rand::{RngExt as _, SeedableRng as _, rngs::SmallRng};

use super::{
    sender::{Pacer, RawSender},
    sources::Prefix,
};
use crate::{
    netns::{Mac, Netns},
    packet::{PacketBuilder, addr::is_test_address, tcp_flags},
};

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

/// Makes `host` a half-open flooder that uses its own address: it never
/// answers the SYN-ACKs it gets (no ACK, and no RST from its kernel either),
/// so every handshake it starts stays half-open at the server, as in the
/// incident. Its nftables table `flooder` counts them (`synacks`).
pub fn never_answer_synacks(host: &Netns) -> anyhow::Result<()> {
    host.nft(
        "table inet flooder {\n    counter synacks { }\n    chain input {\n        \
         type filter hook input priority 0; policy accept;\n        \
         tcp flags & (syn | ack) == syn | ack counter name \"synacks\" drop\n    }\n}\n",
    )
}

/// SYNs from `iface` of a WAN host to the gateway's `wan0` (MAC `dst_mac`).
pub struct SynFlood {
    sender: RawSender,
    dst_mac: Mac,
    rng: SmallRng,
}

impl SynFlood {
    pub fn new(host: &Netns, iface: &str, dst_mac: Mac) -> anyhow::Result<Self> {
        Ok(Self {
            sender: RawSender::open(host, iface)?,
            dst_mac,
            rng: SmallRng::from_rng(&mut rand::rng()),
        })
    }

    /// Sends `count` SYNs from random hosts of `sources` to `dst` at `rate`
    /// frames per second (0: as fast as possible).
    pub fn send(
        &mut self,
        sources: Prefix,
        dst: SocketAddr,
        count: u64,
        rate: u32,
    ) -> anyhow::Result<Sent> {
        ensure!(is_test_address(dst.ip()), "{dst} is not a test address");
        let pacer = (rate > 0).then(|| Pacer::new(rate));
        let mut first = None;
        for i in 0..count {
            if let Some(pacer) = &pacer {
                pacer.wait(i);
            }
            let src = sources.random_host(&mut self.rng);
            let frame = self.frame(src, dst)?;
            self.sender.send(&frame)?;
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
        sources: Prefix,
        dst: SocketAddr,
        duration: Duration,
        rate: u32,
    ) -> anyhow::Result<Sent> {
        let count = (duration.as_secs_f64() * f64::from(rate)) as u64;
        self.send(sources, dst, count, rate)
    }

    fn frame(&mut self, src: IpAddr, dst: SocketAddr) -> anyhow::Result<Vec<u8>> {
        let sport: u16 = self.rng.random_range(1024..65024);
        let seq: u32 = self.rng.random();
        let builder = match (src, dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s, d),
            _ => bail!("{src} and {dst} are not of one family"),
        };
        Ok(builder
            .macs(self.sender.mac().0, self.dst_mac.0)
            .tcp(sport, dst.port(), tcp_flags::SYN)
            .tcp_seq_ack(seq, 0)
            .build()
            .bytes)
    }
}
