//! ISO/IEC 7816-4 application protocol data units.
//!
//! * [`Command`]: a C-APDU in any of the four cases, short or extended (ISO/IEC 7816-4 §5.1).
//! * [`Response`]: an R-APDU, body plus [`StatusWord`] (§5.6), which [`Status`] views
//!   as an enum with value-carrying variants (`61xx`, `6Cxx`, `63Cx`).
//! * [`tlv`]: BER-TLV data objects (§5.2), owned ([`tlv::Tlv`]) and zero-copy
//!   ([`tlv::TlvRef`]).
//! * [`Command::chain`]: command chaining (§5.1.1.1).
//! * [`exchange`]: GET RESPONSE on `61xx` and resend on `6Cxx` around any
//!   transmit function.
//!
//! Everything here is pure: no I/O, no allocation beyond the buffers returned.
//! Parsers accept any bytes without panicking and say precisely what is wrong.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod command;
mod error;
mod exchange;
mod response;
mod status;
pub mod tlv;

pub use command::{Command, CLA_CHAINING};
pub use error::{Error, TlvErrorKind};
pub use exchange::{
    exchange, exchange_chained, exchange_with, ExchangeError, ExchangeOptions, GetResponseCla,
};
pub use response::Response;
pub use status::{Status, StatusWord};

/// Formats bytes as upper-case hex, the notation used in traces and errors.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    s
}

/// Parses hex, ignoring spaces, colons and underscores; upper or lower case.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, Error> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| !matches!(c, b' ' | b':' | b'_' | b'\t' | b'\n' | b'\r'))
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(Error::Hex("odd number of hex digits".into()));
    }
    let nibble = |c: u8| -> Result<u8, Error> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(Error::Hex(format!("'{}' is not a hex digit", c as char))),
        }
    };
    digits
        .chunks(2)
        .map(|p| Ok((nibble(p[0])? << 4) | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex(&[0x00, 0xA5, 0xff]), "00A5FF");
        assert_eq!(parse_hex("00 a5:FF").unwrap(), vec![0x00, 0xA5, 0xFF]);
        assert!(parse_hex("0").is_err());
        assert!(parse_hex("zz").is_err());
    }
}
