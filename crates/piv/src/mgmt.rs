//! The PIV Card Application Administration Key ("management key", key reference `9B`).
//!
//! SP 800-73-4 Part 2 §3.2.4 and Appendix A.1 authenticate the administrator with a
//! symmetric challenge–response; SP 800-78-4 Table 6-1 lists its algorithms
//! (`03` 3-key 3DES, `08`/`0A`/`0C` AES-128/192/256). Blocks are enciphered in ECB
//! mode, one block at a time.

use crate::{Error, Secret};
use aes::{Aes128, Aes192, Aes256};
use cipher::{Block, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use core::fmt;
use des::TdesEde3;
use serde::{Deserialize, Serialize};

/// Algorithm of the management key (SP 800-78-4 Table 6-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MgmtAlgorithm {
    /// Three-key Triple DES, ECB (`03`; `00` is accepted as its older alias).
    Tdes,
    /// AES-128, ECB (`08`).
    Aes128,
    /// AES-192, ECB (`0A`).
    Aes192,
    /// AES-256, ECB (`0C`).
    Aes256,
}

impl MgmtAlgorithm {
    /// The algorithm identifier used in P1 of GENERAL AUTHENTICATE.
    pub const fn id(self) -> u8 {
        match self {
            Self::Tdes => 0x03,
            Self::Aes128 => 0x08,
            Self::Aes192 => 0x0A,
            Self::Aes256 => 0x0C,
        }
    }
    /// Reads an algorithm identifier; `00`, the older identifier of 3-key 3DES
    /// (SP 800-78-4 Table 6-1), reads as [`MgmtAlgorithm::Tdes`].
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            0x00 | 0x03 => Some(Self::Tdes),
            0x08 => Some(Self::Aes128),
            0x0A => Some(Self::Aes192),
            0x0C => Some(Self::Aes256),
            _ => None,
        }
    }
    /// Key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            Self::Tdes | Self::Aes192 => 24,
            Self::Aes128 => 16,
            Self::Aes256 => 32,
        }
    }
    /// Block length in bytes, which is also the witness and challenge length.
    pub const fn block_len(self) -> usize {
        match self {
            Self::Tdes => 8,
            _ => 16,
        }
    }
    /// Reads `3des`, `aes128`, `aes192` or `aes256` (case-insensitive; `tdes`, `des3`,
    /// `aes-128`… too), as command lines name them.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "3des" | "tdes" | "des3" => Some(Self::Tdes),
            "aes128" | "aes-128" => Some(Self::Aes128),
            "aes192" | "aes-192" => Some(Self::Aes192),
            "aes256" | "aes-256" => Some(Self::Aes256),
            _ => None,
        }
    }
}

/// `3DES`, `AES-128`, `AES-192`, `AES-256`.
impl fmt::Display for MgmtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tdes => "3DES",
            Self::Aes128 => "AES-128",
            Self::Aes192 => "AES-192",
            Self::Aes256 => "AES-256",
        })
    }
}

/// A management key: algorithm and secret key bytes. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagementKey {
    algorithm: MgmtAlgorithm,
    key: Secret,
}

impl ManagementKey {
    /// The well-known default key of PIV devices: `010203040506070801020304050607080102030405060708`, 3DES.
    pub const DEFAULT_TDES: [u8; 24] = [
        1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
    ];

    /// Builds a key, checking its length against the algorithm.
    pub fn new(algorithm: MgmtAlgorithm, key: &[u8]) -> Result<Self, Error> {
        if key.len() != algorithm.key_len() {
            return Err(Error::MgmtKeyLength {
                algorithm: algorithm.id(),
                expected: algorithm.key_len(),
                actual: key.len(),
            });
        }
        Ok(Self {
            algorithm,
            key: Secret::new(key.to_vec()),
        })
    }

    /// Builds a key from an algorithm identifier (`03`, `08`, `0A`, `0C`).
    pub fn from_id(id: u8, key: &[u8]) -> Result<Self, Error> {
        // A new key is named by the algorithm's current identifier: not the `00` alias.
        if id == 0x00 {
            return Err(Error::UnknownMgmtAlgorithm(id));
        }
        let algorithm = MgmtAlgorithm::from_id(id).ok_or(Error::UnknownMgmtAlgorithm(id))?;
        Self::new(algorithm, key)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> MgmtAlgorithm {
        self.algorithm
    }

    /// The same key bytes used with another algorithm of the same key length.
    pub fn with_algorithm(&self, algorithm: MgmtAlgorithm) -> Result<Self, Error> {
        Self::new(algorithm, self.key.expose())
    }

    /// Enciphers one block in place (ECB).
    pub fn encrypt_block(&self, block: &mut [u8]) -> Result<(), Error> {
        self.apply(block, true)
    }

    /// Deciphers one block in place (ECB).
    pub fn decrypt_block(&self, block: &mut [u8]) -> Result<(), Error> {
        self.apply(block, false)
    }

    fn apply(&self, block: &mut [u8], encrypt: bool) -> Result<(), Error> {
        let expected = self.algorithm.block_len();
        if block.len() != expected {
            return Err(Error::BlockLength {
                expected,
                actual: block.len(),
            });
        }
        let key = self.key.expose();
        match self.algorithm {
            MgmtAlgorithm::Tdes => run::<TdesEde3>(key, block, encrypt),
            MgmtAlgorithm::Aes128 => run::<Aes128>(key, block, encrypt),
            MgmtAlgorithm::Aes192 => run::<Aes192>(key, block, encrypt),
            MgmtAlgorithm::Aes256 => run::<Aes256>(key, block, encrypt),
        }
    }
}

fn run<C: KeyInit + BlockCipherEncrypt + BlockCipherDecrypt>(
    key: &[u8],
    block: &mut [u8],
    encrypt: bool,
) -> Result<(), Error> {
    let cipher = C::new_from_slice(key).map_err(|_| Error::MgmtKeyLength {
        algorithm: 0,
        expected: C::key_size(),
        actual: key.len(),
    })?;
    let actual = block.len();
    let b: &mut Block<C> = block.try_into().map_err(|_| Error::BlockLength {
        expected: C::block_size(),
        actual,
    })?;
    if encrypt {
        cipher.encrypt_block(b);
    } else {
        cipher.decrypt_block(b);
    }
    Ok(())
}

impl Default for ManagementKey {
    /// The default 3DES key, [`ManagementKey::DEFAULT_TDES`].
    fn default() -> Self {
        Self {
            algorithm: MgmtAlgorithm::Tdes,
            key: Secret::new(Self::DEFAULT_TDES.to_vec()),
        }
    }
}

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementKey")
            .field("algorithm", &self.algorithm)
            .field("key", &self.key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(name, key, plaintext, ciphertext)`.
    type Vector = (String, Vec<u8>, Vec<u8>, Vec<u8>);

    /// Lines `name key plaintext ciphertext` under `# source:` comments.
    fn vectors(text: &str) -> Vec<Vector> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let h = |s: &str| apdu::parse_hex(s).unwrap();
                (f[0].to_string(), h(f[1]), h(f[2]), h(f[3]))
            })
            .collect()
    }

    fn check(alg: MgmtAlgorithm, text: &str) {
        let vs = vectors(text);
        assert!(!vs.is_empty());
        for (name, key, pt, ct) in vs {
            let k = ManagementKey::new(alg, &key).unwrap();
            let bl = alg.block_len();
            for (p, c) in pt.chunks(bl).zip(ct.chunks(bl)) {
                let mut b = p.to_vec();
                k.encrypt_block(&mut b).unwrap();
                assert_eq!(b, c, "{name} encrypt");
                k.decrypt_block(&mut b).unwrap();
                assert_eq!(b, p, "{name} decrypt");
            }
        }
    }

    #[test]
    fn tdes_ecb_known_answers() {
        check(
            MgmtAlgorithm::Tdes,
            include_str!("../tests/vectors/tdes_ecb.txt"),
        );
    }

    #[test]
    fn aes_ecb_known_answers() {
        let text = include_str!("../tests/vectors/aes_ecb.txt");
        for (alg, len) in [
            (MgmtAlgorithm::Aes128, 16),
            (MgmtAlgorithm::Aes192, 24),
            (MgmtAlgorithm::Aes256, 32),
        ] {
            let subset: String = text
                .lines()
                .filter(|l| {
                    l.starts_with('#')
                        || l.split_whitespace()
                            .nth(1)
                            .is_some_and(|k| k.len() == 2 * len)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            check(alg, &subset);
        }
    }

    #[test]
    fn lengths_are_checked() {
        assert!(ManagementKey::new(MgmtAlgorithm::Aes128, &[0; 24]).is_err());
        assert!(ManagementKey::from_id(0x07, &[0; 24]).is_err());
        let k = ManagementKey::default();
        assert!(k.encrypt_block(&mut [0; 16]).is_err());
        assert!(format!("{k:?}").contains("REDACTED"));
    }
}
