//! What the PIV-compatible card applet gives and expects (NIST SP 800-73-4).
//!
//! * GENERATE ASYMMETRIC KEY PAIR (SP 800-73-4 Part 2 §3.3.2) answers with the public key
//!   in a `7F49` template: RSA as `81` modulus and `82` public exponent, ECC as `86` the
//!   uncompressed point `04 || X || Y`. [`parse_public_key_template`] reads it.
//! * GENERAL AUTHENTICATE (§3.2.4) with an RSA key performs the raw RSA private operation
//!   on a block the host padded; for RSA signatures the host sends
//!   [`emsa_pkcs1_v15_sha256`] of the digest. With an ECC key the card hashes nothing and
//!   returns a DER `Ecdsa-Sig-Value` over the digest it was given.

use crate::key::{KeyError, PublicKey};

/// PIV cryptographic algorithm identifiers (SP 800-78-4 Table 6-2) supported here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PivAlgorithm {
    /// `07`: RSA 2048.
    Rsa2048,
    /// `11`: ECC P-256.
    EccP256,
}

impl PivAlgorithm {
    /// The algorithm reference byte used in GENERATE ASYMMETRIC KEY PAIR and GENERAL AUTHENTICATE.
    pub fn id(self) -> u8 {
        match self {
            Self::Rsa2048 => 0x07,
            Self::EccP256 => 0x11,
        }
    }

    /// The algorithm for a reference byte, if supported.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            0x07 => Some(Self::Rsa2048),
            0x11 => Some(Self::EccP256),
            _ => None,
        }
    }
}

/// Read the public key from a GENERATE ASYMMETRIC KEY PAIR response data field (the `7F49`
/// template, SP 800-73-4 Part 2 §3.3.2), requiring the algorithm that was asked for.
///
/// RSA-2048 needs exactly `81` (modulus, 2048 bits) and `82` (exponent); P-256 needs exactly
/// `86` (uncompressed point, 65 bytes). Duplicate, unknown or missing tags and trailing bytes
/// are errors.
pub fn parse_public_key_template(
    data: &[u8],
    algorithm: PivAlgorithm,
) -> Result<PublicKey, KeyError> {
    let mut outer = Tlv::reader(data);
    let template = outer
        .next_tlv()?
        .ok_or_else(|| template_err("empty response"))?;
    if template.tag != 0x7F49 {
        return Err(template_err(format!(
            "expected tag 7F49, found {:X}",
            template.tag
        )));
    }
    if outer.next_tlv()?.is_some() {
        return Err(template_err("trailing data after 7F49 template"));
    }
    let mut modulus = None;
    let mut exponent = None;
    let mut point = None;
    let mut inner = Tlv::reader(template.value);
    while let Some(obj) = inner.next_tlv()? {
        let slot = match obj.tag {
            0x81 => &mut modulus,
            0x82 => &mut exponent,
            0x86 => &mut point,
            other => return Err(template_err(format!("unexpected tag {other:X} in 7F49"))),
        };
        if slot.replace(obj.value).is_some() {
            return Err(template_err(format!("duplicate tag {:X} in 7F49", obj.tag)));
        }
    }
    match algorithm {
        PivAlgorithm::Rsa2048 => {
            if point.is_some() {
                return Err(template_err("tag 86 in an RSA key template"));
            }
            let n = modulus.ok_or_else(|| template_err("missing modulus (81)"))?;
            let e = exponent.ok_or_else(|| template_err("missing public exponent (82)"))?;
            let key = PublicKey::from_rsa_components(n, e)?;
            match key.algorithm() {
                crate::key::KeyAlgorithm::Rsa { bits: 2048 } => Ok(key),
                crate::key::KeyAlgorithm::Rsa { bits } => Err(KeyError::RsaModulusSize(bits)),
                crate::key::KeyAlgorithm::P256 => Err(template_err("not an RSA key")),
            }
        }
        PivAlgorithm::EccP256 => {
            if modulus.is_some() || exponent.is_some() {
                return Err(template_err("tag 81/82 in an ECC key template"));
            }
            let p = point.ok_or_else(|| template_err("missing point (86)"))?;
            PublicKey::from_p256_uncompressed(p)
        }
    }
}

/// Encode a public key as the `7F49` template a PIV card returns (for virtual cards and tests).
pub fn encode_public_key_template(key: &PublicKey) -> Vec<u8> {
    use rsa::traits::PublicKeyParts;
    let mut body = Vec::new();
    match key {
        PublicKey::Rsa(k) => {
            push_tlv(&mut body, &[0x81], &k.n_bytes());
            push_tlv(&mut body, &[0x82], &k.e_bytes());
        }
        PublicKey::P256(k) => {
            use p256::elliptic_curve::sec1::ToSec1Point;
            push_tlv(&mut body, &[0x86], k.to_sec1_point(false).as_bytes());
        }
    }
    let mut out = Vec::with_capacity(body.len() + 6);
    push_tlv(&mut out, &[0x7F, 0x49], &body);
    out
}

/// `DigestInfo` prefix for SHA-256 (RFC 8017 §9.2, Note 1).
pub const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// EMSA-PKCS1-v1_5 encoding of a SHA-256 digest for a modulus of `k` bytes
/// (RFC 8017 §9.2): `00 01 FF..FF 00 || DigestInfo`. This is the block a host gives a PIV
/// card's RSA key in GENERAL AUTHENTICATE; the card's raw RSA result is the PKCS#1 v1.5
/// signature. Returns `None` if `k` is too small (RFC 8017 §9.2 step 3: `k < tLen + 11`).
pub fn emsa_pkcs1_v15_sha256(digest: &[u8; 32], k: usize) -> Option<Vec<u8>> {
    let t_len = SHA256_DIGEST_INFO_PREFIX.len() + digest.len();
    if k < t_len + 11 {
        return None;
    }
    let mut em = Vec::with_capacity(k);
    em.extend_from_slice(&[0x00, 0x01]);
    em.resize(k - t_len - 1, 0xFF);
    em.push(0x00);
    em.extend_from_slice(&SHA256_DIGEST_INFO_PREFIX);
    em.extend_from_slice(digest);
    Some(em)
}

fn template_err(msg: impl Into<String>) -> KeyError {
    KeyError::Template(msg.into())
}

fn push_tlv(out: &mut Vec<u8>, tag: &[u8], value: &[u8]) {
    out.extend_from_slice(tag);
    let len = value.len();
    // Definite length form (ISO/IEC 8825-1 §8.1.3): short form below 128, else 81/82/83.
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xFF {
        out.extend_from_slice(&[0x81, len as u8]);
    } else if len <= 0xFFFF {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    } else {
        out.extend_from_slice(&[0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(value);
}

/// One BER-TLV data object (ISO/IEC 7816-4 BER-TLV; tag and length per ISO/IEC 8825-1).
struct Tlv<'a> {
    tag: u32,
    value: &'a [u8],
}

struct TlvReader<'a> {
    rest: &'a [u8],
}

impl<'a> Tlv<'a> {
    fn reader(data: &'a [u8]) -> TlvReader<'a> {
        TlvReader { rest: data }
    }
}

impl<'a> TlvReader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], KeyError> {
        if self.rest.len() < n {
            return Err(template_err(format!("truncated {what}")));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn next_tlv(&mut self) -> Result<Option<Tlv<'a>>, KeyError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        // Tag: low five bits all ones mean subsequent bytes follow while b8 is set.
        let first = self.take(1, "tag")?[0];
        let mut tag = u32::from(first);
        if first & 0x1F == 0x1F {
            loop {
                let b = self.take(1, "tag")?[0];
                if tag > 0x00FF_FFFF {
                    return Err(template_err("tag longer than 4 bytes"));
                }
                tag = tag << 8 | u32::from(b);
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        let l0 = self.take(1, "length")?[0];
        let len = match l0 {
            0x00..=0x7F => usize::from(l0),
            0x81..=0x83 => {
                let n = usize::from(l0 & 0x7F);
                self.take(n, "length")?
                    .iter()
                    .fold(0usize, |acc, &b| acc << 8 | usize::from(b))
            }
            0x80 => return Err(template_err("indefinite length not allowed")),
            _ => return Err(template_err(format!("unsupported length byte {l0:02X}"))),
        };
        let value = self.take(len, "value")?;
        Ok(Some(Tlv { tag, value }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_rejects_truncation_and_indefinite_length() {
        assert!(Tlv::reader(&[0x7F]).next_tlv().is_err());
        assert!(Tlv::reader(&[0x86, 0x80]).next_tlv().is_err());
        assert!(Tlv::reader(&[0x86, 0x82, 0x01]).next_tlv().is_err());
        assert!(Tlv::reader(&[0x86, 0x02, 0x01]).next_tlv().is_err());
        let mut r = Tlv::reader(&[0x7F, 0x49, 0x81, 0x01, 0xAA]);
        let t = r.next_tlv().unwrap().unwrap();
        assert_eq!((t.tag, t.value), (0x7F49, &[0xAA][..]));
        assert!(r.next_tlv().unwrap().is_none());
    }

    #[test]
    fn emsa_layout() {
        let em = emsa_pkcs1_v15_sha256(&[0xAB; 32], 256).unwrap();
        assert_eq!(em.len(), 256);
        assert_eq!(&em[..2], &[0x00, 0x01]);
        assert!(em[2..256 - 52].iter().all(|&b| b == 0xFF));
        assert_eq!(em[256 - 52], 0x00);
        assert_eq!(&em[256 - 51..256 - 32], &SHA256_DIGEST_INFO_PREFIX);
        assert_eq!(&em[256 - 32..], &[0xAB; 32]);
        assert!(emsa_pkcs1_v15_sha256(&[0; 32], 61).is_none());
        assert_eq!(
            emsa_pkcs1_v15_sha256(&[0; 32], 62).map(|v| v.len()),
            Some(62)
        );
    }
}
