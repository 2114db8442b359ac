//! Wrapped key set documents of `kms::keyset` (JSON from a partner platform), read and
//! imported through the public API only.

use kms::{EckaCurve, KeySetStore, MasterKey, SoftwareKeyStore, WrappedKeySet};
use std::sync::OnceLock;

/// The P-256 transport key of the fuzzed importer (PKCS#8 DER, a test value made with
/// `openssl genpkey`): the `seeds` example wraps real key sets for it, so the fuzzer starts
/// from documents that get through every check.
pub const KEY_SET_TRANSPORT_PKCS8: &str = "308187020100301306072A8648CE3D020106082A8648CE3D030107046D306B0201010420A2123560E5747860397029DEF6F29C1342EC112544629CBB0A28F332E97F7A00A14403420004A53FD4C7CA900BC3DB6AE0E61189A93CF3CC3C847CB9AC093FFF4F84E2AEF2C47659108186A074A2E67571FAAFAF8D66B0618B16DF1B21E77E58F57B60DBFD05";

/// The label of that transport key in the importer's store.
pub const KEY_SET_TRANSPORT_LABEL: &str = "fuzz-transport";

/// A software key store holding the transport key above, in a directory of this process
/// (made once).
pub fn key_set_importer() -> &'static SoftwareKeyStore {
    static STORE: OnceLock<(tempfile::TempDir, SoftwareKeyStore)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temporary directory");
            let master = MasterKey::from_bytes(&[0x4B; 32]).expect("32-byte master key");
            let store =
                SoftwareKeyStore::create(dir.path().join("keys.json"), master).expect("key store");
            let pkcs8 = apdu::parse_hex(KEY_SET_TRANSPORT_PKCS8).expect("hex");
            store
                .import_agreement_key(KEY_SET_TRANSPORT_LABEL, EckaCurve::P256, &pkcs8)
                .expect("transport key");
            (dir, store)
        })
        .1
}

/// A wrapped key set document of any content (read as UTF-8, lossily): `from_json` never
/// panics; a document it accepts re-encodes with `to_json` to one that reads back equal,
/// and describes itself; importing it into a software store with the transport key above
/// never panics, and what imports is stored with the kind, length and ENC check value the
/// document gave (then deleted, so the next input starts from the same store).
pub fn wrapped_key_set(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(w) = WrappedKeySet::from_json(&text) else {
        return;
    };
    let again = WrappedKeySet::from_json(&w.to_json()).expect("to_json output reads back");
    assert_eq!(again, w);
    let (kind, len, kcv) = w.describe().expect("an accepted document describes itself");
    let _ = w.recipient_key();
    let store = key_set_importer();
    if let Ok(info) = store.import_wrapped_key_set("imported", &w, KEY_SET_TRANSPORT_LABEL) {
        assert_eq!((info.kind, info.len, info.kcv), (kind, len, kcv));
        let keys = store.key_set("imported").expect("the imported set opens");
        assert_eq!(keys.enc.kcv(), kcv);
        assert!(store.delete_key_set("imported").expect("delete"));
    }
}
