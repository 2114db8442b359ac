//! Campaigns over the issuance API in process (the real router over a SQLite store), and the
//! campaign workers of a node: on virtual cards, and on the readers of a terminal connected
//! through the relay (a card is used once, until it is taken out); their `/metrics` series.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::call;
use serde_json::{json, Value};
use server::auth::{Principal, Role, TokenTable};
use server::campaigns::{CampaignWorkers, CardSource, WorkerOptions};
use server::issuance::IssuanceApi;
use server::metrics::Metrics;
use transport::CardChannel;
use tsm::Store;

const BASE: &str = "00112233445566778899AABBCCDDEEFF";
const OP: &str = "issuer-operator-token-0123456789";
const VIEWER: &str = "issuer-viewer-token-0123456789";
const BANK: &str = "bank-operator-token-0123456789";
const DESK: &str = "desk-terminal-token-0123456789";

struct Platform {
    app: axum::Router,
    api: Arc<IssuanceApi>,
    store: Store,
    keys: Arc<kms::SoftwareKeyStore>,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

fn principal(tenant: Option<&str>, name: &str, role: Role) -> Principal {
    Principal {
        name: name.into(),
        role,
        tenant: tenant.map(Into::into),
    }
}

/// Tenant `issuer` with category `gold` (its base key in the key store), an operator and a
/// viewer of `issuer`, an operator of `bank`, and terminal `desk`.
fn platform() -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let w = common::issuer::issuer_with_written_card(dir.path(), BASE, "1000000001");
    let tokens = TokenTable::new()
        .with(OP, principal(Some("issuer"), "ops", Role::Operator))
        .with(VIEWER, principal(Some("issuer"), "watcher", Role::Viewer))
        .with(BANK, principal(Some("bank"), "mallory", Role::Operator))
        .with(DESK, principal(None, "desk", Role::Terminal));
    let metrics = Arc::new(Metrics::default());
    let api = IssuanceApi::with_metrics(
        Arc::new(w.issuer),
        tokens,
        Duration::from_secs(10),
        metrics.clone(),
    );
    Platform {
        app: server::issuance::router(api.clone()),
        api,
        store: w.store,
        keys: w.keys,
        metrics,
        _dir: dir,
    }
}

impl Platform {
    async fn post(&self, path: &str, body: Value, token: &str) -> (StatusCode, Value) {
        let r = call(
            &self.app,
            Method::POST,
            path,
            Some(body.to_string()),
            Some(token),
        )
        .await;
        (r.status, r.json())
    }
    async fn steer(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = call(&self.app, Method::POST, path, None, Some(token)).await;
        (r.status, r.json())
    }
    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = call(&self.app, Method::GET, path, None, Some(token)).await;
        (r.status, r.json())
    }
    async fn create(&self, body: Value) -> i64 {
        let (status, v) = self.post("/api/v1/campaigns", body, OP).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["campaign"].as_i64().unwrap()
    }
    fn refusals(&self, action: &str) -> usize {
        self.store
            .audit_entries(0, 10_000)
            .unwrap()
            .iter()
            .filter(|e| e.action == action && e.result == "refused" && e.actor == "bank/mallory")
            .count()
    }
    /// An issuer over this platform's store and keys, with a short job lease.
    fn issuer(&self) -> Arc<tsm::Issuer> {
        Arc::new(tsm::Issuer::new(
            self.store.clone(),
            self.keys.clone() as Arc<dyn kms::KeyStore>,
            tsm::IssuerConfig {
                lease: Duration::from_secs(5),
                ..tsm::IssuerConfig::default()
            },
        ))
    }
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn campaigns_are_created_steered_and_read_over_the_api() {
    let p = platform();
    // By list (with Location) and by range.
    let r = call(
        &p.app,
        Method::POST,
        "/api/v1/campaigns",
        Some(json!({"category": "gold", "cards": ["4711000000000001", "4711000000000002", "4711000000000003"]}).to_string()),
        Some(OP),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let id = r.json()["campaign"].as_i64().unwrap();
    assert_eq!(
        r.headers.get("location").unwrap(),
        &format!("/api/v1/campaigns/{id}")
    );
    assert_eq!(
        r.json(),
        json!({"campaign": id, "cards": 3, "state": "created", "url": format!("/api/v1/campaigns/{id}")})
    );
    let ranged = p
        .create(json!({"category": "gold", "first": "0100", "last": "0199"}))
        .await;
    let (_, s) = p.get(&format!("/api/v1/campaigns/{ranged}"), VIEWER).await;
    assert_eq!(
        (s["total"].as_u64(), s["pending"].as_u64()),
        (Some(100), Some(100))
    );

    // Refused bodies: both or neither way, a card twice, too large a range, a bad number.
    for (body, status) in [
        (
            json!({"category": "gold", "cards": ["1"], "first": "1", "last": "2"}),
            400,
        ),
        (json!({"category": "gold", "first": "1"}), 400),
        (json!({"category": "gold"}), 400),
        (json!({"category": "gold", "cards": ["12", "12"]}), 400),
        (json!({"category": "gold", "cards": []}), 400),
        (json!({"category": "gold", "cards": ["12a"]}), 400),
        (
            json!({"category": "gold", "first": "0000000", "last": "9999999"}),
            400,
        ),
        (
            json!({"category": "gold", "first": "19", "last": "10"}),
            400,
        ),
        (json!({"category": "lead", "cards": ["12"]}), 404),
    ] {
        let (got, v) = p.post("/api/v1/campaigns", body.clone(), OP).await;
        assert_eq!(got.as_u16(), status, "{body} → {v}");
        assert!(v["reason"].is_string(), "{v}");
    }
    // A viewer may not create; another tenant may not use the category (audited).
    let body = json!({"category": "gold", "cards": ["12"]});
    let (got, _) = p.post("/api/v1/campaigns", body.clone(), VIEWER).await;
    assert_eq!(got, StatusCode::FORBIDDEN);
    let (got, v) = p.post("/api/v1/campaigns", body, BANK).await;
    assert_eq!(
        (got, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    assert_eq!(p.refusals("campaign.create"), 1);

    // Status: the viewer reads; another tenant is refused (audited); unknown: 404.
    let (got, s) = p.get(&format!("/api/v1/campaigns/{id}"), VIEWER).await;
    assert_eq!(got, StatusCode::OK);
    assert_eq!(
        (
            s["state"].as_str(),
            s["pending"].as_u64(),
            s["done"].as_u64(),
            s["category"].as_str()
        ),
        (Some("created"), Some(3), Some(0), Some("gold"))
    );
    assert_eq!(s["created_by"], "issuer/ops");
    assert_eq!(s["eta_s"], Value::Null);
    for path in ["", "/failures"] {
        let (got, _) = p.get(&format!("/api/v1/campaigns/{id}{path}"), BANK).await;
        assert_eq!(got, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(p.refusals("campaign.status"), 2);
    for verb in ["start", "pause", "resume", "cancel", "retry"] {
        let (got, _) = p
            .steer(&format!("/api/v1/campaigns/{id}/{verb}"), BANK)
            .await;
        assert_eq!(got, StatusCode::FORBIDDEN, "{verb}");
        let (got, _) = p
            .steer(&format!("/api/v1/campaigns/{id}/{verb}"), VIEWER)
            .await;
        assert_eq!(got, StatusCode::FORBIDDEN, "{verb}");
        assert_eq!(p.refusals(&format!("campaign.{verb}")), 1, "{verb}");
    }
    assert_eq!(
        p.get("/api/v1/campaigns/424242", OP).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        p.get("/api/v1/campaigns/x", OP).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        p.steer("/api/v1/campaigns/424242/start", OP).await.0,
        StatusCode::NOT_FOUND
    );

    // Steering: only from the states that allow it (409 otherwise).
    let url = format!("/api/v1/campaigns/{id}");
    let (got, v) = p.steer(&format!("{url}/pause"), OP).await;
    assert_eq!(
        (got, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{v}"
    );
    let (got, v) = p.steer(&format!("{url}/start"), OP).await;
    assert_eq!(
        (got, v["state"].as_str()),
        (StatusCode::OK, Some("running"))
    );
    assert_eq!(
        p.steer(&format!("{url}/start"), OP).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        p.steer(&format!("{url}/pause"), OP).await.1["state"],
        "paused"
    );
    assert_eq!(
        p.steer(&format!("{url}/resume"), OP).await.1["state"],
        "running"
    );
    // No failure yet: nothing to retry.
    assert_eq!(
        p.steer(&format!("{url}/retry"), OP).await.0,
        StatusCode::CONFLICT
    );

    // A worker for which two cards are missing: they fail with a reason.
    let issuer = p.issuer();
    let worker = tsm::campaign::Worker {
        issuer: &issuer,
        owner: "test".into(),
        lease: Duration::from_secs(60),
        batch: 10,
    };
    let pass = tokio::task::block_in_place(|| {
        worker.pass(&mut |number| {
            if number.ends_with('1') {
                Ok(Box::new(card::VirtualChannel::with_config(
                    card::CardConfig::default(),
                )))
            } else {
                Err(tsm::Error::Invalid(format!(
                    "no card {number} in the reader"
                )))
            }
        })
    })
    .unwrap();
    assert_eq!((pass.done, pass.failed), (1, 2), "{pass:?}");
    let (_, s) = p.get(&url, OP).await;
    assert_eq!(
        (s["done"].as_u64(), s["failed"].as_u64()),
        (Some(1), Some(2)),
        "{s}"
    );
    assert!(s["rate_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(s["eta_s"], 0);
    // The failures, a page at a time.
    let (got, f) = p.get(&format!("{url}/failures?limit=1"), VIEWER).await;
    assert_eq!(got, StatusCode::OK);
    assert_eq!(f["failures"][0]["card_number"], "4711000000000002");
    assert!(
        f["failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no card 4711000000000002"),
        "{f}"
    );
    assert_eq!(f["failures"][0]["attempts"], 1);
    assert_eq!(f["next_after"], "4711000000000002");
    let (_, f) = p
        .get(&format!("{url}/failures?after=4711000000000002"), VIEWER)
        .await;
    assert_eq!(f["failures"].as_array().unwrap().len(), 1, "{f}");
    assert_eq!(f["failures"][0]["card_number"], "4711000000000003");
    assert_eq!(f["next_after"], Value::Null);
    for q in ["limit=0", "limit=10001", "after=x", "limit=a"] {
        let (got, _) = p.get(&format!("{url}/failures?{q}"), OP).await;
        assert_eq!(got, StatusCode::BAD_REQUEST, "{q}");
    }
    // Retried as a sub-campaign of the two failed cards.
    let r = call(
        &p.app,
        Method::POST,
        &format!("{url}/retry"),
        None,
        Some(OP),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let sub = r.json()["campaign"].as_i64().unwrap();
    assert_eq!(r.json()["cards"], 2);
    let (_, s) = p.get(&format!("/api/v1/campaigns/{sub}"), OP).await;
    assert_eq!(
        (s["parent"].as_i64(), s["total"].as_u64()),
        (Some(id), Some(2))
    );

    // The tenant's list, newest first, a page at a time; another tenant sees none.
    let (_, l) = p.get("/api/v1/campaigns", VIEWER).await;
    let ids: Vec<i64> = l["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["campaign"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![sub, ranged, id]);
    let (_, l) = p.get("/api/v1/campaigns?limit=1", OP).await;
    assert_eq!(l["next_before"], sub);
    let (_, l) = p
        .get(&format!("/api/v1/campaigns?before={ranged}&limit=5"), OP)
        .await;
    assert_eq!(l["campaigns"][0]["campaign"], id);
    assert_eq!(l["next_before"], Value::Null);
    assert_eq!(
        p.get("/api/v1/campaigns", BANK).await.1["campaigns"],
        json!([])
    );
    assert_eq!(
        p.get("/api/v1/campaigns?limit=0", OP).await.0,
        StatusCode::BAD_REQUEST
    );
    // Cancelled for good.
    assert_eq!(
        p.steer(&format!("{url}/cancel"), OP).await.1["state"],
        "cancelled"
    );
    assert_eq!(
        p.steer(&format!("{url}/resume"), OP).await.0,
        StatusCode::CONFLICT
    );
    assert!(p.store.audit_verify().unwrap().is_ok());
}

/// The series of `cardwright_campaign_items` for campaign `id`, by state.
fn gauges(metrics: &Metrics, id: i64) -> Vec<(String, i64)> {
    let text = metrics.render().unwrap();
    let prefix = format!("cardwright_campaign_items{{campaign=\"{id}\",state=\"");
    let mut out: Vec<(String, i64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (state, value) = rest.split_once("\"} ")?;
            Some((state.to_string(), value.parse().ok()?))
        })
        .collect();
    out.sort();
    out
}

fn counter(metrics: &Metrics, name: &str) -> f64 {
    let text = metrics.render().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

#[test]
fn workers_write_on_virtual_cards_and_stop_cleanly() {
    let p = platform();
    let store = &p.store;
    let ci = tsm::Actor::new("issuer", "ops");
    let numbers = tsm::campaign::card_range("4711000000000100", "4711000000000129", 100).unwrap();
    let id = tsm::campaign::create(store, &ci, "gold", &numbers).unwrap();
    tsm::campaign::steer(store, &ci, id, "start").unwrap();
    let cards = tempfile::tempdir().unwrap();
    let workers = CampaignWorkers::start(
        p.issuer(),
        CardSource::Virtual {
            dir: Some(cards.path().to_path_buf()),
        },
        WorkerOptions {
            workers: 2,
            batch: 4,
            idle: Duration::from_millis(20),
            ..WorkerOptions::default()
        },
        p.metrics.clone(),
        &server::campaigns::node_name(),
    )
    .unwrap();
    wait_until("the campaign", Duration::from_secs(60), || {
        store.campaign_counts(id).unwrap().done == 30
    });
    assert_eq!(
        gauges(&p.metrics, id),
        [
            ("claimed".to_string(), 0),
            ("done".into(), 30),
            ("failed".into(), 0),
            ("pending".into(), 0)
        ]
    );
    assert_eq!(
        counter(&p.metrics, "cardwright_campaign_items_written_total"),
        30.0
    );
    assert_eq!(
        counter(&p.metrics, "cardwright_campaign_items_failed_total"),
        0.0
    );
    // The Prometheus text format parses, the campaign's series with their labels.
    let text = p.metrics.render_text().unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let done = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "cardwright_campaign_items"
                && s.labels.get("campaign") == Some(id.to_string().as_str())
                && s.labels.get("state") == Some("done")
        })
        .expect("the campaign's done items");
    assert!(matches!(done.value, prometheus_parse::Value::Gauge(v) if v == 30.0));
    // Each card is kept in the directory, written with its own number.
    let chan = card::VirtualChannel::new(
        card::VirtualCard::open(
            &cards.path().join("4711000000000117.json"),
            card::CardConfig::default(),
        )
        .unwrap(),
    );
    let mut client = gpclient::GpClient::new(transport::Traced::new(chan, None));
    let info = gpclient::ops::info(&mut client).unwrap();
    assert_eq!(
        info.kdd.as_deref(),
        Some(&kms::kdd_for_card_number("4711000000000117").unwrap()[..])
    );
    drop(client);
    // With nothing left, a worker marks the campaign finished.
    wait_until("finished", Duration::from_secs(10), || {
        store.campaign(id).unwrap().unwrap().state == tsm::campaign::State::Finished
    });
    // A stopped node gives back at once what it claimed and had not started.
    let more = tsm::campaign::card_range("4711000000000200", "4711000000000299", 100).unwrap();
    let second = tsm::campaign::create(store, &ci, "gold", &more).unwrap();
    tsm::campaign::steer(store, &ci, second, "start").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t = workers.stop().unwrap();
    assert!(t.done >= 30, "{t:?}");
    let c = store.campaign_counts(second).unwrap();
    assert_eq!(c.claimed, 0, "{c:?}");
    assert_eq!(c.pending + c.done, 100, "{c:?}");
    // A finished campaign stays in the metrics (for an hour); a cancelled one leaves them.
    assert_eq!(gauges(&p.metrics, id).len(), 4);
    assert_eq!(gauges(&p.metrics, second).len(), 4);
    tsm::campaign::steer(store, &ci, second, "cancel").unwrap();
    assert_eq!(gauges(&p.metrics, second), []);
    assert!(tsm::campaign::steer(store, &ci, id, "cancel").is_err());
}

/// A terminal with one reader whose card can be taken out and replaced.
struct Desk {
    card: Arc<Mutex<Option<card::VirtualChannel>>>,
}

impl relay::agent::Readers for Desk {
    fn list(&mut self) -> Vec<relay::protocol::ReaderReport> {
        let card = self.card.lock().unwrap();
        vec![relay::protocol::ReaderReport {
            name: "reader 0".into(),
            card_present: card.is_some(),
            atr: card.as_ref().map(|c| apdu::hex(&c.atr())),
        }]
    }
    fn transmit(
        &mut self,
        _reader: &str,
        capdu: &[u8],
    ) -> Result<Vec<u8>, relay::protocol::RelayFault> {
        let mut card = self.card.lock().unwrap();
        let card = card
            .as_mut()
            .ok_or(relay::protocol::RelayFault::CardRemoved)?;
        card.transmit_raw(capdu)
            .map_err(|e| relay::protocol::RelayFault::Other {
                message: e.to_string(),
            })
    }
    fn reset(&mut self, _reader: &str) -> Result<Vec<u8>, relay::protocol::RelayFault> {
        let mut card = self.card.lock().unwrap();
        let card = card
            .as_mut()
            .ok_or(relay::protocol::RelayFault::CardRemoved)?;
        card.reset()
            .map_err(|e| relay::protocol::RelayFault::Other {
                message: e.to_string(),
            })?;
        Ok(card.atr())
    }
}

#[test]
fn workers_write_the_cards_of_the_terminals_readers_once_each() {
    let p = platform();
    let store = p.store.clone();
    let rt = common::runtime();
    let url = common::serve_on(&rt, p.app.clone());

    let ci = tsm::Actor::new("issuer", "ops");
    let numbers = vec![
        "4711000000000301".to_string(),
        "4711000000000302".to_string(),
    ];
    let id = tsm::campaign::create(&store, &ci, "gold", &numbers).unwrap();
    tsm::campaign::steer(&store, &ci, id, "start").unwrap();
    let blank = || {
        Some(card::VirtualChannel::new(card::VirtualCard::new(
            card::CardConfig::default(),
        )))
    };
    let slot = Arc::new(Mutex::new(blank()));
    let first = slot.lock().unwrap().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let agent = {
        let (stop, card) = (stop.clone(), slot.clone());
        let cfg = relay::agent::AgentConfig {
            server: url,
            token: Some(DESK.into()),
            terminal: "desk".into(),
            poll: Duration::from_millis(20),
            retry: Duration::from_millis(50),
            tls: None,
        };
        std::thread::spawn(move || relay::agent::run(&cfg, &mut Desk { card }, &stop))
    };
    // No item is claimed while there is no terminal (nor any later while no card is free).
    let workers = CampaignWorkers::start(
        p.issuer(),
        CardSource::Terminals(p.api.hub().clone()),
        WorkerOptions {
            workers: 2,
            idle: Duration::from_millis(20),
            ..WorkerOptions::default()
        },
        p.metrics.clone(),
        "node-a",
    )
    .unwrap();
    wait_until("the first card", Duration::from_secs(30), || {
        store.campaign_counts(id).unwrap().done == 1
    });
    // The card in the reader was written once; the other item waits for another card.
    std::thread::sleep(Duration::from_millis(300));
    let c = store.campaign_counts(id).unwrap();
    assert_eq!(
        (c.done, c.pending, c.claimed, c.failed),
        (1, 1, 0, 0),
        "{c:?}"
    );
    assert!(counter(&p.metrics, "cardwright_apdus_total") > 0.0);
    // Another blank card goes in: it is written with the next number.
    *slot.lock().unwrap() = None;
    std::thread::sleep(Duration::from_millis(200));
    *slot.lock().unwrap() = blank();
    wait_until("the second card", Duration::from_secs(30), || {
        store.campaign_counts(id).unwrap().done == 2
    });
    workers.stop().unwrap();
    stop.store(true, Ordering::SeqCst);
    let _ = agent.join();
    // Each card carries the KDD of one campaign card number.
    let kdds: Vec<Vec<u8>> = [first, slot.lock().unwrap().clone()]
        .into_iter()
        .map(|c| {
            let mut client = gpclient::GpClient::new(transport::Traced::new(c.unwrap(), None));
            gpclient::ops::info(&mut client).unwrap().kdd.unwrap()
        })
        .collect();
    let mut want: Vec<Vec<u8>> = numbers
        .iter()
        .map(|n| kms::kdd_for_card_number(n).unwrap().to_vec())
        .collect();
    let mut got = kdds.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    for n in &numbers {
        assert_eq!(store.jobs_of_card(n).unwrap().len(), 1, "{n}");
    }
}
