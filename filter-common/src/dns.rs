//! The DNS fields of the slip reply (a truncated answer built in XDP, see
//! [`crate::query`]): which queries get one and what its header and OPT
//! record say. The program reads and writes the bytes; the choices are here,
//! tested on the host (and the whole reply against an independent DNS
//! parser in tests/tests/query.rs).
//!
//! A slip reply is the query cut after its question, made a response:
//! - same id and question; QR and TC set; opcode, AA, RD and CD copied from
//!   the query (RFC 1035: RD is copied; a query's AA is clear, so the reply
//!   claims no authority for data it does not carry; RFC 6840 5.9: CD is
//!   copied); RA, AD and the rcode clear (NOERROR);
//! - no answer or authority records;
//! - EDNS (RFC 6891): if the query had an OPT record, the reply has one:
//!   our UDP payload size ([`REPLY_UDP_PAYLOAD`]), extended rcode and
//!   version 0, the DO bit copied (RFC 3225), no options (a server need not
//!   echo cookies or client subnets, and a resolver that gets TC retries over
//!   TCP, where the real server answers with everything). A query of another
//!   EDNS version would need BADVERS, and a query with other additional
//!   records (TSIG, SIG(0)) a signed reply: neither gets a slip reply.
//!
//! Only a standard query (opcode QUERY) with one question and nothing in
//! the answer and authority sections, at most an OPT record in the
//! additional section, gets one; other requests over the limit are dropped.
//! The reply is never longer than the query: its OPT has no options, and the
//! query's was at least as long.

/// The DNS header: id, flags, then the four section counts.
pub const HEADER_LEN: usize = 12;
/// An OPT record without options: root name (1), type (2), class (2), TTL (4),
/// rdata length (2).
pub const OPT_LEN: usize = 11;
/// The longest question: a name of at most 255 bytes, type and class.
pub const MAX_QUESTION_LEN: usize = 255 + 4;
/// The longest slip reply's DNS message.
pub const MAX_REPLY_LEN: usize = HEADER_LEN + MAX_QUESTION_LEN + OPT_LEN;
/// The OPT record's type.
pub const TYPE_OPT: u16 = 41;
/// The UDP payload size our OPT advertises: the DNS Flag Day 2020 value, the
/// default of current servers.
pub const REPLY_UDP_PAYLOAD: u16 = 1232;

pub const FLAG_QR: u16 = 0x8000;
const OPCODE: u16 = 0x7800;
pub const FLAG_AA: u16 = 0x0400;
pub const FLAG_TC: u16 = 0x0200;
pub const FLAG_RD: u16 = 0x0100;
pub const FLAG_CD: u16 = 0x0010;
/// The DO bit in the OPT record's TTL field (its low 16 bits are the flags).
pub const OPT_DO: u32 = 0x8000;

/// The header of a query, as read from the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub questions: u16,
    pub answers: u16,
    pub authorities: u16,
    pub additionals: u16,
}

/// What follows the question of a query that can get a slip reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Additional {
    /// Nothing: the question ends the message.
    Nothing,
    /// One record, which must be an OPT record of EDNS version 0.
    Opt,
}

impl Header {
    /// Whether this query's shape allows a slip reply, and what must follow
    /// its question; `None`: it is dropped when over the limit.
    #[inline(always)]
    pub fn slip_shape(&self) -> Option<Additional> {
        if self.flags & (FLAG_QR | OPCODE) != 0
            || self.questions != 1
            || self.answers != 0
            || self.authorities != 0
        {
            return None;
        }
        match self.additionals {
            0 => Some(Additional::Nothing),
            1 => Some(Additional::Opt),
            _ => None,
        }
    }

    /// The reply's flags: see the module documentation.
    #[inline(always)]
    pub fn reply_flags(&self) -> u16 {
        FLAG_QR | FLAG_TC | (self.flags & (OPCODE | FLAG_AA | FLAG_RD | FLAG_CD))
    }
}

/// The reply OPT record's TTL field (extended rcode, version, flags) for a
/// query OPT whose TTL field is `query_ttl`: the DO bit copied, the rest 0.
/// `None` for a query of an EDNS version other than 0.
#[inline(always)]
pub fn reply_opt_ttl(query_ttl: u32) -> Option<u32> {
    let version = (query_ttl >> 16) & 0xff;
    if version != 0 {
        return None;
    }
    Some(query_ttl & OPT_DO)
}

/// The DNS message length of a slip reply whose question is `question_len`
/// bytes long.
#[inline(always)]
pub const fn reply_len(question_len: usize, additional: Additional) -> usize {
    HEADER_LEN
        + question_len
        + match additional {
            Additional::Nothing => 0,
            Additional::Opt => OPT_LEN,
        }
}

/// What a label's first byte says: the length of an ordinary label (1..=63),
/// the end of the name (0), or something a query's question does not carry
/// (a compression pointer or a reserved label type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    End,
    Len(usize),
    Invalid,
}

#[inline(always)]
pub fn label(first: u8) -> Label {
    match first {
        0 => Label::End,
        1..=63 => Label::Len(usize::from(first)),
        _ => Label::Invalid,
    }
}

/// The ASCII letters of eight name bytes (big-endian) made lower case, every
/// other byte as it is: names are compared without case (RFC 4343), and
/// resolvers send random case on purpose (0x20 encoding), so a name's
/// bucket must not depend on it. SWAR: per byte, on the low seven bits,
/// `+ 0x3f` carries into the top bit from 'A' up, `+ 0x25` from '['
/// (past 'Z') up; bytes with the top bit set are no letters.
#[inline(always)]
pub const fn fold_case(chunk: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const TOP: u64 = 0x8080_8080_8080_8080;
    let low = chunk & LOW7;
    let from_a = low + 0x3f3f_3f3f_3f3f_3f3f;
    let past_z = low + 0x2525_2525_2525_2525;
    let upper = from_a & !past_z & !chunk & TOP;
    chunk | upper >> 2
}

/// Odd constants of [`QuestionHash`].
const QUESTION_MUL: u64 = 0x9e37_79b9_7f4a_7c15;
const QUESTION_LEN_MUL: u64 = 0xd6e8_feb8_6659_fd93;

/// The hash of a question's name (wire form, case folded) and type: the
/// key of the DNS name level of the query limits (with the client's prefix,
/// [`crate::query::name_slot`]). Fed eight bytes at a time from the start
/// of the name; the bytes left over (fewer than eight) go in last, as the
/// big-endian number of those bytes. The length goes in first, so that no
/// two lengths share a sequence of chunks; the seed (the per-attach secret)
/// too, so that which names share a slot is unknown outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuestionHash(u64);

impl QuestionHash {
    /// For a name and type of `len` bytes.
    #[inline(always)]
    pub const fn new(len: usize, seed: u64) -> QuestionHash {
        QuestionHash(seed ^ (len as u64).wrapping_mul(QUESTION_LEN_MUL))
    }

    /// The next eight bytes, big-endian.
    #[inline(always)]
    pub fn push(&mut self, chunk: u64) {
        let h = (self.0 ^ fold_case(chunk)).wrapping_mul(QUESTION_MUL);
        self.0 = h ^ h >> 29;
    }

    /// The last `left` bytes (1 to 7) of `chunk`, eight bytes read so that
    /// they end where the name and type end.
    #[inline(always)]
    pub fn push_last(&mut self, chunk: u64, left: usize) {
        let mask = (1u64 << ((left & 7) * 8)).wrapping_sub(1);
        self.push(chunk & mask);
    }

    /// The key: the hash without its low [`QUESTION_END_BITS`], where the
    /// program's question function hands on where the question ends.
    #[inline(always)]
    pub const fn finish(self) -> u64 {
        self.0 & !QUESTION_END_MASK
    }
}

/// Low bits of a question's key left clear ([`QuestionHash::finish`]): the
/// program returns the key and the question's end in one number, and every
/// end (under 800, see the program's proto/dns.rs) fits in them.
pub const QUESTION_END_BITS: u32 = 10;
pub const QUESTION_END_MASK: u64 = (1 << QUESTION_END_BITS) - 1;

/// [`QuestionHash`] of a name and type given as bytes (what the program
/// computes from the packet; the model and the tests call this).
pub fn question_hash(name_and_type: &[u8], seed: u64) -> u64 {
    let mut hash = QuestionHash::new(name_and_type.len(), seed);
    let (chunks, rest) = name_and_type.as_chunks::<8>();
    for chunk in chunks {
        hash.push(u64::from_be_bytes(*chunk));
    }
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[8 - rest.len()..].copy_from_slice(rest);
        hash.push_last(u64::from_be_bytes(last), rest.len());
    }
    hash.finish()
}

/// Name bytes and the type of the longest question: a name of 255 bytes.
pub const MAX_NAME_AND_TYPE: usize = 255 + 2;

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    fn query(flags: u16, counts: [u16; 4]) -> Header {
        let [questions, answers, authorities, additionals] = counts;
        Header {
            id: 0x1234,
            flags,
            questions,
            answers,
            authorities,
            additionals,
        }
    }

    #[test]
    fn only_standard_queries_with_one_question_slip() {
        assert_eq!(
            query(0x0100, [1, 0, 0, 0]).slip_shape(),
            Some(Additional::Nothing)
        );
        assert_eq!(
            query(0x0100, [1, 0, 0, 1]).slip_shape(),
            Some(Additional::Opt)
        );
        for (flags, counts) in [
            (0x8100, [1, 0, 0, 0]), // a response
            (0x2800, [1, 0, 0, 0]), // UPDATE
            (0x2000, [1, 0, 0, 0]), // NOTIFY
            (0x0800, [1, 0, 0, 0]), // IQUERY
            (0x0100, [0, 0, 0, 0]), // no question
            (0x0100, [2, 0, 0, 0]), // two questions
            (0x0100, [1, 1, 0, 0]),
            (0x0100, [1, 0, 1, 0]),
            (0x0100, [1, 0, 0, 2]), // OPT and TSIG
        ] {
            assert_eq!(
                query(flags, counts).slip_shape(),
                None,
                "{flags:#x} {counts:?}"
            );
        }
    }

    #[test]
    fn reply_flags_set_qr_tc_and_copy_aa_rd_cd() {
        // RD only (a stub's query): QR TC RD.
        assert_eq!(query(0x0100, [1, 0, 0, 0]).reply_flags(), 0x8300);
        // A resolver's query: RD clear, CD set.
        assert_eq!(query(0x0010, [1, 0, 0, 1]).reply_flags(), 0x8210);
        // Every bit set: RA, Z, AD and the rcode are cleared, TC set.
        assert_eq!(query(0x07ff, [1, 0, 0, 0]).reply_flags(), 0x8710);
    }

    #[test]
    fn the_opt_keeps_only_do_of_version_0() {
        assert_eq!(reply_opt_ttl(0x0000_8000), Some(OPT_DO));
        assert_eq!(reply_opt_ttl(0x0000_0000), Some(0));
        // Extended rcode and the Z flags are not echoed.
        assert_eq!(reply_opt_ttl(0x7f00_ffff), Some(OPT_DO));
        assert_eq!(reply_opt_ttl(0x0001_8000), None, "EDNS version 1");
    }

    #[test]
    fn reply_lengths() {
        assert_eq!(reply_len(17, Additional::Nothing), 29);
        assert_eq!(reply_len(17, Additional::Opt), 40);
        assert_eq!(reply_len(MAX_QUESTION_LEN, Additional::Opt), MAX_REPLY_LEN);
    }

    #[test]
    fn labels() {
        assert_eq!(label(0), Label::End);
        assert_eq!(label(7), Label::Len(7));
        assert_eq!(label(63), Label::Len(63));
        assert_eq!(label(64), Label::Invalid);
        assert_eq!(label(0xc0), Label::Invalid, "a compression pointer");
    }

    #[test]
    fn known_folds() {
        let fold = |bytes: &[u8; 8]| fold_case(u64::from_be_bytes(*bytes)).to_be_bytes();
        assert_eq!(&fold(b"\x03WwW\x04Ex."), b"\x03www\x04ex.");
        assert_eq!(&fold(b"@AZ[`az{"), b"@az[`az{");
        assert_eq!(
            &fold(&[0xc1, 0xda, 0x41, 0x5a, 0x80, 0xff, 0, 0x3f]),
            &[0xc1, 0xda, 0x61, 0x7a, 0x80, 0xff, 0, 0x3f]
        );
    }

    #[test]
    fn the_leftover_bytes_are_the_last_ones_read() {
        // The program reads the last chunk ending at the type; the bytes
        // before the leftover ones (already hashed, or the header) never count.
        let question = b"\x07example\x03com\x00\x00\x01";
        let mut hash = QuestionHash::new(question.len(), 9);
        hash.push(u64::from_be_bytes(question[..8].try_into().unwrap()));
        let last = u64::from_be_bytes(question[question.len() - 8..].try_into().unwrap());
        hash.push_last(last, question.len() - 8);
        assert_eq!(hash.finish(), question_hash(question, 9));
        let mut short = QuestionHash::new(3, 9);
        short.push_last(u64::from_be_bytes(*b"\xff\xff\xff\xff\xff\x00\x00\x10"), 3);
        assert_eq!(short.finish(), question_hash(b"\x00\x00\x10", 9));
    }

    proptest::proptest! {
        #[test]
        fn fold_case_is_ascii_lowercase(bytes in proptest::prelude::any::<[u8; 8]>()) {
            let folded = fold_case(u64::from_be_bytes(bytes)).to_be_bytes();
            proptest::prop_assert_eq!(folded, bytes.map(|b| b.to_ascii_lowercase()));
        }

        /// Case never moves a question; any other change of a byte, the
        /// length or the seed does (but for a collision of 64-bit hashes).
        #[test]
        fn the_hash_ignores_case_only(
            question in proptest::collection::vec(proptest::prelude::any::<u8>(), 3..=MAX_NAME_AND_TYPE),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            other in proptest::prelude::any::<u8>(),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let upper: std::vec::Vec<u8> = question.iter().map(u8::to_ascii_uppercase).collect();
            proptest::prop_assert_eq!(question_hash(&question, seed), question_hash(&upper, seed));
            let i = at.index(question.len());
            let mut changed = question.clone();
            changed[i] = other;
            let same = changed[i].eq_ignore_ascii_case(&question[i]);
            proptest::prop_assert_eq!(question_hash(&changed, seed) == question_hash(&question, seed), same);
            let longer: std::vec::Vec<u8> = [&[0u8][..], &question].concat();
            proptest::prop_assert_ne!(question_hash(&longer, seed), question_hash(&question, seed));
            proptest::prop_assert_ne!(question_hash(&question, seed ^ 1), question_hash(&question, seed));
        }
    }
}
