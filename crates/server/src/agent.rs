//! The card holder's local agent (`cardwright agent`): the service on the card holder's
//! machine that lets the check-out page use the card in a reader (the role of the CSP
//! plug-in of CN101938520A).
//!
//! It listens on the loopback interface only and answers only:
//! * requests whose `Host` is the loopback address it listens on (DNS rebinding);
//! * cross-origin requests from the allowed origins, with CORS headers for those origins
//!   only; any other `Origin` gets `403 forbidden_origin`, and a state-changing request
//!   without `Origin` gets `403 missing_origin`;
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
//!
//! Every error answers `{"error", "reason"}` ([`ApiError`]), `wrong_pin` and
//! `pin_blocked` with `pin_retries_left` too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use pivhost::{payment, PinStatus, PivAlgorithm, PivError, Slot};
use pki::{EnrolmentChallenge, PublicKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::extract;

/// The PIV client the agent drives.
pub type PivCard = pivhost::PivClient<Box<dyn transport::CardChannel>>;

/// Where the agent finds the card: a reader or a virtual card, opened for each request.
pub trait CardSource: Send + Sync + 'static {
    /// Connects to the card; the error says why not (no reader, no card, …).
    fn open(&self) -> Result<PivCard, String>;
    /// The reader, for `/v1/status`.
    fn describe(&self) -> String;
}

/// How the agent is set up.
pub struct AgentConfig {
    /// Origins (`scheme://host[:port]`, see [`normalise_origin`]) allowed to use the card.
    pub allowed_origins: Vec<String>,
    /// The PIV slot of the payment key.
    pub slot: Slot,
    /// The PIV management key (for key generation and certificate writes).
    pub mgmt: payment::MgmtKeySpec,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("allowed_origins", &self.allowed_origins)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

/// The agent's state.
struct Agent {
    allowed: Vec<String>,
    hosts: Vec<String>,
    card: Arc<dyn CardSource>,
    slot: Slot,
    mgmt: payment::MgmtKeySpec,
    /// One card operation at a time.
    lock: Mutex<()>,
    /// Public keys generated through `/v1/enrol`, per slot: `/v1/certificate` only writes a
    /// certificate for one of them.
    generated: Mutex<HashMap<Slot, PublicKey>>,
}

fn agent_error(status: StatusCode, code: &str, reason: impl Into<String>) -> ApiError {
    ApiError::new(status, code, reason)
}

/// The answer to a PIV failure.
fn piv_error(e: PivError) -> ApiError {
    let reason = e.to_string();
    match e {
        PivError::WrongPin { retries_left } => {
            let mut a = agent_error(StatusCode::UNAUTHORIZED, "wrong_pin", reason);
            a.body.pin_retries_left = Some(retries_left);
            a
        }
        PivError::PinBlocked => {
            let mut a = agent_error(StatusCode::LOCKED, "pin_blocked", reason);
            a.body.pin_retries_left = Some(0);
            a
        }
        PivError::InvalidPin(_) => agent_error(StatusCode::BAD_REQUEST, "invalid_pin", reason),
        PivError::Invalid(_) => agent_error(StatusCode::BAD_REQUEST, "invalid_request", reason),
        PivError::NotFound(_) => agent_error(StatusCode::NOT_FOUND, "not_enrolled", reason),
        PivError::NoPivApplication(_) => {
            agent_error(StatusCode::SERVICE_UNAVAILABLE, "no_piv", reason)
        }
        PivError::Transport(_) => agent_error(StatusCode::SERVICE_UNAVAILABLE, "no_card", reason),
        PivError::ManagementKey(_) => {
            agent_error(StatusCode::BAD_GATEWAY, "management_key", reason)
        }
        _ => agent_error(StatusCode::BAD_GATEWAY, "card_error", reason),
    }
}

type AgentResult<T> = std::result::Result<Json<T>, ApiError>;

fn rfc3339(t: time::OffsetDateTime) -> Option<String> {
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

impl Agent {
    /// Runs `f` with the card, one operation at a time, off the async workers.
    async fn with_card<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Agent, &mut PivCard) -> std::result::Result<T, ApiError> + Send + 'static,
    ) -> std::result::Result<T, ApiError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = me.lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut piv = me
                .card
                .open()
                .map_err(|e| agent_error(StatusCode::SERVICE_UNAVAILABLE, "no_card", e))?;
            f(&me, &mut piv)
        })
        .await
        .map_err(|_| ApiError::internal("an agent worker"))?
    }
}

fn parse_slot(slot: Option<&str>, default: Slot) -> std::result::Result<Slot, ApiError> {
    match slot {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|e: String| agent_error(StatusCode::BAD_REQUEST, "invalid_request", e)),
    }
}

/// The certificate in the payment slot.
#[derive(Debug, Serialize)]
pub struct SlotCertificate {
    /// Subject (RFC 4514).
    pub subject: String,
    /// Issuer (RFC 4514).
    pub issuer: String,
    /// Serial, hex.
    pub serial: Option<String>,
    /// End of validity (RFC 3339).
    pub not_after: Option<String>,
    /// `p256`, `rsa2048` or `unknown`.
    pub algorithm: &'static str,
}

/// The card, as `GET /v1/status` reports it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum CardReport {
    /// A card answered.
    Present {
        /// `true`.
        present: bool,
        /// Its serial number, if it reports one.
        serial: Option<u32>,
        /// The PIN is verified in this session.
        pin_verified: bool,
        /// The PIN is blocked.
        pin_blocked: bool,
        /// PIN tries left, if known.
        pin_retries_left: Option<u8>,
        /// The certificate in the payment slot.
        certificate: Option<SlotCertificate>,
    },
    /// No card (or it failed).
    Absent {
        /// `false`.
        present: bool,
        /// Error code.
        error: String,
        /// Why.
        reason: String,
    },
}

/// `GET /v1/status` answer.
#[derive(Debug, Serialize)]
pub struct Status {
    /// `cardwright`.
    pub agent: &'static str,
    /// The agent's version.
    pub version: &'static str,
    /// The reader.
    pub reader: String,
    /// The payment slot.
    pub slot: String,
    /// The card.
    pub card: CardReport,
}

/// `POST /v1/enrol` answer.
#[derive(Debug, Serialize)]
pub struct Enrolled {
    /// The slot of the new key.
    pub slot: String,
    /// `p256` or `rsa2048`.
    pub algorithm: &'static str,
    /// The `7F49` public key template, hex.
    pub public_key_template: String,
    /// The proof of possession, hex.
    pub proof: String,
}

/// `POST /v1/certificate` answer.
#[derive(Debug, Serialize)]
pub struct CertificateWritten {
    /// The slot.
    pub slot: String,
    /// The certificate's subject.
    pub subject: String,
    /// Its serial, hex.
    pub serial: Option<String>,
}

/// What was signed.
#[derive(Debug, Serialize)]
pub struct SignedPayment {
    /// Challenge id.
    pub challenge_id: String,
    /// Amount in minor units.
    pub amount_minor: u64,
    /// Amount as decimal text.
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Merchant.
    pub payee: String,
    /// Order id.
    pub order_id: String,
    /// Expiry of the challenge (RFC 3339).
    pub expires_at: Option<String>,
}

/// `POST /v1/sign` answer.
#[derive(Debug, Serialize)]
pub struct Signed {
    /// The card's signature, hex.
    pub signature: String,
    /// The card's certificate, hex DER.
    pub certificate: String,
    /// What was signed.
    pub payment: SignedPayment,
}

async fn status(State(a): State<Arc<Agent>>) -> AgentResult<Status> {
    let slot = a.slot;
    let reader_name = a.card.describe();
    let result = a
        .with_card(move |_, piv| payment::card_status(piv, slot).map_err(piv_error))
        .await;
    let card = match result {
        Ok(s) => {
            let certificate = s.certificate.as_ref().map(|c| {
                let algorithm = match c.public_key() {
                    Ok(PublicKey::Rsa(_)) => "rsa2048",
                    Ok(PublicKey::P256(_)) => "p256",
                    Err(_) => "unknown",
                };
                SlotCertificate {
                    subject: c.subject(),
                    issuer: c.issuer(),
                    serial: c.serial().map(|s| s.to_string()),
                    not_after: rfc3339(c.not_after()),
                    algorithm,
                }
            });
            CardReport::Present {
                present: true,
                serial: s.serial,
                pin_verified: s.pin == PinStatus::Verified,
                pin_blocked: s.pin == PinStatus::Blocked,
                pin_retries_left: s.pin.retries_left(),
                certificate,
            }
        }
        Err(e) => CardReport::Absent {
            present: false,
            error: e.body.error,
            reason: e.body.reason,
        },
    };
    Ok(Json(Status {
        agent: "cardwright",
        version: env!("CARGO_PKG_VERSION"),
        reader: reader_name,
        slot: slot.to_string(),
        card,
    }))
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
    extract::Json(b): extract::Json<EnrolBody>,
) -> AgentResult<Enrolled> {
    let slot = parse_slot(b.slot.as_deref(), a.slot)?;
    let algorithm = match b.algorithm.as_deref().unwrap_or("p256") {
        "p256" => PivAlgorithm::EccP256,
        "rsa2048" => PivAlgorithm::Rsa2048,
        other => {
            return Err(agent_error(
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
            )
            .map_err(piv_error)?;
            me.generated
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(slot, r.public_key.clone());
            Ok(r)
        })
        .await?;
    Ok(Json(Enrolled {
        slot: slot.to_string(),
        algorithm: if algorithm == PivAlgorithm::Rsa2048 {
            "rsa2048"
        } else {
            "p256"
        },
        public_key_template: apdu::hex(&out.template),
        proof: apdu::hex(&out.proof),
    }))
}

#[derive(Deserialize)]
struct CertificateBody {
    certificate: String,
    #[serde(default)]
    slot: Option<String>,
}

async fn certificate(
    State(a): State<Arc<Agent>>,
    extract::Json(b): extract::Json<CertificateBody>,
) -> AgentResult<CertificateWritten> {
    let slot = parse_slot(b.slot.as_deref(), a.slot)?;
    let text = b.certificate.trim();
    let der = if text.starts_with("-----BEGIN") {
        crate::ca_files::pem_decode(text, "CERTIFICATE")
    } else {
        apdu::parse_hex(text).map_err(|e| e.to_string())
    }
    .map_err(|e| {
        agent_error(
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
            agent_error(
                StatusCode::CONFLICT,
                "no_enrolment",
                format!("no key was generated in slot {slot} through this agent: enrol first"),
            )
        })?;
    let cert = a
        .with_card(move |me, piv| {
            payment::install_certificate(piv, slot, &der, Some(&expected), &me.mgmt)
                .map_err(piv_error)
        })
        .await?;
    a.generated
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&slot);
    tracing::info!(subject = %cert.subject(), %slot, "certificate written to the card");
    Ok(Json(CertificateWritten {
        slot: slot.to_string(),
        subject: cert.subject(),
        serial: cert.serial().map(|s| s.to_string()),
    }))
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
    extract::Json(b): extract::Json<SignBody>,
) -> AgentResult<Signed> {
    let slot = parse_slot(b.slot.as_deref(), a.slot)?;
    let canonical = apdu::parse_hex(&b.canonical).map_err(|e| {
        agent_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("canonical: {e}"),
        )
    })?;
    let out = a
        .with_card(move |_, piv| {
            payment::sign_payment(piv, &canonical, slot, b.pin.as_bytes()).map_err(piv_error)
        })
        .await?;
    let c = &out.challenge;
    let amount = crate::amount::format_amount(c.request.amount_minor, &c.request.currency);
    tracing::info!(
        challenge = %c.id,
        "signed: {amount} {} to {} (order {})",
        c.request.currency,
        c.request.payee,
        c.request.order_id
    );
    Ok(Json(Signed {
        signature: apdu::hex(&out.signature),
        certificate: apdu::hex(&out.certificate_der),
        payment: SignedPayment {
            challenge_id: c.id.to_string(),
            amount_minor: c.request.amount_minor,
            amount,
            currency: c.request.currency.clone(),
            payee: c.request.payee.clone(),
            order_id: c.request.order_id.clone(),
            expires_at: rfc3339(c.expires_at),
        },
    }))
}

fn forbidden(code: &str, reason: String) -> Response {
    agent_error(StatusCode::FORBIDDEN, code, reason).into_response()
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

/// The agent's routes for a card from `card`, listening on `addr` (a loopback address:
/// only `Host` headers naming it are answered).
pub fn router(config: AgentConfig, card: Arc<dyn CardSource>, addr: SocketAddr) -> Router {
    let port = addr.port();
    let hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    let agent = Arc::new(Agent {
        allowed: config.allowed_origins,
        hosts,
        card,
        slot: config.slot,
        mgmt: config.mgmt,
        lock: Mutex::new(()),
        generated: Mutex::new(HashMap::new()),
    });
    crate::finish(
        Router::new()
            .route("/v1/status", get(status))
            .route("/v1/enrol", post(enrol))
            .route("/v1/certificate", post(certificate))
            .route("/v1/sign", post(sign))
            .with_state(agent.clone()),
    )
    .layer(middleware::from_fn_with_state(agent, guard))
}

/// `scheme://host[:port]` without path or trailing slash.
pub fn normalise_origin(o: &str) -> Result<String, String> {
    let t = o.trim().trim_end_matches('/');
    let rest = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
        .ok_or_else(|| format!("{o}: expected http://host[:port] or https://host[:port]"))?;
    if rest.is_empty() || rest.contains('/') || rest.contains('*') {
        return Err(format!(
            "{o}: an origin is scheme://host[:port], without path or wildcard"
        ));
    }
    Ok(t.to_string())
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
