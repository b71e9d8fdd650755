//! DNS (docs/rules.md: "a response (QR bit set) passes only if it consumes a live
//! entry with the same addresses, ports and id"; "a query that merely comes
//! from port 53 (QR clear) is not a response and passes").
//!
//! The id and the flags are the first 4 bytes. A datagram of 4 to 11 bytes
//! is shorter than a DNS header and no resolver accepts it as an answer; it
//! is judged by its QR bit all the same (docs/rules.md, *Edges*).

/// What an inbound datagram from a DNS port is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    Response {
        id: u16,
    },
    Query,
    /// Shorter than the id and the flags.
    Short,
}

const QR: u8 = 0x80;

pub fn inbound(datagram: &[u8]) -> Inbound {
    match datagram {
        [a, b, flags, _, ..] if flags & QR != 0 => Inbound::Response {
            id: u16::from_be_bytes([*a, *b]),
        },
        [_, _, _, _, ..] => Inbound::Query,
        _ => Inbound::Short,
    }
}

/// The id egress records for an outgoing query (QR clear).
pub fn query_id(datagram: &[u8]) -> Option<u16> {
    match inbound(datagram) {
        Inbound::Query => Some(u16::from_be_bytes([datagram[0], datagram[1]])),
        _ => None,
    }
}

/// What a datagram to one of our DNS service ports is (docs/query-limits.md,
/// *What is limited*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Shorter than the 12-byte header: no server answers it.
    Short,
    /// QR set: not a request.
    Response,
    /// QR clear, whatever the opcode: a request, and how far it fits the
    /// slip reply.
    Query(Fit),
}

/// How far a query fits the slip reply (docs/query-limits.md, *The slip
/// reply*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Its header does not: no standard query (opcode QUERY) with exactly
    /// one question, no answer or authority records and at most one
    /// additional record.
    No,
    /// Its header does, the rest does not: the question is malformed (a
    /// compression pointer, a reserved label type, a name over 255 bytes,
    /// cut short), or what follows it is not what the header announces, the
    /// end of the message or one OPT record of EDNS version 0 ending it.
    /// (Monitor mode too counts these as drops: the filter walks the
    /// question before it decides.)
    Header,
    /// The whole message: the reply can be built.
    Message,
}

const HEADER_LEN: usize = 12;
/// The opcode, in the flags' high byte.
const OPCODE: u8 = 0x78;
/// A name with its root label is at most 255 bytes (RFC 1035).
const MAX_NAME: usize = 255;
/// An OPT record without options: root name, type, class, TTL, rdlength.
const OPT_LEN: usize = 11;
const TYPE_OPT: u16 = 41;

pub fn request(datagram: &[u8]) -> Request {
    let Some(header) = datagram.get(..HEADER_LEN) else {
        return Request::Short;
    };
    if header[2] & QR != 0 {
        return Request::Response;
    }
    let count = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let (questions, answers, authorities, additionals) = (count(4), count(6), count(8), count(10));
    if header[2] & OPCODE != 0
        || questions != 1
        || answers != 0
        || authorities != 0
        || additionals > 1
    {
        return Request::Query(Fit::No);
    }
    let fits = question_end(datagram).is_some_and(|end| {
        let rest = &datagram[end..];
        match additionals {
            0 => rest.is_empty(),
            _ => is_opt_v0(rest),
        }
    });
    Request::Query(if fits { Fit::Message } else { Fit::Header })
}

/// The first question's name and type (the name level's key, hashed), if
/// the header announces a question (any opcode) and it is well formed (see
/// [`question_end`]).
pub fn question(datagram: &[u8]) -> Option<&[u8]> {
    let questions = u16::from_be_bytes([*datagram.get(4)?, *datagram.get(5)?]);
    if questions == 0 {
        return None;
    }
    let end = question_end(datagram)?;
    datagram.get(HEADER_LEN..end - 2)
}

/// Where the question after the header ends, if it is well formed: a name
/// of ordinary labels (1 to 63 bytes), then type and class, inside the
/// datagram.
fn question_end(datagram: &[u8]) -> Option<usize> {
    let mut at = HEADER_LEN;
    loop {
        match *datagram.get(at)? {
            0 => break,
            len @ 1..=63 => at += 1 + usize::from(len),
            _ => return None,
        }
    }
    let name_end = at + 1;
    let end = name_end + 4;
    (name_end - HEADER_LEN <= MAX_NAME && end <= datagram.len()).then_some(end)
}

/// One OPT record of EDNS version 0 that ends the message (its rdata, the
/// options, ends the datagram).
fn is_opt_v0(record: &[u8]) -> bool {
    let Some(fixed) = record.get(..OPT_LEN) else {
        return false;
    };
    let rtype = u16::from_be_bytes([fixed[1], fixed[2]]);
    // The TTL field: extended rcode, version, flags.
    let version = fixed[6];
    let rdlength = usize::from(u16::from_be_bytes([fixed[9], fixed[10]]));
    fixed[0] == 0 && rtype == TYPE_OPT && version == 0 && OPT_LEN + rdlength == record.len()
}
