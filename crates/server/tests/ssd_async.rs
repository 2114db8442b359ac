//! Asynchronous SSD jobs (issue 13, RFC 7240 `Prefer: respond-async`): the card issuer's
//! `POST /api/v1/ssd-jobs/{id}/run` at its own desks, and the application provider's
//! `POST /api/v1/ssd/requests` and `…/renew`, answer `202` with the job's URL before any
//! card exchange; the job is followed at `GET /api/v1/jobs/{id}` (the issuance API's on the
//! CI, the AP's own on the AP) to its end, and announced to the webhook. Without the
//! preference the answers are as before; refusals stay synchronous. Virtual cards in the
//! readers of terminal agents (relay::agent) over real sockets; the AP talks to the CI over
//! HTTPS with its client certificate.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use common::certs::Ca;
use common::desk::{listed, Agent};
use common::ssd::{bank1_registration, link, serve, soft_keys};
use common::{call, call_with, webhook_receiver, Received, Reply};
use serde_json::{json, Value};
use server::auth::{Principal, Role, TokenTable};
use server::issuance::IssuanceApi;
use server::partner::{ExchangeTimeouts, PartnerApi};
use server::tls::PartnerCertVerifier;
use server::webhook::{self, Webhook};
use tsm::ssd::{ApConfig, ApPlatform, CiConfig, CiPlatform, SsdModel, SsdRequest};

const BASE: &str = "00112233445566778899AABBCCDDEEFF";
const CARD: &str = "1000000001";
const OPERATOR: &str = "ci-operator-token-0123456789";
const OTHER: &str = "other-operator-token-0123456789";
const DESK: &str = "ci-desk-token-0123456789";
const AP_OPERATOR: &str = "ap-operator-token-0123456789";
const AP_DESK: &str = "ap-desk-token-0123456789";
const SECRET: &[u8] = b"webhook-secret-0123456789abcdef";
const READER: &str = "Reader 0";
const AID: &str = "A000000151BA0102";

fn hook(url: &str) -> Webhook {
    Webhook::new(url, zeroize::Zeroizing::new(SECRET.to_vec()))
        .unwrap()
        .with_retries(3, Duration::from_millis(50))
}

fn principal(name: &str, role: Role, tenant: Option<&str>) -> Principal {
    Principal {
        name: name.into(),
        role,
        tenant: tenant.map(Into::into),
    }
}

async fn post_async(app: &axum::Router, path: &str, body: Value, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    call_with(
        app,
        Method::POST,
        path,
        Some(body.to_string()),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("prefer", "respond-async"),
        ],
    )
    .await
}

/// Polls `url` as `token` until the job is no longer running or pending.
async fn until_ended(app: &axum::Router, url: &str, token: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let r = call(app, Method::GET, url, None, Some(token)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v = r.json();
        if v["state"] != "running" && v["state"] != "pending" {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "still {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The signed delivery announcing job `id` ended in `state` (20 s at most).
async fn delivered(hooks: &Received, id: i64, state: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let found = hooks.lock().unwrap().iter().find_map(|(h, body)| {
            let v: Value = serde_json::from_slice(body).unwrap();
            (v["job"]["job"] == id).then(|| (h.clone(), body.clone(), v))
        });
        if let Some((headers, body, v)) = found {
            let h = |n: &str| headers[n].to_str().unwrap().to_string();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            assert_eq!(
                webhook::verify(
                    SECRET,
                    &h(webhook::TIMESTAMP_HEADER),
                    &body,
                    &h(webhook::SIGNATURE_HEADER),
                    now,
                    Duration::from_secs(300)
                ),
                Ok(())
            );
            assert_eq!(v["event"], "job.ended");
            assert_eq!(v["job"]["state"], state, "{v}");
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no delivery for {id}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The card issuer with `--issuance`: the issuance API (its relay, its job route, its
/// webhook) and the partner API running SSD jobs at its desk; partner bank1 registered; a
/// desk agent with the written card in its (gated) reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ci_desk_runs_an_ssd_job_asynchronously_and_it_is_followed_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let common::issuer::WrittenCard {
        store,
        keys,
        issuer,
        card,
    } = common::issuer::issuer_with_written_card(dir.path(), BASE, CARD);
    store
        .create_tenant("admin", "other", "other", tsm::model::Role::CardIssuer)
        .unwrap();
    let tokens = TokenTable::new()
        .with(OPERATOR, principal("alice", Role::Operator, Some("issuer")))
        .with(OTHER, principal("mallory", Role::Operator, Some("other")))
        .with(DESK, principal("ci-desk", Role::Terminal, None));
    let (hook_url, hooks) = webhook_receiver(false).await;
    let issuance = IssuanceApi::with_webhook(
        Arc::new(issuer),
        tokens.clone(),
        Duration::from_secs(10),
        Some(hook(&hook_url)),
    );
    let ci_issuer = tsm::Issuer::new(
        store.clone(),
        keys.clone() as Arc<dyn kms::KeyStore>,
        tsm::IssuerConfig::default(),
    );
    let ci = Arc::new(CiPlatform::new(
        ci_issuer,
        keys.clone() as Arc<dyn tsm::ssd::KeySetStore>,
        CiConfig::default(),
    ));
    let partner = PartnerApi::with_options(
        ci.clone(),
        tokens,
        None,
        ExchangeTimeouts::default(),
        Some(issuance.hub().clone()),
        issuance.webhook().cloned(),
    );
    let app = server::finish(
        server::issuance::routes(issuance.clone()).merge(server::partner::routes(partner)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = app.clone();
    tokio::spawn(async move { axum::serve(listener, served).await });
    let desk = Agent::connect(&url, DESK, "ci-desk", vec![(READER, card.clone())]);
    listed(issuance.hub(), "ci-desk", 1).await;

    let ap_keys_dir = tempfile::tempdir().unwrap();
    let bank1 = Ca::new("bank1 AP root");
    let body = bank1_registration(&bank1.pem, soft_keys(ap_keys_dir.path()).as_ref());
    let r = call(
        &app,
        Method::POST,
        "/api/v1/partners",
        Some(body.to_string()),
        Some(OPERATOR),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // bank1 asks for a delegated SSD (flow 2): the CI runs the job at its desk.
    let req = SsdRequest {
        card_number: CARD.into(),
        aid: AID.into(),
        model: SsdModel::Delegated,
    };
    let job = ci.request("bank1", &req).unwrap();
    let desk_body = json!({"terminal": "ci-desk", "reader": READER});

    // 202 while the card has answered nothing yet.
    let r = post_async(
        &app,
        &format!("/api/v1/ssd-jobs/{job}/run"),
        desk_body.clone(),
        OPERATOR,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(desk.answered(), 0, "answered before any APDU");
    let url = format!("/api/v1/jobs/{job}");
    assert_eq!(r.headers["location"], url.as_str());
    assert_eq!(r.headers["preference-applied"], "respond-async");
    let accepted = r.json();
    assert_eq!(accepted["job"], job);
    assert_eq!(accepted["kind"], "ssd_create");
    assert_eq!(accepted["state"], "running");
    assert_eq!(accepted["url"], url.as_str());

    // One job route for every job: the issuance API's. Recorded before the work, running,
    // no step done; another tenant's operator may not read it (audited).
    let v = call(&app, Method::GET, &url, None, Some(OPERATOR))
        .await
        .json();
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["kind"], "ssd_create");
    let steps = v["steps"].as_array().unwrap();
    assert!(
        !steps.is_empty() && steps.iter().all(|s| s["state"] != "done"),
        "{v}"
    );
    let r = call(&app, Method::GET, &url, None, Some(OTHER)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(store
        .audit_entries(0, 10_000)
        .unwrap()
        .iter()
        .any(|e| e.action == "job.read" && e.result == "forbidden" && e.actor == "other/mallory"));

    // The card's exchanges go on: done, every step done, the SSD managed by the CI.
    desk.open_gate();
    let v = until_ended(&app, &url, OPERATOR).await;
    assert_eq!(v["state"], "done", "{v}");
    assert!(
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "done"),
        "{v}"
    );
    assert!(desk.answered() > 0);
    let ssd = store
        .ssd(CARD, &apdu::parse_hex(AID).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(ssd.state, tsm::ssd::SsdState::Managed);
    // Announced, signed, like an issuance job.
    let v = delivered(&hooks, job, "done").await;
    assert_eq!(v["job"]["kind"], "ssd_create");

    // With the preference, what is refused before the card is refused at once: the job is
    // finished (409), unknown (404), the reader unknown (404); nothing reaches the card.
    let before = desk.answered();
    for (path, body, status) in [
        (
            format!("/api/v1/ssd-jobs/{job}/run"),
            desk_body.clone(),
            StatusCode::CONFLICT,
        ),
        (
            "/api/v1/ssd-jobs/987654/run".to_string(),
            desk_body.clone(),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/v1/ssd-jobs/{job}/run"),
            json!({"terminal": "ci-desk", "reader": "Reader 9"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let r = post_async(&app, &path, body, OPERATOR).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(r.headers.get("preference-applied").is_none());
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(desk.answered(), before);

    // Without the preference: the answer waits for the run and is the SSD, as before.
    let r = call(
        &app,
        Method::POST,
        &format!("/api/v1/ssds/{CARD}/{AID}/renew"),
        None,
        Some(OPERATOR),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let renewal = r.json()["job"].as_i64().unwrap();
    let r = call(
        &app,
        Method::POST,
        &format!("/api/v1/ssd-jobs/{renewal}/run"),
        Some(desk_body.to_string()),
        Some(OPERATOR),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.headers.get("preference-applied").is_none());
    assert!(r.headers.get("location").is_none());
    assert_eq!(r.json()["state"], "managed", "{}", r.text());
    assert_eq!(r.json()["renewals"].as_array().unwrap().len(), 1);
    delivered(&hooks, renewal, "done").await;
}

/// The AP's platform (its API, its relay, its job route) with its link to the CI over
/// HTTPS: flow 1 asked with `Prefer: respond-async` answers 202 before the card work and
/// ends handed over; a renewal likewise; refusals at once; the job route is the AP's.
#[test]
fn ap_requests_and_renewals_answer_at_once_and_are_followed_at_the_ap() {
    let mut server_ca = Ca::new("CI server CA");
    let server_leaf = server_ca.server();
    let mut bank1 = Ca::new("bank1 AP root");
    let bank1_client = bank1.client("bank1 AP platform");
    let verifier = PartnerCertVerifier::new(Vec::new(), Vec::new()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let common::issuer::WrittenCard {
        store: ci_store,
        keys,
        issuer,
        card,
    } = common::issuer::issuer_with_written_card(dir.path(), BASE, CARD);
    let ci = Arc::new(CiPlatform::new(
        issuer,
        keys as Arc<dyn tsm::ssd::KeySetStore>,
        CiConfig::default(),
    ));
    let ci_tokens =
        TokenTable::new().with(OPERATOR, principal("alice", Role::Operator, Some("issuer")));
    let ci_api = PartnerApi::new(
        ci,
        ci_tokens,
        Some(verifier.clone()),
        ExchangeTimeouts::default(),
    );
    let ci_app = server::partner::router(ci_api.clone());
    let (port, _stop) = serve(ci_app.clone(), &server_leaf, verifier);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let ap_dir = tempfile::tempdir().unwrap();
    let ap_keys = soft_keys(ap_dir.path());
    let body = bank1_registration(&bank1.pem, ap_keys.as_ref());
    let r = rt.block_on(call(
        &ci_app,
        Method::POST,
        "/api/v1/partners",
        Some(body.to_string()),
        Some(OPERATOR),
    ));
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    ci_api.refresh_partner_roots().unwrap();

    let ap_store =
        tsm::Store::open(&format!("sqlite:{}", ap_dir.path().join("ap.db").display())).unwrap();
    let ap = ApPlatform::new(
        ap_store.clone(),
        ap_keys,
        Arc::new(link(port, "bank1", &bank1_client, &server_ca)),
        ApConfig::new("bank1"),
    );
    let tokens = TokenTable::new()
        .with(
            AP_OPERATOR,
            principal("olga", Role::Operator, Some("bank1")),
        )
        .with(AP_DESK, principal("desk", Role::Terminal, None));
    let (hook_url, hooks) = rt.block_on(webhook_receiver(false));
    let api = server::ap::ApApi::with_webhook(
        Arc::new(ap),
        tokens,
        Duration::from_secs(10),
        Some(hook(&hook_url)),
    );
    let app = server::ap::router(api.clone());
    let url = common::serve_on(&rt, app.clone());
    let desk = Agent::connect(&url, AP_DESK, "desk", vec![(READER, card)]);
    rt.block_on(listed(api.hub(), "desk", 1));

    let aid = "A000000151BA0101";
    let request = json!({"card_number": CARD, "aid": aid, "model": "authorized",
                         "terminal": "desk", "reader": READER});
    // A request the CI refuses (a card outside bank1's contract) is refused at once.
    let mut outside = request.clone();
    outside["card_number"] = json!("3000000003");
    let r = rt.block_on(post_async(
        &app,
        "/api/v1/ssd/requests",
        outside,
        AP_OPERATOR,
    ));
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.json()["error"], "card_outside_contract");
    assert!(r.headers.get("preference-applied").is_none());

    let r = rt.block_on(post_async(
        &app,
        "/api/v1/ssd/requests",
        request,
        AP_OPERATOR,
    ));
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(desk.answered(), 0, "answered before any APDU");
    let accepted = r.json();
    let job = accepted["job"].as_i64().unwrap();
    let job_url = format!("/api/v1/jobs/{job}");
    assert_eq!(r.headers["location"], job_url.as_str());
    assert_eq!(r.headers["preference-applied"], "respond-async");
    assert_eq!(accepted["kind"], "ssd_rotate");
    let v = rt
        .block_on(call(&app, Method::GET, &job_url, None, Some(AP_OPERATOR)))
        .json();
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["submitted_by"], "bank1/ap-platform");
    desk.open_gate();
    let v = rt.block_on(until_ended(&app, &job_url, AP_OPERATOR));
    assert_eq!(v["state"], "done", "{v}");
    let names: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["relay", "import_keys", "rotate", "confirm"]);
    let ssd = ap_store
        .ssd(CARD, &apdu::parse_hex(aid).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(ssd.state, tsm::ssd::SsdState::HandedOver);
    rt.block_on(delivered(&hooks, job, "done"));
    // The CI's records agree: handed over to bank1.
    let at_ci = ci_store
        .ssd(CARD, &apdu::parse_hex(aid).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(at_ci.state, tsm::ssd::SsdState::HandedOver);

    // A renewal of the AP's own keys, asynchronously, to its end.
    let renew = format!("/api/v1/ssd/{CARD}/{aid}/renew");
    let r = rt.block_on(post_async(
        &app,
        &renew,
        json!({"terminal": "desk", "reader": READER}),
        AP_OPERATOR,
    ));
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let renewal_url = r.headers["location"].to_str().unwrap().to_string();
    assert_eq!(r.json()["kind"], "ssd_renew");
    let v = rt.block_on(until_ended(&app, &renewal_url, AP_OPERATOR));
    assert_eq!(v["state"], "done", "{v}");
    let kvns = |r: &tsm::ssd::SsdRecord| r.keys.iter().map(|k| k.kvn).collect::<Vec<_>>();
    let renewed = ap_store
        .ssd(CARD, &apdu::parse_hex(aid).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(kvns(&renewed).len(), kvns(&ssd).len() + 1, "{renewed:?}");
    // Without the preference: the SSD once renewed, as before (no job id).
    let r = rt.block_on(call(
        &app,
        Method::POST,
        &renew,
        Some(json!({"terminal": "desk", "reader": READER}).to_string()),
        Some(AP_OPERATOR),
    ));
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.json()["job"].is_null(), "{}", r.text());
    assert!(r.headers.get("preference-applied").is_none());

    // The AP's job route knows only the AP's jobs: the CI's job of the same number space,
    // an unknown job and a bad id are refused; a request without a token is 401.
    for (path, status) in [
        ("/api/v1/jobs/987654".to_string(), StatusCode::NOT_FOUND),
        ("/api/v1/jobs/x".to_string(), StatusCode::BAD_REQUEST),
    ] {
        let r = rt.block_on(call(&app, Method::GET, &path, None, Some(AP_OPERATOR)));
        assert_eq!(r.status, status, "{path}: {}", r.text());
    }
    let r = rt.block_on(call(&app, Method::GET, &job_url, None, None));
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    drop(desk);
}

/// The documents say it: the SSD job routes take `Prefer` and may answer 202 with
/// `Location` and `Preference-Applied`; the AP documents its job route.
#[test]
fn the_openapi_documents_describe_the_asynchronous_answers() {
    let ci = serde_json::to_value(server::partner::openapi_document()).unwrap();
    let ap = serde_json::to_value(server::ap::openapi_document()).unwrap();
    for (doc, path) in [
        (&ci, "/api/v1/ssd-jobs/{id}/run"),
        (&ap, "/api/v1/ssd/requests"),
        (&ap, "/api/v1/ssd/{card_number}/{aid}/renew"),
    ] {
        let op = &doc["paths"][path]["post"];
        common::assert_documents_respond_async(op, path);
    }
    assert!(ap["paths"]["/api/v1/jobs/{id}"]["get"]["responses"]["200"].is_object());
    assert!(ap["components"]["schemas"]["JobStatus"].is_object());
}
