//! `cardwright outlet …`: the outlet security module (`outlet::Module`, `docs/OUTLET.md`):
//! create it over a token, add verified packages, list and remove applications, finish an
//! interrupted install, show and check the install records, upload them to the platform.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

#[derive(Debug, Args)]
pub struct OutletCmd {
    /// The outlet's directory (`outlet.toml`, `outlet.db`).
    #[arg(
        long,
        global = true,
        env = "CARDWRIGHT_OUTLET_DIR",
        default_value = "outlet"
    )]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub op: OutletOp,
}

#[derive(Debug, Subcommand)]
pub enum OutletOp {
    /// Create the outlet: in the token the MAC key of its database, its CA (key and
    /// self-signed certificate) and the trust anchors; then `outlet.toml` and `outlet.db`
    /// in --dir. The token must already hold the card category's base key.
    Init {
        /// The security module: `pkcs11:MODULE?token=LABEL&pin-env=VAR` (or `file:…` for a
        /// demo without a token), as for `keys`.
        #[arg(long)]
        module: String,
        /// A provider's root certificate (PEM or DER) packages must chain to; repeat for
        /// several.
        #[arg(long, required = true)]
        trust: Vec<PathBuf>,
        /// The privileges packages signed under the anchor may give their applications
        /// (`card install --privs` names, comma-separated; default none): once for every
        /// --trust, or once per --trust in the same order.
        #[arg(long)]
        grantable: Vec<String>,
        /// The card category whose base key (in the token) derives the cards' keys.
        #[arg(long)]
        category: String,
        /// The category's initial key version number.
        #[arg(long, default_value = "0x30", value_parser = crate::cli::parse_u8)]
        initial_kvn: u8,
        /// The outlet's identifier (a-z 0-9 - _ ., at most 32).
        #[arg(long)]
        id: String,
        /// The subject name of the module's CA (default `Cardwright outlet ID CA`).
        #[arg(long)]
        ca_name: Option<String>,
    },
    /// Verify a package (`.cwpkg`) against the trust anchors and store its applications; a
    /// refused package stores nothing (exit 1 with the reason).
    Add {
        /// The package file.
        file: PathBuf,
    },
    /// Remove an application from the catalog.
    Remove {
        /// The application's name.
        name: String,
    },
    /// The catalog and the interrupted installs.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the catalog page on a loopback address: the reader and the card live, one
    /// click installs and registers an application. Needs no network.
    Serve(crate::outlet_serve::ServeArgs),
    /// Finish or roll back the interrupted install of the card in the reader.
    Resume {
        /// Reader name (or part of it); default: the first reader holding a card.
        #[arg(long, env = "CARDWRIGHT_READER")]
        reader: Option<String>,
        /// The virtual card in this state file, in process.
        #[arg(
            long = "virtual",
            alias = "sim",
            value_name = "FILE",
            conflicts_with = "reader"
        )]
        virtual_card: Option<PathBuf>,
    },
    /// The install records, oldest first; with --verify, check the chain and its head.
    Records {
        /// As JSON.
        #[arg(long)]
        json: bool,
        /// Check every hash and link and the head's MAC in the token; exit 1 if broken.
        #[arg(long)]
        verify: bool,
    },
    /// Upload the records the platform has not acknowledged (`POST /api/v1/outlet/records`).
    Sync {
        /// The platform: `https://HOST[:PORT]`.
        #[arg(long)]
        server: String,
        /// The platform's CA certificate (PEM); default: the web PKI roots.
        #[arg(long)]
        server_ca: Option<PathBuf>,
        /// A file holding an operator's bearer token; default: CARDWRIGHT_TOKEN.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
}

pub fn run(c: OutletCmd) -> Result<()> {
    let dir = c.dir.as_path();
    match c.op {
        OutletOp::Init {
            module,
            trust,
            grantable,
            category,
            initial_kvn,
            id,
            ca_name,
        } => init(
            dir,
            outlet::InitOptions {
                id,
                module,
                trust: anchors(&trust, &grantable)?,
                category,
                initial_kvn,
                ca_name,
            },
        ),
        OutletOp::Add { file } => {
            let m = open(dir)?;
            let bytes = read_limited(&file)?;
            let added = m.add(&bytes).with_context(|| file.display().to_string())?;
            for a in added {
                println!(
                    "added {} {} ({}, {} bytes) from {}",
                    a.name, a.version, a.title, a.size, a.provider
                );
            }
            Ok(())
        }
        OutletOp::Remove { name } => {
            open(dir)?.remove(&name)?;
            println!("removed {name}");
            Ok(())
        }
        OutletOp::List { json } => list(&open(dir)?, json),
        OutletOp::Resume {
            reader,
            virtual_card,
        } => {
            let m = open(dir)?;
            let mut card = crate::card_cmd::open_card(reader.as_deref(), virtual_card.as_deref())?;
            let mut progress = |p: outlet::Progress| tracing::debug!(?p, "progress");
            match m.resume(&mut card, &mut progress) {
                Ok(None) => println!("nothing to resume for the card in {}", card.name()),
                Ok(Some(o)) => println!(
                    "finished: {} installed on card {} (instance {}, record {})",
                    o.application, o.card, o.instance, o.record
                ),
                Err(e) => bail!("{e} ({})", e.code()),
            }
            Ok(())
        }
        OutletOp::Serve(a) => crate::outlet_serve::run(a, dir),
        OutletOp::Records { json, verify } => records(&open(dir)?, json, verify),
        OutletOp::Sync {
            server,
            server_ca,
            token_file,
        } => {
            let m = open(dir)?;
            let token = token(token_file.as_deref())?;
            let ca = server_ca
                .map(|p| std::fs::read(&p).with_context(|| format!("--server-ca {}", p.display())))
                .transpose()?;
            let r = m.sync(&server, &token, ca.as_deref())?;
            if r.sent == 0 {
                println!("nothing to send: the platform has every record");
            } else {
                println!(
                    "sent {} records: {} stored, {} already there",
                    r.sent, r.stored, r.already
                );
            }
            Ok(())
        }
    }
}

fn open(dir: &Path) -> Result<outlet::Module> {
    outlet::Module::open(dir).with_context(|| format!("the outlet in {}", dir.display()))
}

/// A package file, refused before reading when larger than a package may be.
fn read_limited(path: &Path) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| path.display().to_string())?
        .len();
    if len > package::MAX_PACKAGE_BYTES {
        bail!(
            "{}: {len} bytes; a package is at most {} bytes",
            path.display(),
            package::MAX_PACKAGE_BYTES
        );
    }
    std::fs::read(path).with_context(|| path.display().to_string())
}

/// The certificates (DER) in a PEM file (every `CERTIFICATE` block), or the DER file.
fn certificates(path: &Path) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("--trust {}", path.display()))?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(vec![bytes]);
    };
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(BEGIN) {
        rest = &rest[i..];
        out.push(
            server::ca_files::pem_decode(rest, "CERTIFICATE")
                .map_err(|e| anyhow!("--trust {}: {e}", path.display()))?,
        );
        rest = &rest[BEGIN.len()..];
    }
    if out.is_empty() {
        bail!("--trust {}: no PEM certificate in it", path.display());
    }
    Ok(out)
}

/// The trust anchors of --trust and --grantable.
fn anchors(trust: &[PathBuf], grantable: &[String]) -> Result<Vec<package::TrustAnchor>> {
    if grantable.len() > 1 && grantable.len() != trust.len() {
        bail!(
            "{} --grantable for {} --trust: give it once for all, or once per --trust",
            grantable.len(),
            trust.len()
        );
    }
    let mut out = Vec::new();
    for (i, path) in trust.iter().enumerate() {
        let text = match grantable.len() {
            0 => "",
            1 => grantable[0].as_str(),
            _ => grantable[i].as_str(),
        };
        let privileges: gp::Privileges = text
            .parse()
            .map_err(|e| anyhow!("--grantable {text:?}: {e}"))?;
        for der in certificates(path)? {
            out.push(package::TrustAnchor {
                certificate_der: der,
                grantable: privileges,
            });
        }
    }
    Ok(out)
}

fn init(dir: &Path, opts: outlet::InitOptions) -> Result<()> {
    let anchors = opts.trust.len();
    let m = outlet::Module::init(dir, opts)?;
    let c = m.config();
    println!(
        "outlet {} created in {}: module {}, cards of category {} (initial KVN {:02X}), {anchors} trust anchor(s)",
        c.id,
        dir.display(),
        c.module,
        c.cards.category,
        c.cards.initial_kvn
    );
    print!(
        "its CA (the registration certificates' issuer):\n{}",
        m.ca_certificate_pem()
    );
    Ok(())
}

fn list(m: &outlet::Module, json: bool) -> Result<()> {
    let catalog = m.catalog()?;
    let pending = m.pending()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "applications": catalog,
                "pending": pending,
            }))?
        );
        return Ok(());
    }
    if catalog.is_empty() {
        println!("no applications (outlet add FILE.cwpkg)");
    }
    for a in &catalog {
        println!(
            "{:<16} {:<10} {:<32} {:>8} bytes  {}",
            a.name, a.version, a.title, a.size, a.provider
        );
    }
    for p in &pending {
        println!(
            "interrupted: {} on card {} at stage {}{}",
            p.application,
            p.card,
            p.stage,
            p.rolling_back
                .as_deref()
                .map(|c| format!(", to roll back ({c})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn records(m: &outlet::Module, json: bool, verify: bool) -> Result<()> {
    if verify {
        let r = m.verify_records()?;
        if json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "{} records, head {}, {} not yet synced: {}",
                r.records,
                r.head,
                r.unsynced,
                if r.ok { "ok" } else { "BROKEN" }
            );
        }
        if let Some(p) = r.problem {
            bail!("the install records do not verify: {p}");
        }
        return Ok(());
    }
    let all = m.records()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    for r in &all {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.at_ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| r.at_ms.to_string());
        println!(
            "{:>5} {at} card {:<20} {:<16} {:<12} {:<20} {}",
            r.seq,
            if r.card.is_empty() { "-" } else { &r.card },
            r.application,
            r.result,
            r.code,
            if r.synced { "synced" } else { "queued" }
        );
    }
    Ok(())
}

/// The bearer token: the first line of --token-file, else `CARDWRIGHT_TOKEN`.
fn token(file: Option<&Path>) -> Result<Zeroizing<String>> {
    let t = match file {
        Some(p) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(p)
                    .with_context(|| format!("--token-file {}", p.display()))?,
            );
            Zeroizing::new(text.lines().next().unwrap_or_default().trim().to_string())
        }
        None => Zeroizing::new(std::env::var("CARDWRIGHT_TOKEN").unwrap_or_default()),
    };
    if t.is_empty() {
        bail!("no bearer token: --token-file FILE or CARDWRIGHT_TOKEN");
    }
    Ok(t)
}
