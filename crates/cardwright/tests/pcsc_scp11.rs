//! SCP11 through the real PC/SC stack (pcscd + vsmartcard's vpcd + `cardwright sim run
//! --vpcd`): `cardwright card --reader … --scp 11b … list` and `--scp 11a`, then an
//! independent SCP11 host, Yubico's yubikit over pyscard (`tests/yubikit/scp11.py`, in the
//! venv `scripts/setup.sh` makes under `target/venv-yubikit`), opening SCP11b and SCP11a.
//!
//! Runs when `CARDWRIGHT_PCSC_TESTS=1` and then fails (not skips) when anything is missing.

mod common;
use common::pcsc::*;
use common::*;
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// One test: the reader is shared, so the steps run in order.
#[test]
fn scp11_over_pcsc_with_our_host_and_yubikit() {
    if !enabled() {
        return;
    }
    let dir = tempdir();
    let state = dir.path().join("card.json").to_string_lossy().into_owned();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let master = p("master");
    std::fs::write(&master, "11".repeat(32)).unwrap();
    let keystore = format!("file:{}?master-key-file={master}", p("keys.json"));
    ok(&["sim", "create", "--state", &state]);
    let _sim = start_sim_in_reader(&state);
    let card = |more: &[&str]| -> Vec<String> {
        ["card", "--reader", READER, "--keystore", &keystore]
            .iter()
            .chain(more)
            .map(|s| s.to_string())
            .collect()
    };
    let card_ok = |more: &[&str]| {
        let v = card(more);
        ok(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // SCP11b with the factory key set, the chain's first certificate as the trust anchor.
    let chain = p("chain");
    card_ok(&["scp11", "certs", "--out", &chain]);
    let anchor = format!("{chain}.0");
    let out = card_ok(&["--scp", "11b", "--sd-trust", &anchor, "list"]);
    assert!(out.contains("A000000151000000"), "{out}");

    // SCP11a after `scp11 setup` (over SCP03 with the test keys) and an OCE key in the store.
    let ca = p("ca.pem");
    card_ok(&[
        "scp11",
        "setup",
        "--ca",
        "ca",
        "--variant",
        "11a",
        "--kvn",
        "3",
        "--ca-cert-out",
        &ca,
    ]);
    let oce = p("oce.pem");
    ok(&[
        "keys",
        "--keystore",
        &keystore,
        "create-oce-key",
        "--label",
        "oce",
        "--ca",
        "ca",
        "--cert-out",
        &oce,
    ]);
    let out = card_ok(&[
        "--scp",
        "11a",
        "--scp11-kvn",
        "3",
        "--oce-key",
        "oce",
        "--oce-cert",
        &oce,
        "--sd-trust",
        &ca,
        "list",
    ]);
    assert!(out.contains("A000000151000000"), "{out}");

    // An SCP11b key set made by `scp11 setup` (X.509 chain from the key store's CA), for
    // yubikit to read, check against ca.pem and open.
    card_ok(&[
        "scp11",
        "setup",
        "--ca",
        "ca",
        "--variant",
        "11b",
        "--kvn",
        "4",
        "--no-oce-anchor",
    ]);

    // yubikit: SCP11b, then its own CA, trust anchor and SCP11a key at KVN 07, then the
    // chain `scp11 setup` issued.
    let python = repo().join("target/venv-yubikit/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/setup.sh (installs yubikey-manager)",
        python.display()
    );
    let o = Command::new(&python)
        .arg(repo().join("tests/yubikit/scp11.py"))
        .args([READER, "--11a", "7", "--11b-issued", "4", &ca])
        .output()
        .expect("run yubikit");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "yubikit: {stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("OK SCP11b"), "{stdout}");
    assert!(stdout.contains("OK SCP11a"), "{stdout}");
    assert!(stdout.contains("OK SCP11b issued"), "{stdout}");
}
