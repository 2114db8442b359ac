//! The terminal relay (patent CN102056165A's issuing terminals; DESIGN "online TSM +
//! terminal agent").
//!
//! An issuing terminal runs `cardwright agent --server URL`: it connects **out** to the
//! platform over a WebSocket (`/api/v1/terminal/ws`, bearer token), reports the readers it
//! has and the cards in them, and relays APDUs. It holds no keys: the secure channel is
//! computed on the platform, so the terminal only ever sees wrapped commands.
//!
//! * [`protocol`]: the JSON messages, one per WebSocket text frame.
//! * [`hub::Hub`]: the platform side. It authenticates terminals, keeps their reader lists,
//!   and hands out [`hub::RelayChannel`]s, ordinary blocking [`transport::CardChannel`]s for
//!   one card in one terminal's reader. A terminal can only be asked about readers it reported.
//! * [`agent`]: the terminal side, a blocking loop over any [`agent::Readers`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod bridge;
pub mod hub;
pub mod protocol;

/// The WebSocket route the hub serves and the agent connects to.
pub const WS_PATH: &str = "/api/v1/terminal/ws";
