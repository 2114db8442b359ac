//! **Data objects by label** ([`DataObjectStore`]): bytes that are not secret but whose
//! integrity matters, kept in the key store beside the keys (the outlet module's trust
//! anchors and its CA certificate, issue #11).
//!
//! ```
//! # fn main() -> Result<(), kms::Error> {
//! use kms::{DataObjectStore, MasterKey, SoftwareKeyStore};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = SoftwareKeyStore::create(dir.path().join("keys.json"), MasterKey::generate()?)?;
//! store.put("trust/provider-root", b"-----BEGIN CERTIFICATE-----...")?;
//! assert_eq!(store.list("trust/")?, vec!["trust/provider-root".to_string()]);
//! assert!(store.get("trust/provider-root")?.is_some());
//! assert!(store.delete("trust/provider-root")?);
//! # Ok(()) }
//! ```
//!
//! * **Software keystore**: an entry of `data_objects` in the keystore file with the value
//!   in hex, in the clear, and an AES-256-GCM tag under the master key over label and
//!   value ([`software`]): an edited value or label makes the file fail to open
//!   ([`crate::Error::DataObjectTampered`]).
//! * **PKCS#11**: a token `CKO_DATA` object, `CKA_APPLICATION` `"cardwright"`, `CKA_LABEL`
//!   `cw-do:<label>`, `CKA_VALUE` the bytes ([`pkcs11`]). The objects are `CKA_PRIVATE`
//!   although their content is public: PKCS#11 lets a session without login create and
//!   destroy public token objects, and only the PIN holder may change a trust anchor.
//!
//! Labels as for secret keys ([`crate::validate_object_label`]); values up to
//! [`MAX_DATA_OBJECT_LEN`] bytes.

pub mod pkcs11;
pub mod software;

pub use pkcs11::PKCS11_DATA_OBJECT_LABEL_PREFIX;
pub(crate) use software::StoredDataObject;

use crate::config::StoreConfig;
use crate::Error;
use std::fmt;
use std::sync::Arc;

/// The largest data object, in bytes (a certificate chain fits many times over).
pub const MAX_DATA_OBJECT_LEN: usize = 64 * 1024;

pub(crate) const WHAT: &str = "data object";

/// Checks label and size before anything is stored.
pub(crate) fn check_put(label: &str, value: &[u8]) -> Result<(), Error> {
    crate::validate_object_label(WHAT, label)?;
    if value.len() > MAX_DATA_OBJECT_LEN {
        return Err(Error::DataObjectTooLarge {
            label: label.into(),
            len: value.len(),
            max: MAX_DATA_OBJECT_LEN,
        });
    }
    Ok(())
}

/// A store of data objects by label (see the module documentation). Object safe; both
/// backends implement it.
pub trait DataObjectStore: Send + Sync + fmt::Debug {
    /// Stores `value` under `label`, replacing an object of that label.
    fn put(&self, label: &str, value: &[u8]) -> Result<(), Error>;

    /// The object's bytes, `None` if there is none.
    fn get(&self, label: &str) -> Result<Option<Vec<u8>>, Error>;

    /// The labels starting with `prefix` (`""`: all), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, Error>;

    /// Deletes the object. Idempotent: true when something was deleted.
    fn delete(&self, label: &str) -> Result<bool, Error>;
}

impl StoreConfig {
    /// Opens the configured store as a data object store (a software keystore that does not
    /// exist yet is created).
    pub fn open_data_objects(&self) -> Result<Arc<dyn DataObjectStore>, Error> {
        self.open_as(None, |s| Arc::new(s) as _, |p| Arc::new(p) as _)
    }
}

/// Parses a configuration string (the same as [`crate::open`]'s, see [`StoreConfig`]) and
/// opens it as a data object store.
pub fn open_data_objects(config: &str) -> Result<Arc<dyn DataObjectStore>, Error> {
    config.parse::<StoreConfig>()?.open_data_objects()
}
