//! DELETE (GP 2.3.1 §11.2): card content or keys.

use apdu::Command;

use super::{bad_p1p2, expect_ins, ins, CLA_GP};
use crate::aid::Aid;
use apdu::tlv::{self, Tag};

use crate::reader::tlv_all;
use crate::{Error, Result};

/// DELETE: `80 E4 00 P2 Lc data 00`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delete {
    /// Delete an application, security domain or executable load file (§11.2.2.3):
    /// `4F AID [B6 …] [9E token]`.
    Object {
        /// The object.
        aid: Aid,
        /// P2 `80`: also delete related objects (a load file and its applications).
        related: bool,
        /// `B6` control reference template for the delete token, raw value.
        control_reference: Option<Vec<u8>>,
        /// `9E` delete token.
        token: Option<Vec<u8>>,
    },
    /// Delete keys (§11.2.2.3): `D0 01 id` and/or `D2 01 kvn`.
    Key {
        /// Key identifier.
        id: Option<u8>,
        /// Key version number.
        version: Option<u8>,
    },
}

impl Delete {
    /// Deletes an object (and its related objects when `related`).
    pub fn object(aid: Aid, related: bool) -> Self {
        Self::Object {
            aid,
            related,
            control_reference: None,
            token: None,
        }
    }

    /// The command.
    pub fn to_command(&self) -> Result<Command> {
        let mut data = Vec::new();
        let p2 = match self {
            Self::Object {
                aid,
                related,
                control_reference,
                token,
            } => {
                tlv::encode_into(&mut data, Tag::new(0x4F), aid.as_bytes());
                if let Some(b6) = control_reference {
                    tlv::encode_into(&mut data, Tag::new(0xB6), b6);
                }
                if let Some(t) = token {
                    tlv::encode_into(&mut data, Tag::new(0x9E), t);
                }
                if *related {
                    0x80
                } else {
                    0x00
                }
            }
            Self::Key { id, version } => {
                if id.is_none() && version.is_none() {
                    return Err(Error::Encoding(
                        "DELETE key needs a key identifier or a version".into(),
                    ));
                }
                if let Some(i) = id {
                    tlv::encode_into(&mut data, Tag::new(0xD0), &[*i]);
                }
                if let Some(v) = version {
                    tlv::encode_into(&mut data, Tag::new(0xD2), &[*v]);
                }
                0x00
            }
        };
        Ok(Command::new(CLA_GP, ins::DELETE, 0x00, p2)
            .with_data(data)
            .with_le(256))
    }

    /// Reads DELETE. P1 must be `00` or `80` ("more DELETE commands", ignored); P2 `00` or `80`.
    pub fn parse(cmd: &Command) -> Result<Self> {
        const CTX: &str = "DELETE";
        expect_ins(cmd, ins::DELETE, CTX)?;
        if cmd.p1 & 0x7F != 0 || cmd.p2 & 0x7F != 0 {
            return Err(bad_p1p2(cmd, CTX));
        }
        let fields = tlv_all(&cmd.data, CTX)?;
        let Some(first) = fields.first() else {
            return Err(Error::MissingTag {
                context: CTX,
                tag: 0x4F,
            });
        };
        let one_byte = |v: &[u8], field| match v {
            [b] => Ok(*b),
            _ => Err(Error::FieldLength {
                context: CTX,
                field,
                len: v.len(),
                expected: "1",
            }),
        };
        match first.tag().value() {
            0x4F => {
                let aid = Aid::new(first.value())?;
                let (mut control_reference, mut token) = (None, None);
                for f in &fields[1..] {
                    match f.tag().value() {
                        0xB6 if control_reference.is_none() && token.is_none() => {
                            control_reference = Some(f.value().to_vec())
                        }
                        0x9E if token.is_none() => token = Some(f.value().to_vec()),
                        found => {
                            return Err(Error::UnexpectedTag {
                                context: CTX,
                                expected: 0x9E,
                                found,
                                offset: f.offset(),
                            })
                        }
                    }
                }
                Ok(Self::Object {
                    aid,
                    related: cmd.p2 == 0x80,
                    control_reference,
                    token,
                })
            }
            0xD0 | 0xD2 => {
                if cmd.p2 != 0 {
                    return Err(bad_p1p2(cmd, CTX));
                }
                let (mut id, mut version) = (None, None);
                for f in &fields {
                    match f.tag().value() {
                        0xD0 if id.is_none() && version.is_none() => {
                            id = Some(one_byte(f.value(), "D0 key identifier")?)
                        }
                        0xD2 if version.is_none() => {
                            version = Some(one_byte(f.value(), "D2 key version number")?)
                        }
                        found => {
                            return Err(Error::UnexpectedTag {
                                context: CTX,
                                expected: 0xD2,
                                found,
                                offset: f.offset(),
                            })
                        }
                    }
                }
                Ok(Self::Key { id, version })
            }
            found => Err(Error::UnexpectedTag {
                context: CTX,
                expected: 0x4F,
                found,
                offset: first.offset(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::hex;

    #[test]
    fn bytes_and_round_trip() {
        let d = Delete::object("D0D1D2D3D4D501".parse().unwrap(), true);
        let c = d.to_command().unwrap();
        assert_eq!(
            hex(&c.to_bytes().unwrap()),
            "80E40080094F07D0D1D2D3D4D50100"
        );
        assert_eq!(Delete::parse(&c).unwrap(), d);
        let k = Delete::Key {
            id: Some(1),
            version: Some(0x30),
        };
        let c = k.to_command().unwrap();
        assert_eq!(hex(&c.to_bytes().unwrap()), "80E4000006D00101D2013000");
        assert_eq!(Delete::parse(&c).unwrap(), k);
        assert!(Delete::Key {
            id: None,
            version: None
        }
        .to_command()
        .is_err());
    }
}
