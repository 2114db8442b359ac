//! Application install service packages (`.cwpkg`, first source document): one or more
//! applications (CAP load files), a [`Manifest`] saying how to install and register each, and
//! a **detached CMS SignedData** (RFC 5652) over the manifest's exact bytes; the manifest
//! holds every load file's SHA-256, so the one signature covers everything.
//!
//! The archive is a ZIP file (stored or deflated entries) with exactly:
//! * `manifest.toml`: the manifest (UTF-8 TOML);
//! * `manifest.p7s`: the DER `ContentInfo` of a SignedData without encapsulated content
//!   (`openssl cms -sign -binary -outform DER` makes the same), one SignerInfo, signed
//!   attributes (content-type, message-digest SHA-256, signing-time), ECDSA P-256 with
//!   SHA-256 or RSASSA-PSS with SHA-256; the signer's certificate and any intermediates in
//!   `certificates`, optionally CRLs in `crls` for offline revocation;
//! * `load/<name>.cap`: one per application.
//!
//! [`build`] makes one; [`verify`] is what the outlet's security module checks before it
//! stores a package, and refuses with a [`Refusal`] saying why. The format in full is in
//! `docs/PACKAGE.md`.
#![forbid(unsafe_code)]

mod algorithm;
mod archive;
mod chain;
mod manifest;
mod signature;
mod signer;

pub use archive::{
    MANIFEST_ENTRY, MAX_APPLICATIONS, MAX_INFLATED_BYTES, MAX_LOAD_FILE_BYTES, MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES, SIGNATURE_ENTRY,
};
pub use chain::MAX_PATH;
pub use manifest::{
    Application, DapBlock, Generate, KeyKind, Manifest, RegistrationKey, Tokens, FORMAT,
};
pub use signer::SoftwareSigner;

use sha2::{Digest, Sha256};

use time::OffsetDateTime;

/// Largest archive `verify` reads (bytes); larger ones are refused as oversized.
pub const MAX_PACKAGE_BYTES: u64 = 32 * 1024 * 1024;

/// Why a package is refused. `code()` is a stable word for records and the page; `Display`
/// a sentence for the CLI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The bytes are not a package (not a ZIP, missing or extra entries, bad manifest).
    #[error("not a valid package: {0}")]
    Malformed(String),
    /// The archive ends early or an entry is cut.
    #[error("the package is truncated: {0}")]
    Truncated(String),
    /// Larger than [`MAX_PACKAGE_BYTES`] or an entry inflates beyond its limit.
    #[error("the package is too large: {0}")]
    Oversized(String),
    /// An entry name with `..`, an absolute path, a backslash or a drive letter.
    #[error("the package holds an unsafe file name: {0}")]
    PathTraversal(String),
    /// The CMS signature does not verify (or the message digest differs).
    #[error("the signature does not verify: {0}")]
    BadSignature(String),
    /// A load file's SHA-256 (or size, or package AID) differs from the manifest.
    #[error("load file {0} does not match the manifest")]
    HashMismatch(String),
    /// The signer's certificate does not chain to a trust anchor.
    #[error("the signer is not trusted: {0}")]
    UnknownSigner(String),
    /// The signer's (or an intermediate's) certificate is outside its validity at `now`.
    #[error("the signer's certificate is expired or not yet valid: {0}")]
    SignerExpired(String),
    /// A CRL in the package (or given to the verifier) lists the signer's certificate.
    #[error("the signer's certificate is revoked: {0}")]
    SignerRevoked(String),
    /// `now` is outside the manifest's `not_before`..`not_after`.
    #[error("the package is outside its validity period: {0}")]
    OutsideValidity(String),
    /// The manifest names a privilege the signer's trust anchor does not allow.
    #[error("the signer may not grant privilege {0}")]
    PrivilegeNotAllowed(String),
}

impl Refusal {
    /// A stable code: `malformed`, `truncated`, `oversized`, `path_traversal`,
    /// `bad_signature`, `hash_mismatch`, `unknown_signer`, `signer_expired`,
    /// `signer_revoked`, `outside_validity`, `privilege_not_allowed`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::Truncated(_) => "truncated",
            Refusal::Oversized(_) => "oversized",
            Refusal::PathTraversal(_) => "path_traversal",
            Refusal::BadSignature(_) => "bad_signature",
            Refusal::HashMismatch(_) => "hash_mismatch",
            Refusal::UnknownSigner(_) => "unknown_signer",
            Refusal::SignerExpired(_) => "signer_expired",
            Refusal::SignerRevoked(_) => "signer_revoked",
            Refusal::OutsideValidity(_) => "outside_validity",
            Refusal::PrivilegeNotAllowed(_) => "privilege_not_allowed",
        }
    }
}

/// A trusted root (the provider's root CA certificate) and what packages signed under it
/// may ask for. Privileges are the card issuer's decision in GlobalPlatform, so the outlet
/// (the issuer's) says per anchor which ones its signers may grant; none by default.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    /// The root certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Privileges a manifest signed under this anchor may name.
    pub grantable: gp::Privileges,
}

/// What [`verify`] checks against.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// The trust anchors.
    pub anchors: Vec<TrustAnchor>,
    /// CRLs (DER) known to the verifier besides those in the package.
    pub crls: Vec<Vec<u8>>,
    /// The time to check validity at.
    pub now: OffsetDateTime,
}

/// A package that verified: the manifest, its exact bytes, the load files, who signed.
#[derive(Debug, Clone)]
pub struct VerifiedPackage {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The signed bytes of `manifest.toml`.
    pub manifest_bytes: Vec<u8>,
    /// The DER CMS signature (`manifest.p7s`).
    pub signature_der: Vec<u8>,
    /// The load files, in manifest order: (application name, CAP bytes).
    pub load_files: Vec<(String, Vec<u8>)>,
    /// The signer certificate (DER).
    pub signer_der: Vec<u8>,
    /// The signer's subject, for people.
    pub signer_subject: String,
    /// Index into [`TrustPolicy::anchors`] of the anchor the chain ended at.
    pub anchor: usize,
    /// SHA-256 of the whole archive, lower-case hex: the package's identity in records.
    pub package_sha256: String,
    /// The signing-time attribute of the signature, if it has one (what the signer says).
    pub signing_time: Option<OffsetDateTime>,
}

/// The signature algorithm of a [`PackageSigner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// ECDSA on P-256 with SHA-256 (DER `Ecdsa-Sig-Value`).
    EcdsaP256Sha256,
    /// RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32.
    RsaPssSha256,
}

/// The private key that signs a package (a key store's signing key or a PKCS#8 file).
pub trait PackageSigner {
    /// Its algorithm.
    fn algorithm(&self) -> SignatureAlgorithm;
    /// Signs `message` (the DER of the signed attributes), hashing with SHA-256 itself.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
}

/// What [`build`] packs.
#[derive(Debug, Clone)]
pub struct BuildInput {
    /// The provider's manifest template (fields `sha256`, `size`, `package_aid` and, if
    /// empty, `applet` are filled in from the load files).
    pub manifest: Manifest,
    /// The load files: (application name, CAP bytes), one per application.
    pub load_files: Vec<(String, Vec<u8>)>,
    /// The signer's certificate (DER) and then any intermediates, leaf first.
    pub chain_der: Vec<Vec<u8>>,
    /// CRLs (DER) to carry for offline revocation checks.
    pub crls_der: Vec<Vec<u8>>,
    /// The signing time written into the signed attributes.
    pub signing_time: OffsetDateTime,
}

/// Builds and signs a package; returns the archive bytes.
///
/// Fills in each application's `load_file`, `sha256`, `size`, `package_aid` and (when
/// empty) `applet` from its CAP file, checks the manifest, signs its TOML text and checks the
/// signature under the signer's certificate (a key that does not match it is refused here,
/// not at the outlet). Errors are [`Refusal`]s too: `Malformed` for a bad input.
pub fn build(input: BuildInput, signer: &dyn PackageSigner) -> Result<Vec<u8>, Refusal> {
    let BuildInput {
        mut manifest,
        load_files,
        chain_der,
        crls_der,
        signing_time,
    } = input;
    let bad = |m: String| Err(Refusal::Malformed(m));
    for (i, (name, _)) in load_files.iter().enumerate() {
        if manifest.application(name).is_none() {
            return bad(format!(
                "load file for {name:?}, which the manifest does not name"
            ));
        }
        if load_files[..i].iter().any(|(n, _)| n == name) {
            return bad(format!("two load files for {name:?}"));
        }
    }
    let mut ordered: Vec<(String, &[u8])> = Vec::with_capacity(load_files.len());
    for app in &mut manifest.applications {
        let Some((_, cap)) = load_files.iter().find(|(n, _)| *n == app.name) else {
            return bad(format!("no load file for application {:?}", app.name));
        };
        if cap.len() as u64 > MAX_LOAD_FILE_BYTES {
            return Err(Refusal::Oversized(format!(
                "load file of {:?}: {} bytes; at most {MAX_LOAD_FILE_BYTES}",
                app.name,
                cap.len()
            )));
        }
        let parsed = gp::cap::CapFile::from_bytes(cap)
            .map_err(|e| Refusal::Malformed(format!("load file of {:?}: {e}", app.name)))?;
        app.load_file = format!("load/{}.cap", app.name);
        app.sha256 = hex_lower(&Sha256::digest(cap));
        app.size = cap.len() as u64;
        app.package_aid = parsed.package_aid().to_hex();
        if app.applet.is_empty() {
            match parsed.applet_aids().first() {
                Some(aid) => app.applet = aid.to_hex(),
                None => return bad(format!("the CAP file of {:?} has no applet", app.name)),
            }
        }
        check_applet(app, &parsed)?;
        ordered.push((app.load_file.clone(), cap.as_slice()));
    }
    manifest.check()?;
    let text = manifest.to_toml();
    let p7s = signature::sign(text.as_bytes(), &chain_der, &crls_der, signing_time, signer)?;
    archive::write(text.as_bytes(), &p7s, &ordered)
}

/// Verifies a package against `policy` (see [`Refusal`] for every reason it refuses).
///
/// In order: the archive (size, entries, names, inflated sizes), the manifest (strict TOML
/// and [`Manifest::check`]; the load files in the archive are exactly the manifest's), the
/// CMS signature and message digest, the signer's certification path to a trust anchor
/// (validity at `policy.now`, CRLs of the package and of the policy), the manifest's
/// validity period, every load file's SHA-256, size, package AID and applet, and the
/// privileges against the anchor's [`TrustAnchor::grantable`].
pub fn verify(archive: &[u8], policy: &TrustPolicy) -> Result<VerifiedPackage, Refusal> {
    let contents = archive::read(archive)?;
    let text = std::str::from_utf8(&contents.manifest)
        .map_err(|_| Refusal::Malformed("manifest.toml is not UTF-8".into()))?;
    let manifest = Manifest::from_toml(text)?;
    for (entry, _) in &contents.load_files {
        if !manifest.applications.iter().any(|a| a.load_file == *entry) {
            return Err(Refusal::Malformed(format!(
                "{entry} is not in the manifest"
            )));
        }
    }

    let signed = signature::verify(&contents.signature, &contents.manifest)?;
    let anchor = chain::validate(&signed.signer, &signed.certificates, &signed.crls, policy)?;
    if policy.now < manifest.not_before || policy.now > manifest.not_after {
        return Err(Refusal::OutsideValidity(format!(
            "valid from {} until {}, not at {}",
            rfc3339(manifest.not_before),
            rfc3339(manifest.not_after),
            rfc3339(policy.now)
        )));
    }

    let mut load_files = Vec::with_capacity(manifest.applications.len());
    for app in &manifest.applications {
        let Some((_, cap)) = contents
            .load_files
            .iter()
            .find(|(e, _)| *e == app.load_file)
        else {
            return Err(Refusal::Malformed(format!("no {}", app.load_file)));
        };
        let expected = apdu::parse_hex(&app.sha256).unwrap_or_default();
        if Sha256::digest(cap).as_slice() != expected.as_slice() {
            return Err(Refusal::HashMismatch(format!(
                "{} (SHA-256)",
                app.load_file
            )));
        }
        if cap.len() as u64 != app.size {
            return Err(Refusal::HashMismatch(format!("{} (size)", app.load_file)));
        }
        let parsed = gp::cap::CapFile::from_bytes(cap)
            .map_err(|e| Refusal::Malformed(format!("{}: {e}", app.load_file)))?;
        if !parsed
            .package_aid()
            .to_hex()
            .eq_ignore_ascii_case(&app.package_aid)
        {
            return Err(Refusal::HashMismatch(format!(
                "{} (its package AID is {}, the manifest says {})",
                app.load_file,
                parsed.package_aid(),
                app.package_aid
            )));
        }
        check_applet(app, &parsed)?;
        load_files.push((app.name.clone(), cap.clone()));
    }

    let grantable = policy.anchors[anchor].grantable;
    for app in &manifest.applications {
        for name in &app.privileges {
            let privilege: gp::Privilege = name
                .parse()
                .map_err(|_| Refusal::Malformed(format!("unknown privilege {name:?}")))?;
            if !grantable.contains(privilege) {
                return Err(Refusal::PrivilegeNotAllowed(format!(
                    "{privilege} (application {:?})",
                    app.name
                )));
            }
        }
    }

    Ok(VerifiedPackage {
        manifest_bytes: contents.manifest,
        signature_der: contents.signature,
        load_files,
        signer_subject: signed.signer.subject(),
        signer_der: signed.signer.der,
        anchor,
        package_sha256: hex_lower(&Sha256::digest(archive)),
        signing_time: signed.signing_time,
        manifest,
    })
}

/// The applet to instantiate is one of the CAP file's.
fn check_applet(app: &Application, cap: &gp::cap::CapFile) -> Result<(), Refusal> {
    if cap
        .applet_aids()
        .iter()
        .any(|a| a.to_hex().eq_ignore_ascii_case(&app.applet))
    {
        return Ok(());
    }
    Err(Refusal::Malformed(format!(
        "application {:?}: applet {} is not in its CAP file",
        app.name, app.applet
    )))
}

/// An instant as RFC 3339 text, for messages.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn hex_lower(bytes: &[u8]) -> String {
    apdu::hex(bytes).to_ascii_lowercase()
}
