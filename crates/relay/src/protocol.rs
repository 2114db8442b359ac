//! Messages between an issuing terminal (agent) and the platform (hub). JSON, one message
//! per WebSocket text frame, tagged by `type`. APDUs are upper-case hex.

use serde::{Deserialize, Serialize};

/// One reader of a terminal as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderReport {
    /// The reader name as PC/SC reports it.
    pub name: String,
    /// Whether a card is in it.
    pub card_present: bool,
    /// The card's ATR (hex) when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atr: Option<String>,
}

/// Agent → platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// First message: who the terminal is and what it has.
    Hello {
        /// The terminal's name (must match its token).
        terminal: String,
        /// The agent's version (`cardwright` package version).
        agent_version: String,
        /// The readers it lends.
        readers: Vec<ReaderReport>,
    },
    /// The reader list changed (a card inserted or removed, a reader plugged in).
    Readers {
        /// The readers now.
        readers: Vec<ReaderReport>,
    },
    /// The answer to [`PlatformMessage::Transmit`] or [`PlatformMessage::Reset`]: the R-APDU
    /// (hex; for a reset, the new ATR) or what went wrong.
    Result {
        /// The request's id.
        id: u64,
        /// The R-APDU or ATR (hex) on success.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ok: Option<String>,
        /// What went wrong otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<RelayFault>,
    },
}

/// Why the terminal could not carry out a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RelayFault {
    /// The card was removed (or reset by someone else) during the exchange.
    CardRemoved,
    /// No card in that reader.
    NoCard,
    /// The terminal has no such reader.
    UnknownReader,
    /// Anything else, described.
    Other {
        /// What happened.
        message: String,
    },
}

/// Platform → agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PlatformMessage {
    /// The hello was accepted.
    Welcome {
        /// The terminal name the token belongs to.
        terminal: String,
    },
    /// Send this C-APDU (hex) to the card in `reader`.
    Transmit {
        /// Request id, repeated in the [`AgentMessage::Result`].
        id: u64,
        /// The reader.
        reader: String,
        /// The C-APDU, hex.
        capdu: String,
    },
    /// Reset the card in `reader`.
    Reset {
        /// Request id, repeated in the [`AgentMessage::Result`].
        id: u64,
        /// The reader.
        reader: String,
    },
    /// The platform refuses the terminal (then closes).
    Refused {
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms_are_stable() {
        let m = PlatformMessage::Transmit {
            id: 7,
            reader: "R".into(),
            capdu: "00A40400".into(),
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"transmit","id":7,"reader":"R","capdu":"00A40400"}"#
        );
        let a = AgentMessage::Result {
            id: 7,
            ok: None,
            error: Some(RelayFault::CardRemoved),
        };
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(
            text,
            r#"{"type":"result","id":7,"error":{"kind":"card_removed"}}"#
        );
        assert_eq!(serde_json::from_str::<AgentMessage>(&text).unwrap(), a);
        assert!(serde_json::from_str::<AgentMessage>(r#"{"type":"bogus"}"#).is_err());
    }
}
