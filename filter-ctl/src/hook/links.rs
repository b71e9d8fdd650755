//! Pinned links and pins in general: opening a pinned link, and pinning
//! over an existing pin in one step.

use std::{fs, io, path::Path};

use anyhow::Context as _;
use aya::programs::links::{FdLink, LinkInfo, PinnedLink};

/// Kernel view of a pinned link: its id and program id.
pub fn link_info(path: &Path) -> anyhow::Result<LinkInfo> {
    Ok(pinned_link(path)?.info()?)
}

/// The link pinned at `path`, held by a file descriptor of ours too.
pub fn pinned_link(path: &Path) -> anyhow::Result<FdLink> {
    let pinned = PinnedLink::from_pin(path)
        .with_context(|| format!("opening pinned link {}", path.display()))?;
    Ok(FdLink::from(pinned))
}

/// Pins through `pin` at a temporary name, then renames it over `path`: a
/// pin already there (a severed link, a map of another layout) is replaced
/// in one step.
pub fn pin_replacing(
    path: &Path,
    pin: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let fresh = path.with_file_name(format!(
        "{}:new",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    remove_pin(&fresh)?;
    pin(&fresh)?;
    fs::rename(&fresh, path).with_context(|| format!("pinning {}", path.display()))
}

/// Removes the pin at `path`, if there is one.
pub fn remove_pin(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}
