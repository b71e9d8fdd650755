//! The slots of the rate limits (the SYN buckets of syn.rs, the query limits
//! of query.rs): one GCRA timestamp in an array map, shared by all CPUs.
//! The arithmetic is filter_common::rate, tested on the host; this is the
//! read and the write.

use crate::kernel::Cell;

/// Takes a token from the bucket whose "full again" time is at `tat` (see
/// `filter_common::rate::admit`). A plain read, then a write only when a
/// token is taken: two CPUs taking the same last token at the same instant
/// both pass and the bucket is charged once (at most one extra packet per
/// colliding CPU, only while the bucket has tokens); packets over the limit
/// never write, so a flood against an empty bucket never bounces its cache
/// line between CPUs.
#[inline(always)]
pub fn take(tat: Cell<u64>, now: u64, rate: u32, burst: u32) -> bool {
    match filter_common::rate::admit(tat.get(), now, rate, burst) {
        Some(next) => {
            tat.set(next);
            true
        }
        None => false,
    }
}
