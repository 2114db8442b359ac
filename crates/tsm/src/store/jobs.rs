//! Jobs and their steps as the job engine records them.
//!
//! A job is claimed with a lease (`state = running`, `lease_until_ms`, a random
//! `lease_owner`); every later write of the worker is conditional on still owning the
//! lease, so a worker that stalled past its lease cannot overwrite the progress of the one
//! that took over. One open (pending or running) job per card is enforced by a partial
//! unique index.

use std::time::Duration;

use serde_json::json;

use super::Store;
use crate::audit::{append_in, NewEntry};
use crate::db::{params, Conn, Row, Value, Write};
use crate::error::{LeaseHeld, StoreError};
use crate::model::{now_ms, u32_of, Job, JobKind, JobState, Step};

/// A job to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Tenant on whose behalf it runs.
    pub tenant: String,
    /// Who asked.
    pub actor: String,
    /// Workflow.
    pub kind: JobKind,
    /// The card.
    pub card_number: String,
    /// Parameters.
    pub params: serde_json::Value,
    /// Step names, in order.
    pub steps: Vec<String>,
}

const JOB_COLUMNS: &str = "id, tenant_id, actor, kind, card_number, params, state, attempts, \
                           lease_until_ms, error, created_ms, updated_ms";

pub(crate) fn job_of(r: &Row) -> Result<Job, StoreError> {
    let params = r.text(5)?;
    Ok(Job {
        id: r.int(0)?,
        tenant: r.text(1)?,
        actor: r.text(2)?,
        kind: r.text(3)?.parse()?,
        card_number: r.text(4)?,
        params: serde_json::from_str(&params).map_err(|e| StoreError::Corrupt {
            what: "jobs.params".into(),
            detail: e.to_string(),
        })?,
        state: r.text(6)?.parse()?,
        attempts: u32_of(r.int(7)?, "jobs.attempts")?,
        lease_until_ms: r.opt_int(8)?,
        error: r.opt_text(9)?,
        created_ms: r.int(10)?,
        updated_ms: r.int(11)?,
    })
}

fn step_of(r: &Row) -> Result<Step, StoreError> {
    Ok(Step {
        seq: u32_of(r.int(0)?, "job_steps.seq")?,
        name: r.text(1)?,
        state: r.text(2)?.parse()?,
        attempts: u32_of(r.int(3)?, "job_steps.attempts")?,
        detail: r
            .opt_text(4)?
            .map(|t| {
                serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
                    what: "job_steps.detail".into(),
                    detail: e.to_string(),
                })
            })
            .transpose()?,
        started_ms: r.opt_int(5)?,
        finished_ms: r.opt_int(6)?,
    })
}

/// What [`claim_in`] found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Claim {
    /// The job is ours until the lease ends; `took_over` names the unexpired lease this
    /// claim replaced (a take-over).
    Claimed {
        /// The job as claimed.
        job: Job,
        /// The lease taken over, if any.
        took_over: Option<LeaseHeld>,
    },
    /// Done or failed.
    Finished(Job),
    /// Another worker holds it.
    Leased(LeaseHeld),
    /// No such job.
    NotFound,
}

/// The lease a worker holds on a job.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub job: i64,
    pub owner: String,
    pub duration: Duration,
}

impl Lease {
    fn until(&self, now: i64) -> i64 {
        now.saturating_add(i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX))
    }
}

pub(crate) fn job_in(c: &mut Conn, id: i64) -> Result<Option<Job>, StoreError> {
    c.query_opt(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
        params![id],
    )?
    .map(|r| job_of(&r))
    .transpose()
}

/// The query of the card's open job (pending or running; at most one).
pub(crate) fn open_job_query(number: &str) -> (String, Vec<crate::db::Value>) {
    (
        format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE card_number = $1 AND state IN ('pending', 'running')"
        ),
        params![number].to_vec(),
    )
}

pub(crate) fn open_job_for_card_in(c: &mut Conn, number: &str) -> Result<Option<Job>, StoreError> {
    let (sql, values) = open_job_query(number);
    c.query_opt(&sql, &values)?.map(|r| job_of(&r)).transpose()
}

pub(crate) fn steps_in(c: &mut Conn, job: i64) -> Result<Vec<Step>, StoreError> {
    c.query(
        "SELECT seq, name, state, attempts, detail, started_ms, finished_ms
         FROM job_steps WHERE job_id = $1 ORDER BY seq",
        params![job],
    )?
    .iter()
    .map(step_of)
    .collect()
}

/// The parameters of every job of `kind` a card had, oldest first (JSON that does not
/// parse reads as `null`).
pub(crate) fn job_params_in(
    c: &mut Conn,
    number: &str,
    kind: JobKind,
) -> Result<Vec<serde_json::Value>, StoreError> {
    c.query(
        "SELECT params FROM jobs WHERE card_number = $1 AND kind = $2 ORDER BY created_ms, id",
        params![number, kind.as_str()],
    )?
    .iter()
    .map(|r| Ok(serde_json::from_str(&r.text(0)?).unwrap_or_default()))
    .collect()
}

/// How a step is recorded when its job is inserted, if not `pending`: by a worker that
/// submits the job and has already run part of it (see `issuance::exec::Unsubmitted`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum InitialStep<'a> {
    /// Started, first attempt (its sequence number).
    Started(u32),
    /// Done, first attempt, with its detail.
    Done(u32, &'a serde_json::Value),
}

/// [`create_job_in`] under an id reserved beforehand ([`Store::reserve_job_id`]), after the
/// writes `with` (the card's row): nothing is read back, so on PostgreSQL, in a
/// transaction, they and the job and its steps are one statement that waits for the next
/// round trip like [`Conn::execute_all_later`]'s writes, and a second open job for the
/// card is that round trip's error (a unique violation, not yet [`StoreError::Duplicate`]).
pub(crate) fn create_job_with_id_in(
    c: &mut Conn,
    id: i64,
    job: &NewJob,
    claim: Option<(&str, Duration)>,
    initial: &[InitialStep<'_>],
    with: Vec<Write>,
) -> Result<(), StoreError> {
    let now = now_ms();
    let mut writes = with;
    writes.push(job_insert(c.dialect(), Some(id), job, claim, now)?);
    writes.extend(steps_insert_of(id, job, initial, now)?);
    c.execute_all_later(&writes)
        .map_err(|e| e.duplicate_as(|| "an open job for this card".into()))?;
    submitted(c, job, id, claim.is_some()).map(|_| ())
}

/// A new job's INSERT (without `RETURNING`) and its parameters. A given `id` goes first;
/// PostgreSQL's identity column takes it only when told to.
fn job_insert(
    dialect: crate::db::Dialect,
    id: Option<i64>,
    job: &NewJob,
    claim: Option<(&str, Duration)>,
    now: i64,
) -> Result<Write, StoreError> {
    let params_text = serde_json::to_string(&job.params).map_err(|e| StoreError::Invalid {
        what: "job parameters",
        detail: e.to_string(),
    })?;
    let (state, attempts, until, owner) = match claim {
        None => ("pending", 0, None, None),
        Some((owner, d)) => (
            "running",
            1,
            Some(now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))),
            Some(owner.to_string()),
        ),
    };
    let (id_column, overriding, id_value) = match (id, dialect) {
        (None, _) => ("", "", ""),
        (Some(_), crate::db::Dialect::Postgres) => ("id, ", "OVERRIDING SYSTEM VALUE", "$11, "),
        (Some(_), crate::db::Dialect::Sqlite) => ("id, ", "", "$11, "),
    };
    let sql = format!(
        "INSERT INTO jobs ({id_column}tenant_id, actor, kind, card_number, params, state,
                          attempts, lease_until_ms, lease_owner, created_ms, updated_ms)
         {overriding}
         VALUES ({id_value}$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)"
    );
    let mut values = params![
        &job.tenant,
        &job.actor,
        job.kind.as_str(),
        &job.card_number,
        params_text,
        state,
        attempts,
        until,
        owner,
        now
    ]
    .to_vec();
    values.extend(id.map(Value::from));
    Ok((sql, values))
}

/// The INSERT of a new job's steps (`None` when it has none): each row's job id is the
/// SQL expression `job_id`, and the parameters are numbered from `first` (the first one is
/// the time).
fn steps_insert(
    job: &NewJob,
    initial: &[InitialStep<'_>],
    job_id: &str,
    first: usize,
    now: i64,
) -> Result<Option<Write>, StoreError> {
    if job.steps.is_empty() {
        return Ok(None);
    }
    let time = format!("${first}");
    let mut values: Vec<Value> = vec![now.into()];
    let mut rows = Vec::with_capacity(job.steps.len());
    for (seq, name) in job.steps.iter().enumerate() {
        let seq = seq as u32;
        let mut param = |v: Value| {
            values.push(v);
            format!("${}", first + values.len() - 1)
        };
        let (s, n) = (param(i64::from(seq).into()), param(name.as_str().into()));
        let done = initial.iter().find_map(|i| match i {
            InitialStep::Done(x, detail) if *x == seq => Some(detail),
            _ => None,
        });
        let started = initial
            .iter()
            .any(|i| matches!(i, InitialStep::Started(x) if *x == seq));
        let rest = match done {
            Some(detail) => {
                let text = serde_json::to_string(detail).map_err(|e| StoreError::Invalid {
                    what: "step detail",
                    detail: e.to_string(),
                })?;
                format!("'done', 1, {}, {time}, {time}", param(text.into()))
            }
            None if started => format!("'started', 1, {NULL_TEXT}, {time}, {NULL_INT}"),
            None => format!("'pending', 0, {NULL_TEXT}, {NULL_INT}, {NULL_INT}"),
        };
        rows.push(format!("({job_id}, {s}, {n}, {rest})"));
    }
    let sql = format!(
        "INSERT INTO job_steps ({STEP_INSERT_COLUMNS}) VALUES {}",
        rows.join(", ")
    );
    Ok(Some((sql, values)))
}

/// [`steps_insert`] for a job whose id is known: `$1` is the id.
fn steps_insert_of(
    id: i64,
    job: &NewJob,
    initial: &[InitialStep<'_>],
    now: i64,
) -> Result<Option<Write>, StoreError> {
    Ok(
        steps_insert(job, initial, "$1", 2, now)?.map(|(sql, step_values)| {
            let mut values = vec![Value::from(id)];
            values.extend(step_values);
            (sql, values)
        }),
    )
}

/// Inserts a job and its steps (pending, or as `initial` says); returns its id, read back
/// from its INSERT (on PostgreSQL the steps go in the same statement and take the id the
/// job's `RETURNING` gives). A second open job for the same card is a
/// [`StoreError::Duplicate`]. With `claim` (a lease owner and duration), the job is created
/// already claimed by that worker: `running`, first attempt.
pub(crate) fn create_job_in(
    c: &mut Conn,
    job: &NewJob,
    claim: Option<(&str, Duration)>,
    initial: &[InitialStep<'_>],
) -> Result<i64, StoreError> {
    let now = now_ms();
    let (insert, mut values) = job_insert(c.dialect(), None, job, claim, now)?;
    let duplicate = |e: StoreError| e.duplicate_as(|| "an open job for this card".into());
    let with_steps = if c.dialect() == crate::db::Dialect::Postgres {
        steps_insert(job, initial, "(SELECT id FROM j)", values.len() + 1, now)?
    } else {
        None
    };
    let id = match with_steps {
        Some((steps, step_values)) => {
            values.extend(step_values);
            let sql = format!("WITH j AS ({insert} RETURNING id), s AS ({steps}) SELECT id FROM j");
            c.query_one(&sql, &values).map_err(duplicate)?.int(0)?
        }
        None => {
            let id = c
                .query_one(&format!("{insert} RETURNING id"), &values)
                .map_err(duplicate)?
                .int(0)?;
            if let Some((sql, values)) = steps_insert_of(id, job, initial, now)? {
                c.execute(&sql, &values)?;
            }
            id
        }
    };
    submitted(c, job, id, claim.is_some())
}

/// The columns [`create_job_in`] fills, after `job_id`.
const STEP_INSERT_COLUMNS: &str =
    "job_id, seq, name, state, attempts, detail, started_ms, finished_ms";
/// Typed `NULL`s (a `VALUES` list of only `NULL`s has no type on PostgreSQL).
const NULL_TEXT: &str = "CAST(NULL AS TEXT)";
const NULL_INT: &str = "CAST(NULL AS BIGINT)";

/// Records the submission in the audit log; returns the job's id.
fn submitted(c: &mut Conn, job: &NewJob, id: i64, claimed: bool) -> Result<i64, StoreError> {
    append_in(
        c,
        &NewEntry::new(&job.actor, &format!("job.{}", job.kind), "submitted")
            .card(&job.card_number)
            .detail(
                json!({"job": id, "tenant": job.tenant, "params": job.params, "claimed": claimed}),
            ),
    )?;
    Ok(id)
}

/// Claims a job: pending, or running with an expired lease, or (with `take_over`) running
/// with any lease. Counts the attempt.
pub(crate) fn claim_in(c: &mut Conn, lease: &Lease, take_over: bool) -> Result<Claim, StoreError> {
    let now = now_ms();
    let lock = c.for_update();
    let Some(before) = c.query_opt(
        &format!("SELECT state, lease_owner, lease_until_ms FROM jobs WHERE id = $1{lock}"),
        params![lease.job],
    )?
    else {
        return Ok(Claim::NotFound);
    };
    let held = LeaseHeld {
        job: lease.job,
        holder: before.opt_text(1)?,
        until_ms: before.opt_int(2)?,
    };
    let running_unexpired =
        before.text(0)? == JobState::Running.as_str() && held.until_ms.is_some_and(|u| u > now);
    let claimable = if take_over {
        "state IN ('pending', 'running')"
    } else {
        "(state = 'pending' OR (state = 'running' AND lease_until_ms <= $3))"
    };
    let n = c.execute(
        &format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until_ms = $1,
                    lease_owner = $2, updated_ms = $3
             WHERE id = $4 AND {claimable}"
        ),
        params![lease.until(now), &lease.owner, now, lease.job],
    )?;
    let Some(job) = job_in(c, lease.job)? else {
        return Ok(Claim::NotFound);
    };
    Ok(match (n, job.state) {
        (1, _) => Claim::Claimed {
            job,
            took_over: running_unexpired.then_some(held),
        },
        (_, JobState::Done | JobState::Failed) => Claim::Finished(job),
        _ => Claim::Leased(held),
    })
}

/// Checks the lease is still ours and extends it.
pub(crate) fn renew_in(c: &mut Conn, lease: &Lease) -> Result<bool, StoreError> {
    let (sql, values) = renew_sql(lease);
    Ok(c.execute(&sql, &values)? == 1)
}

/// Marks a step started, if the worker still holds the job's lease; `false` otherwise.
pub(crate) fn step_started_in(c: &mut Conn, lease: &Lease, seq: u32) -> Result<bool, StoreError> {
    Ok(c.execute(
        "UPDATE job_steps SET state = 'started', attempts = attempts + 1, started_ms = $1
         WHERE job_id = $2 AND seq = $3 AND state <> 'done'
           AND EXISTS (SELECT 1 FROM jobs WHERE id = $2 AND state = 'running' AND lease_owner = $4)",
        params![now_ms(), lease.job, i64::from(seq), &lease.owner],
    )? == 1)
}

/// The statement that records the steps `done` (sequence and detail) as done and the steps
/// `next` as started (one more attempt each), provided this worker still holds the job's
/// lease: then it changes `done.len() + next.len()` rows, otherwise none. Steps done without
/// a recorded start (steps that do not change the card run without a commit before them)
/// count one attempt too. Without `next` the lease is not checked here: the caller ends the
/// job in the same transaction, and that statement checks it.
pub(crate) fn steps_record_sql(
    lease: &Lease,
    done: &[(u32, &serde_json::Value)],
    next: &[u32],
) -> Result<(String, Vec<Value>), StoreError> {
    let mut values: Vec<Value> = vec![lease.job.into(), now_ms().into()];
    let mut param = |v: Value| {
        values.push(v);
        format!("${}", values.len())
    };
    let mut detail_case = String::from("CASE");
    let mut seqs = Vec::with_capacity(done.len());
    for (seq, detail) in done {
        let text = serde_json::to_string(detail).map_err(|e| StoreError::Invalid {
            what: "step detail",
            detail: e.to_string(),
        })?;
        let s = param(i64::from(*seq).into());
        let d = param(text.into());
        detail_case.push_str(&format!(" WHEN seq = {s} THEN {d}"));
        seqs.push(s);
    }
    let in_done = if seqs.is_empty() {
        "FALSE".to_string()
    } else {
        format!("seq IN ({})", seqs.join(", "))
    };
    let (is_next, which, lease_check) = if next.is_empty() {
        ("FALSE".to_string(), in_done.clone(), String::new())
    } else {
        let n: Vec<String> = next.iter().map(|n| param(i64::from(*n).into())).collect();
        let owner = param(lease.owner.as_str().into());
        let is_next = format!("seq IN ({})", n.join(", "));
        (
            is_next.clone(),
            format!("({in_done} OR ({is_next} AND state <> 'done'))"),
            format!(" AND {}", holds_lease("$1", &owner)),
        )
    };
    let detail_case = if seqs.is_empty() {
        "detail".to_string()
    } else {
        format!("{detail_case} ELSE detail END")
    };
    // The CASE expressions read the rows' values before the update.
    let sql = format!(
        "UPDATE job_steps SET
             state = CASE WHEN {in_done} THEN 'done' ELSE 'started' END,
             detail = {detail_case},
             finished_ms = CASE WHEN {in_done} THEN $2 ELSE finished_ms END,
             started_ms = CASE WHEN {is_next} OR state = 'pending' THEN $2 ELSE started_ms END,
             attempts = CASE WHEN {is_next} OR state = 'pending' THEN attempts + 1 ELSE attempts END
         WHERE job_id = $1 AND {which}{lease_check}"
    );
    Ok((sql, values))
}

/// `EXISTS …`: the worker holds `lease` (parameters `$job` and `$owner`).
pub(crate) fn holds_lease(job: &str, owner: &str) -> String {
    format!("EXISTS (SELECT 1 FROM jobs WHERE id = {job} AND state = 'running' AND lease_owner = {owner})")
}

/// The statement of [`renew_in`] (one row changed while the worker holds the lease).
pub(crate) fn renew_sql(lease: &Lease) -> (String, Vec<Value>) {
    let now = now_ms();
    (
        "UPDATE jobs SET lease_until_ms = $1, updated_ms = $2
         WHERE id = $3 AND state = 'running' AND lease_owner = $4"
            .into(),
        params![lease.until(now), now, lease.job, &lease.owner].to_vec(),
    )
}
pub(crate) fn step_done_in(
    c: &mut Conn,
    job: i64,
    seq: u32,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(detail).map_err(|e| StoreError::Invalid {
        what: "step detail",
        detail: e.to_string(),
    })?;
    c.execute(
        "UPDATE job_steps SET state = 'done', detail = $1, finished_ms = $2
         WHERE job_id = $3 AND seq = $4",
        params![text, now_ms(), job, i64::from(seq)],
    )?;
    Ok(())
}

/// Ends the worker's hold on a job: `pending` (resumable), `done` or `failed`.
pub(crate) fn end_in(
    c: &mut Conn,
    lease: &Lease,
    state: JobState,
    error: Option<&str>,
) -> Result<bool, StoreError> {
    let (sql, values) = end_sql(lease, state, error);
    Ok(c.execute(&sql, &values)? == 1)
}

/// The statement of [`end_in`] (one row changed while the worker holds the lease).
pub(crate) fn end_sql(lease: &Lease, state: JobState, error: Option<&str>) -> (String, Vec<Value>) {
    (
        "UPDATE jobs SET state = $1, error = $2, lease_until_ms = NULL, lease_owner = NULL, updated_ms = $3
         WHERE id = $4 AND state = 'running' AND lease_owner = $5"
            .into(),
        params![state.as_str(), error, now_ms(), lease.job, &lease.owner].to_vec(),
    )
}

impl Store {
    /// A job by id.
    pub fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        self.with_conn(|c| job_in(c, id))
    }

    /// A job's steps, in order.
    pub fn job_steps(&self, id: i64) -> Result<Vec<Step>, StoreError> {
        self.with_conn(|c| steps_in(c, id))
    }

    /// The card's open (pending or running) job, if any.
    pub fn open_job_for_card(&self, card_number: &str) -> Result<Option<Job>, StoreError> {
        self.with_conn(|c| open_job_for_card_in(c, card_number))
    }

    /// Jobs in a state, oldest first, with `id > after`, at most `limit`.
    pub fn jobs_in_state(
        &self,
        state: JobState,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        self.with_conn(|c| {
            c.query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE state = $1 AND id > $2 ORDER BY id LIMIT $3"
                ),
                params![state.as_str(), after, i64::from(limit)],
            )?
            .iter()
            .map(job_of)
            .collect()
        })
    }

    /// The jobs of a card, oldest first.
    pub fn jobs_of_card(&self, card_number: &str) -> Result<Vec<Job>, StoreError> {
        self.with_conn(|c| {
            c.query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE card_number = $1 ORDER BY created_ms, id"
                ),
                params![card_number],
            )?
            .iter()
            .map(job_of)
            .collect()
        })
    }

    /// Creates a job with its steps, audited ("submitted").
    pub fn create_job(&self, job: &NewJob) -> Result<i64, StoreError> {
        self.tx(|c| create_job_in(c, job, None, &[]))
    }
}
