//! Supplementary security domains shared between a card issuer's (CI) platform and an
//! application provider's (AP) platform (issue #10): create, hand over, renew.
//!
//! Two platforms run the same code with their own [`Store`](crate::Store) and key store:
//! [`CiPlatform`] on the card issuer's side, [`ApPlatform`] on the application provider's,
//! the latter seeing the former through a [`CardIssuerLink`] (HTTPS with client
//! certificates in production, a direct call in tests).
//!
//! # Records
//!
//! Partners ([`Partner`]: root CA certificate, SSD AID prefix, card-number contract
//! ranges, P-256 transport key, revoked flag), SSDs ([`SsdRecord`]: card, AID, owner,
//! model, privileges, state, hand-over time and receipt), their key versions
//! ([`SsdKeyVersion`]: KVN, creation, expiry, holder, state, KCV; never key bytes: those
//! stay in the key stores under a label) and renewals, and the [`KeyPolicy`]. Every change
//! and every refusal goes to the hash-chained audit log with the actor.
//!
//! # Authorisation
//!
//! A partner may ask only for SSDs on cards in its contract ranges, with AIDs under its
//! prefix (never the ISD's), may see only its own SSDs, and a revoked partner may do
//! nothing ([`auth`]). A CI operator never sees an AP's keys: after the hand-over there
//! are none on the CI platform.
//!
//! # The flows
//!
//! See [`ci`] and [`ap`].
#![doc = include_str!("DESIGN.md")]

pub mod ap;
pub mod auth;
pub mod ci;
pub mod contact;
mod job;
pub mod keys;
pub mod model;
mod session;
pub mod token;

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

pub use ap::{ApConfig, ApPlatform, CardIssuerLink, Scp11Rotation};
pub use ci::{model_privileges, CiConfig, CiPlatform, TokenRequest};
pub use contact::{CiContact, ContactRenewal, ContactReport, ContactResult, RenewAtContact};
pub use job::ClaimedSsd;
pub use keys::{KeySetInfo, KeySetStore, TransportPublicKey, WrappedKeySet};
pub use model::{
    CardRange, DmReceipt, DueRenewal, Exchange, KeyHolder, KeyPolicy, KeyState, NewPartner,
    Partner, Renewal, Rotation, SsdKeyVersion, SsdModel, SsdRecord, SsdRequest, SsdState,
};

/// The platform's notion of now (Unix ms), injectable so that tests can move time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now_ms())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(crate::model::now_ms))
    }
    /// A clock that reads `at` (which the caller moves).
    pub fn manual(at: Arc<AtomicI64>) -> Clock {
        Clock(Arc::new(move || at.load(Ordering::SeqCst)))
    }
    /// Now, in Unix ms.
    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}
