//! `cardwright ota catalog|enrol|push|status`: the platform's OTA records, over the
//! database (`--db`) like the other admin commands. A push opens a `pending` session that
//! the running `serve --ota` picks up and sends.

use std::str::FromStr;

use anyhow::{anyhow, Result};
use apdu::hex;
use clap::{Args, Subcommand};
use tsm::ota::admin::CatalogRequest;
use tsm::ota::{Bearer, CatalogEntry};

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
    /// Privileges of the instance, hex (1 or 3 bytes; default 00).
    #[arg(long)]
    pub privileges: Option<String>,
    /// Install parameters (the C9 value), hex (default none).
    #[arg(long)]
    pub params: Option<String>,
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
    /// The SCP80 key set version (1-15; default 1, or the lowest the card's secure channel
    /// key set does not use).
    #[arg(long)]
    pub kvn: Option<u8>,
    /// Put the keys on the card in this reader (its name or part of it) before recording
    /// the enrolment: the SCP80 key set and the TLS PSK, by PUT KEY in an SCP03 channel
    /// opened with the card's keys.
    #[arg(long, conflicts_with = "virtual_card")]
    pub reader: Option<String>,
    /// Likewise, with the virtual card in this state file, in process.
    #[arg(long = "virtual", alias = "sim", value_name = "FILE")]
    pub virtual_card: Option<std::path::PathBuf>,
    /// Secure channel security level for PUT KEY.
    #[arg(long, default_value = "mac+enc")]
    pub security_level: String,
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

pub fn run_catalog(cmd: CatalogCmd) -> Result<()> {
    let actor = cmd.platform.actor()?;
    match cmd.op {
        CatalogOp::Add(a) => {
            let store = cmd.platform.anchored_store()?;
            let e = tsm::ota::admin::add_to_catalog(
                &store,
                &actor,
                &CatalogRequest {
                    app: a.app,
                    title: a.title,
                    package: a.package,
                    module: a.module,
                    instance: a.instance,
                    sd: a.sd,
                    privileges: a.privileges,
                    params: a.params,
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
    let req = tsm::ota::admin::EnrolRequest {
        card_number: a.card.clone(),
        iccid: a.iccid.clone(),
        msisdn: a.msisdn.clone(),
        kvn: a.kvn,
    };
    if a.reader.is_none() && a.virtual_card.is_none() {
        let c = tsm::ota::admin::record_enrolment(&store, &actor, &req)?;
        println!(
            "card {} enrolled for OTA: ICCID {}, MSISDN +{}, SCP80 key set {:02X}",
            c.card_number, c.iccid, c.msisdn, c.kvn
        );
        println!(
            "the card must already hold its SCP80 key set {:02X} and TLS PSK (key set 40): \
             give --reader or --virtual to put them on it",
            c.kvn
        );
        return Ok(());
    }
    let level = scp::SecurityLevel::from_str(&a.security_level)
        .map_err(|e| anyhow!("--security-level {}: {e}", a.security_level))?;
    let keys = crate::keys_cmd::open_keystore(&a.platform.keystore)?;
    let mut chan = crate::card_cmd::open_card(a.reader.as_deref(), a.virtual_card.as_deref())?;
    let c = tsm::ota::admin::enrol_on_card(&store, keys.as_ref(), &actor, &req, &mut *chan, level)?;
    println!(
        "card {} enrolled for OTA: ICCID {}, MSISDN +{}; SCP80 key set {:02X} (KIc, KID, DEK) \
         and TLS PSK (key set 40, identity {}) put on the card",
        c.card_number, c.iccid, c.msisdn, c.kvn, c.iccid
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
    let s = tsm::ota::admin::open_push_session(&store, &actor, &a.iccid, &a.app, bearer)?;
    println!(
        "session {} opened (pending): `serve --ota` sends it; follow it with `ota status --iccid {}`",
        s.id, a.iccid
    );
    Ok(())
}

pub fn run_status(a: StatusArgs) -> Result<()> {
    let actor = a.platform.actor()?;
    let store = a.platform.store_existing()?;
    let history = tsm::ota::admin::card_history(&store, &actor, &a.iccid, a.limit)?;
    let card = &history.card;
    if a.json {
        let mut v = Vec::new();
        for log in &history.sessions {
            let mut j = serde_json::to_value(&log.session)?;
            j["messages"] = serde_json::to_value(&log.messages)?;
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
    for log in &history.sessions {
        let s = &log.session;
        println!(
            "session {} {} via {} ({}): {} step {}/{} {}",
            s.id, s.app, s.bearer, s.origin, s.state, s.step, s.steps, s.detail
        );
        for m in &log.messages {
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
