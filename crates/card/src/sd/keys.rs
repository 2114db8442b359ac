//! PUT KEY (GP 2.3.1 §11.8; Amendment D §7.2 for AES keys; Table 11-16 and Amendment F for
//! asymmetric keys).

use apdu::{Command, Response, StatusWord};
use scp::put_key::{Curve, KeyData};

use super::Sw;
use crate::card::VirtualCard;
use crate::channel::Secure;
use crate::model::{key_type, Aid, KeySet, StoredKey};

/// `9484`: algorithm not supported; `9485`: invalid key check value (GP 2.3.1 §11.8, ISO/IEC 7816-4 `94xx`).
pub(crate) const SW_ALGORITHM: StatusWord = StatusWord(0x9484);
const SW_BAD_KCV: StatusWord = StatusWord(0x9485);

/// Checks that a point is on a curve this card computes with (P-256, P-384).
pub(crate) fn valid_point(curve: Curve, point: &[u8]) -> bool {
    match curve {
        Curve::P256 => p256::PublicKey::from_sec1_bytes(point).is_ok(),
        Curve::P384 => p384::PublicKey::from_sec1_bytes(point).is_ok(),
        _ => false,
    }
}

/// The uncompressed public point of a private scalar, `None` if the scalar is not valid.
pub(crate) fn public_of(curve: Curve, scalar: &[u8]) -> Option<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToSec1Point;
    match curve {
        Curve::P256 => p256::SecretKey::from_slice(scalar)
            .ok()
            .map(|k| k.public_key().to_sec1_point(false).as_bytes().to_vec()),
        Curve::P384 => p384::SecretKey::from_slice(scalar)
            .ok()
            .map(|k| k.public_key().to_sec1_point(false).as_bytes().to_vec()),
        _ => None,
    }
}

impl VirtualCard {
    /// PUT KEY: P1 = KVN to replace (`00`: add), b8 "more commands"; P2 b7-b1 =
    /// identifier of the first key, b8 = several keys. Secret keys arrive encrypted with the
    /// session's DEK (SCP02: session DEK, 3DES-ECB; SCP03: static Key-DEK, AES-CBC; SCP11:
    /// S-DEK) and each key check value sent is verified; ECC private keys are encrypted the
    /// same way; public keys come in clear. A key split over several commands (P1 b8) is
    /// put together first. The answer is the new KVN and the 3-byte KCVs of the secret keys.
    pub(super) fn put_key(&mut self, ch: usize, sd: &Aid, cmd: &Command) -> Sw<Response> {
        let more = cmd.p1 & 0x80 != 0;
        let replace = cmd.p1 & 0x7F;
        let first_id = cmd.p2 & 0x7F;
        let multiple = cmd.p2 & 0x80 != 0;
        if first_id == 0 {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        let c = self.channel_mut(ch).ok_or(StatusWord::UNKNOWN)?;
        // GP 2.3.1 §11.8.2.1: several PUT KEY commands, each starting with the new KVN.
        let data = match c.put_key.take() {
            Some((p1, p2, mut so_far)) => {
                if p1 & 0x7F != replace || p2 != cmd.p2 || cmd.data.first() != so_far.first() {
                    return Err(StatusWord::WRONG_DATA);
                }
                so_far.extend_from_slice(cmd.data.get(1..).unwrap_or_default());
                so_far
            }
            None => cmd.data.clone(),
        };
        if data.len() > 0x1_0000 {
            return Err(StatusWord::WRONG_DATA);
        }
        if more {
            if data.is_empty() {
                return Err(StatusWord::WRONG_DATA);
            }
            c.put_key = Some((cmd.p1, cmd.p2, data));
            return Ok(Response::ok(Vec::new()));
        }
        // A TLS PSK (SCP81, key type 85) is not a key `scp` knows.
        if let Some(r) = self.put_psk(ch, sd, replace, first_id, &data) {
            return r;
        }
        let (new_kvn, blocks) = scp::put_key::parse_key_data(&data).map_err(|e| match e {
            scp::Error::Unsupported(_) => SW_ALGORITHM,
            _ => StatusWord::WRONG_DATA,
        })?;
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
            keys.push(match b {
                KeyData::Secret(b) => {
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
                    StoredKey::secret(id, key.kind().key_type(), key.expose())
                }
                KeyData::EccPublic { curve, point } => {
                    if !matches!(curve, Curve::P256 | Curve::P384) {
                        return Err(SW_ALGORITHM);
                    }
                    if !valid_point(*curve, point) {
                        return Err(StatusWord::WRONG_DATA);
                    }
                    StoredKey {
                        curve: Some(curve.reference()),
                        ..StoredKey::secret(id, key_type::ECC_PUBLIC, point)
                    }
                }
                KeyData::EccPrivate { curve, encrypted } => {
                    if !matches!(curve, Curve::P256 | Curve::P384) {
                        return Err(SW_ALGORITHM);
                    }
                    let clear = session
                        .decrypt_secret(encrypted)
                        .map_err(|_| StatusWord::WRONG_DATA)?;
                    let scalar = clear
                        .get(..curve.field_len())
                        .ok_or(StatusWord::WRONG_DATA)?;
                    public_of(*curve, scalar).ok_or(StatusWord::WRONG_DATA)?;
                    StoredKey {
                        curve: Some(curve.reference()),
                        ..StoredKey::secret(id, key_type::ECC_PRIVATE, scalar)
                    }
                }
                KeyData::RsaPublic { modulus, exponent } => StoredKey {
                    exponent: exponent.clone(),
                    ..StoredKey::secret(id, key_type::RSA_PUBLIC, modulus)
                },
            });
        }
        let ids: Vec<u8> = keys.iter().map(|k| k.id).collect();
        self.store_keys(sd, replace, new_kvn, keys)?;
        // A certificate chain belongs to the key it was stored for: a new key under the
        // same reference has none yet.
        if let Ok(d) = self.sd_data_mut(sd) {
            for id in ids {
                d.scp11
                    .certificates
                    .remove(&crate::model::key_ref(id, new_kvn));
            }
        }
        self.forget_stale_scp11(sd);
        Ok(Response::ok(scp::put_key::response_data(new_kvn, &kcvs)))
    }

    /// Adds keys under `new_kvn` (`replace` = 0) or replaces the keys with the same
    /// identifiers in key version `replace`, which become version `new_kvn` (GP 2.3.1
    /// §11.8.2.1). Adding a (KID, KVN) pair that exists is refused (`6A80`); replacing in a
    /// version that does not exist is `6A88`. Keys of other identifiers in the replaced
    /// version keep their version.
    pub(crate) fn store_keys(
        &mut self,
        sd: &Aid,
        replace: u8,
        new_kvn: u8,
        keys: Vec<StoredKey>,
    ) -> Sw<()> {
        let data = self.sd_data_mut(sd)?;
        let ids: Vec<u8> = keys.iter().map(|k| k.id).collect();
        let taken = |sets: &[KeySet], kvn: u8| {
            sets.iter()
                .filter(|s| s.kvn == kvn)
                .any(|s| s.keys.iter().any(|k| ids.contains(&k.id)))
        };
        if replace == 0 {
            if taken(&data.key_sets, new_kvn) {
                return Err(StatusWord::WRONG_DATA);
            }
            match data.key_sets.iter_mut().find(|s| s.kvn == new_kvn) {
                Some(set) => {
                    set.keys.extend(keys);
                    set.keys.sort_by_key(|k| k.id);
                }
                None => data.key_sets.push(KeySet {
                    kvn: new_kvn,
                    keys,
                    failures: 0,
                }),
            }
            return Ok(());
        }
        let idx = data
            .key_sets
            .iter()
            .position(|s| s.kvn == replace)
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        if new_kvn != replace && taken(&data.key_sets, new_kvn) {
            return Err(StatusWord::WRONG_DATA);
        }
        let set = &mut data.key_sets[idx];
        set.keys.retain(|old| !ids.contains(&old.id));
        if new_kvn == replace || set.keys.is_empty() {
            // The whole version is replaced (or renamed) in place: its position (the
            // default key set is the first) and a fresh failure count.
            set.keys.extend(keys);
            set.keys.sort_by_key(|k| k.id);
            set.kvn = new_kvn;
            set.failures = 0;
            // Merge with another set already holding new_kvn, if any.
            if let Some(other) = data
                .key_sets
                .iter()
                .enumerate()
                .position(|(i, s)| i != idx && s.kvn == new_kvn)
            {
                let moved = data.key_sets.remove(other);
                let idx = if other < idx { idx - 1 } else { idx };
                data.key_sets[idx].keys.extend(moved.keys);
                data.key_sets[idx].keys.sort_by_key(|k| k.id);
            }
        } else {
            match data.key_sets.iter_mut().find(|s| s.kvn == new_kvn) {
                Some(set) => {
                    set.keys.extend(keys);
                    set.keys.sort_by_key(|k| k.id);
                }
                None => data.key_sets.push(KeySet {
                    kvn: new_kvn,
                    keys,
                    failures: 0,
                }),
            }
        }
        Ok(())
    }
}
