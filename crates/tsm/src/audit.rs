//! The append-only audit log: a hash chain.
//!
//! Entry `n` stores `prev_hash` = the hash of entry `n-1` (32 zero bytes for entry 1) and
//! `hash = SHA-256(prev_hash ‖ canonical(entry))`, where the canonical encoding is
//!
//! ```text
//! "cardwright-audit-v1"            19 bytes, domain separation
//! id                               8 bytes, big-endian
//! at_ms                            8 bytes, big-endian two's complement
//! actor, action                    each: 4-byte big-endian length ‖ UTF-8
//! card_number                      00 (none) | 01 ‖ 4-byte length ‖ UTF-8
//! result, detail                   each: 4-byte big-endian length ‖ UTF-8
//! ```
//!
//! Every field is length-prefixed, so two different entries never encode alike. The detail
//! is the JSON text exactly as stored: what is hashed is what is in the database, whatever
//! the JSON library's key order.
//!
//! # Queued, then chained in batches (group commit)
//!
//! The [`Store`](crate::Store)'s write transactions are group commits (several workers'
//! work in one database transaction, see `store::group`). An entry recorded by a member's
//! work (`append_in`) is kept aside with the member, without touching the database: the
//! chain's head is not locked while the work runs, so workers do not queue behind each other
//! on the head row. If the member's work fails its entries are dropped with its statements.
//! Before the group commits, its leader **seals** the entries of all members (`seal_in`):
//! it locks the head (SQLite: the write transaction; PostgreSQL: `SELECT … FOR UPDATE` on the
//! single `audit_head` row), chains them in the order the members ran into `audit_log` (one
//! multi-row INSERT per hundred), moves the head and signs one checkpoint for all of them
//! (on PostgreSQL the last INSERT, the head and the checkpoint are one statement: a seal is
//! two round trips). An
//! entry is thus chained in the same commit as the change it records, and eight workers pay
//! for one seal and one signature. Entries recorded on their own
//! ([`crate::Store::audit_append`]) are chained at once (`chain_in`).
//!
//! The database refuses UPDATE and DELETE on `audit_log` with triggers; [`crate::Store::audit_verify`] still
//! detects any change made by someone who drops them: a changed, removed or reordered
//! entry breaks the chain, and a removed tail no longer matches `audit_head`.
//!
//! # The anchored head
//!
//! The chain is an unkeyed hash: someone who can write the database can delete the last
//! entries and set `audit_head` to the new last one, and the chain still verifies. A
//! [`Store`](crate::Store) given a signing key of the key store
//! ([`Store::with_audit_anchor`](crate::Store::with_audit_anchor); the key never leaves
//! the store, PKCS#11 or sealed software) therefore also writes a **checkpoint** in every
//! transaction that extends the chain: the number of entries and the head hash, signed (ECDSA P-256
//! or RSA PKCS#1 v1.5 with SHA-256) over
//!
//! ```text
//! "cardwright-audit-checkpoint-v1" ‖ entries (8 bytes, big-endian) ‖ head hash (32 bytes)
//! ```
//!
//! [`Store::audit_verify_anchored`](crate::Store::audit_verify_anchored) checks that
//! signature with the key's public key and that the chain has that many entries ending in
//! that hash, so a removed tail is detected unless the remover holds the key. What it
//! cannot detect is a roll-back of the whole database (log and checkpoint) to an earlier
//! copy: for that, record the head it prints (entries and hash) outside the database and
//! compare later (`cardwright audit verify --expect-head`).

use sha2::{Digest, Sha256};

use crate::db::{params, Conn, Row, Value};
use crate::error::StoreError;
use crate::model::now_ms;

/// Domain separation prefix of the canonical encoding.
pub const DOMAIN: &[u8] = b"cardwright-audit-v1";

/// What to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// Who (tenant/user, or a system component).
    pub actor: String,
    /// What (`job.write`, `tenant.create`, …).
    pub action: String,
    /// The card concerned, if any.
    pub card_number: Option<String>,
    /// `ok`, `started`, `failed`, `interrupted`, …
    pub result: String,
    /// Details (JSON object).
    pub detail: serde_json::Value,
}

impl NewEntry {
    /// An entry with no card and an empty detail object.
    pub fn new(actor: &str, action: &str, result: &str) -> Self {
        NewEntry {
            actor: actor.into(),
            action: action.into(),
            card_number: None,
            result: result.into(),
            detail: serde_json::Value::Object(Default::default()),
        }
    }
    /// Sets the card.
    pub fn card(mut self, card_number: &str) -> Self {
        self.card_number = Some(card_number.into());
        self
    }
    /// Sets the detail.
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// A recorded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the chain, from 1.
    pub id: i64,
    /// Time (Unix ms).
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// The card concerned.
    pub card_number: Option<String>,
    /// Outcome.
    pub result: String,
    /// Details, JSON text as stored.
    pub detail: String,
    /// Hash of the previous entry.
    pub prev_hash: [u8; 32],
    /// Hash of this entry.
    pub hash: [u8; 32],
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The canonical encoding of an entry's content (everything but the hashes).
pub fn canonical(
    id: i64,
    at_ms: i64,
    actor: &str,
    action: &str,
    card_number: Option<&str>,
    result: &str,
    detail: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        DOMAIN.len() + 16 + 21 + actor.len() + action.len() + result.len() + detail.len() + 24,
    );
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&at_ms.to_be_bytes());
    put_str(&mut out, actor);
    put_str(&mut out, action);
    match card_number {
        None => out.push(0),
        Some(c) => {
            out.push(1);
            put_str(&mut out, c);
        }
    }
    put_str(&mut out, result);
    put_str(&mut out, detail);
    out
}

/// `SHA-256(prev_hash ‖ canonical)`.
pub fn chain_hash(prev_hash: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical);
    h.finalize().into()
}

impl Entry {
    /// The hash this entry must have given its content and `prev_hash`.
    pub fn expected_hash(&self) -> [u8; 32] {
        chain_hash(
            &self.prev_hash,
            &canonical(
                self.id,
                self.at_ms,
                &self.actor,
                &self.action,
                self.card_number.as_deref(),
                &self.result,
                &self.detail,
            ),
        )
    }
}

fn hash32(v: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(v.as_slice()).map_err(|_| StoreError::Corrupt {
        what: what.into(),
        detail: format!("{} bytes, not 32", v.len()),
    })
}

pub(crate) const ENTRY_COLUMNS: &str =
    "id, at_ms, actor, action, card_number, result, detail, prev_hash, hash";

pub(crate) fn entry_of(r: &Row) -> Result<Entry, StoreError> {
    Ok(Entry {
        id: r.int(0)?,
        at_ms: r.int(1)?,
        actor: r.text(2)?,
        action: r.text(3)?,
        card_number: r.opt_text(4)?,
        result: r.text(5)?,
        detail: r.text(6)?,
        prev_hash: hash32(r.bytes(7)?, "audit prev_hash")?,
        hash: hash32(r.bytes(8)?, "audit hash")?,
    })
}

/// An entry recorded by a member of a group transaction, waiting for the group's seal.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    at_ms: i64,
    actor: String,
    action: String,
    card_number: Option<String>,
    result: String,
    detail: String,
}

thread_local! {
    /// The entries recorded by the group member running on this thread (`None`: no member
    /// runs here, entries are chained at once).
    static QUEUE: std::cell::RefCell<Option<Vec<Queued>>> = const { std::cell::RefCell::new(None) };
    /// Whether the member running on this thread chained an entry itself.
    static CHAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Starts collecting the entries of the group member about to run on this thread.
pub(crate) fn start_queue() {
    QUEUE.with(|q| *q.borrow_mut() = Some(Vec::new()));
    CHAINED.with(|c| c.set(false));
}

/// The entries the member recorded, and whether it chained one itself (so that the group
/// signs a new checkpoint); collecting stops.
pub(crate) fn take_queue() -> (Vec<Queued>, bool) {
    (
        QUEUE.with(|q| q.borrow_mut().take()).unwrap_or_default(),
        CHAINED.with(|c| c.replace(false)),
    )
}

fn detail_text(e: &NewEntry) -> Result<String, StoreError> {
    serde_json::to_string(&e.detail).map_err(|err| StoreError::Invalid {
        what: "audit detail",
        detail: err.to_string(),
    })
}

/// Records an entry inside the caller's transaction, so that it commits or rolls back with
/// the change it records. In a group member (every [`crate::Store`] write) it is kept aside
/// and chained by the group's seal just before the commit (see [the module
/// documentation](self#queued-then-chained-in-batches-group-commit)); elsewhere it is
/// chained at once.
pub(crate) fn append_in(conn: &mut Conn, e: &NewEntry) -> Result<(), StoreError> {
    let queued = Queued {
        at_ms: now_ms(),
        actor: e.actor.clone(),
        action: e.action.clone(),
        card_number: e.card_number.clone(),
        result: e.result.clone(),
        detail: detail_text(e)?,
    };
    let kept = QUEUE.with(|q| match q.borrow_mut().as_mut() {
        Some(v) => {
            v.push(queued);
            true
        }
        None => false,
    });
    if !kept {
        chain_in(conn, e)?;
    }
    Ok(())
}

/// Entries chained per statement (9 parameters each: 900 per INSERT).
const SEAL_ROWS_PER_INSERT: usize = 100;

/// Chains `queued`, in order, inside the caller's transaction, and with `key` signs the new
/// head as the checkpoint (also when `queued` is empty but the head moved since the last
/// checkpoint): one `SELECT` locks the head and reads the checkpoint's length, one
/// multi-row INSERT per [`SEAL_ROWS_PER_INSERT`] entries, then the head and the checkpoint
/// are written — on PostgreSQL all in one statement (`Conn::execute_all`), so that a seal
/// is two round trips.
pub(crate) fn seal_in(
    conn: &mut Conn,
    queued: &[Queued],
    key: Option<&dyn kms::SigningKey>,
) -> Result<(), StoreError> {
    if queued.is_empty() && key.is_none() {
        return Ok(());
    }
    // Lock the head row (PostgreSQL) so that groups chain and sign in the order they commit.
    let lock = match conn.for_update() {
        "" => "",
        _ => " FOR UPDATE OF h",
    };
    let row = conn.query_one(
        &format!(
            "SELECT h.last_id, h.last_hash, k.entries FROM audit_head h
             LEFT JOIN audit_checkpoint k ON k.id = 1 WHERE h.id = 1{lock}"
        ),
        params![],
    )?;
    let (mut last_id, mut prev_hash) =
        (row.int(0)?, hash32(row.bytes(1)?, "audit_head.last_hash")?);
    let signed = row.opt_int(2)?;
    if queued.is_empty() && signed == Some(last_id) {
        return Ok(());
    }
    let mut entries = Vec::with_capacity(queued.len());
    for q in queued {
        let entry = Entry {
            id: last_id + 1,
            at_ms: q.at_ms,
            actor: q.actor.clone(),
            action: q.action.clone(),
            card_number: q.card_number.clone(),
            result: q.result.clone(),
            detail: q.detail.clone(),
            prev_hash,
            hash: [0; 32],
        };
        let entry = Entry {
            hash: entry.expected_hash(),
            ..entry
        };
        last_id = entry.id;
        prev_hash = entry.hash;
        entries.push(entry);
    }
    // The statements that end the seal, each with its parameters.
    let mut statements: Vec<(String, Vec<Value>)> = entries
        .chunks(SEAL_ROWS_PER_INSERT)
        .map(insert_entries)
        .collect();
    if !queued.is_empty() {
        statements.push((
            "UPDATE audit_head SET last_id = $1, last_hash = $2 WHERE id = 1".into(),
            params![last_id, prev_hash.to_vec()].to_vec(),
        ));
    }
    if let Some(key) = key {
        let signature = key
            .sign_sha256(&checkpoint_message(last_id, &prev_hash))
            .map_err(|e| StoreError::AuditAnchor(e.to_string()))?;
        statements.push((
            "INSERT INTO audit_checkpoint (id, entries, head, key_label, signature, at_ms)
             VALUES (1, $1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET entries = $1, head = $2, key_label = $3,
                 signature = $4, at_ms = $5"
                .into(),
            params![
                last_id,
                prev_hash.to_vec(),
                key.label(),
                signature,
                now_ms()
            ]
            .to_vec(),
        ));
    }
    // Nothing reads their row counts: on PostgreSQL they go with the COMMIT.
    conn.execute_all_later(&statements)
}

/// One multi-row INSERT of `chunk` into `audit_log`.
fn insert_entries(chunk: &[Entry]) -> (String, Vec<Value>) {
    let rows: Vec<String> = (0..chunk.len())
        .map(|i| {
            let p: Vec<String> = (1..=9).map(|k| format!("${}", 9 * i + k)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let mut values = Vec::with_capacity(9 * chunk.len());
    for e in chunk {
        values.extend_from_slice(params![
            e.id,
            e.at_ms,
            &e.actor,
            &e.action,
            e.card_number.clone(),
            &e.result,
            &e.detail,
            e.prev_hash.to_vec(),
            e.hash.to_vec(),
        ]);
    }
    (
        format!(
            "INSERT INTO audit_log ({ENTRY_COLUMNS}) VALUES {}",
            rows.join(", ")
        ),
        values,
    )
}

/// Chains one entry at once, inside the caller's transaction (which then holds the head
/// until it commits). Returns the new entry.
pub(crate) fn chain_in(conn: &mut Conn, e: &NewEntry) -> Result<Entry, StoreError> {
    CHAINED.with(|c| c.set(true));
    let lock = conn.for_update();
    let head = conn.query_one(
        &format!("SELECT last_id, last_hash FROM audit_head WHERE id = 1{lock}"),
        params![],
    )?;
    let last_id = head.int(0)?;
    let prev_hash = hash32(head.bytes(1)?, "audit_head.last_hash")?;
    let id = last_id + 1;
    let at_ms = now_ms();
    let detail = detail_text(e)?;
    let entry = Entry {
        id,
        at_ms,
        actor: e.actor.clone(),
        action: e.action.clone(),
        card_number: e.card_number.clone(),
        result: e.result.clone(),
        detail,
        prev_hash,
        hash: [0; 32],
    };
    let entry = Entry {
        hash: entry.expected_hash(),
        ..entry
    };
    conn.execute(
        &format!(
            "INSERT INTO audit_log ({ENTRY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ),
        params![
            entry.id,
            entry.at_ms,
            &entry.actor,
            &entry.action,
            entry.card_number.clone(),
            &entry.result,
            &entry.detail,
            entry.prev_hash.to_vec(),
            entry.hash.to_vec(),
        ],
    )?;
    conn.execute(
        "UPDATE audit_head SET last_id = $1, last_hash = $2 WHERE id = 1",
        params![id, entry.hash.to_vec()],
    )?;
    Ok(entry)
}

/// Domain separation prefix of a checkpoint's signed message.
pub const CHECKPOINT_DOMAIN: &[u8] = b"cardwright-audit-checkpoint-v1";

/// The label of the key-store signing key that anchors the audit log.
pub const ANCHOR_KEY_LABEL: &str = "cardwright-audit";

/// What a checkpoint signs: [`CHECKPOINT_DOMAIN`] ‖ entries ‖ head hash.
pub fn checkpoint_message(entries: i64, head: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 8 + 32);
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&entries.to_be_bytes());
    m.extend_from_slice(head);
    m
}

/// A signed statement of the chain's length and head, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Entries in the chain when it was signed.
    pub entries: i64,
    /// Hash of the last of them.
    pub head: [u8; 32],
    /// The signing key's label in the key store.
    pub key_label: String,
    /// Signature over [`checkpoint_message`].
    pub signature: Vec<u8>,
    /// When it was written (Unix ms).
    pub at_ms: i64,
}

pub(crate) fn checkpoint_of(conn: &mut Conn) -> Result<Option<Checkpoint>, StoreError> {
    conn.query_opt(
        "SELECT entries, head, key_label, signature, at_ms FROM audit_checkpoint WHERE id = 1",
        params![],
    )?
    .map(|r| {
        Ok(Checkpoint {
            entries: r.int(0)?,
            head: hash32(r.bytes(1)?, "audit_checkpoint.head")?,
            key_label: r.text(2)?,
            signature: r.bytes(3)?,
            at_ms: r.int(4)?,
        })
    })
    .transpose()
}

/// Why the chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditFault {
    /// The entry's content does not hash to its stored hash (edited).
    #[error("entry {0}: content does not match its hash (edited)")]
    HashMismatch(i64),
    /// The entry's `prev_hash` is not the previous entry's hash.
    #[error("entry {0}: not chained to the previous entry")]
    BrokenLink(i64),
    /// An id is missing or out of order (entries removed or inserted).
    #[error("entry {found}: expected entry {expected} (entries removed or inserted)")]
    Gap {
        /// The id expected next.
        expected: i64,
        /// The id found.
        found: i64,
    },
    /// The chain head does not match the last entry (entries removed at the end, or the
    /// head row edited).
    #[error("the chain head says {head_id} entries, the log ends at entry {last_id} with another hash (entries removed at the end)")]
    HeadMismatch {
        /// `audit_head.last_id`.
        head_id: i64,
        /// The last entry found.
        last_id: i64,
    },
    /// Verifying against the anchor key, but the database holds no checkpoint.
    #[error("no signed checkpoint of the chain head (removed, or never written by a store with the audit key)")]
    CheckpointMissing,
    /// The checkpoint's signature does not verify with the anchor key's public key.
    #[error("the signed checkpoint does not verify with the audit key (forged or edited)")]
    CheckpointForged,
    /// The signed checkpoint counts more entries than the log has.
    #[error("the signed checkpoint counts {signed} entries, the log has {found} (entries removed at the end)")]
    Truncated {
        /// Entries the checkpoint signed.
        signed: i64,
        /// Entries in the log.
        found: i64,
    },
    /// Entry `n` is not the one the checkpoint signed.
    #[error("entry {0} is not the one the signed checkpoint ends at (entries replaced)")]
    CheckpointMismatch(i64),
}

/// The outcome of [`crate::Store::audit_verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries checked (up to and including the first bad one).
    pub entries: u64,
    /// The hash of the last good entry (the chain head when all is well).
    pub head: [u8; 32],
    /// The first problem, if any.
    pub first_bad: Option<AuditFault>,
    /// The checkpoint stored in the database (checked only by
    /// [`crate::Store::audit_verify_anchored`]).
    pub checkpoint: Option<Checkpoint>,
    /// Entries covered by a checkpoint whose signature verified (`None`: not checked).
    pub anchored: Option<u64>,
}

impl AuditReport {
    /// Whether the whole chain verified.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Walks the chain in pages of `page` entries; with `anchor` (the audit key's public key),
/// also checks the signed checkpoint.
pub(crate) fn verify(
    conn: &mut Conn,
    page: i64,
    anchor: Option<&pki::PublicKey>,
) -> Result<AuditReport, StoreError> {
    let checkpoint = checkpoint_of(conn)?;
    let (mut report, signed_hash) = walk(conn, page, checkpoint.as_ref().map(|k| k.entries))?;
    report.checkpoint = checkpoint;
    let Some(key) = anchor else {
        return Ok(report);
    };
    if report.first_bad.is_some() {
        return Ok(report);
    }
    let found = report.entries as i64;
    let fault = match &report.checkpoint {
        None if found == 0 => None,
        None => Some(AuditFault::CheckpointMissing),
        Some(k) => {
            if key
                .verify(&checkpoint_message(k.entries, &k.head), &k.signature)
                .is_err()
            {
                Some(AuditFault::CheckpointForged)
            } else if k.entries > found {
                Some(AuditFault::Truncated {
                    signed: k.entries,
                    found,
                })
            } else if k.entries > 0 && signed_hash != Some(k.head) {
                Some(AuditFault::CheckpointMismatch(k.entries))
            } else {
                report.anchored = Some(k.entries as u64);
                None
            }
        }
    };
    report.first_bad = fault;
    Ok(report)
}

/// The chain walk; also returns the hash of entry `at`, if the walk reached it.
fn walk(
    conn: &mut Conn,
    page: i64,
    at: Option<i64>,
) -> Result<(AuditReport, Option<[u8; 32]>), StoreError> {
    let mut hash_at = None;
    let mut prev = [0u8; 32];
    let mut expected_id = 1i64;
    let mut count = 0u64;
    loop {
        let rows = conn.query(
            &format!("SELECT {ENTRY_COLUMNS} FROM audit_log WHERE id >= $1 ORDER BY id LIMIT $2"),
            params![expected_id, page],
        )?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let e = entry_of(r)?;
            count += 1;
            let fault = if e.id != expected_id {
                Some(AuditFault::Gap {
                    expected: expected_id,
                    found: e.id,
                })
            } else if e.prev_hash != prev {
                Some(AuditFault::BrokenLink(e.id))
            } else if e.expected_hash() != e.hash {
                Some(AuditFault::HashMismatch(e.id))
            } else {
                None
            };
            if fault.is_some() {
                let report = AuditReport {
                    entries: count,
                    head: prev,
                    first_bad: fault,
                    checkpoint: None,
                    anchored: None,
                };
                return Ok((report, hash_at));
            }
            if Some(e.id) == at {
                hash_at = Some(e.hash);
            }
            prev = e.hash;
            expected_id += 1;
        }
    }
    let head = conn.query_one(
        "SELECT last_id, last_hash FROM audit_head WHERE id = 1",
        params![],
    )?;
    let head_id = head.int(0)?;
    let head_hash = head.bytes(1)?;
    let last_id = expected_id - 1;
    let first_bad = (head_id != last_id || head_hash != prev)
        .then_some(AuditFault::HeadMismatch { head_id, last_id });
    let report = AuditReport {
        entries: count,
        head: prev,
        first_bad,
        checkpoint: None,
        anchored: None,
    };
    Ok((report, hash_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Fields = (i64, i64, String, String, Option<String>, String, String);

    fn fields() -> impl Strategy<Value = Fields> {
        (
            any::<i64>(),
            any::<i64>(),
            ".{0,6}",
            ".{0,6}",
            proptest::option::of(".{0,6}"),
            ".{0,4}",
            ".{0,8}",
        )
    }

    fn enc(f: &Fields) -> Vec<u8> {
        canonical(f.0, f.1, &f.2, &f.3, f.4.as_deref(), &f.5, &f.6)
    }

    proptest! {
        /// Different entries never encode alike (so never hash alike short of a SHA-256
        /// collision), and the encoding has its exact expected length.
        #[test]
        fn canonical_is_injective(a in fields(), b in fields()) {
            prop_assert_eq!(a == b, enc(&a) == enc(&b));
            let len = DOMAIN.len() + 16 + 4 * 4 + 1
                + a.2.len() + a.3.len() + a.5.len() + a.6.len()
                + a.4.as_ref().map_or(0, |c| 4 + c.len());
            prop_assert_eq!(enc(&a).len(), len);
        }

        /// Changing any one field changes the chain hash.
        #[test]
        fn hash_depends_on_every_field(a in fields(), prev in any::<[u8; 32]>(), which in 0usize..8) {
            let h = chain_hash(&prev, &enc(&a));
            let mut b = a.clone();
            let mut prev2 = prev;
            match which {
                0 => b.0 = b.0.wrapping_add(1),
                1 => b.1 = b.1.wrapping_add(1),
                2 => b.2.push('x'),
                3 => b.3.push('x'),
                4 => b.4 = match b.4 { None => Some(String::new()), Some(_) => None },
                5 => b.5.push('x'),
                6 => b.6.push('x'),
                _ => prev2[0] ^= 1,
            }
            prop_assert_ne!(h, chain_hash(&prev2, &enc(&b)));
        }
    }

    #[test]
    fn sha256_primitive_kat() {
        // FIPS 180-2 Appendix B.1 ("abc").
        let d: [u8; 32] = Sha256::digest(b"abc").into();
        assert_eq!(
            apdu::hex(&d),
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        );
    }

    #[test]
    fn canonical_layout() {
        let c = canonical(1, 2, "a", "b", Some("9"), "ok", "{}");
        let mut want = DOMAIN.to_vec();
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2]);
        want.extend_from_slice(&[0, 0, 0, 1, b'a']);
        want.extend_from_slice(&[0, 0, 0, 1, b'b']);
        want.extend_from_slice(&[1, 0, 0, 0, 1, b'9']);
        want.extend_from_slice(&[0, 0, 0, 2, b'o', b'k']);
        want.extend_from_slice(&[0, 0, 0, 2, b'{', b'}']);
        assert_eq!(c, want);
        // No card and an empty card number differ.
        assert_ne!(
            canonical(1, 2, "a", "b", None, "ok", "{}"),
            canonical(1, 2, "a", "b", Some(""), "ok", "{}")
        );
        // Moving a byte between fields changes the encoding.
        assert_ne!(
            canonical(1, 2, "ab", "", None, "", ""),
            canonical(1, 2, "a", "b", None, "", "")
        );
    }
}
