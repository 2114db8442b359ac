//! SSD key sets in a key store, and their transport between two key stores.
//!
//! [`KeySets`] is the interface the flows need from a key store: generate a key set inside
//! it, use it for one secure channel, delete it, wrap it for another key store's transport
//! public key, and import such a wrapped key set. The `kms` crate's key-set API (branch
//! kms-transport) implements it for the software key store and PKCS#11 tokens; until it
//! lands, [`MemoryKeySets`] implements it in memory (tests, development).
//!
//! # The transport format (what leaves a key store)
//!
//! ECDH key agreement (ECKA-EG style, one-pass, NIST SP 800-56A C(1e,1s)) between an
//! ephemeral P-256 key made for this one transfer and the recipient's registered P-256
//! transport key; HKDF-SHA-256 (RFC 5869) of the shared secret with the info string
//! `cardwright ssd key set v1` derives a 128-bit KEK (the ephemeral key makes it unique
//! to the transfer); AES key wrap (RFC 3394) of
//! ENC ‖ MAC ‖ DEK under the KEK. The wrapped set is `04 X Y` (65 bytes, the ephemeral
//! public point) ‖ key kind (`80` 3DES, `88` AES) ‖ key length ‖ wrapped keys. Only the
//! holder of the transport private key (inside the recipient's key store) can unwrap it;
//! the ephemeral private key and the KEK are zeroized as soon as the wrap is done. Chosen
//! over RSA-OAEP (no RSA key to manage, the card world is P-256 already) and TR-34 (a
//! whole PKI for one key block).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use aes_kw::KwAes128;
use hmac::KeyInit;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use scp::{Key, KeyKind, StaticKeys};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Why a key-set operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    /// No key set (or transport key) with this label.
    #[error("no key set '{0}' in the key store")]
    Unknown(String),
    /// A key set with this label exists already.
    #[error("a key set '{0}' exists already")]
    Exists(String),
    /// A key length the card protocol does not use.
    #[error("a {kind:?} key of {len} bytes is not supported")]
    BadLength {
        /// Cipher.
        kind: KeyKind,
        /// Bytes asked for.
        len: usize,
    },
    /// A transport key that is not a P-256 SubjectPublicKeyInfo.
    #[error("the transport key is not a P-256 public key: {0}")]
    BadTransportKey(String),
    /// A wrapped key set that does not unwrap (wrong recipient, altered, truncated).
    #[error(
        "the wrapped key set does not unwrap with transport key '{0}' (wrong recipient or altered)"
    )]
    Unwrap(String),
    /// The key store failed.
    #[error("key store: {0}")]
    Backend(String),
}

/// A P-256 key-agreement public key to wrap key sets for (SubjectPublicKeyInfo, DER).
#[derive(Clone, PartialEq, Eq)]
pub struct TransportPublicKey {
    point: Vec<u8>,
}

impl fmt::Debug for TransportPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransportPublicKey({})", apdu::hex(&self.point))
    }
}

impl TransportPublicKey {
    /// From a SubjectPublicKeyInfo in DER or PEM.
    pub fn from_spki(der_or_pem: &[u8]) -> Result<TransportPublicKey, KeySetError> {
        let key = match std::str::from_utf8(der_or_pem) {
            Ok(text) if text.contains("-----BEGIN") => p256::PublicKey::from_public_key_pem(text),
            _ => p256::PublicKey::from_public_key_der(der_or_pem),
        }
        .map_err(|e| KeySetError::BadTransportKey(e.to_string()))?;
        Ok(TransportPublicKey {
            point: key.to_sec1_point(false).as_bytes().to_vec(),
        })
    }
    /// The SubjectPublicKeyInfo (DER).
    pub fn to_spki(&self) -> Result<Vec<u8>, KeySetError> {
        let key = p256::PublicKey::from_sec1_bytes(&self.point)
            .map_err(|e| KeySetError::BadTransportKey(e.to_string()))?;
        Ok(key
            .to_public_key_der()
            .map_err(|e| KeySetError::BadTransportKey(e.to_string()))?
            .as_bytes()
            .to_vec())
    }
    /// The uncompressed point `04 X Y`.
    pub fn point(&self) -> &[u8] {
        &self.point
    }
}

/// A key set wrapped for one recipient's transport key (see the module documentation for
/// the format). Holds no key in the clear.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKeySet {
    bytes: Vec<u8>,
}

impl fmt::Debug for WrappedKeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKeySet({} bytes)", self.bytes.len())
    }
}

impl WrappedKeySet {
    /// From its encoding (checked for shape; whether it unwraps is up to the recipient).
    pub fn from_bytes(bytes: &[u8]) -> Result<WrappedKeySet, KeySetError> {
        if bytes.len() < 65 + 2 + 24 || bytes[0] != 0x04 {
            return Err(KeySetError::Unwrap("(malformed)".into()));
        }
        Ok(WrappedKeySet {
            bytes: bytes.to_vec(),
        })
    }
    /// Its encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// What a key store says about a key set (never the keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetInfo {
    /// Label.
    pub label: String,
    /// Cipher.
    pub kind: KeyKind,
    /// Key length in bytes.
    pub len: usize,
    /// Key check values of ENC, MAC, DEK (3 bytes each).
    pub kcvs: [[u8; 3]; 3],
}

/// The key-set operations of a key store (see the module documentation).
pub trait KeySets: Send + Sync + fmt::Debug {
    /// Generates a key set (ENC, MAC, DEK) inside the key store.
    fn generate_key_set(
        &self,
        label: &str,
        kind: KeyKind,
        len: usize,
    ) -> Result<KeySetInfo, KeySetError>;
    /// The key set, for one secure channel (zeroized on drop).
    fn key_set(&self, label: &str) -> Result<StaticKeys, KeySetError>;
    /// What the store says about a key set, `None` if absent.
    fn key_set_info(&self, label: &str) -> Result<Option<KeySetInfo>, KeySetError>;
    /// Deletes a key set (absent: nothing to do).
    fn delete_key_set(&self, label: &str) -> Result<(), KeySetError>;
    /// The key set wrapped for `to`.
    fn wrap_key_set_for(
        &self,
        label: &str,
        to: &TransportPublicKey,
    ) -> Result<WrappedKeySet, KeySetError>;
    /// Unwraps a key set with the transport private key `transport_key_label` and stores
    /// it as `label` (the same wrapped set imported twice gives the same key set).
    fn import_wrapped_key_set(
        &self,
        label: &str,
        wrapped: &WrappedKeySet,
        transport_key_label: &str,
    ) -> Result<KeySetInfo, KeySetError>;
    /// Generates (or finds) the P-256 transport key pair `label`; returns its public half.
    fn transport_key(&self, label: &str) -> Result<TransportPublicKey, KeySetError>;
}

const WRAP_INFO: &[u8] = b"cardwright ssd key set v1";

fn kek(shared: &[u8]) -> Result<Zeroizing<[u8; 16]>, KeySetError> {
    let info = WRAP_INFO;
    let mut okm = Zeroizing::new([0u8; 16]);
    hkdf::Hkdf::<Sha256>::new(None, shared)
        .expand(info, okm.as_mut())
        .map_err(|e| KeySetError::Backend(format!("HKDF: {e}")))?;
    Ok(okm)
}

fn kind_byte(kind: KeyKind) -> u8 {
    kind.key_type()
}

fn kind_of(b: u8) -> Option<KeyKind> {
    match b {
        0x80 => Some(KeyKind::Des3),
        0x88 => Some(KeyKind::Aes),
        _ => None,
    }
}

fn check_len(kind: KeyKind, len: usize) -> Result<(), KeySetError> {
    let ok = match kind {
        KeyKind::Aes => matches!(len, 16 | 24 | 32),
        KeyKind::Des3 => matches!(len, 16 | 24),
    };
    if ok {
        Ok(())
    } else {
        Err(KeySetError::BadLength { kind, len })
    }
}

struct Stored {
    kind: KeyKind,
    /// ENC ‖ MAC ‖ DEK.
    bytes: Zeroizing<Vec<u8>>,
}

impl Stored {
    fn keys(&self) -> Result<StaticKeys, KeySetError> {
        let n = self.bytes.len() / 3;
        let k = |i: usize| {
            Key::new(self.kind, &self.bytes[i * n..(i + 1) * n])
                .map_err(|e| KeySetError::Backend(e.to_string()))
        };
        Ok(StaticKeys {
            enc: k(0)?,
            mac: k(1)?,
            dek: k(2)?,
        })
    }
    fn info(&self, label: &str) -> Result<KeySetInfo, KeySetError> {
        let keys = self.keys()?;
        Ok(KeySetInfo {
            label: label.into(),
            kind: self.kind,
            len: self.bytes.len() / 3,
            kcvs: [keys.enc.kcv(), keys.mac.kcv(), keys.dek.kcv()],
        })
    }
}

/// Key sets and transport keys in memory: for tests and development (the keys die with
/// the process). Production uses the `kms` key stores.
#[derive(Default)]
pub struct MemoryKeySets {
    sets: Mutex<HashMap<String, Stored>>,
    transport: Mutex<HashMap<String, p256::SecretKey>>,
}

impl fmt::Debug for MemoryKeySets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<String> = self
            .sets
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("MemoryKeySets")
            .field("key_sets", &labels)
            .finish()
    }
}

impl MemoryKeySets {
    /// An empty store.
    pub fn new() -> MemoryKeySets {
        MemoryKeySets::default()
    }

    /// Labels of the key sets held.
    pub fn labels(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .sets
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn put(&self, label: &str, stored: Stored) -> Result<KeySetInfo, KeySetError> {
        let info = stored.info(label)?;
        let mut sets = self
            .sets
            .lock()
            .map_err(|_| KeySetError::Backend("poisoned".into()))?;
        if let Some(old) = sets.get(label) {
            if old.bytes == stored.bytes {
                return Ok(info);
            }
            return Err(KeySetError::Exists(label.into()));
        }
        sets.insert(label.into(), stored);
        Ok(info)
    }
}

fn random(n: usize) -> Result<Zeroizing<Vec<u8>>, KeySetError> {
    let mut b = Zeroizing::new(vec![0u8; n]);
    getrandom::fill(&mut b).map_err(|e| KeySetError::Backend(format!("random: {e}")))?;
    Ok(b)
}

impl KeySets for MemoryKeySets {
    fn generate_key_set(
        &self,
        label: &str,
        kind: KeyKind,
        len: usize,
    ) -> Result<KeySetInfo, KeySetError> {
        check_len(kind, len)?;
        if self
            .sets
            .lock()
            .map_err(|_| KeySetError::Backend("poisoned".into()))?
            .contains_key(label)
        {
            return Err(KeySetError::Exists(label.into()));
        }
        let bytes = random(3 * len)?;
        self.put(label, Stored { kind, bytes })
    }

    fn key_set(&self, label: &str) -> Result<StaticKeys, KeySetError> {
        let sets = self
            .sets
            .lock()
            .map_err(|_| KeySetError::Backend("poisoned".into()))?;
        sets.get(label)
            .ok_or_else(|| KeySetError::Unknown(label.into()))?
            .keys()
    }

    fn key_set_info(&self, label: &str) -> Result<Option<KeySetInfo>, KeySetError> {
        let sets = self
            .sets
            .lock()
            .map_err(|_| KeySetError::Backend("poisoned".into()))?;
        sets.get(label).map(|s| s.info(label)).transpose()
    }

    fn delete_key_set(&self, label: &str) -> Result<(), KeySetError> {
        self.sets
            .lock()
            .map_err(|_| KeySetError::Backend("poisoned".into()))?
            .remove(label);
        Ok(())
    }

    fn wrap_key_set_for(
        &self,
        label: &str,
        to: &TransportPublicKey,
    ) -> Result<WrappedKeySet, KeySetError> {
        let (kind, plain) = {
            let sets = self
                .sets
                .lock()
                .map_err(|_| KeySetError::Backend("poisoned".into()))?;
            let s = sets
                .get(label)
                .ok_or_else(|| KeySetError::Unknown(label.into()))?;
            (s.kind, s.bytes.clone())
        };
        let peer = p256::PublicKey::from_sec1_bytes(to.point())
            .map_err(|e| KeySetError::BadTransportKey(e.to_string()))?;
        let eph = p256::SecretKey::from_slice(&random_scalar()?)
            .map_err(|e| KeySetError::Backend(e.to_string()))?;
        let shared = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), peer.as_affine());
        let kek = kek(shared.raw_secret_bytes())?;
        let mut out = eph.public_key().to_sec1_point(false).as_bytes().to_vec();
        out.push(kind_byte(kind));
        out.push((plain.len() / 3) as u8);
        let mut wrapped = vec![0u8; plain.len() + 8];
        KwAes128::new_from_slice(kek.as_ref())
            .map_err(|e| KeySetError::Backend(e.to_string()))?
            .wrap_key(&plain, &mut wrapped)
            .map_err(|e| KeySetError::Backend(format!("AES key wrap: {e}")))?;
        out.extend_from_slice(&wrapped);
        Ok(WrappedKeySet { bytes: out })
    }

    fn import_wrapped_key_set(
        &self,
        label: &str,
        wrapped: &WrappedKeySet,
        transport_key_label: &str,
    ) -> Result<KeySetInfo, KeySetError> {
        let b = wrapped.as_bytes();
        let bad = || KeySetError::Unwrap(transport_key_label.into());
        let (point, rest) = b.split_at(65);
        let kind = kind_of(rest[0]).ok_or_else(bad)?;
        let len = rest[1] as usize;
        check_len(kind, len)?;
        let body = &rest[2..];
        if body.len() != 3 * len + 8 {
            return Err(bad());
        }
        let secret = self
            .transport
            .lock()
            .map_err(|_| KeySetError::Backend("poisoned".into()))?
            .get(transport_key_label)
            .cloned()
            .ok_or_else(|| KeySetError::Unknown(transport_key_label.into()))?;
        let eph = p256::PublicKey::from_sec1_bytes(point).map_err(|_| bad())?;
        let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), eph.as_affine());
        let kek = kek(shared.raw_secret_bytes())?;
        let mut plain = Zeroizing::new(vec![0u8; 3 * len]);
        KwAes128::new_from_slice(kek.as_ref())
            .map_err(|e| KeySetError::Backend(e.to_string()))?
            .unwrap_key(body, &mut plain)
            .map_err(|_| bad())?;
        self.put(label, Stored { kind, bytes: plain })
    }

    fn transport_key(&self, label: &str) -> Result<TransportPublicKey, KeySetError> {
        let mut t = self
            .transport
            .lock()
            .map_err(|_| KeySetError::Backend("poisoned".into()))?;
        if !t.contains_key(label) {
            let k = p256::SecretKey::from_slice(&random_scalar()?)
                .map_err(|e| KeySetError::Backend(e.to_string()))?;
            t.insert(label.into(), k);
        }
        let k = t
            .get(label)
            .ok_or_else(|| KeySetError::Unknown(label.into()))?;
        Ok(TransportPublicKey {
            point: k.public_key().to_sec1_point(false).as_bytes().to_vec(),
        })
    }
}

/// A random P-256 scalar (retried in the negligible case it is out of range).
fn random_scalar() -> Result<Zeroizing<Vec<u8>>, KeySetError> {
    for _ in 0..8 {
        let b = random(32)?;
        if p256::SecretKey::from_slice(&b).is_ok() {
            return Ok(b);
        }
    }
    Err(KeySetError::Backend("no valid P-256 scalar drawn".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_for_another_store_and_import() {
        let ci = MemoryKeySets::new();
        let ap = MemoryKeySets::new();
        let tk = ap.transport_key("transport").unwrap();
        let spki = tk.to_spki().unwrap();
        let tk = TransportPublicKey::from_spki(&spki).unwrap();
        let info = ci.generate_key_set("ssd1", KeyKind::Aes, 16).unwrap();
        let w = ci.wrap_key_set_for("ssd1", &tk).unwrap();
        let w = WrappedKeySet::from_bytes(w.as_bytes()).unwrap();
        let got = ap.import_wrapped_key_set("ssd1", &w, "transport").unwrap();
        assert_eq!(got.kcvs, info.kcvs);
        // Imported twice: the same key set.
        ap.import_wrapped_key_set("ssd1", &w, "transport").unwrap();
        // Another recipient's key does not unwrap it; an altered wrap does not either.
        let other = MemoryKeySets::new();
        other.transport_key("transport").unwrap();
        assert!(matches!(
            other.import_wrapped_key_set("ssd1", &w, "transport"),
            Err(KeySetError::Unwrap(_))
        ));
        let mut bytes = w.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = WrappedKeySet::from_bytes(&bytes).unwrap();
        assert!(ap
            .import_wrapped_key_set("ssd2", &altered, "transport")
            .is_err());
        // Each store names it as it likes.
        assert_eq!(
            ap.import_wrapped_key_set("ssd3", &w, "transport")
                .unwrap()
                .kcvs,
            info.kcvs
        );
        assert!(format!("{ci:?}").contains("ssd1"));
        assert!(!format!("{:?}", ci.key_set("ssd1").unwrap())
            .contains(&apdu::hex(ci.key_set("ssd1").unwrap().enc.expose())));
    }
}
