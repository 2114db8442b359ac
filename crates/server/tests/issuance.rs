//! The issuance API in process (`tower::ServiceExt::oneshot` against the real router over a
//! SQLite store): tenant isolation over the whole matrix tenant × role × route × card owner,
//! authentication before the body, and the error shapes of every route.

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::{call, Reply};
use kms::{KeyStore, MasterKey, SoftwareKeyStore};
use serde_json::{json, Value};
use server::auth::{Principal, Role, TokenTable};
use server::issuance::IssuanceApi;
use tsm::model::Role as TenantRole;
use tsm::{Actor, Store};

const EMPTY_CAP: &[u8] = include_bytes!("../../tsm/tests/data/Empty_0102030405_8d5ac9e2_2.2.1.cap");
const BASE: &str = "00112233445566778899AABBCCDDEEFF";

/// A virtual card shared between the test and the issuer (clones share the card).
type SimCard = card::VirtualChannel;

/// The card's whole state, to compare before and after.
fn snapshot(card: &SimCard) -> String {
    format!("{:?}", card.card())
}

/// Two card issuers, `alpha` and `beta`, each with a category, a package and a written card;
/// an operator and a viewer token for each.
struct Platform {
    app: axum::Router,
    api: Arc<IssuanceApi>,
    store: Store,
    cards: Vec<(&'static str, &'static str, SimCard)>,
    _dir: tempfile::TempDir,
}

const TENANTS: [&str; 2] = ["alpha", "beta"];

fn card_of(tenant: &str) -> &'static str {
    match tenant {
        "alpha" => "1000000001",
        _ => "2000000002",
    }
}

fn package_of(tenant: &str) -> &'static str {
    // The empty package's AID, registered by `alpha` only (a package AID is unique).
    let _ = tenant;
    "0102030405"
}

fn token(tenant: &str, role: Role) -> String {
    format!("{tenant}-{role}-token-0123456789")
}

fn platform() -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite:{}", dir.path().join("p.db").display())).unwrap();
    let keys = Arc::new(
        SoftwareKeyStore::create(dir.path().join("keys.json"), MasterKey::generate().unwrap())
            .unwrap(),
    );
    let mut tokens = TokenTable::new();
    for tenant in TENANTS {
        store
            .create_tenant("admin", tenant, tenant, TenantRole::CardIssuer)
            .unwrap();
        let category = format!("{tenant}-gold");
        common::issuer::gp_test_key_category(&store, keys.as_ref(), tenant, &category, BASE);
        for role in [Role::Operator, Role::Viewer] {
            tokens.add(
                &token(tenant, role),
                Principal {
                    name: format!("{role}"),
                    role,
                    tenant: Some(tenant.into()),
                },
            );
        }
    }
    store
        .add_package("admin", "alpha", "empty", EMPTY_CAP)
        .unwrap();
    tokens.add(
        "terminal-token-0123456789",
        Principal {
            name: "desk-1".into(),
            role: Role::Terminal,
            tenant: None,
        },
    );
    let issuer = Arc::new(tsm::Issuer::new(
        store.clone(),
        keys as Arc<dyn KeyStore>,
        tsm::IssuerConfig::default(),
    ));
    // Each tenant's card, written in process by its own operator.
    let mut cards = Vec::new();
    for tenant in TENANTS {
        let mut sim = SimCard::new(card::VirtualCard::new(card::CardConfig::default()));
        issuer
            .write(
                &Actor::new(tenant, "setup"),
                card_of(tenant),
                &format!("{tenant}-gold"),
                &mut sim,
            )
            .unwrap();
        cards.push((tenant, card_of(tenant), sim));
    }
    let api = IssuanceApi::new(issuer, tokens, std::time::Duration::from_secs(5));
    Platform {
        app: server::issuance::router(api.clone()),
        api,
        store,
        cards,
        _dir: dir,
    }
}

/// A route of the API that names a card, and a valid body for it.
fn routes(card: &str, owner: &str) -> Vec<(Method, String, Option<Value>)> {
    let reader = json!({"terminal": "desk-1", "reader": "Reader 0"});
    let with = |extra: Value| {
        let mut b = reader.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    vec![
        (Method::GET, format!("/api/v1/cards/{card}"), None),
        (
            Method::POST,
            format!("/api/v1/cards/{card}/write"),
            Some(with(json!({"category": format!("{owner}-gold")}))),
        ),
        (
            Method::POST,
            format!("/api/v1/cards/{card}/rewrite"),
            Some(reader.clone()),
        ),
        (
            Method::POST,
            format!("/api/v1/cards/{card}/clear"),
            Some(reader.clone()),
        ),
        (
            Method::POST,
            format!("/api/v1/cards/{card}/resume"),
            Some(reader.clone()),
        ),
        (
            Method::POST,
            format!("/api/v1/cards/{card}/apps"),
            Some(with(json!({"package": package_of(owner)}))),
        ),
        (
            Method::POST,
            format!("/api/v1/cards/{card}/apps/01020304050607080901/delete"),
            Some(reader.clone()),
        ),
    ]
}

/// Tenant × role × route × card owner: only the card's tenant reads its card, only its
/// operators act on it (here they get as far as looking for the terminal, which is not
/// connected: no card exchange); every other combination is refused with 403, the card and
/// its records are unchanged, and the tenant refusals are in the audit log with the actor
/// who tried.
#[tokio::test(flavor = "multi_thread")]
async fn tenant_isolation_matrix() {
    let p = platform();
    let records = |store: &Store| -> Vec<String> {
        TENANTS
            .iter()
            .map(|t| {
                let n = card_of(t);
                format!(
                    "{:?} {:?}",
                    store.card(n).unwrap(),
                    store.jobs_of_card(n).unwrap()
                )
            })
            .collect()
    };
    let before_records = records(&p.store);
    let before_cards: Vec<String> = p.cards.iter().map(|(_, _, c)| snapshot(c)).collect();
    let mut checked = 0;
    for caller in TENANTS {
        for role in [Role::Operator, Role::Viewer] {
            for owner in TENANTS {
                let card = card_of(owner);
                for (method, path, body) in routes(card, owner) {
                    let audit_before = p.store.audit_entries(0, 100_000).unwrap().len();
                    let r = call(
                        &p.app,
                        method.clone(),
                        &path,
                        body.as_ref().map(|b| b.to_string()),
                        Some(&token(caller, role)),
                    )
                    .await;
                    let what = format!("{caller} {role} {method} {path} (card of {owner})");
                    let reading = method == Method::GET;
                    let expected = match (caller == owner, role, reading) {
                        (true, _, true) => StatusCode::OK,
                        (true, Role::Operator, false) => StatusCode::NOT_FOUND,
                        _ => StatusCode::FORBIDDEN,
                    };
                    assert_eq!(r.status, expected, "{what}: {}", r.text());
                    let v = r.json();
                    if expected == StatusCode::OK {
                        assert_eq!(v["card"]["card_number"], card, "{what}");
                    } else {
                        assert!(v["error"].is_string() && v["reason"].is_string(), "{what}");
                    }
                    if expected == StatusCode::NOT_FOUND {
                        assert_eq!(v["error"], "terminal", "{what}: {v}");
                    }
                    let audit = p.store.audit_entries(0, 100_000).unwrap();
                    let new = &audit[audit_before..];
                    let tenant_refusal = caller != owner && (reading || role == Role::Operator);
                    if tenant_refusal {
                        assert_eq!(new.len(), 1, "{what}: {new:?}");
                        assert_eq!(new[0].actor, format!("{caller}/{role}"), "{what}");
                        assert_eq!(new[0].result, "forbidden", "{what}");
                        assert_eq!(new[0].card_number.as_deref(), Some(card), "{what}");
                    } else {
                        assert!(new.is_empty(), "{what}: {new:?}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 2 * 2 * 2 * 7);
    assert_eq!(records(&p.store), before_records, "no record changed");
    let after_cards: Vec<String> = p.cards.iter().map(|(_, _, c)| snapshot(c)).collect();
    assert_eq!(after_cards, before_cards, "no card was touched");
    assert!(p.store.audit_verify().unwrap().is_ok());
}

/// Without a valid token every route answers 401 JSON, whatever the body and its content
/// type; the scheme is case-insensitive (RFC 7235).
#[tokio::test(flavor = "multi_thread")]
async fn authentication_comes_before_the_body() {
    let p = platform();
    let card = card_of("alpha");
    for (method, path, _) in routes(card, "alpha") {
        for (body, token) in [
            (None, None),
            (Some("{not json".to_string()), None),
            (Some("{}".to_string()), Some("wrong-token")),
        ] {
            let r = call(&p.app, method.clone(), &path, body, token).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(r.json()["error"], "unauthorized");
        }
    }
    // The terminal WebSocket: 401 JSON before the upgrade is even looked at.
    let r = call(&p.app, Method::GET, relay::WS_PATH, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(r.json()["error"], "unauthorized");
    // An operator token is no terminal token.
    let r = call(
        &p.app,
        Method::GET,
        relay::WS_PATH,
        None,
        Some(&token("alpha", Role::Operator)),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A terminal token without an upgrade request: a JSON 400-class answer, not plain text.
    let r = call(
        &p.app,
        Method::GET,
        relay::WS_PATH,
        None,
        Some("terminal-token-0123456789"),
    )
    .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert!(r.json()["error"].is_string());
    // Lower-case scheme.
    let r = common::call_with(
        &p.app,
        Method::GET,
        &format!("/api/v1/cards/{card}"),
        None,
        &[(
            "authorization",
            &format!("bearer {}", token("alpha", Role::Viewer)),
        )],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

/// Every rejection is `{"error", "reason"}`: bad JSON 400, a wrong or missing content type
/// 415, a 10 MB body 413, an unknown route 404, a wrong method 405.
#[tokio::test(flavor = "multi_thread")]
async fn error_shapes() {
    let p = platform();
    let op = token("alpha", Role::Operator);
    let write = format!("/api/v1/cards/{}/write", card_of("alpha"));
    let expect = |r: &Reply, status: StatusCode, code: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        let v = r.json();
        assert_eq!(v["error"], code, "{v}");
        assert!(v["reason"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    };
    let r = call(
        &p.app,
        Method::POST,
        &write,
        Some("{not json".into()),
        Some(&op),
    )
    .await;
    expect(&r, StatusCode::BAD_REQUEST, "invalid_request");
    let r = call(&p.app, Method::POST, &write, Some("{}".into()), Some(&op)).await;
    expect(&r, StatusCode::BAD_REQUEST, "invalid_request");
    let r = common::call_with(
        &p.app,
        Method::POST,
        &write,
        Some("{}".into()),
        &[
            ("authorization", &format!("Bearer {op}")),
            ("content-type", "text/plain"),
        ],
    )
    .await;
    expect(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let r = common::call_with(
        &p.app,
        Method::POST,
        &write,
        Some("{}".into()),
        &[("authorization", &format!("Bearer {op}"))],
    )
    .await;
    expect(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let big = format!(
        "{{\"terminal\":\"{}\",\"reader\":\"r\",\"category\":\"c\"}}",
        "x".repeat(10 << 20)
    );
    let r = call(&p.app, Method::POST, &write, Some(big), Some(&op)).await;
    expect(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let r = call(&p.app, Method::GET, "/api/v1/nowhere", None, Some(&op)).await;
    expect(&r, StatusCode::NOT_FOUND, "not_found");
    let r = call(&p.app, Method::GET, &write, None, Some(&op)).await;
    expect(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let r = call(
        &p.app,
        Method::POST,
        "/api/v1/terminals",
        Some("{}".into()),
        Some(&op),
    )
    .await;
    expect(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    // Unknown card: 404 not_found; a bad card number: 400.
    let r = call(&p.app, Method::GET, "/api/v1/cards/999", None, Some(&op)).await;
    expect(&r, StatusCode::NOT_FOUND, "not_found");
    // Terminals list: typed answer.
    let r = call(&p.app, Method::GET, "/api/v1/terminals", None, Some(&op)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"terminals": []}));
}

/// Every route of the router is in the generated OpenAPI document and every documented
/// route is in the router; the document served is the generated one.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_matches_the_router() {
    let p = platform();
    let mut routed: Vec<(String, String)> = server::issuance::route_list(p.api.clone())
        .list()
        .iter()
        .map(|(m, path)| (m.to_string(), path.to_string()))
        .collect();
    routed.sort();
    let doc = server::issuance::openapi_document();
    assert_eq!(routed, server::openapi::documented(&doc));
    let served = call(
        &p.app,
        Method::GET,
        "/api/openapi-issuance.json",
        None,
        None,
    )
    .await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.json(), serde_json::to_value(&doc).unwrap());
}

/// Every POST route of the issuance API answers a malformed body, a wrong content type and
/// a 10 MB body with `{"error", "reason"}` and 400, 415 and 413, after authentication.
#[tokio::test(flavor = "multi_thread")]
async fn every_post_route_refuses_bad_bodies_as_json() {
    let p = platform();
    let op = token("alpha", Role::Operator);
    let auth = format!("Bearer {op}");
    let posts: Vec<String> = routes(card_of("alpha"), "alpha")
        .into_iter()
        .filter(|(m, _, _)| *m == Method::POST)
        .map(|(_, path, _)| path)
        .collect();
    assert_eq!(posts.len(), 6, "{posts:?}");
    for path in &posts {
        common::refuses_bad_bodies(&p.app, path, &auth).await;
    }
}
