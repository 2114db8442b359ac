//! The certificate authority: a self-signed root whose key sits behind [`CaSigner`], that
//! issues smart-card user certificates, revokes them, publishes CRLs and validates the
//! certificates cards present.
//!
//! Client certificate profile (RFC 5280):
//! * v3, serial = 16 random bytes (§4.1.2.2), signature `sha256WithRSAEncryption` or
//!   `ecdsa-with-SHA256` according to the CA key (RFC 4055 §5, RFC 5758 §3.2);
//! * issuer = the CA subject, subject from the account ([`Subject`]);
//! * validity: `notBefore` one minute before issuance (clock skew), `notAfter` as asked but
//!   never past the CA's own `notAfter`;
//! * extensions: basicConstraints `cA FALSE` (critical, §4.2.1.9), keyUsage
//!   `digitalSignature` (critical, §4.2.1.3), extKeyUsage `clientAuth` (§4.2.1.12),
//!   subjectKeyIdentifier and authorityKeyIdentifier (RFC 7093 §2 method 1).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
    time::Duration,
};

use der::{asn1::OctetString, Decode, Encode};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use time::OffsetDateTime;
use x509_cert::{
    certificate::Version,
    crl::{RevokedCert, TbsCertList},
    ext::{
        pkix::{
            AuthorityKeyIdentifier, BasicConstraints, CrlNumber, CrlReason, ExtendedKeyUsage,
            KeyUsage, KeyUsages, SubjectKeyIdentifier,
        },
        Extension,
    },
    name::Name,
    time::Validity,
};
use zeroize::Zeroizing;

use crate::{
    cert::{
        assemble_signed, extension, from_x509_time, key_identifier, to_x509_time, Certificate,
        CertificateStatus, RevocationReason, Serial, SignedRef, TbsCertificateOut,
    },
    clock::{whole_seconds, Clock},
    key::{sha256, KeyAlgorithm, KeyError, PublicKey},
    oid,
    store::{CertificateStore, IssuedCertificate, Revocation, RevokeOutcome, StoreError},
    subject::{Subject, SubjectError},
};

/// How far `notBefore` is set before the issuing instant, to tolerate clock skew.
const BACKDATE: time::Duration = time::Duration::minutes(1);
/// Validated-certificate cache size; the cache is emptied when full.
const CACHE_CAPACITY: usize = 10_000;

/// Error of a [`CaSigner`] (HSM unavailable, key not found, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CA signer failed: {0}")]
pub struct SignerError(pub String);

/// The CA private key. The software implementation is [`SoftwareSigner`]; a PKCS#11
/// implementation (kms crate) maps [`sign_sha256`](CaSigner::sign_sha256) to
/// `CKM_SHA256_RSA_PKCS`, or to `CKM_ECDSA_SHA256` followed by a DER re-encoding of `r || s`.
pub trait CaSigner: Send + Sync + fmt::Debug {
    /// The public key of the pair (RSA 2048–4096 or P-256).
    fn public_key(&self) -> &PublicKey;

    /// Sign `message` with SHA-256 and return the X.509 `signatureValue` content: an
    /// RSASSA-PKCS1-v1_5 signature (RFC 8017 §8.2) of the modulus length, or a DER
    /// `Ecdsa-Sig-Value` (RFC 3279 §2.2.3).
    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, SignerError>;
}

enum SoftwareKey {
    Rsa(Box<rsa::PrivateKey>),
    P256(p256::ecdsa::SigningKey),
}

/// A CA key held in memory. The private key types zeroize themselves on drop; exported
/// PKCS#8 comes back in a [`Zeroizing`] buffer. `Debug` never shows the key.
pub struct SoftwareSigner {
    key: SoftwareKey,
    public: PublicKey,
}

impl fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("algorithm", &self.public.algorithm())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl SoftwareSigner {
    /// A fresh P-256 key from the operating system's RNG.
    pub fn generate_p256() -> Self {
        use p256::elliptic_curve::Generate;
        let key = p256::ecdsa::SigningKey::generate_from_rng(&mut rand::rng());
        Self::from_p256(key)
    }

    /// A fresh RSA key (2048, 3072 or 4096 bits, e = 65537).
    pub fn generate_rsa(bits: usize) -> Result<Self, KeyError> {
        if !matches!(bits, 2048 | 3072 | 4096) {
            return Err(KeyError::RsaModulusSize(bits));
        }
        let key = rsa::PrivateKey::new(&mut rand::rng(), bits)
            .map_err(|e| KeyError::PrivateKey(e.to_string()))?;
        Self::from_rsa(key)
    }

    /// Wrap an RSA private key.
    pub fn from_rsa(key: rsa::PrivateKey) -> Result<Self, KeyError> {
        let public = PublicKey::from_rsa(key.to_public_key())?;
        Ok(Self {
            key: SoftwareKey::Rsa(Box::new(key)),
            public,
        })
    }

    /// Wrap a P-256 private key.
    pub fn from_p256(key: p256::ecdsa::SigningKey) -> Self {
        let public = PublicKey::P256(p256::PublicKey::from(key.verifying_key()));
        Self {
            key: SoftwareKey::P256(key),
            public,
        }
    }

    /// Read an unencrypted PKCS#8 `PrivateKeyInfo` (RFC 5208) holding an RSA or P-256 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        use rsa::pkcs8::DecodePrivateKey;
        let info = rsa::pkcs8::PrivateKeyInfoRef::try_from(der)
            .map_err(|e| KeyError::PrivateKey(e.to_string()))?;
        let alg = info.algorithm.oid;
        if alg == oid::RSA_ENCRYPTION {
            let key = rsa::PrivateKey::from_pkcs8_der(der)
                .map_err(|e| KeyError::PrivateKey(e.to_string()))?;
            Self::from_rsa(key)
        } else if alg == oid::ID_EC_PUBLIC_KEY {
            let key = p256::ecdsa::SigningKey::from_pkcs8_der(der)
                .map_err(|e| KeyError::PrivateKey(e.to_string()))?;
            Ok(Self::from_p256(key))
        } else {
            Err(KeyError::UnsupportedAlgorithm(alg.to_string()))
        }
    }

    /// The private key as unencrypted PKCS#8 DER, in a buffer wiped on drop. Encrypt it
    /// before it touches a disk.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        use rsa::pkcs8::EncodePrivateKey;
        let doc = match &self.key {
            SoftwareKey::Rsa(k) => k.to_pkcs8_der(),
            SoftwareKey::P256(k) => k.to_pkcs8_der(),
        }
        .map_err(|e| KeyError::PrivateKey(e.to_string()))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }
}

impl CaSigner for SoftwareSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        let digest = sha256(message);
        match &self.key {
            SoftwareKey::Rsa(k) => k
                .pkcs1v15_sign_prehash::<sha2::Sha256>(&digest)
                .map_err(|e| SignerError(e.to_string())),
            SoftwareKey::P256(k) => {
                let sig: p256::ecdsa::DerSignature = k
                    .sign_prehash(&digest)
                    .map_err(|e| SignerError(e.to_string()))?;
                Ok(sig.as_bytes().to_vec())
            }
        }
    }
}

/// Errors of CA operations.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The subject cannot be encoded.
    #[error("invalid subject: {0}")]
    Subject(#[from] SubjectError),
    /// The subject public key is not acceptable.
    #[error("subject public key: {0}")]
    Key(#[from] KeyError),
    /// The CA key failed to sign.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// The signer returned a signature that does not verify under the CA key.
    #[error("the CA signer produced a signature that does not verify")]
    BadSignerOutput,
    /// DER encoding failed.
    #[error("encoding: {0}")]
    Encoding(String),
    /// The certificate store failed.
    #[error("certificate store: {0}")]
    Store(#[from] StoreError),
    /// The CA certificate given to [`CertificateAuthority::load`] is not usable.
    #[error("CA certificate: {0}")]
    CaCertificate(String),
    /// The serial number was never issued by this CA.
    #[error("certificate {0} was not issued by this CA")]
    NotIssued(Serial),
    /// The certificate is already revoked.
    #[error("certificate {serial} is already revoked ({reason})")]
    AlreadyRevoked {
        /// Serial number.
        serial: Serial,
        /// The reason recorded first.
        reason: RevocationReason,
    },
    /// The requested validity cannot be granted.
    #[error("validity: {0}")]
    Validity(String),
    /// No unused serial number could be drawn (store keeps reporting duplicates).
    #[error("could not allocate a unique serial number")]
    SerialCollision,
}

impl From<der::Error> for CaError {
    fn from(e: der::Error) -> Self {
        Self::Encoding(e.to_string())
    }
}

/// Why a presented client certificate is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// Not a DER X.509 certificate.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// Not issued by this CA (other issuer name, algorithm or signing key).
    #[error("certificate not issued by this CA: {0}")]
    Foreign(&'static str),
    /// Issued by this CA but not a client certificate (e.g. the CA certificate itself).
    #[error("not a client certificate: {0}")]
    NotClientCertificate(&'static str),
    /// `notBefore` is in the future.
    #[error("certificate not valid before {not_before}")]
    NotYetValid {
        /// Start of validity.
        not_before: OffsetDateTime,
    },
    /// `notAfter` is in the past.
    #[error("certificate expired at {not_after}")]
    Expired {
        /// End of validity.
        not_after: OffsetDateTime,
    },
    /// Revoked.
    #[error("certificate revoked at {revoked_at} ({reason})")]
    Revoked {
        /// When.
        revoked_at: OffsetDateTime,
        /// Why.
        reason: RevocationReason,
    },
    /// The revocation status could not be read.
    #[error("revocation status unavailable: {0}")]
    Store(String),
}

/// A client certificate whose signature and profile were checked (validity and
/// revocation are checked on every call, not cached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCertificate {
    /// Serial number.
    pub serial: Serial,
    /// Subject, RFC 4514 string.
    pub subject: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Subject public key.
    pub public_key: PublicKey,
}

/// The certificate authority. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct CertificateAuthority {
    signer: Arc<dyn CaSigner>,
    store: Arc<dyn CertificateStore>,
    clock: Arc<dyn Clock>,
    certificate: Certificate,
    name: Name,
    name_der: Vec<u8>,
    key_id: [u8; 20],
    /// Parsed CA public key, cached so that verifying a client certificate is one
    /// signature check.
    public_key: PublicKey,
    algorithm_der: &'static [u8],
    not_after: OffsetDateTime,
    verified: RwLock<HashMap<[u8; 32], Arc<VerifiedCertificate>>>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject", &self.certificate.subject())
            .field("algorithm", &self.public_key.algorithm())
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Create a new root: a self-signed CA certificate for `name`, valid for `validity`
    /// from now, with basicConstraints `cA TRUE, pathLen 0` and keyUsage
    /// `keyCertSign, cRLSign` (both critical, RFC 5280 §4.2.1.9 and §4.2.1.3).
    pub fn create(
        name: &Subject,
        validity: Duration,
        signer: Arc<dyn CaSigner>,
        store: Arc<dyn CertificateStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CaError> {
        let subject = name.to_name()?;
        let now = whole_seconds(clock.now());
        let not_after = add(now, validity)?;
        let spki = SubjectPublicKeyInfoOwned::from_der(&signer.public_key().to_spki_der())?;
        let key_id = key_identifier(&spki);
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
                &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            )?,
            extension(
                oid::CE_SUBJECT_KEY_ID,
                false,
                &SubjectKeyIdentifier(OctetString::new(key_id.to_vec())?),
            )?,
        ];
        let algorithm_der = signer.public_key().signature_algorithm_der();
        let tbs = TbsCertificateOut {
            version: Version::V3,
            serial_number: Serial::random().to_x509()?,
            signature: AlgorithmIdentifierOwned::from_der(algorithm_der)?,
            issuer: subject.clone(),
            validity: Validity::new(to_x509_time(now - BACKDATE)?, to_x509_time(not_after)?),
            subject,
            subject_public_key_info: spki,
            extensions,
        }
        .to_der()?;
        let der = sign(signer.as_ref(), signer.public_key(), &tbs)?;
        Self::load(&der, signer, store, clock)
    }

    /// Load an existing root from its certificate and key. The certificate must be
    /// self-signed by the signer's key and be a CA certificate.
    pub fn load(
        certificate_der: &[u8],
        signer: Arc<dyn CaSigner>,
        store: Arc<dyn CertificateStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CaError> {
        let bad = |m: &str| CaError::CaCertificate(m.to_string());
        let certificate = Certificate::from_der(certificate_der)
            .map_err(|e| CaError::CaCertificate(e.to_string()))?;
        let public_key = signer.public_key().clone();
        let tbs = certificate.x509().tbs_certificate();
        if tbs.subject_public_key_info().to_der()? != public_key.to_spki_der() {
            return Err(bad("public key does not match the signer's key"));
        }
        if tbs.issuer() != tbs.subject() {
            return Err(bad("not self-signed (issuer differs from subject)"));
        }
        let algorithm_der = public_key.signature_algorithm_der();
        if tbs.signature().to_der()? != algorithm_der {
            return Err(bad("signature algorithm does not match the key"));
        }
        check_signature(certificate_der, algorithm_der, &public_key)
            .map_err(|m| CaError::CaCertificate(m.to_string()))?;
        let mut is_ca = false;
        let mut cert_sign = false;
        for ext in tbs.extensions().into_iter().flatten() {
            if ext.extn_id == oid::CE_BASIC_CONSTRAINTS {
                is_ca = BasicConstraints::from_der(ext.extn_value.as_bytes())?.ca;
            } else if ext.extn_id == oid::CE_KEY_USAGE {
                cert_sign = KeyUsage::from_der(ext.extn_value.as_bytes())?.key_cert_sign();
            }
        }
        if !is_ca || !cert_sign {
            return Err(bad("basicConstraints cA or keyUsage keyCertSign missing"));
        }
        let spki = SubjectPublicKeyInfoOwned::from_der(&public_key.to_spki_der())?;
        let name = tbs.subject().clone();
        Ok(Self {
            name_der: name.to_der()?,
            name,
            key_id: key_identifier(&spki),
            not_after: certificate.not_after(),
            algorithm_der,
            public_key,
            certificate,
            signer,
            store,
            clock,
            verified: RwLock::new(HashMap::new()),
        })
    }

    /// The self-signed CA certificate (the trust anchor to distribute).
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The CA public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The clock this CA uses.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Issue a smart-card user certificate (profile in the module documentation) for the
    /// card key in `spki_der` (RSA-2048 or P-256), and record it in the store.
    ///
    /// Proof of possession is the caller's duty: see [`crate::enrol`].
    pub fn issue_client_certificate(
        &self,
        subject: &Subject,
        spki_der: &[u8],
        validity: Duration,
    ) -> Result<Certificate, CaError> {
        let subject_name = subject.to_name()?;
        let key = PublicKey::from_spki_der(spki_der)?;
        if let KeyAlgorithm::Rsa { bits } = key.algorithm() {
            if bits != 2048 {
                // Card keys are RSA-2048 or P-256 (SP 800-78-4); larger keys are CA-only.
                return Err(KeyError::RsaModulusSize(bits).into());
            }
        }
        let spki = SubjectPublicKeyInfoOwned::from_der(&key.to_spki_der())?;
        let now = whole_seconds(self.clock.now());
        if validity.is_zero() {
            return Err(CaError::Validity("validity must be positive".into()));
        }
        if now >= self.not_after {
            return Err(CaError::Validity("the CA certificate has expired".into()));
        }
        let not_before = now - BACKDATE;
        let not_after = add(now, validity)?.min(self.not_after);
        let extensions = vec![
            extension(
                oid::CE_BASIC_CONSTRAINTS,
                true,
                &BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
            )?,
            extension(
                oid::CE_KEY_USAGE,
                true,
                &KeyUsage(KeyUsages::DigitalSignature.into()),
            )?,
            extension(
                oid::CE_EXT_KEY_USAGE,
                false,
                &ExtendedKeyUsage(vec![oid::KP_CLIENT_AUTH]),
            )?,
            extension(
                oid::CE_SUBJECT_KEY_ID,
                false,
                &SubjectKeyIdentifier(OctetString::new(key_identifier(&spki).to_vec())?),
            )?,
            self.authority_key_identifier()?,
        ];
        for _ in 0..4 {
            let serial = Serial::random();
            let tbs = TbsCertificateOut {
                version: Version::V3,
                serial_number: serial.to_x509()?,
                signature: AlgorithmIdentifierOwned::from_der(self.algorithm_der)?,
                issuer: self.name.clone(),
                validity: Validity::new(to_x509_time(not_before)?, to_x509_time(not_after)?),
                subject: subject_name.clone(),
                subject_public_key_info: spki.clone(),
                extensions: extensions.clone(),
            }
            .to_der()?;
            let der = sign(self.signer.as_ref(), &self.public_key, &tbs)?;
            let certificate = Certificate::from_der(&der)?;
            let record = IssuedCertificate {
                serial: serial.clone(),
                subject: certificate.subject(),
                not_before: certificate.not_before(),
                not_after: certificate.not_after(),
                certificate_der: der,
            };
            match self.store.insert_issued(&record) {
                Ok(()) => return Ok(certificate),
                Err(StoreError::Duplicate) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CaError::SerialCollision)
    }

    /// Revoke a certificate issued by this CA, now.
    pub fn revoke(&self, serial: &Serial, reason: RevocationReason) -> Result<(), CaError> {
        let revocation = Revocation {
            revoked_at: whole_seconds(self.clock.now()),
            reason,
        };
        match self.store.revoke(serial, &revocation)? {
            RevokeOutcome::Revoked => Ok(()),
            RevokeOutcome::NotIssued => Err(CaError::NotIssued(serial.clone())),
            RevokeOutcome::AlreadyRevoked(existing) => Err(CaError::AlreadyRevoked {
                serial: serial.clone(),
                reason: existing.reason,
            }),
        }
    }

    /// Revocation status of a serial number.
    pub fn status(&self, serial: &Serial) -> Result<CertificateStatus, CaError> {
        if let Some(r) = self.store.revocation(serial)? {
            return Ok(CertificateStatus::Revoked {
                revoked_at: r.revoked_at,
                reason: r.reason,
            });
        }
        Ok(match self.store.issued(serial)? {
            Some(issued) => CertificateStatus::Good {
                not_after: issued.not_after,
            },
            None => CertificateStatus::Unknown,
        })
    }

    /// A fresh v2 CRL (RFC 5280 §5) listing every revoked serial, with `thisUpdate` now and
    /// `nextUpdate` after `next_update`. It carries authorityKeyIdentifier (§5.2.1) and a
    /// monotonically increasing cRLNumber (§5.2.3); entries carry reasonCode unless the
    /// reason is unspecified (§5.3.1); with nothing revoked the list is absent (§5.1.2.6).
    pub fn crl_der(&self, next_update: Duration) -> Result<Vec<u8>, CaError> {
        let now = whole_seconds(self.clock.now());
        let mut revoked = self.store.revocations()?;
        revoked.sort_by(|a, b| a.0.cmp(&b.0));
        let mut entries = Vec::with_capacity(revoked.len());
        for (serial, r) in &revoked {
            let crl_entry_extensions = match r.reason {
                RevocationReason::Unspecified => None,
                reason => Some(vec![extension(
                    oid::CE_CRL_REASON,
                    false,
                    &crl_reason(reason),
                )?]),
            };
            entries.push(RevokedCert {
                serial_number: serial.to_x509()?,
                revocation_date: to_x509_time(r.revoked_at)?,
                crl_entry_extensions,
            });
        }
        let number = self.store.next_crl_number()?;
        let tbs = TbsCertList {
            version: Version::V2,
            signature: AlgorithmIdentifierOwned::from_der(self.algorithm_der)?,
            issuer: self.name.clone(),
            this_update: to_x509_time(now)?,
            next_update: Some(to_x509_time(add(now, next_update)?)?),
            revoked_certificates: (!entries.is_empty()).then_some(entries),
            crl_extensions: Some(vec![
                self.authority_key_identifier()?,
                extension(oid::CE_CRL_NUMBER, false, &CrlNumber::try_from(number)?)?,
            ]),
        }
        .to_der()?;
        sign(self.signer.as_ref(), &self.public_key, &tbs)
    }

    /// Check a certificate a client presents: issued by this CA (issuer name, algorithm,
    /// signature under the cached CA key), a client certificate (no unknown critical
    /// extension, keyUsage digitalSignature, not a CA, extKeyUsage clientAuth), within its
    /// validity at `at`, and not revoked.
    ///
    /// The signature and profile result is cached by the SHA-256 of the DER, so a card's
    /// repeated payments cost one hash and one store look-up for the certificate.
    pub fn validate_client_certificate(
        &self,
        der: &[u8],
        at: OffsetDateTime,
    ) -> Result<Arc<VerifiedCertificate>, CertificateError> {
        let fingerprint = sha256(der);
        let cached = self
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fingerprint)
            .cloned();
        let verified = match cached {
            Some(v) => v,
            None => {
                let v = Arc::new(self.verify_client_certificate(der)?);
                let mut cache = self.verified.write().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
                cache.insert(fingerprint, Arc::clone(&v));
                v
            }
        };
        if at < verified.not_before {
            return Err(CertificateError::NotYetValid {
                not_before: verified.not_before,
            });
        }
        if at > verified.not_after {
            return Err(CertificateError::Expired {
                not_after: verified.not_after,
            });
        }
        match self.store.revocation(&verified.serial) {
            Ok(None) => Ok(verified),
            Ok(Some(r)) => Err(CertificateError::Revoked {
                revoked_at: r.revoked_at,
                reason: r.reason,
            }),
            Err(e) => Err(CertificateError::Store(e.to_string())),
        }
    }

    fn verify_client_certificate(
        &self,
        der: &[u8],
    ) -> Result<VerifiedCertificate, CertificateError> {
        let malformed = |e: der::Error| CertificateError::Malformed(e.to_string());
        let cert = x509_cert::Certificate::from_der(der).map_err(malformed)?;
        let tbs = cert.tbs_certificate();
        if tbs.issuer().to_der().map_err(malformed)? != self.name_der {
            return Err(CertificateError::Foreign("issuer is not this CA"));
        }
        // TBSCertificate.signature must equal the outer signatureAlgorithm (RFC 5280 §4.1.1.2).
        if tbs.signature().to_der().map_err(malformed)? != self.algorithm_der {
            return Err(CertificateError::Foreign(
                "signature algorithm differs from the CA's",
            ));
        }
        check_signature(der, self.algorithm_der, &self.public_key)
            .map_err(CertificateError::Foreign)?;
        if tbs.version() != Version::V3 {
            return Err(CertificateError::NotClientCertificate(
                "not a v3 certificate",
            ));
        }
        let mut digital_signature = false;
        let mut client_auth = false;
        for ext in tbs.extensions().into_iter().flatten() {
            let value = ext.extn_value.as_bytes();
            if ext.extn_id == oid::CE_KEY_USAGE {
                digital_signature = KeyUsage::from_der(value)
                    .map_err(malformed)?
                    .digital_signature();
            } else if ext.extn_id == oid::CE_BASIC_CONSTRAINTS {
                if BasicConstraints::from_der(value).map_err(malformed)?.ca {
                    return Err(CertificateError::NotClientCertificate("a CA certificate"));
                }
            } else if ext.extn_id == oid::CE_EXT_KEY_USAGE {
                client_auth = ExtendedKeyUsage::from_der(value)
                    .map_err(malformed)?
                    .0
                    .contains(&oid::KP_CLIENT_AUTH);
            } else if ext.critical
                && ext.extn_id != oid::CE_SUBJECT_KEY_ID
                && ext.extn_id != oid::CE_AUTHORITY_KEY_ID
            {
                // RFC 5280 §4.2: reject unrecognised critical extensions.
                return Err(CertificateError::NotClientCertificate(
                    "unknown critical extension",
                ));
            }
        }
        if !digital_signature {
            return Err(CertificateError::NotClientCertificate(
                "keyUsage lacks digitalSignature",
            ));
        }
        if !client_auth {
            return Err(CertificateError::NotClientCertificate(
                "extKeyUsage lacks clientAuth",
            ));
        }
        let spki = tbs.subject_public_key_info().to_der().map_err(malformed)?;
        let public_key = PublicKey::from_spki_der(&spki)
            .map_err(|e| CertificateError::Malformed(e.to_string()))?;
        if matches!(public_key.algorithm(), KeyAlgorithm::Rsa { bits } if bits > 2048) {
            // Card keys are RSA-2048 or P-256 (SP 800-78-4); larger keys are CA-only.
            return Err(CertificateError::NotClientCertificate(
                "RSA key larger than 2048 bits",
            ));
        }
        let serial = Serial::from_x509(tbs.serial_number())
            .ok_or(CertificateError::Malformed("zero serial number".into()))?;
        Ok(VerifiedCertificate {
            serial,
            subject: tbs.subject().to_string(),
            not_before: from_x509_time(tbs.validity().not_before),
            not_after: from_x509_time(tbs.validity().not_after),
            public_key,
        })
    }

    fn authority_key_identifier(&self) -> Result<Extension, der::Error> {
        extension(
            oid::CE_AUTHORITY_KEY_ID,
            false,
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(self.key_id.to_vec())?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
        )
    }
}

/// Sign a TBS structure and assemble the signed DER, checking the signer's output under
/// the expected public key first (a faulty HSM must not publish a bad certificate).
pub(crate) fn sign(
    signer: &dyn CaSigner,
    public_key: &PublicKey,
    tbs: &[u8],
) -> Result<Vec<u8>, CaError> {
    let signature = signer.sign_sha256(tbs)?;
    public_key
        .verify(tbs, &signature)
        .map_err(|_| CaError::BadSignerOutput)?;
    Ok(assemble_signed(
        tbs,
        public_key.signature_algorithm_der(),
        &signature,
    )?)
}

/// Check the outer algorithm identifier and the signature of a signed structure.
fn check_signature(der: &[u8], algorithm_der: &[u8], key: &PublicKey) -> Result<(), &'static str> {
    let signed = SignedRef::from_der(der).map_err(|_| "malformed")?;
    if signed.algorithm_der() != algorithm_der {
        return Err("signature algorithm differs from the CA's");
    }
    let tbs = signed.tbs_der().map_err(|_| "malformed")?;
    let sig = signed
        .signature
        .as_bytes()
        .ok_or("signature has unused bits")?;
    key.verify(&tbs, sig)
        .map_err(|_| "signature does not verify under the CA key")
}

fn crl_reason(reason: RevocationReason) -> CrlReason {
    match reason {
        RevocationReason::Unspecified => CrlReason::Unspecified,
        RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
        RevocationReason::CaCompromise => CrlReason::CaCompromise,
        RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
        RevocationReason::Superseded => CrlReason::Superseded,
        RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        RevocationReason::CertificateHold => CrlReason::CertificateHold,
        RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
    }
}

fn add(t: OffsetDateTime, d: Duration) -> Result<OffsetDateTime, CaError> {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d))
        .ok_or_else(|| CaError::Validity("validity out of range".into()))
}
