//! The platform's side of `outlet sync` (issue #11): outlet security modules upload their
//! hash-chained install records here when they are online.
//!
//! * `POST /api/v1/outlet/records` `{outlet, records: [...]}` (operator token): each
//!   record's hash is recomputed from its fields (`outlet::records`: `SHA-256(prev_hash ‖
//!   canonical)`) and must match (else 422); then [`tsm::Store::store_outlet_records`]
//!   stores each `(outlet, seq)` once: a record already held with the same hash is counted
//!   `already`, another hash for a held sequence number or a broken link is 409, and
//!   nothing of that upload is stored. Answers `{stored, already, through}`.
//! * `GET /api/v1/outlet/records/{outlet}` (operator or viewer): the outlet's records, if
//!   they are the caller's tenant's.
//! * `GET /api/openapi-outlet.json`: this API's OpenAPI document.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::{Auth, HasTokens, Operate, Read, TokenTable};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{self, Path};
use crate::openapi::Routes;

/// Most records one upload may carry (the outlet sends fewer).
pub const MAX_RECORDS: usize = 1000;

/// What the routes need: the platform's store and its tokens.
pub struct OutletRecordsApi {
    store: Arc<tsm::Store>,
    tokens: Arc<TokenTable>,
}

impl std::fmt::Debug for OutletRecordsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutletRecordsApi")
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl HasTokens for OutletRecordsApi {
    fn tokens(&self) -> &TokenTable {
        &self.tokens
    }
}

impl OutletRecordsApi {
    /// The API over `store`, accepting `tokens` (operators upload, viewers read).
    pub fn new(store: Arc<tsm::Store>, tokens: TokenTable) -> Arc<Self> {
        Arc::new(Self {
            store,
            tokens: Arc::new(tokens),
        })
    }
}

/// One install record, as the outlet hashed it (`outlet::records::Record`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutletRecordBody {
    /// Position in the outlet's chain, from 1.
    #[schema(minimum = 1, format = Int64)]
    pub seq: u64,
    /// When (Unix milliseconds, the outlet's clock).
    pub at_ms: i64,
    /// The outlet's id.
    #[schema(min_length = 1)]
    pub outlet: String,
    /// The card number (empty when the card was not identified).
    pub card: String,
    /// The application.
    pub application: String,
    /// SHA-256 of its package, hex (empty when unknown).
    pub package_sha256: String,
    /// `ok`, `failed`, `rolled_back` or `interrupted`.
    pub result: String,
    /// `ok` or the install error's code.
    pub code: String,
    /// Details, JSON text exactly as hashed.
    pub detail: String,
    /// The previous record's hash (64 hex digits; zeros for record 1).
    #[schema(pattern = "^[0-9A-Fa-f]{64}$")]
    pub prev_hash: String,
    /// SHA-256(prev_hash ‖ canonical record), 64 hex digits.
    #[schema(pattern = "^[0-9A-Fa-f]{64}$")]
    pub hash: String,
}

/// `POST /api/v1/outlet/records` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordUpload {
    /// The outlet's id (every record names it too).
    #[schema(min_length = 1)]
    pub outlet: String,
    /// Consecutive records, oldest first.
    #[schema(max_items = 1000)]
    pub records: Vec<OutletRecordBody>,
}

/// `POST /api/v1/outlet/records` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordUploadAnswer {
    /// Records stored now.
    pub stored: u64,
    /// Records already held with the same hash.
    pub already: u64,
    /// The highest sequence number held for the outlet.
    pub through: u64,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoredRecord {
    /// The record as uploaded.
    pub record: OutletRecordBody,
    /// When the platform received it (Unix milliseconds).
    pub received_ms: i64,
}

/// `GET /api/v1/outlet/records/{outlet}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutletRecords {
    /// The outlet's records, by sequence number.
    pub records: Vec<StoredRecord>,
}

/// The routes, recorded for the OpenAPI test.
pub fn route_list(api: Arc<OutletRecordsApi>) -> Routes<()> {
    Routes::new()
        .route("/api/openapi-outlet.json", &["get"], get(openapi))
        .route("/api/v1/outlet/records", &["post"], post(upload))
        .route("/api/v1/outlet/records/{outlet}", &["get"], get(list))
        .with_state(api)
}

/// The routes, without fallbacks: merge them into the server's router.
pub fn routes(api: Arc<OutletRecordsApi>) -> Router {
    route_list(api).into_router()
}

/// This API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cardwright outlet records",
        description = "Outlet security modules upload their hash-chained install records (outlet sync). Every error answers {\"error\", \"reason\"}.",
        version = "1"
    ),
    paths(openapi, upload, list),
    components(schemas(
        ErrorBody, OutletRecordBody, RecordUpload, RecordUploadAnswer, StoredRecord, OutletRecords
    )),
    security(("bearer" = []))
)]
struct OutletRecordsDoc;

/// The outlet records API's OpenAPI document.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    crate::openapi::with_bearer(OutletRecordsDoc::openapi())
}

/// `GET /api/openapi-outlet.json`: this document.
#[utoipa::path(get, path = "/api/openapi-outlet.json", security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
async fn openapi() -> Response {
    match openapi_document().to_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(_) => ApiError::internal("the OpenAPI document").into_response(),
    }
}

type Shared = State<Arc<OutletRecordsApi>>;

fn unprocessable(reason: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "record_invalid", reason)
}

/// The record in the outlet's format, its hash checked against its fields.
fn checked(b: OutletRecordBody) -> Result<tsm::model::OutletRecord, ApiError> {
    let r = outlet::Record {
        seq: b.seq,
        at_ms: b.at_ms,
        outlet: b.outlet,
        card: b.card,
        application: b.application,
        package_sha256: b.package_sha256,
        result: b.result,
        code: b.code,
        detail: b.detail,
        prev_hash: b.prev_hash,
        hash: b.hash,
        synced: false,
    };
    let seq = r.seq;
    let bad = |e: String| ApiError::bad_request(format!("record {seq}: {e}"));
    let prev_hash = outlet::records::parse_hash(&r.prev_hash).map_err(bad)?;
    let hash = outlet::records::parse_hash(&r.hash).map_err(bad)?;
    if !r.hash_matches() {
        return Err(unprocessable(format!(
            "record {seq}: its hash does not match its content"
        )));
    }
    Ok(tsm::model::OutletRecord {
        outlet: r.outlet,
        seq,
        at_ms: r.at_ms,
        card: r.card,
        application: r.application,
        package_sha256: r.package_sha256,
        result: r.result,
        code: r.code,
        detail: r.detail,
        prev_hash,
        hash,
    })
}

#[utoipa::path(post, path = "/api/v1/outlet/records", request_body = RecordUpload,
    responses(
        (status = 200, description = "Stored (or already held)", body = RecordUploadAnswer),
        (status = 400, description = "Bad request or body", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not, or the outlet is another tenant's", body = ErrorBody),
        (status = 409, description = "Another record under a held number, or a broken chain link; nothing stored", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "A record whose hash does not match its content", body = ErrorBody),
    ))]
async fn upload(
    caller: Auth<Operate>,
    State(api): Shared,
    extract::Json(body): extract::Json<RecordUpload>,
) -> Result<Json<RecordUploadAnswer>, ApiError> {
    if body.records.len() > MAX_RECORDS {
        return Err(ApiError::bad_request(format!(
            "{} records in one upload; at most {MAX_RECORDS}",
            body.records.len()
        )));
    }
    outlet::config::validate_id(&body.outlet).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let records = body
        .records
        .into_iter()
        .map(checked)
        .collect::<Result<Vec<_>, _>>()?;
    let tenant = caller.principal.tenant.clone().unwrap_or_default();
    let actor = caller.principal.actor().name();
    let outlet = body.outlet;
    let up = tokio::task::spawn_blocking(move || {
        api.store
            .store_outlet_records(&actor, &tenant, &outlet, &records)
    })
    .await
    .map_err(|_| ApiError::internal("an outlet records worker"))??;
    Ok(Json(RecordUploadAnswer {
        stored: up.stored,
        already: up.already,
        through: up.through,
    }))
}

#[utoipa::path(get, path = "/api/v1/outlet/records/{outlet}",
    params(("outlet" = String, Path, description = "The outlet's id", pattern = "^[a-z0-9][a-z0-9._-]{0,31}$")),
    responses(
        (status = 200, description = "The outlet's records held for the caller's tenant", body = OutletRecords),
        (status = 400, description = "Bad outlet id", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ))]
async fn list(
    caller: Auth<Read>,
    State(api): Shared,
    Path(outlet): Path<String>,
) -> Result<Json<OutletRecords>, ApiError> {
    outlet::config::validate_id(&outlet).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let tenant = caller.principal.tenant.clone().unwrap_or_default();
    let rows = tokio::task::spawn_blocking(move || api.store.outlet_records(Some(&outlet)))
        .await
        .map_err(|_| ApiError::internal("an outlet records worker"))?
        .map_err(|e| ApiError::from(tsm::Error::Store(e)))?;
    let records = rows
        .into_iter()
        .filter(|s| s.tenant == tenant)
        .map(|s| StoredRecord {
            record: OutletRecordBody {
                seq: s.record.seq,
                at_ms: s.record.at_ms,
                outlet: s.record.outlet,
                card: s.record.card,
                application: s.record.application,
                package_sha256: s.record.package_sha256,
                result: s.record.result,
                code: s.record.code,
                detail: s.record.detail,
                prev_hash: apdu::hex(&s.record.prev_hash),
                hash: apdu::hex(&s.record.hash),
            },
            received_ms: s.received_ms,
        })
        .collect();
    Ok(Json(OutletRecords { records }))
}
