//! **Secret keys by label** ([`SecretKeyStore`]): AES keys that MAC and that go into a
//! card's application encrypted under the card channel's DEK, and HMAC-SHA256 keys that
//! never leave the store (the outlet's MAC key over its database, issue #11).
//!
//! ```
//! # fn main() -> Result<(), kms::Error> {
//! use kms::{MasterKey, SecretKeyKind, SecretKeyStore, SoftwareKeyStore};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = SoftwareKeyStore::create(dir.path().join("keys.json"), MasterKey::generate()?)?;
//! // RFC 4493 §4, example 2: AES-CMAC of a 16-byte message under an imported key.
//! let key = apdu::parse_hex("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
//! store.import("rfc4493", SecretKeyKind::Aes128, &key)?;
//! let m = apdu::parse_hex("6bc1bee22e409f96e93d7e117393172a").unwrap();
//! assert_eq!(apdu::hex(&store.cmac("rfc4493", &m)?), "070A16B46B4D4144F79BDD9DD04A287C");
//! // A registration key for a card: made in the store, sent to the card encrypted under
//! // the secure channel's DEK (here an SCP03 Key-DEK).
//! let info = store.generate("reg/card-1/slot-1", SecretKeyKind::Aes128)?;
//! let dek = kms::Key::aes(&[0x42; 16])?;
//! let encrypted = store.wrap_for_card("reg/card-1/slot-1", &dek)?;
//! assert_eq!(encrypted.len(), 16);
//! # let _ = info; Ok(()) }
//! ```
//!
//! # Kinds and check values
//!
//! | kind | length | operations | key check value |
//! |---|---|---|---|
//! | AES-128, AES-256 | 16, 32 bytes | [`SecretKeyStore::cmac`] (NIST SP 800-38B), [`SecretKeyStore::wrap_for_card`] | first 3 bytes of AES-ECB(key, `01`×16) (GP 2.3.1 §B.6, the card's own check) |
//! | HMAC-SHA256 | 32 bytes (imported: 32 to 256) | [`SecretKeyStore::hmac_sha256`] (RFC 2104, FIPS 180-4) | first 3 bytes of HMAC-SHA256(key, `01`×16) (ours: no standard KCV for HMAC keys; the same input as AES's) |
//!
//! # Sending a key to a card: [`SecretKeyStore::wrap_for_card`]
//!
//! The card's application receives the key in STORE DATA encrypted under the secure
//! channel's DEK (GP 2.3.1 §11.11.2.2, P1 b7-b6 = `11`), the cipher of PUT KEY's key
//! values ([`scp::encrypt_sensitive_data`]): a 3DES DEK (SCP02's session DEK) in 3DES-ECB,
//! an AES DEK (SCP03's Key-DEK, SCP11's S-DEK) in AES-CBC with a zero ICV; the key lengths
//! are whole blocks, so nothing is padded. The DEK comes from
//! [`scp::HostSession::data_encryption_key`].
//!
//! * Software store: in memory, in [`zeroize::Zeroizing`] buffers.
//! * PKCS#11: inside the token where it can: the DEK becomes a session object that can only
//!   wrap, and `C_WrapKey(CKM_AES_CBC, IV = 0)` (AES DEK) or `C_WrapKey(CKM_DES3_ECB)`
//!   (3DES DEK) encrypts the key object under it, so the key's value never reaches the host.
//!   SoftHSM2 2.6 wraps with `CKM_AES_CBC` (SCP03 and SCP11 stay in the token) but not with
//!   `CKM_DES3_ECB`; for SCP02 the store then takes the **host fallback** described in
//!   [`pkcs11`], which says exactly what is exposed.
//!
//! HMAC keys are never wrapped (they are not extractable in a token either).

pub mod pkcs11;
pub mod software;

pub use pkcs11::PKCS11_SECRET_KEY_LABEL_PREFIX;
pub(crate) use software::StoredSecretKey;

use crate::config::StoreConfig;
use crate::Error;
use scp::Key;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use zeroize::Zeroizing;

/// What a secret key is for (and so its length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretKeyKind {
    /// AES with a 128-bit key: CMAC, sent to cards.
    Aes128,
    /// AES with a 256-bit key: CMAC, sent to cards.
    Aes256,
    /// A 256-bit HMAC-SHA256 key; never leaves the store.
    HmacSha256,
}

impl SecretKeyKind {
    /// Every kind.
    pub const ALL: [SecretKeyKind; 3] = [
        SecretKeyKind::Aes128,
        SecretKeyKind::Aes256,
        SecretKeyKind::HmacSha256,
    ];

    /// The length in bytes of a key [`SecretKeyStore::generate`] makes (an imported HMAC
    /// key may have another length: [`HMAC_IMPORT_LEN`]).
    pub fn key_len(self) -> usize {
        match self {
            SecretKeyKind::Aes128 => 16,
            SecretKeyKind::Aes256 | SecretKeyKind::HmacSha256 => 32,
        }
    }

    /// `AES-128`, `AES-256`, `HMAC-SHA256`.
    pub fn name(self) -> &'static str {
        match self {
            SecretKeyKind::Aes128 => "AES-128",
            SecretKeyKind::Aes256 => "AES-256",
            SecretKeyKind::HmacSha256 => "HMAC-SHA256",
        }
    }

    /// Whether this is an AES key.
    pub fn is_aes(self) -> bool {
        matches!(self, SecretKeyKind::Aes128 | SecretKeyKind::Aes256)
    }

    /// One byte naming the kind (PKCS#11 `CKA_ID`).
    pub(crate) fn code(self) -> u8 {
        match self {
            SecretKeyKind::Aes128 => 1,
            SecretKeyKind::Aes256 => 2,
            SecretKeyKind::HmacSha256 => 3,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl fmt::Display for SecretKeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SecretKeyKind {
    type Err = Error;

    /// The [`SecretKeyKind::name`], in any case (`aes-128`, `HMAC-SHA256`, …).
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::Malformed {
                what: "secret key kind",
                detail: format!(
                    "{:?}: want AES-128, AES-256 or HMAC-SHA256",
                    s.chars().take(32).collect::<String>()
                ),
            })
    }
}

/// What a store tells about a secret key. Holds no key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKeyInfo {
    /// The label it is stored under.
    pub label: String,
    /// Its kind.
    pub kind: SecretKeyKind,
    /// Its key check value (see the module documentation).
    pub kcv: [u8; 3],
}

impl fmt::Display for SecretKeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} KCV {}",
            self.label,
            self.kind,
            apdu::hex(&self.kcv)
        )
    }
}

/// Secret key and data object labels: 1 to 64 characters from `A-Z a-z 0-9 - _ . /` (the
/// PKCS#11 labels `cw-sk:<label>` and `cw-do:<label>` stay unambiguous).
pub fn validate_object_label(what: &'static str, label: &str) -> Result<(), Error> {
    match crate::types::label_problem(label) {
        None => Ok(()),
        Some(reason) => Err(Error::BadObjectLabel {
            what,
            label: label.chars().take(80).collect(),
            reason,
        }),
    }
}

/// The key check value of a key of `kind` (see the module documentation), in software.
pub(crate) fn kcv_of(kind: SecretKeyKind, value: &[u8]) -> Result<[u8; 3], Error> {
    let block = if kind.is_aes() {
        Key::aes(value)?.kcv().to_vec()
    } else {
        hmac_sha256_in_software(value, &[1u8; 16])?.to_vec()
    };
    let mut kcv = [0u8; 3];
    kcv.copy_from_slice(&block[..3]);
    Ok(kcv)
}

/// HMAC-SHA256 with a key held in memory.
pub(crate) fn hmac_sha256_in_software(key: &[u8], data: &[u8]) -> Result<[u8; 32], Error> {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).map_err(|_| Error::BadKeyLength {
            kind: "HMAC-SHA256",
            len: key.len(),
        })?;
    mac.update(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    Ok(out)
}

/// The lengths of an imported HMAC-SHA256 key: from 32 bytes (SHA-256's output length, so
/// the key carries the full 256-bit strength, NIST SP 800-107 §5.3.4; also the least
/// SoftHSM2 takes for `CKM_SHA256_HMAC`) to 256 (RFC 2104 hashes a key longer than the
/// 64-byte block first; RFC 4231's test cases 6 and 7 have 131 bytes).
pub const HMAC_IMPORT_LEN: std::ops::RangeInclusive<usize> = 32..=256;

/// Checks that a value has a length `kind` takes.
pub(crate) fn check_value(kind: SecretKeyKind, value: &[u8]) -> Result<(), Error> {
    let ok = match kind {
        SecretKeyKind::HmacSha256 => HMAC_IMPORT_LEN.contains(&value.len()),
        _ => value.len() == kind.key_len(),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::BadKeyLength {
            kind: kind.name(),
            len: value.len(),
        })
    }
}

/// A random value for a key of `kind`.
pub(crate) fn random_value(kind: SecretKeyKind) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut v = Zeroizing::new(vec![0u8; kind.key_len()]);
    crate::error::random(&mut v)?;
    Ok(v)
}

/// Refuses an operation that the key's kind does not do.
pub(crate) fn wrong_kind(label: &str, kind: SecretKeyKind, operation: &'static str) -> Error {
    Error::SecretKeyUse {
        label: label.into(),
        detail: format!("a {kind} key does not do {operation}"),
    }
}

/// A store of secret keys by label (see the module documentation). Object safe; both
/// backends implement it.
pub trait SecretKeyStore: Send + Sync + fmt::Debug {
    /// Generates a random key of `kind` under `label` ([`Error::SecretKeyExists`] if the
    /// label is taken).
    fn generate(&self, label: &str, kind: SecretKeyKind) -> Result<SecretKeyInfo, Error>;

    /// Stores a key whose value the caller has (a test vector, a key handed over in a
    /// ceremony); `value` must have the kind's length (HMAC: [`HMAC_IMPORT_LEN`]). [`Error::SecretKeyExists`] if the
    /// label is taken.
    fn import(
        &self,
        label: &str,
        kind: SecretKeyKind,
        value: &[u8],
    ) -> Result<SecretKeyInfo, Error>;

    /// What the store knows about `label`, `None` if there is no such key.
    fn info(&self, label: &str) -> Result<Option<SecretKeyInfo>, Error>;

    /// Every key whose label starts with `prefix` (`""`: all), sorted by label.
    fn list(&self, prefix: &str) -> Result<Vec<SecretKeyInfo>, Error>;

    /// Deletes the key. Idempotent: true when something was deleted.
    fn delete(&self, label: &str) -> Result<bool, Error>;

    /// AES-CMAC (NIST SP 800-38B, RFC 4493), 16 bytes, with an AES key.
    fn cmac(&self, label: &str, data: &[u8]) -> Result<[u8; 16], Error>;

    /// HMAC-SHA256 (RFC 2104), 32 bytes, with an HMAC-SHA256 key.
    fn hmac_sha256(&self, label: &str, data: &[u8]) -> Result<[u8; 32], Error>;

    /// The AES key `label` encrypted under a card secure channel's DEK as the card expects
    /// it (see the module documentation); `dek` is
    /// [`scp::HostSession::data_encryption_key`]. HMAC keys are refused.
    fn wrap_for_card(&self, label: &str, dek: &Key) -> Result<Vec<u8>, Error>;
}

impl StoreConfig {
    /// Opens the configured store as a secret key store (a software keystore that does not
    /// exist yet is created).
    pub fn open_secret_keys(&self) -> Result<Arc<dyn SecretKeyStore>, Error> {
        self.open_as(None, |s| Arc::new(s) as _, |p| Arc::new(p) as _)
    }
}

/// Parses a configuration string (the same as [`crate::open`]'s, see [`StoreConfig`]) and
/// opens it as a secret key store.
pub fn open_secret_keys(config: &str) -> Result<Arc<dyn SecretKeyStore>, Error> {
    config.parse::<StoreConfig>()?.open_secret_keys()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_labels() {
        for k in SecretKeyKind::ALL {
            assert_eq!(k.name().to_lowercase().parse::<SecretKeyKind>().unwrap(), k);
            assert_eq!(SecretKeyKind::from_code(k.code()), Some(k));
        }
        assert!("AES-192".parse::<SecretKeyKind>().is_err());
        assert!(validate_object_label("secret key", "outlet/db-mac").is_ok());
        for bad in ["", "a:b", "a b", &"x".repeat(65)] {
            assert!(matches!(
                validate_object_label("secret key", bad),
                Err(Error::BadObjectLabel { .. })
            ));
        }
    }

    /// RFC 4231 test cases 1 and 3-7, also those whose keys are shorter than a store
    /// imports (the store tests run 6 and 7 through the stores).
    #[test]
    fn hmac_known_answers() {
        let text = include_str!("../../tests/vectors/hmac_sha256.txt");
        let mut n = 0;
        for l in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let f: Vec<Vec<u8>> = l
                .split_whitespace()
                .skip(1)
                .map(|h| apdu::parse_hex(h).unwrap())
                .collect();
            let tag = hmac_sha256_in_software(&f[0], &f[1]).unwrap();
            assert_eq!(&tag[..f[2].len()], f[2].as_slice(), "{l}");
            n += 1;
        }
        assert_eq!(n, 6);
    }
}
