//! The metrics of `cardwright serve`, in one registry, served at `GET /metrics`
//! ([`crate::observe`]) in the OpenMetrics text format (OpenMetrics 1.0, which Prometheus
//! scrapes natively; `Content-Type: application/openmetrics-text; version=1.0.0`).
//!
//! The registry is the Prometheus project's own Rust client (`prometheus-client`): typed
//! label sets, no global state (each server, and each test, has its own [`Metrics`]), and
//! OpenMetrics encoding. The measurements are taken at the server layer: HTTP requests by
//! the observe middleware, jobs and card exchanges by the issuance API around
//! [`tsm::Issuer`] ([`MeteredChannel`]; the key store time of a job from its
//! [`tsm::Timing`]), CA signatures by [`TimedSigningStore`]; gauges (terminals, database
//! pool) are read from their sources at each scrape. The domain crates (`tsm`, `kms`) do not
//! depend on this crate.
//!
//! Series (all prefixed `cardwright_`):
//!
//! | series | type | labels |
//! |---|---|---|
//! | `build_info` | gauge (1) | `version` |
//! | `http_requests_total` | counter | `method`, `route` (template), `status` |
//! | `http_request_duration_seconds` | histogram | `method`, `route` |
//! | `errors_total` | counter | `code` (the `error` of the JSON error answer) |
//! | `job_runs_total` | counter | `kind` (a run of a job started: new or resumed) |
//! | `job_runs_ended_total` | counter | `kind`, `state` (the job's state after the run; `refused` when no job was touched) |
//! | `job_steps_total` | counter | `kind` (steps completed) |
//! | `apdus_total` | counter | (C-APDUs exchanged with cards) |
//! | `card_exchange_duration_seconds` | histogram | (one C-APDU / R-APDU round trip) |
//! | `keystore_operation_duration_seconds` | histogram | `operation` |
//! | `jobs` | gauge | `kind`, `state` (`pending`, `running`: the open jobs in the database) |
//! | `terminals_connected` | gauge | |
//! | `db_connections` | gauge | `state` (`in_use`, `idle`) |
//! | `db_connections_max` | gauge | |
//! | `campaign_items` | gauge | `campaign`, `state` (items of the running and paused campaigns, in the database) |
//! | `campaign_items_written_total` | counter | (campaign cards this node wrote, or found written) |
//! | `campaign_items_failed_total` | counter | (campaign cards that failed on this node) |
//!
//! The `campaign` label is only given to running and paused campaigns (a campaign's series
//! goes when it is cancelled), so that the number of series stays that of the campaigns in
//! progress.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use relay::hub::Hub;
use transport::{CardChannel, TransportError};

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of [`Metrics::render_text`]'s text.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobEndLabels {
    kind: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CampaignLabels {
    campaign: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// HTTP answers: 1 ms to about 33 s.
fn http_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Key store operations (an HSM round trip, a software derivation): 0.1 ms to about 3 s.
fn keystore_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Where the gauges are read at each scrape.
#[derive(Default)]
struct Sources {
    hubs: Vec<Arc<Hub>>,
    store: Option<tsm::Store>,
}

/// The registry and every series of the server. Share it in an `Arc`.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: HistogramFamily<RouteLabels>,
    errors: Family<CodeLabels, Counter>,
    job_runs: Family<KindLabels, Counter>,
    job_runs_ended: Family<JobEndLabels, Counter>,
    job_steps: Family<KindLabels, Counter>,
    apdus: Counter,
    card_seconds: Histogram,
    keystore_seconds: HistogramFamily<OperationLabels>,
    jobs_open: Family<JobEndLabels, Gauge>,
    /// The label sets of `jobs_open` ever set, so that a count that fell to none reads 0.
    jobs_seen: std::sync::Mutex<std::collections::HashSet<JobEndLabels>>,
    terminals: Gauge,
    db_connections: Family<PoolLabels, Gauge>,
    db_connections_max: Gauge,
    campaign_items_open: Family<CampaignLabels, Gauge>,
    /// Held while `campaign_items_open` is rebuilt, so that two scrapes do not interleave.
    campaign_rebuild: std::sync::Mutex<()>,
    campaign_written: Counter,
    campaign_failed: Counter,
    sources: RwLock<Sources>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(env!("CARGO_PKG_VERSION"))
    }
}

impl Metrics {
    /// Every series, registered; `version` goes in `cardwright_build_info`.
    pub fn new(version: &str) -> Self {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("cardwright");
        // A gauge of 1 rather than an OpenMetrics `info`: the Prometheus text format (and
        // `promtool check metrics`) knows no info type; `*_build_info` gauges are the usual
        // convention.
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: version.to_string(),
            })
            .set(1);
        r.register("build_info", "The running Cardwright (always 1)", build);
        let http_requests = Family::<HttpLabels, Counter>::default();
        r.register(
            "http_requests",
            "HTTP requests answered, by route template and status",
            http_requests.clone(),
        );
        let http_seconds = HistogramFamily::<RouteLabels>::new_with_constructor(http_histogram);
        r.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request (to the response head)",
            Unit::Seconds,
            http_seconds.clone(),
        );
        let errors = Family::<CodeLabels, Counter>::default();
        r.register(
            "errors",
            "JSON error answers, by error code",
            errors.clone(),
        );
        let job_runs = Family::<KindLabels, Counter>::default();
        r.register(
            "job_runs",
            "Runs of issuance jobs started through the API (new jobs and resumptions), by kind",
            job_runs.clone(),
        );
        let job_runs_ended = Family::<JobEndLabels, Counter>::default();
        r.register(
            "job_runs_ended",
            "Runs of issuance jobs ended, by kind and the job's state after the run (refused: no job was touched)",
            job_runs_ended.clone(),
        );
        let job_steps = Family::<KindLabels, Counter>::default();
        r.register(
            "job_steps",
            "Steps of issuance jobs completed, by job kind",
            job_steps.clone(),
        );
        let apdus = Counter::default();
        r.register(
            "apdus",
            "C-APDUs exchanged with cards in terminals' readers",
            apdus.clone(),
        );
        let card_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        r.register_with_unit(
            "card_exchange_duration",
            "One C-APDU / R-APDU round trip with a card (through the terminal relay)",
            Unit::Seconds,
            card_seconds.clone(),
        );
        let keystore_seconds =
            HistogramFamily::<OperationLabels>::new_with_constructor(keystore_histogram);
        r.register_with_unit(
            "keystore_operation_duration",
            "Key store (HSM) operations: sign (CA), derive (the key store time of one job run), probe (readiness)",
            Unit::Seconds,
            keystore_seconds.clone(),
        );
        let jobs_open = Family::<JobEndLabels, Gauge>::default();
        r.register(
            "jobs",
            "Open jobs in the database (pending: waiting or resumable; running: claimed), by kind and state",
            jobs_open.clone(),
        );
        let terminals = Gauge::default();
        r.register(
            "terminals_connected",
            "Issuing terminals connected to the relay",
            terminals.clone(),
        );
        let db_connections = Family::<PoolLabels, Gauge>::default();
        r.register(
            "db_connections",
            "Database pool connections, in use or idle",
            db_connections.clone(),
        );
        let db_connections_max = Gauge::default();
        r.register(
            "db_connections_max",
            "The most connections the database pool opens",
            db_connections_max.clone(),
        );
        let campaign_items_open = Family::<CampaignLabels, Gauge>::default();
        r.register(
            "campaign_items",
            "Items of the running and paused campaigns, by campaign and state (pending, claimed, done, failed)",
            campaign_items_open.clone(),
        );
        let campaign_written = Counter::default();
        r.register(
            "campaign_items_written",
            "Campaign cards this node wrote (or found written)",
            campaign_written.clone(),
        );
        let campaign_failed = Counter::default();
        r.register(
            "campaign_items_failed",
            "Campaign cards that failed on this node",
            campaign_failed.clone(),
        );
        Self {
            registry: root,
            http_requests,
            http_seconds,
            errors,
            job_runs,
            job_runs_ended,
            job_steps,
            apdus,
            card_seconds,
            keystore_seconds,
            jobs_open,
            jobs_seen: std::sync::Mutex::default(),
            terminals,
            db_connections,
            db_connections_max,
            campaign_items_open,
            campaign_rebuild: std::sync::Mutex::default(),
            campaign_written,
            campaign_failed,
            sources: RwLock::new(Sources::default()),
        }
    }

    /// Counts the terminals of `hub` in `cardwright_terminals_connected` (added once).
    pub fn watch_hub(&self, hub: &Arc<Hub>) {
        let mut s = self.sources.write().unwrap_or_else(|e| e.into_inner());
        if !s.hubs.iter().any(|h| Arc::ptr_eq(h, hub)) {
            s.hubs.push(hub.clone());
        }
    }

    /// Reports the connection pool of `store` in `cardwright_db_connections*`.
    pub fn watch_store(&self, store: &tsm::Store) {
        self.sources
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .store = Some(store.clone());
    }

    /// The whole exposition (OpenMetrics text, ending in `# EOF`), gauges read now (the open
    /// jobs with a query: call it off the async workers).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        {
            let s = self.sources.read().unwrap_or_else(|e| e.into_inner());
            let terminals: usize = s.hubs.iter().map(|h| h.terminals().len()).sum();
            self.terminals
                .set(i64::try_from(terminals).unwrap_or(i64::MAX));
            if let Some(store) = &s.store {
                let p = store.pool_state();
                let idle = i64::from(p.idle);
                let in_use = i64::from(p.connections.saturating_sub(p.idle));
                self.db_connections.get_or_create(&pool("idle")).set(idle);
                self.db_connections
                    .get_or_create(&pool("in_use"))
                    .set(in_use);
                self.db_connections_max.set(i64::from(p.max));
                match open_jobs(store) {
                    Ok(counts) => {
                        let mut seen = self.jobs_seen.lock().unwrap_or_else(|e| e.into_inner());
                        for labels in seen.iter() {
                            self.jobs_open.get_or_create(labels).set(0);
                        }
                        for (labels, n) in counts {
                            self.jobs_open.get_or_create(&labels).set(n);
                            seen.insert(labels);
                        }
                    }
                    // The scrape still answers (the pool gauges say more); /readyz tells.
                    Err(e) => tracing::debug!("metrics: counting the open jobs: {e}"),
                }
                self.read_campaigns(store);
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// The whole exposition in the Prometheus text format 0.0.4 (for clients that do not
    /// ask for OpenMetrics: `curl`, `promtool check metrics`, older scrapers).
    /// Like [`Metrics::render`], a query included.
    pub fn render_text(&self) -> Result<String, std::fmt::Error> {
        Ok(openmetrics_to_text(&self.render()?))
    }

    /// One HTTP answer.
    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.http_seconds
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// One JSON error answer with this code.
    pub fn error(&self, code: &str) {
        self.errors
            .get_or_create(&CodeLabels {
                code: code.to_string(),
            })
            .inc();
    }

    /// A run of a job of this kind begins.
    pub fn job_run_started(&self, kind: &str) {
        self.job_runs
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// A run of a job of this kind ended, leaving it in `state`; `steps` completed in it.
    pub fn job_run_ended(&self, kind: &str, state: &str, steps: u64) {
        self.job_runs_ended
            .get_or_create(&JobEndLabels {
                kind: kind.to_string(),
                state: state.to_string(),
            })
            .inc();
        if steps > 0 {
            self.job_steps
                .get_or_create(&KindLabels {
                    kind: kind.to_string(),
                })
                .inc_by(steps);
        }
    }

    /// A key store operation took `took`.
    pub fn keystore_operation(&self, operation: &str, took: Duration) {
        self.keystore_seconds
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Campaign cards this node wrote (`done`) and that failed on it (`failed`).
    pub fn campaign_items(&self, done: u64, failed: u64) {
        self.campaign_written.inc_by(done);
        self.campaign_failed.inc_by(failed);
    }

    /// Rebuilds `campaign_items` from the database: the running and paused campaigns only.
    fn read_campaigns(&self, store: &tsm::Store) {
        match store.active_campaign_counts() {
            Ok(all) => {
                let _g = self
                    .campaign_rebuild
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                self.campaign_items_open.clear();
                for (c, n) in all {
                    for (state, v) in [
                        ("pending", n.pending),
                        ("claimed", n.claimed),
                        ("done", n.done),
                        ("failed", n.failed),
                    ] {
                        self.campaign_items_open
                            .get_or_create(&CampaignLabels {
                                campaign: c.id.to_string(),
                                state: state.into(),
                            })
                            .set(i64::try_from(v).unwrap_or(i64::MAX));
                    }
                }
            }
            Err(e) => tracing::debug!("metrics: counting the campaign items: {e}"),
        }
    }

    /// One card exchange took `took`.
    pub fn card_exchange(&self, took: Duration) {
        self.apdus.inc();
        self.card_seconds.observe(took.as_secs_f64());
    }
}

/// OpenMetrics text as `prometheus-client` writes it → the Prometheus text format 0.0.4.
///
/// Written by hand because the client encodes OpenMetrics only. For the metric types this
/// registry uses (counters, gauges, classic histograms; no exemplars, no `info`), the two
/// differ only in metadata: a counter family is named without `_total` in OpenMetrics and
/// with it in 0.0.4, and 0.0.4 has no `# UNIT` nor `# EOF` lines. Sample lines are the same.
fn openmetrics_to_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?.split_once(' ')?)));
        match meta {
            Some((prefix, (name, rest))) if counters.contains(name) => {
                out.push_str(&format!("{prefix}{name}_total {rest}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// At most this many open jobs of a state are counted at a scrape (pages of 1,000).
const OPEN_JOBS_COUNTED: usize = 10_000;

/// The open (pending, running) jobs by kind and state.
fn open_jobs(
    store: &tsm::Store,
) -> Result<std::collections::HashMap<JobEndLabels, i64>, tsm::StoreError> {
    use tsm::model::JobState;
    let mut counts = std::collections::HashMap::new();
    for state in [JobState::Pending, JobState::Running] {
        let (mut after, mut seen) = (0, 0);
        loop {
            let page = store.jobs_in_state(state, after, 1000)?;
            for job in &page {
                *counts
                    .entry(JobEndLabels {
                        kind: job.kind.to_string(),
                        state: state.to_string(),
                    })
                    .or_insert(0) += 1;
            }
            seen += page.len();
            match page.last() {
                Some(last) if page.len() == 1000 && seen < OPEN_JOBS_COUNTED => after = last.id,
                _ => break,
            }
        }
    }
    Ok(counts)
}

fn pool(state: &str) -> PoolLabels {
    PoolLabels {
        state: state.to_string(),
    }
}

/// A card channel that counts its exchanges in [`Metrics`] and times them.
pub struct MeteredChannel<C> {
    inner: C,
    metrics: Arc<Metrics>,
}

impl<C> std::fmt::Debug for MeteredChannel<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredChannel").finish_non_exhaustive()
    }
}

impl<C> MeteredChannel<C> {
    /// `inner`, measured in `metrics`.
    pub fn new(inner: C, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl<C: CardChannel> CardChannel for MeteredChannel<C> {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let start = Instant::now();
        let r = self.inner.transmit_raw(capdu);
        self.metrics.card_exchange(start.elapsed());
        r
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.inner.reset()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

/// A signing key store whose keys' signatures are timed in [`Metrics`]
/// (`keystore_operation_duration_seconds{operation="sign"}`): the CA's key in an HSM.
#[derive(Debug)]
pub struct TimedSigningStore {
    inner: Box<dyn kms::SigningKeyStore>,
    metrics: Arc<Metrics>,
}

impl TimedSigningStore {
    /// `inner`, measured in `metrics`.
    pub fn new(inner: Box<dyn kms::SigningKeyStore>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl kms::SigningKeyStore for TimedSigningStore {
    fn create_signing_key(
        &self,
        label: &str,
        algorithm: kms::SigningAlgorithm,
    ) -> Result<Vec<u8>, kms::Error> {
        self.inner.create_signing_key(label, algorithm)
    }
    fn signing_key(&self, label: &str) -> Result<Box<dyn kms::SigningKey>, kms::Error> {
        Ok(Box::new(TimedSigningKey {
            inner: self.inner.signing_key(label)?,
            metrics: self.metrics.clone(),
        }))
    }
    fn signing_key_labels(&self) -> Result<Vec<String>, kms::Error> {
        self.inner.signing_key_labels()
    }
}

#[derive(Debug)]
struct TimedSigningKey {
    inner: Box<dyn kms::SigningKey>,
    metrics: Arc<Metrics>,
}

impl TimedSigningKey {
    fn timed<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let v = f();
        self.metrics.keystore_operation("sign", start.elapsed());
        v
    }
}

impl kms::SigningKey for TimedSigningKey {
    fn label(&self) -> &str {
        self.inner.label()
    }
    fn algorithm(&self) -> kms::SigningAlgorithm {
        self.inner.algorithm()
    }
    fn public_key_spki(&self) -> &[u8] {
        self.inner.public_key_spki()
    }
    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, kms::Error> {
        self.timed(|| self.inner.sign_sha256(message))
    }
    fn sign_pss_sha256(&self, message: &[u8]) -> Result<Vec<u8>, kms::Error> {
        self.timed(|| self.inner.sign_pss_sha256(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_and_moves() {
        let m = Metrics::new("1.2.3");
        m.http_request("GET", "/x", 200, Duration::from_millis(3));
        m.error("not_found");
        m.job_run_started("write");
        m.job_run_ended("write", "done", 4);
        m.keystore_operation("sign", Duration::from_micros(300));
        m.card_exchange(Duration::from_millis(2));
        let text = m.render().unwrap();
        for line in [
            "cardwright_build_info{version=\"1.2.3\"} 1",
            "cardwright_http_requests_total{method=\"GET\",route=\"/x\",status=\"200\"} 1",
            "cardwright_errors_total{code=\"not_found\"} 1",
            "cardwright_job_runs_total{kind=\"write\"} 1",
            "cardwright_job_runs_ended_total{kind=\"write\",state=\"done\"} 1",
            "cardwright_job_steps_total{kind=\"write\"} 4",
            "cardwright_apdus_total 1",
            "cardwright_card_exchange_duration_seconds_count 1",
            "cardwright_keystore_operation_duration_seconds_count{operation=\"sign\"} 1",
            "cardwright_terminals_connected 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        let plain = m.render_text().unwrap();
        assert!(plain.contains("# TYPE cardwright_apdus_total counter\n"));
        assert!(plain.contains("# HELP cardwright_apdus_total C-APDUs"));
        assert!(plain.contains("# TYPE cardwright_card_exchange_duration_seconds histogram\n"));
        assert!(!plain.contains("# EOF") && !plain.contains("# UNIT"));
        assert_eq!(
            plain.lines().filter(|l| !l.starts_with('#')).count(),
            text.lines().filter(|l| !l.starts_with('#')).count()
        );
    }
}
