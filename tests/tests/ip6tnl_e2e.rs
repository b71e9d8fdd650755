//! End-to-end tests of the filter on a DS-Lite/MAP-E-like WAN: IPv4 inside
//! IPv6 through a real ip6tnl (`mode ipip6`, with Linux's encapsulation
//! limit option) between the gateway and its ISP over an Ethernet uplink,
//! the LAN masqueraded into the tunnel (harness::lab::tunnel_wan).
//!
//! The floods are sent into the ISP's end of the tunnel, so they reach the
//! gateway encapsulated: without the filter, the tunnel hands them to the
//! stack; with the filter on the Ethernet device under the tunnel, it
//! unwraps them and judges the packet inside (solicited answers recorded by
//! its egress from the LAN's queries after NAT, inside the tunnel); on the
//! tunnel device itself it runs in generic (skb) mode from the IP header.
//! Counted independently by nftables at the ingress of the uplink and of
//! the tunnel device.
//!
//! Needs the ip6_tunnel module: this machine's kernel lacks it (the tests
//! say they are skipped), the VM legs load it.

use harness::{
    ctl::FilterCtl,
    lab::{
        tunnel_wan::{Tunnel, TunnelWan, WAN_IF},
        wan_checks::Floods,
    },
};

const FLOODS: Floods = Floods {
    spoofed4: 1000,
    spoofed6: 500,
    syns: 300,
    lookups: 10,
};

fn ip6tnl_wan() -> Option<TunnelWan> {
    TunnelWan::build(Tunnel::Ip6tnl).expect("building the ip6tnl WAN")
}

#[test]
fn ip6tnl_floods_are_unwrapped_and_dropped_on_the_ethernet_device_under_the_tunnel() {
    let Some(wan) = ip6tnl_wan() else {
        return;
    };
    let ctl = FilterCtl::new().expect("locating filter-ctl");
    let unfiltered = wan.unfiltered(FLOODS);
    wan.attach_to_uplink(&ctl);
    // The IPv6 flood and lookup are native on wan0, beside the tunnel.
    wan.filtered(&ctl, WAN_IF, FLOODS, &unfiltered, true);
}

#[test]
fn an_ip6tnl_device_is_filtered_in_skb_mode_from_the_ip_header() {
    let Some(wan) = ip6tnl_wan() else {
        return;
    };
    let ctl = FilterCtl::new().expect("locating filter-ctl");
    // The tunnel carries IPv4 only; native IPv6 stays on wan0, unfiltered here.
    let floods = Floods {
        spoofed6: 0,
        ..FLOODS
    };
    let unfiltered = wan.unfiltered(floods);
    wan.attach_to_tunnel(&ctl, "tunnel6");
    wan.filtered(&ctl, Tunnel::Ip6tnl.gw_if(), floods, &unfiltered, false);
}
