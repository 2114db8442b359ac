use thiserror::Error;

/// Why bytes could not be read as an APDU or TLV, or a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("APDU too short: {0} bytes, at least 4 needed for CLA INS P1 P2")]
    CommandTooShort(usize),
    #[error("R-APDU too short: {0} bytes, at least 2 needed for SW1 SW2")]
    ResponseTooShort(usize),
    #[error("APDU length fields do not match its size: {0}")]
    BadLength(String),
    #[error("command data of {0} bytes exceeds the extended APDU maximum of 65535")]
    DataTooLong(usize),
    #[error("Le of {0} is out of range (1..=65536)")]
    BadLe(u32),
    #[error("invalid hex: {0}")]
    Hex(String),
    #[error("malformed BER-TLV: {0}")]
    Tlv(String),
}
