//! Durations as operators write them and filter-ctl shows them: numbers with
//! a unit, `ms`, `s`, `m`, `h` or `d`. Several add up (`1m30s`), and a number
//! may have a fraction (`1.5s`, `0.5h`) as long as the whole is a number of
//! milliseconds, the finest step any setting or expiry needs.

extern crate std;

use core::time::Duration;
use std::{format, string::String};

/// Units and their length in milliseconds, longest first.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

const EXPECTED: &str = "expected a duration like 500ms, 30s, 1.5m, 2h, 7d or 1m30s";

/// Parses a duration such as `500ms`, `30s`, `1.5s`, `10m`, `2h`, `7d` or `1m30s`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let mut rest = text;
    if rest.is_empty() {
        return Err(EXPECTED.into());
    }
    let mut total_ms: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(EXPECTED.into());
        }
        let unit_ms = match UNITS.iter().find(|(name, _)| *name == unit) {
            Some((_, ms)) => u128::from(*ms),
            None if unit.is_empty() => {
                return Err(format!("'{number}' has no unit (use ms, s, m, h or d)"));
            }
            None => return Err(format!("unknown unit '{unit}' (use ms, s, m, h or d)")),
        };
        total_ms = total_ms
            .checked_add(milliseconds(whole, fraction, unit_ms)?)
            .ok_or("too long")?;
        rest = after;
    }
    u64::try_from(total_ms)
        .map(Duration::from_millis)
        .map_err(|_| "too long".into())
}

/// `whole.fraction` units of `unit_ms` milliseconds each, exactly.
fn milliseconds(whole: &str, fraction: &str, unit_ms: u128) -> Result<u128, String> {
    let digits = |text: &str| -> Result<u128, String> {
        if text.is_empty() {
            return Ok(0);
        }
        if text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EXPECTED.into());
        }
        text.parse().map_err(|_| EXPECTED.into())
    };
    let fraction_ms = digits(fraction)? * unit_ms;
    let scale = 10u128.pow(fraction.len() as u32);
    if !fraction_ms.is_multiple_of(scale) {
        return Err(format!("'{whole}.{fraction}' is finer than a millisecond"));
    }
    digits(whole)?
        .checked_mul(unit_ms)
        .map(|ms| ms + fraction_ms / scale)
        .ok_or_else(|| "too long".into())
}

/// The one way durations are shown: as [`parse`] reads them back, in whole
/// units from days down to seconds with any milliseconds as a fraction of
/// the seconds (`2h`, `1m30s`, `9m58s`, `1.5s`); under a second in
/// milliseconds (`100ms`). Finer parts than a millisecond are left out.
pub fn format(duration: Duration) -> String {
    let mut ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut out = String::new();
    for (unit, size) in &UNITS[..3] {
        if ms >= *size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    let (seconds, thousandths) = (ms / 1000, ms % 1000);
    if thousandths != 0 {
        let fraction = format!("{thousandths:03}");
        out.push_str(&format!("{seconds}.{}s", fraction.trim_end_matches('0')));
    } else if seconds != 0 {
        out.push_str(&format!("{seconds}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_combinations_parse() {
        let ms = Duration::from_millis;
        for (text, expected) in [
            ("500ms", ms(500)),
            ("30s", ms(30_000)),
            ("10m", ms(600_000)),
            ("2h", ms(7_200_000)),
            ("7d", ms(604_800_000)),
            ("1m30s", ms(90_000)),
            ("1h0m1s", ms(3_601_000)),
            ("1.5s", ms(1500)),
            ("0.5h", ms(1_800_000)),
            (".25s", ms(250)),
            ("1.s", ms(1000)),
            ("0s", ms(0)),
        ] {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for (text, why) in [
            ("", "expected a duration"),
            ("h", "expected a duration"),
            ("5", "'5' has no unit"),
            ("5y", "unknown unit 'y'"),
            ("10 parsecs", "has no unit"),
            ("1.0005s", "finer than a millisecond"),
            ("1..5s", "expected a duration"),
            ("99999999999999999999d", "expected a duration"),
            ("999999999999999d", "too long"),
            ("-1s", "expected a duration"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn durations_show_in_whole_units_with_fractions_of_seconds() {
        let ms = Duration::from_millis;
        for (duration, text) in [
            (ms(7_200_000), "2h"),
            (ms(90_000), "1m30s"),
            (ms(598_000), "9m58s"),
            (ms(1500), "1.5s"),
            (ms(60_500), "1m0.5s"),
            (ms(100), "100ms"),
            (ms(0), "0ms"),
            (ms(86_400_000 * 2 + 1), "2d0.001s"),
            (Duration::from_nanos(1_999_999), "1ms"),
        ] {
            assert_eq!(format(duration), text);
        }
    }

    /// Whatever is shown parses back to the same duration.
    #[test]
    fn shown_durations_parse_back() {
        let mut ms: u64 = 1;
        while ms < 400 * 86_400_000 {
            for candidate in [ms, ms + 1, ms * 1000, ms * 60_000 + 7] {
                let duration = Duration::from_millis(candidate);
                assert_eq!(parse(&format(duration)), Ok(duration), "{candidate} ms");
            }
            ms = ms * 3 + 1;
        }
    }

    /// The paragraph on durations in docs/commands.md (it starts "Durations are")
    /// names every unit `parse` takes, and every example and unit it shows
    /// is one `parse` takes.
    #[test]
    fn the_readme_durations_are_accepted() {
        let readme = include_str!("../../../docs/commands.md");
        let paragraph: String = readme
            .split("\n\n")
            .find(|p| p.starts_with("Durations are"))
            .expect("docs/commands.md explains durations")
            .into();
        let quoted: std::vec::Vec<&str> = paragraph.split('`').skip(1).step_by(2).collect();
        for (unit, _) in UNITS {
            assert!(
                quoted.contains(&unit),
                "docs/commands.md does not name the unit {unit}"
            );
        }
        for example in quoted {
            let text = if example.starts_with(|c: char| c.is_ascii_digit()) {
                String::from(example)
            } else if example.len() <= 2 {
                // A unit named alone: one of it.
                format!("1{example}")
            } else {
                continue; // a command named in passing
            };
            assert!(
                parse(&text).is_ok(),
                "docs/commands.md shows `{example}`: {:?}",
                parse(&text)
            );
        }
    }
}
