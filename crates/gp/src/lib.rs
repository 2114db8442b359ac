//! GlobalPlatform card management, shared by the host (CLI, TSM) and the virtual card.
//!
//! Pure: no I/O. Cryptography only where GlobalPlatform defines it on top of the commands:
//! load file hashes, SCP11 certificates (ECDSA), Delegated Management tokens and receipts,
//! DAP signatures ([`dm`]). Secure channels (SCP02, SCP03, SCP11) live in the `scp` crate
//! and wrap the plain commands built here.
//!
//! * [`aid`]: [`Aid`], [`ISD_AID`].
//! * [`lifecycle`]: card, application, security domain and load file life cycle states
//!   with the transitions GP 2.3.1 §5.1 allows.
//! * [`privileges`]: [`Privilege`] and [`Privileges`] (GP 2.3.1 §11.1.2).
//! * [`commands`]: SELECT, GET DATA, GET STATUS, INSTALL, LOAD, DELETE, SET STATUS,
//!   STORE DATA and PUT KEY — each with `to_command()` and `parse()` — and their
//!   responses ([`commands::Fci`], [`commands::Cplc`], [`commands::CardData`],
//!   [`commands::KeyInfo`], [`commands::RegistryEntry`], [`commands::Confirmation`]),
//!   each with `parse()` and `to_bytes()`.
//! * [`dm`]: Delegated Management token input (Appendix C.4), receipts and the confirmation
//!   structure (Appendix C.5), the token and DAP signature schemes (Appendix B).
//! * [`cert`]: SCP11 certificates, GP (`7F21`) and X.509, and the chain check.
//! * [`scp11`]: SCP11 command codecs (PERFORM SECURITY OPERATION, GET DATA `BF21`, STORE
//!   DATA of certificate bundles, allowlists and CA issuers).
//! * [`cap`]: CAP files ([`cap::CapFile`]) and load files ([`cap::LoadFile`]).
//!
//! Parsers of card or host bytes never panic; errors ([`Error`], [`cap::CapError`]) name
//! the structure, field and offset.
//!
//! ```
//! use gp::commands::{GetStatus, StatusSubset};
//! let cmd = GetStatus::new(StatusSubset::Applications).to_command().unwrap();
//! assert_eq!(apdu::hex(&cmd.to_bytes().unwrap()), "80F24002024F0000");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aid;
pub mod cap;
pub mod cert;
pub mod commands;
pub mod dm;
mod error;
pub mod lifecycle;
pub mod privileges;
mod reader;
pub mod scp11;

pub use aid::{Aid, ISD_AID};
pub use error::{Error, Result};
pub use privileges::{Privilege, Privileges};
