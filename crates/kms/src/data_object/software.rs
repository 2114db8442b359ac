//! Data objects in the software keystore file.
//!
//! ```json
//! "data_objects": [ { "label": "trust/root", "value": "<hex>", "tag": "<nonce(12) ‖ GCM tag(16)>" } ]
//! ```
//!
//! `tag` is AES-256-GCM under the master key of an empty plaintext with the AAD a fixed
//! prefix, then label and value, each length-prefixed (GMAC, NIST SP 800-38D): the value
//! stays readable in the file, and an edit is refused when the file is read
//! ([`Error::DataObjectTampered`]).

use super::{check_put, DataObjectStore, WHAT};
use crate::master::{self, MasterKey};
use crate::software::SoftwareKeyStore;
use crate::Error;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::PoisonError;

const AAD_LABEL: &[u8] = b"cardwright-kms-software/1 data-object\0";

/// One data object as stored in the keystore file.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredDataObject {
    label: String,
    /// The bytes, hex.
    value: String,
    /// nonce ‖ GCM tag over label and value, hex.
    tag: String,
}

fn aad(label: &str, value: &[u8]) -> Vec<u8> {
    let mut a = AAD_LABEL.to_vec();
    for field in [label.as_bytes(), value] {
        a.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        a.extend_from_slice(field);
    }
    a
}

impl StoredDataObject {
    fn new(master: &MasterKey, label: &str, value: &[u8]) -> Result<Self, Error> {
        Ok(StoredDataObject {
            label: label.into(),
            value: apdu::hex(value),
            tag: apdu::hex(&master::seal(master, &aad(label, value), &[])?),
        })
    }

    /// The bytes, once label, value and tag check.
    fn open(&self, path: &Path, master: &MasterKey) -> Result<Vec<u8>, Error> {
        let tampered = || Error::DataObjectTampered {
            place: path.display().to_string(),
            label: self.label.clone(),
        };
        crate::validate_object_label(WHAT, &self.label)?;
        let value = apdu::parse_hex(&self.value).map_err(|_| tampered())?;
        let tag = apdu::parse_hex(&self.tag).map_err(|_| tampered())?;
        match master::open(master, &aad(&self.label, &value), &tag) {
            Some(empty) if empty.is_empty() => Ok(value),
            _ => Err(tampered()),
        }
    }

    /// Authenticates the entry when the keystore file is read.
    pub(crate) fn check(&self, path: &Path, master: &MasterKey) -> Result<(), Error> {
        self.open(path, master).map(drop)
    }

    /// The entry authenticated under a new master key.
    pub(crate) fn reseal(
        &self,
        path: &Path,
        old: &MasterKey,
        new: &MasterKey,
    ) -> Result<Self, Error> {
        let value = self.open(path, old)?;
        StoredDataObject::new(new, &self.label, &value)
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }
}

impl DataObjectStore for SoftwareKeyStore {
    fn put(&self, label: &str, value: &[u8]) -> Result<(), Error> {
        check_put(label, value)?;
        self.mutate(|state, master| {
            let stored = StoredDataObject::new(master, label, value)?;
            state.data_objects.retain(|d| d.label != label);
            state.data_objects.push(stored);
            state.data_objects.sort_by(|a, b| a.label.cmp(&b.label));
            Ok(())
        })
    }

    fn get(&self, label: &str) -> Result<Option<Vec<u8>>, Error> {
        crate::validate_object_label(WHAT, label)?;
        self.refresh_if_changed()?;
        let found = self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .data_objects
            .iter()
            .find(|d| d.label == label)
            .cloned();
        found.map(|d| d.open(&self.path, &self.master)).transpose()
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        self.refresh_if_changed()?;
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<String> = state
            .data_objects
            .iter()
            .filter(|d| d.label.starts_with(prefix))
            .map(|d| d.label.clone())
            .collect();
        out.sort();
        Ok(out)
    }

    fn delete(&self, label: &str) -> Result<bool, Error> {
        if !self.list(label)?.iter().any(|l| l == label) {
            crate::validate_object_label(WHAT, label)?;
            return Ok(false);
        }
        self.mutate(|state, _| {
            let before = state.data_objects.len();
            state.data_objects.retain(|d| d.label != label);
            Ok(state.data_objects.len() != before)
        })
    }
}
