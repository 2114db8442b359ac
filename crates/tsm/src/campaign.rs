//! Campaigns: a card issuer writes a batch of cards (a CSV list or a range of card numbers)
//! in one category, from any number of workers sharing the database.
//!
//! The decisions live here: only the category's card issuer creates and steers a campaign
//! (each action audited); a [`Worker`] claims items of running campaigns under a lease
//! ([`Store::claim_campaign_items`]), writes each card once ([`Issuer::write`]; a card found
//! written already counts as done; one with an open job, left by a worker that died, is
//! resumed) and records the item done or failed with its reason; `retry` makes a
//! sub-campaign of the failed cards.

use serde_json::json;

use crate::audit::NewEntry;
use crate::error::{Error, Result};
use crate::issuance::{Actor, Issuer};
use crate::model::{now_ms, CardState};
use crate::store::campaign::{Campaign, CampaignState, ItemCounts};
use crate::Store;
use transport::CardChannel;

pub use crate::store::campaign::{
    Campaign as Record, CampaignState as State, FailedItem, ItemCounts as Counts, ItemState,
};

/// What `campaign status` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The campaign.
    pub campaign: Campaign,
    /// Its items by state.
    pub counts: ItemCounts,
    /// Items in all.
    pub total: u64,
    /// Cards written per second over the last minute.
    pub rate_per_s: f64,
    /// Seconds until the pending and claimed items are done at that rate (`None`: no rate).
    pub eta_s: Option<u64>,
}

/// The card numbers `first..=last` (same length, digits only), at most `max`.
pub fn card_range(first: &str, last: &str, max: u64) -> Result<Vec<String>> {
    let bad = |why: &str| Error::Invalid(format!("card range {first}..{last}: {why}"));
    if first.len() != last.len() || first.is_empty() || first.len() > 19 {
        return Err(bad("both ends need the same number of digits (1 to 19)"));
    }
    let (a, b): (u64, u64) = match (first.parse(), last.parse()) {
        (Ok(a), Ok(b))
            if first
                .bytes()
                .chain(last.bytes())
                .all(|c| c.is_ascii_digit()) =>
        {
            (a, b)
        }
        _ => return Err(bad("digits only")),
    };
    if b < a {
        return Err(bad("the last is below the first"));
    }
    if b - a >= max {
        return Err(bad(&format!("more than {max} cards")));
    }
    let width = first.len();
    Ok((a..=b).map(|n| format!("{n:0width$}")).collect())
}

fn check_cards(cards: &[String]) -> Result<()> {
    if cards.is_empty() {
        return Err(Error::Invalid("a campaign needs at least one card".into()));
    }
    let mut seen = std::collections::HashSet::with_capacity(cards.len());
    for n in cards {
        kms::kdd_for_card_number(n).map_err(|e| Error::Invalid(format!("card number {n}: {e}")))?;
        if !seen.insert(n.as_str()) {
            return Err(Error::Invalid(format!("card {n} is listed twice")));
        }
    }
    Ok(())
}

fn audit(store: &Store, actor: &Actor, action: &str, result: &str, id: i64) -> Result<()> {
    store.audit_append(
        &NewEntry::new(&actor.name(), action, result).detail(json!({"campaign": id})),
    )?;
    Ok(())
}

/// The campaign, if `actor`'s tenant owns it ([`Error::Forbidden`], audited, otherwise; an
/// unknown one is [`crate::StoreError::NotFound`]).
fn owned(store: &Store, actor: &Actor, id: i64, action: &str) -> Result<Campaign> {
    let c = store
        .campaign(id)?
        .ok_or_else(|| crate::StoreError::NotFound(format!("campaign {id}")))?;
    if c.tenant != actor.tenant {
        audit(store, actor, action, "refused", id)?;
        return Err(Error::Forbidden {
            tenant: actor.tenant.clone(),
            action: action.into(),
        });
    }
    Ok(c)
}

/// Creates a campaign of `cards` in `category` (state `created`); the category must be
/// `actor`'s tenant's ([`Error::Forbidden`], audited, otherwise).
pub fn create(store: &Store, actor: &Actor, category: &str, cards: &[String]) -> Result<i64> {
    check_cards(cards)?;
    let cat = store
        .category(category)?
        .ok_or_else(|| Error::UnknownCategory(category.into()))?;
    if cat.tenant != actor.tenant {
        store.audit_append(
            &NewEntry::new(&actor.name(), "campaign.create", "refused")
                .detail(json!({"category": category})),
        )?;
        return Err(Error::Forbidden {
            tenant: actor.tenant.clone(),
            action: "campaign.create".into(),
        });
    }
    let id = store.create_campaign(&actor.tenant, category, None, &actor.name(), cards)?;
    audit(store, actor, "campaign.create", "ok", id)?;
    Ok(id)
}

/// `start` (created → running), `pause`, `resume` (paused → running) or `cancel`.
pub fn steer(store: &Store, actor: &Actor, id: i64, verb: &str) -> Result<CampaignState> {
    use CampaignState::*;
    let (from, to): (&[CampaignState], CampaignState) = match verb {
        "start" => (&[Created], Running),
        "pause" => (&[Running], Paused),
        "resume" => (&[Paused], Running),
        "cancel" => (&[Created, Running, Paused], Cancelled),
        other => return Err(Error::Invalid(format!("unknown campaign action {other}"))),
    };
    let action = format!("campaign.{verb}");
    let c = owned(store, actor, id, &action)?;
    if !store.set_campaign_state(id, from, to)? {
        return Err(Error::CampaignConflict(format!(
            "campaign {id} is {}: cannot {verb} it",
            c.state
        )));
    }
    audit(store, actor, &action, "ok", id)?;
    Ok(to)
}

/// Progress of a campaign.
pub fn status(store: &Store, actor: &Actor, id: i64) -> Result<Status> {
    let campaign = owned(store, actor, id, "campaign.status")?;
    let counts = store.campaign_counts(id)?;
    let total = counts.pending + counts.claimed + counts.done + counts.failed;
    let rate_per_s = counts.done_last_minute as f64 / 60.0;
    let left = counts.pending + counts.claimed;
    let eta_s = (rate_per_s > 0.0).then(|| (left as f64 / rate_per_s).ceil() as u64);
    Ok(Status {
        campaign,
        counts,
        total,
        rate_per_s,
        eta_s,
    })
}

/// A new campaign (state `created`) of the failed cards of `id`.
pub fn retry(store: &Store, actor: &Actor, id: i64) -> Result<i64> {
    let c = owned(store, actor, id, "campaign.retry")?;
    let failed: Vec<String> = store
        .campaign_failures(id)?
        .into_iter()
        .map(|f| f.card_number)
        .collect();
    if failed.is_empty() {
        return Err(Error::CampaignConflict(format!(
            "campaign {id} has no failed card"
        )));
    }
    let sub = store.create_campaign(&c.tenant, &c.category, Some(id), &actor.name(), &failed)?;
    audit(store, actor, "campaign.retry", "ok", sub)?;
    Ok(sub)
}

/// The failed cards of campaign `id` with their reasons, in card-number order: at most
/// `limit`, those after card `after` (a page).
pub fn failures(
    store: &Store,
    actor: &Actor,
    id: i64,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<FailedItem>> {
    owned(store, actor, id, "campaign.status")?;
    Ok(store.campaign_failures_page(id, after, limit)?)
}

/// The campaigns of `actor`'s tenant, newest first: at most `limit`, those older than
/// campaign `before` (a page).
pub fn list(store: &Store, actor: &Actor, before: Option<i64>, limit: u32) -> Result<Vec<Record>> {
    Ok(store.campaigns_of_tenant(&actor.tenant, before, limit)?)
}

/// One worker of campaigns (a `serve` node or `campaign run`): claims items and writes
/// their cards.
#[derive(Debug)]
pub struct Worker<'i> {
    /// The issuer that writes the cards.
    pub issuer: &'i Issuer,
    /// This worker's name in the leases (unique per process).
    pub owner: String,
    /// How long a claimed item stays this worker's.
    pub lease: std::time::Duration,
    /// Items claimed at a time.
    pub batch: u32,
}

/// What one pass of a [`Worker`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Items claimed.
    pub claimed: usize,
    /// Cards written (or found written).
    pub done: usize,
    /// Cards that failed.
    pub failed: usize,
    /// Items left as they were, for later ([`Worker::pass_with`]).
    pub deferred: usize,
}

/// A card source's answer for a claimed item: the card's channel, or `None` when the card
/// cannot be had now ([`Worker::pass_with`]).
pub type CardFor<'a> = dyn FnMut(&str) -> Result<Option<Box<dyn CardChannel>>> + 'a;

impl Worker<'_> {
    /// Claims a batch and writes each card, in the card channel `card` gives for its number.
    pub fn pass(&self, card: &mut dyn FnMut(&str) -> Result<Box<dyn CardChannel>>) -> Result<Pass> {
        self.pass_with(&mut |number| card(number).map(Some))
    }

    /// [`Worker::pass`] with a card source that may have no card for an item now
    /// (`Ok(None)`: the card is in use elsewhere, no reader is free, the worker is
    /// stopping). Such an item is left as it is ([`Pass::deferred`]): this worker's until
    /// its lease ends, then any worker's again. So is an item whose card another worker is
    /// writing now (its job's lease is held: that worker's campaign lease ran out while it
    /// wrote), and an item whose lease ran out before its turn came (another worker may
    /// hold it now), which is not started.
    pub fn pass_with(&self, card: &mut CardFor<'_>) -> Result<Pass> {
        let store = self.issuer.store();
        let until = now_ms() + i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let items = store.claim_campaign_items(&self.owner, until, self.batch)?;
        if items.is_empty() {
            for id in store.close_finished_campaigns()? {
                store.audit_append(
                    &NewEntry::new(&self.owner, "campaign.finish", "ok")
                        .detail(json!({"campaign": id})),
                )?;
            }
        }
        let mut pass = Pass {
            claimed: items.len(),
            ..Pass::default()
        };
        for (campaign, category, number) in items {
            if now_ms() >= until {
                pass.deferred += 1;
                continue;
            }
            let failure = match self.write_one(&campaign, &category, &number, card) {
                Ok(true) => None,
                Ok(false) => {
                    pass.deferred += 1;
                    continue;
                }
                Err(Error::JobLeased(_) | Error::CardBusy(_)) => {
                    pass.deferred += 1;
                    continue;
                }
                Err(e) => Some(e.to_string()),
            };
            if store.finish_campaign_item(campaign, &number, &self.owner, failure.as_deref())? {
                match failure {
                    None => pass.done += 1,
                    Some(_) => pass.failed += 1,
                }
            }
        }
        Ok(pass)
    }

    /// Writes the card (or finds it written); `false` when the card source had no card.
    fn write_one(
        &self,
        campaign: &i64,
        category: &str,
        number: &str,
        card: &mut CardFor<'_>,
    ) -> Result<bool> {
        let store = self.issuer.store();
        let tenant = store
            .category(category)?
            .ok_or_else(|| Error::UnknownCategory(category.into()))?
            .tenant;
        let actor = Actor::new(&tenant, &format!("campaign-{campaign}"));
        let open = store.open_job_for_card(number)?;
        if open.is_none() {
            if let Some(c) = store.card(number)? {
                if c.state == CardState::Written {
                    return Ok(true);
                }
            }
        }
        let Some(mut chan) = card(number)? else {
            return Ok(false);
        };
        match open {
            Some(_) => self.issuer.resume(&actor, number, chan.as_mut()),
            None => self.issuer.write(&actor, number, category, chan.as_mut()),
        }
        .map(|_| true)
    }
}
