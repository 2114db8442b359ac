//! STORE DATA (GP 2.3.1 §11.11).

use apdu::Command;

use super::{bad_p1p2, expect_ins, ins, CLA_GP};
use crate::{Error, Result};

/// P1 b7-b6: encryption information (GP 2.3.1 Table 11-89).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StoreDataEncryption {
    /// `00`: no general encryption information, or not encrypted.
    #[default]
    None,
    /// `20`: application dependent encryption.
    ApplicationDependent,
    /// `60`: encrypted data (with the SD's DEK / session key).
    Encrypted,
}

/// P1 b5-b4: data structure information (GP 2.3.1 Table 11-89).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StoreDataStructure {
    /// `00`: no general data structure information.
    #[default]
    None,
    /// `08`: DGI format (EMV CPS).
    Dgi,
    /// `10`: BER-TLV format.
    BerTlv,
}

/// STORE DATA: `80 E2 P1 P2 Lc data [00]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreData {
    /// P1 b8: last block.
    pub last: bool,
    /// P1 b7-b6.
    pub encryption: StoreDataEncryption,
    /// P1 b5-b4.
    pub structure: StoreDataStructure,
    /// P1 b1 (GP 2.3): response data may be returned; adds `Le = 00`.
    pub response_expected: bool,
    /// P2: block number.
    pub block: u8,
    /// The data.
    pub data: Vec<u8>,
}

impl StoreData {
    /// P1.
    pub fn p1(&self) -> u8 {
        let enc = match self.encryption {
            StoreDataEncryption::None => 0x00,
            StoreDataEncryption::ApplicationDependent => 0x20,
            StoreDataEncryption::Encrypted => 0x60,
        };
        let st = match self.structure {
            StoreDataStructure::None => 0x00,
            StoreDataStructure::Dgi => 0x08,
            StoreDataStructure::BerTlv => 0x10,
        };
        (if self.last { 0x80 } else { 0 }) | enc | st | u8::from(self.response_expected)
    }

    /// The command (case 3, or 4 when `response_expected`).
    pub fn to_command(&self) -> Result<Command> {
        let c = Command::new(CLA_GP, ins::STORE_DATA, self.p1(), self.block)
            .with_data(self.data.clone());
        Ok(if self.response_expected {
            c.with_le(256)
        } else {
            c
        })
    }

    /// Reads STORE DATA; RFU codings of P1 (encryption `40`, structure `18`, b3-b2) are rejected.
    pub fn parse(cmd: &Command) -> Result<Self> {
        expect_ins(cmd, ins::STORE_DATA, "STORE DATA")?;
        let p1 = cmd.p1;
        let encryption = match p1 & 0x60 {
            0x00 => StoreDataEncryption::None,
            0x20 => StoreDataEncryption::ApplicationDependent,
            0x60 => StoreDataEncryption::Encrypted,
            _ => return Err(bad_p1p2(cmd, "STORE DATA")),
        };
        let structure = match p1 & 0x18 {
            0x00 => StoreDataStructure::None,
            0x08 => StoreDataStructure::Dgi,
            0x10 => StoreDataStructure::BerTlv,
            _ => return Err(bad_p1p2(cmd, "STORE DATA")),
        };
        if p1 & 0x06 != 0 {
            return Err(bad_p1p2(cmd, "STORE DATA"));
        }
        Ok(Self {
            last: p1 & 0x80 != 0,
            encryption,
            structure,
            response_expected: p1 & 0x01 != 0,
            block: cmd.p2,
            data: cmd.data.clone(),
        })
    }

    /// Host side: splits `data` into STORE DATA commands of at most `max_block` bytes,
    /// numbered from `00`, the last one flagged. Fails if `max_block` is 0 or more than
    /// 256 blocks are needed. Empty `data` gives one empty last block.
    pub fn blocks(
        data: &[u8],
        max_block: usize,
        encryption: StoreDataEncryption,
        structure: StoreDataStructure,
    ) -> Result<Vec<Command>> {
        if max_block == 0 {
            return Err(Error::Encoding("STORE DATA block size of 0".into()));
        }
        let n = data.len().div_ceil(max_block).max(1);
        if n > 256 {
            return Err(Error::Encoding(format!(
                "{n} STORE DATA blocks needed; P2 allows 256"
            )));
        }
        (0..n)
            .map(|i| {
                let chunk = data
                    .get(i * max_block..((i + 1) * max_block).min(data.len()))
                    .unwrap_or(&[]);
                StoreData {
                    last: i + 1 == n,
                    encryption,
                    structure,
                    response_expected: false,
                    block: i as u8,
                    data: chunk.to_vec(),
                }
                .to_command()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::hex;

    #[test]
    fn p1_bits_and_blocks() {
        let cmds = StoreData::blocks(
            &[0xAB; 300],
            200,
            StoreDataEncryption::Encrypted,
            StoreDataStructure::Dgi,
        )
        .unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(hex(&cmds[0].to_bytes().unwrap()[..5]), "80E26800C8");
        assert_eq!((cmds[1].p1, cmds[1].p2, cmds[1].data.len()), (0xE8, 1, 100));
        for c in &cmds {
            assert_eq!(StoreData::parse(c).unwrap().to_command().unwrap(), *c);
        }
        assert!(StoreData::parse(&Command::new(0x80, 0xE2, 0x40, 0)).is_err());
    }
}
