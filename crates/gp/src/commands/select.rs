//! SELECT (GP 2.3.1 §11.9; ISO/IEC 7816-4 §11.1.1) and its File Control Information.

use apdu::Command;

use super::{bad_p1p2, expect_ins, ins, CLA_ISO};
use crate::aid::Aid;
use apdu::tlv::{self, Tag, TlvRef};

use crate::reader::{tlv_all, tlv_single};
use crate::{Error, Result};

/// Which occurrence of a partially matching AID to select (P2, GP 2.3.1 §11.9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Occurrence {
    /// P2 `00`: first or only occurrence.
    #[default]
    First,
    /// P2 `02`: next occurrence.
    Next,
}

/// SELECT by name: `00 A4 04 P2 Lc AID 00`.
///
/// `name` is the AID or an AID prefix (partial selection), 0..=16 bytes; an empty name
/// selects the Issuer Security Domain (GP 2.3.1 §11.9.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Select {
    /// The (possibly partial) AID; empty for the ISD.
    pub name: Vec<u8>,
    /// First or next occurrence.
    pub occurrence: Occurrence,
}

impl Select {
    /// Selects this application by its full AID.
    pub fn by_aid(aid: &Aid) -> Self {
        Self {
            name: aid.as_bytes().to_vec(),
            occurrence: Occurrence::First,
        }
    }

    /// Selects by a (possibly partial) name of at most 16 bytes.
    pub fn by_name(name: &[u8], occurrence: Occurrence) -> Result<Self> {
        if name.len() > Aid::MAX_LEN {
            return Err(Error::FieldLength {
                context: "SELECT",
                field: "AID",
                len: name.len(),
                expected: "0 to 16",
            });
        }
        Ok(Self {
            name: name.to_vec(),
            occurrence,
        })
    }

    /// SELECT with an empty data field: selects the Issuer Security Domain.
    pub fn issuer_security_domain() -> Self {
        Self::default()
    }

    /// The command: case 4 (`Le = 00`), or case 2 when the name is empty.
    pub fn to_command(&self) -> Result<Command> {
        let p2 = match self.occurrence {
            Occurrence::First => 0x00,
            Occurrence::Next => 0x02,
        };
        Ok(Command::new(CLA_ISO, ins::SELECT, 0x04, p2)
            .with_data(self.name.clone())
            .with_le(256))
    }

    /// Reads a SELECT by DF name (P1 `04`); P2 `00` or `02`.
    pub fn parse(cmd: &Command) -> Result<Self> {
        expect_ins(cmd, ins::SELECT, "SELECT")?;
        if cmd.p1 != 0x04 {
            return Err(bad_p1p2(cmd, "SELECT"));
        }
        let occurrence = match cmd.p2 {
            0x00 => Occurrence::First,
            0x02 => Occurrence::Next,
            _ => return Err(bad_p1p2(cmd, "SELECT")),
        };
        Self::by_name(&cmd.data, occurrence)
    }
}

/// The File Control Information returned by SELECT (GP 2.3.1 §11.9.3.1):
/// `6F { 84 AID, A5 { 73 SD management data, 9F6E production life cycle data, 9F65 max
/// command data length } }`.
///
/// The parser also accepts `73`, `9F6E` and `9F65` directly under `6F` (GP 2.1.1 layout)
/// and keeps unknown `A5` children in `proprietary_other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fci {
    /// Tag `84`: the selected application's AID.
    pub aid: Aid,
    /// Tag `73`: security domain management data (card recognition data), raw value.
    pub sd_management_data: Option<Vec<u8>>,
    /// Tag `9F6E`: application production life cycle data, raw value.
    pub app_production_life_cycle: Option<Vec<u8>>,
    /// Tag `9F65`: maximum length of data field in command message.
    pub max_command_data_length: Option<u32>,
    /// Other data objects found in `A5`, as (tag, value), in order.
    pub proprietary_other: Vec<(Tag, Vec<u8>)>,
}

impl Fci {
    /// An FCI with only the AID.
    pub fn new(aid: Aid) -> Self {
        Self {
            aid,
            sd_management_data: None,
            app_production_life_cycle: None,
            max_command_data_length: None,
            proprietary_other: Vec::new(),
        }
    }

    /// Reads the `6F` template. Rejects trailing bytes and a missing `84`.
    pub fn parse(data: &[u8]) -> Result<Self> {
        const CTX: &str = "FCI";
        let fci = tlv_single(data, Tag::new(0x6F), CTX)?;
        let mut aid = None;
        let mut out = Self::new(crate::aid::ISD_AID);
        let mut visit = |t: &TlvRef<'_>, out: &mut Self, in_a5: bool| -> Result<()> {
            match t.tag().value() {
                0x84 if !in_a5 => aid = Some(Aid::new(t.value())?),
                0x73 => out.sd_management_data = Some(t.value().to_vec()),
                0x9F6E => out.app_production_life_cycle = Some(t.value().to_vec()),
                0x9F65 => {
                    if t.value().is_empty() || t.value().len() > 4 {
                        return Err(Error::FieldLength {
                            context: CTX,
                            field: "9F65 maximum command data length",
                            len: t.value().len(),
                            expected: "1 to 4",
                        });
                    }
                    out.max_command_data_length =
                        Some(t.value().iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)));
                }
                _ if in_a5 => out.proprietary_other.push((t.tag(), t.value().to_vec())),
                _ => {}
            }
            Ok(())
        };
        for t in tlv_all(fci.value(), CTX)? {
            if t.tag().value() == 0xA5 {
                for c in tlv_all(t.value(), CTX)? {
                    visit(&c, &mut out, true)?;
                }
            } else {
                visit(&t, &mut out, false)?;
            }
        }
        out.aid = aid.ok_or(Error::MissingTag {
            context: CTX,
            tag: 0x84,
        })?;
        Ok(out)
    }

    /// Encodes `6F { 84, A5 { 73, 9F6E, 9F65, others } }`; `A5` is always present.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut a5 = Vec::new();
        if let Some(v) = &self.sd_management_data {
            tlv::encode_into(&mut a5, Tag::new(0x73), v);
        }
        if let Some(v) = &self.app_production_life_cycle {
            tlv::encode_into(&mut a5, Tag::new(0x9F6E), v);
        }
        if let Some(n) = self.max_command_data_length {
            let b = n.to_be_bytes();
            let skip = b.iter().take_while(|&&x| x == 0).count().min(3);
            tlv::encode_into(&mut a5, Tag::new(0x9F65), &b[skip..]);
        }
        for (tag, v) in &self.proprietary_other {
            tlv::encode_into(&mut a5, *tag, v);
        }
        let mut body = tlv::encode(Tag::new(0x84), self.aid.as_bytes());
        tlv::encode_into(&mut body, Tag::new(0xA5), &a5);
        tlv::encode(Tag::new(0x6F), &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::{hex, parse_hex};

    #[test]
    fn select_isd_bytes() {
        let c = Select::by_aid(&crate::ISD_AID).to_command().unwrap();
        assert_eq!(hex(&c.to_bytes().unwrap()), "00A4040008A00000015100000000");
        assert_eq!(Select::parse(&c).unwrap(), Select::by_aid(&crate::ISD_AID));
        let e = Select::issuer_security_domain().to_command().unwrap();
        assert_eq!(hex(&e.to_bytes().unwrap()), "00A4040000");
        let n = Select::by_name(&[0xA0, 0, 0, 1], Occurrence::Next).unwrap();
        assert_eq!(Select::parse(&n.to_command().unwrap()).unwrap(), n);
        assert!(Select::parse(&Command::new(0, 0xA4, 0, 0)).is_err());
    }

    #[test]
    fn fci_parse_and_build() {
        let data = parse_hex("6F108408A000000151000000A5049F6501FF").unwrap();
        let f = Fci::parse(&data).unwrap();
        assert_eq!(f.aid, crate::ISD_AID);
        assert_eq!(f.max_command_data_length, Some(255));
        assert_eq!(f.to_bytes(), data);
        assert!(matches!(
            Fci::parse(&data[..data.len() - 1]),
            Err(Error::Tlv { .. })
        ));
        assert!(matches!(
            Fci::parse(&parse_hex("6F02A500").unwrap()),
            Err(Error::MissingTag { tag: 0x84, .. })
        ));
    }
}
