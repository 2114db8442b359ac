//! The issuing host's HTTP API (`cardwright serve --issuance`): operators run issuance
//! workflows on the card in a terminal's reader; terminals (`cardwright agent --server`)
//! lend their readers through the relay at [`relay::WS_PATH`].
//!
//! Routes (bearer token of an operator; a viewer may only read):
//! * `GET  /api/v1/terminals`: connected terminals, their readers and cards.
//! * `POST /api/v1/cards/{card_number}/write`   `{terminal, reader, category, install_apps?, perso?}`
//! * `POST /api/v1/cards/{card_number}/rewrite` `{terminal, reader, category?, to_version?}`
//! * `POST /api/v1/cards/{card_number}/clear`   `{terminal, reader, category?}`
//! * `POST /api/v1/cards/{card_number}/resume`  `{terminal, reader}`
//! * `POST /api/v1/cards/{card_number}/apps`    `{terminal, reader, package, applet?, instance?, privileges?, params?, perso?}`
//! * `POST /api/v1/cards/{card_number}/apps/{instance}/delete` `{terminal, reader}`
//! * `GET  /api/v1/cards/{card_number}`: the card as recorded, and its jobs.
//! * `GET  /api/v1/jobs/{id}`: a job, its state and its steps ([`crate::jobs`]).
//! * `GET  /api/v1/jobs?card=N[&state=S]`: a card's jobs.
//! * `GET  /api/v1/terminal/ws`: a terminal's WebSocket (terminal token).
//! * `/api/v1/campaigns…`: campaigns, created, steered and followed ([`crate::campaigns`]).
//!
//! The job routes answer [`JobOutcome`] when the job has run, or with `Prefer: respond-async`
//! (RFC 7240) `202 Accepted` and the job's URL as soon as it is recorded ([`crate::jobs`]);
//! with a webhook ([`crate::webhook`]) every job run here is announced when it ends. Or
//! `{error, reason}` with 400 (bad request), 401 (token), 403
//! (role, or a card of another tenant), 404 (unknown card, category, terminal or reader),
//! 409 (wrong card, state or category; a job running elsewhere), 502 (the card or the
//! terminal failed; the job is left resumable).
//!
//! Tenant isolation is the domain's decision ([`tsm::Issuer::authorise_request`]): every route that
//! names a card checks the operator's tenant against the card's before it borrows a reader,
//! and the refusal is audited.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use relay::hub::{Hub, HubError};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::{Auth, HasTokens, LendReaders, Operate, Read, TokenTable};
use crate::campaigns;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{self, Path};
use crate::jobs::{self, PreferHeader};
use crate::openapi::Routes;
use crate::webhook::Webhook;

/// What the issuance routes need.
pub struct IssuanceApi {
    hub: Arc<Hub>,
    issuer: Arc<tsm::Issuer>,
    tokens: Arc<TokenTable>,
    metrics: Arc<crate::metrics::Metrics>,
    webhook: Option<Arc<Webhook>>,
}

impl std::fmt::Debug for IssuanceApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuanceApi")
            .field("tokens", &self.tokens)
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

impl HasTokens for IssuanceApi {
    fn tokens(&self) -> &TokenTable {
        &self.tokens
    }
}

impl IssuanceApi {
    /// The API over `issuer`, accepting `tokens` (operators and viewers, each with its
    /// tenant, and terminals); `relay_timeout` bounds each APDU round trip through a
    /// terminal.
    pub fn new(issuer: Arc<tsm::Issuer>, tokens: TokenTable, relay_timeout: Duration) -> Arc<Self> {
        Self::with_options(issuer, tokens, relay_timeout, Arc::default(), None)
    }

    /// [`IssuanceApi::new`], its jobs, card exchanges and terminals measured in `metrics`.
    pub fn with_metrics(
        issuer: Arc<tsm::Issuer>,
        tokens: TokenTable,
        relay_timeout: Duration,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        Self::with_options(issuer, tokens, relay_timeout, metrics, None)
    }

    /// [`IssuanceApi::new`], announcing the end of every job run through it to `webhook`.
    pub fn with_webhook(
        issuer: Arc<tsm::Issuer>,
        tokens: TokenTable,
        relay_timeout: Duration,
        webhook: Option<Webhook>,
    ) -> Arc<Self> {
        Self::with_options(issuer, tokens, relay_timeout, Arc::default(), webhook)
    }

    /// [`IssuanceApi::new`] measured in `metrics` and announcing ended jobs to `webhook`.
    pub fn with_options(
        issuer: Arc<tsm::Issuer>,
        tokens: TokenTable,
        relay_timeout: Duration,
        metrics: Arc<crate::metrics::Metrics>,
        webhook: Option<Webhook>,
    ) -> Arc<Self> {
        let tokens = Arc::new(tokens);
        let hub = Hub::new(tokens.clone(), relay_timeout);
        tokens.guard_hub(&hub);
        metrics.watch_hub(&hub);
        metrics.watch_store(issuer.store());
        Arc::new(Self {
            hub,
            issuer,
            tokens,
            metrics,
            webhook: webhook.map(Arc::new),
        })
    }

    /// The relay hub terminals connect to.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The issuer.
    pub fn issuer(&self) -> &Arc<tsm::Issuer> {
        &self.issuer
    }

    /// Where the end of every job run through it is announced (`None`: nowhere); the SSD
    /// jobs the card issuer runs at these terminals are announced there too.
    pub fn webhook(&self) -> Option<&Arc<Webhook>> {
        self.webhook.as_ref()
    }

    fn announcer(&self) -> jobs::Announcer {
        jobs::Announcer::new(self.webhook.clone(), self.issuer.store().clone())
    }
}

impl From<tsm::Error> for ApiError {
    fn from(e: tsm::Error) -> Self {
        use tsm::Error as E;
        let (status, code) = match &e {
            E::UnknownCard | E::UnknownSsd | E::UnknownCategory(_) | E::UnknownJob(_) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            E::WrongCategory { .. } | E::WrongCard(_) | E::WrongState { .. } | E::CardBusy(_) => {
                (StatusCode::CONFLICT, "conflict")
            }
            E::JobFinished { .. } | E::JobLeased(_) | E::NoKeyVersion => {
                (StatusCode::CONFLICT, "conflict")
            }
            E::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            E::CampaignConflict(_) => (StatusCode::CONFLICT, "conflict"),
            E::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            E::KeysDoNotMatch(_) | E::AuthenticationRefused(_) | E::KddNotSettable(_) => {
                (StatusCode::CONFLICT, "card_keys")
            }
            E::Interrupted(_) | E::Card(_) => (StatusCode::BAD_GATEWAY, "card"),
            // Partner refusals (issue #10) carry the rule broken as their code.
            E::Refused { reason, .. } => (StatusCode::FORBIDDEN, refusal_code(*reason)),
            E::KeyUnusable { .. } => (StatusCode::CONFLICT, "key_unusable"),
            E::ReceiptRefused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "receipt_refused"),
            E::RecordConflict(_) => (StatusCode::CONFLICT, "record_conflict"),
            E::Kms(kms::Error::KeySetNotFound(_)) => (StatusCode::NOT_FOUND, "not_found"),
            E::Kms(kms::Error::BadWrappedKeySet(_) | kms::Error::WrongTransportKey { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            E::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "not_implemented"),
            // The store's refusals of what a caller named or gave (OTA records, issue 12).
            E::Store(tsm::StoreError::NotFound(_)) => (StatusCode::NOT_FOUND, "not_found"),
            E::Store(tsm::StoreError::Duplicate(_)) => (StatusCode::CONFLICT, "conflict"),
            E::Store(tsm::StoreError::Invalid { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            _ => {
                tracing::error!(error = %e, "issuance failed");
                return ApiError::internal("the issuance store or key store");
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// The error code of a partner refusal (issue #10), one per rule.
pub fn refusal_code(r: tsm::ssd::auth::Refusal) -> &'static str {
    use tsm::ssd::auth::Refusal as R;
    match r {
        R::UnknownPartner => "unknown_partner",
        R::Revoked => "partner_revoked",
        R::CardOutsideContract => "card_outside_contract",
        R::IsdAid => "isd_aid",
        R::AidOutsidePrefix => "aid_outside_prefix",
        R::NotOwner => "not_owner",
    }
}

/// The refusal an error code names ([`refusal_code`] backwards).
pub fn refusal_of_code(code: &str) -> Option<tsm::ssd::auth::Refusal> {
    use tsm::ssd::auth::Refusal as R;
    [
        R::UnknownPartner,
        R::Revoked,
        R::CardOutsideContract,
        R::IsdAid,
        R::AidOutsidePrefix,
        R::NotOwner,
    ]
    .into_iter()
    .find(|r| refusal_code(*r) == code)
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        if matches!(e, HubError::Busy { .. }) {
            return ApiError::new(StatusCode::CONFLICT, "reader_busy", e.to_string());
        }
        ApiError::new(StatusCode::NOT_FOUND, "terminal", e.to_string())
    }
}

/// The routes (the relay's WebSocket route included), recorded for the OpenAPI test.
pub fn route_list(api: Arc<IssuanceApi>) -> Routes<()> {
    let r = Routes::new()
        .route("/api/openapi-issuance.json", &["get"], get(openapi))
        .route("/api/v1/terminals", &["get"], get(terminals))
        .route("/api/v1/cards/{card_number}", &["get"], get(card))
        .route("/api/v1/jobs", &["get"], get(jobs::jobs))
        .route("/api/v1/jobs/{id}", &["get"], get(jobs::job))
        .route("/api/v1/cards/{card_number}/write", &["post"], post(write))
        .route(
            "/api/v1/cards/{card_number}/rewrite",
            &["post"],
            post(rewrite),
        )
        .route("/api/v1/cards/{card_number}/clear", &["post"], post(clear))
        .route(
            "/api/v1/cards/{card_number}/resume",
            &["post"],
            post(resume),
        )
        .route(
            "/api/v1/cards/{card_number}/apps",
            &["post"],
            post(load_app),
        )
        .route(
            "/api/v1/cards/{card_number}/apps/{instance}/delete",
            &["post"],
            post(delete_app),
        )
        .route(
            "/api/v1/campaigns",
            &["get", "post"],
            get(campaigns::list).post(campaigns::create),
        )
        .route("/api/v1/campaigns/{id}", &["get"], get(campaigns::status))
        .route(
            "/api/v1/campaigns/{id}/failures",
            &["get"],
            get(campaigns::failures),
        )
        .route(
            "/api/v1/campaigns/{id}/start",
            &["post"],
            post(campaigns::start),
        )
        .route(
            "/api/v1/campaigns/{id}/pause",
            &["post"],
            post(campaigns::pause),
        )
        .route(
            "/api/v1/campaigns/{id}/resume",
            &["post"],
            post(campaigns::resume),
        )
        .route(
            "/api/v1/campaigns/{id}/cancel",
            &["post"],
            post(campaigns::cancel),
        )
        .route(
            "/api/v1/campaigns/{id}/retry",
            &["post"],
            post(campaigns::retry),
        )
        .route(relay::WS_PATH, &["get"], get(terminal_ws));
    r.with_state(api)
}

/// The routes, without fallbacks: merge them into the server's router ([`crate::app`]).
pub fn routes(api: Arc<IssuanceApi>) -> Router {
    route_list(api).into_router()
}

/// The issuance API alone, with JSON answers for unknown routes and methods.
pub fn router(api: Arc<IssuanceApi>) -> Router {
    crate::finish(routes(api))
}

/// The OpenAPI document of the issuance API, generated from its types and handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cardwright issuance API",
        description = "Operators run issuance workflows (write, rewrite, clear, resume, application load and delete) on the card in an issuing terminal's reader. Every error answers {\"error\", \"reason\"}.",
        version = "1"
    ),
    paths(
        openapi, terminals, card, write, rewrite, clear, resume, load_app, delete_app,
        jobs::job, jobs::jobs, terminal_ws, campaigns::create, campaigns::list,
        campaigns::status, campaigns::failures, campaigns::start, campaigns::pause,
        campaigns::resume, campaigns::cancel, campaigns::retry
    ),
    components(schemas(
        ErrorBody, Terminals, TerminalInfo, ReaderInfo, CardStatus, CardInfo, JobSummary,
        JobOutcome, ReaderRef, WriteRequest, RewriteRequest, ClearRequest, AppLoadRequest,
        jobs::AcceptedJob, jobs::JobStatus, jobs::StepStatus, jobs::JobList, jobs::JobEnded,
        campaigns::CampaignCreate, campaigns::CampaignCreated, campaigns::CampaignSummary,
        campaigns::CampaignStatus, campaigns::CampaignList, campaigns::CampaignFailure,
        campaigns::CampaignFailures
    )),
    security(("bearer" = []))
)]
struct IssuanceDoc;

/// The card number in every card route's path, documented once.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only documents the path; handlers extract `Path<String>`
struct CardNumber {
    /// Card number (1-20 digits).
    #[param(pattern = "^[0-9]{1,20}$")]
    card_number: String,
}

/// The answers of every route that runs a job on a card (write, rewrite, clear, resume,
/// application load and delete), documented once.
struct JobResponses;

impl utoipa::IntoResponses for JobResponses {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, ResponseBuilder, Type};
        let header = |description: &str| {
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(description))
                .build()
        };
        [
            ("200", "JobOutcome", "The job ran"),
            (
                "202",
                "AcceptedJob",
                "Prefer: respond-async: the job is recorded and runs; follow it at Location",
            ),
            ("400", "ErrorBody", "Bad request or body"),
            ("401", "ErrorBody", "No or unknown bearer token"),
            (
                "403",
                "ErrorBody",
                "The role may not, or the card is another tenant's",
            ),
            (
                "404",
                "ErrorBody",
                "Unknown card, category, terminal or reader",
            ),
            (
                "409",
                "ErrorBody",
                "Wrong card, state or category; a job running elsewhere; card keys",
            ),
            ("413", "ErrorBody", "Body too large"),
            ("415", "ErrorBody", "Not application/json"),
            (
                "502",
                "ErrorBody",
                "The card or the terminal failed (the job is left resumable)",
            ),
        ]
        .into_iter()
        .map(|(status, schema, description)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema)))
                .build();
            let mut response = ResponseBuilder::new()
                .description(description)
                .content("application/json", content);
            if status == "202" {
                response = response
                    .header("Location", header("The job: /api/v1/jobs/{id}"))
                    .header("Preference-Applied", header("respond-async (RFC 7240)"));
            }
            (status.to_string(), response.build().into())
        })
        .collect()
    }
}

/// The issuance API's OpenAPI document.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut doc = crate::openapi::with_bearer(IssuanceDoc::openapi());
    campaigns::document_card_choice(&mut doc);
    doc
}

/// `GET /api/openapi-issuance.json`: this document.
#[utoipa::path(get, path = "/api/openapi-issuance.json", security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
async fn openapi() -> Response {
    match openapi_document().to_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(_) => ApiError::internal("the OpenAPI document").into_response(),
    }
}

type Shared = State<Arc<IssuanceApi>>;

/// Runs blocking work (store, card exchanges) off the async workers, in the request's span
/// (its logs carry the request id).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, tsm::Error> + Send + 'static,
) -> Result<T, ApiError> {
    crate::observe::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("an issuance worker"))?
        .map_err(ApiError::from)
}

/// A reader of a terminal, as the terminal reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReaderInfo {
    /// The reader name as PC/SC reports it.
    pub name: String,
    /// Whether a card is in it.
    pub card_present: bool,
    /// The card's ATR (hex) when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atr: Option<String>,
}

/// A connected terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TerminalInfo {
    /// Its name.
    pub terminal: String,
    /// Its readers.
    pub readers: Vec<ReaderInfo>,
}

/// `GET /api/v1/terminals` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Terminals {
    /// The connected terminals.
    pub terminals: Vec<TerminalInfo>,
}

#[utoipa::path(get, path = "/api/v1/terminals",
    responses(
        (status = 200, description = "Connected terminals", body = Terminals),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ))]
async fn terminals(_caller: Auth<Read>, State(api): Shared) -> Json<Terminals> {
    let terminals = api
        .hub
        .terminals()
        .into_iter()
        .map(|t| TerminalInfo {
            terminal: t.terminal,
            readers: t
                .readers
                .into_iter()
                .map(|r| ReaderInfo {
                    name: r.name,
                    card_present: r.card_present,
                    atr: r.atr,
                })
                .collect(),
        })
        .collect();
    Json(Terminals { terminals })
}

/// A card as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CardInfo {
    /// Card number.
    pub card_number: String,
    /// Its category.
    pub category: String,
    /// `blank`, `written` or `partial`.
    pub state: String,
    /// Base key version of the keys on the card (none: initial keys).
    pub key_version: Option<u32>,
    /// Key version number of the ISD key set on the card.
    pub kvn: Option<u8>,
}

impl From<&tsm::model::Card> for CardInfo {
    fn from(c: &tsm::model::Card) -> Self {
        CardInfo {
            card_number: c.card_number.clone(),
            category: c.category.clone(),
            state: c.state.to_string(),
            key_version: c.key_version,
            kvn: c.kvn,
        }
    }
}

/// A job of a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    /// Job id.
    pub job: i64,
    /// `write`, `rewrite`, `clear`, `app_load`, `app_delete`.
    pub kind: String,
    /// `pending`, `running`, `done`, `failed`.
    pub state: String,
    /// Runs started so far.
    pub attempts: u32,
    /// Last error, if any.
    pub error: Option<String>,
}

impl From<&tsm::model::Job> for JobSummary {
    fn from(j: &tsm::model::Job) -> Self {
        JobSummary {
            job: j.id,
            kind: j.kind.to_string(),
            state: j.state.to_string(),
            attempts: j.attempts,
            error: j.error.clone(),
        }
    }
}

/// `GET /api/v1/cards/{card_number}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CardStatus {
    /// The card.
    pub card: CardInfo,
    /// Its jobs.
    pub jobs: Vec<JobSummary>,
}

#[utoipa::path(get, path = "/api/v1/cards/{card_number}",
    params(CardNumber),
    responses(
        (status = 200, description = "The card and its jobs", body = CardStatus),
        (status = 400, description = "Bad request or body", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not, or the card is another tenant's", body = ErrorBody),
        (status = 404, description = "Unknown card", body = ErrorBody),
    ))]
async fn card(
    caller: Auth<Read>,
    State(api): Shared,
    Path(card_number): Path<String>,
) -> Result<Json<CardStatus>, ApiError> {
    let actor = caller.principal.actor();
    blocking(move || {
        let (card, jobs) = api.issuer.card_status(&actor, &card_number)?;
        Ok(Json(CardStatus {
            card: CardInfo::from(&card),
            jobs: jobs.iter().map(JobSummary::from).collect(),
        }))
    })
    .await
}

/// What a finished run of a job reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobOutcome {
    /// Job id.
    pub job: i64,
    /// `write`, `rewrite`, `clear`, `app_load`, `app_delete`.
    pub kind: String,
    /// `done` (or the state the job was left in).
    pub state: String,
    /// The card as recorded at the end.
    pub card: CardInfo,
    /// C-APDUs sent in this run.
    pub apdus: u64,
    /// Duration of the run, in milliseconds.
    pub ms: f64,
}

impl From<tsm::Outcome> for JobOutcome {
    fn from(r: tsm::Outcome) -> Self {
        JobOutcome {
            job: r.job.id,
            kind: r.job.kind.to_string(),
            state: r.job.state.to_string(),
            card: CardInfo::from(&r.card),
            apdus: r.apdus,
            ms: r.timing.total.as_secs_f64() * 1e3,
        }
    }
}

/// The reader holding the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReaderRef {
    /// Terminal name.
    #[schema(min_length = 1)]
    pub terminal: String,
    /// Reader name on that terminal.
    #[schema(min_length = 1)]
    pub reader: String,
}

/// `POST /api/v1/cards/{card_number}/write` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WriteRequest {
    /// Terminal name.
    #[schema(min_length = 1)]
    pub terminal: String,
    /// Reader name on that terminal.
    #[schema(min_length = 1)]
    pub reader: String,
    /// The card's category.
    pub category: String,
    /// Install the category's applications too (default true).
    #[serde(default)]
    pub install_apps: Option<bool>,
    /// Card-specific personalisation: BER-TLV objects for the ISD, hex.
    #[serde(default)]
    #[schema(pattern = "^([0-9A-Fa-f]{2})*$")]
    pub perso: String,
}

/// `POST /api/v1/cards/{card_number}/rewrite` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RewriteRequest {
    /// Terminal name.
    #[schema(min_length = 1)]
    pub terminal: String,
    /// Reader name on that terminal.
    #[schema(min_length = 1)]
    pub reader: String,
    /// The card's category (default: as recorded).
    #[serde(default)]
    pub category: Option<String>,
    /// Target base key version (default: the category's current one).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4_294_967_295_u64, format = Int64)]
    pub to_version: Option<u32>,
}

/// `POST /api/v1/cards/{card_number}/clear` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClearRequest {
    /// Terminal name.
    #[schema(min_length = 1)]
    pub terminal: String,
    /// Reader name on that terminal.
    #[schema(min_length = 1)]
    pub reader: String,
    /// The card's category (default: as recorded).
    #[serde(default)]
    pub category: Option<String>,
}

/// `POST /api/v1/cards/{card_number}/apps` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppLoadRequest {
    /// Terminal name.
    #[schema(min_length = 1)]
    pub terminal: String,
    /// Reader name on that terminal.
    #[schema(min_length = 1)]
    pub reader: String,
    /// Package (load file) AID, hex, registered with `cardwright package add`.
    #[schema(pattern = "^([0-9A-Fa-f]{2}){5,16}$")]
    pub package: String,
    /// Applet AID (default: the package's first).
    #[serde(default)]
    #[schema(pattern = "^([0-9A-Fa-f]{2}){5,16}$")]
    pub applet: Option<String>,
    /// Instance AID (default: the applet AID).
    #[serde(default)]
    #[schema(pattern = "^([0-9A-Fa-f]{2}){5,16}$")]
    pub instance: Option<String>,
    /// Privileges: comma-separated short names (GP 2.3.1 Table 11-7: `sd`, `dm`, `am`, …);
    /// empty or `none` for none.
    #[serde(default)]
    #[schema(
        pattern = "^ *((none|sd|dap|dm|cl|ct|cr|cvm|mdap|tp|am|tv|gd|gl|gr|fa|gs|rg|clfdb|ca|csa) *(, *(sd|dap|dm|cl|ct|cr|cvm|mdap|tp|am|tv|gd|gl|gr|fa|gs|rg|clfdb|ca|csa) *)*)?$"
    )]
    pub privileges: String,
    /// Install parameters (`C9`), hex, at most 127 bytes.
    #[serde(default)]
    #[schema(pattern = "^([0-9A-Fa-f]{2}){0,127}$")]
    pub params: String,
    /// Personalisation data (one STORE DATA block), hex.
    #[serde(default)]
    #[schema(pattern = "^([0-9A-Fa-f]{2})*$")]
    pub perso: String,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> tsm::Error {
    tsm::Error::Invalid(format!("{what}: {e}"))
}

/// The category of a recorded card, when the request gives none.
fn category_of(
    issuer: &tsm::Issuer,
    card_number: &str,
    given: Option<String>,
) -> Result<String, tsm::Error> {
    match given {
        Some(c) => Ok(c),
        None => Ok(issuer
            .store()
            .card(card_number)?
            .ok_or(tsm::Error::UnknownCard)?
            .category),
    }
}

/// A job request as the handlers received it: who asks, on which reader, and whether the
/// answer may come before the card work (`Prefer: respond-async`).
struct JobCall {
    api: Arc<IssuanceApi>,
    actor: tsm::Actor,
    reader: ReaderRef,
    asynchronous: bool,
}

impl JobCall {
    fn new(
        api: Arc<IssuanceApi>,
        caller: &Auth<Operate>,
        headers: &HeaderMap,
        reader: ReaderRef,
    ) -> JobCall {
        JobCall {
            api,
            actor: caller.principal.actor(),
            reader,
            asynchronous: jobs::prefers_async(headers),
        }
    }

    /// Runs `req`: the tenant is checked first ([`tsm::Issuer::authorise_request`], before
    /// the reader is borrowed), then the reader is borrowed and the job recorded
    /// ([`tsm::Issuer::submit_claimed`]), then it runs ([`start`]).
    async fn run(
        self,
        req: impl FnOnce(&tsm::Issuer) -> Result<tsm::Request, tsm::Error> + Send + 'static,
    ) -> Result<Response, ApiError> {
        let JobCall {
            api,
            actor,
            reader,
            asynchronous,
        } = self;
        let (api2, actor2) = (api.clone(), actor.clone());
        let req = blocking(move || {
            let req = req(&api2.issuer)?;
            api2.issuer.authorise_request(&actor2, &req)?;
            Ok(req)
        })
        .await?;
        let chan = borrow_reader(&api, &reader).await?;
        let api2 = api.clone();
        let claimed = blocking(move || api2.issuer.submit_claimed(&actor, &req)).await?;
        start(api, claimed, chan, asynchronous).await
    }
}

/// The reader, once no other job holds it ([`crate::contact::READER_WAIT`]).
async fn borrow_reader(
    api: &IssuanceApi,
    reader: &ReaderRef,
) -> Result<relay::hub::RelayChannel, ApiError> {
    Ok(api
        .hub
        .channel_when_free(
            &reader.terminal,
            &reader.reader,
            crate::contact::READER_WAIT,
        )
        .await?)
}

/// Runs a claimed job on the card in `chan` ([`jobs::run_claimed`]: on its own task,
/// announced to the webhook) and answers: asynchronously `202` at once ([`jobs::accepted`]),
/// else the outcome when the run ends.
async fn start(
    api: Arc<IssuanceApi>,
    claimed: tsm::issuance::Claimed,
    chan: relay::hub::RelayChannel,
    asynchronous: bool,
) -> Result<Response, ApiError> {
    let job = claimed.job().clone();
    let (kind, card_number) = (job.kind.to_string(), job.card_number.clone());
    let mut chan = crate::metrics::MeteredChannel::new(chan, api.metrics.clone());
    let api2 = api.clone();
    let run = move || {
        measured(&api2, &kind, &card_number, || {
            api2.issuer.run_claimed_job(claimed, &mut chan)
        })
        .map_err(ApiError::from)
    };
    match jobs::run_claimed(&job, asynchronous, api.announcer(), run).await? {
        jobs::Started::Accepted(r) => Ok(r),
        jobs::Started::Ran(outcome) => Ok(Json(JobOutcome::from(outcome)).into_response()),
    }
}

/// Runs one job run (`run`) of `kind` on `card_number` and records it in the metrics: the
/// run, its end (the job's state after it, read from the store, or `refused` when no job
/// of the card changed), the steps completed in it and the key store time it reports.
fn measured(
    api: &IssuanceApi,
    kind: &str,
    card_number: &str,
    run: impl FnOnce() -> Result<tsm::Outcome, tsm::Error>,
) -> Result<tsm::Outcome, tsm::Error> {
    let started_ms = now_ms();
    api.metrics.job_run_started(kind);
    let out = run();
    let store = api.issuer.store();
    // The job this run touched: the outcome's, else the card's newest one changed since.
    let job = match &out {
        Ok(o) => Some(o.job.clone()),
        Err(_) => store.jobs_of_card(card_number).ok().and_then(|jobs| {
            jobs.into_iter()
                .filter(|j| j.updated_ms >= started_ms)
                .max_by_key(|j| j.id)
        }),
    };
    match job {
        Some(job) => {
            let steps = store
                .job_steps(job.id)
                .map(|steps| {
                    steps
                        .iter()
                        .filter(|s| s.finished_ms.is_some_and(|t| t >= started_ms))
                        .count() as u64
                })
                .unwrap_or(0);
            api.metrics
                .job_run_ended(&job.kind.to_string(), &job.state.to_string(), steps);
        }
        None => api.metrics.job_run_ended(kind, "refused", 0),
    }
    if let Ok(o) = &out {
        if !o.timing.keys.is_zero() {
            api.metrics.keystore_operation("derive", o.timing.keys);
        }
    }
    out
}

/// Now, in Unix milliseconds (as the store records jobs and steps).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[utoipa::path(post, path = "/api/v1/cards/{card_number}/write",
    params(CardNumber, PreferHeader),
    request_body = WriteRequest,
    responses(JobResponses))]
async fn write(
    caller: Auth<Operate>,
    State(api): Shared,
    headers: HeaderMap,
    Path(card_number): Path<String>,
    extract::Json(body): extract::Json<WriteRequest>,
) -> Result<Response, ApiError> {
    let reader = ReaderRef {
        terminal: body.terminal,
        reader: body.reader,
    };
    JobCall::new(api, &caller, &headers, reader)
        .run(move |_| {
            Ok(tsm::Request::Write {
                card_number,
                category: body.category,
                install_apps: body.install_apps.unwrap_or(true),
                perso: apdu::parse_hex(&body.perso).map_err(|e| invalid("perso", e))?,
            })
        })
        .await
}

#[utoipa::path(post, path = "/api/v1/cards/{card_number}/rewrite",
    params(CardNumber, PreferHeader),
    request_body = RewriteRequest,
    responses(JobResponses))]
async fn rewrite(
    caller: Auth<Operate>,
    State(api): Shared,
    headers: HeaderMap,
    Path(card_number): Path<String>,
    extract::Json(body): extract::Json<RewriteRequest>,
) -> Result<Response, ApiError> {
    let reader = ReaderRef {
        terminal: body.terminal,
        reader: body.reader,
    };
    JobCall::new(api, &caller, &headers, reader)
        .run(move |issuer| {
            Ok(tsm::Request::Rewrite {
                category: category_of(issuer, &card_number, body.category)?,
                card_number,
                to_version: body.to_version,
            })
        })
        .await
}

#[utoipa::path(post, path = "/api/v1/cards/{card_number}/clear",
    params(CardNumber, PreferHeader),
    request_body = ClearRequest,
    responses(JobResponses))]
async fn clear(
    caller: Auth<Operate>,
    State(api): Shared,
    headers: HeaderMap,
    Path(card_number): Path<String>,
    extract::Json(body): extract::Json<ClearRequest>,
) -> Result<Response, ApiError> {
    let reader = ReaderRef {
        terminal: body.terminal,
        reader: body.reader,
    };
    JobCall::new(api, &caller, &headers, reader)
        .run(move |issuer| {
            Ok(tsm::Request::Clear {
                category: category_of(issuer, &card_number, body.category)?,
                card_number,
            })
        })
        .await
}

#[utoipa::path(post, path = "/api/v1/cards/{card_number}/resume",
    params(CardNumber, PreferHeader),
    request_body = ReaderRef,
    responses(JobResponses))]
async fn resume(
    caller: Auth<Operate>,
    State(api): Shared,
    headers: HeaderMap,
    Path(card_number): Path<String>,
    extract::Json(reader): extract::Json<ReaderRef>,
) -> Result<Response, ApiError> {
    let actor = caller.principal.actor();
    let (api2, actor2, number2) = (api.clone(), actor.clone(), card_number.clone());
    blocking(move || api2.issuer.authorise_resume(&actor2, &number2)).await?;
    let chan = borrow_reader(&api, &reader).await?;
    let api2 = api.clone();
    let claimed = blocking(move || {
        api2.issuer
            .claim_open_job(&actor, &card_number, &tsm::ResumeOptions::default())
    })
    .await?;
    start(api, claimed, chan, jobs::prefers_async(&headers)).await
}

#[utoipa::path(post, path = "/api/v1/cards/{card_number}/apps",
    params(CardNumber, PreferHeader),
    request_body = AppLoadRequest,
    responses(JobResponses))]
async fn load_app(
    caller: Auth<Operate>,
    State(api): Shared,
    headers: HeaderMap,
    Path(card_number): Path<String>,
    extract::Json(body): extract::Json<AppLoadRequest>,
) -> Result<Response, ApiError> {
    let reader = ReaderRef {
        terminal: body.terminal,
        reader: body.reader,
    };
    JobCall::new(api, &caller, &headers, reader)
        .run(move |issuer| {
            let app = tsm::AppChoice {
                package: body.package,
                applet: body.applet,
                instance: body.instance,
                privileges: body.privileges,
                params: body.params,
                perso: body.perso,
            }
            .resolve(issuer.store())?;
            Ok(tsm::Request::LoadApp { card_number, app })
        })
        .await
}

#[utoipa::path(post, path = "/api/v1/cards/{card_number}/apps/{instance}/delete",
    params(CardNumber, ("instance" = String, Path, description = "Instance AID, hex", pattern = "^([0-9A-Fa-f]{2}){5,16}$"), PreferHeader),
    request_body = ReaderRef,
    responses(JobResponses))]
async fn delete_app(
    caller: Auth<Operate>,
    State(api): Shared,
    headers: HeaderMap,
    Path((card_number, instance)): Path<(String, String)>,
    extract::Json(reader): extract::Json<ReaderRef>,
) -> Result<Response, ApiError> {
    JobCall::new(api, &caller, &headers, reader)
        .run(move |_| {
            use std::str::FromStr;
            let instance = gp::aid::Aid::from_str(&instance).map_err(|e| invalid("instance", e))?;
            Ok(tsm::Request::DeleteApp {
                card_number,
                instance,
            })
        })
        .await
}

/// `GET /api/v1/terminal/ws`: the terminal token is checked before the WebSocket upgrade,
/// so a request without one answers `401` JSON whatever its headers.
#[utoipa::path(get, path = "/api/v1/terminal/ws",
    responses(
        (status = 101, description = "WebSocket of an issuing terminal (relay protocol)"),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "Not a terminal token", body = ErrorBody),
        (status = 405, description = "Not a GET", body = ErrorBody),
        (status = 426, description = "Upgrade required", body = ErrorBody),
    ))]
async fn terminal_ws(
    caller: Auth<LendReaders>,
    State(api): Shared,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    accept_terminal(&api.hub, caller, &headers, ws)
}

/// The body of both platforms' `GET /api/v1/terminal/ws` (this one and the AP's,
/// [`crate::ap`]): the upgrade refused as `invalid_request`, else the terminal's WebSocket
/// handed to `hub` (relay protocol) under its principal's name. A terminal that came with a
/// bearer token ([`Auth`] took it) stays connected while the token is valid
/// ([`TokenTable::guard_hub`]); one that came with a client certificate, while it is
/// connected.
pub(crate) fn accept_terminal(
    hub: &Arc<Hub>,
    caller: Auth<LendReaders>,
    headers: &HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| ApiError::new(e.status(), "invalid_request", e.body_text()))?;
    Ok(match crate::auth::bearer_of(headers) {
        Some(token) => hub.accept_token(caller.principal.name, token, ws),
        None => hub.accept(caller.principal.name, ws),
    })
}
