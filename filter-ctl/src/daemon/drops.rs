//! The sampled drop events of a filter (`DROP_EVENTS`, see
//! filter_common::sample), read from its pinned ring buffer. A ring buffer
//! has one reader: the daemon while it runs, otherwise `filter-ctl top`
//! (see [`super::control`], which decides who).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use anyhow::Context as _;
use aya::maps::{MapData, PerCpuArray, RingBuf};
use filter_common::{
    DropEvent, Reason, map,
    sample::{COUNT_LOST, COUNT_SAMPLED},
};

use crate::pins::IfacePins;

/// One sampled drop, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When the reader took it off the ring (it reads as events arrive).
    pub at: Instant,
    pub reason: Reason,
    pub source: IpAddr,
    /// The local address it was sent to.
    pub destination: IpAddr,
    /// Frame bytes.
    pub len: u32,
    /// The IP length field: IPv4's total length, IPv6's payload length.
    pub ip_len: u16,
    pub protocol: u8,
    /// 0 when there is none (not UDP or TCP, a later fragment, cut short).
    pub src_port: u16,
    pub dst_port: u16,
    /// A fragment of an IP datagram (first or later).
    pub fragment: bool,
    /// Monitor mode passed it.
    pub would_drop: bool,
}

impl Sample {
    /// The event as the kernel wrote it; `None` for a reason this build does
    /// not know (a newer program) or headers it cannot read.
    pub fn decode(event: &DropEvent, at: Instant) -> Option<Sample> {
        let reason = *Reason::ALL.get(usize::from(event.reason))?;
        let captured = usize::from(event.captured).min(event.headers.len());
        let headers = Headers::parse(&event.headers[..captured])?;
        Some(Sample {
            at,
            reason,
            source: headers.source,
            destination: headers.destination,
            len: event.len,
            ip_len: headers.ip_len,
            protocol: headers.protocol,
            src_port: headers.src_port,
            dst_port: headers.dst_port,
            fragment: headers.fragment,
            would_drop: event.would_drop != 0,
        })
    }
}

/// What the reader needs of a frame's headers. The same encapsulations as
/// the programs' parser (filter-ebpf/src/packet.rs): Ethernet, up to two
/// VLAN tags, PPPoE sessions, IPv4 with options, IPv6 with extension headers.
#[derive(Debug, PartialEq, Eq)]
struct Headers {
    source: IpAddr,
    destination: IpAddr,
    ip_len: u16,
    protocol: u8,
    /// 0 when there is none (not UDP or TCP, a later fragment, cut short).
    src_port: u16,
    dst_port: u16,
    fragment: bool,
}

impl Headers {
    fn parse(frame: &[u8]) -> Option<Headers> {
        let be16 = |at: usize| -> Option<u16> {
            Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
        };
        let mut ethertype = be16(12)?;
        let mut at = 14;
        for _ in 0..2 {
            if !matches!(ethertype, 0x8100 | 0x88a8) {
                break;
            }
            ethertype = be16(at + 2)?;
            at += 4;
        }
        if ethertype == 0x8864 {
            ethertype = match be16(at + 6)? {
                0x0021 => 0x0800,
                0x0057 => 0x86dd,
                _ => return None,
            };
            at += 8;
        }
        let ip = frame.get(at..)?;
        let (source, destination, ip_len, protocol, l4, fragment) = match ethertype {
            0x0800 => {
                let header_len = usize::from(*ip.first()? & 0x0f) * 4;
                let total_len = u16::from_be_bytes(ip.get(2..4)?.try_into().ok()?);
                let flags_offset = u16::from_be_bytes(ip.get(6..8)?.try_into().ok()?);
                let later_fragment = flags_offset & 0x1fff != 0;
                let more_fragments = flags_offset & 0x2000 != 0;
                let source: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
                let destination: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
                let l4 = (!later_fragment).then_some(header_len);
                (
                    IpAddr::V4(Ipv4Addr::from(source)),
                    IpAddr::V4(Ipv4Addr::from(destination)),
                    total_len,
                    *ip.get(9)?,
                    l4,
                    later_fragment || more_fragments,
                )
            }
            0x86dd => {
                let source: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
                let destination: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
                let payload_len = u16::from_be_bytes(ip.get(4..6)?.try_into().ok()?);
                let (protocol, l4, fragment) = ipv6_upper_layer(ip);
                (
                    IpAddr::V6(Ipv6Addr::from(source)),
                    IpAddr::V6(Ipv6Addr::from(destination)),
                    payload_len,
                    protocol,
                    l4,
                    fragment,
                )
            }
            _ => return None,
        };
        let port = |at: usize| {
            ip.get(at..at + 2)
                .map_or(0, |port| u16::from_be_bytes([port[0], port[1]]))
        };
        let (src_port, dst_port) = match (protocol, l4) {
            (6 | 17, Some(l4)) => (port(l4), port(l4 + 2)),
            _ => (0, 0),
        };
        Some(Headers {
            source,
            destination,
            ip_len,
            protocol,
            src_port,
            dst_port,
            fragment,
        })
    }
}

/// The upper-layer protocol of an IPv6 packet, its offset (`None` for a
/// later fragment or a chain past the captured bytes) and whether a
/// fragment header was on the way.
fn ipv6_upper_layer(ip: &[u8]) -> (u8, Option<usize>, bool) {
    let Some(&first) = ip.get(6) else {
        return (0, None, false);
    };
    let (mut protocol, mut at, mut fragment) = (first, 40, false);
    for _ in 0..6 {
        let header_len = match protocol {
            0 | 43 | 60 => ip.get(at + 1).map(|len| (usize::from(*len) + 1) * 8),
            51 => ip.get(at + 1).map(|len| (usize::from(*len) + 2) * 4),
            44 => {
                fragment = true;
                let offset = ip
                    .get(at + 2..at + 4)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]) >> 3);
                match offset {
                    Some(0) => Some(8),
                    _ => return (ip.get(at).copied().unwrap_or(0), None, true),
                }
            }
            _ => return (protocol, Some(at), fragment),
        };
        let (Some(len), Some(&next)) = (header_len, ip.get(at)) else {
            return (protocol, None, fragment);
        };
        protocol = next;
        at += len;
    }
    (protocol, None, fragment)
}

/// The reading end of a filter's drop event ring.
pub struct DropEvents {
    ring: RingBuf<MapData>,
}

impl std::fmt::Debug for DropEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DropEvents")
    }
}

impl DropEvents {
    pub fn open(pins: &IfacePins) -> anyhow::Result<Self> {
        let ring = RingBuf::try_from(pins.open_map(map::DROP_EVENTS).context(
            "this filter has no drop event ring (attached by an older filter-ctl? attach again to upgrade it)",
        )?)?;
        Ok(Self { ring })
    }

    /// Hands every event waiting in the ring to `each`; returns how many were read.
    pub fn drain(&mut self, mut each: impl FnMut(Sample)) -> usize {
        let now = Instant::now();
        let mut read = 0;
        while let Some(item) = self.ring.next() {
            read += 1;
            if item.len() < size_of::<DropEvent>() {
                continue;
            }
            // SAFETY: the ring holds DropEvents written by the program (checked
            // long enough above); read_unaligned copes with any alignment.
            let event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<DropEvent>()) };
            if let Some(sample) = Sample::decode(&event, now) {
                each(sample);
            }
        }
        read
    }
}

impl std::os::fd::AsRawFd for DropEvents {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }
}

/// Events the program sampled and lost (ring full), summed over CPUs.
pub fn kernel_counts(pins: &IfacePins) -> anyhow::Result<(u64, u64)> {
    let counts: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(pins.open_map(map::DROP_EVENT_COUNTS)?)?;
    let sum = |slot| -> anyhow::Result<u64> { Ok(counts.get(&slot, 0)?.iter().sum()) };
    Ok((sum(COUNT_SAMPLED)?, sum(COUNT_LOST)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    use filter_common::sample::HEADER_BYTES;

    fn event(frame: &[u8]) -> DropEvent {
        let mut headers = [0; HEADER_BYTES];
        let captured = frame.len().min(HEADER_BYTES);
        headers[..captured].copy_from_slice(&frame[..captured]);
        DropEvent {
            len: frame.len() as u32,
            reason: Reason::DropUnsolicitedDns.index() as u8,
            would_drop: 0,
            captured: captured as u16,
            headers,
        }
    }

    fn ethernet(ethertype: u16) -> Vec<u8> {
        let mut frame = vec![0x02; 12];
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame
    }

    fn ipv4_udp(source: [u8; 4], dst_port: u16) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&source);
        ip.extend_from_slice(&[192, 0, 2, 1]);
        ip.extend_from_slice(&53u16.to_be_bytes());
        ip.extend_from_slice(&dst_port.to_be_bytes());
        ip.extend_from_slice(&[0, 8, 0, 0]);
        ip
    }

    #[test]
    fn events_decode_their_headers() {
        let mut frame = ethernet(0x0800);
        frame.extend(ipv4_udp([198, 51, 100, 7], 40000));
        let sample = Sample::decode(&event(&frame), Instant::now()).unwrap();
        assert_eq!(sample.source, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!((sample.protocol, sample.dst_port), (17, 40000));
        assert_eq!(sample.reason, Reason::DropUnsolicitedDns);
        assert_eq!(sample.len as usize, frame.len());
        // What an announcement upstream is made of.
        assert_eq!(sample.destination, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!((sample.src_port, sample.ip_len), (53, 28));
        assert!(!sample.fragment);

        // QinQ and PPPoE in front.
        let mut tagged = ethernet(0x88a8);
        tagged.extend_from_slice(&[0, 1, 0x81, 0x00, 0, 2, 0x88, 0x64]);
        tagged.extend_from_slice(&[0x11, 0, 0, 1, 0, 30, 0x00, 0x21]);
        tagged.extend(ipv4_udp([203, 0, 113, 9], 123));
        let sample = Sample::decode(&event(&tagged), Instant::now()).unwrap();
        assert_eq!(sample.source, "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!(sample.dst_port, 123);

        // IPv6 with a hop-by-hop header before UDP.
        let mut v6 = ethernet(0x86dd);
        let source: Ipv6Addr = "2001:db8::53".parse().unwrap();
        v6.extend_from_slice(&[0x60, 0, 0, 0, 0, 16, 0, 64]);
        v6.extend_from_slice(&source.octets());
        v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8].repeat(4));
        v6.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
        v6.extend_from_slice(&[0, 53, 0x9c, 0x40, 0, 8, 0, 0]);
        let sample = Sample::decode(&event(&v6), Instant::now()).unwrap();
        assert_eq!(sample.source, IpAddr::V6(source));
        assert_eq!((sample.protocol, sample.dst_port), (17, 40000));
        assert_eq!(
            sample.destination,
            "2001:db8:2001:db8:2001:db8:2001:db8"
                .parse::<IpAddr>()
                .unwrap()
        );
        assert_eq!((sample.src_port, sample.ip_len), (53, 16));

        // A later IPv4 fragment has no ports.
        let mut later = ethernet(0x0800);
        let mut ip = ipv4_udp([198, 51, 100, 8], 40000);
        ip[6..8].copy_from_slice(&185u16.to_be_bytes());
        later.extend(ip);
        let sample = Sample::decode(&event(&later), Instant::now()).unwrap();
        assert_eq!((sample.src_port, sample.dst_port), (0, 0));
        assert!(sample.fragment);

        let unknown = DropEvent {
            reason: 250,
            ..event(&frame)
        };
        assert!(Sample::decode(&unknown, Instant::now()).is_none());
        let arp = ethernet(0x0806);
        assert!(Sample::decode(&event(&arp), Instant::now()).is_none());
    }
}
