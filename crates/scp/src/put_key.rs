//! PUT KEY data fields (GP 2.3.1 §11.8).

use crate::{Error, HostSession, KeyKind, StaticKeys};

/// One key data block of PUT KEY as received by the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBlock {
    /// Key type (`80` → 3DES, `88` → AES).
    pub kind: KeyKind,
    /// The key, encrypted under the DEK.
    pub encrypted: Vec<u8>,
    /// The length of the clear key.
    pub key_len: usize,
    /// The key check value (may be empty).
    pub kcv: Vec<u8>,
}

/// The PUT KEY data field that replaces or adds a whole key set.
pub fn key_set_data(
    new_kvn: u8,
    keys: &StaticKeys,
    session: &HostSession,
) -> Result<Vec<u8>, Error> {
    let _ = (new_kvn, keys, session);
    Err(Error::Unsupported("not implemented yet".into()))
}

/// Reads a PUT KEY data field (card side).
pub fn parse_key_set_data(data: &[u8]) -> Result<(u8, Vec<KeyBlock>), Error> {
    let _ = data;
    Err(Error::Unsupported("not implemented yet".into()))
}

/// The PUT KEY response data: KVN then the KCVs.
pub fn response_data(kvn: u8, kcvs: &[[u8; 3]]) -> Vec<u8> {
    let mut v = vec![kvn];
    for k in kcvs {
        v.extend_from_slice(k);
    }
    v
}

/// Checks the PUT KEY response data against the key set sent (host side).
pub fn check_response(data: &[u8], new_kvn: u8, keys: &StaticKeys) -> Result<(), Error> {
    let _ = (data, new_kvn, keys);
    Err(Error::Unsupported("not implemented yet".into()))
}
