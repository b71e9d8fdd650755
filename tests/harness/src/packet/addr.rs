//! Addresses for tests: only the ranges reserved for documentation (RFC 5737,
//! RFC 3849) and benchmarking (RFC 2544), so no test ever names a real host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The gateway's WAN address (the "inside" after NAT).
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// A server the client asked (a resolver, an NTP server).
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
/// Someone nobody asked.
pub const ATTACKER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
/// Benchmarking range, for many distinct sources.
pub const BENCH_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x53);
pub const ATTACKER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x66);
/// The far end of a tunnel to the gateway: a DS-Lite AFTR or MAP-E border
/// relay (IPv4 inside IPv6), a 6in4 tunnel broker or 6rd relay (IPv6 inside
/// IPv4). The gateway's end is CLIENT_V6 or CLIENT_V4.
pub const RELAY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 4, 0, 0, 0, 0, 1);
pub const RELAY_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// Locally administered MAC addresses.
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// True for 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 198.18.0.0/15
/// and 2001:db8::/32.
pub fn is_test_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113))
                || (a == 198 && (b & 0xfe) == 18)
        }
        IpAddr::V6(v6) => v6.segments()[..2] == [0x2001, 0x0db8],
    }
}

/// `is_test_address` for both ends of a packet.
pub fn both_are_test_addresses(src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> bool {
    is_test_address(src.into()) && is_test_address(dst.into())
}
