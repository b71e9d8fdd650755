//! filter-ctl: the command line over the filter_ctl library. clap checks
//! every argument first (settings, prefixes and durations have value
//! parsers), so a bad one changes nothing; each command then calls the
//! library once and prints its result, as text or as the JSON of the
//! `filter_ctl_api::report` types.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use clap_mangen::roff::{Roff, bold, italic, roman};
use filter_ctl::{
    attach::{self, ModeChoice},
    daemon::{self, attack::Thresholds, logging::LogFormat},
    iface::Interface,
    listfile::{self, FileLists},
    lists::{self, Cidr, List},
    pins::{self, IfacePins, PinRoot},
    require_root,
    settings::SettingsMaps,
    stats, status, textfile,
};
use filter_ctl_api::{
    report::{Stats, Tunnelled},
    settings::{Assignment, Assignments, SETTINGS, Settings},
};

/// Drops unsolicited DNS/NTP responses and SYN floods on a gateway's WAN interface,
/// with an XDP program on ingress and a TC program on egress.
///
/// The filter stays attached after filter-ctl exits: its maps and links are pinned
/// under the pin root, one directory per network namespace and interface, and later
/// calls work on that live state.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    filter-ctl attach --iface wan0\n  \
    filter-ctl status\n  \
    filter-ctl stats --iface wan0 --watch 1\n  \
    filter-ctl set --iface wan0 monitor=on solicited_lifetime=5s\n  \
    filter-ctl config --iface wan0\n  \
    filter-ctl set --iface wan0 syn_source_rate=5/s syn_penalty=10m\n  \
    filter-ctl allow add --iface wan0 192.0.2.53 2001:db8:53::/48\n  \
    filter-ctl deny add --iface wan0 203.0.113.0/24 --for 1h\n  \
    filter-ctl daemon --iface wan0 --config /etc/wan-filter/wan0.toml\n  \
    filter-ctl top --iface wan0 --seconds 30\n  \
    filter-ctl detach --iface wan0\n  \
    ip netns exec lab filter-ctl attach --iface wan0   # works inside namespaces too"
)]
struct Cli {
    /// Where maps and links are pinned. Under `ip netns exec`, which hides
    /// /sys/fs/bpf, the host's bpffs is used (reached through a process in
    /// the host's mount namespace, such as the calling shell).
    #[arg(long, global = true, env = pins::ROOT_ENV, default_value = pins::DEFAULT_ROOT)]
    pin_root: PathBuf,

    #[command(subcommand)]
    command: Command,
}

/// The interface a command works on.
#[derive(Args)]
struct Iface {
    /// The WAN interface, e.g. wan0, in this network namespace.
    #[arg(long, value_name = "IFACE", value_parser = parse_iface)]
    iface: String,
}

/// `--iface`: an interface's name as Linux allows it (never a path, never
/// an alias such as wan0:1).
fn parse_iface(name: &str) -> Result<String, String> {
    filter_ctl::iface::check_name(name).map(|()| name.to_owned())
}

impl Iface {
    /// The pins of the filter attached to it; an error if it is not attached.
    fn attached(&self, pin_root: &Path) -> anyhow::Result<IfacePins> {
        PinRoot::open(pin_root, false)?.attached(&self.iface)
    }

    /// Its pins, locked for a change (see `attach::lock_for_change`).
    fn for_change(&self, pin_root: &Path) -> anyhow::Result<(pins::IfaceLock, IfacePins)> {
        attach::lock_for_change(&PinRoot::open(pin_root, false)?, &self.iface)
    }
}

/// How a reading command prints.
#[derive(Args)]
struct Output {
    /// Print JSON instead of text (field names are stable).
    #[arg(long)]
    json: bool,
}

impl Output {
    fn print(
        &self,
        report: &impl serde::Serialize,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(report)?);
        } else {
            print!("{}", text());
        }
        Ok(())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Load the filter and attach it to an interface (XDP ingress + TC egress).
    ///
    /// Attaching where it is already attached replaces the programs atomically
    /// and keeps maps and counters.
    ///
    /// The interface is an Ethernet device, or a device without a link-layer
    /// header (ppp, WireGuard, tun, ipip, ip6tnl, sit), whose packets the
    /// filter parses from the IP header in generic (skb) mode.
    Attach {
        #[command(flatten)]
        target: Iface,
        /// XDP mode: auto tries native and falls back to generic (skb);
        /// devices without an Ethernet header have generic mode only.
        #[arg(long, value_enum, default_value_t)]
        mode: ModeChoice,
        /// A TOML file of settings (the keys of `set`), checked before
        /// attaching; its `allow` and `deny` lists are put in place after.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Remove the filter from an interface: programs, links, maps and pins.
    Detach {
        #[command(flatten)]
        target: Iface,
    },
    /// Show where the filter is attached, its mode, program ids and maps,
    /// and what is wrong (a deleted or renamed interface, an interrupted
    /// attach) with the command that fixes it.
    ///
    /// Exit status, for scripts: 3 when a filter listed is not attached (a
    /// deleted interface's severed links, egress missing), or with --iface,
    /// when the filter is not attached to IFACE at all; 1 on an error; 0
    /// otherwise (also when nothing is attached and no --iface was given,
    /// and with --all).
    Status {
        /// Only this interface (default: every interface in this network namespace).
        #[arg(long, value_name = "IFACE", conflicts_with = "all", value_parser = parse_iface)]
        iface: Option<String>,
        /// List the pins of every network namespace instead, also of
        /// namespaces that are gone (`filter-ctl cleanup` removes those).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Remove the pins of filters whose network namespace is gone (deleted
    /// with the filter attached): their programs run nowhere.
    Cleanup {
        /// Only show what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Change settings of the running filter: no reattach, counters and state kept.
    ///
    /// All assignments are checked first; if one is rejected nothing changes.
    #[command(after_help = settings_help())]
    Set {
        #[command(flatten)]
        target: Iface,
        /// KEY=VALUE, e.g. monitor=on solicited_lifetime=5s dns_ports=53,5353
        #[arg(required = true, value_name = "KEY=VALUE")]
        assignments: Vec<Assignment>,
    },
    /// Apply a TOML file of settings to the running filter: the keys of `set`
    /// (see `filter-ctl set --help`), e.g. `monitor = true`, `dns_ports = [53, 5353]`,
    /// `solicited_lifetime = "5s"`. If one is rejected nothing changes.
    ///
    /// Its `allow` and `deny` lists (`deny = ["203.0.113.0/24", { prefix =
    /// "198.51.100.7", for = "7d" }]`, or `until = 2027-01-31`) replace the
    /// entries an earlier file put there; entries added by hand stay.
    Apply {
        #[command(flatten)]
        target: Iface,
        /// The TOML file (at most 1 MiB); `filter-ctl config` prints one.
        file: PathBuf,
    },
    /// Show the live settings as a TOML file that `apply` takes back.
    Config {
        #[command(flatten)]
        target: Iface,
        #[command(flatten)]
        output: Output,
    },
    /// Print the manual page (roff) for filter-ctl: `filter-ctl man | man -l -`.
    Man,
    /// The allow list: sources (CIDR prefixes) that skip every drop rule.
    ///
    /// For monitoring hosts and upstream resolvers. Allow wins over deny.
    /// Changes live in the filter's maps, which a reboot empties: entries to
    /// keep go in the daemon's config file (`allow = [...]`).
    Allow {
        #[command(subcommand)]
        action: ListAction,
    },
    /// The deny list: sources (CIDR prefixes) dropped before any other rule.
    ///
    /// The SYN penalty (syn_penalty) adds entries here too. Changes live in
    /// the filter's maps, which a reboot empties: entries to keep go in the
    /// daemon's config file (`deny = [...]`).
    Deny {
        #[command(subcommand)]
        action: ListAction,
    },
    /// Run as a service: attach (or adopt the attached filter), export
    /// metrics, log attacks, reload the config; never detaches.
    ///
    /// The filter keeps filtering if the daemon stops or crashes; a restarted
    /// daemon adopts it with its counters, settings and lists. It serves
    /// Prometheus metrics at http://LISTEN/metrics, reads the sampled drop
    /// events (for `top` and the attack lines), logs "attack started/ended"
    /// lines when a drop reason's rate crosses --attack-pps, reloads the
    /// config file on SIGHUP and when it changes, removes expired list
    /// entries, and attaches again when the interface is recreated.
    Daemon {
        #[command(flatten)]
        target: Iface,
        /// A TOML file of settings (the keys of `set`): the filter's whole
        /// configuration, keys left out take their defaults, applied at
        /// start and at every reload; its `allow` and `deny` lists are put
        /// back each time (lists added by hand do not survive a reboot). If
        /// it does not exist yet, the filter keeps its settings until it is made.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where to serve /metrics (port 0: any free port, logged). Anyone
        /// who reaches it reads every setting, counter and dropped source
        /// address: on an address other than loopback, allow only the
        /// scraper to the port (a firewall rule).
        #[arg(long, value_name = "ADDR:PORT", default_value = daemon::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// XDP mode when the daemon attaches the filter itself.
        #[arg(long, value_enum, default_value_t)]
        mode: ModeChoice,
        /// A drop reason counting this many packets per second starts an attack.
        #[arg(long, value_name = "PKT/S", default_value_t = 1000,
              value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        attack_pps: u64,
        /// An attack ends after this long below half of --attack-pps (1s..1h).
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_quiet)]
        attack_quiet: Duration,
        /// Log lines as text or as JSON objects (stderr either way).
        #[arg(long, value_enum, default_value_t)]
        log_format: LogFormat,
    },
    /// The top sources and prefixes of dropped packets and bytes, per reason.
    ///
    /// Packets and bytes per source are estimates: each source's share of the
    /// sampled drop events (sample_rate), applied to the exact counters of its
    /// reason. Asks the daemon if one runs, otherwise reads the drop events
    /// for SECONDS itself.
    Top {
        #[command(flatten)]
        target: Iface,
        /// The last SECONDS (1..600).
        #[arg(long, value_name = "SECONDS", default_value_t = 10,
              value_parser = clap::value_parser!(u64).range(1..=daemon::top::MAX_SECONDS))]
        seconds: u64,
        #[command(flatten)]
        output: Output,
    },
    /// The upstream mode: attacks handed to the provider through a BGP
    /// speaker (the `[upstream]` section of the daemon's config).
    Upstream {
        #[command(subcommand)]
        action: UpstreamAction,
    },
    /// Print a shell completion script: bash, zsh or fish.
    ///
    /// e.g. `filter-ctl completions bash > /usr/share/bash-completion/completions/filter-ctl`.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Show packet and byte counters per verdict reason, summed over CPUs.
    ///
    /// The table ends with the packets that came inside a tunnel the filter
    /// unwraps (IPv4 inside IPv6, IPv6 inside IPv4), when there were any.
    Stats {
        #[command(flatten)]
        target: Iface,
        #[command(flatten)]
        output: Output,
        /// Print again every SECS seconds, with rates, until Ctrl-C (with
        /// --json: one line of JSON each time).
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        watch: Option<u64>,
        /// Only the tunnelled packets: by encapsulation (ipv4_in_ipv6,
        /// ipv6_in_ipv4) and the reason the packet inside got. They are
        /// counted in the other rows too.
        #[arg(long, conflicts_with = "watch")]
        tunnelled: bool,
    },
}

/// `upstream` subcommands.
#[derive(Subcommand)]
enum UpstreamAction {
    /// List the routes announced upstream (FlowSpec rules, RTBH routes), why
    /// and until when, and the totals.
    ///
    /// Asks the daemon running for IFACE. Without a daemon, with --config,
    /// lists the routes the speaker holds with the daemon's mark.
    Status {
        #[command(flatten)]
        target: Iface,
        /// The daemon's config file, to reach the speaker when no daemon runs.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        output: Output,
    },
    /// ExaBGP's process for the daemon: put it in ExaBGP's configuration
    /// (`process wan-filter { run /usr/sbin/filter-ctl upstream exabgp
    /// --iface wan0; encoder text; }`), never run it by hand.
    ///
    /// It connects to the daemon of IFACE and writes the daemon's
    /// announcements and withdrawals as ExaBGP commands to its stdout. It
    /// runs as ExaBGP's user (root is not needed).
    Exabgp {
        /// The daemon's interface.
        #[arg(long, value_name = "IFACE")]
        iface: String,
    },
}

/// The shells `completions` writes for (the Debian package installs all three).
#[derive(Clone, Copy, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl From<Shell> for clap_complete::Shell {
    fn from(shell: Shell) -> Self {
        match shell {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// `allow` and `deny` subcommands. `add` and `del` first remove expired entries.
#[derive(Subcommand)]
enum ListAction {
    /// Add prefixes, e.g. 203.0.113.0/24 or 2001:db8::/48 (a bare address is a
    /// /32 or /128); an existing entry gets the new expiry.
    Add {
        #[command(flatten)]
        target: Iface,
        /// Prefixes with no bits set beyond their length (203.0.113.5/24 is refused).
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<Cidr>,
        /// Remove the entry after this long, 1s..365d (e.g. 30s, 10m, 2h, 7d, 1h30m).
        /// Without it the entry stays until deleted.
        #[arg(long = "for", value_name = "DURATION", value_parser = lists::parse_for)]
        lasting: Option<Duration>,
        /// Add prefixes wider than /8 (IPv4) or /16 (IPv6) too, such as
        /// 0.0.0.0/0: without it they are refused, since they deny (or
        /// exempt from every rule) a large part of the Internet.
        #[arg(long)]
        force: bool,
    },
    /// Remove prefixes (exactly as listed).
    Del {
        #[command(flatten)]
        target: Iface,
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<Cidr>,
    },
    /// Show the live entries with their expiry and who added them.
    List {
        #[command(flatten)]
        target: Iface,
        #[command(flatten)]
        output: Output,
    },
}

fn main() {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    if let Command::Daemon { log_format, .. } = &cli.command {
        // The daemon keeps Rust's ignored SIGPIPE: a scraper or `top`
        // hanging up must not kill it (the write fails with EPIPE instead).
        daemon::logging::init(*log_format);
    } else {
        // The commands die quietly on a closed pipe (`filter-ctl man |
        // head`), as Unix tools do, instead of panicking on the next print.
        // Changes are written before anything is printed.
        // SAFETY: setting a signal's disposition to the default, at start.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .format_timestamp(None)
            .format_target(false)
            .init();
    }
    let bridge = matches
        .subcommand_matches("upstream")
        .and_then(|upstream| upstream.subcommand_name())
        == Some("exabgp");
    let checked = match matches.subcommand_name() {
        Some("man" | "completions") | None => Ok(()),
        // ExaBGP's process runs as ExaBGP's user.
        Some("upstream") if bridge => Ok(()),
        Some(command) => require_root(command),
    };
    if let Err(err) = checked.and_then(|()| run(cli)) {
        eprintln!("filter-ctl: error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let pin_root = &cli.pin_root;
    match cli.command {
        Command::Attach {
            target,
            mode,
            config,
        } => {
            let iface = Interface::lookup(&target.iface)?;
            // Check the file before touching the interface.
            let file = config.as_deref().map(SettingsFile::read).transpose()?;
            if let Some(file) = &file {
                file.check(&Settings::default())?;
            }
            let assignments = file.as_ref().map_or(&[][..], |file| &file.assignments[..]);
            let root = PinRoot::open(pin_root, true)?;
            let report = attach::attach(&root, &iface, mode, assignments)?;
            if let Some(note) = report.mode_note() {
                eprintln!("filter-ctl: {note}");
            }
            for carried in &report.carried {
                match &carried.lost {
                    None => eprintln!(
                        "filter-ctl: {} has a new layout: carried over ({} entries)",
                        carried.map, carried.entries
                    ),
                    Some(why) => eprintln!(
                        "filter-ctl: {} has a new layout: {} entries carried over; {why}",
                        carried.map, carried.entries
                    ),
                }
                if let Some(changed) = &carried.changed {
                    eprintln!("filter-ctl: {}: {changed}", carried.map);
                }
            }
            println!(
                "{} filter on {} in {} mode, {} link layer (XDP program {}, egress program {})",
                report.outcome.verb(),
                report.iface,
                report.mode.name(),
                report.link.layer.name(),
                report.xdp_program_id,
                report.tc_program_id
            );
            if let Some(file) = &file {
                let (_lock, pins) = attach::lock_for_change(&root, &iface.name)?;
                if let Some(said) = file.apply_lists(&pins)? {
                    println!("{said}");
                }
            }
        }
        Command::Detach { target } => {
            attach::detach(&PinRoot::open(pin_root, false)?.iface(&target.iface)?)?;
            println!("detached filter from {}", target.iface);
        }
        Command::Status {
            iface: _,
            all: true,
            output,
        } => {
            let root = PinRoot::open(pin_root, false)?;
            let everywhere = status::everywhere(&root)?;
            output.print(&everywhere, || {
                if everywhere.is_empty() {
                    "no filter is pinned in any network namespace\n".into()
                } else {
                    everywhere.iter().map(status::describe_pinned).collect()
                }
            })?;
        }
        Command::Cleanup { dry_run } => {
            let root = PinRoot::open(pin_root, false)?;
            let gone = status::everywhere(&root)?
                .into_iter()
                .filter(|pinned| !pinned.netns_exists);
            let mut any = false;
            for pinned in gone {
                any = true;
                if !dry_run {
                    status::remove_pinned(&root, &pinned)?;
                }
                println!(
                    "{} {} (interface {} of network namespace {}, which is gone)",
                    if dry_run { "would remove" } else { "removed" },
                    pinned.pin_dir.display(),
                    pinned.iface,
                    pinned.netns
                );
            }
            if !any {
                println!("nothing to clean up: every pinned filter's network namespace exists");
            }
        }
        Command::Status { iface, output, .. } => {
            let root = PinRoot::open(pin_root, false)?;
            if let Some(name) = &iface
                && !root.iface(name)?.exists()
            {
                // Not attached there: say so only of an interface that exists.
                Interface::lookup(name)?;
            }
            let all = status::status(&root, iface.as_deref())?;
            output.print(&all, || {
                if all.is_empty() {
                    "the filter is not attached to any interface in this network namespace\n".into()
                } else {
                    all.iter().map(status::describe).collect()
                }
            })?;
            let asked_for = iface.is_some() && all.is_empty();
            if asked_for || all.iter().any(|status| !status.attached) {
                std::io::stdout().flush()?;
                std::process::exit(EXIT_NOT_ATTACHED);
            }
        }
        Command::Set {
            target,
            assignments,
        } => {
            let (lock, pins) = target.for_change(pin_root)?;
            let mut maps = SettingsMaps::open(&pins)?;
            let before = maps.read()?;
            let after = maps.apply(&assignments)?;
            drop(lock);
            print_changes(&pins, &before, &after);
        }
        Command::Apply { target, file } => {
            let file = SettingsFile::read(&file)?;
            let (lock, pins) = target.for_change(pin_root)?;
            let mut maps = SettingsMaps::open(&pins)?;
            let before = maps.read()?;
            file.check(&before)?;
            let after = maps.apply(&file.assignments)?;
            let lists = file.apply_lists(&pins)?;
            drop(lock);
            print_changes(&pins, &before, &after);
            if let Some(said) = lists {
                println!("{said}");
            }
        }
        Command::Config { target, output } => {
            let settings = SettingsMaps::open(&target.attached(pin_root)?)?.read()?;
            output.print(&settings, || settings.to_string())?;
        }
        Command::Man => print_man_page()?,
        Command::Completions { shell } => {
            clap_complete::generate(
                clap_complete::Shell::from(shell),
                &mut Cli::command(),
                "filter-ctl",
                &mut std::io::stdout(),
            );
        }
        Command::Daemon {
            target,
            config,
            listen,
            mode,
            attack_pps,
            attack_quiet,
            log_format: _,
        } => {
            daemon::run(
                pin_root,
                daemon::Options {
                    iface: target.iface,
                    config,
                    listen,
                    mode,
                    thresholds: Thresholds {
                        start_pps: attack_pps,
                        quiet: attack_quiet,
                    },
                },
            )?;
        }
        Command::Top {
            target,
            seconds,
            output,
        } => {
            let pins = target.attached(pin_root)?;
            let report = daemon::top(&pins, seconds)?;
            output.print(&report.entries(), || report.describe(&target.iface))?;
        }
        Command::Upstream {
            action:
                UpstreamAction::Status {
                    target,
                    config,
                    output,
                },
        } => {
            let pins = target.attached(pin_root)?;
            let config = config.map(|path| SettingsFile::read(&path)).transpose()?;
            let status = daemon::upstream::status(&pins, config.map(|file| file.text).as_deref())?;
            output.print(&status, || status.describe())?;
        }
        Command::Upstream {
            action: UpstreamAction::Exabgp { iface },
        } => daemon::upstream::exabgp::bridge(&iface)?,
        Command::Allow { action } => list_command(pin_root, List::Allow, action)?,
        Command::Deny { action } => list_command(pin_root, List::Deny, action)?,
        Command::Stats {
            target,
            output,
            watch,
            tunnelled,
        } => {
            let pins = target.attached(pin_root)?;
            match watch {
                None if tunnelled => print_tunnelled(&stats::read_tunnelled(&pins)?, &output)?,
                None => {
                    print_stats(&stats::read(&pins)?, None, &output)?;
                    // A filter from before the tunnelled counters has none.
                    if !output.json
                        && let Ok(rows) = stats::read_tunnelled(&pins)
                        && !rows.0.is_empty()
                    {
                        print!("\n{}", stats::tunnelled_table(&rows));
                    }
                }
                Some(secs) => watch_stats(&pins, secs, &output)?,
            }
        }
    }
    Ok(())
}

/// `status`'s exit status when the filter is not attached (as `systemctl
/// is-active` says 3 of a unit that is not running).
const EXIT_NOT_ATTACHED: i32 = 3;

/// What `set` or `apply` changed, one `key old -> new` a line (`config`
/// shows them all), and, when a daemon with a config file runs for the
/// filter, that its next reload applies that file whole.
fn print_changes(pins: &IfacePins, before: &Settings, after: &Settings) {
    let changed = filter_ctl::settings::changes(before, after);
    if changed.is_empty() {
        println!("no change: the settings were already so");
    }
    for change in &changed {
        println!("{change}");
    }
    if let Some(daemon::control::About {
        pid,
        config: Some(config),
    }) = daemon::control::ask_about(pins)
        && !changed.is_empty()
    {
        eprintln!(
            "filter-ctl: note: the daemon of {} (pid {pid}) applies {} whole at its next reload \
             (SIGHUP, or when the file changes) and whenever it starts, which undoes this \
             change: put it in that file to keep it",
            pins.iface(),
            config.display()
        );
    }
}

/// At most this many changed entries are shown one by one after a change.
const SHOWN_CHANGES: usize = 20;

fn list_command(pin_root: &Path, list: List, action: ListAction) -> anyhow::Result<()> {
    let (target, verb, changed) = match action {
        ListAction::List { target, output } => {
            let entries = lists::list(&target.attached(pin_root)?, list)?;
            return output.print(&entries, || {
                if entries.is_empty() {
                    format!("the {} list of {} is empty\n", list.name(), target.iface)
                } else {
                    entries.iter().map(|e| lists::describe(e) + "\n").collect()
                }
            });
        }
        ListAction::Add {
            target,
            cidrs,
            lasting,
            force,
        } => {
            let wide: Vec<String> = cidrs
                .iter()
                .filter(|cidr| cidr.is_wide())
                .map(|cidr| cidr.wide_effect(list))
                .collect();
            if !wide.is_empty() && !force {
                anyhow::bail!(
                    "refusing prefixes wider than /8 (IPv4) or /16 (IPv6) without --force, \
                     nothing was added: {}",
                    wide.join("; ")
                );
            }
            for effect in &wide {
                eprintln!(
                    "filter-ctl: warning: {effect} (`filter-ctl {} del --iface {} PREFIX` undoes it)",
                    list.name(),
                    target.iface
                );
            }
            let (_lock, pins) = target.for_change(pin_root)?;
            let changed = lists::add(&pins, list, &cidrs, lasting)?;
            note_lasting(&pins, list, &[]);
            (target, "added", changed)
        }
        ListAction::Del { target, cidrs } => {
            let (_lock, pins) = target.for_change(pin_root)?;
            let from_file: Vec<Cidr> = lists::list(&pins, list)?
                .into_iter()
                .filter(|entry| entry.reason == filter_common::ListSource::ConfigFile)
                .map(|entry| Cidr::from_net(entry.cidr))
                .filter(|cidr| cidrs.contains(cidr))
                .collect();
            let changed = lists::del(&pins, list, &cidrs)?;
            note_lasting(&pins, list, &from_file);
            (target, "removed", changed)
        }
    };
    // What changed, not the whole list: it may hold 65,536 entries per family.
    let out = &mut std::io::stdout().lock();
    if changed.entries.len() <= SHOWN_CHANGES {
        for entry in &changed.entries {
            writeln!(out, "{}", lists::describe(entry))?;
        }
    }
    writeln!(
        out,
        "{verb} {} prefix{}; the {} list of {} holds {} (`filter-ctl {} list --iface {}` shows them)",
        changed.named,
        if changed.named == 1 { "" } else { "es" },
        list.name(),
        target.iface,
        changed.total,
        list.name(),
        target.iface
    )?;
    Ok(())
}

/// How long a list change lasts, said after `allow|deny add|del`: the
/// maps are emptied by a reboot, and a daemon's config file puts its own
/// lists back (`removed_from_file`: prefixes of that file just removed).
fn note_lasting(pins: &IfacePins, list: List, removed_from_file: &[Cidr]) {
    let name = list.name();
    let about = daemon::control::ask_about(pins);
    let daemon_file = about
        .as_ref()
        .and_then(|about| about.config.as_ref().map(|file| (about.pid, file)));
    for cidr in removed_from_file {
        eprintln!(
            "filter-ctl: note: {cidr} came from the {name} list of a settings file{}: applying \
             that file again puts it back unless it is removed there",
            daemon_file.map_or(String::new(), |(pid, file)| format!(
                " ({}, which the daemon of {} (pid {pid}) applies at its next reload and start)",
                file.display(),
                pins.iface()
            ))
        );
    }
    if removed_from_file.is_empty() {
        let keep = match daemon_file {
            Some((pid, file)) => format!(
                "to keep it, add it to `{name} = [...]` in {}, which the daemon of {} (pid {pid}) \
                 applies at its next reload and whenever it starts",
                file.display(),
                pins.iface()
            ),
            None => format!(
                "to keep it, list it as `{name} = [...]` in the settings file the daemon loads \
                 (`filter-ctl daemon --config FILE`)"
            ),
        };
        eprintln!(
            "filter-ctl: note: this change lives in the filter's maps, which a reboot empties; \
             {keep}"
        );
    }
}

/// A settings file, read and parsed: every key known and every value
/// allowed (errors point at the line and column), and its lists.
struct SettingsFile {
    path: PathBuf,
    text: String,
    assignments: Vec<Assignment>,
    lists: FileLists,
    /// Its last change, from which its list entries' `for` counts.
    modified: std::time::SystemTime,
}

impl SettingsFile {
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text = textfile::read(path)?;
        let in_file = || format!("in {}", path.display());
        let Assignments(assignments) = toml::from_str(&text).with_context(in_file)?;
        let lists = FileLists::parse(&text).with_context(in_file)?;
        // The daemon's `[upstream]` section is checked, and left to it.
        daemon::reload::upstream_of(&text).with_context(in_file)?;
        let modified = std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            text,
            assignments,
            lists,
            modified,
        })
    }

    /// Puts the file's lists in place (under the interface's lock, which the
    /// caller holds); one line on what changed.
    fn apply_lists(&self, pins: &IfacePins) -> anyhow::Result<Option<String>> {
        listfile::apply_both(pins, &self.lists, self.modified)
            .with_context(|| format!("in {}", self.path.display()))
    }

    /// Checks the keys together over `live`: a rule between keys (a port in
    /// two lists) is reported at the line of the first key that breaks it.
    fn check(&self, live: &Settings) -> anyhow::Result<()> {
        let Err(err) = live.with(&self.assignments) else {
            return Ok(());
        };
        let culprit = (1..=self.assignments.len())
            .find(|n| live.with(&self.assignments[..*n]).is_err())
            .map(|n| self.assignments[n - 1].key());
        match culprit.and_then(|key| self.line_of(key).map(|line| (key, line))) {
            Some((key, line)) => {
                Err(err).with_context(|| format!("in {}, line {line} ({key})", self.path.display()))
            }
            None => Err(err).with_context(|| format!("in {}", self.path.display())),
        }
    }

    /// The line (from 1) where `key` is set.
    fn line_of(&self, key: &str) -> Option<usize> {
        self.text
            .lines()
            .position(|line| {
                let line = line.trim_start();
                let rest = line
                    .strip_prefix(key)
                    .or_else(|| line.strip_prefix(&format!("\"{key}\"")));
                rest.is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .map(|index| index + 1)
    }
}

/// Every command under `command` with its full name (`filter-ctl allow
/// add`), depth first; `man` and `completions` need no section.
fn man_commands(command: &clap::Command, name: &str) -> Vec<(String, clap::Command)> {
    let mut all = Vec::new();
    for sub in command
        .get_subcommands()
        .filter(|c| !matches!(c.get_name(), "man" | "completions" | "help"))
    {
        let full = format!("{name} {}", sub.get_name());
        all.push((full.clone(), sub.clone()));
        all.extend(man_commands(sub, &full));
    }
    all
}

/// `--attack-quiet`: a second to an hour.
fn parse_quiet(text: &str) -> Result<Duration, String> {
    use filter_ctl_api::settings::Kind as _;
    let span = filter_ctl_api::settings::Span {
        min: Duration::from_secs(1),
        max: Duration::from_secs(3600),
        off: false,
    };
    span.parse(text)
        .map_err(|why| format!("{why} (allowed: {})", span.allowed()))
}

/// The keys for `set --help`, from the settings table.
fn settings_help() -> String {
    let mut help = String::from("Settings:\n");
    let width = SETTINGS.iter().map(|s| s.key().len()).max().unwrap_or(0);
    for setting in SETTINGS {
        help += &format!(
            "  {:<width$} {:<18} {}\n",
            setting.key(),
            setting.allowed(),
            setting.help()
        );
    }
    help += "\nDefaults:\n";
    for (key, value) in Settings::default().values() {
        help += &format!("  {key}={value}\n");
    }
    help
}

/// One man page, filter-ctl(8): the overview with a list of the commands,
/// then each command (and `allow`/`deny`'s own) with its synopsis,
/// description and options, then every setting from the settings table.
/// There are no pages per command, so none is named.
fn print_man_page() -> anyhow::Result<()> {
    let out = &mut std::io::stdout();
    let cli = Cli::command();
    let page = clap_mangen::Man::new(cli.clone())
        .section("8")
        .manual("System Administration");
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_options_section(out)?;
    let commands = man_commands(&cli, "filter-ctl");
    let mut list = Roff::new();
    list.control("SH", ["COMMANDS"]).text([roman(
        "Each has a section below; `filter-ctl COMMAND --help` prints the same.",
    )]);
    for (name, command) in &commands {
        list.control("TP", [] as [&str; 0])
            .text([bold(name.as_str())])
            .text([roman(
                command
                    .get_about()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            )]);
    }
    list.to_writer(out)?;
    page.render_extra_section(out)?;
    page.render_version_section(out)?;
    for (name, command) in commands {
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        let section = clap_mangen::Man::new(command.clone().bin_name(name));
        section.render_synopsis_section(out)?;
        section.render_description_section(out)?;
        section.render_options_section(out)?;
    }
    let mut roff = Roff::new();
    // Left-adjusted: a justified line next to a long unbreakable value (the
    // amplifier ports' default) is spread over the whole width.
    roff.control("SH", ["SETTINGS"])
        .control("ad", ["l"])
        .text([roman(
            "The keys of set, of apply and attach --config files (TOML), and of config.",
        )]);
    let defaults = Settings::default();
    for setting in SETTINGS {
        // The tag holds no space (a default there was spread over the
        // width); the default has a line of its own below the text.
        roff.control("TP", [] as [&str; 0])
            .text([bold(setting.key()), roman("="), italic(setting.allowed())])
            .text([roman(setting.help())])
            .control("br", [] as [&str; 0])
            .text([roman(format!("default: {}", setting.show(&defaults)))]);
    }
    roff.to_writer(out)?;
    Ok(())
}

/// Counters as a table, or as one line of JSON (so that `--watch` prints JSON lines).
fn print_stats(
    stats: &Stats,
    previous: Option<(&Stats, f64)>,
    output: &Output,
) -> anyhow::Result<()> {
    if output.json {
        println!("{}", serde_json::to_string(stats)?);
    } else {
        print!("{}", stats::table(stats, previous));
    }
    Ok(())
}

/// The tunnelled packets' counters as a table or one line of JSON.
fn print_tunnelled(rows: &Tunnelled, output: &Output) -> anyhow::Result<()> {
    if output.json {
        println!("{}", serde_json::to_string(rows)?);
    } else {
        print!("{}", stats::tunnelled_table(rows));
    }
    Ok(())
}

/// Prints the counters every `secs` seconds with rates, until Ctrl-C.
fn watch_stats(pins: &IfacePins, secs: u64, output: &Output) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let mut previous = stats::read(pins)?;
        print_stats(&previous, None, output)?;
        let mut ticks = tokio::time::interval(Duration::from_secs(secs));
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = ticks.tick() => {
                    let counts = stats::read(pins)?;
                    if !output.json {
                        println!();
                    }
                    print_stats(&counts, Some((&previous, secs as f64)), output)?;
                    previous = counts;
                }
            }
        }
    })
}
