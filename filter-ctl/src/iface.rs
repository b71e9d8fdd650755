//! Network interfaces, looked up in the caller's network namespace.

use std::ffi::CString;

use anyhow::{Context as _, bail};

/// An interface that exists now in this network namespace.
#[derive(Clone, Debug)]
pub struct Interface {
    pub name: String,
    pub index: u32,
}

impl Interface {
    pub fn lookup(name: &str) -> anyhow::Result<Self> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
            bail!("'{name}' is not a valid interface name");
        }
        let c_name = CString::new(name).context("interface name")?;
        // SAFETY: c_name is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            bail!(
                "no interface named '{name}' in this network namespace (see `ip link`; \
                 inside a namespace use `ip netns exec NS filter-ctl ...`)"
            );
        }
        Ok(Self {
            name: name.to_owned(),
            index,
        })
    }
}
