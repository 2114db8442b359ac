//! Through the real PC/SC stack: pcscd + vsmartcard's vpcd + `cardwright sim run --vpcd`,
//! then `cardwright card …` over PC/SC, and tools nobody here wrote (OpenSC's
//! `opensc-tool`, pyscard) seeing the card.
//!
//! Runs when `CARDWRIGHT_PCSC_TESTS=1` (set by scripts/test.sh, which installs and starts
//! pcscd); otherwise it says it is skipped. Needs the `pcsc` feature.

mod common;
use common::pcsc::*;
use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn card_management_over_pcsc() {
    if !enabled() {
        return;
    }
    let dir = tempdir();
    let state = dir.path().join("card.json").to_string_lossy().into_owned();
    let _sim = start_sim_in_reader(&state);

    // OpenSC sees the card and its ATR.
    let atr = ok(&["card", "--reader", READER, "info"]);
    let atr_line = atr
        .lines()
        .find(|l| l.starts_with("ATR:"))
        .unwrap()
        .to_string();
    let atr_hex = atr_line.trim_start_matches("ATR:").trim().to_string();
    let o = Command::new("opensc-tool")
        .args(["-r", READER, "-a"])
        .output()
        .expect("opensc-tool");
    let text = String::from_utf8_lossy(&o.stdout)
        .to_uppercase()
        .replace(':', "");
    assert!(
        o.status.success(),
        "opensc-tool -a: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains(&atr_hex),
        "opensc-tool -a printed {text}, expected ATR {atr_hex}"
    );

    // pyscard talks to it: SELECT the ISD.
    let py = r#"
from smartcard.System import readers
r = [x for x in readers() if str(x).startswith("Virtual PCD 00 00")][0]
c = r.createConnection(); c.connect()
data, sw1, sw2 = c.transmit([0x00,0xA4,0x04,0x00,0x08,0xA0,0,0,0x01,0x51,0,0,0,0x00])
print("%02X%02X" % (sw1, sw2))
"#;
    let o = Command::new("/usr/bin/python3")
        .args(["-c", py])
        .output()
        .expect("/usr/bin/python3 (Debian python3-pyscard)");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "9000",
        "pyscard: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // cardwright over PC/SC: list, install, delete, with a trace.
    let rd = ["card", "--reader", READER];
    let l = ok(&[&rd[..], &["list"]].concat());
    assert!(l.contains("ISD: A000000151000000"), "{l}");
    let cap = cap("Empty_0102030405_8d5ac9e2_2.2.1.cap");
    let r = run(&[
        &rd[..],
        &[
            "--trace",
            "--security-level",
            "mac+enc",
            "install",
            cap.to_str().unwrap(),
        ],
    ]
    .concat());
    assert!(r.ok, "install over PC/SC: {}", r.stderr);
    assert!(
        r.stderr.lines().any(|l| l.starts_with(">> 84E8")),
        "trace shows LOAD:\n{}",
        r.stderr
    );
    assert!(r
        .stderr
        .lines()
        .any(|l| l.starts_with("<< ") && l.ends_with("9000")));
    let l = ok(&[&rd[..], &["list"]].concat());
    assert!(
        l.contains("APP: 0102030405060708") && l.contains("PKG: 0102030405"),
        "{l}"
    );
    ok(&[&rd[..], &["delete", "--related", "0102030405"]].concat());
    let l = ok(&[&rd[..], &["list"]].concat());
    assert!(!l.contains("0102030405060708"), "{l}");
    fails(&[&rd[..], &["delete", "0102030405"]].concat(), "6A88");

    // pcscd restarts: the virtual card reconnects by itself.
    let _ = Command::new("pkill").args(["-x", "pcscd"]).status();
    std::thread::sleep(Duration::from_millis(500));
    Command::new("sh")
        .args(["-c", "pcscd --foreground >/tmp/cardwright-pcscd.log 2>&1 &"])
        .status()
        .expect("restart pcscd");
    wait_for_card();
    let l = ok(&[&rd[..], &["list"]].concat());
    assert!(l.contains("ISD: A000000151000000"), "{l}");
}
