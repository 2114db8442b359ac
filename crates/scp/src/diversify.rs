//! Per-card key diversification from a master key and the key diversification data (KDD)
//! of the INITIALIZE UPDATE response.

use crate::{Error, StaticKeys};
use core::fmt;
use core::str::FromStr;

/// A per-card key derivation, named as GlobalPlatformPro names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Diversification {
    /// The static keys are the card keys.
    #[default]
    None,
    /// EMV CPS / GP "EMV CPG 2.1" scheme (3DES).
    Emv,
    /// VISA2 scheme (3DES).
    Visa2,
    /// GlobalPlatformPro's "KDF3": the SCP03 CMAC KDF keyed with the AES master key.
    Kdf3,
}

impl Diversification {
    /// Derives the card's static keys from the master keys and the 10-byte KDD.
    pub fn apply(&self, master: &StaticKeys, kdd: &[u8]) -> Result<StaticKeys, Error> {
        let _ = (master, kdd);
        Err(Error::Unsupported(
            "diversification not implemented yet".into(),
        ))
    }
}

impl fmt::Display for Diversification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Diversification::None => "none",
            Diversification::Emv => "emv",
            Diversification::Visa2 => "visa2",
            Diversification::Kdf3 => "kdf3",
        })
    }
}

impl FromStr for Diversification {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Diversification::None),
            "emv" => Ok(Diversification::Emv),
            "visa2" => Ok(Diversification::Visa2),
            "kdf3" => Ok(Diversification::Kdf3),
            _ => Err(Error::Parse {
                what: "diversification",
                input: s.to_string(),
            }),
        }
    }
}
