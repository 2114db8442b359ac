//! Issuance workflows of CN102056165A as resumable, idempotent jobs over any
//! [`CardChannel`]: **write**, **rewrite**, **clear**, **application load / delete**.
//!
//! # How a job runs
//!
//! [`Issuer::submit`] checks the request against the database (card, category, tenant,
//! key versions; nothing changes on error) and records a job with its planned steps.
//! [`Issuer::run`] claims the job with a lease and, on the card:
//! ([`Issuer::execute`] and the `write`, `rewrite`, … built on it, which run the job at once
//! on the card they are given, check the request the same way but record the job with the
//! run's first record, see step 3.)
//!
//! 1. **Connects**: warm reset, SELECT of the ISD and, without authentication, GET DATA
//!    of the CPLC (`9F7F`, chip identity), the CIN (`45`, the card number Cardwright
//!    writes) and the Key Information Template (`E0`, which key version numbers exist)
//!    (GP 2.3.1 §11.3). A card whose chip or card number is not the expected one is a
//!    [`Error::WrongCard`].
//! 2. **Opens a secure channel** with the key set the database says is on the card; when a
//!    PUT KEY step was started but not recorded as done, the new keys are tried first, then
//!    the old ones. Candidates whose KVN the card does not list are skipped. Each attempt
//!    stops before EXTERNAL AUTHENTICATE when the card cryptogram does not verify
//!    (`gpclient`), so a wrong candidate costs none of the card's authentication attempts;
//!    a refused EXTERNAL AUTHENTICATE is never retried.
//! 3. **Runs the steps** not yet done. Each step that **changes the card** (STORE DATA,
//!    PUT KEY, LOAD/INSTALL, DELETE) is recorded as `started` before its first APDU, in one
//!    statement and one committed transaction with the steps completed before it (`done`,
//!    with what each did and its effect on the card row); the steps that only read or
//!    prove (check, prove/verify keys, finish) start without a commit and are recorded with
//!    the next one, or at the end. The quick steps that change the card (STORE DATA, PUT
//!    KEY) that follow one another (with only such reading steps between) are recorded
//!    `started` together, before the first of them; an application's load or delete gets a
//!    record of its own. A crash therefore loses at most steps that are recorded
//!    `started`, which the resume does again; and before anything changes the card, what
//!    the run learnt about it (chip identity, factory KDD) and the intent to change it are
//!    in the database, so a PUT KEY whose answer was lost is known to have been sent. A job
//!    run at once by the worker that submits it ([`Issuer::execute`]) is written **with
//!    that first record** — the job claimed by the worker, its steps as the record leaves
//!    them, the card's row — in one transaction (one statement on PostgreSQL), so a write
//!    commits twice (the job with its first record, and the end) instead of three times; a
//!    run stopped before it (card absent, wrong card, a crash while connecting) changed
//!    nothing on the card: a failure is recorded with the job (`pending` if resumable, as
//!    for a submitted job), a crash leaves no job and the write is made again. A step found
//!    `started` is done
//!    again after checking the card, since every step is idempotent (STORE DATA overwrites;
//!    PUT KEY is skipped when the new keys already open; an application already in the
//!    registry is not loaded again; DELETE of something absent counts as done).
//!
//! A broken exchange (card pulled out, reader gone) or an answer that does not verify
//! (R-MAC, PUT KEY confirmation) leaves the job `pending`: run it again with the card back
//! and it finishes. A crash leaves it `running` until its lease expires. A refusal of the
//! card fails the job; the card row then says exactly what is on the card (`partial` if
//! anything changed; an application whose INSTALL is refused has its load undone), and
//! **clear** brings such a card back. A resumed job that meets another card (chip
//! identity, card number or KDD not the recorded ones) stays pending, untouched.
//!
//! The audit log gets an entry when a job is submitted, each time it is claimed, and when
//! it ends (`ok`, `failed` or `interrupted`), the last one listing the steps of the run
//! with what each did (KVNs and the KCVs of the keys sent, KDD, applications).
//!
//! # Choices
//!
//! * **Key diversification data.** The card's keys are derived from the base key and the
//!   card number (`kms::KeyStore::derive_card_keys`), that is from
//!   `KDD = kms::kdd_for_card_number(n)`. **Write** stores that KDD in the ISD with
//!   STORE DATA `CF` (the virtual card accepts it; GP 2.3.1 §11.11 leaves ISD data to the
//!   issuer), so that a host holding only the base key opens the card with EMV CPG or KDF3
//!   diversification, like every GP tool. A card that refuses `CF` must already report
//!   that KDD, else the write stops with [`Error::KddNotSettable`] before any change.
//!   The card's original KDD is recorded and **clear** puts it back.
//! * **Key version numbers.** Base key version `v` goes on the card as KVN
//!   [`kvn_for_version`]`(v, initial_kvn)`; PUT KEY replaces the key set in place
//!   (P1 = the old KVN, GP 2.3.1 §11.8.2.2), so a card carries exactly one ISD key set.
//! * **Personalisation.** The card number goes to the ISD as the Card Image Number (`45`,
//!   GP 2.3.1 §H.4), packed BCD like the KDD, followed by the category's data objects.
//!   **Clear** overwrites them with empty values (STORE DATA cannot delete an object).
//! * **Initial keys** are per category: the public GP test key, or a transport key in the
//!   key store diversified with the card's factory KDD. Clear puts them back with the
//!   initial KVN.

mod exec;
pub(crate) use exec::chip_id;
mod plan;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gp::aid::Aid;
use scp::SecurityLevel;
use serde_json::json;
use transport::{CardChannel, TraceSink, TransportError};

use crate::audit::{append_in, NewEntry};
use crate::db::Conn;
use crate::error::{Error, Result};
use crate::model::{
    AppSpec, Card, CardState, Job, JobKind, JobState, KeyVersionStatus, Step, StepState,
};
pub(crate) use crate::store::jobs::end_in as end_job_in;
use crate::store::jobs::{claim_in, job_params_in, open_job_for_card_in, Claim, Lease};
use crate::store::records::{
    blank_card_insert, card_apps_in, card_in, category_apps_in, category_in, key_version_in,
    package_owner_in, write_reads_in, WriteReads,
};
use crate::store::NewJob;
use crate::Store;

pub use plan::kvn_for_version;
use plan::{plan, AppParam, AppRef, Params, StepKind};

/// Who asks: a tenant and one of its users (or a system component).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Tenant id.
    pub tenant: String,
    /// User or component name.
    pub user: String,
}

impl Actor {
    /// An actor.
    pub fn new(tenant: &str, user: &str) -> Actor {
        Actor {
            tenant: tenant.into(),
            user: user.into(),
        }
    }
    /// `tenant/user`, as recorded in the audit log.
    pub fn name(&self) -> String {
        format!("{}/{}", self.tenant, self.user)
    }
}

/// A workflow request (CN102056165A: each carries the card number and category).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Write a blank card: derived keys, personalisation, and the category's applications
    /// when `install_apps`.
    Write {
        /// Card number (1-20 digits).
        card_number: String,
        /// Its category.
        category: String,
        /// Install the category's applications too.
        install_apps: bool,
        /// Card-specific personalisation: BER-TLV objects for the ISD (not `CF`, not `45`),
        /// written after the category's; empty for none. `clear` erases them.
        perso: Vec<u8>,
    },
    /// Replace the card's keys with those of another base key version (default: the
    /// category's current one).
    Rewrite {
        /// Card number.
        card_number: String,
        /// Its category.
        category: String,
        /// Target base key version.
        to_version: Option<u32>,
    },
    /// Clear a card: applications deleted, personalisation erased, initial keys back.
    Clear {
        /// Card number.
        card_number: String,
        /// Its category.
        category: String,
    },
    /// Load and install an application on a written card.
    LoadApp {
        /// Card number.
        card_number: String,
        /// The application (its package must be registered).
        app: AppSpec,
    },
    /// Delete an application the platform installed.
    DeleteApp {
        /// Card number.
        card_number: String,
        /// Instance AID.
        instance: Aid,
    },
}

impl Request {
    fn card_number(&self) -> &str {
        match self {
            Request::Write { card_number, .. }
            | Request::Rewrite { card_number, .. }
            | Request::Clear { card_number, .. }
            | Request::LoadApp { card_number, .. }
            | Request::DeleteApp { card_number, .. } => card_number,
        }
    }
    fn kind(&self) -> JobKind {
        match self {
            Request::Write { .. } => JobKind::Write,
            Request::Rewrite { .. } => JobKind::Rewrite,
            Request::Clear { .. } => JobKind::Clear,
            Request::LoadApp { .. } => JobKind::AppLoad,
            Request::DeleteApp { .. } => JobKind::AppDelete,
        }
    }
}

/// How jobs run.
#[derive(Clone)]
pub struct IssuerConfig {
    /// Security level of the secure channels (default C-MAC + C-DECRYPTION + R-MAC, `13`:
    /// commands authenticated and confidential, and a forged or garbled success answer is
    /// detected instead of being recorded as done).
    pub level: SecurityLevel,
    /// How long a claimed job stays reserved to its worker (default 5 minutes). After a
    /// crash, another run can take the job over once the lease has expired.
    pub lease: Duration,
    /// Where to write an APDU trace (`None`: no trace).
    pub trace: Option<TraceSink>,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        IssuerConfig {
            level: SecurityLevel::MAC_ENC_RMAC,
            lease: Duration::from_secs(300),
            trace: None,
        }
    }
}

impl fmt::Debug for IssuerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerConfig")
            .field("level", &self.level)
            .field("lease", &self.lease)
            .field("trace", &self.trace.is_some())
            .finish()
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The job as recorded at the end.
    pub job: Job,
    /// The card as recorded at the end.
    pub card: Card,
    /// C-APDUs sent in this run.
    pub apdus: u64,
    /// Where the time went.
    pub timing: Timing,
}

/// Where the time of a run went (wall clock, this thread).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// The whole call.
    pub total: Duration,
    /// Inside the card channel (the card, or the reader and the card).
    pub card: Duration,
    /// Database transactions (submit, claim, step records, audit).
    pub database: Duration,
    /// Key derivation in the key store (and its KCV check).
    pub keys: Duration,
}

impl Timing {
    /// The rest: host-side secure-channel cryptography, encoding, bookkeeping.
    pub fn host(&self) -> Duration {
        self.total
            .saturating_sub(self.card)
            .saturating_sub(self.database)
            .saturating_sub(self.keys)
    }
}

/// Runs the issuance workflows: a store, a key store, and settings.
pub struct Issuer {
    store: Store,
    keys: Arc<dyn kms::KeyStore>,
    config: IssuerConfig,
    /// Base key versions (category, version) whose KCV in the key store matched the
    /// database's, with their key store category.
    checked_versions: Mutex<HashMap<(String, u32), String>>,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("store", &self.store)
            .field("keys", &self.keys)
            .field("config", &self.config)
            .finish()
    }
}

/// What [`Issuer::validate`] found.
struct Validated {
    params: Params,
    blank: bool,
    category: crate::model::Category,
    card: Card,
    /// A card not recorded yet: the row to insert with the job.
    insert_card: Option<crate::db::Write>,
}

/// Records read while submitting, handed to the run so it need not read them again.
pub(crate) struct Prepared {
    pub category: crate::model::Category,
    pub card: Card,
    pub steps: Vec<crate::model::Step>,
}

/// The job as recorded by its submission (`id`), claimed or not.
fn job_record(job: NewJob, id: i64, claimed: bool) -> Job {
    let now = crate::model::now_ms();
    Job {
        id,
        tenant: job.tenant,
        actor: job.actor,
        kind: job.kind,
        card_number: job.card_number,
        params: job.params,
        state: if claimed {
            JobState::Running
        } else {
            JobState::Pending
        },
        attempts: u32::from(claimed),
        lease_until_ms: None,
        error: None,
        created_ms: now,
        updated_ms: now,
    }
}

/// A `&mut` channel as a channel (so callers keep theirs), timing the exchanges.
struct ByRef<'a, C: ?Sized> {
    chan: &'a mut C,
    spent: Duration,
}

impl<C: CardChannel + ?Sized> CardChannel for ByRef<'_, C> {
    fn transmit_raw(&mut self, capdu: &[u8]) -> std::result::Result<Vec<u8>, TransportError> {
        let t = Instant::now();
        let r = self.chan.transmit_raw(capdu);
        self.spent += t.elapsed();
        r
    }
    fn atr(&self) -> Vec<u8> {
        self.chan.atr()
    }
    fn reset(&mut self) -> std::result::Result<(), TransportError> {
        let t = Instant::now();
        let r = self.chan.reset();
        self.spent += t.elapsed();
        r
    }
    fn name(&self) -> String {
        self.chan.name()
    }
}

/// A lease owner: which process on which host (what an operator needs to find it), and a
/// random token that tells workers of one process apart.
fn random_token() -> String {
    let mut b = [0u8; 8];
    // Only used to tell workers apart; a failing RNG falls back to the time.
    if getrandom::fill(&mut b).is_err() {
        b.copy_from_slice(&crate::model::now_ms().to_be_bytes());
    }
    // The host, read once per process (not at every job).
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let host = HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| std::env::var("COMPUTERNAME").ok())
            .map(|h| h.trim().chars().take(64).collect::<String>())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "an unknown host".into())
    });
    format!("pid {} on {host} ({})", std::process::id(), apdu::hex(&b))
}

/// How to resume a card's open job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumeOptions {
    /// Take the job over even if another worker's lease has not expired, for an operator
    /// who knows that worker is dead (a crash). The take-over is audited with the lease it
    /// replaced; a worker that was in fact alive loses its lease and stops at its next step
    /// record, leaving the card to this run (every step is idempotent).
    pub take_over: bool,
}

impl Issuer {
    /// An issuer over a store and a key store.
    pub fn new(store: Store, keys: Arc<dyn kms::KeyStore>, config: IssuerConfig) -> Issuer {
        Issuer {
            store,
            keys,
            config,
            checked_versions: Mutex::new(HashMap::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Checks a request and records it as a pending job; returns the job id. Nothing is
    /// recorded when the request is refused (except that a write of an unknown card number
    /// registers the card as blank together with the job).
    pub fn submit(&self, actor: &Actor, req: &Request) -> Result<i64> {
        Ok(self.submit_as(actor, req, None)?.0.id)
    }

    /// Whether `actor` may submit `req` for the card as recorded now, without touching the
    /// card (so that a caller can refuse before it even finds a reader): the card's tenant
    /// may; for an application load or delete, so may an application provider (tenant role
    /// AP) that owns the package. A
    /// card not yet recorded is left to [`Issuer::submit`]. Refusals are audited.
    pub fn authorise_request(&self, actor: &Actor, req: &Request) -> Result<()> {
        let number = req.card_number();
        let Some(card) = self.store.card(number)? else {
            return Ok(());
        };
        let owner = self
            .store
            .category(&card.category)?
            .ok_or_else(|| Error::UnknownCategory(card.category.clone()))?
            .tenant;
        let package_owner = match req {
            _ if actor.tenant == owner => return Ok(()),
            Request::LoadApp { app, .. } => self.store.package(&app.package)?.map(|p| p.tenant),
            Request::DeleteApp { instance, .. } => {
                match self
                    .store
                    .card_apps(number)?
                    .into_iter()
                    .find(|a| a.instance == *instance)
                {
                    Some(a) => self.store.package(&a.package)?.map(|p| p.tenant),
                    None => None,
                }
            }
            _ => None,
        };
        // An application provider may manage its own application on the issuer's cards; a
        // card issuer never acts on another issuer's cards.
        let provider = self
            .store
            .tenant(&actor.tenant)?
            .is_some_and(|t| t.role == crate::model::Role::ApplicationProvider);
        if provider && package_owner.as_deref() == Some(actor.tenant.as_str()) {
            return Ok(());
        }
        let e = Error::Forbidden {
            tenant: actor.tenant.clone(),
            action: format!("{} a card of another tenant", req.kind()),
        };
        Err(self.audit_refusal(actor, &format!("job.{}", req.kind()), number, e))
    }

    /// Whether `actor` may resume the card's open job (see [`Issuer::resume`]), without
    /// touching the card. Refusals are audited.
    pub fn authorise_resume(&self, actor: &Actor, card_number: &str) -> Result<()> {
        let open = self.store.open_job_for_card(card_number)?;
        let job_tenant = open.as_ref().map(|j| j.tenant.as_str());
        self.card_of_tenant(actor, card_number, "job.resume", job_tenant)
            .map(|_| ())
    }

    /// The card as recorded and its jobs (see [`card_status`]).
    pub fn card_status(&self, actor: &Actor, card_number: &str) -> Result<(Card, Vec<Job>)> {
        card_status(&self.store, actor, card_number)
    }

    fn card_of_tenant(
        &self,
        actor: &Actor,
        card_number: &str,
        action: &str,
        job_tenant: Option<&str>,
    ) -> Result<Card> {
        card_of_tenant(&self.store, actor, card_number, action, job_tenant)
    }

    fn audit_refusal(&self, actor: &Actor, action: &str, card_number: &str, e: Error) -> Error {
        audit_refusal(&self.store, actor, action, card_number, e)
    }

    /// [`Issuer::submit`], optionally claiming the new job for this worker at once.
    fn submit_as(
        &self,
        actor: &Actor,
        req: &Request,
        owner: Option<&str>,
    ) -> Result<(Job, Prepared)> {
        self.refusals_audited(actor, req, || {
            self.store.tx(|c| {
                let (job, prepared, insert_card) = self.prepare_in(c, actor, req)?;
                if let Some(row) = insert_card {
                    c.execute_all_later(&[row])?;
                }
                let claim = owner.map(|o| (o, self.config.lease));
                let id = crate::store::jobs::create_job_in(c, &job, claim, &[])?;
                Ok((job_record(job, id, owner.is_some()), prepared))
            })
        })
    }

    /// Runs `submit` (which checks `req` for `actor`), after the tenant check of requests
    /// other than writes; a refusal is audited.
    fn refusals_audited<T>(
        &self,
        actor: &Actor,
        req: &Request,
        submit: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        // The tenant first: nothing about another tenant's card (not even a running job)
        // is told to the actor. A write checks it inside the submission (with the reads
        // it needs anyway, one round trip on PostgreSQL).
        if !matches!(req, Request::Write { .. }) {
            self.authorise_request(actor, req)?;
        }
        match submit() {
            Err(e @ Error::Forbidden { .. }) => {
                Err(self.audit_refusal(actor, &format!("job.{}", req.kind()), req.card_number(), e))
            }
            other => other,
        }
    }

    /// Reads and checks what a submission of `req` needs: the job to insert, what the run
    /// needs of the records, and the row of a card not recorded yet. Writes nothing.
    fn prepare_in(
        &self,
        c: &mut Conn,
        actor: &Actor,
        req: &Request,
    ) -> Result<(NewJob, Prepared, Option<crate::db::Write>)> {
        let number = req.card_number();
        kms::kdd_for_card_number(number)
            .map_err(|e| Error::Invalid(format!("card number: {e}")))?;
        let (open_job, reads) = match req {
            Request::Write { category, .. } => {
                let mut reads = write_reads_in(c, number, category)?;
                self.authorise_write(c, actor, &reads)?;
                (reads.open_job.take(), Some(reads))
            }
            _ => (open_job_for_card_in(c, number)?, None),
        };
        if let Some(j) = open_job {
            return Err(Error::CardBusy(j.id));
        }
        let Validated {
            params,
            blank,
            category,
            card,
            insert_card,
        } = self.validate(c, actor, req, reads)?;
        let steps: Vec<String> = plan(req.kind(), &params, blank)
            .iter()
            .map(StepKind::name)
            .collect();
        let step_records = steps
            .iter()
            .zip(0u32..)
            .map(|(name, seq)| crate::model::Step {
                seq,
                name: name.clone(),
                state: StepState::Pending,
                attempts: 0,
                detail: None,
                started_ms: None,
                finished_ms: None,
            })
            .collect();
        let job = NewJob {
            tenant: actor.tenant.clone(),
            actor: actor.name(),
            kind: req.kind(),
            card_number: number.into(),
            params: params.to_json(),
            steps,
        };
        let prepared = Prepared {
            category,
            card,
            steps: step_records,
        };
        Ok((job, prepared, insert_card))
    }

    fn authorise(actor: &Actor, owner: &str, action: &str) -> Result<()> {
        if actor.tenant == owner {
            Ok(())
        } else {
            Err(Error::Forbidden {
                tenant: actor.tenant.clone(),
                action: action.into(),
            })
        }
    }

    /// [`Issuer::authorise_request`] for a write, on what [`write_reads_in`] read: a card
    /// already recorded is written only by its category's tenant.
    fn authorise_write(&self, c: &mut Conn, actor: &Actor, reads: &WriteReads) -> Result<()> {
        let Some(card) = &reads.card else {
            return Ok(());
        };
        let owner = match &reads.category {
            Some(cat) if cat.id == card.category => cat.tenant.clone(),
            _ => {
                category_in(c, &card.category)?
                    .ok_or_else(|| Error::UnknownCategory(card.category.clone()))?
                    .tenant
            }
        };
        Self::authorise(actor, &owner, "write a card of another tenant")
    }

    /// The request's parameters, and whether the card is blank; refuses what cannot be done.
    /// `reads`: for a write, what [`write_reads_in`] read in this transaction.
    fn validate(
        &self,
        c: &mut Conn,
        actor: &Actor,
        req: &Request,
        mut reads: Option<WriteReads>,
    ) -> Result<Validated> {
        let number = req.card_number();
        let existing = match &mut reads {
            Some(r) => r.card.take(),
            None => card_in(c, number)?,
        };
        let read_category = reads.as_mut().and_then(|r| r.category.take());
        let category_of = |c: &mut Conn, id: &str| -> Result<crate::model::Category> {
            match &read_category {
                Some(cat) if cat.id == id => Ok(cat.clone()),
                _ => category_in(c, id)?.ok_or_else(|| Error::UnknownCategory(id.into())),
            }
        };
        // A card of another tenant is refused before anything about it is told (its
        // category, state or applications); application load and delete are decided below
        // (the owner of a package may manage its application on the issuer's cards).
        if let Some(card) = &existing {
            if !matches!(req, Request::LoadApp { .. } | Request::DeleteApp { .. }) {
                let owner = category_of(c, &card.category)?.tenant;
                Self::authorise(actor, &owner, "act on a card of another tenant")?;
            }
        }
        let check_category = |card: &Card, requested: &str| -> Result<()> {
            if card.category == requested {
                Ok(())
            } else {
                Err(Error::WrongCategory {
                    registered: card.category.clone(),
                    requested: requested.into(),
                })
            }
        };
        match req {
            Request::Write {
                category,
                install_apps,
                perso,
                ..
            } => {
                for o in apdu::tlv::parse_all(perso).map_err(|e| {
                    Error::Invalid(format!("card personalisation is not BER-TLV: {e}"))
                })? {
                    let t = o.tag.value();
                    if t == 0xCF || t == 0x45 {
                        return Err(Error::Invalid(format!(
                            "card personalisation: tag {t:02X} is written by the workflow itself"
                        )));
                    }
                }
                let cat = category_of(c, category)?;
                Self::authorise(actor, &cat.tenant, "write cards of this category")?;
                if let Some(card) = &existing {
                    check_category(card, category)?;
                    if card.state != CardState::Blank {
                        return Err(Error::WrongState {
                            state: card.state.to_string(),
                            need: "write needs a blank card (rewrite a written card; clear a partial one)",
                        });
                    }
                }
                let v = cat.current_key_version.ok_or_else(|| {
                    Error::Invalid(format!(
                        "category '{category}' has no current base key version"
                    ))
                })?;
                let read_version = reads.as_mut().and_then(|r| r.current_version.take());
                self.active_version(c, category, v, read_version)?;
                let apps = match reads {
                    Some(r) => r.apps,
                    None if *install_apps => category_apps_in(c, category)?,
                    None => Vec::new(),
                };
                let install = if *install_apps {
                    apps.iter().map(AppParam::from).collect()
                } else {
                    Vec::new()
                };
                let (card, insert_card) = match existing {
                    Some(card) => (card, None),
                    None => {
                        let (card, sql, values) = blank_card_insert(number, category);
                        (card, Some((sql, values)))
                    }
                };
                Ok(Validated {
                    insert_card,
                    params: Params {
                        category: category.clone(),
                        from_version: None,
                        to_version: Some(v),
                        install,
                        delete: Vec::new(),
                        perso: apdu::hex(perso),
                        ..Default::default()
                    },
                    blank: true,
                    category: cat,
                    card,
                })
            }
            Request::Rewrite {
                category,
                to_version,
                ..
            } => {
                let card = existing.ok_or(Error::UnknownCard)?;
                check_category(&card, category)?;
                let cat = category_of(c, category)?;
                Self::authorise(actor, &cat.tenant, "rewrite cards of this category")?;
                if card.state != CardState::Written {
                    return Err(Error::WrongState {
                        state: card.state.to_string(),
                        need: "rewrite needs a written card",
                    });
                }
                let to = to_version.or(cat.current_key_version).ok_or_else(|| {
                    Error::Invalid(format!(
                        "category '{category}' has no current base key version"
                    ))
                })?;
                self.active_version(c, category, to, None)?;
                if card.key_version == Some(to) {
                    return Err(Error::Invalid(format!(
                        "the card already carries base key version {to}"
                    )));
                }
                Ok(Validated {
                    insert_card: None,
                    params: Params {
                        category: category.clone(),
                        from_version: card.key_version,
                        to_version: Some(to),
                        install: Vec::new(),
                        delete: Vec::new(),
                        ..Default::default()
                    },
                    blank: false,
                    category: cat,
                    card,
                })
            }
            Request::Clear { category, .. } => {
                let card = existing.ok_or(Error::UnknownCard)?;
                check_category(&card, category)?;
                let cat = category_of(c, category)?;
                Self::authorise(actor, &cat.tenant, "clear cards of this category")?;
                let blank = card.state == CardState::Blank;
                let delete = card_apps_in(c, number)?
                    .iter()
                    .map(|a| AppRef {
                        instance: a.instance.to_hex(),
                        package: a.package.to_hex(),
                    })
                    .collect();
                // Card-specific personalisation written by earlier writes of this card.
                let mut erase_tags = Vec::new();
                for written in job_params_in(c, number, JobKind::Write)? {
                    let p = Params::parse(&written)?;
                    let bytes = apdu::parse_hex(&p.perso).unwrap_or_default();
                    for o in apdu::tlv::parse_all(&bytes).unwrap_or_default() {
                        if !erase_tags.contains(&o.tag.value()) {
                            erase_tags.push(o.tag.value());
                        }
                    }
                }
                Ok(Validated {
                    insert_card: None,
                    params: Params {
                        category: category.clone(),
                        from_version: card.key_version,
                        to_version: None,
                        install: Vec::new(),
                        delete,
                        erase_tags,
                        ..Default::default()
                    },
                    blank,
                    category: cat,
                    card,
                })
            }
            Request::LoadApp { app, .. } => {
                let card = existing.ok_or(Error::UnknownCard)?;
                let cat = category_of(c, &card.category)?;
                let owner = package_owner_in(c, &app.package)?.ok_or_else(|| {
                    Error::Invalid(format!("package {} is not registered", app.package))
                })?;
                if actor.tenant != cat.tenant {
                    Self::authorise(actor, &owner, "install another tenant's package")?;
                }
                if card.state != CardState::Written {
                    return Err(Error::WrongState {
                        state: card.state.to_string(),
                        need: "applications go on written cards",
                    });
                }
                if app.params.len() > 0x7F {
                    return Err(Error::Invalid("install parameters over 127 bytes".into()));
                }
                if card_apps_in(c, number)?
                    .iter()
                    .any(|a| a.instance == app.instance)
                {
                    return Err(Error::Invalid(format!(
                        "application {} is already on the card",
                        app.instance
                    )));
                }
                Ok(Validated {
                    insert_card: None,
                    params: Params {
                        category: card.category.clone(),
                        from_version: card.key_version,
                        to_version: card.key_version,
                        install: vec![AppParam::from(app)],
                        delete: Vec::new(),
                        ..Default::default()
                    },
                    blank: false,
                    category: cat,
                    card,
                })
            }
            Request::DeleteApp { instance, .. } => {
                let card = existing.ok_or(Error::UnknownCard)?;
                let cat = category_of(c, &card.category)?;
                let app = card_apps_in(c, number)?
                    .into_iter()
                    .find(|a| a.instance == *instance)
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "application {instance} was not installed by the platform"
                        ))
                    })?;
                if actor.tenant != cat.tenant {
                    let owner = package_owner_in(c, &app.package)?.unwrap_or_default();
                    Self::authorise(actor, &owner, "delete another tenant's application")?;
                }
                if card.state != CardState::Written {
                    return Err(Error::WrongState {
                        state: card.state.to_string(),
                        need: "applications are managed on written cards",
                    });
                }
                Ok(Validated {
                    insert_card: None,
                    params: Params {
                        category: card.category.clone(),
                        from_version: card.key_version,
                        to_version: card.key_version,
                        install: Vec::new(),
                        delete: vec![AppRef {
                            instance: app.instance.to_hex(),
                            package: app.package.to_hex(),
                        }],
                        ..Default::default()
                    },
                    blank: false,
                    category: cat,
                    card,
                })
            }
        }
    }

    /// `read`: the registration as read already in this transaction, if any (used when it
    /// is version `v`).
    fn active_version(
        &self,
        c: &mut Conn,
        category: &str,
        v: u32,
        read: Option<crate::model::BaseKeyVersion>,
    ) -> Result<()> {
        let read = read.filter(|k| k.category == category && k.version == v);
        let kv = match read {
            Some(k) => Some(k),
            None => key_version_in(c, category, v)?,
        };
        let kv = kv.ok_or_else(|| {
            Error::Invalid(format!(
                "base key version {v} of '{category}' is not registered"
            ))
        })?;
        if kv.status != KeyVersionStatus::Active {
            return Err(Error::Invalid(format!(
                "base key version {v} of '{category}' is retired"
            )));
        }
        Ok(())
    }

    /// Checks a request and runs it on the card in `chan`; the job is recorded with the
    /// run's first record (see [the module documentation](self#how-a-job-runs)), claimed
    /// by this worker. A request refused is refused before the card is touched.
    pub fn execute<C: CardChannel + ?Sized>(
        &self,
        actor: &Actor,
        req: &Request,
        chan: &mut C,
    ) -> Result<Outcome> {
        // Checked now, recorded with the run's first record (see `exec::Unsubmitted`).
        let start = Instant::now();
        let (job, prepared, insert_card) = self.refusals_audited(actor, req, || {
            self.store.with_conn(|c| self.prepare_in(c, actor, req))
        })?;
        let lease = Lease {
            job: 0,
            owner: random_token(),
            duration: self.config.lease,
        };
        let unsubmitted = exec::Unsubmitted {
            job,
            insert_card,
            id: self.store.reserve_job_id()?,
        };
        let record = job_record(unsubmitted.job.clone(), 0, true);
        self.run_claimed(
            record,
            Some(prepared),
            lease,
            chan,
            start,
            Some(unsubmitted),
        )
    }

    /// Write card (see [`Request::Write`]).
    pub fn write<C: CardChannel + ?Sized>(
        &self,
        actor: &Actor,
        card_number: &str,
        category: &str,
        chan: &mut C,
    ) -> Result<Outcome> {
        self.execute(
            actor,
            &Request::Write {
                card_number: card_number.into(),
                category: category.into(),
                install_apps: true,
                perso: Vec::new(),
            },
            chan,
        )
    }

    /// Rewrite card with the category's current base key version.
    pub fn rewrite<C: CardChannel + ?Sized>(
        &self,
        actor: &Actor,
        card_number: &str,
        category: &str,
        chan: &mut C,
    ) -> Result<Outcome> {
        self.execute(
            actor,
            &Request::Rewrite {
                card_number: card_number.into(),
                category: category.into(),
                to_version: None,
            },
            chan,
        )
    }

    /// Clear card.
    pub fn clear<C: CardChannel + ?Sized>(
        &self,
        actor: &Actor,
        card_number: &str,
        category: &str,
        chan: &mut C,
    ) -> Result<Outcome> {
        self.execute(
            actor,
            &Request::Clear {
                card_number: card_number.into(),
                category: category.into(),
            },
            chan,
        )
    }

    /// Runs the card's open job again (after an interruption or a crash), for `actor`: of the
    /// card's tenant, or of the tenant that submitted the job ([`Error::Forbidden`], audited,
    /// otherwise). The audit log records `actor` as the one who resumed it.
    pub fn resume<C: CardChannel + ?Sized>(
        &self,
        actor: &Actor,
        card_number: &str,
        chan: &mut C,
    ) -> Result<Outcome> {
        self.resume_with(actor, card_number, &ResumeOptions::default(), chan)
    }

    /// [`Issuer::resume`] with options: with [`ResumeOptions::take_over`], a job whose
    /// lease has not expired is taken over, audited as done by `actor`.
    pub fn resume_with<C: CardChannel + ?Sized>(
        &self,
        actor: &Actor,
        card_number: &str,
        options: &ResumeOptions,
        chan: &mut C,
    ) -> Result<Outcome> {
        let claimed = self.claim_open_job(actor, card_number, options)?;
        self.run_claimed_job(claimed, chan)
    }

    /// Runs (or resumes) a job on the card in `chan`, for `actor` (as for
    /// [`Issuer::resume`]: the card's tenant or the job's).
    pub fn run<C: CardChannel + ?Sized>(
        &self,
        actor: &Actor,
        job_id: i64,
        chan: &mut C,
    ) -> Result<Outcome> {
        let job = self.store.job(job_id)?.ok_or(Error::UnknownJob(job_id))?;
        self.card_of_tenant(actor, &job.card_number, "job.resume", Some(&job.tenant))?;
        self.run_as(actor, job_id, false, chan)
    }

    /// Claims the job (with `take_over`, even under another worker's unexpired lease) and
    /// runs it once `actor` is known to be allowed to.
    fn run_as<C: CardChannel + ?Sized>(
        &self,
        actor: &Actor,
        job_id: i64,
        take_over: bool,
        chan: &mut C,
    ) -> Result<Outcome> {
        let start = Instant::now();
        let (job, lease) = self.claim_as(actor, job_id, take_over)?;
        self.run_claimed(job, None, lease, chan, start, None)
    }

    /// Runs a job this worker holds.
    fn run_claimed<C: CardChannel + ?Sized>(
        &self,
        job: Job,
        prepared: Option<Prepared>,
        lease: Lease,
        chan: &mut C,
        start: Instant,
        unsubmitted: Option<exec::Unsubmitted>,
    ) -> Result<Outcome> {
        let claimed = start.elapsed();
        let chan = ByRef {
            chan,
            spent: Duration::ZERO,
        };
        let mut run = exec::Run::new(self, job, prepared, lease, chan, unsubmitted)?;
        let result = run.drive();
        let apdus = run.apdus();
        match result {
            Ok(()) => {
                let (job, card) = run.final_records();
                let mut timing = run.timing();
                timing.database += claimed;
                timing.total = start.elapsed();
                Ok(Outcome {
                    job,
                    card,
                    apdus,
                    timing,
                })
            }
            Err(e) => {
                // If even this cannot be recorded (the database is down), the job stays
                // `running` until its lease expires and is then taken up again; the caller
                // gets the error that stopped the run.
                let _ = run.record_failure(&e);
                Err(e)
            }
        }
    }

    /// Derives (and checks once per version against the database's KCV) a card's keys.
    pub(crate) fn derive(
        &self,
        c: &mut Conn,
        category: &str,
        version: u32,
        card_number: &str,
    ) -> Result<scp::StaticKeys> {
        // A registration never changes but for its status, which derivation does not look
        // at: once its key store version is checked, no database read is needed.
        let known = self
            .checked_versions
            .lock()
            .ok()
            .and_then(|m| m.get(&(category.to_string(), version)).cloned());
        if let Some(kms_category) = known {
            return Ok(self
                .keys
                .derive_card_keys(&kms_category, version, card_number)?);
        }
        let kv = key_version_in(c, category, version)?.ok_or_else(|| {
            Error::Invalid(format!(
                "base key version {version} of '{category}' is not registered"
            ))
        })?;
        let info = self
            .keys
            .list()?
            .into_iter()
            .find(|i| i.category == kv.kms_category && i.version == version)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "the key store has no version {version} of '{}'",
                    kv.kms_category
                ))
            })?;
        if info.kcv != kv.kcv || info.kind != kv.kind {
            return Err(Error::Invalid(format!(
                "the key store's version {version} of '{}' (KCV {}) is not the registered one (KCV {})",
                kv.kms_category,
                apdu::hex(&info.kcv),
                apdu::hex(&kv.kcv)
            )));
        }
        if let Ok(mut m) = self.checked_versions.lock() {
            m.insert((category.to_string(), version), kv.kms_category.clone());
        }
        Ok(self
            .keys
            .derive_card_keys(&kv.kms_category, version, card_number)?)
    }

    pub(crate) fn keystore(&self) -> &dyn kms::KeyStore {
        self.keys.as_ref()
    }

    pub(crate) fn config(&self) -> &IssuerConfig {
        &self.config
    }
}

/// The card as recorded and its jobs. Only the card's tenant (the tenant of its category)
/// may read them; a refusal is [`Error::Forbidden`] and is audited with the actor.
pub fn card_status(store: &Store, actor: &Actor, card_number: &str) -> Result<(Card, Vec<Job>)> {
    let card = card_of_tenant(store, actor, card_number, "card.read", None)?;
    let jobs = store.jobs_of_card(card_number)?;
    Ok((card, jobs))
}

/// The recorded card, if `actor` is of the card's tenant, or (`job_tenant`) of the tenant
/// that submitted the job at hand (an application provider resuming its own application
/// load). Refusals are audited under `action` with the acting actor.
pub(crate) fn card_of_tenant(
    store: &Store,
    actor: &Actor,
    card_number: &str,
    action: &str,
    job_tenant: Option<&str>,
) -> Result<Card> {
    let card = store.card(card_number)?.ok_or(Error::UnknownCard)?;
    let owner = store
        .category(&card.category)?
        .ok_or_else(|| Error::UnknownCategory(card.category.clone()))?
        .tenant;
    if actor.tenant == owner || job_tenant == Some(actor.tenant.as_str()) {
        return Ok(card);
    }
    let e = Error::Forbidden {
        tenant: actor.tenant.clone(),
        action: format!("{action} on a card of another tenant"),
    };
    Err(audit_refusal(store, actor, action, card_number, e))
}

/// Records a refused request (the acting actor, what it tried, why) in the audit log and
/// returns the refusal (or the store's error if even that cannot be recorded).
fn audit_refusal(store: &Store, actor: &Actor, action: &str, card_number: &str, e: Error) -> Error {
    let entry = NewEntry::new(&actor.name(), action, "forbidden")
        .card(card_number)
        .detail(json!({"reason": e.to_string()}));
    match store.audit_append(&entry) {
        Ok(_) => e,
        Err(store) => store.into(),
    }
}

/// Whether any step that changes the card is done or may have happened.
pub(crate) fn card_touched(steps: &[crate::model::Step]) -> bool {
    steps.iter().any(|s| {
        s.state != StepState::Pending && StepKind::parse(&s.name).is_ok_and(|k| k.changes_card())
    })
}

/// Re-exported for the engine.
pub(crate) fn job_state_after(e: &Error, resumed_connect: bool) -> JobState {
    match e {
        Error::Interrupted(_) | Error::Store(_) => JobState::Pending,
        Error::WrongCard(_) | Error::KeysDoNotMatch(_) if resumed_connect => JobState::Pending,
        _ => JobState::Failed,
    }
}

/// A job recorded and claimed by this worker (a lease held in its name), whose run on a
/// card has not started: [`Issuer::submit_claimed`] or [`Issuer::claim_open_job`] made
/// it, [`Issuer::run_claimed_job`] runs it. Between the two the job is `running` under the
/// lease, so a crash leaves it resumable once the lease expires, like a crash mid-run; a
/// caller can answer the request before the card work (an asynchronous HTTP request, RFC
/// 7240 `respond-async`) and run it elsewhere.
pub struct Claimed {
    job: Job,
    prepared: Option<Prepared>,
    lease: Lease,
    start: Instant,
}

impl fmt::Debug for Claimed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claimed")
            .field("job", &self.job.id)
            .field("kind", &self.job.kind)
            .field("card_number", &self.job.card_number)
            .finish_non_exhaustive()
    }
}

impl Claimed {
    /// The job as claimed.
    pub fn job(&self) -> &Job {
        &self.job
    }
}

impl Issuer {
    /// What [`Issuer::execute`] does before the card: the request checked ([`Issuer::submit`])
    /// and recorded as a job claimed by this worker. Nothing is recorded on refusal.
    pub fn submit_claimed(&self, actor: &Actor, req: &Request) -> Result<Claimed> {
        let start = Instant::now();
        let owner = random_token();
        let (job, prepared) = self.submit_as(actor, req, Some(&owner))?;
        let lease = Lease {
            job: job.id,
            owner,
            duration: self.config.lease,
        };
        Ok(Claimed {
            job,
            prepared: Some(prepared),
            lease,
            start,
        })
    }

    /// What [`Issuer::resume_with`] does before the card: the card's open job found and
    /// claimed for `actor` (of the card's tenant or the job's; a refusal is audited).
    pub fn claim_open_job(
        &self,
        actor: &Actor,
        card_number: &str,
        options: &ResumeOptions,
    ) -> Result<Claimed> {
        let start = Instant::now();
        let open = self.store.open_job_for_card(card_number)?;
        let job_tenant = open.as_ref().map(|j| j.tenant.as_str());
        self.card_of_tenant(actor, card_number, "job.resume", job_tenant)?;
        let job = open.ok_or_else(|| Error::Invalid("the card has no open job".into()))?;
        let (job, lease) = self.claim_as(actor, job.id, options.take_over)?;
        Ok(Claimed {
            job,
            prepared: None,
            lease,
            start,
        })
    }

    /// Runs a job claimed by [`Issuer::submit_claimed`] or [`Issuer::claim_open_job`] on
    /// the card in `chan`.
    pub fn run_claimed_job<C: CardChannel + ?Sized>(
        &self,
        claimed: Claimed,
        chan: &mut C,
    ) -> Result<Outcome> {
        let Claimed {
            job,
            prepared,
            lease,
            start,
        } = claimed;
        self.run_claimed(job, prepared, lease, chan, start, None)
    }

    /// A job and its steps, for `actor` (see [`job_status`]).
    pub fn job_status(&self, actor: &Actor, job_id: i64) -> Result<(Job, Vec<Step>)> {
        job_status(&self.store, actor, job_id)
    }
}

impl Issuer {
    /// Claims the job for a new worker (with `take_over`, even under another worker's
    /// unexpired lease), audited under `actor`; SSD jobs are refused (tsm::ssd runs them).
    fn claim_as(&self, actor: &Actor, job_id: i64, take_over: bool) -> Result<(Job, Lease)> {
        if let Some(j) = self.store.job(job_id)? {
            if matches!(
                j.kind,
                JobKind::SsdCreate | JobKind::SsdRotate | JobKind::SsdRenew | JobKind::SsdReplace
            ) {
                return Err(Error::Invalid(format!(
                    "job {job_id} is an SSD job ({}): the SSD platform (tsm::ssd) runs it",
                    j.kind
                )));
            }
        }
        let lease = Lease {
            job: job_id,
            owner: random_token(),
            duration: self.config.lease,
        };
        let job = self.store.tx(|c| -> Result<Job> {
            match claim_in(c, &lease, take_over)? {
                Claim::Claimed { job, took_over } => {
                    if let Some(held) = took_over {
                        append_in(
                            c,
                            &NewEntry::new(
                                &actor.name(),
                                &format!("job.{}", job.kind),
                                "taken-over",
                            )
                            .card(&job.card_number)
                            .detail(json!({
                                "job": job.id,
                                "attempt": job.attempts,
                                "previous_holder": held.holder,
                                "lease_until_ms": held.until_ms,
                            })),
                        )?;
                    }
                    append_in(
                        c,
                        &NewEntry::new(&actor.name(), &format!("job.{}", job.kind), "running")
                            .card(&job.card_number)
                            .detail(json!({
                                "job": job.id,
                                "attempt": job.attempts,
                                "submitted_by": job.actor,
                            })),
                    )?;
                    Ok(job)
                }
                Claim::Finished(job) => Err(Error::JobFinished {
                    id: job.id,
                    state: job.state.to_string(),
                }),
                Claim::Leased(held) => Err(Error::JobLeased(held)),
                Claim::NotFound => Err(Error::UnknownJob(job_id)),
            }
        })?;
        Ok((job, lease))
    }
}

/// A job and its steps. Visible exactly as the card it runs on ([`card_status`]): to the
/// card's tenant, and to the tenant that submitted it (an application provider following
/// its own application load); anyone else gets [`Error::Forbidden`], audited as
/// `job.read` with the actor. An unknown id is [`Error::UnknownJob`].
pub fn job_status(store: &Store, actor: &Actor, job_id: i64) -> Result<(Job, Vec<Step>)> {
    let job = store.job(job_id)?.ok_or(Error::UnknownJob(job_id))?;
    card_of_tenant(
        store,
        actor,
        &job.card_number,
        "job.read",
        Some(&job.tenant),
    )?;
    let steps = store.job_steps(job_id)?;
    Ok((job, steps))
}
