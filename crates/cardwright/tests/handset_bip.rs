//! `cardwright handset` relaying BIP for real: a virtual card with an SCP81 PSK gets an
//! SCP80-secured trigger by MT SMS (the test's own ESME bound directly to the handset), its
//! admin agent opens a TLS-PSK session to a real `scp81::AdminServer` through the handset's
//! TCP relay (OPEN CHANNEL / SEND DATA / data available / RECEIVE DATA / CLOSE CHANNEL), and
//! the server's scripts (GET STATUS; then the LOAD and INSTALL of a 10 KB CAP file) run.
//! Afterwards an independent SCP03 channel (gpclient) on the card's state file finds the
//! applet. With a wrong PSK the handshake fails and nothing is installed.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apdu::StatusWord;
use card::{CardConfig, VirtualCard, DEFAULT_KEY};
use common::*;
use gp::commands::{Install, InstallParams};
use gp::Privileges;
use gpclient::{ops, GpClient, KeySpec, OpenOptions};
use ota::admin::{SecurityParams, TriggerParams};
use ota::cat::{BearerDescription, OpenChannel, OtherAddress, TransportLevel};
use ota::packet::{self, Algorithm, CommandHeader, Counter, Key, KeySet, Kic, Kid, Spi, Tar};
use ota::script::CommandScript;
use ota::tpdu::{self, ConcatRef, PacketKind};
use scp::{Diversification, SecurityLevel};
use scp81::{AdminQueue, AdminServer, Outcome, Script, ScriptStatus, ServerConfig, SessionReport};
use smpp::{Address, Credentials, Esme, EsmeConfig, EsmeHandle, Inbound, ShortMessage};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

const MSISDN: &str = "4917012345";
const PLATFORM: &str = "491700000999";
const IDENTITY: &[u8] = b"card-0001";
const PSK: [u8; 16] = [
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xF0, 0x01,
];
/// CC, not ciphered, counter higher; PoR always with CC, in the DELIVER-REPORT.
const SPI_PLAIN: [u8; 2] = [0x12, 0x09];
const ISD: [u8; 8] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00];
const T: Duration = Duration::from_secs(60);

fn make_card(path: &Path) {
    let k = scp::Key::aes(&DEFAULT_KEY).unwrap();
    let config = CardConfig::default()
        .with_scp80_keys(1, k.clone(), k)
        .with_scp81_psk(0x40, IDENTITY, &PSK);
    drop(VirtualCard::open(path, config).unwrap());
}

struct Handset {
    child: Child,
    log: PathBuf,
}

impl Drop for Handset {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- handset log ---\n{}", self.log());
        }
    }
}

impl Handset {
    fn start(dir: &Path, state: &Path, endpoint: &str) -> Self {
        let log = dir.join("handset.log");
        let control = dir.join("handset.sock");
        let child = Command::new(bin())
            .args([
                "handset",
                "--virtual",
                state.to_str().unwrap(),
                "--smpp",
                &format!("smpp://jasmin:jaspass@{endpoint}"),
                "--msisdn",
                MSISDN,
                "--control",
                control.to_str().unwrap(),
                "--poll-ms",
                "100",
            ])
            .env("CARDWRIGHT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn cardwright handset");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn esme(endpoint: &str) -> (EsmeHandle, mpsc::Receiver<Inbound>) {
    let (host, port) = endpoint.split_once(':').unwrap();
    let mut config = EsmeConfig::new(
        host,
        port.parse().unwrap(),
        Credentials::new("jasmin", "jaspass").unwrap(),
    );
    config.backoff.initial = Duration::from_millis(200);
    config.backoff.max = Duration::from_secs(1);
    Esme::connect(config)
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

/// The MT SMS carrying the trigger: an SCP80 packet to the ISD (TAR `B20100`) with STORE
/// DATA of the administration session triggering parameters (TCP to `port` on 127.0.0.1,
/// PSK KVN 40, the stored identity).
fn trigger_sms(port: u16) -> ShortMessage {
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
    let store = apdu::Command::new(0x80, 0xE2, 0x90, 0x00).with_data(t.encode().unwrap());
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
    let parts = tpdu::split_packet(PacketKind::Command, &p, ConcatRef::Eight(1)).unwrap();
    assert_eq!(parts.len(), 1);
    let ud = parts[0].encode(tpdu::Dcs::CLASS2_8BIT).unwrap().1;
    ShortMessage::sim_data_download(
        Address::international(PLATFORM),
        Address::international(MSISDN),
        ud,
    )
}

fn expanded(cmds: Vec<apdu::Command>) -> Vec<u8> {
    CommandScript::from_commands(cmds).to_bytes().unwrap()
}

/// GET STATUS of the ISD; then INSTALL [for load] + LOAD + INSTALL [for install and make
/// selectable] of a 10 KB CAP file under the ISD.
fn scripts() -> (Vec<Script>, gp::Aid) {
    let status = apdu::Command::new(0x80, 0xF2, 0x80, 0x02)
        .with_data(vec![0x4F, 0x00])
        .with_le(256);
    let cap = gp::cap::CapFile::from_bytes(&gp::cap::testing::synthetic_cap(10_000)).unwrap();
    let pkg = cap.package_aid();
    let applet = cap.applet_aids()[0];
    let mut cmds = vec![Install::ForLoad {
        load_file: pkg,
        security_domain: Some(gp::Aid::new(&ISD).unwrap()),
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

/// Whether the card in `state` lists `applet`, asked through an SCP03 channel of its own.
fn installed(state: &Path, applet: &gp::Aid) -> bool {
    let card = VirtualCard::open(state, CardConfig::default()).unwrap();
    let chan = card::VirtualChannel::new(card);
    let mut client = GpClient::new(transport::Traced::new(chan, None));
    client
        .open_secure_channel(&OpenOptions {
            keys: KeySpec::same(&DEFAULT_KEY, Diversification::None, 0),
            level: SecurityLevel::MAC,
            scp: Some(3),
            sd: None,
        })
        .expect("SCP03 to the ISD");
    let registry = ops::registry(&mut client).expect("GET STATUS");
    registry.find(applet).is_some()
}

/// Sets up card, handset, ESME and server; sends the trigger. The handset, the ESME's
/// inbound queue (kept open), the state file and its directory.
async fn triggered(
    srv: &Server,
) -> (
    Handset,
    EsmeHandle,
    mpsc::Receiver<Inbound>,
    PathBuf,
    tempfile::TempDir,
) {
    let dir = tempdir();
    let state = dir.path().join("card.json");
    make_card(&state);
    let endpoint = format!("127.0.0.1:{}", free_port());
    let handset = Handset::start(dir.path(), &state, &endpoint);
    let (esme, inbound) = esme(&endpoint);
    esme.wait_bound(Duration::from_secs(30))
        .await
        .expect("ESME bound to the handset");
    esme.submit(trigger_sms(srv.addr.port()))
        .await
        .expect("trigger submitted");
    (handset, esme, inbound, state, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handset_relays_an_scp81_session_that_installs_a_10k_cap() {
    let srv = server(PSK).await;
    let (scripts, applet) = scripts();
    let mut handle = srv.queue.submit(IDENTITY, scripts).unwrap();
    let t0 = Instant::now();
    let (mut handset, _esme, _inbound, state, _dir) = triggered(&srv).await;

    let first = tokio::time::timeout(T, handle.next_response())
        .await
        .unwrap_or_else(|_| panic!("no GET STATUS response in {T:?}:\n{}", handset.log()))
        .unwrap();
    let t_first = Instant::now();
    eprintln!(
        "trigger SMS → first script's response (TLS handshake included): {:?}",
        t0.elapsed()
    );
    assert_eq!(first.status, ScriptStatus::Ok);
    let second = tokio::time::timeout(T, handle.next_response())
        .await
        .unwrap_or_else(|_| panic!("no LOAD response in {T:?}:\n{}", handset.log()))
        .unwrap();
    eprintln!(
        "10 KB CAP over SCP81 via the handset's BIP relay (INSTALL for load + LOAD + INSTALL): {:?}",
        t_first.elapsed()
    );
    assert_eq!(second.status, ScriptStatus::Ok);
    let rs = ota::script::ResponseScript::parse(&second.body).unwrap();
    assert!(rs.responses().all(|r| r.sw == StatusWord::SUCCESS));
    let result = tokio::time::timeout(T, handle.finished())
        .await
        .expect("session end")
        .unwrap();
    assert_eq!(result.report.outcome, Outcome::Completed);
    eprintln!("trigger SMS → session completed: {:?}", t0.elapsed());

    // The card closes the channel after the server's end.
    let t1 = Instant::now();
    while !handset.log().contains("closed by the card") {
        assert!(t1.elapsed() < T, "no CLOSE CHANNEL:\n{}", handset.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = handset.log();
    assert!(
        log.contains("BIP: channel 1 open: TCP to 127.0.0.1"),
        "{log}"
    );
    for line in log.lines().filter(|l| l.contains("BIP: channel 1 to")) {
        eprintln!("{line}");
    }
    assert!(!log.contains("404142434445"), "no keys in the log");
    handset.stop();
    assert!(installed(&state, &applet), "the registry lists the applet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handset_bip_wrong_psk_fails_the_handshake_and_installs_nothing() {
    let mut wrong = PSK;
    wrong[0] ^= 1;
    let mut srv = server(wrong).await;
    let (scripts, applet) = scripts();
    let _handle = srv.queue.submit(IDENTITY, scripts).unwrap();
    let (mut handset, _esme, _inbound, state, _dir) = triggered(&srv).await;

    let report = tokio::time::timeout(T, srv.audit.recv())
        .await
        .unwrap_or_else(|_| panic!("no session report:\n{}", handset.log()))
        .unwrap();
    assert!(
        matches!(report.outcome, Outcome::HandshakeFailed(_)),
        "{:?}",
        report.outcome
    );
    assert_eq!(report.scripts_sent, 0);
    assert_eq!(srv.queue.len(), 1, "the scripts are still queued");
    let t1 = Instant::now();
    while !handset.log().contains("BIP: channel 1 to") {
        assert!(
            t1.elapsed() < T,
            "the channel stays open:\n{}",
            handset.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    handset.stop();
    assert!(!installed(&state, &applet), "nothing was installed");
}
