//! Group commit: the write transactions that this process's workers start while another
//! group is committing share **one** database transaction and **one** commit.
//!
//! A worker joins the group that is forming. The first to join leads it: it waits until the
//! group before has committed (meanwhile the others join), closes the group, opens the
//! transaction (`BEGIN IMMEDIATE` on SQLite, under the process's writer lock) and lets every
//! member run its own work, in turn, on the group's connection, each inside its own
//! savepoint, so that one member's failure undoes only its own statements. When all have
//! run, the leader chains the audit entries they queued ([`audit::seal_in`], with the
//! signed checkpoint) and commits. Each member then returns its own result, or, if the
//! commit failed, the commit's error: nothing of the group is in the database.
//!
//! Each member's work runs on its own thread (it borrows that thread's data); only the
//! connection moves between them. With one worker a group is that worker alone and costs
//! what a plain transaction costs plus a savepoint; with eight, the commit (an fsync on
//! PostgreSQL or on SQLite with `synchronous=full`) and the audit seal are paid once for
//! all of them. Groups run one at a time in a process; the database still orders them
//! against other processes (row locks, SQLite's write lock).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::Store;
use crate::audit;
use crate::db::Conn;
use crate::error::StoreError;

/// The process's group commit (one per [`Store`]).
#[derive(Default)]
pub(crate) struct Committer {
    /// The group that new writers join; replaced by a fresh one when its leader closes it.
    forming: Mutex<Arc<Group>>,
    /// Held by the leader of the group that runs and commits.
    running: Mutex<()>,
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
    /// Whether some member queued audit entries or chained one.
    audit: bool,
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

    /// Runs one member's work on the group's connection, inside savepoint `m{index}`.
    fn run_member<T, E: From<StoreError>>(
        &self,
        index: usize,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut member = Member {
            group: self,
            conn: lock(&self.conn),
            savepoint: format!("m{index}"),
            opened: false,
            audit: false,
        };
        let conn = member
            .conn
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable {
                target: "group commit".into(),
                reason: "the group's connection is gone".into(),
            })?;
        conn.savepoint(&member.savepoint)?;
        member.opened = true;
        audit::take_queued();
        let r = f(conn);
        let queued = audit::take_queued();
        let kept = match &r {
            Ok(_) => conn.release(&member.savepoint),
            Err(_) => conn.rollback_to(&member.savepoint),
        };
        member.opened = false;
        member.audit = queued && r.is_ok();
        if let Err(e) = kept {
            // The member's statements may still be in the transaction: fail the group.
            if r.is_ok() {
                let _ = conn.rollback_to(&member.savepoint);
            }
            return Err(e.into());
        }
        r
    }
}

/// One member's turn on the connection. Dropped at the end of the turn, even by a panic
/// in the member's work: then its savepoint is rolled back, and in any case the member
/// counts as finished, so that the leader never waits for it forever.
struct Member<'g> {
    group: &'g Group,
    conn: MutexGuard<'g, Option<Conn>>,
    savepoint: String,
    /// The savepoint is open and neither released nor rolled back.
    opened: bool,
    audit: bool,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        if self.opened {
            if let Some(c) = self.conn.as_mut() {
                let _ = c.rollback_to(&self.savepoint);
            }
        }
        let audit = self.audit;
        self.group.update(|st| {
            st.finished += 1;
            st.audit |= audit;
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
            let r = group.run_member(index, f);
            let st = group.wait_until(|st| st.outcome.is_some());
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
        // The group before commits while this one gathers members.
        let _running = lock(&self.running);
        *lock(&self.forming) = Arc::new(Group::default());
        let writer = store.sqlite_writer();
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
        let mine = group.run_member(index, f);
        let st = group.wait_until(|st| st.finished == st.joined);
        let audit = st.audit;
        drop(st);
        let outcome = {
            let mut conn = lock(&group.conn);
            let c = conn.as_mut().expect("the leader put the connection there");
            let end = if audit {
                store.seal_in_group(c)
            } else {
                Ok(())
            };
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
        group
            .update(|st| st.outcome = Some(outcome.as_ref().map_err(ToString::to_string).copied()));
        match outcome {
            Ok(()) => mine,
            Err(e) => Err(e.into()),
        }
    }
}
