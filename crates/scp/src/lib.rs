//! GlobalPlatform secure channels for Cardwright: SCP02, SCP03 and SCP11 ([`scp11`]), static keys and key
//! check values, per-card key diversification and PUT KEY data. Pure cryptography and
//! protocol, no I/O; RustCrypto primitives underneath.
//!
//! # Host side
//!
//! ```no_run
//! # fn send(_: &apdu::Command) -> apdu::Response { unimplemented!() }
//! use scp::*;
//! # fn main() -> Result<(), scp::Error> {
//! let keys = StaticKeys::same(Key::des3(&apdu::parse_hex("404142434445464748494A4B4C4D4E4F")?)?);
//! let host_challenge = random_challenge(8)?;
//! let resp = send(&initialize_update(0x00, &host_challenge));
//! let iu = InitUpdateResponse::parse(&resp.data)?;
//! let keys = Diversification::None.apply(&keys, &iu.kdd)?;
//! // Checks the card cryptogram before anything is sent.
//! let auth = HostAuth::new(&keys, &host_challenge, &iu, "mac+enc".parse()?, 0x55)?;
//! let ea = send(&auth.external_authenticate());
//! let mut session = auth.finish(&ea)?;
//! let get_status = apdu::Command::new(0x80, 0xF2, 0x80, 0x02).with_data(vec![0x4F, 0x00]).with_le(256);
//! let wrapped = session.wrap(&get_status)?;
//! let answer = session.unwrap(send(&wrapped))?;
//! # let _ = answer; Ok(()) }
//! ```
//!
//! # Card side
//!
//! [`CardAuth::new`] answers INITIALIZE UPDATE, [`CardAuth::external_authenticate`] checks
//! EXTERNAL AUTHENTICATE and opens a [`CardSession`] that unwraps commands and wraps
//! responses. [`put_key::parse_key_set_data`] and [`CardSession::decrypt_key`] take PUT KEY
//! apart.
//!
//! # SCP11
//!
//! [`scp11`] does the asymmetric handshake of SCP11a/b/c (GP Amendment F) on both sides and
//! ends in an ordinary [`HostSession`] / [`CardSession`] (SCP03 secure messaging with the
//! SCP11 session keys, chaining from the receipt):
//!
//! ```
//! use scp::scp11::*;
//! # fn main() -> Result<(), scp::Error> {
//! let sk_sd = PrivateKey::generate(Curve::P256)?;   // on the card
//! let sk_oce = PrivateKey::generate(Curve::P256)?;  // the OCE's key (or an HSM's, via OceKeyAgreement)
//! let auth = HostAuth::new(Params::new(Variant::A, 0x03), sk_sd.public_key())?;
//! let card = CardParams { sk_sd: &sk_sd, pk_oce: Some(sk_oce.public_key()), variant: Variant::A, s16: false };
//! let (answer, mut card_session) = card_authenticate(&card, &auth.command().data)?;
//! let answer = apdu::Response::new(answer, apdu::StatusWord::SUCCESS);
//! let mut host = auth.finish(&answer, sk_sd.public_key(), Some(&sk_oce as &dyn OceKeyAgreement))?;
//! let wire = host.wrap(&apdu::Command::new(0x80, 0xCA, 0x00, 0x66).with_le(256))?;
//! assert_eq!(card_session.unwrap(&wire)?.ins, 0xCA);
//! # Ok(()) }
//! ```
//!
//! Certificates (GP `7F21`, X.509) and the PSO / `BF21` codecs are in `gp::cert` and
//! `gp::scp11`.
//!
//! # Specifications and choices
//!
//! * SCP02: GP Card Specification 2.3.1 Appendix E, i = `04 05 14 15 44 45 54 55`
//!   (explicit initiation). C-MAC on the modified APDU, ICV encryption when i b5 is set,
//!   C-DECRYPTION (3DES-CBC, always padded), R-MAC. SCP02 R-MAC has no public test vector;
//!   it follows GP 2.3.1 §E.4.5 as read by kaoh/globalplatform: input = plain CLA INS P1 P2
//!   Lc data ‖ Li ‖ response data ‖ SW, ICV = previous R-MAC, starting from the C-MAC of
//!   EXTERNAL AUTHENTICATE, on every response.
//! * SCP03: Amendment D v1.1.2 / v1.2, S8 and S16 modes, all levels up to `33`. The
//!   encryption counter moves for every command at C-DECRYPTION levels, with or without
//!   data (as GlobalPlatformPro and pySim; omfgp moves it only for commands with data).
//!   Error status words carry no R-MAC. The C-MAC covers Lc as encoded in the wrapped
//!   APDU (three bytes for extended length).
//! * A verification failure (MAC, padding, missing secure messaging) closes the session:
//!   later calls return [`Error::Closed`].
//! * Additions to the original API sketch: [`random_challenge`], [`HostSession::key_version`],
//!   [`put_key::command`], [`Key::new`], [`KeyKind::key_type`], [`StaticKeys::iter`],
//!   `FromStr`/`Display` for [`Diversification`], `Error::{MissingSecureMessaging, Closed,
//!   KcvMismatch, Status, …}`. [`put_key::check_response`] takes `(data, new_kvn, keys)`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod card;
mod channel;
mod crypto;
mod diversify;
mod error;
mod host;
mod init_update;
mod key;
mod level;
pub mod put_key;
mod scp02;
mod scp03;
pub mod scp11;
mod sensitive;
#[cfg(test)]
mod testutil;

pub use card::{CardAuth, CardSession};
pub use diversify::Diversification;
pub use error::Error;
pub use host::{HostAuth, HostSession};
pub use init_update::{initialize_update, InitUpdateResponse};
pub use key::{Key, KeyKind, StaticKeys};
pub use level::{Protocol, SecurityLevel};
pub use sensitive::{decrypt_sensitive_data, encrypt_sensitive_data};

/// A fresh random challenge from the operating system (8 bytes; 16 for SCP03 S16 mode).
pub fn random_challenge(len: usize) -> Result<Vec<u8>, Error> {
    channel::random(len)
}
