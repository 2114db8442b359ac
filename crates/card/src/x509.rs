//! The factory certificates of the SCP11b key set (as on a factory-fresh YubiKey 5.7): a
//! self-signed card manufacturer CA and the SD's certificate (PK.SD.ECKA) signed by it,
//! X.509 v3 (RFC 5280), ECDSA with SHA-256 over P-256. Written with a small DER encoder
//! (X.690): only the fixed structures below are produced; `gp::cert` parses them back.

use scp::scp11::{PrivateKey, PublicKey};
use sha2::{Digest, Sha256};

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    match value.len() {
        n if n < 0x80 => v.push(n as u8),
        n if n < 0x100 => v.extend_from_slice(&[0x81, n as u8]),
        n => {
            v.push(0x82);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    v.extend_from_slice(value);
    v
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// OIDs, DER content octets.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0A];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
const OID_ECDSA_SHA256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x03];
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1D, 0x13];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1D, 0x0F];
const OID_SKI: &[u8] = &[0x55, 0x1D, 0x0E];
const OID_AKI: &[u8] = &[0x55, 0x1D, 0x23];

fn name(organisation: &str, common_name: &str) -> Vec<u8> {
    let rdn = |oid: &[u8], v: &str| tlv(0x31, &seq(&[tlv(0x06, oid), tlv(0x0C, v.as_bytes())]));
    seq(&[rdn(OID_O, organisation), rdn(OID_CN, common_name)])
}

fn spki(key: &PublicKey) -> Vec<u8> {
    let curve = match key.curve() {
        scp::scp11::Curve::P256 => OID_P256,
        scp::scp11::Curve::P384 => OID_P384,
    };
    let mut bits = vec![0];
    bits.extend_from_slice(key.to_sec1());
    seq(&[
        seq(&[tlv(0x06, OID_EC_PUBLIC_KEY), tlv(0x06, curve)]),
        tlv(0x03, &bits),
    ])
}

/// Key identifier: SHA-1 is RFC 5280's method; RFC 7093 §2 method 1 (SHA-256, leftmost
/// 160 bits) is used here, as in the `pki` crate.
pub(crate) fn key_id(key: &PublicKey) -> Vec<u8> {
    Sha256::digest(key.to_sec1())[..20].to_vec()
}

fn ext(oid: &[u8], critical: bool, value: Vec<u8>) -> Vec<u8> {
    let mut parts = vec![tlv(0x06, oid)];
    if critical {
        parts.push(tlv(0x01, &[0xFF]));
    }
    parts.push(tlv(0x04, &value));
    seq(&parts)
}

/// A DER INTEGER from unsigned big-endian bytes.
fn integer(b: &[u8]) -> Vec<u8> {
    let first = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    let mut v = b[first..].to_vec();
    if v.first().is_none_or(|&x| x & 0x80 != 0) {
        v.insert(0, 0);
    }
    tlv(0x02, &v)
}

/// UTCTime `YYMMDDHHMMSSZ` (years 1950-2049) or GeneralizedTime after (RFC 5280 §4.1.2.5).
fn time(unix: u64) -> Vec<u8> {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let hms = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        m,
        d,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if y < 2050 {
        tlv(0x17, format!("{:02}{hms}", y % 100).as_bytes())
    } else {
        tlv(0x18, format!("{y:04}{hms}").as_bytes())
    }
}

/// `99991231235959Z`: no well-defined expiration date (RFC 5280 §4.1.2.5).
fn no_expiry() -> Vec<u8> {
    tlv(0x18, b"99991231235959Z")
}

/// What a certificate says.
pub(crate) struct CertSpec<'a> {
    pub serial: &'a [u8],
    pub issuer: (&'a str, &'a str),
    pub subject: (&'a str, &'a str),
    pub not_before: u64,
    pub key: &'a PublicKey,
    pub issuer_key: &'a PublicKey,
    pub ca: bool,
}

/// Builds and signs a certificate with `signer` (the issuer's private key).
pub(crate) fn certificate(spec: &CertSpec<'_>, signer: &PrivateKey) -> Option<Vec<u8>> {
    let alg = seq(&[tlv(
        0x06,
        match signer.curve() {
            scp::scp11::Curve::P256 => OID_ECDSA_SHA256,
            scp::scp11::Curve::P384 => OID_ECDSA_SHA384,
        },
    )]);
    let key_usage = if spec.ca {
        // keyCertSign (bit 5)
        tlv(0x03, &[0x02, 0x04])
    } else {
        // keyAgreement (bit 4)
        tlv(0x03, &[0x03, 0x08])
    };
    let mut exts = vec![
        ext(
            OID_BASIC_CONSTRAINTS,
            true,
            if spec.ca {
                seq(&[tlv(0x01, &[0xFF])])
            } else {
                seq(&[])
            },
        ),
        ext(OID_KEY_USAGE, true, key_usage),
        ext(OID_SKI, false, tlv(0x04, &key_id(spec.key))),
    ];
    if !spec.ca {
        exts.push(ext(
            OID_AKI,
            false,
            seq(&[tlv(0x80, &key_id(spec.issuer_key))]),
        ));
    }
    let tbs = seq(&[
        tlv(0xA0, &integer(&[2])),
        integer(spec.serial),
        alg.clone(),
        name(spec.issuer.0, spec.issuer.1),
        seq(&[time(spec.not_before), no_expiry()]),
        name(spec.subject.0, spec.subject.1),
        spki(spec.key),
        tlv(0xA3, &seq(&exts)),
    ]);
    let sig = gp::cert::ecdsa_sign(signer, &tbs).ok()?;
    let mut bits = vec![0];
    bits.extend_from_slice(&sig);
    Some(seq(&[tbs, alg, tlv(0x03, &bits)]))
}

/// PEM (RFC 7468) of a DER certificate.
pub fn pem(der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for c in der.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                b64.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(time(0), tlv(0x17, b"700101000000Z"));
        // 2026-12-04 03:04:05 UTC
        assert_eq!(time(1_796_353_445), tlv(0x17, b"261204030405Z"));
        // 2050-01-01
        assert_eq!(time(2_524_608_000), tlv(0x18, b"20500101000000Z"));
    }

    #[test]
    fn factory_chain_parses_and_verifies() {
        let ca = PrivateKey::generate(scp::scp11::Curve::P256).unwrap();
        let sd = PrivateKey::generate(scp::scp11::Curve::P256).unwrap();
        let ca_cert = certificate(
            &CertSpec {
                serial: &[0x81, 2, 3],
                issuer: ("O", "CA"),
                subject: ("O", "CA"),
                not_before: 1_700_000_000,
                key: ca.public_key(),
                issuer_key: ca.public_key(),
                ca: true,
            },
            &ca,
        )
        .unwrap();
        let sd_cert = certificate(
            &CertSpec {
                serial: &[1],
                issuer: ("O", "CA"),
                subject: ("O", "SD"),
                not_before: 1_700_000_000,
                key: sd.public_key(),
                issuer_key: ca.public_key(),
                ca: false,
            },
            &ca,
        )
        .unwrap();
        let chain = gp::cert::parse_chain(&[&ca_cert, &sd_cert]).unwrap();
        let leaf = gp::cert::verify_chain(
            &chain,
            ca.public_key(),
            &gp::cert::ChainPolicy {
                at: Some(1_800_000_000),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(leaf, sd.public_key());
        assert!(pem(&ca_cert).starts_with("-----BEGIN CERTIFICATE-----\nMII"));
    }
}
