//! `cardwright agent --server URL`: an issuing terminal. It lends its readers to the
//! platform through the relay (crate `relay`): it reports readers and cards, relays APDUs,
//! and holds no keys (the platform computes the secure channel).

use crate::sim::SimChannel;
use anyhow::{Context, Result};
use relay::agent::{AgentConfig, Readers};
use relay::protocol::{ReaderReport, RelayFault};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use transport::{CardChannel, TransportError};

fn fault(e: TransportError) -> RelayFault {
    match e {
        TransportError::CardRemoved => RelayFault::CardRemoved,
        TransportError::NoCard(_) => RelayFault::NoCard,
        TransportError::NoReader(_) => RelayFault::UnknownReader,
        other => RelayFault::Other {
            message: other.to_string(),
        },
    }
}

/// The virtual card as the terminal's only reader.
struct SimReader {
    name: String,
    chan: SimChannel,
}

impl Readers for SimReader {
    fn list(&mut self) -> Vec<ReaderReport> {
        vec![ReaderReport {
            name: self.name.clone(),
            card_present: true,
            atr: Some(apdu::hex(&self.chan.atr())),
        }]
    }
    fn transmit(&mut self, reader: &str, capdu: &[u8]) -> Result<Vec<u8>, RelayFault> {
        if reader != self.name {
            return Err(RelayFault::UnknownReader);
        }
        self.chan.transmit_raw(capdu).map_err(fault)
    }
    fn reset(&mut self, reader: &str) -> Result<Vec<u8>, RelayFault> {
        if reader != self.name {
            return Err(RelayFault::UnknownReader);
        }
        self.chan.reset().map_err(fault)?;
        Ok(self.chan.atr())
    }
}

/// PC/SC readers (those whose name contains `filter`, if given), connected on demand.
#[cfg(feature = "pcsc")]
struct PcscReaders {
    filter: Option<String>,
    open: std::collections::HashMap<String, transport::pcsc::PcscChannel>,
}

#[cfg(feature = "pcsc")]
impl PcscReaders {
    fn allowed(&self, name: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| name.to_lowercase().contains(&f.to_lowercase()))
    }
    fn channel(&mut self, reader: &str) -> Result<&mut transport::pcsc::PcscChannel, RelayFault> {
        if !self.allowed(reader) {
            return Err(RelayFault::UnknownReader);
        }
        if !self.open.contains_key(reader) {
            let c = transport::pcsc::PcscChannel::connect(Some(reader)).map_err(fault)?;
            if c.name() != reader {
                return Err(RelayFault::UnknownReader);
            }
            self.open.insert(reader.to_string(), c);
        }
        self.open.get_mut(reader).ok_or(RelayFault::UnknownReader)
    }
}

#[cfg(feature = "pcsc")]
impl Readers for PcscReaders {
    fn list(&mut self) -> Vec<ReaderReport> {
        let readers = transport::pcsc::list_readers().unwrap_or_default();
        // Forget connections to cards that left.
        self.open
            .retain(|name, _| readers.iter().any(|r| &r.name == name && r.card_present));
        readers
            .into_iter()
            .filter(|r| self.allowed(&r.name))
            .map(|r| ReaderReport {
                atr: r.card_present.then(|| apdu::hex(&r.atr)),
                name: r.name,
                card_present: r.card_present,
            })
            .collect()
    }
    fn transmit(&mut self, reader: &str, capdu: &[u8]) -> Result<Vec<u8>, RelayFault> {
        let r = self.channel(reader)?.transmit_raw(capdu);
        if r.is_err() {
            self.open.remove(reader);
        }
        r.map_err(fault)
    }
    fn reset(&mut self, reader: &str) -> Result<Vec<u8>, RelayFault> {
        let c = self.channel(reader)?;
        c.reset().map_err(fault)?;
        Ok(c.atr())
    }
}

/// Runs the terminal until killed.
pub fn run(
    server: &str,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    token: Option<&str>,
    terminal: &str,
    reader: Option<String>,
    sim: Option<PathBuf>,
) -> Result<()> {
    let config = AgentConfig {
        server: server.to_string(),
        token: token.map(str::to_string),
        terminal: terminal.to_string(),
        poll: Duration::from_millis(250),
        retry: Duration::from_secs(1),
        tls,
    };
    let stop = AtomicBool::new(false);
    tracing::info!(%server, %terminal, "issuing terminal: lending readers to the platform");
    match sim {
        Some(path) => {
            let chan = crate::sim::open_channel(&path)?;
            let mut readers = SimReader {
                name: reader.unwrap_or_else(|| "Virtual card".into()),
                chan,
            };
            relay::agent::run(&config, &mut readers, &stop).context("terminal")?;
        }
        None => run_pcsc(&config, reader, &stop)?,
    }
    Ok(())
}

#[cfg(feature = "pcsc")]
fn run_pcsc(config: &AgentConfig, filter: Option<String>, stop: &AtomicBool) -> Result<()> {
    let mut readers = PcscReaders {
        filter,
        open: Default::default(),
    };
    relay::agent::run(config, &mut readers, stop).context("terminal")?;
    Ok(())
}

#[cfg(not(feature = "pcsc"))]
fn run_pcsc(_config: &AgentConfig, _filter: Option<String>, _stop: &AtomicBool) -> Result<()> {
    anyhow::bail!("this cardwright was built without PC/SC support: use --sim FILE, or rebuild with `--features pcsc`")
}
