//! Certificate, CRL and CA-key tests, including interoperability with the `openssl` CLI.

mod common;

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use common::{alice, enrol, env, rsa_ca_env, Card, YEAR};
use der::{Decode, Encode};
use pki::{
    CaError, CaSigner, CertificateAuthority, CertificateStatus, KeyError, MemoryStore,
    RevocationReason, Serial, SignerError, SoftwareSigner, Subject,
};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};

const OID_BC: &str = "2.5.29.19";
const OID_KU: &str = "2.5.29.15";
const OID_EKU: &str = "2.5.29.37";
const OID_SKI: &str = "2.5.29.14";
const OID_AKI: &str = "2.5.29.35";

fn ext<'a>(cert: &'a x509_cert::Certificate, oid: &str) -> &'a x509_cert::ext::Extension {
    cert.tbs_certificate()
        .extensions()
        .expect("extensions")
        .iter()
        .find(|e| e.extn_id.to_string() == oid)
        .unwrap_or_else(|| panic!("extension {oid} missing"))
}

#[test]
fn ca_certificate_profile() {
    let env = env();
    let ca = env.ca.certificate();
    let x = ca.x509();
    assert_eq!(x.tbs_certificate().version(), x509_cert::Version::V3);
    assert_eq!(ca.subject(), ca.issuer());
    assert_eq!(
        ca.not_before(),
        common::start() - time::Duration::minutes(1)
    );
    let bc = ext(x, OID_BC);
    assert!(bc.critical);
    let bc = BasicConstraints::from_der(bc.extn_value.as_bytes()).unwrap();
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = ext(x, OID_KU);
    assert!(ku.critical);
    let ku = KeyUsage::from_der(ku.extn_value.as_bytes()).unwrap();
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    SubjectKeyIdentifier::from_der(ext(x, OID_SKI).extn_value.as_bytes()).unwrap();
    assert_eq!(
        x.signature_algorithm().oid.to_string(),
        "1.2.840.10045.4.3.2"
    );
}

fn check_client_profile(env: &common::Env, cert: &pki::Certificate, algorithm: &str) {
    let x = cert.x509();
    let tbs = x.tbs_certificate();
    assert_eq!(tbs.version(), x509_cert::Version::V3);
    let serial = cert.serial().unwrap();
    assert_eq!(serial.as_bytes().len(), 16, "16-byte random serial");
    assert_eq!(
        tbs.issuer(),
        env.ca.certificate().x509().tbs_certificate().subject()
    );
    assert_eq!(
        cert.subject(),
        "SERIALNUMBER=CW000123,UID=acct-0001,CN=Alice Example"
    );
    assert_eq!(
        cert.not_before(),
        common::start() - time::Duration::minutes(1)
    );
    assert_eq!(
        cert.not_after(),
        common::start() + time::Duration::days(730)
    );
    assert_eq!(x.signature_algorithm().oid.to_string(), algorithm);
    assert_eq!(tbs.signature().oid.to_string(), algorithm);

    let bc = ext(x, OID_BC);
    assert!(bc.critical);
    assert!(
        !BasicConstraints::from_der(bc.extn_value.as_bytes())
            .unwrap()
            .ca
    );
    let ku = ext(x, OID_KU);
    assert!(ku.critical, "keyUsage must be critical");
    let ku = KeyUsage::from_der(ku.extn_value.as_bytes()).unwrap();
    assert!(ku.digital_signature());
    assert!(!ku.key_cert_sign() && !ku.crl_sign() && !ku.key_encipherment());
    let eku = ext(x, OID_EKU);
    assert!(!eku.critical);
    let eku = ExtendedKeyUsage::from_der(eku.extn_value.as_bytes()).unwrap();
    assert_eq!(
        eku.0.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        vec!["1.3.6.1.5.5.7.3.2"]
    );
    let aki = AuthorityKeyIdentifier::from_der(ext(x, OID_AKI).extn_value.as_bytes()).unwrap();
    let ca_ski = SubjectKeyIdentifier::from_der(
        ext(env.ca.certificate().x509(), OID_SKI)
            .extn_value
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(aki.key_identifier, Some(ca_ski.0));
    SubjectKeyIdentifier::from_der(ext(x, OID_SKI).extn_value.as_bytes()).unwrap();
    // Store has it.
    assert_eq!(
        env.ca.status(&serial).unwrap(),
        CertificateStatus::Good {
            not_after: cert.not_after()
        }
    );
}

#[test]
fn client_certificate_profile_p256_card_p256_ca() {
    let env = env();
    let card = Card::p256();
    let cert = enrol(&env, &card);
    check_client_profile(&env, &cert, "1.2.840.10045.4.3.2");
    assert_eq!(cert.public_key().unwrap(), card.public_key());
}

#[test]
fn client_certificate_profile_rsa_card_rsa_ca() {
    let env = rsa_ca_env();
    let card = Card::rsa(0);
    let cert = enrol(&env, &card);
    check_client_profile(&env, &cert, "1.2.840.113549.1.1.11");
    assert_eq!(cert.public_key().unwrap(), card.public_key());
}

/// Whether the `openssl` CLI can be run. Without it the interoperability checks are skipped
/// with a message, unless `CARDWRIGHT_OPENSSL_TESTS=1` (set by `scripts/test.sh`, so CI)
/// requires them: then a missing openssl fails the test.
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

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
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
    (out.status.success(), text)
}

fn openssl_round(env: common::Env, card: Card) {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = enrol(&env, &card);
    std::fs::write(dir.path().join("ca.pem"), env.ca.certificate().to_pem()).unwrap();
    std::fs::write(dir.path().join("card.pem"), cert.to_pem()).unwrap();
    let at = (common::start() + time::Duration::hours(1))
        .unix_timestamp()
        .to_string();

    let (ok, text) = openssl(
        dir.path(),
        &[
            "verify",
            "-x509_strict",
            "-attime",
            &at,
            "-purpose",
            "sslclient",
            "-CAfile",
            "ca.pem",
            "card.pem",
        ],
    );
    assert!(ok, "openssl verify failed:\n{text}");
    assert!(text.contains("card.pem: OK"), "{text}");

    let (ok, text) = openssl(dir.path(), &["x509", "-in", "card.pem", "-noout", "-text"]);
    assert!(ok, "{text}");
    for needle in [
        "X509v3 Key Usage: critical",
        "Digital Signature",
        "TLS Web Client Authentication",
        "X509v3 Basic Constraints: critical",
        "CA:FALSE",
        "Subject: CN = Alice Example, UID = acct-0001, serialNumber = CW000123",
        "X509v3 Authority Key Identifier",
        "X509v3 Subject Key Identifier",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let (ok, text) = openssl(dir.path(), &["x509", "-in", "ca.pem", "-noout", "-text"]);
    assert!(
        ok && text.contains("CA:TRUE, pathlen:0") && text.contains("Certificate Sign, CRL Sign"),
        "{text}"
    );

    // Revoke, publish a CRL, and openssl now refuses the certificate.
    let serial = cert.serial().unwrap();
    env.ca
        .revoke(&serial, RevocationReason::KeyCompromise)
        .unwrap();
    std::fs::write(
        dir.path().join("crl.der"),
        env.ca.crl_der(Duration::from_secs(86400)).unwrap(),
    )
    .unwrap();
    let (ok, text) = openssl(
        dir.path(),
        &["crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text"],
    );
    assert!(ok, "{text}");
    let serial_hex = serial.to_string().to_uppercase();
    assert!(
        text.contains(&serial_hex),
        "serial {serial_hex} not listed:\n{text}"
    );
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(
        text.contains("X509 CRL Number") || text.contains("CRL Number"),
        "{text}"
    );
    let (ok, _) = openssl(
        dir.path(),
        &["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"],
    );
    assert!(ok);
    let (ok, text) = openssl(
        dir.path(),
        &["crl", "-in", "crl.pem", "-noout", "-CAfile", "ca.pem"],
    );
    assert!(ok && text.contains("verify OK"), "CRL signature:\n{text}");
    let (ok, text) = openssl(
        dir.path(),
        &[
            "verify",
            "-attime",
            &at,
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "-CAfile",
            "ca.pem",
            "card.pem",
        ],
    );
    assert!(
        !ok && text.contains("certificate revoked"),
        "expected revoked:\n{text}"
    );
}

#[test]
fn openssl_accepts_p256_certificates_and_crl() {
    openssl_round(env(), Card::p256());
}

#[test]
fn openssl_accepts_rsa_certificates_and_crl() {
    openssl_round(rsa_ca_env(), Card::rsa(1));
}

#[test]
fn mixed_rsa_card_under_p256_ca_verifies_with_openssl() {
    openssl_round(env(), Card::rsa(0));
}

#[test]
fn crl_structure_and_numbering() {
    let env = env();
    let next = Duration::from_secs(3600);
    let empty = x509_cert::crl::CertificateList::from_der(&env.ca.crl_der(next).unwrap()).unwrap();
    assert_eq!(empty.tbs_cert_list.version, x509_cert::Version::V2);
    assert!(
        empty.tbs_cert_list.revoked_certificates.is_none(),
        "RFC 5280 §5.1.2.6"
    );
    let number = |crl: &x509_cert::crl::CertificateList| {
        let e = crl
            .tbs_cert_list
            .crl_extensions
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.extn_id.to_string() == "2.5.29.20")
            .unwrap()
            .clone();
        x509_cert::ext::pkix::CrlNumber::from_der(e.extn_value.as_bytes())
            .unwrap()
            .0
    };
    let a = enrol(&env, &Card::p256()).serial().unwrap();
    let b = enrol(&env, &Card::p256()).serial().unwrap();
    env.ca.revoke(&a, RevocationReason::Unspecified).unwrap();
    env.ca.revoke(&b, RevocationReason::Superseded).unwrap();
    let crl = x509_cert::crl::CertificateList::from_der(&env.ca.crl_der(next).unwrap()).unwrap();
    assert!(number(&crl) > number(&empty), "cRLNumber increases");
    let listed = crl.tbs_cert_list.revoked_certificates.as_ref().unwrap();
    assert_eq!(listed.len(), 2);
    for entry in listed {
        let serial = Serial::from_bytes(entry.serial_number.as_bytes()).unwrap();
        if serial == a {
            assert!(
                entry.crl_entry_extensions.is_none(),
                "unspecified has no reasonCode"
            );
        } else {
            assert_eq!(serial, b);
            let ext = &entry.crl_entry_extensions.as_ref().unwrap()[0];
            assert_eq!(ext.extn_id.to_string(), "2.5.29.21");
            assert_eq!(ext.extn_value.as_bytes(), &[0x0A, 0x01, 0x04]);
        }
    }
    assert_eq!(
        crl.tbs_cert_list.issuer,
        *env.ca.certificate().x509().tbs_certificate().subject()
    );
}

#[test]
fn status_and_revocation_errors() {
    let env = env();
    let serial = enrol(&env, &Card::p256()).serial().unwrap();
    let unknown = Serial::from_bytes(&[0x42; 16]).unwrap();
    assert_eq!(env.ca.status(&unknown).unwrap(), CertificateStatus::Unknown);
    assert!(matches!(
        env.ca.revoke(&unknown, RevocationReason::KeyCompromise),
        Err(CaError::NotIssued(_))
    ));
    env.clock.advance(time::Duration::hours(2));
    env.ca
        .revoke(&serial, RevocationReason::CessationOfOperation)
        .unwrap();
    assert_eq!(
        env.ca.status(&serial).unwrap(),
        CertificateStatus::Revoked {
            revoked_at: common::start() + time::Duration::hours(2),
            reason: RevocationReason::CessationOfOperation
        }
    );
    assert!(matches!(
        env.ca.revoke(&serial, RevocationReason::KeyCompromise),
        Err(CaError::AlreadyRevoked {
            reason: RevocationReason::CessationOfOperation,
            ..
        })
    ));
}

#[test]
fn issuing_rejects_bad_keys_and_subjects() {
    let env = env();
    let card = Card::p256().public_key().to_spki_der();
    assert!(matches!(
        env.ca
            .issue_client_certificate(&Subject::new(""), &card, YEAR),
        Err(CaError::Subject(_))
    ));
    assert!(matches!(
        env.ca
            .issue_client_certificate(&alice(), &card[..card.len() - 1], YEAR),
        Err(CaError::Key(KeyError::Der(_)))
    ));
    let rsa4096 = pki::PublicKey::from_rsa_components(&[0xC1; 512], &[1, 0, 1]).unwrap();
    assert!(matches!(
        env.ca
            .issue_client_certificate(&alice(), &rsa4096.to_spki_der(), YEAR),
        Err(CaError::Key(KeyError::RsaModulusSize(4096)))
    ));
    assert!(matches!(
        env.ca
            .issue_client_certificate(&alice(), &card, Duration::ZERO),
        Err(CaError::Validity(_))
    ));
    // notAfter is clamped to the CA's.
    let cert = env
        .ca
        .issue_client_certificate(&alice(), &card, 50 * YEAR)
        .unwrap();
    assert_eq!(cert.not_after(), env.ca.certificate().not_after());
    // After the CA expired nothing is issued.
    env.clock.advance(time::Duration::days(3700));
    assert!(matches!(
        env.ca.issue_client_certificate(&alice(), &card, YEAR),
        Err(CaError::Validity(_))
    ));
}

#[test]
fn load_checks_the_certificate_against_the_signer() {
    let signer = Arc::new(SoftwareSigner::generate_p256());
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(pki::ManualClock::new(common::start()));
    let ca = CertificateAuthority::create(
        &Subject::new("Root"),
        YEAR,
        signer.clone(),
        store.clone(),
        clock.clone(),
    )
    .unwrap();
    let der = ca.certificate().der().to_vec();
    let again =
        CertificateAuthority::load(&der, signer.clone(), store.clone(), clock.clone()).unwrap();
    assert_eq!(again.certificate(), ca.certificate());
    // Another key.
    let other = Arc::new(SoftwareSigner::generate_p256());
    assert!(matches!(
        CertificateAuthority::load(&der, other, store.clone(), clock.clone()),
        Err(CaError::CaCertificate(_))
    ));
    // A client certificate is not a CA certificate.
    let card = Card::p256();
    let client = ca
        .issue_client_certificate(&alice(), &card.public_key().to_spki_der(), YEAR)
        .unwrap();
    assert!(
        CertificateAuthority::load(client.der(), signer.clone(), store.clone(), clock.clone())
            .is_err()
    );
    // Garbage.
    assert!(CertificateAuthority::load(&[0x30, 0x00], signer, store, clock).is_err());
}

#[test]
fn software_signer_pkcs8_round_trip_and_redacted_debug() {
    for signer in [
        SoftwareSigner::generate_p256(),
        SoftwareSigner::from_rsa(common::rsa_key(0)).unwrap(),
    ] {
        let der = signer.to_pkcs8_der().unwrap();
        let back = SoftwareSigner::from_pkcs8_der(&der).unwrap();
        assert_eq!(back.public_key(), signer.public_key());
        let sig = back.sign_sha256(b"msg").unwrap();
        assert_eq!(signer.public_key().verify(b"msg", &sig), Ok(()));
        let debug = format!("{signer:?}");
        assert!(debug.contains("redacted"), "{debug}");
        if openssl_available() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("k.der"), &*der).unwrap();
            let (ok, text) = openssl(
                dir.path(),
                &["pkey", "-inform", "DER", "-in", "k.der", "-noout"],
            );
            assert!(ok, "{text}");
        }
    }
    assert!(SoftwareSigner::from_pkcs8_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
    assert!(matches!(
        SoftwareSigner::generate_rsa(1024),
        Err(KeyError::RsaModulusSize(1024))
    ));
}

/// A signer whose output does not verify (a broken HSM) must not yield certificates.
#[derive(Debug)]
struct BrokenSigner(SoftwareSigner);

impl CaSigner for BrokenSigner {
    fn public_key(&self) -> &pki::PublicKey {
        self.0.public_key()
    }
    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        let mut m = message.to_vec();
        m.push(0);
        self.0.sign_sha256(&m)
    }
}

#[test]
fn faulty_signer_output_is_caught() {
    let r = CertificateAuthority::create(
        &Subject::new("Root"),
        YEAR,
        Arc::new(BrokenSigner(SoftwareSigner::generate_p256())),
        Arc::new(MemoryStore::new()),
        Arc::new(pki::SystemClock),
    );
    assert!(matches!(r, Err(CaError::BadSignerOutput)));
}

#[test]
fn certificate_pem_and_der_agree() {
    let env = env();
    let cert = enrol(&env, &Card::p256());
    let pem = cert.to_pem();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    let parsed = x509_cert::Certificate::from_der(cert.der()).unwrap();
    assert_eq!(parsed.to_der().unwrap(), cert.der());
    assert!(pki::Certificate::from_der(&cert.der()[..10]).is_err());
}
