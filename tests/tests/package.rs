//! The Debian package (`cargo xtask package`), installed into a clean
//! Debian root as an operator would (`apt install ./wan-filter_*.deb`):
//! what it installs works (`filter-ctl --version`, `man -w filter-ctl`,
//! `systemd-analyze verify` of the unit), it has no maintainer scripts (so
//! installing starts and attaches nothing), and removing it leaves nothing
//! but its conffile and never detaches a running filter.
//!
//! Needs root and what `cargo xtask test` prepares: the package and the
//! Debian root (debootstrap, cached), named by `WAN_FILTER_DEB` and
//! `WAN_FILTER_DEBIAN_ROOT` ([`harness::debian::given`]). Without them (a
//! plain `cargo test`, the VM legs) it says it is skipped.

use std::{collections::BTreeSet, fs, path::PathBuf, process::Command};

use harness::{
    ctl::FilterCtl,
    debian::{self, Scratch},
    kernel,
    names::{TEST_PIN_PREFIX, TEST_PREFIX},
    netns::{self, Netns},
    process,
};

#[test]
fn the_package_installs_what_it_says_and_removes_cleanly() {
    let Some((deb, root)) = debian::given("package test") else {
        return;
    };
    let name = deb.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("wan-filter_") && name.ends_with("_amd64.deb"),
        "{name}"
    );

    // No maintainer scripts: dpkg runs nothing of ours on install or removal.
    let info = process::run(Command::new("dpkg-deb").arg("--info").arg(&deb)).unwrap();
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        assert!(!info.contains(script), "{script} in {info}");
    }

    let scratch = Scratch::over(&root).unwrap();
    let before: BTreeSet<PathBuf> = scratch.files().unwrap().into_iter().collect();
    scratch.install(&deb).unwrap();

    println!("installed {name} into a clean Debian root");
    let version = scratch.run(["filter-ctl", "--version"]).unwrap();
    print!("filter-ctl --version: {version}");
    assert!(version.starts_with("filter-ctl "), "{version}");
    let binary = scratch.run(["which", "filter-ctl"]).unwrap();
    assert_eq!(binary.trim(), "/usr/sbin/filter-ctl");
    let page = scratch.run(["man", "-w", "filter-ctl"]).unwrap();
    assert_eq!(page.trim(), "/usr/share/man/man8/filter-ctl.8.gz");
    print!("man -w filter-ctl: {page}");
    let verify = scratch
        .output([
            "systemd-analyze",
            "verify",
            "/lib/systemd/system/wan-filter@.service",
        ])
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && !said.contains("wan-filter"),
        "systemd-analyze verify: {said}"
    );
    println!(
        "systemd-analyze verify wan-filter@.service: {}, nothing said of it",
        verify.status
    );
    for completion in [
        "usr/share/bash-completion/completions/filter-ctl",
        "usr/share/zsh/vendor-completions/_filter-ctl",
        "usr/share/fish/vendor_completions.d/filter-ctl.fish",
    ] {
        let text = fs::read_to_string(scratch.root().join(completion)).unwrap();
        assert!(text.contains("filter-ctl"), "{completion}");
    }
    // The README and the example config point into the documentation: on
    // the gateway, every such link names an installed file.
    let doc = scratch.root().join("usr/share/doc/wan-filter");
    let readme = fs::read_to_string(doc.join("README.md")).unwrap();
    let example =
        fs::read_to_string(scratch.root().join("etc/wan-filter/wan0.toml.example")).unwrap();
    let linked = local_links(&readme)
        .chain(docs_named(&example))
        .collect::<BTreeSet<_>>();
    assert!(linked.contains("docs/query-limits.md"), "{linked:?}");
    let missing: Vec<_> = linked
        .iter()
        .filter(|file| !doc.join(file).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "linked but not installed under {}: {missing:?}",
        doc.display()
    );
    println!(
        "{} documents linked from the README and the example config, all installed",
        linked.len()
    );
    let conffiles = scratch
        .run([
            "dpkg-query",
            "--show",
            "--showformat=${Conffiles}",
            "wan-filter",
        ])
        .unwrap();
    assert!(
        conffiles.contains("/etc/wan-filter/wan0.toml.example"),
        "{conffiles}"
    );

    // A filter attached with the installed binary outlives the package.
    let ns = Netns::unique(TEST_PREFIX).unwrap();
    netns::veth(&ns, "wfpk0", &ns, "wfpk1").unwrap();
    for iface in ["wfpk0", "wfpk1"] {
        ns.up(iface).unwrap();
    }
    let installed =
        FilterCtl::with_binary(scratch.root().join("usr/sbin/filter-ctl"), TEST_PIN_PREFIX);
    installed.attach(&ns, "wfpk0", None).unwrap();
    scratch
        .run(["apt-get", "remove", "--yes", "wan-filter"])
        .unwrap();
    let xdp = kernel::xdp_on(&ns, "wfpk0").unwrap();
    assert!(xdp.is_some(), "removing the package detached the filter");
    println!("removed; the filter attached with it is still on wfpk0: {xdp:?}");
    let ours = installed.with_binary_at(harness::ctl::binary().unwrap());
    assert!(ours.status(&ns, Some("wfpk0")).unwrap()[0].attached);
    ours.detach(&ns, "wfpk0").unwrap();

    let state = scratch
        .run([
            "dpkg-query",
            "--show",
            "--showformat=${Status}",
            "wan-filter",
        ])
        .unwrap();
    assert_eq!(state, "deinstall ok config-files");
    let after: BTreeSet<PathBuf> = scratch.files().unwrap().into_iter().collect();
    let left: Vec<&PathBuf> = after.difference(&before).collect();
    assert_eq!(
        left,
        [
            &PathBuf::from("etc/wan-filter"),
            &PathBuf::from("etc/wan-filter/wan0.toml.example")
        ],
        "only the conffile is left"
    );
    println!("{state}; left in the root: {left:?}");
}

/// The files a Markdown text links to by a relative path (`](docs/x.md#part)`
/// gives `docs/x.md`).
fn local_links(markdown: &str) -> impl Iterator<Item = &str> {
    markdown.split("](").skip(1).filter_map(|rest| {
        let target = &rest[..rest.find(')')?];
        let file = target.split('#').next()?;
        (!file.is_empty() && !file.contains("://")).then_some(file)
    })
}

/// The `docs/NAME.md` a text mentions.
fn docs_named(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("docs/").filter_map(|(at, _)| {
        let end = text[at..].find(".md")? + at + ".md".len();
        let name = &text[at..end];
        name["docs/".len()..name.len() - ".md".len()]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            .then_some(name)
    })
}
