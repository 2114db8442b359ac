//! CA signing keys in both backends. The SoftHSM2 tests are skipped when SoftHSM2 is not
//! installed, unless `CARDWRIGHT_HSM_TESTS=1` (then they fail).

#[macro_use]
mod common;

use common::*;
use kms::{
    Error, KeyKind, KeyStore, MasterKey, SigningAlgorithm, SigningKey, SigningKeyStore,
    SoftwareKeyStore,
};
use p256::ecdsa::signature::Verifier;
use rsa::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};

/// Checks a signature the way a relying party would: from the SPKI alone.
fn verify(spki: &[u8], message: &[u8], signature: &[u8]) -> bool {
    if let Ok(vk) = p256::ecdsa::VerifyingKey::from_public_key_der(spki) {
        let Ok(sig) = p256::ecdsa::DerSignature::from_bytes(signature) else {
            return false;
        };
        return vk.verify(message, &sig).is_ok();
    }
    let pk = rsa::PublicKey::from_public_key_der(spki).expect("P-256 or RSA SPKI");
    pk.verify(
        rsa::Pkcs1v15Sign::new::<Sha256>(),
        &Sha256::digest(message),
        signature,
    )
    .is_ok()
}

/// RSASSA-PSS with SHA-256, MGF1-SHA-256, salt 32 (GP 2.3.1 B.3.2 tokens and DAP).
fn check_pss(key: &dyn SigningKey, spki: &[u8]) {
    let pk = rsa::PublicKey::from_public_key_der(spki).expect("RSA SPKI");
    let sig = key.sign_pss_sha256(b"token input").unwrap();
    let pss = || rsa::Pss::<Sha256>::new_with_salt(32);
    assert!(pk
        .verify(pss(), &Sha256::digest(b"token input"), &sig)
        .is_ok());
    assert!(pk
        .verify(pss(), &Sha256::digest(b"other input"), &sig)
        .is_err());
}

fn exercise(key: &dyn SigningKey, spki: &[u8]) {
    assert_eq!(key.public_key_spki(), spki);
    for msg in [&b""[..], b"tbsCertificate", &[0xA5; 3000]] {
        let sig = key.sign_sha256(msg).unwrap();
        assert!(verify(spki, msg, &sig), "{key:?}");
        assert!(!verify(spki, b"another message", &sig));
    }
}

#[test]
fn software_p256_key_is_sealed_in_the_keystore_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, master_hex, store) = software_store_at(dir.path());
    store
        .generate_base_key("gold", KeyKind::Aes, 16, None)
        .unwrap();
    let spki = store
        .create_signing_key("ca", SigningAlgorithm::P256)
        .unwrap();
    assert!(matches!(
        store.create_signing_key("ca", SigningAlgorithm::P256),
        Err(Error::SigningKeyExists(_))
    ));
    assert!(matches!(
        store.signing_key("nope"),
        Err(Error::SigningKeyNotFound(_))
    ));
    assert!(matches!(
        store.create_signing_key("a b", SigningAlgorithm::P256),
        Err(Error::BadSigningLabel { .. })
    ));
    let key = store.signing_key("ca").unwrap();
    assert_eq!(key.algorithm(), SigningAlgorithm::P256);
    assert_eq!(key.label(), "ca");
    exercise(key.as_ref(), &spki);
    assert!(format!("{key:?}").contains("redacted"));

    // A base key added later keeps the signing key, and vice versa.
    store
        .generate_base_key("gold", KeyKind::Aes, 16, None)
        .unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
    assert_eq!(store.signing_key_labels().unwrap(), ["ca"]);

    // The file holds the public key and a sealed blob, never PKCS#8 in the clear.
    let text = std::fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entry = &json["signing_keys"][0];
    assert_eq!(entry["label"], "ca");
    assert_eq!(entry["public"], apdu::hex(&spki));
    let sealed = apdu::parse_hex(entry["sealed"].as_str().unwrap()).unwrap();
    // nonce(12) ‖ ciphertext ‖ tag(16); PKCS#8 of P-256 starts 30 81 87 02 01 00.
    assert!(!sealed
        .windows(6)
        .any(|w| w == [0x30, 0x81, 0x87, 0x02, 0x01, 0x00]));

    // Another process (same master key) signs with the same key.
    let again = SoftwareKeyStore::open(&path, MasterKey::from_hex(&master_hex).unwrap()).unwrap();
    exercise(again.signing_key("ca").unwrap().as_ref(), &spki);
    // Any other master key opens nothing.
    assert!(matches!(
        SoftwareKeyStore::open(&path, MasterKey::generate().unwrap()),
        Err(Error::WrongMasterKey(_))
    ));

    // Master key rotation re-seals the signing key too.
    let mut again = again;
    let new = MasterKey::generate().unwrap();
    let new_hex = new.expose_hex();
    again.change_master_key(new).unwrap();
    let rotated = SoftwareKeyStore::open(&path, MasterKey::from_hex(&new_hex).unwrap()).unwrap();
    exercise(rotated.signing_key("ca").unwrap().as_ref(), &spki);
}

#[test]
fn software_signing_key_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, master_hex, store) = software_store_at(dir.path());
    store
        .create_signing_key("ca", SigningAlgorithm::P256)
        .unwrap();
    let other = store
        .create_signing_key("other", SigningAlgorithm::P256)
        .unwrap();
    // Swap in the other key's public key, relabel, change the date, move sealed blobs.
    let edits: Vec<Edit> = vec![
        Box::new(move |j| j["signing_keys"][0]["public"] = apdu::hex(&other).into()),
        Box::new(|j| j["signing_keys"][0]["label"] = "ca2".into()),
        Box::new(|j| j["signing_keys"][0]["created"] = "2020-01-01T00:00:00Z".into()),
        Box::new(|j| j["signing_keys"][0]["algorithm"] = "rsa2048".into()),
        Box::new(|j| {
            let s = j["signing_keys"][1]["sealed"].clone();
            j["signing_keys"][0]["sealed"] = s;
        }),
    ];
    assert_edits_refused(&path, &master_hex, &edits, |e| {
        matches!(e, Error::SigningKeyTampered { .. })
    });
}

#[test]
fn software_rsa_2048_signs_pkcs1_v15() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    let spki = store
        .create_signing_key("rsa-ca", SigningAlgorithm::Rsa2048)
        .unwrap();
    let key = store.signing_key("rsa-ca").unwrap();
    assert_eq!(key.algorithm(), SigningAlgorithm::Rsa2048);
    exercise(key.as_ref(), &spki);
    assert_eq!(key.sign_sha256(b"x").unwrap().len(), 256);
    check_pss(key.as_ref(), &spki);
}

#[test]
fn open_signing_from_a_configuration_string() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = software_config(dir.path(), "ca.json");
    let store = kms::open_signing(&cfg).unwrap();
    let (key, created) = store
        .signing_key_or_create("ca", SigningAlgorithm::P256)
        .unwrap();
    assert!(created);
    let spki = key.public_key_spki().to_vec();
    drop(store);
    let store = kms::open_signing(&cfg).unwrap();
    let (key, created) = store
        .signing_key_or_create("ca", SigningAlgorithm::P256)
        .unwrap();
    assert!(!created);
    exercise(key.as_ref(), &spki);
}

#[test]
fn pkcs11_p256_key_is_generated_in_the_token_and_never_leaves_it() {
    let hsm = hsm_or_skip!();
    let store = hsm.store("cw-test", false);
    let label = "sig/p256";
    let spki = store
        .create_signing_key(label, SigningAlgorithm::P256)
        .unwrap();
    assert!(matches!(
        store.create_signing_key(label, SigningAlgorithm::P256),
        Err(Error::SigningKeyExists(_))
    ));
    let p = store.signing_key_protection(label).unwrap();
    assert!(p.token && p.sensitive && p.always_sensitive && p.never_extractable);
    assert!(!p.extractable);
    assert!(
        !p.value_readable,
        "CKA_VALUE of the private key was readable"
    );
    assert!(store
        .signing_key_labels()
        .unwrap()
        .contains(&label.to_string()));
    // Base keys do not see it, and it does not see base keys.
    assert!(store
        .list()
        .unwrap()
        .iter()
        .all(|i| !i.category.contains("p256")));

    let key = store.signing_key(label).unwrap();
    assert_eq!(key.algorithm(), SigningAlgorithm::P256);
    exercise(key.as_ref(), &spki);
    // ECDSA in the token is randomised: two signatures differ, both verify.
    assert_ne!(
        key.sign_sha256(b"m").unwrap(),
        key.sign_sha256(b"m").unwrap()
    );

    // The key keeps signing after its store is gone; a new store finds the same key.
    drop(store);
    exercise(key.as_ref(), &spki);
    let store = hsm.store("cw-test", false);
    assert_eq!(store.signing_key(label).unwrap().public_key_spki(), spki);
    assert!(matches!(
        store.signing_key("sig/none"),
        Err(Error::SigningKeyNotFound(_))
    ));
}

#[test]
fn pkcs11_rsa_2048_signs_in_the_token() {
    let hsm = hsm_or_skip!();
    let store = hsm.store("cw-test", false);
    let spki = store
        .create_signing_key("sig/rsa", SigningAlgorithm::Rsa2048)
        .unwrap();
    let p = store.signing_key_protection("sig/rsa").unwrap();
    assert!(p.sensitive && !p.extractable && !p.value_readable);
    let key = store.signing_key("sig/rsa").unwrap();
    assert_eq!(key.algorithm(), SigningAlgorithm::Rsa2048);
    exercise(key.as_ref(), &spki);
    check_pss(key.as_ref(), &spki);
    // PKCS#1 v1.5 is deterministic (RFC 8017 §8.2.1).
    assert_eq!(
        key.sign_sha256(b"m").unwrap(),
        key.sign_sha256(b"m").unwrap()
    );
}

#[test]
fn pkcs11_open_signing_from_a_configuration_string() {
    let hsm = hsm_or_skip!();
    let store = kms::open_signing(&hsm.config("cw-pin", false)).unwrap();
    let (key, _) = store
        .signing_key_or_create("sig/cfg", SigningAlgorithm::P256)
        .unwrap();
    let spki = key.public_key_spki().to_vec();
    exercise(key.as_ref(), &spki);
}
