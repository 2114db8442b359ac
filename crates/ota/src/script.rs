//! Remote APDU scripts of ETSI TS 102 226 §5: the secured data of a command packet to a
//! remote file management or remote application management application, and the
//! additional data of its PoR.
//!
//! * Compact format (§5.1): commands are C-APDUs one after the other, in the T=0 form
//!   `CLA INS P1 P2 P3 [data]` ([`encode_compact_commands`], [`decode_compact_commands`]);
//!   the response is the number of commands executed, the last status word and the last
//!   response data ([`CompactResponse`]).
//! * Expanded format (§5.2): a Command Scripting template, tag `AA` with a definite length
//!   or `AE` with the indefinite length `80 … 00 00` (TS 101 220 table 7.18), holding
//!   C-APDU TLVs `22`, Immediate Action `81`, Error Action `82` and Script Chaining `83`
//!   TLVs (TS 101 220 table 7.19) — [`CommandScript`]; and a Response Scripting template
//!   `AB` / `AF` holding the number of executed command TLVs `80`, R-APDU TLVs `23`,
//!   Immediate Action Response `81`, Script Chaining Response `83` and Bad Format `90`
//!   TLVs (TS 101 220 table 7.20) — [`ResponseScript`]. The TLVs inside a template always
//!   use definite lengths.
//!
//! C-APDUs and R-APDUs are `apdu::Command` and `apdu::Response`; the TLVs are read and
//! written with `apdu::tlv`.

use apdu::tlv::{self, Tag, TlvRef};
use apdu::{Command, Response, StatusWord};
use core::fmt;

/// Why a script could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// A C-APDU or R-APDU that could not be read or written.
    #[error("APDU {index}: {source}")]
    Apdu {
        /// Its position in the script, from 0.
        index: usize,
        /// What is wrong with it.
        source: apdu::Error,
    },
    /// Malformed BER-TLV.
    #[error("script TLV: {0}")]
    Tlv(apdu::Error),
    /// A template tag other than the expected ones.
    #[error("tag {found:02X} where {expected} was expected")]
    UnexpectedTag {
        /// The tag read.
        found: u32,
        /// What was allowed.
        expected: &'static str,
    },
    /// An indefinite-length template without its end-of-contents `00 00`.
    #[error("indefinite-length template without end-of-contents 00 00")]
    MissingEndOfContents,
    /// Bytes after the template.
    #[error("{0} bytes after the template")]
    TrailingBytes(usize),
    /// A command the compact format cannot carry (§5.1.1: T=0 form, short APDUs, no Le
    /// with command data — the card answers `61xx` and the data is fetched with GET
    /// RESPONSE).
    #[error("command {index} cannot be sent in the compact format: {reason}")]
    NotCompact {
        /// Its position, from 0.
        index: usize,
        /// Why.
        reason: &'static str,
    },
    /// A compact script that ends inside a command.
    #[error("compact script ends inside command {index}: {need} bytes needed, {have} left")]
    Truncated {
        /// The command's position, from 0.
        index: usize,
        /// Bytes the command needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// A value of the wrong size (for example an empty Number of executed commands).
    #[error("{0}")]
    BadValue(String),
}

// ---------------------------------------------------------------------------------------
// Compact format (§5.1)
// ---------------------------------------------------------------------------------------

/// Encodes commands in the compact format (TS 102 226 §5.1.1): each C-APDU in its T=0
/// form, `CLA INS P1 P2 P3 [data]`. A case 1 command gets `P3 = 00`; a case 2 command
/// `P3 = Le`; a case 3 command `P3 = Lc`. Case 4 commands (data and Le) and extended
/// APDUs are refused: send them without Le, the card answers `61xx` and a following GET
/// RESPONSE fetches the data.
pub fn encode_compact_commands(commands: &[Command]) -> Result<Vec<u8>, ScriptError> {
    let mut out = Vec::new();
    for (index, c) in commands.iter().enumerate() {
        if c.is_extended() {
            return Err(ScriptError::NotCompact {
                index,
                reason: "extended APDU",
            });
        }
        if c.case() == 4 {
            return Err(ScriptError::NotCompact {
                index,
                reason: "case 4 (data and Le); send it without Le",
            });
        }
        out.extend_from_slice(&[c.cla, c.ins, c.p1, c.p2]);
        match c.case() {
            1 => out.push(0),
            2 => out.push((c.le.unwrap_or(256) % 256) as u8),
            _ => {
                out.push(c.data.len() as u8);
                out.extend_from_slice(&c.data);
            }
        }
    }
    Ok(out)
}

/// Whether a command header is of an outgoing-data command (case 2: `P3` is Le, no data
/// follows) — the default rule of [`decode_compact_commands`]: READ BINARY `B0`, READ
/// RECORD `B2`, GET RESPONSE `C0`, GET CHALLENGE `84`, FETCH `12`, GET DATA `CA`, and
/// STATUS `F2` with P1 below `10` (the GlobalPlatform GET STATUS, `F2` with P1 `10`–`80`,
/// carries data).
pub fn is_outgoing(header: &[u8; 4]) -> bool {
    match header[1] {
        0xB0 | 0xB2 | 0xC0 | 0x84 | 0x12 | 0xCA => true,
        0xF2 => header[2] < 0x10,
        _ => false,
    }
}

/// Decodes a compact command script with [`is_outgoing`] telling case 2 commands apart.
pub fn decode_compact_commands(bytes: &[u8]) -> Result<Vec<Command>, ScriptError> {
    decode_compact_commands_with(bytes, is_outgoing)
}

/// Decodes a compact command script (TS 102 226 §5.1.1). The T=0 form does not say
/// whether `P3` is Lc or Le, so `outgoing` decides from the header: `true` reads `P3` as
/// Le (`00` meaning 256), `false` as Lc followed by that many data bytes (`00`: case 1).
pub fn decode_compact_commands_with(
    bytes: &[u8],
    outgoing: impl Fn(&[u8; 4]) -> bool,
) -> Result<Vec<Command>, ScriptError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let index = out.len();
        if rest.len() < 5 {
            return Err(ScriptError::Truncated {
                index,
                need: 5,
                have: rest.len(),
            });
        }
        let header = [rest[0], rest[1], rest[2], rest[3]];
        let p3 = rest[4];
        let mut c = Command::new(header[0], header[1], header[2], header[3]);
        if outgoing(&header) {
            c.le = Some(if p3 == 0 { 256 } else { p3 as u32 });
            rest = &rest[5..];
        } else {
            let n = p3 as usize;
            if rest.len() < 5 + n {
                return Err(ScriptError::Truncated {
                    index,
                    need: 5 + n,
                    have: rest.len(),
                });
            }
            c.data = rest[5..5 + n].to_vec();
            rest = &rest[5 + n..];
        }
        out.push(c);
    }
    Ok(out)
}

/// The compact response (TS 102 226 §5.1.2): the number of commands executed, the status
/// word of the last one executed and its response data, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactResponse {
    /// Number of commands executed.
    pub executed: u8,
    /// Status word and response data of the last executed command.
    pub last: Response,
}

impl CompactResponse {
    /// Encodes: count, SW1 SW2, data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(3 + self.last.data.len());
        v.push(self.executed);
        v.extend_from_slice(&self.last.sw.to_bytes());
        v.extend_from_slice(&self.last.data);
        v
    }

    /// Decodes: at least three bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ScriptError> {
        if bytes.len() < 3 {
            return Err(ScriptError::BadValue(format!(
                "compact response of {} bytes; at least 3 (count, SW1 SW2)",
                bytes.len()
            )));
        }
        Ok(Self {
            executed: bytes[0],
            last: Response::new(bytes[3..].to_vec(), StatusWord::new(bytes[1], bytes[2])),
        })
    }
}

impl fmt::Display for CompactResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} command(s) executed, last SW {:04X}",
            self.executed, self.last.sw.0
        )?;
        if !self.last.data.is_empty() {
            write!(f, ", last data {}", apdu::hex(&self.last.data))?;
        }
        Ok(())
    }
}

/// The additional data of a PoR, read as a TS 102 226 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptResponse {
    /// A compact response (§5.1.2).
    Compact(CompactResponse),
    /// A Response Scripting template (§5.2.2).
    Expanded(ResponseScript),
}

/// Reads PoR data as an expanded response when it starts with `AB` or `AF`, otherwise as
/// a compact one. (A compact response reporting 171 or 175 executed commands would start
/// with those bytes too; the command script's format settles it when known.)
pub fn parse_response_data(bytes: &[u8]) -> Result<ScriptResponse, ScriptError> {
    match bytes.first() {
        Some(&(TAG_RESPONSE_SCRIPT | TAG_RESPONSE_SCRIPT_INDEFINITE)) => {
            ResponseScript::parse(bytes).map(ScriptResponse::Expanded)
        }
        _ => CompactResponse::parse(bytes).map(ScriptResponse::Compact),
    }
}

impl fmt::Display for ScriptResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Compact(c) => write!(f, "compact response: {c}"),
            Self::Expanded(e) => e.fmt(f),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Expanded format (§5.2)
// ---------------------------------------------------------------------------------------

/// Command Scripting template, definite length (TS 101 220 table 7.18).
pub const TAG_COMMAND_SCRIPT: u8 = 0xAA;
/// Command Scripting template, indefinite length.
pub const TAG_COMMAND_SCRIPT_INDEFINITE: u8 = 0xAE;
/// Response Scripting template, definite length.
pub const TAG_RESPONSE_SCRIPT: u8 = 0xAB;
/// Response Scripting template, indefinite length.
pub const TAG_RESPONSE_SCRIPT_INDEFINITE: u8 = 0xAF;
/// C-APDU TLV (TS 101 220 table 7.19).
pub const TAG_C_APDU: u8 = 0x22;
/// Immediate Action TLV (command) / Immediate Action Response TLV (response).
pub const TAG_IMMEDIATE_ACTION: u8 = 0x81;
/// Error Action TLV.
pub const TAG_ERROR_ACTION: u8 = 0x82;
/// Script Chaining TLV (command) / Script Chaining Response TLV (response).
pub const TAG_SCRIPT_CHAINING: u8 = 0x83;
/// R-APDU TLV (TS 101 220 table 7.20).
pub const TAG_R_APDU: u8 = 0x23;
/// Number of executed command TLV objects.
pub const TAG_EXECUTED: u8 = 0x80;
/// Bad Format TLV.
pub const TAG_BAD_FORMAT: u8 = 0x90;

/// How a scripting template's own length is coded (TS 102 226 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LengthCoding {
    /// `AA` / `AB` with a definite BER length.
    #[default]
    Definite,
    /// `AE` / `AF` with the indefinite length `80`, closed by `00 00`.
    Indefinite,
}

/// One TLV of a Command Scripting template (TS 102 226 §5.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandTlv {
    /// `22`: a C-APDU, in any ISO/IEC 7816-4 encoding (Le allowed).
    Apdu(Command),
    /// `81`: Immediate Action, its value as is (§5.2.1.2).
    ImmediateAction(Vec<u8>),
    /// `82`: Error Action, its value as is (empty, or proactive commands; §5.2.1.3).
    ErrorAction(Vec<u8>),
    /// `83`: Script Chaining, its value as is (§5.2.1.4).
    ScriptChaining(Vec<u8>),
}

/// A Command Scripting template (TS 102 226 §5.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandScript {
    /// `AA` (definite) or `AE` (indefinite).
    pub coding: LengthCoding,
    /// The TLVs, in order.
    pub items: Vec<CommandTlv>,
}

impl CommandScript {
    /// A definite-length script of these C-APDUs.
    pub fn from_commands(commands: impl IntoIterator<Item = Command>) -> Self {
        Self {
            coding: LengthCoding::Definite,
            items: commands.into_iter().map(CommandTlv::Apdu).collect(),
        }
    }

    /// The C-APDUs, in order.
    pub fn commands(&self) -> impl Iterator<Item = &Command> {
        self.items.iter().filter_map(|i| match i {
            CommandTlv::Apdu(c) => Some(c),
            _ => None,
        })
    }

    /// Encodes the template.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ScriptError> {
        let mut body = Vec::new();
        for (index, item) in self.items.iter().enumerate() {
            let (tag, value) = match item {
                CommandTlv::Apdu(c) => (
                    TAG_C_APDU,
                    c.to_bytes()
                        .map_err(|source| ScriptError::Apdu { index, source })?,
                ),
                CommandTlv::ImmediateAction(v) => (TAG_IMMEDIATE_ACTION, v.clone()),
                CommandTlv::ErrorAction(v) => (TAG_ERROR_ACTION, v.clone()),
                CommandTlv::ScriptChaining(v) => (TAG_SCRIPT_CHAINING, v.clone()),
            };
            tlv::encode_into(&mut body, Tag::new(tag as u32), &value);
        }
        Ok(wrap(
            self.coding,
            TAG_COMMAND_SCRIPT,
            TAG_COMMAND_SCRIPT_INDEFINITE,
            body,
        ))
    }

    /// Decodes a template, `AA` or `AE`. Trailing bytes are an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, ScriptError> {
        let (coding, tlvs) = unwrap(
            bytes,
            TAG_COMMAND_SCRIPT,
            TAG_COMMAND_SCRIPT_INDEFINITE,
            "AA or AE",
        )?;
        let mut items = Vec::with_capacity(tlvs.len());
        for (index, t) in tlvs.iter().enumerate() {
            let v = t.value();
            let tag = t.tag();
            let unexpected = ScriptError::UnexpectedTag {
                found: tag.value(),
                expected: "22, 81, 82 or 83 in a Command Scripting template",
            };
            if tag.encoded_len() != 1 {
                return Err(unexpected);
            }
            items.push(match tag.value() as u8 {
                TAG_C_APDU => CommandTlv::Apdu(
                    Command::parse(v).map_err(|source| ScriptError::Apdu { index, source })?,
                ),
                TAG_IMMEDIATE_ACTION => CommandTlv::ImmediateAction(v.to_vec()),
                TAG_ERROR_ACTION => CommandTlv::ErrorAction(v.to_vec()),
                TAG_SCRIPT_CHAINING => CommandTlv::ScriptChaining(v.to_vec()),
                _ => return Err(unexpected),
            });
        }
        Ok(Self { coding, items })
    }
}

/// The error type of a Bad Format TLV `90` (TS 102 226 §5.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadFormat {
    /// `01`: unknown tag.
    UnknownTag,
    /// `02`: length error.
    WrongLength,
    /// `03`: length not found.
    LengthMissing,
    /// Any other value.
    Other(u8),
}

impl BadFormat {
    /// Decodes the error type.
    pub fn from_byte(b: u8) -> Self {
        match b {
            1 => Self::UnknownTag,
            2 => Self::WrongLength,
            3 => Self::LengthMissing,
            b => Self::Other(b),
        }
    }
    /// Encodes the error type.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::UnknownTag => 1,
            Self::WrongLength => 2,
            Self::LengthMissing => 3,
            Self::Other(b) => b,
        }
    }
}

/// One TLV of a Response Scripting template (TS 102 226 §5.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseTlv {
    /// `80`: number of executed command TLV objects.
    Executed(u32),
    /// `23`: an R-APDU (response data then SW1 SW2).
    Apdu(Response),
    /// `81`: Immediate Action Response, its value as is.
    ImmediateActionResponse(Vec<u8>),
    /// `83`: Script Chaining Response, its value as is.
    ScriptChainingResponse(Vec<u8>),
    /// `90`: Bad Format, with its error type.
    BadFormat(BadFormat),
}

/// A Response Scripting template (TS 102 226 §5.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseScript {
    /// `AB` (definite) or `AF` (indefinite).
    pub coding: LengthCoding,
    /// The TLVs, in order (normally the executed count first).
    pub items: Vec<ResponseTlv>,
}

impl ResponseScript {
    /// The number of executed command TLVs, from the `80` TLV if present.
    pub fn executed(&self) -> Option<u32> {
        self.items.iter().find_map(|i| match i {
            ResponseTlv::Executed(n) => Some(*n),
            _ => None,
        })
    }

    /// The R-APDUs, in order.
    pub fn responses(&self) -> impl Iterator<Item = &Response> {
        self.items.iter().filter_map(|i| match i {
            ResponseTlv::Apdu(r) => Some(r),
            _ => None,
        })
    }

    /// The Bad Format error, if any.
    pub fn bad_format(&self) -> Option<BadFormat> {
        self.items.iter().find_map(|i| match i {
            ResponseTlv::BadFormat(b) => Some(*b),
            _ => None,
        })
    }

    /// Encodes the template.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for item in &self.items {
            let (tag, value) = match item {
                ResponseTlv::Executed(n) => (TAG_EXECUTED, minimal_be(*n)),
                ResponseTlv::Apdu(r) => (TAG_R_APDU, r.to_bytes()),
                ResponseTlv::ImmediateActionResponse(v) => (TAG_IMMEDIATE_ACTION, v.clone()),
                ResponseTlv::ScriptChainingResponse(v) => (TAG_SCRIPT_CHAINING, v.clone()),
                ResponseTlv::BadFormat(b) => (TAG_BAD_FORMAT, vec![b.to_byte()]),
            };
            tlv::encode_into(&mut body, Tag::new(tag as u32), &value);
        }
        wrap(
            self.coding,
            TAG_RESPONSE_SCRIPT,
            TAG_RESPONSE_SCRIPT_INDEFINITE,
            body,
        )
    }

    /// Decodes a template, `AB` or `AF`. Trailing bytes are an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, ScriptError> {
        let (coding, tlvs) = unwrap(
            bytes,
            TAG_RESPONSE_SCRIPT,
            TAG_RESPONSE_SCRIPT_INDEFINITE,
            "AB or AF",
        )?;
        let mut items = Vec::with_capacity(tlvs.len());
        for (index, t) in tlvs.iter().enumerate() {
            let v = t.value();
            let tag = t.tag();
            if tag.encoded_len() != 1 {
                return Err(ScriptError::UnexpectedTag {
                    found: tag.value(),
                    expected: "80, 23, 81, 83 or 90 in a Response Scripting template",
                });
            }
            items.push(match tag.value() as u8 {
                TAG_EXECUTED => {
                    if v.is_empty() || v.len() > 4 {
                        return Err(ScriptError::BadValue(format!(
                            "number of executed commands of {} bytes",
                            v.len()
                        )));
                    }
                    ResponseTlv::Executed(v.iter().fold(0u32, |a, &b| a << 8 | b as u32))
                }
                TAG_R_APDU => ResponseTlv::Apdu(
                    Response::parse(v).map_err(|source| ScriptError::Apdu { index, source })?,
                ),
                TAG_IMMEDIATE_ACTION => ResponseTlv::ImmediateActionResponse(v.to_vec()),
                TAG_SCRIPT_CHAINING => ResponseTlv::ScriptChainingResponse(v.to_vec()),
                TAG_BAD_FORMAT => {
                    if v.len() != 1 {
                        return Err(ScriptError::BadValue(format!(
                            "Bad Format TLV of {} bytes, 1 expected",
                            v.len()
                        )));
                    }
                    ResponseTlv::BadFormat(BadFormat::from_byte(v[0]))
                }
                _ => {
                    return Err(ScriptError::UnexpectedTag {
                        found: tag.value(),
                        expected: "80, 23, 81, 83 or 90 in a Response Scripting template",
                    })
                }
            });
        }
        Ok(Self { coding, items })
    }
}

impl fmt::Display for ResponseScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expanded response")?;
        if let Some(n) = self.executed() {
            write!(f, ", {n} command TLV(s) executed")?;
        }
        for (i, r) in self.responses().enumerate() {
            write!(f, "; R-APDU {}: SW {:04X}", i + 1, r.sw.0)?;
            if !r.data.is_empty() {
                write!(f, " data {}", apdu::hex(&r.data))?;
            }
        }
        if let Some(b) = self.bad_format() {
            write!(f, "; bad format {:02X}", b.to_byte())?;
        }
        Ok(())
    }
}

fn minimal_be(n: u32) -> Vec<u8> {
    let b = n.to_be_bytes();
    let skip = b.iter().take(3).take_while(|&&x| x == 0).count();
    b[skip..].to_vec()
}

fn wrap(coding: LengthCoding, definite: u8, indefinite: u8, body: Vec<u8>) -> Vec<u8> {
    match coding {
        LengthCoding::Definite => tlv::encode(Tag::new(definite as u32), &body),
        LengthCoding::Indefinite => {
            let mut v = Vec::with_capacity(body.len() + 4);
            v.push(indefinite);
            v.push(0x80);
            v.extend_from_slice(&body);
            v.extend_from_slice(&[0, 0]);
            v
        }
    }
}

/// Reads a scripting template and its inner TLVs.
fn unwrap<'a>(
    bytes: &'a [u8],
    definite: u8,
    indefinite: u8,
    expected: &'static str,
) -> Result<(LengthCoding, Vec<TlvRef<'a>>), ScriptError> {
    match bytes.first() {
        Some(&t) if t == definite => {
            let (outer, rest) = TlvRef::parse_one(bytes).map_err(ScriptError::Tlv)?;
            if !rest.is_empty() {
                return Err(ScriptError::TrailingBytes(rest.len()));
            }
            let inner = tlv::parse_all_ref(outer.value()).map_err(ScriptError::Tlv)?;
            Ok((LengthCoding::Definite, inner))
        }
        Some(&t) if t == indefinite => {
            if bytes.get(1) != Some(&0x80) {
                return Err(ScriptError::BadValue(format!(
                    "template {indefinite:02X} without the indefinite length 80"
                )));
            }
            let mut rest = &bytes[2..];
            let mut inner = Vec::new();
            loop {
                match rest {
                    [0, 0, tail @ ..] => {
                        if !tail.is_empty() {
                            return Err(ScriptError::TrailingBytes(tail.len()));
                        }
                        return Ok((LengthCoding::Indefinite, inner));
                    }
                    [] | [0] => return Err(ScriptError::MissingEndOfContents),
                    _ => {
                        let (t, r) = TlvRef::parse_one(rest).map_err(ScriptError::Tlv)?;
                        inner.push(t);
                        rest = r;
                    }
                }
            }
        }
        Some(&t) => Err(ScriptError::UnexpectedTag {
            found: t as u32,
            expected,
        }),
        None => Err(ScriptError::BadValue("empty script".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        apdu::parse_hex(s).unwrap()
    }

    #[test]
    fn compact_commands() {
        // The two commands of the asterix card trace: GET DATA and GET RESPONSE, case 2.
        let cmds = decode_compact_commands(&h("80CA00E00000C0000000")).unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0], Command::new(0x80, 0xCA, 0x00, 0xE0).with_le(256));
        assert_eq!(
            encode_compact_commands(&cmds).unwrap(),
            h("80CA00E00000C0000000")
        );
        let sel = decode_compact_commands(&h("00A40004023F00")).unwrap();
        assert_eq!(
            sel,
            vec![Command::new(0, 0xA4, 0, 4).with_data(vec![0x3F, 0])]
        );
        assert!(decode_compact_commands(&h("00A4000402")).is_err());
        assert!(matches!(
            encode_compact_commands(&[Command::new(0, 0xA4, 0, 4).with_data(vec![1]).with_le(256)]),
            Err(ScriptError::NotCompact { index: 0, .. })
        ));
    }

    #[test]
    fn compact_response() {
        // pySim's PoR data: one command, SW 6132, no data.
        let r = CompactResponse::parse(&h("016132")).unwrap();
        assert_eq!(r.executed, 1);
        assert_eq!(r.last.sw, StatusWord(0x6132));
        assert_eq!(r.to_bytes(), h("016132"));
        assert!(CompactResponse::parse(&h("0190")).is_err());
        assert_eq!(
            parse_response_data(&h("016132")).unwrap(),
            ScriptResponse::Compact(r)
        );
        assert!(matches!(
            parse_response_data(&h("AB03800101")).unwrap(),
            ScriptResponse::Expanded(_)
        ));
    }

    #[test]
    fn expanded_commands() {
        let apdu = Command::new(0x80, 0xE2, 0x90, 0x00).with_le(256);
        let s = CommandScript::from_commands([apdu.clone()]);
        assert_eq!(s.to_bytes().unwrap(), h("AA07220580E2900000"));
        let s = CommandScript {
            coding: LengthCoding::Indefinite,
            ..s
        };
        assert_eq!(s.to_bytes().unwrap(), h("AE80220580E29000000000"));
        assert_eq!(
            CommandScript::parse(&h("AE80220580E29000000000")).unwrap(),
            s
        );
        assert_eq!(
            CommandScript::parse(&h("AA07220580E2900000"))
                .unwrap()
                .items
                .len(),
            1
        );
        assert!(CommandScript::parse(&h("AE80220580E2900000")).is_err());
        assert!(CommandScript::parse(&h("AA07220580E290000000")).is_err());
        assert!(CommandScript::parse(&h("AA03230190")).is_err());
    }

    #[test]
    fn expanded_responses() {
        let bytes = h("AB0C800101230461029000900102");
        let r = ResponseScript::parse(&bytes).unwrap();
        assert_eq!(r.executed(), Some(1));
        assert_eq!(r.responses().count(), 1);
        assert_eq!(r.bad_format(), Some(BadFormat::WrongLength));
        assert_eq!(r.to_bytes(), bytes);
        let indef = ResponseScript {
            coding: LengthCoding::Indefinite,
            ..r.clone()
        };
        assert_eq!(ResponseScript::parse(&indef.to_bytes()).unwrap(), indef);
        assert!(ResponseScript::parse(&h("AB0280")).is_err());
    }
}
