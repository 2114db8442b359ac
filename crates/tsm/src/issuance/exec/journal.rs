//! The step journal: each step that changes the card recorded `started` before its first
//! APDU (quick ones that follow one another together, see `Run::started_together`), with
//! the steps completed before it (`done`, with their effects on the card row and the
//! applications), in one statement and one transaction; the lease renewed on the way; the
//! end of the run.

use super::*;

impl<C: CardChannel + ?Sized> Run<'_, '_, C> {
    /// Before a step that changes the card: records the steps completed since the last
    /// record (with their effects on the card row, the applications or the job) and this one
    /// started, and renews the lease, in one transaction (which the store's group commit
    /// shares with other workers' writes). A step that does not change the card starts
    /// without it: its record waits for the next one, since after a crash running it again
    /// is all a resume needs (see the module documentation of [`crate::issuance`]).
    pub(super) fn begin(&mut self, seqs: &[u32]) -> Result<()> {
        let carry = std::mem::take(&mut self.carry);
        let t = Instant::now();
        if self.unsubmitted.is_some() {
            let r = self.begin_with_submission(carry, seqs);
            self.t_db += t.elapsed();
            return r;
        }
        // Renew the lease when half of it has gone by (every step with a zero lease).
        let renew = self.renewed.elapsed() * 2 >= self.lease.duration;
        let r = if carry.iter().all(Done::rows_only) {
            self.begin_in_one(&carry, seqs, renew)
        } else {
            let r = self.issuer.store.tx(|c: &mut Conn| -> Result<()> {
                self.record(c, carry, seqs)?;
                if renew && !renew_in(c, &self.lease)? {
                    return Err(Error::JobLeased(LeaseHeld::job(self.job.id)));
                }
                Ok(())
            });
            self.recorded(r)
        };
        if renew && r.is_ok() {
            self.renewed = Instant::now();
        }
        self.t_db += t.elapsed();
        r
    }

    /// [`Run::begin`] for a job not written yet ([`Unsubmitted`]): the job goes with this
    /// record, in one transaction (the lease is fresh: nothing to renew). When the completed
    /// steps changed only the card row (the check of the card before a write), the job and
    /// its steps, done and started, are one statement on PostgreSQL.
    fn begin_with_submission(&mut self, carry: Vec<Done>, seqs: &[u32]) -> Result<()> {
        let issuer = self.issuer;
        let r = issuer.store.tx(|c: &mut Conn| -> Result<()> {
            if carry.iter().all(Done::rows_only) {
                self.submit_in(c, &carry, seqs)
            } else {
                self.submit_in(c, &[], &[])?;
                self.record(c, carry, seqs)
            }
        });
        self.recorded(r)
    }

    /// [`Run::begin`] when the completed steps changed only the card row: the step rows,
    /// the card row and the lease renewal are written as one atomic write
    /// ([`Store::write_atomic`](crate::Store): on PostgreSQL one statement, one round trip),
    /// each statement on condition that this worker still holds the lease, so that a lost
    /// lease writes nothing.
    fn begin_in_one(&self, done: &[Done], seqs: &[u32], renew: bool) -> Result<()> {
        let steps: Vec<(u32, &serde_json::Value)> =
            done.iter().map(|d| (d.seq, &d.detail)).collect();
        let mut writes = vec![steps_record_sql(&self.lease, &steps, seqs)?];
        if let Some(card) = done.iter().rev().find_map(|d| d.card.as_ref()) {
            writes.push(update_card_sql(card, Some(&self.lease)));
        }
        if renew {
            writes.push(renew_sql(&self.lease));
        }
        let counts = self.issuer.store.write_atomic(&writes)?;
        let held = counts.first() == Some(&((steps.len() + seqs.len()) as u64))
            && (!renew || counts.last() == Some(&1));
        if held {
            Ok(())
        } else {
            Err(Error::JobLeased(LeaseHeld::job(self.job.id)))
        }
    }

    /// Records completed steps (and the start of the steps `next`) with their effects.
    pub(super) fn record(&self, c: &mut Conn, done: Vec<Done>, next: &[u32]) -> Result<()> {
        let steps: Vec<(u32, &serde_json::Value)> =
            done.iter().map(|d| (d.seq, &d.detail)).collect();
        let finish = done.iter().find(|d| d.finish);
        // The step rows, the card row as the last of them left it, and the end of the job:
        // one statement on PostgreSQL, on condition that this worker holds the lease (the
        // steps started must all be written, and the end). On PostgreSQL it waits for the
        // next round trip, which checks the counts (see `Run::recorded`).
        let mut writes = Vec::new();
        let mut expected = Vec::new();
        if !steps.is_empty() || !next.is_empty() {
            writes.push(steps_record_sql(&self.lease, &steps, next)?);
            expected.push((!next.is_empty()).then_some((steps.len() + next.len()) as u64));
        }
        if let Some(card) = done.iter().rev().find_map(|d| d.card.as_ref()) {
            writes.push(update_card_sql(card, None));
            expected.push(None);
        }
        if finish.is_some() {
            writes.push(end_sql(&self.lease, JobState::Done, None));
            expected.push(Some(1));
        }
        c.execute_all_expecting("the job's record", &writes, &expected)?;
        for d in &done {
            if let Some((instance, package)) = &d.app_added {
                add_card_app_in(c, &self.job.card_number, instance, package)?;
            }
            if let Some(instance) = &d.app_removed {
                remove_card_app_in(c, &self.job.card_number, instance)?;
            }
            if d.clear_apps {
                clear_card_apps_in(c, &self.job.card_number)?;
            }
        }
        if let Some(d) = finish {
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

    /// After a transaction that recorded steps (every caller of [`Run::record`]): its
    /// outcome as the run says it. A write of the record that did not change its rows is
    /// [`Error::JobLeased`] (they are written on condition that this worker holds the
    /// lease); a unique violation while the job was written with the record is a second
    /// open job for the card (on PostgreSQL both come from the group's seal, where the
    /// statements went). If the transaction began with [`Run::submit_in`], the job is now
    /// written, or this run has no id again.
    pub(super) fn recorded(&mut self, r: Result<()>) -> Result<()> {
        let r = r.map_err(|e| match e {
            Error::Store(StoreError::RowsChanged { .. }) => {
                Error::JobLeased(LeaseHeld::job(self.job.id))
            }
            Error::Store(e) if self.unsubmitted.is_some() && e.is_unique_violation() => {
                Error::Store(e.duplicate_as(|| "an open job for this card".into()))
            }
            e => e,
        });
        if self.unsubmitted.is_some() {
            if r.is_ok() {
                self.unsubmitted = None;
                self.renewed = Instant::now();
            } else {
                self.job.id = 0;
                self.lease.job = 0;
            }
        }
        r
    }

    /// Records why the run stopped: the job goes back to pending (resumable) or fails; a
    /// failed job that changed the card marks it partial.
    pub fn record_failure(&mut self, e: &Error) -> Result<()> {
        if matches!(e, Error::JobLeased(_)) {
            return Ok(());
        }
        let state = job_state_after(e, self.in_connect && self.resumed);
        let carry = std::mem::take(&mut self.carry);
        let changed_now = self.changed_in_step;
        let issuer = self.issuer;
        let r = issuer.store.tx(|c| -> Result<()> {
            // A job stopped before its first record is written with its end.
            self.submit_in(c, &[], &[])?;
            // Nothing is written unless this worker still holds the job.
            if !end_job_in(c, &self.lease, state, Some(&e.to_string()))? {
                return Err(Error::JobLeased(LeaseHeld::job(self.job.id)));
            }
            self.record(c, carry, &[])?;
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
        });
        self.recorded(r)
    }
}
