//! One run of a job on a card: connect, open the right secure channel, do the steps not
//! yet done, record each before and after.
//!
//! [`Run`] holds one run's state and drives it; its work is split by concern:
//! [`journal`] records steps and their effects in the database (through the store layer),
//! [`session`] connects to the card and opens a secure channel with the keys it carries, and
//! [`steps`] executes each step on the card.

mod journal;
mod session;
pub(crate) use session::chip_id;
mod steps;

use apdu::Status;
use gp::aid::{Aid, ISD_AID};
use gp::commands::{Cplc, DataObject, KeyInfo};
use gpclient::{ops, ClientError, GpClient, KeySpec, OpenOptions, Operation, DEFAULT_TEST_KEY};
use scp::{Diversification, Key, KeyKind, StaticKeys};
use serde_json::json;
use transport::{CardChannel, Traced};

use super::plan::{kvn_for_version, KeyRef, Params, StepKind};
use super::{card_touched, end_job_in, job_state_after, ByRef, Issuer, Prepared, Timing};
use crate::audit::{append_in, NewEntry};
use crate::db::Conn;
use crate::error::{Error, LeaseHeld, Result, StoreError};
use crate::model::{
    now_ms, Card, CardState, Category, InitialKeys, Job, JobKind, JobState, Step, StepState,
};
use crate::store::jobs::{
    create_job_in, create_job_with_id_in, end_sql, renew_in, renew_sql, steps_in, steps_record_sql,
    InitialStep, Lease,
};
use crate::store::records::{
    add_card_app_in, card_apps_in, card_in, category_in, clear_card_apps_in, insert_card_sql,
    mark_card_partial_in, remove_card_app_in, update_card_sql,
};
use std::time::{Duration, Instant};

/// A completed step whose record is not written yet (it is written in the transaction
/// that marks the next step that changes the card started, or at the end of the run).
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

impl Done {
    /// Whether recording it changes no more than its step row and the card row.
    fn rows_only(&self) -> bool {
        self.app_added.is_none() && self.app_removed.is_none() && !self.clear_apps && !self.finish
    }
}

/// A job checked but not recorded yet: [`Issuer::execute`](crate::Issuer::execute) runs it
/// at once, so it is written with the run's first record instead of in a commit of its own
/// (see [the module documentation](crate::issuance#how-a-job-runs), step 3).
#[derive(Debug, Clone)]
pub(crate) struct Unsubmitted {
    pub job: crate::store::jobs::NewJob,
    /// A card not recorded yet: its row.
    pub insert_card: Option<crate::db::Write>,
    /// The job's id, reserved so that writing the job needs no answer (PostgreSQL; `None`:
    /// the database gives it, [`Store::reserve_job_id`](crate::Store)).
    pub id: Option<i64>,
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
    /// Completed steps not recorded yet, in order.
    carry: Vec<Done>,
    t_db: Duration,
    t_keys: Duration,
    /// When the lease was last taken or renewed.
    renewed: Instant,
    /// The steps this run completed, with what they did (for the audit entry).
    log: Vec<serde_json::Value>,
    /// The job, until its first record writes it.
    unsubmitted: Option<Unsubmitted>,
}

impl<'i, 'c, C: CardChannel + ?Sized> Run<'i, 'c, C> {
    pub fn new(
        issuer: &'i Issuer,
        job: Job,
        prepared: Option<Prepared>,
        lease: Lease,
        chan: ByRef<'c, C>,
        unsubmitted: Option<Unsubmitted>,
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
            carry: Vec::new(),
            t_db: t.elapsed(),
            t_keys: Duration::ZERO,
            renewed: Instant::now(),
            log: Vec::new(),
            unsubmitted,
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
            JobKind::AppLoad
            | JobKind::AppDelete
            | JobKind::SsdCreate
            | JobKind::SsdRotate
            | JobKind::SsdRenew
            | JobKind::SsdReplace => (from, from),
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

    /// The steps whose start the record before step `i` (which changes the card) writes:
    /// step `i` and, unless it loads or deletes an application, the steps after it that
    /// change the card with a few STORE DATA or PUT KEY commands, up to the first step
    /// that loads or deletes an application (those take long, renew the lease and record
    /// their own effects). A resume treats each of them as possibly begun, exactly as a step
    /// interrupted half-way (each is idempotent), so recording their starts together keeps
    /// the guarantee (before anything changes the card, the intent is in the database) and
    /// saves a commit per step: a write records its starts once instead of three times.
    fn started_together(&self, i: usize) -> Vec<u32> {
        let quick = |k: &StepKind| !matches!(k, StepKind::Install(_) | StepKind::Delete(_));
        let mut seqs = vec![self.steps[i].1.seq];
        if !quick(&self.steps[i].0) {
            return seqs;
        }
        for (kind, step) in &self.steps[i + 1..] {
            if !quick(kind) {
                break;
            }
            if kind.changes_card() && step.state != StepState::Done {
                seqs.push(step.seq);
            }
        }
        seqs
    }

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
        // Steps whose start the last record wrote (see `started_together`).
        let mut recorded_started: Vec<u32> = Vec::new();
        for i in 0..self.steps.len() {
            if self.steps[i].1.state == StepState::Done {
                continue;
            }
            let was_started = self.steps[i].1.state == StepState::Started;
            let seq = self.steps[i].1.seq;
            if self.steps[i].0.changes_card() && !recorded_started.contains(&seq) {
                recorded_started = self.started_together(i);
                self.begin(&recorded_started)?;
            }
            self.steps[i].1.state = StepState::Started;
            let kind = self.steps[i].0.clone();
            self.changed_in_step = false;
            let mut done = self.exec(&kind, was_started)?;
            done.seq = seq;
            self.log
                .push(json!({"step": kind.name(), "detail": done.detail.clone()}));
            self.steps[i].1.state = StepState::Done;
            self.carry.push(done);
        }
        let carry = std::mem::take(&mut self.carry);
        let t = Instant::now();
        let issuer = self.issuer;
        let r = issuer.store.tx(|c| {
            self.submit_in(c, &[], &[])?;
            self.record(c, carry, &[])
        });
        let r = self.recorded(r);
        self.t_db += t.elapsed();
        r
    }

    /// Writes the job if it is not yet ([`Unsubmitted`]): the job claimed by this worker
    /// (its lease), its steps `done` (which changed only the card row) and `started`, the
    /// card's row as the last of `done` left it (inserted if new). Its id is this
    /// run's from now on; if the transaction fails, [`Run::recorded`] takes it back.
    fn submit_in(&mut self, c: &mut Conn, done: &[Done], started: &[u32]) -> Result<()> {
        let Some(u) = &self.unsubmitted else {
            return Ok(());
        };
        // A new card's row is inserted as the run left it (what its check learnt), not
        // inserted and then updated: on PostgreSQL the writes go as one statement, whose
        // update would not see the inserted row.
        let card = done.iter().rev().find_map(|d| d.card.as_ref());
        let row = match (&u.insert_card, card) {
            (Some(_), Some(card)) => Some(insert_card_sql(card)),
            (Some(blank), None) => Some(blank.clone()),
            (None, card) => card.map(|card| update_card_sql(card, None)),
        };
        let rows: Vec<crate::db::Write> = row.into_iter().collect();
        let initial: Vec<InitialStep<'_>> = done
            .iter()
            .map(|d| InitialStep::Done(d.seq, &d.detail))
            .chain(started.iter().map(|s| InitialStep::Started(*s)))
            .collect();
        let claim = Some((self.lease.owner.as_str(), self.lease.duration));
        let id = match u.id {
            // The card's row, the job and its steps: on PostgreSQL one statement.
            Some(id) => create_job_with_id_in(c, id, &u.job, claim, &initial, rows).map(|()| id)?,
            None => {
                // Nobody reads their counts: on PostgreSQL they go with the job's statement.
                c.execute_all_later(&rows)?;
                create_job_in(c, &u.job, claim, &initial)?
            }
        };
        self.job.id = id;
        self.lease.job = id;
        Ok(())
    }
}
