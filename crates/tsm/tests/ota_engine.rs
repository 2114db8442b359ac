//! The OTA download engine (`tsm::ota::engine`) against a simulated card: the packets it
//! sends are opened with `ota::packet::open_command` under the card's SCP80 keys and
//! answered with PoRs built with `secure_response`. Covers the card's download request
//! (and its replay), the create-SD step, a 10 KB CAP packed into SMS, a lost PoR (resend
//! with the same counter), counter low on a resend, errors, abandonment and resumption.

use std::sync::Arc;

use apdu::{Response, StatusWord};
use kms::MasterKey;
use ota::packet::{
    self, CommandHeader, Counter, CounterMode, Integrity, OpenedCommand, PorRequest, PorSecurity,
    ResponseHeader, ResponseStatus, Spi,
};
use ota::script::{CommandScript, CompactResponse, ResponseScript, ResponseTlv};
use ota::tpdu::PacketKind;
use tsm::ota::engine::{request_data, Engine, EngineConfig, MoOutcome, Outbound};
use tsm::ota::plan::{PLATFORM_TAR, SD_KEY_KID};
use tsm::ota::{Bearer, CatalogEntry, SessionState};
use tsm::{Actor, Store};

use tsm::ota::testing::{CARD, ICCID, MSISDN};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    engine: Engine,
    entry: CatalogEntry,
    /// The card's stored counter (what it last accepted).
    card_counter: u64,
}

fn fixture(config: EngineConfig, cap_kb: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let p = tsm::ota::testing::platform(dir.path(), MasterKey::generate().unwrap(), cap_kb * 1024);
    let engine = Engine::new(p.store.clone(), Arc::new(p.keys), config);
    Fixture {
        _dir: dir,
        store: p.store,
        engine,
        entry: p.entry,
        card_counter: 0,
    }
}

impl Fixture {
    fn keys(&self) -> tsm::ota::scp80::Scp80KeySet {
        let c = self.store.ota_card(CARD).unwrap().unwrap();
        self.engine.card_keys(&c).unwrap()
    }

    /// The card opens a packet (checking its counter as a card does).
    fn open(&mut self, o: &Outbound) -> Result<OpenedCommand, packet::Error> {
        let k = self.keys();
        let opened = packet::open_command(
            &o.packet,
            &k.keys,
            Counter::from_u64(self.card_counter).unwrap(),
        )?;
        self.card_counter = opened.header.counter.value();
        Ok(opened)
    }

    /// The PoR a card sends for an opened command.
    fn por(&self, opened: &OpenedCommand, status: ResponseStatus, data: &[u8]) -> Vec<u8> {
        let security = if status.is_security_error() {
            PorSecurity::NONE
        } else {
            opened.header.por_security()
        };
        packet::secure_response(
            &security,
            &self.keys().keys,
            &ResponseHeader {
                tar: opened.header.tar,
                counter: opened.header.counter,
                status,
            },
            data,
        )
        .unwrap()
    }

    /// The card's answer to a script: everything `9000`; the create-SD script's last
    /// R-APDU carries a public key.
    fn answer(&self, opened: &OpenedCommand) -> Vec<u8> {
        if opened.data.first() == Some(&0xAA) {
            let script = CommandScript::parse(&opened.data).unwrap();
            let cmds: Vec<_> = script.commands().cloned().collect();
            // Create-SD: the INSTALL to the ISD, then GENERATE EC KEY to the new SD.
            assert!(cmds
                .iter()
                .all(|c| c.ins == 0xE6 || (c.ins == 0xF1 && c.p2 == SD_KEY_KID)));
            let mut items = vec![ResponseTlv::Executed(cmds.len() as u32)];
            for c in &cmds {
                let data = if c.ins == 0xF1 {
                    let mut b = vec![0xB0, 0x41, 0x04];
                    b.extend_from_slice(&[0x11; 64]);
                    b
                } else {
                    vec![]
                };
                items.push(ResponseTlv::Apdu(Response::new(data, StatusWord::SUCCESS)));
            }
            let r = ResponseScript {
                items,
                ..Default::default()
            };
            self.por(opened, ResponseStatus::PorOk, &r.to_bytes())
        } else {
            let n = ota::script::decode_compact_commands(&opened.data)
                .unwrap()
                .len();
            let r = CompactResponse {
                executed: n as u8,
                last: Response::new(vec![], StatusWord::SUCCESS),
            };
            self.por(opened, ResponseStatus::PorOk, &r.to_bytes())
        }
    }

    fn mo(&self, kind: PacketKind, packet: &[u8]) -> MoOutcome {
        self.engine.on_mo(MSISDN, kind, packet).unwrap()
    }

    fn session(&self) -> tsm::ota::Session {
        self.store.ota_sessions(CARD, 1).unwrap().remove(0)
    }
}

fn handled(o: MoOutcome) -> Vec<Outbound> {
    match o {
        MoOutcome::Handled(v) => v,
        MoOutcome::Ignored(why) => panic!("ignored: {why}"),
    }
}

/// The card's secured download request.
fn request(f: &Fixture, counter: u64, app: &str) -> Vec<u8> {
    let k = f.keys();
    packet::secure_command(
        &CommandHeader {
            spi: Spi {
                integrity: Integrity::Cc,
                ciphering: true,
                counter: CounterMode::Higher,
                por: PorRequest::Always,
                por_integrity: Integrity::Cc,
                por_ciphered: true,
                ..Spi::default()
            },
            kic: k.kic,
            kid: k.kid,
            tar: PLATFORM_TAR,
            counter: Counter::from_u64(counter).unwrap(),
        },
        &k.keys,
        &request_data(app),
    )
    .unwrap()
}

#[test]
fn card_request_creates_the_sd_and_installs_over_sms() {
    let mut f = fixture(EngineConfig::default(), 10);
    let req = request(&f, 1, "wallet");
    let out = handled(f.mo(PacketKind::Command, &req));
    assert_eq!(out[0].kind, "por");
    assert_eq!(out[1].kind, "create-sd");
    // The same request again is a replay: ignored, nothing sent.
    assert!(
        matches!(f.mo(PacketKind::Command, &req), MoOutcome::Ignored(w) if w.contains("replayed"))
    );
    // A request under other keys matches no card.
    let mut forged = req.clone();
    let n = forged.len();
    forged[n - 1] ^= 0x55;
    assert!(matches!(
        f.mo(PacketKind::Command, &forged),
        MoOutcome::Ignored(_)
    ));

    let mut next = out[1].clone();
    let mut sms = 0;
    let mut packets = 0;
    loop {
        sms += next.user_data.len();
        packets += 1;
        assert!(next.user_data.iter().all(|ud| ud.len() <= 140));
        let opened = f.open(&next).unwrap();
        let por = f.answer(&opened);
        let out = handled(f.mo(PacketKind::Response, &por));
        match out.into_iter().next() {
            Some(o) => next = o,
            None => break,
        }
    }
    let s = f.session();
    assert_eq!(s.state, SessionState::Done, "{}", s.detail);
    assert_eq!(s.step, s.steps);
    assert!(f.store.card_has_instance(CARD, &f.entry.instance).unwrap());
    assert!(f.store.card_has_instance(CARD, &f.entry.sd).unwrap());
    eprintln!("10 KB CAP: {packets} packets, {sms} SMS (create-SD included)");
    // A second request finds everything installed: nothing is sent but the PoR.
    let out = handled(f.mo(PacketKind::Command, &request(&f, 2, "wallet")));
    assert_eq!(out.len(), 1);
    assert_eq!(f.session().state, SessionState::Done);
    assert_eq!(f.session().detail, "already installed");
}

#[test]
fn lost_por_resends_the_same_packet_then_abandons() {
    let mut f = fixture(EngineConfig::default(), 2);
    let actor = Actor::new("acme", "op");
    let (s, out) = f.engine.push(&actor, ICCID, "wallet", Bearer::Sms).unwrap();
    let first = out[0].clone();
    let c = first.counter.unwrap();
    // Time-out: the same bytes, the same counter.
    let again = f.engine.on_timeout(s.id, c).unwrap();
    assert_eq!(again[0].packet, first.packet);
    // A stale time-out does nothing.
    assert!(f.engine.on_timeout(s.id, c + 7).unwrap().is_empty());
    // The card ran the first copy (PoR lost) and answers the resend with 02.
    let opened = f.open(&first).unwrap();
    assert!(matches!(
        f.open(&again[0]),
        Err(packet::Error::CounterLow { .. })
    ));
    let por = f.por(&opened, ResponseStatus::CounterLow, &[]);
    let out = handled(f.mo(PacketKind::Response, &por));
    assert_eq!(out.len(), 1, "the next step goes");
    assert!(f.session().detail.contains("counter low on a resend") || f.session().step == 1);
    // The next step's PoRs are lost for good: abandoned after max_sends.
    let c2 = out[0].counter.unwrap();
    assert!(c2 > c);
    assert_eq!(f.engine.on_timeout(s.id, c2).unwrap().len(), 1);
    assert_eq!(f.engine.on_timeout(s.id, c2).unwrap().len(), 1);
    assert!(f.engine.on_timeout(s.id, c2).unwrap().is_empty());
    let s = f.session();
    assert_eq!(s.state, SessionState::Abandoned, "{}", s.detail);
    let sent = f
        .store
        .ota_messages(s.id)
        .unwrap()
        .iter()
        .filter(|m| m.counter == Some(c2) && m.kind != "por")
        .count();
    assert_eq!(sent, 3);
}

#[test]
fn errors_fail_the_session_and_counter_low_on_first_send_too() {
    let mut f = fixture(EngineConfig::default(), 2);
    let actor = Actor::new("acme", "op");
    let (_, out) = f.engine.push(&actor, ICCID, "wallet", Bearer::Sms).unwrap();
    let opened = f.open(&out[0]).unwrap();
    let por = f.por(&opened, ResponseStatus::CounterLow, &[]);
    handled(f.mo(PacketKind::Response, &por));
    let s = f.session();
    assert_eq!(s.state, SessionState::Failed);
    assert!(s.detail.contains("CNTR low"), "{}", s.detail);

    // A script answered with an error status word.
    let (_, out) = f.engine.push(&actor, ICCID, "wallet", Bearer::Sms).unwrap();
    let opened = f.open(&out[0]).unwrap();
    let r = ResponseScript {
        items: vec![
            ResponseTlv::Executed(1),
            ResponseTlv::Apdu(Response::new(vec![], StatusWord(0x6A80))),
        ],
        ..Default::default()
    };
    let por = f.por(&opened, ResponseStatus::PorOk, &r.to_bytes());
    handled(f.mo(PacketKind::Response, &por));
    let s = f.session();
    assert_eq!(s.state, SessionState::Failed);
    assert!(s.detail.contains("6A80"), "{}", s.detail);

    // Another tenant may not push to the card; HTTPS is not there yet.
    assert!(f
        .engine
        .push(&Actor::new("other", "op"), ICCID, "wallet", Bearer::Sms)
        .is_err());
    assert!(f
        .engine
        .push(&actor, ICCID, "wallet", Bearer::Https)
        .is_err());
}

#[test]
fn a_restarted_engine_resends_where_it_stopped() {
    let mut f = fixture(EngineConfig::default(), 2);
    let actor = Actor::new("acme", "op");
    let (_, out) = f.engine.push(&actor, ICCID, "wallet", Bearer::Sms).unwrap();
    let opened = f.open(&out[0]).unwrap();
    let por = f.answer(&opened);
    let second = handled(f.mo(PacketKind::Response, &por)).remove(0);
    // "Restart": the engine keeps nothing in memory (everything is in the store), so a
    // new server's `resume` resends the step in flight.
    let engine = f.engine.clone();
    let again = engine.resume().unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].packet, second.packet);
    // The card gets it, answers, the download goes on to the end.
    let mut next = again[0].clone();
    loop {
        let opened = f.open(&next).unwrap();
        let por = f.answer(&opened);
        match handled(f.mo(PacketKind::Response, &por)).into_iter().next() {
            Some(o) => next = o,
            None => break,
        }
    }
    assert_eq!(f.session().state, SessionState::Done);
}

/// The virtual card as a phone's UICC, driven the way a handset drives it: SMS in as
/// ENVELOPE (SMS-PP download), proactive SEND SHORT MESSAGE out as MO packets.
struct Phone {
    card: card::VirtualChannel,
    reassembler: ota::tpdu::Reassembler,
}

impl Phone {
    fn send(&mut self, apdu: &apdu::Command) -> Response {
        Response::parse(&self.card.card().transmit(&apdu.to_bytes().unwrap())).unwrap()
    }

    /// Runs the pending proactive commands; the MO packets the card sent.
    fn proactive(&mut self, mut sw: StatusWord) -> Vec<(PacketKind, Vec<u8>)> {
        use ota::cat::{CatResult, CommandBody, ProactiveCommand, TerminalResponse};
        let mut mo = Vec::new();
        while sw.sw1() == 0x91 {
            let r = self.send(&apdu::Command::new(0x80, 0x12, 0, 0).with_le(sw.sw2() as u32));
            let cmd = ProactiveCommand::decode(&r.data).unwrap();
            if let CommandBody::SendShortMessage(s) = &cmd.body {
                let from = ota::tpdu::Address::international(MSISDN);
                match self.reassembler.push(&from, &s.tpdu.user_data).unwrap() {
                    ota::tpdu::Progress::Complete { kind, packet } => mo.push((kind, packet)),
                    other => assert!(matches!(other, ota::tpdu::Progress::Incomplete { .. })),
                }
            }
            let tr = TerminalResponse::new(&cmd, CatResult::success())
                .encode()
                .unwrap();
            sw = self
                .send(&apdu::Command::new(0x80, 0x14, 0, 0).with_data(tr))
                .sw;
        }
        mo
    }

    /// Delivers the SMS of an outbound message; the MO packets the card answered with.
    fn deliver(&mut self, o: &Outbound) -> Vec<(PacketKind, Vec<u8>)> {
        use ota::tpdu::{Address, Dcs, SmsDeliver, Timestamp, UserData};
        let mut mo = Vec::new();
        for ud in &o.user_data {
            let ud = UserData::decode(true, Dcs::CLASS2_8BIT, ud.len() as u8, ud).unwrap();
            let scts = Timestamp {
                year: 26,
                month: 12,
                day: 4,
                hour: 12,
                minute: 0,
                second: 0,
                tz_quarters: 4,
            };
            let sms = SmsDeliver::ota(Address::international("4900"), scts, ud);
            let env = ota::cat::Envelope::sms_pp(None, sms).encode().unwrap();
            let r = self.send(
                &apdu::Command::new(0x80, 0xC2, 0, 0)
                    .with_data(env)
                    .with_le(256),
            );
            assert!(
                r.sw.sw1() == 0x91 || r.sw == StatusWord::SUCCESS,
                "{:?}",
                r.sw
            );
            mo.extend(self.proactive(r.sw));
        }
        mo
    }
}

/// The engine against a real virtual card (crates/card as a UICC): the user picks the
/// application in the card's menu, the card's secured request goes to the engine, the
/// create-SD and load packets go back as SMS in ENVELOPEs, each PoR comes back as a SEND
/// SHORT MESSAGE; then an independent SCP03 channel finds the SD, the load file and the
/// instance (extradited to the SD). A second request from the menu finds everything
/// installed: no second SD, nothing sent.
#[test]
fn a_virtual_card_downloads_over_sms() {
    use card::{CardConfig, DownloadAgent, MenuEntry};
    let f = fixture(EngineConfig::default(), 10);
    let k = f.keys();
    let key = |k: &Option<ota::packet::Key>| scp::Key::aes(k.as_ref().unwrap().expose()).unwrap();
    let config = CardConfig::default()
        .with_scp80_keys(k.kvn, key(&k.keys.kic), key(&k.keys.kid))
        .with_download_agent(DownloadAgent::new(
            "+4900",
            k.kvn,
            "Get apps",
            vec![MenuEntry::new("wallet", "Wallet")],
        ));
    let mut phone = Phone {
        card: card::VirtualChannel::with_config(config),
        reassembler: ota::tpdu::Reassembler::new(),
    };
    let profile = ota::cat::TerminalProfile::ota_handset(1).bytes().to_vec();
    let r = phone.send(&apdu::Command::new(0x80, 0x10, 0, 0).with_data(profile));
    assert!(phone.proactive(r.sw).is_empty(), "SET UP MENU only");

    let download = |phone: &mut Phone| {
        let select = ota::cat::Envelope::MenuSelection {
            item: 1,
            help_request: false,
        }
        .encode()
        .unwrap();
        let r = phone.send(&apdu::Command::new(0x80, 0xC2, 0, 0).with_data(select));
        let mut pending: Vec<(PacketKind, Vec<u8>)> = phone.proactive(r.sw);
        assert_eq!(pending.len(), 1, "the download request");
        let (mut sms, mut packets) = (0, 0);
        while let Some((kind, packet)) = pending.pop() {
            for o in handled(f.mo(kind, &packet)) {
                sms += o.user_data.len();
                packets += 1;
                pending.extend(phone.deliver(&o));
            }
        }
        (packets, sms)
    };
    let (packets, sms) = download(&mut phone);
    let s = f.session();
    assert_eq!(s.state, SessionState::Done, "{}", s.detail);
    assert!(s.detail.contains("PK.SD"), "{}", s.detail);
    eprintln!(
        "10 KB CAP to a virtual card: {packets} packets in {sms} SMS to the card (create-SD included)"
    );

    // An independent GP channel (SCP03, the card's own keys) sees what arrived.
    let mut client = gpclient::GpClient::new(transport::Traced::new(phone.card.clone(), None));
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
    let reg = gpclient::ops::registry(&mut client).unwrap();
    let sd = reg.find(&f.entry.sd).expect("the SD");
    assert!(
        sd.privileges
            .is_some_and(|p| p.contains(gp::privileges::Privilege::SecurityDomain)),
        "a security domain"
    );
    let app = reg.find(&f.entry.instance).expect("the instance");
    assert_eq!(app.associated_sd, Some(f.entry.sd), "extradited to its SD");
    assert!(reg.find(&f.entry.package).is_some(), "the load file");

    drop(client);

    // Again from the menu: installed already; the request asked for no PoR, so nothing is
    // sent, and the session says why.
    let sessions = f.store.ota_sessions(CARD, 10).unwrap().len();
    let (packets, _) = download(&mut phone);
    assert_eq!(packets, 0, "nothing to send");
    assert_eq!(f.store.ota_sessions(CARD, 10).unwrap().len(), sessions + 1);
    assert_eq!(f.session().state, SessionState::Done);
}
