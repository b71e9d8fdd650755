//! `dns-server`: a home DNS server made an amplifier.

use harness::traffic::queries::Service;

use super::{
    Ctx, Incident, Outcome,
    amplifier::{self, Setup},
    stage::Defence,
};

pub const INCIDENT: Incident = Incident {
    name: "dns-server",
    summary: "the gateway's DNS server used to reflect 3 KB answers at victims",
    story: "A home DNS server got ~100 queries a second from a few addresses: spoofed, so its answers flooded\n\
            the victims. Its owner closed UDP 53 on the router and broke his own browsing, since the answers\n\
            to his own lookups come from port 53 too. Here dnsmasq is the gateway's authoritative server.",
    run,
};

fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    amplifier::run(
        ctx,
        &Setup {
            service: Service::Dns,
            // XDP_TX on a veth reaches its peer only if the peer runs XDP
            // too; a real NIC sends it itself. In skb mode it leaves through
            // wan0's queue.
            defence: Defence {
                note: "The filter's defaults hold DNS queries to the gateway to a rate per question (name and type) \
                        from one /24, and all names together per source, per /24 and in all, and answer 1 in 2 over the limit with a truncated reply (\"slip\") so that real resolvers \
                        retry over TCP. (Generic XDP mode: on a veth, the reply sent back with XDP_TX leaves only that way.)",
                mode: Some("skb"),
                set: &[],
                settings: &[
                    "dns_service_ports",
                    "dns_query_name_rate",
                    "dns_query_name_burst",
                    "dns_query_source_rate",
                    "dns_query_source_burst",
                    "dns_query_prefix_rate",
                    "dns_query_prefix_burst",
                    "dns_query_global_rate",
                    "dns_slip",
                ],
                attack_pps: 100,
            },
            why: &[
                (
                    "pass_dns_query",
                    "queries within the limits: answered (the real resolvers' among them)",
                ),
                (
                    "drop_dns_query_name",
                    "queries for the attack's name from the victims' /24 over its limit",
                ),
                (
                    "drop_dns_query_source",
                    "a victim's queries over its own limit",
                ),
                (
                    "drop_dns_query_prefix",
                    "queries over the victims' /24's limit",
                ),
                (
                    "drop_dns_query_global",
                    "queries over the limit of all sources together",
                ),
                (
                    "tx_dns_truncated",
                    "1 in 2 over the limit: a truncated reply (as small as the query)",
                ),
                (
                    "drop_unsolicited_other",
                    "spoofed queries whose source port is an amplifier's",
                ),
                ("egress_other", "what the gateway sent: answers, ICMP"),
                (
                    "egress_query_recorded",
                    "the gateway's own lookups upstream, recorded",
                ),
                (
                    "pass_solicited",
                    "their answers, matched to what was recorded",
                ),
                (
                    "pass_ipv4",
                    "other inbound IPv4 (resolvers' TCP retries, ICMP)",
                ),
                (
                    "pass_syn",
                    "resolvers connecting over TCP after a truncated reply",
                ),
                ("pass_handshake", "their handshakes, completed"),
                ("pass_conn_closed", "and closed"),
                (
                    "egress_handshake_recorded",
                    "the gateway's SYN-ACKs to them, recorded on the way out",
                ),
                (
                    "egress_conn_closed",
                    "the gateway closing those connections",
                ),
            ],
        },
    )
}
