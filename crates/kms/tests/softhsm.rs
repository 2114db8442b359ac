//! The PKCS#11 backend against SoftHSM2. Skipped when SoftHSM2 is not installed, unless
//! `CARDWRIGHT_HSM_TESTS=1` (then they fail).

#[macro_use]
mod common;

use common::*;
use kms::{Component, Error, Key, KeyKind, KeyStatus, KeyStore};
use scp::{Diversification, StaticKeys};
use std::time::{Duration, SystemTime};

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn import_by_components_checks_kcvs_and_derives_like_software() {
    let hsm = hsm_or_skip!();
    let store = hsm.store("cw-test", false);
    let sw_dir = tempfile::tempdir().unwrap();
    let sw = software_store(sw_dir.path());
    let category = cat("import");

    let key = apdu::parse_hex("404142434445464748494A4B4C4D4E4F").unwrap();
    let mut comps = split(KeyKind::Des3, &key);
    let kcv = comps[0].kcv();
    comps[0] = Component::new(&[0x33; 16], kcv);
    let e = store
        .import_base_key(&category, KeyKind::Des3, comps, None)
        .unwrap_err();
    assert!(matches!(e, Error::ComponentKcv { index: 1, .. }), "{e}");
    assert!(store.list().unwrap().iter().all(|i| i.category != category));

    let info = store
        .import_base_key(&category, KeyKind::Des3, split(KeyKind::Des3, &key), None)
        .unwrap();
    assert_eq!(apdu::hex(&info.kcv), "8BAF47");
    assert_eq!(info.backend, kms::Backend::Pkcs11);
    sw.import_base_key(&category, KeyKind::Des3, split(KeyKind::Des3, &key), None)
        .unwrap();
    for card in ["4111111111111111", "0", "12345678901234567890"] {
        let hsm_keys = store.derive_card_keys(&category, 1, card).unwrap();
        assert_eq!(hsm_keys, sw.derive_card_keys(&category, 1, card).unwrap());
        let kdd = kms::kdd_for_card_number(card).unwrap();
        let by_hand = Diversification::Emv
            .apply(&StaticKeys::same(Key::des3(&key).unwrap()), &kdd)
            .unwrap();
        assert_eq!(hsm_keys, by_hand);
    }
}

#[test]
fn derivation_in_token_matches_public_vectors() {
    let hsm = hsm_or_skip!();
    let store = hsm.store("cw-test", false);
    for (i, v) in full_vectors().iter().chain(&kcv_vectors()).enumerate() {
        let category = cat(&format!("vector{i}"));
        let info = store
            .import_base_key(&category, v.kind, split(v.kind, &v.master), None)
            .unwrap();
        assert_eq!(info.kcv, Key::new(v.kind, &v.master).unwrap().kcv());
        let keys = store
            .derive_for_kdd(&category, info.version, &v.kdd)
            .unwrap();
        check_vector(v, &keys);
        assert_eq!(
            keys,
            kms::derive_in_software(&Key::new(v.kind, &v.master).unwrap(), &v.kdd).unwrap()
        );
    }
}

#[test]
fn generated_keys_derive_identically_across_backends() {
    let hsm = hsm_or_skip!();
    // Generated in the token (wrappable so it can be copied to software for comparison).
    let store = hsm.store("cw-wrap", true);
    let dir = tempfile::tempdir().unwrap();
    let sw = software_store(dir.path());
    let kek = Key::aes(&[0x2A; 32]).unwrap();
    for (kind, len) in [
        (KeyKind::Des3, 16),
        (KeyKind::Des3, 24),
        (KeyKind::Aes, 16),
        (KeyKind::Aes, 24),
        (KeyKind::Aes, 32),
    ] {
        let category = cat(&format!("gen-{kind}-{len}"));
        let info = store.generate_base_key(&category, kind, len, None).unwrap();
        assert_eq!((info.kind, info.len, info.version), (kind, len, 1));
    }
    sw.restore(&store.backup(&kek).unwrap(), &kek).unwrap();
    for info in store
        .list()
        .unwrap()
        .iter()
        .filter(|i| i.category.starts_with("t/gen-"))
    {
        let s = sw
            .list()
            .unwrap()
            .into_iter()
            .find(|i| i.category == info.category)
            .unwrap();
        assert_eq!(s.kcv, info.kcv);
        for card in ["1", "4111111111111111", "89440123456789012345"] {
            assert_eq!(
                store.derive_card_keys(&info.category, 1, card).unwrap(),
                sw.derive_card_keys(&info.category, 1, card).unwrap(),
                "{info}"
            );
        }
    }
}

#[test]
fn rotation_retirement_and_expiry() {
    let hsm = hsm_or_skip!();
    let store = hsm.store("cw-test", false);
    let category = cat("rotate");
    let now = SystemTime::now();
    assert!(matches!(
        store.generate_base_key(&category, KeyKind::Aes, 16, Some(now - DAY)),
        Err(Error::ExpiryInPast)
    ));
    let v1 = store
        .generate_base_key(&category, KeyKind::Aes, 16, Some(now + 30 * DAY))
        .unwrap();
    assert_eq!(v1.status, KeyStatus::Active);
    // Whole seconds, kept in CKA_ID.
    let expires = v1.expires.unwrap();
    assert_eq!(kms_unix(expires), kms_unix(now + 30 * DAY));
    let old = store.derive_card_keys(&category, 1, "31337").unwrap();

    let v2 = store.rotate(&category).unwrap();
    assert_eq!((v2.version, v2.kind, v2.len), (2, KeyKind::Aes, 16));
    assert!(v2.expires.is_some());
    assert_eq!(store.derive_card_keys(&category, 1, "31337").unwrap(), old);
    assert_ne!(store.derive_card_keys(&category, 2, "31337").unwrap(), old);
    assert_eq!(store.current(&category).unwrap().version, 2);

    // Expiry as reported later on.
    let later = store.list_at(now + 100 * DAY).unwrap();
    let mine: Vec<_> = later.iter().filter(|i| i.category == category).collect();
    assert!(
        mine.iter().all(|i| i.status == KeyStatus::Expired),
        "{mine:?}"
    );

    // Retired: the token itself refuses (CKA_ENCRYPT/CKA_SIGN cleared), even for a handle
    // that cached the key as usable before another handle retired it.
    let cached = hsm.store("cw-test", false);
    assert_eq!(cached.derive_card_keys(&category, 1, "31337").unwrap(), old);
    assert_eq!(
        store.retire(&category, 1).unwrap().status,
        KeyStatus::Retired
    );
    assert!(matches!(
        store.derive_card_keys(&category, 1, "31337"),
        Err(Error::Retired { version: 1, .. })
    ));
    assert!(matches!(
        cached.derive_card_keys(&category, 1, "31337"),
        Err(Error::Retired { version: 1, .. })
    ));
    // A new handle on the token sees the retirement too.
    let again = hsm.store("cw-test", false);
    assert!(matches!(
        again.derive_card_keys(&category, 1, "31337"),
        Err(Error::Retired { version: 1, .. })
    ));
    let list: Vec<_> = again
        .list()
        .unwrap()
        .into_iter()
        .filter(|i| i.category == category)
        .collect();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].status, KeyStatus::Retired);
    assert_eq!(apdu::hex(&list[0].kcv), apdu::hex(&v1.kcv));
}

fn kms_unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn base_keys_are_not_extractable() {
    let hsm = hsm_or_skip!();
    let store = hsm.store("cw-test", false);
    let category = cat("protect");
    store
        .generate_base_key(&category, KeyKind::Des3, 16, None)
        .unwrap();
    let key = apdu::parse_hex("000102030405060708090A0B0C0D0E0F").unwrap();
    store
        .import_base_key(&category, KeyKind::Aes, split(KeyKind::Aes, &key), None)
        .unwrap();
    for version in [1, 2] {
        let p = store.protection(&category, version).unwrap();
        assert!(p.token && p.sensitive, "{p:?}");
        assert!(!p.extractable, "{p:?}");
        // C_GetAttributeValue(CKA_VALUE) fails (CKR_ATTRIBUTE_SENSITIVE).
        assert!(!p.value_readable, "{p:?}");
    }
    // Generated in the token: always sensitive, never extractable.
    let p = store.protection(&category, 1).unwrap();
    assert!(p.always_sensitive && p.never_extractable, "{p:?}");

    // So C_WrapKey refuses them and backup says why.
    let e = store.backup(&Key::aes(&[1; 16]).unwrap()).unwrap_err();
    assert!(matches!(e, Error::NotExtractable { .. }), "{e}");
    assert!(e.to_string().contains("CKA_EXTRACTABLE"), "{e}");
}

#[test]
fn software_backup_restores_into_the_token() {
    let hsm = hsm_or_skip!();
    let store = hsm.store("cw-test", false);
    let dir = tempfile::tempdir().unwrap();
    let sw = software_store(dir.path());
    let (a, b) = (cat("restore-a"), cat("restore-b"));
    sw.generate_base_key(&a, KeyKind::Des3, 16, Some(SystemTime::now() + 400 * DAY))
        .unwrap();
    sw.generate_base_key(&b, KeyKind::Aes, 32, None).unwrap();
    sw.rotate(&b).unwrap();
    sw.retire(&b, 1).unwrap();
    let kek = Key::aes(&[0x11; 16]).unwrap();
    let blob = sw.backup(&kek).unwrap();

    assert!(matches!(
        store.restore(&blob, &Key::aes(&[0x12; 16]).unwrap()),
        Err(Error::WrongKek { .. })
    ));
    let added = store.restore(&blob, &kek).unwrap();
    assert_eq!(added.len(), 3);
    for card in ["4111111111111111", "42"] {
        assert_eq!(
            store.derive_card_keys(&a, 1, card).unwrap(),
            sw.derive_card_keys(&a, 1, card).unwrap()
        );
        assert_eq!(
            store.derive_card_keys(&b, 2, card).unwrap(),
            sw.derive_card_keys(&b, 2, card).unwrap()
        );
    }
    let r = store.derive_card_keys(&b, 1, "42");
    assert!(
        matches!(r, Err(Error::Retired { .. })),
        "{r:?} {:?}",
        store.list()
    );
    // Unwrapped keys are sensitive and non-extractable too.
    let p = store.protection(&a, 1).unwrap();
    assert!(p.sensitive && !p.extractable && !p.value_readable, "{p:?}");
    // Restoring twice adds nothing; the KCVs agree.
    assert!(store.restore(&blob, &kek).unwrap().is_empty());
    let infos: Vec<_> = store
        .list()
        .unwrap()
        .into_iter()
        .filter(|i| i.category == a || i.category == b)
        .collect();
    let sw_infos = sw.list().unwrap();
    assert_eq!(infos.len(), sw_infos.len());
    for (h, s) in infos.iter().zip(&sw_infos) {
        assert_eq!(
            (
                &h.category,
                h.version,
                h.kind,
                h.len,
                h.kcv,
                h.created,
                h.expires,
                h.status
            ),
            (
                &s.category,
                s.version,
                s.kind,
                s.len,
                s.kcv,
                s.created,
                s.expires,
                s.status
            )
        );
    }
}

#[test]
fn wrappable_token_backup_round_trip_and_rfc3394_answer() {
    let hsm = hsm_or_skip!();
    let store = hsm.store("cw-wrap", true);
    // RFC 3394 §4.1: key data 00112233…EEFF under KEK 000102…0F. Held as an AES base key
    // and wrapped by the token, it must come out as the RFC's ciphertext.
    let category = cat("rfc3394");
    let key = apdu::parse_hex("00112233445566778899AABBCCDDEEFF").unwrap();
    store
        .import_base_key(&category, KeyKind::Aes, split(KeyKind::Aes, &key), None)
        .unwrap();
    let p = store.protection(&category, 1).unwrap();
    assert!(p.extractable && p.sensitive && !p.value_readable, "{p:?}");
    let kek = Key::aes(&apdu::parse_hex("000102030405060708090A0B0C0D0E0F").unwrap()).unwrap();
    let blob = store.backup(&kek).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&blob).unwrap();
    let entry = json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["category"] == category.as_str())
        .unwrap();
    assert_eq!(
        entry["wrapped"].as_str().unwrap(),
        "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"
    );

    // The token's backup restores into software and derives the same keys.
    let dir = tempfile::tempdir().unwrap();
    let sw = software_store(dir.path());
    sw.restore(&blob, &kek).unwrap();
    assert_eq!(
        sw.derive_card_keys(&category, 1, "123456").unwrap(),
        store.derive_card_keys(&category, 1, "123456").unwrap()
    );
    // …and the software store's backup of it is byte-identical for that key (AES-KW is
    // deterministic).
    let sw_blob: serde_json::Value = serde_json::from_slice(&sw.backup(&kek).unwrap()).unwrap();
    let sw_entry = sw_blob["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["category"] == category.as_str())
        .unwrap();
    assert_eq!(sw_entry["wrapped"], entry["wrapped"]);
}

#[test]
fn wrong_pin_is_a_clear_error_without_the_pin() {
    let hsm = hsm_or_skip!();
    let pin_file = hsm.dir.join("wrong-pin");
    std::fs::write(&pin_file, "987654").unwrap();
    let cfg = format!(
        "pkcs11:{MODULE}?token=cw-pin&pin-file={}",
        pin_file.display()
    );
    let e = kms::open(&cfg).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            Error::Pkcs11 {
                call: "C_Login",
                ..
            }
        ),
        "{msg}"
    );
    assert!(!msg.contains("987654"), "{msg}");

    let e = kms::open(&format!(
        "pkcs11:{MODULE}?token=no-such-token&pin-file={}",
        pin_file.display()
    ))
    .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    let e = kms::open("pkcs11:/nonexistent/module.so?pin-env=X").unwrap_err();
    assert!(matches!(e, Error::Pkcs11 { .. }), "{e}");
}

#[test]
fn open_by_config_string_and_debug_is_clean() {
    let hsm = hsm_or_skip!();
    let store = kms::open(&hsm.config("cw-test", false)).unwrap();
    assert_eq!(store.backend(), kms::Backend::Pkcs11);
    let category = cat("config");
    store
        .generate_base_key(&category, KeyKind::Aes, 16, None)
        .unwrap();
    let keys = store
        .derive_card_keys(&category, 1, "4111111111111111")
        .unwrap();
    let dump = format!("{store:?} {keys:?} {:?}", store.list().unwrap());
    assert!(!dump.contains(PIN), "{dump}");
    for k in [&keys.enc, &keys.mac, &keys.dek] {
        assert!(
            !dump.to_uppercase().contains(&apdu::hex(k.expose())),
            "{dump}"
        );
    }
    assert!(matches!(
        store.derive_card_keys(&category, 9, "1"),
        Err(Error::NotFound {
            version: Some(9),
            ..
        })
    ));
}

#[test]
fn concurrent_derivations_share_the_session_pool() {
    let hsm = hsm_or_skip!();
    let store = std::sync::Arc::new(hsm.store("cw-test", false));
    let category = cat("threads");
    store
        .generate_base_key(&category, KeyKind::Des3, 16, None)
        .unwrap();
    let expected: Vec<_> = (0..8)
        .map(|n| {
            store
                .derive_card_keys(&category, 1, &n.to_string())
                .unwrap()
        })
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = std::sync::Arc::clone(&store);
            let c = category.clone();
            std::thread::spawn(move || {
                (0..8)
                    .map(|n| s.derive_card_keys(&c, 1, &n.to_string()).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), expected);
    }
}
