//! Cardwright's domain layer: the platform's records and the card issuance workflows.
//!
//! # The store
//!
//! [`Store`] is the database of tenants (card issuers and application providers), card
//! categories, base key versions (references to the key store and their KCVs, never key
//! bytes), application packages, cards, jobs with their steps, an append-only hash-chained
//! [`audit`] log, and the `pki` crate's certificates, challenges and payment authorisations
//! (it implements [`pki::CertificateStore`], [`pki::EnrolmentStore`] and
//! [`pki::PaymentStore`]). One type, two engines, chosen by URL:
//!
//! * `sqlite:PATH`: embedded, the default. WAL journal, `synchronous=NORMAL` unless
//!   `?synchronous=full`; one group commit at a time (SQLite has one writer).
//! * `postgres://USER@HOST:PORT/DB`: production. `?schema=NAME` selects (and creates) a
//!   schema; `?pool=N` sizes the pool; `?groups=N` (default 2, at most the pool) is how many
//!   group commits run at the same time; other parameters go to the driver (for example
//!   `options=-c%20synchronous_commit%3Doff`).
//!
//! Write transactions are **group commits** (`store::group`): the workers of a process that
//! write while a group commits share the next group's transaction and commit, each in its own
//! savepoint, and the audit entries of all of them are chained and signed once.
//!
//! The schema is the same on both, created by versioned migrations embedded in the binary
//! and applied when the store opens (recorded in `schema_migrations`; idempotent; serialised
//! between processes). The API is synchronous, like the card workflows; an async server calls
//! it from `spawn_blocking`.
//!
//! ```
//! # fn main() -> Result<(), tsm::StoreError> {
//! # let dir = tempfile::tempdir().unwrap();
//! use tsm::model::Role;
//! let store = tsm::Store::open(&format!("sqlite:{}", dir.path().join("tsm.db").display()))?;
//! store.create_tenant("admin", "acme", "ACME Mobile", Role::CardIssuer)?;
//! assert!(store.audit_verify()?.is_ok());
//! # Ok(()) }
//! ```
//!
//! # The workflows
//!
//! [`Issuer`] runs CN102056165A's requests (write card, rewrite card, clear card, load or
//! delete an application) as resumable, idempotent jobs over any
//! [`transport::CardChannel`], deriving each card's keys from its category's base key and
//! its card number with the `kms` key store. See [`issuance`] for how a job runs, what is
//! checked before anything changes, and how an interrupted job is finished.
//!
//! # Tenants
//!
//! Categories and cards belong to a card issuer; packages to the tenant that registered
//! them. Write, rewrite and clear need the category's issuer; an application provider may
//! load and delete its own packages on written cards. Every change is audited with the
//! acting `tenant/user`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod apps;
pub mod audit;
pub mod campaign;
mod db;
mod error;
pub mod issuance;
pub mod model;
pub mod ota;
mod pki_store;
mod schema;
pub mod sd_cert;
pub mod ssd;
mod store;

pub use apps::AppChoice;
pub use db::{commits_total, thread_database_use, DatabaseUse, Dialect};
pub use error::{Error, LeaseHeld, Result, StoreError};
pub use issuance::{
    card_status, kvn_for_version, Actor, Issuer, IssuerConfig, Outcome, Request, ResumeOptions,
    Timing,
};
pub use pki_store::purge_expired_challenges;
pub use store::{
    redact_url, CategorySpec, CounterCheck, NewJob, PoolState, Store, MAX_COUNTER, OTA_SERVER,
};
