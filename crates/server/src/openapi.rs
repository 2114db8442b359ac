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

/// Adds to every operation of `doc` the refusals the extractors give before a handler runs,
/// where the operation does not document them: with a request body, `413` (body too large)
/// and `415` (not `application/json`); with path parameters, `400` (a parameter that does
/// not parse). All answer `{"error", "reason"}` ([`crate::error::ErrorBody`]).
pub fn with_extractor_refusals(mut doc: OpenApi) -> OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let refusal = |description: &str| {
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build();
        ResponseBuilder::new()
            .description(description)
            .content("application/json", content)
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            let has_body = op.request_body.is_some();
            let has_path_params = op.parameters.as_ref().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Path)
            });
            if has_body {
                op.responses
                    .responses
                    .entry("413".into())
                    .or_insert_with(|| refusal("Body too large").into());
                op.responses
                    .responses
                    .entry("415".into())
                    .or_insert_with(|| refusal("Not application/json").into());
            }
            if has_path_params {
                op.responses
                    .responses
                    .entry("400".into())
                    .or_insert_with(|| refusal("A path parameter does not parse").into());
            }
        }
    }
    doc
}
