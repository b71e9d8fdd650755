//! End-to-end test of the filter on a WireGuard WAN: the kernel's wireguard
//! device, peered with the ISP's over an Ethernet uplink (wireguard-tools'
//! `wg`), IPv4 and IPv6 inside, the LAN masqueraded into it
//! (harness::lab::tunnel_wan). The filter runs on wg0 in generic (skb)
//! mode from the IP header; the floods are sent into the ISP's wg0, so they
//! arrive encrypted and the gateway's wg0 hands them to the stack. Counted
//! independently by nftables at wg0's ingress.
//!
//! Needs the wireguard module: this machine's kernel lacks it (the test
//! says it is skipped), the VM legs load it.

use harness::{
    ctl::FilterCtl,
    lab::{
        tunnel_wan::{Tunnel, TunnelWan},
        wan_checks::Floods,
    },
};

#[test]
fn a_wireguard_wan_is_filtered_in_skb_mode_from_the_ip_header() {
    let Some(wan) = TunnelWan::build(Tunnel::WireGuard).expect("building the WireGuard WAN") else {
        return;
    };
    let ctl = FilterCtl::new().expect("locating filter-ctl");
    let floods = Floods {
        spoofed4: 1000,
        spoofed6: 500,
        syns: 300,
        lookups: 10,
    };
    let unfiltered = wan.unfiltered(floods);
    // WireGuard's device type is ARPHRD_NONE, as tun's.
    wan.attach_to_tunnel(&ctl, "none");
    // IPv6 goes through wg0 too: its lookup is recorded there.
    wan.filtered(&ctl, Tunnel::WireGuard.gw_if(), floods, &unfiltered, true);
}
