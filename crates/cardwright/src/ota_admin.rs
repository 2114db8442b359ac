//! `cardwright ota catalog|enrol|push|status`: the platform's OTA records, over the
//! database (`--db`) like the other admin commands. A push opens a `pending` session that
//! the running `serve --ota` picks up and sends.

use anyhow::{anyhow, bail, Context, Result};
use apdu::{hex, parse_hex};
use clap::{Args, Subcommand};
use gp::aid::Aid;
use tsm::ota::{Bearer, CatalogEntry, Origin};

use crate::issue_cmd::Platform;

#[derive(Debug, Args)]
pub struct CatalogCmd {
    #[command(flatten)]
    pub platform: Platform,
    #[command(subcommand)]
    pub op: CatalogOp,
}

#[derive(Debug, Subcommand)]
pub enum CatalogOp {
    /// Offer an application (a registered package of the acting tenant).
    Add(CatalogAddArgs),
    /// The acting tenant's catalog.
    List {
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Withdraw an application (sessions keep its name).
    Remove {
        /// Its name.
        #[arg(long)]
        app: String,
    },
}

#[derive(Debug, Args)]
pub struct CatalogAddArgs {
    /// The name the card's download agent asks for (letters, digits, - and _, at most 32).
    #[arg(long)]
    pub app: String,
    /// The load file AID (a package registered with `package add`), hex.
    #[arg(long)]
    pub package: String,
    /// The executable module (applet class) AID, hex (default: the CAP's first applet).
    #[arg(long)]
    pub module: Option<String>,
    /// The instance AID, hex (default: the module AID).
    #[arg(long)]
    pub instance: Option<String>,
    /// The application's security domain AID, hex, created on the card if missing
    /// (default: the package AID with `FF01` appended).
    #[arg(long)]
    pub sd: Option<String>,
    /// The menu text (default: the name).
    #[arg(long)]
    pub title: Option<String>,
    /// Privileges of the instance, hex (1 or 3 bytes).
    #[arg(long, default_value = "00")]
    pub privileges: String,
    /// Install parameters (the C9 value), hex.
    #[arg(long, default_value = "")]
    pub params: String,
}

#[derive(Debug, Args)]
pub struct EnrolArgs {
    #[command(flatten)]
    pub platform: Platform,
    /// The platform's card number.
    #[arg(long)]
    pub card: String,
    /// The card's ICCID (18-20 digits).
    #[arg(long)]
    pub iccid: String,
    /// The subscriber's number (international, optionally with +).
    #[arg(long)]
    pub msisdn: String,
    /// The SCP80 key set version (1-15).
    #[arg(long, default_value_t = 1)]
    pub kvn: u8,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub platform: Platform,
    /// The card's ICCID.
    #[arg(long)]
    pub iccid: String,
    /// The catalog application.
    #[arg(long)]
    pub app: String,
    /// The bearer: sms (SCP80) or https (SCP81).
    #[arg(long, default_value = "sms")]
    pub bearer: String,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub platform: Platform,
    /// The card's ICCID.
    #[arg(long)]
    pub iccid: String,
    /// Sessions to show, newest first.
    #[arg(long, default_value_t = 10)]
    pub limit: u32,
    /// Machine-readable output (JSON).
    #[arg(long)]
    pub json: bool,
}

fn aid_arg(hex_aid: &str, what: &str) -> Result<Aid> {
    Aid::new(&parse_hex(hex_aid).with_context(|| format!("{what}: not hex"))?)
        .map_err(|e| anyhow!("{what}: {e}"))
}

pub fn run_catalog(cmd: CatalogCmd) -> Result<()> {
    let actor = cmd.platform.actor()?;
    match cmd.op {
        CatalogOp::Add(a) => {
            let store = cmd.platform.anchored_store()?;
            let package = aid_arg(&a.package, "--package")?;
            let module = match &a.module {
                Some(m) => aid_arg(m, "--module")?,
                None => {
                    let cap = store
                        .package_cap(&package)?
                        .ok_or_else(|| anyhow!("package {package} is not registered"))?;
                    let cap = gp::cap::CapFile::from_bytes(&cap)
                        .map_err(|e| anyhow!("package {package}: {e}"))?;
                    *cap.applet_aids()
                        .first()
                        .ok_or_else(|| anyhow!("package {package} has no applet"))?
                }
            };
            let instance = match &a.instance {
                Some(i) => aid_arg(i, "--instance")?,
                None => module,
            };
            let sd = match &a.sd {
                Some(s) => aid_arg(s, "--sd")?,
                None => {
                    let mut b = package.as_bytes().to_vec();
                    b.extend_from_slice(&[0xFF, 0x01]);
                    b.truncate(16);
                    Aid::new(&b).map_err(|e| anyhow!("SD AID: {e}"))?
                }
            };
            let e = store.add_ota_catalog_entry(
                &actor.name(),
                &CatalogEntry {
                    tenant: actor.tenant.clone(),
                    app: a.app.clone(),
                    title: a.title.clone().unwrap_or_else(|| a.app.clone()),
                    package,
                    module,
                    instance,
                    sd,
                    privileges: parse_hex(&a.privileges).context("--privileges")?,
                    params: parse_hex(&a.params).context("--params")?,
                    created_ms: 0,
                },
            )?;
            println!(
                "{} ({}) added: package {}, instance {}, SD {}",
                e.app, e.title, e.package, e.instance, e.sd
            );
        }
        CatalogOp::List { json } => {
            let store = cmd.platform.store_existing()?;
            let list = store.ota_catalog(&actor.tenant)?;
            if json {
                let v: Vec<_> = list.iter().map(entry_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for e in &list {
                    println!(
                        "{:<16} {:<24} package {} module {} instance {} SD {}",
                        e.app, e.title, e.package, e.module, e.instance, e.sd
                    );
                }
            }
        }
        CatalogOp::Remove { app } => {
            let store = cmd.platform.anchored_store()?;
            store.remove_ota_catalog_entry(&actor.name(), &actor.tenant, &app)?;
            println!("{app} removed");
        }
    }
    Ok(())
}

/// A catalog entry as JSON (the API's form too).
pub fn entry_json(e: &CatalogEntry) -> serde_json::Value {
    serde_json::json!({
        "app": e.app, "title": e.title, "package": e.package.to_string(),
        "module": e.module.to_string(), "instance": e.instance.to_string(),
        "sd": e.sd.to_string(), "privileges": hex(&e.privileges), "params": hex(&e.params),
    })
}

pub fn run_enrol(a: EnrolArgs) -> Result<()> {
    let actor = a.platform.actor()?;
    let store = a.platform.anchored_store()?;
    let (card, _) = tsm::card_status(&store, &actor, &a.card)?;
    let c = store.enrol_ota_card(&actor.name(), &card.card_number, &a.iccid, &a.msisdn, a.kvn)?;
    println!(
        "card {} enrolled for OTA: ICCID {}, MSISDN +{}, SCP80 key set {:02X}",
        c.card_number, c.iccid, c.msisdn, c.kvn
    );
    Ok(())
}

pub fn run_push(a: PushArgs) -> Result<()> {
    let actor = a.platform.actor()?;
    let bearer: Bearer = a
        .bearer
        .parse()
        .map_err(|e: String| anyhow!("--bearer: {e}"))?;
    let store = a.platform.anchored_store()?;
    let card = store
        .ota_card_by_iccid(&a.iccid)?
        .ok_or_else(|| anyhow!("no card with ICCID {} is enrolled for OTA", a.iccid))?;
    // Only the card's issuer: card_status refuses other tenants.
    tsm::card_status(&store, &actor, &card.card_number)?;
    if store.ota_catalog_entry(&actor.tenant, &a.app)?.is_none() {
        bail!("'{}' is not in the catalog of {}", a.app, actor.tenant);
    }
    let s = store.open_ota_session(
        &actor.name(),
        &actor.tenant,
        &card.card_number,
        &a.app,
        bearer,
        Origin::Server,
    )?;
    println!(
        "session {} opened (pending): `serve --ota` sends it; follow it with `ota status --iccid {}`",
        s.id, a.iccid
    );
    Ok(())
}

pub fn run_status(a: StatusArgs) -> Result<()> {
    let actor = a.platform.actor()?;
    let store = a.platform.store_existing()?;
    let card = store
        .ota_card_by_iccid(&a.iccid)?
        .ok_or_else(|| anyhow!("no card with ICCID {} is enrolled for OTA", a.iccid))?;
    tsm::card_status(&store, &actor, &card.card_number)?;
    let sessions = store.ota_sessions(&card.card_number, a.limit)?;
    if a.json {
        let mut v = Vec::new();
        for s in &sessions {
            let mut j = serde_json::to_value(s)?;
            j["messages"] = serde_json::to_value(store.ota_messages(s.id)?)?;
            v.push(j);
        }
        let out = serde_json::json!({
            "iccid": card.iccid, "msisdn": card.msisdn, "kvn": card.kvn,
            "counter_out": card.counter_out, "counter_in": card.counter_in, "sessions": v,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "card {} ICCID {} MSISDN +{}: SCP80 key set {:02X}, counters out {} in {}",
        card.card_number, card.iccid, card.msisdn, card.kvn, card.counter_out, card.counter_in
    );
    for s in &sessions {
        println!(
            "session {} {} via {} ({}): {} step {}/{} {}",
            s.id, s.app, s.bearer, s.origin, s.state, s.step, s.steps, s.detail
        );
        for m in store.ota_messages(s.id)? {
            println!(
                "  {} {:<9} counter {:<6} {:>5} bytes {}",
                m.direction,
                m.kind,
                m.counter.map(|c| c.to_string()).unwrap_or_default(),
                m.bytes.len(),
                m.status
            );
        }
    }
    Ok(())
}
