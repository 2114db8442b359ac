//! `cardwright serve`: the HTTP server (payment API, CA, check-out page).

use anyhow::{bail, Context, Result};
use clap::Args;
use server::{ca_files, AuditEvent, AuditLog, MemoryAudit, PayServer, ServerConfig, Stores};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Also serve the issuance API and the issuing-terminal relay (needs --db sqlite:/postgres:
    /// and --keystore with the categories' base keys).
    #[arg(long)]
    pub issuance: bool,
    /// The key store of the base keys (issuance): `file:…` or `pkcs11:…` (see `keys`).
    #[arg(
        long,
        visible_alias = "hsm",
        env = "CARDWRIGHT_KEYSTORE",
        default_value = "file:cardwright-keys.json"
    )]
    pub keystore: String,
    #[allow(rustdoc::broken_intra_doc_links)] // clap help text: [:ROLE] is not a link
    /// Operator API token, NAME[:ROLE]=TOKEN (role operator, the default, or viewer: read only);
    /// repeatable, or comma-separated in the environment.
    #[arg(
        long = "operator-token",
        env = "CARDWRIGHT_OPERATOR_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub operator_tokens: Vec<String>,
    /// Issuing-terminal token, TERMINAL=TOKEN; repeatable, or comma-separated in the environment.
    #[arg(
        long = "terminal-token",
        env = "CARDWRIGHT_TERMINAL_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub terminal_tokens: Vec<String>,
    /// The card issuer (tenant) the operators act for.
    #[arg(long, default_value = "issuer")]
    pub tenant: String,
    /// Address to listen on (port 0: any free port; the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Storage: `memory` (default, lost on exit), `sqlite:PATH` or `postgres://…` (the tsm store).
    #[arg(long, env = "CARDWRIGHT_DB", default_value = "memory")]
    pub db: String,
    /// Directory holding the CA certificate (`ca.pem`), created on first start. With
    /// `--ca-keystore` the CA key is in the key store; without it (legacy) the key is the plain
    /// PKCS#8 file `ca-key.pem` here. Without `--ca-dir` a new CA is made in memory at each start.
    #[arg(long)]
    pub ca_dir: Option<PathBuf>,
    /// Key store holding the CA private key (the recommended set-up): `file:PATH` (software
    /// keystore encrypted at rest; master key from `?master-key-file=` or
    /// `CARDWRIGHT_MASTER_KEY`) or `pkcs11:MODULE?token=LABEL&pin-file=…` (an HSM; PIN from
    /// `pin-env`/`pin-file`, default `CARDWRIGHT_PKCS11_PIN`). The key is generated there on
    /// first start and never leaves it; needs `--ca-dir` for the certificate.
    #[arg(long, env = "CARDWRIGHT_CA_KEYSTORE")]
    pub ca_keystore: Option<String>,
    /// Label of the CA key in `--ca-keystore` (PKCS#11 object label `cw-ca:<label>`).
    #[arg(long, default_value = server::ca_keystore::DEFAULT_LABEL)]
    pub ca_key_label: String,
    /// Name (commonName) of a new CA.
    #[arg(long, default_value = "Cardwright Payments CA")]
    pub ca_name: String,
    /// Key type of a new CA: p256, rsa2048, rsa3072, rsa4096.
    #[arg(long, default_value = "p256")]
    pub ca_key: String,
    /// Environment variable holding the admin bearer token (revocation, audit); unset = disabled.
    #[arg(long, default_value = "CARDWRIGHT_ADMIN_TOKEN")]
    pub admin_token_env: String,
    /// URL of the local agent the check-out page talks to.
    #[arg(long, default_value = "http://127.0.0.1:7373")]
    pub agent_url: String,
    /// Lifetime of a payment challenge, in seconds.
    #[arg(long, default_value_t = 180)]
    pub payment_ttl: u64,
    /// Lifetime of an enrolment challenge, in seconds.
    #[arg(long, default_value_t = 300)]
    pub enrolment_ttl: u64,
    /// Validity of issued certificates, in days.
    #[arg(long, default_value_t = 730)]
    pub certificate_days: u64,
}

/// The audit log in the tsm database (hash-chained, append-only), with the recent events
/// also kept in memory for the API's per-payment view.
#[derive(Debug)]
struct TsmAudit {
    store: Arc<tsm::Store>,
    memory: MemoryAudit,
}

impl AuditLog for TsmAudit {
    fn record(&self, event: AuditEvent) {
        let action = serde_json::to_value(event.kind)
            .ok()
            .and_then(|v| v.as_str().map(|s| format!("pay.{s}")))
            .unwrap_or_else(|| "pay".into());
        let entry =
            tsm::audit::NewEntry::new("server", &action, &event.code).detail(serde_json::json!({
                "outcome": event.outcome,
                "challenge_id": event.challenge_id,
                "serial": event.serial,
                "reason": event.reason,
            }));
        if let Err(e) = self.store.audit_append(&entry) {
            tracing::error!(error = %e, "audit log append failed");
        }
        self.memory.record(event);
    }
    fn for_challenge(&self, challenge_id: &str) -> Vec<AuditEvent> {
        self.memory.for_challenge(challenge_id)
    }
    fn recent(&self, limit: usize) -> Vec<AuditEvent> {
        self.memory.recent(limit)
    }
}

pub fn run(a: ServeArgs) -> Result<()> {
    let key_type: ca_files::CaKeyType = a
        .ca_key
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--ca-key {e}"))?;
    let mut tsm_store: Option<Arc<tsm::Store>> = None;
    let (stores, audit): (Stores, Arc<dyn AuditLog>) = if a.db == "memory" {
        (Stores::memory(), Arc::new(MemoryAudit::default()))
    } else if a.db.starts_with("sqlite:")
        || a.db.starts_with("postgres://")
        || a.db.starts_with("postgresql://")
    {
        let store = Arc::new(tsm::Store::open(&a.db).context("--db")?);
        tsm_store = Some(store.clone());
        (
            Stores::all(store.clone()),
            Arc::new(TsmAudit {
                store,
                memory: MemoryAudit::default(),
            }),
        )
    } else {
        bail!(
            "--db {}: expected memory, sqlite:PATH or postgres://…",
            a.db
        );
    };
    let clock = Arc::new(pki::SystemClock);
    let ca = match (&a.ca_dir, &a.ca_keystore) {
        (Some(dir), Some(keystore)) => {
            let config: kms::StoreConfig = keystore.parse().context("--ca-keystore")?;
            let keys = config.open_signing().context("--ca-keystore")?;
            let ca = server::ca_keystore::open_or_create(
                dir,
                &a.ca_name,
                key_type,
                keys.as_ref(),
                &a.ca_key_label,
                stores.certificates.clone(),
                clock,
            )
            .context("--ca-keystore")?;
            tracing::info!(keystore = %config, label = %a.ca_key_label, "CA key in the key store");
            ca
        }
        (None, Some(_)) => bail!("--ca-keystore needs --ca-dir (where the CA certificate is kept)"),
        (Some(dir), None) => {
            tracing::warn!(
                "--ca-dir without --ca-keystore: the CA key is a plain PKCS#8 file (ca-key.pem); \
                 keep it in a key store instead"
            );
            ca_files::open_or_create(
                dir,
                &a.ca_name,
                key_type,
                stores.certificates.clone(),
                clock,
            )
            .context("--ca-dir")?
        }
        (None, None) => {
            tracing::warn!(
                "no --ca-dir: a new CA in memory; its certificates die with this process"
            );
            ca_files::ephemeral(&a.ca_name, key_type, stores.certificates.clone(), clock)?
        }
    };
    let admin_token = std::env::var(&a.admin_token_env)
        .ok()
        .filter(|t| !t.is_empty())
        .map(Zeroizing::new);
    if admin_token.is_none() {
        tracing::info!(
            "{} is not set: revocation and the audit API are disabled",
            a.admin_token_env
        );
    }
    let config = ServerConfig {
        admin_token,
        payment_challenge_ttl: Duration::from_secs(a.payment_ttl.max(1)),
        enrolment_challenge_ttl: Duration::from_secs(a.enrolment_ttl.max(1)),
        certificate_validity: Duration::from_secs(a.certificate_days.max(1) * 86_400),
        agent_url: a.agent_url.clone(),
        ..ServerConfig::default()
    };
    let ca_subject = ca.certificate().subject();
    let state = Arc::new(PayServer::new(Arc::new(ca), stores, audit, config));
    let issuance = if a.issuance {
        let store = tsm_store
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--issuance needs --db sqlite:PATH or postgres://…"))?;
        let keys: Arc<dyn kms::KeyStore> = Arc::from(
            kms::open(&a.keystore)
                .with_context(|| format!("--keystore {}", redact(&a.keystore)))?,
        );
        let issuer = Arc::new(tsm::Issuer::new(
            (*store).clone(),
            keys,
            tsm::IssuerConfig::default(),
        ));
        let pairs = |list: &[String], what: &str| -> Result<Vec<(String, String)>> {
            list.iter()
                .map(|p| {
                    p.split_once('=')
                        .map(|(n, t)| (n.trim().to_string(), t.trim().to_string()))
                        .filter(|(n, t)| !n.is_empty() && t.len() >= 16)
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "{what}: expected NAME=TOKEN with a token of 16+ characters"
                            )
                        })
                })
                .collect()
        };
        // NAME[:ROLE]=TOKEN; the role is operator (default) or viewer.
        let operators = pairs(&a.operator_tokens, "--operator-token")?
            .into_iter()
            .map(|(n, t)| {
                let (name, role) = match n.split_once(':') {
                    Some((name, role)) => (
                        name.to_string(),
                        role.parse()
                            .map_err(|e: String| anyhow::anyhow!("--operator-token {name}: {e}"))?,
                    ),
                    None => (n, crate::issuance_api::Role::Operator),
                };
                Ok((t, name, role))
            })
            .collect::<Result<Vec<_>>>()?;
        if operators.is_empty() {
            bail!("--issuance needs at least one --operator-token NAME=TOKEN");
        }
        let mut tokens = relay::hub::StaticTokens::new();
        for (terminal, token) in pairs(&a.terminal_tokens, "--terminal-token")? {
            tokens = tokens.with(&token, &terminal);
        }
        let hub = relay::hub::Hub::new(Arc::new(tokens), std::time::Duration::from_secs(30));
        Some(Arc::new(crate::issuance_api::IssuanceApi {
            hub,
            issuer,
            operators,
            tenant: a.tenant.clone(),
        }))
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("--listen {}", a.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(ca = %ca_subject, db = %redact(&a.db), "payment API, CA and check-out page");
        println!("cardwright serve: listening on http://{addr}");
        println!("check-out page: http://{addr}/pay");
        use std::io::Write;
        std::io::stdout().flush()?;
        let mut app = server::router(state);
        if let Some(issuance) = issuance {
            println!("issuance API and terminal relay: http://{addr}/api/v1/terminals");
            app = app.merge(crate::issuance_api::router(issuance));
        }
        server::serve(listener, app).await?;
        Ok(())
    })
}

/// A database URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite:/tmp/x"), "sqlite:/tmp/x");
    }
}
