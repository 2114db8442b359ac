//! The SCP81 admin agent's session over the Bearer Independent Protocol (GP Card Spec
//! Amendment B; ETSI TS 102 223 §6.4.27–31, §7.5.10–11): the card is the TLS-PSK client
//! (`scp81::AgentSession`, in memory) and the handset only relays bytes.
//!
//! 1. A trigger ([`crate::scp81`]) queues SET UP EVENT LIST (data available `09`, channel
//!    status `0A`) and OPEN CHANNEL (qualifier `01` immediate link; the connection
//!    parameters of the trigger: bearer (default `03` if none), buffer size, transport level
//!    `3C` TCP client remote + port, other address `3E` of the server, NAN / login /
//!    password as given). The terminal response gives the channel (status `38`) and the
//!    buffer size granted (`39`).
//! 2. The TLS bytes the agent wants sent go out as SEND DATA (qualifier `01` send
//!    immediately, device identities UICC → channel), at most [`MAX_CHUNK`] bytes or the
//!    buffer size each, one at a time (the next after the terminal response of the last).
//! 3. ENVELOPE event download "data available" for the channel → RECEIVE DATA for
//!    min(announced, [`MAX_CHUNK`]) bytes; the terminal response's channel data goes to the
//!    agent, and its channel data length (bytes left; `FF`: more than 255) asks for the
//!    next RECEIVE DATA.
//! 4. A script from the server runs under the targeted security domain's authority
//!    (the session's SD when none is named); its response, in the script's format, is
//!    POSTed back.
//! 5. When the server ends the session (`204`), the agent fails (wrong PSK, HTTP error) or
//!    the terminal reports the link dropped (channel status event, link not established),
//!    the bytes still waiting are sent (not after a link drop) and CLOSE CHANNEL follows.
//!
//! One session at a time; a trigger during one answers `6985`. **Resume**: a session that
//! ended after the handshake without the server's end (link dropped, card reset, agent
//! error) marks its security domain; the next session of that SD sends
//! `X-Admin-Resume: true` on its first POST. The mark lives in memory (not in the state
//! file). The retry policy of the trigger is not acted on: the platform triggers again.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use apdu::StatusWord;
use ota::admin::TriggerParams;
use ota::cat::{
    self, CloseChannel, CommandBody, Ctlv, Device, Facility, OtherAddress, ProactiveCommand,
    ReceiveData, SendData, TerminalResponse,
};
use scp81::{AgentConfig, AgentSession, Event, ScriptStatus};

use crate::card::VirtualCard;
use crate::model::{Aid, ISD_AID};

/// The most channel data one SEND DATA or RECEIVE DATA carries: the proactive command
/// (FETCH, `91xx`) and the terminal response (one short APDU) must each fit 256 bytes.
pub const MAX_CHUNK: usize = 237;

/// The admin agent's volatile state.
#[derive(Default)]
pub(crate) struct AdminAgent {
    session: Option<Box<Session>>,
    /// The session is being worked on (taken out of `session`): a trigger now is refused.
    busy: bool,
    /// Security domains whose last session was interrupted: the next one resumes.
    interrupted: BTreeSet<Aid>,
}

impl fmt::Debug for AdminAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAgent")
            .field("session", &self.session)
            .field("interrupted", &self.interrupted)
            .finish()
    }
}

/// One administration session.
struct Session {
    agent: AgentSession,
    /// The security domain whose PSK secures the session (default script target).
    sd: Aid,
    /// The BIP channel, once OPEN CHANNEL succeeded.
    channel: Option<u8>,
    /// Bytes per SEND DATA.
    chunk: usize,
    /// TLS bytes waiting to be sent.
    outbox: VecDeque<u8>,
    /// Bytes the terminal holds for the card (announced, not yet received).
    rx_waiting: usize,
    /// A BIP command of this session is queued or fetched and not yet answered.
    in_flight: bool,
    /// The TLS handshake completed.
    connected: bool,
    /// The server ended the session normally.
    done: bool,
    /// No more traffic: send what is left, then CLOSE CHANNEL.
    ending: bool,
    /// The link is gone: nothing more is sent.
    dropped: bool,
    /// CLOSE CHANNEL queued.
    closing: bool,
    /// Scripts run in this session.
    scripts: usize,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("sd", &self.sd)
            .field("channel", &self.channel)
            .field("outbox", &self.outbox.len())
            .field("rx_waiting", &self.rx_waiting)
            .field("connected", &self.connected)
            .field("done", &self.done)
            .field("ending", &self.ending)
            .finish_non_exhaustive()
    }
}

/// `https://host[:port]` for the agent's URI and Host header.
fn authority(params: &TriggerParams, dest: &OtherAddress, port: u16) -> Option<String> {
    let host = match (&params.admin_host, dest) {
        (Some(h), _) if !h.is_empty() => h.clone(),
        (_, OtherAddress::Ipv4(a)) => a.to_string(),
        (_, OtherAddress::Ipv6(a)) => format!("[{a}]"),
        _ => return None,
    };
    Some(
        if port == 443 || host.contains(':') && !host.starts_with('[') {
            host
        } else {
            format!("{host}:{port}")
        },
    )
}

impl VirtualCard {
    /// Starts `sd`'s admin session from triggering parameters (docs/OTA.md): checks the
    /// PSK and the connection, starts the TLS handshake in memory and queues SET UP EVENT
    /// LIST and OPEN CHANNEL.
    pub(crate) fn start_admin_session(
        &mut self,
        sd: &Aid,
        params: TriggerParams,
    ) -> Result<(), StatusWord> {
        if self.admin.session.is_some() || self.admin.busy {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let bip = [
            Facility::OpenChannel,
            Facility::CloseChannel,
            Facility::SendData,
            Facility::ReceiveData,
            Facility::EventDataAvailable,
            Facility::EventChannelStatus,
            Facility::TcpClientRemote,
        ];
        if !bip.iter().all(|f| self.toolkit.supports(*f)) || self.toolkit.room() < 2 {
            tracing::debug!("SCP81 trigger refused: the terminal cannot do BIP now");
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let sec = params.security.as_ref().ok_or(StatusWord::WRONG_DATA)?;
        let psk = self
            .scp81_psk(sd, sec.kvn, sec.kid)
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        let identity = if sec.psk_identity.is_empty() {
            self.scp81_identity(sd, sec.kvn)
                .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?
        } else {
            sec.psk_identity.clone()
        };
        let mut open = params.connection.clone().ok_or(StatusWord::WRONG_DATA)?;
        let port = match open.transport {
            Some(t) if t.protocol == cat::transport_protocol::TCP_CLIENT_REMOTE => {
                t.port.ok_or(StatusWord::WRONG_DATA)?
            }
            _ => return Err(StatusWord::WRONG_DATA),
        };
        let dest = open.destination.clone().ok_or(StatusWord::WRONG_DATA)?;
        if !matches!(dest, OtherAddress::Ipv4(_) | OtherAddress::Ipv6(_)) {
            // DNS resolution parameters (B3) are not supported: an IP address is needed.
            return Err(StatusWord::WRONG_DATA);
        }
        let authority = authority(&params, &dest, port).ok_or(StatusWord::WRONG_DATA)?;
        let uri = match params.admin_uri.as_deref() {
            Some(u) if u.starts_with("https://") => u.to_owned(),
            Some(u) if u.starts_with('/') => format!("https://{authority}{u}"),
            Some(_) => return Err(StatusWord::WRONG_DATA),
            None => format!("https://{authority}/"),
        };
        let agent_id = match &params.agent_id {
            Some(a) => a.clone(),
            None => self.default_agent_id(sd),
        };
        let mut config = AgentConfig::new(identity, psk, agent_id, uri);
        config.resume = self.admin.interrupted.remove(sd);
        let mut agent = AgentSession::start(config).map_err(|e| {
            tracing::debug!("SCP81 trigger refused: {e}");
            StatusWord::WRONG_DATA
        })?;
        open.buffer_size = open.buffer_size.max(1);
        let chunk = usize::from(open.buffer_size).min(MAX_CHUNK);
        let events = CommandBody::Unknown {
            type_of_command: cat::command_type::SET_UP_EVENT_LIST,
            objects: vec![Ctlv::required(
                cat::tag::EVENT_LIST,
                [cat::event::DATA_AVAILABLE, cat::event::CHANNEL_STATUS],
            )],
        };
        let queued = self.toolkit.push_to(0, events, Device::Terminal)
            && self.toolkit.push_to(
                ProactiveCommand::QUALIFIER_IMMEDIATE_LINK,
                CommandBody::OpenChannel(Box::new(open)),
                Device::Terminal,
            );
        if !queued {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        tracing::debug!(sd = %sd, "SCP81: admin session triggered");
        let outbox = agent.take_network_bytes().into();
        self.admin.session = Some(Box::new(Session {
            agent,
            sd: sd.clone(),
            channel: None,
            chunk,
            outbox,
            rx_waiting: 0,
            in_flight: true,
            connected: false,
            done: false,
            ending: false,
            dropped: false,
            closing: false,
            scripts: 0,
        }));
        Ok(())
    }

    /// `X-Admin-From` when the trigger names no agent ID: the card's unique data (the
    /// ISD's key diversification data) and the SD's AID (RID / PIX).
    fn default_agent_id(&self, sd: &Aid) -> String {
        let cud = self
            .state
            .isd()
            .and_then(|a| a.sd_data())
            .map(|d| apdu::hex(&d.kdd))
            .unwrap_or_default();
        let (rid, pix) = sd.0.split_at(sd.0.len().min(5));
        format!(
            "//se-id/CUD/{cud};//aa-id/aid/{}/{}",
            apdu::hex(rid),
            apdu::hex(pix)
        )
    }

    /// Ends the session at once (card reset, rolled-back command): no CLOSE CHANNEL can
    /// be sent any more.
    pub(crate) fn abort_admin_session(&mut self, why: &str) {
        if let Some(s) = self.admin.session.take() {
            tracing::debug!(sd = %s.sd, "SCP81: session aborted: {why}");
            if s.connected && !s.done {
                self.admin.interrupted.insert(s.sd.clone());
            }
        }
    }

    /// A terminal response to a command this card fetched: BIP commands move the session.
    pub(crate) fn bip_terminal_response(&mut self, cmd: &ProactiveCommand, tr: &TerminalResponse) {
        let Some(s) = self.admin.session.as_mut() else {
            return;
        };
        let ok = tr.result.general.is_success();
        match &cmd.body {
            CommandBody::OpenChannel(_) => {
                s.in_flight = false;
                let id = tr
                    .channel_status
                    .map(|c| c.channel_id())
                    .filter(|i| *i != 0);
                match id.filter(|_| ok) {
                    Some(id) => {
                        s.channel = Some(id);
                        if let Some(b) = tr.buffer_size.filter(|b| *b > 0) {
                            s.chunk = usize::from(b).min(MAX_CHUNK);
                        }
                    }
                    None => {
                        tracing::debug!(
                            "SCP81: OPEN CHANNEL failed (result {:02X}); session ends",
                            tr.result.general.0
                        );
                        self.admin.session = None;
                        return;
                    }
                }
            }
            CommandBody::SendData(_) if s.channel.is_some() => {
                s.in_flight = false;
                if !ok {
                    tracing::debug!("SCP81: SEND DATA failed; closing");
                    s.dropped = true;
                    s.ending = true;
                }
            }
            CommandBody::ReceiveData(_) if s.channel.is_some() => {
                s.in_flight = false;
                let data = tr.channel_data.clone().unwrap_or_default();
                s.rx_waiting = match tr.channel_data_length {
                    Some(0xFF) => 0xFF,
                    Some(n) => usize::from(n),
                    None => 0,
                };
                if !ok && data.is_empty() {
                    s.rx_waiting = 0;
                }
                if !s.ending && !data.is_empty() {
                    if let Err(e) = s.agent.on_network_bytes(&data) {
                        tracing::debug!(sd = %s.sd, "SCP81: session failed: {e}");
                        s.ending = true;
                    }
                    self.bip_events();
                }
            }
            CommandBody::CloseChannel(_) if s.closing => {
                let s = self.admin.session.take();
                if let Some(s) = s {
                    if s.connected && !s.done {
                        self.admin.interrupted.insert(s.sd.clone());
                    }
                    tracing::debug!(
                        sd = %s.sd,
                        scripts = s.scripts,
                        completed = s.done,
                        "SCP81: channel closed, session over"
                    );
                }
                return;
            }
            _ => return,
        }
        self.bip_pump();
    }

    /// ENVELOPE event download for the session's channel.
    pub(crate) fn bip_event(&mut self, ev: cat::Event) {
        let Some(s) = self.admin.session.as_mut() else {
            return;
        };
        match ev {
            cat::Event::DataAvailable { status, length } => {
                if s.channel != Some(status.channel_id()) || s.ending {
                    return;
                }
                s.rx_waiting = s.rx_waiting.max(usize::from(length));
            }
            cat::Event::ChannelStatus { status, .. } => {
                if s.channel != Some(status.channel_id()) || status.link_established() {
                    return;
                }
                tracing::debug!(
                    sd = %s.sd,
                    "SCP81: link dropped (channel status {:02X}{:02X}); session ends",
                    status.0[0],
                    status.0[1]
                );
                s.dropped = true;
                s.ending = true;
                s.outbox.clear();
                s.rx_waiting = 0;
            }
            cat::Event::Other { .. } => return,
        }
        self.bip_pump();
    }

    /// Acts on what the agent reports: scripts run, responses posted, the end noted.
    fn bip_events(&mut self) {
        let Some(mut s) = self.admin.session.take() else {
            return;
        };
        self.admin.busy = true;
        while let Some(ev) = s.agent.poll_event() {
            match ev {
                Event::Connected { cipher } => {
                    tracing::debug!(sd = %s.sd, %cipher, "SCP81: TLS-PSK session up");
                    s.connected = true;
                }
                Event::Script { bytes, target, .. } => {
                    s.scripts += 1;
                    let target = target.map(|a| Aid::new(a.as_bytes()));
                    let (response, status) = self.admin_script(&s.sd, target, &bytes);
                    if let Err(e) = s.agent.send_response(&response, status) {
                        tracing::debug!(sd = %s.sd, "SCP81: session failed: {e}");
                        s.ending = true;
                    }
                }
                Event::Done => {
                    s.done = true;
                    s.ending = true;
                }
            }
        }
        self.admin.busy = false;
        self.admin.session = Some(s);
    }

    /// Runs one script of the session (Amendment B §3.x: `X-Admin-Targeted-Application`):
    /// under the session's SD, or a targeted SD the session's SD manages (itself, an SD
    /// associated with it; the ISD manages every SD).
    fn admin_script(
        &mut self,
        session_sd: &Aid,
        target: Option<Aid>,
        script: &[u8],
    ) -> (Vec<u8>, ScriptStatus) {
        let sd = target.unwrap_or_else(|| session_sd.clone());
        let Some(rec) = self.state.app(&sd.0) else {
            return (Vec::new(), ScriptStatus::UnknownApplication);
        };
        if !rec.is_sd() {
            return (Vec::new(), ScriptStatus::NotASecurityDomain);
        }
        let allowed = sd == *session_sd || rec.sd == *session_sd || session_sd.0 == ISD_AID;
        if !allowed {
            return (Vec::new(), ScriptStatus::SecurityError);
        }
        let (response, _stopped) = self.run_encoded_script(&sd, script);
        (response, ScriptStatus::Ok)
    }

    /// Queues the next BIP command of the session, if none is outstanding: RECEIVE DATA
    /// while the terminal holds data, else SEND DATA while bytes wait, else CLOSE CHANNEL
    /// once the session is over.
    fn bip_pump(&mut self) {
        let room = self.toolkit.room();
        let Some(s) = self.admin.session.as_mut() else {
            return;
        };
        if !s.dropped {
            s.outbox.extend(s.agent.take_network_bytes());
        }
        let Some(ch) = s.channel else { return };
        if s.in_flight || s.closing || room == 0 {
            return;
        }
        let to = Device::Channel(ch);
        let (qualifier, body) = if s.rx_waiting > 0 && !s.ending {
            let n = s.rx_waiting.min(MAX_CHUNK);
            (
                0,
                CommandBody::ReceiveData(ReceiveData {
                    alpha: None,
                    length: n as u8,
                    other: Vec::new(),
                }),
            )
        } else if !s.outbox.is_empty() && !s.dropped {
            let n = s.outbox.len().min(s.chunk);
            let data: Vec<u8> = s.outbox.drain(..n).collect();
            (
                ProactiveCommand::QUALIFIER_SEND_IMMEDIATELY,
                CommandBody::SendData(SendData {
                    alpha: None,
                    data,
                    other: Vec::new(),
                }),
            )
        } else if s.ending {
            s.closing = true;
            (
                0,
                CommandBody::CloseChannel(CloseChannel {
                    alpha: None,
                    other: Vec::new(),
                }),
            )
        } else {
            return;
        };
        s.in_flight = true;
        if !self.toolkit.push_to(qualifier, body, to) {
            // Cannot happen with room > 0; never leave the session stuck on it.
            if let Some(s) = self.admin.session.as_mut() {
                s.in_flight = false;
                s.closing = false;
            }
        }
    }
}
