//! The kinds of setting values: how each is written (as text after `set
//! KEY=`, or natively in TOML and JSON), which values are allowed, and how
//! it is shown. A new kind of setting is one more type here.

extern crate std;

use core::{fmt, time::Duration};
use std::{
    collections::{BTreeMap, BTreeSet},
    format,
    string::{String, ToString as _},
    vec::Vec,
};

use super::duration;

/// A value as an operator wrote it: text (`set KEY=VALUE`, a TOML or JSON
/// string) or a TOML/JSON boolean, integer or list of integers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Text(String),
    Flag(bool),
    Number(i64),
    Numbers(Vec<i64>),
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Text(text) => f.write_str(text),
            Input::Flag(flag) => write!(f, "{flag}"),
            Input::Number(number) => write!(f, "{number}"),
            Input::Numbers(numbers) => write!(f, "{numbers:?}"),
        }
    }
}

/// One kind of setting value.
pub trait Kind: Sync {
    /// The value as the settings hold it.
    type Value;

    /// What is allowed, for help texts and errors: `on|off`, `100ms..300s`.
    fn allowed(&self) -> String;

    /// Reads and checks a value written as text.
    fn parse(&self, text: &str) -> Result<Self::Value, String>;

    /// Reads and checks a value written natively in TOML or JSON; by
    /// default only text is taken.
    fn native(&self, input: &Input) -> Result<Self::Value, String> {
        match input {
            Input::Text(text) => self.parse(text.trim()),
            _ => Err("expected a string (in quotes)".into()),
        }
    }

    /// The value as [`Kind::parse`] takes it back.
    fn show(&self, value: &Self::Value) -> String;
}

/// `on` or `off` (also `true`/`false`, `yes`/`no`, `1`/`0`).
#[derive(Clone, Copy, Debug)]
pub struct Switch;

impl Kind for Switch {
    type Value = bool;

    fn allowed(&self) -> String {
        "on|off".into()
    }

    fn parse(&self, text: &str) -> Result<bool, String> {
        match text {
            "on" | "true" | "yes" | "1" => Ok(true),
            "off" | "false" | "no" | "0" => Ok(false),
            _ => Err("expected on or off".into()),
        }
    }

    fn native(&self, input: &Input) -> Result<bool, String> {
        match input {
            Input::Flag(flag) => Ok(*flag),
            Input::Text(text) => self.parse(text.trim()),
            _ => Err("expected true or false, or \"on\" or \"off\"".into()),
        }
    }

    fn show(&self, value: &bool) -> String {
        if *value { "on" } else { "off" }.into()
    }
}

/// One of a few names, each standing for a byte of the config.
#[derive(Clone, Copy, Debug)]
pub struct Choice(pub &'static [(&'static str, u8)]);

impl Kind for Choice {
    type Value = u8;

    fn allowed(&self) -> String {
        self.0
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join("|")
    }

    fn parse(&self, text: &str) -> Result<u8, String> {
        self.0
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, value)| *value)
            .ok_or_else(|| format!("expected one of {}", self.allowed().replace('|', ", ")))
    }

    fn show(&self, value: &u8) -> String {
        self.0
            .iter()
            .find(|(_, known)| known == value)
            .map_or_else(|| format!("{value}"), |(name, _)| (*name).into())
    }
}

/// A duration from `min` to `max` (see [`duration`] for how it is
/// written); with `off`, also `off` (or any zero duration), held as zero.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub min: Duration,
    pub max: Duration,
    pub off: bool,
}

impl Kind for Span {
    type Value = Duration;

    fn allowed(&self) -> String {
        let range = format!(
            "{}..{}",
            duration::format(self.min),
            duration::format(self.max)
        );
        if self.off {
            format!("off|{range}")
        } else {
            range
        }
    }

    fn parse(&self, text: &str) -> Result<Duration, String> {
        if self.off && matches!(text, "off" | "0") {
            return Ok(Duration::ZERO);
        }
        match duration::parse(text)? {
            zero if self.off && zero.is_zero() => Ok(zero),
            within if (self.min..=self.max).contains(&within) => Ok(within),
            _ => Err("out of range".into()),
        }
    }

    fn show(&self, value: &Duration) -> String {
        if self.off && value.is_zero() {
            "off".into()
        } else {
            duration::format(*value)
        }
    }
}

/// Events per second, `N/s` (or `N`) from 1 to `max`, or `off` (held as 0).
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub max: u32,
}

impl Rate {
    /// The numbers a rate takes: 1 to `max` (0 is `off`, by name only, so
    /// that a typo cannot switch a level off).
    fn count(&self) -> Count<u32> {
        Count {
            min: 1,
            max: self.max,
        }
    }
}

impl Kind for Rate {
    type Value = u32;

    fn allowed(&self) -> String {
        format!("1..{}/s|off", self.max)
    }

    fn parse(&self, text: &str) -> Result<u32, String> {
        match text {
            "off" => Ok(0),
            _ => self
                .count()
                .parse(text.strip_suffix("/s").unwrap_or(text))
                .map_err(|why| self.zero_is_off(text, why)),
        }
    }

    fn native(&self, input: &Input) -> Result<u32, String> {
        match input {
            Input::Text(text) => self.parse(text.trim()),
            other => self
                .count()
                .native(other)
                .map_err(|why| self.zero_is_off(&other.to_string(), why)),
        }
    }

    fn show(&self, value: &u32) -> String {
        match value {
            0 => "off".into(),
            rate => format!("{rate}/s"),
        }
    }
}

impl Rate {
    fn zero_is_off(&self, text: &str, why: String) -> String {
        let number = text.trim().strip_suffix("/s").unwrap_or(text.trim());
        if number.parse::<u64>() == Ok(0) {
            "a rate of 0 is not a rate: write off to switch the level off".into()
        } else {
            why
        }
    }
}

/// A whole number from `min` to `max`.
#[derive(Clone, Copy, Debug)]
pub struct Count<T> {
    pub min: T,
    pub max: T,
}

impl<T> Count<T>
where
    T: Copy + PartialOrd + TryFrom<i64>,
{
    fn check(&self, number: i64) -> Result<T, String> {
        T::try_from(number)
            .ok()
            .filter(|n| (self.min..=self.max).contains(n))
            .ok_or_else(|| "out of range".into())
    }
}

impl<T> Kind for Count<T>
where
    T: Copy + PartialOrd + TryFrom<i64> + fmt::Display + Sync,
{
    type Value = T;

    fn allowed(&self) -> String {
        format!("{}..{}", self.min, self.max)
    }

    fn parse(&self, text: &str) -> Result<T, String> {
        let number = text
            .parse()
            .map_err(|_| String::from("expected a whole number"))?;
        self.check(number)
    }

    fn native(&self, input: &Input) -> Result<T, String> {
        match input {
            Input::Number(number) => self.check(*number),
            Input::Text(text) => self.parse(text.trim()),
            _ => Err("expected a whole number".into()),
        }
    }

    fn show(&self, value: &T) -> String {
        format!("{value}")
    }
}

/// A prefix length from `min` to `max`, with or without a leading `/`.
#[derive(Clone, Copy, Debug)]
pub struct PrefixLen(pub Count<u8>);

impl Kind for PrefixLen {
    type Value = u8;

    fn allowed(&self) -> String {
        self.0.allowed()
    }

    fn parse(&self, text: &str) -> Result<u8, String> {
        self.0.parse(text.strip_prefix('/').unwrap_or(text))
    }

    fn native(&self, input: &Input) -> Result<u8, String> {
        match input {
            Input::Text(text) => self.parse(text.trim()),
            other => self.0.native(other),
        }
    }

    fn show(&self, value: &u8) -> String {
        self.0.show(value)
    }
}

/// UDP ports 1..65535: `53,5353` (a TOML/JSON list `[53, 5353]`), or `none`.
#[derive(Clone, Copy, Debug)]
pub struct Ports;

fn port(number: i64) -> Result<u16, String> {
    u16::try_from(number)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("'{number}' is not a port number 1..65535"))
}

impl Kind for Ports {
    type Value = BTreeSet<u16>;

    fn allowed(&self) -> String {
        "PORT,...|none".into()
    }

    fn parse(&self, text: &str) -> Result<BTreeSet<u16>, String> {
        if text == "none" {
            return Ok(BTreeSet::new());
        }
        if text.is_empty() {
            return Err("empty: give ports, or none to watch no port".into());
        }
        text.split(',')
            .map(|item| {
                let item = item.trim();
                item.parse()
                    .map_err(|_| format!("'{item}' is not a port number 1..65535"))
                    .and_then(port)
            })
            .collect()
    }

    fn native(&self, input: &Input) -> Result<BTreeSet<u16>, String> {
        match input {
            Input::Numbers(numbers) => numbers.iter().map(|n| port(*n)).collect(),
            Input::Number(number) => port(*number).map(|port| BTreeSet::from([port])),
            Input::Text(text) => self.parse(text.trim()),
            Input::Flag(_) => Err("expected a list of port numbers".into()),
        }
    }

    fn show(&self, value: &BTreeSet<u16>) -> String {
        if value.is_empty() {
            return "none".into();
        }
        value
            .iter()
            .map(|port| format!("{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A whole number from 1 to `max`, or `off` (held as 0).
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub max: u32,
}

impl Budget {
    /// The numbers a budget is written as (off is written `off`).
    fn count(&self) -> Count<u32> {
        Count {
            min: 1,
            max: self.max,
        }
    }
}

impl Kind for Budget {
    type Value = u32;

    fn allowed(&self) -> String {
        format!("1..{}|off", self.max)
    }

    fn parse(&self, text: &str) -> Result<u32, String> {
        match text {
            "off" => Ok(0),
            _ => self.count().parse(text),
        }
    }

    fn native(&self, input: &Input) -> Result<u32, String> {
        match input {
            Input::Text(text) => self.parse(text.trim()),
            other => self.count().native(other),
        }
    }

    fn show(&self, value: &u32) -> String {
        match value {
            0 => "off".into(),
            budget => format!("{budget}"),
        }
    }
}

/// A limit per TCP port: `25:3,80:64` (port 1..65535, limit 1..65535, each
/// port once), or `none`.
#[derive(Clone, Copy, Debug)]
pub struct PortLimits;

impl Kind for PortLimits {
    type Value = BTreeMap<u16, u16>;

    fn allowed(&self) -> String {
        "PORT:MAX,...|none".into()
    }

    fn parse(&self, text: &str) -> Result<BTreeMap<u16, u16>, String> {
        let mut limits = BTreeMap::new();
        if text == "none" {
            return Ok(limits);
        }
        if text.trim().is_empty() {
            return Err("empty: give PORT:MAX,..., or none for no limit".into());
        }
        for item in text.split(',').map(str::trim) {
            let (port, max) = item
                .split_once(':')
                .ok_or_else(|| format!("'{item}' is not PORT:MAX"))?;
            let port = port
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("'{item}': '{port}' is not a port number 1..65535"))
                .and_then(self::port)?;
            let max = max
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|max| *max != 0)
                .ok_or_else(|| format!("'{item}': the limit must be 1..65535"))?;
            if limits.insert(port, max).is_some() {
                return Err(format!("port {port} is given twice"));
            }
        }
        Ok(limits)
    }

    fn show(&self, value: &BTreeMap<u16, u16>) -> String {
        if value.is_empty() {
            return "none".into();
        }
        value
            .iter()
            .map(|(port, max)| format!("{port}:{max}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(kind: &impl Kind<Value = impl fmt::Debug>, text: &str) -> String {
        format!("{:?}", kind.parse(text))
    }

    #[test]
    fn switches_take_words_and_booleans() {
        assert_eq!(Switch.parse("on"), Ok(true));
        assert_eq!(Switch.parse("no"), Ok(false));
        assert_eq!(Switch.native(&Input::Flag(true)), Ok(true));
        assert!(Switch.parse("maybe").is_err());
        assert!(Switch.native(&Input::Number(2)).is_err());
        assert_eq!(Switch.show(&false), "off");
    }

    #[test]
    fn choices_take_their_names() {
        let choice = Choice(&[("pass", 0), ("drop", 1)]);
        assert_eq!(choice.parse("drop"), Ok(1));
        assert_eq!(choice.allowed(), "pass|drop");
        assert_eq!(
            choice.parse("keep").unwrap_err(),
            "expected one of pass, drop"
        );
        assert_eq!(choice.show(&0), "pass");
        assert_eq!(choice.show(&7), "7");
    }

    #[test]
    fn spans_check_their_range_and_may_be_off() {
        let lifetime = Span {
            min: Duration::from_millis(100),
            max: Duration::from_secs(60),
            off: false,
        };
        assert_eq!(lifetime.allowed(), "100ms..1m");
        assert_eq!(lifetime.parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(lifetime.parse("50ms").unwrap_err(), "out of range");
        assert!(lifetime.parse("off").is_err());
        assert!(lifetime.native(&Input::Number(5)).is_err());
        let penalty = Span {
            min: Duration::from_secs(1),
            max: Duration::from_secs(86_400),
            off: true,
        };
        assert_eq!(penalty.allowed(), "off|1s..1d");
        for off in ["off", "0", "0s"] {
            assert_eq!(penalty.parse(off), Ok(Duration::ZERO), "{off}");
        }
        assert_eq!(penalty.show(&Duration::ZERO), "off");
        assert_eq!(penalty.show(&Duration::from_secs(600)), "10m");
    }

    #[test]
    fn rates_are_per_second_or_off() {
        let rate = Rate { max: 1000 };
        assert_eq!(rate.parse("20/s"), Ok(20));
        assert_eq!(rate.parse("20"), Ok(20));
        assert_eq!(rate.parse("off"), Ok(0));
        assert_eq!(rate.native(&Input::Number(7)), Ok(7));
        // Zero is not a rate, however it is written: off says it.
        for zero in ["0", "0/s", "00"] {
            assert_eq!(
                rate.parse(zero).unwrap_err(),
                "a rate of 0 is not a rate: write off to switch the level off",
                "{zero}"
            );
        }
        assert!(
            rate.native(&Input::Number(0))
                .unwrap_err()
                .contains("write off")
        );
        assert_eq!(text(&rate, "1001/s"), "Err(\"out of range\")");
        assert!(rate.parse("20/m").is_err());
        assert!(rate.parse("-1").is_err());
        assert_eq!(rate.show(&0), "off");
        assert_eq!(rate.show(&5), "5/s");
        assert_eq!(rate.allowed(), "1..1000/s|off");
    }

    #[test]
    fn counts_and_prefix_lengths_check_their_range() {
        let burst = Count { min: 1u32, max: 10 };
        assert_eq!(burst.parse("10"), Ok(10));
        assert_eq!(burst.native(&Input::Number(3)), Ok(3));
        assert!(burst.parse("0").is_err());
        assert!(burst.native(&Input::Number(-1)).is_err());
        let prefix = PrefixLen(Count { min: 8, max: 32 });
        assert_eq!(prefix.parse("/24"), Ok(24));
        assert_eq!(prefix.native(&Input::Number(16)), Ok(16));
        assert!(prefix.parse("7").is_err());
        assert!(prefix.native(&Input::Number(300)).is_err());
        assert_eq!(prefix.allowed(), "8..32");
    }

    #[test]
    fn an_empty_limit_list_is_refused_as_an_empty_port_list_is() {
        assert_eq!(PortLimits.parse("none"), Ok(BTreeMap::new()));
        for empty in ["", " "] {
            let err = PortLimits.parse(empty).unwrap_err();
            assert!(err.contains("empty") && err.contains("none"), "{err}");
        }
    }

    #[test]
    fn ports_are_lists_or_none() {
        assert_eq!(Ports.parse("53, 5353"), Ok(BTreeSet::from([53, 5353])));
        assert_eq!(Ports.parse("none"), Ok(BTreeSet::new()));
        assert!(Ports.parse("").unwrap_err().contains("empty"));
        assert!(
            Ports
                .native(&Input::Text(" ".into()))
                .unwrap_err()
                .contains("empty")
        );
        assert_eq!(
            Ports.native(&Input::Numbers(std::vec![123, 53])),
            Ok(BTreeSet::from([53, 123]))
        );
        assert_eq!(
            Ports.native(&Input::Numbers(std::vec![])),
            Ok(BTreeSet::new())
        );
        assert_eq!(
            Ports.parse("53,0").unwrap_err(),
            "'0' is not a port number 1..65535"
        );
        assert!(Ports.parse("70000").unwrap_err().contains("'70000'"));
        assert!(Ports.native(&Input::Numbers(std::vec![65536])).is_err());
        assert_eq!(Ports.show(&BTreeSet::from([53, 5353])), "53,5353");
        assert_eq!(Ports.show(&BTreeSet::new()), "none");
    }

    #[test]
    fn budgets_are_counts_or_off() {
        let budget = Budget { max: 100 };
        assert_eq!(budget.parse("16"), Ok(16));
        assert_eq!(budget.parse("off"), Ok(0));
        assert_eq!(budget.native(&Input::Number(7)), Ok(7));
        assert!(budget.parse("0").is_err(), "off is written off");
        assert!(budget.parse("101").is_err());
        assert!(budget.native(&Input::Flag(true)).is_err());
        assert_eq!(budget.show(&0), "off");
        assert_eq!(budget.show(&16), "16");
        assert_eq!(budget.allowed(), "1..100|off");
    }

    #[test]
    fn port_limits_are_port_max_pairs_or_none() {
        assert_eq!(
            PortLimits.parse("25:3,80:64"),
            Ok(BTreeMap::from([(25, 3), (80, 64)]))
        );
        assert_eq!(
            PortLimits.parse(" 80 : 64 , 25:3"),
            Ok(BTreeMap::from([(25, 3), (80, 64)]))
        );
        assert_eq!(PortLimits.parse("none"), Ok(BTreeMap::new()));
        assert_eq!(
            PortLimits.native(&Input::Text("25:3".into())),
            Ok(BTreeMap::from([(25, 3)]))
        );
        for (text, error) in [
            ("25", "'25' is not PORT:MAX"),
            ("25:0", "'25:0': the limit must be 1..65535"),
            ("25:70000", "the limit must be 1..65535"),
            ("0:3", "'0' is not a port number"),
            ("http:3", "'http' is not a port number"),
            ("25:3,25:4", "port 25 is given twice"),
            ("25:3,", "'' is not PORT:MAX"),
        ] {
            let err = PortLimits.parse(text).unwrap_err();
            assert!(err.contains(error), "{text}: {err}");
        }
        assert!(PortLimits.native(&Input::Number(25)).is_err());
        assert_eq!(
            PortLimits.show(&BTreeMap::from([(80, 64), (25, 3)])),
            "25:3,80:64"
        );
        assert_eq!(PortLimits.show(&BTreeMap::new()), "none");
    }
}
