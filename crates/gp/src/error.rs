//! The crate's error type.

use apdu::StatusWord;
use thiserror::Error;

use crate::cap::CapError;

/// Why a GlobalPlatform value could not be built, or bytes could not be read as one.
///
/// Parsers of card or host bytes never panic; they return one of these, naming the
/// structure (`context`), the field and, where it helps, the byte offset.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// An AID outside ISO/IEC 7816-4 §8.2.1.2's 5..=16 bytes.
    #[error("AID must be 5 to 16 bytes long, got {0}")]
    AidLength(usize),
    /// Text that is not hex.
    #[error("invalid hex: {0}")]
    Hex(String),
    /// A privilege name that is not known (see [`crate::privileges::Privilege`]).
    #[error("unknown privilege name '{0}'")]
    UnknownPrivilege(String),
    /// A privileges field that is neither 1 byte (GP 2.1.1) nor 3 bytes (GP 2.2+).
    #[error("privileges must be 1 or 3 bytes long, got {0}")]
    PrivilegesLength(usize),
    /// BER-TLV that `apdu::tlv` cannot decode.
    #[error("{context}: malformed TLV at offset {offset}: {kind}")]
    Tlv {
        /// The structure being read.
        context: &'static str,
        /// Offset of the offending byte within the buffer being read.
        offset: usize,
        /// What is wrong.
        kind: apdu::TlvErrorKind,
    },
    /// A mandatory data object is absent.
    #[error("{context}: missing mandatory tag {tag:02X}")]
    MissingTag {
        /// The structure being read.
        context: &'static str,
        /// The absent tag.
        tag: u32,
    },
    /// A tag where another was required.
    #[error("{context}: expected tag {expected:02X} at offset {offset}, found {found:02X}")]
    UnexpectedTag {
        /// The structure being read.
        context: &'static str,
        /// The tag required here.
        expected: u32,
        /// The tag found.
        found: u32,
        /// Offset of the tag.
        offset: usize,
    },
    /// A field with a length that is not allowed.
    #[error("{context}: {field} is {len} bytes long, expected {expected}")]
    FieldLength {
        /// The structure being read.
        context: &'static str,
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// What is allowed, in words.
        expected: &'static str,
    },
    /// Bytes end before a field does.
    #[error(
        "{context}: truncated at offset {offset} reading {field}: {needed} more byte(s) needed"
    )]
    Truncated {
        /// The structure being read.
        context: &'static str,
        /// The field being read.
        field: &'static str,
        /// Where reading stopped.
        offset: usize,
        /// How many bytes are missing.
        needed: usize,
    },
    /// Bytes left over after a complete structure.
    #[error("{context}: {count} unexpected trailing byte(s) at offset {offset}")]
    TrailingBytes {
        /// The structure being read.
        context: &'static str,
        /// Offset of the first extra byte.
        offset: usize,
        /// How many bytes are left.
        count: usize,
    },
    /// A field holding a value that is not allowed.
    #[error("{context}: invalid {field}: {reason}")]
    InvalidValue {
        /// The structure being read.
        context: &'static str,
        /// The field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A command with another instruction byte than the parser expected.
    #[error("expected {expected} (INS {expected_ins:02X}), got INS {ins:02X}")]
    WrongInstruction {
        /// The command expected.
        expected: &'static str,
        /// Its INS.
        expected_ins: u8,
        /// The INS received.
        ins: u8,
    },
    /// A command whose P1/P2 combination is not defined by the specification.
    #[error("{command}: unsupported P1 {p1:02X} / P2 {p2:02X}")]
    BadParameters {
        /// The command.
        command: &'static str,
        /// P1 received.
        p1: u8,
        /// P2 received.
        p2: u8,
    },
    /// An instruction byte that no GlobalPlatform command uses.
    #[error("INS {0:02X} is not a GlobalPlatform command")]
    UnknownInstruction(u8),
    /// A value too large to encode (e.g. more than 256 LOAD blocks).
    #[error("cannot encode: {0}")]
    Encoding(String),
    /// The card answered with a status word that the operation does not accept.
    #[error("card returned {0}")]
    Status(StatusWord),
    /// A CAP file or load file that cannot be read.
    #[error(transparent)]
    Cap(#[from] CapError),
    /// An APDU-level error.
    #[error(transparent)]
    Apdu(#[from] apdu::Error),
}

/// Shorthand for `Result<T, gp::Error>`.
pub type Result<T, E = Error> = core::result::Result<T, E>;
