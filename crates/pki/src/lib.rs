//! Cardwright PKI: the certificate authority and payment authenticator on the server side
//! of remote payments signed by a smart card (requirement source: CN101938520A).
//!
//! * [`enrol`]: the card generates a key pair (RSA-2048 or P-256), proves possession by
//!   signing a one-time server challenge, and the [`CertificateAuthority`] issues an X.509
//!   smart-card user certificate.
//! * [`payment`]: the server issues a one-time challenge over the canonical payment data,
//!   the card signs its SHA-256 after PIN entry, and the server validates the certificate
//!   (chain, validity, revocation) and the signature, then records the [`Authorisation`].
//! * [`scp11`]: SCP11 (GP Amendment F) CA and key-agreement certificates in X.509 form.
//! * [`piv`]: the formats the card's PIV-compatible applet uses (public key template,
//!   host-side PKCS#1 v1.5 padding).
//!
//! The crate is pure: storage is behind the traits in [`store`] (the `tsm` crate implements
//! them on its database; [`MemoryStore`] is for tests), time behind [`Clock`], and the CA
//! key behind [`CaSigner`].
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use pki::*;
//!
//! let store = Arc::new(MemoryStore::new());
//! let ca = Arc::new(CertificateAuthority::create(
//!     &Subject::new("Cardwright Test CA"),
//!     Duration::from_secs(10 * 365 * 86400),
//!     Arc::new(SoftwareSigner::generate_p256()),
//!     store.clone(),
//!     Arc::new(SystemClock),
//! )?);
//!
//! // Enrolment: a P-256 key standing in for the card's.
//! use p256::elliptic_curve::Generate;
//! let card = p256::ecdsa::SigningKey::generate_from_rng(&mut rand::rng());
//! let card_public = PublicKey::P256(p256::PublicKey::from(card.verifying_key()));
//! let enroller = Enroller::new(ca.clone(), store.clone());
//! let challenge = enroller.issue_challenge(Subject::new("Alice").with_uid("acct-1"))?;
//! use p256::ecdsa::{signature::hazmat::PrehashSigner, DerSignature};
//! let proof: DerSignature = card.sign_prehash(&challenge.digest())?;
//! let certificate = enroller.complete(&challenge.id, &card_public, proof.as_bytes(), None)?;
//!
//! // Payment.
//! let payments = PaymentAuthenticator::new(ca, store);
//! let request = PaymentRequest {
//!     amount_minor: 12_345,
//!     currency: "CNY".into(),
//!     payee: "shop-17".into(),
//!     order_id: "A-1001".into(),
//! };
//! let challenge = payments.issue_challenge(request.clone(), None)?;
//! let signature: DerSignature = card.sign_prehash(&challenge.digest())?;
//! let authorisation =
//!     payments.verify(&challenge.id, &request, certificate.der(), signature.as_bytes())?;
//! assert_eq!(authorisation.request.amount_minor, 12_345);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ca;
pub mod cert;
pub mod clock;
pub mod enrol;
pub mod key;
#[cfg(feature = "kms")]
pub mod keystore;
mod oid;
pub mod payment;
pub mod piv;
pub mod scp11;
pub mod store;
pub mod subject;
mod util;

pub use ca::{
    CaError, CaSigner, CertificateAuthority, CertificateError, SignerError, SoftwareSigner,
    VerifiedCertificate,
};
pub use cert::{Certificate, CertificateStatus, RevocationReason, Serial};
pub use clock::{Clock, ManualClock, SystemClock};
pub use enrol::{EnrolError, Enroller, EnrolmentChallenge};
pub use key::{KeyAlgorithm, KeyError, PublicKey, SignatureError};
#[cfg(feature = "kms")]
pub use keystore::KeystoreSigner;
pub use payment::{
    Authorisation, CanonicalError, PaymentAuthenticator, PaymentChallenge, PaymentError,
    PaymentRequest,
};
pub use store::{
    CertificateStore, ChallengeId, ChallengeState, EnrolmentStore, MemoryStore, PaymentStore,
    StoreError,
};
pub use subject::{Subject, SubjectError};
