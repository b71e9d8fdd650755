//! Network interfaces, looked up in the caller's network namespace (the
//! lookups and the ioctl run in the namespace this process is in).

use std::os::fd::{AsRawFd as _, OwnedFd};

use anyhow::{Context as _, bail};
use filter_ctl_api::report::LinkLayer;
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

/// How an interface's frames reach the programs: the link layer they are
/// loaded to parse, and the link type it comes from (`ip link`'s
/// `link/ether`, `link/ppp`, `link/none`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub layer: LinkLayer,
    pub kind: &'static str,
}

/// Link types (include/uapi/linux/if_arp.h: ARPHRD_*) the filter parses:
/// Ethernet, or the IP header first on devices without a link-layer
/// header, whose drivers reset the MAC header onto the IP header before
/// the stack (and generic XDP) sees the packet.
const LINK_TYPES: [(u16, &str, LinkLayer); 6] = [
    (1, "ether", LinkLayer::Ethernet),
    // ppp_generic: ppp0 (PPPoE, PPPoA, dial-up).
    (512, "ppp", LinkLayer::Ip),
    // ARPHRD_NONE: WireGuard, tun (IFF_TUN).
    (65534, "none", LinkLayer::Ip),
    // ipip, and ip6tnl (DS-Lite, MAP-E: IPv4 in IPv6).
    (768, "ipip", LinkLayer::Ip),
    (769, "tunnel6", LinkLayer::Ip),
    // 6in4, 6rd, tunnel brokers.
    (776, "sit", LinkLayer::Ip),
];

/// Link types refused by name: frames the programs cannot parse.
const REFUSED_LINK_TYPES: [(u16, &str, &str); 6] = [
    (772, "loopback", "it never carries WAN traffic"),
    (
        778,
        "gre",
        "GRE packets start with an outer header the filter does not parse",
    ),
    (
        823,
        "ip6gre",
        "GRE packets start with an outer header the filter does not parse",
    ),
    (519, "rawip", "raw-IP modems are not supported yet"),
    (32, "infiniband", "InfiniBand frames are not parsed"),
    (280, "can", "CAN frames are not IP"),
];

/// The [`Link`] of an interface of link type `link_type`, or why it is
/// refused.
pub fn classify(name: &str, link_type: u16) -> Result<Link, String> {
    if let Some(&(_, kind, layer)) = LINK_TYPES.iter().find(|(t, ..)| *t == link_type) {
        return Ok(Link { layer, kind });
    }
    let supported = "the filter attaches to Ethernet devices and to devices without a \
                     link-layer header (ppp, WireGuard, tun, ipip, ip6tnl, sit)";
    Err(
        match REFUSED_LINK_TYPES.iter().find(|(t, ..)| *t == link_type) {
            Some((_, kind, why)) => format!("{name} has link type {kind}: {why}; {supported}"),
            None => format!(
                "{name} has link type {link_type}, which the filter cannot parse; {supported}"
            ),
        },
    )
}

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

    /// What the interface's frames start with, or why the filter cannot
    /// parse them. A bond's slave is refused too: its frames are the bond's,
    /// filtered on the bond (the kernel runs a slave's XDP program only
    /// while its master has none).
    pub fn link(&self) -> anyhow::Result<Link> {
        let link = classify(&self.name, self.link_type()?).map_err(anyhow::Error::msg)?;
        if self.flags()? & libc::IFF_SLAVE != 0 {
            bail!(
                "{} is a slave of {}: attach the filter to the bond itself (--iface {})",
                self.name,
                self.master().as_deref().unwrap_or("a bond"),
                self.master().as_deref().unwrap_or("BOND")
            );
        }
        Ok(link)
    }

    /// The master device of a slave, from sysfs when sysfs shows this
    /// network namespace (`ip netns exec` mounts the namespace's own).
    fn master(&self) -> Option<String> {
        let dir = std::path::Path::new("/sys/class/net").join(&self.name);
        let index: u32 = std::fs::read_to_string(dir.join("ifindex"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if index != self.index {
            return None;
        }
        let master = std::fs::read_link(dir.join("master")).ok()?;
        Some(master.file_name()?.to_string_lossy().into_owned())
    }

    /// Whether the interface is administratively up (IFF_UP, `ip link set up`).
    pub fn is_up(&self) -> anyhow::Result<bool> {
        Ok(self.flags()? & libc::IFF_UP != 0)
    }

    /// The interface flags (IFF_*), from SIOCGIFFLAGS in this network namespace.
    fn flags(&self) -> anyhow::Result<libc::c_int> {
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
        // The low 16 bits: IFF_SLAVE and IFF_UP are among them.
        Ok(libc::c_int::from(flags as u16))
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
    use super::{Link, LinkLayer, check_name, classify};

    #[test]
    fn link_types_without_ethernet_are_parsed_from_the_ip_header() {
        for (link_type, kind) in [
            (512, "ppp"),
            (65534, "none"),
            (768, "ipip"),
            (769, "tunnel6"),
            (776, "sit"),
        ] {
            let layer = LinkLayer::Ip;
            assert_eq!(classify("x0", link_type), Ok(Link { layer, kind }));
        }
        let ether = classify("eth0", 1).unwrap();
        assert_eq!(ether.layer, LinkLayer::Ethernet);
        for (link_type, says) in [
            (772, "lo has link type loopback"),
            (778, "lo has link type gre"),
            (519, "lo has link type rawip"),
            (801, "lo has link type 801, which the filter cannot parse"),
        ] {
            let err = classify("lo", link_type).unwrap_err();
            assert!(
                err.starts_with(says) && err.contains("(ppp, WireGuard"),
                "{err}"
            );
        }
    }

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
