//! GlobalPlatform secure channels: SCP02 and SCP03, static keys, key check values, key
//! diversification and PUT KEY data. Pure cryptography and protocol; no I/O.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod card;
mod crypto;
mod diversify;
mod error;
mod host;
mod init_update;
mod key;
mod level;
pub mod put_key;

pub use card::{CardAuth, CardSession};
pub use diversify::Diversification;
pub use error::Error;
pub use host::{HostAuth, HostSession};
pub use init_update::{initialize_update, InitUpdateResponse};
pub use key::{Key, KeyKind, StaticKeys};
pub use level::{Protocol, SecurityLevel};
