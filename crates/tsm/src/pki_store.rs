//! The `pki` crate's storage traits on [`Store`], so certificates, revocations, challenges
//! and payment authorisations persist in the platform database.
//!
//! Records are kept as their serde JSON (`body`) beside the columns that are searched or
//! constrained. The one-time transitions are single conditional UPDATEs
//! (`… SET state = 'used' WHERE id = $1 AND state = 'pending'`): of two concurrent calls
//! exactly one changes a row (pki `store` module contract).

use pki::store::{
    CertificateStore, ChallengeId, ChallengeState, EnrolmentStore, IssuedCertificate, PaymentStore,
    Revocation, RevokeOutcome, StoreError as PkiError,
};
use pki::{Authorisation, EnrolmentChallenge, PaymentChallenge, Serial};
use serde::{de::DeserializeOwned, Serialize};

use crate::db::{params, Conn};
use crate::error::StoreError;
use crate::model::now_ms;
use crate::Store;

fn backend(e: StoreError) -> PkiError {
    if e.is_unique_violation() {
        PkiError::Duplicate
    } else {
        PkiError::Backend(e.to_string())
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<String, PkiError> {
    serde_json::to_string(v).map_err(|e| PkiError::Backend(format!("encoding a record: {e}")))
}

fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, PkiError> {
    serde_json::from_str(text).map_err(|e| PkiError::Backend(format!("stored {what}: {e}")))
}

fn ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn state_of(s: &str) -> Result<ChallengeState, PkiError> {
    match s {
        "pending" => Ok(ChallengeState::Pending),
        "used" => Ok(ChallengeState::Used),
        other => Err(PkiError::Backend(format!(
            "unknown challenge state '{other}'"
        ))),
    }
}

impl Store {
    fn pki<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, PkiError> {
        self.with_conn(f).map_err(backend)
    }
    fn pki_tx<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, PkiError> {
        self.tx(f).map_err(backend)
    }
}

impl CertificateStore for Store {
    fn insert_issued(&self, certificate: &IssuedCertificate) -> Result<(), PkiError> {
        let body = to_json(certificate)?;
        self.pki(|c| {
            c.execute(
                "INSERT INTO pki_certificates (serial, subject, not_after_ms, body, created_ms)
                 VALUES ($1, $2, $3, $4, $5)",
                params![
                    certificate.serial.as_bytes(),
                    &certificate.subject,
                    ms(certificate.not_after),
                    body,
                    now_ms()
                ],
            )
            .map(|_| ())
        })
    }

    fn issued(&self, serial: &Serial) -> Result<Option<IssuedCertificate>, PkiError> {
        let row = self.pki(|c| {
            c.query_opt(
                "SELECT body FROM pki_certificates WHERE serial = $1",
                params![serial.as_bytes()],
            )
        })?;
        row.map(|r| from_json(&r.text(0).map_err(backend)?, "certificate"))
            .transpose()
    }

    fn revoke(&self, serial: &Serial, revocation: &Revocation) -> Result<RevokeOutcome, PkiError> {
        let body = to_json(revocation)?;
        let existing = self.pki_tx(|c| {
            let lock = c.for_update();
            if c.query_opt(
                &format!("SELECT serial FROM pki_certificates WHERE serial = $1{lock}"),
                params![serial.as_bytes()],
            )?
            .is_none()
            {
                return Ok(Err(RevokeOutcome::NotIssued));
            }
            if let Some(r) = c.query_opt(
                "SELECT body FROM pki_revocations WHERE serial = $1",
                params![serial.as_bytes()],
            )? {
                return Ok(Ok(Some(r.text(0)?)));
            }
            c.execute(
                "INSERT INTO pki_revocations (serial, revoked_at_ms, body) VALUES ($1, $2, $3)",
                params![serial.as_bytes(), ms(revocation.revoked_at), body],
            )?;
            Ok(Ok(None))
        })?;
        match existing {
            Err(outcome) => Ok(outcome),
            Ok(None) => Ok(RevokeOutcome::Revoked),
            Ok(Some(text)) => Ok(RevokeOutcome::AlreadyRevoked(from_json(
                &text,
                "revocation",
            )?)),
        }
    }

    fn revocation(&self, serial: &Serial) -> Result<Option<Revocation>, PkiError> {
        let row = self.pki(|c| {
            c.query_opt(
                "SELECT body FROM pki_revocations WHERE serial = $1",
                params![serial.as_bytes()],
            )
        })?;
        row.map(|r| from_json(&r.text(0).map_err(backend)?, "revocation"))
            .transpose()
    }

    fn revocations(&self) -> Result<Vec<(Serial, Revocation)>, PkiError> {
        let rows = self.pki(|c| {
            c.query(
                "SELECT serial, body FROM pki_revocations ORDER BY serial",
                params![],
            )
        })?;
        rows.iter()
            .map(|r| {
                let serial = Serial::from_bytes(&r.bytes(0).map_err(backend)?)
                    .ok_or_else(|| PkiError::Backend("stored serial is not valid".into()))?;
                Ok((
                    serial,
                    from_json(&r.text(1).map_err(backend)?, "revocation")?,
                ))
            })
            .collect()
    }

    fn next_crl_number(&self) -> Result<u64, PkiError> {
        let v = self.pki_tx(|c| {
            c.query_one(
                "UPDATE pki_counters SET value = value + 1 WHERE name = 'crl_number' RETURNING value",
                params![],
            )?
            .int(0)
        })?;
        u64::try_from(v).map_err(|_| PkiError::Backend("negative CRL number".into()))
    }
}

fn insert_challenge(
    store: &Store,
    table: &str,
    id: &ChallengeId,
    body: String,
    expires_ms: i64,
) -> Result<(), PkiError> {
    store.pki(|c| {
        c.execute(
            &format!(
                "INSERT INTO {table} (id, body, state, expires_ms) VALUES ($1, $2, 'pending', $3)"
            ),
            params![id.0.to_vec(), body, expires_ms],
        )
        .map(|_| ())
    })
}

fn challenge<T: DeserializeOwned>(
    store: &Store,
    table: &str,
    id: &ChallengeId,
) -> Result<Option<(T, ChallengeState)>, PkiError> {
    let row = store.pki(|c| {
        c.query_opt(
            &format!("SELECT body, state FROM {table} WHERE id = $1"),
            params![id.0.to_vec()],
        )
    })?;
    row.map(|r| {
        Ok((
            from_json(&r.text(0).map_err(backend)?, "challenge")?,
            state_of(&r.text(1).map_err(backend)?)?,
        ))
    })
    .transpose()
}

fn consume_in(c: &mut Conn, table: &str, id: &ChallengeId) -> Result<bool, StoreError> {
    Ok(c.execute(
        &format!("UPDATE {table} SET state = 'used' WHERE id = $1 AND state = 'pending'"),
        params![id.0.to_vec()],
    )? == 1)
}

impl EnrolmentStore for Store {
    fn insert_enrolment_challenge(&self, challenge: &EnrolmentChallenge) -> Result<(), PkiError> {
        insert_challenge(
            self,
            "pki_enrolment_challenges",
            &challenge.id,
            to_json(challenge)?,
            ms(challenge.expires_at),
        )
    }

    fn enrolment_challenge(
        &self,
        id: &ChallengeId,
    ) -> Result<Option<(EnrolmentChallenge, ChallengeState)>, PkiError> {
        challenge(self, "pki_enrolment_challenges", id)
    }

    fn consume_enrolment_challenge(&self, id: &ChallengeId) -> Result<bool, PkiError> {
        self.pki(|c| consume_in(c, "pki_enrolment_challenges", id))
    }
}

impl PaymentStore for Store {
    fn insert_payment_challenge(&self, challenge: &PaymentChallenge) -> Result<(), PkiError> {
        insert_challenge(
            self,
            "pki_payment_challenges",
            &challenge.id,
            to_json(challenge)?,
            ms(challenge.expires_at),
        )
    }

    fn payment_challenge(
        &self,
        id: &ChallengeId,
    ) -> Result<Option<(PaymentChallenge, ChallengeState)>, PkiError> {
        challenge(self, "pki_payment_challenges", id)
    }

    fn record_authorisation(&self, authorisation: &Authorisation) -> Result<bool, PkiError> {
        let body = to_json(authorisation)?;
        let id = authorisation.challenge_id;
        self.pki_tx(|c| {
            if !consume_in(c, "pki_payment_challenges", &id)? {
                return Ok(false);
            }
            c.execute(
                "INSERT INTO pki_authorisations (challenge_id, body, authorised_ms) VALUES ($1, $2, $3)",
                params![id.0.to_vec(), body, ms(authorisation.authorised_at)],
            )?;
            Ok(true)
        })
    }

    fn authorisation(&self, id: &ChallengeId) -> Result<Option<Authorisation>, PkiError> {
        let row = self.pki(|c| {
            c.query_opt(
                "SELECT body FROM pki_authorisations WHERE challenge_id = $1",
                params![id.0.to_vec()],
            )
        })?;
        row.map(|r| from_json(&r.text(0).map_err(backend)?, "authorisation"))
            .transpose()
    }
}

/// Deletes enrolment and payment challenges that expired before `now_ms` and were never
/// used (used payment challenges stay: their authorisations refer to them). Returns how
/// many were removed.
pub fn purge_expired_challenges(store: &Store, now_ms: i64) -> Result<u64, StoreError> {
    store.tx(|c| {
        let a = c.execute(
            "DELETE FROM pki_enrolment_challenges WHERE expires_ms < $1",
            params![now_ms],
        )?;
        let b = c.execute(
            "DELETE FROM pki_payment_challenges WHERE expires_ms < $1 AND state = 'pending'",
            params![now_ms],
        )?;
        Ok(a + b)
    })
}
