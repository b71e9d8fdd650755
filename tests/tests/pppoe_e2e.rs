//! End-to-end tests of the filter on a real PPPoE session: Debian's
//! pppoe-server on the ISP's side, pppd with the rp-pppoe plugin (the
//! kernel's PPPoE driver) on the gateway's, the LAN masqueraded on ppp0
//! (harness::netns::pppoe, harness::lab::wan_link). The filter is attached
//! on the Ethernet device under the session, where it parses the PPPoE
//! session header, or on ppp0 itself, a device without an Ethernet header
//! (generic XDP, parsed from the IP header).
//!
//! ```text
//!  ISP ns                                   gateway ns                        LAN ns
//!  isp0 ═══ PPPoE session ═══ wan0
//!  ppp0 203.0.113.1            ppp0 203.0.113.2 (NAT)   lan0 198.18.0.1 ══ eth0 198.18.0.2
//!  lo 198.51.100.1: dnsmasq, chronyd
//! ```
//!
//! The ISP sends the floods itself, as session frames on isp0; what reached
//! the gateway's stack is counted by nftables at ppp0's ingress. Each flood
//! runs without the filter, then with it.
//!
//! Needs the kernel's pppoe and ppp_async modules (the VM legs load them;
//! on a kernel without them each test says it is skipped) and root. Every
//! test makes its own namespaces (unique names) and removes them, and what
//! runs in them, when it ends, also when it fails.

use harness::{
    ctl::FilterCtl,
    lab::{
        addr,
        wan_checks::{self, attach_native, attach_skb},
        wan_link::{self, IspSide, Phases},
    },
    names::{TEST_PREFIX, unique_name},
    netns::{self, Netns, pppoe::PppoeSession},
    process::is_root,
    servers::real::Servers,
};

const WAN_IF: &str = "wan0";
const PPP_IF: &str = "ppp0";
const ISP_IF: &str = "isp0";

/// The gateway with its PPPoE session up, the LAN behind it, the ISP's
/// servers running. Drop order: the filter's pins, the ISP's senders, the
/// servers, the session, the namespaces.
struct PppoeWan {
    ctl: FilterCtl,
    isp_side: IspSide,
    _servers: Servers,
    _session: PppoeSession,
    lan: Netns,
    gw: Netns,
    _isp: Netns,
}

/// The PPPoE WAN, or `None` (after a skip line) on a kernel without PPPoE.
fn pppoe_wan(test: &str) -> Option<PppoeWan> {
    // ppp_async: pppoe-server's sessions run pppd over a pty.
    if !wan_checks::has_modules(test, &["pppoe", "ppp_async"]) {
        return None;
    }
    assert!(is_root(), "the end-to-end tests need root");
    let ctl = FilterCtl::new().expect("locating filter-ctl");
    let gw = Netns::unique(&format!("{TEST_PREFIX}-pgw")).expect("gateway namespace");
    let isp = Netns::unique(&format!("{TEST_PREFIX}-pisp")).expect("ISP namespace");
    let setup = || -> anyhow::Result<()> {
        netns::veth(&gw, WAN_IF, &isp, ISP_IF)?;
        gw.up(WAN_IF)?;
        isp.up(ISP_IF)?;
        isp.add_addr("lo", &format!("{}/32", addr::SERVER4))?;
        isp.add_addr("lo", &format!("{}/128", addr::SERVER6))
    };
    setup().expect("setting up the Ethernet link");
    let session = PppoeSession::start(
        &gw,
        WAN_IF,
        PPP_IF,
        &isp,
        ISP_IF,
        (addr::INET_WAN4, addr::GW_WAN4),
    )
    .expect("the PPPoE session");
    let lan = wan_link::lan_behind(&gw, PPP_IF, &unique_name(&format!("{TEST_PREFIX}-plan")))
        .expect("the LAN behind ppp0");
    let servers = Servers::start(&isp).expect("starting dnsmasq and chronyd");
    let (id, isp_mac, gw_mac) = (session.id, session.isp_mac, session.gateway_mac);
    let framing = Box::new(move |packet: harness::packet::PacketBuilder| {
        packet.pppoe(id).macs(isp_mac.0, gw_mac.0).build()
    });
    let isp_side = IspSide::new(&isp, &[ISP_IF], framing).expect("raw sockets on isp0");
    Some(PppoeWan {
        ctl,
        isp_side,
        _servers: servers,
        _session: session,
        lan,
        gw,
        _isp: isp,
    })
}

impl PppoeWan {
    fn phases<'a>(&'a self, label: &'a str, filter_if: &'a str) -> Phases<'a> {
        Phases {
            label,
            gw: &self.gw,
            lan: &self.lan,
            isp: &self.isp_side,
            ctl: &self.ctl,
            filter_if,
        }
    }
}

#[test]
fn a_pppoe_session_is_filtered_on_the_ethernet_device_under_it() {
    let Some(wan) = pppoe_wan("PPPoE (filter on the Ethernet device)") else {
        return;
    };
    let phases = wan.phases("PPPoE, the filter on wan0", WAN_IF);
    let unfiltered = phases.without_filter();
    attach_native(&wan.ctl, &wan.gw, WAN_IF);
    phases.with_filter(&unfiltered);
}

#[test]
fn a_pppoe_session_is_filtered_on_ppp0_in_skb_mode_from_the_ip_header() {
    let Some(wan) = pppoe_wan("PPPoE (filter on ppp0)") else {
        return;
    };
    let phases = wan.phases("PPPoE, the filter on ppp0", PPP_IF);
    let unfiltered = phases.without_filter();
    attach_skb(&wan.ctl, &wan.gw, PPP_IF, "ppp");
    phases.with_filter(&unfiltered);
}
