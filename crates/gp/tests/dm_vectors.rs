//! Known-answer tests of Delegated Management tokens, receipts and DAP signatures against
//! bytes computed with the openssl CLI (`tests/vectors/dm/README.md`), and openssl
//! interoperability of the randomized schemes (RSA-PSS, ECDSA).

use std::path::{Path, PathBuf};
use std::process::Command;

use apdu::{hex, parse_hex};
use gp::commands::{Confirmation, Delete, Install};
use gp::dm::{
    DmSigningKey, DmVerifyingKey, ReceiptContext, ReceiptKey, Scheme, Signer, TokenInput,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/dm")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap()
}

fn hexfile(name: &str) -> Vec<u8> {
    parse_hex(read(name).trim()).unwrap()
}

fn input(key: &str) -> Vec<u8> {
    let text = read("inputs.txt");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap();
    parse_hex(line).unwrap()
}

fn key(name: &str) -> DmSigningKey {
    DmSigningKey::from_pkcs8(read(name).as_bytes()).unwrap()
}

fn load() -> Install {
    Install::ForLoad {
        load_file: "D07002CA44".parse().unwrap(),
        security_domain: Some("A000000151000000".parse().unwrap()),
        hash: input("lfdb_hash"),
        params: vec![],
        token: vec![],
    }
}

fn delete() -> Delete {
    Delete::object("D07002CA449001".parse().unwrap(), true)
}

#[test]
fn token_inputs_match_the_tables() {
    assert_eq!(
        hex(&load().token_input().unwrap()),
        hex(&input("load_token_input"))
    );
    assert_eq!(
        hex(&delete().token_input().unwrap()),
        hex(&input("delete_token_input"))
    );
}

#[test]
fn rsa1024_pkcs1_sha1_tokens_and_dap() {
    let k = key("token-rsa1024.pem");
    assert_eq!(k.scheme(), Scheme::RsaPkcs1Sha1);
    for (msg, file) in [
        (input("load_token_input"), "load_token_rsa1024.hex"),
        (input("delete_token_input"), "delete_token_rsa1024.hex"),
        (input("lfdb_hash"), "dap_rsa1024.hex"),
    ] {
        let sig = k.sign(&msg).unwrap();
        assert_eq!(hex(&sig), hex(&hexfile(file)), "{file}");
        let v = DmVerifyingKey::from_spki(read("token-rsa1024.pub.pem").as_bytes()).unwrap();
        v.verify(&msg, &sig).unwrap();
        let mut bad = sig.clone();
        bad[5] ^= 1;
        assert!(v.verify(&msg, &bad).is_err());
    }
}

#[test]
fn aes_cmac_tokens_and_receipt() {
    let k = DmSigningKey::aes(&hexfile("token-aes128.hex")).unwrap();
    assert_eq!(
        hex(&k.sign(&input("load_token_input")).unwrap()),
        hex(&hexfile("load_token_aes.hex"))
    );
    assert_eq!(
        hex(&k.sign(&input("delete_token_input")).unwrap()),
        hex(&hexfile("delete_token_aes.hex"))
    );
    let c = Confirmation {
        receipt: hexfile("receipt_aes.hex"),
        counter: 1,
        sd_unique_data: parse_hex("0102030405060708090A").unwrap(),
        token_identifier: None,
        token_data_digest: None,
    };
    let ctx = ReceiptContext::Delete {
        aid: "D07002CA449001".parse().unwrap(),
    };
    let ri = ctx.receipt_input(&c).unwrap();
    assert_eq!(hex(&ri), hex(&input("receipt_input")));
    let rk = ReceiptKey::aes(&hexfile("receipt-aes128.hex")).unwrap();
    rk.verify(&ri, &c.receipt).unwrap();
    // The same confirmation read back from a card's response verifies too.
    let back = Confirmation::parse(&c.to_bytes().unwrap())
        .unwrap()
        .unwrap();
    rk.verify(&ctx.receipt_input(&back).unwrap(), &back.receipt)
        .unwrap();
}

/// Whether the `openssl` CLI can be run (required when `CARDWRIGHT_OPENSSL_TESTS=1`).
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

fn openssl(args: &[&str], cwd: &Path) -> (bool, Vec<u8>) {
    let out = Command::new("openssl")
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), out.stdout)
}

#[test]
fn pss_and_ecdsa_interoperate_with_openssl_dgst() {
    if !openssl_available() {
        return;
    }
    let tmp = tempdir();
    let msg = input("load_token_input");
    std::fs::write(tmp.join("msg"), &msg).unwrap();
    let pem = |n: &str| dir().join(n).to_string_lossy().into_owned();

    // RSA-2048 PSS: ours verified by openssl, openssl's by ours.
    let k = key("token-rsa2048.pem");
    assert_eq!(k.scheme(), Scheme::RsaPssSha256);
    std::fs::write(tmp.join("sig"), k.sign(&msg).unwrap()).unwrap();
    let pss = [
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
        "-sigopt",
        "rsa_mgf1_md:sha256",
    ];
    let mut verify = vec!["dgst", "-sha256"];
    verify.extend(pss);
    let pubkey = pem("token-rsa2048.pub.pem");
    verify.extend(["-verify", &pubkey, "-signature", "sig", "msg"]);
    assert!(
        openssl(&verify, &tmp).0,
        "openssl rejects our RSA-PSS token"
    );
    let privkey = pem("token-rsa2048.pem");
    let mut sign = vec!["dgst", "-sha256"];
    sign.extend(pss);
    sign.extend(["-sign", &privkey, "msg"]);
    let (ok, sig) = openssl(&sign, &tmp);
    assert!(ok);
    k.verifying_key().verify(&msg, &sig).unwrap();

    // ECDSA P-256: r ‖ s on the card, DER for openssl.
    let k = key("token-p256.pem");
    let raw = k.sign(&msg).unwrap();
    let der = p256::ecdsa::Signature::from_slice(&raw).unwrap().to_der();
    std::fs::write(tmp.join("sig"), der.as_bytes()).unwrap();
    let pubkey = pem("token-p256.pub.pem");
    assert!(
        openssl(
            &[
                "dgst",
                "-sha256",
                "-verify",
                &pubkey,
                "-signature",
                "sig",
                "msg"
            ],
            &tmp
        )
        .0,
        "openssl rejects our ECDSA token"
    );
    let privkey = pem("token-p256.pem");
    let (ok, der) = openssl(&["dgst", "-sha256", "-sign", &privkey, "msg"], &tmp);
    assert!(ok);
    let raw = p256::ecdsa::Signature::from_der(&der).unwrap().to_bytes();
    k.verifying_key().verify(&msg, &raw).unwrap();

    // A DAP signature over the load file data block hash, checked by `openssl dgst -verify`.
    let hash = input("lfdb_hash");
    std::fs::write(tmp.join("hash"), &hash).unwrap();
    std::fs::write(
        tmp.join("sig"),
        key("token-rsa2048.pem").sign(&hash).unwrap(),
    )
    .unwrap();
    let pubkey = pem("token-rsa2048.pub.pem");
    let mut verify = vec!["dgst", "-sha256"];
    verify.extend(pss);
    verify.extend(["-verify", &pubkey, "-signature", "sig", "hash"]);
    assert!(
        openssl(&verify, &tmp).0,
        "openssl rejects our DAP signature"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("gp-dm-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
