//! `cardwright campaign …`: write batches of cards (the decisions are `tsm::campaign`'s).

use crate::issue_cmd::Platform;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tsm::campaign;

#[derive(Debug, Args)]
pub struct CampaignCmd {
    #[command(flatten)]
    pub platform: Platform,
    #[command(subcommand)]
    pub op: CampaignOp,
}

#[derive(Debug, Subcommand)]
pub enum CampaignOp {
    /// A new campaign (state `created`): the cards of a CSV file (card number in the first
    /// column; a header line without digits is skipped) or a range of card numbers.
    Create {
        /// The card category the cards are written in (yours).
        #[arg(long)]
        category: String,
        /// CSV file of card numbers.
        #[arg(long, conflicts_with = "range", required_unless_present = "range")]
        cards: Option<PathBuf>,
        /// Card numbers FIRST..LAST (same number of digits), e.g. 4711000000000000..4711000000009999.
        #[arg(long)]
        range: Option<String>,
    },
    /// Start a created campaign.
    Start {
        /// The campaign's number (printed by `campaign create`).
        id: i64,
    },
    /// Pause: no new card is claimed.
    Pause {
        /// The campaign's number (printed by `campaign create`).
        id: i64,
    },
    /// Resume a paused campaign.
    Resume {
        /// The campaign's number (printed by `campaign create`).
        id: i64,
    },
    /// Cancel for good.
    Cancel {
        /// The campaign's number (printed by `campaign create`).
        id: i64,
    },
    /// Progress: done, failed, remaining, rate, ETA; failed cards with their reasons.
    Status {
        /// The campaign's number (printed by `campaign create`).
        id: i64,
        /// JSON on standard output.
        #[arg(long)]
        json: bool,
        /// Follow the campaign with a live progress bar until nothing is left.
        #[arg(long, conflicts_with = "json")]
        watch: bool,
    },
    /// A new campaign of the failed cards (a sub-campaign, state `created`).
    Retry {
        /// The campaign's number (printed by `campaign create`).
        id: i64,
    },
    /// A lab worker: writes the cards of running campaigns on fresh in-process virtual
    /// cards (one per card number) until none is left; for trials and tests of a campaign
    /// (a production line feeds real cards to terminals).
    Run {
        /// Virtual cards (the only card source of this command).
        #[arg(long, required = true)]
        r#virtual: bool,
        /// Worker threads.
        #[arg(long, default_value_t = 4)]
        workers: u32,
        /// Seconds a claimed card stays this worker's.
        #[arg(long, default_value_t = 60)]
        lease: u64,
        /// Keep each virtual card as a state file NUMBER.json in this directory (a card a
        /// worker left half-written is found there by the next); default: in memory only.
        #[arg(long, value_name = "DIR")]
        card_dir: Option<PathBuf>,
    },
}

/// Card numbers of a CSV file: the first column; a first line without a digit is a header.
fn csv_cards(path: &PathBuf) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let first = line.split([',', ';']).next().unwrap_or("").trim();
        let first = first.trim_matches('"');
        if first.is_empty() || (i == 0 && !first.bytes().any(|b| b.is_ascii_digit())) {
            continue;
        }
        out.push(first.to_string());
    }
    Ok(out)
}

fn print_status(s: &campaign::Status) {
    let c = &s.counts;
    println!(
        "campaign {} ({}, category {}{}): {} cards: {} done, {} failed, {} in progress, {} pending",
        s.campaign.id,
        s.campaign.state,
        s.campaign.category,
        s.campaign
            .parent
            .map(|p| format!(", retries campaign {p}"))
            .unwrap_or_default(),
        s.total,
        c.done,
        c.failed,
        c.claimed,
        c.pending
    );
    match s.eta_s {
        Some(eta) => println!("rate {:.1} cards/s, about {eta} s left", s.rate_per_s),
        None => println!("rate: no card written in the last minute"),
    }
}

pub fn run(cmd: CampaignCmd) -> Result<()> {
    let p = &cmd.platform;
    let actor = p.actor()?;
    match cmd.op {
        CampaignOp::Create {
            category,
            cards,
            range,
        } => {
            let numbers = match (cards, range) {
                (Some(f), None) => csv_cards(&f)?,
                (None, Some(r)) => {
                    let Some((a, b)) = r.split_once("..") else {
                        bail!("--range {r}: expected FIRST..LAST");
                    };
                    campaign::card_range(a, b, 10_000_000)?
                }
                _ => bail!("give --cards FILE.csv or --range FIRST..LAST"),
            };
            let store = p.anchored_store()?;
            let id = campaign::create(&store, &actor, &category, &numbers)?;
            println!(
                "campaign {id}: {} cards in {category} (start it with `campaign start {id}`)",
                numbers.len()
            );
        }
        CampaignOp::Start { id } => steer(p, &actor, id, "start")?,
        CampaignOp::Pause { id } => steer(p, &actor, id, "pause")?,
        CampaignOp::Resume { id } => steer(p, &actor, id, "resume")?,
        CampaignOp::Cancel { id } => steer(p, &actor, id, "cancel")?,
        CampaignOp::Retry { id } => {
            let store = p.anchored_store()?;
            let sub = campaign::retry(&store, &actor, id)?;
            println!("campaign {sub}: the failed cards of campaign {id} (start it with `campaign start {sub}`)");
        }
        CampaignOp::Status { id, json, watch } => {
            let store = p.anchored_store()?;
            if watch {
                return watch_status(&store, &actor, id);
            }
            let s = campaign::status(&store, &actor, id)?;
            let failures = store.campaign_failures(id)?;
            if json {
                let mut v = serde_json::to_value(&s)?;
                v["failures"] = serde_json::to_value(&failures)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_status(&s);
                for f in failures {
                    println!(
                        "  failed {} (attempts {}): {}",
                        f.card_number, f.attempts, f.reason
                    );
                }
            }
        }
        CampaignOp::Run {
            workers,
            lease,
            card_dir,
            ..
        } => run_virtual(p, workers, lease, card_dir)?,
    }
    Ok(())
}

fn steer(p: &Platform, actor: &tsm::Actor, id: i64, verb: &str) -> Result<()> {
    let store = p.anchored_store()?;
    let state = campaign::steer(&store, actor, id, verb)?;
    println!("campaign {id}: {state}");
    Ok(())
}

/// A live bar (standard error, on a terminal) until nothing is pending or in progress.
fn watch_status(store: &tsm::Store, actor: &tsm::Actor, id: i64) -> Result<()> {
    let first = campaign::status(store, actor, id)?;
    let bar = crate::progress::bar(&format!("campaign {id}"), first.total);
    loop {
        let s = campaign::status(store, actor, id)?;
        bar.set_position(s.counts.done + s.counts.failed);
        if s.counts.pending + s.counts.claimed == 0 {
            bar.finish_and_clear();
            print_status(&s);
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn run_virtual(p: &Platform, workers: u32, lease: u64, card_dir: Option<PathBuf>) -> Result<()> {
    use server::campaigns::{CampaignWorkers, CardSource, WorkerOptions};
    let store = p.anchored_store()?;
    let keys: Arc<dyn kms::KeyStore> = Arc::from(crate::keys_cmd::open_keystore(&p.keystore)?);
    let issuer = tsm::Issuer::new(store, keys, tsm::IssuerConfig::default());
    if let Some(dir) = &card_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("--card-dir {}", dir.display()))?;
    }
    let options = WorkerOptions {
        workers,
        lease: Duration::from_secs(lease),
        until_idle: true,
        ..WorkerOptions::default()
    };
    let t = CampaignWorkers::start(
        Arc::new(issuer),
        CardSource::Virtual { dir: card_dir },
        options,
        Arc::default(),
        &server::campaigns::node_name(),
    )?
    .wait()?;
    println!("{} cards written, {} failed", t.done, t.failed);
    Ok(())
}
