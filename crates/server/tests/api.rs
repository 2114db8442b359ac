//! The API end to end in process: the router, pki, and a virtual card (the `card` crate's
//! PIV applet) driven by pivhost, as the agent drives a real card.

mod common;

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
    Router,
};
use http_body_util::BodyExt;
use pivhost::{
    payment::{self, MgmtKeySpec},
    PivAlgorithm, PivClient, Slot,
};
use pki::{ManualClock, MemoryStore};
use serde_json::{json, Value};
use server::{ca_files, PayServer, ServerConfig, Stores};
use time::OffsetDateTime;
use tower::ServiceExt;

type Card = card::VirtualChannel;

fn new_card() -> PivClient<Card> {
    PivClient::new(Card::with_config(card::CardConfig {
        with_piv: true,
        ..card::CardConfig::default()
    }))
}

const TOKEN: &str = "s3cret-admin";

struct Env {
    app: Router,
    clock: Arc<ManualClock>,
}

fn env_with(config: ServerConfig) -> Env {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let ca = ca_files::ephemeral(
        "Test Payments CA",
        ca_files::CaKeyType::P256,
        store.clone(),
        clock.clone(),
    )
    .unwrap();
    let server = PayServer::new(
        Arc::new(ca),
        Stores::all(store),
        Arc::new(server::MemoryAudit::default()),
        config,
    );
    Env {
        app: server::router(Arc::new(server)),
        clock,
    }
}

fn env() -> Env {
    env_with(ServerConfig {
        admin_token: Some(TOKEN.to_string().into()),
        ..ServerConfig::default()
    })
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Env {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body), None).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, None).await
    }

    /// Full enrolment of a new virtual card; returns the card and its certificate (hex).
    async fn enrol(&self, alg: &str) -> (PivClient<Card>, Value) {
        let started = self
            .post(
                "/api/v1/enrolments",
                json!({"name": "Alice Example", "uid": "acct-1", "algorithm": alg}),
            )
            .await;
        assert_eq!(
            started.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&started.body)
        );
        let started = started.json();
        assert_eq!(started["keygen"]["slot"], "9C");
        let challenge: pki::EnrolmentChallenge =
            serde_json::from_value(started["challenge"].clone()).unwrap();
        assert_eq!(
            apdu::hex(&challenge.digest()),
            started["digest"].as_str().unwrap()
        );
        let algorithm = if alg == "p256" {
            PivAlgorithm::EccP256
        } else {
            PivAlgorithm::Rsa2048
        };
        let mut card = new_card();
        let on_card = payment::enrol(
            &mut card,
            &challenge,
            algorithm,
            Slot::SIGNATURE,
            b"123456",
            &MgmtKeySpec::default(),
        )
        .unwrap();
        let id = started["id"].as_str().unwrap();
        let cert = self
            .post(
                &format!("/api/v1/enrolments/{id}"),
                json!({"algorithm": alg, "public_key_template": apdu::hex(&on_card.template), "proof": apdu::hex(&on_card.proof)}),
            )
            .await;
        assert_eq!(
            cert.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&cert.body)
        );
        let cert = cert.json();
        assert!(cert["subject"]
            .as_str()
            .unwrap()
            .contains("CN=Alice Example"));
        assert!(cert["certificate_pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        let der = apdu::parse_hex(cert["certificate"].as_str().unwrap()).unwrap();
        payment::install_certificate(
            &mut card,
            Slot::SIGNATURE,
            &der,
            Some(&on_card.public_key),
            &MgmtKeySpec::default(),
        )
        .unwrap();
        // The proof cannot be used twice.
        let again = self
            .post(
                &format!("/api/v1/enrolments/{id}"),
                json!({"algorithm": alg, "public_key_template": apdu::hex(&on_card.template), "proof": apdu::hex(&on_card.proof)}),
            )
            .await;
        assert_eq!(
            (again.status, again.json()["error"].clone()),
            (StatusCode::CONFLICT, json!("replayed"))
        );
        (card, cert)
    }

    async fn challenge(&self, amount: &str) -> Value {
        let r = self
            .post("/api/v1/payments", json!({"amount": amount, "currency": "EUR", "payee": "SHOP", "order_id": "ORDER-7"}))
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    async fn authorise(&self, challenge: &Value, request: Value, cert: &str, sig: &str) -> Reply {
        let id = challenge["id"].as_str().unwrap();
        self.post(
            &format!("/api/v1/payments/{id}/authorise"),
            json!({"request": request, "certificate": cert, "signature": sig}),
        )
        .await
    }
}

fn sign(card: &mut PivClient<Card>, challenge: &Value) -> (String, String) {
    let canonical = apdu::parse_hex(challenge["canonical"].as_str().unwrap()).unwrap();
    let s = payment::sign_payment(card, &canonical, Slot::SIGNATURE, b"123456").unwrap();
    (apdu::hex(&s.certificate_der), apdu::hex(&s.signature))
}

async fn enrol_then_pay(alg: &str) {
    let env = env();
    let (mut card, cert) = env.enrol(alg).await;
    let c = env.challenge("12.34").await;
    assert_eq!(c["request"]["amount_minor"], 1234);
    assert_eq!(c["amount"], "12.34");
    let (cert_hex, sig) = sign(&mut card, &c);
    assert_eq!(cert_hex, cert["certificate"].as_str().unwrap());
    let r = env
        .authorise(&c, c["request"].clone(), &cert_hex, &sig)
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let a = r.json();
    assert_eq!(a["status"], "authorised");
    assert_eq!(a["authorisation"]["certificate_serial"], cert["serial"]);
    assert_eq!(a["authorisation"]["request"]["payee"], "SHOP");
    let id = c["id"].as_str().unwrap();
    let status = env.get(&format!("/api/v1/payments/{id}")).await.json();
    assert_eq!(status["state"], "authorised");
    assert_eq!(
        status["authorisation"]["signature"],
        a["authorisation"]["signature"]
    );
    // The certificate also works as PEM.
    let c = env.challenge("0.01").await;
    let (_, sig) = sign(&mut card, &c);
    let r = env
        .authorise(
            &c,
            c["request"].clone(),
            cert["certificate_pem"].as_str().unwrap(),
            &sig,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn enrol_then_pay_p256() {
    enrol_then_pay("p256").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn enrol_then_pay_rsa2048() {
    enrol_then_pay("rsa2048").await;
}

/// Refusal codes in the payment status, oldest first.
async fn rejections(env: &Env, c: &Value) -> Vec<String> {
    let id = c["id"].as_str().unwrap();
    env.get(&format!("/api/v1/payments/{id}")).await.json()["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_signature_is_refused_and_recorded() {
    let env = env();
    let (mut card, _) = env.enrol("p256").await;
    let c = env.challenge("5.00").await;
    let (cert, sig) = sign(&mut card, &c);
    assert_eq!(
        env.authorise(&c, c["request"].clone(), &cert, &sig)
            .await
            .status,
        StatusCode::OK
    );
    let r = env.authorise(&c, c["request"].clone(), &cert, &sig).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "replayed");
    assert_eq!(
        r.json()["reason"],
        "payment challenge already used (replay)"
    );
    // The same signature against a fresh challenge for the same payment: bad signature.
    let c2 = env.challenge("5.00").await;
    let r = env.authorise(&c2, c2["request"].clone(), &cert, &sig).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("bad_signature"))
    );
    assert_eq!(rejections(&env, &c).await, ["replayed"]);
    assert_eq!(rejections(&env, &c2).await, ["bad_signature"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_amount_is_refused() {
    let env = env();
    let (mut card, _) = env.enrol("p256").await;
    let c = env.challenge("12.34").await;
    let (cert, sig) = sign(&mut card, &c);
    let mut changed = c["request"].clone();
    changed["amount_minor"] = json!(1);
    let r = env.authorise(&c, changed, &cert, &sig).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["error"], "tampered");
    assert_eq!(
        r.json()["reason"],
        "payment request changed after issue: amount differs"
    );
    let mut changed = c["request"].clone();
    changed["payee"] = json!("EVIL");
    assert_eq!(
        env.authorise(&c, changed, &cert, &sig).await.json()["error"],
        "tampered"
    );
    // The genuine request still goes through afterwards.
    assert_eq!(
        env.authorise(&c, c["request"].clone(), &cert, &sig)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(rejections(&env, &c).await, ["tampered", "tampered"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_challenge_is_refused() {
    let env = env();
    let (mut card, _) = env.enrol("p256").await;
    let c = env.challenge("1.00").await;
    let (cert, sig) = sign(&mut card, &c);
    env.clock.advance(time::Duration::minutes(4));
    let r = env.authorise(&c, c["request"].clone(), &cert, &sig).await;
    assert_eq!(r.status, StatusCode::GONE);
    assert_eq!(r.json()["error"], "expired");
    let id = c["id"].as_str().unwrap();
    assert_eq!(
        env.get(&format!("/api/v1/payments/{id}")).await.json()["state"],
        "expired"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_certificate_is_refused_and_listed_in_the_crl() {
    let env = env();
    let (mut card, cert) = env.enrol("p256").await;
    let serial = cert["serial"].as_str().unwrap();
    let path = format!("/api/v1/certificates/{serial}/revoke");
    let r = env
        .send(
            Method::POST,
            &path,
            Some(json!({"reason": "keyCompromise"})),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("unauthorized"))
    );
    let r = env
        .send(
            Method::POST,
            &path,
            Some(json!({"reason": "keyCompromise"})),
            Some("wrong"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = env
        .send(
            Method::POST,
            &path,
            Some(json!({"reason": "keyCompromise"})),
            Some(TOKEN),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["status"], "revoked");
    assert_eq!(r.json()["reason"], "keyCompromise");
    let r = env.send(Method::POST, &path, None, Some(TOKEN)).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::CONFLICT, json!("already_revoked"))
    );

    let c = env.challenge("9.99").await;
    let (cert_hex, sig) = sign(&mut card, &c);
    let r = env
        .authorise(&c, c["request"].clone(), &cert_hex, &sig)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "revoked");
    assert!(r.json()["reason"]
        .as_str()
        .unwrap()
        .contains("keyCompromise"));

    let crl = env.get("/api/v1/crl").await;
    assert_eq!(crl.headers[header::CONTENT_TYPE], "application/pkix-crl");
    use der::Decode;
    let list =
        x509_cert::crl::CertificateList::<x509_cert::certificate::Rfc5280>::from_der(&crl.body)
            .unwrap();
    let revoked = list.tbs_cert_list.revoked_certificates.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        apdu::hex(revoked[0].serial_number.as_bytes()),
        serial.to_uppercase()
    );

    let status = env
        .get(&format!("/api/v1/certificates/{serial}"))
        .await
        .json();
    assert_eq!(status["status"], "revoked");
    let audit = env
        .send(Method::GET, "/api/v1/audit", None, Some(TOKEN))
        .await
        .json();
    let kinds: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(kinds.contains(&("revocation".into(), "ok".into())));
    assert!(kinds.contains(&("revocation".into(), "already_revoked".into())));
    assert!(kinds.contains(&("payment_authorisation".into(), "revoked".into())));
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_certificate_is_refused() {
    let ours = env();
    let theirs = env();
    let (mut card, _) = theirs.enrol("p256").await;
    let c = ours.challenge("3.00").await;
    let (cert, sig) = sign(&mut card, &c);
    let r = ours.authorise(&c, c["request"].clone(), &cert, &sig).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "foreign_certificate");
    // Not a certificate at all.
    let r = ours.authorise(&c, c["request"].clone(), "3000", &sig).await;
    assert_eq!(r.json()["error"], "malformed_certificate");
    let r = ours.authorise(&c, c["request"].clone(), "zz", &sig).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );
    assert_eq!(
        rejections(&ours, &c).await,
        [
            "foreign_certificate",
            "malformed_certificate",
            "invalid_request"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn enrolment_refusals() {
    let env = env();
    let r = env.post("/api/v1/enrolments", json!({"name": ""})).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_subject"))
    );
    let r = env
        .post(
            "/api/v1/enrolments",
            json!({"name": "A", "algorithm": "dsa"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let started = env
        .post("/api/v1/enrolments", json!({"name": "Bob"}))
        .await
        .json();
    let id = started["id"].as_str().unwrap();
    // A template that is not a 7F49, and a proof by another key.
    let r = env
        .post(
            &format!("/api/v1/enrolments/{id}"),
            json!({"public_key_template": "0102", "proof": "00"}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("unsupported_key"))
    );
    let mut card = new_card();
    card.select().unwrap();
    card.authenticate_with(&MgmtKeySpec::default()).unwrap();
    let key = card
        .generate(Slot::SIGNATURE, PivAlgorithm::EccP256)
        .unwrap();
    card.verify_pin(b"123456").unwrap();
    let wrong = card
        .sign_digest(Slot::SIGNATURE, PivAlgorithm::EccP256, &[0; 32])
        .unwrap();
    let r = env
        .post(
            &format!("/api/v1/enrolments/{id}"),
            json!({"public_key_template": apdu::hex(&key.template), "proof": apdu::hex(&wrong)}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("bad_proof_of_possession")
        )
    );
    let r = env
        .post(
            "/api/v1/enrolments/00112233445566778899AABBCCDDEEFF",
            json!({"public_key_template": apdu::hex(&key.template), "proof": "00"}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::NOT_FOUND, json!("unknown_challenge"))
    );
    let r = env.post("/api/v1/enrolments/nope", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    env.clock.advance(time::Duration::minutes(6));
    let r = env
        .post(
            &format!("/api/v1/enrolments/{id}"),
            json!({"public_key_template": apdu::hex(&key.template), "proof": apdu::hex(&wrong)}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::GONE, json!("expired"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_request_validation() {
    let env = env();
    for (body, needle) in [
        (
            json!({"amount": "1.234", "currency": "EUR", "payee": "S", "order_id": "O"}),
            "more than 2 decimals",
        ),
        (
            json!({"amount": "abc", "currency": "EUR", "payee": "S", "order_id": "O"}),
            "not a decimal",
        ),
        (
            json!({"amount": "1", "amount_minor": 100, "currency": "EUR", "payee": "S", "order_id": "O"}),
            "exactly one",
        ),
        (
            json!({"amount": "1", "currency": "EURO", "payee": "S", "order_id": "O"}),
            "currency",
        ),
        (
            json!({"amount": "1", "currency": "EUR", "payee": "", "order_id": "O"}),
            "payee",
        ),
        (
            json!({"amount_minor": 0, "currency": "EUR", "payee": "S", "order_id": "O"}),
            "positive",
        ),
        (json!({"currency": "EUR"}), "missing field"),
    ] {
        let r = env.post("/api/v1/payments", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        let reason = r.json()["reason"].as_str().unwrap().to_string();
        assert!(reason.contains(needle), "{body}: {reason}");
    }
    let r = env
        .post(
            "/api/v1/payments",
            json!({"amount": "500", "currency": "jpy", "payee": "S", "order_id": "O"}),
        )
        .await;
    assert_eq!(r.json()["request"]["amount_minor"], 500);
    assert_eq!(r.json()["request"]["currency"], "JPY");
    let r = env
        .get("/api/v1/payments/00112233445566778899AABBCCDDEEFF")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_disabled_without_token() {
    let env = env_with(ServerConfig::default());
    let r = env
        .send(
            Method::POST,
            "/api/v1/certificates/01/revoke",
            None,
            Some("x"),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::FORBIDDEN, json!("admin_disabled"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ca_certificate_page_and_openapi() {
    let env = env();
    let pem = env.get("/api/v1/ca.pem").await;
    assert!(String::from_utf8(pem.body)
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    let page = env.get("/pay").await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("connect-src 'self' http://127.0.0.1:7373"),
        "{csp}"
    );
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains(r#"<meta name="cardwright-agent" content="http://127.0.0.1:7373">"#));
    assert_eq!(
        env.get("/pay.js").await.headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(env.get("/").await.status, StatusCode::SEE_OTHER);
    let r = env.get("/nowhere").await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );

    let doc: Value = serde_json::to_value(server::openapi_document()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let served = env.get("/api/openapi.json").await.json();
    assert_eq!(served, doc);
    for path in [
        "/api/v1/enrolments",
        "/api/v1/enrolments/{id}",
        "/api/v1/payments",
        "/api/v1/payments/{id}",
        "/api/v1/payments/{id}/authorise",
        "/api/v1/ca.pem",
        "/api/v1/crl",
        "/api/v1/certificates/{serial}",
        "/api/v1/certificates/{serial}/revoke",
        "/api/v1/audit",
        "/api/openapi.json",
        "/healthz",
        "/pay",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} not documented");
    }
    // Every $ref resolves.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        out.push(x.as_str().unwrap().to_string());
                    } else {
                        refs(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let p = r.strip_prefix("#/").unwrap();
        let mut node = &doc;
        for part in p.split('/') {
            node = &node[part];
        }
        assert!(node.is_object(), "dangling {r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn challenge_bound_to_a_payer() {
    let env = env();
    let (mut alice, alice_cert) = env.enrol("p256").await;
    let (mut bob, _) = env.enrol("p256").await;
    let r = env
        .post("/api/v1/payments", json!({"amount": "1", "currency": "EUR", "payee": "S", "order_id": "O", "payer_serial": alice_cert["serial"]}))
        .await
        .json();
    let (cert, sig) = sign(&mut bob, &r);
    let x = env.authorise(&r, r["request"].clone(), &cert, &sig).await;
    assert_eq!(
        (x.status, x.json()["error"].clone()),
        (StatusCode::FORBIDDEN, json!("wrong_payer"))
    );
    let (cert, sig) = sign(&mut alice, &r);
    assert_eq!(
        env.authorise(&r, r["request"].clone(), &cert, &sig)
            .await
            .status,
        StatusCode::OK
    );
    let _ = Duration::ZERO;
}

/// Every route of the payment router is in the generated OpenAPI document and every
/// documented route is in the router.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_matches_the_router() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let ca = ca_files::ephemeral("CA", ca_files::CaKeyType::P256, store.clone(), clock).unwrap();
    let state = Arc::new(PayServer::new(
        Arc::new(ca),
        Stores::all(store),
        Arc::new(server::MemoryAudit::default()),
        ServerConfig::default(),
    ));
    let mut routed: Vec<(String, String)> = server::payment_route_list(state)
        .list()
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routed.sort();
    assert_eq!(
        routed,
        server::openapi::documented(&server::openapi_document())
    );
}

/// Every POST route of the payment API answers a malformed body, a wrong content type and a
/// 10 MB body with the documented `{"error", "reason"}` and 400, 415 and 413 (the admin
/// token is given, so that authentication passes and the body is what is judged).
#[tokio::test(flavor = "multi_thread")]
async fn every_post_route_refuses_bad_bodies_as_json() {
    let env = env();
    let posts: Vec<String> = server::openapi::documented(&server::openapi_document())
        .into_iter()
        .filter(|(m, _)| m.eq_ignore_ascii_case("post"))
        .map(|(_, p)| {
            p.replace("{id}", "00000000000000000000000000000000")
                .replace("{serial}", "01")
        })
        .collect();
    assert!(posts.len() >= 4, "{posts:?}");
    for path in &posts {
        assert!(!path.contains('{'), "a path parameter to fill in: {path}");
        common::refuses_bad_bodies(&env.app, path, &format!("Bearer {TOKEN}")).await;
    }
}
