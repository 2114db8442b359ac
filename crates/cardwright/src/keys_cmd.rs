//! `cardwright keys …`: base keys per card category in the key store (software file or
//! PKCS#11 HSM). Key material is never printed: only categories, versions and KCVs.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use kms::{Component, KeyKind, KeyStore};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::SystemTime;
use zeroize::Zeroizing;

#[derive(Debug, Args)]
pub struct KeysCmd {
    /// Key store: `file:PATH[?master-key-file=FILE]` (software, encrypted at rest under the
    /// master key in FILE or in CARDWRIGHT_MASTER_KEY) or
    /// `pkcs11:/path/module.so?slot=N|token=LABEL&pin-env=VAR` (an HSM).
    #[arg(
        long,
        env = "CARDWRIGHT_KEYSTORE",
        default_value = "file:cardwright-keys.json"
    )]
    pub keystore: String,
    #[command(subcommand)]
    pub op: KeysOp,
}

#[derive(Debug, Subcommand)]
pub enum KeysOp {
    /// Import a base key by components under dual control: each component is typed with its
    /// KCV (no echo on a terminal; one line each from standard input otherwise) and checked.
    ImportBase {
        /// Card category of the base key, e.g. `gold` (the platform's category of the same name).
        #[arg(long)]
        category: String,
        /// Number of components (at least 2).
        #[arg(long, default_value_t = 2)]
        components: usize,
        /// aes (derivation: SCP03 KDF / KDF3) or des (3DES, derivation: EMV CPG 2.1).
        #[arg(long, default_value = "aes", value_parser = ["aes", "des"])]
        kind: String,
        /// Expiry date, YYYY-MM-DD (UTC).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Generate a new base key inside the key store (a new version of the category).
    GenerateBase {
        /// Card category of the base key, e.g. `gold` (the platform's category of the same name).
        #[arg(long)]
        category: String,
        /// aes (derivation: SCP03 KDF / KDF3) or des (3DES, derivation: EMV CPG 2.1).
        #[arg(long, default_value = "aes", value_parser = ["aes", "des"])]
        kind: String,
        /// Key length in bytes (AES 16/24/32, 3DES 16/24).
        #[arg(long, default_value_t = 16)]
        len: usize,
        /// Expiry date, YYYY-MM-DD (UTC).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Categories, base key versions, KCVs, where stored, status and expiry.
    List,
    /// The SSD key policy (issue #10) in the platform database: show it, or set the lifetime
    /// of new SSD key versions and how long before expiry they fall due for renewal.
    Policy {
        /// The platform database: `sqlite:PATH` or `postgres://…`.
        #[arg(long, env = "CARDWRIGHT_DB", default_value = "sqlite:cardwright.db")]
        db: String,
        /// Who acts, as `tenant/user`, recorded in the audit log.
        #[arg(long, env = "CARDWRIGHT_ACTOR", default_value = "issuer/operator")]
        actor: String,
        /// Lifetime of a new SSD key version: 365d, 12h, 30m, 45s.
        #[arg(long, value_parser = crate::ssd_cmd::parse_duration)]
        ssd_lifetime: Option<std::time::Duration>,
        /// How long before expiry a key version falls due for renewal: 30d, ….
        #[arg(long, value_parser = crate::ssd_cmd::parse_duration)]
        renew_before: Option<std::time::Duration>,
    },
    /// A new version of the category's base key; older versions stay usable for rewriting cards.
    RotateBase {
        /// Card category of the base key, e.g. `gold` (the platform's category of the same name).
        #[arg(long)]
        category: String,
    },
    /// Retire a base key version for good (it derives nothing any more).
    Retire {
        /// Card category of the base key, e.g. `gold` (the platform's category of the same name).
        #[arg(long)]
        category: String,
        /// The base key version to retire.
        #[arg(long)]
        version: u32,
    },
    /// Create an SCP11 off-card entity's key-agreement key (ECKA) in the key store and print
    /// its public key; with --ca, also issue its certificate (X.509, or GP 7F21 with
    /// --cert-format gp) signed by that CA.
    CreateOceKey {
        /// Label of the new key (used as `card --oce-key LABEL`).
        #[arg(long)]
        label: String,
        /// Curve: p256 or p384.
        #[arg(long, default_value = "p256", value_parser = ["p256", "p384"])]
        curve: String,
        /// Label of a CA signing key (P-256) in the key store that certifies the new key.
        #[arg(long)]
        ca: Option<String>,
        /// Where to write the certificate (with --ca).
        #[arg(long)]
        cert_out: Option<PathBuf>,
        /// Validity of the certificate in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Form of the certificate: x509 (X.509 v3) or gp (GP 7F21).
        #[arg(long, value_enum, default_value_t = crate::cli::CertFormat::X509)]
        cert_format: crate::cli::CertFormat,
    },
    /// Write the self-signed certificate (PEM; X.509, or GP 7F21 with --cert-format gp) of a
    /// CA signing key in the key store (a P-256 key is created under the label if there is
    /// none): the `card --sd-trust` for cards set up with `card scp11 setup --ca LABEL`.
    CaCert {
        /// Label of the CA signing key (P-256).
        #[arg(long)]
        ca: String,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Form of the certificate: x509 (X.509 v3) or gp (GP 7F21).
        #[arg(long, value_enum, default_value_t = crate::cli::CertFormat::X509)]
        cert_format: crate::cli::CertFormat,
    },
    /// Write every base key, wrapped under a key-encryption key, to FILE.
    Backup {
        /// The backup file to write (must not exist).
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        kek: KekArgs,
    },
    /// Restore base keys from a backup made by `keys backup`.
    Restore {
        /// The backup file made by `keys backup`.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        kek: KekArgs,
    },
}

/// Where the key-encryption key (AES, hex) comes from: never the command line.
#[derive(Debug, Args)]
pub struct KekArgs {
    /// Environment variable holding the KEK in hex.
    #[arg(long, default_value = "CARDWRIGHT_KEK")]
    pub kek_env: String,
    /// File holding the KEK in hex (instead of the environment variable).
    #[arg(long)]
    pub kek_file: Option<PathBuf>,
}

impl KekArgs {
    fn key(&self) -> Result<kms::Key> {
        let text = Zeroizing::new(match &self.kek_file {
            Some(f) => {
                std::fs::read_to_string(f).with_context(|| format!("KEK file {}", f.display()))?
            }
            None => std::env::var(&self.kek_env).map_err(|_| {
                anyhow!(
                    "the key-encryption key: set {} (hex) or use --kek-file",
                    self.kek_env
                )
            })?,
        });
        let bytes = Zeroizing::new(
            apdu::parse_hex(text.trim()).context("the key-encryption key is not hex")?,
        );
        kms::Key::aes(&bytes).map_err(|e| anyhow!("the key-encryption key must be an AES key: {e}"))
    }
}

fn kind(s: &str) -> KeyKind {
    if s == "des" {
        KeyKind::Des3
    } else {
        KeyKind::Aes
    }
}

/// Reads `--expires YYYY-MM-DD` strictly: a day that the month does not have (2031-02-31)
/// is refused, not rolled over into the next month. The key expires at 00:00 UTC that day.
fn parse_date(s: &str) -> Result<SystemTime> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(s.trim(), &format)
        .map_err(|e| anyhow!("--expires {s}: not a date YYYY-MM-DD ({e})"))?;
    Ok(date.midnight().assume_utc().into())
}

/// Opens the existing key store named by `config`. A software key store file that does not
/// exist is an error, so a mistyped `--keystore` never leaves a new empty key store behind;
/// only the commands that add keys create one (see [`with_new_or_existing`]).
pub fn open_keystore(config: &str) -> Result<Box<dyn KeyStore>> {
    let parsed = parse_keystore(config)?;
    if let kms::StoreConfig::Software { path, .. } = &parsed {
        if !path.exists() {
            bail!(
                "key store {config}: there is no key store file {} (it is created by \
                 `keys generate-base`, `keys import-base` or `keys restore`)",
                path.display()
            );
        }
    }
    parsed.open().with_context(|| format!("key store {config}"))
}

fn parse_keystore(config: &str) -> Result<kms::StoreConfig> {
    config
        .parse()
        .with_context(|| format!("key store {config}"))
}

/// Runs `f` on the key store, creating a software key store file that does not exist yet:
/// said on standard error if `f` succeeds, removed again if it fails (nothing is left
/// behind by a refused command).
fn with_new_or_existing<T>(config: &str, f: impl FnOnce(&dyn KeyStore) -> Result<T>) -> Result<T> {
    let parsed = parse_keystore(config)?;
    let new_file = match &parsed {
        kms::StoreConfig::Software { path, .. } if !path.exists() => Some(path.clone()),
        _ => None,
    };
    let store = parsed
        .open()
        .with_context(|| format!("key store {config}"))?;
    let result = f(store.as_ref());
    drop(store);
    if let Some(path) = new_file {
        match &result {
            Ok(_) => eprintln!("created key store {}", path.display()),
            Err(_) => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    result
}

/// Reads one secret line: without echo from a terminal, else one line of standard input.
fn read_secret(prompt: &str) -> Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        let v = rpassword::prompt_password(prompt).context("reading from the terminal")?;
        Ok(Zeroizing::new(v))
    } else {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().lock().read_line(&mut line)?;
        if line.is_empty() {
            bail!("standard input ended before all components were given");
        }
        Ok(Zeroizing::new(line.trim().to_string()))
    }
}

pub fn run(cmd: KeysCmd) -> Result<()> {
    match cmd.op {
        KeysOp::ImportBase {
            category,
            components,
            kind: k,
            expires,
        } => {
            if components < 2 {
                bail!("dual control: a base key is imported in at least 2 components");
            }
            let expires = expires.as_deref().map(parse_date).transpose()?;
            let mut parts = Vec::with_capacity(components);
            for i in 1..=components {
                let hex = read_secret(&format!("Component {i} of {components} (hex): "))?;
                let kcv = read_secret(&format!("KCV of component {i} (6 hex digits): "))?;
                // Check each component as it is entered, so a typing error is caught at once.
                let bytes = Zeroizing::new(
                    apdu::parse_hex(&hex).map_err(|_| anyhow!("component {i} is not hex"))?,
                );
                let key =
                    kms::Key::new(kind(&k), &bytes).map_err(|e| anyhow!("component {i}: {e}"))?;
                let typed = apdu::parse_hex(&kcv)
                    .map_err(|_| anyhow!("KCV of component {i} is not hex"))?;
                if typed.as_slice() != key.kcv().as_slice() {
                    bail!(
                        "component {i}: its KCV does not match what was typed; nothing was stored"
                    );
                }
                let c =
                    Component::from_hex(&hex, &kcv).map_err(|e| anyhow!("component {i}: {e}"))?;
                parts.push(c);
            }
            let info = with_new_or_existing(&cmd.keystore, |store| {
                Ok(store.import_base_key(&category, kind(&k), parts, expires)?)
            })?;
            println!("imported {info}");
        }
        KeysOp::GenerateBase {
            category,
            kind: k,
            len,
            expires,
        } => {
            let expires = expires.as_deref().map(parse_date).transpose()?;
            let info = with_new_or_existing(&cmd.keystore, |store| {
                Ok(store.generate_base_key(&category, kind(&k), len, expires)?)
            })?;
            println!("generated {info}");
        }
        KeysOp::Policy {
            db,
            actor,
            ssd_lifetime,
            renew_before,
        } => {
            let platform = crate::issue_cmd::Platform {
                db,
                keystore: cmd.keystore.clone(),
                actor,
            };
            crate::ssd_cmd::run_policy(&platform, ssd_lifetime, renew_before)?;
        }
        KeysOp::List => {
            let list = open_keystore(&cmd.keystore)?.list()?;
            if list.is_empty() {
                println!("no base keys in {}", cmd.keystore);
            }
            for info in list {
                println!("{info}");
            }
        }
        KeysOp::RotateBase { category } => {
            let info = open_keystore(&cmd.keystore)?.rotate(&category)?;
            println!("rotated: {info}");
        }
        KeysOp::Retire { category, version } => {
            let info = open_keystore(&cmd.keystore)?.retire(&category, version)?;
            println!("retired: {info}");
        }
        KeysOp::Backup { to, kek } => {
            let store = open_keystore(&cmd.keystore)?;
            let blob = store.backup(&kek.key()?)?;
            if to.exists() {
                bail!("{} exists: choose a new file for the backup", to.display());
            }
            std::fs::write(&to, blob).with_context(|| format!("writing {}", to.display()))?;
            println!(
                "backed up {} base key(s) to {}",
                store.list()?.len(),
                to.display()
            );
        }
        KeysOp::CreateOceKey {
            label,
            curve,
            ca,
            cert_out,
            days,
            cert_format,
        } => crate::scp11_cmd::create_oce_key(
            &cmd.keystore,
            &label,
            &curve,
            ca.as_deref(),
            cert_out.as_deref(),
            days,
            cert_format,
        )?,
        KeysOp::CaCert {
            ca,
            out,
            days,
            cert_format,
        } => crate::scp11_cmd::export_ca_cert(&cmd.keystore, &ca, &out, days, cert_format)?,
        KeysOp::Restore { from, kek } => {
            let blob =
                std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
            let kek = kek.key()?;
            let restored =
                with_new_or_existing(&cmd.keystore, |store| Ok(store.restore(&blob, &kek)?))?;
            for info in &restored {
                println!("restored {info}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let day = |s: &str| {
            parse_date(s)
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                / 86_400
        };
        assert_eq!(day("1970-01-01"), 0);
        assert_eq!(day("2000-03-01"), 11_017);
        assert_eq!(day("2026-11-23"), 20_780); // Python: (date(2026,11,23)-date(1970,1,1)).days
        assert_eq!(day("2032-02-29"), 22_704); // a leap day
        for bad in [
            "2031-02-31",
            "2031-02-29",
            "2031-04-31",
            "2026-13-01",
            "2026-00-10",
            "2026-1-5",
            "tomorrow",
            "2031-01-31x",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
