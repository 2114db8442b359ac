//! `DIR/outlet.db` (SQLite): the verified applications, the install journal, the install
//! records and the certificates the module's CA issued. Nothing secret is in it; what must
//! not change unnoticed carries a MAC computed in the token (applications, journal rows,
//! the records' head) or is hash-chained (records). This is the only place that writes SQL.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::records::{self, Fields, Record};
use crate::Error;

/// The schema version this program writes.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS applications (
    name           TEXT PRIMARY KEY,
    title          TEXT NOT NULL,
    version        TEXT NOT NULL,
    provider       TEXT NOT NULL,
    package_sha256 TEXT NOT NULL,
    signer         TEXT NOT NULL,
    not_before_ms  INTEGER NOT NULL,
    not_after_ms   INTEGER NOT NULL,
    manifest_entry TEXT NOT NULL,
    cap            BLOB NOT NULL,
    added_ms       INTEGER NOT NULL,
    mac            BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    card           TEXT PRIMARY KEY,
    application    TEXT NOT NULL,
    package_sha256 TEXT NOT NULL,
    load_file      TEXT NOT NULL,
    instance       TEXT NOT NULL,
    stage          TEXT NOT NULL,
    rollback       TEXT NOT NULL,
    registration   TEXT NOT NULL,
    apdus          INTEGER NOT NULL,
    blocks         INTEGER NOT NULL,
    started_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    mac            BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    seq            INTEGER PRIMARY KEY,
    at_ms          INTEGER NOT NULL,
    outlet         TEXT NOT NULL,
    card           TEXT NOT NULL,
    application    TEXT NOT NULL,
    package_sha256 TEXT NOT NULL,
    result         TEXT NOT NULL,
    code           TEXT NOT NULL,
    detail         TEXT NOT NULL,
    prev_hash      BLOB NOT NULL,
    hash           BLOB NOT NULL,
    synced_ms      INTEGER
);
CREATE TABLE IF NOT EXISTS record_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB NOT NULL,
    mac  BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS issued_certificates (
    serial        BLOB PRIMARY KEY,
    subject       TEXT NOT NULL,
    not_before    INTEGER NOT NULL,
    not_after     INTEGER NOT NULL,
    certificate   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    serial BLOB PRIMARY KEY REFERENCES issued_certificates(serial),
    body   TEXT NOT NULL
);
"#;

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A length-prefixed canonical encoding for MAC inputs: a domain, then each field as a
/// 4-byte big-endian length and its bytes, integers as 8 bytes big-endian.
pub(crate) struct Canon(Vec<u8>);

impl Canon {
    pub(crate) fn new(domain: &str) -> Self {
        Canon(domain.as_bytes().to_vec())
    }
    pub(crate) fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }
    pub(crate) fn text(self, s: &str) -> Self {
        self.bytes(s.as_bytes())
    }
    pub(crate) fn int(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Computes a MAC in the token.
pub(crate) type MacFn<'a> = &'a dyn Fn(&[u8]) -> Result<[u8; 32], Error>;

/// One stored application (a row of `applications`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppRow {
    pub name: String,
    pub title: String,
    pub version: String,
    pub provider: String,
    pub package_sha256: String,
    pub signer: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    /// The manifest's `[[application]]` entry, JSON.
    pub manifest_entry: String,
    pub cap: Vec<u8>,
    pub added_ms: i64,
    pub mac: Vec<u8>,
}

impl AppRow {
    /// What the row's MAC covers (everything but the MAC).
    pub(crate) fn mac_input(&self) -> Vec<u8> {
        Canon::new("cardwright-outlet-application-v1")
            .text(&self.name)
            .text(&self.title)
            .text(&self.version)
            .text(&self.provider)
            .text(&self.package_sha256)
            .text(&self.signer)
            .int(self.not_before_ms)
            .int(self.not_after_ms)
            .text(&self.manifest_entry)
            .bytes(&self.cap)
            .int(self.added_ms)
            .finish()
    }
}

/// A catalog line: an application without its CAP bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppSummary {
    pub name: String,
    pub title: String,
    pub version: String,
    pub provider: String,
    pub package_sha256: String,
    pub size: u64,
}

/// An install in progress (a row of `journal`): written before the first APDU that changes
/// the card, updated after each stage, deleted with the record that ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JournalRow {
    pub card: String,
    pub application: String,
    pub package_sha256: String,
    /// Load file AID, hex.
    pub load_file: String,
    /// Instance AID, hex.
    pub instance: String,
    /// `started`, `loaded`, `installed`, `registering`, `personalized`.
    pub stage: String,
    /// Empty, or the code of the card's refusal that must be rolled back.
    pub rollback: String,
    /// The keys registered so far, JSON (`[RegisteredKey]`).
    pub registration: String,
    pub apdus: u64,
    pub blocks: u64,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub mac: Vec<u8>,
}

impl JournalRow {
    /// What the row's MAC covers.
    pub(crate) fn mac_input(&self) -> Vec<u8> {
        Canon::new("cardwright-outlet-journal-v1")
            .text(&self.card)
            .text(&self.application)
            .text(&self.package_sha256)
            .text(&self.load_file)
            .text(&self.instance)
            .text(&self.stage)
            .text(&self.rollback)
            .text(&self.registration)
            .int(self.apdus as i64)
            .int(self.blocks as i64)
            .int(self.started_ms)
            .int(self.updated_ms)
            .finish()
    }
}

/// The records' head as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
    pub mac: Vec<u8>,
}

/// The database (one connection behind a mutex: the module serves one card at a time).
#[derive(Debug)]
pub(crate) struct Db {
    conn: Mutex<Connection>,
}

fn hash32(v: Vec<u8>) -> Result<[u8; 32], Error> {
    <[u8; 32]>::try_from(v.as_slice())
        .map_err(|_| Error::Tampered(format!("a stored hash of {} bytes, not 32", v.len())))
}

const RECORD_COLUMNS: &str = "seq, at_ms, outlet, card, application, package_sha256, result, code, detail, prev_hash, hash, synced_ms";

fn record_of(r: &Row) -> rusqlite::Result<(Record, Vec<u8>, Vec<u8>)> {
    let prev: Vec<u8> = r.get(9)?;
    let hash: Vec<u8> = r.get(10)?;
    let synced: Option<i64> = r.get(11)?;
    Ok((
        Record {
            seq: r.get::<_, i64>(0)? as u64,
            at_ms: r.get(1)?,
            outlet: r.get(2)?,
            card: r.get(3)?,
            application: r.get(4)?,
            package_sha256: r.get(5)?,
            result: r.get(6)?,
            code: r.get(7)?,
            detail: r.get(8)?,
            prev_hash: apdu::hex(&prev),
            hash: apdu::hex(&hash),
            synced: synced.is_some(),
        },
        prev,
        hash,
    ))
}

const JOURNAL_COLUMNS: &str = "card, application, package_sha256, load_file, instance, stage, rollback, registration, apdus, blocks, started_ms, updated_ms, mac";

fn journal_of(r: &Row) -> rusqlite::Result<JournalRow> {
    Ok(JournalRow {
        card: r.get(0)?,
        application: r.get(1)?,
        package_sha256: r.get(2)?,
        load_file: r.get(3)?,
        instance: r.get(4)?,
        stage: r.get(5)?,
        rollback: r.get(6)?,
        registration: r.get(7)?,
        apdus: r.get::<_, i64>(8)? as u64,
        blocks: r.get::<_, i64>(9)? as u64,
        started_ms: r.get(10)?,
        updated_ms: r.get(11)?,
        mac: r.get(12)?,
    })
}

const APP_COLUMNS: &str = "name, title, version, provider, package_sha256, signer, not_before_ms, not_after_ms, manifest_entry, cap, added_ms, mac";

fn app_of(r: &Row) -> rusqlite::Result<AppRow> {
    Ok(AppRow {
        name: r.get(0)?,
        title: r.get(1)?,
        version: r.get(2)?,
        provider: r.get(3)?,
        package_sha256: r.get(4)?,
        signer: r.get(5)?,
        not_before_ms: r.get(6)?,
        not_after_ms: r.get(7)?,
        manifest_entry: r.get(8)?,
        cap: r.get(9)?,
        added_ms: r.get(10)?,
        mac: r.get(11)?,
    })
}

impl Db {
    /// Opens (or creates) the database; refuses one written by a newer version.
    pub(crate) fn open(path: &Path) -> Result<Db, Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )?;
        conn.execute_batch(SCHEMA)?;
        let version: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match version.map(|v| v.parse::<i64>()) {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?1)",
                    params![SCHEMA_VERSION.to_string()],
                )?;
            }
            Some(Ok(SCHEMA_VERSION)) => {}
            Some(v) => {
                return Err(Error::Config(format!(
                    "{}: schema version {v:?}, this program reads {SCHEMA_VERSION}",
                    path.display()
                )))
            }
        }
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- applications -------------------------------------------------------------------

    /// Stores the applications of one package (replacing rows of the same names), in one
    /// transaction.
    pub(crate) fn put_applications(&self, rows: &[AppRow]) -> Result<(), Error> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for a in rows {
            tx.execute(
                &format!("INSERT OR REPLACE INTO applications ({APP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
                params![
                    a.name,
                    a.title,
                    a.version,
                    a.provider,
                    a.package_sha256,
                    a.signer,
                    a.not_before_ms,
                    a.not_after_ms,
                    a.manifest_entry,
                    a.cap,
                    a.added_ms,
                    a.mac
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The application `name` with its CAP.
    pub(crate) fn application(&self, name: &str) -> Result<Option<AppRow>, Error> {
        Ok(self
            .lock()
            .query_row(
                &format!("SELECT {APP_COLUMNS} FROM applications WHERE name = ?1"),
                params![name],
                app_of,
            )
            .optional()?)
    }

    /// Every application, by name, without CAP bytes.
    pub(crate) fn catalog(&self) -> Result<Vec<AppSummary>, Error> {
        let conn = self.lock();
        let mut st = conn.prepare(
            "SELECT name, title, version, provider, package_sha256, length(cap) FROM applications ORDER BY name",
        )?;
        let rows = st.query_map([], |r| {
            Ok(AppSummary {
                name: r.get(0)?,
                title: r.get(1)?,
                version: r.get(2)?,
                provider: r.get(3)?,
                package_sha256: r.get(4)?,
                size: r.get::<_, i64>(5)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes an application; whether there was one.
    pub(crate) fn remove_application(&self, name: &str) -> Result<bool, Error> {
        Ok(self
            .lock()
            .execute("DELETE FROM applications WHERE name = ?1", params![name])?
            > 0)
    }

    // ---- journal ------------------------------------------------------------------------

    /// Writes (inserts or replaces) a journal row.
    pub(crate) fn put_journal(&self, j: &JournalRow) -> Result<(), Error> {
        self.lock().execute(
            &format!("INSERT OR REPLACE INTO journal ({JOURNAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
            params![
                j.card,
                j.application,
                j.package_sha256,
                j.load_file,
                j.instance,
                j.stage,
                j.rollback,
                j.registration,
                j.apdus as i64,
                j.blocks as i64,
                j.started_ms,
                j.updated_ms,
                j.mac
            ],
        )?;
        Ok(())
    }

    /// The interrupted install of `card`, if any.
    pub(crate) fn journal(&self, card: &str) -> Result<Option<JournalRow>, Error> {
        Ok(self
            .lock()
            .query_row(
                &format!("SELECT {JOURNAL_COLUMNS} FROM journal WHERE card = ?1"),
                params![card],
                journal_of,
            )
            .optional()?)
    }

    /// Every interrupted install, oldest first.
    pub(crate) fn journals(&self) -> Result<Vec<JournalRow>, Error> {
        let conn = self.lock();
        let mut st = conn.prepare(&format!(
            "SELECT {JOURNAL_COLUMNS} FROM journal ORDER BY started_ms, card"
        ))?;
        let rows = st.query_map([], journal_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- records ------------------------------------------------------------------------

    /// Appends a record (its `seq`, `prev_hash` and `hash` are computed here) and moves the
    /// head, whose MAC `mac` computes in the token; with `end_journal`, deletes that card's
    /// journal row in the same transaction. Returns the record.
    pub(crate) fn append_record(
        &self,
        at_ms: i64,
        c: RecordContent,
        end_journal: Option<&str>,
        mac: MacFn<'_>,
    ) -> Result<Record, Error> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let head = head_in(&tx)?;
        let (last_seq, prev) = head
            .as_ref()
            .map_or((0, records::ZERO_HASH), |h| (h.seq, h.hash));
        let seq = last_seq + 1;
        let f = Fields {
            seq,
            at_ms,
            outlet: &c.outlet,
            card: &c.card,
            application: &c.application,
            package_sha256: &c.package_sha256,
            result: &c.result,
            code: &c.code,
            detail: &c.detail,
        };
        let hash = records::chain_hash(&prev, &records::canonical(&f));
        let head_mac = mac(&records::head_mac_input(seq, &hash))?;
        tx.execute(
            &format!("INSERT INTO records ({RECORD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL)"),
            params![
                seq as i64,
                at_ms,
                c.outlet,
                c.card,
                c.application,
                c.package_sha256,
                c.result,
                c.code,
                c.detail,
                prev.to_vec(),
                hash.to_vec()
            ],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO record_head (id, seq, hash, mac) VALUES (1, ?1, ?2, ?3)",
            params![seq as i64, hash.to_vec(), head_mac.to_vec()],
        )?;
        if let Some(card) = end_journal {
            tx.execute("DELETE FROM journal WHERE card = ?1", params![card])?;
        }
        tx.commit()?;
        Ok(Record {
            seq,
            at_ms,
            outlet: c.outlet,
            card: c.card,
            application: c.application,
            package_sha256: c.package_sha256,
            result: c.result,
            code: c.code,
            detail: c.detail,
            prev_hash: apdu::hex(&prev),
            hash: apdu::hex(&hash),
            synced: false,
        })
    }

    /// Every record, oldest first; with `unsynced_only`, those the platform has not
    /// acknowledged. Stored hashes that are not 32 bytes are [`Error::Tampered`].
    pub(crate) fn records(&self, unsynced_only: bool) -> Result<Vec<Record>, Error> {
        let conn = self.lock();
        let filter = if unsynced_only {
            "WHERE synced_ms IS NULL"
        } else {
            ""
        };
        let mut st = conn.prepare(&format!(
            "SELECT {RECORD_COLUMNS} FROM records {filter} ORDER BY seq"
        ))?;
        let rows = st.query_map([], record_of)?;
        let mut out = Vec::new();
        for r in rows {
            let (rec, prev, hash) = r?;
            hash32(prev)?;
            hash32(hash)?;
            out.push(rec);
        }
        Ok(out)
    }

    /// Marks records `from..=through` acknowledged by the platform.
    pub(crate) fn mark_synced(&self, from: u64, through: u64) -> Result<(), Error> {
        self.lock().execute(
            "UPDATE records SET synced_ms = ?1 WHERE seq BETWEEN ?2 AND ?3 AND synced_ms IS NULL",
            params![now_ms(), from as i64, through as i64],
        )?;
        Ok(())
    }

    /// The records' head.
    pub(crate) fn head(&self) -> Result<Option<Head>, Error> {
        let conn = self.lock();
        head_in(&conn)
    }

    // ---- certificates (pki::CertificateStore) -------------------------------------------

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, pki::StoreError> {
        f(&self.lock()).map_err(|e| pki::StoreError::Backend(format!("outlet.db: {e}")))
    }
}

/// A record's content before it is chained.
#[derive(Debug, Clone)]
pub(crate) struct RecordContent {
    pub outlet: String,
    pub card: String,
    pub application: String,
    pub package_sha256: String,
    pub result: String,
    pub code: String,
    pub detail: String,
}

fn head_in(conn: &Connection) -> Result<Option<Head>, Error> {
    let row: Option<(i64, Vec<u8>, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash, mac FROM record_head WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    row.map(|(seq, hash, mac)| {
        Ok(Head {
            seq: seq as u64,
            hash: hash32(hash)?,
            mac,
        })
    })
    .transpose()
}

fn unix_s(t: time::OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn from_unix_s(s: i64) -> rusqlite::Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e))
    })
}

fn serial_of(b: Vec<u8>) -> rusqlite::Result<pki::Serial> {
    pki::Serial::from_bytes(&b).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            "not a certificate serial".into(),
        )
    })
}

impl pki::CertificateStore for Db {
    fn insert_issued(&self, c: &pki::store::IssuedCertificate) -> Result<(), pki::StoreError> {
        let r = self.lock().execute(
            "INSERT INTO issued_certificates (serial, subject, not_before, not_after, certificate) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                c.serial.as_bytes(),
                c.subject,
                unix_s(c.not_before),
                unix_s(c.not_after),
                c.certificate_der
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(pki::StoreError::Duplicate)
            }
            Err(e) => Err(pki::StoreError::Backend(format!("outlet.db: {e}"))),
        }
    }

    fn issued(
        &self,
        serial: &pki::Serial,
    ) -> Result<Option<pki::store::IssuedCertificate>, pki::StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT serial, subject, not_before, not_after, certificate FROM issued_certificates WHERE serial = ?1",
                params![serial.as_bytes()],
                |r| {
                    Ok(pki::store::IssuedCertificate {
                        serial: serial_of(r.get(0)?)?,
                        subject: r.get(1)?,
                        not_before: from_unix_s(r.get(2)?)?,
                        not_after: from_unix_s(r.get(3)?)?,
                        certificate_der: r.get(4)?,
                    })
                },
            )
            .optional()
        })
    }

    fn revoke(
        &self,
        serial: &pki::Serial,
        revocation: &pki::store::Revocation,
    ) -> Result<pki::store::RevokeOutcome, pki::StoreError> {
        use pki::store::RevokeOutcome;
        let mut conn = self.lock();
        let run = |conn: &mut Connection| -> rusqlite::Result<RevokeOutcome> {
            let tx = conn.transaction()?;
            let issued: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM issued_certificates WHERE serial = ?1",
                    params![serial.as_bytes()],
                    |r| r.get(0),
                )
                .optional()?;
            if issued.is_none() {
                return Ok(RevokeOutcome::NotIssued);
            }
            if let Some(existing) = revocation_in(&tx, serial)? {
                return Ok(RevokeOutcome::AlreadyRevoked(existing));
            }
            tx.execute(
                "INSERT INTO revocations (serial, body) VALUES (?1, ?2)",
                params![serial.as_bytes(), to_json(revocation)?],
            )?;
            tx.commit()?;
            Ok(RevokeOutcome::Revoked)
        };
        run(&mut conn).map_err(|e| pki::StoreError::Backend(format!("outlet.db: {e}")))
    }

    fn revocation(
        &self,
        serial: &pki::Serial,
    ) -> Result<Option<pki::store::Revocation>, pki::StoreError> {
        self.with(|c| revocation_in(c, serial))
    }

    fn revocations(&self) -> Result<Vec<(pki::Serial, pki::store::Revocation)>, pki::StoreError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT serial, body FROM revocations ORDER BY serial")?;
            let rows = st.query_map([], |r| Ok((serial_of(r.get(0)?)?, from_json(r.get(1)?)?)))?;
            rows.collect()
        })
    }

    fn next_crl_number(&self) -> Result<u64, pki::StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let n: Option<String> = tx
                .query_row("SELECT value FROM meta WHERE key = 'crl_number'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            let next = n.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('crl_number', ?1)",
                params![next.to_string()],
            )?;
            tx.commit()?;
            Ok(next)
        })
    }
}

fn to_json(r: &pki::store::Revocation) -> rusqlite::Result<String> {
    serde_json::to_string(r).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn from_json(body: String) -> rusqlite::Result<pki::store::Revocation> {
    serde_json::from_str(&body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn revocation_in(
    c: &Connection,
    serial: &pki::Serial,
) -> rusqlite::Result<Option<pki::store::Revocation>> {
    c.query_row(
        "SELECT body FROM revocations WHERE serial = ?1",
        params![serial.as_bytes()],
        |r| r.get::<_, String>(0),
    )
    .optional()?
    .map(from_json)
    .transpose()
}
