//! A point-to-point link without Ethernet between two namespaces: a tun
//! device (IFF_TUN | IFF_NO_PI: bare IP packets, link type `none`) in each,
//! joined by two threads that write every packet one device sends into the
//! other. The gateway's end stands for a WAN device without an Ethernet
//! header (ppp0, wg0, an IP tunnel). [`TunLink::inject`] writes packets into
//! the gateway's device as if they came from the other end (floods with
//! spoofed sources).
//!
//! A packet written into a tun device is received before the write returns
//! (the driver hands it to the stack on the writer's thread): generic XDP
//! and the nftables ingress hook have seen it by then, so counters read
//! after an injection are final, no marker needed.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _, Write as _},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
};

use anyhow::Context as _;

use super::Netns;

/// Two tun devices in two namespaces and the relays between them; dropping
/// it stops the relays and closes both devices (which deletes them).
pub struct TunLink {
    gateway: Arc<File>,
    stop: Arc<AtomicBool>,
    relays: Vec<JoinHandle<()>>,
}

impl TunLink {
    /// A tun device `gateway_name` in `gateway` and `other_name` in `other`,
    /// joined. Both are down and without addresses: the caller sets them up.
    pub fn new(
        gateway: &Netns,
        gateway_name: &str,
        other: &Netns,
        other_name: &str,
    ) -> anyhow::Result<Self> {
        let gateway_end = Arc::new(gateway.enter(|| open_tun(gateway_name))?);
        let other_end = Arc::new(other.enter(|| open_tun(other_name))?);
        let stop = Arc::new(AtomicBool::new(false));
        let relays = [
            (gateway_end.clone(), other_end.clone()),
            (other_end, gateway_end.clone()),
        ]
        .into_iter()
        .map(|(from, to)| {
            let stop = stop.clone();
            thread::spawn(move || relay(&from, &to, &stop))
        })
        .collect();
        Ok(Self {
            gateway: gateway_end,
            stop,
            relays,
        })
    }

    /// Hands `packet` (an IP packet) to the gateway's device as received
    /// from the other end.
    pub fn inject(&self, packet: &[u8]) -> io::Result<()> {
        let written = (&*self.gateway).write(packet)?;
        if written != packet.len() {
            return Err(io::Error::other(format!(
                "the tun device took {written} of {} bytes",
                packet.len()
            )));
        }
        Ok(())
    }
}

impl Drop for TunLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for relay in self.relays.drain(..) {
            let _ = relay.join();
        }
    }
}

/// A tun device named `name` in this thread's network namespace, attached
/// to the returned file.
fn open_tun(name: &str) -> anyhow::Result<File> {
    super::check_ifname(name)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun (is the tun module loaded?)")?;
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads the ifreq we own (name and flags) and writes
    // its name; the file is ours.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut request) } < 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("creating tun {name}"));
    }
    Ok(file)
}

/// Copies every packet `from` sends into `to` until `stop`, waking every
/// 50 ms to look at it.
fn relay(from: &File, to: &File, stop: &AtomicBool) {
    let mut buffer = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let mut poll = libc::pollfd {
            fd: from.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own, for the duration of the call.
        if unsafe { libc::poll(&mut poll, 1, 50) } <= 0 {
            continue;
        }
        match (&*from).read(&mut buffer) {
            // A device that is down takes nothing: the packet is lost, as
            // on a wire without carrier.
            Ok(len) if len > 0 => drop((&*to).write(&buffer[..len])),
            _ => thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
}
