use thiserror::Error;

/// Why bytes could not be read as an APDU or TLV, or a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer than the four header bytes of a C-APDU.
    #[error("APDU too short: {0} bytes, at least 4 needed for CLA INS P1 P2")]
    CommandTooShort(usize),
    /// Fewer than the two status bytes of an R-APDU.
    #[error("R-APDU too short: {0} bytes, at least 2 needed for SW1 SW2")]
    ResponseTooShort(usize),
    /// The Lc/Le fields of a C-APDU do not add up to its size.
    #[error("APDU length fields do not match its size: {0}")]
    BadLength(String),
    /// More command data than an extended APDU can carry.
    #[error("command data of {0} bytes exceeds the extended APDU maximum of 65535")]
    DataTooLong(usize),
    /// Ne outside `1..=65536`.
    #[error("Le of {0} is out of range (1..=65536)")]
    BadLe(u32),
    /// Text that is not hex.
    #[error("invalid hex: {0}")]
    Hex(String),
    /// A free-form TLV problem found by a caller (for example a missing mandatory
    /// data object). The parsers in [`crate::tlv`] report [`Error::MalformedTlv`].
    #[error("malformed BER-TLV: {0}")]
    Tlv(String),
    /// Bytes that are not valid BER-TLV (ISO/IEC 7816-4 §5.2).
    #[error("malformed BER-TLV at offset {offset}: {kind}")]
    MalformedTlv {
        /// Where the problem starts, counted from the first byte given to the
        /// outermost parser (children report offsets in their parent's buffer).
        offset: usize,
        /// What is wrong there.
        kind: TlvErrorKind,
    },
    /// A number that is not the encoding of a BER-TLV tag of one to three bytes.
    #[error("{value:X} is not a valid BER-TLV tag: {reason}")]
    InvalidTag {
        /// The rejected value.
        value: u32,
        /// Which rule of ISO/IEC 7816-4 §5.2.2.1 it breaks.
        reason: &'static str,
    },
}

/// What is wrong with a BER-TLV encoding; carried by [`Error::MalformedTlv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TlvErrorKind {
    /// The data ends inside a tag field.
    #[error("data ends inside a tag field")]
    TruncatedTag,
    /// A first tag byte of `00` (§5.2.2.1: invalid, used for padding). (`FF` starts a
    /// multi-byte tag such as `FF21`; see [`crate::tlv`].)
    #[error("tag byte {0:02X} is padding, not a tag")]
    PaddingAsTag(u8),
    /// A second tag byte of `80`: a leading zero 7-bit group (ISO/IEC 8825-1 §8.1.2.4.2).
    #[error("invalid second tag byte {0:02X}")]
    InvalidTagByte(u8),
    /// A tag of more than three bytes.
    #[error("tag longer than three bytes")]
    TagTooLong,
    /// The data ends inside a length field.
    #[error("data ends inside a length field")]
    TruncatedLength,
    /// The indefinite length `80`, which ISO/IEC 7816-4 does not use.
    #[error("indefinite length (80) is not allowed")]
    IndefiniteLength,
    /// A length field starting with `85`–`FF` (§5.2.2.2 allows up to `84`).
    #[error("length field starts with {0:02X}; at most 84 (four length bytes) is allowed")]
    LengthTooLong(u8),
    /// The value field is shorter than its length field says.
    #[error("value of {declared} bytes declared, only {available} present")]
    TruncatedValue {
        /// The length field's value.
        declared: usize,
        /// Bytes left after the length field.
        available: usize,
    },
    /// Bytes left over after a data object that should have been the only one.
    #[error("{0} unexpected bytes after the data object")]
    TrailingBytes(usize),
    /// Children were asked of a primitive data object (tag bit b6 = 0).
    #[error("primitive data object has no children")]
    NotConstructed,
}
