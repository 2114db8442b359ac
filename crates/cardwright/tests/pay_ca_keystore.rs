//! `cardwright serve --ca-keystore`: the CA key in the key store (software keystore encrypted
//! at rest, or SoftHSM2), only `ca.pem` in `--ca-dir`. A card enrols with `cardwright pay
//! enrol --sim`, and `openssl verify` checks that its certificate chains to the CA and that
//! the CRL is signed by it, before and after a restart.
//!
//! The SoftHSM2 test is skipped when SoftHSM2 is not installed, unless
//! `CARDWRIGHT_HSM_TESTS=1` (then it fails).

mod pay_support;
#[path = "common/softhsm.rs"]
mod softhsm;

use pay_support::*;
use softhsm::{HSM_PIN, SOFTHSM_MODULE};
use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(args: &[&str]) -> (bool, String) {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl on PATH");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

fn serve(dir: &Path, keystore: &str, envs: &[(&str, &str)]) -> Service {
    let ca_dir = dir.join("ca");
    let db = format!("sqlite:{}", dir.join("pay.db").display());
    let mut all = vec![("CARDWRIGHT_ADMIN_TOKEN", ADMIN_TOKEN)];
    all.extend_from_slice(envs);
    start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db,
            "--ca-dir",
            ca_dir.to_str().unwrap(),
            "--ca-keystore",
            keystore,
        ],
        &all,
    )
}

fn fetch(url: &str) -> Vec<u8> {
    ureq::get(url)
        .call()
        .unwrap()
        .into_body()
        .read_to_vec()
        .unwrap()
}

/// The DER of the certificate with this serial, from the server's SQLite store.
fn issued_certificate(dir: &Path, serial: &str) -> Vec<u8> {
    let conn = rusqlite::Connection::open(dir.join("pay.db")).unwrap();
    let mut stmt = conn.prepare("SELECT body FROM pki_certificates").unwrap();
    let bodies: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for body in bodies {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["serial"].as_str().unwrap().eq_ignore_ascii_case(serial) {
            let hex = v["certificate_der"].as_str().unwrap();
            return apdu::parse_hex(hex).unwrap();
        }
    }
    panic!("certificate {serial} not in the store");
}

/// Enrols a virtual card; returns the certificate serial.
fn enrol(server: &Service, name: &str) -> String {
    let card = card_file();
    let out = ok(
        &[
            "pay",
            "enrol",
            "--server",
            &server.url,
            "--sim",
            card.sim(),
            "--name",
            name,
            "--alg",
            "p256",
        ],
        "123456",
    );
    assert!(out.contains(&format!("enrolled: CN={name}")), "{out}");
    out.lines()
        .find_map(|l| l.strip_prefix("certificate serial: "))
        .expect("serial line")
        .to_string()
}

/// Checks with openssl that the certificate chains to the CA and the CRL is the CA's.
fn openssl_checks(dir: &Path, server: &Service, serial: &str) {
    let ca_pem = dir.join("ca").join("ca.pem");
    let served = fetch(&format!("{}/api/v1/ca.pem", server.url));
    assert_eq!(served, std::fs::read(&ca_pem).unwrap());
    let cert_der = dir.join(format!("{serial}.der"));
    std::fs::write(&cert_der, issued_certificate(dir, serial)).unwrap();
    let cert_pem = dir.join(format!("{serial}.pem"));
    let (ok, out) = openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        cert_der.to_str().unwrap(),
        "-out",
        cert_pem.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        ca_pem.to_str().unwrap(),
        "-purpose",
        "sslclient",
        cert_pem.to_str().unwrap(),
    ]);
    assert!(ok && out.contains(": OK"), "openssl verify: {out}");

    let crl = dir.join("crl.der");
    std::fs::write(&crl, fetch(&format!("{}/api/v1/crl", server.url))).unwrap();
    let (ok, out) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        crl.to_str().unwrap(),
        "-CAfile",
        ca_pem.to_str().unwrap(),
        "-noout",
    ]);
    assert!(ok && out.contains("verify OK"), "openssl crl: {out}");
    let crl_pem = dir.join("crl.pem");
    let (ok, out) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        crl.to_str().unwrap(),
        "-out",
        crl_pem.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        crl_pem.to_str().unwrap(),
        "-CAfile",
        ca_pem.to_str().unwrap(),
        cert_pem.to_str().unwrap(),
    ]);
    assert!(
        ok && out.contains(": OK"),
        "openssl verify -crl_check: {out}"
    );
}

/// Two starts on the same key store: the CA is made once, the key stays in the store, and
/// both runs issue certificates and CRLs openssl accepts.
fn two_runs(dir: &Path, keystore: &str, envs: &[(&str, &str)]) {
    let server = serve(dir, keystore, envs);
    let serial = enrol(&server, "Alice Example");
    openssl_checks(dir, &server, &serial);
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join("ca"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files,
        [dir.join("ca").join("ca.pem")],
        "only the certificate"
    );
    let first_ca = std::fs::read(dir.join("ca").join("ca.pem")).unwrap();
    drop(server);

    let server = serve(dir, keystore, envs);
    assert_eq!(
        fetch(&format!("{}/api/v1/ca.pem", server.url)),
        first_ca,
        "same CA after a restart"
    );
    let serial = enrol(&server, "Bob Example");
    openssl_checks(dir, &server, &serial);
}

#[test]
fn serve_with_the_ca_key_in_a_software_keystore() {
    let dir = tempfile::tempdir().unwrap();
    let master = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
    let keys = dir.path().join("ca-keys.json");
    let keystore = format!("file:{}", keys.display());
    two_runs(dir.path(), &keystore, &[("CARDWRIGHT_MASTER_KEY", master)]);
    // The key is sealed in the keystore file, not in the clear anywhere.
    let text = std::fs::read_to_string(&keys).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["signing_keys"][0]["label"], "ca");
    assert_eq!(json["signing_keys"][0]["algorithm"], "p256");
    // Without the master key the server does not start.
    let r = cardwright(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ca-dir",
            dir.path().join("ca").to_str().unwrap(),
            "--ca-keystore",
            &keystore,
        ],
        "",
    );
    assert!(!r.ok);
    assert!(r.stderr.contains("--ca-keystore"), "{}", r.stderr);
}

#[test]
fn serve_with_the_ca_key_in_softhsm2() {
    if !softhsm::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm::init_token(dir.path(), "cw-ca");
    let keystore = format!("pkcs11:{SOFTHSM_MODULE}?token=cw-ca&pin-env=CW_TEST_CA_PIN");
    let conf_s = conf.to_str().unwrap().to_string();
    two_runs(
        dir.path(),
        &keystore,
        &[("SOFTHSM2_CONF", &conf_s), ("CW_TEST_CA_PIN", HSM_PIN)],
    );
    // The token holds the CA key pair under `cw-ca:ca`: its private key cannot be read, and
    // its public key is the one in ca.pem. (No other test of this process uses PKCS#11, so
    // SoftHSM2 reads this configuration at its first C_Initialize.)
    std::env::set_var("SOFTHSM2_CONF", &conf);
    std::env::set_var("CW_TEST_CA_PIN", HSM_PIN);
    let kms::StoreConfig::Pkcs11(cfg) = keystore.parse::<kms::StoreConfig>().unwrap() else {
        unreachable!()
    };
    let store = kms::Pkcs11KeyStore::open(&cfg).unwrap();
    let p = store.signing_key_protection("ca").unwrap();
    assert!(p.token && p.sensitive && p.never_extractable, "{p:?}");
    assert!(!p.extractable && !p.value_readable, "{p:?}");
    let key = kms::SigningKeyStore::signing_key(&store, "ca").unwrap();
    let (ok, pubkey) = openssl(&[
        "x509",
        "-in",
        dir.path().join("ca").join("ca.pem").to_str().unwrap(),
        "-pubkey",
        "-noout",
    ]);
    assert!(ok, "{pubkey}");
    let b64: String = pubkey.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_eq!(
        b64,
        server::ca_files::base64_encode(key.public_key_spki()),
        "ca.pem certifies the key in the token"
    );
}
