//! Numbers as the log lines and `top` show them: `48,000`, `370 Mbit/s`, `7.4 GB`, `2m14s`.

use std::time::Duration;

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A count with a unit and a decimal prefix, 3 significant digits:
/// `370 Mbit/s`, `7.41 GB`, `512 B`.
fn decimal(value: f64, unit: &str) -> String {
    let prefixes = ["", "k", "M", "G", "T", "P"];
    let mut value = value;
    let mut prefix = 0;
    while value >= 999.5 && prefix + 1 < prefixes.len() {
        value /= 1000.0;
        prefix += 1;
    }
    let digits = if prefix == 0 || value >= 99.95 {
        0
    } else if value >= 9.995 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {}{unit}", prefixes[prefix])
}

/// Bytes per second as bits per second: `370 Mbit/s`.
pub fn bit_rate(bytes_per_sec: f64) -> String {
    decimal(bytes_per_sec * 8.0, "bit/s")
}

/// A byte count: `7.41 GB`.
pub fn bytes(bytes: u64) -> String {
    decimal(bytes as f64, "B")
}

/// A share as a percentage without false precision: `3%`, `0.4%`.
pub fn percent(share: f64) -> String {
    let percent = share * 100.0;
    if percent >= 9.95 || percent == 0.0 {
        format!("{percent:.0}%")
    } else {
        format!("{percent:.1}%")
    }
}

/// Whole seconds: `45s`, `2m14s`, `1h03m`.
pub fn duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// To the tenth of a second: `14.3s`, `2m14.3s`, `1h03m14s`.
pub fn seconds(duration: Duration) -> String {
    let tenths = (duration.as_millis() + 50) / 100;
    let secs = tenths / 10;
    match secs {
        0..60 => format!("{}.{}s", secs, tenths % 10),
        60..3600 => format!("{}m{:02}.{}s", secs / 60, secs % 60, tenths % 10),
        _ => format!("{}h{:02}m{:02}s", secs / 3600, secs % 3600 / 60, secs % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_in_the_log() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(48_000), "48,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(bit_rate(46_250_000.0), "370 Mbit/s");
        assert_eq!(bit_rate(100.0), "800 bit/s");
        assert_eq!(bytes(7_412_000_000), "7.41 GB");
        assert_eq!(bytes(12_600), "12.6 kB");
        assert_eq!(percent(0.03), "3.0%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.004), "0.4%");
        assert_eq!(duration(Duration::from_secs(134)), "2m14s");
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(3780)), "1h03m");
        assert_eq!(seconds(Duration::from_millis(6_500)), "6.5s");
        assert_eq!(seconds(Duration::from_millis(134_260)), "2m14.3s");
        assert_eq!(seconds(Duration::from_millis(59_960)), "1m00.0s");
        assert_eq!(seconds(Duration::from_secs(3794)), "1h03m14s");
    }
}
