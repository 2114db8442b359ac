//! The OpenAPI documents, generated from the request and answer types and the handlers'
//! `#[utoipa::path]` attributes, and the route list that ties each document to its router.

use axum::routing::MethodRouter;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;

/// A router that records the (method, path) of every route it is given, so that a test can
/// compare the router with its OpenAPI document.
#[derive(Debug)]
pub struct Routes<S> {
    router: Router<S>,
    list: Vec<(&'static str, &'static str)>,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// No routes.
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            list: Vec::new(),
        }
    }

    /// Adds `route` at `path`, answering the `methods` (lower case: `get`, `post`).
    pub fn route(
        mut self,
        path: &'static str,
        methods: &[&'static str],
        route: MethodRouter<S>,
    ) -> Self {
        for m in methods {
            self.list.push((m, path));
        }
        self.router = self.router.route(path, route);
        self
    }

    /// The routes with their state given.
    pub fn with_state<S2>(self, state: S) -> Routes<S2> {
        Routes {
            router: self.router.with_state(state),
            list: self.list,
        }
    }

    /// The router.
    pub fn into_router(self) -> Router<S> {
        self.router
    }

    /// The (method, path) pairs.
    pub fn list(&self) -> &[(&'static str, &'static str)] {
        &self.list
    }
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

/// The (method, path) pairs a document describes, sorted.
pub fn documented(doc: &OpenApi) -> Vec<(String, String)> {
    let value = serde_json::to_value(doc).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(paths) = value["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "post", "put", "delete", "patch", "head", "options"] {
                if item.get(method).is_some() {
                    out.push((method.to_string(), path.clone()));
                }
            }
        }
    }
    out.sort();
    out
}

/// Adds the `bearer` security scheme (RFC 6750) to a document.
pub fn with_bearer(mut doc: OpenApi) -> OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    doc
}
