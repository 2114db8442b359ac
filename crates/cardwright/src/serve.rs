//! `cardwright serve`: the HTTP server (payment API, CA, check-out page).

use anyhow::{bail, Context, Result};
use clap::Args;
use server::auth::{Principal, Role, TokenTable};
use server::{ca_files, AuditLog, MemoryAudit, PayServer, ServerConfig, Stores, TsmAudit};
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
    /// --issuance or --role ap: POST every job's final state (issuance and SSD jobs), signed
    /// (HMAC-SHA256, see the README), to this URL (http:// or https://) when its run ends.
    #[arg(long, requires = "webhook_secret_file", env = "CARDWRIGHT_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// --issuance: campaign worker threads of this node (0: none). Each claims the cards of
    /// running campaigns from the database (shared by any number of nodes) under a lease
    /// and writes them on --campaign-cards.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub campaign_workers: u32,
    /// --campaign-workers: where the cards are: `terminals` (a free reader with a card of a
    /// terminal connected to this node, each card used once until it is taken out) or
    /// `virtual` (a fresh in-process virtual card per card number, for trials and tests).
    #[arg(long, value_enum, default_value = "terminals")]
    pub campaign_cards: CampaignCards,
    /// --campaign-cards virtual: keep each virtual card as a state file NUMBER.json in this
    /// directory (shared by the nodes), so that a card outlives the node that wrote it and
    /// can be looked at afterwards (without it, cards live in memory only).
    #[arg(long, value_name = "DIR")]
    pub campaign_card_dir: Option<PathBuf>,
    /// --campaign-workers: seconds a claimed campaign card (and its job) stays this node's;
    /// the cards of a node that dies are taken up by the others when it ends.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub campaign_lease: u64,
    /// --webhook-url: the file holding the signing secret (at least 16 bytes; a final line
    /// end is not part of it).
    #[arg(long, requires = "webhook_url", env = "CARDWRIGHT_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// The key store of the base keys (issuance): `file:…` or `pkcs11:…` (see `keys`).
    #[arg(
        long,
        visible_alias = "hsm",
        env = "CARDWRIGHT_KEYSTORE",
        default_value = "file:cardwright-keys.json"
    )]
    pub keystore: String,
    /// Operator API token, `[TENANT/]NAME[:ROLE]=TOKEN` (role operator, the default, or viewer:
    /// read only; tenant default --tenant); repeatable. Prefer the environment
    /// (CARDWRIGHT_OPERATOR_TOKENS, comma-separated) or --operator-tokens-file: a value given
    /// here shows in `ps`.
    #[arg(
        long = "operator-token",
        env = "CARDWRIGHT_OPERATOR_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub operator_tokens: Vec<String>,
    /// File of operator tokens, one `[TENANT/]NAME[:ROLE]=TOKEN` a line (`#` comments);
    /// the preferred way, with the environment.
    #[arg(long, env = "CARDWRIGHT_OPERATOR_TOKENS_FILE")]
    pub operator_tokens_file: Option<PathBuf>,
    /// Issuing-terminal token, TERMINAL=TOKEN; repeatable. Prefer the environment
    /// (CARDWRIGHT_TERMINAL_TOKENS, comma-separated) or --terminal-tokens-file: a value given
    /// here shows in `ps`.
    #[arg(
        long = "terminal-token",
        env = "CARDWRIGHT_TERMINAL_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub terminal_tokens: Vec<String>,
    /// File of terminal tokens, one TERMINAL=TOKEN a line (`#` comments).
    #[arg(long, env = "CARDWRIGHT_TERMINAL_TOKENS_FILE")]
    pub terminal_tokens_file: Option<PathBuf>,
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
    /// File of admin bearer tokens (revocation, audit), one a line of 16 characters or more
    /// (`#` comments); re-read while serving, like the other token files.
    #[arg(long, env = "CARDWRIGHT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
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
    /// Also serve the SSD API of issue #10: `ci` (the card issuer's partner API, mutual
    /// TLS, and its operator routes) or `ap` (an application provider's platform, with its
    /// terminals' relay). Needs --db sqlite:/postgres: and operator tokens.
    #[arg(long, value_enum)]
    pub role: Option<PlatformRole>,
    /// --role: renew at the next contact through a terminal (the default): every card that
    /// appears in a reader of the platform's terminals (`ap`: its relay; `ci`: with
    /// --issuance, its desks) has its SSD key sets that fall due or are compromised renewed.
    #[arg(long, overrides_with = "no_renew_at_contact")]
    pub renew_at_contact: bool,
    /// --role: no renewal at contact (operators renew with `ssd renew`).
    #[arg(long, overrides_with = "renew_at_contact")]
    pub no_renew_at_contact: bool,
    /// --role: a card that stays in its reader is looked at again after SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub renew_scan_every: u64,
    /// Serve HTTPS with this certificate chain (PEM, leaf first).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a --listen address that is not loopback (without it, that is
    /// refused: give --tls-cert/--tls-key, or put a TLS-terminating proxy in front and say
    /// so here).
    #[arg(long)]
    pub insecure_http: bool,
    /// Issuing terminals (--issuance, --role ap) may authenticate with a client certificate
    /// that chains to this root CA (PEM) instead of a token (mutual TLS; needs
    /// --tls-cert). The terminal is the certificate's subject commonName. Repeatable.
    #[arg(long = "terminal-ca", requires = "tls_cert")]
    pub terminal_ca: Vec<PathBuf>,
    /// A CRL (PEM or DER) checked for terminal client certificates; repeatable.
    #[arg(long = "terminal-crl", requires = "terminal_ca")]
    pub terminal_crl: Vec<PathBuf>,
    /// CI: a root CA (PEM) whose client certificates are accepted in the TLS handshake, on
    /// top of the roots of the partners registered in the database and not revoked;
    /// repeatable.
    #[arg(long = "partner-ca")]
    pub partner_ca: Vec<PathBuf>,
    /// CI: a CRL (PEM or DER) checked for client certificates; repeatable.
    #[arg(long = "partner-crl")]
    pub partner_crl: Vec<PathBuf>,
    /// AP: the card issuer's partner API, https://host:port.
    #[arg(long)]
    pub ci: Option<String>,
    /// AP: this platform's client certificate chain (PEM) for the card issuer.
    #[arg(long)]
    pub client_cert: Option<PathBuf>,
    /// AP: the key of --client-cert (PEM).
    #[arg(long)]
    pub client_key: Option<PathBuf>,
    /// AP: the CA certificate(s) (PEM) of the card issuer's server certificate (the only
    /// roots trusted for it).
    #[arg(long)]
    pub ci_ca: Option<PathBuf>,
    /// AP: this application provider's partner id at the card issuer (e.g. bank1).
    #[arg(long)]
    pub partner_id: Option<String>,
    /// AP: write this platform's transport public key (PEM) here, for the card issuer's
    /// `partner add --transport-key`.
    #[arg(long)]
    pub transport_key_out: Option<PathBuf>,
    /// AP: replace the initial keys inside an SCP11a session with the SSD (GP Amendment F;
    /// the card must support SCP11): the label of the AP's CA signing key (P-256) in
    /// --keystore, created if missing. It certifies the SSD's key pair generated on the
    /// card and becomes the SSD's OCE trust anchor. Without it the AP rotates in the SCP03
    /// session opened with the initial keys (see the README for what the CI could learn).
    #[arg(long, requires = "scp11_oce_key")]
    pub scp11_ca: Option<String>,
    /// AP: the label of the AP's OCE key-agreement key (P-256) in --keystore for those SCP11a
    /// sessions, created if missing; its certificate is issued by --scp11-ca at start.
    #[arg(long, requires = "scp11_ca")]
    pub scp11_oce_key: Option<String>,
    /// CI: the Delegated Management token key (its public key is KVN 70 on the cards) with
    /// which the CI signs the tokens of its partners' delegated SSDs: a PKCS#8 file, an AES
    /// key file, or a key-store key `file:KEYSTORE?label=L` / `pkcs11:…&label=L` (as for
    /// `card --dm-key`). Without it, token requests are refused.
    #[arg(long)]
    pub dm_key: Option<String>,
    /// CI: the cards' Receipt Generation key (KVN 71 of the ISD, GP 2.3.1 §9.1.3.3), with
    /// which the CI checks the receipts its partners bring for their delegated operations
    /// (`POST /api/v1/partner/receipts`): hex, or a file holding hex; AES (CMAC), or
    /// `des:HEX|FILE` for 3DES (MAC algorithm 3). Without it, receipts are refused.
    #[arg(long)]
    pub receipt_key: Option<String>,
    /// Also run the over-the-air download service (issue 12, `docs/OTA.md`): an SMPP ESME
    /// bound to --smpp takes the cards' download requests and PoRs (MO) and sends the
    /// secured packets (MT); unfinished sessions are resumed at start and sessions opened
    /// by `ota push` are sent. Needs --db sqlite:/postgres: and --keystore (the cards' base
    /// keys, from which their SCP80 keys are derived).
    #[arg(long, requires = "smpp")]
    pub ota: bool,
    /// --ota: the SMSC, `smpp://SYSTEM_ID:PASSWORD@HOST:PORT[?window=N]`. Prefer the
    /// environment (CARDWRIGHT_SMPP): a password given here shows in `ps`.
    #[arg(long, env = "CARDWRIGHT_SMPP", hide_env_values = true)]
    pub smpp: Option<String>,
    /// --ota: the platform's own address, the source address of its OTA SMS and where the
    /// cards' download agents send their requests (`+` = international number, otherwise
    /// a short code).
    #[arg(long, default_value = "4900")]
    pub ota_address: String,
    /// --ota: seconds to wait for a PoR before the packet is sent again.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub ota_por_timeout: u64,
    /// --ota: also run the SCP81 admin server (GP Amendment B: HTTPS with TLS-PSK, the
    /// cards' PSKs derived from the key store) on this address, e.g. `0.0.0.0:8443`;
    /// downloads of more than --ota-https-above-sms SMS go over it (`docs/OTA.md`).
    #[arg(long, value_name = "ADDR", requires = "ota")]
    pub ota_https: Option<String>,
    /// --ota-https: the IP address and port the cards' agents are told to open TCP to
    /// (default: the --ota-https address, which must then be a specific IP).
    #[arg(long, value_name = "IP:PORT", requires = "ota_https")]
    pub ota_https_advertise: Option<std::net::SocketAddr>,
    /// --ota-https: a download that would take more SMS than this goes over HTTPS.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub ota_https_above_sms: usize,
    /// --ota: the P-256 signing key of the key store that certifies the key pairs new
    /// security domains generate (CERT.SD, stored on the card after create-SD by SMS);
    /// created on first use.
    #[arg(long, value_name = "LABEL", default_value = "ota-sd-ca")]
    pub ota_sd_ca: String,
    /// --ota-https: seconds a triggered card has to open its HTTPS session before it is
    /// triggered again.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub ota_https_wait: u64,
    /// Bearer token that `GET /metrics` requires (default: none, the metrics are open to
    /// whoever reaches the listener, as Prometheus usually scrapes from inside the network).
    /// Prefer the environment (CARDWRIGHT_METRICS_TOKEN).
    #[arg(long, env = "CARDWRIGHT_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

/// Where `serve --campaign-workers` finds the cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CampaignCards {
    /// Free readers of the connected terminals.
    Terminals,
    /// Fresh virtual cards in this process.
    Virtual,
}

/// Which platform of issue #10 `serve` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlatformRole {
    /// The card issuer.
    Ci,
    /// An application provider.
    Ap,
}

pub fn run(a: ServeArgs) -> Result<()> {
    // Refused before anything is opened or created.
    check_plain_http(&a.listen, a.tls_cert.is_some(), a.insecure_http)?;
    let key_type: ca_files::CaKeyType = a
        .ca_key
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--ca-key {e}"))?;
    let metrics_token = match a.metrics_token.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) if t.len() >= 16 => Some(Arc::new(Zeroizing::new(t.to_string()))),
        Some(_) => bail!("--metrics-token: a token of 16 characters or more"),
    };
    let metrics = Arc::new(server::metrics::Metrics::new(env!("CARGO_PKG_VERSION")));
    let mut readiness = server::observe::Readiness::new();
    let mut tsm_store: Option<Arc<tsm::Store>> = None;
    let (stores, audit): (Stores, Arc<dyn AuditLog>) = if a.db == "memory" {
        (Stores::memory(), Arc::new(MemoryAudit::default()))
    } else if a.db.starts_with("sqlite:")
        || a.db.starts_with("postgres://")
        || a.db.starts_with("postgresql://")
    {
        let mut store = tsm::Store::open(&a.db).context("--db")?;
        if a.issuance || a.role.is_some() {
            // Issuance (and the SSD platforms) change the platform: its audit entries are anchored like the CLI's.
            let (key, new_file) = crate::issue_cmd::audit_key(&a.keystore)?;
            crate::issue_cmd::announce_or_remove(new_file, true);
            store = store.with_audit_anchor(key);
        }
        metrics.watch_store(&store);
        readiness = readiness.database(store.clone());
        let store = Arc::new(store);
        tsm_store = Some(store.clone());
        (Stores::all(store.clone()), Arc::new(TsmAudit::new(store)))
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
            let keys = Arc::new(server::metrics::TimedSigningStore::new(
                config.open_signing().context("--ca-keystore")?,
                metrics.clone(),
            ));
            readiness = readiness.signing("ca_keystore", keys.clone(), metrics.clone());
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
    // One table of every token (admin, operators, terminals), shared by every API and
    // re-read from its files while serving (watch_tokens).
    let sources = TokenSources::of(&a);
    let table = token_table(&sources)?;
    if !table.has_role(&[Role::Admin]) {
        tracing::info!(
            "{} is not set and no --admin-token-file: revocation and the audit API are disabled",
            a.admin_token_env
        );
    }
    let config = ServerConfig {
        payment_challenge_ttl: Duration::from_secs(a.payment_ttl.max(1)),
        enrolment_challenge_ttl: Duration::from_secs(a.enrolment_ttl.max(1)),
        certificate_validity: Duration::from_secs(a.certificate_days.max(1) * 86_400),
        agent_url: a.agent_url.clone(),
        ..ServerConfig::default()
    };
    let ca_subject = ca.certificate().subject();
    let state =
        Arc::new(PayServer::new(Arc::new(ca), stores, audit, config).with_tokens(table.clone()));
    let tokens = if sources.operators {
        let operators = table.has_role(&[Role::Operator, Role::Viewer]);
        if !operators && (a.issuance || a.role.is_some()) {
            bail!("--issuance and --role need at least one operator token (CARDWRIGHT_OPERATOR_TOKENS, --operator-tokens-file or --operator-token NAME=TOKEN)");
        }
        // --ota alone without operator tokens: SMS only, no operator API.
        operators.then(|| table.clone())
    } else {
        None
    };
    if a.webhook_url.is_some() && !a.issuance && a.role != Some(PlatformRole::Ap) {
        bail!("--webhook-url announces the jobs of the issuance and SSD APIs: it needs --issuance or --role ap");
    }
    let mut webhook = match (&a.webhook_url, &a.webhook_secret_file) {
        (Some(url), Some(file)) => {
            Some(server::webhook::Webhook::from_secret_file(url, file).context("--webhook-url")?)
        }
        _ => None,
    };
    if a.campaign_workers > 0 && !a.issuance {
        bail!("--campaign-workers writes cards: it needs --issuance");
    }
    if a.campaign_card_dir.is_some() && a.campaign_cards != CampaignCards::Virtual {
        bail!("--campaign-card-dir keeps virtual cards: it needs --campaign-cards virtual");
    }
    if a.campaign_workers > 0 && a.campaign_lease == 0 {
        bail!("--campaign-lease: at least 1 second");
    }
    let terminal_ca = terminal_certificates(&a)?;
    if let Some((roots, crls)) = &terminal_ca {
        match &tokens {
            Some(t) if a.issuance || a.role == Some(PlatformRole::Ap) => {
                t.set_terminal_roots(roots.clone(), crls.clone());
            }
            _ => bail!("--terminal-ca: no terminal connects here (give --issuance or --role ap)"),
        }
    }
    let mut campaign_issuer = None;
    let issuance = match (a.issuance, &tokens) {
        (true, Some(tokens)) => {
            let store = tsm_store.clone().ok_or_else(|| {
                anyhow::anyhow!("--issuance needs --db sqlite:PATH or postgres://…")
            })?;
            let keys = open_keys(&a.keystore)?;
            readiness = readiness.keystore("keystore", keys.clone(), metrics.clone());
            if a.campaign_workers > 0 {
                // The campaign's lease is its cards' jobs' too: a dead node's card is
                // resumed by another as soon as its item comes back.
                let config = tsm::IssuerConfig {
                    lease: Duration::from_secs(a.campaign_lease),
                    ..tsm::IssuerConfig::default()
                };
                campaign_issuer = Some(Arc::new(tsm::Issuer::new(
                    (*store).clone(),
                    keys.clone(),
                    config,
                )));
            }
            let issuer = tsm::Issuer::new((*store).clone(), keys, tsm::IssuerConfig::default());
            Some(server::issuance::IssuanceApi::with_options(
                Arc::new(issuer),
                tokens.clone(),
                Duration::from_secs(30),
                metrics.clone(),
                webhook.take(),
            ))
        }
        _ => None,
    };
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some((
            server::tls::load_certificates(cert).context("--tls-cert")?,
            server::tls::load_private_key(key).context("--tls-key")?,
        )),
        _ => None,
    };
    // Outlet security modules upload their install records (`outlet sync`) to any
    // platform that has operators and a database.
    let outlet_records = match (&tokens, &tsm_store) {
        (Some(t), Some(store)) => Some(server::outlet_records::OutletRecordsApi::new(
            store.clone(),
            t.clone(),
        )),
        _ => None,
    };
    // The OTA HTTP API (issue 12) with --ota and operator tokens.
    let ota_api = match (a.ota, &tokens, &tsm_store) {
        (true, Some(t), Some(store)) => {
            Some(server::ota_api::OtaApi::new(store.clone(), t.clone()))
        }
        _ => None,
    };
    let ssd = match (a.role, tokens) {
        (Some(role), Some(tokens)) => {
            let store = tsm_store
                .clone()
                .ok_or_else(|| anyhow::anyhow!("--role needs --db sqlite:PATH or postgres://…"))?;
            Some(crate::ssd_serve::build(
                role,
                &a,
                &store,
                tokens,
                tls.is_some(),
                issuance.as_ref(),
                webhook.take(),
            )?)
        }
        _ => None,
    };
    let ota = if a.ota {
        let store = tsm_store
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--ota needs --db sqlite:PATH or postgres://…"))?;
        let keys = open_keys(&a.keystore)?;
        if !a.issuance {
            readiness = readiness.keystore("keystore", keys.clone(), metrics.clone());
        }
        let https = match &a.ota_https {
            None => None,
            Some(listen) => {
                let address = match a.ota_https_advertise {
                    Some(x) => x,
                    None => listen
                        .parse::<std::net::SocketAddr>()
                        .ok()
                        .filter(|x| !x.ip().is_unspecified())
                        .ok_or_else(|| {
                            anyhow::anyhow!("--ota-https {listen}: cards need an IP address to connect to; give --ota-https-advertise IP:PORT")
                        })?,
                };
                Some(tsm::ota::scp81::HttpsEndpoint {
                    address,
                    above_sms: a.ota_https_above_sms,
                })
            }
        };
        let config = tsm::ota::engine::EngineConfig {
            por_timeout: Duration::from_secs(a.ota_por_timeout.max(1)),
            https,
            https_wait: Duration::from_secs(a.ota_https_wait.max(1)),
            ..Default::default()
        };
        let url = a.smpp.clone().unwrap_or_default();
        let smpp = smpp::EsmeConfig::from_url(&url).context("--smpp")?;
        let signing = kms::open_signing(&a.keystore)
            .with_context(|| format!("--keystore {}", redact(&a.keystore)))?;
        let (ca, created) =
            signing.signing_key_or_create(&a.ota_sd_ca, kms::SigningAlgorithm::P256)?;
        if created {
            tracing::info!(label = %a.ota_sd_ca, "created the CA key that certifies new SDs' keys (--ota-sd-ca)");
        }
        Some((
            tsm::ota::engine::Engine::new((*store).clone(), keys, config).with_sd_ca(Arc::from(ca)),
            smpp,
        ))
    } else {
        None
    };
    server::block_on(async move {
        watch_tokens(&a, &sources, &table);
        if let Some((engine, smpp)) = ota {
            println!("OTA over SMS: {} as {}", smpp.redacted_url(), a.ota_address);
            let https = match &a.ota_https {
                Some(listen) => Some(start_admin_server(&engine, listen).await?),
                None => None,
            };
            start_ota(engine, smpp, &a.ota_address, https);
        }
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("--listen {}", a.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(ca = %ca_subject, db = %redact(&a.db), "payment API, CA and check-out page");
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("cardwright serve: listening on {scheme}://{addr}");
        println!("check-out page: {scheme}://{addr}/pay");
        if issuance.is_some() {
            println!("issuance API and terminal relay: {scheme}://{addr}/api/v1/terminals");
        }
        let workers = match (&campaign_issuer, &issuance) {
            (Some(issuer), Some(api)) => Some(start_campaign_workers(&a, issuer, api, &metrics)?),
            _ => None,
        };
        let mut app = server::payment_routes(state);
        if let Some(api) = issuance {
            app = app.merge(server::issuance::routes(api));
        }
        if let Some(api) = outlet_records {
            println!("outlet records: {scheme}://{addr}/api/v1/outlet/records");
            app = app.merge(server::outlet_records::routes(api));
        }
        match ota_api {
            Some(api) => {
                println!("OTA API: {scheme}://{addr}/api/v1/ota/… (/api/openapi-ota.json)");
                app = app.merge(server::ota_api::routes(api));
            }
            None if a.ota => println!(
                "OTA API: off (no operator token: CARDWRIGHT_OPERATOR_TOKENS, --operator-tokens-file or --operator-token)"
            ),
            None => {}
        }
        let mut verifier = None;
        if let Some(ssd) = ssd {
            println!("{}: {scheme}://{addr}{}", ssd.what, ssd.document);
            if let Some(api) = &ssd.partner_api {
                crate::ssd_serve::refresh_partners_periodically(api.clone());
            }
            if let Some(c) = ssd.contact {
                metrics.watch_hub(&c.hub);
                server::contact::spawn(c.hub, c.platform, c.config);
            }
            verifier = ssd.verifier;
            app = app.merge(ssd.routes);
        }
        println!("metrics: {scheme}://{addr}/metrics; readiness: {scheme}://{addr}/readyz");
        if let Some((roots, crls)) = terminal_ca {
            // The one client verifier of the listener (the CI's partner roots too).
            let v = match verifier.take() {
                Some(v) => v,
                None => server::tls::PartnerCertVerifier::new(Vec::new(), Vec::new())
                    .context("--terminal-ca")?,
            };
            v.set_terminal_roots(roots, crls).context("--terminal-ca")?;
            println!("terminals may authenticate with client certificates (--terminal-ca)");
            verifier = Some(v);
        }
        use std::io::Write;
        std::io::stdout().flush()?;
        let obs = server::observe::Observability {
            metrics,
            readiness,
            metrics_token,
        };
        let app = server::observe::instrument(server::finish(app), obs);
        match tls {
            Some((chain, key)) => {
                let config = server::tls::server_config(chain, key, verifier)
                    .context("--tls-cert/--tls-key")?;
                server::tls::serve_tls(listener, config, app, server::shutdown_signal()).await?;
            }
            None => server::serve(listener, app).await?,
        }
        if let Some(w) = workers {
            // Each worker finishes the card in hand; the items not started go back.
            match tokio::task::spawn_blocking(move || w.stop()).await {
                Ok(Ok(p)) => tracing::info!(
                    written = p.done,
                    failed = p.failed,
                    "campaign workers stopped"
                ),
                Ok(Err(e)) => tracing::warn!(error = %e, "campaign workers stopped"),
                Err(e) => tracing::error!(error = %e, "campaign workers"),
            }
        }
        Ok(())
    })
    .context("starting the async runtime")?
}

/// Starts `--campaign-workers` threads on `--campaign-cards`.
fn start_campaign_workers(
    a: &ServeArgs,
    issuer: &Arc<tsm::Issuer>,
    api: &Arc<server::issuance::IssuanceApi>,
    metrics: &Arc<server::metrics::Metrics>,
) -> Result<server::campaigns::CampaignWorkers> {
    use server::campaigns::{CampaignWorkers, CardSource, WorkerOptions};
    let source = match a.campaign_cards {
        CampaignCards::Terminals => CardSource::Terminals(api.hub().clone()),
        CampaignCards::Virtual => {
            if let Some(dir) = &a.campaign_card_dir {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("--campaign-card-dir {}", dir.display()))?;
            }
            CardSource::Virtual {
                dir: a.campaign_card_dir.clone(),
            }
        }
    };
    let node = server::campaigns::node_name();
    let options = WorkerOptions {
        workers: a.campaign_workers,
        lease: Duration::from_secs(a.campaign_lease),
        ..WorkerOptions::default()
    };
    let w = CampaignWorkers::start(issuer.clone(), source, options, metrics.clone(), &node)
        .context("starting the campaign workers")?;
    println!(
        "campaign workers: {} on {} cards, as {node}",
        a.campaign_workers,
        match a.campaign_cards {
            CampaignCards::Terminals => "the terminals'",
            CampaignCards::Virtual => "virtual",
        }
    );
    Ok(w)
}

/// Starts the OTA service on the current runtime: the ESME (it reconnects by itself; its
/// state changes are logged), the MO loop, resumption, and a one-second tick for PoR
/// time-outs and pending sessions.
async fn start_admin_server(
    engine: &tsm::ota::engine::Engine,
    listen: &str,
) -> Result<server::ota::HttpsBearer> {
    let queue = scp81::AdminQueue::new();
    let admin = scp81::AdminServer::bind(
        listen,
        scp81::ServerConfig::default(),
        server::ota::OtaService::psk_store(engine.clone()),
        queue.clone(),
    )
    .await
    .with_context(|| format!("--ota-https {listen}"))?
    .with_audit(|r| {
        tracing::info!(
            session = r.session,
            identity = r.identity.as_deref().unwrap_or("?"),
            peer = %r.peer,
            cipher = r.cipher.as_deref().unwrap_or("-"),
            scripts = r.scripts_sent,
            outcome = ?r.outcome,
            "SCP81 connection"
        )
    });
    let addr = admin.local_addr()?;
    println!(
        "OTA over HTTPS (SCP81, TLS-PSK): {addr}; cards are sent to {}",
        engine
            .config()
            .https
            .as_ref()
            .map(|h| h.address.to_string())
            .unwrap_or_default()
    );
    tokio::spawn(async move {
        if let Err(e) = admin.run().await {
            tracing::error!("SCP81 admin server stopped: {e}");
        }
    });
    Ok(server::ota::HttpsBearer {
        queue,
        runtime: tokio::runtime::Handle::current(),
    })
}

fn start_ota(
    engine: tsm::ota::engine::Engine,
    config: smpp::EsmeConfig,
    address: &str,
    https: Option<server::ota::HttpsBearer>,
) {
    use server::ota::{OtaService, SmppGateway};
    use tsm::ota::engine::MoOutcome;
    let smsc = config.redacted_url();
    let (esme, mut inbound) = smpp::Esme::connect(config);
    let gateway = Arc::new(SmppGateway::new(
        esme.clone(),
        address,
        tokio::runtime::Handle::current(),
    ));
    let service = OtaService::new(engine, gateway.clone(), https);
    let mut status = esme.watch_status();
    tokio::spawn(async move {
        loop {
            let now = status.borrow_and_update().clone();
            match now {
                smpp::Status::Bound => tracing::info!(smsc = %smsc, "SMSC: bound"),
                smpp::Status::Connecting => {}
                smpp::Status::Reconnecting {
                    attempt,
                    delay,
                    reason,
                } => tracing::warn!(
                    smsc = %smsc,
                    attempt,
                    "SMSC unreachable or link lost ({reason}); reconnecting in {delay:?}"
                ),
                smpp::Status::Refused { status } => {
                    tracing::error!(smsc = %smsc, "SMSC refused the bind (status {status:#x}): check --smpp's system id and password; OTA SMS cannot go out");
                    break;
                }
                smpp::Status::Closed => break,
            }
            if status.changed().await.is_err() {
                break;
            }
        }
    });
    let s = service.clone();
    tokio::task::spawn_blocking(move || match s.resume() {
        Ok(()) => tracing::info!("OTA: open sessions resumed"),
        Err(e) => tracing::warn!("OTA: resuming the open sessions: {e}"),
    });
    let s = service.clone();
    tokio::spawn(async move {
        // Kept alive as long as the MO loop runs.
        let _esme = esme;
        while let Some(message) = inbound.recv().await {
            let Some(sms) = gateway.take_inbound(message) else {
                continue;
            };
            let from = sms.msisdn.clone();
            let s = s.clone();
            match tokio::task::spawn_blocking(move || s.on_sms(&sms)).await {
                Ok(Ok(Some(MoOutcome::Handled(out)))) => {
                    tracing::info!(from = %from, answers = out.len(), "OTA: MO packet handled")
                }
                Ok(Ok(Some(MoOutcome::Ignored(why)))) => {
                    tracing::warn!(from = %from, "OTA: MO packet ignored: {why}")
                }
                Ok(Ok(None)) => tracing::debug!(from = %from, "OTA: MO part (or not OTA)"),
                Ok(Err(e)) => tracing::warn!(from = %from, "OTA: MO: {e}"),
                Err(e) => tracing::error!("OTA: MO task: {e}"),
            }
        }
        tracing::warn!("OTA: the ESME stopped");
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let s = service.clone();
            let r = tokio::task::spawn_blocking(move || {
                if let Err(e) = s.run_due_timeouts() {
                    tracing::warn!("OTA: PoR time-outs: {e}");
                }
                if let Err(e) = s.start_pending() {
                    tracing::warn!("OTA: pending sessions: {e}");
                }
            })
            .await;
            if let Err(e) = r {
                tracing::error!("OTA: tick: {e}");
            }
        }
    });
}

/// The key store of the cards' base keys.
fn open_keys(keystore: &str) -> Result<Arc<dyn kms::KeyStore>> {
    Ok(Arc::from(kms::open(keystore).with_context(|| {
        format!("--keystore {}", redact(keystore))
    })?))
}

/// The issuer over the platform database and the key store of the cards' base keys.
pub(crate) fn issuer_of(store: &tsm::Store, keystore: &str) -> Result<tsm::Issuer> {
    let keys = open_keys(keystore)?;
    Ok(tsm::Issuer::new(
        store.clone(),
        keys,
        tsm::IssuerConfig::default(),
    ))
}

/// How often the token files are compared with what was last read (token rotation).
const TOKEN_FILES_EVERY: Duration = Duration::from_secs(1);

/// Where the tokens come from: the options (or the environment), read once, and the
/// files, re-read while serving.
#[derive(Clone)]
struct TokenSources {
    admin_token: Option<Zeroizing<String>>,
    admin_token_file: Option<PathBuf>,
    /// Whether operator and terminal tokens are read (a platform with an operator API).
    operators: bool,
    operator_tokens: Vec<String>,
    operator_tokens_file: Option<PathBuf>,
    terminal_tokens: Vec<String>,
    terminal_tokens_file: Option<PathBuf>,
    tenant: String,
}

impl TokenSources {
    fn of(a: &ServeArgs) -> Self {
        let operators = a.issuance || a.role.is_some() || a.ota;
        Self {
            admin_token: std::env::var(&a.admin_token_env)
                .ok()
                .filter(|t| !t.is_empty())
                .map(Zeroizing::new),
            admin_token_file: a.admin_token_file.clone(),
            operators,
            operator_tokens: a.operator_tokens.clone(),
            operator_tokens_file: a.operator_tokens_file.clone().filter(|_| operators),
            terminal_tokens: a.terminal_tokens.clone(),
            terminal_tokens_file: a.terminal_tokens_file.clone().filter(|_| operators),
            tenant: a.tenant.clone(),
        }
    }

    /// The files re-read while serving.
    fn files(&self) -> Vec<PathBuf> {
        [
            &self.admin_token_file,
            &self.operator_tokens_file,
            &self.terminal_tokens_file,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }
}

/// Every token of the options, the environment and the files: the admin's, and with an
/// operator API the operators' and the terminals'.
fn token_table(a: &TokenSources) -> Result<TokenTable> {
    let mut tokens = TokenTable::new();
    if let Some(t) = &a.admin_token {
        tokens.add(t.as_str(), Principal::admin());
    }
    for (source, t) in token_lines(&[], a.admin_token_file.as_deref())? {
        if t.trim().len() < 16 {
            let source = source.as_deref().unwrap_or("--admin-token-file");
            bail!("{source}: an admin token of 16 characters or more");
        }
        tokens.add(t.trim(), Principal::admin());
    }
    if !a.operators {
        return Ok(tokens);
    }
    let operators = token_lines(&a.operator_tokens, a.operator_tokens_file.as_deref())?;
    for (n, t) in pairs(&operators, "--operator-token")? {
        // [TENANT/]NAME[:ROLE]; the role is operator (default) or viewer.
        let (tenant, n) = match n.split_once('/') {
            Some((tenant, n)) => (tenant.to_string(), n.to_string()),
            None => (a.tenant.clone(), n),
        };
        let (name, role) = match n.split_once(':') {
            Some((name, role)) => (
                name.to_string(),
                role.parse()
                    .map_err(|e: String| anyhow::anyhow!("--operator-token {name}: {e}"))?,
            ),
            None => (n, Role::Operator),
        };
        tokens.add(
            t.as_str(),
            Principal {
                name,
                role,
                tenant: Some(tenant),
            },
        );
    }
    let terminals = token_lines(&a.terminal_tokens, a.terminal_tokens_file.as_deref())?;
    for (terminal, token) in pairs(&terminals, "--terminal-token")? {
        tokens.add(
            token.as_str(),
            Principal {
                name: terminal,
                role: Role::Terminal,
                tenant: None,
            },
        );
    }
    Ok(tokens)
}

/// Token rotation: the token files (admin, operators, terminals) are re-read when they
/// change (or on SIGHUP) into the one table every API shares; a file that no longer parses,
/// or leaves a platform without operators, keeps the tokens in force. Terminals connected
/// with a token that is gone are disconnected (the hubs are guarded by the table). Tokens
/// given as options or in the environment stay as they were read at start.
fn watch_tokens(a: &ServeArgs, sources: &TokenSources, tokens: &TokenTable) {
    let files = sources.files();
    if files.is_empty() {
        return;
    }
    let sources = sources.clone();
    let needs_operators = a.issuance || a.role.is_some();
    tracing::info!(
        files = files.len(),
        "token files are re-read when they change (or on SIGHUP)"
    );
    server::auth::watch_token_files(tokens.clone(), files, TOKEN_FILES_EVERY, move || {
        let t = token_table(&sources).map_err(|e| format!("{e:#}"))?;
        if needs_operators && !t.has_role(&[Role::Operator, Role::Viewer]) {
            return Err("no operator token left".into());
        }
        Ok(t)
    });
}

/// Plain HTTP only on loopback addresses: a `--listen` that resolves to any other address
/// (`0.0.0.0`, a LAN address, a host name of one) needs TLS, or `--insecure-http` (a
/// TLS-terminating proxy in front, say).
fn check_plain_http(listen: &str, tls: bool, insecure_http: bool) -> Result<()> {
    use std::net::ToSocketAddrs;
    if tls {
        return Ok(());
    }
    let addrs: Vec<std::net::SocketAddr> = listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {listen}"))?
        .collect();
    let exposed: Vec<_> = addrs.iter().filter(|x| !x.ip().is_loopback()).collect();
    if exposed.is_empty() {
        return Ok(());
    }
    if insecure_http {
        tracing::warn!(%listen, "plain HTTP on a non-loopback address (--insecure-http): tokens and data cross the network in clear");
        return Ok(());
    }
    bail!(
        "--listen {listen}: plain HTTP is only served on loopback addresses (127.0.0.1, [::1]); \
         give --tls-cert and --tls-key to serve HTTPS there, or --insecure-http if a \
         TLS-terminating proxy is in front"
    )
}

/// The `--terminal-ca` roots and `--terminal-crl` CRLs; `None` without `--terminal-ca`.
type TerminalCa = (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
);

fn terminal_certificates(a: &ServeArgs) -> Result<Option<TerminalCa>> {
    if a.terminal_ca.is_empty() {
        return Ok(None);
    }
    let mut roots = Vec::new();
    for f in &a.terminal_ca {
        roots.extend(server::tls::load_certificates(f).context("--terminal-ca")?);
    }
    let mut crls = Vec::new();
    for f in &a.terminal_crl {
        crls.extend(server::tls::load_crls(f).context("--terminal-crl")?);
    }
    Ok(Some((roots, crls)))
}

/// `NAME=TOKEN` pairs (the name trimmed, the token of 16 characters or more). An error
/// names where the entry came from (`what`, or the file and line), never the entry itself.
fn pairs(list: &[TokenLine], what: &str) -> Result<Vec<(String, Zeroizing<String>)>> {
    list.iter()
        .map(|(source, p)| {
            p.split_once('=')
                .map(|(n, t)| (n.trim().to_string(), Zeroizing::new(t.trim().to_string())))
                .filter(|(n, t)| !n.is_empty() && t.len() >= 16)
                .ok_or_else(|| {
                    let source = source.as_deref().unwrap_or(what);
                    anyhow::anyhow!("{source}: expected NAME=TOKEN with a token of 16+ characters")
                })
        })
        .collect()
}

/// A token entry and where it came from (`None`: the option or the environment; else the
/// file and line).
type TokenLine = (Option<String>, Zeroizing<String>);

/// The token entries of the options (or the environment) and of the file, one a line
/// (blank lines and `#` comments skipped).
fn token_lines(given: &[String], file: Option<&std::path::Path>) -> Result<Vec<TokenLine>> {
    let mut out: Vec<TokenLine> = given
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| (None, Zeroizing::new(t.clone())))
        .collect();
    if let Some(path) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?,
        );
        out.extend(
            text.lines()
                .enumerate()
                .map(|(i, l)| (i, l.trim()))
                .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
                .map(|(i, l)| {
                    (
                        Some(format!("{} line {}", path.display(), i + 1)),
                        Zeroizing::new(l.to_string()),
                    )
                }),
        );
    }
    Ok(out)
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
    fn plain_http_on_loopback_only() {
        use super::check_plain_http as check;
        assert!(check("127.0.0.1:0", false, false).is_ok());
        assert!(check("[::1]:8080", false, false).is_ok());
        assert!(check("localhost:0", false, false).is_ok());
        let e = check("0.0.0.0:8080", false, false).unwrap_err().to_string();
        assert!(
            e.contains("--insecure-http") && e.contains("--tls-cert"),
            "{e}"
        );
        assert!(check("192.0.2.1:80", false, false).is_err());
        assert!(check("0.0.0.0:8080", true, false).is_ok());
        assert!(check("0.0.0.0:8080", false, true).is_ok());
        assert!(check("not an address", false, false).is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite:/tmp/x"), "sqlite:/tmp/x");
    }
}
