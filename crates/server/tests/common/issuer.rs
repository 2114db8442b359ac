//! A card issuer's records and keys with one written virtual card: tenant `issuer`,
//! category `gold` (GP test key as initial keys, KVN 30), an AES base key imported in two
//! components, and the card written by `tsm::Issuer`.

use std::sync::Arc;

use kms::{Component, KeyKind, KeyStore, MasterKey, SoftwareKeyStore};
use tsm::{Actor, CategorySpec, Store};

/// What [`issuer_with_written_card`] made.
pub struct WrittenCard {
    /// The issuer's store (SQLite in the directory given).
    pub store: Store,
    /// Its software key store (base key `gold` v1).
    pub keys: Arc<SoftwareKeyStore>,
    /// The issuance engine over both.
    pub issuer: tsm::Issuer,
    /// The written card.
    pub card: card::VirtualChannel,
}

/// Records, base key `base` (hex, AES) and card `card_number` written, in `dir`.
pub fn issuer_with_written_card(
    dir: &std::path::Path,
    base: &str,
    card_number: &str,
) -> WrittenCard {
    let store = Store::open(&format!("sqlite:{}", dir.join("ci.db").display())).unwrap();
    let keys = Arc::new(
        SoftwareKeyStore::create(dir.join("keys.json"), MasterKey::generate().unwrap()).unwrap(),
    );
    store
        .create_tenant("admin", "issuer", "issuer", tsm::model::Role::CardIssuer)
        .unwrap();
    gp_test_key_category(&store, keys.as_ref(), "issuer", "gold", base);
    let issuer = tsm::Issuer::new(
        store.clone(),
        keys.clone() as Arc<dyn KeyStore>,
        tsm::IssuerConfig::default(),
    );
    let mut card = card::VirtualChannel::new(card::VirtualCard::new(card::CardConfig::default()));
    issuer
        .write(
            &Actor::new("issuer", "setup"),
            card_number,
            "gold",
            &mut card,
        )
        .unwrap();
    WrittenCard {
        store,
        keys,
        issuer,
        card,
    }
}

/// Category `category` of `tenant` (the GP test key as initial keys, KVN 30) with the AES
/// base key `base` (hex) imported in two components as its version 1, registered current.
pub fn gp_test_key_category(
    store: &Store,
    keys: &dyn KeyStore,
    tenant: &str,
    category: &str,
    base: &str,
) {
    store
        .create_category(
            "admin",
            &CategorySpec {
                id: category.into(),
                tenant: tenant.into(),
                description: String::new(),
                initial_keys: tsm::model::InitialKeys::GpTestKey,
                initial_kvn: 0x30,
                perso: Vec::new(),
            },
        )
        .unwrap();
    let key = apdu::parse_hex(base).unwrap();
    let kcv = |b: &[u8]| kms::Key::new(KeyKind::Aes, b).unwrap().kcv();
    let c1 = vec![0x5Au8; 16];
    let c2: Vec<u8> = key.iter().zip(&c1).map(|(a, b)| a ^ b).collect();
    let info = keys
        .import_base_key(
            category,
            KeyKind::Aes,
            vec![Component::new(&c1, kcv(&c1)), Component::new(&c2, kcv(&c2))],
            None,
        )
        .unwrap();
    store
        .register_key_version(
            "admin",
            category,
            info.version,
            category,
            KeyKind::Aes,
            info.kcv,
            true,
        )
        .unwrap();
}
