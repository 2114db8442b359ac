//! GET DATA (GP 2.3.1 §11.3) and the data objects it returns: CPLC, card recognition
//! data, key information template, IIN, CIN, key diversification data.

use core::fmt;

use apdu::Command;

use super::{bad_p1p2, expect_ins, ins, CLA_GP};
use crate::reader::Cursor;
use apdu::tlv::{self, Tag};

use crate::reader::{tlv_all, tlv_single};
use crate::{Error, Result};

/// A data object reachable by GET DATA, identified by P1P2 (GP 2.3.1 §11.3.2.1; Appendix H).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataObject {
    /// `9F7F`: Card Production Life Cycle data.
    Cplc,
    /// `0066`: Card Data (card recognition data, §H.2).
    CardData,
    /// `0067`: Card Capability Information (§H.4).
    CardCapabilities,
    /// `00E0`: Key Information Template (§11.3.3.1).
    KeyInformation,
    /// `0042`: Issuer Identification Number.
    Iin,
    /// `0045`: Card Image Number.
    Cin,
    /// `00CF`: Key Diversification Data.
    KeyDiversificationData,
    /// `00C1`: sequence counter of the default key version number.
    SequenceCounter,
    /// `00C2`: confirmation counter.
    ConfirmationCounter,
    /// Any other P1P2.
    Other(u16),
}

impl DataObject {
    /// P1P2 as a 16-bit tag.
    pub const fn tag(self) -> u16 {
        match self {
            Self::Cplc => 0x9F7F,
            Self::CardData => 0x0066,
            Self::CardCapabilities => 0x0067,
            Self::KeyInformation => 0x00E0,
            Self::Iin => 0x0042,
            Self::Cin => 0x0045,
            Self::KeyDiversificationData => 0x00CF,
            Self::SequenceCounter => 0x00C1,
            Self::ConfirmationCounter => 0x00C2,
            Self::Other(t) => t,
        }
    }

    /// P1P2 as a BER-TLV tag (`0066` is the one-byte tag `66`), or `None` if P1P2 is not
    /// a valid tag encoding (ISO/IEC 7816-4 §5.2.2.1), e.g. `0000` or `4F01`.
    pub fn ber_tag(self) -> Option<Tag> {
        Tag::try_new(u32::from(self.tag())).ok()
    }

    /// The object for a P1P2 value.
    pub const fn from_tag(tag: u16) -> Self {
        match tag {
            0x9F7F => Self::Cplc,
            0x0066 => Self::CardData,
            0x0067 => Self::CardCapabilities,
            0x00E0 => Self::KeyInformation,
            0x0042 => Self::Iin,
            0x0045 => Self::Cin,
            0x00CF => Self::KeyDiversificationData,
            0x00C1 => Self::SequenceCounter,
            0x00C2 => Self::ConfirmationCounter,
            t => Self::Other(t),
        }
    }
}

/// GET DATA: `80 CA P1 P2 00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GetData {
    /// The object requested.
    pub object: DataObject,
}

impl GetData {
    /// Requests this object.
    pub fn new(object: DataObject) -> Self {
        Self { object }
    }

    /// The command (case 2, `Le = 00`).
    pub fn to_command(&self) -> Result<Command> {
        let [p1, p2] = self.object.tag().to_be_bytes();
        Ok(Command::new(CLA_GP, ins::GET_DATA, p1, p2).with_le(256))
    }

    /// Reads GET DATA (INS `CA`); a data field is not allowed.
    pub fn parse(cmd: &Command) -> Result<Self> {
        expect_ins(cmd, ins::GET_DATA, "GET DATA")?;
        if !cmd.data.is_empty() {
            return Err(Error::InvalidValue {
                context: "GET DATA",
                field: "data field",
                reason: "INS CA takes no command data".into(),
            });
        }
        if cmd.p1 == 0 && cmd.p2 == 0 {
            return Err(bad_p1p2(cmd, "GET DATA"));
        }
        Ok(Self::new(DataObject::from_tag(u16::from_be_bytes([
            cmd.p1, cmd.p2,
        ]))))
    }

    /// Reads a response for a simple object (`42`, `45`, `CF`, `C1`, `C2`, …): the value of
    /// the single data object whose tag is P1P2 (or P2 when P1 is `00`).
    pub fn value_of(&self, data: &[u8]) -> Result<Vec<u8>> {
        const CTX: &str = "GET DATA response";
        let t = tlv_single(data, self.ber_tag(CTX)?, CTX)?;
        Ok(t.value().to_vec())
    }

    /// Builds the response for a simple object: `tag len value`. Fails if P1P2 is not a
    /// BER-TLV tag.
    pub fn response_for(&self, value: &[u8]) -> Result<Vec<u8>> {
        Ok(tlv::encode(self.ber_tag("GET DATA response")?, value))
    }

    fn ber_tag(&self, context: &'static str) -> Result<Tag> {
        self.object.ber_tag().ok_or_else(|| Error::InvalidValue {
            context,
            field: "P1P2",
            reason: format!("{:04X} is not a BER-TLV tag", self.object.tag()),
        })
    }
}

/// Card Production Life Cycle data (`9F7F`, 42 bytes, as defined by the Visa GlobalPlatform card
/// implementation requirements). Dates are `YDDD` (last digit of the year, day of the year) in BCD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[allow(missing_docs)]
pub struct Cplc {
    pub ic_fabricator: [u8; 2],
    pub ic_type: [u8; 2],
    pub operating_system_id: [u8; 2],
    pub operating_system_release_date: [u8; 2],
    pub operating_system_release_level: [u8; 2],
    pub ic_fabrication_date: [u8; 2],
    pub ic_serial_number: [u8; 4],
    pub ic_batch_identifier: [u8; 2],
    pub ic_module_fabricator: [u8; 2],
    pub ic_module_packaging_date: [u8; 2],
    pub icc_manufacturer: [u8; 2],
    pub ic_embedding_date: [u8; 2],
    pub ic_pre_personalizer: [u8; 2],
    pub ic_pre_personalization_date: [u8; 2],
    pub ic_pre_personalization_equipment_id: [u8; 4],
    pub ic_personalizer: [u8; 2],
    pub ic_personalization_date: [u8; 2],
    pub ic_personalization_equipment_id: [u8; 4],
}

impl Cplc {
    /// Length of the CPLC value.
    pub const LEN: usize = 42;

    /// Reads CPLC: `9F7F 2A <42 bytes>`, or the bare 42-byte value.
    pub fn parse(data: &[u8]) -> Result<Self> {
        let value = if data.len() == Self::LEN {
            data
        } else {
            tlv_single(data, Tag::new(0x9F7F), "CPLC")?.value()
        };
        if value.len() != Self::LEN {
            return Err(Error::FieldLength {
                context: "CPLC",
                field: "9F7F value",
                len: value.len(),
                expected: "42",
            });
        }
        let mut c = Cursor::new(value, "CPLC");
        macro_rules! f {
            ($n:literal, $name:literal) => {{
                let mut a = [0u8; $n];
                a.copy_from_slice(c.bytes($n, $name)?);
                a
            }};
        }
        Ok(Self {
            ic_fabricator: f!(2, "IC fabricator"),
            ic_type: f!(2, "IC type"),
            operating_system_id: f!(2, "operating system identifier"),
            operating_system_release_date: f!(2, "operating system release date"),
            operating_system_release_level: f!(2, "operating system release level"),
            ic_fabrication_date: f!(2, "IC fabrication date"),
            ic_serial_number: f!(4, "IC serial number"),
            ic_batch_identifier: f!(2, "IC batch identifier"),
            ic_module_fabricator: f!(2, "IC module fabricator"),
            ic_module_packaging_date: f!(2, "IC module packaging date"),
            icc_manufacturer: f!(2, "ICC manufacturer"),
            ic_embedding_date: f!(2, "IC embedding date"),
            ic_pre_personalizer: f!(2, "IC pre-personalizer"),
            ic_pre_personalization_date: f!(2, "IC pre-personalization date"),
            ic_pre_personalization_equipment_id: f!(
                4,
                "IC pre-personalization equipment identifier"
            ),
            ic_personalizer: f!(2, "IC personalizer"),
            ic_personalization_date: f!(2, "IC personalization date"),
            ic_personalization_equipment_id: f!(4, "IC personalization equipment identifier"),
        })
    }

    fn fields(&self) -> [(&'static str, &[u8], bool); 18] {
        [
            ("ICFabricator", &self.ic_fabricator, false),
            ("ICType", &self.ic_type, false),
            ("OperatingSystemID", &self.operating_system_id, false),
            (
                "OperatingSystemReleaseDate",
                &self.operating_system_release_date,
                true,
            ),
            (
                "OperatingSystemReleaseLevel",
                &self.operating_system_release_level,
                false,
            ),
            ("ICFabricationDate", &self.ic_fabrication_date, true),
            ("ICSerialNumber", &self.ic_serial_number, false),
            ("ICBatchIdentifier", &self.ic_batch_identifier, false),
            ("ICModuleFabricator", &self.ic_module_fabricator, false),
            (
                "ICModulePackagingDate",
                &self.ic_module_packaging_date,
                true,
            ),
            ("ICCManufacturer", &self.icc_manufacturer, false),
            ("ICEmbeddingDate", &self.ic_embedding_date, true),
            ("ICPrePersonalizer", &self.ic_pre_personalizer, false),
            (
                "ICPrePersonalizationEquipmentDate",
                &self.ic_pre_personalization_date,
                true,
            ),
            (
                "ICPrePersonalizationEquipmentID",
                &self.ic_pre_personalization_equipment_id,
                false,
            ),
            ("ICPersonalizer", &self.ic_personalizer, false),
            ("ICPersonalizationDate", &self.ic_personalization_date, true),
            (
                "ICPersonalizationEquipmentID",
                &self.ic_personalization_equipment_id,
                false,
            ),
        ]
    }

    /// The 42-byte value.
    pub fn value(&self) -> Vec<u8> {
        self.fields()
            .iter()
            .flat_map(|(_, v, _)| v.iter().copied())
            .collect()
    }

    /// The response data: `9F7F 2A <value>`.
    pub fn to_bytes(&self) -> Vec<u8> {
        tlv::encode(Tag::new(0x9F7F), &self.value())
    }

    /// Decodes a `YDDD` BCD date into (last digit of year, day of year), if it is valid BCD
    /// with a day in 1..=366.
    pub fn date(d: [u8; 2]) -> Option<(u8, u16)> {
        let digits = [d[0] >> 4, d[0] & 0xF, d[1] >> 4, d[1] & 0xF];
        if digits.iter().any(|&x| x > 9) {
            return None;
        }
        let day = u16::from(digits[1]) * 100 + u16::from(digits[2]) * 10 + u16::from(digits[3]);
        (1..=366).contains(&day).then_some((digits[0], day))
    }
}

impl fmt::Display for Cplc {
    /// One `Name=HEX` line per field; dates also decoded (`(year …1, day 234)`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, v, is_date)) in self.fields().into_iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{name}={}", apdu::hex(v))?;
            if is_date {
                if let Some((y, d)) = Self::date([v[0], v[1]]) {
                    write!(f, " (year …{y}, day {d})")?;
                }
            }
        }
        Ok(())
    }
}

/// `{globalPlatform}` OID prefix 1.2.840.114283 as DER content bytes.
const GP_OID: [u8; 6] = [0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B];

fn gp_oid(arc: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = GP_OID.to_vec();
    v.push(arc);
    v.extend_from_slice(rest);
    v
}

/// The arcs after `{globalPlatform arc}` in an OID held in `06` inside `tag`'s value.
fn oid_suffix(value: &[u8], arc: u8, what: &'static str) -> Result<Vec<u8>> {
    const CTX: &str = "card recognition data";
    let oid = tlv_single(value, Tag::new(0x06), CTX)?;
    let prefix = gp_oid(arc, &[]);
    match oid.value().strip_prefix(prefix.as_slice()) {
        Some(rest) => Ok(rest.to_vec()),
        None => Err(Error::InvalidValue {
            context: CTX,
            field: what,
            reason: format!(
                "OID {} is not under 1.2.840.114283.{arc}",
                apdu::hex(oid.value())
            ),
        }),
    }
}

/// One secure channel protocol the card supports (`64`, OID 1.2.840.114283.4.scp.i).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScpOption {
    /// SCP number (`02`, `03`, …).
    pub scp: u8,
    /// Implementation option `i`.
    pub i: u8,
}

impl fmt::Display for ScpOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SCP{:02X} i={:02X}", self.scp, self.i)
    }
}

/// Card Data (`66`) holding Card Recognition Data (`73`), GP 2.3.1 Appendix H.2.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CardData {
    /// `60`: card management type and version, the arcs after 1.2.840.114283.2 (e.g. `[2, 3, 1]`).
    pub gp_version: Option<Vec<u8>>,
    /// `63`: whether the card identification scheme OID (1.2.840.114283.3) is present.
    pub identification_scheme: bool,
    /// `64`: secure channel protocols and options.
    pub scp: Vec<ScpOption>,
    /// `65`: card configuration details, raw.
    pub configuration_details: Option<Vec<u8>>,
    /// `66`: card / chip details, raw.
    pub chip_details: Option<Vec<u8>>,
    /// Other objects in `73` (e.g. `67`, `68`), as (tag, value).
    pub other: Vec<(Tag, Vec<u8>)>,
}

impl CardData {
    /// The GP version as text, e.g. `2.3.1`.
    pub fn gp_version_string(&self) -> Option<String> {
        self.gp_version
            .as_ref()
            .map(|v| v.iter().map(u8::to_string).collect::<Vec<_>>().join("."))
    }

    /// Reads `66 { 73 { 06 OID, 60, 63, 64…, 65, 66, … } }`.
    pub fn parse(data: &[u8]) -> Result<Self> {
        const CTX: &str = "card recognition data";
        let outer = tlv_single(data, Tag::new(0x66), CTX)?;
        let crd = tlv_single(outer.value(), Tag::new(0x73), CTX)?;
        let mut out = Self::default();
        let mut saw_oid = false;
        for t in tlv_all(crd.value(), CTX)? {
            match t.tag().value() {
                0x06 => {
                    if t.value() != gp_oid(1, &[]).as_slice() {
                        return Err(Error::InvalidValue {
                            context: CTX,
                            field: "06 OID",
                            reason: format!("{} is not 1.2.840.114283.1", apdu::hex(t.value())),
                        });
                    }
                    saw_oid = true;
                }
                0x60 => {
                    let v = oid_suffix(t.value(), 2, "60 card management type and version")?;
                    if v.iter().any(|&b| b & 0x80 != 0) {
                        return Err(Error::InvalidValue {
                            context: CTX,
                            field: "60 card management type and version",
                            reason: "version arcs above 127".into(),
                        });
                    }
                    out.gp_version = Some(v);
                }
                0x63 => {
                    oid_suffix(t.value(), 3, "63 card identification scheme")?;
                    out.identification_scheme = true;
                }
                0x64 => {
                    let v = oid_suffix(t.value(), 4, "64 secure channel protocol")?;
                    let [scp, i] = v[..] else {
                        return Err(Error::FieldLength {
                            context: CTX,
                            field: "64 secure channel protocol OID arcs",
                            len: v.len(),
                            expected: "2 (scp, i)",
                        });
                    };
                    out.scp.push(ScpOption { scp, i });
                }
                0x65 => out.configuration_details = Some(t.value().to_vec()),
                0x66 => out.chip_details = Some(t.value().to_vec()),
                _ => out.other.push((t.tag(), t.value().to_vec())),
            }
        }
        if !saw_oid {
            return Err(Error::MissingTag {
                context: CTX,
                tag: 0x06,
            });
        }
        Ok(out)
    }

    /// Encodes the `66` object.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = tlv::encode(Tag::new(0x06), &gp_oid(1, &[]));
        if let Some(ver) = &self.gp_version {
            tlv::encode_into(
                &mut v,
                Tag::new(0x60),
                &tlv::encode(Tag::new(0x06), &gp_oid(2, ver)),
            );
        }
        if self.identification_scheme {
            tlv::encode_into(
                &mut v,
                Tag::new(0x63),
                &tlv::encode(Tag::new(0x06), &gp_oid(3, &[])),
            );
        }
        for s in &self.scp {
            tlv::encode_into(
                &mut v,
                Tag::new(0x64),
                &tlv::encode(Tag::new(0x06), &gp_oid(4, &[s.scp, s.i])),
            );
        }
        if let Some(x) = &self.configuration_details {
            tlv::encode_into(&mut v, Tag::new(0x65), x);
        }
        if let Some(x) = &self.chip_details {
            tlv::encode_into(&mut v, Tag::new(0x66), x);
        }
        for (tag, x) in &self.other {
            tlv::encode_into(&mut v, *tag, x);
        }
        tlv::encode(Tag::new(0x66), &tlv::encode(Tag::new(0x73), &v))
    }
}

/// One key component of a key information entry (GP 2.3.1 §11.3.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyComponent {
    /// Key type (§11.1.8): `80` DES, `88` AES, `85` TLS PSK, `A1` RSA modulus…
    pub key_type: u8,
    /// Length in bytes. In the basic format `00` means "256 or more" and reads as 256.
    pub length: u16,
}

impl KeyComponent {
    /// A readable name for a key type (GP 2.3.1 §11.1.8).
    pub fn type_name(key_type: u8) -> &'static str {
        match key_type {
            0x00..=0x7F => "private",
            0x80 => "DES",
            0x81 => "3DES (reserved)",
            0x82 => "3DES-CBC",
            0x83 => "DES-ECB",
            0x84 => "DES-CBC",
            0x85 => "TLS-PSK",
            0x88 => "AES",
            0x90 => "HMAC-SHA1",
            0x91 => "HMAC-SHA1-160",
            0xA0 => "RSA public e",
            0xA1 => "RSA public N",
            0xA2 => "RSA private N",
            0xA3 => "RSA private d",
            0xA4 => "RSA CRT P",
            0xA5 => "RSA CRT Q",
            0xA6 => "RSA CRT PQ",
            0xA7 => "RSA CRT DP1",
            0xA8 => "RSA CRT DQ1",
            0xB0 => "ECC public",
            0xB1 => "ECC private",
            0xB2..=0xB7 => "ECC field parameter",
            0xF0 => "ECC key parameters reference",
            0xFF => "extended",
            _ => "RFU",
        }
    }
}

/// One `C0` entry of the key information template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyInfoEntry {
    /// Key identifier.
    pub id: u8,
    /// Key version number.
    pub version: u8,
    /// Key components (one for symmetric keys).
    pub components: Vec<KeyComponent>,
    /// `Some` for the GP 2.2 extended format (§11.3.3.1): (key usage, key access), each
    /// absent when its length byte is `00`.
    pub extended: Option<(Option<u8>, Option<u8>)>,
}

/// Key Information Template (`E0`, GP 2.3.1 §11.3.3.1): the keys of the selected SD.
///
/// Both entry formats are read: basic (GP 2.1: `id ver (type len)+`) and extended
/// (GP 2.2: `id ver (FF type len16)+ usage_len [usage] access_len [access]`). Empty `C0`
/// entries (a fresh SSD) are skipped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct KeyInfo {
    /// The entries, in card order.
    pub entries: Vec<KeyInfoEntry>,
}

impl KeyInfo {
    /// Reads `E0 { C0 … }`.
    pub fn parse(data: &[u8]) -> Result<Self> {
        const CTX: &str = "key information";
        let e0 = tlv_single(data, Tag::new(0xE0), CTX)?;
        let mut entries = Vec::new();
        for t in tlv_all(e0.value(), CTX)? {
            if t.tag().value() != 0xC0 {
                return Err(Error::UnexpectedTag {
                    context: CTX,
                    expected: 0xC0,
                    found: t.tag().value(),
                    offset: t.offset(),
                });
            }
            if t.value().is_empty() {
                continue;
            }
            let mut c = Cursor::new(t.value(), "key information entry");
            let id = c.u8("key identifier")?;
            let version = c.u8("key version number")?;
            let mut components = Vec::new();
            let extended = t.value().get(2) == Some(&0xFF);
            if extended {
                // Components are `FF type len16`; some cards mix in `type len16` without
                // the FF marker (GlobalPlatformPro TestGPKeyInfo). The entry ends with at
                // least 2 bytes (usage length, access length).
                loop {
                    let rem = c.remaining();
                    match t.value().get(c.pos()) {
                        Some(0xFF) if rem >= 6 => {
                            c.u8("extended key type marker")?;
                        }
                        Some(_) if rem >= 5 && !components.is_empty() => {}
                        _ => break,
                    }
                    let key_type = c.u8("key type")?;
                    let length = c.u16("key length")?;
                    components.push(KeyComponent { key_type, length });
                }
                let usage = c.lv("key usage")?;
                let access = c.lv("key access")?;
                c.finish()?;
                let one = |v: &[u8], field| match v {
                    [] => Ok(None),
                    [b] => Ok(Some(*b)),
                    _ => Err(Error::FieldLength {
                        context: CTX,
                        field,
                        len: v.len(),
                        expected: "0 or 1",
                    }),
                };
                entries.push(KeyInfoEntry {
                    id,
                    version,
                    components,
                    extended: Some((one(usage, "key usage")?, one(access, "key access")?)),
                });
            } else {
                if c.is_empty() {
                    return Err(Error::Truncated {
                        context: CTX,
                        field: "key type",
                        offset: 2,
                        needed: 2,
                    });
                }
                while !c.is_empty() {
                    let key_type = c.u8("key type")?;
                    let l = c.u8("key length")?;
                    components.push(KeyComponent {
                        key_type,
                        length: if l == 0 { 256 } else { u16::from(l) },
                    });
                }
                entries.push(KeyInfoEntry {
                    id,
                    version,
                    components,
                    extended: None,
                });
            }
        }
        Ok(Self { entries })
    }

    /// Encodes `E0 { C0 … }`; basic entries with a length of 256 or more write `00`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for e in &self.entries {
            let mut v = vec![e.id, e.version];
            match e.extended {
                None => {
                    for k in &e.components {
                        v.push(k.key_type);
                        v.push(if k.length >= 256 { 0 } else { k.length as u8 });
                    }
                }
                Some((usage, access)) => {
                    for k in &e.components {
                        v.extend_from_slice(&[0xFF, k.key_type]);
                        v.extend_from_slice(&k.length.to_be_bytes());
                    }
                    for x in [usage, access] {
                        match x {
                            Some(b) => v.extend_from_slice(&[1, b]),
                            None => v.push(0),
                        }
                    }
                }
            }
            tlv::encode_into(&mut body, Tag::new(0xC0), &v);
        }
        tlv::encode(Tag::new(0xE0), &body)
    }
}

impl fmt::Display for KeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, e) in self.entries.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(f, "Key ID {:02X} version {:02X}:", e.id, e.version)?;
            for k in &e.components {
                write!(
                    f,
                    " {} ({:02X}) {} bytes",
                    KeyComponent::type_name(k.key_type),
                    k.key_type,
                    k.length
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::{hex, parse_hex};

    #[test]
    fn get_data_commands() {
        let c = GetData::new(DataObject::Cplc).to_command().unwrap();
        assert_eq!(hex(&c.to_bytes().unwrap()), "80CA9F7F00");
        assert_eq!(GetData::parse(&c).unwrap().object, DataObject::Cplc);
        let c = GetData::new(DataObject::CardData).to_command().unwrap();
        assert_eq!(hex(&c.to_bytes().unwrap()), "80CA006600");
        assert_eq!(GetData::parse(&c).unwrap().object, DataObject::CardData);
        let iin = GetData::new(DataObject::Iin);
        assert_eq!(
            iin.value_of(&iin.response_for(&[1, 2, 3]).unwrap())
                .unwrap(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn key_info_both_formats() {
        // Basic format entries as in pySim's KeyInformationData examples (c0 04 01 70 80 10).
        let basic = parse_hex("E00CC00401708010C00402708810").unwrap();
        let k = KeyInfo::parse(&basic).unwrap();
        assert_eq!(k.entries.len(), 2);
        assert_eq!(
            k.entries[1].components[0],
            KeyComponent {
                key_type: 0x88,
                length: 16
            }
        );
        assert_eq!(k.to_bytes(), basic);
        let ext = parse_hex("E00BC0090130FF880010010100").unwrap();
        let e = KeyInfo::parse(&ext).unwrap();
        assert_eq!(e.entries[0].extended, Some((Some(0x01), None)));
        assert_eq!(
            e.entries[0].components,
            vec![KeyComponent {
                key_type: 0x88,
                length: 16
            }]
        );
        assert_eq!(e.to_bytes(), ext);
        assert!(KeyInfo::parse(&parse_hex("E004C0020101").unwrap()).is_err());
    }
}
