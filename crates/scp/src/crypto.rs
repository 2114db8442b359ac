//! Block-level cryptography used by the secure channels, built on RustCrypto block ciphers.
//!
//! Modes are written out here (CBC with a given ICV, ISO/IEC 9797-1 MAC algorithms 1 and 3)
//! because GlobalPlatform needs the chaining value between operations; the primitives
//! (DES, 3DES, AES, CMAC) all come from RustCrypto.

use crate::Error;
use aes::{Aes128, Aes192, Aes256};
use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use cmac::{Cmac, Mac};
use des::{Des, TdesEde2, TdesEde3};
use zeroize::Zeroizing;

/// A 3DES key schedule, two-key or three-key (keying options 2 and 1).
pub(crate) enum Tdes {
    Two(TdesEde2),
    Three(TdesEde3),
}

impl Tdes {
    pub(crate) fn new(key: &[u8]) -> Result<Self, Error> {
        match key.len() {
            16 => Ok(Self::Two(new_cipher(key, "3DES")?)),
            24 => Ok(Self::Three(new_cipher(key, "3DES")?)),
            len => Err(Error::BadKeyLength { kind: "3DES", len }),
        }
    }
    pub(crate) fn encrypt(&self, block: &mut [u8; 8]) {
        match self {
            Self::Two(c) => c.encrypt_block(block.into()),
            Self::Three(c) => c.encrypt_block(block.into()),
        }
    }
    pub(crate) fn decrypt(&self, block: &mut [u8; 8]) {
        match self {
            Self::Two(c) => c.decrypt_block(block.into()),
            Self::Three(c) => c.decrypt_block(block.into()),
        }
    }
}

/// An AES key schedule of any of the three key sizes.
pub(crate) enum Aes {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
}

impl Aes {
    pub(crate) fn new(key: &[u8]) -> Result<Self, Error> {
        match key.len() {
            16 => Ok(Self::A128(new_cipher(key, "AES")?)),
            24 => Ok(Self::A192(new_cipher(key, "AES")?)),
            32 => Ok(Self::A256(new_cipher(key, "AES")?)),
            len => Err(Error::BadKeyLength { kind: "AES", len }),
        }
    }
    pub(crate) fn encrypt(&self, block: &mut [u8; 16]) {
        match self {
            Self::A128(c) => c.encrypt_block(block.into()),
            Self::A192(c) => c.encrypt_block(block.into()),
            Self::A256(c) => c.encrypt_block(block.into()),
        }
    }
    pub(crate) fn decrypt(&self, block: &mut [u8; 16]) {
        match self {
            Self::A128(c) => c.decrypt_block(block.into()),
            Self::A192(c) => c.decrypt_block(block.into()),
            Self::A256(c) => c.decrypt_block(block.into()),
        }
    }
}

fn new_cipher<C: KeyInit>(key: &[u8], kind: &'static str) -> Result<C, Error> {
    C::new_from_slice(key).map_err(|_| Error::BadKeyLength {
        kind,
        len: key.len(),
    })
}

/// Single DES encryption of one block (ICV encryption in SCP02, GP 2.3.1 §E.4.4).
pub(crate) fn des_ecb_encrypt(key8: &[u8], block: &mut [u8; 8]) -> Result<(), Error> {
    let c: Des = new_cipher(key8, "DES")?;
    c.encrypt_block(block.into());
    Ok(())
}

fn blocks<const N: usize>(data: &[u8]) -> Result<impl Iterator<Item = [u8; N]> + '_, Error> {
    if !data.len().is_multiple_of(N) {
        return Err(Error::Malformed {
            what: "cipher text",
            detail: format!(
                "{} bytes is not a multiple of the {N}-byte block",
                data.len()
            ),
        });
    }
    Ok(data.chunks_exact(N).map(|c| {
        let mut b = [0u8; N];
        b.copy_from_slice(c);
        b
    }))
}

fn xor<const N: usize>(a: &mut [u8; N], b: &[u8; N]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// 3DES-ECB over whole blocks.
pub(crate) fn tdes_ecb_encrypt(key: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let c = Tdes::new(key)?;
    let mut out = Zeroizing::new(Vec::with_capacity(data.len()));
    for mut b in blocks::<8>(data)? {
        c.encrypt(&mut b);
        out.extend_from_slice(&b);
    }
    Ok(out)
}

/// 3DES-ECB decryption over whole blocks.
pub(crate) fn tdes_ecb_decrypt(key: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let c = Tdes::new(key)?;
    let mut out = Zeroizing::new(Vec::with_capacity(data.len()));
    for mut b in blocks::<8>(data)? {
        c.decrypt(&mut b);
        out.extend_from_slice(&b);
    }
    Ok(out)
}

/// 3DES-CBC encryption over whole blocks with the given ICV.
pub(crate) fn tdes_cbc_encrypt(key: &[u8], iv: [u8; 8], data: &[u8]) -> Result<Vec<u8>, Error> {
    let c = Tdes::new(key)?;
    let mut chain = iv;
    let mut out = Vec::with_capacity(data.len());
    for b in blocks::<8>(data)? {
        xor(&mut chain, &b);
        c.encrypt(&mut chain);
        out.extend_from_slice(&chain);
    }
    Ok(out)
}

/// 3DES-CBC decryption over whole blocks with the given ICV.
pub(crate) fn tdes_cbc_decrypt(
    key: &[u8],
    iv: [u8; 8],
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let c = Tdes::new(key)?;
    let mut chain = iv;
    let mut out = Zeroizing::new(Vec::with_capacity(data.len()));
    for b in blocks::<8>(data)? {
        let mut p = b;
        c.decrypt(&mut p);
        xor(&mut p, &chain);
        out.extend_from_slice(&p);
        chain = b;
    }
    Ok(out)
}

/// ISO/IEC 9797-1 MAC algorithm 1 with 3DES (the "full 3DES MAC" of GP 2.3.1 §B.1.2.1):
/// the last block of 3DES-CBC. `data` must already be padded.
pub(crate) fn full_tdes_mac(key: &[u8], iv: [u8; 8], data: &[u8]) -> Result<[u8; 8], Error> {
    let c = Tdes::new(key)?;
    let mut chain = iv;
    for b in blocks::<8>(data)? {
        xor(&mut chain, &b);
        c.encrypt(&mut chain);
    }
    Ok(chain)
}

/// ISO/IEC 9797-1 MAC algorithm 3 ("retail MAC", GP 2.3.1 §B.1.2.2): single DES-CBC with the
/// first half of the key over every block, then 3DES on the last. `data` must already be padded
/// and non-empty.
pub(crate) fn retail_mac(key: &[u8], iv: [u8; 8], data: &[u8]) -> Result<[u8; 8], Error> {
    if key.len() != 16 && key.len() != 24 {
        return Err(Error::BadKeyLength {
            kind: "3DES",
            len: key.len(),
        });
    }
    let single: Des = new_cipher(&key[..8], "DES")?;
    let triple = Tdes::new(key)?;
    let all: Vec<[u8; 8]> = blocks::<8>(data)?.collect();
    let Some((last, head)) = all.split_last() else {
        return Err(Error::Malformed {
            what: "MAC input",
            detail: "empty".into(),
        });
    };
    let mut chain = iv;
    for b in head {
        xor(&mut chain, b);
        single.encrypt_block((&mut chain).into());
    }
    xor(&mut chain, last);
    triple.encrypt(&mut chain);
    Ok(chain)
}

/// AES-ECB of whole blocks.
pub(crate) fn aes_ecb_encrypt(key: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let c = Aes::new(key)?;
    let mut out = Zeroizing::new(Vec::with_capacity(data.len()));
    for mut b in blocks::<16>(data)? {
        c.encrypt(&mut b);
        out.extend_from_slice(&b);
    }
    Ok(out)
}

/// AES-CBC encryption over whole blocks with the given ICV.
pub(crate) fn aes_cbc_encrypt(key: &[u8], iv: [u8; 16], data: &[u8]) -> Result<Vec<u8>, Error> {
    let c = Aes::new(key)?;
    aes_cbc_encrypt_with(&c, iv, data)
}

pub(crate) fn aes_cbc_encrypt_with(c: &Aes, iv: [u8; 16], data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut chain = iv;
    let mut out = Vec::with_capacity(data.len());
    for b in blocks::<16>(data)? {
        xor(&mut chain, &b);
        c.encrypt(&mut chain);
        out.extend_from_slice(&chain);
    }
    Ok(out)
}

/// AES-CBC decryption over whole blocks with the given ICV.
pub(crate) fn aes_cbc_decrypt(
    key: &[u8],
    iv: [u8; 16],
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let c = Aes::new(key)?;
    aes_cbc_decrypt_with(&c, iv, data)
}

pub(crate) fn aes_cbc_decrypt_with(
    c: &Aes,
    iv: [u8; 16],
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut chain = iv;
    let mut out = Zeroizing::new(Vec::with_capacity(data.len()));
    for b in blocks::<16>(data)? {
        let mut p = b;
        c.decrypt(&mut p);
        xor(&mut p, &chain);
        out.extend_from_slice(&p);
        chain = b;
    }
    Ok(out)
}

/// AES-CMAC (NIST SP 800-38B) over `parts` concatenated.
pub(crate) fn aes_cmac(key: &[u8], parts: &[&[u8]]) -> Result<[u8; 16], Error> {
    fn run<C>(key: &[u8], parts: &[&[u8]]) -> Result<[u8; 16], Error>
    where
        Cmac<C>: Mac + KeyInit,
        C: cmac::block_api::CmacCipher,
    {
        let mut m = <Cmac<C> as KeyInit>::new_from_slice(key).map_err(|_| Error::BadKeyLength {
            kind: "AES",
            len: key.len(),
        })?;
        for p in parts {
            m.update(p);
        }
        let tag = m.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag);
        Ok(out)
    }
    match key.len() {
        16 => run::<Aes128>(key, parts),
        24 => run::<Aes192>(key, parts),
        32 => run::<Aes256>(key, parts),
        len => Err(Error::BadKeyLength { kind: "AES", len }),
    }
}

/// ISO/IEC 9797-1 padding method 2: `80` then `00`s up to a multiple of `block`. Always adds
/// at least one byte.
pub(crate) fn pad80(data: &[u8], block: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + block);
    v.extend_from_slice(data);
    v.push(0x80);
    while !v.len().is_multiple_of(block) {
        v.push(0);
    }
    v
}

/// Removes ISO/IEC 9797-1 method 2 padding (the last `80` after trailing `00`s, at most one
/// block of padding).
pub(crate) fn unpad80(data: &[u8], block: usize) -> Result<&[u8], Error> {
    let mut i = data.len();
    let floor = data.len().saturating_sub(block);
    while i > floor {
        i -= 1;
        match data[i] {
            0x00 => continue,
            0x80 => return Ok(&data[..i]),
            _ => return Err(Error::BadPadding),
        }
    }
    Err(Error::BadPadding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::parse_hex as h;

    #[test]
    fn padding() {
        assert_eq!(pad80(&[], 8), h("8000000000000000").unwrap());
        assert_eq!(pad80(&[1; 7], 8).len(), 8);
        assert_eq!(pad80(&[1; 8], 8).len(), 16);
        assert_eq!(unpad80(&h("0102800000").unwrap(), 8).unwrap(), &[1, 2]);
        assert_eq!(unpad80(&h("0102").unwrap(), 8), Err(Error::BadPadding));
        assert_eq!(unpad80(&[], 8), Err(Error::BadPadding));
        assert_eq!(
            unpad80(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0], 8),
            Err(Error::BadPadding)
        );
    }

    /// NIST SP 800-38B / RFC 4493 example 2 (AES-128, 16-byte message).
    #[test]
    fn cmac_rfc4493() {
        let k = h("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let m = h("6bc1bee22e409f96e93d7e117393172a").unwrap();
        assert_eq!(
            aes_cmac(&k, &[&m[..4], &m[4..]]).unwrap().to_vec(),
            h("070a16b46b4d4144f79bdd9dd04a287c").unwrap()
        );
    }
}
