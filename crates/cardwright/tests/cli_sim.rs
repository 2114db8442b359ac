//! The whole card-management scenario through the `cardwright` binary on the in-process
//! virtual card (`--sim`), at every security level, SCP02 and SCP03; and bad input.

mod common;
use common::*;

const SSD: &str = "A00000015153534401";
const AES_KEY: &str = "000102030405060708090A0B0C0D0E0F";
const EMPTY_PKG: &str = "0102030405";
const EMPTY_APPLET: &str = "0102030405060708";
const INSTANCE: &str = "01020304050607080901";

struct Card {
    _dir: tempfile::TempDir,
    state: String,
}

impl Card {
    fn new(scp: &str, extra: &[&str]) -> Card {
        let dir = tempdir();
        let state = dir.path().join("card.json").to_string_lossy().into_owned();
        let mut args = vec!["sim", "create", "--state", &state, "--scp", scp];
        args.extend_from_slice(extra);
        ok(&args);
        Card { _dir: dir, state }
    }
    /// `cardwright card --sim STATE ARGS…`
    fn card(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec!["card".into(), "--sim".into(), self.state.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }
    fn ok(&self, args: &[&str]) -> String {
        let v = self.card(args);
        ok(&v.iter().map(String::as_str).collect::<Vec<_>>())
    }
    fn fails(&self, args: &[&str], needle: &str) -> String {
        let v = self.card(args);
        fails(&v.iter().map(String::as_str).collect::<Vec<_>>(), needle)
    }
    fn list(&self) -> String {
        self.ok(&["list"])
    }
}

fn scenario(scp: &str, level: &str) {
    let card = Card::new(scp, &[]);
    let lv = ["--security-level", level];
    let cap = cap("Empty_0102030405_8d5ac9e2_2.2.1.cap");
    let cap = cap.to_str().unwrap();

    let before = card.list();
    assert!(before.contains("ISD: A000000151000000"), "{before}");

    // The issuer creates an SSD with Authorized Management.
    card.ok(&[&lv[..], &["create-domain", SSD, "--privs", "am"]].concat());
    let l = card.list();
    assert!(l.contains(&format!("SSD: {SSD}")), "{l}");

    // The SSD's initial keys are replaced by AES keys (key version 0x31).
    let ssd = ["--sd", SSD];
    card.ok(&[
        &lv[..],
        &ssd,
        &[
            "lock",
            "--new-key",
            AES_KEY,
            "--new-key-type",
            "aes",
            "--new-keyver",
            "0x31",
        ],
    ]
    .concat());
    // The old keys no longer open the SSD; the new ones do.
    card.fails(&[&lv[..], &ssd, &["list"]].concat(), "cryptogram");
    let with_new = ["--sd", SSD, "--key", AES_KEY];
    card.ok(&[&lv[..], &with_new, &["list"]].concat());

    // Load and install a CAP into the SSD, by the SSD itself (Authorized Management).
    let out = card.ok(&[&lv[..], &with_new, &["install", cap, "--create", INSTANCE]].concat());
    assert!(out.contains(&format!("installed {INSTANCE}")), "{out}");
    let l = card.list();
    assert!(l.contains(&format!("APP: {INSTANCE}")), "{l}");
    assert!(l.contains(&format!("PKG: {EMPTY_PKG}")), "{l}");

    // Personalise the SSD (INSTALL [for personalization] + STORE DATA).
    card.ok(&[&lv[..], &["store-data", SSD, "DF0103010203", "DF020100"]].concat());

    // Lock and unlock the application; lock and unlock the card.
    card.ok(&[&lv[..], &["lock-applet", INSTANCE]].concat());
    assert!(card.list().contains("LOCKED"), "applet should be locked");
    card.ok(&[&lv[..], &["unlock-applet", INSTANCE]].concat());
    card.ok(&[&lv[..], &["set-secured"]].concat());
    card.ok(&[&lv[..], &["lock-card"]].concat());
    assert!(card.list().contains("CARD_LOCKED"));
    card.ok(&[&lv[..], &["unlock-card"]].concat());
    assert!(card.list().contains("SECURED"));

    // Delete the application, the package, the SSD.
    card.ok(&[&lv[..], &["delete", INSTANCE]].concat());
    card.ok(&[&lv[..], &["delete", EMPTY_PKG, "--related"]].concat());
    card.ok(&[&lv[..], &["delete", SSD, "--related"]].concat());
    let after = card.list();
    assert!(!after.contains(INSTANCE) && !after.contains(SSD), "{after}");
    let _ = EMPTY_APPLET;
}

#[test]
fn scp03_mac() {
    scenario("03", "mac");
}
#[test]
fn scp03_mac_enc() {
    scenario("03", "mac+enc");
}
#[test]
fn scp03_mac_enc_rmac() {
    scenario("03", "mac+enc+rmac");
}
#[test]
fn scp03_mac_enc_rmac_renc() {
    scenario("03", "mac+enc+rmac+renc");
}
#[test]
fn scp02_mac() {
    scenario("02", "mac");
}
#[test]
fn scp02_mac_enc() {
    scenario("02", "mac+enc");
}
#[test]
fn scp02_mac_enc_rmac() {
    scenario("02", "mac+enc+rmac");
}

#[test]
fn info_shows_identity() {
    let card = Card::new("03", &[]);
    let out = card.ok(&["info"]);
    for needle in ["ATR:", "A000000151000000", "CPLC", "Life cycle: OP_READY"] {
        assert!(out.contains(needle), "info lacks {needle}:\n{out}");
    }
}

#[test]
fn truncated_cap_is_refused_and_changes_nothing() {
    let card = Card::new("03", &[]);
    let dir = tempdir();
    let bytes = std::fs::read(cap("Empty_0102030405_8d5ac9e2_2.2.1.cap")).unwrap();
    let bad = dir.path().join("truncated.cap");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let before = card.list();
    card.fails(&["install", bad.to_str().unwrap()], "not a valid CAP file");
    assert_eq!(card.list(), before);
}

#[test]
fn wrong_key_stops_before_external_authenticate() {
    let card = Card::new("03", &["--max-auth-failures", "3"]);
    let before = card.list();
    // Far more attempts than the failure limit: none may count, since EXTERNAL
    // AUTHENTICATE is never sent with keys whose card cryptogram does not verify.
    for _ in 0..5 {
        let err = card.fails(&["--key", AES_KEY, "list"], "cryptogram");
        assert!(err.contains("EXTERNAL AUTHENTICATE was not sent"), "{err}");
    }
    assert_eq!(card.list(), before);
}

#[test]
fn key_set_locks_after_failed_authentications() {
    let card = Card::new("03", &["--max-auth-failures", "3"]);
    // Three EXTERNAL AUTHENTICATEs with a bad cryptogram, as a broken host would send.
    for _ in 0..3 {
        card.ok(&[
            "apdu",
            "8050300008000000000000000000",
            "848201001000000000000000000000000000000000",
        ]);
    }
    card.fails(&["list"], "locked");
    card.fails(&["list"], "locked");
}

#[test]
fn unknown_aid_is_a_clear_error() {
    let card = Card::new("03", &[]);
    let before = card.list();
    card.fails(
        &["delete", "A0000000FFFFFF"],
        "DELETE A0000000FFFFFF failed",
    );
    card.fails(&["lock-applet", "A0000000FFFFFF"], "SET STATUS");
    assert_eq!(card.list(), before);
}

#[test]
fn raw_apdu_check_fails_on_error_status() {
    let card = Card::new("03", &[]);
    let out = card.ok(&["apdu", "00A4040005A0000000FF"]);
    assert!(out.contains("6A82"), "{out}");
    card.fails(
        &["apdu", "--check", "00A4040005A0000000FF"],
        "APDU 00A4040005A0000000FF failed: the card answered 6A82",
    );
}

#[test]
fn terminate_needs_confirmation() {
    let card = Card::new("03", &[]);
    card.fails(&["terminate"], "--really");
}

/// `lock --new-kdf` puts keys diversified from a master key with the card's KDD; then
/// `--key MASTER --kdf …` opens the card, and the undiversified master key does not.
fn diversified_keys(scp: &str, kdf: &str) {
    const MASTER: &str = "00112233445566778899AABBCCDDEEFF";
    let card = Card::new(scp, &["--kdd", "0102030405060708090A"]);
    card.ok(&["lock", "--new-key", MASTER, "--new-kdf", kdf]);
    let l = card.ok(&["--key", MASTER, "--kdf", kdf, "list"]);
    assert!(l.contains("ISD: A000000151000000"), "{l}");
    card.fails(&["--key", MASTER, "list"], "cryptogram");
    card.fails(&["list"], "cryptogram");
}

#[test]
fn kdf3_on_scp03() {
    diversified_keys("03", "kdf3");
}
#[test]
fn emv_on_scp02() {
    diversified_keys("02", "emv");
}
#[test]
fn visa2_on_scp02() {
    diversified_keys("02", "visa2");
}

#[test]
fn a_card_in_use_by_sim_run_is_refused() {
    let card = Card::new("03", &[]);
    // `sim run` without --vpcd reads APDUs from stdin: keep stdin open so it holds the card.
    let mut running = std::process::Command::new(bin())
        .args(["sim", "run", "--state", &card.state])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it has the card (it says so on stderr once open).
    let mut err = std::io::BufReader::new(running.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    card.fails(&["info"], "in use by another process");
    drop(running.stdin.take());
    running.wait().unwrap();
    card.ok(&["info"]);
}
