//! Delegated Management and DAP on the command line: token and DAP keys (`--dm-key`,
//! `--dap-key`), pre-computed tokens (`--dm-token`, `cardwright token sign`), receipt
//! verification and the receipt log (`--receipt-key`, `--receipts`).
//!
//! The receipt log is one text line per verified receipt:
//! `receipt counter=N op=OP object=AIDS sd-unique-data=HEX receipt=HEX`. One log per
//! receipt key (one card's receipt generation domain): the highest counter in it is the last
//! one seen, and a receipt must come above it (a replayed or reset counter is refused).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use gp::dm::{DmSigningKey, DmVerifyingKey, ReceiptContext, ReceiptKey, Scheme, Signer};
use gpclient::dm::{Delegation, ReceiptCheck, TokenFile, TokenSource, VerifiedReceipt};
use gpclient::GpClient;
use transport::CardChannel;

use crate::cli::{DmArgs, TokenCommand, TokenOp, TokenSignArgs};

/// A signing key in the key store (software or PKCS#11: it never leaves an HSM). P-256: the
/// store's ECDSA signature (DER) re-encoded as GP's plain `r ‖ s`; RSA (2048/3072): PSS with
/// SHA-256, MGF1-SHA-256, salt 32.
struct KmsSigner(Box<dyn kms::SigningKey>);

impl std::fmt::Debug for KmsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KmsSigner({})", self.0.label())
    }
}

impl Signer for KmsSigner {
    fn scheme(&self) -> Scheme {
        match self.0.algorithm() {
            kms::SigningAlgorithm::P256 => Scheme::EcdsaP256Sha256,
            _ => Scheme::RsaPssSha256,
        }
    }
    fn sign(&self, message: &[u8]) -> gp::Result<Vec<u8>> {
        if self.scheme() == Scheme::RsaPssSha256 {
            return self
                .0
                .sign_pss_sha256(message)
                .map_err(|e| gp::Error::Encoding(format!("key store signature: {e}")));
        }
        let der = self
            .0
            .sign_sha256(message)
            .map_err(|e| gp::Error::Encoding(format!("key store signature: {e}")))?;
        let sig = p256::ecdsa::Signature::from_der(&der)
            .map_err(|e| gp::Error::Encoding(format!("key store signature: {e}")))?;
        Ok(sig.to_bytes().to_vec())
    }
}

/// A token or DAP key from the command line (see `--dm-key`).
pub fn signer(spec: &str, option: &str) -> Result<Box<dyn Signer + Send + Sync>> {
    if spec.starts_with("pkcs11:") || spec.starts_with("file:") {
        let (config, label) = split_label(spec)
            .ok_or_else(|| anyhow!("{option} {spec}: a key-store key needs `label=LABEL`"))?;
        let store = kms::open_signing(&config).with_context(|| format!("{option}: key store"))?;
        let key = store
            .signing_key(&label)
            .with_context(|| format!("{option}: key {label:?}"))?;
        return Ok(Box::new(KmsSigner(key)));
    }
    let bytes = std::fs::read(spec).with_context(|| format!("{option}: cannot read {spec}"))?;
    if let Ok(k) = DmSigningKey::from_pkcs8(&bytes) {
        return Ok(Box::new(k));
    }
    let text = String::from_utf8_lossy(&bytes);
    let hex = apdu::parse_hex(text.trim())
        .map_err(|_| anyhow!("{option} {spec}: neither a PKCS#8 RSA/P-256 key nor AES key hex"))?;
    Ok(Box::new(
        DmSigningKey::aes(&hex).with_context(|| option.to_string())?,
    ))
}

/// `pkcs11:…?a=b&label=L` → (`pkcs11:…?a=b`, `L`).
pub(crate) fn split_label(spec: &str) -> Option<(String, String)> {
    let (base, query) = spec.split_once('?')?;
    let mut label = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("label=") {
            Some(l) => {
                label = Some(l.to_string());
                false
            }
            None => true,
        })
        .collect();
    let config = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Some((config, label?))
}

/// A public key file for PUT KEY: SPKI, or the public part of a PKCS#8 private key.
pub fn public_key(path: &Path) -> Result<DmVerifyingKey> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if let Ok(k) = DmVerifyingKey::from_spki(&bytes) {
        return Ok(k);
    }
    DmSigningKey::from_pkcs8(&bytes)
        .map(|k| k.verifying_key())
        .with_context(|| {
            format!(
                "{}: not an RSA or P-256 public or private key",
                path.display()
            )
        })
}

/// The receipt log of a session.
pub struct ReceiptLog {
    path: PathBuf,
}

impl ReceiptLog {
    fn last_counter(&self) -> Result<Option<u16>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("{}", self.path.display())),
        };
        let mut last = None;
        for line in text.lines() {
            let n = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("counter="))
                .and_then(|n| n.parse::<u16>().ok());
            if let Some(n) = n {
                last = last.max(Some(n));
            }
        }
        Ok(last)
    }

    fn append(&self, receipts: &[VerifiedReceipt]) -> Result<()> {
        if receipts.is_empty() {
            return Ok(());
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("receipt log {}", self.path.display()))?;
        for r in receipts {
            writeln!(f, "{}", log_line(r))?;
        }
        f.sync_all()?;
        Ok(())
    }
}

fn context_objects(c: &ReceiptContext) -> String {
    match c {
        ReceiptContext::Load {
            load_file,
            security_domain,
        } => format!("{load_file},{security_domain}"),
        ReceiptContext::Install {
            load_file,
            application,
        } => format!("{load_file},{application}"),
        ReceiptContext::Extradition { from, object, to } => format!("{from},{object},{to}"),
        ReceiptContext::RegistryUpdate {
            from,
            application,
            to,
            ..
        } => format!("{from},{application},{to}"),
        ReceiptContext::Delete { aid } => aid.to_string(),
    }
}

fn log_line(r: &VerifiedReceipt) -> String {
    format!(
        "receipt counter={} op={} object={} sd-unique-data={} receipt={}",
        r.confirmation.counter,
        r.context.name().replace(' ', "-"),
        context_objects(&r.context),
        apdu::hex(&r.confirmation.sd_unique_data),
        apdu::hex(&r.confirmation.receipt)
    )
}

fn hex_or_file(v: &str, option: &str) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let text = if Path::new(v).is_file() {
        zeroize::Zeroizing::new(
            std::fs::read_to_string(v).with_context(|| format!("{option}: cannot read {v}"))?,
        )
    } else {
        zeroize::Zeroizing::new(v.to_string())
    };
    Ok(zeroize::Zeroizing::new(
        apdu::parse_hex(text.trim())
            .map_err(|_| anyhow!("{option}: not hex (or a file of hex)"))?,
    ))
}

/// The Delegated Management settings of a `card` command, and its receipt log.
pub fn delegation(dm: &DmArgs) -> Result<Option<(Delegation, Option<ReceiptLog>)>> {
    let tokens = match (&dm.dm_key, &dm.dm_token) {
        (Some(k), _) => Some(TokenSource::Sign(signer(k, "--dm-key")?)),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("--dm-token: cannot read {}", f.display()))?;
            Some(TokenSource::File(
                TokenFile::parse(&text).with_context(|| format!("--dm-token {}", f.display()))?,
            ))
        }
        (None, None) => None,
    };
    let (receipts, log) = match &dm.receipt_key {
        Some(k) => {
            let (des, v) = match k.strip_prefix("des:") {
                Some(rest) => (true, rest),
                None => (false, k.as_str()),
            };
            let bytes = hex_or_file(v, "--receipt-key")?;
            let key = if des {
                ReceiptKey::des3(&bytes)?
            } else {
                ReceiptKey::aes(&bytes)?
            };
            let k = v;
            let path = match &dm.receipts {
                Some(p) => p.clone(),
                None if Path::new(k).is_file() => PathBuf::from(format!("{k}.receipts")),
                None => PathBuf::from("cardwright-receipts.log"),
            };
            let log = ReceiptLog { path };
            let check = ReceiptCheck {
                key,
                last_counter: log.last_counter()?,
            };
            (Some(check), Some(log))
        }
        None => (None, None),
    };
    if tokens.is_none() && receipts.is_some() {
        bail!("--receipt-key needs --dm-key or --dm-token (receipts answer delegated operations)");
    }
    Ok(tokens.map(|t| (Delegation::new(Some(t), receipts), log)))
}

/// After the command (whatever its outcome): prints and logs the receipts verified.
pub fn finish<C: CardChannel>(cl: &mut GpClient<C>, log: Option<&ReceiptLog>) -> Result<()> {
    let Some(d) = cl.take_delegation() else {
        return Ok(());
    };
    for r in d.receipts() {
        println!(
            "receipt verified: {} {} (confirmation counter {})",
            r.context.name(),
            context_objects(&r.context),
            r.confirmation.counter
        );
    }
    if let Some(log) = log {
        log.append(d.receipts())?;
        if !d.receipts().is_empty() {
            println!("receipts kept in {}", log.path.display());
        }
    }
    Ok(())
}

/// A DAP block signer from `--dap-key`/`--dap-sd`.
pub fn dap(
    key: Option<&str>,
    sd: Option<&str>,
) -> Result<Vec<(gp::Aid, Arc<dyn Signer + Send + Sync>)>> {
    match (key, sd) {
        (Some(k), Some(sd)) => {
            let sd: gp::Aid = sd
                .parse()
                .map_err(|e| anyhow!("--dap-sd '{sd}' is not an AID: {e}"))?;
            Ok(vec![(sd, Arc::from(signer(k, "--dap-key")?))])
        }
        _ => Ok(Vec::new()),
    }
}

/// `cardwright token …`.
pub fn run(cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Sign(a) => sign(a),
    }
}

fn aid(v: &str) -> Result<gp::Aid> {
    v.parse().map_err(|e| anyhow!("'{v}' is not an AID: {e}"))
}

fn sign(a: TokenSignArgs) -> Result<()> {
    use gp::commands::Delete;
    use gp::dm::TokenInput;
    let key = signer(&a.dm_key, "--dm-key")?;
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    match a.op {
        TokenOp::Install(i) => {
            let bytes = std::fs::read(&i.cap)
                .with_context(|| format!("cannot read {}", i.cap.display()))?;
            let cap = gp::cap::CapFile::from_bytes(&bytes)
                .with_context(|| format!("{} is not a valid CAP file", i.cap.display()))?;
            let opts = crate::card_cmd::install_options(&i, Vec::new())?;
            let mut hash_opts = opts.clone();
            if i.dap_key.is_some() && hash_opts.hash.is_none() {
                hash_opts.hash = Some("sha256".into());
            }
            let hash = gpclient::ops::install_hash(&cap, &hash_opts)?;
            let (for_load, installs) = gpclient::ops::install_plan(&cap, &opts, hash)?;
            inputs.push(("INSTALL [for load]".into(), for_load.token_input()?));
            for i in installs {
                inputs.push(("INSTALL [for install]".into(), i.token_input()?));
            }
        }
        TokenOp::Delete { aid: a, related } => {
            inputs.push((
                "DELETE".into(),
                Delete::object(aid(&a)?, related).token_input()?,
            ));
        }
        TokenOp::Extradite { aid: a, to } => {
            inputs.push((
                "INSTALL [for extradition]".into(),
                extradition(aid(&a)?, aid(&to)?).token_input()?,
            ));
        }
        TokenOp::CreateDomain {
            aid: a,
            privs,
            params,
            to,
        } => {
            let (install, _) =
                crate::card_cmd::create_domain_install(&a, &privs, params.as_deref())?;
            inputs.push(("INSTALL [for install]".into(), install.token_input()?));
            if let Some(to) = to {
                inputs.push((
                    "INSTALL [for extradition]".into(),
                    extradition(aid(&a)?, aid(&to)?).token_input()?,
                ));
            }
        }
    }
    let mut file = match (&a.out, a.append) {
        (Some(p), true) if p.exists() => TokenFile::parse(&std::fs::read_to_string(p)?)?,
        _ => TokenFile::default(),
    };
    for (what, input) in inputs {
        let token = key.sign(&input)?;
        eprintln!(
            "signed {what} token ({}, {} bytes)",
            key.scheme(),
            token.len()
        );
        file.entries.push((input, token));
    }
    match &a.out {
        Some(p) => {
            atomic_file::write(p, file.to_text().as_bytes(), atomic_file::Options::public())
                .with_context(|| format!("cannot write {}", p.display()))?;
            println!("{} token(s) in {}", file.entries.len(), p.display());
        }
        None => print!("{}", file.to_text()),
    }
    Ok(())
}

fn extradition(object: gp::Aid, to: gp::Aid) -> gp::commands::Install {
    gp::commands::Install::ForExtradition {
        security_domain: to,
        application: object,
        params: Vec::new(),
        token: Vec::new(),
    }
}
