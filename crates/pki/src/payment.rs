//! Payment authorisation signed by the card (the remote-payment flow of CN101938520A).
//!
//! 1. The merchant side builds a [`PaymentRequest`]; [`PaymentAuthenticator::issue_challenge`]
//!    wraps it in a one-time [`PaymentChallenge`] with a fresh nonce and an expiry,
//!    optionally bound to the payer's certificate serial.
//! 2. The host shows the payment to the holder (it can decode the
//!    [canonical bytes](PaymentChallenge::canonical_bytes) itself), the holder enters the
//!    PIN and the card signs [`PaymentChallenge::digest`] = SHA-256(canonical bytes), in the
//!    formats of [`crate::key`].
//! 3. [`PaymentAuthenticator::verify`] checks, in this order, and answers with the first
//!    failure: the challenge exists ([`PaymentError::UnknownChallenge`]) and is unused
//!    ([`PaymentError::Replayed`]), is not expired ([`PaymentError::Expired`]), the request
//!    the client presents is the one issued ([`PaymentError::Tampered`]), the certificate
//!    chains to our CA ([`PaymentError::ForeignCertificate`]), is a client certificate, is
//!    within its validity ([`PaymentError::CertificateExpired`]), is not revoked
//!    ([`PaymentError::Revoked`]), belongs to the bound payer, and the signature is valid
//!    ([`PaymentError::BadSignature`]). It then marks the challenge used and records the
//!    [`Authorisation`] atomically (a concurrent replay gets `Replayed`).
//!
//! A signature the card made over any other amount, payee, order, nonce or expiry does
//! not verify against the issued challenge's digest, so it is `BadSignature`.
//!
//! # Canonical encoding (version 1)
//!
//! ```text
//! "cardwright/payment/v1" 00      22 bytes: domain separation and version tag
//! then eight fields, always all present, in this order, each  tag(1) || length(2, BE) || value
//!   01 challenge id     16 bytes
//!   02 nonce            32 bytes, random
//!   03 expires_at        8 bytes, signed big-endian Unix seconds
//!   04 amount_minor      8 bytes, unsigned big-endian, in minor units of the currency (> 0)
//!   05 currency          3 bytes, ISO 4217 alphabetic code, A–Z
//!   06 payee             1..=128 bytes UTF-8, no control characters
//!   07 order_id          1..=64 bytes UTF-8, no control characters
//!   08 payer             0..=20 bytes: certificate serial the challenge is bound to, empty if none
//! ```
//!
//! The decoder ([`PaymentChallenge::from_canonical_bytes`]) accepts exactly this form
//! (fixed order, exact lengths, no trailing bytes), and `decode(encode(c)) == c`; hence two
//! different challenges never have the same bytes.

use std::{sync::Arc, time::Duration};

use time::OffsetDateTime;

use crate::{
    ca::{CertificateAuthority, CertificateError},
    cert::{RevocationReason, Serial},
    clock::whole_seconds,
    key::sha256,
    store::{ChallengeId, ChallengeState, PaymentStore, StoreError},
    util::hex_serde,
};

/// Domain separation and version tag of the canonical payment encoding.
pub const PAYMENT_TAG: &[u8; 22] = b"cardwright/payment/v1\0";
/// Default lifetime of a payment challenge.
pub const DEFAULT_CHALLENGE_TTL: Duration = Duration::from_secs(3 * 60);
/// Maximum payee length in bytes.
pub const MAX_PAYEE_LEN: usize = 128;
/// Maximum order identifier length in bytes.
pub const MAX_ORDER_ID_LEN: usize = 64;

/// What is being paid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PaymentRequest {
    /// Amount in minor units of `currency` (e.g. cents, fen); must be positive.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub amount_minor: u64,
    /// ISO 4217 alphabetic currency code, e.g. `"CNY"`, `"EUR"`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Z]{3}$"))]
    pub currency: String,
    /// Who is paid (merchant identifier or name).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    pub payee: String,
    /// The merchant's order identifier.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub order_id: String,
}

impl PaymentRequest {
    /// Check the field constraints of the canonical encoding.
    pub fn validate(&self) -> Result<(), PaymentError> {
        let invalid = |m: &'static str| Err(PaymentError::InvalidRequest(m));
        if self.amount_minor == 0 {
            return invalid("amount must be positive");
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return invalid("currency must be an ISO 4217 alphabetic code (three letters A-Z)");
        }
        if !text_ok(&self.payee, MAX_PAYEE_LEN) {
            return invalid("payee must be 1..=128 bytes without control characters");
        }
        if !text_ok(&self.order_id, MAX_ORDER_ID_LEN) {
            return invalid("order id must be 1..=64 bytes without control characters");
        }
        Ok(())
    }
}

fn text_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

/// A one-time payment challenge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PaymentChallenge {
    /// Identifier.
    pub id: ChallengeId,
    /// 32 random bytes.
    #[serde(with = "hex_serde")]
    pub nonce: [u8; 32],
    /// After this instant (whole seconds) the challenge is refused.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The payment.
    pub request: PaymentRequest,
    /// If set, only the card holding the certificate with this serial may authorise.
    pub payer: Option<Serial>,
}

/// Why canonical bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// Does not start with [`PAYMENT_TAG`] (other version or other purpose).
    #[error("not a version 1 payment encoding")]
    BadTag,
    /// Input ended inside a field.
    #[error("truncated at field {0:02x}")]
    Truncated(u8),
    /// A field has the wrong tag (fields are in a fixed order).
    #[error("expected field {expected:02x}, found {found:02x}")]
    UnexpectedField {
        /// Tag expected at this position.
        expected: u8,
        /// Tag found.
        found: u8,
    },
    /// A field value violates its constraints.
    #[error("field {tag:02x}: {reason}")]
    InvalidField {
        /// Field tag.
        tag: u8,
        /// What is wrong.
        reason: &'static str,
    },
    /// Bytes after the last field.
    #[error("trailing bytes after the last field")]
    TrailingBytes,
}

impl PaymentChallenge {
    /// The canonical bytes (layout in the module documentation). Encoding a challenge
    /// whose request does not [validate](PaymentRequest::validate) still produces bytes,
    /// but the decoder would refuse them; challenges from
    /// [`PaymentAuthenticator::issue_challenge`] always validate.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let r = &self.request;
        let mut out = Vec::with_capacity(
            PAYMENT_TAG.len() + 8 * 3 + 67 + r.payee.len() + r.order_id.len() + 20,
        );
        out.extend_from_slice(PAYMENT_TAG);
        let mut field = |tag: u8, value: &[u8]| {
            out.push(tag);
            // Values are bounded far below 65536 by validation; saturate defensively.
            let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&value[..usize::from(len)]);
        };
        field(0x01, &self.id.0);
        field(0x02, &self.nonce);
        field(0x03, &self.expires_at.unix_timestamp().to_be_bytes());
        field(0x04, &r.amount_minor.to_be_bytes());
        field(0x05, r.currency.as_bytes());
        field(0x06, r.payee.as_bytes());
        field(0x07, r.order_id.as_bytes());
        field(0x08, self.payer.as_ref().map_or(&[][..], Serial::as_bytes));
        out
    }

    /// Decode canonical bytes, strictly (see the module documentation).
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, CanonicalError> {
        let mut rest = bytes
            .strip_prefix(&PAYMENT_TAG[..])
            .ok_or(CanonicalError::BadTag)?;
        let mut next = |expected: u8| -> Result<&[u8], CanonicalError> {
            let (&tag, after) = rest
                .split_first()
                .ok_or(CanonicalError::Truncated(expected))?;
            if tag != expected {
                return Err(CanonicalError::UnexpectedField {
                    expected,
                    found: tag,
                });
            }
            if after.len() < 2 {
                return Err(CanonicalError::Truncated(expected));
            }
            let len = usize::from(u16::from_be_bytes([after[0], after[1]]));
            let after = &after[2..];
            if after.len() < len {
                return Err(CanonicalError::Truncated(expected));
            }
            let (value, tail) = after.split_at(len);
            rest = tail;
            Ok(value)
        };
        let invalid = |tag, reason| CanonicalError::InvalidField { tag, reason };
        let fixed = |tag: u8, v: &[u8], n: usize| {
            if v.len() == n {
                Ok(())
            } else {
                Err(invalid(tag, "wrong length"))
            }
        };
        let id = next(0x01)?;
        fixed(0x01, id, 16)?;
        let nonce = next(0x02)?;
        fixed(0x02, nonce, 32)?;
        let expires = next(0x03)?;
        fixed(0x03, expires, 8)?;
        let amount = next(0x04)?;
        fixed(0x04, amount, 8)?;
        let currency = next(0x05)?;
        fixed(0x05, currency, 3)?;
        let payee = next(0x06)?;
        let order_id = next(0x07)?;
        let payer = next(0x08)?;
        if !rest.is_empty() {
            return Err(CanonicalError::TrailingBytes);
        }

        let mut id16 = [0u8; 16];
        id16.copy_from_slice(id);
        let mut nonce32 = [0u8; 32];
        nonce32.copy_from_slice(nonce);
        let mut b8 = [0u8; 8];
        b8.copy_from_slice(expires);
        let expires_at = OffsetDateTime::from_unix_timestamp(i64::from_be_bytes(b8))
            .map_err(|_| invalid(0x03, "time out of range"))?;
        b8.copy_from_slice(amount);
        let amount_minor = u64::from_be_bytes(b8);
        let text = |tag, v: &[u8]| {
            std::str::from_utf8(v)
                .map(str::to_owned)
                .map_err(|_| invalid(tag, "not UTF-8"))
        };
        let request = PaymentRequest {
            amount_minor,
            currency: text(0x05, currency)?,
            payee: text(0x06, payee)?,
            order_id: text(0x07, order_id)?,
        };
        if let Err(PaymentError::InvalidRequest(reason)) = request.validate() {
            let tag = if amount_minor == 0 {
                0x04
            } else if request.currency.len() != 3
                || !request.currency.bytes().all(|b| b.is_ascii_uppercase())
            {
                0x05
            } else if !text_ok(&request.payee, MAX_PAYEE_LEN) {
                0x06
            } else {
                0x07
            };
            return Err(invalid(tag, reason));
        }
        let payer = if payer.is_empty() {
            None
        } else {
            match Serial::from_bytes(payer) {
                Some(s) if s.as_bytes() == payer => Some(s),
                _ => {
                    return Err(invalid(
                        0x08,
                        "not a minimal non-zero serial of at most 20 bytes",
                    ))
                }
            }
        };
        Ok(Self {
            id: ChallengeId(id16),
            nonce: nonce32,
            expires_at,
            request,
            payer,
        })
    }

    /// SHA-256 of the canonical bytes: what the card signs.
    pub fn digest(&self) -> [u8; 32] {
        sha256(&self.canonical_bytes())
    }
}

/// A verified payment authorisation, as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Authorisation {
    /// The challenge answered.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9A-Fa-f]{32}$"))]
    pub challenge_id: ChallengeId,
    /// The payment authorised.
    pub request: PaymentRequest,
    /// Serial of the certificate of the signing card.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub certificate_serial: Serial,
    /// Subject of that certificate (RFC 4514).
    pub subject: String,
    /// The signed digest.
    #[serde(with = "hex_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^([0-9A-Fa-f]{2})*$"))]
    pub digest: [u8; 32],
    /// The card's signature (evidence; verifiable again with the certificate).
    #[serde(with = "hex_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^([0-9A-Fa-f]{2})*$"))]
    pub signature: Vec<u8>,
    /// When the server verified it.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub authorised_at: OffsetDateTime,
}

/// Why a payment step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The payment request violates a field constraint.
    #[error("invalid payment request: {0}")]
    InvalidRequest(&'static str),
    /// No such challenge (never issued, or purged after expiry).
    #[error("unknown payment challenge")]
    UnknownChallenge,
    /// The challenge was already used: this is a replayed signature.
    #[error("payment challenge already used (replay)")]
    Replayed,
    /// The challenge expired.
    #[error("payment challenge expired at {expired_at}")]
    Expired {
        /// Expiry instant.
        expired_at: OffsetDateTime,
    },
    /// The request presented differs from the one issued.
    #[error("payment request changed after issue: {field} differs")]
    Tampered {
        /// The first differing field: `amount`, `currency`, `payee` or `order_id`.
        field: &'static str,
    },
    /// The certificate bytes are not a certificate.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    /// The certificate was not issued by our CA.
    #[error("certificate not issued by this CA: {0}")]
    ForeignCertificate(&'static str),
    /// Issued by our CA but not a client certificate.
    #[error("not a client certificate: {0}")]
    NotClientCertificate(&'static str),
    /// The certificate is not yet valid.
    #[error("certificate not valid before {not_before}")]
    CertificateNotYetValid {
        /// Start of validity.
        not_before: OffsetDateTime,
    },
    /// The certificate expired.
    #[error("certificate expired at {not_after}")]
    CertificateExpired {
        /// End of validity.
        not_after: OffsetDateTime,
    },
    /// The certificate is revoked.
    #[error("certificate revoked at {revoked_at} ({reason})")]
    Revoked {
        /// When.
        revoked_at: OffsetDateTime,
        /// Why.
        reason: RevocationReason,
    },
    /// The challenge is bound to another card's certificate.
    #[error("challenge is bound to another payer certificate")]
    WrongPayer,
    /// The signature is malformed or does not verify over the challenge digest.
    #[error("signature does not verify over the payment challenge")]
    BadSignature,
    /// Storage failed.
    #[error("storage: {0}")]
    Store(String),
}

impl PaymentError {
    /// A stable machine-readable code for APIs and audit records.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnknownChallenge => "unknown_challenge",
            Self::Replayed => "replayed",
            Self::Expired { .. } => "expired",
            Self::Tampered { .. } => "tampered",
            Self::MalformedCertificate(_) => "malformed_certificate",
            Self::ForeignCertificate(_) => "foreign_certificate",
            Self::NotClientCertificate(_) => "not_client_certificate",
            Self::CertificateNotYetValid { .. } => "certificate_not_yet_valid",
            Self::CertificateExpired { .. } => "certificate_expired",
            Self::Revoked { .. } => "revoked",
            Self::WrongPayer => "wrong_payer",
            Self::BadSignature => "bad_signature",
            Self::Store(_) => "store_error",
        }
    }
}

impl From<StoreError> for PaymentError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

impl From<CertificateError> for PaymentError {
    fn from(e: CertificateError) -> Self {
        match e {
            CertificateError::Malformed(m) => Self::MalformedCertificate(m),
            CertificateError::Foreign(m) => Self::ForeignCertificate(m),
            CertificateError::NotClientCertificate(m) => Self::NotClientCertificate(m),
            CertificateError::NotYetValid { not_before } => {
                Self::CertificateNotYetValid { not_before }
            }
            CertificateError::Expired { not_after } => Self::CertificateExpired { not_after },
            CertificateError::Revoked { revoked_at, reason } => {
                Self::Revoked { revoked_at, reason }
            }
            CertificateError::Store(m) => Self::Store(m),
        }
    }
}

/// The payment authenticator.
#[derive(Debug)]
pub struct PaymentAuthenticator {
    ca: Arc<CertificateAuthority>,
    store: Arc<dyn PaymentStore>,
    challenge_ttl: Duration,
}

impl PaymentAuthenticator {
    /// An authenticator with the default challenge lifetime.
    pub fn new(ca: Arc<CertificateAuthority>, store: Arc<dyn PaymentStore>) -> Self {
        Self {
            ca,
            store,
            challenge_ttl: DEFAULT_CHALLENGE_TTL,
        }
    }

    /// Set how long a challenge stays valid.
    #[must_use]
    pub fn with_challenge_ttl(mut self, ttl: Duration) -> Self {
        self.challenge_ttl = ttl;
        self
    }

    /// Issue a one-time challenge for `request`, optionally bound to the certificate
    /// serial of the expected payer's card.
    pub fn issue_challenge(
        &self,
        request: PaymentRequest,
        payer: Option<Serial>,
    ) -> Result<PaymentChallenge, PaymentError> {
        use rand::Rng as _;
        request.validate()?;
        let ttl = time::Duration::try_from(self.challenge_ttl)
            .map_err(|_| PaymentError::InvalidRequest("challenge lifetime out of range"))?;
        let mut nonce = [0u8; 32];
        rand::rng().fill_bytes(&mut nonce);
        let challenge = PaymentChallenge {
            id: ChallengeId::random(),
            nonce,
            expires_at: whole_seconds(self.ca.clock().now()) + ttl,
            request,
            payer,
        };
        self.store.insert_payment_challenge(&challenge)?;
        Ok(challenge)
    }

    /// Verify a card's signature for a challenge (checks and order in the module
    /// documentation) and record the authorisation.
    ///
    /// `presented` is the payment as the client submits it (e.g. the checkout form);
    /// `certificate_der` the card's certificate; `signature` the card's signature over
    /// [`PaymentChallenge::digest`].
    pub fn verify(
        &self,
        challenge_id: &ChallengeId,
        presented: &PaymentRequest,
        certificate_der: &[u8],
        signature: &[u8],
    ) -> Result<Authorisation, PaymentError> {
        let (challenge, state) = self
            .store
            .payment_challenge(challenge_id)?
            .ok_or(PaymentError::UnknownChallenge)?;
        if state == ChallengeState::Used {
            return Err(PaymentError::Replayed);
        }
        let now = self.ca.clock().now();
        if now > challenge.expires_at {
            return Err(PaymentError::Expired {
                expired_at: challenge.expires_at,
            });
        }
        let issued = &challenge.request;
        let tampered = if presented.amount_minor != issued.amount_minor {
            Some("amount")
        } else if presented.currency != issued.currency {
            Some("currency")
        } else if presented.payee != issued.payee {
            Some("payee")
        } else if presented.order_id != issued.order_id {
            Some("order_id")
        } else {
            None
        };
        if let Some(field) = tampered {
            return Err(PaymentError::Tampered { field });
        }
        let cert = self.ca.validate_client_certificate(certificate_der, now)?;
        if challenge.payer.as_ref().is_some_and(|p| p != &cert.serial) {
            return Err(PaymentError::WrongPayer);
        }
        // The card signed the digest of these bytes; verifying the bytes (the key hashes
        // them) takes the fast path for P-256 (`PublicKey::verify`).
        let message = challenge.canonical_bytes();
        let digest = sha256(&message);
        cert.public_key
            .verify(&message, signature)
            .map_err(|_| PaymentError::BadSignature)?;
        let authorisation = Authorisation {
            challenge_id: challenge.id,
            request: challenge.request,
            certificate_serial: cert.serial.clone(),
            subject: cert.subject.clone(),
            digest,
            signature: signature.to_vec(),
            authorised_at: now,
        };
        if !self.store.record_authorisation(&authorisation)? {
            return Err(PaymentError::Replayed);
        }
        Ok(authorisation)
    }
}
