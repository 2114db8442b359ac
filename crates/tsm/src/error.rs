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
    /// The job is being run by another worker (its lease has not expired).
    #[error("job {0} is running elsewhere (lease not expired)")]
    JobLeased(i64),
    /// The request is malformed (bad card number, missing package…).
    #[error("invalid request: {0}")]
    Invalid(String),
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
            C::Invalid(m)
                if m.contains("does not confirm the new keys")
                    || m.starts_with("exchange with the card") =>
            {
                Error::Interrupted(TransportError::Other(m))
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

/// Result of workflow operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
