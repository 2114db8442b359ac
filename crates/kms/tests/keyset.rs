//! SSD key sets in the key stores and their transport from one key store to another
//! (`kms::keyset`): known answers, round trips between every pair of backends (PKCS#11
//! ones skipped when SoftHSM2 is missing, unless `CARDWRIGHT_HSM_TESTS=1`), refusal of
//! every kind of tampering, label and delete semantics, redaction.

#[macro_use]
mod common;

use common::*;
use kms::keyset::x963_kdf_sha256;
use kms::{
    Error, KeySetStore, KeyUsage, MasterKey, SoftwareKeyStore, TransportPublicKey, WrappedKeySet,
};
use scp::{KeyKind, StaticKeys};
use std::sync::Arc;

/// NIST CAVS SP 800-135 `ansx963_2001.rsp`, SHA-256 (see the vectors file for the source).
#[test]
fn x963_kdf_matches_nist_cavs() {
    let text = include_str!("vectors/ansx963_sha256.txt");
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let z = apdu::parse_hex(f[0]).unwrap();
        let info = if f[1] == "-" {
            Vec::new()
        } else {
            apdu::parse_hex(f[1]).unwrap()
        };
        let want = apdu::parse_hex(f[2]).unwrap();
        let got = x963_kdf_sha256(&z, &info, want.len());
        assert_eq!(got.as_slice(), want.as_slice(), "{line}");
        n += 1;
    }
    assert_eq!(n, 10);
}

/// A software store in a fresh directory (kept alive by the returned guard).
fn software() -> (tempfile::TempDir, Arc<dyn KeySetStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KeySetStore> = Arc::new(software_store(dir.path()));
    (dir, store)
}

fn same_keys(a: &StaticKeys, b: &StaticKeys) {
    for u in KeyUsage::ALL {
        assert_eq!(u.of(a).expose(), u.of(b).expose(), "{u}");
        assert_eq!(u.of(a).kind(), u.of(b).kind());
    }
}

/// Generates a set in `from`, wraps it for `to`'s transport key, imports it into `to`:
/// the same keys on both sides; then both sides delete it.
fn round_trip(from: &dyn KeySetStore, to: &dyn KeySetStore, tag: &str) {
    let transport = format!("transport-{tag}");
    let recipient = to.create_transport_key(&transport).unwrap();
    assert_eq!(to.transport_public_key(&transport).unwrap(), recipient);
    // Through SPKI DER and PEM, as a CI would receive it.
    let recipient = TransportPublicKey::from_pem(&recipient.to_pem()).unwrap();
    let recipient = TransportPublicKey::from_spki_der(&recipient.to_spki_der()).unwrap();
    assert_eq!(
        TransportPublicKey::from_der_or_pem(recipient.to_pem().as_bytes()).unwrap(),
        TransportPublicKey::from_der_or_pem(&recipient.to_spki_der()).unwrap()
    );
    for (i, (kind, len)) in [(KeyKind::Aes, 16), (KeyKind::Aes, 32), (KeyKind::Des3, 16)]
        .into_iter()
        .enumerate()
    {
        let label = format!("ssd-{tag}-{i}");
        let info = from.generate_key_set(&label, kind, len).unwrap();
        assert_eq!((info.kind, info.len), (kind, len));
        let keys = from.key_set(&label).unwrap();
        assert_eq!(keys.enc.kcv(), info.kcv);
        assert_eq!(keys.kind(), Some(kind));

        let wrapped = from.wrap_key_set_for(&label, &recipient).unwrap();
        let json = wrapped.to_json();
        for u in KeyUsage::ALL {
            // Neither key bytes nor anything derived from them but the KCV in the document.
            assert!(!json.contains(&apdu::hex(u.of(&keys).expose())));
        }
        let wrapped = WrappedKeySet::from_json(&json).unwrap();
        assert_eq!(wrapped.recipient_key().unwrap(), recipient);
        assert_eq!(wrapped.describe().unwrap(), (kind, len, info.kcv));

        let imported_label = format!("initial-{tag}-{i}");
        let got = to
            .import_wrapped_key_set(&imported_label, &wrapped, &transport)
            .unwrap();
        assert_eq!((got.kind, got.len, got.kcv), (kind, len, info.kcv));
        assert_eq!(to.key_set_info(&imported_label).unwrap(), Some(got));
        same_keys(&to.key_set(&imported_label).unwrap(), &keys);

        // Two wraps of one set differ (fresh ephemeral key), both import.
        let again = from.wrap_key_set_for(&label, &recipient).unwrap();
        assert_ne!(again.ephemeral, wrapped.ephemeral);
        assert_ne!(again.keys[0].wrapped, wrapped.keys[0].wrapped);

        assert!(from.delete_key_set(&label).unwrap());
        assert!(to.delete_key_set(&imported_label).unwrap());
        assert!(!from.delete_key_set(&label).unwrap());
        assert!(matches!(
            from.key_set(&label),
            Err(Error::KeySetNotFound(_))
        ));
        assert_eq!(to.key_set_info(&imported_label).unwrap(), None);
    }
}

#[test]
fn software_to_software() {
    let (_a, ci) = software();
    let (_b, ap) = software();
    round_trip(ci.as_ref(), ap.as_ref(), "ss");
}

#[test]
fn key_sets_persist_survive_master_key_rotation_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let (path, master_hex, mut store) = software_store_at(dir.path());
    store.generate_key_set("b-set", KeyKind::Aes, 16).unwrap();
    let a = store.generate_key_set("a-set", KeyKind::Des3, 24).unwrap();
    let keys = store.key_set("a-set").unwrap();
    let labels: Vec<String> = store
        .list_key_sets()
        .unwrap()
        .into_iter()
        .map(|i| i.label)
        .collect();
    assert_eq!(labels, ["a-set", "b-set"]);

    // Another process sees it.
    let other = SoftwareKeyStore::open(&path, MasterKey::from_hex(&master_hex).unwrap()).unwrap();
    assert_eq!(other.key_set_info("a-set").unwrap(), Some(a.clone()));
    same_keys(&other.key_set("a-set").unwrap(), &keys);
    assert!(other.delete_key_set("b-set").unwrap());
    assert_eq!(store.list_key_sets().unwrap().len(), 1);

    let new = MasterKey::generate().unwrap();
    let new_hex = new.expose_hex().to_string();
    store.change_master_key(new).unwrap();
    let reopened = SoftwareKeyStore::open(&path, MasterKey::from_hex(&new_hex).unwrap()).unwrap();
    same_keys(&reopened.key_set("a-set").unwrap(), &keys);
    // The file holds no key in the clear.
    let file = std::fs::read_to_string(&path).unwrap();
    for u in KeyUsage::ALL {
        assert!(!file.contains(&apdu::hex(u.of(&keys).expose())));
    }
}

#[test]
fn edited_key_set_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, master_hex, store) = software_store_at(dir.path());
    store.generate_key_set("one", KeyKind::Aes, 16).unwrap();
    store.generate_key_set("two", KeyKind::Aes, 16).unwrap();
    drop(store);
    let field = |name: &'static str, value: serde_json::Value| -> Edit {
        Box::new(move |j| j["key_sets"][0][name] = value.clone())
    };
    let edits: Vec<Edit> = vec![
        field("label", "three".into()),
        field("kind", "3DES".into()),
        field("len", 24.into()),
        field("kcv", "000000".into()),
        field("created", "2020-01-01T00:00:00Z".into()),
        Box::new(|j| {
            let other = j["key_sets"][1]["sealed"].clone();
            j["key_sets"][0]["sealed"] = other;
        }),
        Box::new(|j| {
            let s = j["key_sets"][0]["sealed"].as_str().unwrap().to_string();
            let flipped = if s.ends_with('0') { "1" } else { "0" };
            j["key_sets"][0]["sealed"] = format!("{}{flipped}", &s[..s.len() - 1]).into();
        }),
        Box::new(|j| {
            let one = j["key_sets"][0].clone();
            j["key_sets"].as_array_mut().unwrap().push(one);
        }),
    ];
    assert_edits_refused(&path, &master_hex, &edits, |e| {
        matches!(
            e,
            Error::KeySetTampered { .. } | Error::Format { .. } | Error::BadKeySetLabel { .. }
        )
    });
}

#[test]
fn labels_exists_and_delete_semantics() {
    let (_d, store) = software();
    store.generate_key_set("x", KeyKind::Aes, 16).unwrap();
    let before = store.key_set("x").unwrap();
    assert!(matches!(
        store.generate_key_set("x", KeyKind::Aes, 16),
        Err(Error::KeySetExists(l)) if l == "x"
    ));
    same_keys(&store.key_set("x").unwrap(), &before);
    for bad in ["", "a:b", "a b", &"x".repeat(65)] {
        assert!(matches!(
            store.generate_key_set(bad, KeyKind::Aes, 16),
            Err(Error::BadKeySetLabel { .. })
        ));
    }
    assert!(matches!(
        store.generate_key_set("y", KeyKind::Aes, 20),
        Err(Error::BadKeyLength { .. })
    ));
    assert!(store.delete_key_set("x").unwrap());
    assert!(!store.delete_key_set("x").unwrap());
    assert!(!store.delete_key_set("never").unwrap());
    assert!(store.list_key_sets().unwrap().is_empty());
}

/// Every edit of a wrapped key set is refused with a clear error, and nothing is stored.
fn assert_tampering_refused(from: &dyn KeySetStore, to: &dyn KeySetStore, tag: &str) {
    let transport = format!("t-{tag}");
    let recipient = to.create_transport_key(&transport).unwrap();
    let other_transport = format!("o-{tag}");
    let other = to.create_transport_key(&other_transport).unwrap();
    let label = format!("tamper-{tag}");
    from.generate_key_set(&label, KeyKind::Aes, 16).unwrap();
    let good = from.wrap_key_set_for(&label, &recipient).unwrap();
    let target = format!("in-{tag}");

    type Case = (
        &'static str,
        Box<dyn Fn(&mut WrappedKeySet)>,
        fn(&Error) -> bool,
    );
    let flip = |hex: &str, at: usize| -> String {
        let mut b = apdu::parse_hex(hex).unwrap();
        b[at] ^= 0x01;
        apdu::hex(&b)
    };
    let bad_doc: fn(&Error) -> bool = |e| matches!(e, Error::BadWrappedKeySet(_));
    let unwrap_fails: fn(&Error) -> bool = |e| matches!(e, Error::KeySetUnwrap { .. });
    let other_point = apdu::hex(&other.to_sec1());
    let fresh_point = apdu::hex(
        &TransportPublicKey::from_spki_der(
            &from
                .create_transport_key(&format!("eph-{tag}"))
                .unwrap()
                .to_spki_der(),
        )
        .unwrap()
        .to_sec1(),
    );
    let cases: Vec<Case> = vec![
        (
            "format",
            Box::new(|w| w.format = "cardwright-wrapped-key-set/2".into()),
            bad_doc,
        ),
        ("curve", Box::new(|w| w.curve = "P-384".into()), bad_doc),
        ("kdf", Box::new(|w| w.kdf = "HKDF-SHA-256".into()), bad_doc),
        ("wrap", Box::new(|w| w.wrap = "AES-128-KW".into()), bad_doc),
        ("label", Box::new(|w| w.label = "other".into()), bad_doc),
        (
            "shared_info",
            Box::new(move |w| w.shared_info = flip(&w.shared_info.clone(), 5)),
            bad_doc,
        ),
        (
            "ephemeral not on the curve",
            Box::new(move |w| w.ephemeral = flip(&w.ephemeral.clone(), 40)),
            bad_doc,
        ),
        (
            "recipient",
            {
                let p = other_point.clone();
                Box::new(move |w| w.recipient = p.clone())
            },
            |e| matches!(e, Error::WrongTransportKey { .. }),
        ),
        ("key order", Box::new(|w| w.keys.swap(0, 1)), bad_doc),
        (
            "a key missing",
            Box::new(|w| {
                w.keys.pop();
            }),
            bad_doc,
        ),
        (
            "usage",
            Box::new(|w| w.keys[1].usage = "ENC".into()),
            bad_doc,
        ),
        (
            "kind",
            Box::new(|w| w.keys[0].kind = "3DES".into()),
            bad_doc,
        ),
        ("len", Box::new(|w| w.keys[2].len = 24), bad_doc),
        (
            "wrapped length",
            Box::new(|w| w.keys[2].wrapped.push_str("00")),
            bad_doc,
        ),
        (
            "wrapped hex",
            Box::new(|w| w.keys[2].wrapped.replace_range(0..1, "G")),
            bad_doc,
        ),
        ("kcv", Box::new(|w| w.keys[1].kcv = "ABCDEF".into()), |e| {
            matches!(e, Error::KeySetKcv { usage: "MAC", .. })
        }),
        (
            "kcv length",
            Box::new(|w| w.keys[1].kcv = "ABCD".into()),
            bad_doc,
        ),
        (
            "flipped bit in a wrapped key",
            Box::new(move |w| w.keys[2].wrapped = flip(&w.keys[2].wrapped.clone(), 11)),
            unwrap_fails,
        ),
        (
            "wrapped keys swapped (with their KCVs)",
            Box::new(|w| {
                let (a, b) = (w.keys[0].clone(), w.keys[1].clone());
                w.keys[0].wrapped = b.wrapped;
                w.keys[0].kcv = b.kcv;
                w.keys[1].wrapped = a.wrapped;
                w.keys[1].kcv = a.kcv;
            }),
            unwrap_fails,
        ),
        (
            "another ephemeral key, shared_info recomputed",
            {
                let p = fresh_point.clone();
                Box::new(move |w| {
                    let old = w.ephemeral.clone();
                    w.ephemeral = p.clone();
                    w.shared_info = w.shared_info.replace(&old, &p);
                })
            },
            unwrap_fails,
        ),
        (
            "another label, shared_info recomputed",
            Box::new(|w| {
                let old = format!("{:02X}{}", w.label.len(), apdu::hex(w.label.as_bytes()));
                w.label = format!("{}X", w.label);
                let new = format!("{:02X}{}", w.label.len(), apdu::hex(w.label.as_bytes()));
                w.shared_info = w.shared_info.replacen(&old, &new, 1);
            }),
            unwrap_fails,
        ),
    ];
    for (name, edit, refused) in &cases {
        let mut w = good.clone();
        edit(&mut w);
        let e = to
            .import_wrapped_key_set(&target, &w, &transport)
            .expect_err(name);
        assert!(refused(&e), "{name}: {e}");
        assert!(
            e.to_string().contains("nothing was stored") || matches!(e, Error::BadWrappedKeySet(_)),
            "{name}: {e}"
        );
        assert_eq!(to.key_set_info(&target).unwrap(), None, "{name}");
        // The JSON round trip refuses the structural edits already.
        if refused(&Error::BadWrappedKeySet(String::new())) {
            assert!(WrappedKeySet::from_json(&w.to_json()).is_err(), "{name}");
        }
    }
    // The right document with the wrong key of this store.
    let e = to
        .import_wrapped_key_set(&target, &good, &other_transport)
        .unwrap_err();
    assert!(matches!(e, Error::WrongTransportKey { .. }), "{e}");
    assert!(e.to_string().contains(&recipient.fingerprint()), "{e}");
    // A document re-targeted at the other key (recipient and shared_info edited) does not
    // unwrap under it.
    let mut retarget = good.clone();
    let (old, new) = (good.recipient.clone(), other_point.clone());
    retarget.recipient = new.clone();
    retarget.shared_info = retarget.shared_info.replace(&old, &new);
    let e = to
        .import_wrapped_key_set(&target, &retarget, &other_transport)
        .unwrap_err();
    assert!(matches!(e, Error::KeySetUnwrap { usage: "ENC", .. }), "{e}");
    assert_eq!(to.key_set_info(&target).unwrap(), None);
    assert!(matches!(
        to.import_wrapped_key_set(&target, &good, "no-such-key"),
        Err(Error::AgreementKeyNotFound(_))
    ));

    // The untouched document imports; a second import under the same label is refused.
    to.import_wrapped_key_set(&target, &good, &transport)
        .unwrap();
    let e = to
        .import_wrapped_key_set(&target, &good, &transport)
        .unwrap_err();
    assert!(matches!(e, Error::KeySetExists(_)), "{e}");
    same_keys(
        &to.key_set(&target).unwrap(),
        &from.key_set(&label).unwrap(),
    );
}

#[test]
fn software_tampering_is_refused() {
    let (_a, ci) = software();
    let (_b, ap) = software();
    assert_tampering_refused(ci.as_ref(), ap.as_ref(), "sw");
}

#[test]
fn json_form_and_debug_hide_secrets() {
    let (_a, ci) = software();
    let (_b, ap) = software();
    let recipient = ap.create_transport_key("t").unwrap();
    ci.generate_key_set("s", KeyKind::Aes, 16).unwrap();
    let keys = ci.key_set("s").unwrap();
    let w = ci.wrap_key_set_for("s", &recipient).unwrap();
    let v: serde_json::Value = serde_json::from_str(&w.to_json()).unwrap();
    assert_eq!(v["format"], "cardwright-wrapped-key-set/1");
    assert_eq!(v["curve"], "P-256");
    assert_eq!(v["kdf"], "ANSI-X9.63-KDF-SHA-256");
    assert_eq!(v["wrap"], "AES-256-KW");
    assert_eq!(v["recipient"], apdu::hex(&recipient.to_sec1()));
    assert_eq!(v["ephemeral"].as_str().unwrap().len(), 130);
    assert_eq!(v["keys"][0]["usage"], "ENC");
    assert_eq!(v["keys"][2]["usage"], "DEK");
    assert_eq!(v["keys"][1]["kcv"], apdu::hex(&keys.mac.kcv()));
    assert_eq!(v["keys"][1]["wrapped"].as_str().unwrap().len(), 48);
    // Unknown fields are refused.
    let mut extra = v.clone();
    extra["note"] = "x".into();
    assert!(matches!(
        WrappedKeySet::from_json(&extra.to_string()),
        Err(Error::BadWrappedKeySet(_))
    ));
    let dbg = format!("{w:?} {recipient:?} {:?}", ci.key_set_info("s").unwrap());
    assert!(!dbg.contains(&w.keys[0].wrapped), "{dbg}");
    for u in KeyUsage::ALL {
        assert!(!dbg.contains(&apdu::hex(u.of(&keys).expose())));
    }
    assert!(format!("{ci:?}").starts_with("SoftwareKeyStore"));
    assert!(recipient
        .to_pem()
        .starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert!(TransportPublicKey::from_pem(
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
    )
    .is_err());
    // A P-384 key-agreement key is no transport key.
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    kms::AgreementKeyStore::create_agreement_key(&store, "p384", kms::EckaCurve::P384).unwrap();
    assert!(store.transport_public_key("p384").is_err());
}

#[test]
fn open_key_sets_takes_the_kms_config_strings() {
    let dir = tempfile::tempdir().unwrap();
    let config = software_config(dir.path(), "keys.json");
    let store = kms::open_key_sets(&config).unwrap();
    store.generate_key_set("c", KeyKind::Aes, 24).unwrap();
    let again = kms::open_key_sets(&config).unwrap();
    assert_eq!(again.list_key_sets().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------
// PKCS#11 (SoftHSM2): the CI's token is `cw-test`, the AP's `cw-wrap`. Tests share the
// tokens, so each uses its own labels.

fn token(name: &str) -> Arc<dyn KeySetStore> {
    let hsm = hsm().expect("checked by hsm_or_skip");
    Arc::new(hsm.store(name, false))
}

#[test]
fn software_to_pkcs11() {
    let _hsm = hsm_or_skip!();
    let (_a, ci) = software();
    round_trip(ci.as_ref(), token("cw-wrap").as_ref(), "s2p");
}

#[test]
fn pkcs11_to_software() {
    let _hsm = hsm_or_skip!();
    let (_b, ap) = software();
    round_trip(token("cw-test").as_ref(), ap.as_ref(), "p2s");
}

#[test]
fn pkcs11_to_pkcs11() {
    let _hsm = hsm_or_skip!();
    round_trip(token("cw-test").as_ref(), token("cw-wrap").as_ref(), "p2p");
}

#[test]
fn pkcs11_tampering_is_refused() {
    let _hsm = hsm_or_skip!();
    let (_a, ci) = software();
    assert_tampering_refused(ci.as_ref(), token("cw-wrap").as_ref(), "p11");
    // Nothing half-made is left in the token: only the one good import.
    let ap = token("cw-wrap");
    let sets: Vec<String> = ap
        .list_key_sets()
        .unwrap()
        .into_iter()
        .map(|i| i.label)
        .filter(|l| l.ends_with("-p11"))
        .collect();
    assert_eq!(sets, ["in-p11"]);
}

#[test]
fn pkcs11_key_sets_are_sensitive_token_objects_and_the_kdf_place_is_known() {
    let hsm = hsm_or_skip!();
    let ci = hsm.store("cw-test", false);
    let info = ci.generate_key_set("prot-1", KeyKind::Aes, 16).unwrap();
    assert_eq!(ci.key_set_info("prot-1").unwrap(), Some(info.clone()));
    for p in ci.key_set_protection("prot-1").unwrap() {
        assert!(p.token && p.sensitive && p.extractable, "{p:?}");
        assert!(!p.value_readable, "{p:?}");
    }
    assert!(matches!(
        ci.generate_key_set("prot-1", KeyKind::Aes, 16),
        Err(Error::KeySetExists(_))
    ));
    // Listing the base keys of the token does not show key set objects.
    assert!(kms::KeyStore::list(&ci)
        .unwrap()
        .iter()
        .all(|k| !k.category.contains("prot-1")));
    assert!(ci.list_key_sets().unwrap().contains(&info));
    // SoftHSM2 2.6 refuses CKD_SHA256_KDF with CKM_ECDH1_DERIVE: the KDF runs in the host.
    let ap = hsm.store("cw-wrap", false);
    let t = ap.create_transport_key("prot-t").unwrap();
    let w = ci.wrap_key_set_for("prot-1", &t).unwrap();
    assert_eq!(ci.transport_kdf_in_token(), Some(false));
    ap.import_wrapped_key_set("prot-1-in", &w, "prot-t")
        .unwrap();
    same_keys(
        &ap.key_set("prot-1-in").unwrap(),
        &ci.key_set("prot-1").unwrap(),
    );
    for p in ap.key_set_protection("prot-1-in").unwrap() {
        assert!(p.token && p.sensitive && !p.value_readable, "{p:?}");
    }
    assert!(format!("{ap:?}").starts_with("Pkcs11KeyStore"));
    assert!(ci.delete_key_set("prot-1").unwrap());
    assert!(!ci.delete_key_set("prot-1").unwrap());
    assert!(ap.delete_key_set("prot-1-in").unwrap());
    assert!(matches!(
        ap.key_set("prot-1-in"),
        Err(Error::KeySetNotFound(_))
    ));
}

#[test]
fn pkcs11_open_key_sets_takes_the_kms_config_strings() {
    let hsm = hsm_or_skip!();
    let store = kms::open_key_sets(&hsm.config("cw-pin", false)).unwrap();
    store.generate_key_set("cfg-1", KeyKind::Des3, 24).unwrap();
    assert_eq!(store.key_set("cfg-1").unwrap().kind(), Some(KeyKind::Des3));
    assert!(store.delete_key_set("cfg-1").unwrap());
}

mod robustness {
    use super::*;
    use proptest::prelude::*;

    /// A real document to mutate.
    fn sample() -> String {
        use std::sync::OnceLock;
        static DOC: OnceLock<String> = OnceLock::new();
        DOC.get_or_init(|| {
            let (_a, ci) = software();
            let (_b, ap) = software();
            let t = ap.create_transport_key("t").unwrap();
            ci.generate_key_set("s", KeyKind::Aes, 16).unwrap();
            ci.wrap_key_set_for("s", &t).unwrap().to_json()
        })
        .clone()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Random text never makes `from_json` panic.
        #[test]
        fn from_json_never_panics_on_random_text(text in ".{0,400}") {
            let _ = WrappedKeySet::from_json(&text);
        }

        /// Nor does a real document with bytes overwritten, cut or repeated; what it
        /// accepts round-trips.
        #[test]
        fn from_json_never_panics_on_mutated_documents(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let mut bytes = sample().into_bytes();
            for (at, b) in edits {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            bytes.truncate(bytes.len() - cut % 8);
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(w) = WrappedKeySet::from_json(&text) {
                prop_assert_eq!(WrappedKeySet::from_json(&w.to_json()).unwrap(), w);
            }
        }
    }
}
