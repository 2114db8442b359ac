//! Campaigns over the issuance API, and the campaign workers of `serve` nodes (issue 13).
//!
//! Routes (bearer token of an operator; a viewer may only read; each campaign is its card
//! issuer's alone: another tenant's is refused `403` and the refusal audited, as
//! [`tsm::campaign`] decides):
//! * `POST /api/v1/campaigns` `{category, cards: [N…]}` or `{category, first, last}`: a new
//!   campaign (state `created`), `201` with its URL.
//! * `GET  /api/v1/campaigns[?before=ID&limit=N]`: the tenant's campaigns, newest first.
//! * `GET  /api/v1/campaigns/{id}`: progress (done, failed, pending, claimed, total, rate,
//!   ETA) and state.
//! * `GET  /api/v1/campaigns/{id}/failures[?after=N&limit=N]`: the failed cards and why.
//! * `POST /api/v1/campaigns/{id}/start|pause|resume|cancel`: steering; answers the status.
//! * `POST /api/v1/campaigns/{id}/retry`: a sub-campaign of the failed cards, `201`.
//!
//! Workers ([`CampaignWorkers`]): `serve --campaign-workers N` runs N threads that claim the
//! items of running campaigns from the shared database under a lease
//! ([`tsm::campaign::Worker`]) and write each card on a card from a [`CardSource`]:
//! fresh virtual cards in this process, or the free readers of the terminals connected to
//! this node. Any number of nodes share one database; a node that dies leaves its items to
//! the others when their leases end. On shutdown the workers finish the card in hand and
//! give back the items they had claimed but not started.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use relay::hub::{Hub, HubError};
use serde::{Deserialize, Serialize};
use transport::CardChannel;
use tsm::campaign;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Auth, Operate, Read};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{self, Path};
use crate::issuance::{blocking, IssuanceApi};
use crate::metrics::{MeteredChannel, Metrics};

/// The most card numbers a `cards` list may hold (larger campaigns: a range).
pub const MAX_LISTED_CARDS: usize = 50_000;

/// The most cards of a range (`first`..`last`).
pub const MAX_RANGE_CARDS: u64 = 1_000_000;

/// A campaign's URL.
pub fn campaign_url(id: i64) -> String {
    format!("/api/v1/campaigns/{id}")
}

/// `POST /api/v1/campaigns` request: the category and either the card numbers (`cards`)
/// or a range (`first` and `last`, as many digits each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"category": "gold", "first": "4711000000000000", "last": "4711000000000009"}))]
pub struct CampaignCreate {
    /// The card category the cards are written in (one of the caller's tenant).
    #[schema(min_length = 1)]
    pub category: String,
    /// The card numbers (each once).
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(schema_with = card_list_schema)]
    pub cards: Option<Vec<String>>,
    /// The first card number of a range (as many digits as `last`).
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(pattern = "^[0-9]{1,19}$", nullable = false)]
    pub first: Option<String>,
    /// The last card number of a range (at most 1,000,000 cards).
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(pattern = "^[0-9]{1,19}$", nullable = false)]
    pub last: Option<String>,
}

/// An optional field that, when present, is not `null` (the document says so: a `null`
/// field is a field given, which `CampaignCreate`'s choice counts).
fn given<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `cards`: 1 to [`MAX_LISTED_CARDS`] card numbers of 1 to 20 digits, each once.
fn card_list_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9]{1,20}$")),
        )
        .min_items(Some(1))
        .max_items(Some(MAX_LISTED_CARDS))
        .unique_items(true)
        .description(Some("The card numbers (each once)."))
        .build()
}

/// A campaign made (`201 Created`, `Location` its URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CampaignCreated {
    /// Campaign id.
    pub campaign: i64,
    /// Its cards.
    pub cards: u64,
    /// `created`: start it with `POST {url}/start`.
    pub state: String,
    /// Where to follow it (`GET`): `/api/v1/campaigns/{id}`.
    pub url: String,
}

/// A campaign as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CampaignSummary {
    /// Campaign id.
    pub campaign: i64,
    /// The card category.
    pub category: String,
    /// `created`, `running`, `paused`, `cancelled` or `finished` (nothing left to claim).
    pub state: String,
    /// The campaign whose failed cards this one retries.
    pub parent: Option<i64>,
    /// Who created it (`tenant/user`).
    pub created_by: String,
    /// When (Unix ms).
    pub created_ms: i64,
}

impl From<&campaign::Record> for CampaignSummary {
    fn from(c: &campaign::Record) -> Self {
        CampaignSummary {
            campaign: c.id,
            category: c.category.clone(),
            state: c.state.to_string(),
            parent: c.parent,
            created_by: c.created_by.clone(),
            created_ms: c.created_ms,
        }
    }
}

/// `GET /api/v1/campaigns/{id}` answer: the campaign and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignStatus {
    /// Campaign id.
    pub campaign: i64,
    /// The card category.
    pub category: String,
    /// `created`, `running`, `paused`, `cancelled` or `finished` (nothing left to claim).
    pub state: String,
    /// The campaign whose failed cards this one retries.
    pub parent: Option<i64>,
    /// Who created it (`tenant/user`).
    pub created_by: String,
    /// When (Unix ms).
    pub created_ms: i64,
    /// Cards in all.
    pub total: u64,
    /// Cards written (or found written).
    pub done: u64,
    /// Cards that failed (`GET …/failures` says why).
    pub failed: u64,
    /// Cards waiting for a worker.
    pub pending: u64,
    /// Cards a worker holds now.
    pub claimed: u64,
    /// Cards written per second over the last minute.
    pub rate_per_s: f64,
    /// Seconds until the pending and claimed cards are done at that rate (none: no card
    /// written in the last minute).
    pub eta_s: Option<u64>,
}

impl From<&campaign::Status> for CampaignStatus {
    fn from(s: &campaign::Status) -> Self {
        let c = &s.campaign;
        CampaignStatus {
            campaign: c.id,
            category: c.category.clone(),
            state: c.state.to_string(),
            parent: c.parent,
            created_by: c.created_by.clone(),
            created_ms: c.created_ms,
            total: s.total,
            done: s.counts.done,
            failed: s.counts.failed,
            pending: s.counts.pending,
            claimed: s.counts.claimed,
            rate_per_s: s.rate_per_s,
            eta_s: s.eta_s,
        }
    }
}

/// `GET /api/v1/campaigns` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CampaignList {
    /// The tenant's campaigns, newest first.
    pub campaigns: Vec<CampaignSummary>,
    /// When there may be more: the `before` of the next page.
    pub next_before: Option<i64>,
}

/// A failed card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CampaignFailure {
    /// The card number.
    pub card_number: String,
    /// Why its write failed.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
}

/// `GET /api/v1/campaigns/{id}/failures` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CampaignFailures {
    /// Campaign id.
    pub campaign: i64,
    /// Failed cards, in card-number order.
    pub failures: Vec<CampaignFailure>,
    /// When there may be more: the `after` of the next page.
    pub next_after: Option<String>,
}

/// The campaign id in the campaign routes' paths.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only documents the path; handlers extract `Path<i64>`
struct CampaignId {
    /// Campaign id.
    #[param(minimum = 1)]
    id: i64,
}

/// `GET /api/v1/campaigns` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only campaigns older than this one (the `next_before` of the previous page).
    #[param(minimum = 1)]
    before: Option<i64>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `GET /api/v1/campaigns/{id}/failures` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FailuresQuery {
    /// Only cards after this card number (the `next_after` of the previous page).
    #[param(pattern = "^[0-9]{1,20}$")]
    after: Option<String>,
    /// At most this many (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// States in the document what the server requires of a create request: exactly one of
/// `cards` and the range (`first` with `last`).
pub(crate) fn document_card_choice(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder};
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let Some(create) = components.schemas.remove("CampaignCreate") else {
        return;
    };
    let exactly_one = OneOfBuilder::new()
        .item(ObjectBuilder::new().required("cards"))
        .item(ObjectBuilder::new().required("first").required("last"));
    components.schemas.insert(
        "CampaignCreate".into(),
        AllOfBuilder::new().item(create).item(exactly_one).into(),
    );
}

fn limit(given: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match given {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(format!("limit: 1 to {max}"))),
    }
}

type Shared = State<Arc<IssuanceApi>>;

/// The card numbers a create request names (a range expanded: call it off the async
/// workers).
fn cards_of(body: CampaignCreate) -> Result<Vec<String>, tsm::Error> {
    match (body.cards, body.first, body.last) {
        (Some(cards), None, None) => {
            if cards.len() > MAX_LISTED_CARDS {
                return Err(tsm::Error::Invalid(format!(
                    "cards: at most {MAX_LISTED_CARDS} (give a range for more)"
                )));
            }
            Ok(cards)
        }
        (None, Some(first), Some(last)) => campaign::card_range(&first, &last, MAX_RANGE_CARDS),
        _ => Err(tsm::Error::Invalid(
            "give either cards (a list of card numbers) or first and last (a range)".into(),
        )),
    }
}

fn created(id: i64, cards: u64) -> Response {
    let url = campaign_url(id);
    let body = CampaignCreated {
        campaign: id,
        cards,
        state: campaign::State::Created.to_string(),
        url: url.clone(),
    };
    let mut r = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[utoipa::path(post, path = "/api/v1/campaigns", operation_id = "campaign_create",
    request_body = CampaignCreate,
    responses(
        (status = 201, description = "The campaign, created (start it)", body = CampaignCreated,
            headers(("Location" = String, description = "The campaign: /api/v1/campaigns/{id}"))),
        (status = 400, description = "Bad body: no cards, a bad card number or range, a card listed twice", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not, or the category is another tenant's", body = ErrorBody),
        (status = 404, description = "Unknown category", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
    ))]
pub(crate) async fn create(
    caller: Auth<Operate>,
    State(api): Shared,
    extract::Json(body): extract::Json<CampaignCreate>,
) -> Result<Response, ApiError> {
    let actor = caller.principal.actor();
    let (id, n) = blocking(move || {
        let category = body.category.clone();
        let numbers = cards_of(body)?;
        let id = campaign::create(api.issuer().store(), &actor, &category, &numbers)?;
        Ok((id, numbers.len() as u64))
    })
    .await?;
    Ok(created(id, n))
}

#[utoipa::path(get, path = "/api/v1/campaigns", operation_id = "campaign_list",
    params(ListQuery),
    responses(
        (status = 200, description = "The tenant's campaigns, newest first", body = CampaignList),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ))]
pub(crate) async fn list(
    caller: Auth<Read>,
    State(api): Shared,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<CampaignList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let n = limit(q.limit, 100, 1000)?;
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::bad_request("before: a campaign id (1 or more)"));
    }
    let actor = caller.principal.actor();
    blocking(move || {
        let all = campaign::list(api.issuer().store(), &actor, q.before, n)?;
        let next_before = (all.len() == n as usize)
            .then(|| all.last().map(|c| c.id))
            .flatten();
        Ok(Json(CampaignList {
            campaigns: all.iter().map(CampaignSummary::from).collect(),
            next_before,
        }))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}", operation_id = "campaign_status",
    params(CampaignId),
    responses(
        (status = 200, description = "The campaign and its progress", body = CampaignStatus),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not, or the campaign is another tenant's", body = ErrorBody),
        (status = 404, description = "Unknown campaign", body = ErrorBody),
    ))]
pub(crate) async fn status(
    caller: Auth<Read>,
    State(api): Shared,
    Path(id): Path<i64>,
) -> Result<Json<CampaignStatus>, ApiError> {
    let actor = caller.principal.actor();
    blocking(move || {
        let s = campaign::status(api.issuer().store(), &actor, id)?;
        Ok(Json(CampaignStatus::from(&s)))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}/failures", operation_id = "campaign_failures",
    params(CampaignId, FailuresQuery),
    responses(
        (status = 200, description = "The failed cards and why, in card-number order", body = CampaignFailures),
        (status = 400, description = "The id is not a number, or a bad query", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not, or the campaign is another tenant's", body = ErrorBody),
        (status = 404, description = "Unknown campaign", body = ErrorBody),
    ))]
pub(crate) async fn failures(
    caller: Auth<Read>,
    State(api): Shared,
    Path(id): Path<i64>,
    query: Result<Query<FailuresQuery>, QueryRejection>,
) -> Result<Json<CampaignFailures>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let n = limit(q.limit, 1000, 10_000)?;
    if let Some(a) = &q.after {
        if a.is_empty() || a.len() > 20 || !a.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::bad_request("after: 1 to 20 digits"));
        }
    }
    let actor = caller.principal.actor();
    blocking(move || {
        let page = campaign::failures(api.issuer().store(), &actor, id, q.after.as_deref(), n)?;
        let next_after = (page.len() == n as usize)
            .then(|| page.last().map(|f| f.card_number.clone()))
            .flatten();
        Ok(Json(CampaignFailures {
            campaign: id,
            failures: page
                .into_iter()
                .map(|f| CampaignFailure {
                    card_number: f.card_number,
                    reason: f.reason,
                    attempts: f.attempts,
                })
                .collect(),
            next_after,
        }))
    })
    .await
}

/// Steers campaign `id` (`start`, `pause`, `resume`, `cancel`) and answers its status.
async fn steer(
    caller: Auth<Operate>,
    api: Arc<IssuanceApi>,
    id: i64,
    verb: &'static str,
) -> Result<Json<CampaignStatus>, ApiError> {
    let actor = caller.principal.actor();
    blocking(move || {
        let store = api.issuer().store();
        campaign::steer(store, &actor, id, verb)?;
        let s = campaign::status(store, &actor, id)?;
        Ok(Json(CampaignStatus::from(&s)))
    })
    .await
}

/// The answers of the steering routes, documented once.
struct SteerResponses;

impl utoipa::IntoResponses for SteerResponses {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        responses(&[
            ("200", "CampaignStatus", "Done: the campaign's status now"),
            ("400", "ErrorBody", "The id is not a number"),
            ("401", "ErrorBody", "No or unknown bearer token"),
            (
                "403",
                "ErrorBody",
                "The role may not, or the campaign is another tenant's",
            ),
            ("404", "ErrorBody", "Unknown campaign"),
            (
                "409",
                "ErrorBody",
                "The campaign's state does not allow it (e.g. start a cancelled one)",
            ),
        ])
    }
}

fn responses(
    list: &[(&str, &str, &str)],
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>>
{
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    list.iter()
        .map(|(status, schema, description)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(*schema)))
                .build();
            let response = ResponseBuilder::new()
                .description(*description)
                .content("application/json", content)
                .build();
            (status.to_string(), response.into())
        })
        .collect()
}

#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/start",
    operation_id = "campaign_start",
    params(CampaignId),
    responses(SteerResponses)
)]
pub(crate) async fn start(
    caller: Auth<Operate>,
    State(api): Shared,
    Path(id): Path<i64>,
) -> Result<Json<CampaignStatus>, ApiError> {
    steer(caller, api, id, "start").await
}

#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/pause",
    operation_id = "campaign_pause",
    params(CampaignId),
    responses(SteerResponses)
)]
pub(crate) async fn pause(
    caller: Auth<Operate>,
    State(api): Shared,
    Path(id): Path<i64>,
) -> Result<Json<CampaignStatus>, ApiError> {
    steer(caller, api, id, "pause").await
}

#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/resume",
    operation_id = "campaign_resume",
    params(CampaignId),
    responses(SteerResponses)
)]
pub(crate) async fn resume(
    caller: Auth<Operate>,
    State(api): Shared,
    Path(id): Path<i64>,
) -> Result<Json<CampaignStatus>, ApiError> {
    steer(caller, api, id, "resume").await
}

#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/cancel",
    operation_id = "campaign_cancel",
    params(CampaignId),
    responses(SteerResponses)
)]
pub(crate) async fn cancel(
    caller: Auth<Operate>,
    State(api): Shared,
    Path(id): Path<i64>,
) -> Result<Json<CampaignStatus>, ApiError> {
    steer(caller, api, id, "cancel").await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/retry", operation_id = "campaign_retry",
    params(CampaignId),
    responses(
        (status = 201, description = "A sub-campaign of the failed cards, created (start it)", body = CampaignCreated,
            headers(("Location" = String, description = "The sub-campaign: /api/v1/campaigns/{id}"))),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not, or the campaign is another tenant's", body = ErrorBody),
        (status = 404, description = "Unknown campaign", body = ErrorBody),
        (status = 409, description = "The campaign has no failed card", body = ErrorBody),
    ))]
pub(crate) async fn retry(
    caller: Auth<Operate>,
    State(api): Shared,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let actor = caller.principal.actor();
    let (sub, n) = blocking(move || {
        let store = api.issuer().store();
        let sub = campaign::retry(store, &actor, id)?;
        let n = store.campaign_counts(sub)?.pending;
        Ok((sub, n))
    })
    .await?;
    Ok(created(sub, n))
}

// ---------------------------------------------------------------------------------------
// Workers.

/// Where a campaign worker gets the card of an item.
#[derive(Debug, Clone)]
pub enum CardSource {
    /// A fresh virtual card (GP test keys, as a blank card comes from the factory) for each
    /// card number, in this process: for trials and tests of a campaign. With `dir`, each
    /// card is kept there as its state file `NUMBER.json` (created blank the first time,
    /// locked while in use), so that a card outlives the worker that wrote it, as a real
    /// card stays in its reader: the worker that takes over a dead node's item finds the
    /// card as it was left and resumes its job. Without, the card is gone with its worker.
    Virtual {
        /// Where the cards are kept (none: in memory only).
        dir: Option<PathBuf>,
    },
    /// A free reader with a card of a terminal connected to this node (its relay hub): the
    /// card in it is written with the item's card number. A reader is used once per card:
    /// again only after its card has been taken out.
    Terminals(Arc<Hub>),
}

/// Which readers of the terminals have had their card used.
#[derive(Debug, Default)]
struct ReaderBook {
    /// Readers whose card a worker has written (or tried to): not used again until the
    /// card is taken out.
    used: HashSet<(String, String)>,
}

impl CardSource {
    /// A channel to a fresh virtual card for `number`; `None` when its state file is in use
    /// elsewhere (another worker has the card).
    fn virtual_card(
        dir: Option<&std::path::Path>,
        number: &str,
    ) -> Result<Option<Box<dyn CardChannel>>, tsm::Error> {
        let name = format!("virtual card {number}");
        let Some(dir) = dir else {
            let card = card::VirtualCard::new(card::CardConfig::default());
            return Ok(Some(Box::new(card::VirtualChannel::named(card, name))));
        };
        let path = dir.join(format!("{number}.json"));
        match card::VirtualCard::open(&path, card::CardConfig::default()) {
            Ok(card) => Ok(Some(Box::new(card::VirtualChannel::named(card, name)))),
            Err(card::CardError::InUse { .. }) => Ok(None),
            Err(e) => Err(tsm::Error::Invalid(format!("{name}: {e}"))),
        }
    }
}

/// Takes a free reader with an unused card of a terminal of `hub`.
fn free_reader(
    hub: &Hub,
    book: &Mutex<ReaderBook>,
) -> Option<((String, String), relay::hub::RelayChannel)> {
    let terminals = hub.terminals();
    let mut book = book.lock().unwrap_or_else(|e| e.into_inner());
    // A reader without a card (or gone) may be used again when a card comes in.
    let with_card: HashSet<(String, String)> = terminals
        .iter()
        .flat_map(|t| {
            t.readers
                .iter()
                .filter(|r| r.card_present)
                .map(|r| (t.terminal.clone(), r.name.clone()))
        })
        .collect();
    book.used.retain(|k| with_card.contains(k));
    for key in with_card {
        if book.used.contains(&key) {
            continue;
        }
        match hub.channel(&key.0, &key.1) {
            Ok(chan) => return Some((key, chan)),
            Err(HubError::Busy { .. } | HubError::NoCard { .. }) => continue,
            Err(e) => tracing::debug!(error = %e, "campaign worker: reader gone"),
        }
    }
    None
}

/// How the workers of a node run.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Worker threads.
    pub workers: u32,
    /// How long a claimed item stays a worker's (and its card's job, [`tsm::IssuerConfig::lease`]
    /// of the issuer given): after a crash, other nodes take them up when it ends.
    pub lease: Duration,
    /// Items claimed at a time by a worker (virtual cards; with terminals, one).
    pub batch: u32,
    /// How long a worker waits when there is nothing to do.
    pub idle: Duration,
    /// Stop each worker when it finds nothing to do (`campaign run`), instead of waiting
    /// for more (`serve`).
    pub until_idle: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            workers: 1,
            lease: Duration::from_secs(60),
            batch: 8,
            idle: Duration::from_millis(500),
            until_idle: false,
        }
    }
}

/// A stop flag that sleeping workers wake up for.
#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    fn is_set(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn set(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }
    /// Sleeps `d` unless stopped (now or meanwhile); `false` if stopped.
    fn sleep(&self, d: Duration) -> bool {
        let g = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        let (g, _) = self
            .wake
            .wait_timeout_while(g, d, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
        !*g
    }
}

/// A lease owner name unique to this process: host, process id and a random token.
pub fn node_name() -> String {
    let mut b = [0u8; 6];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b.copy_from_slice(&t.to_be_bytes()[10..]);
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().chars().take(64).collect::<String>())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host} pid {} {}", std::process::id(), apdu::hex(&b))
}

/// The campaign workers of a node (threads). [`CampaignWorkers::stop`] ends them.
#[derive(Debug)]
pub struct CampaignWorkers {
    stop: Arc<Stop>,
    threads: Vec<JoinHandle<Result<campaign::Pass, tsm::Error>>>,
    owners: Vec<String>,
    store: tsm::Store,
}

impl CampaignWorkers {
    /// Starts `options.workers` threads writing campaign cards with `issuer` on cards
    /// from `source`, counted in `metrics`; owners `NODE worker I` with `node` from
    /// [`node_name`].
    pub fn start(
        issuer: Arc<tsm::Issuer>,
        source: CardSource,
        options: WorkerOptions,
        metrics: Arc<Metrics>,
        node: &str,
    ) -> std::io::Result<CampaignWorkers> {
        let stop = Arc::new(Stop::default());
        let book = Arc::new(Mutex::new(ReaderBook::default()));
        let source = Arc::new(source);
        let mut threads = Vec::new();
        let mut owners = Vec::new();
        for w in 0..options.workers.max(1) {
            let owner = format!("{node} worker {w}");
            owners.push(owner.clone());
            let (issuer, source, options, metrics, stop, book) = (
                issuer.clone(),
                source.clone(),
                options.clone(),
                metrics.clone(),
                stop.clone(),
                book.clone(),
            );
            let thread = std::thread::Builder::new()
                .name(format!("campaign-{w}"))
                .spawn(move || work(&issuer, &source, &options, &metrics, &stop, &book, owner))?;
            threads.push(thread);
        }
        Ok(CampaignWorkers {
            stop,
            threads,
            owners,
            store: issuer.store().clone(),
        })
    }

    /// Waits for the workers to end (with [`WorkerOptions::until_idle`]: when nothing is
    /// left to claim), then gives back what they hold; what they did in all, or the first
    /// error that stopped one.
    pub fn wait(self) -> Result<campaign::Pass, tsm::Error> {
        let mut total = campaign::Pass::default();
        let mut first_error = None;
        for t in self.threads {
            match t.join() {
                Ok(Ok(p)) => {
                    total.claimed += p.claimed;
                    total.done += p.done;
                    total.failed += p.failed;
                    total.deferred += p.deferred;
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error
                        .get_or_insert(tsm::Error::Invalid("a campaign worker panicked".into()));
                }
            }
        }
        for owner in &self.owners {
            match self.store.release_campaign_items(owner) {
                Ok(0) => {}
                Ok(n) => tracing::info!(items = n, "campaign items given back"),
                Err(e) => {
                    tracing::warn!(error = %e, "campaign items not given back (they come back when their lease ends)")
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    /// Stops the workers: each finishes the card in hand, and the items claimed but not
    /// started are given back at once. Blocks until then.
    pub fn stop(self) -> Result<campaign::Pass, tsm::Error> {
        self.stop.set();
        self.wait()
    }
}

/// One worker thread's loop.
fn work(
    issuer: &tsm::Issuer,
    source: &CardSource,
    options: &WorkerOptions,
    metrics: &Arc<Metrics>,
    stop: &Stop,
    book: &Mutex<ReaderBook>,
    owner: String,
) -> Result<campaign::Pass, tsm::Error> {
    let terminals = matches!(source, CardSource::Terminals(_));
    let worker = campaign::Worker {
        issuer,
        owner,
        lease: options.lease,
        batch: if terminals { 1 } else { options.batch.max(1) },
    };
    let mut total = campaign::Pass::default();
    while !stop.is_set() {
        let pass = match source {
            CardSource::Virtual { dir } => worker.pass_with(&mut |number| {
                if stop.is_set() {
                    return Ok(None);
                }
                CardSource::virtual_card(dir.as_deref(), number)
            }),
            CardSource::Terminals(hub) => {
                // A reader first: no item is claimed while none is free.
                let Some((reader, chan)) = free_reader(hub, book) else {
                    if options.until_idle || !stop.sleep(options.idle) {
                        break;
                    }
                    continue;
                };
                let mut chan = Some(MeteredChannel::new(chan, metrics.clone()));
                let r = worker.pass_with(&mut |_| {
                    if stop.is_set() {
                        return Ok(None);
                    }
                    Ok(chan.take().map(|c| Box::new(c) as Box<dyn CardChannel>))
                });
                if chan.is_none() {
                    book.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .used
                        .insert(reader);
                }
                r
            }
        };
        let pass = match pass {
            Ok(p) => p,
            Err(e) if options.until_idle => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "campaign worker: claiming or recording items failed; trying again");
                if !stop.sleep(options.idle) {
                    break;
                }
                continue;
            }
        };
        metrics.campaign_items(pass.done as u64, pass.failed as u64);
        if pass.failed > 0 {
            tracing::warn!(
                failed = pass.failed,
                "campaign worker: cards failed (GET /api/v1/campaigns/{{id}}/failures says why)"
            );
        }
        total.claimed += pass.claimed;
        total.done += pass.done;
        total.failed += pass.failed;
        total.deferred += pass.deferred;
        if pass.claimed == 0 && (options.until_idle || !stop.sleep(options.idle)) {
            break;
        }
    }
    Ok(total)
}
