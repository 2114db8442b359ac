//! Per-card key diversification from a master key and the key diversification data (KDD)
//! of the INITIALIZE UPDATE response.

use crate::error::malformed;
use crate::{crypto, Error, Key, KeyKind, StaticKeys};
use core::fmt;
use core::str::FromStr;

/// A per-card key derivation, named as GlobalPlatformPro names them.
///
/// In the templates below `K0`…`K9` are the bytes of the 10-byte KDD and `k` is the key
/// purpose: `01` ENC, `02` MAC, `03` DEK. Each card key is derived from the master key of
/// the same purpose (`master.enc` → `enc`, …).
///
/// * `Emv` (EMV Card Personalization Specification v1.1, KENC/KMAC/KDEK from the KMC):
///   3DES-ECB over `K4..K9 F0 k ‖ K4..K9 0F k` (the six least significant KDD bytes).
/// * `Visa2`: 3DES-ECB over `K0 K1 K4..K7 F0 k ‖ K0 K1 K4..K7 0F k`.
/// * `Kdf3` (GlobalPlatformPro's scheme, not a GP standard): the SP 800-108 counter-mode
///   CMAC-AES KDF with PRF input `i ‖ 00 00 00 k 00 ‖ KDD`, output as long as the master.
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
        if *self == Diversification::None {
            return Ok(master.clone());
        }
        let kdd: &[u8; 10] = kdd.try_into().map_err(|_| {
            malformed(
                "key diversification data",
                format!("{} bytes, want 10", kdd.len()),
            )
        })?;
        Ok(StaticKeys {
            enc: self.one(&master.enc, kdd, 1)?,
            mac: self.one(&master.mac, kdd, 2)?,
            dek: self.one(&master.dek, kdd, 3)?,
        })
    }

    fn one(&self, master: &Key, kdd: &[u8; 10], k: u8) -> Result<Key, Error> {
        let des = |half: [u8; 6]| -> Result<Key, Error> {
            if master.kind() != KeyKind::Des3 {
                return Err(Error::Unsupported(format!(
                    "{self} diversification needs a 3DES master key"
                )));
            }
            let mut data = [0u8; 16];
            data[..6].copy_from_slice(&half);
            data[6] = 0xF0;
            data[7] = k;
            data[8..14].copy_from_slice(&half);
            data[14] = 0x0F;
            data[15] = k;
            Key::des3(&crypto::tdes_ecb_encrypt(master.expose(), &data)?)
        };
        match self {
            Diversification::None => Ok(master.clone()),
            Diversification::Emv => des([kdd[4], kdd[5], kdd[6], kdd[7], kdd[8], kdd[9]]),
            Diversification::Visa2 => des([kdd[0], kdd[1], kdd[4], kdd[5], kdd[6], kdd[7]]),
            Diversification::Kdf3 => {
                if master.kind() != KeyKind::Aes {
                    return Err(Error::Unsupported(
                        "kdf3 diversification needs an AES master key".into(),
                    ));
                }
                let mut out = zeroize::Zeroizing::new(Vec::with_capacity(48));
                let mut i = 1u8;
                while out.len() < master.len() {
                    let fixed = [i, 0, 0, 0, k, 0];
                    out.extend_from_slice(&crypto::aes_cmac(master.expose(), &[&fixed, kdd])?);
                    i += 1;
                }
                Key::aes(&out[..master.len()])
            }
        }
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
