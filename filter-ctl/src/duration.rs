//! Durations as operators write them: `500ms`, `30s`, `10m`, `2h`, `7d`.

use std::time::Duration;

/// A duration like `500ms`, `30s`, `10m`, `2h` or `7d`.
pub fn parse(value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| "expected a number with a unit, like 30s, 10m or 2h".to_owned())?;
    let seconds = |factor: u64| {
        number
            .checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| "out of range".to_owned())
    };
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86400),
        _ => Err(format!("unknown unit '{unit}' (use ms, s, m, h or d)")),
    }
}

/// The largest whole unit: `2h`, `10m`, `45s`, `1500ms`.
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_in_their_largest_whole_unit() {
        assert_eq!(format(Duration::from_secs(7200)), "2h");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format(Duration::from_secs(86400 * 2)), "2d");
        for text in ["2h", "90s", "1500ms", "2d", "15m"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
        assert!(parse("5y").is_err());
        assert!(parse("h").is_err());
    }
}
