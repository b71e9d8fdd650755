//! Watched UDP ports: the roles of every port, as one map value. A port's
//! byte holds two roles, one per direction of the rules that read it:
//! - its [`PortClass`] (low two bits): as the *source* port of an inbound
//!   response (ingress), or the destination of an outbound query (egress),
//!   the reflection defence's view;
//! - its [`ServiceClass`] (the next two bits): as the *destination* port of
//!   an inbound request to a service on our side, the query limits' view.
//!
//! Port 53 is both by default: answers to our own lookups come *from* 53,
//! queries to our DNS server go *to* 53.

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

/// A service on our side whose inbound requests are limited (crate::query).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceClass {
    None = 0,
    Dns = 1,
    Ntp = 2,
}

impl ServiceClass {
    pub const fn from_u8(value: u8) -> ServiceClass {
        match value {
            1 => ServiceClass::Dns,
            2 => ServiceClass::Ntp,
            _ => ServiceClass::None,
        }
    }
}

/// Where the two roles sit in a port's byte.
const CLASS_MASK: u8 = 0b0011;
const SERVICE_SHIFT: u8 = 2;
const SERVICE_MASK: u8 = 0b0011 << SERVICE_SHIFT;

/// The roles of every UDP port, as one map value: 64 KiB that stay in the
/// CPU's cache under a flood to random ports, read and written by filter-ctl
/// in one syscall.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchedPorts(pub [u8; WatchedPorts::PORTS]);

impl WatchedPorts {
    pub const PORTS: usize = 65536;
    /// Elements of the WATCHED_PORTS map: the live one (see
    /// [`crate::Config::ports_slot`]) and the one the next change is written to.
    pub const SLOTS: u32 = 2;
    pub const NONE: WatchedPorts = WatchedPorts([PortClass::Unwatched as u8; Self::PORTS]);

    /// The port's role as a response's source port.
    #[inline(always)]
    pub fn class(&self, port: u16) -> PortClass {
        PortClass::from_u8(self.0[usize::from(port)] & CLASS_MASK)
    }

    /// The port's role as a request's destination port.
    #[inline(always)]
    pub fn service(&self, port: u16) -> ServiceClass {
        ServiceClass::from_u8((self.0[usize::from(port)] & SERVICE_MASK) >> SERVICE_SHIFT)
    }

    pub fn set(&mut self, port: u16, class: PortClass) {
        let byte = &mut self.0[usize::from(port)];
        *byte = (*byte & !CLASS_MASK) | class as u8;
    }

    pub fn set_service(&mut self, port: u16, service: ServiceClass) {
        let byte = &mut self.0[usize::from(port)];
        *byte = (*byte & !SERVICE_MASK) | (service as u8) << SERVICE_SHIFT;
    }
}

/// Service ports by default: requests to DNS (53) and NTP (123) are limited.
pub const DEFAULT_SERVICE_PORTS: [(u16, ServiceClass); 2] =
    [(53, ServiceClass::Dns), (123, ServiceClass::Ntp)];

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
    // SAFETY: bytes; bits that name no class read as Unwatched / None.
    unsafe impl aya::Pod for super::WatchedPorts {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_roles_of_a_port_are_independent() {
        let mut ports = WatchedPorts::NONE;
        ports.set(53, PortClass::Dns);
        ports.set_service(53, ServiceClass::Dns);
        ports.set_service(123, ServiceClass::Ntp);
        ports.set(123, PortClass::Ntp);
        assert_eq!(
            (ports.class(53), ports.service(53)),
            (PortClass::Dns, ServiceClass::Dns)
        );
        assert_eq!(
            (ports.class(123), ports.service(123)),
            (PortClass::Ntp, ServiceClass::Ntp)
        );
        ports.set(53, PortClass::Unwatched);
        assert_eq!(ports.service(53), ServiceClass::Dns, "the service stays");
        ports.set_service(123, ServiceClass::None);
        assert_eq!(ports.class(123), PortClass::Ntp, "the class stays");
        ports.set(7, PortClass::Other);
        ports.set_service(7, ServiceClass::Ntp);
        assert_eq!(ports.0[7], 0b1011);
        assert_eq!(ports.service(8), ServiceClass::None);
        // Unused bits and values read as nothing.
        ports.0[9] = 0xff;
        assert_eq!(
            (ports.class(9), ports.service(9)),
            (PortClass::Other, ServiceClass::None)
        );
    }
}
