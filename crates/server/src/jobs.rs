//! Jobs as resources (issue 13): asynchronous requests (RFC 7240 `Prefer: respond-async`),
//! the job route, and the bodies they answer.
//!
//! * A job route asked with `Prefer: respond-async` checks the request, finds the reader and
//!   records (claims) the job as synchronously as without it (so its refusals,
//!   400/403/404/409, are the same), then answers `202 Accepted` with
//!   `Location: /api/v1/jobs/{id}` and `Preference-Applied: respond-async` (RFC 7240 §3)
//!   before any card exchange; the job runs on its own task. Without the preference the
//!   answer waits for the job, as before. The job routes: the issuance API's
//!   `POST /api/v1/cards/{card_number}/write|rewrite|clear|resume|apps|…`, the card issuer's
//!   `POST /api/v1/ssd-jobs/{id}/run` ([`crate::partner`]), the application provider's
//!   `POST /api/v1/ssd/requests` and `…/renew` ([`crate::ap`]); all go through one
//!   `run_claimed`.
//! * `GET /api/v1/jobs/{id}`: the job, its state and its steps, to whoever may read its card
//!   ([`tsm::issuance::job_status`]: the card's tenant, or the tenant that submitted it). SSD
//!   jobs are jobs of the same table: the card issuer's are read here too; the application
//!   provider's API serves the same route for its own jobs.
//! * `GET /api/v1/jobs?card=N[&state=S]`: the card's jobs, as `GET /api/v1/cards/{n}` lists
//!   them, optionally of one state.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tsm::model::{Job, JobState, Step};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, Required, Type};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Auth, Read};
use crate::error::ApiError;
use crate::extract::Path;
use crate::issuance::{blocking, IssuanceApi, JobSummary};
use crate::webhook::Webhook;

/// The preference asking for an answer before the work is done (RFC 7240 §4.1).
pub const RESPOND_ASYNC: &str = "respond-async";

/// Whether the request's `Prefer` headers (RFC 7240 §2: a comma-separated list of
/// `token[=value] *(; parameter)`, possibly in several header fields) hold
/// `respond-async`. Preferences are not case-sensitive; unknown ones and values that do not
/// parse are ignored, as §2 asks.
pub fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_list)
        .any(|pref| {
            let name = pref.split([';', '=']).next().unwrap_or_default().trim();
            name.eq_ignore_ascii_case(RESPOND_ASYNC)
        })
}

/// The elements of a comma-separated header list (RFC 9110 §5.6.1), commas inside
/// quoted strings (§5.6.4) kept.
fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

/// The `Prefer` request header of every job route, documented once.
pub(crate) struct PreferHeader;

impl IntoParams for PreferHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("Prefer")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "RFC 7240: `respond-async` answers 202 with the job's URL once the job is recorded, before any card exchange; without it the answer waits for the job.",
            ))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build()]
    }
}

/// A job's URL.
pub fn job_url(id: i64) -> String {
    format!("/api/v1/jobs/{id}")
}

/// The `202 Accepted` answer of an asynchronous job request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AcceptedJob {
    /// Job id.
    pub job: i64,
    /// `write`, `rewrite`, `clear`, `app_load`, `app_delete`.
    pub kind: String,
    /// The card.
    pub card_number: String,
    /// `running` (claimed by this server, the run about to start).
    pub state: String,
    /// Where to follow it (`GET`): `/api/v1/jobs/{id}`, as in `Location`.
    pub url: String,
}

/// `202 Accepted`, `Location` and `Preference-Applied: respond-async` for `job`.
pub(crate) fn accepted(job: &Job) -> Response {
    let url = job_url(job.id);
    let body = AcceptedJob {
        job: job.id,
        kind: job.kind.to_string(),
        card_number: job.card_number.clone(),
        state: job.state.to_string(),
        url: url.clone(),
    };
    let mut r = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(
        "preference-applied",
        HeaderValue::from_static(RESPOND_ASYNC),
    );
    r
}

/// Announces the end of jobs to the webhook, if there is one: the job as recorded in the
/// store once its run ended ([`JobEnded`]).
#[derive(Clone)]
pub(crate) struct Announcer {
    hook: Option<Arc<Webhook>>,
    store: tsm::Store,
}

impl Announcer {
    /// Ends of jobs of `store` announced to `hook` (none: nothing is announced).
    pub(crate) fn new(hook: Option<Arc<Webhook>>, store: tsm::Store) -> Announcer {
        Announcer { hook, store }
    }

    /// Sends job `id` as recorded now to the webhook (never waits for the receiver).
    pub(crate) async fn ended(&self, id: i64) {
        let Some(hook) = self.hook.clone() else {
            return;
        };
        let store = self.store.clone();
        let read = tokio::task::spawn_blocking(move || -> Result<_, tsm::StoreError> {
            let job = store.job(id)?;
            let steps = store.job_steps(id)?;
            Ok(job.map(|j| (JobStatus::new(&j, &steps), j.attempts)))
        })
        .await;
        match read {
            Ok(Ok(Some((status, attempt)))) => {
                let body = JobEnded {
                    event: "job.ended".into(),
                    job: status,
                };
                match serde_json::to_vec(&body) {
                    Ok(bytes) => hook.deliver(format!("{id}.{attempt}"), bytes),
                    Err(e) => tracing::error!(job = id, error = %e, "webhook body"),
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!(job = id, error = %e, "webhook: the job cannot be read"),
            Err(e) => tracing::error!(job = id, error = %e, "webhook: the job cannot be read"),
        }
    }
}

/// What a job route answers once its job is claimed ([`run_claimed`]).
pub(crate) enum Started<T> {
    /// `Prefer: respond-async`: `202 Accepted` ([`accepted`]); the run goes on.
    Accepted(Response),
    /// Without it: what the run gave.
    Ran(T),
}

/// Runs `run` (the card work of `job`, claimed by this server) in a blocking worker on its
/// own task, so that a client that goes away does not stop it, in the request's span (its
/// logs carry the request id); announces the job's end ([`Announcer::ended`]). With
/// `asynchronous` answers [`Started::Accepted`] at once, else waits for the run.
/// Every job route of every API (issuance, the CI's and the AP's SSD jobs) goes through it.
pub(crate) async fn run_claimed<T: Send + 'static>(
    job: &Job,
    asynchronous: bool,
    announcer: Announcer,
    run: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<Started<T>, ApiError> {
    use tracing::Instrument;
    let id = job.id;
    let task = tokio::spawn(
        async move {
            let result = crate::observe::spawn_blocking(run)
                .await
                .map_err(|_| ApiError::internal("a job worker"))
                .and_then(|r| r);
            if asynchronous {
                match &result {
                    Ok(_) => tracing::info!(job = id, "job run ended"),
                    Err(e) => tracing::info!(job = id, error = %e.body.reason, "job run ended"),
                }
            }
            announcer.ended(id).await;
            result
        }
        .in_current_span(),
    );
    if asynchronous {
        return Ok(Started::Accepted(accepted(job)));
    }
    let ran = task
        .await
        .map_err(|_| ApiError::internal("a job worker"))??;
    Ok(Started::Ran(ran))
}

/// The answer of `GET /api/v1/jobs/{id}` once the job and its steps are read.
pub(crate) fn status_of(read: tsm::Result<(Job, Vec<Step>)>) -> Result<Json<JobStatus>, ApiError> {
    let (job, steps) = read?;
    Ok(Json(JobStatus::new(&job, &steps)))
}

/// A step of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepStatus {
    /// Position in the job, from 0.
    pub seq: u32,
    /// What it does (`connect`, `put_key`, `install:A000…`).
    pub name: String,
    /// `pending`, `started`, `done`.
    pub state: String,
    /// How many times it was started.
    pub attempts: u32,
    /// What it did (KVNs, KCVs of the keys sent, KDD, applications), once done.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
    /// Last start (Unix ms).
    pub started_ms: Option<i64>,
    /// Completion (Unix ms).
    pub finished_ms: Option<i64>,
}

/// `GET /api/v1/jobs/{id}` answer, and the `job` of a webhook delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobStatus {
    /// Job id.
    pub job: i64,
    /// `write`, `rewrite`, `clear`, `app_load`, `app_delete` (or an SSD job's kind).
    pub kind: String,
    /// `pending` (interrupted: resume it), `running`, `done`, `failed`.
    pub state: String,
    /// The card.
    pub card_number: String,
    /// Who submitted it (`tenant/user`).
    pub submitted_by: String,
    /// Runs started so far.
    pub attempts: u32,
    /// Last error, if any.
    pub error: Option<String>,
    /// While running: until when its worker holds it (Unix ms).
    pub lease_until_ms: Option<i64>,
    /// Creation (Unix ms).
    pub created_ms: i64,
    /// Last change (Unix ms).
    pub updated_ms: i64,
    /// Its steps, in order.
    pub steps: Vec<StepStatus>,
}

impl JobStatus {
    /// The job and its steps as answered.
    pub fn new(job: &Job, steps: &[Step]) -> JobStatus {
        JobStatus {
            job: job.id,
            kind: job.kind.to_string(),
            state: job.state.to_string(),
            card_number: job.card_number.clone(),
            submitted_by: job.actor.clone(),
            attempts: job.attempts,
            error: job.error.clone(),
            lease_until_ms: job.lease_until_ms,
            created_ms: job.created_ms,
            updated_ms: job.updated_ms,
            steps: steps
                .iter()
                .map(|s| StepStatus {
                    seq: s.seq,
                    name: s.name.clone(),
                    state: s.state.to_string(),
                    attempts: s.attempts,
                    detail: s.detail.clone(),
                    started_ms: s.started_ms,
                    finished_ms: s.finished_ms,
                })
                .collect(),
        }
    }
}

/// The body of a webhook delivery ([`crate::webhook`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobEnded {
    /// `job.ended`.
    pub event: String,
    /// The job as recorded when its run ended.
    pub job: JobStatus,
}

/// The job id in `GET /api/v1/jobs/{id}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only documents the path; the handler extracts `Path<i64>`
pub(crate) struct JobId {
    /// Job id.
    #[param(minimum = 1)]
    id: i64,
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}",
    params(JobId),
    responses(
        (status = 200, description = "The job and its steps", body = JobStatus),
        (status = 400, description = "The id is not a number", body = crate::ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = crate::ErrorBody),
        (status = 403, description = "The role may not, or the job's card is another tenant's", body = crate::ErrorBody),
        (status = 404, description = "Unknown job", body = crate::ErrorBody),
    ))]
pub(crate) async fn job(
    caller: Auth<Read>,
    State(api): State<Arc<IssuanceApi>>,
    Path(id): Path<i64>,
) -> Result<Json<JobStatus>, ApiError> {
    let actor = caller.principal.actor();
    blocking(move || Ok(api.issuer().job_status(&actor, id)))
        .await
        .and_then(status_of)
}

/// `GET /api/v1/jobs` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct JobsQuery {
    /// Card number (1-20 digits).
    #[param(pattern = "^[0-9]{1,20}$")]
    card: String,
    /// Only jobs in this state.
    #[param(pattern = "^(pending|running|done|failed)$")]
    state: Option<String>,
}

/// `GET /api/v1/jobs` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// The card.
    pub card_number: String,
    /// Its jobs (of the state asked), oldest first.
    pub jobs: Vec<JobSummary>,
}

#[utoipa::path(get, path = "/api/v1/jobs",
    params(JobsQuery),
    responses(
        (status = 200, description = "The card's jobs", body = JobList),
        (status = 400, description = "Bad query", body = crate::ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = crate::ErrorBody),
        (status = 403, description = "The role may not, or the card is another tenant's", body = crate::ErrorBody),
        (status = 404, description = "Unknown card", body = crate::ErrorBody),
    ))]
pub(crate) async fn jobs(
    caller: Auth<Read>,
    State(api): State<Arc<IssuanceApi>>,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let state = q
        .state
        .as_deref()
        .map(JobState::from_str)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("state: {e}")))?;
    if q.card.is_empty() || q.card.len() > 20 || !q.card.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request("card: 1 to 20 digits"));
    }
    let actor = caller.principal.actor();
    blocking(move || {
        let (_, jobs) = api.issuer().card_status(&actor, &q.card)?;
        Ok(Json(JobList {
            card_number: q.card,
            jobs: jobs
                .iter()
                .filter(|j| state.is_none_or(|s| j.state == s))
                .map(JobSummary::from)
                .collect(),
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("prefer", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn respond_async_is_found_among_preferences() {
        assert!(prefers_async(&with(&["respond-async"])));
        assert!(prefers_async(&with(&["Respond-Async, wait=10"])));
        assert!(prefers_async(&with(&[
            "return=minimal",
            "wait=5; x=y, respond-async"
        ])));
        assert!(prefers_async(&with(&["respond-async; p=1"])));
        assert!(!prefers_async(&with(&[])));
        assert!(!prefers_async(&with(&["return=representation"])));
        assert!(!prefers_async(&with(&["respond-asynchronously"])));
        assert!(!prefers_async(&with(&[r#"foo="a, respond-async""#])));
        assert!(!prefers_async(&with(&[r#"foo="a\", respond-async""#])));
    }
}
