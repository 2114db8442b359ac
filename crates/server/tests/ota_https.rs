//! The OTA service's HTTPS bearer (SCP81, GP Amendment B) in process, with faults: a real
//! `scp81::AdminServer` on 127.0.0.1 whose PSKs come from `OtaService::psk_store`, an
//! `OtaService` over a `MemoryGateway`, and a real `card::VirtualCard` (SCP80 keys and PSK
//! derived by the platform) behind a small in-test handset: MT SMS → ENVELOPE (SMS-PP
//! download), SEND SHORT MESSAGE → MO SMS to the service, the card's BIP commands on a real
//! TCP socket to the admin server. Time-outs are short and run by the tests
//! (`run_due_timeouts`). What the card holds is read through an independent SCP03 channel.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apdu::{Command, Response, StatusWord};
use card::{CardConfig, DownloadAgent, MenuEntry, VirtualCard, VirtualChannel};
use kms::{KeyStore, MasterKey};
use ota::cat::{
    self, CatResult, ChannelStatus, CommandBody, Envelope, Event, OtherAddress, ProactiveCommand,
    ResultCode, TerminalProfile, TerminalResponse,
};
use ota::tpdu::{Address, Dcs, Pid, SmsDeliver, Timestamp, UserData};
use server::ota::{HttpsBearer, MemoryGateway, OtaService, Sms};
use tsm::ota::engine::{Engine, EngineConfig};
use tsm::ota::scp81::{psk_identity, HttpsEndpoint, PSK_KVN};
use tsm::ota::{Bearer, CatalogEntry, Direction, Message, Origin, Session, SessionState};
use tsm::{Actor, Store};

use tsm::ota::testing::{CARD, ICCID, MSISDN};
const PLATFORM: &str = "+4900";
/// How long any wait of a test may take before it fails.
const LIMIT: Duration = Duration::from_secs(30);

/// The platform's database and key store (`tsm::ota::testing`): a written card enrolled
/// for OTA, a package and its catalog entry.
struct Platform {
    _dir: tempfile::TempDir,
    store: Store,
    keys: Arc<dyn KeyStore>,
    entry: CatalogEntry,
}

fn platform(cap_bytes: usize) -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let p = tsm::ota::testing::platform(dir.path(), MasterKey::generate().unwrap(), cap_bytes);
    Platform {
        _dir: dir,
        store: p.store,
        keys: Arc::new(p.keys),
        entry: p.entry,
    }
}

impl Platform {
    fn session(&self, id: i64) -> Session {
        self.store.ota_session(id).unwrap().unwrap()
    }
    fn newest(&self) -> Option<Session> {
        self.store.ota_sessions(CARD, 1).unwrap().into_iter().next()
    }
    fn messages(&self, id: i64) -> Vec<Message> {
        self.store.ota_messages(id).unwrap()
    }
    /// The triggers of a session as sent (`sent` / `resent`), with their counters.
    fn triggers(&self, id: i64) -> Vec<(u64, String)> {
        self.messages(id)
            .iter()
            .filter(|m| m.direction == Direction::Mt && m.kind == "trigger")
            .map(|m| (m.counter.unwrap(), m.status.clone()))
            .collect()
    }
    fn responses(&self, id: i64) -> usize {
        self.messages(id)
            .iter()
            .filter(|m| m.kind == "https-response")
            .count()
    }
    /// How the session's HTTPS sessions ended (or that the card did not come), in order.
    fn ended(&self, id: i64) -> Vec<String> {
        self.messages(id)
            .iter()
            .filter(|m| m.kind == "https-session")
            .map(|m| m.status.clone())
            .collect()
    }
    fn finished(&self, id: i64) -> bool {
        !matches!(
            self.session(id).state,
            SessionState::Pending | SessionState::Running
        )
    }
    /// The card with the keys the platform derives for it (SCP80 key set, PSK under
    /// [`PSK_KVN`] with the ICCID as identity) and the download agent's menu; `psk_fault`
    /// flips a bit of the PSK.
    fn card_config(&self, psk_fault: bool) -> CardConfig {
        let engine = Engine::new(
            self.store.clone(),
            self.keys.clone(),
            EngineConfig::default(),
        );
        let c = self.store.ota_card(CARD).unwrap().unwrap();
        let k = engine.card_keys(&c).unwrap();
        let mut psk = engine.card_psk(&c).unwrap().to_vec();
        if psk_fault {
            psk[0] ^= 1;
        }
        let key =
            |k: &Option<ota::packet::Key>| scp::Key::aes(k.as_ref().unwrap().expose()).unwrap();
        CardConfig::default()
            .with_scp81_psk(PSK_KVN, &psk_identity(ICCID), &psk)
            .with_scp80_keys(k.kvn, key(&k.keys.kic), key(&k.keys.kid))
            .with_download_agent(DownloadAgent::new(
                PLATFORM,
                k.kvn,
                "Get apps",
                vec![MenuEntry::new("wallet", "Wallet")],
            ))
    }
}

/// The OTA service with its admin server on a runtime of its own.
struct Service {
    svc: Arc<OtaService>,
    gw: Arc<MemoryGateway>,
    queue: scp81::AdminQueue,
    reports: Arc<Mutex<Vec<scp81::SessionReport>>>,
    /// MT SMS already handed to the handset.
    seen: usize,
    _rt: tokio::runtime::Runtime,
}

/// Short time-outs: PoR 1 s, HTTPS wait 2 s, 3 sends; downloads above 1 SMS over HTTPS.
fn config() -> EngineConfig {
    EngineConfig {
        max_sends: 3,
        por_timeout: Duration::from_secs(1),
        https_wait: Duration::from_secs(2),
        ..EngineConfig::default()
    }
}

fn service(p: &Platform, mut config: EngineConfig, above_sms: usize) -> Service {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let queue = scp81::AdminQueue::new();
    let lookup = Engine::new(p.store.clone(), p.keys.clone(), EngineConfig::default());
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let server = rt
        .block_on(scp81::AdminServer::bind(
            "127.0.0.1:0",
            scp81::ServerConfig::default(),
            OtaService::psk_store(lookup),
            queue.clone(),
        ))
        .unwrap()
        .with_audit(move |r| sink.lock().unwrap().push(r.clone()));
    let address = server.local_addr().unwrap();
    rt.spawn(async move {
        let _ = server.run().await;
    });
    config.https = Some(HttpsEndpoint { address, above_sms });
    let engine = Engine::new(p.store.clone(), p.keys.clone(), config);
    let gw = Arc::new(MemoryGateway::default());
    let svc = OtaService::new(
        engine,
        gw.clone(),
        Some(HttpsBearer {
            queue: queue.clone(),
            runtime: rt.handle().clone(),
        }),
    );
    Service {
        svc,
        gw,
        queue,
        reports,
        seen: 0,
        _rt: rt,
    }
}

impl Service {
    fn sent(&self) -> usize {
        self.gw.sent.lock().unwrap().len()
    }
    /// `ota push` of the wallet over HTTPS, sent at once.
    fn push(&self) -> Session {
        let (s, out) = self
            .svc
            .engine()
            .push(&Actor::new("acme", "op"), ICCID, "wallet", Bearer::Https)
            .unwrap();
        self.svc.send(&out).unwrap();
        s
    }
    fn outcomes(&self) -> Vec<String> {
        self.reports
            .lock()
            .unwrap()
            .iter()
            .map(|r| format!("{:?}", r.outcome))
            .collect()
    }
}

/// What the handset saw.
#[derive(Debug, Default)]
struct Trace {
    mt: usize,
    mo: usize,
    mo_dropped: usize,
    opens: usize,
    refused_opens: usize,
    cuts: usize,
    mo_errors: Vec<String>,
}

/// The phone: the card, its menu and one BIP channel on a real TCP socket. The BIP part
/// follows the in-test handset of `crates/card/tests/scp81.rs` (blocking sockets here);
/// SMS as `crates/cardwright/src/handset_phone.rs` does it.
struct Handset {
    ch: VirtualChannel,
    menu: Vec<(u8, String)>,
    sock: Option<TcpStream>,
    rx: VecDeque<u8>,
    announced: bool,
    open: bool,
    eof: bool,
    /// Faults: MO SMS to drop, OPEN CHANNEL refused, the TCP connection cut when this
    /// says so.
    drop_mo: usize,
    refuse_open: bool,
    cut_when: Option<Box<dyn FnMut() -> bool>>,
    /// Fault: the bytes from the server wait (the card's session stalls) while this
    /// says so.
    hold_bip: Option<Box<dyn FnMut() -> bool>>,
    trace: Trace,
}

impl Handset {
    fn new(config: CardConfig) -> Handset {
        let mut h = Handset {
            ch: VirtualChannel::new(VirtualCard::new(config)),
            menu: Vec::new(),
            sock: None,
            rx: VecDeque::new(),
            announced: false,
            open: false,
            eof: false,
            drop_mo: 0,
            refuse_open: false,
            cut_when: None,
            hold_bip: None,
            trace: Trace::default(),
        };
        let r = h.apdu(
            &Command::new(cat::CLA_TOOLKIT, cat::INS_TERMINAL_PROFILE, 0, 0)
                .with_data(TerminalProfile::ota_handset(1).bytes().to_vec()),
        );
        h.proactive(r.sw, None);
        assert!(!h.menu.is_empty(), "the download agent's menu is up");
        h
    }

    fn apdu(&self, c: &Command) -> Response {
        Response::parse(&self.ch.card().transmit(&c.to_bytes().unwrap())).unwrap()
    }

    fn envelope(&mut self, env: Envelope, svc: Option<&OtaService>) -> Response {
        let r = self.apdu(
            &Command::new(cat::CLA_TOOLKIT, cat::INS_ENVELOPE, 0, 0)
                .with_data(env.encode().unwrap())
                .with_le(256),
        );
        self.proactive(r.sw, svc);
        r
    }

    /// FETCH and carry out proactive commands while the card has some.
    fn proactive(&mut self, mut sw: StatusWord, svc: Option<&OtaService>) {
        while let Some(len) = cat::proactive_command_pending(sw.0) {
            let le = if len == 0 { 256 } else { u32::from(len) };
            let f = self.apdu(&Command::new(cat::CLA_TOOLKIT, cat::INS_FETCH, 0, 0).with_le(le));
            assert_eq!(f.sw, StatusWord::SUCCESS, "FETCH");
            let cmd = ProactiveCommand::decode(&f.data).unwrap();
            let tr = self.act(&cmd, svc);
            sw = self
                .apdu(
                    &Command::new(cat::CLA_TOOLKIT, cat::INS_TERMINAL_RESPONSE, 0, 0)
                        .with_data(tr.encode().unwrap()),
                )
                .sw;
        }
    }

    fn act(&mut self, cmd: &ProactiveCommand, svc: Option<&OtaService>) -> TerminalResponse {
        let mut tr = TerminalResponse::new(cmd, CatResult::success());
        match &cmd.body {
            CommandBody::SetUpMenu(m) => {
                self.menu = m.items.iter().map(|i| (i.id, i.text.text())).collect();
            }
            CommandBody::SendShortMessage(s) => {
                let t = &s.tpdu;
                let (_, ud) = t.user_data.encode(t.dcs).unwrap();
                let sms = Sms {
                    msisdn: MSISDN.into(),
                    user_data: ud,
                    pid: t.pid.0,
                    dcs: t.dcs.0,
                    esm_class: if t.user_data.header.is_some() {
                        0x40
                    } else {
                        0
                    },
                };
                self.mo(&sms, svc);
            }
            CommandBody::OpenChannel(o) => {
                self.trace.opens += 1;
                let (Some(OtherAddress::Ipv4(ip)), Some(port)) =
                    (&o.destination, o.transport.as_ref().and_then(|t| t.port))
                else {
                    panic!("OPEN CHANNEL without an IPv4 destination and port: {o:?}")
                };
                let connected = if self.refuse_open {
                    None
                } else {
                    TcpStream::connect_timeout(&(*ip, port).into(), Duration::from_secs(5)).ok()
                };
                match connected {
                    Some(s) => {
                        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
                        self.sock = Some(s);
                        self.open = true;
                        self.eof = false;
                        self.rx.clear();
                        self.announced = false;
                        tr.channel_status = Some(ChannelStatus::new(1, true, 0));
                        tr.bearer = Some(o.bearer.clone());
                        tr.buffer_size = Some(o.buffer_size);
                    }
                    None => {
                        self.trace.refused_opens += 1;
                        // BIP error: no channel available.
                        tr.result = CatResult::new(ResultCode::BIP_ERROR, vec![0x01]);
                    }
                }
            }
            CommandBody::SendData(d) => {
                let written = self.sock.as_mut().map(|s| s.write_all(&d.data).is_ok());
                if written == Some(true) {
                    tr.channel_data_length = Some(0xFF);
                } else {
                    tr.result = CatResult::new(ResultCode::BIP_ERROR, vec![0x02]);
                }
            }
            CommandBody::ReceiveData(r) => {
                let n = usize::from(r.length).min(self.rx.len());
                let data: Vec<u8> = self.rx.drain(..n).collect();
                if self.rx.is_empty() {
                    self.announced = false;
                }
                tr.channel_data = Some(data);
                tr.channel_data_length = Some(self.rx.len().min(255) as u8);
            }
            CommandBody::CloseChannel(_) => {
                if let Some(s) = self.sock.take() {
                    let _ = s.shutdown(Shutdown::Both);
                }
                self.open = false;
                self.eof = false;
                self.rx.clear();
            }
            _ => {} // SET UP EVENT LIST, MORE TIME…: done
        }
        tr
    }

    /// An MO SMS to the service (unless a fault drops it).
    fn mo(&mut self, sms: &Sms, svc: Option<&OtaService>) {
        if self.drop_mo > 0 {
            self.drop_mo -= 1;
            self.trace.mo_dropped += 1;
            return;
        }
        let svc = svc.expect("an MO SMS with no service to take it");
        self.trace.mo += 1;
        if let Err(e) = svc.on_sms(sms) {
            self.trace.mo_errors.push(e);
        }
    }

    /// An MT SMS: ENVELOPE (SMS-PP download); a PoR in the answer goes back as MO.
    fn mt(&mut self, sms: &Sms, svc: &OtaService) {
        self.trace.mt += 1;
        let dcs = Dcs(sms.dcs);
        let ud = UserData::decode(
            sms.esm_class & 0x40 != 0,
            dcs,
            sms.user_data.len() as u8,
            &sms.user_data,
        )
        .unwrap();
        let ts = Timestamp {
            year: 26,
            month: 12,
            day: 4,
            hour: 12,
            minute: 0,
            second: 0,
            tz_quarters: 0,
        };
        let mut deliver = SmsDeliver::ota(Address::international("4900"), ts, ud);
        deliver.pid = Pid::SIM_DATA_DOWNLOAD;
        let r = self.envelope(Envelope::sms_pp(None, deliver), Some(svc));
        if r.data.is_empty() {
            return;
        }
        let outcome = cat::sms_pp_outcome(&r.data, r.sw.0);
        let report = outcome.deliver_report(Pid::SIM_DATA_DOWNLOAD, dcs);
        if let Some(u) = report.and_then(|r| r.parameters.user_data) {
            let (_, bytes) = u.encode(dcs).unwrap();
            let sms = Sms {
                msisdn: MSISDN.into(),
                user_data: bytes,
                pid: Pid::SIM_DATA_DOWNLOAD.0,
                dcs: dcs.0,
                esm_class: if u.header.is_some() { 0x40 } else { 0 },
            };
            self.mo(&sms, Some(svc));
        }
    }

    /// The user picks `text` in the download agent's menu.
    fn select(&mut self, text: &str, svc: &OtaService) {
        let id = self
            .menu
            .iter()
            .find(|(_, t)| t == text)
            .unwrap_or_else(|| panic!("no menu item {text}: {:?}", self.menu))
            .0;
        self.envelope(
            Envelope::MenuSelection {
                item: id,
                help_request: false,
            },
            Some(svc),
        );
    }

    /// One round of the BIP relay: bytes from the socket, data available, link drops, the
    /// cut fault. Returns whether anything happened.
    fn pump(&mut self, svc: &OtaService) -> bool {
        if let Some(hold) = self.hold_bip.as_mut() {
            if hold() {
                return false;
            }
            self.hold_bip = None;
        }
        if self.sock.is_some() && self.cut_when.as_mut().is_some_and(|f| f()) {
            self.cut_when = None;
            self.trace.cuts += 1;
            if let Some(s) = self.sock.take() {
                let _ = s.shutdown(Shutdown::Both);
            }
            self.rx.clear();
            self.eof = true;
        }
        if let Some(s) = self.sock.as_mut() {
            let mut buf = [0u8; 4096];
            match s.read(&mut buf) {
                Ok(0) => {
                    self.sock = None;
                    self.eof = true;
                }
                Ok(n) => self.rx.extend(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => {
                    self.sock = None;
                    self.eof = true;
                }
            }
        }
        if !self.open {
            return false;
        }
        if !self.rx.is_empty() && !self.announced {
            self.announced = true;
            let length = self.rx.len().min(255) as u8;
            self.envelope(
                Envelope::EventDownload(Event::DataAvailable {
                    status: ChannelStatus::new(1, true, 0),
                    length,
                }),
                Some(svc),
            );
            return true;
        }
        if self.eof && self.rx.is_empty() {
            self.eof = false;
            self.envelope(
                Envelope::EventDownload(Event::ChannelStatus {
                    status: ChannelStatus::new(1, false, 5),
                    other: Vec::new(),
                }),
                Some(svc),
            );
            return true;
        }
        if self.sock.is_none() {
            // The link is down: the card's CLOSE CHANNEL (SELECT answers 91xx when a
            // command waits), as in crates/card/tests/scp81.rs.
            let r =
                self.apdu(&Command::new(0x00, 0xA4, 0x04, 0x00).with_data(card::ISD_AID.to_vec()));
            self.proactive(r.sw, Some(svc));
            return true;
        }
        false
    }

    /// Runs the phone (MT SMS from the gateway, the BIP relay) and, with `timeouts`, the
    /// service's due time-outs, until `done` holds.
    fn run_until(
        &mut self,
        s: &mut Service,
        timeouts: bool,
        what: &str,
        mut done: impl FnMut() -> bool,
    ) {
        let t0 = Instant::now();
        loop {
            if done() {
                return;
            }
            assert!(
                t0.elapsed() < LIMIT,
                "not {what} in {LIMIT:?}: handset {:?}, admin sessions {:?}",
                self.trace,
                s.outcomes()
            );
            let mt: Vec<Sms> = s.gw.sent.lock().unwrap()[s.seen..].to_vec();
            s.seen += mt.len();
            for sms in &mt {
                self.mt(sms, &s.svc);
            }
            let busy = self.pump(&s.svc);
            if timeouts {
                s.svc.run_due_timeouts().unwrap();
            }
            if !busy && mt.is_empty() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// The card's registry through an independent GP channel (SCP03, the card's own keys),
/// as in `crates/cardwright/tests/ota_e2e.rs`.
fn registry(ch: &VirtualChannel) -> gpclient::ops::Registry {
    let mut client = gpclient::GpClient::new(transport::Traced::new(ch.clone(), None));
    client
        .open_secure_channel(&gpclient::OpenOptions {
            keys: gpclient::KeySpec::same(
                &gpclient::DEFAULT_TEST_KEY,
                scp::Diversification::None,
                0,
            ),
            level: scp::SecurityLevel::MAC,
            scp: None,
            sd: None,
        })
        .unwrap();
    gpclient::ops::registry(&mut client).unwrap()
}

/// The application is on the card, in its SD, with exactly one SD.
fn assert_installed(h: &Handset, entry: &CatalogEntry) {
    let reg = registry(&h.ch);
    let sd = reg.find(&entry.sd).expect("the SD");
    assert!(sd
        .privileges
        .is_some_and(|p| p.contains(gp::privileges::Privilege::SecurityDomain)));
    let app = reg.find(&entry.instance).expect("the instance");
    assert_eq!(app.associated_sd, Some(entry.sd), "extradited to its SD");
    assert!(reg.find(&entry.package).is_some(), "the load file");
    let sds = reg
        .applications
        .iter()
        .filter(|e| e.aid == entry.sd)
        .count();
    assert_eq!(sds, 1, "one SD");
}

fn assert_not_installed(h: &Handset, entry: &CatalogEntry) {
    let reg = registry(&h.ch);
    assert!(reg.find(&entry.instance).is_none(), "nothing installed");
    assert!(reg.find(&entry.package).is_none(), "no load file");
}

const CAP: usize = 8 * 1024;

#[test]
fn push_over_https_creates_the_sd_and_installs_then_a_second_push_sends_nothing() {
    let p = platform(CAP);
    let mut s = service(&p, config(), 1);
    let mut h = Handset::new(p.card_config(false));
    let session = s.push();
    assert_eq!(session.bearer, Bearer::Https);
    assert_eq!(session.state, SessionState::Running, "{}", session.detail);
    let id = session.id;
    h.run_until(&mut s, true, "done", || p.finished(id));

    let done = p.session(id);
    assert_eq!(done.state, SessionState::Done, "{}", done.detail);
    assert!(done.detail.contains("over HTTPS"), "{}", done.detail);
    assert!(done.detail.contains("PK.SD"), "{}", done.detail);
    // Create-SD is two scripts (INSTALL to the ISD, GENERATE EC KEY to the SD), then the
    // load.
    assert_eq!((done.step, done.steps), (3, 3));
    // The log: the plan, one trigger by SMS and its PoR, one response per script.
    let kinds: Vec<(Direction, String)> = p
        .messages(id)
        .iter()
        .map(|m| (m.direction, m.kind.clone()))
        .collect();
    let count = |k: &str| kinds.iter().filter(|(_, x)| x == k).count();
    assert_eq!(count("https-create-sd"), 2, "{kinds:?}");
    assert_eq!(count("https-script"), 1, "{kinds:?}");
    assert_eq!(p.triggers(id).len(), 1, "{kinds:?}");
    assert_eq!(count("https-response"), 3, "{kinds:?}");
    assert_eq!(count("sd-public-key"), 1, "{kinds:?}");
    assert!(kinds.contains(&(Direction::Mo, "por".into())), "{kinds:?}");
    assert_eq!(s.sent(), 1, "one SMS: the trigger");
    assert!(s.queue.is_empty());
    assert_eq!(s.outcomes(), ["Completed"]);
    assert!(h.trace.mo_errors.is_empty(), "{:?}", h.trace);
    // Time-outs falling due afterwards change nothing.
    std::thread::sleep(Duration::from_millis(2100));
    s.svc.run_due_timeouts().unwrap();
    assert_eq!(s.sent(), 1);
    assert_eq!(p.session(id).state, SessionState::Done);
    assert_installed(&h, &p.entry);

    // Again: installed already, nothing queued, nothing sent.
    let again = s.push();
    assert_eq!(again.state, SessionState::Done, "{}", again.detail);
    assert_eq!(again.detail, "already installed");
    assert!(s.queue.is_empty());
    assert_eq!(s.sent(), 1);
    assert!(p.messages(again.id).is_empty());
    assert_installed(&h, &p.entry);
}

#[test]
fn a_card_request_goes_over_https_above_the_sms_threshold_and_by_sms_below() {
    for (above_sms, bearer) in [(1, Bearer::Https), (100_000, Bearer::Sms)] {
        let p = platform(CAP);
        let mut s = service(&p, config(), above_sms);
        let mut h = Handset::new(p.card_config(false));
        h.select("Wallet", &s.svc);
        let session = p.newest().expect("a session from the card's request");
        assert_eq!(session.bearer, bearer, "above {above_sms} SMS: {session:?}");
        assert_eq!(session.origin, Origin::Card);
        let id = session.id;
        h.run_until(&mut s, true, "done", || p.finished(id));
        let done = p.session(id);
        assert_eq!(done.state, SessionState::Done, "{}", done.detail);
        let https_kinds = p
            .messages(id)
            .iter()
            .filter(|m| m.kind.starts_with("https-") || m.kind == "trigger")
            .count();
        match bearer {
            Bearer::Https => {
                assert!(done.detail.contains("over HTTPS"), "{}", done.detail);
                assert_eq!(p.triggers(id).len(), 1);
                assert_eq!(s.sent(), 1, "by SMS only the trigger");
                assert_eq!(s.outcomes(), ["Completed"]);
            }
            Bearer::Sms => {
                assert!(!done.detail.contains("HTTPS"), "{}", done.detail);
                assert_eq!(https_kinds, 0, "no HTTPS in an SMS session");
                assert!(s.sent() > 10, "the CAP went by SMS: {}", s.sent());
                assert!(s.outcomes().is_empty(), "no card connected");
            }
        }
        assert!(h.trace.mo_errors.is_empty(), "{:?}", h.trace);
        assert_installed(&h, &p.entry);
    }
}

#[test]
fn a_lost_trigger_por_neither_stops_the_session_nor_brings_a_resend() {
    let p = platform(CAP);
    let mut s = service(&p, config(), 1);
    let mut h = Handset::new(p.card_config(false));
    h.drop_mo = 1; // the trigger's PoR
    let t0 = Instant::now();
    let id = s.push().id;
    // No time-outs until the card's first response came…
    h.run_until(&mut s, false, "answered once", || p.responses(id) >= 1);
    assert_eq!(h.trace.mo_dropped, 1, "{:?}", h.trace);
    // …then the PoR time-out falls due while the card is in its HTTPS session.
    std::thread::sleep(
        (t0 + Duration::from_millis(1100)).saturating_duration_since(Instant::now()),
    );
    assert!(
        s.svc.run_due_timeouts().unwrap() >= 1,
        "the PoR time-out ran"
    );
    assert_eq!(s.sent(), 1, "the trigger was not sent again");
    h.run_until(&mut s, true, "done", || p.finished(id));

    let done = p.session(id);
    assert_eq!(done.state, SessionState::Done, "{}", done.detail);
    let triggers = p.triggers(id);
    assert_eq!(triggers.len(), 1, "{triggers:?}");
    assert_eq!(triggers[0].1, "sent");
    assert!(
        !p.messages(id).iter().any(|m| m.kind == "por"),
        "no PoR reached the platform"
    );
    // The HTTPS wait falls due too: nothing more.
    std::thread::sleep(Duration::from_millis(2100));
    s.svc.run_due_timeouts().unwrap();
    assert_eq!(s.sent(), 1);
    assert_eq!(p.session(id).state, SessionState::Done);
    assert_eq!(s.outcomes(), ["Completed"]);
    assert!(s.queue.is_empty());
    assert_installed(&h, &p.entry);
}

/// The card is triggered but never gets through: each wait runs out, the card is
/// triggered again (a new counter each time) up to `max_sends`, then the session is
/// abandoned and nothing stays queued.
fn never_connects(wrong_psk: bool) {
    let p = platform(CAP);
    let config = EngineConfig {
        por_timeout: Duration::from_millis(300),
        https_wait: Duration::from_millis(700),
        ..config()
    };
    let mut s = service(&p, config, 1);
    let mut h = Handset::new(p.card_config(wrong_psk));
    h.refuse_open = !wrong_psk;
    let id = s.push().id;
    h.run_until(&mut s, true, "abandoned", || p.finished(id));

    let a = p.session(id);
    assert_eq!(a.state, SessionState::Abandoned, "{}", a.detail);
    assert!(
        a.detail.contains("did not open its HTTPS session")
            && a.detail.contains("step 1 of 3 not done after 3 triggers"),
        "{}",
        a.detail
    );
    let triggers = p.triggers(id);
    assert_eq!(
        triggers.len(),
        3,
        "three triggers, none resent: {triggers:?}"
    );
    assert!(triggers.iter().all(|(_, st)| st == "sent"), "{triggers:?}");
    assert!(
        triggers.windows(2).all(|w| w[1].0 > w[0].0),
        "a new counter each time: {triggers:?}"
    );
    assert_eq!(s.sent(), 3);
    let pors = p
        .messages(id)
        .iter()
        .filter(|m| m.direction == Direction::Mo && m.kind == "por" && m.status == "00")
        .count();
    assert_eq!(pors, 3, "every trigger was accepted by the card");
    assert_eq!(p.responses(id), 0);
    assert!(s.queue.is_empty(), "nothing left queued: {}", s.queue.len());
    if wrong_psk {
        let outcomes = s.outcomes();
        assert_eq!(outcomes.len(), 3, "{outcomes:?}");
        assert!(
            outcomes.iter().all(|o| o.starts_with("HandshakeFailed")),
            "{outcomes:?}"
        );
    } else {
        assert_eq!(h.trace.refused_opens, 3, "{:?}", h.trace);
        assert!(s.outcomes().is_empty());
    }
    // Later time-outs change nothing.
    std::thread::sleep(Duration::from_millis(800));
    s.svc.run_due_timeouts().unwrap();
    assert_eq!(s.sent(), 3);
    assert_not_installed(&h, &p.entry);
}

#[test]
fn a_card_with_the_wrong_psk_is_triggered_max_sends_times_then_abandoned() {
    never_connects(true);
}

#[test]
fn a_card_whose_handset_refuses_open_channel_is_triggered_max_sends_times_then_abandoned() {
    never_connects(false);
}

#[test]
fn a_connection_cut_after_the_first_script_brings_a_new_trigger_and_the_rest() {
    let p = platform(CAP);
    let mut s = service(&p, config(), 1);
    let mut h = Handset::new(p.card_config(false));
    let id = s.push().id;
    let store = p.store.clone();
    h.cut_when = Some(Box::new(move || {
        store
            .ota_messages(id)
            .unwrap()
            .iter()
            .any(|m| m.kind == "https-response")
    }));
    h.run_until(&mut s, true, "done", || p.finished(id));
    // The end of the second HTTPS session comes after its last response.
    h.run_until(&mut s, true, "ended twice", || p.ended(id).len() == 2);

    let done = p.session(id);
    assert_eq!(done.state, SessionState::Done, "{}", done.detail);
    assert_eq!(h.trace.cuts, 1, "{:?}", h.trace);
    assert_eq!(h.trace.opens, 2, "{:?}", h.trace);
    let triggers = p.triggers(id);
    assert_eq!(triggers.len(), 2, "{triggers:?}");
    assert!(triggers[1].0 > triggers[0].0, "a new counter: {triggers:?}");
    assert!(triggers.iter().all(|(_, st)| st == "sent"), "{triggers:?}");
    let outcomes = s.outcomes();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(outcomes[0].starts_with("ConnectionLost"), "{outcomes:?}");
    assert_eq!(outcomes[1], "Completed");
    let ended = p.ended(id);
    assert!(
        ended[0].starts_with("ConnectionLost") && ended[1] == "Completed",
        "{ended:?}"
    );
    // The first create-SD script's response, then the other two in the second session.
    assert_eq!(p.responses(id), 3);
    assert!(s.queue.is_empty());
    assert_installed(&h, &p.entry);
}

#[test]
fn after_a_restart_resume_triggers_again_with_a_new_counter_and_the_session_completes() {
    let p = platform(CAP);
    let mut old = service(&p, config(), 1);
    let mut h = Handset::new(p.card_config(false));
    // The card takes the trigger (its counter is spent) but cannot connect yet.
    h.refuse_open = true;
    let id = old.push().id;
    h.run_until(&mut old, false, "triggered", || {
        p.session(id).detail.starts_with("triggered")
    });
    assert_eq!(old.queue.len(), 1);
    assert_eq!(h.trace.refused_opens, 1);
    drop(old); // the server stops: admin server, queue and time-outs are gone

    let mut s = service(&p, config(), 1);
    h.refuse_open = false;
    s.svc.resume().unwrap();
    let triggers = p.triggers(id);
    assert_eq!(triggers.len(), 2, "{triggers:?}");
    assert!(triggers[1].0 > triggers[0].0, "a new counter: {triggers:?}");
    assert_eq!(s.queue.len(), 1, "queued again on the new admin server");
    assert_eq!(s.sent(), 1);
    h.run_until(&mut s, true, "done", || p.finished(id));

    let done = p.session(id);
    assert_eq!(done.state, SessionState::Done, "{}", done.detail);
    assert_eq!(s.outcomes(), ["Completed"]);
    assert_eq!(p.responses(id), 3);
    assert!(s.queue.is_empty());
    assert_installed(&h, &p.entry);
}

#[test]
fn a_trigger_that_finds_the_card_in_its_session_does_not_fail_it() {
    let p = platform(CAP);
    let config = EngineConfig {
        https_wait: Duration::from_secs(1),
        ..config()
    };
    let mut s = service(&p, config, 1);
    let mut h = Handset::new(p.card_config(false));
    // The card connects, then its session stalls until the wait ran out and the card was
    // triggered again: the second trigger finds the card's agent busy (6985).
    let gw = s.gw.clone();
    h.hold_bip = Some(Box::new(move || gw.sent.lock().unwrap().len() < 2));
    let id = s.push().id;
    h.run_until(&mut s, true, "done", || p.finished(id));

    let done = p.session(id);
    assert_eq!(done.state, SessionState::Done, "{}", done.detail);
    let triggers = p.triggers(id);
    assert_eq!(triggers.len(), 2, "{triggers:?}");
    assert_eq!(h.trace.opens, 1, "one channel: {:?}", h.trace);
    let pors = p
        .messages(id)
        .iter()
        .filter(|m| m.direction == Direction::Mo && m.kind == "por")
        .count();
    assert_eq!(pors, 2, "both triggers answered");
    assert_eq!(p.responses(id), 3);
    assert_eq!(s.outcomes(), ["Completed"]);
    assert!(s.queue.is_empty());
    assert_installed(&h, &p.entry);
}
