//! The PIV Card Application Administration Key ("management key", key reference `9B`),
//! host side.
//!
//! SP 800-73-4 Part 2 §3.2.4 and Appendix A.1 authenticate the administrator with a
//! symmetric challenge–response; SP 800-78-4 Table 6-1 lists the algorithms (`03` 3-key
//! Triple DES, `08`/`0A`/`0C` AES-128/192/256). Blocks are enciphered one at a time (ECB).

use std::fmt;

use aes::{Aes128, Aes192, Aes256};
use cipher::{Block, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use des::TdesEde3;
use zeroize::Zeroizing;

use crate::PivError;

/// Algorithm of the management key (SP 800-78-4 Table 6-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MgmtAlgorithm {
    /// Three-key Triple DES (`03`).
    Tdes,
    /// AES-128 (`08`).
    Aes128,
    /// AES-192 (`0A`).
    Aes192,
    /// AES-256 (`0C`).
    Aes256,
}

impl MgmtAlgorithm {
    /// The algorithm reference used in P1 of GENERAL AUTHENTICATE.
    pub const fn id(self) -> u8 {
        match self {
            Self::Tdes => 0x03,
            Self::Aes128 => 0x08,
            Self::Aes192 => 0x0A,
            Self::Aes256 => 0x0C,
        }
    }

    /// The algorithm for a reference byte (`00` is the older alias of 3DES).
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

    /// Block length in bytes: the witness and challenge length.
    pub const fn block_len(self) -> usize {
        match self {
            Self::Tdes => 8,
            _ => 16,
        }
    }

    /// Reads `3des`, `aes128`, `aes192` or `aes256` (case-insensitive).
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

/// A management key: algorithm and key bytes, wiped on drop. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct MgmtKey {
    algorithm: MgmtAlgorithm,
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for MgmtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MgmtKey")
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl MgmtKey {
    /// The well-known default key of PIV devices, `0102030405060708` three times.
    pub const DEFAULT: [u8; 24] = [
        1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
    ];

    /// A key, its length checked against the algorithm.
    pub fn new(algorithm: MgmtAlgorithm, key: &[u8]) -> Result<Self, PivError> {
        if key.len() != algorithm.key_len() {
            return Err(PivError::Invalid(format!(
                "a {algorithm} management key has {} bytes, not {}",
                algorithm.key_len(),
                key.len()
            )));
        }
        Ok(Self {
            algorithm,
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// The default key ([`Self::DEFAULT`]) with `algorithm` (3DES on most cards, AES-192
    /// on YubiKey 5.7 and later; both use the same 24 bytes).
    pub fn default_for(algorithm: MgmtAlgorithm) -> Result<Self, PivError> {
        Self::new(algorithm, &Self::DEFAULT[..algorithm.key_len().min(24)])
    }

    /// The algorithm.
    pub fn algorithm(&self) -> MgmtAlgorithm {
        self.algorithm
    }

    /// The same key bytes used with another algorithm of the same length.
    pub fn with_algorithm(&self, algorithm: MgmtAlgorithm) -> Result<Self, PivError> {
        Self::new(algorithm, &self.key)
    }

    /// Enciphers one block in place.
    pub fn encrypt_block(&self, block: &mut [u8]) -> Result<(), PivError> {
        self.apply(block, true)
    }

    /// Deciphers one block in place.
    pub fn decrypt_block(&self, block: &mut [u8]) -> Result<(), PivError> {
        self.apply(block, false)
    }

    fn apply(&self, block: &mut [u8], encrypt: bool) -> Result<(), PivError> {
        if block.len() != self.algorithm.block_len() {
            return Err(PivError::Invalid(format!(
                "{} block of {} bytes, expected {}",
                self.algorithm,
                block.len(),
                self.algorithm.block_len()
            )));
        }
        match self.algorithm {
            MgmtAlgorithm::Tdes => run::<TdesEde3>(&self.key, block, encrypt),
            MgmtAlgorithm::Aes128 => run::<Aes128>(&self.key, block, encrypt),
            MgmtAlgorithm::Aes192 => run::<Aes192>(&self.key, block, encrypt),
            MgmtAlgorithm::Aes256 => run::<Aes256>(&self.key, block, encrypt),
        }
    }
}

fn run<C: KeyInit + BlockCipherEncrypt + BlockCipherDecrypt>(
    key: &[u8],
    block: &mut [u8],
    encrypt: bool,
) -> Result<(), PivError> {
    let cipher =
        C::new_from_slice(key).map_err(|_| PivError::Invalid("management key length".into()))?;
    let b: &mut Block<C> = block
        .try_into()
        .map_err(|_| PivError::Invalid("block length".into()))?;
    if encrypt {
        cipher.encrypt_block(b);
    } else {
        cipher.decrypt_block(b);
    }
    Ok(())
}
