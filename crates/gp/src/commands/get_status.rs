//! GET STATUS (GP 2.3.1 §11.4) and registry entries, in both response formats.

use core::fmt;

use apdu::{Command, Response, StatusWord};

use super::{bad_p1p2, expect_ins, ins, CLA_GP};
use crate::aid::Aid;
use crate::privileges::Privileges;
use crate::reader::Cursor;
use apdu::tlv::{self, Tag};

use crate::reader::tlv_all;
use crate::{Error, Result};

/// Which part of the registry GET STATUS reports (P1, GP 2.3.1 §11.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusSubset {
    /// P1 `80`: the Issuer Security Domain only.
    IssuerSecurityDomain,
    /// P1 `40`: applications, including security domains.
    Applications,
    /// P1 `20`: executable load files only.
    LoadFiles,
    /// P1 `10`: executable load files and their executable modules.
    LoadFilesAndModules,
}

impl StatusSubset {
    /// P1.
    pub const fn p1(self) -> u8 {
        match self {
            Self::IssuerSecurityDomain => 0x80,
            Self::Applications => 0x40,
            Self::LoadFiles => 0x20,
            Self::LoadFilesAndModules => 0x10,
        }
    }
    /// The subset for a P1 value.
    pub fn from_p1(p1: u8) -> Option<Self> {
        Some(match p1 {
            0x80 => Self::IssuerSecurityDomain,
            0x40 => Self::Applications,
            0x20 => Self::LoadFiles,
            0x10 => Self::LoadFilesAndModules,
            _ => return None,
        })
    }
}

/// Response format (P2 b2, GP 2.3.1 §11.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusFormat {
    /// P2 b2 = 0: the deprecated GP 2.1.1 format (GP 2.1.1 §9.4.3.1).
    Legacy,
    /// P2 b2 = 1: `E3` TLV templates (GP 2.3.1 Table 11-36).
    Tlv,
}

/// GET STATUS: `80 F2 P1 P2 Lc 4F len [AID prefix] [5C len tag list] 00`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetStatus {
    /// Registry subset (P1).
    pub subset: StatusSubset,
    /// Response format (P2 b2).
    pub format: StatusFormat,
    /// P2 b1: get the next occurrences after a `6310` response.
    pub next: bool,
    /// Search qualifier: the value of tag `4F`, an AID or AID prefix; empty matches all.
    pub search: Vec<u8>,
    /// Tag `5C`: list of tags wanted in the response (TLV format only).
    pub tag_list: Option<Vec<u8>>,
}

impl GetStatus {
    /// All entries of `subset`, TLV format.
    pub fn new(subset: StatusSubset) -> Self {
        Self {
            subset,
            format: StatusFormat::Tlv,
            next: false,
            search: Vec::new(),
            tag_list: None,
        }
    }
    /// The same request in another format.
    pub fn with_format(mut self, format: StatusFormat) -> Self {
        self.format = format;
        self
    }
    /// The follow-up request after `6310` ("get next occurrence(s)").
    pub fn next_page(&self) -> Self {
        Self {
            next: true,
            ..self.clone()
        }
    }
    /// Card side: whether a registry entry matches the search qualifier (`4F`), an AID
    /// prefix; an empty qualifier matches every entry (GP 2.3.1 §11.4.2.2).
    pub fn matches(&self, aid: &Aid) -> bool {
        aid.starts_with(&self.search)
    }

    /// P2.
    pub fn p2(&self) -> u8 {
        (match self.format {
            StatusFormat::Legacy => 0x00,
            StatusFormat::Tlv => 0x02,
        }) | u8::from(self.next)
    }

    /// The command (case 4).
    pub fn to_command(&self) -> Result<Command> {
        let mut data = Vec::new();
        tlv::encode_into(&mut data, Tag::new(0x4F), &self.search);
        if let Some(t) = &self.tag_list {
            tlv::encode_into(&mut data, Tag::new(0x5C), t);
        }
        Ok(
            Command::new(CLA_GP, ins::GET_STATUS, self.subset.p1(), self.p2())
                .with_data(data)
                .with_le(256),
        )
    }

    /// Reads GET STATUS: P1 one of `80 40 20 10`, P2 `00..03`, data `4F` then optional `5C`.
    pub fn parse(cmd: &Command) -> Result<Self> {
        const CTX: &str = "GET STATUS";
        expect_ins(cmd, ins::GET_STATUS, CTX)?;
        let subset = StatusSubset::from_p1(cmd.p1).ok_or_else(|| bad_p1p2(cmd, CTX))?;
        if cmd.p2 & !0x03 != 0 {
            return Err(bad_p1p2(cmd, CTX));
        }
        let format = if cmd.p2 & 0x02 != 0 {
            StatusFormat::Tlv
        } else {
            StatusFormat::Legacy
        };
        let mut search = None;
        let mut tag_list = None;
        for t in tlv_all(&cmd.data, CTX)? {
            match t.tag().value() {
                0x4F if search.is_none() => {
                    if t.value().len() > Aid::MAX_LEN {
                        return Err(Error::FieldLength {
                            context: CTX,
                            field: "4F search qualifier",
                            len: t.value().len(),
                            expected: "0 to 16",
                        });
                    }
                    search = Some(t.value().to_vec());
                }
                0x5C if tag_list.is_none() && search.is_some() => {
                    tag_list = Some(t.value().to_vec())
                }
                _ => {
                    return Err(Error::UnexpectedTag {
                        context: CTX,
                        expected: if search.is_none() { 0x4F } else { 0x5C },
                        found: t.tag().value(),
                        offset: t.offset(),
                    })
                }
            }
        }
        let search = search.ok_or(Error::MissingTag {
            context: CTX,
            tag: 0x4F,
        })?;
        Ok(Self {
            subset,
            format,
            next: cmd.p2 & 0x01 != 0,
            search,
            tag_list,
        })
    }
}

/// What kind of registry entry this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistryKind {
    /// The Issuer Security Domain (P1 `80`).
    IssuerSecurityDomain,
    /// An application without the Security Domain privilege (P1 `40`).
    Application,
    /// A Supplementary Security Domain (P1 `40`, Security Domain privilege).
    SecurityDomain,
    /// An executable load file (P1 `20` or `10`).
    LoadFile,
}

/// One GP registry entry as reported by GET STATUS.
///
/// `life_cycle` is the raw state byte; interpret it with
/// [`crate::lifecycle::CardLifeCycle`] (ISD), [`crate::lifecycle::AppLifeCycle`],
/// [`crate::lifecycle::SdLifeCycle`] or [`crate::lifecycle::LoadFileLifeCycle`] per `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    /// Kind, from P1 and the Security Domain privilege.
    pub kind: RegistryKind,
    /// `4F`: the AID.
    pub aid: Aid,
    /// `9F70`: life cycle state.
    pub life_cycle: u8,
    /// `C5`: privileges (absent for load files).
    pub privileges: Option<Privileges>,
    /// `CF`: implicit selection parameters (TLV format only).
    pub implicit_selection: Vec<u8>,
    /// `C4`: the executable load file an application was installed from (TLV format only).
    pub load_file: Option<Aid>,
    /// `CE`: executable load file version number (TLV format only).
    pub version: Option<Vec<u8>>,
    /// `84`: executable modules of a load file (P1 `10`).
    pub modules: Vec<Aid>,
    /// `CC`: associated security domain (TLV format only).
    pub associated_sd: Option<Aid>,
}

impl RegistryEntry {
    /// An entry with only kind, AID and life cycle set.
    pub fn new(kind: RegistryKind, aid: Aid, life_cycle: u8) -> Self {
        Self {
            kind,
            aid,
            life_cycle,
            privileges: None,
            implicit_selection: Vec::new(),
            load_file: None,
            version: None,
            modules: Vec::new(),
            associated_sd: None,
        }
    }

    /// The life cycle state's name for this kind of entry (`SECURED`, `SELECTABLE`, …).
    pub fn life_cycle_name(&self) -> String {
        use crate::lifecycle::{AppLifeCycle, CardLifeCycle, LoadFileLifeCycle, SdLifeCycle};
        match self.kind {
            RegistryKind::IssuerSecurityDomain => CardLifeCycle::from_byte(self.life_cycle)
                .map_or_else(
                    |_| format!("UNKNOWN({:02X})", self.life_cycle),
                    |c| c.name().to_string(),
                ),
            RegistryKind::Application => AppLifeCycle(self.life_cycle).name(),
            RegistryKind::SecurityDomain => SdLifeCycle(self.life_cycle).name(),
            RegistryKind::LoadFile => LoadFileLifeCycle(self.life_cycle).name(),
        }
    }

    fn kind_for(subset: StatusSubset, privileges: Option<Privileges>) -> RegistryKind {
        match subset {
            StatusSubset::IssuerSecurityDomain => RegistryKind::IssuerSecurityDomain,
            StatusSubset::LoadFiles | StatusSubset::LoadFilesAndModules => RegistryKind::LoadFile,
            StatusSubset::Applications => {
                if privileges.is_some_and(|p| p.contains(crate::Privilege::SecurityDomain)) {
                    RegistryKind::SecurityDomain
                } else {
                    RegistryKind::Application
                }
            }
        }
    }

    /// Encodes one entry in `format` for `subset`.
    ///
    /// The legacy format carries only the first privilege byte, and no `C4`, `CE`, `CC`
    /// or `CF`; those fields are dropped.
    pub fn encode(&self, subset: StatusSubset, format: StatusFormat) -> Vec<u8> {
        let mut v = Vec::new();
        match format {
            StatusFormat::Legacy => {
                // GP 2.1.1 §9.4.3.1: len AID, life cycle, privileges (1 byte)
                // [, number of modules, (len AID)*].
                self.aid.push_lv(&mut v);
                v.push(self.life_cycle);
                v.push(self.privileges.map_or(0, |p| p.0[0]));
                if subset == StatusSubset::LoadFilesAndModules {
                    v.push(self.modules.len() as u8);
                    for m in &self.modules {
                        m.push_lv(&mut v);
                    }
                }
            }
            StatusFormat::Tlv => {
                // GP 2.3.1 Table 11-36.
                let mut e = tlv::encode(Tag::new(0x4F), self.aid.as_bytes());
                tlv::encode_into(&mut e, Tag::new(0x9F70), &[self.life_cycle]);
                if let Some(p) = self.privileges {
                    tlv::encode_into(&mut e, Tag::new(0xC5), &p.to_bytes());
                }
                if !self.implicit_selection.is_empty() {
                    for b in &self.implicit_selection {
                        tlv::encode_into(&mut e, Tag::new(0xCF), &[*b]);
                    }
                }
                if let Some(a) = &self.load_file {
                    tlv::encode_into(&mut e, Tag::new(0xC4), a.as_bytes());
                }
                if let Some(ver) = &self.version {
                    tlv::encode_into(&mut e, Tag::new(0xCE), ver);
                }
                for m in &self.modules {
                    tlv::encode_into(&mut e, Tag::new(0x84), m.as_bytes());
                }
                if let Some(a) = &self.associated_sd {
                    tlv::encode_into(&mut e, Tag::new(0xCC), a.as_bytes());
                }
                tlv::encode_into(&mut v, Tag::new(0xE3), &e);
            }
        }
        v
    }

    /// Reads all entries of a GET STATUS response data field.
    pub fn parse_all(subset: StatusSubset, format: StatusFormat, data: &[u8]) -> Result<Vec<Self>> {
        match format {
            StatusFormat::Legacy => Self::parse_legacy(subset, data),
            StatusFormat::Tlv => Self::parse_tlv(subset, data),
        }
    }

    fn parse_legacy(subset: StatusSubset, data: &[u8]) -> Result<Vec<Self>> {
        let mut c = Cursor::new(data, "GET STATUS response (legacy format)");
        let mut out = Vec::new();
        while !c.is_empty() {
            let aid = Aid::new(c.lv("AID")?)?;
            let life_cycle = c.u8("life cycle state")?;
            let at = c.pos();
            let p = c.u8("privileges")?;
            let privileges = match subset {
                StatusSubset::LoadFiles | StatusSubset::LoadFilesAndModules if p != 0 => {
                    return Err(Error::InvalidValue {
                        context: "GET STATUS response (legacy format)",
                        field: "privileges",
                        reason: format!(
                            "load file privileges byte at offset {at} is {p:02X}, must be 00"
                        ),
                    })
                }
                StatusSubset::LoadFiles | StatusSubset::LoadFilesAndModules => None,
                _ => Some(Privileges([p, 0, 0])),
            };
            let mut e = Self::new(Self::kind_for(subset, privileges), aid, life_cycle);
            e.privileges = privileges;
            if subset == StatusSubset::LoadFilesAndModules {
                let n = c.u8("number of executable modules")?;
                for _ in 0..n {
                    e.modules.push(Aid::new(c.lv("executable module AID")?)?);
                }
            }
            out.push(e);
        }
        Ok(out)
    }

    fn parse_tlv(subset: StatusSubset, data: &[u8]) -> Result<Vec<Self>> {
        const CTX: &str = "GET STATUS response";
        let mut out = Vec::new();
        for t in tlv_all(data, CTX)? {
            if t.tag().value() != 0xE3 {
                return Err(Error::UnexpectedTag {
                    context: CTX,
                    expected: 0xE3,
                    found: t.tag().value(),
                    offset: t.offset(),
                });
            }
            let mut aid = None;
            let mut life_cycle = None;
            let mut e = Self::new(RegistryKind::Application, crate::aid::ISD_AID, 0);
            for f in tlv_all(t.value(), CTX)? {
                match f.tag().value() {
                    0x4F => aid = Some(Aid::new(f.value())?),
                    0x9F70 => match f.value() {
                        [b] => life_cycle = Some(*b),
                        v => {
                            return Err(Error::FieldLength {
                                context: CTX,
                                field: "9F70 life cycle state",
                                len: v.len(),
                                expected: "1",
                            })
                        }
                    },
                    0xC5 if !f.value().is_empty() => {
                        e.privileges = Some(Privileges::from_bytes(f.value())?)
                    }
                    0xC5 => {}
                    0xCF => e.implicit_selection.extend_from_slice(f.value()),
                    // Some cards send empty C4 / 84 / CC (GlobalPlatformPro issue #392):
                    // read as absent.
                    0xC4 | 0x84 | 0xCC if f.value().is_empty() => {}
                    0xC4 => e.load_file = Some(Aid::new(f.value())?),
                    0xCE => e.version = Some(f.value().to_vec()),
                    0x84 => e.modules.push(Aid::new(f.value())?),
                    0xCC => e.associated_sd = Some(Aid::new(f.value())?),
                    // Unknown tags are skipped (forward compatibility with later GP versions).
                    _ => {}
                }
            }
            e.aid = aid.ok_or(Error::MissingTag {
                context: CTX,
                tag: 0x4F,
            })?;
            e.life_cycle = life_cycle.ok_or(Error::MissingTag {
                context: CTX,
                tag: 0x9F70,
            })?;
            e.kind = Self::kind_for(subset, e.privileges);
            out.push(e);
        }
        Ok(out)
    }
}

impl fmt::Display for RegistryEntry {
    /// One line, e.g. `APP: D07002CA44900101 (SELECTABLE) privileges=none load-file=D07002CA44`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            RegistryKind::IssuerSecurityDomain => "ISD",
            RegistryKind::Application => "APP",
            RegistryKind::SecurityDomain => "SSD",
            RegistryKind::LoadFile => "PKG",
        };
        write!(f, "{kind}: {} ({})", self.aid, self.life_cycle_name())?;
        if let Some(p) = self.privileges {
            write!(f, " privileges={p}")?;
        }
        if let Some(v) = &self.version {
            let parts: Vec<String> = v.iter().map(u8::to_string).collect();
            write!(f, " version={}", parts.join("."))?;
        }
        if let Some(a) = &self.load_file {
            write!(f, " load-file={a}")?;
        }
        if !self.modules.is_empty() {
            let m: Vec<String> = self.modules.iter().map(Aid::to_string).collect();
            write!(f, " modules={}", m.join(","))?;
        }
        if let Some(a) = &self.associated_sd {
            write!(f, " sd={a}")?;
        }
        if !self.implicit_selection.is_empty() {
            write!(
                f,
                " implicit-selection={}",
                apdu::hex(&self.implicit_selection)
            )?;
        }
        Ok(())
    }
}

/// A parsed GET STATUS response: the entries and whether more are available (`6310`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetStatusResponse {
    /// Entries of this page.
    pub entries: Vec<RegistryEntry>,
    /// `true` after `6310`: send [`GetStatus::next_page`] for the rest.
    pub more: bool,
}

impl GetStatusResponse {
    /// Reads a response to `request`: `9000` (last page), `6310` (more) or an error status.
    /// `6A88` (no matching entry) reads as an empty last page.
    pub fn parse(request: &GetStatus, resp: &Response) -> Result<Self> {
        let more = match resp.sw {
            StatusWord::SUCCESS => false,
            StatusWord::MORE_DATA_AVAILABLE => true,
            StatusWord::REFERENCED_DATA_NOT_FOUND if resp.data.is_empty() => {
                return Ok(Self {
                    entries: Vec::new(),
                    more: false,
                })
            }
            sw => return Err(Error::Status(sw)),
        };
        Ok(Self {
            entries: RegistryEntry::parse_all(request.subset, request.format, &resp.data)?,
            more,
        })
    }
}

/// One page of a card's GET STATUS answer, built by [`StatusPage::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPage {
    /// The response APDU: data plus `9000`, `6310` (more), or `6A88` (nothing matched).
    pub response: Response,
    /// Index of the first entry of the next page, when `6310` was returned.
    pub next_index: Option<usize>,
}

impl StatusPage {
    /// Card side: encodes `entries[start..]` in `format`, as many whole entries as fit in
    /// `max_len` bytes (256 for short APDUs without secure messaging, less when the card
    /// adds a response MAC). Returns `6310` with the index to continue from when entries
    /// remain, `9000` otherwise, and `6A88` when `entries` is empty.
    ///
    /// Fails if a single entry is longer than `max_len`.
    pub fn build(
        subset: StatusSubset,
        format: StatusFormat,
        entries: &[RegistryEntry],
        start: usize,
        max_len: usize,
    ) -> Result<Self> {
        if entries.is_empty() {
            return Ok(Self {
                response: Response::status(StatusWord::REFERENCED_DATA_NOT_FOUND),
                next_index: None,
            });
        }
        let mut data = Vec::new();
        let mut i = start.min(entries.len());
        while i < entries.len() {
            let e = entries[i].encode(subset, format);
            if data.len() + e.len() > max_len {
                if data.is_empty() {
                    return Err(Error::Encoding(format!(
                        "registry entry {} needs {} bytes, more than the page size {max_len}",
                        entries[i].aid,
                        e.len()
                    )));
                }
                return Ok(Self {
                    response: Response::new(data, StatusWord::MORE_DATA_AVAILABLE),
                    next_index: Some(i),
                });
            }
            data.extend_from_slice(&e);
            i += 1;
        }
        Ok(Self {
            response: Response::ok(data),
            next_index: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::{hex, parse_hex};

    #[test]
    fn command_bytes_match_public_traces() {
        // pySim test_globalplatform.py (SCP02_Test) plain APDU 4: 80f28002024f0000.
        let c = GetStatus::new(StatusSubset::IssuerSecurityDomain);
        assert_eq!(
            hex(&c.to_command().unwrap().to_bytes().unwrap()),
            "80F28002024F0000"
        );
        let c = c.with_format(StatusFormat::Legacy).next_page();
        assert_eq!(
            hex(&c.to_command().unwrap().to_bytes().unwrap()),
            "80F28001024F0000"
        );
        // kaoh scp02Test.c get_status_mac_only: load files, new format, data 4F00.
        let c = GetStatus::new(StatusSubset::LoadFiles);
        assert_eq!(
            hex(&c.to_command().unwrap().to_bytes().unwrap()),
            "80F22002024F0000"
        );
        // pySim plain APDU 3 (case 3): 80F220020a4f0212345c054f9f70c5. Its 5C says 5 bytes
        // but 4 follow (it is only a MAC test there), so a strict parser must reject it.
        let cmd = Command::parse(&parse_hex("80F220020a4f0212345c054f9f70c5").unwrap()).unwrap();
        assert_eq!(
            GetStatus::parse(&cmd),
            Err(Error::Tlv {
                context: "GET STATUS",
                offset: 6,
                kind: apdu::TlvErrorKind::TruncatedValue {
                    declared: 5,
                    available: 4
                }
            })
        );
        let cmd = Command::parse(&parse_hex("80F220020a4f0212345c044f9f70c5").unwrap()).unwrap();
        let p = GetStatus::parse(&cmd).unwrap();
        assert_eq!(p.search, vec![0x12, 0x34]);
        assert_eq!(p.tag_list, Some(parse_hex("4F9F70C5").unwrap()));
        assert_eq!(p.to_command().unwrap().data, cmd.data);
    }

    #[test]
    fn tlv_entry_round_trip() {
        let mut e = RegistryEntry::new(RegistryKind::SecurityDomain, crate::ISD_AID, 0x0F);
        e.privileges = Some(Privileges([0x80, 0xC0, 0]));
        e.associated_sd = Some(crate::ISD_AID);
        let bytes = e.encode(StatusSubset::Applications, StatusFormat::Tlv);
        let back = RegistryEntry::parse_all(StatusSubset::Applications, StatusFormat::Tlv, &bytes)
            .unwrap();
        assert_eq!(back, vec![e.clone()]);
        assert_eq!(
            e.to_string(),
            "SSD: A000000151000000 (PERSONALIZED) privileges=security-domain,trusted-path,authorized-management \
             sd=A000000151000000"
        );
    }

    #[test]
    fn legacy_format_layouts() {
        // GP 2.1.1: len AID, life cycle, privileges [, module count, (len AID)*].
        let d = parse_hex("07A00000015100000F9E").unwrap();
        let e =
            RegistryEntry::parse_all(StatusSubset::IssuerSecurityDomain, StatusFormat::Legacy, &d)
                .unwrap();
        assert_eq!(
            (e[0].life_cycle, e[0].privileges),
            (0x0F, Some(Privileges([0x9E, 0, 0])))
        );
        assert_eq!(
            e[0].to_string(),
            "ISD: A0000001510000 (SECURED) privileges=security-domain,card-lock,card-terminate,card-reset,cvm-management"
        );
        let d = parse_hex("05D07002CA4401000108D07002CA44900101").unwrap();
        let e =
            RegistryEntry::parse_all(StatusSubset::LoadFilesAndModules, StatusFormat::Legacy, &d)
                .unwrap();
        assert_eq!(e[0].modules[0].to_string(), "D07002CA44900101");
        assert_eq!(
            e[0].encode(StatusSubset::LoadFilesAndModules, StatusFormat::Legacy),
            d
        );
        let bad = parse_hex("05D07002CA44018000").unwrap();
        assert!(matches!(
            RegistryEntry::parse_all(
                StatusSubset::LoadFilesAndModules,
                StatusFormat::Legacy,
                &bad
            ),
            Err(Error::InvalidValue {
                field: "privileges",
                ..
            })
        ));
        let cut = &d[..d.len() - 1];
        assert!(matches!(
            RegistryEntry::parse_all(StatusSubset::LoadFilesAndModules, StatusFormat::Legacy, cut),
            Err(Error::Truncated {
                field: "executable module AID",
                offset: 10,
                needed: 1,
                ..
            })
        ));
    }
}
