//! What part 2 measures on the DUT's ingress ([`DutConfig`]): nothing, the
//! XDP floors, this filter (attached with filter-ctl), nftables rulesets,
//! xdp-filter; [`apply`] puts one in place and [`Applied`] takes it away.

use std::{fs, path::PathBuf};

use anyhow::{Context as _, anyhow, bail};
use aya::{Ebpf, programs::XdpMode};
use harness::{
    ctl::FilterCtl,
    kernel,
    names::{is_stale, unique_name},
    netns::Netns,
    process::{have, run},
};

use crate::{
    object::names,
    pair::{self, DUT_IF, Pair},
};

/// Name prefix of the private bpffs mounts for xdp-filter.
const BPFFS_PREFIX: &str = "wfb-bpffs";

/// What sits on the DUT's ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DutConfig {
    /// Nothing: the kernel's stack handles the flood.
    None,
    /// `return XDP_DROP` in native mode: the floor of drop paths.
    XdpDrop,
    /// `return XDP_PASS` in native mode: the floor of pass paths.
    XdpPass,
    /// Reads EtherType, IP protocol and ports, then XDP_DROP: what touching
    /// the packet costs on top of the floor.
    XdpTouch,
    /// This filter, attached with filter-ctl.
    Filter(XdpMode),
    /// This filter in native mode with drop sampling off (`sample_rate=off`):
    /// against `Filter`, what sampling costs.
    FilterUnsampled,
    /// nftables netdev ingress: `udp sport 53 drop`.
    NftIngressSport53,
    /// nftables input: `ct state new drop` (what a stateful firewall does to
    /// unsolicited responses and to SYNs).
    NftCtNew,
    /// nftables per-source SYN meter (a dynamic set with a limit per source), at
    /// the netdev ingress hook.
    NftSynMeterIngress,
    /// The same meter in the input hook.
    NftSynMeterInput,
    /// xdp-filter (Debian's xdp-tools), dropping UDP source port 53.
    XdpFilter(XdpMode),
}

impl DutConfig {
    pub fn name(self) -> &'static str {
        match self {
            DutConfig::None => "no filter (stack)",
            DutConfig::XdpDrop => "XDP_DROP floor",
            DutConfig::XdpPass => "XDP_PASS floor",
            DutConfig::XdpTouch => "XDP_DROP after reading the headers",
            DutConfig::Filter(XdpMode::Skb) => "this filter, generic",
            DutConfig::Filter(_) => "this filter, native",
            DutConfig::FilterUnsampled => "this filter, native, sample_rate=off",
            DutConfig::NftIngressSport53 => "nft ingress udp sport 53 drop",
            DutConfig::NftCtNew => "nft input ct state new drop",
            DutConfig::NftSynMeterIngress => "nft ingress SYN meter",
            DutConfig::NftSynMeterInput => "nft input SYN meter",
            DutConfig::XdpFilter(XdpMode::Skb) => "xdp-filter, skb",
            DutConfig::XdpFilter(_) => "xdp-filter, native",
        }
    }

    /// A short key for JSON and the chart.
    pub fn key(self) -> &'static str {
        match self {
            DutConfig::None => "none",
            DutConfig::XdpDrop => "xdp_drop",
            DutConfig::XdpPass => "xdp_pass",
            DutConfig::XdpTouch => "xdp_touch",
            DutConfig::Filter(XdpMode::Skb) => "filter_generic",
            DutConfig::Filter(_) => "filter_native",
            DutConfig::FilterUnsampled => "filter_native_unsampled",
            DutConfig::NftIngressSport53 => "nft_ingress_sport53",
            DutConfig::NftCtNew => "nft_ct_new",
            DutConfig::NftSynMeterIngress => "nft_syn_meter_ingress",
            DutConfig::NftSynMeterInput => "nft_syn_meter_input",
            DutConfig::XdpFilter(XdpMode::Skb) => "xdp_filter_skb",
            DutConfig::XdpFilter(_) => "xdp_filter_native",
        }
    }
}

/// A configuration applied to the DUT; undone by [`Applied::remove`] or drop.
pub struct Applied<'a> {
    pair: &'a Pair,
    config: DutConfig,
    bench_prog: Option<Ebpf>,
    ctl: Option<&'a FilterCtl>,
    xdp_filter: Option<&'a XdpFilterEnv>,
}

impl Applied<'_> {
    pub fn remove(mut self) -> anyhow::Result<()> {
        self.undo()
    }

    fn undo(&mut self) -> anyhow::Result<()> {
        self.bench_prog = None;
        let dut = &self.pair.dut;
        match self.config {
            DutConfig::Filter(_) | DutConfig::FilterUnsampled => {
                if let Some(ctl) = self.ctl.take() {
                    ctl.detach(dut, DUT_IF)?;
                }
            }
            DutConfig::XdpFilter(_) => {
                if let Some(env) = self.xdp_filter.take() {
                    env.command(dut)
                        .args(["unload", DUT_IF])
                        .output()
                        .context("xdp-filter unload")?;
                }
            }
            DutConfig::NftIngressSport53
            | DutConfig::NftCtNew
            | DutConfig::NftSynMeterIngress
            | DutConfig::NftSynMeterInput => {
                dut.nft("flush ruleset\n")?;
            }
            DutConfig::None | DutConfig::XdpDrop | DutConfig::XdpPass | DutConfig::XdpTouch => {}
        }
        self.config = DutConfig::None;
        kernel::wait_no_xdp(dut, DUT_IF)
    }
}

impl Drop for Applied<'_> {
    fn drop(&mut self) {
        let _ = self.undo();
    }
}

/// A private bpffs for libxdp (xdp-filter), so it never touches /sys/fs/bpf.
pub struct XdpFilterEnv {
    dir: PathBuf,
}

impl XdpFilterEnv {
    pub fn new() -> anyhow::Result<Self> {
        if !have("xdp-filter") {
            bail!("xdp-filter is not installed (Debian package xdp-tools)");
        }
        let dir = std::env::temp_dir().join(unique_name(BPFFS_PREFIX));
        fs::create_dir_all(&dir)?;
        let status = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()?;
        if !status.success() {
            let _ = fs::remove_dir(&dir);
            bail!("mounting a private bpffs on {} failed", dir.display());
        }
        Ok(Self { dir })
    }

    /// Unmounts and removes private bpffs mounts that a killed run left behind.
    pub fn sweep_stale() {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_stale(&name, BPFFS_PREFIX) {
                continue;
            }
            let _ = std::process::Command::new("umount")
                .arg(entry.path())
                .status();
            let _ = fs::remove_dir(entry.path());
        }
    }

    fn command(&self, ns: &Netns) -> std::process::Command {
        let mut command = ns.command("xdp-filter");
        command.env("LIBXDP_BPFFS", &self.dir);
        command
    }
}

impl Drop for XdpFilterEnv {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.dir).status();
        let _ = fs::remove_dir(&self.dir);
    }
}

const NFT_INGRESS_SPORT53: &str = r#"
table netdev bench {
    chain ingress {
        type filter hook ingress device "dut0" priority 0; policy accept;
        udp sport 53 drop
    }
}
"#;

const NFT_CT_NEW: &str = r#"
table inet bench {
    chain input {
        type filter hook input priority 0; policy accept;
        ct state established,related accept
        ct state new drop
    }
}
"#;

/// 20 SYNs per second per source, bursts of 40: a home gateway's web server limit.
const NFT_SYN_METER_INGRESS: &str = r#"
table netdev bench {
    set syn_meter {
        type ipv4_addr; size 65536; flags dynamic,timeout; timeout 60s;
    }
    chain ingress {
        type filter hook ingress device "dut0" priority 0; policy accept;
        meta protocol ip tcp flags & (syn | ack) == syn update @syn_meter { ip saddr limit rate over 20/second burst 40 packets } drop
    }
}
"#;

const NFT_SYN_METER_INPUT: &str = r#"
table inet bench {
    set syn_meter {
        type ipv4_addr; size 65536; flags dynamic,timeout; timeout 60s;
    }
    chain input {
        type filter hook input priority 0; policy accept;
        meta nfproto ipv4 tcp flags & (syn | ack) == syn update @syn_meter { ip saddr limit rate over 20/second burst 40 packets } drop
    }
}
"#;

/// Applies `config` to the DUT.
pub fn apply<'a>(
    pair: &'a Pair,
    config: DutConfig,
    ctl: &'a FilterCtl,
    xdp_filter: Option<&'a XdpFilterEnv>,
) -> anyhow::Result<Applied<'a>> {
    let mut applied = Applied {
        pair,
        config,
        bench_prog: None,
        ctl: None,
        xdp_filter: None,
    };
    let dut = &pair.dut;
    match config {
        DutConfig::None => {}
        DutConfig::XdpDrop | DutConfig::XdpPass | DutConfig::XdpTouch => {
            let program = match config {
                DutConfig::XdpDrop => names::DROP,
                DutConfig::XdpPass => names::PASS,
                _ => names::TOUCH,
            };
            applied.bench_prog = Some(pair::attach_bench_program(
                dut,
                DUT_IF,
                program,
                XdpMode::Driver,
            )?);
        }
        DutConfig::Filter(mode) => {
            let mode = if mode == XdpMode::Skb {
                "skb"
            } else {
                "native"
            };
            applied.ctl = Some(ctl);
            ctl.attach(dut, DUT_IF, Some(mode))?;
        }
        DutConfig::FilterUnsampled => {
            applied.ctl = Some(ctl);
            ctl.attach(dut, DUT_IF, Some("native"))?;
            ctl.run(dut, ["set", "--iface", DUT_IF, "sample_rate=off"])?;
        }
        DutConfig::NftIngressSport53 => dut.nft(NFT_INGRESS_SPORT53)?,
        DutConfig::NftCtNew => dut.nft(NFT_CT_NEW)?,
        DutConfig::NftSynMeterIngress => dut.nft(NFT_SYN_METER_INGRESS)?,
        DutConfig::NftSynMeterInput => dut.nft(NFT_SYN_METER_INPUT)?,
        DutConfig::XdpFilter(mode) => {
            let env = xdp_filter.ok_or_else(|| anyhow!("xdp-filter is not available"))?;
            applied.xdp_filter = Some(env);
            let mode = if mode == XdpMode::Skb {
                "skb"
            } else {
                "native"
            };
            for args in [
                vec!["load", "--mode", mode, DUT_IF],
                vec!["port", "--mode", "src", "--proto", "udp", "53"],
            ] {
                run(env.command(dut).args(&args))?;
            }
        }
    }
    Ok(applied)
}
