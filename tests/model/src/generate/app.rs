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
