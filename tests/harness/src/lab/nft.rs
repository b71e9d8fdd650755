//! nftables in the lab's gateway: NAT for the LAN, and counters of what
//! reaches the gateway's stack on `wan0` (a netdev ingress chain runs after
//! XDP), as an independent count to compare with the filter's: the markers
//! (counted first and dropped: no other counter sees them), per family and
//! protocol, from the floods' spoofed sources ([`addr::SPOOFED4`],
//! [`addr::SPOOFED6`]), and the answers of the internet's servers.
//! [`StackCounters`] parses `nft list counters` of any table.

use anyhow::bail;

use super::addr::{self, cidrs};

/// nftables in the gateway: NAT for the LAN, and counters of what reaches the
/// stack on `wan0` (a netdev ingress hook runs after XDP).
pub(super) const GATEWAY_NFT: &str = r#"
table ip lab_nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" masquerade
    }
}
table netdev lab_count {
    counter marker { }
    counter ipv4 { }
    counter ipv6 { }
    counter arp_any { }
    counter other { }
    counter udp4 { }
    counter tcp4 { }
    counter icmp4 { }
    counter udp6 { }
    counter tcp6 { }
    counter icmp6 { }
    counter fragments4 { }
    counter fragments6 { }
    chain wan_ingress {
        type filter hook ingress device "wan0" priority -500; policy accept;
        ether type 0x88b5 counter name "marker" drop
        meta protocol ip counter name "ipv4"
        meta protocol ip6 counter name "ipv6"
        meta protocol arp counter name "arp_any"
        meta protocol != { ip, ip6, arp } counter name "other"
        meta protocol ip meta l4proto udp counter name "udp4"
        meta protocol ip meta l4proto tcp counter name "tcp4"
        meta protocol ip meta l4proto icmp counter name "icmp4"
        meta protocol ip6 meta l4proto udp counter name "udp6"
        meta protocol ip6 meta l4proto tcp counter name "tcp6"
        meta protocol ip6 meta l4proto ipv6-icmp counter name "icmp6"
        meta protocol ip ip frag-off & 0x1fff != 0 counter name "fragments4"
        meta protocol ip6 frag frag-off != 0 counter name "fragments6"
    }
}
"#;

/// More counters in the same chain: what reaches the stack from the floods'
/// spoofed sources (`spoofed4`, `spoofed6`), and the answers of the
/// internet's DNS and NTP servers (`real_dns`, `real_ntp`).
pub(super) fn flood_counters_nft() -> String {
    let (spoofed4, spoofed6) = (cidrs(&addr::SPOOFED4), cidrs(&addr::SPOOFED6));
    let (server4, server6) = (addr::SERVER4, addr::SERVER6);
    format!(
        r#"
table netdev lab_count {{
    counter spoofed4 {{ }}
    counter spoofed6 {{ }}
    counter real_dns {{ }}
    counter real_ntp {{ }}
    chain wan_ingress {{
        ip saddr {{ {spoofed4} }} counter name "spoofed4"
        ip6 saddr {{ {spoofed6} }} counter name "spoofed6"
        ip saddr {server4} udp sport 53 counter name "real_dns"
        ip6 saddr {server6} udp sport 53 counter name "real_dns"
        ip saddr {server4} udp sport 123 counter name "real_ntp"
        ip6 saddr {server6} udp sport 123 counter name "real_ntp"
    }}
}}
"#
    )
}

/// Counters of the gateway's `wan0` ingress chain: packets that reached the stack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackCounters {
    /// (counter name, packets, bytes): ipv4, ipv6, arp_any, other, udp4, tcp4,
    /// icmp4, udp6, tcp6, icmp6, fragments4 and fragments6 (later
    /// fragments: offset not 0); spoofed4, spoofed6 (from [`addr::SPOOFED4`],
    /// [`addr::SPOOFED6`]); real_dns, real_ntp (answers of [`crate::servers::real::Servers`]).
    pub counters: Vec<(String, u64, u64)>,
}

impl StackCounters {
    /// Packets counted under `name`; panics on an unknown name (a test bug).
    pub fn packets(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no nftables counter {name}"))
            .1
    }

    /// Bytes counted under `name` (from the network header: no Ethernet
    /// header); panics on an unknown name.
    pub fn bytes(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no nftables counter {name}"))
            .2
    }

    /// What was counted since `before`, per counter.
    pub fn since(&self, before: &StackCounters) -> StackCounters {
        let counters = self
            .counters
            .iter()
            .map(|(name, packets, bytes)| {
                let (p0, b0) = before
                    .counters
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .map_or((0, 0), |(_, p, b)| (*p, *b));
                (name.clone(), packets - p0, bytes - b0)
            })
            .collect();
        StackCounters { counters }
    }

    /// Parses the output of `nft list counters table netdev lab_count`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut counters = Vec::new();
        let mut name = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("counter ") {
                name = rest.split_whitespace().next().map(str::to_owned);
            } else if let Some(rest) = line.strip_prefix("packets ") {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let (Some(name), [packets, "bytes", bytes, ..]) = (name.take(), fields.as_slice())
                else {
                    bail!("unexpected nft counter line {line:?}");
                };
                counters.push((name, packets.parse()?, bytes.parse()?));
            }
        }
        Ok(Self { counters })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::WAN_IF;

    #[test]
    fn nft_counters_are_parsed() {
        let text = "table netdev lab_count {\n\
                    \tcounter ipv4 {\n\t\tpackets 12 bytes 1200\n\t}\n\
                    \tcounter arp_any {\n\t\tpackets 0 bytes 0\n\t}\n}\n";
        let counters = StackCounters::parse(text).unwrap();
        assert_eq!(
            counters.counters,
            vec![("ipv4".to_owned(), 12, 1200), ("arp_any".to_owned(), 0, 0)]
        );
        assert_eq!(counters.packets("ipv4"), 12);
        assert!(StackCounters::parse("counter x {\n packets many bytes 1\n}").is_err());
    }

    #[test]
    fn flood_counters_cover_the_spoofed_ranges() {
        let script = flood_counters_nft();
        assert!(script.contains("ip saddr { 198.19.0.0/16, 192.0.2.0/24, 198.51.100.128/25 }"));
        assert!(script.contains("ip6 saddr { 2001:db8:bad::/48 }"));
        assert!(script.contains("ip saddr 198.51.100.1 udp sport 53"));
        // No lab host lives in a spoofed range.
        use crate::lab::addr::*;
        let in4 = |ip: std::net::Ipv4Addr| {
            SPOOFED4
                .iter()
                .any(|(net, len)| u32::from(ip) >> (32 - len) == u32::from(*net) >> (32 - len))
        };
        for ip in [
            INET_WAN4,
            GW_WAN4,
            SERVER4,
            GW_LAN4,
            LAN_CLIENT4,
            DNS_ANSWER4,
            wan_host4(199),
        ] {
            assert!(!in4(ip), "{ip}");
        }
        for ip in [
            INET_WAN6,
            GW_WAN6,
            SERVER6,
            GW_LAN6,
            LAN_CLIENT6,
            DNS_ANSWER6,
            wan_host6(199),
        ] {
            assert!(
                !SPOOFED6.iter().any(|(net, len)| {
                    u128::from(ip) >> (128 - len) == u128::from(*net) >> (128 - len)
                }),
                "{ip}"
            );
        }
    }

    #[test]
    fn the_nft_script_names_the_wan_interface() {
        assert!(GATEWAY_NFT.contains(&format!("oifname \"{WAN_IF}\" masquerade")));
        assert!(GATEWAY_NFT.contains(&format!("device \"{WAN_IF}\"")));
    }

    #[test]
    fn markers_are_counted_first_and_only_there() {
        let rule = crate::traffic::marker::rule("marker");
        let chain = GATEWAY_NFT
            .split("chain wan_ingress")
            .nth(1)
            .and_then(|chain| chain.split("policy accept;").nth(1))
            .unwrap();
        assert_eq!(chain.trim_start().lines().next(), Some(rule.as_str()));
    }
}
