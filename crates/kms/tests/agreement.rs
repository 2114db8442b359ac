//! Key-agreement (ECKA) keys in both backends: the SCP11 off-card entity's static key. The
//! SoftHSM2 tests are skipped when SoftHSM2 is not installed, unless `CARDWRIGHT_HSM_TESTS=1`
//! (then they fail).

#[macro_use]
mod common;

use common::*;
use kms::{AgreementKey, AgreementKeyStore, EckaCurve, Error, MasterKey, SoftwareKeyStore};
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::elliptic_curve::Generate;
use p256::pkcs8::DecodePublicKey;

/// The peer's side of the agreement, computed independently from the SPKI alone: a fresh
/// ephemeral key (as a card's ePK.SD would be), its point, and the secret it computes.
fn peer_side(curve: EckaCurve, spki: &[u8]) -> (Vec<u8>, Vec<u8>) {
    match curve {
        EckaCurve::P256 => {
            let ours = p256::PublicKey::from_public_key_der(spki).unwrap();
            let eph = p256::ecdh::EphemeralSecret::try_generate().unwrap();
            let point = eph.public_key().to_sec1_point(false).as_bytes().to_vec();
            let z = eph.diffie_hellman(&ours).raw_secret_bytes().to_vec();
            (point, z)
        }
        EckaCurve::P384 => {
            let ours = p384::PublicKey::from_public_key_der(spki).unwrap();
            let eph = p384::ecdh::EphemeralSecret::try_generate().unwrap();
            let point = eph.public_key().to_sec1_point(false).as_bytes().to_vec();
            let z = eph.diffie_hellman(&ours).raw_secret_bytes().to_vec();
            (point, z)
        }
    }
}

fn exercise(key: &dyn AgreementKey, spki: &[u8]) {
    assert_eq!(key.public_key_spki(), spki);
    let (spki2, point) = kms::ecka_public_from_point(key.curve(), key.public_point()).unwrap();
    assert_eq!(spki2, spki);
    assert_eq!(point, key.public_point());
    for _ in 0..3 {
        let (peer, want) = peer_side(key.curve(), spki);
        let z = key.agree(&peer).unwrap();
        assert_eq!(z.as_slice(), want.as_slice(), "{key:?}");
        assert_eq!(z.len(), key.curve().coordinate_len());
        // A point off the curve, a truncated point, a point of the other curve: refused.
        let mut off = peer.clone();
        off[7] ^= 0x40;
        assert!(matches!(key.agree(&off), Err(Error::KeyAgreement { .. })));
        assert!(matches!(
            key.agree(&peer[..peer.len() - 1]),
            Err(Error::KeyAgreement { .. })
        ));
        let other = match key.curve() {
            EckaCurve::P256 => EckaCurve::P384,
            EckaCurve::P384 => EckaCurve::P256,
        };
        let other_spki = match other {
            EckaCurve::P256 => {
                let k = p256::SecretKey::try_generate().unwrap();
                p256::pkcs8::EncodePublicKey::to_public_key_der(&k.public_key()).unwrap()
            }
            EckaCurve::P384 => {
                let k = p384::SecretKey::try_generate().unwrap();
                p256::pkcs8::EncodePublicKey::to_public_key_der(&k.public_key()).unwrap()
            }
        };
        let (wrong_curve, _) = peer_side(other, other_spki.as_bytes());
        assert!(key.agree(&wrong_curve).is_err());
    }
    assert!(!format!("{key:?}").is_empty());
}

/// Creates a P-256 key through one store opened from `cfg`, then uses it through another.
fn create_and_reopen(cfg: &str, label: &str) {
    let spki = kms::open_agreement(cfg)
        .unwrap()
        .create_agreement_key(label, EckaCurve::P256)
        .unwrap();
    let key = kms::open_agreement(cfg)
        .unwrap()
        .agreement_key(label)
        .unwrap();
    exercise(key.as_ref(), &spki);
}

#[test]
fn software_keys_are_sealed_and_agree_on_both_curves() {
    let dir = tempfile::tempdir().unwrap();
    let (path, master_hex, store) = software_store_at(dir.path());
    let p256 = store.create_agreement_key("oce", EckaCurve::P256).unwrap();
    let p384 = store
        .create_agreement_key("oce-384", EckaCurve::P384)
        .unwrap();
    assert!(matches!(
        store.create_agreement_key("oce", EckaCurve::P256),
        Err(Error::AgreementKeyExists(_))
    ));
    assert!(matches!(
        store.agreement_key("none"),
        Err(Error::AgreementKeyNotFound(_))
    ));
    assert!(matches!(
        store.create_agreement_key("a b", EckaCurve::P256),
        Err(Error::BadSigningLabel { .. })
    ));
    assert_eq!(store.agreement_key_labels().unwrap(), ["oce", "oce-384"]);
    // Signing keys and key-agreement keys are separate name spaces.
    assert!(kms::SigningKeyStore::signing_key_labels(&store)
        .unwrap()
        .is_empty());
    let key = store.agreement_key("oce").unwrap();
    assert_eq!(key.curve(), EckaCurve::P256);
    assert!(format!("{key:?}").contains("redacted"));
    exercise(key.as_ref(), &p256);
    exercise(store.agreement_key("oce-384").unwrap().as_ref(), &p384);

    let text = std::fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["agreement_keys"].as_array().unwrap().len(), 2);
    assert_eq!(json["agreement_keys"][0]["algorithm"], "p256");

    // Another process opens it; master key rotation re-seals it.
    let mut again =
        SoftwareKeyStore::open(&path, MasterKey::from_hex(&master_hex).unwrap()).unwrap();
    exercise(again.agreement_key("oce").unwrap().as_ref(), &p256);
    let new = MasterKey::generate().unwrap();
    let new_hex = new.expose_hex();
    again.change_master_key(new).unwrap();
    let rotated = SoftwareKeyStore::open(&path, MasterKey::from_hex(&new_hex).unwrap()).unwrap();
    exercise(rotated.agreement_key("oce-384").unwrap().as_ref(), &p384);
    assert!(SoftwareKeyStore::open(&path, MasterKey::from_hex(&master_hex).unwrap()).is_err());
}

#[test]
fn software_key_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, master_hex, store) = software_store_at(dir.path());
    store.create_agreement_key("oce", EckaCurve::P256).unwrap();
    let other = store
        .create_agreement_key("other", EckaCurve::P256)
        .unwrap();
    kms::SigningKeyStore::create_signing_key(&store, "ca", kms::SigningAlgorithm::P256).unwrap();
    let edits: Vec<Edit> = vec![
        Box::new(move |j| j["agreement_keys"][0]["public"] = apdu::hex(&other).into()),
        Box::new(|j| j["agreement_keys"][0]["label"] = "oce2".into()),
        Box::new(|j| j["agreement_keys"][0]["created"] = "2020-01-01T00:00:00Z".into()),
        Box::new(|j| j["agreement_keys"][0]["algorithm"] = "p384".into()),
        Box::new(|j| {
            let s = j["agreement_keys"][1]["sealed"].clone();
            j["agreement_keys"][0]["sealed"] = s;
        }),
        // A sealed signing key cannot pass for a key-agreement key (different AAD).
        Box::new(|j| {
            let mut k = j["signing_keys"][0].clone();
            k["label"] = "oce".into();
            k["algorithm"] = "p256".into();
            j["agreement_keys"][0] = k;
        }),
    ];
    assert_edits_refused(&path, &master_hex, &edits, |e| {
        matches!(e, Error::AgreementKeyTampered { .. })
    });
}

#[test]
fn software_import_of_a_pkcs8_key() {
    use p256::pkcs8::EncodePrivateKey;
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    let k = p256::SecretKey::try_generate().unwrap();
    let der = k.to_pkcs8_der().unwrap();
    let spki = store
        .import_agreement_key("imported", EckaCurve::P256, der.as_bytes())
        .unwrap();
    assert_eq!(
        spki,
        p256::pkcs8::EncodePublicKey::to_public_key_der(&k.public_key())
            .unwrap()
            .as_bytes()
    );
    exercise(store.agreement_key("imported").unwrap().as_ref(), &spki);
    assert!(store
        .import_agreement_key("bad", EckaCurve::P384, der.as_bytes())
        .is_err());
}

#[test]
fn open_agreement_from_a_configuration_string() {
    let dir = tempfile::tempdir().unwrap();
    create_and_reopen(&software_config(dir.path(), "k.json"), "oce");
}

#[test]
fn pkcs11_key_derives_in_the_token_and_never_leaves_it() {
    let hsm = hsm_or_skip!();
    let store = hsm.store("cw-test", false);
    for (label, curve) in [
        ("ecka/p256", EckaCurve::P256),
        ("ecka/p384", EckaCurve::P384),
    ] {
        let spki = store.create_agreement_key(label, curve).unwrap();
        assert!(matches!(
            store.create_agreement_key(label, curve),
            Err(Error::AgreementKeyExists(_))
        ));
        let p = store.agreement_key_protection(label).unwrap();
        assert!(p.token && p.sensitive && p.always_sensitive && p.never_extractable);
        assert!(!p.extractable);
        assert!(
            !p.value_readable,
            "CKA_VALUE of the private key was readable"
        );
        let key = store.agreement_key(label).unwrap();
        assert_eq!(key.curve(), curve);
        exercise(key.as_ref(), &spki);
        // It keeps working after the store is gone.
        let store2 = hsm.store("cw-test", false);
        drop(store2);
        exercise(key.as_ref(), &spki);
    }
    let labels = store.agreement_key_labels().unwrap();
    assert!(labels.contains(&"ecka/p256".to_string()));
    // Signing keys do not see it.
    assert!(!kms::SigningKeyStore::signing_key_labels(&store)
        .unwrap()
        .iter()
        .any(|l| l.starts_with("ecka/")));
    assert!(matches!(
        store.agreement_key("ecka/none"),
        Err(Error::AgreementKeyNotFound(_))
    ));
}

#[test]
fn pkcs11_open_agreement_from_a_configuration_string() {
    let hsm = hsm_or_skip!();
    create_and_reopen(&hsm.config("cw-test", false), "ecka/cfg");
}
