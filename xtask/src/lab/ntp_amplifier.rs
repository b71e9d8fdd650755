//! `ntp-amplifier`: the gateway's own NTP server made an amplifier.

use harness::traffic::queries::Service;

use super::{
    Ctx, Incident, Outcome,
    amplifier::{self, Setup},
    stage::Defence,
};

pub const INCIDENT: Incident = Incident {
    name: "ntp-amplifier",
    summary: "the gateway's NTP server used to reflect traffic at victims",
    story: "A gateway answered NTP for anyone, including ntpd's monlist (mode 7), and spoofed requests made it\n\
            the amplifier: 95 Mbit/s upstream, 150 GB sent to victims. Here chronyd serves NTP on the gateway\n\
            (chrony has no monlist, but answers every client request) and three victims' addresses are spoofed.",
    run,
};

fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    amplifier::run(
        ctx,
        &Setup {
            service: Service::Ntp,
            defence: Defence {
                note: "The filter's defaults hold NTP requests to the gateway to a rate per source, per /24 and in all, \
                        and drop every mode 6/7 packet:",
                mode: None,
                set: &[],
                settings: &[
                    "ntp_service_ports",
                    "ntp_query_source_rate",
                    "ntp_query_source_burst",
                    "ntp_query_prefix_rate",
                    "ntp_query_prefix_burst",
                    "ntp_query_global_rate",
                ],
                attack_pps: 100,
            },
            why: &[
                (
                    "pass_ntp_query",
                    "requests within the limits: answered (the real clients' among them)",
                ),
                (
                    "drop_ntp_query_source",
                    "a victim's requests over its own limit",
                ),
                (
                    "drop_ntp_query_prefix",
                    "requests over the victims' /24's limit",
                ),
                (
                    "drop_ntp_query_global",
                    "requests over the limit of all sources together",
                ),
                (
                    "drop_ntp_control",
                    "the monlist (mode 7) requests: never answered",
                ),
                (
                    "drop_unsolicited_other",
                    "spoofed requests whose source port is an amplifier's: taken for responses",
                ),
                ("egress_other", "what the gateway sent: answers, ICMP"),
                (
                    "egress_query_recorded",
                    "the gateway's own DNS lookups upstream, recorded",
                ),
                (
                    "pass_solicited",
                    "their answers, matched to what was recorded",
                ),
                ("pass_ipv4", "other inbound IPv4 (the lookups' TCP, ICMP)"),
                ("pass_ipv6", "other inbound IPv6"),
            ],
        },
    )
}
