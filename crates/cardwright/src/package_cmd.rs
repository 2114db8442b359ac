//! `cardwright package build|verify`: application install service packages (`.cwpkg`, the
//! `package` crate; the format is in docs/PACKAGE.md).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use package::{PackageSigner, SignatureAlgorithm, TrustAnchor, TrustPolicy};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// `package build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// An application's load file, `NAME:FILE.cap` (once per application of the manifest).
    #[arg(long = "app", value_name = "NAME:FILE.cap", required = true)]
    pub apps: Vec<String>,
    /// The manifest template (TOML; `package build` fills in each application's load_file,
    /// sha256, size, package_aid and, if left out, applet).
    #[arg(long)]
    pub manifest: PathBuf,
    /// The signing key: `file:KEY.pem` (an unencrypted PKCS#8 P-256 or RSA key, PEM or DER),
    /// or a key-store signing key `file:KEYS.json?label=L` / `pkcs11:MODULE?…&label=L`
    /// (RSA keys sign RSASSA-PSS).
    #[arg(long, value_name = "file:…|pkcs11:…")]
    pub sign_key: String,
    /// The signer's certificate (PEM or DER; a PEM file may hold the intermediates after it).
    #[arg(long)]
    pub sign_cert: PathBuf,
    /// Intermediate CA certificates to carry (PEM, several per file, or DER).
    #[arg(long = "chain", value_name = "FILE")]
    pub chains: Vec<PathBuf>,
    /// CRLs to carry for offline revocation checks (PEM or DER).
    #[arg(long = "crl", value_name = "FILE")]
    pub crls: Vec<PathBuf>,
    /// Where to write the package.
    #[arg(long)]
    pub out: PathBuf,
}

/// `package verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The package (`.cwpkg`).
    pub file: PathBuf,
    /// Trusted root certificates (PEM, several per file, or DER).
    #[arg(long = "trust", value_name = "ROOT.pem", required = true)]
    pub trust: Vec<PathBuf>,
    /// Privileges a package signed under these roots may grant (`card install --privs`
    /// names, comma-separated; default none).
    #[arg(long, default_value = "")]
    pub grantable: String,
    /// CRLs known besides those in the package (PEM or DER).
    #[arg(long = "crl", value_name = "FILE")]
    pub crls: Vec<PathBuf>,
    /// Check validity at this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
    /// Print JSON: the applications and signer, or `{"ok":false,"code","reason"}`.
    #[arg(long)]
    pub json: bool,
}

/// A key-store signing key as a package signer (RSA keys sign RSASSA-PSS, P-256 keys
/// ECDSA with a DER signature, which `sign_sha256` returns).
struct KmsSigner(Box<dyn kms::SigningKey>);

impl PackageSigner for KmsSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        match self.0.algorithm() {
            kms::SigningAlgorithm::P256 => SignatureAlgorithm::EcdsaP256Sha256,
            _ => SignatureAlgorithm::RsaPssSha256,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let signed = match self.algorithm() {
            SignatureAlgorithm::EcdsaP256Sha256 => self.0.sign_sha256(message),
            SignatureAlgorithm::RsaPssSha256 => self.0.sign_pss_sha256(message),
        };
        signed.map_err(|e| e.to_string())
    }
}

/// `--sign-key`: a key store's key when the URI names a `label=`, else a PKCS#8 file.
fn signer(spec: &str) -> Result<Box<dyn PackageSigner>> {
    if let Some((config, label)) = crate::dm_cmd::split_label(spec) {
        let store = kms::open_signing(&config).with_context(|| format!("--sign-key {config}"))?;
        let key = store
            .signing_key(&label)
            .with_context(|| format!("--sign-key: key {label:?}"))?;
        return Ok(Box::new(KmsSigner(key)));
    }
    let Some(path) = spec.strip_prefix("file:") else {
        bail!("--sign-key {spec}: want file:KEY.pem, or a key store URI with label=LABEL");
    };
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).with_context(|| format!("--sign-key: cannot read {path}"))?,
    );
    let key = package::SoftwareSigner::from_pkcs8(&bytes)
        .map_err(|e| anyhow!("--sign-key {path}: {e}"))?;
    Ok(Box::new(key))
}

/// The DER objects of a file: every PEM block (any label), or the file itself as DER.
fn ders(path: &Path) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) if t.trim_start().starts_with("-----BEGIN") => t,
        _ => return Ok(vec![bytes]),
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN") {
        let block = &rest[start..];
        let end = block
            .find("-----END")
            .and_then(|e| block[e + 8..].find("-----").map(|f| e + 8 + f + 5))
            .ok_or_else(|| anyhow!("{}: a PEM block without its END line", path.display()))?;
        let (_, der) = pem_rfc7468::decode_vec(&block.as_bytes()[..end])
            .map_err(|e| anyhow!("{}: not a PEM file: {e}", path.display()))?;
        out.push(der);
        rest = &block[end..];
    }
    Ok(out)
}

/// Certificates of a file, each checked to be X.509.
fn certificates(path: &Path) -> Result<Vec<Vec<u8>>> {
    let all = ders(path)?;
    for der in &all {
        pki::Certificate::from_der(der)
            .map_err(|e| anyhow!("{}: not an X.509 certificate: {e}", path.display()))?;
    }
    Ok(all)
}

pub fn build(a: BuildArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.manifest)
        .with_context(|| format!("cannot read {}", a.manifest.display()))?;
    let manifest = package::Manifest::parse_template(&text)
        .map_err(|e| anyhow!("{}: {e}", a.manifest.display()))?;
    let mut load_files = Vec::new();
    for spec in &a.apps {
        let (name, file) = spec
            .split_once(':')
            .ok_or_else(|| anyhow!("--app {spec}: want NAME:FILE.cap"))?;
        let bytes =
            std::fs::read(file).with_context(|| format!("--app {name}: cannot read {file}"))?;
        load_files.push((name.to_string(), bytes));
    }
    let mut chain = certificates(&a.sign_cert)?;
    for c in &a.chains {
        chain.extend(certificates(c)?);
    }
    let mut crls = Vec::new();
    for c in &a.crls {
        crls.extend(ders(c)?);
    }
    let signer = signer(&a.sign_key)?;
    let signer_subject = pki::Certificate::from_der(&chain[0])
        .map(|c| c.subject())
        .unwrap_or_default();
    let input = package::BuildInput {
        manifest,
        load_files,
        chain_der: chain,
        crls_der: crls,
        signing_time: OffsetDateTime::now_utc(),
    };
    let names: Vec<String> = input
        .manifest
        .applications
        .iter()
        .map(|a| a.name.clone())
        .collect();
    let archive =
        package::build(input, signer.as_ref()).map_err(|e| anyhow!("package build: {e}"))?;
    atomic_file::write(&a.out, &archive, atomic_file::Options::public())
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "{}: {} bytes, applications {}, signed by {signer_subject}",
        a.out.display(),
        archive.len(),
        names.join(", ")
    );
    Ok(())
}

pub fn verify(a: VerifyArgs) -> Result<()> {
    let grantable: gp::Privileges = a
        .grantable
        .parse()
        .map_err(|e| anyhow!("--grantable {}: {e}", a.grantable))?;
    let mut anchors = Vec::new();
    for t in &a.trust {
        for der in certificates(t)? {
            anchors.push(TrustAnchor {
                certificate_der: der,
                grantable,
            });
        }
    }
    let mut crls = Vec::new();
    for c in &a.crls {
        crls.extend(ders(c)?);
    }
    let now = match &a.at {
        Some(at) => OffsetDateTime::parse(at, &Rfc3339).map_err(|e| anyhow!("--at {at}: {e}"))?,
        None => OffsetDateTime::now_utc(),
    };
    let archive =
        std::fs::read(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let policy = TrustPolicy { anchors, crls, now };
    let v = match package::verify(&archive, &policy) {
        Ok(v) => v,
        Err(r) => {
            if a.json {
                let answer =
                    serde_json::json!({"ok": false, "code": r.code(), "reason": r.to_string()});
                println!("{answer}");
            }
            bail!("{}: refused ({}): {r}", a.file.display(), r.code());
        }
    };
    let anchor = pki::Certificate::from_der(&policy.anchors[v.anchor].certificate_der)
        .map(|c| c.subject())
        .unwrap_or_default();
    let m = &v.manifest;
    if a.json {
        let apps: Vec<_> = m
            .applications
            .iter()
            .map(|app| {
                serde_json::json!({
                    "name": app.name, "title": app.title, "version": app.version,
                    "size": app.size, "sha256": app.sha256, "package_aid": app.package_aid,
                    "applet": app.applet,
                    "instance": if app.instance.is_empty() { &app.applet } else { &app.instance },
                    "privileges": app.privileges,
                })
            })
            .collect();
        let answer = serde_json::json!({
            "ok": true,
            "package_sha256": v.package_sha256,
            "provider": m.provider,
            "not_before": m.not_before.format(&Rfc3339)?,
            "not_after": m.not_after.format(&Rfc3339)?,
            "signer": v.signer_subject,
            "anchor": anchor,
            "applications": apps,
        });
        println!("{answer}");
        return Ok(());
    }
    println!(
        "{}: verified (sha256 {})",
        a.file.display(),
        v.package_sha256
    );
    println!("signer: {} (trust anchor {anchor})", v.signer_subject);
    println!(
        "provider: {}, valid {} until {}",
        m.provider,
        m.not_before.format(&Rfc3339)?,
        m.not_after.format(&Rfc3339)?
    );
    for app in &m.applications {
        let instance = if app.instance.is_empty() {
            &app.applet
        } else {
            &app.instance
        };
        let privileges = if app.privileges.is_empty() {
            "none".to_string()
        } else {
            app.privileges.join(",")
        };
        println!(
            "{}: \"{}\" {}, {} bytes, package {}, applet {}, instance {}, privileges {privileges}",
            app.name, app.title, app.version, app.size, app.package_aid, app.applet, instance
        );
    }
    Ok(())
}
