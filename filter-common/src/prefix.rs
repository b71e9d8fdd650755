//! Address prefixes: the masks of the per-prefix SYN level, and the forms
//! of an address that the per-source level and the LPM tries of the lists
//! take. Addresses come from the parser as words holding wire bytes (IPv4 in
//! the first word), as in every map key.

/// The top `len` bits of a `width`-bit address held in the low bits of a
/// u64 (`width` 1..=64; a longer `len` counts as `width`).
#[inline(always)]
pub const fn mask(len: u8, width: u32) -> u64 {
    let len = if (len as u32) < width {
        len as u32
    } else {
        width
    };
    if len == 0 {
        return 0;
    }
    (u64::MAX << (width - len)) & (u64::MAX >> (64 - width))
}

/// An IPv4 address as a number (its first byte on the wire is the top byte).
#[inline(always)]
pub const fn v4_number(word: u32) -> u32 {
    u32::from_be(word)
}

/// The /64 of an IPv6 address as a number: the first 8 wire bytes.
#[inline(always)]
pub const fn v6_top64(words: &[u32; 4]) -> u64 {
    (u32::from_be(words[0]) as u64) << 32 | u32::from_be(words[1]) as u64
}

/// An IPv6 address as its 16 wire bytes (the key of an LPM trie).
#[inline(always)]
pub fn v6_bytes(words: &[u32; 4]) -> [u8; 16] {
    let [a, b, c, d] = words.map(u32::to_ne_bytes);
    [
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2],
        d[3],
    ]
}

/// The /64 of an IPv6 address, as wire bytes: the grain of the per-source
/// SYN level, and so of the SYN penalty's deny entries.
#[inline(always)]
pub fn v6_slash64_bytes(words: &[u32; 4]) -> [u8; 16] {
    let mut bytes = v6_bytes(words);
    bytes[8..].fill(0);
    bytes
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    /// The words the parser reads for `addr`: wire bytes in memory order.
    fn words(addr: Ipv6Addr) -> [u32; 4] {
        let o = addr.octets();
        core::array::from_fn(|i| {
            u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
        })
    }

    #[test]
    fn known_masks() {
        assert_eq!(mask(24, 32), 0xffff_ff00);
        assert_eq!(mask(48, 64), 0xffff_ffff_ffff_0000);
        assert_eq!(mask(0, 32), 0);
        assert_eq!(mask(40, 32), 0xffff_ffff);
        assert_eq!(mask(64, 64), u64::MAX);
    }

    proptest! {
        /// A mask keeps exactly the top `len` bits of the address's width.
        #[test]
        fn mask_keeps_the_top_bits(len in any::<u8>(), width in 1..=64u32, addr in any::<u64>()) {
            let m = mask(len, width);
            let kept = u32::from(len).min(width);
            prop_assert_eq!(m.count_ones(), kept);
            // Within the width, and contiguous from its top bit down.
            let width_bits = u64::MAX >> (64 - width);
            prop_assert_eq!(m & !width_bits, 0);
            prop_assert_eq!((m | !width_bits).leading_ones(), 64 - width + kept);
            // Two addresses share a prefix exactly when they agree on the kept bits.
            let addr = addr & width_bits;
            let flipped = addr ^ 1 << (width - kept.max(1));
            prop_assert_eq!(addr & m == flipped & m, kept == 0);
        }

        #[test]
        fn v4_number_is_the_address(octets in any::<[u8; 4]>()) {
            prop_assert_eq!(v4_number(u32::from_ne_bytes(octets)), u32::from(Ipv4Addr::from(octets)));
        }

        #[test]
        fn v6_forms_follow_the_wire(octets in any::<[u8; 16]>()) {
            let addr = Ipv6Addr::from(octets);
            prop_assert_eq!(v6_bytes(&words(addr)), octets);
            prop_assert_eq!(v6_top64(&words(addr)), (u128::from(addr) >> 64) as u64);
            let slash64 = v6_slash64_bytes(&words(addr));
            prop_assert_eq!(&slash64[..8], &octets[..8]);
            prop_assert_eq!(&slash64[8..], &[0; 8]);
        }
    }
}
