use thiserror::Error;

/// Everything that can go wrong while building or checking secure-channel messages.
///
/// The cryptographic failures ([`Error::CardCryptogramMismatch`],
/// [`Error::HostCryptogramMismatch`], [`Error::MacMismatch`], [`Error::BadPadding`]) carry
/// no detail on purpose: they must not help an attacker.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// The card cryptogram in the INITIALIZE UPDATE response is wrong: wrong keys, or not
    /// the card we think. Stop; do not send EXTERNAL AUTHENTICATE.
    #[error("card cryptogram mismatch: wrong keys (or diversification) for this card")]
    CardCryptogramMismatch,
    /// The host cryptogram in EXTERNAL AUTHENTICATE is wrong (card side).
    #[error("host cryptogram mismatch")]
    HostCryptogramMismatch,
    /// The SCP11 receipt in the MUTUAL/INTERNAL AUTHENTICATE response did not verify: not
    /// the card (SD key) we think, or the OCE key is wrong. Stop.
    #[error("SCP11 receipt mismatch: wrong SD or OCE key")]
    ReceiptMismatch,
    /// A C-MAC or R-MAC did not verify.
    #[error("secure messaging MAC mismatch")]
    MacMismatch,
    /// A command reached the card without the secure messaging the session's level requires
    /// (CLA b3 clear). The card answers `6982` and closes the session.
    #[error("command lacks the secure messaging required by the session")]
    MissingSecureMessaging,
    /// The session was closed by an earlier MAC or padding failure (a Secure
    /// Channel that fails verification is terminated, GP 2.3.1 §E.4.4, Amendment D §6.2.4). Start a new one.
    #[error("secure channel session closed after a verification failure")]
    Closed,
    /// Decrypted data does not end in ISO/IEC 9797-1 method 2 padding.
    #[error("bad ISO/IEC 9797-1 method 2 padding after decryption")]
    BadPadding,
    /// A key of a length the algorithm does not take.
    #[error("bad key length {len} for {kind}")]
    BadKeyLength {
        /// What the key was for ("3DES", "AES").
        kind: &'static str,
        /// The length given.
        len: usize,
    },
    /// The operation or option is not implemented (or not defined by the specification).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Bytes that cannot be read as the structure expected.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A command or response that does not fit secure messaging (too long, wrong CLA, …).
    #[error("cannot apply secure messaging: {0}")]
    Wrap(String),
    /// The card answered EXTERNAL AUTHENTICATE (or another command) with an error status.
    #[error("card returned {0}")]
    Status(apdu::StatusWord),
    /// The system random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
    /// A PUT KEY response or key block whose check value does not match the key.
    #[error("key check value mismatch")]
    KcvMismatch,
    /// A string that is not a security level, diversification name, ….
    #[error("cannot parse {what} from {input:?}")]
    Parse {
        /// What was expected.
        what: &'static str,
        /// The text given.
        input: String,
    },
    /// An APDU encoding error from the `apdu` crate.
    #[error(transparent)]
    Apdu(#[from] apdu::Error),
}

pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Error {
    Error::Malformed {
        what,
        detail: detail.into(),
    }
}
