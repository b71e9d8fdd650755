//! Network interfaces, looked up in the caller's network namespace.

use std::ffi::CString;

use anyhow::{Context as _, bail};

/// An interface that exists now in this network namespace.
#[derive(Clone, Debug)]
pub struct Interface {
    pub name: String,
    pub index: u32,
}

impl Interface {
    pub fn lookup(name: &str) -> anyhow::Result<Self> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
            bail!("'{name}' is not a valid interface name");
        }
        let c_name = CString::new(name).context("interface name")?;
        // SAFETY: c_name is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            bail!(
                "no interface named '{name}' in this network namespace (see `ip link`; \
                 inside a namespace use `ip netns exec NS filter-ctl ...`)"
            );
        }
        Ok(Self {
            name: name.to_owned(),
            index,
        })
    }
}

/// ARPHRD_ETHER: the link type whose frames the programs parse.
const ARPHRD_ETHER: u16 = 1;

impl Interface {
    /// Fails unless the interface carries Ethernet frames. A PPP device
    /// (`ppp0`) hands XDP bare IP packets; the filter belongs on the Ethernet
    /// device under it, where it parses the PPPoE session frames.
    pub fn require_ethernet(&self) -> anyhow::Result<()> {
        let link_type = self.link_type()?;
        if link_type != ARPHRD_ETHER {
            bail!(
                "{} is not an Ethernet interface (link type {link_type}); for PPPoE attach the filter \
                 to the Ethernet device that carries the session (e.g. eth0), not to the ppp device",
                self.name
            );
        }
        Ok(())
    }

    /// The ARPHRD_* link type, from SIOCGIFHWADDR in this network namespace.
    fn link_type(&self) -> anyhow::Result<u16> {
        // SAFETY: a plain socket call; the fd is owned and closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("socket for SIOCGIFHWADDR");
        }
        // SAFETY: fd is a socket we just opened and nobody else owns.
        let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: ifreq is plain data; zeroed is a valid value.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in request.ifr_name.iter_mut().zip(self.name.bytes()) {
            *dst = src as libc::c_char;
        }
        // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr of the ifreq we own.
        let rc = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::SIOCGIFHWADDR,
                &mut request,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("SIOCGIFHWADDR on {}", self.name));
        }
        // SAFETY: the kernel filled ifr_hwaddr for this request.
        Ok(unsafe { request.ifr_ifru.ifru_hwaddr.sa_family })
    }
}
