//! End-to-end test of the filter on a bond: two veth pairs between the
//! gateway and the ISP, bonded on both sides (balance-rr: both links carry
//! traffic both ways), the LAN masqueraded on the gateway's bond
//! (harness::lab::wan_link). The filter is attached on the bond master,
//! which puts its XDP program on both slaves (XDP on bonds: Linux 5.15);
//! `attach` on a slave is refused with the master's name.
//!
//! ```text
//!  ISP ns                                gateway ns                          LAN ns
//!  bond0 203.0.113.1 ┬ i0 ═══ g0 ┬ bond0 203.0.113.2 (NAT)   lan0 198.18.0.1 ══ eth0 198.18.0.2
//!                    └ i1 ═══ g1 ┘
//!  lo 198.51.100.1: dnsmasq, chronyd
//! ```
//!
//! The ISP sends the floods itself, alternately on i0 and i1; what reached
//! the gateway's stack is counted by nftables at bond0's ingress. Each
//! flood runs without the filter, then with it.
//!
//! Needs the kernel's bonding module (the VM legs load it; on a kernel
//! without it the test says it is skipped) and root. The test makes its own
//! namespaces (unique names) and removes them when it ends, also when it
//! fails.

use std::time::Duration;

use harness::{
    ctl::{FilterCtl, report::LinkLayer},
    kernel,
    lab::{
        addr, wan_checks,
        wan_link::{self, IspSide, Phases},
    },
    names::{TEST_PREFIX, unique_name},
    netns::{self, Netns},
    packet::PacketBuilder,
    process::{is_root, wait_until},
    servers::real::Servers,
};

const BOND: &str = "bond0";
const GW_SLAVES: [&str; 2] = ["g0", "g1"];
const ISP_SLAVES: [&str; 2] = ["i0", "i1"];

/// Drop order: the filter's pins, the ISP's senders, the servers, the
/// namespaces.
struct BondWan {
    ctl: FilterCtl,
    isp_side: IspSide,
    _servers: Servers,
    lan: Netns,
    gw: Netns,
    _isp: Netns,
}

fn bond_wan() -> Option<BondWan> {
    if !wan_checks::has_modules("bond (the filter on the master)", &["bonding"]) {
        return None;
    }
    assert!(is_root(), "the end-to-end tests need root");
    let ctl = FilterCtl::new().expect("locating filter-ctl");
    let gw = Netns::unique(&format!("{TEST_PREFIX}-bgw")).expect("gateway namespace");
    let isp = Netns::unique(&format!("{TEST_PREFIX}-bisp")).expect("ISP namespace");
    let setup = || -> anyhow::Result<()> {
        for (g, i) in GW_SLAVES.into_iter().zip(ISP_SLAVES) {
            netns::veth(&gw, g, &isp, i)?;
        }
        gw.add_bond(BOND, "balance-rr", &GW_SLAVES)?;
        isp.add_bond(BOND, "balance-rr", &ISP_SLAVES)?;
        gw.add_addr(BOND, &format!("{}/{}", addr::GW_WAN4, addr::WAN4_PREFIX))?;
        isp.add_addr(BOND, &format!("{}/{}", addr::INET_WAN4, addr::WAN4_PREFIX))?;
        isp.add_addr("lo", &format!("{}/32", addr::SERVER4))?;
        isp.add_addr("lo", &format!("{}/128", addr::SERVER6))?;
        // Permanent neighbours: no ARP on the link.
        gw.add_neighbour(BOND, addr::INET_WAN4.into(), isp.mac(BOND)?)?;
        isp.add_neighbour(BOND, addr::GW_WAN4.into(), gw.mac(BOND)?)?;
        gw.add_route("default", addr::INET_WAN4.into())?;
        wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            Ok(gw.operstate(BOND)? == "up" && isp.operstate(BOND)? == "up")
        })
    };
    setup().expect("setting up the bonds");
    let lan = wan_link::lan_behind(&gw, BOND, &unique_name(&format!("{TEST_PREFIX}-blan")))
        .expect("the LAN behind the bond");
    let servers = Servers::start(&isp).expect("starting dnsmasq and chronyd");
    let (isp_mac, gw_mac) = (isp.mac(BOND).unwrap(), gw.mac(BOND).unwrap());
    let framing = Box::new(move |packet: PacketBuilder| packet.macs(isp_mac.0, gw_mac.0).build());
    let isp_side = IspSide::new(&isp, &ISP_SLAVES, framing).expect("raw sockets on i0 and i1");
    Some(BondWan {
        ctl,
        isp_side,
        _servers: servers,
        lan,
        gw,
        _isp: isp,
    })
}

#[test]
fn a_bond_is_filtered_on_its_master_and_attach_on_a_slave_names_the_master() {
    let Some(wan) = bond_wan() else {
        return;
    };
    let gw = &wan.gw;
    let phases = Phases {
        label: "bond, the filter on bond0",
        gw,
        lan: &wan.lan,
        isp: &wan.isp_side,
        ctl: &wan.ctl,
        filter_if: BOND,
    };
    let unfiltered = phases.without_filter();

    // A slave is refused by name, and nothing changes.
    let err = wan.ctl.failure(gw, &["attach", "--iface", GW_SLAVES[0]]);
    assert!(
        err.contains(
            "g0 is a slave of bond0: attach the filter to the bond itself (--iface bond0)"
        ),
        "{err}"
    );
    assert_eq!(kernel::xdp_on(gw, GW_SLAVES[0]).unwrap(), None);
    assert_eq!(kernel::xdp_on(gw, BOND).unwrap(), None);

    let shown = wan.ctl.attach(gw, BOND, None).expect("attach on the bond");
    let status = &wan.ctl.status(gw, Some(BOND)).expect("status")[0];
    assert!(status.attached, "{status:?}");
    assert_eq!(status.link_layer, Some(LinkLayer::Ethernet));
    let (mode, _) = kernel::xdp_on(gw, BOND).unwrap().expect("XDP on bond0");
    println!(
        "bond: {}; the kernel shows XDP in {mode} mode on bond0",
        shown.trim()
    );
    phases.with_filter(&unfiltered);
}
