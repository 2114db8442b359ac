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

/// What `ota enrol` asks for: a card of the platform and its identity on the air.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolRequest {
    /// The platform's card number.
    pub card_number: String,
    /// The card's ICCID (18 to 20 digits): also its SCP81 PSK identity.
    pub iccid: String,
    /// The subscriber's number (international, an optional `+`).
    pub msisdn: String,
    /// The SCP80 key set version, 1 to 15; `None`: [`scp80_kvn`] chooses.
    pub kvn: Option<u8>,
}

/// The SCP80 key set version of a card: the one asked for, checked (1 to 15, and not the
/// version of the card's SCP02/SCP03 key set, which shares the ISD's key version space:
/// its ENC and MAC keys would be taken for KIc and KID, and PUT KEY would overwrite them);
/// else [`DEFAULT_KVN`](super::scp80::DEFAULT_KVN), or the lowest version from 1 the
/// card's secure channel key set does not use.
pub fn scp80_kvn(card: &crate::model::Card, asked: Option<u8>) -> Result<u8> {
    let taken = card.kvn;
    match asked {
        Some(k) if !super::scp80::SCP80_KVNS.contains(&k) => Err(Error::Invalid(format!(
            "SCP80 key version {k}: 1 to 15 (GP UICC Configuration §4.2)"
        ))),
        Some(k) if Some(k) == taken => Err(Error::Invalid(format!(
            "SCP80 key version {k} is the card's secure channel key set ({k:#04x}); \
             choose another --kvn (1 to 15)"
        ))),
        Some(k) => Ok(k),
        None => Ok(
            (super::scp80::DEFAULT_KVN..=*super::scp80::SCP80_KVNS.end())
                .find(|k| Some(*k) != taken)
                .unwrap_or(super::scp80::DEFAULT_KVN),
        ),
    }
}

/// The checks of an enrolment before anything happens: the card is the acting tenant's
/// (refusal audited as `ota.enrol`), the ICCID, MSISDN and key version valid, neither the
/// card nor the ICCID enrolled yet. The card and its SCP80 key set version.
fn check_enrolment(
    store: &Store,
    actor: &Actor,
    req: &EnrolRequest,
) -> Result<(crate::model::Card, u8)> {
    let card = card_of_tenant(store, actor, &req.card_number, "ota.enrol", None)?;
    if !valid_iccid(&req.iccid) {
        return Err(Error::Invalid(format!(
            "ICCID '{}': 18 to 20 digits",
            req.iccid
        )));
    }
    if super::normalise_msisdn(&req.msisdn).is_none() {
        return Err(Error::Invalid(format!(
            "MSISDN '{}': 3 to 15 digits, optionally after '+'",
            req.msisdn
        )));
    }
    let kvn = scp80_kvn(&card, req.kvn)?;
    if store.ota_card(&card.card_number)?.is_some() {
        return Err(Error::Invalid(format!(
            "card {} is already enrolled for OTA",
            card.card_number
        )));
    }
    if store.ota_card_by_iccid(&req.iccid)?.is_some() {
        return Err(Error::Invalid(format!(
            "ICCID {} is already enrolled for OTA",
            req.iccid
        )));
    }
    Ok((card, kvn))
}

/// Records a card's OTA identity without touching the card (which must already hold its
/// SCP80 key set and PSK): [`enrol_card`] with the key set version [`scp80_kvn`] gives.
pub fn record_enrolment(store: &Store, actor: &Actor, req: &EnrolRequest) -> Result<OtaCard> {
    let (card, kvn) = check_enrolment(store, actor, req)?;
    enrol_card(
        store,
        actor,
        &card.card_number,
        &req.iccid,
        &req.msisdn,
        kvn,
    )
}

/// The keys enrolment puts on a card, derived like the OTA engine derives them
/// (`docs/OTA.md`, "SCP80 keys", "SCP81"): from the base key version the card was written
/// with and its KDD.
struct EnrolKeys {
    /// The card's current secure channel keys and their key set version.
    scp: scp::StaticKeys,
    scp_kvn: u8,
    /// KIc, KID, DEK as keys 1, 2, 3.
    scp80: scp::StaticKeys,
    /// The TLS PSK.
    psk: zeroize::Zeroizing<Vec<u8>>,
}

fn enrol_keys(
    store: &Store,
    keys: &dyn kms::KeyStore,
    card: &crate::model::Card,
) -> Result<EnrolKeys> {
    let (Some(version), Some(scp_kvn)) = (card.key_version, card.kvn) else {
        return Err(Error::Invalid(format!(
            "card {} is not written (`issue write`): it has no keys of the platform",
            card.card_number
        )));
    };
    let kv = store.key_version(&card.category, version)?.ok_or_else(|| {
        Error::Invalid(format!(
            "base key version {version} of '{}' is not registered",
            card.category
        ))
    })?;
    let kdd = match card.kdd.as_deref().map(<[u8; 10]>::try_from) {
        Some(Ok(k)) => k,
        _ => kms::kdd_for_card_number(&card.card_number)?,
    };
    Ok(EnrolKeys {
        scp: keys.derive_card_keys(&kv.kms_category, version, &card.card_number)?,
        scp_kvn,
        scp80: super::scp80::derive_scp80_keys(keys, &kv.kms_category, version, &kdd)?,
        psk: super::scp81::derive_psk(keys, &kv.kms_category, version, &kdd)?,
    })
}

/// The PUT KEY data of a TLS PSK (GP Amendment B; the card's side is
/// `card::scp81`): `KVN 85 L { key length, key under the session's DEK, zero-padded to
/// whole blocks } 00` (no key check value).
fn psk_key_data(session: &scp::HostSession, kvn: u8, psk: &[u8]) -> Result<Vec<u8>> {
    let dek = session
        .data_encryption_key()
        .map_err(gpclient::ClientError::from)?;
    let block = match dek.kind() {
        scp::KeyKind::Aes => 16,
        scp::KeyKind::Des3 => 8,
    };
    let mut clear = zeroize::Zeroizing::new(psk.to_vec());
    clear.resize(psk.len().div_ceil(block) * block, 0);
    let encrypted =
        scp::encrypt_sensitive_data(&dek, &clear).map_err(gpclient::ClientError::from)?;
    // A PSK is 16 to 64 bytes: the block length fits one byte below 80.
    let (Ok(key_len), Ok(len @ 0..0x80)) =
        (u8::try_from(psk.len()), u8::try_from(encrypted.len() + 1))
    else {
        return Err(Error::Invalid(format!("a PSK of {} bytes", psk.len())));
    };
    let mut data = vec![kvn, super::scp81::PSK_KEY_TYPE, len, key_len];
    data.extend_from_slice(&encrypted);
    data.push(0x00);
    Ok(data)
}

/// Enrols a card for OTA by putting its keys on it: checks as [`record_enrolment`]
/// (nothing is sent to the card if they fail); then, through `chan`, SELECT of the ISD,
/// GET DATA `45` (the card in the reader must carry this card number), a secure channel
/// with the card's current keys at `level`, PUT KEY of the SCP80 key set (KIc, KID, DEK as
/// keys 1-3 of the chosen version, the card's key check values verified; a key set of that
/// version already on the card, from an earlier enrolment, is replaced) and PUT KEY of the
/// TLS PSK (key set `40`, key `01`, type `85`, likewise replaced if present); only then the
/// record ([`enrol_card`], audited as `ota.card.enrol`). If the card refuses anything,
/// nothing is recorded and the error says what the card answered. The PSK identity is not
/// stored on the card: the platform's trigger names it (the ICCID).
pub fn enrol_on_card(
    store: &Store,
    keys: &dyn kms::KeyStore,
    actor: &Actor,
    req: &EnrolRequest,
    chan: &mut dyn transport::CardChannel,
    level: scp::SecurityLevel,
) -> Result<OtaCard> {
    use gp::commands::{DataObject, KeyInfo};
    use gpclient::{ops, GpClient, KeySpec, OpenOptions, Operation};

    let (card, kvn) = check_enrolment(store, actor, req)?;
    let k = enrol_keys(store, keys, &card)?;
    let mut client = GpClient::new(transport::Traced::new(chan, None));
    client.select(&gp::aid::ISD_AID)?;
    let ours = kms::kdd_for_card_number(&card.card_number)?;
    match ops::get_data(&mut client, DataObject::Cin)? {
        Some(cin) if cin == ours => {}
        _ => {
            return Err(Error::WrongCard(format!(
                "it does not carry card number {}",
                card.card_number
            )))
        }
    }
    client.open_secure_channel(&OpenOptions {
        keys: KeySpec::from_static(&k.scp, k.scp_kvn),
        level,
        scp: None,
        sd: None,
    })?;
    let on_card: Vec<u8> = ops::get_data_raw(&mut client, DataObject::KeyInformation)?
        .and_then(|raw| KeyInfo::parse(&raw).ok())
        .map(|ki| ki.entries.iter().map(|e| e.version).collect())
        .unwrap_or_default();
    let present = |v: u8| on_card.contains(&v).then_some(v);
    ops::put_key_set(&mut client, &k.scp80, kvn, present(kvn))?;
    let psk_kvn = super::scp81::PSK_KVN;
    let data = {
        let session = client
            .session()
            .ok_or(gpclient::ClientError::NoSecureChannel(Operation::PutKey))?;
        psk_key_data(session, psk_kvn, &k.psk)?
    };
    let cmd = gp::commands::PutKey {
        old_version: present(psk_kvn).unwrap_or(0),
        key_id: super::scp81::PSK_KID,
        multiple: false,
        more: false,
        data,
    }
    .to_command()
    .map_err(|e| Error::Invalid(format!("PUT KEY: {e}")))?;
    let r = client.send_ok(
        Operation::PutKey,
        &cmd,
        &format!("of the TLS PSK (key set {psk_kvn:#04x})"),
    )?;
    if r.data != [psk_kvn] {
        return Err(Error::Invalid(format!(
            "the card answered PUT KEY of the PSK with '{}', not its key version {psk_kvn:02X}",
            apdu::hex(&r.data)
        )));
    }
    enrol_card(
        store,
        actor,
        &card.card_number,
        &req.iccid,
        &req.msisdn,
        kvn,
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Card, CardState};

    fn card(kvn: Option<u8>) -> Card {
        Card {
            card_number: "4711".into(),
            category: "gold".into(),
            state: CardState::Written,
            key_version: Some(1),
            kvn,
            kdd: None,
            factory_kdd: None,
            chip_id: None,
            initial_key_kind: None,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn the_scp80_version_avoids_the_secure_channel_key_set() {
        assert_eq!(scp80_kvn(&card(None), None).unwrap(), 1);
        assert_eq!(scp80_kvn(&card(Some(0x30)), None).unwrap(), 1);
        assert_eq!(scp80_kvn(&card(Some(1)), None).unwrap(), 2);
        assert_eq!(scp80_kvn(&card(Some(1)), Some(15)).unwrap(), 15);
        for bad in [0, 16, 0x40] {
            assert!(scp80_kvn(&card(None), Some(bad)).is_err(), "{bad}");
        }
        let e = scp80_kvn(&card(Some(2)), Some(2)).unwrap_err();
        assert!(e.to_string().contains("secure channel key set"), "{e}");
    }
}
