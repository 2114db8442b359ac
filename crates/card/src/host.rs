//! The virtual card as a host-side [`transport::CardChannel`] (feature `transport`): the
//! in-process reader that `cardwright --sim FILE` and the tests of every host crate
//! (gpclient, pivhost, tsm, relay, server) drive the card through.
//!
//! The channel shares its card ([`VirtualChannel`] is `Clone`): a test can wrap one clone in
//! a faulty or logging channel and look at the card through another.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use transport::{CardChannel, TransportError};

use crate::{CardConfig, VirtualCard};

/// A [`VirtualCard`] in this process as a [`CardChannel`]. Clones share the card.
#[derive(Clone)]
pub struct VirtualChannel {
    card: Arc<Mutex<VirtualCard>>,
    name: String,
}

impl fmt::Debug for VirtualChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualChannel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl VirtualChannel {
    /// The card in a channel named "virtual card".
    pub fn new(card: VirtualCard) -> Self {
        Self::named(card, "virtual card".into())
    }

    /// The card in a channel with this name ([`CardChannel::name`], used in messages).
    pub fn named(card: VirtualCard, name: String) -> Self {
        Self {
            card: Arc::new(Mutex::new(card)),
            name,
        }
    }

    /// A new in-memory card made with `config` (nothing is persisted).
    pub fn with_config(config: CardConfig) -> Self {
        Self::new(VirtualCard::new(config))
    }

    /// The card itself, e.g. to inspect it or send bytes past the host's client. A card
    /// whose holder panicked is still returned: its state is the last one saved.
    pub fn card(&self) -> MutexGuard<'_, VirtualCard> {
        self.card.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CardChannel for VirtualChannel {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok(self.card().transmit(capdu))
    }
    fn atr(&self) -> Vec<u8> {
        self.card().atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.card().reset();
        Ok(())
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_card() {
        let mut a = VirtualChannel::with_config(CardConfig::default());
        let b = a.clone();
        assert_eq!(a.atr(), b.atr());
        // SELECT the ISD through one clone, then the other sees the same card.
        let r = a
            .transmit_raw(&apdu::parse_hex("00A4040008A000000151000000").unwrap())
            .unwrap();
        assert_eq!(&r[r.len() - 2..], [0x90, 0x00]);
        assert_eq!(b.card().life_cycle(), 0x01);
        assert_eq!(a.name(), "virtual card");
        assert!(format!("{a:?}").contains("virtual card"));
    }
}
