//! A test PKI made for each test with rcgen (root → intermediate → signer, P-256 CAs,
//! P-256 or RSA-2048 signers, CRLs), the test CAP files (`gp::cap::testing`), manifests,
//! and helpers that take an archive apart and put it back together.
#![allow(dead_code)]

use std::io::{Cursor, Read, Write};
use std::sync::OnceLock;

use der::Decode;
use package::{
    Application, BuildInput, Manifest, PackageSigner, SoftwareSigner, TrustAnchor, TrustPolicy,
    FORMAT,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, RevocationReason, RevokedCertParams,
    SerialNumber, SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};
use zip::{write::SimpleFileOptions, CompressionMethod, ZipArchive, ZipWriter};

/// A CA made for the test.
pub struct Ca {
    pub name: String,
    pub der: Vec<u8>,
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A signer: its key and certificate.
pub struct Signer {
    pub key: SoftwareSigner,
    pub der: Vec<u8>,
    pub serial: u64,
}

/// Which kind of signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    P256,
    Rsa,
}

/// A public key given as its SPKI (what rcgen certifies for a key it does not hold).
struct Spki {
    spki: Vec<u8>,
    raw: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl PublicKeyData for Spki {
    fn subject_public_key_info(&self) -> Vec<u8> {
        self.spki.clone()
    }
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now() - Duration::days(365);
    params.not_after = now() + Duration::days(3650);
    params
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl Ca {
    /// A self-signed root.
    pub fn root(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let params = ca_params(name);
        let cert = params.self_signed(&key).expect("root");
        Self {
            name: name.into(),
            der: cert.der().to_vec(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA under `self`, valid from `from` until `until`.
    pub fn intermediate_valid(
        &self,
        name: &str,
        from: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = ca_params(name);
        params.serial_number = Some(SerialNumber::from(7u64));
        params.not_before = from;
        params.not_after = until;
        let cert = params.signed_by(&key, &self.issuer).expect("intermediate");
        Ca {
            name: name.into(),
            der: cert.der().to_vec(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA valid for ten years around now.
    pub fn intermediate(&self, name: &str) -> Ca {
        self.intermediate_valid(
            name,
            now() - Duration::days(365),
            now() + Duration::days(3650),
        )
    }

    /// A signer certificate (keyUsage digitalSignature) for a fresh key of `kind`, with
    /// `serial`, valid from `from` until `until`.
    pub fn signer_valid(
        &self,
        kind: KeyType,
        serial: u64,
        from: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Signer {
        let key = match kind {
            KeyType::P256 => SoftwareSigner::generate_p256(),
            KeyType::Rsa => SoftwareSigner::from_pkcs8_der(rsa_pkcs8()).expect("RSA key"),
        };
        let spki = key.public_key_der();
        let parsed = spki::SubjectPublicKeyInfoRef::from_der(&spki).expect("SPKI");
        let public = Spki {
            raw: parsed.subject_public_key.raw_bytes().to_vec(),
            spki: spki.clone(),
            alg: match kind {
                KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
                KeyType::Rsa => &rcgen::PKCS_RSA_SHA256,
            },
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Package signer {serial}"));
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = from;
        params.not_after = until;
        let cert = params
            .signed_by(&public, &self.issuer)
            .expect("signer cert");
        Signer {
            key,
            der: cert.der().to_vec(),
            serial,
        }
    }

    /// A signer valid for a year around now.
    pub fn signer(&self, kind: KeyType, serial: u64) -> Signer {
        self.signer_valid(
            kind,
            serial,
            now() - Duration::days(30),
            now() + Duration::days(365),
        )
    }

    /// A CRL (DER) of this CA listing `serials`.
    pub fn crl(&self, serials: &[u64]) -> Vec<u8> {
        let params = CertificateRevocationListParams {
            this_update: now() - Duration::hours(1),
            next_update: now() + Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now() - Duration::minutes(5),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).expect("CRL").der().to_vec()
    }
}

/// One RSA-2048 key (PKCS#8 DER) for every test of the process: generating one takes a while.
pub fn rsa_pkcs8() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| {
        SoftwareSigner::generate_rsa(2048)
            .expect("RSA key")
            .to_pkcs8_der()
            .expect("PKCS#8")
            .to_vec()
    })
}

/// The usual set-up: root → intermediate → signer of `kind` (serial 100).
pub struct Pki {
    pub root: Ca,
    pub inter: Ca,
    pub signer: Signer,
}

impl Pki {
    pub fn new(kind: KeyType) -> Self {
        let root = Ca::root("Provider Root");
        let inter = root.intermediate("Provider Packages CA");
        let signer = inter.signer(kind, 100);
        Self {
            root,
            inter,
            signer,
        }
    }

    /// The chain a package carries: signer, intermediate.
    pub fn chain(&self) -> Vec<Vec<u8>> {
        vec![self.signer.der.clone(), self.inter.der.clone()]
    }

    /// A policy trusting the root, granting `grantable`, at now.
    pub fn policy(&self, grantable: &str) -> TrustPolicy {
        policy_for(&self.root, grantable)
    }
}

pub fn policy_for(root: &Ca, grantable: &str) -> TrustPolicy {
    TrustPolicy {
        anchors: vec![TrustAnchor {
            certificate_der: root.der.clone(),
            grantable: grantable.parse().expect("privileges"),
        }],
        crls: Vec::new(),
        now: now(),
    }
}

/// A test CAP file whose load file data block is about `size` bytes.
pub fn cap(size: usize) -> Vec<u8> {
    gp::cap::testing::synthetic_cap(size)
}

/// A manifest template naming `names`, valid from a day ago for 30 days.
pub fn template(names: &[&str]) -> Manifest {
    Manifest {
        format: FORMAT.into(),
        provider: "Example Transit Ltd".into(),
        not_before: now() - Duration::days(1),
        not_after: now() + Duration::days(30),
        applications: names.iter().map(|n| application(n)).collect(),
    }
}

pub fn application(name: &str) -> Application {
    Application {
        name: name.into(),
        title: format!("The {name} application"),
        version: "1.2.0".into(),
        load_file: String::new(),
        sha256: String::new(),
        size: 0,
        package_aid: String::new(),
        applet: String::new(),
        instance: String::new(),
        privileges: Vec::new(),
        install_params: String::new(),
        security_domain: String::new(),
        dap: Vec::new(),
        tokens: None,
        registration: Vec::new(),
    }
}

/// Builds a package of `manifest` with a 2 KB CAP per application, signed by `pki.signer`
/// with the chain and `crls`.
pub fn build_with(pki: &Pki, manifest: Manifest, crls: Vec<Vec<u8>>) -> Vec<u8> {
    let load_files = manifest
        .applications
        .iter()
        .map(|a| (a.name.clone(), cap(2000)))
        .collect();
    build_signed(manifest, load_files, pki.chain(), crls, &pki.signer.key)
}

pub fn build_signed(
    manifest: Manifest,
    load_files: Vec<(String, Vec<u8>)>,
    chain: Vec<Vec<u8>>,
    crls: Vec<Vec<u8>>,
    signer: &dyn PackageSigner,
) -> Vec<u8> {
    package::build(
        BuildInput {
            manifest,
            load_files,
            chain_der: chain,
            crls_der: crls,
            signing_time: now(),
        },
        signer,
    )
    .expect("build")
}

/// The entries of a ZIP archive, in order.
pub fn entries(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = ZipArchive::new(Cursor::new(zip)).expect("zip");
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).expect("entry");
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).expect("read");
            (f.name().expect("name").into_owned(), bytes)
        })
        .collect()
}

/// A ZIP archive of `entries` (deflated).
pub fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for (name, bytes) in entries {
        w.start_file(name.as_str(), options).expect("start");
        w.write_all(bytes).expect("write");
    }
    w.finish().expect("finish").into_inner()
}

/// `zip` with the entry `name` replaced by `bytes`.
pub fn replace_entry(zip: &[u8], name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut all = entries(zip);
    let e = all
        .iter_mut()
        .find(|(n, _)| n == name)
        .expect("entry present");
    e.1 = bytes.to_vec();
    zip_of(&all)
}

/// The refusal code of verifying `zip` under `policy` (panics if it verifies).
pub fn refusal(zip: &[u8], policy: &TrustPolicy) -> package::Refusal {
    match package::verify(zip, policy) {
        Ok(v) => panic!("verified, signer {}", v.signer_subject),
        Err(r) => r,
    }
}
