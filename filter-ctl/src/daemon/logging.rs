//! The daemon's log: one line per record on stderr, which journald takes
//! under systemd. Plain lines (with the syslog priority prefix journald reads
//! when stderr is the journal, a timestamp otherwise) or JSON objects, one per
//! line, with the record's key-values (attack lines carry their numbers as
//! fields) for log shippers.

use std::{
    io::Write as _,
    time::{SystemTime, UNIX_EPOCH},
};

use log::{Level, LevelFilter, Log, Metadata, Record, kv};

/// How log lines are written (`filter-ctl daemon --log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per record.
    #[default]
    Plain,
    /// One JSON object per line: time, level, target, message and fields.
    Json,
}

struct LineLogger {
    format: LogFormat,
    /// stderr is the journal (systemd sets JOURNAL_STREAM): it adds the time,
    /// and reads the level from a `<N>` prefix.
    journal: bool,
    level: LevelFilter,
}

/// Installs the daemon's logger; `RUST_LOG` (error, warn, info, debug) sets
/// the level, info by default.
pub fn init(format: LogFormat) {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(LevelFilter::Info);
    let logger = LineLogger {
        format,
        journal: std::env::var_os("JOURNAL_STREAM").is_some(),
        level,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

impl Log for LineLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match self.format {
            LogFormat::Plain => self.plain(record),
            LogFormat::Json => json(record),
        };
        // One write per line, so lines from several threads never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

impl LineLogger {
    fn plain(&self, record: &Record<'_>) -> String {
        if self.journal {
            format!("<{}>{}\n", syslog_priority(record.level()), record.args())
        } else {
            format!(
                "{} {:<5} {}\n",
                rfc3339(SystemTime::now()),
                record.level(),
                record.args()
            )
        }
    }
}

fn json(record: &Record<'_>) -> String {
    let mut object = serde_json::Map::new();
    object.insert("time".into(), rfc3339(SystemTime::now()).into());
    object.insert(
        "level".into(),
        record.level().as_str().to_lowercase().into(),
    );
    object.insert("target".into(), record.target().into());
    object.insert("message".into(), record.args().to_string().into());
    let mut fields = Fields(&mut object);
    let _ = record.key_values().visit(&mut fields);
    let mut line = serde_json::Value::Object(object).to_string();
    line.push('\n');
    line
}

/// Copies a record's key-values into the JSON object: numbers as numbers,
/// anything else as text (a JSON text is taken as JSON, for lists).
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let json = if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(f) = value.to_f64() {
            f.into()
        } else {
            let text = value.to_string();
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(parsed @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))) => parsed,
                _ => text.into(),
            }
        };
        self.0.insert(key.as_str().to_owned(), json);
        Ok(())
    }
}

/// The priority journald reads from a `<N>` line prefix (sd-daemon.h).
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `2026-11-30T15:04:05.123Z`, UTC.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86400, secs % 86400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let time = UNIX_EPOCH + Duration::from_millis(1_796_051_045_123);
        assert_eq!(rfc3339(time), "2026-11-30T15:04:05.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn json_lines_carry_the_fields() {
        let fields = [
            ("reason", kv::Value::from("drop_unsolicited_dns")),
            ("pps", kv::Value::from(48_000u64)),
        ];
        let record = Record::builder()
            .level(Level::Warn)
            .target("attack")
            .args(format_args!("attack started"))
            .key_values(&fields)
            .build();
        let line: serde_json::Value = serde_json::from_str(&json(&record)).unwrap();
        assert_eq!(line["level"], "warn");
        assert_eq!(line["message"], "attack started");
        assert_eq!(line["reason"], "drop_unsolicited_dns");
        assert_eq!(line["pps"], 48_000);
    }
}
