//! One run of a job on a card: connect, open the right secure channel, do the steps not
//! yet done, record each before and after.

use apdu::Status;
use gp::aid::{Aid, ISD_AID};
use gp::commands::{Cplc, DataObject, KeyInfo};
use gpclient::{ops, ClientError, GpClient, KeySpec, OpenOptions, Operation, DEFAULT_TEST_KEY};
use scp::{Diversification, Key, KeyKind, StaticKeys};
use serde_json::json;
use transport::{CardChannel, Traced};

use super::plan::{kvn_for_version, KeyRef, Params, StepKind};
use super::{
    card_touched, end_job_in, job_state_after, mark_partial, ByRef, Issuer, Prepared, Timing,
};
use crate::audit::{append_in, NewEntry};
use crate::db::{params, Conn};
use crate::error::{Error, LeaseHeld, Result, StoreError};
use crate::model::{
    kind_str, now_ms, Card, CardState, Category, InitialKeys, Job, JobKind, JobState, Step,
    StepState,
};
use crate::store::jobs::{
    renew_in, step_advance_in, step_done_in, step_started_in, steps_in, Lease,
};
use crate::store::records::{card_apps_in, card_in, category_in};
use std::time::{Duration, Instant};

/// A completed step whose record is not written yet (it is written in the same
/// transaction that marks the next step started).
#[derive(Debug, Default)]
struct Done {
    seq: u32,
    detail: serde_json::Value,
    card: Option<Card>,
    app_added: Option<(Aid, Aid)>,
    app_removed: Option<Aid>,
    clear_apps: bool,
    finish: bool,
}

/// What the card showed before authentication.
#[derive(Debug, Default)]
struct Identity {
    chip_id: Option<Vec<u8>>,
    kvns: Vec<u8>,
    kdd: Option<[u8; 10]>,
}

pub(crate) struct Run<'i, 'c, C: CardChannel + ?Sized> {
    issuer: &'i Issuer,
    job: Job,
    lease: Lease,
    params: Params,
    category: Category,
    card: Card,
    steps: Vec<(StepKind, Step)>,
    client: GpClient<ByRef<'c, C>>,
    /// The key set on the card, once known.
    on_card: Option<KeyRef>,
    /// The KDD the card reports now.
    kdd: Option<[u8; 10]>,
    /// The protocol of the last secure channel (`02`, `03`).
    scp: u8,
    identity: Identity,
    /// Derived keys of this run, by base version.
    derived: Vec<(u32, StaticKeys)>,
    /// Whether some earlier run started a step of this job.
    resumed: bool,
    in_connect: bool,
    /// Whether the current step changed the card (a command that changes it succeeded).
    changed_in_step: bool,
    carry: Option<Done>,
    t_db: Duration,
    t_keys: Duration,
    /// When the lease was last taken or renewed.
    renewed: Instant,
    /// The steps this run completed, with what they did (for the audit entry).
    log: Vec<serde_json::Value>,
}

fn aid_of(hex: &str) -> Result<Aid> {
    apdu::parse_hex(hex)
        .ok()
        .and_then(|b| Aid::new(&b).ok())
        .ok_or_else(|| {
            Error::Store(StoreError::Corrupt {
                what: "job parameters".into(),
                detail: format!("bad AID {hex}"),
            })
        })
}

fn spec_of(keys: &StaticKeys, kvn: u8) -> KeySpec {
    KeySpec::from_static(keys, kvn)
}

/// Chip identity from the CPLC (GP 2.3.1 §H.6): IC fabricator, IC type, IC serial number,
/// IC batch identifier.
fn chip_id(cplc: &Cplc) -> Vec<u8> {
    let mut v = Vec::with_capacity(10);
    v.extend_from_slice(&cplc.ic_fabricator);
    v.extend_from_slice(&cplc.ic_type);
    v.extend_from_slice(&cplc.ic_serial_number);
    v.extend_from_slice(&cplc.ic_batch_identifier);
    v
}

fn tlv(tag: u32, value: &[u8]) -> Vec<u8> {
    apdu::tlv::Tlv::new(apdu::tlv::Tag::new(tag), value.to_vec()).encode()
}

/// Groups encoded data objects into STORE DATA blocks of at most `max` bytes.
fn blocks(objects: Vec<Vec<u8>>, max: usize) -> Result<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for o in objects {
        if o.len() > max {
            return Err(Error::Invalid(format!(
                "a personalisation data object of {} bytes does not fit one STORE DATA ({max})",
                o.len()
            )));
        }
        match out.last_mut() {
            Some(b) if b.len() + o.len() <= max => b.extend_from_slice(&o),
            _ => out.push(o),
        }
    }
    Ok(out)
}

impl<'i, 'c, C: CardChannel + ?Sized> Run<'i, 'c, C> {
    pub fn new(
        issuer: &'i Issuer,
        job: Job,
        prepared: Option<Prepared>,
        lease: Lease,
        chan: ByRef<'c, C>,
    ) -> Result<Self> {
        let t = Instant::now();
        let params = Params::parse(&job.params)?;
        let prepared = match prepared {
            Some(p) => p,
            None => issuer.store.with_conn(|c| -> Result<_> {
                Ok(Prepared {
                    category: category_in(c, &params.category)?
                        .ok_or_else(|| Error::UnknownCategory(params.category.clone()))?,
                    card: card_in(c, &job.card_number)?.ok_or(Error::UnknownCard)?,
                    steps: steps_in(c, job.id)?,
                })
            })?,
        };
        let Prepared {
            category,
            card,
            steps,
        } = prepared;
        let steps = steps
            .into_iter()
            .map(|s| Ok((StepKind::parse(&s.name)?, s)))
            .collect::<std::result::Result<Vec<_>, StoreError>>()?;
        let resumed = steps.iter().any(|(_, s)| s.state != StepState::Pending);
        let client = GpClient::new(Traced::new(chan, issuer.config().trace.clone()));
        Ok(Run {
            issuer,
            job,
            lease,
            params,
            category,
            card,
            steps,
            client,
            on_card: None,
            kdd: None,
            scp: 0,
            identity: Identity::default(),
            derived: Vec::new(),
            resumed,
            in_connect: false,
            changed_in_step: false,
            carry: None,
            t_db: t.elapsed(),
            t_keys: Duration::ZERO,
            renewed: Instant::now(),
            log: Vec::new(),
        })
    }

    pub fn apdus(&self) -> u64 {
        self.client.apdus_sent()
    }

    /// Time spent so far (`total` left for the caller).
    pub fn timing(&self) -> Timing {
        Timing {
            total: Duration::ZERO,
            card: self.client.channel().inner().spent,
            database: self.t_db,
            keys: self.t_keys,
        }
    }

    /// The job and the card as recorded by a successful run.
    pub fn final_records(&self) -> (Job, Card) {
        let now = now_ms();
        let job = Job {
            state: JobState::Done,
            lease_until_ms: None,
            error: None,
            updated_ms: now,
            ..self.job.clone()
        };
        (job, self.card.clone())
    }

    fn actor(&self) -> String {
        self.job.actor.clone()
    }

    fn step_state(&self, kind: &StepKind) -> Option<StepState> {
        self.steps
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, s)| s.state)
    }

    fn kvn(&self, k: KeyRef) -> u8 {
        match k {
            KeyRef::Initial => self.category.initial_kvn,
            KeyRef::Derived(v) => kvn_for_version(v, self.category.initial_kvn),
        }
    }

    /// The key sets before and after this job's PUT KEY.
    fn transition(&self) -> (KeyRef, KeyRef) {
        let from = KeyRef::from_version(self.params.from_version);
        match self.job.kind {
            JobKind::Write => (
                KeyRef::Initial,
                KeyRef::from_version(self.params.to_version),
            ),
            JobKind::Rewrite => (from, KeyRef::from_version(self.params.to_version)),
            JobKind::Clear => (from, KeyRef::Initial),
            JobKind::AppLoad | JobKind::AppDelete => (from, from),
        }
    }

    /// The key sets that may be on the card, most likely first.
    fn candidates(&self) -> Vec<KeyRef> {
        let (src, tgt) = self.transition();
        let mut v = match self.step_state(&StepKind::PutKey) {
            None | Some(StepState::Pending) => vec![src],
            Some(StepState::Started) => vec![tgt, src],
            Some(StepState::Done) => vec![tgt],
        };
        v.dedup();
        v
    }

    // ---- the run --------------------------------------------------------------------

    pub fn drive(&mut self) -> Result<()> {
        let needs_card = self
            .steps
            .iter()
            .any(|(k, s)| s.state != StepState::Done && *k != StepKind::Finish);
        if needs_card {
            self.in_connect = true;
            self.connect()?;
            self.in_connect = false;
        }
        for i in 0..self.steps.len() {
            if self.steps[i].1.state == StepState::Done {
                continue;
            }
            let was_started = self.steps[i].1.state == StepState::Started;
            let seq = self.steps[i].1.seq;
            self.begin(seq)?;
            self.steps[i].1.state = StepState::Started;
            let kind = self.steps[i].0.clone();
            self.changed_in_step = false;
            let mut done = self.exec(&kind, was_started)?;
            done.seq = seq;
            self.log
                .push(json!({"step": kind.name(), "detail": done.detail.clone()}));
            self.steps[i].1.state = StepState::Done;
            self.carry = Some(done);
        }
        let carry = self.carry.take();
        let t = Instant::now();
        let r = self.issuer.store.tx(|c| self.record(c, carry, None));
        self.t_db += t.elapsed();
        r
    }

    /// Records the previous step done and this one started, and renews the lease. A plain
    /// step transition is one statement (no explicit transaction); one with effects on the
    /// card row, the applications or the job is a transaction.
    fn begin(&mut self, seq: u32) -> Result<()> {
        let carry = self.carry.take();
        let t = Instant::now();
        // Renew the lease when half of it has gone by (every step with a zero lease).
        let renew = self.renewed.elapsed() * 2 >= self.lease.duration;
        let effects = carry.as_ref().is_some_and(|d| {
            d.card.is_some()
                || d.app_added.is_some()
                || d.app_removed.is_some()
                || d.clear_apps
                || d.finish
        });
        let work = |c: &mut Conn| -> Result<()> {
            self.record(c, carry, Some(seq))?;
            if renew && !renew_in(c, &self.lease)? {
                return Err(Error::JobLeased(LeaseHeld::job(self.job.id)));
            }
            Ok(())
        };
        let r = if effects || renew {
            self.issuer.store.tx(work)
        } else {
            self.issuer.store.autocommit(work)
        };
        if renew && r.is_ok() {
            self.renewed = Instant::now();
        }
        self.t_db += t.elapsed();
        r
    }

    /// Records a completed step (and the start of step `next`, if any) with its effects.
    fn record(&self, c: &mut Conn, done: Option<Done>, next: Option<u32>) -> Result<()> {
        let lost = || Error::JobLeased(LeaseHeld::job(self.job.id));
        match (&done, next) {
            (Some(d), Some(n)) => {
                if !step_advance_in(c, &self.lease, d.seq, &d.detail, n)? {
                    return Err(lost());
                }
            }
            (None, Some(n)) => {
                if !step_started_in(c, &self.lease, n)? {
                    return Err(lost());
                }
            }
            (Some(d), None) => step_done_in(c, self.job.id, d.seq, &d.detail)?,
            (None, None) => {}
        }
        let Some(d) = done else { return Ok(()) };
        if let Some(card) = &d.card {
            c.execute(
                "UPDATE cards SET state = $1, key_version = $2, kvn = $3, kdd = $4, factory_kdd = $5,
                        chip_id = $6, initial_key_kind = $7, updated_ms = $8
                 WHERE card_number = $9",
                params![
                    card.state.as_str(),
                    card.key_version.map(i64::from),
                    card.kvn.map(i64::from),
                    card.kdd.clone(),
                    card.factory_kdd.clone(),
                    card.chip_id.clone(),
                    card.initial_key_kind.map(kind_str),
                    now_ms(),
                    &card.card_number
                ],
            )?;
        }
        if let Some((instance, package)) = &d.app_added {
            c.execute(
                "INSERT INTO card_apps (card_number, instance, package_aid, installed_ms)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (card_number, instance) DO NOTHING",
                params![
                    &self.job.card_number,
                    instance.as_bytes(),
                    package.as_bytes(),
                    now_ms()
                ],
            )?;
        }
        if let Some(instance) = &d.app_removed {
            c.execute(
                "DELETE FROM card_apps WHERE card_number = $1 AND instance = $2",
                params![&self.job.card_number, instance.as_bytes()],
            )?;
        }
        if d.clear_apps {
            c.execute(
                "DELETE FROM card_apps WHERE card_number = $1",
                params![&self.job.card_number],
            )?;
        }
        if d.finish {
            if !end_job_in(c, &self.lease, JobState::Done, None)? {
                return Err(Error::JobLeased(LeaseHeld::job(self.job.id)));
            }
            append_in(
                c,
                &NewEntry::new(&self.actor(), &format!("job.{}", self.job.kind), "ok")
                    .card(&self.job.card_number)
                    .detail(json!({
                        "job": self.job.id,
                        "attempt": self.job.attempts,
                        "result": d.detail,
                        "steps": self.log,
                    })),
            )?;
        }
        Ok(())
    }

    /// Records why the run stopped: the job goes back to pending (resumable) or fails; a
    /// failed job that changed the card marks it partial.
    pub fn record_failure(&mut self, e: &Error) -> Result<()> {
        if matches!(e, Error::JobLeased(_)) {
            return Ok(());
        }
        let state = job_state_after(e, self.in_connect && self.resumed);
        let carry = self.carry.take();
        let changed_now = self.changed_in_step;
        self.issuer.store.tx(|c| -> Result<()> {
            // Nothing is written unless this worker still holds the job.
            if !end_job_in(c, &self.lease, state, Some(&e.to_string()))? {
                return Err(Error::JobLeased(LeaseHeld::job(self.job.id)));
            }
            self.record(c, carry, None)?;
            let steps = steps_in(c, self.job.id)?;
            let touched = changed_now
                || card_touched(
                    &steps
                        .into_iter()
                        .filter(|s| s.state == StepState::Done)
                        .collect::<Vec<_>>(),
                );
            if state == JobState::Failed && touched {
                mark_partial(c, &self.job.card_number)?;
            }
            let result = match state {
                JobState::Pending => "interrupted",
                _ => "failed",
            };
            append_in(
                c,
                &NewEntry::new(&self.actor(), &format!("job.{}", self.job.kind), result)
                    .card(&self.job.card_number)
                    .detail(json!({
                        "job": self.job.id,
                        "attempt": self.job.attempts,
                        "error": e.to_string(),
                        "card_changed": touched,
                        "steps": self.log,
                    })),
            )?;
            Ok(())
        })
    }

    // ---- connecting -----------------------------------------------------------------

    /// Reset, identity checks without authentication, then a secure channel with the key
    /// set the card carries.
    fn connect(&mut self) -> Result<()> {
        self.client.channel_mut().reset()?;
        self.client.select(&ISD_AID)?;
        // GP 2.3.1 §11.3 GET DATA: none of these needs a secure channel.
        let cplc = ops::get_data_raw(&mut self.client, DataObject::Cplc)?
            .and_then(|raw| Cplc::parse(&raw).ok());
        let cin = ops::get_data(&mut self.client, DataObject::Cin)?.filter(|v| !v.is_empty());
        let kvns: Vec<u8> = ops::get_data_raw(&mut self.client, DataObject::KeyInformation)?
            .and_then(|raw| KeyInfo::parse(&raw).ok())
            .map(|ki| {
                let mut v: Vec<u8> = ki.entries.iter().map(|e| e.version).collect();
                v.dedup();
                v
            })
            .unwrap_or_default();
        let kdd = if matches!(self.category.initial_keys, InitialKeys::Kms { .. }) {
            ops::get_data(&mut self.client, DataObject::KeyDiversificationData)?
                .and_then(|v| <[u8; 10]>::try_from(v.as_slice()).ok())
        } else {
            None
        };
        self.identity = Identity {
            chip_id: cplc.as_ref().map(chip_id),
            kvns,
            kdd,
        };
        self.check_identity(cin.as_deref())?;
        self.open_first(self.candidates())?;
        // The KDD must be one this job's history allows (a card swapped for another of
        // the same model reports its own).
        if let (Some(now), Some(recorded)) = (self.kdd, self.card.kdd.as_deref()) {
            let mut allowed = vec![recorded.to_vec()];
            if self.step_state(&StepKind::SetKdd) == Some(StepState::Started) {
                allowed.push(kms::kdd_for_card_number(&self.job.card_number)?.to_vec());
            }
            if self.step_state(&StepKind::RestoreKdd) == Some(StepState::Started) {
                allowed.extend(self.card.factory_kdd.clone());
            }
            if !allowed.iter().any(|k| k.as_slice() == now) {
                return Err(Error::WrongCard(
                    "its key diversification data is not the one recorded for this card".into(),
                ));
            }
        }
        Ok(())
    }

    fn check_identity(&self, cin: Option<&[u8]>) -> Result<()> {
        if let (Some(recorded), Some(chip)) = (&self.card.chip_id, &self.identity.chip_id) {
            if recorded != chip {
                return Err(Error::WrongCard(
                    "its chip (CPLC) is not the one registered under this card number".into(),
                ));
            }
        }
        let ours = kms::kdd_for_card_number(&self.job.card_number)?;
        match (self.job.kind, cin) {
            (_, Some(c)) if c == ours => Ok(()),
            (JobKind::Write, None) => Ok(()),
            (JobKind::Write, Some(_)) => Err(Error::WrongCard(
                "it is already written with another card number".into(),
            )),
            (_, Some(_)) => Err(Error::WrongCard("it carries another card number".into())),
            (kind, None) => {
                let erased = kind == JobKind::Clear
                    && self.step_state(&StepKind::ErasePerso) != Some(StepState::Pending);
                if erased || self.card.state == CardState::Partial {
                    Ok(())
                } else {
                    Err(Error::WrongCard("it carries no card number".into()))
                }
            }
        }
    }

    fn open_first(&mut self, candidates: Vec<KeyRef>) -> Result<()> {
        let listed: Vec<KeyRef> = if self.identity.kvns.is_empty() {
            candidates.clone()
        } else {
            candidates
                .iter()
                .copied()
                .filter(|k| self.identity.kvns.contains(&self.kvn(*k)))
                .collect()
        };
        let mut tried = Vec::new();
        for k in &listed {
            if self.try_open(*k)? {
                self.on_card = Some(*k);
                return Ok(());
            }
            tried.push(k.describe(self.kvn(*k)));
        }
        if listed.is_empty() {
            let want: Vec<String> = candidates
                .iter()
                .map(|k| k.describe(self.kvn(*k)))
                .collect();
            let have: Vec<String> = self
                .identity
                .kvns
                .iter()
                .map(|k| format!("{k:02X}"))
                .collect();
            return Err(Error::KeysDoNotMatch(format!(
                "the card has key sets {}, expected {}",
                have.join(" "),
                want.join(" or ")
            )));
        }
        Err(Error::KeysDoNotMatch(format!(
            "tried {}",
            tried.join(", then ")
        )))
    }

    /// Opens a secure channel with `k`; `false` when the card cryptogram does not verify
    /// (or the card has no such key set): no authentication attempt was spent.
    fn try_open(&mut self, k: KeyRef) -> Result<bool> {
        let keys = self.key_spec(k)?;
        let opts = OpenOptions {
            keys,
            level: self.issuer.config().level,
            scp: None,
            sd: None,
        };
        match self.client.open_secure_channel(&opts) {
            Ok(info) => {
                self.kdd = Some(info.init_update.kdd);
                self.scp = info.init_update.scp;
                Ok(true)
            }
            Err(ClientError::WrongKeys { .. }) => Ok(false),
            // No key set with this KVN on the card: nothing was authenticated.
            Err(ClientError::Card {
                op: Operation::InitializeUpdate,
                sw,
                ..
            }) if sw.status() == Status::ReferencedDataNotFound => Ok(false),
            Err(
                e @ ClientError::Card {
                    op: Operation::InitializeUpdate,
                    ..
                },
            ) => Err(Error::Card(e)),
            Err(ClientError::KeysLocked { op, sw }) => Err(Error::AuthenticationRefused(format!(
                "{op}: {sw}: the key set is locked"
            ))),
            Err(ClientError::Card { op, sw, .. }) => {
                Err(Error::AuthenticationRefused(format!("{op}: {sw}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn derived_keys(&mut self, v: u32) -> Result<StaticKeys> {
        if let Some((_, k)) = self.derived.iter().find(|(x, _)| *x == v) {
            return Ok(k.clone());
        }
        let t = Instant::now();
        let keys = self.issuer.store.with_conn(|c| {
            self.issuer
                .derive(c, &self.params.category, v, &self.job.card_number)
        });
        self.t_keys += t.elapsed();
        let keys = keys?;
        self.derived.push((v, keys.clone()));
        Ok(keys)
    }

    /// The factory KDD (what transport keys are diversified with).
    fn factory_kdd(&self) -> Result<[u8; 10]> {
        self.card
            .factory_kdd
            .as_deref()
            .and_then(|v| <[u8; 10]>::try_from(v).ok())
            .or(self.identity.kdd)
            .ok_or_else(|| {
                Error::Invalid("the card's factory key diversification data is unknown".into())
            })
    }

    fn key_spec(&mut self, k: KeyRef) -> Result<KeySpec> {
        let kvn = self.kvn(k);
        match (k, self.category.initial_keys.clone()) {
            (KeyRef::Initial, InitialKeys::GpTestKey) => {
                Ok(KeySpec::same(&DEFAULT_TEST_KEY, Diversification::None, kvn))
            }
            (KeyRef::Initial, InitialKeys::Kms { category, version }) => {
                let kdd = self.factory_kdd()?;
                let keys = self
                    .issuer
                    .keystore()
                    .derive_for_kdd(&category, version, &kdd)?;
                Ok(spec_of(&keys, kvn))
            }
            (KeyRef::Derived(v), _) => {
                let keys = self.derived_keys(v)?;
                Ok(spec_of(&keys, kvn))
            }
        }
    }

    /// The keys of `k`, typed (what PUT KEY sends).
    fn typed_keys(&mut self, k: KeyRef) -> Result<StaticKeys> {
        match (k, self.category.initial_keys.clone()) {
            (KeyRef::Initial, InitialKeys::GpTestKey) => {
                let kind = self.card.initial_key_kind.unwrap_or(if self.scp == 0x02 {
                    KeyKind::Des3
                } else {
                    KeyKind::Aes
                });
                Ok(StaticKeys::same(
                    Key::new(kind, &DEFAULT_TEST_KEY)
                        .map_err(|e| Error::Invalid(format!("initial keys: {e}")))?,
                ))
            }
            (KeyRef::Initial, InitialKeys::Kms { category, version }) => {
                let kdd = self.factory_kdd()?;
                Ok(self
                    .issuer
                    .keystore()
                    .derive_for_kdd(&category, version, &kdd)?)
            }
            (KeyRef::Derived(v), _) => self.derived_keys(v),
        }
    }

    // ---- steps ----------------------------------------------------------------------

    fn store_data(&mut self, objects: Vec<Vec<u8>>) -> Result<()> {
        let blocks = blocks(objects, self.client.max_plain_data())?;
        ops::store_data(&mut self.client, &blocks)?;
        self.changed_in_step = true;
        Ok(())
    }

    fn exec(&mut self, kind: &StepKind, was_started: bool) -> Result<Done> {
        match kind {
            StepKind::Check => self.check(),
            StepKind::ProveKeys => Ok(Done {
                detail: json!({
                    "opened_with": self.on_card.map(|k| k.describe(self.kvn(k))),
                }),
                ..Done::default()
            }),
            StepKind::SetKdd => self.set_kdd(),
            StepKind::PutKey => self.put_key(),
            StepKind::VerifyKeys => self.verify_keys(),
            StepKind::Personalize => self.personalize(),
            StepKind::Install(a) => self.install(a, was_started),
            StepKind::Delete(a) => self.delete(a),
            StepKind::ErasePerso => self.erase_perso(),
            StepKind::RestoreKdd => self.restore_kdd(),
            StepKind::Finish => Ok(self.finish()),
        }
    }

    fn check(&mut self) -> Result<Done> {
        if self.on_card != Some(KeyRef::Initial) {
            return Err(Error::WrongCard(
                "it does not open with the initial keys".into(),
            ));
        }
        let (_, tgt) = self.transition();
        let tgt_kvn = self.kvn(tgt);
        if self.identity.kvns.contains(&tgt_kvn) {
            return Err(Error::WrongCard(format!(
                "it already has a key set with KVN {tgt_kvn:02X}"
            )));
        }
        let kdd = self.kdd.map(|k| k.to_vec());
        self.card.chip_id = self.identity.chip_id.clone();
        self.card.factory_kdd = kdd.clone();
        self.card.kdd = kdd.clone();
        self.card.kvn = Some(self.category.initial_kvn);
        self.card.initial_key_kind = Some(if self.scp == 0x02 {
            KeyKind::Des3
        } else {
            KeyKind::Aes
        });
        Ok(Done {
            detail: json!({
                "chip_id": self.card.chip_id.as_deref().map(apdu::hex),
                "factory_kdd": kdd.as_deref().map(apdu::hex),
                "scp": format!("{:02X}", self.scp),
            }),
            card: Some(self.card.clone()),
            ..Done::default()
        })
    }

    fn set_kdd(&mut self) -> Result<Done> {
        let target = kms::kdd_for_card_number(&self.job.card_number)?;
        let unchanged = self.kdd == Some(target);
        if !unchanged {
            // GP 2.3.1 §11.11: STORE DATA to the security domain itself; `CF` is the KDD
            // the ISD reports in INITIALIZE UPDATE (§E.5.1.6, Amd D §7.1.1.6).
            match ops::store_data(&mut self.client, &[tlv(0xCF, &target)]) {
                Ok(()) => {}
                Err(ClientError::Card {
                    op: Operation::StoreData,
                    sw,
                    ..
                }) => return Err(Error::KddNotSettable(sw.to_string())),
                Err(e) => return Err(e.into()),
            }
            self.changed_in_step = true;
            self.kdd = Some(target);
        }
        self.card.kdd = Some(target.to_vec());
        Ok(Done {
            detail: json!({"kdd": apdu::hex(&target), "unchanged": unchanged}),
            card: Some(self.card.clone()),
            ..Done::default()
        })
    }

    fn put_key(&mut self) -> Result<Done> {
        let (src, tgt) = self.transition();
        let new_kvn = self.kvn(tgt);
        let already = self.on_card == Some(tgt) || src == tgt;
        let mut kcvs = Vec::new();
        if !already {
            let old = self.on_card.unwrap_or(src);
            let old_kvn = self.kvn(old);
            let keys = self.typed_keys(tgt)?;
            kcvs = keys.iter().map(|k| apdu::hex(&k.kcv())).collect();
            // GP 2.3.1 §11.8: P1 = the KVN replaced; the card answers the new KVN and the
            // KCVs, which gpclient checks.
            ops::put_key_set(&mut self.client, &keys, new_kvn, Some(old_kvn))?;
            self.changed_in_step = true;
            self.on_card = Some(tgt);
        }
        self.card.key_version = tgt.version();
        self.card.kvn = Some(new_kvn);
        let detail = json!({
            "from": src.describe(self.kvn(src)),
            "to": tgt.describe(new_kvn),
            "kcvs": kcvs,
            "already": already,
        });
        Ok(Done {
            detail: detail.clone(),
            card: Some(self.card.clone()),
            ..Done::default()
        })
    }

    fn verify_keys(&mut self) -> Result<Done> {
        let (_, tgt) = self.transition();
        if !self.try_open(tgt)? {
            return Err(Error::KeysDoNotMatch(format!(
                "the card does not open with the {} just written",
                tgt.describe(self.kvn(tgt))
            )));
        }
        self.on_card = Some(tgt);
        Ok(Done {
            detail: json!({"opened_with": tgt.describe(self.kvn(tgt))}),
            ..Done::default()
        })
    }

    fn perso_tags(&self) -> Result<Vec<u32>> {
        Ok(apdu::tlv::parse_all(&self.category.perso)
            .map_err(|e| Error::Invalid(format!("category personalisation: {e}")))?
            .iter()
            .map(|t| t.tag.value())
            .collect())
    }

    fn personalize(&mut self) -> Result<Done> {
        let cin = kms::kdd_for_card_number(&self.job.card_number)?;
        let mut objects = vec![tlv(0x45, &cin)];
        for t in apdu::tlv::parse_all(&self.category.perso)
            .map_err(|e| Error::Invalid(format!("category personalisation: {e}")))?
        {
            objects.push(t.encode());
        }
        // Then the card's own objects (Request::Write::perso).
        let card_perso = apdu::parse_hex(&self.params.perso)
            .map_err(|e| Error::Invalid(format!("card personalisation: {e}")))?;
        for t in apdu::tlv::parse_all(&card_perso)
            .map_err(|e| Error::Invalid(format!("card personalisation: {e}")))?
        {
            objects.push(t.encode());
        }
        let n = objects.len();
        self.store_data(objects)?;
        Ok(Done {
            detail: json!({"objects": n}),
            ..Done::default()
        })
    }

    fn erase_perso(&mut self) -> Result<Done> {
        let mut objects = vec![tlv(0x45, &[])];
        let mut tags = self.perso_tags()?;
        for t in &self.params.erase_tags {
            if !tags.contains(t) {
                tags.push(*t);
            }
        }
        for t in tags {
            objects.push(tlv(t, &[]));
        }
        let n = objects.len();
        self.store_data(objects)?;
        Ok(Done {
            detail: json!({"objects": n}),
            ..Done::default()
        })
    }

    fn restore_kdd(&mut self) -> Result<Done> {
        let Some(factory) = self.card.factory_kdd.clone() else {
            return Ok(Done {
                detail: json!({"skipped": "factory KDD unknown"}),
                ..Done::default()
            });
        };
        let unchanged = self.kdd.map(|k| k.to_vec()) == Some(factory.clone());
        if !unchanged {
            match ops::store_data(&mut self.client, &[tlv(0xCF, &factory)]) {
                Ok(()) => {}
                Err(ClientError::Card {
                    op: Operation::StoreData,
                    sw,
                    ..
                }) => return Err(Error::KddNotSettable(sw.to_string())),
                Err(e) => return Err(e.into()),
            }
            self.changed_in_step = true;
            self.kdd = <[u8; 10]>::try_from(factory.as_slice()).ok();
        }
        self.card.kdd = Some(factory.clone());
        Ok(Done {
            detail: json!({"kdd": apdu::hex(&factory), "unchanged": unchanged}),
            card: Some(self.card.clone()),
            ..Done::default()
        })
    }

    fn install(&mut self, instance: &Aid, was_started: bool) -> Result<Done> {
        let spec = self
            .params
            .install
            .iter()
            .find(|a| aid_of(&a.instance).ok().as_ref() == Some(instance))
            .ok_or_else(|| Error::Invalid(format!("no parameters for {instance}")))?
            .spec()?;
        let cap_bytes = self
            .issuer
            .store
            .package_cap(&spec.package)?
            .ok_or_else(|| Error::Invalid(format!("package {} is not registered", spec.package)))?;
        let cap = gp::cap::CapFile::from_bytes(&cap_bytes)
            .map_err(|e| Error::Invalid(format!("package {}: {e}", spec.package)))?;
        if cap.package_aid() != spec.package {
            return Err(Error::Invalid(format!(
                "the CAP registered as {} is package {}",
                spec.package,
                cap.package_aid()
            )));
        }
        // What is already there (a step interrupted half-way, or content loaded before).
        let reg = ops::registry(&mut self.client)?;
        let have_file = reg.load_files.iter().any(|e| e.aid == spec.package);
        let have_app = reg.applications.iter().any(|e| e.aid == *instance);
        let mut loaded_now = false;
        if !have_file {
            let opts = ops::InstallOptions {
                load_only: true,
                ..Default::default()
            };
            ops::install_cap(&mut self.client, &cap, &opts)?;
            loaded_now = true;
            self.changed_in_step = true;
        }
        if !have_app {
            let mut c9 = vec![0xC9, spec.params.len() as u8];
            c9.extend_from_slice(&spec.params);
            let r = ops::install_instance(
                &mut self.client,
                spec.package,
                spec.module,
                *instance,
                spec.privileges,
                c9,
                true,
            );
            if let Err(e) = r {
                if loaded_now
                    && matches!(
                        e,
                        ClientError::Card {
                            op: Operation::InstallForInstall,
                            ..
                        }
                    )
                {
                    // Roll back the load of this step so the card is as it was.
                    if ops::delete(&mut self.client, &spec.package, true).is_ok() {
                        self.changed_in_step = false;
                    }
                }
                return Err(e.into());
            }
            self.changed_in_step = true;
        }
        if !spec.perso.is_empty() {
            ops::personalize(
                &mut self.client,
                instance,
                std::slice::from_ref(&spec.perso),
            )?;
            self.changed_in_step = true;
        }
        let detail = json!({
            "instance": instance.to_hex(),
            "package": spec.package.to_hex(),
            "loaded": !have_file,
            "installed": !have_app,
            "resumed": was_started,
        });
        Ok(Done {
            detail: detail.clone(),
            app_added: Some((*instance, spec.package)),
            ..Done::default()
        })
    }

    fn delete(&mut self, instance: &Aid) -> Result<Done> {
        let r = self
            .params
            .delete
            .iter()
            .find(|a| aid_of(&a.instance).ok().as_ref() == Some(instance))
            .ok_or_else(|| Error::Invalid(format!("no parameters for {instance}")))?;
        let package = aid_of(&r.package)?;
        let shared = self
            .issuer
            .store
            .with_conn(|c| card_apps_in(c, &self.job.card_number))?
            .iter()
            .any(|a| a.instance != *instance && a.package == package);
        // GP 2.3.1 §11.2: DELETE of the load file with related objects removes its
        // instances too; when another instance uses the file, only this one goes.
        let (target, related) = if shared {
            (*instance, false)
        } else {
            (package, true)
        };
        match ops::delete(&mut self.client, &target, related) {
            Ok(()) => self.changed_in_step = true,
            // Already gone (an interrupted earlier attempt): done.
            Err(ClientError::Card {
                op: Operation::Delete,
                sw,
                ..
            }) if sw.status() == Status::ReferencedDataNotFound => {}
            Err(e) => return Err(e.into()),
        }
        let detail =
            json!({"instance": instance.to_hex(), "deleted": target.to_hex(), "related": related});
        Ok(Done {
            detail: detail.clone(),
            app_removed: Some(*instance),
            ..Done::default()
        })
    }

    fn finish(&mut self) -> Done {
        let mut clear_apps = false;
        match self.job.kind {
            JobKind::Write | JobKind::Rewrite => self.card.state = CardState::Written,
            JobKind::Clear => {
                self.card.state = CardState::Blank;
                self.card.key_version = None;
                self.card.kvn = Some(self.category.initial_kvn);
                clear_apps = true;
            }
            JobKind::AppLoad | JobKind::AppDelete => {}
        }
        Done {
            detail: json!({
                "state": self.card.state.as_str(),
                "key_version": self.card.key_version,
                "kvn": self.card.kvn,
            }),
            card: Some(self.card.clone()),
            clear_apps,
            finish: true,
            ..Done::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_data_blocks() {
        let objs = vec![vec![1; 100], vec![2; 100], vec![3; 100]];
        let b = blocks(objs, 239).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].len(), 200);
        assert!(blocks(vec![vec![0; 300]], 239).is_err());
        assert_eq!(tlv(0xCF, &[1, 2]), vec![0xCF, 0x02, 1, 2]);
        assert_eq!(tlv(0x45, &[]), vec![0x45, 0x00]);
    }
}
