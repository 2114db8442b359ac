//! The outlet security module (first source document, `docs/OUTLET.md`).
//!
//! A [`Module`] is a key store (a PKCS#11 token: the security module; the software key store
//! for a demo) plus two files in the outlet's directory: `outlet.toml` (which outlet, which
//! token, which cards) and `outlet.db` (SQLite: the verified applications, each row MAC'd in
//! the token; the install journal; the hash-chained install records; the certificates the
//! module's CA issued). Nothing secret is in the files. The token holds:
//!
//! * the base key of the card category, from which each card's SCP03 keys are derived
//!   inside the token from the card's key diversification data (as the issuer's platform
//!   wrote the card: `kms::KeyStore::derive_for_kdd`);
//! * `outlet/db-mac`, the HMAC-SHA256 key of the MACs over `outlet.db`'s rows;
//! * `outlet/ca`, the CA key that certifies key pairs generated on cards, and the CA's
//!   self-signed certificate (data object `outlet/ca-certificate`);
//! * the trust anchors packages must chain to, with the privileges each may grant (data
//!   objects `outlet/trust/N`);
//! * the AES registration keys it generates for cards (`reg/<card>/<application>/s<slot>`).
//!
//! What it does:
//!
//! * [`Module::add`] verifies a package ([`package::verify`]) and stores its applications;
//! * [`Module::install`] installs one application on the card in a reader and registers it
//!   (keys generated on the card and certified, or generated in the module and loaded
//!   encrypted), reporting [`Progress`]; [`Module::resume`] finishes or rolls back an install
//!   a pulled card interrupted;
//! * [`Module::records`], [`Module::verify_records`] and [`Module::sync`] keep and upload
//!   the install records.
#![forbid(unsafe_code)]

mod card;
mod catalog;
pub mod config;
mod db;
mod install;
pub mod records;
mod registration;
mod sync;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use config::OutletConfig;
pub use records::{Record, RecordChainReport, SyncReport};

/// One application of the catalog (what the page lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The application's short name (`wallet`).
    pub name: String,
    /// Its title.
    pub title: String,
    /// Its version.
    pub version: String,
    /// The provider (from the manifest).
    pub provider: String,
    /// The load file's size in bytes.
    pub size: u64,
    /// SHA-256 of the package it came from, hex.
    pub package_sha256: String,
}

/// How far an install is (for the page's progress bar).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Progress {
    /// Opening the secure channel.
    Connecting,
    /// LOAD block `block` of `blocks` sent.
    Loading {
        /// Blocks sent so far.
        block: usize,
        /// All blocks.
        blocks: usize,
    },
    /// INSTALL sent.
    Installing,
    /// Registration: key `key` (its id in the recipe) being generated or loaded.
    Registering {
        /// The recipe's key id.
        key: String,
    },
}

/// Why an install failed, in words a clerk understands (`code()` for the page).
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The card has no room for the application.
    #[error("the card is full: remove an application first")]
    CardFull,
    /// The application (its load file or instance) is already on the card.
    #[error("{0} is already on this card")]
    AlreadyPresent(String),
    /// The module has no keys for this card (another issuer's card, or another category).
    #[error("this card cannot be served here: {0}")]
    WrongCard(String),
    /// The card went away mid-install; the next click or `outlet resume` completes it.
    #[error("the card was removed: insert it again to finish")]
    CardRemoved,
    /// No card in the reader.
    #[error("no card in the reader")]
    NoCard,
    /// The stored package no longer matches its MAC (edited on disk): refused.
    #[error("the stored package for {0} was altered: add it again")]
    PackageTampered(String),
    /// No such application in the catalog.
    #[error("no application {0} in the catalog")]
    UnknownApplication(String),
    /// Anything else (card error, module error), with the detail.
    #[error("{0}")]
    Other(String),
}

impl InstallError {
    /// `card_full`, `already_present`, `wrong_card`, `card_removed`, `no_card`,
    /// `package_tampered`, `unknown_application`, `error`.
    pub fn code(&self) -> &'static str {
        match self {
            InstallError::CardFull => "card_full",
            InstallError::AlreadyPresent(_) => "already_present",
            InstallError::WrongCard(_) => "wrong_card",
            InstallError::CardRemoved => "card_removed",
            InstallError::NoCard => "no_card",
            InstallError::PackageTampered(_) => "package_tampered",
            InstallError::UnknownApplication(_) => "unknown_application",
            InstallError::Other(_) => "error",
        }
    }
}

/// What an install did (shown on the page and kept in the record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallOutcome {
    /// The application's name.
    pub application: String,
    /// The card (its card number as the module knows it from the KDD, or the ISD's CIN).
    pub card: String,
    /// The instance AID installed, hex.
    pub instance: String,
    /// C-APDUs sent.
    pub apdus: u64,
    /// LOAD blocks.
    pub blocks: usize,
    /// Registration results, one per recipe key.
    pub registration: Vec<RegisteredKey>,
    /// The record's sequence number in the module's record chain.
    pub record: u64,
}

/// One key registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredKey {
    /// The recipe's key id.
    pub id: String,
    /// `ec-p256` (generated on the card) or `aes-128`/`aes-256` (generated in the module).
    pub kind: String,
    /// For on-card key pairs: the certificate the module issued (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// For symmetric keys: the key check value (hex), never the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kcv: Option<String>,
}

/// The card in the reader, as far as the module can tell without authenticating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardState {
    /// The reader's name.
    pub reader: String,
    /// Whether a card is present.
    pub present: bool,
    /// Whether the module holds keys for it (from INITIALIZE UPDATE's key diversification
    /// data and key version; no authentication is attempted).
    pub known: bool,
    /// The card number (from the KDD), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<String>,
}

/// An install a pulled card interrupted (what [`Module::pending`] lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingInstall {
    /// The card number.
    pub card: String,
    /// The application.
    pub application: String,
    /// How far it got: `started`, `loaded`, `installed`, `registering`, `personalized`.
    pub stage: String,
    /// Set when the card refused a step: the next contact rolls the install back
    /// (DELETE); the code says why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolling_back: Option<String>,
    /// When it started (Unix milliseconds).
    pub started_ms: i64,
    /// When it was last updated (Unix milliseconds).
    pub updated_ms: i64,
}

/// What [`Module::init`] makes.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The outlet's identifier ([`config::validate_id`]).
    pub id: String,
    /// The security module: a `kms` configuration string (`pkcs11:…`; `file:…` for a demo).
    pub module: String,
    /// The trust anchors packages must chain to, with the privileges each may grant.
    pub trust: Vec<package::TrustAnchor>,
    /// The card category whose base key (already in the module) derives the card keys.
    pub category: String,
    /// The category's initial key version number (`0x30` at the platform by default).
    pub initial_kvn: u8,
    /// The subject common name of the module's CA (default `Cardwright outlet <id> CA`).
    pub ca_name: Option<String>,
}

/// Why a module operation failed (installs fail with an [`InstallError`] instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The package was refused; nothing was stored.
    #[error("package refused: {0}")]
    Refused(package::Refusal),
    /// The key store (token) failed.
    #[error("security module: {0}")]
    Kms(#[from] kms::Error),
    /// `outlet.db` failed.
    #[error("outlet.db: {0}")]
    Db(#[from] rusqlite::Error),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `outlet.toml` (or the module's objects) is not what this version reads.
    #[error("configuration: {0}")]
    Config(String),
    /// The directory or the token already holds an outlet.
    #[error("{0}")]
    AlreadyInitialised(String),
    /// Something stored does not match its MAC or hash (edited outside the module).
    #[error("integrity check failed: {0}")]
    Tampered(String),
    /// No such application in the catalog.
    #[error("no application {0} in the catalog")]
    UnknownApplication(String),
    /// The module's CA failed.
    #[error("certificate authority: {0}")]
    Ca(String),
    /// The platform could not be reached (nothing was marked sent).
    #[error("the platform is unreachable: {0}")]
    Unreachable(String),
    /// The platform answered with an error (nothing was marked sent).
    #[error("the platform refused the records: {reason} ({code}, HTTP {status})")]
    Platform {
        /// HTTP status.
        status: u16,
        /// The `error` code of its answer.
        code: String,
        /// The `reason` of its answer.
        reason: String,
    },
    /// A value given is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// Labels of the module's own objects in the token.
pub mod labels {
    /// The HMAC-SHA256 key of the MACs over `outlet.db` (secret key).
    pub const DB_MAC: &str = "outlet/db-mac";
    /// The CA's signing key.
    pub const CA_KEY: &str = "outlet/ca";
    /// The CA's self-signed certificate, DER (data object).
    pub const CA_CERTIFICATE: &str = "outlet/ca-certificate";
    /// Prefix of the trust anchors (data objects `outlet/trust/1`, `…/2`, …).
    pub const TRUST_PREFIX: &str = "outlet/trust/";
    /// Prefix of the registration keys the module generates for cards.
    pub const REGISTRATION_PREFIX: &str = "reg/";

    /// The label of a registration key: `reg/<card>/<application>/s<slot>` (at most 61
    /// characters: card numbers have 20 digits, application names 32 characters).
    pub fn registration_key(card: &str, application: &str, slot: u8) -> String {
        format!("{REGISTRATION_PREFIX}{card}/{application}/s{slot}")
    }
}

/// A trust anchor as kept in the token (data object `outlet/trust/N`, JSON).
#[derive(Debug, Serialize, Deserialize)]
struct StoredAnchor {
    /// The root certificate, DER, hex.
    certificate: String,
    /// The privileges it may grant (`gp::Privileges` text).
    grantable: String,
}

/// The outlet security module. `Send + Sync`; share it in an `Arc` (one install at a time
/// runs; others wait).
pub struct Module {
    dir: PathBuf,
    config: OutletConfig,
    db: Arc<db::Db>,
    base_keys: Box<dyn kms::KeyStore>,
    secrets: Arc<dyn kms::SecretKeyStore>,
    ca: Arc<pki::CertificateAuthority>,
    enroller: pki::Enroller,
    trust: Vec<package::TrustAnchor>,
    /// One card session at a time.
    card_lock: Mutex<()>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("dir", &self.dir)
            .field("id", &self.config.id)
            .field("module", &self.config.module)
            .field("category", &self.config.cards.category)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The trust anchors in the token, in label order.
fn read_anchors(objects: &dyn kms::DataObjectStore) -> Result<Vec<package::TrustAnchor>, Error> {
    let mut labels = objects.list(labels::TRUST_PREFIX)?;
    labels.sort_by_key(|l| {
        l[labels::TRUST_PREFIX.len()..]
            .parse::<u32>()
            .unwrap_or(u32::MAX)
    });
    let mut out = Vec::new();
    for label in labels {
        let bytes = objects
            .get(&label)?
            .ok_or_else(|| Error::Config(format!("trust anchor {label} vanished")))?;
        let a: StoredAnchor = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Config(format!("trust anchor {label}: {e}")))?;
        out.push(package::TrustAnchor {
            certificate_der: apdu::parse_hex(&a.certificate)
                .map_err(|e| Error::Config(format!("trust anchor {label}: {e}")))?,
            grantable: a
                .grantable
                .parse()
                .map_err(|e| Error::Config(format!("trust anchor {label}: {e}")))?,
        });
    }
    Ok(out)
}

impl Module {
    /// Creates an outlet in `dir` (which must not hold one) over the token `opts.module`
    /// (which must not hold one either, and must hold the base key of `opts.category`):
    /// the token gets the MAC key of `outlet.db`, the CA key and its self-signed
    /// certificate, and the trust anchors; then `dir/outlet.db` and `dir/outlet.toml` are
    /// written. On an error, what was created in the token is deleted again.
    pub fn init(dir: &Path, opts: InitOptions) -> Result<Module, Error> {
        let config = OutletConfig {
            format: config::FORMAT.into(),
            id: opts.id.clone(),
            module: opts
                .module
                .parse::<kms::StoreConfig>()
                .map_err(|e| Error::Config(format!("module: {e}")))?
                .to_string(),
            cards: config::CardKeys {
                category: opts.category.clone(),
                initial_kvn: opts.initial_kvn,
                scp: "scp03".into(),
            },
        };
        config.check()?;
        if opts.trust.is_empty() {
            return Err(Error::Invalid(
                "at least one trust anchor is needed (--trust)".into(),
            ));
        }
        for (i, a) in opts.trust.iter().enumerate() {
            let c = pki::Certificate::from_der(&a.certificate_der).map_err(|e| {
                Error::Invalid(format!("trust anchor {}: not a certificate: {e}", i + 1))
            })?;
            c.public_key()
                .map_err(|e| Error::Invalid(format!("trust anchor {}: its key: {e}", i + 1)))?;
        }
        let toml_path = dir.join(config::FILE);
        let db_path = dir.join(DB_FILE);
        for p in [&toml_path, &db_path] {
            if p.exists() {
                return Err(Error::AlreadyInitialised(format!(
                    "{} exists: this directory holds an outlet already",
                    p.display()
                )));
            }
        }
        let base_keys = kms::open(&config.module)?;
        let versions = base_keys.list()?;
        if !versions
            .iter()
            .any(|v| v.category == config.cards.category && v.status != kms::KeyStatus::Retired)
        {
            return Err(Error::Config(format!(
                "the module holds no usable base key of category {:?}: bring it from the issuer's key store first (keys backup / keys restore)",
                config.cards.category
            )));
        }
        let secrets = kms::open_secret_keys(&config.module)?;
        let objects = kms::open_data_objects(&config.module)?;
        let signing = kms::open_signing(&config.module)?;
        if secrets.info(labels::DB_MAC)?.is_some()
            || objects.get(labels::CA_CERTIFICATE)?.is_some()
            || signing
                .signing_key_labels()?
                .iter()
                .any(|l| l == labels::CA_KEY)
        {
            return Err(Error::AlreadyInitialised(format!(
                "the module {} holds an outlet already ({} or {})",
                config.module,
                labels::DB_MAC,
                labels::CA_KEY
            )));
        }
        let made = Self::init_token(
            &config,
            &opts,
            secrets.as_ref(),
            objects.as_ref(),
            signing.as_ref(),
        );
        if let Err(e) = made {
            let _ = secrets.delete(labels::DB_MAC);
            let _ = objects.delete(labels::CA_CERTIFICATE);
            for l in objects.list(labels::TRUST_PREFIX).unwrap_or_default() {
                let _ = objects.delete(&l);
            }
            // A signing key cannot be deleted through the trait: a left-over CA key makes
            // the next init say so (AlreadyInitialised) rather than reuse it unknowingly.
            return Err(e);
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        db::Db::open(&db_path)?;
        atomic_file::write(
            &toml_path,
            config.to_toml().as_bytes(),
            atomic_file::Options::public().no_overwrite(),
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        Self::open(dir)
    }

    fn init_token(
        config: &OutletConfig,
        opts: &InitOptions,
        secrets: &dyn kms::SecretKeyStore,
        objects: &dyn kms::DataObjectStore,
        signing: &dyn kms::SigningKeyStore,
    ) -> Result<(), Error> {
        for (i, a) in opts.trust.iter().enumerate() {
            let stored = StoredAnchor {
                certificate: apdu::hex(&a.certificate_der),
                grantable: a.grantable.to_string(),
            };
            let json = serde_json::to_vec(&stored).map_err(|e| Error::Invalid(e.to_string()))?;
            objects.put(&format!("{}{}", labels::TRUST_PREFIX, i + 1), &json)?;
        }
        secrets.generate(labels::DB_MAC, kms::SecretKeyKind::HmacSha256)?;
        signing.create_signing_key(labels::CA_KEY, kms::SigningAlgorithm::P256)?;
        let key = signing.signing_key(labels::CA_KEY)?;
        let signer = Arc::new(pki::KeystoreSigner::new(key).map_err(|e| Error::Ca(e.to_string()))?);
        let name = opts
            .ca_name
            .clone()
            .unwrap_or_else(|| format!("Cardwright outlet {} CA", config.id));
        let ca = pki::CertificateAuthority::create(
            &pki::Subject::new(name),
            std::time::Duration::from_secs(10 * 365 * 86_400),
            signer,
            Arc::new(pki::MemoryStore::new()),
            Arc::new(pki::SystemClock),
        )
        .map_err(|e| Error::Ca(e.to_string()))?;
        objects.put(labels::CA_CERTIFICATE, ca.certificate().der())?;
        Ok(())
    }

    /// Opens the outlet in `dir`: reads `outlet.toml`, opens the token and `outlet.db`,
    /// loads the CA (its certificate must belong to the CA key) and the trust anchors.
    pub fn open(dir: &Path) -> Result<Module, Error> {
        let config = OutletConfig::read(dir)?;
        let db_path = dir.join(DB_FILE);
        if !db_path.exists() {
            return Err(Error::Config(format!(
                "{} is missing (run outlet init)",
                db_path.display()
            )));
        }
        let db = Arc::new(db::Db::open(&db_path)?);
        let base_keys = kms::open(&config.module)?;
        let secrets = kms::open_secret_keys(&config.module)?;
        if secrets.info(labels::DB_MAC)?.is_none() {
            return Err(Error::Config(format!(
                "the module {} has no {} key: not this outlet's token",
                config.module,
                labels::DB_MAC
            )));
        }
        let objects = kms::open_data_objects(&config.module)?;
        let signing = kms::open_signing(&config.module)?;
        let ca_der = objects.get(labels::CA_CERTIFICATE)?.ok_or_else(|| {
            Error::Config(format!("the module has no {}", labels::CA_CERTIFICATE))
        })?;
        let signer = Arc::new(
            pki::KeystoreSigner::new(signing.signing_key(labels::CA_KEY)?)
                .map_err(|e| Error::Ca(e.to_string()))?,
        );
        let ca = Arc::new(
            pki::CertificateAuthority::load(
                &ca_der,
                signer,
                db.clone(),
                Arc::new(pki::SystemClock),
            )
            .map_err(|e| Error::Ca(e.to_string()))?,
        );
        let enroller = pki::Enroller::new(ca.clone(), Arc::new(pki::MemoryStore::new()));
        let trust = read_anchors(objects.as_ref())?;
        Ok(Module {
            dir: dir.to_path_buf(),
            config,
            db,
            base_keys,
            secrets,
            ca,
            enroller,
            trust,
            card_lock: Mutex::new(()),
        })
    }

    /// The outlet's configuration.
    pub fn config(&self) -> &OutletConfig {
        &self.config
    }

    /// The outlet's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The module CA's certificate (PEM): the anchor of the registration certificates.
    pub fn ca_certificate_pem(&self) -> String {
        self.ca.certificate().to_pem()
    }

    /// The trust anchors packages are verified against.
    pub fn trust_anchors(&self) -> &[package::TrustAnchor] {
        &self.trust
    }

    /// HMAC-SHA256 in the token with the database MAC key.
    fn mac(&self, data: &[u8]) -> Result<[u8; 32], Error> {
        Ok(self.secrets.hmac_sha256(labels::DB_MAC, data)?)
    }

    /// Installs that a pulled card interrupted, oldest first.
    pub fn pending(&self) -> Result<Vec<PendingInstall>, Error> {
        Ok(self
            .db
            .journals()?
            .into_iter()
            .map(|j| PendingInstall {
                card: j.card,
                application: j.application,
                stage: j.stage,
                rolling_back: (!j.rollback.is_empty()).then_some(j.rollback),
                started_ms: j.started_ms,
                updated_ms: j.updated_ms,
            })
            .collect())
    }

    /// Every install record, oldest first.
    pub fn records(&self) -> Result<Vec<Record>, Error> {
        self.db.records(false)
    }

    /// Checks the record chain (every hash, every link) and the head's MAC in the token.
    pub fn verify_records(&self) -> Result<RecordChainReport, Error> {
        let all = self.db.records(false)?;
        let unsynced = all.iter().filter(|r| !r.synced).count() as u64;
        let head = self.db.head()?;
        let mut report = RecordChainReport {
            records: all.len() as u64,
            head: apdu::hex(&records::ZERO_HASH),
            ok: true,
            problem: None,
            unsynced,
        };
        match records::check_chain(records::ZERO_HASH, 1, &all) {
            Err((seq, why)) => {
                report.ok = false;
                report.problem = Some(format!("record {seq}: {why}"));
            }
            Ok(last) => {
                report.head = apdu::hex(&last);
                let n = all.len() as u64;
                match head {
                    None if n == 0 => {}
                    None => {
                        report.ok = false;
                        report.problem = Some("the head of the records is missing".into());
                    }
                    Some(h) => {
                        let mac = self.mac(&records::head_mac_input(h.seq, &h.hash))?;
                        if !bool_ct_eq(&mac, &h.mac) {
                            report.ok = false;
                            report.problem =
                                Some("the head's MAC does not verify in the token".into());
                        } else if h.seq != n || h.hash != last {
                            report.ok = false;
                            report.problem = Some(format!(
                                "the head names {} records, the chain holds {n}: records were removed or added outside the module",
                                h.seq
                            ));
                        }
                    }
                }
            }
        }
        Ok(report)
    }
}

/// Constant-time equality of two MACs.
fn bool_ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The file name of the database in the outlet's directory.
pub const DB_FILE: &str = "outlet.db";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Module>();
    }

    #[test]
    fn registration_labels_fit_the_token() {
        let l = labels::registration_key(&"9".repeat(20), &"a".repeat(32), 15);
        assert!(l.len() <= 64, "{l}");
        kms::validate_object_label("secret key", &l).unwrap();
    }
}
