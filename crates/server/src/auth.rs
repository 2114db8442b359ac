//! Bearer-token authentication with roles, for every service.
//!
//! Each handler that needs a caller takes [`Auth<P>`] among its first extractors: it reads
//! `Authorization: Bearer TOKEN` (the scheme case-insensitively, RFC 7235 §2.1), finds the
//! token in the service's [`TokenTable`] (compared in constant time with `subtle`), and
//! checks that its role is one the permission `P` allows, **before** the body is read: a
//! request without a valid token answers 401 whatever its body, and one whose role may not
//! do this answers 403.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;
use std::{fmt, marker::PhantomData, sync::Arc};

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};

use axum::{extract::FromRequestParts, http::request::Parts};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::tls::ClientCertificate;

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
    /// The payment API's administrator.
    pub fn admin() -> Principal {
        Principal {
            name: "admin".into(),
            role: Role::Admin,
            tenant: None,
        }
    }

    /// The issuance actor of an operator or viewer (`tenant/name`).
    pub fn actor(&self) -> tsm::Actor {
        tsm::Actor::new(self.tenant.as_deref().unwrap_or_default(), &self.name)
    }
}

/// One accepted token.
type Entry = (Zeroizing<String>, Principal);

/// The tokens a service accepts, and the roots of the terminals' client certificates.
/// Tokens are wiped on drop and never printed.
///
/// Clones share one table: [`TokenTable::replace_with`] (a token file re-read while serving,
/// [`watch_token_files`]) changes what every service holding a clone accepts, from its next
/// request on.
#[derive(Default, Clone)]
pub struct TokenTable {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    entries: RwLock<Arc<Vec<Entry>>>,
    terminals: RwLock<Arc<TerminalRoots>>,
    /// Called after each [`TokenTable::replace_with`].
    on_replace: RwLock<Vec<Box<dyn Fn() + Send + Sync>>>,
}

/// The roots (`serve --terminal-ca`) and CRLs (`--terminal-crl`) of terminal certificates.
#[derive(Default)]
struct TerminalRoots {
    roots: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

impl fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.entries()
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

    /// The entries now (a poisoned lock reads as no token at all: refuse rather than guess).
    fn entries(&self) -> Arc<Vec<Entry>> {
        self.shared
            .entries
            .read()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// Accepts `token` for `principal`.
    pub fn with(mut self, token: &str, principal: Principal) -> Self {
        self.add(token, principal);
        self
    }

    /// Accepts `token` for `principal` (in every clone of this table).
    pub fn add(&mut self, token: &str, principal: Principal) {
        if let Ok(mut e) = self.shared.entries.write() {
            Arc::make_mut(&mut e).push((Zeroizing::new(token.to_string()), principal));
        }
    }

    /// Replaces every token by those of `other` (the terminal roots stay): what every clone
    /// of this table accepts from the next request on. Requests already authenticated are
    /// not affected; terminals connected with a token that is gone are disconnected from
    /// the hubs this table guards ([`TokenTable::guard_hub`]).
    pub fn replace_with(&self, other: &TokenTable) {
        let new = other.entries();
        if let Ok(mut e) = self.shared.entries.write() {
            *e = new;
        }
        if let Ok(hooks) = self.shared.on_replace.read() {
            for hook in hooks.iter() {
                hook();
            }
        }
    }

    /// Each time this table's tokens are replaced ([`TokenTable::replace_with`]: a token
    /// file re-read, [`watch_token_files`]), the terminals of `hub` connected with a token
    /// it no longer holds are disconnected ([`relay::hub::Hub::disconnect_revoked`]). The
    /// table holds the hub weakly: a hub dropped is forgotten.
    pub fn guard_hub(&self, hub: &Arc<relay::hub::Hub>) {
        let hub = Arc::downgrade(hub);
        if let Ok(mut hooks) = self.shared.on_replace.write() {
            hooks.push(Box::new(move || {
                if let Some(hub) = hub.upgrade() {
                    hub.disconnect_revoked();
                }
            }));
        }
    }

    /// How many tokens there are of each role in `roles`.
    pub fn count(&self, roles: &[Role]) -> usize {
        self.entries()
            .iter()
            .filter(|(_, p)| roles.contains(&p.role))
            .count()
    }

    /// Whether any token has one of these roles.
    pub fn has_role(&self, roles: &[Role]) -> bool {
        self.count(roles) > 0
    }

    /// The principal `token` names. Every entry is compared (in constant time), so the time
    /// taken does not tell which one matched or how much of a token was right.
    pub fn lookup(&self, token: &str) -> Option<Principal> {
        let entries = self.entries();
        let mut found = None;
        for (t, p) in entries.iter() {
            if bool::from(t.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(p);
            }
        }
        found.cloned()
    }

    /// Accepts terminals by client certificate (mutual TLS): a chain that verifies against
    /// one of `roots` (with `crls`) names the terminal of its end-entity certificate's
    /// subject commonName ([`TokenTable::terminal_for_chain`]). The TLS layer must ask for
    /// client certificates of these roots too ([`crate::tls::PartnerCertVerifier::set_terminal_roots`]).
    pub fn set_terminal_roots(
        &self,
        roots: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) {
        if let Ok(mut t) = self.shared.terminals.write() {
            *t = Arc::new(TerminalRoots { roots, crls });
        }
    }

    /// Whether terminals may authenticate with a client certificate.
    pub fn has_terminal_roots(&self) -> bool {
        self.shared
            .terminals
            .read()
            .is_ok_and(|t| !t.roots.is_empty())
    }

    /// The terminal a client chain (verified in the TLS handshake, end entity first) names:
    /// the chain must verify against one of the terminal roots, and the terminal is the
    /// end-entity certificate's subject commonName. `None`: not a terminal's certificate (a
    /// partner's, say, on a shared listener), or no usable commonName.
    pub fn terminal_for_chain(&self, chain: &[CertificateDer<'static>]) -> Option<Principal> {
        let terminals = self.shared.terminals.read().ok()?.clone();
        let trusted = terminals
            .roots
            .iter()
            .any(|root| crate::tls::chain_verifies_against(chain, root, &terminals.crls));
        if !trusted {
            return None;
        }
        let cert = pki::Certificate::from_der(chain.first()?.as_ref()).ok()?;
        let name = cert
            .x509()
            .tbs_certificate()
            .subject()
            .common_name()
            .ok()??
            .value()
            .trim()
            .to_string();
        if name.is_empty() || name.chars().any(char::is_control) {
            return None;
        }
        Some(Principal {
            name,
            role: Role::Terminal,
            tenant: None,
        })
    }
}

impl relay::hub::TerminalAuth for TokenTable {
    fn terminal_for(&self, token: &str) -> Option<String> {
        self.lookup(token)
            .filter(|p| p.role == Role::Terminal)
            .map(|p| p.name)
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
    bearer_of(&parts.headers)
}

/// [`bearer_token`] of a request's headers.
pub fn bearer_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
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
        let principal = match bearer_token(parts) {
            Some(token) => {
                if !tokens.has_role(P::ROLES) {
                    return Err(P::disabled());
                }
                tokens
                    .lookup(token)
                    .ok_or_else(|| ApiError::unauthorized("unknown or wrong bearer token"))?
            }
            // No token: a terminal's client certificate (mutual TLS), verified in the
            // handshake, names the caller.
            None => match parts.extensions.get::<ClientCertificate>() {
                Some(client) if tokens.has_terminal_roots() => {
                    let chain = client.chain.clone();
                    let tokens = tokens.clone();
                    // Chain verification is CPU work: off the async workers.
                    tokio::task::spawn_blocking(move || tokens.terminal_for_chain(&chain))
                        .await
                        .map_err(|_| ApiError::internal("a client certificate check"))?
                        .ok_or_else(|| {
                            ApiError::unauthorized(
                                "the client certificate is not a terminal's (no --terminal-ca root, or no subject commonName), and no bearer token was given",
                            )
                        })?
                }
                _ => {
                    return Err(ApiError::unauthorized(
                        "a bearer token is required (Authorization: Bearer …)",
                    ))
                }
            },
        };
        if !P::ROLES.contains(&principal.role) {
            return Err(ApiError::forbidden(format!(
                "{} (role {}) may not {}",
                principal.name,
                principal.role,
                P::ACTION
            )));
        }
        Ok(Auth {
            principal,
            _permission: PhantomData,
        })
    }
}

/// The SHA-256 of each file's content now (`None`: unreadable).
fn digests(files: &[PathBuf]) -> Vec<Option<[u8; 32]>> {
    use sha2::Digest;
    files
        .iter()
        .map(|f| {
            std::fs::read(f)
                .ok()
                .map(|b| sha2::Sha256::digest(Zeroizing::new(b)).into())
        })
        .collect()
}

/// Token rotation without a restart: every `every`, the content of `files` is compared with
/// what was last read, and on a change (or on `SIGHUP`) `build` makes a new table that
/// replaces `table`'s tokens ([`TokenTable::replace_with`]): a removed token is refused and
/// an added one accepted from the next request on. When `build` fails (a malformed line, a
/// file that went away) the previous tokens stay and the error is logged; `build`'s errors
/// must not hold tokens. Spawns a task on the current tokio runtime.
pub fn watch_token_files<F>(table: TokenTable, files: Vec<PathBuf>, every: Duration, build: F)
where
    F: Fn() -> Result<TokenTable, String> + Send + Sync + 'static,
{
    let build = Arc::new(build);
    // Installed now, before the caller goes on to serve: a SIGHUP from then on re-reads
    // instead of ending the process (its default action).
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!("no SIGHUP handler ({e}); token files are still re-read on change");
            None
        }
    };
    tokio::spawn(async move {
        let mut seen = digests(&files);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            let forced = tokio::select! {
                _ = tick.tick() => false,
                _ = hangup => true,
            };
            let (files_now, build_now, before) = (files.clone(), build.clone(), seen.clone());
            // Only a change (or SIGHUP) rebuilds, so a broken file is reported once, not at
            // every tick.
            let result = tokio::task::spawn_blocking(move || {
                let now = digests(&files_now);
                let built = (forced || now != before).then(|| build_now());
                (now, built)
            })
            .await;
            let Ok((now, Some(built))) = result else {
                continue;
            };
            seen = now;
            match built {
                Ok(new) => {
                    table.replace_with(&new);
                    tracing::info!(
                        admins = table.count(&[Role::Admin]),
                        operators = table.count(&[Role::Operator, Role::Viewer]),
                        terminals = table.count(&[Role::Terminal]),
                        reason = if forced {
                            "SIGHUP"
                        } else {
                            "a token file changed"
                        },
                        "tokens re-read"
                    );
                }
                Err(e) => tracing::error!(
                    "token files not re-read ({e}); the previous tokens stay in force"
                ),
            }
        }
    });
}
