//! GP certificates (`7F21`, GP Amendment F §6) the platform's CA issues for security-domain
//! keys (CERT.SD): used by `cardwright card scp11 setup` and by the OTA engine for the key
//! pair a new SD generates (`docs/OTA.md`, "CERT.SD").

use gp::cert::{GpCertificateBody, GpDate};
use kms::{SigningAlgorithm, SigningKey};
use scp::scp11::PublicKey;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// An 8-byte identifier of a public key (the SHA-256 of its SEC1 point, first 8 bytes):
/// the GP subject and CA identifiers of the certificates issued here.
pub fn key_id(public: &PublicKey) -> Vec<u8> {
    Sha256::digest(public.to_sec1())[..8].to_vec()
}

/// The key store's CA (a P-256 signing key) as a public key.
pub fn ca_public(ca: &dyn SigningKey) -> Result<PublicKey> {
    if ca.algorithm() != SigningAlgorithm::P256 {
        return Err(Error::Invalid(format!(
            "CA {}: SCP11 certificates need a P-256 CA key, not {}",
            ca.label(),
            ca.algorithm()
        )));
    }
    PublicKey::from_spki_der(ca.public_key_spki())
        .map_err(|e| Error::Invalid(format!("CA {}: {e}", ca.label())))
}

/// Today plus `days_ahead`, as a GP date (UTC).
fn date(days_ahead: u32) -> GpDate {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(i64::from(days_ahead));
    GpDate::new(d.year() as u16, d.month() as u8, d.day())
}

/// A GP certificate (`7F21`) for `subject` signed by the CA: ECDSA P-256 with SHA-256
/// (Amendment F §6), serial random, valid from today for `days`.
pub fn issue_gp_cert(
    ca: &dyn SigningKey,
    subject: &PublicKey,
    key_usage: [u8; 2],
    days: u32,
) -> Result<Vec<u8>> {
    let ca_pub = ca_public(ca)?;
    let mut serial = vec![0u8; 8];
    getrandom::fill(&mut serial).map_err(|e| Error::Invalid(format!("random: {e}")))?;
    serial[0] &= 0x7F;
    let body = GpCertificateBody {
        serial,
        ca_id: key_id(&ca_pub),
        subject_id: key_id(subject),
        key_usage: key_usage.to_vec(),
        effective: Some(date(0)),
        expiry: date(days),
        discretionary: None,
        restrictions: None,
        public_key: subject.clone(),
    };
    let sig = ca.sign_sha256(&body.to_bytes())?;
    Ok(body.with_signature(sig).to_bytes().to_vec())
}

/// The CA's own, self-signed GP certificate.
pub fn ca_gp_cert(ca: &dyn SigningKey, days: u32) -> Result<Vec<u8>> {
    let ca_pub = ca_public(ca)?;
    // Key usage: certificate signature verification (b2 of the second byte) and, so that a
    // lone CA certificate also passes as a chain, key agreement (b8).
    issue_gp_cert(ca, &ca_pub, [0x00, 0x82], days)
}
