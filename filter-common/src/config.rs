//! The run-time settings filter-ctl writes into the CONFIG map, read in place
//! by both programs.

use crate::{conn, halfopen, query, sample, syn};

/// What a later fragment does when its first fragment was not seen.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrphanPolicy {
    Pass = 0,
    Drop = 1,
}

/// Run-time settings, written by filter-ctl, read by both programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long a recorded query waits for its answer.
    pub solicited_ttl_ns: u64,
    /// How long a first fragment's verdict applies to its later fragments.
    pub fragment_ttl_ns: u64,
    /// 1: count what would be dropped under `index + Reason::COUNT` and pass it.
    pub monitor: u8,
    /// An [`OrphanPolicy`] value.
    pub orphan_fragments: u8,
    pub _padding: [u8; 6],
    /// SYN token buckets (see [`syn`]): SYNs per second and burst of each
    /// level. A rate of 0 switches the level off.
    pub syn_source_rate: u32,
    pub syn_source_burst: u32,
    pub syn_prefix_rate: u32,
    pub syn_prefix_burst: u32,
    pub syn_global_rate: u32,
    pub syn_global_burst: u32,
    /// Prefix lengths of the per-prefix level: IPv4 8..=32, IPv6 16..=64.
    pub syn_prefix_v4: u8,
    pub syn_prefix_v6: u8,
    pub _syn_padding: [u8; 6],
    /// How long a source that keeps exceeding its bucket stays on the deny
    /// list; 0 = no penalty.
    pub syn_penalty_ns: u64,
    /// Secret seed of the bucket hash, random per attach (not a setting).
    /// Every hashed-slot level hashes with it (the query limits too), each
    /// with its own tags (see [`crate::rate`]).
    pub syn_hash_seed: u64,
    // Issue 11, the connection-aware TCP defence (24 bytes, 8-aligned).
    /// How long an unanswered half-open unit (and its recorded handshake) lasts.
    pub syn_halfopen_timeout_ns: u64,
    /// Half-open units of a source and of a prefix (see [`halfopen`]); 0 = off.
    pub syn_halfopen_budget: u32,
    pub syn_halfopen_prefix_budget: u32,
    /// A counted connection stops counting after this long without an
    /// inbound packet (between once and twice this, see [`conn`]).
    pub conn_idle_timeout_ns: u64,
    /// Drop sampling (see [`sample`]): events per second per drop reason
    /// sent to the ring buffer; 0 = off.
    pub sample_rate: u32,
    pub _sample_padding: u32,
    // Issue 14: which copy of the double-buffered state is live. filter-ctl
    // writes a change into the copy not in use, then switches this field
    // in the one write of the whole Config, so that a change takes effect
    // at once and a controller killed halfway leaves the old state live.
    /// The WATCHED_PORTS element in use (0 or 1).
    pub ports_slot: u8,
    /// The copy of the allow list in use: 0 for ALLOW_V4/ALLOW_V6, 1 for
    /// ALLOW_V4_B/ALLOW_V6_B.
    pub allow_copy: u8,
    /// The copy of the deny list in use, likewise.
    pub deny_copy: u8,
    pub _live_padding: [u8; 5],
    // Issue 12, the limits on inbound DNS and NTP requests (56 bytes, 8-aligned).
    /// Limits on inbound requests to the DNS and NTP service ports (see
    /// [`query`]): per source, per prefix and global rates and bursts, a
    /// rate of 0 switching a level off.
    pub dns_query: query::Limits,
    pub ntp_query: query::Limits,
    /// Prefix lengths of the per-prefix query levels: IPv4 8..=32, IPv6 16..=64.
    pub query_prefix_v4: u8,
    pub query_prefix_v6: u8,
    /// 1 in this many DNS queries over a limit get a truncated answer; 0: none.
    pub dns_slip: u8,
    pub _query_padding: u8,
    /// Truncated answers per second at most, from everywhere together (the
    /// burst is as large); 0: no cap.
    pub dns_slip_rate: u32,
    // Issue 27, the DNS name level (8 bytes).
    /// DNS queries per second for one question name and type from one
    /// prefix, and the burst (see [`query::name_slot`]); a rate of 0
    /// switches the level off.
    pub dns_query_name_rate: u32,
    pub dns_query_name_burst: u32,
    /// Only in the test build that changes the maps' layout (feature
    /// `layout-next`): the upgrade tests attach it over the normal build.
    #[cfg(feature = "layout-next")]
    pub layout_next: u64,
}

impl Config {
    pub const DEFAULT: Config = Config {
        solicited_ttl_ns: 10_000_000_000,
        fragment_ttl_ns: 2_000_000_000,
        monitor: 0,
        orphan_fragments: OrphanPolicy::Drop as u8,
        _padding: [0; 6],
        syn_source_rate: syn::DEFAULT_SOURCE_RATE,
        syn_source_burst: syn::DEFAULT_SOURCE_BURST,
        syn_prefix_rate: syn::DEFAULT_PREFIX_RATE,
        syn_prefix_burst: syn::DEFAULT_PREFIX_BURST,
        syn_global_rate: syn::DEFAULT_GLOBAL_RATE,
        syn_global_burst: syn::DEFAULT_GLOBAL_BURST,
        syn_prefix_v4: syn::DEFAULT_PREFIX_V4,
        syn_prefix_v6: syn::DEFAULT_PREFIX_V6,
        _syn_padding: [0; 6],
        syn_penalty_ns: syn::DEFAULT_PENALTY_NS,
        syn_hash_seed: 0,
        syn_halfopen_timeout_ns: halfopen::DEFAULT_TIMEOUT_NS,
        syn_halfopen_budget: halfopen::DEFAULT_BUDGET,
        syn_halfopen_prefix_budget: halfopen::DEFAULT_PREFIX_BUDGET,
        conn_idle_timeout_ns: conn::DEFAULT_IDLE_NS,
        sample_rate: sample::DEFAULT_RATE,
        _sample_padding: 0,
        ports_slot: 0,
        allow_copy: 0,
        deny_copy: 0,
        _live_padding: [0; 5],
        dns_query: query::DEFAULT_DNS,
        ntp_query: query::DEFAULT_NTP,
        query_prefix_v4: query::DEFAULT_PREFIX_V4,
        query_prefix_v6: query::DEFAULT_PREFIX_V6,
        dns_slip: query::DEFAULT_DNS_SLIP,
        _query_padding: 0,
        dns_slip_rate: query::DEFAULT_DNS_SLIP_RATE,
        dns_query_name_rate: query::DEFAULT_DNS_NAME_RATE,
        dns_query_name_burst: query::DEFAULT_DNS_NAME_BURST,
        #[cfg(feature = "layout-next")]
        layout_next: 0,
    };

    /// How long a recorded query waits for its answer; zero (a map nobody
    /// initialised) means the default.
    #[inline(always)]
    pub const fn solicited_lifetime_ns(&self) -> u64 {
        match self.solicited_ttl_ns {
            0 => Config::DEFAULT.solicited_ttl_ns,
            ttl => ttl,
        }
    }

    /// How long a first fragment's verdict holds; zero means the default.
    #[inline(always)]
    pub const fn fragment_lifetime_ns(&self) -> u64 {
        match self.fragment_ttl_ns {
            0 => Config::DEFAULT.fragment_ttl_ns,
            ttl => ttl,
        }
    }

    /// How long a half-open unit and its handshake last; zero means the default.
    #[inline(always)]
    pub const fn halfopen_timeout_ns(&self) -> u64 {
        match self.syn_halfopen_timeout_ns {
            0 => Config::DEFAULT.syn_halfopen_timeout_ns,
            timeout => timeout,
        }
    }

    /// The WATCHED_PORTS and CONN_LIMITS element the programs read (bounded
    /// for the verifier).
    #[inline(always)]
    pub const fn ports_slot(&self) -> u32 {
        (self.ports_slot & 1) as u32
    }

    /// The copy of the allow (`deny` false) or deny list in use: 0 or 1.
    #[inline(always)]
    pub const fn list_copy(&self, deny: bool) -> u32 {
        let copy = if deny {
            self.deny_copy
        } else {
            self.allow_copy
        };
        (copy & 1) as u32
    }

    /// What later fragments without their first fragment get.
    #[inline(always)]
    pub const fn orphan_policy(&self) -> OrphanPolicy {
        if self.orphan_fragments == OrphanPolicy::Drop as u8 {
            OrphanPolicy::Drop
        } else {
            OrphanPolicy::Pass
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::Config {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both sides read the map value with this layout: 8-byte aligned, no
    /// implicit padding (every gap is a named field).
    #[test]
    fn the_layout_has_no_hidden_padding() {
        assert_eq!(align_of::<Config>(), 8);
        assert_eq!(size_of::<query::Limits>(), 24);
        // Through issue 11, issue 13's sample rate, issue 14's live copies,
        // issue 12's query limits, issue 27's name level.
        let query_limits = 2 * 24 + 8;
        let name_level = 8;
        assert_eq!(
            size_of::<Config>(),
            72 + 8
                + 24
                + 8
                + query_limits
                + name_level
                + if cfg!(feature = "layout-next") { 8 } else { 0 }
        );
    }

    #[test]
    fn zero_lifetimes_mean_the_defaults() {
        let zeroed = Config {
            solicited_ttl_ns: 0,
            fragment_ttl_ns: 0,
            ..Config::DEFAULT
        };
        assert_eq!(zeroed.solicited_lifetime_ns(), 10_000_000_000);
        assert_eq!(zeroed.fragment_lifetime_ns(), 2_000_000_000);
        let set = Config {
            solicited_ttl_ns: 7,
            fragment_ttl_ns: 9,
            ..Config::DEFAULT
        };
        assert_eq!(set.solicited_lifetime_ns(), 7);
        assert_eq!(set.fragment_lifetime_ns(), 9);
        let no_halfopen_timeout = Config {
            syn_halfopen_timeout_ns: 0,
            ..Config::DEFAULT
        };
        assert_eq!(no_halfopen_timeout.halfopen_timeout_ns(), 60_000_000_000);
    }

    #[test]
    fn only_the_drop_value_drops_orphans() {
        for (value, policy) in [
            (0, OrphanPolicy::Pass),
            (1, OrphanPolicy::Drop),
            (2, OrphanPolicy::Pass),
        ] {
            let config = Config {
                orphan_fragments: value,
                ..Config::DEFAULT
            };
            assert_eq!(config.orphan_policy(), policy, "{value}");
        }
    }
}
