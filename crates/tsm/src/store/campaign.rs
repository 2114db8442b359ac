//! Campaigns: a card issuer's batch of cards to write, and their work items. Items are
//! claimed by any number of workers sharing the database (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL; SQLite has one writer), under a lease: a worker that dies releases its items
//! when the lease expires.

use crate::db::{params, Conn, Row, Value};
use crate::error::StoreError;
use crate::model::{now_ms, text_enum};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::Store;

/// How long a finished campaign stays in [`Store::active_campaign_counts`].
const FINISHED_SHOWN_MS: i64 = 3_600_000;

text_enum! {
    /// Where a campaign is.
    CampaignState {
        /// Created, not started: no item is claimed.
        Created = "created",
        /// Items are claimed and written.
        Running = "running",
        /// No new item is claimed; items in progress finish.
        Paused = "paused",
        /// Stopped for good: no new item is claimed.
        Cancelled = "cancelled",
        /// Every card is done or failed: nothing is left to claim (the failed ones can be
        /// retried as a sub-campaign).
        Finished = "finished",
    }
}

text_enum! {
    /// Where a campaign's card is.
    ItemState {
        /// Waiting for a worker.
        Pending = "pending",
        /// Held by a worker until its lease ends.
        Claimed = "claimed",
        /// Written (or found written already).
        Done = "done",
        /// The write failed; the reason is kept, `campaign retry` makes a sub-campaign.
        Failed = "failed",
    }
}

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Campaign {
    /// Identifier.
    pub id: i64,
    /// The card issuer.
    pub tenant: String,
    /// The card category its cards are written in.
    pub category: String,
    /// Its state.
    pub state: CampaignState,
    /// The campaign whose failed cards this one retries.
    pub parent: Option<i64>,
    /// Who created it.
    pub created_by: String,
    /// When (Unix ms).
    pub created_ms: i64,
}

/// Counts of a campaign's items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ItemCounts {
    /// Waiting.
    pub pending: u64,
    /// Held by a worker now.
    pub claimed: u64,
    /// Written.
    pub done: u64,
    /// Failed.
    pub failed: u64,
    /// Finished in the last minute (for the rate).
    pub done_last_minute: u64,
}

/// A failed card and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailedItem {
    /// The card number.
    pub card_number: String,
    /// The reason.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
}

fn campaign_of(r: &Row) -> Result<Campaign, StoreError> {
    Ok(Campaign {
        id: r.int(0)?,
        tenant: r.text(1)?,
        category: r.text(2)?,
        state: r.text(3)?.parse()?,
        parent: r.opt_int(4)?,
        created_by: r.text(5)?,
        created_ms: r.int(6)?,
    })
}

const CAMPAIGN_COLUMNS: &str =
    "id, tenant_id, category_id, state, parent_id, created_by, created_ms";

/// Card numbers inserted per statement.
const ITEMS_PER_INSERT: usize = 500;

pub(crate) fn insert_items_in(c: &mut Conn, id: i64, cards: &[String]) -> Result<(), StoreError> {
    for chunk in cards.chunks(ITEMS_PER_INSERT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("($1, ${}, 'pending', 0)", i + 2))
            .collect();
        let mut values = vec![Value::from(id)];
        values.extend(chunk.iter().map(|n| Value::from(n.as_str())));
        c.execute(
            &format!(
                "INSERT INTO campaign_items (campaign_id, card_number, state, attempts) VALUES {}",
                rows.join(", ")
            ),
            &values,
        )
        .map_err(|e| e.duplicate_as(|| "a card listed twice in the campaign".into()))?;
    }
    Ok(())
}

pub(crate) fn create_campaign_in(
    c: &mut Conn,
    tenant: &str,
    category: &str,
    parent: Option<i64>,
    created_by: &str,
    cards: &[String],
) -> Result<i64, StoreError> {
    let now = now_ms();
    let id = c
        .query_one(
            "INSERT INTO campaigns (tenant_id, category_id, state, parent_id, created_by, created_ms, updated_ms)
             VALUES ($1, $2, 'created', $3, $4, $5, $5) RETURNING id",
            params![tenant, category, parent, created_by, now],
        )?
        .int(0)?;
    insert_items_in(c, id, cards)?;
    Ok(id)
}

pub(crate) fn campaign_in(c: &mut Conn, id: i64) -> Result<Option<Campaign>, StoreError> {
    c.query_opt(
        &format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1"),
        params![id],
    )?
    .map(|r| campaign_of(&r))
    .transpose()
}

/// Moves a campaign from one of `from` to `to`; `false` if it was in none of them.
pub(crate) fn set_campaign_state_in(
    c: &mut Conn,
    id: i64,
    from: &[CampaignState],
    to: CampaignState,
) -> Result<bool, StoreError> {
    let list: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
    Ok(c.execute(
        &format!(
            "UPDATE campaigns SET state = $1, updated_ms = $2 WHERE id = $3 AND state IN ({})",
            list.join(", ")
        ),
        params![to.as_str(), now_ms(), id],
    )? == 1)
}

pub(crate) fn counts_in(c: &mut Conn, id: i64) -> Result<ItemCounts, StoreError> {
    let mut counts = ItemCounts::default();
    for r in c.query(
        "SELECT state, COUNT(*) FROM campaign_items WHERE campaign_id = $1 GROUP BY state",
        params![id],
    )? {
        let n = r.int(1)? as u64;
        match r.text(0)?.parse()? {
            ItemState::Pending => counts.pending = n,
            ItemState::Claimed => counts.claimed = n,
            ItemState::Done => counts.done = n,
            ItemState::Failed => counts.failed = n,
        }
    }
    counts.done_last_minute = c
        .query_one(
            "SELECT COUNT(*) FROM campaign_items WHERE campaign_id = $1 AND state = 'done'
               AND finished_ms >= $2",
            params![id, now_ms() - 60_000],
        )?
        .int(0)? as u64;
    Ok(counts)
}

impl Store {
    /// Creates a campaign (state `created`) of `cards` in `category` for `tenant`.
    pub fn create_campaign(
        &self,
        tenant: &str,
        category: &str,
        parent: Option<i64>,
        created_by: &str,
        cards: &[String],
    ) -> Result<i64, StoreError> {
        self.tx(|c| create_campaign_in(c, tenant, category, parent, created_by, cards))
    }

    /// A campaign by id.
    pub fn campaign(&self, id: i64) -> Result<Option<Campaign>, StoreError> {
        self.with_conn(|c| campaign_in(c, id))
    }

    /// Moves a campaign to `to` if it is in one of `from`.
    pub fn set_campaign_state(
        &self,
        id: i64,
        from: &[CampaignState],
        to: CampaignState,
    ) -> Result<bool, StoreError> {
        self.tx(|c| set_campaign_state_in(c, id, from, to))
    }

    /// Counts of the campaign's items by state.
    pub fn campaign_counts(&self, id: i64) -> Result<ItemCounts, StoreError> {
        self.with_conn(|c| counts_in(c, id))
    }

    /// The failed cards of a campaign, with their reasons.
    pub fn campaign_failures(&self, id: i64) -> Result<Vec<FailedItem>, StoreError> {
        self.campaign_failures_page(id, None, u32::MAX)
    }

    /// A page of the failed cards of a campaign (card-number order): at most `limit`, those
    /// after card `after`.
    pub fn campaign_failures_page(
        &self,
        id: i64,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FailedItem>, StoreError> {
        self.with_conn(|c| {
            c.query(
                "SELECT card_number, reason, attempts FROM campaign_items
                 WHERE campaign_id = $1 AND state = 'failed' AND card_number > $2
                 ORDER BY card_number LIMIT $3",
                params![id, after.unwrap_or(""), i64::from(limit)],
            )?
            .iter()
            .map(|r| {
                Ok(FailedItem {
                    card_number: r.text(0)?,
                    reason: r.opt_text(1)?.unwrap_or_default(),
                    attempts: r.int(2)? as u32,
                })
            })
            .collect()
        })
    }

    /// A tenant's campaigns, newest first: at most `limit`, those older than campaign
    /// `before`.
    pub fn campaigns_of_tenant(
        &self,
        tenant: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Campaign>, StoreError> {
        self.with_conn(|c| {
            c.query(
                &format!(
                    "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE tenant_id = $1 AND id < $2
                     ORDER BY id DESC LIMIT $3"
                ),
                params![tenant, before.unwrap_or(i64::MAX), i64::from(limit)],
            )?
            .iter()
            .map(campaign_of)
            .collect()
        })
    }

    /// The running and paused campaigns, and those finished in the last hour (so that a
    /// dashboard sees them reach their end), with the counts of their items by state (one
    /// query; `done_last_minute` is not counted): what the metrics show.
    pub fn active_campaign_counts(&self) -> Result<Vec<(Campaign, ItemCounts)>, StoreError> {
        let shown =
            "(k.state IN ('running', 'paused') OR (k.state = 'finished' AND k.updated_ms >= $1))";
        let since = now_ms() - FINISHED_SHOWN_MS;
        self.with_conn(|c| {
            let campaigns: Vec<Campaign> = c
                .query(
                    &format!(
                        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns k WHERE {shown} ORDER BY id"
                    ),
                    params![since],
                )?
                .iter()
                .map(campaign_of)
                .collect::<Result<_, _>>()?;
            let mut out: Vec<(Campaign, ItemCounts)> = campaigns
                .into_iter()
                .map(|k| (k, ItemCounts::default()))
                .collect();
            if out.is_empty() {
                return Ok(out);
            }
            for r in c.query(
                &format!(
                    "SELECT i.campaign_id, i.state, COUNT(*) FROM campaign_items i
                     JOIN campaigns k ON k.id = i.campaign_id
                     WHERE {shown}
                     GROUP BY i.campaign_id, i.state"
                ),
                params![since],
            )? {
                let (id, n) = (r.int(0)?, r.int(2)? as u64);
                let Some((_, counts)) = out.iter_mut().find(|(k, _)| k.id == id) else {
                    continue; // started between the two queries
                };
                match r.text(1)?.parse()? {
                    ItemState::Pending => counts.pending = n,
                    ItemState::Claimed => counts.claimed = n,
                    ItemState::Done => counts.done = n,
                    ItemState::Failed => counts.failed = n,
                }
            }
            Ok(out)
        })
    }

    /// Gives back the items `owner` holds and has not finished (a worker that stops):
    /// pending again at once, for any worker. Returns how many.
    pub fn release_campaign_items(&self, owner: &str) -> Result<u64, StoreError> {
        self.tx(|c| {
            c.execute(
                "UPDATE campaign_items SET state = 'pending', lease_owner = NULL,
                    lease_until_ms = NULL
                 WHERE state = 'claimed' AND lease_owner = $1",
                params![owner],
            )
        })
    }

    /// Claims up to `n` items of running campaigns for `owner` until `until_ms`: pending
    /// ones, or claimed ones whose lease has expired (their worker died). Each item goes to
    /// one worker: PostgreSQL skips rows another transaction has locked (`FOR UPDATE SKIP
    /// LOCKED`); SQLite has one writer. Returns `(campaign, category, card number)`.
    pub fn claim_campaign_items(
        &self,
        owner: &str,
        until_ms: i64,
        n: u32,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        self.tx(|c| {
            let now = now_ms();
            let skip = match c.dialect() {
                crate::Dialect::Postgres => " FOR UPDATE OF i SKIP LOCKED",
                crate::Dialect::Sqlite => "",
            };
            let rows = c.query(
                &format!(
                    "SELECT i.campaign_id, i.card_number, k.category_id
                     FROM campaign_items i JOIN campaigns k ON k.id = i.campaign_id
                     WHERE k.state = 'running'
                       AND (i.state = 'pending' OR (i.state = 'claimed' AND i.lease_until_ms < $1))
                     ORDER BY i.campaign_id, i.card_number LIMIT $2{skip}"
                ),
                params![now, i64::from(n)],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let (id, card) = (r.int(0)?, r.text(1)?);
                c.execute(
                    "UPDATE campaign_items SET state = 'claimed', lease_owner = $1,
                        lease_until_ms = $2, attempts = attempts + 1
                     WHERE campaign_id = $3 AND card_number = $4",
                    params![owner, until_ms, id, card.as_str()],
                )?;
                out.push((id, r.text(2)?, card));
            }
            Ok(out)
        })
    }

    /// Marks `finished` the running campaigns with no card left pending or claimed; returns
    /// them. A worker that finds nothing to claim calls it: the last worker to finish an item
    /// of a campaign sees every item of it committed.
    pub fn close_finished_campaigns(&self) -> Result<Vec<i64>, StoreError> {
        self.tx(|c| {
            c.query(
                "UPDATE campaigns SET state = 'finished', updated_ms = $1
                 WHERE state = 'running' AND NOT EXISTS (
                     SELECT 1 FROM campaign_items i
                     WHERE i.campaign_id = campaigns.id AND i.state IN ('pending', 'claimed'))
                 RETURNING id",
                params![now_ms()],
            )?
            .iter()
            .map(|r| r.int(0))
            .collect()
        })
    }

    /// Records the end of an item this worker holds: done, or failed with `reason`.
    /// `false` if the worker no longer holds it (its lease expired and another took it).
    pub fn finish_campaign_item(
        &self,
        campaign: i64,
        card_number: &str,
        owner: &str,
        failure: Option<&str>,
    ) -> Result<bool, StoreError> {
        let state = if failure.is_some() { "failed" } else { "done" };
        self.tx(|c| {
            Ok(c.execute(
                "UPDATE campaign_items SET state = $1, reason = $2, finished_ms = $3,
                    lease_owner = NULL, lease_until_ms = NULL
                 WHERE campaign_id = $4 AND card_number = $5 AND state = 'claimed'
                   AND lease_owner = $6",
                params![state, failure, now_ms(), campaign, card_number, owner],
            )? == 1)
        })
    }
}
