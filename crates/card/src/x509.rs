//! The factory certificates of the SCP11b key set (as on a factory-fresh YubiKey 5.7): a
//! self-signed card manufacturer CA and the SD's certificate (PK.SD.ECKA) signed by it,
//! X.509 v3 (RFC 5280), ECDSA with SHA-256 over P-256, issued with [`pki::scp11`].

use std::fmt;

use pki::scp11::{self, CertificateParams};
use pki::{CaSigner, Serial, SignerError, Subject};
use scp::scp11::PrivateKey;

/// The manufacturer CA's P-256 key as a [`CaSigner`].
struct FactoryCa<'a> {
    key: &'a PrivateKey,
    public: pki::PublicKey,
}

impl fmt::Debug for FactoryCa<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FactoryCa")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl CaSigner for FactoryCa<'_> {
    fn public_key(&self) -> &pki::PublicKey {
        &self.public
    }

    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        gp::cert::ecdsa_sign(self.key, message).map_err(SignerError)
    }
}

/// What the factory chain says.
pub(crate) struct FactoryNames<'a> {
    /// Organisation of both certificates.
    pub organisation: &'a str,
    /// Common name of the CA.
    pub ca: &'a str,
    /// Common name of the SD's certificate.
    pub sd: &'a str,
}

/// The chain `[CA certificate, SD certificate]` (DER): `ca` (a P-256 key) certifies
/// itself and `sd`'s public key (P-256 or P-384); both valid from `not_before` (Unix
/// seconds) with no expiry. `None` if the CA key is not P-256 or signing fails.
pub(crate) fn factory_chain(
    names: &FactoryNames<'_>,
    ca: &PrivateKey,
    ca_serial: &[u8],
    sd: &scp::scp11::PublicKey,
    sd_serial: &[u8],
    not_before: u64,
) -> Option<[Vec<u8>; 2]> {
    let signer = FactoryCa {
        key: ca,
        public: pki::PublicKey::from_spki_der(&ca.public_key().to_spki_der().ok()?).ok()?,
    };
    let not_before =
        time::OffsetDateTime::from_unix_timestamp(i64::try_from(not_before).ok()?).ok()?;
    let name = |cn: &str| Subject::new(cn).with_organization(names.organisation);
    let params = |cn: &str, serial: &[u8]| {
        Some(
            CertificateParams::new(name(cn), not_before, None)
                .with_serial(Serial::from_bytes(serial)?),
        )
    };
    let ca_cert = scp11::ca_certificate(&signer, &params(names.ca, ca_serial)?).ok()?;
    let sd_cert = scp11::ecka_certificate(
        &signer,
        &name(names.ca),
        &sd.to_spki_der().ok()?,
        &params(names.sd, sd_serial)?,
    )
    .ok()?;
    Some([ca_cert, sd_cert])
}

/// PEM (RFC 7468, label `CERTIFICATE`) of a DER certificate.
pub fn pem(der: &[u8]) -> String {
    pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, der).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use scp::scp11::Curve;

    fn chain() -> (PrivateKey, PrivateKey, [Vec<u8>; 2]) {
        let ca = PrivateKey::generate(Curve::P256).unwrap();
        let sd = PrivateKey::generate(Curve::P256).unwrap();
        let chain = factory_chain(
            &FactoryNames {
                organisation: "O",
                ca: "CA",
                sd: "SD",
            },
            &ca,
            &[0x81, 2, 3],
            sd.public_key(),
            &[1],
            1_700_000_000,
        )
        .unwrap();
        (ca, sd, chain)
    }

    #[test]
    fn factory_chain_parses_and_verifies() {
        let (ca, sd, [ca_cert, sd_cert]) = chain();
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
        assert_eq!(chain[0].serial(), [0x00, 0x81, 2, 3]);
        // Not valid before its notBefore.
        assert!(gp::cert::verify_chain(
            &chain,
            ca.public_key(),
            &gp::cert::ChainPolicy {
                at: Some(1_600_000_000),
                ..Default::default()
            },
        )
        .is_err());
        // Signed by another key: rejected.
        let other = PrivateKey::generate(Curve::P256).unwrap();
        assert!(gp::cert::verify_chain(
            &chain,
            other.public_key(),
            &gp::cert::ChainPolicy::default()
        )
        .is_err());
        let p = pem(&ca_cert);
        assert!(p.starts_with("-----BEGIN CERTIFICATE-----\nMII"), "{p}");
        assert!(p.ends_with("-----END CERTIFICATE-----\n"));
    }

    /// OpenSSL accepts the chain too (skipped where the `openssl` tool is not installed).
    #[test]
    fn factory_chain_verifies_with_openssl() {
        let (_, _, [ca_cert, sd_cert]) = chain();
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = dir.path().join("ca.pem");
        let sd_pem = dir.path().join("sd.pem");
        std::fs::write(&ca_pem, pem(&ca_cert)).unwrap();
        std::fs::write(&sd_pem, pem(&sd_cert)).unwrap();
        let out = match std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&ca_pem)
            .arg(&sd_pem)
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                eprintln!("skipped: openssl not runnable: {e}");
                return;
            }
        };
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // And rejects it under another CA.
        let other = chain().2[0].clone();
        std::fs::write(&ca_pem, pem(&other)).unwrap();
        let out = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&ca_pem)
            .arg(&sd_pem)
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
}
