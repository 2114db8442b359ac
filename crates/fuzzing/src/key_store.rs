//! The software key store file of `kms` (JSON with sealed entries), read through its
//! public API only.

use kms::{
    DataObjectStore, KeyStore, MasterKey, SecretKeyStore, SigningKeyStore, SoftwareKeyStore,
};
use std::path::PathBuf;

/// The master key of the fuzzed key store files (and of the seeds, see the `seeds`
/// example): a test value.
pub const KEY_STORE_MASTER: [u8; 32] = [0x4D; 32];

/// A key store file of any content: opening it with the test master key never panics
/// (bad JSON, a wrong master key check, a tampered or truncated entry are errors), and a
/// store that opens can list its base keys and signing keys. The input is written to a
/// file of this process in the temporary directory, as `SoftwareKeyStore::open` reads a
/// path. A store that opens also lists its secret keys and data objects and reads every
/// data object.
pub fn key_store_file(data: &[u8]) {
    let path = store_path();
    std::fs::write(&path, data).expect("the temporary directory is writable");
    let master = MasterKey::from_bytes(&KEY_STORE_MASTER).expect("32-byte master key");
    if let Ok(store) = SoftwareKeyStore::open(&path, master) {
        let _ = KeyStore::list(&store);
        let _ = store.signing_key_labels();
        let _ = SecretKeyStore::list(&store, "");
        for label in DataObjectStore::list(&store, "").unwrap_or_default() {
            let _ = store.get(&label);
        }
    }
}

fn store_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "cardwright-fuzz-keystore-{}.json",
        std::process::id()
    ))
}
