//! The records the platform keeps: tenants, card categories, base key versions (references
//! only), application packages, cards, jobs and their steps.
//!
//! Times are Unix milliseconds (`*_ms`), which both databases store as `BIGINT`.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use gp::aid::Aid;
use gp::privileges::Privileges;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $s)] $v),+ }
        impl $name {
            /// The name stored in the database and used in the APIs.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $name {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($s => Ok($name::$v),)+
                    other => Err(StoreError::Corrupt {
                        what: stringify!($name).into(),
                        detail: format!("unknown value '{other}'"),
                    }),
                }
            }
        }
    };
}
/// `text_enum!` for the other record modules (one definition).
pub(crate) use text_enum;

text_enum! {
    /// What a tenant is to the platform (seed 003: card issuer and application providers).
    Role {
        /// Card issuer: owns card categories, base keys and cards.
        CardIssuer = "CI",
        /// Application provider: owns application packages.
        ApplicationProvider = "AP",
    }
}

text_enum! {
    /// Where a card is in its life with the platform.
    CardState {
        /// Initial (factory / transport) keys, no personalisation.
        Blank = "blank",
        /// Keys derived from the category's base key and the card number, personalised.
        Written = "written",
        /// A job stopped on a refusal of the card half-way; the card row records exactly
        /// what is on the card (keys, KDD, applications). `clear` returns it to blank.
        Partial = "partial",
    }
}

text_enum! {
    /// The workflows of CN102056165A (write, rewrite, clear, application management).
    JobKind {
        /// Write card: derive and inject the card's keys, personalise, install applications.
        Write = "write",
        /// Rewrite card: prove the current keys, replace them with the next base version's.
        Rewrite = "rewrite",
        /// Clear card: back to the initial keys, no applications, no personalisation.
        Clear = "clear",
        /// Load and install an application.
        AppLoad = "app_load",
        /// Delete an application (and its load file).
        AppDelete = "app_delete",
        /// CI: create a supplementary security domain with initial keys ([`crate::ssd`]).
        SsdCreate = "ssd_create",
        /// AP: relay the CI's commands, take the initial keys, replace them ([`crate::ssd`]).
        SsdRotate = "ssd_rotate",
        /// Replace an SSD's key set that falls due (expiry) or is compromised.
        SsdRenew = "ssd_renew",
        /// Lock an SSD with its applications, delete it and create it again (its owner's
        /// keys are compromised).
        SsdReplace = "ssd_replace",
    }
}

text_enum! {
    /// A job's state.
    JobState {
        /// Waiting to run (new, or interrupted and resumable).
        Pending = "pending",
        /// Claimed by a worker (until its lease expires).
        Running = "running",
        /// Finished; card and database agree.
        Done = "done",
        /// Stopped for good; card and database still agree (see the error and the steps).
        Failed = "failed",
    }
}

text_enum! {
    /// A job step's state: recorded before (`started`) and after (`done`) it runs.
    StepState {
        /// Not reached yet.
        Pending = "pending",
        /// About to run or running: after a crash, its effect on the card is unknown and
        /// the next run checks the card before doing it again.
        Started = "started",
        /// Its effect is on the card and in the database.
        Done = "done",
    }
}

text_enum! {
    /// A base key version's state as the platform sees it.
    KeyVersionStatus {
        /// May be used to write new cards and to manage cards written with it.
        Active = "active",
        /// No new card is written with it; cards still carrying it can be rewritten.
        Retired = "retired",
    }
}

/// A card issuer or application provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Short identifier (`acme-mobile`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// CI or AP.
    pub role: Role,
    /// Creation time.
    pub created_ms: i64,
}

/// The keys a blank card of a category comes with (its "initial" or transport keys).
/// A reference: the database never holds key bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InitialKeys {
    /// The public GlobalPlatform test key `40 41 … 4F` as ENC = MAC = DEK, not diversified
    /// (what the virtual card and most sample cards ship with).
    GpTestKey,
    /// A transport base key in the key store, diversified with the card's factory KDD
    /// (`KeyStore::derive_for_kdd`).
    Kms {
        /// Key-store category of the transport key.
        category: String,
        /// Its version.
        version: u32,
    },
}

/// A card category (CN102056165A: region, tariff plan, …): one base key lineage, initial
/// keys, personalisation and applications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// Identifier; also the key-store category of its base keys by default.
    pub id: String,
    /// Owning card issuer.
    pub tenant: String,
    /// Free text.
    pub description: String,
    /// What blank cards open with.
    pub initial_keys: InitialKeys,
    /// Key version number of the initial key set on blank cards (`01`-`7F`).
    pub initial_kvn: u8,
    /// BER-TLV data objects written to the ISD with STORE DATA (for example the IIN, `42`).
    /// Tags `CF` and `45` are the workflow's own.
    pub perso: Vec<u8>,
    /// Base key version new cards are written with.
    pub current_key_version: Option<u32>,
    /// Creation time.
    pub created_ms: i64,
}

/// A base key version known to the platform: a reference to the key store and the KCV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseKeyVersion {
    /// The card category.
    pub category: String,
    /// The version (as in the key store).
    pub version: u32,
    /// Key-store category holding the key.
    pub kms_category: String,
    /// 3DES or AES.
    pub kind: scp::KeyKind,
    /// Key check value, to detect a key store that does not hold the expected key.
    pub kcv: [u8; 3],
    /// Active or retired.
    pub status: KeyVersionStatus,
    /// Registration time.
    pub created_ms: i64,
}

/// An application package (a CAP file) owned by a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Load file AID.
    pub aid: Aid,
    /// Owner.
    pub tenant: String,
    /// Display name.
    pub name: String,
    /// SHA-256 of the CAP file as stored.
    pub sha256: [u8; 32],
    /// Registration time.
    pub created_ms: i64,
}

/// An application every card of a category gets at write time (or on request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// Instance AID.
    pub instance: Aid,
    /// Load file (package) AID.
    pub package: Aid,
    /// Executable module (applet class) AID.
    pub module: Aid,
    /// Privileges of the instance.
    pub privileges: Privileges,
    /// Application-specific install parameters (the value of `C9`).
    pub params: Vec<u8>,
    /// Personalisation data (one STORE DATA block after INSTALL [for personalization]);
    /// empty for none.
    pub perso: Vec<u8>,
}

/// A card known to the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// The card number (1-20 digits).
    pub card_number: String,
    /// Its category.
    pub category: String,
    /// Blank, written or partial.
    pub state: CardState,
    /// Base key version its keys are derived from; `None` = initial keys.
    pub key_version: Option<u32>,
    /// Key version number of the key set on the card.
    pub kvn: Option<u8>,
    /// Key diversification data the card reports now.
    pub kdd: Option<Vec<u8>>,
    /// Key diversification data the card came with (restored by clear).
    pub factory_kdd: Option<Vec<u8>>,
    /// Chip identity from the CPLC (IC fabricator, type, serial number, batch).
    pub chip_id: Option<Vec<u8>>,
    /// Kind of the initial keys (from the protocol the blank card spoke): what clear puts
    /// back.
    pub initial_key_kind: Option<scp::KeyKind>,
    /// Creation time.
    pub created_ms: i64,
    /// Last change.
    pub updated_ms: i64,
}

/// An application instance the platform installed on a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardApp {
    /// Instance AID.
    pub instance: Aid,
    /// Load file AID.
    pub package: Aid,
    /// When.
    pub installed_ms: i64,
}

/// A unit of work on one card: a workflow run as recorded, resumable step by step.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Identifier.
    pub id: i64,
    /// Tenant on whose behalf it runs.
    pub tenant: String,
    /// Who asked (user or system name).
    pub actor: String,
    /// Which workflow.
    pub kind: JobKind,
    /// The card.
    pub card_number: String,
    /// Parameters (JSON).
    pub params: serde_json::Value,
    /// State.
    pub state: JobState,
    /// Runs started so far.
    pub attempts: u32,
    /// While running: until when the worker holds it.
    pub lease_until_ms: Option<i64>,
    /// Last error, if any.
    pub error: Option<String>,
    /// Creation time.
    pub created_ms: i64,
    /// Last change.
    pub updated_ms: i64,
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Position in the job (from 0).
    pub seq: u32,
    /// What it does (`put_key`, `install:A000…`).
    pub name: String,
    /// Pending, started or done.
    pub state: StepState,
    /// How many times it was started.
    pub attempts: u32,
    /// What it did (JSON), once done.
    pub detail: Option<serde_json::Value>,
    /// Last start.
    pub started_ms: Option<i64>,
    /// Completion.
    pub finished_ms: Option<i64>,
}

/// An install record of an outlet security module (issue #11), as the outlet hashed it:
/// `hash = SHA-256(prev_hash ‖ canonical(fields))` (the `outlet::records` format; the
/// server checks it before the store takes the record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutletRecord {
    /// The outlet's id.
    pub outlet: String,
    /// Position in the outlet's chain, from 1.
    pub seq: u64,
    /// When (Unix ms, the outlet's clock).
    pub at_ms: i64,
    /// The card number (empty when the card was not identified).
    pub card: String,
    /// The application.
    pub application: String,
    /// SHA-256 of its package, hex.
    pub package_sha256: String,
    /// `ok`, `failed`, `rolled_back`, `interrupted`.
    pub result: String,
    /// `ok` or the error code.
    pub code: String,
    /// Details, JSON text as hashed.
    pub detail: String,
    /// Hash of the outlet's previous record.
    pub prev_hash: [u8; 32],
    /// This record's hash.
    pub hash: [u8; 32],
}

/// An outlet record as stored: who uploaded it and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutletRecord {
    /// The record.
    pub record: OutletRecord,
    /// The tenant of the operator who uploaded it.
    pub tenant: String,
    /// When it arrived (Unix ms).
    pub received_ms: i64,
}

/// What [`crate::Store::store_outlet_records`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutletUpload {
    /// Records stored now.
    pub stored: u64,
    /// Records already stored with the same hash (nothing changed for them).
    pub already: u64,
    /// The highest sequence number stored for the outlet after the call.
    pub through: u64,
}

pub(crate) fn parse_aid(bytes: &[u8], what: &str) -> Result<Aid, StoreError> {
    Aid::new(bytes).map_err(|e| StoreError::Corrupt {
        what: what.into(),
        detail: e.to_string(),
    })
}

pub(crate) fn u32_of(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        what: what.into(),
        detail: format!("{v} is out of range"),
    })
}

pub(crate) fn u8_of(v: i64, what: &str) -> Result<u8, StoreError> {
    u8::try_from(v).map_err(|_| StoreError::Corrupt {
        what: what.into(),
        detail: format!("{v} is out of range"),
    })
}

pub(crate) fn kind_str(kind: scp::KeyKind) -> &'static str {
    match kind {
        scp::KeyKind::Des3 => "3DES",
        scp::KeyKind::Aes => "AES",
    }
}

pub(crate) fn kind_of(s: &str) -> Result<scp::KeyKind, StoreError> {
    match s {
        "3DES" => Ok(scp::KeyKind::Des3),
        "AES" => Ok(scp::KeyKind::Aes),
        other => Err(StoreError::Corrupt {
            what: "key kind".into(),
            detail: format!("unknown value '{other}'"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip() {
        for k in [
            JobKind::Write,
            JobKind::Rewrite,
            JobKind::Clear,
            JobKind::AppLoad,
            JobKind::AppDelete,
            JobKind::SsdCreate,
            JobKind::SsdRotate,
            JobKind::SsdRenew,
            JobKind::SsdReplace,
        ] {
            assert_eq!(k.as_str().parse::<JobKind>().unwrap(), k);
        }
        assert!("bogus".parse::<JobState>().is_err());
        assert_eq!(Role::CardIssuer.to_string(), "CI");
    }

    #[test]
    fn initial_keys_json() {
        let j = serde_json::to_string(&InitialKeys::GpTestKey).unwrap();
        assert_eq!(j, r#"{"kind":"gp_test_key"}"#);
        let k: InitialKeys =
            serde_json::from_str(r#"{"kind":"kms","category":"acme/transport","version":2}"#)
                .unwrap();
        assert_eq!(
            k,
            InitialKeys::Kms {
                category: "acme/transport".into(),
                version: 2
            }
        );
    }
}
