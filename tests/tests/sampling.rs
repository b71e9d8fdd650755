//! Drop sampling in the kernel, through BPF_PROG_TEST_RUN on the real
//! program: dropped packets (and would-drops in monitor mode) become events
//! in the DROP_EVENTS ring at `sample_rate` per second per reason, with the
//! frame's first bytes; passed packets never do; `off` samples nothing; a
//! full ring counts its losses. The reader's side (parsing the headers) is
//! tested in filter-ctl's daemon/drops.rs.

use filter_common::{
    Reason,
    sample::{HEADER_BYTES, OFFER_EVERY},
};
use harness::packet::{PacketBuilder, addr, dns_message};
use tests::bpf::{Filter, XDP_DROP, XDP_PASS};

fn unsolicited_dns(v6: bool) -> Vec<u8> {
    let builder = if v6 {
        PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
    } else {
        PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
    };
    builder
        .udp(53, 40000)
        .payload(&dns_message(0x5a5a, true, 200))
        .build()
        .bytes
}

#[test]
fn drops_are_sampled_at_the_rate_with_their_headers() {
    for v6 in [false, true] {
        let mut filter = Filter::load();
        filter.set(&[("sample_rate", "50/s")]);
        let frame = unsolicited_dns(v6);
        // A thousand drops within a millisecond or two: 63 are offered to
        // the limiter (one in OFFER_EVERY), which admits the first second's
        // worth (the burst, 50); the rest are only counted.
        assert_eq!(filter.try_ingress(&frame, 1000).unwrap(), XDP_DROP);
        let events = filter.drop_events();
        assert!(
            (50..=52).contains(&events.len()),
            "v6 {v6}: {}",
            events.len()
        );
        assert_eq!(filter.drop_event_counts(), (events.len() as u64, 0));
        let captured = frame.len().min(HEADER_BYTES);
        for event in &events {
            assert_eq!(event.reason as u32, Reason::DropUnsolicitedDns.index());
            assert_eq!(event.len as usize, frame.len());
            assert_eq!(event.would_drop, 0);
            assert_eq!(usize::from(event.captured), captured);
            assert_eq!(event.headers[..captured], frame[..captured]);
        }
    }
}

/// Below the rate, one drop in OFFER_EVERY of a reason on a CPU is
/// sampled, the first one included.
#[test]
fn slow_drops_give_one_event_in_offer_every() {
    let mut filter = Filter::load();
    filter.set(&[("sample_rate", "1000/s")]);
    let drops = 10 * OFFER_EVERY + 1;
    assert_eq!(
        filter
            .try_ingress(&unsolicited_dns(false), drops as u32)
            .unwrap(),
        XDP_DROP
    );
    assert_eq!(filter.drop_events().len() as u64, 11);
}

#[test]
fn passed_packets_and_sampling_off_give_no_events() {
    let mut filter = Filter::load();
    let passed = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(443, 40000)
        .payload(&[0x17; 64])
        .build();
    assert_eq!(filter.try_ingress(&passed, 100).unwrap(), XDP_PASS);
    assert!(filter.drop_events().is_empty());

    filter.set(&[("sample_rate", "off")]);
    assert_eq!(
        filter.try_ingress(&unsolicited_dns(false), 100).unwrap(),
        XDP_DROP
    );
    assert!(filter.drop_events().is_empty());
    assert_eq!(filter.drop_event_counts(), (0, 0));
}

#[test]
fn monitor_mode_samples_what_it_would_drop() {
    let mut filter = Filter::load();
    filter.set(&[("monitor", "on"), ("sample_rate", "10/s")]);
    assert_eq!(
        filter.try_ingress(&unsolicited_dns(false), 100).unwrap(),
        XDP_PASS
    );
    // One in OFFER_EVERY of the 100 would-drops is offered, the first
    // included; the burst (10) admits every one of them.
    let events = filter.drop_events();
    assert_eq!(events.len() as u64, 100_u64.div_ceil(OFFER_EVERY));
    assert!(events.iter().all(|event| event.would_drop == 1));
}

#[test]
fn a_full_ring_counts_what_it_lost() {
    let mut filter = Filter::load();
    filter.set(&[("sample_rate", "100000/s")]);
    // 100,000 drops on one CPU, 6,250 of them offered to the limiter and
    // admitted, into a ring of about 3,600: nobody reads it.
    for _ in 0..100 {
        assert_eq!(
            filter.try_ingress(&unsolicited_dns(false), 1000).unwrap(),
            XDP_DROP
        );
    }
    let (sampled, lost) = filter.drop_event_counts();
    // One more per CPU the test run was moved to, if it was (each CPU
    // offers its own first drop).
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let offered = 100_000 / OFFER_EVERY;
    assert!(
        (offered..offered + cpus).contains(&(sampled + lost)),
        "every admitted drop is sampled or lost: {sampled} + {lost}"
    );
    assert!(lost > 0 && sampled > 1000, "sampled {sampled}, lost {lost}");
    assert_eq!(filter.drop_events().len() as u64, sampled);
}
