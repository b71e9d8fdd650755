//! Rule 4 of ingress, IP fragments: a later fragment carries no transport
//! header, so it follows the verdict its first fragment got. A datagram is
//! keyed by its addresses, IP id and the protocol that follows the
//! fragmentation (`Ip::fragmented_protocol`), which its first and later
//! fragments carry alike. Attackers can
//! write this table (every first fragment they send makes an entry), so it is
//! an LRU kept apart from the solicited table. A later fragment that arrives
//! before its first one, or after the entry expired or was evicted, is an
//! orphan: the `orphan_fragments` setting decides.

use aya_ebpf::{macros::map, maps::LruHashMap};
use filter_common::{
    Action, Config, FRAGMENT_ENTRIES, FragmentKey, FragmentVerdict, OrphanPolicy, Reason, expiry,
};

use crate::{
    config,
    kernel::{KeyedCells as _, field},
    packet::{Fragment, Ip},
};

#[map]
static FRAGMENTS: LruHashMap<FragmentKey, FragmentVerdict> =
    LruHashMap::with_max_entries(FRAGMENT_ENTRIES, 0);

#[inline(always)]
fn key(ip: &Ip, id: u32) -> FragmentKey {
    FragmentKey {
        src: ip.src,
        dst: ip.dst,
        id,
        protocol: u32::from(ip.fragmented_protocol),
    }
}

/// Remembers the verdict of a first fragment, counted under the reason at
/// index `reason`, for the rest of its datagram.
#[inline(always)]
pub fn remember(ip: &Ip, reason: u32, config: &Config) {
    let Fragment::First { id } = ip.fragment else {
        return;
    };
    let verdict = FragmentVerdict {
        expires_ns: expiry::deadline(config::now_ns(), config.fragment_lifetime_ns()),
        dropped: u32::from(Reason::action_at(reason) == Action::Drop),
        _padding: 0,
    };
    let _ = FRAGMENTS.insert(&key(ip, id), &verdict, 0);
}

/// The verdict of a later fragment.
#[inline(always)]
pub fn follow(ip: &Ip, config: &Config) -> Reason {
    let Fragment::Later { id } = ip.fragment else {
        return Reason::PassMalformed;
    };
    match FRAGMENTS.cell_of(&key(ip, id)) {
        Some(verdict) if expiry::is_live(field!(verdict, expires_ns).get(), config::now_ns()) => {
            if field!(verdict, dropped).get() != 0 {
                Reason::DropFragment
            } else {
                Reason::PassFragment
            }
        }
        _ => match config.orphan_policy() {
            OrphanPolicy::Drop => Reason::DropOrphanFragment,
            OrphanPolicy::Pass => Reason::PassOrphanFragment,
        },
    }
}
