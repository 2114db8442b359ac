//! A terminal with virtual cards in its readers, connected to a platform's relay by the real
//! terminal client (`relay::agent::run`) in a thread. The first reader's exchanges wait for
//! a gate the test opens: an answer that arrives while no APDU of it was answered came
//! before the card work, whatever the machine's speed.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay::agent::{AgentConfig, AgentError, Readers};
use relay::protocol::{ReaderReport, RelayFault};
use transport::CardChannel;

/// The readers: `(name, card)`; the first one's exchanges wait for `gate`.
pub struct Desk {
    readers: Vec<(String, card::VirtualChannel)>,
    gate: Arc<AtomicBool>,
    answered: Arc<AtomicU32>,
}

impl Desk {
    fn card(&mut self, reader: &str) -> Result<(usize, &mut card::VirtualChannel), RelayFault> {
        let i = self
            .readers
            .iter()
            .position(|(n, _)| n == reader)
            .ok_or_else(|| RelayFault::Other {
                message: format!("no reader {reader}"),
            })?;
        if i == 0 {
            while !self.gate.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok((i, &mut self.readers[i].1))
    }
}

impl Readers for Desk {
    fn list(&mut self) -> Vec<ReaderReport> {
        self.readers
            .iter()
            .map(|(name, c)| ReaderReport {
                name: name.clone(),
                card_present: true,
                atr: Some(apdu::hex(&c.atr())),
            })
            .collect()
    }
    fn transmit(&mut self, reader: &str, capdu: &[u8]) -> Result<Vec<u8>, RelayFault> {
        let (i, card) = self.card(reader)?;
        let r = card.transmit_raw(capdu).map_err(|e| RelayFault::Other {
            message: e.to_string(),
        });
        if i == 0 {
            self.answered.fetch_add(1, Ordering::SeqCst);
        }
        r
    }
    fn reset(&mut self, reader: &str) -> Result<Vec<u8>, RelayFault> {
        let (_, card) = self.card(reader)?;
        card.reset().map_err(|e| RelayFault::Other {
            message: e.to_string(),
        })?;
        Ok(card.atr())
    }
}

/// A terminal agent running in its thread; stopped (gate opened) when dropped.
pub struct Agent {
    /// The first reader's gate.
    pub gate: Arc<AtomicBool>,
    /// APDUs answered in the first reader.
    pub answered: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), AgentError>>>,
}

impl Agent {
    /// Connects terminal `terminal` with `token` to the platform at `url` (plain HTTP), its
    /// readers holding `readers`; the first reader's gate closed.
    pub fn connect(
        url: &str,
        token: &str,
        terminal: &str,
        readers: Vec<(&str, card::VirtualChannel)>,
    ) -> Agent {
        let gate = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut desk = Desk {
            readers: readers
                .into_iter()
                .map(|(n, c)| (n.to_string(), c))
                .collect(),
            gate: gate.clone(),
            answered: answered.clone(),
        };
        let cfg = AgentConfig {
            server: url.to_string(),
            token: Some(token.into()),
            terminal: terminal.into(),
            poll: Duration::from_millis(20),
            retry: Duration::from_millis(50),
            tls: None,
        };
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || relay::agent::run(&cfg, &mut desk, &stop))
        };
        Agent {
            gate,
            answered,
            stop,
            thread: Some(thread),
        }
    }

    /// Lets the first reader's exchanges go.
    pub fn open_gate(&self) {
        self.gate.store(true, Ordering::SeqCst);
    }

    /// APDUs answered in the first reader so far.
    pub fn answered(&self) -> u32 {
        self.answered.load(Ordering::SeqCst)
    }

    /// Waits (10 s at most) for the agent to end by itself: what it returned.
    pub fn ended(mut self) -> Result<(), AgentError> {
        let thread = self.thread.take().expect("running");
        let t0 = Instant::now();
        while !thread.is_finished() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the agent is still connected"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        thread.join().expect("agent thread")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.gate.store(true, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits (20 s at most) until `hub` lists `terminal` with `readers` readers.
pub async fn listed(hub: &relay::hub::Hub, terminal: &str, readers: usize) {
    let t0 = Instant::now();
    while !hub
        .terminals()
        .iter()
        .any(|t| t.terminal == terminal && t.readers.len() == readers)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{terminal} did not connect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
