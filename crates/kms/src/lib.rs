//! Cardwright key management: **base keys** (one per card category, versioned, with expiry,
//! backed up) and **per-card key derivation** (each card's keys come from its category's
//! base key and the card number; nothing per card is stored).
//!
//! Two backends implement the object-safe [`KeyStore`] trait:
//!
//! * [`SoftwareKeyStore`]: a JSON file, every key sealed with AES-256-GCM under a
//!   [`MasterKey`] kept outside the file (`CARDWRIGHT_MASTER_KEY` or a key file).
//! * [`Pkcs11KeyStore`]: a PKCS#11 token (an HSM; SoftHSM2 in tests). Base keys are
//!   `CKA_SENSITIVE`, non-extractable token objects labelled `cw:<category>:<version>`, and
//!   the derivation runs inside the token.
//!
//! [`open`] picks a backend from a configuration string (see [`StoreConfig`]).
//!
//! Both backends also hold asymmetric **signing keys** (a CA's private key) through the
//! separate [`SigningKeyStore`] trait ([`open_signing`]): sealed PKCS#8 in the software
//! keystore file, a non-extractable key pair in the token for PKCS#11; and elliptic-curve
//! **key-agreement keys** (the static key of an SCP11 off-card entity) through
//! [`AgreementKeyStore`] ([`open_agreement`]): the private key stays in the store, only the
//! ECDH shared secret comes out.
//!
//! **Security-domain key sets** (ENC, MAC, DEK under a label: the initial keys of an SSD)
//! live in both backends through [`KeySetStore`] ([`open_key_sets`]), and move from one
//! key store to another wrapped for the recipient's transport key ([`WrappedKeySet`]:
//! ECDH P-256 ephemeral-static, ANSI X9.63 KDF, AES key wrap); see [`keyset`].
//!
//! **Secret keys by label** ([`SecretKeyStore`], [`open_secret_keys`]: AES keys that MAC and
//! go to a card encrypted under its secure channel's DEK, HMAC-SHA256 keys that never leave
//! the store; see [`secret`]) and **data objects** ([`DataObjectStore`],
//! [`open_data_objects`]: public bytes such as trust anchors, integrity-protected; see
//! [`data_object`]) live in both backends too.
//!
//! # Derivation scheme
//!
//! For card number `n` the card's key diversification data is
//! `KDD = `[`kdd_for_card_number`]`(n)` (packed BCD, right-aligned in 10 bytes, `F`-padded).
//! The base key is the ENC = MAC = DEK master and
//!
//! * a **3DES** base key is diversified with EMV CPG 2.1 ([`scp::Diversification::Emv`],
//!   EMV CPS v1.1 §5.4.2): `card key_k = 3DES-ECB(base, K4..K9 F0 k ‖ K4..K9 0F k)`;
//! * an **AES** base key with KDF3 ([`scp::Diversification::Kdf3`]): the NIST SP 800-108
//!   counter-mode CMAC-AES KDF, PRF input `i ‖ 00 00 00 ‖ k ‖ 00 ‖ KDD`, as long as the
//!   base key;
//!
//! with `k` = 1 (ENC), 2 (MAC), 3 (DEK). A card personalised with that KDD in its INITIALIZE
//! UPDATE response therefore opens with `cardwright card --key BASE --kdf emv|kdf3`, and
//! [`KeyStore::derive_for_kdd`] serves cards whose KDD was set by the manufacturer.
//!
//! ```
//! # fn main() -> Result<(), kms::Error> {
//! use kms::{Component, KeyStore, MasterKey, SoftwareKeyStore};
//! use kms::KeyKind;
//! # let dir = tempfile::tempdir().unwrap();
//! let store = SoftwareKeyStore::create(dir.path().join("keys.json"), MasterKey::generate()?)?;
//! // Two custodians, each with a component and the check value written down with it.
//! let c1 = Component::from_hex("000102030405060708090A0B0C0D0E0F", "C35280")?;
//! let c2 = Component::from_hex("40404040404040404040404040404040", "B9BC49")?;
//! let info = store.import_base_key("acme/gold", KeyKind::Aes, vec![c1, c2], None)?;
//! assert_eq!(info.kcv, [0x50, 0x4A, 0x77]); // the combined key's KCV
//! let keys = store.derive_card_keys("acme/gold", info.version, "4111111111111111")?;
//! assert_eq!(keys.enc.len(), 16);
//! # Ok(()) }
//! ```
//!
//! # Secrets
//!
//! Key bytes live in [`zeroize::Zeroizing`] buffers ([`scp::Key`], [`Component`],
//! [`MasterKey`]); no `Debug`, `Display` or error shows them (KCVs only), and no file
//! holds them in the clear. Card numbers are not echoed in errors either.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod agreement;
mod backup;
mod config;
pub mod data_object;
mod error;
mod kdd;
mod keyblob;
mod keypair;
pub mod keyset;
mod master;
mod pkcs11;
pub mod secret;
mod signing;
mod software;
mod types;

pub use agreement::{
    ecka_public_from_point, open_agreement, AgreementKey, AgreementKeyStore, EckaCurve,
    PKCS11_ECKA_LABEL_PREFIX,
};
pub use config::{open, PinSource, Pkcs11Config, SlotSelector, StoreConfig};
pub use data_object::{
    open_data_objects, DataObjectStore, MAX_DATA_OBJECT_LEN, PKCS11_DATA_OBJECT_LABEL_PREFIX,
};
pub use error::Error;
pub use kdd::{
    card_number_from_kdd, derive_in_software, diversification_for, kdd_for_card_number,
    kvn_for_version,
};
pub use keyset::{
    open_key_sets, validate_key_set_label, KeySetInfo, KeySetStore, KeyUsage, TransportPublicKey,
    WrappedKey, WrappedKeySet, PKCS11_KEY_SET_LABEL_PREFIX,
};
pub use master::MasterKey;
pub use pkcs11::{KeyProtection, Pkcs11KeyStore};
pub use scp::{Key, KeyKind, StaticKeys};
pub use secret::{
    open_secret_keys, validate_object_label, SecretKeyInfo, SecretKeyKind, SecretKeyStore,
    HMAC_IMPORT_LEN, PKCS11_SECRET_KEY_LABEL_PREFIX,
};
pub use signing::{
    ecdsa_raw_to_der, open_signing, p256_spki_from_ec_point, rsa_spki, validate_signing_label,
    SigningAlgorithm, SigningKey, SigningKeyStore, PKCS11_LABEL_PREFIX,
};
pub use software::SoftwareKeyStore;
pub use types::{
    combine_components, validate_category, Backend, BaseKeyInfo, Component, KeyStatus,
};

use std::time::SystemTime;

mod sealed {
    /// What differs between the backends behind the one [`super::KeyStore::import_base_key`]:
    /// storing a base key assembled in software. Not nameable outside the crate, so that
    /// only a dual-control import can put a given key into a store.
    pub trait StoreBaseKey {
        /// Stores `key` as the next version of `category` (already validated).
        fn store_base_key(
            &self,
            category: &str,
            key: scp::Key,
            expires: Option<std::time::SystemTime>,
        ) -> Result<crate::BaseKeyInfo, crate::Error>;
    }
}

/// A store of base keys. Object safe and shareable across threads: keep one
/// `Arc<dyn KeyStore>` per tenant or per process.
///
/// Categories are names checked by [`validate_category`]; versions start at 1 and are
/// never reused within a category.
/// Implemented by this crate's two backends only ([`SoftwareKeyStore`], [`Pkcs11KeyStore`]).
pub trait KeyStore: sealed::StoreBaseKey + Send + Sync + std::fmt::Debug {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Imports a base key under dual control: each component's KCV is checked against the
    /// one given, then the components are XORed. Needs at least two components. The new
    /// key gets the next version of the category; its KCV is in the returned info. On any
    /// error nothing is stored.
    fn import_base_key(
        &self,
        category: &str,
        kind: KeyKind,
        components: Vec<Component>,
        expires: Option<SystemTime>,
    ) -> Result<BaseKeyInfo, Error> {
        validate_category(category)?;
        let key = combine_components(kind, &components)?;
        drop(components);
        self.store_base_key(category, key, expires)
    }

    /// Generates a random base key (3DES: 16 or 24 bytes; AES: 16, 24 or 32) as the next
    /// version of the category.
    fn generate_base_key(
        &self,
        category: &str,
        kind: KeyKind,
        len: usize,
        expires: Option<SystemTime>,
    ) -> Result<BaseKeyInfo, Error>;

    /// Every base key version, sorted by category then version, with its status as of
    /// `at` (for example "which keys will have expired by the end of the month").
    fn list_at(&self, at: SystemTime) -> Result<Vec<BaseKeyInfo>, Error>;

    /// Every base key version with its status now.
    fn list(&self) -> Result<Vec<BaseKeyInfo>, Error> {
        self.list_at(SystemTime::now())
    }

    /// Generates the next version of a category with the kind and length of its newest
    /// version and the same lifetime (expiry − creation, at least a day) if it had one.
    /// Older versions stay usable (for rewriting old cards) until [`KeyStore::retire`]d.
    fn rotate(&self, category: &str) -> Result<BaseKeyInfo, Error>;

    /// Retires a version for good: it no longer derives keys. Idempotent.
    fn retire(&self, category: &str, version: u32) -> Result<BaseKeyInfo, Error>;

    /// Derives a card's static keys from a base key version and the card's 10-byte KDD
    /// (see the crate documentation). Works for active and expired versions, not retired
    /// ones.
    fn derive_for_kdd(
        &self,
        category: &str,
        version: u32,
        kdd: &[u8; 10],
    ) -> Result<StaticKeys, Error>;

    /// Derives a card's static keys from the card number:
    /// `derive_for_kdd(category, version, kdd_for_card_number(card_number))`.
    fn derive_card_keys(
        &self,
        category: &str,
        version: u32,
        card_number: &str,
    ) -> Result<StaticKeys, Error> {
        let kdd = kdd_for_card_number(card_number)?;
        self.derive_for_kdd(category, version, &kdd)
    }

    /// The newest active version of a category: the one to issue new cards under.
    fn current(&self, category: &str) -> Result<BaseKeyInfo, Error> {
        validate_category(category)?;
        let list = self.list()?;
        if !list.iter().any(|i| i.category == category) {
            return Err(Error::NotFound {
                category: category.into(),
                version: None,
            });
        }
        list.into_iter()
            .filter(|i| i.category == category && i.status == KeyStatus::Active)
            .max_by_key(|i| i.version)
            .ok_or_else(|| Error::NoActiveKey(category.into()))
    }

    /// Exports every base key wrapped under an AES key-encryption key (RFC 3394), with
    /// its metadata, in the backup format both backends read.
    fn backup(&self, kek: &Key) -> Result<Vec<u8>, Error>;

    /// Restores a backup made by either backend. Versions already present with the same
    /// key are skipped; a version present with a different key is a [`Error::Conflict`]
    /// and nothing is restored. Returns the keys added.
    fn restore(&self, backup: &[u8], kek: &Key) -> Result<Vec<BaseKeyInfo>, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_send_sync_and_object_safe() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SoftwareKeyStore>();
        assert_send_sync::<Pkcs11KeyStore>();
        assert_send_sync::<Error>();
        let _: Option<Box<dyn KeyStore>> = None;
        let _: Option<Box<dyn SigningKeyStore>> = None;
        let _: Option<Box<dyn SigningKey>> = None;
        let _: Option<Box<dyn KeySetStore>> = None;
        let _: Option<Box<dyn SecretKeyStore>> = None;
        let _: Option<Box<dyn DataObjectStore>> = None;
    }
}
