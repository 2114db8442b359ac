//! The card's side of Cardwright's remote payments ([`pki::enrol`], [`pki::payment`]): what
//! the CLI (`cardwright pay`) and the local agent (`cardwright agent`) ask the card to do.
//!
//! The host never signs a digest it was merely handed: it rebuilds the digest from the
//! enrolment challenge or from the canonical payment bytes, which carry a domain tag
//! (`cardwright/enrol-pop/v1`, `cardwright/payment/v1`). A web page that talks to the agent
//! can therefore only obtain proofs of possession and payment authorisations whose content
//! the agent has decoded (and can show), never a signature over arbitrary data.

use pki::{piv::PivAlgorithm, Certificate, EnrolmentChallenge, PaymentChallenge, PublicKey};
use time::OffsetDateTime;
use transport::CardChannel;
use zeroize::Zeroizing;

use crate::{MgmtAlgorithm, MgmtKey, PinStatus, PivClient, PivError, Slot};

/// Which management key to use. Default: the well-known default key, with the algorithm
/// the card reports (GET METADATA) or 3DES.
#[derive(Debug, Clone, Default)]
pub struct MgmtKeySpec {
    /// Key bytes; `None` for [`MgmtKey::DEFAULT`].
    pub key: Option<Zeroizing<Vec<u8>>>,
    /// Algorithm; `None` to ask the card (YubiKey GET METADATA), else 3DES.
    pub algorithm: Option<MgmtAlgorithm>,
}

impl<C: CardChannel> PivClient<C> {
    /// Authenticate with the management key described by `spec`.
    pub fn authenticate_with(&mut self, spec: &MgmtKeySpec) -> Result<(), PivError> {
        let algorithm = match spec.algorithm {
            Some(a) => a,
            None => self
                .management_key_algorithm()?
                .unwrap_or(MgmtAlgorithm::Tdes),
        };
        let key = match &spec.key {
            Some(k) => MgmtKey::new(algorithm, k)?,
            None => MgmtKey::default_for(algorithm)?,
        };
        self.authenticate(&key)
    }
}

/// What the card produced for an enrolment.
#[derive(Debug, Clone)]
pub struct CardEnrolment {
    /// Slot of the new key.
    pub slot: Slot,
    /// Its algorithm.
    pub algorithm: PivAlgorithm,
    /// The `7F49` template the card answered to GENERATE ASYMMETRIC KEY PAIR.
    pub template: Vec<u8>,
    /// The public key in it.
    pub public_key: PublicKey,
    /// The proof of possession: the new key's signature over the challenge digest.
    pub proof: Vec<u8>,
}

/// Enrolment on the card: VERIFY PIN (so that a wrong PIN changes nothing), management key,
/// GENERATE ASYMMETRIC KEY PAIR in `slot`, VERIFY PIN again (slot 9C wants it right before
/// each signature), then the new key signs the challenge digest (proof of possession). The
/// signature is checked here against the generated key before it is returned.
pub fn enrol<C: CardChannel>(
    piv: &mut PivClient<C>,
    challenge: &EnrolmentChallenge,
    algorithm: PivAlgorithm,
    slot: Slot,
    pin: &[u8],
    mgmt: &MgmtKeySpec,
) -> Result<CardEnrolment, PivError> {
    check_not_expired(challenge.expires_at, "enrolment challenge")?;
    piv.select()?;
    // Check the PIN before anything changes: a wrong PIN must not cost the slot its key.
    piv.verify_pin(pin)?;
    piv.authenticate_with(mgmt)?;
    let generated = piv.generate(slot, algorithm)?;
    // Slot 9C's PIN policy is "always": VERIFY must come right before the signature.
    piv.verify_pin(pin)?;
    let digest = challenge.digest();
    let proof = piv.sign_digest(slot, algorithm, &digest)?;
    generated
        .public_key
        .verify_digest(&digest, &proof)
        .map_err(|e| PivError::Malformed {
            command: "GENERAL AUTHENTICATE (sign)",
            reason: format!("the card's proof of possession does not verify: {e}"),
        })?;
    Ok(CardEnrolment {
        slot,
        algorithm,
        template: generated.template,
        public_key: generated.public_key,
        proof,
    })
}

/// Write the issued certificate into the slot's certificate object (management key
/// needed). The certificate must be for the key in the slot: its public key is compared
/// with `expected_key` when given.
pub fn install_certificate<C: CardChannel>(
    piv: &mut PivClient<C>,
    slot: Slot,
    der: &[u8],
    expected_key: Option<&PublicKey>,
    mgmt: &MgmtKeySpec,
) -> Result<Certificate, PivError> {
    let certificate = Certificate::from_der(der)
        .map_err(|e| PivError::Invalid(format!("not a DER X.509 certificate: {e}")))?;
    if let Some(expected) = expected_key {
        if &certificate.public_key()? != expected {
            return Err(PivError::Invalid(
                "the certificate is for another key than the card's".into(),
            ));
        }
    }
    piv.select()?;
    piv.authenticate_with(mgmt)?;
    piv.write_certificate(slot, der)?;
    Ok(certificate)
}

/// A payment the card signed.
#[derive(Debug, Clone)]
pub struct CardPaymentSignature {
    /// The challenge as decoded from the canonical bytes (what was signed).
    pub challenge: PaymentChallenge,
    /// The signature over its digest.
    pub signature: Vec<u8>,
    /// The certificate read from the slot.
    pub certificate_der: Vec<u8>,
}

/// Sign a payment challenge given as its canonical bytes: decode them (strictly), refuse an
/// expired challenge, read the slot's certificate (its key tells the algorithm), VERIFY
/// PIN, sign the digest, and check the signature under the certificate's key.
pub fn sign_payment<C: CardChannel>(
    piv: &mut PivClient<C>,
    canonical: &[u8],
    slot: Slot,
    pin: &[u8],
) -> Result<CardPaymentSignature, PivError> {
    let challenge = PaymentChallenge::from_canonical_bytes(canonical)
        .map_err(|e| PivError::Invalid(format!("not a canonical payment challenge: {e}")))?;
    check_not_expired(challenge.expires_at, "payment challenge")?;
    piv.select()?;
    let certificate_der = piv.read_certificate(slot)?.ok_or_else(|| {
        PivError::NotFound(format!(
            "no certificate in slot {slot}: enrol the card first"
        ))
    })?;
    let certificate = Certificate::from_der(&certificate_der).map_err(|e| PivError::Malformed {
        command: "GET DATA (certificate)",
        reason: e.to_string(),
    })?;
    let key = certificate.public_key()?;
    let algorithm = match key {
        PublicKey::Rsa(_) => PivAlgorithm::Rsa2048,
        PublicKey::P256(_) => PivAlgorithm::EccP256,
    };
    piv.verify_pin(pin)?;
    let digest = challenge.digest();
    let signature = piv.sign_digest(slot, algorithm, &digest)?;
    key.verify_digest(&digest, &signature).map_err(|_| {
        PivError::Invalid(format!(
            "the key in slot {slot} does not match its certificate (signature does not verify)"
        ))
    })?;
    Ok(CardPaymentSignature {
        challenge,
        signature,
        certificate_der,
    })
}

/// What a host shows about the card.
#[derive(Debug, Clone)]
pub struct CardStatus {
    /// Serial number, if the card reports one.
    pub serial: Option<u32>,
    /// PIN state.
    pub pin: PinStatus,
    /// The certificate in the slot, if any.
    pub certificate: Option<Certificate>,
}

/// Select the PIV application and read serial, PIN state and the slot's certificate.
pub fn card_status<C: CardChannel>(
    piv: &mut PivClient<C>,
    slot: Slot,
) -> Result<CardStatus, PivError> {
    piv.select()?;
    let serial = piv.serial()?;
    let pin = piv.pin_status()?;
    let certificate = match piv.read_certificate(slot)? {
        Some(der) => Some(
            Certificate::from_der(&der).map_err(|e| PivError::Malformed {
                command: "GET DATA (certificate)",
                reason: e.to_string(),
            })?,
        ),
        None => None,
    };
    Ok(CardStatus {
        serial,
        pin,
        certificate,
    })
}

fn check_not_expired(expires_at: OffsetDateTime, what: &str) -> Result<(), PivError> {
    if OffsetDateTime::now_utc() > expires_at {
        return Err(PivError::Invalid(format!(
            "the {what} expired at {expires_at}; ask the server for a new one"
        )));
    }
    Ok(())
}
