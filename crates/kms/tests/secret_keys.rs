//! Secret keys by label (`kms::SecretKeyStore`) in both backends: known answers through
//! imported keys (NIST SP 800-38B / RFC 4493 AES-CMAC, RFC 4231 HMAC-SHA256), the keys'
//! protection, and `wrap_for_card` against independent AES-CBC / 3DES-ECB (RustCrypto
//! block ciphers driven here) and against a card's secure channel session. The PKCS#11
//! tests run on SoftHSM2 and are skipped without it (unless `CARDWRIGHT_HSM_TESTS=1`).

#[macro_use]
mod common;

use apdu::Response;
use cipher::{BlockCipherEncrypt, KeyInit};
use common::*;
use kms::{Error, Key, KeyKind, SecretKeyKind, SecretKeyStore};
use scp::{CardAuth, CardSession, HostAuth, HostSession, InitUpdateResponse, Protocol};
use scp::{SecurityLevel, StaticKeys};

/// (key, message, tag) from `vectors/aes_cmac.txt`.
fn cmac_vectors() -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    include_str!("vectors/aes_cmac.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let m = if f[1] == "-" { "" } else { f[1] };
            let h = |s: &str| apdu::parse_hex(s).unwrap();
            (h(f[0]), h(m), h(f[2]))
        })
        .collect()
}

/// An RFC 4231 case: (case, key, data, tag prefix).
type HmacCase = (String, Vec<u8>, Vec<u8>, Vec<u8>);

/// The cases of `vectors/hmac_sha256.txt`.
fn hmac_vectors() -> Vec<HmacCase> {
    include_str!("vectors/hmac_sha256.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let h = |s: &str| apdu::parse_hex(s).unwrap();
            (f[0].to_string(), h(f[1]), h(f[2]), h(f[3]))
        })
        .collect()
}

/// Every known answer through keys imported under `prefix`.
fn known_answers(store: &dyn SecretKeyStore, prefix: &str) {
    let cmac = cmac_vectors();
    assert_eq!(cmac.len(), 8);
    for (i, (key, m, tag)) in cmac.iter().enumerate() {
        let kind = match key.len() {
            16 => SecretKeyKind::Aes128,
            _ => SecretKeyKind::Aes256,
        };
        let label = format!("{prefix}cmac-{i}");
        let info = store.import(&label, kind, key).unwrap();
        assert_eq!(info.kcv, Key::aes(key).unwrap().kcv(), "GP KCV of {label}");
        assert_eq!(store.cmac(&label, m).unwrap().to_vec(), *tag, "{label}");
        assert!(store.delete(&label).unwrap());
    }
    // RFC 4231's cases whose keys a store takes (at least 32 bytes: 6 and 7; the others
    // run against the software HMAC in the crate's unit tests).
    let hmac: Vec<_> = hmac_vectors()
        .into_iter()
        .filter(|(_, key, _, _)| kms::HMAC_IMPORT_LEN.contains(&key.len()))
        .collect();
    assert_eq!(hmac.len(), 2);
    for (case, key, data, tag) in &hmac {
        let label = format!("{prefix}hmac-{case}");
        store
            .import(&label, SecretKeyKind::HmacSha256, key)
            .unwrap();
        let got = store.hmac_sha256(&label, data).unwrap();
        assert_eq!(&got[..tag.len()], tag.as_slice(), "RFC 4231 case {case}");
        assert!(store.delete(&label).unwrap());
    }
}

/// AES-CBC with a zero IV, block by block with the RustCrypto AES cipher (independent of
/// `scp`'s code).
fn aes_cbc_zero_iv(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut chain = [0u8; 16];
    let mut out = Vec::new();
    for block in data.chunks(16) {
        let mut b = [0u8; 16];
        for (i, x) in block.iter().enumerate() {
            b[i] = x ^ chain[i];
        }
        let mut ga = b.into();
        match key.len() {
            16 => aes::Aes128::new_from_slice(key)
                .unwrap()
                .encrypt_block(&mut ga),
            _ => aes::Aes256::new_from_slice(key)
                .unwrap()
                .encrypt_block(&mut ga),
        }
        chain.copy_from_slice(&ga);
        out.extend_from_slice(&ga);
    }
    out
}

/// Two-key 3DES in ECB, with the RustCrypto DES cipher.
fn tdes2_ecb(key: &[u8], data: &[u8]) -> Vec<u8> {
    let c = des::TdesEde2::new_from_slice(key).unwrap();
    let mut out = Vec::new();
    for block in data.chunks(8) {
        let mut ga: [u8; 8] = block.try_into().unwrap();
        let mut g = ga.into();
        c.encrypt_block(&mut g);
        ga.copy_from_slice(&g);
        out.extend_from_slice(&ga);
    }
    out
}

/// An open session pair (host, card) with `keys`.
fn channel(keys: &StaticKeys, protocol: Protocol) -> (HostSession, CardSession) {
    let aid = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00];
    let hc = scp::random_challenge(8).unwrap();
    let (card_auth, data) = CardAuth::new(keys, protocol, 0x30, [7; 10], 1, &hc, &aid).unwrap();
    let iu = InitUpdateResponse::parse(&data).unwrap();
    let auth = HostAuth::new(keys, &hc, &iu, SecurityLevel(0x03), protocol.i()).unwrap();
    let card = card_auth
        .external_authenticate(&auth.external_authenticate())
        .unwrap();
    (auth.finish(&Response::ok(vec![])).unwrap(), card)
}

fn scp02_keys() -> StaticKeys {
    StaticKeys {
        enc: Key::des3(&[0x40; 16]).unwrap(),
        mac: Key::des3(&[0x41; 16]).unwrap(),
        dek: Key::des3(&[0x42; 16]).unwrap(),
    }
}

fn scp03_keys() -> StaticKeys {
    StaticKeys {
        enc: Key::aes(&[0x40; 16]).unwrap(),
        mac: Key::aes(&[0x41; 16]).unwrap(),
        dek: Key::aes(&[0x42; 16]).unwrap(),
    }
}

/// `wrap_for_card` of an imported key gives the independent cipher's bytes for an AES and
/// a 3DES DEK; a generated key, wrapped under a real session's DEK, is decrypted by the
/// card side to a key with the store's KCV and the store's CMAC.
fn wraps_for_cards(store: &dyn SecretKeyStore, prefix: &str) {
    let value = apdu::parse_hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
        .unwrap();
    let label = format!("{prefix}wrap-import");
    store.import(&label, SecretKeyKind::Aes256, &value).unwrap();
    let aes_dek = Key::aes(&[0x42; 16]).unwrap();
    assert_eq!(
        store.wrap_for_card(&label, &aes_dek).unwrap(),
        aes_cbc_zero_iv(aes_dek.expose(), &value)
    );
    let des_dek = Key::des3(&[0x45; 16]).unwrap();
    assert_eq!(
        store.wrap_for_card(&label, &des_dek).unwrap(),
        tdes2_ecb(des_dek.expose(), &value)
    );
    store.delete(&label).unwrap();

    for (keys, protocol, kind) in [
        (
            scp03_keys(),
            Protocol::Scp03 { i: 0x70 },
            SecretKeyKind::Aes128,
        ),
        (
            scp03_keys(),
            Protocol::Scp03 { i: 0x70 },
            SecretKeyKind::Aes256,
        ),
        (
            scp02_keys(),
            Protocol::Scp02 { i: 0x55 },
            SecretKeyKind::Aes128,
        ),
    ] {
        let label = format!("{prefix}reg-{}", kind.name());
        let info = store.generate(&label, kind).unwrap();
        let (host, card) = channel(&keys, protocol);
        let wrapped = store
            .wrap_for_card(&label, &host.data_encryption_key().unwrap())
            .unwrap();
        assert_eq!(wrapped.len(), kind.key_len());
        let clear = card.decrypt_secret(&wrapped).unwrap();
        let key = Key::aes(&clear).unwrap();
        assert_eq!(key.kcv(), info.kcv, "{protocol:?} {kind}");
        let m = b"registration challenge";
        assert_eq!(store.cmac(&label, m).unwrap(), independent_cmac(&clear, m));
        store.delete(&label).unwrap();
    }
}

/// AES-CMAC with the RustCrypto `cmac` crate.
fn independent_cmac(key: &[u8], m: &[u8]) -> [u8; 16] {
    use cmac::Mac;
    let tag = match key.len() {
        16 => {
            let mut c = <cmac::Cmac<aes::Aes128> as KeyInit>::new_from_slice(key).unwrap();
            c.update(m);
            c.finalize().into_bytes()
        }
        _ => {
            let mut c = <cmac::Cmac<aes::Aes256> as KeyInit>::new_from_slice(key).unwrap();
            c.update(m);
            c.finalize().into_bytes()
        }
    };
    tag.into()
}

/// Labels, duplicates, kinds, listing and deleting.
fn management(store: &dyn SecretKeyStore, prefix: &str) {
    let a = format!("{prefix}m/a");
    let b = format!("{prefix}m/b");
    let mac = format!("{prefix}m/db-mac");
    let ia = store.generate(&a, SecretKeyKind::Aes128).unwrap();
    let ib = store.generate(&b, SecretKeyKind::Aes256).unwrap();
    let im = store.generate(&mac, SecretKeyKind::HmacSha256).unwrap();
    assert_ne!(ia.kcv, ib.kcv);
    assert!(matches!(
        store.generate(&a, SecretKeyKind::Aes128),
        Err(Error::SecretKeyExists(_))
    ));
    assert!(matches!(
        store.import(&a, SecretKeyKind::Aes128, &[1; 16]),
        Err(Error::SecretKeyExists(_))
    ));
    assert_eq!(store.info(&a).unwrap(), Some(ia.clone()));
    assert_eq!(
        store.list(&format!("{prefix}m/")).unwrap(),
        vec![ia.clone(), ib.clone(), im.clone()]
    );
    assert_eq!(store.list(&format!("{prefix}m/d")).unwrap(), vec![im]);
    // What a kind does not do.
    assert!(matches!(
        store.cmac(&mac, b"x"),
        Err(Error::SecretKeyUse { .. })
    ));
    assert!(matches!(
        store.hmac_sha256(&a, b"x"),
        Err(Error::SecretKeyUse { .. })
    ));
    assert!(matches!(
        store.wrap_for_card(&mac, &Key::aes(&[1; 16]).unwrap()),
        Err(Error::SecretKeyUse { .. })
    ));
    // Two HMACs with one key agree; another key differs.
    assert_eq!(
        store.hmac_sha256(&mac, b"row").unwrap(),
        store.hmac_sha256(&mac, b"row").unwrap()
    );
    // Bad input: a clear error, nothing stored.
    for bad in ["", "a:b", "with space"] {
        assert!(matches!(
            store.generate(bad, SecretKeyKind::Aes128),
            Err(Error::BadObjectLabel { .. })
        ));
    }
    let short = format!("{prefix}m/short");
    assert!(matches!(
        store.import(&short, SecretKeyKind::Aes128, &[1; 15]),
        Err(Error::BadKeyLength { .. })
    ));
    assert!(matches!(
        store.import(&short, SecretKeyKind::HmacSha256, &[0x0b; 20]),
        Err(Error::BadKeyLength { .. })
    ));
    assert_eq!(store.info(&short).unwrap(), None);
    assert!(matches!(
        store.cmac(&short, b"x"),
        Err(Error::SecretKeyNotFound(_))
    ));
    for l in [&a, &b, &mac] {
        assert!(store.delete(l).unwrap());
        assert!(!store.delete(l).unwrap());
    }
    assert!(store.list(&format!("{prefix}m/")).unwrap().is_empty());
}

#[test]
fn software_known_answers_wrapping_and_management() {
    let dir = tempfile::tempdir().unwrap();
    let store = software_store(dir.path());
    known_answers(&store, "");
    wraps_for_cards(&store, "");
    management(&store, "");
}

#[test]
fn software_file_is_sealed_and_survives_master_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (path, master_hex, mut store) = software_store_at(dir.path());
    let info = store
        .import("outlet/db-mac", SecretKeyKind::HmacSha256, &[0x5C; 32])
        .unwrap();
    let tag = store.hmac_sha256("outlet/db-mac", b"row 1").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&apdu::hex(&[0x5C; 32])), "key in the clear");
    assert!(!format!("{store:?}").contains("5C5C"), "key in Debug");
    // Every field is authenticated.
    let edits: Vec<Edit> = vec![
        Box::new(|j| j["secret_keys"][0]["label"] = "outlet/other".into()),
        Box::new(|j| j["secret_keys"][0]["kind"] = "AES-256".into()),
        Box::new(|j| j["secret_keys"][0]["kcv"] = "000000".into()),
        Box::new(|j| j["secret_keys"][0]["created"] = "2020-01-01T00:00:00Z".into()),
        Box::new(|j| {
            let s = j["secret_keys"][0]["sealed"].as_str().unwrap().to_string();
            let flipped = format!(
                "{}{}",
                &s[..s.len() - 1],
                if s.ends_with('0') { "1" } else { "0" }
            );
            j["secret_keys"][0]["sealed"] = flipped.into();
        }),
    ];
    assert_edits_refused(&path, &master_hex, &edits, |e| {
        matches!(e, Error::SecretKeyTampered { .. } | Error::Format { .. })
    });
    store
        .change_master_key(kms::MasterKey::generate().unwrap())
        .unwrap();
    assert_eq!(store.info("outlet/db-mac").unwrap(), Some(info));
    assert_eq!(store.hmac_sha256("outlet/db-mac", b"row 1").unwrap(), tag);
}

#[test]
fn opened_from_a_configuration_string() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = software_config(dir.path(), "keys.json");
    let store = kms::open_secret_keys(&cfg).unwrap();
    let info = store.generate("k", SecretKeyKind::Aes128).unwrap();
    let again = kms::open_secret_keys(&cfg).unwrap();
    assert_eq!(again.info("k").unwrap(), Some(info));
}

#[test]
fn pkcs11_known_answers_through_imported_keys() {
    let hsm = hsm_or_skip!();
    let store = hsm.store("cw-test", false);
    known_answers(&store, "sk-kat/");
}

#[test]
fn pkcs11_wraps_for_cards_and_agrees_with_software() {
    let hsm = hsm_or_skip!();
    let store = hsm.store("cw-test", false);
    // What the module documentation says of SoftHSM2 2.6: AES-CBC wrapping in the token
    // (SCP03/SCP11), 3DES-ECB in the host (SCP02).
    assert!(store.card_wrap_in_token(KeyKind::Aes).unwrap());
    assert!(!store.card_wrap_in_token(KeyKind::Des3).unwrap());
    wraps_for_cards(&store, "sk-wrap/");
    // The same imported key gives the same bytes in both backends.
    let dir = tempfile::tempdir().unwrap();
    let sw = software_store(dir.path());
    let value = [0x17; 16];
    store
        .import("sk-agree/k", SecretKeyKind::Aes128, &value)
        .unwrap();
    sw.import("sk-agree/k", SecretKeyKind::Aes128, &value)
        .unwrap();
    let dek = Key::aes(&[0x33; 32]).unwrap();
    assert_eq!(
        store.wrap_for_card("sk-agree/k", &dek).unwrap(),
        sw.wrap_for_card("sk-agree/k", &dek).unwrap()
    );
    assert_eq!(
        store.cmac("sk-agree/k", b"m").unwrap(),
        sw.cmac("sk-agree/k", b"m").unwrap()
    );
    store.delete("sk-agree/k").unwrap();
}

#[test]
fn pkcs11_management_and_protection() {
    let hsm = hsm_or_skip!();
    let store = hsm.store("cw-test", false);
    management(&store, "sk-mgmt/");
    store
        .generate("sk-prot/aes", SecretKeyKind::Aes128)
        .unwrap();
    store
        .generate("sk-prot/mac", SecretKeyKind::HmacSha256)
        .unwrap();
    let aes = store.secret_key_protection("sk-prot/aes").unwrap();
    assert!(
        aes.token && aes.sensitive && aes.always_sensitive,
        "{aes:?}"
    );
    assert!(aes.extractable, "AES keys are wrapped for cards: {aes:?}");
    assert!(!aes.value_readable, "{aes:?}");
    let mac = store.secret_key_protection("sk-prot/mac").unwrap();
    assert!(mac.token && mac.sensitive && !mac.extractable, "{mac:?}");
    assert!(mac.never_extractable && !mac.value_readable, "{mac:?}");
    // Reopened, the keys are still there (token objects).
    let again = hsm.store("cw-test", false);
    assert_eq!(
        SecretKeyStore::list(&again, "sk-prot/")
            .unwrap()
            .iter()
            .map(|i| i.kind)
            .collect::<Vec<_>>(),
        vec![SecretKeyKind::Aes128, SecretKeyKind::HmacSha256]
    );
    store.delete("sk-prot/aes").unwrap();
    store.delete("sk-prot/mac").unwrap();
}
