//! Errors: [`StoreError`] for the database, [`Error`] for everything a workflow can hit.

use transport::TransportError;

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no supported backend or is malformed.
    #[error("database URL: {0} (use sqlite:PATH or postgres://USER@HOST:PORT/DB)")]
    BadUrl(String),
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] postgres::Error),
    /// The database cannot be opened or reached; found at open, at once (the first
    /// connection is made directly, not through the pool's retries).
    #[error("database {target}: {reason}")]
    Unavailable {
        /// The URL (without password).
        target: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// No connection could be taken from the pool.
    #[error("database connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// A record with the same key already exists.
    #[error("{0} already exists")]
    Duplicate(String),
    /// No such record.
    #[error("{0} not found")]
    NotFound(String),
    /// The stored data is not what this version of Cardwright writes.
    #[error("unexpected data in the database ({what}): {detail}")]
    Corrupt {
        /// Where.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// The database holds a schema newer than this program knows.
    #[error("the database schema is at version {found}, newer than this program's {known}: upgrade Cardwright")]
    SchemaTooNew {
        /// Highest migration applied in the database.
        found: i64,
        /// Highest migration this program has.
        known: i64,
    },
    /// The audit log's checkpoint could not be signed with the audit key.
    #[error("audit checkpoint: {0}")]
    AuditAnchor(String),
    /// A write did not change the rows it had to (its condition no longer held: a job's
    /// lease taken by another worker, typically); what it wrote was undone.
    #[error("{what}: {expected} rows were to change, {changed} did")]
    RowsChanged {
        /// Which write.
        what: &'static str,
        /// The rows it had to change.
        expected: u64,
        /// The rows it changed.
        changed: u64,
    },
    /// A value given to the store is not acceptable.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// Which value.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

impl StoreError {
    /// Maps unique-constraint violations to [`StoreError::Duplicate`] with `what`.
    pub(crate) fn duplicate_as(self, what: impl FnOnce() -> String) -> StoreError {
        if self.is_unique_violation() {
            StoreError::Duplicate(what())
        } else {
            self
        }
    }

    pub(crate) fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::ConstraintViolation
                    && matches!(
                        e.extended_code,
                        rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                            | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    )
            }
            StoreError::Postgres(e) => {
                e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION)
            }
            StoreError::Duplicate(_) => true,
            _ => false,
        }
    }
}

/// Why a workflow (write, rewrite, clear, application management) stopped.
///
/// The variants before [`Error::Interrupted`] are found **before anything on the card or in
/// the database changed**, except where the text says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The key store failed (unknown category or version, retired key, HSM error…).
    #[error("key store: {0}")]
    Kms(#[from] kms::Error),
    /// No card with this number is registered.
    #[error("unknown card number")]
    UnknownCard,
    /// No such card category.
    #[error("unknown card category '{0}'")]
    UnknownCategory(String),
    /// The card belongs to another category than the request says.
    #[error("the card is of category '{registered}', not '{requested}'")]
    WrongCategory {
        /// Category in the database.
        registered: String,
        /// Category in the request.
        requested: String,
    },
    /// The card in the reader is not the card the request (or the interrupted job) is about.
    #[error("wrong card in the reader: {0}")]
    WrongCard(String),
    /// The card is not in the state the request needs.
    #[error("the card is {state}: {need}")]
    WrongState {
        /// Its state in the database.
        state: String,
        /// What the request needs.
        need: &'static str,
    },
    /// None of the key sets that may be on the card opened a secure channel. Since the card
    /// cryptogram is checked before EXTERNAL AUTHENTICATE, this spent none of the card's
    /// authentication attempts.
    #[error("the card's keys do not match ({0}); no authentication attempt was spent")]
    KeysDoNotMatch(String),
    /// The card refused authentication in a way that may have counted against its retry
    /// limit; it is never retried automatically.
    #[error("authentication refused by the card: {0}")]
    AuthenticationRefused(String),
    /// The tenant may not do this.
    #[error("tenant '{tenant}' may not {action}")]
    Forbidden {
        /// Acting tenant.
        tenant: String,
        /// What it tried.
        action: String,
    },
    /// Another job for the same card is not finished; resume it first.
    #[error("job {0} for this card is not finished; resume it")]
    CardBusy(i64),
    /// No such job.
    #[error("job {0} not found")]
    UnknownJob(i64),
    /// The job is finished (done or failed) and cannot run again.
    #[error("job {id} is already {state}")]
    JobFinished {
        /// Job id.
        id: i64,
        /// Its final state.
        state: String,
    },
    /// The job is being run by another worker (its lease has not expired), or this worker
    /// lost its lease to another.
    #[error("{0}")]
    JobLeased(LeaseHeld),
    /// A partner was refused (audited).
    #[error("partner '{partner}' may not {action}: {reason}")]
    Refused {
        /// The partner.
        partner: String,
        /// What it tried.
        action: String,
        /// The rule it broke.
        reason: crate::ssd::auth::Refusal,
    },
    /// A Delegated Management receipt the CI does not accept (audited): it does not
    /// verify, repeats or goes back on the card's confirmation counter, or names another
    /// card.
    #[error("receipt refused: {0}")]
    ReceiptRefused(String),
    /// An SSD key version that may be used only for its own renewal (expired or
    /// compromised).
    #[error("key version {kvn:#04x} of the SSD may only be renewed: {why}")]
    KeyUnusable {
        /// The key version.
        kvn: u8,
        /// Expired (when) or compromised (the reason).
        why: String,
    },
    /// No SSD with this AID is recorded for the card.
    #[error("no such SSD")]
    UnknownSsd,
    /// The SSD has no key version (none to mark compromised or to renew).
    #[error("the SSD has no key version")]
    NoKeyVersion,
    /// Not built yet.
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),
    /// The request is malformed (bad card number, missing package…).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The campaign is not in a state that allows this (start a cancelled one, retry one
    /// without failed cards).
    #[error("{0}")]
    CampaignConflict(String),
    /// An outlet's install record contradicts what the platform holds: another hash for a
    /// sequence number already stored, or a link to a previous record that is not the one
    /// stored (or not stored yet). Nothing of the upload was stored.
    #[error("outlet record conflict: {0}")]
    RecordConflict(String),
    /// The card keeps its own key diversification data and it is not the one derived
    /// from the card number.
    #[error(
        "the card refused to take the key diversification data ({0}) and its own is different"
    )]
    KddNotSettable(String),
    /// The exchange with the card broke (card pulled out, reader gone). The job is left
    /// resumable: run it again with the card back in a reader.
    #[error("interrupted: {0}; run the job again to finish it")]
    Interrupted(#[source] TransportError),
    /// The card refused a command; the job stopped and the database records the card
    /// exactly as it is (see the job's steps).
    #[error("{0}")]
    Card(#[source] gpclient::ClientError),
}

impl From<gpclient::ClientError> for Error {
    /// Decided by the variant alone, never by the message: an error that leaves the
    /// command's outcome unknown keeps the job resumable; a refusal fails it.
    fn from(e: gpclient::ClientError) -> Self {
        use gpclient::ClientError as C;
        match e {
            C::Transport(t) => Error::Interrupted(t),
            C::WrongKeys { .. } => Error::KeysDoNotMatch("card cryptogram mismatch".into()),
            // An answer that does not verify (R-MAC, padding, a PUT KEY answer that does not
            // confirm the keys, a garbled exchange) leaves the command's outcome unknown,
            // like a lost answer: the job stays resumable and the next run checks the card.
            C::Scp(e) => Error::Interrupted(TransportError::Other(format!(
                "the card's answer does not verify: {e}"
            ))),
            e @ (C::Exchange { .. } | C::ResponseUnverified { .. } | C::KeysNotConfirmed(_)) => {
                Error::Interrupted(TransportError::Other(e.to_string()))
            }
            other => Error::Card(other),
        }
    }
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        Error::Interrupted(e)
    }
}

impl Error {
    /// Whether the job stays resumable after this error (the card may be half-way).
    pub fn is_interruption(&self) -> bool {
        matches!(self, Error::Interrupted(_))
    }
}

/// Who holds a job's lease, and until when: what a refused claim says so that the operator
/// knows when the job can run again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHeld {
    /// The job.
    pub job: i64,
    /// The worker holding the lease (`pid N on HOST`, and a random token), when known.
    pub holder: Option<String>,
    /// When the lease expires (Unix ms), when known.
    pub until_ms: Option<i64>,
}

impl LeaseHeld {
    /// The job, holder and expiry unknown (the lease was lost to another worker).
    pub fn job(job: i64) -> Self {
        LeaseHeld {
            job,
            holder: None,
            until_ms: None,
        }
    }
}

impl std::fmt::Display for LeaseHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "job {} is running elsewhere (lease not expired)",
            self.job
        )?;
        if let Some(h) = &self.holder {
            write!(f, ": held by {h}")?;
        }
        if let Some(until) = self.until_ms {
            let left = until.saturating_sub(crate::model::now_ms()).max(0) / 1000;
            write!(
                f,
                "; it can run again after {} ({} min {} s from now), or take it over now if that worker is dead",
                utc_text(until),
                left / 60,
                left % 60
            )?;
        }
        Ok(())
    }
}

/// `2026-12-03 23:40:12 UTC` for a Unix time in milliseconds.
pub(crate) fn utc_text(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{ms} ms after 1970"),
    }
}

/// Result of workflow operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::StatusWord;
    use gpclient::{ClientError as C, Operation};
    use proptest::prelude::*;

    /// Every text-carrying gpclient error, with `text` wherever it carries free text, and
    /// whether the job must stay resumable after it.
    fn errors(text: &str, op: Operation, sw: u16) -> Vec<(C, bool)> {
        let sw = StatusWord(sw);
        vec![
            (
                C::Exchange {
                    op,
                    detail: text.into(),
                },
                true,
            ),
            (
                C::ResponseUnverified {
                    op,
                    source: scp::Error::MacMismatch,
                },
                true,
            ),
            (
                C::KeysNotConfirmed(scp::Error::Malformed {
                    what: "PUT KEY response",
                    detail: text.into(),
                }),
                true,
            ),
            (C::KeysNotConfirmed(scp::Error::KcvMismatch), true),
            (C::Transport(TransportError::Other(text.into())), true),
            (C::refused(op, text, sw), false),
            (C::KeysLocked { op, sw }, false),
            (C::NoSecureChannel(op), false),
            (C::Invalid(text.into()), false),
            (C::WrongKeys { hint: text.into() }, false),
        ]
    }

    const OPS: [Operation; 15] = [
        Operation::Select,
        Operation::InitializeUpdate,
        Operation::ExternalAuthenticate,
        Operation::PutKey,
        Operation::StoreData,
        Operation::InstallForLoad,
        Operation::InstallForInstall,
        Operation::InstallForExtradition,
        Operation::InstallForPersonalization,
        Operation::Load,
        Operation::Delete,
        Operation::SetStatus,
        Operation::GetStatus,
        Operation::GetData,
        Operation::Apdu,
    ];

    proptest! {
        /// Whether a job resumes depends on the error's variant only: any message text
        /// (including the texts that used to be matched) gives the same answer.
        #[test]
        fn resumability_is_decided_by_variant_not_text(
            text in prop_oneof![
                Just("does not confirm the new keys".to_string()),
                Just("exchange with the card".to_string()),
                Just("INITIALIZE UPDATE".to_string()),
                ".{0,40}",
            ],
            op in 0usize..OPS.len(),
            sw in any::<u16>(),
        ) {
            for (e, resumable) in errors(&text, OPS[op], sw) {
                let shown = e.to_string();
                prop_assert_eq!(Error::from(e).is_interruption(), resumable, "{}", shown);
            }
        }
    }
}
