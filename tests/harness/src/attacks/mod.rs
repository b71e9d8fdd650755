//! Attacks on the lab's gateway staged end to end with real servers and
//! clients, measured independently of the filter: shared by the end-to-end
//! tests, which assert on the measures, and the lab, which shows them.
//!
//! - [`amplifier`]: a DNS or NTP server on the gateway used as an amplifier
//!   by spoofed victims while real resolvers and clients use it.

pub mod amplifier;
