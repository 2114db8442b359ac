//! PC/SC readers through pcsc-lite (the `pcsc` crate).

use crate::{CardChannel, TransportError};
use pcsc::{Context, Disposition, Protocols, Scope, ShareMode, State};
use std::ffi::CString;

/// A card in a PC/SC reader, connected in shared mode.
pub struct PcscChannel {
    card: pcsc::Card,
    reader: String,
    atr: Vec<u8>,
}

impl std::fmt::Debug for PcscChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscChannel")
            .field("reader", &self.reader)
            .finish()
    }
}

fn map(e: pcsc::Error) -> TransportError {
    match e {
        pcsc::Error::RemovedCard | pcsc::Error::ResetCard => TransportError::CardRemoved,
        pcsc::Error::NoSmartcard => TransportError::NoCard(String::new()),
        pcsc::Error::NoReadersAvailable | pcsc::Error::UnknownReader => {
            TransportError::NoReader(String::new())
        }
        pcsc::Error::NoService | pcsc::Error::ServiceStopped => {
            TransportError::Pcsc("the PC/SC service (pcscd) is not running".into())
        }
        other => TransportError::Pcsc(other.to_string()),
    }
}

/// A reader as PC/SC lists it, and whether a card is present.
#[derive(Debug, Clone)]
pub struct ReaderInfo {
    /// The reader name.
    pub name: String,
    /// Whether a card is in it.
    pub card_present: bool,
    /// The card's ATR (empty without a card).
    pub atr: Vec<u8>,
}

/// Lists the readers and whether each holds a card.
pub fn list_readers() -> Result<Vec<ReaderInfo>, TransportError> {
    let ctx = Context::establish(Scope::User).map_err(map)?;
    let names = ctx.list_readers_owned().map_err(map)?;
    let mut states: Vec<pcsc::ReaderState> = names
        .iter()
        .map(|n| pcsc::ReaderState::new(n.clone(), State::UNAWARE))
        .collect();
    if !states.is_empty() {
        ctx.get_status_change(std::time::Duration::from_millis(0), &mut states)
            .map_err(map)?;
    }
    Ok(states
        .iter()
        .map(|s| ReaderInfo {
            name: s.name().to_string_lossy().into_owned(),
            card_present: s.event_state().contains(State::PRESENT),
            atr: s.atr().to_vec(),
        })
        .collect())
}

/// The reader named `want`: the one with exactly that name, else the first whose name
/// contains it (case-insensitive), as [`PcscChannel::connect`] chooses.
pub fn find_reader<'a>(readers: &'a [ReaderInfo], want: &str) -> Option<&'a ReaderInfo> {
    let w = want.to_lowercase();
    readers
        .iter()
        .find(|r| r.name == want)
        .or_else(|| readers.iter().find(|r| r.name.to_lowercase().contains(&w)))
}

impl PcscChannel {
    /// Connects to the reader whose name contains `name` (case-insensitive), or, with
    /// `None`, to the first reader that holds a card.
    pub fn connect(name: Option<&str>) -> Result<Self, TransportError> {
        let readers = list_readers()?;
        let names = || {
            readers
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let chosen = match name {
            Some(want) => find_reader(&readers, want).ok_or_else(|| {
                TransportError::NoReader(format!(" named '{want}' (readers: {})", names()))
            })?,
            None => readers.iter().find(|r| r.card_present).ok_or_else(|| {
                if readers.is_empty() {
                    TransportError::NoReader(" (is pcscd running and a reader attached?)".into())
                } else {
                    TransportError::NoCard(format!("any reader ({})", names()))
                }
            })?,
        };
        let ctx = Context::establish(Scope::User).map_err(map)?;
        let cname = CString::new(chosen.name.clone())
            .map_err(|_| TransportError::Other("reader name contains NUL".into()))?;
        let card = ctx
            .connect(&cname, ShareMode::Shared, Protocols::ANY)
            .map_err(|e| match e {
                pcsc::Error::NoSmartcard | pcsc::Error::RemovedCard => {
                    TransportError::NoCard(chosen.name.clone())
                }
                other => map(other),
            })?;
        let atr = status_atr(&card).unwrap_or_else(|| chosen.atr.clone());
        Ok(Self {
            card,
            reader: chosen.name.clone(),
            atr,
        })
    }
}

fn status_atr(card: &pcsc::Card) -> Option<Vec<u8>> {
    let mut names = [0u8; 2048];
    let mut atr = [0u8; pcsc::MAX_ATR_SIZE];
    let st = card.status2(&mut names, &mut atr).ok()?;
    Some(st.atr().to_vec())
}

impl CardChannel for PcscChannel {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let r = self.card.transmit(capdu, &mut buf).map_err(map)?;
        Ok(r.to_vec())
    }
    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.card
            .reconnect(ShareMode::Shared, Protocols::ANY, Disposition::ResetCard)
            .map_err(map)?;
        if let Some(a) = status_atr(&self.card) {
            self.atr = a;
        }
        Ok(())
    }
    fn name(&self) -> String {
        self.reader.clone()
    }
}
