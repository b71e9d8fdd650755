//! The one AF_PACKET sender: a raw socket opened inside a namespace and bound
//! to one of its interfaces, so that crafted frames leave that interface
//! exactly as built, with any source address, at a bounded rate
//! ([`RawSender::send_paced`]).

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{
    errno::Errno,
    net::if_::if_nametoindex,
    sys::socket::{
        AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, SockaddrLike as _, bind, send,
        socket,
    },
};

use crate::netns::{Mac, Netns};

/// How often a frame the first hop refuses (ENOBUFS: its queue is full for
/// a moment) is tried again before the send fails.
const MAX_REFUSALS: u32 = 10_000;

pub struct RawSender {
    fd: OwnedFd,
    iface: String,
    mac: Mac,
}

impl RawSender {
    /// Opens the socket inside `ns` (the socket stays in that namespace, so it
    /// can be used from any thread), bound to `iface`, receiving nothing.
    pub fn open(ns: &Netns, iface: &str) -> anyhow::Result<Self> {
        let mac = ns.mac(iface)?;
        let fd = ns
            .enter(|| {
                let ifindex =
                    if_nametoindex(iface).with_context(|| format!("no interface {iface}"))?;
                // Protocol 0: this socket sends only, it never receives.
                let fd = socket(
                    AddressFamily::Packet,
                    SockType::Raw,
                    SockFlag::SOCK_CLOEXEC,
                    None,
                )
                .context("socket(AF_PACKET)")?;
                bind(fd.as_raw_fd(), &link_addr(ifindex)?)
                    .with_context(|| format!("binding to {iface}"))?;
                Ok(fd)
            })
            .with_context(|| format!("opening a raw socket on {iface} in {}", ns.name()))?;
        Ok(Self {
            fd,
            iface: iface.to_owned(),
            mac,
        })
    }

    /// The MAC address of the interface: the source MAC of the frames.
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// Sends one frame. `Ok(false)`: the first hop dropped it (ENOBUFS, a
    /// full queue), so it did not go out and may be sent again.
    pub fn try_send(&self, frame: &[u8]) -> anyhow::Result<bool> {
        match send(self.fd.as_raw_fd(), frame, MsgFlags::empty()) {
            Ok(sent) if sent == frame.len() => Ok(true),
            Ok(sent) => bail!("sent {sent} of {} bytes on {}", frame.len(), self.iface),
            Err(Errno::ENOBUFS) => Ok(false),
            Err(err) => Err(err)
                .with_context(|| format!("sending a {}-byte frame on {}", frame.len(), self.iface)),
        }
    }

    /// Sends one frame, waiting while the first hop refuses it: no frame is
    /// ever lost on our side. Returns how often it was refused.
    pub fn send(&self, frame: &[u8]) -> anyhow::Result<u32> {
        let mut refused = 0;
        while !self.try_send(frame)? {
            refused += 1;
            if refused > MAX_REFUSALS {
                bail!("the first hop refused a frame {MAX_REFUSALS} times (ENOBUFS)");
            }
            thread::sleep(Duration::from_micros(100));
        }
        Ok(refused)
    }
}

/// Paces frames to at most `pps` per second: frame `i` leaves no earlier
/// than `start + i / pps`.
pub struct Pacer {
    start: Instant,
    interval_ns: f64,
}

impl Pacer {
    pub fn new(pps: u32) -> Self {
        assert!(pps > 0, "a flood needs a rate");
        Self {
            start: Instant::now(),
            interval_ns: 1e9 / f64::from(pps),
        }
    }

    /// Waits until frame number `sent` is due (sleeping only when it is more
    /// than half a millisecond away, so the pace holds on average).
    pub fn wait(&self, sent: u64) {
        let due = self.start + Duration::from_nanos((sent as f64 * self.interval_ns) as u64);
        let now = Instant::now();
        if due > now + Duration::from_micros(500) {
            thread::sleep(due - now);
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// The link-layer address that binds an AF_PACKET socket to `ifindex`.
fn link_addr(ifindex: u32) -> anyhow::Result<LinkAddr> {
    // nix has no constructor for it: fill in the kernel's struct.
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: 0,
        sll_ifindex: i32::try_from(ifindex)?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    let len = u32::try_from(size_of::<libc::sockaddr_ll>())?;
    // SAFETY: a sockaddr_ll of the size given, alive for the call.
    unsafe { LinkAddr::from_raw((&raw const sll).cast::<libc::sockaddr>(), Some(len)) }
        .context("a link-layer address")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_addresses_name_the_interface() {
        let addr = link_addr(7).unwrap();
        assert_eq!(addr.ifindex(), 7);
        assert_eq!(addr.family(), Some(AddressFamily::Packet));
    }
}
