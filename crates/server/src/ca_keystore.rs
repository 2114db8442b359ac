//! The CA's private key in the key store ([`kms::SigningKeyStore`]: the software keystore
//! encrypted at rest, or a PKCS#11 HSM), with only the CA certificate (public) on disk.
//!
//! [`KeystoreSigner`] adapts a [`kms::SigningKey`] to [`pki::CaSigner`]; [`open_or_create`]
//! is the key-store counterpart of [`crate::ca_files::open_or_create`]: on first start it
//! makes the key (label [`DEFAULT_LABEL`]) in the store and writes the self-signed `ca.pem`
//! to the directory; later starts load `ca.pem` and check it belongs to the stored key.
//! Certificates and CRLs are then signed by the store (inside the HSM for PKCS#11).

use std::{fs, path::Path, sync::Arc, time::Duration};

use kms::{SigningAlgorithm, SigningKey, SigningKeyStore};
use pki::{CertificateAuthority, CertificateStore, Clock, Subject};

use crate::ca_files::{pem_decode, write_certificate, CaFileError, CaKeyType};

/// The label of the CA key in the store.
pub const DEFAULT_LABEL: &str = "ca";
const CERT_FILE: &str = "ca.pem";
const KEY_FILE: &str = "ca-key.pem";

/// A [`pki::CaSigner`] whose private key is in a key store (the one adapter, in `pki`).
pub use pki::KeystoreSigner;

/// [`KeystoreSigner::new`], its refusal said as a [`CaFileError`].
fn keystore_signer(key: Box<dyn SigningKey>) -> Result<KeystoreSigner, CaFileError> {
    let label = key.label().to_string();
    KeystoreSigner::new(key).map_err(|e| CaFileError::Key {
        label,
        reason: e.to_string(),
    })
}

/// The key-store algorithm for a CA key type (RSA-4096 is not offered by the key store).
pub fn algorithm_for(key_type: CaKeyType) -> Result<SigningAlgorithm, CaFileError> {
    match key_type {
        CaKeyType::P256 => Ok(SigningAlgorithm::P256),
        CaKeyType::Rsa(2048) => Ok(SigningAlgorithm::Rsa2048),
        CaKeyType::Rsa(3072) => Ok(SigningAlgorithm::Rsa3072),
        CaKeyType::Rsa(bits) => Err(CaFileError::Key {
            label: DEFAULT_LABEL.into(),
            reason: format!(
                "RSA-{bits} is not supported in the key store (p256, rsa2048, rsa3072)"
            ),
        }),
    }
}

/// Loads the CA: key `label` from `keys`, certificate `dir/ca.pem`. On first start (no
/// `ca.pem`) the key is created in the store if it is not there yet and a self-signed
/// certificate valid ten years is written. A `ca.pem` without its key in the store, a
/// certificate for another key, or a plain `ca-key.pem` next to it are errors.
#[allow(clippy::too_many_arguments)]
pub fn open_or_create(
    dir: &Path,
    name: &str,
    key_type: CaKeyType,
    keys: &dyn SigningKeyStore,
    label: &str,
    store: Arc<dyn CertificateStore>,
    clock: Arc<dyn Clock>,
) -> Result<CertificateAuthority, CaFileError> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    if key_path.exists() {
        return Err(CaFileError::Invalid {
            path: key_path,
            reason: "a plain CA key file; with a key store the key belongs in the store \
                     (use --ca-dir without --ca-keystore for this directory)"
                .into(),
        });
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CaFileError::Io { path, source }
    };
    if cert_path.exists() {
        let key = keys.signing_key(label)?;
        let pem = fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let der = pem_decode(&pem, "CERTIFICATE").map_err(|reason| CaFileError::Invalid {
            path: cert_path.clone(),
            reason,
        })?;
        let signer = Arc::new(keystore_signer(key)?);
        return Ok(CertificateAuthority::load(&der, signer, store, clock)?);
    }
    let (key, _created) = keys.signing_key_or_create(label, algorithm_for(key_type)?)?;
    let signer = Arc::new(keystore_signer(key)?);
    fs::create_dir_all(dir).map_err(io(dir))?;
    let ca = CertificateAuthority::create(
        &Subject::new(name),
        Duration::from_secs(10 * 365 * 86_400),
        signer,
        store,
        clock,
    )?;
    write_certificate(&cert_path, &ca)?;
    Ok(ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_key_in_a_software_keystore() {
        let tmp = tempfile_dir();
        let ks = kms::SoftwareKeyStore::create(
            tmp.join("keys.json"),
            kms::MasterKey::generate().unwrap(),
        )
        .unwrap();
        let dir = tmp.join("ca");
        let certs = Arc::new(pki::MemoryStore::new());
        let clock = Arc::new(pki::SystemClock);
        let a = open_or_create(
            &dir,
            "T",
            CaKeyType::P256,
            &ks,
            "ca",
            certs.clone(),
            clock.clone(),
        )
        .unwrap();
        // Only the certificate is on disk.
        let files: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, ["ca.pem"]);
        let b = open_or_create(
            &dir,
            "T",
            CaKeyType::P256,
            &ks,
            "ca",
            certs.clone(),
            clock.clone(),
        )
        .unwrap();
        assert_eq!(a.certificate().der(), b.certificate().der());
        let crl = b.crl_der(Duration::from_secs(3600)).unwrap();
        assert!(!crl.is_empty());
        // ca.pem with another label's (absent) key, or a certificate of another key.
        assert!(matches!(
            open_or_create(
                &dir,
                "T",
                CaKeyType::P256,
                &ks,
                "other",
                certs.clone(),
                clock.clone()
            ),
            Err(CaFileError::Keystore(kms::Error::SigningKeyNotFound(_)))
        ));
        ks.create_signing_key("other", SigningAlgorithm::P256)
            .unwrap();
        assert!(matches!(
            open_or_create(
                &dir,
                "T",
                CaKeyType::P256,
                &ks,
                "other",
                certs.clone(),
                clock.clone()
            ),
            Err(CaFileError::Ca(_))
        ));
        fs::write(dir.join(KEY_FILE), "x").unwrap();
        assert!(matches!(
            open_or_create(&dir, "T", CaKeyType::P256, &ks, "ca", certs, clock),
            Err(CaFileError::Invalid { .. })
        ));
        assert!(algorithm_for(CaKeyType::Rsa(4096)).is_err());
        let _ = fs::remove_dir_all(&tmp);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cw-ca-keystore-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
