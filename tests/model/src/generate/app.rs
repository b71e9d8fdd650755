//! UDP payloads: valid and almost-valid DNS and NTP messages, and bytes.

use proptest::{collection::vec, prelude::*};

/// A DNS message: header (id, flags, counts) and filler, maybe cut short.
#[derive(Clone, Debug)]
pub struct Dns {
    pub id: u16,
    pub flags: u16,
    pub filler: u16,
    /// Keep only this many bytes (an almost-DNS datagram).
    pub cut: Option<u8>,
}

pub const QUERY_FLAGS: u16 = 0x0100;
pub const RESPONSE_FLAGS: u16 = 0x8180;
const QR: u16 = 0x8000;

pub fn dns() -> BoxedStrategy<Dns> {
    let flags = prop_oneof![Just(QUERY_FLAGS), Just(RESPONSE_FLAGS), any::<u16>(),];
    let cut = prop_oneof![4 => Just(None), 1 => (0..14u8).prop_map(Some)];
    (any::<u16>(), flags, prop_oneof![0..40u16, 0..1400u16], cut)
        .prop_map(|(id, flags, filler, cut)| Dns {
            id,
            flags,
            filler,
            cut,
        })
        .boxed()
}

impl Dns {
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(self.id.to_be_bytes());
        out.extend(self.flags.to_be_bytes());
        let response = self.flags & QR != 0;
        out.extend([0, 1, 0, u8::from(response), 0, 0, 0, 0]);
        out.extend(std::iter::repeat_n(0x61, usize::from(self.filler)));
        if let Some(cut) = self.cut {
            out.truncate(usize::from(cut));
        }
        out
    }
}

/// An NTP packet: first byte (leap, version, mode), origin and transmit
/// timestamps, and its length (48 for a plain header; shorter is
/// almost-NTP, longer carries extension fields or a MAC).
#[derive(Clone, Debug)]
pub struct Ntp {
    pub first: u8,
    pub origin: [u8; 8],
    pub transmit: [u8; 8],
    pub len: u8,
}

pub const fn first_byte(version: u8, mode: u8) -> u8 {
    version << 3 | mode
}

pub fn ntp() -> BoxedStrategy<Ntp> {
    let first = prop_oneof![
        (1..5u8, 0..8u8).prop_map(|(v, m)| first_byte(v, m)),
        any::<u8>(),
    ];
    let len = prop_oneof![6 => Just(48u8), 1 => 0..48u8, 1 => 48..=68u8];
    (first, any::<[u8; 8]>(), any::<[u8; 8]>(), len)
        .prop_map(|(first, origin, transmit, len)| Ntp {
            first,
            origin,
            transmit,
            len,
        })
        .boxed()
}

impl Ntp {
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; 48];
        out[0] = self.first;
        out[1] = 2; // stratum
        out[24..32].copy_from_slice(&self.origin);
        out[40..48].copy_from_slice(&self.transmit);
        out.resize(usize::from(self.len), 0x33);
        out
    }
}

/// A UDP payload.
#[derive(Clone, Debug)]
pub enum App {
    Bytes(Vec<u8>),
    Dns(Dns),
    Ntp(Ntp),
}

pub fn app() -> BoxedStrategy<App> {
    prop_oneof![
        vec(any::<u8>(), 0..64).prop_map(App::Bytes),
        dns().prop_map(App::Dns),
        ntp().prop_map(App::Ntp),
    ]
    .boxed()
}

impl App {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            App::Bytes(bytes) => bytes.clone(),
            App::Dns(dns) => dns.bytes(),
            App::Ntp(ntp) => ntp.bytes(),
        }
    }
}

/// A DNS query to one of our servers (docs/query-limits.md, *The slip
/// reply*): a question of ordinary labels, maybe an OPT record, and now and
/// then one flaw that keeps it from getting a reply, or makes it no query.
#[derive(Clone, Debug)]
pub struct DnsQuery {
    pub id: u16,
    /// RD, CD, AD, AA and Z as sent (QR and the opcode clear unless the
    /// flaw says otherwise).
    pub flags: u16,
    /// The question's label lengths (1 to 63).
    pub labels: Vec<u8>,
    /// Labels written in upper case: bit `i % 8` for label `i` (the name
    /// level keys on the name without case).
    pub upper: u8,
    pub qtype: u16,
    pub edns: Option<Edns>,
    pub flaw: Flaw,
}

/// An OPT record (RFC 6891).
#[derive(Clone, Copy, Debug)]
pub struct Edns {
    pub version: u8,
    pub dnssec_ok: bool,
    /// Bytes of options (its rdata).
    pub options: u8,
}

#[derive(Clone, Copy, Debug)]
pub enum Flaw {
    None,
    /// Another opcode (NOTIFY 4, UPDATE 5, ...): a request, never answered.
    Opcode(u8),
    /// QR set: a response, no request.
    Response,
    /// The header's counts: questions, answers, authorities, additionals.
    Counts(u16, u16, u16, u16),
    /// A compression pointer for the name.
    Pointer,
    /// A first label of a reserved type (length byte 0x40 to 0xbf).
    Reserved(u8),
    /// A name of this many bytes with its root label (255 at most is valid).
    NameLen(u16),
    /// Bytes after the message.
    Trailing(u8),
    /// The message cut to this many bytes.
    Cut(u16),
    /// The OPT record's rdlength off by this.
    OptLength(i8),
    /// The additional record is no OPT (type A).
    NotOpt,
    /// The OPT record's owner name is not the root.
    OptName,
}

pub fn dns_query() -> BoxedStrategy<DnsQuery> {
    let flaw = prop_oneof![
        24 => Just(Flaw::None),
        1 => prop_oneof![Just(4u8), Just(5), 1..16u8].prop_map(Flaw::Opcode),
        1 => Just(Flaw::Response),
        2 => (0..3u16, 0..2u16, 0..2u16, 0..3u16)
            .prop_map(|(q, an, ns, ar)| Flaw::Counts(q, an, ns, ar)),
        1 => Just(Flaw::Pointer),
        1 => any::<u8>().prop_map(Flaw::Reserved),
        2 => (250..262u16).prop_map(Flaw::NameLen),
        1 => (1..20u8).prop_map(Flaw::Trailing),
        2 => (0..60u16).prop_map(Flaw::Cut),
        1 => (-3..4i8).prop_map(Flaw::OptLength),
        1 => Just(Flaw::NotOpt),
        1 => Just(Flaw::OptName),
    ];
    let edns = (
        prop_oneof![6 => Just(0u8), 1 => any::<u8>()],
        any::<bool>(),
        prop_oneof![Just(0u8), Just(12), 0..40u8],
    )
        .prop_map(|(version, dnssec_ok, options)| Edns {
            version,
            dnssec_ok,
            options,
        });
    (
        any::<u16>(),
        prop_oneof![3 => Just(0x0100u16), 1 => any::<u16>()],
        (
            vec(prop_oneof![3 => 1..12u8, 1 => 1..64u8], 1..5),
            prop_oneof![3 => Just(0u8), 1 => any::<u8>()],
        ),
        prop_oneof![Just(1u16), Just(16), Just(28), any::<u16>()],
        prop_oneof![Just(None), edns.prop_map(Some)],
        flaw,
    )
        .prop_map(|(id, flags, (labels, upper), qtype, edns, flaw)| DnsQuery {
            id,
            flags: flags & !(QR | 0x7800),
            labels,
            upper,
            qtype,
            edns,
            flaw,
        })
        .boxed()
}

impl DnsQuery {
    pub fn bytes(&self) -> Vec<u8> {
        let mut flags = self.flags;
        match self.flaw {
            Flaw::Opcode(opcode) => flags |= u16::from(opcode & 0xf) << 11,
            Flaw::Response => flags |= QR,
            _ => {}
        }
        let additionals = u16::from(self.edns.is_some());
        let (questions, answers, authorities, additionals) = match self.flaw {
            Flaw::Counts(q, an, ns, ar) => (q, an, ns, ar),
            _ => (1, 0, 0, additionals),
        };
        let mut out = Vec::new();
        out.extend(self.id.to_be_bytes());
        out.extend(flags.to_be_bytes());
        for count in [questions, answers, authorities, additionals] {
            out.extend(count.to_be_bytes());
        }
        let labels = match self.flaw {
            Flaw::NameLen(len) => labels_of(len),
            _ => self.labels.clone(),
        };
        match self.flaw {
            Flaw::Pointer => out.extend([0xc0, 0x0c]),
            flaw => {
                for (i, &len) in labels.iter().enumerate() {
                    let first = match flaw {
                        Flaw::Reserved(x) if i == 0 => 0x40 + x % 0x80,
                        _ => len.min(63),
                    };
                    out.push(first);
                    let letter = b'a' + (i % 26) as u8;
                    let letter = if self.upper & 1 << (i % 8) != 0 {
                        letter.to_ascii_uppercase()
                    } else {
                        letter
                    };
                    out.extend(std::iter::repeat_n(letter, usize::from(len)));
                }
                out.push(0);
            }
        }
        out.extend(self.qtype.to_be_bytes());
        out.extend(1u16.to_be_bytes());
        if let Some(edns) = self.edns {
            match self.flaw {
                Flaw::OptName => out.extend([1, b'x', 0]),
                _ => out.push(0),
            }
            let rtype: u16 = match self.flaw {
                Flaw::NotOpt => 1,
                _ => 41,
            };
            out.extend(rtype.to_be_bytes());
            out.extend(4096u16.to_be_bytes());
            out.extend([0, edns.version]);
            out.extend(if edns.dnssec_ok { 0x8000u16 } else { 0 }.to_be_bytes());
            let rdlength = match self.flaw {
                Flaw::OptLength(delta) => i32::from(edns.options) + i32::from(delta),
                _ => i32::from(edns.options),
            };
            out.extend((rdlength.max(0) as u16).to_be_bytes());
            out.extend((0..edns.options).map(|i| i.wrapping_mul(7)));
        }
        match self.flaw {
            Flaw::Trailing(n) => out.extend(std::iter::repeat_n(0x55, usize::from(n))),
            Flaw::Cut(n) => out.truncate(usize::from(n)),
            _ => {}
        }
        out
    }
}

/// Label lengths making a name of `len` bytes with its root label.
fn labels_of(len: u16) -> Vec<u8> {
    // Every label takes its length and a byte; the root one more.
    let mut rest = usize::from(len).saturating_sub(1);
    let mut labels = Vec::new();
    while rest > 64 {
        labels.push(63);
        rest -= 64;
    }
    match rest {
        0 => {}
        1 => {
            // No room for a label: make the last one shorter, add one of 1.
            if let Some(last) = labels.last_mut() {
                *last -= 1;
            }
            labels.push(1);
        }
        n => labels.push((n - 1) as u8),
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_exact_length() {
        for len in 3..300u16 {
            let name: usize = labels_of(len).iter().map(|&l| 1 + usize::from(l)).sum();
            assert_eq!(name + 1, usize::from(len), "{len}");
            assert!(labels_of(len).iter().all(|&l| (1..=63).contains(&l)));
        }
    }
}
