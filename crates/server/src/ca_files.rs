//! The CA's certificate and key on disk: `ca.pem` and `ca-key.pem` (PKCS#8) in a directory,
//! created on first start.
//!
//! The key file is written with mode 0600 and never logged. It is a plain PKCS#8 file: keep
//! the directory on an encrypted volume, or give the CA a [`pki::CaSigner`] backed by an
//! HSM instead (`CertificateAuthority::load` with any signer).

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use base64ct::{Base64, Encoding};

use pki::{CaSigner, CertificateAuthority, CertificateStore, Clock, SoftwareSigner, Subject};
use zeroize::Zeroizing;

/// Key type of a new CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaKeyType {
    /// ECDSA P-256 (default: fast signatures and verification).
    P256,
    /// RSA with this modulus size (2048, 3072 or 4096).
    Rsa(usize),
}

impl std::str::FromStr for CaKeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "ec" => Ok(Self::P256),
            "rsa2048" => Ok(Self::Rsa(2048)),
            "rsa3072" => Ok(Self::Rsa(3072)),
            "rsa4096" => Ok(Self::Rsa(4096)),
            _ => Err(format!("'{s}': expected p256, rsa2048, rsa3072 or rsa4096")),
        }
    }
}

/// Errors opening or creating the CA, its key in files ([`open_or_create`]) or in a key
/// store ([`crate::ca_keystore::open_or_create`]).
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The key store failed (or the key is missing).
    #[error("CA key store: {0}")]
    Keystore(#[from] kms::Error),
    /// The stored key's public key is not a key the CA can use.
    #[error("CA key {label:?}: {reason}")]
    Key {
        /// The key label.
        label: String,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be written (the step that failed, the file, the cause); nothing
    /// was replaced.
    #[error("{0}")]
    Save(#[from] atomic_file::Error),
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The CA could not be created or loaded.
    #[error("certificate authority: {0}")]
    Ca(#[from] pki::CaError),
}

const CERT_FILE: &str = "ca.pem";
const KEY_FILE: &str = "ca-key.pem";

/// A new CA in memory only (tests, demos): it disappears with the process.
pub fn ephemeral(
    name: &str,
    key_type: CaKeyType,
    store: Arc<dyn CertificateStore>,
    clock: Arc<dyn Clock>,
) -> Result<CertificateAuthority, CaFileError> {
    let signer = new_signer(key_type).map_err(|reason| CaFileError::Invalid {
        path: PathBuf::from("(memory)"),
        reason,
    })?;
    Ok(CertificateAuthority::create(
        &Subject::new(name),
        Duration::from_secs(10 * 365 * 86_400),
        signer,
        store,
        clock,
    )?)
}

/// Load the CA from `dir`, or create it there (certificate valid ten years) if the
/// directory holds neither file. One file without the other is an error.
pub fn open_or_create(
    dir: &Path,
    name: &str,
    key_type: CaKeyType,
    store: Arc<dyn CertificateStore>,
    clock: Arc<dyn Clock>,
) -> Result<CertificateAuthority, CaFileError> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CaFileError::Io { path, source }
    };
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let pem = fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            let cert_der =
                pem_decode(&pem, "CERTIFICATE").map_err(|reason| CaFileError::Invalid {
                    path: cert_path.clone(),
                    reason,
                })?;
            let key_pem = Zeroizing::new(fs::read_to_string(&key_path).map_err(io(&key_path))?);
            let key_der =
                Zeroizing::new(pem_decode(&key_pem, "PRIVATE KEY").map_err(|reason| {
                    CaFileError::Invalid {
                        path: key_path.clone(),
                        reason,
                    }
                })?);
            let signer =
                SoftwareSigner::from_pkcs8_der(&key_der).map_err(|e| CaFileError::Invalid {
                    path: key_path.clone(),
                    reason: e.to_string(),
                })?;
            Ok(CertificateAuthority::load(
                &cert_der,
                Arc::new(signer),
                store,
                clock,
            )?)
        }
        (false, false) => {
            fs::create_dir_all(dir).map_err(io(dir))?;
            let signer = match key_type {
                CaKeyType::P256 => SoftwareSigner::generate_p256(),
                CaKeyType::Rsa(bits) => {
                    SoftwareSigner::generate_rsa(bits).map_err(|e| CaFileError::Invalid {
                        path: key_path.clone(),
                        reason: e.to_string(),
                    })?
                }
            };
            let key_der = signer.to_pkcs8_der().map_err(|e| CaFileError::Invalid {
                path: key_path.clone(),
                reason: e.to_string(),
            })?;
            let signer = Arc::new(signer);
            let ca = CertificateAuthority::create(
                &Subject::new(name),
                Duration::from_secs(10 * 365 * 86_400),
                signer,
                store,
                clock,
            )?;
            // Key first, never replacing one; then the certificate that goes with it.
            atomic_file::write(
                &key_path,
                pem_encode(&key_der, "PRIVATE KEY").as_bytes(),
                atomic_file::Options::private().no_overwrite(),
            )?;
            write_certificate(&cert_path, &ca)?;
            Ok(ca)
        }
        (true, false) => Err(CaFileError::Invalid {
            path: key_path,
            reason: "missing while ca.pem exists".into(),
        }),
        (false, true) => Err(CaFileError::Invalid {
            path: cert_path,
            reason: "missing while ca-key.pem exists".into(),
        }),
    }
}

fn new_signer(key_type: CaKeyType) -> Result<Arc<dyn CaSigner>, String> {
    Ok(match key_type {
        CaKeyType::P256 => Arc::new(SoftwareSigner::generate_p256()),
        CaKeyType::Rsa(bits) => {
            Arc::new(SoftwareSigner::generate_rsa(bits).map_err(|e| e.to_string())?)
        }
    })
}

/// Writes the CA certificate (public, PEM) to `path`, atomically.
pub fn write_certificate(path: &Path, ca: &CertificateAuthority) -> Result<(), CaFileError> {
    atomic_file::write(
        path,
        ca.certificate().to_pem().as_bytes(),
        atomic_file::Options::public(),
    )?;
    Ok(())
}

/// PEM armour (RFC 7468 §2) with 64-character lines and LF line endings
/// ([`pem_rfc7468::encode`]), in a buffer wiped on drop (the DER may be a private key).
pub fn pem_encode(der: &[u8], label: &str) -> Zeroizing<String> {
    let le = pem_rfc7468::LineEnding::LF;
    // The label is one of ours ("CERTIFICATE", "PRIVATE KEY"): encoding cannot fail.
    let len = pem_rfc7468::encoded_len(label, le, der).unwrap_or_default();
    let mut buf = Zeroizing::new(vec![0u8; len]);
    let n = pem_rfc7468::encode(label, le, der, &mut buf)
        .map(str::len)
        .unwrap_or_default();
    Zeroizing::new(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The DER inside the first PEM block with `label` (RFC 7468 §2): the text between its
/// `-----BEGIN label-----` and `-----END label-----` lines, any whitespace (CR, LF, wrapping
/// at any width) ignored, decoded as strict standard base64 ([`base64ct`]).
pub fn pem_decode(text: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| format!("no '{begin}' line"))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| format!("no '{end}' line"))?;
    let body: String = text[start..start + stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64_decode(&body).ok_or_else(|| "invalid base64".to_string())
}

/// Standard base64 with padding (RFC 4648 §4), [`base64ct::Base64`].
pub fn base64_encode(bytes: &[u8]) -> String {
    Base64::encode_string(bytes)
}

/// Standard base64 with padding (RFC 4648 §4), [`base64ct::Base64`]; `None` on any invalid
/// character, padding or length.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    Base64::decode_vec(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_rfc4648_section_10_vectors() {
        // RFC 4648 §10 test vectors.
        for (plain, b64) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), b64);
            assert_eq!(base64_decode(b64).unwrap(), plain.as_bytes());
        }
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9*", "===="] {
            assert!(base64_decode(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn pem_round_trip() {
        let der: Vec<u8> = (0..200u8).collect();
        let pem = pem_encode(&der, "CERTIFICATE");
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(pem_decode(&pem, "CERTIFICATE").unwrap(), der);
        assert!(pem_decode(&pem, "PRIVATE KEY").is_err());
    }

    #[test]
    fn ca_directory_is_created_then_loaded() {
        let dir = std::env::temp_dir().join(format!("cw-ca-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = Arc::new(pki::MemoryStore::new());
        let clock = Arc::new(pki::SystemClock);
        let a = open_or_create(&dir, "T", CaKeyType::P256, store.clone(), clock.clone()).unwrap();
        let b = open_or_create(&dir, "T", CaKeyType::P256, store, clock).unwrap();
        assert_eq!(a.certificate().der(), b.certificate().der());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_file(dir.join(CERT_FILE)).unwrap();
        assert!(open_or_create(
            &dir,
            "T",
            CaKeyType::P256,
            Arc::new(pki::MemoryStore::new()),
            Arc::new(pki::SystemClock)
        )
        .is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
