//! Issue #10 from the command line: supplementary security domains shared between a card
//! issuer (CI) and application providers (AP).
//!
//! * `partner add|list|revoke` (CI): partners in the CI's local database, like `tenant` and
//!   `category`. A running `serve --role ci` trusts a new partner's root (and stops trusting
//!   a revoked one) within [`PARTNER_REFRESH`].
//! * `ssd request|status|renew` (AP): these talk to the AP's running `serve --role ap` over
//!   its API (`--server`, operator bearer token): the card is in a reader of one of the
//!   AP's terminals (`cardwright agent --server …` lends it to that server), and that server
//!   holds the AP's link to the CI and its key store. Running the flow in this process
//!   instead would need the AP's client certificate and key store here too; one process
//!   owning them is simpler and safer.
//! * `keys policy` (CI or AP): the SSD key policy in the local database.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

use crate::issue_cmd::Platform;

/// How often `serve --role ci` re-reads the registered partners' roots for the TLS layer.
pub const PARTNER_REFRESH: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct PartnerCmd {
    #[command(flatten)]
    pub platform: Platform,
    #[command(subcommand)]
    pub op: PartnerOp,
}

#[derive(Debug, Subcommand)]
pub enum PartnerOp {
    /// Register an application provider: its root CA (its platform's client certificates
    /// chain to it), the AID prefix of its SSDs, the card numbers it holds contracts for,
    /// and its transport public key (initial keys are wrapped for it).
    Add {
        /// Partner id (also its tenant id), e.g. `bank1`.
        #[arg(long)]
        id: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        /// Its root CA certificate (PEM or DER).
        #[arg(long)]
        cert: PathBuf,
        /// AID prefix of its SSDs (hex), e.g. A000000151BA01.
        #[arg(long)]
        ssd_aid_prefix: String,
        /// Card numbers under contract, FIRST-LAST (or one number); repeatable.
        #[arg(long = "cards", required = true)]
        cards: Vec<String>,
        /// Its P-256 transport public key (SubjectPublicKeyInfo, PEM or DER), as
        /// `serve --role ap --transport-key-out FILE` writes it.
        #[arg(long)]
        transport_key: PathBuf,
    },
    /// The registered partners.
    List,
    /// Revoke a partner: it can do nothing more, and its certificates are refused in the
    /// TLS handshake.
    Revoke {
        /// Partner id.
        #[arg(long)]
        id: String,
    },
}

pub fn run_partner(cmd: PartnerCmd) -> Result<()> {
    match cmd.op {
        PartnerOp::Add {
            id,
            name,
            cert,
            ssd_aid_prefix,
            cards,
            transport_key,
        } => {
            let certificate =
                std::fs::read(&cert).with_context(|| format!("--cert {}", cert.display()))?;
            let transport = std::fs::read(&transport_key)
                .with_context(|| format!("--transport-key {}", transport_key.display()))?;
            match std::str::from_utf8(&transport) {
                Ok(pem) if pem.contains("-----BEGIN") => {
                    tsm::ssd::TransportPublicKey::from_pem(pem).map(|_| ())
                }
                _ => tsm::ssd::TransportPublicKey::from_spki_der(&transport).map(|_| ()),
            }
            .map_err(|e| anyhow!("--transport-key {}: {e}", transport_key.display()))?;
            let aid_prefix = apdu::parse_hex(&ssd_aid_prefix)
                .map_err(|e| anyhow!("--ssd-aid-prefix {ssd_aid_prefix}: {e}"))?;
            let card_ranges = cards
                .iter()
                .map(|c| server::ssd_wire::card_range(c).map_err(|e| anyhow!("--cards {c}: {e}")))
                .collect::<Result<Vec<_>>>()?;
            let store = cmd.platform.anchored_store()?;
            let p = store.add_partner(
                &cmd.platform.actor,
                &tsm::ssd::NewPartner {
                    id: id.clone(),
                    name: name.unwrap_or_else(|| id.clone()),
                    certificate,
                    aid_prefix,
                    card_ranges,
                    transport_key: transport,
                },
            )?;
            println!(
                "partner {} registered (root SHA-256 {}, SSD AIDs {}…)",
                p.id,
                apdu::hex(&p.certificate_sha256),
                apdu::hex(&p.aid_prefix)
            );
        }
        PartnerOp::List => {
            let store = cmd.platform.store_existing()?;
            let partners = store.partners()?;
            if partners.is_empty() {
                println!("no partners");
            }
            for p in partners {
                let view = server::ssd_wire::PartnerView::from(&p);
                println!(
                    "{:<16} {:<8} AIDs {}…  cards {}  root {}",
                    view.id,
                    if view.revoked { "REVOKED" } else { "active" },
                    view.aid_prefix,
                    view.card_ranges.join(","),
                    &view.certificate_sha256[..16.min(view.certificate_sha256.len())]
                );
            }
        }
        PartnerOp::Revoke { id } => {
            let store = cmd.platform.anchored_store()?;
            let p = store.revoke_partner(&cmd.platform.actor, &id)?;
            println!(
                "partner {} revoked; its certificates are refused from the next TLS handshake",
                p.id
            );
        }
    }
    Ok(())
}

/// The AP's running server and the operator's token.
#[derive(Debug, Args, Clone)]
pub struct ApServer {
    /// The AP platform's `serve --role ap` URL.
    #[arg(
        long,
        global = true,
        env = "CARDWRIGHT_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// Environment variable holding the operator's bearer token.
    #[arg(long, global = true, default_value = "CARDWRIGHT_TOKEN")]
    pub token_env: String,
    /// CA certificate (PEM) of the server's TLS certificate, for an https:// server.
    #[arg(long, global = true)]
    pub server_ca: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SsdCmd {
    #[command(flatten)]
    pub server: ApServer,
    #[command(subcommand)]
    pub op: SsdOp,
}

/// The card's reader: `--terminal T --reader R`.
#[derive(Debug, Args, Clone)]
pub struct ReaderArgs {
    /// The AP terminal (`cardwright agent --server … --name T`) whose reader holds the card.
    #[arg(long)]
    pub terminal: String,
    /// The reader of that terminal.
    #[arg(long)]
    pub reader: String,
}

#[derive(Debug, Subcommand)]
pub enum SsdOp {
    /// Ask the card issuer for an SSD on the card and take it over (authorized: the AP's
    /// keys replace the CI's initial keys) or have it managed (delegated).
    Request {
        /// Card number.
        #[arg(long)]
        card_number: String,
        /// AID of the SSD (hex), under the partner's prefix.
        #[arg(long)]
        aid: String,
        /// authorized or delegated.
        #[arg(long, value_parser = ["authorized", "delegated"])]
        model: String,
        #[command(flatten)]
        reader: ReaderArgs,
    },
    /// The SSD as the AP platform records it: owner, model, key versions with creation and
    /// expiry and holder, hand-over time and receipt, renewals.
    Status {
        /// Card number.
        #[arg(long)]
        card_number: String,
        /// AID of the SSD (hex).
        #[arg(long)]
        aid: String,
    },
    /// Renew the SSD's keys on the card (due, or with --force now: the current key set is
    /// marked compromised first).
    Renew {
        /// Card number.
        #[arg(long)]
        card_number: String,
        /// AID of the SSD (hex).
        #[arg(long)]
        aid: String,
        /// Renew now, marking the current key set compromised.
        #[arg(long)]
        force: bool,
        /// Why (with --force), e.g. `compromise`.
        #[arg(long, requires = "force")]
        reason: Option<String>,
        #[command(flatten)]
        reader: ReaderArgs,
    },
}

/// A JSON client of the AP's API with the operator's token.
struct ApApiClient {
    base: String,
    agent: ureq::Agent,
    token: Zeroizing<String>,
}

impl ApApiClient {
    fn new(s: &ApServer) -> Result<Self> {
        let base = s.server.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--server {base}: expected http://host:port or https://host:port");
        }
        let token = Zeroizing::new(std::env::var(&s.token_env).map_err(|_| {
            anyhow!(
                "set the operator's bearer token in the environment variable {}",
                s.token_env
            )
        })?);
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)));
        if let Some(ca) = &s.server_ca {
            let pem = std::fs::read(ca).with_context(|| format!("--server-ca {}", ca.display()))?;
            let roots: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if roots.is_empty() {
                bail!("--server-ca {}: no certificate in it", ca.display());
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                    .build(),
            );
        }
        Ok(Self {
            base,
            agent: config.build().into(),
            token,
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token.as_str());
        let resp = match body {
            Some(b) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(b),
            None => self.agent.get(&url).header("Authorization", &auth).call(),
        }
        .with_context(|| format!("{method} {url}"))?;
        crate::api_answer::json(&url, resp)
    }
}

/// Only digits and hex go into a path.
fn segment(what: &str, s: &str) -> Result<String> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("--{what} {s}: expected digits (card number) or hex (AID)");
    }
    Ok(s.to_ascii_uppercase())
}

pub fn run_ssd(cmd: SsdCmd) -> Result<()> {
    let api = ApApiClient::new(&cmd.server)?;
    let answer = match cmd.op {
        SsdOp::Request {
            card_number,
            aid,
            model,
            reader,
        } => api.call(
            "POST",
            "/api/v1/ssd/requests",
            Some(&json!({
                "card_number": card_number, "aid": aid, "model": model,
                "terminal": reader.terminal, "reader": reader.reader,
            })),
        )?,
        SsdOp::Status { card_number, aid } => api.call(
            "GET",
            &format!(
                "/api/v1/ssd/{}/{}",
                segment("card-number", &card_number)?,
                segment("aid", &aid)?
            ),
            None,
        )?,
        SsdOp::Renew {
            card_number,
            aid,
            force,
            reason,
            reader,
        } => api.call(
            "POST",
            &format!(
                "/api/v1/ssd/{}/{}/renew",
                segment("card-number", &card_number)?,
                segment("aid", &aid)?
            ),
            Some(&json!({
                "force": force, "reason": reason,
                "terminal": reader.terminal, "reader": reader.reader,
            })),
        )?,
    };
    let ssd = answer.get("ssd").unwrap_or(&answer);
    print_ssd(ssd);
    Ok(())
}

fn when(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "-".into();
    };
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn print_ssd(v: &Value) {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    println!("SSD {} on card {}", s("aid"), s("card_number"));
    println!("  owner        {}", s("owner"));
    println!("  model        {}", s("model"));
    println!("  state        {}", s("state"));
    println!("  privileges   {}", s("privileges"));
    println!(
        "  created      {}",
        when(v.get("created_ms").and_then(Value::as_i64))
    );
    println!(
        "  handed over  {}",
        when(v.get("handed_over_ms").and_then(Value::as_i64))
    );
    if let Some(r) = v.get("receipt").and_then(Value::as_str) {
        println!("  receipt      {r}");
    }
    for k in v
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "  key {:#04x}    {} held by {}, created {}, expires {}, KCV {}{}",
            k.get("kvn").and_then(Value::as_u64).unwrap_or(0),
            k.get("state").and_then(Value::as_str).unwrap_or("-"),
            k.get("holder").and_then(Value::as_str).unwrap_or("-"),
            when(k.get("created_ms").and_then(Value::as_i64)),
            when(k.get("expires_ms").and_then(Value::as_i64)),
            k.get("kcv").and_then(Value::as_str).unwrap_or("-"),
            k.get("reason")
                .and_then(Value::as_str)
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
        );
    }
    for r in v
        .get("renewals")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "  renewal      {:#04x} -> {:#04x} {} at {}",
            r.get("from_kvn").and_then(Value::as_u64).unwrap_or(0),
            r.get("to_kvn").and_then(Value::as_u64).unwrap_or(0),
            r.get("cause").and_then(Value::as_str).unwrap_or("-"),
            when(r.get("at_ms").and_then(Value::as_i64)),
        );
    }
}

/// `365d`, `12h`, `30m`, `45s` (a plain number is days).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "d"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}': expected a number with d, h, m or s"))?;
    let secs = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => None,
    }
    .ok_or_else(|| format!("'{text}': expected a number with d, h, m or s"))?;
    Ok(Duration::from_secs(secs))
}

fn days(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else {
        format!("{s}s")
    }
}

/// `keys policy`: show or set the SSD key policy in the local database.
pub fn run_policy(
    platform: &Platform,
    lifetime: Option<Duration>,
    renew_before: Option<Duration>,
) -> Result<()> {
    if lifetime.is_none() && renew_before.is_none() {
        let p = platform.store_existing()?.key_policy()?;
        println!(
            "SSD key lifetime {}, renewed {} before expiry",
            days(p.ssd_lifetime),
            days(p.renew_before)
        );
        return Ok(());
    }
    let store = platform.anchored_store()?;
    let current = store.key_policy()?;
    let policy = tsm::ssd::KeyPolicy::new(
        lifetime.unwrap_or(current.ssd_lifetime),
        renew_before.unwrap_or(current.renew_before),
    )?;
    store.set_key_policy(&platform.actor, &policy)?;
    println!(
        "SSD key policy set: lifetime {}, renewed {} before expiry",
        days(policy.ssd_lifetime),
        days(policy.renew_before)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("365d"),
            Ok(Duration::from_secs(365 * 86_400))
        );
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(days(Duration::from_secs(30 * 86_400)), "30d");
    }

    #[test]
    fn path_segments() {
        assert_eq!(
            segment("aid", "a000000151ba0101").unwrap(),
            "A000000151BA0101"
        );
        assert!(segment("aid", "../x").is_err());
        assert!(segment("card-number", "").is_err());
    }
}
