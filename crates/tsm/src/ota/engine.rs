//! The download state machine over the [`Store`]: what to send next, decided from the
//! session row and its logged messages, so that a restarted server carries on where it
//! stopped. No I/O besides the database: the caller (the `server` crate's OTA service)
//! sends the [`Outbound`] messages through its SMS gateway, hands every MO packet to
//! [`Engine::on_mo`] and calls [`Engine::on_timeout`] when a PoR is late.
//!
//! Rules (`docs/OTA.md`, "Download engine"):
//!
//! * every command packet has a fresh counter from [`Store::next_ota_counter`], committed
//!   before the packet is made; a resend repeats the same bytes (same counter);
//! * PoR `00` with every command of the script answered `9000`: the next step;
//! * PoR `02` (counter low) to a packet sent more than once: the first copy ran and its
//!   PoR was lost — the step counts as done (noted in the session's detail) and the next
//!   one goes; the next script fails on the card if the earlier one did not complete
//!   (LOAD blocks in sequence, INSTALL needs the load file);
//! * PoR `02` to a packet sent once, any other status, or a command that failed: the
//!   session fails with the reason;
//! * no PoR within the time-out: the same packet again, at most
//!   [`EngineConfig::max_sends`] times in all, then the session is abandoned.

use std::sync::Arc;
use std::time::Duration;

use apdu::StatusWord;
use gp::aid::Aid;
use gp::cap::CapFile;
use ota::packet::{
    self, CommandHeader, Counter, CounterMode, Integrity, PacketInfo, PorRequest, PorTransport,
    ResponseHeader, ResponseStatus, Spi,
};
use ota::script::{self, ScriptResponse};
use ota::tpdu::{self, ConcatRef, PacketKind};

use super::plan::{self, Packing, Step, StepKind, PLATFORM_TAR, SD_LOAD_FILE};
use super::scp80::{derive_scp80_keys, Scp80KeySet};
use super::scp81::{self, HttpsEndpoint};
use super::{Bearer, CatalogEntry, Direction, Message, Origin, OtaCard, Session, SessionState};
use crate::error::{Error, Result};
use crate::store::{CounterCheck, Store, OTA_SERVER};

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How packets are sized (the cipher block is taken from each card's keys).
    pub max_parts: u8,
    /// 16-bit concatenation references.
    pub ref16: bool,
    /// How many times a packet is sent at most (the first send and the resends).
    pub max_sends: u32,
    /// How long to wait for a PoR before resending.
    pub por_timeout: Duration,
    /// The SCP81 admin server cards are sent to (`serve --ota-https`); `None`: SMS only.
    pub https: Option<HttpsEndpoint>,
    /// How long a triggered card has to open its HTTPS session before it is triggered
    /// again (at most [`EngineConfig::max_sends`] triggers in all).
    pub https_wait: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_parts: 8,
            ref16: false,
            max_sends: 3,
            por_timeout: Duration::from_secs(60),
            https: None,
            https_wait: Duration::from_secs(120),
        }
    }
}

/// The SPI of every command packet the platform sends: CC, ciphered, counter higher
/// than the stored one; PoR required, with CC, ciphered, in an SMS-SUBMIT (`16 39`).
pub fn command_spi() -> Spi {
    Spi {
        integrity: Integrity::Cc,
        ciphering: true,
        counter: CounterMode::Higher,
        por: PorRequest::Always,
        por_integrity: Integrity::Cc,
        por_ciphered: true,
        por_transport: PorTransport::SmsSubmit,
        ..Spi::default()
    }
}

/// A message for the SMS gateway to send to a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The session it belongs to.
    pub session: Option<i64>,
    /// The card.
    pub card_number: String,
    /// Where to send it.
    pub msisdn: String,
    /// `create-sd`, `script` or `por`.
    pub kind: String,
    /// Its SCP80 counter.
    pub counter: Option<u64>,
    /// The packet (CPL or RPL to the end).
    pub packet: Vec<u8>,
    /// The TP-UD of each SMS (user data header included; TP-UDHI set, PID `7F`, DCS `F6`).
    pub user_data: Vec<Vec<u8>>,
}

/// What became of an MO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoOutcome {
    /// Understood and acted upon; send these.
    Handled(Vec<Outbound>),
    /// Logged and ignored, with the reason (unknown card, wrong CC, replay, stale PoR…).
    Ignored(String),
}

/// The OTA download engine.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    keys: Arc<dyn kms::KeyStore>,
    config: EngineConfig,
    /// The CA that certifies the key pairs new SDs generate (CERT.SD); `None`: not sent.
    sd_ca: Option<Arc<dyn kms::SigningKey>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn invalid(s: impl Into<String>) -> Error {
    Error::Invalid(s.into())
}

impl Engine {
    /// An engine over the platform's store and key store.
    pub fn new(store: Store, keys: Arc<dyn kms::KeyStore>, config: EngineConfig) -> Self {
        Self {
            store,
            keys,
            config,
            sd_ca: None,
        }
    }

    /// With a CA (a P-256 signing key) that certifies each new SD's key: by SMS, the
    /// create-SD steps are followed by STORE DATA of CERT.SD (`docs/OTA.md`, "CERT.SD").
    pub fn with_sd_ca(mut self, ca: Arc<dyn kms::SigningKey>) -> Self {
        self.sd_ca = Some(ca);
        self
    }

    /// Its settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A card's SCP80 key set (see [`super::scp80`]): from the base key version the card
    /// was written with and its KDD.
    pub fn card_keys(&self, ota_card: &OtaCard) -> Result<Scp80KeySet> {
        let (kv, version, kdd) = self.card_base(&ota_card.card_number)?;
        let keys = derive_scp80_keys(self.keys.as_ref(), &kv.kms_category, version, &kdd)?;
        Ok(Scp80KeySet::new(ota_card.kvn, &keys))
    }

    /// The base key version a card was written with, and its KDD.
    fn card_base(
        &self,
        card_number: &str,
    ) -> Result<(crate::model::BaseKeyVersion, u32, [u8; 10])> {
        let card = self.store.card(card_number)?.ok_or(Error::UnknownCard)?;
        let version = card.key_version.ok_or_else(|| {
            invalid(format!(
                "card {} is not written: it has no SCP80 keys",
                card.card_number
            ))
        })?;
        let kv = self
            .store
            .key_version(&card.category, version)?
            .ok_or_else(|| invalid(format!("base key version {version} is not registered")))?;
        let kdd = match card.kdd.as_deref().map(<[u8; 10]>::try_from) {
            Some(Ok(k)) => k,
            _ => kms::kdd_for_card_number(&card.card_number)?,
        };
        Ok((kv, version, kdd))
    }

    /// The tenant of a card (its category's issuer).
    fn card_tenant(&self, card_number: &str) -> Result<String> {
        let card = self.store.card(card_number)?.ok_or(Error::UnknownCard)?;
        Ok(self
            .store
            .category(&card.category)?
            .ok_or_else(|| Error::UnknownCategory(card.category.clone()))?
            .tenant)
    }

    /// Starts a download from the platform (`ota push`): opens a session for the card with
    /// this ICCID and plans and sends its first script. Only the card's issuer may.
    pub fn push(
        &self,
        actor: &crate::Actor,
        iccid: &str,
        app: &str,
        bearer: Bearer,
    ) -> Result<(Session, Vec<Outbound>)> {
        let card = self
            .store
            .ota_card_by_iccid(iccid)?
            .ok_or_else(|| invalid(format!("no card with ICCID {iccid} is enrolled for OTA")))?;
        let tenant = self.card_tenant(&card.card_number)?;
        if tenant != actor.tenant {
            return Err(Error::Forbidden {
                tenant: actor.tenant.clone(),
                action: format!("push to card {iccid}"),
            });
        }
        if bearer == Bearer::Https && self.config.https.is_none() {
            return Err(invalid(
                "the HTTPS bearer needs the SCP81 admin server (serve --ota-https)",
            ));
        }
        self.store
            .ota_catalog_entry(&tenant, app)?
            .ok_or_else(|| invalid(format!("'{app}' is not in the catalog of {tenant}")))?;
        let session = self.store.open_ota_session(
            &actor.name(),
            &tenant,
            &card.card_number,
            app,
            bearer,
            Origin::Server,
        )?;
        let out = self.start(session.id)?;
        let session = self.store.ota_session(session.id)?.unwrap_or(session);
        Ok((session, out))
    }

    /// The steps of a session: planned from the catalog, the CAP and whether the card has
    /// the SD — as it was when the session's first script went (a `create-sd` message in
    /// the log says it was missing).
    fn steps(&self, session: &Session, keys: &Scp80KeySet) -> Result<(CatalogEntry, Vec<Step>)> {
        let entry = self
            .store
            .ota_catalog_entry(&session.tenant, &session.app)?
            .ok_or_else(|| invalid(format!("'{}' left the catalog", session.app)))?;
        let cap = self
            .store
            .package_cap(&entry.package)?
            .ok_or_else(|| invalid(format!("package {} is not registered", entry.package)))?;
        let cap = CapFile::from_bytes(&cap).map_err(|e| invalid(format!("CAP: {e}")))?;
        let messages = self.store.ota_messages(session.id)?;
        let planned = messages
            .iter()
            .any(|m| m.direction == Direction::Mt && is_step(m));
        let sd_missing = if planned {
            messages.iter().any(|m| {
                m.kind == StepKind::CreateSd.as_str() || m.kind == StepKind::CreateSd.https_str()
            })
        } else {
            !self
                .store
                .card_has_instance(&session.card_number, &entry.sd)?
        };
        let steps = match session.bearer {
            Bearer::Sms => {
                let steps = plan::plan(&entry, &cap, sd_missing, &self.packing(keys))?;
                match self.sd_ca {
                    Some(_) => plan::with_cert_step(steps, &entry.sd),
                    None => steps,
                }
            }
            Bearer::Https => {
                let steps = plan::https_plan(&entry, &cap, sd_missing)?;
                match self.sd_ca {
                    Some(_) => plan::with_cert_step(steps, &entry.sd),
                    None => steps,
                }
            }
        };
        Ok((entry, steps))
    }

    fn packing(&self, keys: &Scp80KeySet) -> Packing {
        Packing {
            max_parts: self.config.max_parts,
            ref16: self.config.ref16,
            block: keys.block,
        }
    }

    fn ota_card(&self, card_number: &str) -> Result<OtaCard> {
        self.store
            .ota_card(card_number)?
            .ok_or_else(|| invalid(format!("card {card_number} is not enrolled for OTA")))
    }

    /// Plans a pending session and sends its first script (or finishes it at once when
    /// there is nothing to do).
    pub fn start(&self, session_id: i64) -> Result<Vec<Outbound>> {
        let session = self.session(session_id)?;
        let card = self.ota_card(&session.card_number)?;
        let keys = self.card_keys(&card)?;
        let (entry, steps) = match self.steps(&session, &keys) {
            Ok(x) => x,
            Err(e) => {
                self.store.update_ota_session(
                    session.id,
                    SessionState::Failed,
                    0,
                    0,
                    &format!("cannot plan: {e}"),
                )?;
                return Ok(Vec::new());
            }
        };
        if self
            .store
            .card_has_instance(&session.card_number, &entry.instance)?
        {
            self.store.update_ota_session(
                session.id,
                SessionState::Done,
                0,
                0,
                "already installed",
            )?;
            return Ok(Vec::new());
        }
        let total = steps.len() as u32;
        if session.bearer == Bearer::Https {
            if self.config.https.is_none() {
                self.store.update_ota_session(
                    session.id,
                    SessionState::Failed,
                    0,
                    total,
                    "the HTTPS bearer needs the SCP81 admin server (serve --ota-https)",
                )?;
                return Ok(Vec::new());
            }
            // The scripts are logged before the trigger: the plan is fixed by them.
            for step in &steps {
                self.store.log_ota_message(
                    Some(session.id),
                    &card.card_number,
                    Direction::Mt,
                    step.kind.https_str(),
                    None,
                    &step.script()?,
                    "planned",
                )?;
            }
            return Ok(vec![self.send_trigger(&session, &card, &keys, 0, total)?]);
        }
        Ok(vec![
            self.send_step(&session, &card, &keys, &steps[0], 0, total)?
        ])
    }

    /// Sends the SCP80 packet that makes the card open its SCP81 session (a fresh
    /// counter each time); the session waits at step `index` of `total`.
    fn send_trigger(
        &self,
        session: &Session,
        card: &OtaCard,
        keys: &Scp80KeySet,
        index: u32,
        total: u32,
    ) -> Result<Outbound> {
        let endpoint = self.config.https.as_ref().ok_or_else(|| {
            invalid("the HTTPS bearer needs the SCP81 admin server (serve --ota-https)")
        })?;
        let step = Step {
            kind: StepKind::Trigger,
            tar: plan::ISD_TAR,
            commands: vec![scp81::trigger_command(endpoint, &card.iccid).map_err(invalid)?],
            expanded: false,
        };
        self.send_step(session, card, keys, &step, index, total)
    }

    /// A card's TLS PSK (SCP81, [`scp81`]): from the base key version the card was
    /// written with and its KDD.
    pub fn card_psk(&self, ota_card: &OtaCard) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let (kv, version, kdd) = self.card_base(&ota_card.card_number)?;
        Ok(scp81::derive_psk(
            self.keys.as_ref(),
            &kv.kms_category,
            version,
            &kdd,
        )?)
    }

    /// The PSK of the card whose PSK identity this is (the admin server's key lookup);
    /// `None` for an unknown identity or a card without keys.
    pub fn psk_for_identity(&self, identity: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        let iccid = scp81::iccid_of_identity(identity)?;
        let card = self.store.ota_card_by_iccid(iccid).ok()??;
        self.card_psk(&card).ok()
    }

    /// The scripts an HTTPS session still has to run, for the admin server's queue: from
    /// the session's current step on.
    pub fn https_scripts(&self, session_id: i64) -> Result<HttpsScripts> {
        let session = self.session(session_id)?;
        let card = self.ota_card(&session.card_number)?;
        let keys = self.card_keys(&card)?;
        let (entry, steps) = self.steps(&session, &keys)?;
        // CERT.SD needs PK.SD from the create-SD response: the create-SD scripts go in a
        // first HTTPS session, CERT.SD and the load in the next one (`on_https_end`
        // triggers it when the first ends with steps left).
        let from = session.step as usize;
        let until = steps
            .iter()
            .position(|s| s.kind == StepKind::CertSd)
            .filter(|&cert| from < cert)
            .unwrap_or(steps.len());
        let scripts = steps
            .iter()
            .enumerate()
            .take(until)
            .skip(from)
            .map(|(i, step)| {
                let made;
                let step = if step.kind == StepKind::CertSd {
                    made = self.cert_sd_step(&session, &card, step)?;
                    &made
                } else {
                    step
                };
                Ok(HttpsScript {
                    step: i as u32,
                    target: (step.tar != plan::ISD_TAR).then_some(entry.sd),
                    bytes: step.script()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(HttpsScripts {
            identity: scp81::psk_identity(&card.iccid),
            scripts,
        })
    }

    /// The card's response to step `step` of an HTTPS session (`X-Admin-Script-Status`
    /// and the response script): logged and checked; the session moves on or fails.
    pub fn on_https_response(
        &self,
        session_id: i64,
        step: u32,
        status: &str,
        body: &[u8],
    ) -> Result<()> {
        let session = self.session(session_id)?;
        let card = self.ota_card(&session.card_number)?;
        self.log_mo(
            Some(session.id),
            &card,
            "https-response",
            None,
            body,
            status,
        )?;
        if session.state != SessionState::Running || step != session.step {
            return Ok(());
        }
        let fail = |detail: String| -> Result<()> {
            self.store.update_ota_session(
                session.id,
                SessionState::Failed,
                session.step,
                session.steps,
                &detail,
            )?;
            Ok(())
        };
        let keys = self.card_keys(&card)?;
        let (entry, steps) = match self.steps(&session, &keys) {
            Ok(x) => x,
            Err(e) => return fail(format!("cannot plan: {e}")),
        };
        let n = steps.len();
        let Some(current) = steps.get(step as usize) else {
            return fail(format!("step {} is not in the plan", step + 1));
        };
        if status != "ok" {
            return fail(format!(
                "step {} of {n}: the card's agent answered {status}",
                step + 1
            ));
        }
        if let Err(why) = check_script_result(current, body) {
            return fail(format!("step {} of {n}: {why}", step + 1));
        }
        if current.kind == StepKind::CreateSd {
            if let Some(pk) = public_key_of(body) {
                self.log_mo(
                    Some(session.id),
                    &card,
                    SD_PUBLIC_KEY,
                    None,
                    &pk,
                    "received",
                )?;
            }
        }
        let next = step + 1;
        if next as usize == n {
            let messages = self.store.ota_messages(session.id)?;
            self.finish(
                &session,
                &entry,
                &steps,
                &format!(
                    "installed {} over HTTPS{}",
                    entry.instance,
                    pk_note(&messages)
                ),
            )?;
        } else {
            self.store.update_ota_session(
                session.id,
                SessionState::Running,
                next,
                n as u32,
                &format!("HTTPS: step {next} of {n} done"),
            )?;
        }
        Ok(())
    }

    /// The last step was acknowledged: the installation is recorded (with the SD when the
    /// session created it) and the session is done.
    fn finish(
        &self,
        session: &Session,
        entry: &CatalogEntry,
        steps: &[Step],
        detail: &str,
    ) -> Result<()> {
        let created_sd = steps.first().is_some_and(|s| s.kind == StepKind::CreateSd);
        let sd_lf = Aid::new(&SD_LOAD_FILE).map_err(|e| invalid(e.to_string()))?;
        self.store
            .record_ota_install(&session.card_number, entry, created_sd.then_some(&sd_lf))?;
        let n = steps.len() as u32;
        self.store
            .update_ota_session(session.id, SessionState::Done, n, n, detail)?;
        Ok(())
    }

    /// The card lost the load in progress (reset between packets): the load starts again
    /// from INSTALL [for load] with new counters, at most [`MAX_LOAD_RESTARTS`] times;
    /// `None` when they are used up.
    fn restart_load(
        &self,
        session: &Session,
        card: &OtaCard,
        keys: &Scp80KeySet,
        steps: &[Step],
        messages: &[Message],
        why: &str,
    ) -> Result<Option<Outbound>> {
        let restarts = messages.iter().filter(|m| m.kind == LOAD_RESTART).count();
        let Some(first) = steps.iter().position(|s| s.kind == StepKind::Load) else {
            return Ok(None);
        };
        if restarts >= MAX_LOAD_RESTARTS {
            return Ok(None);
        }
        self.store.log_ota_message(
            Some(session.id),
            &card.card_number,
            Direction::Mt,
            LOAD_RESTART,
            None,
            &[],
            why,
        )?;
        let o = self.send_step(
            session,
            card,
            keys,
            &steps[first],
            first as u32,
            steps.len() as u32,
        )?;
        Ok(Some(o))
    }

    /// An HTTPS session of the card ended (`outcome` in words) or never came within
    /// [`EngineConfig::https_wait`] of the trigger with this `counter` (`None`: any).
    /// A session with scripts left is triggered again (a new counter), at most
    /// [`EngineConfig::max_sends`] triggers in all, then abandoned.
    pub fn on_https_end(
        &self,
        session_id: i64,
        trigger_counter: Option<u64>,
        outcome: &str,
    ) -> Result<Vec<Outbound>> {
        let session = self.session(session_id)?;
        let card = self.ota_card(&session.card_number)?;
        let messages = self.store.ota_messages(session.id)?;
        let last_trigger = messages
            .iter()
            .rev()
            .find(|m| m.direction == Direction::Mt && m.kind == StepKind::Trigger.as_str());
        if let (Some(c), Some(t)) = (trigger_counter, last_trigger) {
            if t.counter != Some(c) {
                return Ok(Vec::new()); // triggered again since
            }
            // A wait that ran out while the card is in session is no end.
            if messages
                .iter()
                .any(|m| m.id > t.id && m.kind == "https-response")
            {
                return Ok(Vec::new());
            }
        }
        self.log_mo(Some(session.id), &card, "https-session", None, &[], outcome)?;
        if session.state != SessionState::Running {
            return Ok(Vec::new());
        }
        self.retrigger(&session, &card, &messages, outcome)
    }

    /// Triggers an HTTPS session again, or abandons it when the triggers are used up.
    fn retrigger(
        &self,
        session: &Session,
        card: &OtaCard,
        messages: &[Message],
        why: &str,
    ) -> Result<Vec<Outbound>> {
        // Triggers since the card last answered a script: a session that progresses is
        // triggered again as often as it needs (the create-SD session ends by design).
        let since = messages
            .iter()
            .rfind(|m| m.kind == "https-response")
            .map_or(0, |m| m.id);
        let triggers = messages
            .iter()
            .filter(|m| {
                m.id > since
                    && m.direction == Direction::Mt
                    && m.kind == StepKind::Trigger.as_str()
                    && m.status == "sent"
            })
            .count() as u32;
        if triggers >= self.config.max_sends {
            self.store.update_ota_session(
                session.id,
                SessionState::Abandoned,
                session.step,
                session.steps,
                &format!(
                    "HTTPS: {why}; step {} of {} not done after {triggers} triggers",
                    session.step + 1,
                    session.steps
                ),
            )?;
            return Ok(Vec::new());
        }
        let keys = self.card_keys(card)?;
        Ok(vec![self.send_trigger(
            session,
            card,
            &keys,
            session.step,
            session.steps,
        )?])
    }

    fn session(&self, id: i64) -> Result<Session> {
        self.store
            .ota_session(id)?
            .ok_or_else(|| invalid(format!("OTA session {id} not found")))
    }

    /// Secures a step with a new counter, logs it and moves the session on.
    fn send_step(
        &self,
        session: &Session,
        card: &OtaCard,
        keys: &Scp80KeySet,
        step: &Step,
        index: u32,
        total: u32,
    ) -> Result<Outbound> {
        let cert_step;
        let step = if step.kind == StepKind::CertSd {
            cert_step = self.cert_sd_step(session, card, step)?;
            &cert_step
        } else {
            step
        };
        let counter = self.store.next_ota_counter(&card.card_number)?;
        let header = CommandHeader {
            spi: command_spi(),
            kic: keys.kic,
            kid: keys.kid,
            tar: step.tar,
            counter: Counter::from_u64(counter).ok_or_else(|| invalid("counter exhausted"))?,
        };
        let packet = packet::secure_command(&header, &keys.keys, &step.script()?)
            .map_err(|e| invalid(format!("securing step {}: {e}", index + 1)))?;
        let kind = step.kind.as_str();
        self.store.log_ota_message(
            Some(session.id),
            &card.card_number,
            Direction::Mt,
            kind,
            Some(counter),
            &packet,
            "sent",
        )?;
        self.store.update_ota_session(
            session.id,
            SessionState::Running,
            index,
            total,
            &format!(
                "waiting for the PoR of step {} of {total} ({kind}, counter {counter})",
                index + 1
            ),
        )?;
        let mut o = self.outbound(card, kind, counter, packet, PacketKind::Command)?;
        o.session = Some(session.id);
        Ok(o)
    }

    /// The CERT.SD step with its command: the CA's certificate of the PK.SD that the
    /// create-SD PoR brought (logged as [`SD_PUBLIC_KEY`]); the certificate is logged too.
    fn cert_sd_step(&self, session: &Session, card: &OtaCard, step: &Step) -> Result<Step> {
        let ca = self
            .sd_ca
            .as_ref()
            .ok_or_else(|| invalid("a CERT.SD step, but no CA to certify with"))?;
        let messages = self.store.ota_messages(session.id)?;
        let pk = messages
            .iter()
            .rfind(|m| m.kind == SD_PUBLIC_KEY)
            .ok_or_else(|| invalid("no PK.SD came back from the create-SD step"))?;
        let pk = scp::scp11::PublicKey::from_sec1(scp::scp11::Curve::P256, &pk.bytes)
            .map_err(|e| invalid(format!("PK.SD: {e}")))?;
        let cert = crate::sd_cert::issue_gp_cert(
            ca.as_ref(),
            &pk,
            gp::cert::KEY_USAGE_KEY_AGREEMENT,
            SD_CERT_DAYS,
        )?;
        self.store.log_ota_message(
            Some(session.id),
            &card.card_number,
            Direction::Mt,
            SD_CERTIFICATE,
            None,
            &cert,
            "issued",
        )?;
        Ok(Step {
            commands: vec![plan::cert_sd_command(&cert)?],
            ..step.clone()
        })
    }

    fn outbound(
        &self,
        card: &OtaCard,
        kind: &str,
        counter: u64,
        packet: Vec<u8>,
        packet_kind: PacketKind,
    ) -> Result<Outbound> {
        let reference = if self.config.ref16 {
            ConcatRef::Sixteen(counter as u16)
        } else {
            ConcatRef::Eight(counter as u8)
        };
        let user_data = tpdu::split_packet(packet_kind, &packet, reference)
            .map_err(|e| invalid(format!("SMS: {e}")))?
            .into_iter()
            .map(|ud| {
                ud.encode(tpdu::Dcs::CLASS2_8BIT)
                    .map(|(_, b)| b)
                    .map_err(|e| invalid(format!("SMS: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Outbound {
            session: None,
            card_number: card.card_number.clone(),
            msisdn: card.msisdn.clone(),
            kind: kind.into(),
            counter: Some(counter),
            packet,
            user_data,
        })
    }

    /// The PoR of a session's last script did not come in time: the same packet again, or
    /// the session is abandoned after [`EngineConfig::max_sends`] sends. `counter` is the
    /// counter the time-out was armed for: if the session has moved on since, nothing
    /// happens.
    pub fn on_timeout(&self, session_id: i64, counter: u64) -> Result<Vec<Outbound>> {
        let session = self.session(session_id)?;
        if session.state != SessionState::Running {
            return Ok(Vec::new());
        }
        let messages = self.store.ota_messages(session_id)?;
        let Some(last) = messages.iter().rev().find(|m| is_script(m)) else {
            return Ok(Vec::new());
        };
        if last.counter != Some(counter) {
            return Ok(Vec::new());
        }
        if last.kind == StepKind::Trigger.as_str()
            && messages.iter().any(|m| {
                m.id > last.id
                    && (m.kind == "https-response"
                        || (m.direction == Direction::Mo
                            && m.kind == "por"
                            && m.counter == last.counter
                            && m.status != "stale"))
            })
        {
            // The PoR was lost but the card is in its HTTPS session, or the PoR came: the
            // card took the trigger, and whether its session comes is the HTTPS wait's
            // business ([`Engine::on_https_end`]), not a reason to send it again.
            return Ok(Vec::new());
        }
        self.resend(&session, &messages, last)
    }

    fn resend(
        &self,
        session: &Session,
        messages: &[Message],
        last: &Message,
    ) -> Result<Vec<Outbound>> {
        let sends = sends_of(messages, last.counter) as u32;
        if sends >= self.config.max_sends {
            self.store.update_ota_session(
                session.id,
                SessionState::Abandoned,
                session.step,
                session.steps,
                &format!(
                    "no PoR for step {} of {} after {sends} sends (counter {})",
                    session.step + 1,
                    session.steps,
                    last.counter.unwrap_or(0)
                ),
            )?;
            return Ok(Vec::new());
        }
        let card = self.ota_card(&session.card_number)?;
        self.store.log_ota_message(
            Some(session.id),
            &card.card_number,
            Direction::Mt,
            &last.kind,
            last.counter,
            &last.bytes,
            "resent",
        )?;
        let mut o = self.outbound(
            &card,
            &last.kind,
            last.counter.unwrap_or(0),
            last.bytes.clone(),
            PacketKind::Command,
        )?;
        o.session = Some(session.id);
        Ok(vec![o])
    }

    /// Picks unfinished sessions up after a restart: pending ones are started; running
    /// ones get their last packet again (a resend: same counter, counted against
    /// [`EngineConfig::max_sends`]).
    pub fn resume(&self) -> Result<Vec<Outbound>> {
        let mut out = Vec::new();
        for s in self.store.ota_open_sessions()? {
            let r = match s.state {
                SessionState::Pending => self.start(s.id),
                _ if s.bearer == Bearer::Https => {
                    // The old trigger's counter is spent on the card: a new one.
                    let messages = self.store.ota_messages(s.id)?;
                    if messages.iter().any(|m| m.kind.starts_with("https-")) {
                        self.ota_card(&s.card_number)
                            .and_then(|c| self.retrigger(&s, &c, &messages, "restarted"))
                    } else {
                        self.start(s.id)
                    }
                }
                _ => {
                    let messages = self.store.ota_messages(s.id)?;
                    match messages.iter().rev().find(|m| is_script(m)) {
                        Some(last) => self.resend(&s, &messages, last),
                        None => self.start(s.id),
                    }
                }
            };
            match r {
                Ok(o) => out.extend(o),
                Err(e) => {
                    let _ = self.store.update_ota_session(
                        s.id,
                        SessionState::Failed,
                        s.step,
                        s.steps,
                        &format!("cannot resume: {e}"),
                    );
                }
            }
        }
        Ok(out)
    }

    /// An MO packet from `msisdn` (reassembled from its SMS): a download request (command
    /// packet to the platform's TAR) or a PoR (response packet).
    pub fn on_mo(&self, msisdn: &str, kind: PacketKind, packet: &[u8]) -> Result<MoOutcome> {
        let cards = self.store.ota_cards_by_msisdn(msisdn)?;
        if cards.is_empty() {
            return Ok(MoOutcome::Ignored(format!(
                "no card enrolled with MSISDN {msisdn}"
            )));
        }
        match kind {
            PacketKind::Command => self.on_request(&cards, packet),
            PacketKind::Response => self.on_por(&cards, packet),
        }
    }

    fn on_request(&self, cards: &[OtaCard], packet: &[u8]) -> Result<MoOutcome> {
        let info = match PacketInfo::parse(packet) {
            Ok(i) => i,
            Err(e) => return Ok(MoOutcome::Ignored(format!("command packet: {e}"))),
        };
        // The card is the one whose keys verify the CC.
        let mut found = None;
        for card in cards {
            let keys = self.card_keys(card)?;
            match open_any_counter(packet, &keys) {
                Ok(o) => {
                    found = Some((card, keys, o));
                    break;
                }
                Err(_) => continue,
            }
        }
        let Some((card, keys, opened)) = found else {
            for card in cards {
                self.store.log_ota_message(
                    None,
                    &card.card_number,
                    Direction::Mo,
                    "request",
                    None,
                    packet,
                    "bad_cc",
                )?;
            }
            return Ok(MoOutcome::Ignored(
                "CC does not verify under the keys of any card with this MSISDN".into(),
            ));
        };
        let counter = opened.header.counter.value();
        let spi = opened.header.spi;
        if spi.integrity != Integrity::Cc
            || !matches!(spi.counter, CounterMode::Higher | CounterMode::OneHigher)
        {
            self.log_mo(
                None,
                card,
                "request",
                Some(counter),
                packet,
                "insufficient_security",
            )?;
            return Ok(MoOutcome::Ignored(
                "a download request needs a CC and a counter check".into(),
            ));
        }
        if info.tar != PLATFORM_TAR {
            self.log_mo(None, card, "request", Some(counter), packet, "unknown_tar")?;
            return Ok(MoOutcome::Ignored(format!(
                "TAR {} is not the platform's",
                info.tar
            )));
        }
        if let CounterCheck::Replayed { last } =
            self.store.accept_card_counter(&card.card_number, counter)?
        {
            self.log_mo(None, card, "request", Some(counter), packet, "replayed")?;
            return Ok(MoOutcome::Ignored(format!(
                "replayed request: counter {counter}, last accepted {last}"
            )));
        }
        let app = match request_app(&opened.data) {
            Some(a) => a,
            None => {
                self.log_mo(None, card, "request", Some(counter), packet, "bad_request")?;
                return Ok(MoOutcome::Ignored("not an E1 { 80 name } request".into()));
            }
        };
        let tenant = self.card_tenant(&card.card_number)?;
        let mut out = Vec::new();
        let entry = self.store.ota_catalog_entry(&tenant, &app)?;
        let status = if entry.is_some() { "ok" } else { "unknown_app" };
        self.log_mo(None, card, "request", Some(counter), packet, status)?;
        let session = match &entry {
            Some(e) => Some(self.store.open_ota_session(
                OTA_SERVER,
                &tenant,
                &card.card_number,
                &app,
                self.choose_bearer(&card.card_number, &keys, e)?,
                Origin::Card,
            )?),
            None => None,
        };
        if spi.por == PorRequest::Always || (spi.por == PorRequest::OnError && session.is_none()) {
            // The request was authentic: PoR OK. Its data says whether a download follows
            // (empty) or the application is unknown (`6A88`, referenced data not found).
            let data: &[u8] = if session.is_some() {
                &[]
            } else {
                &[0x6A, 0x88]
            };
            let por = packet::secure_response(
                &opened.header.por_security(),
                &keys.keys,
                &ResponseHeader {
                    tar: info.tar,
                    counter: opened.header.counter,
                    status: ResponseStatus::PorOk,
                },
                data,
            )
            .map_err(|e| invalid(format!("PoR: {e}")))?;
            let sid = session.as_ref().map(|s| s.id);
            self.store.log_ota_message(
                sid,
                &card.card_number,
                Direction::Mt,
                "por",
                Some(counter),
                &por,
                "sent",
            )?;
            let mut o = self.outbound(card, "por", counter, por, PacketKind::Response)?;
            o.session = sid;
            out.push(o);
        }
        match session {
            Some(s) => {
                out.extend(self.start(s.id)?);
                Ok(MoOutcome::Handled(out))
            }
            None if out.is_empty() => Ok(MoOutcome::Ignored(format!(
                "'{app}' is not in the catalog of {tenant}"
            ))),
            None => Ok(MoOutcome::Handled(out)),
        }
    }

    /// The policy for a card's request: over HTTPS when the admin server runs and the
    /// download would take more than [`HttpsEndpoint::above_sms`] SMS; by SMS otherwise.
    fn choose_bearer(
        &self,
        card_number: &str,
        keys: &Scp80KeySet,
        entry: &CatalogEntry,
    ) -> Result<Bearer> {
        let Some(https) = &self.config.https else {
            return Ok(Bearer::Sms);
        };
        let Some(cap) = self.store.package_cap(&entry.package)? else {
            return Ok(Bearer::Sms); // the session fails with the reason when planned
        };
        let cap = CapFile::from_bytes(&cap).map_err(|e| invalid(format!("CAP: {e}")))?;
        let sd_missing = !self.store.card_has_instance(card_number, &entry.sd)?;
        let packing = self.packing(keys);
        let sms = plan::sms_total(&plan::plan(entry, &cap, sd_missing, &packing)?, &packing)?;
        Ok(if sms > https.above_sms {
            Bearer::Https
        } else {
            Bearer::Sms
        })
    }

    fn log_mo(
        &self,
        session: Option<i64>,
        card: &OtaCard,
        kind: &str,
        counter: Option<u64>,
        packet: &[u8],
        status: &str,
    ) -> Result<()> {
        self.store.log_ota_message(
            session,
            &card.card_number,
            Direction::Mo,
            kind,
            counter,
            packet,
            status,
        )?;
        Ok(())
    }

    fn on_por(&self, cards: &[OtaCard], packet: &[u8]) -> Result<MoOutcome> {
        for card in cards {
            // The card's running session and the packet it waits on; else its newest
            // HTTPS session, whose trigger's PoR may come after the session is over.
            let recent = self.store.ota_sessions(&card.card_number, 10)?;
            let Some(session) = recent
                .iter()
                .find(|s| s.state == SessionState::Running)
                .or_else(|| recent.iter().find(|s| s.bearer == Bearer::Https))
                .cloned()
            else {
                continue;
            };
            let messages = self.store.ota_messages(session.id)?;
            let Some(last) = messages.iter().rev().find(|m| is_script(m)).cloned() else {
                continue;
            };
            let keys = self.card_keys(card)?;
            let sent = match PacketInfo::parse(&last.bytes) {
                Ok(i) => i,
                Err(_) => continue,
            };
            let security = CommandHeader {
                spi: sent.spi,
                kic: sent.kic,
                kid: sent.kid,
                tar: sent.tar,
                counter: Counter::ZERO,
            }
            .por_security();
            let Ok(opened) = packet::open_response(packet, &security, &keys.keys) else {
                continue;
            };
            let counter = opened.header.counter.value();
            let status = opened.header.status;
            if Some(counter) != last.counter {
                self.log_mo(
                    Some(session.id),
                    card,
                    "por",
                    Some(counter),
                    packet,
                    "stale",
                )?;
                return Ok(MoOutcome::Ignored(format!(
                    "PoR for counter {counter}, waiting for {}",
                    last.counter.unwrap_or(0)
                )));
            }
            self.log_mo(
                Some(session.id),
                card,
                "por",
                Some(counter),
                packet,
                &format!("{:02X}", status.to_byte()),
            )?;
            if session.state != SessionState::Running {
                return Ok(MoOutcome::Handled(Vec::new())); // logged: nothing waits on it
            }
            return self.after_por(
                &session,
                card,
                &keys,
                &messages,
                &last,
                status,
                &opened.data,
            );
        }
        Ok(MoOutcome::Ignored(
            "a PoR no running session of this MSISDN's cards verifies".into(),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn after_por(
        &self,
        session: &Session,
        card: &OtaCard,
        keys: &Scp80KeySet,
        messages: &[Message],
        last: &Message,
        status: ResponseStatus,
        data: &[u8],
    ) -> Result<MoOutcome> {
        let fail = |detail: String| -> Result<MoOutcome> {
            self.store.update_ota_session(
                session.id,
                SessionState::Failed,
                session.step,
                session.steps,
                &detail,
            )?;
            Ok(MoOutcome::Handled(Vec::new()))
        };
        if last.kind == StepKind::Trigger.as_str() {
            let resent = sends_of(messages, last.counter) > 1;
            let ok = match status {
                ResponseStatus::PorOk => match script::parse_response_data(data) {
                    Ok(ScriptResponse::Compact(c))
                        if c.executed == 1 && c.last.sw == StatusWord::SUCCESS =>
                    {
                        Ok(())
                    }
                    // The card's admin agent is in a session already (Amendment B: a
                    // trigger during one is refused with 6985) — most likely the one
                    // running this session's scripts, come after the wait ran out. The
                    // responses, or the HTTPS wait (re-trigger, abandon), decide.
                    Ok(ScriptResponse::Compact(c))
                        if c.last.sw == StatusWord::CONDITIONS_NOT_SATISFIED =>
                    {
                        Ok(())
                    }
                    Ok(ScriptResponse::Compact(c)) => {
                        Err(format!("the trigger answered {:04X}", c.last.sw.0))
                    }
                    Ok(_) => Err("the trigger's PoR is not a compact response".to_string()),
                    Err(e) => Err(format!("the trigger's PoR data: {e}")),
                },
                ResponseStatus::CounterLow if resent => Ok(()),
                other => Err(format!("the trigger was answered {other}")),
            };
            return match ok {
                Ok(()) => {
                    if session.detail.starts_with("waiting for the PoR") {
                        self.store.update_ota_session(
                            session.id,
                            SessionState::Running,
                            session.step,
                            session.steps,
                            &format!(
                                "triggered (counter {}): waiting for the card's HTTPS session",
                                last.counter.unwrap_or(0)
                            ),
                        )?;
                    }
                    Ok(MoOutcome::Handled(Vec::new()))
                }
                Err(why) => fail(format!("HTTPS: {why}")),
            };
        }
        let (entry, steps) = match self.steps(session, keys) {
            Ok(x) => x,
            Err(e) => return fail(format!("cannot plan: {e}")),
        };
        let index = session.step as usize;
        let Some(step) = steps.get(index) else {
            return fail(format!("step {} is not in the plan", index + 1));
        };
        let mut note = String::new();
        match status {
            ResponseStatus::PorOk => {
                if let Err(why) = check_script_result(step, data) {
                    let why = format!("step {} of {}: {why}", index + 1, steps.len());
                    if load_context_lost(step, data) {
                        if let Some(o) =
                            self.restart_load(session, card, keys, &steps, messages, &why)?
                        {
                            return Ok(MoOutcome::Handled(vec![o]));
                        }
                    }
                    return fail(why);
                }
                if step.kind == StepKind::CreateSd {
                    if let Some(pk) = public_key_of(data) {
                        // Kept in the log: the PoR it came in is ciphered there.
                        self.store.log_ota_message(
                            Some(session.id),
                            &card.card_number,
                            Direction::Mo,
                            SD_PUBLIC_KEY,
                            None,
                            &pk,
                            "received",
                        )?;
                    }
                }
            }
            ResponseStatus::CounterLow if sends_of(messages, last.counter) > 1 => {
                note = format!(
                    "; step {} taken as done: counter low on a resend (the first copy ran, its PoR was lost)",
                    index + 1
                );
            }
            other => {
                return fail(format!(
                    "step {} of {}: the card answered {other}",
                    index + 1,
                    steps.len()
                ))
            }
        }
        let next = index + 1;
        if next == steps.len() {
            self.finish(
                session,
                &entry,
                &steps,
                &format!("installed {}{}{note}", entry.instance, pk_note(messages)),
            )?;
            return Ok(MoOutcome::Handled(Vec::new()));
        }
        if !note.is_empty() {
            self.store.update_ota_session(
                session.id,
                SessionState::Running,
                next as u32,
                steps.len() as u32,
                note.trim_start_matches("; "),
            )?;
        }
        let o = self.send_step(
            session,
            card,
            keys,
            &steps[next],
            next as u32,
            steps.len() as u32,
        )?;
        Ok(MoOutcome::Handled(vec![o]))
    }
}

/// Whether a step's PoR says the card no longer has the load in progress: its first
/// command, a LOAD after block 0, answered `6985` (conditions of use not satisfied) — a
/// card reset (power off) between packets ends the LOAD sequence (GP 2.3.1 §11.6.2.3).
fn load_context_lost(step: &Step, data: &[u8]) -> bool {
    let first_is_later_load = step
        .commands
        .first()
        .is_some_and(|c| c.ins == 0xE8 && c.p2 > 0);
    first_is_later_load
        && matches!(
            script::parse_response_data(data),
            Ok(ScriptResponse::Compact(c)) if c.executed == 1 && c.last.sw == StatusWord(0x6985)
        )
}

/// How often a session may start its load again after the card lost it.
const MAX_LOAD_RESTARTS: usize = 2;

/// Whether a logged message is an SCP80 command packet the platform sent (a script or a
/// trigger: each waits for its PoR), not a PoR it sent.
fn is_script(m: &Message) -> bool {
    m.direction == Direction::Mt && awaits_por(&m.kind)
}

/// Whether a message of this kind is a command packet whose PoR the platform waits for
/// (resent on time-out): a script, create-SD, CERT.SD or trigger packet.
pub fn awaits_por(kind: &str) -> bool {
    [
        StepKind::Load,
        StepKind::CreateSd,
        StepKind::CertSd,
        StepKind::Trigger,
    ]
    .iter()
    .any(|k| kind == k.as_str())
}

/// Whether a logged message is a step of the plan (by SMS or HTTPS; not a trigger).
fn is_step(m: &Message) -> bool {
    [StepKind::Load, StepKind::CreateSd, StepKind::CertSd]
        .iter()
        .any(|k| m.kind == k.as_str() || m.kind == k.https_str())
}

/// The scripts of an HTTPS session for the SCP81 admin server ([`Engine::https_scripts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsScripts {
    /// The card's TLS PSK identity: the queue's key.
    pub identity: Vec<u8>,
    /// The scripts left, in order.
    pub scripts: Vec<HttpsScript>,
}

/// One script of an HTTPS session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsScript {
    /// Its step in the session's plan (0-based).
    pub step: u32,
    /// The SD it targets (`X-Admin-Targeted-Application`); `None`: the ISD.
    pub target: Option<Aid>,
    /// The expanded remote command script (ETSI TS 102 226).
    pub bytes: Vec<u8>,
}

/// How many times the packet with this counter went out.
fn sends_of(messages: &[Message], counter: Option<u64>) -> usize {
    messages
        .iter()
        .filter(|m| is_script(m) && m.counter == counter)
        .count()
}

/// Opens a command packet whatever its counter (the platform checks the card's counter
/// itself with [`Store::accept_card_counter`]); the CC is verified before the counter.
pub fn open_any_counter(
    packet: &[u8],
    keys: &Scp80KeySet,
) -> std::result::Result<packet::OpenedCommand, packet::Error> {
    match packet::open_command(packet, &keys.keys, Counter::ZERO) {
        Err(packet::Error::CounterHigh { received, .. })
        | Err(packet::Error::CounterLow { received, .. })
            if received.value() > 0 =>
        {
            let stored = Counter::from_u64(received.value() - 1).unwrap_or(Counter::ZERO);
            packet::open_command(packet, &keys.keys, stored)
        }
        other => other,
    }
}

/// What the message log calls the restart of a load the card lost ([`Engine::on_mo`]).
pub const LOAD_RESTART: &str = "load-restart";

/// What the message log calls the CERT.SD the platform's CA issued for PK.SD.
pub const SD_CERTIFICATE: &str = "sd-certificate";

/// How long a CERT.SD is valid (days).
pub const SD_CERT_DAYS: u32 = 3650;

/// What the message log calls the public key of the SD key pair the create-SD step made
/// (PK.SD, from the PoR of GENERATE EC KEY).
pub const SD_PUBLIC_KEY: &str = "sd-public-key";

/// The SD public key of a session, for its final detail.
fn pk_note(messages: &[Message]) -> String {
    messages
        .iter()
        .rfind(|m| m.kind == SD_PUBLIC_KEY)
        .map(|m| format!("; SD key PK.SD {}", apdu::hex(&m.bytes)))
        .unwrap_or_default()
        + if messages.iter().any(|m| m.kind == SD_CERTIFICATE) {
            ", CERT.SD stored"
        } else {
            ""
        }
}

/// The application name of a download request `E1 { [4F aid] 80 name }`.
pub fn request_app(data: &[u8]) -> Option<String> {
    let t = apdu::tlv::TlvRef::parse(data).ok()?;
    if t.tag().value() != 0xE1 {
        return None;
    }
    apdu::tlv::parse_all_ref(t.value())
        .ok()?
        .into_iter()
        .find(|c| c.tag().value() == 0x80)
        .and_then(|c| String::from_utf8(c.value().to_vec()).ok())
        .filter(|n| super::valid_app_name(n))
}

/// The download request a card's agent sends: `E1 { 80 name }`.
pub fn request_data(app: &str) -> Vec<u8> {
    let inner = apdu::tlv::encode(apdu::tlv::Tag::new(0x80), app.as_bytes());
    apdu::tlv::encode(apdu::tlv::Tag::new(0xE1), &inner)
}

/// Checks the PoR data of a step: every command executed and answered `9000` (`61xx` is
/// accepted for the expanded create-SD script's data-returning command).
fn check_script_result(step: &Step, data: &[u8]) -> std::result::Result<(), String> {
    let n = step.commands.len();
    match script::parse_response_data(data).map_err(|e| format!("PoR data: {e}"))? {
        ScriptResponse::Compact(c) => {
            if usize::from(c.executed) != n {
                return Err(format!(
                    "{} of {n} commands executed, the last answered {:04X}",
                    c.executed, c.last.sw.0
                ));
            }
            if c.last.sw != StatusWord::SUCCESS {
                return Err(format!("the last command answered {:04X}", c.last.sw.0));
            }
        }
        ScriptResponse::Expanded(r) => {
            let responses: Vec<_> = r.responses().collect();
            if let Some(bad) = responses.iter().position(|x| !ok_sw(x.sw)) {
                return Err(format!(
                    "command {} answered {:04X}",
                    bad + 1,
                    responses[bad].sw.0
                ));
            }
            if r.executed().map(|e| e as usize) != Some(n) && responses.len() != n {
                return Err(format!(
                    "{} of {n} commands executed",
                    r.executed().unwrap_or(responses.len() as u32)
                ));
            }
        }
    }
    Ok(())
}

fn ok_sw(sw: StatusWord) -> bool {
    sw == StatusWord::SUCCESS || sw.0 >> 8 == 0x61
}

/// PK.SD from the create-SD PoR: the `B0` point in the last R-APDU.
fn public_key_of(data: &[u8]) -> Option<Vec<u8>> {
    match script::parse_response_data(data).ok()? {
        ScriptResponse::Expanded(r) => {
            let last = r.responses().last()?;
            let t = apdu::tlv::TlvRef::parse(&last.data).ok()?;
            (t.tag().value() == 0xB0).then(|| t.value().to_vec())
        }
        ScriptResponse::Compact(c) => {
            let t = apdu::tlv::TlvRef::parse(&c.last.data).ok()?;
            (t.tag().value() == 0xB0).then(|| t.value().to_vec())
        }
    }
}
