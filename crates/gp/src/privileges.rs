//! Application privileges (GlobalPlatform Card Specification 2.3.1 §6.6 and §11.1.2,
//! Tables 11-7, 11-8 and 11-9).
//!
//! GP 2.2 and later code privileges on 3 bytes; GP 2.1.1 on 1 byte (the first byte of
//! the 3-byte form). Some privileges are combinations of bits: DAP Verification is
//! Security Domain + b7, Delegated Management is Security Domain + b6, and Mandated DAP
//! Verification is DAP Verification + b1 (Table 11-7).

use core::fmt;
use core::str::FromStr;

use crate::{Error, Result};

/// One privilege, with the short names used by GlobalPlatformPro (`sd`, `dm`, `am`, …)
/// and kebab-case long names (`security-domain`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Privilege {
    /// Byte 1 `80`: the application is a security domain.
    SecurityDomain,
    /// Byte 1 `C0`: security domain with DAP verification.
    DapVerification,
    /// Byte 1 `A0`: security domain with delegated management.
    DelegatedManagement,
    /// Byte 1 `10`: may lock the card.
    CardLock,
    /// Byte 1 `08`: may terminate the card.
    CardTerminate,
    /// Byte 1 `04`: card reset (formerly "default selected").
    CardReset,
    /// Byte 1 `02`: manages the cardholder verification method (global PIN).
    CvmManagement,
    /// Byte 1 `C1`: security domain with mandated DAP verification.
    MandatedDapVerification,
    /// Byte 2 `80`: trusted path.
    TrustedPath,
    /// Byte 2 `40`: authorized management.
    AuthorizedManagement,
    /// Byte 2 `20`: token verification.
    TokenVerification,
    /// Byte 2 `10`: global delete.
    GlobalDelete,
    /// Byte 2 `08`: global lock.
    GlobalLock,
    /// Byte 2 `04`: global registry.
    GlobalRegistry,
    /// Byte 2 `02`: final application.
    FinalApplication,
    /// Byte 2 `01`: global service.
    GlobalService,
    /// Byte 3 `80`: receipt generation.
    ReceiptGeneration,
    /// Byte 3 `40`: ciphered load file data block.
    CipheredLoadFileDataBlock,
    /// Byte 3 `20`: contactless activation.
    ContactlessActivation,
    /// Byte 3 `10`: contactless self-activation.
    ContactlessSelfActivation,
}

impl Privilege {
    /// Every privilege, in table order.
    pub const ALL: [Privilege; 20] = [
        Self::SecurityDomain,
        Self::DapVerification,
        Self::DelegatedManagement,
        Self::CardLock,
        Self::CardTerminate,
        Self::CardReset,
        Self::CvmManagement,
        Self::MandatedDapVerification,
        Self::TrustedPath,
        Self::AuthorizedManagement,
        Self::TokenVerification,
        Self::GlobalDelete,
        Self::GlobalLock,
        Self::GlobalRegistry,
        Self::FinalApplication,
        Self::GlobalService,
        Self::ReceiptGeneration,
        Self::CipheredLoadFileDataBlock,
        Self::ContactlessActivation,
        Self::ContactlessSelfActivation,
    ];

    /// All bits that must be set for the privilege to be held (`[byte1, byte2, byte3]`).
    pub const fn mask(self) -> [u8; 3] {
        match self {
            Self::SecurityDomain => [0x80, 0, 0],
            Self::DapVerification => [0xC0, 0, 0],
            Self::DelegatedManagement => [0xA0, 0, 0],
            Self::CardLock => [0x10, 0, 0],
            Self::CardTerminate => [0x08, 0, 0],
            Self::CardReset => [0x04, 0, 0],
            Self::CvmManagement => [0x02, 0, 0],
            Self::MandatedDapVerification => [0xC1, 0, 0],
            Self::TrustedPath => [0, 0x80, 0],
            Self::AuthorizedManagement => [0, 0x40, 0],
            Self::TokenVerification => [0, 0x20, 0],
            Self::GlobalDelete => [0, 0x10, 0],
            Self::GlobalLock => [0, 0x08, 0],
            Self::GlobalRegistry => [0, 0x04, 0],
            Self::FinalApplication => [0, 0x02, 0],
            Self::GlobalService => [0, 0x01, 0],
            Self::ReceiptGeneration => [0, 0, 0x80],
            Self::CipheredLoadFileDataBlock => [0, 0, 0x40],
            Self::ContactlessActivation => [0, 0, 0x20],
            Self::ContactlessSelfActivation => [0, 0, 0x10],
        }
    }

    /// The bit that distinguishes this privilege (what [`Privileges::remove`] clears).
    const fn own_bit(self) -> [u8; 3] {
        match self {
            Self::DapVerification => [0x40, 0, 0],
            Self::DelegatedManagement => [0x20, 0, 0],
            Self::MandatedDapVerification => [0x01, 0, 0],
            p => p.mask(),
        }
    }

    /// GlobalPlatformPro's short name (`sd`, `dap`, `dm`, `cl`, `ct`, `cr`, `cvm`, `mdap`,
    /// `tp`, `am`, `tv`, `gd`, `gl`, `gr`, `fa`, `gs`, `rg`, `clfdb`, `ca`, `csa`).
    pub const fn short_name(self) -> &'static str {
        match self {
            Self::SecurityDomain => "sd",
            Self::DapVerification => "dap",
            Self::DelegatedManagement => "dm",
            Self::CardLock => "cl",
            Self::CardTerminate => "ct",
            Self::CardReset => "cr",
            Self::CvmManagement => "cvm",
            Self::MandatedDapVerification => "mdap",
            Self::TrustedPath => "tp",
            Self::AuthorizedManagement => "am",
            Self::TokenVerification => "tv",
            Self::GlobalDelete => "gd",
            Self::GlobalLock => "gl",
            Self::GlobalRegistry => "gr",
            Self::FinalApplication => "fa",
            Self::GlobalService => "gs",
            Self::ReceiptGeneration => "rg",
            Self::CipheredLoadFileDataBlock => "clfdb",
            Self::ContactlessActivation => "ca",
            Self::ContactlessSelfActivation => "csa",
        }
    }

    /// The long name (`security-domain`, `dap-verification`, …).
    pub const fn long_name(self) -> &'static str {
        match self {
            Self::SecurityDomain => "security-domain",
            Self::DapVerification => "dap-verification",
            Self::DelegatedManagement => "delegated-management",
            Self::CardLock => "card-lock",
            Self::CardTerminate => "card-terminate",
            Self::CardReset => "card-reset",
            Self::CvmManagement => "cvm-management",
            Self::MandatedDapVerification => "mandated-dap-verification",
            Self::TrustedPath => "trusted-path",
            Self::AuthorizedManagement => "authorized-management",
            Self::TokenVerification => "token-verification",
            Self::GlobalDelete => "global-delete",
            Self::GlobalLock => "global-lock",
            Self::GlobalRegistry => "global-registry",
            Self::FinalApplication => "final-application",
            Self::GlobalService => "global-service",
            Self::ReceiptGeneration => "receipt-generation",
            Self::CipheredLoadFileDataBlock => "ciphered-load-file-data-block",
            Self::ContactlessActivation => "contactless-activation",
            Self::ContactlessSelfActivation => "contactless-self-activation",
        }
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.long_name())
    }
}

fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

impl FromStr for Privilege {
    type Err = Error;
    /// Accepts short names, long names, and long names without hyphens in any case
    /// (`DelegatedManagement`, `delegated_management`).
    fn from_str(s: &str) -> Result<Self> {
        let n = normalise(s);
        Self::ALL
            .into_iter()
            .find(|p| p.short_name() == n || normalise(p.long_name()) == n)
            .ok_or_else(|| Error::UnknownPrivilege(s.trim().to_string()))
    }
}

/// A set of privileges as its 3-byte coding; RFU bits are preserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Privileges(pub [u8; 3]);

impl Privileges {
    /// No privileges.
    pub const NONE: Self = Self([0; 3]);

    /// A set with these privileges.
    pub fn of(list: &[Privilege]) -> Self {
        let mut p = Self::NONE;
        for &x in list {
            p.insert(x);
        }
        p
    }

    /// Decodes 1 byte (GP 2.1.1) or 3 bytes (GP 2.2+); anything else is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        match *bytes {
            [b1] => Ok(Self([b1, 0, 0])),
            [b1, b2, b3] => Ok(Self([b1, b2, b3])),
            _ => Err(Error::PrivilegesLength(bytes.len())),
        }
    }

    /// The 3-byte coding (GP 2.2+, Table 11-7 to 11-9).
    pub const fn to_bytes(self) -> [u8; 3] {
        self.0
    }

    /// The 1-byte GP 2.1.1 coding; fails if any privilege of bytes 2 or 3 is set.
    pub fn to_gp211_byte(self) -> Result<u8> {
        if self.0[1] != 0 || self.0[2] != 0 {
            return Err(Error::Encoding(format!(
                "privileges {} need the 3-byte GP 2.2 coding",
                apdu::hex(&self.0)
            )));
        }
        Ok(self.0[0])
    }

    /// Whether every bit of the privilege is set.
    pub fn contains(self, p: Privilege) -> bool {
        let m = p.mask();
        (0..3).all(|i| self.0[i] & m[i] == m[i])
    }

    /// Adds the privilege (and the bits it implies, e.g. Security Domain for DAP Verification).
    pub fn insert(&mut self, p: Privilege) {
        let m = p.mask();
        for (b, m) in self.0.iter_mut().zip(m) {
            *b |= m;
        }
    }

    /// Removes the privilege's own bit; privileges built on it (e.g. Mandated DAP on DAP)
    /// are removed too, the bits it implies (Security Domain) are kept.
    pub fn remove(&mut self, p: Privilege) {
        let m = p.own_bit();
        for (b, m) in self.0.iter_mut().zip(m) {
            *b &= !m;
        }
    }

    /// Builder form of [`Privileges::insert`].
    pub fn with(mut self, p: Privilege) -> Self {
        self.insert(p);
        self
    }

    /// Whether no bit is set.
    pub fn is_empty(self) -> bool {
        self.0 == [0; 3]
    }

    /// The privileges held, in table order.
    pub fn iter(self) -> impl Iterator<Item = Privilege> {
        Privilege::ALL
            .into_iter()
            .filter(move |&p| self.contains(p))
    }

    /// The short names joined by `,` (`sd,dm,am`); RFU bits are not shown.
    pub fn to_short_string(self) -> String {
        self.iter()
            .map(Privilege::short_name)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether the coding is consistent: DAP, delegated management and mandated DAP bits
    /// only with Security Domain, and RFU bits (byte 3 b4..b1) clear.
    pub fn is_consistent(self) -> bool {
        let sd_only = 0x40 | 0x20 | 0x01;
        (self.0[0] & 0x80 != 0 || self.0[0] & sd_only == 0) && self.0[2] & 0x0F == 0
    }
}

impl fmt::Display for Privileges {
    /// Long names joined by `,`; `none` for the empty set; RFU bits as `rfu:XXXXXX`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut known = [0u8; 3];
        let mut first = true;
        for p in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(p.long_name())?;
            for (k, m) in known.iter_mut().zip(p.mask()) {
                *k |= m;
            }
        }
        let rest = [
            self.0[0] & !known[0],
            self.0[1] & !known[1],
            self.0[2] & !known[2],
        ];
        if rest != [0; 3] {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "rfu:{}", apdu::hex(&rest))?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl FromStr for Privileges {
    type Err = Error;
    /// A comma-separated list of privilege names (`"sd,dm,am"`, `"security-domain, card-lock"`);
    /// empty or `none` is the empty set. Reads back what `Display` writes, including `rfu:XXXXXX`.
    fn from_str(s: &str) -> Result<Self> {
        let mut p = Self::NONE;
        for part in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            if part.eq_ignore_ascii_case("none") {
                continue;
            }
            if let Some(h) = part.strip_prefix("rfu:") {
                let b = apdu::parse_hex(h).map_err(|e| Error::Hex(e.to_string()))?;
                let r = Self::from_bytes(&b)?;
                for i in 0..3 {
                    p.0[i] |= r.0[i];
                }
                continue;
            }
            p.insert(part.parse()?);
        }
        Ok(p)
    }
}

impl From<Privilege> for Privileges {
    fn from(p: Privilege) -> Self {
        Self::of(&[p])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Privilege::*;

    #[test]
    fn table_11_7_bits() {
        assert_eq!(Privileges::of(&[SecurityDomain]).to_bytes(), [0x80, 0, 0]);
        assert_eq!(Privileges::of(&[DapVerification]).to_bytes(), [0xC0, 0, 0]);
        assert_eq!(
            Privileges::of(&[DelegatedManagement]).to_bytes(),
            [0xA0, 0, 0]
        );
        assert_eq!(
            Privileges::of(&[MandatedDapVerification]).to_bytes(),
            [0xC1, 0, 0]
        );
        assert_eq!(
            Privileges::of(&[AuthorizedManagement, GlobalService]).to_bytes(),
            [0, 0x41, 0]
        );
        assert_eq!(
            Privileges::of(&[ContactlessSelfActivation]).to_bytes(),
            [0, 0, 0x10]
        );
    }

    #[test]
    fn names_parse_both_forms() {
        let p: Privileges = "sd, dm,am".parse().unwrap();
        assert_eq!(p.to_bytes(), [0xA0, 0x40, 0]);
        let q: Privileges = "security-domain,DelegatedManagement,authorized_management"
            .parse()
            .unwrap();
        assert_eq!(p, q);
        assert_eq!(p.to_short_string(), "sd,dm,am");
        for x in Privilege::ALL {
            assert_eq!(x.short_name().parse::<Privilege>().unwrap(), x);
            assert_eq!(x.long_name().parse::<Privilege>().unwrap(), x);
        }
        assert_eq!(
            "bogus".parse::<Privileges>(),
            Err(Error::UnknownPrivilege("bogus".into()))
        );
        assert_eq!("".parse::<Privileges>().unwrap(), Privileges::NONE);
    }

    #[test]
    fn display_round_trips() {
        assert_eq!(Privileges::NONE.to_string(), "none");
        let p = Privileges([0xC1, 0x0F, 0x83]);
        let s = p.to_string();
        assert_eq!(
            s,
            "security-domain,dap-verification,mandated-dap-verification,global-lock,\
             global-registry,final-application,global-service,receipt-generation,rfu:000003"
        );
        assert_eq!(s.parse::<Privileges>().unwrap(), p);
        assert!(!p.is_consistent());
    }

    #[test]
    fn lengths() {
        assert_eq!(
            Privileges::from_bytes(&[0x80]).unwrap().to_bytes(),
            [0x80, 0, 0]
        );
        assert_eq!(
            Privileges::from_bytes(&[1, 2]),
            Err(Error::PrivilegesLength(2))
        );
        assert_eq!(Privileges([0x9E, 0, 0]).to_gp211_byte().unwrap(), 0x9E);
        assert!(Privileges([0x80, 0x40, 0]).to_gp211_byte().is_err());
    }

    #[test]
    fn remove_keeps_implied_bits() {
        let mut p = Privileges::of(&[MandatedDapVerification]);
        p.remove(DapVerification);
        assert_eq!(p.to_bytes(), [0x81, 0, 0]);
        assert!(p.contains(SecurityDomain) && !p.contains(MandatedDapVerification));
        assert!(!Privileges([0x40, 0, 0]).is_consistent());
    }
}
