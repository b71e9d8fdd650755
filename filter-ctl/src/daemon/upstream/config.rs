//! The `[upstream]` section of the daemon's config file: which BGP speaker
//! the daemon drives, what it announces for which drop reason, when, and
//! within which limits. Absent, the upstream mode is off.
//!
//! Every key is checked where it stands, so that an error names the key,
//! the value and what is allowed, at its line in the file (the settings'
//! way: the same kinds of values, from `filter_ctl_api::settings`).

use std::{fmt, net::SocketAddr, time::Duration};

use filter_common::{Action, Reason};
use filter_ctl_api::settings::{Choice, Count, Input, Kind, Span, Switch};
use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeSeed, MapAccess, Visitor},
};

use super::route::{Community, Shape};

/// The section, checked and with every default filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub speaker: SpeakerConfig,
    /// Log what would be announced and withdrawn; never change the speaker.
    pub dry_run: bool,
    /// An attack counts once its reason drops this many packets per second.
    pub attack_pps: Option<u64>,
    /// ...or once wan0 receives this share of the uplink.
    pub uplink: Option<Uplink>,
    pub trigger: Trigger,
    /// The condition must hold this long before anything is announced.
    pub sustain: Duration,
    /// Routes announced at once, at most (providers cap them).
    pub max_rules: usize,
    /// A route stays this long after its attack's end line.
    pub hold: Duration,
    /// Added to every route (the provider's own communities).
    pub communities: Vec<Community>,
    /// The LOCAL_PREF that marks the daemon's routes at the speaker. It
    /// never leaves the AS (it is not sent to an external peer), so the
    /// provider does not see it, and a restarted daemon finds its routes by
    /// it, leaving every other route of the speaker alone.
    pub mark: u32,
    /// What each drop reason announces (reasons not listed: nothing).
    pub reasons: Vec<(Reason, Shape)>,
}

/// The BGP speaker the operator runs, and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpeakerConfig {
    /// gobgpd, driven through its `gobgp` command line tool, which talks to
    /// gobgpd's gRPC API at `api`.
    Gobgp { api: SocketAddr },
    /// ExaBGP, through its process API: `filter-ctl upstream exabgp` is its
    /// process, run as `user`.
    Exabgp { user: String },
}

impl fmt::Display for SpeakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpeakerConfig::Gobgp { api } => write!(f, "gobgp (gobgpd at {api})"),
            SpeakerConfig::Exabgp { .. } => {
                f.write_str("exabgp (through its process `filter-ctl upstream exabgp`)")
            }
        }
    }
}

/// The uplink's capacity and the share of it that counts as full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uplink {
    pub bits_per_second: u64,
    pub percent: u8,
}

impl Uplink {
    /// The receive rate, in bytes per second, at which the uplink is full.
    pub fn full_bytes_per_second(&self) -> f64 {
        self.bits_per_second as f64 / 8.0 * f64::from(self.percent) / 100.0
    }
}

/// Whether either condition announces, or only both together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Any,
    All,
}

/// A component of a FlowSpec match, besides the destination (always there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    Protocol,
    SourcePort,
    Fragment,
    PacketLength,
}

impl Component {
    const NAMES: [(&'static str, Component); 4] = [
        ("protocol", Component::Protocol),
        ("source_port", Component::SourcePort),
        ("fragment", Component::Fragment),
        ("packet_length", Component::PacketLength),
    ];

    fn from_name(name: &str) -> Option<Component> {
        Self::NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, component)| *component)
    }

    fn names() -> String {
        Self::NAMES.map(|(name, _)| name).join(", ")
    }
}

/// The drop reasons announced unless the section says otherwise, and the
/// FlowSpec components each gets: the reflection floods by protocol,
/// source port and length (large responses; the real answers to the
/// gateway's own lookups are small and come from the same port), their
/// later fragments by protocol and the fragment bit.
const DEFAULT_REASONS: [(Reason, &[Component]); 6] = [
    (Reason::DropUnsolicitedDns, REFLECTION),
    (Reason::DropUnsolicitedNtp, REFLECTION),
    (Reason::DropUnsolicitedOther, REFLECTION),
    (Reason::DropNtpControl, REFLECTION),
    (Reason::DropFragment, FRAGMENTS),
    (Reason::DropOrphanFragment, FRAGMENTS),
];
const REFLECTION: &[Component] = &[
    Component::Protocol,
    Component::SourcePort,
    Component::PacketLength,
];
const FRAGMENTS: &[Component] = &[Component::Protocol, Component::Fragment];

pub const DEFAULT_API: &str = "127.0.0.1:50051";
pub const DEFAULT_MARK: u32 = 4242;
/// The user Debian's exabgp runs as (`exabgp.daemon.user`).
pub const DEFAULT_EXABGP_USER: &str = "exabgp";

const SUSTAIN: Span = Span {
    min: Duration::ZERO,
    max: Duration::from_secs(3600),
    off: false,
};
const HOLD: Span = Span {
    min: Duration::ZERO,
    max: Duration::from_secs(30 * 86_400),
    off: false,
};
const ATTACK_PPS: Count<u64> = Count {
    min: 1,
    max: 1_000_000_000,
};
const PERCENT: Count<u8> = Count { min: 1, max: 100 };
const MAX_RULES: Count<u16> = Count {
    min: 1,
    max: 10_000,
};
const MARK: Count<u32> = Count {
    min: 1,
    max: u32::MAX,
};
const SPEAKER: Choice = Choice(&[("gobgp", 0), ("exabgp", 1)]);
const MODE: Choice = Choice(&[("flowspec", 0), ("rtbh", 1)]);
const TRIGGER: Choice = Choice(&[("any", 0), ("all", 1)]);

/// The keys of the section, for errors.
const KEYS: &str = "speaker, gobgp_api, exabgp_user, mode, dry_run, attack_pps, uplink_capacity, \
                    uplink_percent, trigger, sustain, max_rules, hold, communities, mark, reasons";

/// `upstream.KEY`'s value could not be taken.
fn invalid(key: &str, input: &dyn fmt::Display, why: &str, allowed: &str) -> String {
    format!("invalid value '{input}' for upstream.{key}: {why} (allowed: {allowed})")
}

/// A value of one of the settings' kinds.
fn checked<K: Kind>(key: &str, kind: &K, input: &Input) -> Result<K::Value, String> {
    kind.native(input)
        .map_err(|why| invalid(key, input, &why, &kind.allowed()))
}

/// A bit rate: `100mbit`, `1gbit`, `1.5Gbit/s`, `500kbit`, in bits per second.
struct BitRate;

impl Kind for BitRate {
    type Value = u64;

    fn allowed(&self) -> String {
        "1kbit..10000gbit, e.g. \"100mbit\"".into()
    }

    fn parse(&self, text: &str) -> Result<u64, String> {
        let lower = text.to_ascii_lowercase();
        let lower = lower.strip_suffix("/s").unwrap_or(&lower);
        let at = lower
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or("no unit (kbit, mbit or gbit)")?;
        let (number, unit) = lower.split_at(at);
        let scale = match unit {
            "kbit" => 1e3,
            "mbit" => 1e6,
            "gbit" => 1e9,
            _ => return Err(format!("unknown unit '{unit}' (use kbit, mbit or gbit)")),
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("'{number}' is not a number"))?;
        let bits = (value * scale).round();
        if !(1e3..=1e13).contains(&bits) {
            return Err("out of range".into());
        }
        Ok(bits as u64)
    }

    fn show(&self, value: &u64) -> String {
        format!("{}kbit", value / 1000)
    }
}

/// A user's name, as `/etc/passwd` has it.
struct UserName;

impl Kind for UserName {
    type Value = String;

    fn allowed(&self) -> String {
        "a user name, e.g. \"exabgp\"".into()
    }

    fn parse(&self, text: &str) -> Result<String, String> {
        let valid = !text.is_empty()
            && text.len() <= 32
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if valid {
            Ok(text.to_owned())
        } else {
            Err("not a user name".into())
        }
    }

    fn show(&self, value: &String) -> String {
        value.clone()
    }
}

/// `IP:PORT`.
struct Address;

impl Kind for Address {
    type Value = SocketAddr;

    fn allowed(&self) -> String {
        "IP:PORT, e.g. 127.0.0.1:50051".into()
    }

    fn parse(&self, text: &str) -> Result<SocketAddr, String> {
        text.parse().map_err(|_| "not an address and port".into())
    }

    fn show(&self, value: &SocketAddr) -> String {
        value.to_string()
    }
}

/// What the file says, before the defaults and the rules between keys.
#[derive(Default)]
struct Stated {
    speaker: Option<u8>,
    api: Option<SocketAddr>,
    exabgp_user: Option<String>,
    mode: Option<u8>,
    dry_run: Option<bool>,
    attack_pps: Option<u64>,
    capacity: Option<u64>,
    percent: Option<u8>,
    trigger: Option<u8>,
    sustain: Option<Duration>,
    max_rules: Option<u16>,
    hold: Option<Duration>,
    communities: Option<Vec<Community>>,
    mark: Option<u32>,
    reasons: Vec<(Reason, ReasonChoice)>,
}

/// What the section says of one drop reason.
#[derive(Clone, Debug, PartialEq)]
enum ReasonChoice {
    Off,
    /// The section's `mode`, with the reason's default components.
    Mode,
    Rtbh,
    Flowspec(Vec<Component>),
}

impl<'de> Deserialize<'de> for Config {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SectionVisitor;

        impl<'de> Visitor<'de> for SectionVisitor {
            type Value = Config;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "the [upstream] section, with the keys {KEYS}")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Config, A::Error> {
                let mut stated = Stated::default();
                while let Some(key) = map.next_key_seed(KeySeed)? {
                    match key {
                        "speaker" => {
                            stated.speaker = Some(map.next_value_seed(Value(key, &SPEAKER))?)
                        }
                        "gobgp_api" => {
                            stated.api = Some(map.next_value_seed(Value(key, &Address))?)
                        }
                        "exabgp_user" => {
                            stated.exabgp_user = Some(map.next_value_seed(Value(key, &UserName))?)
                        }
                        "mode" => stated.mode = Some(map.next_value_seed(Value(key, &MODE))?),
                        "dry_run" => {
                            stated.dry_run = Some(map.next_value_seed(Value(key, &Switch))?)
                        }
                        "attack_pps" => {
                            stated.attack_pps = Some(map.next_value_seed(Value(key, &ATTACK_PPS))?)
                        }
                        "uplink_capacity" => {
                            stated.capacity = Some(map.next_value_seed(Value(key, &BitRate))?)
                        }
                        "uplink_percent" => {
                            stated.percent = Some(map.next_value_seed(Value(key, &PERCENT))?)
                        }
                        "trigger" => {
                            stated.trigger = Some(map.next_value_seed(Value(key, &TRIGGER))?)
                        }
                        "sustain" => {
                            stated.sustain = Some(map.next_value_seed(Value(key, &SUSTAIN))?)
                        }
                        "max_rules" => {
                            stated.max_rules = Some(map.next_value_seed(Value(key, &MAX_RULES))?)
                        }
                        "hold" => stated.hold = Some(map.next_value_seed(Value(key, &HOLD))?),
                        "mark" => stated.mark = Some(map.next_value_seed(Value(key, &MARK))?),
                        "communities" => {
                            stated.communities = Some(map.next_value_seed(CommunitiesSeed)?)
                        }
                        "reasons" => stated.reasons = map.next_value_seed(ReasonsSeed)?,
                        _ => unreachable!("KeySeed knows the keys"),
                    }
                }
                stated.resolve().map_err(de::Error::custom)
            }
        }

        deserializer.deserialize_map(SectionVisitor)
    }
}

impl Stated {
    /// The defaults, and the rules between keys.
    fn resolve(self) -> Result<Config, String> {
        let speaker = match (self.speaker, self.api, self.exabgp_user) {
            (Some(0), api, None) => SpeakerConfig::Gobgp {
                api: api.unwrap_or_else(|| DEFAULT_API.parse().expect("a valid address")),
            },
            (Some(1), None, user) => SpeakerConfig::Exabgp {
                user: user.unwrap_or_else(|| DEFAULT_EXABGP_USER.into()),
            },
            (Some(0), _, Some(_)) => {
                return Err("upstream.exabgp_user is for speaker = \"exabgp\"".into());
            }
            (Some(_), Some(_), _) => {
                return Err("upstream.gobgp_api is for speaker = \"gobgp\"".into());
            }
            _ => {
                return Err(format!(
                    "upstream.speaker is missing: which BGP speaker announces the routes (allowed: {})",
                    SPEAKER.allowed()
                ));
            }
        };
        let uplink = match (self.capacity, self.percent) {
            (Some(bits_per_second), Some(percent)) => Some(Uplink {
                bits_per_second,
                percent,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err("upstream.uplink_capacity needs upstream.uplink_percent: \
                            the share of it that counts as full"
                    .into());
            }
            (None, Some(_)) => {
                return Err("upstream.uplink_percent needs upstream.uplink_capacity: \
                            the uplink's speed, e.g. \"100mbit\""
                    .into());
            }
        };
        if self.attack_pps.is_none() && uplink.is_none() {
            return Err(
                "upstream: say when to announce: attack_pps (an attack's rate), or \
                        uplink_capacity with uplink_percent (wan0's receive rate), or both"
                    .into(),
            );
        }
        let mode_rtbh = self.mode == Some(1);
        let mut reasons = Vec::new();
        for reason in Reason::ALL
            .into_iter()
            .filter(|r| r.action() == Action::Drop)
        {
            let stated = self
                .reasons
                .iter()
                .find(|(stated, _)| *stated == reason)
                .map(|(_, choice)| choice.clone());
            let default = DEFAULT_REASONS
                .iter()
                .find(|(known, _)| *known == reason)
                .map(|(_, components)| components.to_vec());
            let shape = match (stated, default) {
                (Some(ReasonChoice::Off), _) | (None, None) => continue,
                (Some(ReasonChoice::Rtbh), _) => Shape::Rtbh,
                (Some(ReasonChoice::Flowspec(components)), _) => Shape::Flowspec(components),
                (Some(ReasonChoice::Mode) | None, default) => {
                    if mode_rtbh {
                        Shape::Rtbh
                    } else {
                        match default {
                            Some(components) => Shape::Flowspec(components),
                            None => {
                                return Err(format!(
                                    "upstream.reasons.{}: \"flowspec\" needs the components for \
                                     this reason, as a list (of {})",
                                    reason.name(),
                                    Component::names()
                                ));
                            }
                        }
                    }
                }
            };
            reasons.push((reason, shape));
        }
        Ok(Config {
            speaker,
            dry_run: self.dry_run.unwrap_or(false),
            attack_pps: self.attack_pps,
            uplink,
            trigger: if self.trigger == Some(1) {
                Trigger::All
            } else {
                Trigger::Any
            },
            sustain: self.sustain.unwrap_or(Duration::from_secs(10)),
            max_rules: usize::from(self.max_rules.unwrap_or(10)),
            hold: self.hold.unwrap_or(Duration::from_secs(600)),
            communities: self.communities.unwrap_or_default(),
            mark: self.mark.unwrap_or(DEFAULT_MARK),
            reasons,
        })
    }
}

impl Config {
    /// What `reason` announces, if anything.
    pub fn shape(&self, reason: Reason) -> Option<&Shape> {
        self.reasons
            .iter()
            .find(|(known, _)| *known == reason)
            .map(|(_, shape)| shape)
    }

    /// Whether the section still calls for routes of `kind` at all.
    pub fn announces(&self, rtbh: bool) -> bool {
        self.reasons
            .iter()
            .any(|(_, shape)| matches!(shape, Shape::Rtbh) == rtbh)
    }

    /// One line for the log: what announces what, when.
    pub fn describe(&self) -> String {
        let mut when = Vec::new();
        if let Some(pps) = self.attack_pps {
            when.push(format!("an attack's rate is {pps} pkt/s or more"));
        }
        if let Some(uplink) = self.uplink {
            when.push(format!(
                "wan0 receives {}% of {} or more",
                uplink.percent,
                super::super::units::bit_rate(uplink.bits_per_second as f64 / 8.0)
            ));
        }
        let joint = match self.trigger {
            Trigger::Any => " or ",
            Trigger::All => " and ",
        };
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, shape)| match shape {
                Shape::Rtbh => format!("{} rtbh", reason.name()),
                Shape::Flowspec(_) => format!("{} flowspec", reason.name()),
            })
            .collect();
        format!(
            "{}{} announces when {} for {}, at most {} routes, each held {} after its attack ends; \
             reasons: {}",
            if self.dry_run { "dry run: " } else { "" },
            self.speaker,
            when.join(joint),
            filter_ctl_api::settings::duration::format(self.sustain),
            self.max_rules,
            filter_ctl_api::settings::duration::format(self.hold),
            reasons.join(", ")
        )
    }
}

/// A key of the section, checked where it stands.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let key = String::deserialize(deserializer)?;
        KEYS.split(", ")
            .find(|known| *known == key)
            .ok_or_else(|| de::Error::custom(format!("unknown key upstream.{key} (known: {KEYS})")))
    }
}

/// A value, read as the settings read theirs and checked by its kind.
struct Value<'k, K>(&'static str, &'k K);

impl<'de, K: Kind> DeserializeSeed<'de> for Value<'_, K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<K::Value, D::Error> {
        let Value(key, kind) = self;
        let input = Input::deserialize(deserializer)
            .map_err(|err| de::Error::custom(format!("upstream.{key}: {err}")))?;
        checked(key, kind, &input).map_err(de::Error::custom)
    }
}

/// `communities = ["64500:666", ...]`.
struct CommunitiesSeed;

impl<'de> DeserializeSeed<'de> for CommunitiesSeed {
    type Value = Vec<Community>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer).map_err(|err| {
            de::Error::custom(format!(
                "upstream.communities: {err} (allowed: a list of \"ASN:VALUE\")"
            ))
        })?;
        texts
            .iter()
            .map(|text| {
                text.parse().map_err(|why: String| {
                    de::Error::custom(invalid(
                        "communities",
                        text,
                        &why,
                        "\"ASN:VALUE\", e.g. \"64500:666\"",
                    ))
                })
            })
            .collect()
    }
}

/// `[upstream.reasons]`: drop reason = "flowspec" | "rtbh" | "off" | [components].
struct ReasonsSeed;

impl<'de> DeserializeSeed<'de> for ReasonsSeed {
    type Value = Vec<(Reason, ReasonChoice)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        struct ReasonsVisitor;

        impl<'de> Visitor<'de> for ReasonsVisitor {
            type Value = Vec<(Reason, ReasonChoice)>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of drop reasons, e.g. drop_unsolicited_dns = \"rtbh\"")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut reasons = Vec::new();
                while let Some(reason) = map.next_key_seed(ReasonSeed)? {
                    reasons.push((reason, map.next_value_seed(ChoiceSeed(reason))?));
                }
                Ok(reasons)
            }
        }

        deserializer.deserialize_map(ReasonsVisitor)
    }
}

/// A drop reason's name, as a key of `[upstream.reasons]`.
struct ReasonSeed;

impl<'de> DeserializeSeed<'de> for ReasonSeed {
    type Value = Reason;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Reason, D::Error> {
        let name = String::deserialize(deserializer)?;
        Reason::from_name(&name)
            .filter(|reason| reason.action() == Action::Drop)
            .ok_or_else(|| {
                let drops: Vec<&str> = Reason::ALL
                    .into_iter()
                    .filter(|reason| reason.action() == Action::Drop)
                    .map(Reason::name)
                    .collect();
                de::Error::custom(format!(
                    "upstream.reasons: '{name}' is not a drop reason (drop reasons: {})",
                    drops.join(", ")
                ))
            })
    }
}

/// What the operator wants for one reason.
struct ChoiceSeed(Reason);

impl<'de> DeserializeSeed<'de> for ChoiceSeed {
    type Value = ReasonChoice;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ReasonChoice, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stated {
            Word(String),
            Components(Vec<String>),
        }
        let key = format!("reasons.{}", self.0.name());
        let allowed = format!(
            "\"flowspec\", \"rtbh\", \"off\", or a list of FlowSpec components besides the \
             destination: {}",
            Component::names()
        );
        let stated = Stated::deserialize(deserializer).map_err(|_| {
            de::Error::custom(invalid(
                &key,
                &"?",
                "expected a word or a list of words",
                &allowed,
            ))
        })?;
        match stated {
            Stated::Word(word) => match word.as_str() {
                "flowspec" => Ok(ReasonChoice::Mode),
                "rtbh" => Ok(ReasonChoice::Rtbh),
                "off" => Ok(ReasonChoice::Off),
                _ => Err(de::Error::custom(invalid(&key, &word, "unknown", &allowed))),
            },
            Stated::Components(names) => {
                let mut components = Vec::new();
                for name in &names {
                    let component = Component::from_name(name).ok_or_else(|| {
                        de::Error::custom(invalid(&key, name, "not a component", &allowed))
                    })?;
                    if !components.contains(&component) {
                        components.push(component);
                    }
                }
                components.sort_unstable();
                Ok(ReasonChoice::Flowspec(components))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        #[derive(Deserialize)]
        struct File {
            upstream: Config,
        }
        toml::from_str::<File>(text)
            .map(|file| file.upstream)
            .map_err(|err| err.message().to_owned())
    }

    #[test]
    fn the_defaults_fill_in() {
        let config = parse("[upstream]\nspeaker = \"gobgp\"\nattack_pps = 20000\n").unwrap();
        assert_eq!(
            config.speaker,
            SpeakerConfig::Gobgp {
                api: "127.0.0.1:50051".parse().unwrap()
            }
        );
        assert!(!config.dry_run);
        assert_eq!(config.attack_pps, Some(20000));
        assert_eq!((config.max_rules, config.mark), (10, 4242));
        assert_eq!(config.hold, Duration::from_secs(600));
        assert_eq!(
            config.shape(Reason::DropUnsolicitedDns),
            Some(&Shape::Flowspec(REFLECTION.to_vec()))
        );
        assert_eq!(
            config.shape(Reason::DropFragment),
            Some(&Shape::Flowspec(FRAGMENTS.to_vec()))
        );
        // SYN floods are not sent upstream unless asked.
        assert_eq!(config.shape(Reason::DropSynSource), None);
    }

    #[test]
    fn every_key_in_use() {
        let config = parse(
            r#"[upstream]
speaker = "gobgp"
gobgp_api = "127.0.0.1:50052"
mode = "rtbh"
dry_run = true
uplink_capacity = "20Mbit/s"
uplink_percent = 80
trigger = "all"
attack_pps = 1000
sustain = "2s"
max_rules = 3
hold = "1m30s"
communities = ["64500:666"]
mark = 77
[upstream.reasons]
drop_fragment = "off"
drop_unsolicited_dns = ["source_port", "protocol"]
drop_syn_global = "rtbh"
"#,
        )
        .unwrap();
        assert_eq!(
            config.uplink,
            Some(Uplink {
                bits_per_second: 20_000_000,
                percent: 80
            })
        );
        assert_eq!(config.uplink.unwrap().full_bytes_per_second(), 2_000_000.0);
        assert_eq!(config.trigger, Trigger::All);
        assert_eq!(config.sustain, Duration::from_secs(2));
        assert_eq!(config.communities, [Community(64500, 666)]);
        assert_eq!(config.shape(Reason::DropFragment), None);
        assert_eq!(
            config.shape(Reason::DropUnsolicitedDns),
            Some(&Shape::Flowspec(vec![
                Component::Protocol,
                Component::SourcePort
            ]))
        );
        // mode = "rtbh" for the others.
        assert_eq!(config.shape(Reason::DropUnsolicitedNtp), Some(&Shape::Rtbh));
        assert_eq!(config.shape(Reason::DropSynGlobal), Some(&Shape::Rtbh));
        assert!(config.announces(true) && config.announces(false));
    }

    #[test]
    fn errors_name_the_key_and_the_value() {
        let err =
            |text: &str| parse(&format!("[upstream]\nspeaker = \"gobgp\"\n{text}")).unwrap_err();
        assert_eq!(
            err("attack_pps = 10\nuplink_percent = 120\nuplink_capacity = \"1gbit\""),
            "invalid value '120' for upstream.uplink_percent: out of range (allowed: 1..100)"
        );
        assert!(
            err("attack_pps = 10\nhold = \"forever\"")
                .starts_with("invalid value 'forever' for upstream.hold"),
        );
        assert!(err("attack_pps = 10\nuplink_capacity = \"100mb\"").contains("unknown unit 'mb'"));
        assert!(
            err("attack_pps = 10\nuplink_capacity = \"100mbit\"")
                .contains("needs upstream.uplink_percent")
        );
        assert!(err("").contains("say when to announce"));
        assert!(err("attack_pps = 10\nspeed = 3").starts_with("unknown key upstream.speed"));
        assert!(
            err("attack_pps = 10\n[upstream.reasons]\npass_ipv4 = \"rtbh\"")
                .contains("'pass_ipv4' is not a drop reason")
        );
        assert!(
            err("attack_pps = 10\n[upstream.reasons]\ndrop_fragment = [\"ttl\"]")
                .starts_with("invalid value 'ttl' for upstream.reasons.drop_fragment")
        );
        assert!(
            err("attack_pps = 10\n[upstream.reasons]\ndrop_syn_global = \"flowspec\"")
                .contains("needs the components")
        );
        assert!(err("attack_pps = 10\ncommunities = [\"666\"]").contains("upstream.communities"));
        assert!(err("attack_pps = 10\ngobgp_api = \"localhost\"").contains("upstream.gobgp_api"));
        let missing = parse("[upstream]\nattack_pps = 10\n").unwrap_err();
        assert!(missing.contains("upstream.speaker is missing"), "{missing}");
    }
}
