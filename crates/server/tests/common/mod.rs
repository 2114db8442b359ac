//! Calling a router in process.
#![allow(dead_code)]

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
    Router,
};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// An answer.
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {} answered {:?}", self.status, self.text()))
    }
}

/// `method path` with a JSON `body` and a bearer `token`.
pub async fn call(
    app: &Router,
    method: Method,
    path: &str,
    body: Option<String>,
    token: Option<&str>,
) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    call_with(app, method, path, body, &headers).await
}

/// `method path` with these headers.
pub async fn call_with(
    app: &Router,
    method: Method,
    path: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_LENGTH, b.len())
            .body(Body::from(b)),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// `POST path` with a malformed body, a wrong content type and a 10 MB body (with the
/// `authorization` header value given) answers 400, 415 and 413 as `{"error", "reason"}`.
pub async fn refuses_bad_bodies(app: &Router, path: &str, authorization: &str) {
    let big = format!("{{\"x\":\"{}\"}}", "x".repeat(10 << 20));
    for (content_type, body, status, code) in [
        (
            "application/json",
            "{not json".to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "text/plain",
            "{}".to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "application/json",
            big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ] {
        let r = call_with(
            app,
            Method::POST,
            path,
            Some(body),
            &[
                ("authorization", authorization),
                ("content-type", content_type),
            ],
        )
        .await;
        assert_eq!(r.status, status, "{path} {content_type}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"], code, "{path}: {v}");
        assert!(
            v["reason"].as_str().is_some_and(|s| !s.is_empty()),
            "{path}: {v}"
        );
    }
}

/// Certificates made for the test (rcgen).
pub mod certs;
/// A terminal with virtual cards, connected by the relay agent.
pub mod desk;
/// A card issuer with one written virtual card.
pub mod issuer;
/// Key stores, the CI over TLS and the AP's link to it (SSD platforms).
pub mod ssd;
/// A router served over the real TLS layer, and a TLS client with client certificates.
pub mod tls;

/// Asserts that the OpenAPI operation `op` of job route `path` documents `Prefer:
/// respond-async`: the header parameter and the `202` answer (`AcceptedJob`, `Location`,
/// `Preference-Applied`).
pub fn assert_documents_respond_async(op: &Value, path: &str) {
    let accepted = &op["responses"]["202"];
    assert_eq!(
        accepted["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/AcceptedJob",
        "{path}"
    );
    for h in ["Location", "Preference-Applied"] {
        assert!(accepted["headers"][h].is_object(), "{path}: {h}");
    }
    assert!(
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Prefer" && p["in"] == "header"),
        "{path}"
    );
}

/// What a webhook receiver got: headers and body of each delivery.
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A webhook receiver on 127.0.0.1 (`…/hooks/cardwright`) that keeps every delivery; with
/// `refuse_first` it answers 503 to the first one (the sender must retry), 200 otherwise.
pub async fn webhook_receiver(refuse_first: bool) -> (String, Received) {
    let got: Received = Received::default();
    let app = Router::new().route(
        "/hooks/cardwright",
        axum::routing::post({
            let got = got.clone();
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let got = got.clone();
                async move {
                    let mut g = got.lock().unwrap();
                    g.push((headers, body.to_vec()));
                    if refuse_first && g.len() == 1 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/cardwright", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// A multi-thread runtime of two workers for a test's servers (its tasks end when it is
/// dropped).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Serves `app` over plain HTTP on a loopback port from `rt`; its `http://` URL.
pub fn serve_on(rt: &tokio::runtime::Runtime, app: Router) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await });
    url
}
