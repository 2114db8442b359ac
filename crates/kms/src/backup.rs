//! The backup format, shared by every backend so that a backup restores into either.
//!
//! ```json
//! {
//!   "format": "cardwright-kms-backup/1",
//!   "created": "2025-01-31T12:00:00Z",
//!   "wrap": "AES-KW RFC 3394",
//!   "kek_kcv": "A1B2C3",
//!   "keys": [ { "category": "gold", "version": 1, "kind": "AES", "len": 16, "kcv": "E79C05",
//!               "created": "…", "expires": null, "retired": false,
//!               "wrapped": "<RFC 3394 AES key wrap of the key under the KEK>" } ],
//!   "mac": "<HMAC-SHA-256 over the canonical encoding>"
//! }
//! ```
//!
//! * Each key is wrapped with AES key wrap (RFC 3394 / NIST SP 800-38F KW, default IV
//!   `A6A6A6A6A6A6A6A6`) under the key-encryption key (KEK) itself, so any HSM's
//!   `C_UnwrapKey(CKM_AES_KEY_WRAP)` can take the keys back without Cardwright.
//! * The metadata (category, version, dates, retired flag) is bound by an HMAC-SHA-256
//!   (RFC 2104) whose key is HKDF-SHA-256 (RFC 5869) of the KEK with info
//!   `"cardwright-kms backup mac v1"`, over a length-prefixed canonical encoding; swapping
//!   two keys' categories or un-retiring a key is detected.
//! * `kek_kcv` (AES KCV of the KEK, GP 2.3.1 §B.6) tells which KEK a backup needs.

use crate::types::{parse_rfc3339, rfc3339};
use crate::Error;
use aes_kw::{KwAes128, KwAes192, KwAes256};
use hmac::{Hmac, KeyInit, Mac};
use scp::{Key, KeyKind};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

pub(crate) const FORMAT: &str = "cardwright-kms-backup/1";
const WRAP: &str = "AES-KW RFC 3394";
const MAC_INFO: &[u8] = b"cardwright-kms backup mac v1";

/// One base key in a backup: metadata and the wrapped key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackupEntry {
    pub category: String,
    pub version: u32,
    pub kind: KeyKind,
    pub len: usize,
    pub kcv: [u8; 3],
    pub created: i64,
    pub expires: Option<i64>,
    pub retired: bool,
    pub wrapped: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupFile {
    format: String,
    created: String,
    wrap: String,
    kek_kcv: String,
    keys: Vec<BackupKey>,
    mac: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupKey {
    category: String,
    version: u32,
    kind: String,
    len: usize,
    kcv: String,
    created: String,
    expires: Option<String>,
    retired: bool,
    wrapped: String,
}

pub(crate) fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Des3 => "3DES",
        KeyKind::Aes => "AES",
    }
}

pub(crate) fn kind_from_name(name: &str) -> Option<KeyKind> {
    match name {
        "3DES" => Some(KeyKind::Des3),
        "AES" => Some(KeyKind::Aes),
        _ => None,
    }
}

pub(crate) fn kcv3(text: &str) -> Option<[u8; 3]> {
    let v = apdu::parse_hex(text).ok()?;
    v.as_slice().try_into().ok()
}

fn check_kek(kek: &Key) -> Result<(), Error> {
    if kek.kind() == KeyKind::Aes {
        Ok(())
    } else {
        Err(Error::BadKek)
    }
}

/// RFC 3394 AES key wrap of `key` under `kek`, in software.
pub(crate) fn wrap(kek: &Key, key: &[u8]) -> Result<Vec<u8>, Error> {
    check_kek(kek)?;
    let mut out = vec![0u8; key.len() + 8];
    let bad = |_| Error::BadBackup("AES key wrap failed".into());
    let k = kek.expose();
    match k.len() {
        16 => KwAes128::new_from_slice(k)
            .map_err(|_| Error::BadKek)?
            .wrap_key(key, &mut out)
            .map(|_| ())
            .map_err(bad)?,
        24 => KwAes192::new_from_slice(k)
            .map_err(|_| Error::BadKek)?
            .wrap_key(key, &mut out)
            .map(|_| ())
            .map_err(bad)?,
        32 => KwAes256::new_from_slice(k)
            .map_err(|_| Error::BadKek)?
            .wrap_key(key, &mut out)
            .map(|_| ())
            .map_err(bad)?,
        _ => return Err(Error::BadKek),
    }
    Ok(out)
}

/// RFC 3394 unwrap; [`Error::BackupAuthentication`] if the integrity check fails.
pub(crate) fn unwrap(kek: &Key, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    check_kek(kek)?;
    if wrapped.len() < 24 || wrapped.len() & 7 != 0 {
        return Err(Error::BadBackup(format!(
            "wrapped key of {} bytes",
            wrapped.len()
        )));
    }
    let mut out = Zeroizing::new(vec![0u8; wrapped.len() - 8]);
    let k = kek.expose();
    let ok = match k.len() {
        16 => KwAes128::new_from_slice(k)
            .map_err(|_| Error::BadKek)?
            .unwrap_key(wrapped, &mut out)
            .is_ok(),
        24 => KwAes192::new_from_slice(k)
            .map_err(|_| Error::BadKek)?
            .unwrap_key(wrapped, &mut out)
            .is_ok(),
        32 => KwAes256::new_from_slice(k)
            .map_err(|_| Error::BadKek)?
            .unwrap_key(wrapped, &mut out)
            .is_ok(),
        _ => return Err(Error::BadKek),
    };
    if ok {
        Ok(out)
    } else {
        Err(Error::BackupAuthentication)
    }
}

fn mac_key(kek: &Key) -> Zeroizing<[u8; 32]> {
    let hk = hkdf::Hkdf::<Sha256>::new(None, kek.expose());
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA-256's 255×32 limit: cannot fail.
    let _ = hk.expand(MAC_INFO, okm.as_mut());
    okm
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(field);
}

/// The canonical encoding the MAC covers: every field, length-prefixed, in order.
fn canonical(created: i64, kek_kcv: &[u8; 3], entries: &[BackupEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    put(&mut out, FORMAT.as_bytes());
    put(&mut out, &created.to_be_bytes());
    put(&mut out, WRAP.as_bytes());
    put(&mut out, kek_kcv);
    put(&mut out, &(entries.len() as u64).to_be_bytes());
    for e in entries {
        put(&mut out, e.category.as_bytes());
        put(&mut out, &e.version.to_be_bytes());
        put(&mut out, &[e.kind.key_type()]);
        put(&mut out, &(e.len as u64).to_be_bytes());
        put(&mut out, &e.kcv);
        put(&mut out, &e.created.to_be_bytes());
        match e.expires {
            Some(x) => put(&mut out, &[&[1u8][..], &x.to_be_bytes()].concat()),
            None => put(&mut out, &[0u8]),
        }
        put(&mut out, &[u8::from(e.retired)]);
        put(&mut out, &e.wrapped);
    }
    out
}

fn hmac(kek: &Key) -> Result<Hmac<Sha256>, Error> {
    let key = mac_key(kek);
    <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_ref()).map_err(|_| Error::BadKek)
}

/// Serialises a backup.
pub(crate) fn encode(kek: &Key, created: i64, entries: &[BackupEntry]) -> Result<Vec<u8>, Error> {
    check_kek(kek)?;
    let kek_kcv = kek.kcv();
    let mut mac = hmac(kek)?;
    mac.update(&canonical(created, &kek_kcv, entries));
    let tag = mac.finalize().into_bytes();
    let file = BackupFile {
        format: FORMAT.into(),
        created: rfc3339(created),
        wrap: WRAP.into(),
        kek_kcv: apdu::hex(&kek_kcv),
        keys: entries
            .iter()
            .map(|e| BackupKey {
                category: e.category.clone(),
                version: e.version,
                kind: kind_name(e.kind).into(),
                len: e.len,
                kcv: apdu::hex(&e.kcv),
                created: rfc3339(e.created),
                expires: e.expires.map(rfc3339),
                retired: e.retired,
                wrapped: apdu::hex(&e.wrapped),
            })
            .collect(),
        mac: apdu::hex(&tag),
    };
    serde_json::to_vec_pretty(&file).map_err(|e| Error::BadBackup(e.to_string()))
}

/// Parses a backup and checks its MAC under `kek`. The wrapped keys are not unwrapped yet.
pub(crate) fn decode(kek: &Key, bytes: &[u8]) -> Result<Vec<BackupEntry>, Error> {
    check_kek(kek)?;
    let file: BackupFile =
        serde_json::from_slice(bytes).map_err(|e| Error::BadBackup(e.to_string()))?;
    if file.format != FORMAT {
        return Err(Error::BadBackup(format!(
            "format {:?}, want {FORMAT:?}",
            file.format
        )));
    }
    if file.wrap != WRAP {
        return Err(Error::BadBackup(format!(
            "wrap {:?}, want {WRAP:?}",
            file.wrap
        )));
    }
    let kek_kcv = kcv3(&file.kek_kcv).ok_or_else(|| Error::BadBackup("bad kek_kcv".into()))?;
    if kek_kcv != kek.kcv() {
        return Err(Error::WrongKek {
            backup: apdu::hex(&kek_kcv),
            given: apdu::hex(&kek.kcv()),
        });
    }
    let created =
        parse_rfc3339(&file.created).ok_or_else(|| Error::BadBackup("bad created date".into()))?;
    let mut entries = Vec::with_capacity(file.keys.len());
    for (i, k) in file.keys.iter().enumerate() {
        let bad = |what: &str| Error::BadBackup(format!("key {}: {what}", i + 1));
        crate::types::validate_category(&k.category)?;
        let kind = kind_from_name(&k.kind).ok_or_else(|| bad("unknown kind"))?;
        crate::types::check_len(kind, k.len)?;
        let wrapped = apdu::parse_hex(&k.wrapped).map_err(|_| bad("wrapped key is not hex"))?;
        if wrapped.len() != k.len + 8 {
            return Err(bad("wrapped key length does not match the key length"));
        }
        entries.push(BackupEntry {
            category: k.category.clone(),
            version: k.version,
            kind,
            len: k.len,
            kcv: kcv3(&k.kcv).ok_or_else(|| bad("bad kcv"))?,
            created: parse_rfc3339(&k.created).ok_or_else(|| bad("bad created date"))?,
            expires: match &k.expires {
                None => None,
                Some(t) => Some(parse_rfc3339(t).ok_or_else(|| bad("bad expiry date"))?),
            },
            retired: k.retired,
            wrapped,
        });
    }
    let tag = apdu::parse_hex(&file.mac).map_err(|_| Error::BadBackup("mac is not hex".into()))?;
    let mut mac = hmac(kek)?;
    mac.update(&canonical(created, &kek_kcv, &entries));
    mac.verify_slice(&tag)
        .map_err(|_| Error::BackupAuthentication)?;
    let mut seen = std::collections::BTreeSet::new();
    for e in &entries {
        if !seen.insert((e.category.clone(), e.version)) {
            return Err(Error::BadBackup(format!(
                "{} version {} appears twice",
                e.category, e.version
            )));
        }
    }
    Ok(entries)
}

/// Unwraps one entry in software and checks the key against its KCV.
pub(crate) fn unwrap_entry(kek: &Key, e: &BackupEntry) -> Result<Key, Error> {
    let bytes = unwrap(kek, &e.wrapped)?;
    let key = Key::new(e.kind, &bytes)?;
    if key.kcv() != e.kcv {
        return Err(Error::BackupAuthentication);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3394_known_answers() {
        let text = include_str!("../tests/vectors/aes_kw.txt");
        let mut n = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<Vec<u8>> = line
                .split_whitespace()
                .map(|h| apdu::parse_hex(h).unwrap())
                .collect();
            let kek = Key::aes(&f[0]).unwrap();
            assert_eq!(wrap(&kek, &f[1]).unwrap(), f[2]);
            assert_eq!(unwrap(&kek, &f[2]).unwrap().as_slice(), f[1].as_slice());
            let mut bad = f[2].clone();
            bad[5] ^= 0x80;
            assert!(matches!(
                unwrap(&kek, &bad),
                Err(Error::BackupAuthentication)
            ));
            n += 1;
        }
        assert_eq!(n, 6);
    }

    fn entry(kek: &Key) -> BackupEntry {
        let key = Key::aes(&[7u8; 16]).unwrap();
        BackupEntry {
            category: "gold".into(),
            version: 1,
            kind: KeyKind::Aes,
            len: 16,
            kcv: key.kcv(),
            created: 1_700_000_000,
            expires: Some(1_900_000_000),
            retired: false,
            wrapped: wrap(kek, key.expose()).unwrap(),
        }
    }

    #[test]
    fn encode_decode_and_tamper() {
        let kek = Key::aes(&[9u8; 32]).unwrap();
        let e = entry(&kek);
        let bytes = encode(&kek, 1_800_000_000, std::slice::from_ref(&e)).unwrap();
        let back = decode(&kek, &bytes).unwrap();
        assert_eq!(back, vec![e.clone()]);
        assert_eq!(unwrap_entry(&kek, &back[0]).unwrap().expose(), &[7u8; 16]);

        // Metadata is covered by the MAC.
        let text = String::from_utf8(bytes.clone()).unwrap();
        let altered = text.replace("\"retired\": false", "\"retired\": true");
        assert_ne!(altered, text);
        assert!(matches!(
            decode(&kek, altered.as_bytes()),
            Err(Error::BackupAuthentication)
        ));
        // Another KEK is recognised by its KCV.
        let other = Key::aes(&[8u8; 32]).unwrap();
        assert!(matches!(
            decode(&other, &bytes),
            Err(Error::WrongKek { .. })
        ));
        // A 3DES key is no KEK.
        let des = Key::des3(&[1u8; 16]).unwrap();
        assert!(matches!(decode(&des, &bytes), Err(Error::BadKek)));
        // No plaintext key bytes in the backup.
        assert!(!text.contains(&apdu::hex(&[7u8; 16])));
    }

    #[test]
    fn garbage_is_an_error() {
        let kek = Key::aes(&[9u8; 16]).unwrap();
        for junk in [&b""[..], b"{}", b"[1,2]", b"\xff\xfe", b"{\"format\":1}"] {
            assert!(matches!(decode(&kek, junk), Err(Error::BadBackup(_))));
        }
    }
}
