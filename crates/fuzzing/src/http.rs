//! The HTTP request bodies of both APIs, through the real router (`server::app`: payment
//! service on an in-memory store, issuance API on SQLite), in process.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

const ADMIN: &str = "fuzz-admin-token-0123456789";
const OPERATOR: &str = "fuzz-operator-token-0123456789";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: Router,
    /// Every POST route of both OpenAPI documents, path parameters filled in.
    posts: Vec<String>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let store = Arc::new(pki::MemoryStore::new());
        let clock = Arc::new(pki::SystemClock);
        let ca = server::ca_files::ephemeral(
            "Fuzz CA",
            server::ca_files::CaKeyType::P256,
            store.clone(),
            clock,
        )
        .expect("CA");
        let pay = Arc::new(server::PayServer::new(
            Arc::new(ca),
            server::Stores::all(store),
            Arc::new(server::MemoryAudit::default()),
            server::ServerConfig {
                admin_token: Some(ADMIN.to_string().into()),
                ..server::ServerConfig::default()
            },
        ));
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = format!("sqlite:{}", dir.path().join("fuzz.db").display());
        let tsm_store = tsm::Store::open(&db).expect("SQLite store");
        tsm_store
            .create_tenant("fuzz", "issuer", "Issuer", tsm::model::Role::CardIssuer)
            .expect("tenant");
        let keys = kms::SoftwareKeyStore::create(
            dir.path().join("keys.json"),
            kms::MasterKey::generate().expect("master key"),
        )
        .expect("key store");
        let issuer = Arc::new(tsm::Issuer::new(
            tsm_store,
            Arc::new(keys),
            tsm::IssuerConfig::default(),
        ));
        let mut tokens = server::auth::TokenTable::new();
        tokens.add(
            OPERATOR,
            server::auth::Principal {
                name: "fuzzer".into(),
                role: server::auth::Role::Operator,
                tenant: Some("issuer".into()),
            },
        );
        let issuance =
            server::issuance::IssuanceApi::new(issuer, tokens, std::time::Duration::from_secs(1));
        let app = server::app(pay, Some(issuance));
        let mut posts: Vec<String> = server::openapi::documented(&server::openapi_document())
            .into_iter()
            .chain(server::openapi::documented(
                &server::issuance::openapi_document(),
            ))
            .filter(|(m, _)| m.eq_ignore_ascii_case("post"))
            .map(|(_, p)| {
                p.replace("{id}", "00000000000000000000000000000000")
                    .replace("{serial}", "01")
                    .replace("{card_number}", "4711000000000001")
                    .replace("{aid}", "A000000151000000")
                    .replace("{instance}", "A000000151000000")
            })
            .collect();
        posts.sort();
        posts.dedup();
        Fixture {
            runtime,
            app,
            posts,
            _dir: dir,
        }
    })
}

/// The POST routes this target reaches (for the test that checks none is missed).
pub fn http_routes() -> Vec<String> {
    fixture().posts.clone()
}

/// `data[0]` picks a POST route of either API; `data[1]` bit 0 gives the admin token, bit 1
/// the operator token, bit 2 a content type other than JSON; the rest is the body. Whatever
/// arrives, the server answers below 500, and every refusal is the documented JSON
/// `{"error", "reason"}`.
pub fn http_bodies(data: &[u8]) {
    let [route, flags, body @ ..] = data else {
        return;
    };
    let f = fixture();
    let path = &f.posts[usize::from(*route) % f.posts.len()];
    let mut req = Request::builder().method(Method::POST).uri(path.as_str());
    if flags & 1 != 0 {
        req = req.header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
    } else if flags & 2 != 0 {
        req = req.header(header::AUTHORIZATION, format!("bearer {OPERATOR}"));
    }
    let content_type = if flags & 4 != 0 {
        "text/plain"
    } else {
        "application/json"
    };
    let req = req
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_vec()))
        .expect("request");
    let (status, bytes) = f.runtime.block_on(async {
        let r = f.app.clone().oneshot(req).await.expect("infallible");
        let status = r.status();
        let bytes = r.into_body().collect().await.expect("body").to_bytes();
        (status, bytes)
    });
    assert!(
        !status.is_server_error(),
        "{path}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    if status.is_client_error() {
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: {status} not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert!(
            v["error"].is_string() && v["reason"].is_string(),
            "{path}: {v}"
        );
    }
}
