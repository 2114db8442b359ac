//! [`Store`]: the platform's database, SQLite (embedded default) or PostgreSQL (production),
//! opened from a URL, migrated at open, synchronous (servers call it from
//! `spawn_blocking`), cheap to clone and shareable between threads.

pub(crate) mod campaign;
mod group;
pub(crate) mod jobs;
pub(crate) mod ota;
pub(crate) mod outlet;
pub(crate) mod records;
pub(crate) mod ssd;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;

use crate::audit::{self, AuditReport, Entry, NewEntry};
use crate::db::{params, Conn, Dialect, OpenMode};
use crate::error::StoreError;
use crate::schema;

pub use jobs::NewJob;
pub use ota::{CounterCheck, MAX_COUNTER, OTA_SERVER};
pub use records::CategorySpec;

enum Backend {
    Sqlite(Pool<SqliteConnectionManager>),
    Postgres(Pool<crate::db::PgManager>),
}

struct Inner {
    backend: Backend,
    /// The URL without credentials, for messages.
    display: String,
    /// Whether opening created the SQLite file.
    created: bool,
    /// SQLite allows one writer at a time; writers of this process queue here instead of
    /// in SQLite's busy handler, which sleeps and retries.
    sqlite_writer: std::sync::Mutex<()>,
    /// Concurrent write transactions share one transaction and one commit.
    committer: group::Committer,
    /// Job ids taken from PostgreSQL's sequence and not used yet ([`Store::reserve_job_id`]).
    job_ids: std::sync::Mutex<Vec<i64>>,
}

/// Job ids taken from PostgreSQL's sequence at a time.
const JOB_IDS_RESERVED: i64 = 32;

/// A snapshot of the connection pool ([`Store::pool_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Connections open (in use or idle).
    pub connections: u32,
    /// Of those, idle.
    pub idle: u32,
    /// The most the pool opens (`pool=N` of the URL).
    pub max: u32,
}

/// The platform's database. See the crate documentation for the URL forms.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// The key that signs the audit checkpoint in every transaction (see
    /// [`audit`](crate::audit#the-anchored-head)).
    anchor: Option<Arc<dyn kms::SigningKey>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.inner.display)
            .field("audit_anchor", &self.anchor.as_ref().map(|k| k.label()))
            .finish()
    }
}

/// SQLite `synchronous` setting (with WAL journaling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Durable across application crashes; a power loss may lose the last commits.
    Normal,
    /// Durable across power loss (an fsync per commit).
    Full,
}

/// PostgreSQL group commits that may run at the same time, unless `groups=` says otherwise.
const DEFAULT_PG_GROUPS: u32 = 2;

/// Options shared by both backends, read from the URL's query string.
#[derive(Debug)]
struct UrlOptions {
    pool: u32,
    schema: Option<String>,
    sync: Durability,
    /// PostgreSQL: group commits that may run at the same time (`groups=`).
    groups: Option<u32>,
}

fn split_query(rest: &str) -> (&str, Vec<(String, String)>) {
    match rest.split_once('?') {
        None => (rest, Vec::new()),
        Some((base, q)) => (
            base,
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (p.to_string(), String::new()),
                })
                .collect(),
        ),
    }
}

fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// Takes our own options out of a query string; returns the others.
fn take_options(
    query: Vec<(String, String)>,
    default_pool: u32,
) -> Result<(UrlOptions, Vec<(String, String)>), StoreError> {
    let mut o = UrlOptions {
        pool: default_pool,
        schema: None,
        sync: Durability::Normal,
        groups: None,
    };
    let mut rest = Vec::new();
    for (k, v) in query {
        match k.as_str() {
            "pool" => {
                o.pool = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or_else(|| StoreError::BadUrl(format!("pool={v}: want 1 to 256")))?
            }
            "schema" => {
                if !valid_schema(&v) {
                    return Err(StoreError::BadUrl(format!(
                        "schema={v}: want a lower-case SQL identifier"
                    )));
                }
                o.schema = Some(v);
            }
            "groups" => {
                o.groups = Some(
                    v.parse()
                        .ok()
                        .filter(|n| (1..=64).contains(n))
                        .ok_or_else(|| StoreError::BadUrl(format!("groups={v}: want 1 to 64")))?,
                )
            }
            "synchronous" => {
                o.sync = match v.as_str() {
                    "normal" => Durability::Normal,
                    "full" => Durability::Full,
                    _ => {
                        return Err(StoreError::BadUrl(format!(
                            "synchronous={v}: want normal or full"
                        )))
                    }
                }
            }
            _ => rest.push((k, v)),
        }
    }
    Ok((o, rest))
}

/// The database URL with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    redact(url)
}

fn redact(url: &str) -> String {
    // postgres://user:password@host → postgres://user:***@host
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((cred, host)) = rest.split_once('@') {
            if let Some((user, _)) = cred.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_string()
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`:
    ///
    /// * `sqlite:PATH` (also `sqlite://PATH`): a file, WAL journal, foreign keys on.
    ///   Options: `?synchronous=normal` (default: survives a crash of the program; a power
    ///   cut may lose the last commits, which the job engine recovers from the card) or
    ///   `full` (an fsync per commit); `pool=N` connections (default 8).
    /// * `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (also `postgresql://`): options
    ///   `schema=NAME` (created if missing, used as `search_path`), `pool=N` (default 10);
    ///   other query parameters go to the driver.
    ///
    /// The first connection is made directly: a file that cannot be a database, a missing
    /// directory or a server that is down fails at once with one message naming it.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        Self::open_mode(url, OpenMode::Create)
    }

    /// Like [`Store::open`], but never creates: a SQLite file that does not exist (or a
    /// PostgreSQL `schema=` that does not) is an error. For commands that only read, so
    /// that a wrong path does not leave a new empty database behind.
    pub fn open_existing(url: &str) -> Result<Store, StoreError> {
        Self::open_mode(url, OpenMode::Existing)
    }

    /// Whether opening created the database file (SQLite), so callers can say so.
    pub fn created(&self) -> bool {
        self.inner.created
    }

    fn open_mode(url: &str, mode: OpenMode) -> Result<Store, StoreError> {
        let display = redact(url);
        let mut created = false;
        let (backend, group_parallel) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let (path, query) = split_query(rest);
            if path.is_empty() {
                return Err(StoreError::BadUrl("sqlite: needs a file path".into()));
            }
            let (opts, others) = take_options(query, 8)?;
            if let Some((k, _)) = others.first() {
                return Err(StoreError::BadUrl(format!("unknown SQLite option '{k}'")));
            }
            if opts.schema.is_some() {
                return Err(StoreError::BadUrl("schema= is for PostgreSQL".into()));
            }
            if opts.groups.is_some() {
                return Err(StoreError::BadUrl(
                    "groups= is for PostgreSQL (SQLite has one writer)".into(),
                ));
            }
            let sync = match opts.sync {
                Durability::Normal => "NORMAL",
                Durability::Full => "FULL",
            };
            let init = format!(
                "PRAGMA busy_timeout = 30000; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; \
                 PRAGMA wal_autocheckpoint = 8192;"
            );
            created = crate::db::check_sqlite(std::path::Path::new(path), &display, &init, mode)?;
            let manager = SqliteConnectionManager::file(PathBuf::from(path)).with_init(move |c| {
                // More statements than rusqlite's default cache of 16 are in use.
                c.set_prepared_statement_cache_capacity(256);
                c.execute_batch(&init)
            });
            let pool = Pool::builder()
                .max_size(opts.pool)
                .min_idle(Some(1))
                .connection_timeout(Duration::from_secs(30))
                .build(manager)?;
            (Backend::Sqlite(pool), 1)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (base, query) = split_query(url);
            let (opts, others) = take_options(query, 10)?;
            let mut driver_url = base.to_string();
            if !others.is_empty() {
                driver_url.push('?');
                let q: Vec<String> = others.iter().map(|(k, v)| format!("{k}={v}")).collect();
                driver_url.push_str(&q.join("&"));
            }
            let config: postgres::Config = driver_url
                .parse()
                .map_err(|e: postgres::Error| StoreError::BadUrl(e.to_string()))?;
            let mut first = crate::db::check_postgres(&config, &display)?;
            if let Some(s) = &opts.schema {
                // The schema must exist before connections use it as their search_path.
                match mode {
                    OpenMode::Create => {
                        first.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{s}\""))?
                    }
                    OpenMode::Existing => {
                        let found = first.query_opt(
                            "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
                            &[s],
                        )?;
                        if found.is_none() {
                            return Err(StoreError::Unavailable {
                                target: display,
                                reason: format!("there is no schema {s}"),
                            });
                        }
                    }
                }
            }
            drop(first);
            let driver_config: tokio_postgres::Config = driver_url
                .parse()
                .map_err(|e: postgres::Error| StoreError::BadUrl(e.to_string()))?;
            let manager = crate::db::PgManager::new(driver_config, opts.schema.clone());
            let pool = Pool::builder()
                .max_size(opts.pool)
                .min_idle(Some(1))
                .connection_timeout(Duration::from_secs(30))
                // A check on every checkout is one more round trip per transaction; a dead
                // connection fails the statement instead (jobs stay resumable) and the
                // pool drops it (`has_broken`).
                .test_on_check_out(false)
                .build(manager)?;
            // Several groups at once overlap their round trips; each holds a connection.
            let groups = opts.groups.unwrap_or(DEFAULT_PG_GROUPS).min(opts.pool);
            (Backend::Postgres(pool), groups as usize)
        } else {
            return Err(StoreError::BadUrl(format!("'{display}'")));
        };
        let store = Store {
            inner: Arc::new(Inner {
                backend,
                display,
                created,
                sqlite_writer: std::sync::Mutex::new(()),
                committer: group::Committer::new(group_parallel),
                job_ids: std::sync::Mutex::default(),
            }),
            anchor: None,
        };
        store.with_conn(schema::migrate)?;
        Ok(store)
    }

    /// This store, signing the audit log's checkpoint (entry count and head hash) with
    /// `key` in every transaction that appends, so that `audit verify` with the key detects
    /// entries removed at the end (see [`audit`](crate::audit#the-anchored-head)). Every
    /// component that appends should use the same key; entries appended without it are
    /// reported as not anchored.
    pub fn with_audit_anchor(mut self, key: Arc<dyn kms::SigningKey>) -> Store {
        self.anchor = Some(key);
        self
    }

    /// Which engine this is.
    pub fn dialect(&self) -> Dialect {
        match self.inner.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The connection pool now (r2d2's `state()`), for monitoring (`/metrics`).
    pub fn pool_state(&self) -> PoolState {
        let (state, max) = match &self.inner.backend {
            Backend::Sqlite(p) => (p.state(), p.max_size()),
            Backend::Postgres(p) => (p.state(), p.max_size()),
        };
        PoolState {
            connections: state.connections,
            idle: state.idle_connections,
            max,
        }
    }

    pub(crate) fn conn(&self) -> Result<Conn, StoreError> {
        crate::db::timed(crate::db::Call::Other, || {
            Ok(match &self.inner.backend {
                Backend::Sqlite(p) => Conn::Sqlite(p.get()?),
                Backend::Postgres(p) => Conn::Postgres(p.get()?),
            })
        })
    }

    pub(crate) fn with_conn<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut c = self.conn()?;
        f(&mut c)
    }

    /// Writes `writes` atomically and returns the rows each changed: on PostgreSQL as one
    /// statement on its own ([`Conn::execute_all`](crate::db::Conn): one round trip, no
    /// `BEGIN`/`COMMIT`; PostgreSQL flushes concurrent commits together itself), on SQLite
    /// as a transaction of the group commit. For writes that record no audit entry and
    /// whose statements carry their own conditions (a lease), since nothing can be rolled
    /// back after a count is seen.
    pub(crate) fn write_atomic(
        &self,
        writes: &[(String, Vec<crate::db::Value>)],
    ) -> Result<Vec<u64>, StoreError> {
        match self.dialect() {
            Dialect::Postgres => {
                let counts = self.with_conn(|c| c.execute_all(writes))?;
                crate::db::count_commit();
                Ok(counts)
            }
            Dialect::Sqlite => self.tx(|c| c.execute_all(writes)),
        }
    }

    /// An id for a job about to be created in a write transaction, so that creating it needs
    /// no answer from the database (`None` on SQLite, where that costs nothing: the job
    /// takes the next id as it is inserted). On PostgreSQL the ids come from the jobs'
    /// sequence, [`JOB_IDS_RESERVED`] at a time per process: an id is unique, but ids do
    /// not say in which order jobs of different processes were created (`created_ms` does),
    /// and a process that stops leaves the rest of its ids unused.
    pub(crate) fn reserve_job_id(&self) -> Result<Option<i64>, StoreError> {
        if self.dialect() == Dialect::Sqlite {
            return Ok(None);
        }
        let mut ids = self
            .inner
            .job_ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ids.is_empty() {
            let rows = self.with_conn(|c| {
                c.query(
                    "SELECT nextval(pg_get_serial_sequence('jobs', 'id'))
                     FROM generate_series(1, $1)",
                    params![JOB_IDS_RESERVED],
                )
            })?;
            // Handed out lowest first.
            for r in rows.iter().rev() {
                ids.push(r.int(0)?);
            }
        }
        Ok(ids.pop())
    }

    /// Runs `f` in a transaction, grouped with the other writers of this process that start
    /// meanwhile (one commit for all, see [`group`]); the audit entries it queued are chained
    /// in that transaction, before this returns. `f`'s error undoes only `f`'s statements.
    pub(crate) fn tx<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        self.inner.committer.run(self, f)
    }

    /// This process's SQLite writer lock (SQLite allows one writer at a time); `None` on
    /// PostgreSQL.
    fn sqlite_writer(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        match self.inner.backend {
            Backend::Sqlite(_) => Some(
                self.inner
                    .sqlite_writer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            ),
            Backend::Postgres(_) => None,
        }
    }

    /// Chains the audit entries of a group inside its transaction `c`, and signs the new
    /// head when the store has an audit key.
    fn seal_in_group(&self, c: &mut Conn, queued: &[audit::Queued]) -> Result<(), StoreError> {
        audit::seal_in(c, queued, self.anchor.as_deref())
    }

    /// The migrations applied, as `(version, name)`.
    pub fn schema_versions(&self) -> Result<Vec<(i64, String)>, StoreError> {
        self.with_conn(|c| {
            c.query(
                "SELECT version, name FROM schema_migrations ORDER BY version",
                params![],
            )?
            .iter()
            .map(|r| Ok((r.int(0)?, r.text(1)?)))
            .collect()
        })
    }

    /// Applies migrations again (a no-op when the schema is current); returns the versions
    /// applied.
    pub fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        self.with_conn(schema::migrate)
    }

    /// Appends an audit entry in its own transaction, chained at once (with the checkpoint
    /// when the store has an audit key).
    pub fn audit_append(&self, entry: &NewEntry) -> Result<Entry, StoreError> {
        // The group signs the new head before it commits.
        self.tx(|c| audit::chain_in(c, entry))
    }

    /// Audit entries with `id > after`, in order, at most `limit`.
    pub fn audit_entries(&self, after: i64, limit: u32) -> Result<Vec<Entry>, StoreError> {
        self.with_conn(|c| {
            c.query(
                &format!(
                    "SELECT {} FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2",
                    audit::ENTRY_COLUMNS
                ),
                params![after, i64::from(limit)],
            )?
            .iter()
            .map(audit::entry_of)
            .collect()
        })
    }

    /// Every audit entry about one card, in order.
    pub fn audit_for_card(&self, card_number: &str) -> Result<Vec<Entry>, StoreError> {
        self.with_conn(|c| {
            c.query(
                &format!(
                    "SELECT {} FROM audit_log WHERE card_number = $1 ORDER BY id",
                    audit::ENTRY_COLUMNS
                ),
                params![card_number],
            )?
            .iter()
            .map(audit::entry_of)
            .collect()
        })
    }

    /// Walks the whole audit chain and reports the first bad entry (see [`crate::audit`]).
    /// The checkpoint is read but not checked: see [`Store::audit_verify_anchored`].
    pub fn audit_verify(&self) -> Result<AuditReport, StoreError> {
        self.with_conn(|c| audit::verify(c, 1000, None))
    }

    /// [`Store::audit_verify`], and checks the signed checkpoint with the audit key's public
    /// key (DER `SubjectPublicKeyInfo`): its signature, and that the chain has the entries
    /// it counts, ending in the hash it signed. Detects entries removed at the end.
    pub fn audit_verify_anchored(&self, public_key: &[u8]) -> Result<AuditReport, StoreError> {
        let key = pki::PublicKey::from_spki_der(public_key).map_err(|e| StoreError::Invalid {
            what: "audit key",
            detail: e.to_string(),
        })?;
        self.with_conn(|c| audit::verify(c, 1000, Some(&key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn url_options_never_panic(q in ".{0,60}") {
            let (_, pairs) = split_query(&q);
            let _ = take_options(pairs, 4);
            let _ = redact(&q);
        }

        #[test]
        fn only_identifiers_are_schemas(s in ".{0,70}") {
            if valid_schema(&s) {
                prop_assert!(s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'));
                prop_assert!(!s.contains('"'));
            }
        }
    }

    #[test]
    fn url_options() {
        let (base, q) = split_query("postgres://u@h/db?schema=t_1&pool=3&sslmode=disable");
        assert_eq!(base, "postgres://u@h/db");
        let (o, rest) = take_options(q, 10).unwrap();
        assert_eq!(o.schema.as_deref(), Some("t_1"));
        assert_eq!(o.pool, 3);
        assert_eq!(rest, vec![("sslmode".to_string(), "disable".to_string())]);
        assert!(take_options(vec![("schema".into(), "x\"; DROP".into())], 1).is_err());
        assert!(take_options(vec![("pool".into(), "0".into())], 1).is_err());
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
    }

    /// Entries queued by transactions on several threads are all chained, once each, in a
    /// chain that verifies.
    #[test]
    fn concurrent_appends_are_sealed_together() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("t.db").display());
        let store = Store::open(&url).unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..50 {
                        store
                            .tx(|c| {
                                audit::append_in(
                                    c,
                                    &NewEntry::new("t", &format!("e.{t}.{i}"), "ok"),
                                )
                            })
                            .unwrap();
                    }
                });
            }
        });
        let report = store.audit_verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.first_bad);
        assert_eq!(report.entries, 400);
        let mut actions: Vec<String> = store
            .audit_entries(0, 1000)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        actions.sort();
        actions.dedup();
        assert_eq!(actions.len(), 400);
    }

    /// A member whose work fails leaves neither its statements nor its audit entries; the
    /// other members of its group commit theirs.
    #[test]
    fn a_failed_member_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("t.db").display());
        let store = Store::open(&url).unwrap();
        store
            .tx(|c| audit::append_in(c, &NewEntry::new("t", "kept", "ok")))
            .unwrap();
        let failed = store.tx(|c| -> Result<(), StoreError> {
            audit::append_in(c, &NewEntry::new("t", "undone", "ok"))?;
            Err(StoreError::BadUrl("abort".into()))
        });
        assert!(failed.is_err());
        let entries = store.audit_entries(0, 10).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].action, "kept");
        assert!(store.audit_verify().unwrap().is_ok());
    }

    /// A PostgreSQL store in a fresh schema (`None`, with a note, when no server answers and
    /// `CARDWRIGHT_PG_TESTS` is not 1).
    fn postgres_store() -> Option<Store> {
        let url = std::env::var("CARDWRIGHT_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("u_{:016x}", rand_u64());
        match Store::open(&format!("{url}?schema={schema}&pool=2")) {
            Ok(s) => Some(s),
            Err(e) if std::env::var("CARDWRIGHT_PG_TESTS").is_ok_and(|v| v == "1") => {
                panic!("CARDWRIGHT_PG_TESTS=1 but PostgreSQL at {url} is not usable: {e}")
            }
            Err(e) => {
                eprintln!("skipping a PostgreSQL test: {e}");
                None
            }
        }
    }

    fn rand_u64() -> u64 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("random");
        u64::from_le_bytes(b)
    }

    fn tenant_insert(id: &str) -> (String, Vec<crate::db::Value>) {
        (
            "INSERT INTO tenants (id, name, role, created_ms) VALUES ($1, $1, 'CI', 0)".into(),
            params![id].to_vec(),
        )
    }

    fn tenants(store: &Store) -> Vec<String> {
        store
            .with_conn(|c| c.query("SELECT id FROM tenants ORDER BY id", params![]))
            .unwrap()
            .iter()
            .map(|r| r.text(0).unwrap())
            .collect()
    }

    /// On PostgreSQL, `BEGIN`, savepoints and writes nobody reads the answer of are held back
    /// and sent with the next statement: a held-back write that fails is the error of the
    /// statement that sent it (here the `COMMIT`), and the transaction leaves nothing; the
    /// connection is then as good as new.
    #[test]
    fn a_held_back_write_that_fails_fails_its_transaction() {
        let Some(store) = postgres_store() else {
            return;
        };
        store
            .with_conn(|c| c.execute_all(&[tenant_insert("a")]))
            .unwrap();
        let r = store.with_conn(|c| {
            c.begin()?;
            c.execute_all_later(&[tenant_insert("b")])?;
            c.savepoint("m1")?;
            // A duplicate key: fails only when it reaches the server.
            c.execute_all_later(&[tenant_insert("c"), tenant_insert("a")])?;
            c.commit()
        });
        assert!(
            matches!(
                &r,
                Err(StoreError::Duplicate(_)) | Err(StoreError::Postgres(_))
            ),
            "{r:?}"
        );
        assert_eq!(tenants(&store), ["a"]);
        // Held back, then sent with the first statement that needs an answer.
        let seen = store
            .with_conn(|c| {
                c.begin()?;
                c.execute_all_later(&[tenant_insert("d")])?;
                let n = c
                    .query_one("SELECT count(*) FROM tenants", params![])?
                    .int(0)?;
                c.commit()?;
                Ok::<_, StoreError>(n)
            })
            .unwrap();
        assert_eq!(seen, 2);
        assert_eq!(tenants(&store), ["a", "d"]);
        // Outside a transaction nothing is held back.
        store
            .with_conn(|c| c.execute_all_later(&[tenant_insert("e")]))
            .unwrap();
        assert_eq!(tenants(&store), ["a", "d", "e"]);
    }

    /// Writes whose answers nobody reads wait for the seal (PostgreSQL); when one of them
    /// fails — an error, or not the rows it had to change — only its member is undone: it
    /// gets its own error, the others of its group commit, with their audit entries. Every
    /// third member also reads (a round trip of its own), so that groups both of data only
    /// (no savepoints: the others sent again) and mixed (undone to a savepoint) occur.
    fn members_undone_at_the_seal_alone(store: &Store) {
        store
            .with_conn(|c| c.execute_all(&[tenant_insert("taken")]))
            .unwrap();
        let results: Vec<(usize, Result<(), StoreError>)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|t| {
                    let store = store.clone();
                    s.spawn(move || {
                        (0..40)
                            .map(|i| {
                                let n = t * 40 + i;
                                let write = match n % 5 {
                                    // A duplicate key: fails when it reaches the server.
                                    3 => tenant_insert("taken"),
                                    // Changes no row where it had to change one.
                                    4 => (
                                        "UPDATE tenants SET name = 'x' WHERE id = $1".into(),
                                        params![format!("none-{n}")].to_vec(),
                                    ),
                                    _ => tenant_insert(&format!("t{n:03}")),
                                };
                                let r = store.tx(|c| {
                                    // Every third member reads first: its work is not data
                                    // (its group keeps savepoints).
                                    if n % 3 == 0 {
                                        c.query("SELECT 1", params![])?;
                                    }
                                    c.execute_all_expecting("test write", &[write], &[Some(1)])?;
                                    audit::append_in(
                                        c,
                                        &NewEntry::new("t", &format!("w.{n:03}"), "ok"),
                                    )
                                });
                                (n, r)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let mut kept = Vec::new();
        for (n, r) in &results {
            match (n % 5, r) {
                (3, Err(e)) => assert!(e.is_unique_violation(), "{n}: {e}"),
                (
                    4,
                    Err(StoreError::RowsChanged {
                        expected: 1,
                        changed: 0,
                        ..
                    }),
                ) => {}
                (0..=2, Ok(())) => kept.push(format!("t{n:03}")),
                _ => panic!("{n}: {r:?}"),
            }
        }
        let mut want = kept.clone();
        want.push("taken".into());
        want.sort();
        assert_eq!(tenants(store), want);
        let mut audited: Vec<String> = store
            .audit_entries(0, 1000)
            .unwrap()
            .into_iter()
            .map(|e| e.action.trim_start_matches("w.").to_string())
            .map(|n| format!("t{n}"))
            .collect();
        audited.sort();
        kept.sort();
        assert_eq!(audited, kept);
        assert!(store.audit_verify().unwrap().is_ok());
    }

    #[test]
    fn members_undone_at_the_seal_alone_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("t.db").display());
        members_undone_at_the_seal_alone(&Store::open(&url).unwrap());
    }

    #[test]
    fn members_undone_at_the_seal_alone_postgres() {
        let Some(store) = postgres_store() else {
            return;
        };
        let count = || {
            (
                group::UNDONE_AT_SEAL.load(std::sync::atomic::Ordering::Relaxed),
                group::REPLAYED_AT_SEAL.load(std::sync::atomic::Ordering::Relaxed),
            )
        };
        let before = count();
        members_undone_at_the_seal_alone(&store);
        // Failed members shared their group, of both kinds (else the test proves nothing).
        let after = count();
        assert!(
            after.0 > before.0,
            "undone to a savepoint: {before:?} {after:?}"
        );
        assert!(
            after.1 > before.1,
            "the others sent again: {before:?} {after:?}"
        );
    }

    #[test]
    fn bad_urls() {
        for u in [
            "mysql://x",
            "sqlite:",
            "sqlite:/tmp/x?bogus=1",
            "sqlite:/tmp/x?schema=a",
        ] {
            assert!(matches!(Store::open(u), Err(StoreError::BadUrl(_))), "{u}");
        }
    }
}
