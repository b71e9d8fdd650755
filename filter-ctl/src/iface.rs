//! Network interfaces, looked up in the caller's network namespace (the
//! lookups and the ioctl run in the namespace this process is in).

use std::os::fd::{AsRawFd as _, OwnedFd};

use anyhow::{Context as _, bail};
use nix::{
    net::if_::if_nametoindex,
    sys::socket::{AddressFamily, SockFlag, SockType, socket},
};

/// An interface that exists now in this network namespace.
#[derive(Clone, Debug)]
pub struct Interface {
    pub name: String,
    pub index: u32,
}

/// ARPHRD_ETHER: the link type whose frames the programs parse.
const ARPHRD_ETHER: u16 = 1;

/// Checks `name` as Linux checks an interface's name (`dev_valid_name`):
/// 1 to 15 bytes, not `.` or `..`, no `/`, `:` or white space. It becomes a
/// directory under the pin root, so a name that is a path (`..`, `../..`)
/// would reach outside the interface's own pins; and `wan0:1` is an alias
/// (an address label) of wan0, which the kernel's interface ioctls resolve
/// to wan0 itself.
pub fn check_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("'{name}' is not an interface name: {why}"));
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() >= libc::IFNAMSIZ {
        return bad(&format!("longer than {} bytes", libc::IFNAMSIZ - 1));
    }
    if name == "." || name == ".." || name.contains('/') {
        return bad("interface names are not paths");
    }
    if let Some((device, _)) = name.split_once(':') {
        return bad(&format!(
            "a name with ':' is an alias, an address label of {device}; the filter is attached \
             to the device itself (--iface {device})"
        ));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it holds white space or control characters");
    }
    Ok(())
}

impl Interface {
    pub fn lookup(name: &str) -> anyhow::Result<Self> {
        check_name(name).map_err(anyhow::Error::msg)?;
        let Ok(index) = if_nametoindex(name) else {
            bail!(
                "no interface named '{name}' in this network namespace (see `ip link`; \
                 inside a namespace use `ip netns exec NS filter-ctl ...`)"
            );
        };
        Ok(Self {
            name: name.to_owned(),
            index,
        })
    }

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

    /// Whether the interface is administratively up (IFF_UP, `ip link set up`).
    pub fn is_up(&self) -> anyhow::Result<bool> {
        let socket = control_socket()?;
        let mut request = self.request();
        // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifr_flags of the
        // ifreq we own, through a socket we own.
        let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("SIOCGIFFLAGS on {}", self.name));
        }
        // SAFETY: the kernel filled ifr_flags for this request.
        let flags = unsafe { request.ifr_ifru.ifru_flags };
        Ok(flags & libc::IFF_UP as libc::c_short != 0)
    }

    /// The MTU, from SIOCGIFMTU in this network namespace.
    pub fn mtu(&self) -> anyhow::Result<u32> {
        let socket = control_socket()?;
        let mut request = self.request();
        // SAFETY: SIOCGIFMTU reads ifr_name and writes ifr_mtu of the ifreq
        // we own, through a socket we own.
        let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFMTU, &mut request) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("SIOCGIFMTU on {}", self.name));
        }
        // SAFETY: the kernel filled ifr_mtu for this request.
        Ok(unsafe { request.ifr_ifru.ifru_mtu } as u32)
    }

    /// An ifreq naming this interface.
    fn request(&self) -> libc::ifreq {
        // SAFETY: ifreq is plain data; zeroed is a valid value.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in request.ifr_name.iter_mut().zip(self.name.bytes()) {
            *dst = src as libc::c_char;
        }
        request
    }

    /// The ARPHRD_* link type, from SIOCGIFHWADDR in this network namespace.
    fn link_type(&self) -> anyhow::Result<u16> {
        let socket = control_socket()?;
        let mut request = self.request();
        // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr of the
        // ifreq we own, through a socket we own.
        let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFHWADDR, &mut request) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("SIOCGIFHWADDR on {}", self.name));
        }
        // SAFETY: the kernel filled ifr_hwaddr for this request.
        Ok(unsafe { request.ifr_ifru.ifru_hwaddr.sa_family })
    }
}

/// A socket to ask the kernel about interfaces with.
fn control_socket() -> anyhow::Result<OwnedFd> {
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("opening a socket for ioctls")
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_that_are_paths_aliases_or_too_long_are_refused() {
        for good in ["wan0", "eth0.7", "ppp-wan", "abcdefghijklmno", "en@x"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            (".", "not paths"),
            ("..", "not paths"),
            ("../..", "not paths"),
            ("a/b", "not paths"),
            ("wan0:1", "--iface wan0"),
            ("wan 0", "white space"),
            ("wan\n0", "white space"),
            ("abcdefghijklmnop", "longer than 15"),
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(
                err.contains(why) && err.starts_with(&format!("'{bad}'")),
                "{bad}: {err}"
            );
        }
    }
}
