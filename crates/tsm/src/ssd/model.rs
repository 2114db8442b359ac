//! The records of issue #10: partners and their contracts, SSDs, their key versions, the
//! key policy, and what the two platforms exchange.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use gp::aid::Aid;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

use crate::model::text_enum;

text_enum! {
    /// Who manages the SSD once it exists (GP 2.3.1 §6.4, §9.1.3).
    SsdModel {
        /// Authorized Management: the SSD is extradited to itself, leaves the ISD's
        /// hierarchy, and its owner (the AP) manages its content with its own keys.
        Authorized = "authorized",
        /// Delegated Management: the CI keeps the SSD's keys; the AP's loads and installs
        /// carry tokens the CI signs, and the card answers with receipts.
        Delegated = "delegated",
    }
}

text_enum! {
    /// Where an SSD is in its life.
    SsdState {
        /// Asked for; the creation job has not finished.
        Requested = "requested",
        /// On the card, with the CI's initial keys (authorized model: not yet handed over).
        Created = "created",
        /// Authorized model: the AP replaced the initial keys and the CI deleted its copy.
        HandedOver = "handed_over",
        /// Delegated model: on the card, managed by the CI for the AP.
        Managed = "managed",
        /// Locked (with its applications) after a compromise of its owner's keys.
        Locked = "locked",
        /// Deleted from the card.
        Deleted = "deleted",
        /// The creation failed; the card holds no part of it (rolled back).
        Failed = "failed",
    }
}

text_enum! {
    /// Which platform's key store holds a key version.
    KeyHolder {
        /// The card issuer's.
        Ci = "CI",
        /// The application provider's.
        Ap = "AP",
    }
}

text_enum! {
    /// The state of an SSD key version.
    KeyState {
        /// On the card and usable (until it expires).
        Active = "active",
        /// Replaced on the card by a later version (hand-over or renewal).
        Replaced = "replaced",
        /// Marked compromised: usable only for its own replacement.
        Compromised = "compromised",
    }
}

/// A range of card numbers a partner holds a contract for: `first ..= last`, compared as
/// numbers (same-length digit strings compare as text; a shorter number is smaller).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRange {
    /// First card number of the range.
    pub first: String,
    /// Last card number of the range.
    pub last: String,
}

/// Card numbers as numbers: by length, then digit by digit (numbers carry no leading zero
/// in the comparison).
fn numeric_key(s: &str) -> (usize, &str) {
    let t = s.trim_start_matches('0');
    (t.len(), t)
}

impl CardRange {
    /// A range; both ends 1-20 digits and `first <= last`.
    pub fn new(first: &str, last: &str) -> Result<CardRange, StoreError> {
        for n in [first, last] {
            if n.is_empty() || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(StoreError::Invalid {
                    what: "card number range",
                    detail: format!("'{n}' is not 1-20 digits"),
                });
            }
        }
        if numeric_key(first) > numeric_key(last) {
            return Err(StoreError::Invalid {
                what: "card number range",
                detail: format!("{first} is above {last}"),
            });
        }
        Ok(CardRange {
            first: first.into(),
            last: last.into(),
        })
    }

    /// Whether a card number lies in the range.
    pub fn contains(&self, card_number: &str) -> bool {
        if card_number.is_empty() || !card_number.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let k = numeric_key(card_number);
        numeric_key(&self.first) <= k && k <= numeric_key(&self.last)
    }
}

/// A partner (application provider) registered on the CI platform.
#[derive(Clone, PartialEq, Eq)]
pub struct Partner {
    /// Identifier (also its tenant id on the CI platform).
    pub id: String,
    /// Display name.
    pub name: String,
    /// DER of its root CA certificate (the trust anchor of its client certificates).
    pub certificate: Vec<u8>,
    /// SHA-256 of `certificate`: what [`crate::Store::partner_for_certificate`] looks up.
    pub certificate_sha256: [u8; 32],
    /// The AID prefix its SSDs (and nothing else) must start with.
    pub aid_prefix: Vec<u8>,
    /// The card numbers it holds contracts for.
    pub card_ranges: Vec<CardRange>,
    /// SubjectPublicKeyInfo (DER) of its P-256 key-agreement key: initial keys are wrapped
    /// for it.
    pub transport_key: Vec<u8>,
    /// Whether it is revoked (then it can do nothing).
    pub revoked: bool,
    /// When it was revoked.
    pub revoked_ms: Option<i64>,
    /// When it was registered.
    pub created_ms: i64,
}

impl fmt::Debug for Partner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partner")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("certificate_sha256", &apdu::hex(&self.certificate_sha256))
            .field("aid_prefix", &apdu::hex(&self.aid_prefix))
            .field("card_ranges", &self.card_ranges)
            .field("revoked", &self.revoked)
            .finish()
    }
}

impl Partner {
    /// Whether the partner's contract covers this card number.
    pub fn covers_card(&self, card_number: &str) -> bool {
        self.card_ranges.iter().any(|r| r.contains(card_number))
    }
    /// Whether an AID is under the partner's prefix (and is not the ISD).
    pub fn covers_aid(&self, aid: &Aid) -> bool {
        aid.as_bytes() != gp::aid::ISD_AID.as_bytes()
            && aid.len() > self.aid_prefix.len()
            && aid.as_bytes().starts_with(&self.aid_prefix)
    }
}

/// What registers a partner ([`crate::Store::add_partner`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartner {
    /// Identifier: 1-64 characters `[A-Za-z0-9._-]`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its root CA certificate, DER or PEM.
    pub certificate: Vec<u8>,
    /// The AID prefix of its SSDs (1-15 bytes).
    pub aid_prefix: Vec<u8>,
    /// Its card-number contract ranges (at least one).
    pub card_ranges: Vec<CardRange>,
    /// Its P-256 key-agreement public key (SubjectPublicKeyInfo, DER or PEM).
    pub transport_key: Vec<u8>,
}

/// How long SSD key versions live (issue #10 flow 3): `--ssd-lifetime 365d
/// --renew-before 30d` by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPolicy {
    /// Lifetime of a new key version.
    pub ssd_lifetime: Duration,
    /// How long before expiry a key version falls due for renewal.
    pub renew_before: Duration,
}

impl KeyPolicy {
    /// The expiry of a key version created at `now_ms` (saturating).
    pub(crate) fn expiry_of_new_key(&self, now_ms: i64) -> i64 {
        now_ms.saturating_add(i64::try_from(self.ssd_lifetime.as_millis()).unwrap_or(i64::MAX))
    }
}

impl Default for KeyPolicy {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        KeyPolicy {
            ssd_lifetime: Duration::from_secs(365 * DAY),
            renew_before: Duration::from_secs(30 * DAY),
        }
    }
}

impl KeyPolicy {
    /// The longest lifetime a policy may give (100 years of 365 days).
    pub const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 86_400);

    /// A policy; the renewal window must be shorter than the lifetime, which is at most
    /// [`KeyPolicy::MAX_LIFETIME`].
    pub fn new(ssd_lifetime: Duration, renew_before: Duration) -> Result<KeyPolicy, StoreError> {
        if ssd_lifetime > Self::MAX_LIFETIME {
            return Err(StoreError::Invalid {
                what: "key policy",
                detail: "the lifetime is at most 100 years".into(),
            });
        }
        if ssd_lifetime.is_zero() || renew_before >= ssd_lifetime {
            return Err(StoreError::Invalid {
                what: "key policy",
                detail: "the renewal window must be shorter than a non-zero lifetime".into(),
            });
        }
        Ok(KeyPolicy {
            ssd_lifetime,
            renew_before,
        })
    }
}

/// One key version of an SSD: never the key bytes, only where they are and their check
/// value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsdKeyVersion {
    /// Key version number on the card.
    pub kvn: u8,
    /// When it was put on the card (or generated, before that).
    pub created_ms: i64,
    /// When it expires (from the key policy at creation).
    pub expires_ms: i64,
    /// Whose key store holds it.
    pub holder: KeyHolder,
    /// Active, replaced or compromised.
    pub state: KeyState,
    /// Why it was marked compromised.
    pub reason: Option<String>,
    /// Key check value of the ENC key (3 bytes; GP 2.3.1 §B.6 / Amd D §7.2).
    pub kcv: Vec<u8>,
}

impl SsdKeyVersion {
    /// Whether it has expired at `at_ms`.
    pub fn expired(&self, at_ms: i64) -> bool {
        at_ms >= self.expires_ms
    }
}

/// One renewal of an SSD's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    /// Key version replaced.
    pub from_kvn: u8,
    /// Key version that replaced it.
    pub to_kvn: u8,
    /// `expiry`, `forced` (compromise) or `handover`.
    pub cause: String,
    /// Free text (the compromise reason).
    pub reason: Option<String>,
    /// When.
    pub at_ms: i64,
}

/// Everything recorded about one SSD (issue #10: owner, model, key versions with creation
/// and expiry, who holds which, hand-over time and receipt, renewal history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsdRecord {
    /// The card.
    pub card_number: String,
    /// The SSD's AID (hex).
    pub aid: String,
    /// The partner that owns it.
    pub owner: String,
    /// Authorized or delegated.
    pub model: SsdModel,
    /// Its privileges (3 bytes, GP 2.3.1 §11.1.2).
    pub privileges: Vec<u8>,
    /// Its state.
    pub state: SsdState,
    /// When it was asked for.
    pub created_ms: i64,
    /// When the AP took it over (authorized model).
    pub handed_over_ms: Option<i64>,
    /// The hand-over receipt: SHA-256 over the job, the AID, the new KVN and its KCV, as
    /// the CI recorded it when the AP confirmed the rotation (hex).
    pub receipt: Option<String>,
    /// Its key versions, oldest first.
    pub keys: Vec<SsdKeyVersion>,
    /// Its renewals, oldest first.
    pub renewals: Vec<Renewal>,
    /// Delegated model: the card's receipts of the owner's loads, installs and deletions
    /// the CI verified, by confirmation counter.
    #[serde(default)]
    pub receipts: Vec<DmReceipt>,
}

/// A Delegated Management receipt the card gave for an operation on an SSD's content and
/// the CI verified (GP 2.3.1 §9.1.3.3, Appendix C.5): the owner's proof of the operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmReceipt {
    /// The card's confirmation counter (rises with every receipt of the card).
    pub counter: u16,
    /// `load`, `install`, `extradition` or `delete`.
    pub operation: String,
    /// What it was done to (the AIDs of the receipt input, hex, space-separated).
    pub object: String,
    /// The receipt (the MAC of the receipt input with the card's receipt key).
    pub receipt: Vec<u8>,
    /// When the CI verified it.
    pub at_ms: i64,
}

impl SsdRecord {
    /// The key version in use (active or compromised, not replaced).
    pub fn current_key(&self) -> Option<&SsdKeyVersion> {
        self.keys
            .iter()
            .rev()
            .find(|k| k.state != KeyState::Replaced)
    }
}

/// What an AP asks the CI for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsdRequest {
    /// The card.
    pub card_number: String,
    /// The SSD's AID (hex; under the partner's prefix).
    pub aid: String,
    /// Who manages it.
    pub model: SsdModel,
}

/// The next step of the APDU relay ([`crate::ssd::CardIssuerLink::exchange`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exchange {
    /// The next C-APDU for the card, to be sent unchanged.
    Command(Vec<u8>),
    /// The CI's flow asks for a warm reset of the card: the next response is the card's
    /// ATR after the reset.
    Reset,
    /// The CI's side of the job is over.
    Done,
}

/// A key version falling due ([`crate::ssd::CiPlatform::due`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueRenewal {
    /// The card.
    pub card_number: String,
    /// The SSD.
    pub aid: String,
    /// Its owner.
    pub owner: String,
    /// The key version due.
    pub kvn: u8,
    /// Whose key store holds it.
    pub holder: KeyHolder,
    /// When it expires.
    pub expires_ms: i64,
    /// Why: `expiry` (in the renewal window or expired) or `compromised`.
    pub cause: String,
}

/// What the AP tells the CI once it replaced the initial keys
/// ([`crate::ssd::CiPlatform::confirm_rotation`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// The new key version number on the card.
    pub kvn: u8,
    /// KCV of the new ENC key, as the card confirmed it in the PUT KEY response.
    pub kcv: Vec<u8>,
}
