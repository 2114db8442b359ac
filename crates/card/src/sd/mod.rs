//! Security domains (GP 2.3.1 §7): the Secure Channel card side and the card management
//! commands a security domain processes.

mod content;
mod data;
pub(crate) mod dm;
mod keys;
mod scp11;
mod status;

use apdu::{Command, Response, StatusWord};

use crate::card::VirtualCard;
use crate::channel::{Channel, Cla, Secure};
use crate::config::{protocol_for, static_keys};
use crate::model::{app_lc, card_lc, Aid, AppRec, CardState, SdData, ISD_AID};

pub(crate) use data::card_recognition_data;

/// Handlers answer data with `9000`, or fail with a status word.
pub(crate) type Sw<T> = Result<T, StatusWord>;

/// `6300`: authentication of the host cryptogram failed (GP 2.3.1 §E.5.2; Amendment D §7.1.2).
const SW_AUTH_FAILED: StatusWord = StatusWord(0x6300);

/// The FCI a security domain answers SELECT with (GP 2.3.1 §11.9):
/// `6F { 84 AID, A5 { 73 card recognition data, 9F65 maximum command data length } }`.
pub(crate) fn fci(state: &CardState, app: &AppRec) -> Vec<u8> {
    let Ok(aid) = gp::Aid::new(&app.aid.0) else {
        return Vec::new();
    };
    let mut fci = gp::commands::Fci::new(aid);
    let variants = app.sd_data().map(scp11::variants).unwrap_or_default();
    fci.sd_management_data = Some(card_recognition_data(state.scp, state.scp_i, &variants));
    fci.max_command_data_length = Some(0xFF);
    fci.to_bytes()
}

impl VirtualCard {
    /// A command to the security domain selected on channel `ch`: Secure Channel
    /// establishment, then unwrapping per the session's security level, the command itself,
    /// and wrapping of the response (GP 2.3.1 §10.2; Amendment D §6).
    pub(crate) fn sd_process(&mut self, ch: usize, cla: Cla, sd: &Aid, cmd: &Command) -> Response {
        let pending = self
            .channel(ch)
            .is_some_and(|c| matches!(c.secure, Secure::Pending { .. }));
        // Another command interrupts ISO command chaining (ISO/IEC 7816-4 §5.3.3).
        if let Some(c) = self.channel_mut(ch) {
            if c.chain.as_ref().is_some_and(|(ins, _)| *ins != cmd.ins) {
                c.chain = None;
            }
        }
        match (cla.proprietary, cmd.ins) {
            (true, 0x50) => return into_response(self.initialize_update(ch, cla, sd, cmd)),
            (true, 0x82) if pending || cla.sm => {
                return into_response(self.external_authenticate(ch, cmd))
            }
            // SCP11 (Amendment F §7.6): MUTUAL AUTHENTICATE (11a/11c), INTERNAL
            // AUTHENTICATE (11b), before any session.
            (true, 0x82 | 0x88) if !cla.sm => {
                return into_response(self.scp11_authenticate(ch, sd, cmd))
            }
            // PERFORM SECURITY OPERATION (Amendment F §7.5), with ISO command chaining.
            (true, 0x2A) if !cla.sm => {
                if let Some(c) = self.channel_mut(ch) {
                    c.secure = Secure::None;
                }
                return into_response(match self.chained(ch, cla.chaining, cmd) {
                    Ok(None) => Ok(Response::ok(Vec::new())),
                    Ok(Some(data)) => {
                        let mut whole = cmd.clone();
                        whole.data = data;
                        self.perform_security_operation(ch, sd, &whole)
                    }
                    Err(e) => Err(e),
                });
            }
            _ => {}
        }
        let Some(c) = self.channel_mut(ch) else {
            return Response::status(StatusWord::UNKNOWN);
        };
        // Anything but EXTERNAL AUTHENTICATE after INITIALIZE UPDATE aborts the handshake.
        if matches!(c.secure, Secure::Pending { .. }) {
            c.secure = Secure::None;
        }
        let plain = match &mut c.secure {
            Secure::Open { session, .. } => {
                if cla.sm {
                    match session.unwrap(cmd) {
                        Ok(p) => p,
                        Err(_) => {
                            // A wrong C-MAC (or padding) ends the session (GP 2.3.1
                            // §10.2.3).
                            c.end_session();
                            return Response::status(StatusWord::SECURITY_NOT_SATISFIED);
                        }
                    }
                } else if session.level().c_mac() {
                    // The session requires C-MAC: a plain command is rejected and ends it.
                    c.end_session();
                    return Response::status(StatusWord::SECURITY_NOT_SATISFIED);
                } else {
                    cmd.clone()
                }
            }
            _ if cla.sm => return Response::status(StatusWord::SECURITY_NOT_SATISFIED),
            _ => cmd.clone(),
        };
        let authenticated = c.secure.is_open();
        // SCP11b does not authenticate the host: only reading is allowed (Amendment F §3.2;
        // as a YubiKey does).
        let anonymous = matches!(&c.secure, Secure::Open { session }
            if session.scp11() == Some(scp::scp11::Variant::B));
        let resp = into_response(self.sd_command(ch, sd, &plain, authenticated, anonymous));
        match self.channel_mut(ch) {
            Some(Channel {
                secure: Secure::Open { session, .. },
                ..
            }) => session.wrap(resp),
            _ => resp,
        }
    }

    pub(crate) fn sd_command(
        &mut self,
        ch: usize,
        sd: &Aid,
        cmd: &Command,
        auth: bool,
        anonymous: bool,
    ) -> Sw<Response> {
        let cla = Cla::decode(cmd.cla).ok_or(StatusWord::CLA_NOT_SUPPORTED)?;
        let lc = self.state.life_cycle;
        if lc == card_lc::TERMINATED && !matches!(cmd.ins, 0xCA | 0xCB) {
            // GP 2.3.1 §5.1.1.5: a TERMINATED card only answers GET DATA.
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let gp_command = matches!(
            cmd.ins,
            0xF2 | 0xF0 | 0xE6 | 0xE8 | 0xE4 | 0xD8 | 0xE2 | 0xF1
        );
        // STORE DATA also in the ISO class (CLA 00), as yubikit sends it to a YubiKey.
        if gp_command && !cla.proprietary && cmd.ins != 0xE2 {
            return Err(StatusWord::CLA_NOT_SUPPORTED);
        }
        if gp_command && !auth {
            // Card and content management need an authenticated Secure Channel (§10.2).
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        let management = matches!(cmd.ins, 0xE6 | 0xE8 | 0xE4 | 0xD8 | 0xE2 | 0xF1);
        if gp_command && anonymous && cmd.ins != 0xF2 {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        if management && lc == card_lc::CARD_LOCKED {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        match cmd.ins {
            0xCA | 0xCB => self.get_data(sd, cmd),
            0xF2 => self.get_status(ch, sd, cmd),
            0xF0 => self.set_status(sd, cmd),
            0xE6 => self.install(ch, sd, cmd),
            0xE8 => self.load(ch, sd, cmd),
            0xE4 => self.delete(ch, sd, cmd),
            0xD8 => self.put_key(ch, sd, cmd),
            0xE2 => match self.chained(ch, cla.chaining, cmd)? {
                None => Ok(Response::ok(Vec::new())),
                Some(data) => {
                    let mut whole = cmd.clone();
                    whole.data = data;
                    self.store_data(ch, sd, &whole)
                }
            },
            0xF1 => self.generate_ec_key(sd, cmd),
            // SELECT of a file (not by DF name): a security domain has no files.
            0xA4 if !cla.proprietary && cmd.p1 <= 0x09 => Err(StatusWord::FILE_NOT_FOUND),
            0xA4 if !cla.proprietary => Err(StatusWord::INCORRECT_P1P2),
            _ => Err(StatusWord::INS_NOT_SUPPORTED),
        }
    }

    /// INITIALIZE UPDATE (GP 2.3.1 §E.5.1; Amendment D §7.1.1).
    fn initialize_update(&mut self, ch: usize, cla: Cla, sd: &Aid, cmd: &Command) -> Sw<Response> {
        if cla.sm {
            return Err(StatusWord::CLA_NOT_SUPPORTED);
        }
        if cmd.p2 != 0 {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        if !matches!(cmd.data.len(), 8 | 16) {
            return Err(StatusWord::WRONG_LENGTH);
        }
        if self.state.life_cycle == card_lc::TERMINATED {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        // A new INITIALIZE UPDATE ends any session on this channel.
        if let Some(c) = self.channel_mut(ch) {
            c.end_session();
        }
        let (scp_id, scp_i, max) = (
            self.state.scp,
            self.state.scp_i,
            self.state.max_auth_failures,
        );
        let data = self.sd_data_mut(sd)?;
        let set = if cmd.p1 == 0 {
            // The default: the first key set that is a secure channel key set (SCP11 key
            // pairs and public keys do not answer INITIALIZE UPDATE).
            data.key_sets.iter().find(|s| static_keys(s).is_some())
        } else {
            data.key_sets.iter().find(|s| s.kvn == cmd.p1)
        }
        .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        if max != 0 && set.failures >= max {
            return Err(StatusWord::AUTH_METHOD_BLOCKED);
        }
        let keys = static_keys(set).ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        let kind = keys.kind().ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        let protocol = protocol_for(scp_id, scp_i, kind);
        let limit = match protocol {
            scp::Protocol::Scp02 { .. } => 0xFFFF,
            scp::Protocol::Scp03 { .. } => 0xFF_FFFF,
        };
        if data.seq_counter > limit {
            // The sequence counter is exhausted: this key set can no longer open sessions.
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let mut kdd = [0u8; 10];
        for (d, s) in kdd.iter_mut().zip(&data.kdd) {
            *d = *s;
        }
        let kvn = set.kvn;
        let (auth, resp) = scp::CardAuth::new(
            &keys,
            protocol,
            kvn,
            kdd,
            data.seq_counter,
            &cmd.data,
            &sd.0,
        )
        .map_err(|_| StatusWord::WRONG_DATA)?;
        // SCP03: the counter moves with every card challenge (Amd D §6.2.2.1); SCP02: after
        // each successful EXTERNAL AUTHENTICATE (GP 2.3.1 §E.4.1).
        if matches!(protocol, scp::Protocol::Scp03 { .. }) {
            data.seq_counter += 1;
        }
        if let Some(c) = self.channel_mut(ch) {
            c.secure = Secure::Pending {
                auth,
                sd: sd.clone(),
                kvn,
            };
        }
        Ok(Response::ok(resp))
    }

    /// EXTERNAL AUTHENTICATE (GP 2.3.1 §E.5.2; Amendment D §7.1.2), with the
    /// per-key-set failure counter.
    fn external_authenticate(&mut self, ch: usize, cmd: &Command) -> Sw<Response> {
        let c = self.channel_mut(ch).ok_or(StatusWord::UNKNOWN)?;
        let pending = std::mem::take(&mut c.secure);
        // An unattainable level (e.g. C-DECRYPTION without C-MAC) is 6A86 whether or not a
        // handshake is pending; without INITIALIZE UPDATE it is 6985.
        if !scp::SecurityLevel(cmd.p1).is_valid() || cmd.p2 != 0 {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        let Secure::Pending { auth, sd, kvn } = pending else {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        };
        match auth.external_authenticate(cmd) {
            Ok(session) => {
                if let Some(set) = self.key_set_mut(&sd, kvn) {
                    set.failures = 0;
                }
                if matches!(session.protocol(), scp::Protocol::Scp02 { .. }) {
                    if let Ok(d) = self.sd_data_mut(&sd) {
                        d.seq_counter += 1;
                    }
                }
                if let Some(c) = self.channel_mut(ch) {
                    c.secure = Secure::Open { session };
                }
                Ok(Response::ok(Vec::new()))
            }
            Err(scp::Error::HostCryptogramMismatch | scp::Error::MacMismatch) => {
                if let Some(set) = self.key_set_mut(&sd, kvn) {
                    set.failures = set.failures.saturating_add(1);
                }
                Err(SW_AUTH_FAILED)
            }
            Err(scp::Error::Unsupported(_)) => Err(StatusWord::INCORRECT_P1P2),
            Err(_) => Err(StatusWord::WRONG_LENGTH),
        }
    }

    fn key_set_mut(&mut self, sd: &Aid, kvn: u8) -> Option<&mut crate::model::KeySet> {
        self.state
            .app_mut(&sd.0)?
            .sd_data_mut()?
            .key_sets
            .iter_mut()
            .find(|s| s.kvn == kvn)
    }

    pub(crate) fn sd_data_mut(&mut self, sd: &Aid) -> Sw<&mut SdData> {
        self.state
            .app_mut(&sd.0)
            .and_then(|a| a.sd_data_mut())
            .ok_or(StatusWord::UNKNOWN)
    }

    /// The security domain's registry entry.
    pub(crate) fn sd_rec(&self, sd: &Aid) -> Sw<&AppRec> {
        self.state
            .app(&sd.0)
            .filter(|a| a.is_sd())
            .ok_or(StatusWord::UNKNOWN)
    }

    /// Whether the security domain `current` may manage objects associated with `owner`:
    /// the ISD manages everything, any other security domain what is associated with it.
    pub(crate) fn manages(&self, current: &Aid, owner: &Aid) -> bool {
        current.0 == ISD_AID || current == owner
    }

    /// Whether `sd` may do content management without a token: the ISD, or a supplementary
    /// security domain with Authorized Management (GP 2.3.1 §6.6.1). Delegated Management
    /// needs a token ([`VirtualCard::authorise`]).
    pub(crate) fn has_authorized_management(&self, sd: &Aid) -> bool {
        sd.0 == ISD_AID
            || self
                .state
                .app(&sd.0)
                .is_some_and(|a| a.has(crate::model::privs::AUTHORIZED_MANAGEMENT))
    }

    /// Whether a security domain can be the target of an association (exists, is an SD,
    /// is not locked).
    pub(crate) fn usable_sd(&self, aid: &[u8]) -> bool {
        self.state
            .app(aid)
            .is_some_and(|a| a.is_sd() && (a.aid.0 == ISD_AID || !app_lc::is_locked(a.life_cycle)))
    }
}

fn into_response(r: Sw<Response>) -> Response {
    r.unwrap_or_else(Response::status)
}
