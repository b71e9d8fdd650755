//! The filter's two hooks, one module each, as aya splits its programs:
//! [`xdp`] (ingress) and [`tc`] (egress, TCX or clsact), and [`links`],
//! the pinned links both use. What an attach does with them, in which
//! order and how it recovers, is [`crate::attach`].

pub mod links;
pub mod tc;
pub mod xdp;
