//! Observability of `cardwright serve`: the request id, the request span and log line, the
//! request metrics, and the operational routes.
//!
//! * Every request gets an id: a valid incoming `x-request-id` (1 to 128 characters of
//!   `A-Z a-z 0-9 - _ . :`), else a new UUID (tower-http's `request-id` layer). It is echoed
//!   in the `x-request-id` response header, recorded in a `request` tracing span around all
//!   logs of the request (with the method and the route template, never the raw path or
//!   query, which may hold card numbers), and put in every JSON error answer
//!   (`"request_id"`, [`current_request_id`]).
//! * `GET /metrics`: [`Metrics`] in the OpenMetrics text format when the `Accept` header asks
//!   for it (Prometheus does), else in the Prometheus text format 0.0.4; with a metrics token
//!   only for `Authorization: Bearer TOKEN`.
//! * `GET /healthz` (the payment routes): the process answers.
//! * `GET /readyz`: 200 when every [`Readiness`] check passes (the database answers, the key
//!   stores answer), else `503 not_ready` naming what failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::metrics::{self, Metrics};

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How long `/readyz` waits for one check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

tokio::task_local! {
    static CURRENT_REQUEST_ID: String;
}

/// The id of the request being answered on this task, if any (inside [`instrument`]'s
/// layers).
pub fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

/// `tokio::task::spawn_blocking` in the current span: the blocking work's logs carry the
/// request's id (a span does not follow work onto another thread by itself).
pub fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}

/// Whether an incoming request id is taken as is: 1 to 128 characters of `A-Z a-z 0-9 - _ .
/// :` (enough for UUIDs and the ids of common proxies; nothing that could forge a log line).
pub fn valid_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

type Probe = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What `/readyz` checks.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Probe)>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.checks.iter().map(|(n, _)| n))
            .finish()
    }
}

impl Readiness {
    /// No checks: always ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// A named check.
    pub fn check(
        mut self,
        name: &'static str,
        probe: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.checks.push((name, Arc::new(probe)));
        self
    }

    /// `database`: the store answers a query (the migrations table).
    pub fn database(self, store: tsm::Store) -> Self {
        self.check("database", move || {
            store
                .schema_versions()
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    /// `NAME`: the key store of base keys answers (it lists its keys), timed as the
    /// `probe` operation.
    pub fn keystore(
        self,
        name: &'static str,
        keys: Arc<dyn kms::KeyStore>,
        metrics: Arc<Metrics>,
    ) -> Self {
        self.check(name, move || {
            let start = Instant::now();
            let r = keys.list().map(|_| ()).map_err(|e| e.to_string());
            metrics.keystore_operation("probe", start.elapsed());
            r
        })
    }

    /// `NAME`: the signing key store answers (it lists its labels).
    pub fn signing(
        self,
        name: &'static str,
        keys: Arc<dyn kms::SigningKeyStore>,
        metrics: Arc<Metrics>,
    ) -> Self {
        self.check(name, move || {
            let start = Instant::now();
            let r = keys
                .signing_key_labels()
                .map(|_| ())
                .map_err(|e| e.to_string());
            metrics.keystore_operation("probe", start.elapsed());
            r
        })
    }
}

/// The observability of a server: its metrics, readiness checks and optional metrics token.
#[derive(Debug, Clone)]
pub struct Observability {
    /// The registry.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` checks.
    pub readiness: Readiness,
    /// When set, `/metrics` answers only `Authorization: Bearer TOKEN`.
    pub metrics_token: Option<Arc<Zeroizing<String>>>,
}

impl Observability {
    /// Fresh metrics, no readiness checks, no token.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            readiness: Readiness::new(),
            metrics_token: None,
        }
    }
}

/// `app` with `/metrics` and `/readyz`, and every request observed: request id, span, log
/// line, metrics, error answers counted. Call it on the finished router ([`crate::finish`]).
pub fn instrument(app: Router, obs: Observability) -> Router {
    let ops = Router::new()
        .route("/metrics", get(metrics_route))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(obs.clone()));
    app.merge(ops)
        .layer(middleware::from_fn_with_state(obs.metrics, observe))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::map_request(drop_invalid_request_id))
}

/// An incoming request id that is not [`valid_request_id`] is replaced (by the next layer).
async fn drop_invalid_request_id(mut req: Request) -> Request {
    let invalid = req
        .headers()
        .get_all(&REQUEST_ID)
        .iter()
        .enumerate()
        .any(|(i, v)| i > 0 || !valid_request_id(v.as_bytes()));
    if invalid {
        req.headers_mut().remove(&REQUEST_ID);
    }
    req
}

/// Routes whose requests are logged at DEBUG (probes and scrapes come every few seconds).
fn quiet(route: &str) -> bool {
    matches!(route, "/metrics" | "/healthz" | "/readyz")
}

/// The route template as a label: `{param}` written `:param` (braces inside label values
/// trip some exposition parsers); `unmatched` for the fallback.
fn route_label(matched: Option<&MatchedPath>) -> String {
    match matched {
        Some(m) => m
            .as_str()
            .split('/')
            .map(
                |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => format!(":{}", name.trim_start_matches('*')),
                    None => seg.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("/"),
        None => "unmatched".to_string(),
    }
}

async fn observe(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let route = route_label(req.extensions().get::<MatchedPath>());
    let method = req.method().as_str().to_string();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let response = CURRENT_REQUEST_ID
        .scope(id, next.run(req))
        .instrument(span.clone())
        .await;
    let took = start.elapsed();
    let status = response.status();
    metrics.http_request(&method, &route, status.as_u16(), took);
    let code = response.extensions().get::<crate::error::ErrorCode>();
    if let Some(code) = code {
        metrics.error(&code.0);
    }
    let _in = span.enter();
    // Milliseconds, to the microsecond.
    let ms = (took.as_secs_f64() * 1e6).round() / 1e3;
    let error = code.map(|c| c.0.as_str()).unwrap_or("");
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), ms, error, "answered");
    } else if quiet(&route) {
        tracing::debug!(status = status.as_u16(), ms, "answered");
    } else {
        tracing::info!(status = status.as_u16(), ms, error, "answered");
    }
    response
}

/// `GET /metrics`.
async fn metrics_route(
    State(obs): State<Arc<Observability>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = &obs.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        use subtle::ConstantTimeEq;
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return Err(ApiError::unauthorized(
                "/metrics needs the metrics token (Authorization: Bearer …)",
            ));
        }
    }
    // OpenMetrics to who asks for it (Prometheus does), else the text format 0.0.4.
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let m = obs.metrics.clone();
    // Off the async workers: the open jobs are counted with a query.
    let (text, content_type) = spawn_blocking(move || {
        if openmetrics {
            (m.render(), metrics::CONTENT_TYPE)
        } else {
            (m.render_text(), metrics::TEXT_CONTENT_TYPE)
        }
    })
    .await
    .map_err(|_| ApiError::internal("a metrics worker"))?;
    let text = text.map_err(|_| ApiError::internal("encoding the metrics"))?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        text,
    )
        .into_response())
}

/// The `/readyz` answer when ready.
#[derive(Debug, Serialize)]
struct Ready {
    status: &'static str,
    checks: Vec<&'static str>,
}

/// `GET /readyz`: every check, each within [`CHECK_TIMEOUT`].
async fn readyz(State(obs): State<Arc<Observability>>) -> Result<Json<Ready>, ApiError> {
    let mut failed = Vec::new();
    for (name, probe) in &obs.readiness.checks {
        let probe = probe.clone();
        let run = spawn_blocking(move || probe());
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, run).await {
            Ok(Ok(Ok(()))) => continue,
            Ok(Ok(Err(e))) => e,
            Ok(Err(_)) => "the check failed".to_string(),
            Err(_) => format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
        };
        tracing::warn!(check = name, "not ready: {outcome}");
        failed.push(format!("{name}: {outcome}"));
    }
    if failed.is_empty() {
        Ok(Json(Ready {
            status: "ready",
            checks: obs.readiness.checks.iter().map(|(n, _)| *n).collect(),
        }))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            failed.join("; "),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(valid_request_id(b"3f2c1d9e-7a41-4b8e-9c1a-0e4b5d6f7a8b"));
        assert!(valid_request_id(b"lb:1234.5_6"));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"a b"));
        assert!(!valid_request_id(b"x\ny"));
        assert!(!valid_request_id(&[b'a'; 129]));
    }
}
