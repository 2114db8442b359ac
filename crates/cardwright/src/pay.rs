//! `cardwright pay …`: card enrolment and payment signatures from the command line, against
//! a `cardwright serve` server (the same flows as the check-out page and the agent).

use crate::cli::Connect;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use pivhost::{payment::MgmtKeySpec, MgmtAlgorithm, PivAlgorithm, PivClient, Slot};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use transport::{CardChannel, Traced};
use zeroize::Zeroizing;

#[derive(Debug, Subcommand)]
pub enum PayCommand {
    /// Enrol the card: the server asks for a key pair, the card generates it and proves
    /// possession, the server's CA issues a certificate, which is written to the card.
    Enrol(PayEnrolArgs),
    /// Pay: the server issues a challenge over the payment, the card signs it after the PIN,
    /// the server verifies and records the authorisation.
    Sign(PaySignArgs),
    /// Revoke a certificate (admin token).
    Revoke(PayRevokeArgs),
}

/// The card and its PIV application: shared by `pay` and `agent`.
#[derive(Debug, Args, Clone)]
pub struct PivCardArgs {
    /// Reader name (or part of it); default: the first reader holding a card.
    #[arg(long, env = "CARDWRIGHT_READER")]
    pub reader: Option<String>,
    /// Use the virtual card in this state file, in process.
    #[arg(long, conflicts_with = "reader")]
    pub sim: Option<PathBuf>,
    /// PIV key slot of the payment key: 9a, 9c (default, digital signature), 9d, 9e.
    #[arg(long, default_value = "9c", value_parser = parse_slot)]
    pub slot: Slot,
    /// PIV management key (hex); default the well-known 0102…08 ×3.
    #[arg(long, env = "CARDWRIGHT_PIV_MGMT_KEY", hide_env_values = true)]
    pub mgmt_key: Option<String>,
    /// Management key algorithm: 3des, aes128, aes192, aes256 (default: as the card reports, else 3des).
    #[arg(long, value_parser = parse_mgmt_alg)]
    pub mgmt_alg: Option<MgmtAlgorithm>,
    /// Print every APDU exchanged on stderr.
    #[arg(long, short = 'd')]
    pub trace: bool,
}

fn parse_slot(s: &str) -> Result<Slot, String> {
    s.parse()
}

fn parse_mgmt_alg(s: &str) -> Result<MgmtAlgorithm, String> {
    MgmtAlgorithm::from_name(s)
        .ok_or_else(|| format!("'{s}': expected 3des, aes128, aes192 or aes256"))
}

impl PivCardArgs {
    /// The management key options.
    pub fn mgmt(&self) -> Result<MgmtKeySpec> {
        Ok(MgmtKeySpec {
            key: self
                .mgmt_key
                .as_deref()
                .map(|k| apdu::parse_hex(k).map(Zeroizing::new))
                .transpose()
                .context("--mgmt-key")?,
            algorithm: self.mgmt_alg,
        })
    }

    /// Connects to the card (reader or virtual card).
    pub fn open(&self) -> Result<PivClient<Box<dyn CardChannel>>> {
        let connect = Connect {
            reader: self.reader.clone(),
            sim: self.sim.clone(),
            key: None,
            key_enc: None,
            key_mac: None,
            key_dek: None,
            key_set: None,
            keyver: 0,
            kdf: "none".into(),
            scp: None,
            sd_trust: None,
            sd_trust_any: false,
            oce_key: None,
            oce_cert: Vec::new(),
            scp11_kvn: 1,
            scp11_kid: None,
            oce_kvn: None,
            keystore: String::new(),
            security_level: None,
            sd: None,
            trace: self.trace,
        };
        let channel = crate::card_cmd::connect_channel(&connect)?;
        let channel: Box<dyn CardChannel> = if self.trace {
            Box::new(Traced::stderr(channel))
        } else {
            channel
        };
        Ok(PivClient::new(channel))
    }
}

/// Where the PIN comes from.
#[derive(Debug, Args, Clone)]
pub struct PinArgs {
    /// Read the card PIN from this environment variable.
    #[arg(long, default_value = "CARDWRIGHT_PIN")]
    pub pin_env: String,
}

impl PinArgs {
    fn pin(&self) -> Result<Zeroizing<String>> {
        match std::env::var(&self.pin_env) {
            Ok(p) if !p.is_empty() => Ok(Zeroizing::new(p)),
            _ => {
                if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    let p = rpassword::prompt_password("Card PIN: ").context("reading the PIN")?;
                    Ok(Zeroizing::new(p))
                } else {
                    bail!(
                        "no PIN: set it in the environment variable {} (or choose another with --pin-env)",
                        self.pin_env
                    )
                }
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct PayEnrolArgs {
    /// Server base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "CARDWRIGHT_SERVER")]
    pub server: String,
    /// Card holder's name (certificate commonName).
    #[arg(long)]
    pub name: String,
    /// Account identifier (certificate UID).
    #[arg(long)]
    pub uid: Option<String>,
    /// Key to generate on the card: p256 or rsa2048.
    #[arg(long, default_value = "p256", value_parser = ["p256", "rsa2048"])]
    pub alg: String,
    #[command(flatten)]
    pub card: PivCardArgs,
    #[command(flatten)]
    pub pin: PinArgs,
}

#[derive(Debug, Args)]
pub struct PaySignArgs {
    /// Server base URL.
    #[arg(long, env = "CARDWRIGHT_SERVER")]
    pub server: String,
    /// Amount, decimal (12.34).
    #[arg(long)]
    pub amount: String,
    /// ISO 4217 currency code.
    #[arg(long)]
    pub currency: String,
    /// Who is paid.
    #[arg(long)]
    pub payee: String,
    /// Order identifier.
    #[arg(long)]
    pub order: String,
    /// Print the authorisation as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub card: PivCardArgs,
    #[command(flatten)]
    pub pin: PinArgs,
}

#[derive(Debug, Args)]
pub struct PayRevokeArgs {
    /// Server base URL.
    #[arg(long, env = "CARDWRIGHT_SERVER")]
    pub server: String,
    /// Certificate serial (hex).
    #[arg(long)]
    pub serial: String,
    /// CRL reason: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, ...
    #[arg(long, default_value = "unspecified")]
    pub reason: String,
    /// Environment variable holding the server's admin token.
    #[arg(long, default_value = "CARDWRIGHT_ADMIN_TOKEN")]
    pub token_env: String,
}

pub fn run(cmd: PayCommand) -> Result<()> {
    match cmd {
        PayCommand::Enrol(a) => enrol(a),
        PayCommand::Sign(a) => sign(a),
        PayCommand::Revoke(a) => revoke(a),
    }
}

/// A small JSON client for the server API.
pub struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(base: &str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("{base}: expected a URL such as https://pay.example or http://127.0.0.1:8080");
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Ok(Self { base, agent })
    }

    /// POST JSON; on a non-2xx answer, an error `CODE: REASON` from the body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.post_with(path, body, None)
    }

    fn post_with(&self, path: &str, body: &Value, token: Option<&str>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.post(&url);
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let resp = req.send_json(body).with_context(|| format!("POST {url}"))?;
        crate::api_answer::json(&url, resp)
    }
}

fn str_field<'a>(v: &'a Value, name: &str) -> Result<&'a str> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the server's answer lacks '{name}'"))
}

fn enrol(a: PayEnrolArgs) -> Result<()> {
    let api = Api::new(&a.server)?;
    let pin = a.pin.pin()?;
    let mgmt = a.card.mgmt()?;
    let mut piv = a.card.open()?;
    let mut body = json!({"name": a.name, "algorithm": a.alg});
    if let Some(uid) = &a.uid {
        body["uid"] = json!(uid);
    }
    let started = api
        .post("/api/v1/enrolments", &body)
        .context("enrolment refused")?;
    let id = str_field(&started, "id")?.to_string();
    let challenge: pki::EnrolmentChallenge = serde_json::from_value(
        started
            .get("challenge")
            .cloned()
            .ok_or_else(|| anyhow!("the server's answer lacks 'challenge'"))?,
    )
    .context("the server's enrolment challenge")?;
    let algorithm = if a.alg == "rsa2048" {
        PivAlgorithm::Rsa2048
    } else {
        PivAlgorithm::EccP256
    };
    let slot = a.card.slot;
    eprintln!(
        "generating a {} key in slot {slot} of {} …",
        pivhost::alg_name(algorithm),
        piv.channel_mut().name()
    );
    let on_card =
        pivhost::payment::enrol(&mut piv, &challenge, algorithm, slot, pin.as_bytes(), &mgmt)
            .context("card")?;
    let cert = api
        .post(
            &format!("/api/v1/enrolments/{id}"),
            &json!({
                "algorithm": a.alg,
                "public_key_template": apdu::hex(&on_card.template),
                "proof": apdu::hex(&on_card.proof),
            }),
        )
        .context("the server refused the enrolment")?;
    let der = apdu::parse_hex(str_field(&cert, "certificate")?).context("certificate")?;
    pivhost::payment::install_certificate(&mut piv, slot, &der, Some(&on_card.public_key), &mgmt)
        .context("writing the certificate to the card")?;
    println!("enrolled: {}", str_field(&cert, "subject")?);
    println!("certificate serial: {}", str_field(&cert, "serial")?);
    println!("valid until: {}", str_field(&cert, "not_after")?);
    println!("key: {} in slot {slot}", pivhost::alg_name(algorithm));
    Ok(())
}

fn sign(a: PaySignArgs) -> Result<()> {
    let api = Api::new(&a.server)?;
    let pin = a.pin.pin()?;
    let mut piv = a.card.open()?;
    let created = api
        .post(
            "/api/v1/payments",
            &json!({
                "amount": a.amount,
                "currency": a.currency,
                "payee": a.payee,
                "order_id": a.order,
            }),
        )
        .context("payment refused")?;
    let id = str_field(&created, "id")?.to_string();
    let canonical = apdu::parse_hex(str_field(&created, "canonical")?).context("canonical")?;
    let signed = pivhost::payment::sign_payment(&mut piv, &canonical, a.card.slot, pin.as_bytes())
        .context("card")?;
    let p = &signed.challenge.request;
    eprintln!(
        "the card signed {} {} to {} (order {})",
        server::amount::format_amount(p.amount_minor, &p.currency),
        p.currency,
        p.payee,
        p.order_id
    );
    let done = api
        .post(
            &format!("/api/v1/payments/{id}/authorise"),
            &json!({
                "request": created.get("request").cloned().unwrap_or(Value::Null),
                "certificate": apdu::hex(&signed.certificate_der),
                "signature": apdu::hex(&signed.signature),
            }),
        )
        .context("payment rejected")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        let auth = &done["authorisation"];
        println!("authorised: {id}");
        println!(
            "amount: {} {}",
            done["amount"].as_str().unwrap_or_default(),
            auth["request"]["currency"].as_str().unwrap_or_default()
        );
        println!(
            "payee: {}",
            auth["request"]["payee"].as_str().unwrap_or_default()
        );
        println!(
            "signed by: {}",
            auth["subject"].as_str().unwrap_or_default()
        );
        println!(
            "certificate serial: {}",
            auth["certificate_serial"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

fn revoke(a: PayRevokeArgs) -> Result<()> {
    let api = Api::new(&a.server)?;
    let token = Zeroizing::new(std::env::var(&a.token_env).map_err(|_| {
        anyhow!(
            "set the admin token in the environment variable {}",
            a.token_env
        )
    })?);
    let r = api
        .post_with(
            &format!("/api/v1/certificates/{}/revoke", a.serial),
            &json!({"reason": a.reason}),
            Some(&token),
        )
        .context("revocation refused")?;
    println!(
        "revoked: {} ({})",
        r["serial"].as_str().unwrap_or_default(),
        r["reason"].as_str().unwrap_or_default()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Api;

    #[test]
    fn server_urls() {
        assert!(Api::new("http://127.0.0.1:8080/").is_ok());
        assert!(Api::new("https://pay.example").is_ok());
        assert!(Api::new("127.0.0.1:8080").is_err());
        assert!(Api::new("ftp://x").is_err());
    }
}
