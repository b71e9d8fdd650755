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
/// `dst`, in the order they are sent. `upper` is the transport's protocol.
pub fn fragments(
    plan: &FragPlan,
    look: &Look,
    src: IpAddr,
    dst: IpAddr,
    upper: u8,
    transport: impl Fn(PacketBuilder) -> PacketBuilder,
) -> Vec<Vec<u8>> {
    let base = look.ip.builder(look.link, src, dst);
    let v6 = src.is_ipv6();
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
    let body = &whole.bytes[start..];
    let first = (8 * usize::from(plan.first_words))
        .min(body.len().saturating_sub(1) / 8 * 8)
        .max(8);
    let rest = 8 * usize::from(plan.rest_words);
    let mut chunks = vec![(0, &body[..first.min(body.len())])];
    let mut at = first;
    while at < body.len() {
        let end = (at + rest).min(body.len());
        chunks.push((at, &body[at..end]));
        at = end;
    }
    let last = chunks.len() - 1;
    let mut frames: Vec<Vec<u8>> = chunks
        .iter()
        .enumerate()
        .map(|(i, (offset, chunk))| {
            let words = (offset / 8) as u16;
            // A packet too short to split is sent as a first fragment alone.
            let more = i < last || chunks.len() == 1;
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
            match plan.damaged {
                Some((which, mangle)) if usize::from(which) % chunks.len() == i => {
                    mangle.apply(&frame)
                }
                _ => frame.bytes,
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..frames.len()).collect();
    order.sort_by_key(|&i| (plan.order.get(i).copied().unwrap_or(0), i));
    let mut sent: Vec<Vec<u8>> = order
        .into_iter()
        .map(|i| std::mem::take(&mut frames[i]))
        .collect();
    if let Some(i) = plan.repeat {
        let i = usize::from(i) % sent.len();
        sent.insert(i + 1, sent[i].clone());
    }
    if let Some(i) = plan.omit
        && sent.len() > 1
    {
        sent.remove(usize::from(i) % sent.len());
    }
    sent
}
