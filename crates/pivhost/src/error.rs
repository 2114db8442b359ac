//! Errors of the host-side PIV client.

use apdu::StatusWord;
use transport::TransportError;

/// Why a PIV operation did not complete. Every variant names the command that failed, so a
/// message such as `GENERATE ASYMMETRIC KEY PAIR: the card answered 6982 (security status
/// not satisfied)` tells the user what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PivError {
    /// The reader or card did not carry the exchange.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The command could not be encoded or the answer is not an R-APDU.
    #[error("{command}: {reason}")]
    Exchange {
        /// The PIV command.
        command: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The card has no PIV application (SELECT answered `6A82`).
    #[error("the card has no PIV application (SELECT answered {0})")]
    NoPivApplication(StatusWord),
    /// The card refused a command with this status word.
    #[error("{command}: the card answered {sw}")]
    Status {
        /// The PIV command.
        command: &'static str,
        /// Its status word.
        sw: StatusWord,
    },
    /// VERIFY failed: the PIN is wrong (`63Cx`, SP 800-73-4 Part 2 §3.2.1).
    #[error("wrong PIN: {retries_left} {} left before the PIN is blocked",
        if *.retries_left == 1 { "try" } else { "tries" })]
    WrongPin {
        /// Tries left (`x` of `63Cx`); zero means the PIN is now blocked.
        retries_left: u8,
    },
    /// The PIN is blocked (`6983`): unblock it with the PUK (RESET RETRY COUNTER).
    #[error("the PIN is blocked (6983): unblock it with the PUK")]
    PinBlocked,
    /// The PIN given is not 6 to 8 characters; nothing was sent to the card (no try spent).
    #[error("invalid PIN: {0} (nothing was sent to the card)")]
    InvalidPin(&'static str),
    /// The card refused the management key (Part 2 Appendix A.1): wrong key or algorithm.
    #[error("management key authentication failed: {0}")]
    ManagementKey(String),
    /// The card's answer does not have the structure the command defines.
    #[error("{command}: malformed response: {reason}")]
    Malformed {
        /// The PIV command.
        command: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The public key the card returned is not acceptable.
    #[error("public key from the card: {0}")]
    Key(#[from] pki::KeyError),
    /// The slot has no key (`6A88`), or the object is absent (`6A82`).
    #[error("{0}")]
    NotFound(String),
    /// The certificate object is compressed (`71` = `01`, a YubiKey gzip option), which
    /// this client does not read.
    #[error("the certificate object is compressed (CertInfo 01); not supported")]
    CompressedCertificate,
    /// A request is not usable (wrong digest length, unknown slot, ...).
    #[error("{0}")]
    Invalid(String),
}

impl PivError {
    /// The status word the card answered, if this error is one.
    pub fn status_word(&self) -> Option<StatusWord> {
        match self {
            Self::Status { sw, .. } | Self::NoPivApplication(sw) => Some(*sw),
            Self::PinBlocked => Some(StatusWord::AUTH_METHOD_BLOCKED),
            Self::WrongPin { retries_left } => Some(StatusWord::new(0x63, 0xC0 | retries_left)),
            _ => None,
        }
    }
}
