//! Key slots and their X.509 certificate data objects (SP 800-73-4 Part 1).

use std::{fmt, str::FromStr};

use apdu::tlv::{self, Tag, TlvRef};

use crate::PivError;

/// An asymmetric key reference (SP 800-73-4 Part 1 Table 4b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(u8);

impl Slot {
    /// `9A` PIV Authentication.
    pub const AUTHENTICATION: Self = Self(0x9A);
    /// `9C` Digital Signature (PIN "always": VERIFY right before each signature).
    pub const SIGNATURE: Self = Self(0x9C);
    /// `9D` Key Management.
    pub const KEY_MANAGEMENT: Self = Self(0x9D);
    /// `9E` Card Authentication (no PIN).
    pub const CARD_AUTHENTICATION: Self = Self(0x9E);

    /// A slot from its key reference: `9A`, `9C`, `9D`, `9E` or a retired key management
    /// slot `82`..`95`.
    pub const fn new(reference: u8) -> Option<Self> {
        match reference {
            0x9A | 0x9C | 0x9D | 0x9E | 0x82..=0x95 => Some(Self(reference)),
            _ => None,
        }
    }

    /// The key reference byte (P2 of GENERATE and GENERAL AUTHENTICATE).
    pub const fn reference(self) -> u8 {
        self.0
    }

    /// The BER-TLV tag of the slot's certificate object (Part 1 Table 3): `5FC105`,
    /// `5FC10A`, `5FC10B`, `5FC101`, and `5FC10D`..`5FC120` for the retired slots.
    pub const fn certificate_object(self) -> u32 {
        match self.0 {
            0x9A => 0x5F_C1_05,
            0x9C => 0x5F_C1_0A,
            0x9D => 0x5F_C1_0B,
            0x9E => 0x5F_C1_01,
            r => 0x5F_C1_0D + (r as u32 - 0x82),
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X}", self.0)
    }
}

impl FromStr for Slot {
    type Err = String;
    /// `9c`, `9C` or `0x9c`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        u8::from_str_radix(t, 16)
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| format!("'{s}' is not a PIV key slot (9A, 9C, 9D, 9E, 82-95)"))
    }
}

/// `CertInfo` (tag `71`) of an uncompressed certificate (Part 1 Appendix A, Table 10 note).
pub const CERT_INFO_UNCOMPRESSED: u8 = 0x00;

/// The value of a certificate data object (inside the `53` container of PUT DATA, Part 1
/// Appendix A Tables 10, 15, 16, 17): `70` the DER certificate, `71 01 00` CertInfo
/// (uncompressed), `FE 00` the error detection code (LRC, always empty in PIV), exactly as
/// OpenSC's `piv-tool` and `yubico-piv-tool` write it.
pub fn encode_certificate_object(der: &[u8]) -> Vec<u8> {
    let mut out = tlv::encode(Tag::new(0x70), der);
    tlv::encode_into(&mut out, Tag::new(0x71), &[CERT_INFO_UNCOMPRESSED]);
    tlv::encode_into(&mut out, Tag::new(0xFE), &[]);
    out
}

/// Reads the value of a certificate data object (the content of the `53` container): the
/// DER certificate of tag `70`. Tags `71` (must be `00`: compressed certificates are
/// refused), `72` (MSCUID, ignored) and `FE` (must be empty) are optional; any other tag,
/// a duplicate, or a missing `70` is an error.
pub fn decode_certificate_object(value: &[u8]) -> Result<Vec<u8>, PivError> {
    let bad = |reason: String| PivError::Malformed {
        command: "GET DATA (certificate)",
        reason,
    };
    let mut cert: Option<&[u8]> = None;
    let mut seen = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let (obj, tail) = TlvRef::parse_one(rest).map_err(|e| bad(e.to_string()))?;
        rest = tail;
        let tag = obj.tag().value();
        if seen.contains(&tag) {
            return Err(bad(format!("duplicate tag {tag:X}")));
        }
        seen.push(tag);
        match tag {
            0x70 => cert = Some(obj.value()),
            0x71 => match obj.value() {
                [CERT_INFO_UNCOMPRESSED] => {}
                [0x01] => return Err(PivError::CompressedCertificate),
                other => return Err(bad(format!("CertInfo {}", apdu::hex(other)))),
            },
            0x72 => {}
            0xFE => {
                if !obj.value().is_empty() {
                    return Err(bad("error detection code (FE) is not empty".into()));
                }
            }
            other => return Err(bad(format!("unexpected tag {other:X}"))),
        }
    }
    match cert {
        Some(c) if !c.is_empty() => Ok(c.to_vec()),
        Some(_) => Err(bad("empty certificate (70)".into())),
        None => Err(bad("no certificate (70)".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_objects_of_every_slot() {
        let tags: Vec<u32> = [0x9A, 0x9C, 0x9D, 0x9E, 0x82, 0x95]
            .iter()
            .map(|&r| Slot::new(r).unwrap().certificate_object())
            .collect();
        assert_eq!(
            tags,
            [0x5FC105, 0x5FC10A, 0x5FC10B, 0x5FC101, 0x5FC10D, 0x5FC120]
        );
        assert!(Slot::new(0x9B).is_none());
        assert!(Slot::new(0x96).is_none());
        assert_eq!("9c".parse::<Slot>(), Ok(Slot::SIGNATURE));
        assert_eq!("0x9A".parse::<Slot>(), Ok(Slot::AUTHENTICATION));
        assert!("80".parse::<Slot>().is_err());
        assert_eq!(Slot::SIGNATURE.to_string(), "9C");
    }

    #[test]
    fn object_layout() {
        assert_eq!(
            encode_certificate_object(&[0x30, 0x00]),
            [0x70, 0x02, 0x30, 0x00, 0x71, 0x01, 0x00, 0xFE, 0x00]
        );
        let long = vec![0xAB; 300];
        let obj = encode_certificate_object(&long);
        assert_eq!(&obj[..4], &[0x70, 0x82, 0x01, 0x2C]);
        assert_eq!(decode_certificate_object(&obj).unwrap(), long);
    }
}
