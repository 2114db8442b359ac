//! `cardwright package build|verify` as a provider and an outlet run them: the real binary,
//! the repository's CAP files, certificates made here with rcgen, signing keys as PKCS#8
//! files (P-256 PEM, RSA DER), in the software key store (P-256 and RSA, RSASSA-PSS) and in
//! SoftHSM2; refusals exit non-zero with their code; `openssl cms` both ways.
//!
//! The SoftHSM2 test is skipped when SoftHSM2 is missing unless `CARDWRIGHT_HSM_TESTS=1`,
//! the openssl one when openssl is missing unless `CARDWRIGHT_OPENSSL_TESTS=1`.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::softhsm::{self, HSM_PIN, SOFTHSM_MODULE};
use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, RevokedCertParams, SerialNumber,
    SignatureAlgorithm,
};
use spki::der::Decode;
use time::{Duration, OffsetDateTime};

const MASTER: &str = "6d6173746572206b657920666f72207061636b61676520636c69207465737473";

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A key given by its SPKI, for rcgen to certify.
struct Spki(Vec<u8>, Vec<u8>, &'static SignatureAlgorithm);

impl Spki {
    fn new(spki: Vec<u8>) -> Self {
        let parsed = spki::SubjectPublicKeyInfoRef::from_der(&spki).expect("SPKI");
        let raw = parsed.subject_public_key.raw_bytes().to_vec();
        let alg = if parsed.algorithm.oid.to_string() == "1.2.840.113549.1.1.1" {
            &rcgen::PKCS_RSA_SHA256
        } else {
            &rcgen::PKCS_ECDSA_P256_SHA256
        };
        Self(spki, raw, alg)
    }
}

impl PublicKeyData for Spki {
    fn subject_public_key_info(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn der_bytes(&self) -> &[u8] {
        &self.1
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.2
    }
}

/// The provider's root CA, in `dir/root.pem`.
struct Root {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Root {
    fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = OffsetDateTime::now_utc() - Duration::days(30);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        Self {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Certifies `spki` as a package signer (serial `serial`), written to `file`.
    fn certify(&self, spki: Vec<u8>, serial: u64, file: &str) -> PathBuf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Signer {serial}"));
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(365);
        let cert = params.signed_by(&Spki::new(spki), &self.issuer).unwrap();
        let path = self.dir.join(file);
        std::fs::write(&path, cert.pem()).unwrap();
        path
    }

    /// A CRL (PEM) revoking `serial`, written to `file`.
    fn crl(&self, serial: u64, file: &str) -> PathBuf {
        let now = OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: now - Duration::minutes(5),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap();
        let path = self.dir.join(file);
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }
}

/// The manifest template of the two repository CAP files, valid from `from_days` to
/// `until_days` from now.
fn template(dir: &Path, from_days: i64, until_days: i64) -> PathBuf {
    let at = |d: i64| {
        (OffsetDateTime::now_utc() + Duration::days(d))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let text = format!(
        r#"format = "cardwright-package/1"
provider = "Example Transit Ltd"
not_before = {}
not_after = "{}"

[[application]]
name = "hello"
title = "Hello STK"
version = "1.0"
privileges = ["card-lock"]

[[application.registration]]
id = "sign"
kind = "ec-p256"
generate = "card"
slot = 1
subject = "{{app}} card {{card}}"

[[application]]
name = "empty"
title = "Empty applet"
version = "2.2.1"
"#,
        at(from_days),
        at(until_days)
    );
    let path = dir.join("apps.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `package build` of both CAP files with `key`, the certificate `cert` and extra args.
fn build(dir: &Path, key: &str, cert: &Path, extra: &[&str], envs: &[(String, String)]) -> PathBuf {
    let out = dir.join("apps.cwpkg");
    let manifest = template(dir, -1, 30);
    let hello = format!("hello:{}", s(&cap("pysim_test_javacard_HelloSTK.cap")));
    let empty = format!("empty:{}", s(&cap("Empty_0102030405_8d5ac9e2_2.2.1.cap")));
    let mut args = vec![
        "package",
        "build",
        "--app",
        &hello,
        "--app",
        &empty,
        "--manifest",
        s(&manifest),
        "--sign-key",
        key,
        "--sign-cert",
        s(cert),
        "--out",
        s(&out),
    ];
    args.extend_from_slice(extra);
    let r = run_env(&args, envs, "");
    assert!(r.ok, "package build: {}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("applications hello, empty"),
        "{}",
        r.stdout
    );
    out
}

/// `package verify` that must refuse with `code`, in text and in JSON.
fn refused(args: &[&str], code: &str) {
    let e = fails(args, &format!("refused ({code})"));
    assert!(e.contains(code), "{e}");
    let mut json = args.to_vec();
    json.push("--json");
    let r = run(&json);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("JSON answer");
    assert_eq!(v["ok"], false);
    assert_eq!(v["code"], code);
    assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()));
}

#[test]
fn build_and_verify_with_pkcs8_keys() {
    for rsa in [false, true] {
        let dir = tempdir();
        let d = dir.path();
        let root = Root::new(d, "Provider Root");
        // P-256: PKCS#8 PEM from rcgen; RSA: PKCS#8 DER.
        let (key_file, spki) = if rsa {
            let key = package::SoftwareSigner::generate_rsa(2048).unwrap();
            std::fs::write(d.join("signer.der"), key.to_pkcs8_der().unwrap().as_slice()).unwrap();
            (d.join("signer.der"), key.public_key_der())
        } else {
            let key = KeyPair::generate().unwrap();
            std::fs::write(d.join("signer.pem"), key.serialize_pem()).unwrap();
            (d.join("signer.pem"), key.subject_public_key_info())
        };
        let cert = root.certify(spki, 42, "signer-cert.pem");
        let package = build(d, &format!("file:{}", s(&key_file)), &cert, &[], &[]);
        let root_pem = d.join("Provider Root.pem");
        let verify = [
            "package",
            "verify",
            s(&package),
            "--trust",
            s(&root_pem),
            "--grantable",
            "card-lock",
        ];
        let text = ok(&verify);
        let hello_size = std::fs::metadata(cap("pysim_test_javacard_HelloSTK.cap"))
            .unwrap()
            .len();
        for needle in [
            "verified (sha256 ".to_string(),
            "signer: CN=Signer 42 (trust anchor CN=Provider Root)".to_string(),
            "provider: Example Transit Ltd".to_string(),
            format!(
                "hello: \"Hello STK\" 1.0, {hello_size} bytes, package D07002CA44, applet D07002CA44900101, instance D07002CA44900101, privileges card-lock"
            ),
            "empty: \"Empty applet\" 2.2.1".to_string(),
        ] {
            assert!(text.contains(&needle), "{needle}:\n{text}");
        }
        let mut json = verify.to_vec();
        json.push("--json");
        let v: serde_json::Value = serde_json::from_str(ok(&json).trim()).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["signer"], "CN=Signer 42");
        assert_eq!(v["applications"][0]["name"], "hello");
        assert_eq!(v["applications"][0]["size"], hello_size);
        assert_eq!(v["applications"][1]["package_aid"], "0102030405");
        assert_eq!(v["package_sha256"].as_str().unwrap().len(), 64);
        // The signature algorithm follows the key.
        let bytes = std::fs::read(&package).unwrap();
        let policy = package::TrustPolicy {
            anchors: vec![package::TrustAnchor {
                certificate_der: pem_der(&root_pem),
                grantable: "card-lock".parse().unwrap(),
            }],
            crls: Vec::new(),
            now: OffsetDateTime::now_utc(),
        };
        let verified = package::verify(&bytes, &policy).unwrap();
        let pss_oid = [
            0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A,
        ];
        assert_eq!(
            verified.signature_der.windows(11).any(|w| w == pss_oid),
            rsa
        );
    }
}

fn pem_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read(path).unwrap();
    pem_rfc7468::decode_vec(&text).unwrap().1
}

#[test]
fn refusals_exit_non_zero_with_their_code() {
    let dir = tempdir();
    let d = dir.path();
    let root = Root::new(d, "Provider Root");
    let _other = Root::new(d, "Other Root");
    let key = KeyPair::generate().unwrap();
    std::fs::write(d.join("signer.pem"), key.serialize_pem()).unwrap();
    let cert = root.certify(key.subject_public_key_info(), 7, "signer-cert.pem");
    let package = build(
        d,
        &format!("file:{}", s(&d.join("signer.pem"))),
        &cert,
        &[],
        &[],
    );
    let p = s(&package);
    let root_pem = d.join("Provider Root.pem");
    let trust = s(&root_pem);
    // The manifest asks for card-lock; nothing is grantable by default.
    refused(
        &["package", "verify", p, "--trust", trust],
        "privilege_not_allowed",
    );
    let granted = [
        "package",
        "verify",
        p,
        "--trust",
        trust,
        "--grantable",
        "card-lock",
    ];
    ok(&granted);
    // Another root.
    let other_pem = d.join("Other Root.pem");
    refused(
        &[
            "package",
            "verify",
            p,
            "--trust",
            s(&other_pem),
            "--grantable",
            "card-lock",
        ],
        "unknown_signer",
    );
    // Checked in two years: the signer certificate has expired.
    refused(
        &[&granted[..], &["--at", "2099-01-01T00:00:00Z"]].concat(),
        "signer_expired",
    );
    // Revoked by a CRL the outlet knows.
    let crl = root.crl(7, "crl.pem");
    refused(
        &[&granted[..], &["--crl", s(&crl)]].concat(),
        "signer_revoked",
    );
    // Cut.
    let bytes = std::fs::read(&package).unwrap();
    let cut = d.join("cut.cwpkg");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    refused(
        &["package", "verify", s(&cut), "--trust", trust],
        "truncated",
    );
    // Edited: a load file replaced (same name, other bytes).
    let edited = d.join("edited.cwpkg");
    std::fs::write(
        &edited,
        replace_entry(
            &bytes,
            "load/empty.cap",
            &std::fs::read(cap("pysim_test_javacard_HelloSTK.cap")).unwrap(),
        ),
    )
    .unwrap();
    refused(
        &[
            "package",
            "verify",
            s(&edited),
            "--trust",
            trust,
            "--grantable",
            "card-lock",
        ],
        "hash_mismatch",
    );
    // A package outside its validity period.
    let manifest = template(d, -10, -1);
    let old = d.join("old.cwpkg");
    let hello = format!("hello:{}", s(&cap("pysim_test_javacard_HelloSTK.cap")));
    let empty = format!("empty:{}", s(&cap("Empty_0102030405_8d5ac9e2_2.2.1.cap")));
    ok(&[
        "package",
        "build",
        "--app",
        &hello,
        "--app",
        &empty,
        "--manifest",
        s(&manifest),
        "--sign-key",
        &format!("file:{}", s(&d.join("signer.pem"))),
        "--sign-cert",
        s(&cert),
        "--out",
        s(&old),
    ]);
    refused(
        &[
            "package",
            "verify",
            s(&old),
            "--trust",
            trust,
            "--grantable",
            "card-lock",
        ],
        "outside_validity",
    );
    // Build errors: an application without its CAP, a key that is not the certificate's.
    fails(
        &[
            "package",
            "build",
            "--app",
            &hello,
            "--manifest",
            s(&manifest),
            "--sign-key",
            &format!("file:{}", s(&d.join("signer.pem"))),
            "--sign-cert",
            s(&cert),
            "--out",
            s(&d.join("x.cwpkg")),
        ],
        "no load file for application \"empty\"",
    );
    let stranger = KeyPair::generate().unwrap();
    std::fs::write(d.join("stranger.pem"), stranger.serialize_pem()).unwrap();
    fails(
        &[
            "package",
            "build",
            "--app",
            &hello,
            "--app",
            &empty,
            "--manifest",
            s(&manifest),
            "--sign-key",
            &format!("file:{}", s(&d.join("stranger.pem"))),
            "--sign-cert",
            s(&cert),
            "--out",
            s(&d.join("x.cwpkg")),
        ],
        "does not match the signer certificate",
    );
    assert!(!d.join("x.cwpkg").exists(), "nothing written on failure");
}

/// `zip` with the entry `name` replaced by `bytes` (the others copied as they are).
fn replace_entry(zip: &[u8], name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let entry = f.name().unwrap().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        w.start_file(entry.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(if entry == name { bytes } else { &data })
            .unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn sign_with_software_key_store_keys() {
    let dir = tempdir();
    let d = dir.path();
    let root = Root::new(d, "Provider Root");
    let store = format!("file:{}", s(&d.join("keys.json")));
    let env = vec![("CARDWRIGHT_MASTER_KEY".to_string(), MASTER.to_string())];
    // A P-256 signing key made by the CLI (`keys ca-cert` creates it), and an RSA one.
    let ec_spki = store_signing_key_spki(&store, "pkg-ec", &d.join("ec.pem"), &env);
    let config: kms::StoreConfig = store.parse().unwrap();
    let signing = config
        .open_signing_with_master(Some(kms::MasterKey::from_hex(MASTER).unwrap()))
        .unwrap();
    let rsa_spki = signing
        .create_signing_key("pkg-rsa", kms::SigningAlgorithm::Rsa2048)
        .unwrap();
    drop(signing);
    for (label, spki, serial) in [("pkg-ec", ec_spki, 11), ("pkg-rsa", rsa_spki, 12)] {
        let cert = root.certify(spki, serial, &format!("{label}.pem"));
        let key = format!("{store}?label={label}");
        let package = build(d, &key, &cert, &[], &env);
        let text = verify_ok(d, &package);
        assert!(
            text.contains(&format!("signer: CN=Signer {serial}")),
            "{text}"
        );
    }
    // A label that is not there.
    let r = run_env(
        &[
            "package",
            "build",
            "--app",
            "x:y.cap",
            "--manifest",
            s(&template(d, -1, 1)),
            "--sign-key",
            &format!("{store}?label=nothing"),
            "--sign-cert",
            s(&d.join("pkg-ec.pem")),
            "--out",
            s(&d.join("x.cwpkg")),
        ],
        &env,
        "",
    );
    assert!(!r.ok);
}

#[test]
fn sign_with_a_softhsm_key() {
    if !softhsm::available() {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let conf = softhsm::init_token(d, "cw-pkg");
    let root = Root::new(d, "Provider Root");
    let store = format!("pkcs11:{SOFTHSM_MODULE}?token=cw-pkg&pin-env=CW_TEST_PKG_PIN");
    let env = vec![
        ("SOFTHSM2_CONF".to_string(), s(&conf).to_string()),
        ("CW_TEST_PKG_PIN".to_string(), HSM_PIN.to_string()),
    ];
    let spki = store_signing_key_spki(&store, "pkg", &d.join("hsm.pem"), &env);
    let cert = root.certify(spki, 21, "signer-cert.pem");
    let package = build(d, &format!("{store}&label=pkg"), &cert, &[], &env);
    let text = verify_ok(d, &package);
    assert!(text.contains("signer: CN=Signer 21"), "{text}");
}

/// `package verify` of `package` against the provider root in `d`, granting card lock: its
/// output, which must be a success.
fn verify_ok(d: &Path, package: &Path) -> String {
    ok(&[
        "package",
        "verify",
        s(package),
        "--trust",
        s(&d.join("Provider Root.pem")),
        "--grantable",
        "card-lock",
    ])
}

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

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?}:\n{text}");
    text
}

#[test]
fn openssl_cms_both_ways_through_the_cli() {
    if !openssl_available() {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let root = Root::new(d, "Provider Root");
    for (rsa, keyopt) in [
        (false, &[][..]),
        (true, &["-keyopt", "rsa_padding_mode:pss"][..]),
    ] {
        let alg: &[&str] = if rsa {
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
        } else {
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        };
        openssl(d, &[&["genpkey"][..], alg, &["-out", "key.pem"]].concat());
        let spki_pem = openssl(d, &["pkey", "-in", "key.pem", "-pubout"]);
        let spki = pem_rfc7468::decode_vec(spki_pem.as_bytes()).unwrap().1;
        let cert = root.certify(spki, 31, "signer-cert.pem");
        // (a) Ours, checked by openssl.
        let package = build(
            d,
            &format!("file:{}", s(&d.join("key.pem"))),
            &cert,
            &[],
            &[],
        );
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&package).unwrap()).unwrap();
        for name in ["manifest.toml", "manifest.p7s"] {
            let mut data = Vec::new();
            archive
                .by_name(name)
                .unwrap()
                .read_to_end(&mut data)
                .unwrap();
            std::fs::write(d.join(name), data).unwrap();
        }
        let text = openssl(
            d,
            &[
                "cms",
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-in",
                "manifest.p7s",
                "-content",
                "manifest.toml",
                "-CAfile",
                "Provider Root.pem",
                "-purpose",
                "any",
                "-out",
                "/dev/null",
            ],
        );
        assert!(text.contains("Verification successful"), "{text}");
        // (b) openssl signs the same manifest again; we verify the package it makes.
        openssl(
            d,
            &[
                &[
                    "cms",
                    "-sign",
                    "-binary",
                    "-md",
                    "sha256",
                    "-outform",
                    "DER",
                    "-signer",
                    "signer-cert.pem",
                    "-inkey",
                    "key.pem",
                    "-in",
                    "manifest.toml",
                    "-out",
                    "manifest.p7s",
                ][..],
                keyopt,
            ]
            .concat(),
        );
        let theirs = d.join("openssl.cwpkg");
        let bytes = std::fs::read(&package).unwrap();
        std::fs::write(
            &theirs,
            replace_entry(
                &bytes,
                "manifest.p7s",
                &std::fs::read(d.join("manifest.p7s")).unwrap(),
            ),
        )
        .unwrap();
        let text = verify_ok(d, &theirs);
        assert!(text.contains("signer: CN=Signer 31"), "{text}");
        assert_ne!(
            std::fs::read(&theirs).unwrap(),
            bytes,
            "openssl's signature differs"
        );
    }
}

/// A P-256 signing key made in the key store `store` under `label` by the CLI (`keys
/// ca-cert` creates it and writes its self-signed certificate to `out`): its public key.
fn store_signing_key_spki(
    store: &str,
    label: &str,
    out: &Path,
    env: &[(String, String)],
) -> Vec<u8> {
    let r = run_env(
        &[
            "keys",
            "--keystore",
            store,
            "ca-cert",
            "--ca",
            label,
            "--out",
            s(out),
        ],
        env,
        "",
    );
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    pki::Certificate::from_der(&pem_der(out))
        .unwrap()
        .public_key()
        .unwrap()
        .to_spki_der()
}
