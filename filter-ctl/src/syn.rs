//! The SYN defence's settings: parsing, validation and display of the
//! `syn_*` keys of `filter-ctl set`, `config`, `apply` and TOML files (the
//! keys themselves are listed in [`crate::settings::KEYS`]). The values live
//! in the [`Config`] the programs read, so a change takes effect on the next
//! SYN, and the buckets keep their state: a bucket is a point in time, which
//! any rate and burst can interpret.

use std::time::Duration;

use filter_common::Config;

use crate::duration;

pub use filter_common::syn::{MAX_BURST, MAX_RATE};
/// Prefix lengths of the per-prefix level.
pub const PREFIX_V4: (u8, u8) = (8, 32);
pub const PREFIX_V6: (u8, u8) = (16, 64);
/// The longest penalty.
pub const MAX_PENALTY: Duration = Duration::from_secs(24 * 3600);

/// Sets `key` in `config` if it is a SYN key: `None` if it is not one of
/// ours, else the outcome, with the reason a value is refused.
pub fn assign(config: &mut Config, key: &str, value: &str) -> Option<Result<(), String>> {
    let result = match key {
        "syn_source_rate" => parse_rate(value).map(|v| config.syn_source_rate = v),
        "syn_source_burst" => parse_burst(value).map(|v| config.syn_source_burst = v),
        "syn_prefix_rate" => parse_rate(value).map(|v| config.syn_prefix_rate = v),
        "syn_prefix_burst" => parse_burst(value).map(|v| config.syn_prefix_burst = v),
        "syn_global_rate" => parse_rate(value).map(|v| config.syn_global_rate = v),
        "syn_global_burst" => parse_burst(value).map(|v| config.syn_global_burst = v),
        "syn_prefix_v4" => parse_prefix(value, PREFIX_V4).map(|v| config.syn_prefix_v4 = v),
        "syn_prefix_v6" => parse_prefix(value, PREFIX_V6).map(|v| config.syn_prefix_v6 = v),
        "syn_penalty" => parse_penalty(value).map(|v| config.syn_penalty_ns = v),
        _ => return None,
    };
    Some(result)
}

/// Every SYN key with its value, as `set` accepts it back.
pub fn values(config: &Config) -> Vec<(&'static str, String)> {
    vec![
        ("syn_source_rate", format_rate(config.syn_source_rate)),
        ("syn_source_burst", config.syn_source_burst.to_string()),
        ("syn_prefix_rate", format_rate(config.syn_prefix_rate)),
        ("syn_prefix_burst", config.syn_prefix_burst.to_string()),
        ("syn_global_rate", format_rate(config.syn_global_rate)),
        ("syn_global_burst", config.syn_global_burst.to_string()),
        ("syn_prefix_v4", config.syn_prefix_v4.to_string()),
        ("syn_prefix_v6", config.syn_prefix_v6.to_string()),
        ("syn_penalty", format_penalty(config.syn_penalty_ns)),
    ]
}

/// SYNs per second: `N/s` or `N` with N in 1..=MAX_RATE, or `off` (0).
pub fn parse_rate(value: &str) -> Result<u32, String> {
    if value == "off" {
        return Ok(0);
    }
    let number = value.strip_suffix("/s").unwrap_or(value);
    match number.parse::<u64>() {
        Ok(0) => Ok(0),
        Ok(n) if n <= u64::from(MAX_RATE) => Ok(n as u32),
        Ok(_) => Err("out of range".into()),
        Err(_) => Err("expected SYNs per second, like 20/s, or off".into()),
    }
}

pub fn format_rate(rate: u32) -> String {
    if rate == 0 {
        "off".into()
    } else {
        format!("{rate}/s")
    }
}

/// A bucket's size in SYNs: 1..=MAX_BURST.
pub fn parse_burst(value: &str) -> Result<u32, String> {
    match value.parse::<u64>() {
        Ok(n) if (1..=u64::from(MAX_BURST)).contains(&n) => Ok(n as u32),
        Ok(_) => Err("out of range".into()),
        Err(_) => Err("expected a number of SYNs".into()),
    }
}

/// A prefix length within `(min, max)`; a leading `/` is accepted.
pub fn parse_prefix(value: &str, (min, max): (u8, u8)) -> Result<u8, String> {
    match value.strip_prefix('/').unwrap_or(value).parse::<u8>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err("out of range".into()),
        Err(_) => Err("expected a prefix length".into()),
    }
}

/// `0` or `off`, or a duration from 1s to 24h, in nanoseconds.
pub fn parse_penalty(value: &str) -> Result<u64, String> {
    if value == "off" || value == "0" {
        return Ok(0);
    }
    let duration = duration::parse(value)?;
    if duration.is_zero() {
        return Ok(0);
    }
    if duration < Duration::from_secs(1) || duration > MAX_PENALTY {
        return Err("out of range".into());
    }
    Ok(duration.as_nanos() as u64)
}

pub fn format_penalty(ns: u64) -> String {
    if ns == 0 {
        "off".into()
    } else {
        duration::format(Duration::from_nanos(ns))
    }
}

/// A fresh secret seed for the bucket hash (getrandom), so that nobody can
/// compute which addresses share a bucket slot with a victim.
pub fn random_seed() -> anyhow::Result<u64> {
    let mut seed = [0u8; 8];
    // SAFETY: getrandom writes at most `seed.len()` bytes into the buffer.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if n != seed.len() as isize {
        anyhow::bail!("getrandom failed: {}", std::io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(seed))
}

/// Slots of a SYN bucket map (`SYN_SOURCES`, `SYN_PREFIXES`, `SYN_GLOBAL`)
/// that are not full at `now_ns`: charged by a SYN within the last burst's
/// worth of refill.
pub fn buckets_in_use(data: &aya::maps::MapData, now_ns: u64) -> anyhow::Result<usize> {
    let buckets = crate::mapped::snapshot::<filter_common::SynBucket>(data)?;
    Ok(buckets.iter().filter(|b| b.tat_ns > now_ns).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_per_second_numbers_or_off() {
        assert_eq!(parse_rate("20/s"), Ok(20));
        assert_eq!(parse_rate("20"), Ok(20));
        assert_eq!(parse_rate("off"), Ok(0));
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("1000000/s"), Ok(1_000_000));
        assert!(parse_rate("1000001/s").is_err());
        assert!(parse_rate("20/m").is_err());
        assert!(parse_rate("-1").is_err());
        assert_eq!(format_rate(20), "20/s");
        assert_eq!(format_rate(0), "off");
    }

    #[test]
    fn bursts_and_prefixes_have_ranges() {
        assert_eq!(parse_burst("12"), Ok(12));
        assert!(parse_burst("0").is_err());
        assert!(parse_burst("1000001").is_err());
        assert_eq!(parse_prefix("24", PREFIX_V4), Ok(24));
        assert_eq!(parse_prefix("/16", PREFIX_V4), Ok(16));
        assert!(parse_prefix("7", PREFIX_V4).is_err());
        assert!(parse_prefix("33", PREFIX_V4).is_err());
        assert_eq!(parse_prefix("64", PREFIX_V6), Ok(64));
        assert!(parse_prefix("15", PREFIX_V6).is_err());
        assert!(parse_prefix("65", PREFIX_V6).is_err());
    }

    #[test]
    fn penalties_are_off_or_one_second_to_a_day() {
        assert_eq!(parse_penalty("off"), Ok(0));
        assert_eq!(parse_penalty("0"), Ok(0));
        assert_eq!(parse_penalty("0s"), Ok(0));
        assert_eq!(parse_penalty("10m"), Ok(600_000_000_000));
        assert_eq!(parse_penalty("24h"), Ok(86_400_000_000_000));
        assert!(parse_penalty("25h").is_err());
        assert!(parse_penalty("500ms").is_err());
        assert!(parse_penalty("10 minutes").is_err());
        assert_eq!(format_penalty(600_000_000_000), "10m");
        assert_eq!(format_penalty(0), "off");
    }

    #[test]
    fn values_round_trip_through_assign() {
        let mut config = Config::DEFAULT;
        for (key, value) in [
            ("syn_source_rate", "off"),
            ("syn_prefix_burst", "7"),
            ("syn_prefix_v6", "56"),
            ("syn_penalty", "90s"),
        ] {
            assert_eq!(assign(&mut config, key, value), Some(Ok(())));
        }
        let mut again = Config::DEFAULT;
        for (key, value) in values(&config) {
            assert_eq!(
                assign(&mut again, key, &value),
                Some(Ok(())),
                "{key}={value}"
            );
        }
        assert_eq!(again, config);
        assert_eq!(assign(&mut again, "monitor", "on"), None);
    }
}
