//! The Cardwright HTTP server (`cardwright serve`): remote payments signed by the card.
//!
//! * **Enrolment** (`POST /api/v1/enrolments`, then `POST /api/v1/enrolments/{id}`): the
//!   server answers a key-generation request and a one-time challenge; the card generates a
//!   key pair, returns the `7F49` public key template and signs the challenge (proof of
//!   possession); the CA issues an X.509 client certificate, which the host writes to the
//!   card.
//! * **Payment** (`POST /api/v1/payments`, then `POST /api/v1/payments/{id}/authorise`): the
//!   server issues a challenge over the canonical payment data (amount, currency, payee,
//!   order id, fresh nonce, expiry); the card signs its SHA-256 after the PIN; the server
//!   validates the certificate (chain to our CA, validity, revocation) and the signature,
//!   and records the authorisation. Every refusal answers `{"error": CODE, "reason": TEXT}`
//!   and is recorded in the [`audit`] log.
//! * **CA**: `GET /api/v1/ca.pem`, `GET /api/v1/crl` (DER), revocation with the admin
//!   bearer token.
//! * **Pages**: the check-out page `/pay` (plain HTML and JavaScript) that talks to this API
//!   and to the local agent (`cardwright agent`) on the card holder's machine.
//! * `GET /api/openapi.json`: the API description (OpenAPI 3.1), generated from the types
//!   ([`openapi_document`]).
//! * Observability ([`observe::instrument`], on `cardwright serve`'s router): request ids,
//!   the request span, `GET /metrics` ([`metrics::Metrics`]) and `GET /readyz`.
//!
//! The server is generic over pki's store traits ([`Stores`]); [`Stores::memory`] keeps
//! everything in memory.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod amount;
pub mod ap;
pub mod api;
pub mod audit;
pub mod auth;
pub mod ca_files;
pub mod ca_keystore;
pub mod campaigns;
pub mod contact;
pub mod error;
pub mod extract;
pub mod issuance;
pub mod jobs;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod ota;
pub mod ota_api;
pub mod outlet;
pub mod outlet_records;
mod pages;
pub mod partner;
pub mod partner_client;
pub mod ssd_wire;
pub mod tls;
pub mod webhook;

use std::{sync::Arc, time::Duration};

use axum::{
    routing::{get, post},
    Router,
};
use pki::{
    CertificateAuthority, CertificateStore, Enroller, EnrolmentStore, MemoryStore,
    PaymentAuthenticator, PaymentStore,
};
use zeroize::Zeroizing;

pub use audit::{AuditEvent, AuditLog, MemoryAudit, TsmAudit};
pub use error::{ApiError, ErrorBody};

/// The OpenAPI document of the payment service, generated from its types and handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Cardwright payments",
        description = "Enrolment of card keys, card-signed payments, the CA and its CRL. Every error answers {\"error\", \"reason\"}.",
        version = "1"
    ),
    paths(
        api::start_enrolment, api::finish_enrolment, api::create_payment, api::payment_status,
        api::authorise_payment, api::ca_pem, api::crl, api::certificate_status, api::revoke,
        api::audit, pages::openapi, pages::healthz, pages::index, pages::pay, pages::pay_js,
        pages::pay_css, pages::favicon
    ),
    components(schemas(
        ErrorBody, api::CardAlgorithm, api::EnrolmentStart, api::KeygenRequest,
        api::EnrolmentStarted, api::EnrolmentFinish, api::IssuedCertificate, api::PaymentCreate,
        api::PaymentCreated, api::PaymentAuthorise, api::PaymentAuthorised, api::Rejection,
        api::PaymentStatus, api::CertificateStatusBody, api::RevokeRequest, AuditEvent,
        audit::EventKind, audit::Outcome
    )),
    security(("bearer" = []))
)]
struct PaymentDoc;

/// The payment service's OpenAPI document (served at `/api/openapi.json`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Type};
    let mut doc = openapi::with_bearer(<PaymentDoc as utoipa::OpenApi>::openapi());
    // Exactly one of `amount` (text) and `amount_minor` (integer), as the server requires.
    if let Some(components) = doc.components.as_mut() {
        if let Some(create) = components.schemas.remove("PaymentCreate") {
            let given = |field: &str, ty: Type| {
                ObjectBuilder::new()
                    .property(field, ObjectBuilder::new().schema_type(ty))
                    .required(field)
            };
            let exactly_one = OneOfBuilder::new()
                .item(given("amount", Type::String))
                .item(given("amount_minor", Type::Integer));
            components.schemas.insert(
                "PaymentCreate".into(),
                AllOfBuilder::new().item(create).item(exactly_one).into(),
            );
        }
    }
    doc
}

/// Settings of the payment service.
#[derive(Clone)]
pub struct ServerConfig {
    /// Bearer token for revocation and the audit log; `None` disables them.
    pub admin_token: Option<Zeroizing<String>>,
    /// Lifetime of a payment challenge (default 3 minutes).
    pub payment_challenge_ttl: Duration,
    /// Lifetime of an enrolment challenge (default 5 minutes).
    pub enrolment_challenge_ttl: Duration,
    /// Validity of issued certificates (default two years).
    pub certificate_validity: Duration,
    /// `nextUpdate` of CRLs, from now (default one day).
    pub crl_next_update: Duration,
    /// The PIV slot cards generate their payment key in (default `9C`, digital signature).
    pub card_slot: u8,
    /// Where the check-out page finds the local agent (default `http://127.0.0.1:7373`).
    pub agent_url: String,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("payment_challenge_ttl", &self.payment_challenge_ttl)
            .field("enrolment_challenge_ttl", &self.enrolment_challenge_ttl)
            .field("certificate_validity", &self.certificate_validity)
            .field("crl_next_update", &self.crl_next_update)
            .field("card_slot", &format_args!("{:02X}", self.card_slot))
            .field("agent_url", &self.agent_url)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            admin_token: None,
            payment_challenge_ttl: pki::payment::DEFAULT_CHALLENGE_TTL,
            enrolment_challenge_ttl: pki::enrol::DEFAULT_CHALLENGE_TTL,
            certificate_validity: pki::enrol::DEFAULT_CERTIFICATE_VALIDITY,
            crl_next_update: Duration::from_secs(86_400),
            card_slot: 0x9C,
            agent_url: "http://127.0.0.1:7373".into(),
        }
    }
}

/// Where the payment service keeps its state (pki's store traits).
#[derive(Debug, Clone)]
pub struct Stores {
    /// Issued certificates, revocations, CRL numbers.
    pub certificates: Arc<dyn CertificateStore>,
    /// Enrolment challenges.
    pub enrolments: Arc<dyn EnrolmentStore>,
    /// Payment challenges and authorisations.
    pub payments: Arc<dyn PaymentStore>,
}

impl Stores {
    /// Everything in one [`MemoryStore`].
    pub fn memory() -> Self {
        Self::all(Arc::new(MemoryStore::new()))
    }

    /// One object implementing the three traits (a database store, or [`MemoryStore`]).
    pub fn all<S: CertificateStore + EnrolmentStore + PaymentStore + 'static>(s: Arc<S>) -> Self {
        Self {
            certificates: s.clone(),
            enrolments: s.clone(),
            payments: s,
        }
    }
}

/// The payment service behind the HTTP API. Share it in an `Arc`.
#[derive(Debug)]
pub struct PayServer {
    ca: Arc<CertificateAuthority>,
    enroller: Enroller,
    payments: PaymentAuthenticator,
    payment_store: Arc<dyn PaymentStore>,
    audit_log: Arc<dyn AuditLog>,
    config: ServerConfig,
    tokens: auth::TokenTable,
}

impl auth::HasTokens for PayServer {
    fn tokens(&self) -> &auth::TokenTable {
        &self.tokens
    }
}

impl PayServer {
    /// A service with this CA (which must use `stores.certificates`), stores, audit log and
    /// settings.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        stores: Stores,
        audit_log: Arc<dyn AuditLog>,
        config: ServerConfig,
    ) -> Self {
        let enroller = Enroller::new(ca.clone(), stores.enrolments)
            .with_challenge_ttl(config.enrolment_challenge_ttl)
            .with_certificate_validity(config.certificate_validity);
        let payments = PaymentAuthenticator::new(ca.clone(), stores.payments.clone())
            .with_challenge_ttl(config.payment_challenge_ttl);
        let mut tokens = auth::TokenTable::new();
        if let Some(t) = &config.admin_token {
            tokens.add(t.as_str(), auth::Principal::admin());
        }
        Self {
            ca,
            enroller,
            payments,
            payment_store: stores.payments,
            audit_log,
            config,
            tokens,
        }
    }

    /// This service accepting the tokens of `tokens` (its admin tokens,
    /// [`auth::Principal::admin`]) instead of `config.admin_token`: a table shared with the
    /// other APIs and re-read from files while serving ([`auth::watch_token_files`]).
    pub fn with_tokens(mut self, tokens: auth::TokenTable) -> Self {
        self.tokens = tokens;
        self
    }

    /// The CA.
    pub fn ca(&self) -> &Arc<CertificateAuthority> {
        &self.ca
    }

    /// The audit log.
    pub fn audit_log(&self) -> &Arc<dyn AuditLog> {
        &self.audit_log
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }
}

/// All routes of the payment service (the API, the OpenAPI document and the pages), with
/// [`finish`]'s JSON answers for unknown routes and methods.
pub fn router(state: Arc<PayServer>) -> Router {
    finish(payment_routes(state))
}

/// The payment service's routes, without fallbacks (to merge with others, then [`finish`]).
pub fn payment_routes(state: Arc<PayServer>) -> Router {
    payment_route_list(state).into_router()
}

/// The payment service's routes, recorded for the OpenAPI test.
pub fn payment_route_list(state: Arc<PayServer>) -> openapi::Routes<()> {
    openapi::Routes::new()
        .route("/api/v1/enrolments", &["post"], post(api::start_enrolment))
        .route(
            "/api/v1/enrolments/{id}",
            &["post"],
            post(api::finish_enrolment),
        )
        .route("/api/v1/payments", &["post"], post(api::create_payment))
        .route("/api/v1/payments/{id}", &["get"], get(api::payment_status))
        .route(
            "/api/v1/payments/{id}/authorise",
            &["post"],
            post(api::authorise_payment),
        )
        .route("/api/v1/ca.pem", &["get"], get(api::ca_pem))
        .route("/api/v1/crl", &["get"], get(api::crl))
        .route(
            "/api/v1/certificates/{serial}",
            &["get"],
            get(api::certificate_status),
        )
        .route(
            "/api/v1/certificates/{serial}/revoke",
            &["post"],
            post(api::revoke),
        )
        .route("/api/v1/audit", &["get"], get(api::audit))
        .route("/api/openapi.json", &["get"], get(pages::openapi))
        .route("/healthz", &["get"], get(pages::healthz))
        .route("/", &["get"], get(pages::index))
        .route("/pay", &["get"], get(pages::pay))
        .route("/pay.js", &["get"], get(pages::pay_js))
        .route("/pay.css", &["get"], get(pages::pay_css))
        .route("/favicon.ico", &["get"], get(pages::favicon))
        .with_state(state)
}

/// Every service of `cardwright serve` on one router: the payment service, and with
/// `issuance` the issuance API and the terminal relay.
pub fn app(pay: Arc<PayServer>, issuance: Option<Arc<issuance::IssuanceApi>>) -> Router {
    let mut app = payment_routes(pay);
    if let Some(api) = issuance {
        app = app.merge(issuance::routes(api));
    }
    finish(app)
}

/// Unknown routes answer `404 not_found` and known routes asked with another method
/// `405 method_not_allowed`, both as `{"error", "reason"}` (axum's defaults are plain text
/// or empty).
pub fn finish(app: Router) -> Router {
    app.fallback(|| async { error::ApiError::no_route() })
        .method_not_allowed_fallback(|| async { error::ApiError::method_not_allowed() })
}

/// Starts a multi-threaded tokio runtime and runs `f` on it to completion: the one start-up
/// of every blocking command that serves HTTP (`cardwright serve`, `cardwright agent`).
pub fn block_on<F: std::future::Future>(f: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(f))
}

/// Serve `app` on `listener` until Ctrl-C (SIGINT) or SIGTERM.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
