//! Data objects by label (`kms::DataObjectStore`) in both backends: put, replace, list,
//! delete, limits; the software file authenticates them; a token replacement interrupted
//! between its steps is finished or undone. PKCS#11 tests run on SoftHSM2 and are skipped
//! without it (unless `CARDWRIGHT_HSM_TESTS=1`).

#[macro_use]
mod common;

use common::*;
use cryptoki::object::{Attribute, ObjectClass};
use kms::{DataObjectStore, Error, MAX_DATA_OBJECT_LEN};

fn behaves(store: &dyn DataObjectStore, prefix: &str) {
    let root = format!("{prefix}trust/root");
    let ca = format!("{prefix}ca/cert");
    assert_eq!(store.get(&root).unwrap(), None);
    store.put(&root, b"first").unwrap();
    store.put(&ca, &[0u8; 3000]).unwrap();
    assert_eq!(store.get(&root).unwrap().as_deref(), Some(&b"first"[..]));
    store.put(&root, b"second").unwrap();
    assert_eq!(store.get(&root).unwrap().as_deref(), Some(&b"second"[..]));
    assert_eq!(store.get(&ca).unwrap(), Some(vec![0u8; 3000]));
    assert_eq!(
        store.list(prefix).unwrap(),
        vec![ca.clone(), root.clone()],
        "sorted, one entry per label"
    );
    assert_eq!(
        store.list(&format!("{prefix}trust/")).unwrap(),
        vec![root.clone()]
    );
    // An empty object is an object.
    store.put(&ca, b"").unwrap();
    assert_eq!(store.get(&ca).unwrap(), Some(Vec::new()));
    // Refusals store nothing.
    let big = vec![0u8; MAX_DATA_OBJECT_LEN + 1];
    assert!(matches!(
        store.put(&root, &big),
        Err(Error::DataObjectTooLarge { .. })
    ));
    assert_eq!(store.get(&root).unwrap().as_deref(), Some(&b"second"[..]));
    for bad in ["", "a:b", "x y", &"l".repeat(65)] {
        assert!(matches!(
            store.put(bad, b"v"),
            Err(Error::BadObjectLabel { .. })
        ));
        assert!(matches!(store.get(bad), Err(Error::BadObjectLabel { .. })));
    }
    assert!(store.delete(&root).unwrap());
    assert!(!store.delete(&root).unwrap());
    assert!(store.delete(&ca).unwrap());
    assert_eq!(store.get(&root).unwrap(), None);
    assert!(store.list(prefix).unwrap().is_empty());
}

#[test]
fn software_backend() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    behaves(&store, "");
}

#[test]
fn software_file_authenticates_objects() {
    let dir = tempfile::tempdir().unwrap();
    let (path, master_hex, mut store) = software_store_at(dir.path());
    store.put("trust/root", b"anchor").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(&apdu::hex(b"anchor")),
        "public: readable in the file"
    );
    let edits: Vec<Edit> = vec![
        Box::new(|j| j["data_objects"][0]["value"] = apdu::hex(b"forged").into()),
        Box::new(|j| j["data_objects"][0]["label"] = "trust/other".into()),
        Box::new(|j| j["data_objects"][0]["tag"] = "00".into()),
    ];
    assert_edits_refused(&path, &master_hex, &edits, |e| {
        matches!(e, Error::DataObjectTampered { .. })
    });
    store
        .change_master_key(kms::MasterKey::generate().unwrap())
        .unwrap();
    assert_eq!(
        store.get("trust/root").unwrap().as_deref(),
        Some(&b"anchor"[..])
    );
    // Another process sees the change (the file is re-read).
    let cfg = software_config(dir.path(), "other.json");
    let a = kms::open_data_objects(&cfg).unwrap();
    let b = kms::open_data_objects(&cfg).unwrap();
    a.put("x", b"1").unwrap();
    assert_eq!(b.get("x").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn pkcs11_backend() {
    let hsm = hsm_or_skip!();
    let store = hsm.store("cw-test", false);
    behaves(&store, "do-basic/");
}

/// The token the interrupted-replacement test writes to behind the store's back. Not the
/// token of the other tests of this file: its raw writes bypass the store's per-token lock,
/// and SoftHSM2 answers `CKR_GENERAL_ERROR` to a `C_CreateObject` that races another
/// session's write to the same token (seen once in CI).
const RAW_TOKEN: &str = "cw-wrap";

/// A session on [`RAW_TOKEN`], for making objects the way an interrupted `put` leaves them.
fn raw_session(hsm: &Hsm) -> cryptoki::session::Session {
    let ctx = cryptoki::context::Pkcs11::new(MODULE).unwrap();
    // Initialised already by the store in this process: that is fine.
    let _ = ctx.initialize(cryptoki::context::CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    ));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == RAW_TOKEN)
        .unwrap();
    let _ = hsm;
    ctx.open_rw_session(slot).unwrap()
}

fn raw_object(s: &cryptoki::session::Session, label: &str, value: &[u8]) {
    s.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Modifiable(true),
        Attribute::Application(b"cardwright".to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Value(value.to_vec()),
    ])
    .unwrap();
}

#[test]
fn pkcs11_interrupted_replacement() {
    let hsm = hsm_or_skip!();
    let store = hsm.store(RAW_TOKEN, false);
    let s = raw_session(&hsm);
    // Stopped after the old object went, before the relabelling: `get` finishes it.
    raw_object(&s, "cw-do-new:do-int/a", b"new");
    assert_eq!(store.get("do-int/a").unwrap(), Some(b"new".to_vec()));
    assert_eq!(store.list("do-int/").unwrap(), vec!["do-int/a".to_string()]);
    // Stopped before the old object went: the old value stands, the next put supersedes.
    raw_object(&s, "cw-do-new:do-int/a", b"stray");
    assert_eq!(store.get("do-int/a").unwrap(), Some(b"new".to_vec()));
    store.put("do-int/a", b"third").unwrap();
    assert_eq!(store.get("do-int/a").unwrap(), Some(b"third".to_vec()));
    // Two objects under one label are not guessed between.
    raw_object(&s, "cw-do:do-int/a", b"twin");
    assert!(matches!(
        store.get("do-int/a"),
        Err(Error::DataObjectTampered { .. })
    ));
    // Delete removes everything under the label, strays too.
    raw_object(&s, "cw-do-new:do-int/a", b"stray");
    assert!(store.delete("do-int/a").unwrap());
    assert_eq!(store.get("do-int/a").unwrap(), None);
    assert!(store.list("do-int/").unwrap().is_empty());
}
