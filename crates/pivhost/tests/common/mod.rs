//! A virtual card (the `card` crate, PIV applet installed) through `card::VirtualChannel`,
//! recording every exchange.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use card::{CardConfig, VirtualChannel};
use transport::{CardChannel, TransportError};

pub type Log = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

/// The card's channel, logging each C-APDU with its R-APDU.
pub struct Sim {
    pub card: VirtualChannel,
    pub log: Log,
}

impl Sim {
    pub fn new() -> Self {
        Self {
            card: VirtualChannel::with_config(CardConfig {
                with_piv: true,
                ..CardConfig::default()
            }),
            log: Log::default(),
        }
    }

    /// Sends raw bytes to the card, bypassing the client (test set-up).
    pub fn raw(&mut self, hex: &str) -> Vec<u8> {
        self.card.card().transmit(&apdu::parse_hex(hex).unwrap())
    }
}

impl CardChannel for Sim {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let r = self.card.transmit_raw(capdu)?;
        self.log.lock().unwrap().push((capdu.to_vec(), r.clone()));
        Ok(r)
    }
    fn atr(&self) -> Vec<u8> {
        self.card.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.card.reset()
    }
    fn name(&self) -> String {
        self.card.name()
    }
}

pub fn hex(s: &str) -> Vec<u8> {
    apdu::parse_hex(s).unwrap()
}

/// The C-APDUs sent since the log was last cleared, in hex.
pub fn sent(log: &Log) -> Vec<String> {
    let mut g = log.lock().unwrap();
    let v = g.iter().map(|(c, _)| apdu::hex(c)).collect();
    g.clear();
    v
}

/// Vector lines (not comments) of a vector file.
pub fn vector_lines(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}
