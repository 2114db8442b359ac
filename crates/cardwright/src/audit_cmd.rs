//! `cardwright audit …`: the platform's append-only, hash-chained audit log.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct AuditCmd {
    /// The platform database: `sqlite:PATH` or `postgres://…`.
    #[arg(long, env = "CARDWRIGHT_DB", default_value = "sqlite:cardwright.db")]
    pub db: String,
    #[command(subcommand)]
    pub op: AuditOp,
}

#[derive(Debug, Subcommand)]
pub enum AuditOp {
    /// Walk the hash chain; exit 1 at the first entry that was edited, removed or inserted.
    Verify,
    /// Print the entries (optionally of one card), oldest first.
    Show {
        /// Only the entries about this card number.
        #[arg(long)]
        card_number: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub fn run(cmd: AuditCmd) -> Result<()> {
    let store = tsm::Store::open_existing(&cmd.db)
        .with_context(|| format!("database {}", tsm::redact_url(&cmd.db)))?;
    match cmd.op {
        AuditOp::Verify => {
            let report = store.audit_verify()?;
            match &report.first_bad {
                None => {
                    println!(
                        "audit log verified: {} entries, head {}",
                        report.entries,
                        apdu::hex(&report.head)
                    );
                    Ok(())
                }
                Some(fault) => bail!(
                    "audit log does NOT verify: {fault} ({} entries checked; the chain is intact up to the previous entry)",
                    report.entries
                ),
            }
        }
        AuditOp::Show { card_number, limit } => {
            let entries = match &card_number {
                Some(n) => store.audit_for_card(n)?,
                None => store.audit_entries(0, limit)?,
            };
            for e in entries.iter().take(limit as usize) {
                println!("{}", serde_json::to_string(&e_json(e))?);
            }
            Ok(())
        }
    }
}

fn e_json(e: &tsm::audit::Entry) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "at_ms": e.at_ms,
        "actor": e.actor,
        "action": e.action,
        "card_number": e.card_number,
        "result": e.result,
        "detail": serde_json::from_str::<serde_json::Value>(&e.detail).unwrap_or(serde_json::Value::String(e.detail.clone())),
        "hash": apdu::hex(&e.hash),
    })
}
