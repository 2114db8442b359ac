//! The platform's side of `outlet sync`: an upload of install records (untrusted JSON from
//! an outlet) through `server::outlet_records`' router in process, over a SQLite store
//! that already holds the first records of the seeds' outlet. Every answer is 2xx or a
//! 4xx in the `{error, reason}` shape (never a 5xx); a record whose hash does not match
//! its fields is never stored; the chain held for each outlet still links.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

const OPERATOR: &str = "fuzz-outlet-operator-0123456789";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: Router,
    store: Arc<tsm::Store>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = format!("sqlite:{}", dir.path().join("outlet.db").display());
        let store = Arc::new(tsm::Store::open(&db).expect("SQLite store"));
        let mut tokens = server::auth::TokenTable::new();
        tokens.add(
            OPERATOR,
            server::auth::Principal {
                name: "fuzzer".into(),
                role: server::auth::Role::Operator,
                tenant: Some("issuer".into()),
            },
        );
        let api = server::outlet_records::OutletRecordsApi::new(store.clone(), tokens);
        let app = server::finish(server::outlet_records::routes(api));
        Fixture {
            runtime,
            app,
            store,
            _dir: dir,
        }
    })
}

/// `data` is the body of `POST /api/v1/outlet/records` with the operator's token.
pub fn outlet_records(data: &[u8]) {
    let f = fixture();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/outlet/records")
        .header(header::AUTHORIZATION, format!("Bearer {OPERATOR}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(data.to_vec()))
        .expect("request");
    let (status, bytes) = f.runtime.block_on(async {
        let r = f.app.clone().oneshot(req).await.expect("infallible");
        let status = r.status();
        let bytes = r.into_body().collect().await.expect("body").to_bytes();
        (status, bytes)
    });
    assert!(
        !status.is_server_error(),
        "{status} {}",
        String::from_utf8_lossy(&bytes)
    );
    if status.is_client_error() {
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON error");
        assert!(v["error"].is_string() && v["reason"].is_string(), "{v}");
    }
    // What is held links up, and every record matches its hash.
    let held = f.store.outlet_records(None).expect("records");
    for pair in held.windows(2) {
        let (a, b) = (&pair[0].record, &pair[1].record);
        if a.outlet == b.outlet {
            assert_eq!(b.seq, a.seq + 1, "consecutive");
            assert_eq!(b.prev_hash, a.hash, "linked");
        }
    }
    for s in &held {
        let r = &s.record;
        let fields = outlet::records::Fields {
            seq: r.seq,
            at_ms: r.at_ms,
            outlet: &r.outlet,
            card: &r.card,
            application: &r.application,
            package_sha256: &r.package_sha256,
            result: &r.result,
            code: &r.code,
            detail: &r.detail,
        };
        let want = outlet::records::chain_hash(&r.prev_hash, &outlet::records::canonical(&fields));
        assert_eq!(want, r.hash, "stored record {} matches its hash", r.seq);
    }
}
