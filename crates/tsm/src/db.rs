//! The thin SQL layer both backends share: one statement text with `$1 … $n` parameters,
//! typed parameters, rows of typed cells, and transactions.
//!
//! Every query of the crate is written once. SQLite receives it with `$n` rewritten to its
//! own `?n` (same meaning: the n-th parameter); PostgreSQL receives it as is. Both keep each
//! statement prepared per connection (rusqlite's `prepare_cached`; [`PgClient`] for
//! PostgreSQL, with the parameter types given), so the server parses and plans it once and
//! each execution is one round trip.
//! The column types are restricted to what both agree on: `BIGINT` (i64), `TEXT`, and
//! bytes (`BLOB` / `BYTEA`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use postgres::types::{IsNull, ToSql, Type};
use r2d2::PooledConnection;
use r2d2_sqlite::SqliteConnectionManager;

use crate::error::StoreError;

thread_local! {
    static DATABASE_USE: std::cell::Cell<DatabaseUse> = const {
        std::cell::Cell::new(DatabaseUse {
            time: Duration::ZERO,
            statements: 0,
            commits: 0,
        })
    };
}

/// What a thread has spent in database calls: for benchmarks and metrics, which take the
/// difference of two readings of [`thread_database_use`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatabaseUse {
    /// Time inside statements, transaction control and pool check-outs (not the code
    /// between them).
    pub time: Duration,
    /// Statements run (queries, updates, batches; not transaction control).
    pub statements: u64,
    /// Transactions committed (statements outside a transaction commit on their own and
    /// are not counted here).
    pub commits: u64,
}

impl std::ops::Add for DatabaseUse {
    type Output = DatabaseUse;
    fn add(self, o: DatabaseUse) -> DatabaseUse {
        DatabaseUse {
            time: self.time + o.time,
            statements: self.statements + o.statements,
            commits: self.commits + o.commits,
        }
    }
}

impl std::ops::Sub for DatabaseUse {
    type Output = DatabaseUse;
    /// The use between two readings (saturating).
    fn sub(self, o: DatabaseUse) -> DatabaseUse {
        DatabaseUse {
            time: self.time.saturating_sub(o.time),
            statements: self.statements.saturating_sub(o.statements),
            commits: self.commits.saturating_sub(o.commits),
        }
    }
}

/// Commits of this process: transactions committed plus writes that committed on their
/// own (outside a transaction), every store, every thread.
static COMMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts a write that committed on its own.
pub(crate) fn count_commit() {
    COMMITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The commits of this process so far (transactions, and writes outside one): for
/// benchmarks and metrics, which take the difference of two readings.
pub fn commits_total() -> u64 {
    COMMITS.load(std::sync::atomic::Ordering::Relaxed)
}

/// This thread's database use since it started (cheap: two clock reads per call).
pub fn thread_database_use() -> DatabaseUse {
    DATABASE_USE.with(std::cell::Cell::get)
}

/// What a timed database call is, for [`DatabaseUse`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Statement,
    Commit,
    Other,
}

/// Runs `f`, adding its duration (and the call) to [`thread_database_use`].
pub(crate) fn timed<T>(call: Call, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let v = f();
    let spent = start.elapsed();
    DATABASE_USE.with(|u| {
        let mut x = u.get();
        x.time += spent;
        match call {
            Call::Statement => x.statements += 1,
            Call::Commit => {
                x.commits += 1;
                count_commit();
            }
            Call::Other => {}
        }
        u.set(x);
    });
    v
}

/// A write statement and its parameters, to run later or with others
/// ([`Conn::execute_all`], [`Conn::execute_all_later`]).
pub(crate) type Write = (String, Vec<Value>);

/// A query parameter. The type is kept for `NULL`s too, since PostgreSQL wants it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v:?}"),
            Value::Text(v) => write!(f, "{v:?}"),
            Value::Bytes(Some(b)) => write!(f, "<{} bytes>", b.len()),
            Value::Bytes(None) => f.write_str("None"),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(Some(v.to_string()))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Some(v))
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(Some(v.clone()))
    }
}
impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        Value::Text(v.map(str::to_string))
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Value::Text(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(Some(v.to_vec()))
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(Some(v))
    }
}
impl From<Option<Vec<u8>>> for Value {
    fn from(v: Option<Vec<u8>>) -> Self {
        Value::Bytes(v)
    }
}

/// Builds a `&[Value]` parameter list.
macro_rules! params {
    () => { &[] as &[$crate::db::Value] };
    ($($v:expr),+ $(,)?) => { &[$($crate::db::Value::from($v)),+] as &[$crate::db::Value] };
}
pub(crate) use params;

impl Value {
    fn pg_type(&self) -> Type {
        match self {
            Value::Int(_) => Type::INT8,
            Value::Text(_) => Type::TEXT,
            Value::Bytes(_) => Type::BYTEA,
        }
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Int(Some(v)) => v.to_sql(ty, out),
            Value::Text(Some(v)) => v.to_sql(ty, out),
            Value::Bytes(Some(v)) => v.to_sql(ty, out),
            _ => Ok(IsNull::Yes),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT8 | Type::TEXT | Type::BYTEA)
    }

    postgres::types::to_sql_checked!();
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Int(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bytes(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            _ => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

/// One cell of a result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// One result row; the getters name the column in their errors.
#[derive(Debug, Clone)]
pub(crate) struct Row(Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell, StoreError> {
        self.0.get(i).ok_or_else(|| StoreError::Corrupt {
            what: format!("column {i}"),
            detail: "missing".into(),
        })
    }
    fn wrong(i: usize, want: &str, got: &Cell) -> StoreError {
        StoreError::Corrupt {
            what: format!("column {i}"),
            detail: format!("expected {want}, found {got:?}"),
        }
    }
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.cell(i)? {
            Cell::Int(v) => Ok(*v),
            c => Err(Self::wrong(i, "an integer", c)),
        }
    }
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            c => Err(Self::wrong(i, "an integer or NULL", c)),
        }
    }
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.cell(i)? {
            Cell::Text(v) => Ok(v.clone()),
            c => Err(Self::wrong(i, "text", c)),
        }
    }
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(v) => Ok(Some(v.clone())),
            c => Err(Self::wrong(i, "text or NULL", c)),
        }
    }
    pub fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.cell(i)? {
            Cell::Bytes(v) => Ok(v.clone()),
            c => Err(Self::wrong(i, "bytes", c)),
        }
    }
    pub fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Bytes(v) => Ok(Some(v.clone())),
            c => Err(Self::wrong(i, "bytes or NULL", c)),
        }
    }
}

/// Which SQL engine a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (embedded, one file).
    Sqlite,
    /// PostgreSQL (and wire-compatible engines).
    Postgres,
}

/// Whether opening a database may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a missing SQLite file (and a missing PostgreSQL schema): for commands that
    /// write and for servers.
    Create,
    /// Open only what exists: for commands that only read, so that a wrong path is an error
    /// instead of a new empty database.
    Existing,
}

/// What is wrong with a SQLite file, in words (rusqlite's text names no file).
fn sqlite_reason(path: &Path, e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode as C;
    let p = path.display();
    match e.sqlite_error_code() {
        Some(C::NotADatabase) => format!("{p} is not an SQLite database"),
        Some(C::ReadOnly) => format!(
            "{p} cannot be written (read-only file or directory): the platform writes to its database"
        ),
        Some(C::CannotOpen) => format!(
            "cannot open {p} (its directory must be writable for the WAL journal)"
        ),
        Some(C::DatabaseBusy | C::DatabaseLocked) => {
            format!("{p} is locked by another process")
        }
        _ => format!("{p}: {e}"),
    }
}

/// Opens the SQLite file once, directly, with the pool's set-up (`init`), so that a path
/// that cannot be a database fails at once with one message naming the file, instead of
/// the pool retrying until its timeout. Returns whether the file was created.
pub(crate) fn check_sqlite(
    path: &Path,
    target: &str,
    init: &str,
    mode: OpenMode,
) -> Result<bool, StoreError> {
    use rusqlite::OpenFlags;
    let fail = |reason: String| StoreError::Unavailable {
        target: target.to_string(),
        reason,
    };
    let p = path.display();
    let created = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(fail(format!("{p} is a directory, not a database file")))
        }
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if mode == OpenMode::Existing {
                return Err(fail(format!(
                    "there is no database file {p} (a command that only reads creates none; \
                     check --db or CARDWRIGHT_DB)"
                )));
            }
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(fail(format!("{} is not a directory", dir.display()))),
                Err(_) => {
                    return Err(fail(format!(
                        "the directory {} does not exist",
                        dir.display()
                    )))
                }
            }
            true
        }
        Err(e) => return Err(fail(format!("cannot read {p}: {}", io_reason(&e)))),
    };
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if created {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = rusqlite::Connection::open_with_flags(path, flags)
        .map_err(|e| fail(sqlite_reason(path, &e)))?;
    // SQLite falls back to read-only on a write-protected file; the platform must write.
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(fail(format!(
            "{p} is read-only: the platform writes to its database (check the file's permissions)"
        )));
    }
    // A file that is not a database passes the open and fails at the first read.
    conn.execute_batch(init)
        .and_then(|()| {
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map_err(|e| fail(sqlite_reason(path, &e)))?;
    Ok(created)
}

/// An I/O error's text without the `(os error N)` suffix.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Connects once, directly, to PostgreSQL with a short connection timeout (unless the URL
/// sets one), so that a server that is down or a wrong URL fails at once with one message.
/// The connection is returned for the caller's first statements.
pub(crate) fn check_postgres(
    config: &postgres::Config,
    target: &str,
) -> Result<postgres::Client, StoreError> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(5));
    }
    config.connect(postgres::NoTls).map_err(|e| {
        let reason = match e.as_db_error() {
            // The server answered: its own message (wrong database, user, password…).
            Some(db) => format!("PostgreSQL refused the connection: {}", db.message()),
            None => {
                // The driver's text ("error connecting to server") leaves the cause to
                // `source()`: add each cause it does not already say.
                let mut text = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    let c_text = c.to_string();
                    if !text.contains(&c_text) {
                        text = format!("{text}: {c_text}");
                    }
                    cause = c.source();
                }
                format!("cannot connect to PostgreSQL: {text}")
            }
        };
        StoreError::Unavailable {
            target: target.to_string(),
            reason,
        }
    })
}

/// A pooled connection to either engine.
pub(crate) enum Conn {
    Sqlite(PooledConnection<SqliteConnectionManager>),
    Postgres(PooledConnection<PgManager>),
}

/// Statements a PostgreSQL connection keeps prepared; past that the cache starts afresh
/// (statements built for a number of rows vary).
const PG_STATEMENT_CACHE: usize = 256;

/// A PostgreSQL connection (tokio-postgres, driven by a runtime of its own on the calling
/// thread) with its prepared statements (by SQL text) and the statements it holds back to
/// send with the next one that needs an answer.
///
/// Prepared statements: the server parses and plans a statement once per connection, not
/// at every execution, as rusqlite's `prepare_cached` does for SQLite.
///
/// Pipelining: inside a transaction, `BEGIN`, `SAVEPOINT` and writes whose answer nobody
/// reads ([`Conn::execute_later`]) are not sent on their own; they go in the same network
/// write as the next statement, which PostgreSQL runs after them, in order, and their
/// answers are read with its answer. A transaction of `BEGIN`, three statements and
/// `COMMIT` is then three round trips instead of five. An error in a held-back statement is
/// the error of the call that sent it; the transaction is aborted by it, as it would have
/// been had it been sent alone (and nothing after it runs, since PostgreSQL refuses every
/// statement of an aborted transaction until its end). Outside a transaction nothing is
/// held back: every statement there commits on its own and must be answered before the
/// next.
pub(crate) struct PgClient {
    /// Boxed: a runtime is large, and [`Conn`] holds a connection of either engine.
    runtime: Box<tokio::runtime::Runtime>,
    client: tokio_postgres::Client,
    prepared: HashMap<String, (Vec<Type>, tokio_postgres::Statement)>,
    held: Vec<Held>,
    in_transaction: bool,
    /// Round trips made (every [`PgClient::send`]).
    round_trips: u64,
    /// Which of the held statements the last round trip sent failed first (its position
    /// among them), when one did.
    failed_held: Option<usize>,
}

/// A statement held back for the next round trip.
#[derive(Clone)]
pub(crate) enum Held {
    /// Transaction control (simple query protocol, no parameters).
    Control(String),
    /// A prepared write and its parameters.
    Write(tokio_postgres::Statement, Vec<Value>),
    /// Writes combined into one statement that answers their row counts, and the counts
    /// they must answer (`None`: any); another count fails it ([`StoreError::RowsChanged`]).
    Expecting(tokio_postgres::Statement, Vec<Value>, Expected),
}

/// The row counts a held combined write must answer, and what it is (for the error).
#[derive(Clone)]
pub(crate) struct Expected {
    what: &'static str,
    counts: Vec<Option<u64>>,
}

impl Expected {
    /// The first count that is not as expected, as an error.
    fn check(&self, counts: &[u64]) -> Result<(), StoreError> {
        for (want, got) in self.counts.iter().zip(counts) {
            if let Some(want) = want {
                if want != got {
                    return Err(StoreError::RowsChanged {
                        what: self.what,
                        expected: *want,
                        changed: *got,
                    });
                }
            }
        }
        Ok(())
    }
}

impl Held {
    /// Sends the statement (at the first poll, before any other await: the order of the
    /// first polls is the order on the wire) and reads its answer.
    async fn run(&self, client: &tokio_postgres::Client) -> Result<(), StoreError> {
        match self {
            Held::Control(sql) => Ok(client.batch_execute(sql).await?),
            Held::Write(st, values) => client
                .execute(st, &sql_params(values))
                .await
                .map(|_| ())
                .map_err(Into::into),
            Held::Expecting(st, values, expected) => {
                let row = client.query_one(st, &sql_params(values)).await?;
                let counts = (0..row.len())
                    .map(|i| {
                        row.try_get::<_, i64>(i)
                            .map(|n| u64::try_from(n).unwrap_or(0))
                    })
                    .collect::<Result<Vec<u64>, _>>()?;
                expected.check(&counts)
            }
        }
    }
}

impl PgClient {
    /// Connects; with `schema`, sets it as the `search_path`.
    fn connect(
        config: &tokio_postgres::Config,
        schema: Option<&str>,
    ) -> Result<PgClient, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable {
                target: "PostgreSQL".into(),
                reason: format!("cannot start the connection's runtime: {}", io_reason(&e)),
            })?;
        let (client, connection) = runtime.block_on(config.connect(tokio_postgres::NoTls))?;
        // Runs whenever this thread waits in `block_on` (a current-thread runtime); ends,
        // and the client reports itself closed, when the server goes away.
        runtime.spawn(connection);
        let mut c = PgClient {
            runtime: Box::new(runtime),
            client,
            prepared: HashMap::new(),
            held: Vec::new(),
            in_transaction: false,
            round_trips: 0,
            failed_held: None,
        };
        // Notices ("relation … already exists, skipping" from the migrations' `IF NOT
        // EXISTS` at every start) are not news for the platform's log; warnings still are.
        let mut settings = String::from("SET client_min_messages TO warning");
        if let Some(s) = schema {
            settings.push_str(&format!("; SET search_path TO \"{s}\""));
        }
        c.control(&settings)?;
        Ok(c)
    }

    /// The prepared statement for `sql` with parameters of `types`.
    fn statement(
        &mut self,
        sql: &str,
        types: &[Type],
    ) -> Result<tokio_postgres::Statement, StoreError> {
        if let Some((t, st)) = self.prepared.get(sql) {
            if t == types {
                return Ok(st.clone());
            }
        }
        let st = self.send(|c| c.prepare_typed(sql, types))?;
        if self.prepared.len() >= PG_STATEMENT_CACHE {
            self.prepared.clear();
        }
        self.prepared
            .insert(sql.to_string(), (types.to_vec(), st.clone()));
        Ok(st)
    }

    /// Sends the held-back statements and then `f`'s, in one network write, and waits for
    /// all the answers; the first error is returned (a held-back statement's first).
    fn send<'c, T, F>(
        &'c mut self,
        f: impl FnOnce(&'c tokio_postgres::Client) -> F,
    ) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, postgres::Error>> + 'c,
    {
        let held = std::mem::take(&mut self.held);
        let client = &self.client;
        self.round_trips += 1;
        let (failed, r) = self.runtime.block_on(async {
            let before = held
                .iter()
                .map(|h| Box::pin(h.run(client)) as Pending<'_, (), StoreError>);
            let (results, answer) = in_order(before.collect(), f(client)).await;
            for (i, r) in results.into_iter().enumerate() {
                if let Err(e) = r {
                    return (Some(i), Err(e));
                }
            }
            (None, answer.map_err(StoreError::from))
        });
        self.failed_held = failed;
        r
    }

    /// Runs queries in one round trip (after what is held back), in order; their rows.
    fn query_many(
        &mut self,
        queries: &[(tokio_postgres::Statement, &[Value])],
    ) -> Result<Vec<Vec<postgres::Row>>, StoreError> {
        self.send(|client| async move {
            let all = queries.iter().map(|(st, values)| {
                Box::pin(async move { client.query(st, &sql_params(values)).await })
                    as Pending<'_, Vec<postgres::Row>>
            });
            let (results, ()) = in_order(all.collect(), async {}).await;
            results.into_iter().collect()
        })
    }

    /// A transaction-control statement: `BEGIN` and `SAVEPOINT` are held back for the
    /// next round trip; the others (`COMMIT`, `ROLLBACK`, `RELEASE`…) are sent with what
    /// is held back.
    fn control(&mut self, sql: &str) -> Result<(), StoreError> {
        if sql == "BEGIN" {
            self.in_transaction = true;
            self.held.push(Held::Control(sql.to_string()));
            return Ok(());
        }
        if self.in_transaction && sql.starts_with("SAVEPOINT ") {
            self.held.push(Held::Control(sql.to_string()));
            return Ok(());
        }
        if sql == "COMMIT" || sql == "ROLLBACK" {
            self.in_transaction = false;
        }
        self.send(|c| c.batch_execute(sql))
    }

    /// Holds a write back for the next round trip inside a transaction; outside one, runs
    /// it now.
    fn execute_later(
        &mut self,
        st: tokio_postgres::Statement,
        values: Vec<Value>,
    ) -> Result<(), StoreError> {
        if self.in_transaction {
            self.held.push(Held::Write(st, values));
            Ok(())
        } else {
            let refs = sql_params(&values);
            self.send(|c| c.execute(&st, &refs)).map(|_| ())
        }
    }
}

/// A statement sent, its answer awaited.
type Pending<'a, T, E = postgres::Error> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, E>> + 'a>>;

/// Waits for `first` and then `last`, polling them **in order**: tokio-postgres sends a
/// statement at its future's first poll, so this order is the order on the wire, and all
/// of them leave in one network write.
async fn in_order<'a, T, E, L>(
    mut first: Vec<Pending<'a, T, E>>,
    last: impl std::future::Future<Output = L>,
) -> (Vec<Result<T, E>>, L) {
    let mut results: Vec<Option<Result<T, E>>> = first.iter().map(|_| None).collect();
    let mut last = std::pin::pin!(last);
    let mut answer = None;
    std::future::poll_fn(|cx| {
        for (fut, out) in first.iter_mut().zip(results.iter_mut()) {
            if out.is_none() {
                if let std::task::Poll::Ready(r) = fut.as_mut().poll(cx) {
                    *out = Some(r);
                }
            }
        }
        if answer.is_none() {
            if let std::task::Poll::Ready(r) = last.as_mut().poll(cx) {
                answer = Some(r);
            }
        }
        if answer.is_some() && results.iter().all(Option::is_some) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    (
        results.into_iter().flatten().collect(),
        answer.expect("polled to completion"),
    )
}

/// r2d2's manager of [`PgClient`]s, which use `search_path` when the URL names a schema.
pub(crate) struct PgManager {
    config: tokio_postgres::Config,
    search_path: Option<String>,
}

impl PgManager {
    /// `schema` must be a checked identifier.
    pub(crate) fn new(config: tokio_postgres::Config, schema: Option<String>) -> PgManager {
        PgManager {
            config,
            search_path: schema,
        }
    }
}

impl r2d2::ManageConnection for PgManager {
    type Connection = PgClient;
    type Error = StoreError;

    fn connect(&self) -> Result<PgClient, StoreError> {
        PgClient::connect(&self.config, self.search_path.as_deref())
    }

    fn is_valid(&self, conn: &mut PgClient) -> Result<(), StoreError> {
        conn.send(|c| c.batch_execute(""))
    }

    /// Closed by the server, or left with statements held back or a transaction open (a
    /// caller that did not finish its transaction): not reused.
    fn has_broken(&self, conn: &mut PgClient) -> bool {
        conn.client.is_closed() || !conn.held.is_empty() || conn.in_transaction
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Conn({:?})", self.dialect())
    }
}

/// `$1` → `?1` for SQLite (the same positional meaning).
fn sqlite_sql(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn sqlite_cell(v: rusqlite::types::ValueRef<'_>) -> Cell {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        // No REAL columns in the schema; keep the value visible in errors.
        ValueRef::Real(r) => Cell::Text(r.to_string()),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
    }
}

fn pg_row(row: &postgres::Row) -> Result<Row, StoreError> {
    let mut cells = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_();
        let cell = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?
                .map_or(Cell::Null, Cell::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map_or(Cell::Null, |v| Cell::Int(v.into()))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)?
                .map_or(Cell::Null, |v| Cell::Int(v.into()))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?
                .map_or(Cell::Null, |v| Cell::Int(v.into()))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)?
                .map_or(Cell::Null, Cell::Bytes)
        } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::NAME {
            row.try_get::<_, Option<String>>(i)?
                .map_or(Cell::Null, Cell::Text)
        } else {
            return Err(StoreError::Corrupt {
                what: format!("column {}", col.name()),
                detail: format!("unsupported type {ty}"),
            });
        };
        cells.push(cell);
    }
    Ok(Row(cells))
}

/// `sql` with its parameters `$1…` renumbered to follow `before` others.
fn renumber(sql: &str, before: usize) -> String {
    if before == 0 {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut n = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            n.push(*d);
            chars.next();
        }
        match n.parse::<usize>() {
            Ok(k) => out.push_str(&(k + before).to_string()),
            Err(_) => out.push_str(&n),
        }
    }
    out
}

/// Writes as one PostgreSQL statement (data-modifying `WITH`) that returns the row count
/// of each.
fn combined(writes: &[(String, Vec<Value>)]) -> (String, Vec<Value>) {
    let mut values = Vec::new();
    let mut ctes = Vec::with_capacity(writes.len());
    let mut counts = Vec::with_capacity(writes.len());
    for (i, (sql, v)) in writes.iter().enumerate() {
        ctes.push(format!(
            "s{i} AS ({} RETURNING 1)",
            renumber(sql, values.len())
        ));
        counts.push(format!("(SELECT count(*) FROM s{i})"));
        values.extend(v.iter().cloned());
    }
    let sql = format!("WITH {} SELECT {}", ctes.join(", "), counts.join(", "));
    (sql, values)
}

/// The prepared statement for `sql` and the parameters as the driver takes them.
fn pg_prepared<'p>(
    c: &mut PgClient,
    sql: &str,
    params: &'p [Value],
) -> Result<(tokio_postgres::Statement, Vec<&'p (dyn ToSql + Sync)>), StoreError> {
    let types: Vec<Type> = params.iter().map(Value::pg_type).collect();
    let st = c.statement(sql, &types)?;
    Ok((st, sql_params(params)))
}

/// Parameters as the driver takes them.
fn sql_params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl Conn {
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs a statement that returns rows.
    pub fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        timed(Call::Statement, || self.query_untimed(sql, params))
    }

    fn query_untimed(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(&sqlite_sql(sql))?;
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut cells = Vec::with_capacity(n);
                    for i in 0..n {
                        cells.push(sqlite_cell(r.get_ref(i)?));
                    }
                    out.push(Row(cells));
                }
                Ok(out)
            }
            Conn::Postgres(c) => {
                let (st, values) = pg_prepared(c, sql, params)?;
                let rows = c.send(|client| async move { client.query(&st, &values).await })?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// Runs queries and returns the rows of each, in order. On PostgreSQL they go in one
    /// round trip (pipelined; see [`PgClient`]): for reads that do not depend on each other.
    pub fn query_many(
        &mut self,
        queries: &[(String, Vec<Value>)],
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        match self {
            Conn::Sqlite(_) => queries
                .iter()
                .map(|(sql, values)| self.query(sql, values))
                .collect(),
            Conn::Postgres(c) => timed(Call::Statement, || {
                let mut prepared = Vec::with_capacity(queries.len());
                for (sql, values) in queries {
                    let types: Vec<Type> = values.iter().map(Value::pg_type).collect();
                    prepared.push((c.statement(sql, &types)?, values.as_slice()));
                }
                c.query_many(&prepared)?
                    .iter()
                    .map(|rows| rows.iter().map(pg_row).collect())
                    .collect()
            }),
        }
    }

    /// Runs a statement that returns at most one row.
    pub fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, StoreError> {
        let mut rows = self.query(sql, params)?;
        if rows.len() > 1 {
            return Err(StoreError::Corrupt {
                what: "query".into(),
                detail: format!("{} rows where at most one was expected", rows.len()),
            });
        }
        Ok(rows.pop())
    }

    /// Runs a statement that returns exactly one row.
    pub fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Corrupt {
                what: "query".into(),
                detail: "no row where one was expected".into(),
            })
    }

    /// Runs a statement; returns the number of rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        timed(Call::Statement, || self.execute_untimed(sql, params))
    }

    fn execute_untimed(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(&sqlite_sql(sql))?;
                Ok(st.execute(rusqlite::params_from_iter(params.iter()))? as u64)
            }
            Conn::Postgres(c) => {
                let (st, values) = pg_prepared(c, sql, params)?;
                c.send(|client| async move { client.execute(&st, &values).await })
            }
        }
    }

    /// Runs write statements (INSERT, UPDATE or DELETE, without `RETURNING`) in order and
    /// returns the rows each changed. On PostgreSQL they go as **one** statement (data-
    /// modifying `WITH s0 AS (… RETURNING 1), …`): one round trip, and atomic on its own
    /// outside a transaction. They then all see the database as it was before any of them,
    /// so none may depend on another's effect or change another's rows.
    pub fn execute_all(&mut self, writes: &[(String, Vec<Value>)]) -> Result<Vec<u64>, StoreError> {
        match (self.dialect(), writes) {
            (Dialect::Sqlite, _) => writes
                .iter()
                .map(|(sql, values)| self.execute(sql, values))
                .collect(),
            (Dialect::Postgres, []) => Ok(Vec::new()),
            (Dialect::Postgres, [(sql, values)]) => Ok(vec![self.execute(sql, values)?]),
            (Dialect::Postgres, _) => {
                let (sql, values) = combined(writes);
                let row = self.query_one(&sql, &values)?;
                (0..writes.len())
                    .map(|i| Ok(u64::try_from(row.int(i)?).unwrap_or(0)))
                    .collect()
            }
        }
    }

    /// [`Conn::execute_all`] for writes whose row counts nobody reads, in a transaction: on
    /// PostgreSQL they are sent with the next statement (`COMMIT`, typically) instead of
    /// on their own (see [`PgClient`]); an error comes from that statement's call.
    pub fn execute_all_later(&mut self, writes: &[(String, Vec<Value>)]) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(_) => self.execute_all(writes).map(|_| ()),
            Conn::Postgres(c) => timed(Call::Statement, || {
                let (sql, values) = match writes {
                    [] => return Ok(()),
                    [(sql, values)] => (sql.clone(), values.clone()),
                    _ => combined(writes),
                };
                let types: Vec<Type> = values.iter().map(Value::pg_type).collect();
                let st = c.statement(&sql, &types)?;
                c.execute_later(st, values)
            }),
        }
    }

    /// [`Conn::execute_all`] for writes that must change `expected` rows each (`None`: any
    /// number), whose counts nobody else reads: on SQLite they run and are checked now; on
    /// PostgreSQL, in a transaction, they are held back like [`Conn::execute_all_later`]'s
    /// and checked when their answer comes (then the error is that call's, and the group
    /// commit can tell whose it is, [`Conn::failed_held`]). Another count is
    /// [`StoreError::RowsChanged`]; the writes are not undone by it (the caller's
    /// transaction or savepoint is).
    pub(crate) fn execute_all_expecting(
        &mut self,
        what: &'static str,
        writes: &[Write],
        expected: &[Option<u64>],
    ) -> Result<(), StoreError> {
        let expected = Expected {
            what,
            counts: expected.to_vec(),
        };
        match self {
            Conn::Postgres(c) if c.in_transaction && !writes.is_empty() => {
                timed(Call::Statement, || {
                    let (sql, values) = combined(writes);
                    let types: Vec<Type> = values.iter().map(Value::pg_type).collect();
                    let st = c.statement(&sql, &types)?;
                    c.held.push(Held::Expecting(st, values, expected));
                    Ok(())
                })
            }
            _ => {
                let counts = self.execute_all(writes)?;
                expected.check(&counts)
            }
        }
    }

    /// Takes the statements held back for the next round trip after the first `keep`
    /// (PostgreSQL; none on SQLite, which runs every statement at once), to send them later
    /// with [`Conn::hold`].
    pub(crate) fn take_held(&mut self, keep: usize) -> Vec<Held> {
        match self {
            Conn::Sqlite(_) => Vec::new(),
            Conn::Postgres(c) => {
                let keep = keep.min(c.held.len());
                c.held.split_off(keep)
            }
        }
    }

    /// Holds `held` back for the next round trip, after what is held already.
    pub(crate) fn hold(&mut self, held: Vec<Held>) {
        if let Conn::Postgres(c) = self {
            c.held.extend(held);
        }
    }

    /// How many statements are held back for the next round trip.
    pub(crate) fn held_count(&self) -> usize {
        match self {
            Conn::Sqlite(_) => 0,
            Conn::Postgres(c) => c.held.len(),
        }
    }

    /// Sends what is held back now, with an empty statement (PostgreSQL).
    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        match self {
            Conn::Postgres(c) if !c.held.is_empty() => c.send(|client| client.batch_execute("")),
            _ => Ok(()),
        }
    }

    /// Round trips made on this connection so far (0 on SQLite).
    pub(crate) fn round_trips(&self) -> u64 {
        match self {
            Conn::Sqlite(_) => 0,
            Conn::Postgres(c) => c.round_trips,
        }
    }

    /// When the last round trip failed in a statement that was held back: its position
    /// among those it sent.
    pub(crate) fn failed_held(&self) -> Option<usize> {
        match self {
            Conn::Sqlite(_) => None,
            Conn::Postgres(c) => c.failed_held,
        }
    }

    /// Runs several statements without parameters (migrations).
    pub fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        timed(Call::Statement, || match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(c) => c.send(|client| client.batch_execute(sql)),
        })
    }

    /// One transaction-control statement (prepared once per connection on SQLite).
    fn control(&mut self, sql: &str) -> Result<(), StoreError> {
        let call = if sql == "COMMIT" {
            Call::Commit
        } else {
            Call::Other
        };
        timed(call, || match self {
            Conn::Sqlite(c) => {
                c.prepare_cached(sql)?.execute([])?;
                Ok(())
            }
            Conn::Postgres(c) => c.control(sql),
        })
    }

    /// Runs `f` in a transaction: committed if `f` returns `Ok`, rolled back otherwise.
    /// SQLite takes the write lock at once (`BEGIN IMMEDIATE`), so writers queue instead
    /// of failing with "database is locked" half-way; PostgreSQL runs READ COMMITTED and the
    /// statements that need it lock rows (`FOR UPDATE`).
    pub fn tx<T, E>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.begin()?;
        match f(self) {
            Ok(v) => {
                self.commit()?;
                Ok(v)
            }
            Err(e) => {
                // If even ROLLBACK fails the connection is unusable; the pool's validity
                // check discards it.
                let _ = self.rollback();
                Err(e)
            }
        }
    }

    /// Opens a transaction: SQLite takes the write lock at once (`BEGIN IMMEDIATE`).
    pub(crate) fn begin(&mut self) -> Result<(), StoreError> {
        self.control(match self.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        })
    }

    /// Commits the open transaction; rolls it back if the commit fails.
    pub(crate) fn commit(&mut self) -> Result<(), StoreError> {
        self.control("COMMIT").inspect_err(|_| {
            let _ = self.control("ROLLBACK");
        })
    }

    /// Rolls the open transaction back.
    pub(crate) fn rollback(&mut self) -> Result<(), StoreError> {
        self.control("ROLLBACK")
    }

    /// `SAVEPOINT name` (`name` is ours: letters and digits).
    pub(crate) fn savepoint(&mut self, name: &str) -> Result<(), StoreError> {
        self.control(&format!("SAVEPOINT {name}"))
    }

    /// `RELEASE SAVEPOINT name`: keeps what was done since it.
    pub(crate) fn release(&mut self, name: &str) -> Result<(), StoreError> {
        self.control(&format!("RELEASE SAVEPOINT {name}"))
    }

    /// Undoes what was done since the savepoint, and releases it.
    pub(crate) fn rollback_to(&mut self, name: &str) -> Result<(), StoreError> {
        self.control(&format!("ROLLBACK TO SAVEPOINT {name}"))?;
        self.release(name)
    }

    /// `" FOR UPDATE"` where row locks exist (PostgreSQL); SQLite's write transaction
    /// already excludes other writers.
    pub fn for_update(&self) -> &'static str {
        match self.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumber_shifts_every_parameter() {
        assert_eq!(
            renumber("UPDATE t SET a = $1, b = $12 WHERE c = $2", 0),
            "UPDATE t SET a = $1, b = $12 WHERE c = $2"
        );
        assert_eq!(
            renumber("UPDATE t SET a = $1, b = $12 WHERE c = $2", 9),
            "UPDATE t SET a = $10, b = $21 WHERE c = $11"
        );
        assert_eq!(renumber("SELECT '$' || $1", 3), "SELECT '$' || $4");
    }

    #[test]
    fn placeholders_for_sqlite() {
        assert_eq!(
            sqlite_sql("SELECT a FROM t WHERE b = $1 AND c = $12"),
            "SELECT a FROM t WHERE b = ?1 AND c = ?12"
        );
        assert_eq!(sqlite_sql("SELECT '$'"), "SELECT '$'");
        assert!(matches!(sqlite_sql("SELECT 1"), Cow::Borrowed(_)));
    }

    #[test]
    fn value_debug_hides_bytes() {
        let v = Value::from(vec![1u8, 2, 3]);
        assert_eq!(format!("{v:?}"), "<3 bytes>");
    }
}
