//! The error type of the crate.
//!
//! No variant ever carries key bytes, a PIN, a master key or a full card number: errors end
//! up in logs. Key check values (KCVs) may appear; they are public by design (GP 2.3.1
//! §B.6) and are what key custodians compare during a ceremony.

use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong in the key management system.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A category name that cannot be used (see [`crate::validate_category`]).
    #[error("invalid card category {name:?}: {reason}")]
    BadCategory {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A card number that cannot be turned into a KDD (the number itself is not repeated).
    #[error("invalid card number: {0}")]
    BadCardNumber(String),
    /// A key length the algorithm (or this operation) does not take.
    #[error("bad key length {len} for {kind}")]
    BadKeyLength {
        /// "3DES" or "AES".
        kind: &'static str,
        /// The length given, in bytes.
        len: usize,
    },
    /// Dual control: a base key is imported from at least two components.
    #[error("dual control needs at least 2 key components, got {0}")]
    TooFewComponents(usize),
    /// The components do not all have the same length.
    #[error("key component {index} is {len} bytes, component 1 is {first} bytes")]
    ComponentLength {
        /// 1-based index of the offending component.
        index: usize,
        /// Its length.
        len: usize,
        /// The length of the first component.
        first: usize,
    },
    /// A component's check value does not match the one its custodian wrote down. Nothing
    /// was stored.
    #[error(
        "key component {index}: check value mismatch (given {given}, computed {computed}); nothing was stored"
    )]
    ComponentKcv {
        /// 1-based index of the component.
        index: usize,
        /// The KCV given with the component (hex).
        given: String,
        /// The KCV of the component bytes (hex).
        computed: String,
    },
    /// Two components are equal, so XOR-ing them cancels out (no dual control).
    #[error("key components {first} and {second} are identical; each custodian needs an independent component")]
    DuplicateComponent {
        /// 1-based index.
        first: usize,
        /// 1-based index.
        second: usize,
    },
    /// The combined (or generated) key is all zero bytes.
    #[error("the combined key is all zero bytes")]
    ZeroKey,
    /// The expiry date is not in the future.
    #[error("expiry date is not in the future")]
    ExpiryInPast,
    /// No base key with this category (and version).
    #[error("no base key {category}{}", version.map(|v| format!(" version {v}")).unwrap_or_default())]
    NotFound {
        /// The category.
        category: String,
        /// The version, if one was asked for.
        version: Option<u32>,
    },
    /// The category has no base key that is active (not retired, not expired).
    #[error("card category {0} has no active base key")]
    NoActiveKey(String),
    /// The base key version was retired: it no longer derives card keys.
    #[error("base key {category} version {version} is retired")]
    Retired {
        /// The category.
        category: String,
        /// The version.
        version: u32,
    },
    /// A key with this category and version exists already with different key material.
    #[error("base key {category} version {version} already exists with a different key (KCV {existing}, backup has {incoming})")]
    Conflict {
        /// The category.
        category: String,
        /// The version.
        version: u32,
        /// KCV of the stored key.
        existing: String,
        /// KCV of the key being restored.
        incoming: String,
    },
    /// The master key is missing, malformed or unreadable. Never contains the key.
    #[error("master key: {0}")]
    MasterKey(String),
    /// The master key does not open this keystore file.
    #[error("wrong master key for keystore {0}")]
    WrongMasterKey(PathBuf),
    /// An entry of the keystore file fails authentication although the master key is right:
    /// the file was altered.
    #[error(
        "keystore {path}: entry {category} version {version} fails authentication (file altered)"
    )]
    Tampered {
        /// The keystore file.
        path: PathBuf,
        /// The category of the entry.
        category: String,
        /// The version of the entry.
        version: u32,
    },
    /// The keystore file exists already (on create).
    #[error("keystore {0} exists already")]
    AlreadyExists(PathBuf),
    /// A keystore file that cannot be read as one.
    #[error("keystore {path} is not a Cardwright keystore: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A file-system error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key store file could not be written (disk full, read-only directory, …); the
    /// file on disk is unchanged.
    #[error("cannot save the key store {path}: {source}")]
    Save {
        /// The key store file.
        path: PathBuf,
        /// The step that failed and why.
        #[source]
        source: atomic_file::Error,
    },
    /// A backup that cannot be read.
    #[error("malformed backup: {0}")]
    BadBackup(String),
    /// The backup's MAC (or a key's RFC 3394 integrity check) fails: wrong key-encryption
    /// key, or the backup was altered.
    #[error("backup authentication failed: wrong key-encryption key or altered backup")]
    BackupAuthentication,
    /// The backup was made under another key-encryption key (KCVs differ).
    #[error(
        "backup was made under the key-encryption key with KCV {backup}; this one has KCV {given}"
    )]
    WrongKek {
        /// KCV recorded in the backup.
        backup: String,
        /// KCV of the key given.
        given: String,
    },
    /// A key-encryption key that is not an AES key.
    #[error("the key-encryption key must be an AES key (16, 24 or 32 bytes)")]
    BadKek,
    /// A base key that the token refuses to export (`CKA_EXTRACTABLE` false).
    #[error(
        "base key {category} version {version} is not extractable (CKA_EXTRACTABLE=false), so C_WrapKey \
         cannot back it up; back up the token with the HSM's own cloning/backup tools, or create base keys \
         with the `backup=wrap` option"
    )]
    NotExtractable {
        /// The category.
        category: String,
        /// The version.
        version: u32,
    },
    /// A PKCS#11 call failed.
    #[error("PKCS#11 {call} ({what}) failed: {source}")]
    Pkcs11 {
        /// The Cryptoki function, e.g. `C_DeriveKey`.
        call: &'static str,
        /// What we were doing.
        what: String,
        /// The error from the module.
        #[source]
        source: cryptoki::error::Error,
    },
    /// The token does not offer a mechanism this crate needs.
    #[error("PKCS#11 token lacks mechanism {0}")]
    MissingMechanism(&'static str),
    /// A keystore configuration string that cannot be used.
    #[error("keystore configuration: {0}")]
    Config(String),
    /// Text that cannot be read as what was expected (hex, a KCV, …). Never echoes secrets.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The operating system random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
    /// No signing key with this label.
    #[error("no signing key {0:?}")]
    SigningKeyNotFound(String),
    /// A signing key with this label exists already (on create).
    #[error("signing key {0:?} exists already")]
    SigningKeyExists(String),
    /// A signing key label that cannot be used.
    #[error("invalid signing key label {label:?}: {reason}")]
    BadSigningLabel {
        /// The label given.
        label: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A sealed signing key in the keystore file fails authentication or does not match
    /// its recorded public key: the file was altered.
    #[error("keystore {path}: signing key {label:?} fails authentication (file altered)")]
    SigningKeyTampered {
        /// The keystore file.
        path: PathBuf,
        /// The label of the key.
        label: String,
    },
    /// Generating a signing key or signing failed (never contains key material).
    #[error("signing key {label:?}: {detail}")]
    Signing {
        /// The label of the key.
        label: String,
        /// What went wrong.
        detail: String,
    },
    /// No key-agreement (ECKA) key with this label.
    #[error("no key-agreement key {0:?}")]
    AgreementKeyNotFound(String),
    /// A key-agreement key with this label exists already (on create).
    #[error("key-agreement key {0:?} exists already")]
    AgreementKeyExists(String),
    /// A sealed key-agreement key in the keystore file fails authentication or does not
    /// match its recorded public key: the file was altered.
    #[error("keystore {path}: key-agreement key {label:?} fails authentication (file altered)")]
    AgreementKeyTampered {
        /// The keystore file.
        path: PathBuf,
        /// The label of the key.
        label: String,
    },
    /// Generating a key-agreement key or the key agreement itself failed (an invalid peer
    /// point, a token error). Never contains key material or the shared secret.
    #[error("key-agreement key {label:?}: {detail}")]
    KeyAgreement {
        /// The label of the key.
        label: String,
        /// What went wrong.
        detail: String,
    },
    /// A key set label that cannot be used (see [`crate::validate_key_set_label`]).
    #[error("invalid key set label {label:?}: {reason}")]
    BadKeySetLabel {
        /// The label given.
        label: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key set with this label exists already (on generate or import); nothing was
    /// stored.
    #[error("key set {0:?} exists already")]
    KeySetExists(String),
    /// No key set with this label.
    #[error("no key set {0:?}")]
    KeySetNotFound(String),
    /// A sealed key set in the keystore file fails authentication (the file was altered),
    /// or its keys in a token do not match their recorded length or check value.
    #[error("key set {label:?} in {place} fails authentication or is incomplete")]
    KeySetTampered {
        /// The keystore file or token.
        place: String,
        /// The label of the key set.
        label: String,
    },
    /// A wrapped key set document that cannot be read as one (malformed, unsupported,
    /// inconsistent fields); nothing was stored.
    #[error("wrapped key set refused: {0}; nothing was stored")]
    BadWrappedKeySet(String),
    /// The wrapped key set was made for another recipient's transport key; nothing was
    /// stored.
    #[error(
        "wrapped key set refused: it was wrapped for the transport key with fingerprint {wrapped_for}, \
         not for {transport_key:?} ({this_key}); nothing was stored"
    )]
    WrongTransportKey {
        /// The label of this store's transport key.
        transport_key: String,
        /// SHA-256 fingerprint of the key it was wrapped for.
        wrapped_for: String,
        /// SHA-256 fingerprint of this store's key.
        this_key: String,
    },
    /// A wrapped key fails the RFC 3394 integrity check: the document was altered in
    /// transit, or the sender used another KEK; nothing was stored.
    #[error(
        "wrapped key set {label:?}: the {usage} key fails the AES key wrap integrity check \
         (altered in transit or not wrapped for this key); nothing was stored"
    )]
    KeySetUnwrap {
        /// The label in the document.
        label: String,
        /// ENC, MAC or DEK.
        usage: &'static str,
    },
    /// An unwrapped key does not have the check value that came with it; nothing was
    /// stored.
    #[error(
        "wrapped key set {label:?}: the {usage} key has check value {computed}, the document says {given}; \
         nothing was stored"
    )]
    KeySetKcv {
        /// The label in the document.
        label: String,
        /// ENC, MAC or DEK.
        usage: &'static str,
        /// The KCV in the document.
        given: String,
        /// The KCV of the unwrapped key.
        computed: String,
    },
    /// A secret key or data object label that cannot be used (see
    /// [`crate::validate_object_label`]).
    #[error("invalid {what} label {label:?}: {reason}")]
    BadObjectLabel {
        /// "secret key" or "data object".
        what: &'static str,
        /// The label given.
        label: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A secret key with this label exists already; nothing was stored.
    #[error("secret key {0:?} exists already")]
    SecretKeyExists(String),
    /// No secret key with this label.
    #[error("no secret key {0:?}")]
    SecretKeyNotFound(String),
    /// A sealed secret key in the keystore file fails authentication (the file was
    /// altered), or a token object under the label does not carry its recorded kind and
    /// check value.
    #[error("secret key {label:?} in {place} fails authentication or is not one of ours")]
    SecretKeyTampered {
        /// The keystore file or token.
        place: String,
        /// The label of the key.
        label: String,
    },
    /// A secret key asked to do what its kind does not (CMAC with an HMAC key, wrapping an
    /// HMAC key for a card). Never contains key material.
    #[error("secret key {label:?}: {detail}")]
    SecretKeyUse {
        /// The label of the key.
        label: String,
        /// What was refused.
        detail: String,
    },
    /// A data object in the keystore file whose value or label was altered, or two token
    /// objects under one label.
    #[error("data object {label:?} in {place} fails authentication")]
    DataObjectTampered {
        /// The keystore file or token.
        place: String,
        /// The label of the object.
        label: String,
    },
    /// A data object over the size limit; nothing was stored.
    #[error("data object {label:?} is {len} bytes, more than the {max} a key store keeps")]
    DataObjectTooLarge {
        /// The label given.
        label: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An error from the secure-channel crate (key lengths, diversification).
    #[error(transparent)]
    Scp(#[from] scp::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn pkcs11(
        call: &'static str,
        what: impl Into<String>,
        source: cryptoki::error::Error,
    ) -> Error {
        Error::Pkcs11 {
            call,
            what: what.into(),
            source,
        }
    }
}

/// Fills `buf` from the operating system random number generator.
pub(crate) fn random(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|e| Error::Random(e.to_string()))
}
