//! The check-out page (`/pay`), its script and style, the OpenAPI document, `/healthz`.
//!
//! The page is plain HTML and JavaScript (no build step). Its Content-Security-Policy lets
//! it load code only from this server and `fetch` only this server and the configured
//! agent.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, HeaderValue},
    response::{IntoResponse, Redirect, Response},
};

use crate::PayServer;

const PAY_HTML: &str = include_str!("../pages/pay.html");
const PAY_JS: &str = include_str!("../pages/pay.js");
const PAY_CSS: &str = include_str!("../pages/pay.css");

/// Escapes text for an HTML attribute value.
pub(crate) fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The origin (`scheme://host[:port]`) of a URL, for the CSP `connect-src`.
fn origin_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let end = rest
        .find('/')
        .map_or(url.len(), |i| url.len() - rest.len() + i);
    let origin = &url[..end];
    origin
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":/.-[]".contains(&b))
        .then_some(origin)
}

/// The security headers of a page (CSP, nosniff, no referrer, no framing); `agent`: an
/// origin the page may also `fetch`.
pub(crate) fn page_headers(agent: Option<&str>) -> [(header::HeaderName, HeaderValue); 4] {
    let connect = agent.map_or(String::new(), |a| format!(" {a}"));
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'{connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static("default-src 'none'")),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ]
}

/// `GET /`: to the check-out page.
#[utoipa::path(get, path = "/", security(), responses((status = 303, description = "To /pay")))]
pub async fn index() -> Redirect {
    Redirect::to("/pay")
}

/// `GET /pay`: the check-out page.
#[utoipa::path(get, path = "/pay", security(), responses((status = 200, description = "The check-out page", body = String, content_type = "text/html")))]
pub async fn pay(State(s): State<Arc<PayServer>>) -> Response {
    let agent = s.config.agent_url.trim_end_matches('/');
    let html = PAY_HTML.replace("{{AGENT_URL}}", &escape_attr(agent));
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    r.headers_mut().extend(page_headers(origin_of(agent)));
    r
}

/// `GET /pay.js`.
#[utoipa::path(get, path = "/pay.js", security(), responses((status = 200, description = "The page's script", body = String, content_type = "text/javascript")))]
pub async fn pay_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAY_JS,
    )
        .into_response()
}

/// `GET /pay.css`.
#[utoipa::path(get, path = "/pay.css", security(), responses((status = 200, description = "The page's style", body = String, content_type = "text/css")))]
pub async fn pay_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAY_CSS,
    )
        .into_response()
}

/// `GET /api/openapi.json`: the payment API's document.
#[utoipa::path(get, path = "/api/openapi.json", security(), responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
pub async fn openapi() -> Response {
    match crate::openapi_document().to_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(_) => crate::ApiError::internal("the OpenAPI document").into_response(),
    }
}

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", security(), responses((status = 200, description = "ok", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /favicon.ico`: none.
#[utoipa::path(get, path = "/favicon.ico", security(), responses((status = 204, description = "No icon")))]
pub async fn favicon() -> axum::http::StatusCode {
    axum::http::StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_escaping() {
        assert_eq!(
            origin_of("http://127.0.0.1:7373"),
            Some("http://127.0.0.1:7373")
        );
        assert_eq!(
            origin_of("https://a.example/x/y"),
            Some("https://a.example")
        );
        assert_eq!(origin_of("javascript:alert(1)"), None);
        assert_eq!(origin_of("http://a b"), None);
        assert_eq!(escape_attr("\"><script>"), "&quot;&gt;&lt;script&gt;");
    }
}
