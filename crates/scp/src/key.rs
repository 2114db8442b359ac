//! Secret keys, key check values and static key sets.

use crate::crypto;
use crate::Error;
use core::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The block cipher a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Two- or three-key triple DES (SCP01/SCP02; GP key type `80`).
    Des3,
    /// AES-128/192/256 (SCP03; GP key type `88`).
    Aes,
}

impl KeyKind {
    /// The GlobalPlatform key type byte (GP 2.3.1 §11.1.8, key type coding): `80` for DES
    /// (the DES family, here always 3DES in ECB/CBC), `88` for AES.
    pub fn key_type(self) -> u8 {
        match self {
            KeyKind::Des3 => 0x80,
            KeyKind::Aes => 0x88,
        }
    }

    /// The block size of the cipher in bytes (8 or 16).
    pub fn block_len(self) -> usize {
        match self {
            KeyKind::Des3 => 8,
            KeyKind::Aes => 16,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Des3 => "3DES",
            KeyKind::Aes => "AES",
        })
    }
}

/// A secret symmetric key. The bytes live in a [`Zeroizing`] buffer and are wiped on drop;
/// `Debug` shows only the kind, the length and the key check value; `==` compares in
/// constant time.
#[derive(Clone)]
pub struct Key {
    kind: KeyKind,
    bytes: Zeroizing<Vec<u8>>,
}

impl Key {
    /// A triple-DES key of 16 (two-key) or 24 (three-key) bytes. Parity bits are ignored.
    pub fn des3(bytes: &[u8]) -> Result<Key, Error> {
        match bytes.len() {
            16 | 24 => Ok(Key {
                kind: KeyKind::Des3,
                bytes: Zeroizing::new(bytes.to_vec()),
            }),
            len => Err(Error::BadKeyLength { kind: "3DES", len }),
        }
    }

    /// An AES key of 16, 24 or 32 bytes.
    pub fn aes(bytes: &[u8]) -> Result<Key, Error> {
        match bytes.len() {
            16 | 24 | 32 => Ok(Key {
                kind: KeyKind::Aes,
                bytes: Zeroizing::new(bytes.to_vec()),
            }),
            len => Err(Error::BadKeyLength { kind: "AES", len }),
        }
    }

    /// A key of the given kind.
    pub fn new(kind: KeyKind, bytes: &[u8]) -> Result<Key, Error> {
        match kind {
            KeyKind::Des3 => Key::des3(bytes),
            KeyKind::Aes => Key::aes(bytes),
        }
    }

    /// The cipher this key is for.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key length in bytes.
    #[allow(clippy::len_without_is_empty)] // a key is never empty
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The raw key bytes.
    ///
    /// **Dangerous**: the caller now holds the secret. Do not log it, do not copy it into a
    /// buffer that is not zeroized, and prefer passing the [`Key`] itself.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// The key check value.
    ///
    /// * 3DES: the first 3 bytes of 3DES-ECB(key, `00`×8) (GP 2.3.1 §11.8.2.3, PUT KEY key check value).
    /// * AES: the first 3 bytes of AES-ECB(key, `01`×16) (Amendment D §7.2.2, PUT KEY
    ///   for AES keys).
    pub fn kcv(&self) -> [u8; 3] {
        let block = match self.kind {
            KeyKind::Des3 => crypto::tdes_ecb_encrypt(&self.bytes, &[0u8; 8]),
            KeyKind::Aes => crypto::aes_ecb_encrypt(&self.bytes, &[1u8; 16]),
        };
        // Lengths are checked at construction, so encryption cannot fail.
        let mut out = [0u8; 3];
        if let Ok(b) = block {
            out.copy_from_slice(&b[..3]);
        }
        out
    }

    /// AES-CMAC (NIST SP 800-38B) of `data` under this key; a 3DES key is refused.
    pub fn aes_cmac(&self, data: &[u8]) -> Result<[u8; 16], Error> {
        match self.kind {
            KeyKind::Aes => crypto::aes_cmac(&self.bytes, &[data]),
            KeyKind::Des3 => Err(crate::error::malformed(
                "AES-CMAC key",
                "a 3DES key, not an AES key".to_string(),
            )),
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && bool::from(self.bytes.as_slice().ct_eq(other.bytes.as_slice()))
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Key({} {} bytes, KCV {})",
            self.kind,
            self.len(),
            apdu::hex(&self.kcv())
        )
    }
}

/// A static key set of a security domain: the Secure Channel encryption, MAC and data
/// encryption keys (GP 2.3.1 Appendix E; Amendment D §6.1).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StaticKeys {
    /// Key-ENC (SCP02 "S-ENC base", SCP03 "Key-ENC").
    pub enc: Key,
    /// Key-MAC.
    pub mac: Key,
    /// Key-DEK (data encryption key, for PUT KEY and sensitive data).
    pub dek: Key,
}

impl StaticKeys {
    /// The same key for ENC, MAC and DEK (what `--key HEX` means, as in many test cards).
    pub fn same(key: Key) -> StaticKeys {
        StaticKeys {
            enc: key.clone(),
            mac: key.clone(),
            dek: key,
        }
    }

    /// The kind of the three keys if they agree, `None` if they are mixed.
    pub fn kind(&self) -> Option<KeyKind> {
        let k = self.enc.kind();
        (self.mac.kind() == k && self.dek.kind() == k).then_some(k)
    }

    /// The three keys in PUT KEY order (ENC, MAC, DEK; key identifiers 1, 2, 3).
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        [&self.enc, &self.mac, &self.dek].into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert!(Key::des3(&[0; 8]).is_err());
        assert!(Key::des3(&[0; 24]).is_ok());
        assert_eq!(
            Key::aes(&[0; 20]),
            Err(Error::BadKeyLength {
                kind: "AES",
                len: 20
            })
        );
        assert!(Key::aes(&[0; 32]).is_ok());
    }

    #[test]
    fn debug_is_redacted() {
        let k = Key::des3(&apdu::parse_hex("404142434445464748494A4B4C4D4E4F").unwrap()).unwrap();
        let d = format!("{k:?}");
        assert_eq!(d, "Key(3DES 16 bytes, KCV 8BAF47)");
        assert!(!d.contains("4041"));
    }
}
