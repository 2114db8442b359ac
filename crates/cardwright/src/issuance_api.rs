//! The issuing host's HTTP API (`cardwright serve`): operators run issuance workflows on the
//! card in a terminal's reader; terminals (`cardwright agent --server`) lend their readers
//! through the relay mounted at `/api/v1/terminal/ws`.
//!
//! Routes (bearer token of an operator, `--operator-token NAME=TOKEN`):
//! * `GET  /api/v1/terminals`: connected terminals, their readers and cards.
//! * `POST /api/v1/cards/{card_number}/write`   `{terminal, reader, category, install_apps?}`
//! * `POST /api/v1/cards/{card_number}/rewrite` `{terminal, reader, category?, to_version?}`
//! * `POST /api/v1/cards/{card_number}/clear`   `{terminal, reader, category?}`
//! * `POST /api/v1/cards/{card_number}/resume`  `{terminal, reader}`
//! * `GET  /api/v1/cards/{card_number}`: the card as recorded, and its jobs.
//!
//! Answers `{job, kind, state, card: {…}, apdus, ms}`, or `{error, reason}` with 400 (bad
//! request), 401 (token), 404 (unknown card, category, terminal or reader), 409 (wrong card,
//! state or category; a job running elsewhere), 502 (the card or the terminal failed; the job
//! is left resumable).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use relay::hub::{Hub, HubError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// What the issuance routes need.
pub struct IssuanceApi {
    pub hub: Arc<Hub>,
    pub issuer: Arc<tsm::Issuer>,
    /// (token, operator name, role): `operator` may run jobs, `viewer` may only read.
    pub operators: Vec<(String, String, Role)>,
    /// The tenant operators act for.
    pub tenant: String,
}

impl std::fmt::Debug for IssuanceApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuanceApi")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// What an operator token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs issuance jobs and reads.
    Operator,
    /// Reads terminals, cards and jobs only.
    Viewer,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role '{other}' (operator, viewer)")),
        }
    }
}

struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1, "reason": self.2}))).into_response()
    }
}

impl From<tsm::Error> for ApiError {
    fn from(e: tsm::Error) -> Self {
        use tsm::Error as E;
        let (status, code) = match &e {
            E::UnknownCard | E::UnknownCategory(_) | E::UnknownJob(_) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            E::WrongCategory { .. } | E::WrongCard(_) | E::WrongState { .. } | E::CardBusy(_) => {
                (StatusCode::CONFLICT, "conflict")
            }
            E::JobFinished { .. } | E::JobLeased(_) => (StatusCode::CONFLICT, "conflict"),
            E::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            E::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            E::KeysDoNotMatch(_) | E::AuthenticationRefused(_) | E::KddNotSettable(_) => {
                (StatusCode::CONFLICT, "card_keys")
            }
            E::Interrupted(_) | E::Card(_) => (StatusCode::BAD_GATEWAY, "card"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError(status, code, e.to_string())
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        ApiError(StatusCode::NOT_FOUND, "terminal", e.to_string())
    }
}

fn operator(api: &IssuanceApi, headers: &HeaderMap) -> Result<(String, Role), ApiError> {
    use subtle::ConstantTimeEq;
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an operator token is required".into(),
            )
        })?;
    let mut found = None;
    for (t, name, role) in &api.operators {
        if t.len() == token.len() && bool::from(t.as_bytes().ct_eq(token.as_bytes())) {
            found = Some((name.clone(), *role));
        }
    }
    found.ok_or_else(|| {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown operator token".into(),
        )
    })
}

/// The OpenAPI 3 description of these routes, served at `/api/openapi-issuance.json`.
pub const OPENAPI_JSON: &str = include_str!("../openapi-issuance.json");

/// The routes, to merge into the server's router (the relay's WebSocket route included).
pub fn router(api: Arc<IssuanceApi>) -> Router {
    let hub_routes = api.hub.router();
    Router::new()
        .route(
            "/api/openapi-issuance.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    OPENAPI_JSON,
                )
            }),
        )
        .route("/api/v1/terminals", get(terminals))
        .route("/api/v1/cards/{card_number}", get(card))
        .route("/api/v1/cards/{card_number}/apps", post(load_app))
        .route(
            "/api/v1/cards/{card_number}/apps/{instance}/delete",
            post(delete_app),
        )
        .route("/api/v1/cards/{card_number}/{action}", post(act))
        .with_state(api)
        .merge(hub_routes)
}

async fn terminals(
    State(api): State<Arc<IssuanceApi>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    operator(&api, &headers)?;
    let list: Vec<Value> = api
        .hub
        .terminals()
        .into_iter()
        .map(|t| json!({"terminal": t.terminal, "readers": t.readers}))
        .collect();
    Ok(Json(json!({ "terminals": list })))
}

async fn card(
    State(api): State<Arc<IssuanceApi>>,
    headers: HeaderMap,
    Path(card_number): Path<String>,
) -> Result<Json<Value>, ApiError> {
    operator(&api, &headers)?;
    let api2 = api.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<Value, tsm::Error> {
        let store = api2.issuer.store();
        let c = store.card(&card_number)?.ok_or(tsm::Error::UnknownCard)?;
        let jobs: Vec<Value> = store
            .jobs_of_card(&card_number)?
            .into_iter()
            .map(|j| json!({"job": j.id, "kind": j.kind.to_string(), "state": j.state.to_string(), "attempts": j.attempts, "error": j.error}))
            .collect();
        Ok(json!({"card": card_json(&c), "jobs": jobs}))
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(Json(r))
}

fn card_json(c: &tsm::model::Card) -> Value {
    json!({
        "card_number": c.card_number,
        "category": c.category,
        "state": c.state.to_string(),
        "key_version": c.key_version,
        "kvn": c.kvn,
    })
}

/// The actor of a job request: an operator token with the `operator` role.
fn may_run(api: &IssuanceApi, headers: &HeaderMap) -> Result<tsm::Actor, ApiError> {
    let (who, role) = operator(api, headers)?;
    if role != Role::Operator {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{who} may only read (role viewer)"),
        ));
    }
    Ok(tsm::Actor::new(&api.tenant, &who))
}

fn job_json(r: &tsm::Outcome) -> Value {
    json!({
        "job": r.job.id,
        "kind": r.job.kind.to_string(),
        "state": r.job.state.to_string(),
        "card": card_json(&r.card),
        "apdus": r.apdus,
        "ms": r.timing.total.as_secs_f64() * 1e3,
    })
}

#[derive(Deserialize)]
struct AppBody {
    terminal: String,
    reader: String,
    /// Package (load file) AID, registered with `cardwright package add`.
    package: String,
    applet: Option<String>,
    instance: Option<String>,
    #[serde(default)]
    privileges: String,
    #[serde(default)]
    params: String,
    #[serde(default)]
    perso: String,
}

fn bad(e: impl std::fmt::Display) -> tsm::Error {
    tsm::Error::Invalid(e.to_string())
}

async fn load_app(
    State(api): State<Arc<IssuanceApi>>,
    headers: HeaderMap,
    Path(card_number): Path<String>,
    Json(body): Json<AppBody>,
) -> Result<Json<Value>, ApiError> {
    use std::str::FromStr;
    let actor = may_run(&api, &headers)?;
    let mut chan = api.hub.channel(&body.terminal, &body.reader)?;
    let api2 = api.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<tsm::Outcome, tsm::Error> {
        let aid = |s: &str| gp::aid::Aid::from_str(s).map_err(bad);
        let package = aid(&body.package)?;
        let cap = api2
            .issuer
            .store()
            .package_cap(&package)?
            .ok_or_else(|| bad(format!("package {package} is not registered")))?;
        let parsed = gp::cap::CapFile::from_bytes(&cap).map_err(bad)?;
        let module = match &body.applet {
            Some(a) => aid(a)?,
            None => *parsed
                .applet_aids()
                .first()
                .ok_or_else(|| bad("the package has no applet"))?,
        };
        let privileges = if body.privileges.trim().is_empty() {
            gp::privileges::Privileges::default()
        } else {
            gp::privileges::Privileges::from_str(&body.privileges).map_err(bad)?
        };
        let app = tsm::model::AppSpec {
            instance: body
                .instance
                .as_deref()
                .map(aid)
                .transpose()?
                .unwrap_or(module),
            package,
            module,
            privileges,
            params: apdu::parse_hex(&body.params).map_err(bad)?,
            perso: apdu::parse_hex(&body.perso).map_err(bad)?,
        };
        api2.issuer.execute(
            &actor,
            &tsm::Request::LoadApp { card_number, app },
            &mut chan,
        )
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(Json(job_json(&r)))
}

#[derive(Deserialize)]
struct ReaderBody {
    terminal: String,
    reader: String,
}

async fn delete_app(
    State(api): State<Arc<IssuanceApi>>,
    headers: HeaderMap,
    Path((card_number, instance)): Path<(String, String)>,
    Json(body): Json<ReaderBody>,
) -> Result<Json<Value>, ApiError> {
    use std::str::FromStr;
    let actor = may_run(&api, &headers)?;
    let mut chan = api.hub.channel(&body.terminal, &body.reader)?;
    let api2 = api.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<tsm::Outcome, tsm::Error> {
        let instance = gp::aid::Aid::from_str(&instance).map_err(bad)?;
        api2.issuer.execute(
            &actor,
            &tsm::Request::DeleteApp {
                card_number,
                instance,
            },
            &mut chan,
        )
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(Json(job_json(&r)))
}

#[derive(Deserialize)]
struct ActBody {
    terminal: String,
    reader: String,
    category: Option<String>,
    install_apps: Option<bool>,
    to_version: Option<u32>,
    /// Card-specific personalisation for write: BER-TLV objects for the ISD, hex.
    #[serde(default)]
    perso: String,
}

async fn act(
    State(api): State<Arc<IssuanceApi>>,
    headers: HeaderMap,
    Path((card_number, action)): Path<(String, String)>,
    Json(body): Json<ActBody>,
) -> Result<Json<Value>, ApiError> {
    let actor = may_run(&api, &headers)?;
    let mut chan = api.hub.channel(&body.terminal, &body.reader)?;
    let api2 = api.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<tsm::Outcome, tsm::Error> {
        let store = api2.issuer.store();
        let category_of = |given: Option<String>| -> Result<String, tsm::Error> {
            match given {
                Some(c) => Ok(c),
                None => Ok(store
                    .card(&card_number)?
                    .ok_or(tsm::Error::UnknownCard)?
                    .category),
            }
        };
        let req = match action.as_str() {
            "write" => tsm::Request::Write {
                category: body
                    .category
                    .clone()
                    .ok_or_else(|| tsm::Error::Invalid("write needs a category".into()))?,
                card_number: card_number.clone(),
                install_apps: body.install_apps.unwrap_or(true),
                perso: apdu::parse_hex(&body.perso).map_err(bad)?,
            },
            "rewrite" => tsm::Request::Rewrite {
                category: category_of(body.category.clone())?,
                card_number: card_number.clone(),
                to_version: body.to_version,
            },
            "clear" => tsm::Request::Clear {
                category: category_of(body.category.clone())?,
                card_number: card_number.clone(),
            },
            "resume" => return api2.issuer.resume(&card_number, &mut chan),
            other => {
                return Err(tsm::Error::Invalid(format!(
                    "unknown action '{other}' (write, rewrite, clear, resume)"
                )))
            }
        };
        api2.issuer.execute(&actor, &req, &mut chan)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(Json(job_json(&r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route this module serves is documented, and every `$ref` resolves.
    #[test]
    fn openapi_covers_the_routes() {
        let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        let paths = doc["paths"].as_object().expect("paths");
        for p in [
            "/api/v1/terminals",
            "/api/v1/cards/{card_number}",
            "/api/v1/cards/{card_number}/write",
            "/api/v1/cards/{card_number}/rewrite",
            "/api/v1/cards/{card_number}/clear",
            "/api/v1/cards/{card_number}/resume",
            "/api/v1/cards/{card_number}/apps",
            "/api/v1/cards/{card_number}/apps/{instance}/delete",
            relay::WS_PATH,
        ] {
            assert!(paths.contains_key(p), "{p} is not documented");
        }
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|x| refs(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let ptr = r.trim_start_matches('#');
            assert!(doc.pointer(ptr).is_some(), "unresolved $ref {r}");
        }
    }
}
