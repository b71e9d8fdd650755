//! Internet checksums (RFC 1071) of the packets the ingress program sends
//! back (the DNS slip reply): sums of 16-bit big-endian words, carried into
//! a wide accumulator and folded at the end.

/// Folds a sum of 16-bit words into 16 bits (end-around carry), whatever
/// its size.
#[inline(always)]
pub const fn fold(sum: u64) -> u16 {
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    ((sum & 0xffff) + (sum >> 16)) as u16
}

/// The checksum field of a header whose words (checksum field 0) sum to `sum`.
#[inline(always)]
pub const fn ip(sum: u64) -> u16 {
    !fold(sum)
}

/// The UDP checksum field for a sum over the pseudo-header, the header
/// (checksum 0) and the payload: a computed 0 is sent as 0xffff, since 0
/// means "no checksum" (RFC 768), which IPv6 does not allow.
#[inline(always)]
pub const fn udp(sum: u64) -> u16 {
    match !fold(sum) {
        0 => 0xffff,
        checksum => checksum,
    }
}

/// The sum of the 16-bit words of `words` as read from the wire (wire bytes
/// in memory order, as the parser holds addresses and headers).
#[inline(always)]
pub fn wire_sum(words: &[u32]) -> u64 {
    let mut sum = 0;
    for &word in words {
        let word = u32::from_be(word);
        sum += u64::from(word >> 16) + u64::from(word & 0xffff);
    }
    sum
}

/// The same for 64-bit words as read from the wire.
#[inline(always)]
pub fn wire_sum64(words: &[u64]) -> u64 {
    let mut sum = 0;
    for &word in words {
        let word = u64::from_be(word);
        sum += (word >> 48) + (word >> 32 & 0xffff) + (word >> 16 & 0xffff) + (word & 0xffff);
    }
    sum
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    /// RFC 1071's reference: the one's complement of the one's complement
    /// sum, carries folded after every word.
    fn reference(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            let word = u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
            sum += word;
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn words(bytes: &[u8]) -> u64 {
        bytes
            .chunks(2)
            .map(|pair| u64::from(pair[0]) << 8 | u64::from(*pair.get(1).unwrap_or(&0)))
            .sum()
    }

    /// RFC 1071's example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
    #[test]
    fn the_rfc_example() {
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(words(&bytes)), 0xddf2);
        assert_eq!(ip(words(&bytes)), !0xddf2);
    }

    #[test]
    fn a_zero_udp_checksum_is_sent_as_all_ones() {
        assert_eq!(udp(0xffff), 0xffff);
        assert_eq!(ip(0xffff), 0);
    }

    #[test]
    fn wire_words_sum_as_big_endian_pairs() {
        let v4 = [u32::from_ne_bytes([192, 0, 2, 1])];
        assert_eq!(wire_sum(&v4), 0xc000 + 0x0201);
        let v6 = [
            u32::from_ne_bytes([0x20, 0x01, 0x0d, 0xb8]),
            0,
            0,
            u32::from_ne_bytes([0, 0, 0, 1]),
        ];
        assert_eq!(wire_sum(&v6), 0x2001 + 0x0db8 + 1);
        assert_eq!(wire_sum(&v6[..1]), 0x2001 + 0x0db8);
        let v6_64 = [
            u64::from_ne_bytes([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0]),
            u64::from_ne_bytes([0, 0, 0, 0, 0, 0, 0, 1]),
        ];
        assert_eq!(wire_sum64(&v6_64), wire_sum(&v6));
    }

    proptest! {
        /// The wide sum folded at the end equals RFC 1071's, for any bytes.
        #[test]
        fn folding_at_the_end_is_the_reference(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(ip(words(&bytes)), reference(&bytes));
        }

        /// A header with its checksum filled in sums to all ones.
        #[test]
        fn a_checksummed_header_verifies(mut bytes in proptest::collection::vec(any::<u8>(), 20..=20)) {
            bytes[10] = 0;
            bytes[11] = 0;
            let checksum = ip(words(&bytes));
            bytes[10..12].copy_from_slice(&checksum.to_be_bytes());
            prop_assert_eq!(fold(words(&bytes)), 0xffff);
            let as_words: Vec<u64> = std::vec![words(&bytes)];
            prop_assert_eq!(reference(&bytes), 0, "{:?}", as_words);
        }
    }
}
