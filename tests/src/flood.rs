//! Reflection floods from an attacker namespace: crafted Ethernet frames sent
//! through an `AF_PACKET` socket straight onto the attacker's link, at a
//! bounded rate and a bounded count.
//!
//! An [`Attack`] builds the frames an amplification attack would put on a
//! victim's WAN link, addressed to the gateway's `wan0` (its MAC and IPv4 /
//! IPv6 addresses), with spoofed sources rotating through ranges the caller
//! gives (only documentation and benchmarking ranges: every frame is checked
//! with [`addr::is_test_address`]):
//! - large DNS responses (QR set, random id, source port 53, random
//!   destination port), IPv4 and IPv6;
//! - larger DNS responses as IP fragments: a 3000-byte UDP datagram in three
//!   fragments, only the first carrying the UDP header; every
//!   [`Attack::reorder_every`]-th datagram sends its last fragment *before*
//!   its first one, an orphan when it arrives;
//! - NTP mode 7 (monlist) responses from port 123, and mode 7 queries to the
//!   gateway's port 123 (the gateway must never become the amplifier).
//!
//! Each frame carries its expected [`Fate`], so a test knows exactly how many
//! frames of each verdict it sent. [`flood`] paces the frames to a pps cap,
//! stops at a frame budget (or earlier on request once a minimum is out) and
//! returns a [`Report`] of what went out.
//!
//! Like netns.rs, this file is also compiled into xtask (for the lab) with
//! `#[path]`: it uses only std, anyhow and libc, and reaches the harness as
//! `super::netns` and `super::packet`.

use std::{
    collections::BTreeMap,
    ffi::CString,
    fmt::Write as _,
    io,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, anyhow, bail};

use super::{
    netns::Netns,
    packet::{ExtHeader, PacketBuilder, addr, proto},
};

/// An `AF_PACKET` raw socket opened inside a namespace and bound to one of
/// its interfaces: whatever is sent goes out of that interface as is.
pub struct RawSender {
    fd: OwnedFd,
    iface: String,
    mac: [u8; 6],
}

impl RawSender {
    /// Opens the socket inside `ns` (the socket stays in that namespace, so it
    /// can be used from any thread), bound to `iface`, receiving nothing.
    pub fn open(ns: &Netns, iface: &str) -> anyhow::Result<Self> {
        let mac = parse_mac(&ns.mac(iface)?)?;
        let name = CString::new(iface)?;
        let fd = ns
            .enter(|| {
                // SAFETY: plain syscalls on values we own; the fd is checked.
                unsafe {
                    let ifindex = libc::if_nametoindex(name.as_ptr());
                    if ifindex == 0 {
                        return Err(io::Error::last_os_error())
                            .with_context(|| format!("no interface {iface}"));
                    }
                    // Protocol 0: this socket sends only, it never receives.
                    let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
                    if fd < 0 {
                        return Err(io::Error::last_os_error()).context("socket(AF_PACKET)");
                    }
                    let fd = OwnedFd::from_raw_fd(fd);
                    let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                    sll.sll_family = libc::AF_PACKET as u16;
                    sll.sll_ifindex = ifindex as i32;
                    if libc::bind(
                        fd.as_raw_fd(),
                        (&raw const sll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    ) != 0
                    {
                        return Err(io::Error::last_os_error())
                            .with_context(|| format!("binding to {iface}"));
                    }
                    Ok(fd)
                }
            })
            .with_context(|| format!("opening a raw socket on {iface} in {}", ns.name()))?;
        Ok(Self {
            fd,
            iface: iface.to_owned(),
            mac,
        })
    }

    /// The MAC address of the interface: the source MAC of the frames.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends one frame. `Ok(false)`: the first hop dropped it (ENOBUFS, a
    /// full queue), so it did not go out and may be sent again.
    pub fn send(&self, frame: &[u8]) -> anyhow::Result<bool> {
        // SAFETY: the buffer is valid for its length; the fd is ours.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if sent < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENOBUFS) {
                return Ok(false);
            }
            return Err(err).with_context(|| {
                format!("sending a {}-byte frame on {}", frame.len(), self.iface)
            });
        }
        if sent as usize != frame.len() {
            bail!("sent {sent} of {} bytes on {}", frame.len(), self.iface);
        }
        Ok(true)
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> anyhow::Result<[u8; 6]> {
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|part| u8::from_str_radix(part, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("'{text}' is not a MAC address"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow!("'{text}' is not a MAC address"))
}

/// What a flood frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A large DNS response over IPv4, not fragmented.
    DnsResponse4,
    /// A large DNS response over IPv6, not fragmented.
    DnsResponse6,
    /// A larger DNS response in three IPv4 fragments.
    DnsFragments4,
    /// A larger DNS response in three IPv6 fragments.
    DnsFragments6,
    /// An NTP mode 7 monlist response over IPv4 (source port 123).
    NtpMode7Response4,
    /// An NTP mode 7 monlist response over IPv6.
    NtpMode7Response6,
    /// An NTP mode 7 monlist query to the gateway's port 123, over IPv4.
    NtpMode7Query4,
    /// An NTP mode 7 monlist query to the gateway's port 123, over IPv6.
    NtpMode7Query6,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::DnsResponse4,
        Kind::DnsResponse6,
        Kind::DnsFragments4,
        Kind::DnsFragments6,
        Kind::NtpMode7Response4,
        Kind::NtpMode7Response6,
        Kind::NtpMode7Query4,
        Kind::NtpMode7Query6,
    ];

    /// The mixed flood of the tests and the lab: every kind, the single DNS
    /// responses twice as often.
    pub const MIX: [Kind; 9] = [
        Kind::DnsResponse4,
        Kind::DnsResponse4,
        Kind::DnsResponse6,
        Kind::DnsFragments4,
        Kind::DnsFragments6,
        Kind::NtpMode7Response4,
        Kind::NtpMode7Response6,
        Kind::NtpMode7Query4,
        Kind::NtpMode7Query6,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Kind::DnsResponse4 => "DNS responses, IPv4 (1200-byte answer)",
            Kind::DnsResponse6 => "DNS responses, IPv6 (1200-byte answer)",
            Kind::DnsFragments4 => "DNS responses in 3 IPv4 fragments (3000-byte UDP)",
            Kind::DnsFragments6 => "DNS responses in 3 IPv6 fragments (3000-byte UDP)",
            Kind::NtpMode7Response4 => "NTP mode 7 monlist responses, IPv4",
            Kind::NtpMode7Response6 => "NTP mode 7 monlist responses, IPv6",
            Kind::NtpMode7Query4 => "NTP mode 7 monlist queries to port 123, IPv4",
            Kind::NtpMode7Query6 => "NTP mode 7 monlist queries to port 123, IPv6",
        }
    }

    pub fn is_v6(self) -> bool {
        matches!(
            self,
            Kind::DnsResponse6
                | Kind::DnsFragments6
                | Kind::NtpMode7Response6
                | Kind::NtpMode7Query6
        )
    }
}

/// The verdict a flood frame must get from the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fate {
    /// A DNS response (or the first fragment of one) nobody asked for.
    UnsolicitedDns,
    /// A later fragment whose first fragment came (and was dropped) before it.
    FragmentOfDropped,
    /// A later fragment sent before its first fragment.
    Orphan,
    /// NTP mode 6/7, response or query.
    NtpControl,
}

impl Fate {
    pub const ALL: [Fate; 4] = [
        Fate::UnsolicitedDns,
        Fate::FragmentOfDropped,
        Fate::Orphan,
        Fate::NtpControl,
    ];

    /// The filter's reason name (filter_common::Reason::name) for this fate;
    /// orphans depend on the `orphan_fragments` setting.
    pub fn reason(self, orphans_dropped: bool) -> &'static str {
        match self {
            Fate::UnsolicitedDns => "drop_unsolicited_dns",
            Fate::FragmentOfDropped => "drop_fragment",
            Fate::Orphan if orphans_dropped => "drop_orphan_fragment",
            Fate::Orphan => "pass_orphan_fragment",
            Fate::NtpControl => "drop_ntp_control",
        }
    }
}

/// Where the flood goes: the gateway's `wan0`.
#[derive(Clone, Debug)]
pub struct Target {
    pub mac: [u8; 6],
    pub v4: Ipv4Addr,
    /// IPv6 destinations, used in turn (the gateway, and hosts behind it:
    /// IPv6 is routed, so LAN hosts are attacked on wan0 too).
    pub v6: Vec<Ipv6Addr>,
}

/// Spoofed source ranges, used in turn.
#[derive(Clone, Debug)]
pub struct Sources {
    pub v4: Vec<(Ipv4Addr, u8)>,
    pub v6: Vec<(Ipv6Addr, u8)>,
}

impl Sources {
    fn pick4(&self, n: u64, random: u64) -> Ipv4Addr {
        let (net, len) = self.v4[(n % self.v4.len() as u64) as usize];
        let host_bits = 32 - u32::from(len);
        let mask = if host_bits == 32 {
            u32::MAX
        } else {
            (1u32 << host_bits) - 1
        };
        Ipv4Addr::from((u32::from(net) & !mask) | (random as u32 & mask))
    }

    fn pick6(&self, n: u64, random: u64) -> Ipv6Addr {
        let (net, len) = self.v6[(n % self.v6.len() as u64) as usize];
        let host_bits = 128 - u32::from(len);
        let mask = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let random = u128::from(random) | (u128::from(random.rotate_left(29)) << 64);
        Ipv6Addr::from((u128::from(net) & !mask) | (random & mask))
    }
}

/// Size of the unfragmented DNS responses' UDP payload (the answer).
pub const DNS_RESPONSE_LEN: usize = 1200;
/// Size of the fragmented DNS responses' UDP datagram, header included.
pub const FRAGMENTED_UDP_LEN: usize = 3000;
/// IP payload per fragment: as much as a 1500-byte MTU carries, in 8-byte units.
const FRAGMENT_PAYLOAD_V4: usize = 1480;
const FRAGMENT_PAYLOAD_V6: usize = 1448;

/// Numbers datagrams across every attack of this process, so fragment keys
/// (source, destination, IP id) never repeat within a run.
static NEXT_DATAGRAM: AtomicU32 = AtomicU32::new(0);

/// Builds flood frames. See the module documentation.
pub struct Attack {
    pub target: Target,
    pub sources: Sources,
    /// The attacker interface's MAC: the frames' source MAC.
    pub src_mac: [u8; 6],
    /// The kinds to send, in turn (a kind listed twice is sent twice as often).
    pub kinds: Vec<Kind>,
    /// Every n-th fragmented datagram sends its last fragment first (0: never).
    pub reorder_every: u32,
    units: u64,
    rng: u64,
}

/// One unit of an attack: a whole datagram, or the fragments of one.
pub struct Unit {
    pub kind: Kind,
    pub frames: Vec<(Vec<u8>, Fate)>,
}

impl Attack {
    pub fn new(target: Target, sources: Sources, src_mac: [u8; 6], kinds: &[Kind]) -> Self {
        assert!(!kinds.is_empty(), "an attack needs at least one kind");
        assert!(!sources.v4.is_empty() && !sources.v6.is_empty());
        assert!(!target.v6.is_empty());
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(NEXT_DATAGRAM.load(Ordering::Relaxed)) << 40;
        Self {
            target,
            sources,
            src_mac,
            kinds: kinds.to_vec(),
            reorder_every: 4,
            units: 0,
            rng: seed | 1,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A random destination port of the victim: 1024..=65535.
    fn victim_port(&mut self) -> u16 {
        1024 + (self.random() % (65536 - 1024)) as u16
    }

    /// The next unit, kinds in turn.
    pub fn next_unit(&mut self) -> Unit {
        let kind = self.kinds[(self.units % self.kinds.len() as u64) as usize];
        let n = self.units;
        self.units += 1;
        let random = self.random();
        let (src4, src6) = (self.sources.pick4(n, random), self.sources.pick6(n, random));
        let dst4 = self.target.v4;
        let dst6 =
            self.target.v6[(n / self.kinds.len() as u64 % self.target.v6.len() as u64) as usize];
        assert!(
            addr::both_are_test_addresses(src4, dst4) && addr::both_are_test_addresses(src6, dst6),
            "flood addresses must be documentation or benchmarking addresses"
        );
        let (src_mac, dst_mac) = (self.src_mac, self.target.mac);
        let base4 = || PacketBuilder::ipv4(src4, dst4).macs(src_mac, dst_mac);
        let base6 = || PacketBuilder::ipv6(src6, dst6).macs(src_mac, dst_mac);
        let txid = self.random() as u16;
        let port = self.victim_port();
        let ip_id = self.random() as u16;
        let frames = match kind {
            Kind::DnsResponse4 => {
                let frame = base4()
                    .fragment(ip_id, false, 0)
                    .udp(53, port)
                    .payload(&dns_response(txid, DNS_RESPONSE_LEN))
                    .build();
                vec![(frame.bytes, Fate::UnsolicitedDns)]
            }
            Kind::DnsResponse6 => {
                let frame = base6()
                    .udp(53, port)
                    .payload(&dns_response(txid, DNS_RESPONSE_LEN))
                    .build();
                vec![(frame.bytes, Fate::UnsolicitedDns)]
            }
            Kind::DnsFragments4 | Kind::DnsFragments6 => {
                let datagram = NEXT_DATAGRAM.fetch_add(1, Ordering::Relaxed);
                let answer = dns_response(txid, FRAGMENTED_UDP_LEN - 8);
                let v6 = kind == Kind::DnsFragments6;
                // The whole datagram first, for its UDP header and checksum.
                let whole = if v6 {
                    base6().udp(53, port).payload(&answer).build()
                } else {
                    base4().udp(53, port).payload(&answer).build()
                };
                let udp = &whole.bytes[whole.l4.expect("UDP")..];
                let chunk = if v6 {
                    FRAGMENT_PAYLOAD_V6
                } else {
                    FRAGMENT_PAYLOAD_V4
                };
                let fragments: Vec<Vec<u8>> = udp
                    .chunks(chunk)
                    .enumerate()
                    .map(|(i, part)| {
                        let offset = (i * chunk / 8) as u16;
                        let more = (i + 1) * chunk < udp.len();
                        let builder = if v6 {
                            base6().ext(ExtHeader::Fragment {
                                offset,
                                more,
                                id: datagram,
                            })
                        } else {
                            // Unique per datagram with its source, see NEXT_DATAGRAM.
                            base4().fragment(datagram as u16, more, offset)
                        };
                        builder.protocol(proto::UDP).payload(part).build().bytes
                    })
                    .collect();
                assert_eq!(fragments.len(), 3);
                let reorder = self.reorder_every > 0
                    && (n / self.kinds.len() as u64).is_multiple_of(u64::from(self.reorder_every));
                let mut fragments = fragments.into_iter();
                let (first, middle, last) = (
                    fragments.next().unwrap(),
                    fragments.next().unwrap(),
                    fragments.next().unwrap(),
                );
                if reorder {
                    vec![
                        (last, Fate::Orphan),
                        (first, Fate::UnsolicitedDns),
                        (middle, Fate::FragmentOfDropped),
                    ]
                } else {
                    vec![
                        (first, Fate::UnsolicitedDns),
                        (middle, Fate::FragmentOfDropped),
                        (last, Fate::FragmentOfDropped),
                    ]
                }
            }
            Kind::NtpMode7Response4 => {
                let frame = base4()
                    .udp(123, port)
                    .payload(&ntp_monlist_response(&mut || self.random()))
                    .build();
                vec![(frame.bytes, Fate::NtpControl)]
            }
            Kind::NtpMode7Response6 => {
                let frame = base6()
                    .udp(123, port)
                    .payload(&ntp_monlist_response(&mut || self.random()))
                    .build();
                vec![(frame.bytes, Fate::NtpControl)]
            }
            Kind::NtpMode7Query4 => {
                let frame = base4().udp(port, 123).payload(&NTP_MONLIST_QUERY).build();
                vec![(frame.bytes, Fate::NtpControl)]
            }
            Kind::NtpMode7Query6 => {
                let frame = base6().udp(port, 123).payload(&NTP_MONLIST_QUERY).build();
                vec![(frame.bytes, Fate::NtpControl)]
            }
        };
        Unit { kind, frames }
    }
}

/// A DNS response of exactly `len` bytes: id `txid`, flags QR RD RA, one
/// question (example.org ANY), answers of TXT records filling the rest, as
/// an open resolver reflects them.
pub fn dns_response(txid: u16, len: usize) -> Vec<u8> {
    const QNAME: &[u8] = b"\x07example\x03org\x00";
    const RECORD_FIXED: usize = 2 + 2 + 2 + 4 + 2 + 1; // name ptr, type, class, ttl, rdlength, string length
    const RECORD_MAX: usize = RECORD_FIXED + 255;
    let mut out = Vec::with_capacity(len);
    out.extend(txid.to_be_bytes());
    out.extend(0x8180u16.to_be_bytes());
    out.extend([0, 1, 0, 0, 0, 0, 0, 0]); // qd 1, an (below), ns 0, ar 0
    out.extend(QNAME);
    out.extend([0, 255, 0, 1]); // ANY, IN
    assert!(
        len >= out.len() + RECORD_FIXED,
        "a {len}-byte DNS response is too short"
    );
    let mut answers: u16 = 0;
    while out.len() < len {
        let remaining = len - out.len();
        let size = if remaining <= RECORD_MAX {
            remaining
        } else {
            RECORD_MAX.min(remaining - RECORD_FIXED)
        };
        let text = size - RECORD_FIXED;
        out.extend([0xc0, 12, 0, 16, 0, 1]); // pointer to the question's name, TXT, IN
        out.extend(3600u32.to_be_bytes());
        out.extend(((text + 1) as u16).to_be_bytes());
        out.push(text as u8);
        out.extend(std::iter::repeat_n(b'v', text));
        answers += 1;
    }
    out[6..8].copy_from_slice(&answers.to_be_bytes());
    out
}

/// An NTP mode 7 MON_GETLIST_1 request (what monlist amplification sends):
/// version 2, mode 7, implementation XNTPD (3), request 42, padded to 48 bytes.
pub const NTP_MONLIST_QUERY: [u8; 48] = {
    let mut query = [0u8; 48];
    query[0] = 0x17;
    query[2] = 0x03;
    query[3] = 0x2a;
    query
};

/// An NTP mode 7 MON_GETLIST_1 response: response and more bits, version 2,
/// mode 7 (0xd7), six 72-byte entries of random addresses: 440 bytes.
pub fn ntp_monlist_response(random: &mut impl FnMut() -> u64) -> Vec<u8> {
    let mut out = vec![0xd7, 0x00, 0x03, 0x2a, 0x00, 0x06, 0x00, 0x48];
    for _ in 0..6 {
        let mut entry = [0u8; 72];
        for chunk in entry.chunks_mut(8) {
            chunk.copy_from_slice(&random().to_be_bytes()[..chunk.len()]);
        }
        out.extend(entry);
    }
    out
}

/// How fast and how long to flood.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Frames per second, at most.
    pub pps: u32,
    /// Frames to send before a stop request is honoured.
    pub min_frames: u64,
    /// Frames never exceeded (a unit that would cross it is not sent).
    pub max_frames: u64,
}

/// Frames and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub frames: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: usize) {
        self.frames += 1;
        self.bytes += bytes as u64;
    }
}

/// What a flood sent.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Per kind: datagrams (units) and frames.
    pub kinds: BTreeMap<Kind, (u64, Count)>,
    /// Per expected verdict.
    pub fates: BTreeMap<Fate, Count>,
    pub total: Count,
    pub elapsed: Duration,
    /// Sends the first hop refused (ENOBUFS) and that were retried.
    pub retries: u64,
    /// True if it ended on a stop request, false if it used its whole budget.
    pub stopped: bool,
}

impl Report {
    pub fn fate(&self, fate: Fate) -> Count {
        self.fates.get(&fate).copied().unwrap_or_default()
    }

    /// Frames per filter reason, under the given orphan policy.
    pub fn expected(&self, orphans_dropped: bool) -> BTreeMap<&'static str, Count> {
        let mut out: BTreeMap<&'static str, Count> = BTreeMap::new();
        for (fate, count) in &self.fates {
            let entry = out.entry(fate.reason(orphans_dropped)).or_default();
            entry.frames += count.frames;
            entry.bytes += count.bytes;
        }
        out
    }

    /// Frames sent per second.
    pub fn rate(&self) -> f64 {
        self.total.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A table of what was sent, per kind.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (kind, (units, count)) in &self.kinds {
            let _ = writeln!(
                out,
                "  {:<52} {:>7} datagrams {:>7} frames {:>11} bytes",
                kind.describe(),
                units,
                count.frames,
                count.bytes
            );
        }
        let _ = writeln!(
            out,
            "  {:<52} {:>7}           {:>7} frames {:>11} bytes in {:.2} s ({:.0} frames/s, {:.0} Mbit/s)",
            "total",
            "",
            self.total.frames,
            self.total.bytes,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.total.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
        );
        out
    }
}

/// Sends `attack`'s frames through `sender` at `pace`, until `max_frames`,
/// or until `stop` is set once `min_frames` are out. `progress` (if given)
/// follows the number of frames sent. Whole units only: a fragmented
/// datagram is never cut short.
pub fn flood(
    sender: &RawSender,
    attack: &mut Attack,
    pace: Pace,
    stop: &AtomicBool,
    progress: Option<&AtomicU64>,
) -> anyhow::Result<Report> {
    assert!(pace.pps > 0, "a flood needs a rate");
    let interval = Duration::from_secs(1).as_nanos() as f64 / f64::from(pace.pps);
    let mut report = Report::default();
    let start = Instant::now();
    loop {
        if report.total.frames >= pace.min_frames && stop.load(Ordering::Relaxed) {
            report.stopped = true;
            break;
        }
        let unit = attack.next_unit();
        if report.total.frames + unit.frames.len() as u64 > pace.max_frames {
            break;
        }
        let kind = report.kinds.entry(unit.kind).or_default();
        kind.0 += 1;
        for (frame, fate) in &unit.frames {
            // Frame i leaves no earlier than start + i / pps.
            let due = start + Duration::from_nanos((report.total.frames as f64 * interval) as u64);
            let now = Instant::now();
            if due > now + Duration::from_micros(500) {
                thread::sleep(due - now);
            }
            let mut refused = 0;
            while !sender.send(frame)? {
                refused += 1;
                report.retries += 1;
                if refused > 10_000 {
                    bail!("the first hop refused a frame 10000 times (ENOBUFS)");
                }
                thread::sleep(Duration::from_micros(100));
            }
            kind.1.add(frame.len());
            report.fates.entry(*fate).or_default().add(frame.len());
            report.total.add(frame.len());
            if let Some(progress) = progress {
                progress.store(report.total.frames, Ordering::Relaxed);
            }
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attack(kinds: &[Kind]) -> Attack {
        Attack::new(
            Target {
                mac: [2, 0, 0, 0, 0, 1],
                v4: Ipv4Addr::new(203, 0, 113, 2),
                v6: vec!["2001:db8:0:1::2".parse().unwrap()],
            },
            Sources {
                v4: vec![
                    (Ipv4Addr::new(198, 19, 0, 0), 16),
                    (Ipv4Addr::new(192, 0, 2, 0), 24),
                ],
                v6: vec![("2001:db8:bad::".parse().unwrap(), 48)],
            },
            [2, 0, 0, 0, 0, 2],
            kinds,
        )
    }

    fn be16(bytes: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([bytes[at], bytes[at + 1]])
    }

    #[test]
    fn dns_responses_have_the_asked_length_and_count_their_answers() {
        for len in [42, 100, 297, 300, 310, 1200, 2992] {
            let response = dns_response(0xabcd, len);
            assert_eq!(response.len(), len);
            assert_eq!(be16(&response, 0), 0xabcd);
            assert_eq!(be16(&response, 2) & 0x8000, 0x8000, "QR set");
            // Walk the answers.
            let mut at = 12 + 13 + 4;
            let mut answers = 0;
            while at < len {
                assert_eq!(be16(&response, at), 0xc00c);
                let rdlength = usize::from(be16(&response, at + 10));
                assert_eq!(usize::from(response[at + 12]) + 1, rdlength);
                at += 12 + rdlength;
                answers += 1;
            }
            assert_eq!(at, len);
            assert_eq!(be16(&response, 6), answers);
        }
    }

    #[test]
    fn whole_dns_responses_come_from_port_53_to_the_target() {
        let mut attack = attack(&[Kind::DnsResponse4, Kind::DnsResponse6]);
        let v4 = attack.next_unit();
        let (frame, fate) = &v4.frames[0];
        assert_eq!(*fate, Fate::UnsolicitedDns);
        assert_eq!(frame.len(), 14 + 20 + 8 + DNS_RESPONSE_LEN);
        assert_eq!(&frame[0..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(frame[14 + 9], proto::UDP);
        assert_eq!(frame[26], 198);
        assert_eq!(frame[27], 19);
        assert_eq!(&frame[30..34], &[203, 0, 113, 2]);
        assert_eq!(be16(frame, 34), 53);
        assert!(be16(frame, 36) >= 1024);
        let v6 = attack.next_unit();
        let frame = &v6.frames[0].0;
        assert_eq!(frame.len(), 14 + 40 + 8 + DNS_RESPONSE_LEN);
        assert_eq!(be16(frame, 14 + 40), 53);
        assert_eq!(&frame[22..28], &[0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad]);
    }

    #[test]
    fn fragments_cover_the_datagram_and_some_come_out_of_order() {
        let mut attack = attack(&[Kind::DnsFragments4]);
        attack.reorder_every = 2;
        let first = attack.next_unit();
        let fates: Vec<Fate> = first.frames.iter().map(|(_, f)| *f).collect();
        assert_eq!(
            fates,
            [Fate::Orphan, Fate::UnsolicitedDns, Fate::FragmentOfDropped]
        );
        let second = attack.next_unit();
        let fates: Vec<Fate> = second.frames.iter().map(|(_, f)| *f).collect();
        assert_eq!(
            fates,
            [
                Fate::UnsolicitedDns,
                Fate::FragmentOfDropped,
                Fate::FragmentOfDropped
            ]
        );
        // In order: offsets 0, 185, 370 (units of 8 bytes), MF on all but the last.
        let frames: Vec<&Vec<u8>> = second.frames.iter().map(|(f, _)| f).collect();
        assert_eq!(be16(frames[0], 20), 0x2000);
        assert_eq!(be16(frames[1], 20), 0x2000 | 185);
        assert_eq!(be16(frames[2], 20), 370);
        let id = be16(frames[0], 18);
        assert!(frames.iter().all(|f| be16(f, 18) == id));
        let ip_payload: usize = frames.iter().map(|f| f.len() - 14 - 20).sum();
        assert_eq!(ip_payload, FRAGMENTED_UDP_LEN);
        assert_eq!(be16(frames[0], 34), 53, "the first carries the UDP header");
        assert_eq!(usize::from(be16(frames[0], 38)), FRAGMENTED_UDP_LEN);
        assert!(frames.iter().all(|f| f.len() <= 1514));
        // Another datagram: another id.
        assert_ne!(be16(&first.frames[1].0, 18), id);

        let mut attack6 = super::tests::attack(&[Kind::DnsFragments6]);
        let unit = attack6.next_unit();
        let ip_payload: usize = unit.frames.iter().map(|(f, _)| f.len() - 14 - 40 - 8).sum();
        assert_eq!(ip_payload, FRAGMENTED_UDP_LEN);
        assert!(unit.frames.iter().all(|(f, _)| f.len() <= 1514));
    }

    #[test]
    fn ntp_mode_7_both_ways() {
        let mut attack = attack(&[Kind::NtpMode7Response4, Kind::NtpMode7Query6]);
        let response = &attack.next_unit().frames[0].0;
        assert_eq!(be16(response, 34), 123);
        assert_eq!(response[42] & 7, 7, "mode 7");
        assert_eq!(response.len(), 14 + 20 + 8 + 440);
        let query = &attack.next_unit().frames[0].0;
        assert_eq!(be16(query, 14 + 40 + 2), 123, "to port 123");
        assert_eq!(query[14 + 40 + 8], 0x17);
    }

    #[test]
    fn reports_map_fates_to_reasons() {
        let mut report = Report::default();
        report.fates.insert(
            Fate::UnsolicitedDns,
            Count {
                frames: 3,
                bytes: 30,
            },
        );
        report.fates.insert(
            Fate::Orphan,
            Count {
                frames: 1,
                bytes: 10,
            },
        );
        assert_eq!(
            report.expected(true)["drop_orphan_fragment"],
            Count {
                frames: 1,
                bytes: 10
            }
        );
        assert_eq!(report.expected(false)["pass_orphan_fragment"].frames, 1);
        assert_eq!(report.expected(false)["drop_unsolicited_dns"].bytes, 30);
    }

    #[test]
    fn macs_are_parsed() {
        assert_eq!(
            parse_mac("02:00:0a:ff:10:01\n").unwrap(),
            [2, 0, 0x0a, 0xff, 0x10, 1]
        );
        assert!(parse_mac("02:00").is_err());
        assert!(parse_mac("zz:00:00:00:00:00").is_err());
    }
}
