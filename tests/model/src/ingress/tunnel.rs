//! IP inside IP (docs/rules.md, *Tunnels*): IPv4 inside IPv6 (DS-Lite,
//! MAP-E) and IPv6 inside IPv4 (6in4, 6rd) meet every rule as the packet
//! inside, as if it had come bare: the lists see the inner addresses, and
//! the relay's never.
//! - One level: a tunnel inside the tunnel passes as the inner packet's
//!   other protocols do (parse.rs unwraps only a packet that came bare).
//! - An inner header too deep (past 128 bytes), cut short or invalid:
//!   `pass_malformed`.
//! - The outer datagram's fragments: a first fragment is judged by the
//!   packet inside it, and that verdict (whatever rule gave it, the lists
//!   too) is remembered under the outer datagram's key, which its later
//!   fragments follow without meeting the lists (they carry no inner
//!   addresses). A first fragment of the inner datagram is remembered under
//!   its key as a bare one is, the lists' verdicts too.
//! - No slip reply over a tunnel (query.rs): the drop of its level.

use filter_common::Reason;

use super::{fragment_key, listed, remember, rules};
use crate::{
    Chance, Judgement, State,
    parse::{Fragment, Ip, Parsed},
    settings::Settings,
};

/// The verdict on `outer`, an IP packet that carries another.
pub fn verdict(
    state: &mut State,
    settings: &Settings,
    seed: u64,
    chance: &mut Chance,
    outer: &Ip<'_>,
    now: u64,
) -> Judgement {
    if let Fragment::Later(id) = outer.fragment {
        return state
            .fragments
            .follow(&fragment_key(outer, id), now, settings.orphans);
    }
    let inner = match outer.inner() {
        Parsed::Ip(inner) => Some(inner),
        Parsed::NotIp | Parsed::Malformed => None,
    };
    let judgement = match &inner {
        Some(inner) => listed(state, inner, now)
            .unwrap_or_else(|| rules(state, settings, seed, chance, inner, now)),
        None => Judgement::Pass(Reason::PassMalformed),
    };
    remember(state, settings, outer, judgement, now);
    if let Some(inner) = &inner {
        remember(state, settings, inner, judgement, now);
    }
    judgement
}
