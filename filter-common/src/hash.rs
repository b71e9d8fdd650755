//! The hashes that place keys on the slots of the array maps: a key's
//! bucket in SOLICITED, a SYN source's (or prefix's) bucket in SYN_SOURCES
//! and SYN_PREFIXES. Both run on every packet of their path, so both are a
//! few independent multiplications, not a chained hash.

/// Odd 64-bit constants, one per lane of the solicited key.
const LANE_KEYS: [u64; 6] = [
    0x9e37_79b9_7f4a_7c15,
    0xbf58_476d_1ce4_e5b9,
    0x94d0_49bb_1331_11eb,
    0xd6e8_feb8_6659_fd93,
    0xa076_1d64_78bd_642f,
    0xe703_7ed1_a0b4_28db,
];

/// A hash of six 64-bit lanes, to be reduced to a bucket by its top bits.
///
/// Each lane is multiplied by its own odd constant and the products summed,
/// then mixed: the multiplications are independent, so the CPU runs them side
/// by side, where a chained hash (FNV-1a, used before) waits for each step.
#[inline(always)]
pub fn lanes(lanes: [u64; 6]) -> u64 {
    let mut hash = 0u64;
    for (lane, key) in lanes.into_iter().zip(LANE_KEYS) {
        hash = hash.wrapping_add(lane.wrapping_mul(key));
    }
    hash ^= hash >> 29;
    hash.wrapping_mul(LANE_KEYS[0])
}

/// A keyed mix of `key` (murmur3's 64-bit finaliser over key ^ seed): with
/// the seed secret, nobody can pick addresses that share a slot with a
/// victim. For a fixed seed it is a bijection: distinct keys never share
/// the 64-bit result, only its reduction to a slot.
#[inline(always)]
pub fn keyed_mix(key: u64, seed: u64) -> u64 {
    let mut h = key ^ seed;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The inverse of [`keyed_mix`] for seed 0, to show it is a bijection.
    fn unmix(mut h: u64) -> u64 {
        // x ^= x >> 33 is its own inverse for shifts of half the width or more.
        const INV_C1: u64 = 0x4f74_430c_22a5_4005; // inverse of 0xff51afd7ed558ccd mod 2^64
        const INV_C2: u64 = 0x9cb4_b2f8_1293_37db; // inverse of 0xc4ceb9fe1a85ec53 mod 2^64
        h ^= h >> 33;
        h = h.wrapping_mul(INV_C2);
        h ^= h >> 33;
        h = h.wrapping_mul(INV_C1);
        h ^= h >> 33;
        h
    }

    #[test]
    fn the_inverse_constants_are_inverses() {
        assert_eq!(
            0xff51_afd7_ed55_8ccd_u64.wrapping_mul(0x4f74_430c_22a5_4005),
            1
        );
        assert_eq!(
            0xc4ce_b9fe_1a85_ec53_u64.wrapping_mul(0x9cb4_b2f8_1293_37db),
            1
        );
    }

    proptest! {
        #[test]
        fn keyed_mix_is_a_bijection(key in any::<u64>(), seed in any::<u64>()) {
            prop_assert_eq!(unmix(keyed_mix(key, seed)) ^ seed, key);
        }

        /// Any change of one lane moves the hash: the lane constants are odd,
        /// so a lane's product is a bijection of the lane.
        #[test]
        fn every_lane_counts(
            base in any::<[u64; 6]>(),
            lane in 0..6usize,
            other in any::<u64>(),
        ) {
            let mut changed = base;
            changed[lane] = other;
            let before = base[lane];
            prop_assert_eq!(lanes(base) == lanes(changed), before == other);
        }
    }
}
