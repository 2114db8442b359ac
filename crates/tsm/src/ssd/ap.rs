//! The application provider's platform: asks the CI for SSDs, relays the CI's commands to
//! its card, takes over the SSD by replacing the initial keys with its own.

use std::fmt;
use std::sync::Arc;

use scp::SecurityLevel;
use transport::CardChannel;

use super::ci::TokenRequest;
use super::keys::{KeySets, WrappedKeySet};
use super::model::{DueRenewal, Exchange, Rotation, SsdRecord, SsdRequest};
use super::Clock;
use crate::error::{Error, Result};
use crate::Store;

/// The CI platform as the AP sees it (HTTPS with a client certificate in production; the
/// partner identity is the link's).
pub trait CardIssuerLink: Send + Sync {
    /// Asks for an SSD; returns the CI's job id.
    fn request(&self, req: &SsdRequest) -> Result<i64>;
    /// Delivers the card's response to the last command (`None` at the start) and gets
    /// the next command, or [`Exchange::Done`].
    fn exchange(&self, job: i64, last_response: Option<&[u8]>) -> Result<Exchange>;
    /// The job's initial key set, wrapped for this AP's transport key.
    fn initial_keys(&self, job: i64) -> Result<WrappedKeySet>;
    /// Tells the CI the initial keys are replaced.
    fn confirm_rotation(&self, job: i64, rotation: &Rotation) -> Result<SsdRecord>;
    /// The SSD as the CI records it.
    fn status(&self, card_number: &str, aid: &str) -> Result<SsdRecord>;
    /// Asks the CI to renew a key set it holds (delegated model); returns the job id.
    fn renew(&self, card_number: &str, aid: &str) -> Result<i64>;
    /// A Delegated Management token for an INSTALL or DELETE.
    fn sign_token(&self, req: &TokenRequest) -> Result<Vec<u8>>;
}

/// How the AP platform runs.
#[derive(Debug, Clone)]
pub struct ApConfig {
    /// This AP's partner id (its tenant on both platforms).
    pub partner_id: String,
    /// Label of its P-256 transport key in its key store.
    pub transport_key_label: String,
    /// Security level of its secure channels with its SSDs.
    pub level: SecurityLevel,
}

/// The application provider's platform.
pub struct ApPlatform {
    store: Store,
    keys: Arc<dyn KeySets>,
    link: Arc<dyn CardIssuerLink>,
    config: ApConfig,
    clock: Clock,
}

impl fmt::Debug for ApPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApPlatform")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish()
    }
}

impl ApPlatform {
    /// An AP platform: its store, its key store, the link to the CI.
    pub fn new(
        store: Store,
        keys: Arc<dyn KeySets>,
        link: Arc<dyn CardIssuerLink>,
        config: ApConfig,
    ) -> ApPlatform {
        ApPlatform {
            store,
            keys,
            link,
            config,
            clock: Clock::system(),
        }
    }

    /// This platform with another clock.
    pub fn with_clock(mut self, clock: Clock) -> ApPlatform {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Asks the CI for an SSD and records the AP's job taking it over; returns the AP's
    /// job id.
    pub fn request(&self, req: &SsdRequest) -> Result<i64> {
        let _ = (req, &self.keys, &self.link);
        Err(Error::NotImplemented("ApPlatform::request"))
    }

    /// Runs (or resumes) the AP's job on the card in `chan`: relays the CI's commands,
    /// imports the initial keys, replaces them with its own, confirms to the CI.
    pub fn run(&self, job: i64, chan: &mut dyn CardChannel) -> Result<SsdRecord> {
        let _ = (job, chan);
        Err(Error::NotImplemented("ApPlatform::run"))
    }

    /// Renews an SSD key set it holds (expiry or compromise) on the card in `chan`.
    pub fn renew(
        &self,
        card_number: &str,
        aid: &str,
        chan: &mut dyn CardChannel,
    ) -> Result<SsdRecord> {
        let _ = (card_number, aid, chan);
        Err(Error::NotImplemented("ApPlatform::renew"))
    }

    /// Marks one of its key versions compromised.
    pub fn mark_compromised(
        &self,
        card_number: &str,
        aid: &str,
        kvn: u8,
        reason: &str,
    ) -> Result<SsdRecord> {
        let _ = (card_number, aid, kvn, reason);
        Err(Error::NotImplemented("ApPlatform::mark_compromised"))
    }

    /// Its SSD as it records it.
    pub fn status(&self, card_number: &str, aid: &str) -> Result<Option<SsdRecord>> {
        let aid = apdu::parse_hex(aid).map_err(|e| Error::Invalid(format!("AID: {e}")))?;
        Ok(self.store.ssd(card_number, &aid)?)
    }

    /// What falls due at `at_ms` among the key versions it holds.
    pub fn due(&self, at_ms: i64) -> Result<Vec<DueRenewal>> {
        let _ = self.clock.now_ms();
        Ok(self.store.ssds_due(at_ms)?)
    }

    /// Placeholder so the link is used.
    pub fn last_exchange(&self) -> Exchange {
        Exchange::Done
    }
}
