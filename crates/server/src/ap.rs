//! The application provider's SSD API (issue #10; `cardwright serve --role ap`).
//!
//! Operators (bearer tokens) run [`tsm::ssd::ApPlatform`] on the card in a reader of one of
//! the AP's terminals (`cardwright agent --server`, through the relay hub at
//! [`relay::WS_PATH`]); the platform talks to the card issuer over its
//! [`tsm::ssd::CardIssuerLink`] ([`crate::partner_client`] in production).
//! * `POST /api/v1/ssd/requests` `{card_number, aid, model, terminal, reader}`: asks the CI
//!   for the SSD, relays the CI's commands to the card, takes the initial keys over and
//!   replaces them; answers the SSD as the AP records it.
//! * `GET /api/v1/ssd/{card_number}/{aid}`: the SSD as the AP records it.
//! * `POST /api/v1/ssd/{card_number}/{aid}/renew` `{terminal, reader, force, reason}`.
//! * `GET /api/v1/jobs/{id}`: one of the AP's jobs, its state and its steps.
//! * `GET /api/v1/terminal/ws`: the AP's terminals (terminal tokens).
//!
//! The two job routes (request, renew) answer when the job has run, or with
//! `Prefer: respond-async` (RFC 7240) `202 Accepted` and `Location: /api/v1/jobs/{id}` once
//! the job is recorded and claimed, before the card work, as the issuance API does
//! ([`crate::jobs`]); what is refused before the card (the CI's refusal included) is
//! refused at once either way. The AP platform acts for one partner: its operators and
//! viewers read all of its jobs (jobs that are not this AP's are unknown here). With a
//! webhook every job run through it is announced when it ends.
//!
//! The document: `GET /api/openapi-ap.json`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use relay::hub::Hub;
use tsm::ssd::ApPlatform;
use utoipa::OpenApi;

use crate::auth::{Auth, HasTokens, LendReaders, Operate, Read, TokenTable};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{self, Path};
use crate::jobs::{self, PreferHeader};
use crate::openapi::Routes;
use crate::partner::blocking;
use crate::ssd_wire::*;
use crate::webhook::Webhook;

/// What the AP's routes need.
pub struct ApApi {
    ap: Arc<ApPlatform>,
    hub: Arc<Hub>,
    tokens: Arc<TokenTable>,
    webhook: Option<Arc<Webhook>>,
}

impl std::fmt::Debug for ApApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApApi")
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl HasTokens for ApApi {
    fn tokens(&self) -> &TokenTable {
        &self.tokens
    }
}

impl ApApi {
    /// The API over `ap`, accepting `tokens` (operators, viewers, terminals); each APDU
    /// round trip through a terminal waits at most `relay_timeout`.
    pub fn new(ap: Arc<ApPlatform>, tokens: TokenTable, relay_timeout: Duration) -> Arc<Self> {
        Self::with_webhook(ap, tokens, relay_timeout, None)
    }

    /// [`ApApi::new`], announcing the end of every job run through it to `webhook`
    /// ([`crate::webhook`], as the issuance API does).
    pub fn with_webhook(
        ap: Arc<ApPlatform>,
        tokens: TokenTable,
        relay_timeout: Duration,
        webhook: Option<Webhook>,
    ) -> Arc<Self> {
        let tokens = Arc::new(tokens);
        let hub = Hub::new(tokens.clone(), relay_timeout);
        tokens.guard_hub(&hub);
        Arc::new(Self {
            ap,
            hub,
            tokens,
            webhook: webhook.map(Arc::new),
        })
    }

    fn announcer(&self) -> jobs::Announcer {
        jobs::Announcer::new(self.webhook.clone(), self.ap.store().clone())
    }

    /// The relay hub the AP's terminals connect to.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The platform.
    pub fn platform(&self) -> &Arc<ApPlatform> {
        &self.ap
    }
}

/// The routes, recorded for the OpenAPI test.
pub fn route_list(api: Arc<ApApi>) -> Routes<()> {
    Routes::new()
        .route("/api/openapi-ap.json", &["get"], get(openapi))
        .route("/api/v1/ssd/requests", &["post"], post(request))
        .route("/api/v1/ssd/{card_number}/{aid}", &["get"], get(status))
        .route(
            "/api/v1/ssd/{card_number}/{aid}/renew",
            &["post"],
            post(renew),
        )
        .route("/api/v1/jobs/{id}", &["get"], get(job))
        .route(relay::WS_PATH, &["get"], get(terminal_ws))
        .with_state(api)
}

/// The routes without fallbacks.
pub fn routes(api: Arc<ApApi>) -> Router {
    route_list(api).into_router()
}

/// The routes alone, with JSON answers for unknown routes and methods.
pub fn router(api: Arc<ApApi>) -> Router {
    crate::finish(routes(api))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cardwright application provider: SSD API",
        description = "The application provider's platform (issue #10): ask the card issuer for a supplementary security domain on a card in one of its terminals, take it over, renew its keys. Every error answers {\"error\", \"reason\"}.",
        version = "1"
    ),
    paths(openapi, request, status, renew, job, terminal_ws),
    components(schemas(ErrorBody, Model, ApSsdRequestBody, ApJobDone, RenewBody, SsdView,
        KeyVersionView, RenewalView, jobs::AcceptedJob, jobs::JobStatus, jobs::StepStatus,
        jobs::JobEnded)),
    security(("bearer" = []))
)]
struct ApDoc;

/// The AP's SSD API document.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    crate::openapi::with_extractor_refusals(crate::openapi::with_bearer(ApDoc::openapi()))
}

/// `GET /api/openapi-ap.json`: this document.
#[utoipa::path(get, path = "/api/openapi-ap.json", security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
async fn openapi() -> Response {
    match openapi_document().to_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(_) => ApiError::internal("the OpenAPI document").into_response(),
    }
}

type Shared = State<Arc<ApApi>>;

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

#[utoipa::path(post, path = "/api/v1/ssd/requests", request_body = ApSsdRequestBody,
    params(PreferHeader),
    responses(
        (status = 200, description = "The SSD is on the card and the AP's (authorized) or managed for it (delegated)", body = ApJobDone),
        (status = 202, description = "Prefer: respond-async: the card issuer accepted the request, the AP's job is recorded and runs; follow it at Location", body = jobs::AcceptedJob,
            headers(("Location" = String, description = "The job: /api/v1/jobs/{id}"),
                    ("Preference-Applied" = String, description = "respond-async (RFC 7240)"))),
        (status = 400, description = "Bad request or body", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not, or the card issuer refused (the code names the rule)", body = ErrorBody),
        (status = 404, description = "Unknown terminal or reader, or no card in it", body = ErrorBody),
        (status = 409, description = "A job for the card is not finished", body = ErrorBody),
        (status = 502, description = "The card, the terminal or the card issuer failed; the job is resumable", body = ErrorBody),
    ))]
async fn request(
    _caller: Auth<Operate>,
    State(api): Shared,
    headers: HeaderMap,
    extract::Json(body): extract::Json<ApSsdRequestBody>,
) -> Result<Response, ApiError> {
    let chan = api
        .hub
        .channel_when_free(&body.terminal, &body.reader, crate::contact::READER_WAIT)
        .await?;
    let api2 = api.clone();
    let claimed = blocking(move || {
        let req = tsm::ssd::SsdRequest {
            card_number: body.card_number,
            aid: body.aid.to_ascii_uppercase(),
            model: body.model.into(),
        };
        let job = api2.ap.request(&req)?;
        Ok(api2.ap.claim(job)?)
    })
    .await?;
    run_claimed(api, claimed, chan, &headers, true).await
}

/// Runs a claimed job on the card in `chan` ([`jobs::run_claimed`]) and answers `202`
/// (`Prefer: respond-async`) or, when it has run, the SSD (with the job id if `with_job`).
async fn run_claimed(
    api: Arc<ApApi>,
    claimed: tsm::ssd::ClaimedSsd,
    mut chan: relay::hub::RelayChannel,
    headers: &HeaderMap,
    with_job: bool,
) -> Result<Response, ApiError> {
    let job = claimed.job().clone();
    let id = job.id;
    let (announcer, api) = (api.announcer(), api.clone());
    let run = move || {
        let ssd = api.ap.run_claimed(claimed, &mut chan)?;
        Ok(ApJobDone {
            job: with_job.then_some(id),
            ssd: SsdView::from(&ssd),
        })
    };
    match jobs::run_claimed(&job, jobs::prefers_async(headers), announcer, run).await? {
        jobs::Started::Accepted(r) => Ok(r),
        jobs::Started::Ran(done) => Ok(Json(done).into_response()),
    }
}

#[utoipa::path(get, path = "/api/v1/ssd/{card_number}/{aid}", params(SsdPath),
    responses(
        (status = 200, description = "The SSD as the AP records it", body = SsdView),
        (status = 400, description = "Bad AID", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "No such SSD", body = ErrorBody),
    ))]
async fn status(
    _caller: Auth<Read>,
    State(api): Shared,
    Path((card_number, aid)): Path<(String, String)>,
) -> Result<Json<SsdView>, ApiError> {
    blocking(move || match api.ap.status(&card_number, &aid)? {
        Some(r) => Ok(Json(SsdView::from(&r))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no SSD {aid} on card {card_number}"),
        )),
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/ssd/{card_number}/{aid}/renew", params(SsdPath, PreferHeader),
    request_body = RenewBody,
    responses(
        (status = 200, description = "Renewed", body = ApJobDone),
        (status = 202, description = "Prefer: respond-async: the renewal job is recorded and runs; follow it at Location", body = jobs::AcceptedJob,
            headers(("Location" = String, description = "The job: /api/v1/jobs/{id}"),
                    ("Preference-Applied" = String, description = "respond-async (RFC 7240)"))),
        (status = 400, description = "Bad body (terminal and reader are required)", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "No such SSD, terminal or reader", body = ErrorBody),
        (status = 409, description = "Nothing to renew, or a job is running", body = ErrorBody),
        (status = 502, description = "The card, the terminal or the card issuer failed; the job is resumable", body = ErrorBody),
    ))]
async fn renew(
    _caller: Auth<Operate>,
    State(api): Shared,
    headers: HeaderMap,
    Path((card_number, aid)): Path<(String, String)>,
    extract::Json(body): extract::Json<RenewBody>,
) -> Result<Response, ApiError> {
    let (Some(terminal), Some(reader)) = (body.terminal.as_deref(), body.reader.as_deref()) else {
        return Err(ApiError::bad_request(
            "terminal and reader are required: the card is renewed in a reader",
        ));
    };
    let chan = api
        .hub
        .channel_when_free(terminal, reader, crate::contact::READER_WAIT)
        .await?;
    let api2 = api.clone();
    let claimed = blocking(move || {
        if body.force {
            let reason = body.reason.as_deref().unwrap_or("forced by an operator");
            api2.ap
                .mark_current_compromised(&card_number, &aid, None, reason)?;
        }
        let job = api2.ap.renewal_job(&card_number, &aid)?;
        Ok(api2.ap.claim(job)?)
    })
    .await?;
    run_claimed(api, claimed, chan, &headers, false).await
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", params(jobs::JobId),
    responses(
        (status = 200, description = "One of the AP's jobs (a take-over or a renewal) and its steps", body = jobs::JobStatus),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "No such job of this AP", body = ErrorBody),
    ))]
async fn job(
    _caller: Auth<Read>,
    State(api): Shared,
    Path(id): Path<i64>,
) -> Result<Json<jobs::JobStatus>, ApiError> {
    blocking(move || jobs::status_of(api.ap.job_status(id))).await
}

/// `GET /api/v1/terminal/ws`: the AP's terminals connect here (terminal token checked
/// before the upgrade).
#[utoipa::path(get, path = "/api/v1/terminal/ws",
    responses(
        (status = 101, description = "WebSocket of an AP terminal (relay protocol)"),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "Not a terminal token", body = ErrorBody),
        (status = 426, description = "Upgrade required", body = ErrorBody),
    ))]
async fn terminal_ws(
    caller: Auth<LendReaders>,
    State(api): Shared,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    crate::issuance::accept_terminal(&api.hub, caller, &headers, ws)
}
