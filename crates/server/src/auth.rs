//! Bearer-token authentication with roles, for every service.
//!
//! Each handler that needs a caller takes [`Auth<P>`] among its first extractors: it reads
//! `Authorization: Bearer TOKEN` (the scheme case-insensitively, RFC 7235 §2.1), finds the
//! token in the service's [`TokenTable`] (compared in constant time with `subtle`), and
//! checks that its role is one the permission `P` allows, **before** the body is read: a
//! request without a valid token answers 401 whatever its body, and one whose role may not
//! do this answers 403.

use std::{fmt, marker::PhantomData, sync::Arc};

use axum::{extract::FromRequestParts, http::request::Parts};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::ApiError;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The payment API's administrator: revocation and the audit log.
    Admin,
    /// An issuance operator: runs jobs and reads.
    Operator,
    /// An issuance viewer: reads terminals, cards and jobs only.
    Viewer,
    /// An issuing terminal lending its readers through the relay.
    Terminal,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Terminal => "terminal",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    /// The operator roles given on the command line: `operator` or `viewer`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role '{other}' (operator, viewer)")),
        }
    }
}

/// Who a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user, operator or terminal name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The tenant it acts for (issuance operators and viewers).
    pub tenant: Option<String>,
}

impl Principal {
    /// The issuance actor of an operator or viewer (`tenant/name`).
    pub fn actor(&self) -> tsm::Actor {
        tsm::Actor::new(self.tenant.as_deref().unwrap_or_default(), &self.name)
    }
}

/// The tokens a service accepts. Tokens are wiped on drop and never printed.
#[derive(Default, Clone)]
pub struct TokenTable {
    entries: Vec<(Zeroizing<String>, Principal)>,
}

impl fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|(_, p)| format!("{} ({})", p.name, p.role)),
            )
            .finish()
    }
}

impl TokenTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token` for `principal`.
    pub fn with(mut self, token: &str, principal: Principal) -> Self {
        self.add(token, principal);
        self
    }

    /// Accepts `token` for `principal`.
    pub fn add(&mut self, token: &str, principal: Principal) {
        self.entries
            .push((Zeroizing::new(token.to_string()), principal));
    }

    /// Whether any token has one of these roles.
    pub fn has_role(&self, roles: &[Role]) -> bool {
        self.entries.iter().any(|(_, p)| roles.contains(&p.role))
    }

    /// The principal `token` names. Every entry is compared (in constant time), so the time
    /// taken does not tell which one matched or how much of a token was right.
    pub fn lookup(&self, token: &str) -> Option<&Principal> {
        let mut found = None;
        for (t, p) in &self.entries {
            if bool::from(t.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(p);
            }
        }
        found
    }
}

impl relay::hub::TerminalAuth for TokenTable {
    fn terminal_for(&self, token: &str) -> Option<String> {
        self.lookup(token)
            .filter(|p| p.role == Role::Terminal)
            .map(|p| p.name.clone())
    }
}

/// A service state that holds a [`TokenTable`].
pub trait HasTokens: Send + Sync + 'static {
    /// The accepted tokens.
    fn tokens(&self) -> &TokenTable;
}

/// Which roles may use a route.
pub trait Permission: Send + Sync + 'static {
    /// The roles allowed.
    const ROLES: &'static [Role];
    /// What the route does, for the 403 reason.
    const ACTION: &'static str;
    /// The answer when the service has no token of these roles at all.
    fn disabled() -> ApiError {
        ApiError::forbidden(format!("nothing may {} on this server", Self::ACTION))
    }
}

/// Revocation and the audit log of the payment API.
#[derive(Debug)]
pub struct Administer;
impl Permission for Administer {
    const ROLES: &'static [Role] = &[Role::Admin];
    const ACTION: &'static str = "administer the payment API";
    fn disabled() -> ApiError {
        ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "admin_disabled",
            "no admin token is configured on this server (--admin-token-env)",
        )
    }
}

/// Running issuance jobs.
#[derive(Debug)]
pub struct Operate;
impl Permission for Operate {
    const ROLES: &'static [Role] = &[Role::Operator];
    const ACTION: &'static str = "run issuance jobs";
}

/// Reading terminals, cards and jobs.
#[derive(Debug)]
pub struct Read;
impl Permission for Read {
    const ROLES: &'static [Role] = &[Role::Operator, Role::Viewer];
    const ACTION: &'static str = "read issuance records";
}

/// Lending readers through the relay.
#[derive(Debug)]
pub struct LendReaders;
impl Permission for LendReaders {
    const ROLES: &'static [Role] = &[Role::Terminal];
    const ACTION: &'static str = "connect as an issuing terminal";
}

/// The authenticated caller of a route that needs permission `P`.
#[derive(Debug, Clone)]
pub struct Auth<P> {
    /// Who it is.
    pub principal: Principal,
    _permission: PhantomData<fn() -> P>,
}

/// The token of `Authorization: Bearer TOKEN`, the scheme in any case (RFC 7235 §2.1).
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl<P: Permission, S: HasTokens> FromRequestParts<Arc<S>> for Auth<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<S>) -> Result<Self, ApiError> {
        let tokens = state.tokens();
        let token = bearer_token(parts).ok_or_else(|| {
            ApiError::unauthorized("a bearer token is required (Authorization: Bearer …)")
        })?;
        if !tokens.has_role(P::ROLES) {
            return Err(P::disabled());
        }
        let principal = tokens
            .lookup(token)
            .ok_or_else(|| ApiError::unauthorized("unknown or wrong bearer token"))?;
        if !P::ROLES.contains(&principal.role) {
            return Err(ApiError::forbidden(format!(
                "{} (role {}) may not {}",
                principal.name,
                principal.role,
                P::ACTION
            )));
        }
        Ok(Auth {
            principal: principal.clone(),
            _permission: PhantomData,
        })
    }
}
