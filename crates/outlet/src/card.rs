//! Which card is in the reader, and its keys: from the INITIALIZE UPDATE answer alone (no
//! authentication), as the issuer's platform wrote it.
//!
//! The key diversification data is the card number in packed BCD
//! ([`kms::card_number_from_kdd`]); the key version number names the base key version
//! ([`kms::kvn_for_version`] with the category's initial KVN). A card whose KDD is not a
//! card number, whose key set is not one of the category's derived ones, or that speaks
//! another protocol is not this outlet's: [`InstallError::WrongCard`], before any EXTERNAL
//! AUTHENTICATE. The keys are then derived in the token (`derive_for_kdd`); the card
//! cryptogram is checked before EXTERNAL AUTHENTICATE (`gpclient`), and a failed
//! authentication is never retried.

use gpclient::GpClient;
use scp::{InitUpdateResponse, SecurityLevel, StaticKeys};
use transport::{CardChannel, Traced, TransportError};

use crate::{CardState, InstallError, Module};

/// The security level of the module's channels: C-MAC, C-DECRYPTION and R-MAC (the
/// registry and the card's answers are authenticated; commands are confidential).
pub(crate) const LEVEL: SecurityLevel = SecurityLevel::MAC_ENC_RMAC;

/// A card identified from its INITIALIZE UPDATE answer.
#[derive(Debug, Clone)]
pub(crate) struct Identified {
    /// The card number.
    pub card: String,
    /// The base key version its key set derives from.
    pub version: u32,
    /// The key diversification data.
    pub kdd: [u8; 10],
}

impl Module {
    /// Who the card is, from its INITIALIZE UPDATE answer (see the module documentation).
    pub(crate) fn identify(&self, iu: &InitUpdateResponse) -> Result<Identified, InstallError> {
        let cards = &self.config.cards;
        let card = kms::card_number_from_kdd(&iu.kdd).ok_or_else(|| {
            InstallError::WrongCard(
                "its key diversification data is not a card number (not issued by this platform)"
                    .into(),
            )
        })?;
        if iu.scp != 0x03 {
            return Err(InstallError::WrongCard(format!(
                "it speaks SCP{:02X}; this outlet opens SCP03",
                iu.scp
            )));
        }
        if iu.key_version == cards.initial_kvn {
            return Err(InstallError::WrongCard(
                "it still has its initial keys (not issued yet)".into(),
            ));
        }
        let versions = self
            .base_keys
            .list()
            .map_err(|e| InstallError::Other(format!("security module: {e}")))?;
        let version = versions
            .iter()
            .filter(|v| {
                v.category == cards.category
                    && v.status != kms::KeyStatus::Retired
                    && kms::kvn_for_version(v.version, cards.initial_kvn) == iu.key_version
            })
            .map(|v| v.version)
            .max()
            .ok_or_else(|| {
                InstallError::WrongCard(format!(
                    "its key set {:02X} is not one of category {}'s",
                    iu.key_version, cards.category
                ))
            })?;
        Ok(Identified {
            card,
            version,
            kdd: iu.kdd,
        })
    }

    /// The card's static keys, derived in the token.
    pub(crate) fn card_keys(&self, who: &Identified) -> Result<StaticKeys, InstallError> {
        self.base_keys
            .derive_for_kdd(&self.config.cards.category, who.version, &who.kdd)
            .map_err(|e| InstallError::Other(format!("security module: {e}")))
    }

    /// The card in the reader, as far as the module can tell without authenticating:
    /// SELECT of the ISD and INITIALIZE UPDATE; the answer names the card number and key
    /// set, and the card cryptogram in it verifies only with the card's keys. No EXTERNAL
    /// AUTHENTICATE follows, so no authentication attempt is spent.
    pub fn card_state<C: CardChannel>(&self, card: &mut C) -> CardState {
        let reader = card.name();
        let mut state = CardState {
            reader,
            present: false,
            known: false,
            card: None,
        };
        let _g = self.card_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut client = GpClient::new(Traced::new(&mut *card, None));
        if let Err(e) = client.select(&gp::aid::ISD_AID) {
            state.present = !matches!(
                e,
                gpclient::ClientError::Transport(
                    TransportError::NoCard(_)
                        | TransportError::CardRemoved
                        | TransportError::NoReader(_)
                )
            );
            return state;
        }
        state.present = true;
        let mut challenge = [0u8; 8];
        if getrandom::fill(&mut challenge).is_err() {
            return state;
        }
        let cmd = scp::initialize_update(0, &challenge);
        let Ok(r) = client.send(gpclient::Operation::InitializeUpdate, &cmd) else {
            return state;
        };
        if !r.sw.is_success() {
            return state;
        }
        let Ok(iu) = InitUpdateResponse::parse(&r.data) else {
            return state;
        };
        state.card = kms::card_number_from_kdd(&iu.kdd);
        // Known: its key set is one the module derives, and the card cryptogram verifies
        // with the derived keys (checked on the host: no EXTERNAL AUTHENTICATE follows).
        state.known = self
            .identify(&iu)
            .and_then(|who| self.card_keys(&who))
            .is_ok_and(|keys| scp::HostAuth::new(&keys, &challenge, &iu, LEVEL, 0x55).is_ok());
        state
    }
}
