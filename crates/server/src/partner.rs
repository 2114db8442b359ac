//! The card issuer's SSD API (issue #10; `cardwright serve --role ci`).
//!
//! **Partner routes** (mutual TLS: the caller is the registered partner whose root CA its
//! client chain verified against in the handshake, see [`crate::tls`]; no client
//! certificate answers `401 client_certificate_required`, a root that is no registered
//! partner `403 unknown_partner`):
//! * `POST /api/v1/partner/ssd-requests` `{card_number, aid, model}` → 202 `{job}`
//! * `POST /api/v1/partner/ssd-requests/{id}/exchange` `{response: HEX|null}` →
//!   `{command: HEX}`, `{reset: true}` (reset the card, answer with its ATR) or
//!   `{done: true, ssd}`; another partner's job is refused by tsm
//!   ([`tsm::ssd::CiPlatform::check_job`], audited). The CI runs [`tsm::ssd::CiPlatform::run`] over a
//!   [`relay::bridge::BridgeChannel`] in a blocking worker, one per job; a second exchange
//!   while one waits answers `409 exchange_in_progress`; after a CI restart (or an
//!   interruption) the next exchange with `response: null` runs the job again, which resumes
//!   it from its journal.
//! * `GET /api/v1/partner/ssd-requests/{id}/keys`, `POST …/{id}/confirm`
//! * `GET /api/v1/partner/ssds`, `GET /api/v1/partner/ssds/{card_number}/{aid}`,
//!   `POST /api/v1/partner/ssds/{card_number}/{aid}/renew` `{force, reason}`
//! * `POST /api/v1/partner/tokens`, `POST /api/v1/partner/receipts`
//!
//! **Operator routes** (bearer tokens, operator or viewer): `GET/POST /api/v1/partners`,
//! `POST /api/v1/partners/{id}/revoke`, `GET /api/v1/ssds`,
//! `POST /api/v1/ssds/{card_number}/{aid}/compromised`, `POST …/renew`,
//! `GET/PUT /api/v1/key-policy`, `GET /api/v1/ssds/due`, and with the CI's own terminals
//! `POST /api/v1/ssd-jobs/{id}/run` `{terminal, reader}`: the job runs on the card at the
//! CI's desk; with `Prefer: respond-async` it answers `202` and `Location: /api/v1/jobs/{id}`
//! (the issuance API's job route: SSD jobs are jobs of the same table) once the job is
//! claimed, before the card work ([`crate::jobs`]), and its end is announced to the webhook.
//!
//! The document: `GET /api/openapi-partner.json`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use relay::bridge::{bridge, BridgeEnd, BridgeError, Step};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use serde::Deserialize;
use sha2::Digest;
use tsm::ssd::{CiPlatform, Partner, SsdRecord};
use utoipa::OpenApi;

use crate::auth::{Auth, HasTokens, Permission, Role, TokenTable};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{self, Path};
use crate::jobs::{self, AcceptedJob, PreferHeader};
use crate::openapi::Routes;
use crate::ssd_wire::*;
use crate::tls::{chain_verifies_against, ClientCertificate, PartnerCertVerifier};
use crate::webhook::Webhook;

/// Timings of the exchange route.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeTimeouts {
    /// How long the CI's flow waits for the AP to bring a card response (then the job is
    /// interrupted and resumable).
    pub response: Duration,
    /// How long one exchange call waits for the flow's next command (then `504`; call again).
    pub command: Duration,
}

impl Default for ExchangeTimeouts {
    fn default() -> Self {
        Self {
            response: Duration::from_secs(60),
            command: Duration::from_secs(30),
        }
    }
}

/// One running job's bridge and worker.
struct Session {
    end: tokio::sync::Mutex<BridgeEnd>,
    worker: Mutex<Option<tokio::task::JoinHandle<tsm::Result<SsdRecord>>>>,
}

impl Session {
    fn finished(&self) -> bool {
        self.worker
            .lock()
            .map(|w| w.as_ref().is_none_or(|h| h.is_finished()))
            .unwrap_or(true)
    }
}

/// What the card issuer's SSD routes need.
pub struct PartnerApi {
    ci: Arc<CiPlatform>,
    tokens: TokenTable,
    verifier: Option<Arc<PartnerCertVerifier>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    timeouts: ExchangeTimeouts,
    sessions: Mutex<HashMap<i64, Arc<Session>>>,
    terminals: Option<Arc<relay::hub::Hub>>,
    webhook: Option<Arc<Webhook>>,
}

impl std::fmt::Debug for PartnerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerApi")
            .field("tokens", &self.tokens)
            .field("verifier", &self.verifier)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl HasTokens for PartnerApi {
    fn tokens(&self) -> &TokenTable {
        &self.tokens
    }
}

impl PartnerApi {
    /// The API over `ci`, with operator `tokens`, the TLS layer's `verifier` (its CRLs are
    /// used to name partners too; `None` without TLS, e.g. in-process tests).
    pub fn new(
        ci: Arc<CiPlatform>,
        tokens: TokenTable,
        verifier: Option<Arc<PartnerCertVerifier>>,
        timeouts: ExchangeTimeouts,
    ) -> Arc<Self> {
        Self::with_options(ci, tokens, verifier, timeouts, None, None)
    }

    /// As [`PartnerApi::new`], with the card issuer's own terminals (the issuance API's relay
    /// hub): operators then run SSD jobs on cards at the CI's desks (flow 2, renewals of the
    /// key sets the CI holds, replacements) with `POST /api/v1/ssd-jobs/{id}/run`.
    pub fn with_terminals(
        ci: Arc<CiPlatform>,
        tokens: TokenTable,
        verifier: Option<Arc<PartnerCertVerifier>>,
        timeouts: ExchangeTimeouts,
        hub: Arc<relay::hub::Hub>,
    ) -> Arc<Self> {
        Self::with_options(ci, tokens, verifier, timeouts, Some(hub), None)
    }

    /// [`PartnerApi::new`], with the card issuer's own terminals if `hub` is given (see
    /// [`PartnerApi::with_terminals`]), announcing the end of every SSD job run at them to
    /// `webhook` (the issuance API's, [`crate::issuance::IssuanceApi::webhook`]).
    pub fn with_options(
        ci: Arc<CiPlatform>,
        tokens: TokenTable,
        verifier: Option<Arc<PartnerCertVerifier>>,
        timeouts: ExchangeTimeouts,
        hub: Option<Arc<relay::hub::Hub>>,
        webhook: Option<Arc<Webhook>>,
    ) -> Arc<Self> {
        let crls = verifier
            .as_ref()
            .map(|v| v.crls().to_vec())
            .unwrap_or_default();
        Arc::new(Self {
            ci,
            tokens,
            verifier,
            crls,
            timeouts,
            sessions: Mutex::new(HashMap::new()),
            terminals: hub,
            webhook,
        })
    }

    /// The platform.
    pub fn ci(&self) -> &Arc<CiPlatform> {
        &self.ci
    }

    /// Gives the TLS layer the roots of the registered partners that are not revoked (call
    /// at start, after a change, and now and then: `cardwright partner add|revoke` change
    /// the database from another process).
    pub fn refresh_partner_roots(&self) -> Result<usize, ApiError> {
        let Some(v) = &self.verifier else {
            return Ok(0);
        };
        let partners = self.ci.store().partners().map_err(tsm::Error::from)?;
        let roots: Vec<CertificateDer<'static>> = partners
            .iter()
            .filter(|p| !p.revoked)
            .map(|p| CertificateDer::from(p.certificate.clone()))
            .collect();
        let n = roots.len();
        v.set_partner_roots(roots).map_err(|e| {
            tracing::error!(error = %e, "partner roots refused by the TLS layer");
            ApiError::internal("the TLS layer")
        })?;
        Ok(n)
    }

    /// The registered partner whose root the verified client chain belongs to.
    fn partner_of_chain(&self, chain: &[CertificateDer<'static>]) -> Result<Partner, ApiError> {
        let partners = self.ci.store().partners().map_err(tsm::Error::from)?;
        let found = partners.into_iter().find(|p| {
            let root = CertificateDer::from(p.certificate.clone());
            chain_verifies_against(chain, &root, &self.crls)
        });
        let Some(p) = found else {
            self.audit_refusal(chain, None, "unknown_partner");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "unknown_partner",
                "the client certificate belongs to no registered partner",
            ));
        };
        // The store's own lookup by the root's fingerprint (the tsm contract).
        let sha: [u8; 32] = sha2::Sha256::digest(&p.certificate).into();
        let p = self
            .ci
            .store()
            .partner_for_certificate(&sha)
            .map_err(tsm::Error::from)?
            .unwrap_or(p);
        if p.revoked {
            self.audit_refusal(chain, Some(&p.id), "partner_revoked");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "partner_revoked",
                format!("partner '{}' is revoked", p.id),
            ));
        }
        Ok(p)
    }
}

impl PartnerApi {
    /// Records a refused client (its certificate's SHA-256, never more) in the audit log.
    fn audit_refusal(&self, chain: &[CertificateDer<'static>], partner: Option<&str>, why: &str) {
        let fingerprint = chain
            .first()
            .map(|c| apdu::hex(&sha2::Sha256::digest(c.as_ref())))
            .unwrap_or_default();
        let actor = format!("{}/partner-api", partner.unwrap_or("unknown"));
        let entry = tsm::audit::NewEntry::new(&actor, "partner.identify", "refused")
            .detail(serde_json::json!({"reason": why, "client_certificate_sha256": fingerprint}));
        if let Err(e) = self.ci.store().audit_append(&entry) {
            tracing::error!(error = %e, "auditing a refused partner failed");
        }
        tracing::warn!(reason = why, certificate = %fingerprint, "partner refused");
    }
}

/// The partner a request comes from (its client certificate).
#[derive(Debug, Clone)]
pub struct PartnerCaller(pub Partner);

impl FromRequestParts<Arc<PartnerApi>> for PartnerCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        api: &Arc<PartnerApi>,
    ) -> Result<Self, ApiError> {
        let Some(client) = parts.extensions.get::<ClientCertificate>().cloned() else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "client_certificate_required",
                "the partner API needs a client certificate (mutual TLS)",
            ));
        };
        let api = api.clone();
        tokio::task::spawn_blocking(move || api.partner_of_chain(&client.chain))
            .await
            .map_err(|_| ApiError::internal("a partner lookup"))?
            .map(PartnerCaller)
    }
}

/// Managing partners, SSD compromise and the key policy (CI operators).
#[derive(Debug)]
pub struct ManagePartners;
impl Permission for ManagePartners {
    const ROLES: &'static [Role] = &[Role::Operator];
    const ACTION: &'static str = "manage partners and SSD keys";
}

/// Reading partners, SSDs and the key policy (CI operators and viewers).
#[derive(Debug)]
pub struct ReadPartners;
impl Permission for ReadPartners {
    const ROLES: &'static [Role] = &[Role::Operator, Role::Viewer];
    const ACTION: &'static str = "read partners and SSDs";
}

type Shared = State<Arc<PartnerApi>>;

/// Runs blocking work (store, key store, card exchanges) off the async workers, in the
/// request's span.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::observe::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("an SSD worker"))?
}

/// Runs a tsm call that answers an SSD record off the async workers and answers its view.
async fn ssd_view(
    f: impl FnOnce() -> tsm::Result<tsm::ssd::SsdRecord> + Send + 'static,
) -> Result<Json<SsdView>, ApiError> {
    let r = blocking(move || Ok(f()?)).await?;
    Ok(Json(SsdView::from(&r)))
}

fn tsm_err(e: impl Into<tsm::Error>) -> ApiError {
    ApiError::from(e.into())
}

/// The routes, recorded for the OpenAPI test.
pub fn route_list(api: Arc<PartnerApi>) -> Routes<()> {
    Routes::new()
        .route("/api/openapi-partner.json", &["get"], get(openapi))
        .route("/api/v1/partner/ssd-requests", &["post"], post(request_ssd))
        .route(
            "/api/v1/partner/ssd-requests/{id}/exchange",
            &["post"],
            post(exchange),
        )
        .route(
            "/api/v1/partner/ssd-requests/{id}/keys",
            &["get"],
            get(initial_keys),
        )
        .route(
            "/api/v1/partner/ssd-requests/{id}/confirm",
            &["post"],
            post(confirm),
        )
        .route("/api/v1/partner/ssds", &["get"], get(partner_ssds))
        .route(
            "/api/v1/partner/ssds/{card_number}/{aid}",
            &["get"],
            get(partner_ssd),
        )
        .route(
            "/api/v1/partner/ssds/{card_number}/{aid}/renew",
            &["post"],
            post(partner_renew),
        )
        .route(
            "/api/v1/partner/ssds/{card_number}/{aid}/compromised",
            &["post"],
            post(partner_compromised),
        )
        .route(
            "/api/v1/partner/ssds/{card_number}/{aid}/renewals",
            &["post"],
            post(partner_renewal),
        )
        .route("/api/v1/partner/tokens", &["post"], post(sign_token))
        .route("/api/v1/partner/receipts", &["post"], post(receipt))
        .route(
            "/api/v1/partners",
            &["get", "post"],
            get(list_partners).post(add_partner),
        )
        .route(
            "/api/v1/partners/{id}/revoke",
            &["post"],
            post(revoke_partner),
        )
        .route("/api/v1/ssds", &["get"], get(all_ssds))
        .route("/api/v1/ssds/due", &["get"], get(due))
        .route(
            "/api/v1/ssds/{card_number}/{aid}/compromised",
            &["post"],
            post(compromised),
        )
        .route(
            "/api/v1/ssds/{card_number}/{aid}/renew",
            &["post"],
            post(operator_renew),
        )
        .route("/api/v1/ssd-jobs/{id}/run", &["post"], post(run_job))
        .route(
            "/api/v1/key-policy",
            &["get", "put"],
            get(key_policy).put(set_key_policy),
        )
        .with_state(api)
}

/// The routes without fallbacks (to merge, then [`crate::finish`]).
pub fn routes(api: Arc<PartnerApi>) -> Router {
    route_list(api).into_router()
}

/// The routes alone, with JSON answers for unknown routes and methods.
pub fn router(api: Arc<PartnerApi>) -> Router {
    crate::finish(routes(api))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cardwright card issuer: partner API",
        description = "Supplementary security domains for application providers (issue #10): requests, the APDU relay, the hand-over of initial keys, renewal; and the card issuer's operator routes. Partner routes need a client certificate (mutual TLS) chaining to the partner's registered root; operator routes a bearer token. Every error answers {\"error\", \"reason\"}.",
        version = "1"
    ),
    paths(
        openapi,
        request_ssd,
        exchange,
        initial_keys,
        confirm,
        partner_ssds,
        partner_ssd,
        partner_renew,
        partner_compromised,
        partner_renewal,
        operator_renew,
        run_job,
        sign_token,
        receipt,
        list_partners,
        add_partner,
        revoke_partner,
        all_ssds,
        due,
        compromised,
        key_policy,
        set_key_policy
    ),
    components(schemas(
        ErrorBody,
        Model,
        SsdRequestBody,
        JobAccepted,
        ExchangeBody,
        ExchangeAnswer,
        WrappedKeys,
        RotationBody,
        RenewBody,
        TokenBody,
        TokenAnswer,
        ReceiptBody,
        ReceiptView,
        KeyVersionView,
        RenewalView,
        SsdView,
        SsdList,
        PartnerView,
        PartnerList,
        NewPartnerBody,
        CompromisedBody,
        KeyPolicyBody,
        DueView,
        DueList,
        AcceptedJob
    ))
)]
struct PartnerDoc;

/// The card issuer's SSD API document (bearer and mutual-TLS security schemes).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut doc =
        crate::openapi::with_extractor_refusals(crate::openapi::with_bearer(PartnerDoc::openapi()));
    if let Some(c) = doc.components.as_mut() {
        c.add_security_scheme(
            "mutualTLS",
            utoipa::openapi::security::SecurityScheme::MutualTls {
                description: Some(
                    "A client certificate chaining to the partner's registered root CA".into(),
                ),
                extensions: None,
            },
        );
    }
    doc
}

/// `GET /api/openapi-partner.json`: this document.
#[utoipa::path(get, path = "/api/openapi-partner.json", security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
async fn openapi() -> Response {
    match openapi_document().to_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(_) => ApiError::internal("the OpenAPI document").into_response(),
    }
}

#[utoipa::path(post, path = "/api/v1/partner/ssd-requests", request_body = SsdRequestBody,
    security(("mutualTLS" = [])),
    responses(
        (status = 202, description = "Accepted: relay its commands with …/exchange", body = JobAccepted),
        (status = 400, description = "Bad request or body", body = ErrorBody),
        (status = 401, description = "No client certificate", body = ErrorBody),
        (status = 403, description = "Outside the partner's contract (the code names the rule)", body = ErrorBody),
        (status = 409, description = "Another job for the card is not finished", body = ErrorBody),
    ))]
async fn request_ssd(
    PartnerCaller(partner): PartnerCaller,
    State(api): Shared,
    extract::Json(body): extract::Json<SsdRequestBody>,
) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let job = blocking(move || {
        api.ci
            .request(&partner.id, &(&body).into())
            .map_err(ApiError::from)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(JobAccepted { job })))
}

/// The job id of the request routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path only
struct JobId {
    /// The job id `POST /api/v1/partner/ssd-requests` answered.
    id: i64,
}

/// Card number and AID of the SSD routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path only
struct SsdPath {
    /// Card number (1-20 digits).
    card_number: String,
    /// AID of the SSD (hex).
    aid: String,
}

#[utoipa::path(post, path = "/api/v1/partner/ssd-requests/{id}/exchange", params(JobId),
    request_body = ExchangeBody, security(("mutualTLS" = [])),
    responses(
        (status = 200, description = "The next command, a card reset (answer with the ATR), or done", body = ExchangeAnswer),
        (status = 400, description = "Bad body (hex)", body = ErrorBody),
        (status = 401, description = "No client certificate", body = ErrorBody),
        (status = 403, description = "Not a registered partner, or another partner's request (audited)", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "Another exchange for this job is waiting, or out of step", body = ErrorBody),
        (status = 502, description = "The job was interrupted (card, relay, timeout); exchange again with response null to resume", body = ErrorBody),
        (status = 504, description = "No next command in time; exchange again", body = ErrorBody),
    ))]
async fn exchange(
    PartnerCaller(partner): PartnerCaller,
    State(api): Shared,
    Path(job): Path<i64>,
    extract::Json(body): extract::Json<ExchangeBody>,
) -> Result<Json<ExchangeAnswer>, ApiError> {
    let response = body
        .response
        .as_deref()
        .map(|h| hex_field("response", h))
        .transpose()?;
    {
        // Ownership is tsm's to decide (refusals audited there).
        let api = api.clone();
        blocking(move || Ok(api.ci.check_job(&partner.id, job)?)).await?;
    }
    exchange_step(&api, job, response).await.map(Json)
}

/// One exchange of the partner's job `job`: delivers `response`, answers the next command
/// or done.
async fn exchange_step(
    api: &Arc<PartnerApi>,
    job: i64,
    response: Option<Vec<u8>>,
) -> Result<ExchangeAnswer, ApiError> {
    let (session, fresh) = session_for(api, job, response.is_none())?;
    let Ok(mut end) = session.end.try_lock() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exchange_in_progress",
            format!("another exchange for job {job} is waiting for the card issuer"),
        ));
    };
    // A response to a command of a run that no longer exists (a CI restart) is dropped:
    // the new run starts from the job's journal.
    let response = if fresh { None } else { response };
    let mut step = end.next(response, api.timeouts.command).await;
    if step == Err(BridgeError::FlowGone) {
        // The flow stopped waiting (its own timeout): collect how it ended.
        step = end.next(None, api.timeouts.command).await;
    }
    match step {
        Ok(Step::Command(c)) => Ok(ExchangeAnswer {
            command: Some(apdu::hex(&c)),
            reset: false,
            done: false,
            ssd: None,
        }),
        Ok(Step::Reset) => Ok(ExchangeAnswer {
            command: None,
            reset: true,
            done: false,
            ssd: None,
        }),
        Ok(Step::Done) => {
            forget(api, job, &session);
            let worker = session.worker.lock().ok().and_then(|mut w| w.take());
            let outcome = match worker {
                Some(h) => h.await.map_err(|_| ApiError::internal("an SSD worker"))?,
                None => return Err(ApiError::internal("an SSD worker")),
            };
            let ssd = outcome.map_err(ApiError::from)?;
            Ok(ExchangeAnswer {
                command: None,
                reset: false,
                done: true,
                ssd: Some(SsdView::from(&ssd)),
            })
        }
        Err(BridgeError::Timeout(wait)) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("the card issuer's flow gave no next command within {wait:?}; exchange again"),
        )),
        Err(e @ (BridgeError::ResponseMissing | BridgeError::UnexpectedResponse)) => Err(
            ApiError::new(StatusCode::CONFLICT, "out_of_step", e.to_string()),
        ),
        Err(BridgeError::FlowGone) => {
            forget(api, job, &session);
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "interrupted",
                "the card issuer's flow stopped; exchange again with response null to resume",
            ))
        }
    }
}

/// The job's session; a new one (a worker running the job over a fresh bridge) when there
/// is none, or when the old one's worker has finished and the caller starts over.
fn session_for(
    api: &Arc<PartnerApi>,
    job: i64,
    starting_over: bool,
) -> Result<(Arc<Session>, bool), ApiError> {
    let mut sessions = api
        .sessions
        .lock()
        .map_err(|_| ApiError::internal("the session table"))?;
    if let Some(s) = sessions.get(&job) {
        if !(starting_over && s.finished()) {
            return Ok((s.clone(), false));
        }
    }
    let (mut channel, end) = bridge(api.timeouts.response);
    let ci = api.ci.clone();
    let worker = tokio::task::spawn_blocking(move || ci.run(job, &mut channel));
    let session = Arc::new(Session {
        end: tokio::sync::Mutex::new(end),
        worker: Mutex::new(Some(worker)),
    });
    sessions.insert(job, session.clone());
    Ok((session, true))
}

fn forget(api: &PartnerApi, job: i64, session: &Arc<Session>) {
    if let Ok(mut sessions) = api.sessions.lock() {
        if sessions.get(&job).is_some_and(|s| Arc::ptr_eq(s, session)) {
            sessions.remove(&job);
        }
    }
}

#[utoipa::path(get, path = "/api/v1/partner/ssd-requests/{id}/keys", params(JobId),
    security(("mutualTLS" = [])),
    responses(
        (status = 200, description = "The initial keys wrapped for the partner's transport key", body = WrappedKeys),
        (status = 401, description = "No client certificate", body = ErrorBody),
        (status = 403, description = "Not the partner's", body = ErrorBody),
        (status = 404, description = "No such request or key set", body = ErrorBody),
        (status = 409, description = "The SSD is not created yet, or already handed over", body = ErrorBody),
    ))]
async fn initial_keys(
    PartnerCaller(partner): PartnerCaller,
    State(api): Shared,
    Path(job): Path<i64>,
) -> Result<Json<WrappedKeys>, ApiError> {
    blocking(move || {
        let w = api.ci.initial_keys(&partner.id, job)?;
        let wrapped = serde_json::from_str(&w.to_json())
            .map_err(|_| ApiError::internal("the wrapped key set"))?;
        Ok(Json(WrappedKeys { job, wrapped }))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/partner/ssd-requests/{id}/confirm", params(JobId),
    request_body = RotationBody, security(("mutualTLS" = [])),
    responses(
        (status = 200, description = "Handed over: the card issuer deleted its copy of the initial keys", body = SsdView),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "No client certificate", body = ErrorBody),
        (status = 403, description = "Not the partner's", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "Not in a state to confirm", body = ErrorBody),
    ))]
async fn confirm(
    PartnerCaller(partner): PartnerCaller,
    State(api): Shared,
    Path(job): Path<i64>,
    extract::Json(body): extract::Json<RotationBody>,
) -> Result<Json<SsdView>, ApiError> {
    let kcv = hex_field("kcv", &body.kcv)?;
    ssd_view(move || {
        let rotation = tsm::ssd::Rotation { kvn: body.kvn, kcv };
        api.ci.confirm_rotation(&partner.id, job, &rotation)
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/partner/ssds", security(("mutualTLS" = [])),
    responses(
        (status = 200, description = "The partner's own SSDs", body = SsdList),
        (status = 401, description = "No client certificate", body = ErrorBody),
        (status = 403, description = "Not a registered partner", body = ErrorBody),
    ))]
async fn partner_ssds(
    PartnerCaller(partner): PartnerCaller,
    State(api): Shared,
) -> Result<Json<SsdList>, ApiError> {
    blocking(move || {
        let ssds = api.ci.ssds(&partner.id)?;
        Ok(Json(SsdList {
            ssds: ssds.iter().map(SsdView::from).collect(),
        }))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/partner/ssds/{card_number}/{aid}", params(SsdPath),
    security(("mutualTLS" = [])),
    responses(
        (status = 200, description = "The SSD", body = SsdView),
        (status = 401, description = "No client certificate", body = ErrorBody),
        (status = 403, description = "Not the partner's (or no such SSD: the same answer)", body = ErrorBody),
    ))]
async fn partner_ssd(
    PartnerCaller(partner): PartnerCaller,
    State(api): Shared,
    Path((card_number, aid)): Path<(String, String)>,
) -> Result<Json<SsdView>, ApiError> {
    ssd_view(move || api.ci.status(&partner.id, &card_number, &aid)).await
}

#[utoipa::path(post, path = "/api/v1/partner/ssds/{card_number}/{aid}/renew", params(SsdPath),
    request_body = RenewBody, security(("mutualTLS" = [])),
    responses(
        (status = 202, description = "A renewal job (relay it with …/exchange)", body = JobAccepted),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "No client certificate", body = ErrorBody),
        (status = 403, description = "Not the partner's", body = ErrorBody),
        (status = 409, description = "Nothing to renew, or a job is running", body = ErrorBody),
    ))]
async fn partner_renew(
    PartnerCaller(partner): PartnerCaller,
    State(api): Shared,
    Path((card_number, aid)): Path<(String, String)>,
    body: Option<extract::Json<RenewBody>>,
) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let body = body.map(|b| b.0).unwrap_or_default();
    let job = blocking(move || {
        if body.force {
            let actor = tsm::Actor::new(&partner.id, "partner-api");
            let reason = body.reason.as_deref().unwrap_or("forced by the partner");
            api.ci
                .mark_current_compromised(&actor, &card_number, &aid, None, reason)?;
        }
        Ok(api.ci.renewal_job(&partner.id, &card_number, &aid)?)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(JobAccepted { job })))
}

#[utoipa::path(post, path = "/api/v1/partner/ssds/{card_number}/{aid}/compromised", params(SsdPath),
    request_body = CompromisedBody, security(("mutualTLS" = [])),
    responses(
        (status = 200, description = "Marked: the card issuer replaces the SSD at the next contact (renew, then relay the job)", body = SsdView),
        (status = 400, description = "Bad body, or not the active key version", body = ErrorBody),
        (status = 401, description = "No client certificate", body = ErrorBody),
        (status = 403, description = "Not the partner's SSD", body = ErrorBody),
    ))]
async fn partner_compromised(
    PartnerCaller(partner): PartnerCaller,
    State(api): Shared,
    Path((card_number, aid)): Path<(String, String)>,
    extract::Json(body): extract::Json<CompromisedBody>,
) -> Result<Json<SsdView>, ApiError> {
    ssd_view(move || {
        // Ownership first (in tsm): another partner's SSD is refused as not its own.
        let actor = tsm::Actor::new(&partner.id, "partner-api");
        api.ci
            .mark_current_compromised(&actor, &card_number, &aid, body.kvn, &body.reason)
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/partner/ssds/{card_number}/{aid}/renewals", params(SsdPath),
    request_body = RenewalReport, security(("mutualTLS" = [])),
    responses(
        (status = 200, description = "Recorded (the card issuer cannot check it: it knows none of the partner's keys)", body = SsdView),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "No client certificate", body = ErrorBody),
        (status = 403, description = "Not the partner's SSD", body = ErrorBody),
    ))]
async fn partner_renewal(
    PartnerCaller(partner): PartnerCaller,
    State(api): Shared,
    Path((card_number, aid)): Path<(String, String)>,
    extract::Json(body): extract::Json<RenewalReport>,
) -> Result<Json<SsdView>, ApiError> {
    let kcv = hex_field("kcv", &body.rotation.kcv)?;
    ssd_view(move || {
        let renewal = tsm::ssd::Renewal {
            from_kvn: body.renewal.from_kvn,
            to_kvn: body.renewal.to_kvn,
            cause: body.renewal.cause,
            reason: body.renewal.reason,
            at_ms: body.renewal.at_ms,
        };
        let rotation = tsm::ssd::Rotation {
            kvn: body.rotation.kvn,
            kcv,
        };
        api.ci
            .record_renewal(&partner.id, &card_number, &aid, &renewal, &rotation)
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/partner/tokens", request_body = TokenBody,
    security(("mutualTLS" = [])),
    responses(
        (status = 200, description = "The Delegated Management token (GP 2.3.1 Appendix C.4)", body = TokenAnswer),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "No client certificate", body = ErrorBody),
        (status = 403, description = "Not the partner's delegated SSD", body = ErrorBody),
    ))]
async fn sign_token(
    PartnerCaller(partner): PartnerCaller,
    State(api): Shared,
    extract::Json(body): extract::Json<TokenBody>,
) -> Result<Json<TokenAnswer>, ApiError> {
    let input = hex_field("input", &body.input)?;
    blocking(move || {
        let req = tsm::ssd::TokenRequest {
            card_number: body.card_number,
            aid: body.aid.to_ascii_uppercase(),
            input,
        };
        let token = api.ci.sign_token(&partner.id, &req)?;
        Ok(Json(TokenAnswer {
            token: apdu::hex(&token),
        }))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/partner/receipts", request_body = ReceiptBody,
    security(("mutualTLS" = [])),
    responses(
        (status = 200, description = "The receipt verifies with the card's receipt key (GP 2.3.1 Appendix C.5) and is recorded in the SSD's history", body = SsdView),
        (status = 400, description = "Bad body (hex, AIDs, operation), or no receipt key on this platform", body = ErrorBody),
        (status = 401, description = "No client certificate", body = ErrorBody),
        (status = 403, description = "Not the partner's SSD, or an operation outside its AID prefix", body = ErrorBody),
        (status = 409, description = "The SSD is not a delegated SSD the card issuer manages", body = ErrorBody),
        (status = 422, description = "Refused: the receipt does not verify, repeats or goes back on the card's confirmation counter, or names another card", body = ErrorBody),
    ))]
async fn receipt(
    PartnerCaller(partner): PartnerCaller,
    State(api): Shared,
    extract::Json(body): extract::Json<ReceiptBody>,
) -> Result<Json<SsdView>, ApiError> {
    let confirmation = hex_field("confirmation", &body.confirmation)?;
    let operation = body.operation()?;
    ssd_view(move || {
        api.ci.check_receipt(
            &partner.id,
            &body.card_number,
            &body.aid.to_ascii_uppercase(),
            &operation,
            &confirmation,
        )
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/partners", security(("bearer" = [])),
    responses(
        (status = 200, description = "Registered partners", body = PartnerList),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ))]
async fn list_partners(
    _caller: Auth<ReadPartners>,
    State(api): Shared,
) -> Result<Json<PartnerList>, ApiError> {
    blocking(move || {
        let partners = api.ci.store().partners().map_err(tsm_err)?;
        Ok(Json(PartnerList {
            partners: partners.iter().map(PartnerView::from).collect(),
        }))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/partners", request_body = NewPartnerBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered; its root is trusted for client certificates from now on", body = PartnerView),
        (status = 400, description = "Bad body (certificate, key, prefix, ranges)", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ))]
async fn add_partner(
    caller: Auth<ManagePartners>,
    State(api): Shared,
    extract::Json(body): extract::Json<NewPartnerBody>,
) -> Result<(StatusCode, Json<PartnerView>), ApiError> {
    let new = new_partner(&body)?;
    let actor = caller.principal.actor();
    blocking(move || {
        let p = api
            .ci
            .store()
            .add_partner(&actor.name(), &new)
            .map_err(store_refusal)?;
        api.refresh_partner_roots()?;
        Ok((StatusCode::CREATED, Json(PartnerView::from(&p))))
    })
    .await
}

/// A partner body checked and converted (the store checks the rest).
pub fn new_partner(body: &NewPartnerBody) -> Result<tsm::ssd::NewPartner, ApiError> {
    let aid_prefix = hex_field("ssd_aid_prefix", &body.ssd_aid_prefix)?;
    let card_ranges = body
        .cards
        .iter()
        .map(|c| card_range(c).map_err(|e| ApiError::bad_request(format!("cards: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if card_ranges.is_empty() {
        return Err(ApiError::bad_request(
            "cards: at least one range FIRST-LAST",
        ));
    }
    tsm::ssd::TransportPublicKey::from_pem(&body.transport_key)
        .map_err(|e| ApiError::bad_request(format!("transport_key: {e}")))?;
    crate::tls::certificates_from_pem(body.certificate.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("certificate: {e}")))?;
    Ok(tsm::ssd::NewPartner {
        id: body.id.clone(),
        name: body.name.clone().unwrap_or_else(|| body.id.clone()),
        certificate: body.certificate.as_bytes().to_vec(),
        aid_prefix,
        card_ranges,
        transport_key: body.transport_key.as_bytes().to_vec(),
    })
}

/// A store refusal of bad input as 400/404/409; anything else as the store's failure.
fn store_refusal(e: tsm::StoreError) -> ApiError {
    match &e {
        tsm::StoreError::Invalid { .. } => ApiError::bad_request(e.to_string()),
        tsm::StoreError::Duplicate(_) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        tsm::StoreError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        _ => tsm_err(e),
    }
}

#[utoipa::path(post, path = "/api/v1/partners/{id}/revoke",
    params(("id" = String, Path, description = "Partner id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked: its certificates are refused in the TLS handshake from now on", body = PartnerView),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "No such partner", body = ErrorBody),
    ))]
async fn revoke_partner(
    caller: Auth<ManagePartners>,
    State(api): Shared,
    Path(id): Path<String>,
) -> Result<Json<PartnerView>, ApiError> {
    let actor = caller.principal.actor();
    blocking(move || {
        if api.ci.store().partner(&id).map_err(tsm_err)?.is_none() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no partner '{id}'"),
            ));
        }
        let p = api
            .ci
            .store()
            .revoke_partner(&actor.name(), &id)
            .map_err(store_refusal)?;
        api.refresh_partner_roots()?;
        Ok(Json(PartnerView::from(&p)))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/ssds", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every partner's SSDs (records only: the card issuer holds no partner key)", body = SsdList),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ))]
async fn all_ssds(
    _caller: Auth<ReadPartners>,
    State(api): Shared,
) -> Result<Json<SsdList>, ApiError> {
    blocking(move || {
        let ssds = api.ci.store().ssds().map_err(tsm_err)?;
        Ok(Json(SsdList {
            ssds: ssds.iter().map(SsdView::from).collect(),
        }))
    })
    .await
}

/// `GET /api/v1/ssds/due?at=MS`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DueQuery {
    /// The time to look at (Unix ms; default now).
    at: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/ssds/due", params(DueQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Key versions falling due, soonest first", body = DueList),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ))]
async fn due(
    _caller: Auth<ReadPartners>,
    State(api): Shared,
    query: Result<Query<DueQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DueList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    blocking(move || {
        let at = q.at.unwrap_or_else(tsm::model::now_ms);
        let due = api.ci.due(at)?;
        Ok(Json(DueList {
            due: due.iter().map(DueView::from).collect(),
        }))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/ssds/{card_number}/{aid}/compromised", params(SsdPath),
    request_body = CompromisedBody, security(("bearer" = [])),
    responses(
        (status = 200, description = "Marked: renewed at the next contact, refused for anything else until then", body = SsdView),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "No such SSD or key version", body = ErrorBody),
    ))]
async fn compromised(
    caller: Auth<ManagePartners>,
    State(api): Shared,
    Path((card_number, aid)): Path<(String, String)>,
    extract::Json(body): extract::Json<CompromisedBody>,
) -> Result<Json<SsdView>, ApiError> {
    let actor = caller.principal.actor();
    blocking(move || {
        let kvn = match body.kvn {
            Some(k) => k,
            None => {
                let aid_bytes = hex_field("aid", &aid)?;
                let ssd = api
                    .ci
                    .store()
                    .ssd(&card_number, &aid_bytes)
                    .map_err(tsm_err)?
                    .ok_or_else(|| {
                        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such SSD")
                    })?;
                ssd.current_key().map(|k| k.kvn).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "the SSD has no key version",
                    )
                })?
            }
        };
        let r = api
            .ci
            .mark_compromised(&actor, &card_number, &aid, kvn, &body.reason)?;
        Ok(Json(SsdView::from(&r)))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/key-policy", security(("bearer" = [])),
    responses(
        (status = 200, description = "The SSD key policy", body = KeyPolicyBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ))]
async fn key_policy(
    _caller: Auth<ReadPartners>,
    State(api): Shared,
) -> Result<Json<KeyPolicyBody>, ApiError> {
    blocking(move || {
        let p = api.ci.store().key_policy().map_err(tsm_err)?;
        Ok(Json(p.into()))
    })
    .await
}

#[utoipa::path(put, path = "/api/v1/key-policy", request_body = KeyPolicyBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Set", body = KeyPolicyBody),
        (status = 400, description = "The renewal window must be shorter than a non-zero lifetime", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ))]
async fn set_key_policy(
    caller: Auth<ManagePartners>,
    State(api): Shared,
    extract::Json(body): extract::Json<KeyPolicyBody>,
) -> Result<Json<KeyPolicyBody>, ApiError> {
    let policy = tsm::ssd::KeyPolicy::new(
        Duration::from_secs(body.ssd_lifetime_s),
        Duration::from_secs(body.renew_before_s),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let actor = caller.principal.actor();
    blocking(move || {
        api.ci
            .store()
            .set_key_policy(&actor.name(), &policy)
            .map_err(store_refusal)?;
        Ok(Json(policy.into()))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/ssds/{card_number}/{aid}/renew", params(SsdPath),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "A job renewing the key set the CI holds, or replacing the SSD when its owner's keys are compromised; run it with /api/v1/ssd-jobs/{id}/run or let the partner relay it", body = JobAccepted),
        (status = 400, description = "Nothing the CI can renew (the owner holds the keys and they are not compromised)", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "No such SSD", body = ErrorBody),
        (status = 409, description = "A job for the card is not finished", body = ErrorBody),
    ))]
async fn operator_renew(
    caller: Auth<ManagePartners>,
    State(api): Shared,
    Path((card_number, aid)): Path<(String, String)>,
) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let actor = caller.principal.actor();
    let job = blocking(move || {
        let aid_bytes = hex_field("aid", &aid)?;
        let ssd = api
            .ci
            .store()
            .ssd(&card_number, &aid_bytes)
            .map_err(tsm_err)?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such SSD"))?;
        let owner_compromised = ssd.current_key().is_some_and(|k| {
            k.holder == tsm::ssd::KeyHolder::Ap && k.state == tsm::ssd::KeyState::Compromised
        });
        Ok(if owner_compromised {
            api.ci.replace(&actor, &card_number, &aid)?
        } else {
            api.ci.renew(&actor, &card_number, &aid)?
        })
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(JobAccepted { job })))
}

/// The reader of one of the card issuer's terminals.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminalReader {
    /// The CI terminal (`cardwright agent --server …`).
    pub terminal: String,
    /// Its reader holding the card.
    pub reader: String,
}

#[utoipa::path(post, path = "/api/v1/ssd-jobs/{id}/run", params(JobId, PreferHeader),
    request_body = TerminalReader, security(("bearer" = [])),
    responses(
        (status = 200, description = "The job ran on the card at the CI's desk", body = SsdView),
        (status = 202, description = "Prefer: respond-async: the job is claimed and runs; follow it at Location (the issuance API's job route)", body = AcceptedJob,
            headers(("Location" = String, description = "The job: /api/v1/jobs/{id}"),
                    ("Preference-Applied" = String, description = "respond-async (RFC 7240)"))),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "No such job, terminal or reader (or this server has no terminals: serve --issuance)", body = ErrorBody),
        (status = 409, description = "The job is finished, or running elsewhere", body = ErrorBody),
        (status = 502, description = "The card or the terminal failed; the job is resumable", body = ErrorBody),
    ))]
async fn run_job(
    _caller: Auth<ManagePartners>,
    State(api): Shared,
    headers: HeaderMap,
    Path(job): Path<i64>,
    extract::Json(body): extract::Json<TerminalReader>,
) -> Result<Response, ApiError> {
    let Some(hub) = &api.terminals else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "terminal",
            "this card issuer platform has no terminals of its own (serve --issuance)",
        ));
    };
    let mut chan = hub
        .channel_when_free(&body.terminal, &body.reader, crate::contact::READER_WAIT)
        .await?;
    let api2 = api.clone();
    let claimed = blocking(move || Ok(api2.ci.claim(job)?)).await?;
    let job = claimed.job().clone();
    let announcer = jobs::Announcer::new(api.webhook.clone(), api.ci.store().clone());
    let run = move || Ok(SsdView::from(&api.ci.run_claimed(claimed, &mut chan)?));
    match jobs::run_claimed(&job, jobs::prefers_async(&headers), announcer, run).await? {
        jobs::Started::Accepted(r) => Ok(r),
        jobs::Started::Ran(view) => Ok(Json(view).into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transport::CardChannel;

    /// A card issuer's partner API on a SQLite store and a software key store in `dir`, with
    /// 5-second exchange timeouts.
    fn test_api(dir: &std::path::Path) -> Arc<PartnerApi> {
        let store =
            tsm::Store::open(&format!("sqlite:{}", dir.join("ci.db").display())).expect("store");
        let keys = Arc::new(
            kms::SoftwareKeyStore::create(
                dir.join("keys.json"),
                kms::MasterKey::generate().expect("master key"),
            )
            .expect("key store"),
        );
        let issuer = tsm::Issuer::new(store, keys.clone(), tsm::IssuerConfig::default());
        let ci = CiPlatform::new(issuer, keys, tsm::ssd::CiConfig::default());
        PartnerApi::new(
            Arc::new(ci),
            TokenTable::new(),
            None,
            ExchangeTimeouts {
                response: Duration::from_secs(5),
                command: Duration::from_secs(5),
            },
        )
    }

    /// A second exchange for a job while one waits for the card issuer's next command is
    /// refused `409 exchange_in_progress`; the first then gets its command.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_second_exchange_while_one_waits_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let api = test_api(dir.path());
        // A job's worker that takes a while before its first command.
        let (mut channel, end) = bridge(Duration::from_secs(5));
        let worker = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(700));
            channel
                .transmit_raw(&[0x00, 0xA4, 0x04, 0x00])
                .map_err(tsm::Error::Interrupted)?;
            Err(tsm::Error::Invalid("the test's flow ends here".into()))
        });
        let session = Arc::new(Session {
            end: tokio::sync::Mutex::new(end),
            worker: Mutex::new(Some(worker)),
        });
        api.sessions
            .lock()
            .expect("sessions")
            .insert(7, session.clone());
        let first = {
            let api = api.clone();
            tokio::spawn(async move { exchange_step(&api, 7, None).await })
        };
        while session.end.try_lock().is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let second = exchange_step(&api, 7, None).await;
        assert_eq!(
            second.map_err(|e| (e.status, e.body.error)),
            Err((StatusCode::CONFLICT, "exchange_in_progress".to_string()))
        );
        let first = first.await.expect("first");
        assert_eq!(first.map(|a| a.command), Ok(Some("00A40400".to_string())));
        // The card's answer ends the test's flow: its error comes back, the session goes.
        let last = exchange_step(&api, 7, Some(vec![0x90, 0x00])).await;
        assert_eq!(
            last.map_err(|e| e.body.error),
            Err("invalid_request".to_string())
        );
        assert!(api.sessions.lock().expect("sessions").get(&7).is_none());
    }

    /// A card reset asked by the card issuer's flow goes over the wire as `reset`; the
    /// partner's next exchange brings the ATR, which the flow's channel reports, and the
    /// flow goes on with its next command.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_reset_asked_by_the_flow_is_answered_with_reset() {
        let dir = tempfile::tempdir().expect("dir");
        let api = test_api(dir.path());
        let (mut channel, end) = bridge(Duration::from_secs(5));
        let worker = tokio::task::spawn_blocking(move || {
            channel.reset().map_err(tsm::Error::Interrupted)?;
            let atr = channel.atr();
            channel
                .transmit_raw(&[0x00, 0xA4, 0x04, 0x00])
                .map_err(tsm::Error::Interrupted)?;
            Err(tsm::Error::Invalid(format!("ATR {}", apdu::hex(&atr))))
        });
        let session = Arc::new(Session {
            end: tokio::sync::Mutex::new(end),
            worker: Mutex::new(Some(worker)),
        });
        api.sessions.lock().expect("sessions").insert(9, session);
        let first = exchange_step(&api, 9, None).await.expect("reset");
        assert_eq!(
            serde_json::to_value(&first).expect("json"),
            serde_json::json!({"reset": true})
        );
        let atr = vec![0x3B, 0x8A, 0x80, 0x01];
        let next = exchange_step(&api, 9, Some(atr)).await.expect("command");
        assert_eq!(next.command.as_deref(), Some("00A40400"));
        assert!(!next.reset && !next.done);
        let last = exchange_step(&api, 9, Some(vec![0x90, 0x00])).await;
        let e = last.expect_err("the test's flow ends with an error");
        assert!(e.body.reason.contains("ATR 3B8A8001"), "{}", e.body.reason);
    }
}
