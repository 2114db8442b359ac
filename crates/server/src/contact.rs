//! Renewal at the next contact (issue #10, flows 3 and 4): a background task of
//! `serve --role ap` and `serve --role ci --issuance` that watches the platform's
//! terminals ([`relay::hub::Hub::terminals`]) and, for each card that appears in a reader
//! (and again every `scan_every` for a card that stays), runs the platform's
//! [`tsm::ssd::RenewAtContact`] on it: the card is identified without authentication and
//! its SSD key sets due or compromised for this platform are renewed, each as an ordinary
//! audited job (see [`tsm::ssd::contact`]).
//!
//! One card at a time: the task waits for each contact to end before the next. A reader
//! another job holds (an operator's API request) is left until it is given back: the hub
//! lends a reader to one channel at a time ([`relay::hub::HubError::Busy`]); an API
//! request meeting a reader the task holds waits for it ([`READER_WAIT`], then 409).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay::hub::{Hub, HubError};
use tsm::ssd::{ContactResult, RenewAtContact};

/// How long an API request waits for a reader another job holds (the renewal at contact
/// of the card in it) before it answers 409.
pub const READER_WAIT: Duration = Duration::from_secs(60);

/// How often the task looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactConfig {
    /// A card that stays in its reader is looked at again after this long.
    pub scan_every: Duration,
    /// How often the terminals' readers are read for cards that appeared.
    pub poll: Duration,
}

impl Default for ContactConfig {
    fn default() -> Self {
        ContactConfig {
            scan_every: Duration::from_secs(3600),
            poll: Duration::from_millis(500),
        }
    }
}

/// A reader with a card, as last looked at.
struct Seen {
    atr: Option<String>,
    /// When its card was last looked at (`None`: not yet).
    looked: Option<Instant>,
}

/// Starts the task on the current Tokio runtime; it runs until the runtime stops (or the
/// handle is aborted).
pub fn spawn(
    hub: Arc<Hub>,
    platform: Arc<dyn RenewAtContact>,
    config: ContactConfig,
) -> tokio::task::JoinHandle<()> {
    tracing::info!(
        scan_every_s = config.scan_every.as_secs(),
        "renewal at contact: watching the terminals' readers"
    );
    tokio::spawn(async move {
        let mut seen: HashMap<(String, String), Seen> = HashMap::new();
        let mut tick = tokio::time::interval(config.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut present = HashSet::new();
            for t in hub.terminals() {
                for r in t.readers.into_iter().filter(|r| r.card_present) {
                    let key = (t.terminal.clone(), r.name.clone());
                    present.insert(key.clone());
                    let s = seen.entry(key).or_insert(Seen {
                        atr: r.atr.clone(),
                        looked: None,
                    });
                    if s.atr != r.atr {
                        // Another card (or the same, reset): a new contact.
                        s.atr = r.atr.clone();
                        s.looked = None;
                    }
                    if s.looked.is_some_and(|at| at.elapsed() < config.scan_every) {
                        continue;
                    }
                    if look(&hub, &platform, &t.terminal, &r.name).await {
                        s.looked = Some(Instant::now());
                    }
                }
            }
            seen.retain(|k, _| present.contains(k));
        }
    })
}

/// One contact with the card in `reader` of `terminal`; false if the reader was not free
/// (then it is tried again at the next poll).
async fn look(
    hub: &Arc<Hub>,
    platform: &Arc<dyn RenewAtContact>,
    terminal: &str,
    reader: &str,
) -> bool {
    let mut chan = match hub.channel(terminal, reader) {
        Ok(c) => c,
        Err(HubError::Busy { .. }) => return false,
        Err(e) => {
            tracing::debug!(error = %e, "renewal at contact: reader gone");
            return true;
        }
    };
    let platform = platform.clone();
    let done = tokio::task::spawn_blocking(move || platform.renew_at_contact(&mut chan)).await;
    match done {
        Ok(Ok(report)) if report.left_alone.is_some() => {
            tracing::debug!(%terminal, %reader, "renewal at contact: {report}");
        }
        Ok(Ok(report)) => {
            let trouble = report.renewals.iter().any(|r| {
                matches!(
                    r.result,
                    ContactResult::Refused { .. } | ContactResult::Held { .. }
                )
            });
            if trouble {
                tracing::warn!(%terminal, %reader, "renewal at contact: {report}");
            } else {
                tracing::info!(%terminal, %reader, "renewal at contact: {report}");
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(%terminal, %reader, error = %e, "renewal at contact: the card could not be identified");
        }
        Err(_) => tracing::warn!(%terminal, %reader, "renewal at contact: the worker failed"),
    }
    true
}
