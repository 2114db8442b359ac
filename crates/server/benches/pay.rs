//! Server-side throughput of the payment API, through the HTTP handlers (JSON, hex, store,
//! audit log, CA) without the network: enrolment completions and payment verifications.
//!
//! * `one at a time`: one request after the other (latency; elements/s = 1 / latency).
//! * `concurrent`: a batch of requests in flight together on the multi-threaded runtime
//!   (what the server sustains on this machine's cores).
//!
//! What a card would compute (signatures) is prepared outside the timed part.
//! `cargo bench -p server --bench pay`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
    Router,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::BodyExt;
use p256::ecdsa::{signature::hazmat::PrehashSigner, DerSignature};
use p256::elliptic_curve::Generate;
use pki::{piv, MemoryStore, PublicKey};
use serde_json::{json, Value};
use server::{ca_files, PayServer, ServerConfig, Stores};
use tower::ServiceExt;

/// The allocator of the `cardwright` binary, so that the figures are those of `serve`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

enum Card {
    Rsa(Box<rsa::PrivateKey>),
    P256(p256::ecdsa::SigningKey),
}

impl Card {
    fn public(&self) -> PublicKey {
        match self {
            Card::Rsa(k) => PublicKey::from_rsa(k.to_public_key()).expect("2048"),
            Card::P256(k) => PublicKey::P256(p256::PublicKey::from(k.verifying_key())),
        }
    }
    fn alg(&self) -> &'static str {
        match self {
            Card::Rsa(_) => "rsa2048",
            Card::P256(_) => "p256",
        }
    }
    fn sign(&self, digest: &[u8; 32]) -> Vec<u8> {
        match self {
            Card::Rsa(k) => k
                .pkcs1v15_sign_prehash::<sha2::Sha256>(digest)
                .expect("sign"),
            Card::P256(k) => {
                let s: DerSignature = k.sign_prehash(digest).expect("sign");
                s.as_bytes().to_vec()
            }
        }
    }
}

fn app() -> Router {
    let store = Arc::new(MemoryStore::new());
    let ca = ca_files::ephemeral(
        "Bench CA",
        ca_files::CaKeyType::P256,
        store.clone(),
        Arc::new(pki::SystemClock),
    )
    .expect("CA");
    server::router(Arc::new(PayServer::new(
        Arc::new(ca),
        Stores::all(store),
        // Bounded: the bench issues hundreds of thousands of events.
        Arc::new(server::MemoryAudit::new(10_000)),
        ServerConfig {
            payment_challenge_ttl: Duration::from_secs(3600),
            enrolment_challenge_ttl: Duration::from_secs(3600),
            ..ServerConfig::default()
        },
    )))
}

async fn post(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let r = app.clone().oneshot(req).await.expect("infallible");
    let status = r.status();
    let bytes = r.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON"))
}

/// A started enrolment and the finish body the card would send.
async fn prepared_enrolment(app: &Router, card: &Card, template: &str) -> (String, Value) {
    let (_, s) = post(
        app,
        "/api/v1/enrolments",
        json!({"name": "Bench", "algorithm": card.alg()}),
    )
    .await;
    let digest: [u8; 32] = apdu::parse_hex(s["digest"].as_str().expect("digest"))
        .expect("hex")
        .try_into()
        .expect("32");
    let path = format!("/api/v1/enrolments/{}", s["id"].as_str().expect("id"));
    let body = json!({"algorithm": card.alg(), "public_key_template": template, "proof": apdu::hex(&card.sign(&digest))});
    (path, body)
}

/// An enrolled card's certificate (hex).
async fn enrol(app: &Router, card: &Card) -> String {
    let template = apdu::hex(&piv::encode_public_key_template(&card.public()));
    let (path, body) = prepared_enrolment(app, card, &template).await;
    let (status, cert) = post(app, &path, body).await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    cert["certificate"].as_str().expect("cert").to_string()
}

/// A payment challenge and the authorise body the page would send.
async fn prepared_payment(app: &Router, card: &Card, cert: &str, n: u64) -> (String, Value) {
    let (_, c) = post(
        app,
        "/api/v1/payments",
        json!({"amount_minor": 1000 + n, "currency": "EUR", "payee": "SHOP", "order_id": format!("O-{n}")}),
    )
    .await;
    let digest: [u8; 32] = apdu::parse_hex(c["digest"].as_str().expect("digest"))
        .expect("hex")
        .try_into()
        .expect("32");
    let path = format!(
        "/api/v1/payments/{}/authorise",
        c["id"].as_str().expect("id")
    );
    let body = json!({"request": c["request"], "certificate": cert, "signature": apdu::hex(&card.sign(&digest))});
    (path, body)
}

/// Sends the prepared requests one after the other; returns the wall time.
async fn sequential(app: &Router, batch: Vec<(String, Value)>, expect: StatusCode) -> Duration {
    let start = Instant::now();
    for (path, body) in batch {
        assert_eq!(post(app, &path, body).await.0, expect);
    }
    start.elapsed()
}

/// Sends all prepared requests at once; returns the wall time.
async fn concurrent(app: &Router, batch: Vec<(String, Value)>, expect: StatusCode) -> Duration {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (path, body) in batch {
        let app = app.clone();
        set.spawn(async move { post(&app, &path, body).await.0 });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.expect("task"), expect);
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cards = [
        Card::P256(p256::ecdsa::SigningKey::generate_from_rng(&mut rand::rng())),
        Card::Rsa(Box::new(
            rsa::PrivateKey::new(&mut rand::rng(), 2048).expect("RSA key"),
        )),
    ];
    let mut g = c.benchmark_group("server");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for card in &cards {
        let app = app();
        let cert = rt.block_on(enrol(&app, card));
        let template = apdu::hex(&piv::encode_public_key_template(&card.public()));
        let alg = card.alg();
        let mut n = 0u64;

        g.bench_function(format!("payment verification {alg}/one at a time"), |b| {
            b.iter_custom(|iters| {
                let batch: Vec<_> = (0..iters)
                    .map(|_| {
                        n += 1;
                        rt.block_on(prepared_payment(&app, card, &cert, n))
                    })
                    .collect();
                rt.block_on(sequential(&app, batch, StatusCode::OK))
            })
        });
        g.bench_function(format!("payment verification {alg}/concurrent"), |b| {
            b.iter_custom(|iters| {
                let batch: Vec<_> = (0..iters)
                    .map(|_| {
                        n += 1;
                        rt.block_on(prepared_payment(&app, card, &cert, n))
                    })
                    .collect();
                rt.block_on(concurrent(&app, batch, StatusCode::OK))
            })
        });
        g.bench_function(format!("enrolment {alg}/one at a time"), |b| {
            b.iter_custom(|iters| {
                let batch: Vec<_> = (0..iters)
                    .map(|_| rt.block_on(prepared_enrolment(&app, card, &template)))
                    .collect();
                rt.block_on(sequential(&app, batch, StatusCode::CREATED))
            })
        });
        g.bench_function(format!("enrolment {alg}/concurrent"), |b| {
            b.iter_custom(|iters| {
                let batch: Vec<_> = (0..iters)
                    .map(|_| rt.block_on(prepared_enrolment(&app, card, &template)))
                    .collect();
                rt.block_on(concurrent(&app, batch, StatusCode::CREATED))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
