//! Signature schemes of Delegated Management tokens and DAP signatures (GP 2.3.1
//! Appendix B.3, B.4; Appendix C.2, C.4).
//!
//! | key | scheme | signature |
//! |---|---|---|
//! | RSA ≤ 1024 bits | RSASSA-PKCS1-v1_5 with SHA-1 (B.3.1, scheme 1) | modulus length |
//! | RSA > 1024 bits | RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32 (B.3.2, scheme 2) | modulus length |
//! | EC P-256 | ECDSA with SHA-256 (B.4.3) | plain `r ‖ s`, 64 bytes |
//! | AES | CMAC (NIST SP 800-38B) | 16 bytes |
//!
//! Private keys come from PKCS#8 (DER or PEM) or, for AES, raw bytes; public keys from an
//! SPKI, from the PUT KEY components (RSA modulus `A1` and exponent `A0`, ECC point `B0`),
//! or the AES key itself.

use core::fmt;

use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{Pkcs1v15Sign, Pss};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{Error, Result};

/// A token or DAP signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// RSASSA-PKCS1-v1_5 with SHA-1 (RSA keys up to 1024 bits).
    RsaPkcs1Sha1,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt (RSA keys above 1024 bits).
    RsaPssSha256,
    /// ECDSA P-256 with SHA-256, signature as plain `r ‖ s`.
    EcdsaP256Sha256,
    /// AES-CMAC, 16 bytes.
    AesCmac,
}

impl Scheme {
    /// The scheme's name (`rsa-pkcs1-sha1`, `rsa-pss-sha256`, `ecdsa-p256-sha256`, `aes-cmac`).
    pub fn name(self) -> &'static str {
        match self {
            Self::RsaPkcs1Sha1 => "rsa-pkcs1-sha1",
            Self::RsaPssSha256 => "rsa-pss-sha256",
            Self::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Self::AesCmac => "aes-cmac",
        }
    }

    /// The scheme GP 2.3.1 Appendix B uses for an RSA key of `bits`.
    pub fn for_rsa_bits(bits: usize) -> Self {
        if bits <= 1024 {
            Self::RsaPkcs1Sha1
        } else {
            Self::RsaPssSha256
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Anything that signs tokens or DAP blocks: a [`DmSigningKey`], or a key in a key store
/// (HSM) that never leaves it.
pub trait Signer: fmt::Debug {
    /// The scheme of its signatures.
    fn scheme(&self) -> Scheme;
    /// Signs `message` (the token input, or the load file data block hash).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>>;
}

fn crypto_err(what: &str, e: impl fmt::Display) -> Error {
    Error::Encoding(format!("{what}: {e}"))
}

/// A private token or DAP key held in memory. `Debug` shows the scheme only.
pub enum DmSigningKey {
    /// RSA (the scheme follows the modulus size).
    Rsa(Box<rsa::PrivateKey>),
    /// EC P-256.
    P256(p256::ecdsa::SigningKey),
    /// AES (16, 24 or 32 bytes).
    Aes(Zeroizing<Vec<u8>>),
}

impl fmt::Debug for DmSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DmSigningKey({})", self.scheme())
    }
}

impl DmSigningKey {
    /// Reads a PKCS#8 private key (DER, or PEM `-----BEGIN PRIVATE KEY-----`), RSA or P-256.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Self> {
        let pem = core::str::from_utf8(bytes)
            .ok()
            .filter(|s| s.contains("-----BEGIN"));
        if let Some(pem) = pem {
            if let Ok(k) = rsa::PrivateKey::from_pkcs8_pem(pem) {
                return Ok(Self::Rsa(Box::new(k)));
            }
            return p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
                .map(Self::P256)
                .map_err(|e| crypto_err("PKCS#8 PEM private key (RSA or P-256)", e));
        }
        if let Ok(k) = rsa::PrivateKey::from_pkcs8_der(bytes) {
            return Ok(Self::Rsa(Box::new(k)));
        }
        p256::ecdsa::SigningKey::from_pkcs8_der(bytes)
            .map(Self::P256)
            .map_err(|e| crypto_err("PKCS#8 DER private key (RSA or P-256)", e))
    }

    /// An AES token key.
    pub fn aes(key: &[u8]) -> Result<Self> {
        if !matches!(key.len(), 16 | 24 | 32) {
            return Err(Error::Encoding(format!(
                "AES token key of {} bytes: want 16, 24 or 32",
                key.len()
            )));
        }
        Ok(Self::Aes(Zeroizing::new(key.to_vec())))
    }

    /// The matching public (or, for AES, the same) key.
    pub fn verifying_key(&self) -> DmVerifyingKey {
        match self {
            Self::Rsa(k) => DmVerifyingKey::Rsa(Box::new(k.to_public_key())),
            Self::P256(k) => DmVerifyingKey::P256(*k.verifying_key()),
            Self::Aes(k) => DmVerifyingKey::Aes(k.clone()),
        }
    }
}

impl Signer for DmSigningKey {
    fn scheme(&self) -> Scheme {
        match self {
            Self::Rsa(k) => Scheme::for_rsa_bits(rsa::traits::PublicKeyParts::n_bits_precision(
                k.as_ref(),
            ) as usize),
            Self::P256(_) => Scheme::EcdsaP256Sha256,
            Self::Aes(_) => Scheme::AesCmac,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        match self {
            Self::Rsa(k) => match self.scheme() {
                Scheme::RsaPkcs1Sha1 => k
                    .sign(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(message))
                    .map_err(|e| crypto_err("RSA PKCS#1 signature", e)),
                _ => {
                    let s = rsa::pss::SigningKey::<Sha256>::new_with_salt_len((**k).clone(), 32);
                    let sig: rsa::pss::Signature = s
                        .sign_prehash(&Sha256::digest(message))
                        .map_err(|e| crypto_err("RSA PSS signature", e))?;
                    Ok(rsa::signature::SignatureEncoding::to_vec(&sig))
                }
            },
            Self::P256(k) => {
                let sig: p256::ecdsa::Signature = k
                    .sign_prehash(&Sha256::digest(message))
                    .map_err(|e| crypto_err("ECDSA signature", e))?;
                Ok(sig.to_bytes().to_vec())
            }
            Self::Aes(k) => super::receipt::aes_cmac(k, message),
        }
    }
}

/// A public token or DAP verification key (or the AES key) as a security domain holds it.
#[derive(Clone)]
pub enum DmVerifyingKey {
    /// RSA public key.
    Rsa(Box<rsa::PublicKey>),
    /// EC P-256 public key.
    P256(p256::ecdsa::VerifyingKey),
    /// AES key.
    Aes(Zeroizing<Vec<u8>>),
}

impl fmt::Debug for DmVerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DmVerifyingKey({})", self.scheme())
    }
}

impl DmVerifyingKey {
    /// From PUT KEY's RSA components: modulus (`A1`) and public exponent (`A0`).
    pub fn rsa(modulus: &[u8], exponent: &[u8]) -> Result<Self> {
        let n = rsa::BoxedUint::from_be_slice_vartime(modulus);
        let e = rsa::BoxedUint::from_be_slice_vartime(exponent);
        rsa::PublicKey::new(n, e)
            .map(|k| Self::Rsa(Box::new(k)))
            .map_err(|e| crypto_err("RSA public key", e))
    }

    /// From an uncompressed (or compressed) SEC1 P-256 point (PUT KEY `B0`).
    pub fn p256(point: &[u8]) -> Result<Self> {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map(Self::P256)
            .map_err(|e| crypto_err("P-256 public key", e))
    }

    /// From a DER or PEM `SubjectPublicKeyInfo`, RSA or P-256.
    pub fn from_spki(bytes: &[u8]) -> Result<Self> {
        if let Some(pem) = core::str::from_utf8(bytes)
            .ok()
            .filter(|s| s.contains("-----BEGIN"))
        {
            if let Ok(k) = rsa::PublicKey::from_public_key_pem(pem) {
                return Ok(Self::Rsa(Box::new(k)));
            }
            return p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
                .map(Self::P256)
                .map_err(|e| crypto_err("SPKI PEM public key (RSA or P-256)", e));
        }
        if let Ok(k) = rsa::PublicKey::from_public_key_der(bytes) {
            return Ok(Self::Rsa(Box::new(k)));
        }
        p256::ecdsa::VerifyingKey::from_public_key_der(bytes)
            .map(Self::P256)
            .map_err(|e| crypto_err("SPKI DER public key (RSA or P-256)", e))
    }

    /// An AES key.
    pub fn aes(key: &[u8]) -> Result<Self> {
        DmSigningKey::aes(key).map(|k| k.verifying_key())
    }

    /// The scheme of the signatures it checks.
    pub fn scheme(&self) -> Scheme {
        match self {
            Self::Rsa(k) => Scheme::for_rsa_bits(rsa::traits::PublicKeyParts::n_bits_precision(
                k.as_ref(),
            ) as usize),
            Self::P256(_) => Scheme::EcdsaP256Sha256,
            Self::Aes(_) => Scheme::AesCmac,
        }
    }

    /// Checks `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        let bad = |why: String| Error::InvalidValue {
            context: "signature",
            field: self.scheme().name(),
            reason: why,
        };
        match self {
            Self::Rsa(k) => {
                let r = match self.scheme() {
                    Scheme::RsaPkcs1Sha1 => k.verify(
                        Pkcs1v15Sign::new::<Sha1>(),
                        &Sha1::digest(message),
                        signature,
                    ),
                    _ => k.verify(
                        Pss::<Sha256>::new_with_salt(32),
                        &Sha256::digest(message),
                        signature,
                    ),
                };
                r.map_err(|e| bad(format!("does not verify ({e})")))
            }
            Self::P256(k) => {
                let sig = p256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| bad(format!("{} bytes is not r ‖ s", signature.len())))?;
                k.verify_prehash(&Sha256::digest(message), &sig)
                    .map_err(|_| bad("does not verify".into()))
            }
            Self::Aes(k) => {
                let want = super::receipt::aes_cmac(k, message)?;
                if bool::from(want.ct_eq(signature)) {
                    Ok(())
                } else {
                    Err(bad("does not verify".into()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::Generate;

    #[test]
    fn ecdsa_and_aes_round_trip() {
        let k = DmSigningKey::P256(p256::ecdsa::SigningKey::try_generate().unwrap());
        let sig = k.sign(b"token input").unwrap();
        assert_eq!(sig.len(), 64);
        let v = k.verifying_key();
        v.verify(b"token input", &sig).unwrap();
        assert!(v.verify(b"token inpuT", &sig).is_err());
        assert!(v.verify(b"token input", &sig[1..]).is_err());
        let a = DmSigningKey::aes(&[7; 16]).unwrap();
        let t = a.sign(b"x").unwrap();
        a.verifying_key().verify(b"x", &t).unwrap();
        assert!(a.verifying_key().verify(b"y", &t).is_err());
    }
}
