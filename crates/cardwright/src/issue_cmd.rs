//! `cardwright tenant|category|issue …`: card issuance (CN102056165A) from the command line:
//! the platform database and key store are opened locally and the card is in a reader (or
//! the virtual card). Every step is a resumable job recorded in the database and audited.

use crate::card_cmd::open_card;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use transport::CardChannel;

/// The platform's database and key store, shared by these commands.
#[derive(Debug, Args, Clone)]
pub struct Platform {
    /// The platform database: `sqlite:PATH` or `postgres://…`.
    #[arg(
        long,
        global = true,
        env = "CARDWRIGHT_DB",
        default_value = "sqlite:cardwright.db"
    )]
    pub db: String,
    /// The key store: `file:PATH[?master-key-file=FILE]` or `pkcs11:MODULE?…` (see `keys`).
    #[arg(
        long,
        global = true,
        env = "CARDWRIGHT_KEYSTORE",
        default_value = "file:cardwright-keys.json"
    )]
    pub keystore: String,
    /// Who acts, as `tenant/user`, recorded in the audit log.
    #[arg(
        long,
        global = true,
        env = "CARDWRIGHT_ACTOR",
        default_value = "issuer/operator"
    )]
    pub actor: String,
}

impl Platform {
    /// The existing database: only `tenant create` makes a new one, so a mistyped `--db`
    /// is an error rather than a new empty database.
    fn store(&self) -> Result<tsm::Store> {
        tsm::Store::open_existing(&self.db)
            .with_context(|| format!("database {}", tsm::redact_url(&self.db)))
    }
    /// The existing database (read-only commands of other modules).
    pub(crate) fn store_existing(&self) -> Result<tsm::Store> {
        self.store()
    }
    /// The database, created (and said so) if it does not exist yet.
    fn store_or_create(&self) -> Result<tsm::Store> {
        let store = tsm::Store::open(&self.db)
            .with_context(|| format!("database {}", tsm::redact_url(&self.db)))?;
        if store.created() {
            eprintln!(
                "created the platform database {}",
                tsm::redact_url(&self.db)
            );
        }
        Ok(store)
    }
    /// The existing store, signing the audit log's checkpoint with the key store's audit
    /// key (created on first use), for commands that change the platform.
    pub(crate) fn anchored_store(&self) -> Result<tsm::Store> {
        self.anchored(false)
    }
    /// Like [`Platform::anchored_store`]; with `create`, a new database is made too. The key
    /// store is opened first, and a key store file made for the audit key is removed again
    /// if the database cannot be opened: a refused command leaves nothing behind.
    fn anchored(&self, create: bool) -> Result<tsm::Store> {
        let (key, new_file) = audit_key(&self.keystore)?;
        let store = if create {
            self.store_or_create()
        } else {
            self.store()
        };
        announce_or_remove(new_file, store.is_ok());
        Ok(store?.with_audit_anchor(key))
    }
    pub(crate) fn actor(&self) -> Result<tsm::Actor> {
        let (t, u) = self
            .actor
            .split_once('/')
            .ok_or_else(|| anyhow!("--actor {}: expected TENANT/USER", self.actor))?;
        Ok(tsm::Actor::new(t, u))
    }
}

#[derive(Debug, Args)]
pub struct TenantCmd {
    #[command(flatten)]
    pub platform: Platform,
    #[command(subcommand)]
    pub op: TenantOp,
}

#[derive(Debug, Subcommand)]
pub enum TenantOp {
    /// Register a card issuer (ci) or an application provider (ap).
    Create {
        /// Tenant identifier, as used by `--tenant` and `--actor TENANT/USER`, e.g. `issuer`.
        #[arg(long)]
        id: String,
        /// Display name of the tenant, e.g. "ACME Mobile".
        #[arg(long)]
        name: String,
        /// `ci`: card issuer (owns categories and cards); `ap`: application provider.
        #[arg(long, value_parser = ["ci", "ap"])]
        role: String,
    },
}

#[derive(Debug, Args)]
pub struct PackageCmd {
    #[command(flatten)]
    pub platform: Platform,
    #[command(subcommand)]
    pub op: PackageOp,
}

#[derive(Debug, Subcommand)]
pub enum PackageOp {
    /// Register an application package (CAP file) of a tenant, so cards can receive it.
    Add {
        /// The tenant that owns the package.
        #[arg(long)]
        tenant: String,
        /// Name of the package in the platform, e.g. `wallet`.
        #[arg(long)]
        name: String,
        /// The CAP file.
        cap: PathBuf,
    },
    /// Build and sign an application install service package (.cwpkg) for outlets.
    Build(crate::package_cmd::BuildArgs),
    /// Verify an install service package as an outlet's security module does.
    Verify(crate::package_cmd::VerifyArgs),
}

pub fn run_package(cmd: PackageCmd) -> Result<()> {
    match cmd.op {
        PackageOp::Build(a) => crate::package_cmd::build(a)?,
        PackageOp::Verify(a) => crate::package_cmd::verify(a)?,
        PackageOp::Add { tenant, name, cap } => {
            let store = cmd.platform.anchored_store()?;
            let bytes =
                std::fs::read(&cap).with_context(|| format!("cannot read {}", cap.display()))?;
            let p = store.add_package(&cmd.platform.actor, &tenant, &name, &bytes)?;
            println!("package {} ({}) registered for {}", p.aid, p.name, p.tenant);
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct CategoryCmd {
    #[command(flatten)]
    pub platform: Platform,
    #[command(subcommand)]
    pub op: CategoryOp,
}

#[derive(Debug, Subcommand)]
pub enum CategoryOp {
    /// A card category: its base keys are the key store's category of the same name.
    Create {
        /// Category name (also the key-store category of its base keys), e.g. `acme/gold`.
        #[arg(long)]
        id: String,
        /// The card issuer that owns it.
        #[arg(long)]
        tenant: String,
        /// Free text describing the category.
        #[arg(long, default_value = "")]
        description: String,
        /// What blank cards open with: `gp-test` (the GP test key 40..4F) or `kms:CATEGORY:VERSION`
        /// (a transport key in the key store, diversified with the card's KDD).
        #[arg(long, default_value = "gp-test")]
        initial_keys: String,
        /// Key version number of the blank cards' key set.
        #[arg(long, default_value = "0x30", value_parser = crate::cli::parse_u8)]
        initial_kvn: u8,
        /// Personalisation written to every card of the category: BER-TLV objects for the ISD, hex.
        #[arg(long, default_value = "")]
        perso: String,
    },
    /// Register the key store's base key versions of the category (references and KCVs, never
    /// keys) and make its newest active version the one new cards are written with. Run it
    /// after `keys rotate-base`.
    SyncKeys {
        /// The category whose key versions to register.
        #[arg(long)]
        id: String,
    },
}

/// Registers every key-store version of `category` the database does not know yet and sets
/// the current one; returns (registered, current).
fn sync_keys(
    store: &tsm::Store,
    keystore: &str,
    actor: &str,
    category: &str,
) -> Result<(usize, Option<u32>)> {
    let keys = crate::keys_cmd::open_keystore(keystore)?;
    let known: Vec<u32> = store
        .key_versions(category)?
        .iter()
        .map(|v| v.version)
        .collect();
    let mut added = 0;
    for info in keys.list()?.into_iter().filter(|i| i.category == category) {
        if !known.contains(&info.version) {
            store.register_key_version(
                actor,
                category,
                info.version,
                category,
                info.kind,
                info.kcv,
                false,
            )?;
            added += 1;
        }
    }
    let current = match keys.current(category) {
        Ok(info) => {
            store.set_current_key_version(actor, category, info.version)?;
            Some(info.version)
        }
        Err(_) => None,
    };
    Ok((added, current))
}

#[derive(Debug, Args)]
pub struct IssueCmd {
    #[command(flatten)]
    pub platform: Platform,
    /// Reader holding the card (default: the first reader with a card).
    #[arg(long, global = true)]
    pub reader: Option<String>,
    /// The virtual card in this state file, in process.
    #[arg(long, global = true, conflicts_with = "reader")]
    pub sim: Option<PathBuf>,
    /// Secure channel security level for the workflow.
    #[arg(long, global = true, default_value = "mac+enc")]
    pub security_level: String,
    /// Print every APDU on stderr.
    #[arg(long, short = 'd', global = true)]
    pub trace: bool,
    #[command(subcommand)]
    pub op: IssueOp,
}

#[derive(Debug, Subcommand)]
pub enum IssueOp {
    /// Write a blank card: keys derived from the category's base key and the card number,
    /// card number and personalisation, the category's applications.
    Write {
        /// The card's number as the platform knows it (digits).
        #[arg(long)]
        card_number: String,
        /// The card category (see `category create`), e.g. `gold`.
        #[arg(long)]
        category: String,
        /// Do not install the category's applications.
        #[arg(long)]
        no_apps: bool,
        /// Card-specific personalisation: a file of BER-TLV objects for the ISD (binary, or
        /// hex text), written after the category's; `clear` erases them.
        #[arg(long)]
        perso: Option<PathBuf>,
    },
    /// Prove the card's keys, derive new ones from the category's current (or given) base key
    /// version, and replace them.
    Rewrite {
        /// The card's number as the platform knows it (digits).
        #[arg(long)]
        card_number: String,
        /// The card's category (default: the one it was written with); checked if given.
        #[arg(long)]
        category: Option<String>,
        /// Base key version to derive the new keys from (default: the category's current one).
        #[arg(long)]
        to_version: Option<u32>,
    },
    /// Return the card to blank: applications and personalisation deleted, initial keys back.
    Clear {
        /// The card's number as the platform knows it (digits).
        #[arg(long)]
        card_number: String,
        /// The card's category (default: the one it was written with); checked if given.
        #[arg(long)]
        category: Option<String>,
    },
    /// Finish (or roll back) the card's interrupted job.
    Resume {
        /// The card's number as the platform knows it (digits).
        #[arg(long)]
        card_number: String,
        /// Take the job over even though another process's lease on it has not expired
        /// (after a crash, when you know that process is dead). Audited.
        #[arg(long)]
        take_over: bool,
    },
    /// Load and install, or delete, an application on a written card.
    App {
        #[command(subcommand)]
        op: AppOp,
    },
    /// What the platform knows of a card: state, key version, jobs.
    Status {
        /// The card's number as the platform knows it (digits).
        #[arg(long)]
        card_number: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppOp {
    /// Load a registered package (`package add`) and install an instance of one of its applets.
    Load {
        /// The card's number as the platform knows it (digits).
        #[arg(long)]
        card_number: String,
        /// The package (load file) AID.
        #[arg(long)]
        package: String,
        /// The applet (module) AID; default: the package's first applet.
        #[arg(long)]
        applet: Option<String>,
        /// Instance AID; default: the applet AID.
        #[arg(long)]
        instance: Option<String>,
        /// Privileges, comma separated.
        #[arg(long, default_value = "")]
        privs: String,
        /// Install parameters (the C9 content), hex.
        #[arg(long, default_value = "")]
        params: String,
        /// Personalisation (one STORE DATA block), hex.
        #[arg(long, default_value = "")]
        perso: String,
    },
    /// Delete an application instance the platform installed (and its package if unused).
    Delete {
        /// The card's number as the platform knows it (digits).
        #[arg(long)]
        card_number: String,
        /// Instance AID of the application (hex).
        #[arg(long)]
        instance: String,
    },
}

fn aid(s: &str) -> Result<gp::aid::Aid> {
    gp::aid::Aid::from_str(s).map_err(|e| anyhow!("'{s}' is not an AID: {e}"))
}

/// The key store's audit key (label [`tsm::audit::ANCHOR_KEY_LABEL`]), which signs the
/// audit log's checkpoint; created on first use. Also the software key store file made
/// for it now, if any: see [`announce_or_remove`].
pub fn audit_key(keystore: &str) -> Result<(Arc<dyn kms::SigningKey>, Option<PathBuf>)> {
    let config: kms::StoreConfig = keystore
        .parse()
        .with_context(|| format!("key store {keystore}"))?;
    let new_file = match &config {
        kms::StoreConfig::Software { path, .. } if !path.exists() => Some(path.clone()),
        _ => None,
    };
    let key = config
        .open_signing()
        .with_context(|| format!("key store {keystore}"))
        .and_then(|keys| {
            keys.signing_key_or_create(tsm::audit::ANCHOR_KEY_LABEL, kms::SigningAlgorithm::P256)
                .with_context(|| format!("the audit key in key store {keystore}"))
        });
    match key {
        Ok((key, _)) => Ok((Arc::from(key), new_file)),
        Err(e) => {
            announce_or_remove(new_file, false);
            Err(e)
        }
    }
}

/// Says that a key store file was made for the audit key when the command goes on
/// (`ok`), or removes it again, so that a refused command leaves nothing behind.
pub fn announce_or_remove(new_file: Option<PathBuf>, ok: bool) {
    if let Some(path) = new_file {
        if ok {
            eprintln!(
                "created key store {} with the audit log's key '{}'",
                path.display(),
                tsm::audit::ANCHOR_KEY_LABEL
            );
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

pub fn run_tenant(cmd: TenantCmd) -> Result<()> {
    let store = cmd.platform.anchored(true)?;
    match cmd.op {
        TenantOp::Create { id, name, role } => {
            let role = if role == "ci" {
                tsm::model::Role::CardIssuer
            } else {
                tsm::model::Role::ApplicationProvider
            };
            let t = store.create_tenant(&cmd.platform.actor, &id, &name, role)?;
            println!("tenant {} ({}) created", t.id, t.role);
        }
    }
    Ok(())
}

pub fn run_category(cmd: CategoryCmd) -> Result<()> {
    let store = cmd.platform.anchored_store()?;
    match cmd.op {
        CategoryOp::Create {
            id,
            tenant,
            description,
            initial_keys,
            initial_kvn,
            perso,
        } => {
            let initial_keys = match initial_keys.as_str() {
                "gp-test" => tsm::model::InitialKeys::GpTestKey,
                other => {
                    let rest = other.strip_prefix("kms:").ok_or_else(|| {
                        anyhow!("--initial-keys {other}: gp-test or kms:CATEGORY:VERSION")
                    })?;
                    let (cat, v) = rest
                        .rsplit_once(':')
                        .ok_or_else(|| anyhow!("--initial-keys {other}: kms:CATEGORY:VERSION"))?;
                    tsm::model::InitialKeys::Kms {
                        category: cat.to_string(),
                        version: v
                            .parse()
                            .map_err(|_| anyhow!("--initial-keys: bad version '{v}'"))?,
                    }
                }
            };
            let perso = apdu::parse_hex(&perso).context("--perso")?;
            let spec = tsm::CategorySpec {
                id,
                tenant,
                description,
                initial_keys,
                initial_kvn,
                perso,
            };
            let c = store.create_category(&cmd.platform.actor, &spec)?;
            println!("category {} created for {}", c.id, c.tenant);
            match sync_keys(&store, &cmd.platform.keystore, &cmd.platform.actor, &c.id) {
                Ok((n, Some(v))) => println!("{n} base key version(s) registered; cards are written with version {v}"),
                Ok((_, None)) => println!("no base key yet: `cardwright keys import-base --category {}`, then `category sync-keys`", c.id),
                Err(e) => println!("base keys not registered yet ({e:#}); run `category sync-keys --id {}`", c.id),
            }
        }
        CategoryOp::SyncKeys { id } => {
            let (n, current) = sync_keys(&store, &cmd.platform.keystore, &cmd.platform.actor, &id)?;
            match current {
                Some(v) => println!("{n} base key version(s) registered; cards of {id} are written with version {v}"),
                None => bail!("the key store has no active base key for category {id}"),
            }
        }
    }
    Ok(())
}

fn print_outcome(what: &str, o: &tsm::Outcome) {
    let t = &o.timing;
    println!(
        "{what}: card {} is {} (key version {}, KVN {}), job {} {} in {} APDUs, {:.1} ms (card {:.1}, database {:.1}, keys {:.1}, host {:.1})",
        o.card.card_number,
        o.card.state,
        o.card.key_version.map(|v| v.to_string()).unwrap_or_else(|| "initial".into()),
        o.card.kvn.map(|k| format!("{k:#04x}")).unwrap_or_else(|| "-".into()),
        o.job.id,
        o.job.state,
        o.apdus,
        t.total.as_secs_f64() * 1e3,
        t.card.as_secs_f64() * 1e3,
        t.database.as_secs_f64() * 1e3,
        t.keys.as_secs_f64() * 1e3,
        t.host().as_secs_f64() * 1e3,
    );
}

pub fn run_issue(cmd: IssueCmd) -> Result<()> {
    let store = cmd.platform.store()?;
    if let IssueOp::Status { card_number } = &cmd.op {
        // Read through the issuer: only the card's tenant may see it (refusals audited).
        let (card, jobs) = match tsm::card_status(&store, &cmd.platform.actor()?, card_number) {
            Err(tsm::Error::UnknownCard) => bail!("unknown card number {card_number}"),
            other => other?,
        };
        println!(
            "card {}: category {}, {}, key version {}, KVN {}",
            card.card_number,
            card.category,
            card.state,
            card.key_version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "initial".into()),
            card.kvn
                .map(|k| format!("{k:#04x}"))
                .unwrap_or_else(|| "-".into())
        );
        for j in jobs {
            println!(
                "  job {} {} {} (attempts {}){}",
                j.id,
                j.kind,
                j.state,
                j.attempts,
                j.error.map(|e| format!(": {e}")).unwrap_or_default()
            );
        }
        return Ok(());
    }
    let store = cmd.platform.anchored_store()?;
    let keys: Arc<dyn kms::KeyStore> =
        Arc::from(crate::keys_cmd::open_keystore(&cmd.platform.keystore)?);
    let level = scp::SecurityLevel::from_str(&cmd.security_level)
        .map_err(|e| anyhow!("--security-level {}: {e}", cmd.security_level))?;
    let mut config = tsm::IssuerConfig {
        level,
        ..Default::default()
    };
    if cmd.trace {
        config.trace = Some(Arc::new(std::sync::Mutex::new(std::io::stderr())));
    }
    let issuer = tsm::Issuer::new(store.clone(), keys, config);
    let actor = cmd.platform.actor()?;
    let mut chan: Box<dyn CardChannel> = open_card(cmd.reader.as_deref(), cmd.sim.as_deref())?;
    let category_of = |n: &str, given: Option<String>| -> Result<String> {
        match given {
            Some(c) => Ok(c),
            None => Ok(store
                .card(n)?
                .ok_or_else(|| anyhow!("unknown card number {n}: give --category"))?
                .category),
        }
    };
    let outcome = match cmd.op {
        IssueOp::Write {
            card_number,
            category,
            no_apps,
            perso,
        } => {
            let perso = match perso {
                None => Vec::new(),
                Some(f) => {
                    let raw =
                        std::fs::read(&f).with_context(|| format!("--perso {}", f.display()))?;
                    // Hex text if it reads as hex, else the bytes themselves.
                    match std::str::from_utf8(&raw)
                        .ok()
                        .and_then(|t| apdu::parse_hex(t.trim()).ok())
                    {
                        Some(b) => b,
                        None => raw,
                    }
                }
            };
            issuer.execute(
                &actor,
                &tsm::Request::Write {
                    card_number,
                    category,
                    install_apps: !no_apps,
                    perso,
                },
                &mut chan,
            )
        }
        IssueOp::Rewrite {
            card_number,
            category,
            to_version,
        } => {
            let category = category_of(&card_number, category)?;
            issuer.execute(
                &actor,
                &tsm::Request::Rewrite {
                    card_number,
                    category,
                    to_version,
                },
                &mut chan,
            )
        }
        IssueOp::Clear {
            card_number,
            category,
        } => {
            let category = category_of(&card_number, category)?;
            issuer.execute(
                &actor,
                &tsm::Request::Clear {
                    card_number,
                    category,
                },
                &mut chan,
            )
        }
        IssueOp::Resume {
            card_number,
            take_over,
        } => issuer.resume_with(
            &actor,
            &card_number,
            &tsm::ResumeOptions { take_over },
            &mut chan,
        ),
        IssueOp::App {
            op:
                AppOp::Load {
                    card_number,
                    package,
                    applet,
                    instance,
                    privs,
                    params,
                    perso,
                },
        } => {
            let spec = tsm::AppChoice {
                package,
                applet,
                instance,
                privileges: privs,
                params,
                perso,
            }
            .resolve(&store)?;
            issuer.execute(
                &actor,
                &tsm::Request::LoadApp {
                    card_number,
                    app: spec,
                },
                &mut chan,
            )
        }
        IssueOp::App {
            op: AppOp::Delete {
                card_number,
                instance,
            },
        } => issuer.execute(
            &actor,
            &tsm::Request::DeleteApp {
                card_number,
                instance: aid(&instance)?,
            },
            &mut chan,
        ),
        IssueOp::Status { .. } => bail!("unreachable"),
    }?;
    print_outcome(&format!("{}", outcome.job.kind), &outcome);
    Ok(())
}
