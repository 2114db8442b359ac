//! Over-the-air download end to end (issue 12) through a real SMSC: `cardwright serve
//! --ota --smpp …` (the platform's ESME bound to Jasmin), `cardwright handset` with a
//! virtual card state file (its SMSC-facing endpoint bound by Jasmin), the user picking
//! "Wallet" in the card's menu → MO download request → create-SD → the 10 KB
//! application loaded and installed over SMS → listed by an independent GP channel; then
//! the same request again: no second SD, a session done without sending. Twice: the card
//! as a state file in the handset's process (`--virtual`), and the card on pcscd + vpcd
//! (`cardwright sim run --vpcd`, `handset --reader 'Virtual PCD 00 00'`) when
//! `CARDWRIGHT_PCSC_TESTS=1`.
//!
//! `OTA_E2E_LOGS=1` prints the `serve` and `handset` logs of each download.
//!
//! `CARDWRIGHT_SMSC_TESTS=1` makes it a must (Jasmin on 127.0.0.1:2775, its connector to
//! 127.0.0.1:2776: `scripts/smsc.sh start`); otherwise it is skipped with a message.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use card::{CardConfig, DownloadAgent, MenuEntry, VirtualCard};
use common::*;
use kms::MasterKey;
use tsm::ota::engine::{Engine, EngineConfig};
use tsm::ota::{CatalogEntry, SessionState};
use tsm::Store;

const MASTER: &str = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
use tsm::ota::testing::{CARD, ICCID, MSISDN};
const PLATFORM: &str = "+4900";
const JASMIN_HANDSET: &str = "127.0.0.1:2776";

fn jasmin_up() -> bool {
    ["127.0.0.1:2775", "127.0.0.1:8990"].iter().all(|a| {
        std::net::TcpStream::connect_timeout(&a.parse().unwrap(), Duration::from_millis(500))
            .is_ok()
    })
}

/// Waits (up to 5 minutes) until no one else listens on the handset port: the tests
/// through Jasmin take turns.
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

/// A child process killed on drop (its log printed when the test failed).
struct Proc {
    child: Child,
    log: PathBuf,
    what: &'static str,
}

impl Proc {
    fn start(what: &'static str, dir: &Path, args: &[&str]) -> Proc {
        let log = dir.join(format!("{what}.log"));
        let child = Command::new(bin())
            .args(args)
            .env("CARDWRIGHT_LOG", "info")
            .env("CARDWRIGHT_MASTER_KEY", MASTER)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn cardwright");
        Proc { child, log, what }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.what, self.log());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.what, self.log());
        }
    }
}

/// The platform: database, key store, a written card enrolled for OTA, the package and
/// its catalog entry. Returns the catalog entry, the card's SCP80 keys and its SCP81 PSK.
fn platform(dir: &Path) -> (CatalogEntry, tsm::ota::scp80::Scp80KeySet, Vec<u8>) {
    let p = tsm::ota::testing::platform(dir, MasterKey::from_hex(MASTER).unwrap(), 10 * 1024);
    let (store, keys, entry) = (p.store, p.keys, p.entry);
    // The card's SCP80 keys, derived exactly as the engine does.
    let engine = Engine::new(
        store.clone(),
        std::sync::Arc::new(keys),
        EngineConfig::default(),
    );
    let c = store.ota_card(CARD).unwrap().unwrap();
    (
        entry,
        engine.card_keys(&c).unwrap(),
        engine.card_psk(&c).unwrap().to_vec(),
    )
}

fn sessions(dir: &Path) -> Vec<tsm::ota::Session> {
    let url = format!("sqlite:{}", dir.join("tsm.db").display());
    Store::open(&url).unwrap().ota_sessions(CARD, 10).unwrap()
}

fn mt_sms(dir: &Path) -> usize {
    let db = rusqlite::Connection::open(dir.join("tsm.db")).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM ota_messages WHERE direction = 'mt'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap_or(-1) as usize
}

/// Waits until the newest of at least `n` sessions is finished; returns it.
fn wait_session(dir: &Path, n: usize, procs: &mut [&mut Proc]) -> tsm::ota::Session {
    let t0 = Instant::now();
    loop {
        for p in procs.iter_mut() {
            p.alive();
        }
        let s = sessions(dir);
        if s.len() >= n && !matches!(s[0].state, SessionState::Pending | SessionState::Running) {
            return s[0].clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no finished session {n} in 120 s: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn menu(control: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["handset", "menu", "--control", control.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn ota_download_through_jasmin() {
    download(false, false);
}

#[test]
fn ota_download_through_jasmin_to_a_card_on_pcscd() {
    if !pcsc::enabled() {
        return;
    }
    download(true, false);
}

/// The same download, the application over SCP81: the request by SMS, the trigger by
/// SMS, then the card's admin agent opens TLS-PSK to `serve --ota-https` through the
/// handset's BIP relay and runs the scripts it gets.
#[test]
fn ota_download_over_https_through_jasmin() {
    download(false, true);
}

/// Over SCP81 with the card on pcscd + vpcd: the handset relays the card's BIP channel
/// from the reader.
#[test]
fn ota_download_over_https_to_a_card_on_pcscd() {
    if !pcsc::enabled() {
        return;
    }
    download(true, true);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The tests share Jasmin's connector port (2776): one at a time.
static JASMIN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether the tests through Jasmin can run (a failure when `CARDWRIGHT_SMSC_TESTS=1` and
/// Jasmin is down; skipped with a message otherwise).
fn jasmin_or_skip() -> bool {
    let must = std::env::var("CARDWRIGHT_SMSC_TESTS").is_ok_and(|v| v == "1");
    if !jasmin_up() {
        assert!(
            !must,
            "CARDWRIGHT_SMSC_TESTS=1 but Jasmin is not up on 127.0.0.1:2775/8990 (scripts/smsc.sh start)"
        );
        eprintln!("skipped: Jasmin is not running (scripts/smsc.sh start; CARDWRIGHT_SMSC_TESTS=1 makes this a failure)");
        return false;
    }
    true
}

/// A platform, a card and the commands to run them through Jasmin.
struct Lab {
    dir: tempfile::TempDir,
    entry: CatalogEntry,
    config: CardConfig,
    state: PathBuf,
    db: String,
    keystore: String,
    control: PathBuf,
    https_listen: String,
    reader: bool,
}

impl Lab {
    /// The platform and a virtual card state file holding the platform's OTA keys (and,
    /// with `https`, its PSK); `reader`: the card will run on pcscd + vpcd.
    fn new(reader: bool, https: bool) -> Lab {
        let dir = tempdir();
        let d = dir.path();
        let (entry, k, psk) = platform(d);
        let key =
            |k: &Option<ota::packet::Key>| scp::Key::aes(k.as_ref().unwrap().expose()).unwrap();
        let mut config = CardConfig::default();
        if https {
            // The PSK the platform derives, in the ISD as key set 40.
            config = config.with_scp81_psk(
                tsm::ota::scp81::PSK_KVN,
                &tsm::ota::scp81::psk_identity(ICCID),
                &psk,
            );
        }
        let config = config
            .with_scp80_keys(k.kvn, key(&k.keys.kic), key(&k.keys.kid))
            .with_download_agent(DownloadAgent::new(
                PLATFORM,
                k.kvn,
                "Get apps",
                vec![MenuEntry::new("wallet", "Wallet")],
            ));
        let state = d.join("card.json");
        drop(VirtualCard::open(&state, config.clone()).unwrap());
        Lab {
            entry,
            config,
            state,
            db: format!("sqlite:{}", d.join("tsm.db").display()),
            keystore: format!("file:{}", d.join("keys.json").display()),
            control: d.join("handset.sock"),
            https_listen: format!("127.0.0.1:{}", free_port()),
            reader,
            dir,
        }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    /// `cardwright serve --ota` on this platform, `extra` options appended.
    fn serve(&self, https: bool, extra: &[&str]) -> Proc {
        let mut args = vec![
            "serve",
            "--ota",
            "--smpp",
            "smpp://cwesme:cwpass@127.0.0.1:2775",
            "--ota-address",
            PLATFORM,
            "--db",
            &self.db,
            "--keystore",
            &self.keystore,
            "--listen",
            "127.0.0.1:0",
        ];
        if https {
            args.extend(["--ota-https", &self.https_listen]);
        }
        args.extend_from_slice(extra);
        Proc::start("serve", self.d(), &args)
    }

    /// `cardwright handset` for the card (in process, or the reader), `extra` appended.
    fn handset(&self, extra: &[&str]) -> Proc {
        wait_for_port(JASMIN_HANDSET);
        let state = self.state.to_str().unwrap();
        let card: [&str; 2] = if self.reader {
            ["--reader", pcsc::READER]
        } else {
            ["--virtual", state]
        };
        let mut args = vec![
            "handset",
            card[0],
            card[1],
            "--smpp",
            "smpp://jasmin:jaspass@127.0.0.1:2776",
            "--msisdn",
            MSISDN,
            "--control",
            self.control.to_str().unwrap(),
            "--poll-ms",
            "100",
        ];
        args.extend_from_slice(extra);
        Proc::start("handset", self.d(), &args)
    }

    /// Waits until the card's menu is up, Jasmin bound to the handset and the platform
    /// bound to Jasmin.
    fn wait_ready(&self, serve: &mut Proc, handset: &mut Proc) {
        let t0 = Instant::now();
        loop {
            handset.alive();
            serve.alive();
            let r = menu(&self.control, &[]);
            if r.ok
                && r.stdout.contains("Wallet")
                && !r.stdout.contains("bound: 0")
                && serve.log().contains("SMSC: bound")
            {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "not ready in 60 s: {r:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The user picks "Wallet" in the card's menu.
    fn select(&self) {
        let r = menu(&self.control, &["--select", "Wallet"]);
        assert!(r.ok, "{r:?}");
    }

    /// An independent GP channel (SCP03, the card's own keys) sees the SD, the load file
    /// and the instance extradited to the SD, and one SD only. The card's process must
    /// be stopped first (it holds the state file).
    fn verify_card(&self) {
        let card = VirtualCard::open(&self.state, self.config.clone()).unwrap();
        let mut client = gpclient::GpClient::new(transport::Traced::new(
            card::VirtualChannel::new(card),
            None,
        ));
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
        let entry = &self.entry;
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

    /// The platform can open SCP11b to the new SD: its key pair generated on the card,
    /// CERT.SD (GET DATA `BF21`) verified against the platform's `ota-sd-ca` key.
    fn verify_scp11_to_the_sd(&self) {
        let signing = self
            .keystore
            .parse::<kms::StoreConfig>()
            .unwrap()
            .open_signing_with_master(Some(MasterKey::from_hex(MASTER).unwrap()))
            .unwrap();
        let ca = signing.signing_key("ota-sd-ca").unwrap();
        let ca_pub = scp::scp11::PublicKey::from_spki_der(ca.public_key_spki()).unwrap();
        let card = VirtualCard::open(&self.state, self.config.clone()).unwrap();
        let mut client = gpclient::GpClient::new(transport::Traced::new(
            card::VirtualChannel::new(card),
            None,
        ));
        let mut o = gpclient::scp11::Scp11Options::new(
            scp::scp11::Variant::B,
            tsm::ota::plan::SD_KEY_KVN,
            gpclient::scp11::SdTrust::Key(ca_pub),
        );
        o.sd = Some(self.entry.sd);
        let info = client.open_scp11(&o).expect("SCP11b to the new SD");
        assert!(info.verified, "CERT.SD verified against the platform's CA");
        // A command through the channel: GET STATUS of the SD itself.
        gpclient::ops::registry(&mut client).expect("GET STATUS over SCP11b");
    }
}

/// The whole download; `reader`: the card on pcscd + vpcd rather than in the handset;
/// `https`: the application over SCP81 rather than SMS.
fn download(reader: bool, https: bool) {
    let _turn = JASMIN.lock().unwrap_or_else(|e| e.into_inner());
    if !jasmin_or_skip() {
        return;
    }
    let lab = Lab::new(reader, https);
    let d = lab.d();
    // On pcscd: the card runs in its own process behind vpcd's reader.
    let sim = reader.then(|| pcsc::start_sim_in_reader(lab.state.to_str().unwrap()));
    let mut serve = lab.serve(https, &["--ota-por-timeout", "20"]);
    let mut handset = lab.handset(&[]);
    lab.wait_ready(&mut serve, &mut handset);

    let t0 = Instant::now();
    lab.select();
    let s = wait_session(d, 1, &mut [&mut serve, &mut handset]);
    let wall = t0.elapsed();
    assert_eq!(s.state, SessionState::Done, "{}", s.detail);
    let mt = mt_sms(d);
    let sms = serve.log().matches("OTA SMS submitted").count();
    if std::env::var("OTA_E2E_LOGS").is_ok() {
        eprintln!(
            "--- serve ---\n{}\n--- handset ---\n{}",
            serve.log(),
            handset.log()
        );
    }
    eprintln!(
        "10 KB CAP over {}{}: {mt} MT messages, {sms} SMS (create-SD included), {:.1} s wall time; session: {}",
        if https { "HTTPS (SCP81), triggered through Jasmin" } else { "Jasmin" },
        if reader { " to a card on pcscd" } else { "" },
        wall.as_secs_f64(),
        s.detail
    );
    if https {
        assert_eq!(s.bearer, tsm::ota::Bearer::Https, "{s:?}");
        // By SMS only the triggers (the agent's request asks for no PoR): one for the
        // create-SD session, one for CERT.SD and the load (CERT.SD needs PK.SD first).
        assert_eq!(sms, 2, "{}", serve.log());
        assert!(s.detail.contains("CERT.SD stored"), "{}", s.detail);
        assert!(
            serve.log().contains("Completed"),
            "the SCP81 session completed: {}",
            serve.log()
        );
    } else {
        assert_eq!(s.bearer, tsm::ota::Bearer::Sms, "{s:?}");
        assert!(s.detail.contains("CERT.SD stored"), "{}", s.detail);
    }

    // Again: the SD is there, nothing is sent.
    lab.select();
    let s2 = wait_session(d, 2, &mut [&mut serve, &mut handset]);
    assert_eq!(s2.state, SessionState::Done, "{}", s2.detail);
    assert_eq!(mt_sms(d), mt, "nothing sent the second time");
    drop(handset);
    // The card's process holds its state file: stopped before the file is opened here (and
    // gone from the reader before the next test's card comes).
    if let Some(sim) = sim {
        drop(sim);
        pcsc::wait_for_no_card();
    }
    lab.verify_card();
    lab.verify_scp11_to_the_sd();
}

/// Waits until the running session has acknowledged at least `step` steps.
fn wait_step(dir: &Path, step: u32, procs: &mut [&mut Proc]) {
    let t0 = Instant::now();
    loop {
        for p in procs.iter_mut() {
            p.alive();
        }
        let s = sessions(dir);
        if s.first().is_some_and(|s| s.step >= step) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "step {step} not reached in 120 s: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many packets of the log went out more than once (resends).
fn resent(dir: &Path) -> usize {
    let db = rusqlite::Connection::open(dir.join("tsm.db")).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM ota_messages WHERE direction = 'mt' AND status = 'resent'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as usize
}

/// A fault in the whole flow through Jasmin: the platform's process killed (SIGKILL)
/// mid-download, then started again on the same database: it resumes by resending the
/// packet whose PoR it waited for (same counter: if the card ran it, it answers "counter
/// low" and the step counts as done) and the download completes with one SD.
#[test]
fn ota_download_resumes_after_the_server_is_killed() {
    let _turn = JASMIN.lock().unwrap_or_else(|e| e.into_inner());
    if !jasmin_or_skip() {
        return;
    }
    let lab = Lab::new(false, false);
    let d = lab.d();
    let mut serve = lab.serve(false, &["--ota-por-timeout", "5"]);
    let mut handset = lab.handset(&[]);
    lab.wait_ready(&mut serve, &mut handset);
    lab.select();
    wait_step(d, 4, &mut [&mut serve, &mut handset]);
    drop(serve); // killed: no clean shutdown
    let before = sessions(d)[0].clone();
    assert_eq!(before.state, SessionState::Running, "{before:?}");
    let mut serve = lab.serve(false, &["--ota-por-timeout", "5"]);
    let s = wait_session(d, 1, &mut [&mut serve, &mut handset]);
    assert_eq!(s.state, SessionState::Done, "{}", s.detail);
    assert!(
        serve.log().contains("open sessions resumed"),
        "{}",
        serve.log()
    );
    assert!(resent(d) >= 1, "resumed by a resend");
    eprintln!(
        "server killed at step {} of {}: resumed, done; {} resends; {}",
        before.step,
        before.steps,
        resent(d),
        s.detail
    );
    drop(handset);
    lab.verify_card();
}

/// MT SMS lost over the air (the handset's `--lose-mt`): the 3rd (a part of a
/// multi-SMS packet: the packet never completes, nothing runs) and the 20th. The PoR
/// time-outs resend each packet and the download completes with one SD.
#[test]
fn ota_download_recovers_lost_mt_sms() {
    let _turn = JASMIN.lock().unwrap_or_else(|e| e.into_inner());
    if !jasmin_or_skip() {
        return;
    }
    let lab = Lab::new(false, false);
    let d = lab.d();
    let mut serve = lab.serve(false, &["--ota-por-timeout", "5"]);
    let mut handset = lab.handset(&["--lose-mt", "3,20"]);
    lab.wait_ready(&mut serve, &mut handset);
    lab.select();
    let s = wait_session(d, 1, &mut [&mut serve, &mut handset]);
    assert_eq!(s.state, SessionState::Done, "{}", s.detail);
    assert_eq!(handset.log().matches("lost over the air").count(), 2);
    assert!(resent(d) >= 2, "each lost packet resent: {}", resent(d));
    eprintln!(
        "MT SMS 3 and 20 lost: done; {} resends; {}",
        resent(d),
        s.detail
    );
    drop(handset);
    lab.verify_card();
}

/// The card switched off mid-download: the card on pcscd + vpcd (`sim run --vpcd`) is
/// stopped while the handset stays on (MT SMS meanwhile are undeliverable), and started
/// again 4 s later from its saved state; the PoR time-outs resend; the card, reset, has
/// lost the LOAD in progress (`6985`) and the platform loads again from INSTALL [for
/// load]; the download completes with one SD.
#[test]
fn ota_download_to_a_card_switched_off_mid_download() {
    if !pcsc::enabled() {
        return;
    }
    let _turn = JASMIN.lock().unwrap_or_else(|e| e.into_inner());
    if !jasmin_or_skip() {
        return;
    }
    let lab = Lab::new(true, false);
    let d = lab.d();
    let sim = pcsc::start_sim_in_reader(lab.state.to_str().unwrap());
    let mut serve = lab.serve(false, &["--ota-por-timeout", "6"]);
    let mut handset = lab.handset(&[]);
    lab.wait_ready(&mut serve, &mut handset);
    lab.select();
    wait_step(d, 5, &mut [&mut serve, &mut handset]);
    drop(sim); // power gone
    let off = sessions(d)[0].clone();
    std::thread::sleep(Duration::from_secs(4));
    let sim = pcsc::start_sim(lab.state.to_str().unwrap());
    let s = wait_session(d, 1, &mut [&mut serve, &mut handset]);
    assert_eq!(s.state, SessionState::Done, "{}", s.detail);
    let db = rusqlite::Connection::open(d.join("tsm.db")).unwrap();
    let restarts: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM ota_messages WHERE kind = 'load-restart'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    eprintln!(
        "card off at step {} of {} for 4 s: done; {} resends, {restarts} load restarts; {}",
        off.step,
        off.steps,
        resent(d),
        s.detail
    );
    drop(handset);
    drop(sim);
    pcsc::wait_for_no_card();
    lab.verify_card();
}
