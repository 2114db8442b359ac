//! Asynchronous issuance requests (issue 13): `Prefer: respond-async` (RFC 7240) on the job
//! routes, `GET /api/v1/jobs/{id}`, and the signed webhook, with virtual cards in the readers
//! of a terminal agent (relay::agent) connected to the issuance API over a real socket, and a
//! webhook receiver on another socket.
//!
//! The first reader holds its card's exchanges until the test lets them go: a `202` that
//! arrives while no APDU has been answered is an answer before the card work, whatever the
//! machine's speed.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use common::{call, call_with, webhook_receiver, Received, Reply};
use gp::commands::DataObject;
use kms::KeyKind;
use serde_json::{json, Value};
use server::auth::{Principal, Role, TokenTable};
use server::issuance::IssuanceApi;
use server::webhook::{self, Webhook};
use transport::CardChannel;
use tsm::Store;

const BASE: &str = "00112233445566778899AABBCCDDEEFF";
const WRITTEN: &str = "1000000001";
const ASYNC_CARD: &str = "1000000002";
const SYNC_CARD: &str = "1000000003";
const OPERATOR: &str = "issuer-operator-token-0123456789";
const VIEWER: &str = "issuer-viewer-token-0123456789";
const OTHER: &str = "other-operator-token-0123456789";
const TERMINAL: &str = "desk-terminal-token-0123456789";
const SECRET: &[u8] = b"webhook-secret-0123456789abcdef";
const GATED: &str = "Reader 0";
const FREE: &str = "Reader 1";

/// Two readers: `GATED` (its exchanges wait for `gate`) and `FREE`.
struct Desk {
    cards: [card::VirtualChannel; 2],
    gate: Arc<AtomicBool>,
    /// APDUs answered in the gated reader.
    answered: Arc<Mutex<u32>>,
}

impl Desk {
    fn card(
        &mut self,
        reader: &str,
    ) -> Result<&mut card::VirtualChannel, relay::protocol::RelayFault> {
        match reader {
            GATED => {
                while !self.gate.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(&mut self.cards[0])
            }
            FREE => Ok(&mut self.cards[1]),
            _ => Err(relay::protocol::RelayFault::Other {
                message: format!("no reader {reader}"),
            }),
        }
    }
}

impl relay::agent::Readers for Desk {
    fn list(&mut self) -> Vec<relay::protocol::ReaderReport> {
        [GATED, FREE]
            .iter()
            .zip(&self.cards)
            .map(|(name, c)| relay::protocol::ReaderReport {
                name: (*name).into(),
                card_present: true,
                atr: Some(apdu::hex(&c.atr())),
            })
            .collect()
    }
    fn transmit(
        &mut self,
        reader: &str,
        capdu: &[u8],
    ) -> Result<Vec<u8>, relay::protocol::RelayFault> {
        let r = self.card(reader)?.transmit_raw(capdu).map_err(|e| {
            relay::protocol::RelayFault::Other {
                message: e.to_string(),
            }
        });
        if reader == GATED {
            *self.answered.lock().unwrap() += 1;
        }
        r
    }
    fn reset(&mut self, reader: &str) -> Result<Vec<u8>, relay::protocol::RelayFault> {
        let c = self.card(reader)?;
        c.reset().map_err(|e| relay::protocol::RelayFault::Other {
            message: e.to_string(),
        })?;
        Ok(c.atr())
    }
}

struct Platform {
    app: axum::Router,
    store: Store,
    cards: [card::VirtualChannel; 2],
    gate: Arc<AtomicBool>,
    answered: Arc<Mutex<u32>>,
    hooks: Received,
    stop: Arc<AtomicBool>,
    agent: Option<std::thread::JoinHandle<Result<(), relay::agent::AgentError>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.gate.store(true, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.agent.take() {
            let _ = a.join();
        }
    }
}

/// Tenant `issuer` (category `gold`, card `WRITTEN` written) and tenant `other`; the
/// issuance API served with a webhook; a terminal `desk` with two blank cards connected.
async fn platform() -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let common::issuer::WrittenCard { store, issuer, .. } =
        common::issuer::issuer_with_written_card(dir.path(), BASE, WRITTEN);
    store
        .create_tenant("admin", "other", "other", tsm::model::Role::CardIssuer)
        .unwrap();
    let mut tokens = TokenTable::new();
    for (token, name, role, tenant) in [
        (OPERATOR, "alice", Role::Operator, Some("issuer")),
        (VIEWER, "victor", Role::Viewer, Some("issuer")),
        (OTHER, "mallory", Role::Operator, Some("other")),
        (TERMINAL, "desk", Role::Terminal, None),
    ] {
        tokens.add(
            token,
            Principal {
                name: name.into(),
                role,
                tenant: tenant.map(Into::into),
            },
        );
    }
    let (hook_url, hooks) = webhook_receiver(true).await;
    let hook = Webhook::new(&hook_url, zeroize::Zeroizing::new(SECRET.to_vec()))
        .unwrap()
        .with_retries(4, Duration::from_millis(50));
    let api = IssuanceApi::with_webhook(
        Arc::new(issuer),
        tokens,
        Duration::from_secs(10),
        Some(hook),
    );
    let app = server::issuance::router(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = app.clone();
    tokio::spawn(async move { axum::serve(listener, served).await });

    let blank = || card::VirtualChannel::new(card::VirtualCard::new(card::CardConfig::default()));
    let cards = [blank(), blank()];
    let gate = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let agent = {
        let mut desk = Desk {
            cards: cards.clone(),
            gate: gate.clone(),
            answered: answered.clone(),
        };
        let stop = stop.clone();
        let cfg = relay::agent::AgentConfig {
            server: url,
            token: Some(TERMINAL.into()),
            terminal: "desk".into(),
            poll: Duration::from_millis(20),
            retry: Duration::from_millis(50),
            tls: None,
        };
        std::thread::spawn(move || relay::agent::run(&cfg, &mut desk, &stop))
    };
    let p = Platform {
        app,
        store,
        cards,
        gate,
        answered,
        hooks,
        stop,
        agent: Some(agent),
        _dir: dir,
    };
    // The terminal is connected when its readers are listed.
    let t0 = Instant::now();
    loop {
        let r = call(&p.app, Method::GET, "/api/v1/terminals", None, Some(VIEWER)).await;
        if r.json()["terminals"][0]["readers"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the terminal did not connect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p
}

fn write_body(reader: &str) -> String {
    json!({"terminal": "desk", "reader": reader, "category": "gold"}).to_string()
}

async fn post_async(app: &axum::Router, path: &str, body: String, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    call_with(
        app,
        Method::POST,
        path,
        Some(body),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("prefer", "respond-async, wait=100"),
        ],
    )
    .await
}

/// Polls the job until it is no longer running.
async fn until_ended(app: &axum::Router, url: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let r = call(app, Method::GET, url, None, Some(VIEWER)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v = r.json();
        if v["state"] != "running" && v["state"] != "pending" {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "still {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The card opens with the keys derived from the base key for `number` (KVN 31, base key
/// version 1) and carries its number as CIN.
fn assert_written(card: &card::VirtualChannel, number: &str) {
    let mut c = gpclient::GpClient::new(transport::Traced::new(card.clone(), None));
    c.open_secure_channel(&gpclient::OpenOptions {
        keys: gpclient::KeySpec::same(
            &apdu::parse_hex(BASE).unwrap(),
            kms::diversification_for(KeyKind::Aes),
            tsm::kvn_for_version(1, 0x30),
        ),
        level: scp::SecurityLevel::MAC,
        scp: None,
        sd: None,
    })
    .unwrap_or_else(|e| panic!("{number}: the derived keys do not open the card: {e}"));
    assert_eq!(
        gpclient::ops::get_data(&mut c, DataObject::Cin).unwrap(),
        Some(kms::kdd_for_card_number(number).unwrap().to_vec()),
        "{number}: CIN"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn respond_async_answers_before_the_card_work_and_the_job_is_followed_to_its_end() {
    let p = platform().await;

    // 202 while the card has answered nothing yet.
    let path = format!("/api/v1/cards/{ASYNC_CARD}/write");
    let r = post_async(&p.app, &path, write_body(GATED), OPERATOR).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(*p.answered.lock().unwrap(), 0, "answered before any APDU");
    let accepted = r.json();
    let id = accepted["job"].as_i64().unwrap();
    let url = format!("/api/v1/jobs/{id}");
    assert_eq!(r.headers["location"], url.as_str());
    assert_eq!(r.headers["preference-applied"], "respond-async");
    assert_eq!(accepted["url"], url.as_str());
    assert_eq!(accepted["kind"], "write");
    assert_eq!(accepted["state"], "running");
    assert_eq!(accepted["card_number"], ASYNC_CARD);

    // Recorded before the work: running, no step done.
    let v = call(&p.app, Method::GET, &url, None, Some(VIEWER))
        .await
        .json();
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["submitted_by"], "issuer/alice");
    let steps = v["steps"].as_array().unwrap();
    assert!(steps.len() >= 3, "{v}");
    assert!(steps.iter().all(|s| s["state"] != "done"), "{v}");

    // Another tenant cannot read it (403, as for its card), nor list it; the refusal is
    // audited. An unknown job is 404.
    let r = call(&p.app, Method::GET, &url, None, Some(OTHER)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(!r.text().contains(ASYNC_CARD), "{}", r.text());
    let r = call(
        &p.app,
        Method::GET,
        &format!("/api/v1/jobs?card={ASYNC_CARD}"),
        None,
        Some(OTHER),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(p
        .store
        .audit_entries(0, 10_000)
        .unwrap()
        .iter()
        .any(|e| e.action == "job.read" && e.result == "forbidden" && e.actor == "other/mallory"));
    let r = call(
        &p.app,
        Method::GET,
        "/api/v1/jobs/987654",
        None,
        Some(VIEWER),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert_eq!(r.json()["error"], "not_found");
    let r = call(&p.app, Method::GET, "/api/v1/jobs/x", None, Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());

    // The card's exchanges go on: the job ends done, every step done, the card written.
    p.gate.store(true, Ordering::SeqCst);
    let v = until_ended(&p.app, &url).await;
    assert_eq!(v["state"], "done", "{v}");
    assert_eq!(v["attempts"], 1);
    assert!(v["error"].is_null(), "{v}");
    let steps = v["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .all(|s| s["state"] == "done" && s["attempts"] == 1 && s["finished_ms"].is_i64()),
        "{v}"
    );
    assert!(*p.answered.lock().unwrap() > 0);
    let card = call(
        &p.app,
        Method::GET,
        &format!("/api/v1/cards/{ASYNC_CARD}"),
        None,
        Some(VIEWER),
    )
    .await;
    assert_eq!(card.json()["card"]["state"], "written");
    assert_written(&p.cards[0], ASYNC_CARD);
    // The card's jobs, filtered by state.
    let list = |q: String| {
        let app = p.app.clone();
        async move {
            call(
                &app,
                Method::GET,
                &format!("/api/v1/jobs?{q}"),
                None,
                Some(VIEWER),
            )
            .await
        }
    };
    let r = list(format!("card={ASYNC_CARD}&state=done")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["jobs"][0]["job"], id);
    let r = list(format!("card={ASYNC_CARD}&state=failed")).await;
    assert_eq!(r.json()["jobs"], json!([]));
    let r = list(format!("card={ASYNC_CARD}&state=bogus")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = list("state=done".into()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());

    // The webhook: refused once (503), delivered again, signed over the timestamp and the
    // body; a changed body or timestamp does not verify.
    let t0 = Instant::now();
    let deliveries = loop {
        let got = p.hooks.lock().unwrap().clone();
        if got.len() >= 2 {
            break got;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{} deliveries",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let tolerance = Duration::from_secs(300);
    for (n, (headers, body)) in deliveries.iter().enumerate() {
        let h = |name: &str| headers[name].to_str().unwrap().to_string();
        let (ts, sig) = (h(webhook::TIMESTAMP_HEADER), h(webhook::SIGNATURE_HEADER));
        assert_eq!(
            webhook::verify(SECRET, &ts, body, &sig, now, tolerance),
            Ok(())
        );
        assert_eq!(h(webhook::EVENT_HEADER), "job.ended");
        assert_eq!(h(webhook::DELIVERY_HEADER), format!("{id}.1.{}", n + 1));
        assert_eq!(h("content-type"), "application/json");
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["event"], "job.ended");
        assert_eq!(v["job"]["job"], id);
        assert_eq!(v["job"]["state"], "done");
        assert_eq!(v["job"]["card_number"], ASYNC_CARD);
        let mut tampered = body.clone();
        let at = tampered.iter().position(|&b| b == b'd').unwrap(); // one byte changed
        tampered[at] = b'e';
        assert_eq!(
            webhook::verify(SECRET, &ts, &tampered, &sig, now, tolerance),
            Err(webhook::VerifyError::Mismatch)
        );
        let later = (ts.parse::<u64>().unwrap() + 1).to_string();
        assert_eq!(
            webhook::verify(SECRET, &later, body, &sig, now, tolerance),
            Err(webhook::VerifyError::Mismatch)
        );
        assert_eq!(
            webhook::verify(
                b"not the platform's secret!",
                &ts,
                body,
                &sig,
                now,
                tolerance
            ),
            Err(webhook::VerifyError::Mismatch)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_preference_the_answer_waits_and_refusals_stay_synchronous() {
    let p = platform().await;
    p.gate.store(true, Ordering::SeqCst);

    // No preference (or another one): the outcome of the run, as before.
    let auth = format!("Bearer {OPERATOR}");
    let r = call_with(
        &p.app,
        Method::POST,
        &format!("/api/v1/cards/{SYNC_CARD}/write"),
        Some(write_body(FREE)),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("prefer", "return=minimal"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.headers.get("preference-applied").is_none());
    assert!(r.headers.get("location").is_none());
    let v = r.json();
    assert_eq!(v["state"], "done", "{v}");
    assert_eq!(v["card"]["state"], "written");
    assert!(v["apdus"].as_u64().unwrap() > 0);
    assert_written(&p.cards[1], SYNC_CARD);
    // The synchronous run is announced too (after a first refusal by the receiver).
    let sync_job = v["job"].as_i64().unwrap();
    let t0 = Instant::now();
    while !p.hooks.lock().unwrap().iter().any(|(h, body)| {
        let v: Value = serde_json::from_slice(body).unwrap();
        v["job"]["job"] == sync_job
            && v["job"]["state"] == "done"
            && h[webhook::DELIVERY_HEADER] == format!("{sync_job}.1.2").as_str()
    }) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no webhook delivery"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // With the preference, what is refused before any card work is refused at once, as
    // without it, and nothing is recorded.
    let jobs_before = p.store.jobs_of_card(ASYNC_CARD).unwrap().len();
    let path = format!("/api/v1/cards/{ASYNC_CARD}/write");
    let refusals = [
        // Not hex.
        (
            json!({"terminal": "desk", "reader": GATED, "category": "gold", "perso": "zz"}),
            OPERATOR,
            StatusCode::BAD_REQUEST,
        ),
        // Unknown category.
        (
            json!({"terminal": "desk", "reader": GATED, "category": "platinum"}),
            OPERATOR,
            StatusCode::NOT_FOUND,
        ),
        // Unknown reader.
        (
            json!({"terminal": "desk", "reader": "Reader 9", "category": "gold"}),
            OPERATOR,
            StatusCode::NOT_FOUND,
        ),
        // A category of another tenant.
        (
            json!({"terminal": "desk", "reader": GATED, "category": "gold"}),
            OTHER,
            StatusCode::FORBIDDEN,
        ),
    ];
    for (body, token, status) in refusals {
        let r = post_async(&p.app, &path, body.to_string(), token).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.headers.get("preference-applied").is_none());
        assert!(r.json()["error"].is_string());
    }
    // A written card cannot be written (409); another tenant's card is refused (403).
    for (card, token, status) in [
        (SYNC_CARD, OPERATOR, StatusCode::CONFLICT),
        (SYNC_CARD, OTHER, StatusCode::FORBIDDEN),
    ] {
        let r = post_async(
            &p.app,
            &format!("/api/v1/cards/{card}/write"),
            write_body(GATED),
            token,
        )
        .await;
        assert_eq!(r.status, status, "{}", r.text());
    }
    // Nothing to resume: 400 at once.
    let r = post_async(
        &p.app,
        &format!("/api/v1/cards/{SYNC_CARD}/resume"),
        json!({"terminal": "desk", "reader": FREE}).to_string(),
        OPERATOR,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(p.store.jobs_of_card(ASYNC_CARD).unwrap().len(), jobs_before);
    assert_eq!(
        *p.answered.lock().unwrap(),
        0,
        "no refused request reached the card"
    );

    // An asynchronous clear of the written card runs to its end too.
    let r = post_async(
        &p.app,
        &format!("/api/v1/cards/{SYNC_CARD}/clear"),
        json!({"terminal": "desk", "reader": FREE}).to_string(),
        OPERATOR,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let url = r.headers["location"].to_str().unwrap().to_string();
    let v = until_ended(&p.app, &url).await;
    assert_eq!(v["state"], "done", "{v}");
    assert_eq!(v["kind"], "clear");
    let card = p.store.card(SYNC_CARD).unwrap().unwrap();
    assert_eq!(card.state, tsm::model::CardState::Blank);
}

/// The OpenAPI document says it: every job route takes `Prefer` and may answer 202 with
/// `Location` and `Preference-Applied`; the job routes are there.
#[test]
fn the_openapi_document_describes_the_asynchronous_answers() {
    let doc = serde_json::to_value(server::issuance::openapi_document()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let job_routes: Vec<&String> = paths
        .keys()
        .filter(|p| p.starts_with("/api/v1/cards/{card_number}/"))
        .collect();
    assert_eq!(job_routes.len(), 6, "{job_routes:?}");
    for path in job_routes {
        let op = &paths[path]["post"];
        common::assert_documents_respond_async(op, path);
    }
    assert!(paths["/api/v1/jobs/{id}"]["get"]["responses"]["200"].is_object());
    assert!(paths["/api/v1/jobs"]["get"]["responses"]["200"].is_object());
    for schema in ["JobStatus", "StepStatus", "JobEnded", "JobList"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
}

/// What a crash between the 202 and the card work leaves: the job recorded `running` under
/// its lease, no step done; once the lease has run out, `resume` finishes it on the card.
#[test]
fn a_job_claimed_but_never_run_is_resumed_after_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let common::issuer::WrittenCard { store, keys, .. } =
        common::issuer::issuer_with_written_card(dir.path(), BASE, WRITTEN);
    let issuer = tsm::Issuer::new(
        store.clone(),
        keys as Arc<dyn kms::KeyStore>,
        tsm::IssuerConfig {
            lease: Duration::from_millis(1),
            ..Default::default()
        },
    );
    let actor = tsm::Actor::new("issuer", "alice");
    let claimed = issuer
        .submit_claimed(
            &actor,
            &tsm::Request::Write {
                card_number: ASYNC_CARD.into(),
                category: "gold".into(),
                install_apps: true,
                perso: Vec::new(),
            },
        )
        .unwrap();
    let id = claimed.job().id;
    drop(claimed); // the process dies before the card work
    let job = store.job(id).unwrap().unwrap();
    assert_eq!(job.state, tsm::model::JobState::Running);
    assert!(store
        .job_steps(id)
        .unwrap()
        .iter()
        .all(|s| s.state == tsm::model::StepState::Pending));
    std::thread::sleep(Duration::from_millis(5));
    let mut card = card::VirtualChannel::new(card::VirtualCard::new(card::CardConfig::default()));
    let out = issuer.resume(&actor, ASYNC_CARD, &mut card).unwrap();
    assert_eq!(out.job.id, id);
    assert_eq!(out.job.state, tsm::model::JobState::Done);
    assert_written(&card, ASYNC_CARD);
}
