//! `cardwright agent`: the local service on the card holder's machine that lets the
//! check-out page use the card in a reader (the role of the CSP plug-in of CN101938520A).
//!
//! It listens on the loopback interface only and answers only:
//! * requests whose `Host` is the loopback address it listens on (DNS rebinding);
//! * cross-origin requests from the origins given with `--allow-origin`, with CORS headers
//!   for those origins only; any other `Origin` gets `403 forbidden_origin`, and a
//!   state-changing request without `Origin` gets `403 missing_origin`;
//! * JSON bodies (`Content-Type: application/json`, which forces a CORS preflight).
//!
//! It never signs what it is merely handed: `/v1/enrol` rebuilds the proof-of-possession
//! digest from the enrolment challenge and `/v1/sign` decodes the canonical payment bytes
//! (and refuses expired ones), so a page can only obtain signatures over Cardwright
//! enrolment and payment data, whose content the agent logs.
//!
//! | endpoint | does |
//! |---|---|
//! | `GET /v1/status` | reader, card serial, PIN tries left, the slot's certificate |
//! | `POST /v1/enrol` | `{challenge, algorithm, slot?, pin}` → key generation and proof of possession |
//! | `POST /v1/certificate` | `{certificate, slot?}` → written to the card (after `/v1/enrol` of that key) |
//! | `POST /v1/sign` | `{canonical, pin, slot?}` → `{signature, certificate, payment}` |

use crate::pay::PivCardArgs;
use anyhow::{bail, Context, Result};
use axum::{
    extract::{rejection::JsonRejection, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use pivhost::{payment, PinStatus, PivAlgorithm, PivError, Slot};
use pki::{EnrolmentChallenge, PublicKey};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Loopback address to listen on (port 0: any free port; printed on stdout).
    #[arg(long, default_value = "127.0.0.1:7373")]
    pub listen: String,
    /// Origin (scheme://host[:port]) of a page allowed to use the card; repeatable.
    #[allow(rustdoc::broken_intra_doc_links)] // clap help text: [:port] is not a link
    #[arg(long = "allow-origin", required_unless_present = "server")]
    pub allow_origin: Vec<String>,
    #[command(flatten)]
    pub card: PivCardArgs,
    /// Issuing-terminal mode: connect out to the platform at this URL (http://HOST:PORT) and
    /// lend it this terminal's readers (with --reader, those whose name contains it).
    #[arg(long, requires = "token")]
    pub server: Option<String>,
    /// The terminal's bearer token (issuing-terminal mode).
    #[arg(long, env = "CARDWRIGHT_TERMINAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The terminal's name, as the platform knows it (issuing-terminal mode).
    #[arg(long, default_value = "terminal")]
    pub terminal: String,
}

/// The agent's state.
struct Agent {
    allowed: Vec<String>,
    hosts: Vec<String>,
    card: PivCardArgs,
    mgmt: payment::MgmtKeySpec,
    /// One card operation at a time.
    lock: Mutex<()>,
    /// Public keys generated through `/v1/enrol`, per slot: `/v1/certificate` only writes a
    /// certificate for one of them.
    generated: Mutex<HashMap<Slot, PublicKey>>,
}

/// An error answer `{"error", "reason", ...}`.
struct AgentError {
    status: StatusCode,
    body: Value,
}

impl AgentError {
    fn new(status: StatusCode, code: &str, reason: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"error": code, "reason": reason.into()}),
        }
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<JsonRejection> for AgentError {
    fn from(e: JsonRejection) -> Self {
        Self::new(e.status(), "invalid_request", e.body_text())
    }
}

impl From<PivError> for AgentError {
    fn from(e: PivError) -> Self {
        let reason = e.to_string();
        match e {
            PivError::WrongPin { retries_left } => {
                let mut a = Self::new(StatusCode::UNAUTHORIZED, "wrong_pin", reason);
                a.body["pin_retries_left"] = json!(retries_left);
                a
            }
            PivError::PinBlocked => {
                let mut a = Self::new(StatusCode::LOCKED, "pin_blocked", reason);
                a.body["pin_retries_left"] = json!(0);
                a
            }
            PivError::InvalidPin(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_pin", reason),
            PivError::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_request", reason),
            PivError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_enrolled", reason),
            PivError::NoPivApplication(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "no_piv", reason)
            }
            PivError::Transport(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "no_card", reason),
            PivError::ManagementKey(_) => {
                Self::new(StatusCode::BAD_GATEWAY, "management_key", reason)
            }
            _ => Self::new(StatusCode::BAD_GATEWAY, "card_error", reason),
        }
    }
}

impl From<anyhow::Error> for AgentError {
    fn from(e: anyhow::Error) -> Self {
        let msg = e
            .chain()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "no_card", msg)
    }
}

type AgentResult = std::result::Result<Json<Value>, AgentError>;

impl Agent {
    /// Runs `f` with the card, one operation at a time, off the async workers.
    async fn with_card<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(
                &Agent,
                &mut pivhost::PivClient<Box<dyn transport::CardChannel>>,
            ) -> std::result::Result<T, AgentError>
            + Send
            + 'static,
    ) -> std::result::Result<T, AgentError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = me.lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut piv = me.card.open()?;
            f(&me, &mut piv)
        })
        .await
        .map_err(|_| {
            AgentError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "agent worker failed",
            )
        })?
    }
}

fn parse_slot(slot: Option<&str>, default: Slot) -> std::result::Result<Slot, AgentError> {
    match slot {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|e: String| AgentError::new(StatusCode::BAD_REQUEST, "invalid_request", e)),
    }
}

async fn status(State(a): State<Arc<Agent>>) -> AgentResult {
    let slot = a.card.slot;
    let reader_name = a
        .card
        .sim
        .as_ref()
        .map(|p| format!("virtual card ({})", p.display()))
        .or_else(|| a.card.reader.clone())
        .unwrap_or_else(|| "first reader with a card".into());
    let result = a
        .with_card(move |_, piv| Ok(payment::card_status(piv, slot)?))
        .await;
    let card = match result {
        Ok(s) => {
            let certificate = s.certificate.as_ref().map(|c| {
                let algorithm = match c.public_key() {
                    Ok(PublicKey::Rsa(_)) => "rsa2048",
                    Ok(PublicKey::P256(_)) => "p256",
                    Err(_) => "unknown",
                };
                json!({
                    "subject": c.subject(),
                    "issuer": c.issuer(),
                    "serial": c.serial().map(|s| s.to_string()),
                    "not_after": c.not_after().format(&time::format_description::well_known::Rfc3339).ok(),
                    "algorithm": algorithm,
                })
            });
            json!({
                "present": true,
                "serial": s.serial,
                "pin_verified": s.pin == PinStatus::Verified,
                "pin_blocked": s.pin == PinStatus::Blocked,
                "pin_retries_left": s.pin.retries_left(),
                "certificate": certificate,
            })
        }
        Err(e) => json!({
            "present": false,
            "error": e.body["error"],
            "reason": e.body["reason"],
        }),
    };
    Ok(Json(json!({
        "agent": "cardwright",
        "version": env!("CARGO_PKG_VERSION"),
        "reader": reader_name,
        "slot": slot.to_string(),
        "card": card,
    })))
}

/// A PIN from a JSON body, wiped on drop (the request buffer itself is not).
struct Pin(Zeroizing<String>);

impl<'de> Deserialize<'de> for Pin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(|s| Pin(Zeroizing::new(s)))
    }
}

impl Pin {
    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

#[derive(Deserialize)]
struct EnrolBody {
    challenge: EnrolmentChallenge,
    #[serde(default)]
    algorithm: Option<String>,
    #[serde(default)]
    slot: Option<String>,
    pin: Pin,
}

async fn enrol(
    State(a): State<Arc<Agent>>,
    body: std::result::Result<Json<EnrolBody>, JsonRejection>,
) -> AgentResult {
    let Json(b) = body?;
    let slot = parse_slot(b.slot.as_deref(), a.card.slot)?;
    let algorithm = match b.algorithm.as_deref().unwrap_or("p256") {
        "p256" => PivAlgorithm::EccP256,
        "rsa2048" => PivAlgorithm::Rsa2048,
        other => {
            return Err(AgentError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("algorithm '{other}': expected p256 or rsa2048"),
            ))
        }
    };
    tracing::info!(
        subject = %b.challenge.subject.common_name,
        %slot,
        "enrolment: generating a {} key",
        pivhost::alg_name(algorithm)
    );
    let out = a
        .with_card(move |me, piv| {
            let r = payment::enrol(
                piv,
                &b.challenge,
                algorithm,
                slot,
                b.pin.as_bytes(),
                &me.mgmt,
            )?;
            me.generated
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(slot, r.public_key.clone());
            Ok(r)
        })
        .await?;
    Ok(Json(json!({
        "slot": slot.to_string(),
        "algorithm": if algorithm == PivAlgorithm::Rsa2048 { "rsa2048" } else { "p256" },
        "public_key_template": apdu::hex(&out.template),
        "proof": apdu::hex(&out.proof),
    })))
}

#[derive(Deserialize)]
struct CertificateBody {
    certificate: String,
    #[serde(default)]
    slot: Option<String>,
}

async fn certificate(
    State(a): State<Arc<Agent>>,
    body: std::result::Result<Json<CertificateBody>, JsonRejection>,
) -> AgentResult {
    let Json(b) = body?;
    let slot = parse_slot(b.slot.as_deref(), a.card.slot)?;
    let text = b.certificate.trim();
    let der = if text.starts_with("-----BEGIN") {
        server::ca_files::pem_decode(text, "CERTIFICATE")
    } else {
        apdu::parse_hex(text).map_err(|e| e.to_string())
    }
    .map_err(|e| {
        AgentError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("certificate: {e}"),
        )
    })?;
    let expected = a
        .generated
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&slot)
        .cloned()
        .ok_or_else(|| {
            AgentError::new(
                StatusCode::CONFLICT,
                "no_enrolment",
                format!("no key was generated in slot {slot} through this agent: enrol first"),
            )
        })?;
    let cert = a
        .with_card(move |me, piv| {
            Ok(payment::install_certificate(
                piv,
                slot,
                &der,
                Some(&expected),
                &me.mgmt,
            )?)
        })
        .await?;
    a.generated
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&slot);
    tracing::info!(subject = %cert.subject(), %slot, "certificate written to the card");
    Ok(Json(json!({
        "slot": slot.to_string(),
        "subject": cert.subject(),
        "serial": cert.serial().map(|s| s.to_string()),
    })))
}

#[derive(Deserialize)]
struct SignBody {
    canonical: String,
    pin: Pin,
    #[serde(default)]
    slot: Option<String>,
}

async fn sign(
    State(a): State<Arc<Agent>>,
    body: std::result::Result<Json<SignBody>, JsonRejection>,
) -> AgentResult {
    let Json(b) = body?;
    let slot = parse_slot(b.slot.as_deref(), a.card.slot)?;
    let canonical = apdu::parse_hex(&b.canonical).map_err(|e| {
        AgentError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("canonical: {e}"),
        )
    })?;
    let out = a
        .with_card(move |_, piv| {
            Ok(payment::sign_payment(
                piv,
                &canonical,
                slot,
                b.pin.as_bytes(),
            )?)
        })
        .await?;
    let c = &out.challenge;
    let amount = server::amount::format_amount(c.request.amount_minor, &c.request.currency);
    tracing::info!(
        challenge = %c.id,
        "signed: {amount} {} to {} (order {})",
        c.request.currency,
        c.request.payee,
        c.request.order_id
    );
    Ok(Json(json!({
        "signature": apdu::hex(&out.signature),
        "certificate": apdu::hex(&out.certificate_der),
        "payment": {
            "challenge_id": c.id.to_string(),
            "amount_minor": c.request.amount_minor,
            "amount": amount,
            "currency": c.request.currency,
            "payee": c.request.payee,
            "order_id": c.request.order_id,
            "expires_at": c.expires_at.format(&time::format_description::well_known::Rfc3339).ok(),
        },
    })))
}

fn forbidden(code: &str, reason: String) -> Response {
    AgentError::new(StatusCode::FORBIDDEN, code, reason).into_response()
}

/// Host, Origin and CORS checks in front of every route (module documentation).
async fn guard(State(a): State<Arc<Agent>>, req: Request, next: Next) -> Response {
    let headers: &HeaderMap = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !a.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return forbidden(
            "forbidden_host",
            format!("Host '{host}' is not this agent's loopback address"),
        );
    }
    let origin = match headers.get(header::ORIGIN) {
        None => None,
        Some(o) => match o.to_str() {
            Ok(s) => Some(s.to_string()),
            Err(_) => return forbidden("forbidden_origin", "unreadable Origin header".into()),
        },
    };
    let method = req.method().clone();
    let Some(origin) = origin else {
        if method == Method::GET || method == Method::HEAD {
            return next.run(req).await;
        }
        return forbidden(
            "missing_origin",
            "requests that use the card must come from an allowed web page (no Origin header)"
                .into(),
        );
    };
    if !a.allowed.contains(&origin) {
        tracing::warn!(%origin, "refused a request from a foreign origin");
        return forbidden(
            "forbidden_origin",
            format!(
                "origin {origin} may not use this card; allowed: {}",
                a.allowed.join(", ")
            ),
        );
    }
    let allow_origin = HeaderValue::from_str(&origin).unwrap_or(HeaderValue::from_static("null"));
    if method == Method::OPTIONS {
        // CORS preflight (Fetch standard §3.2.2); Private Network Access when asked.
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        if req
            .headers()
            .contains_key("access-control-request-private-network")
        {
            h.insert(
                "access-control-allow-private-network",
                HeaderValue::from_static("true"),
            );
        }
        return r;
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/enrol", post(enrol))
        .route("/v1/certificate", post(certificate))
        .route("/v1/sign", post(sign))
        .fallback(|| async {
            AgentError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(middleware::from_fn_with_state(agent.clone(), guard))
        .with_state(agent)
}

/// `scheme://host[:port]` without path or trailing slash.
fn normalise_origin(o: &str) -> Result<String> {
    let t = o.trim().trim_end_matches('/');
    let rest = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
        .with_context(|| {
            format!("--allow-origin {o}: expected http://host[:port] or https://host[:port]")
        })?;
    if rest.is_empty() || rest.contains('/') || rest.contains('*') {
        bail!("--allow-origin {o}: an origin is scheme://host[:port], without path or wildcard");
    }
    Ok(t.to_string())
}

pub fn run(a: AgentArgs) -> Result<()> {
    if let (Some(server), Some(token)) = (&a.server, &a.token) {
        return crate::terminal::run(
            server,
            token,
            &a.terminal,
            a.card.reader.clone(),
            a.card.sim.clone(),
        );
    }
    let allowed = a
        .allow_origin
        .iter()
        .map(|o| normalise_origin(o))
        .collect::<Result<Vec<_>>>()?;
    let mgmt = a.card.mgmt()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("--listen {}", a.listen))?;
        let addr: SocketAddr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            bail!("--listen {}: the agent gives access to the card, so it listens on a loopback address only (127.0.0.1 or [::1])", a.listen);
        }
        let port = addr.port();
        let hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        let agent = Arc::new(Agent {
            allowed,
            hosts,
            card: a.card,
            mgmt,
            lock: Mutex::new(()),
            generated: Mutex::new(HashMap::new()),
        });
        tracing::info!(origins = %agent.allowed.join(", "), "card agent ready");
        println!("cardwright agent: listening on http://{addr}");
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, router(agent))
            .with_graceful_shutdown(server::shutdown_signal())
            .await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::normalise_origin;

    #[test]
    fn origins() {
        assert_eq!(
            normalise_origin("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(normalise_origin("127.0.0.1:8080").is_err());
        assert!(normalise_origin("http://a/b").is_err());
        assert!(normalise_origin("https://*.example").is_err());
    }
}
