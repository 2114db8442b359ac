//! Asymmetric keys held in the PIV key slots (SP 800-73-4 Part 1 §3.1, Part 2 §3.2.4, §3.3.2).
//!
//! RSA keys perform the raw private-key operation on a block the host has
//! already padded, as PIV specifies; ECC keys sign a hash with ECDSA (DER
//! `SEQUENCE { r, s }` as returned by PIV cards) or run ECC CDH.

use apdu::tlv::{self, Tag, TlvRef};

use crate::{Error, Secret};
use core::fmt;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::elliptic_curve::Generate;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{pkcs8::DecodePrivateKey, pkcs8::EncodePrivateKey, BoxedUint};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use signature::hazmat::PrehashSigner;
use zeroize::Zeroizing;

/// Asymmetric algorithm identifiers of SP 800-78-4 Table 6-2 (P1 of GENERAL AUTHENTICATE,
/// tag `80` of GENERATE ASYMMETRIC KEY PAIR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA with a 1024-bit modulus (`06`).
    Rsa1024,
    /// RSA with a 2048-bit modulus (`07`).
    Rsa2048,
    /// RSA with a 3072-bit modulus (`05`).
    Rsa3072,
    /// ECC on curve P-256 (`11`).
    EccP256,
    /// ECC on curve P-384 (`14`).
    EccP384,
}

impl KeyAlgorithm {
    /// The algorithm identifier.
    pub const fn id(self) -> u8 {
        match self {
            Self::Rsa1024 => 0x06,
            Self::Rsa2048 => 0x07,
            Self::Rsa3072 => 0x05,
            Self::EccP256 => 0x11,
            Self::EccP384 => 0x14,
        }
    }
    /// Reads an algorithm identifier.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            0x06 => Some(Self::Rsa1024),
            0x07 => Some(Self::Rsa2048),
            0x05 => Some(Self::Rsa3072),
            0x11 => Some(Self::EccP256),
            0x14 => Some(Self::EccP384),
            _ => None,
        }
    }
    /// RSA modulus size in bits, if RSA.
    pub const fn rsa_bits(self) -> Option<usize> {
        match self {
            Self::Rsa1024 => Some(1024),
            Self::Rsa2048 => Some(2048),
            Self::Rsa3072 => Some(3072),
            _ => None,
        }
    }
    /// Field size in bytes of an ECC curve, if ECC.
    pub const fn ecc_field_len(self) -> Option<usize> {
        match self {
            Self::EccP256 => Some(32),
            Self::EccP384 => Some(48),
            _ => None,
        }
    }
}

/// When a slot's private key requires the PIN (YubiKey tag `AA`; defaults follow
/// SP 800-73-4 Part 1 Table 4b: 9C "PIN Always", 9E none, others "PIN").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinPolicy {
    /// No PIN needed (`01`).
    Never,
    /// PIN verified once in this session (`02`).
    Once,
    /// PIN verified immediately before each use (`03`).
    Always,
}

impl PinPolicy {
    /// Wire value.
    pub const fn id(self) -> u8 {
        match self {
            Self::Never => 1,
            Self::Once => 2,
            Self::Always => 3,
        }
    }
    /// Reads a wire value; `00` (default) is `None`.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::Never),
            2 => Some(Self::Once),
            3 => Some(Self::Always),
            _ => None,
        }
    }
    /// The PIV default for a key reference.
    pub const fn default_for(slot: u8) -> Self {
        match slot {
            0x9C => Self::Always,
            0x9E => Self::Never,
            _ => Self::Once,
        }
    }
}

/// Touch policy (YubiKey tag `AB`). A virtual card has no button: it is recorded
/// and reported by GET METADATA, never enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TouchPolicy {
    /// `01`.
    Never,
    /// `02`.
    Always,
    /// `03`.
    Cached,
}

impl TouchPolicy {
    /// Wire value.
    pub const fn id(self) -> u8 {
        match self {
            Self::Never => 1,
            Self::Always => 2,
            Self::Cached => 3,
        }
    }
    /// Reads a wire value; `00` (default) is `None`.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::Never),
            2 => Some(Self::Always),
            3 => Some(Self::Cached),
            _ => None,
        }
    }
}

/// Where a slot key came from (GET METADATA tag `03`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyOrigin {
    /// Generated on the card (`01`).
    Generated,
    /// Imported with IMPORT KEY (`02`).
    Imported,
}

/// Why a key operation or import was refused; mapped to status words by the applet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyOpError {
    /// Input of the wrong size or not a valid representative/point (`6A80`).
    BadInput,
    /// The key could not be generated or used (`6F00`).
    Internal,
}

pub(crate) enum PrivateKey {
    Rsa(Box<rsa::PrivateKey>),
    P256(p256::SecretKey),
    P384(p384::SecretKey),
}

/// A private key in a slot with its policies.
pub(crate) struct SlotKey {
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) pin_policy: PinPolicy,
    pub(crate) touch_policy: TouchPolicy,
    pub(crate) origin: KeyOrigin,
    pub(crate) key: PrivateKey,
}

impl fmt::Debug for SlotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotKey")
            .field("algorithm", &self.algorithm)
            .field("pin_policy", &self.pin_policy)
            .field("touch_policy", &self.touch_policy)
            .field("origin", &self.origin)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl SlotKey {
    /// Generates a key pair on the card (SP 800-73-4 Part 2 §3.3.2).
    pub(crate) fn generate(
        algorithm: KeyAlgorithm,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<Self, KeyOpError> {
        let mut rng = rand::rng();
        let key = match algorithm {
            KeyAlgorithm::EccP256 => PrivateKey::P256(p256::SecretKey::generate_from_rng(&mut rng)),
            KeyAlgorithm::EccP384 => PrivateKey::P384(p384::SecretKey::generate_from_rng(&mut rng)),
            rsa_alg => {
                let bits = rsa_alg.rsa_bits().ok_or(KeyOpError::Internal)?;
                let k = rsa::PrivateKey::new(&mut rng, bits).map_err(|_| KeyOpError::Internal)?;
                PrivateKey::Rsa(Box::new(k))
            }
        };
        Ok(Self {
            algorithm,
            pin_policy,
            touch_policy,
            origin: KeyOrigin::Generated,
            key,
        })
    }

    /// Builds a key from the YubiKey IMPORT KEY data objects: `01`..`05` = p, q,
    /// dP, dQ, qInv for RSA (public exponent 65537); `06` = private scalar for ECC.
    pub(crate) fn import(
        algorithm: KeyAlgorithm,
        objects: &[TlvRef<'_>],
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<Self, KeyOpError> {
        let key = if let Some(bits) = algorithm.rsa_bits() {
            let part =
                |tag: u32| tlv::find_value(objects, Tag::new(tag)).ok_or(KeyOpError::BadInput);
            let half = bits / 16;
            let (p, q) = (part(1)?, part(2)?);
            if p.len() > half || q.len() > half {
                return Err(KeyOpError::BadInput);
            }
            let int = |b: &[u8]| BoxedUint::from_be_slice_vartime(b);
            let key = rsa::PrivateKey::from_p_q(int(p), int(q), BoxedUint::from(65537u64))
                .map_err(|_| KeyOpError::BadInput)?;
            if key.n().bit_width() as usize != bits {
                return Err(KeyOpError::BadInput);
            }
            // The CRT values the host sent must be the ones p and q imply.
            let same = |tag: u32, ours: Option<Vec<u8>>| -> Result<(), KeyOpError> {
                let theirs = strip_zeros(part(tag)?);
                match ours {
                    Some(v) if strip_zeros(&v) == theirs => Ok(()),
                    _ => Err(KeyOpError::BadInput),
                }
            };
            same(3, key.dp().map(|v| v.to_be_bytes().to_vec()))?;
            same(4, key.dq().map(|v| v.to_be_bytes().to_vec()))?;
            same(5, key.crt_coefficient().map(|v| v.to_be_bytes().to_vec()))?;
            PrivateKey::Rsa(Box::new(key))
        } else {
            let len = algorithm.ecc_field_len().ok_or(KeyOpError::BadInput)?;
            let d = tlv::find_value(objects, Tag::new(6)).ok_or(KeyOpError::BadInput)?;
            if d.len() > len {
                return Err(KeyOpError::BadInput);
            }
            let mut padded = Zeroizing::new(vec![0u8; len]);
            padded[len - d.len()..].copy_from_slice(d);
            match algorithm {
                KeyAlgorithm::EccP256 => PrivateKey::P256(
                    p256::SecretKey::from_slice(&padded).map_err(|_| KeyOpError::BadInput)?,
                ),
                _ => PrivateKey::P384(
                    p384::SecretKey::from_slice(&padded).map_err(|_| KeyOpError::BadInput)?,
                ),
            }
        };
        Ok(Self {
            algorithm,
            pin_policy,
            touch_policy,
            origin: KeyOrigin::Imported,
            key,
        })
    }

    /// The public key as the data objects of SP 800-73-4 Part 2 Table 11:
    /// `81` modulus and `82` exponent for RSA, `86` uncompressed point for ECC.
    pub(crate) fn public_key_objects(&self) -> Vec<u8> {
        match &self.key {
            PrivateKey::Rsa(k) => {
                let n = left_pad(&k.n_bytes(), k.size());
                let mut out = tlv::encode(Tag::new(0x81), &n);
                out.extend(tlv::encode(Tag::new(0x82), &k.e_bytes()));
                out
            }
            PrivateKey::P256(k) => tlv::encode(
                Tag::new(0x86),
                k.public_key().to_sec1_point(false).as_bytes(),
            ),
            PrivateKey::P384(k) => tlv::encode(
                Tag::new(0x86),
                k.public_key().to_sec1_point(false).as_bytes(),
            ),
        }
    }

    /// The private-key operation of GENERAL AUTHENTICATE with tag `81`:
    /// raw RSA (RSASP1/RSADP) on a modulus-sized block, or ECDSA over a hash.
    pub(crate) fn private_operation(&self, input: &[u8]) -> Result<Vec<u8>, KeyOpError> {
        match &self.key {
            PrivateKey::Rsa(k) => {
                let size = k.size();
                if input.len() != size {
                    return Err(KeyOpError::BadInput);
                }
                let c = BoxedUint::from_be_slice(input, k.n_bits_precision())
                    .map_err(|_| KeyOpError::BadInput)?;
                if c.ge(k.n().as_ref()) {
                    return Err(KeyOpError::BadInput);
                }
                let mut rng = rand::rng();
                let m = rsa::hazmat::rsa_decrypt_and_check(k.as_ref(), Some(&mut rng), &c)
                    .map_err(|_| KeyOpError::Internal)?;
                Ok(left_pad(&m.to_be_bytes(), size))
            }
            PrivateKey::P256(k) => {
                let z = field_hash(input, 32);
                let sk = p256::ecdsa::SigningKey::from(k);
                let sig: p256::ecdsa::Signature =
                    sk.sign_prehash(&z).map_err(|_| KeyOpError::Internal)?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            PrivateKey::P384(k) => {
                let z = field_hash(input, 48);
                let sk = p384::ecdsa::SigningKey::from(k);
                let sig: p384::ecdsa::Signature =
                    sk.sign_prehash(&z).map_err(|_| KeyOpError::Internal)?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
        }
    }

    /// ECC CDH with tag `85` (SP 800-73-4 Part 2 §3.2.4, SP 800-56A §5.7.1.2):
    /// the x-coordinate of d·Q for an uncompressed peer point Q.
    pub(crate) fn key_agreement(&self, point: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyOpError> {
        let expected = self
            .algorithm
            .ecc_field_len()
            .map(|l| 1 + 2 * l)
            .ok_or(KeyOpError::BadInput)?;
        if point.len() != expected || point.first() != Some(&0x04) {
            return Err(KeyOpError::BadInput);
        }
        match &self.key {
            PrivateKey::P256(k) => {
                let peer =
                    p256::PublicKey::from_sec1_bytes(point).map_err(|_| KeyOpError::BadInput)?;
                let shared = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            PrivateKey::P384(k) => {
                let peer =
                    p384::PublicKey::from_sec1_bytes(point).map_err(|_| KeyOpError::BadInput)?;
                let shared = p384::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            PrivateKey::Rsa(_) => Err(KeyOpError::BadInput),
        }
    }

    fn to_pkcs8(&self) -> Result<Secret, Error> {
        let doc = match &self.key {
            PrivateKey::Rsa(k) => k.to_pkcs8_der(),
            PrivateKey::P256(k) => k.to_pkcs8_der(),
            PrivateKey::P384(k) => k.to_pkcs8_der(),
        }
        .map_err(|e| Error::Key(e.to_string()))?;
        Ok(Secret::new(doc.as_bytes().to_vec()))
    }

    fn from_stored(s: &StoredKey) -> Result<Self, Error> {
        let algorithm = KeyAlgorithm::from_id(s.algorithm)
            .ok_or_else(|| Error::Key(format!("unknown algorithm {:#04x}", s.algorithm)))?;
        let der = s.pkcs8.expose();
        let bad = |e: String| Error::Key(e);
        let key = match algorithm {
            KeyAlgorithm::EccP256 => PrivateKey::P256(
                p256::SecretKey::from_pkcs8_der(der).map_err(|e| bad(e.to_string()))?,
            ),
            KeyAlgorithm::EccP384 => PrivateKey::P384(
                p384::SecretKey::from_pkcs8_der(der).map_err(|e| bad(e.to_string()))?,
            ),
            rsa_alg => {
                let k = rsa::PrivateKey::from_pkcs8_der(der).map_err(|e| bad(e.to_string()))?;
                if Some(k.n().bit_width() as usize) != rsa_alg.rsa_bits() {
                    return Err(bad("RSA modulus size does not match the algorithm".into()));
                }
                PrivateKey::Rsa(Box::new(k))
            }
        };
        let policy = |v: u8| PinPolicy::from_id(v).ok_or_else(|| bad(format!("PIN policy {v}")));
        Ok(Self {
            algorithm,
            pin_policy: policy(s.pin_policy)?,
            touch_policy: TouchPolicy::from_id(s.touch_policy)
                .ok_or_else(|| bad(format!("touch policy {}", s.touch_policy)))?,
            origin: if s.origin == 2 {
                KeyOrigin::Imported
            } else {
                KeyOrigin::Generated
            },
            key,
        })
    }
}

/// How a slot key is persisted: policies and a PKCS#8 DER private key as hex.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    algorithm: u8,
    pin_policy: u8,
    touch_policy: u8,
    origin: u8,
    pkcs8: Secret,
}

impl Serialize for SlotKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let stored = StoredKey {
            algorithm: self.algorithm.id(),
            pin_policy: self.pin_policy.id(),
            touch_policy: self.touch_policy.id(),
            origin: match self.origin {
                KeyOrigin::Generated => 1,
                KeyOrigin::Imported => 2,
            },
            pkcs8: self.to_pkcs8().map_err(serde::ser::Error::custom)?,
        };
        stored.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SlotKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = StoredKey::deserialize(d)?;
        SlotKey::from_stored(&stored).map_err(serde::de::Error::custom)
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// Big-endian integer bytes resized to exactly `len` (dropping leading zeros or padding them).
fn left_pad(b: &[u8], len: usize) -> Vec<u8> {
    let b = strip_zeros(b);
    if b.len() >= len {
        return b[b.len() - len..].to_vec();
    }
    let mut out = vec![0u8; len - b.len()];
    out.extend_from_slice(b);
    out
}

/// FIPS 186-4 §6.4: use the leftmost field-size bytes of a longer hash; left-pad a
/// shorter one (the same integer).
fn field_hash(input: &[u8], len: usize) -> Vec<u8> {
    if input.len() >= len {
        input[..len].to_vec()
    } else {
        let mut out = vec![0u8; len - input.len()];
        out.extend_from_slice(input);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_import(p: &[u8], q: &[u8]) -> Result<SlotKey, KeyOpError> {
        let mut data = tlv::encode(Tag::new(1), p);
        data.extend(tlv::encode(Tag::new(2), q));
        for tag in 3..=5 {
            data.extend(tlv::encode(Tag::new(tag), &[0x01]));
        }
        let items = tlv::parse_all_ref(&data).unwrap();
        SlotKey::import(
            KeyAlgorithm::Rsa1024,
            &items,
            PinPolicy::Once,
            TouchPolicy::Never,
        )
    }

    #[test]
    fn degenerate_rsa_imports_are_refused_without_panicking() {
        let big = [0xFFu8; 64];
        let mut odd = [0xFDu8; 64];
        odd[0] = 0xC1;
        for (p, q) in [
            (&[][..], &[3u8][..]),
            (&big[..], &big[..]),
            (&[1u8][..], &big[..]),
            (&[0u8; 64][..], &big[..]),
            (&[2u8][..], &odd[..]),
            (&big[..], &odd[..]),
            (&[0xFF; 65][..], &odd[..]),
        ] {
            assert!(rsa_import(p, q).is_err());
        }
    }

    #[test]
    fn ecc_imports_check_the_scalar() {
        let items = |d: &[u8]| tlv::encode(Tag::new(6), d);
        for d in [&[][..], &[0u8; 32][..], &[0xFF; 32][..], &[1u8; 33][..]] {
            let data = items(d);
            let parsed = tlv::parse_all_ref(&data).unwrap();
            assert!(SlotKey::import(
                KeyAlgorithm::EccP256,
                &parsed,
                PinPolicy::Once,
                TouchPolicy::Never
            )
            .is_err());
        }
        let data = items(&[7u8]);
        let parsed = tlv::parse_all_ref(&data).unwrap();
        let k = SlotKey::import(
            KeyAlgorithm::EccP384,
            &parsed,
            PinPolicy::Once,
            TouchPolicy::Never,
        )
        .unwrap();
        assert!(format!("{k:?}").contains("REDACTED"));
        assert_eq!(k.public_key_objects()[..3], [0x86, 0x61, 0x04]);
        assert_eq!(k.key_agreement(&[0x04; 97]), Err(KeyOpError::BadInput));
        assert!(
            k.private_operation(&[0u8; 100]).is_ok(),
            "long hashes are truncated"
        );
    }

    #[test]
    fn field_hash_truncates_and_pads() {
        assert_eq!(field_hash(&[1, 2, 3], 4), vec![0, 1, 2, 3]);
        assert_eq!(field_hash(&[1, 2, 3, 4, 5], 4), vec![1, 2, 3, 4]);
        assert_eq!(left_pad(&[0, 0, 9], 2), vec![0, 9]);
        assert_eq!(left_pad(&[9], 3), vec![0, 0, 9]);
    }
}
