//! The software keystore.

mod common;

use common::*;
use kms::{
    derive_in_software, kdd_for_card_number, Component, Error, Key, KeyKind, KeyStatus, KeyStore,
    MasterKey, SoftwareKeyStore,
};
use scp::{Diversification, StaticKeys};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const DEFAULT_KEY: &str = "404142434445464748494A4B4C4D4E4F";

#[test]
fn import_checks_each_component_kcv_and_stores_nothing_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    let before = std::fs::read(store.path()).unwrap();

    let key = apdu::parse_hex(DEFAULT_KEY).unwrap();
    let mut comps = split(KeyKind::Des3, &key);
    // The second custodian mistyped their component: its KCV no longer matches.
    let mut wrong = apdu::parse_hex("00112233445566778899AABBCCDDEEFF").unwrap();
    let kcv = comps[1].kcv();
    comps[1] = Component::new(&wrong, kcv);
    wrong.fill(0);
    let e = store
        .import_base_key("gold", KeyKind::Des3, comps, None)
        .unwrap_err();
    assert!(matches!(e, Error::ComponentKcv { index: 2, .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("component 2") && msg.contains("nothing was stored"),
        "{msg}"
    );
    assert!(!msg.contains("00112233"), "{msg}");
    assert!(store.list().unwrap().is_empty());
    assert_eq!(std::fs::read(store.path()).unwrap(), before);

    // One component is not dual control.
    let one = vec![split(KeyKind::Des3, &key).remove(0)];
    assert!(matches!(
        store.import_base_key("gold", KeyKind::Des3, one, None),
        Err(Error::TooFewComponents(1))
    ));

    // The right components: the combined KCV is the default key's (8BAF47, GPP/GPNET).
    let info = store
        .import_base_key("gold", KeyKind::Des3, split(KeyKind::Des3, &key), None)
        .unwrap();
    assert_eq!(apdu::hex(&info.kcv), "8BAF47");
    assert_eq!(
        (info.version, info.len, info.status),
        (1, 16, KeyStatus::Active)
    );
    assert_eq!(info.backend, kms::Backend::Software);
}

#[test]
fn three_components_and_aes() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    let key = apdu::parse_hex("404142434445464748494A4B4C4D4E4F5051525354555657").unwrap();
    let a = vec![0x11u8; 24];
    let b = vec![0x22u8; 24];
    let c: Vec<u8> = key.iter().map(|k| k ^ 0x11 ^ 0x22).collect();
    let comps: Vec<Component> = [a, b, c]
        .iter()
        .map(|x| Component::new(x, Key::aes(x).unwrap().kcv()))
        .collect();
    let info = store
        .import_base_key("silver", KeyKind::Aes, comps, None)
        .unwrap();
    assert_eq!(info.kcv, Key::aes(&key).unwrap().kcv());
    assert_eq!(info.len, 24);
}

#[test]
fn derivation_matches_public_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    for (i, v) in full_vectors().iter().chain(&kcv_vectors()).enumerate() {
        let cat = format!("vec{i}");
        let info = store
            .import_base_key(&cat, v.kind, split(v.kind, &v.master), None)
            .unwrap();
        let keys = store.derive_for_kdd(&cat, info.version, &v.kdd).unwrap();
        check_vector(v, &keys);
        // The same through the card number whenever the KDD is a BCD card number.
        if let Some(n) = kms::card_number_from_kdd(&v.kdd) {
            let by_number = store.derive_card_keys(&cat, info.version, &n).unwrap();
            assert_eq!(by_number, keys);
        }
    }
}

#[test]
fn emv_uses_only_the_last_twelve_digits() {
    // EMV CPG 2.1 reads KDD bytes 4..9 only: the OpenJavaCard vector for KDD 00…00 is
    // reached from any card number ending in twelve zeros. (Documented caveat: within a
    // 3DES category card numbers must differ in their last 12 digits.)
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    let v = &full_vectors()[0];
    assert_eq!(v.kdd, [0; 10]);
    store
        .import_base_key("emv", v.kind, split(v.kind, &v.master), None)
        .unwrap();
    for card in ["000000000000", "00000000000000000000", "98765000000000000"] {
        check_vector(v, &store.derive_card_keys("emv", 1, card).unwrap());
    }
    // KDF3 (AES) uses all ten bytes.
    store
        .generate_base_key("aes", KeyKind::Aes, 16, None)
        .unwrap();
    assert_ne!(
        store.derive_card_keys("aes", 1, "000000000000").unwrap(),
        store.derive_card_keys("aes", 1, "1000000000000").unwrap()
    );
}

#[test]
fn derivation_equals_scp_diversification_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    let des = store
        .generate_base_key("des", KeyKind::Des3, 16, None)
        .unwrap();
    let aes = store
        .generate_base_key("aes", KeyKind::Aes, 32, None)
        .unwrap();
    // Keys are generated inside the store; get them back through a backup.
    let kek = Key::aes(&[0x4B; 32]).unwrap();
    let other = software_store(&dir.path().join("x").tap_mkdir());
    other.restore(&store.backup(&kek).unwrap(), &kek).unwrap();
    for card in ["4111111111111111", "8944501234567890123", "1"] {
        let kdd = kdd_for_card_number(card).unwrap();
        for (info, div) in [(&des, Diversification::Emv), (&aes, Diversification::Kdf3)] {
            let got = store.derive_card_keys(&info.category, 1, card).unwrap();
            assert_eq!(
                got,
                other.derive_card_keys(&info.category, 1, card).unwrap()
            );
            assert_eq!(got.kind(), Some(info.kind));
            assert_ne!(got.enc, got.mac);
            // By hand: the base key as ENC=MAC=DEK master, scp's diversification.
            let base = base_key_via_backup(&store, &kek, &info.category);
            let by_hand = div.apply(&StaticKeys::same(base.clone()), &kdd).unwrap();
            assert_eq!(got, by_hand);
            assert_eq!(got, derive_in_software(&base, &kdd).unwrap());
        }
    }
}

/// Test-only: recovers a base key from a backup by unwrapping in software (RFC 3394).
fn base_key_via_backup(store: &SoftwareKeyStore, kek: &Key, category: &str) -> Key {
    let backup: serde_json::Value = serde_json::from_slice(&store.backup(kek).unwrap()).unwrap();
    let entry = backup["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["category"] == category)
        .unwrap();
    let wrapped = apdu::parse_hex(entry["wrapped"].as_str().unwrap()).unwrap();
    let kind = if entry["kind"] == "AES" {
        KeyKind::Aes
    } else {
        KeyKind::Des3
    };
    use aes_kw::KeyInit;
    let mut out = vec![0u8; wrapped.len() - 8];
    aes_kw::KwAes256::new_from_slice(kek.expose())
        .unwrap()
        .unwrap_key(&wrapped, &mut out)
        .unwrap();
    Key::new(kind, &out).unwrap()
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn rotation_keeps_old_versions_until_retired() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    let year = Duration::from_secs(365 * 86_400);
    let v1 = store
        .generate_base_key("gold", KeyKind::Aes, 16, Some(SystemTime::now() + year))
        .unwrap();
    let old_card = store.derive_card_keys("gold", 1, "1234567890").unwrap();

    let v2 = store.rotate("gold").unwrap();
    assert_eq!((v2.version, v2.kind, v2.len), (2, KeyKind::Aes, 16));
    assert_ne!(v2.kcv, v1.kcv);
    // Same lifetime as the version it replaces.
    let life = v2.expires.unwrap().duration_since(v2.created).unwrap();
    assert_eq!(life, year);
    // Old cards still open with version 1; new cards are issued under version 2.
    assert_eq!(
        store.derive_card_keys("gold", 1, "1234567890").unwrap(),
        old_card
    );
    assert_ne!(
        store.derive_card_keys("gold", 2, "1234567890").unwrap(),
        old_card
    );
    assert_eq!(store.current("gold").unwrap().version, 2);

    let r = store.retire("gold", 1).unwrap();
    assert_eq!(r.status, KeyStatus::Retired);
    assert!(matches!(
        store.derive_card_keys("gold", 1, "1234567890"),
        Err(Error::Retired { version: 1, .. })
    ));
    assert_eq!(store.retire("gold", 1).unwrap().status, KeyStatus::Retired);
    // Retirement survives a reopen (it is sealed into the entry).
    let path = store.path().to_path_buf();
    let list = store.list().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].status, KeyStatus::Retired);
    assert_eq!(list[1].status, KeyStatus::Active);
    drop(store);
    let master = MasterKey::generate().unwrap();
    assert!(matches!(
        SoftwareKeyStore::open(&path, master),
        Err(Error::WrongMasterKey(_))
    ));

    let store = software_store(&dir.path().join("b").tap_mkdir());
    assert!(matches!(
        store.rotate("nothing"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.retire("nothing", 1),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.derive_card_keys("nothing", 1, "1"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.derive_card_keys("bad:name", 1, "1"),
        Err(Error::BadCategory { .. })
    ));
}

#[test]
fn expiry_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    assert!(matches!(
        store.generate_base_key("gold", KeyKind::Des3, 16, Some(now - day)),
        Err(Error::ExpiryInPast)
    ));
    let info = store
        .generate_base_key("gold", KeyKind::Des3, 16, Some(now + day))
        .unwrap();
    assert_eq!(info.status, KeyStatus::Active);
    let later = store.list_at(now + 2 * day).unwrap();
    assert_eq!(later[0].status, KeyStatus::Expired);
    assert!(later[0].to_string().contains("expired"), "{}", later[0]);
    // An expired key still derives (old cards must stay manageable).
    store.derive_card_keys("gold", 1, "42").unwrap();
    // A key without expiry never expires.
    store
        .generate_base_key("plain", KeyKind::Aes, 16, None)
        .unwrap();
    let far = store.list_at(now + 100 * 365 * day).unwrap();
    assert_eq!(far[1].status, KeyStatus::Active);
}

#[test]
fn current_skips_expired_and_retired() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    store
        .generate_base_key("gold", KeyKind::Aes, 16, None)
        .unwrap();
    store.rotate("gold").unwrap();
    assert_eq!(store.current("gold").unwrap().version, 2);
    store.retire("gold", 2).unwrap();
    assert_eq!(store.current("gold").unwrap().version, 1);
    store.retire("gold", 1).unwrap();
    assert!(matches!(store.current("gold"), Err(Error::NoActiveKey(_))));
    // Rotating a fully retired category starts again after the newest version.
    assert_eq!(store.rotate("gold").unwrap().version, 3);
}

#[test]
fn backup_restore_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    let kek = Key::aes(&apdu::parse_hex("000102030405060708090A0B0C0D0E0F").unwrap()).unwrap();
    store
        .generate_base_key("a", KeyKind::Des3, 24, None)
        .unwrap();
    store
        .generate_base_key(
            "b",
            KeyKind::Aes,
            32,
            Some(SystemTime::now() + Duration::from_secs(1000)),
        )
        .unwrap();
    store.rotate("b").unwrap();
    store.retire("b", 1).unwrap();
    let blob = store.backup(&kek).unwrap();

    let other = software_store(&dir.path().join("o").tap_mkdir());
    let added = other.restore(&blob, &kek).unwrap();
    assert_eq!(added.len(), 3);
    let strip = |v: Vec<kms::BaseKeyInfo>| {
        v.into_iter()
            .map(|i| {
                (
                    i.category, i.version, i.kind, i.len, i.kcv, i.created, i.expires, i.status,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(other.list().unwrap()), strip(store.list().unwrap()));
    for (cat, v) in [("a", 1), ("b", 2)] {
        assert_eq!(
            other.derive_card_keys(cat, v, "5555").unwrap(),
            store.derive_card_keys(cat, v, "5555").unwrap()
        );
    }
    assert!(matches!(
        other.derive_card_keys("b", 1, "5555"),
        Err(Error::Retired { .. })
    ));
    // Idempotent: restoring again adds nothing.
    assert!(other.restore(&blob, &kek).unwrap().is_empty());

    // Wrong KEK, altered backup.
    let wrong = Key::aes(&[0u8; 16]).unwrap();
    assert!(matches!(
        other.restore(&blob, &wrong),
        Err(Error::WrongKek { .. })
    ));
    let text = String::from_utf8(blob.clone()).unwrap();
    let swapped = text.replacen("\"category\": \"a\"", "\"category\": \"z\"", 1);
    assert_ne!(swapped, text);
    assert!(matches!(
        other.restore(swapped.as_bytes(), &kek),
        Err(Error::BackupAuthentication)
    ));

    // A different key under an existing version is a conflict, and nothing is restored.
    let third = software_store(&dir.path().join("t").tap_mkdir());
    third
        .generate_base_key("b", KeyKind::Aes, 32, None)
        .unwrap();
    assert!(matches!(
        third.restore(&blob, &kek),
        Err(Error::Conflict { version: 1, .. })
    ));
    assert_eq!(third.list().unwrap().len(), 1);

    // No key bytes in the backup: it holds wrapped keys only.
    let key = base_key_via_backup(&store, &Key::aes(&[7; 32]).unwrap(), "a");
    assert!(!text.to_uppercase().contains(&apdu::hex(key.expose())));
}

#[test]
fn wrong_master_key_and_tampering_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let master = MasterKey::generate().unwrap();
    let store = SoftwareKeyStore::create(&path, master.clone()).unwrap();
    store
        .generate_base_key("gold", KeyKind::Aes, 16, None)
        .unwrap();
    drop(store);

    let e = SoftwareKeyStore::open(&path, MasterKey::generate().unwrap()).unwrap_err();
    assert!(matches!(e, Error::WrongMasterKey(_)), "{e}");
    assert!(e.to_string().contains("wrong master key"), "{e}");
    // Even an empty store tells a wrong master key.
    let empty = dir.path().join("empty.json");
    SoftwareKeyStore::create(&empty, master.clone()).unwrap();
    assert!(matches!(
        SoftwareKeyStore::open(&empty, MasterKey::generate().unwrap()),
        Err(Error::WrongMasterKey(_))
    ));
    assert!(matches!(
        SoftwareKeyStore::create(&empty, master.clone()),
        Err(Error::AlreadyExists(_))
    ));

    // Extending the expiry (or anything else) in the file breaks the entry's GCM tag.
    let text = std::fs::read_to_string(&path).unwrap();
    let altered = text.replace("\"expires\": null", "\"expires\": \"2099-01-01T00:00:00Z\"");
    assert_ne!(altered, text);
    std::fs::write(&path, &altered).unwrap();
    let e = SoftwareKeyStore::open(&path, master.clone()).unwrap_err();
    assert!(matches!(e, Error::Tampered { version: 1, .. }), "{e}");
    std::fs::write(&path, "not json").unwrap();
    assert!(matches!(
        SoftwareKeyStore::open(&path, master.clone()),
        Err(Error::Format { .. })
    ));
    assert!(matches!(
        SoftwareKeyStore::open(dir.path().join("missing.json"), master),
        Err(Error::Io { .. })
    ));
}

#[test]
fn file_holds_no_plaintext_and_writes_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    let key = apdu::parse_hex(DEFAULT_KEY).unwrap();
    store
        .import_base_key("gold", KeyKind::Aes, split(KeyKind::Aes, &key), None)
        .unwrap();
    let text = std::fs::read_to_string(store.path())
        .unwrap()
        .to_uppercase();
    assert!(!text.contains(DEFAULT_KEY));
    assert!(!text.contains(&DEFAULT_KEY[..12]));
    assert!(text.contains("504A77"), "the KCV is public: {text}");
    // Only the keystore and its lock file are left in the directory (no temporary file).
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            std::ffi::OsString::from("keys.json"),
            std::ffi::OsString::from("keys.json.lock")
        ]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "keystore readable by others: {mode:o}");
    }
}

#[test]
fn no_key_bytes_in_debug_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    let key = apdu::parse_hex(DEFAULT_KEY).unwrap();
    let comps = split(KeyKind::Des3, &key);
    let comp_hex: Vec<String> = comps.iter().map(|c| format!("{c:?}")).collect();
    let info = store
        .import_base_key("gold", KeyKind::Des3, comps.clone(), None)
        .unwrap();
    let keys = store
        .derive_card_keys("gold", 1, "4111111111111111")
        .unwrap();
    let master = MasterKey::from_hex(&"AB".repeat(32)).unwrap();
    let e = store
        .import_base_key("gold", KeyKind::Aes, comps, None)
        .unwrap_err();
    let dumps = [
        format!("{store:?}"),
        format!("{info:?} {info}"),
        format!("{keys:?}"),
        format!("{master:?}"),
        format!("{e:?} {e}"),
        comp_hex.join(" "),
        format!("{:?}", store.list().unwrap()),
    ];
    let secrets = [
        DEFAULT_KEY.to_string(),
        apdu::hex(keys.enc.expose()),
        apdu::hex(keys.mac.expose()),
        apdu::hex(keys.dek.expose()),
        "AB".repeat(8),
    ];
    for d in &dumps {
        let upper = d.to_uppercase();
        for s in &secrets {
            assert!(!upper.contains(&s[..16]), "{d} leaks {s}");
        }
        // Not as a decimal byte list either.
        assert!(!d.contains("64, 65, 66"), "{d}");
        assert!(!d.contains("4111111111111111"), "{d}");
    }
}

#[test]
fn shared_across_threads_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let master = MasterKey::generate().unwrap();
    let store: Arc<dyn KeyStore> =
        Arc::new(SoftwareKeyStore::create(&path, master.clone()).unwrap());
    store
        .generate_base_key("gold", KeyKind::Aes, 16, None)
        .unwrap();
    let expected = store.derive_card_keys("gold", 1, "777").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&store);
            std::thread::spawn(move || s.derive_card_keys("gold", 1, "777").unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), expected);
    }
    // A second process-like handle sees keys added by the first on a miss.
    let reader = SoftwareKeyStore::open(&path, master.clone()).unwrap();
    store.rotate("gold").unwrap();
    reader.derive_card_keys("gold", 2, "777").unwrap();
    assert_eq!(reader.list().unwrap().len(), 2);
}

#[test]
fn master_key_sources_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("master.hex");
    let master = MasterKey::generate().unwrap();
    std::fs::write(&key_file, format!("{}\n", master.expose_hex().as_str())).unwrap();
    let cfg = format!(
        "file:{}?master-key-file={}",
        dir.path().join("keys.json").display(),
        key_file.display()
    );
    let store = kms::open(&cfg).unwrap();
    store
        .generate_base_key("gold", KeyKind::Des3, 16, None)
        .unwrap();
    let before = store.derive_card_keys("gold", 1, "99").unwrap();
    drop(store);

    // The same master key from an environment variable and as 32 raw bytes.
    std::env::set_var("CW_KMS_TEST_MASTER", master.expose_hex().as_str());
    let from_env = MasterKey::from_env_var("CW_KMS_TEST_MASTER").unwrap();
    let raw = dir.path().join("master.bin");
    std::fs::write(&raw, apdu::parse_hex(master.expose_hex().as_str()).unwrap()).unwrap();
    let from_raw = MasterKey::from_file(&raw).unwrap();
    let mut store = SoftwareKeyStore::open(dir.path().join("keys.json"), from_env).unwrap();
    SoftwareKeyStore::open(dir.path().join("keys.json"), from_raw).unwrap();
    assert!(matches!(
        MasterKey::from_env_var("CW_KMS_TEST_UNSET_VARIABLE"),
        Err(Error::MasterKey(_))
    ));
    // A 128-bit key written as 32 hex digits is refused, not taken as 32 raw bytes.
    let short = dir.path().join("short.hex");
    std::fs::write(&short, "000102030405060708090A0B0C0D0E0F").unwrap();
    let e = MasterKey::from_file(&short).unwrap_err().to_string();
    assert!(e.contains("64 hex digits") && !e.contains("0A0B"), "{e}");

    // Master key rotation re-seals everything.
    let new = MasterKey::generate().unwrap();
    store.change_master_key(new.clone()).unwrap();
    assert!(matches!(
        SoftwareKeyStore::open(dir.path().join("keys.json"), master),
        Err(Error::WrongMasterKey(_))
    ));
    let reopened = SoftwareKeyStore::open(dir.path().join("keys.json"), new).unwrap();
    assert_eq!(reopened.derive_card_keys("gold", 1, "99").unwrap(), before);
}

#[test]
fn bad_inputs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    assert!(matches!(
        store.generate_base_key("gold", KeyKind::Des3, 8, None),
        Err(Error::BadKeyLength { .. })
    ));
    assert!(matches!(
        store.generate_base_key("", KeyKind::Aes, 16, None),
        Err(Error::BadCategory { .. })
    ));
    store
        .generate_base_key("gold", KeyKind::Aes, 16, None)
        .unwrap();
    assert!(matches!(
        store.derive_card_keys("gold", 1, "12ab"),
        Err(Error::BadCardNumber(_))
    ));
    assert!(matches!(
        store.backup(&Key::des3(&[1; 16]).unwrap()),
        Err(Error::BadKek)
    ));
    assert!(matches!(
        store.restore(b"garbage", &Key::aes(&[1; 16]).unwrap()),
        Err(Error::BadBackup(_))
    ));
}

const MASTER_HEX: &str = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
const WRITER_ENV: &str = "CW_KMS_CONCURRENT_WRITER";
const KEYS_PER_WRITER: usize = 12;

/// Adds `KEYS_PER_WRITER` keys to category `who` through its own store instance.
fn add_keys(path: &std::path::Path, who: &str) {
    let store = SoftwareKeyStore::open(path, MasterKey::from_hex(MASTER_HEX).unwrap()).unwrap();
    for _ in 0..KEYS_PER_WRITER {
        store
            .generate_base_key(who, KeyKind::Aes, 16, None)
            .unwrap();
    }
}

fn versions_of(path: &std::path::Path, who: &str) -> Vec<u32> {
    let store = SoftwareKeyStore::open(path, MasterKey::from_hex(MASTER_HEX).unwrap()).unwrap();
    store
        .list()
        .unwrap()
        .into_iter()
        .filter(|k| k.category == who)
        .map(|k| k.version)
        .collect()
}

#[test]
fn concurrent_writers_in_threads_lose_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    SoftwareKeyStore::create(&path, MasterKey::from_hex(MASTER_HEX).unwrap()).unwrap();
    // Separate store instances, as two processes would have: only the file is shared.
    std::thread::scope(|s| {
        for who in ["alpha", "beta"] {
            let path = &path;
            s.spawn(move || add_keys(path, who));
        }
    });
    let want: Vec<u32> = (1..=KEYS_PER_WRITER as u32).collect();
    assert_eq!(versions_of(&path, "alpha"), want);
    assert_eq!(versions_of(&path, "beta"), want);
}

/// The child side of [`concurrent_writer_processes_lose_no_key`].
#[test]
#[ignore = "child process of concurrent_writer_processes_lose_no_key"]
fn concurrent_writer_child() {
    let spec = std::env::var(WRITER_ENV).unwrap_or_else(|_| {
        panic!("run by concurrent_writer_processes_lose_no_key only ({WRITER_ENV} unset)")
    });
    let (who, path) = spec.split_once(':').unwrap();
    add_keys(std::path::Path::new(path), who);
}

#[test]
fn concurrent_writer_processes_lose_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    SoftwareKeyStore::create(&path, MasterKey::from_hex(MASTER_HEX).unwrap()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["alpha", "beta", "gamma"]
        .into_iter()
        .map(|who| {
            std::process::Command::new(&exe)
                .args(["--exact", "concurrent_writer_child", "--ignored"])
                .args(["--nocapture", "--test-threads=1"])
                .env(WRITER_ENV, format!("{who}:{}", path.display()))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let want: Vec<u32> = (1..=KEYS_PER_WRITER as u32).collect();
    for who in ["alpha", "beta", "gamma"] {
        assert_eq!(versions_of(&path, who), want, "{who}");
    }
}

/// A keystore file written before signing and agreement keys shared one sealing module
/// (master key 00 01 … 1F): its sealed entries still open, re-seal, and the keys work.
#[test]
fn a_keystore_file_with_sealed_keys_from_before_still_opens() {
    use kms::{AgreementKeyStore, SigningKeyStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::copy("tests/vectors/keystore-v1.json", &path).unwrap();
    let master = || {
        MasterKey::from_hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
            .unwrap()
    };
    let signing_spki = "3059301306072A8648CE3D020106082A8648CE3D0301070342000499638C5CFE14C374BC37ABDFC50CFE8140F724C8054E8DB05FFF9DAE3985CA9418A8645078D211A74E5F5B38A6F476433393BD1F8971519DBD9B38CA12AF7F18";
    let agreement_spki = "3059301306072A8648CE3D020106082A8648CE3D03010703420004938A61EA265D933FFCBBFBB2C5676BF7F9714C3323D9755F860935101CA4C6AE0BA4D793608B70E32EEE1228F670F20CD32E24DD6B760B310C2AC668EF737315";
    let check = |store: &SoftwareKeyStore| {
        let ca = store.signing_key("ca").unwrap();
        assert_eq!(apdu::hex(ca.public_key_spki()), signing_spki);
        assert!(!ca.sign_sha256(b"m").unwrap().is_empty());
        let oce = store.agreement_key("oce").unwrap();
        assert_eq!(apdu::hex(oce.public_key_spki()), agreement_spki);
        assert_eq!(oce.agree(oce.public_point()).unwrap().len(), 32);
    };
    let mut store = SoftwareKeyStore::open(&path, master()).unwrap();
    check(&store);
    let new = MasterKey::generate().unwrap();
    let new_hex = new.expose_hex();
    store.change_master_key(new).unwrap();
    check(&SoftwareKeyStore::open(&path, MasterKey::from_hex(&new_hex).unwrap()).unwrap());
}
