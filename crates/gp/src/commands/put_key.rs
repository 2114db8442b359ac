//! PUT KEY header (GP 2.3.1 §11.8). The key data field is built by the `scp` crate.

use apdu::Command;

use super::{expect_ins, ins, CLA_GP};
use crate::{Error, Result};

/// PUT KEY: `80 D8 P1 P2 Lc KVN key-data… 00`.
///
/// P1 b7-b1 is the version of the key set being replaced (`00` adds a new key set),
/// P1 b8 "more PUT KEY commands"; P2 b7-b1 is the (first) key identifier, P2 b8 set
/// when several keys are in the command (GP 2.3.1 §11.8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutKey {
    /// Key version number being replaced, `0` for a new key set.
    pub old_version: u8,
    /// Key identifier of the first key (0..=127).
    pub key_id: u8,
    /// P2 b8: multiple keys.
    pub multiple: bool,
    /// P1 b8: more PUT KEY commands follow.
    pub more: bool,
    /// Data field: new KVN followed by key data blocks (opaque here).
    pub data: Vec<u8>,
}

impl PutKey {
    /// P1 and P2.
    pub fn p1p2(&self) -> Result<(u8, u8)> {
        if self.old_version > 0x7F || self.key_id > 0x7F {
            return Err(Error::Encoding(format!(
                "PUT KEY version {:02X} / key id {:02X} above 7F",
                self.old_version, self.key_id
            )));
        }
        Ok((
            self.old_version | if self.more { 0x80 } else { 0 },
            self.key_id | if self.multiple { 0x80 } else { 0 },
        ))
    }

    /// The command (case 4).
    pub fn to_command(&self) -> Result<Command> {
        let (p1, p2) = self.p1p2()?;
        Ok(Command::new(CLA_GP, ins::PUT_KEY, p1, p2)
            .with_data(self.data.clone())
            .with_le(256))
    }

    /// Reads the header; the data field must hold at least the new KVN.
    pub fn parse(cmd: &Command) -> Result<Self> {
        expect_ins(cmd, ins::PUT_KEY, "PUT KEY")?;
        if cmd.data.is_empty() {
            return Err(Error::Truncated {
                context: "PUT KEY",
                field: "key version number",
                offset: 0,
                needed: 1,
            });
        }
        Ok(Self {
            old_version: cmd.p1 & 0x7F,
            key_id: cmd.p2 & 0x7F,
            multiple: cmd.p2 & 0x80 != 0,
            more: cmd.p1 & 0x80 != 0,
            data: cmd.data.clone(),
        })
    }

    /// Card side: the response data, the new key version number followed by the key check
    /// values of the keys loaded (GP 2.3.1 §11.8.3.1).
    pub fn response(version: u8, check_values: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![version];
        for kcv in check_values {
            v.extend_from_slice(kcv);
        }
        v
    }

    /// Host side: splits the response data into the key version number and the key
    /// check values of `kcv_len` bytes each (3 for DES and AES keys).
    pub fn parse_response(data: &[u8], kcv_len: usize) -> Result<(u8, Vec<Vec<u8>>)> {
        let Some((&version, rest)) = data.split_first() else {
            return Err(Error::Truncated {
                context: "PUT KEY response",
                field: "key version number",
                offset: 0,
                needed: 1,
            });
        };
        if kcv_len == 0 || rest.len() % kcv_len != 0 {
            return Err(Error::FieldLength {
                context: "PUT KEY response",
                field: "key check values",
                len: rest.len(),
                expected: "a multiple of the key check value length",
            });
        }
        Ok((version, rest.chunks(kcv_len).map(<[u8]>::to_vec).collect()))
    }

    /// The new key version number (first data byte).
    pub fn new_version(&self) -> Option<u8> {
        self.data.first().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::hex;

    #[test]
    fn header_and_response() {
        let p = PutKey {
            old_version: 0,
            key_id: 1,
            multiple: true,
            more: false,
            data: vec![0x30, 0x88],
        };
        let c = p.to_command().unwrap();
        assert_eq!(
            hex(&c.to_bytes().unwrap()),
            "80D80081023088".to_string() + "00"
        );
        assert_eq!(PutKey::parse(&c).unwrap(), p);
        let r = PutKey::response(0x30, &[&[1, 2, 3], &[4, 5, 6]]);
        assert_eq!(
            PutKey::parse_response(&r, 3).unwrap(),
            (0x30, vec![vec![1, 2, 3], vec![4, 5, 6]])
        );
        assert!(PutKey::parse_response(&r[..5], 3).is_err());
        assert!(PutKey::parse_response(&[], 3).is_err());
        assert!(PutKey { key_id: 0x80, ..p }.to_command().is_err());
    }
}
