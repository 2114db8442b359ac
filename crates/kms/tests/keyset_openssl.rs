//! Interoperability of the key set transport scheme with the `openssl` CLI (an independent
//! implementation of ECDH P-256, the X9.63 KDF and RFC 3394), both ways:
//!
//! * a [`WrappedKeySet`] made by our software and PKCS#11 stores is unwrapped by openssl
//!   (`pkeyutl -derive`, `kdf X963KDF`, `enc -id-aes256-wrap`) with the recipient's private
//!   key, following the module documentation byte for byte;
//! * a key set wrapped by openssl, with `SharedInfo` written out here from the
//!   documentation, is imported by our software and PKCS#11 stores.
//!
//! Skipped when openssl is missing unless `CARDWRIGHT_OPENSSL_TESTS=1`; the PKCS#11 half
//! also needs SoftHSM2 (skipped unless `CARDWRIGHT_HSM_TESTS=1`).

#[macro_use]
mod common;

use common::*;
use kms::{KeySetStore, KeyUsage, SoftwareKeyStore, TransportPublicKey, WrappedKeySet};
use scp::{Key, KeyKind};
use std::path::Path;
use std::process::Command;

fn openssl_available() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    let required = std::env::var("CARDWRIGHT_OPENSSL_TESTS").is_ok_and(|v| v == "1");
    assert!(
        found || !required,
        "CARDWRIGHT_OPENSSL_TESTS=1 but the openssl CLI cannot be run (install openssl)"
    );
    if !found {
        eprintln!("openssl not on PATH: openssl interoperability checks skipped");
    }
    found
}

/// Runs openssl in `dir`; its standard output.
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `SharedInfo_u` as the module documentation lays it out, written independently here.
fn shared_info(label: &str, kind: KeyKind, len: usize, q_e: &[u8], q_r: &[u8], u: u8) -> Vec<u8> {
    let mut si = b"CWKS".to_vec();
    si.push(1);
    si.push(label.len() as u8);
    si.extend_from_slice(label.as_bytes());
    si.push(if kind == KeyKind::Aes { 0x88 } else { 0x80 });
    si.push(len as u8);
    si.extend_from_slice(q_e);
    si.extend_from_slice(q_r);
    si.push(u);
    si
}

/// `KEK_u` with openssl from Z (a file in `dir`).
fn openssl_kek(dir: &Path, z: &[u8], info: &[u8]) -> String {
    let out = openssl(
        dir,
        &[
            "kdf",
            "-keylen",
            "32",
            "-kdfopt",
            "digest:SHA256",
            "-kdfopt",
            &format!("hexsecret:{}", apdu::hex(z)),
            "-kdfopt",
            &format!("hexinfo:{}", apdu::hex(info)),
            "X963KDF",
        ],
    );
    String::from_utf8(out).unwrap().trim().replace(':', "")
}

/// A software key store whose transport key `t` is a P-256 key made by openssl; the
/// private key's PEM file is `dir/recipient.pem`.
fn recipient_from_openssl(dir: &Path) -> (SoftwareKeyStore, TransportPublicKey) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "recipient.pem",
        ],
    );
    let der = openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "recipient.pem",
            "-outform",
            "DER",
        ],
    );
    let store = software_store(&dir.join("ap"));
    store
        .import_agreement_key("t", kms::EckaCurve::P256, &der)
        .unwrap();
    let public = store.transport_public_key("t").unwrap();
    (store, public)
}

/// openssl unwraps what `ci` wrapped for a recipient whose private key openssl holds.
fn openssl_unwraps(ci: &dyn KeySetStore, label: &str, dir: &Path) {
    std::fs::create_dir_all(dir.join("ap")).unwrap();
    let (_ap, recipient) = recipient_from_openssl(dir);
    for (i, (kind, len)) in [(KeyKind::Aes, 16), (KeyKind::Aes, 32), (KeyKind::Des3, 24)]
        .into_iter()
        .enumerate()
    {
        let label = format!("{label}-{i}");
        ci.generate_key_set(&label, kind, len).unwrap();
        let keys = ci.key_set(&label).unwrap();
        let w =
            WrappedKeySet::from_json(&ci.wrap_key_set_for(&label, &recipient).unwrap().to_json())
                .unwrap();
        let q_e = apdu::parse_hex(&w.ephemeral).unwrap();
        let q_r = recipient.to_sec1();
        std::fs::write(
            dir.join("ephemeral.pem"),
            TransportPublicKey::from_sec1(&q_e).unwrap().to_pem(),
        )
        .unwrap();
        let z = openssl(
            dir,
            &[
                "pkeyutl",
                "-derive",
                "-inkey",
                "recipient.pem",
                "-peerkey",
                "ephemeral.pem",
            ],
        );
        assert_eq!(z.len(), 32);
        let prefix = shared_info(&label, kind, len, &q_e, &q_r, 0);
        assert_eq!(
            w.shared_info,
            apdu::hex(&prefix[..prefix.len() - 1]),
            "the documented SharedInfo"
        );
        for (u, wk) in KeyUsage::ALL.into_iter().zip(&w.keys) {
            let kek = openssl_kek(dir, &z, &shared_info(&label, kind, len, &q_e, &q_r, u.id()));
            std::fs::write(
                dir.join("wrapped.bin"),
                apdu::parse_hex(&wk.wrapped).unwrap(),
            )
            .unwrap();
            let plain = openssl(
                dir,
                &[
                    "enc",
                    "-d",
                    "-id-aes256-wrap",
                    "-K",
                    &kek,
                    "-iv",
                    "A6A6A6A6A6A6A6A6",
                    "-in",
                    "wrapped.bin",
                ],
            );
            assert_eq!(plain.as_slice(), u.of(&keys).expose(), "{label} {u}");
            assert_eq!(wk.kcv, apdu::hex(&Key::new(kind, &plain).unwrap().kcv()));
        }
        assert!(ci.delete_key_set(&label).unwrap());
    }
}

/// openssl wraps chosen keys for `ap`'s transport key `transport`; `ap` imports them.
fn openssl_wraps(ap: &dyn KeySetStore, transport: &str, tag: &str, dir: &Path) {
    let recipient = ap.create_transport_key(transport).unwrap();
    std::fs::write(dir.join("recipient-pub.pem"), recipient.to_pem()).unwrap();
    let q_r = recipient.to_sec1();
    for (i, (kind, len)) in [(KeyKind::Aes, 16), (KeyKind::Aes, 24), (KeyKind::Des3, 16)]
        .into_iter()
        .enumerate()
    {
        let label = format!("from-openssl-{tag}-{i}");
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "eph.pem",
            ],
        );
        let spki = openssl(
            dir,
            &["pkey", "-in", "eph.pem", "-pubout", "-outform", "DER"],
        );
        let q_e = TransportPublicKey::from_spki_der(&spki).unwrap().to_sec1();
        let z = openssl(
            dir,
            &[
                "pkeyutl",
                "-derive",
                "-inkey",
                "eph.pem",
                "-peerkey",
                "recipient-pub.pem",
            ],
        );
        let mut keys = Vec::new();
        let mut entries = Vec::new();
        for u in KeyUsage::ALL {
            let bytes: Vec<u8> = (0..len as u8)
                .map(|b| b.wrapping_mul(29) ^ (u.id() * 0x41) ^ i as u8)
                .collect();
            let key = Key::new(kind, &bytes).unwrap();
            let kek = openssl_kek(dir, &z, &shared_info(&label, kind, len, &q_e, &q_r, u.id()));
            std::fs::write(dir.join("plain.bin"), &bytes).unwrap();
            let wrapped = openssl(
                dir,
                &[
                    "enc",
                    "-e",
                    "-id-aes256-wrap",
                    "-K",
                    &kek,
                    "-iv",
                    "A6A6A6A6A6A6A6A6",
                    "-in",
                    "plain.bin",
                ],
            );
            entries.push(serde_json::json!({
                "usage": u.name(),
                "kind": if kind == KeyKind::Aes { "AES" } else { "3DES" },
                "len": len,
                "kcv": apdu::hex(&key.kcv()),
                "wrapped": apdu::hex(&wrapped),
            }));
            keys.push(key);
        }
        let prefix = shared_info(&label, kind, len, &q_e, &q_r, 0);
        let doc = serde_json::json!({
            "format": "cardwright-wrapped-key-set/1",
            "label": label,
            "curve": "P-256",
            "recipient": apdu::hex(&q_r).to_lowercase(),
            "ephemeral": apdu::hex(&q_e),
            "kdf": "ANSI-X9.63-KDF-SHA-256",
            "wrap": "AES-256-KW",
            "shared_info": apdu::hex(&prefix[..prefix.len() - 1]),
            "keys": entries,
        });
        let w = WrappedKeySet::from_json(&doc.to_string()).unwrap();
        let info = ap.import_wrapped_key_set(&label, &w, transport).unwrap();
        assert_eq!(info.kcv, keys[0].kcv());
        let got = ap.key_set(&label).unwrap();
        for (u, want) in KeyUsage::ALL.into_iter().zip(&keys) {
            assert_eq!(u.of(&got).expose(), want.expose(), "{label} {u}");
        }
        assert!(ap.delete_key_set(&label).unwrap());
    }
}

#[test]
fn openssl_unwraps_what_the_software_store_wraps() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ci = software_store(dir.path());
    openssl_unwraps(&ci, "sw", dir.path());
}

#[test]
fn the_software_store_imports_what_openssl_wraps() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ap = software_store(dir.path());
    openssl_wraps(&ap, "t", "sw", dir.path());
}

#[test]
fn openssl_unwraps_what_the_token_wraps() {
    if !openssl_available() {
        return;
    }
    let hsm = hsm_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    openssl_unwraps(&hsm.store("cw-test", false), "p11", dir.path());
}

#[test]
fn the_token_imports_what_openssl_wraps() {
    if !openssl_available() {
        return;
    }
    let hsm = hsm_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    openssl_wraps(&hsm.store("cw-wrap", false), "t-openssl", "p11", dir.path());
}
