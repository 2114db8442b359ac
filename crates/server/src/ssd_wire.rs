//! The JSON bodies of the SSD APIs (issue #10), shared by the card issuer's partner API
//! ([`crate::partner`]), the application provider's API ([`crate::ap`]) and the HTTP
//! [`tsm::ssd::CardIssuerLink`] ([`crate::partner_client`]). Bytes travel as upper-case hex,
//! times as Unix milliseconds.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// Hex text to bytes, or `400 invalid_request` naming the field.
pub fn hex_field(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    apdu::parse_hex(text).map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

/// Who manages the SSD (GP 2.3.1 §6.4, §9.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// Authorized Management: extradited to itself and handed over to the AP.
    Authorized,
    /// Delegated Management: the CI keeps the keys and signs the AP's tokens.
    Delegated,
}

impl From<Model> for tsm::ssd::SsdModel {
    fn from(m: Model) -> Self {
        match m {
            Model::Authorized => tsm::ssd::SsdModel::Authorized,
            Model::Delegated => tsm::ssd::SsdModel::Delegated,
        }
    }
}

impl From<tsm::ssd::SsdModel> for Model {
    fn from(m: tsm::ssd::SsdModel) -> Self {
        match m {
            tsm::ssd::SsdModel::Authorized => Model::Authorized,
            tsm::ssd::SsdModel::Delegated => Model::Delegated,
        }
    }
}

/// `POST /api/v1/partner/ssd-requests`: an SSD on a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsdRequestBody {
    /// Card number (1-20 digits) inside the partner's contract.
    pub card_number: String,
    /// AID of the SSD (hex) under the partner's prefix.
    pub aid: String,
    /// Who manages it.
    pub model: Model,
}

impl From<&SsdRequestBody> for tsm::ssd::SsdRequest {
    fn from(b: &SsdRequestBody) -> Self {
        tsm::ssd::SsdRequest {
            card_number: b.card_number.clone(),
            aid: b.aid.to_ascii_uppercase(),
            model: b.model.into(),
        }
    }
}

/// A job accepted (202): the card issuer's request or renewal job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobAccepted {
    /// The job id (the `{id}` of the exchange, keys and confirm routes).
    pub job: i64,
}

/// `POST …/exchange`: the card's response to the last command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeBody {
    /// The R-APDU (hex, data and SW1 SW2) of the last command (after a `reset`: the card's
    /// ATR); `null` to start (or resume
    /// after an interruption: the card issuer then starts the job's run again).
    pub response: Option<String>,
}

/// `POST …/exchange` answer: the next command, or done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExchangeAnswer {
    /// The next C-APDU (hex) to send to the card unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Reset the card (warm reset) and send its ATR (hex) as the next `response`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
    /// The card issuer's part of the job is over.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
    /// With `done`: the SSD as the card issuer records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssd: Option<SsdView>,
}

/// `GET …/keys`: the initial key set wrapped for the partner's transport key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WrappedKeys {
    /// The job.
    pub job: i64,
    /// The wrapped key set: kms' JSON document (ECDH P-256 ephemeral-static, ANSI X9.63
    /// KDF, AES key wrap; see `kms::keyset`), for the partner's transport key only.
    #[schema(value_type = Object)]
    pub wrapped: serde_json::Value,
}

/// `POST …/confirm`: the AP replaced the initial keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationBody {
    /// The new key version number on the card.
    pub kvn: u8,
    /// KCV of the new ENC key (hex, 3 bytes) as the card confirmed it.
    pub kcv: String,
}

/// `POST …/renew` (both platforms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    /// Renew now even if not due: the current key version is marked compromised first.
    #[serde(default)]
    pub force: bool,
    /// Why (recorded with a forced renewal), e.g. `compromise`.
    #[serde(default)]
    pub reason: Option<String>,
    /// AP: the terminal whose reader holds the card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<String>,
    /// AP: the reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
}

/// `POST /api/v1/partner/ssds/{card_number}/{aid}/renewals`: the partner renewed its own
/// key set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewalReport {
    /// The renewal.
    pub renewal: RenewalView,
    /// The new key version and its KCV.
    pub rotation: RotationBody,
}

/// `POST /api/v1/partner/tokens`: a Delegated Management token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The card.
    pub card_number: String,
    /// The partner's SSD (hex) the command is for.
    pub aid: String,
    /// The token input (hex): P1 ‖ P2 ‖ Lc ‖ data without the token (GP 2.3.1 Table C-4 … C-9).
    pub input: String,
}

/// A signed token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenAnswer {
    /// The token (hex).
    pub token: String,
}

/// `POST /api/v1/partner/receipts`: a receipt the card returned for a delegated operation
/// (GP 2.3.1 §9.1.3.3, Appendix C.5), forwarded by the partner as its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    /// The card.
    pub card_number: String,
    /// The partner's SSD (hex).
    pub aid: String,
    /// What the receipt confirms: `load`, `install`, `extradition` or `delete`.
    pub operation: String,
    /// The operation's AIDs (hex) in the order of the receipt input (Appendix C.5): load:
    /// load file, security domain; install: load file, application; extradition: former
    /// security domain, object, new security domain; delete: the object.
    pub aids: Vec<String>,
    /// The confirmation structure (receipt, counter, SD unique data, …) as the card answered
    /// the INSTALL, LOAD or DELETE (hex).
    pub confirmation: String,
}

impl ReceiptBody {
    /// The body for a receipt of `operation`.
    pub fn new(
        card_number: &str,
        aid: &str,
        operation: &gp::dm::ReceiptContext,
        confirmation: &[u8],
    ) -> Result<Self, String> {
        use gp::dm::ReceiptContext as R;
        let aids = match operation {
            R::Load {
                load_file,
                security_domain,
            } => vec![*load_file, *security_domain],
            R::Install {
                load_file,
                application,
            } => vec![*load_file, *application],
            R::Extradition { from, object, to } => vec![*from, *object, *to],
            R::Delete { aid } => vec![*aid],
            R::RegistryUpdate { .. } => {
                return Err("a registry update receipt is not forwarded".into())
            }
        };
        Ok(ReceiptBody {
            card_number: card_number.into(),
            aid: aid.into(),
            operation: operation.name().into(),
            aids: aids.iter().map(|a| a.to_hex()).collect(),
            confirmation: apdu::hex(confirmation),
        })
    }

    /// The operation the receipt confirms, or `400 invalid_request` naming the field.
    pub fn operation(&self) -> Result<gp::dm::ReceiptContext, ApiError> {
        use gp::dm::ReceiptContext as R;
        let aids = self
            .aids
            .iter()
            .map(|h| {
                let b = hex_field("aids", h)?;
                gp::aid::Aid::new(&b).map_err(|e| ApiError::bad_request(format!("aids: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let count = |n: usize| {
            if aids.len() == n {
                Ok(())
            } else {
                Err(ApiError::bad_request(format!(
                    "aids: a {} receipt names {n} AIDs, not {}",
                    self.operation,
                    aids.len()
                )))
            }
        };
        match self.operation.as_str() {
            "load" => count(2).map(|()| R::Load {
                load_file: aids[0],
                security_domain: aids[1],
            }),
            "install" => count(2).map(|()| R::Install {
                load_file: aids[0],
                application: aids[1],
            }),
            "extradition" => count(3).map(|()| R::Extradition {
                from: aids[0],
                object: aids[1],
                to: aids[2],
            }),
            "delete" => count(1).map(|()| R::Delete { aid: aids[0] }),
            other => Err(ApiError::bad_request(format!(
                "operation: '{other}' is not load, install, extradition or delete"
            ))),
        }
    }
}

/// A Delegated Management receipt the card issuer verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptView {
    /// The card's confirmation counter.
    pub counter: u16,
    /// `load`, `install`, `extradition` or `delete`.
    pub operation: String,
    /// The operation's AIDs (hex, space-separated).
    pub object: String,
    /// The receipt (hex).
    pub receipt: String,
    /// Verified (Unix ms).
    pub at_ms: i64,
}

/// One key version of an SSD (never key bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyVersionView {
    /// Key version number.
    pub kvn: u8,
    /// Created (Unix ms).
    pub created_ms: i64,
    /// Expires (Unix ms).
    pub expires_ms: i64,
    /// `CI` or `AP`: whose key store holds it.
    pub holder: String,
    /// `active`, `replaced` or `compromised`.
    pub state: String,
    /// Why it was marked compromised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Key check value (hex).
    pub kcv: String,
}

/// One renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RenewalView {
    /// Key version replaced.
    pub from_kvn: u8,
    /// Key version that replaced it.
    pub to_kvn: u8,
    /// `expiry`, `forced` or `handover`.
    pub cause: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// An SSD as a platform records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SsdView {
    /// Card number.
    pub card_number: String,
    /// AID (hex).
    pub aid: String,
    /// The partner that owns it.
    pub owner: String,
    /// Who manages it.
    pub model: Model,
    /// Privileges (hex, 3 bytes).
    pub privileges: String,
    /// `requested`, `created`, `handed_over`, `managed`, `locked`, `deleted`, `failed`.
    pub state: String,
    /// Asked for (Unix ms).
    pub created_ms: i64,
    /// Handed over to the AP (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_over_ms: Option<i64>,
    /// Hand-over receipt (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// Key versions, oldest first.
    pub keys: Vec<KeyVersionView>,
    /// Renewals, oldest first.
    pub renewals: Vec<RenewalView>,
    /// Delegated model: the card's receipts the card issuer verified, by counter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receipts: Vec<ReceiptView>,
}

impl From<&tsm::ssd::SsdRecord> for SsdView {
    fn from(r: &tsm::ssd::SsdRecord) -> Self {
        SsdView {
            card_number: r.card_number.clone(),
            aid: r.aid.clone(),
            owner: r.owner.clone(),
            model: r.model.into(),
            privileges: apdu::hex(&r.privileges),
            state: r.state.to_string(),
            created_ms: r.created_ms,
            handed_over_ms: r.handed_over_ms,
            receipt: r.receipt.clone(),
            keys: r
                .keys
                .iter()
                .map(|k| KeyVersionView {
                    kvn: k.kvn,
                    created_ms: k.created_ms,
                    expires_ms: k.expires_ms,
                    holder: k.holder.to_string(),
                    state: k.state.to_string(),
                    reason: k.reason.clone(),
                    kcv: apdu::hex(&k.kcv),
                })
                .collect(),
            renewals: r
                .renewals
                .iter()
                .map(|n| RenewalView {
                    from_kvn: n.from_kvn,
                    to_kvn: n.to_kvn,
                    cause: n.cause.clone(),
                    reason: n.reason.clone(),
                    at_ms: n.at_ms,
                })
                .collect(),
            receipts: r
                .receipts
                .iter()
                .map(|d| ReceiptView {
                    counter: d.counter,
                    operation: d.operation.clone(),
                    object: d.object.clone(),
                    receipt: apdu::hex(&d.receipt),
                    at_ms: d.at_ms,
                })
                .collect(),
        }
    }
}

impl SsdView {
    /// Back to the domain record (the AP's link reads the CI's answers with it).
    pub fn to_record(&self) -> Result<tsm::ssd::SsdRecord, String> {
        let parse = |f: &str, t: &str| apdu::parse_hex(t).map_err(|e| format!("{f}: {e}"));
        let keys = self
            .keys
            .iter()
            .map(|k| {
                Ok(tsm::ssd::SsdKeyVersion {
                    kvn: k.kvn,
                    created_ms: k.created_ms,
                    expires_ms: k.expires_ms,
                    holder: k.holder.parse().map_err(|e| format!("holder: {e}"))?,
                    state: k.state.parse().map_err(|e| format!("key state: {e}"))?,
                    reason: k.reason.clone(),
                    kcv: parse("kcv", &k.kcv)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(tsm::ssd::SsdRecord {
            card_number: self.card_number.clone(),
            aid: self.aid.clone(),
            owner: self.owner.clone(),
            model: self.model.into(),
            privileges: parse("privileges", &self.privileges)?,
            state: self.state.parse().map_err(|e| format!("state: {e}"))?,
            created_ms: self.created_ms,
            handed_over_ms: self.handed_over_ms,
            receipt: self.receipt.clone(),
            keys,
            renewals: self
                .renewals
                .iter()
                .map(|n| tsm::ssd::Renewal {
                    from_kvn: n.from_kvn,
                    to_kvn: n.to_kvn,
                    cause: n.cause.clone(),
                    reason: n.reason.clone(),
                    at_ms: n.at_ms,
                })
                .collect(),
            receipts: self
                .receipts
                .iter()
                .map(|d| {
                    Ok(tsm::ssd::DmReceipt {
                        counter: d.counter,
                        operation: d.operation.clone(),
                        object: d.object.clone(),
                        receipt: parse("receipt", &d.receipt)?,
                        at_ms: d.at_ms,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?,
        })
    }
}

/// A partner's SSDs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SsdList {
    /// The SSDs, by card number and AID.
    pub ssds: Vec<SsdView>,
}

/// A registered partner (no key material: its root's fingerprint and public data only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartnerView {
    /// Identifier.
    pub id: String,
    /// Display name.
    pub name: String,
    /// SHA-256 of its root CA certificate (hex).
    pub certificate_sha256: String,
    /// AID prefix of its SSDs (hex).
    pub aid_prefix: String,
    /// Contract ranges, `FIRST-LAST`.
    pub card_ranges: Vec<String>,
    /// Whether it is revoked.
    pub revoked: bool,
    /// Registered (Unix ms).
    pub created_ms: i64,
}

impl From<&tsm::ssd::Partner> for PartnerView {
    fn from(p: &tsm::ssd::Partner) -> Self {
        PartnerView {
            id: p.id.clone(),
            name: p.name.clone(),
            certificate_sha256: apdu::hex(&p.certificate_sha256),
            aid_prefix: apdu::hex(&p.aid_prefix),
            card_ranges: p
                .card_ranges
                .iter()
                .map(|r| format!("{}-{}", r.first, r.last))
                .collect(),
            revoked: p.revoked,
            created_ms: p.created_ms,
        }
    }
}

/// The registered partners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartnerList {
    /// By id.
    pub partners: Vec<PartnerView>,
}

/// `POST /api/v1/partners`: register a partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPartnerBody {
    /// Identifier, 1-64 characters `[A-Za-z0-9._-]`.
    pub id: String,
    /// Display name (default: the id).
    #[serde(default)]
    pub name: Option<String>,
    /// Its root CA certificate (PEM).
    pub certificate: String,
    /// AID prefix of its SSDs (hex, 1-15 bytes).
    pub ssd_aid_prefix: String,
    /// Contract ranges, `FIRST-LAST` (at least one).
    pub cards: Vec<String>,
    /// Its P-256 transport public key (SubjectPublicKeyInfo PEM).
    pub transport_key: String,
}

/// A range `FIRST-LAST` (or one card number) of card numbers.
pub fn card_range(text: &str) -> Result<tsm::ssd::CardRange, String> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    tsm::ssd::CardRange::new(first.trim(), last.trim()).map_err(|e| e.to_string())
}

/// `POST /api/v1/ssds/{card}/{aid}/compromised`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompromisedBody {
    /// The key version (default: the one in use).
    #[serde(default)]
    pub kvn: Option<u8>,
    /// Why.
    pub reason: String,
}

/// The SSD key policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPolicyBody {
    /// Lifetime of a new key version, seconds (at most 100 years).
    #[schema(minimum = 1, maximum = 3_153_600_000_u64)]
    pub ssd_lifetime_s: u64,
    /// How long before expiry a key version falls due, seconds (below the lifetime).
    #[schema(maximum = 3_153_600_000_u64)]
    pub renew_before_s: u64,
}

impl From<tsm::ssd::KeyPolicy> for KeyPolicyBody {
    fn from(p: tsm::ssd::KeyPolicy) -> Self {
        KeyPolicyBody {
            ssd_lifetime_s: p.ssd_lifetime.as_secs(),
            renew_before_s: p.renew_before.as_secs(),
        }
    }
}

/// A key version falling due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DueView {
    /// Card.
    pub card_number: String,
    /// SSD AID (hex).
    pub aid: String,
    /// Owner.
    pub owner: String,
    /// Key version.
    pub kvn: u8,
    /// `CI` or `AP`.
    pub holder: String,
    /// Expiry (Unix ms).
    pub expires_ms: i64,
    /// `expiry` or `compromised`.
    pub cause: String,
}

impl From<&tsm::ssd::DueRenewal> for DueView {
    fn from(d: &tsm::ssd::DueRenewal) -> Self {
        DueView {
            card_number: d.card_number.clone(),
            aid: d.aid.clone(),
            owner: d.owner.clone(),
            kvn: d.kvn,
            holder: d.holder.to_string(),
            expires_ms: d.expires_ms,
            cause: d.cause.clone(),
        }
    }
}

/// What falls due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DueList {
    /// Soonest first.
    pub due: Vec<DueView>,
}

/// `POST /api/v1/ssd/requests` on the AP: run flow 1 or 2 through a terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApSsdRequestBody {
    /// Card number.
    pub card_number: String,
    /// AID of the SSD (hex).
    pub aid: String,
    /// Who manages it.
    pub model: Model,
    /// The AP terminal whose reader holds the card.
    pub terminal: String,
    /// The reader.
    pub reader: String,
}

/// The AP's answer to a request or renewal it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApJobDone {
    /// The AP's job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<i64>,
    /// The SSD as the AP records it.
    pub ssd: SsdView,
}
