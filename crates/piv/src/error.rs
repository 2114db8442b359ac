use thiserror::Error;

/// Errors from building or restoring a PIV applet (never from `process`, which
/// answers every failure with a status word).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// A management key algorithm identifier that is not 3DES or AES (SP 800-78-4 Table 6-1).
    #[error("management key algorithm {0:#04x} is not one of 03 (3DES), 08, 0A, 0C (AES)")]
    UnknownMgmtAlgorithm(u8),
    /// A management key of the wrong length for its algorithm.
    #[error(
        "management key for algorithm {algorithm:#04x} must be {expected} bytes, got {actual}"
    )]
    MgmtKeyLength {
        /// Algorithm identifier.
        algorithm: u8,
        /// Required key length.
        expected: usize,
        /// Length given.
        actual: usize,
    },
    /// A block given to the management key cipher is not one block long.
    #[error("cipher block must be {expected} bytes, got {actual}")]
    BlockLength {
        /// Block size of the cipher.
        expected: usize,
        /// Length given.
        actual: usize,
    },
    /// A PIN or PUK that does not fit the 8-byte PIV reference data (SP 800-73-4 Part 1 §2.4.3).
    #[error("{what} must be 6 to 8 bytes{digits}, got {len} bytes")]
    BadReferenceData {
        /// "PIN" or "PUK".
        what: &'static str,
        /// " of digits" for the PIN.
        digits: &'static str,
        /// Length given.
        len: usize,
    },
    /// A retry counter of zero.
    #[error("retry counters must be 1 to 255")]
    BadRetryCount,
    /// A private key that could not be encoded or decoded.
    #[error("private key error: {0}")]
    Key(String),
}
