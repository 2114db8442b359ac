//! Delegated Management and DAP through the `cardwright` binary on the in-process virtual
//! card (`--sim`): a DM security domain installs with tokens (signed now or pre-computed with
//! `token sign`) and is refused without; receipts are verified and logged; extradition with
//! a token; bad input (tampered token, token for another command, replayed receipt counter,
//! DAP over another file) fails with a clear error and leaves the card unchanged.

mod common;
use common::*;
use std::path::PathBuf;

const DM_SD: &str = "A0000001514444D001";
const OTHER_SD: &str = "A0000001514444D002";
const DAP_SD: &str = "A0000001514441500001";
const RECEIPT_KEY: &str = "71717171717171717171717171717171";
const EMPTY_PKG: &str = "0102030405";
const EMPTY_APPLET: &str = "0102030405060708";

fn vector(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../gp/tests/vectors/dm")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

struct Card {
    dir: tempfile::TempDir,
    state: String,
}

impl Card {
    /// A card whose ISD holds the P-256 token key (KVN 70) and an AES receipt key (KVN 71),
    /// with a DM security domain and a plain one.
    fn new() -> Card {
        let dir = tempdir();
        let state = dir.path().join("card.json").to_string_lossy().into_owned();
        ok(&["sim", "create", "--state", &state]);
        let c = Card { dir, state };
        c.ok(&[
            "put-public-key",
            &vector("token-p256.pub.pem"),
            "--kvn",
            "0x70",
        ]);
        c.ok(&["put-key", "--new-key", RECEIPT_KEY, "--new-keyver", "0x71"]);
        c.ok(&["create-domain", DM_SD, "--privs", "dm"]);
        c.ok(&["create-domain", OTHER_SD]);
        c
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec!["card".into(), "--sim".into(), self.state.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }
    fn ok(&self, args: &[&str]) -> String {
        let v = self.args(args);
        ok(&v.iter().map(String::as_str).collect::<Vec<_>>())
    }
    fn fails(&self, args: &[&str], needle: &str) -> String {
        let v = self.args(args);
        fails(&v.iter().map(String::as_str).collect::<Vec<_>>(), needle)
    }
    fn list(&self) -> String {
        self.ok(&["list"])
    }
}

fn empty_cap() -> String {
    cap("Empty_0102030405_8d5ac9e2_2.2.1.cap")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn dm_domain_installs_with_tokens_and_receipts_are_kept() {
    let card = Card::new();
    let cap = empty_cap();
    let log = card.path("receipts.log");
    let before = card.list();

    // Without a token the DM domain is refused (6982), nothing changes.
    card.fails(&["--sd", DM_SD, "install", &cap], "6982");
    assert_eq!(card.list(), before);

    // Tokens computed offline, then used: loaded, installed, two receipts verified and kept.
    let tokens = card.path("tokens.txt");
    ok(&[
        "token",
        "sign",
        "--dm-key",
        &vector("token-p256.pem"),
        "--out",
        &tokens,
        "install",
        &cap,
    ]);
    let out = card.ok(&[
        "--sd",
        DM_SD,
        "install",
        &cap,
        "--dm-token",
        &tokens,
        "--receipt-key",
        RECEIPT_KEY,
        "--receipts",
        &log,
    ]);
    assert!(out.contains("receipt verified: load"), "{out}");
    assert!(out.contains("receipt verified: install"), "{out}");
    let l = card.list();
    assert!(l.contains(EMPTY_APPLET), "{l}");
    let kept = std::fs::read_to_string(&log).unwrap();
    assert!(kept.contains("counter=1 op=load"), "{kept}");
    assert!(kept.contains("counter=2 op=install"), "{kept}");

    // Extradition of the applet to the other SD, with a token signed now.
    let out = card.ok(&[
        "--sd",
        DM_SD,
        "extradite",
        EMPTY_APPLET,
        "--to",
        OTHER_SD,
        "--dm-key",
        &vector("token-p256.pem"),
        "--receipt-key",
        RECEIPT_KEY,
        "--receipts",
        &log,
    ]);
    assert!(out.contains("receipt verified: extradition"), "{out}");
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("counter=3 op=extradition"));

    // A replayed counter: the log says 100 was seen, the card's next receipt is 4.
    std::fs::write(
        &log,
        "receipt counter=100 op=delete object=X sd-unique-data= receipt=00\n",
    )
    .unwrap();
    card.fails(
        &[
            "--sd",
            DM_SD,
            "delete",
            EMPTY_PKG,
            "--related",
            "--dm-key",
            &vector("token-p256.pem"),
            "--receipt-key",
            RECEIPT_KEY,
            "--receipts",
            &log,
        ],
        "not above the last one seen",
    );
}

#[test]
fn bad_tokens_leave_the_card_unchanged() {
    let card = Card::new();
    let cap = empty_cap();
    let before = card.list();

    // A tampered token: the card answers 6A80.
    let tokens = card.path("tokens.txt");
    ok(&[
        "token",
        "sign",
        "--dm-key",
        &vector("token-p256.pem"),
        "--out",
        &tokens,
        "install",
        &cap,
    ]);
    let text = std::fs::read_to_string(&tokens).unwrap();
    let tampered: String = text
        .lines()
        .map(|l| {
            if l.starts_with("token ") {
                let mut s = l.to_string();
                let last = s.pop().unwrap();
                s.push(if last == '0' { '1' } else { '0' });
                s
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let bad = card.path("tampered.txt");
    std::fs::write(&bad, tampered).unwrap();
    card.fails(
        &["--sd", DM_SD, "install", &cap, "--dm-token", &bad],
        "6A80",
    );
    assert_eq!(card.list(), before);

    // A token for another command: the host finds none for this one and sends nothing.
    let other = card.path("other.txt");
    ok(&[
        "token",
        "sign",
        "--dm-key",
        &vector("token-p256.pem"),
        "--out",
        &other,
        "delete",
        "A00000000101",
    ]);
    card.fails(
        &["--sd", DM_SD, "install", &cap, "--dm-token", &other],
        "no token for this command",
    );
    assert_eq!(card.list(), before);

    // A token signed with another key: refused by the card.
    card.fails(
        &[
            "--sd",
            DM_SD,
            "install",
            &cap,
            "--dm-key",
            &vector("token-rsa1024.pem"),
        ],
        "6A80",
    );
    assert_eq!(card.list(), before);
}

#[test]
fn dap_domain_as_load_target() {
    let card = Card::new();
    let cap = empty_cap();
    card.ok(&["create-domain", DAP_SD, "--privs", "dap"]);
    card.ok(&[
        "--sd",
        DAP_SD,
        "put-public-key",
        &vector("token-rsa2048.pub.pem"),
        "--kvn",
        "0x73",
    ]);
    let before = card.list();
    // No DAP, or a DAP by another key (a signature over another file's hash is the same
    // failure): refused, nothing stays.
    card.fails(
        &["install", &cap, "--to", DAP_SD, "--hash", "sha256"],
        "6982",
    );
    card.fails(
        &[
            "install",
            &cap,
            "--to",
            DAP_SD,
            "--dap-key",
            &vector("token-p256.pem"),
            "--dap-sd",
            DAP_SD,
        ],
        "6982",
    );
    assert_eq!(card.list(), before);
    let out = card.ok(&[
        "install",
        &cap,
        "--to",
        DAP_SD,
        "--dap-key",
        &vector("token-rsa2048.pem"),
        "--dap-sd",
        DAP_SD,
    ]);
    assert!(out.contains("installed"), "{out}");
    assert!(card.list().contains(EMPTY_APPLET));
}
