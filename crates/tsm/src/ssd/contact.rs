//! Renewal at contact (issue #10, flows 3 and 4): a card just seen in one of the
//! platform's terminals is identified without authentication, and every SSD key set of it
//! that falls due (renewal window, expiry) or is compromised, and that this platform
//! renews, is renewed there and then, one after the other, each as an ordinary audited,
//! resumable job ([`ApPlatform::renew`], [`CiPlatform::renew`] + [`CiPlatform::run`]).
//!
//! * **Identification**: SELECT of the ISD and GET DATA of the CPLC (`9F7F`) and of the
//!   card number (CIN, `45`, as issuance wrote it: the number's BCD form, see
//!   [`kms::kdd_for_card_number`]); GP 2.3.1 §11.3 (GET DATA needs no secure channel),
//!   §H.4, §H.6. Nothing else is sent to a card with nothing due: no secure channel is
//!   opened, no authentication attempt spent.
//! * **What this platform renews**: the AP every key set of its SSDs it records as due
//!   (its own by PUT KEY, the CI's by relaying the CI's job); the CI, at its own terminals,
//!   the key sets it holds (delegated SSDs, SSDs not yet handed over). A compromised key
//!   set of an AP is replaced at the AP's contact (the CI's lock, delete and re-create,
//!   relayed, then the AP's take-over): at the CI's terminal the AP could not take it
//!   over.
//! * **Never twice after a refusal**: when the last job for an SSD failed (the card
//!   refused a command or an authentication), the SSD is held: reported, and left for an
//!   operator (`ssd renew`) instead of being tried at every contact, since a refused
//!   authentication is never retried. An interrupted job (card pulled, terminal gone) is
//!   resumed at the next contact.
//! * A card of another issuer (no card number, or one the platform does not know) and a
//!   card whose chip is not the one registered under its number are left alone.

use std::fmt;
use std::sync::Arc;

use gp::aid::ISD_AID;
use gp::commands::{Cplc, DataObject};
use gpclient::{ops, GpClient};
use serde::{Deserialize, Serialize};
use transport::{CardChannel, Traced};

use super::model::{DueRenewal, KeyHolder};
use super::{ApPlatform, CiPlatform};
use crate::error::Result;
use crate::model::{Job, JobKind, JobState};
use crate::{Actor, Store};

/// The card in the reader, as read without authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardIdentity {
    /// The card number its CIN (`45`) encodes, if it carries one of ours.
    pub card_number: Option<String>,
    /// Chip identity from the CPLC (IC fabricator, type, serial number, batch), if any.
    pub chip_id: Option<Vec<u8>>,
}

/// Reads the card's identity: SELECT ISD, GET DATA `9F7F` (CPLC), GET DATA `45` (CIN).
/// Three APDUs, no secure channel.
pub fn identify(chan: &mut dyn CardChannel) -> Result<CardIdentity> {
    let mut client = GpClient::new(Traced::new(chan, None));
    client.select(&ISD_AID)?;
    let chip_id = ops::get_data_raw(&mut client, DataObject::Cplc)?
        .and_then(|raw| Cplc::parse(&raw).ok())
        .map(|cplc| crate::issuance::chip_id(&cplc));
    let card_number = ops::get_data(&mut client, DataObject::Cin)?
        .and_then(|cin| <[u8; 10]>::try_from(cin.as_slice()).ok())
        .and_then(|kdd| kms::card_number_from_kdd(&kdd));
    Ok(CardIdentity {
        card_number,
        chip_id,
    })
}

/// What became of one SSD key set at a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ContactResult {
    /// Renewed (or replaced): the SSD's key version now.
    Renewed {
        /// The new key version number.
        kvn: u8,
    },
    /// The job was refused (it failed, audited): not tried again at the next contacts.
    Refused {
        /// Why.
        error: String,
    },
    /// Interrupted (card pulled, terminal or partner gone): resumed at the next contact.
    Interrupted {
        /// Why.
        error: String,
    },
    /// Not tried: the last job for this SSD failed; an operator renews it.
    Held {
        /// The failed job.
        job: i64,
        /// Its error.
        error: String,
    },
    /// Not tried: another job for the card is running elsewhere.
    Busy {
        /// That job.
        job: i64,
    },
}

/// One SSD key set that was due at a contact, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRenewal {
    /// The SSD (hex).
    pub aid: String,
    /// The key version that was due.
    pub kvn: u8,
    /// `expiry` or `compromised`.
    pub cause: String,
    /// What happened.
    #[serde(flatten)]
    pub result: ContactResult,
}

/// What one contact did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContactReport {
    /// The card number read from the card, if any.
    pub card_number: Option<String>,
    /// Why the card was left alone without looking at its SSDs, if it was.
    pub left_alone: Option<String>,
    /// The key sets that were due, in the order they were handled.
    pub renewals: Vec<ContactRenewal>,
}

impl ContactReport {
    fn alone(card_number: Option<String>, why: &str) -> ContactReport {
        ContactReport {
            card_number,
            left_alone: Some(why.into()),
            renewals: Vec::new(),
        }
    }
}

impl fmt::Display for ContactReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let card = self.card_number.as_deref().unwrap_or("(no card number)");
        if let Some(why) = &self.left_alone {
            return write!(f, "card {card}: left alone ({why})");
        }
        write!(f, "card {card}:")?;
        for r in &self.renewals {
            write!(f, " {} KVN {:#04x} ({}): ", r.aid, r.kvn, r.cause)?;
            match &r.result {
                ContactResult::Renewed { kvn } => write!(f, "renewed, now KVN {kvn:#04x};")?,
                ContactResult::Refused { error } => write!(f, "refused: {error};")?,
                ContactResult::Interrupted { error } => write!(f, "interrupted: {error};")?,
                ContactResult::Held { job, error } => {
                    write!(f, "held after job {job} failed ({error});")?
                }
                ContactResult::Busy { job } => write!(f, "job {job} is running elsewhere;")?,
            }
        }
        Ok(())
    }
}

/// A platform that renews what falls due on a card presented in one of its terminals
/// (the server's background task runs it for each card that appears).
pub trait RenewAtContact: Send + Sync {
    /// Identifies the card in `chan` and renews, one after the other, its SSD key sets
    /// due now for this platform. An error means the card could not even be identified
    /// (or the database failed); each SSD's outcome is in the report.
    fn renew_at_contact(&self, chan: &mut dyn CardChannel) -> Result<ContactReport>;
}

/// The CI platform renewing at its own terminals the key sets it holds, jobs recorded for
/// `actor` (an operator identity of the CI, e.g. `issuer/renew-at-contact`).
#[derive(Debug, Clone)]
pub struct CiContact {
    /// The platform.
    pub ci: Arc<CiPlatform>,
    /// Who the renewal jobs are recorded for.
    pub actor: Actor,
}

fn is_ssd_job(kind: JobKind) -> bool {
    matches!(
        kind,
        JobKind::SsdCreate | JobKind::SsdRotate | JobKind::SsdRenew | JobKind::SsdReplace
    )
}

fn job_aid(job: &Job) -> Option<String> {
    job.params
        .get("aid")
        .and_then(|v| v.as_str())
        .map(|s| s.to_ascii_uppercase())
}

/// The card's key sets due at `at_ms` that `ours` selects, one per SSD.
fn due_for_card(
    due: Vec<DueRenewal>,
    card_number: &str,
    ours: impl Fn(&DueRenewal) -> bool,
) -> Vec<DueRenewal> {
    let mut out: Vec<DueRenewal> = Vec::new();
    for d in due {
        if d.card_number == card_number
            && ours(&d)
            && !out.iter().any(|o| o.aid.eq_ignore_ascii_case(&d.aid))
        {
            out.push(d);
        }
    }
    out
}

/// Where the card's jobs leave an SSD due for renewal.
enum Before {
    /// Nothing in the way: renew.
    Renew,
    /// An interrupted job of this platform to resume.
    Resume(i64),
    /// Leave it.
    Skip(ContactResult),
}

fn before(
    store: &Store,
    card_number: &str,
    aid: &str,
    resumable: &dyn Fn(&Job) -> bool,
) -> Result<Before> {
    let jobs = store.jobs_of_card(card_number)?;
    if let Some(open) = jobs
        .iter()
        .rev()
        .find(|j| matches!(j.state, JobState::Pending | JobState::Running))
    {
        let same = job_aid(open).is_some_and(|a| a.eq_ignore_ascii_case(aid));
        // Pending (interrupted), or running under a lease that ran out (its worker died).
        let abandoned = open.state == JobState::Pending
            || open
                .lease_until_ms
                .is_some_and(|until| until < crate::model::now_ms());
        return Ok(
            if abandoned && same && is_ssd_job(open.kind) && resumable(open) {
                Before::Resume(open.id)
            } else {
                Before::Skip(ContactResult::Busy { job: open.id })
            },
        );
    }
    let last = jobs
        .iter()
        .rev()
        .find(|j| is_ssd_job(j.kind) && job_aid(j).is_some_and(|a| a.eq_ignore_ascii_case(aid)));
    Ok(match last {
        Some(j) if j.state == JobState::Failed => Before::Skip(ContactResult::Held {
            job: j.id,
            error: j.error.clone().unwrap_or_default(),
        }),
        _ => Before::Renew,
    })
}

/// The outcome of a renewal that returned `r`: refused if its job ended failed, else
/// interrupted (resumed or tried again at the next contact).
fn outcome(
    store: &Store,
    card_number: &str,
    aid: &str,
    r: Result<super::SsdRecord>,
) -> Result<ContactResult> {
    Ok(match r {
        Ok(rec) => ContactResult::Renewed {
            kvn: rec.current_key().map(|k| k.kvn).unwrap_or_default(),
        },
        Err(e) => {
            let failed = store
                .jobs_of_card(card_number)?
                .iter()
                .rev()
                .find(|j| {
                    is_ssd_job(j.kind) && job_aid(j).is_some_and(|a| a.eq_ignore_ascii_case(aid))
                })
                .is_some_and(|j| j.state == JobState::Failed);
            if failed {
                ContactResult::Refused {
                    error: e.to_string(),
                }
            } else {
                ContactResult::Interrupted {
                    error: e.to_string(),
                }
            }
        }
    })
}

/// Runs `renew` for each due key set, in order; stops after an interruption (the card is
/// likely gone: the rest waits for the next contact).
fn renew_each(
    store: &Store,
    card_number: &str,
    due: Vec<DueRenewal>,
    resumable: &dyn Fn(&Job) -> bool,
    mut renew: impl FnMut(&DueRenewal, Option<i64>) -> Result<super::SsdRecord>,
) -> Result<ContactReport> {
    let mut report = ContactReport {
        card_number: Some(card_number.into()),
        ..ContactReport::default()
    };
    for d in due {
        let result = match before(store, card_number, &d.aid, resumable)? {
            Before::Skip(r) => r,
            Before::Resume(job) => outcome(store, card_number, &d.aid, renew(&d, Some(job)))?,
            Before::Renew => outcome(store, card_number, &d.aid, renew(&d, None))?,
        };
        let stop = matches!(result, ContactResult::Interrupted { .. });
        report.renewals.push(ContactRenewal {
            aid: d.aid,
            kvn: d.kvn,
            cause: d.cause,
            result,
        });
        if stop {
            break;
        }
    }
    Ok(report)
}

impl RenewAtContact for ApPlatform {
    fn renew_at_contact(&self, chan: &mut dyn CardChannel) -> Result<ContactReport> {
        let id = identify(chan)?;
        let Some(card_number) = id.card_number else {
            return Ok(ContactReport::alone(None, "it carries no card number"));
        };
        let due = due_for_card(self.due(self.clock.now_ms())?, &card_number, |_| true);
        if due.is_empty() {
            return Ok(ContactReport::alone(Some(card_number), "nothing due"));
        }
        // Its own interrupted jobs: renewals, and relays of the CI's renewal jobs.
        let resumable = |j: &Job| matches!(j.kind, JobKind::SsdRenew | JobKind::SsdRotate);
        renew_each(
            self.store(),
            &card_number,
            due,
            &resumable,
            |d, job| match job {
                Some(job) => self.run(job, chan),
                None => self.renew(&card_number, &d.aid, chan),
            },
        )
    }
}

impl RenewAtContact for CiContact {
    fn renew_at_contact(&self, chan: &mut dyn CardChannel) -> Result<ContactReport> {
        let ci = &self.ci;
        let id = identify(chan)?;
        let Some(card_number) = id.card_number else {
            return Ok(ContactReport::alone(None, "it carries no card number"));
        };
        let due = due_for_card(ci.due(ci.clock.now_ms())?, &card_number, |d| {
            d.holder == KeyHolder::Ci
        });
        if due.is_empty() {
            return Ok(ContactReport::alone(Some(card_number), "nothing due"));
        }
        match ci.store().card(&card_number)? {
            None => {
                return Ok(ContactReport::alone(
                    Some(card_number),
                    "not a card of this issuer",
                ))
            }
            Some(card) => {
                if let (Some(recorded), Some(chip)) = (&card.chip_id, &id.chip_id) {
                    if recorded != chip {
                        return Ok(ContactReport::alone(
                            Some(card_number),
                            "its chip (CPLC) is not the one registered under this card number",
                        ));
                    }
                }
            }
        }
        // Its own renewal jobs only: those a partner asked for are relayed by the partner.
        let resumable = |j: &Job| j.kind == JobKind::SsdRenew && !j.actor.ends_with("/partner-api");
        renew_each(ci.store(), &card_number, due, &resumable, |d, job| {
            let job = match job {
                Some(job) => job,
                None => ci.renew(&self.actor, &card_number, &d.aid)?,
            };
            ci.run(job, chan)
        })
    }
}
