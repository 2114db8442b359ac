//! A platform ready for OTA downloads, for tests of the engine, the service and the whole
//! flow (like `gp::cap::testing`): a tenant `acme` (card issuer), a category `acme/gold`
//! with an AES base key, the card [`CARD`] written with that key version and enrolled for
//! OTA ([`ICCID`], [`MSISDN`], SCP80 key set 1), a synthetic package and its catalog entry
//! `wallet`. Not for production data.

use std::path::Path;

use gp::aid::Aid;
use kms::{KeyStore, MasterKey, SoftwareKeyStore};

use super::CatalogEntry;
use crate::model::{CardState, InitialKeys, Role};
use crate::{CategorySpec, Store};

/// The test card's number.
pub const CARD: &str = "8900000000000000001";
/// The test card's ICCID.
pub const ICCID: &str = "8949000000000000001";
/// The test card's MSISDN (international, without `+`).
pub const MSISDN: &str = "491701234567";

/// The platform [`platform`] set up.
#[derive(Debug)]
pub struct Platform {
    /// Its database (`sqlite:DIR/tsm.db`).
    pub store: Store,
    /// Its key store (`DIR/keys.json`).
    pub keys: SoftwareKeyStore,
    /// The catalog entry `wallet`.
    pub entry: CatalogEntry,
}

fn aid(hex: &str) -> Aid {
    Aid::new(&apdu::parse_hex(hex).expect("hex")).expect("AID")
}

/// Sets the platform up in `dir` with the key store's `master` key and a synthetic CAP of
/// `cap_bytes`. Panics on failure (a test fixture).
pub fn platform(dir: &Path, master: MasterKey, cap_bytes: usize) -> Platform {
    let url = format!("sqlite:{}", dir.join("tsm.db").display());
    let store = Store::open(&url).expect("store");
    let keys = SoftwareKeyStore::create(dir.join("keys.json"), master).expect("key store");
    let info = keys
        .generate_base_key("acme/gold", scp::KeyKind::Aes, 16, None)
        .expect("base key");
    store
        .create_tenant("admin", "acme", "ACME Mobile", Role::CardIssuer)
        .expect("tenant");
    store
        .create_category(
            "admin",
            &CategorySpec {
                id: "acme/gold".into(),
                tenant: "acme".into(),
                description: "gold".into(),
                initial_keys: InitialKeys::GpTestKey,
                initial_kvn: 0x30,
                perso: Vec::new(),
            },
        )
        .expect("category");
    store
        .register_key_version(
            "admin",
            "acme/gold",
            info.version,
            "acme/gold",
            info.kind,
            info.kcv,
            true,
        )
        .expect("key version");
    store
        .register_card("acme/op", CARD, "acme/gold")
        .expect("card");
    // The card was written with that version (issuance is tested elsewhere).
    let mut card = store.card(CARD).expect("card").expect("card");
    card.state = CardState::Written;
    card.key_version = Some(info.version);
    store
        .with_conn(|c| crate::store::records::update_card_in(c, &card))
        .expect("card written");
    let cap = gp::cap::testing::synthetic_cap(cap_bytes);
    let pkg = store
        .add_package("acme/op", "acme", "wallet", &cap)
        .expect("package");
    let entry = store
        .add_ota_catalog_entry(
            "acme/op",
            &CatalogEntry {
                tenant: "acme".into(),
                app: "wallet".into(),
                title: "Wallet".into(),
                package: pkg.aid,
                module: aid("A0000005550101"),
                instance: aid("A000000555010101"),
                sd: aid("A00000055501FF01"),
                privileges: vec![0x00],
                params: Vec::new(),
                created_ms: 0,
            },
        )
        .expect("catalog entry");
    store
        .enrol_ota_card("acme/op", CARD, ICCID, &format!("+{MSISDN}"), 1)
        .expect("enrolment");
    Platform { store, keys, entry }
}
