//! Verdict reasons: every packet either program sees is counted under exactly one.
//!
//! The table at the bottom is the one definition: each entry gives the
//! variant, its index into the `STATS` map, its stable name, where it is
//! counted and what the XDP program does with the packet. The enum, `ALL`,
//! `COUNT`, `name`, `direction` and `action` are generated from it, so a new
//! reason is one entry (with its doc comment). Indices are the counters'
//! slots in a map that survives a program replacement: append, never renumber.

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
    /// Rewritten into a reply and sent back out of the interface (XDP_TX).
    Tx,
}

macro_rules! reasons {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident = $index:literal, $name:literal, $direction:ident, $action:ident;
    )*) => {
        /// Why a packet got its verdict. The value is the index into the `STATS` map.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reason {
            $($(#[doc = $doc])* $variant = $index,)*
        }

        impl Reason {
            /// Every reason, in index order.
            pub const ALL: [Reason; Self::COUNT as usize] = [$(Reason::$variant,)*];

            /// Number of reasons.
            pub const COUNT: u32 = [$($index,)*].len() as u32;

            /// Stable snake_case name used in tables, JSON and metrics.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)*
                }
            }

            pub const fn direction(self) -> Direction {
                match self {
                    $(Reason::$variant => Direction::$direction,)*
                }
            }

            pub const fn action(self) -> Action {
                match self {
                    $(Reason::$variant => Action::$action,)*
                }
            }
        }
    };
}

impl Reason {
    /// Index into the `STATS` map. In monitor mode a drop or tx reason is
    /// counted at `index() + COUNT` ("would drop", "would tx") and the
    /// packet passes untouched.
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// The reason called `name` (see [`Reason::name`]).
    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|reason| reason.name() == name)
    }

    /// [`Reason::action`] of the reason whose index is `index`, for the
    /// ingress program's `finish`, which gets the index as a number from
    /// the rule functions: two bit masks, no branch per reason (which the
    /// verifier would walk once each). An index of no reason passes.
    #[inline(always)]
    pub const fn action_at(index: u32) -> Action {
        if index >= u64::BITS {
            Action::Pass
        } else if ACTION_DROP >> index & 1 != 0 {
            Action::Drop
        } else if ACTION_TX >> index & 1 != 0 {
            Action::Tx
        } else {
            Action::Pass
        }
    }
}

/// Bit `index` set for each reason whose action is `action`.
const fn action_mask(action: Action) -> u64 {
    let mut mask = 0;
    let mut i = 0;
    while i < Reason::ALL.len() {
        let reason = Reason::ALL[i];
        if reason.action() as u8 == action as u8 {
            mask |= 1 << reason.index();
        }
        i += 1;
    }
    mask
}

const ACTION_DROP: u64 = action_mask(Action::Drop);
const ACTION_TX: u64 = action_mask(Action::Tx);
const _: () = assert!(
    Reason::COUNT <= u64::BITS,
    "Reason::action_at's masks hold 64 reasons: widen them"
);

reasons! {
    /// Not IPv4/IPv6 (ARP, LLDP, PPP control, ...). Never filtered.
    PassNotIp = 0, "pass_not_ip", Ingress, Pass;
    /// IPv4 that no rule matched.
    PassIpv4 = 1, "pass_ipv4", Ingress, Pass;
    /// IPv6 that no rule matched.
    PassIpv6 = 2, "pass_ipv6", Ingress, Pass;
    /// Headers truncated or malformed; passed so that a parser gap can never
    /// drop valid traffic, and counted to show it.
    PassMalformed = 3, "pass_malformed", Ingress, Pass;
    /// A response from a watched port that answers a query our egress
    /// recorded (the entry is consumed).
    PassSolicited = 4, "pass_solicited", Ingress, Pass;
    /// A later IP fragment whose first fragment passed.
    PassFragment = 5, "pass_fragment", Ingress, Pass;
    /// A later fragment whose first fragment was not seen (out of order, or
    /// expired), under the `pass` orphan policy.
    PassOrphanFragment = 6, "pass_orphan_fragment", Ingress, Pass;
    /// A DNS response (source port 53) nobody asked for.
    DropUnsolicitedDns = 7, "drop_unsolicited_dns", Ingress, Drop;
    /// An NTP response (source port 123) nobody asked for.
    DropUnsolicitedNtp = 8, "drop_unsolicited_ntp", Ingress, Drop;
    /// A response from another watched amplification port (chargen, SSDP,
    /// memcached, ...) nobody asked for.
    DropUnsolicitedOther = 9, "drop_unsolicited_other", Ingress, Drop;
    /// NTP mode 6/7 (control, monlist) packets, responses or queries: the
    /// gateway must never be an amplifier nor a victim of one.
    DropNtpControl = 10, "drop_ntp_control", Ingress, Drop;
    /// A later IP fragment whose first fragment was dropped.
    DropFragment = 11, "drop_fragment", Ingress, Drop;
    /// An orphan later fragment under the `drop` policy.
    DropOrphanFragment = 12, "drop_orphan_fragment", Ingress, Drop;
    /// A UDP query to a watched port, recorded as solicited.
    EgressQueryRecorded = 13, "egress_query_recorded", Egress, Pass;
    /// A recorded query pushed the oldest live entry of its bucket out of
    /// the solicited table (the table is full there).
    EgressQueryEvicted = 14, "egress_query_evicted", Egress, Pass;
    /// Any other outgoing packet.
    EgressOther = 15, "egress_other", Egress, Pass;
    /// The source is on the allow list; no drop rule looked at it.
    PassAllowList = 16, "pass_allow_list", Ingress, Pass;
    /// A TCP SYN (connection attempt: SYN without ACK) within its source,
    /// prefix and global buckets.
    PassSyn = 17, "pass_syn", Ingress, Pass;
    /// The source is on the deny list (by the operator, or by the SYN penalty).
    DropDenyList = 18, "drop_deny_list", Ingress, Drop;
    /// A TCP SYN over its source's bucket (IPv4 /32, IPv6 /64).
    DropSynSource = 19, "drop_syn_source", Ingress, Drop;
    /// A TCP SYN over its source prefix's bucket.
    DropSynPrefix = 20, "drop_syn_prefix", Ingress, Drop;
    /// A TCP SYN over the global bucket.
    DropSynGlobal = 21, "drop_syn_global", Ingress, Drop;
    /// A TCP SYN over its source's bucket that put the source on the deny
    /// list (the penalty); one per penalty.
    DropSynPenalty = 22, "drop_syn_penalty", Ingress, Drop;
    /// A TCP SYN over its source's bucket whose source earned the penalty but
    /// could not be put on the full deny list.
    DropSynPenaltyFull = 23, "drop_syn_penalty_full", Ingress, Drop;
    // Issue 11, the connection-aware TCP defence (docs/tcp-connections.md).
    /// An ACK that completed a handshake egress recorded: the half-open units
    /// of its SYN are given back, and on a port with a connection limit the
    /// connection counts from here.
    PassHandshake = 24, "pass_handshake", Ingress, Pass;
    /// A completing ACK whose connection (on a limited port) took the slot of
    /// another tracked connection, which stops counting (table full there).
    PassConnEvicted = 25, "pass_conn_evicted", Ingress, Pass;
    /// An inbound FIN or RST that ended a counted connection.
    PassConnClosed = 26, "pass_conn_closed", Ingress, Pass;
    /// A TCP SYN from a source with its half-open budget in use: that many
    /// of its connection attempts are unanswered.
    DropSynHalfopen = 27, "drop_syn_halfopen", Ingress, Drop;
    /// A TCP SYN from a prefix with its half-open budget in use.
    DropSynHalfopenPrefix = 28, "drop_syn_halfopen_prefix", Ingress, Drop;
    /// A TCP SYN from a source at its connection limit for that port.
    DropConnLimit = 29, "drop_conn_limit", Ingress, Drop;
    /// A SYN-ACK, recorded as a handshake waiting for its ACK.
    EgressHandshakeRecorded = 30, "egress_handshake_recorded", Egress, Pass;
    /// A recorded handshake pushed the one closest to expiry of its bucket
    /// out of the handshake table (full there).
    EgressHandshakeEvicted = 31, "egress_handshake_evicted", Egress, Pass;
    /// An outgoing FIN or RST that ended a counted connection.
    EgressConnClosed = 32, "egress_conn_closed", Egress, Pass;
    // Issue 12, the limits on inbound DNS and NTP requests (docs/query-limits.md).
    /// A DNS request (QR clear) to a DNS service port within its name,
    /// source, prefix and global limits.
    PassDnsQuery = 33, "pass_dns_query", Ingress, Pass;
    /// An NTP client request (mode 3) to an NTP service port within its limits.
    PassNtpQuery = 34, "pass_ntp_query", Ingress, Pass;
    /// A DNS request over its source's limit (IPv4 /32, IPv6 /64), not slipped.
    DropDnsQuerySource = 35, "drop_dns_query_source", Ingress, Drop;
    /// A DNS request over its source prefix's limit, not slipped.
    DropDnsQueryPrefix = 36, "drop_dns_query_prefix", Ingress, Drop;
    /// A DNS request over the global limit, not slipped.
    DropDnsQueryGlobal = 37, "drop_dns_query_global", Ingress, Drop;
    /// An NTP client request over its source's limit.
    DropNtpQuerySource = 38, "drop_ntp_query_source", Ingress, Drop;
    /// An NTP client request over its source prefix's limit.
    DropNtpQueryPrefix = 39, "drop_ntp_query_prefix", Ingress, Drop;
    /// An NTP client request over the global limit.
    DropNtpQueryGlobal = 40, "drop_ntp_query_global", Ingress, Drop;
    /// A DNS query over a limit that got the slip: a truncated answer
    /// (QR and TC set, the question, no records) sent back with XDP_TX.
    TxDnsTruncated = 41, "tx_dns_truncated", Ingress, Tx;
    // Issue 27, the DNS name level.
    /// A DNS request over its prefix's limit for its question's name and
    /// type (`dns_query_name_rate`), not slipped.
    DropDnsQueryName = 42, "drop_dns_query_name", Ingress, Drop;
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn indices_are_dense_and_in_table_order() {
        assert_eq!(Reason::ALL.len(), Reason::COUNT as usize);
        for (position, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index() as usize, position, "{reason:?}");
        }
    }

    #[test]
    fn names_are_unique_snake_case_and_found_again() {
        let names: BTreeSet<&str> = Reason::ALL.into_iter().map(Reason::name).collect();
        assert_eq!(names.len(), Reason::ALL.len(), "a name is used twice");
        for reason in Reason::ALL {
            let name = reason.name();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name} is not snake_case"
            );
            assert_eq!(Reason::from_name(name), Some(reason));
        }
        assert_eq!(Reason::from_name("pass"), None);
    }

    /// The name says what happens: `pass_*` and `egress_*` pass, `drop_*`
    /// drops, `tx_*` replies; `egress_*` is counted by egress, the rest by
    /// ingress. Egress never drops.
    #[test]
    fn action_and_direction_match_the_name() {
        for reason in Reason::ALL {
            let name = reason.name();
            let (action, direction) = match name.split('_').next() {
                Some("pass") => (Action::Pass, Direction::Ingress),
                Some("drop") => (Action::Drop, Direction::Ingress),
                Some("tx") => (Action::Tx, Direction::Ingress),
                Some("egress") => (Action::Pass, Direction::Egress),
                _ => panic!("{name}: a name starts with pass_, drop_, tx_ or egress_"),
            };
            assert_eq!(reason.action(), action, "{name}");
            assert_eq!(reason.direction(), direction, "{name}");
        }
    }

    #[test]
    fn the_action_by_index_is_the_reasons_action() {
        for reason in Reason::ALL {
            assert_eq!(
                Reason::action_at(reason.index()),
                reason.action(),
                "{reason:?}"
            );
        }
        for index in [Reason::COUNT, 63, 64, u32::MAX] {
            assert_eq!(Reason::action_at(index), Action::Pass, "{index}");
        }
    }

    /// The variant is the name in CamelCase, so that code and counters read the same.
    #[test]
    fn variants_spell_their_names() {
        for reason in Reason::ALL {
            let camel: std::string::String = reason
                .name()
                .split('_')
                .flat_map(|word| {
                    let mut chars = word.chars();
                    chars
                        .next()
                        .map(|first| first.to_ascii_uppercase())
                        .into_iter()
                        .chain(chars)
                })
                .collect();
            assert_eq!(std::format!("{reason:?}"), camel);
        }
    }
}
