//! Secured packets of ETSI TS 102 225 with the SMS specifics of 3GPP TS 31.115 (the
//! "SCP80" of GlobalPlatform): the security parameter indicator ([`Spi`]), the key
//! identifiers ([`Kic`], [`Kid`]), the replay counter ([`Counter`]), command packets
//! ([`secure_command`] / [`open_command`]; several under one key set at once, with the
//! DES family's chains interleaved: [`secure_commands`] / [`open_commands`]) and response
//! packets, the PoR ([`secure_response`] / [`open_response`]).
//!
//! Layout of a command packet as carried in an SMS (TS 31.115 §4.2), after the user
//! data header `02 70 00`:
//!
//! ```text
//! CPL(2) CHL(1) SPI(2) KIc(1) KID(1) TAR(3) | CNTR(5) PCNTR(1) RC/CC/DS(n) data padding
//!                                           \____________ ciphered (zero IV) _________/
//! ```
//!
//! and of a response packet (TS 31.115 §4.4), after the user data header `02 71 00`:
//!
//! ```text
//! RPL(2) RHL(1) TAR(3) | CNTR(5) PCNTR(1) Status(1) RC/CC/DS(n) data padding
//!                      \____________ ciphered (zero IV) _________________/
//! ```
//!
//! What the RC/CC/DS covers (TS 102 225 §5.1.1 and §5.1.2, TS 31.115 §4.2 and §4.4),
//! checked against the known answers in `tests/vectors/` (pySim, asterix and a card
//! trace):
//!
//! * command packet: `CPL CHL SPI KIc KID TAR CNTR PCNTR` then the data and the
//!   ciphering padding — the user data header is *not* covered;
//! * response packet: the user data header `02 71 00`, then `RPL RHL TAR CNTR PCNTR
//!   Status`, then the data and the padding.
//!
//! DES/3DES CBC-MACs pad their input with zeros to a multiple of 8 (those extra zeros are
//! never sent); AES-CMAC (NIST SP 800-38B) pads itself. The CC is 8 bytes for both
//! families: the last CBC block, or the leftmost 64 bits of the CMAC.
//!
//! Everything here is a pure codec: no I/O, no stored state. The caller keeps the keys
//! and the counters and passes them in.

use aes::{Aes128, Aes192, Aes256};
use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use cmac::{Cmac, Mac};
use core::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

mod batch;
mod fast_des;

pub use batch::{open_commands, secure_commands};

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why a packet could not be built or opened.
///
/// [`Error::por_status`] gives the response status code a card answers with when
/// opening a command packet fails this way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the fixed part of a packet or field needs.
    #[error("{what} too short: {have} bytes, at least {need} needed")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// The minimum size.
        need: usize,
        /// The size found.
        have: usize,
    },
    /// A length field (CPL, RPL) that does not match the bytes present.
    #[error("{what} says {declared} bytes follow it, but {actual} do")]
    LengthMismatch {
        /// Which length field.
        what: &'static str,
        /// Its value.
        declared: usize,
        /// The bytes actually present after it.
        actual: usize,
    },
    /// A header length (CHL, RHL) other than the one the SPI and KID imply.
    #[error("{what} is {declared}, but the SPI and KID imply {expected}")]
    HeaderLength {
        /// Which header length field.
        what: &'static str,
        /// Its value.
        declared: usize,
        /// The value the security parameters require.
        expected: usize,
    },
    /// A packet longer than a 2-byte length field can describe.
    #[error("packet of {0} bytes is longer than CPL/RPL can describe (65535)")]
    TooLong(usize),
    /// A security mechanism this codec does not implement or the spec does not allow
    /// here (digital signatures, proprietary or implicit algorithms, DES-ECB, reserved
    /// codings).
    #[error("unsupported security parameters: {0}")]
    Unsupported(String),
    /// The key the SPI asks for was not supplied.
    #[error("no {0} key supplied")]
    MissingKey(&'static str),
    /// A key of the wrong size for its algorithm.
    #[error("{algorithm} key of {len} bytes; {expected} needed")]
    KeyLength {
        /// The algorithm.
        algorithm: &'static str,
        /// The size given.
        len: usize,
        /// The size or sizes allowed.
        expected: &'static str,
    },
    /// The ciphered part is not a whole number of cipher blocks, or the padding counter
    /// is inconsistent (TS 102 225 status `05`).
    #[error("ciphering error: {0}")]
    Ciphering(String),
    /// The RC, CC or DS does not match (TS 102 225 status `01`).
    #[error("RC/CC/DS verification failed")]
    ChecksumMismatch,
    /// The counter is not higher than the stored one (status `02`).
    #[error("counter {received} too low (stored counter {stored})")]
    CounterLow {
        /// The counter in the packet.
        received: Counter,
        /// The caller's stored counter.
        stored: Counter,
    },
    /// The counter is more than one higher than the stored one when the SPI asks for
    /// exactly one higher (status `03`).
    #[error("counter {received} too high (stored counter {stored}, exactly one higher required)")]
    CounterHigh {
        /// The counter in the packet.
        received: Counter,
        /// The caller's stored counter.
        stored: Counter,
    },
    /// The stored counter has reached its maximum value: no further packet that needs
    /// a counter check can be accepted (status `04`).
    #[error("counter blocked (stored counter reached {0})")]
    CounterBlocked(Counter),
    /// An SMS user data header that is not the one this packet type needs.
    #[error("SMS framing: {0}")]
    Framing(String),
    /// A response packet that arrived without the security its SPI requires, with a
    /// status that does not allow that (only security errors are sent unsecured).
    #[error("unsecured PoR with status {0}: only security errors may be sent unsecured")]
    UnsecuredPor(ResponseStatus),
}

impl Error {
    /// The response status code (TS 102 225 table "Response Status Codes") a receiving
    /// entity answers with when opening a command packet fails with this error, or `None`
    /// when the packet is too malformed to address a PoR to (no TAR can be read).
    pub fn por_status(&self) -> Option<ResponseStatus> {
        Some(match self {
            Error::ChecksumMismatch => ResponseStatus::RcCcDsFailed,
            Error::CounterLow { .. } => ResponseStatus::CounterLow,
            Error::CounterHigh { .. } => ResponseStatus::CounterHigh,
            Error::CounterBlocked(_) => ResponseStatus::CounterBlocked,
            Error::Ciphering(_) => ResponseStatus::CipheringError,
            Error::Truncated { need, .. } if *need <= COMMAND_HEADER_MIN => return None,
            Error::Framing(_) => return None,
            _ => ResponseStatus::UnidentifiedSecurityError,
        })
    }
}

/// CPL(2) CHL(1) SPI(2) KIc(1) KID(1) TAR(3): the part read before anything is checked.
const COMMAND_HEADER_MIN: usize = 10;

// ---------------------------------------------------------------------------------------
// SPI
// ---------------------------------------------------------------------------------------

/// Which integrity mechanism protects a packet (SPI b2b1, TS 102 225 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Integrity {
    /// `00`: no RC, CC or DS.
    #[default]
    None,
    /// `01`: redundancy check (CRC16 or CRC32, chosen by the KID).
    Rc,
    /// `10`: cryptographic checksum (DES/3DES CBC-MAC or AES-CMAC, chosen by the KID).
    Cc,
    /// `11`: digital signature (parsed; not implemented by this codec).
    Ds,
}

impl Integrity {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => Self::None,
            1 => Self::Rc,
            2 => Self::Cc,
            _ => Self::Ds,
        }
    }
    fn bits(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Rc => 1,
            Self::Cc => 2,
            Self::Ds => 3,
        }
    }
}

impl fmt::Display for Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "no RC/CC/DS",
            Self::Rc => "redundancy check",
            Self::Cc => "cryptographic checksum",
            Self::Ds => "digital signature",
        })
    }
}

/// How the receiver checks the counter (SPI first octet b5b4, TS 102 225 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CounterMode {
    /// `00`: no counter.
    #[default]
    NoCounter,
    /// `01`: counter available, no replay or sequence checking.
    NoReplayCheck,
    /// `10`: process if the counter is higher than the stored one.
    Higher,
    /// `11`: process if the counter is exactly one higher than the stored one.
    OneHigher,
}

impl CounterMode {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => Self::NoCounter,
            1 => Self::NoReplayCheck,
            2 => Self::Higher,
            _ => Self::OneHigher,
        }
    }
    fn bits(self) -> u8 {
        match self {
            Self::NoCounter => 0,
            Self::NoReplayCheck => 1,
            Self::Higher => 2,
            Self::OneHigher => 3,
        }
    }
}

impl fmt::Display for CounterMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoCounter => "no counter",
            Self::NoReplayCheck => "counter available, no replay or sequence checking",
            Self::Higher => "process if counter higher than stored",
            Self::OneHigher => "process if counter exactly one higher than stored",
        })
    }
}

/// Whether a PoR is wanted (SPI second octet b2b1, TS 102 225 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PorRequest {
    /// `00`: no PoR reply to the sending entity.
    #[default]
    No,
    /// `01`: PoR required.
    Always,
    /// `10`: PoR required only when an error has occurred.
    OnError,
    /// `11`: reserved; kept so that every SPI value round-trips.
    Reserved,
}

impl PorRequest {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => Self::No,
            1 => Self::Always,
            2 => Self::OnError,
            _ => Self::Reserved,
        }
    }
    fn bits(self) -> u8 {
        match self {
            Self::No => 0,
            Self::Always => 1,
            Self::OnError => 2,
            Self::Reserved => 3,
        }
    }
}

/// How the PoR is sent back (SPI second octet b6, TS 31.115 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PorTransport {
    /// `0`: in the SMS-DELIVER-REPORT.
    #[default]
    DeliverReport,
    /// `1`: in an SMS-SUBMIT.
    SmsSubmit,
}

/// The security parameter indicator: two octets, every field of TS 102 225 §5.1.1 and
/// TS 31.115 §4.2.
///
/// Decoding is total and lossless: the reserved bits (first octet b8–b6, second octet
/// b8–b7) and the reserved PoR request `11` are kept as read, so
/// `Spi::from_bytes(b).to_bytes() == b` for all 65536 values. [`Spi::has_reserved`] tells
/// whether any of them is used; [`open_command`] refuses such SPIs (status `06`), since
/// their meaning is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Spi {
    /// First octet b2b1: RC, CC or DS on the command packet.
    pub integrity: Integrity,
    /// First octet b3: the command packet is ciphered.
    pub ciphering: bool,
    /// First octet b5b4: counter handling.
    pub counter: CounterMode,
    /// First octet b8–b6, reserved: 0 to 7 as read.
    pub reserved1: u8,
    /// Second octet b2b1: whether a PoR is wanted.
    pub por: PorRequest,
    /// Second octet b4b3: RC, CC or DS on the PoR.
    pub por_integrity: Integrity,
    /// Second octet b5: the PoR is ciphered.
    pub por_ciphered: bool,
    /// Second octet b6: the PoR goes in an SMS-DELIVER-REPORT or an SMS-SUBMIT.
    pub por_transport: PorTransport,
    /// Second octet b8–b7, reserved: 0 to 3 as read.
    pub reserved2: u8,
}

impl Spi {
    /// Decodes the two SPI octets. Never fails (see the type's documentation).
    pub fn from_bytes(b: [u8; 2]) -> Self {
        Self {
            integrity: Integrity::from_bits(b[0]),
            ciphering: b[0] & 0x04 != 0,
            counter: CounterMode::from_bits(b[0] >> 3),
            reserved1: b[0] >> 5,
            por: PorRequest::from_bits(b[1]),
            por_integrity: Integrity::from_bits(b[1] >> 2),
            por_ciphered: b[1] & 0x10 != 0,
            por_transport: if b[1] & 0x20 != 0 {
                PorTransport::SmsSubmit
            } else {
                PorTransport::DeliverReport
            },
            reserved2: b[1] >> 6,
        }
    }

    /// Encodes the two SPI octets; out-of-range reserved values are masked to their bits.
    pub fn to_bytes(&self) -> [u8; 2] {
        let first = self.integrity.bits()
            | (self.ciphering as u8) << 2
            | self.counter.bits() << 3
            | (self.reserved1 & 7) << 5;
        let second = self.por.bits()
            | self.por_integrity.bits() << 2
            | (self.por_ciphered as u8) << 4
            | ((self.por_transport == PorTransport::SmsSubmit) as u8) << 5
            | (self.reserved2 & 3) << 6;
        [first, second]
    }

    /// Decodes the SPI from a big-endian `u16` (first octet in the high byte).
    pub fn from_u16(v: u16) -> Self {
        Self::from_bytes(v.to_be_bytes())
    }

    /// The SPI as a big-endian `u16` (first octet in the high byte), e.g. `0x1221`.
    pub fn to_u16(&self) -> u16 {
        u16::from_be_bytes(self.to_bytes())
    }

    /// Whether a reserved bit or the reserved PoR request `11` is used.
    pub fn has_reserved(&self) -> bool {
        self.reserved1 != 0 || self.reserved2 != 0 || self.por == PorRequest::Reserved
    }
}

impl fmt::Display for Spi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b] = self.to_bytes();
        write!(
            f,
            "SPI {a:02X} {b:02X}: command {}{}, {}; PoR {}",
            self.integrity,
            if self.ciphering {
                ", ciphered"
            } else {
                ", not ciphered"
            },
            self.counter,
            match self.por {
                PorRequest::No => "not requested",
                PorRequest::Always => "required",
                PorRequest::OnError => "required on error only",
                PorRequest::Reserved => "request reserved (11)",
            }
        )?;
        if self.por != PorRequest::No {
            write!(
                f,
                " with {}{}, via {}",
                self.por_integrity,
                if self.por_ciphered {
                    ", ciphered"
                } else {
                    ", not ciphered"
                },
                match self.por_transport {
                    PorTransport::DeliverReport => "SMS-DELIVER-REPORT",
                    PorTransport::SmsSubmit => "SMS-SUBMIT",
                }
            )?;
        }
        if self.reserved1 != 0 || self.reserved2 != 0 {
            write!(f, " (reserved bits set)")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// KIc / KID
// ---------------------------------------------------------------------------------------

/// DES-family mode, KIc/KID b4b3 when b2b1 = `01` (TS 102 225 §5.1.2, §5.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DesMode {
    /// `00`: single DES in CBC mode (8-byte key).
    Cbc,
    /// `01`: triple DES in outer-CBC mode with two keys (16-byte key).
    Tdes2Key,
    /// `10`: triple DES in outer-CBC mode with three keys (24-byte key).
    Tdes3Key,
    /// `11`: DES in ECB mode (GSM 03.48); reserved in TS 102 225 and refused here for
    /// both ciphering and CC.
    Ecb,
}

/// The algorithm coded in the low nibble of a KIc, or of a KID used for a CC
/// (TS 102 225 §5.1.2, §5.1.3.1). Lossless: every nibble has exactly one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// b2b1 = `00`: algorithm known implicitly by both entities; b4b3 kept.
    KnownImplicitly(u8),
    /// b2b1 = `01`: DES family.
    Des(DesMode),
    /// b2b1 = `10`, b4b3 = `00`: AES — CBC for ciphering (KIc), CMAC for a CC (KID). The
    /// key size (16, 24 or 32 bytes) picks AES-128/192/256.
    Aes,
    /// b2b1 = `10` with reserved b4b3 (kept).
    AesReserved(u8),
    /// b2b1 = `11`: proprietary implementation; b4b3 kept.
    Proprietary(u8),
}

impl Algorithm {
    /// Decodes b4–b1 (the high nibble is ignored).
    pub fn from_nibble(n: u8) -> Self {
        let b43 = (n >> 2) & 3;
        match n & 3 {
            0 => Self::KnownImplicitly(b43),
            1 => Self::Des(match b43 {
                0 => DesMode::Cbc,
                1 => DesMode::Tdes2Key,
                2 => DesMode::Tdes3Key,
                _ => DesMode::Ecb,
            }),
            2 if b43 == 0 => Self::Aes,
            2 => Self::AesReserved(b43),
            _ => Self::Proprietary(b43),
        }
    }

    /// Encodes b4–b1.
    pub fn to_nibble(self) -> u8 {
        match self {
            Self::KnownImplicitly(b) => (b & 3) << 2,
            Self::Des(m) => {
                1 | match m {
                    DesMode::Cbc => 0,
                    DesMode::Tdes2Key => 4,
                    DesMode::Tdes3Key => 8,
                    DesMode::Ecb => 12,
                }
            }
            Self::Aes => 2,
            Self::AesReserved(b) => 2 | (b & 3) << 2,
            Self::Proprietary(b) => 3 | (b & 3) << 2,
        }
    }

    /// The cipher block size, for the algorithms this codec implements.
    fn block_size(self) -> Option<usize> {
        match self {
            Self::Des(DesMode::Cbc | DesMode::Tdes2Key | DesMode::Tdes3Key) => Some(8),
            Self::Aes => Some(16),
            _ => None,
        }
    }

    fn name(self, mac: bool) -> String {
        match self {
            Self::KnownImplicitly(b) => format!("algorithm known implicitly (b4b3={b:02b})"),
            Self::Des(DesMode::Cbc) if mac => "DES CBC-MAC".into(),
            Self::Des(DesMode::Cbc) => "DES-CBC".into(),
            Self::Des(DesMode::Tdes2Key) if mac => "3DES 2-key CBC-MAC".into(),
            Self::Des(DesMode::Tdes2Key) => "3DES 2-key outer-CBC".into(),
            Self::Des(DesMode::Tdes3Key) if mac => "3DES 3-key CBC-MAC".into(),
            Self::Des(DesMode::Tdes3Key) => "3DES 3-key outer-CBC".into(),
            Self::Des(DesMode::Ecb) => "DES-ECB (reserved)".into(),
            Self::Aes if mac => "AES-CMAC".into(),
            Self::Aes => "AES-CBC".into(),
            Self::AesReserved(b) => format!("AES, reserved mode b4b3={b:02b}"),
            Self::Proprietary(b) => format!("proprietary algorithm (b4b3={b:02b})"),
        }
    }
}

/// The redundancy check coded in the low nibble of a KID used for an RC
/// (TS 102 225 §5.1.3.2). Lossless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RcAlgorithm {
    /// b2b1 = `00`: known implicitly; b4b3 kept.
    KnownImplicitly(u8),
    /// b2b1 = `01`, b4b3 = `00`: CRC16 (TS 102 225 annex B), 2 bytes.
    Crc16,
    /// b2b1 = `01`, b4b3 = `01`: CRC32 (TS 102 225 annex B), 4 bytes.
    Crc32,
    /// b2b1 = `01` with reserved b4b3 (kept).
    CrcReserved(u8),
    /// b2b1 = `10`: reserved; b4b3 kept.
    Reserved(u8),
    /// b2b1 = `11`: proprietary; b4b3 kept.
    Proprietary(u8),
}

impl RcAlgorithm {
    /// Decodes b4–b1.
    pub fn from_nibble(n: u8) -> Self {
        let b43 = (n >> 2) & 3;
        match (n & 3, b43) {
            (0, b) => Self::KnownImplicitly(b),
            (1, 0) => Self::Crc16,
            (1, 1) => Self::Crc32,
            (1, b) => Self::CrcReserved(b),
            (2, b) => Self::Reserved(b),
            (_, b) => Self::Proprietary(b),
        }
    }

    /// Encodes b4–b1.
    pub fn to_nibble(self) -> u8 {
        match self {
            Self::KnownImplicitly(b) => (b & 3) << 2,
            Self::Crc16 => 1,
            Self::Crc32 => 5,
            Self::CrcReserved(b) => 1 | (b & 3) << 2,
            Self::Reserved(b) => 2 | (b & 3) << 2,
            Self::Proprietary(b) => 3 | (b & 3) << 2,
        }
    }
}

impl fmt::Display for RcAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KnownImplicitly(b) => write!(f, "RC known implicitly (b4b3={b:02b})"),
            Self::Crc16 => f.write_str("CRC16"),
            Self::Crc32 => f.write_str("CRC32"),
            Self::CrcReserved(b) => write!(f, "CRC, reserved b4b3={b:02b}"),
            Self::Reserved(b) => write!(f, "reserved RC coding (b4b3={b:02b})"),
            Self::Proprietary(b) => write!(f, "proprietary RC (b4b3={b:02b})"),
        }
    }
}

/// The key and algorithm identifier for ciphering, KIc (TS 102 225 §5.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kic {
    /// b8–b5: key version number (0 to 15).
    pub key_version: u8,
    /// b4–b1: the algorithm.
    pub algorithm: Algorithm,
}

impl Kic {
    /// A KIc for this key version (masked to 4 bits) and algorithm.
    pub fn new(key_version: u8, algorithm: Algorithm) -> Self {
        Self {
            key_version: key_version & 0x0F,
            algorithm,
        }
    }
    /// Decodes the KIc octet. Lossless.
    pub fn from_byte(b: u8) -> Self {
        Self::new(b >> 4, Algorithm::from_nibble(b))
    }
    /// Encodes the KIc octet.
    pub fn to_byte(self) -> u8 {
        (self.key_version & 0x0F) << 4 | self.algorithm.to_nibble()
    }
}

impl fmt::Display for Kic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KIc {:02X}: key version {}, {}",
            self.to_byte(),
            self.key_version,
            self.algorithm.name(false)
        )
    }
}

/// The key and algorithm identifier for the RC/CC/DS, KID (TS 102 225 §5.1.3). Its low
/// nibble means a CC algorithm or an RC algorithm depending on the SPI, so it is kept
/// raw and read with [`Kid::cc`] or [`Kid::rc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kid {
    /// b8–b5: key version number (0 to 15).
    pub key_version: u8,
    /// b4–b1 as read.
    pub nibble: u8,
}

impl Kid {
    /// A KID for a cryptographic checksum.
    pub fn for_cc(key_version: u8, algorithm: Algorithm) -> Self {
        Self {
            key_version: key_version & 0x0F,
            nibble: algorithm.to_nibble(),
        }
    }
    /// A KID for a redundancy check.
    pub fn for_rc(key_version: u8, algorithm: RcAlgorithm) -> Self {
        Self {
            key_version: key_version & 0x0F,
            nibble: algorithm.to_nibble(),
        }
    }
    /// Decodes the KID octet. Lossless.
    pub fn from_byte(b: u8) -> Self {
        Self {
            key_version: b >> 4,
            nibble: b & 0x0F,
        }
    }
    /// Encodes the KID octet.
    pub fn to_byte(self) -> u8 {
        (self.key_version & 0x0F) << 4 | (self.nibble & 0x0F)
    }
    /// The low nibble read as a CC algorithm (TS 102 225 §5.1.3.1).
    pub fn cc(self) -> Algorithm {
        Algorithm::from_nibble(self.nibble)
    }
    /// The low nibble read as an RC algorithm (TS 102 225 §5.1.3.2).
    pub fn rc(self) -> RcAlgorithm {
        RcAlgorithm::from_nibble(self.nibble)
    }
    /// A description under the given integrity mechanism.
    pub fn describe(self, integrity: Integrity) -> String {
        let what = match integrity {
            Integrity::Cc => self.cc().name(true),
            Integrity::Rc => self.rc().to_string(),
            Integrity::Ds => "digital signature (not interpreted)".into(),
            Integrity::None => "unused (no RC/CC/DS)".into(),
        };
        format!(
            "KID {:02X}: key version {}, {what}",
            self.to_byte(),
            self.key_version
        )
    }
}

// ---------------------------------------------------------------------------------------
// TAR, counter, keys
// ---------------------------------------------------------------------------------------

/// A toolkit application reference: three bytes (TS 101 220 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Tar(pub [u8; 3]);

impl fmt::Display for Tar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X}{:02X}{:02X}", self.0[0], self.0[1], self.0[2])
    }
}

/// The 5-byte big-endian replay counter, CNTR (TS 102 225 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Counter(pub [u8; 5]);

impl Counter {
    /// The highest counter value, `FFFFFFFFFF`. A stored counter with this value is
    /// blocked (status `04`).
    pub const MAX: Counter = Counter([0xFF; 5]);
    /// Zero.
    pub const ZERO: Counter = Counter([0; 5]);

    /// The counter of this value, or `None` above 2^40 − 1.
    pub fn from_u64(v: u64) -> Option<Self> {
        if v > 0xFF_FFFF_FFFF {
            return None;
        }
        let b = v.to_be_bytes();
        Some(Self([b[3], b[4], b[5], b[6], b[7]]))
    }

    /// The value as a number.
    pub fn value(self) -> u64 {
        self.0.iter().fold(0u64, |acc, &b| acc << 8 | b as u64)
    }

    /// The next value, or `None` at [`Counter::MAX`].
    pub fn next(self) -> Option<Self> {
        Self::from_u64(self.value() + 1)
    }

    /// The replay check of TS 102 225 §5.1.1 for a received counter against the
    /// receiver's stored one, under the SPI's counter mode. `Ok` means the packet may be
    /// processed (the caller then stores the received counter); an error means nothing
    /// may be executed and gives the PoR status.
    pub fn check(self, mode: CounterMode, stored: Counter) -> Result<(), Error> {
        match mode {
            CounterMode::NoCounter | CounterMode::NoReplayCheck => Ok(()),
            _ if stored == Counter::MAX => Err(Error::CounterBlocked(stored)),
            CounterMode::Higher if self > stored => Ok(()),
            CounterMode::OneHigher if self.value() == stored.value() + 1 => Ok(()),
            CounterMode::OneHigher if self > stored => Err(Error::CounterHigh {
                received: self,
                stored,
            }),
            _ => Err(Error::CounterLow {
                received: self,
                stored,
            }),
        }
    }
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// Secret key bytes: zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Zeroizing<Vec<u8>>);

impl Key {
    /// Wraps key bytes (8 for DES, 16/24 for 3DES, 16/24/32 for AES).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }
    /// The key bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    /// The key size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether the key is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(<redacted, {} bytes>)", self.0.len())
    }
}

/// The keys a packet is secured with: the ciphering key named by the KIc and the
/// RC/CC/DS key named by the KID. Either may be absent when the SPI does not use it.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    /// The ciphering key (KIc).
    pub kic: Option<Key>,
    /// The checksum key (KID).
    pub kid: Option<Key>,
}

impl KeySet {
    /// Both keys.
    pub fn new(kic: Key, kid: Key) -> Self {
        Self {
            kic: Some(kic),
            kid: Some(kid),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Cryptography (private)
// ---------------------------------------------------------------------------------------

/// A key schedule, built once per packet.
// The DES variant holds its round keys inline (768 bytes) so that building one costs no
// allocation; a `BlockCipher` only lives on the stack for one packet.
#[allow(clippy::large_enum_variant)]
enum BlockCipher {
    /// DES or 3DES (one or three key schedules).
    Des(fast_des::Des),
    Aes128(Aes128),
    Aes192(Aes192),
    Aes256(Aes256),
}

fn init<C: KeyInit>(
    key: &[u8],
    algorithm: &'static str,
    expected: &'static str,
) -> Result<C, Error> {
    C::new_from_slice(key).map_err(|_| Error::KeyLength {
        algorithm,
        len: key.len(),
        expected,
    })
}

impl BlockCipher {
    fn new(algorithm: Algorithm, key: &[u8]) -> Result<Self, Error> {
        Ok(match algorithm {
            Algorithm::Des(mode @ (DesMode::Cbc | DesMode::Tdes2Key | DesMode::Tdes3Key)) => {
                let (algorithm, expected) = match mode {
                    DesMode::Cbc => ("DES", 8),
                    DesMode::Tdes2Key => ("3DES 2-key", 16),
                    _ => ("3DES 3-key", 24),
                };
                match fast_des::Des::new(key) {
                    Some(c) if key.len() == expected => Self::Des(c),
                    _ => {
                        return Err(Error::KeyLength {
                            algorithm,
                            len: key.len(),
                            expected: ["8", "16", "24"][expected / 8 - 1],
                        })
                    }
                }
            }
            Algorithm::Aes => match key.len() {
                16 => Self::Aes128(init(key, "AES", "16, 24 or 32")?),
                24 => Self::Aes192(init(key, "AES", "16, 24 or 32")?),
                32 => Self::Aes256(init(key, "AES", "16, 24 or 32")?),
                len => {
                    return Err(Error::KeyLength {
                        algorithm: "AES",
                        len,
                        expected: "16, 24 or 32",
                    })
                }
            },
            other => {
                return Err(Error::Unsupported(format!(
                    "{} (TS 102 225 §5.1.2)",
                    other.name(false)
                )))
            }
        })
    }

    fn block_size(&self) -> usize {
        match self {
            Self::Des(_) => 8,
            _ => 16,
        }
    }

    /// Encrypts one block in place; `block.len()` is the block size.
    fn encrypt(&self, block: &mut [u8]) {
        fn go<C: BlockCipherEncrypt, const N: usize>(c: &C, block: &mut [u8])
        where
            for<'a> &'a mut [u8; N]: Into<&'a mut cipher::Block<C>>,
        {
            let b: &mut [u8; N] = block.try_into().expect("whole block");
            c.encrypt_block(b.into());
        }
        match self {
            Self::Des(c) => c.encrypt(block),
            Self::Aes128(c) => go::<_, 16>(c, block),
            Self::Aes192(c) => go::<_, 16>(c, block),
            Self::Aes256(c) => go::<_, 16>(c, block),
        }
    }

    fn decrypt(&self, block: &mut [u8]) {
        fn go<C: BlockCipherDecrypt, const N: usize>(c: &C, block: &mut [u8])
        where
            for<'a> &'a mut [u8; N]: Into<&'a mut cipher::Block<C>>,
        {
            let b: &mut [u8; N] = block.try_into().expect("whole block");
            c.decrypt_block(b.into());
        }
        match self {
            Self::Des(c) => c.decrypt(block),
            Self::Aes128(c) => go::<_, 16>(c, block),
            Self::Aes192(c) => go::<_, 16>(c, block),
            Self::Aes256(c) => go::<_, 16>(c, block),
        }
    }

    /// CBC with a zero IV, in place; `data` is whole blocks (TS 102 225 §5.1.2).
    fn cbc_encrypt(&self, data: &mut [u8]) {
        if let Self::Des(des) = self {
            let mut chain = 0u64;
            for block in data.chunks_exact_mut(8) {
                chain = des.encrypt_u64(be64(block) ^ chain);
                block.copy_from_slice(&chain.to_be_bytes());
            }
            return;
        }
        let n = self.block_size();
        let mut chain = [0u8; 16];
        for block in data.chunks_exact_mut(n) {
            for (b, c) in block.iter_mut().zip(&chain[..n]) {
                *b ^= c;
            }
            self.encrypt(block);
            chain[..n].copy_from_slice(block);
        }
    }

    fn cbc_decrypt(&self, data: &mut [u8]) {
        if let Self::Des(des) = self {
            // CBC decryption has no chain: the blocks go through DES in lanes.
            let mut blocks: Vec<u64> = data.chunks_exact(8).map(be64).collect();
            des_decrypt_blocks(des, &mut blocks);
            let mut prev = 0u64;
            for (block, p) in data.chunks_exact_mut(8).zip(blocks) {
                let c = be64(block);
                block.copy_from_slice(&(p ^ prev).to_be_bytes());
                prev = c;
            }
            return;
        }
        let n = self.block_size();
        let mut chain = [0u8; 16];
        let mut next = [0u8; 16];
        for block in data.chunks_exact_mut(n) {
            next[..n].copy_from_slice(block);
            self.decrypt(block);
            for (b, c) in block.iter_mut().zip(&chain[..n]) {
                *b ^= c;
            }
            chain[..n].copy_from_slice(&next[..n]);
        }
    }

    /// CBC-MAC with a zero IV over the concatenation of `parts`, padded with zeros to
    /// the block size (TS 102 225 §5.1.3.1); the last block.
    fn cbc_mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        if let Self::Des(des) = self {
            let mut state = 0u64;
            for_each_block(parts, 8, |b| state = des.encrypt_u64(state ^ be64(b)));
            return state.to_be_bytes().to_vec();
        }
        let n = self.block_size();
        let mut state = [0u8; 16];
        for_each_block(parts, n, |b| {
            for (s, x) in state.iter_mut().zip(b) {
                *s ^= x;
            }
            self.encrypt(&mut state[..n]);
        });
        state[..n].to_vec()
    }
}

/// An 8-byte slice as a big-endian `u64`.
fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b.try_into().expect("8-byte block"))
}

/// Calls `each` with the `n`-byte blocks of the concatenation of `parts`, the last one
/// padded with zeros; one zero block when the parts are empty (TS 102 225 §5.1.3.1: the
/// CBC-MAC input is padded to the block size).
fn for_each_block(parts: &[&[u8]], n: usize, mut each: impl FnMut(&[u8])) {
    let mut buf = [0u8; 16];
    let mut fill = 0;
    let mut total = 0;
    for part in parts {
        total += part.len();
        let mut p = *part;
        if fill > 0 {
            let take = (n - fill).min(p.len());
            buf[fill..fill + take].copy_from_slice(&p[..take]);
            fill += take;
            p = &p[take..];
            if fill < n {
                continue;
            }
            each(&buf[..n]);
        }
        let whole = p.len() - p.len() % n;
        for block in p[..whole].chunks_exact(n) {
            each(block);
        }
        fill = p.len() - whole;
        buf[..fill].copy_from_slice(&p[whole..]);
    }
    if fill != 0 || total == 0 {
        buf[fill..n].fill(0);
        each(&buf[..n]);
    }
}

/// ECB decryption of independent blocks, [`fast_des::LANES`] at a time.
fn des_decrypt_blocks(des: &fast_des::Des, blocks: &mut [u64]) {
    let mut groups = blocks.chunks_exact_mut(fast_des::LANES);
    for g in &mut groups {
        let lanes: &mut [u64; fast_des::LANES] = g.try_into().expect("whole group");
        des.decrypt_lanes(lanes);
    }
    for b in groups.into_remainder() {
        *b = des.decrypt_u64(*b);
    }
}

/// CBC encryption with a zero IV of independent chains in lockstep, [`fast_des::LANES`]
/// chains at a time: each step encrypts the next block of every lane's chain together. A
/// lane whose chain ends takes the next chain, so chains of different lengths keep the
/// lanes full. Each chain (big-endian blocks) is replaced by its ciphertext; for a
/// CBC-MAC the last block is the MAC.
fn des_cbc_chains(des: &fast_des::Des, chains: &mut [Vec<u64>]) {
    const L: usize = fast_des::LANES;
    // Per lane: the chain it runs, the next block in it, the previous ciphertext block.
    let mut job: [Option<usize>; L] = [None; L];
    let mut pos = [0usize; L];
    let mut prev = [0u64; L];
    let mut next = 0;
    loop {
        let mut x = [0u64; L];
        let mut active = false;
        for l in 0..L {
            if job[l].is_none_or(|j| pos[l] == chains[j].len()) {
                job[l] = None;
                while next < chains.len() {
                    next += 1;
                    if !chains[next - 1].is_empty() {
                        job[l] = Some(next - 1);
                        pos[l] = 0;
                        prev[l] = 0;
                        break;
                    }
                }
            }
            if let Some(j) = job[l] {
                x[l] = chains[j][pos[l]] ^ prev[l];
                active = true;
            }
        }
        if !active {
            return;
        }
        des.encrypt_lanes(&mut x);
        for l in 0..L {
            if let Some(j) = job[l] {
                chains[j][pos[l]] = x[l];
                prev[l] = x[l];
                pos[l] += 1;
            }
        }
    }
}

/// Length of the CC for every algorithm implemented: 8 bytes (the DES block, or the
/// leftmost 64 bits of AES-CMAC).
pub const CC_LEN: usize = 8;

/// The RC/CC/DS a packet carries, resolved from the SPI's integrity field and the KID.
#[derive(Clone, Copy)]
enum Checksum {
    None,
    Crc16,
    Crc32,
    Mac(Algorithm),
}

impl Checksum {
    fn resolve(integrity: Integrity, kid: Kid) -> Result<Self, Error> {
        match integrity {
            Integrity::None => Ok(Self::None),
            Integrity::Rc => match kid.rc() {
                RcAlgorithm::Crc16 => Ok(Self::Crc16),
                RcAlgorithm::Crc32 => Ok(Self::Crc32),
                other => Err(Error::Unsupported(format!("{other} (TS 102 225 §5.1.3.2)"))),
            },
            Integrity::Cc => match kid.cc() {
                a @ (Algorithm::Des(DesMode::Cbc | DesMode::Tdes2Key | DesMode::Tdes3Key)
                | Algorithm::Aes) => Ok(Self::Mac(a)),
                other => Err(Error::Unsupported(format!(
                    "CC with {} (TS 102 225 §5.1.3.1)",
                    other.name(true)
                ))),
            },
            Integrity::Ds => Err(Error::Unsupported("digital signature (DS)".into())),
        }
    }

    fn len(self) -> usize {
        match self {
            Self::None => 0,
            Self::Crc16 => 2,
            Self::Crc32 => 4,
            Self::Mac(_) => CC_LEN,
        }
    }

    fn compute(self, key: Option<&Key>, parts: &[&[u8]]) -> Result<Vec<u8>, Error> {
        match self {
            Self::None => Ok(Vec::new()),
            Self::Crc16 => Ok(crc16(parts).to_be_bytes().to_vec()),
            Self::Crc32 => Ok(crc32(parts).to_be_bytes().to_vec()),
            Self::Mac(algorithm) => {
                let key = key.ok_or(Error::MissingKey("KID"))?.expose();
                if algorithm == Algorithm::Aes {
                    aes_cmac8(key, parts)
                } else {
                    let c = BlockCipher::new(algorithm, key)?;
                    Ok(c.cbc_mac(parts))
                }
            }
        }
    }
}

/// AES-CMAC (NIST SP 800-38B) truncated to its leftmost 8 bytes (TS 102 225 §5.1.3.1).
fn aes_cmac8(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, Error> {
    fn run<C>(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, Error>
    where
        Cmac<C>: Mac + KeyInit,
        C: cmac::block_api::CmacCipher,
    {
        let mut m: Cmac<C> = init(key, "AES", "16, 24 or 32")?;
        for p in parts {
            m.update(p);
        }
        Ok(m.finalize().into_bytes()[..CC_LEN].to_vec())
    }
    match key.len() {
        16 => run::<Aes128>(key, parts),
        24 => run::<Aes192>(key, parts),
        32 => run::<Aes256>(key, parts),
        len => Err(Error::KeyLength {
            algorithm: "AES",
            len,
            expected: "16, 24 or 32",
        }),
    }
}

/// CRC16 of TS 102 225 annex B: ISO/IEC 13239 (polynomial x^16+x^12+x^5+1, reflected,
/// initial value and final XOR `FFFF`, i.e. CRC-16/X-25), sent big-endian.
fn crc16(parts: &[&[u8]]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        crc ^= b as u16;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                crc >> 1 ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// CRC32 of TS 102 225 annex B: ISO/IEC 13239 / ITU-T V.42 (the zlib CRC-32), sent
/// big-endian.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc: u32 = 0xFFFF_FFFF;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                crc >> 1 ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn cipher_for(kic: Kic, keys: &KeySet) -> Result<BlockCipher, Error> {
    if kic.algorithm.block_size().is_none() {
        return Err(Error::Unsupported(format!(
            "ciphering with {} (TS 102 225 §5.1.2)",
            kic.algorithm.name(false)
        )));
    }
    let key = keys.kic.as_ref().ok_or(Error::MissingKey("KIc"))?;
    BlockCipher::new(kic.algorithm, key.expose())
}

fn padding_for(len: usize, block: usize) -> usize {
    (block - len % block) % block
}

// ---------------------------------------------------------------------------------------
// Command packets
// ---------------------------------------------------------------------------------------

/// The security header of a command packet: everything but CPL, CHL, PCNTR and the
/// RC/CC/DS, which [`secure_command`] derives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandHeader {
    /// Security parameter indicator.
    pub spi: Spi,
    /// Ciphering key identifier.
    pub kic: Kic,
    /// RC/CC/DS key identifier.
    pub kid: Kid,
    /// Toolkit application reference.
    pub tar: Tar,
    /// Replay counter.
    pub counter: Counter,
}

impl CommandHeader {
    /// The security the PoR to this command uses: the SPI's second octet, with the same
    /// KIc and KID (TS 102 225 §5.1.2).
    pub fn por_security(&self) -> PorSecurity {
        PorSecurity {
            integrity: self.spi.por_integrity,
            ciphered: self.spi.por_ciphered,
            kic: self.kic,
            kid: self.kid,
        }
    }
}

/// The cleartext fields at the head of a command packet (CPL to TAR), readable without
/// keys so that the receiver can pick the keys and counter for the TAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketInfo {
    /// CPL: the number of bytes after it.
    pub cpl: u16,
    /// CHL: the number of header bytes after it (SPI to RC/CC/DS).
    pub chl: u8,
    /// Security parameter indicator.
    pub spi: Spi,
    /// Ciphering key identifier.
    pub kic: Kic,
    /// RC/CC/DS key identifier.
    pub kid: Kid,
    /// Toolkit application reference.
    pub tar: Tar,
}

impl PacketInfo {
    /// Reads CPL to TAR; fails only when fewer than 10 bytes are given.
    pub fn parse(packet: &[u8]) -> Result<Self, Error> {
        if packet.len() < COMMAND_HEADER_MIN {
            return Err(Error::Truncated {
                what: "command packet header",
                need: COMMAND_HEADER_MIN,
                have: packet.len(),
            });
        }
        Ok(Self {
            cpl: u16::from_be_bytes([packet[0], packet[1]]),
            chl: packet[2],
            spi: Spi::from_bytes([packet[3], packet[4]]),
            kic: Kic::from_byte(packet[5]),
            kid: Kid::from_byte(packet[6]),
            tar: Tar([packet[7], packet[8], packet[9]]),
        })
    }
}

impl fmt::Display for PacketInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command packet: CPL {} CHL {}", self.cpl, self.chl)?;
        writeln!(f, "  {}", self.spi)?;
        writeln!(f, "  {}", self.kic)?;
        writeln!(f, "  {}", self.kid.describe(self.spi.integrity))?;
        write!(f, "  TAR {}", self.tar)
    }
}

/// Builds a command packet, CPL to the end (TS 102 225 §5.1.1, TS 31.115 §4.2): pads the
/// data with zeros to the cipher block when ciphering (PCNTR counts the padding),
/// computes the RC/CC over `CPL CHL SPI KIc KID TAR CNTR PCNTR data padding`, then
/// ciphers `CNTR` to the end with a zero IV. Wrap it with [`frame_command_sms`] for an
/// SMS.
pub fn secure_command(
    header: &CommandHeader,
    keys: &KeySet,
    data: &[u8],
) -> Result<Vec<u8>, Error> {
    let checksum = Checksum::resolve(header.spi.integrity, header.kid)?;
    let cipher = if header.spi.ciphering {
        Some(cipher_for(header.kic, keys)?)
    } else {
        None
    };
    let mut p = CommandLayout::new(
        header,
        checksum,
        cipher.as_ref().map(|c| c.block_size()),
        data,
    )?;
    let cs = checksum.compute(keys.kid.as_ref(), &p.mac_parts())?;
    p.set_checksum(&cs);
    if let Some(c) = cipher {
        c.cbc_encrypt(p.ciphered());
    }
    Ok(p.out)
}

/// A command packet being built: CPL to the end, the RC/CC/DS still zero, nothing
/// ciphered yet.
struct CommandLayout {
    out: Vec<u8>,
    cs_len: usize,
}

impl CommandLayout {
    /// Where the RC/CC/DS goes: after CPL CHL SPI KIc KID TAR CNTR PCNTR.
    const CS_AT: usize = COMMAND_HEADER_MIN + 6;

    /// Lays the packet out: pads the data to `block` (PCNTR counts the padding), derives
    /// CPL and CHL.
    fn new(
        header: &CommandHeader,
        checksum: Checksum,
        block: Option<usize>,
        data: &[u8],
    ) -> Result<Self, Error> {
        let cs_len = checksum.len();
        let pad = block.map_or(0, |n| padding_for(6 + cs_len + data.len(), n));
        let chl = 13 + cs_len;
        let cpl = 1 + chl + data.len() + pad;
        if cpl > 0xFFFF {
            return Err(Error::TooLong(cpl + 2));
        }
        let mut out = Vec::with_capacity(2 + cpl);
        out.extend_from_slice(&(cpl as u16).to_be_bytes());
        out.push(chl as u8);
        out.extend_from_slice(&header.spi.to_bytes());
        out.push(header.kic.to_byte());
        out.push(header.kid.to_byte());
        out.extend_from_slice(&header.tar.0);
        out.extend_from_slice(&header.counter.0);
        out.push(pad as u8);
        debug_assert_eq!(out.len(), Self::CS_AT);
        out.resize(Self::CS_AT + cs_len, 0);
        out.extend_from_slice(data);
        out.resize(out.len() + pad, 0);
        Ok(Self { out, cs_len })
    }

    /// What the RC/CC covers: `CPL CHL SPI KIc KID TAR CNTR PCNTR data padding`.
    fn mac_parts(&self) -> [&[u8]; 2] {
        [
            &self.out[..Self::CS_AT],
            &self.out[Self::CS_AT + self.cs_len..],
        ]
    }

    fn set_checksum(&mut self, cs: &[u8]) {
        self.out[Self::CS_AT..Self::CS_AT + self.cs_len].copy_from_slice(cs);
    }

    /// The part that is ciphered: CNTR to the end.
    fn ciphered(&mut self) -> &mut [u8] {
        &mut self.out[COMMAND_HEADER_MIN..]
    }
}

/// An opened (deciphered and verified) command packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedCommand {
    /// The header, with the counter that was received.
    pub header: CommandHeader,
    /// The number of padding bytes that were removed.
    pub pcntr: u8,
    /// The RC/CC/DS as received (already verified).
    pub checksum: Vec<u8>,
    /// The secured data, without padding.
    pub data: Vec<u8>,
}

impl OpenedCommand {
    /// A human explanation, for `cardwright ota decode`.
    pub fn explain(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for OpenedCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        writeln!(f, "command packet (opened)")?;
        writeln!(f, "  {}", h.spi)?;
        writeln!(f, "  {}", h.kic)?;
        writeln!(f, "  {}", h.kid.describe(h.spi.integrity))?;
        writeln!(f, "  TAR {}", h.tar)?;
        writeln!(f, "  CNTR {} ({})", h.counter, h.counter.value())?;
        writeln!(f, "  PCNTR {} padding byte(s)", self.pcntr)?;
        if !self.checksum.is_empty() {
            writeln!(f, "  RC/CC/DS {} (verified)", hex(&self.checksum))?;
        }
        write!(f, "  data ({} bytes) {}", self.data.len(), hex(&self.data))
    }
}

/// Opens a command packet (CPL to the end, as [`secure_command`] makes and
/// [`unframe_command_sms`] returns): checks CPL and CHL, deciphers, verifies the RC/CC in
/// constant time, then checks the counter against `stored_counter` per the SPI's counter
/// mode (TS 102 225 §5.1.1). On error nothing may be executed;
/// [`Error::por_status`] gives the status to answer with. On success the caller stores
/// the received counter when the mode uses one.
///
/// Read [`PacketInfo::parse`] first to pick the keys and stored counter for the TAR,
/// KIc and KID. SPIs with reserved bits set are refused.
pub fn open_command(
    packet: &[u8],
    keys: &KeySet,
    stored_counter: Counter,
) -> Result<OpenedCommand, Error> {
    let (info, checksum) = check_command(packet)?;
    let mut plain = packet[COMMAND_HEADER_MIN..].to_vec();
    let block = if info.spi.ciphering {
        let c = cipher_for(info.kic, keys)?;
        check_ciphered_len(plain.len(), c.block_size())?;
        c.cbc_decrypt(&mut plain);
        c.block_size()
    } else {
        1
    };
    let opened = OpenedPlain::new(packet, info, checksum, plain, block)?;
    let expected = checksum.compute(keys.kid.as_ref(), &opened.mac_parts(packet))?;
    opened.finish(&expected, stored_counter)
}

/// The checks of a command packet before any key is used: CPL, reserved SPI bits, the
/// checksum the SPI and KID name, CHL.
fn check_command(packet: &[u8]) -> Result<(PacketInfo, Checksum), Error> {
    let info = PacketInfo::parse(packet)?;
    if info.cpl as usize != packet.len() - 2 {
        return Err(Error::LengthMismatch {
            what: "CPL",
            declared: info.cpl as usize,
            actual: packet.len() - 2,
        });
    }
    let spi = info.spi;
    if spi.has_reserved() {
        return Err(Error::Unsupported(format!("{spi}: reserved SPI coding")));
    }
    let checksum = Checksum::resolve(spi.integrity, info.kid)?;
    let cs_len = checksum.len();
    if info.chl as usize != 13 + cs_len {
        return Err(Error::HeaderLength {
            what: "CHL",
            declared: info.chl as usize,
            expected: 13 + cs_len,
        });
    }
    Ok((info, checksum))
}

/// The ciphered part (CNTR to the end) must be whole blocks (status `05`).
fn check_ciphered_len(len: usize, n: usize) -> Result<(), Error> {
    if len == 0 || !len.is_multiple_of(n) {
        return Err(Error::Ciphering(format!(
            "{len} ciphered bytes is not a whole number of {n}-byte blocks"
        )));
    }
    Ok(())
}

/// A command packet after deciphering: `CNTR PCNTR RC/CC/DS data padding`, checked for
/// length and padding, its RC/CC not yet verified.
struct OpenedPlain {
    info: PacketInfo,
    plain: Vec<u8>,
    cs_len: usize,
    pcntr: u8,
}

impl OpenedPlain {
    fn new(
        packet: &[u8],
        info: PacketInfo,
        checksum: Checksum,
        plain: Vec<u8>,
        block: usize,
    ) -> Result<Self, Error> {
        let cs_len = checksum.len();
        if plain.len() < 6 + cs_len {
            return Err(Error::Truncated {
                what: "command packet",
                need: COMMAND_HEADER_MIN + 6 + cs_len,
                have: packet.len(),
            });
        }
        let pcntr = plain[5];
        let body = plain.len() - 6 - cs_len;
        if pcntr as usize > body || (pcntr as usize) >= block.max(1) && pcntr != 0 {
            return Err(Error::Ciphering(format!(
                "PCNTR {pcntr} with {body} data bytes and {block}-byte blocks"
            )));
        }
        Ok(Self {
            info,
            plain,
            cs_len,
            pcntr,
        })
    }

    /// What the RC/CC covers: the cleartext header of `packet` (CPL to TAR), then
    /// `CNTR PCNTR`, the data and the padding.
    fn mac_parts<'a>(&'a self, packet: &'a [u8]) -> [&'a [u8]; 3] {
        [
            &packet[..COMMAND_HEADER_MIN],
            &self.plain[..6],
            &self.plain[6 + self.cs_len..],
        ]
    }

    /// Verifies the RC/CC against `expected` in constant time, then the counter.
    fn finish(self, expected: &[u8], stored_counter: Counter) -> Result<OpenedCommand, Error> {
        let Self {
            info,
            plain,
            cs_len,
            pcntr,
        } = self;
        let received = &plain[6..6 + cs_len];
        if !bool::from(received.ct_eq(expected)) {
            return Err(Error::ChecksumMismatch);
        }
        let counter = Counter(plain[..5].try_into().expect("5 bytes"));
        counter.check(info.spi.counter, stored_counter)?;
        let body = &plain[6 + cs_len..];
        Ok(OpenedCommand {
            header: CommandHeader {
                spi: info.spi,
                kic: info.kic,
                kid: info.kid,
                tar: info.tar,
                counter,
            },
            pcntr,
            checksum: received.to_vec(),
            data: body[..body.len() - pcntr as usize].to_vec(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Response packets (PoR)
// ---------------------------------------------------------------------------------------

/// The response status code of a PoR (TS 102 225 §5.1.2 table "Response Status Codes",
/// TS 31.115 §4.4 for `0B` and `0C`). Unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseStatus {
    /// `00`: PoR OK.
    PorOk,
    /// `01`: RC/CC/DS failed.
    RcCcDsFailed,
    /// `02`: CNTR low.
    CounterLow,
    /// `03`: CNTR high.
    CounterHigh,
    /// `04`: CNTR blocked.
    CounterBlocked,
    /// `05`: ciphering error.
    CipheringError,
    /// `06`: unidentified security error (the receiver could not interpret the command
    /// header; the PoR is sent unciphered without RC/CC/DS).
    UnidentifiedSecurityError,
    /// `07`: insufficient memory to process the incoming message.
    InsufficientMemory,
    /// `08`: more time needed; a later PoR follows.
    MoreTime,
    /// `09`: TAR unknown.
    TarUnknown,
    /// `0A`: insufficient security level.
    InsufficientSecurityLevel,
    /// `0B`: the actual response is sent in an SMS-SUBMIT (TS 31.115).
    ResponseViaSmsSubmit,
    /// `0C`: the actual response is sent with PROCESS UNSTRUCTURED SS REQUEST
    /// (TS 31.115).
    ResponseViaUssd,
    /// Any other value (reserved for future use).
    Other(u8),
}

impl ResponseStatus {
    /// Decodes the status octet.
    pub fn from_byte(b: u8) -> Self {
        match b {
            0x00 => Self::PorOk,
            0x01 => Self::RcCcDsFailed,
            0x02 => Self::CounterLow,
            0x03 => Self::CounterHigh,
            0x04 => Self::CounterBlocked,
            0x05 => Self::CipheringError,
            0x06 => Self::UnidentifiedSecurityError,
            0x07 => Self::InsufficientMemory,
            0x08 => Self::MoreTime,
            0x09 => Self::TarUnknown,
            0x0A => Self::InsufficientSecurityLevel,
            0x0B => Self::ResponseViaSmsSubmit,
            0x0C => Self::ResponseViaUssd,
            other => Self::Other(other),
        }
    }

    /// Encodes the status octet.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::PorOk => 0x00,
            Self::RcCcDsFailed => 0x01,
            Self::CounterLow => 0x02,
            Self::CounterHigh => 0x03,
            Self::CounterBlocked => 0x04,
            Self::CipheringError => 0x05,
            Self::UnidentifiedSecurityError => 0x06,
            Self::InsufficientMemory => 0x07,
            Self::MoreTime => 0x08,
            Self::TarUnknown => 0x09,
            Self::InsufficientSecurityLevel => 0x0A,
            Self::ResponseViaSmsSubmit => 0x0B,
            Self::ResponseViaUssd => 0x0C,
            Self::Other(b) => b,
        }
    }

    /// Whether this is a security error, answered with an unsecured PoR (unciphered,
    /// no RC/CC/DS): `01` to `06`, `09` and `0A`. The receiver either could not
    /// authenticate the sender or has no usable keys for it, so it cannot secure the
    /// answer.
    pub fn is_security_error(self) -> bool {
        matches!(self.to_byte(), 0x01..=0x06 | 0x09 | 0x0A)
    }

    /// A short description.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::PorOk => "PoR OK",
            Self::RcCcDsFailed => "RC/CC/DS failed",
            Self::CounterLow => "CNTR low",
            Self::CounterHigh => "CNTR high",
            Self::CounterBlocked => "CNTR blocked",
            Self::CipheringError => "ciphering error",
            Self::UnidentifiedSecurityError => "unidentified security error",
            Self::InsufficientMemory => "insufficient memory to process incoming message",
            Self::MoreTime => "more time needed",
            Self::TarUnknown => "TAR unknown",
            Self::InsufficientSecurityLevel => "insufficient security level",
            Self::ResponseViaSmsSubmit => "actual response sent using SMS-SUBMIT",
            Self::ResponseViaUssd => "actual response sent using PROCESS UNSTRUCTURED SS REQUEST",
            Self::Other(_) => "reserved status code",
        }
    }
}

impl fmt::Display for ResponseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X} ({})", self.to_byte(), self.meaning())
    }
}

/// How a PoR is secured: the command SPI's second octet and the command's KIc and KID
/// (see [`CommandHeader::por_security`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PorSecurity {
    /// RC, CC or DS on the PoR.
    pub integrity: Integrity,
    /// Whether the PoR is ciphered.
    pub ciphered: bool,
    /// The ciphering key identifier.
    pub kic: Kic,
    /// The RC/CC/DS key identifier.
    pub kid: Kid,
}

impl PorSecurity {
    /// No security: the unsecured PoR sent for security errors.
    pub const NONE: PorSecurity = PorSecurity {
        integrity: Integrity::None,
        ciphered: false,
        kic: Kic {
            key_version: 0,
            algorithm: Algorithm::KnownImplicitly(0),
        },
        kid: Kid {
            key_version: 0,
            nibble: 0,
        },
    };
}

/// The cleartext fields of a response packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseHeader {
    /// The TAR of the command packet.
    pub tar: Tar,
    /// The counter of the command packet.
    pub counter: Counter,
    /// The response status code.
    pub status: ResponseStatus,
}

/// The SMS user data header of a single-message response packet, covered by its RC/CC
/// (TS 31.115 §4.4): UDHL `02`, IEI `71`, IEIDL `00`.
pub const RESPONSE_UDH: [u8; 3] = [0x02, 0x71, 0x00];
/// The SMS user data header of a single-message command packet (TS 31.115 §4.2): UDHL
/// `02`, IEI `70`, IEIDL `00`. Not covered by the RC/CC.
pub const COMMAND_UDH: [u8; 3] = [0x02, 0x70, 0x00];
/// The information element identifier of a command packet (TS 31.115 §4.2).
pub const IEI_COMMAND_PACKET: u8 = 0x70;
/// The information element identifier of a response packet (TS 31.115 §4.4).
pub const IEI_RESPONSE_PACKET: u8 = 0x71;
/// The largest command packet (CPL to the end) that fits one SMS: 140 bytes of user
/// data less the 3-byte header.
pub const SINGLE_SMS_MAX_PACKET: usize = 137;

/// Builds a response packet, RPL to the end (TS 102 225 §5.1.2, TS 31.115 §4.4): pads to
/// the cipher block when ciphering (PCNTR counts the padding), computes the RC/CC over
/// `02 71 00 RPL RHL TAR CNTR PCNTR Status data padding`, then ciphers `CNTR` to the end
/// with a zero IV. Use [`PorSecurity::NONE`] for the unsecured PoR of a security error.
/// Wrap it with [`frame_response_sms`] for an SMS.
pub fn secure_response(
    security: &PorSecurity,
    keys: &KeySet,
    header: &ResponseHeader,
    data: &[u8],
) -> Result<Vec<u8>, Error> {
    let checksum = Checksum::resolve(security.integrity, security.kid)?;
    let cs_len = checksum.len();
    let cipher = if security.ciphered {
        Some(cipher_for(security.kic, keys)?)
    } else {
        None
    };
    let pad = cipher
        .as_ref()
        .map_or(0, |c| padding_for(7 + cs_len + data.len(), c.block_size()));
    let rhl = 10 + cs_len;
    let rpl = 1 + rhl + data.len() + pad;
    if rpl > 0xFFFF {
        return Err(Error::TooLong(rpl + 2));
    }
    let mut out = Vec::with_capacity(2 + rpl);
    out.extend_from_slice(&(rpl as u16).to_be_bytes());
    out.push(rhl as u8);
    out.extend_from_slice(&header.tar.0);
    out.extend_from_slice(&header.counter.0);
    out.push(pad as u8);
    out.push(header.status.to_byte());
    let cs_at = out.len();
    out.resize(cs_at + cs_len, 0);
    out.extend_from_slice(data);
    out.resize(out.len() + pad, 0);
    let cs = checksum.compute(
        keys.kid.as_ref(),
        &[&RESPONSE_UDH, &out[..cs_at], &out[cs_at + cs_len..]],
    )?;
    out[cs_at..cs_at + cs_len].copy_from_slice(&cs);
    if let Some(c) = cipher {
        c.cbc_encrypt(&mut out[6..]);
    }
    Ok(out)
}

/// An opened (deciphered and verified) response packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedResponse {
    /// TAR, counter and status.
    pub header: ResponseHeader,
    /// Whether the packet carried the security that was asked for; `false` for the
    /// unsecured PoR of a security error.
    pub secured: bool,
    /// The number of padding bytes that were removed.
    pub pcntr: u8,
    /// The RC/CC/DS as received (already verified), empty if none.
    pub checksum: Vec<u8>,
    /// The additional response data, without padding (for example a TS 102 226 compact
    /// or expanded response).
    pub data: Vec<u8>,
}

impl OpenedResponse {
    /// A human explanation, for `cardwright ota decode`.
    pub fn explain(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for OpenedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        writeln!(
            f,
            "response packet (PoR{})",
            if self.secured {
                ", opened"
            } else {
                ", unsecured"
            }
        )?;
        writeln!(f, "  TAR {}", h.tar)?;
        writeln!(f, "  CNTR {} ({})", h.counter, h.counter.value())?;
        writeln!(f, "  PCNTR {} padding byte(s)", self.pcntr)?;
        writeln!(f, "  status {}", h.status)?;
        if !self.checksum.is_empty() {
            writeln!(f, "  RC/CC/DS {} (verified)", hex(&self.checksum))?;
        }
        write!(f, "  data ({} bytes) {}", self.data.len(), hex(&self.data))
    }
}

/// Opens a response packet (RPL to the end, as [`unframe_response_sms`] returns) secured
/// as `security` says: checks RPL and RHL, deciphers, verifies the RC/CC in constant time.
///
/// The unsecured PoR a receiver sends for a security error (unciphered, RHL `0A`, see
/// [`ResponseStatus::is_security_error`]) is recognised and returned with
/// `secured == false` when the packet cannot be the secured one: its RHL lacks the
/// expected RC/CC, or its ciphered part is not whole cipher blocks. Such a packet with a
/// status that is not a security error is refused ([`Error::UnsecuredPor`]). The counter
/// is returned for the caller to compare with the command's.
pub fn open_response(
    packet: &[u8],
    security: &PorSecurity,
    keys: &KeySet,
) -> Result<OpenedResponse, Error> {
    if packet.len() < 13 {
        return Err(Error::Truncated {
            what: "response packet",
            need: 13,
            have: packet.len(),
        });
    }
    let rpl = u16::from_be_bytes([packet[0], packet[1]]) as usize;
    if rpl != packet.len() - 2 {
        return Err(Error::LengthMismatch {
            what: "RPL",
            declared: rpl,
            actual: packet.len() - 2,
        });
    }
    let rhl = packet[2] as usize;
    let checksum = Checksum::resolve(security.integrity, security.kid)?;
    let cs_len = checksum.len();
    let block = if security.ciphered {
        security.kic.algorithm.block_size()
    } else {
        None
    };
    let secured_shape =
        rhl == 10 + cs_len && block.is_none_or(|n| (packet.len() - 6).is_multiple_of(n));
    let is_secured = security.integrity != Integrity::None || security.ciphered;
    if is_secured && !secured_shape && rhl == 10 {
        // The unsecured PoR of a security error.
        let opened = open_plain_response(packet, Checksum::None, None)?;
        if !opened.header.status.is_security_error() {
            return Err(Error::UnsecuredPor(opened.header.status));
        }
        return Ok(OpenedResponse {
            secured: false,
            ..opened
        });
    }
    if rhl != 10 + cs_len {
        return Err(Error::HeaderLength {
            what: "RHL",
            declared: rhl,
            expected: 10 + cs_len,
        });
    }
    let key = keys.kid.as_ref();
    if security.ciphered {
        let c = cipher_for(security.kic, keys)?;
        let n = c.block_size();
        let mut plain = packet.to_vec();
        if !(plain.len() - 6).is_multiple_of(n) {
            return Err(Error::Ciphering(format!(
                "{} ciphered bytes is not a whole number of {n}-byte blocks",
                plain.len() - 6
            )));
        }
        c.cbc_decrypt(&mut plain[6..]);
        let mut opened = open_plain_response(&plain, checksum, key)?;
        if opened.pcntr as usize >= n && opened.pcntr != 0 {
            return Err(Error::Ciphering(format!(
                "PCNTR {} with {n}-byte blocks",
                opened.pcntr
            )));
        }
        opened.secured = true;
        Ok(opened)
    } else {
        open_plain_response(packet, checksum, key)
    }
}

/// Reads a deciphered response packet and verifies its RC/CC.
fn open_plain_response(
    p: &[u8],
    checksum: Checksum,
    key: Option<&Key>,
) -> Result<OpenedResponse, Error> {
    let cs_len = checksum.len();
    if p.len() < 13 + cs_len {
        return Err(Error::Truncated {
            what: "response packet",
            need: 13 + cs_len,
            have: p.len(),
        });
    }
    let pcntr = p[11];
    let body = &p[13 + cs_len..];
    if pcntr as usize > body.len() {
        return Err(Error::Ciphering(format!(
            "PCNTR {pcntr} but only {} data bytes",
            body.len()
        )));
    }
    let received = &p[13..13 + cs_len];
    let expected = checksum.compute(key, &[&RESPONSE_UDH, &p[..13], body])?;
    if !bool::from(received.ct_eq(&expected)) {
        return Err(Error::ChecksumMismatch);
    }
    Ok(OpenedResponse {
        header: ResponseHeader {
            tar: Tar([p[3], p[4], p[5]]),
            counter: Counter(p[6..11].try_into().expect("5 bytes")),
            status: ResponseStatus::from_byte(p[12]),
        },
        secured: true,
        pcntr,
        checksum: received.to_vec(),
        data: body[..body.len() - pcntr as usize].to_vec(),
    })
}

// ---------------------------------------------------------------------------------------
// TS 31.115 SMS framing
// ---------------------------------------------------------------------------------------

/// The SMS user data of a single-message command packet (TS 31.115 §4.2): `02 70 00`
/// then the packet. CPL counts the bytes from CHL to the end of the secured data, so in
/// a single SMS the user data is CPL + 5 bytes long; in a concatenated message CPL
/// counts the whole packet across the segments, and only the first segment's header
/// holds the `70` element (TS 31.115 §6.2). The TPDU itself is for `tpdu`.
pub fn frame_command_sms(packet: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(3 + packet.len());
    v.extend_from_slice(&COMMAND_UDH);
    v.extend_from_slice(packet);
    v
}

/// The SMS user data of a single-message response packet (TS 31.115 §4.4): `02 71 00`
/// then the packet.
pub fn frame_response_sms(packet: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(3 + packet.len());
    v.extend_from_slice(&RESPONSE_UDH);
    v.extend_from_slice(packet);
    v
}

/// The command packet in SMS user data: checks that the user data header holds the
/// command packet element (IEI `70`, length 0) and returns the bytes after the header.
/// Other elements (concatenation, ...) are allowed beside it.
pub fn unframe_command_sms(user_data: &[u8]) -> Result<&[u8], Error> {
    unframe(user_data, IEI_COMMAND_PACKET)
}

/// The response packet in SMS user data: checks that the user data header holds the
/// response packet element (IEI `71`, length 0) and returns the bytes after the header.
pub fn unframe_response_sms(user_data: &[u8]) -> Result<&[u8], Error> {
    unframe(user_data, IEI_RESPONSE_PACKET)
}

fn unframe(ud: &[u8], iei: u8) -> Result<&[u8], Error> {
    let Some(&udhl) = ud.first() else {
        return Err(Error::Framing("empty user data".into()));
    };
    let end = 1 + udhl as usize;
    let Some(udh) = ud.get(1..end) else {
        return Err(Error::Framing(format!(
            "UDHL {udhl} but only {} bytes follow",
            ud.len() - 1
        )));
    };
    let mut i = 0;
    let mut found = false;
    while i < udh.len() {
        let Some(&len) = udh.get(i + 1) else {
            return Err(Error::Framing(
                "user data header ends inside an element".into(),
            ));
        };
        if udh.len() < i + 2 + len as usize {
            return Err(Error::Framing(format!(
                "element {:02X} of {len} bytes overruns the user data header",
                udh[i]
            )));
        }
        if udh[i] == iei {
            if len != 0 {
                return Err(Error::Framing(format!(
                    "IEI {iei:02X} with length {len}, 0 expected"
                )));
            }
            found = true;
        }
        i += 2 + len as usize;
    }
    if !found {
        return Err(Error::Framing(format!(
            "no IEI {iei:02X} in the user data header"
        )));
    }
    Ok(&ud[end..])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_values() {
        // The standard check values for "123456789".
        assert_eq!(crc16(&[b"123456789"]), 0x906E);
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
    }

    #[test]
    fn spi_round_trips_all_values() {
        for v in 0..=u16::MAX {
            assert_eq!(Spi::from_u16(v).to_u16(), v);
        }
    }

    #[test]
    fn kic_kid_round_trip_all_values() {
        for b in 0..=u8::MAX {
            assert_eq!(Kic::from_byte(b).to_byte(), b);
            assert_eq!(Kid::from_byte(b).to_byte(), b);
            let kid = Kid::from_byte(b);
            assert_eq!(Kid::for_cc(kid.key_version, kid.cc()).to_byte(), b);
            assert_eq!(Kid::for_rc(kid.key_version, kid.rc()).to_byte(), b);
        }
    }

    #[test]
    fn counter_modes() {
        let c = |v| Counter::from_u64(v).unwrap();
        assert!(c(5).check(CounterMode::NoCounter, c(9)).is_ok());
        assert!(c(5).check(CounterMode::NoReplayCheck, c(9)).is_ok());
        assert!(c(10).check(CounterMode::Higher, c(9)).is_ok());
        assert!(c(100).check(CounterMode::Higher, c(9)).is_ok());
        assert!(matches!(
            c(9).check(CounterMode::Higher, c(9)),
            Err(Error::CounterLow { .. })
        ));
        assert!(c(10).check(CounterMode::OneHigher, c(9)).is_ok());
        assert!(matches!(
            c(11).check(CounterMode::OneHigher, c(9)),
            Err(Error::CounterHigh { .. })
        ));
        assert!(matches!(
            c(9).check(CounterMode::OneHigher, c(9)),
            Err(Error::CounterLow { .. })
        ));
        assert!(matches!(
            Counter::MAX.check(CounterMode::Higher, Counter::MAX),
            Err(Error::CounterBlocked(_))
        ));
        assert_eq!(Counter::MAX.next(), None);
        assert_eq!(c(0xFF).next(), Some(c(0x100)));
        assert_eq!(Counter::from_u64(1 << 40), None);
    }

    #[test]
    fn key_debug_is_redacted() {
        let k = Key::new(vec![0x42; 16]);
        assert_eq!(format!("{k:?}"), "Key(<redacted, 16 bytes>)");
    }

    #[test]
    fn framing() {
        assert_eq!(unframe_command_sms(&[2, 0x70, 0, 1, 2]).unwrap(), &[1, 2]);
        assert_eq!(
            unframe_command_sms(&[7, 0x00, 3, 9, 2, 1, 0x70, 0, 1, 2]).unwrap(),
            &[1, 2]
        );
        assert!(unframe_command_sms(&[2, 0x71, 0, 1]).is_err());
        assert!(unframe_response_sms(&[2, 0x71, 1]).is_err());
        assert!(unframe_response_sms(&[]).is_err());
        assert!(unframe_response_sms(&[3, 0x71, 1, 0]).is_err());
    }
}
