//! Shared test fixtures: a simulated card and a CA environment with a manual clock.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use p256::ecdsa::{signature::hazmat::PrehashSigner, DerSignature};
use p256::elliptic_curve::Generate;
use pki::{
    piv, CaSigner, CertificateAuthority, Enroller, ManualClock, MemoryStore, PaymentAuthenticator,
    PublicKey, SoftwareSigner, Subject,
};
use rsa::traits::PublicKeyParts;
use time::OffsetDateTime;

pub const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

pub fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// RSA-2048 keys are slow to generate in debug builds: make a few once per test binary.
pub fn rsa_key(i: usize) -> rsa::PrivateKey {
    static KEYS: OnceLock<Vec<rsa::PrivateKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (0..3)
            .map(|_| rsa::PrivateKey::new(&mut rand::rng(), 2048).expect("keygen"))
            .collect()
    })[i]
        .clone()
}

/// A card's key pair as a PIV applet would hold it.
pub enum Card {
    Rsa(rsa::PrivateKey),
    P256(p256::ecdsa::SigningKey),
}

impl Card {
    pub fn p256() -> Self {
        Self::P256(p256::ecdsa::SigningKey::generate_from_rng(&mut rand::rng()))
    }

    pub fn rsa(i: usize) -> Self {
        Self::Rsa(rsa_key(i))
    }

    /// GENERATE ASYMMETRIC KEY PAIR response data (7F49 template), as the card sends it.
    pub fn generate_response(&self) -> Vec<u8> {
        piv::encode_public_key_template(&self.public_key())
    }

    pub fn algorithm(&self) -> piv::PivAlgorithm {
        match self {
            Self::Rsa(_) => piv::PivAlgorithm::Rsa2048,
            Self::P256(_) => piv::PivAlgorithm::EccP256,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match self {
            Self::Rsa(k) => PublicKey::from_rsa(k.to_public_key()).expect("2048"),
            Self::P256(k) => PublicKey::P256(p256::PublicKey::from(k.verifying_key())),
        }
    }

    /// GENERAL AUTHENTICATE as a PIV card does it: for RSA the host pads the digest
    /// (EMSA-PKCS1-v1_5) and the card performs the raw private-key operation; for ECC
    /// the card signs the digest and returns DER.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Vec<u8> {
        match self {
            Self::Rsa(k) => {
                let size = k.size();
                let block = piv::emsa_pkcs1_v15_sha256(digest, size).expect("block");
                let precision = k.n().as_ref().bits_precision();
                let c = rsa::BoxedUint::from_be_slice(&block, precision).expect("int");
                let m = rsa::hazmat::rsa_decrypt_and_check(k, Some(&mut rand::rng()), &c)
                    .expect("raw RSA");
                let bytes = m.to_be_bytes();
                let mut out = vec![0u8; size];
                let take = bytes.len().min(size);
                out[size - take..].copy_from_slice(&bytes[bytes.len() - take..]);
                out
            }
            Self::P256(k) => {
                let sig: DerSignature = k.sign_prehash(digest).expect("sign");
                sig.as_bytes().to_vec()
            }
        }
    }
}

pub struct Env {
    pub clock: Arc<ManualClock>,
    pub store: Arc<MemoryStore>,
    pub ca: Arc<CertificateAuthority>,
    pub enroller: Enroller,
    pub payments: PaymentAuthenticator,
}

pub fn start() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("time") // 2026-01-01T00:00:00Z
}

pub fn env_with(signer: Arc<dyn CaSigner>, name: &str) -> Env {
    let clock = Arc::new(ManualClock::new(start()));
    let store = Arc::new(MemoryStore::new());
    let ca = Arc::new(
        CertificateAuthority::create(
            &Subject::new(name).with_organization("Cardwright Test"),
            10 * YEAR,
            signer,
            store.clone(),
            clock.clone(),
        )
        .expect("CA"),
    );
    Env {
        enroller: Enroller::new(ca.clone(), store.clone()),
        payments: PaymentAuthenticator::new(ca.clone(), store.clone()),
        clock,
        store,
        ca,
    }
}

pub fn env() -> Env {
    env_with(
        Arc::new(SoftwareSigner::generate_p256()),
        "Cardwright Test CA",
    )
}

pub fn rsa_ca_env() -> Env {
    env_with(
        Arc::new(SoftwareSigner::from_rsa(rsa_key(2)).expect("signer")),
        "Cardwright Test RSA CA",
    )
}

pub fn alice() -> Subject {
    Subject::new("Alice Example")
        .with_uid("acct-0001")
        .with_serial_number("CW000123")
}

/// Enrol `card` through the full protocol and return its certificate.
pub fn enrol(env: &Env, card: &Card) -> pki::Certificate {
    let challenge = env.enroller.issue_challenge(alice()).expect("challenge");
    let key =
        piv::parse_public_key_template(&card.generate_response(), card.algorithm()).expect("7F49");
    let proof = card.sign_digest(&challenge.digest());
    env.enroller
        .complete(&challenge.id, &key, &proof, None)
        .expect("enrol")
}

pub fn order(amount: u64) -> pki::PaymentRequest {
    pki::PaymentRequest {
        amount_minor: amount,
        currency: "CNY".into(),
        payee: "Shop No. 17".into(),
        order_id: "ORD-2026-0001".into(),
    }
}
