//! Run-time settings written by filter-ctl: the config and the watched ports.

use aya_ebpf::{macros::map, maps::Array};
use filter_common::{Config, PortClass};

#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map]
static WATCHED_PORTS: Array<u8> = Array::with_max_entries(65536, 0);

/// The live config; zero lifetimes (a map nobody initialised) mean the defaults.
#[inline(always)]
pub fn get() -> Config {
    let mut config = match CONFIG.get(0) {
        Some(config) => *config,
        None => Config::DEFAULT,
    };
    if config.solicited_ttl_ns == 0 {
        config.solicited_ttl_ns = Config::DEFAULT.solicited_ttl_ns;
    }
    if config.fragment_ttl_ns == 0 {
        config.fragment_ttl_ns = Config::DEFAULT.fragment_ttl_ns;
    }
    config
}

/// How UDP `port` is watched.
#[inline(always)]
pub fn port_class(port: u16) -> PortClass {
    PortClass::from_u8(WATCHED_PORTS.get(u32::from(port)).copied().unwrap_or(0))
}

/// Monotonic time, the clock every expiry uses.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments or side effects.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}
