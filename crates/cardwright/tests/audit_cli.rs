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
