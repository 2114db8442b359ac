//! Over-the-air application download (issue 12; `docs/OTA.md`): what cards may ask for
//! (the catalog), each card's OTA identity (ICCID, MSISDN, SCP80 key set and counters), and
//! the download sessions with every message they sent and received.
//!
//! Stored by [`Store`](crate::Store) (`ota_*` tables, migration 8); the bytes on the air are
//! made by the `ota` crate.

pub mod admin;
pub mod engine;
pub mod plan;
pub mod scp80;
pub mod scp81;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::str::FromStr;

use gp::aid::Aid;
use serde::Serialize;

/// An application cards may request over the air.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The tenant (card issuer) offering it.
    pub tenant: String,
    /// The name the card's download agent asks for (`wallet`): letters, digits, `-`, `_`,
    /// at most 32.
    pub app: String,
    /// The menu text (at most 40 characters, GSM default alphabet friendly).
    pub title: String,
    /// The load file, registered with `package add`.
    pub package: Aid,
    /// Its executable module to instantiate.
    pub module: Aid,
    /// The application instance AID.
    pub instance: Aid,
    /// The application's own security domain (created on the card if missing).
    pub sd: Aid,
    /// Privileges of the instance (1 or 3 bytes, GP 2.3.1 §11.1.2).
    pub privileges: Vec<u8>,
    /// Install parameters (`C9` value).
    pub params: Vec<u8>,
    /// When it was added.
    pub created_ms: i64,
}

/// Checks a catalog name: 1–32 of `[A-Za-z0-9_-]`.
pub fn valid_app_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A card's identity on the air.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtaCard {
    /// The platform's card number (the `cards` row).
    pub card_number: String,
    /// ICCID (ITU-T E.118, 18–20 digits).
    pub iccid: String,
    /// The subscriber's number the SMSC delivers to (international, digits only).
    pub msisdn: String,
    /// The ISD's SCP80 key set (KVN 1–15).
    pub kvn: u8,
    /// The last counter the platform put in a packet to the card.
    pub counter_out: u64,
    /// The last counter accepted from the card.
    pub counter_in: u64,
}

/// Checks an ICCID: 18 to 20 decimal digits (ITU-T E.118).
pub fn valid_iccid(iccid: &str) -> bool {
    (18..=20).contains(&iccid.len()) && iccid.bytes().all(|b| b.is_ascii_digit())
}

/// Checks an MSISDN: 3 to 15 digits (ITU-T E.164), an optional leading `+` dropped.
pub fn normalise_msisdn(msisdn: &str) -> Option<String> {
    let d = msisdn.strip_prefix('+').unwrap_or(msisdn);
    ((3..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())).then(|| d.to_string())
}

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            /// The stored word.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(Self::$v),)+
                    _ => Err(format!("'{s}' is not one of: {}", [$($s),+].join(", "))),
                }
            }
        }
    };
}

text_enum!(
    /// How the application travels.
    Bearer {
        /// SCP80 secured packets in SMS.
        Sms = "sms",
        /// SCP81: the card's admin agent over HTTPS (TLS-PSK).
        Https = "https",
    }
);

text_enum!(
    /// Who started a session.
    Origin {
        /// The card's download agent (the user chose a menu item).
        Card = "card",
        /// An operator (`ota push`).
        Server = "server",
    }
);

text_enum!(
    /// Where a session is.
    SessionState {
        /// Created, nothing sent yet.
        Pending = "pending",
        /// Messages on the air.
        Running = "running",
        /// The application is installed.
        Done = "done",
        /// The card refused or answered an error; `detail` says which.
        Failed = "failed",
        /// Given up (time-outs, retries exhausted, cancelled); the card is left as its last
        /// PoR said.
        Abandoned = "abandoned",
    }
);

text_enum!(
    /// The direction of a message.
    Direction {
        /// Mobile-terminated: platform to card.
        Mt = "mt",
        /// Mobile-originated: card to platform.
        Mo = "mo",
    }
);

/// A download session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// Identifier.
    pub id: i64,
    /// The tenant whose catalog it draws on.
    pub tenant: String,
    /// The card.
    pub card_number: String,
    /// The catalog entry's name.
    pub app: String,
    /// The bearer.
    pub bearer: Bearer,
    /// Who started it.
    pub origin: Origin,
    /// Where it is.
    pub state: SessionState,
    /// Scripts acknowledged so far.
    pub step: u32,
    /// Scripts in all (0 until planned).
    pub steps: u32,
    /// Why it failed or what it is waiting for, in words.
    pub detail: String,
    /// Created.
    pub created_ms: i64,
    /// Last change.
    pub updated_ms: i64,
}

/// One message of a session (or one that matched none), as sent or received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Identifier (the order of the log).
    pub id: i64,
    /// The session, if it belonged to one.
    pub session: Option<i64>,
    /// The card.
    pub card_number: String,
    /// Platform to card or back.
    pub direction: Direction,
    /// `request`, `script`, `por`, `trigger`, `receipt`…
    pub kind: String,
    /// The SCP80 counter it carried.
    pub counter: Option<u64>,
    /// The secured packet (or TPDU) as on the air.
    #[serde(serialize_with = "hex_bytes")]
    pub bytes: Vec<u8>,
    /// What became of it (`sent`, `ok`, `replayed`, `bad_cc`, a PoR status…).
    pub status: String,
    /// When.
    pub created_ms: i64,
}

fn hex_bytes<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&apdu::hex(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert!(valid_app_name("wallet"));
        assert!(valid_app_name("transit-2_b"));
        assert!(!valid_app_name(""));
        assert!(!valid_app_name("a b"));
        assert!(!valid_app_name(&"x".repeat(33)));
        assert!(valid_iccid("8988211000000000001"));
        assert!(!valid_iccid("89882110000000000F1"));
        assert_eq!(
            normalise_msisdn("+491701234567").as_deref(),
            Some("491701234567")
        );
        assert_eq!(normalise_msisdn("12"), None);
        assert_eq!("https".parse::<Bearer>(), Ok(Bearer::Https));
        assert!("mms".parse::<Bearer>().is_err());
        assert_eq!(SessionState::Abandoned.to_string(), "abandoned");
    }
}
