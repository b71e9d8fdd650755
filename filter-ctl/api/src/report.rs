//! What filter-ctl reports as JSON, one type per command: `stats --json`
//! ([`Stats`]), `stats --tunnelled --json` ([`Tunnelled`]), `status --json` (a list of [`Status`]), `allow|deny list
//! --json` (a list of [`ListedEntry`]), `top --json` (a list of
//! [`TopEntry`]) and `config --json` ([`crate::settings::Settings`]). filter-ctl prints exactly these types;
//! the tests and the benchmark read them back with the same types.
//!
//! The field names are part of the command line's interface: scripts read
//! them. Reasons and list sources appear by their stable names
//! ([`Reason::name`], [`ListSource::name`]).

use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use filter_common::{Action, Direction, Encap, ListSource, Reason};

/// Packets and bytes counted under one reason, summed over CPUs: one row of
/// `stats --json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCount {
    #[serde(with = "reason_by_name")]
    pub reason: Reason,
    #[serde(with = "DirectionName")]
    pub direction: Direction,
    pub action: CountedAction,
    pub packets: u64,
    pub bytes: u64,
}

/// What happened to the packets of a row: the reason's own action, or (for
/// drop and tx reasons in monitor mode) `would_drop` / `would_tx`: passed
/// untouched, but counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountedAction {
    Pass,
    Drop,
    WouldDrop,
    /// Answered from XDP (the DNS slip reply).
    Tx,
    WouldTx,
}

impl CountedAction {
    pub fn name(self) -> &'static str {
        match self {
            CountedAction::Pass => "pass",
            CountedAction::Drop => "drop",
            CountedAction::WouldDrop => "would_drop",
            CountedAction::Tx => "tx",
            CountedAction::WouldTx => "would_tx",
        }
    }

    /// Monitor mode's row of a reason with this action, if it has one.
    pub fn monitored(action: Action) -> Option<CountedAction> {
        match action {
            Action::Pass => None,
            Action::Drop => Some(CountedAction::WouldDrop),
            Action::Tx => Some(CountedAction::WouldTx),
        }
    }

    /// A monitor mode row (would_drop, would_tx).
    pub fn is_monitored(self) -> bool {
        matches!(self, CountedAction::WouldDrop | CountedAction::WouldTx)
    }
}

impl From<Action> for CountedAction {
    fn from(action: Action) -> Self {
        match action {
            Action::Pass => CountedAction::Pass,
            Action::Drop => CountedAction::Drop,
            Action::Tx => CountedAction::Tx,
        }
    }
}

/// `stats --json`: a row for every reason in reason order, then a
/// `would_drop` row for every drop reason and a `would_tx` row for every tx
/// reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Stats(pub Vec<ReasonCount>);

impl Stats {
    /// What was counted under `reason` (for drop reasons: really dropped).
    pub fn counted(&self, reason: Reason) -> Option<&ReasonCount> {
        self.0
            .iter()
            .find(|row| row.reason == reason && !row.action.is_monitored())
    }

    /// What monitor mode passed that `reason` would have dropped (or, for a
    /// tx reason, answered).
    pub fn would_drop(&self, reason: Reason) -> Option<&ReasonCount> {
        self.0
            .iter()
            .find(|row| row.reason == reason && row.action.is_monitored())
    }

    /// The rows of `self` less those of `before` (counters only grow; a row
    /// missing from `before` counts from zero).
    pub fn since(&self, before: &Stats) -> Stats {
        Stats(
            self.0
                .iter()
                .map(|row| {
                    let earlier = before
                        .0
                        .iter()
                        .find(|b| b.reason == row.reason && b.action == row.action);
                    ReasonCount {
                        packets: row.packets.saturating_sub(earlier.map_or(0, |b| b.packets)),
                        bytes: row.bytes.saturating_sub(earlier.map_or(0, |b| b.bytes)),
                        ..*row
                    }
                })
                .collect(),
        )
    }
}

/// `stats --tunnelled --json`: the packets that came inside a tunnel the
/// filter unwraps (IP inside IP on the Ethernet device), one row for each
/// encapsulation and reason that counted any, by the reason the rules gave
/// the packet inside. `stats` counts them too: these rows say which of its
/// packets came tunnelled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tunnelled(pub Vec<TunnelledCount>);

/// Packets of one encapsulation whose inner packets got one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelledCount {
    /// `ipv4_in_ipv6` (DS-Lite, MAP-E) or `ipv6_in_ipv4` (6in4, 6rd).
    #[serde(with = "encap_by_name")]
    pub encap: Encap,
    #[serde(with = "reason_by_name")]
    pub reason: Reason,
    pub packets: u64,
    /// The outer packets' bytes.
    pub bytes: u64,
}

impl Tunnelled {
    /// The row of `encap` and `reason`, if it counted any.
    pub fn counted(&self, encap: Encap, reason: Reason) -> Option<&TunnelledCount> {
        self.0
            .iter()
            .find(|row| row.encap == encap && row.reason == reason)
    }
}

/// Where and how the filter is attached to one interface: one element of
/// `status --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub iface: String,
    /// False when pins remain but the interface is gone (deleted or moved).
    pub iface_present: bool,
    /// Both programs are attached to the interface, per the kernel (not
    /// just pinned).
    pub attached: bool,
    /// Where the XDP link is attached, per the kernel.
    pub xdp_link: LinkState,
    /// Where the egress program is attached, per the kernel.
    pub egress_link: LinkState,
    /// What is wrong and the command that fixes it: a severed or renamed
    /// interface, an interrupted attach, missing pins. Empty when healthy.
    #[serde(default)]
    pub problems: Vec<String>,
    pub xdp_mode: Option<XdpMode>,
    /// What the interface's frames start with, which the programs were
    /// loaded to parse; `None` when the interface is not here.
    #[serde(default)]
    pub link_layer: Option<LinkLayer>,
    pub xdp_link_id: Option<u32>,
    pub xdp_program_id: Option<u32>,
    pub egress_hook: Option<EgressHook>,
    pub egress_program_id: Option<u32>,
    /// The interface's pin directory, as the operator names it.
    pub pin_dir: PathBuf,
    pub maps: Vec<MapStatus>,
}

impl Status {
    /// The map called `name` (see `filter_common::map`).
    pub fn map(&self, name: &str) -> Option<&MapStatus> {
        self.maps.iter().find(|map| map.name == name)
    }
}

/// One pinned map of a [`Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapStatus {
    pub name: String,
    pub id: u32,
    /// The kernel's map type, e.g. `Array`, `LpmTrie`.
    pub kind: String,
    pub max_entries: u32,
    /// Entries in use, where that means something: watched ports, live
    /// solicited queries (and buckets holding one), tracked fragmented
    /// datagrams, SYN and query limit slots not full again (charged
    /// recently), live allow/deny prefixes of the live copy (the spare copy
    /// counts 0), list tries flagged in use; the TCP defence's service ports
    /// seen, ports with a connection limit, live handshakes (and buckets
    /// holding one), half-open and in-flight counters with a unit in use,
    /// tracked connections, sources with a connection count. `None` for the
    /// maps where every element is always there (counters, the config, the
    /// samplers' state, the slip's program and scratch) and the event ring.
    pub entries: Option<u32>,
}

/// A filter's pins in any network namespace: one element of `status --all
/// --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedFilter {
    /// The inode of the network namespace the pins belong to.
    pub netns: u64,
    /// The namespace of the command that reported it.
    pub this_netns: bool,
    /// False when no process and no `ip netns` name keeps the namespace:
    /// the filter was left behind when it was deleted.
    pub netns_exists: bool,
    pub iface: String,
    /// The interface index of its XDP link (0: severed); `None`: no link pinned.
    pub xdp_ifindex: Option<u32>,
    pub pin_dir: PathBuf,
}

/// Where one of the filter's links is attached, per the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LinkState {
    /// Nothing pinned for it.
    Missing,
    /// Attached to the interface the pins are named after.
    Attached,
    /// Its interface was deleted: the link holds its program, which runs nowhere.
    Severed,
    /// Attached to another interface than the one named like the pins: the
    /// interface was renamed (`name` is its name now), or the name now
    /// belongs to an interface the link is not on.
    Elsewhere { ifindex: u32, name: Option<String> },
}

impl LinkState {
    pub fn is_attached(&self) -> bool {
        *self == LinkState::Attached
    }

    /// `attached`, `severed`, `missing`, `attached to wan1 (ifindex 7)`.
    pub fn describe(&self) -> String {
        match self {
            LinkState::Missing => "missing".into(),
            LinkState::Attached => "attached".into(),
            LinkState::Severed => "severed".into(),
            LinkState::Elsewhere { ifindex, name } => format!(
                "attached to {} (ifindex {ifindex})",
                name.as_deref().unwrap_or("an interface of another name")
            ),
        }
    }
}

/// How XDP runs on the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// In the driver, before any socket buffer is allocated.
    Native,
    /// Generic XDP in the network stack: works everywhere, slower.
    Skb,
}

impl XdpMode {
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Skb => "skb",
        }
    }
}

/// What an interface's frames start with: how the programs parse them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkLayer {
    /// An Ethernet header (VLAN tags and PPPoE sessions parsed behind it).
    Ethernet,
    /// The IP header: a device without a link-layer header (ppp, WireGuard,
    /// IP tunnels, tun), where XDP runs in generic (skb) mode only.
    Ip,
}

impl LinkLayer {
    pub fn name(self) -> &'static str {
        match self {
            LinkLayer::Ethernet => "ethernet",
            LinkLayer::Ip => "ip",
        }
    }
}

/// How the egress program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EgressHook {
    /// A TCX bpf_link (Linux 6.6 and later).
    Tcx,
    /// A netlink clsact filter (kernels before 6.6).
    Clsact,
}

impl EgressHook {
    pub fn name(self) -> &'static str {
        match self {
            EgressHook::Tcx => "tcx",
            EgressHook::Clsact => "clsact",
        }
    }
}

/// One live entry of an allow or deny list: one element of `allow|deny list --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedEntry {
    /// The prefix, host bits clear: `203.0.113.0/24`, `2001:db8::1/128`.
    pub cidr: IpNet,
    /// Milliseconds until it expires; `None`: never.
    pub expires_in_ms: Option<u64>,
    /// Who made it: `operator` (filter-ctl) or `syn_penalty`.
    #[serde(with = "ListSourceName")]
    pub reason: ListSource,
}

/// One row of `top --json`: a source (or a source prefix) of packets
/// dropped under one reason, with its estimated share of them.
///
/// Estimates: the sampled drop events of the reason are split by source,
/// and each source's share of the events (of their bytes) is applied to the
/// exact packet (byte) counters of the reason over the same seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopEntry {
    #[serde(with = "reason_by_name")]
    pub reason: Reason,
    /// `source` (an address) or `prefix` (IPv4 /24, IPv6 /48).
    pub kind: TopKind,
    /// The address, or the prefix as `198.51.100.0/24`.
    pub source: String,
    /// Estimated packets and bytes dropped from it.
    pub packets: u64,
    pub bytes: u64,
    /// Its share of the reason's sampled events, 0..1.
    pub share: f64,
    /// The sampled events behind the estimate.
    pub sampled: u64,
}

/// What a [`TopEntry`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopKind {
    Source,
    Prefix,
}

/// The name of a [`Direction`] in reports: `ingress`, `egress`.
pub fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// [`Direction`] by its name (the same as [`direction_name`]).
#[derive(Serialize, Deserialize)]
#[serde(remote = "Direction", rename_all = "lowercase")]
enum DirectionName {
    Ingress,
    Egress,
}

/// [`ListSource`] by its name (the same as [`ListSource::name`]).
#[derive(Serialize, Deserialize)]
#[serde(remote = "ListSource", rename_all = "snake_case")]
enum ListSourceName {
    Unknown,
    Operator,
    SynPenalty,
    ConfigFile,
}

/// [`Reason`] by its name.
mod reason_by_name {
    use super::*;

    pub fn serialize<S: Serializer>(reason: &Reason, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(reason.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Reason, D::Error> {
        let name = String::deserialize(deserializer)?;
        Reason::from_name(&name)
            .ok_or_else(|| de::Error::custom(format!("unknown reason '{name}'")))
    }
}

mod encap_by_name {
    use super::*;

    pub fn serialize<S: Serializer>(encap: &Encap, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(encap.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Encap, D::Error> {
        let name = String::deserialize(deserializer)?;
        Encap::from_name(&name)
            .ok_or_else(|| de::Error::custom(format!("unknown encapsulation '{name}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnelled_rows_keep_their_json_names() {
        let rows = Tunnelled(std::vec![TunnelledCount {
            encap: Encap::Ipv4InIpv6,
            reason: Reason::DropUnsolicitedDns,
            packets: 3,
            bytes: 420,
        }]);
        let json = serde_json::to_string(&rows).unwrap();
        assert_eq!(
            json,
            r#"[{"encap":"ipv4_in_ipv6","reason":"drop_unsolicited_dns","packets":3,"bytes":420}]"#
        );
        assert_eq!(serde_json::from_str::<Tunnelled>(&json).unwrap(), rows);
        let unknown = json.replace("ipv4_in_ipv6", "gre");
        let error = serde_json::from_str::<Tunnelled>(&unknown).unwrap_err();
        assert!(
            error.to_string().contains("unknown encapsulation 'gre'"),
            "{error}"
        );
    }

    fn row(reason: Reason, action: CountedAction, packets: u64) -> ReasonCount {
        ReasonCount {
            reason,
            direction: reason.direction(),
            action,
            packets,
            bytes: packets * 100,
        }
    }

    #[test]
    fn stats_rows_keep_their_json_names() {
        let stats = Stats(std::vec![
            row(Reason::PassIpv4, CountedAction::Pass, 3),
            row(Reason::DropSynSource, CountedAction::WouldDrop, 2),
            row(Reason::EgressOther, CountedAction::Pass, 1),
        ]);
        let json = serde_json::to_string(&stats).unwrap();
        assert!(
            json.starts_with(
                "[{\"reason\":\"pass_ipv4\",\"direction\":\"ingress\",\"action\":\"pass\",\
             \"packets\":3,\"bytes\":300}"
            ),
            "{json}"
        );
        assert!(json.contains("\"action\":\"would_drop\""), "{json}");
        assert!(json.contains("\"direction\":\"egress\""), "{json}");
        assert_eq!(serde_json::from_str::<Stats>(&json).unwrap(), stats);
        let err = serde_json::from_str::<Stats>(&json.replace("pass_ipv4", "pass_ipv5"));
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("unknown reason 'pass_ipv5'")
        );
    }

    #[test]
    fn stats_find_rows_and_subtract() {
        let before = Stats(std::vec![
            row(Reason::DropSynSource, CountedAction::Drop, 5),
            row(Reason::DropSynSource, CountedAction::WouldDrop, 1),
        ]);
        let after = Stats(std::vec![
            row(Reason::DropSynSource, CountedAction::Drop, 8),
            row(Reason::DropSynSource, CountedAction::WouldDrop, 4),
            row(Reason::PassSyn, CountedAction::Pass, 2),
        ]);
        let delta = after.since(&before);
        assert_eq!(delta.counted(Reason::DropSynSource).unwrap().packets, 3);
        assert_eq!(delta.would_drop(Reason::DropSynSource).unwrap().bytes, 300);
        assert_eq!(delta.counted(Reason::PassSyn).unwrap().packets, 2);
        assert!(delta.would_drop(Reason::PassSyn).is_none());
        assert_eq!(
            before
                .since(&after)
                .counted(Reason::DropSynSource)
                .unwrap()
                .packets,
            0
        );
    }

    #[test]
    fn names_agree_with_the_shared_definitions() {
        for action in [
            CountedAction::Pass,
            CountedAction::Drop,
            CountedAction::WouldDrop,
            CountedAction::Tx,
            CountedAction::WouldTx,
        ] {
            assert_eq!(serde_json::to_value(action).unwrap(), action.name());
        }
        for reason in Reason::ALL {
            let monitored = CountedAction::monitored(reason.action());
            assert_eq!(monitored.is_some(), reason.action() != Action::Pass);
            assert!(monitored.is_none_or(CountedAction::is_monitored));
        }
        for direction in [Direction::Ingress, Direction::Egress] {
            let row = ReasonCount {
                direction,
                ..row(Reason::PassIpv4, CountedAction::Pass, 1)
            };
            let json = serde_json::to_value(row).unwrap();
            assert_eq!(json["direction"], direction_name(direction));
        }
        for mode in [XdpMode::Native, XdpMode::Skb] {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.name());
        }
        for layer in [LinkLayer::Ethernet, LinkLayer::Ip] {
            assert_eq!(serde_json::to_value(layer).unwrap(), layer.name());
        }
        for hook in [EgressHook::Tcx, EgressHook::Clsact] {
            assert_eq!(serde_json::to_value(hook).unwrap(), hook.name());
        }
        for source in [
            ListSource::Unknown,
            ListSource::Operator,
            ListSource::SynPenalty,
            ListSource::ConfigFile,
        ] {
            let entry = ListedEntry {
                cidr: "192.0.2.0/24".parse().unwrap(),
                expires_in_ms: None,
                reason: source,
            };
            let json = serde_json::to_value(&entry).unwrap();
            assert_eq!(json["reason"], source.name());
            assert_eq!(json["cidr"], "192.0.2.0/24");
            assert_eq!(serde_json::from_value::<ListedEntry>(json).unwrap(), entry);
        }
    }

    #[test]
    fn status_keeps_its_json_names() {
        let status = Status {
            iface: "wan0".into(),
            iface_present: true,
            attached: true,
            xdp_link: LinkState::Attached,
            egress_link: LinkState::Elsewhere {
                ifindex: 7,
                name: Some("wan1".into()),
            },
            problems: std::vec!["renamed".into()],
            xdp_mode: Some(XdpMode::Native),
            link_layer: Some(LinkLayer::Ip),
            xdp_link_id: Some(7),
            xdp_program_id: Some(8),
            egress_hook: Some(EgressHook::Tcx),
            egress_program_id: Some(9),
            pin_dir: "/sys/fs/bpf/wan-filter/net1/wan0".into(),
            maps: std::vec![MapStatus {
                name: "STATS".into(),
                id: 3,
                kind: "PerCpuArray".into(),
                max_entries: 48,
                entries: None,
            }],
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["xdp_mode"], "native");
        assert_eq!(json["link_layer"], "ip");
        assert_eq!(json["egress_hook"], "tcx");
        assert_eq!(json["pin_dir"], "/sys/fs/bpf/wan-filter/net1/wan0");
        assert_eq!(json["maps"][0]["max_entries"], 48);
        assert_eq!(json["xdp_link"]["state"], "attached");
        assert_eq!(json["egress_link"]["state"], "elsewhere");
        assert_eq!(json["egress_link"]["name"], "wan1");
        let back: Status = serde_json::from_value(json).unwrap();
        assert_eq!(back.map("STATS").unwrap().id, 3);
        assert_eq!(back, status);
    }
}
