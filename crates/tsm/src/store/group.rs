//! Group commit: the write transactions that this process's workers start while another
//! group is committing share **one** database transaction and **one** commit.
//!
//! A worker joins the group that is forming. The first to join leads it: it waits for a free
//! slot (meanwhile the others join), closes the group, opens the transaction (`BEGIN
//! IMMEDIATE` on SQLite, under the process's writer lock) and lets every member run its own
//! work, in turn, on the group's connection, each inside its own savepoint, so that one
//! member's failure undoes only its own statements (and drops the audit entries it recorded);
//! a member alone in its group needs no savepoint (its failure rolls the transaction back).
//! When all have run, the leader chains the audit entries they recorded
//! ([`audit::seal_in`], with the signed checkpoint) and commits. Each member then returns its
//! own result, or, if the commit failed, the commit's error: nothing of the group is in the
//! database.
//!
//! **Members as data** (PostgreSQL): a member whose work needed no answer — every statement
//! held back for the next round trip ([`Conn::execute_all_later`], a job written under a
//! reserved id, [`Conn::execute_all_expecting`] for writes on condition), its savepoint
//! included — leaves its statements with the group instead of sending them with the next
//! member's; they go with the seal's first round trip. A group of such members is then two
//! round trips whatever its size (the seal's `SELECT` of the audit head, and the `COMMIT`).
//! When every member's work was data, their savepoints are not sent at all (one statement
//! and one subtransaction less per member); when one of their statements fails (an error,
//! or not the rows it had to change), the leader rolls the transaction back and sends the
//! others' statements again in a new one. In a group where some member's work made round
//! trips, the savepoints are sent, and a deferred member's failure rolls back to its
//! savepoint, which undoes the deferred members after it too, whose statements are sent
//! again. Either way the failed member gets its own error and the others commit
//! (`store::tests::members_undone_at_the_seal_alone_*`). A member whose work made round
//! trips sends what it still holds at the end of its turn, so that a failure there is its
//! own.
//!
//! Each member's work runs on its own thread (it borrows that thread's data); only the
//! connection moves between them. With one worker a group is that worker alone and costs
//! what a plain transaction costs; with eight, the commit (an fsync on
//! PostgreSQL or on SQLite with `synchronous=full`) and the audit seal are paid once for
//! several of them. SQLite runs one group at a time (one writer; the next group gathers
//! while one commits); PostgreSQL runs up to `groups=` (default 2) at once, each on its own
//! connection, and a group's slot is freed before its commit, so that the next group's
//! members run while it commits. The database still orders groups against each other and
//! other processes (row locks, the audit head, SQLite's write lock). Two groups is the
//! default on PostgreSQL: groups that run at the same time queue for the audit head, and
//! since a transaction's statements are pipelined ([`crate::db`]) a member costs one or two
//! round trips, so a few larger groups commit more than many small ones (with 8 workers on
//! 2 cores, paired runs: 723–969 writes/s with `groups=2`, 649–747 with 1; the figures and
//! what binds are in `docs/DESIGN.md`).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::Store;
use crate::audit;
use crate::db::{Conn, Held};
use crate::error::StoreError;

/// The process's group commit (one per [`Store`]).
pub(crate) struct Committer {
    /// The group that new writers join; replaced by a fresh one when its leader closes it.
    forming: Mutex<Arc<Group>>,
    /// Groups running their members' work now, and how many may.
    running: Mutex<usize>,
    slot_freed: Condvar,
    parallel: usize,
}

/// One running group's place among the [`Committer`]'s `parallel` slots.
struct Slot<'c>(&'c Committer);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *lock(&self.0.running) -= 1;
        self.0.slot_freed.notify_one();
    }
}

impl Committer {
    /// A group commit where up to `parallel` groups run their work at the same time, each
    /// on its own connection (SQLite: 1, it has one writer; PostgreSQL: several, so that
    /// round trips overlap while commits are still shared).
    pub(crate) fn new(parallel: usize) -> Committer {
        Committer {
            forming: Mutex::default(),
            running: Mutex::new(0),
            slot_freed: Condvar::new(),
            parallel: parallel.max(1),
        }
    }

    /// Waits for a free slot.
    fn slot(&self) -> Slot<'_> {
        let mut n = lock(&self.running);
        while *n >= self.parallel {
            n = self
                .slot_freed
                .wait(n)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *n += 1;
        Slot(self)
    }
}

#[derive(Default)]
struct Group {
    state: Mutex<State>,
    changed: Condvar,
    /// The group's connection, in its transaction while the group runs.
    conn: Mutex<Option<Conn>>,
}

#[derive(Default)]
struct State {
    /// Members that joined (the leader included); fixed once the group is closed.
    joined: usize,
    /// Whether a leader was chosen.
    led: bool,
    /// The transaction is open (or failed to open): members may run.
    open: Option<Result<(), String>>,
    /// Members whose work has run (successfully or not).
    finished: usize,
    /// The audit entries each member recorded, in the order they ran.
    audit: Vec<(usize, Vec<audit::Queued>)>,
    /// Whether a member chained an entry itself (the head moved: sign it).
    chained: bool,
    /// The members whose work made no round trip: their statements (savepoint first),
    /// sent with the seal's, in the order they ran.
    deferred: Vec<(usize, Vec<Held>)>,
    /// Members undone at the seal because one of their statements failed, and why.
    failed: HashMap<usize, StoreError>,
    /// The commit's outcome.
    outcome: Option<Result<(), String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Group {
    fn wait_until(&self, mut done: impl FnMut(&State) -> bool) -> MutexGuard<'_, State> {
        let mut st = lock(&self.state);
        while !done(&st) {
            st = self
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        st
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut lock(&self.state));
        self.changed.notify_all();
    }

    /// Runs one member's work on the group's connection, inside savepoint `m{index}` (rolled
    /// back if the work fails; left for the commit to release otherwise). A member `alone` in
    /// its group needs no savepoint (one round trip less): its failure rolls the whole
    /// transaction back.
    fn run_member<T, E: From<StoreError>>(
        &self,
        index: usize,
        alone: bool,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut member = Member {
            group: self,
            conn: lock(&self.conn),
            index,
            savepoint: (!alone).then(|| format!("m{index}")),
            opened: false,
            audit: Vec::new(),
            chained: false,
            deferred: Vec::new(),
        };
        let conn = member
            .conn
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable {
                target: "group commit".into(),
                reason: "the group's connection is gone".into(),
            })?;
        let (held_before, trips) = (conn.held_count(), conn.round_trips());
        if let Some(name) = &member.savepoint {
            conn.savepoint(name)?;
        }
        member.opened = true;
        audit::start_queue();
        let mut r = f(conn);
        let (queued, chained) = audit::take_queue();
        // Work that needed no answer (PostgreSQL: all of it held back, the savepoint
        // included; `BEGIN` may be held before it) waits for the seal's round trip;
        // work that made round trips sends what it still holds now, so that a failure
        // there is its own.
        let pure = conn.round_trips() == trips;
        if r.is_ok() && !pure && conn.held_count() > 0 {
            if let Err(e) = conn.flush() {
                r = Err(e.into());
            }
        }
        if r.is_err() {
            let undone = undo(conn, member.savepoint.as_deref());
            member.opened = false;
            undone?;
        } else {
            member.opened = false;
            member.audit = queued;
            member.chained = chained;
            if pure && conn.held_count() > held_before {
                member.deferred = conn.take_held(held_before);
            }
        }
        r
    }
}

/// Undoes a member's statements: back to its savepoint, or the whole transaction when it
/// had none (it was alone).
fn undo(conn: &mut Conn, savepoint: Option<&str>) -> Result<(), StoreError> {
    match savepoint {
        Some(name) => conn.rollback_to(name),
        None => conn.rollback(),
    }
}

/// One member's turn on the connection. Dropped at the end of the turn, even by a panic
/// in the member's work: then its savepoint is rolled back, and in any case the member
/// counts as finished, so that the leader never waits for it forever.
struct Member<'g> {
    group: &'g Group,
    index: usize,
    conn: MutexGuard<'g, Option<Conn>>,
    /// `None` when the member is alone in its group.
    savepoint: Option<String>,
    /// The savepoint is open and the work did not end (a panic): roll it back.
    opened: bool,
    audit: Vec<audit::Queued>,
    chained: bool,
    /// The work's statements when it made no round trip (see [`State::deferred`]).
    deferred: Vec<Held>,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        if self.opened {
            if let Some(c) = self.conn.as_mut() {
                let _ = undo(c, self.savepoint.as_deref());
            }
        }
        let audit = std::mem::take(&mut self.audit);
        let deferred = std::mem::take(&mut self.deferred);
        let (index, chained) = (self.index, self.chained);
        self.group.update(|st| {
            st.finished += 1;
            if !audit.is_empty() {
                st.audit.push((index, audit));
            }
            if !deferred.is_empty() {
                st.deferred.push((index, deferred));
            }
            st.chained |= chained;
        });
    }
}

fn commit_error(reason: &str) -> StoreError {
    StoreError::Unavailable {
        target: "the database".into(),
        reason: format!("the commit failed, nothing was written: {reason}"),
    }
}

impl Committer {
    /// Runs `f` as a member of the forming group; returns once the group has committed.
    pub(crate) fn run<T, E: From<StoreError>>(
        &self,
        store: &Store,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let (group, index, leader) = {
            let forming = lock(&self.forming);
            let group = Arc::clone(&forming);
            let mut st = lock(&group.state);
            st.joined += 1;
            let leader = !st.led;
            st.led = true;
            let index = st.joined;
            drop(st);
            (group, index, leader)
        };
        if leader {
            self.lead(store, &group, index, f)
        } else {
            let st = group.wait_until(|st| st.open.is_some());
            if let Some(Err(reason)) = &st.open {
                return Err(commit_error(reason).into());
            }
            drop(st);
            let r = group.run_member(index, false, f);
            let mut st = group.wait_until(|st| st.outcome.is_some());
            if let Some(e) = st.failed.remove(&index) {
                return Err(e.into());
            }
            match &st.outcome {
                Some(Err(reason)) => Err(commit_error(reason).into()),
                _ => r,
            }
        }
    }

    fn lead<T, E: From<StoreError>>(
        &self,
        store: &Store,
        group: &Group,
        index: usize,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        // The groups before run their members' work while this one gathers members; on
        // SQLite the one before also commits meanwhile (one writer at a time).
        let running = self.slot();
        let writer = store.sqlite_writer();
        *lock(&self.forming) = Arc::new(Group::default());
        let opened = store.conn().and_then(|mut c| c.begin().map(|()| c));
        match opened {
            Ok(c) => {
                *lock(&group.conn) = Some(c);
                group.update(|st| st.open = Some(Ok(())));
            }
            Err(e) => {
                group.update(|st| {
                    st.open = Some(Err(e.to_string()));
                    st.outcome = Some(Err(e.to_string()));
                });
                return Err(e.into());
            }
        }
        // The group is closed: nobody joins it any more.
        let alone = lock(&group.state).joined == 1;
        let mine = group.run_member(index, alone, f);
        if alone && mine.is_err() {
            // Rolled back already; the connection goes back to the pool.
            lock(&group.conn).take();
            drop(running);
            drop(writer);
            group.update(|st| st.outcome = Some(Ok(())));
            return mine;
        }
        let mut st = group.wait_until(|st| st.finished == st.joined);
        let audit = std::mem::take(&mut st.audit);
        let deferred = std::mem::take(&mut st.deferred);
        let (chained, joined) = (st.chained, st.joined);
        drop(st);
        let outcome = {
            let mut conn = lock(&group.conn);
            let c = conn.as_mut().expect("the leader put the connection there");
            let all_data = deferred.len() == joined;
            let end = seal(store, group, c, alone, all_data, audit, deferred, chained);
            // The next group may run its work while this one commits (PostgreSQL: the
            // commit's WAL flush overlaps the next group's statements; what the next
            // group must not see uncommitted it waits for on row locks, the audit head
            // included).
            drop(running);
            let end = match end {
                Ok(()) => c.commit(),
                Err(e) => {
                    let _ = c.rollback();
                    Err(e)
                }
            };
            // Back to the pool (a connection whose ROLLBACK failed is discarded by it).
            conn.take();
            end
        };
        drop(writer);
        let mine_failed = lock(&group.state).failed.remove(&index);
        group
            .update(|st| st.outcome = Some(outcome.as_ref().map_err(ToString::to_string).copied()));
        match (outcome, mine_failed) {
            (_, Some(e)) => Err(e.into()),
            (Ok(()), None) => mine,
            (Err(e), None) => Err(e.into()),
        }
    }
}

/// Deferred members undone at the seal to their savepoint (tests check that the path ran).
#[cfg(test)]
pub(crate) static UNDONE_AT_SEAL: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);
/// Deferred members undone at the seal by sending the others' statements again.
#[cfg(test)]
pub(crate) static REPLAYED_AT_SEAL: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Sends the deferred members' statements with the seal's first round trip and seals. When
/// one of those statements fails (an error, or not the rows it had to change), its member
/// is undone and the seal made again without its audit entries; the failed member gets its
/// own error ([`State::failed`]), the others commit. When every member's work is data
/// (`all_data`), their savepoints are not sent at all (a statement and a subtransaction
/// less each): a failure rolls the transaction back and the others' statements are sent
/// again in a new one. Otherwise the failed member is undone to its savepoint, which undoes
/// the deferred members after it too, and theirs are sent again. A member alone in its
/// group has no savepoint: its failure rolls the transaction back.
#[allow(clippy::too_many_arguments)]
fn seal(
    store: &Store,
    group: &Group,
    c: &mut Conn,
    alone: bool,
    all_data: bool,
    audit: Vec<(usize, Vec<audit::Queued>)>,
    mut deferred: Vec<(usize, Vec<Held>)>,
    chained: bool,
) -> Result<(), StoreError> {
    let replay = !alone && all_data && deferred.iter().all(|(_, h)| begins_with_savepoint(h));
    if replay {
        for (_, held) in &mut deferred {
            held.remove(0);
        }
    }
    let mut failed: Vec<usize> = Vec::new();
    loop {
        let first = c.held_count();
        // Where each deferred member's statements start among those held.
        let mut starts = Vec::with_capacity(deferred.len());
        let mut at = first;
        for (index, held) in &deferred {
            starts.push((*index, at));
            at += held.len();
        }
        c.hold(
            deferred
                .iter()
                .flat_map(|(_, h)| h.iter().cloned())
                .collect(),
        );
        let entries: Vec<audit::Queued> = audit
            .iter()
            .filter(|(i, _)| !failed.contains(i))
            .flat_map(|(_, q)| q.iter().cloned())
            .collect();
        // The seal's first round trip carries them; when it makes none, an empty one does.
        let sealed = if entries.is_empty() {
            c.flush().and_then(|()| match chained {
                true => store.seal_in_group(c, &entries),
                false => Ok(()),
            })
        } else {
            store.seal_in_group(c, &entries)
        };
        let Err(e) = sealed else {
            return Ok(());
        };
        // Whose statement failed: a deferred member's, or else the group's.
        let Some(pos) = c.failed_held().filter(|p| *p >= first && *p < at) else {
            return Err(e);
        };
        let k = starts
            .iter()
            .rposition(|(_, start)| *start <= pos)
            .expect("a position among the deferred members'");
        let index = starts[k].0;
        if alone {
            // Nothing else to keep: the caller rolls back.
            lock(&group.state).failed.insert(index, e);
            return Err(StoreError::Unavailable {
                target: "group commit".into(),
                reason: "the only member failed".into(),
            });
        }
        if replay {
            c.rollback()?;
            c.begin()?;
            deferred.remove(k);
            #[cfg(test)]
            REPLAYED_AT_SEAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            c.rollback_to(&format!("m{index}"))?;
            deferred.drain(..=k);
            #[cfg(test)]
            UNDONE_AT_SEAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        lock(&group.state).failed.insert(index, e);
        failed.push(index);
    }
}

/// Whether a deferred member's statements begin with its savepoint.
fn begins_with_savepoint(held: &[Held]) -> bool {
    matches!(held.first(), Some(Held::Control(sql)) if sql.starts_with("SAVEPOINT "))
}
