//! Verdict tests of the allow and deny lists: what they match (IPv4, IPv6,
//! prefixes), their place in the rule order (allow, deny, fragments, UDP
//! reflection, TCP SYN, pass), their precedence, and expiry in the kernel.
//! Entries are written with the same library functions `filter-ctl allow|deny`
//! uses (tests::bpf::Filter::list_add).

use std::{thread, time::Duration};

use filter_common::Reason;
use filter_ctl::lists::List;
use harness::packet::{Frame, PacketBuilder, addr, tcp_flags};
use tests::bpf::{Filter, XDP_DROP, XDP_PASS, zero};

fn bytes(frame: &Frame) -> u64 {
    frame.len() as u64
}

fn udp4(src: &str) -> Frame {
    PacketBuilder::ipv4(src.parse().unwrap(), addr::CLIENT_V4)
        .udp(40000, 40001)
        .payload(b"hello")
        .build()
}

fn udp6(src: &str) -> Frame {
    PacketBuilder::ipv6(src.parse().unwrap(), addr::CLIENT_V6)
        .udp(40000, 40001)
        .payload(b"hello")
        .build()
}

fn syn4(src: &str) -> Frame {
    PacketBuilder::ipv4(src.parse().unwrap(), addr::CLIENT_V4)
        .tcp(40000, 80, tcp_flags::SYN)
        .build()
}

/// An unsolicited DNS response (source port 53, QR set): the reflection rule drops it.
fn dns_response(src: &str) -> Frame {
    PacketBuilder::ipv4(src.parse().unwrap(), addr::CLIENT_V4)
        .udp(53, 40000)
        .payload(&[0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0])
        .build()
}

/// A later fragment whose first fragment was never seen.
fn orphan_fragment(src: &str) -> Frame {
    PacketBuilder::ipv4(src.parse().unwrap(), addr::CLIENT_V4)
        .fragment(0x4242, false, 100)
        .protocol(17)
        .payload(&[0; 64])
        .build()
}

#[test]
fn denied_sources_are_dropped_before_any_other_rule() {
    let mut filter = Filter::load();
    filter.list_add(List::Deny, &["203.0.113.0/24", "2001:db8:3::/48"], None);
    let denied = [
        udp4("203.0.113.1"),
        udp4("203.0.113.255"),
        syn4("203.0.113.7"),
        dns_response("203.0.113.53"),
        orphan_fragment("203.0.113.9"),
        udp6("2001:db8:3::1"),
        udp6("2001:db8:3:ffff:ffff:ffff:ffff:ffff"),
    ];
    let passed_v4 = [udp4("203.0.112.255"), udp4("198.51.100.1")];
    let passed_v6 = [udp6("2001:db8:4::1")];
    let arp = PacketBuilder::arp_request("203.0.113.1".parse().unwrap(), addr::CLIENT_V4).build();
    for frame in &denied {
        assert_eq!(filter.ingress(frame), XDP_DROP);
    }
    for frame in passed_v4.iter().chain(&passed_v6) {
        assert_eq!(filter.ingress(frame), XDP_PASS);
    }
    assert_eq!(filter.ingress(&arp), XDP_PASS, "ARP is never filtered");
    let sum = |frames: &[Frame]| frames.iter().map(bytes).sum::<u64>();
    filter.assert_moved(
        &zero(),
        &[
            (Reason::DropDenyList, denied.len() as u64, sum(&denied)),
            (Reason::PassIpv4, 2, sum(&passed_v4)),
            (Reason::PassIpv6, 1, sum(&passed_v6)),
            (Reason::PassNotIp, 1, bytes(&arp)),
        ],
        "a denied /24 and /48",
    );
}

#[test]
fn allowed_sources_skip_every_drop_rule() {
    let mut filter = Filter::load();
    filter.set(&[
        ("orphan_fragments", "drop"),
        ("syn_source_burst", "1"),
        ("syn_prefix_burst", "1"),
        ("syn_global_burst", "1"),
    ]);
    filter.list_add(List::Allow, &["198.51.100.53", "2001:db8:53::/48"], None);
    let ntp_monlist = PacketBuilder::ipv4("198.51.100.53".parse().unwrap(), addr::CLIENT_V4)
        .udp(123, 40000)
        .payload(&[0x17, 0, 3, 42, 0, 0, 0, 0])
        .build();
    let frames = [
        dns_response("198.51.100.53"),
        ntp_monlist,
        orphan_fragment("198.51.100.53"),
        syn4("198.51.100.53"),
        udp6("2001:db8:53:1::1"),
    ];
    let before = filter.counts();
    for frame in &frames {
        assert_eq!(filter.try_ingress(frame, 100).unwrap(), XDP_PASS);
    }
    let total: u64 = frames.iter().map(|f| 100 * bytes(f)).sum();
    filter.assert_moved(
        &before,
        &[(Reason::PassAllowList, 500, total)],
        "unsolicited DNS, NTP monlist, orphan fragments and a SYN flood from an allowed source",
    );
    // The same from anyone else is judged by the rules.
    let before = filter.counts();
    assert_eq!(filter.ingress(&dns_response("198.51.100.54")), XDP_DROP);
    assert_eq!(filter.ingress(&orphan_fragment("198.51.100.54")), XDP_DROP);
    let moved: Vec<Reason> = Reason::ALL
        .into_iter()
        .filter(|r| filter.counts()[r.index() as usize] != before[r.index() as usize])
        .collect();
    assert_eq!(
        moved,
        [Reason::DropUnsolicitedDns, Reason::DropOrphanFragment]
    );
}

#[test]
fn allow_beats_deny_whatever_the_prefix_lengths() {
    let mut filter = Filter::load();
    // A denied network with one allowed host, and an allowed network with
    // one denied host: both hosts pass (the allow list is checked first).
    filter.list_add(List::Deny, &["203.0.113.0/24", "198.51.100.66/32"], None);
    filter.list_add(List::Allow, &["203.0.113.5/32", "198.51.100.0/24"], None);
    let cases = [
        ("203.0.113.5", XDP_PASS, Reason::PassAllowList),
        ("203.0.113.6", XDP_DROP, Reason::DropDenyList),
        ("198.51.100.66", XDP_PASS, Reason::PassAllowList),
        ("198.51.100.67", XDP_PASS, Reason::PassAllowList),
    ];
    for (src, verdict, reason) in cases {
        let frame = udp4(src);
        let before = filter.counts();
        assert_eq!(filter.ingress(&frame), verdict, "{src}");
        filter.assert_moved(&before, &[(reason, 1, bytes(&frame))], src);
    }
}

#[test]
fn an_expired_entry_stops_matching_at_once() {
    let mut filter = Filter::load();
    filter.list_add(
        List::Deny,
        &["203.0.113.66"],
        Some(Duration::from_millis(1000)),
    );
    filter.list_add(
        List::Allow,
        &["2001:db8:3::/64"],
        Some(Duration::from_millis(1000)),
    );
    let denied = udp4("203.0.113.66");
    let allowed = dns_response("192.0.2.99"); // not allowed: dropped by the reflection rule
    let allowed6 = udp6("2001:db8:3::1");
    assert_eq!(filter.ingress(&denied), XDP_DROP);
    assert_eq!(filter.ingress(&allowed6), XDP_PASS);
    let entries = filter.list_entries(List::Deny);
    assert_eq!(entries.len(), 1);
    assert!(entries[0].expires_in_ms.unwrap() <= 1000);
    assert_eq!(entries[0].reason.name(), "operator");

    thread::sleep(Duration::from_millis(1100));
    let before = filter.counts();
    assert_eq!(filter.ingress(&denied), XDP_PASS);
    assert_eq!(filter.ingress(&allowed6), XDP_PASS);
    assert_eq!(filter.ingress(&allowed), XDP_DROP);
    filter.assert_moved(
        &before,
        &[
            (Reason::PassIpv4, 1, bytes(&denied)),
            (Reason::PassIpv6, 1, bytes(&allowed6)),
            (Reason::DropUnsolicitedDns, 1, bytes(&allowed)),
        ],
        "after expiry, before any cleanup",
    );
    // Still in the tries until filter-ctl cleans up; no longer listed.
    assert!(filter.list_entries(List::Deny).is_empty());
    assert_eq!(filter.list(List::Deny).raw_entries().unwrap().len(), 1);
    let now = filter_ctl::clock::now_ns();
    assert_eq!(filter.list(List::Deny).cleanup(now).unwrap(), 1);
    assert_eq!(filter.list(List::Allow).cleanup(now).unwrap(), 1);
    assert!(filter.list(List::Deny).raw_entries().unwrap().is_empty());
    assert!(filter.list(List::Allow).raw_entries().unwrap().is_empty());
}

#[test]
fn an_expired_longer_prefix_does_not_hide_a_live_shorter_one() {
    let mut filter = Filter::load();
    filter.list_add(List::Deny, &["203.0.113.0/24", "2001:db8:3::/48"], None);
    filter.list_add(
        List::Deny,
        &["203.0.113.0/25"],
        Some(Duration::from_millis(200)),
    );
    filter.list_add(
        List::Deny,
        &["203.0.113.66"],
        Some(Duration::from_millis(200)),
    );
    filter.list_add(
        List::Deny,
        &["2001:db8:3::/64"],
        Some(Duration::from_millis(200)),
    );
    filter.list_add(
        List::Deny,
        &["2001:db8:3::1"],
        Some(Duration::from_millis(200)),
    );
    thread::sleep(Duration::from_millis(250));
    // Two nested expired entries above the live /24 (and /48).
    let frames = [udp4("203.0.113.66"), udp6("2001:db8:3::1")];
    for frame in &frames {
        assert_eq!(filter.ingress(frame), XDP_DROP);
    }
    let listed: Vec<String> = filter
        .list_entries(List::Deny)
        .into_iter()
        .map(|e| e.cidr.to_string())
        .collect();
    assert_eq!(listed, ["203.0.113.0/24", "2001:db8:3::/48"]);
    // An expired allow entry no longer shields its source from the deny list.
    filter.list_add(
        List::Allow,
        &["203.0.113.66"],
        Some(Duration::from_millis(1000)),
    );
    assert_eq!(filter.ingress(&frames[0]), XDP_PASS);
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(filter.ingress(&frames[0]), XDP_DROP);
}

#[test]
fn a_list_is_searched_only_while_it_holds_entries() {
    let mut filter = Filter::load();
    // Flags: allow v4, allow v6, deny v4, deny v6.
    assert_eq!(filter.lists_in_use(), [0, 0, 0, 0], "empty lists");
    filter.list_add(List::Allow, &["198.51.100.0/24"], None);
    filter.list_add(
        List::Deny,
        &["2001:db8:3::/48"],
        Some(Duration::from_secs(60)),
    );
    assert_eq!(filter.lists_in_use(), [1, 0, 0, 1]);
    let response = dns_response("198.51.100.53");
    assert_eq!(filter.ingress(&response), XDP_PASS, "allowed");
    assert_eq!(filter.ingress(&udp6("2001:db8:3::1")), XDP_DROP, "denied");

    let now = filter_ctl::clock::now_ns();
    let cidr = filter_ctl::lists::Cidr::parse("198.51.100.0/24").unwrap();
    filter.list(List::Allow).remove(&[cidr], now).unwrap();
    assert_eq!(filter.lists_in_use(), [0, 0, 0, 1], "allow list emptied");
    assert_eq!(filter.ingress(&response), XDP_DROP, "no longer allowed");

    // The entry lives a minute, so it is live at each call above however
    // slow the machine; cleanup is told the time a minute from now, when it
    // has expired (an entry's expiry is rounded up, to the tenth below a
    // minute, to the second above).
    let later = filter_ctl::clock::now_ns() + Duration::from_secs(62).as_nanos() as u64;
    assert_eq!(filter.list(List::Deny).cleanup(later).unwrap(), 1);
    assert_eq!(filter.lists_in_use(), [0, 0, 0, 0], "expired entry removed");
    assert_eq!(filter.ingress(&udp6("2001:db8:3::1")), XDP_PASS);
    filter.assert_moved(
        &zero(),
        &[
            (Reason::PassAllowList, 1, bytes(&response)),
            (Reason::DropUnsolicitedDns, 1, bytes(&response)),
            (Reason::DropDenyList, 1, bytes(&udp6("2001:db8:3::1"))),
            (Reason::PassIpv6, 1, bytes(&udp6("2001:db8:3::1"))),
        ],
        "allow, deny, then neither",
    );
}

#[test]
fn adding_again_replaces_the_expiry_and_del_needs_an_exact_prefix() {
    let mut filter = Filter::load();
    filter.list_add(
        List::Deny,
        &["203.0.113.0/24"],
        Some(Duration::from_millis(200)),
    );
    filter.list_add(List::Deny, &["203.0.113.0/24"], None);
    thread::sleep(Duration::from_millis(250));
    assert_eq!(
        filter.ingress(&udp4("203.0.113.1")),
        XDP_DROP,
        "now permanent"
    );
    let entries = filter.list_entries(List::Deny);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].expires_in_ms, None);

    let now = filter_ctl::clock::now_ns();
    let cidr = |text: &str| filter_ctl::lists::Cidr::parse(text).unwrap();
    // Not on the list as such (only covered by the /24): nothing is removed.
    let err = filter
        .list(List::Deny)
        .remove(&[cidr("203.0.113.0/24"), cidr("203.0.113.1")], now)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("203.0.113.1/32 is not on the list"),
        "{err}"
    );
    assert_eq!(filter.list_entries(List::Deny).len(), 1);
    filter
        .list(List::Deny)
        .remove(&[cidr("203.0.113.0/24")], now)
        .unwrap();
    assert!(filter.list_entries(List::Deny).is_empty());
    assert_eq!(filter.ingress(&udp4("203.0.113.1")), XDP_PASS);
}

#[test]
fn monitor_mode_counts_the_deny_list_as_would_drop() {
    let mut filter = Filter::load();
    filter.set(&[("monitor", "on")]);
    filter.list_add(List::Deny, &["203.0.113.0/24"], None);
    let frame = udp4("203.0.113.1");
    assert_eq!(filter.try_ingress(&frame, 10).unwrap(), XDP_PASS);
    filter.assert_would_drop(
        &zero(),
        &[(Reason::DropDenyList, 10, 10 * bytes(&frame))],
        "monitor mode",
    );
}

#[test]
fn a_zero_length_prefix_covers_everything() {
    let mut filter = Filter::load();
    filter.list_add(List::Deny, &["0.0.0.0/0"], None);
    assert_eq!(filter.ingress(&udp4("192.0.2.1")), XDP_DROP);
    assert_eq!(filter.ingress(&udp6("2001:db8::1")), XDP_PASS, "IPv4 only");
    filter.list_add(List::Allow, &["::/0"], None);
    filter.list_add(List::Deny, &["::/0"], None);
    assert_eq!(filter.ingress(&udp6("2001:db8::1")), XDP_PASS, "allowed");
}
