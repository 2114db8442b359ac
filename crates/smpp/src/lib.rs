//! SMPP 3.4 over TCP for Cardwright: the platform's ESME client and the SMSC-facing endpoint of
//! the test handset.
#![forbid(unsafe_code)]

pub mod codec;
pub mod config;
pub mod error;
pub mod message;

pub use config::{Backoff, Credentials, EsmeConfig};
pub use error::{ConfigError, Error, MessageError};
pub use message::{Address, DeliveryReceipt, Inbound, RawTlv, ReceiptText, ShortMessage, Submit};
/// The PDU codec and types this crate is built on.
pub use rusmpp;
