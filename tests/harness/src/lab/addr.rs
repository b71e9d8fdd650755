//! Addresses of the lab, all from documentation and benchmarking ranges
//! (RFC 5737, RFC 3849, RFC 2544): no test ever names a real host.

use std::{
    fmt::Display,
    net::{Ipv4Addr, Ipv6Addr},
};

/// The internet's router on the WAN segment.
pub const INET_WAN4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The gateway's `wan0`: its public address.
pub const GW_WAN4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
pub const WAN4_PREFIX: u8 = 24;
/// A server somewhere on the internet (on the internet namespace's `lo`).
pub const SERVER4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The gateway on the LAN.
pub const GW_LAN4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The LAN client (private to the lab: only reaches out through NAT).
pub const LAN_CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const LAN4_PREFIX: u8 = 24;

pub const INET_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
pub const GW_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 2);
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);
pub const GW_LAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
pub const LAN_CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 2);
/// The LAN's routed IPv6 prefix.
pub const LAN6_NET: &str = "2001:db8:0:2::/64";
pub const WAN6_PREFIX: u8 = 64;
pub const LAN6_PREFIX: u8 = 64;

/// What the internet's DNS server ([`crate::servers::real::Servers`]) answers for
/// [`crate::servers::real::DNS_NAME`] and every name under it.
pub const DNS_ANSWER4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 80);
pub const DNS_ANSWER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x80, 0, 0, 0, 0, 0x80);

/// Spoofed source ranges of the floods: documentation and benchmarking
/// addresses that no host of the lab uses, so that what reaches the
/// gateway from them is counted apart ([`super::Topology::stack_counters`]:
/// `spoofed4`, `spoofed6`).
pub const SPOOFED4: [(Ipv4Addr, u8); 3] = [
    (Ipv4Addr::new(198, 19, 0, 0), 16),
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(198, 51, 100, 128), 25),
];
pub const SPOOFED6: [(Ipv6Addr, u8); 1] =
    [(Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 0), 48)];

/// Extra WAN host number `n` (from 0): 203.0.113.(10 + n), 2001:db8:0:1::(10 + n).
pub fn wan_host4(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, 10 + n)
}
pub fn wan_host6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 10 + u16::from(n))
}

/// Prefixes as `net/len, net/len`, for nftables sets and messages.
pub fn cidrs<T: Display>(ranges: &[(T, u8)]) -> String {
    ranges
        .iter()
        .map(|(net, len)| format!("{net}/{len}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_in_documentation_and_benchmark_ranges() {
        for v4 in [INET_WAN4, GW_WAN4, SERVER4, wan_host4(0), wan_host4(199)] {
            let [a, b, c, _] = v4.octets();
            assert!(
                matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113)),
                "{v4}"
            );
        }
        for v4 in [GW_LAN4, LAN_CLIENT4] {
            let [a, b, ..] = v4.octets();
            assert!(a == 198 && (b == 18 || b == 19), "{v4}");
        }
        for v6 in [
            INET_WAN6,
            GW_WAN6,
            SERVER6,
            GW_LAN6,
            LAN_CLIENT6,
            wan_host6(3),
        ] {
            assert_eq!(v6.segments()[..2], [0x2001, 0xdb8], "{v6}");
        }
    }
}
