//! LOAD (GP 2.3.1 §11.6): splitting a load file into blocks on the host, and
//! reassembling and reading it on the card.

use apdu::Command;

use super::{bad_p1p2, expect_ins, ins, CLA_GP};
use crate::aid::Aid;
use apdu::tlv::{self, Tag};

use crate::reader::{tlv_children, tlv_error};
use crate::{Error, Result};

/// One LOAD command: `80 E8 P1 P2 Lc block 00`, P1 `80` on the last block, P2 the block number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    /// P1 b8: last block.
    pub last: bool,
    /// P2: block number, from `00`.
    pub block: u8,
    /// This block of the load file structure.
    pub data: Vec<u8>,
}

impl Load {
    /// The command (case 4).
    pub fn to_command(&self) -> Result<Command> {
        Ok(Command::new(
            CLA_GP,
            ins::LOAD,
            if self.last { 0x80 } else { 0x00 },
            self.block,
        )
        .with_data(self.data.clone())
        .with_le(256))
    }

    /// Reads LOAD: P1 `00` or `80`, non-empty data.
    pub fn parse(cmd: &Command) -> Result<Self> {
        expect_ins(cmd, ins::LOAD, "LOAD")?;
        let last = match cmd.p1 {
            0x00 => false,
            0x80 => true,
            _ => return Err(bad_p1p2(cmd, "LOAD")),
        };
        if cmd.data.is_empty() {
            return Err(Error::FieldLength {
                context: "LOAD",
                field: "block",
                len: 0,
                expected: "at least 1",
            });
        }
        Ok(Self {
            last,
            block: cmd.p2,
            data: cmd.data.clone(),
        })
    }
}

/// A DAP block: `E2 { 4F security domain AID, C3 signature }` (GP 2.3.1 §11.6.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DapBlock {
    /// The security domain that verifies this DAP.
    pub security_domain: Aid,
    /// The signature over the load file data block hash.
    pub signature: Vec<u8>,
}

impl DapBlock {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut v = tlv::encode(Tag::new(0x4F), self.security_domain.as_bytes());
        tlv::encode_into(&mut v, Tag::new(0xC3), &self.signature);
        tlv::encode_into(out, Tag::new(0xE2), &v);
    }
}

/// The load file as sent by LOAD: optional DAP blocks, then the load file data block
/// in `C4` (or `D4` when ciphered, GP 2.3.1 §11.6.2.3 and Amendment A).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFileStructure {
    /// DAP blocks, in order.
    pub dap_blocks: Vec<DapBlock>,
    /// The load file data block (the CAP components for Java Card).
    pub data_block: Vec<u8>,
    /// `true` when the data block came in `D4` (ciphered load file data block).
    pub ciphered: bool,
}

impl LoadFileStructure {
    /// A plain load file without DAP blocks.
    pub fn new(data_block: Vec<u8>) -> Self {
        Self {
            dap_blocks: Vec::new(),
            data_block,
            ciphered: false,
        }
    }

    /// Encodes `E2…`, then `C4`/`D4 len data`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.data_block.len() + 8);
        for d in &self.dap_blocks {
            d.encode(&mut v);
        }
        tlv::encode_into(
            &mut v,
            Tag::new(if self.ciphered { 0xD4 } else { 0xC4 }),
            &self.data_block,
        );
        v
    }

    /// Reads the concatenated LOAD blocks.
    pub fn parse(data: &[u8]) -> Result<Self> {
        const CTX: &str = "load file";
        let mut dap_blocks = Vec::new();
        for t in tlv::iter(data) {
            let t = t.map_err(tlv_error(CTX))?;
            match t.tag().value() {
                0xE2 => {
                    let mut sd = None;
                    let mut sig = None;
                    for f in tlv_children(&t, CTX)? {
                        match f.tag().value() {
                            0x4F => sd = Some(Aid::new(f.value())?),
                            0xC3 => sig = Some(f.value().to_vec()),
                            found => {
                                return Err(Error::UnexpectedTag {
                                    context: CTX,
                                    expected: 0xC3,
                                    found,
                                    offset: f.offset(),
                                })
                            }
                        }
                    }
                    dap_blocks.push(DapBlock {
                        security_domain: sd.ok_or(Error::MissingTag {
                            context: CTX,
                            tag: 0x4F,
                        })?,
                        signature: sig.ok_or(Error::MissingTag {
                            context: CTX,
                            tag: 0xC3,
                        })?,
                    });
                }
                0xC4 | 0xD4 => {
                    let end = t.offset() + t.raw().len();
                    if end != data.len() {
                        return Err(Error::TrailingBytes {
                            context: CTX,
                            offset: end,
                            count: data.len() - end,
                        });
                    }
                    return Ok(Self {
                        dap_blocks,
                        data_block: t.value().to_vec(),
                        ciphered: t.tag().value() == 0xD4,
                    });
                }
                found => {
                    return Err(Error::UnexpectedTag {
                        context: CTX,
                        expected: 0xC4,
                        found,
                        offset: t.offset(),
                    })
                }
            }
        }
        Err(Error::MissingTag {
            context: CTX,
            tag: 0xC4,
        })
    }
}

/// Splits `structure` into LOAD commands of at most `max_block` data bytes.
fn split(structure: &[u8], max_block: usize) -> Result<Vec<Command>> {
    if max_block == 0 || max_block > 65535 {
        return Err(Error::Encoding(format!(
            "LOAD block size {max_block} is outside 1..=65535"
        )));
    }
    let n = structure.len().div_ceil(max_block);
    if n > 256 {
        return Err(Error::Encoding(format!(
            "load file of {} bytes needs {n} LOAD blocks of {max_block} bytes; P2 allows 256",
            structure.len()
        )));
    }
    structure
        .chunks(max_block)
        .enumerate()
        .map(|(i, chunk)| {
            Load {
                last: i + 1 == n,
                block: i as u8,
                data: chunk.to_vec(),
            }
            .to_command()
        })
        .collect()
}

/// The LOAD commands for a load file data block: it is wrapped as `C4 len data` (BER
/// length) and cut into blocks of `max_block` bytes, the plain block size the caller
/// computed from the secure channel overhead (e.g. 255 − 8 for C-MAC, less for C-DEC
/// padding). Blocks are numbered from `00`; the last has P1 `80`.
///
/// Fails if `max_block` is 0 or the load file needs more than 256 blocks.
pub fn load_blocks(load_file: &[u8], max_block: usize) -> Result<Vec<Command>> {
    load_blocks_with_dap(load_file, &[], max_block)
}

/// As [`load_blocks`], with DAP blocks (`E2`) before the `C4` object.
pub fn load_blocks_with_dap(
    load_file: &[u8],
    dap_blocks: &[DapBlock],
    max_block: usize,
) -> Result<Vec<Command>> {
    let s = LoadFileStructure {
        dap_blocks: dap_blocks.to_vec(),
        data_block: load_file.to_vec(),
        ciphered: false,
    };
    split(&s.to_bytes(), max_block)
}

/// Card side: collects LOAD blocks in order and reads the load file after the last one.
#[derive(Debug, Clone, Default)]
pub struct LoadAssembler {
    buf: Vec<u8>,
    next_block: u16,
    done: bool,
}

impl LoadAssembler {
    /// An empty assembler, expecting block `00`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes received so far.
    pub fn received(&self) -> usize {
        self.buf.len()
    }

    /// Adds a block. Returns the load file after the last block, `None` before it.
    /// Fails on a block out of sequence or after the last block (the card then answers
    /// `6A86` or `6985` and aborts the load).
    pub fn push(&mut self, load: &Load) -> Result<Option<LoadFileStructure>> {
        if self.done {
            return Err(Error::InvalidValue {
                context: "LOAD",
                field: "block number",
                reason: "block received after the last block".into(),
            });
        }
        if u16::from(load.block) != self.next_block {
            return Err(Error::InvalidValue {
                context: "LOAD",
                field: "block number",
                reason: format!(
                    "expected block {:02X}, got {:02X}",
                    self.next_block, load.block
                ),
            });
        }
        self.buf.extend_from_slice(&load.data);
        self.next_block += 1;
        if load.last {
            self.done = true;
            return LoadFileStructure::parse(&self.buf).map(Some);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::hex;

    #[test]
    fn blocks_are_numbered_and_last_is_flagged() {
        let lf: Vec<u8> = (0..=255u8).cycle().take(500).collect();
        let cmds = load_blocks(&lf, 240).unwrap();
        assert_eq!(cmds.len(), 3); // 4 + 500 bytes
        assert_eq!(hex(&cmds[0].to_bytes().unwrap()[..9]), "80E80000F0C48201F4");
        assert_eq!((cmds[1].p1, cmds[1].p2), (0x00, 0x01));
        assert_eq!(
            (cmds[2].p1, cmds[2].p2, cmds[2].data.len()),
            (0x80, 0x02, 24)
        );
        let mut a = LoadAssembler::new();
        let mut out = None;
        for c in &cmds {
            out = a.push(&Load::parse(c).unwrap()).unwrap();
        }
        assert_eq!(out.unwrap().data_block, lf);
    }

    #[test]
    fn limits() {
        assert!(load_blocks(&[1, 2, 3], 0).is_err());
        assert!(load_blocks(&[0; 300], 1).is_err());
        let mut a = LoadAssembler::new();
        assert!(a
            .push(&Load {
                last: false,
                block: 1,
                data: vec![0xC4]
            })
            .is_err());
    }
}
