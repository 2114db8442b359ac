//! A [`PackageSigner`] over a private key in memory (a PKCS#8 file, or a fresh key for
//! tests and benchmarks). Key stores (`kms`) implement [`PackageSigner`] in the CLI.

use std::fmt;

use p256::ecdsa::signature::hazmat::PrehashSigner;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{algorithm::PSS_SALT_LEN, PackageSigner, SignatureAlgorithm};

enum Key {
    P256(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::PrivateKey>),
}

/// A P-256 or RSA private key in memory. The key types wipe themselves on drop; `Debug`
/// shows the algorithm only.
pub struct SoftwareSigner {
    key: Key,
}

impl fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("algorithm", &self.algorithm())
            .field("key", &"<redacted>")
            .finish()
    }
}

const RSA_ENCRYPTION: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_EC_PUBLIC_KEY: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

impl SoftwareSigner {
    /// Reads an unencrypted PKCS#8 `PrivateKeyInfo` (RFC 5208), PEM (`PRIVATE KEY`) or DER,
    /// holding a P-256 key or an RSA key of 2048 to 4096 bits.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Self, String> {
        if bytes.starts_with(b"-----BEGIN") {
            let (label, der) = der::pem::decode_vec(bytes).map_err(|e| format!("PEM: {e}"))?;
            let der = Zeroizing::new(der);
            if label != "PRIVATE KEY" {
                return Err(format!(
                    "a PEM {label:?}; want an unencrypted PKCS#8 \"PRIVATE KEY\" \
                     (`openssl pkcs8 -topk8 -nocrypt` converts one)"
                ));
            }
            return Self::from_pkcs8_der(&der);
        }
        Self::from_pkcs8_der(bytes)
    }

    /// Reads a DER PKCS#8 `PrivateKeyInfo` (see [`SoftwareSigner::from_pkcs8`]).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, String> {
        use rsa::pkcs8::DecodePrivateKey;
        let info = rsa::pkcs8::PrivateKeyInfoRef::try_from(der)
            .map_err(|e| format!("not a PKCS#8 private key: {e}"))?;
        let oid = info.algorithm.oid;
        if oid == RSA_ENCRYPTION {
            let key = rsa::PrivateKey::from_pkcs8_der(der).map_err(|e| format!("RSA key: {e}"))?;
            Self::from_rsa(key)
        } else if oid == ID_EC_PUBLIC_KEY {
            let key = p256::ecdsa::SigningKey::from_pkcs8_der(der)
                .map_err(|e| format!("EC key (P-256 only): {e}"))?;
            Ok(Self::from_p256(key))
        } else {
            Err(format!(
                "unsupported key algorithm {oid}: want P-256 or RSA"
            ))
        }
    }

    /// Wraps a P-256 key.
    pub fn from_p256(key: p256::ecdsa::SigningKey) -> Self {
        Self {
            key: Key::P256(key),
        }
    }

    /// Wraps an RSA key (2048 to 4096 bits).
    pub fn from_rsa(key: rsa::PrivateKey) -> Result<Self, String> {
        use rsa::traits::PublicKeyParts;
        let bits = key.n().bits_precision();
        if !(2048..=4096).contains(&bits) {
            return Err(format!("an RSA key of {bits} bits; want 2048 to 4096"));
        }
        Ok(Self {
            key: Key::Rsa(Box::new(key)),
        })
    }

    /// A fresh P-256 key.
    pub fn generate_p256() -> Self {
        use p256::elliptic_curve::Generate;
        Self::from_p256(p256::ecdsa::SigningKey::generate_from_rng(&mut rand::rng()))
    }

    /// A fresh RSA key of `bits` bits (e = 65537).
    pub fn generate_rsa(bits: usize) -> Result<Self, String> {
        let key = rsa::PrivateKey::new(&mut rand::rng(), bits).map_err(|e| e.to_string())?;
        Self::from_rsa(key)
    }

    /// The public key, DER `SubjectPublicKeyInfo`.
    pub fn public_key_der(&self) -> Vec<u8> {
        use rsa::pkcs8::EncodePublicKey;
        let doc = match &self.key {
            Key::P256(k) => p256::pkcs8::EncodePublicKey::to_public_key_der(k.verifying_key()),
            Key::Rsa(k) => k.to_public_key().to_public_key_der(),
        };
        // Encoding a valid in-memory key does not fail.
        doc.map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    /// The private key as unencrypted PKCS#8 DER, in a buffer wiped on drop.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        use rsa::pkcs8::EncodePrivateKey;
        let doc = match &self.key {
            Key::P256(k) => k.to_pkcs8_der(),
            Key::Rsa(k) => k.to_pkcs8_der(),
        }
        .map_err(|e| e.to_string())?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }
}

impl PackageSigner for SoftwareSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        match self.key {
            Key::P256(_) => SignatureAlgorithm::EcdsaP256Sha256,
            Key::Rsa(_) => SignatureAlgorithm::RsaPssSha256,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let digest = Sha256::digest(message);
        match &self.key {
            Key::P256(k) => {
                let sig: p256::ecdsa::DerSignature =
                    k.sign_prehash(&digest).map_err(|e| e.to_string())?;
                Ok(sig.as_bytes().to_vec())
            }
            Key::Rsa(k) => k
                .sign_with_rng(
                    &mut rand::rng(),
                    rsa::pss::Pss::<Sha256>::new_with_salt(PSS_SALT_LEN as usize),
                    &digest,
                )
                .map_err(|e| e.to_string()),
        }
    }
}
