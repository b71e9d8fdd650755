//! Traffic the tests and the lab send with spoofed sources: one AF_PACKET
//! sender ([`sender`]), one source-address generator ([`sources`]), and the
//! floods built on them: reflection floods of DNS and NTP responses
//! ([`reflection`]) and TCP SYN floods ([`syn`]). (The benchmark's floods at
//! millions of packets per second come from an XDP generator of its own, in
//! the `bench` crate.)

pub mod marker;
pub mod queries;
pub mod reflection;
pub mod sender;
pub mod sources;
pub mod syn;

use std::sync::atomic::{AtomicBool, Ordering};

/// Raises its flag when dropped: a background sender's stop signal that
/// also fires when the test panics first.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
