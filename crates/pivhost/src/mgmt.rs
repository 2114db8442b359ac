//! The PIV Card Application Administration Key ("management key", key reference `9B`),
//! host side.
//!
//! SP 800-73-4 Part 2 §3.2.4 and Appendix A.1 authenticate the administrator with a
//! symmetric challenge–response; SP 800-78-4 Table 6-1 lists the algorithms (`03` 3-key
//! Triple DES, `08`/`0A`/`0C` AES-128/192/256). Blocks are enciphered one at a time (ECB).

use std::fmt;

use crate::PivError;

/// Algorithm of the management key (SP 800-78-4 Table 6-1): the card side's definition,
/// shared.
pub use piv::MgmtAlgorithm;

/// A management key: algorithm and key bytes, wiped on drop. `Debug` never shows the key.
/// The host side of [`piv::ManagementKey`], with errors as [`PivError`].
#[derive(Clone, PartialEq, Eq)]
pub struct MgmtKey(piv::ManagementKey);

impl fmt::Debug for MgmtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MgmtKey")
            .field("algorithm", &self.0.algorithm())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl MgmtKey {
    /// The well-known default key of PIV devices, `0102030405060708` three times.
    pub const DEFAULT: [u8; 24] = piv::ManagementKey::DEFAULT_TDES;

    /// A key, its length checked against the algorithm.
    pub fn new(algorithm: MgmtAlgorithm, key: &[u8]) -> Result<Self, PivError> {
        if key.len() != algorithm.key_len() {
            return Err(PivError::Invalid(format!(
                "a {algorithm} management key has {} bytes, not {}",
                algorithm.key_len(),
                key.len()
            )));
        }
        piv::ManagementKey::new(algorithm, key)
            .map(Self)
            .map_err(invalid)
    }

    /// The default key ([`Self::DEFAULT`]) with `algorithm` (3DES on most cards, AES-192
    /// on YubiKey 5.7 and later; both use the same 24 bytes).
    pub fn default_for(algorithm: MgmtAlgorithm) -> Result<Self, PivError> {
        Self::new(algorithm, &Self::DEFAULT[..algorithm.key_len().min(24)])
    }

    /// The algorithm.
    pub fn algorithm(&self) -> MgmtAlgorithm {
        self.0.algorithm()
    }

    /// The same key bytes used with another algorithm of the same length.
    pub fn with_algorithm(&self, algorithm: MgmtAlgorithm) -> Result<Self, PivError> {
        if algorithm.key_len() != self.0.algorithm().key_len() {
            return Err(PivError::Invalid(format!(
                "a {algorithm} management key has {} bytes, not {}",
                algorithm.key_len(),
                self.0.algorithm().key_len()
            )));
        }
        self.0.with_algorithm(algorithm).map(Self).map_err(invalid)
    }

    /// Enciphers one block in place.
    pub fn encrypt_block(&self, block: &mut [u8]) -> Result<(), PivError> {
        self.check(block)?;
        self.0.encrypt_block(block).map_err(invalid)
    }

    /// Deciphers one block in place.
    pub fn decrypt_block(&self, block: &mut [u8]) -> Result<(), PivError> {
        self.check(block)?;
        self.0.decrypt_block(block).map_err(invalid)
    }

    fn check(&self, block: &[u8]) -> Result<(), PivError> {
        let algorithm = self.0.algorithm();
        if block.len() != algorithm.block_len() {
            return Err(PivError::Invalid(format!(
                "{algorithm} block of {} bytes, expected {}",
                block.len(),
                algorithm.block_len()
            )));
        }
        Ok(())
    }
}

fn invalid(e: piv::Error) -> PivError {
    PivError::Invalid(e.to_string())
}
