//! SCP81 on the virtual card: a trigger by SMS (SCP80), then the card's admin agent runs a
//! TLS-PSK session with a real `scp81::AdminServer` on 127.0.0.1 through a small in-test
//! handset that executes the card's BIP proactive commands on a real TCP socket.
#![cfg(feature = "scp81")]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apdu::{Command, Response, StatusWord};
use card::{CardConfig, VirtualCard, DEFAULT_KEY};
use common::{Host, ISD};
use gp::commands::{Install, InstallParams, StatusFormat, StatusSubset};
use gp::Privileges;
use ota::admin::{SecurityParams, TriggerParams};
use ota::cat::{
    BearerDescription, CatResult, ChannelStatus, CommandBody, Envelope, Event, OpenChannel,
    OtherAddress, ProactiveCommand, TerminalProfile, TerminalResponse, TransportLevel,
};
use ota::packet::{self, Algorithm, CommandHeader, Counter, Key, KeySet, Kic, Kid, Spi, Tar};
use ota::script::{CommandScript, CompactResponse, ResponseScript};
use ota::tpdu::{self, Address, ConcatRef, PacketKind, SmsDeliver, Timestamp};
use scp::SecurityLevel;
use scp81::{AdminQueue, AdminServer, Outcome, Script, ScriptStatus, ServerConfig, SessionReport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

const IDENTITY: &[u8] = b"card-0001";
const PSK: [u8; 16] = [
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xF0, 0x01,
];
/// CC, not ciphered, counter higher; PoR always with CC, in the DELIVER-REPORT.
const SPI_PLAIN: [u8; 2] = [0x12, 0x09];

fn card() -> VirtualCard {
    let k = scp::Key::aes(&DEFAULT_KEY).unwrap();
    let mut card = VirtualCard::new(
        CardConfig::default()
            .with_scp80_keys(1, k.clone(), k)
            .with_scp81_psk(0x40, IDENTITY, &PSK),
    );
    let r = send(
        &mut card,
        &Command::new(0x80, 0x10, 0, 0)
            .with_data(TerminalProfile::ota_handset(1).bytes().to_vec())
            .to_bytes()
            .unwrap(),
    );
    assert_eq!(r.sw, StatusWord::SUCCESS);
    card
}

fn send(card: &mut VirtualCard, apdu: &[u8]) -> Response {
    Response::parse(&card.transmit(apdu)).unwrap()
}

struct Server {
    addr: SocketAddr,
    queue: AdminQueue,
    audit: mpsc::UnboundedReceiver<SessionReport>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server(psk: [u8; 16]) -> Server {
    let keys: HashMap<Vec<u8>, Vec<u8>> = HashMap::from([(IDENTITY.to_vec(), psk.to_vec())]);
    let store = Arc::new(move |id: &[u8]| keys.get(id).cloned().map(Zeroizing::new));
    let queue = AdminQueue::new();
    let (tx, audit) = mpsc::unbounded_channel();
    let s = AdminServer::bind("127.0.0.1:0", ServerConfig::default(), store, queue.clone())
        .await
        .unwrap()
        .with_audit(move |r| {
            let _ = tx.send(r.clone());
        });
    let addr = s.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = s.run().await;
    });
    Server {
        addr,
        queue,
        audit,
        task,
    }
}

/// The triggering parameters: TCP to the server through the default bearer, the ISD's
/// PSK KVN 40 (identity: the one stored with it).
fn trigger(port: u16) -> Vec<u8> {
    let open = OpenChannel {
        alpha: None,
        bearer: BearerDescription::default_bearer(),
        buffer_size: 1024,
        network_access_name: None,
        local_address: None,
        login: None,
        password: None,
        transport: Some(TransportLevel::tcp_client(port)),
        destination: Some(OtherAddress::Ipv4([127, 0, 0, 1].into())),
        other: Vec::new(),
    };
    let mut t = TriggerParams::new(
        open,
        SecurityParams {
            psk_identity: Vec::new(),
            kid: 1,
            kvn: 0x40,
        },
    );
    t.admin_uri = Some("/gp/admin".into());
    t.agent_id = Some("//se-id/CUD/00000000000000000000;//aa-id/aid/A000000151/000000".into());
    t.encode().unwrap()
}

/// Delivers the trigger as a secured SMS (STORE DATA `81` to the ISD, TAR `B20100`):
/// the answer to the ENVELOPE.
fn send_trigger(card: &mut VirtualCard, port: u16) -> Response {
    let store = Command::new(0x80, 0xE2, 0x90, 0x00).with_data(trigger(port));
    let script = ota::script::encode_compact_commands(&[store]).unwrap();
    let header = CommandHeader {
        spi: Spi::from_bytes(SPI_PLAIN),
        kic: Kic::new(1, Algorithm::Aes),
        kid: Kid::for_cc(1, Algorithm::Aes),
        tar: Tar([0xB2, 0x01, 0x00]),
        counter: Counter::from_u64(1).unwrap(),
    };
    let keys = KeySet::new(
        Key::new(DEFAULT_KEY.to_vec()),
        Key::new(DEFAULT_KEY.to_vec()),
    );
    let p = packet::secure_command(&header, &keys, &script).unwrap();
    let mut parts = tpdu::split_packet(PacketKind::Command, &p, ConcatRef::Eight(1)).unwrap();
    assert_eq!(parts.len(), 1);
    let ts = Timestamp {
        year: 26,
        month: 5,
        day: 4,
        hour: 12,
        minute: 0,
        second: 0,
        tz_quarters: 8,
    };
    let deliver = SmsDeliver::ota(Address::international("491700000001"), ts, parts.remove(0));
    let env = Envelope::sms_pp(None, deliver).encode().unwrap();
    let r = send(
        card,
        &Command::new(0x80, 0xC2, 0, 0)
            .with_data(env)
            .with_le(256)
            .to_bytes()
            .unwrap(),
    );
    let por = packet::unframe_response_sms(&r.data).unwrap().to_vec();
    let opened = packet::open_response(&por, &header.por_security(), &keys).unwrap();
    let c = CompactResponse::parse(&opened.data).unwrap();
    assert_eq!(c.last.sw, StatusWord::SUCCESS, "the trigger was accepted");
    r
}

/// What the handset did.
#[derive(Debug, Default)]
struct Trace {
    /// Type of every proactive command fetched, in order.
    commands: Vec<u8>,
    sent: usize,
    received: usize,
    /// The handset reported the link dropped (the server closed TCP).
    link_dropped: bool,
}

/// The handset: fetches and executes the card's proactive commands (BIP on a real TCP
/// socket) and reports data available / link drops by ENVELOPE, until the channel is
/// closed and nothing waits.
async fn handset(card: &mut VirtualCard, mut sw: StatusWord) -> Trace {
    let mut t = Trace::default();
    let mut sock: Option<TcpStream> = None;
    let mut rx: Vec<u8> = Vec::new();
    let mut announced = false;
    let mut open = false;
    let mut eof = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        if sw.0 >> 8 == 0x91 {
            let len = (sw.0 & 0xFF) as u8;
            let f = send(card, &[0x80, 0x12, 0, 0, len]);
            assert_eq!(f.sw, StatusWord::SUCCESS);
            let cmd = ProactiveCommand::decode(&f.data).unwrap();
            t.commands.push(cmd.details().type_of_command);
            let mut tr = TerminalResponse::new(&cmd, CatResult::success());
            match &cmd.body {
                CommandBody::OpenChannel(o) => {
                    let Some(OtherAddress::Ipv4(ip)) = o.destination else {
                        panic!("IPv4 destination")
                    };
                    let port = o.transport.unwrap().port.unwrap();
                    assert_eq!(o.bearer, BearerDescription::default_bearer());
                    sock = Some(TcpStream::connect((ip, port)).await.unwrap());
                    open = true;
                    tr.channel_status = Some(ChannelStatus::new(1, true, 0));
                    tr.bearer = Some(o.bearer.clone());
                    tr.buffer_size = Some(o.buffer_size);
                }
                CommandBody::SendData(d) => {
                    t.sent += d.data.len();
                    match sock.as_mut() {
                        Some(s) => {
                            s.write_all(&d.data).await.unwrap();
                            tr.channel_data_length = Some(0xFF);
                        }
                        None => {
                            tr.result = CatResult::new(ota::cat::ResultCode::BIP_ERROR, vec![2])
                        }
                    }
                }
                CommandBody::ReceiveData(r) => {
                    let n = usize::from(r.length).min(rx.len());
                    let data: Vec<u8> = rx.drain(..n).collect();
                    t.received += data.len();
                    if rx.is_empty() {
                        announced = false;
                    }
                    tr.channel_data = Some(data);
                    tr.channel_data_length = Some(rx.len().min(255) as u8);
                }
                CommandBody::CloseChannel(_) => {
                    sock = None;
                    open = false;
                    rx.clear();
                }
                _ => {}
            }
            let r = send(
                card,
                &Command::new(0x80, 0x14, 0, 0)
                    .with_data(tr.encode().unwrap())
                    .to_bytes()
                    .unwrap(),
            );
            sw = r.sw;
            continue;
        }
        if !open {
            break;
        }
        if !rx.is_empty() && !announced {
            announced = true;
            let ev = Envelope::EventDownload(Event::DataAvailable {
                status: ChannelStatus::new(1, true, 0),
                length: rx.len().min(255) as u8,
            });
            sw = envelope(card, ev);
            continue;
        }
        if eof && rx.is_empty() {
            eof = false;
            t.link_dropped = true;
            let ev = Envelope::EventDownload(Event::ChannelStatus {
                status: ChannelStatus::new(1, false, 5),
                other: Vec::new(),
            });
            sw = envelope(card, ev);
            continue;
        }
        let Some(s) = sock.as_mut() else {
            // The link is down; wait for the card's CLOSE CHANNEL (SELECT answers 91xx
            // when a command waits).
            sw = send(card, &common::h("00A4040008A000000151000000")).sw;
            if sw.0 >> 8 != 0x91 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            continue;
        };
        match tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                sock = None;
                eof = true;
            }
            Ok(Ok(n)) => rx.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    assert!(!open, "the channel was closed in time: {t:?}");
    t
}

fn envelope(card: &mut VirtualCard, ev: Envelope) -> StatusWord {
    send(
        card,
        &Command::new(0x80, 0xC2, 0, 0)
            .with_data(ev.encode().unwrap())
            .to_bytes()
            .unwrap(),
    )
    .sw
}

fn expanded(cmds: Vec<Command>) -> Vec<u8> {
    CommandScript::from_commands(cmds).to_bytes().unwrap()
}

/// GET STATUS of the ISD, then INSTALL [for load] + LOAD + INSTALL [for install
/// and make selectable] of a 10 KB CAP file, all under the ISD.
fn scripts() -> (Vec<Script>, gp::Aid) {
    let status = Command::new(0x80, 0xF2, 0x80, 0x02)
        .with_data(vec![0x4F, 0x00])
        .with_le(256);
    let cap = gp::cap::CapFile::from_bytes(&gp::cap::testing::synthetic_cap(10_000)).unwrap();
    let pkg = cap.package_aid();
    let applet = cap.applet_aids()[0];
    let mut cmds = vec![Install::ForLoad {
        load_file: pkg,
        security_domain: Some(common::aid(ISD)),
        hash: Vec::new(),
        params: Vec::new(),
        token: Vec::new(),
    }
    .to_command()
    .unwrap()];
    cmds.extend(gp::commands::load_blocks(&cap.load_file_data_block(), 240).unwrap());
    cmds.push(
        Install::ForInstall {
            load_file: pkg,
            module: applet,
            application: applet,
            privileges: Privileges([0, 0, 0]),
            params: InstallParams::default().to_bytes(),
            token: Vec::new(),
            make_selectable: true,
        }
        .to_command()
        .unwrap(),
    );
    (
        vec![
            Script::new(expanded(vec![status]), None),
            Script::new(expanded(cmds), None),
        ],
        applet,
    )
}

fn listed(card: VirtualCard, applet: gp::Aid) -> bool {
    let mut host = Host::new(card);
    host.select(ISD);
    host.open(&common::default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    host.status(StatusSubset::Applications, StatusFormat::Tlv)
        .iter()
        .any(|e| e.aid == applet)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggered_session_loads_and_installs_a_10k_cap_over_bip() {
    let mut srv = server(PSK).await;
    let (scripts, applet) = scripts();
    let mut handle = srv.queue.submit(IDENTITY, scripts).unwrap();
    let mut card = card();

    let r = send_trigger(&mut card, srv.addr.port());
    assert_eq!(r.sw.0 >> 8, 0x91, "SET UP EVENT LIST / OPEN CHANNEL wait");
    let t = handset(&mut card, r.sw).await;

    use ota::cat::command_type::*;
    assert_eq!(&t.commands[..2], &[SET_UP_EVENT_LIST, OPEN_CHANNEL]);
    assert_eq!(t.commands.last(), Some(&CLOSE_CHANNEL));
    assert!(t.commands.contains(&SEND_DATA) && t.commands.contains(&RECEIVE_DATA));
    assert!(
        t.received > 10_000,
        "the CAP came through RECEIVE DATA: {t:?}"
    );

    let first = handle.next_response().await.unwrap();
    assert_eq!(first.status, ScriptStatus::Ok);
    let rs = ResponseScript::parse(&first.body).unwrap();
    let status = rs.responses().next().unwrap();
    assert_eq!(status.sw, StatusWord::SUCCESS);
    let second = handle.next_response().await.unwrap();
    assert_eq!(second.status, ScriptStatus::Ok);
    let rs = ResponseScript::parse(&second.body).unwrap();
    assert!(rs.responses().all(|r| r.sw == StatusWord::SUCCESS));
    assert_eq!(rs.executed(), Some(rs.responses().count() as u32));
    let result = handle.finished().await.unwrap();
    assert_eq!(result.report.outcome, Outcome::Completed);
    let report = srv.audit.recv().await.unwrap();
    assert_eq!(report.identity.as_deref(), Some("card-0001"));
    assert!(!report.resumed);

    assert!(listed(card, applet), "the registry lists the new applet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_psk_fails_the_handshake_and_nothing_runs() {
    let mut wrong = PSK;
    wrong[0] ^= 1;
    let mut srv = server(wrong).await;
    let (scripts, applet) = scripts();
    let _handle = srv.queue.submit(IDENTITY, scripts).unwrap();
    let mut card = card();

    let r = send_trigger(&mut card, srv.addr.port());
    let t = handset(&mut card, r.sw).await;
    assert_eq!(
        t.commands.last(),
        Some(&ota::cat::command_type::CLOSE_CHANNEL)
    );

    let report = tokio::time::timeout(Duration::from_secs(10), srv.audit.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(report.outcome, Outcome::HandshakeFailed(_)),
        "{:?}",
        report.outcome
    );
    assert_eq!(report.scripts_sent, 0);
    assert_eq!(srv.queue.len(), 1, "the scripts are still queued");
    assert!(!listed(card, applet), "nothing was installed");
}
