//! Interoperability of `manifest.p7s` with the `openssl` CLI (an independent CMS and X.509
//! implementation), both ways, for ECDSA P-256 and RSASSA-PSS signers:
//!
//! * (a) a package we build: `openssl cms -verify -binary -inform DER -in manifest.p7s
//!   -content manifest.toml -CAfile root.pem -purpose any` accepts its signature;
//! * (b) a `manifest.p7s` made by `openssl cms -sign -binary -md sha256 -outform DER`
//!   (`-keyopt rsa_padding_mode:pss` for RSA, with openssl's own salt length), zipped here
//!   with the manifest and the CAP files, verifies with `package::verify`; so does one whose
//!   intermediate CA certificate openssl signed with RSASSA-PSS; and a CRL made by
//!   `openssl ca -gencrl` revokes the signer (in the policy, and inside a package).
//!
//! The keys and certificates are made by openssl in a temporary directory. Skipped when
//! openssl is missing unless `CARDWRIGHT_OPENSSL_TESTS=1` (then it fails).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use package::{Manifest, SoftwareSigner, TrustAnchor, TrustPolicy};
use sha2::Digest;

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

/// Runs openssl in `dir`; its output (stdout then stderr) and whether it succeeded.
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    let (ok, text) = openssl(dir, args);
    assert!(ok, "openssl {args:?}:\n{text}");
    text
}

const EXTENSIONS: &str = "\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[signer]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// An openssl PKI in `dir`: `root.pem`, `inter.pem` (signed with PSS when `pss_inter`, the
/// root being RSA then), `signer.pem` and `signer.key` (P-256 or RSA-2048, PKCS#8 PEM).
fn openssl_pki(dir: &Path, signer: KeyType, pss_inter: bool) {
    std::fs::write(dir.join("ext.cnf"), EXTENSIONS).unwrap();
    let genkey = |file: &str, rsa: bool| {
        let alg: &[&str] = if rsa {
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
        } else {
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        };
        let mut args = vec!["genpkey"];
        args.extend_from_slice(alg);
        args.extend_from_slice(&["-out", file]);
        openssl_ok(dir, &args);
    };
    genkey("root.key", pss_inter);
    genkey("inter.key", false);
    genkey("signer.key", signer == KeyType::Rsa);
    openssl_ok(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-config",
            "ext.cnf",
            "-extensions",
            "ca",
            "-key",
            "root.key",
            "-subj",
            "/CN=OpenSSL Provider Root",
            "-days",
            "30",
            "-out",
            "root.pem",
        ],
    );
    let issue = |csr_key: &str,
                 subject: &str,
                 ca: &str,
                 ca_key: &str,
                 ext: &str,
                 serial: &str,
                 out: &str,
                 pss: bool| {
        let csr = format!("{out}.csr");
        openssl_ok(
            dir,
            &[
                "req", "-new", "-config", "ext.cnf", "-key", csr_key, "-subj", subject, "-out",
                &csr,
            ],
        );
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-set_serial",
            serial,
            "-days",
            "20",
            "-sha256",
            "-extfile",
            "ext.cnf",
            "-extensions",
            ext,
            "-out",
            out,
        ];
        if pss {
            args.extend_from_slice(&[
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
            ]);
        }
        openssl_ok(dir, &args);
    };
    issue(
        "inter.key",
        "/CN=OpenSSL Packages CA",
        "root.pem",
        "root.key",
        "ca",
        "2",
        "inter.pem",
        pss_inter,
    );
    issue(
        "signer.key",
        "/CN=OpenSSL Package Signer",
        "inter.pem",
        "inter.key",
        "signer",
        "4660",
        "signer.pem",
        false,
    );
}

fn pem_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read(path).unwrap();
    der::pem::decode_vec(&text).unwrap().1
}

fn policy(dir: &Path) -> TrustPolicy {
    TrustPolicy {
        anchors: vec![TrustAnchor {
            certificate_der: pem_der(&dir.join("root.pem")),
            grantable: gp::Privileges::NONE,
        }],
        crls: Vec::new(),
        now: now(),
    }
}

#[test]
fn openssl_verifies_packages_we_build() {
    if !openssl_available() {
        return;
    }
    for kind in [KeyType::P256, KeyType::Rsa] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl_pki(d, kind, false);
        let key =
            SoftwareSigner::from_pkcs8(&std::fs::read(d.join("signer.key")).unwrap()).unwrap();
        let chain = vec![
            pem_der(&d.join("signer.pem")),
            pem_der(&d.join("inter.pem")),
        ];
        let zip = build_signed(
            template(&["wallet", "transit"]),
            vec![("wallet".into(), cap(3000)), ("transit".into(), cap(900))],
            chain,
            Vec::new(),
            &key,
        );
        package::verify(&zip, &policy(d)).expect("we verify it");
        let e = entries(&zip);
        std::fs::write(d.join("manifest.toml"), &e[0].1).unwrap();
        std::fs::write(d.join("manifest.p7s"), &e[1].1).unwrap();
        let verify = [
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
            "root.pem",
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ];
        let text = openssl_ok(d, &verify);
        assert!(text.contains("Verification successful"), "{kind:?}: {text}");
        // The signer info, as openssl reads it.
        let info = openssl_ok(
            d,
            &[
                "cms",
                "-cmsout",
                "-print",
                "-inform",
                "DER",
                "-in",
                "manifest.p7s",
                "-noout",
            ],
        );
        let expected = match kind {
            KeyType::P256 => "ecdsa-with-SHA256",
            KeyType::Rsa => "rsassaPss",
        };
        assert!(info.contains(expected), "{kind:?}: {info}");
        for attribute in ["contentType", "signingTime", "messageDigest"] {
            assert!(info.contains(attribute), "{attribute}: {info}");
        }
        // And openssl refuses it when the manifest is edited (the check can fail).
        let mut edited = e[0].1.clone();
        edited[10] ^= 0x20;
        std::fs::write(d.join("manifest.toml"), &edited).unwrap();
        let (ok, text) = openssl(d, &verify);
        assert!(!ok, "{kind:?}: openssl accepted an edited manifest: {text}");
    }
}

/// A manifest for the CAP files, with their hashes, as `package build` would write it.
fn manifest_for(files: &[(String, Vec<u8>)]) -> Manifest {
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let mut m = template(&names);
    for (a, (_, bytes)) in m.applications.iter_mut().zip(files) {
        a.load_file = format!("load/{}.cap", a.name);
        a.sha256 = apdu::hex(&sha2::Sha256::digest(bytes)).to_ascii_lowercase();
        a.size = bytes.len() as u64;
        a.package_aid = "A00000055501".into();
        a.applet = "A0000005550101".into();
    }
    m.check().unwrap();
    m
}

/// Signs `manifest.toml` in `dir` with openssl; returns the package (zipped here).
fn openssl_package(
    dir: &Path,
    kind: KeyType,
    files: &[(String, Vec<u8>)],
    extra: &[&str],
) -> Vec<u8> {
    let manifest = manifest_for(files).to_toml();
    std::fs::write(dir.join("manifest.toml"), &manifest).unwrap();
    let mut args = vec![
        "cms",
        "-sign",
        "-binary",
        "-md",
        "sha256",
        "-outform",
        "DER",
        "-signer",
        "signer.pem",
        "-inkey",
        "signer.key",
        "-certfile",
        "inter.pem",
        "-in",
        "manifest.toml",
        "-out",
        "manifest.p7s",
    ];
    if kind == KeyType::Rsa {
        args.extend_from_slice(&["-keyopt", "rsa_padding_mode:pss"]);
    }
    args.extend_from_slice(extra);
    openssl_ok(dir, &args);
    let mut all = vec![
        ("manifest.toml".to_string(), manifest.into_bytes()),
        (
            "manifest.p7s".to_string(),
            std::fs::read(dir.join("manifest.p7s")).unwrap(),
        ),
    ];
    all.extend(
        files
            .iter()
            .map(|(n, b)| (format!("load/{n}.cap"), b.clone())),
    );
    zip_of(&all)
}

#[test]
fn we_verify_packages_openssl_signs() {
    if !openssl_available() {
        return;
    }
    let files = vec![("wallet".to_string(), cap(4000))];
    for kind in [KeyType::P256, KeyType::Rsa] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl_pki(d, kind, false);
        let zip = openssl_package(d, kind, &files, &[]);
        let v = package::verify(&zip, &policy(d)).unwrap_or_else(|r| panic!("{kind:?}: {r}"));
        assert_eq!(v.signer_subject, "CN=OpenSSL Package Signer");
        assert_eq!(v.load_files, files);
        // openssl's RSASSA-PSS salt is its default (the largest), not ours.
        if kind == KeyType::Rsa {
            // saltLength [2] INTEGER 222.
            let p7s = std::fs::read(d.join("manifest.p7s")).unwrap();
            let salt_222 = [0xA2, 0x04, 0x02, 0x02, 0x00, 0xDE];
            assert!(p7s.windows(6).any(|w| w == salt_222));
        }
        // A hash that differs is still caught.
        let edited = replace_entry(&zip, "load/wallet.cap", &cap(4100));
        assert_eq!(refusal(&edited, &policy(d)).code(), "hash_mismatch");
        // Another root: unknown signer.
        let other = Ca::root("OpenSSL Provider Root");
        assert_eq!(
            refusal(&zip, &policy_for(&other, "")).code(),
            "unknown_signer"
        );
    }
}

#[test]
fn openssl_subject_key_identifier_signer_and_pss_intermediate() {
    if !openssl_available() {
        return;
    }
    let files = vec![("transit".to_string(), cap(1500))];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An RSA root that signs the intermediate with RSASSA-PSS; the SignerInfo names the
    // signer by subject key identifier (version 3).
    openssl_pki(d, KeyType::P256, true);
    let cert = openssl_ok(d, &["x509", "-in", "inter.pem", "-noout", "-text"]);
    assert!(cert.contains("rsassaPss"), "{cert}");
    let zip = openssl_package(d, KeyType::P256, &files, &["-keyid"]);
    let v = package::verify(&zip, &policy(d)).unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(v.signer_subject, "CN=OpenSSL Package Signer");
}

#[test]
fn an_openssl_crl_revokes_the_signer() {
    if !openssl_available() {
        return;
    }
    let files = vec![("wallet".to_string(), cap(800))];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_pki(d, KeyType::P256, false);
    // A minimal `openssl ca` set-up for the intermediate, which revokes the signer.
    std::fs::write(d.join("index.txt"), "").unwrap();
    std::fs::write(d.join("crlnumber"), "01\n").unwrap();
    std::fs::write(
        d.join("ca.cnf"),
        "[ca]\ndefault_ca = inter\n[inter]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
         default_md = sha256\ndefault_crl_days = 7\n",
    )
    .unwrap();
    let inter = [
        "-config",
        "ca.cnf",
        "-cert",
        "inter.pem",
        "-keyfile",
        "inter.key",
    ];
    let mut revoke = vec!["ca", "-revoke", "signer.pem"];
    revoke.extend_from_slice(&inter);
    openssl_ok(d, &revoke);
    let mut gencrl = vec!["ca", "-gencrl", "-out", "crl.pem"];
    gencrl.extend_from_slice(&inter);
    openssl_ok(d, &gencrl);
    let crl = pem_der(&d.join("crl.pem"));

    let zip = openssl_package(d, KeyType::P256, &files, &[]);
    package::verify(&zip, &policy(d)).expect("no CRL yet");
    // The CRL in the policy.
    let mut with_crl = policy(d);
    with_crl.crls.push(crl.clone());
    assert_eq!(refusal(&zip, &with_crl).code(), "signer_revoked");
    // Inside a package we build (`openssl cms -sign` cannot add CRLs).
    let key = SoftwareSigner::from_pkcs8(&std::fs::read(d.join("signer.key")).unwrap()).unwrap();
    let ours = build_signed(
        template(&["wallet"]),
        files.clone(),
        vec![
            pem_der(&d.join("signer.pem")),
            pem_der(&d.join("inter.pem")),
        ],
        vec![crl],
        &key,
    );
    assert_eq!(refusal(&ours, &policy(d)).code(), "signer_revoked");
}
