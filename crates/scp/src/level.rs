//! Security levels and protocol identification.

use crate::Error;
use core::fmt;
use core::str::FromStr;

/// The security level of a Secure Channel session: the P1 of EXTERNAL AUTHENTICATE
/// (GP 2.3.1 §E.5.2; Amendment D §7.1.2).
///
/// Valid combinations are `00`, `01` (C-MAC), `03` (C-DECRYPTION + C-MAC), `11`
/// (C-MAC + R-MAC), `13` (C-DECRYPTION + C-MAC + R-MAC) and, for SCP03, `33` (all four).
/// C-DECRYPTION always implies C-MAC and R-ENCRYPTION implies C-DECRYPTION and R-MAC.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SecurityLevel(pub u8);

impl SecurityLevel {
    /// No secure messaging after authentication.
    pub const NONE: Self = Self(0x00);
    /// C-MAC bit.
    pub const C_MAC: Self = Self(0x01);
    /// C-DECRYPTION bit (the level value `03` includes C-MAC).
    pub const C_DECRYPTION: Self = Self(0x02);
    /// R-MAC bit.
    pub const R_MAC: Self = Self(0x10);
    /// R-ENCRYPTION bit (SCP03 only).
    pub const R_ENCRYPTION: Self = Self(0x20);
    /// `01`.
    pub const MAC: Self = Self(0x01);
    /// `03`.
    pub const MAC_ENC: Self = Self(0x03);
    /// `11`.
    pub const MAC_RMAC: Self = Self(0x11);
    /// `13`.
    pub const MAC_ENC_RMAC: Self = Self(0x13);
    /// `33`.
    pub const MAC_ENC_RMAC_RENC: Self = Self(0x33);

    /// Commands carry a C-MAC.
    pub fn c_mac(self) -> bool {
        self.0 & 0x01 != 0
    }
    /// Command data is encrypted.
    pub fn c_decryption(self) -> bool {
        self.0 & 0x02 != 0
    }
    /// Responses carry an R-MAC.
    pub fn r_mac(self) -> bool {
        self.0 & 0x10 != 0
    }
    /// Response data is encrypted.
    pub fn r_encryption(self) -> bool {
        self.0 & 0x20 != 0
    }
    /// Whether this is one of the six combinations GlobalPlatform defines.
    pub fn is_valid(self) -> bool {
        matches!(self.0, 0x00 | 0x01 | 0x03 | 0x11 | 0x13 | 0x33)
    }
    /// The canonical name, as accepted by [`FromStr`].
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x00 => "none",
            0x01 => "mac",
            0x03 => "mac+enc",
            0x11 => "mac+rmac",
            0x13 => "mac+enc+rmac",
            0x33 => "mac+enc+rmac+renc",
            _ => return None,
        })
    }
}

impl fmt::Display for SecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{:02X}", self.0),
        }
    }
}

impl fmt::Debug for SecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SecurityLevel({:02X} {})",
            self.0,
            self.name().unwrap_or("invalid")
        )
    }
}

impl FromStr for SecurityLevel {
    type Err = Error;
    /// Accepts `none`/`clr`, `mac`, `mac+enc`, `mac+rmac`, `mac+enc+rmac`,
    /// `mac+enc+rmac+renc` (case-insensitive, parts in any order) or the two hex digits of
    /// a valid level.
    fn from_str(s: &str) -> Result<Self, Error> {
        let err = || Error::Parse {
            what: "security level",
            input: s.to_string(),
        };
        let t = s.trim().to_ascii_lowercase();
        if t == "none" || t == "clr" || t == "clear" {
            return Ok(Self::NONE);
        }
        if t.len() == 2 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            let v = u8::from_str_radix(&t, 16).map_err(|_| err())?;
            return Some(Self(v)).filter(|l| l.is_valid()).ok_or_else(err);
        }
        let mut v = 0u8;
        for part in t.split('+') {
            let bit = match part.trim() {
                "mac" | "cmac" | "c-mac" => 0x01,
                "enc" | "cenc" | "c-enc" | "cdec" => 0x02,
                "rmac" | "r-mac" => 0x10,
                "renc" | "r-enc" => 0x20,
                _ => return Err(err()),
            };
            if v & bit != 0 {
                return Err(err());
            }
            v |= bit;
        }
        Some(Self(v)).filter(|l| l.is_valid()).ok_or_else(err)
    }
}

/// A Secure Channel Protocol and its "i" implementation option (GP 2.3.1 §E.1.1 for SCP02,
/// Amendment D §5.1 for SCP03).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Protocol {
    /// SCP02 (3DES), e.g. `i = 0x15` or `0x55`.
    Scp02 {
        /// Implementation option.
        i: u8,
    },
    /// SCP03 (AES), e.g. `i = 0x00`, `0x10`, `0x60`, `0x70`.
    Scp03 {
        /// Implementation option.
        i: u8,
    },
}

impl Protocol {
    /// The SCP identifier byte (`02` or `03`).
    pub fn scp(self) -> u8 {
        match self {
            Protocol::Scp02 { .. } => 0x02,
            Protocol::Scp03 { .. } => 0x03,
        }
    }
    /// The "i" parameter.
    pub fn i(self) -> u8 {
        match self {
            Protocol::Scp02 { i } | Protocol::Scp03 { i } => i,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SCP{:02X} i={:02X}", self.scp(), self.i())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for v in [0x00, 0x01, 0x03, 0x11, 0x13, 0x33] {
            let l = SecurityLevel(v);
            assert_eq!(l.to_string().parse::<SecurityLevel>().unwrap(), l);
        }
        assert_eq!("clr".parse::<SecurityLevel>().unwrap(), SecurityLevel::NONE);
        assert_eq!(
            "MAC+ENC".parse::<SecurityLevel>().unwrap(),
            SecurityLevel(3)
        );
        assert_eq!("13".parse::<SecurityLevel>().unwrap(), SecurityLevel(0x13));
        assert!("enc".parse::<SecurityLevel>().is_err());
        assert!("mac+mac".parse::<SecurityLevel>().is_err());
        assert!("mac+renc".parse::<SecurityLevel>().is_err());
        assert!("20".parse::<SecurityLevel>().is_err());
        assert_eq!(SecurityLevel(0x20).to_string(), "20");
    }
}
