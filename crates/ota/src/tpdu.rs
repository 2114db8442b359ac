//! 3GPP TS 23.040 short message transfer protocol data units (TPDUs), byte for byte, and
//! what the OTA (ETSI TS 102 225 / 3GPP TS 31.115) flow needs around them:
//!
//! * [`SmsDeliver`] (SC → MS, §9.2.2.1), [`SmsSubmit`] (MS → SC, §9.2.2.2),
//!   [`SmsStatusReport`] (SC → MS, §9.2.2.3) and [`SmsDeliverReport`] (MS → SC,
//!   §9.2.2.1a: the RP-ACK / RP-ERROR payload that carries a PoR back, 31.111 §7.1.1);
//! * [`Address`] (§9.1.2.5: length in semi-octets, type of address, swapped BCD with `F`
//!   filler; alphanumeric addresses in packed GSM 7-bit);
//! * [`Dcs`] (3GPP TS 23.038 §4) decoded into coding group, alphabet and class;
//! * [`UserData`] and [`UserDataHeader`] (§9.2.3.16, §9.2.3.24): TP-UDL counts octets for
//!   8-bit / UCS2 data and septets for the GSM 7-bit default alphabet, whose payload is
//!   packed after the header with fill bits ([`pack_septets`], [`unpack_septets`],
//!   [`gsm7_decode`], [`gsm7_encode`]);
//! * OTA concatenation (31.115 §6.2 / §6.3, 102 225 §5.1): [`split_packet`] cuts a
//!   command packet (IEI `70`) or response packet (IEI `71`) into the fewest SMS
//!   ([`sms_count`]), [`Reassembler`] puts the parts back together.
//!
//! Decoders never panic and reject trailing bytes; encoders produce the minimal encoding.

use std::collections::BTreeMap;

/// What went wrong in a TPDU codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ends inside the named field.
    #[error("truncated TPDU: input ends inside {0}")]
    Truncated(&'static str),
    /// Bytes are left after the last field.
    #[error("{0} byte(s) after the end of the TPDU")]
    TrailingBytes(usize),
    /// TP-MTI is not the one of the TPDU being decoded.
    #[error("TP-MTI {found} is not {expected} (23.040 §9.2.3.1)")]
    WrongMessageType {
        /// The TP-MTI value wanted.
        expected: u8,
        /// The TP-MTI value read.
        found: u8,
    },
    /// An address field that breaks §9.1.2.5.
    #[error("invalid address: {0}")]
    InvalidAddress(&'static str),
    /// A character that has no semi-octet (`0`-`9`, `*`, `#`, `a`, `b`, `c`).
    #[error("{0:?} is not a semi-octet digit (0-9 * # a b c)")]
    InvalidDigit(char),
    /// A semi-octet that is not a digit where one is needed (`F` inside a number).
    #[error("semi-octet {0:X} is not a digit")]
    InvalidSemiOctet(u8),
    /// A character that the GSM 7-bit default alphabet and its extension table lack.
    #[error("{0:?} has no code in the GSM 7-bit default alphabet")]
    Unencodable(char),
    /// A septet value above `7F`.
    #[error("septet {0:#04x} is above 7F")]
    InvalidSeptet(u8),
    /// A time stamp that is not semi-octet BCD (§9.2.3.11) or out of range.
    #[error("invalid time stamp: {0}")]
    InvalidTimestamp(&'static str),
    /// More user data than TP-UD can hold (140 octets, 160 septets).
    #[error("user data of {len} {unit} exceeds the maximum of {max}")]
    UserDataTooLong {
        /// Size asked for.
        len: usize,
        /// Maximum.
        max: usize,
        /// `"octets"` or `"septets"`.
        unit: &'static str,
    },
    /// A user-data header that breaks §9.2.3.24.
    #[error("invalid user-data header: {0}")]
    InvalidUdh(&'static str),
    /// TP-UDL does not agree with the data present.
    #[error("TP-UDL {udl} does not match the user data: {reason}")]
    BadUdl {
        /// The TP-UDL value.
        udl: u8,
        /// What disagrees.
        reason: &'static str,
    },
    /// A packet cannot be split: too long for 255 parts, or empty.
    #[error("cannot split a packet of {len} octets: {reason}")]
    CannotSplit {
        /// Packet length.
        len: usize,
        /// Why.
        reason: &'static str,
    },
    /// A concatenated part that cannot belong to any message (§9.2.3.24.1, 31.115 §6.3).
    #[error("invalid concatenated part: {0}")]
    InvalidPart(&'static str),
    /// A part received twice with different contents.
    #[error("part {seq} of {total} received twice with different contents")]
    ConflictingDuplicate {
        /// Sequence number of the part.
        seq: u8,
        /// Total number of parts.
        total: u8,
    },
}

type Result<T> = core::result::Result<T, Error>;

/// Maximum TP-UD size in octets (§9.2.3.16).
pub const MAX_UD_OCTETS: usize = 140;
/// Maximum TP-UD size in septets (§9.2.3.16).
pub const MAX_UD_SEPTETS: usize = 160;

/// A cursor over input bytes that names the field being read when it runs out.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }
    fn u8(&mut self, what: &'static str) -> Result<u8> {
        let b = *self.bytes.get(self.pos).ok_or(Error::Truncated(what))?;
        self.pos += 1;
        Ok(b)
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated(what))?;
        let s = self
            .bytes
            .get(self.pos..end)
            .ok_or(Error::Truncated(what))?;
        self.pos = end;
        Ok(s)
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        s
    }
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    fn finish(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(Error::TrailingBytes(n)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// GSM 7-bit default alphabet (3GPP TS 23.038 §6.2.1) and packing (§6.1.2.1)
// ---------------------------------------------------------------------------------------

/// The escape septet to the extension table (23.038 §6.2.1.1).
pub const GSM7_ESCAPE: u8 = 0x1B;

/// The GSM 7-bit default alphabet (23.038 §6.2.1); `1B` (escape) is shown as a space.
const GSM7_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table (23.038 §6.2.1.1): septet after `1B` and its character.
const GSM7_EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Decodes septets (values `00`-`7F`, unpacked) of the GSM 7-bit default alphabet with
/// its extension table (23.038 §6.2.1). An escape followed by a septet the extension
/// table lacks shows the default-table character (§6.2.1.1); a final lone escape shows
/// a space. Septets above `7F` are masked to 7 bits.
pub fn gsm7_decode(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut it = septets.iter().map(|s| s & 0x7F);
    while let Some(s) = it.next() {
        if s == GSM7_ESCAPE {
            match it.next() {
                Some(e) => match GSM7_EXTENSION.iter().find(|(c, _)| *c == e) {
                    Some((_, ch)) => out.push(*ch),
                    None => out.push(GSM7_BASIC[e as usize]),
                },
                None => out.push(' '),
            }
        } else {
            out.push(GSM7_BASIC[s as usize]);
        }
    }
    out
}

/// Encodes text into septets of the GSM 7-bit default alphabet, using the extension
/// table (escape + septet) for `^ { } \ [ ~ ] | €` and form feed.
pub fn gsm7_encode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for ch in text.chars() {
        if let Some(i) = GSM7_BASIC
            .iter()
            .enumerate()
            .position(|(i, c)| *c == ch && i != GSM7_ESCAPE as usize)
        {
            out.push(i as u8);
        } else if let Some((s, _)) = GSM7_EXTENSION.iter().find(|(_, c)| *c == ch) {
            out.push(GSM7_ESCAPE);
            out.push(*s);
        } else {
            return Err(Error::Unencodable(ch));
        }
    }
    Ok(out)
}

/// Packs septets into octets, least significant bit first (23.038 §6.1.2.1.1), after
/// `fill_bits` zero bits (0-6, the fill that aligns the payload on a septet boundary
/// after a user-data header, 23.040 §9.2.3.24). Returns `ceil((fill + 7n) / 8)` octets.
pub fn pack_septets(septets: &[u8], fill_bits: u8) -> Result<Vec<u8>> {
    let fill = usize::from(fill_bits % 7);
    let bits = fill + 7 * septets.len();
    let mut out = vec![0u8; bits.div_ceil(8)];
    for (i, &s) in septets.iter().enumerate() {
        if s > 0x7F {
            return Err(Error::InvalidSeptet(s));
        }
        let bit = fill + 7 * i;
        let (byte, shift) = (bit / 8, bit % 8);
        let v = u16::from(s) << shift;
        out[byte] |= v as u8;
        if shift > 1 {
            out[byte + 1] |= (v >> 8) as u8;
        }
    }
    Ok(out)
}

/// Unpacks `count` septets from `octets`, skipping `fill_bits` (0-6) leading bits: the
/// inverse of [`pack_septets`].
pub fn unpack_septets(octets: &[u8], fill_bits: u8, count: usize) -> Result<Vec<u8>> {
    let fill = usize::from(fill_bits % 7);
    if (fill + 7 * count).div_ceil(8) > octets.len() {
        return Err(Error::Truncated("packed septets"));
    }
    Ok((0..count)
        .map(|i| {
            let bit = fill + 7 * i;
            let (byte, shift) = (bit / 8, bit % 8);
            let lo = u16::from(octets[byte]);
            let hi = u16::from(*octets.get(byte + 1).unwrap_or(&0));
            (((hi << 8 | lo) >> shift) & 0x7F) as u8
        })
        .collect())
}

// ---------------------------------------------------------------------------------------
// Addresses (§9.1.2.5)
// ---------------------------------------------------------------------------------------

/// Type of number, bits 7-5 of the type-of-address octet (§9.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ton {
    /// `000`.
    Unknown,
    /// `001`: international number.
    International,
    /// `010`: national number.
    National,
    /// `011`: network specific number.
    NetworkSpecific,
    /// `100`: subscriber number.
    Subscriber,
    /// `101`: alphanumeric (GSM 7-bit default alphabet, packed).
    Alphanumeric,
    /// `110`: abbreviated number.
    Abbreviated,
    /// `111`: reserved for extension.
    Reserved,
}

impl Ton {
    /// From the three bits (0-7).
    pub fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => Self::Unknown,
            1 => Self::International,
            2 => Self::National,
            3 => Self::NetworkSpecific,
            4 => Self::Subscriber,
            5 => Self::Alphanumeric,
            6 => Self::Abbreviated,
            _ => Self::Reserved,
        }
    }
    /// The three bits.
    pub fn bits(self) -> u8 {
        self as u8
    }
}

/// Numbering plan identification, bits 4-1 of the type-of-address octet (§9.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Npi {
    /// `0000`.
    Unknown,
    /// `0001`: ISDN/telephone (E.164/E.163).
    Isdn,
    /// `0011`: data (X.121).
    Data,
    /// `0100`: telex.
    Telex,
    /// `0101`: service centre specific plan 1.
    ServiceCentre1,
    /// `0110`: service centre specific plan 2.
    ServiceCentre2,
    /// `1000`: national.
    National,
    /// `1001`: private.
    Private,
    /// `1010`: ERMES.
    Ermes,
    /// Any other (reserved) value, `0`-`F`.
    Reserved(u8),
}

impl Npi {
    /// From the four bits.
    pub fn from_bits(bits: u8) -> Self {
        match bits & 0x0F {
            0 => Self::Unknown,
            1 => Self::Isdn,
            3 => Self::Data,
            4 => Self::Telex,
            5 => Self::ServiceCentre1,
            6 => Self::ServiceCentre2,
            8 => Self::National,
            9 => Self::Private,
            10 => Self::Ermes,
            b => Self::Reserved(b),
        }
    }
    /// The four bits.
    pub fn bits(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Isdn => 1,
            Self::Data => 3,
            Self::Telex => 4,
            Self::ServiceCentre1 => 5,
            Self::ServiceCentre2 => 6,
            Self::National => 8,
            Self::Private => 9,
            Self::Ermes => 10,
            Self::Reserved(b) => b & 0x0F,
        }
    }
}

/// The type-of-address octet (bit 8 always 1) from its parts.
pub fn type_of_address(ton: Ton, npi: Npi) -> u8 {
    0x80 | ton.bits() << 4 | npi.bits()
}

/// The value of an address: digits or alphanumeric text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressValue {
    /// Semi-octet digits: `0`-`9`, `*` (`A`), `#` (`B`), `a` (`C`), `b` (`D`), `c` (`E`).
    Digits(String),
    /// Alphanumeric text in the GSM 7-bit default alphabet (type of number `101`).
    Alphanumeric(String),
}

/// A TP-OA / TP-DA / TP-RA address (§9.1.2.5), at most 20 semi-octets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// Type of number. [`Ton::Alphanumeric`] goes with [`AddressValue::Alphanumeric`].
    pub ton: Ton,
    /// Numbering plan.
    pub npi: Npi,
    /// The number or text.
    pub value: AddressValue,
}

/// Maximum address length in semi-octets (§9.1.2.5: 12 octets in all).
const MAX_ADDRESS_SEMI_OCTETS: u8 = 20;

/// The semi-octet value of a digit character.
fn digit_to_nibble(c: char) -> Result<u8> {
    Ok(match c {
        '0'..='9' => c as u8 - b'0',
        '*' => 0xA,
        '#' => 0xB,
        'a' => 0xC,
        'b' => 0xD,
        'c' => 0xE,
        _ => return Err(Error::InvalidDigit(c)),
    })
}

/// The digit character of a semi-octet value (not `F`).
fn nibble_to_digit(n: u8) -> Result<char> {
    Ok(match n {
        0..=9 => (b'0' + n) as char,
        0xA => '*',
        0xB => '#',
        0xC => 'a',
        0xD => 'b',
        0xE => 'c',
        _ => return Err(Error::InvalidSemiOctet(n)),
    })
}

/// Encodes digits as swapped semi-octets (first digit in the low nibble), with an `F`
/// filler in the high nibble of the last octet when the count is odd (§9.1.2.3).
pub fn encode_semi_octets(digits: &str) -> Result<Vec<u8>> {
    let nibbles = digits
        .chars()
        .map(digit_to_nibble)
        .collect::<Result<Vec<u8>>>()?;
    Ok(nibbles
        .chunks(2)
        .map(|p| p[0] | p.get(1).copied().unwrap_or(0xF) << 4)
        .collect())
}

/// Decodes `count` swapped semi-octet digits from `octets` (the inverse of
/// [`encode_semi_octets`]); a high nibble beyond `count` must be the `F` filler.
pub fn decode_semi_octets(octets: &[u8], count: usize) -> Result<String> {
    if count.div_ceil(2) != octets.len() {
        return Err(Error::InvalidAddress(
            "digit count does not match the octets",
        ));
    }
    let mut s = String::with_capacity(count);
    for i in 0..count {
        let b = octets[i / 2];
        s.push(nibble_to_digit(if i % 2 == 0 { b & 0xF } else { b >> 4 })?);
    }
    if count % 2 == 1 && octets[count / 2] >> 4 != 0xF {
        return Err(Error::InvalidAddress(
            "odd digit count without the F filler",
        ));
    }
    Ok(s)
}

impl Address {
    /// A number of the given type and plan, digits as in [`AddressValue::Digits`].
    pub fn new(ton: Ton, npi: Npi, digits: &str) -> Self {
        Self {
            ton,
            npi,
            value: AddressValue::Digits(digits.to_owned()),
        }
    }

    /// An international ISDN number (type of address `91`).
    pub fn international(digits: &str) -> Self {
        Self::new(Ton::International, Npi::Isdn, digits)
    }

    /// An alphanumeric address (type of address `D0`).
    pub fn alphanumeric(text: &str) -> Self {
        Self {
            ton: Ton::Alphanumeric,
            npi: Npi::Unknown,
            value: AddressValue::Alphanumeric(text.to_owned()),
        }
    }

    /// The type-of-address octet.
    pub fn type_of_address(&self) -> u8 {
        type_of_address(self.ton, self.npi)
    }

    /// The digits, for a numeric address.
    pub fn digits(&self) -> Option<&str> {
        match &self.value {
            AddressValue::Digits(d) => Some(d),
            AddressValue::Alphanumeric(_) => None,
        }
    }

    /// Appends the address field: length (semi-octets), type of address, value.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let (len, value) = match (&self.value, self.ton) {
            (AddressValue::Digits(d), t) if t != Ton::Alphanumeric => {
                (d.chars().count(), encode_semi_octets(d)?)
            }
            (AddressValue::Alphanumeric(text), Ton::Alphanumeric) => {
                let septets = gsm7_encode(text)?;
                // The useful semi-octets of the packed text: ceil(7n / 4).
                ((7 * septets.len()).div_ceil(4), pack_septets(&septets, 0)?)
            }
            _ => {
                return Err(Error::InvalidAddress(
                    "alphanumeric text needs type of number 101, and only it",
                ))
            }
        };
        if len > usize::from(MAX_ADDRESS_SEMI_OCTETS) {
            return Err(Error::InvalidAddress("longer than 20 semi-octets"));
        }
        out.push(len as u8);
        out.push(self.type_of_address());
        out.extend_from_slice(&value);
        Ok(())
    }

    /// The address field's encoding.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(12);
        self.encode_into(&mut v)?;
        Ok(v)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let len = r.u8("address length")?;
        if len > MAX_ADDRESS_SEMI_OCTETS {
            return Err(Error::InvalidAddress("longer than 20 semi-octets"));
        }
        let toa = r.u8("type of address")?;
        let (ton, npi) = (Ton::from_bits(toa >> 4), Npi::from_bits(toa));
        let octets = r.take(usize::from(len).div_ceil(2), "address value")?;
        let value = if ton == Ton::Alphanumeric {
            let septets = unpack_septets(octets, 0, usize::from(len) * 4 / 7)?;
            AddressValue::Alphanumeric(gsm7_decode(&septets))
        } else {
            AddressValue::Digits(decode_semi_octets(octets, usize::from(len))?)
        };
        Ok(Self { ton, npi, value })
    }

    /// Decodes an address field at the start of `bytes`; returns it and the number of
    /// bytes used.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Self, usize)> {
        let mut r = Reader::new(bytes);
        let a = Self::read(&mut r)?;
        Ok((a, r.pos))
    }
}

// ---------------------------------------------------------------------------------------
// Time stamps (§9.2.3.11) and validity period (§9.2.3.12)
// ---------------------------------------------------------------------------------------

/// A TP-SCTS / TP-DT / absolute TP-VP time stamp (§9.2.3.11): semi-octet BCD, local time
/// and the difference to GMT in quarters of an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Year within the century, 0-99.
    pub year: u8,
    /// Month, 0-99 (1-12 in valid dates; not checked).
    pub month: u8,
    /// Day, 0-99.
    pub day: u8,
    /// Hour, 0-99.
    pub hour: u8,
    /// Minute, 0-99.
    pub minute: u8,
    /// Second, 0-99.
    pub second: u8,
    /// Time zone in quarters of an hour, -79..=79 (the tens digit has three bits).
    pub tz_quarters: i8,
}

fn swapped_bcd(v: u8) -> Result<u8> {
    if v > 99 {
        return Err(Error::InvalidTimestamp("field above 99"));
    }
    Ok(((v % 10) << 4) | (v / 10))
}

fn from_swapped_bcd(b: u8) -> Result<u8> {
    let (tens, units) = (b & 0xF, b >> 4);
    if tens > 9 || units > 9 {
        return Err(Error::InvalidTimestamp("semi-octet is not a decimal digit"));
    }
    Ok(tens * 10 + units)
}

impl Timestamp {
    /// The time stamp of `t` in UTC (time zone 0), e.g. an SC time stamp for "now" from
    /// `time::OffsetDateTime::now_utc()`.
    pub fn utc(t: time::OffsetDateTime) -> Self {
        let t = t.to_offset(time::UtcOffset::UTC);
        Self {
            year: t.year().rem_euclid(100) as u8,
            month: u8::from(t.month()),
            day: t.day(),
            hour: t.hour(),
            minute: t.minute(),
            second: t.second(),
            tz_quarters: 0,
        }
    }

    /// The seven octets.
    pub fn encode(&self) -> Result<[u8; 7]> {
        let tz = self.tz_quarters.unsigned_abs();
        if tz > 79 {
            return Err(Error::InvalidTimestamp("time zone beyond ±79 quarters"));
        }
        let sign = if self.tz_quarters < 0 { 0x08 } else { 0 };
        Ok([
            swapped_bcd(self.year)?,
            swapped_bcd(self.month)?,
            swapped_bcd(self.day)?,
            swapped_bcd(self.hour)?,
            swapped_bcd(self.minute)?,
            swapped_bcd(self.second)?,
            ((tz % 10) << 4) | sign | (tz / 10),
        ])
    }

    /// From seven octets.
    pub fn decode(b: &[u8; 7]) -> Result<Self> {
        let tz_tens = b[6] & 0x07;
        let tz_units = b[6] >> 4;
        if tz_units > 9 {
            return Err(Error::InvalidTimestamp("time zone is not BCD"));
        }
        let tz = (tz_tens * 10 + tz_units) as i8;
        Ok(Self {
            year: from_swapped_bcd(b[0])?,
            month: from_swapped_bcd(b[1])?,
            day: from_swapped_bcd(b[2])?,
            hour: from_swapped_bcd(b[3])?,
            minute: from_swapped_bcd(b[4])?,
            second: from_swapped_bcd(b[5])?,
            tz_quarters: if b[6] & 0x08 != 0 { -tz } else { tz },
        })
    }

    fn read(r: &mut Reader<'_>, what: &'static str) -> Result<Self> {
        let b: [u8; 7] = r.take(7, what)?.try_into().expect("seven bytes");
        Self::decode(&b)
    }
}

/// TP-VP (§9.2.3.12), whose format TP-VPF gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValidityPeriod {
    /// TP-VPF `10`: one octet, coded per §9.2.3.12.1 (`00`-`8F`: (n+1) × 5 minutes, …).
    Relative(u8),
    /// TP-VPF `01`: seven octets, enhanced format (§9.2.3.12.3), kept as they are.
    Enhanced([u8; 7]),
    /// TP-VPF `11`: an absolute time (§9.2.3.12.2).
    Absolute(Timestamp),
}

impl ValidityPeriod {
    fn vpf(v: Option<&Self>) -> u8 {
        match v {
            None => 0b00,
            Some(Self::Enhanced(_)) => 0b01,
            Some(Self::Relative(_)) => 0b10,
            Some(Self::Absolute(_)) => 0b11,
        }
    }
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        match self {
            Self::Relative(v) => out.push(*v),
            Self::Enhanced(b) => out.extend_from_slice(b),
            Self::Absolute(t) => out.extend_from_slice(&t.encode()?),
        }
        Ok(())
    }
    fn read(vpf: u8, r: &mut Reader<'_>) -> Result<Option<Self>> {
        Ok(match vpf {
            0b00 => None,
            0b10 => Some(Self::Relative(r.u8("TP-VP")?)),
            0b01 => Some(Self::Enhanced(
                r.take(7, "TP-VP")?.try_into().expect("seven bytes"),
            )),
            _ => Some(Self::Absolute(Timestamp::read(r, "TP-VP")?)),
        })
    }
}

// ---------------------------------------------------------------------------------------
// PID (§9.2.3.9) and DCS (23.038 §4)
// ---------------------------------------------------------------------------------------

/// TP-PID (§9.2.3.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Pid(pub u8);

impl Pid {
    /// `00`: default store-and-forward short message.
    pub const DEFAULT: Pid = Pid(0x00);
    /// `7F`: (U)SIM data download (§9.2.3.9; the ME passes the message to the UICC with
    /// ENVELOPE (SMS-PP download), 31.111 §7.1.1).
    pub const SIM_DATA_DOWNLOAD: Pid = Pid(0x7F);
    /// `7C`: ANSI-136 R-DATA.
    pub const ANSI_136_R_DATA: Pid = Pid(0x7C);
}

/// TP-DCS (3GPP TS 23.038 §4), kept as its octet; the methods decode it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Dcs(pub u8);

/// The coding group, bits 7-4 of the DCS (23.038 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodingGroup {
    /// `00xx`: general data coding.
    General,
    /// `01xx`: message marked for automatic deletion, otherwise as general.
    AutomaticDeletion,
    /// `1000`-`1011`: reserved coding groups.
    Reserved,
    /// `1100`: message waiting indication, discard message (GSM 7-bit).
    MessageWaitingDiscard,
    /// `1101`: message waiting indication, store message (GSM 7-bit).
    MessageWaitingStore,
    /// `1110`: message waiting indication, store message (UCS2).
    MessageWaitingStoreUcs2,
    /// `1111`: data coding / message class.
    DataCodingMessageClass,
}

/// The character set of the user data (23.038 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// GSM 7-bit default alphabet: TP-UDL counts septets.
    Gsm7,
    /// 8-bit data: TP-UDL counts octets.
    EightBit,
    /// UCS2: TP-UDL counts octets.
    Ucs2,
    /// The reserved alphabet value `11` of the general groups; receivers treat it as
    /// GSM 7-bit (23.038 §4: reserved codings are assumed to be the default alphabet).
    Reserved,
}

/// The message class (23.038 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageClass {
    /// Class 0: immediate display.
    Class0,
    /// Class 1: ME specific.
    Class1,
    /// Class 2: (U)SIM specific; with PID `7F` it is a data download to the UICC.
    Class2,
    /// Class 3: TE specific.
    Class3,
}

impl Dcs {
    /// `00`: GSM 7-bit default alphabet, no class.
    pub const GSM7: Dcs = Dcs(0x00);
    /// `F6`: data coding / message class group, 8-bit data, class 2 (used for OTA).
    pub const CLASS2_8BIT: Dcs = Dcs(0xF6);
    /// `16`: general group, 8-bit data, class 2.
    pub const GENERAL_CLASS2_8BIT: Dcs = Dcs(0x16);

    /// The coding group.
    pub fn coding_group(self) -> CodingGroup {
        match self.0 >> 4 {
            0x0..=0x3 => CodingGroup::General,
            0x4..=0x7 => CodingGroup::AutomaticDeletion,
            0x8..=0xB => CodingGroup::Reserved,
            0xC => CodingGroup::MessageWaitingDiscard,
            0xD => CodingGroup::MessageWaitingStore,
            0xE => CodingGroup::MessageWaitingStoreUcs2,
            _ => CodingGroup::DataCodingMessageClass,
        }
    }

    /// Whether the text is compressed (general groups, bit 5); TP-UDL then counts octets.
    pub fn compressed(self) -> bool {
        matches!(
            self.coding_group(),
            CodingGroup::General | CodingGroup::AutomaticDeletion
        ) && self.0 & 0x20 != 0
    }

    /// The alphabet.
    pub fn alphabet(self) -> Alphabet {
        match self.coding_group() {
            CodingGroup::General | CodingGroup::AutomaticDeletion => match (self.0 >> 2) & 3 {
                0 => Alphabet::Gsm7,
                1 => Alphabet::EightBit,
                2 => Alphabet::Ucs2,
                _ => Alphabet::Reserved,
            },
            CodingGroup::MessageWaitingStoreUcs2 => Alphabet::Ucs2,
            CodingGroup::DataCodingMessageClass if self.0 & 0x04 != 0 => Alphabet::EightBit,
            _ => Alphabet::Gsm7,
        }
    }

    /// The message class, if the DCS gives one.
    pub fn class(self) -> Option<MessageClass> {
        let has_class = match self.coding_group() {
            CodingGroup::General | CodingGroup::AutomaticDeletion => self.0 & 0x10 != 0,
            CodingGroup::DataCodingMessageClass => true,
            _ => false,
        };
        has_class.then_some(match self.0 & 3 {
            0 => MessageClass::Class0,
            1 => MessageClass::Class1,
            2 => MessageClass::Class2,
            _ => MessageClass::Class3,
        })
    }

    /// Whether TP-UDL counts septets (uncompressed GSM 7-bit, reserved alphabets
    /// included) rather than octets (§9.2.3.16).
    pub fn udl_in_septets(self) -> bool {
        !self.compressed() && matches!(self.alphabet(), Alphabet::Gsm7 | Alphabet::Reserved)
    }
}

// ---------------------------------------------------------------------------------------
// User-data header (§9.2.3.24)
// ---------------------------------------------------------------------------------------

/// IEI `00`: concatenated short messages, 8-bit reference.
pub const IEI_CONCAT_8: u8 = 0x00;
/// IEI `08`: concatenated short messages, 16-bit reference.
pub const IEI_CONCAT_16: u8 = 0x08;
/// IEI `70`: (U)SIM toolkit security header, command packet identifier (31.115 §6.2).
pub const IEI_COMMAND_PACKET: u8 = 0x70;
/// IEI `71`: (U)SIM toolkit security header, response packet identifier (31.115 §7.2).
pub const IEI_RESPONSE_PACKET: u8 = 0x71;

/// A concatenation reference (§9.2.3.24.1 / §9.2.3.24.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConcatRef {
    /// IEI `00`: one octet.
    Eight(u8),
    /// IEI `08`: two octets.
    Sixteen(u16),
}

/// One information element of a user-data header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InformationElement {
    /// IEI `00` or `08`: this part's place in a concatenated message.
    Concat {
        /// Reference number, the same in every part.
        reference: ConcatRef,
        /// Number of parts (1-255).
        total: u8,
        /// This part's sequence number, from 1.
        seq: u8,
    },
    /// IEI `70` with length 0: the TP-UD (or, in concatenated SMS, the message) carries
    /// a command packet (31.115 §6.2).
    CommandPacket,
    /// IEI `71` with length 0: a response packet (31.115 §7.2).
    ResponsePacket,
    /// Any other element, and `00`/`08`/`70`/`71` whose length does not fit the typed
    /// forms above.
    Other {
        /// The identifier.
        iei: u8,
        /// The value (at most 255 octets).
        data: Vec<u8>,
    },
}

impl InformationElement {
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        match self {
            Self::Concat {
                reference: ConcatRef::Eight(r),
                total,
                seq,
            } => out.extend_from_slice(&[IEI_CONCAT_8, 3, *r, *total, *seq]),
            Self::Concat {
                reference: ConcatRef::Sixteen(r),
                total,
                seq,
            } => {
                let [h, l] = r.to_be_bytes();
                out.extend_from_slice(&[IEI_CONCAT_16, 4, h, l, *total, *seq]);
            }
            Self::CommandPacket => out.extend_from_slice(&[IEI_COMMAND_PACKET, 0]),
            Self::ResponsePacket => out.extend_from_slice(&[IEI_RESPONSE_PACKET, 0]),
            Self::Other { iei, data } => {
                let len = u8::try_from(data.len())
                    .map_err(|_| Error::InvalidUdh("element longer than 255 octets"))?;
                out.push(*iei);
                out.push(len);
                out.extend_from_slice(data);
            }
        }
        Ok(())
    }

    fn from_parts(iei: u8, data: &[u8]) -> Self {
        match (iei, data) {
            (IEI_CONCAT_8, &[r, total, seq]) => Self::Concat {
                reference: ConcatRef::Eight(r),
                total,
                seq,
            },
            (IEI_CONCAT_16, &[h, l, total, seq]) => Self::Concat {
                reference: ConcatRef::Sixteen(u16::from_be_bytes([h, l])),
                total,
                seq,
            },
            (IEI_COMMAND_PACKET, []) => Self::CommandPacket,
            (IEI_RESPONSE_PACKET, []) => Self::ResponsePacket,
            _ => Self::Other {
                iei,
                data: data.to_vec(),
            },
        }
    }
}

/// A user-data header: its elements in order (§9.2.3.24).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UserDataHeader {
    /// The information elements.
    pub elements: Vec<InformationElement>,
}

impl UserDataHeader {
    /// The header with these elements.
    pub fn new(elements: Vec<InformationElement>) -> Self {
        Self { elements }
    }

    /// The encoding: UDHL then the elements.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = vec![0];
        for e in &self.elements {
            e.encode_into(&mut out)?;
        }
        out[0] = u8::try_from(out.len() - 1)
            .map_err(|_| Error::InvalidUdh("header longer than 255 octets"))?;
        Ok(out)
    }

    /// The encoded length, UDHL octet included.
    pub fn encoded_len(&self) -> usize {
        1 + self
            .elements
            .iter()
            .map(|e| match e {
                InformationElement::Concat {
                    reference: ConcatRef::Eight(_),
                    ..
                } => 5,
                InformationElement::Concat { .. } => 6,
                InformationElement::CommandPacket | InformationElement::ResponsePacket => 2,
                InformationElement::Other { data, .. } => 2 + data.len(),
            })
            .sum::<usize>()
    }

    /// Decodes a header at the start of `bytes` (UDHL first); returns it and the bytes
    /// after it.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Self, &[u8])> {
        let (&udhl, rest) = bytes
            .split_first()
            .ok_or(Error::InvalidUdh("no UDHL octet"))?;
        let body = rest
            .get(..usize::from(udhl))
            .ok_or(Error::InvalidUdh("UDHL beyond the user data"))?;
        let mut elements = Vec::new();
        let mut r = Reader::new(body);
        while r.remaining() > 0 {
            let iei = r.u8("IEI")?;
            let len = r
                .u8("IEDL")
                .map_err(|_| Error::InvalidUdh("element without a length"))?;
            let data = r
                .take(usize::from(len), "IED")
                .map_err(|_| Error::InvalidUdh("element beyond the header"))?;
            elements.push(InformationElement::from_parts(iei, data));
        }
        Ok((Self { elements }, &rest[usize::from(udhl)..]))
    }

    /// The concatenation element, if any (the first one).
    pub fn concat(&self) -> Option<(ConcatRef, u8, u8)> {
        self.elements.iter().find_map(|e| match e {
            InformationElement::Concat {
                reference,
                total,
                seq,
            } => Some((*reference, *total, *seq)),
            _ => None,
        })
    }

    /// Which OTA packet identifier (IEI `70` / `71`) the header carries, if any.
    pub fn packet_kind(&self) -> Option<PacketKind> {
        self.elements.iter().find_map(|e| match e {
            InformationElement::CommandPacket => Some(PacketKind::Command),
            InformationElement::ResponsePacket => Some(PacketKind::Response),
            _ => None,
        })
    }
}

// ---------------------------------------------------------------------------------------
// User data (§9.2.3.16, §9.2.3.24)
// ---------------------------------------------------------------------------------------

/// TP-UD: an optional header and the payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UserData {
    /// The user-data header (TP-UDHI = 1 when present).
    pub header: Option<UserDataHeader>,
    /// Unpacked septets (`00`-`7F`) when the DCS says GSM 7-bit
    /// ([`Dcs::udl_in_septets`]), octets otherwise.
    pub payload: Vec<u8>,
}

/// Limits on TP-UD: the strict 140 octets, or more for the unpacked text the UICC gives
/// the terminal with SEND SHORT MESSAGE "packing required" (102 223 §6.4.10).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    max_octets: usize,
}

pub(crate) const STRICT: Limits = Limits {
    max_octets: MAX_UD_OCTETS,
};
pub(crate) const LENIENT: Limits = Limits { max_octets: 255 };

impl UserData {
    /// 8-bit (or 7-bit, per the DCS it is used with) payload without header.
    pub fn new(payload: Vec<u8>) -> Self {
        Self {
            header: None,
            payload,
        }
    }

    /// Payload with a header.
    pub fn with_header(header: UserDataHeader, payload: Vec<u8>) -> Self {
        Self {
            header: Some(header),
            payload,
        }
    }

    /// GSM 7-bit text (the DCS must say GSM 7-bit).
    pub fn from_text(text: &str) -> Result<Self> {
        Ok(Self::new(gsm7_encode(text)?))
    }

    /// The payload as text, decoded per the DCS: GSM 7-bit, UCS2 (big-endian, invalid
    /// code units replaced) or, for 8-bit data, `None`.
    pub fn text(&self, dcs: Dcs) -> Option<String> {
        if dcs.compressed() {
            return None;
        }
        match dcs.alphabet() {
            Alphabet::Gsm7 | Alphabet::Reserved => Some(gsm7_decode(&self.payload)),
            Alphabet::Ucs2 => Some(ucs2_decode(&self.payload)),
            Alphabet::EightBit => None,
        }
    }

    /// TP-UDL and TP-UD for this user data under `dcs`.
    pub fn encode(&self, dcs: Dcs) -> Result<(u8, Vec<u8>)> {
        self.encode_with(dcs, STRICT)
    }

    pub(crate) fn encode_with(&self, dcs: Dcs, limits: Limits) -> Result<(u8, Vec<u8>)> {
        let mut out = match &self.header {
            Some(h) => h.encode()?,
            None => Vec::new(),
        };
        let h = out.len();
        let (udl, max, unit) = if dcs.udl_in_septets() {
            // §9.2.3.24: the header occupies ceil(8h / 7) septets, the payload starts on
            // the next septet boundary after fill bits.
            let hs = (8 * h).div_ceil(7);
            let fill = (7 * hs - 8 * h) as u8;
            out.extend_from_slice(&pack_septets(&self.payload, fill)?);
            (hs + self.payload.len(), MAX_UD_SEPTETS, "septets")
        } else {
            out.extend_from_slice(&self.payload);
            (out.len(), limits.max_octets, "octets")
        };
        if udl > max || out.len() > limits.max_octets.max(MAX_UD_OCTETS) || udl > 255 {
            return Err(Error::UserDataTooLong {
                len: udl,
                max,
                unit,
            });
        }
        Ok((udl as u8, out))
    }

    /// Decodes TP-UD given TP-UDHI, the DCS, TP-UDL and exactly the TP-UD octets.
    pub fn decode(udhi: bool, dcs: Dcs, udl: u8, ud: &[u8]) -> Result<Self> {
        Self::decode_with(udhi, dcs, udl, ud, STRICT)
    }

    pub(crate) fn decode_with(
        udhi: bool,
        dcs: Dcs,
        udl: u8,
        ud: &[u8],
        limits: Limits,
    ) -> Result<Self> {
        let septets = dcs.udl_in_septets();
        let n = usize::from(udl);
        let (expected, max) = if septets {
            ((7 * n).div_ceil(8), MAX_UD_SEPTETS)
        } else {
            (n, limits.max_octets)
        };
        if n > max {
            return Err(Error::BadUdl {
                udl,
                reason: "above the maximum",
            });
        }
        if ud.len() != expected {
            return Err(if ud.len() < expected {
                Error::Truncated("TP-UD")
            } else {
                Error::TrailingBytes(ud.len() - expected)
            });
        }
        let (header, after, h) = if udhi {
            let (hdr, after) = UserDataHeader::decode_prefix(ud)?;
            let h = ud.len() - after.len();
            (Some(hdr), after, h)
        } else {
            (None, ud, 0)
        };
        let payload = if septets {
            let hs = (8 * h).div_ceil(7);
            let count = n.checked_sub(hs).ok_or(Error::BadUdl {
                udl,
                reason: "fewer septets than the header",
            })?;
            unpack_septets(after, (7 * hs - 8 * h) as u8, count)?
        } else {
            after.to_vec()
        };
        Ok(Self { header, payload })
    }

    fn read(r: &mut Reader<'_>, udhi: bool, dcs: Dcs, limits: Limits) -> Result<Self> {
        let udl = r.u8("TP-UDL")?;
        Self::decode_with(udhi, dcs, udl, r.rest(), limits)
    }
}

fn ucs2_decode(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .collect();
    String::from_utf16_lossy(&units)
}

// ---------------------------------------------------------------------------------------
// TPDUs (§9.2.2)
// ---------------------------------------------------------------------------------------

/// SMS-DELIVER (§9.2.2.1): SC → MS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsDeliver {
    /// TP-MMS inverted: `true` when more messages are waiting in the SC (TP-MMS = 0).
    pub more_messages: bool,
    /// TP-LP (bit 3): loop prevention.
    pub loop_prevention: bool,
    /// TP-RP: reply path.
    pub reply_path: bool,
    /// TP-SRI: a status report will be returned to the originator.
    pub status_report_indication: bool,
    /// TP-OA.
    pub originator: Address,
    /// TP-PID.
    pub pid: Pid,
    /// TP-DCS.
    pub dcs: Dcs,
    /// TP-SCTS.
    pub scts: Timestamp,
    /// TP-UD (TP-UDHI follows from its header).
    pub user_data: UserData,
}

/// MTI values (§9.2.3.1).
const MTI_DELIVER: u8 = 0b00;
const MTI_SUBMIT: u8 = 0b01;
const MTI_STATUS_REPORT: u8 = 0b10;

fn check_mti(first: u8, expected: u8) -> Result<()> {
    match first & 3 {
        m if m == expected => Ok(()),
        found => Err(Error::WrongMessageType { expected, found }),
    }
}

impl SmsDeliver {
    /// An OTA SMS-DELIVER: PID `7F` (SIM data download), DCS `F6` (class 2, 8-bit),
    /// no more messages, as 31.115 §6.1 / 31.111 §7.1.1 expect.
    pub fn ota(originator: Address, scts: Timestamp, user_data: UserData) -> Self {
        Self {
            more_messages: false,
            loop_prevention: false,
            reply_path: false,
            status_report_indication: false,
            originator,
            pid: Pid::SIM_DATA_DOWNLOAD,
            dcs: Dcs::CLASS2_8BIT,
            scts,
            user_data,
        }
    }

    /// The encoding.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = vec![
            MTI_DELIVER
                | u8::from(!self.more_messages) << 2
                | u8::from(self.loop_prevention) << 3
                | u8::from(self.status_report_indication) << 5
                | u8::from(self.user_data.header.is_some()) << 6
                | u8::from(self.reply_path) << 7,
        ];
        self.originator.encode_into(&mut out)?;
        out.push(self.pid.0);
        out.push(self.dcs.0);
        out.extend_from_slice(&self.scts.encode()?);
        let (udl, ud) = self.user_data.encode(self.dcs)?;
        out.push(udl);
        out.extend_from_slice(&ud);
        Ok(out)
    }

    /// Decodes exactly one SMS-DELIVER.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let first = r.u8("first octet")?;
        check_mti(first, MTI_DELIVER)?;
        let originator = Address::read(&mut r)?;
        let pid = Pid(r.u8("TP-PID")?);
        let dcs = Dcs(r.u8("TP-DCS")?);
        let scts = Timestamp::read(&mut r, "TP-SCTS")?;
        let user_data = UserData::read(&mut r, first & 0x40 != 0, dcs, STRICT)?;
        r.finish()?;
        Ok(Self {
            more_messages: first & 0x04 == 0,
            loop_prevention: first & 0x08 != 0,
            reply_path: first & 0x80 != 0,
            status_report_indication: first & 0x20 != 0,
            originator,
            pid,
            dcs,
            scts,
            user_data,
        })
    }
}

/// SMS-SUBMIT (§9.2.2.2): MS → SC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsSubmit {
    /// TP-RD: reject duplicates.
    pub reject_duplicates: bool,
    /// TP-RP: reply path.
    pub reply_path: bool,
    /// TP-SRR: status report requested.
    pub status_report_request: bool,
    /// TP-MR.
    pub message_reference: u8,
    /// TP-DA.
    pub destination: Address,
    /// TP-PID.
    pub pid: Pid,
    /// TP-DCS.
    pub dcs: Dcs,
    /// TP-VP, whose variant gives TP-VPF (`None`: TP-VPF `00`).
    pub validity: Option<ValidityPeriod>,
    /// TP-UD.
    pub user_data: UserData,
}

impl SmsSubmit {
    /// An OTA SMS-SUBMIT carrying a response packet (31.115 §7.2: PID `7F`, DCS `F6`).
    pub fn ota(destination: Address, message_reference: u8, user_data: UserData) -> Self {
        Self {
            reject_duplicates: false,
            reply_path: false,
            status_report_request: false,
            message_reference,
            destination,
            pid: Pid::SIM_DATA_DOWNLOAD,
            dcs: Dcs::CLASS2_8BIT,
            validity: None,
            user_data,
        }
    }

    /// The encoding.
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.encode_with(STRICT)
    }

    pub(crate) fn encode_with(&self, limits: Limits) -> Result<Vec<u8>> {
        let mut out = vec![
            MTI_SUBMIT
                | u8::from(self.reject_duplicates) << 2
                | ValidityPeriod::vpf(self.validity.as_ref()) << 3
                | u8::from(self.status_report_request) << 5
                | u8::from(self.user_data.header.is_some()) << 6
                | u8::from(self.reply_path) << 7,
        ];
        out.push(self.message_reference);
        self.destination.encode_into(&mut out)?;
        out.push(self.pid.0);
        out.push(self.dcs.0);
        if let Some(vp) = &self.validity {
            vp.encode_into(&mut out)?;
        }
        let (udl, ud) = self.user_data.encode_with(self.dcs, limits)?;
        out.push(udl);
        out.extend_from_slice(&ud);
        Ok(out)
    }

    /// Decodes exactly one SMS-SUBMIT.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        Self::decode_with(bytes, STRICT)
    }

    pub(crate) fn decode_with(bytes: &[u8], limits: Limits) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let first = r.u8("first octet")?;
        check_mti(first, MTI_SUBMIT)?;
        let message_reference = r.u8("TP-MR")?;
        let destination = Address::read(&mut r)?;
        let pid = Pid(r.u8("TP-PID")?);
        let dcs = Dcs(r.u8("TP-DCS")?);
        let validity = ValidityPeriod::read((first >> 3) & 3, &mut r)?;
        let user_data = UserData::read(&mut r, first & 0x40 != 0, dcs, limits)?;
        r.finish()?;
        Ok(Self {
            reject_duplicates: first & 0x04 != 0,
            reply_path: first & 0x80 != 0,
            status_report_request: first & 0x20 != 0,
            message_reference,
            destination,
            pid,
            dcs,
            validity,
            user_data,
        })
    }
}

/// The optional PID / DCS / UD that TP-PI announces in reports (§9.2.3.27).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportParameters {
    /// TP-PID, if present.
    pub pid: Option<Pid>,
    /// TP-DCS, if present (GSM 7-bit is assumed for TP-UD when absent).
    pub dcs: Option<Dcs>,
    /// TP-UDL + TP-UD, if present.
    pub user_data: Option<UserData>,
}

impl ReportParameters {
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.pid.is_none() && self.dcs.is_none() && self.user_data.is_none() {
            return Ok(());
        }
        out.push(
            u8::from(self.pid.is_some())
                | u8::from(self.dcs.is_some()) << 1
                | u8::from(self.user_data.is_some()) << 2,
        );
        if let Some(p) = self.pid {
            out.push(p.0);
        }
        if let Some(d) = self.dcs {
            out.push(d.0);
        }
        if let Some(ud) = &self.user_data {
            let (udl, bytes) = ud.encode(self.dcs.unwrap_or_default())?;
            out.push(udl);
            out.extend_from_slice(&bytes);
        }
        Ok(())
    }

    fn read(r: &mut Reader<'_>, udhi: bool) -> Result<Self> {
        if r.remaining() == 0 {
            return Ok(Self::default());
        }
        let pi = r.u8("TP-PI")?;
        let pid = (pi & 1 != 0).then(|| r.u8("TP-PID").map(Pid)).transpose()?;
        let dcs = (pi & 2 != 0).then(|| r.u8("TP-DCS").map(Dcs)).transpose()?;
        let user_data = (pi & 4 != 0)
            .then(|| UserData::read(r, udhi, dcs.unwrap_or_default(), STRICT))
            .transpose()?;
        Ok(Self {
            pid,
            dcs,
            user_data,
        })
    }
}

/// SMS-STATUS-REPORT (§9.2.2.3): SC → MS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsStatusReport {
    /// TP-MMS inverted: `true` when more messages are waiting.
    pub more_messages: bool,
    /// TP-LP.
    pub loop_prevention: bool,
    /// TP-SRQ: the report is the result of an SMS-COMMAND (`true`) or SMS-SUBMIT.
    pub status_report_qualifier: bool,
    /// TP-MR of the message reported on.
    pub message_reference: u8,
    /// TP-RA.
    pub recipient: Address,
    /// TP-SCTS.
    pub scts: Timestamp,
    /// TP-DT.
    pub discharge_time: Timestamp,
    /// TP-ST (§9.2.3.15).
    pub status: u8,
    /// TP-PI and what it announces.
    pub parameters: ReportParameters,
}

impl SmsStatusReport {
    /// The encoding.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let udhi = self
            .parameters
            .user_data
            .as_ref()
            .is_some_and(|u| u.header.is_some());
        let mut out = vec![
            MTI_STATUS_REPORT
                | u8::from(!self.more_messages) << 2
                | u8::from(self.loop_prevention) << 3
                | u8::from(self.status_report_qualifier) << 5
                | u8::from(udhi) << 6,
        ];
        out.push(self.message_reference);
        self.recipient.encode_into(&mut out)?;
        out.extend_from_slice(&self.scts.encode()?);
        out.extend_from_slice(&self.discharge_time.encode()?);
        out.push(self.status);
        self.parameters.encode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes exactly one SMS-STATUS-REPORT.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let first = r.u8("first octet")?;
        check_mti(first, MTI_STATUS_REPORT)?;
        let message_reference = r.u8("TP-MR")?;
        let recipient = Address::read(&mut r)?;
        let scts = Timestamp::read(&mut r, "TP-SCTS")?;
        let discharge_time = Timestamp::read(&mut r, "TP-DT")?;
        let status = r.u8("TP-ST")?;
        let parameters = ReportParameters::read(&mut r, first & 0x40 != 0)?;
        r.finish()?;
        Ok(Self {
            more_messages: first & 0x04 == 0,
            loop_prevention: first & 0x08 != 0,
            status_report_qualifier: first & 0x20 != 0,
            message_reference,
            recipient,
            scts,
            discharge_time,
            status,
            parameters,
        })
    }
}

/// SMS-DELIVER-REPORT (§9.2.2.1a): MS → SC inside RP-ACK (`failure_cause` `None`) or
/// RP-ERROR. For SMS-PP data download the handset puts the UICC's response (the PoR)
/// in its TP-UD, with the PID and DCS of the SMS-DELIVER (31.111 §7.1.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsDeliverReport {
    /// TP-FCS (§9.2.3.22), only for RP-ERROR: for example `D4` (SIM Application Toolkit
    /// busy) or `D5` (SIM data download error).
    pub failure_cause: Option<u8>,
    /// TP-PI and what it announces.
    pub parameters: ReportParameters,
}

/// TP-FCS `D4`: (U)SIM Application Toolkit busy (§9.2.3.22).
pub const FCS_SAT_BUSY: u8 = 0xD4;
/// TP-FCS `D5`: (U)SIM data download error (§9.2.3.22).
pub const FCS_DATA_DOWNLOAD_ERROR: u8 = 0xD5;

impl SmsDeliverReport {
    /// The RP-ACK report that carries `por` (empty: no TP-UD) with the SMS-DELIVER's PID
    /// and DCS. `por` is the card's answer to the SMS-PP download as it gave it: a
    /// response packet framed with its user-data header (`02 71 00` RPL…, 3GPP TS 31.115
    /// §4.3), which becomes the report's TP-UD with TP-UDHI set; bytes that do not start
    /// with a well-formed header are carried as they are, without one.
    pub fn ack(pid: Pid, dcs: Dcs, por: Vec<u8>) -> Self {
        let user_data = (!por.is_empty()).then(|| match UserDataHeader::decode_prefix(&por) {
            Ok((header, rest)) if por[0] > 0 => UserData::with_header(header, rest.to_vec()),
            _ => UserData::new(por),
        });
        Self {
            failure_cause: None,
            parameters: ReportParameters {
                pid: Some(pid),
                dcs: Some(dcs),
                user_data,
            },
        }
    }

    /// The encoding (TP-UDHI from the user data, TP-MTI `00`).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let udhi = self
            .parameters
            .user_data
            .as_ref()
            .is_some_and(|u| u.header.is_some());
        let mut out = vec![MTI_DELIVER | u8::from(udhi) << 6];
        if let Some(fcs) = self.failure_cause {
            out.push(fcs);
        }
        // TP-PI is mandatory in SMS-DELIVER-REPORT.
        let before = out.len();
        self.parameters.encode_into(&mut out)?;
        if out.len() == before {
            out.push(0);
        }
        Ok(out)
    }

    /// Decodes exactly one SMS-DELIVER-REPORT; `rp_error` tells whether it came in an
    /// RP-ERROR (then TP-FCS is present).
    pub fn decode(bytes: &[u8], rp_error: bool) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let first = r.u8("first octet")?;
        check_mti(first, MTI_DELIVER)?;
        let failure_cause = rp_error.then(|| r.u8("TP-FCS")).transpose()?;
        if r.remaining() == 0 {
            return Err(Error::Truncated("TP-PI"));
        }
        let parameters = ReportParameters::read(&mut r, first & 0x40 != 0)?;
        r.finish()?;
        Ok(Self {
            failure_cause,
            parameters,
        })
    }
}

// ---------------------------------------------------------------------------------------
// OTA concatenation (31.115 §6.2, §6.3, §7.2; 23.040 §9.2.3.24.1)
// ---------------------------------------------------------------------------------------

/// Which OTA packet a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PacketKind {
    /// A command packet (IEI `70`), in SMS-DELIVER.
    Command,
    /// A response packet / PoR (IEI `71`), in SMS-SUBMIT (or the DELIVER-REPORT).
    Response,
}

impl PacketKind {
    fn element(self) -> InformationElement {
        match self {
            Self::Command => InformationElement::CommandPacket,
            Self::Response => InformationElement::ResponsePacket,
        }
    }
}

/// Octets of packet in a single SMS: 140 − (UDHL + `70 00`).
const SINGLE_CAPACITY: usize = MAX_UD_OCTETS - 3;

/// Packet octets (first part, later parts) of a concatenated message: the first part's
/// header is UDHL + concatenation IE + `70 00`, later ones UDHL + concatenation IE.
fn concat_capacity(ref16: bool) -> (usize, usize) {
    let ie = if ref16 { 6 } else { 5 };
    (MAX_UD_OCTETS - 1 - ie - 2, MAX_UD_OCTETS - 1 - ie)
}

/// The fewest SMS that carry a packet of `packet_len` octets (from CPL or RPL on):
/// one when it fits 137 octets, otherwise concatenated parts of 132 + 134 × (n − 1)
/// octets (8-bit reference) or 131 + 133 × (n − 1) (16-bit reference). Above 255 the
/// packet cannot be sent ([`split_packet`] refuses it), but the count is still given.
pub fn sms_count(packet_len: usize, ref16: bool) -> usize {
    if packet_len <= SINGLE_CAPACITY {
        return 1;
    }
    let (first, later) = concat_capacity(ref16);
    1 + (packet_len - first).div_ceil(later)
}

/// Splits a packet into the TP-UD of the fewest SMS ([`sms_count`]) of 140 octets:
/// a single SMS gets the header `02 70 00` (or `02 71 00`); in concatenated parts the
/// first header carries the concatenation IE then IEI `70`/`71`, later ones only the
/// concatenation IE (31.115 §6.3). Use with DCS `F6` ([`SmsDeliver::ota`],
/// [`SmsSubmit::ota`]).
pub fn split_packet(
    kind: PacketKind,
    packet: &[u8],
    reference: ConcatRef,
) -> Result<Vec<UserData>> {
    if packet.is_empty() {
        return Err(Error::CannotSplit {
            len: 0,
            reason: "empty packet",
        });
    }
    let ref16 = matches!(reference, ConcatRef::Sixteen(_));
    let n = sms_count(packet.len(), ref16);
    if n == 1 {
        return Ok(vec![UserData::with_header(
            UserDataHeader::new(vec![kind.element()]),
            packet.to_vec(),
        )]);
    }
    let total = u8::try_from(n).map_err(|_| Error::CannotSplit {
        len: packet.len(),
        reason: "more than 255 parts",
    })?;
    let (first, later) = concat_capacity(ref16);
    let mut parts = Vec::with_capacity(n);
    let mut rest = packet;
    for seq in 1..=total {
        let cap = if seq == 1 { first } else { later };
        let (chunk, tail) = rest.split_at(cap.min(rest.len()));
        rest = tail;
        let mut elements = vec![InformationElement::Concat {
            reference,
            total,
            seq,
        }];
        if seq == 1 {
            elements.push(kind.element());
        }
        parts.push(UserData::with_header(
            UserDataHeader::new(elements),
            chunk.to_vec(),
        ));
    }
    Ok(parts)
}

/// What identifies one concatenated message being reassembled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReassemblyKey {
    /// The originator (TP-OA, or the MS's address for responses).
    pub originator: Address,
    /// The concatenation reference.
    pub reference: ConcatRef,
    /// The number of parts.
    pub total: u8,
}

/// What [`Reassembler::push`] made of a part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The packet is whole (a single SMS, or the last missing part arrived).
    Complete {
        /// Command or response packet.
        kind: PacketKind,
        /// The packet from CPL / RPL on.
        packet: Vec<u8>,
    },
    /// Parts are still missing.
    Incomplete {
        /// The message the part belongs to.
        key: ReassemblyKey,
        /// Sequence numbers still missing, ascending.
        missing: Vec<u8>,
    },
    /// The part had already been received, with the same contents; nothing changed.
    Duplicate {
        /// The message the part belongs to.
        key: ReassemblyKey,
        /// Sequence numbers still missing, ascending.
        missing: Vec<u8>,
    },
}

/// Reassembles OTA packets from (possibly concatenated) SMS user data, keyed by
/// (originator, reference, total). Time-outs are the caller's: it drops a message it
/// stopped waiting for with [`Reassembler::drop_message`].
#[derive(Debug, Default, Clone)]
pub struct Reassembler {
    pending: BTreeMap<ReassemblyKey, Pending>,
}

/// The parts of one message received so far.
#[derive(Debug, Default, Clone)]
struct Pending {
    /// Known once part 1 arrived.
    kind: Option<PacketKind>,
    parts: BTreeMap<u8, Vec<u8>>,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the user data of one SMS from `originator`.
    ///
    /// Errors, which leave the state unchanged: no OTA packet identifier and no
    /// concatenation IE; sequence number 0 or above the total; a first part without
    /// IEI `70`/`71` or a later part with one; a part received again with different
    /// contents.
    pub fn push(&mut self, originator: &Address, user_data: &UserData) -> Result<Progress> {
        let header = user_data
            .header
            .as_ref()
            .ok_or(Error::InvalidPart("no user-data header"))?;
        let kind = header.packet_kind();
        let Some((reference, total, seq)) = header.concat() else {
            let kind = kind.ok_or(Error::InvalidPart("neither IEI 70/71 nor concatenation"))?;
            return Ok(Progress::Complete {
                kind,
                packet: user_data.payload.clone(),
            });
        };
        if total == 0 || seq == 0 || seq > total {
            return Err(Error::InvalidPart("sequence number outside 1..=total"));
        }
        match (seq, kind) {
            (1, None) => return Err(Error::InvalidPart("first part without IEI 70/71")),
            (s, Some(_)) if s != 1 => {
                return Err(Error::InvalidPart(
                    "IEI 70/71 in a part other than the first",
                ))
            }
            _ => {}
        }
        let key = ReassemblyKey {
            originator: originator.clone(),
            reference,
            total,
        };
        let pending = self.pending.entry(key.clone()).or_default();
        if let Some(existing) = pending.parts.get(&seq) {
            if *existing != user_data.payload {
                return Err(Error::ConflictingDuplicate { seq, total });
            }
            let missing = Self::missing_of(&pending.parts, total);
            return Ok(Progress::Duplicate { key, missing });
        }
        pending.parts.insert(seq, user_data.payload.clone());
        if seq == 1 {
            pending.kind = kind;
        }
        let missing = Self::missing_of(&pending.parts, total);
        if !missing.is_empty() {
            return Ok(Progress::Incomplete { key, missing });
        }
        let done = self.pending.remove(&key).expect("present");
        Ok(Progress::Complete {
            kind: done.kind.expect("part 1 present"),
            packet: done.parts.into_values().flatten().collect(),
        })
    }

    fn missing_of(parts: &BTreeMap<u8, Vec<u8>>, total: u8) -> Vec<u8> {
        (1..=total).filter(|s| !parts.contains_key(s)).collect()
    }

    /// The parts still missing for a pending message, `None` if none is pending.
    pub fn missing(&self, key: &ReassemblyKey) -> Option<Vec<u8>> {
        self.pending
            .get(key)
            .map(|p| Self::missing_of(&p.parts, key.total))
    }

    /// The messages waiting for parts.
    pub fn pending(&self) -> impl Iterator<Item = &ReassemblyKey> {
        self.pending.keys()
    }

    /// Forgets a pending message (after the caller's time-out); whether it was there.
    pub fn drop_message(&mut self, key: &ReassemblyKey) -> bool {
        self.pending.remove(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_por_rides_with_udhi_set() {
        let framed = vec![0x02, 0x71, 0x00, 0x00, 0x0E, 0x0A];
        let r = SmsDeliverReport::ack(Pid(0x7F), Dcs(0xF6), framed);
        let bytes = r.encode().unwrap();
        assert_eq!(bytes[0] & 0x40, 0x40, "TP-UDHI");
        let back = SmsDeliverReport::decode(&bytes, false).unwrap();
        let ud = back.parameters.user_data.unwrap();
        assert_eq!(ud.header.unwrap().packet_kind(), Some(PacketKind::Response));
        assert_eq!(ud.payload, vec![0x00, 0x0E, 0x0A]);
    }
}
