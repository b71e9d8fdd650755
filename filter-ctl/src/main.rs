//! filter-ctl: the command line over the filter_ctl library.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};
use filter_ctl::{
    attach::{self, ModeChoice},
    iface::Interface,
    lists::{self, List},
    pins::{self, PinRoot},
    require_root,
    settings::{self, PinnedSettings, Settings},
    stats, status,
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
    filter-ctl detach --iface wan0\n  \
    ip netns exec lab filter-ctl attach --iface wan0   # works inside namespaces too"
)]
struct Cli {
    /// Where maps and links are pinned. Under `ip netns exec`, which hides
    /// /sys/fs/bpf, the host's bpffs is reached through /proc/PID/root of the calling shell.
    #[arg(long, global = true, env = pins::ROOT_ENV, default_value = pins::DEFAULT_ROOT)]
    pin_root: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the filter and attach it to an interface (XDP ingress + TC egress).
    ///
    /// Attaching where it is already attached replaces the programs atomically
    /// and keeps maps and counters.
    Attach {
        /// The WAN interface, e.g. wan0.
        #[arg(long)]
        iface: String,
        /// XDP mode: auto tries native and falls back to generic (skb).
        #[arg(long, value_enum, default_value_t)]
        mode: ModeChoice,
        /// A TOML file of settings (the keys of `set`), validated before attaching.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Remove the filter from an interface: programs, links, maps and pins.
    Detach {
        #[arg(long)]
        iface: String,
    },
    /// Show where the filter is attached, its mode, program ids and maps.
    Status {
        /// Only this interface (default: every interface in this network namespace).
        #[arg(long)]
        iface: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Change settings of the running filter: no reattach, counters and state kept.
    ///
    /// All assignments are validated first; if one is rejected nothing changes.
    #[command(after_help = settings_help())]
    Set {
        #[arg(long)]
        iface: String,
        /// KEY=VALUE, e.g. monitor=on solicited_lifetime=5s dns_ports=53,5353
        #[arg(required = true, value_name = "KEY=VALUE")]
        assignments: Vec<String>,
    },
    /// Apply a TOML settings file (the keys of `set`) to the running filter.
    #[command(after_help = settings_help())]
    Apply {
        #[arg(long)]
        iface: String,
        file: PathBuf,
    },
    /// Show the live settings.
    Config {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        json: bool,
    },
    /// Print the manual page (roff) for filter-ctl: `filter-ctl man | man -l -`.
    Man,
    /// The allow list: sources (CIDR prefixes) that skip every drop rule.
    ///
    /// For monitoring hosts and upstream resolvers. Allow wins over deny.
    Allow {
        #[command(subcommand)]
        action: ListAction,
    },
    /// The deny list: sources (CIDR prefixes) dropped before any other rule.
    ///
    /// The SYN penalty (syn_penalty) adds entries here too.
    Deny {
        #[command(subcommand)]
        action: ListAction,
    },
    /// Show packet and byte counters per verdict reason, summed over CPUs.
    Stats {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        json: bool,
        /// Print again every SECS seconds, with rates, until Ctrl-C.
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        watch: Option<u64>,
    },
}

/// `allow` and `deny` subcommands. Every one first removes expired entries.
#[derive(Subcommand)]
enum ListAction {
    /// Add prefixes, e.g. 203.0.113.0/24 or 2001:db8::/48 (a bare address is a
    /// /32 or /128); an existing entry gets the new expiry.
    Add {
        #[arg(long)]
        iface: String,
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<String>,
        /// Remove the entry after this long (e.g. 30s, 10m, 2h, 7d; 1s..365d).
        /// Without it the entry stays until deleted.
        #[arg(long = "for", value_name = "DURATION")]
        lasting: Option<String>,
    },
    /// Remove prefixes (exactly as listed).
    Del {
        #[arg(long)]
        iface: String,
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<String>,
    },
    /// Show the entries with their expiry and who added them.
    List {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    if let Err(err) = run(Cli::parse()) {
        eprintln!("filter-ctl: error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Attach {
            iface,
            mode,
            config,
        } => {
            require_root("attach")?;
            let iface = Interface::lookup(&iface)?;
            iface.require_ethernet()?;
            // Validate the file before touching the interface.
            let assignments = config.as_deref().map(read_settings_file).transpose()?;
            if let Some(assignments) = &assignments {
                Settings::default().with(as_pairs(assignments))?;
            }
            let root = PinRoot::open(&cli.pin_root, true)?;
            let report = attach::attach(&root, &iface, mode)?;
            if let Some(assignments) = &assignments {
                PinnedSettings::open(&root.iface(&report.iface)?)?.apply(as_pairs(assignments))?;
            }
            if let Some(why) = &report.native_unavailable {
                eprintln!(
                    "filter-ctl: native XDP is not available on {} ({why}); using generic (skb) mode, which costs more per packet",
                    report.iface
                );
            }
            println!(
                "{} filter on {} in {} mode (XDP program {}, egress program {})",
                if report.replaced {
                    "replaced"
                } else {
                    "attached"
                },
                report.iface,
                report.mode.name(),
                report.xdp_program_id,
                report.tc_program_id
            );
        }
        Command::Detach { iface } => {
            require_root("detach")?;
            let root = PinRoot::open(&cli.pin_root, false)?;
            if attach::detach(&root, &iface)? {
                println!("detached filter from {iface}");
            } else {
                anyhow::bail!("the filter is not attached to {iface} in this network namespace");
            }
        }
        Command::Status { iface, json } => {
            require_root("status")?;
            let root = PinRoot::open(&cli.pin_root, false)?;
            let all = status::status(&root, iface.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!("the filter is not attached to any interface in this network namespace");
            } else {
                all.iter().for_each(|s| print!("{}", status::describe(s)));
            }
        }
        Command::Set { iface, assignments } => {
            require_root("set")?;
            let pairs = assignments
                .iter()
                .map(|a| settings::parse_assignment(a))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let settings = attached_settings(&cli.pin_root, &iface)?.apply(pairs)?;
            print!("{}", settings.describe());
        }
        Command::Apply { iface, file } => {
            require_root("apply")?;
            let assignments = read_settings_file(&file)?;
            let settings =
                attached_settings(&cli.pin_root, &iface)?.apply(as_pairs(&assignments))?;
            print!("{}", settings.describe());
        }
        Command::Config { iface, json } => {
            require_root("config")?;
            let settings = attached_settings(&cli.pin_root, &iface)?.read()?;
            if json {
                let values: serde_json::Map<String, serde_json::Value> = settings
                    .values()
                    .into_iter()
                    .map(|(key, value)| (key.to_owned(), value.into()))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&values)?);
            } else {
                print!("{}", settings.describe());
            }
        }
        Command::Man => print_man_page()?,
        Command::Allow { action } => list_command(&cli.pin_root, List::Allow, action)?,
        Command::Deny { action } => list_command(&cli.pin_root, List::Deny, action)?,
        Command::Stats { iface, json, watch } => {
            require_root("stats")?;
            let root = PinRoot::open(&cli.pin_root, false)?;
            let pins = root.iface(&iface)?;
            if !pins.exists() {
                anyhow::bail!("the filter is not attached to {iface} in this network namespace");
            }
            match watch {
                None => print_stats(&stats::read(&pins)?, None, json)?,
                Some(secs) => watch_stats(&pins, secs, json)?,
            }
        }
    }
    Ok(())
}

/// One man page: the overview, then each command with its synopsis and options.
fn print_man_page() -> anyhow::Result<()> {
    let out = &mut std::io::stdout();
    let cli = Cli::command();
    clap_mangen::Man::new(cli.clone())
        .section("8")
        .manual("System Administration")
        .render(out)?;
    for command in cli.get_subcommands().filter(|c| c.get_name() != "man") {
        let name = format!("filter-ctl {}", command.get_name());
        std::io::Write::write_fmt(out, format_args!(".SH \"{}\"\n", name.to_uppercase()))?;
        let page = clap_mangen::Man::new(command.clone().bin_name(name));
        page.render_synopsis_section(out)?;
        page.render_description_section(out)?;
        page.render_options_section(out)?;
        page.render_extra_section(out)?;
    }
    Ok(())
}

/// The settings maps of the filter on `iface`, with a clear error if it is not attached.
fn attached_settings(pin_root: &std::path::Path, iface: &str) -> anyhow::Result<PinnedSettings> {
    let pins = PinRoot::open(pin_root, false)?.iface(iface)?;
    if !pins.exists() {
        anyhow::bail!("the filter is not attached to {iface} in this network namespace");
    }
    PinnedSettings::open(&pins)
}

fn list_command(pin_root: &std::path::Path, list: List, action: ListAction) -> anyhow::Result<()> {
    require_root(list.name())?;
    let iface = match &action {
        ListAction::Add { iface, .. }
        | ListAction::Del { iface, .. }
        | ListAction::List { iface, .. } => iface.clone(),
    };
    let pins = PinRoot::open(pin_root, false)?.iface(&iface)?;
    if !pins.exists() {
        anyhow::bail!("the filter is not attached to {iface} in this network namespace");
    }
    let (entries, json) = match action {
        ListAction::Add { cidrs, lasting, .. } => {
            (lists::add(&pins, list, &cidrs, lasting.as_deref())?, false)
        }
        ListAction::Del { cidrs, .. } => (lists::del(&pins, list, &cidrs)?, false),
        ListAction::List { json, .. } => (lists::list(&pins, list)?, json),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else if entries.is_empty() {
        println!("the {} list of {iface} is empty", list.name());
    } else {
        entries.iter().for_each(|e| println!("{}", e.describe()));
    }
    Ok(())
}

fn read_settings_file(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    settings::assignments_from_toml(&text).with_context(|| format!("in {}", path.display()))
}

fn as_pairs(assignments: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    assignments.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// The list of keys for `set --help` and `apply --help`.
fn settings_help() -> String {
    let mut help = String::from("Settings:\n");
    for key in settings::KEYS {
        help.push_str(&format!(
            "  {:<20} {:<17} {}\n",
            key.name, key.values, key.help
        ));
    }
    let defaults = Settings::default();
    help.push_str("\nDefaults:\n");
    for (key, value) in defaults.values() {
        help.push_str(&format!("  {key}={value}\n"));
    }
    help
}

fn print_stats(
    counts: &[stats::ReasonCount],
    previous: Option<(&[stats::ReasonCount], f64)>,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(counts)?);
    } else {
        print!("{}", stats::table(counts, previous));
    }
    Ok(())
}

/// Prints the counters every `secs` seconds with rates, until Ctrl-C.
fn watch_stats(pins: &pins::IfacePins, secs: u64, json: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let mut previous = stats::read(pins)?;
        print_stats(&previous, None, json)?;
        let mut ticks = tokio::time::interval(Duration::from_secs(secs));
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = ticks.tick() => {
                    let counts = stats::read(pins)?;
                    if !json {
                        println!();
                    }
                    print_stats(&counts, Some((&previous, secs as f64)), json)?;
                    previous = counts;
                }
            }
        }
    })
}
