//! Servers on the gateway that attackers use as amplifiers, and the real
//! clients they serve:
//!
//! - [`authoritative_dns`]: dnsmasq as the gateway's authoritative server for
//!   `zone.test`, with a 3 KB TXT record ([`BIG_TXT`], the amplifier: 38
//!   times the query) and an address for [`HOST`] and every name under it,
//!   answering up to 4096 bytes;
//! - the NTP server is [`super::real::ntp_server`] on the gateway's address;
//! - [`resolve`] and [`ntp_exchange`]: one lookup by a real resolver (`dig`)
//!   or NTP client (`chronyd -Q`) at an address of its own, retried as a
//!   resolver does, counted in [`Lookups`].

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    netns::{Netns, sockets::Proto},
    process::{Background, output},
    servers::real,
};

/// The gateway's zone: a 3 KB TXT record (the amplifier) and an address
/// (for every name under it too).
pub const BIG_TXT: &str = "big.zone.test";
pub const HOST: &str = "www.zone.test";
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 90);
/// Strings of the TXT record: 12 of 250 bytes.
const TXT_STRINGS: usize = 12;

/// dnsmasq on `listen` only (the gateway's `wan0` address), with no upstream,
/// answering its zone from the command line.
pub fn authoritative_dns(gateway: &Netns, listen: IpAddr) -> anyhow::Result<Background> {
    let strings: Vec<String> = (0..TXT_STRINGS)
        .map(|i| format!("\"{}\"", char::from(b'a' + i as u8).to_string().repeat(250)))
        .collect();
    let args = vec![
        "dnsmasq".to_owned(),
        "--keep-in-foreground".to_owned(),
        "--conf-file=/dev/null".to_owned(),
        "--no-resolv".to_owned(),
        "--no-hosts".to_owned(),
        format!("--listen-address={listen}"),
        "--bind-interfaces".to_owned(),
        "--port=53".to_owned(),
        // Answers as large as the query's EDNS size allows (the default is
        // 1232 since dnsmasq 2.87).
        "--edns-packet-max=4096".to_owned(),
        format!("--txt-record={BIG_TXT},{}", strings.join(",")),
        format!("--address=/{HOST}/{HOST_ADDR}"),
        "--pid-file".to_owned(),
        "--log-facility=-".to_owned(),
        // As servers::real: root keeps the parent-death signal.
        "--user=root".to_owned(),
    ];
    let mut dns = gateway.spawn("dnsmasq", args)?;
    gateway
        .wait_listening(Proto::Udp, 53, Duration::from_secs(5))
        .context("dnsmasq did not start on the gateway")
        .and_then(|()| dns.check_running())?;
    Ok(dns)
}

/// The lookups of one client (or all of them, summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lookups {
    pub total: u64,
    pub answered: u64,
    /// Answered over TCP, after a truncated answer.
    pub over_tcp: u64,
    /// Tries beyond the first (each after a timeout).
    pub retries: u64,
}

impl Lookups {
    pub fn add(&mut self, other: &Lookups) {
        self.total += other.total;
        self.answered += other.answered;
        self.over_tcp += other.over_tcp;
        self.retries += other.retries;
    }

    pub fn lost(&self) -> u64 {
        self.total - self.answered
    }
}

/// A name under [`HOST`] (dnsmasq answers every one with [`HOST_ADDR`]):
/// the `lookup`th of resolver number `resolver`.
pub fn host_name(resolver: usize, lookup: u64) -> String {
    format!("q{lookup}.r{resolver}.{HOST}")
}

/// One lookup of `name` (under [`HOST`]) by a resolver at `resolver` (an
/// address of `ns`), tried up to `max_tries` times, each waiting 1 s, as a
/// resolver does; dig itself goes over TCP after a truncated answer.
pub fn resolve(
    ns: &Netns,
    resolver: IpAddr,
    server: IpAddr,
    name: &str,
    max_tries: u32,
    lookups: &mut Lookups,
) -> anyhow::Result<()> {
    lookups.total += 1;
    for attempt in 0..max_tries {
        let out = output(ns.command("dig").args([
            "-b",
            &resolver.to_string(),
            &format!("@{server}"),
            name,
            "A",
            "+tries=1",
            "+time=1",
        ]))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let answered = text.lines().any(|line| {
            line.starts_with(name) && line.split_whitespace().last() == Some(&HOST_ADDR.to_string())
        });
        if answered {
            lookups.answered += 1;
            lookups.retries += u64::from(attempt);
            if text.contains("Truncated, retrying in TCP mode") {
                lookups.over_tcp += 1;
            }
            return Ok(());
        }
    }
    lookups.retries += u64::from(max_tries.saturating_sub(1));
    Ok(())
}

/// One NTP exchange by a real client at `client` (an address of `ns`):
/// `chronyd -Q`, which retries by itself; answered if it got a sample
/// within `timeout_secs`.
pub fn ntp_exchange(
    ns: &Netns,
    client: IpAddr,
    server: IpAddr,
    timeout_secs: u32,
    lookups: &mut Lookups,
) {
    lookups.total += 1;
    if real::ntp_exchange_at(ns, Some(client), server, timeout_secs).is_ok() {
        lookups.answered += 1;
    }
}
