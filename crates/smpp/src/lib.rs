//! SMPP 3.4 over TCP for Cardwright: the platform's ESME client and the SMSC-facing endpoint of
//! the test handset.
#![forbid(unsafe_code)]

pub mod codec;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod esme;
mod link;
pub mod message;

pub use config::{Backoff, Credentials, EsmeConfig};
pub use endpoint::{EndpointHandle, HandsetEndpoint, MtMessage};
pub use error::{ConfigError, Error, MessageError};
pub use esme::{Esme, EsmeHandle, MessageId, Status};
pub use message::{Address, DeliveryReceipt, Inbound, RawTlv, ReceiptText, ShortMessage, Submit};
/// The PDU codec and types this crate is built on.
pub use rusmpp;
