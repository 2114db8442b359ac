//! `Module::sync`: the records queue while the platform is unreachable (a URL that refuses)
//! and arrive once when it is up (the platform's `POST /api/v1/outlet/records`, in process
//! over HTTPS with the test CA); a second sync sends nothing; a record edited on disk is
//! refused by the platform and nothing is marked sent.

#[path = "../../server/tests/common/certs.rs"]
mod certs;
mod common;

use std::sync::Arc;

use common::*;
use server::auth::{Principal, Role, TokenTable};

const TOKEN: &str = "outlet-sync-operator-token-0001";

/// A platform (records API only) over HTTPS on 127.0.0.1; its base URL, CA PEM and store.
struct Platform {
    url: String,
    ca_pem: String,
    store: Arc<tsm::Store>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn platform() -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        tsm::Store::open(&format!("sqlite:{}", dir.path().join("p.db").display())).unwrap(),
    );
    let tokens = TokenTable::new().with(
        TOKEN,
        Principal {
            name: "desk".into(),
            role: Role::Operator,
            tenant: Some("issuer".into()),
        },
    );
    let app = server::finish(server::outlet_records::routes(
        server::outlet_records::OutletRecordsApi::new(store.clone(), tokens),
    ));
    let mut ca = certs::Ca::new("Platform CA");
    let leaf = ca.server();
    std::fs::write(dir.path().join("chain.pem"), &leaf.chain_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &leaf.key_pem).unwrap();
    let config = server::tls::server_config(
        server::tls::load_certificates(&dir.path().join("chain.pem")).unwrap(),
        server::tls::load_private_key(&dir.path().join("key.pem")).unwrap(),
        None,
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(server::tls::serve_tls(
        listener,
        config,
        app,
        std::future::pending::<()>(),
    ));
    Platform {
        url: format!("https://localhost:{port}"),
        ca_pem: ca.pem.clone(),
        store,
        _runtime: runtime,
        _dir: dir,
    }
}

/// An attempt that appends a record without a card exchange.
fn attempt(f: &Fixture) {
    let mut card = card::VirtualChannel::new(card::VirtualCard::new(card::CardConfig::default()));
    let _ = f
        .module
        .install(&mut card, "not-in-the-catalog", &mut |_| {});
}

#[test]
fn records_queue_offline_and_arrive_once() {
    let Some(f) = Fixture::new() else { return };
    f.module.add(&f.wallet_package()).unwrap();
    let mut card = f.issuer.card("4111111111111111");
    f.module.install(&mut card, "wallet", &mut |_| {}).unwrap();
    attempt(&f);
    attempt(&f);

    // The platform down: the URL refuses. Nothing is marked sent.
    let e = f
        .module
        .sync("https://127.0.0.1:1", TOKEN, None)
        .unwrap_err();
    assert!(matches!(e, outlet::Error::Unreachable(_)), "{e}");
    assert_eq!(f.module.verify_records().unwrap().unsynced, 3);
    // Not HTTPS, or no token: refused before anything is sent.
    assert!(matches!(
        f.module.sync("http://127.0.0.1:1", TOKEN, None),
        Err(outlet::Error::Invalid(_))
    ));
    assert!(matches!(
        f.module.sync("https://127.0.0.1:1", " ", None),
        Err(outlet::Error::Invalid(_))
    ));

    // Up: every record arrives once, as hashed.
    let p = platform();
    let ca = p.ca_pem.as_bytes();
    // The platform's certificate is checked: without its CA (web PKI roots) the handshake
    // fails and nothing is marked.
    assert!(matches!(
        f.module.sync(&p.url, TOKEN, None),
        Err(outlet::Error::Unreachable(_))
    ));
    // A wrong token: 401, nothing marked.
    match f.module.sync(&p.url, "not-the-token", Some(ca)) {
        Err(outlet::Error::Platform { status: 401, .. }) => {}
        other => panic!("{other:?}"),
    }
    let r = f.module.sync(&p.url, TOKEN, Some(ca)).unwrap();
    assert_eq!((r.sent, r.stored, r.already), (3, 3, 0));
    let held = p.store.outlet_records(Some("outlet-1")).unwrap();
    let local = f.module.records().unwrap();
    assert_eq!(held.len(), 3);
    for (h, l) in held.iter().zip(&local) {
        assert_eq!(apdu::hex(&h.record.hash), l.hash);
        assert_eq!(h.record.detail, l.detail);
        assert!(l.synced);
    }
    // A second sync sends nothing.
    let r = f.module.sync(&p.url, TOKEN, Some(ca)).unwrap();
    assert_eq!(r.sent, 0);
    assert_eq!(p.store.outlet_records(Some("outlet-1")).unwrap().len(), 3);
    // A new record goes alone, after the others.
    attempt(&f);
    let r = f.module.sync(&p.url, TOKEN, Some(ca)).unwrap();
    assert_eq!((r.sent, r.stored), (1, 1));
    assert_eq!(p.store.outlet_records(Some("outlet-1")).unwrap().len(), 4);
    assert!(f.module.verify_records().unwrap().ok);

    // A queued record edited on disk: the module's check and the platform both refuse it.
    attempt(&f);
    raw_db(&f.outlet_dir())
        .execute("UPDATE records SET card = '999' WHERE seq = 5", [])
        .unwrap();
    let report = f.module.verify_records().unwrap();
    assert!(
        !report.ok && report.problem.as_deref().unwrap().contains("record 5"),
        "{report:?}"
    );
    match f.module.sync(&p.url, TOKEN, Some(ca)) {
        Err(outlet::Error::Platform {
            status: 422, code, ..
        }) => assert_eq!(code, "record_invalid"),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.store.outlet_records(Some("outlet-1")).unwrap().len(), 4);
}

#[test]
fn a_removed_tail_is_found_by_the_head_mac() {
    let Some(f) = Fixture::new() else { return };
    for _ in 0..3 {
        attempt(&f);
    }
    assert!(f.module.verify_records().unwrap().ok);
    let db = raw_db(&f.outlet_dir());
    db.execute("DELETE FROM records WHERE seq = 3", []).unwrap();
    let r = f.module.verify_records().unwrap();
    assert!(!r.ok, "{r:?}");
    // Moving the head back without the token's key does not help: its MAC fails.
    let hash: Vec<u8> = db
        .query_row("SELECT hash FROM record_head", [], |r| r.get(0))
        .unwrap();
    let prev: Vec<u8> = db
        .query_row("SELECT hash FROM records WHERE seq = 2", [], |r| r.get(0))
        .unwrap();
    assert_ne!(hash, prev);
    db.execute("UPDATE record_head SET seq = 2, hash = ?1", [prev])
        .unwrap();
    let r = f.module.verify_records().unwrap();
    assert!(!r.ok && r.problem.unwrap().contains("MAC"));
}
