//! The lab's incidents, replayed in their short mode by the real command:
//! `xtask lab --incident all --quick` with the filter-ctl under test. Fails
//! when a verdict line says a defence did not hold, when an incident has no
//! verdict, or when the lab fails. About a minute on 2 cores; the host
//! only (the incidents' mechanisms are covered kernel by kernel by the
//! end-to-end tests in the VM legs).

use std::process::Command;

use harness::{kernel, process::note};

#[test]
fn every_incident_is_stopped_in_the_lab() {
    if kernel::in_vm_guest() {
        note("lab: skipped in the VM leg, the lab's incidents run on the host only");
        return;
    }
    assert!(
        harness::process::is_root(),
        "the lab needs root (network namespaces, XDP): run the tests as root"
    );
    let filter_ctl = harness::ctl::binary().expect("locating filter-ctl");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["lab", "--incident", "all", "--quick", "--filter-ctl"])
        .arg(&filter_ctl)
        .output()
        .expect("running xtask lab");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let verdicts: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("verdict "))
        .collect();
    let names = [
        "reflection",
        "ntp-amplifier",
        "syn-halfopen",
        "smtp-slots",
        "dns-server",
    ];
    for name in names {
        assert!(
            verdicts
                .iter()
                .any(|line| line.starts_with(&format!("verdict {name}: "))),
            "no verdict for {name}: {verdicts:#?}"
        );
    }
    let failed: Vec<&&str> = verdicts
        .iter()
        .filter(|line| line.to_ascii_lowercase().contains("did not hold"))
        .collect();
    assert!(failed.is_empty(), "defences that did not hold: {failed:#?}");
    assert!(
        verdicts
            .iter()
            .all(|line| line.contains("the defence held")),
        "{verdicts:#?}"
    );
    assert!(out.status.success(), "xtask lab: {}", out.status);
    assert!(text.contains("closing table"), "no closing table");
}
