//! `cardwright audit …`: the platform's append-only, hash-chained audit log, its head
//! anchored by a checkpoint signed with the key store's audit key.

use anyhow::{anyhow, bail, Context, Result};
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
    /// Walk the hash chain and check the signed checkpoint of its head; exit 1 at the first
    /// entry that was edited, removed or inserted, or when entries were removed at the end.
    /// Prints the head (`ENTRIES:HASH`): keep it outside the database for `--expect-head`.
    Verify {
        /// The key store holding the audit key (`cardwright-audit`), as for `issue`: its
        /// public key checks the checkpoint. Without it only the chain is checked.
        #[arg(long, env = "CARDWRIGHT_KEYSTORE")]
        keystore: Option<String>,
        /// A head printed by an earlier `audit verify` (`ENTRIES:HASH`): the log must still
        /// hold that entry with that hash.
        #[arg(long, value_name = "ENTRIES:HASH")]
        expect_head: Option<String>,
    },
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

/// The audit key's public key (DER SPKI) in the key store `config`, `None` if the store has
/// no audit key; nothing is created.
fn audit_public_key(config: &str) -> Result<Option<Vec<u8>>> {
    let parsed: kms::StoreConfig = config
        .parse()
        .with_context(|| format!("key store {config}"))?;
    if let kms::StoreConfig::Software { path, .. } = &parsed {
        if !path.exists() {
            bail!("key store {config}: {} does not exist", path.display());
        }
    }
    let store = parsed
        .open_signing()
        .with_context(|| format!("key store {config}"))?;
    match store.signing_key(tsm::audit::ANCHOR_KEY_LABEL) {
        Ok(key) => Ok(Some(key.public_key_spki().to_vec())),
        Err(kms::Error::SigningKeyNotFound(_)) => Ok(None),
        Err(e) => Err(anyhow!("key store {config}: {e}")),
    }
}

/// `ENTRIES:HASH` → (entries, hash).
fn parse_head(s: &str) -> Result<(u64, [u8; 32])> {
    let bad = || anyhow!("--expect-head {s}: expected ENTRIES:HASH as `audit verify` prints it");
    let (n, h) = s.split_once(':').ok_or_else(bad)?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    let h = apdu::parse_hex(h.trim()).map_err(|_| bad())?;
    let h = <[u8; 32]>::try_from(h.as_slice()).map_err(|_| bad())?;
    Ok((n, h))
}

fn verify(store: &tsm::Store, keystore: Option<&str>, expect: Option<&str>) -> Result<()> {
    let expect = expect.map(parse_head).transpose()?;
    let key = keystore.map(audit_public_key).transpose()?.flatten();
    let report = match &key {
        Some(public) => store.audit_verify_anchored(public)?,
        None => store.audit_verify()?,
    };
    if let (Some(ks), None, Some(k)) = (keystore, &key, &report.checkpoint) {
        bail!(
            "audit log does NOT verify: its head is anchored with the audit key '{}', which key store {ks} does not have",
            k.key_label
        );
    }
    if let Some(fault) = &report.first_bad {
        bail!(
            "audit log does NOT verify: {fault} ({} entries checked; the chain is intact up to the previous entry)",
            report.entries
        );
    }
    if let Some((n, hash)) = expect {
        if n > report.entries {
            bail!(
                "audit log does NOT verify: the recorded head counts {n} entries, the log has {} (entries removed at the end)",
                report.entries
            );
        }
        let at = match n {
            0 => [0u8; 32],
            n => {
                let after = i64::try_from(n - 1).context("--expect-head")?;
                store
                    .audit_entries(after, 1)?
                    .first()
                    .map(|e| e.hash)
                    .ok_or_else(|| anyhow!("audit log: entry {n} missing"))?
            }
        };
        if at != hash {
            bail!("audit log does NOT verify: entry {n} is not the one recorded (its hash is {}, the record says {})", apdu::hex(&at), apdu::hex(&hash));
        }
    }
    println!(
        "audit log verified: {} entries, head {}:{}",
        report.entries,
        report.entries,
        apdu::hex(&report.head)
    );
    match (report.anchored, &report.checkpoint) {
        (Some(anchored), _) if anchored < report.entries => eprintln!(
            "warning: entries {} to {} were appended without the audit key: removing them would not be detected",
            anchored + 1,
            report.entries
        ),
        (Some(_), _) => {
            println!("the head is anchored by a checkpoint signed with the audit key")
        }
        (None, Some(_)) => eprintln!(
            "warning: the signed checkpoint of the head was not checked: give --keystore (or CARDWRIGHT_KEYSTORE)"
        ),
        (None, None) => eprintln!(
            "warning: the head is not anchored by a signed checkpoint: entries removed at the end would not be detected; compare the head with a recorded one (--expect-head)"
        ),
    }
    if let Some((n, _)) = expect {
        println!("the recorded head ({n} entries) is in the log");
    }
    Ok(())
}

pub fn run(cmd: AuditCmd) -> Result<()> {
    let store = tsm::Store::open_existing(&cmd.db)
        .with_context(|| format!("database {}", tsm::redact_url(&cmd.db)))?;
    match cmd.op {
        AuditOp::Verify {
            keystore,
            expect_head,
        } => verify(&store, keystore.as_deref(), expect_head.as_deref()),
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
