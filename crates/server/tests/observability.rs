//! Observability of `cardwright serve`'s router, served on loopback: `/metrics` parses with a
//! Prometheus text-format parser (`prometheus-parse`) and its series move as an issuance job
//! runs on a virtual card lent by a terminal through the relay; request ids in headers,
//! error answers and the metrics of error codes; `/healthz`; `/readyz`, and its 503 when the
//! database (PostgreSQL, through a proxy that the test stops) no longer answers.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kms::{KeyStore, MasterKey, SoftwareKeyStore};
use relay::agent::{self, AgentConfig, Readers};
use relay::protocol::{ReaderReport, RelayFault};
use serde_json::{json, Value};
use server::auth::{Principal, Role, TokenTable};
use server::metrics::Metrics;
use server::observe::{Observability, Readiness};
use server::{ca_files, MemoryAudit, PayServer, ServerConfig, Stores};
use transport::CardChannel;
use tsm::model::Role as TenantRole;
use tsm::Store;

const BASE: &str = "00112233445566778899AABBCCDDEEFF";
const OPERATOR: &str = "alpha-operator-token-0123456789";
const TERMINAL: &str = "terminal-token-0123456789";
const READER: &str = "Reader 0";
const CARD: &str = "1000000001";

/// A terminal with one reader holding a virtual card.
struct SimReaders {
    card: card::VirtualChannel,
}

impl Readers for SimReaders {
    fn list(&mut self) -> Vec<ReaderReport> {
        vec![ReaderReport {
            name: READER.into(),
            card_present: true,
            atr: Some(apdu::hex(&self.card.atr())),
        }]
    }
    fn transmit(&mut self, reader: &str, capdu: &[u8]) -> Result<Vec<u8>, RelayFault> {
        if reader != READER {
            return Err(RelayFault::UnknownReader);
        }
        self.card
            .transmit_raw(capdu)
            .map_err(|e| RelayFault::Other {
                message: e.to_string(),
            })
    }
    fn reset(&mut self, _reader: &str) -> Result<Vec<u8>, RelayFault> {
        self.card.reset().map_err(|e| RelayFault::Other {
            message: e.to_string(),
        })?;
        Ok(self.card.atr())
    }
}

/// A terminal agent thread, stopped on drop.
struct Terminal {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_terminal(url: &str) -> Terminal {
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = AgentConfig {
        server: url.into(),
        token: Some(TERMINAL.into()),
        terminal: "desk-1".into(),
        poll: Duration::from_millis(20),
        retry: Duration::from_millis(50),
        tls: None,
    };
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut readers = SimReaders {
            card: card::VirtualChannel::with_config(card::CardConfig::default()),
        };
        let _ = agent::run(&cfg, &mut readers, &s);
    });
    Terminal {
        stop,
        thread: Some(thread),
    }
}

/// `app` served on a loopback port by its own runtime (dropped with it).
struct Served {
    url: String,
    _rt: tokio::runtime::Runtime,
}

fn serve(app: axum::Router) -> Served {
    let rt = common::runtime();
    let url = common::serve_on(&rt, app);
    Served { url, _rt: rt }
}

/// The issuing platform on SQLite: tenant `alpha`, category `alpha-gold` with a base key, an
/// operator and a terminal token; the payment service and the issuance API on one router,
/// observed.
struct Platform {
    served: Served,
    metrics: Arc<Metrics>,
    store: Store,
    _dir: tempfile::TempDir,
}

fn platform(metrics_token: Option<&str>) -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite:{}", dir.path().join("p.db").display())).unwrap();
    let keys: Arc<dyn KeyStore> = Arc::new(
        SoftwareKeyStore::create(dir.path().join("keys.json"), MasterKey::generate().unwrap())
            .unwrap(),
    );
    store
        .create_tenant("admin", "alpha", "alpha", TenantRole::CardIssuer)
        .unwrap();
    common::issuer::gp_test_key_category(&store, keys.as_ref(), "alpha", "alpha-gold", BASE);
    let mut tokens = TokenTable::new();
    tokens.add(
        OPERATOR,
        Principal {
            name: "op".into(),
            role: Role::Operator,
            tenant: Some("alpha".into()),
        },
    );
    tokens.add(
        TERMINAL,
        Principal {
            name: "desk-1".into(),
            role: Role::Terminal,
            tenant: None,
        },
    );
    let metrics = Arc::new(Metrics::new("9.9.9-test"));
    let issuer = Arc::new(tsm::Issuer::new(
        store.clone(),
        keys.clone(),
        tsm::IssuerConfig::default(),
    ));
    let issuance = server::issuance::IssuanceApi::with_metrics(
        issuer,
        tokens,
        Duration::from_secs(5),
        metrics.clone(),
    );
    let certificates = Arc::new(pki::MemoryStore::new());
    let ca = ca_files::ephemeral(
        "Test Payments CA",
        ca_files::CaKeyType::P256,
        certificates.clone(),
        Arc::new(pki::SystemClock),
    )
    .unwrap();
    let pay = Arc::new(PayServer::new(
        Arc::new(ca),
        Stores::all(certificates),
        Arc::new(MemoryAudit::default()),
        ServerConfig::default(),
    ));
    let obs = Observability {
        metrics: metrics.clone(),
        readiness: Readiness::new().database(store.clone()).keystore(
            "keystore",
            keys,
            metrics.clone(),
        ),
        metrics_token: metrics_token.map(|t| Arc::new(zeroize::Zeroizing::new(t.to_string()))),
    };
    let app = server::observe::instrument(server::app(pay, Some(issuance)), obs);
    Platform {
        served: serve(app),
        metrics,
        store,
        _dir: dir,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// An answer: status, `x-request-id`, body.
struct Answer {
    status: u16,
    request_id: Option<String>,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {} answered {:?}", self.status, self.body))
    }
}

fn request(method: &str, url: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Answer {
    let agent = agent();
    let mut r = match (method, body) {
        ("GET", _) => {
            let mut b = agent.get(url);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.call()
        }
        (_, body) => {
            let mut b = agent.post(url);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.header("content-type", "application/json")
                .send(body.unwrap_or(Value::Null).to_string())
        }
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Answer {
        status: r.status().as_u16(),
        request_id: header("x-request-id"),
        content_type: header("content-type").unwrap_or_default(),
        body: r.body_mut().read_to_string().unwrap(),
    }
}

/// `/metrics` in the Prometheus text format 0.0.4 (no `Accept`), parsed by
/// `prometheus-parse`; the same asked as OpenMetrics is checked to be that.
fn scrape(url: &str, headers: &[(&str, &str)]) -> prometheus_parse::Scrape {
    let a = request("GET", &format!("{url}/metrics"), None, headers);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!a.body.contains("# EOF"));
    let mut with_accept = headers.to_vec();
    with_accept.push((
        "accept",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    ));
    let om = request("GET", &format!("{url}/metrics"), None, &with_accept);
    assert_eq!(
        om.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.body.ends_with("# EOF\n"), "no EOF marker");
    prometheus_parse::Scrape::parse(a.body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `name` whose labels include `labels` (0 when there is none:
/// a series not yet created).
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value as V;
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            // The metadata types every counter (its `# TYPE` names the `_total` series).
            V::Counter(v) => *v,
            V::Untyped(_) if name.ends_with("_total") => panic!("{name}: not typed counter"),
            V::Gauge(v) | V::Untyped(v) => *v,
            V::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            V::Summary(_) => panic!("{name}: a summary"),
        })
        .sum()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_parse_and_move_as_a_job_runs() {
    let p = platform(None);
    let url = p.served.url.clone();
    let before = scrape(&url, &[]);
    assert_eq!(
        value(
            &before,
            "cardwright_build_info",
            &[("version", "9.9.9-test")]
        ),
        1.0
    );
    assert_eq!(value(&before, "cardwright_terminals_connected", &[]), 0.0);
    // The SQLite pool (default size 8) is reported.
    assert_eq!(value(&before, "cardwright_db_connections_max", &[]), 8.0);
    assert!(value(&before, "cardwright_db_connections", &[("state", "idle")]) >= 1.0);

    let _terminal = start_terminal(&url);
    wait_for("the terminal in /metrics", || {
        value(&scrape(&url, &[]), "cardwright_terminals_connected", &[]) == 1.0
    });
    let mid = scrape(&url, &[]);
    let auth = format!("Bearer {OPERATOR}");
    let a = request(
        "POST",
        &format!("{url}/api/v1/cards/{CARD}/write"),
        Some(json!({"terminal": "desk-1", "reader": READER, "category": "alpha-gold"})),
        &[("authorization", &auth)],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let outcome = a.json();
    assert_eq!(outcome["state"], "done");
    let apdus = outcome["apdus"].as_f64().unwrap();
    assert!(apdus > 0.0);

    let after = scrape(&url, &[]);
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&mid, name, labels)
    };
    assert_eq!(
        delta("cardwright_job_runs_total", &[("kind", "write")]),
        1.0
    );
    assert_eq!(
        delta(
            "cardwright_job_runs_ended_total",
            &[("kind", "write"), ("state", "done")]
        ),
        1.0
    );
    assert!(delta("cardwright_job_steps_total", &[("kind", "write")]) >= 1.0);
    // Every C-APDU of the job went through the relay and was counted and timed.
    assert_eq!(delta("cardwright_apdus_total", &[]), apdus);
    assert_eq!(
        delta("cardwright_card_exchange_duration_seconds_count", &[]),
        apdus
    );
    assert_eq!(
        delta(
            "cardwright_keystore_operation_duration_seconds_count",
            &[("operation", "derive")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "cardwright_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/v1/cards/:card_number/write"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "cardwright_http_request_duration_seconds_count",
            &[("route", "/api/v1/cards/:card_number/write")]
        ),
        1.0
    );
    // The histogram is typed as one and its +Inf bucket holds every observation.
    let card_hist = after
        .samples
        .iter()
        .find(|s| s.metric == "cardwright_card_exchange_duration_seconds")
        .expect("the card exchange histogram");
    match &card_hist.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let inf = buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .expect("+Inf bucket");
            assert_eq!(
                inf.count,
                value(
                    &after,
                    "cardwright_card_exchange_duration_seconds_count",
                    &[]
                )
            );
        }
        other => panic!("not a histogram: {other:?}"),
    }
    // The scrapes themselves are counted.
    assert!(
        value(
            &after,
            "cardwright_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        ) >= 2.0
    );
    assert!(p.metrics.render().is_ok());
    // Open jobs are read from the database at each scrape.
    assert_eq!(
        value(
            &after,
            "cardwright_jobs",
            &[("kind", "rewrite"), ("state", "pending")]
        ),
        0.0
    );
    p.store
        .create_job(&tsm::NewJob {
            tenant: "alpha".into(),
            actor: "alpha/op".into(),
            kind: tsm::model::JobKind::Rewrite,
            card_number: CARD.into(),
            params: json!({}),
            steps: vec!["put_key".into()],
        })
        .unwrap();
    let open = scrape(&url, &[]);
    assert_eq!(
        value(
            &open,
            "cardwright_jobs",
            &[("kind", "rewrite"), ("state", "pending")]
        ),
        1.0
    );
    promtool_check(&url);
}

/// `promtool check metrics` (Debian's `prometheus` package) on the text format, when it is
/// installed: it parses and lints (names, help, counter suffixes).
fn promtool_check(url: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: the exposition is checked by prometheus-parse only");
        return;
    };
    let text = request("GET", &format!("{url}/metrics"), None, &[]).body;
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn request_ids_in_headers_error_answers_and_metrics() {
    let p = platform(None);
    let url = p.served.url.clone();
    let auth = format!("Bearer {OPERATOR}");
    let before = scrape(&url, &[]);
    // An incoming valid id is kept, in the header and the error answer.
    let a = request(
        "GET",
        &format!("{url}/api/v1/cards/4000000004"),
        None,
        &[("authorization", &auth), ("x-request-id", "trace-42.a:b_c")],
    );
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(a.request_id.as_deref(), Some("trace-42.a:b_c"));
    let body = a.json();
    assert_eq!(body["error"], "not_found");
    assert_eq!(body["request_id"], "trace-42.a:b_c");
    // Without one (and with an invalid one) a new UUID is made.
    for headers in [
        vec![],
        vec![("x-request-id", "has space")],
        vec![("x-request-id", "{\"forged\":1}")],
    ] {
        let a = request("GET", &format!("{url}/api/v1/terminals"), None, &headers);
        assert_eq!(a.status, 401, "{}", a.body);
        let id = a.request_id.clone().expect("x-request-id");
        assert_eq!(id.len(), 36, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'));
        assert_eq!(a.json()["request_id"], id.as_str());
    }
    // Unknown routes and methods too.
    let a = request("GET", &format!("{url}/nowhere"), None, &[]);
    assert_eq!(a.status, 404);
    assert_eq!(
        a.json()["request_id"],
        a.request_id.clone().unwrap().as_str()
    );
    // Successful answers carry the header as well.
    let a = request("GET", &format!("{url}/healthz"), None, &[]);
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "ok");
    assert!(a.request_id.is_some());
    // Error codes are counted.
    let after = scrape(&url, &[]);
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        delta("cardwright_errors_total", &[("code", "not_found")]),
        2.0
    );
    assert_eq!(
        delta("cardwright_errors_total", &[("code", "unauthorized")]),
        3.0
    );
    assert_eq!(
        delta(
            "cardwright_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
}

#[test]
fn metrics_token_when_set() {
    let p = platform(Some("metrics-token-0123456789"));
    let url = p.served.url.clone();
    let a = request("GET", &format!("{url}/metrics"), None, &[]);
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["error"], "unauthorized");
    let a = request(
        "GET",
        &format!("{url}/metrics"),
        None,
        &[("authorization", "Bearer wrong-token-0123456789")],
    );
    assert_eq!(a.status, 401);
    let s = scrape(
        &url,
        &[("authorization", "Bearer metrics-token-0123456789")],
    );
    assert_eq!(
        value(&s, "cardwright_errors_total", &[("code", "unauthorized")]),
        2.0
    );
}

#[test]
fn healthz_and_readyz() {
    let p = platform(None);
    let url = p.served.url.clone();
    let a = request("GET", &format!("{url}/healthz"), None, &[]);
    assert_eq!((a.status, a.body.as_str()), (200, "ok"));
    let a = request("GET", &format!("{url}/readyz"), None, &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json(),
        json!({"status": "ready", "checks": ["database", "keystore"]})
    );
    let s = scrape(&url, &[]);
    assert_eq!(
        value(
            &s,
            "cardwright_keystore_operation_duration_seconds_count",
            &[("operation", "probe")]
        ),
        1.0
    );
}

/// A failing check answers 503 `not_ready` naming it, with the request id.
#[test]
fn readyz_names_the_failing_check() {
    let obs = Observability {
        metrics: Arc::default(),
        readiness: Readiness::new()
            .check("database", || Ok(()))
            .check("keystore", || Err("the token is not present".into())),
        metrics_token: None,
    };
    let served = serve(server::observe::instrument(
        server::finish(axum::Router::new()),
        obs,
    ));
    let a = request("GET", &format!("{}/readyz", served.url), None, &[]);
    assert_eq!(a.status, 503);
    let body = a.json();
    assert_eq!(body["error"], "not_ready");
    assert_eq!(body["reason"], "keystore: the token is not present");
    assert_eq!(body["request_id"], a.request_id.unwrap().as_str());
}

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A TCP proxy to `target` on its own runtime: dropping the runtime closes the listener and
/// every connection (the database "goes away").
fn proxy(target: std::net::SocketAddr) -> (std::net::SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, rt)
}

/// `/readyz` answers 200 while PostgreSQL answers, 503 once it stops (the proxy in front of
/// it is stopped: the pool's connections break and new ones are refused).
#[test]
fn readyz_503_when_postgres_stops_answering() {
    let url = std::env::var("CARDWRIGHT_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
    let required = std::env::var("CARDWRIGHT_PG_TESTS").is_ok_and(|v| v == "1");
    let config: postgres::Config = url.parse().unwrap();
    let mut admin = match config.connect(postgres::NoTls) {
        Ok(c) => c,
        Err(e) if required => panic!("CARDWRIGHT_PG_TESTS=1 but PostgreSQL at {url}: {e}"),
        Err(e) => {
            eprintln!("skipped: PostgreSQL at {url} not reachable ({e})");
            return;
        }
    };
    let target = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => {
            let port = config.get_ports().first().copied().unwrap_or(5432);
            std::net::ToSocketAddrs::to_socket_addrs(&(h.as_str(), port))
                .unwrap()
                .next()
                .unwrap()
        }
        _ => {
            assert!(!required, "{url}: a TCP host is needed for the proxy");
            eprintln!("skipped: {url} is not a TCP address");
            return;
        }
    };
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).unwrap();
    let schema = format!("obs_{}", apdu::hex(&suffix).to_lowercase());
    let (addr, proxy_rt) = proxy(target);
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or("postgres");
    let store = Store::open(&format!(
        "postgres://{user}@{addr}/{dbname}?schema={schema}&pool=2"
    ))
    .unwrap();
    let obs = Observability {
        metrics: Arc::default(),
        readiness: Readiness::new().database(store.clone()),
        metrics_token: None,
    };
    let served = serve(server::observe::instrument(
        server::finish(axum::Router::new()),
        obs,
    ));
    let ready = format!("{}/readyz", served.url);
    let a = request("GET", &ready, None, &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    proxy_rt.shutdown_timeout(Duration::from_secs(1));
    let t0 = Instant::now();
    let a = request("GET", &ready, None, &[]);
    let took = t0.elapsed();
    assert_eq!(a.status, 503, "{}", a.body);
    let body = a.json();
    assert_eq!(body["error"], "not_ready");
    assert!(
        body["reason"].as_str().unwrap().starts_with("database: "),
        "{body}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    // The server (and the store clone of its check) first: the last clone of a PostgreSQL
    // store must not be dropped on a runtime's thread (the sync client blocks to close).
    drop(served);
    drop(store);
    admin
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .unwrap();
}
