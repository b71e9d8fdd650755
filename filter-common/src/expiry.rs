//! Deadlines: when an entry of a table stops counting.
//!
//! Every deadline is on the programs' clock, the coarse monotonic clock
//! (bpf_ktime_get_coarse_ns; filter-ctl reads CLOCK_MONOTONIC_COARSE). An
//! entry is live while `now` is before its deadline. A deadline of 0 marks a
//! free or consumed slot in the solicited table and a bucket never used;
//! list entries use 0 for "never expires" instead.

/// True while `now_ns` is before `deadline_ns`; a deadline of 0 never is.
#[inline(always)]
pub const fn is_live(deadline_ns: u64, now_ns: u64) -> bool {
    deadline_ns > now_ns
}

/// For deadlines where 0 means "never expires" (list entries).
#[inline(always)]
pub const fn is_live_or_permanent(deadline_ns: u64, now_ns: u64) -> bool {
    deadline_ns == 0 || is_live(deadline_ns, now_ns)
}

/// The deadline of something that lives `lifetime_ns` from `now_ns`.
#[inline(always)]
pub const fn deadline(now_ns: u64, lifetime_ns: u64) -> u64 {
    now_ns.saturating_add(lifetime_ns)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn zero_is_free_or_permanent() {
        assert!(!is_live(0, 0));
        assert!(is_live_or_permanent(0, u64::MAX));
    }

    proptest! {
        /// An entry with a lifetime is live from its creation until its
        /// deadline, and never after.
        #[test]
        fn live_from_creation_until_the_deadline(
            now in any::<u64>(),
            lifetime in any::<u64>(),
            later in any::<u64>(),
        ) {
            let deadline = deadline(now, lifetime);
            prop_assert_eq!(is_live(deadline, now), lifetime > 0 && now < u64::MAX);
            let then = now.saturating_add(later);
            prop_assert_eq!(is_live(deadline, then), then < deadline);
            if deadline != 0 {
                prop_assert_eq!(is_live_or_permanent(deadline, then), then < deadline);
            }
        }
    }
}
