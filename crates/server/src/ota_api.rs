//! The OTA HTTP API (`cardwright serve --ota` with operator tokens; issue 12,
//! `docs/OTA.md`): operators push catalog applications to cards over the air and follow
//! the sessions. A push only opens a `pending` session; the OTA service's tick sends it.
//!
//! Routes (bearer token of an operator with its tenant; a viewer may only read):
//! * `POST   /api/v1/ota/push` `{iccid, app, bearer?}` → `202` and the session, with
//!   `Location: /api/v1/ota/sessions/{id}`.
//! * `GET    /api/v1/ota/sessions/{id}`: the session and its messages (lengths, not bytes).
//! * `GET    /api/v1/ota/cards/{iccid}/sessions?limit=N`: the card and its sessions,
//!   newest first (default 20, at most 200).
//! * `POST   /api/v1/ota/cards` `{card_number, iccid, msisdn, kvn?}` → `201`: enrols a card.
//! * `GET    /api/v1/ota/catalog`, `POST /api/v1/ota/catalog` → `201`,
//!   `DELETE /api/v1/ota/catalog/{app}` → `204`: the tenant's catalog.
//! * `GET    /api/openapi-ota.json`: this API's OpenAPI document.
//!
//! Errors answer `{error, reason}`: 400 (bad request), 401 (token), 403 (role, or a card of
//! another tenant: the refusal is audited), 404 (unknown ICCID, card, session, package, or
//! an application not in the tenant's catalog), 409 (a catalog name or an OTA identity
//! already taken). The decisions are the domain's ([`tsm::ota::admin`]), shared with
//! `cardwright ota`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tsm::ota::admin::{self as ota_admin, CatalogRequest, SessionLog};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{Auth, HasTokens, Operate, Read, TokenTable};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{self, Path};
use crate::openapi::Routes;

/// Sessions listed per card when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 20;
/// Most sessions listed per card.
pub const MAX_LIMIT: u32 = 200;

/// What the OTA routes need: the platform's store and its tokens.
pub struct OtaApi {
    store: Arc<tsm::Store>,
    tokens: Arc<TokenTable>,
}

impl std::fmt::Debug for OtaApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtaApi")
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl HasTokens for OtaApi {
    fn tokens(&self) -> &TokenTable {
        &self.tokens
    }
}

impl OtaApi {
    /// The API over `store`, accepting `tokens` (operators write, viewers read, each for
    /// its tenant).
    pub fn new(store: Arc<tsm::Store>, tokens: TokenTable) -> Arc<Self> {
        Arc::new(Self {
            store,
            tokens: Arc::new(tokens),
        })
    }
}

/// The routes, recorded for the OpenAPI test.
pub fn route_list(api: Arc<OtaApi>) -> Routes<()> {
    Routes::new()
        .route("/api/openapi-ota.json", &["get"], get(openapi))
        .route("/api/v1/ota/push", &["post"], post(push))
        .route("/api/v1/ota/sessions/{id}", &["get"], get(session))
        .route(
            "/api/v1/ota/cards/{iccid}/sessions",
            &["get"],
            get(card_sessions),
        )
        .route("/api/v1/ota/cards", &["post"], post(enrol))
        .route(
            "/api/v1/ota/catalog",
            &["get", "post"],
            get(catalog).post(catalog_add),
        )
        .route(
            "/api/v1/ota/catalog/{app}",
            &["delete"],
            delete(catalog_remove),
        )
        .with_state(api)
}

/// The routes, without fallbacks: merge them into the server's router.
pub fn routes(api: Arc<OtaApi>) -> Router {
    route_list(api).into_router()
}

/// The OTA API alone, with JSON answers for unknown routes and methods.
pub fn router(api: Arc<OtaApi>) -> Router {
    crate::finish(routes(api))
}

/// This API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cardwright OTA API",
        description = "Operators push catalog applications to cards over the air (SCP80 SMS or SCP81 HTTPS) and follow the download sessions; a push opens a pending session that the OTA service sends. Every error answers {\"error\", \"reason\"}.",
        version = "1"
    ),
    paths(openapi, push, session, card_sessions, enrol, catalog, catalog_add, catalog_remove),
    components(schemas(
        ErrorBody, OtaBearer, PushRequest, SessionInfo, MessageInfo, OtaCardInfo, CardSessions,
        EnrolRequest, CatalogItem, Catalog, CatalogAddRequest
    )),
    security(("bearer" = []))
)]
struct OtaDoc;

/// The OTA API's OpenAPI document.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    crate::openapi::with_extractor_refusals(crate::openapi::with_bearer(OtaDoc::openapi()))
}

/// `GET /api/openapi-ota.json`: this document.
#[utoipa::path(get, path = "/api/openapi-ota.json", security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
async fn openapi() -> Response {
    match openapi_document().to_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(_) => ApiError::internal("the OpenAPI document").into_response(),
    }
}

type Shared = State<Arc<OtaApi>>;

/// Runs store work off the async workers, in the request's span.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, tsm::Error> + Send + 'static,
) -> Result<T, ApiError> {
    crate::observe::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("an OTA worker"))?
        .map_err(ApiError::from)
}

/// Checks that `value` is `min..=max` hex-coded bytes, digits only (the store's parser
/// would also take spaces and colons, which the schema does not).
fn strict_hex(what: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let ok = value.len().is_multiple_of(2)
        && (min * 2..=max * 2).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what}: {min} to {max} bytes in hex digits"
        )))
    }
}

fn check_iccid(iccid: &str) -> Result<(), ApiError> {
    if tsm::ota::valid_iccid(iccid) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "ICCID '{iccid}': 18 to 20 digits"
        )))
    }
}

fn check_app(app: &str) -> Result<(), ApiError> {
    if tsm::ota::valid_app_name(app) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "application name '{app}': 1 to 32 letters, digits, '-' or '_'"
        )))
    }
}

/// How an application travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OtaBearer {
    /// SCP80 secured packets in SMS (the default).
    #[default]
    Sms,
    /// SCP81: the card's admin agent over HTTPS.
    Https,
}

impl From<OtaBearer> for tsm::ota::Bearer {
    fn from(b: OtaBearer) -> Self {
        match b {
            OtaBearer::Sms => tsm::ota::Bearer::Sms,
            OtaBearer::Https => tsm::ota::Bearer::Https,
        }
    }
}

/// `POST /api/v1/ota/push` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// The card's ICCID (18 to 20 digits).
    #[schema(pattern = "^[0-9]{18,20}$")]
    pub iccid: String,
    /// The catalog application.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub app: String,
    /// The bearer (default `sms`).
    #[serde(default)]
    pub bearer: Option<OtaBearer>,
}

/// One message of a session: what went on the air, without its (ciphered) bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageInfo {
    /// Identifier (the order of the log).
    pub id: i64,
    /// `mt` (platform to card) or `mo` (card to platform).
    pub direction: String,
    /// `request`, `script`, `por`, `trigger`, `receipt`…
    pub kind: String,
    /// The SCP80 counter it carried.
    #[schema(format = Int64)]
    pub counter: Option<u64>,
    /// Its length in bytes (the secured packet or TPDU as on the air).
    #[schema(format = Int64)]
    pub length: u64,
    /// What became of it (`sent`, `ok`, `replayed`, `bad_cc`, a PoR status…).
    pub status: String,
    /// When (Unix milliseconds).
    pub created_ms: i64,
}

impl From<&tsm::ota::Message> for MessageInfo {
    fn from(m: &tsm::ota::Message) -> Self {
        MessageInfo {
            id: m.id,
            direction: m.direction.to_string(),
            kind: m.kind.clone(),
            counter: m.counter,
            length: m.bytes.len() as u64,
            status: m.status.clone(),
            created_ms: m.created_ms,
        }
    }
}

/// A download session and its messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// Identifier.
    pub id: i64,
    /// The platform's card number.
    pub card_number: String,
    /// The catalog application.
    pub app: String,
    /// `sms` or `https`.
    pub bearer: String,
    /// `server` (a push) or `card` (the card's download agent).
    pub origin: String,
    /// `pending`, `running`, `done`, `failed` or `abandoned`.
    pub state: String,
    /// Scripts acknowledged so far.
    pub step: u32,
    /// Scripts in all (0 until planned).
    pub steps: u32,
    /// Why it failed or what it waits for, in words.
    pub detail: String,
    /// Created (Unix milliseconds).
    pub created_ms: i64,
    /// Last change (Unix milliseconds).
    pub updated_ms: i64,
    /// Its messages, oldest first.
    pub messages: Vec<MessageInfo>,
}

impl From<&SessionLog> for SessionInfo {
    fn from(l: &SessionLog) -> Self {
        let s = &l.session;
        SessionInfo {
            id: s.id,
            card_number: s.card_number.clone(),
            app: s.app.clone(),
            bearer: s.bearer.to_string(),
            origin: s.origin.to_string(),
            state: s.state.to_string(),
            step: s.step,
            steps: s.steps,
            detail: s.detail.clone(),
            created_ms: s.created_ms,
            updated_ms: s.updated_ms,
            messages: l.messages.iter().map(MessageInfo::from).collect(),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/ota/push", request_body = PushRequest,
    responses(
        (status = 202, description = "A pending session opened; the OTA service sends it", body = SessionInfo,
            headers(("Location" = String, description = "The session: /api/v1/ota/sessions/{id}"))),
        (status = 400, description = "Bad request or body", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not, or the card is another tenant's", body = ErrorBody),
        (status = 404, description = "No card enrolled with this ICCID, or the application is not in the tenant's catalog", body = ErrorBody),
    ))]
async fn push(
    caller: Auth<Operate>,
    State(api): Shared,
    extract::Json(body): extract::Json<PushRequest>,
) -> Result<Response, ApiError> {
    check_iccid(&body.iccid)?;
    check_app(&body.app)?;
    let actor = caller.principal.actor();
    let bearer = body.bearer.unwrap_or_default().into();
    let s = blocking(move || {
        ota_admin::open_push_session(&api.store, &actor, &body.iccid, &body.app, bearer)
    })
    .await?;
    let location = format!("/api/v1/ota/sessions/{}", s.id);
    let info = SessionInfo::from(&SessionLog {
        session: s,
        messages: Vec::new(),
    });
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(info),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/v1/ota/sessions/{id}",
    params(("id" = i64, Path, description = "Session id", minimum = 1)),
    responses(
        (status = 200, description = "The session and its messages", body = SessionInfo),
        (status = 400, description = "Bad session id", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not, or the card is another tenant's", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    ))]
async fn session(
    caller: Auth<Read>,
    State(api): Shared,
    Path(id): Path<i64>,
) -> Result<Json<SessionInfo>, ApiError> {
    if id < 1 {
        return Err(ApiError::bad_request(format!("session id {id}: from 1")));
    }
    let actor = caller.principal.actor();
    let log = blocking(move || ota_admin::session_log(&api.store, &actor, id)).await?;
    Ok(Json(SessionInfo::from(&log)))
}

/// A card's identity on the air.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OtaCardInfo {
    /// The platform's card number.
    pub card_number: String,
    /// ICCID.
    pub iccid: String,
    /// The subscriber's number (international, digits only).
    pub msisdn: String,
    /// The ISD's SCP80 key set version.
    pub kvn: u8,
    /// The last counter the platform sent to the card.
    #[schema(format = Int64)]
    pub counter_out: u64,
    /// The last counter accepted from the card.
    #[schema(format = Int64)]
    pub counter_in: u64,
}

impl From<&tsm::ota::OtaCard> for OtaCardInfo {
    fn from(c: &tsm::ota::OtaCard) -> Self {
        OtaCardInfo {
            card_number: c.card_number.clone(),
            iccid: c.iccid.clone(),
            msisdn: c.msisdn.clone(),
            kvn: c.kvn,
            counter_out: c.counter_out,
            counter_in: c.counter_in,
        }
    }
}

/// `GET /api/v1/ota/cards/{iccid}/sessions` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CardSessions {
    /// The card.
    pub card: OtaCardInfo,
    /// Its sessions, newest first, with their messages.
    pub sessions: Vec<SessionInfo>,
}

/// `?limit=` of a card's sessions.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LimitQuery {
    /// Sessions to list, newest first (default 20).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/ota/cards/{iccid}/sessions",
    params(("iccid" = String, Path, description = "The card's ICCID (18 to 20 digits)", pattern = "^[0-9]{18,20}$"), LimitQuery),
    responses(
        (status = 200, description = "The card and its latest sessions", body = CardSessions),
        (status = 400, description = "Bad ICCID or limit", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not, or the card is another tenant's", body = ErrorBody),
        (status = 404, description = "No card enrolled with this ICCID", body = ErrorBody),
    ))]
async fn card_sessions(
    caller: Auth<Read>,
    State(api): Shared,
    Path(iccid): Path<String>,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<CardSessions>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit}: 1 to {MAX_LIMIT}"
        )));
    }
    check_iccid(&iccid)?;
    let actor = caller.principal.actor();
    let h = blocking(move || ota_admin::card_history(&api.store, &actor, &iccid, limit)).await?;
    Ok(Json(CardSessions {
        card: OtaCardInfo::from(&h.card),
        sessions: h.sessions.iter().map(SessionInfo::from).collect(),
    }))
}

/// `POST /api/v1/ota/cards` request: a recorded card of the tenant gets its identity on
/// the air.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The platform's card number (1 to 20 digits).
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub card_number: String,
    /// Its ICCID (18 to 20 digits).
    #[schema(pattern = "^[0-9]{18,20}$")]
    pub iccid: String,
    /// The subscriber's number: 3 to 15 digits (E.164), optionally after `+`.
    #[schema(pattern = "^\\+?[0-9]{3,15}$")]
    pub msisdn: String,
    /// The ISD's SCP80 key set version (default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 15)]
    pub kvn: Option<u8>,
}

#[utoipa::path(post, path = "/api/v1/ota/cards", request_body = EnrolRequest,
    responses(
        (status = 201, description = "Enrolled; both counters start at 0", body = OtaCardInfo,
            headers(("Location" = String, description = "The card's sessions: /api/v1/ota/cards/{iccid}/sessions"))),
        (status = 400, description = "Bad request or body", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not, or the card is another tenant's", body = ErrorBody),
        (status = 404, description = "Unknown card number", body = ErrorBody),
        (status = 409, description = "The card is enrolled already, or the ICCID is another card's", body = ErrorBody),
    ))]
async fn enrol(
    caller: Auth<Operate>,
    State(api): Shared,
    extract::Json(body): extract::Json<EnrolRequest>,
) -> Result<Response, ApiError> {
    let number_ok = (1..=20).contains(&body.card_number.len())
        && body.card_number.bytes().all(|b| b.is_ascii_digit());
    if !number_ok {
        return Err(ApiError::bad_request(format!(
            "card number '{}': 1 to 20 digits",
            body.card_number
        )));
    }
    check_iccid(&body.iccid)?;
    if tsm::ota::normalise_msisdn(&body.msisdn).is_none() {
        return Err(ApiError::bad_request(format!(
            "MSISDN '{}': 3 to 15 digits, optionally after '+'",
            body.msisdn
        )));
    }
    let kvn = body.kvn.unwrap_or(1);
    if !(1..=15).contains(&kvn) {
        return Err(ApiError::bad_request(format!("kvn {kvn}: 1 to 15")));
    }
    let actor = caller.principal.actor();
    let c = blocking(move || {
        ota_admin::enrol_card(
            &api.store,
            &actor,
            &body.card_number,
            &body.iccid,
            &body.msisdn,
            kvn,
        )
    })
    .await?;
    let location = format!("/api/v1/ota/cards/{}/sessions", c.iccid);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(OtaCardInfo::from(&c)),
    )
        .into_response())
}

/// An application of the tenant's catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CatalogItem {
    /// The name the card's download agent asks for.
    pub app: String,
    /// The menu text.
    pub title: String,
    /// The load file AID, hex.
    pub package: String,
    /// The executable module AID, hex.
    pub module: String,
    /// The instance AID, hex.
    pub instance: String,
    /// The application's security domain AID, hex.
    pub sd: String,
    /// Privileges of the instance, hex.
    pub privileges: String,
    /// Install parameters (`C9` value), hex.
    pub params: String,
    /// Added (Unix milliseconds).
    pub created_ms: i64,
}

impl From<&tsm::ota::CatalogEntry> for CatalogItem {
    fn from(e: &tsm::ota::CatalogEntry) -> Self {
        CatalogItem {
            app: e.app.clone(),
            title: e.title.clone(),
            package: e.package.to_string(),
            module: e.module.to_string(),
            instance: e.instance.to_string(),
            sd: e.sd.to_string(),
            privileges: apdu::hex(&e.privileges),
            params: apdu::hex(&e.params),
            created_ms: e.created_ms,
        }
    }
}

/// `GET /api/v1/ota/catalog` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Catalog {
    /// The tenant's applications, by name.
    pub catalog: Vec<CatalogItem>,
}

#[utoipa::path(get, path = "/api/v1/ota/catalog",
    responses(
        (status = 200, description = "The caller's tenant's catalog", body = Catalog),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ))]
async fn catalog(caller: Auth<Read>, State(api): Shared) -> Result<Json<Catalog>, ApiError> {
    let tenant = caller.principal.actor().tenant;
    let list = blocking(move || Ok(api.store.ota_catalog(&tenant)?)).await?;
    Ok(Json(Catalog {
        catalog: list.iter().map(CatalogItem::from).collect(),
    }))
}

/// `POST /api/v1/ota/catalog` request (the defaults of `cardwright ota catalog add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogAddRequest {
    /// The name the card's download agent asks for.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub app: String,
    /// The menu text (default: the name).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 40)]
    pub title: Option<String>,
    /// The load file AID, hex: a package of the tenant, registered with `package add`.
    #[schema(pattern = "^([0-9A-Fa-f]{2}){5,16}$")]
    pub package: String,
    /// The executable module AID, hex (default: the package's first applet).
    #[serde(default)]
    #[schema(pattern = "^([0-9A-Fa-f]{2}){5,16}$")]
    pub module: Option<String>,
    /// The instance AID, hex (default: the module AID).
    #[serde(default)]
    #[schema(pattern = "^([0-9A-Fa-f]{2}){5,16}$")]
    pub instance: Option<String>,
    /// The application's security domain AID, hex, created on the card if missing
    /// (default: the package AID with `FF01` appended).
    #[serde(default)]
    #[schema(pattern = "^([0-9A-Fa-f]{2}){5,16}$")]
    pub sd: Option<String>,
    /// Privileges of the instance, hex, 1 or 3 bytes (default `00`).
    #[serde(default)]
    #[schema(pattern = "^[0-9A-Fa-f]{2}([0-9A-Fa-f]{4})?$")]
    pub privileges: Option<String>,
    /// Install parameters (the `C9` value), hex, at most 127 bytes (default none).
    #[serde(default)]
    #[schema(pattern = "^([0-9A-Fa-f]{2}){0,127}$")]
    pub params: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/ota/catalog", request_body = CatalogAddRequest,
    responses(
        (status = 201, description = "Added", body = CatalogItem),
        (status = 400, description = "Bad request or body", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "No such package of the tenant", body = ErrorBody),
        (status = 409, description = "The name is in the catalog already", body = ErrorBody),
    ))]
async fn catalog_add(
    caller: Auth<Operate>,
    State(api): Shared,
    extract::Json(body): extract::Json<CatalogAddRequest>,
) -> Result<Response, ApiError> {
    check_app(&body.app)?;
    if let Some(t) = &body.title {
        if !(1..=40).contains(&t.chars().count()) {
            return Err(ApiError::bad_request("title: 1 to 40 characters"));
        }
    }
    strict_hex("package", &body.package, 5, 16)?;
    for (what, aid) in [
        ("module", &body.module),
        ("instance", &body.instance),
        ("sd", &body.sd),
    ] {
        if let Some(a) = aid {
            strict_hex(what, a, 5, 16)?;
        }
    }
    if let Some(p) = &body.privileges {
        strict_hex("privileges", p, 1, 3)?;
        if p.len() == 4 {
            return Err(ApiError::bad_request("privileges: 1 or 3 bytes"));
        }
    }
    if let Some(p) = &body.params {
        strict_hex("params", p, 0, ota_admin::MAX_PARAMS)?;
    }
    let actor = caller.principal.actor();
    let req = CatalogRequest {
        app: body.app,
        title: body.title,
        package: body.package,
        module: body.module,
        instance: body.instance,
        sd: body.sd,
        privileges: body.privileges,
        params: body.params,
    };
    let e = blocking(move || ota_admin::add_to_catalog(&api.store, &actor, &req)).await?;
    Ok((StatusCode::CREATED, Json(CatalogItem::from(&e))).into_response())
}

#[utoipa::path(delete, path = "/api/v1/ota/catalog/{app}",
    params(("app" = String, Path, description = "The application's name", pattern = "^[A-Za-z0-9_-]{1,32}$")),
    responses(
        (status = 204, description = "Withdrawn (sessions keep its name)"),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 401, description = "No or unknown bearer token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "Not in the tenant's catalog", body = ErrorBody),
    ))]
async fn catalog_remove(
    caller: Auth<Operate>,
    State(api): Shared,
    Path(app): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_app(&app)?;
    let actor = caller.principal.actor();
    blocking(move || {
        Ok(api
            .store
            .remove_ota_catalog_entry(&actor.name(), &actor.tenant, &app)?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
