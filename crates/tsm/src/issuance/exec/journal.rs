//! The step journal: each step recorded `started` before its first APDU and `done` (with its
//! effects on the card row and the applications) after its last, in the statement or
//! transaction that starts the next; the lease renewed on the way; the end of the run.

use super::*;

impl<C: CardChannel + ?Sized> Run<'_, '_, C> {
    /// Records the previous step done (with its effects on the card row, the applications
    /// or the job) and this one started, and renews the lease, in one transaction (which the
    /// store's group commit shares with other workers' writes).
    pub(super) fn begin(&mut self, seq: u32) -> Result<()> {
        let carry = self.carry.take();
        let t = Instant::now();
        // Renew the lease when half of it has gone by (every step with a zero lease).
        let renew = self.renewed.elapsed() * 2 >= self.lease.duration;
        let r = self.issuer.store.tx(|c: &mut Conn| -> Result<()> {
            self.record(c, carry, Some(seq))?;
            if renew && !renew_in(c, &self.lease)? {
                return Err(Error::JobLeased(LeaseHeld::job(self.job.id)));
            }
            Ok(())
        });
        if renew && r.is_ok() {
            self.renewed = Instant::now();
        }
        self.t_db += t.elapsed();
        r
    }

    /// Records a completed step (and the start of step `next`, if any) with its effects.
    pub(super) fn record(&self, c: &mut Conn, done: Option<Done>, next: Option<u32>) -> Result<()> {
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
            update_card_in(c, card)?;
        }
        if let Some((instance, package)) = &d.app_added {
            add_card_app_in(c, &self.job.card_number, instance, package)?;
        }
        if let Some(instance) = &d.app_removed {
            remove_card_app_in(c, &self.job.card_number, instance)?;
        }
        if d.clear_apps {
            clear_card_apps_in(c, &self.job.card_number)?;
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
                mark_card_partial_in(c, &self.job.card_number)?;
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
}
