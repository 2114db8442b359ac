//! The OTA HTTP API in process (`server::ota_api` over a SQLite store): a push opens a
//! `pending` session for the OTA service; another tenant's card answers 403 (audited), a
//! viewer may only read, an unknown ICCID or application 404, a name or identity taken
//! 409, bad input 400, all as `{error, reason}`; the OpenAPI document matches the router.

mod common;

use std::sync::Arc;

use axum::http::{header, Method, StatusCode};
use common::{call, refuses_bad_bodies, Reply};
use serde_json::{json, Value};
use server::auth::{Principal, Role, TokenTable};
use server::ota_api::OtaApi;
use tsm::model::{InitialKeys, Role as TenantRole};
use tsm::ota::{Direction, SessionState};
use tsm::CategorySpec;

const OP: &str = "operator-token-alpha-0001";
const VIEWER: &str = "viewer-token-alpha-00001";
const OTHER: &str = "operator-token-beta-00001";
const CARD: &str = "1000000001";
const BETA_CARD: &str = "2000000002";
const ICCID: &str = "8949000000000000001";
const BETA_ICCID: &str = "8949000000000000002";

struct Platform {
    app: axum::Router,
    api: Arc<OtaApi>,
    store: Arc<tsm::Store>,
    _dir: tempfile::TempDir,
}

/// Two card issuers, `alpha` (a package, a card) and `beta` (a card); an operator and a
/// viewer of alpha, an operator of beta.
fn platform() -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        tsm::Store::open(&format!("sqlite:{}", dir.path().join("p.db").display())).unwrap(),
    );
    for (tenant, card) in [("alpha", CARD), ("beta", BETA_CARD)] {
        store
            .create_tenant("admin", tenant, tenant, TenantRole::CardIssuer)
            .unwrap();
        let category = format!("{tenant}-gold");
        store
            .create_category(
                "admin",
                &CategorySpec {
                    id: category.clone(),
                    tenant: tenant.into(),
                    description: String::new(),
                    initial_keys: InitialKeys::GpTestKey,
                    initial_kvn: 0x30,
                    perso: Vec::new(),
                },
            )
            .unwrap();
        store.register_card("admin", card, &category).unwrap();
    }
    store
        .add_package(
            "admin",
            "alpha",
            "wallet",
            &gp::cap::testing::synthetic_cap(2000),
        )
        .unwrap();
    store
        .enrol_ota_card("admin", BETA_CARD, BETA_ICCID, "+4917000000002", 1)
        .unwrap();
    let who = |name: &str, role, tenant: &str| Principal {
        name: name.into(),
        role,
        tenant: Some(tenant.into()),
    };
    let tokens = TokenTable::new()
        .with(OP, who("op", Role::Operator, "alpha"))
        .with(VIEWER, who("view", Role::Viewer, "alpha"))
        .with(OTHER, who("op", Role::Operator, "beta"));
    let api = OtaApi::new(store.clone(), tokens);
    Platform {
        app: server::ota_api::router(api.clone()),
        api,
        store,
        _dir: dir,
    }
}

impl Platform {
    async fn call(&self, method: Method, path: &str, body: Option<Value>, token: &str) -> Reply {
        call(
            &self.app,
            method,
            path,
            body.map(|b| b.to_string()),
            Some(token),
        )
        .await
    }

    /// The catalog entry `wallet` (defaults) and the card enrolled, by alpha's operator.
    async fn wallet_and_card(&self) {
        let r = self
            .call(
                Method::POST,
                "/api/v1/ota/catalog",
                Some(json!({"app": "wallet", "package": "A00000055501"})),
                OP,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let r = self
            .call(
                Method::POST,
                "/api/v1/ota/cards",
                Some(json!({"card_number": CARD, "iccid": ICCID, "msisdn": "+491701234567"})),
                OP,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }

    async fn push(&self, token: &str, iccid: &str, app: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/v1/ota/push",
            Some(json!({"iccid": iccid, "app": app})),
            token,
        )
        .await
    }
}

/// `status` and a `{error, reason}` body with `code`.
#[track_caller]
fn expect(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"], code, "{v}");
    assert!(v["reason"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn push_opens_a_pending_session_the_service_picks_up() {
    let p = platform();
    p.wallet_and_card().await;
    let r = p.push(OP, ICCID, "wallet").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let s = r.json();
    let id = s["id"].as_i64().unwrap();
    assert_eq!(
        r.headers[header::LOCATION],
        format!("/api/v1/ota/sessions/{id}")
    );
    assert_eq!(
        (&s["state"], &s["origin"], &s["bearer"], &s["app"]),
        (
            &json!("pending"),
            &json!("server"),
            &json!("sms"),
            &json!("wallet")
        )
    );
    assert_eq!(s["card_number"], CARD);
    // What `serve --ota`'s tick starts.
    let open = p.store.ota_open_sessions().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].id, open[0].state), (id, SessionState::Pending));
    assert_eq!(open[0].tenant, "alpha");

    let r = p
        .call(
            Method::POST,
            "/api/v1/ota/push",
            Some(json!({"iccid": ICCID, "app": "wallet", "bearer": "https"})),
            OP,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json()["bearer"], "https");

    // Audited under the operator.
    let audited = p.store.audit_entries(0, 1000).unwrap();
    assert!(audited
        .iter()
        .any(|e| e.action == "ota.session.open" && e.actor == "alpha/op"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_list_newest_first_with_message_lengths() {
    let p = platform();
    p.wallet_and_card().await;
    let first = p.push(OP, ICCID, "wallet").await.json()["id"]
        .as_i64()
        .unwrap();
    let second = p.push(OP, ICCID, "wallet").await.json()["id"]
        .as_i64()
        .unwrap();
    p.store
        .log_ota_message(
            Some(first),
            CARD,
            Direction::Mt,
            "script",
            Some(7),
            &[0xAA; 42],
            "sent",
        )
        .unwrap();
    p.store
        .log_ota_message(
            Some(first),
            CARD,
            Direction::Mo,
            "por",
            Some(3),
            &[1; 5],
            "ok",
        )
        .unwrap();

    let r = p
        .call(
            Method::GET,
            &format!("/api/v1/ota/sessions/{first}"),
            None,
            VIEWER,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let s = r.json();
    let m = &s["messages"];
    assert_eq!(m.as_array().unwrap().len(), 2, "{s}");
    assert_eq!(
        (
            &m[0]["direction"],
            &m[0]["kind"],
            &m[0]["counter"],
            &m[0]["length"],
            &m[0]["status"]
        ),
        (
            &json!("mt"),
            &json!("script"),
            &json!(7),
            &json!(42),
            &json!("sent")
        )
    );
    assert_eq!(
        (&m[1]["direction"], &m[1]["length"]),
        (&json!("mo"), &json!(5))
    );
    assert!(m[0].get("bytes").is_none(), "no packet bytes: {s}");
    assert!(m[0]["created_ms"].as_i64().unwrap() > 0);

    let r = p
        .call(
            Method::GET,
            &format!("/api/v1/ota/cards/{ICCID}/sessions"),
            None,
            VIEWER,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (&v["card"]["iccid"], &v["card"]["msisdn"], &v["card"]["kvn"]),
        (&json!(ICCID), &json!("491701234567"), &json!(1))
    );
    assert_eq!(v["card"]["counter_out"], 0);
    let ids: Vec<i64> = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![second, first]);
    assert_eq!(v["sessions"][1]["messages"].as_array().unwrap().len(), 2);

    let r = p
        .call(
            Method::GET,
            &format!("/api/v1/ota/cards/{ICCID}/sessions?limit=1"),
            None,
            OP,
        )
        .await;
    assert_eq!(r.json()["sessions"].as_array().unwrap().len(), 1);
    for bad in ["0", "201", "x", "-1"] {
        let r = p
            .call(
                Method::GET,
                &format!("/api/v1/ota/cards/{ICCID}/sessions?limit={bad}"),
                None,
                OP,
            )
            .await;
        expect(&r, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tenant_and_viewers_are_refused() {
    let p = platform();
    p.wallet_and_card().await;
    let id = p.push(OP, ICCID, "wallet").await.json()["id"]
        .as_i64()
        .unwrap();

    // Beta may not touch alpha's card: 403, audited; nothing opened.
    expect(
        &p.push(OTHER, ICCID, "wallet").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    for path in [
        format!("/api/v1/ota/sessions/{id}"),
        format!("/api/v1/ota/cards/{ICCID}/sessions"),
    ] {
        let r = p.call(Method::GET, &path, None, OTHER).await;
        expect(&r, StatusCode::FORBIDDEN, "forbidden");
    }
    // Nor enrol it again under a new ICCID.
    let r = p
        .call(
            Method::POST,
            "/api/v1/ota/cards",
            Some(json!({"card_number": CARD, "iccid": "8949000000000000009", "msisdn": "4917099"})),
            OTHER,
        )
        .await;
    expect(&r, StatusCode::FORBIDDEN, "forbidden");
    // Alpha may not touch beta's (enrolled) card either.
    expect(
        &p.push(OP, BETA_ICCID, "wallet").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(p.store.ota_open_sessions().unwrap().len(), 1);
    let refused = p
        .store
        .audit_entries(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.result == "forbidden" && e.actor == "beta/op")
        .map(|e| e.action)
        .collect::<Vec<_>>();
    assert!(refused.contains(&"ota.push".to_string()), "{refused:?}");
    assert!(refused.contains(&"ota.read".to_string()), "{refused:?}");

    // Each tenant sees its own catalog only.
    let r = p
        .call(Method::GET, "/api/v1/ota/catalog", None, OTHER)
        .await;
    assert_eq!(r.json(), json!({"catalog": []}));
    let r = p
        .call(Method::DELETE, "/api/v1/ota/catalog/wallet", None, OTHER)
        .await;
    expect(&r, StatusCode::NOT_FOUND, "not_found");

    // A viewer reads but does not write.
    expect(
        &p.push(VIEWER, ICCID, "wallet").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = p
        .call(
            Method::POST,
            "/api/v1/ota/catalog",
            Some(json!({"app": "pay", "package": "A00000055501"})),
            VIEWER,
        )
        .await;
    expect(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = p
        .call(Method::DELETE, "/api/v1/ota/catalog/wallet", None, VIEWER)
        .await;
    expect(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = p
        .call(Method::GET, "/api/v1/ota/catalog", None, VIEWER)
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // No token, or an unknown one: 401 whatever the body.
    let r = call(
        &p.app,
        Method::POST,
        "/api/v1/ota/push",
        Some("{".into()),
        None,
    )
    .await;
    expect(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    let r = p.push("no-such-token-000000000", ICCID, "wallet").await;
    expect(&r, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_taken_names() {
    let p = platform();
    p.wallet_and_card().await;
    // Unknown ICCID, application, session, card, package: 404.
    expect(
        &p.push(OP, "8949000000000000077", "wallet").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    expect(
        &p.push(OP, ICCID, "nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let r = p
        .call(Method::GET, "/api/v1/ota/sessions/999", None, OP)
        .await;
    expect(&r, StatusCode::NOT_FOUND, "not_found");
    let r = p
        .call(
            Method::GET,
            "/api/v1/ota/cards/8949000000000000077/sessions",
            None,
            OP,
        )
        .await;
    expect(&r, StatusCode::NOT_FOUND, "not_found");
    let r = p
        .call(
            Method::POST,
            "/api/v1/ota/cards",
            Some(
                json!({"card_number": "999", "iccid": "8949000000000000077", "msisdn": "4917099"}),
            ),
            OP,
        )
        .await;
    expect(&r, StatusCode::NOT_FOUND, "not_found");
    let r = p
        .call(
            Method::POST,
            "/api/v1/ota/catalog",
            Some(json!({"app": "pay", "package": "A0000005559999"})),
            OP,
        )
        .await;
    expect(&r, StatusCode::NOT_FOUND, "not_found");
    assert!(p.store.ota_open_sessions().unwrap().is_empty());

    // Taken: the catalog name, the card's identity, the ICCID.
    let r = p
        .call(
            Method::POST,
            "/api/v1/ota/catalog",
            Some(json!({"app": "wallet", "package": "A00000055501"})),
            OP,
        )
        .await;
    expect(&r, StatusCode::CONFLICT, "conflict");
    let r = p
        .call(
            Method::POST,
            "/api/v1/ota/cards",
            Some(json!({"card_number": CARD, "iccid": ICCID, "msisdn": "4917099"})),
            OP,
        )
        .await;
    expect(&r, StatusCode::CONFLICT, "conflict");
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_add_list_remove_and_enrol() {
    let p = platform();
    let r = p
        .call(
            Method::POST,
            "/api/v1/ota/catalog",
            Some(json!({
                "app": "wallet", "title": "My wallet", "package": "A00000055501",
                "privileges": "000000", "params": "C900"
            })),
            OP,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let e = r.json();
    // The CLI's defaults: the CAP's first applet, instance = module, SD = package ‖ FF01.
    assert_eq!(
        (&e["module"], &e["instance"], &e["sd"], &e["title"]),
        (
            &json!("A0000005550101"),
            &json!("A0000005550101"),
            &json!("A00000055501FF01"),
            &json!("My wallet")
        )
    );
    assert_eq!(
        (&e["privileges"], &e["params"]),
        (&json!("000000"), &json!("C900"))
    );
    let r = p
        .call(
            Method::POST,
            "/api/v1/ota/catalog",
            Some(json!({"app": "pay", "package": "a00000055501", "instance": "A000000555010102"})),
            OP,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["privileges"], "00");
    let r = p
        .call(Method::GET, "/api/v1/ota/catalog", None, VIEWER)
        .await;
    let v = r.json();
    let names: Vec<&str> = v["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["app"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pay", "wallet"]);
    let r = p
        .call(Method::DELETE, "/api/v1/ota/catalog/pay", None, OP)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(p.store.ota_catalog("alpha").unwrap().len(), 1);
    let r = p
        .call(Method::DELETE, "/api/v1/ota/catalog/pay", None, OP)
        .await;
    expect(&r, StatusCode::NOT_FOUND, "not_found");

    let r = p
        .call(
            Method::POST,
            "/api/v1/ota/cards",
            Some(json!({"card_number": CARD, "iccid": ICCID, "msisdn": "+491701234567", "kvn": 2})),
            OP,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        r.headers[header::LOCATION],
        format!("/api/v1/ota/cards/{ICCID}/sessions")
    );
    assert_eq!(
        r.json(),
        json!({"card_number": CARD, "iccid": ICCID, "msisdn": "491701234567", "kvn": 2,
               "counter_out": 0, "counter_in": 0})
    );
    let c = p.store.ota_card_by_iccid(ICCID).unwrap().unwrap();
    assert_eq!((c.card_number.as_str(), c.kvn), (CARD, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_answers_400() {
    let p = platform();
    p.wallet_and_card().await;
    for path in [
        "/api/v1/ota/push",
        "/api/v1/ota/cards",
        "/api/v1/ota/catalog",
    ] {
        refuses_bad_bodies(&p.app, path, &format!("Bearer {OP}")).await;
    }
    let bad_bodies = [
        (
            "/api/v1/ota/push",
            json!({"iccid": "12345", "app": "wallet"}),
        ),
        (
            "/api/v1/ota/push",
            json!({"iccid": "89490000000000000AB", "app": "wallet"}),
        ),
        ("/api/v1/ota/push", json!({"iccid": ICCID, "app": "a b"})),
        (
            "/api/v1/ota/push",
            json!({"iccid": ICCID, "app": "wallet", "bearer": "mms"}),
        ),
        (
            "/api/v1/ota/push",
            json!({"iccid": ICCID, "app": "wallet", "extra": 1}),
        ),
        ("/api/v1/ota/push", json!({"iccid": ICCID})),
        (
            "/api/v1/ota/push",
            json!({"iccid": 8949000000000000001u64, "app": "wallet"}),
        ),
        (
            "/api/v1/ota/cards",
            json!({"card_number": "x1", "iccid": ICCID, "msisdn": "4917099"}),
        ),
        (
            "/api/v1/ota/cards",
            json!({"card_number": CARD, "iccid": ICCID, "msisdn": "49"}),
        ),
        (
            "/api/v1/ota/cards",
            json!({"card_number": CARD, "iccid": ICCID, "msisdn": "4917099", "kvn": 16}),
        ),
        (
            "/api/v1/ota/cards",
            json!({"card_number": CARD, "iccid": ICCID, "msisdn": "4917099", "kvn": 300}),
        ),
        (
            "/api/v1/ota/catalog",
            json!({"app": "pay", "package": "A0 00 00 05 55 01"}),
        ),
        (
            "/api/v1/ota/catalog",
            json!({"app": "pay", "package": "A000"}),
        ),
        (
            "/api/v1/ota/catalog",
            json!({"app": "pay", "package": "A00000055501", "privileges": "0000"}),
        ),
        (
            "/api/v1/ota/catalog",
            json!({"app": "pay", "package": "A00000055501", "params": "0"}),
        ),
        (
            "/api/v1/ota/catalog",
            json!({"app": "pay", "package": "A00000055501", "title": ""}),
        ),
        (
            "/api/v1/ota/catalog",
            json!({"app": "pay", "package": "A00000055501", "title": "x".repeat(41)}),
        ),
    ];
    for (path, body) in bad_bodies {
        let r = p.call(Method::POST, path, Some(body.clone()), OP).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{path} {body}: {}",
            r.text()
        );
        expect(&r, StatusCode::BAD_REQUEST, "invalid_request");
    }
    for path in [
        "/api/v1/ota/sessions/abc",
        "/api/v1/ota/sessions/0",
        "/api/v1/ota/sessions/-3",
        "/api/v1/ota/sessions/99999999999999999999",
        "/api/v1/ota/cards/1234/sessions",
        "/api/v1/ota/cards/894900000000000000x/sessions",
    ] {
        let r = p.call(Method::GET, path, None, OP).await;
        expect(&r, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let r = p
        .call(Method::DELETE, "/api/v1/ota/catalog/a%20b", None, OP)
        .await;
    expect(&r, StatusCode::BAD_REQUEST, "invalid_request");
    // Nothing was opened or added by any of them.
    assert!(p.store.ota_open_sessions().unwrap().is_empty());
    assert_eq!(p.store.ota_catalog("alpha").unwrap().len(), 1);
    // Unknown routes and methods answer JSON too.
    let r = p.call(Method::PUT, "/api/v1/ota/push", None, OP).await;
    expect(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

/// Every route of the router is in the generated OpenAPI document and every documented
/// route is in the router; the document served is the generated one.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_matches_the_router() {
    let p = platform();
    let mut routed: Vec<(String, String)> = server::ota_api::route_list(p.api.clone())
        .list()
        .iter()
        .map(|(m, path)| (m.to_string(), path.to_string()))
        .collect();
    routed.sort();
    let doc = server::ota_api::openapi_document();
    assert_eq!(routed, server::openapi::documented(&doc));
    let r = call(&p.app, Method::GET, "/api/openapi-ota.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let served = r.json();
    assert_eq!(served, serde_json::to_value(&doc).unwrap());
    assert_eq!(served["openapi"], "3.1.0");
    let push = &served["paths"]["/api/v1/ota/push"]["post"]["responses"];
    for status in ["202", "400", "401", "403", "404", "413", "415"] {
        assert!(push[status].is_object(), "push {status} not documented");
    }
    assert_eq!(
        served["components"]["schemas"]["PushRequest"]["properties"]["iccid"]["pattern"],
        "^[0-9]{18,20}$"
    );
}
