//! Over-the-air download records ([`crate::ota`]): the catalog, cards' OTA identities and
//! counters, sessions and their messages. Every change an operator makes is audited; the
//! counters move in their own transactions so that a number handed out is never handed out
//! again, whatever happens to the message that carries it.

use serde_json::json;

use super::Store;
use crate::audit::{append_in, NewEntry};
use crate::db::{params, Conn, Row};
use crate::error::StoreError;
use crate::model::{now_ms, parse_aid, u32_of, u8_of};
use crate::ota::{
    normalise_msisdn, valid_app_name, valid_iccid, Bearer, CatalogEntry, Direction, Message,
    Origin, OtaCard, Session, SessionState,
};
use crate::store::records::package_owner_in;
use gp::aid::Aid;

const CATALOG_COLUMNS: &str =
    "tenant_id, app, title, package_aid, module, instance, sd_aid, privileges, params, created_ms";
const CARD_COLUMNS: &str = "card_number, iccid, msisdn, kvn, counter_out, counter_in";
const SESSION_COLUMNS: &str =
    "id, tenant_id, card_number, app, bearer, origin, state, step, steps, detail, created_ms, updated_ms";
const MESSAGE_COLUMNS: &str =
    "id, session_id, card_number, direction, kind, counter, bytes, status, created_ms";

fn catalog_of(r: &Row) -> Result<CatalogEntry, StoreError> {
    Ok(CatalogEntry {
        tenant: r.text(0)?,
        app: r.text(1)?,
        title: r.text(2)?,
        package: parse_aid(&r.bytes(3)?, "ota_catalog.package_aid")?,
        module: parse_aid(&r.bytes(4)?, "ota_catalog.module")?,
        instance: parse_aid(&r.bytes(5)?, "ota_catalog.instance")?,
        sd: parse_aid(&r.bytes(6)?, "ota_catalog.sd_aid")?,
        privileges: r.bytes(7)?,
        params: r.bytes(8)?,
        created_ms: r.int(9)?,
    })
}

fn counter_of(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        what: what.into(),
        detail: format!("{v} is negative"),
    })
}

fn card_of(r: &Row) -> Result<OtaCard, StoreError> {
    Ok(OtaCard {
        card_number: r.text(0)?,
        iccid: r.text(1)?,
        msisdn: r.text(2)?,
        kvn: u8_of(r.int(3)?, "ota_cards.kvn")?,
        counter_out: counter_of(r.int(4)?, "ota_cards.counter_out")?,
        counter_in: counter_of(r.int(5)?, "ota_cards.counter_in")?,
    })
}

fn parsed<T: std::str::FromStr<Err = String>>(text: String, what: &str) -> Result<T, StoreError> {
    text.parse().map_err(|detail| StoreError::Corrupt {
        what: what.into(),
        detail,
    })
}

fn session_of(r: &Row) -> Result<Session, StoreError> {
    Ok(Session {
        id: r.int(0)?,
        tenant: r.text(1)?,
        card_number: r.text(2)?,
        app: r.text(3)?,
        bearer: parsed(r.text(4)?, "ota_sessions.bearer")?,
        origin: parsed(r.text(5)?, "ota_sessions.origin")?,
        state: parsed(r.text(6)?, "ota_sessions.state")?,
        step: u32_of(r.int(7)?, "ota_sessions.step")?,
        steps: u32_of(r.int(8)?, "ota_sessions.steps")?,
        detail: r.text(9)?,
        created_ms: r.int(10)?,
        updated_ms: r.int(11)?,
    })
}

fn message_of(r: &Row) -> Result<Message, StoreError> {
    Ok(Message {
        id: r.int(0)?,
        session: r.opt_int(1)?,
        card_number: r.text(2)?,
        direction: parsed(r.text(3)?, "ota_messages.direction")?,
        kind: r.text(4)?,
        counter: r
            .opt_int(5)?
            .map(|v| counter_of(v, "ota_messages.counter"))
            .transpose()?,
        bytes: r.bytes(6)?,
        status: r.text(7)?,
        created_ms: r.int(8)?,
    })
}

/// The actor the end of a session is audited under: sessions are moved by the platform's OTA
/// server, not by a person.
pub const OTA_SERVER: &str = "ota-server";

/// The largest SCP80 counter (5 bytes, ETSI TS 102 225 §5.1.1).
pub const MAX_COUNTER: u64 = 0xFF_FFFF_FFFF;

fn counter_param(v: u64) -> Result<i64, StoreError> {
    if v > MAX_COUNTER {
        return Err(StoreError::Invalid {
            what: "counter",
            detail: format!("{v} is larger than 5 bytes"),
        });
    }
    Ok(v as i64)
}

fn card_by(c: &mut Conn, column: &str, value: &str) -> Result<Option<OtaCard>, StoreError> {
    c.query_opt(
        &format!("SELECT {CARD_COLUMNS} FROM ota_cards WHERE {column} = $1"),
        params![value],
    )?
    .map(|r| card_of(&r))
    .transpose()
}

/// What [`Store::accept_card_counter`] decided (ETSI TS 102 225 §5.1.1, "counter must be
/// higher").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterCheck {
    /// Higher than the last one: stored, process the packet.
    Accepted,
    /// Not higher: a replay or a duplicate; nothing was stored, do not process.
    Replayed {
        /// The last counter accepted.
        last: u64,
    },
}

impl Store {
    /// Adds an application to a tenant's OTA catalog. The package must be registered and
    /// belong to the tenant. Audited as `ota.catalog.add`.
    pub fn add_ota_catalog_entry(
        &self,
        actor: &str,
        entry: &CatalogEntry,
    ) -> Result<CatalogEntry, StoreError> {
        if !valid_app_name(&entry.app) {
            return Err(StoreError::Invalid {
                what: "application name",
                detail: format!("'{}': use 1 to 32 letters, digits, '-' or '_'", entry.app),
            });
        }
        if entry.title.is_empty() || entry.title.chars().count() > 40 {
            return Err(StoreError::Invalid {
                what: "menu title",
                detail: "1 to 40 characters".into(),
            });
        }
        if !matches!(entry.privileges.len(), 1 | 3) {
            return Err(StoreError::Invalid {
                what: "privileges",
                detail: format!("{} bytes; 1 or 3", entry.privileges.len()),
            });
        }
        let created_ms = now_ms();
        self.tx(|c| {
            match package_owner_in(c, &entry.package)? {
                None => return Err(StoreError::NotFound(format!("package {}", entry.package))),
                Some(owner) if owner != entry.tenant => {
                    return Err(StoreError::NotFound(format!("package {}", entry.package)))
                }
                Some(_) => {}
            }
            c.execute(
                &format!("INSERT INTO ota_catalog ({CATALOG_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                params![
                    entry.tenant.as_str(),
                    entry.app.as_str(),
                    entry.title.as_str(),
                    entry.package.as_bytes(),
                    entry.module.as_bytes(),
                    entry.instance.as_bytes(),
                    entry.sd.as_bytes(),
                    entry.privileges.as_slice(),
                    entry.params.as_slice(),
                    created_ms
                ],
            )
            .map_err(|e| e.duplicate_as(|| format!("catalog entry '{}'", entry.app)))?;
            append_in(
                c,
                &NewEntry::new(actor, "ota.catalog.add", "ok").detail(json!({
                    "tenant": entry.tenant,
                    "app": entry.app,
                    "package": entry.package.to_string(),
                    "instance": entry.instance.to_string(),
                    "sd": entry.sd.to_string(),
                })),
            )?;
            Ok(CatalogEntry {
                created_ms,
                ..entry.clone()
            })
        })
    }

    /// Removes an application from a tenant's catalog (sessions keep its name). Audited as
    /// `ota.catalog.remove`.
    pub fn remove_ota_catalog_entry(
        &self,
        actor: &str,
        tenant: &str,
        app: &str,
    ) -> Result<(), StoreError> {
        self.tx(|c| {
            let n = c.execute(
                "DELETE FROM ota_catalog WHERE tenant_id = $1 AND app = $2",
                params![tenant, app],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("catalog entry '{app}'")));
            }
            append_in(
                c,
                &NewEntry::new(actor, "ota.catalog.remove", "ok")
                    .detail(json!({"tenant": tenant, "app": app})),
            )?;
            Ok(())
        })
    }

    /// A tenant's catalog, by name.
    pub fn ota_catalog(&self, tenant: &str) -> Result<Vec<CatalogEntry>, StoreError> {
        self.with_conn(|c| {
            c.query(
                &format!(
                    "SELECT {CATALOG_COLUMNS} FROM ota_catalog WHERE tenant_id = $1 ORDER BY app"
                ),
                params![tenant],
            )?
            .iter()
            .map(catalog_of)
            .collect()
        })
    }

    /// One catalog entry.
    pub fn ota_catalog_entry(
        &self,
        tenant: &str,
        app: &str,
    ) -> Result<Option<CatalogEntry>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                &format!(
                    "SELECT {CATALOG_COLUMNS} FROM ota_catalog WHERE tenant_id = $1 AND app = $2"
                ),
                params![tenant, app],
            )?
            .map(|r| catalog_of(&r))
            .transpose()
        })
    }

    /// Gives a card (already known to the platform) its identity on the air: ICCID, MSISDN
    /// and the ISD's SCP80 key set; both counters start at 0. Audited as `ota.card.enrol`.
    pub fn enrol_ota_card(
        &self,
        actor: &str,
        card_number: &str,
        iccid: &str,
        msisdn: &str,
        kvn: u8,
    ) -> Result<OtaCard, StoreError> {
        if !valid_iccid(iccid) {
            return Err(StoreError::Invalid {
                what: "ICCID",
                detail: format!("'{iccid}': 18 to 20 digits"),
            });
        }
        let Some(msisdn) = normalise_msisdn(msisdn) else {
            return Err(StoreError::Invalid {
                what: "MSISDN",
                detail: format!("'{msisdn}': 3 to 15 digits, optionally after '+'"),
            });
        };
        if !(1..=15).contains(&kvn) {
            return Err(StoreError::Invalid {
                what: "SCP80 key version",
                detail: format!("{kvn}: 1 to 15"),
            });
        }
        self.tx(|c| {
            if crate::store::records::card_in(c, card_number)?.is_none() {
                return Err(StoreError::NotFound(format!("card {card_number}")));
            }
            c.execute(
                "INSERT INTO ota_cards (card_number, iccid, msisdn, kvn, counter_out, counter_in, created_ms)
                 VALUES ($1, $2, $3, $4, 0, 0, $5)",
                params![card_number, iccid, msisdn.as_str(), i64::from(kvn), now_ms()],
            )
            .map_err(|e| e.duplicate_as(|| format!("OTA identity of card {card_number} or ICCID {iccid}")))?;
            append_in(
                c,
                &NewEntry::new(actor, "ota.card.enrol", "ok")
                    .card(card_number)
                    .detail(json!({"iccid": iccid, "msisdn": msisdn, "kvn": kvn})),
            )?;
            Ok(OtaCard {
                card_number: card_number.into(),
                iccid: iccid.into(),
                msisdn: msisdn.clone(),
                kvn,
                counter_out: 0,
                counter_in: 0,
            })
        })
    }

    /// The OTA identity of a card, by ICCID.
    pub fn ota_card_by_iccid(&self, iccid: &str) -> Result<Option<OtaCard>, StoreError> {
        self.with_conn(|c| card_by(c, "iccid", iccid))
    }

    /// The OTA identity of a card, by its platform card number.
    pub fn ota_card(&self, card_number: &str) -> Result<Option<OtaCard>, StoreError> {
        self.with_conn(|c| card_by(c, "card_number", card_number))
    }

    /// The OTA identities using an MSISDN (normally one; an MO message is matched to its
    /// card by the packet's CC, so a reused number does not confuse cards).
    pub fn ota_cards_by_msisdn(&self, msisdn: &str) -> Result<Vec<OtaCard>, StoreError> {
        let Some(m) = normalise_msisdn(msisdn) else {
            return Ok(Vec::new());
        };
        self.with_conn(|c| {
            c.query(
                &format!(
                    "SELECT {CARD_COLUMNS} FROM ota_cards WHERE msisdn = $1 ORDER BY card_number"
                ),
                params![m.as_str()],
            )?
            .iter()
            .map(card_of)
            .collect()
        })
    }

    /// Hands out the next counter for a packet to the card, committed before the packet is
    /// made: a packet lost on the air costs one number and is never answered by a replay.
    pub fn next_ota_counter(&self, card_number: &str) -> Result<u64, StoreError> {
        self.tx(|c| {
            let lock = c.for_update();
            let row = c
                .query_opt(
                    &format!("SELECT counter_out FROM ota_cards WHERE card_number = $1{lock}"),
                    params![card_number],
                )?
                .ok_or_else(|| {
                    StoreError::NotFound(format!("OTA identity of card {card_number}"))
                })?;
            let next = counter_of(row.int(0)?, "ota_cards.counter_out")? + 1;
            c.execute(
                "UPDATE ota_cards SET counter_out = $1 WHERE card_number = $2",
                params![counter_param(next)?, card_number],
            )?;
            Ok(next)
        })
    }

    /// Records the counter of a packet from the card if it is higher than the last one
    /// accepted ([`CounterCheck::Accepted`]); otherwise changes nothing
    /// ([`CounterCheck::Replayed`]).
    pub fn accept_card_counter(
        &self,
        card_number: &str,
        counter: u64,
    ) -> Result<CounterCheck, StoreError> {
        let value = counter_param(counter)?;
        self.tx(|c| {
            let lock = c.for_update();
            let row = c
                .query_opt(
                    &format!("SELECT counter_in FROM ota_cards WHERE card_number = $1{lock}"),
                    params![card_number],
                )?
                .ok_or_else(|| {
                    StoreError::NotFound(format!("OTA identity of card {card_number}"))
                })?;
            let last = counter_of(row.int(0)?, "ota_cards.counter_in")?;
            if counter <= last {
                return Ok(CounterCheck::Replayed { last });
            }
            c.execute(
                "UPDATE ota_cards SET counter_in = $1 WHERE card_number = $2",
                params![value, card_number],
            )?;
            Ok(CounterCheck::Accepted)
        })
    }

    /// Opens a download session (state `pending`). Audited as `ota.session.open`.
    pub fn open_ota_session(
        &self,
        actor: &str,
        tenant: &str,
        card_number: &str,
        app: &str,
        bearer: Bearer,
        origin: Origin,
    ) -> Result<Session, StoreError> {
        let now = now_ms();
        self.tx(|c| {
            let row = c.query_one(
                "INSERT INTO ota_sessions (tenant_id, card_number, app, bearer, origin, state, step, steps, detail, created_ms, updated_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, 0, 0, '', $7, $7) RETURNING id",
                params![
                    tenant,
                    card_number,
                    app,
                    bearer.as_str(),
                    origin.as_str(),
                    SessionState::Pending.as_str(),
                    now
                ],
            )?;
            let id = row.int(0)?;
            append_in(
                c,
                &NewEntry::new(actor, "ota.session.open", "ok")
                    .card(card_number)
                    .detail(json!({"session": id, "app": app, "bearer": bearer, "origin": origin})),
            )?;
            Ok(Session {
                id,
                tenant: tenant.into(),
                card_number: card_number.into(),
                app: app.into(),
                bearer,
                origin,
                state: SessionState::Pending,
                step: 0,
                steps: 0,
                detail: String::new(),
                created_ms: now,
                updated_ms: now,
            })
        })
    }

    /// Moves a session on. Reaching `done`, `failed` or `abandoned` is audited as
    /// `ota.session.<state>`; a finished session does not move again.
    pub fn update_ota_session(
        &self,
        id: i64,
        state: SessionState,
        step: u32,
        steps: u32,
        detail: &str,
    ) -> Result<Session, StoreError> {
        self.tx(|c| {
            let lock = c.for_update();
            let row = c
                .query_opt(
                    &format!("SELECT {SESSION_COLUMNS} FROM ota_sessions WHERE id = $1{lock}"),
                    params![id],
                )?
                .ok_or_else(|| StoreError::NotFound(format!("OTA session {id}")))?;
            let old = session_of(&row)?;
            if matches!(
                old.state,
                SessionState::Done | SessionState::Failed | SessionState::Abandoned
            ) {
                return Err(StoreError::Invalid {
                    what: "session state",
                    detail: format!("session {id} is {} already", old.state),
                });
            }
            let now = now_ms();
            c.execute(
                "UPDATE ota_sessions SET state = $1, step = $2, steps = $3, detail = $4, updated_ms = $5 WHERE id = $6",
                params![state.as_str(), i64::from(step), i64::from(steps), detail, now, id],
            )?;
            if matches!(
                state,
                SessionState::Done | SessionState::Failed | SessionState::Abandoned
            ) {
                append_in(
                    c,
                    &NewEntry::new(OTA_SERVER, &format!("ota.session.{state}"), state.as_str())
                        .card(&old.card_number)
                        .detail(json!({"session": id, "app": old.app, "steps": step, "detail": detail})),
                )?;
            }
            Ok(Session {
                state,
                step,
                steps,
                detail: detail.into(),
                updated_ms: now,
                ..old
            })
        })
    }

    /// One session.
    pub fn ota_session(&self, id: i64) -> Result<Option<Session>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                &format!("SELECT {SESSION_COLUMNS} FROM ota_sessions WHERE id = $1"),
                params![id],
            )?
            .map(|r| session_of(&r))
            .transpose()
        })
    }

    /// A card's sessions, newest first, at most `limit`.
    pub fn ota_sessions(&self, card_number: &str, limit: u32) -> Result<Vec<Session>, StoreError> {
        self.with_conn(|c| {
            c.query(
                &format!("SELECT {SESSION_COLUMNS} FROM ota_sessions WHERE card_number = $1 ORDER BY id DESC LIMIT $2"),
                params![card_number, i64::from(limit)],
            )?
            .iter()
            .map(session_of)
            .collect()
        })
    }

    /// Logs a message sent or received (with its session, if it had one).
    #[allow(clippy::too_many_arguments)]
    pub fn log_ota_message(
        &self,
        session: Option<i64>,
        card_number: &str,
        direction: Direction,
        kind: &str,
        counter: Option<u64>,
        bytes: &[u8],
        status: &str,
    ) -> Result<Message, StoreError> {
        let counter_value = counter.map(counter_param).transpose()?;
        let now = now_ms();
        self.tx(|c| {
            let row = c.query_one(
                "INSERT INTO ota_messages (session_id, card_number, direction, kind, counter, bytes, status, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                params![session, card_number, direction.as_str(), kind, counter_value, bytes, status, now],
            )?;
            Ok(Message {
                id: row.int(0)?,
                session,
                card_number: card_number.into(),
                direction,
                kind: kind.into(),
                counter,
                bytes: bytes.to_vec(),
                status: status.into(),
                created_ms: now,
            })
        })
    }

    /// The messages of a session, oldest first.
    pub fn ota_messages(&self, session: i64) -> Result<Vec<Message>, StoreError> {
        self.with_conn(|c| {
            c.query(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM ota_messages WHERE session_id = $1 ORDER BY id"
                ),
                params![session],
            )?
            .iter()
            .map(message_of)
            .collect()
        })
    }

    /// Whether the platform's registry of the card holds `instance` (an application or a
    /// security domain it installed).
    pub fn card_has_instance(&self, card_number: &str, instance: &Aid) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            Ok(c.query_opt(
                "SELECT 1 FROM card_apps WHERE card_number = $1 AND instance = $2",
                params![card_number, instance.as_bytes()],
            )?
            .is_some())
        })
    }

    /// Sessions not finished yet (`pending` or `running`), oldest first: what a restarted
    /// server picks up again.
    pub fn ota_open_sessions(&self) -> Result<Vec<Session>, StoreError> {
        self.with_conn(|c| {
            c.query(
                &format!("SELECT {SESSION_COLUMNS} FROM ota_sessions WHERE state IN ($1, $2) ORDER BY id"),
                params![SessionState::Pending.as_str(), SessionState::Running.as_str()],
            )?
            .iter()
            .map(session_of)
            .collect()
        })
    }

    /// Records what a finished download put on the card in the platform's registry of it:
    /// the SD (when the session created it, with the SD load file `sd_load_file`) and the
    /// application instance. Idempotent.
    pub fn record_ota_install(
        &self,
        card_number: &str,
        entry: &CatalogEntry,
        sd_load_file: Option<&Aid>,
    ) -> Result<(), StoreError> {
        self.tx(|c| {
            if let Some(lf) = sd_load_file {
                crate::store::records::add_card_app_in(c, card_number, &entry.sd, lf)?;
            }
            crate::store::records::add_card_app_in(c, card_number, &entry.instance, &entry.package)
        })
    }
}
