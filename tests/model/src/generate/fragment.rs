//! IP fragmentation of a generated packet: fragments of chosen sizes, sent
//! in order or not, with one missing, repeated or damaged; for IPv6 with
//! headers before the fragment header (repeated in every fragment) and
//! after it (in the first fragment only, as RFC 8200 prescribes).

use std::net::IpAddr;

use harness::packet::{ExtHeader, PacketBuilder};
use proptest::{collection::vec, prelude::*};

use super::net::{Ext, Look, Mangle, fragmentable_ext, mangle};

#[derive(Clone, Debug)]
pub struct FragPlan {
    pub id: u32,
    /// Sizes in 8-byte units: the first fragment's payload, then each next.
    pub first_words: u8,
    pub rest_words: u8,
    /// Sort keys of the fragments; empty: in order.
    pub order: Vec<u8>,
    pub omit: Option<u8>,
    pub repeat: Option<u8>,
    /// IPv6: headers after the fragment header (destination options, AH).
    pub after: Vec<Ext>,
    pub damaged: Option<(u8, Mangle)>,
}

pub fn frag_plan() -> BoxedStrategy<FragPlan> {
    (
        any::<u32>(),
        prop_oneof![1..4u8, 1..40u8],
        prop_oneof![1..4u8, 1..40u8],
        prop_oneof![2 => Just(vec![]), 1 => vec(any::<u8>(), 8)],
        prop_oneof![3 => Just(None), 1 => any::<u8>().prop_map(Some)],
        prop_oneof![3 => Just(None), 1 => any::<u8>().prop_map(Some)],
        prop_oneof![2 => Just(vec![]), 1 => vec(fragmentable_ext(), 1..3)],
        prop_oneof![3 => Just(None), 1 => (any::<u8>(), mangle()).prop_map(Some)],
    )
        .prop_map(
            |(id, first_words, rest_words, order, omit, repeat, after, damaged)| FragPlan {
                id,
                first_words,
                rest_words,
                order,
                omit,
                repeat,
                after,
                damaged,
            },
        )
        .boxed()
}

/// The fragments of the packet `transport` makes of a builder from `src` to
/// `dst`, in the order they are sent, each carried as the look says (in a
/// tunnel, whose outer datagram may be fragmented in turn). `upper` is the
/// transport's protocol.
pub fn fragments(
    plan: &FragPlan,
    look: &Look,
    src: IpAddr,
    dst: IpAddr,
    upper: u8,
    transport: impl Fn(PacketBuilder) -> PacketBuilder,
) -> Vec<Vec<u8>> {
    let base = look.ip.builder(look.inner_link(), src, dst);
    let v6 = src.is_ipv6();
    let inbound = super::net::is_local(dst);
    let after: &[Ext] = if v6 { &plan.after } else { &[] };
    let whole = transport(after.iter().fold(base.clone(), |b, e| b.ext(e.header()))).build();
    // Where the fragmentable part starts, and what follows the fragment header.
    let (start, protocol) = if v6 {
        (
            base.clone().build().len(),
            after.first().map_or(upper, Ext::protocol),
        )
    } else {
        (whole.l3 + usize::from(whole[whole.l3] & 0x0f) * 4, upper)
    };
    let chunks = plan.chunks(&whole.bytes[start..]);
    let frames: Vec<Vec<Vec<u8>>> = chunks
        .iter()
        .enumerate()
        .map(|(i, &(words, more, chunk))| {
            let builder = if v6 {
                base.clone().ext(ExtHeader::Fragment {
                    offset: words,
                    more,
                    id: plan.id,
                })
            } else {
                base.clone().fragment(plan.id as u16, more, words)
            };
            let frame = builder.protocol(protocol).payload(chunk).build();
            let bytes = match plan.damaged {
                Some((which, mangle)) if usize::from(which) % chunks.len() == i => {
                    mangle.apply(&frame)
                }
                _ => frame.bytes,
            };
            look.carry(bytes, v6, inbound)
        })
        .collect();
    plan.sent(frames).into_iter().flatten().collect()
}

impl FragPlan {
    /// `body` (the fragmentable part of a datagram) cut as the plan says:
    /// each chunk with its offset in 8-byte units and its more-fragments
    /// flag. A body too short to split is sent as a first fragment alone.
    pub fn chunks<'b>(&self, body: &'b [u8]) -> Vec<(u16, bool, &'b [u8])> {
        let first = (8 * usize::from(self.first_words))
            .min(body.len().saturating_sub(1) / 8 * 8)
            .max(8);
        let rest = 8 * usize::from(self.rest_words);
        let mut chunks = vec![(0, &body[..first.min(body.len())])];
        let mut at = first;
        while at < body.len() {
            let end = (at + rest).min(body.len());
            chunks.push((at, &body[at..end]));
            at = end;
        }
        let count = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, (offset, chunk))| ((offset / 8) as u16, i + 1 < count || count == 1, chunk))
            .collect()
    }

    /// The fragments in the order they are sent: reordered, one repeated,
    /// one left out.
    pub fn sent<T: Clone>(&self, frames: Vec<T>) -> Vec<T> {
        let mut slots: Vec<Option<T>> = frames.into_iter().map(Some).collect();
        let mut order: Vec<usize> = (0..slots.len()).collect();
        order.sort_by_key(|&i| (self.order.get(i).copied().unwrap_or(0), i));
        let mut sent: Vec<T> = order.into_iter().filter_map(|i| slots[i].take()).collect();
        if let Some(i) = self.repeat {
            let i = usize::from(i) % sent.len();
            sent.insert(i + 1, sent[i].clone());
        }
        if let Some(i) = self.omit
            && sent.len() > 1
        {
            sent.remove(usize::from(i) % sent.len());
        }
        sent
    }
}
