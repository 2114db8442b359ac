//! The store on SQLite and PostgreSQL: migrations, records, the audit chain, jobs, and the
//! pki storage traits.

mod common;

use std::sync::Arc;

use common::backends;
use tsm::audit::{AuditFault, NewEntry};
use tsm::model::{InitialKeys, Role};
use tsm::{CategorySpec, NewJob, Store, StoreError};

fn category(id: &str, tenant: &str) -> CategorySpec {
    CategorySpec {
        id: id.into(),
        tenant: tenant.into(),
        description: "test".into(),
        initial_keys: InitialKeys::GpTestKey,
        initial_kvn: 0x30,
        perso: apdu::parse_hex("42 03 123456").unwrap(),
    }
}

#[test]
fn migrations_are_idempotent() {
    for b in backends() {
        let s = b.store();
        let v = s.schema_versions().unwrap();
        assert_eq!(
            v.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            "{}",
            b.name
        );
        assert!(s.migrate().unwrap().is_empty(), "{}", b.name);
        // Opening again applies nothing and keeps the data.
        s.create_tenant("test", "acme", "ACME Mobile", Role::CardIssuer)
            .unwrap();
        let again = Store::open(&b.url).unwrap();
        assert!(again.tenant("acme").unwrap().is_some(), "{}", b.name);
        assert_eq!(again.schema_versions().unwrap().len(), 11);
        // PostgreSQL: the rows updated at every step have room for their new versions on
        // their page (migration 11).
        if let Some(mut c) = b.pg_client() {
            let rows = c
                .query(
                    "SELECT c.relname, c.reloptions::text FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = current_schema() AND c.relname IN ('jobs', 'job_steps', 'cards')
                     ORDER BY c.relname",
                    &[],
                )
                .unwrap();
            let got: Vec<(String, Option<String>)> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            for (table, options) in &got {
                assert_eq!(options.as_deref(), Some("{fillfactor=70}"), "{table}");
            }
            assert_eq!(got.len(), 3);
        }
    }
}

#[test]
fn campaigns_survive_the_migration_that_lets_them_finish() {
    use tsm::campaign::State;
    for b in backends() {
        let s = b.store();
        s.create_tenant("test", "acme", "ACME", Role::CardIssuer)
            .unwrap();
        s.create_category("test", &category("acme/gold", "acme"))
            .unwrap();
        let cards = vec!["4711".to_string(), "4712".to_string()];
        let parent = s
            .create_campaign("acme", "acme/gold", None, "acme/op", &cards)
            .unwrap();
        let child = s
            .create_campaign("acme", "acme/gold", Some(parent), "acme/op", &cards[..1])
            .unwrap();
        // Back to schema 9: the state check without `finished`.
        let downgrade = match b.pg_client() {
            Some(_) => "ALTER TABLE campaigns DROP CONSTRAINT campaigns_state_check; \
                 ALTER TABLE campaigns ADD CONSTRAINT campaigns_state_check CHECK (state IN ('created', 'running', 'paused', 'cancelled')); \
                 DELETE FROM schema_migrations WHERE version = 10;",
            None => "DELETE FROM schema_migrations WHERE version = 10;",
        };
        match b.pg_client() {
            Some(mut c) => c.batch_execute(downgrade).unwrap(),
            None => rusqlite::Connection::open(b.sqlite_path().unwrap())
                .unwrap()
                .execute_batch(downgrade)
                .unwrap(),
        }
        // (SQLite's table keeps the check it was made with; the migration rebuilds it.)
        if b.pg_client().is_some() {
            assert!(
                s.set_campaign_state(parent, &[State::Created], State::Finished)
                    .is_err(),
                "schema 9 has no finished campaign"
            );
        }
        assert_eq!(s.migrate().unwrap(), vec![10], "{}", b.name);
        // The campaigns, their parent link and their items are all there; they can finish.
        assert_eq!(
            s.campaign(child).unwrap().unwrap().parent,
            Some(parent),
            "{}",
            b.name
        );
        assert_eq!(s.campaign_counts(parent).unwrap().pending, 2, "{}", b.name);
        assert_eq!(s.campaign_counts(child).unwrap().pending, 1, "{}", b.name);
        assert!(s
            .set_campaign_state(parent, &[State::Created], State::Finished)
            .unwrap());
        assert_eq!(s.campaign(parent).unwrap().unwrap().state, State::Finished);
        // Ids go on after the copied ones.
        let next = s
            .create_campaign("acme", "acme/gold", None, "acme/op", &cards)
            .unwrap();
        assert!(next > child, "{}", b.name);
    }
}

#[test]
fn upgrades_apply_only_what_is_missing_and_newer_schemas_are_refused() {
    for b in backends() {
        let s = b.store();
        s.create_tenant("test", "acme", "ACME", Role::CardIssuer)
            .unwrap();
        // A job and its steps, which migration 5 carries over (SQLite rebuilds `jobs`).
        let job = NewJob {
            tenant: "acme".into(),
            actor: "acme/op".into(),
            kind: tsm::model::JobKind::Write,
            card_number: "77".into(),
            params: serde_json::json!({"x": 1}),
            steps: vec!["a".into(), "b".into()],
        };
        let id = s.create_job(&job).unwrap();
        // Back to a database made by an earlier release (schema 3).
        let downgrade = "DROP TABLE campaign_items; DROP TABLE campaigns; DROP TABLE ota_messages; DROP TABLE ota_sessions; DROP TABLE ota_cards; DROP TABLE ota_catalog; DROP TABLE outlet_records; DROP TABLE ssd_receipts; DROP TABLE ssd_renewals; DROP TABLE ssd_key_versions; DROP TABLE ssds; \
             DROP TABLE ssd_key_policy; DROP TABLE ssd_partners; DROP TABLE audit_checkpoint; \
             DELETE FROM schema_migrations WHERE version >= 4;";
        let bump =
            "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (99, 'future', 0)";
        match b.pg_client() {
            Some(mut c) => c.batch_execute(downgrade).unwrap(),
            None => rusqlite::Connection::open(b.sqlite_path().unwrap())
                .unwrap()
                .execute_batch(downgrade)
                .unwrap(),
        }
        assert_eq!(
            s.migrate().unwrap(),
            vec![4, 5, 6, 7, 8, 9, 10, 11],
            "{}",
            b.name
        );
        assert!(s.migrate().unwrap().is_empty());
        assert!(s.tenant("acme").unwrap().is_some());
        // The job and its steps survived; the SSD job kinds are accepted; one open job
        // per card still holds.
        assert_eq!(s.job(id).unwrap().unwrap().card_number, "77");
        assert_eq!(s.job_steps(id).unwrap().len(), 2);
        assert!(matches!(s.create_job(&job), Err(StoreError::Duplicate(_))));
        let ssd_job = NewJob {
            kind: tsm::model::JobKind::SsdCreate,
            card_number: "78".into(),
            ..job.clone()
        };
        let id2 = s.create_job(&ssd_job).unwrap();
        assert!(id2 > id);
        assert_eq!(
            s.job(id2).unwrap().unwrap().kind,
            tsm::model::JobKind::SsdCreate
        );
        match b.pg_client() {
            Some(mut c) => c.batch_execute(bump).unwrap(),
            None => {
                rusqlite::Connection::open(b.sqlite_path().unwrap())
                    .unwrap()
                    .execute_batch(bump)
                    .unwrap();
            }
        }
        assert!(matches!(
            Store::open(&b.url),
            Err(StoreError::SchemaTooNew {
                found: 99,
                known: 11
            })
        ));
    }
}

#[test]
fn database_use_is_counted_on_the_calling_thread() {
    for b in backends() {
        let s = b.store();
        let before = tsm::thread_database_use();
        s.create_tenant("admin", "acme", "ACME Mobile", Role::CardIssuer)
            .unwrap();
        let write = tsm::thread_database_use() - before;
        assert!(write.statements >= 2, "{}: {write:?}", b.name);
        assert_eq!(write.commits, 1, "{}: {write:?}", b.name);
        assert!(write.time > std::time::Duration::ZERO, "{}", b.name);
        let before = tsm::thread_database_use();
        assert!(s.tenant("acme").unwrap().is_some());
        let read = tsm::thread_database_use() - before;
        assert!(
            read.statements >= 1 && read.commits == 0,
            "{}: {read:?}",
            b.name
        );
        // Another thread's calls are its own.
        let before = tsm::thread_database_use();
        let s2 = s.clone();
        std::thread::spawn(move || {
            s2.tenant("acme").unwrap();
            assert!(tsm::thread_database_use().statements >= 1);
        })
        .join()
        .unwrap();
        assert_eq!(tsm::thread_database_use(), before, "{}", b.name);
    }
}

#[test]
fn records() {
    for b in backends() {
        let s = b.store();
        let name = b.name;
        let ci = s
            .create_tenant("admin", "acme", "ACME Mobile", Role::CardIssuer)
            .unwrap();
        assert_eq!(ci.role, Role::CardIssuer);
        s.create_tenant("admin", "bank", "A Bank", Role::ApplicationProvider)
            .unwrap();
        assert!(matches!(
            s.create_tenant("admin", "acme", "again", Role::CardIssuer),
            Err(StoreError::Duplicate(_))
        ));
        // Categories belong to card issuers and carry no key bytes.
        let cat = s
            .create_category("admin", &category("acme/gold", "acme"))
            .unwrap();
        assert_eq!(s.category("acme/gold").unwrap().unwrap(), cat, "{name}");
        assert!(matches!(
            s.create_category("admin", &category("bank/x", "bank")),
            Err(StoreError::Invalid { .. })
        ));
        assert!(matches!(
            s.create_category("admin", &category("acme/gold", "acme")),
            Err(StoreError::Duplicate(_))
        ));
        let mut bad = category("acme/bad", "acme");
        bad.perso = apdu::parse_hex("CF 0A 00112233445566778899").unwrap();
        assert!(matches!(
            s.create_category("admin", &bad),
            Err(StoreError::Invalid { .. })
        ));
        bad.perso = vec![0x42, 0x05, 0x00];
        assert!(matches!(
            s.create_category("admin", &bad),
            Err(StoreError::Invalid { .. })
        ));
        // Key versions: references and KCVs.
        let kv = s
            .register_key_version(
                "admin",
                "acme/gold",
                1,
                "acme/gold",
                scp::KeyKind::Aes,
                [1, 2, 3],
                true,
            )
            .unwrap();
        assert_eq!(s.key_version("acme/gold", 1).unwrap().unwrap(), kv);
        assert_eq!(
            s.category("acme/gold")
                .unwrap()
                .unwrap()
                .current_key_version,
            Some(1)
        );
        s.register_key_version(
            "admin",
            "acme/gold",
            2,
            "acme/gold",
            scp::KeyKind::Aes,
            [4, 5, 6],
            false,
        )
        .unwrap();
        assert!(s
            .register_key_version(
                "admin",
                "acme/gold",
                2,
                "acme/gold",
                scp::KeyKind::Aes,
                [4, 5, 6],
                false
            )
            .is_err());
        s.set_current_key_version("admin", "acme/gold", 2).unwrap();
        s.retire_key_version("admin", "acme/gold", 2).unwrap();
        assert_eq!(
            s.category("acme/gold")
                .unwrap()
                .unwrap()
                .current_key_version,
            None
        );
        assert!(s.set_current_key_version("admin", "acme/gold", 2).is_err());
        assert_eq!(s.key_versions("acme/gold").unwrap().len(), 2);
        // Cards.
        let card = s.register_card("admin", "4000001234", "acme/gold").unwrap();
        assert_eq!(s.card("4000001234").unwrap().unwrap(), card, "{name}");
        assert!(matches!(
            s.register_card("admin", "4000001234", "acme/gold"),
            Err(StoreError::Duplicate(_))
        ));
        assert!(matches!(
            s.register_card("admin", "12AB", "acme/gold"),
            Err(StoreError::Invalid { .. })
        ));
        assert!(matches!(
            s.register_card("admin", "1", "acme/none"),
            Err(StoreError::NotFound(_))
        ));
        let list = s
            .cards_of_category("acme/gold", Some(None), "", 10)
            .unwrap();
        assert_eq!(list.len(), 1);
        assert!(s
            .cards_of_category("acme/gold", Some(Some(1)), "", 10)
            .unwrap()
            .is_empty());
        // Every change above was audited and the chain verifies.
        let report = s.audit_verify().unwrap();
        assert!(report.is_ok(), "{name}: {report:?}");
        assert!(report.entries >= 8, "{name}: {}", report.entries);
        assert_eq!(s.audit_for_card("4000001234").unwrap().len(), 1);
    }
}

#[test]
fn one_open_job_per_card() {
    for b in backends() {
        let s = b.store();
        s.create_tenant("t", "acme", "ACME", Role::CardIssuer)
            .unwrap();
        let job = NewJob {
            tenant: "acme".into(),
            actor: "acme/op".into(),
            kind: tsm::model::JobKind::Write,
            card_number: "77".into(),
            params: serde_json::json!({"x": 1}),
            steps: vec!["a".into(), "b".into()],
        };
        let id = s.create_job(&job).unwrap();
        assert!(matches!(s.create_job(&job), Err(StoreError::Duplicate(_))));
        let j = s.job(id).unwrap().unwrap();
        assert_eq!(j.state, tsm::model::JobState::Pending);
        assert_eq!(j.params, serde_json::json!({"x": 1}));
        assert_eq!(s.job_steps(id).unwrap().len(), 2);
        assert_eq!(s.open_job_for_card("77").unwrap().unwrap().id, id);
    }
}

fn append_some(s: &Store, n: usize) {
    for i in 0..n {
        s.audit_append(
            &NewEntry::new("tester", "test.event", "ok")
                .card(&format!("{}", 1000 + i))
                .detail(serde_json::json!({"i": i, "note": "ünïcode ✓"})),
        )
        .unwrap();
    }
}

#[test]
fn audit_chain_verifies_and_appends_are_serialised() {
    for b in backends() {
        let s = b.store().clone();
        let s = Arc::new(s);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || append_some(&s, 25))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let report = s.audit_verify().unwrap();
        assert!(report.is_ok(), "{}: {report:?}", b.name);
        assert_eq!(report.entries, 100, "{}", b.name);
        let all = s.audit_entries(0, 1000).unwrap();
        assert_eq!(all.len(), 100);
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.id, i as i64 + 1);
            assert_eq!(e.expected_hash(), e.hash);
        }
        assert_eq!(report.head, all[99].hash);
    }
}

#[test]
fn sqlite_audit_tampering_is_detected() {
    let b = common::sqlite();
    let s = b.store();
    append_some(s, 5);
    assert!(s.audit_verify().unwrap().is_ok());
    let db = rusqlite::Connection::open(b.sqlite_path().unwrap()).unwrap();
    // The triggers refuse edits…
    assert!(db
        .execute("UPDATE audit_log SET result = 'failed' WHERE id = 3", [])
        .is_err());
    assert!(db
        .execute("DELETE FROM audit_log WHERE id = 5", [])
        .is_err());
    // …but someone with the file can drop them; the chain still tells.
    db.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
        .unwrap();
    db.execute("UPDATE audit_log SET result = 'failed' WHERE id = 3", [])
        .unwrap();
    let r = s.audit_verify().unwrap();
    assert_eq!(r.first_bad, Some(AuditFault::HashMismatch(3)));
    assert_eq!(r.entries, 3);
    // Restore, then remove the tail: the head no longer matches.
    db.execute("UPDATE audit_log SET result = 'ok' WHERE id = 3", [])
        .unwrap();
    assert!(s.audit_verify().unwrap().is_ok());
    db.execute("DELETE FROM audit_log WHERE id = 5", [])
        .unwrap();
    let r = s.audit_verify().unwrap();
    assert!(
        matches!(
            r.first_bad,
            Some(AuditFault::HeadMismatch {
                head_id: 5,
                last_id: 4
            })
        ),
        "{r:?}"
    );
    // A hole in the middle.
    db.execute("DELETE FROM audit_log WHERE id = 2", [])
        .unwrap();
    let r = s.audit_verify().unwrap();
    assert_eq!(
        r.first_bad,
        Some(AuditFault::Gap {
            expected: 2,
            found: 3
        })
    );
    // A rehashed entry (hash recomputed by the attacker) breaks the link instead.
    db.execute("UPDATE audit_log SET hash = zeroblob(32) WHERE id = 1", [])
        .unwrap();
    let r = s.audit_verify().unwrap();
    assert_eq!(r.first_bad, Some(AuditFault::HashMismatch(1)));
}

#[test]
fn postgres_audit_log_is_append_only() {
    let Some(b) = common::postgres() else { return };
    let s = b.store();
    append_some(s, 3);
    let mut c = b.pg_client().unwrap();
    let e = c
        .batch_execute("UPDATE audit_log SET result = 'failed' WHERE id = 2")
        .unwrap_err();
    assert!(
        e.to_string().contains("append-only") || format!("{e:?}").contains("append-only"),
        "{e:?}"
    );
    assert!(c
        .batch_execute("DELETE FROM audit_log WHERE id = 3")
        .is_err());
    assert!(c.batch_execute("TRUNCATE audit_log").is_err());
    assert!(s.audit_verify().unwrap().is_ok());
    // A superuser who disables the trigger is still caught by the chain.
    c.batch_execute(
        "ALTER TABLE audit_log DISABLE TRIGGER USER;
         UPDATE audit_log SET detail = '{\"i\":9}' WHERE id = 2;",
    )
    .unwrap();
    let r = s.audit_verify().unwrap();
    assert_eq!(r.first_bad, Some(AuditFault::HashMismatch(2)));
}

/// The audit key of a software key store in `dir`, and its public key (SPKI).
fn audit_key(dir: &std::path::Path) -> (Arc<dyn kms::SigningKey>, Vec<u8>) {
    use kms::{MasterKey, SigningAlgorithm, SigningKeyStore, SoftwareKeyStore};
    let keys =
        SoftwareKeyStore::create(dir.join("keys.json"), MasterKey::generate().unwrap()).unwrap();
    let (key, _) = keys
        .signing_key_or_create(tsm::audit::ANCHOR_KEY_LABEL, SigningAlgorithm::P256)
        .unwrap();
    let public = key.public_key_spki().to_vec();
    (Arc::from(key), public)
}

/// The anchored head: a store with the audit key signs a checkpoint (entries, head hash)
/// in each transaction that appends; removing the last entries and rewinding
/// `audit_head` passes the unkeyed chain but not the checkpoint check, and a rewritten
/// checkpoint does not verify.
#[test]
fn removed_tail_is_detected_by_the_signed_checkpoint() {
    for b in backends() {
        let name = b.name;
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = audit_key(dir.path());
        let s = b.store().clone().with_audit_anchor(key);
        // Nothing appended yet: nothing to anchor, and that is fine.
        assert!(s.audit_verify_anchored(&public).unwrap().is_ok(), "{name}");
        for i in 0..5 {
            s.audit_append(&NewEntry::new("admin", &format!("test.{i}"), "ok"))
                .unwrap();
        }
        // Appends inside the job engine's transactions are anchored too.
        s.create_tenant("admin", "acme", "ACME", Role::CardIssuer)
            .unwrap();
        let r = s.audit_verify_anchored(&public).unwrap();
        assert!(r.is_ok(), "{name}: {r:?}");
        assert_eq!((r.entries, r.anchored), (6, Some(6)), "{name}");
        assert_eq!(r.checkpoint.as_ref().unwrap().head, r.head, "{name}");

        // Entries appended by a store without the key are reported as not anchored.
        b.store()
            .audit_append(&NewEntry::new("other", "test.unanchored", "ok"))
            .unwrap();
        let r = s.audit_verify_anchored(&public).unwrap();
        assert!(r.is_ok(), "{name}");
        assert_eq!((r.entries, r.anchored), (7, Some(6)), "{name}");
        s.audit_append(&NewEntry::new("admin", "test.7", "ok"))
            .unwrap();

        // Drop the guards, remove the last three entries, rewind the head.
        let tamper = |sql: &str| match b.pg_client() {
            Some(mut c) => c.batch_execute(sql).unwrap(),
            None => rusqlite::Connection::open(b.sqlite_path().unwrap())
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
        };
        let drop_guard = match b.pg_client() {
            Some(_) => "DROP TRIGGER audit_log_no_update_delete ON audit_log;",
            None => "DROP TRIGGER audit_log_no_delete;",
        };
        tamper(drop_guard);
        tamper(
            "DELETE FROM audit_log WHERE id > 5;
             UPDATE audit_head SET last_id = 5,
                 last_hash = (SELECT hash FROM audit_log WHERE id = 5) WHERE id = 1;",
        );
        assert!(
            s.audit_verify().unwrap().is_ok(),
            "{name}: the unkeyed chain"
        );
        let r = s.audit_verify_anchored(&public).unwrap();
        assert_eq!(
            r.first_bad,
            Some(AuditFault::Truncated {
                signed: 8,
                found: 5
            }),
            "{name}"
        );
        // A checkpoint rewritten to the shorter log does not verify.
        tamper(
            "UPDATE audit_checkpoint SET entries = 5,
                 head = (SELECT hash FROM audit_log WHERE id = 5) WHERE id = 1;",
        );
        let r = s.audit_verify_anchored(&public).unwrap();
        assert_eq!(r.first_bad, Some(AuditFault::CheckpointForged), "{name}");
        // Nor does a removed one.
        tamper("DELETE FROM audit_checkpoint;");
        let r = s.audit_verify_anchored(&public).unwrap();
        assert_eq!(r.first_bad, Some(AuditFault::CheckpointMissing), "{name}");
    }
}

/// Two processes (two stores on one database) write through their group commits at the
/// same time, with the audit key: each group's seal chains its members' entries after the
/// other process's and signs the checkpoint of the head it leaves. The chain verifies and
/// the checkpoint anchors every entry, also when the other process moved the head last.
#[test]
fn concurrent_groups_of_two_processes_keep_the_chain_and_the_checkpoint_whole() {
    for b in backends() {
        let name = b.name;
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = audit_key(dir.path());
        let processes = [
            b.store().clone().with_audit_anchor(Arc::clone(&key)),
            Store::open(&b.url)
                .unwrap()
                .with_audit_anchor(Arc::clone(&key)),
        ];
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = processes[t % 2].clone();
                std::thread::spawn(move || {
                    for i in 0..15 {
                        s.create_tenant("admin", &format!("t{t}-{i}"), "T", Role::CardIssuer)
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Each process in turn, each after the other moved the head: the second one's
        // expectation is behind.
        for (i, s) in processes.iter().enumerate() {
            s.create_tenant("admin", &format!("last-{i}"), "T", Role::CardIssuer)
                .unwrap();
        }
        let r = processes[1].audit_verify_anchored(&public).unwrap();
        assert!(r.is_ok(), "{name}: {r:?}");
        assert_eq!((r.entries, r.anchored), (122, Some(122)), "{name}");
        assert_eq!(r.checkpoint.as_ref().unwrap().head, r.head, "{name}");
        let all = processes[0].audit_entries(0, 1000).unwrap();
        assert_eq!(all.len(), 122, "{name}");
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.id, i as i64 + 1, "{name}");
            assert_eq!(e.expected_hash(), e.hash, "{name}");
        }
    }
}
