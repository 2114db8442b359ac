//! The software keystore's master key and AES-256-GCM sealing.

use crate::types::decode_hex_secret;
use crate::Error;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use core::fmt;
use std::path::Path;
use zeroize::Zeroizing;

/// The 256-bit key that encrypts every base key of a software keystore at rest
/// (AES-256-GCM). It is never written to the keystore file.
///
/// Where it comes from, in order of preference: a file readable only by the service
/// ([`MasterKey::from_file`], the CLI's `--master-key-file`), or the environment variable
/// [`MasterKey::ENV`] (`CARDWRIGHT_MASTER_KEY`, 64 hex digits). `Debug` shows nothing.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// The environment variable [`MasterKey::from_env`] reads.
    pub const ENV: &'static str = "CARDWRIGHT_MASTER_KEY";

    /// A master key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKey, Error> {
        let arr: &[u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::MasterKey(format!("{} bytes, want 32 (AES-256)", bytes.len())))?;
        Ok(MasterKey(Zeroizing::new(*arr)))
    }

    /// A master key from 64 hex digits (whitespace ignored).
    pub fn from_hex(text: &str) -> Result<MasterKey, Error> {
        let bytes = decode_hex_secret(text)
            .map_err(|e| Error::MasterKey(format!("{e}; want 64 hex digits")))?;
        MasterKey::from_bytes(&bytes)
    }

    /// The master key from the environment variable `CARDWRIGHT_MASTER_KEY` (hex).
    pub fn from_env() -> Result<MasterKey, Error> {
        MasterKey::from_env_var(MasterKey::ENV)
    }

    /// The master key from the named environment variable (hex).
    pub fn from_env_var(var: &str) -> Result<MasterKey, Error> {
        let value = Zeroizing::new(std::env::var(var).map_err(|e| match e {
            std::env::VarError::NotPresent => Error::MasterKey(format!("{var} is not set")),
            std::env::VarError::NotUnicode(_) => {
                Error::MasterKey(format!("{var} is not valid text"))
            }
        })?);
        MasterKey::from_hex(&value).map_err(|e| match e {
            Error::MasterKey(m) => Error::MasterKey(format!("{var}: {m}")),
            other => other,
        })
    }

    /// The master key from a file holding either exactly 32 raw bytes or 64 hex digits
    /// (surrounding whitespace ignored). Keep the file readable by the service only.
    pub fn from_file(path: impl AsRef<Path>) -> Result<MasterKey, Error> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
        if bytes.len() == 32 {
            // 32 hex digits is a 128-bit key written as text, not 32 raw bytes (a random
            // 256-bit key is all hex digits with probability (22/256)^32).
            if bytes.iter().all(u8::is_ascii_hexdigit) {
                return Err(Error::MasterKey(format!(
                    "{}: 32 hex digits is a 128-bit key; the master key is 256 bits (64 hex digits)",
                    path.display()
                )));
            }
            return MasterKey::from_bytes(&bytes);
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Error::MasterKey(format!(
                "{}: neither 32 raw bytes nor hex text",
                path.display()
            ))
        })?;
        MasterKey::from_hex(text).map_err(|e| match e {
            Error::MasterKey(m) => Error::MasterKey(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// A new random master key (for `keys init`).
    pub fn generate() -> Result<MasterKey, Error> {
        let mut k = Zeroizing::new([0u8; 32]);
        crate::error::random(k.as_mut())?;
        Ok(MasterKey(k))
    }

    /// The key as 64 hex digits, to hand to the operator once.
    ///
    /// **Dangerous**: this is the secret that opens every base key of the keystore.
    pub fn expose_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(apdu::hex(self.0.as_ref()))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Length of the random GCM nonce in front of every sealed value (NIST SP 800-38D §8.2.2:
/// 96-bit random IVs; a keystore seals far fewer than 2^32 values).
pub(crate) const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// AES-256-GCM with an explicit nonce: `ciphertext ‖ tag`.
pub(crate) fn gcm_seal_with_nonce(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let cipher = Aes256Gcm::new_from_slice(key)
        .map_err(|_| Error::MasterKey("AES-256-GCM key setup failed".into()))?;
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    cipher
        .encrypt_in_place(&(*nonce).into(), aad, &mut buf)
        .map_err(|_| Error::MasterKey("AES-256-GCM encryption failed".into()))?;
    Ok(buf)
}

/// AES-256-GCM decryption of `ciphertext ‖ tag`; `None` if it does not authenticate.
pub(crate) fn gcm_open_with_nonce(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let cipher = Aes256Gcm::new_from_slice(key).ok()?;
    let mut buf = Zeroizing::new(Vec::with_capacity(sealed.len()));
    buf.extend_from_slice(sealed);
    cipher
        .decrypt_in_place(&(*nonce).into(), aad, &mut *buf)
        .ok()?;
    Some(buf)
}

/// Seals with a fresh random nonce: `nonce ‖ ciphertext ‖ tag`.
pub(crate) fn seal(master: &MasterKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut nonce = [0u8; NONCE_LEN];
    crate::error::random(&mut nonce)?;
    let mut out = nonce.to_vec();
    out.extend(gcm_seal_with_nonce(master.bytes(), &nonce, aad, plaintext)?);
    Ok(out)
}

/// Opens `nonce ‖ ciphertext ‖ tag`; `None` if it is too short or does not authenticate.
pub(crate) fn open(master: &MasterKey, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().ok()?;
    gcm_open_with_nonce(master.bytes(), nonce, aad, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST CAVS `gcmEncryptExtIV256.rsp` vectors, as carried by RustCrypto's aes-gcm tests.
    #[test]
    fn gcm_known_answers() {
        let text = include_str!("../tests/vectors/aes256gcm.txt");
        let mut n = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<Vec<u8>> = line
                .split_whitespace()
                .map(|h| {
                    if h == "-" {
                        vec![]
                    } else {
                        apdu::parse_hex(h).unwrap()
                    }
                })
                .collect();
            let (key, nonce, pt, aad, ct, tag) = (&f[0], &f[1], &f[2], &f[3], &f[4], &f[5]);
            let key: &[u8; 32] = key.as_slice().try_into().unwrap();
            let nonce: &[u8; 12] = nonce.as_slice().try_into().unwrap();
            let sealed = gcm_seal_with_nonce(key, nonce, aad, pt).unwrap();
            assert_eq!(sealed, [ct.as_slice(), tag].concat());
            assert_eq!(
                gcm_open_with_nonce(key, nonce, aad, &sealed)
                    .unwrap()
                    .as_slice(),
                pt.as_slice()
            );
            let mut bad = sealed.clone();
            bad[0] ^= 1;
            assert!(gcm_open_with_nonce(key, nonce, aad, &bad).is_none());
            n += 1;
        }
        assert!(n >= 2);
    }

    #[test]
    fn master_key_parsing_and_debug() {
        let hex = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
        let k = MasterKey::from_hex(hex).unwrap();
        assert_eq!(k.expose_hex().as_str(), hex);
        assert_eq!(format!("{k:?}"), "MasterKey(<redacted>)");
        let e = MasterKey::from_hex("0011").unwrap_err().to_string();
        assert!(e.contains("2 bytes, want 32"), "{e}");
        let e = MasterKey::from_hex(&hex.replace('0', "x"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("1F"), "{e}");
    }

    #[test]
    fn seal_open() {
        let k = MasterKey::generate().unwrap();
        let s = seal(&k, b"aad", b"secret").unwrap();
        assert_eq!(open(&k, b"aad", &s).unwrap().as_slice(), b"secret");
        assert!(open(&k, b"other", &s).is_none());
        assert!(open(&MasterKey::generate().unwrap(), b"aad", &s).is_none());
        assert!(open(&k, b"aad", &s[..10]).is_none());
    }
}
