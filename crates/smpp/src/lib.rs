//! SMPP 3.4 over TCP for Cardwright: the platform's ESME client and the SMSC-facing endpoint of
//! the test handset.
//!
//! * [`Esme`]: binds to an SMSC as a transceiver, submits with a window, receives MO messages
//!   and delivery receipts ([`Inbound`]), keeps the link alive with enquire_link, and reconnects
//!   with exponential back-off — but stops and reports a bind refused for bad credentials.
//! * [`HandsetEndpoint`]: a small SMPP server the SMSC binds to as its "network": it takes the
//!   mobile-terminated submit_sm ([`MtMessage`]) and sends mobile-originated deliver_sm and
//!   delivery receipts.
//! * [`ShortMessage`]: what submit_sm and deliver_sm carry, as a plain value; the PDUs
//!   themselves are encoded by [`rusmpp`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use smpp::{Address, Esme, EsmeConfig, Inbound, ShortMessage};
//!
//! let config = EsmeConfig::from_url("smpp://cwesme:cwpass@127.0.0.1:2775?window=8")?;
//! let (esme, mut inbound) = Esme::connect(config);
//! esme.wait_bound(std::time::Duration::from_secs(10)).await?;
//! let udh_and_packet = vec![0x02, 0x70, 0x00 /* , secured packet … */];
//! let sms = ShortMessage::sim_data_download(
//!     Address::international("4412345"),
//!     Address::international("447700900123"),
//!     udh_and_packet,
//! )
//! .with_receipt();
//! let id = esme.submit(sms).await?;
//! while let Some(message) = inbound.recv().await {
//!     match message {
//!         Inbound::Receipt(r) if r.message_id() == Some(id.0.as_str()) => break,
//!         Inbound::Receipt(_) => {}
//!         Inbound::Mo(mo) => println!("MO from {}", mo.source.address),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The crate's README tells what the SMSC it was tested with (Jasmin) carries unchanged and its
//! quirks.
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
