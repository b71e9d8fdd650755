//! Watched UDP ports: the class of every port, as one map value.

/// How a UDP source port (ingress) or destination port (egress) is watched.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortClass {
    Unwatched = 0,
    Dns = 1,
    Ntp = 2,
    /// Another amplification vector: every packet from it is a response.
    Other = 3,
}

impl PortClass {
    pub const fn from_u8(value: u8) -> PortClass {
        match value {
            1 => PortClass::Dns,
            2 => PortClass::Ntp,
            3 => PortClass::Other,
            _ => PortClass::Unwatched,
        }
    }
}

/// The [`PortClass`] of every UDP port, as one map value: 64 KiB that stay
/// in the CPU's cache under a flood to random ports, read and written by
/// filter-ctl in one syscall.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchedPorts(pub [u8; WatchedPorts::PORTS]);

impl WatchedPorts {
    pub const PORTS: usize = 65536;
    /// Elements of the WATCHED_PORTS map: the live one (see
    /// [`crate::Config::ports_slot`]) and the one the next change is written to.
    pub const SLOTS: u32 = 2;
    pub const NONE: WatchedPorts = WatchedPorts([PortClass::Unwatched as u8; Self::PORTS]);

    #[inline(always)]
    pub fn class(&self, port: u16) -> PortClass {
        PortClass::from_u8(self.0[usize::from(port)])
    }

    pub fn set(&mut self, port: u16, class: PortClass) {
        self.0[usize::from(port)] = class as u8;
    }
}

/// Ports watched by default: DNS, NTP and the UDP amplification vectors
/// listed by CISA's alert TA14-017A and later reports.
pub const DEFAULT_WATCHED_PORTS: [(u16, PortClass); 17] = [
    (53, PortClass::Dns),
    (123, PortClass::Ntp),
    (17, PortClass::Other),    // QOTD
    (19, PortClass::Other),    // chargen
    (69, PortClass::Other),    // TFTP
    (111, PortClass::Other),   // portmap / rpcbind
    (137, PortClass::Other),   // NetBIOS name service
    (161, PortClass::Other),   // SNMP
    (389, PortClass::Other),   // CLDAP
    (520, PortClass::Other),   // RIPv1
    (1900, PortClass::Other),  // SSDP
    (3283, PortClass::Other),  // Apple Remote Desktop
    (3702, PortClass::Other),  // WS-Discovery
    (5353, PortClass::Other),  // mDNS
    (10001, PortClass::Other), // Ubiquiti discovery
    (11211, PortClass::Other), // memcached
    (37810, PortClass::Other), // DVR DHCPDiscover
];

#[cfg(feature = "user")]
mod pod {
    // SAFETY: bytes; a byte that is no PortClass reads as Unwatched.
    unsafe impl aya::Pod for super::WatchedPorts {}
}
