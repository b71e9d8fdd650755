//! A real PPPoE session between two namespaces, as a DSL or fibre line
//! brings one up: Debian's `pppoe-server` (rp-pppoe) on the ISP's Ethernet
//! device, and on the gateway's `pppd` with the rp-pppoe plugin, which
//! hands the session to the kernel's PPPoE driver: the gateway gets a ppp
//! device (link type ppp, no Ethernet header) with its public address,
//! and every IP packet of the session crosses the Ethernet link as a PPPoE
//! session frame.
//!
//! pppoe-server runs each session's pppd over a pty with its user-space
//! `pppoe` (Debian builds it without kernel mode); the gateway's side is
//! the kernel's, as on a real gateway. Neither side authenticates. Both
//! read their own /etc/ppp ([`Netns::etc_file`]): the machine's options
//! (`auth`, `lock`) and ip-up scripts (which would reach the machine's
//! chronyd and Postfix) stay out of the test.
//!
//! [`PppoeSession::frame`] wraps a packet in the session as the ISP sends
//! it, for floods with spoofed sources.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::{Context as _, bail};

use super::{Mac, Netns};
use crate::{
    kernel,
    packet::{Frame, PacketBuilder},
    process::{Background, wait_until},
};

/// The session's MTU: Ethernet's less the PPPoE and PPP headers.
pub const MTU: u32 = 1492;

/// The two ends of a session, stopped on drop (with what pppoe-server
/// started in the ISP's namespace).
pub struct PppoeSession {
    /// Options only so that drop can stop them in order.
    client: Option<Background>,
    server: Option<Background>,
    isp: String,
    /// The session id the ISP's server gave.
    pub id: u16,
    /// The ISP's and the gateway's Ethernet addresses.
    pub isp_mac: Mac,
    pub gateway_mac: Mac,
}

impl PppoeSession {
    /// Brings up a session over the Ethernet link `gateway_if` (in
    /// `gateway`) — `isp_if` (in `isp`), both up: the ISP's server on
    /// `isp_if` with address `local`, the gateway's pppd on `gateway_if`,
    /// which gets `remote` on the ppp device `ppp_if` and its default route
    /// through it. Returns once `ppp_if` has its address.
    pub fn start(
        gateway: &Netns,
        gateway_if: &str,
        ppp_if: &str,
        isp: &Netns,
        isp_if: &str,
        (local, remote): (Ipv4Addr, Ipv4Addr),
    ) -> anyhow::Result<Self> {
        let mtu = MTU.to_string();
        // The ISP's pppd: pppoe-server adds the addresses, the pty running
        // `pppoe` and the options a session needs.
        let options =
            format!("noauth\nnodefaultroute\nlcp-echo-interval 0\nmtu {mtu}\nmru {mtu}\n");
        isp.etc_file("ppp/options", "")?;
        let server_options = isp.etc_file("ppp/pppoe-server-options", &options)?;
        let server = isp.spawn(
            "pppoe-server",
            [
                "pppoe-server",
                "-F",
                "-I",
                isp_if,
                "-L",
                &local.to_string(),
                "-R",
                &remote.to_string(),
                "-N",
                "1",
                "-O",
                &server_options.to_string_lossy(),
            ],
        )?;
        gateway.etc_file("ppp/options", "")?;
        let client = gateway.spawn(
            "pppd",
            [
                "pppd",
                "plugin",
                "rp-pppoe.so",
                gateway_if,
                "ifname",
                ppp_if,
                "nodetach",
                // Its messages (the session id among them) to our log.
                "logfd",
                "2",
                "noauth",
                // The address is the one the ISP gives, never one from
                // this machine's hostname.
                "noipdefault",
                "defaultroute",
                "lcp-echo-interval",
                "0",
                "maxfail",
                "1",
                "mtu",
                &mtu,
                "mru",
                &mtu,
                "noaccomp",
                "nopcomp",
                "novj",
                "nobsdcomp",
                "nodeflate",
            ],
        )?;
        let (mut client, mut server) = (client, server);
        let timeout = Duration::from_secs(if kernel::emulated() { 90 } else { 20 });
        let up = wait_until(timeout, Duration::from_millis(100), || {
            client.check_running()?;
            server.check_running()?;
            let shown = gateway
                .ip(["-4", "addr", "show", "dev", ppp_if])
                .unwrap_or_default();
            Ok(shown.contains(&format!("inet {remote} ")))
        })
        .and_then(|()| session_id(&client.log()));
        let id = match up {
            Ok(id) => id,
            Err(err) => {
                let logs = format!("pppd: {}\npppoe-server: {}", client.log(), server.log());
                drop((client, server));
                isp.kill_processes();
                bail!("no PPPoE session on {gateway_if} within {timeout:?}: {err:#}\n{logs}");
            }
        };
        Ok(Self {
            client: Some(client),
            server: Some(server),
            isp: isp.name().to_owned(),
            id,
            isp_mac: isp.mac(isp_if)?,
            gateway_mac: gateway.mac(gateway_if)?,
        })
    }

    /// `packet` as the ISP sends it to the gateway in this session: an
    /// Ethernet frame of the PPPoE session.
    pub fn frame(&self, packet: PacketBuilder) -> Frame {
        packet
            .pppoe(self.id)
            .macs(self.isp_mac.0, self.gateway_mac.0)
            .build()
    }
}

impl Drop for PppoeSession {
    fn drop(&mut self) {
        // The gateway's pppd first: it ends the session (PADT); then the
        // server, and what is left of its sessions.
        drop(self.client.take());
        drop(self.server.take());
        super::kill_processes(&self.isp);
    }
}

/// The session id in pppd's log: the rp-pppoe plugin's "PPP session is N".
fn session_id(log: &str) -> anyhow::Result<u16> {
    log.lines()
        .find_map(|line| line.split("PPP session is ").nth(1))
        .and_then(|rest| rest.trim().parse().ok())
        .context("pppd did not say which PPPoE session it has")
}

#[cfg(test)]
mod tests {
    use super::session_id;

    #[test]
    fn the_session_id_is_read_from_pppds_log() {
        let log = "Plugin rp-pppoe.so loaded.\nPPP session is 7\nConnected to 02:00:00:00:00:01 via interface wan0\n";
        assert_eq!(session_id(log).unwrap(), 7);
        assert!(session_id("Plugin rp-pppoe.so loaded.\n").is_err());
    }
}
