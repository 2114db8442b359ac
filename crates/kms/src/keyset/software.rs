//! Key sets in the software keystore file.
//!
//! ```json
//! "key_sets": [ { "label": "ssd-1", "kind": "AES", "len": 16, "kcv": "<ENC KCV>",
//!                 "created": "…", "sealed": "<nonce(12) ‖ GCM(ENC ‖ MAC ‖ DEK) ‖ tag(16)>" } ]
//! ```
//!
//! AES-256-GCM under the master key; the AAD is a fixed prefix, then label, kind, length,
//! KCV and creation date, each length-prefixed: editing any field, or moving a sealed blob
//! to another entry, makes the file fail to open ([`Error::KeySetTampered`]). Every change
//! runs under the keystore's file lock (re-read, change, atomic write; see
//! [`crate::SoftwareKeyStore`]).

use super::{
    check_for_recipient, transport_public_of, unwrap_in_software, validate_key_set_label,
    wrap_in_software, KeySetInfo, KeySetStore, TransportPublicKey, WrappedKeySet,
};
use crate::agreement::{AgreementKeyStore, EckaCurve};
use crate::backup::{kcv3, kind_from_name, kind_name};
use crate::master::{self, MasterKey};
use crate::software::SoftwareKeyStore;
use crate::types::{check_len, from_unix, now_secs, parse_rfc3339, random_key, rfc3339, unix};
use crate::Error;
use scp::{Key, KeyKind, StaticKeys};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::PoisonError;
use zeroize::Zeroizing;

const AAD_LABEL: &[u8] = b"cardwright-kms-software/1 key-set\0";

/// One sealed key set as stored in the keystore file.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredKeySet {
    label: String,
    kind: String,
    len: usize,
    /// KCV of the ENC key, hex.
    kcv: String,
    created: String,
    /// nonce ‖ AES-256-GCM(ENC ‖ MAC ‖ DEK) ‖ tag, hex.
    sealed: String,
}

impl StoredKeySet {
    fn aad(&self) -> Vec<u8> {
        let mut a = AAD_LABEL.to_vec();
        let len = self.len.to_string();
        for field in [
            self.label.as_bytes(),
            self.kind.as_bytes(),
            len.as_bytes(),
            self.kcv.as_bytes(),
            self.created.as_bytes(),
        ] {
            a.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
            a.extend_from_slice(field);
        }
        a
    }

    fn seal(master: &MasterKey, label: &str, keys: &StaticKeys) -> Result<Self, Error> {
        let kind = keys.kind().ok_or_else(|| Error::KeyAgreement {
            label: label.into(),
            detail: "the keys of the set differ in kind".into(),
        })?;
        let mut stored = StoredKeySet {
            label: label.into(),
            kind: kind_name(kind).into(),
            len: keys.enc.len(),
            kcv: apdu::hex(&keys.enc.kcv()),
            created: rfc3339(unix(now_secs())),
            sealed: String::new(),
        };
        let mut plain = Zeroizing::new(Vec::with_capacity(3 * stored.len));
        for k in keys.iter() {
            if k.len() != stored.len || k.kind() != kind {
                return Err(Error::KeyAgreement {
                    label: label.into(),
                    detail: "the keys of the set differ in length".into(),
                });
            }
            plain.extend_from_slice(k.expose());
        }
        stored.sealed = apdu::hex(&master::seal(master, &stored.aad(), &plain)?);
        Ok(stored)
    }

    /// Opens the entry (authenticating every field) and checks the ENC key's KCV.
    pub(crate) fn open(&self, path: &Path, master: &MasterKey) -> Result<StaticKeys, Error> {
        let tampered = || Error::KeySetTampered {
            place: path.display().to_string(),
            label: self.label.clone(),
        };
        validate_key_set_label(&self.label)?;
        let (kind, _, kcv, _) = self.meta().ok_or_else(tampered)?;
        let sealed = apdu::parse_hex(&self.sealed).map_err(|_| tampered())?;
        let plain = master::open(master, &self.aad(), &sealed).ok_or_else(tampered)?;
        if plain.len() != 3 * self.len {
            return Err(tampered());
        }
        let (enc, rest) = plain.split_at(self.len);
        let (mac, dek) = rest.split_at(self.len);
        let keys = StaticKeys {
            enc: Key::new(kind, enc).map_err(|_| tampered())?,
            mac: Key::new(kind, mac).map_err(|_| tampered())?,
            dek: Key::new(kind, dek).map_err(|_| tampered())?,
        };
        if keys.enc.kcv() != kcv {
            return Err(tampered());
        }
        Ok(keys)
    }

    /// Kind, length, KCV and creation time, if the fields are well formed.
    fn meta(&self) -> Option<(KeyKind, usize, [u8; 3], i64)> {
        let kind = kind_from_name(&self.kind)?;
        check_len(kind, self.len).ok()?;
        Some((
            kind,
            self.len,
            kcv3(&self.kcv)?,
            parse_rfc3339(&self.created)?,
        ))
    }

    fn info(&self) -> Option<KeySetInfo> {
        let (kind, len, kcv, created) = self.meta()?;
        Some(KeySetInfo {
            label: self.label.clone(),
            kind,
            len,
            kcv,
            created: from_unix(created),
        })
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
        let keys = self.open(path, old)?;
        let mut plain = Zeroizing::new(Vec::with_capacity(3 * self.len));
        for k in keys.iter() {
            plain.extend_from_slice(k.expose());
        }
        Ok(StoredKeySet {
            sealed: apdu::hex(&master::seal(new, &self.aad(), &plain)?),
            ..self.clone()
        })
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }
}

impl SoftwareKeyStore {
    /// Seals and stores `keys` under `label` (validated); refuses a label that is taken.
    fn store_key_set(&self, label: &str, keys: &StaticKeys) -> Result<KeySetInfo, Error> {
        self.mutate(|state, master| {
            if state.key_sets.iter().any(|k| k.label == label) {
                return Err(Error::KeySetExists(label.into()));
            }
            let stored = StoredKeySet::seal(master, label, keys)?;
            let info = stored.info().ok_or_else(|| Error::KeySetTampered {
                place: self.path.display().to_string(),
                label: label.into(),
            })?;
            state.key_sets.push(stored);
            state.key_sets.sort_by(|a, b| a.label.cmp(&b.label));
            Ok(info)
        })
    }

    fn find_key_set(&self, label: &str) -> Result<Option<StoredKeySet>, Error> {
        validate_key_set_label(label)?;
        self.refresh_if_changed()?;
        Ok(self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .key_sets
            .iter()
            .find(|k| k.label == label)
            .cloned())
    }
}

impl KeySetStore for SoftwareKeyStore {
    fn generate_key_set(
        &self,
        label: &str,
        kind: KeyKind,
        len: usize,
    ) -> Result<KeySetInfo, Error> {
        validate_key_set_label(label)?;
        check_len(kind, len)?;
        let keys = StaticKeys {
            enc: random_key(kind, len)?,
            mac: random_key(kind, len)?,
            dek: random_key(kind, len)?,
        };
        self.store_key_set(label, &keys)
    }

    fn key_set(&self, label: &str) -> Result<StaticKeys, Error> {
        self.find_key_set(label)?
            .ok_or_else(|| Error::KeySetNotFound(label.into()))?
            .open(&self.path, &self.master)
    }

    fn key_set_info(&self, label: &str) -> Result<Option<KeySetInfo>, Error> {
        Ok(self.find_key_set(label)?.and_then(|k| k.info()))
    }

    fn list_key_sets(&self) -> Result<Vec<KeySetInfo>, Error> {
        self.refresh_if_changed()?;
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<KeySetInfo> = state.key_sets.iter().filter_map(|k| k.info()).collect();
        out.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(out)
    }

    fn delete_key_set(&self, label: &str) -> Result<bool, Error> {
        if self.find_key_set(label)?.is_none() {
            return Ok(false);
        }
        self.mutate(|state, _| {
            let before = state.key_sets.len();
            state.key_sets.retain(|k| k.label != label);
            Ok(state.key_sets.len() != before)
        })
    }

    fn wrap_key_set_for(
        &self,
        label: &str,
        recipient: &TransportPublicKey,
    ) -> Result<WrappedKeySet, Error> {
        let keys = self.key_set(label)?;
        wrap_in_software(label, &keys, recipient)
    }

    fn import_wrapped_key_set(
        &self,
        label: &str,
        wrapped: &WrappedKeySet,
        transport_key: &str,
    ) -> Result<KeySetInfo, Error> {
        validate_key_set_label(label)?;
        if self.find_key_set(label)?.is_some() {
            return Err(Error::KeySetExists(label.into()));
        }
        let transport = self.agreement_key(transport_key)?;
        let c = check_for_recipient(wrapped, transport_key, transport.public_point())?;
        let keys = unwrap_in_software(&c, transport.as_ref())?;
        drop(transport);
        self.store_key_set(label, &keys)
    }

    fn create_transport_key(&self, label: &str) -> Result<TransportPublicKey, Error> {
        let spki = self.create_agreement_key(label, EckaCurve::P256)?;
        TransportPublicKey::from_spki_der(&spki)
    }

    fn transport_public_key(&self, label: &str) -> Result<TransportPublicKey, Error> {
        transport_public_of(self, label)
    }
}
