//! Verdict reasons: every packet either program sees is counted under exactly one.

/// Why a packet got its verdict. The value is the index into the `STATS` map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Ingress, passed: not IPv4/IPv6 (ARP, LLDP, PPP control, ...). Never filtered.
    PassNotIp = 0,
    /// Ingress, passed: IPv4 that no rule matched.
    PassIpv4 = 1,
    /// Ingress, passed: IPv6 that no rule matched.
    PassIpv6 = 2,
    /// Ingress, passed: headers truncated or malformed; passed so that a
    /// parser gap can never drop valid traffic, and counted to show it.
    PassMalformed = 3,
    /// Ingress, passed: a response from a watched port that answers a query
    /// our egress recorded (the entry is consumed).
    PassSolicited = 4,
    /// Ingress, passed: a later IP fragment whose first fragment passed.
    PassFragment = 5,
    /// Ingress, passed: a later fragment whose first fragment was not seen
    /// (out of order, or expired), under the `pass` orphan policy.
    PassOrphanFragment = 6,
    /// Ingress, dropped: a DNS response (source port 53) nobody asked for.
    DropUnsolicitedDns = 7,
    /// Ingress, dropped: an NTP response (source port 123) nobody asked for.
    DropUnsolicitedNtp = 8,
    /// Ingress, dropped: a response from another watched amplification port
    /// (chargen, SSDP, memcached, ...) nobody asked for.
    DropUnsolicitedOther = 9,
    /// Ingress, dropped: NTP mode 6/7 (control, monlist) packets, responses or
    /// queries: the gateway must never be an amplifier nor a victim of one.
    DropNtpControl = 10,
    /// Ingress, dropped: a later IP fragment whose first fragment was dropped.
    DropFragment = 11,
    /// Ingress, dropped: an orphan later fragment under the `drop` policy.
    DropOrphanFragment = 12,
    /// Egress, observed: a UDP query to a watched port, recorded as solicited.
    EgressQueryRecorded = 13,
    /// Egress, observed: a recorded query pushed the oldest live entry of its
    /// bucket out of the solicited table (the table is full there).
    EgressQueryEvicted = 14,
    /// Egress, observed: anything else.
    EgressOther = 15,
    /// Ingress, passed: the source is on the allow list; no drop rule looked at it.
    PassAllowList = 16,
    /// Ingress, passed: a TCP SYN (connection attempt: SYN without ACK) within
    /// its source, prefix and global buckets.
    PassSyn = 17,
    /// Ingress, dropped: the source is on the deny list (by the operator, or
    /// by the SYN penalty).
    DropDenyList = 18,
    /// Ingress, dropped: a TCP SYN over its source's bucket (IPv4 /32, IPv6 /64).
    DropSynSource = 19,
    /// Ingress, dropped: a TCP SYN over its source prefix's bucket.
    DropSynPrefix = 20,
    /// Ingress, dropped: a TCP SYN over the global bucket.
    DropSynGlobal = 21,
    /// Ingress, dropped: a TCP SYN over its source's bucket that put the
    /// source on the deny list (the penalty); one per penalty.
    DropSynPenalty = 22,
    /// Ingress, dropped: a TCP SYN over its source's bucket whose source
    /// earned the penalty but could not be put on the full deny list.
    DropSynPenaltyFull = 23,
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
    /// Number of reasons.
    pub const COUNT: u32 = 24;

    /// Every reason, in index order.
    pub const ALL: [Reason; Self::COUNT as usize] = [
        Reason::PassNotIp,
        Reason::PassIpv4,
        Reason::PassIpv6,
        Reason::PassMalformed,
        Reason::PassSolicited,
        Reason::PassFragment,
        Reason::PassOrphanFragment,
        Reason::DropUnsolicitedDns,
        Reason::DropUnsolicitedNtp,
        Reason::DropUnsolicitedOther,
        Reason::DropNtpControl,
        Reason::DropFragment,
        Reason::DropOrphanFragment,
        Reason::EgressQueryRecorded,
        Reason::EgressQueryEvicted,
        Reason::EgressOther,
        Reason::PassAllowList,
        Reason::PassSyn,
        Reason::DropDenyList,
        Reason::DropSynSource,
        Reason::DropSynPrefix,
        Reason::DropSynGlobal,
        Reason::DropSynPenalty,
        Reason::DropSynPenaltyFull,
    ];

    /// Stable snake_case name used in tables, JSON and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::PassNotIp => "pass_not_ip",
            Reason::PassIpv4 => "pass_ipv4",
            Reason::PassIpv6 => "pass_ipv6",
            Reason::PassMalformed => "pass_malformed",
            Reason::PassSolicited => "pass_solicited",
            Reason::PassFragment => "pass_fragment",
            Reason::PassOrphanFragment => "pass_orphan_fragment",
            Reason::DropUnsolicitedDns => "drop_unsolicited_dns",
            Reason::DropUnsolicitedNtp => "drop_unsolicited_ntp",
            Reason::DropUnsolicitedOther => "drop_unsolicited_other",
            Reason::DropNtpControl => "drop_ntp_control",
            Reason::DropFragment => "drop_fragment",
            Reason::DropOrphanFragment => "drop_orphan_fragment",
            Reason::EgressQueryRecorded => "egress_query_recorded",
            Reason::EgressQueryEvicted => "egress_query_evicted",
            Reason::EgressOther => "egress_other",
            Reason::PassAllowList => "pass_allow_list",
            Reason::PassSyn => "pass_syn",
            Reason::DropDenyList => "drop_deny_list",
            Reason::DropSynSource => "drop_syn_source",
            Reason::DropSynPrefix => "drop_syn_prefix",
            Reason::DropSynGlobal => "drop_syn_global",
            Reason::DropSynPenalty => "drop_syn_penalty",
            Reason::DropSynPenaltyFull => "drop_syn_penalty_full",
        }
    }

    pub const fn direction(self) -> Direction {
        match self {
            Reason::EgressQueryRecorded | Reason::EgressQueryEvicted | Reason::EgressOther => {
                Direction::Egress
            }
            _ => Direction::Ingress,
        }
    }

    pub const fn action(self) -> Action {
        match self {
            Reason::DropUnsolicitedDns
            | Reason::DropUnsolicitedNtp
            | Reason::DropUnsolicitedOther
            | Reason::DropNtpControl
            | Reason::DropFragment
            | Reason::DropOrphanFragment
            | Reason::DropDenyList
            | Reason::DropSynSource
            | Reason::DropSynPrefix
            | Reason::DropSynGlobal
            | Reason::DropSynPenalty
            | Reason::DropSynPenaltyFull => Action::Drop,
            _ => Action::Pass,
        }
    }

    /// Index into the `STATS` map. In monitor mode a drop reason is counted
    /// at `index() + COUNT` ("would drop") and the packet passes.
    pub const fn index(self) -> u32 {
        self as u32
    }
}
