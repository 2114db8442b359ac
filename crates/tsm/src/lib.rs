//! Cardwright's domain layer (see `docs/DESIGN.md`, crate `tsm`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
mod db;
mod error;
pub mod issuance;
pub mod model;
mod pki_store;
mod schema;
mod store;

pub use db::Dialect;
pub use error::{Error, Result, StoreError};
pub use issuance::{kvn_for_version, Actor, Issuer, IssuerConfig, Outcome, Request, Timing};
pub use pki_store::purge_expired_challenges;
pub use store::{CategorySpec, NewJob, Store};
