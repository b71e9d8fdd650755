//! Bounds-checked reads of packet headers, shared by the ingress and egress hooks.
//! Every read checks against the end of the packet, as the verifier requires.

/// EtherType values we parse.
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub const ETH_HDR_LEN: usize = 14;
pub const IPV4_MIN_HDR_LEN: usize = 20;
pub const IPV6_HDR_LEN: usize = 40;

/// The linear packet bytes a program may read: `[start, end)`.
pub struct Packet {
    start: usize,
    end: usize,
}

/// Where the network layer starts and what it is.
pub enum Network {
    Ipv4,
    Ipv6,
    /// A frame we do not filter (ARP, LLDP, ...).
    NotIp,
    /// Headers cut short or invalid.
    Malformed,
}

impl Packet {
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// A pointer to a `T` at `offset`, or `None` if it would read past the end.
    #[inline(always)]
    pub fn ptr_at<T>(&self, offset: usize) -> Option<*const T> {
        let at = self.start + offset;
        if at + core::mem::size_of::<T>() > self.end {
            return None;
        }
        Some(at as *const T)
    }

    #[inline(always)]
    pub fn u8_at(&self, offset: usize) -> Option<u8> {
        // SAFETY: ptr_at checked the byte lies inside the packet.
        self.ptr_at::<u8>(offset).map(|p| unsafe { *p })
    }

    /// A big-endian u16 at `offset`.
    #[inline(always)]
    pub fn be16_at(&self, offset: usize) -> Option<u16> {
        // SAFETY: ptr_at checked both bytes lie inside the packet; unaligned read.
        self.ptr_at::<[u8; 2]>(offset)
            .map(|p| u16::from_be_bytes(unsafe { core::ptr::read_unaligned(p) }))
    }

    /// Finds the network layer behind the Ethernet header.
    #[inline(always)]
    pub fn network(&self) -> Network {
        let Some(ethertype) = self.be16_at(12) else {
            return Network::Malformed;
        };
        let offset = ETH_HDR_LEN;
        match ethertype {
            ETH_P_IPV4 => match self.u8_at(offset) {
                Some(vihl)
                    if vihl >> 4 == 4 && usize::from(vihl & 0x0f) * 4 >= IPV4_MIN_HDR_LEN =>
                {
                    // The whole header, options included, must be there.
                    if self.start + offset + usize::from(vihl & 0x0f) * 4 <= self.end {
                        Network::Ipv4
                    } else {
                        Network::Malformed
                    }
                }
                _ => Network::Malformed,
            },
            ETH_P_IPV6 => match self.u8_at(offset) {
                Some(version)
                    if version >> 4 == 6 && self.ptr_at::<[u8; IPV6_HDR_LEN]>(offset).is_some() =>
                {
                    Network::Ipv6
                }
                _ => Network::Malformed,
            },
            _ => Network::NotIp,
        }
    }
}
