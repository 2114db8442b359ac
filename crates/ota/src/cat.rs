//! Card application toolkit, ETSI TS 102 223 / 3GPP TS 31.111: what the OTA download
//! flow between a handset and a UICC needs.
//!
//! * COMPREHENSION-TLV ([`Ctlv`], [`ComprehensionTag`], [`parse_ctlvs`], [`encode_ctlvs`]):
//!   written by hand rather than with [`apdu::tlv`], because ETSI TS 101 220 §7.1.1 tags
//!   are not BER tags: bit 8 of a one-byte tag is the comprehension-required (CR) flag,
//!   not part of a class; a first byte whose low five bits are `11111` (`1F` item icon
//!   identifier list, `9F` with CR, `3F`, `BF`…) is a complete tag, not the start of a
//!   multi-byte BER tag; and the three-byte form is `7F` followed by CR + a 15-bit value.
//!   Lengths follow 101 220 §7.1.2 / 102 223 annex C (`00`-`7F`, `81 xx`, `82 xxxx`,
//!   `83 xxxxxx`, always minimal).
//! * The outer BER-TLV of proactive commands (`D0`) and ENVELOPEs (`D1`, `D3`, `D6`, …) is
//!   read with [`apdu::tlv`]; its length is one byte or `81 xx` (102 223 annex C).
//! * [`ProactiveCommand`] (parse and build): SET UP MENU, SEND SHORT MESSAGE, OPEN CHANNEL
//!   (default network bearer / packet bearers, TCP or UDP client), SEND DATA, RECEIVE
//!   DATA, CLOSE CHANNEL; other commands are kept as their objects.
//! * [`Envelope`]: SMS-PP download (31.111 §7.1.1), menu selection (102 223 §7.3),
//!   event download: data available and channel status (§7.5.10, §7.5.11).
//! * [`TerminalResponse`] (102 223 §6.8) and [`TerminalProfile`] (§5.2).
//! * Status words around ENVELOPE (SMS-PP download) for a handset: [`sms_pp_outcome`].
//!
//! Typed objects are encoded with CR set, except the items next action indicator,
//! matching the "comprehension required" column of 102 223 §6.6; objects kept as raw
//! [`Ctlv`]s keep their own CR bit. Decoders look objects up by tag value whatever their
//! CR bit, and keep objects they have no field for in `other`, in order.

use crate::tpdu::{self, Npi, SmsDeliver, SmsDeliverReport, SmsSubmit, Ton};
use apdu::tlv::{self as ber, Tag};
use std::net::{Ipv4Addr, Ipv6Addr};

/// What went wrong in a CAT codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ends inside the named item.
    #[error("truncated: input ends inside {0}")]
    Truncated(&'static str),
    /// Bytes left after the last item.
    #[error("{0} byte(s) after the end")]
    TrailingBytes(usize),
    /// A COMPREHENSION-TLV tag that 101 220 §7.1.1 forbids.
    #[error("invalid comprehension tag: {0}")]
    InvalidTag(&'static str),
    /// A length field that is not minimal, or too long for its context.
    #[error("invalid length field: {0}")]
    InvalidLength(&'static str),
    /// The outer BER-TLV is malformed.
    #[error("outer BER-TLV: {0}")]
    Ber(String),
    /// The outer BER-TLV tag is not the one expected.
    #[error("BER-TLV tag {found:02X} where {expected} was expected")]
    UnexpectedTag {
        /// What was expected.
        expected: &'static str,
        /// The tag read (its first byte).
        found: u8,
    },
    /// A mandatory data object is absent.
    #[error("mandatory data object missing: {0}")]
    Missing(&'static str),
    /// A data object whose value is malformed.
    #[error("invalid {object}: {reason}")]
    Invalid {
        /// Which data object.
        object: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// Device identities other than the ones the message requires.
    #[error("device identities {found:02X?} where {expected:02X?} are required")]
    WrongDevices {
        /// Source and destination required.
        expected: [u8; 2],
        /// Source and destination read.
        found: [u8; 2],
    },
    /// The command type of the command details does not match the command.
    #[error("command type {0:#04x} does not match the command")]
    WrongCommandType(u8),
    /// An SMS TPDU inside a data object.
    #[error("SMS TPDU: {0}")]
    Tpdu(#[from] tpdu::Error),
}

type Result<T> = core::result::Result<T, Error>;

// ---------------------------------------------------------------------------------------
// COMPREHENSION-TLV (ETSI TS 101 220 §7.1.1, §7.1.2; 102 223 annex C)
// ---------------------------------------------------------------------------------------

/// Tag values (without the CR bit) of 102 223 §9.3 / 101 220 §7.2.
pub mod tag {
    /// Command details (§8.6).
    pub const COMMAND_DETAILS: u16 = 0x01;
    /// Device identities (§8.7).
    pub const DEVICE_IDENTITIES: u16 = 0x02;
    /// Result (§8.12).
    pub const RESULT: u16 = 0x03;
    /// Alpha identifier (§8.2).
    pub const ALPHA_IDENTIFIER: u16 = 0x05;
    /// Address (§8.1).
    pub const ADDRESS: u16 = 0x06;
    /// SMS TPDU (31.111 §8.13).
    pub const SMS_TPDU: u16 = 0x0B;
    /// Text string (§8.15).
    pub const TEXT_STRING: u16 = 0x0D;
    /// Item (§8.9).
    pub const ITEM: u16 = 0x0F;
    /// Item identifier (§8.10).
    pub const ITEM_IDENTIFIER: u16 = 0x10;
    /// Help request (§8.21).
    pub const HELP_REQUEST: u16 = 0x15;
    /// Items next action indicator (§8.24).
    pub const ITEMS_NEXT_ACTION_INDICATOR: u16 = 0x18;
    /// Event list (§8.25).
    pub const EVENT_LIST: u16 = 0x19;
    /// Icon identifier (§8.31).
    pub const ICON_IDENTIFIER: u16 = 0x1E;
    /// Item icon identifier list (§8.32).
    pub const ITEM_ICON_IDENTIFIER_LIST: u16 = 0x1F;
    /// Bearer description (§8.52).
    pub const BEARER_DESCRIPTION: u16 = 0x35;
    /// Channel data (§8.53).
    pub const CHANNEL_DATA: u16 = 0x36;
    /// Channel data length (§8.54).
    pub const CHANNEL_DATA_LENGTH: u16 = 0x37;
    /// Channel status (§8.56).
    pub const CHANNEL_STATUS: u16 = 0x38;
    /// Buffer size (§8.55).
    pub const BUFFER_SIZE: u16 = 0x39;
    /// UICC/terminal interface transport level (§8.59).
    pub const TRANSPORT_LEVEL: u16 = 0x3C;
    /// Other address (§8.58).
    pub const OTHER_ADDRESS: u16 = 0x3E;
    /// Network access name (§8.70).
    pub const NETWORK_ACCESS_NAME: u16 = 0x47;
    /// Text attribute (§8.72).
    pub const TEXT_ATTRIBUTE: u16 = 0x50;
    /// Item text attribute list (§8.73).
    pub const ITEM_TEXT_ATTRIBUTE_LIST: u16 = 0x51;
}

/// A COMPREHENSION-TLV tag: a value of 1-`7E` (one byte) or `7F`-`7FFF` (three bytes,
/// `7F` first), and the comprehension-required flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComprehensionTag {
    /// The tag value without the CR bit.
    pub value: u16,
    /// The CR bit: the receiver must understand the object.
    pub comprehension_required: bool,
}

impl ComprehensionTag {
    /// A tag with CR set.
    pub const fn required(value: u16) -> Self {
        Self {
            value,
            comprehension_required: true,
        }
    }

    /// A tag with CR clear.
    pub const fn optional(value: u16) -> Self {
        Self {
            value,
            comprehension_required: false,
        }
    }

    fn encode_into(self, out: &mut Vec<u8>) -> Result<()> {
        let cr = u8::from(self.comprehension_required) << 7;
        match self.value {
            1..=0x7E => out.push(cr | self.value as u8),
            0x7F..=0x7FFF => {
                let [h, l] = self.value.to_be_bytes();
                out.extend_from_slice(&[0x7F, cr | h, l]);
            }
            _ => return Err(Error::InvalidTag("value 0 or above 7FFF")),
        }
        Ok(())
    }

    /// Reads a tag at the start of `bytes`; the tag and the bytes used. Rejects `00`,
    /// `80`, `FF` and the three-byte form of values that have a one-byte form.
    pub fn parse(bytes: &[u8]) -> Result<(Self, usize)> {
        let first = *bytes.first().ok_or(Error::Truncated("tag"))?;
        match first {
            0x00 | 0x80 | 0xFF => Err(Error::InvalidTag("00, 80 and FF are not tags")),
            0x7F => {
                let b = bytes.get(1..3).ok_or(Error::Truncated("three-byte tag"))?;
                let value = u16::from_be_bytes([b[0] & 0x7F, b[1]]);
                if value < 0x7F {
                    return Err(Error::InvalidTag("three-byte form of a one-byte tag value"));
                }
                Ok((
                    Self {
                        value,
                        comprehension_required: b[0] & 0x80 != 0,
                    },
                    3,
                ))
            }
            _ => Ok((
                Self {
                    value: u16::from(first & 0x7F),
                    comprehension_required: first & 0x80 != 0,
                },
                1,
            )),
        }
    }
}

/// A COMPREHENSION-TLV data object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ctlv {
    /// The tag.
    pub tag: ComprehensionTag,
    /// The value (at most `FFFFFF` octets).
    pub value: Vec<u8>,
}

impl Ctlv {
    /// An object with CR set.
    pub fn required(tag: u16, value: impl Into<Vec<u8>>) -> Self {
        Self {
            tag: ComprehensionTag::required(tag),
            value: value.into(),
        }
    }

    /// An object with CR clear.
    pub fn optional(tag: u16, value: impl Into<Vec<u8>>) -> Self {
        Self {
            tag: ComprehensionTag::optional(tag),
            value: value.into(),
        }
    }

    /// Appends the encoding.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        self.tag.encode_into(out)?;
        encode_length(self.value.len(), out)?;
        out.extend_from_slice(&self.value);
        Ok(())
    }

    /// Reads one object at the start of `bytes`; it and the bytes used.
    pub fn parse_prefix(bytes: &[u8]) -> Result<(Self, usize)> {
        let (tag, t) = ComprehensionTag::parse(bytes)?;
        let (len, l) = read_length(&bytes[t..])?;
        let start = t + l;
        let value = bytes
            .get(start..start + len)
            .ok_or(Error::Truncated("value"))?
            .to_vec();
        Ok((Self { tag, value }, start + len))
    }
}

/// Appends a length field, minimal (101 220 §7.1.2).
fn encode_length(n: usize, out: &mut Vec<u8>) -> Result<()> {
    match n {
        0..=0x7F => out.push(n as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, n as u8]),
        0x100..=0xFFFF => {
            out.push(0x82);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0x83);
            out.extend_from_slice(&(n as u32).to_be_bytes()[1..]);
        }
        _ => return Err(Error::InvalidLength("above FFFFFF")),
    }
    Ok(())
}

/// Reads a length field (minimal forms only); the length and the bytes used.
fn read_length(bytes: &[u8]) -> Result<(usize, usize)> {
    let first = *bytes.first().ok_or(Error::Truncated("length"))?;
    let n = match first {
        0x00..=0x7F => return Ok((usize::from(first), 1)),
        0x81 => 1,
        0x82 => 2,
        0x83 => 3,
        _ => return Err(Error::InvalidLength("first byte 80 or above 83")),
    };
    let b = bytes.get(1..1 + n).ok_or(Error::Truncated("length"))?;
    let len = b.iter().fold(0usize, |a, &x| a << 8 | usize::from(x));
    let min = [0x80, 0x100, 0x1_0000][n - 1];
    if len < min {
        return Err(Error::InvalidLength("not minimal"));
    }
    Ok((len, 1 + n))
}

/// Parses a sequence of COMPREHENSION-TLVs filling `bytes` exactly.
pub fn parse_ctlvs(bytes: &[u8]) -> Result<Vec<Ctlv>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let (c, used) = Ctlv::parse_prefix(&bytes[pos..])?;
        out.push(c);
        pos += used;
    }
    Ok(out)
}

/// Encodes a sequence of COMPREHENSION-TLVs.
pub fn encode_ctlvs(objects: &[Ctlv]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for c in objects {
        c.encode_into(&mut out)?;
    }
    Ok(out)
}

/// Wraps `objects` in the outer BER-TLV `tag` (`D0`, `D1`, …), whose length must fit
/// `81 xx` (102 223 annex C).
fn wrap_ber(tag: u8, objects: &[Ctlv]) -> Result<Vec<u8>> {
    let inner = encode_ctlvs(objects)?;
    if inner.len() > 0xFF {
        return Err(Error::InvalidLength("BER-TLV value above 255 octets"));
    }
    Ok(ber::encode(Tag::new(u32::from(tag)), &inner))
}

/// Reads the outer BER-TLV (one-byte tag `C0`-`DF`-like, length `00`-`7F` or `81 xx`)
/// filling `bytes`; its tag byte and its COMPREHENSION-TLVs.
fn unwrap_ber(bytes: &[u8]) -> Result<(u8, Vec<Ctlv>)> {
    let (tag, t) = Tag::parse(bytes).map_err(|e| Error::Ber(e.to_string()))?;
    if t != 1 {
        return Err(Error::Ber("multi-byte tag".into()));
    }
    let (len, l) = ber::read_length(&bytes[1..]).map_err(|e| Error::Ber(e.to_string()))?;
    if l > 2 || (l == 2 && len < 0x80) {
        return Err(Error::InvalidLength("BER-TLV length not `xx` or `81 xx`"));
    }
    let value = bytes
        .get(1 + l..1 + l + len)
        .ok_or(Error::Truncated("BER-TLV value"))?;
    if bytes.len() > 1 + l + len {
        return Err(Error::TrailingBytes(bytes.len() - 1 - l - len));
    }
    Ok((tag.value() as u8, parse_ctlvs(value)?))
}

// ---------------------------------------------------------------------------------------
// Simple data objects (102 223 §8)
// ---------------------------------------------------------------------------------------

/// A device identity (§8.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// `01`.
    Keypad,
    /// `02`.
    Display,
    /// `03`.
    Earpiece,
    /// `10`-`17`: additional card reader 0-7.
    CardReader(u8),
    /// `21`-`27`: channel 1-7.
    Channel(u8),
    /// `81`.
    Uicc,
    /// `82`.
    Terminal,
    /// `83`.
    Network,
    /// Any other value.
    Other(u8),
}

impl Device {
    /// From its byte.
    pub fn from_byte(b: u8) -> Self {
        match b {
            0x01 => Self::Keypad,
            0x02 => Self::Display,
            0x03 => Self::Earpiece,
            0x10..=0x17 => Self::CardReader(b & 7),
            0x21..=0x27 => Self::Channel(b & 7),
            0x81 => Self::Uicc,
            0x82 => Self::Terminal,
            0x83 => Self::Network,
            _ => Self::Other(b),
        }
    }

    /// Its byte.
    pub fn byte(self) -> u8 {
        match self {
            Self::Keypad => 0x01,
            Self::Display => 0x02,
            Self::Earpiece => 0x03,
            Self::CardReader(n) => 0x10 | (n & 7),
            Self::Channel(n) => 0x20 | (n & 7),
            Self::Uicc => 0x81,
            Self::Terminal => 0x82,
            Self::Network => 0x83,
            Self::Other(b) => b,
        }
    }
}

/// Device identities (§8.7): source and destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceIdentities {
    /// Source device.
    pub source: Device,
    /// Destination device.
    pub destination: Device,
}

impl DeviceIdentities {
    /// Source and destination.
    pub fn new(source: Device, destination: Device) -> Self {
        Self {
            source,
            destination,
        }
    }
    fn to_ctlv(self) -> Ctlv {
        Ctlv::required(
            tag::DEVICE_IDENTITIES,
            [self.source.byte(), self.destination.byte()],
        )
    }
    fn from_value(v: &[u8]) -> Result<Self> {
        match v {
            [s, d] => Ok(Self::new(Device::from_byte(*s), Device::from_byte(*d))),
            _ => Err(Error::Invalid {
                object: "device identities",
                reason: "length is not 2",
            }),
        }
    }
    fn bytes(self) -> [u8; 2] {
        [self.source.byte(), self.destination.byte()]
    }
}

/// Command details (§8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandDetails {
    /// Command number (`01`-`FE`).
    pub number: u8,
    /// Type of command (§9.4), for example [`command_type::OPEN_CHANNEL`].
    pub type_of_command: u8,
    /// Command qualifier.
    pub qualifier: u8,
}

impl CommandDetails {
    fn to_ctlv(self) -> Ctlv {
        Ctlv::required(
            tag::COMMAND_DETAILS,
            [self.number, self.type_of_command, self.qualifier],
        )
    }
    fn from_value(v: &[u8]) -> Result<Self> {
        match v {
            [n, t, q] => Ok(Self {
                number: *n,
                type_of_command: *t,
                qualifier: *q,
            }),
            _ => Err(Error::Invalid {
                object: "command details",
                reason: "length is not 3",
            }),
        }
    }
}

/// Type-of-command values (102 223 §9.4).
pub mod command_type {
    /// REFRESH.
    pub const REFRESH: u8 = 0x01;
    /// MORE TIME.
    pub const MORE_TIME: u8 = 0x02;
    /// SET UP EVENT LIST.
    pub const SET_UP_EVENT_LIST: u8 = 0x05;
    /// SEND SHORT MESSAGE.
    pub const SEND_SHORT_MESSAGE: u8 = 0x13;
    /// DISPLAY TEXT.
    pub const DISPLAY_TEXT: u8 = 0x21;
    /// SELECT ITEM.
    pub const SELECT_ITEM: u8 = 0x24;
    /// SET UP MENU.
    pub const SET_UP_MENU: u8 = 0x25;
    /// PROVIDE LOCAL INFORMATION.
    pub const PROVIDE_LOCAL_INFORMATION: u8 = 0x26;
    /// OPEN CHANNEL.
    pub const OPEN_CHANNEL: u8 = 0x40;
    /// CLOSE CHANNEL.
    pub const CLOSE_CHANNEL: u8 = 0x41;
    /// RECEIVE DATA.
    pub const RECEIVE_DATA: u8 = 0x42;
    /// SEND DATA.
    pub const SEND_DATA: u8 = 0x43;
    /// GET CHANNEL STATUS.
    pub const GET_CHANNEL_STATUS: u8 = 0x44;
}

/// An alpha identifier or item text (§8.2, coded as the alpha field of EF ADN, 31.102
/// annex A / 102 221 annex A): GSM default alphabet in 8-bit bytes, or UCS2 in the `80`,
/// `81` or `82` forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AlphaId(pub Vec<u8>);

impl AlphaId {
    /// Codes `text` in the GSM default alphabet (bit 8 = 0) when it can, otherwise UCS2
    /// with the `80` prefix.
    pub fn from_text(text: &str) -> Self {
        match tpdu::gsm7_encode(text) {
            Ok(septets) => Self(septets),
            Err(_) => {
                let mut v = vec![0x80];
                for u in text.encode_utf16() {
                    v.extend_from_slice(&u.to_be_bytes());
                }
                Self(v)
            }
        }
    }

    /// The text; unknown or malformed UCS2 is replaced, `FF` padding dropped.
    pub fn text(&self) -> String {
        let b = &self.0;
        match b.first() {
            Some(0x80) => {
                let units: Vec<u16> = b[1..]
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .take_while(|u| *u != 0xFFFF)
                    .collect();
                String::from_utf16_lossy(&units)
            }
            Some(&f @ (0x81 | 0x82)) => {
                let (n, base, chars) = if f == 0x81 {
                    let Some(&[n, b1]) = b.get(1..3) else {
                        return String::new();
                    };
                    (n, u16::from(b1) << 7, &b[3..])
                } else {
                    let Some(&[n, h, l]) = b.get(1..4) else {
                        return String::new();
                    };
                    (n, u16::from_be_bytes([h, l]), &b[4..])
                };
                let mut s = String::new();
                for &c in chars.iter().take(usize::from(n)) {
                    if c < 0x80 {
                        s.push_str(&tpdu::gsm7_decode(&[c]));
                    } else {
                        let u = base.wrapping_add(u16::from(c & 0x7F));
                        s.push(char::from_u32(u32::from(u)).unwrap_or('\u{FFFD}'));
                    }
                }
                s
            }
            _ => {
                let end = b.iter().position(|&x| x == 0xFF).unwrap_or(b.len());
                tpdu::gsm7_decode(&b[..end])
            }
        }
    }
}

/// A text string (§8.15): data coding scheme and the string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TextString {
    /// Data coding scheme (23.038): `00` packed 7-bit, `04` 8-bit, `08` UCS2.
    pub dcs: u8,
    /// The coded string.
    pub text: Vec<u8>,
}

impl TextString {
    /// An 8-bit (unpacked GSM default alphabet) string, DCS `04`.
    pub fn gsm8(text: &str) -> Result<Self> {
        Ok(Self {
            dcs: 0x04,
            text: tpdu::gsm7_encode(text)?,
        })
    }
    fn to_ctlv(&self) -> Ctlv {
        let mut v = vec![self.dcs];
        v.extend_from_slice(&self.text);
        Ctlv::required(tag::TEXT_STRING, v)
    }
    fn from_value(v: &[u8]) -> Result<Self> {
        let (&dcs, text) = v.split_first().ok_or(Error::Invalid {
            object: "text string",
            reason: "no data coding scheme",
        })?;
        Ok(Self {
            dcs,
            text: text.to_vec(),
        })
    }
}

/// An address (§8.1): type of number, numbering plan and BCD digits (EF ADN coding, `F`
/// filler), without a length in digits. Digits as in [`tpdu::AddressValue::Digits`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CatAddress {
    /// Type of number.
    pub ton: Ton,
    /// Numbering plan.
    pub npi: Npi,
    /// The digits.
    pub digits: String,
}

impl CatAddress {
    /// An international ISDN number.
    pub fn international(digits: &str) -> Self {
        Self {
            ton: Ton::International,
            npi: Npi::Isdn,
            digits: digits.to_owned(),
        }
    }
    fn to_ctlv(&self) -> Result<Ctlv> {
        let mut v = vec![tpdu::type_of_address(self.ton, self.npi)];
        v.extend_from_slice(&tpdu::encode_semi_octets(&self.digits)?);
        Ok(Ctlv::required(tag::ADDRESS, v))
    }
    fn from_value(v: &[u8]) -> Result<Self> {
        let (&toa, bcd) = v.split_first().ok_or(Error::Invalid {
            object: "address",
            reason: "no type of number",
        })?;
        let count = 2 * bcd.len() - usize::from(bcd.last().is_some_and(|b| b >> 4 == 0xF));
        Ok(Self {
            ton: Ton::from_bits(toa >> 4),
            npi: Npi::from_bits(toa),
            digits: tpdu::decode_semi_octets(bcd, count)?,
        })
    }
}

/// A menu item (§8.9): identifier and text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MenuItem {
    /// Item identifier (`01`-`FF`).
    pub id: u8,
    /// Item text, coded as an alpha identifier.
    pub text: AlphaId,
}

/// Bearer type values (§8.52, 31.111 §8.52).
pub mod bearer_type {
    /// CSD (31.111).
    pub const CSD: u8 = 0x01;
    /// GPRS / UTRAN packet service (31.111).
    pub const GPRS: u8 = 0x02;
    /// Default bearer for the requested transport layer.
    pub const DEFAULT: u8 = 0x03;
    /// Local link technology independent.
    pub const LOCAL_LINK: u8 = 0x04;
    /// Bluetooth.
    pub const BLUETOOTH: u8 = 0x05;
    /// IrDA.
    pub const IRDA: u8 = 0x06;
    /// RS232.
    pub const RS232: u8 = 0x07;
    /// UTRAN packet service with extended parameters / HSDPA / E-UTRAN (31.111).
    pub const PACKET_EXTENDED: u8 = 0x09;
    /// E-UTRAN / mapped UTRAN packet service (31.111).
    pub const EUTRAN: u8 = 0x0B;
    /// NG-RAN (31.111).
    pub const NG_RAN: u8 = 0x0C;
}

/// Bearer description (§8.52): type and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BearerDescription {
    /// Bearer type, see [`bearer_type`].
    pub bearer_type: u8,
    /// Bearer parameters (empty for the default bearer).
    pub parameters: Vec<u8>,
}

impl BearerDescription {
    /// The default network bearer (`03`, no parameters).
    pub fn default_bearer() -> Self {
        Self {
            bearer_type: bearer_type::DEFAULT,
            parameters: Vec::new(),
        }
    }
    fn to_ctlv(&self) -> Ctlv {
        let mut v = vec![self.bearer_type];
        v.extend_from_slice(&self.parameters);
        Ctlv::required(tag::BEARER_DESCRIPTION, v)
    }
    fn from_value(v: &[u8]) -> Result<Self> {
        let (&t, p) = v.split_first().ok_or(Error::Invalid {
            object: "bearer description",
            reason: "empty",
        })?;
        Ok(Self {
            bearer_type: t,
            parameters: p.to_vec(),
        })
    }
}

/// Transport protocol types (§8.59).
pub mod transport_protocol {
    /// UDP, UICC in client mode, remote connection.
    pub const UDP_CLIENT_REMOTE: u8 = 0x01;
    /// TCP, UICC in client mode, remote connection.
    pub const TCP_CLIENT_REMOTE: u8 = 0x02;
    /// TCP, UICC in server mode.
    pub const TCP_SERVER: u8 = 0x03;
    /// UDP, UICC in client mode, local connection.
    pub const UDP_CLIENT_LOCAL: u8 = 0x04;
    /// TCP, UICC in client mode, local connection.
    pub const TCP_CLIENT_LOCAL: u8 = 0x05;
    /// Direct communication channel.
    pub const DIRECT: u8 = 0x06;
}

/// UICC/terminal interface transport level (§8.59).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportLevel {
    /// Protocol type, see [`transport_protocol`].
    pub protocol: u8,
    /// Port number, absent for protocols without one.
    pub port: Option<u16>,
}

impl TransportLevel {
    /// TCP, UICC in client mode, remote connection, to `port`.
    pub fn tcp_client(port: u16) -> Self {
        Self {
            protocol: transport_protocol::TCP_CLIENT_REMOTE,
            port: Some(port),
        }
    }
    fn to_ctlv(self) -> Ctlv {
        let mut v = vec![self.protocol];
        if let Some(p) = self.port {
            v.extend_from_slice(&p.to_be_bytes());
        }
        Ctlv::required(tag::TRANSPORT_LEVEL, v)
    }
    fn from_value(v: &[u8]) -> Result<Self> {
        match v {
            [p] => Ok(Self {
                protocol: *p,
                port: None,
            }),
            [p, h, l] => Ok(Self {
                protocol: *p,
                port: Some(u16::from_be_bytes([*h, *l])),
            }),
            _ => Err(Error::Invalid {
                object: "transport level",
                reason: "length is not 1 or 3",
            }),
        }
    }
}

/// Other address (§8.58): local address or data destination address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OtherAddress {
    /// Empty value: dynamic local address requested.
    Empty,
    /// Type `21`, four octets.
    Ipv4(Ipv4Addr),
    /// Type `57`, sixteen octets.
    Ipv6(Ipv6Addr),
    /// Any other type, or a length that does not fit the type.
    Other {
        /// Type of address.
        kind: u8,
        /// The address.
        address: Vec<u8>,
    },
}

impl OtherAddress {
    fn to_ctlv(&self) -> Ctlv {
        let v = match self {
            Self::Empty => Vec::new(),
            Self::Ipv4(a) => [&[0x21][..], &a.octets()].concat(),
            Self::Ipv6(a) => [&[0x57][..], &a.octets()].concat(),
            Self::Other { kind, address } => [&[*kind][..], address].concat(),
        };
        Ctlv::required(tag::OTHER_ADDRESS, v)
    }
    fn from_value(v: &[u8]) -> Self {
        match v.split_first() {
            None => Self::Empty,
            Some((0x21, a)) if a.len() == 4 => {
                Self::Ipv4(Ipv4Addr::from(<[u8; 4]>::try_from(a).expect("4")))
            }
            Some((0x57, a)) if a.len() == 16 => {
                Self::Ipv6(Ipv6Addr::from(<[u8; 16]>::try_from(a).expect("16")))
            }
            Some((k, a)) => Self::Other {
                kind: *k,
                address: a.to_vec(),
            },
        }
    }
}

/// Network access name (§8.70): DNS labels, each with its length (23.003 §9.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkAccessName(pub Vec<u8>);

impl NetworkAccessName {
    /// From a dotted name such as `internet.example`.
    pub fn from_dotted(name: &str) -> Result<Self> {
        let mut v = Vec::new();
        for label in name.split('.') {
            let len = u8::try_from(label.len())
                .ok()
                .filter(|l| (1..=63).contains(l))
                .ok_or(Error::Invalid {
                    object: "network access name",
                    reason: "label empty or longer than 63",
                })?;
            v.push(len);
            v.extend_from_slice(label.as_bytes());
        }
        Ok(Self(v))
    }

    /// The dotted name, `None` if the labels are malformed.
    pub fn to_dotted(&self) -> Option<String> {
        let mut labels = Vec::new();
        let mut rest = &self.0[..];
        while let Some((&n, tail)) = rest.split_first() {
            let label = tail.get(..usize::from(n))?;
            labels.push(String::from_utf8_lossy(label).into_owned());
            rest = &tail[usize::from(n)..];
        }
        Some(labels.join("."))
    }
}

/// Channel status (§8.56, 31.111 §8.56): two octets, decoded by the methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelStatus(pub [u8; 2]);

impl ChannelStatus {
    /// Channel `channel_id` (1-7), link established or not, further information
    /// (`00` none, `05` link dropped, …).
    pub fn new(channel_id: u8, link_established: bool, further_info: u8) -> Self {
        Self([
            (channel_id & 7) | u8::from(link_established) << 7,
            further_info,
        ])
    }
    /// The channel identifier (bits 1-3 of the first octet; 0: no channel).
    pub fn channel_id(self) -> u8 {
        self.0[0] & 7
    }
    /// Bit 8 of the first octet: the link / PDP context is established (client modes).
    pub fn link_established(self) -> bool {
        self.0[0] & 0x80 != 0
    }
    /// The second octet: further information.
    pub fn further_info(self) -> u8 {
        self.0[1]
    }
    fn to_ctlv(self) -> Ctlv {
        Ctlv::required(tag::CHANNEL_STATUS, self.0)
    }
    fn from_value(v: &[u8]) -> Result<Self> {
        <[u8; 2]>::try_from(v)
            .map(Self)
            .map_err(|_| Error::Invalid {
                object: "channel status",
                reason: "length is not 2",
            })
    }
}

/// General result (§8.12), with the usual values as constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResultCode(pub u8);

impl ResultCode {
    /// `00`: command performed successfully.
    pub const SUCCESS: Self = Self(0x00);
    /// `01`: performed with partial comprehension.
    pub const PARTIAL_COMPREHENSION: Self = Self(0x01);
    /// `02`: performed, with missing information.
    pub const MISSING_INFORMATION: Self = Self(0x02);
    /// `07`: performed with modification (e.g. another buffer size).
    pub const PERFORMED_WITH_MODIFICATION: Self = Self(0x07);
    /// `10`: proactive session terminated by the user.
    pub const TERMINATED_BY_USER: Self = Self(0x10);
    /// `11`: backward move requested by the user.
    pub const BACKWARD_MOVE: Self = Self(0x11);
    /// `12`: no response from the user.
    pub const NO_RESPONSE: Self = Self(0x12);
    /// `20`: terminal currently unable to process the command (additional info).
    pub const TERMINAL_UNABLE: Self = Self(0x20);
    /// `21`: network currently unable to process the command.
    pub const NETWORK_UNABLE: Self = Self(0x21);
    /// `22`: user did not accept the proactive command.
    pub const USER_REJECTED: Self = Self(0x22);
    /// `30`: command beyond the terminal's capabilities.
    pub const BEYOND_CAPABILITIES: Self = Self(0x30);
    /// `31`: command type not understood.
    pub const TYPE_NOT_UNDERSTOOD: Self = Self(0x31);
    /// `32`: command data not understood.
    pub const DATA_NOT_UNDERSTOOD: Self = Self(0x32);
    /// `35`: SMS RP-ERROR.
    pub const SMS_RP_ERROR: Self = Self(0x35);
    /// `36`: error, required values are missing.
    pub const REQUIRED_VALUES_MISSING: Self = Self(0x36);
    /// `3A`: Bearer Independent Protocol error (additional info: `00` no cause, `01` no
    /// channel available, `02` channel closed, `03` identifier not valid, `04` buffer
    /// size not available, `05` security error, `06` transport level not available, …).
    pub const BIP_ERROR: Self = Self(0x3A);

    /// `0x`: the command was performed.
    pub fn is_success(self) -> bool {
        self.0 < 0x10
    }
    /// `2x`: a temporary problem; the UICC may try again.
    pub fn is_temporary(self) -> bool {
        self.0 & 0xF0 == 0x20
    }
}

/// Result (§8.12): general result and additional information.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CatResult {
    /// General result.
    pub general: ResultCode,
    /// Additional information (for example the cause of a `20` or `3A`).
    pub additional: Vec<u8>,
}

impl CatResult {
    /// Success without additional information.
    pub fn success() -> Self {
        Self {
            general: ResultCode::SUCCESS,
            additional: Vec::new(),
        }
    }
    /// A result with additional information.
    pub fn new(general: ResultCode, additional: Vec<u8>) -> Self {
        Self {
            general,
            additional,
        }
    }
    fn to_ctlv(&self) -> Ctlv {
        let mut v = vec![self.general.0];
        v.extend_from_slice(&self.additional);
        Ctlv::required(tag::RESULT, v)
    }
    fn from_value(v: &[u8]) -> Result<Self> {
        let (&g, a) = v.split_first().ok_or(Error::Invalid {
            object: "result",
            reason: "empty",
        })?;
        Ok(Self::new(ResultCode(g), a.to_vec()))
    }
}

/// Event values of the event list (§8.25).
pub mod event {
    /// Data available (BIP).
    pub const DATA_AVAILABLE: u8 = 0x09;
    /// Channel status (BIP).
    pub const CHANNEL_STATUS: u8 = 0x0A;
}

fn single_byte(object: &'static str, v: &[u8]) -> Result<u8> {
    match v {
        [b] => Ok(*b),
        _ => Err(Error::Invalid {
            object,
            reason: "length is not 1",
        }),
    }
}

fn buffer_size(v: &[u8]) -> Result<u16> {
    <[u8; 2]>::try_from(v)
        .map(u16::from_be_bytes)
        .map_err(|_| Error::Invalid {
            object: "buffer size",
            reason: "length is not 2",
        })
}

// ---------------------------------------------------------------------------------------
// Proactive commands (102 223 §6.6)
// ---------------------------------------------------------------------------------------

/// SET UP MENU (§6.6.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetUpMenu {
    /// The menu title.
    pub alpha: AlphaId,
    /// The items; empty removes the menu (one null item object, `8F 00`).
    pub items: Vec<MenuItem>,
    /// Items next action indicator (one command type per item), optional.
    pub next_actions: Option<Vec<u8>>,
    /// Other objects (icons, text attributes), encoded after the typed ones.
    pub other: Vec<Ctlv>,
}

/// SEND SHORT MESSAGE (§6.6.9, 31.111 §6.6.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendShortMessage {
    /// Alpha identifier, optional (an empty one asks for no display).
    pub alpha: Option<AlphaId>,
    /// The service centre address, optional.
    pub address: Option<CatAddress>,
    /// The SMS-SUBMIT. With qualifier bit 1 ("packing required") its 8-bit user data
    /// may hold up to 160 unpacked characters, which this codec accepts.
    pub tpdu: SmsSubmit,
    /// Other objects.
    pub other: Vec<Ctlv>,
}

/// OPEN CHANNEL (§6.6.27 default bearer / packet bearers; 31.111 §6.6.27).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenChannel {
    /// Alpha identifier, optional.
    pub alpha: Option<AlphaId>,
    /// Bearer description.
    pub bearer: BearerDescription,
    /// Buffer size the UICC asks for.
    pub buffer_size: u16,
    /// Network access name (packet bearers), optional.
    pub network_access_name: Option<NetworkAccessName>,
    /// Local address (the other address before the transport level), optional.
    pub local_address: Option<OtherAddress>,
    /// User login, optional.
    pub login: Option<TextString>,
    /// User password, optional.
    pub password: Option<TextString>,
    /// UICC/terminal interface transport level (TCP or UDP client, server).
    pub transport: Option<TransportLevel>,
    /// Data destination address (the other address after the transport level).
    pub destination: Option<OtherAddress>,
    /// Other objects.
    pub other: Vec<Ctlv>,
}

/// SEND DATA (§6.6.30).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendData {
    /// Alpha identifier, optional.
    pub alpha: Option<AlphaId>,
    /// Channel data.
    pub data: Vec<u8>,
    /// Other objects.
    pub other: Vec<Ctlv>,
}

/// RECEIVE DATA (§6.6.29).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveData {
    /// Alpha identifier, optional.
    pub alpha: Option<AlphaId>,
    /// Channel data length asked for.
    pub length: u8,
    /// Other objects.
    pub other: Vec<Ctlv>,
}

/// CLOSE CHANNEL (§6.6.28).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseChannel {
    /// Alpha identifier, optional.
    pub alpha: Option<AlphaId>,
    /// Other objects.
    pub other: Vec<Ctlv>,
}

/// The command-specific part of a proactive command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    /// SET UP MENU (`25`).
    SetUpMenu(SetUpMenu),
    /// SEND SHORT MESSAGE (`13`).
    SendShortMessage(SendShortMessage),
    /// OPEN CHANNEL (`40`).
    OpenChannel(Box<OpenChannel>),
    /// SEND DATA (`43`).
    SendData(SendData),
    /// RECEIVE DATA (`42`).
    ReceiveData(ReceiveData),
    /// CLOSE CHANNEL (`41`).
    CloseChannel(CloseChannel),
    /// Any other command, as its objects after device identities.
    Unknown {
        /// Type of command (not one of the typed ones).
        type_of_command: u8,
        /// The objects.
        objects: Vec<Ctlv>,
    },
}

impl CommandBody {
    /// The type of command.
    pub fn type_of_command(&self) -> u8 {
        use command_type::*;
        match self {
            Self::SetUpMenu(_) => SET_UP_MENU,
            Self::SendShortMessage(_) => SEND_SHORT_MESSAGE,
            Self::OpenChannel(_) => OPEN_CHANNEL,
            Self::SendData(_) => SEND_DATA,
            Self::ReceiveData(_) => RECEIVE_DATA,
            Self::CloseChannel(_) => CLOSE_CHANNEL,
            Self::Unknown {
                type_of_command, ..
            } => *type_of_command,
        }
    }
}

/// A proactive command (`D0`, §6.6): command details (the type follows from the body),
/// device identities and the command itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProactiveCommand {
    /// Command number.
    pub number: u8,
    /// Command qualifier; see the `QUALIFIER_*` constants.
    pub qualifier: u8,
    /// Device identities (UICC → terminal, network or a channel).
    pub devices: DeviceIdentities,
    /// The command.
    pub body: CommandBody,
}

/// Separates the objects of a command or envelope, order kept, by tag value.
struct Objects(Vec<Ctlv>);

impl Objects {
    /// Removes and returns the first object with this tag value.
    fn take(&mut self, t: u16) -> Option<Vec<u8>> {
        let i = self.0.iter().position(|c| c.tag.value == t)?;
        Some(self.0.remove(i).value)
    }
    fn require(&mut self, t: u16, name: &'static str) -> Result<Vec<u8>> {
        self.take(t).ok_or(Error::Missing(name))
    }
    fn position(&self, t: u16) -> Option<usize> {
        self.0.iter().position(|c| c.tag.value == t)
    }
}

impl ProactiveCommand {
    /// SET UP MENU qualifier bit 8: help information available.
    pub const QUALIFIER_HELP_AVAILABLE: u8 = 0x80;
    /// SEND SHORT MESSAGE qualifier bit 1: packing by the terminal required.
    pub const QUALIFIER_PACKING_REQUIRED: u8 = 0x01;
    /// OPEN CHANNEL qualifier bit 1: immediate link establishment.
    pub const QUALIFIER_IMMEDIATE_LINK: u8 = 0x01;
    /// OPEN CHANNEL qualifier bit 2: automatic reconnection.
    pub const QUALIFIER_AUTOMATIC_RECONNECTION: u8 = 0x02;
    /// SEND DATA qualifier bit 1: send immediately (otherwise store in the Tx buffer).
    pub const QUALIFIER_SEND_IMMEDIATELY: u8 = 0x01;

    /// A command from the UICC to the terminal.
    pub fn new(number: u8, qualifier: u8, body: CommandBody) -> Self {
        Self {
            number,
            qualifier,
            devices: DeviceIdentities::new(Device::Uicc, Device::Terminal),
            body,
        }
    }

    /// The command details.
    pub fn details(&self) -> CommandDetails {
        CommandDetails {
            number: self.number,
            type_of_command: self.body.type_of_command(),
            qualifier: self.qualifier,
        }
    }

    /// The objects in spec order (command details and device identities first).
    pub fn to_ctlvs(&self) -> Result<Vec<Ctlv>> {
        let mut o = vec![self.details().to_ctlv(), self.devices.to_ctlv()];
        let alpha = |o: &mut Vec<Ctlv>, a: &Option<AlphaId>| {
            if let Some(a) = a {
                o.push(Ctlv::required(tag::ALPHA_IDENTIFIER, a.0.clone()));
            }
        };
        let other = match &self.body {
            CommandBody::SetUpMenu(m) => {
                o.push(Ctlv::required(tag::ALPHA_IDENTIFIER, m.alpha.0.clone()));
                if m.items.is_empty() {
                    o.push(Ctlv::required(tag::ITEM, []));
                }
                for it in &m.items {
                    let mut v = vec![it.id];
                    v.extend_from_slice(&it.text.0);
                    o.push(Ctlv::required(tag::ITEM, v));
                }
                if let Some(n) = &m.next_actions {
                    o.push(Ctlv::optional(tag::ITEMS_NEXT_ACTION_INDICATOR, n.clone()));
                }
                &m.other
            }
            CommandBody::SendShortMessage(s) => {
                alpha(&mut o, &s.alpha);
                if let Some(a) = &s.address {
                    o.push(a.to_ctlv()?);
                }
                o.push(Ctlv::required(
                    tag::SMS_TPDU,
                    s.tpdu.encode_with(tpdu::LENIENT)?,
                ));
                &s.other
            }
            CommandBody::OpenChannel(c) => {
                alpha(&mut o, &c.alpha);
                o.push(c.bearer.to_ctlv());
                o.push(Ctlv::required(
                    tag::BUFFER_SIZE,
                    c.buffer_size.to_be_bytes(),
                ));
                if let Some(n) = &c.network_access_name {
                    o.push(Ctlv::required(tag::NETWORK_ACCESS_NAME, n.0.clone()));
                }
                if let Some(a) = &c.local_address {
                    o.push(a.to_ctlv());
                }
                if let Some(t) = &c.login {
                    o.push(t.to_ctlv());
                }
                if let Some(t) = &c.password {
                    o.push(t.to_ctlv());
                }
                if let Some(t) = c.transport {
                    o.push(t.to_ctlv());
                }
                if let Some(a) = &c.destination {
                    o.push(a.to_ctlv());
                }
                &c.other
            }
            CommandBody::SendData(s) => {
                alpha(&mut o, &s.alpha);
                o.push(Ctlv::required(tag::CHANNEL_DATA, s.data.clone()));
                &s.other
            }
            CommandBody::ReceiveData(r) => {
                alpha(&mut o, &r.alpha);
                o.push(Ctlv::required(tag::CHANNEL_DATA_LENGTH, [r.length]));
                &r.other
            }
            CommandBody::CloseChannel(c) => {
                alpha(&mut o, &c.alpha);
                &c.other
            }
            CommandBody::Unknown { objects, .. } => objects,
        };
        o.extend(other.iter().cloned());
        Ok(o)
    }

    /// The `D0` BER-TLV, as FETCH returns it.
    pub fn encode(&self) -> Result<Vec<u8>> {
        wrap_ber(0xD0, &self.to_ctlvs()?)
    }

    /// Decodes a `D0` BER-TLV filling `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (t, objects) = unwrap_ber(bytes)?;
        if t != 0xD0 {
            return Err(Error::UnexpectedTag {
                expected: "D0 (proactive command)",
                found: t,
            });
        }
        Self::from_ctlvs(objects)
    }

    /// Builds the command from its objects (order-insensitive, except that the first
    /// text string is the login, and an other address before the transport level is
    /// the local address, after it the destination).
    pub fn from_ctlvs(objects: Vec<Ctlv>) -> Result<Self> {
        let mut o = Objects(objects);
        let d = CommandDetails::from_value(&o.require(tag::COMMAND_DETAILS, "command details")?)?;
        let devices =
            DeviceIdentities::from_value(&o.require(tag::DEVICE_IDENTITIES, "device identities")?)?;
        let alpha = |o: &mut Objects| o.take(tag::ALPHA_IDENTIFIER).map(AlphaId);
        use command_type::*;
        let body = match d.type_of_command {
            SET_UP_MENU => {
                let alpha = o.require(tag::ALPHA_IDENTIFIER, "alpha identifier")?;
                let mut items = Vec::new();
                let mut null_item = false;
                while let Some(v) = o.take(tag::ITEM) {
                    match v.split_first() {
                        None => null_item = true,
                        Some((&id, text)) => items.push(MenuItem {
                            id,
                            text: AlphaId(text.to_vec()),
                        }),
                    }
                }
                if null_item && !items.is_empty() || !null_item && items.is_empty() {
                    return Err(Error::Invalid {
                        object: "item",
                        reason: "a null item must be the only item, and one item is needed",
                    });
                }
                CommandBody::SetUpMenu(SetUpMenu {
                    alpha: AlphaId(alpha),
                    items,
                    next_actions: o.take(tag::ITEMS_NEXT_ACTION_INDICATOR),
                    other: o.0,
                })
            }
            SEND_SHORT_MESSAGE => {
                let alpha = alpha(&mut o);
                let address = o
                    .take(tag::ADDRESS)
                    .map(|v| CatAddress::from_value(&v))
                    .transpose()?;
                let tpdu =
                    SmsSubmit::decode_with(&o.require(tag::SMS_TPDU, "SMS TPDU")?, tpdu::LENIENT)?;
                CommandBody::SendShortMessage(SendShortMessage {
                    alpha,
                    address,
                    tpdu,
                    other: o.0,
                })
            }
            OPEN_CHANNEL => {
                let alpha = alpha(&mut o);
                let bearer = BearerDescription::from_value(
                    &o.require(tag::BEARER_DESCRIPTION, "bearer description")?,
                )?;
                let buffer_size = buffer_size(&o.require(tag::BUFFER_SIZE, "buffer size")?)?;
                let network_access_name = o.take(tag::NETWORK_ACCESS_NAME).map(NetworkAccessName);
                let local_address = match (
                    o.position(tag::OTHER_ADDRESS),
                    o.position(tag::TRANSPORT_LEVEL),
                ) {
                    (Some(a), Some(t)) if a < t => o.take(tag::OTHER_ADDRESS),
                    (Some(_), None) => o.take(tag::OTHER_ADDRESS),
                    _ => None,
                }
                .map(|v| OtherAddress::from_value(&v));
                let login = o
                    .take(tag::TEXT_STRING)
                    .map(|v| TextString::from_value(&v))
                    .transpose()?;
                let password = o
                    .take(tag::TEXT_STRING)
                    .map(|v| TextString::from_value(&v))
                    .transpose()?;
                let transport = o
                    .take(tag::TRANSPORT_LEVEL)
                    .map(|v| TransportLevel::from_value(&v))
                    .transpose()?;
                let destination = o
                    .take(tag::OTHER_ADDRESS)
                    .map(|v| OtherAddress::from_value(&v));
                CommandBody::OpenChannel(Box::new(OpenChannel {
                    alpha,
                    bearer,
                    buffer_size,
                    network_access_name,
                    local_address,
                    login,
                    password,
                    transport,
                    destination,
                    other: o.0,
                }))
            }
            SEND_DATA => CommandBody::SendData(SendData {
                alpha: alpha(&mut o),
                data: o.require(tag::CHANNEL_DATA, "channel data")?,
                other: o.0,
            }),
            RECEIVE_DATA => CommandBody::ReceiveData(ReceiveData {
                alpha: alpha(&mut o),
                length: single_byte(
                    "channel data length",
                    &o.require(tag::CHANNEL_DATA_LENGTH, "channel data length")?,
                )?,
                other: o.0,
            }),
            CLOSE_CHANNEL => CommandBody::CloseChannel(CloseChannel {
                alpha: alpha(&mut o),
                other: o.0,
            }),
            t => CommandBody::Unknown {
                type_of_command: t,
                objects: o.0,
            },
        };
        Ok(Self {
            number: d.number,
            qualifier: d.qualifier,
            devices,
            body,
        })
    }
}

// ---------------------------------------------------------------------------------------
// TERMINAL RESPONSE (102 223 §6.8)
// ---------------------------------------------------------------------------------------

/// TERMINAL RESPONSE (§6.8): a sequence of COMPREHENSION-TLVs without outer tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalResponse {
    /// The command details of the command answered.
    pub details: CommandDetails,
    /// Device identities, terminal → UICC.
    pub devices: DeviceIdentities,
    /// Result.
    pub result: CatResult,
    /// Channel status (OPEN CHANNEL, GET CHANNEL STATUS).
    pub channel_status: Option<ChannelStatus>,
    /// Bearer description (OPEN CHANNEL).
    pub bearer: Option<BearerDescription>,
    /// Buffer size granted (OPEN CHANNEL).
    pub buffer_size: Option<u16>,
    /// Channel data (RECEIVE DATA).
    pub channel_data: Option<Vec<u8>>,
    /// Channel data length: bytes left to receive (RECEIVE DATA) or free in the Tx
    /// buffer (SEND DATA), `FF` for more than 255.
    pub channel_data_length: Option<u8>,
    /// Other objects, after the typed ones.
    pub other: Vec<Ctlv>,
}

impl TerminalResponse {
    /// The answer to `command` with `result` and nothing else, terminal → UICC.
    pub fn new(command: &ProactiveCommand, result: CatResult) -> Self {
        Self::for_details(command.details(), result)
    }

    /// The answer to the command with these details (e.g. one whose other objects did not
    /// decode) with `result` and nothing else, terminal → UICC.
    pub fn for_details(details: CommandDetails, result: CatResult) -> Self {
        Self {
            details,
            devices: DeviceIdentities::new(Device::Terminal, Device::Uicc),
            result,
            channel_status: None,
            bearer: None,
            buffer_size: None,
            channel_data: None,
            channel_data_length: None,
            other: Vec::new(),
        }
    }

    /// The objects in order.
    pub fn to_ctlvs(&self) -> Vec<Ctlv> {
        let mut o = vec![
            self.details.to_ctlv(),
            self.devices.to_ctlv(),
            self.result.to_ctlv(),
        ];
        if let Some(s) = self.channel_status {
            o.push(s.to_ctlv());
        }
        if let Some(b) = &self.bearer {
            o.push(b.to_ctlv());
        }
        if let Some(b) = self.buffer_size {
            o.push(Ctlv::required(tag::BUFFER_SIZE, b.to_be_bytes()));
        }
        if let Some(d) = &self.channel_data {
            o.push(Ctlv::required(tag::CHANNEL_DATA, d.clone()));
        }
        if let Some(l) = self.channel_data_length {
            o.push(Ctlv::required(tag::CHANNEL_DATA_LENGTH, [l]));
        }
        o.extend(self.other.iter().cloned());
        o
    }

    /// The data field of the TERMINAL RESPONSE APDU.
    pub fn encode(&self) -> Result<Vec<u8>> {
        encode_ctlvs(&self.to_ctlvs())
    }

    /// Decodes the data field of a TERMINAL RESPONSE APDU.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut o = Objects(parse_ctlvs(bytes)?);
        let details =
            CommandDetails::from_value(&o.require(tag::COMMAND_DETAILS, "command details")?)?;
        let devices =
            DeviceIdentities::from_value(&o.require(tag::DEVICE_IDENTITIES, "device identities")?)?;
        let result = CatResult::from_value(&o.require(tag::RESULT, "result")?)?;
        Ok(Self {
            details,
            devices,
            result,
            channel_status: o
                .take(tag::CHANNEL_STATUS)
                .map(|v| ChannelStatus::from_value(&v))
                .transpose()?,
            bearer: o
                .take(tag::BEARER_DESCRIPTION)
                .map(|v| BearerDescription::from_value(&v))
                .transpose()?,
            buffer_size: o
                .take(tag::BUFFER_SIZE)
                .map(|v| buffer_size(&v))
                .transpose()?,
            channel_data: o.take(tag::CHANNEL_DATA),
            channel_data_length: o
                .take(tag::CHANNEL_DATA_LENGTH)
                .map(|v| single_byte("channel data length", &v))
                .transpose()?,
            other: o.0,
        })
    }
}

// ---------------------------------------------------------------------------------------
// ENVELOPE (102 223 §7, 31.111 §7)
// ---------------------------------------------------------------------------------------

/// SMS-PP download (31.111 §7.1.1.2, tag `D1`): device identities network → UICC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsPpDownload {
    /// Address of the service centre (RP-OA), optional.
    pub address: Option<CatAddress>,
    /// The SMS-DELIVER.
    pub tpdu: SmsDeliver,
}

/// An event download (§7.5, tag `D6`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Data available (§7.5.10): terminal → UICC, channel status, channel data length
    /// (bytes waiting in the Rx buffer, `FF` for more than 255).
    DataAvailable {
        /// Channel status.
        status: ChannelStatus,
        /// Channel data length.
        length: u8,
    },
    /// Channel status (§7.5.11): terminal → UICC, channel status, then optional objects
    /// (bearer description, other address) kept as they are.
    ChannelStatus {
        /// Channel status.
        status: ChannelStatus,
        /// Further objects.
        other: Vec<Ctlv>,
    },
    /// Any other event.
    Other {
        /// The event (the first of the event list).
        event: u8,
        /// Device identities.
        devices: DeviceIdentities,
        /// The remaining objects.
        objects: Vec<Ctlv>,
    },
}

/// An ENVELOPE's data (§7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// `D1`: SMS-PP download.
    SmsPpDownload(SmsPpDownload),
    /// `D3`: menu selection (keypad → UICC).
    MenuSelection {
        /// The item chosen.
        item: u8,
        /// Help requested for it.
        help_request: bool,
    },
    /// `D6`: event download.
    EventDownload(Event),
    /// Any other envelope, as its objects.
    Unknown {
        /// BER tag.
        tag: u8,
        /// The objects.
        objects: Vec<Ctlv>,
    },
}

/// BER tag of SMS-PP download.
pub const TAG_SMS_PP_DOWNLOAD: u8 = 0xD1;
/// BER tag of menu selection.
pub const TAG_MENU_SELECTION: u8 = 0xD3;
/// BER tag of event download.
pub const TAG_EVENT_DOWNLOAD: u8 = 0xD6;

fn expect_devices(o: &mut Objects, expected: [u8; 2]) -> Result<()> {
    let d = DeviceIdentities::from_value(&o.require(tag::DEVICE_IDENTITIES, "device identities")?)?;
    if d.bytes() != expected {
        return Err(Error::WrongDevices {
            expected,
            found: d.bytes(),
        });
    }
    Ok(())
}

impl Envelope {
    /// Wraps an SMS-DELIVER for SMS-PP download.
    pub fn sms_pp(address: Option<CatAddress>, tpdu: SmsDeliver) -> Self {
        Self::SmsPpDownload(SmsPpDownload { address, tpdu })
    }

    /// The BER tag and the objects in spec order.
    pub fn to_ctlvs(&self) -> Result<(u8, Vec<Ctlv>)> {
        let ids = |s, d| DeviceIdentities::new(s, d).to_ctlv();
        Ok(match self {
            Self::SmsPpDownload(s) => {
                let mut o = vec![ids(Device::Network, Device::Uicc)];
                if let Some(a) = &s.address {
                    o.push(a.to_ctlv()?);
                }
                o.push(Ctlv::required(tag::SMS_TPDU, s.tpdu.encode()?));
                (TAG_SMS_PP_DOWNLOAD, o)
            }
            Self::MenuSelection { item, help_request } => {
                let mut o = vec![
                    ids(Device::Keypad, Device::Uicc),
                    Ctlv::required(tag::ITEM_IDENTIFIER, [*item]),
                ];
                if *help_request {
                    o.push(Ctlv::required(tag::HELP_REQUEST, []));
                }
                (TAG_MENU_SELECTION, o)
            }
            Self::EventDownload(e) => {
                let list = |e: u8| Ctlv::required(tag::EVENT_LIST, [e]);
                let o = match e {
                    Event::DataAvailable { status, length } => vec![
                        list(event::DATA_AVAILABLE),
                        ids(Device::Terminal, Device::Uicc),
                        status.to_ctlv(),
                        Ctlv::required(tag::CHANNEL_DATA_LENGTH, [*length]),
                    ],
                    Event::ChannelStatus { status, other } => {
                        let mut o = vec![
                            list(event::CHANNEL_STATUS),
                            ids(Device::Terminal, Device::Uicc),
                            status.to_ctlv(),
                        ];
                        o.extend(other.iter().cloned());
                        o
                    }
                    Event::Other {
                        event,
                        devices,
                        objects,
                    } => {
                        let mut o = vec![list(*event), devices.to_ctlv()];
                        o.extend(objects.iter().cloned());
                        o
                    }
                };
                (TAG_EVENT_DOWNLOAD, o)
            }
            Self::Unknown { tag, objects } => (*tag, objects.clone()),
        })
    }

    /// The ENVELOPE command data (the BER-TLV).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let (t, o) = self.to_ctlvs()?;
        wrap_ber(t, &o)
    }

    /// Decodes ENVELOPE command data filling `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (t, objects) = unwrap_ber(bytes)?;
        let mut o = Objects(objects);
        Ok(match t {
            TAG_SMS_PP_DOWNLOAD => {
                expect_devices(&mut o, [0x83, 0x81])?;
                let address = o
                    .take(tag::ADDRESS)
                    .map(|v| CatAddress::from_value(&v))
                    .transpose()?;
                let tpdu = SmsDeliver::decode(&o.require(tag::SMS_TPDU, "SMS TPDU")?)?;
                Self::SmsPpDownload(SmsPpDownload { address, tpdu })
            }
            TAG_MENU_SELECTION => {
                expect_devices(&mut o, [0x01, 0x81])?;
                let item = single_byte(
                    "item identifier",
                    &o.require(tag::ITEM_IDENTIFIER, "item identifier")?,
                )?;
                Self::MenuSelection {
                    item,
                    help_request: o.take(tag::HELP_REQUEST).is_some(),
                }
            }
            TAG_EVENT_DOWNLOAD => {
                let list = o.require(tag::EVENT_LIST, "event list")?;
                let ev = single_byte("event list", &list)?;
                match ev {
                    event::DATA_AVAILABLE => {
                        expect_devices(&mut o, [0x82, 0x81])?;
                        let status = ChannelStatus::from_value(
                            &o.require(tag::CHANNEL_STATUS, "channel status")?,
                        )?;
                        let length = single_byte(
                            "channel data length",
                            &o.require(tag::CHANNEL_DATA_LENGTH, "channel data length")?,
                        )?;
                        Self::EventDownload(Event::DataAvailable { status, length })
                    }
                    event::CHANNEL_STATUS => {
                        expect_devices(&mut o, [0x82, 0x81])?;
                        let status = ChannelStatus::from_value(
                            &o.require(tag::CHANNEL_STATUS, "channel status")?,
                        )?;
                        Self::EventDownload(Event::ChannelStatus { status, other: o.0 })
                    }
                    _ => {
                        let devices = DeviceIdentities::from_value(
                            &o.require(tag::DEVICE_IDENTITIES, "device identities")?,
                        )?;
                        Self::EventDownload(Event::Other {
                            event: ev,
                            devices,
                            objects: o.0,
                        })
                    }
                }
            }
            t => Self::Unknown {
                tag: t,
                objects: o.0,
            },
        })
    }
}

// ---------------------------------------------------------------------------------------
// TERMINAL PROFILE (102 223 §5.2, 31.111 §5.2)
// ---------------------------------------------------------------------------------------

/// A facility of the TERMINAL PROFILE, at its byte and bit (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Facility {
    /// Byte 1 b1: profile download.
    ProfileDownload,
    /// Byte 1 b2: SMS-PP data download (31.111).
    SmsPpDataDownload,
    /// Byte 1 b3: Cell Broadcast data download (31.111).
    CellBroadcastDataDownload,
    /// Byte 1 b4: menu selection.
    MenuSelection,
    /// Byte 1 b5: SMS-PP data download, second bit (31.111; historically the `9EXX`
    /// response for SIM data download errors).
    SmsPpDataDownload2,
    /// Byte 1 b6: timer expiration.
    TimerExpiration,
    /// Byte 2 b1: command result.
    CommandResult,
    /// Byte 3 b1: DISPLAY TEXT.
    DisplayText,
    /// Byte 3 b4: MORE TIME.
    MoreTime,
    /// Byte 3 b6: POLL INTERVAL.
    PollInterval,
    /// Byte 3 b7: POLLING OFF.
    PollingOff,
    /// Byte 3 b8: REFRESH.
    Refresh,
    /// Byte 4 b1: SELECT ITEM.
    SelectItem,
    /// Byte 4 b2: SEND SHORT MESSAGE with 3GPP SMS TPDU (31.111).
    SendShortMessage,
    /// Byte 4 b6: SET UP MENU.
    SetUpMenu,
    /// Byte 4 b7: PROVIDE LOCAL INFORMATION (MCC, MNC, LAC, cell ID, IMEI).
    ProvideLocalInformation,
    /// Byte 5 b1: SET UP EVENT LIST.
    SetUpEventList,
    /// Byte 6 b3: event data available.
    EventDataAvailable,
    /// Byte 6 b4: event channel status.
    EventChannelStatus,
    /// Byte 8 b1: TIMER MANAGEMENT (start, stop).
    TimerManagement,
    /// Byte 12 b1: OPEN CHANNEL.
    OpenChannel,
    /// Byte 12 b2: CLOSE CHANNEL.
    CloseChannel,
    /// Byte 12 b3: RECEIVE DATA.
    ReceiveData,
    /// Byte 12 b4: SEND DATA.
    SendData,
    /// Byte 12 b5: GET CHANNEL STATUS.
    GetChannelStatus,
    /// Byte 13 b1: CSD bearer (31.111).
    BearerCsd,
    /// Byte 13 b2: GPRS bearer (31.111).
    BearerGprs,
    /// Byte 17 b1: TCP, UICC in client mode, remote connection.
    TcpClientRemote,
    /// Byte 17 b2: UDP, UICC in client mode, remote connection.
    UdpClientRemote,
    /// Byte 17 b3: TCP, UICC in server mode.
    TcpServer,
    /// Byte 17 b7: E-UTRAN bearer (31.111).
    BearerEutran,
}

impl Facility {
    /// The byte (1-based, as in §5.2) and bit (1-8).
    pub fn position(self) -> (usize, u8) {
        use Facility::*;
        match self {
            ProfileDownload => (1, 1),
            SmsPpDataDownload => (1, 2),
            CellBroadcastDataDownload => (1, 3),
            MenuSelection => (1, 4),
            SmsPpDataDownload2 => (1, 5),
            TimerExpiration => (1, 6),
            CommandResult => (2, 1),
            DisplayText => (3, 1),
            MoreTime => (3, 4),
            PollInterval => (3, 6),
            PollingOff => (3, 7),
            Refresh => (3, 8),
            SelectItem => (4, 1),
            SendShortMessage => (4, 2),
            SetUpMenu => (4, 6),
            ProvideLocalInformation => (4, 7),
            SetUpEventList => (5, 1),
            EventDataAvailable => (6, 3),
            EventChannelStatus => (6, 4),
            TimerManagement => (8, 1),
            OpenChannel => (12, 1),
            CloseChannel => (12, 2),
            ReceiveData => (12, 3),
            SendData => (12, 4),
            GetChannelStatus => (12, 5),
            BearerCsd => (13, 1),
            BearerGprs => (13, 2),
            TcpClientRemote => (17, 1),
            UdpClientRemote => (17, 2),
            TcpServer => (17, 3),
            BearerEutran => (17, 7),
        }
    }
}

/// TERMINAL PROFILE data: a builder with named bits and a parser that answers what the
/// terminal supports. Bytes the terminal did not send read as zero (§5.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TerminalProfile(pub Vec<u8>);

impl TerminalProfile {
    /// An empty profile.
    pub fn new() -> Self {
        Self::default()
    }

    /// What a handset for the OTA flow sets: profile download, command result, SMS-PP
    /// data download, menu selection, SET UP MENU, SEND SHORT MESSAGE, MORE TIME,
    /// polling, SET UP EVENT LIST, and BIP (OPEN / CLOSE CHANNEL, SEND / RECEIVE DATA,
    /// GET CHANNEL STATUS, GPRS bearer, TCP client, data available and channel status
    /// events) with `channels` channels. The default network bearer has no bit of its
    /// own; a terminal supporting BIP supports it (102 223 §6.4.27).
    pub fn ota_handset(channels: u8) -> Self {
        use Facility::*;
        let mut p = Self::new();
        for f in [
            ProfileDownload,
            SmsPpDataDownload,
            SmsPpDataDownload2,
            MenuSelection,
            CommandResult,
            MoreTime,
            PollInterval,
            PollingOff,
            SendShortMessage,
            SetUpMenu,
            SetUpEventList,
            EventDataAvailable,
            EventChannelStatus,
            OpenChannel,
            CloseChannel,
            ReceiveData,
            SendData,
            GetChannelStatus,
            BearerGprs,
            TcpClientRemote,
        ] {
            p.set(f);
        }
        p.set_channels(channels);
        p
    }

    fn ensure(&mut self, len: usize) {
        if self.0.len() < len {
            self.0.resize(len, 0);
        }
    }

    /// Sets a facility's bit.
    pub fn set(&mut self, f: Facility) -> &mut Self {
        let (byte, bit) = f.position();
        self.ensure(byte);
        self.0[byte - 1] |= 1 << (bit - 1);
        self
    }

    /// Builder form of [`TerminalProfile::set`].
    pub fn with(mut self, f: Facility) -> Self {
        self.set(f);
        self
    }

    /// Whether the terminal supports a facility.
    pub fn supports(&self, f: Facility) -> bool {
        let (byte, bit) = f.position();
        self.0
            .get(byte - 1)
            .is_some_and(|b| b & (1 << (bit - 1)) != 0)
    }

    /// Byte 13 b6-b8: number of channels supported (0-7).
    pub fn channels(&self) -> u8 {
        self.0.get(12).map_or(0, |b| b >> 5)
    }

    /// Sets the number of channels (0-7, higher values are cut to 7).
    pub fn set_channels(&mut self, n: u8) -> &mut Self {
        self.ensure(13);
        self.0[12] = (self.0[12] & 0x1F) | n.min(7) << 5;
        self
    }

    /// The TERMINAL PROFILE data.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

// ---------------------------------------------------------------------------------------
// Status words around the toolkit (102 221 §10.2, 31.111 §7.1.1)
// ---------------------------------------------------------------------------------------

/// CLA of toolkit commands (102 221 §10.1.1).
pub const CLA_TOOLKIT: u8 = 0x80;
/// INS of TERMINAL PROFILE.
pub const INS_TERMINAL_PROFILE: u8 = 0x10;
/// INS of FETCH.
pub const INS_FETCH: u8 = 0x12;
/// INS of TERMINAL RESPONSE.
pub const INS_TERMINAL_RESPONSE: u8 = 0x14;
/// INS of ENVELOPE.
pub const INS_ENVELOPE: u8 = 0xC2;

/// `91xx` (102 221 §10.2.1.1): the command succeeded and a proactive command of `xx`
/// bytes is pending: the terminal sends FETCH with Le = `xx`. Returns `xx`.
pub fn proactive_command_pending(sw: u16) -> Option<u8> {
    (sw >> 8 == 0x91).then_some(sw as u8)
}

/// What a handset does after ENVELOPE (SMS-PP download) (31.111 §7.1.1.1 / §7.1.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsPpOutcome {
    /// `9000` or `91xx`: acknowledge with RP-ACK carrying an SMS-DELIVER-REPORT whose
    /// TP-UD is the response data (the PoR, if any) with the SMS-DELIVER's PID and DCS;
    /// for `91xx` then FETCH the pending proactive command (it may be a SEND SHORT
    /// MESSAGE carrying the PoR when the SPI asks for it by SMS-SUBMIT).
    Acknowledge {
        /// Response data of the ENVELOPE (PoR), possibly empty.
        por: Vec<u8>,
        /// Length of the pending proactive command (`91xx`).
        proactive_pending: Option<u8>,
    },
    /// `61xx` (T=0) or `9Fxx` (GSM SIM): `xx` bytes of response data wait; send GET
    /// RESPONSE with Le = `xx` and classify its answer again.
    GetResponse(u8),
    /// `9300`: toolkit busy: retry the ENVELOPE later or send RP-ERROR with TP-FCS `D4`
    /// (SIM Application Toolkit busy).
    Busy,
    /// `62xx` / `63xx` (warnings) or `9Exx` (GSM SIM data download error): RP-ERROR with
    /// TP-FCS `D5` (data download error), the response data (for `9Exx` fetched with GET
    /// RESPONSE first) in the report's TP-UD.
    DataDownloadError {
        /// Response data given with the status word.
        data: Vec<u8>,
        /// `9Exx`: fetch `xx` bytes with GET RESPONSE before reporting.
        get_response: Option<u8>,
    },
    /// Any other status word: RP-ERROR with TP-FCS `D5` and no user data.
    Failed(u16),
}

/// Classifies the answer to ENVELOPE (SMS-PP download): response data and status word.
pub fn sms_pp_outcome(response_data: &[u8], sw: u16) -> SmsPpOutcome {
    let (sw1, sw2) = ((sw >> 8) as u8, sw as u8);
    match sw1 {
        0x90 if sw2 == 0 => SmsPpOutcome::Acknowledge {
            por: response_data.to_vec(),
            proactive_pending: None,
        },
        0x91 => SmsPpOutcome::Acknowledge {
            por: response_data.to_vec(),
            proactive_pending: Some(sw2),
        },
        0x61 | 0x9F => SmsPpOutcome::GetResponse(sw2),
        0x93 if sw2 == 0 => SmsPpOutcome::Busy,
        0x62 | 0x63 => SmsPpOutcome::DataDownloadError {
            data: response_data.to_vec(),
            get_response: None,
        },
        0x9E => SmsPpOutcome::DataDownloadError {
            data: response_data.to_vec(),
            get_response: Some(sw2),
        },
        _ => SmsPpOutcome::Failed(sw),
    }
}

impl SmsPpOutcome {
    /// The SMS-DELIVER-REPORT the handset sends (RP-ACK when `failure_cause` is `None`),
    /// given the PID and DCS of the SMS-DELIVER; `None` while a GET RESPONSE is due.
    pub fn deliver_report(&self, pid: tpdu::Pid, dcs: tpdu::Dcs) -> Option<SmsDeliverReport> {
        let with = |fcs: u8, data: &[u8]| {
            let mut r = SmsDeliverReport::ack(pid, dcs, data.to_vec());
            r.failure_cause = Some(fcs);
            r
        };
        match self {
            Self::Acknowledge { por, .. } => Some(SmsDeliverReport::ack(pid, dcs, por.clone())),
            Self::GetResponse(_)
            | Self::DataDownloadError {
                get_response: Some(_),
                ..
            } => None,
            Self::Busy => Some(with(tpdu::FCS_SAT_BUSY, &[])),
            Self::DataDownloadError { data, .. } => Some(with(tpdu::FCS_DATA_DOWNLOAD_ERROR, data)),
            Self::Failed(_) => Some(with(tpdu::FCS_DATA_DOWNLOAD_ERROR, &[])),
        }
    }
}
