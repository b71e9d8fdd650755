//! Reflection floods from an attacker namespace: crafted Ethernet frames sent
//! through the [`RawSender`] straight onto the attacker's link, at a bounded
//! rate and a bounded count.
//!
//! An [`Attack`] builds the frames an amplification attack would put on a
//! victim's WAN link, addressed to the gateway's `wan0` (its MAC and IPv4 /
//! IPv6 addresses), with spoofed sources from the [`Sources`] the caller
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

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

use rand::{RngExt as _, SeedableRng as _, rngs::SmallRng};

use super::{
    sender::{Pacer, RawSender},
    sources::Sources,
};
use crate::{
    netns::Mac,
    packet::{
        ExtHeader, PacketBuilder, addr,
        payload::{NTP_MONLIST_QUERY, dns_response, ntp_monlist_response},
        proto,
    },
};

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
    pub mac: Mac,
    pub v4: Ipv4Addr,
    /// IPv6 destinations, used in turn (the gateway, and hosts behind it:
    /// IPv6 is routed, so LAN hosts are attacked on wan0 too).
    pub v6: Vec<Ipv6Addr>,
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
    pub src_mac: Mac,
    /// The kinds to send, in turn (a kind listed twice is sent twice as often).
    pub kinds: Vec<Kind>,
    /// Every n-th fragmented datagram sends its last fragment first (0: never).
    pub reorder_every: u32,
    units: u64,
    rng: SmallRng,
}

/// One unit of an attack: a whole datagram, or the fragments of one.
pub struct Unit {
    pub kind: Kind,
    pub frames: Vec<(Vec<u8>, Fate)>,
}

impl Attack {
    pub fn new(target: Target, sources: Sources, src_mac: Mac, kinds: &[Kind]) -> Self {
        assert!(!kinds.is_empty(), "an attack needs at least one kind");
        assert!(!target.v6.is_empty());
        Self {
            target,
            sources,
            src_mac,
            kinds: kinds.to_vec(),
            reorder_every: 4,
            units: 0,
            rng: SmallRng::from_rng(&mut rand::rng()),
        }
    }

    /// The next unit, kinds in turn.
    pub fn next_unit(&mut self) -> Unit {
        let kind = self.kinds[(self.units % self.kinds.len() as u64) as usize];
        let n = self.units;
        self.units += 1;
        let v6 = kind.is_v6();
        let src = self.sources.pick(v6, n, &mut self.rng);
        let dst: IpAddr = if v6 {
            let round = n / self.kinds.len() as u64;
            self.target.v6[(round % self.target.v6.len() as u64) as usize].into()
        } else {
            self.target.v4.into()
        };
        assert!(
            addr::both_are_test_addresses(src, dst),
            "flood addresses must be documentation or benchmarking addresses"
        );
        let (src_mac, dst_mac) = (self.src_mac.0, self.target.mac.0);
        let base = || {
            match (src, dst) {
                (IpAddr::V4(src), IpAddr::V4(dst)) => PacketBuilder::ipv4(src, dst),
                (IpAddr::V6(src), IpAddr::V6(dst)) => PacketBuilder::ipv6(src, dst),
                _ => unreachable!("source and destination of one family"),
            }
            .macs(src_mac, dst_mac)
        };
        let txid: u16 = self.rng.random();
        // A random destination port of the victim.
        let port: u16 = self.rng.random_range(1024..=65535);
        let ip_id: u16 = self.rng.random();
        let frames = match kind {
            Kind::DnsResponse4 | Kind::DnsResponse6 => {
                // IPv4: an id of its own (the IPv6 header has no id).
                let builder = if v6 {
                    base()
                } else {
                    base().fragment(ip_id, false, 0)
                };
                let frame = builder
                    .udp(53, port)
                    .payload(&dns_response(txid, DNS_RESPONSE_LEN))
                    .build();
                vec![(frame.bytes, Fate::UnsolicitedDns)]
            }
            Kind::DnsFragments4 | Kind::DnsFragments6 => {
                let datagram = NEXT_DATAGRAM.fetch_add(1, Ordering::Relaxed);
                let answer = dns_response(txid, FRAGMENTED_UDP_LEN - 8);
                // The whole datagram first, for its UDP header and checksum.
                let whole = base().udp(53, port).payload(&answer).build();
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
                            base().ext(ExtHeader::Fragment {
                                offset,
                                more,
                                id: datagram,
                            })
                        } else {
                            // Unique per datagram with its source, see NEXT_DATAGRAM.
                            base().fragment(datagram as u16, more, offset)
                        };
                        builder.protocol(proto::UDP).payload(part).build().bytes
                    })
                    .collect();
                let [first, middle, last]: [Vec<u8>; 3] =
                    fragments.try_into().expect("a datagram in three fragments");
                let reorder = self.reorder_every > 0
                    && (n / self.kinds.len() as u64).is_multiple_of(u64::from(self.reorder_every));
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
            Kind::NtpMode7Response4 | Kind::NtpMode7Response6 => {
                let response = ntp_monlist_response(&mut || self.rng.random());
                let frame = base().udp(123, port).payload(&response).build();
                vec![(frame.bytes, Fate::NtpControl)]
            }
            Kind::NtpMode7Query4 | Kind::NtpMode7Query6 => {
                let frame = base().udp(port, 123).payload(&NTP_MONLIST_QUERY).build();
                vec![(frame.bytes, Fate::NtpControl)]
            }
        };
        Unit { kind, frames }
    }
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
    let pacer = Pacer::new(pace.pps);
    let mut report = Report::default();
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
            pacer.wait(report.total.frames);
            report.retries += u64::from(sender.send(frame)?);
            kind.1.add(frame.len());
            report.fates.entry(*fate).or_default().add(frame.len());
            report.total.add(frame.len());
            if let Some(progress) = progress {
                progress.store(report.total.frames, Ordering::Relaxed);
            }
        }
    }
    report.elapsed = pacer.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::sources::Prefix;

    fn attack(kinds: &[Kind]) -> Attack {
        Attack::new(
            Target {
                mac: Mac([2, 0, 0, 0, 0, 1]),
                v4: Ipv4Addr::new(203, 0, 113, 2),
                v6: vec!["2001:db8:0:1::2".parse().unwrap()],
            },
            Sources::new(
                Prefix::all(&[
                    (Ipv4Addr::new(198, 19, 0, 0), 16),
                    (Ipv4Addr::new(192, 0, 2, 0), 24),
                ])
                .unwrap(),
                Prefix::all(&[("2001:db8:bad::".parse::<Ipv6Addr>().unwrap(), 48)]).unwrap(),
            )
            .unwrap(),
            Mac([2, 0, 0, 0, 0, 2]),
            kinds,
        )
    }

    fn be16(bytes: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([bytes[at], bytes[at + 1]])
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

        let mut attack6 = tests::attack(&[Kind::DnsFragments6]);
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
}
