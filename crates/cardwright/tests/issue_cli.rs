//! Card issuance through the CLI on the virtual card: write, rewrite, clear, with base keys in
//! the software key store, checked by independent secure channels opened with `card --kdf`.

mod common;
use common::*;

const MASTER: &str = "4444444444444444444444444444444444444444444444444444444444444444";
const CARD: &str = "4711000000000001";

struct Platform {
    dir: tempfile::TempDir,
}

impl Platform {
    fn new() -> Platform {
        Platform { dir: tempdir() }
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
    /// `cardwright ARGS` with this platform's database, key store and master key.
    fn run(&self, args: &[&str], input: &str) -> Run {
        let envs = [
            (
                "CARDWRIGHT_DB".to_string(),
                format!("sqlite:{}", self.path("platform.db")),
            ),
            (
                "CARDWRIGHT_KEYSTORE".to_string(),
                format!("file:{}", self.path("keys.json")),
            ),
            ("CARDWRIGHT_MASTER_KEY".to_string(), MASTER.to_string()),
        ];
        run_env(args, &envs, input)
    }
    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args, "");
        assert!(
            r.ok,
            "cardwright {} failed:\n{}{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    }
    fn fails(&self, args: &[&str], needle: &str) {
        let r = self.run(args, "");
        assert!(
            !r.ok,
            "cardwright {} should fail:\n{}",
            args.join(" "),
            r.stdout
        );
        assert!(
            r.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "{} → {}",
            args.join(" "),
            r.stderr
        );
    }
    /// Imports a base key as two components whose XOR is `base`.
    fn import(&self, category: &str, base: &str) {
        let r = self.run(
            &["keys", "import-base", "--category", category],
            &components_of(base),
        );
        assert!(r.ok, "{}", r.stderr);
    }
}

#[test]
fn write_rewrite_clear() {
    const BASE1: &str = "0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFFF";
    const BASE2: &str = "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF";
    let p = Platform::new();
    let card = p.path("card.json");
    p.import("gold", BASE1);
    p.ok(&[
        "tenant", "create", "--id", "issuer", "--name", "Issuer", "--role", "ci",
    ]);
    let out = p.ok(&[
        "category", "create", "--id", "gold", "--tenant", "issuer", "--perso", "5F2001AA",
    ]);
    assert!(out.contains("written with version 1"), "{out}");
    p.ok(&["sim", "create", "--state", &card, "--no-piv"]);

    // Unknown category, then a real write.
    p.fails(
        &[
            "issue",
            "--sim",
            &card,
            "write",
            "--card-number",
            CARD,
            "--category",
            "silver",
        ],
        "silver",
    );
    // Card-specific personalisation from a file (hex text), after the category's.
    let perso = p.path("perso.hex");
    std::fs::write(&perso, "5F2102BBCC\n").unwrap();
    let out = p.ok(&[
        "issue",
        "--sim",
        &card,
        "write",
        "--card-number",
        CARD,
        "--category",
        "gold",
        "--perso",
        &perso,
    ]);
    assert!(out.contains("is written"), "{out}");
    let state = std::fs::read_to_string(&card).unwrap();
    assert!(
        state.contains("\"5F21\": \"BBCC\"") && state.contains("\"5F20\": \"AA\""),
        "personalisation on the card"
    );

    // An independent channel with the base key and KDF3 opens the card; the initial key does not.
    p.ok(&[
        "card", "--sim", &card, "--key", BASE1, "--kdf", "kdf3", "list",
    ]);
    p.fails(&["card", "--sim", &card, "list"], "cryptogram");

    // Writing it again is refused (it is not blank), nothing changes.
    p.fails(
        &[
            "issue",
            "--sim",
            &card,
            "write",
            "--card-number",
            CARD,
            "--category",
            "gold",
        ],
        "",
    );
    p.ok(&[
        "card", "--sim", &card, "--key", BASE1, "--kdf", "kdf3", "list",
    ]);

    // Application management: register a package, load and install it, delete it.
    let capfile = cap("Empty_0102030405_8d5ac9e2_2.2.1.cap");
    p.ok(&[
        "package",
        "add",
        "--tenant",
        "issuer",
        "--name",
        "empty",
        capfile.to_str().unwrap(),
    ]);
    let out = p.ok(&[
        "issue",
        "--sim",
        &card,
        "app",
        "load",
        "--card-number",
        CARD,
        "--package",
        "0102030405",
        "--instance",
        "01020304050607080901",
    ]);
    assert!(out.contains("done"), "{out}");
    let l = p.ok(&[
        "card", "--sim", &card, "--key", BASE1, "--kdf", "kdf3", "list",
    ]);
    assert!(l.contains("APP: 01020304050607080901"), "{l}");
    p.ok(&[
        "issue",
        "--sim",
        &card,
        "app",
        "delete",
        "--card-number",
        CARD,
        "--instance",
        "01020304050607080901",
    ]);
    let l = p.ok(&[
        "card", "--sim", &card, "--key", BASE1, "--kdf", "kdf3", "list",
    ]);
    assert!(!l.contains("01020304050607080901"), "{l}");

    // A new base key version; rewrite moves the card to it.
    p.import("gold", BASE2);
    p.ok(&["category", "sync-keys", "--id", "gold"]);
    let out = p.ok(&["issue", "--sim", &card, "rewrite", "--card-number", CARD]);
    assert!(out.contains("key version 2"), "{out}");
    p.fails(
        &[
            "card", "--sim", &card, "--key", BASE1, "--kdf", "kdf3", "list",
        ],
        "cryptogram",
    );
    p.ok(&[
        "card", "--sim", &card, "--key", BASE2, "--kdf", "kdf3", "list",
    ]);

    // Clear: the initial key opens it again.
    let out = p.ok(&["issue", "--sim", &card, "clear", "--card-number", CARD]);
    assert!(out.contains("is blank"), "{out}");
    let state = std::fs::read_to_string(&card).unwrap();
    assert!(
        state.contains("\"5F21\": \"\"") && state.contains("\"5F20\": \"\""),
        "personalisation erased"
    );
    let l = p.ok(&["card", "--sim", &card, "list"]);
    assert!(l.contains("ISD: A000000151000000"), "{l}");
    let status = p.ok(&["issue", "status", "--card-number", CARD]);
    assert!(status.contains("blank"), "{status}");

    // Every step is in the audit log, and the chain verifies.
    let audit = p.ok(&["audit", "show", "--card-number", CARD]);
    for action in ["job.write", "job.rewrite", "job.clear"] {
        assert!(audit.contains(action), "audit lacks {action}:\n{audit}");
    }
    p.ok(&["audit", "verify"]);
    // An unknown card number.
    p.fails(
        &["issue", "--sim", &card, "rewrite", "--card-number", "999"],
        "unknown card",
    );
}

/// A campaign from the command line: created from a range and from a CSV file, started,
/// written by the lab worker on virtual cards, followed with `status` (text and JSON).
#[test]
fn campaign_from_the_cli() {
    const BASE: &str = "0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFFF";
    let p = Platform::new();
    p.import("gold", BASE);
    p.ok(&[
        "tenant", "create", "--id", "issuer", "--name", "Issuer", "--role", "ci",
    ]);
    p.ok(&[
        "category", "create", "--id", "gold", "--tenant", "issuer", "--perso", "5F2001AA",
    ]);
    p.fails(
        &[
            "campaign",
            "create",
            "--category",
            "gold",
            "--range",
            "19..10",
        ],
        "below the first",
    );
    let out = p.ok(&[
        "campaign",
        "create",
        "--category",
        "gold",
        "--range",
        "4711000000000100..4711000000000119",
    ]);
    assert!(out.contains("20 cards in gold"), "{out}");
    let id = out
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    let csv = p.path("cards.csv");
    std::fs::write(
        &csv,
        "card_number,holder\n4711000000000200,A\n4711000000000201,B\n",
    )
    .unwrap();
    let out = p.ok(&["campaign", "create", "--category", "gold", "--cards", &csv]);
    assert!(out.contains("2 cards in gold"), "{out}");
    // Not started: the worker finds nothing.
    let out = p.ok(&["campaign", "run", "--virtual", "--workers", "2"]);
    assert!(out.contains("0 cards written"), "{out}");
    p.ok(&["campaign", "start", &id]);
    let out = p.ok(&["campaign", "run", "--virtual", "--workers", "2"]);
    assert!(out.contains("20 cards written, 0 failed"), "{out}");
    let out = p.ok(&["campaign", "status", &id]);
    assert!(out.contains("20 cards: 20 done, 0 failed"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["campaign", "status", &id, "--json"])).unwrap();
    assert_eq!(json["counts"]["done"], 20, "{json}");
    // The worker that found nothing left marked it finished.
    assert_eq!(json["campaign"]["state"], "finished", "{json}");
    p.fails(&["campaign", "retry", &id], "no failed card");
    p.fails(&["campaign", "cancel", &id], "cannot cancel");
    p.fails(&["campaign", "start", &id], "cannot start");
    let out = p.ok(&["audit", "verify"]);
    assert!(out.contains("verified"), "{out}");
}
