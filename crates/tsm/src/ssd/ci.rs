//! The card issuer's platform: creates SSDs for its partners, hands them over, signs
//! Delegated Management tokens, renews keys.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use scp::SecurityLevel;
use serde::{Deserialize, Serialize};
use transport::CardChannel;

use super::keys::{KeySets, WrappedKeySet};
use super::model::{DueRenewal, Exchange, Rotation, SsdRecord, SsdRequest};
use super::Clock;
use crate::error::{Error, Result};
use crate::issuance::{Actor, Issuer};

/// How the CI platform runs SSD jobs.
#[derive(Clone)]
pub struct CiConfig {
    /// Security level of the secure channels (default C-MAC + C-DECRYPTION + R-MAC).
    pub level: SecurityLevel,
    /// How long a claimed job stays reserved to its worker.
    pub lease: Duration,
    /// The keys a new SSD is created with on these cards (the card's factory SSD keys;
    /// the virtual card uses the GP test key `40..4F`): replaced at once by the CI's
    /// initial keys.
    pub ssd_factory_key: Vec<u8>,
    /// Key version number of the factory SSD keys (0: any).
    pub ssd_factory_kvn: u8,
    /// Key version number of the CI's initial keys in the SSD.
    pub initial_kvn: u8,
    /// The Delegated Management token key (KVN 70 on the card), for the delegated model.
    pub token_signer: Option<Arc<dyn gp::dm::Signer + Send + Sync>>,
}

impl fmt::Debug for CiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CiConfig")
            .field("level", &self.level)
            .field("lease", &self.lease)
            .field("ssd_factory_kvn", &self.ssd_factory_kvn)
            .field("initial_kvn", &self.initial_kvn)
            .field("token_signer", &self.token_signer.is_some())
            .finish()
    }
}

impl Default for CiConfig {
    fn default() -> Self {
        CiConfig {
            level: SecurityLevel::MAC_ENC_RMAC,
            lease: Duration::from_secs(300),
            ssd_factory_key: gpclient::DEFAULT_TEST_KEY.to_vec(),
            ssd_factory_kvn: 0,
            initial_kvn: 0x30,
            token_signer: None,
        }
    }
}

/// What an AP asks the CI to sign: the token input (GP 2.3.1 Table C-4 … C-9: `P1 ‖ P2 ‖
/// Lc ‖ data without the token`) of an INSTALL or DELETE for its SSD on a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// The card.
    pub card_number: String,
    /// The partner's SSD (hex) the command is for.
    pub aid: String,
    /// The token input.
    pub input: Vec<u8>,
}

/// The card issuer's platform.
pub struct CiPlatform {
    issuer: Issuer,
    keys: Arc<dyn KeySets>,
    config: CiConfig,
    clock: Clock,
}

impl fmt::Debug for CiPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CiPlatform")
            .field("issuer", &self.issuer)
            .field("config", &self.config)
            .finish()
    }
}

impl CiPlatform {
    /// A CI platform over an issuer (its store and the card keys' key store) and the key
    /// store of SSD key sets.
    pub fn new(issuer: Issuer, keys: Arc<dyn KeySets>, config: CiConfig) -> CiPlatform {
        CiPlatform {
            issuer,
            keys,
            config,
            clock: Clock::system(),
        }
    }

    /// This platform with another clock (tests move time with [`Clock::manual`]).
    pub fn with_clock(mut self, clock: Clock) -> CiPlatform {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &crate::Store {
        self.issuer.store()
    }

    /// Checks a partner's request against its contract and records a job creating the
    /// SSD; returns the job id. Refusals are audited.
    pub fn request(&self, partner: &str, req: &SsdRequest) -> Result<i64> {
        let _ = (partner, req, &self.keys);
        Err(Error::NotImplemented("CiPlatform::request"))
    }

    /// Runs (or resumes) an SSD job on the card in `chan` (directly, or relayed through
    /// the AP's terminal).
    pub fn run(&self, job: i64, chan: &mut dyn CardChannel) -> Result<SsdRecord> {
        let _ = (job, chan);
        Err(Error::NotImplemented("CiPlatform::run"))
    }

    /// The initial key set of the job's SSD, wrapped for the partner's transport key.
    pub fn initial_keys(&self, partner: &str, job: i64) -> Result<WrappedKeySet> {
        let _ = (partner, job);
        Err(Error::NotImplemented("CiPlatform::initial_keys"))
    }

    /// The AP replaced the initial keys: the CI deletes its copy and records the hand-over.
    pub fn confirm_rotation(
        &self,
        partner: &str,
        job: i64,
        rotation: &Rotation,
    ) -> Result<SsdRecord> {
        let _ = (partner, job, rotation);
        Err(Error::NotImplemented("CiPlatform::confirm_rotation"))
    }

    /// The partner's SSD as recorded.
    pub fn status(&self, partner: &str, card_number: &str, aid: &str) -> Result<SsdRecord> {
        let _ = (partner, card_number, aid);
        Err(Error::NotImplemented("CiPlatform::status"))
    }

    /// The partner's SSDs.
    pub fn ssds(&self, partner: &str) -> Result<Vec<SsdRecord>> {
        let _ = partner;
        Err(Error::NotImplemented("CiPlatform::ssds"))
    }

    /// Signs a Delegated Management token for the partner's delegated SSD.
    pub fn sign_token(&self, partner: &str, req: &TokenRequest) -> Result<Vec<u8>> {
        let _ = (partner, req);
        Err(Error::NotImplemented("CiPlatform::sign_token"))
    }

    /// Marks an SSD's key version compromised (operator or API); it is renewed at the
    /// next contact and meanwhile refused for anything else.
    pub fn mark_compromised(
        &self,
        actor: &Actor,
        card_number: &str,
        aid: &str,
        kvn: u8,
        reason: &str,
    ) -> Result<SsdRecord> {
        let _ = (actor, card_number, aid, kvn, reason);
        Err(Error::NotImplemented("CiPlatform::mark_compromised"))
    }

    /// What falls due at `at_ms` (key versions the CI holds, and the partners' SSDs whose
    /// keys the partners hold, for their information).
    pub fn due(&self, at_ms: i64) -> Result<Vec<DueRenewal>> {
        Ok(self.store().ssds_due(at_ms)?)
    }

    /// Records a job renewing the key set of an SSD (for a partner: its own SSD).
    pub fn renew(&self, partner: &str, card_number: &str, aid: &str) -> Result<i64> {
        let _ = (partner, card_number, aid);
        Err(Error::NotImplemented("CiPlatform::renew"))
    }

    /// The relay's side of a job, for the partner API: delivers the card's last response
    /// to the job's bridge and returns the next command.
    pub fn exchange_hint(&self) -> Exchange {
        Exchange::Done
    }
}
