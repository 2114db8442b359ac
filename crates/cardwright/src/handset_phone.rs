//! The card side of `cardwright handset`: one thread owns the card (a PC/SC reader or a
//! virtual card in process), sends TERMINAL PROFILE, polls, FETCHes and answers proactive
//! commands, and turns mobile-terminated SMS into ENVELOPE (SMS-PP download) and menu
//! choices into ENVELOPE (MENU SELECTION).
//!
//! Everything the card or the network sends is input: a malformed answer is logged and
//! answered (TERMINAL RESPONSE with an error, a receipt UNDELIV), never a panic.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apdu::{Command, Response};
use ota::cat::{
    self, CatResult, CommandBody, CommandDetails, Envelope, ProactiveCommand, ResultCode,
    SmsPpOutcome, TerminalProfile, TerminalResponse,
};
use ota::tpdu::{self, Dcs, Npi, Pid, SmsDeliver, Ton, UserData};
use smpp::{EndpointHandle, MtMessage, ShortMessage};
use transport::CardChannel;

use crate::handset_bip::{Bip, BipEvent};

/// How long the handset waits for the SMSC to take an MO message or a receipt.
const SMSC_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a missing card or reader is tried again.
const RECONNECT: Duration = Duration::from_secs(1);
/// The most proactive commands handled in one go (a card that never stops is cut off).
const MAX_COMMANDS: usize = 64;

/// Where the card is.
#[derive(Debug, Clone)]
pub enum CardSource {
    /// A PC/SC reader (name or part of it).
    Reader(String),
    /// A virtual card state file, driven in process.
    Virtual(PathBuf),
}

/// The menu the card put up with SET UP MENU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    /// The title (alpha identifier).
    pub title: String,
    /// The items: identifier and text, in order.
    pub items: Vec<(u8, String)>,
}

impl Menu {
    /// The item `name` names: its text (case-insensitive), its identifier or position
    /// number, else the one item whose text contains it (case-insensitive).
    pub fn find(&self, name: &str) -> Option<(u8, String)> {
        let want = name.trim().to_lowercase();
        if let Some(i) = self.items.iter().find(|(_, t)| t.to_lowercase() == want) {
            return Some(i.clone());
        }
        if let Ok(n) = want.parse::<u8>() {
            if let Some(i) = self.items.iter().find(|(id, _)| *id == n) {
                return Some(i.clone());
            }
            if let Some(i) = self.items.get(usize::from(n).wrapping_sub(1)) {
                return Some(i.clone());
            }
        }
        let mut partial = self
            .items
            .iter()
            .filter(|(_, t)| !want.is_empty() && t.to_lowercase().contains(&want));
        match (partial.next(), partial.next()) {
            (Some(i), None) => Some(i.clone()),
            _ => None,
        }
    }

    /// `1 Transit pass, 2 Wallet`.
    pub fn summary(&self) -> String {
        self.items
            .iter()
            .map(|(id, t)| format!("{id} {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An MO message the handset sent for the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoSent {
    /// The destination (`+` first for an international number).
    pub to: String,
    /// The user data's length in octets.
    pub octets: usize,
    /// Whether the SMSC took it.
    pub accepted: bool,
}

/// What a menu selection did.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The item's identifier.
    pub id: u8,
    /// The item's text.
    pub text: String,
    /// The ENVELOPE's status word.
    pub sw: u16,
    /// The MO messages sent for the card's commands that followed.
    pub mo: Vec<MoSent>,
}

/// A request to the card thread.
pub enum Request {
    /// A mobile-terminated SMS from the SMSC.
    Mt(Box<MtMessage>),
    /// The user chose a menu item (by name); the answer goes back on `reply`.
    Select {
        /// The item's text, identifier or part of its text.
        item: String,
        /// Where the outcome goes.
        reply: tokio::sync::oneshot::Sender<Result<Selected, String>>,
    },
    /// What a BIP channel's socket brought (bytes, or the peer's close).
    Bip(BipEvent),
}

/// The card thread's state.
pub struct Phone {
    source: CardSource,
    channel: Option<Box<dyn CardChannel>>,
    last_error: Option<String>,
    next_connect: Instant,
    /// `false` once the card answered STATUS with an error: poll with FETCH then.
    status_works: bool,
    menu: Arc<Mutex<Option<Menu>>>,
    endpoint: EndpointHandle,
    rt: tokio::runtime::Handle,
    msisdn: smpp::Address,
    poll: Duration,
    sent: Vec<MoSent>,
    bip: Bip,
    /// A proactive command still waits (its length) after a long run of them.
    pending: Option<u8>,
    /// MT SMS received so far.
    mt_count: u64,
    /// MT SMS (1-based, in order of arrival) lost over the air (`--lose-mt`).
    lose_mt: std::collections::BTreeSet<u64>,
}

/// Why an exchange with the card failed.
#[derive(Debug)]
enum CardFault {
    /// No card now.
    NoCard,
    /// The exchange failed (the card is dropped and tried again).
    Lost(String),
}

impl std::fmt::Display for CardFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CardFault::NoCard => f.write_str("no card"),
            CardFault::Lost(e) => write!(f, "card lost: {e}"),
        }
    }
}

fn sw_of(r: &Response) -> u16 {
    r.sw.0
}

/// The type-of-number of an SMPP address as TS 23.040 codes it (the same values, 0-6).
fn tp_address(a: &smpp::Address) -> Result<tpdu::Address, String> {
    let ton = Ton::from_bits(a.ton & 7);
    if ton == Ton::Alphanumeric {
        return Ok(tpdu::Address::alphanumeric(&a.address));
    }
    let digits = a.address.trim_start_matches('+');
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("address '{}' is not a number", a.address));
    }
    let ton = if a.address.starts_with('+') {
        Ton::International
    } else {
        ton
    };
    Ok(tpdu::Address::new(
        ton,
        Npi::from_bits(a.npi & 0x0F),
        digits,
    ))
}

/// The SMPP address of a TP-DA.
fn smpp_address(a: &tpdu::Address) -> smpp::Address {
    let text = match &a.value {
        tpdu::AddressValue::Digits(d) => d.clone(),
        tpdu::AddressValue::Alphanumeric(t) => t.clone(),
    };
    smpp::Address::new(a.ton.bits(), a.npi.bits(), &text)
}

fn shown(a: &smpp::Address) -> String {
    if a.ton == 1 && !a.address.starts_with('+') {
        format!("+{}", a.address)
    } else {
        a.address.clone()
    }
}

/// The command details of a proactive command that does not decode, if they can be read.
fn raw_details(bytes: &[u8]) -> Option<CommandDetails> {
    let (&tag, rest) = bytes.split_first()?;
    if tag != 0xD0 {
        return None;
    }
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = match l0 {
        0x81 => {
            let (&l, r) = rest.split_first()?;
            (usize::from(l), r)
        }
        l if l < 0x80 => (usize::from(l), rest),
        _ => return None,
    };
    let objects = cat::parse_ctlvs(rest.get(..len)?).ok()?;
    let d = objects
        .iter()
        .find(|o| o.tag.value == cat::tag::COMMAND_DETAILS)?;
    match d.value.as_slice() {
        [n, t, q] => Some(CommandDetails {
            number: *n,
            type_of_command: *t,
            qualifier: *q,
        }),
        _ => None,
    }
}

impl Phone {
    /// A phone for the card at `source`, sending MO through `endpoint` as `msisdn`.
    pub fn new(
        source: CardSource,
        menu: Arc<Mutex<Option<Menu>>>,
        endpoint: EndpointHandle,
        rt: tokio::runtime::Handle,
        msisdn: &str,
        poll: Duration,
        wake: std::sync::mpsc::Sender<Request>,
    ) -> Self {
        Self {
            source,
            channel: None,
            last_error: None,
            next_connect: Instant::now(),
            status_works: true,
            menu,
            endpoint,
            rt,
            msisdn: smpp::Address::international(msisdn),
            poll,
            sent: Vec::new(),
            bip: Bip::new(wake),
            pending: None,
            mt_count: 0,
            lose_mt: Default::default(),
        }
    }

    /// Loses these MT SMS (1-based, in order of arrival) over the air: not given to the
    /// card, no delivery receipt — a lab fault for testing the platform's time-outs.
    pub fn with_lost_mt(mut self, which: impl IntoIterator<Item = u64>) -> Self {
        self.lose_mt = which.into_iter().collect();
        self
    }

    /// Runs until `requests` closes.
    pub fn run(mut self, requests: Receiver<Request>) {
        loop {
            if self.channel.is_none() && Instant::now() >= self.next_connect {
                self.connect();
            }
            let wait = if self.channel.is_some() && self.pending.is_some() {
                Duration::ZERO
            } else if self.channel.is_some() {
                self.poll
            } else {
                self.next_connect
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(10))
            };
            match requests.recv_timeout(wait) {
                Ok(Request::Mt(mt)) => self.mt(*mt),
                Ok(Request::Select { item, reply }) => {
                    let outcome = self.select(&item);
                    let _ = reply.send(outcome);
                }
                Ok(Request::Bip(ev)) => self.bip.event(ev),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(len) = self.pending.take() {
                        self.proactive(len);
                    } else if self.channel.is_some() {
                        self.poll_card();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.bip.close("closed: the handset stops");
                    return;
                }
            }
            self.bip_envelopes();
        }
    }

    /// The ENVELOPEs (event download) the BIP channel owes the card, and the commands
    /// they bring.
    fn bip_envelopes(&mut self) {
        if self.channel.is_none() {
            return;
        }
        for _ in 0..MAX_COMMANDS {
            let Some(env) = self.bip.next_envelope() else {
                return;
            };
            let data = match env.encode() {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!("BIP: ENVELOPE not encodable: {e}");
                    return;
                }
            };
            let apdu = Command::new(cat::CLA_TOOLKIT, cat::INS_ENVELOPE, 0, 0).with_data(data);
            let Ok(r) = self.exchange(&apdu) else {
                return;
            };
            if sw_of(&r) != 0x9000 && cat::proactive_command_pending(sw_of(&r)).is_none() {
                tracing::warn!("BIP: ENVELOPE (event download) → {:04X}", sw_of(&r));
            }
            self.after(&r);
        }
    }

    fn set_menu(&self, menu: Option<Menu>) {
        *self.menu.lock().unwrap_or_else(|e| e.into_inner()) = menu;
    }

    fn menu(&self) -> Option<Menu> {
        self.menu.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn open(&self) -> anyhow::Result<Box<dyn CardChannel>> {
        match &self.source {
            CardSource::Reader(r) => crate::card_cmd::open_card(Some(r), None),
            CardSource::Virtual(p) => crate::card_cmd::open_card(None, Some(p)),
        }
    }

    /// Power-up: connect, TERMINAL PROFILE, and the commands it brings.
    fn connect(&mut self) {
        self.next_connect = Instant::now() + RECONNECT;
        let channel = match self.open() {
            Ok(c) => c,
            Err(e) => {
                let text = crate::one_line(&e);
                if self.last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!("card: {text}; trying again every second");
                    self.last_error = Some(text);
                }
                return;
            }
        };
        let name = channel.name();
        self.channel = Some(channel);
        self.last_error = None;
        self.status_works = true;
        let profile = TerminalProfile::ota_handset(1);
        let apdu = Command::new(cat::CLA_TOOLKIT, cat::INS_TERMINAL_PROFILE, 0, 0)
            .with_data(profile.bytes().to_vec());
        match self.exchange(&apdu) {
            Ok(r) => {
                tracing::info!("card: {name}: TERMINAL PROFILE → {:04X}", sw_of(&r));
                self.after(&r);
            }
            Err(e) => tracing::warn!("card: {name}: TERMINAL PROFILE failed: {e}"),
        }
    }

    /// One exchange; a transport failure drops the card (tried again every second).
    fn exchange(&mut self, cmd: &Command) -> Result<Response, CardFault> {
        let Some(channel) = self.channel.as_mut() else {
            return Err(CardFault::NoCard);
        };
        let bytes = cmd
            .to_bytes()
            .map_err(|e| CardFault::Lost(format!("command not encodable: {e}")))?;
        let result = channel
            .transmit_raw(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|raw| Response::parse(&raw).map_err(|e| format!("bad answer: {e}")));
        match result {
            Ok(r) => Ok(r),
            Err(e) => {
                let name = channel.name();
                tracing::warn!("card: {name}: {e}; the card is gone, trying again every second");
                self.channel = None;
                self.last_error = Some(e.clone());
                self.next_connect = Instant::now() + RECONNECT;
                self.set_menu(None);
                self.pending = None;
                self.bip.close("closed: the card is gone");
                Err(CardFault::Lost(e))
            }
        }
    }

    /// After any answer: a `91xx` means a proactive command waits.
    fn after(&mut self, r: &Response) {
        if let Some(len) = cat::proactive_command_pending(sw_of(r)) {
            self.proactive(len);
        }
    }

    /// STATUS (TS 102 221 §11.1.2, no data) to learn whether a command waits; a card that
    /// refuses STATUS is polled with FETCH (`6985`: nothing waits).
    fn poll_card(&mut self) {
        if self.status_works {
            let status = Command::new(0x80, 0xF2, 0x00, 0x0C).with_le(256);
            let Ok(r) = self.exchange(&status) else {
                return;
            };
            let sw = sw_of(&r);
            if sw == 0x9000 || cat::proactive_command_pending(sw).is_some() {
                self.after(&r);
                return;
            }
            tracing::info!("card answers STATUS with {sw:04X}: polling with FETCH instead");
            self.status_works = false;
        }
        self.proactive(0);
    }

    /// FETCH (Le `len`, 0 = 256) and answer commands until none waits.
    fn proactive(&mut self, mut len: u8) {
        for _ in 0..MAX_COMMANDS {
            let fetch = Command::new(cat::CLA_TOOLKIT, cat::INS_FETCH, 0, 0).with_le(if len == 0 {
                256
            } else {
                u32::from(len)
            });
            let Ok(mut r) = self.exchange(&fetch) else {
                return;
            };
            if r.sw.sw1() == 0x6C {
                let again = Command::new(cat::CLA_TOOLKIT, cat::INS_FETCH, 0, 0).with_le(
                    if r.sw.sw2() == 0 {
                        256
                    } else {
                        u32::from(r.sw.sw2())
                    },
                );
                let Ok(r2) = self.exchange(&again) else {
                    return;
                };
                r = r2;
            }
            let sw = sw_of(&r);
            if !(sw == 0x9000 || cat::proactive_command_pending(sw).is_some()) || r.data.is_empty()
            {
                if sw != 0x6985 {
                    tracing::debug!("FETCH → {sw:04X}");
                }
                return;
            }
            let tr = match ProactiveCommand::decode(&r.data) {
                Ok(cmd) => self.act(&cmd),
                Err(e) => match raw_details(&r.data) {
                    Some(details) => {
                        tracing::warn!("proactive command does not decode: {e}");
                        TerminalResponse::for_details(
                            details,
                            CatResult::new(ResultCode::DATA_NOT_UNDERSTOOD, vec![]),
                        )
                    }
                    None => {
                        tracing::warn!("proactive command without command details: {e}");
                        return;
                    }
                },
            };
            let data = match tr.encode() {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!("TERMINAL RESPONSE not encodable: {e}");
                    return;
                }
            };
            let apdu =
                Command::new(cat::CLA_TOOLKIT, cat::INS_TERMINAL_RESPONSE, 0, 0).with_data(data);
            let Ok(r) = self.exchange(&apdu) else {
                return;
            };
            match cat::proactive_command_pending(sw_of(&r)) {
                Some(next) => len = next,
                None => {
                    if sw_of(&r) != 0x9000 {
                        tracing::warn!("TERMINAL RESPONSE → {:04X}", sw_of(&r));
                    }
                    return;
                }
            }
        }
        // A BIP session is a long run of commands: carry on after the requests that wait.
        self.pending = Some(len);
        tracing::debug!(
            "{MAX_COMMANDS} proactive commands in a row; going on after other requests"
        );
    }

    /// Carries out one proactive command; its TERMINAL RESPONSE.
    fn act(&mut self, cmd: &ProactiveCommand) -> TerminalResponse {
        if Bip::handles(cmd) {
            return self.bip.command(cmd);
        }
        let result = match &cmd.body {
            CommandBody::SetUpMenu(m) => {
                if m.items.is_empty() {
                    tracing::info!("menu: removed by the card");
                    println!("menu removed");
                    self.set_menu(None);
                } else {
                    let menu = Menu {
                        title: m.alpha.text(),
                        items: m.items.iter().map(|i| (i.id, i.text.text())).collect(),
                    };
                    tracing::info!("menu: {}: {}", menu.title, menu.summary());
                    println!("menu: {}", menu.title);
                    for (id, text) in &menu.items {
                        println!("  {id:>2}  {text}");
                    }
                    self.set_menu(Some(menu));
                }
                CatResult::success()
            }
            CommandBody::SendShortMessage(s) => self.send_short_message(s),
            CommandBody::Unknown {
                type_of_command: cat::command_type::MORE_TIME,
                ..
            } => CatResult::success(),
            other => {
                tracing::info!(
                    "proactive command {:02X}: beyond this handset's capabilities",
                    other.type_of_command()
                );
                CatResult::new(ResultCode::BEYOND_CAPABILITIES, vec![])
            }
        };
        TerminalResponse::new(cmd, result)
    }

    /// SEND SHORT MESSAGE: the SMS-SUBMIT as an MO deliver_sm from the handset's number.
    fn send_short_message(&mut self, s: &cat::SendShortMessage) -> CatResult {
        let tpdu = &s.tpdu;
        let ud = match tpdu.user_data.encode(tpdu.dcs) {
            Ok((_, ud)) => ud,
            Err(e) => {
                tracing::warn!("SEND SHORT MESSAGE: user data not sendable: {e}");
                return CatResult::new(ResultCode::DATA_NOT_UNDERSTOOD, vec![]);
            }
        };
        let destination = smpp_address(&tpdu.destination);
        let message = ShortMessage {
            source: self.msisdn.clone(),
            destination: destination.clone(),
            esm_class: if tpdu.user_data.header.is_some() {
                smpp::message::ESM_CLASS_UDHI
            } else {
                0
            },
            protocol_id: tpdu.pid.0,
            data_coding: tpdu.dcs.0,
            short_message: ud.clone(),
            ..ShortMessage::default()
        };
        let to = shown(&destination);
        let sent = self.send_mo(message);
        self.sent.push(MoSent {
            to: to.clone(),
            octets: ud.len(),
            accepted: sent.is_ok(),
        });
        match sent {
            Ok(()) => {
                tracing::info!("MO SMS to {to} ({} octets) sent", ud.len());
                CatResult::success()
            }
            Err(e) => {
                tracing::warn!("MO SMS to {to}: the SMSC did not take it: {e}");
                CatResult::new(ResultCode::NETWORK_UNABLE, vec![0x00])
            }
        }
    }

    fn send_mo(&self, message: ShortMessage) -> Result<(), String> {
        let endpoint = self.endpoint.clone();
        self.rt.block_on(async move {
            match tokio::time::timeout(SMSC_TIMEOUT, endpoint.send_mo(message)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("no answer from the SMSC".into()),
            }
        })
    }

    /// ENVELOPE (MENU SELECTION) of the item `name` names.
    fn select(&mut self, name: &str) -> Result<Selected, String> {
        if self.channel.is_none() {
            return Err(match &self.last_error {
                Some(e) => format!("no card: {e}"),
                None => "no card".into(),
            });
        }
        let menu = self
            .menu()
            .ok_or("the card has not put up a menu (no SET UP MENU yet)")?;
        let (id, text) = menu
            .find(name)
            .ok_or_else(|| format!("no menu item '{name}' (items: {})", menu.summary()))?;
        let data = Envelope::MenuSelection {
            item: id,
            help_request: false,
        }
        .encode()
        .map_err(|e| e.to_string())?;
        self.sent.clear();
        let apdu = Command::new(cat::CLA_TOOLKIT, cat::INS_ENVELOPE, 0, 0).with_data(data);
        let r = self.exchange(&apdu).map_err(|e| e.to_string())?;
        let sw = sw_of(&r);
        if sw == 0x9300 {
            return Err("the card's toolkit is busy (9300); try again".into());
        }
        self.after(&r);
        let mo = std::mem::take(&mut self.sent);
        match mo.iter().find(|m| m.accepted) {
            Some(m) => tracing::info!("menu: {text} selected → MO sent to {}", m.to),
            None => tracing::info!("menu: {text} selected → ENVELOPE {sw:04X}, no MO sent"),
        }
        Ok(Selected { id, text, sw, mo })
    }

    /// A mobile-terminated SMS: ENVELOPE (SMS-PP download), the PoR as MO, the receipt.
    fn mt(&mut self, mt: MtMessage) {
        let from = mt.message.source.clone();
        let id = mt.message_id.clone();
        self.mt_count += 1;
        if self.lose_mt.contains(&self.mt_count) {
            tracing::warn!(
                "MT {id} SMS from {} (number {}) lost over the air (--lose-mt)",
                shown(&from),
                self.mt_count
            );
            return;
        }
        let (delivered, summary) = self.mt_to_card(&mt);
        let stat = if delivered { "DELIVRD" } else { "UNDELIV" };
        let rd = mt.message.registered_delivery & 0x03;
        let wanted = rd == 1 || (rd == 2 && !delivered);
        let receipt = if wanted {
            let endpoint = self.endpoint.clone();
            let r = self.rt.block_on(async move {
                tokio::time::timeout(SMSC_TIMEOUT, endpoint.send_receipt(&mt, stat)).await
            });
            match r {
                Ok(Ok(())) => format!("receipt {stat}"),
                Ok(Err(e)) => format!("receipt {stat} not sent: {e}"),
                Err(_) => format!("receipt {stat} not sent: no answer from the SMSC"),
            }
        } else {
            format!("{stat} (no receipt asked for)")
        };
        let line = format!("MT {id} SMS from {} → {summary} → {receipt}", shown(&from));
        if delivered {
            tracing::info!("{line}");
        } else {
            tracing::warn!("{line}");
        }
    }

    /// Returns whether the card took the SMS, and what happened.
    fn mt_to_card(&mut self, mt: &MtMessage) -> (bool, String) {
        let m = &mt.message;
        let originator = match tp_address(&m.source) {
            Ok(a) => a,
            Err(e) => return (false, format!("not for the card: {e}")),
        };
        let ud = m.user_data();
        let Ok(udl) = u8::try_from(ud.len()) else {
            return (false, format!("{} octets of user data: too long", ud.len()));
        };
        let dcs = Dcs::CLASS2_8BIT;
        let user_data = match UserData::decode(m.esm_class & 0x40 != 0, dcs, udl, ud) {
            Ok(u) => u,
            Err(e) => return (false, format!("not an SMS the card can take: {e}")),
        };
        let mut deliver = SmsDeliver::ota(
            originator,
            tpdu::Timestamp::utc(time::OffsetDateTime::now_utc()),
            user_data,
        );
        deliver.pid = Pid::SIM_DATA_DOWNLOAD;
        let data = match Envelope::sms_pp(None, deliver).encode() {
            Ok(d) => d,
            Err(e) => return (false, format!("no ENVELOPE: {e}")),
        };
        if self.channel.is_none() {
            return (false, "no card".into());
        }
        let apdu = Command::new(cat::CLA_TOOLKIT, cat::INS_ENVELOPE, 0, 0)
            .with_data(data)
            .with_le(256);
        // Never sent twice: a failed ENVELOPE is an undelivered SMS.
        let r = match self.exchange(&apdu) {
            Ok(r) => r,
            Err(e) => return (false, format!("ENVELOPE failed: {e}")),
        };
        let mut sws = format!("ENVELOPE {:04X}", sw_of(&r));
        let mut outcome = cat::sms_pp_outcome(&r.data, sw_of(&r));
        let mut last = r;
        for _ in 0..8 {
            let n = match &outcome {
                SmsPpOutcome::GetResponse(n) => *n,
                SmsPpOutcome::DataDownloadError {
                    get_response: Some(n),
                    ..
                } => *n,
                _ => break,
            };
            let error = matches!(outcome, SmsPpOutcome::DataDownloadError { .. });
            let gr =
                Command::new(0x00, 0xC0, 0, 0).with_le(if n == 0 { 256 } else { u32::from(n) });
            let r = match self.exchange(&gr) {
                Ok(r) => r,
                Err(e) => return (false, format!("{sws} → GET RESPONSE failed: {e}")),
            };
            sws.push_str(&format!(" → GET RESPONSE {:04X}", sw_of(&r)));
            outcome = if error {
                SmsPpOutcome::DataDownloadError {
                    data: r.data.clone(),
                    get_response: None,
                }
            } else {
                cat::sms_pp_outcome(&r.data, sw_of(&r))
            };
            last = r;
        }
        let delivered = matches!(outcome, SmsPpOutcome::Acknowledge { .. });
        let report = outcome.deliver_report(Pid::SIM_DATA_DOWNLOAD, dcs);
        let por = report
            .as_ref()
            .and_then(|r| r.parameters.user_data.as_ref())
            .map(|u| (u.header.is_some(), u.encode(dcs).map(|(_, ud)| ud)));
        let mut summary = sws;
        match outcome {
            SmsPpOutcome::Busy => summary.push_str(" (toolkit busy)"),
            SmsPpOutcome::Failed(_) | SmsPpOutcome::DataDownloadError { .. } => {
                summary.push_str(" (data download error)")
            }
            _ => {}
        }
        match por {
            Some((udhi, Ok(bytes))) if !bytes.is_empty() => {
                let octets = bytes.len();
                let message = ShortMessage {
                    source: self.msisdn.clone(),
                    destination: mt.message.source.clone(),
                    esm_class: if udhi {
                        smpp::message::ESM_CLASS_UDHI
                    } else {
                        0
                    },
                    protocol_id: Pid::SIM_DATA_DOWNLOAD.0,
                    data_coding: dcs.0,
                    short_message: bytes,
                    ..ShortMessage::default()
                };
                match self.send_mo(message) {
                    Ok(()) => summary.push_str(&format!(
                        " → PoR ({octets} octets) sent as MO to {}",
                        shown(&mt.message.source)
                    )),
                    Err(e) => summary.push_str(&format!(" → PoR not sent: {e}")),
                }
            }
            Some((_, Err(e))) => summary.push_str(&format!(" → PoR not sendable: {e}")),
            _ => summary.push_str(" → no PoR"),
        }
        self.sent.clear();
        self.after(&last);
        for m in std::mem::take(&mut self.sent) {
            summary.push_str(&format!(" → card's SMS to {} ({} octets)", m.to, m.octets));
        }
        (delivered, summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn menu() -> Menu {
        Menu {
            title: "Get apps".into(),
            items: vec![(1, "Transit pass".into()), (2, "Wallet".into())],
        }
    }

    #[test]
    fn items_are_found_by_text_number_or_part() {
        let m = menu();
        assert_eq!(m.find("wallet").map(|i| i.0), Some(2));
        assert_eq!(m.find("WALLET").map(|i| i.0), Some(2));
        assert_eq!(m.find("1").map(|i| i.0), Some(1));
        assert_eq!(m.find("transit").map(|i| i.0), Some(1));
        assert_eq!(m.find("a"), None, "ambiguous");
        assert_eq!(m.find(""), None);
        assert_eq!(m.find("ticket"), None);
        assert_eq!(m.find("9"), None);
    }

    #[test]
    fn addresses_map_between_smpp_and_tpdu() {
        let a = tp_address(&smpp::Address::international("4900")).unwrap();
        assert_eq!(a, tpdu::Address::international("4900"));
        assert_eq!(smpp_address(&a), smpp::Address::international("4900"));
        let plus = tp_address(&smpp::Address::new(0, 1, "+4912")).unwrap();
        assert_eq!(plus.ton, Ton::International);
        assert!(tp_address(&smpp::Address::new(1, 1, "49x")).is_err());
        let alpha = tp_address(&smpp::Address::new(5, 0, "Cardwright")).unwrap();
        assert_eq!(alpha.ton, Ton::Alphanumeric);
        assert_eq!(shown(&smpp::Address::international("49")), "+49");
    }

    #[test]
    fn undecodable_commands_still_have_their_details() {
        let d = raw_details(&[0xD0, 0x05, 0x81, 0x03, 0x01, 0x99, 0x00]).unwrap();
        assert_eq!((d.number, d.type_of_command, d.qualifier), (1, 0x99, 0));
        assert!(raw_details(&[0xD0]).is_none());
        assert!(raw_details(&[0x90, 0x00]).is_none());
        assert!(raw_details(&[0xD0, 0x81]).is_none());
    }

    #[test]
    fn scts_is_a_valid_timestamp() {
        assert!(tpdu::Timestamp::utc(time::OffsetDateTime::now_utc())
            .encode()
            .is_ok());
    }
}
