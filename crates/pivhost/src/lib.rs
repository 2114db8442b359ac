//! Host-side PIV client: what a PC with a reader sends to a PIV card application
//! (NIST SP 800-73-4 Part 2) over any [`transport::CardChannel`] — a PC/SC reader, the
//! in-process virtual card, a relay.
//!
//! * [`PivClient`]: SELECT, VERIFY PIN with the retry counter reported ([`PinStatus`],
//!   [`PivError::WrongPin`]), management-key mutual authentication in 3DES or AES
//!   ([`MgmtKey`]), GENERATE ASYMMETRIC KEY PAIR (RSA-2048, P-256) answering the `7F49`
//!   template, signatures of SHA-256 digests (RSA padded on the host, ECDSA on the card),
//!   GET/PUT DATA and the slot certificate objects (`70` certificate, `71` CertInfo `00`,
//!   `FE` LRC, as OpenSC and `yubico-piv-tool` write them).
//! * [`payment`]: the card's part of Cardwright's remote payments (enrolment with proof of
//!   possession, certificate installation, payment signature), shared by the CLI and the
//!   local agent.
//!
//! ```no_run
//! # fn main() -> Result<(), pivhost::PivError> {
//! # let channel: Box<dyn transport::CardChannel> = unimplemented!();
//! use pivhost::{MgmtKey, MgmtAlgorithm, PivClient, Slot};
//! use pki::piv::PivAlgorithm;
//! let mut piv = PivClient::new(channel);
//! piv.select()?;
//! piv.authenticate(&MgmtKey::default_for(MgmtAlgorithm::Tdes)?)?;
//! let key = piv.generate(Slot::SIGNATURE, PivAlgorithm::EccP256)?;
//! piv.verify_pin(b"123456")?;
//! let signature = piv.sign_digest(Slot::SIGNATURE, PivAlgorithm::EccP256, &[7; 32])?;
//! key.public_key.verify_digest(&[7; 32], &signature).expect("valid");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod error;
mod mgmt;
pub mod objects;
pub mod payment;

pub use client::{alg_name, GeneratedKey, PinStatus, PivClient, PIV_AID};
pub use error::PivError;
pub use mgmt::{MgmtAlgorithm, MgmtKey};
pub use objects::Slot;
pub use pki::piv::PivAlgorithm;
