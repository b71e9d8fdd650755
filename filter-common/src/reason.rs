//! Verdict reasons: every packet either program sees is counted under exactly one.

/// Why a packet got its verdict. The value is the index into the `STATS` map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Ingress, passed: not IPv4/IPv6 (ARP, LLDP, ...). Never filtered.
    PassNotIp = 0,
    /// Ingress, passed: IPv4 that no rule matched.
    PassIpv4 = 1,
    /// Ingress, passed: IPv6 that no rule matched.
    PassIpv6 = 2,
    /// Ingress, passed: headers truncated or malformed; passed so that a
    /// parser gap can never drop valid traffic, and counted to show it.
    PassMalformed = 3,
    /// Egress, observed: IPv4.
    EgressIpv4 = 4,
    /// Egress, observed: IPv6.
    EgressIpv6 = 5,
    /// Egress, observed: anything else.
    EgressOther = 6,
}

/// Where a reason is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

/// What the XDP program does with a packet counted under a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pass,
    Drop,
}

impl Reason {
    /// Number of reasons: the size of the `STATS` map.
    pub const COUNT: u32 = 7;

    /// Every reason, in index order.
    pub const ALL: [Reason; Self::COUNT as usize] = [
        Reason::PassNotIp,
        Reason::PassIpv4,
        Reason::PassIpv6,
        Reason::PassMalformed,
        Reason::EgressIpv4,
        Reason::EgressIpv6,
        Reason::EgressOther,
    ];

    /// Stable snake_case name used in tables, JSON and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::PassNotIp => "pass_not_ip",
            Reason::PassIpv4 => "pass_ipv4",
            Reason::PassIpv6 => "pass_ipv6",
            Reason::PassMalformed => "pass_malformed",
            Reason::EgressIpv4 => "egress_ipv4",
            Reason::EgressIpv6 => "egress_ipv6",
            Reason::EgressOther => "egress_other",
        }
    }

    pub const fn direction(self) -> Direction {
        match self {
            Reason::PassNotIp | Reason::PassIpv4 | Reason::PassIpv6 | Reason::PassMalformed => {
                Direction::Ingress
            }
            Reason::EgressIpv4 | Reason::EgressIpv6 | Reason::EgressOther => Direction::Egress,
        }
    }

    /// Every reason so far passes; drop reasons come with the detection rules.
    pub const fn action(self) -> Action {
        Action::Pass
    }

    /// Index into the `STATS` map.
    pub const fn index(self) -> u32 {
        self as u32
    }
}
