//! The virtual card as a UICC for over-the-air management: the toolkit commands of ETSI
//! TS 102 221 §10 (TERMINAL PROFILE, FETCH, TERMINAL RESPONSE, ENVELOPE) with a queue of
//! proactive commands (TS 102 223 §6), the SCP80 receiver for SMS-PP download (3GPP TS
//! 31.111 §7.1.1, TS 31.115, ETSI TS 102 225/226), and the download agent: a built-in
//! toolkit function that shows a menu and sends the platform an application download
//! request (docs/OTA.md).
//!
//! # APDUs
//! * `80 10 00 00 Lc profile` TERMINAL PROFILE, `80 12 00 00 Le` FETCH, `80 14 00 00 Lc
//!   response` TERMINAL RESPONSE, `80 C2 00 00 Lc BER-TLV` ENVELOPE: CLA `80`..`83` (any
//!   basic-form logical channel), whatever application is selected there.
//! * While a proactive command waits to be fetched, every answer that would be `9000` is
//!   `91xx` instead, `xx` the length of the command (TS 102 221 §10.2.1.1). FETCH returns
//!   it (`6Cxx` if Le is shorter; `6985` if none waits); FETCH again before the TERMINAL
//!   RESPONSE returns the same command. The TERMINAL RESPONSE must name the fetched
//!   command (number, type, qualifier: `6A80` otherwise, `6985` with none fetched).
//! * ENVELOPE SMS-PP download (`D1`): the PoR is the response data (`02 71 00` then the
//!   response packet: the TP-UD of the SMS-DELIVER-REPORT, TS 31.115 §4.4) or a SEND
//!   SHORT MESSAGE per SMS of it (SPI: SMS-SUBMIT); `9300` when the proactive queue is
//!   full; `6A80` when the ENVELOPE cannot be decoded.
//!
//! All of this is volatile (cleared by [`VirtualCard::reset`]) except the counters and the
//! agent's configuration, which live in the ISD's state.

use std::collections::VecDeque;

use apdu::tlv::{self, Tag};
use apdu::{Command, Response, StatusWord};
use ota::cat::{
    self, AlphaId, CommandBody, CommandDetails, Envelope, Facility, MenuItem, ProactiveCommand,
    SendShortMessage, SetUpMenu, SmsPpDownload, TerminalProfile, TerminalResponse,
};
use ota::packet::{
    self, Algorithm, CommandHeader, Counter, DesMode, Integrity, Key, KeySet, Kic, Kid, PacketInfo,
    PorRequest, PorSecurity, PorTransport, ResponseHeader, ResponseStatus, Spi, Tar,
};
use ota::script::{
    self, CommandScript, CompactResponse, LengthCoding, ResponseScript, ResponseTlv,
};
use ota::tpdu::{
    self, Address, ConcatRef, Npi, PacketKind, Progress, Reassembler, ReassemblyKey, SmsSubmit,
    Ton, UserData,
};
use serde::{Deserialize, Serialize};

use crate::card::VirtualCard;
use crate::channel::Cla;
use crate::model::{card_lc, key_type, Aid, ISD_AID};

/// Proactive commands the card keeps waiting at most (the SMS of a long PoR included).
const MAX_QUEUE: usize = 64;
/// Concatenated messages reassembled at the same time; a new one beyond this drops the
/// oldest.
const MAX_MESSAGES: usize = 4;
/// The largest TP-UD of an SMS, hence of the PoR in the SMS-DELIVER-REPORT.
const MAX_UD: usize = tpdu::MAX_UD_OCTETS;
/// The TAR the download request is addressed to (the platform's; docs/OTA.md).
pub const DOWNLOAD_REQUEST_TAR: [u8; 3] = [0xB2, 0xFF, 0xFF];
/// SPI of the download request: CC, no ciphering, counter must be higher (`12`); no PoR
/// (`00`): the platform answers with the download itself.
pub const DOWNLOAD_REQUEST_SPI: [u8; 2] = [0x12, 0x00];
/// BER tag of the download agent configuration (STORE DATA / GET DATA to the ISD).
pub const TAG_AGENT_CONFIG: u32 = 0xBF70;
/// BER tag of the download request's template.
pub const TAG_DOWNLOAD_REQUEST: u32 = 0xE1;

/// The download agent's persistent configuration (in the ISD; set with
/// [`crate::CardConfig::with_download_agent`] or STORE DATA `BF70` to the ISD).
///
/// STORE DATA format (BER-TLV, P1 b5-b4 `00` or `10`), the whole configuration at once:
///
/// ```text
/// BF70 L                      empty value: no agent
///   80 L  platform address    ASCII digits; a leading '+' makes it international (TON 1)
///   81 01 KVN                 the ISD's SCP80 key set for requests, 01..0F
///   82 L  menu title          UTF-8, optional
///   A0 L  menu entry          repeated, in menu order (item identifiers 01, 02, ...)
///     80 L  application name  UTF-8: what the download request names
///     81 L  item text         UTF-8, optional (the name when absent)
///     4F L  SD AID            optional: the application's security domain
/// ```
///
/// GET DATA `BF70` returns it in the same form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadAgent {
    /// The platform's address (MSISDN or short code) the requests go to: digits, with a
    /// leading `+` for an international number.
    pub address: String,
    /// The ISD's SCP80 key set (`01`..=`0F`) the requests are secured with.
    pub kvn: u8,
    /// The menu title (SET UP MENU alpha identifier).
    #[serde(default)]
    pub title: String,
    /// The menu entries, in order.
    #[serde(default)]
    pub entries: Vec<MenuEntry>,
}

/// One menu entry of the download agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuEntry {
    /// The catalog name of the application, sent in the request.
    pub app: String,
    /// The item text shown.
    pub text: String,
    /// The application's security domain AID, sent in the request when given.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub sd_aid: Option<Vec<u8>>,
}

impl MenuEntry {
    /// An entry for `app` shown as `text`.
    pub fn new(app: &str, text: &str) -> Self {
        MenuEntry {
            app: app.into(),
            text: text.into(),
            sd_aid: None,
        }
    }
}

mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&apdu::hex(b)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|h| apdu::parse_hex(&h).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl DownloadAgent {
    /// An agent sending to `address` with the ISD's key set `kvn`, titled `title`.
    pub fn new(address: &str, kvn: u8, title: &str, entries: Vec<MenuEntry>) -> Self {
        DownloadAgent {
            address: address.into(),
            kvn,
            title: title.into(),
            entries,
        }
    }

    /// The `BF70` object (see [`DownloadAgent`]).
    pub fn to_tlv(&self) -> Vec<u8> {
        let mut body = tlv::encode(Tag::new(0x80), self.address.as_bytes());
        body.extend(tlv::encode(Tag::new(0x81), &[self.kvn]));
        if !self.title.is_empty() {
            body.extend(tlv::encode(Tag::new(0x82), self.title.as_bytes()));
        }
        for e in &self.entries {
            let mut v = tlv::encode(Tag::new(0x80), e.app.as_bytes());
            v.extend(tlv::encode(Tag::new(0x81), e.text.as_bytes()));
            if let Some(aid) = &e.sd_aid {
                v.extend(tlv::encode(Tag::new(0x4F), aid));
            }
            body.extend(tlv::encode(Tag::new(0xA0), &v));
        }
        tlv::encode(Tag::new(TAG_AGENT_CONFIG), &body)
    }

    /// Reads the value of a `BF70` object: `Ok(None)` for an empty one (no agent).
    pub fn from_tlv_value(value: &[u8]) -> Result<Option<Self>, StatusWord> {
        if value.is_empty() {
            return Ok(None);
        }
        let bad = StatusWord::WRONG_DATA;
        let objs = tlv::parse_all(value).map_err(|_| bad)?;
        let text = |v: &[u8]| String::from_utf8(v.to_vec()).map_err(|_| bad);
        let mut address = None;
        let mut kvn = None;
        let mut title = String::new();
        let mut entries = Vec::new();
        for o in objs {
            match o.tag.value() {
                0x80 => address = Some(text(&o.value)?),
                0x81 => kvn = Some(*o.value.first().filter(|_| o.value.len() == 1).ok_or(bad)?),
                0x82 => title = text(&o.value)?,
                0xA0 => {
                    let mut app = None;
                    let mut item = None;
                    let mut sd_aid = None;
                    for i in tlv::parse_all(&o.value).map_err(|_| bad)? {
                        match i.tag.value() {
                            0x80 => app = Some(text(&i.value)?),
                            0x81 => item = Some(text(&i.value)?),
                            0x4F if Aid::is_valid_len(&i.value) => sd_aid = Some(i.value),
                            _ => return Err(bad),
                        }
                    }
                    let app = app.filter(|a| !a.is_empty()).ok_or(bad)?;
                    let text = item.unwrap_or_else(|| app.clone());
                    entries.push(MenuEntry { app, text, sd_aid });
                }
                _ => return Err(bad),
            }
        }
        let address = address.ok_or(bad)?;
        let kvn = kvn
            .filter(|k| crate::ota::SCP80_KVNS.contains(k))
            .ok_or(bad)?;
        if platform_address(&address).is_none() || entries.len() > 0xFE {
            return Err(bad);
        }
        Ok(Some(DownloadAgent {
            address,
            kvn,
            title,
            entries,
        }))
    }
}

/// The platform's address as an SMS destination: `+` then digits is international ISDN,
/// digits alone are a number of unknown type (a short code).
fn platform_address(a: &str) -> Option<Address> {
    let (ton, digits) = match a.strip_prefix('+') {
        Some(d) => (Ton::International, d),
        None => (Ton::Unknown, a),
    };
    let ok = !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| Address::new(ton, Npi::Isdn, digits))
}

/// The toolkit's volatile state: the terminal's profile, the proactive commands waiting,
/// the SMS being reassembled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Toolkit {
    /// The last TERMINAL PROFILE received.
    profile: Option<Vec<u8>>,
    /// Proactive commands waiting to be fetched, with their encoding.
    queue: VecDeque<(ProactiveCommand, Vec<u8>)>,
    /// The command fetched and not yet answered by a TERMINAL RESPONSE.
    fetched: Option<(ProactiveCommand, Vec<u8>)>,
    /// The last command number given (TS 102 223 §8.6: `01`..`FE`).
    number: u8,
    /// Concatenated command packets being put together (TS 31.115 §6.2).
    reassembler: Reassembler,
    /// The messages in the reassembler, oldest first.
    arrivals: VecDeque<ReassemblyKey>,
    /// The last concatenation reference used for SMS the card sends.
    concat_ref: u8,
}

impl Toolkit {
    /// The length of the command waiting to be fetched, if one is (`91xx`).
    fn pending_len(&self) -> Option<usize> {
        if self.fetched.is_some() {
            return None;
        }
        self.queue.front().map(|(_, b)| b.len())
    }

    /// Queues a command (with the next command number); `false` if the queue is full or it
    /// cannot be encoded.
    fn push(&mut self, qualifier: u8, body: CommandBody) -> bool {
        self.push_to(qualifier, body, cat::Device::Terminal)
    }

    /// Queues a command addressed to `destination` (the terminal, or a BIP channel).
    pub(crate) fn push_to(
        &mut self,
        qualifier: u8,
        body: CommandBody,
        destination: cat::Device,
    ) -> bool {
        if self.queue.len() >= MAX_QUEUE {
            return false;
        }
        self.number = if self.number >= 0xFE {
            1
        } else {
            self.number + 1
        };
        let mut cmd = ProactiveCommand::new(self.number, qualifier, body);
        cmd.devices.destination = destination;
        match cmd.encode() {
            // 91xx can say up to 256 bytes (xx = 00).
            Ok(bytes) if bytes.len() <= 256 => {
                self.queue.push_back((cmd, bytes));
                true
            }
            _ => false,
        }
    }

    fn next_ref(&mut self) -> ConcatRef {
        self.concat_ref = self.concat_ref.wrapping_add(1);
        ConcatRef::Eight(self.concat_ref)
    }

    /// How many more proactive commands fit in the queue.
    #[cfg_attr(not(feature = "scp81"), allow(dead_code))]
    pub(crate) fn room(&self) -> usize {
        MAX_QUEUE.saturating_sub(self.queue.len())
    }

    pub(crate) fn supports(&self, f: Facility) -> bool {
        self.profile
            .as_ref()
            .is_some_and(|p| TerminalProfile(p.clone()).supports(f))
    }

    /// Takes one SMS's user data: the whole packet once it is complete. A part already
    /// received is ignored; a part that contradicts one received, or a message with the
    /// same reference but another number of parts, starts the message again.
    fn reassemble(&mut self, from: &Address, ud: &UserData) -> Option<(PacketKind, Vec<u8>)> {
        let header = ud.header.as_ref()?;
        if let Some((reference, total, _)) = header.concat() {
            // Another message with the same originator and reference: it restarts.
            let stale: Vec<ReassemblyKey> = self
                .reassembler
                .pending()
                .filter(|k| k.originator == *from && k.reference == reference && k.total != total)
                .cloned()
                .collect();
            for k in stale {
                self.forget(&k);
            }
        }
        let progress = match self.reassembler.push(from, ud) {
            Ok(p) => p,
            Err(tpdu::Error::ConflictingDuplicate { .. }) => {
                let (reference, total, _) = header.concat()?;
                let key = ReassemblyKey {
                    originator: from.clone(),
                    reference,
                    total,
                };
                self.forget(&key);
                self.reassembler.push(from, ud).ok()?
            }
            Err(_) => return None,
        };
        match progress {
            Progress::Complete { kind, packet } => {
                self.arrivals
                    .retain(|k| self.reassembler.missing(k).is_some());
                Some((kind, packet))
            }
            Progress::Incomplete { key, .. } => {
                if !self.arrivals.contains(&key) {
                    self.arrivals.push_back(key);
                }
                while self.arrivals.len() > MAX_MESSAGES {
                    if let Some(old) = self.arrivals.pop_front() {
                        self.reassembler.drop_message(&old);
                    }
                }
                None
            }
            Progress::Duplicate { .. } => None,
        }
    }

    fn forget(&mut self, key: &ReassemblyKey) {
        self.reassembler.drop_message(key);
        self.arrivals.retain(|k| k != key);
    }
}

/// The algorithm an SCP80 key of this type and length is used with.
fn algorithm_for(kt: u8, len: usize) -> Option<Algorithm> {
    match (kt, len) {
        (key_type::AES, 16 | 24 | 32) => Some(Algorithm::Aes),
        (key_type::DES, 8) => Some(Algorithm::Des(DesMode::Cbc)),
        (key_type::DES, 16) => Some(Algorithm::Des(DesMode::Tdes2Key)),
        (key_type::DES, 24) => Some(Algorithm::Des(DesMode::Tdes3Key)),
        _ => None,
    }
}

/// What the receiver answers a command packet with (before it is secured and sent).
struct PorPlan {
    tar: Tar,
    counter: Counter,
    status: ResponseStatus,
    data: Vec<u8>,
    /// Secured as the command's SPI asks, or unsecured (security errors).
    security: PorSecurity,
    keys: KeySet,
    transport: PorTransport,
    wanted: bool,
}

impl VirtualCard {
    /// A toolkit command (TS 102 221 §10.1.1: CLA `80`..`83`), or `None` for anything else.
    pub(crate) fn toolkit_command(&mut self, cla: Cla, cmd: &Command) -> Option<Response> {
        if cmd.cla & 0xFC != 0x80 || cla.sm || cla.chaining {
            return None;
        }
        // STATUS `80 F2 00 0C` (TS 102 221 §11.1.2, P1 `00` = no indication, P2 `0C` = no
        // data): what a terminal polls with for proactive commands. P1 `00` is no GET
        // STATUS subset (GP 2.3.1 §11.4.2 uses `80`, `40`, `20`, `10`), so GP's command is
        // untouched; the answer is `9000`, `91xx` when a command waits.
        if cmd.ins == 0xF2 && cmd.p1 == 0x00 && self.state.life_cycle != card_lc::TERMINATED {
            return Some(match cmd.p2 {
                0x0C if cmd.data.is_empty() => Response::ok(Vec::new()),
                0x0C => Response::status(StatusWord::WRONG_LENGTH),
                _ => Response::status(StatusWord::INCORRECT_P1P2),
            });
        }
        if !matches!(
            cmd.ins,
            cat::INS_TERMINAL_PROFILE
                | cat::INS_FETCH
                | cat::INS_TERMINAL_RESPONSE
                | cat::INS_ENVELOPE
        ) {
            return None;
        }
        if self.state.life_cycle == card_lc::TERMINATED {
            return None;
        }
        if cmd.p1 != 0 || cmd.p2 != 0 {
            return Some(Response::status(StatusWord::WRONG_P1P2));
        }
        Some(match cmd.ins {
            cat::INS_TERMINAL_PROFILE => self.terminal_profile(cmd),
            cat::INS_FETCH => self.fetch(cmd),
            cat::INS_TERMINAL_RESPONSE => self.terminal_response(cmd),
            _ => self.envelope(cmd),
        })
    }

    /// Whether these APDU bytes are a toolkit command (whose volatile effects a rollback
    /// must undo).
    pub(crate) fn is_toolkit_apdu(apdu: &[u8]) -> bool {
        matches!(apdu, [cla, ins, ..] if cla & 0xFC == 0x80
            && matches!(*ins, cat::INS_TERMINAL_PROFILE | cat::INS_FETCH
                | cat::INS_TERMINAL_RESPONSE | cat::INS_ENVELOPE))
    }

    /// `91xx` instead of `9000` while a proactive command waits (TS 102 221 §10.2.1.1).
    pub(crate) fn proactive_status(&self, resp: Response) -> Response {
        match self.toolkit.pending_len() {
            Some(n) if resp.sw == StatusWord::SUCCESS => {
                Response::new(resp.data, StatusWord::new(0x91, n as u8))
            }
            _ => resp,
        }
    }

    /// Forgets everything the toolkit had (power cycle).
    pub(crate) fn reset_toolkit(&mut self) {
        self.toolkit = Toolkit::default();
        #[cfg(feature = "scp81")]
        self.abort_admin_session("card reset");
    }

    /// TERMINAL PROFILE (TS 102 221 §11.2.1; TS 102 223 §5.2): the download agent puts up
    /// its menu when the terminal can show it and send its SMS.
    fn terminal_profile(&mut self, cmd: &Command) -> Response {
        if cmd.data.len() > 255 {
            return Response::status(StatusWord::WRONG_LENGTH);
        }
        self.toolkit.profile = Some(cmd.data.clone());
        // A new profile means a new toolkit session: the old menu (if not fetched) goes.
        self.toolkit
            .queue
            .retain(|(c, _)| !matches!(c.body, CommandBody::SetUpMenu(_)));
        self.queue_menu();
        Response::ok(Vec::new())
    }

    /// Queues SET UP MENU with the agent's entries (TS 102 223 §6.4.8), if there is an
    /// agent with entries and the terminal supports SET UP MENU and SEND SHORT MESSAGE.
    fn queue_menu(&mut self) {
        if !(self.toolkit.supports(Facility::SetUpMenu)
            && self.toolkit.supports(Facility::SendShortMessage))
        {
            return;
        }
        let Some(agent) = self.agent() else { return };
        if agent.entries.is_empty() {
            return;
        }
        let title = if agent.title.is_empty() {
            "Applications"
        } else {
            &agent.title
        };
        let mut items: Vec<MenuItem> = agent
            .entries
            .iter()
            .zip(1u8..=0xFE)
            .map(|(e, id)| MenuItem {
                id,
                text: AlphaId::from_text(&e.text),
            })
            .collect();
        // The command must fit 91xx: items at the end are left out if it does not.
        loop {
            let menu = SetUpMenu {
                alpha: AlphaId::from_text(title),
                items: items.clone(),
                next_actions: None,
                other: Vec::new(),
            };
            let cmd = ProactiveCommand::new(1, 0, CommandBody::SetUpMenu(menu.clone()));
            let fits = cmd.encode().is_ok_and(|b| b.len() <= 256);
            if fits || items.len() <= 1 {
                self.toolkit.push(0, CommandBody::SetUpMenu(menu));
                return;
            }
            items.pop();
        }
    }

    /// The download agent's configuration, if any.
    pub(crate) fn agent(&self) -> Option<DownloadAgent> {
        self.state.isd()?.sd_data()?.ota.agent.as_deref().cloned()
    }

    /// STORE DATA `BF70` to the ISD: replaces the agent's configuration; the new menu is
    /// put up at once when the toolkit is running. `None` if the data is something else.
    pub(crate) fn store_agent_config(&mut self, data: &[u8]) -> Option<Result<(), StatusWord>> {
        let t = tlv::TlvRef::parse(data).ok()?;
        if t.tag().value() != TAG_AGENT_CONFIG {
            return None;
        }
        let agent = match DownloadAgent::from_tlv_value(t.value()) {
            Ok(a) => a,
            Err(sw) => return Some(Err(sw)),
        };
        let isd = Aid::new(ISD_AID);
        match self.sd_data_mut(&isd) {
            Ok(d) => d.ota.agent = agent.map(Box::new),
            Err(sw) => return Some(Err(sw)),
        }
        self.toolkit
            .queue
            .retain(|(c, _)| !matches!(c.body, CommandBody::SetUpMenu(_)));
        self.queue_menu();
        Some(Ok(()))
    }

    /// FETCH (TS 102 221 §11.2.2): the proactive command waiting.
    fn fetch(&mut self, cmd: &Command) -> Response {
        if !cmd.data.is_empty() {
            return Response::status(StatusWord::WRONG_LENGTH);
        }
        let tk = &mut self.toolkit;
        if tk.fetched.is_none() {
            tk.fetched = tk.queue.pop_front();
        }
        let Some((_, bytes)) = &tk.fetched else {
            return Response::status(StatusWord::CONDITIONS_NOT_SATISFIED);
        };
        let ne = cmd.le.map_or(0, |n| n as usize);
        if ne < bytes.len() {
            // Wrong Le: 6Cxx with the right one (ISO/IEC 7816-3 §12.2.3); still fetched.
            return Response::status(StatusWord::new(0x6C, bytes.len() as u8));
        }
        Response::ok(bytes.clone())
    }

    /// TERMINAL RESPONSE (TS 102 221 §11.2.3; TS 102 223 §6.8): ends the fetched command.
    fn terminal_response(&mut self, cmd: &Command) -> Response {
        let Some((fetched, _)) = &self.toolkit.fetched else {
            return Response::status(StatusWord::CONDITIONS_NOT_SATISFIED);
        };
        let Ok(tr) = TerminalResponse::decode(&cmd.data) else {
            return Response::status(StatusWord::WRONG_DATA);
        };
        let expected: CommandDetails = fetched.details();
        if tr.details != expected {
            return Response::status(StatusWord::WRONG_DATA);
        }
        if !tr.result.general.is_success() {
            tracing::debug!(
                "toolkit: proactive command {:02X} ended with result {:02X}",
                expected.type_of_command,
                tr.result.general.0
            );
        }
        #[cfg_attr(not(feature = "scp81"), allow(unused_variables))]
        let answered = self.toolkit.fetched.take();
        #[cfg(feature = "scp81")]
        if let Some((cmd, _)) = answered {
            self.bip_terminal_response(&cmd, &tr);
        }
        Response::ok(Vec::new())
    }

    /// ENVELOPE (TS 102 221 §11.2.4): SMS-PP download and menu selection; other envelopes
    /// are acknowledged and ignored.
    fn envelope(&mut self, cmd: &Command) -> Response {
        let Ok(env) = Envelope::decode(&cmd.data) else {
            return Response::status(StatusWord::WRONG_DATA);
        };
        match env {
            Envelope::SmsPpDownload(dl) => self.sms_pp_download(dl),
            Envelope::MenuSelection {
                item,
                help_request: false,
            } => self.menu_selection(item),
            #[cfg(feature = "scp81")]
            Envelope::EventDownload(ev) => {
                self.bip_event(ev);
                Response::ok(Vec::new())
            }
            _ => Response::ok(Vec::new()),
        }
    }

    /// SMS-PP data download (3GPP TS 31.111 §7.1.1): the command packet, once all its SMS
    /// are in, is opened, executed and answered (TS 31.115 §6, §7).
    fn sms_pp_download(&mut self, dl: SmsPpDownload) -> Response {
        if self.toolkit.queue.len() >= MAX_QUEUE {
            // Toolkit busy (TS 102 221 §10.2.1.1): the network retries.
            return Response::status(StatusWord::new(0x93, 0x00));
        }
        let from = dl.tpdu.originator.clone();
        match self.toolkit.reassemble(&from, &dl.tpdu.user_data) {
            Some((PacketKind::Command, packet)) => self.command_packet(&packet, &from),
            // A PoR or anything else sent to the card: nothing to do.
            _ => Response::ok(Vec::new()),
        }
    }

    /// Opens, checks and executes one command packet; the answer to the ENVELOPE.
    fn command_packet(&mut self, packet: &[u8], from: &Address) -> Response {
        let plan = match self.receive(packet) {
            Ok(p) => p,
            Err(r) => return r,
        };
        self.send_por(plan, from)
    }

    /// The receiver of TS 102 225 §5 / TS 31.115: TAR → SD → keys → open → counter →
    /// execute. `Err` is an APDU answer that replaces the PoR (memory failure).
    fn receive(&mut self, packet: &[u8]) -> Result<PorPlan, Response> {
        // Without the cleartext header there is no TAR to answer (TS 102 225 §5.1.1).
        let Ok(info) = PacketInfo::parse(packet) else {
            return Ok(PorPlan::none());
        };
        let spi = info.spi;
        let unsecured = |status: ResponseStatus, counter: Counter| PorPlan {
            tar: info.tar,
            counter,
            status,
            data: Vec::new(),
            security: PorSecurity::NONE,
            keys: KeySet::default(),
            transport: spi.por_transport,
            wanted: matches!(
                spi.por,
                PorRequest::Always | PorRequest::OnError | PorRequest::Reserved
            ),
        };
        // The counter as sent, when it can be read (not ciphered).
        let clear_counter = if spi.ciphering {
            Counter::ZERO
        } else {
            packet
                .get(10..15)
                .and_then(|c| <[u8; 5]>::try_from(c).ok())
                .map_or(Counter::ZERO, Counter)
        };
        let Some(sd) = self.sd_for_tar(info.tar.0) else {
            return Ok(unsecured(ResponseStatus::TarUnknown, clear_counter));
        };
        if spi.has_reserved() {
            return Ok(unsecured(
                ResponseStatus::UnidentifiedSecurityError,
                clear_counter,
            ));
        }
        // Minimum security level (TS 102 226 §8.2.1.3.2.4): remote management needs a CC
        // and a counter that must count up; anything less is refused (status 0A).
        if spi.integrity != Integrity::Cc
            || !matches!(
                spi.counter,
                packet::CounterMode::Higher | packet::CounterMode::OneHigher
            )
        {
            return Ok(unsecured(
                ResponseStatus::InsufficientSecurityLevel,
                clear_counter,
            ));
        }
        let kvn = info.kid.key_version;
        let Some(keys) = self.packet_keys(&sd, &info, spi) else {
            return Ok(unsecured(
                ResponseStatus::UnidentifiedSecurityError,
                clear_counter,
            ));
        };
        let stored = Counter::from_u64(self.ota_counter(&sd, kvn)).unwrap_or(Counter::MAX);
        let header_security = CommandHeader {
            spi,
            kic: info.kic,
            kid: info.kid,
            tar: info.tar,
            counter: Counter::ZERO,
        }
        .por_security();
        // A PoR this card cannot secure as asked (a digital signature...) is a security
        // error found before anything runs.
        let probe = ResponseHeader {
            tar: info.tar,
            counter: Counter::ZERO,
            status: ResponseStatus::PorOk,
        };
        if packet::secure_response(&header_security, &keys, &probe, &[]).is_err() {
            return Ok(unsecured(
                ResponseStatus::UnidentifiedSecurityError,
                clear_counter,
            ));
        }
        let opened = match packet::open_command(packet, &keys, stored) {
            Ok(o) => o,
            Err(e) => {
                let counter = match &e {
                    packet::Error::CounterLow { received, .. }
                    | packet::Error::CounterHigh { received, .. } => *received,
                    _ => clear_counter,
                };
                return Ok(match e.por_status() {
                    Some(status) => unsecured(status, counter),
                    None => PorPlan::none(),
                });
            }
        };
        let counter = opened.header.counter;
        // The counter is written before anything runs (TS 102 225 §5.1.1): a power loss
        // during the script cannot make a replay acceptable.
        self.set_ota_counter(&sd, kvn, counter.value());
        if let Err(e) = self.commit_now() {
            tracing::error!("virtual card: {e}; the OTA packet was refused with 6581");
            return Err(Response::status(StatusWord::MEMORY_FAILURE));
        }
        let (data, failed) = self.execute_script(&sd, kvn, &opened.data, &info);
        let wanted = match spi.por {
            PorRequest::Always => true,
            PorRequest::OnError | PorRequest::Reserved => failed,
            PorRequest::No => false,
        };
        Ok(PorPlan {
            tar: info.tar,
            counter,
            status: ResponseStatus::PorOk,
            data,
            security: opened.header.por_security(),
            keys,
            transport: spi.por_transport,
            wanted,
        })
    }

    /// The keys a packet names: KID's key set for the CC, KIc's for ciphering (the command
    /// or the PoR), each checked against the algorithm it is named with.
    fn packet_keys(&self, sd: &Aid, info: &PacketInfo, spi: Spi) -> Option<KeySet> {
        let (kt, _, kid) = self.scp80_keys(sd, info.kid.key_version)?;
        if algorithm_for(kt, kid.len())? != info.kid.cc() {
            return None;
        }
        let mut keys = KeySet {
            kic: None,
            kid: Some(Key::new(kid)),
        };
        if spi.ciphering || spi.por_ciphered {
            let (kt, kic, _) = self.scp80_keys(sd, info.kic.key_version)?;
            if algorithm_for(kt, kic.len())? != info.kic.algorithm {
                return None;
            }
            keys.kic = Some(Key::new(kic));
        }
        Some(keys)
    }

    /// Decodes and runs the secured data as a remote APDU script (TS 102 226 §5): expanded
    /// (`AA`/`AE`, answered `AB`/`AF`) or compact. Returns the PoR data and whether the
    /// script stopped on an error (for "PoR on error").
    fn execute_script(
        &mut self,
        sd: &Aid,
        kvn: u8,
        data: &[u8],
        info: &PacketInfo,
    ) -> (Vec<u8>, bool) {
        let sds_before: Vec<Aid> = self
            .state
            .apps
            .iter()
            .filter(|a| a.is_sd())
            .map(|a| a.aid.clone())
            .collect();
        let out = self.run_encoded_script(sd, data);
        self.give_new_sds_ota_keys(sd, &sds_before, &[kvn, info.kic.key_version]);
        out
    }

    /// Decodes a remote APDU script (TS 102 226 §5: expanded `AA`/`AE`, or compact), runs
    /// it under `sd`'s authority and encodes the response in the same format (expanded:
    /// `AB`/`AF` with the same length coding). Returns the response and whether the
    /// script stopped on an error. SCP80 packets and SCP81 sessions both use it.
    pub(crate) fn run_encoded_script(&mut self, sd: &Aid, data: &[u8]) -> (Vec<u8>, bool) {
        let expanded = matches!(
            data.first(),
            Some(&script::TAG_COMMAND_SCRIPT | &script::TAG_COMMAND_SCRIPT_INDEFINITE)
        );
        let commands: Result<Vec<Command>, LengthCoding> = if expanded {
            match CommandScript::parse(data) {
                Ok(s) => Ok(s.commands().cloned().collect()),
                Err(_) => Err(if data.first() == Some(&script::TAG_COMMAND_SCRIPT) {
                    LengthCoding::Definite
                } else {
                    LengthCoding::Indefinite
                }),
            }
        } else {
            script::decode_compact_commands(data).map_err(|_| LengthCoding::Definite)
        };
        let coding = |d: &[u8]| {
            if d.first() == Some(&script::TAG_COMMAND_SCRIPT_INDEFINITE) {
                LengthCoding::Indefinite
            } else {
                LengthCoding::Definite
            }
        };
        let commands = match commands {
            Ok(c) => c,
            Err(coding) if expanded => {
                // Bad Format (TS 102 226 §5.2.2): nothing executed.
                let r = ResponseScript {
                    coding,
                    items: vec![
                        ResponseTlv::Executed(0),
                        ResponseTlv::BadFormat(script::BadFormat::WrongLength),
                    ],
                };
                return (r.to_bytes(), true);
            }
            Err(_) => {
                let r = CompactResponse {
                    executed: 0,
                    last: Response::status(StatusWord::WRONG_LENGTH),
                };
                return (r.to_bytes(), true);
            }
        };
        let outcome = self.run_remote_script(sd, &commands);
        let failed = outcome
            .last()
            .is_some_and(|r| !crate::ota::continues_after(r.sw));
        let data = if expanded {
            let mut items = vec![ResponseTlv::Executed(outcome.executed() as u32)];
            items.extend(outcome.responses.iter().cloned().map(ResponseTlv::Apdu));
            ResponseScript {
                coding: coding(data),
                items,
            }
            .to_bytes()
        } else {
            match outcome.last() {
                Some(last) => CompactResponse {
                    executed: outcome.executed().min(255) as u8,
                    last: last.clone(),
                }
                .to_bytes(),
                None => Vec::new(),
            }
        };
        (data, failed)
    }

    /// A security domain created by a remote script gets a copy of the SCP80 key sets the
    /// creating packet was verified with (docs/OTA.md, "Create-SD"), so that the platform
    /// can address it at its own TAR at once; its counters start at zero.
    fn give_new_sds_ota_keys(&mut self, creator: &Aid, before: &[Aid], kvns: &[u8]) {
        let sets: Vec<crate::model::KeySet> = self
            .state
            .app(&creator.0)
            .and_then(|a| a.sd_data())
            .map(|d| {
                d.key_sets
                    .iter()
                    .filter(|s| kvns.contains(&s.kvn) && crate::ota::SCP80_KVNS.contains(&s.kvn))
                    .map(|s| crate::model::KeySet {
                        kvn: s.kvn,
                        keys: s.keys.iter().filter(|k| k.id <= 3).cloned().collect(),
                        failures: 0,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let new: Vec<Aid> = self
            .state
            .apps
            .iter()
            .filter(|a| a.is_sd() && !before.contains(&a.aid))
            .map(|a| a.aid.clone())
            .collect();
        for aid in new {
            if let Ok(d) = self.sd_data_mut(&aid) {
                for set in &sets {
                    if !d.key_sets.iter().any(|s| s.kvn == set.kvn) {
                        d.key_sets.push(set.clone());
                    }
                }
            }
        }
    }

    /// Secures the PoR and sends it as the SPI says: in the ENVELOPE's response data, or as
    /// SEND SHORT MESSAGE(s) to the originator (TS 31.115 §4.4, §7).
    fn send_por(&mut self, plan: PorPlan, to: &Address) -> Response {
        if !plan.wanted {
            return Response::ok(Vec::new());
        }
        let secure = |status: ResponseStatus, data: &[u8]| {
            let header = ResponseHeader {
                tar: plan.tar,
                counter: plan.counter,
                status,
            };
            packet::secure_response(&plan.security, &plan.keys, &header, data)
                .or_else(|_| {
                    // Cannot happen after the probe; never leave the terminal without an answer.
                    packet::secure_response(&PorSecurity::NONE, &KeySet::default(), &header, &[])
                })
                .unwrap_or_default()
        };
        let por = secure(plan.status, &plan.data);
        let by_submit = plan.transport == PorTransport::SmsSubmit;
        if !by_submit && packet::frame_response_sms(&por).len() <= MAX_UD {
            return Response::ok(packet::frame_response_sms(&por));
        }
        // By SMS-SUBMIT: asked for, or too long for the SMS-DELIVER-REPORT (then that one
        // says so with status 0B, TS 31.115 §4.4).
        let reference = self.toolkit.next_ref();
        let Ok(parts) = tpdu::split_packet(PacketKind::Response, &por, reference) else {
            return Response::ok(Vec::new());
        };
        for ud in parts {
            self.queue_sms(SmsSubmit::ota(to.clone(), 0, ud));
        }
        if by_submit {
            Response::ok(Vec::new())
        } else {
            let short = secure(ResponseStatus::ResponseViaSmsSubmit, &[]);
            Response::ok(packet::frame_response_sms(&short))
        }
    }

    /// Queues SEND SHORT MESSAGE (TS 102 223 §6.4.10; 31.111: SMS-SUBMIT TPDU), without
    /// display (empty alpha identifier) and without packing.
    fn queue_sms(&mut self, tpdu: SmsSubmit) -> bool {
        let body = CommandBody::SendShortMessage(SendShortMessage {
            alpha: Some(AlphaId(Vec::new())),
            address: None,
            tpdu,
            other: Vec::new(),
        });
        self.toolkit.push(0, body)
    }

    /// ENVELOPE (MENU SELECTION) of an agent item: queues the download request.
    fn menu_selection(&mut self, item: u8) -> Response {
        let Some(agent) = self.agent() else {
            return Response::ok(Vec::new());
        };
        let Some(entry) = agent.entries.get(usize::from(item).wrapping_sub(1)) else {
            return Response::ok(Vec::new());
        };
        if self.toolkit.queue.len() >= MAX_QUEUE {
            return Response::status(StatusWord::new(0x93, 0x00));
        }
        if let Err(why) = self.queue_download_request(&agent, entry) {
            tracing::warn!("download agent: no request sent: {why}");
        }
        Response::ok(Vec::new())
    }

    /// The download request (docs/OTA.md): a command packet to TAR `B2FFFF` secured with
    /// the ISD's key set `agent.kvn` (SPI `12 00`: CC, counter higher, no PoR), carrying
    /// `E1 { 80 app name [4F SD AID] }`, in an SMS-SUBMIT (PID `7F`, DCS `F6`, UDH `70`)
    /// to the platform. The outgoing counter counts up and is saved first.
    fn queue_download_request(
        &mut self,
        agent: &DownloadAgent,
        entry: &MenuEntry,
    ) -> Result<(), &'static str> {
        let to = platform_address(&agent.address).ok_or("bad platform address")?;
        let isd = Aid::new(ISD_AID);
        let (kt, kic, kid) = self
            .scp80_keys(&isd, agent.kvn)
            .ok_or("no SCP80 key set for the agent's KVN")?;
        let kic_alg = algorithm_for(kt, kic.len()).ok_or("unusable KIc")?;
        let kid_alg = algorithm_for(kt, kid.len()).ok_or("unusable KID")?;
        let kvn_hex = format!("{:02X}", agent.kvn);
        let last = self
            .state
            .isd()
            .and_then(|a| a.sd_data())
            .and_then(|d| d.ota.out_counters.get(&kvn_hex).copied())
            .unwrap_or(0);
        let counter = Counter::from_u64(last + 1)
            .filter(|c| *c != Counter::MAX)
            .ok_or("outgoing counter exhausted")?;
        let mut body = tlv::encode(Tag::new(0x80), entry.app.as_bytes());
        if let Some(aid) = &entry.sd_aid {
            body.extend(tlv::encode(Tag::new(0x4F), aid));
        }
        let data = tlv::encode(Tag::new(TAG_DOWNLOAD_REQUEST), &body);
        let header = CommandHeader {
            spi: Spi::from_bytes(DOWNLOAD_REQUEST_SPI),
            kic: Kic::new(agent.kvn, kic_alg),
            kid: Kid::for_cc(agent.kvn, kid_alg),
            tar: Tar(DOWNLOAD_REQUEST_TAR),
            counter,
        };
        let keys = KeySet::new(Key::new(kic), Key::new(kid));
        let packet = packet::secure_command(&header, &keys, &data).map_err(|_| "cannot secure")?;
        let parts = tpdu::split_packet(PacketKind::Command, &packet, self.toolkit.next_ref())
            .map_err(|_| "cannot split")?;
        if self.toolkit.queue.len() + parts.len() > MAX_QUEUE {
            return Err("proactive queue full");
        }
        // Saved with this ENVELOPE's answer, before the terminal can fetch the SMS.
        self.sd_data_mut(&isd)
            .map_err(|_| "no ISD")?
            .ota
            .out_counters
            .insert(kvn_hex, counter.value());
        for ud in parts {
            self.queue_sms(SmsSubmit::ota(to.clone(), 0, ud));
        }
        Ok(())
    }
}

impl PorPlan {
    /// No PoR at all.
    fn none() -> Self {
        PorPlan {
            tar: Tar([0; 3]),
            counter: Counter::ZERO,
            status: ResponseStatus::PorOk,
            data: Vec::new(),
            security: PorSecurity::NONE,
            keys: KeySet::default(),
            transport: PorTransport::DeliverReport,
            wanted: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_configuration_round_trips_and_refuses_nonsense() {
        let mut wallet = MenuEntry::new("wallet", "Wallet ✓");
        wallet.sd_aid = Some(vec![0xA0, 0, 0, 5, 0x59, 0x10]);
        let a = DownloadAgent::new(
            "+4917000",
            2,
            "Apps",
            vec![wallet, MenuEntry::new("x", "X")],
        );
        let t = a.to_tlv();
        let v = tlv::TlvRef::parse(&t).unwrap();
        assert_eq!(v.tag().value(), TAG_AGENT_CONFIG);
        assert_eq!(DownloadAgent::from_tlv_value(v.value()), Ok(Some(a)));
        assert_eq!(DownloadAgent::from_tlv_value(&[]), Ok(None));
        for bad in [
            "810102",                   // no address
            "800134 810110",            // KVN out of range
            "80022B31 810102 A0028100", // entry without a name
            "80033132 810102 9000",     // unknown tag
            "80034131 810102",          // address not digits
            "8009313233",               // truncated TLV
        ] {
            let b = apdu::parse_hex(bad).unwrap();
            assert_eq!(
                DownloadAgent::from_tlv_value(&b),
                Err(StatusWord::WRONG_DATA),
                "{bad}"
            );
        }
    }

    #[test]
    fn platform_addresses() {
        assert_eq!(
            platform_address("+491234"),
            Some(Address::new(Ton::International, Npi::Isdn, "491234"))
        );
        assert_eq!(
            platform_address("4444"),
            Some(Address::new(Ton::Unknown, Npi::Isdn, "4444"))
        );
        for bad in ["", "+", "12a", "+1+2", "123456789012345678901"] {
            assert_eq!(platform_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn key_algorithms_follow_the_key_type() {
        assert_eq!(algorithm_for(key_type::AES, 16), Some(Algorithm::Aes));
        assert_eq!(
            algorithm_for(key_type::DES, 16),
            Some(Algorithm::Des(DesMode::Tdes2Key))
        );
        assert_eq!(algorithm_for(key_type::AES, 8), None);
        assert_eq!(algorithm_for(0xB1, 32), None);
    }
}
