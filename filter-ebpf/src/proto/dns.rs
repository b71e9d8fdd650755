//! What an inbound DNS packet is: a response (matched by transaction id) or
//! a query that merely comes from port 53 (some resolvers query from 53);
//! for a request to our DNS server, its header, its question (the name
//! level's key, and where it ends for the slip reply) and OPT record (the
//! rules are filter_common::dns).

use filter_common::dns::{
    self, HEADER_LEN, Header, Label, MAX_NAME_AND_TYPE, MAX_QUESTION_LEN, OPT_LEN,
    QUESTION_END_MASK, QuestionHash, TYPE_OPT,
};

use crate::{
    kernel,
    packet::{MAX_L4_OFFSET, Packet, UDP_HDR_LEN, Udp},
};

pub enum Response {
    /// A response; the token is its transaction id.
    Token(u64),
    /// A query (QR bit clear): not subject to the reflection rule.
    Query,
    /// Too short to hold a DNS header's id and flags.
    Malformed,
}

/// The QR bit of the flags: set in responses.
const FLAG_RESPONSE: u16 = 0x8000;

/// The DNS header starts the UDP payload: id (2 bytes), flags (2 bytes).
#[inline(always)]
pub fn response_token(packet: &Packet, udp: &Udp) -> Response {
    match id_flags(packet, udp) {
        Some((id, flags)) if flags & FLAG_RESPONSE != 0 => Response::Token(u64::from(id)),
        Some(_) => Response::Query,
        None => Response::Malformed,
    }
}

/// The token egress records for a query: its transaction id, if it is a query.
#[inline(always)]
pub fn query_token(packet: &Packet, udp: &Udp) -> Option<u64> {
    match id_flags(packet, udp) {
        Some((id, flags)) if flags & FLAG_RESPONSE == 0 => Some(u64::from(id)),
        _ => None,
    }
}

/// The id and flags, if the datagram holds them (bytes past its end, such
/// as Ethernet padding, are not its content).
#[inline(always)]
fn id_flags(packet: &Packet, udp: &Udp) -> Option<(u16, u16)> {
    if udp.readable < 4 {
        return None;
    }
    let id_flags = packet.be32_at(udp.payload)?;
    Some(((id_flags >> 16) as u16, id_flags as u16))
}

/// A UDP datagram to a DNS service port.
pub enum Request {
    /// A request (QR clear), with its header.
    Query(Header),
    /// A response (QR set): not a request, left to the reflection defence.
    Response,
    /// Shorter than a DNS header: no DNS server answers it.
    Short,
}

#[inline(always)]
pub fn request(packet: &Packet, udp: &Udp) -> Request {
    if udp.readable < HEADER_LEN {
        return Request::Short;
    }
    // Masked where it is read: Linux 6.1 learns nothing from a bounds check
    // on an offset that may pass 16 bits, and in `wan_request` LLVM reloads
    // the payload's offset from where it was spilled before the dispatcher's
    // check (no UDP payload starts past MAX_PAYLOAD, under 0x3ff).
    let payload = kernel::through_memory(udp.payload) & 0x3ff;
    let Some(h) = packet.header::<HEADER_LEN>(payload) else {
        return Request::Short;
    };
    let header = Header {
        id: u16::from_be(h.get::<u16, 0>()),
        flags: u16::from_be(h.get::<u16, 2>()),
        questions: u16::from_be(h.get::<u16, 4>()),
        answers: u16::from_be(h.get::<u16, 6>()),
        authorities: u16::from_be(h.get::<u16, 8>()),
        additionals: u16::from_be(h.get::<u16, 10>()),
    };
    if header.flags & FLAG_RESPONSE != 0 {
        Request::Response
    } else {
        Request::Query(header)
    }
}

/// Labels of a name of at most 255 bytes: at most 127 of one byte.
const MAX_LABELS: usize = 128;

/// The end of the question that starts at `start` (a name of ordinary
/// labels, then type and class), if it lies within `end` and is well formed.
#[inline(always)]
pub fn question_end(packet: &Packet, start: usize, end: usize) -> Option<usize> {
    // The walk is relative to the start, so the verifier sees a bounded offset.
    let mut name_len = 0;
    for _ in 0..MAX_LABELS {
        // The length byte, read with the next one: the type follows the name.
        let first = (packet.be16_at(start + name_len)? >> 8) as u8;
        match dns::label(first) {
            Label::End => {
                let question_len = name_len + 1 + 4;
                let question_end = start + question_len;
                return (question_len <= MAX_QUESTION_LEN && question_end <= end)
                    .then_some(question_end);
            }
            Label::Len(len) => name_len += 1 + len,
            Label::Invalid => return None,
        }
        if name_len >= MAX_QUESTION_LEN - 4 {
            return None;
        }
    }
    None
}

/// The first question of a query, read once: the name level's key and,
/// for the slip reply, where it ends.
pub struct Question {
    /// The end of the question (after type and class).
    pub end: usize,
    /// Its name (case folded) and type hashed with `seed`
    /// (filter_common::dns::QuestionHash).
    pub key: u64,
}

impl Question {
    /// Key and end in one number, as `wan_dns_question` returns them (the
    /// key's low bits are clear, the end fits in them); 0 for no question.
    #[inline(always)]
    pub fn packed(question: Option<Question>) -> u64 {
        question.map_or(0, |question| question.key | question.end as u64)
    }

    #[inline(always)]
    pub fn unpacked(packed: u64) -> Option<Question> {
        let end = (packed & QUESTION_END_MASK) as usize;
        (end != 0).then_some(Question {
            end,
            key: packed & !QUESTION_END_MASK,
        })
    }
}

/// Eight-byte chunks of the longest name and type, but the last.
const MAX_CHUNKS: usize = MAX_NAME_AND_TYPE / 8;

/// The deepest start of a DNS message (the deepest UDP header's end).
const MAX_PAYLOAD: usize = MAX_L4_OFFSET + UDP_HDR_LEN;

/// The first question of a query whose message starts at `payload` and
/// ends at `end`, if it is well formed (ordinary labels, within the
/// datagram). The body of `wan_dns_question`: the caller checked that the
/// header announces a question.
#[inline(always)]
pub fn question(packet: &Packet, payload: usize, end: usize, seed: u64) -> Option<Question> {
    // The function's arguments are any numbers to the verifier.
    if payload > MAX_PAYLOAD {
        return None;
    }
    let start = payload + HEADER_LEN;
    let question_end = question_end(packet, start, end)?;
    // The verifier walks the label loop once per label count, and each
    // exit is a path of its own with its own bounds on the end: without
    // this, it walked the hash and every rule after it once per exit, past
    // its million instructions. A 16-bit load of the end is all it knows
    // here (as reply.rs reads its plan back), so the exits meet again. The
    // mask is wider than any end (the deepest UDP header, 8 + 12 bytes and
    // a question of 259: under 800).
    let question_end = usize::from(kernel::through_memory(question_end as u16)) & 0x3ff;
    if question_end < start + 5 || question_end > end {
        return None;
    }
    // Name and type: the class is not part of the key.
    let len = question_end - start - 2;
    if len > MAX_NAME_AND_TYPE {
        return None;
    }
    let mut hash = QuestionHash::new(len, seed);
    // Nothing the loop leaves behind is read after it (the bytes left come
    // from `len`), so the verifier's walk of what follows meets again
    // whichever chunk the loop stopped at, instead of once per chunk count.
    let full_chunks = len / 8;
    for chunk in 0..MAX_CHUNKS {
        if chunk >= full_chunks {
            break;
        }
        hash.push(u64::from_be(packet.read(start + chunk * 8)?));
    }
    let left = len % 8;
    if left != 0 {
        // The last chunk ends with the type (at start + len - 8, at least
        // 3 bytes into the 12-byte header); what it holds before the bytes
        // left (hashed already, or the header's) is masked off. The offset
        // is masked through memory: LLVM folds the sum into one that
        // subtracts, which the verifier takes for possibly negative (the
        // mask is wider than any end, as above).
        let last = kernel::through_memory(payload + HEADER_LEN - 8 + len) & 0x3ff;
        hash.push_last(u64::from_be(packet.read(last)?), left);
    }
    Some(Question {
        end: question_end,
        key: hash.finish(),
    })
}

/// The OPT record at `at` that must end the message at `end`: its TTL field
/// (extended rcode, version, flags), or `None` if it is not one.
#[inline(always)]
pub fn opt_ttl(packet: &Packet, at: usize, end: usize) -> Option<u32> {
    let opt = packet.header::<OPT_LEN>(at)?;
    let name: u8 = opt.get::<u8, 0>();
    let rtype = u16::from_be(opt.get::<u16, 1>());
    let ttl = u32::from_be(opt.get::<u32, 5>());
    let rdlength = usize::from(u16::from_be(opt.get::<u16, 9>()));
    (name == 0 && rtype == TYPE_OPT && at + OPT_LEN + rdlength == end).then_some(ttl)
}
