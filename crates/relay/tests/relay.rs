//! Terminal relay end to end: a real HTTP/WebSocket hub on loopback, an agent thread lending
//! a virtual card, and the platform driving that card through the relay with gpclient.

use relay::agent::{self, AgentConfig, AgentError, Readers};
use relay::hub::{Hub, HubError, StaticTokens};
use relay::protocol::{ReaderReport, RelayFault};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use transport::{CardChannel, Traced, TransportError};

const READER: &str = "Desk reader 0";

/// A terminal with one reader holding a virtual card, which can be "pulled out".
struct SimReaders {
    card: card::VirtualChannel,
    present: Arc<AtomicBool>,
}

impl Readers for SimReaders {
    fn list(&mut self) -> Vec<ReaderReport> {
        let present = self.present.load(Ordering::SeqCst);
        vec![ReaderReport {
            name: READER.into(),
            card_present: present,
            atr: present.then(|| apdu::hex(&self.card.atr())),
        }]
    }
    fn transmit(&mut self, reader: &str, capdu: &[u8]) -> Result<Vec<u8>, RelayFault> {
        if reader != READER {
            return Err(RelayFault::UnknownReader);
        }
        if !self.present.load(Ordering::SeqCst) {
            return Err(RelayFault::CardRemoved);
        }
        self.card
            .transmit_raw(capdu)
            .map_err(|e| RelayFault::Other {
                message: e.to_string(),
            })
    }
    fn reset(&mut self, _reader: &str) -> Result<Vec<u8>, RelayFault> {
        self.card.reset().map_err(|e| RelayFault::Other {
            message: e.to_string(),
        })?;
        Ok(self.card.atr())
    }
}

struct Platform {
    hub: Arc<Hub>,
    url: String,
    _rt: tokio::runtime::Runtime,
}

fn platform() -> Platform {
    let tokens = StaticTokens::new()
        .with("token-desk-1", "desk-1")
        .with("token-desk-2", "desk-2");
    let hub = Hub::new(Arc::new(tokens), Duration::from_secs(5));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = hub.router();
    rt.spawn(async move { axum::serve(listener, app).await });
    Platform { hub, url, _rt: rt }
}

fn config(url: &str, token: &str, terminal: &str) -> AgentConfig {
    AgentConfig {
        server: url.into(),
        token: Some(token.into()),
        terminal: terminal.into(),
        poll: Duration::from_millis(20),
        retry: Duration::from_millis(50),
        tls: None,
    }
}

struct Agent {
    stop: Arc<AtomicBool>,
    present: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), AgentError>>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_agent(cfg: AgentConfig) -> Agent {
    let stop = Arc::new(AtomicBool::new(false));
    let present = Arc::new(AtomicBool::new(true));
    let (s, p) = (stop.clone(), present.clone());
    let thread = std::thread::spawn(move || {
        let mut readers = SimReaders {
            card: card::VirtualChannel::with_config(card::CardConfig::default()),
            present: p,
        };
        agent::run(&cfg, &mut readers, &s)
    });
    Agent {
        stop,
        present,
        thread: Some(thread),
    }
}

fn wait_for(hub: &Hub, what: impl Fn(&Hub) -> bool) {
    let t0 = Instant::now();
    while !what(hub) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for the terminal"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn open(
    chan: impl CardChannel + 'static,
) -> Result<gpclient::GpClient<Box<dyn CardChannel>>, gpclient::ClientError> {
    let boxed: Box<dyn CardChannel> = Box::new(chan);
    let mut cl = gpclient::GpClient::new(Traced::new(boxed, None));
    cl.open_secure_channel(&gpclient::OpenOptions {
        keys: gpclient::KeySpec::same(&gpclient::DEFAULT_TEST_KEY, scp::Diversification::None, 0),
        level: scp::SecurityLevel(0x03),
        scp: None,
        sd: None,
    })?;
    Ok(cl)
}

#[test]
fn platform_drives_a_card_through_a_terminal() {
    let p = platform();
    let agent = start_agent(config(&p.url, "token-desk-1", "desk-1"));
    wait_for(&p.hub, |h| {
        h.terminals().iter().any(|t| t.terminal == "desk-1")
    });
    let t = p.hub.terminals();
    assert_eq!(t[0].readers[0].name, READER);

    // A secure channel (C-MAC + C-DECRYPTION) computed here, carried by the terminal.
    let chan = p.hub.channel("desk-1", READER).unwrap();
    assert!(!chan.atr().is_empty());
    let mut cl = open(chan).unwrap();
    let reg = gpclient::ops::registry(&mut cl).unwrap();
    assert_eq!(reg.isd[0].aid, gp::aid::ISD_AID);
    // One job per reader: no second channel while the first is out.
    assert!(matches!(
        p.hub.channel("desk-1", READER),
        Err(HubError::Busy { .. })
    ));

    // A reader the terminal does not have, a terminal that is not there.
    assert!(matches!(
        p.hub.channel("desk-1", "other"),
        Err(HubError::UnknownReader { .. })
    ));
    assert!(matches!(
        p.hub.channel("desk-2", READER),
        Err(HubError::NotConnected(_))
    ));

    // The card is pulled out mid-session: a clear error, no hang.
    agent.present.store(false, Ordering::SeqCst);
    let err = gpclient::ops::registry(&mut cl).unwrap_err();
    assert!(
        matches!(
            err,
            gpclient::ClientError::Transport(TransportError::CardRemoved)
        ),
        "{err}"
    );
    // The platform learns that the reader is empty.
    wait_for(&p.hub, |h| {
        h.terminals()
            .first()
            .is_some_and(|t| !t.readers[0].card_present)
    });
    assert!(matches!(
        p.hub.channel("desk-1", READER),
        Err(HubError::NoCard { .. })
    ));

    // The reader is given back with the channel.
    drop(cl);

    // The terminal goes away: requests fail at once instead of hanging.
    agent.present.store(true, Ordering::SeqCst);
    wait_for(&p.hub, |h| {
        h.terminals()
            .first()
            .is_some_and(|t| t.readers[0].card_present)
    });
    // An API request waits for a reader another job holds, up to a limit.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let first = p.hub.channel("desk-1", READER).unwrap();
    let short = rt.block_on(
        p.hub
            .channel_when_free("desk-1", READER, Duration::from_millis(60)),
    );
    assert!(matches!(short, Err(HubError::Busy { .. })));
    let giver = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        drop(first);
    });
    let t0 = Instant::now();
    let second = rt
        .block_on(
            p.hub
                .channel_when_free("desk-1", READER, Duration::from_secs(10)),
        )
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(100), "it waited");
    giver.join().unwrap();
    drop(second);
    let mut chan = p.hub.channel("desk-1", READER).unwrap();
    drop(agent);
    wait_for(&p.hub, |h| h.terminals().is_empty());
    assert!(chan.transmit_raw(&[0x00, 0xA4, 0x04, 0x00]).is_err());
}

#[test]
fn terminals_must_present_their_own_token() {
    let p = platform();
    let stop = AtomicBool::new(false);
    let mut readers = SimReaders {
        card: card::VirtualChannel::with_config(card::CardConfig::default()),
        present: Arc::new(AtomicBool::new(true)),
    };
    let e = agent::run(&config(&p.url, "wrong", "desk-1"), &mut readers, &stop).unwrap_err();
    assert!(matches!(e, AgentError::Unauthorized), "{e}");
    let e = agent::run(
        &config(&p.url, "token-desk-1", "desk-2"),
        &mut readers,
        &stop,
    )
    .unwrap_err();
    assert!(
        matches!(e, AgentError::Refused(ref r) if r.contains("desk-1")),
        "{e}"
    );
    assert!(p.hub.terminals().is_empty());
}
