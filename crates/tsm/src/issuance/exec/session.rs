//! The session with the card: reset, identity checks without authentication, and a secure
//! channel opened with the key set the card carries (derived keys cached per run).

use super::*;

fn spec_of(keys: &StaticKeys, kvn: u8) -> KeySpec {
    KeySpec::from_static(keys, kvn)
}

/// Chip identity from the CPLC (GP 2.3.1 §H.6): IC fabricator, IC type, IC serial number,
/// IC batch identifier.
pub(crate) fn chip_id(cplc: &Cplc) -> Vec<u8> {
    let mut v = Vec::with_capacity(10);
    v.extend_from_slice(&cplc.ic_fabricator);
    v.extend_from_slice(&cplc.ic_type);
    v.extend_from_slice(&cplc.ic_serial_number);
    v.extend_from_slice(&cplc.ic_batch_identifier);
    v
}

impl<C: CardChannel + ?Sized> Run<'_, '_, C> {
    /// Reset, identity checks without authentication, then a secure channel with the key
    /// set the card carries.
    pub(super) fn connect(&mut self) -> Result<()> {
        self.client.channel_mut().reset()?;
        self.client.select(&ISD_AID)?;
        // GP 2.3.1 §11.3 GET DATA: none of these needs a secure channel.
        let cplc = ops::get_data_raw(&mut self.client, DataObject::Cplc)?
            .and_then(|raw| Cplc::parse(&raw).ok());
        let cin = ops::get_data(&mut self.client, DataObject::Cin)?.filter(|v| !v.is_empty());
        let kvns: Vec<u8> = ops::get_data_raw(&mut self.client, DataObject::KeyInformation)?
            .and_then(|raw| KeyInfo::parse(&raw).ok())
            .map(|ki| {
                // Secure channel key sets only (DES/AES keys): an SCP11 key pair or a
                // public key under the same KVN (a factory SCP11b key, KID 13 KVN 01) is
                // another key and does not conflict with PUT KEY of KIDs 1-3.
                let mut v: Vec<u8> = ki
                    .entries
                    .iter()
                    .filter(|e| {
                        e.components
                            .iter()
                            .all(|c| matches!(c.key_type, 0x80 | 0x88))
                    })
                    .map(|e| e.version)
                    .collect();
                v.dedup();
                v
            })
            .unwrap_or_default();
        let kdd = if matches!(self.category.initial_keys, InitialKeys::Kms { .. }) {
            ops::get_data(&mut self.client, DataObject::KeyDiversificationData)?
                .and_then(|v| <[u8; 10]>::try_from(v.as_slice()).ok())
        } else {
            None
        };
        self.identity = Identity {
            chip_id: cplc.as_ref().map(chip_id),
            kvns,
            kdd,
        };
        self.check_identity(cin.as_deref())?;
        self.open_first(self.candidates())?;
        // The KDD must be one this job's history allows (a card swapped for another of
        // the same model reports its own).
        if let (Some(now), Some(recorded)) = (self.kdd, self.card.kdd.as_deref()) {
            let mut allowed = vec![recorded.to_vec()];
            if self.step_state(&StepKind::SetKdd) == Some(StepState::Started) {
                allowed.push(kms::kdd_for_card_number(&self.job.card_number)?.to_vec());
            }
            if self.step_state(&StepKind::RestoreKdd) == Some(StepState::Started) {
                allowed.extend(self.card.factory_kdd.clone());
            }
            if !allowed.iter().any(|k| k.as_slice() == now) {
                return Err(Error::WrongCard(
                    "its key diversification data is not the one recorded for this card".into(),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn check_identity(&self, cin: Option<&[u8]>) -> Result<()> {
        if let (Some(recorded), Some(chip)) = (&self.card.chip_id, &self.identity.chip_id) {
            if recorded != chip {
                return Err(Error::WrongCard(
                    "its chip (CPLC) is not the one registered under this card number".into(),
                ));
            }
        }
        let ours = kms::kdd_for_card_number(&self.job.card_number)?;
        match (self.job.kind, cin) {
            (_, Some(c)) if c == ours => Ok(()),
            (JobKind::Write, None) => Ok(()),
            (JobKind::Write, Some(_)) => Err(Error::WrongCard(
                "it is already written with another card number".into(),
            )),
            (_, Some(_)) => Err(Error::WrongCard("it carries another card number".into())),
            (kind, None) => {
                let erased = kind == JobKind::Clear
                    && self.step_state(&StepKind::ErasePerso) != Some(StepState::Pending);
                if erased || self.card.state == CardState::Partial {
                    Ok(())
                } else {
                    Err(Error::WrongCard("it carries no card number".into()))
                }
            }
        }
    }

    pub(super) fn open_first(&mut self, candidates: Vec<KeyRef>) -> Result<()> {
        let listed: Vec<KeyRef> = if self.identity.kvns.is_empty() {
            candidates.clone()
        } else {
            candidates
                .iter()
                .copied()
                .filter(|k| self.identity.kvns.contains(&self.kvn(*k)))
                .collect()
        };
        let mut tried = Vec::new();
        for k in &listed {
            if self.try_open(*k)? {
                self.on_card = Some(*k);
                return Ok(());
            }
            tried.push(k.describe(self.kvn(*k)));
        }
        if listed.is_empty() {
            let want: Vec<String> = candidates
                .iter()
                .map(|k| k.describe(self.kvn(*k)))
                .collect();
            let have: Vec<String> = self
                .identity
                .kvns
                .iter()
                .map(|k| format!("{k:02X}"))
                .collect();
            return Err(Error::KeysDoNotMatch(format!(
                "the card has key sets {}, expected {}",
                have.join(" "),
                want.join(" or ")
            )));
        }
        Err(Error::KeysDoNotMatch(format!(
            "tried {}",
            tried.join(", then ")
        )))
    }

    /// Opens a secure channel with `k`; `false` when the card cryptogram does not verify
    /// (or the card has no such key set): no authentication attempt was spent.
    pub(super) fn try_open(&mut self, k: KeyRef) -> Result<bool> {
        let keys = self.key_spec(k)?;
        let opts = OpenOptions {
            keys,
            level: self.issuer.config().level,
            scp: None,
            sd: None,
        };
        match self.client.open_secure_channel(&opts) {
            Ok(info) => {
                self.kdd = Some(info.init_update.kdd);
                self.scp = info.init_update.scp;
                Ok(true)
            }
            Err(ClientError::WrongKeys { .. }) => Ok(false),
            // No key set with this KVN on the card: nothing was authenticated.
            Err(ClientError::Card {
                op: Operation::InitializeUpdate,
                sw,
                ..
            }) if sw.status() == Status::ReferencedDataNotFound => Ok(false),
            Err(
                e @ ClientError::Card {
                    op: Operation::InitializeUpdate,
                    ..
                },
            ) => Err(Error::Card(e)),
            Err(ClientError::KeysLocked { op, sw }) => Err(Error::AuthenticationRefused(format!(
                "{op}: {sw}: the key set is locked"
            ))),
            Err(ClientError::Card { op, sw, .. }) => {
                Err(Error::AuthenticationRefused(format!("{op}: {sw}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn derived_keys(&mut self, v: u32) -> Result<StaticKeys> {
        if let Some((_, k)) = self.derived.iter().find(|(x, _)| *x == v) {
            return Ok(k.clone());
        }
        let t = Instant::now();
        let keys = self.issuer.store.with_conn(|c| {
            self.issuer
                .derive(c, &self.params.category, v, &self.job.card_number)
        });
        self.t_keys += t.elapsed();
        let keys = keys?;
        self.derived.push((v, keys.clone()));
        Ok(keys)
    }

    /// The factory KDD (what transport keys are diversified with).
    pub(super) fn factory_kdd(&self) -> Result<[u8; 10]> {
        self.card
            .factory_kdd
            .as_deref()
            .and_then(|v| <[u8; 10]>::try_from(v).ok())
            .or(self.identity.kdd)
            .ok_or_else(|| {
                Error::Invalid("the card's factory key diversification data is unknown".into())
            })
    }

    pub(super) fn key_spec(&mut self, k: KeyRef) -> Result<KeySpec> {
        let kvn = self.kvn(k);
        match (k, self.category.initial_keys.clone()) {
            (KeyRef::Initial, InitialKeys::GpTestKey) => {
                Ok(KeySpec::same(&DEFAULT_TEST_KEY, Diversification::None, kvn))
            }
            (KeyRef::Initial, InitialKeys::Kms { category, version }) => {
                let kdd = self.factory_kdd()?;
                let keys = self
                    .issuer
                    .keystore()
                    .derive_for_kdd(&category, version, &kdd)?;
                Ok(spec_of(&keys, kvn))
            }
            (KeyRef::Derived(v), _) => {
                let keys = self.derived_keys(v)?;
                Ok(spec_of(&keys, kvn))
            }
        }
    }

    /// The keys of `k`, typed (what PUT KEY sends).
    pub(super) fn typed_keys(&mut self, k: KeyRef) -> Result<StaticKeys> {
        match (k, self.category.initial_keys.clone()) {
            (KeyRef::Initial, InitialKeys::GpTestKey) => {
                let kind = self.card.initial_key_kind.unwrap_or(if self.scp == 0x02 {
                    KeyKind::Des3
                } else {
                    KeyKind::Aes
                });
                Ok(StaticKeys::same(
                    Key::new(kind, &DEFAULT_TEST_KEY)
                        .map_err(|e| Error::Invalid(format!("initial keys: {e}")))?,
                ))
            }
            (KeyRef::Initial, InitialKeys::Kms { category, version }) => {
                let kdd = self.factory_kdd()?;
                Ok(self
                    .issuer
                    .keystore()
                    .derive_for_kdd(&category, version, &kdd)?)
            }
            (KeyRef::Derived(v), _) => self.derived_keys(v),
        }
    }
}
