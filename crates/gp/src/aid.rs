//! Application identifiers (ISO/IEC 7816-4 §8.2.1.2, ISO/IEC 7816-5).

use core::fmt;
use core::str::FromStr;

use crate::{Error, Result};

/// An application identifier: a 5-byte RID followed by up to 11 bytes of PIX.
///
/// Used for applications, security domains, executable load files and modules.
/// `Display` and `FromStr` use hex (`A000000151000000`); `FromStr` also accepts
/// spaces and colons between digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aid {
    len: u8,
    bytes: [u8; Aid::MAX_LEN],
}

impl Aid {
    /// Shortest AID: a RID alone.
    pub const MIN_LEN: usize = 5;
    /// Longest AID: RID plus 11 bytes of PIX.
    pub const MAX_LEN: usize = 16;

    /// An AID from its bytes; 5..=16 bytes.
    pub fn new(bytes: &[u8]) -> Result<Self> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&bytes.len()) {
            return Err(Error::AidLength(bytes.len()));
        }
        let mut a = [0u8; Self::MAX_LEN];
        a[..bytes.len()].copy_from_slice(bytes);
        Ok(Self {
            len: bytes.len() as u8,
            bytes: a,
        })
    }

    /// An AID from a constant; fails to compile (in const context) or panics if the
    /// length is outside 5..=16. For literals in source code only.
    pub const fn from_static(bytes: &[u8]) -> Self {
        assert!(
            bytes.len() >= Self::MIN_LEN && bytes.len() <= Self::MAX_LEN,
            "AID must be 5..=16 bytes"
        );
        let mut a = [0u8; Self::MAX_LEN];
        let mut i = 0;
        while i < bytes.len() {
            a[i] = bytes[i];
            i += 1;
        }
        Self {
            len: bytes.len() as u8,
            bytes: a,
        }
    }

    /// The AID bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Number of bytes, 5..=16.
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// The registered application provider identifier (first 5 bytes).
    pub fn rid(&self) -> &[u8] {
        &self.bytes[..5]
    }

    /// The proprietary application identifier extension (bytes after the RID).
    pub fn pix(&self) -> &[u8] {
        &self.bytes[5..usize::from(self.len)]
    }

    /// Whether this AID begins with `prefix` (partial selection, GET STATUS search).
    pub fn starts_with(&self, prefix: &[u8]) -> bool {
        self.as_bytes().starts_with(prefix)
    }

    /// The AID as upper-case hex.
    pub fn to_hex(&self) -> String {
        apdu::hex(self.as_bytes())
    }

    /// Appends `len || AID`, the form used in INSTALL and legacy GET STATUS data.
    pub(crate) fn push_lv(&self, out: &mut Vec<u8>) {
        out.push(self.len);
        out.extend_from_slice(self.as_bytes());
    }
}

/// The default Issuer Security Domain AID of GlobalPlatform 2.3.1 (`A000000151000000`).
pub const ISD_AID: Aid = Aid::from_static(&[0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00]);

/// The Issuer Security Domain AID used by GP 2.1.1-era cards (`A000000003000000`).
pub const ISD_AID_GP211: Aid = Aid::from_static(&[0xA0, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00]);

impl PartialOrd for Aid {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Byte-wise lexicographic order of the AID bytes (a prefix sorts first).
impl Ord for Aid {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Display for Aid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Aid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aid({})", self.to_hex())
    }
}

impl FromStr for Aid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bytes = apdu::parse_hex(s.trim()).map_err(|e| Error::Hex(e.to_string()))?;
        Self::new(&bytes)
    }
}

impl TryFrom<&[u8]> for Aid {
    type Error = Error;
    fn try_from(bytes: &[u8]) -> Result<Self> {
        Self::new(bytes)
    }
}

impl AsRef<[u8]> for Aid {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isd_aid_is_gp_default() {
        assert_eq!(ISD_AID.to_string(), "A000000151000000");
        assert_eq!("a0 00 00 01 51 00 00 00".parse::<Aid>().unwrap(), ISD_AID);
        assert_eq!(ISD_AID.rid(), &[0xA0, 0, 0, 1, 0x51]);
        assert_eq!(ISD_AID.pix(), &[0, 0, 0]);
    }

    #[test]
    fn length_is_checked() {
        assert_eq!(Aid::new(&[1, 2, 3, 4]), Err(Error::AidLength(4)));
        assert_eq!(Aid::new(&[0; 17]), Err(Error::AidLength(17)));
        assert!(Aid::new(&[0; 16]).is_ok());
        assert!(matches!("0102zz0405".parse::<Aid>(), Err(Error::Hex(_))));
    }
}
