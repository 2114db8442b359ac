//! Secret keys in the software keystore file.
//!
//! ```json
//! "secret_keys": [ { "label": "outlet/db-mac", "kind": "HMAC-SHA256", "kcv": "…",
//!                    "created": "…", "sealed": "<nonce(12) ‖ GCM(key) ‖ tag(16)>" } ]
//! ```
//!
//! AES-256-GCM under the master key; the AAD is a fixed prefix, then label, kind, KCV and
//! creation date, each length-prefixed: editing a field or moving a sealed value to another
//! entry makes the file fail to open ([`Error::SecretKeyTampered`]). Changes run under the
//! keystore's file lock like every other change (see [`crate::SoftwareKeyStore`]).

use super::{
    check_value, hmac_sha256_in_software, kcv_of, random_value, validate_object_label, wrong_kind,
    SecretKeyInfo, SecretKeyKind, SecretKeyStore,
};
use crate::master::{self, MasterKey};
use crate::software::SoftwareKeyStore;
use crate::types::{now_secs, parse_rfc3339, rfc3339, unix};
use crate::Error;
use scp::Key;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::PoisonError;
use zeroize::Zeroizing;

const AAD_LABEL: &[u8] = b"cardwright-kms-software/1 secret-key\0";
const WHAT: &str = "secret key";

/// One sealed secret key as stored in the keystore file.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredSecretKey {
    label: String,
    kind: String,
    /// Key check value, hex.
    kcv: String,
    created: String,
    /// nonce ‖ AES-256-GCM(key) ‖ tag, hex.
    sealed: String,
}

impl StoredSecretKey {
    fn aad(&self) -> Vec<u8> {
        let mut a = AAD_LABEL.to_vec();
        for field in [
            self.label.as_bytes(),
            self.kind.as_bytes(),
            self.kcv.as_bytes(),
            self.created.as_bytes(),
        ] {
            a.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
            a.extend_from_slice(field);
        }
        a
    }

    fn seal(
        master: &MasterKey,
        label: &str,
        kind: SecretKeyKind,
        value: &[u8],
    ) -> Result<Self, Error> {
        let mut stored = StoredSecretKey {
            label: label.into(),
            kind: kind.name().into(),
            kcv: apdu::hex(&kcv_of(kind, value)?),
            created: rfc3339(unix(now_secs())),
            sealed: String::new(),
        };
        stored.sealed = apdu::hex(&master::seal(master, &stored.aad(), value)?);
        Ok(stored)
    }

    /// Kind and KCV if the fields are well formed.
    fn meta(&self) -> Option<(SecretKeyKind, [u8; 3])> {
        let kind = self.kind.parse().ok()?;
        parse_rfc3339(&self.created)?;
        Some((kind, crate::backup::kcv3(&self.kcv)?))
    }

    fn info(&self) -> Option<SecretKeyInfo> {
        let (kind, kcv) = self.meta()?;
        Some(SecretKeyInfo {
            label: self.label.clone(),
            kind,
            kcv,
        })
    }

    /// Opens the entry (authenticating every field) and checks the KCV.
    fn open(
        &self,
        path: &Path,
        master: &MasterKey,
    ) -> Result<(SecretKeyKind, Zeroizing<Vec<u8>>), Error> {
        let tampered = || Error::SecretKeyTampered {
            place: path.display().to_string(),
            label: self.label.clone(),
        };
        validate_object_label(WHAT, &self.label)?;
        let (kind, kcv) = self.meta().ok_or_else(tampered)?;
        let sealed = apdu::parse_hex(&self.sealed).map_err(|_| tampered())?;
        let value = master::open(master, &self.aad(), &sealed).ok_or_else(tampered)?;
        if check_value(kind, &value).is_err() || kcv_of(kind, &value)? != kcv {
            return Err(tampered());
        }
        Ok((kind, value))
    }

    /// Authenticates the entry when the keystore file is read.
    pub(crate) fn check(&self, path: &Path, master: &MasterKey) -> Result<(), Error> {
        self.open(path, master).map(drop)
    }

    /// The entry re-sealed under a new master key.
    pub(crate) fn reseal(
        &self,
        path: &Path,
        old: &MasterKey,
        new: &MasterKey,
    ) -> Result<Self, Error> {
        let (_, value) = self.open(path, old)?;
        Ok(StoredSecretKey {
            sealed: apdu::hex(&master::seal(new, &self.aad(), &value)?),
            ..self.clone()
        })
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }
}

impl SoftwareKeyStore {
    fn find_secret_key(&self, label: &str) -> Result<Option<StoredSecretKey>, Error> {
        validate_object_label(WHAT, label)?;
        self.refresh_if_changed()?;
        Ok(self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .secret_keys
            .iter()
            .find(|k| k.label == label)
            .cloned())
    }

    /// The kind and value of `label`.
    fn secret_value(&self, label: &str) -> Result<(SecretKeyKind, Zeroizing<Vec<u8>>), Error> {
        self.find_secret_key(label)?
            .ok_or_else(|| Error::SecretKeyNotFound(label.into()))?
            .open(&self.path, &self.master)
    }

    fn store_secret_key(
        &self,
        label: &str,
        kind: SecretKeyKind,
        value: &[u8],
    ) -> Result<SecretKeyInfo, Error> {
        validate_object_label(WHAT, label)?;
        check_value(kind, value)?;
        self.mutate(|state, master| {
            if state.secret_keys.iter().any(|k| k.label == label) {
                return Err(Error::SecretKeyExists(label.into()));
            }
            let stored = StoredSecretKey::seal(master, label, kind, value)?;
            let info = stored.info().ok_or_else(|| Error::SecretKeyTampered {
                place: self.path.display().to_string(),
                label: label.into(),
            })?;
            state.secret_keys.push(stored);
            state.secret_keys.sort_by(|a, b| a.label.cmp(&b.label));
            Ok(info)
        })
    }
}

impl SecretKeyStore for SoftwareKeyStore {
    fn generate(&self, label: &str, kind: SecretKeyKind) -> Result<SecretKeyInfo, Error> {
        let value = random_value(kind)?;
        self.store_secret_key(label, kind, &value)
    }

    fn import(
        &self,
        label: &str,
        kind: SecretKeyKind,
        value: &[u8],
    ) -> Result<SecretKeyInfo, Error> {
        self.store_secret_key(label, kind, value)
    }

    fn info(&self, label: &str) -> Result<Option<SecretKeyInfo>, Error> {
        Ok(self.find_secret_key(label)?.and_then(|k| k.info()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<SecretKeyInfo>, Error> {
        self.refresh_if_changed()?;
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<SecretKeyInfo> = state
            .secret_keys
            .iter()
            .filter(|k| k.label.starts_with(prefix))
            .filter_map(|k| k.info())
            .collect();
        out.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(out)
    }

    fn delete(&self, label: &str) -> Result<bool, Error> {
        if self.find_secret_key(label)?.is_none() {
            return Ok(false);
        }
        self.mutate(|state, _| {
            let before = state.secret_keys.len();
            state.secret_keys.retain(|k| k.label != label);
            Ok(state.secret_keys.len() != before)
        })
    }

    fn cmac(&self, label: &str, data: &[u8]) -> Result<[u8; 16], Error> {
        let (kind, value) = self.secret_value(label)?;
        if !kind.is_aes() {
            return Err(wrong_kind(label, kind, "AES-CMAC"));
        }
        Ok(Key::aes(&value)?.aes_cmac(data)?)
    }

    fn hmac_sha256(&self, label: &str, data: &[u8]) -> Result<[u8; 32], Error> {
        let (kind, value) = self.secret_value(label)?;
        if kind != SecretKeyKind::HmacSha256 {
            return Err(wrong_kind(label, kind, "HMAC-SHA256"));
        }
        hmac_sha256_in_software(&value, data)
    }

    fn wrap_for_card(&self, label: &str, dek: &Key) -> Result<Vec<u8>, Error> {
        let (kind, value) = self.secret_value(label)?;
        if !kind.is_aes() {
            return Err(wrong_kind(label, kind, "wrapping for a card"));
        }
        Ok(scp::encrypt_sensitive_data(dek, &value)?)
    }
}
