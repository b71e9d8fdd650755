//! The GCRA bucket of every rate limit the filter keeps: the SYN buckets
//! (syn.rs, docs/syn-and-lists.md) and the query limits (query.rs,
//! docs/query-limits.md), one design for both. A bucket is its "full again"
//! time `tat` (0: never used, full). With `interval = 1 s / rate` (whole
//! nanoseconds; the rate clamped to 1..=1,000,000/s), a packet at `now` is
//! admitted if `max(tat, now) - now <= (burst - 1) * interval`, and then
//! `tat` moves to `max(tat, now) + interval`; a refused packet leaves the
//! bucket as it is.

const NS_PER_SEC: u64 = 1_000_000_000;
const MAX_RATE: u32 = 1_000_000;

/// Takes a token from the bucket whose "full again" time is `tat_ns`, if it
/// has one. Compared exactly: `ahead * rate <= (burst - 1) * 1 s`.
pub fn take(tat_ns: &mut u64, now: u64, rate: u32, burst: u32) -> bool {
    let rate = u64::from(rate.clamp(1, MAX_RATE));
    let start = (*tat_ns).max(now);
    let ahead = u128::from(start - now);
    let spare = u128::from(burst.max(1) - 1);
    if ahead * u128::from(rate) > spare * u128::from(NS_PER_SEC) {
        return false;
    }
    *tat_ns = start + NS_PER_SEC / rate;
    true
}
