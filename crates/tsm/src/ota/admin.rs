//! What operators do with OTA records, decided once for `cardwright ota …` and the HTTP API
//! (`server::ota_api`): the catalog entry's defaults, the tenant checks (a card is its
//! issuer's, as for issuance; refusals audited), and the push that opens a `pending`
//! session for `serve --ota` to send.

use std::str::FromStr;

use gp::aid::Aid;

use super::{valid_app_name, valid_iccid, Bearer, CatalogEntry, Message, Origin, OtaCard, Session};
use crate::error::{Error, Result};
use crate::issuance::{card_of_tenant, Actor};
use crate::{Store, StoreError};

/// Default privileges of a catalog instance (none), hex.
pub const DEFAULT_PRIVILEGES: &str = "00";

/// The longest install parameters (`C9` value) a catalog entry may carry.
pub const MAX_PARAMS: usize = 127;

/// A catalog entry as a user gives it: text fields, most optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogRequest {
    /// The name the card's download agent asks for.
    pub app: String,
    /// The menu text (default: the name).
    pub title: Option<String>,
    /// The load file AID, hex (a package of the acting tenant).
    pub package: String,
    /// The executable module AID, hex (default: the package's first applet).
    pub module: Option<String>,
    /// The instance AID, hex (default: the module AID).
    pub instance: Option<String>,
    /// The application's security domain AID, hex (default: the package AID with `FF01`
    /// appended, at most 16 bytes).
    pub sd: Option<String>,
    /// Privileges of the instance, hex, 1 or 3 bytes (default [`DEFAULT_PRIVILEGES`]).
    pub privileges: Option<String>,
    /// Install parameters (the `C9` value), hex, at most [`MAX_PARAMS`] bytes (default none).
    pub params: Option<String>,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{what}: {e}"))
}

fn aid(what: &str, s: &str) -> Result<Aid> {
    Aid::from_str(s.trim()).map_err(|e| invalid(what, e))
}

fn not_found(what: String) -> Error {
    Error::Store(StoreError::NotFound(what))
}

/// The default security domain of an application: its package AID with `FF01` appended
/// (cut to 16 bytes).
pub fn default_sd(package: &Aid) -> Result<Aid> {
    let mut b = package.as_bytes().to_vec();
    b.extend_from_slice(&[0xFF, 0x01]);
    b.truncate(16);
    Aid::new(&b).map_err(|e| invalid("SD AID", e))
}

/// Adds an application to the acting tenant's catalog, with the defaults of
/// [`CatalogRequest`]. The package must be the tenant's (another tenant's is not found).
/// Audited as `ota.catalog.add`.
pub fn add_to_catalog(store: &Store, actor: &Actor, req: &CatalogRequest) -> Result<CatalogEntry> {
    if !valid_app_name(&req.app) {
        return Err(Error::Invalid(format!(
            "application name '{}': use 1 to 32 letters, digits, '-' or '_'",
            req.app
        )));
    }
    let package = aid("package", &req.package)?;
    match store.package(&package)? {
        Some(p) if p.tenant == actor.tenant => {}
        _ => return Err(not_found(format!("package {package}"))),
    }
    let module = match &req.module {
        Some(m) => aid("module", m)?,
        None => {
            let cap = store
                .package_cap(&package)?
                .ok_or_else(|| not_found(format!("package {package}")))?;
            let cap = gp::cap::CapFile::from_bytes(&cap)
                .map_err(|e| invalid(&format!("package {package}"), e))?;
            *cap.applet_aids()
                .first()
                .ok_or_else(|| Error::Invalid(format!("package {package} has no applet")))?
        }
    };
    let instance = match &req.instance {
        Some(i) => aid("instance", i)?,
        None => module,
    };
    let sd = match &req.sd {
        Some(s) => aid("sd", s)?,
        None => default_sd(&package)?,
    };
    let hex = |what: &str, s: &str| apdu::parse_hex(s.trim()).map_err(|e| invalid(what, e));
    let params = hex("params", req.params.as_deref().unwrap_or_default())?;
    if params.len() > MAX_PARAMS {
        return Err(Error::Invalid(format!(
            "params: {} bytes; at most {MAX_PARAMS}",
            params.len()
        )));
    }
    let entry = CatalogEntry {
        tenant: actor.tenant.clone(),
        app: req.app.clone(),
        title: req.title.clone().unwrap_or_else(|| req.app.clone()),
        package,
        module,
        instance,
        sd,
        privileges: hex(
            "privileges",
            req.privileges.as_deref().unwrap_or(DEFAULT_PRIVILEGES),
        )?,
        params,
        created_ms: 0,
    };
    Ok(store.add_ota_catalog_entry(&actor.name(), &entry)?)
}

/// Gives a card of the acting tenant its identity on the air (see
/// [`Store::enrol_ota_card`]). Another tenant's card is refused (audited as `ota.enrol`).
pub fn enrol_card(
    store: &Store,
    actor: &Actor,
    card_number: &str,
    iccid: &str,
    msisdn: &str,
    kvn: u8,
) -> Result<OtaCard> {
    let card = card_of_tenant(store, actor, card_number, "ota.enrol", None)?;
    Ok(store.enrol_ota_card(&actor.name(), &card.card_number, iccid, msisdn, kvn)?)
}

/// The OTA identity with this ICCID, if its card is the acting tenant's (a refusal is
/// audited under `action`).
fn card_by_iccid(store: &Store, actor: &Actor, iccid: &str, action: &str) -> Result<OtaCard> {
    if !valid_iccid(iccid) {
        return Err(Error::Invalid(format!("ICCID '{iccid}': 18 to 20 digits")));
    }
    let card = store
        .ota_card_by_iccid(iccid)?
        .ok_or_else(|| not_found(format!("card with ICCID {iccid} enrolled for OTA")))?;
    card_of_tenant(store, actor, &card.card_number, action, None)?;
    Ok(card)
}

/// Pushes an application to a card: the card must be enrolled and the acting tenant's
/// (refusal audited as `ota.push`), the application in the tenant's catalog. Opens a
/// `pending` session (origin `server`, audited as `ota.session.open`) that `serve --ota`
/// starts at its next tick.
pub fn open_push_session(
    store: &Store,
    actor: &Actor,
    iccid: &str,
    app: &str,
    bearer: Bearer,
) -> Result<Session> {
    let card = card_by_iccid(store, actor, iccid, "ota.push")?;
    if !valid_app_name(app) || store.ota_catalog_entry(&actor.tenant, app)?.is_none() {
        return Err(not_found(format!(
            "application '{app}' in the catalog of {}",
            actor.tenant
        )));
    }
    Ok(store.open_ota_session(
        &actor.name(),
        &actor.tenant,
        &card.card_number,
        app,
        bearer,
        Origin::Server,
    )?)
}

/// A session with its messages (oldest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLog {
    /// The session.
    pub session: Session,
    /// Its messages.
    pub messages: Vec<Message>,
}

/// A card's OTA identity and its latest sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardHistory {
    /// The card.
    pub card: OtaCard,
    /// Its sessions, newest first.
    pub sessions: Vec<SessionLog>,
}

fn with_messages(store: &Store, session: Session) -> Result<SessionLog> {
    let messages = store.ota_messages(session.id)?;
    Ok(SessionLog { session, messages })
}

/// The card with this ICCID and its latest `limit` sessions with their messages, if the
/// card is the acting tenant's (refusal audited as `ota.read`).
pub fn card_history(store: &Store, actor: &Actor, iccid: &str, limit: u32) -> Result<CardHistory> {
    let card = card_by_iccid(store, actor, iccid, "ota.read")?;
    let sessions = store
        .ota_sessions(&card.card_number, limit)?
        .into_iter()
        .map(|s| with_messages(store, s))
        .collect::<Result<_>>()?;
    Ok(CardHistory { card, sessions })
}

/// One session and its messages, if its card is the acting tenant's (refusal audited as
/// `ota.read`).
pub fn session_log(store: &Store, actor: &Actor, id: i64) -> Result<SessionLog> {
    let session = store
        .ota_session(id)?
        .ok_or_else(|| not_found(format!("OTA session {id}")))?;
    card_of_tenant(store, actor, &session.card_number, "ota.read", None)?;
    with_messages(store, session)
}
