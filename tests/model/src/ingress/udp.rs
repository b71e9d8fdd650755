//! Inbound UDP: the reflection defence (README, *The reflection defence*).
//! - to port 123 in NTP mode 6 or 7: drop (`drop_ntp_control`), so the
//!   gateway can never be the amplifier;
//! - from a DNS port: a response (QR set) must consume a recorded query with
//!   the same addresses, ports and id (`pass_solicited`), otherwise
//!   `drop_unsolicited_dns`; a query (QR clear) passes;
//! - from an NTP port: modes 6 and 7 drop; modes 4 and 5 must consume a
//!   recorded request whose transmit timestamp they echo as their origin
//!   timestamp, otherwise `drop_unsolicited_ntp`; other modes pass;
//! - from another amplification port: any packet must consume a recorded
//!   request, otherwise `drop_unsolicited_other`;
//! - from any other port: pass.
//!
//! A UDP header cut short, or a DNS/NTP field outside the datagram: pass
//! (`pass_malformed`).

use filter_common::Reason;

use super::pass;
use crate::{
    Judgement, State,
    parse::Ip,
    proto::{dns, ntp},
    settings::{PortClass, Settings},
    solicited::{Key, Token},
};

const NTP_PORT: u16 = 123;

pub fn verdict(state: &mut State, settings: &Settings, ip: &Ip<'_>, now: u64) -> Judgement {
    let Some(udp) = ip.udp() else {
        return Judgement::Pass(Reason::PassMalformed);
    };
    if udp.dst_port == NTP_PORT && ntp::is_control(udp.datagram) {
        return Judgement::Drop(Reason::DropNtpControl);
    }
    let class = settings.port_class(udp.src_port);
    let token = match class {
        PortClass::Unwatched => return pass(ip),
        PortClass::Dns => match dns::inbound(udp.datagram) {
            dns::Inbound::Response { id } => Token::Dns(id),
            dns::Inbound::Query => return pass(ip),
            dns::Inbound::Short => return Judgement::Pass(Reason::PassMalformed),
        },
        PortClass::Ntp => match ntp::inbound(udp.datagram) {
            ntp::Inbound::Response { origin } => Token::Ntp(origin),
            ntp::Inbound::ClientOrPeer => return pass(ip),
            ntp::Inbound::Control => return Judgement::Drop(Reason::DropNtpControl),
            ntp::Inbound::Short => return Judgement::Pass(Reason::PassMalformed),
        },
        PortClass::Other => Token::None,
    };
    let key = Key {
        family: ip.family,
        local: ip.dst,
        remote: ip.src,
        local_port: udp.dst_port,
        remote_port: udp.src_port,
        token,
    };
    if state.solicited.consume(&key, now) {
        return Judgement::Pass(Reason::PassSolicited);
    }
    Judgement::Drop(match class {
        PortClass::Dns => Reason::DropUnsolicitedDns,
        PortClass::Ntp => Reason::DropUnsolicitedNtp,
        _ => Reason::DropUnsolicitedOther,
    })
}
