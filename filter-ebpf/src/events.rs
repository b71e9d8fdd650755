//! Rare events worth a line in the daemon's log, sent with aya-log: a source
//! put on the deny list by the SYN penalty. (The solicited table evicting a
//! live entry is logged by the daemon from its counter: aya-log in the
//! egress program made Linux 6.1's verifier lose a spilled bound there.)
//! Never anything per packet: each call site is on a path a
//! packet takes only when such an event happens, and each kind of line is
//! further limited to a few per second (the counters count every one), so a
//! storm of evictions costs the log reader nothing and the packets little.

use aya_ebpf::{macros::map, maps::Array};
use aya_log_ebpf::info;
use filter_common::{Reason, prefix, sample};

use crate::{
    kernel::IndexedCells as _,
    packet::{Family, Ip},
};

/// Log lines per second of each kind.
const LINES_PER_SECOND: u32 = 5;

/// Each kind's line limiter (a GCRA timestamp, as for drop sampling), by
/// the reason the event is counted under.
#[map]
static EVENT_LOG_LIMITER: Array<u64> = Array::with_max_entries(Reason::COUNT, 0);

/// The SYN penalty put `ip`'s source on the deny list for `penalty_ns`.
#[inline(always)]
pub fn penalised(ip: &Ip, penalty_ns: u64, now: u64) {
    if !admit(Reason::DropSynPenalty, now) {
        return;
    }
    let secs = penalty_ns / 1_000_000_000;
    match ip.family {
        Family::Ipv4 => info!(
            &(),
            "syn_penalty: {:i} put on the deny list for {} s (it kept exceeding its SYN bucket)",
            ip.src[0].to_ne_bytes(),
            secs
        ),
        Family::Ipv6 => info!(
            &(),
            "syn_penalty: {:i}/64 put on the deny list for {} s (it kept exceeding its SYN bucket)",
            prefix::v6_slash64_bytes(&ip.src),
            secs
        ),
    }
}

#[inline(always)]
fn admit(reason: Reason, now: u64) -> bool {
    let Some(limiter) = EVENT_LOG_LIMITER.cell(reason.index()) else {
        return false;
    };
    match sample::admit(limiter.get(), now, LINES_PER_SECOND) {
        Some(next) => {
            limiter.set(next);
            true
        }
        None => false,
    }
}
