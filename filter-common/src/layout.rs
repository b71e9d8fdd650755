//! The layout identity of the filter's maps, which filter-ctl pins with
//! them so that a later build knows whether it can use them as they are.
//!
//! A map's layout is its type, key size, value size, entry count and flags
//! (what the kernel knows, read back from a pinned map) plus a version,
//! here, for what sizes do not show: bump a map's version when its keys or
//! values change meaning at the same size (a field reordered, a unit
//! changed). A map whose layout is unchanged is reused by a new build as it
//! is; one whose layout changed is made anew and what can be carried over
//! is copied (see filter-ctl's `migrate`).
//!
//! The rule that makes carrying over possible: fields are only ever
//! appended to a key or value (as `Config` grows per issue), never moved.
//! Then an old value is the start of the new one, and the new fields take
//! their defaults; an old build reading a newer map takes the start.

/// Maps whose keys or values changed meaning at the same size, with their
/// version; every other map is at version 1.
/// - WATCHED_PORTS 2 (issue 12): a port's byte holds its service role (the
///   query limits) in bits 2-3 besides its class; a version 1 value has no
///   service roles, and a build of version 1 reads a byte with one as
///   "unwatched".
pub const MAP_VERSIONS: &[(&str, u32)] = &[(crate::map::WATCHED_PORTS, 2)];

/// The layout version of the map called `name`.
pub fn map_version(name: &str) -> u32 {
    MAP_VERSIONS
        .iter()
        .find(|(map, _)| *map == name)
        .map_or(1, |(_, version)| *version)
}
