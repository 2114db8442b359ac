//! SCP11 certificates in X.509 form (GlobalPlatform Card Specification Amendment F §6,
//! RFC 5280), as a card manufacturer or an off-card entity's CA issues them and as Yubico's
//! yubikit reads them:
//!
//! * [`ca_certificate`]: a self-signed CA certificate for a [`CaSigner`] key:
//!   basicConstraints `cA TRUE, pathLen 0` and keyUsage `keyCertSign` (both critical),
//!   subjectKeyIdentifier;
//! * [`ecka_certificate`]: the certificate of a key-agreement (ECKA) key, PK.SD.ECKA or
//!   PK.OCE.ECKA, on P-256 or P-384: keyUsage `keyAgreement` (critical),
//!   subjectKeyIdentifier and authorityKeyIdentifier.
//!
//! Both are v3, signed `ecdsa-with-SHA256` by a P-256 CA key (Amendment F's
//! signature scheme for P-256; RSA CA keys are refused). Key identifiers follow RFC 7093 §2
//! method 1, as for the client certificates of [`crate::ca`].
//!
//! ```
//! use pki::{scp11, CaSigner, SoftwareSigner, Subject};
//! use time::OffsetDateTime;
//!
//! let ca = SoftwareSigner::generate_p256();
//! let now = OffsetDateTime::now_utc();
//! let ca_name = Subject::new("Example SCP11 CA");
//! let ca_der = scp11::ca_certificate(
//!     &ca,
//!     &scp11::CertificateParams::new(ca_name.clone(), now, None),
//! )?;
//! // The key of an SD or OCE (here a P-256 key; its SPKI).
//! let sd_spki = SoftwareSigner::generate_p256().public_key().to_spki_der();
//! let sd_der = scp11::ecka_certificate(
//!     &ca,
//!     &ca_name,
//!     &sd_spki,
//!     &scp11::CertificateParams::new(Subject::new("SD"), now, None),
//! )?;
//! # let _ = (ca_der, sd_der);
//! # Ok::<(), pki::CaError>(())
//! ```

use der::{asn1::OctetString, Decode, Encode};
use spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use time::OffsetDateTime;
use x509_cert::{
    certificate::Version,
    ext::pkix::{
        AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
    },
    ext::Extension,
    time::{Time, Validity},
};

use crate::{
    ca::{sign, CaError, CaSigner},
    cert::{extension, key_identifier, to_x509_time, Serial, TbsCertificateOut},
    key::{KeyAlgorithm, KeyError},
    oid,
    subject::Subject,
};

/// What an SCP11 certificate says besides its keys: subject, serial number and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateParams {
    /// The subject name (CN, and optionally O, C, serialNumber, UID).
    pub subject: Subject,
    /// The serial number (RFC 5280 §4.1.2.2).
    pub serial: Serial,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity; `None` writes `99991231235959Z`, "no well-defined expiration
    /// date" (RFC 5280 §4.1.2.5), as factory certificates of cards do.
    pub not_after: Option<OffsetDateTime>,
}

impl CertificateParams {
    /// Parameters with a random serial number ([`Serial::random`]).
    pub fn new(
        subject: Subject,
        not_before: OffsetDateTime,
        not_after: Option<OffsetDateTime>,
    ) -> Self {
        Self {
            subject,
            serial: Serial::random(),
            not_before,
            not_after,
        }
    }

    /// The same parameters with the serial number `serial`.
    pub fn with_serial(mut self, serial: Serial) -> Self {
        self.serial = serial;
        self
    }

    fn validity(&self) -> Result<Validity, CaError> {
        let not_after = match self.not_after {
            Some(t) if t <= self.not_before => {
                return Err(CaError::Validity("notAfter is not after notBefore".into()))
            }
            Some(t) => to_x509_time(t)?,
            None => Time::GeneralTime(der::asn1::GeneralizedTime::from_date_time(
                der::DateTime::new(9999, 12, 31, 23, 59, 59)?,
            )),
        };
        Ok(Validity::new(to_x509_time(self.not_before)?, not_after))
    }
}

/// A self-signed SCP11 CA certificate for `signer`'s key (P-256): subject and issuer
/// `params.subject`, basicConstraints `cA TRUE, pathLen 0` and keyUsage `keyCertSign`
/// (critical), subjectKeyIdentifier. Returns the DER.
pub fn ca_certificate(
    signer: &dyn CaSigner,
    params: &CertificateParams,
) -> Result<Vec<u8>, CaError> {
    check_signer(signer)?;
    let spki = SubjectPublicKeyInfoOwned::from_der(&signer.public_key().to_spki_der())?;
    let extensions = vec![
        extension(
            oid::CE_BASIC_CONSTRAINTS,
            true,
            &BasicConstraints {
                ca: true,
                path_len_constraint: Some(0),
            },
        )?,
        extension(
            oid::CE_KEY_USAGE,
            true,
            &KeyUsage(KeyUsages::KeyCertSign.into()),
        )?,
        subject_key_identifier(&spki)?,
    ];
    let name = params.subject.to_name()?;
    issue(signer, name.clone(), name, spki, params, extensions)
}

/// The certificate of the ECKA key `subject_spki` (a DER `SubjectPublicKeyInfo`,
/// `id-ecPublicKey` on P-256 or P-384), issued by `signer` (P-256) under the name
/// `issuer` (the subject of its [`ca_certificate`]): keyUsage `keyAgreement` (critical),
/// subjectKeyIdentifier, authorityKeyIdentifier. Returns the DER.
pub fn ecka_certificate(
    signer: &dyn CaSigner,
    issuer: &Subject,
    subject_spki: &[u8],
    params: &CertificateParams,
) -> Result<Vec<u8>, CaError> {
    check_signer(signer)?;
    let spki = ecka_spki(subject_spki)?;
    let ca_spki = SubjectPublicKeyInfoOwned::from_der(&signer.public_key().to_spki_der())?;
    let extensions = vec![
        extension(
            oid::CE_KEY_USAGE,
            true,
            &KeyUsage(KeyUsages::KeyAgreement.into()),
        )?,
        subject_key_identifier(&spki)?,
        extension(
            oid::CE_AUTHORITY_KEY_ID,
            false,
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(key_identifier(&ca_spki).to_vec())?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
        )?,
    ];
    issue(
        signer,
        issuer.to_name()?,
        params.subject.to_name()?,
        spki,
        params,
        extensions,
    )
}

fn check_signer(signer: &dyn CaSigner) -> Result<(), CaError> {
    match signer.public_key().algorithm() {
        KeyAlgorithm::P256 => Ok(()),
        other => Err(CaError::Key(KeyError::UnsupportedAlgorithm(format!(
            "{other}: SCP11 certificates are signed with ECDSA (a P-256 CA key)"
        )))),
    }
}

/// Checks that `der` is an EC public key on P-256 or P-384 with a valid point.
fn ecka_spki(der: &[u8]) -> Result<SubjectPublicKeyInfoOwned, CaError> {
    let key_err = |e: String| CaError::Key(KeyError::Der(e));
    let spki = SubjectPublicKeyInfoOwned::from_der(der).map_err(|e| key_err(e.to_string()))?;
    if spki.algorithm.oid != oid::ID_EC_PUBLIC_KEY {
        return Err(CaError::Key(KeyError::UnsupportedAlgorithm(
            spki.algorithm.oid.to_string(),
        )));
    }
    let curve: ObjectIdentifier = spki
        .algorithm
        .parameters
        .as_ref()
        .ok_or_else(|| key_err("id-ecPublicKey without named curve".into()))?
        .decode_as()
        .map_err(|e: der::Error| key_err(e.to_string()))?;
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or(CaError::Key(KeyError::InvalidEcPoint))?;
    let valid = if curve == oid::SECP256R1 {
        p256::PublicKey::from_sec1_bytes(point).is_ok()
    } else if curve == oid::SECP384R1 {
        p384::PublicKey::from_sec1_bytes(point).is_ok()
    } else {
        return Err(CaError::Key(KeyError::UnsupportedCurve(curve.to_string())));
    };
    if !valid {
        return Err(CaError::Key(KeyError::InvalidEcPoint));
    }
    Ok(spki)
}

fn subject_key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Result<Extension, der::Error> {
    extension(
        oid::CE_SUBJECT_KEY_ID,
        false,
        &SubjectKeyIdentifier(OctetString::new(key_identifier(spki).to_vec())?),
    )
}

fn issue(
    signer: &dyn CaSigner,
    issuer: x509_cert::name::Name,
    subject: x509_cert::name::Name,
    spki: SubjectPublicKeyInfoOwned,
    params: &CertificateParams,
    extensions: Vec<Extension>,
) -> Result<Vec<u8>, CaError> {
    let public_key = signer.public_key();
    let tbs = TbsCertificateOut {
        version: Version::V3,
        serial_number: params.serial.to_x509()?,
        signature: AlgorithmIdentifierOwned::from_der(public_key.signature_algorithm_der())?,
        issuer,
        validity: params.validity()?,
        subject,
        subject_public_key_info: spki,
        extensions,
    }
    .to_der()?;
    sign(signer, public_key, &tbs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ca::SoftwareSigner, key::PublicKey};
    use p256::pkcs8::EncodePublicKey as _;
    use x509_cert::Certificate;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_796_353_445).unwrap()
    }

    fn key_usage(cert: &Certificate) -> (bool, KeyUsage) {
        let ext = cert
            .tbs_certificate()
            .extensions()
            .into_iter()
            .flatten()
            .find(|e| e.extn_id == oid::CE_KEY_USAGE)
            .expect("keyUsage");
        (
            ext.critical,
            KeyUsage::from_der(ext.extn_value.as_bytes()).unwrap(),
        )
    }

    fn ext_value(cert: &Certificate, id: ObjectIdentifier) -> Option<Vec<u8>> {
        cert.tbs_certificate()
            .extensions()
            .into_iter()
            .flatten()
            .find(|e| e.extn_id == id)
            .map(|e| e.extn_value.as_bytes().to_vec())
    }

    /// The signature of `der` verifies under `key`.
    fn verifies(der: &[u8], key: &PublicKey) -> bool {
        let cert = Certificate::from_der(der).unwrap();
        let tbs = cert.tbs_certificate().to_der().unwrap();
        key.verify(&tbs, cert.signature().as_bytes().unwrap())
            .is_ok()
    }

    #[test]
    fn ca_certificate_is_self_signed_ca() {
        let ca = SoftwareSigner::generate_p256();
        let der = ca_certificate(
            &ca,
            &CertificateParams::new(
                Subject::new("SCP11 CA").with_organization("Test"),
                now(),
                None,
            ),
        )
        .unwrap();
        let cert = Certificate::from_der(&der).unwrap();
        let tbs = cert.tbs_certificate();
        assert_eq!(tbs.version(), Version::V3);
        assert_eq!(tbs.issuer(), tbs.subject());
        assert_eq!(tbs.subject().to_string(), "CN=SCP11 CA,O=Test");
        assert!(verifies(&der, ca.public_key()));
        let (critical, ku) = key_usage(&cert);
        assert!(critical && ku.key_cert_sign() && !ku.key_agreement());
        let bc = BasicConstraints::from_der(&ext_value(&cert, oid::CE_BASIC_CONSTRAINTS).unwrap())
            .unwrap();
        assert!(bc.ca);
        assert_eq!(
            tbs.subject_public_key_info().to_der().unwrap(),
            ca.public_key().to_spki_der()
        );
        // No expiry: 99991231235959Z.
        assert_eq!(
            tbs.validity().not_after.to_unix_duration().as_secs(),
            253_402_300_799
        );
        assert_eq!(
            tbs.validity().not_before.to_unix_duration().as_secs(),
            1_796_353_445
        );
    }

    fn ecka_chain(subject_spki: &[u8]) -> (SoftwareSigner, Vec<u8>, Vec<u8>) {
        let ca = SoftwareSigner::generate_p256();
        let ca_name = Subject::new("SCP11 CA");
        let ca_der =
            ca_certificate(&ca, &CertificateParams::new(ca_name.clone(), now(), None)).unwrap();
        let leaf = ecka_certificate(
            &ca,
            &ca_name,
            subject_spki,
            &CertificateParams::new(
                Subject::new("OCE"),
                now(),
                Some(now() + time::Duration::days(365)),
            )
            .with_serial(Serial::from_bytes(&[0x80, 1]).unwrap()),
        )
        .unwrap();
        (ca, ca_der, leaf)
    }

    #[test]
    fn ecka_certificate_p256() {
        let key = SoftwareSigner::generate_p256().public_key().to_spki_der();
        let (ca, ca_der, der) = ecka_chain(&key);
        let ca_cert = Certificate::from_der(&ca_der).unwrap();
        let cert = Certificate::from_der(&der).unwrap();
        let tbs = cert.tbs_certificate();
        assert!(verifies(&der, ca.public_key()));
        assert!(!verifies(
            &der,
            SoftwareSigner::generate_p256().public_key()
        ));
        assert_eq!(tbs.issuer(), ca_cert.tbs_certificate().subject());
        assert_eq!(tbs.subject().to_string(), "CN=OCE");
        assert_eq!(tbs.subject_public_key_info().to_der().unwrap(), key);
        // A serial with its top bit set stays positive.
        assert_eq!(tbs.serial_number().as_bytes(), &[0x00, 0x80, 0x01]);
        let (critical, ku) = key_usage(&cert);
        assert!(critical && ku.key_agreement());
        assert!(!ku.key_cert_sign() && !ku.digital_signature());
        assert!(ext_value(&cert, oid::CE_BASIC_CONSTRAINTS).is_none());
        // AKI names the CA's SKI.
        let ski =
            SubjectKeyIdentifier::from_der(&ext_value(&ca_cert, oid::CE_SUBJECT_KEY_ID).unwrap())
                .unwrap();
        let aki =
            AuthorityKeyIdentifier::from_der(&ext_value(&cert, oid::CE_AUTHORITY_KEY_ID).unwrap())
                .unwrap();
        assert_eq!(aki.key_identifier, Some(ski.0));
        assert!(ext_value(&cert, oid::CE_SUBJECT_KEY_ID).is_some());
        assert_eq!(
            tbs.validity().not_after.to_unix_duration().as_secs(),
            1_796_353_445 + 365 * 86_400
        );
    }

    #[test]
    fn ecka_certificate_p384() {
        use p256::elliptic_curve::Generate as _;
        let key = p384::SecretKey::generate_from_rng(&mut rand::rng())
            .public_key()
            .to_public_key_der()
            .unwrap();
        let (ca, _, der) = ecka_chain(key.as_bytes());
        assert!(verifies(&der, ca.public_key()));
        let cert = Certificate::from_der(&der).unwrap();
        let spki = cert.tbs_certificate().subject_public_key_info();
        assert_eq!(spki.to_der().unwrap(), key.as_bytes());
        assert_eq!(spki.subject_public_key.raw_bytes().len(), 97);
    }

    #[test]
    fn refuses_rsa_signers_and_non_ecka_keys() {
        let rsa = SoftwareSigner::generate_rsa(2048).unwrap();
        let params = CertificateParams::new(Subject::new("CA"), now(), None);
        assert!(matches!(
            ca_certificate(&rsa, &params),
            Err(CaError::Key(KeyError::UnsupportedAlgorithm(_)))
        ));
        let ca = SoftwareSigner::generate_p256();
        let issuer = Subject::new("CA");
        assert!(matches!(
            ecka_certificate(&ca, &issuer, &rsa.public_key().to_spki_der(), &params),
            Err(CaError::Key(KeyError::UnsupportedAlgorithm(_)))
        ));
        // An off-curve point.
        let mut spki = ca.public_key().to_spki_der();
        let last = spki.len() - 1;
        spki[last] ^= 1;
        assert!(matches!(
            ecka_certificate(&ca, &issuer, &spki, &params),
            Err(CaError::Key(KeyError::InvalidEcPoint))
        ));
        assert!(ecka_certificate(&ca, &issuer, b"\x30\x00", &params).is_err());
        // notAfter before notBefore.
        let backwards =
            CertificateParams::new(Subject::new("CA"), now(), Some(now() - time::Duration::DAY));
        assert!(matches!(
            ca_certificate(&ca, &backwards),
            Err(CaError::Validity(_))
        ));
    }
}
