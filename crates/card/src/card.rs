//! The virtual card: the OPEN (GP 2.3.1 §6.1) — APDU dispatch, logical channels, selection,
//! hosted applets — and the persistent state.

use std::collections::HashMap;
use std::fmt;
#[cfg(not(fuzzing))]
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apdu::{Command, Response, StatusWord};
use zeroize::Zeroizing;

use crate::applet::{Applet, AppletContext, AppletFactory, Factories};
use crate::channel::{Channel, Cla, MAX_CHANNELS};
use crate::config::CardConfig;
use crate::error::CardError;
use crate::model::{
    app_lc, card_lc, privs, Aid, AppKind, AppRec, CardState, LoadFileRec, SdData, FORMAT, ISD_AID,
    SD_MODULE, SD_PACKAGE,
};
use crate::{atr, persist, sd};
use apdu::tlv::{self, Tag};

/// `6881`: logical channel not supported / not open (ISO/IEC 7816-4 §5.6).
pub(crate) const SW_CHANNEL_NOT_SUPPORTED: StatusWord = StatusWord(0x6881);
/// `6999`: applet selection failed (Java Card; also "no applet selected").
pub(crate) const SW_SELECT_FAILED: StatusWord = StatusWord(0x6999);

/// Load file, module and instance AIDs of the pre-installed PIV application
/// ([`CardConfig::with_piv`]).
pub const PIV_LOAD_FILE: &[u8] = &[0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10];
/// Module and instance AID of the pre-installed PIV application (NIST SP 800-73-4 §2.2).
pub const PIV_INSTANCE: &[u8] = &[
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];

/// A virtual GlobalPlatform 2.3.1 card.
///
/// Feed it C-APDUs with [`VirtualCard::transmit`]; it answers like a real card, including
/// secure channels, the registry and content management. With [`VirtualCard::open`] every
/// change of persistent state is written to the state file before the response is returned.
pub struct VirtualCard {
    pub(crate) state: CardState,
    path: Option<PathBuf>,
    /// The state as last committed (and written to the state file, if there is one): to
    /// detect changes and to roll back. Compared and copied as a value, so a command that
    /// changes nothing costs no serialisation.
    committed: CardState,
    pub(crate) channels: Vec<Option<Channel>>,
    pub(crate) factories: Factories,
    pub(crate) live: HashMap<Aid, Box<dyn Applet>>,
    /// Why the last save of the state file failed (cleared by the next successful one).
    save_error: Option<CardError>,
    /// Exclusive lock on `<state file>.lock`, held while the card is open: one card, one
    /// process (released when the card is dropped or the process dies).
    _lock: Option<StateLock>,
    /// The UICC toolkit's volatile state (proactive commands, SMS reassembly).
    pub(crate) toolkit: crate::uicc::Toolkit,
    /// The SCP81 admin agent's session over BIP (volatile).
    #[cfg(feature = "scp81")]
    pub(crate) admin: crate::bip::AdminAgent,
}

/// The held `flock` on `<state file>.lock`. Dropping it unlocks explicitly rather than by
/// closing the file: a child process forked by another thread between our `open` and its
/// `exec` shares the open file description (flock(2)), and closing our descriptor alone
/// would leave the card locked until that child execs.
#[derive(Debug)]
struct StateLock(std::fs::File);

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl fmt::Debug for VirtualCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualCard")
            .field("path", &self.path)
            .field("life_cycle", &format_args!("{:02X}", self.state.life_cycle))
            .field(
                "applications",
                &self.state.apps.iter().map(|a| &a.aid).collect::<Vec<_>>(),
            )
            .field(
                "load_files",
                &self
                    .state
                    .load_files
                    .iter()
                    .map(|l| &l.aid)
                    .collect::<Vec<_>>(),
            )
            .field("factories", &self.factories)
            .finish_non_exhaustive()
    }
}

impl VirtualCard {
    /// A new card in memory (nothing is persisted), in life cycle state OP_READY with the
    /// ISD selected on the basic channel.
    pub fn new(config: CardConfig) -> Self {
        Self::from_state(Self::manufacture(&config), None)
    }

    /// A second card in memory with this card's persistent state as last committed (its
    /// keys, registry and counters; no session, nothing selected beyond the default): a
    /// copy of the chip, for tests and fuzzing that want many identical cards without
    /// paying for each one's manufacture (key generation, certificates).
    pub fn copy_in_memory(&self) -> Self {
        Self::from_state(self.committed.clone(), None)
    }

    /// Opens the card stored in `state_file`, or manufactures a new one from
    /// `config_if_new` (and writes it) if the file does not exist.
    pub fn open(state_file: &Path, config_if_new: CardConfig) -> Result<Self, CardError> {
        let lock = Self::lock(state_file)?;
        let mut card = Self::open_unlocked(state_file, config_if_new)?;
        card._lock = Some(lock);
        Ok(card)
    }

    /// Takes the exclusive lock on `<state file>.lock`, or says that another process has
    /// the card. The lock goes with the process (flock), so a killed process frees it.
    fn lock(state_file: &Path) -> Result<StateLock, CardError> {
        let mut name = state_file.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| CardError::Io {
                op: "open lock file",
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(CardError::InUse {
                path: state_file.to_path_buf(),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(CardError::Io {
                op: "lock",
                path,
                source,
            }),
        }
    }

    /// A copy in memory of the card in `state_file`, read without taking the lock (the
    /// card may be running elsewhere) and never written back: to read things such as
    /// [`VirtualCard::manufacturer_ca`]. A missing file is [`CardError::BadState`].
    pub fn snapshot(state_file: &Path) -> Result<Self, CardError> {
        if !state_file.exists() {
            return Err(CardError::BadState {
                path: state_file.to_path_buf(),
                reason: "no such file".into(),
            });
        }
        let mut card = Self::open_unlocked(state_file, CardConfig::default())?;
        card.path = None;
        Ok(card)
    }

    fn open_unlocked(state_file: &Path, config_if_new: CardConfig) -> Result<Self, CardError> {
        let bad = |reason: String| CardError::BadState {
            path: state_file.to_path_buf(),
            reason,
        };
        match persist::read(state_file)? {
            None => {
                let card =
                    Self::from_state(Self::manufacture(&config_if_new), Some(state_file.into()));
                card.write_state()?;
                Ok(card)
            }
            Some(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let state: CardState =
                    serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
                if state.format != FORMAT {
                    return Err(bad(format!("unsupported format {}", state.format)));
                }
                if !state.isd().is_some_and(|a| a.is_sd()) {
                    return Err(bad("no issuer security domain".into()));
                }
                Ok(Self::from_state(state, Some(state_file.into())))
            }
        }
    }

    fn manufacture(config: &CardConfig) -> CardState {
        let isd_aid = Aid::new(ISD_AID);
        let isd = AppRec {
            aid: isd_aid.clone(),
            load_file: Aid::new(SD_PACKAGE),
            module: Aid::new(SD_MODULE),
            life_cycle: app_lc::SELECTABLE,
            privileges: privs::ISD,
            sd: isd_aid.clone(),
            install_params: Vec::new(),
            implicit_selection: None,
            kind: AppKind::SecurityDomain(SdData {
                kdd: config.kdd.to_vec(),
                key_sets: vec![config.key_set()],
                seq_counter: 1,
                data: Default::default(),
                confirmation_counter: 0,
                scp11: Default::default(),
                ota: Default::default(),
            }),
        };
        let mut load_files = vec![LoadFileRec {
            aid: Aid::new(SD_PACKAGE),
            version: vec![0x01, 0x00],
            modules: vec![Aid::new(SD_MODULE)],
            sd: isd_aid.clone(),
            rom: true,
        }];
        let mut apps = vec![isd];
        if config.with_piv {
            load_files.push(LoadFileRec {
                aid: Aid::new(PIV_LOAD_FILE),
                version: vec![0x01, 0x00],
                modules: vec![Aid::new(PIV_INSTANCE)],
                sd: isd_aid.clone(),
                rom: true,
            });
            apps.push(AppRec {
                aid: Aid::new(PIV_INSTANCE),
                load_file: Aid::new(PIV_LOAD_FILE),
                module: Aid::new(PIV_INSTANCE),
                life_cycle: app_lc::SELECTABLE,
                privileges: 0,
                sd: isd_aid,
                // The PIV serial (YubiKey GET SERIAL, CHUID) is the CPLC IC serial number
                // (CPLC bytes 12..16, GP 2.3.1 §H.6), passed as install parameters.
                install_params: {
                    let serial = config.cplc.get(12..16).unwrap_or(&[0, 0, 0, 0]);
                    let mut p = vec![0xC9, 0x04];
                    p.extend_from_slice(serial);
                    p
                },
                implicit_selection: None,
                kind: AppKind::Applet { state: None },
            });
        }
        if config.scp11 {
            if let Some(isd) = apps.first_mut().and_then(|a| a.sd_data_mut()) {
                factory_scp11b(isd, &config.cplc);
            }
        }
        if let Some(isd) = apps.first_mut().and_then(|a| a.sd_data_mut()) {
            // SCP80 keys join the key set of their version (a key set is all keys of one KVN).
            for set in config.scp80_key_sets() {
                match isd.key_sets.iter_mut().find(|s| s.kvn == set.kvn) {
                    Some(existing) => {
                        existing.keys.retain(|k| set.key(k.id).is_none());
                        existing.keys.extend(set.keys);
                        existing.keys.sort_by_key(|k| k.id);
                    }
                    None => isd.key_sets.push(set),
                }
            }
            isd.ota.agent = config.download_agent.clone().map(Box::new);
            for k in &config.scp81_psks {
                if crate::scp81::valid_psk(k.kvn, &k.psk)
                    && crate::scp81::valid_identity(&k.identity)
                {
                    isd.key_sets.retain(|s| s.kvn != k.kvn);
                    isd.key_sets.push(crate::model::KeySet {
                        kvn: k.kvn,
                        keys: vec![crate::model::StoredKey::secret(
                            crate::scp81::PSK_KID,
                            crate::model::key_type::TLS_PSK,
                            &k.psk,
                        )],
                        failures: 0,
                    });
                    isd.ota
                        .psk_identities
                        .insert(format!("{:02X}", k.kvn), apdu::hex(&k.identity));
                }
            }
        }
        CardState {
            format: FORMAT,
            life_cycle: card_lc::OP_READY,
            cplc: config.cplc.clone(),
            scp: config.protocol.scp(),
            scp_i: config.protocol.i(),
            max_auth_failures: config.max_auth_failures,
            initial_keys: config.key_set(),
            load_files,
            apps,
        }
    }

    fn from_state(state: CardState, path: Option<PathBuf>) -> Self {
        let mut card = VirtualCard {
            committed: state.clone(),
            state,
            path,
            channels: Vec::new(),
            factories: Factories::builtin(),
            live: HashMap::new(),
            save_error: None,
            _lock: None,
            toolkit: Default::default(),
            #[cfg(feature = "scp81")]
            admin: Default::default(),
        };
        card.reset();
        card
    }

    /// Makes `factory` implement the applets of every load file whose AID starts with
    /// `package_prefix` (the longest registered prefix wins). Instances already in the
    /// registry start running from their saved state the next time they are selected.
    pub fn register_applet(&mut self, package_prefix: &[u8], factory: Arc<dyn AppletFactory>) {
        self.factories.register(package_prefix, factory);
        // Instances without code may now have some.
        self.live.clear();
        self.reset_selection_only();
    }

    /// The answer-to-reset: T=1, historical bytes naming the card "Cardwright", TCK correct.
    pub fn atr(&self) -> Vec<u8> {
        atr::atr()
    }

    /// Power cycle: all secure channels, logical channels, pending LOAD or GET RESPONSE data
    /// are dropped; the default application (the ISD unless another application holds the
    /// Card Reset privilege) is selected on the basic channel. The toolkit forgets the
    /// terminal profile, the proactive commands waiting and the SMS parts received.
    pub fn reset(&mut self) {
        for a in self.live.values_mut() {
            a.deselect();
        }
        self.reset_toolkit();
        self.reset_selection_only();
    }

    fn reset_selection_only(&mut self) {
        self.channels = (0..MAX_CHANNELS).map(|_| None).collect();
        self.channels[0] = Some(Channel::default());
        if let Some(aid) = self.default_application() {
            let _ = self.do_select(0, &aid, None);
        }
        let _ = self.commit();
    }

    /// The card manufacturer CA certificate (X.509 DER) of the factory SCP11b key set: the
    /// first certificate of the ISD's chain for KID `13` KVN `01` (`None` for a card made
    /// with [`CardConfig::scp11`] off, or once that chain was replaced). A host that trusts
    /// it can check the chain GET DATA `BF21` returns before an SCP11b session.
    pub fn manufacturer_ca(&self) -> Option<Vec<u8>> {
        let data = self.state.isd()?.sd_data()?;
        let chain = data
            .scp11
            .certificates
            .get(&crate::model::key_ref(0x13, 0x01))?;
        apdu::parse_hex(chain.first()?).ok()
    }

    /// The path of the state file, if the card is persistent.
    pub fn state_file(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The card life cycle state byte (GP 2.3.1 §5.1.1, §11.1.1): `01` OP_READY, `07`
    /// INITIALIZED, `0F` SECURED, `7F` CARD_LOCKED, `FF` TERMINATED.
    pub fn life_cycle(&self) -> u8 {
        self.state.life_cycle
    }

    /// One C-APDU in, the complete R-APDU out. Never panics: malformed input gets an ISO
    /// status word (`6700` wrong length, `6E00` class not supported, …); if the state could
    /// not be saved the card answers `6581` (memory failure) and keeps the previous state;
    /// why is then logged (`tracing` error) and kept in [`VirtualCard::save_error`].
    pub fn transmit(&mut self, apdu: &[u8]) -> Vec<u8> {
        // A bug must not take the reader down: an internal panic answers 6F00 and rolls
        // back. Under cargo-fuzz panics stay visible to the fuzzer.
        // A toolkit command's volatile effects (a queued SMS carrying a counter) go with
        // the state if it is rolled back.
        let toolkit_before = Self::is_toolkit_apdu(apdu).then(|| self.toolkit.clone());
        #[cfg(not(fuzzing))]
        let resp = match catch_unwind(AssertUnwindSafe(|| self.process(apdu))) {
            Ok(r) => r,
            Err(_) => {
                self.rollback();
                if let Some(t) = toolkit_before.clone() {
                    self.toolkit = t;
                    #[cfg(feature = "scp81")]
                    self.abort_admin_session("internal error");
                }
                Response::status(StatusWord::UNKNOWN)
            }
        };
        #[cfg(fuzzing)]
        let resp = self.process(apdu);
        match self.commit() {
            Ok(()) => {
                self.save_error = None;
                resp.to_bytes()
            }
            Err(e) => {
                // The card can only say 6581; the host's log says what happened.
                tracing::error!("virtual card: {e}; the command was refused with 6581");
                self.save_error = Some(e);
                self.rollback();
                if let Some(t) = toolkit_before {
                    self.toolkit = t;
                    #[cfg(feature = "scp81")]
                    self.abort_admin_session("state not saved");
                }
                Response::status(StatusWord::MEMORY_FAILURE).to_bytes()
            }
        }
    }

    /// Why the state file could not be written at the last command that answered `6581`
    /// (memory failure), e.g. a full disk; `None` once a command saved successfully.
    pub fn save_error(&self) -> Option<&CardError> {
        self.save_error.as_ref()
    }

    /// Saves the state now, in the middle of a command (an OTA counter before the script
    /// runs). On failure the state goes back to the last save; the caller logs why and
    /// answers `6581`.
    pub(crate) fn commit_now(&mut self) -> Result<(), String> {
        self.commit().map_err(|e| {
            self.rollback();
            e.to_string()
        })
    }

    /// Saves the state if it changed since the last save.
    fn commit(&mut self) -> Result<(), CardError> {
        let ids: Vec<Aid> = self.live.keys().cloned().collect();
        for aid in ids {
            self.sync_applet_state(&aid);
        }
        if self.state == self.committed {
            return Ok(());
        }
        self.write_state()?;
        self.committed = self.state.clone();
        Ok(())
    }

    /// Writes the state to the state file, if the card has one.
    fn write_state(&self) -> Result<(), CardError> {
        let Some(p) = &self.path else {
            return Ok(());
        };
        let now = Zeroizing::new(
            serde_json::to_vec_pretty(&self.state)
                .map_err(|e| CardError::Config(format!("cannot serialise the card state: {e}")))?,
        );
        persist::write_atomic(p, &now)
    }

    /// Goes back to the last saved state (after a failed save or an internal error).
    fn rollback(&mut self) {
        self.state = self.committed.clone();
        self.live.clear();
        for c in self.channels.iter_mut().flatten() {
            c.end_session();
            c.pending.clear();
        }
    }

    fn process(&mut self, bytes: &[u8]) -> Response {
        let Ok(cmd) = Command::parse(bytes) else {
            return Response::status(StatusWord::WRONG_LENGTH);
        };
        let Some(cla) = Cla::decode(cmd.cla) else {
            return Response::status(StatusWord::CLA_NOT_SUPPORTED);
        };
        let ch = cla.channel as usize;
        if self.channel(ch).is_none() {
            return Response::status(SW_CHANNEL_NOT_SUPPORTED);
        }
        // GET RESPONSE for data the OPEN split with 61xx; otherwise it is the selected
        // application's (e.g. PIV keeps its own response buffer).
        if cmd.ins == 0xC0
            && !cla.proprietary
            && self.channel(ch).is_some_and(|c| !c.pending.is_empty())
        {
            return self.get_response(ch, &cmd);
        }
        if let Some(c) = self.channel_mut(ch) {
            c.pending.clear();
        }
        let resp = match self.toolkit_command(cla, &cmd) {
            Some(r) => r,
            None => self.process_on(ch, cla, &cmd),
        };
        let resp = self.chunk(ch, &cmd, resp);
        self.proactive_status(resp)
    }

    fn process_on(&mut self, ch: usize, cla: Cla, cmd: &Command) -> Response {
        let terminated = self.state.life_cycle == card_lc::TERMINATED;
        match (cla.proprietary, cmd.ins) {
            (false, 0x70) if terminated => Response::status(StatusWord::CONDITIONS_NOT_SATISFIED),
            (false, 0x70) => self.manage_channel(ch, cmd),
            (false, 0xA4) if cmd.p1 == 0x04 => self.select_by_name(ch, cmd),
            _ => {
                let Some(aid) = self.channel(ch).and_then(|c| c.selected.clone()) else {
                    return Response::status(SW_SELECT_FAILED);
                };
                match self.state.app(&aid.0).map(|a| a.is_sd()) {
                    Some(true) => self.sd_process(ch, cla, &aid, cmd),
                    Some(false) if terminated => Response::status(SW_SELECT_FAILED),
                    Some(false) => self.applet_process(ch, cla, &aid, cmd),
                    None => Response::status(SW_SELECT_FAILED),
                }
            }
        }
    }

    pub(crate) fn channel(&self, ch: usize) -> Option<&Channel> {
        self.channels.get(ch).and_then(|c| c.as_ref())
    }
    pub(crate) fn channel_mut(&mut self, ch: usize) -> Option<&mut Channel> {
        self.channels.get_mut(ch).and_then(|c| c.as_mut())
    }

    /// Splits a response longer than Ne: `61xx` and GET RESPONSE (ISO/IEC 7816-4 §5.3.4).
    fn chunk(&mut self, ch: usize, cmd: &Command, resp: Response) -> Response {
        let Some(ne) = cmd.le.map(|n| n as usize) else {
            return resp;
        };
        if resp.sw != StatusWord::SUCCESS || resp.data.len() <= ne {
            return resp;
        }
        let mut data = resp.data;
        let rest = data.split_off(ne);
        let sw = StatusWord::new(0x61, rest.len().min(256) as u8);
        if let Some(c) = self.channel_mut(ch) {
            c.pending = rest;
        }
        Response::new(data, sw)
    }

    /// GET RESPONSE (ISO/IEC 7816-4 §11.4.1): the next part of a long response.
    fn get_response(&mut self, ch: usize, cmd: &Command) -> Response {
        if cmd.p1 != 0 || cmd.p2 != 0 {
            return Response::status(StatusWord::WRONG_P1P2);
        }
        let Some(c) = self.channel_mut(ch) else {
            return Response::status(SW_CHANNEL_NOT_SUPPORTED);
        };
        if c.pending.is_empty() {
            return Response::status(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let ne = cmd.le.unwrap_or(256) as usize;
        let n = ne.min(c.pending.len());
        let data: Vec<u8> = c.pending.drain(..n).collect();
        let sw = if c.pending.is_empty() {
            StatusWord::SUCCESS
        } else {
            StatusWord::new(0x61, c.pending.len().min(256) as u8)
        };
        Response::new(data, sw)
    }

    /// MANAGE CHANNEL (ISO/IEC 7816-4 §11.1.2; GP 2.3.1 §11.7).
    fn manage_channel(&mut self, ch: usize, cmd: &Command) -> Response {
        if !cmd.data.is_empty() {
            return Response::status(StatusWord::WRONG_LENGTH);
        }
        match cmd.p1 {
            0x00 => {
                let (target, data) = if cmd.p2 == 0 {
                    match (1..MAX_CHANNELS).find(|&n| self.channels[n].is_none()) {
                        Some(n) => (n, vec![n as u8]),
                        None => return Response::status(StatusWord::FUNC_NOT_SUPPORTED),
                    }
                } else {
                    let n = cmd.p2 as usize;
                    if n >= MAX_CHANNELS {
                        return Response::status(StatusWord::INCORRECT_P1P2);
                    }
                    if self.channels[n].is_some() {
                        return Response::status(StatusWord::CONDITIONS_NOT_SATISFIED);
                    }
                    (n, Vec::new())
                };
                // From the basic channel the new channel gets the default application; from
                // another channel, the application selected there (ISO/IEC 7816-4 §7.1.2).
                let app = if ch == 0 {
                    self.default_application()
                } else {
                    self.channel(ch).and_then(|c| c.selected.clone())
                };
                self.channels[target] = Some(Channel::default());
                if let Some(aid) = app {
                    let _ = self.do_select(target, &aid, None);
                }
                Response::ok(data)
            }
            0x80 => {
                let target = if cmd.p2 == 0 { ch } else { cmd.p2 as usize };
                if target == 0 {
                    return Response::status(StatusWord::FUNC_NOT_SUPPORTED);
                }
                if target >= MAX_CHANNELS || self.channels[target].is_none() {
                    return Response::status(SW_CHANNEL_NOT_SUPPORTED);
                }
                self.deselect(target);
                self.channels[target] = None;
                Response::ok(Vec::new())
            }
            _ => Response::status(StatusWord::INCORRECT_P1P2),
        }
    }

    /// The application selected at reset: the selectable holder of the Card Reset privilege,
    /// else the ISD (GP 2.3.1 §6.6.1, §6.6.2).
    pub(crate) fn default_application(&self) -> Option<Aid> {
        let lc = self.state.life_cycle;
        if lc != card_lc::CARD_LOCKED && lc != card_lc::TERMINATED {
            if let Some(a) =
                self.state.apps.iter().find(|a| {
                    a.aid.0 != ISD_AID && a.has(privs::CARD_RESET) && self.is_selectable(a)
                })
            {
                return Some(a.aid.clone());
            }
        }
        self.state.isd().map(|a| a.aid.clone())
    }

    pub(crate) fn is_selectable(&self, a: &AppRec) -> bool {
        a.aid.0 == ISD_AID || app_lc::is_selectable(a.life_cycle)
    }

    /// SELECT by DF name (ISO/IEC 7816-4 §11.2.2; GP 2.3.1 §11.9), handled by the OPEN.
    fn select_by_name(&mut self, ch: usize, cmd: &Command) -> Response {
        if cmd.p2 & 0xF1 != 0 {
            return Response::status(StatusWord::INCORRECT_P1P2);
        }
        let next = cmd.p2 & 0x02 != 0;
        let lc = self.state.life_cycle;
        let target = if cmd.data.is_empty() && !next {
            self.default_application()
        } else if cmd.data.len() > 16 {
            None
        } else {
            let current = self.channel(ch).and_then(|c| c.selected.clone());
            let candidates: Vec<&AppRec> = self
                .state
                .apps
                .iter()
                .filter(|a| a.aid.0.starts_with(&cmd.data) && self.is_selectable(a))
                .collect();
            let start = match (&current, next) {
                (Some(cur), true) => candidates
                    .iter()
                    .position(|a| &a.aid == cur)
                    .map_or(0, |i| i + 1),
                _ => 0,
            };
            candidates.get(start).map(|a| a.aid.clone())
        };
        let Some(aid) = target else {
            return Response::status(StatusWord::FILE_NOT_FOUND);
        };
        if aid.0 != ISD_AID {
            if lc == card_lc::TERMINATED {
                return Response::status(StatusWord::FILE_NOT_FOUND);
            }
            if lc == card_lc::CARD_LOCKED
                && !self
                    .state
                    .app(&aid.0)
                    .is_some_and(|a| a.has(privs::FINAL_APPLICATION))
            {
                // GP 2.3.1 §11.9 SELECT error conditions: 6A81, card is CARD_LOCKED.
                return Response::status(StatusWord::FUNC_NOT_SUPPORTED);
            }
        }
        self.do_select(ch, &aid, Some(cmd))
    }

    /// Makes `aid` the selected application of channel `ch`. `cmd` is the SELECT received,
    /// or `None` for an implicit selection (reset, MANAGE CHANNEL).
    pub(crate) fn do_select(&mut self, ch: usize, aid: &Aid, cmd: Option<&Command>) -> Response {
        self.deselect(ch);
        let Some(app) = self.state.app(&aid.0) else {
            return Response::status(StatusWord::FILE_NOT_FOUND);
        };
        let p2 = cmd.map_or(0, |c| c.p2);
        if app.is_sd() {
            let fci = sd::fci(&self.state, app);
            if let Some(c) = self.channel_mut(ch) {
                c.selected = Some(aid.clone());
            }
            return Response::ok(if p2 & 0x0C == 0x0C { Vec::new() } else { fci });
        }
        let implicit;
        let select = match cmd {
            Some(c) => c,
            None => {
                implicit = Command::new(0x00, 0xA4, 0x04, 0x00)
                    .with_data(aid.0.clone())
                    .with_le(256);
                &implicit
            }
        };
        let ctx_lc = app.life_cycle;
        let resp = match self.live_applet(aid) {
            None => Response::status(SW_SELECT_FAILED),
            Some(applet) => {
                let ctx = AppletContext {
                    aid: &aid.0,
                    channel: ch as u8,
                    life_cycle: ctx_lc,
                };
                applet.select(&ctx, select)
            }
        };
        self.sync_applet_state(aid);
        if resp.sw == StatusWord::SUCCESS || resp.sw.sw1() == 0x61 {
            if let Some(c) = self.channel_mut(ch) {
                c.selected = Some(aid.clone());
            }
        }
        resp
    }

    /// Deselects whatever channel `ch` has selected and ends its sessions.
    pub(crate) fn deselect(&mut self, ch: usize) {
        let Some(c) = self.channel_mut(ch) else {
            return;
        };
        c.end_session();
        if let Some(old) = c.selected.take() {
            if let Some(a) = self.live.get_mut(&old) {
                a.deselect();
            }
            self.sync_applet_state(&old);
        }
    }

    /// The running instance of an applet, created or restored on first use.
    pub(crate) fn live_applet(&mut self, aid: &Aid) -> Option<&mut Box<dyn Applet>> {
        if !self.live.contains_key(aid) {
            let app = self.state.app(&aid.0)?;
            let factory = self.factories.find(&app.load_file.0)?.clone();
            let applet = match &app.kind {
                AppKind::Applet { state: Some(s) } => factory.restore(&aid.0, s).ok()?,
                AppKind::Applet { state: None } => {
                    let c9 = app_params(&app.install_params);
                    factory.install(&app.module.0, &aid.0, &c9).ok()?
                }
                AppKind::SecurityDomain(_) => return None,
            };
            self.live.insert(aid.clone(), applet);
            self.sync_applet_state(aid);
        }
        self.live.get_mut(aid)
    }

    /// Copies a live applet's state into the registry (saved by the next commit).
    pub(crate) fn sync_applet_state(&mut self, aid: &Aid) {
        let Some(a) = self.live.get_mut(aid) else {
            return;
        };
        let fresh = matches!(
            self.state.app(&aid.0).map(|r| &r.kind),
            Some(AppKind::Applet { state: None })
        );
        if !a.changed() && !fresh {
            return;
        }
        let s = a.state();
        if let Some(AppRec {
            kind: AppKind::Applet { state },
            ..
        }) = self.state.app_mut(&aid.0)
        {
            if state.as_ref() != Some(&s) {
                *state = Some(s);
            }
        }
    }

    fn applet_process(&mut self, ch: usize, cla: Cla, aid: &Aid, cmd: &Command) -> Response {
        let Some(lc) = self.state.app(&aid.0).map(|a| a.life_cycle) else {
            return Response::status(SW_SELECT_FAILED);
        };
        if app_lc::is_locked(lc) {
            return Response::status(SW_SELECT_FAILED);
        }
        let mut plain = cmd.clone();
        plain.cla = cla.on_basic_channel();
        let Some(applet) = self.live_applet(aid) else {
            return Response::status(SW_SELECT_FAILED);
        };
        let ctx = AppletContext {
            aid: &aid.0,
            channel: ch as u8,
            life_cycle: lc,
        };
        let resp = applet.process(&ctx, &plain);
        self.sync_applet_state(aid);
        resp
    }

    /// Forgets the running instance of a deleted application and any channel using it.
    pub(crate) fn forget_app(&mut self, aid: &Aid) {
        self.live.remove(aid);
        for c in self.channels.iter_mut().flatten() {
            if c.selected.as_ref() == Some(aid) {
                c.selected = None;
                c.end_session();
            }
            if c.perso.as_ref() == Some(aid) {
                c.perso = None;
            }
        }
    }

    /// Whether `aid` is selected on any logical channel (the OTA slot, which keeps its SD
    /// between remote scripts, is not one).
    pub(crate) fn is_selected_anywhere(&self, aid: &Aid) -> bool {
        self.channels
            .iter()
            .take(MAX_CHANNELS)
            .flatten()
            .any(|c| c.selected.as_ref() == Some(aid))
    }
}

/// The application-specific parameters (tag `C9`) of an install parameters field
/// (GP 2.3.1 §11.5, Table 11-49); empty when absent or malformed.
pub(crate) fn app_params(install_params: &[u8]) -> Vec<u8> {
    tlv::parse_all(install_params)
        .ok()
        .and_then(|objs| tlv::find(&objs, Tag::new(0xC9)).map(|t| t.value.clone()))
        .unwrap_or_default()
}

/// The factory SCP11b key set (see [`CardConfig::scp11`]): SK.SD under KID `13` KVN `01`,
/// and the chain [manufacturer CA, SD certificate] in the certificate store.
fn factory_scp11b(isd: &mut SdData, cplc: &[u8]) {
    use crate::model::{key_ref, key_type, KeySet, StoredKey};
    use scp::scp11::{Curve, PrivateKey};
    let (Ok(ca), Ok(sd)) = (
        PrivateKey::generate(Curve::P256),
        PrivateKey::generate(Curve::P256),
    ) else {
        return;
    };
    let serial = cplc.get(12..16).map(apdu::hex).unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut ca_serial = [0u8; 8];
    let _ = getrandom_fill(&mut ca_serial);
    ca_serial[0] &= 0x7F;
    ca_serial[0] |= 0x01;
    let Some([ca_cert, sd_cert]) = crate::x509::factory_chain(
        &crate::x509::FactoryNames {
            organisation: "Cardwright virtual card",
            ca: &format!("Cardwright SCP11 card manufacturer CA {serial}"),
            sd: &format!("SD {serial} SCP11b KID 13 KVN 01"),
        },
        &ca,
        &ca_serial,
        sd.public_key(),
        &[0x01, 0x13, 0x01],
        now.saturating_sub(60),
    ) else {
        return;
    };
    isd.key_sets.push(KeySet {
        kvn: 0x01,
        keys: vec![StoredKey {
            curve: Some(Curve::P256.param_ref()),
            ..StoredKey::secret(0x13, key_type::ECC_PRIVATE, sd.expose_scalar())
        }],
        failures: 0,
    });
    isd.scp11.certificates.insert(
        key_ref(0x13, 0x01),
        vec![apdu::hex(&ca_cert), apdu::hex(&sd_cert)],
    );
}

fn getrandom_fill(b: &mut [u8]) -> Result<(), ()> {
    let k = scp::random_challenge(b.len()).map_err(|_| ())?;
    b.copy_from_slice(&k);
    Ok(())
}
