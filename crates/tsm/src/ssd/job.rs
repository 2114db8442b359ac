//! One run of an SSD job over the issuance job machinery (`store::jobs`): claimed with a
//! lease, each step recorded `started` before its first APDU and `done` (with its effects
//! on the SSD records, in the same transaction) after its last, the end audited.

use std::time::Duration;

use serde_json::{json, Value};

use crate::audit::{append_in, NewEntry};
use crate::db::Conn;
use crate::error::{Error, LeaseHeld, Result, StoreError};
use crate::model::{Job, JobState, Step, StepState};
use crate::store::jobs::{
    claim_in, end_in, renew_in, step_done_in, step_started_in, steps_in, Claim, Lease,
};
use crate::Store;

/// Effects of a step on the records, written with its `done` record.
pub(crate) type Effects<'a> = Box<dyn FnOnce(&mut Conn) -> Result<(), StoreError> + 'a>;

/// No effect.
pub(crate) fn none<'a>() -> Effects<'a> {
    Box::new(|_| Ok(()))
}

pub(crate) struct JobRun<'s> {
    store: &'s Store,
    pub job: Job,
    lease: Lease,
    pub steps: Vec<Step>,
    actor: String,
    log: Vec<Value>,
}

/// A worker token (process and random).
fn owner() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        b.copy_from_slice(&crate::model::now_ms().to_be_bytes());
    }
    format!("pid {} ({})", std::process::id(), apdu::hex(&b))
}

/// An SSD job claimed by this worker (recorded `running` under its lease, audited) and not
/// yet run: what a route records before it answers, the card work coming after
/// ([`super::CiPlatform::claim`], [`super::ApPlatform::claim`]). Dropped without a run (the
/// process stopped), the job stays `running` until its lease runs out, then is run again
/// from its journal like any interrupted job.
pub struct ClaimedSsd {
    job: Job,
    lease: Lease,
    steps: Vec<Step>,
    actor: String,
}

impl std::fmt::Debug for ClaimedSsd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedSsd")
            .field("job", &self.job.id)
            .field("kind", &self.job.kind)
            .field("card_number", &self.job.card_number)
            .finish_non_exhaustive()
    }
}

impl ClaimedSsd {
    /// The job as claimed.
    pub fn job(&self) -> &Job {
        &self.job
    }
}

/// Claims job `id` (pending, or running with an expired lease) for `actor`.
pub(crate) fn claim(store: &Store, id: i64, actor: &str, lease: Duration) -> Result<ClaimedSsd> {
    let lease = Lease {
        job: id,
        owner: owner(),
        duration: lease,
    };
    let (job, steps) = store.tx(|c| -> Result<(Job, Vec<Step>)> {
        match claim_in(c, &lease, false)? {
            Claim::Claimed { job, .. } => {
                append_in(
                    c,
                    &NewEntry::new(actor, &format!("job.{}", job.kind), "running")
                        .card(&job.card_number)
                        .detail(json!({"job": job.id, "attempt": job.attempts,
                                       "submitted_by": job.actor})),
                )?;
                let steps = steps_in(c, id)?;
                Ok((job, steps))
            }
            Claim::Finished(job) => Err(Error::JobFinished {
                id: job.id,
                state: job.state.to_string(),
            }),
            Claim::Leased(held) => Err(Error::JobLeased(held)),
            Claim::NotFound => Err(Error::UnknownJob(id)),
        }
    })?;
    Ok(ClaimedSsd {
        job,
        lease,
        steps,
        actor: actor.into(),
    })
}

impl<'s> JobRun<'s> {
    /// The run of a claimed job.
    pub fn start(store: &'s Store, claimed: ClaimedSsd) -> JobRun<'s> {
        let ClaimedSsd {
            job,
            lease,
            steps,
            actor,
        } = claimed;
        JobRun {
            store,
            job,
            lease,
            steps,
            actor,
            log: Vec::new(),
        }
    }

    /// Whether the step must run; records it `started` if so. Returns `Some(was_started)`
    /// (an earlier run started it: its effect on the card is unknown) or `None` (done).
    pub fn begin(&mut self, name: &str) -> Result<Option<bool>> {
        let Some(step) = self.steps.iter_mut().find(|s| s.name == name) else {
            return Ok(None);
        };
        if step.state == StepState::Done {
            return Ok(None);
        }
        let was_started = step.state == StepState::Started;
        let seq = step.seq;
        let lease = self.lease.clone();
        let ok = self.store.tx(|c| -> Result<bool, StoreError> {
            Ok(step_started_in(c, &lease, seq)? && renew_in(c, &lease)?)
        })?;
        if !ok {
            return Err(Error::JobLeased(LeaseHeld::job(self.job.id)));
        }
        step.state = StepState::Started;
        Ok(Some(was_started))
    }

    /// Records a step done, with its effects, if this worker still holds the job.
    pub fn done(&mut self, name: &str, detail: Value, effects: Effects<'_>) -> Result<()> {
        let Some(step) = self.steps.iter_mut().find(|s| s.name == name) else {
            return Ok(());
        };
        let seq = step.seq;
        let lease = self.lease.clone();
        let id = self.job.id;
        self.store.tx(|c| -> Result<()> {
            if !renew_in(c, &lease)? {
                return Err(Error::JobLeased(LeaseHeld::job(id)));
            }
            step_done_in(c, id, seq, &detail)?;
            effects(c)?;
            Ok(())
        })?;
        step.state = StepState::Done;
        self.log.push(json!({"step": name, "detail": detail}));
        Ok(())
    }

    /// Ends the job done, audited `ok` with what each step did, with the final effects.
    pub fn finish(&mut self, result: Value, effects: Effects<'_>) -> Result<()> {
        let lease = self.lease.clone();
        let job = self.job.clone();
        let log = std::mem::take(&mut self.log);
        let actor = self.actor.clone();
        self.store.tx(|c| -> Result<()> {
            if !end_in(c, &lease, JobState::Done, None)? {
                return Err(Error::JobLeased(LeaseHeld::job(job.id)));
            }
            effects(c)?;
            append_in(
                c,
                &NewEntry::new(&actor, &format!("job.{}", job.kind), "ok")
                    .card(&job.card_number)
                    .detail(json!({"job": job.id, "attempt": job.attempts,
                                   "result": result, "steps": log})),
            )?;
            Ok(())
        })
    }

    /// Ends the run after `e`: pending (an interruption: run it again) or failed, with the
    /// effects of a failure (a rollback recorded), audited.
    pub fn fail(&mut self, e: &Error, effects: Effects<'_>) -> Result<()> {
        if matches!(e, Error::JobLeased(_)) {
            return Ok(());
        }
        let state = match e {
            Error::Interrupted(_) | Error::Store(_) => JobState::Pending,
            _ => JobState::Failed,
        };
        let lease = self.lease.clone();
        let job = self.job.clone();
        let log = std::mem::take(&mut self.log);
        let actor = self.actor.clone();
        self.store.tx(|c| -> Result<()> {
            if !end_in(c, &lease, state, Some(&e.to_string()))? {
                return Err(Error::JobLeased(LeaseHeld::job(job.id)));
            }
            if state == JobState::Failed {
                effects(c)?;
            }
            let result = if state == JobState::Pending {
                "interrupted"
            } else {
                "failed"
            };
            append_in(
                c,
                &NewEntry::new(&actor, &format!("job.{}", job.kind), result)
                    .card(&job.card_number)
                    .detail(json!({"job": job.id, "attempt": job.attempts,
                                   "error": e.to_string(), "steps": log})),
            )?;
            Ok(())
        })
    }
}
