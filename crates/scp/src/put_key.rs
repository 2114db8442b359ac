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
//!
//! # Asymmetric keys ([`KeyData`], [`key_data`], [`parse_key_data`])
//!
//! GP 2.3.1 §11.8.2.3 and Table 11-16 (key types); Amendment F §7.2 / Amendment E for ECC,
//! in the form Yubico's `yubikit` `SecurityDomainSession.put_key` and GlobalPlatformPro
//! `GPSession.putKey(RSAPublicKey)` send. An asymmetric key is one or more component
//! blocks (type, BER length, value) followed by one KCV length byte (`00`: public and
//! private asymmetric keys have no key check value):
//!
//! | key | blocks |
//! |---|---|
//! | ECC public (`B0`)  | `B0` L `04‖X‖Y` · `F0 01` curve · `00` |
//! | ECC private (`B1`) | `B1` L DEK-encrypted scalar · `F0 01` curve · `00` |
//! | RSA public (`A1`/`A0`) | `A1` L modulus · `A0` L exponent · `00` |
//!
//! [`parse_key_data`] also reads YubiKey's AES block `88 L encrypted-key KCV` without the
//! key-length byte (what `yubikit` sends), told apart by its length (16 or 32 bytes).
//!
//! The curve is the key parameter reference ([`Curve`]: `00` P-256, `01` P-384, …). The
//! card answers the key version number alone for such keys (no KCV). A component too long
//! for one command may come as several blocks of the same type (concatenated), and a key
//! too long for one command as several PUT KEY commands with P1 b8 set on all but the last,
//! each data field starting with the new KVN ([`commands`]). The final KCV length byte may
//! be absent at the very end of the data (some hosts omit it).

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
        blocks.push(secret_block(key_type, body, &mut r, false)?);
    }
    if blocks.is_empty() {
        return Err(malformed("PUT KEY data", "no key data block"));
    }
    Ok((kvn, blocks))
}

/// One DES/AES key data block after its type and length (GP 2.3.1 §11.8.2.3): the
/// encrypted key (AES: after its key-length byte), then the KCV length and KCV from `r`.
/// `yubikit_aes` also takes YubiKey's AES form (yubikit `put_key`): the encrypted key alone,
/// without the key-length byte, told apart by its length, a whole number of blocks (the GP
/// form is one byte more).
fn secret_block(
    key_type: u8,
    body: &[u8],
    r: &mut Reader<'_>,
    yubikit_aes: bool,
) -> Result<KeyBlock, Error> {
    let (kind, key_len, encrypted) = match key_type {
        0x80 => (KeyKind::Des3, body.len(), body),
        0x88 if yubikit_aes && matches!(body.len(), 16 | 32) => (KeyKind::Aes, body.len(), body),
        0x88 => {
            let (&n, rest) = body
                .split_first()
                .ok_or_else(|| malformed("PUT KEY data", "AES key data without its length byte"))?;
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
    Ok(KeyBlock {
        kind,
        encrypted: encrypted.to_vec(),
        key_len,
        kcv,
    })
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
    compare_response(data, &response_data(new_kvn, &want), "KVN and three KCVs")
}

/// Compares the card's PUT KEY response with the one expected (constant time), saying what
/// it should hold (`holds`) when the length is wrong.
fn compare_response(data: &[u8], want: &[u8], holds: &str) -> Result<(), Error> {
    if data.len() != want.len() {
        return Err(malformed(
            "PUT KEY response",
            format!("{} bytes, want {} ({holds})", data.len(), want.len()),
        ));
    }
    if bool::from(want.ct_eq(data)) {
        Ok(())
    } else {
        Err(Error::KcvMismatch)
    }
}

/// An elliptic curve by its key parameter reference (`F0`, GP Amendment E §4.4 / Amendment
/// F; the numbering YubiKey and `yubikit` use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (secp256r1), reference `00`.
    P256,
    /// NIST P-384 (secp384r1), reference `01`.
    P384,
    /// NIST P-521 (secp521r1), reference `02`.
    P521,
    /// brainpoolP256r1, reference `03`.
    BrainpoolP256r1,
    /// brainpoolP384r1, reference `05`.
    BrainpoolP384r1,
    /// brainpoolP512r1, reference `07`.
    BrainpoolP512r1,
}

impl Curve {
    /// Every curve, in reference order.
    pub const ALL: [Curve; 6] = [
        Curve::P256,
        Curve::P384,
        Curve::P521,
        Curve::BrainpoolP256r1,
        Curve::BrainpoolP384r1,
        Curve::BrainpoolP512r1,
    ];

    /// The key parameter reference byte (value of `F0`).
    pub fn reference(self) -> u8 {
        match self {
            Curve::P256 => 0x00,
            Curve::P384 => 0x01,
            Curve::P521 => 0x02,
            Curve::BrainpoolP256r1 => 0x03,
            Curve::BrainpoolP384r1 => 0x05,
            Curve::BrainpoolP512r1 => 0x07,
        }
    }

    /// The curve of a key parameter reference, `None` if unknown.
    pub fn from_reference(r: u8) -> Option<Curve> {
        Curve::ALL.into_iter().find(|c| c.reference() == r)
    }

    /// The length in bytes of a field element (and of a private scalar).
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 | Curve::BrainpoolP256r1 => 32,
            Curve::P384 | Curve::BrainpoolP384r1 => 48,
            Curve::P521 => 66,
            Curve::BrainpoolP512r1 => 64,
        }
    }

    /// The length of an uncompressed point `04‖X‖Y`.
    pub fn point_len(self) -> usize {
        1 + 2 * self.field_len()
    }

    /// The curve's usual name.
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
            Curve::BrainpoolP256r1 => "brainpoolP256r1",
            Curve::BrainpoolP384r1 => "brainpoolP384r1",
            Curve::BrainpoolP512r1 => "brainpoolP512r1",
        }
    }

    /// The NIST curve whose uncompressed points have this length (no `F0` sent).
    fn from_point_len(len: usize) -> Option<Curve> {
        [Curve::P256, Curve::P384, Curve::P521]
            .into_iter()
            .find(|c| c.point_len() == len)
    }
}

impl core::fmt::Display for Curve {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// GP key types of asymmetric key components (GP 2.3.1 Table 11-16).
pub mod key_type {
    /// RSA public exponent e.
    pub const RSA_PUBLIC_EXPONENT: u8 = 0xA0;
    /// RSA modulus N.
    pub const RSA_MODULUS: u8 = 0xA1;
    /// ECC public key (uncompressed point).
    pub const ECC_PUBLIC: u8 = 0xB0;
    /// ECC private key (scalar).
    pub const ECC_PRIVATE: u8 = 0xB1;
    /// ECC key parameter reference.
    pub const ECC_KEY_PARAMETERS: u8 = 0xF0;
}

/// One key of a PUT KEY data field: a secret key (3DES/AES) or an asymmetric key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyData {
    /// A 3DES or AES key encrypted under the DEK, with its KCV.
    Secret(KeyBlock),
    /// An ECC public key: the uncompressed point `04‖X‖Y` (e.g. `PK.CA-KLOC`, an OCE key).
    EccPublic {
        /// The curve (`F0`).
        curve: Curve,
        /// `04‖X‖Y`, [`Curve::point_len`] bytes.
        point: Vec<u8>,
    },
    /// An ECC private key, its scalar encrypted under the DEK (decrypt it with
    /// [`crate::CardSession::decrypt_secret`]; the clear scalar is the first
    /// [`Curve::field_len`] bytes).
    EccPrivate {
        /// The curve (`F0`).
        curve: Curve,
        /// The encrypted scalar (a whole number of cipher blocks).
        encrypted: Vec<u8>,
    },
    /// An RSA public key (a DAP or token verification key, GP 2.3.1 §11.8.2.3).
    RsaPublic {
        /// The modulus N, big-endian, no leading zero byte.
        modulus: Vec<u8>,
        /// The public exponent e, big-endian, no leading zero byte.
        exponent: Vec<u8>,
    },
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

impl KeyData {
    /// A secret key encrypted under the session's DEK with its 3-byte KCV, as in
    /// [`key_set_data`].
    pub fn secret(key: &crate::Key, session: &HostSession) -> Result<KeyData, Error> {
        let encrypted = session.encrypt_key(key)?;
        Ok(KeyData::Secret(KeyBlock {
            kind: key.kind(),
            key_len: match key.kind() {
                KeyKind::Des3 => encrypted.len(),
                KeyKind::Aes => key.len(),
            },
            encrypted,
            kcv: key.kcv().to_vec(),
        }))
    }

    /// An ECC public key from its uncompressed point (checked: `04` and the curve's length).
    pub fn ecc_public(curve: Curve, point: &[u8]) -> Result<KeyData, Error> {
        check_point(curve, point)?;
        Ok(KeyData::EccPublic {
            curve,
            point: point.to_vec(),
        })
    }

    /// An ECC private key: `scalar` (big-endian, left-padded to [`Curve::field_len`]) is
    /// encrypted with the session's DEK (SCP03/SCP11: AES-CBC, zero IV, as `yubikit`
    /// does; the scalar is zero-padded to a whole block if needed).
    pub fn ecc_private(
        curve: Curve,
        scalar: &[u8],
        session: &HostSession,
    ) -> Result<KeyData, Error> {
        let n = curve.field_len();
        let s = strip_zeros(scalar);
        if s.len() > n || s.is_empty() {
            return Err(malformed(
                "ECC private key",
                format!("{} bytes for {curve}, want 1..={n}", s.len()),
            ));
        }
        let mut clear = zeroize::Zeroizing::new(vec![0u8; n - s.len()]);
        clear.extend_from_slice(&s);
        let block = 16;
        while !clear.len().is_multiple_of(block) {
            clear.push(0);
        }
        let encrypted = session.encrypt_secret(&clear)?;
        Ok(KeyData::EccPrivate { curve, encrypted })
    }

    /// An RSA public key from its modulus and exponent (leading zero bytes dropped).
    pub fn rsa_public(modulus: &[u8], exponent: &[u8]) -> Result<KeyData, Error> {
        let (modulus, exponent) = (strip_zeros(modulus), strip_zeros(exponent));
        if modulus.is_empty()
            || exponent.is_empty()
            || modulus.len() > 1024
            || exponent.len() > 1024
        {
            return Err(malformed(
                "RSA public key",
                "empty modulus or exponent, or longer than 8192 bits",
            ));
        }
        Ok(KeyData::RsaPublic { modulus, exponent })
    }

    /// The GP key type of the key's main component (`80`, `88`, `B0`, `B1`, `A1`).
    pub fn key_type(&self) -> u8 {
        match self {
            KeyData::Secret(b) => b.kind.key_type(),
            KeyData::EccPublic { .. } => key_type::ECC_PUBLIC,
            KeyData::EccPrivate { .. } => key_type::ECC_PRIVATE,
            KeyData::RsaPublic { .. } => key_type::RSA_MODULUS,
        }
    }

    /// The key check value the card answers for this key (secret keys only).
    pub fn kcv(&self) -> Option<&[u8]> {
        match self {
            KeyData::Secret(b) if !b.kcv.is_empty() => Some(&b.kcv),
            _ => None,
        }
    }

    /// The key's blocks: `(component type, value)` pairs then the KCV.
    fn components(&self) -> (Vec<(u8, Vec<u8>)>, Vec<u8>) {
        match self {
            KeyData::Secret(b) => {
                let value = match b.kind {
                    KeyKind::Des3 => b.encrypted.clone(),
                    KeyKind::Aes => {
                        let mut v = vec![b.key_len as u8];
                        v.extend_from_slice(&b.encrypted);
                        v
                    }
                };
                (vec![(b.kind.key_type(), value)], b.kcv.clone())
            }
            KeyData::EccPublic { curve, point } => (
                vec![
                    (key_type::ECC_PUBLIC, point.clone()),
                    (key_type::ECC_KEY_PARAMETERS, vec![curve.reference()]),
                ],
                Vec::new(),
            ),
            KeyData::EccPrivate { curve, encrypted } => (
                vec![
                    (key_type::ECC_PRIVATE, encrypted.clone()),
                    (key_type::ECC_KEY_PARAMETERS, vec![curve.reference()]),
                ],
                Vec::new(),
            ),
            KeyData::RsaPublic { modulus, exponent } => (
                vec![
                    (key_type::RSA_MODULUS, modulus.clone()),
                    (key_type::RSA_PUBLIC_EXPONENT, exponent.clone()),
                ],
                Vec::new(),
            ),
        }
    }

    /// Appends the key's blocks to a PUT KEY data field.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (comps, kcv) = self.components();
        for (t, v) in comps {
            push_block(out, t, &v);
        }
        out.push(kcv.len() as u8);
        out.extend_from_slice(&kcv);
    }
}

fn push_block(out: &mut Vec<u8>, t: u8, v: &[u8]) {
    out.push(t);
    match v.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
        n => {
            out.push(0x82);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(v);
}

fn check_point(curve: Curve, point: &[u8]) -> Result<(), Error> {
    if point.len() != curve.point_len() || point.first() != Some(&0x04) {
        return Err(malformed(
            "ECC public key",
            format!(
                "{} bytes, want an uncompressed {curve} point of {} bytes starting 04",
                point.len(),
                curve.point_len()
            ),
        ));
    }
    Ok(())
}

/// The PUT KEY data field for `keys` under `new_kvn` (any mix of secret and asymmetric keys;
/// key identifiers follow P2).
pub fn key_data(new_kvn: u8, keys: &[KeyData]) -> Vec<u8> {
    let mut v = vec![new_kvn];
    for k in keys {
        k.encode_into(&mut v);
    }
    v
}

/// The PUT KEY commands carrying `keys` (`80 D8 P1 P2`): P1 = the KVN replaced (`00`: new),
/// P2 = the key identifier of the first key, b8 set when there are several keys. When the
/// data field would exceed `max_data` bytes it is split over several commands, P1 b8 set on
/// all but the last, each data field starting with `new_kvn`; a component longer than fits
/// is cut into several blocks of the same type. Wrap each with the session before sending.
pub fn commands(
    old_kvn: u8,
    first_kid: u8,
    new_kvn: u8,
    keys: &[KeyData],
    max_data: usize,
) -> Result<Vec<apdu::Command>, Error> {
    if max_data < 8 || old_kvn > 0x7F || first_kid > 0x7F || keys.is_empty() {
        return Err(malformed(
            "PUT KEY request",
            "KVN/KID above 7F, no key, or a data limit below 8 bytes",
        ));
    }
    let p2 = first_kid | if keys.len() > 1 { 0x80 } else { 0 };
    // Pieces that must not be cut: component blocks and KCV fields.
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    for k in keys {
        let (comps, kcv) = k.components();
        for (t, v) in comps {
            // header at most 4 bytes, plus the KVN of the command
            let room = max_data - 5;
            for chunk in v.chunks(room.max(1)) {
                let mut b = Vec::new();
                push_block(&mut b, t, chunk);
                pieces.push(b);
            }
            if v.is_empty() {
                let mut b = Vec::new();
                push_block(&mut b, t, &[]);
                pieces.push(b);
            }
        }
        let mut b = vec![kcv.len() as u8];
        b.extend_from_slice(&kcv);
        pieces.push(b);
    }
    let mut datas: Vec<Vec<u8>> = vec![vec![new_kvn]];
    for p in pieces {
        let cur = datas.last_mut().map_or(0, |d| d.len());
        if cur + p.len() > max_data && cur > 1 {
            datas.push(vec![new_kvn]);
        }
        if let Some(d) = datas.last_mut() {
            d.extend_from_slice(&p);
        }
    }
    let n = datas.len();
    Ok(datas
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let more = if i + 1 < n { 0x80 } else { 0 };
            apdu::Command::new(0x80, 0xD8, old_kvn | more, p2)
                .with_data(d)
                .with_le(256)
        })
        .collect())
}

fn is_asym_component(t: u8) -> bool {
    matches!(t, 0xA0 | 0xA1 | 0xB0 | 0xB1 | 0xF0)
}

/// Reads a PUT KEY data field of any keys (card side): the new KVN and the keys in order.
/// Secret keys as in [`parse_key_set_data`]; asymmetric keys as in the module
/// documentation. Every check failure is a typed error naming it; never panics.
pub fn parse_key_data(data: &[u8]) -> Result<(u8, Vec<KeyData>), Error> {
    let mut r = Reader { data, pos: 0 };
    let kvn = r.byte("key version number")?;
    let mut keys = Vec::new();
    while !r.done() {
        let key_type = r.byte("key type")?;
        let len = r.len()?;
        let body = r.take(len, "key data")?;
        if is_asym_component(key_type) {
            let mut comps: Vec<(u8, Vec<u8>)> = vec![(key_type, body.to_vec())];
            // No KCV length at the very end of the data is accepted.
            while let Some(&next) = data.get(r.pos) {
                if is_asym_component(next) {
                    r.pos += 1;
                    let len = r.len()?;
                    let body = r.take(len, "key component")?;
                    let last = comps.last().map(|(t, _)| *t);
                    if last == Some(next) {
                        // Several blocks of one component: concatenated (a long modulus).
                        if let Some((_, v)) = comps.last_mut() {
                            if v.len() + body.len() > 0xFFFF {
                                return Err(malformed(
                                    "PUT KEY data",
                                    format!("key component {next:02X} longer than 65535 bytes"),
                                ));
                            }
                            v.extend_from_slice(body);
                        }
                    } else if comps.iter().any(|(t, _)| *t == next) {
                        return Err(malformed(
                            "PUT KEY data",
                            format!("key component {next:02X} given twice"),
                        ));
                    } else {
                        comps.push((next, body.to_vec()));
                    }
                } else {
                    let kcv_len = r.byte("KCV length")? as usize;
                    if kcv_len != 0 {
                        return Err(malformed(
                            "PUT KEY data",
                            "a key check value for an asymmetric key (KCV length must be 00)",
                        ));
                    }
                    break;
                }
            }
            keys.push(asymmetric(&comps)?);
            continue;
        }
        keys.push(KeyData::Secret(secret_block(key_type, body, &mut r, true)?));
    }
    if keys.is_empty() {
        return Err(malformed("PUT KEY data", "no key data block"));
    }
    Ok((kvn, keys))
}

/// Builds an asymmetric key from its components (types A0, A1, B0, B1, F0, each once).
fn asymmetric(comps: &[(u8, Vec<u8>)]) -> Result<KeyData, Error> {
    let get = |t: u8| {
        comps
            .iter()
            .find(|(x, _)| *x == t)
            .map(|(_, v)| v.as_slice())
    };
    let (a0, a1, b0, b1, f0) = (
        get(key_type::RSA_PUBLIC_EXPONENT),
        get(key_type::RSA_MODULUS),
        get(key_type::ECC_PUBLIC),
        get(key_type::ECC_PRIVATE),
        get(key_type::ECC_KEY_PARAMETERS),
    );
    let curve = |len_hint: Option<usize>| -> Result<Curve, Error> {
        match f0 {
            Some([r]) => Curve::from_reference(*r)
                .ok_or_else(|| Error::Unsupported(format!("ECC key parameter reference {r:02X}"))),
            Some(v) => Err(malformed(
                "PUT KEY data",
                format!("key parameter reference (F0) of {} bytes, want 1", v.len()),
            )),
            None => len_hint.and_then(Curve::from_point_len).ok_or_else(|| {
                malformed(
                    "PUT KEY data",
                    "ECC key without its parameter reference (F0)",
                )
            }),
        }
    };
    match (a0.is_some() || a1.is_some(), b0, b1) {
        (false, Some(point), None) => {
            let curve = curve(Some(point.len()))?;
            check_point(curve, point)?;
            Ok(KeyData::EccPublic {
                curve,
                point: point.to_vec(),
            })
        }
        (false, None, Some(enc)) => {
            let curve = curve(None)?;
            if enc.len() < curve.field_len() || enc.len() > curve.field_len() + 16 {
                return Err(malformed(
                    "PUT KEY data",
                    format!(
                        "encrypted {curve} private key of {} bytes, want {} padded to a block",
                        enc.len(),
                        curve.field_len()
                    ),
                ));
            }
            Ok(KeyData::EccPrivate {
                curve,
                encrypted: enc.to_vec(),
            })
        }
        (true, None, None) if f0.is_none() => match (a1, a0) {
            (Some(m), Some(e)) => {
                let (modulus, exponent) = (strip_zeros(m), strip_zeros(e));
                if modulus.is_empty() || exponent.is_empty() {
                    return Err(malformed("PUT KEY data", "RSA modulus or exponent is zero"));
                }
                Ok(KeyData::RsaPublic { modulus, exponent })
            }
            (None, _) => Err(malformed(
                "PUT KEY data",
                "RSA public key without its modulus (A1)",
            )),
            (_, None) => Err(malformed(
                "PUT KEY data",
                "RSA public key without its exponent (A0)",
            )),
        },
        _ => Err(malformed(
            "PUT KEY data",
            format!(
                "key components {} do not make one ECC public, ECC private or RSA public key",
                comps
                    .iter()
                    .map(|(t, _)| format!("{t:02X}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        )),
    }
}

/// Checks the PUT KEY response to an asymmetric or mixed key list (host side): the KVN then
/// the KCV of each secret key (asymmetric keys have none, so often just the KVN).
pub fn check_key_data_response(data: &[u8], new_kvn: u8, keys: &[KeyData]) -> Result<(), Error> {
    let mut want = vec![new_kvn];
    for k in keys {
        if let Some(kcv) = k.kcv() {
            want.extend_from_slice(kcv);
        }
    }
    compare_response(data, &want, "KVN and the KCVs")
}
