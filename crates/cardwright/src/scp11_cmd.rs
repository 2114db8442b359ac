//! SCP11 on the command line: the `card --scp 11a|11b|11c` options, `card scp11 setup|certs`
//! and the certificates (X.509 with `pki::scp11`, or GP `7F21`) the key store's CA issues
//! for SD and OCE keys.

use crate::cli::{CertFormat, Connect, Scp11Op, Scp11SetupArgs};
use anyhow::{anyhow, bail, Context, Result};
use gp::cert::Certificate;
use gp::scp11::{KeyRef, Scp11StoreData};
use gpclient::scp11::{OceKey, Scp11Options, SdTrust};
use gpclient::GpClient;
use kms::{SigningAlgorithm, SigningKey};
use scp::scp11::{Curve, PrivateKey, PublicKey, Variant};
use sha2::{Digest, Sha256};
use std::path::Path;
use transport::CardChannel;

type Client = GpClient<Box<dyn CardChannel>>;

/// The SCP11 variant asked for with `--scp 11a|11b|11c`, if any.
pub fn variant(c: &Connect) -> Option<Variant> {
    c.scp.as_deref().and_then(|s| s.parse().ok())
}

/// Reads a certificate file: PEM (any label) or binary (X.509 DER `30…` or GP `7F21…`).
pub fn read_cert_file(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let der = if bytes.starts_with(b"-----BEGIN") {
        let (_, der) = pem_rfc7468::decode_vec(&bytes)
            .map_err(|e| anyhow!("{}: not a PEM file: {e}", path.display()))?;
        der
    } else {
        bytes
    };
    Certificate::parse(&der).map_err(|e| {
        anyhow!(
            "{}: not an X.509 or GP (7F21) certificate: {e}",
            path.display()
        )
    })?;
    Ok(der)
}

/// Reads an EC private key file (PEM or DER; PKCS#8 or SEC1 `EC PRIVATE KEY`).
fn read_key_file(path: &Path) -> Result<PrivateKey> {
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    let der = if bytes.starts_with(b"-----BEGIN") {
        let (_, der) = pem_rfc7468::decode_vec(&bytes)
            .map_err(|e| anyhow!("{}: not a PEM file: {e}", path.display()))?;
        zeroize::Zeroizing::new(der)
    } else {
        bytes
    };
    PrivateKey::from_der(&der).map_err(|e| anyhow!("--oce-key {}: {e}", path.display()))
}

fn curve_of(k: kms::EckaCurve) -> Curve {
    match k {
        kms::EckaCurve::P256 => Curve::P256,
        kms::EckaCurve::P384 => Curve::P384,
    }
}

/// `--oce-key FILE | pkcs11:…&label=L | LABEL` (a key-agreement key in --keystore).
fn oce_key(c: &Connect, spec: &str) -> Result<OceKey> {
    let from_store = |config: &str, label: &str| -> Result<OceKey> {
        let store = kms::open_agreement(config).with_context(|| format!("key store {config}"))?;
        let key = store
            .agreement_key(label)
            .with_context(|| format!("--oce-key {label}"))?;
        let public = PublicKey::from_sec1(curve_of(key.curve()), key.public_point())?;
        Ok(OceKey {
            key: Box::new(key),
            public,
        })
    };
    if let Some(rest) = spec.strip_prefix("pkcs11:") {
        // The token's configuration as `keys --keystore` takes it, plus `label=`.
        let (module, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut label = None;
        let params: Vec<&str> = query
            .split('&')
            .filter(|p| match p.strip_prefix("label=") {
                Some(l) => {
                    label = Some(l.to_string());
                    false
                }
                None => !p.is_empty(),
            })
            .collect();
        let label = label.ok_or_else(|| {
            anyhow!("--oce-key pkcs11:…: name the key with &label=LABEL (a key made by `keys create-oce-key`)")
        })?;
        let config = format!("pkcs11:{module}?{}", params.join("&"));
        return from_store(&config, &label);
    }
    let path = Path::new(spec);
    if path.exists() {
        let key = read_key_file(path)?;
        let public = key.public_key().clone();
        return Ok(OceKey {
            key: Box::new(key),
            public,
        });
    }
    if kms::validate_signing_label(spec).is_err() {
        bail!("--oce-key {spec}: no such file, and not a key label");
    }
    from_store(&c.keystore, spec)
}

/// The SCP11 options of the command line for `variant`.
pub fn options(c: &Connect, variant: Variant, level: scp::SecurityLevel) -> Result<Scp11Options> {
    let sd_trust = match (&c.sd_trust, c.sd_trust_any) {
        (Some(f), _) => {
            let der = read_cert_file(f).with_context(|| "--sd-trust".to_string())?;
            SdTrust::Certificate(Box::new(Certificate::parse(&der)?))
        }
        (None, true) => SdTrust::Any,
        (None, false) => bail!(
            "--scp {variant}: say which CA the card's certificate must chain to with --sd-trust \
             FILE (a CA certificate; `card scp11 setup --ca-cert-out` writes one), or accept \
             the card's key unverified with --sd-trust-any (its fingerprint is printed)"
        ),
    };
    let mut o = Scp11Options::new(variant, c.scp11_kvn, sd_trust);
    if let Some(kid) = c.scp11_kid {
        o.params.kid = kid;
    }
    o.params.key_usage = match level.0 {
        0x33 => 0x3C,
        0x11 => 0x34,
        0x03 => 0x1C,
        0x01 => 0x14,
        _ => bail!(
            "--security-level {level}: SCP11 offers mac, mac+enc, mac+rmac and \
             mac+enc+rmac+renc (key usage 14, 1C, 34, 3C)"
        ),
    };
    o.sd =
        c.sd.as_deref()
            .map(|s| s.parse().map_err(|e| anyhow!("--sd {s}: {e}")))
            .transpose()?;
    o.oce_anchor = KeyRef::new(gp::scp11::OCE_KID, c.oce_kvn.unwrap_or(c.scp11_kvn));
    if variant.authenticates_oce() {
        let spec = c.oce_key.as_deref().ok_or_else(|| {
            anyhow!(
                "--scp {variant} authenticates the off-card entity: give --oce-key and --oce-cert"
            )
        })?;
        if c.oce_cert.is_empty() {
            bail!("--scp {variant}: give the OCE certificate chain with --oce-cert (repeat, leaf last)");
        }
        o.oce_chain = c
            .oce_cert
            .iter()
            .map(|p| read_cert_file(p))
            .collect::<Result<_>>()?;
        o.oce_key = Some(oce_key(c, spec)?);
    } else if c.oce_key.is_some() || !c.oce_cert.is_empty() {
        bail!("--scp 11b does not authenticate the off-card entity: drop --oce-key/--oce-cert, or use --scp 11a/11c");
    }
    Ok(o)
}

/// Opens the SCP11 channel and says what was trusted.
pub fn open(
    cl: &mut Client,
    c: &Connect,
    variant: Variant,
    level: scp::SecurityLevel,
) -> Result<()> {
    let o = options(c, variant, level)?;
    let info = cl.open_scp11(&o)?;
    if !info.verified {
        eprintln!(
            "warning: the card's SCP11 certificate was NOT verified (--sd-trust-any); its SHA-256 \
             fingerprint is {}",
            info.sd_fingerprint()
        );
    }
    Ok(())
}

/// The identifier, CA check and GP certificates are decided once, in `tsm::sd_cert`.
pub use tsm::sd_cert::key_id;

/// The key store's CA (a P-256 signing key) as a public key.
pub fn ca_public(ca: &dyn SigningKey) -> Result<PublicKey> {
    Ok(tsm::sd_cert::ca_public(ca)?)
}

/// A GP certificate (`7F21`) for `subject` signed by the CA (`tsm::sd_cert::issue_gp_cert`).
pub fn issue_gp_cert(
    ca: &dyn SigningKey,
    subject: &PublicKey,
    key_usage: [u8; 2],
    days: u32,
) -> Result<Vec<u8>> {
    Ok(tsm::sd_cert::issue_gp_cert(ca, subject, key_usage, days)?)
}

/// The CA's own, self-signed GP certificate (what `--sd-trust` takes).
pub fn ca_gp_cert(ca: &dyn SigningKey, days: u32) -> Result<Vec<u8>> {
    Ok(tsm::sd_cert::ca_gp_cert(ca, days)?)
}

/// A key-store signing key (P-256) as the [`pki::CaSigner`] of X.509 certificates.
struct StoreCa<'a> {
    key: &'a dyn SigningKey,
    public: pki::PublicKey,
}

impl std::fmt::Debug for StoreCa<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCa")
            .field("label", &self.key.label())
            .finish_non_exhaustive()
    }
}

impl pki::CaSigner for StoreCa<'_> {
    fn public_key(&self) -> &pki::PublicKey {
        &self.public
    }

    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, pki::SignerError> {
        self.key
            .sign_sha256(message)
            .map_err(|e| pki::SignerError(e.to_string()))
    }
}

fn store_ca(ca: &dyn SigningKey) -> Result<StoreCa<'_>> {
    ca_public(ca)?;
    let public = pki::PublicKey::from_spki_der(ca.public_key_spki())
        .with_context(|| format!("CA {}", ca.label()))?;
    Ok(StoreCa { key: ca, public })
}

/// The subject (and issuer) name of the X.509 certificates of the key store's CA `label`.
fn x509_ca_name(label: &str) -> pki::Subject {
    pki::Subject::new(format!("Cardwright SCP11 CA {label}"))
}

/// X.509 parameters: subject CN `cn`, a random serial, valid from a minute ago (clock skew)
/// for `days`.
fn x509_params(cn: &str, days: u32) -> Result<pki::scp11::CertificateParams> {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0)?;
    Ok(pki::scp11::CertificateParams::new(
        pki::Subject::new(cn),
        now - time::Duration::MINUTE,
        Some(now + time::Duration::days(i64::from(days))),
    ))
}

/// An SCP11 certificate (keyUsage key agreement) for `subject`, signed by the CA, valid from
/// today for `days`: X.509 with subject CN `cn` (Amendment F §6, `pki::scp11`), or GP `7F21`.
pub fn issue_cert(
    format: CertFormat,
    ca: &dyn SigningKey,
    subject: &PublicKey,
    cn: &str,
    days: u32,
) -> Result<Vec<u8>> {
    match format {
        CertFormat::Gp => issue_gp_cert(ca, subject, gp::cert::KEY_USAGE_KEY_AGREEMENT, days),
        CertFormat::X509 => Ok(pki::scp11::ecka_certificate(
            &store_ca(ca)?,
            &x509_ca_name(ca.label()),
            &subject.to_spki_der()?,
            &x509_params(cn, days)?,
        )?),
    }
}

/// The CA's own self-signed certificate (what `--sd-trust` takes), X.509 or GP `7F21`.
pub fn ca_cert(format: CertFormat, ca: &dyn SigningKey, days: u32) -> Result<Vec<u8>> {
    match format {
        CertFormat::Gp => ca_gp_cert(ca, days),
        CertFormat::X509 => {
            let name = x509_ca_name(ca.label());
            let mut params = x509_params(&name.common_name, days)?;
            params.subject = name;
            Ok(pki::scp11::ca_certificate(&store_ca(ca)?, &params)?)
        }
    }
}

fn pem(label: &str, der: &[u8]) -> Result<String> {
    pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der)
        .map_err(|e| anyhow!("PEM: {e}"))
}

/// Writes a certificate: PEM `CERTIFICATE` for X.509, PEM `GP CERTIFICATE` for `7F21`.
pub fn write_cert(path: &Path, der: &[u8]) -> Result<()> {
    let label = if der.first() == Some(&0x30) {
        "CERTIFICATE"
    } else {
        "GP CERTIFICATE"
    };
    std::fs::write(path, pem(label, der)?).with_context(|| format!("writing {}", path.display()))
}

pub fn run(c: &Connect, op: Scp11Op, cl: &mut Client) -> Result<()> {
    match op {
        Scp11Op::Certs { kid, kvn, out } => {
            let key = KeyRef::new(
                kid.or(c.scp11_kid).unwrap_or(0x13),
                kvn.unwrap_or(c.scp11_kvn),
            );
            let chain = cl.sd_certificates(key)?;
            println!(
                "SD key KID {:02X} KVN {:02X}: {} certificate(s), leaf last",
                key.kid,
                key.kvn,
                chain.len()
            );
            for (i, der) in chain.iter().enumerate() {
                let cert = Certificate::parse(der);
                let (kind, public) = match &cert {
                    Ok(Certificate::Gp(_)) => {
                        ("GP 7F21", cert.as_ref().ok().map(|c| c.public_key()))
                    }
                    Ok(Certificate::X509(_)) => {
                        ("X.509", cert.as_ref().ok().map(|c| c.public_key()))
                    }
                    Err(_) => ("unreadable", None),
                };
                println!(
                    "[{i}] {kind}, {} bytes, SHA-256 {}",
                    der.len(),
                    apdu::hex(&Sha256::digest(der))
                );
                if let Ok(cert) = &cert {
                    println!("    serial {}", apdu::hex(cert.serial()));
                }
                if let Some(p) = public {
                    println!("    public key {} {}", p.curve(), apdu::hex(p.to_sec1()));
                }
                if let Some(base) = &out {
                    let mut name = base.as_os_str().to_owned();
                    name.push(format!(".{i}"));
                    write_cert(Path::new(&name), der)?;
                }
            }
            Ok(())
        }
        Scp11Op::Setup(a) => setup(c, a, cl),
    }
}

fn setup(c: &Connect, a: Scp11SetupArgs, cl: &mut Client) -> Result<()> {
    let variant: Variant = a.variant.parse()?;
    let sd_key = KeyRef::new(variant.default_kid(), a.kvn);
    if !(1..=0x7F).contains(&a.kvn) {
        bail!("--kvn {:#04x}: a key version number is 0x01 to 0x7F", a.kvn);
    }
    let serials = a
        .allow
        .iter()
        .map(|s| apdu::parse_hex(s).with_context(|| format!("--allow {s}")))
        .collect::<Result<Vec<_>>>()?;
    let store =
        kms::open_signing(&c.keystore).with_context(|| format!("key store {}", c.keystore))?;
    let (ca, created) = store.signing_key_or_create(&a.ca, SigningAlgorithm::P256)?;
    if created {
        eprintln!("created CA signing key {} (P-256) in {}", a.ca, c.keystore);
    }
    let ca_pub = ca_public(ca.as_ref())?;
    // 1. The SD key pair, generated on the card.
    let pk_sd = gpclient::ops::generate_ec_key(cl, sd_key, a.replace_kvn, Curve::P256)?;
    println!(
        "generated SD key KID {:02X} KVN {:02X} on the card: {}",
        sd_key.kid,
        sd_key.kvn,
        apdu::hex(pk_sd.to_sec1())
    );
    // 2. Its certificate, signed by the CA, stored on the card.
    let cert = issue_cert(
        a.cert_format,
        ca.as_ref(),
        &pk_sd,
        &format!(
            "SCP11 SD KID {:02X} KVN {:02X} {}",
            sd_key.kid,
            sd_key.kvn,
            apdu::hex(&key_id(&pk_sd))
        ),
        a.days,
    )?;
    gpclient::ops::store_scp11_data(
        cl,
        &Scp11StoreData::CertificateBundle {
            key: sd_key,
            certificates: vec![cert.clone()],
        },
    )?;
    println!(
        "stored its certificate ({}, {} bytes, SHA-256 {})",
        a.cert_format,
        cert.len(),
        apdu::hex(&Sha256::digest(&cert))
    );
    // 3. The OCE trust anchor and allowlist.
    let oce_kvn = a.oce_kvn.unwrap_or(a.kvn);
    let anchor = KeyRef::new(gp::scp11::OCE_KID, oce_kvn);
    if !a.no_oce_anchor {
        gpclient::ops::put_ec_public_key(cl, anchor, 0, &ca_pub)?;
        println!(
            "loaded the OCE trust anchor (CA {}) as KID {:02X} KVN {:02X}",
            a.ca, anchor.kid, anchor.kvn
        );
    }
    if !serials.is_empty() {
        gpclient::ops::store_scp11_data(
            cl,
            &Scp11StoreData::Allowlist {
                key: anchor,
                serials: serials.clone(),
            },
        )?;
        println!(
            "stored an allowlist of {} OCE serial number(s)",
            serials.len()
        );
    }
    if let Some(path) = &a.ca_cert_out {
        write_cert(
            path,
            &ca_cert(a.cert_format, ca.as_ref(), a.days.max(3650))?,
        )?;
        println!(
            "wrote the CA certificate to {} (use it as --sd-trust)",
            path.display()
        );
    }
    Ok(())
}

/// `keys create-oce-key`: a key-agreement key in the store, and optionally its certificate.
pub fn create_oce_key(
    keystore: &str,
    label: &str,
    curve: &str,
    ca: Option<&str>,
    cert_out: Option<&Path>,
    days: u32,
    format: CertFormat,
) -> Result<()> {
    let curve: kms::EckaCurve = curve.parse()?;
    let store = kms::open_agreement(keystore).with_context(|| format!("key store {keystore}"))?;
    let spki = store.create_agreement_key(label, curve)?;
    let key = store.agreement_key(label)?;
    println!(
        "created OCE key-agreement key {label} ({curve}); public key {}",
        apdu::hex(key.public_point())
    );
    println!("{}", pem("PUBLIC KEY", &spki)?.trim_end());
    if let Some(ca_label) = ca {
        let out = cert_out.ok_or_else(|| anyhow!("--ca needs --cert-out FILE"))?;
        let signing = kms::open_signing(keystore)?;
        let ca = signing.signing_key(ca_label)?;
        let public = PublicKey::from_sec1(curve_of(curve), key.public_point())?;
        let cert = issue_cert(
            format,
            ca.as_ref(),
            &public,
            &format!("SCP11 OCE {label}"),
            days,
        )?;
        write_cert(out, &cert)?;
        let parsed = Certificate::parse(&cert)?;
        println!(
            "wrote its certificate ({format}, serial {}) signed by CA {ca_label} to {}",
            apdu::hex(parsed.serial()),
            out.display()
        );
    }
    Ok(())
}

/// `keys ca-cert`: the CA's self-signed certificate, for `--sd-trust` and OCE chains.
pub fn export_ca_cert(
    keystore: &str,
    ca: &str,
    out: &Path,
    days: u32,
    format: CertFormat,
) -> Result<()> {
    let signing = kms::open_signing(keystore)?;
    let (key, created) = signing.signing_key_or_create(ca, SigningAlgorithm::P256)?;
    if created {
        eprintln!("created CA signing key {ca} (P-256) in {keystore}");
    }
    write_cert(out, &ca_cert(format, key.as_ref(), days)?)?;
    println!("wrote the certificate of CA {ca} to {}", out.display());
    Ok(())
}
