//! Install and registration on a card, with a journal that lets the next contact finish or
//! roll back an install a pulled card interrupted (`docs/OUTLET.md` has the APDUs).
//!
//! 1. **Identify and open** (no authentication attempted before the card is known): warm
//!    reset, SELECT of the ISD, INITIALIZE UPDATE; the answer's key diversification data
//!    gives the card number and its key version the base key version ([`crate::card`]);
//!    the card's SCP03 keys are derived in the token, the card cryptogram checked, then
//!    EXTERNAL AUTHENTICATE (C-MAC, C-DECRYPTION, R-MAC). A card the module has no keys for
//!    is [`InstallError::WrongCard`] with no EXTERNAL AUTHENTICATE sent.
//! 2. **Check** the registry (GET STATUS): the load file or instance already there (and no
//!    interrupted install of it) is [`InstallError::AlreadyPresent`].
//! 3. **Journal** row written (MAC'd in the token) before the first command that changes
//!    the card, and after each stage: `started` → `loaded` (INSTALL \[for load\] + LOAD
//!    blocks, with the package's DAP blocks and load token) → `installed` (INSTALL \[for
//!    install and make selectable\], with the install token) → `registering` → `personalized`.
//! 4. **Registration** (the recipe of the manifest): SELECT of the instance; per on-card key,
//!    GENERATE KEY PAIR and SIGN of a module challenge (proof of possession, `pki::enrol`),
//!    then the module's CA issues the certificate; per module key, an AES key generated in
//!    the token. Then the channel is opened again; INSTALL \[for personalization\] and STORE
//!    DATA (DGI `01<slot>` certificates, DGI `81<slot>` keys encrypted under the DEK inside
//!    the token); SET STATUS of the instance to `0F` (application specific, GP 2.3.1 §11.10).
//! 5. **Record** appended (hash chain) and journal row deleted in one transaction.
//!
//! An error decides by its kind (never its text): the card gone or an answer that does not
//! verify leaves the journal (record `interrupted`; the next install for that card or
//! `resume` continues from what the registry shows, registration starting over until the
//! instance is `0F`); a refusal by the card rolls back (DELETE of the load file and its
//! instance, the module's keys for it deleted, its certificates revoked; record
//! `rolled_back`). So the card never keeps a half-loaded file (a card drops an unfinished
//! load at reset) that the module believes installed: only a record `ok` says installed.

use std::str::FromStr;

use gp::aid::Aid;
use gp::commands::{DapBlock, Install};
use gpclient::{ops, ClientError, GpClient, Operation};
use serde_json::json;
use transport::{CardChannel, Traced, TransportError};

use crate::card::{Identified, LEVEL};
use crate::catalog::StoredApp;
use crate::db::{now_ms, JournalRow, RecordContent};
use crate::records::result;
use crate::registration;
use crate::{labels, InstallError, InstallOutcome, Module, Progress, RegisteredKey};

/// The application life cycle state the registration ends in (application specific,
/// GP 2.3.1 §11.1.1 Table 11-4: bits b4..b7 free, b1..b3 = SELECTABLE).
pub(crate) const REGISTERED: u8 = 0x0F;

mod stage {
    pub const STARTED: &str = "started";
    pub const LOADED: &str = "loaded";
    pub const INSTALLED: &str = "installed";
    pub const REGISTERING: &str = "registering";
    pub const PERSONALIZED: &str = "personalized";
}

/// Why a run stopped, and so what happens next.
#[derive(Debug)]
enum Stop {
    /// Nothing on the card changed for this attempt: a `failed` record.
    Before(InstallError),
    /// The card went away or its answer did not verify: the journal stays.
    Interrupted(InstallError),
    /// The card (or the package) refused a step: roll back.
    Refused(InstallError),
}

/// The error of the open closure: a card error, or the module's decision.
#[derive(Debug)]
enum OpenError {
    Client(ClientError),
    Install(InstallError),
}

impl From<ClientError> for OpenError {
    fn from(e: ClientError) -> Self {
        OpenError::Client(e)
    }
}

/// Whether a card error leaves the command's outcome unknown (keep the journal) or is a
/// refusal (roll back), and the clerk's word for it.
fn classify(e: ClientError) -> Stop {
    match e {
        ClientError::Transport(_)
        | ClientError::Exchange { .. }
        | ClientError::ResponseUnverified { .. } => Stop::Interrupted(InstallError::CardRemoved),
        ClientError::Card { sw, .. } if sw == apdu::StatusWord::NOT_ENOUGH_MEMORY => {
            Stop::Refused(InstallError::CardFull)
        }
        other => Stop::Refused(InstallError::Other(other.to_string())),
    }
}

/// Before anything changed, every card error ends the attempt (there is nothing to finish).
fn before(e: ClientError) -> Stop {
    match e {
        ClientError::Transport(TransportError::NoCard(_)) => Stop::Before(InstallError::NoCard),
        ClientError::Transport(_) | ClientError::Exchange { .. } => {
            Stop::Before(InstallError::CardRemoved)
        }
        ClientError::WrongKeys { .. } => Stop::Before(InstallError::WrongCard(
            "its keys are not the module's (the card cryptogram does not verify; EXTERNAL AUTHENTICATE was not sent)".into(),
        )),
        ClientError::Card { sw, .. } if sw == apdu::StatusWord::NOT_ENOUGH_MEMORY => Stop::Before(InstallError::CardFull),
        other => Stop::Before(InstallError::Other(other.to_string())),
    }
}

/// The module's own failures (token, database) while a journal exists: keep it.
fn module_failure(what: &str, e: impl std::fmt::Display) -> Stop {
    Stop::Interrupted(InstallError::Other(format!("{what}: {e}")))
}

/// The InstallError a journal's roll-back code stands for.
fn error_of(code: &str, application: &str) -> InstallError {
    match code {
        "card_full" => InstallError::CardFull,
        "already_present" => InstallError::AlreadyPresent(application.into()),
        "package_tampered" => InstallError::PackageTampered(application.into()),
        "unknown_application" => InstallError::UnknownApplication(application.into()),
        other => InstallError::Other(format!(
            "the install of {application} was rolled back ({other})"
        )),
    }
}

/// An application's install, from its manifest entry.
struct Plan {
    app: StoredApp,
    cap: gp::cap::CapFile,
    load_file: Aid,
    module: Aid,
    instance: Aid,
    security_domain: Option<Aid>,
    privileges: gp::Privileges,
    install_params: Vec<u8>,
    dap: Vec<DapBlock>,
    tokens: Option<(Vec<u8>, Vec<u8>)>,
}

impl Plan {
    /// INSTALL \[for load\] (with the load file's hash when DAP blocks come) and INSTALL
    /// \[for install and make selectable\] as `gpclient::ops` makes them for `card install`,
    /// with the package's Delegated Management tokens put in as they are.
    fn install_commands(&self) -> Result<(Install, Install), Stop> {
        let invalid = |e: String| Stop::Refused(InstallError::Other(e));
        let opts = ops::InstallOptions {
            to: self.security_domain,
            params: self.install_params.clone(),
            privileges: self.privileges,
            instance: Some(self.instance),
            applet: Some(self.module),
            dap_signatures: self
                .dap
                .iter()
                .map(|d| (d.security_domain, d.signature.clone()))
                .collect(),
            ..Default::default()
        };
        let hash = ops::install_hash(&self.cap, &opts).map_err(|e| invalid(e.to_string()))?;
        let (mut for_load, installs) =
            ops::install_plan(&self.cap, &opts, hash).map_err(|e| invalid(e.to_string()))?;
        let mut for_install = installs
            .into_iter()
            .next()
            .ok_or_else(|| invalid(format!("{}: no instance to install", self.app.row.name)))?;
        if let Some((load, install)) = &self.tokens {
            use gp::dm::TokenInput;
            for_load = for_load
                .with_token(load.clone())
                .map_err(|e| invalid(e.to_string()))?;
            for_install = for_install
                .with_token(install.clone())
                .map_err(|e| invalid(e.to_string()))?;
        }
        Ok((for_load, for_install))
    }
}

fn aid(what: &str, hex: &str, name: &str) -> Result<Aid, InstallError> {
    Aid::from_str(hex)
        .map_err(|e| InstallError::Other(format!("{name}: the manifest's {what} {hex:?}: {e}")))
}

fn hex(what: &str, s: &str, name: &str) -> Result<Vec<u8>, InstallError> {
    apdu::parse_hex(s)
        .map_err(|e| InstallError::Other(format!("{name}: the manifest's {what}: {e}")))
}

fn plan(app: StoredApp) -> Result<Plan, InstallError> {
    let m = &app.manifest;
    let name = m.name.as_str();
    let cap = gp::cap::CapFile::from_bytes(&app.row.cap)
        .map_err(|e| InstallError::Other(format!("{name}: the load file: {e}")))?;
    let load_file = aid("package AID", &m.package_aid, name)?;
    if load_file != cap.package_aid() {
        return Err(InstallError::PackageTampered(name.into()));
    }
    let module = match m.applet.as_str() {
        "" => *cap
            .applet_aids()
            .first()
            .ok_or_else(|| InstallError::Other(format!("{name}: the load file has no applet")))?,
        a => aid("applet", a, name)?,
    };
    let instance = match m.instance.as_str() {
        "" => module,
        i => aid("instance", i, name)?,
    };
    let security_domain = match m.security_domain.as_str() {
        "" => None,
        s => Some(aid("security domain", s, name)?),
    };
    let mut privileges = gp::Privileges::NONE;
    for p in &m.privileges {
        privileges.insert(
            p.parse()
                .map_err(|e| InstallError::Other(format!("{name}: privilege {p}: {e}")))?,
        );
    }
    let install_params = hex("install parameters", &m.install_params, name)?;
    if install_params.len() > 0x7F {
        return Err(InstallError::Other(format!(
            "{name}: install parameters over 127 bytes"
        )));
    }
    let dap = m
        .dap
        .iter()
        .map(|d| {
            Ok(DapBlock {
                security_domain: aid("DAP security domain", &d.security_domain, name)?,
                signature: hex("DAP signature", &d.signature, name)?,
            })
        })
        .collect::<Result<Vec<_>, InstallError>>()?;
    let tokens = match &m.tokens {
        None => None,
        Some(t) => Some((
            hex("load token", &t.load, name)?,
            hex("install token", &t.install, name)?,
        )),
    };
    Ok(Plan {
        app,
        cap,
        load_file,
        module,
        instance,
        security_domain,
        privileges,
        install_params,
        dap,
        tokens,
    })
}

/// What the module needs of the registry: the applications (GET STATUS P1 `40`) and the
/// load files (P1 `20`), GP 2.3.1 §11.4; not the ISD's entry nor the modules.
struct Registry {
    applications: Vec<gp::commands::RegistryEntry>,
    load_files: Vec<gp::commands::RegistryEntry>,
}

impl Registry {
    fn read<C: CardChannel>(client: &mut GpClient<C>) -> Result<Registry, ClientError> {
        use gp::commands::StatusSubset;
        Ok(Registry {
            applications: ops::get_status(client, StatusSubset::Applications)?,
            load_files: ops::get_status(client, StatusSubset::LoadFiles)?,
        })
    }
    fn has_load_file(&self, aid: &Aid) -> bool {
        self.load_files.iter().any(|e| e.aid == *aid)
    }
    fn instance(&self, aid: &Aid) -> Option<&gp::commands::RegistryEntry> {
        self.applications.iter().find(|e| e.aid == *aid)
    }
}

/// A card with an open secure channel to its ISD.
struct Session<'c, C: CardChannel> {
    client: GpClient<&'c mut C>,
    who: Identified,
    keys: scp::StaticKeys,
}

impl<C: CardChannel> Session<'_, C> {
    /// Opens the channel again (after the applet was selected), to the same card only.
    fn reopen(&mut self) -> Result<(), Stop> {
        let kdd = self.who.kdd;
        let keys = self.keys.clone();
        self.client
            .open_secure_channel_with(None, 0, LEVEL, |iu| {
                if iu.kdd == kdd {
                    Ok(keys)
                } else {
                    Err(OpenError::Install(InstallError::WrongCard(
                        "another card is in the reader".into(),
                    )))
                }
            })
            .map(|_| ())
            .map_err(|e| match e {
                OpenError::Client(c) => classify(c),
                // Another card: the one being installed was removed.
                OpenError::Install(_) => Stop::Interrupted(InstallError::CardRemoved),
            })
    }

    fn send_ok(&mut self, op: Operation, cmd: &apdu::Command, what: &str) -> Result<Vec<u8>, Stop> {
        self.client
            .send_ok(op, cmd, what)
            .map(|r| r.data)
            .map_err(classify)
    }
}

/// What an attempt is about, for its record.
#[derive(Debug, Default, Clone)]
struct About {
    card: String,
    application: String,
    package_sha256: String,
}

impl Module {
    /// Installs `application` on the card and registers it (see the module documentation).
    /// An install of the same card that a pulled card interrupted is first finished or
    /// rolled back; if it was this application and it finishes, its outcome is returned.
    /// Every attempt appends a record.
    pub fn install<C: CardChannel>(
        &self,
        card: &mut C,
        application: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<InstallOutcome, InstallError> {
        let _g = self.card_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut about = About {
            application: application.into(),
            ..About::default()
        };
        let app = match self.stored_app(application) {
            Ok(a) => a,
            Err(e) => return Err(self.record_failure(&about, e)),
        };
        about.package_sha256 = app.row.package_sha256.clone();
        let mut session = match self.connect(card, progress) {
            Ok(s) => s,
            Err(e) => return Err(self.record_failure(&about, e)),
        };
        about.card = session.who.card.clone();
        // This install's APDUs: from the connection, or after a resumed one's.
        let mut base = 0;
        match self.db.journal(&about.card) {
            Ok(Some(j)) => {
                let same = j.application == application;
                match self.continue_journal(&mut session, j, 0, progress) {
                    Ok(outcome) if same => return Ok(outcome),
                    Ok(_) => {}
                    // Rolled back: install it afresh (same application) or go on (another).
                    Err(Stop::Refused(_)) => {}
                    Err(Stop::Interrupted(e) | Stop::Before(e)) => return Err(e),
                }
                base = session.client.apdus_sent();
                if let Err(e) = session.reopen() {
                    return Err(self.record_failure(&about, stop_error(e)));
                }
            }
            Ok(None) => {}
            Err(e) => return Err(self.record_failure(&about, InstallError::Other(e.to_string()))),
        }
        let plan = match plan(app) {
            Ok(p) => p,
            Err(e) => return Err(self.record_failure(&about, e)),
        };
        match self.fresh(&mut session, plan, base, progress) {
            Ok(o) => Ok(o),
            Err(Stop::Before(e)) => Err(self.record_failure(&about, e)),
            Err(Stop::Interrupted(e) | Stop::Refused(e)) => Err(e),
        }
    }

    /// Finishes or rolls back an interrupted install of the card in the reader, if there is
    /// one: `Some(outcome)` when it finished, `None` when the card has none; an error when
    /// it was rolled back (the cause, e.g. [`InstallError::CardFull`]), or interrupted again.
    pub fn resume<C: CardChannel>(
        &self,
        card: &mut C,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<InstallOutcome>, InstallError> {
        let _g = self.card_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut session = self.connect(card, progress)?;
        let journal = self
            .db
            .journal(&session.who.card)
            .map_err(|e| InstallError::Other(e.to_string()))?;
        let Some(j) = journal else {
            return Ok(None);
        };
        match self.continue_journal(&mut session, j, 0, progress) {
            Ok(o) => Ok(Some(o)),
            Err(e) => Err(stop_error(e)),
        }
    }

    /// Reset, SELECT, INITIALIZE UPDATE, identification, keys, EXTERNAL AUTHENTICATE.
    fn connect<'c, C: CardChannel>(
        &self,
        card: &'c mut C,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Session<'c, C>, InstallError> {
        progress(Progress::Connecting);
        card.reset().map_err(|e| match e {
            TransportError::NoCard(_) => InstallError::NoCard,
            _ => InstallError::CardRemoved,
        })?;
        let mut client = GpClient::new(Traced::new(card, None));
        let mut found: Option<(Identified, scp::StaticKeys)> = None;
        let opened = client.open_secure_channel_with(None, 0, LEVEL, |iu| {
            let who = self.identify(iu).map_err(OpenError::Install)?;
            let keys = self.card_keys(&who).map_err(OpenError::Install)?;
            found = Some((who, keys.clone()));
            Ok(keys)
        });
        match opened {
            Ok(_) => {}
            Err(OpenError::Install(e)) => return Err(e),
            Err(OpenError::Client(c)) => return Err(stop_error(before(c))),
        }
        let (who, keys) = found.ok_or_else(|| InstallError::Other("no card keys".into()))?;
        Ok(Session { client, who, keys })
    }

    /// A fresh install (no journal for this card).
    fn fresh<C: CardChannel>(
        &self,
        s: &mut Session<'_, C>,
        plan: Plan,
        base: u64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<InstallOutcome, Stop> {
        let reg = Registry::read(&mut s.client).map_err(before)?;
        if reg.has_load_file(&plan.load_file) || reg.instance(&plan.instance).is_some() {
            return Err(Stop::Before(InstallError::AlreadyPresent(
                plan.app.row.name.clone(),
            )));
        }
        let now = now_ms();
        let mut j = JournalRow {
            card: s.who.card.clone(),
            application: plan.app.row.name.clone(),
            package_sha256: plan.app.row.package_sha256.clone(),
            load_file: plan.load_file.to_hex(),
            instance: plan.instance.to_hex(),
            stage: stage::STARTED.into(),
            rollback: String::new(),
            registration: "[]".into(),
            apdus: 0,
            blocks: 0,
            started_ms: now,
            updated_ms: now,
            mac: Vec::new(),
        };
        self.save(&mut j)
            .map_err(|e| Stop::Before(InstallError::Other(format!("outlet.db: {e}"))))?;
        self.run_to_end(s, plan, j, base, progress)
    }

    /// Continues an interrupted install: rolls it back if it must, else finishes it.
    fn continue_journal<C: CardChannel>(
        &self,
        s: &mut Session<'_, C>,
        j: JournalRow,
        base: u64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<InstallOutcome, Stop> {
        let mac = self
            .mac(&j.mac_input())
            .map_err(|e| Stop::Interrupted(InstallError::Other(format!("security module: {e}"))))?;
        if !crate::bool_ct_eq(&mac, &j.mac) {
            // A journal row edited on disk: trust nothing in it, touch nothing on the card.
            return Err(Stop::Interrupted(InstallError::Other(format!(
                "the journal of card {} was altered outside the module: not resumed",
                j.card
            ))));
        }
        if !j.rollback.is_empty() {
            let cause = error_of(&j.rollback, &j.application);
            return Err(self.roll_back(s, j, base, cause));
        }
        let plan = self.stored_app(&j.application).and_then(|app| {
            if app.row.package_sha256 != j.package_sha256 {
                return Err(InstallError::Other(format!(
                    "the package of {} changed since the install started",
                    j.application
                )));
            }
            plan(app)
        });
        match plan {
            Ok(p) => self.run_to_end(s, p, j, base, progress),
            Err(e) => Err(self.roll_back(s, j, base, e)),
        }
    }

    /// Runs the remaining stages, then records; a refusal rolls back, an interruption
    /// records and keeps the journal.
    fn run_to_end<C: CardChannel>(
        &self,
        s: &mut Session<'_, C>,
        plan: Plan,
        mut j: JournalRow,
        base: u64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<InstallOutcome, Stop> {
        let mut receipts = Vec::new();
        match self.stages(s, &plan, &mut j, progress, &mut receipts) {
            Ok(()) => self.finish(s, &plan, j, base, receipts),
            Err(Stop::Refused(e)) => Err(self.roll_back(s, j, base, e)),
            Err(Stop::Interrupted(e) | Stop::Before(e)) => {
                j.apdus += s.client.apdus_sent() - base;
                let _ = self.save(&mut j);
                Err(Stop::Interrupted(self.record_interrupted(&j, e)))
            }
        }
    }

    /// The stages the registry shows are still to do (see the module documentation).
    fn stages<C: CardChannel>(
        &self,
        s: &mut Session<'_, C>,
        plan: &Plan,
        j: &mut JournalRow,
        progress: &mut dyn FnMut(Progress),
        receipts: &mut Vec<String>,
    ) -> Result<(), Stop> {
        let reg = Registry::read(&mut s.client).map_err(classify)?;
        let loaded = reg.has_load_file(&plan.load_file);
        let instance = reg.instance(&plan.instance).cloned();
        if let Some(i) = &instance {
            if i.life_cycle == REGISTERED
                || (plan.app.manifest.registration.is_empty() && j.stage == stage::PERSONALIZED)
            {
                let keys: Vec<RegisteredKey> =
                    serde_json::from_str(&j.registration).unwrap_or_default();
                if keys.len() == plan.app.manifest.registration.len() {
                    return Ok(());
                }
                return Err(Stop::Refused(InstallError::Other(format!(
                    "{} is registered on the card but the module lacks its registration",
                    plan.app.row.name
                ))));
            }
        }
        if !loaded {
            self.load(s, plan, j, progress, receipts)?;
        }
        if instance.is_none() {
            progress(Progress::Installing);
            let (_, for_install) = plan.install_commands()?;
            let object = format!("of {}", plan.instance);
            send_install(
                s,
                plan,
                Operation::InstallForInstall,
                &for_install,
                &object,
                receipts,
            )?;
            j.stage = stage::INSTALLED.into();
            self.save(j).map_err(|e| module_failure("outlet.db", e))?;
        }
        if plan.app.manifest.registration.is_empty() {
            j.stage = stage::PERSONALIZED.into();
            return self.save(j).map_err(|e| module_failure("outlet.db", e));
        }
        self.register(s, plan, j, progress)
    }

    /// INSTALL \[for load\] and the LOAD blocks (with DAP blocks and the load token).
    fn load<C: CardChannel>(
        &self,
        s: &mut Session<'_, C>,
        plan: &Plan,
        j: &mut JournalRow,
        progress: &mut dyn FnMut(Progress),
        receipts: &mut Vec<String>,
    ) -> Result<(), Stop> {
        let block = plan.cap.load_file_data_block();
        let (for_load, _) = plan.install_commands()?;
        let object = format!("of {}", plan.load_file);
        send_install(
            s,
            plan,
            Operation::InstallForLoad,
            &for_load,
            &object,
            receipts,
        )?;
        let loads =
            gp::commands::load_blocks_with_dap(&block, &plan.dap, s.client.max_plain_data())
                .map_err(|e| Stop::Refused(InstallError::Other(e.to_string())))?;
        let n = loads.len();
        let mut last = Vec::new();
        for (i, cmd) in loads.iter().enumerate() {
            last = s.send_ok(Operation::Load, cmd, &format!("block {} of {n}", i + 1))?;
            progress(Progress::Loading {
                block: i + 1,
                blocks: n,
            });
        }
        note_receipt(receipts, plan.tokens.is_some(), &last);
        j.stage = stage::LOADED.into();
        j.blocks = n as u64;
        self.save(j).map_err(|e| module_failure("outlet.db", e))
    }

    /// The registration recipe (see the module documentation); starts over each time.
    fn register<C: CardChannel>(
        &self,
        s: &mut Session<'_, C>,
        plan: &Plan,
        j: &mut JournalRow,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), Stop> {
        let name = plan.app.row.name.clone();
        // A registration started before and not finished: its certificates are superseded.
        self.revoke_registration(&j.registration);
        j.stage = stage::REGISTERING.into();
        j.registration = "[]".into();
        self.save(j).map_err(|e| module_failure("outlet.db", e))?;
        s.client.select(&plan.instance).map_err(classify)?;
        let mut done: Vec<RegisteredKey> = Vec::new();
        let mut dgis: Vec<gp::commands::dgi::Dgi> = Vec::new();
        let mut module_keys: Vec<(u8, String)> = Vec::new();
        for key in &plan.app.manifest.registration {
            progress(Progress::Registering {
                key: key.id.clone(),
            });
            match key.kind {
                package::KeyKind::EcP256 => {
                    let answer = s.send_ok(
                        Operation::Apdu,
                        &registration::generate_key_pair(key.slot),
                        &format!("(GENERATE KEY PAIR, slot {})", key.slot),
                    )?;
                    let public = registration::public_key_of(&answer)
                        .map_err(|e| Stop::Refused(InstallError::Other(format!("{name}: {e}"))))?;
                    let subject = pki::Subject::new(subject_of(key, &s.who.card, &name));
                    let challenge = self.enroller.issue_challenge(subject).map_err(|e| {
                        Stop::Refused(InstallError::Other(format!(
                            "{name}: certificate subject: {e}"
                        )))
                    })?;
                    let proof = s.send_ok(
                        Operation::Apdu,
                        &registration::sign(key.slot, &challenge.signed_data()),
                        &format!("(SIGN, slot {})", key.slot),
                    )?;
                    let cert = self
                        .enroller
                        .complete(&challenge.id, &public, &proof, None)
                        .map_err(|e| {
                            Stop::Refused(InstallError::Other(format!(
                                "{name}: key {}: proof of possession: {e}",
                                key.id
                            )))
                        })?;
                    dgis.push(registration::certificate_dgi(key.slot, cert.der()));
                    done.push(RegisteredKey {
                        id: key.id.clone(),
                        kind: "ec-p256".into(),
                        certificate_pem: Some(cert.to_pem()),
                        kcv: None,
                    });
                }
                package::KeyKind::Aes128 | package::KeyKind::Aes256 => {
                    let (kind, word) = match key.kind {
                        package::KeyKind::Aes128 => (kms::SecretKeyKind::Aes128, "aes-128"),
                        _ => (kms::SecretKeyKind::Aes256, "aes-256"),
                    };
                    let label = labels::registration_key(&s.who.card, &name, key.slot);
                    self.secrets
                        .delete(&label)
                        .map_err(|e| module_failure("security module", e))?;
                    let info = self
                        .secrets
                        .generate(&label, kind)
                        .map_err(|e| module_failure("security module", e))?;
                    module_keys.push((key.slot, label));
                    done.push(RegisteredKey {
                        id: key.id.clone(),
                        kind: word.into(),
                        certificate_pem: None,
                        kcv: Some(apdu::hex(&info.kcv)),
                    });
                }
            }
            j.registration = serde_json::to_string(&done).unwrap_or_else(|_| "[]".into());
            self.save(j).map_err(|e| module_failure("outlet.db", e))?;
        }
        s.reopen()?;
        let dek = s
            .client
            .session()
            .ok_or(Stop::Interrupted(InstallError::CardRemoved))?
            .data_encryption_key()
            .map_err(|e| Stop::Refused(InstallError::Other(e.to_string())))?;
        for (slot, label) in &module_keys {
            let encrypted = self
                .secrets
                .wrap_for_card(label, &dek)
                .map_err(|e| module_failure("security module", e))?;
            dgis.push(registration::key_dgi(*slot, &encrypted));
        }
        drop(dek);
        ops::personalize_dgis(&mut s.client, &plan.instance, &dgis).map_err(classify)?;
        ops::set_application_state(&mut s.client, &plan.instance, REGISTERED).map_err(classify)?;
        j.stage = stage::PERSONALIZED.into();
        self.save(j).map_err(|e| module_failure("outlet.db", e))
    }

    /// Appends the `ok` record and deletes the journal row, in one transaction.
    fn finish<C: CardChannel>(
        &self,
        s: &mut Session<'_, C>,
        plan: &Plan,
        mut j: JournalRow,
        base: u64,
        receipts: Vec<String>,
    ) -> Result<InstallOutcome, Stop> {
        j.apdus += s.client.apdus_sent() - base;
        let registration: Vec<RegisteredKey> =
            serde_json::from_str(&j.registration).unwrap_or_default();
        let detail = json!({
            "load_file": j.load_file,
            "instance": j.instance,
            "apdus": j.apdus,
            "blocks": j.blocks,
            "registration": registration,
            "receipts": receipts,
        });
        let rec = self
            .append(
                RecordContent {
                    outlet: self.config.id.clone(),
                    card: j.card.clone(),
                    application: j.application.clone(),
                    package_sha256: j.package_sha256.clone(),
                    result: result::OK.into(),
                    code: "ok".into(),
                    detail: detail.to_string(),
                },
                Some(&j.card),
            )
            .map_err(|e| module_failure("outlet.db", e))?;
        Ok(InstallOutcome {
            application: plan.app.row.name.clone(),
            card: j.card,
            instance: j.instance,
            apdus: j.apdus,
            blocks: j.blocks as usize,
            registration,
            record: rec.seq,
        })
    }

    /// Rolls an install back on the card (DELETE of the load file and its instance), drops
    /// the module's keys for it and revokes its certificates, records `rolled_back`; returns
    /// the cause. Interrupted, it keeps the journal flagged so the next contact rolls back.
    fn roll_back<C: CardChannel>(
        &self,
        s: &mut Session<'_, C>,
        mut j: JournalRow,
        base: u64,
        cause: InstallError,
    ) -> Stop {
        if j.rollback.is_empty() {
            j.rollback = cause.code().into();
        }
        if let Err(e) = self.save(&mut j) {
            return Stop::Interrupted(
                self.record_interrupted(&j, InstallError::Other(format!("outlet.db: {e}"))),
            );
        }
        let undone = (|| -> Result<(), Stop> {
            // A fresh channel: the one that failed may be out of step with the card.
            s.reopen()?;
            let reg = Registry::read(&mut s.client).map_err(classify)?;
            let load_file = Aid::from_str(&j.load_file).ok();
            let instance = Aid::from_str(&j.instance).ok();
            if let Some(lf) = load_file.filter(|a| reg.has_load_file(a)) {
                ops::delete(&mut s.client, &lf, true).map_err(classify)?;
            } else if let Some(i) = instance.filter(|a| reg.instance(a).is_some()) {
                ops::delete(&mut s.client, &i, false).map_err(classify)?;
            }
            Ok(())
        })();
        match undone {
            Ok(()) => {
                self.drop_registration(&j);
                j.apdus += s.client.apdus_sent() - base;
                let detail = json!({
                    "load_file": j.load_file,
                    "instance": j.instance,
                    "apdus": j.apdus,
                    "stage": j.stage,
                    "message": cause.to_string(),
                });
                let content = RecordContent {
                    outlet: self.config.id.clone(),
                    card: j.card.clone(),
                    application: j.application.clone(),
                    package_sha256: j.package_sha256.clone(),
                    result: result::ROLLED_BACK.into(),
                    code: cause.code().into(),
                    detail: detail.to_string(),
                };
                match self.append(content, Some(&j.card)) {
                    Ok(_) => Stop::Refused(cause),
                    Err(e) => Stop::Interrupted(InstallError::Other(format!("outlet.db: {e}"))),
                }
            }
            Err(Stop::Interrupted(e)) => {
                j.apdus += s.client.apdus_sent() - base;
                let _ = self.save(&mut j);
                Stop::Interrupted(self.record_interrupted(&j, e))
            }
            Err(Stop::Refused(e) | Stop::Before(e)) => {
                j.apdus += s.client.apdus_sent() - base;
                let _ = self.save(&mut j);
                let e = InstallError::Other(format!(
                    "the card refused to roll back the install of {}: {e}",
                    j.application
                ));
                Stop::Interrupted(self.record_interrupted(&j, e))
            }
        }
    }

    /// Deletes the module's keys of an install and revokes its certificates.
    fn drop_registration(&self, j: &JournalRow) {
        self.revoke_registration(&j.registration);
        let prefix = format!(
            "{}{}/{}/",
            labels::REGISTRATION_PREFIX,
            j.card,
            j.application
        );
        for k in self.secrets.list(&prefix).unwrap_or_default() {
            let _ = self.secrets.delete(&k.label);
        }
    }

    /// Revokes (superseded) the certificates of a journal's registration list.
    fn revoke_registration(&self, registration: &str) {
        let keys: Vec<RegisteredKey> = serde_json::from_str(registration).unwrap_or_default();
        for pem in keys.iter().filter_map(|k| k.certificate_pem.as_deref()) {
            let serial = pem_der(pem)
                .and_then(|der| pki::Certificate::from_der(&der).ok())
                .and_then(|c| c.serial());
            if let Some(serial) = serial {
                let _ = self.ca.revoke(&serial, pki::RevocationReason::Superseded);
            }
        }
    }

    /// Writes the journal row with a fresh MAC (computed in the token).
    fn save(&self, j: &mut JournalRow) -> Result<(), crate::Error> {
        j.updated_ms = now_ms();
        j.mac = self.mac(&j.mac_input())?.to_vec();
        self.db.put_journal(j)
    }

    fn append(
        &self,
        content: RecordContent,
        end_journal: Option<&str>,
    ) -> Result<crate::Record, crate::Error> {
        self.db
            .append_record(now_ms(), content, end_journal, &|data| self.mac(data))
    }

    /// Records an attempt that changed nothing on the card; returns its error.
    fn record_failure(&self, about: &About, e: InstallError) -> InstallError {
        let content = RecordContent {
            outlet: self.config.id.clone(),
            card: about.card.clone(),
            application: about.application.clone(),
            package_sha256: about.package_sha256.clone(),
            result: result::FAILED.into(),
            code: e.code().into(),
            detail: json!({ "message": e.to_string() }).to_string(),
        };
        if let Err(db) = self.append(content, None) {
            return InstallError::Other(format!("{e} (and its record failed: {db})"));
        }
        e
    }

    /// Records an interrupted attempt (the journal stays); returns its error.
    fn record_interrupted(&self, j: &JournalRow, e: InstallError) -> InstallError {
        let content = RecordContent {
            outlet: self.config.id.clone(),
            card: j.card.clone(),
            application: j.application.clone(),
            package_sha256: j.package_sha256.clone(),
            result: result::INTERRUPTED.into(),
            code: e.code().into(),
            detail: json!({ "stage": j.stage, "message": e.to_string() }).to_string(),
        };
        if let Err(db) = self.append(content, None) {
            return InstallError::Other(format!("{e} (and its record failed: {db})"));
        }
        e
    }
}

fn stop_error(s: Stop) -> InstallError {
    match s {
        Stop::Before(e) | Stop::Interrupted(e) | Stop::Refused(e) => e,
    }
}

/// Sends one INSTALL command of the plan and keeps its receipt when the package's tokens
/// went with it.
fn send_install<C: CardChannel>(
    s: &mut Session<'_, C>,
    plan: &Plan,
    op: Operation,
    install: &Install,
    object: &str,
    receipts: &mut Vec<String>,
) -> Result<(), Stop> {
    let cmd = install
        .to_command()
        .map_err(|e| Stop::Refused(InstallError::Other(e.to_string())))?;
    let answer = s.send_ok(op, &cmd, object)?;
    note_receipt(receipts, plan.tokens.is_some(), &answer);
    Ok(())
}

/// Keeps a Delegated Management receipt (an answer with data) when tokens were sent.
fn note_receipt(receipts: &mut Vec<String>, tokens: bool, answer: &[u8]) {
    if tokens && !answer.is_empty() && answer != [0x00] {
        receipts.push(apdu::hex(answer));
    }
}

/// The subject common name of a key's certificate: the recipe's template with `{card}`
/// (the card number's last 4 digits) and `{app}`, or `<app> card …<last 4>`.
fn subject_of(key: &package::RegistrationKey, card: &str, app: &str) -> String {
    let last4 = &card[card.len().saturating_sub(4)..];
    match &key.subject {
        Some(t) => t.replace("{card}", last4).replace("{app}", app),
        None => format!("{app} card {last4} {}", key.id),
    }
}

/// The DER inside a PEM certificate (RFC 7468).
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    pem_rfc7468::decode_vec(pem.as_bytes())
        .ok()
        .filter(|(label, _)| *label == "CERTIFICATE")
        .map(|(_, der)| der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::StatusWord;
    use proptest::prelude::*;

    fn kind(s: &Stop) -> (&'static str, &'static str) {
        match s {
            Stop::Before(e) => ("before", e.code()),
            Stop::Interrupted(e) => ("interrupted", e.code()),
            Stop::Refused(e) => ("refused", e.code()),
        }
    }

    proptest! {
        /// Whether an install keeps its journal (interrupted) or rolls back (refused), and
        /// the clerk's word, depend on the error's variant and status word only: any text.
        #[test]
        fn decided_by_variant_not_text(text in ".{0,40}", sw in any::<u16>()) {
            let op = Operation::Load;
            let cases: Vec<(ClientError, (&str, &str))> = vec![
                (ClientError::Transport(TransportError::Other(text.clone())), ("interrupted", "card_removed")),
                (ClientError::Transport(TransportError::CardRemoved), ("interrupted", "card_removed")),
                (ClientError::Exchange { op, detail: text.clone() }, ("interrupted", "card_removed")),
                (
                    ClientError::ResponseUnverified { op, source: scp::Error::MacMismatch },
                    ("interrupted", "card_removed"),
                ),
                (ClientError::refused(op, text.clone(), StatusWord(0x6A84)), ("refused", "card_full")),
                (ClientError::Invalid(text.clone()), ("refused", "error")),
                (ClientError::WrongKeys { hint: text.clone() }, ("refused", "error")),
            ];
            for (e, want) in cases {
                let shown = e.to_string();
                prop_assert_eq!(kind(&classify(e)), want, "{}", shown);
            }
            let e = ClientError::refused(op, text.clone(), StatusWord(sw));
            let want = if sw == 0x6A84 { "card_full" } else { "error" };
            prop_assert_eq!(kind(&classify(e)), ("refused", want));
            // Before anything changed: a missing card, a lost card, keys that do not open.
            prop_assert_eq!(kind(&before(ClientError::Transport(TransportError::NoCard(text.clone())))), ("before", "no_card"));
            prop_assert_eq!(kind(&before(ClientError::WrongKeys { hint: text.clone() })), ("before", "wrong_card"));
            prop_assert_eq!(kind(&before(ClientError::Transport(TransportError::Other(text)))), ("before", "card_removed"));
        }
    }

    #[test]
    fn subjects_and_roll_back_codes() {
        let key = |subject: Option<&str>| package::RegistrationKey {
            id: "sign".into(),
            kind: package::KeyKind::EcP256,
            generate: package::Generate::Card,
            slot: 1,
            subject: subject.map(String::from),
        };
        assert_eq!(
            subject_of(&key(Some("{app} / {card}")), "4111111111111111", "wallet"),
            "wallet / 1111"
        );
        assert_eq!(
            subject_of(&key(None), "12", "wallet"),
            "wallet card 12 sign"
        );
        for e in [
            InstallError::CardFull,
            InstallError::AlreadyPresent("w".into()),
            InstallError::PackageTampered("w".into()),
            InstallError::UnknownApplication("w".into()),
        ] {
            assert_eq!(error_of(e.code(), "w").code(), e.code());
        }
        assert_eq!(error_of("card_removed", "w").code(), "error");
    }
}
