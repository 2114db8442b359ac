//! The card holder's agent in process: its Host/Origin guard and every error shape.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::call_with;
use serde_json::json;
use server::agent::{AgentConfig, CardSource, PivCard};

const ORIGIN: &str = "http://127.0.0.1:8080";
const HOST: &str = "127.0.0.1:7373";

/// A virtual PIV card, or no card at all.
struct Source(Option<card::VirtualChannel>);

impl CardSource for Source {
    fn open(&self) -> Result<PivCard, String> {
        match &self.0 {
            Some(c) => Ok(pivhost::PivClient::new(Box::new(c.clone()))),
            None => Err("no reader with a card".into()),
        }
    }
    fn describe(&self) -> String {
        "test reader".into()
    }
}

fn agent(with_card: bool) -> axum::Router {
    let card = with_card.then(|| {
        card::VirtualChannel::with_config(card::CardConfig {
            with_piv: true,
            ..card::CardConfig::default()
        })
    });
    server::agent::router(
        AgentConfig {
            allowed_origins: vec![ORIGIN.into()],
            slot: "9c".parse().unwrap(),
            mgmt: pivhost::payment::MgmtKeySpec {
                key: None,
                algorithm: None,
            },
        },
        Arc::new(Source(card)),
        "127.0.0.1:7373".parse::<SocketAddr>().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn guard_and_error_shapes() {
    let app = agent(false);
    let expect = |r: &common::Reply, status: StatusCode, code: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.json()["error"], code, "{}", r.text());
        assert!(r.json()["reason"].is_string());
    };
    let page = [
        ("host", HOST),
        ("origin", ORIGIN),
        ("content-type", "application/json"),
    ];
    // DNS rebinding: another Host.
    let r = call_with(
        &app,
        Method::GET,
        "/v1/status",
        None,
        &[("host", "evil.example")],
    )
    .await;
    expect(&r, StatusCode::FORBIDDEN, "forbidden_host");
    // A state-changing request without Origin, and from a foreign one.
    let r = call_with(
        &app,
        Method::POST,
        "/v1/sign",
        Some("{}".into()),
        &[("host", HOST)],
    )
    .await;
    expect(&r, StatusCode::FORBIDDEN, "missing_origin");
    let r = call_with(
        &app,
        Method::POST,
        "/v1/sign",
        Some("{}".into()),
        &[("host", HOST), ("origin", "http://evil.example")],
    )
    .await;
    expect(&r, StatusCode::FORBIDDEN, "forbidden_origin");
    // CORS preflight from the allowed origin.
    let r = call_with(
        &app,
        Method::OPTIONS,
        "/v1/sign",
        None,
        &[("host", HOST), ("origin", ORIGIN)],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.headers["access-control-allow-origin"], ORIGIN);
    // Bodies: malformed 400, wrong content type 415, too large 413.
    let r = call_with(&app, Method::POST, "/v1/sign", Some("{oops".into()), &page).await;
    expect(&r, StatusCode::BAD_REQUEST, "invalid_request");
    let r = call_with(&app, Method::POST, "/v1/sign", Some("{}".into()), &page).await;
    expect(&r, StatusCode::BAD_REQUEST, "invalid_request");
    let r = call_with(
        &app,
        Method::POST,
        "/v1/sign",
        Some("{}".into()),
        &[
            ("host", HOST),
            ("origin", ORIGIN),
            ("content-type", "text/plain"),
        ],
    )
    .await;
    expect(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let big = format!(
        "{{\"canonical\":\"{}\",\"pin\":\"1\"}}",
        "0".repeat(10 << 20)
    );
    let r = call_with(&app, Method::POST, "/v1/sign", Some(big), &page).await;
    expect(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Unknown route and method.
    let r = call_with(&app, Method::GET, "/v1/nowhere", None, &[("host", HOST)]).await;
    expect(&r, StatusCode::NOT_FOUND, "not_found");
    let r = call_with(&app, Method::GET, "/v1/sign", None, &[("host", HOST)]).await;
    expect(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    // No card: the status says so; a card operation answers 503 no_card.
    let r = call_with(&app, Method::GET, "/v1/status", None, &[("host", HOST)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["card"]["present"], false);
    assert_eq!(r.json()["card"]["error"], "no_card");
    let body = json!({"canonical": "00", "pin": "123456"}).to_string();
    let r = call_with(&app, Method::POST, "/v1/sign", Some(body), &page).await;
    expect(&r, StatusCode::SERVICE_UNAVAILABLE, "no_card");
}

#[tokio::test(flavor = "multi_thread")]
async fn card_errors_are_json() {
    let app = agent(true);
    let page = [
        ("host", HOST),
        ("origin", ORIGIN),
        ("content-type", "application/json"),
    ];
    let r = call_with(&app, Method::GET, "/v1/status", None, &[("host", HOST)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["card"]["present"], true, "{}", r.text());
    // Not a canonical payment: refused before the card signs anything.
    let body = json!({"canonical": "0011", "pin": "123456"}).to_string();
    let r = call_with(&app, Method::POST, "/v1/sign", Some(body), &page).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_request");
    // A certificate without an enrolment first.
    let body = json!({"certificate": "3000"}).to_string();
    let r = call_with(&app, Method::POST, "/v1/certificate", Some(body), &page).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.json()["error"], "no_enrolment");
}
