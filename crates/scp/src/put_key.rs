//! PUT KEY command data for whole key sets (GP 2.3.1 §11.8; Amendment D §7.2 for AES).
//!
//! Data field (§11.8.2.3): the new key version number, then one key
//! data block per key (ENC, MAC, DEK with key identifiers 1, 2, 3):
//!
//! | key | block |
//! |---|---|
//! | 3DES (`80`) | `80` L encrypted-key(L) `03` KCV(3) |
//! | AES (`88`)  | `88` L key-length(1) encrypted-key(L-1) `03` KCV(3) |
//!
//! The key is encrypted with the DEK of the session ([`HostSession::encrypt_key`]). L is a
//! BER length (one byte below 128, `81 xx` up to 255). The card answers with the key
//! version number followed by the three KCVs ([`response_data`]).

use crate::error::malformed;
use crate::{Error, HostSession, KeyKind, StaticKeys};
use subtle::ConstantTimeEq;

/// One key data block of PUT KEY as received by the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBlock {
    /// Key type (`80` → 3DES, `88` → AES).
    pub kind: KeyKind,
    /// The key, encrypted under the DEK (decrypt with [`crate::CardSession::decrypt_key`]).
    pub encrypted: Vec<u8>,
    /// The length of the clear key (AES: the key-length byte; 3DES: the encrypted length).
    pub key_len: usize,
    /// The key check value (empty if the host sent none).
    pub kcv: Vec<u8>,
}

fn push_len(v: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        v.push(len as u8);
    } else {
        v.push(0x81);
        v.push(len as u8);
    }
}

/// The PUT KEY data field that adds or replaces a whole key set: `new_kvn`, then ENC, MAC
/// and DEK encrypted under the session's DEK, each with its 3-byte KCV.
pub fn key_set_data(
    new_kvn: u8,
    keys: &StaticKeys,
    session: &HostSession,
) -> Result<Vec<u8>, Error> {
    let mut v = vec![new_kvn];
    for key in keys.iter() {
        let encrypted = session.encrypt_key(key)?;
        v.push(key.kind().key_type());
        match key.kind() {
            KeyKind::Des3 => {
                push_len(&mut v, encrypted.len());
            }
            KeyKind::Aes => {
                push_len(&mut v, encrypted.len() + 1);
                v.push(key.len() as u8);
            }
        }
        v.extend_from_slice(&encrypted);
        v.push(3);
        v.extend_from_slice(&key.kcv());
    }
    Ok(v)
}

/// The PUT KEY command (GP 2.3.1 §11.8.2.1): `80 D8 old-KVN 81 Lc data 00`. P1 is the key
/// version being replaced, `00` to add a new key set; P2 `81` = several keys starting at
/// key identifier 1. Wrap it with [`HostSession::wrap`] before sending.
pub fn command(old_kvn: u8, data: Vec<u8>) -> apdu::Command {
    apdu::Command::new(0x80, 0xD8, old_kvn, 0x81)
        .with_data(data)
        .with_le(256)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                malformed(
                    "PUT KEY data",
                    format!(
                        "{what} needs {n} bytes at offset {}, {} left",
                        self.pos,
                        self.data.len() - self.pos
                    ),
                )
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn byte(&mut self, what: &str) -> Result<u8, Error> {
        Ok(self.take(1, what)?[0])
    }
    fn len(&mut self) -> Result<usize, Error> {
        match self.byte("key data length")? {
            n if n < 0x80 => Ok(n as usize),
            0x81 => Ok(self.byte("key data length")? as usize),
            0x82 => {
                let b = self.take(2, "key data length")?;
                Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
            }
            n => Err(malformed(
                "PUT KEY data",
                format!("bad BER length byte {n:02X}"),
            )),
        }
    }
    fn done(&self) -> bool {
        self.pos == self.data.len()
    }
}

/// Reads a PUT KEY data field (card side): the new KVN and the key blocks in order.
/// Rejects unknown key types, truncated blocks and an empty key list; never panics.
pub fn parse_key_set_data(data: &[u8]) -> Result<(u8, Vec<KeyBlock>), Error> {
    let mut r = Reader { data, pos: 0 };
    let kvn = r.byte("key version number")?;
    let mut blocks = Vec::new();
    while !r.done() {
        let key_type = r.byte("key type")?;
        let len = r.len()?;
        let body = r.take(len, "key data")?;
        let (kind, key_len, encrypted) = match key_type {
            0x80 => (KeyKind::Des3, body.len(), body),
            0x88 => {
                let (&n, rest) = body.split_first().ok_or_else(|| {
                    malformed("PUT KEY data", "AES key data without its length byte")
                })?;
                (KeyKind::Aes, n as usize, rest)
            }
            0xFF => {
                return Err(Error::Unsupported(
                    "PUT KEY extended key format (key type FF)".into(),
                ))
            }
            t => return Err(Error::Unsupported(format!("PUT KEY key type {t:02X}"))),
        };
        if key_len > encrypted.len() {
            return Err(malformed(
                "PUT KEY data",
                format!(
                    "key length {key_len} exceeds its {} encrypted bytes",
                    encrypted.len()
                ),
            ));
        }
        let kcv_len = r.byte("KCV length")? as usize;
        let kcv = r.take(kcv_len, "KCV")?.to_vec();
        blocks.push(KeyBlock {
            kind,
            encrypted: encrypted.to_vec(),
            key_len,
            kcv,
        });
    }
    if blocks.is_empty() {
        return Err(malformed("PUT KEY data", "no key data block"));
    }
    Ok((kvn, blocks))
}

/// The PUT KEY response data (GP 2.3.1 §11.8.3.1): the key version number then the KCV of
/// each key.
pub fn response_data(kvn: u8, kcvs: &[[u8; 3]]) -> Vec<u8> {
    let mut v = vec![kvn];
    for k in kcvs {
        v.extend_from_slice(k);
    }
    v
}

/// Checks the PUT KEY response data against the key set sent (host side): KVN ‖ KCV(ENC) ‖
/// KCV(MAC) ‖ KCV(DEK). [`Error::KcvMismatch`] if a KCV or the KVN differs.
pub fn check_response(data: &[u8], new_kvn: u8, keys: &StaticKeys) -> Result<(), Error> {
    let want: Vec<[u8; 3]> = keys.iter().map(|k| k.kcv()).collect();
    let want = response_data(new_kvn, &want);
    if data.len() != want.len() {
        return Err(malformed(
            "PUT KEY response",
            format!(
                "{} bytes, want {} (KVN and three KCVs)",
                data.len(),
                want.len()
            ),
        ));
    }
    if bool::from(want.ct_eq(data)) {
        Ok(())
    } else {
        Err(Error::KcvMismatch)
    }
}
