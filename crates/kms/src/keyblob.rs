//! Sealed private keys in the software keystore file, shared by signing keys
//! ([`crate::signing`]) and key-agreement keys ([`crate::agreement`]).
//!
//! Each entry is `{label, algorithm, public, created, sealed}`: the PKCS#8 `PrivateKeyInfo`
//! sealed with AES-256-GCM under the master key ([`crate::master::seal`]). The AAD is a
//! fixed prefix naming the kind of key ([`BlobKind::AAD_LABEL`]), then label, algorithm,
//! public key and creation date, each length-prefixed: editing any of them, swapping sealed
//! blobs, or passing one kind of key off as the other makes the entry fail to open.

use crate::master::{self, MasterKey};
use crate::software::{SoftwareKeyStore, State};
use crate::types::{now_secs, parse_rfc3339, rfc3339, unix};
use crate::Error;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::PoisonError;
use zeroize::Zeroizing;

/// What differs between the kinds of sealed keys.
pub(crate) trait BlobKind: Sized {
    /// The fixed prefix of the AAD (never change it: existing files would not open).
    const AAD_LABEL: &'static [u8];
    /// Checks the `algorithm` field.
    fn check_algorithm(name: &str) -> Result<(), Error>;
    /// The error for an entry that does not authenticate.
    fn tampered(path: &Path, label: &str) -> Error;
    /// The error for a label that is taken.
    fn exists(label: &str) -> Error;
    /// The error for a label with no entry.
    fn not_found(label: &str) -> Error;
    /// This kind's entries in the keystore state.
    fn entries(state: &State) -> &Vec<SealedKey<Self>>;
    /// This kind's entries in the keystore state, to change.
    fn entries_mut(state: &mut State) -> &mut Vec<SealedKey<Self>>;
}

/// One sealed key as stored in the keystore file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
pub(crate) struct SealedKey<K> {
    pub(crate) label: String,
    pub(crate) algorithm: String,
    /// SPKI DER, hex.
    public: String,
    created: String,
    /// nonce ‖ AES-256-GCM(PKCS#8) ‖ tag, hex.
    sealed: String,
    #[serde(skip)]
    kind: PhantomData<K>,
}

impl<K> Clone for SealedKey<K> {
    fn clone(&self) -> Self {
        SealedKey {
            label: self.label.clone(),
            algorithm: self.algorithm.clone(),
            public: self.public.clone(),
            created: self.created.clone(),
            sealed: self.sealed.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: BlobKind> SealedKey<K> {
    /// Seals `pkcs8` for a key created now.
    fn seal(
        master: &MasterKey,
        label: &str,
        algorithm: &str,
        public: &[u8],
        pkcs8: &[u8],
    ) -> Result<Self, Error> {
        let mut stored = SealedKey {
            label: label.into(),
            algorithm: algorithm.into(),
            public: apdu::hex(public),
            created: rfc3339(unix(now_secs())),
            sealed: String::new(),
            kind: PhantomData,
        };
        stored.sealed = apdu::hex(&master::seal(master, &stored.aad(public), pkcs8)?);
        Ok(stored)
    }

    /// AAD: a fixed prefix, then label, algorithm, public key and creation date, each
    /// length-prefixed.
    fn aad(&self, public: &[u8]) -> Vec<u8> {
        let mut a = Vec::with_capacity(K::AAD_LABEL.len() + 64 + public.len());
        a.extend_from_slice(K::AAD_LABEL);
        for field in [
            self.label.as_bytes(),
            self.algorithm.as_bytes(),
            public,
            self.created.as_bytes(),
        ] {
            a.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
            a.extend_from_slice(field);
        }
        a
    }

    /// Opens the sealed PKCS#8 (authenticating every field).
    pub(crate) fn open(
        &self,
        path: &Path,
        master: &MasterKey,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let tampered = || K::tampered(path, &self.label);
        crate::validate_signing_label(&self.label)?;
        K::check_algorithm(&self.algorithm)?;
        parse_rfc3339(&self.created).ok_or_else(tampered)?;
        let public = apdu::parse_hex(&self.public).map_err(|_| tampered())?;
        let sealed = apdu::parse_hex(&self.sealed).map_err(|_| tampered())?;
        master::open(master, &self.aad(&public), &sealed).ok_or_else(tampered)
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
        let plain = self.open(path, old)?;
        let public = apdu::parse_hex(&self.public).map_err(|_| K::tampered(path, &self.label))?;
        let sealed = master::seal(new, &self.aad(&public), &plain)?;
        Ok(SealedKey {
            sealed: apdu::hex(&sealed),
            ..self.clone()
        })
    }

    /// Checks that the public key derived from the opened private key is the stored one.
    pub(crate) fn check_public(&self, path: &Path, spki: &[u8]) -> Result<(), Error> {
        if apdu::hex(spki) != self.public.to_ascii_uppercase() {
            return Err(K::tampered(path, &self.label));
        }
        Ok(())
    }
}

impl SoftwareKeyStore {
    /// Seals and stores a new key (`label` already validated); returns `spki`.
    pub(crate) fn store_sealed<K: BlobKind>(
        &self,
        label: &str,
        algorithm: &str,
        spki: &[u8],
        pkcs8: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.mutate(|state, master| {
            if K::entries(state).iter().any(|k| k.label == label) {
                return Err(K::exists(label));
            }
            let stored = SealedKey::<K>::seal(master, label, algorithm, spki, pkcs8)?;
            let entries = K::entries_mut(state);
            entries.push(stored);
            entries.sort_by(|a, b| a.label.cmp(&b.label));
            Ok(spki.to_vec())
        })
    }

    /// The entry under `label` (already validated) and its opened PKCS#8.
    pub(crate) fn unseal<K: BlobKind>(
        &self,
        label: &str,
    ) -> Result<(SealedKey<K>, Zeroizing<Vec<u8>>), Error> {
        self.refresh_if_changed()?;
        let stored = K::entries(&self.state.read().unwrap_or_else(PoisonError::into_inner))
            .iter()
            .find(|k| k.label == label)
            .cloned()
            .ok_or_else(|| K::not_found(label))?;
        let pkcs8 = stored.open(&self.path, &self.master)?;
        Ok((stored, pkcs8))
    }

    /// The labels of every entry of a kind, sorted.
    pub(crate) fn sealed_labels<K: BlobKind>(&self) -> Result<Vec<String>, Error> {
        self.refresh_if_changed()?;
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut labels: Vec<String> = K::entries(&state).iter().map(|k| k.label.clone()).collect();
        labels.sort();
        Ok(labels)
    }
}
