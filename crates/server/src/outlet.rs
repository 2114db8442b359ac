//! The outlet's page (`cardwright outlet serve`): the catalog of the outlet security module
//! ([`Module`]) in the terminal's ordinary browser, the reader and the card in it live, and
//! one click that installs and registers an application on the card, with a progress bar
//! of LOAD blocks, then the registration result (certificate subjects, key check values) or
//! the failure in the clerk's words of [`InstallError`].
//!
//! The page can put applications on a customer's card, so only the page itself, in this
//! terminal's browser, may use it:
//! * it listens on a loopback address only ([`loopback_listen_addr`]);
//! * it answers only requests whose `Host` is the loopback address or `localhost` with the
//!   port it listens on (against DNS rebinding): any other Host is `403 forbidden_host`;
//! * a request with an `Origin` other than its own (`http://` and the Host) is
//!   `403 forbidden_origin`, a state-changing request without `Origin` `403 missing_origin`;
//!   it sends no CORS headers, so no other origin reads an answer;
//! * a state-changing request carries the session's CSRF token in `X-CSRF-Token`: `GET /`
//!   sets a session cookie (`HttpOnly; SameSite=Strict`, named after the port) and puts a
//!   random token bound to that session in the page; the token is compared in constant time
//!   (`subtle`); a missing cookie, an unknown session or a wrong token is `403 csrf`.
//!
//! It never contacts the platform: everything it shows comes from the module and the card.
//!
//! | endpoint | does |
//! |---|---|
//! | `GET /` | the page (and the session cookie) |
//! | `GET /outlet.js`, `GET /outlet.css` | its script and style |
//! | `GET /api/catalog` | `{applications: [{name, title, version, provider, size, …}]}` |
//! | `GET /api/state` | `{reader, card, job, pending}`: the card, the install running or last finished, interrupted installs |
//! | `POST /api/install` | `{application}` → `202` and the job; the install runs in the background |
//! | `POST /api/resume` | finishes or rolls back an interrupted install on the card (`202`) |
//!
//! Every error answers `{"error", "reason"}` ([`ApiError`]).

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::outlet::{CardState, CatalogEntry, InstallError, InstallOutcome, Module, Progress};
use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use transport::{CardChannel, TransportError};

use crate::error::ApiError;
use crate::extract;

const OUTLET_HTML: &str = include_str!("../pages/outlet.html");
const OUTLET_JS: &str = include_str!("../pages/outlet.js");
const OUTLET_CSS: &str = include_str!("../pages/outlet.css");

/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session (and its CSRF token) lives.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest goes first): one browser needs one.
const MAX_SESSIONS: usize = 256;

/// Where the page finds the card: one reader, opened for each operation.
pub trait CardSource: Send + Sync + 'static {
    /// The reader's name, for the page.
    fn reader(&self) -> String;
    /// Whether a card is in the reader (without talking to the card).
    fn present(&self) -> Result<bool, TransportError>;
    /// Connects to the card in the reader.
    fn open(&self) -> Result<Box<dyn CardChannel>, TransportError>;
}

/// Why `--listen` is refused.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Not `HOST:PORT`, or a host name that does not resolve.
    #[error("--listen {0}: expected a loopback HOST:PORT such as 127.0.0.1:7070 ({1})")]
    Invalid(String, String),
    /// A non-loopback address: the page would be reachable from the network.
    #[error("--listen {0}: the outlet page installs applications on the customer's card, so it listens on a loopback address only (127.0.0.1, [::1] or localhost), not {1}")]
    NotLoopback(String, std::net::IpAddr),
}

/// The address to bind for `--listen`: a loopback address (or `localhost`), else an error.
pub fn loopback_listen_addr(listen: &str) -> Result<SocketAddr, ListenError> {
    let addrs: Vec<SocketAddr> = match listen.parse::<SocketAddr>() {
        Ok(a) => vec![a],
        Err(_) => listen
            .to_socket_addrs()
            .map_err(|e| ListenError::Invalid(listen.into(), e.to_string()))?
            .collect(),
    };
    if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(ListenError::NotLoopback(listen.into(), a.ip()));
    }
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| ListenError::Invalid(listen.into(), "no address".into()))
}

// ---------------------------------------------------------------------------------------
// Sessions and CSRF tokens
// ---------------------------------------------------------------------------------------

/// `n` random bytes, hex.
fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a session");
        ApiError::internal("the random number generator")
    })?;
    Ok(apdu::hex(&b))
}

struct Session {
    csrf: String,
    created: Instant,
}

/// The page's sessions: a random id (the cookie) → its CSRF token.
struct Sessions {
    cookie: String,
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn new(port: u16) -> Self {
        Self {
            // Cookies are per host, not per port: the port in the name keeps two outlets
            // (or the card holder's agent) on one machine apart.
            cookie: format!("cw_outlet_{port}"),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session id the request's cookie names (RFC 6265 `Cookie` header).
    fn cookie_of(&self, headers: &HeaderMap) -> Option<String> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == self.cookie)
            .map(|c| c.value().to_string())
    }

    /// The CSRF token of the request's live session.
    fn csrf_of(&self, headers: &HeaderMap) -> Option<String> {
        let id = self.cookie_of(headers)?;
        let map = self.lock();
        map.get(&id)
            .filter(|s| s.created.elapsed() < SESSION_TTL)
            .map(|s| s.csrf.clone())
    }

    /// The request's session if live, else a new one: (CSRF token, `Set-Cookie` value for a
    /// new session).
    fn session_for(&self, headers: &HeaderMap) -> Result<(String, Option<String>), ApiError> {
        if let Some(csrf) = self.csrf_of(headers) {
            return Ok((csrf, None));
        }
        let id = random_hex(32)?;
        let csrf = random_hex(32)?;
        let mut map = self.lock();
        map.retain(|_, s| s.created.elapsed() < SESSION_TTL);
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                created: Instant::now(),
            },
        );
        let set = cookie::Cookie::build((self.cookie.clone(), id))
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Strict)
            .max_age(cookie::time::Duration::seconds(SESSION_TTL.as_secs() as i64))
            .build()
            .to_string();
        Ok((csrf, Some(set)))
    }
}

// ---------------------------------------------------------------------------------------
// The guard: Host, Origin, CSRF
// ---------------------------------------------------------------------------------------

struct Guard {
    /// `Host` values answered: the loopback addresses and `localhost`, with the port.
    hosts: Vec<String>,
    sessions: Arc<Sessions>,
}

impl Guard {
    fn new(addr: SocketAddr, sessions: Arc<Sessions>) -> Self {
        let port = addr.port();
        let mut hosts = Vec::new();
        for h in ["127.0.0.1", "localhost", "[::1]"] {
            hosts.push(format!("{h}:{port}"));
            if port == 80 {
                hosts.push(h.to_string());
            }
        }
        Self { hosts, sessions }
    }

    /// Whether the request may go on; the refusal otherwise.
    fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                format!("Host '{host}' is not this outlet's loopback address"),
            ));
        }
        let own_origin = format!("http://{host}");
        let origin = match headers.get(header::ORIGIN) {
            None => None,
            Some(o) => Some(o.to_str().map_err(|_| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden_origin",
                    "unreadable Origin header",
                )
            })?),
        };
        if let Some(o) = origin {
            if !o.eq_ignore_ascii_case(&own_origin) {
                tracing::warn!(origin = %o, "refused a request from a foreign origin");
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden_origin",
                    format!(
                        "origin {o} may not use this outlet: only its own page ({own_origin}) may"
                    ),
                ));
            }
        }
        if method == Method::GET || method == Method::HEAD {
            return Ok(());
        }
        if origin.is_none() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "missing_origin",
                "a request that changes something must come from the outlet's page (no Origin header)",
            ));
        }
        let sent = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes);
        let expected = self.sessions.csrf_of(headers);
        let ok = match (sent, &expected) {
            (Some(s), Some(e)) => bool::from(s.ct_eq(e.as_bytes())),
            _ => false,
        };
        if !ok {
            let why = match (sent, expected) {
                (_, None) => "no session: reload the page",
                (None, Some(_)) => "the request carries no CSRF token: reload the page",
                (Some(_), Some(_)) => "wrong CSRF token: reload the page",
            };
            return Err(ApiError::new(StatusCode::FORBIDDEN, "csrf", why));
        }
        Ok(())
    }
}

/// Host, Origin and CSRF checks in front of every route (module documentation).
async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    if let Err(e) = g.check(req.method(), req.headers()) {
        return e.into_response();
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

// ---------------------------------------------------------------------------------------
// The page's state: the card and the install job
// ---------------------------------------------------------------------------------------

/// What a finished registration shows (from [`::outlet::RegisteredKey`]).
#[derive(Debug, Clone, Serialize)]
pub struct RegistrationView {
    /// The recipe's key id.
    pub id: String,
    /// `ec-p256`, `aes-128`, `aes-256`.
    pub kind: String,
    /// For an on-card key pair: the subject of the certificate the module issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Its issuer (the module's CA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Its serial number, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The certificate (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// For a symmetric key: its key check value, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kcv: Option<String>,
}

/// A finished install, as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OutcomeView {
    /// The application.
    pub application: String,
    /// The card.
    pub card: String,
    /// The instance AID, hex.
    pub instance: String,
    /// C-APDUs sent.
    pub apdus: u64,
    /// LOAD blocks.
    pub blocks: usize,
    /// The registered keys.
    pub registration: Vec<RegistrationView>,
    /// The install record's number.
    pub record: u64,
}

impl From<InstallOutcome> for OutcomeView {
    fn from(o: InstallOutcome) -> Self {
        let registration = o
            .registration
            .into_iter()
            .map(|k| {
                let cert = k.certificate_pem.as_deref().and_then(|pem| {
                    crate::ca_files::pem_decode(pem, "CERTIFICATE")
                        .ok()
                        .and_then(|der| pki::Certificate::from_der(&der).ok())
                });
                RegistrationView {
                    id: k.id,
                    kind: k.kind,
                    subject: cert.as_ref().map(pki::Certificate::subject),
                    issuer: cert.as_ref().map(pki::Certificate::issuer),
                    serial: cert
                        .as_ref()
                        .and_then(pki::Certificate::serial)
                        .map(|s| s.to_string()),
                    certificate_pem: k.certificate_pem,
                    kcv: k.kcv,
                }
            })
            .collect();
        Self {
            application: o.application,
            card: o.card,
            instance: o.instance,
            apdus: o.apdus,
            blocks: o.blocks,
            registration,
            record: o.record,
        }
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Install (and register) an application.
    Install,
    /// Finish or roll back an interrupted install.
    Resume,
}

/// The install running or last finished (`GET /api/state`'s `job`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Job {
    /// Nothing has run since the page started.
    Idle,
    /// Running.
    Running {
        /// The job's number.
        id: u64,
        /// What it does.
        action: Action,
        /// The application (installs).
        #[serde(skip_serializing_if = "Option::is_none")]
        application: Option<String>,
        /// How far it is.
        #[serde(skip_serializing_if = "Option::is_none")]
        progress: Option<Progress>,
    },
    /// Installed and registered (also a resume that finished an install).
    Installed {
        /// The job's number.
        id: u64,
        /// What it did.
        action: Action,
        /// The result.
        outcome: OutcomeView,
    },
    /// A resume that found nothing to finish, or rolled an install back.
    Resumed {
        /// The job's number.
        id: u64,
    },
    /// Failed.
    Failed {
        /// The job's number.
        id: u64,
        /// What it tried.
        action: Action,
        /// The application (installs).
        #[serde(skip_serializing_if = "Option::is_none")]
        application: Option<String>,
        /// `card_full`, `already_present`, `wrong_card`, `card_removed`, `no_card`,
        /// `package_tampered`, `unknown_application`, `reader_error`, `error`.
        error: String,
        /// The clerk's words.
        reason: String,
    },
}

impl Job {
    fn running(&self) -> bool {
        matches!(self, Job::Running { .. })
    }
}

/// The card as `GET /api/state` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CardView {
    /// `absent`, `ready` (the module holds its keys), `foreign` (it does not),
    /// `reader_error`.
    pub status: &'static str,
    /// The module's view of the card.
    #[serde(flatten)]
    pub state: CardState,
    /// Why, for `reader_error` and `foreign`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /api/state` answer.
#[derive(Debug, Clone, Serialize)]
pub struct StateBody {
    /// The reader.
    pub reader: String,
    /// The card in it.
    pub card: CardView,
    /// The install running or last finished.
    pub job: Job,
    /// Installs a pulled card interrupted (the next click or `POST /api/resume` finishes
    /// or rolls them back).
    pub pending: Vec<::outlet::PendingInstall>,
}

/// `GET /api/catalog` answer.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogBody {
    /// The applications the module holds.
    pub applications: Vec<CatalogEntry>,
}

/// The last card seen: presence, and the module's view of it for that presence.
#[derive(Default)]
struct Live {
    present: Option<bool>,
    card: Option<CardView>,
}

/// The page's state.
struct Outlet {
    module: Arc<Module>,
    card: Arc<dyn CardSource>,
    sessions: Arc<Sessions>,
    /// One card operation at a time.
    card_lock: Mutex<()>,
    live: Mutex<Live>,
    job: Mutex<Job>,
    next_job: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A failed card connection in the clerk's words.
fn transport_failure(e: &TransportError) -> (&'static str, String) {
    match e {
        TransportError::NoCard(_) => ("no_card", InstallError::NoCard.to_string()),
        TransportError::CardRemoved => ("card_removed", InstallError::CardRemoved.to_string()),
        other => (
            "reader_error",
            format!("the reader does not answer: {other}"),
        ),
    }
}

impl Outlet {
    fn absent(&self, status: &'static str, reason: Option<String>) -> CardView {
        CardView {
            status,
            state: CardState {
                reader: self.card.reader(),
                present: false,
                known: false,
                card: None,
            },
            reason,
        }
    }

    /// The card now: presence from the reader; the module's view of a card (INITIALIZE
    /// UPDATE, no authentication) only when it was just inserted or after an install, not
    /// at every poll. While a card operation runs, the last view.
    fn card_view(&self) -> CardView {
        let Ok(_card) = self.card_lock.try_lock() else {
            return self.cached_view();
        };
        let present = match self.card.present() {
            Ok(p) => p,
            Err(e) => {
                let view = self.absent("reader_error", Some(transport_failure(&e).1));
                *lock(&self.live) = Live::default();
                return view;
            }
        };
        {
            let live = lock(&self.live);
            if live.present == Some(present) {
                if let Some(v) = &live.card {
                    return v.clone();
                }
            }
        }
        let view = if present {
            match self.card.open() {
                Ok(mut chan) => {
                    let state = self.module.card_state(&mut chan);
                    let (status, reason) = match (state.present, state.known) {
                        (false, _) => ("absent", None),
                        (true, true) => ("ready", None),
                        (true, false) => (
                            "foreign",
                            Some(
                                "this card cannot be served here: the module holds no keys for it"
                                    .to_string(),
                            ),
                        ),
                    };
                    CardView {
                        status,
                        state,
                        reason,
                    }
                }
                Err(TransportError::NoCard(_)) | Err(TransportError::CardRemoved) => {
                    self.absent("absent", None)
                }
                Err(e) => self.absent("reader_error", Some(transport_failure(&e).1)),
            }
        } else {
            self.absent("absent", None)
        };
        *lock(&self.live) = Live {
            present: Some(present),
            card: Some(view.clone()),
        };
        view
    }

    fn cached_view(&self) -> CardView {
        lock(&self.live)
            .card
            .clone()
            .unwrap_or_else(|| self.absent("absent", None))
    }

    /// Starts a job unless one runs (`409 busy`).
    fn start(&self, action: Action, application: Option<String>) -> Result<(u64, Job), ApiError> {
        let mut job = lock(&self.job);
        if job.running() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "busy",
                "an install is running on the card: wait for it to finish",
            ));
        }
        let id = {
            let mut n = lock(&self.next_job);
            *n += 1;
            *n
        };
        *job = Job::Running {
            id,
            action,
            application,
            progress: None,
        };
        Ok((id, job.clone()))
    }

    fn progress(&self, id: u64, p: Progress) {
        if let Job::Running {
            id: running,
            progress,
            ..
        } = &mut *lock(&self.job)
        {
            if *running == id {
                *progress = Some(p);
            }
        }
    }

    /// Runs a job on the card (blocking): `work` gets the channel and the progress sink.
    fn run(
        &self,
        id: u64,
        action: Action,
        application: Option<String>,
        work: impl FnOnce(
            &Module,
            &mut Box<dyn CardChannel>,
            &mut dyn FnMut(Progress),
        ) -> Result<Option<InstallOutcome>, InstallError>,
    ) {
        let failed = |error: &str, reason: String| Job::Failed {
            id,
            action,
            application: application.clone(),
            error: error.into(),
            reason,
        };
        let done = {
            let _card = lock(&self.card_lock);
            match self.card.open() {
                Err(e) => {
                    let (code, reason) = transport_failure(&e);
                    failed(code, reason)
                }
                Ok(mut chan) => {
                    let mut sink = |p: Progress| self.progress(id, p);
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        work(&self.module, &mut chan, &mut sink)
                    }));
                    match result {
                        Ok(Ok(Some(outcome))) => {
                            tracing::info!(
                                application = %outcome.application,
                                card = %outcome.card,
                                instance = %outcome.instance,
                                apdus = outcome.apdus,
                                blocks = outcome.blocks,
                                record = outcome.record,
                                "installed"
                            );
                            Job::Installed {
                                id,
                                action,
                                outcome: outcome.into(),
                            }
                        }
                        Ok(Ok(None)) => Job::Resumed { id },
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, code = e.code(), ?action, "install failed");
                            failed(e.code(), e.to_string())
                        }
                        Err(_) => {
                            tracing::error!(?action, "the install panicked");
                            failed(
                                "error",
                                "the module failed unexpectedly; see its log".to_string(),
                            )
                        }
                    }
                }
            }
        };
        // The card may have changed (pulled, or another one): look again at the next poll.
        *lock(&self.live) = Live::default();
        *lock(&self.job) = done;
    }
}

// ---------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------

/// `GET /`: the page, with the session's CSRF token.
async fn page(State(o): State<Arc<Outlet>>, headers: HeaderMap) -> Response {
    let (csrf, set_cookie) = match o.sessions.session_for(&headers) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let html = OUTLET_HTML
        .replace("{{CSRF_TOKEN}}", &csrf)
        .replace("{{READER}}", &crate::pages::escape_attr(&o.card.reader()));
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let h = r.headers_mut();
    h.extend(crate::pages::page_headers(None));
    if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    r
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn outlet_js() -> Response {
    asset("text/javascript; charset=utf-8", OUTLET_JS)
}

async fn outlet_css() -> Response {
    asset("text/css; charset=utf-8", OUTLET_CSS)
}

/// A module failure: logged, `500` without detail.
fn module_error(e: ::outlet::Error) -> ApiError {
    tracing::error!(error = %e, "outlet module");
    ApiError::internal("the security module")
}

async fn catalog(State(o): State<Arc<Outlet>>) -> Result<Json<CatalogBody>, ApiError> {
    let module = o.module.clone();
    let applications = tokio::task::spawn_blocking(move || module.catalog())
        .await
        .map_err(|_| ApiError::internal("a worker"))?
        .map_err(module_error)?;
    Ok(Json(CatalogBody { applications }))
}

async fn state(State(o): State<Arc<Outlet>>) -> Result<Json<StateBody>, ApiError> {
    tokio::task::spawn_blocking(move || {
        let card = o.card_view();
        let pending = o.module.pending().map_err(module_error)?;
        Ok(Json(StateBody {
            reader: o.card.reader(),
            card,
            job: lock(&o.job).clone(),
            pending,
        }))
    })
    .await
    .map_err(|_| ApiError::internal("a worker"))?
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallBody {
    application: String,
}

async fn install(
    State(o): State<Arc<Outlet>>,
    extract::Json(b): extract::Json<InstallBody>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let application = b.application;
    let module = o.module.clone();
    let name = application.clone();
    let known = tokio::task::spawn_blocking(move || module.catalog())
        .await
        .map_err(|_| ApiError::internal("a worker"))?
        .map_err(module_error)?
        .iter()
        .any(|e| e.name == name);
    if !known {
        let e = InstallError::UnknownApplication(application);
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            e.code(),
            e.to_string(),
        ));
    }
    let (id, job) = o.start(Action::Install, Some(application.clone()))?;
    tracing::info!(%application, job = id, "install requested");
    tokio::task::spawn_blocking(move || {
        let app = application.clone();
        o.run(id, Action::Install, Some(application), |m, chan, sink| {
            m.install(chan, &app, sink).map(Some)
        });
    });
    Ok((StatusCode::ACCEPTED, Json(job)))
}

async fn resume(State(o): State<Arc<Outlet>>) -> Result<(StatusCode, Json<Job>), ApiError> {
    let (id, job) = o.start(Action::Resume, None)?;
    tracing::info!(job = id, "resume requested");
    tokio::task::spawn_blocking(move || {
        o.run(id, Action::Resume, None, |m, chan, sink| {
            m.resume(chan, sink)
        });
    });
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// The outlet page's routes for `module` and the card in `card`, listening on `addr` (a
/// loopback address, see [`loopback_listen_addr`]: only `Host` headers naming it are
/// answered), behind the Host, Origin and CSRF guard.
pub fn router(module: Arc<Module>, card: Arc<dyn CardSource>, addr: SocketAddr) -> Router {
    let sessions = Arc::new(Sessions::new(addr.port()));
    let guard_state = Arc::new(Guard::new(addr, sessions.clone()));
    let outlet = Arc::new(Outlet {
        module,
        card,
        sessions,
        card_lock: Mutex::new(()),
        live: Mutex::new(Live::default()),
        job: Mutex::new(Job::Idle),
        next_job: Mutex::new(0),
    });
    crate::finish(
        Router::new()
            .route("/", get(page))
            .route("/outlet.js", get(outlet_js))
            .route("/outlet.css", get(outlet_css))
            .route("/favicon.ico", get(crate::pages::favicon))
            .route("/api/catalog", get(catalog))
            .route("/api/state", get(state))
            .route("/api/install", post(install))
            .route("/api/resume", post(resume))
            .with_state(outlet),
    )
    .layer(middleware::from_fn_with_state(guard_state, guard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    const ADDR: &str = "127.0.0.1:7070";

    /// The guard in front of routes that answer `ok`, and a page route that opens a session
    /// like `GET /` does: what the guard lets through reaches them.
    fn guarded() -> Router {
        let addr: SocketAddr = ADDR.parse().unwrap();
        let sessions = Arc::new(Sessions::new(addr.port()));
        let g = Arc::new(Guard::new(addr, sessions.clone()));
        Router::new()
            .route(
                "/",
                get(move |headers: HeaderMap| {
                    let sessions = sessions.clone();
                    async move {
                        let (csrf, set) = sessions.session_for(&headers).unwrap();
                        let mut r = csrf.into_response();
                        if let Some(c) = set {
                            r.headers_mut()
                                .insert(header::SET_COOKIE, HeaderValue::from_str(&c).unwrap());
                        }
                        r
                    }
                }),
            )
            .route("/api/state", get(|| async { "ok" }))
            .route("/api/install", post(|| async { "ok" }))
            .layer(middleware::from_fn_with_state(g, guard))
    }

    async fn send(app: &Router, req: axum::http::Request<Body>) -> (StatusCode, String, HeaderMap) {
        let r = app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned(), headers)
    }

    fn get_req(uri: &str, host: &str) -> axum::http::Request<Body> {
        axum::http::Request::get(uri)
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap()
    }

    /// A session from `GET /`: (cookie header value, CSRF token).
    async fn session(app: &Router) -> (String, String) {
        let (s, csrf, h) = send(app, get_req("/", ADDR)).await;
        assert_eq!(s, StatusCode::OK);
        let set = h
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(set.starts_with("cw_outlet_7070="), "{set}");
        assert!(set.contains("HttpOnly"), "{set}");
        assert!(set.contains("SameSite=Strict"), "{set}");
        assert!(set.contains("Path=/"), "{set}");
        let cookie = set.split(';').next().unwrap().to_string();
        (cookie, csrf)
    }

    fn post_req(
        host: &str,
        origin: Option<&str>,
        cookie: Option<&str>,
        csrf: Option<&str>,
    ) -> axum::http::Request<Body> {
        let mut b = axum::http::Request::post("/api/install").header(header::HOST, host);
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        if let Some(t) = csrf {
            b = b.header(CSRF_HEADER, t);
        }
        b.header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"application":"wallet"}"#))
            .unwrap()
    }

    fn error_code(body: &str) -> String {
        let v: crate::ErrorBody = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("not the JSON error shape ({e}): {body}"));
        assert!(!v.reason.is_empty());
        v.error
    }

    #[tokio::test]
    async fn a_page_request_with_its_session_and_token_passes() {
        let app = guarded();
        let (cookie, csrf) = session(&app).await;
        assert_eq!(csrf.len(), 64);
        let (s, body, h) = send(
            &app,
            post_req(
                ADDR,
                Some("http://127.0.0.1:7070"),
                Some(&cookie),
                Some(&csrf),
            ),
        )
        .await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "ok"));
        assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "no-store");
        assert!(
            !h.keys().any(|k| k.as_str().starts_with("access-control-")),
            "no CORS headers: {h:?}"
        );
        // localhost with the port is the same page under its other name.
        let (s, _, _) = send(
            &app,
            post_req(
                "localhost:7070",
                Some("http://localhost:7070"),
                Some(&cookie),
                Some(&csrf),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        // The same session keeps its token on reload.
        let mut again = get_req("/", ADDR);
        again
            .headers_mut()
            .insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        let (_, csrf2, h2) = send(&app, again).await;
        assert_eq!(csrf2, csrf);
        assert!(h2.get(header::SET_COOKIE).is_none());
    }

    #[tokio::test]
    async fn wrong_host_is_refused() {
        let app = guarded();
        for host in [
            "evil.example:7070",
            "127.0.0.1:7071",
            "127.0.0.1",
            "192.168.1.10:7070",
            "",
        ] {
            let (s, body, _) = send(&app, get_req("/api/state", host)).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "Host {host}");
            assert_eq!(error_code(&body), "forbidden_host", "Host {host}");
        }
        // Also for the page and for a request that would be fine otherwise.
        let (s, body, _) = send(&app, get_req("/", "rebound.example:7070")).await;
        assert_eq!(
            (s, error_code(&body).as_str()),
            (StatusCode::FORBIDDEN, "forbidden_host")
        );
        let (cookie, csrf) = session(&app).await;
        let (s, body, _) = send(
            &app,
            post_req(
                "attacker.example:7070",
                Some("http://attacker.example:7070"),
                Some(&cookie),
                Some(&csrf),
            ),
        )
        .await;
        assert_eq!(
            (s, error_code(&body).as_str()),
            (StatusCode::FORBIDDEN, "forbidden_host")
        );
    }

    #[tokio::test]
    async fn wrong_or_missing_origin_is_refused() {
        let app = guarded();
        let (cookie, csrf) = session(&app).await;
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:8080",
            "http://localhost:7070",
            "https://127.0.0.1:7070",
            "null",
        ] {
            let (s, body, _) = send(
                &app,
                post_req(ADDR, Some(origin), Some(&cookie), Some(&csrf)),
            )
            .await;
            assert_eq!(s, StatusCode::FORBIDDEN, "Origin {origin}");
            assert_eq!(error_code(&body), "forbidden_origin", "Origin {origin}");
        }
        let (s, body, _) = send(&app, post_req(ADDR, None, Some(&cookie), Some(&csrf))).await;
        assert_eq!(
            (s, error_code(&body).as_str()),
            (StatusCode::FORBIDDEN, "missing_origin")
        );
        // A foreign origin cannot read either (and gets no CORS headers).
        let mut r = get_req("/api/state", ADDR);
        r.headers_mut().insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        let (s, body, h) = send(&app, r).await;
        assert_eq!(
            (s, error_code(&body).as_str()),
            (StatusCode::FORBIDDEN, "forbidden_origin")
        );
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        // A CORS preflight is refused like any other foreign request.
        let pre = axum::http::Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/install")
            .header(header::HOST, ADDR)
            .header(header::ORIGIN, "http://evil.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap();
        let (s, _, h) = send(&app, pre).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    }

    #[tokio::test]
    async fn missing_or_wrong_csrf_is_refused() {
        let app = guarded();
        let (cookie, csrf) = session(&app).await;
        let (_, other_csrf) = session(&app).await;
        let origin = Some("http://127.0.0.1:7070");
        let mut wrong = csrf.clone().into_bytes();
        wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
        let wrong = String::from_utf8(wrong).unwrap();
        let cases: [(&str, Option<&str>, Option<&str>); 6] = [
            ("no token", Some(&cookie), None),
            ("no cookie", None, Some(&csrf)),
            ("wrong token", Some(&cookie), Some(&wrong)),
            ("another session's token", Some(&cookie), Some(&other_csrf)),
            (
                "unknown session",
                Some("cw_outlet_7070=00112233"),
                Some(&csrf),
            ),
            ("empty token", Some(&cookie), Some("")),
        ];
        for (what, c, t) in cases {
            let (s, body, _) = send(&app, post_req(ADDR, origin, c, t)).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{what}");
            assert_eq!(error_code(&body), "csrf", "{what}");
        }
        // A session cookie of another port's outlet is not this one's.
        let other_port = cookie.replace("cw_outlet_7070", "cw_outlet_7071");
        let (s, body, _) = send(&app, post_req(ADDR, origin, Some(&other_port), Some(&csrf))).await;
        assert_eq!(
            (s, error_code(&body).as_str()),
            (StatusCode::FORBIDDEN, "csrf")
        );
    }

    #[test]
    fn non_loopback_listen_is_refused() {
        for listen in [
            "0.0.0.0:7070",
            "[::]:7070",
            "192.168.1.2:7070",
            "10.0.0.1:80",
        ] {
            let e = loopback_listen_addr(listen).unwrap_err();
            assert!(matches!(e, ListenError::NotLoopback(..)), "{listen}: {e}");
            assert!(e.to_string().contains("loopback"), "{e}");
        }
        for listen in ["nonsense", "127.0.0.1", ""] {
            assert!(
                matches!(loopback_listen_addr(listen), Err(ListenError::Invalid(..))),
                "{listen}"
            );
        }
        for listen in ["127.0.0.1:7070", "[::1]:0", "127.0.0.2:9"] {
            assert!(loopback_listen_addr(listen).unwrap().ip().is_loopback());
        }
        assert!(loopback_listen_addr("localhost:7070")
            .unwrap()
            .ip()
            .is_loopback());
    }
}
