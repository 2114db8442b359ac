//! `cardwright audit verify` on a SQLite platform database: a clean chain verifies; an entry
//! edited behind the platform's back makes it fail, naming the entry.

mod common;
use common::*;

#[test]
fn editing_an_audit_row_is_detected() {
    let dir = tempdir();
    let path = dir.path().join("platform.db");
    let url = format!("sqlite:{}", path.display());
    {
        let store = tsm::Store::open(&url).unwrap();
        for (i, action) in ["card.write", "card.rewrite", "card.clear"]
            .iter()
            .enumerate()
        {
            let mut e = tsm::audit::NewEntry::new("operator-1", action, "ok");
            e.card_number = Some(format!("100000000000000{i}"));
            store.audit_append(&e).unwrap();
        }
    }
    let out = ok(&["audit", "--db", &url, "verify"]);
    assert!(out.contains("verified: 3 entries"), "{out}");
    let shown = ok(&["audit", "--db", &url, "show"]);
    assert_eq!(shown.lines().count(), 3, "{shown}");

    // The table refuses edits...
    let conn = rusqlite::Connection::open(&path).unwrap();
    let refused = conn.execute("UPDATE audit_log SET result = 'failed' WHERE id = 2", []);
    assert!(refused.is_err(), "the audit table must be append-only");
    // ...so someone with file access drops the guard first and edits the second entry.
    conn.execute("DROP TRIGGER audit_log_no_update", [])
        .unwrap();
    conn.execute("UPDATE audit_log SET result = 'failed' WHERE id = 2", [])
        .unwrap();
    drop(conn);
    fails(&["audit", "--db", &url, "verify"], "entry 2");
}

const MASTER: &str = "5555555555555555555555555555555555555555555555555555555555555555";

/// `cardwright ARGS` with the platform database and a software key store in `dir`.
fn platform(dir: &std::path::Path, args: &[&str]) -> Run {
    let envs = [
        (
            "CARDWRIGHT_DB".to_string(),
            format!("sqlite:{}", dir.join("platform.db").display()),
        ),
        (
            "CARDWRIGHT_KEYSTORE".to_string(),
            format!("file:{}", dir.join("keys.json").display()),
        ),
        ("CARDWRIGHT_MASTER_KEY".to_string(), MASTER.to_string()),
    ];
    run_env(args, &envs, "")
}

fn error_line(r: &Run) -> String {
    assert!(!r.ok, "should have failed:\n{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    r.stderr
        .lines()
        .find(|l| l.starts_with("cardwright: error:"))
        .unwrap_or_else(|| panic!("no error line:\n{}", r.stderr))
        .to_string()
}

#[test]
fn removing_the_last_entries_is_detected_by_the_signed_checkpoint() {
    let dir = tempdir();
    let path = dir.path().join("platform.db");
    let url = format!("sqlite:{}", path.display());
    for i in 0..4 {
        let id = format!("tenant{i}");
        let r = platform(
            dir.path(),
            &[
                "tenant", "create", "--id", &id, "--name", "T", "--role", "ci",
            ],
        );
        assert!(r.ok, "{}", r.stderr);
    }
    let r = platform(dir.path(), &["audit", "verify"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("verified: 4 entries, head 4:"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("anchored by a checkpoint"),
        "{}",
        r.stdout
    );
    let head = r
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("4:"))
        .unwrap()
        .to_string();
    assert_eq!(head.len(), 2 + 64, "{head}");
    let r = platform(dir.path(), &["audit", "verify", "--expect-head", &head]);
    assert!(r.ok, "{}", r.stderr);

    // Someone with write access to the database drops the guard, removes the last two
    // entries and points the chain head at the new last one.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("DROP TRIGGER audit_log_no_delete", [])
        .unwrap();
    conn.execute("DELETE FROM audit_log WHERE id > 2", [])
        .unwrap();
    conn.execute(
        "UPDATE audit_head SET last_id = 2, last_hash = (SELECT hash FROM audit_log WHERE id = 2)",
        [],
    )
    .unwrap();
    // The unkeyed chain alone still verifies (what the checkpoint is for)...
    let chain_only = ok(&["audit", "--db", &url, "verify"]);
    assert!(chain_only.contains("verified: 2 entries"), "{chain_only}");
    // ...but not against the signed checkpoint, nor against the recorded head.
    let line = error_line(&platform(dir.path(), &["audit", "verify"]));
    assert!(
        line.contains("counts 4 entries, the log has 2 (entries removed at the end)"),
        "{line}"
    );
    fails(
        &["audit", "--db", &url, "verify", "--expect-head", &head],
        "removed at the end",
    );

    // Rewriting the checkpoint to the shorter log does not help without the key...
    conn.execute(
        "UPDATE audit_checkpoint SET entries = 2, head = (SELECT hash FROM audit_log WHERE id = 2)",
        [],
    )
    .unwrap();
    let line = error_line(&platform(dir.path(), &["audit", "verify"]));
    assert!(
        line.contains("does not verify with the audit key"),
        "{line}"
    );
    // ...nor does removing it.
    conn.execute("DELETE FROM audit_checkpoint", []).unwrap();
    let line = error_line(&platform(dir.path(), &["audit", "verify"]));
    assert!(line.contains("no signed checkpoint"), "{line}");
}

#[test]
fn a_recorded_head_must_be_well_formed() {
    let dir = tempdir();
    let url = format!("sqlite:{}", dir.path().join("platform.db").display());
    tsm::Store::open(&url).unwrap();
    let out = ok(&["audit", "--db", &url, "verify"]);
    assert!(out.contains("verified: 0 entries, head 0:"), "{out}");
    fails(
        &["audit", "--db", &url, "verify", "--expect-head", "3:ABCD"],
        "expected ENTRIES:HASH",
    );
    fails(
        &[
            "audit",
            "--db",
            &url,
            "verify",
            "--expect-head",
            &format!("1:{}", "00".repeat(32)),
        ],
        "removed at the end",
    );
}
