//! Telling systemd how the daemon is doing (`Type=notify`): `READY=1` once
//! the filter is attached (or adopted) and the metrics are served, so that
//! `network-pre.target`, which the unit orders itself before, is reached
//! with the filter in place; `STATUS=` lines for `systemctl status`;
//! `STOPPING=1` on the way out.
//!
//! The protocol is one datagram per message to the Unix socket named in
//! `NOTIFY_SOCKET` (sd_notify(3)): a path, or an abstract name written with
//! a leading `@`. A dozen lines, so no crate for it. Without the variable
//! (not started by systemd, or not as `Type=notify`) nothing is sent.

use std::{
    os::unix::net::UnixDatagram,
    os::{linux::net::SocketAddrExt as _, unix::net::SocketAddr as UnixAddr},
};

/// The systemd notification socket's variable.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (`READY=1`, `STATUS=...`, one `KEY=VALUE` a line) to
/// systemd, if it asked for notifications. A failure is logged, never fatal:
/// the filter works the same without the message.
pub fn send(state: &str) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    let socket = socket.to_string_lossy().into_owned();
    let sent = address(&socket).and_then(|addr| {
        let datagram = UnixDatagram::unbound()?;
        datagram.send_to_addr(state.as_bytes(), &addr).map(drop)
    });
    if let Err(err) = sent {
        log::warn!("telling systemd {state:?} through {socket}: {err}");
    }
}

/// The socket's address: a path, or an abstract name after `@`.
fn address(socket: &str) -> std::io::Result<UnixAddr> {
    match socket.strip_prefix('@') {
        Some(name) => UnixAddr::from_abstract_name(name.as_bytes()),
        None => UnixAddr::from_pathname(socket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_abstract_names_are_both_addresses() {
        let abstract_name = address("@/org/freedesktop/systemd1/notify/42").unwrap();
        assert_eq!(
            abstract_name.as_abstract_name(),
            Some(&b"/org/freedesktop/systemd1/notify/42"[..])
        );
        let path = address("/run/systemd/notify").unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
    }
}
