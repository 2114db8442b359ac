//! Data Grouping Identifiers: the "DGI format" of STORE DATA (GP 2.3.1 §11.11.2.2, P1
//! b5-b4 = `01`; EMV Card Personalization Specification v1.1, data grouping). A DGI is a 2-byte
//! identifier, a length (one byte `00`–`FE`, or `FF` and two bytes) and that many bytes.
//! EMV CPS reserves DGIs `8000`–`8FFF` for data encrypted under the security domain's DEK,
//! which the security domain decrypts before the application gets them.
//!
//! A DGI longer than what one STORE DATA carries continues in the next command (EMV CPS:
//! the personalisation device splits it, the application reassembles it), so the card side
//! has [`parse_dgi_prefix`], which stops before an incomplete last DGI, and the host side
//! [`dgi_store_data`], which packs DGIs into numbered STORE DATA commands, splitting plain
//! DGIs where needed and keeping each encrypted one whole in a command of its own kind.

use super::store_data::{StoreData, StoreDataEncryption, StoreDataStructure};
use crate::{Error, Result};

const CONTEXT: &str = "DGI";

/// The most a DGI holds (the 2-byte length).
pub const MAX_DGI_LEN: usize = 0xFFFF;

/// One data group: identifier and value.
#[derive(Clone, PartialEq, Eq)]
pub struct Dgi {
    /// The identifier (e.g. `0101`; `8xxx`: encrypted).
    pub id: u16,
    /// The value (for an encrypted DGI, the ciphertext).
    pub value: Vec<u8>,
}

impl std::fmt::Debug for Dgi {
    /// Shows the identifier and length only: a DGI may hold a key, encrypted or not.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dgi({:04X}, {} bytes)", self.id, self.value.len())
    }
}

impl Dgi {
    /// A DGI.
    pub fn new(id: u16, value: Vec<u8>) -> Self {
        Dgi { id, value }
    }

    /// Whether EMV CPS says the value is encrypted under the DEK (`8000`–`8FFF`).
    pub fn is_encrypted(&self) -> bool {
        is_encrypted_id(self.id)
    }

    /// Identifier, length and value.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = header(self.id, self.value.len())?;
        out.extend_from_slice(&self.value);
        Ok(out)
    }
}

/// Whether a DGI identifier is in EMV CPS's encrypted range `8000`–`8FFF`.
pub fn is_encrypted_id(id: u16) -> bool {
    id & 0xF000 == 0x8000
}

/// Identifier and length of a DGI of `len` bytes (the shortest length form).
pub fn header(id: u16, len: usize) -> Result<Vec<u8>> {
    let mut out = id.to_be_bytes().to_vec();
    match u8::try_from(len) {
        Ok(n) if n < 0xFF => out.push(n),
        _ => {
            let n = u16::try_from(len).map_err(|_| {
                Error::Encoding(format!(
                    "DGI {id:04X} of {len} bytes (at most {MAX_DGI_LEN})"
                ))
            })?;
            out.push(0xFF);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    Ok(out)
}

/// Reads the DGI at the start of `data`: `Ok(Some((dgi, bytes used)))`, `Ok(None)` if
/// `data` ends inside it.
fn read_one(data: &[u8]) -> Option<(Dgi, usize)> {
    let id = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
    let (len, hdr) = match *data.get(2)? {
        0xFF => {
            let l = data.get(3..5)?;
            (usize::from(u16::from_be_bytes([l[0], l[1]])), 5)
        }
        l => (usize::from(l), 3),
    };
    let value = data.get(hdr..hdr + len)?;
    Some((Dgi::new(id, value.to_vec()), hdr + len))
}

/// Reads the complete DGIs at the start of `data` and how many bytes they take; the rest
/// (`data[used..]`) is the beginning of a DGI that continues in the next STORE DATA.
pub fn parse_dgi_prefix(data: &[u8]) -> (Vec<Dgi>, usize) {
    let mut out = Vec::new();
    let mut used = 0;
    while let Some((dgi, n)) = read_one(&data[used..]) {
        out.push(dgi);
        used += n;
    }
    (out, used)
}

/// Reads a data field that holds whole DGIs only.
pub fn parse_dgis(data: &[u8]) -> Result<Vec<Dgi>> {
    let (dgis, used) = parse_dgi_prefix(data);
    if used != data.len() {
        return Err(Error::Truncated {
            context: CONTEXT,
            field: "the last DGI",
            offset: used,
            needed: needed(&data[used..]),
        });
    }
    Ok(dgis)
}

/// How many more bytes the incomplete DGI `rest` needs (at least 1).
fn needed(rest: &[u8]) -> usize {
    let hdr = match rest.get(2) {
        Some(0xFF) => 5,
        _ => 3,
    };
    let len = match (rest.get(2), rest.get(3..5)) {
        (Some(0xFF), Some(l)) => usize::from(u16::from_be_bytes([l[0], l[1]])),
        (Some(0xFF), None) | (None, _) => 0,
        (Some(l), _) => usize::from(*l),
    };
    (hdr + len).saturating_sub(rest.len()).max(1)
}

/// The STORE DATA commands (GP 2.3.1 §11.11, DGI format) that send `dgis` in order, each
/// data field at most `max_block` bytes, numbered from `00`, the last one flagged.
///
/// DGIs `8000`–`8FFF` hold data already encrypted under the DEK: each goes whole into a
/// command with P1 b7-b6 = `11` (consecutive ones share a command while they fit), since
/// the security domain decrypts command by command; a longer one is an error. The others go
/// into commands without the encryption flag, packed back to back and split across
/// commands where a DGI does not fit.
pub fn dgi_store_data(dgis: &[Dgi], max_block: usize) -> Result<Vec<StoreData>> {
    if max_block < 5 {
        return Err(Error::Encoding(format!(
            "STORE DATA block size {max_block} cannot carry a DGI header"
        )));
    }
    // (encrypted, data field) of each command.
    let mut blocks: Vec<(bool, Vec<u8>)> = Vec::new();
    for dgi in dgis {
        let bytes = dgi.to_bytes()?;
        let enc = dgi.is_encrypted();
        if enc && bytes.len() > max_block {
            return Err(Error::Encoding(format!(
                "encrypted DGI {:04X} is {} bytes with its header; one STORE DATA carries {max_block}",
                dgi.id,
                bytes.len()
            )));
        }
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let room = match blocks.last() {
                Some((e, b)) if *e == enc => max_block - b.len(),
                _ => 0,
            };
            // An encrypted DGI is never split: it starts a new command if it does not fit.
            if room == 0 || (enc && room < rest.len()) {
                blocks.push((enc, Vec::with_capacity(max_block)));
                continue;
            }
            let take = room.min(rest.len());
            if let Some((_, b)) = blocks.last_mut() {
                b.extend_from_slice(&rest[..take]);
            }
            rest = &rest[take..];
        }
    }
    if blocks.len() > 256 {
        return Err(Error::Encoding(format!(
            "{} STORE DATA blocks needed; P2 allows 256",
            blocks.len()
        )));
    }
    let n = blocks.len();
    Ok(blocks
        .into_iter()
        .enumerate()
        .map(|(i, (enc, data))| StoreData {
            last: i + 1 == n,
            encryption: if enc {
                StoreDataEncryption::Encrypted
            } else {
                StoreDataEncryption::None
            },
            structure: StoreDataStructure::Dgi,
            response_expected: false,
            block: i as u8,
            data,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::parse_hex as h;

    #[test]
    fn codec() {
        let d = parse_dgis(&h("0101 02 AABB 8101 00 9F70 FF0001 11").unwrap()).unwrap();
        assert_eq!(d[0], Dgi::new(0x0101, vec![0xAA, 0xBB]));
        assert!(!d[0].is_encrypted() && d[1].is_encrypted());
        assert_eq!(d[2], Dgi::new(0x9F70, vec![0x11]));
        assert_eq!(
            Dgi::new(0x0102, vec![0; 300]).to_bytes().unwrap()[..5],
            [0x01, 0x02, 0xFF, 0x01, 0x2C]
        );
        assert_eq!(
            Dgi::new(0x0102, vec![0; 254]).to_bytes().unwrap()[..3],
            [0x01, 0x02, 0xFE]
        );
        assert!(Dgi::new(1, vec![0; 65536]).to_bytes().is_err());
        let e = parse_dgis(&h("0101 03 AABB").unwrap()).unwrap_err();
        assert!(matches!(e, Error::Truncated { needed: 1, .. }), "{e}");
        assert!(parse_dgis(&h("01").unwrap()).is_err());
        assert_eq!(parse_dgi_prefix(&h("0101 01 AA 0102 FF00").unwrap()).1, 4);
        assert_eq!(format!("{:?}", d[0]), "Dgi(0101, 2 bytes)");
    }

    #[test]
    fn packing() {
        let cert = Dgi::new(0x0101, vec![0x30; 400]);
        let key = Dgi::new(0x8101, vec![0x5A; 16]);
        let cmds = dgi_store_data(&[cert.clone(), key.clone()], 200).unwrap();
        // 405 plain bytes (header FF 01 90): 200 + 200 + 5, then the encrypted DGI alone.
        let lens: Vec<usize> = cmds.iter().map(|c| c.data.len()).collect();
        assert_eq!(lens, vec![200, 200, 5, 19]);
        assert_eq!(
            cmds.iter()
                .map(|c| c.to_command().unwrap().p1)
                .collect::<Vec<_>>(),
            vec![0x08, 0x08, 0x08, 0xE8]
        );
        assert_eq!(
            cmds.iter().map(|c| c.block).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        let joined: Vec<u8> = cmds.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(parse_dgis(&joined).unwrap(), vec![cert, key.clone()]);
        // Two encrypted DGIs share a command while they fit, and are never split.
        let cmds = dgi_store_data(&[key.clone(), key.clone(), key.clone()], 40).unwrap();
        assert_eq!(
            cmds.iter().map(|c| c.data.len()).collect::<Vec<_>>(),
            vec![38, 19]
        );
        assert!(dgi_store_data(&[Dgi::new(0x8001, vec![0; 40])], 40).is_err());
        assert!(dgi_store_data(&[key], 4).is_err());
        assert_eq!(dgi_store_data(&[], 200).unwrap(), vec![]);
    }
}
