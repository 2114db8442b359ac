//! Public keys of cards and of the CA, and verification of the signatures a card makes.
//!
//! Only the algorithms a PIV-compatible card applet offers for this service are accepted
//! (NIST SP 800-78-4 Table 5-1 / 6-2): RSA with a 2048-bit modulus (3072 and 4096 bits
//! are also accepted, e.g. for CA keys) and ECDSA on P-256. Every signature is made over a
//! SHA-256 digest:
//!
//! * RSA: RSASSA-PKCS1-v1_5 (RFC 8017 §8.2) with `DigestInfo(SHA-256)`; a PIV card does the
//!   raw RSA operation on the block the host padded (see [`crate::piv::emsa_pkcs1_v15_sha256`]).
//! * ECDSA P-256: the DER `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`
//!   (RFC 3279 §2.2.3) that a PIV card returns in tag `82` of the dynamic authentication
//!   template (SP 800-73-4 Part 2 §3.2.4).

use std::fmt;

use der::{asn1::AnyRef, Decode, Encode};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rsa::{pkcs8::DecodePublicKey, pkcs8::EncodePublicKey, traits::PublicKeyParts};
use sha2::{Digest, Sha256};
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

use crate::oid;

/// Smallest accepted RSA modulus, in bits.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest accepted RSA modulus, in bits.
pub const RSA_MAX_BITS: usize = 4096;

/// Errors while reading a public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The DER structure could not be decoded.
    #[error("malformed public key encoding: {0}")]
    Der(String),
    /// The algorithm is not one this service accepts.
    #[error("unsupported key algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// An elliptic-curve key is on a curve other than P-256.
    #[error("unsupported elliptic curve {0}")]
    UnsupportedCurve(String),
    /// An RSA modulus of a size this service does not accept.
    #[error("RSA modulus of {0} bits is not accepted (2048, 3072 or 4096 bits)")]
    RsaModulusSize(usize),
    /// The RSA public key is not valid (exponent out of range, even modulus, ...).
    #[error("invalid RSA public key: {0}")]
    InvalidRsaKey(String),
    /// The EC point is not a valid uncompressed P-256 point.
    #[error("invalid P-256 public point")]
    InvalidEcPoint,
    /// A BER-TLV structure (PIV public key template) is malformed.
    #[error("malformed PIV key template: {0}")]
    Template(String),
    /// The private key could not be read or written.
    #[error("private key encoding: {0}")]
    PrivateKey(String),
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature bytes are not a well-formed signature for this key type
    /// (wrong RSA signature length, not a DER ECDSA-Sig-Value, r or s out of range).
    #[error("malformed signature")]
    Malformed,
    /// Well formed, but not a valid signature by this key over this digest.
    #[error("signature does not verify")]
    Invalid,
}

/// The key algorithm, for display, audit and policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum KeyAlgorithm {
    /// RSA with a modulus of the given size in bits.
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
    /// ECDSA on NIST P-256 (secp256r1).
    P256,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa { bits } => write!(f, "RSA-{bits}"),
            Self::P256 => f.write_str("ECDSA P-256"),
        }
    }
}

/// A public key of a card (or of the CA).
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA public key (2048, 3072 or 4096-bit modulus).
    Rsa(rsa::PublicKey),
    /// P-256 public key.
    P256(p256::PublicKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({}, sha256:{})",
            self.algorithm(),
            crate::util::hex(&self.fingerprint()[..8])
        )
    }
}

impl PublicKey {
    /// Wrap an RSA public key, checking the modulus size policy.
    pub fn from_rsa(key: rsa::PublicKey) -> Result<Self, KeyError> {
        check_rsa_size(key.n().bit_width() as usize)?;
        Ok(Self::Rsa(key))
    }

    /// Build an RSA key from big-endian modulus and exponent bytes (leading zeros allowed).
    pub fn from_rsa_components(modulus: &[u8], exponent: &[u8]) -> Result<Self, KeyError> {
        let modulus = strip_leading_zeros(modulus);
        let exponent = strip_leading_zeros(exponent);
        if modulus.is_empty() {
            return Err(KeyError::RsaModulusSize(0));
        }
        // Bits of the modulus as written: the top byte must not be zero after stripping.
        let bits = modulus.len() * 8 - modulus.first().map_or(0, |b| b.leading_zeros() as usize);
        check_rsa_size(bits)?;
        if exponent.is_empty() || exponent.len() > 8 {
            return Err(KeyError::InvalidRsaKey(
                "public exponent out of range".into(),
            ));
        }
        let n = rsa::BoxedUint::from_be_slice_vartime(modulus);
        let e = rsa::BoxedUint::from_be_slice_vartime(exponent);
        let key = rsa::PublicKey::new(n, e).map_err(|e| KeyError::InvalidRsaKey(e.to_string()))?;
        Ok(Self::Rsa(key))
    }

    /// Build a P-256 key from an uncompressed SEC1 point `04 || X || Y` (65 bytes).
    pub fn from_p256_uncompressed(point: &[u8]) -> Result<Self, KeyError> {
        if point.len() != 65 || point[0] != 0x04 {
            return Err(KeyError::InvalidEcPoint);
        }
        p256::PublicKey::from_sec1_bytes(point)
            .map(Self::P256)
            .map_err(|_| KeyError::InvalidEcPoint)
    }

    /// Read the `7F49` public key template of a PIV GENERATE ASYMMETRIC KEY PAIR response
    /// (see [`crate::piv::parse_public_key_template`]).
    pub fn from_piv_template(
        data: &[u8],
        algorithm: crate::piv::PivAlgorithm,
    ) -> Result<Self, KeyError> {
        crate::piv::parse_public_key_template(data, algorithm)
    }

    /// Read a DER `SubjectPublicKeyInfo` (RFC 5280 §4.1.2.7): `rsaEncryption` (RFC 3279
    /// §2.3.1, parameters NULL) or `id-ecPublicKey` with the `prime256v1` named curve
    /// (RFC 5480 §2.1.1). Trailing bytes are rejected.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let spki =
            SubjectPublicKeyInfoRef::from_der(der).map_err(|e| KeyError::Der(e.to_string()))?;
        let alg = &spki.algorithm;
        if alg.oid == oid::RSA_ENCRYPTION {
            match alg.parameters {
                Some(p) if p == AnyRef::NULL => {}
                _ => {
                    return Err(KeyError::Der(
                        "rsaEncryption parameters must be NULL".into(),
                    ))
                }
            }
            let key = rsa::PublicKey::from_public_key_der(der)
                .map_err(|e| KeyError::InvalidRsaKey(e.to_string()))?;
            Self::from_rsa(key)
        } else if alg.oid == oid::ID_EC_PUBLIC_KEY {
            let curve = alg
                .parameters
                .ok_or_else(|| KeyError::Der("id-ecPublicKey without named curve".into()))?
                .decode_as::<ObjectIdentifier>()
                .map_err(|e| KeyError::Der(e.to_string()))?;
            if curve != oid::SECP256R1 {
                return Err(KeyError::UnsupportedCurve(curve.to_string()));
            }
            let point = spki
                .subject_public_key
                .as_bytes()
                .ok_or(KeyError::InvalidEcPoint)?;
            Self::from_p256_uncompressed(point)
        } else {
            Err(KeyError::UnsupportedAlgorithm(alg.oid.to_string()))
        }
    }

    /// The DER `SubjectPublicKeyInfo` of this key.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let doc = match self {
            Self::Rsa(k) => k.to_public_key_der(),
            Self::P256(k) => p256::pkcs8::EncodePublicKey::to_public_key_der(k),
        };
        // Encoding a validated in-memory key cannot fail; an empty result would be
        // rejected by every consumer.
        doc.map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    /// Algorithm and size.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            Self::Rsa(k) => KeyAlgorithm::Rsa {
                bits: k.n().bit_width() as usize,
            },
            Self::P256(_) => KeyAlgorithm::P256,
        }
    }

    /// SHA-256 of the DER `SubjectPublicKeyInfo` (a stable key fingerprint).
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.to_spki_der()).into()
    }

    /// Verify `signature` over a SHA-256 `digest` that the signer computed of its message
    /// (what a card signs: see the module documentation for the formats).
    pub fn verify_digest(&self, digest: &[u8; 32], signature: &[u8]) -> Result<(), SignatureError> {
        match self {
            Self::Rsa(k) => {
                if signature.len() != k.size() {
                    return Err(SignatureError::Malformed);
                }
                k.pkcs1v15_verify_prehash::<Sha256>(digest, signature)
                    .map_err(|_| SignatureError::Invalid)
            }
            Self::P256(k) => {
                let sig = p256::ecdsa::Signature::from_der(signature)
                    .map_err(|_| SignatureError::Malformed)?;
                p256::ecdsa::VerifyingKey::from(k)
                    .verify_prehash(digest, &sig)
                    .map_err(|_| SignatureError::Invalid)
            }
        }
    }

    /// Verify `signature` over SHA-256(`message`): the same check as [`PublicKey::verify_digest`]
    /// of the message's digest. P-256 goes through `ring` (BoringSSL's P-256 code), several
    /// times faster here than RustCrypto `p256`, which still checks digests given alone
    /// (`ring` only verifies messages); figures in `benches/primitives.rs`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        match self {
            Self::P256(k) => {
                // The same DER rule as `verify_digest`, so that both classify alike.
                p256::ecdsa::Signature::from_der(signature)
                    .map_err(|_| SignatureError::Malformed)?;
                let point = p256::elliptic_curve::sec1::ToSec1Point::to_sec1_point(k, false);
                ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P256_SHA256_ASN1,
                    point.as_bytes(),
                )
                .verify(message, signature)
                .map_err(|_| SignatureError::Invalid)
            }
            Self::Rsa(_) => self.verify_digest(&sha256(message), signature),
        }
    }

    /// The X.509 `AlgorithmIdentifier` of signatures made with this key and SHA-256:
    /// `sha256WithRSAEncryption` with NULL parameters (RFC 4055 §5) or
    /// `ecdsa-with-SHA256` with absent parameters (RFC 5758 §3.2).
    pub(crate) fn signature_algorithm_der(&self) -> &'static [u8] {
        match self {
            Self::Rsa(_) => oid::SHA256_WITH_RSA_DER,
            Self::P256(_) => oid::ECDSA_WITH_SHA256_DER,
        }
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn check_rsa_size(bits: usize) -> Result<(), KeyError> {
    if matches!(bits, 2048 | 3072 | 4096) {
        Ok(())
    } else {
        Err(KeyError::RsaModulusSize(bits))
    }
}

/// Re-encode an `AlgorithmIdentifier` DER for comparisons.
pub(crate) fn algorithm_der(alg: &spki::AlgorithmIdentifierRef<'_>) -> Vec<u8> {
    alg.to_der().unwrap_or_default()
}
