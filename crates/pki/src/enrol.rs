//! Enrolment: the card generates a key pair, the server checks proof of possession and
//! the CA issues a certificate.
//!
//! 1. The server calls [`Enroller::issue_challenge`] with the subject taken from the
//!    account. The challenge is one-time and expires (default 5 minutes).
//! 2. The host has the card generate a key (PIV GENERATE ASYMMETRIC KEY PAIR) and reads
//!    the public key ([`crate::piv::parse_public_key_template`]).
//! 3. The card signs [`EnrolmentChallenge::digest`] with the new key (after PIN), in
//!    the formats of [`crate::key`]. Optionally the host also sends a PKCS#10 request
//!    signed on the card.
//! 4. [`Enroller::complete`] checks the challenge (known, unused, unexpired), the key
//!    policy (RSA-2048 or P-256), the proof-of-possession signature, the CSR if any, marks
//!    the challenge used and issues the certificate.
//!
//! # Signed data (version 1)
//!
//! ```text
//! "cardwright/enrol-pop/v1" 00   24 bytes: domain separation and version tag
//! challenge id                   16 bytes
//! nonce                          32 bytes, random
//! expires_at                      8 bytes, signed big-endian Unix seconds
//! ```
//!
//! The card signs `SHA-256` of these 80 bytes. The tag differs from the payment one
//! ([`crate::payment`]) in its first bytes, so a proof of possession can never be
//! presented as a payment authorisation or the reverse.

use std::{sync::Arc, time::Duration};

use der::{Decode, Encode};
use time::OffsetDateTime;
use x509_cert::request::CertReqInfo;

use crate::{
    ca::{CaError, CertificateAuthority},
    cert::{Certificate, SignedRef},
    clock::whole_seconds,
    key::{sha256, KeyAlgorithm, KeyError, PublicKey, SignatureError},
    store::{ChallengeId, ChallengeState, EnrolmentStore, StoreError},
    subject::{Subject, SubjectError},
    util::hex_serde,
};

/// Domain separation and version tag of the proof-of-possession data.
pub const POP_TAG: &[u8; 24] = b"cardwright/enrol-pop/v1\0";

/// Default lifetime of an enrolment challenge.
pub const DEFAULT_CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);
/// Default validity of an issued certificate (two years).
pub const DEFAULT_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(730 * 24 * 3600);

/// A one-time enrolment challenge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrolmentChallenge {
    /// Identifier.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9A-Fa-f]{32}$"))]
    pub id: ChallengeId,
    /// 32 random bytes.
    #[serde(with = "hex_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^([0-9A-Fa-f]{2})*$"))]
    pub nonce: [u8; 32],
    /// Subject the certificate will carry (from the account, not from the client).
    pub subject: Subject,
    /// After this instant the challenge is refused.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: OffsetDateTime,
}

impl EnrolmentChallenge {
    /// The bytes whose SHA-256 the card signs (layout in the module documentation).
    pub fn signed_data(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        out.extend_from_slice(POP_TAG);
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.expires_at.unix_timestamp().to_be_bytes());
        out
    }

    /// SHA-256 of [`signed_data`](Self::signed_data): what the card signs.
    pub fn digest(&self) -> [u8; 32] {
        sha256(&self.signed_data())
    }
}

/// Why an enrolment step was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// No such challenge (never issued, or purged after expiry).
    #[error("unknown enrolment challenge")]
    UnknownChallenge,
    /// The challenge was already used.
    #[error("enrolment challenge already used (replay)")]
    Replayed,
    /// The challenge expired.
    #[error("enrolment challenge expired at {expired_at}")]
    Expired {
        /// Expiry instant.
        expired_at: OffsetDateTime,
    },
    /// The subject from the account is not usable.
    #[error("invalid subject: {0}")]
    Subject(#[from] SubjectError),
    /// The card key is not acceptable.
    #[error("card key: {0}")]
    Key(#[from] KeyError),
    /// The proof-of-possession signature is missing, malformed or wrong.
    #[error("proof of possession failed: {0}")]
    BadProofOfPossession(SignatureError),
    /// The PKCS#10 request is malformed or its signature is wrong.
    #[error("certification request: {0}")]
    BadCsr(String),
    /// The PKCS#10 request is for a different key than the one presented.
    #[error("certification request is for a different key")]
    CsrKeyMismatch,
    /// The CA failed.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// Storage failed.
    #[error("challenge store: {0}")]
    Store(#[from] StoreError),
}

impl EnrolError {
    /// A stable machine-readable code for APIs and audit records.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownChallenge => "unknown_challenge",
            Self::Replayed => "replayed",
            Self::Expired { .. } => "expired",
            Self::Subject(_) => "invalid_subject",
            Self::Key(_) => "unsupported_key",
            Self::BadProofOfPossession(_) => "bad_proof_of_possession",
            Self::BadCsr(_) => "bad_csr",
            Self::CsrKeyMismatch => "csr_key_mismatch",
            Self::Ca(_) => "ca_error",
            Self::Store(_) => "store_error",
        }
    }
}

/// The enrolment service.
#[derive(Debug)]
pub struct Enroller {
    ca: Arc<CertificateAuthority>,
    store: Arc<dyn EnrolmentStore>,
    challenge_ttl: Duration,
    certificate_validity: Duration,
}

impl Enroller {
    /// An enroller with default challenge lifetime and certificate validity.
    pub fn new(ca: Arc<CertificateAuthority>, store: Arc<dyn EnrolmentStore>) -> Self {
        Self {
            ca,
            store,
            challenge_ttl: DEFAULT_CHALLENGE_TTL,
            certificate_validity: DEFAULT_CERTIFICATE_VALIDITY,
        }
    }

    /// Set how long a challenge stays valid.
    #[must_use]
    pub fn with_challenge_ttl(mut self, ttl: Duration) -> Self {
        self.challenge_ttl = ttl;
        self
    }

    /// Set the validity of issued certificates.
    #[must_use]
    pub fn with_certificate_validity(mut self, validity: Duration) -> Self {
        self.certificate_validity = validity;
        self
    }

    /// Issue a one-time challenge for an enrolment of `subject`.
    pub fn issue_challenge(&self, subject: Subject) -> Result<EnrolmentChallenge, EnrolError> {
        use rand::Rng as _;
        subject.validate()?;
        let ttl = time::Duration::try_from(self.challenge_ttl)
            .map_err(|_| CaError::Validity("challenge lifetime out of range".into()))?;
        let mut nonce = [0u8; 32];
        rand::rng().fill_bytes(&mut nonce);
        let challenge = EnrolmentChallenge {
            id: ChallengeId::random(),
            nonce,
            subject,
            expires_at: whole_seconds(self.ca.clock().now()) + ttl,
        };
        self.store.insert_enrolment_challenge(&challenge)?;
        Ok(challenge)
    }

    /// Finish an enrolment: check everything (see the module documentation), consume
    /// the challenge and issue the certificate.
    ///
    /// `proof` is the card's signature over [`EnrolmentChallenge::digest`] with the new
    /// key. `csr_der`, if given, must be a PKCS#10 request (RFC 2986) for the same key with
    /// a valid signature by it; its subject and attributes are ignored (the subject comes
    /// from the challenge).
    pub fn complete(
        &self,
        challenge_id: &ChallengeId,
        public_key: &PublicKey,
        proof: &[u8],
        csr_der: Option<&[u8]>,
    ) -> Result<Certificate, EnrolError> {
        let (challenge, state) = self
            .store
            .enrolment_challenge(challenge_id)?
            .ok_or(EnrolError::UnknownChallenge)?;
        if state == ChallengeState::Used {
            return Err(EnrolError::Replayed);
        }
        if self.ca.clock().now() > challenge.expires_at {
            return Err(EnrolError::Expired {
                expired_at: challenge.expires_at,
            });
        }
        check_card_key(public_key)?;
        public_key
            .verify_digest(&challenge.digest(), proof)
            .map_err(EnrolError::BadProofOfPossession)?;
        if let Some(csr) = csr_der {
            check_csr(csr, public_key)?;
        }
        if !self.store.consume_enrolment_challenge(challenge_id)? {
            return Err(EnrolError::Replayed);
        }
        Ok(self.ca.issue_client_certificate(
            &challenge.subject,
            &public_key.to_spki_der(),
            self.certificate_validity,
        )?)
    }
}

/// Card keys are RSA-2048 or P-256 (SP 800-78-4 Table 5-1 algorithms `07` and `11`).
fn check_card_key(key: &PublicKey) -> Result<(), KeyError> {
    match key.algorithm() {
        KeyAlgorithm::P256 | KeyAlgorithm::Rsa { bits: 2048 } => Ok(()),
        KeyAlgorithm::Rsa { bits } => Err(KeyError::RsaModulusSize(bits)),
    }
}

/// Verify a PKCS#10 `CertificationRequest` (RFC 2986 §4): same key, algorithm matching
/// the key with SHA-256, valid signature over the DER `CertificationRequestInfo`.
fn check_csr(der: &[u8], key: &PublicKey) -> Result<(), EnrolError> {
    let bad = |m: String| EnrolError::BadCsr(m);
    let signed = SignedRef::from_der(der).map_err(|e| bad(e.to_string()))?;
    let info_der = signed.tbs_der().map_err(|e| bad(e.to_string()))?;
    let info = CertReqInfo::from_der(&info_der).map_err(|e| bad(e.to_string()))?;
    let spki = info.public_key.to_der().map_err(|e| bad(e.to_string()))?;
    let csr_key = PublicKey::from_spki_der(&spki)?;
    if &csr_key != key {
        return Err(EnrolError::CsrKeyMismatch);
    }
    if signed.algorithm_der() != key.signature_algorithm_der() {
        return Err(bad(
            "signature algorithm must be SHA-256 with the key's algorithm".into(),
        ));
    }
    let signature = signed
        .signature
        .as_bytes()
        .ok_or_else(|| bad("signature has unused bits".into()))?;
    key.verify(&info_der, signature)
        .map_err(|e| bad(format!("signature: {e}")))
}
