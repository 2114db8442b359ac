//! Install records: one per install attempt, appended to a hash chain like the platform's
//! audit log (`tsm::audit`), kept until the platform has them (`outlet sync`).
//!
//! Record `n` stores `prev_hash` = the hash of record `n-1` (32 zero bytes for record 1)
//! and `hash = SHA-256(prev_hash ‖ canonical(record))`, where the canonical encoding is
//!
//! ```text
//! "cardwright-outlet-record-v1"    27 bytes, domain separation
//! seq                              8 bytes, big-endian
//! at_ms                            8 bytes, big-endian two's complement
//! outlet, card, application,
//! package_sha256, result, code,
//! detail                           each: 4-byte big-endian length ‖ UTF-8
//! ```
//!
//! Every field is length-prefixed, so two different records never encode alike; the detail
//! is the JSON text exactly as stored. The platform recomputes each hash from the fields it
//! receives, so a record changed after the fact (or on the way) does not match its hash.
//!
//! The chain alone is an unkeyed hash: whoever can write `outlet.db` could drop the last
//! records and still have a chain that verifies. The module therefore also keeps the head
//! (number of records and last hash) with an HMAC-SHA256 computed in the token over
//! `"cardwright-outlet-head-v1" ‖ seq (8 bytes) ‖ hash`, updated in the transaction that
//! appends; [`crate::Module::verify_records`] checks both.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Domain separation prefix of the canonical encoding.
pub const DOMAIN: &[u8] = b"cardwright-outlet-record-v1";

/// Domain separation prefix of the head's MAC input.
pub const HEAD_DOMAIN: &[u8] = b"cardwright-outlet-head-v1";

/// The hash before the first record.
pub const ZERO_HASH: [u8; 32] = [0; 32];

/// How an install attempt ended (`result` of a record).
pub mod result {
    /// Installed and registered.
    pub const OK: &str = "ok";
    /// Ended before anything on the card changed (wrong card, already present, …).
    pub const FAILED: &str = "failed";
    /// Stopped by the card; what it had done was rolled back (DELETE).
    pub const ROLLED_BACK: &str = "rolled_back";
    /// Interrupted (card pulled): the next install or `outlet resume` completes it.
    pub const INTERRUPTED: &str = "interrupted";
}

/// One install record, as hashed, kept and uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in the outlet's chain, from 1.
    pub seq: u64,
    /// When (Unix milliseconds).
    pub at_ms: i64,
    /// The outlet's id.
    pub outlet: String,
    /// The card number (from its key diversification data); empty when the card was not
    /// identified.
    pub card: String,
    /// The application's name.
    pub application: String,
    /// SHA-256 of the package it came from (hex); empty when unknown.
    pub package_sha256: String,
    /// `ok`, `failed`, `rolled_back` or `interrupted` ([`result`]).
    pub result: String,
    /// `ok`, or the clerk word's code ([`crate::InstallError::code`]).
    pub code: String,
    /// Details as JSON text (instance, APDUs, registration: certificates and KCVs,
    /// receipts, message), exactly as hashed.
    pub detail: String,
    /// Hash of the previous record (hex).
    pub prev_hash: String,
    /// This record's hash (hex).
    pub hash: String,
    /// Whether the platform acknowledged it (local state, not hashed, not uploaded).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub synced: bool,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Fields are far below 4 GiB (records are built by this module).
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The fields a record's hash covers (everything but the hashes and `synced`).
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    /// Position from 1.
    pub seq: u64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Outlet id.
    pub outlet: &'a str,
    /// Card number.
    pub card: &'a str,
    /// Application name.
    pub application: &'a str,
    /// Package SHA-256, hex.
    pub package_sha256: &'a str,
    /// Result word.
    pub result: &'a str,
    /// Code.
    pub code: &'a str,
    /// JSON text.
    pub detail: &'a str,
}

/// The canonical encoding (see the module documentation).
pub fn canonical(f: &Fields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 16 + 7 * 4 + f.detail.len() + 128);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&f.seq.to_be_bytes());
    out.extend_from_slice(&f.at_ms.to_be_bytes());
    for s in [
        f.outlet,
        f.card,
        f.application,
        f.package_sha256,
        f.result,
        f.code,
        f.detail,
    ] {
        put_str(&mut out, s);
    }
    out
}

/// `SHA-256(prev_hash ‖ canonical)`.
pub fn chain_hash(prev_hash: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical);
    h.finalize().into()
}

/// The input of the head's MAC.
pub fn head_mac_input(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut out = HEAD_DOMAIN.to_vec();
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(hash);
    out
}

/// A 64-digit hex hash, or why not.
pub fn parse_hash(hex: &str) -> Result<[u8; 32], String> {
    let b = apdu::parse_hex(hex).map_err(|e| format!("hash {hex:?}: {e}"))?;
    <[u8; 32]>::try_from(b.as_slice()).map_err(|_| format!("hash of {} bytes, not 32", b.len()))
}

impl Record {
    /// The fields its hash covers.
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            seq: self.seq,
            at_ms: self.at_ms,
            outlet: &self.outlet,
            card: &self.card,
            application: &self.application,
            package_sha256: &self.package_sha256,
            result: &self.result,
            code: &self.code,
            detail: &self.detail,
        }
    }

    /// The hash this record must have given its fields and `prev_hash`.
    pub fn expected_hash(&self) -> Result<[u8; 32], String> {
        Ok(chain_hash(
            &parse_hash(&self.prev_hash)?,
            &canonical(&self.fields()),
        ))
    }

    /// Whether `hash` is [`Record::expected_hash`].
    pub fn hash_matches(&self) -> bool {
        match (self.expected_hash(), parse_hash(&self.hash)) {
            (Ok(want), Ok(have)) => want == have,
            _ => false,
        }
    }
}

/// Checks that `records` (in order) form an unbroken chain from `prev` (the hash before the
/// first): each hash matches its fields, each `prev_hash` is the hash before, `seq` counts
/// up by one. Returns the last hash, or the first broken record's `seq` and why.
pub fn check_chain(
    prev: [u8; 32],
    first_seq: u64,
    records: &[Record],
) -> Result<[u8; 32], (u64, String)> {
    let mut prev = prev;
    for (i, r) in records.iter().enumerate() {
        let want_seq = first_seq + i as u64;
        if r.seq != want_seq {
            return Err((
                r.seq,
                format!("sequence number {}, expected {want_seq}", r.seq),
            ));
        }
        let p = parse_hash(&r.prev_hash).map_err(|e| (r.seq, e))?;
        if p != prev {
            return Err((
                r.seq,
                "its prev_hash is not the previous record's hash".into(),
            ));
        }
        if !r.hash_matches() {
            return Err((r.seq, "its hash does not match its content".into()));
        }
        prev = parse_hash(&r.hash).map_err(|e| (r.seq, e))?;
    }
    Ok(prev)
}

/// What [`crate::Module::verify_records`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordChainReport {
    /// Records in the chain.
    pub records: u64,
    /// The last record's hash (hex; zeros when empty).
    pub head: String,
    /// Whether the chain is unbroken and the head's MAC (computed in the token) matches it.
    pub ok: bool,
    /// The first broken record and why, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Records not yet acknowledged by the platform.
    pub unsynced: u64,
}

/// The body of `POST /api/v1/outlet/records` (the platform's route, `server::outlet_records`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The outlet's id (each record names it too).
    pub outlet: String,
    /// Consecutive records, oldest first.
    pub records: Vec<Record>,
}

/// The platform's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadAnswer {
    /// Records stored now.
    pub stored: u64,
    /// Records the platform had already (same hash): nothing changed for them.
    pub already: u64,
    /// The highest sequence number the platform holds for this outlet after the call.
    pub through: u64,
}

/// What [`crate::Module::sync`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Records sent (0: nothing to send, no request made).
    pub sent: u64,
    /// Stored by the platform now.
    pub stored: u64,
    /// Already held by the platform.
    pub already: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, prev: [u8; 32], detail: &str) -> Record {
        let mut r = Record {
            seq,
            at_ms: 1_700_000_000_000 + seq as i64,
            outlet: "o1".into(),
            card: "4111".into(),
            application: "wallet".into(),
            package_sha256: "ab".repeat(32),
            result: result::OK.into(),
            code: "ok".into(),
            detail: detail.into(),
            prev_hash: apdu::hex(&prev),
            hash: String::new(),
            synced: false,
        };
        r.hash = apdu::hex(&r.expected_hash().unwrap());
        r
    }

    #[test]
    fn a_chain_verifies_and_any_change_breaks_it() {
        let a = record(1, ZERO_HASH, "{}");
        let b = record(2, parse_hash(&a.hash).unwrap(), r#"{"x":1}"#);
        let c = record(3, parse_hash(&b.hash).unwrap(), "{}");
        let all = vec![a, b, c];
        let head = check_chain(ZERO_HASH, 1, &all).unwrap();
        assert_eq!(apdu::hex(&head), all[2].hash);
        // A changed field, a dropped middle record, a reordering: each found, with its seq.
        let mut changed = all.clone();
        changed[1].card = "4112".into();
        assert_eq!(check_chain(ZERO_HASH, 1, &changed).unwrap_err().0, 2);
        let dropped = vec![all[0].clone(), all[2].clone()];
        assert_eq!(check_chain(ZERO_HASH, 1, &dropped).unwrap_err().0, 3);
        let swapped = vec![all[1].clone(), all[0].clone()];
        assert!(check_chain(ZERO_HASH, 1, &swapped).is_err());
        // Fields are length-prefixed: moving a character between fields changes the hash.
        let mut moved = all[0].clone();
        moved.outlet = "o14".into();
        moved.card = "111".into();
        assert!(!moved.hash_matches());
    }

    /// The canonical encoding, byte for byte (a known answer the platform shares).
    #[test]
    fn canonical_known_answer() {
        let f = Fields {
            seq: 1,
            at_ms: 2,
            outlet: "o",
            card: "1",
            application: "a",
            package_sha256: "",
            result: "ok",
            code: "ok",
            detail: "{}",
        };
        let mut want = DOMAIN.to_vec();
        want.extend_from_slice(&apdu::parse_hex("0000000000000001 0000000000000002").unwrap());
        for s in ["o", "1", "a", "", "ok", "ok", "{}"] {
            want.extend_from_slice(&(s.len() as u32).to_be_bytes());
            want.extend_from_slice(s.as_bytes());
        }
        assert_eq!(canonical(&f), want);
        let r = record(1, ZERO_HASH, "{}");
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("synced"));
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
    }
}
