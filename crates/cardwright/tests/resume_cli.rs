//! `issue resume` after a crash: while the dead worker's lease runs, the refusal says who holds
//! the job and when it can run; `--take-over` runs it at once and the audit log records it.

mod common;
use common::*;

const MASTER: &str = "6666666666666666666666666666666666666666666666666666666666666666";
const CARD: &str = "4711000000000042";
const BASE: &str = "0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFFF";

#[test]
fn resume_names_the_lease_holder_and_take_over_runs_the_job() {
    let dir = tempdir();
    let path = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let envs = [
        (
            "CARDWRIGHT_DB".to_string(),
            format!("sqlite:{}", path("platform.db")),
        ),
        (
            "CARDWRIGHT_KEYSTORE".to_string(),
            format!("file:{}", path("keys.json")),
        ),
        ("CARDWRIGHT_MASTER_KEY".to_string(), MASTER.to_string()),
    ];
    let cli = |args: &[&str], input: &str| run_env(args, &envs, input);
    let ok = |args: &[&str]| {
        let r = cli(args, "");
        assert!(
            r.ok,
            "cardwright {}:\n{}{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    };
    let r = cli(
        &["keys", "import-base", "--category", "gold"],
        &components_of(BASE),
    );
    assert!(r.ok, "{}", r.stderr);
    ok(&[
        "tenant", "create", "--id", "issuer", "--name", "I", "--role", "ci",
    ]);
    ok(&["category", "create", "--id", "gold", "--tenant", "issuer"]);
    let card = path("card.json");
    ok(&["sim", "create", "--state", &card, "--no-piv"]);

    // A worker on another host submitted and claimed the write, then died: its lease runs
    // for four more minutes.
    std::fs::write(path("master.key"), MASTER).unwrap();
    let keys = kms::open(&format!(
        "file:{}?master-key-file={}",
        path("keys.json"),
        path("master.key")
    ))
    .unwrap();
    let store = tsm::Store::open(&format!("sqlite:{}", path("platform.db"))).unwrap();
    let issuer = tsm::Issuer::new(
        store.clone(),
        std::sync::Arc::from(keys),
        tsm::IssuerConfig::default(),
    );
    let id = issuer
        .submit(
            &tsm::Actor::new("issuer", "operator"),
            &tsm::Request::Write {
                card_number: CARD.into(),
                category: "gold".into(),
                install_apps: false,
                perso: Vec::new(),
            },
        )
        .unwrap();
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 240_000;
    rusqlite::Connection::open(path("platform.db"))
        .unwrap()
        .execute(
            "UPDATE jobs SET state = 'running', attempts = 1, lease_until_ms = ?1,
                 lease_owner = 'pid 4242 on desk-7 (00112233)' WHERE id = ?2",
            rusqlite::params![until, id],
        )
        .unwrap();

    let resume = ["issue", "--sim", &card, "resume", "--card-number", CARD];
    let r = cli(&resume, "");
    assert!(!r.ok, "{}", r.stdout);
    for needle in [
        "lease not expired",
        "held by pid 4242 on desk-7",
        "can run again after",
        "UTC (3 min",
        "take it over",
    ] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
    assert_eq!(store.job(id).unwrap().unwrap().state.as_str(), "running");

    let mut take_over = resume.to_vec();
    take_over.push("--take-over");
    let out = ok(&take_over);
    assert!(out.contains("is written"), "{out}");
    assert_eq!(store.job(id).unwrap().unwrap().state.as_str(), "done");
    let audit = ok(&["audit", "show", "--card-number", CARD]);
    let taken = audit
        .lines()
        .find(|l| l.contains("\"taken-over\""))
        .unwrap_or_else(|| panic!("no take-over in the audit log:\n{audit}"));
    assert!(taken.contains("issuer/operator"), "{taken}");
    assert!(taken.contains("pid 4242 on desk-7"), "{taken}");
    ok(&["audit", "verify"]);
}
