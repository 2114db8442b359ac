//! Storage interfaces. The `tsm` crate implements them on its database; [`MemoryStore`]
//! implements all of them in memory for tests and single-process tools.
//!
//! The one hard requirement on implementations is atomicity of the "pending → used"
//! transition of a challenge ([`EnrolmentStore::consume_enrolment_challenge`],
//! [`PaymentStore::record_authorisation`]): of two concurrent calls for the same challenge,
//! exactly one may succeed (in SQL: `UPDATE … SET used = true WHERE id = ? AND NOT used`
//! and look at the row count). Expired challenges may be deleted at any time.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    str::FromStr,
    sync::Mutex,
};

use time::OffsetDateTime;

use crate::{
    cert::{RevocationReason, Serial},
    enrol::EnrolmentChallenge,
    payment::{Authorisation, PaymentChallenge},
};

/// Storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A record with this key already exists.
    #[error("duplicate record")]
    Duplicate,
    /// The backend failed (connection, I/O, ...).
    #[error("storage backend: {0}")]
    Backend(String),
}

/// Identifier of a one-time challenge: 16 random bytes, shown as 32 hex digits.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ChallengeId(pub [u8; 16]);

impl ChallengeId {
    /// A fresh random identifier.
    pub fn random() -> Self {
        use rand::Rng as _;
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        Self(b)
    }
}

impl fmt::Display for ChallengeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::util::hex(&self.0))
    }
}

impl fmt::Debug for ChallengeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChallengeId({self})")
    }
}

impl FromStr for ChallengeId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::util::parse_hex(s)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(Self)
            .ok_or_else(|| format!("invalid challenge id {s:?}"))
    }
}

impl TryFrom<String> for ChallengeId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ChallengeId> for String {
    fn from(id: ChallengeId) -> Self {
        id.to_string()
    }
}

/// Whether a challenge was already answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChallengeState {
    /// Issued, not yet answered successfully.
    Pending,
    /// Answered successfully once; any further answer is a replay.
    Used,
}

/// A certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IssuedCertificate {
    /// Serial number.
    pub serial: Serial,
    /// Subject, RFC 4514 string.
    pub subject: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The certificate.
    #[serde(with = "crate::util::hex_serde")]
    pub certificate_der: Vec<u8>,
}

/// A revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revocation {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// Result of [`CertificateStore::revoke`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Recorded.
    Revoked,
    /// No certificate with this serial was issued.
    NotIssued,
    /// Already revoked; the first revocation stands.
    AlreadyRevoked(Revocation),
}

/// Issued certificates, revocations and the CRL counter.
pub trait CertificateStore: Send + Sync + fmt::Debug {
    /// Record an issued certificate; [`StoreError::Duplicate`] if the serial exists.
    fn insert_issued(&self, certificate: &IssuedCertificate) -> Result<(), StoreError>;
    /// Look up an issued certificate.
    fn issued(&self, serial: &Serial) -> Result<Option<IssuedCertificate>, StoreError>;
    /// Record a revocation (atomically: the first one wins).
    fn revoke(&self, serial: &Serial, revocation: &Revocation)
        -> Result<RevokeOutcome, StoreError>;
    /// The revocation of a serial, if any. Called on every payment verification.
    fn revocation(&self, serial: &Serial) -> Result<Option<Revocation>, StoreError>;
    /// All revocations (for the CRL).
    fn revocations(&self) -> Result<Vec<(Serial, Revocation)>, StoreError>;
    /// The next cRLNumber (RFC 5280 §5.2.3): strictly increasing, starting at 1.
    fn next_crl_number(&self) -> Result<u64, StoreError>;
}

/// One-time enrolment challenges.
pub trait EnrolmentStore: Send + Sync + fmt::Debug {
    /// Store a new challenge; [`StoreError::Duplicate`] if the id exists.
    fn insert_enrolment_challenge(&self, challenge: &EnrolmentChallenge) -> Result<(), StoreError>;
    /// Look up a challenge and its state.
    fn enrolment_challenge(
        &self,
        id: &ChallengeId,
    ) -> Result<Option<(EnrolmentChallenge, ChallengeState)>, StoreError>;
    /// Atomically move a pending challenge to used. `Ok(false)` if it was not pending
    /// (already used, or unknown).
    fn consume_enrolment_challenge(&self, id: &ChallengeId) -> Result<bool, StoreError>;
}

/// One-time payment challenges and the authorisations recorded for them.
pub trait PaymentStore: Send + Sync + fmt::Debug {
    /// Store a new challenge; [`StoreError::Duplicate`] if the id exists.
    fn insert_payment_challenge(&self, challenge: &PaymentChallenge) -> Result<(), StoreError>;
    /// Look up a challenge and its state.
    fn payment_challenge(
        &self,
        id: &ChallengeId,
    ) -> Result<Option<(PaymentChallenge, ChallengeState)>, StoreError>;
    /// Atomically move the pending challenge `authorisation.challenge_id` to used and
    /// record the authorisation. `Ok(false)` if it was not pending (a replay that raced).
    fn record_authorisation(&self, authorisation: &Authorisation) -> Result<bool, StoreError>;
    /// The authorisation recorded for a challenge.
    fn authorisation(&self, id: &ChallengeId) -> Result<Option<Authorisation>, StoreError>;
}

#[derive(Debug, Default)]
struct Inner {
    issued: HashMap<Serial, IssuedCertificate>,
    revoked: BTreeMap<Serial, Revocation>,
    crl_number: u64,
    enrolment: HashMap<ChallengeId, (EnrolmentChallenge, ChallengeState)>,
    payment: HashMap<ChallengeId, (PaymentChallenge, ChallengeState)>,
    authorisations: HashMap<ChallengeId, Authorisation>,
}

/// Everything in memory behind one mutex (tests, demos, single-process tools).
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delete challenges that expired before `now`; returns how many were removed.
    pub fn purge_expired(&self, now: OffsetDateTime) -> usize {
        let mut g = self.lock();
        let before = g.enrolment.len() + g.payment.len();
        g.enrolment.retain(|_, (c, _)| c.expires_at >= now);
        g.payment.retain(|_, (c, _)| c.expires_at >= now);
        before - g.enrolment.len() - g.payment.len()
    }
}

impl CertificateStore for MemoryStore {
    fn insert_issued(&self, certificate: &IssuedCertificate) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.issued.contains_key(&certificate.serial) {
            return Err(StoreError::Duplicate);
        }
        g.issued
            .insert(certificate.serial.clone(), certificate.clone());
        Ok(())
    }

    fn issued(&self, serial: &Serial) -> Result<Option<IssuedCertificate>, StoreError> {
        Ok(self.lock().issued.get(serial).cloned())
    }

    fn revoke(
        &self,
        serial: &Serial,
        revocation: &Revocation,
    ) -> Result<RevokeOutcome, StoreError> {
        let mut g = self.lock();
        if !g.issued.contains_key(serial) {
            return Ok(RevokeOutcome::NotIssued);
        }
        if let Some(existing) = g.revoked.get(serial) {
            return Ok(RevokeOutcome::AlreadyRevoked(*existing));
        }
        g.revoked.insert(serial.clone(), *revocation);
        Ok(RevokeOutcome::Revoked)
    }

    fn revocation(&self, serial: &Serial) -> Result<Option<Revocation>, StoreError> {
        Ok(self.lock().revoked.get(serial).copied())
    }

    fn revocations(&self) -> Result<Vec<(Serial, Revocation)>, StoreError> {
        Ok(self
            .lock()
            .revoked
            .iter()
            .map(|(s, r)| (s.clone(), *r))
            .collect())
    }

    fn next_crl_number(&self) -> Result<u64, StoreError> {
        let mut g = self.lock();
        g.crl_number += 1;
        Ok(g.crl_number)
    }
}

impl EnrolmentStore for MemoryStore {
    fn insert_enrolment_challenge(&self, challenge: &EnrolmentChallenge) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.enrolment.contains_key(&challenge.id) {
            return Err(StoreError::Duplicate);
        }
        g.enrolment
            .insert(challenge.id, (challenge.clone(), ChallengeState::Pending));
        Ok(())
    }

    fn enrolment_challenge(
        &self,
        id: &ChallengeId,
    ) -> Result<Option<(EnrolmentChallenge, ChallengeState)>, StoreError> {
        Ok(self.lock().enrolment.get(id).cloned())
    }

    fn consume_enrolment_challenge(&self, id: &ChallengeId) -> Result<bool, StoreError> {
        let mut g = self.lock();
        match g.enrolment.get_mut(id) {
            Some((_, state @ ChallengeState::Pending)) => {
                *state = ChallengeState::Used;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl PaymentStore for MemoryStore {
    fn insert_payment_challenge(&self, challenge: &PaymentChallenge) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.payment.contains_key(&challenge.id) {
            return Err(StoreError::Duplicate);
        }
        g.payment
            .insert(challenge.id, (challenge.clone(), ChallengeState::Pending));
        Ok(())
    }

    fn payment_challenge(
        &self,
        id: &ChallengeId,
    ) -> Result<Option<(PaymentChallenge, ChallengeState)>, StoreError> {
        Ok(self.lock().payment.get(id).cloned())
    }

    fn record_authorisation(&self, authorisation: &Authorisation) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let id = authorisation.challenge_id;
        match g.payment.get_mut(&id) {
            Some((_, state @ ChallengeState::Pending)) => {
                *state = ChallengeState::Used;
                g.authorisations.insert(id, authorisation.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn authorisation(&self, id: &ChallengeId) -> Result<Option<Authorisation>, StoreError> {
        Ok(self.lock().authorisations.get(id).cloned())
    }
}
