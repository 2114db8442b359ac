//! `cardwright handset`: the real binary with a UICC (a virtual card state file in process,
//! or the same card through pcscd + vpcd) and an SMSC side played by the test's own ESME,
//! bound directly to the handset's endpoint or through Jasmin.
//!
//! Each scenario: the card's menu comes up (SET UP MENU), `handset menu --select wallet`
//! makes the card's download agent send its secured download request (MO, opened here
//! with `ota::packet::open_command`), then an MT secured packet (a GET STATUS script)
//! comes back as a PoR (MO, UDH 71, opened with `open_response`) and a receipt DELIVRD;
//! an MT the card cannot take gets a receipt UNDELIV.
//!
//! * `handset_virtual_card_direct_esme`: always runs.
//! * `handset_through_jasmin`: `CARDWRIGHT_SMSC_TESTS=1` makes it a must (Jasmin on
//!   127.0.0.1:2775, its connector to 127.0.0.1:2776: `scripts/smsc.sh start`); otherwise
//!   it is skipped with a message when Jasmin is not up.
//! * `handset_pcsc_reader`: `CARDWRIGHT_PCSC_TESTS=1` (pcscd + vpcd, `--features pcsc`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use card::{CardConfig, DownloadAgent, MenuEntry, VirtualCard, DEFAULT_KEY};
use common::*;
use ota::packet::{self, Algorithm, CommandHeader, Counter, Key, KeySet, Kic, Kid, Spi, Tar};
use ota::script::CompactResponse;
use ota::tpdu::{self, ConcatRef, PacketKind};
use smpp::{Address, Credentials, Esme, EsmeConfig, EsmeHandle, Inbound, ShortMessage};
use tokio::sync::mpsc;

/// The handset's number.
const MSISDN: &str = "4917012345";
/// The platform's number, where the agent sends its requests.
const PLATFORM: &str = "491700000999";
/// SPI: CC, ciphered, counter higher; PoR always, CC, ciphered, in the DELIVER-REPORT.
const SPI_REPORT: [u8; 2] = [0x16, 0x19];
const T: Duration = Duration::from_secs(20);

fn aes(k: &[u8]) -> scp::Key {
    scp::Key::aes(k).unwrap()
}

fn keys() -> KeySet {
    KeySet::new(
        Key::new(DEFAULT_KEY.to_vec()),
        Key::new(DEFAULT_KEY.to_vec()),
    )
}

fn header(counter: u64) -> CommandHeader {
    CommandHeader {
        spi: Spi::from_bytes(SPI_REPORT),
        kic: Kic::new(1, Algorithm::Aes),
        kid: Kid::for_cc(1, Algorithm::Aes),
        tar: Tar([0, 0, 0]),
        counter: Counter::from_u64(counter).unwrap(),
    }
}

/// A virtual card with OTA keys (KVN 01 = the GP test key) and the download agent.
fn make_card(path: &Path) {
    let mut wallet = MenuEntry::new("wallet", "Wallet");
    wallet.sd_aid = Some(apdu::parse_hex("A0000005591010FFFFFFFF8900000100").unwrap());
    let agent = DownloadAgent::new(
        &format!("+{PLATFORM}"),
        1,
        "Get apps",
        vec![MenuEntry::new("transit", "Transit pass"), wallet],
    );
    let config = CardConfig::default()
        .with_scp80_keys(1, aes(&DEFAULT_KEY), aes(&DEFAULT_KEY))
        .with_download_agent(agent);
    drop(VirtualCard::open(path, config).unwrap());
}

/// A running `cardwright handset`, killed on drop (its log printed when the test failed).
struct Handset {
    child: Child,
    log: PathBuf,
    control: PathBuf,
}

impl Drop for Handset {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- handset log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn start_handset(dir: &Path, card: &[&str], endpoint: &str) -> Handset {
    let log = dir.join("handset.log");
    let control = dir.join("handset.sock");
    let url = format!("smpp://jasmin:jaspass@{endpoint}");
    let mut args = vec!["handset"];
    args.extend_from_slice(card);
    args.extend_from_slice(&[
        "--smpp",
        &url,
        "--msisdn",
        MSISDN,
        "--control",
        control.to_str().unwrap(),
        "--poll-ms",
        "100",
    ]);
    let child = Command::new(bin())
        .args(&args)
        .env("CARDWRIGHT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn cardwright handset");
    Handset {
        child,
        log,
        control,
    }
}

impl Handset {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn menu(&self, extra: &[&str]) -> Run {
        let mut args = vec![
            "handset",
            "menu",
            "--control",
            self.control.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    }

    /// Waits until the card's menu is up and the SMSC is bound; returns `handset menu`.
    fn wait_ready(&mut self) -> String {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the handset exited ({status}):\n{}", self.log());
            }
            let r = self.menu(&[]);
            if r.ok && r.stdout.contains("Wallet") && !r.stdout.contains("bound: 0") {
                return r.stdout;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no menu or no SMSC session in 30 s: {r:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn esme(host_port: &str, user: &str, pass: &str) -> (EsmeHandle, mpsc::Receiver<Inbound>) {
    let (host, port) = host_port.split_once(':').unwrap();
    let mut config = EsmeConfig::new(
        host,
        port.parse().unwrap(),
        Credentials::new(user, pass).unwrap(),
    );
    config.backoff.initial = Duration::from_millis(200);
    config.backoff.max = Duration::from_secs(1);
    Esme::connect(config)
}

async fn next_inbound(inbound: &mut mpsc::Receiver<Inbound>, what: &str) -> Inbound {
    tokio::time::timeout(T, inbound.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} within {T:?}"))
        .expect("ESME closed")
}

/// An MO message (receipts for other messages are skipped).
async fn next_mo(inbound: &mut mpsc::Receiver<Inbound>, what: &str) -> ShortMessage {
    loop {
        match next_inbound(inbound, what).await {
            Inbound::Mo(m) => return m,
            Inbound::Receipt(r) => eprintln!("(receipt while waiting for {what}: {:?})", r.stat()),
        }
    }
}

async fn receipt_for(inbound: &mut mpsc::Receiver<Inbound>, id: &str) -> String {
    loop {
        match next_inbound(inbound, "a receipt").await {
            Inbound::Receipt(r) if r.message_id() == Some(id) => {
                return r.stat().unwrap_or("").to_owned()
            }
            other => eprintln!("(while waiting for the receipt of {id}: {other:?})"),
        }
    }
}

/// The whole exchange, from the SMSC's side of the handset.
async fn scenario(handset: &mut Handset, esme: &EsmeHandle, inbound: &mut mpsc::Receiver<Inbound>) {
    esme.wait_bound(T).await.expect("ESME bound");
    let menu = tokio::task::block_in_place(|| handset.wait_ready());
    assert!(menu.contains("Get apps"), "{menu}");
    assert!(menu.contains("1  Transit pass"), "{menu}");

    // The user picks the wallet: the agent's download request arrives as MO.
    let t0 = Instant::now();
    let r = tokio::task::block_in_place(|| handset.menu(&["--select", "wallet"]));
    assert!(r.ok, "{r:?}\n{}", handset.log());
    assert!(r.stdout.contains("selected 2 Wallet"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!("MO SMS sent to +{PLATFORM}")),
        "{}",
        r.stdout
    );
    let mo = next_mo(inbound, "the download request").await;
    eprintln!("menu selection → MO at the ESME: {:?}", t0.elapsed());
    assert_eq!(mo.source.address, MSISDN);
    assert_eq!(mo.destination.address, PLATFORM);
    assert_eq!(mo.destination.ton, 1);
    assert_eq!(mo.esm_class & 0x40, 0x40);
    assert_eq!((mo.protocol_id, mo.data_coding), (0x7F, 0xF6));
    let request = packet::unframe_command_sms(mo.user_data()).unwrap();
    let opened = packet::open_command(request, &keys(), Counter::from_u64(0).unwrap()).unwrap();
    assert_eq!(opened.header.tar, Tar(card::DOWNLOAD_REQUEST_TAR));
    assert_eq!(opened.header.counter.value(), 1);
    assert_eq!(
        opened.data,
        apdu::parse_hex("E11A 800677616C6C6574 4F10A0000005591010FFFFFFFF8900000100").unwrap()
    );

    // An MT secured packet: GET STATUS of the ISD; the PoR comes back as MO, then the receipt.
    let t0 = Instant::now();
    let script = apdu::parse_hex("80F28002024F00").unwrap();
    let packet = packet::secure_command(&header(1), &keys(), &script).unwrap();
    let parts = tpdu::split_packet(PacketKind::Command, &packet, ConcatRef::Eight(1)).unwrap();
    assert_eq!(parts.len(), 1);
    let ud = parts[0].encode(tpdu::Dcs::CLASS2_8BIT).unwrap().1;
    let mt = ShortMessage::sim_data_download(
        Address::international(PLATFORM),
        Address::international(MSISDN),
        ud,
    )
    .with_receipt();
    let id = esme.submit(mt).await.expect("MT submitted");
    let por_mo = next_mo(inbound, "the PoR").await;
    assert_eq!(por_mo.source.address, MSISDN);
    assert_eq!(por_mo.destination.address, PLATFORM);
    assert_eq!(por_mo.esm_class & 0x40, 0x40);
    assert_eq!(&por_mo.user_data()[..3], &[0x02, 0x71, 0x00]);
    let por = packet::unframe_response_sms(por_mo.user_data()).unwrap();
    let opened = packet::open_response(por, &header(1).por_security(), &keys()).unwrap();
    assert!(opened.secured);
    assert_eq!(opened.header.status, packet::ResponseStatus::PorOk);
    let response = CompactResponse::parse(&opened.data).unwrap();
    assert_eq!(response.last.sw, apdu::StatusWord::SUCCESS);
    assert_eq!(response.last.data.first(), Some(&0xE3), "GET STATUS answer");
    assert_eq!(receipt_for(inbound, &id.0).await, "DELIVRD");
    eprintln!("MT → PoR MO + receipt: {:?}", t0.elapsed());

    // An MT the card cannot take (a user-data header that does not parse): UNDELIV.
    let mut bad = ShortMessage::sim_data_download(
        Address::international(PLATFORM),
        Address::international(MSISDN),
        vec![0x09, 0x70, 0x00],
    )
    .with_receipt();
    bad.registered_delivery = 1;
    let id = esme.submit(bad).await.expect("MT submitted");
    assert_eq!(receipt_for(inbound, &id.0).await, "UNDELIV");

    let log = handset.log();
    assert!(log.contains("menu: Wallet selected → MO sent to"), "{log}");
    assert!(log.contains("→ ENVELOPE 9000 → PoR"), "{log}");
    assert!(!log.contains("404142434445"), "no keys in the log");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handset_virtual_card_direct_esme() {
    let dir = tempdir();
    let state = dir.path().join("card.json");
    make_card(&state);
    let endpoint = format!("127.0.0.1:{}", free_port());
    let mut handset = start_handset(
        dir.path(),
        &["--virtual", state.to_str().unwrap()],
        &endpoint,
    );
    let (esme, mut inbound) = esme(&endpoint, "jasmin", "jaspass");
    scenario(&mut handset, &esme, &mut inbound).await;

    // `handset menu` by number, and an item that does not exist.
    let r = handset.menu(&["--select", "9"]);
    assert!(!r.ok && r.stderr.contains("no menu item '9'"), "{r:?}");
    // A second handset on the same control socket is refused.
    let second = run(&[
        "handset",
        "--virtual",
        dir.path().join("other.json").to_str().unwrap(),
        "--smpp",
        &format!("smpp://jasmin:jaspass@127.0.0.1:{}", free_port()),
        "--msisdn",
        MSISDN,
        "--control",
        handset.control.to_str().unwrap(),
    ]);
    assert!(
        !second.ok && second.stderr.contains("another handset is running"),
        "{second:?}"
    );
}

const JASMIN_ESME: &str = "127.0.0.1:2775";
const JASMIN_HANDSET: &str = "127.0.0.1:2776";

fn jasmin_up() -> bool {
    ["127.0.0.1:2775", "127.0.0.1:8990"].iter().all(|a| {
        std::net::TcpStream::connect_timeout(&a.parse().unwrap(), Duration::from_millis(500))
            .is_ok()
    })
}

/// Waits (up to 5 minutes) until no one else listens on the handset port: other tests
/// through Jasmin take turns with this one.
fn wait_for_port(addr: &str) {
    let t0 = Instant::now();
    while std::net::TcpListener::bind(addr).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "{addr} stays taken by another test"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handset_through_jasmin() {
    let must = std::env::var("CARDWRIGHT_SMSC_TESTS").is_ok_and(|v| v == "1");
    if !jasmin_up() {
        assert!(
            !must,
            "CARDWRIGHT_SMSC_TESTS=1 but Jasmin is not up on 127.0.0.1:2775/8990 (scripts/smsc.sh start)"
        );
        eprintln!("skipped: Jasmin is not running (scripts/smsc.sh start; CARDWRIGHT_SMSC_TESTS=1 makes this a failure)");
        return;
    }
    let dir = tempdir();
    let state = dir.path().join("card.json");
    make_card(&state);
    tokio::task::block_in_place(|| wait_for_port(JASMIN_HANDSET));
    let mut handset = start_handset(
        dir.path(),
        &["--virtual", state.to_str().unwrap()],
        JASMIN_HANDSET,
    );
    let (esme, mut inbound) = esme(JASMIN_ESME, "cwesme", "cwpass");
    scenario(&mut handset, &esme, &mut inbound).await;
    let _ = esme.unbind().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handset_pcsc_reader() {
    if !pcsc::enabled() {
        return;
    }
    let dir = tempdir();
    let state = dir.path().join("card.json");
    make_card(&state);
    let state_path = state.to_str().unwrap().to_string();
    let _sim = tokio::task::block_in_place(|| pcsc::start_sim_in_reader(&state_path));
    let endpoint = format!("127.0.0.1:{}", free_port());
    let mut handset = start_handset(dir.path(), &["--reader", pcsc::READER], &endpoint);
    let (esme, mut inbound) = esme(&endpoint, "jasmin", "jaspass");
    scenario(&mut handset, &esme, &mut inbound).await;

    // The card pulled out (the virtual card's process stopped): the handset keeps running
    // and says so; an MT meanwhile is UNDELIV, not retried.
    drop(_sim);
    let t0 = Instant::now();
    while !handset.log().contains("the card is gone") {
        assert!(t0.elapsed() < T, "{}", handset.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mt = ShortMessage::sim_data_download(
        Address::international(PLATFORM),
        Address::international(MSISDN),
        vec![0x02, 0x70, 0x00, 0x01],
    )
    .with_receipt();
    let id = esme.submit(mt).await.expect("MT submitted");
    assert_eq!(receipt_for(&mut inbound, &id.0).await, "UNDELIV");
    assert!(handset.child.try_wait().unwrap().is_none(), "still running");
}
