//! PUT KEY (GP 2.3.1 §11.8; Amendment D §7.2 for AES keys).

use apdu::{Command, Response, StatusWord};

use super::Sw;
use crate::card::VirtualCard;
use crate::channel::Secure;
use crate::model::{Aid, KeySet, Secret, StoredKey};

/// `9484`: algorithm not supported; `9485`: invalid key check value (GP 2.3.1 §11.8, ISO/IEC 7816-4 `94xx`).
const SW_ALGORITHM: StatusWord = StatusWord(0x9484);
const SW_BAD_KCV: StatusWord = StatusWord(0x9485);

impl VirtualCard {
    /// PUT KEY: P1 = KVN to replace (`00`: add a new key set), b8 "more commands"; P2 b7-b1 =
    /// identifier of the first key, b8 = several keys. Keys arrive encrypted with the
    /// session's DEK (SCP02: session DEK, 3DES-ECB; SCP03: static Key-DEK, AES-CBC); each
    /// key check value sent is verified. The answer is the new KVN and the 3-byte KCVs.
    pub(super) fn put_key(&mut self, ch: usize, sd: &Aid, cmd: &Command) -> Sw<Response> {
        let replace = cmd.p1 & 0x7F;
        let first_id = cmd.p2 & 0x7F;
        let multiple = cmd.p2 & 0x80 != 0;
        if first_id == 0 {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        let (new_kvn, blocks) =
            scp::put_key::parse_key_set_data(&cmd.data).map_err(|_| StatusWord::WRONG_DATA)?;
        if !(0x01..=0x7F).contains(&new_kvn) || blocks.is_empty() || (!multiple && blocks.len() > 1)
        {
            return Err(StatusWord::WRONG_DATA);
        }
        if first_id as usize + blocks.len() - 1 > 0x7F {
            return Err(StatusWord::WRONG_DATA);
        }
        // Decrypt and check every key before changing anything.
        let Some(Secure::Open { session, .. }) = self.channel(ch).map(|c| &c.secure) else {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        };
        let mut keys = Vec::with_capacity(blocks.len());
        let mut kcvs = Vec::with_capacity(blocks.len());
        for (b, id) in blocks.iter().zip(first_id..) {
            let key = session
                .decrypt_key(b.kind, &b.encrypted, b.key_len)
                .map_err(|e| match e {
                    scp::Error::Unsupported(_) => SW_ALGORITHM,
                    _ => StatusWord::WRONG_DATA,
                })?;
            let kcv = key.kcv();
            if !b.kcv.is_empty() && (b.kcv.len() > 3 || b.kcv[..] != kcv[..b.kcv.len()]) {
                return Err(SW_BAD_KCV);
            }
            kcvs.push(kcv);
            keys.push(StoredKey {
                id,
                key_type: key.kind().key_type(),
                value: Secret::new(key.expose()),
            });
        }
        let data = self.sd_data_mut(sd)?;
        if replace == 0 {
            if data.key_sets.iter().any(|s| s.kvn == new_kvn) {
                return Err(StatusWord::WRONG_DATA);
            }
            data.key_sets.push(KeySet {
                kvn: new_kvn,
                keys,
                failures: 0,
            });
        } else {
            if new_kvn != replace && data.key_sets.iter().any(|s| s.kvn == new_kvn) {
                return Err(StatusWord::WRONG_DATA);
            }
            let set = data
                .key_sets
                .iter_mut()
                .find(|s| s.kvn == replace)
                .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
            for k in keys {
                set.keys.retain(|old| old.id != k.id);
                set.keys.push(k);
            }
            set.keys.sort_by_key(|k| k.id);
            set.kvn = new_kvn;
            set.failures = 0;
        }
        Ok(Response::ok(scp::put_key::response_data(new_kvn, &kcvs)))
    }
}
