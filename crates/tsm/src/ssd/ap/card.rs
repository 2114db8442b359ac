//! One run of an AP job on a card: the relay of the CI's commands, the import of the
//! initial keys, the rotation (SCP03, or inside SCP11a), the confirmation.

use super::*;

pub(super) struct ApRun<'p, 'c> {
    pub(super) ap: &'p ApPlatform,
    pub(super) client: GpClient<&'c mut dyn CardChannel>,
    pub(super) card_number: String,
    pub(super) aid: Aid,
    pub(super) params: ApParams,
}

impl ApRun<'_, '_> {
    pub(super) fn drive(&mut self, run: &mut JobRun<'_>) -> Result<()> {
        for name in [
            "relay",
            "import_keys",
            "rotate",
            "confirm",
            "renew",
            "report",
        ] {
            let Some(was_started) = run.begin(name)? else {
                continue;
            };
            let (detail, effects) = match name {
                "relay" => self.relay()?,
                "import_keys" => self.import_keys()?,
                "rotate" => self.rotate(was_started, false)?,
                "renew" => self.rotate(was_started, true)?,
                "confirm" => self.confirm()?,
                _ => self.report()?,
            };
            run.done(name, detail, effects)?;
        }
        run.finish(json!({"aid": self.params.aid}), none())
    }

    fn relay(&mut self) -> Result<(serde_json::Value, Effects<'static>)> {
        let job = self.params.ci_job;
        let link = &self.ap.link;
        let mut last: Option<Vec<u8>> = None;
        let mut n = 0u32;
        let mut resets = 0u32;
        loop {
            match link.exchange(job, last.as_deref())? {
                Exchange::Done => break,
                Exchange::Command(c) => {
                    // Unchanged: the AP cannot read or alter the CI's secure channel.
                    let r = self.client.channel_mut().transmit_raw(&c)?;
                    n += 1;
                    last = Some(r);
                }
                Exchange::Reset => {
                    // A warm reset asked by the CI's flow; its answer is the new ATR.
                    let chan = self.client.channel_mut();
                    chan.reset()?;
                    last = Some(chan.atr());
                    resets += 1;
                }
            }
        }
        let ci = link.status(&self.card_number, &self.params.aid)?;
        if ci.state == SsdState::Requested || ci.state == SsdState::Locked {
            // The CI's run stopped half-way (the CI platform or the card went away): both
            // jobs stay resumable; running this one again restarts the relay.
            return Err(Error::Interrupted(transport::TransportError::Other(
                "the CI's job is not finished".into(),
            )));
        }
        let want = match self.params.model {
            SsdModel::Authorized => SsdState::Created,
            SsdModel::Delegated => SsdState::Managed,
        };
        if ci.state != want {
            return Err(Error::WrongState {
                state: ci.state.to_string(),
                need: "the CI's job must have created the SSD",
            });
        }
        let card_number = self.card_number.clone();
        let aid = self.aid;
        let ci_key = ci.current_key().cloned();
        Ok((
            json!({"ci_job": job, "commands": n, "resets": resets, "ci_state": ci.state}),
            Box::new(move |c| {
                rec::set_ssd_state_in(c, &card_number, aid.as_bytes(), want)?;
                // A CI-held key set (delegated model), recorded for the renewal schedule.
                if want == SsdState::Managed {
                    if let Some(k) = ci_key {
                        rec::add_key_version_in(
                            c,
                            &card_number,
                            aid.as_bytes(),
                            k.kvn,
                            "",
                            KeyHolder::Ci,
                            &k.kcv,
                            k.created_ms,
                            k.expires_ms,
                        )?;
                    }
                }
                Ok(())
            }),
        ))
    }

    fn import_keys(&mut self) -> Result<(serde_json::Value, Effects<'static>)> {
        let ks = &self.ap.keys;
        let ci = self.ap.link.status(&self.card_number, &self.params.aid)?;
        let k = ci
            .current_key()
            .cloned()
            .ok_or_else(|| Error::Invalid("the CI records no initial key set".into()))?;
        let info = match ks.key_set_info(&self.params.initial_label)? {
            Some(i) => i,
            None => {
                let w = self.ap.link.initial_keys(self.params.ci_job)?;
                ks.import_wrapped_key_set(
                    &self.params.initial_label,
                    &w,
                    &self.ap.config.transport_key_label,
                )?
            }
        };
        if info.kcv.as_slice() != k.kcv.as_slice() {
            return Err(Error::KeysDoNotMatch(format!(
                "the initial keys received have KCV {}, the CI records {}",
                apdu::hex(&info.kcv),
                apdu::hex(&k.kcv)
            )));
        }
        let card_number = self.card_number.clone();
        let aid = self.aid;
        let label = self.params.initial_label.clone();
        Ok((
            json!({"kvn": k.kvn, "kcv": apdu::hex(&k.kcv)}),
            Box::new(move |c| {
                rec::add_key_version_in(
                    c,
                    &card_number,
                    aid.as_bytes(),
                    k.kvn,
                    &label,
                    KeyHolder::Ci,
                    &k.kcv,
                    k.created_ms,
                    k.expires_ms,
                )
            }),
        ))
    }

    /// PUT KEY of a new AP key set replacing the current one (the initial keys, or for a
    /// renewal the AP's current keys).
    fn rotate(
        &mut self,
        was_started: bool,
        renewal: bool,
    ) -> Result<(serde_json::Value, Effects<'static>)> {
        let ks = &self.ap.keys;
        let cfg = &self.ap.config;
        let (from_label, from_kvn) = if renewal {
            (
                self.params.from_label.clone().unwrap_or_default(),
                self.params.from_kvn.unwrap_or(0),
            )
        } else {
            let (k, label) = self
                .ap
                .store
                .with_conn(|c| {
                    rec::current_key_label_in(c, &self.card_number, self.aid.as_bytes())
                })?
                .ok_or_else(|| Error::Invalid("no initial key set recorded".into()))?;
            (label, k.kvn)
        };
        let kvn = self.params.kvn.unwrap_or_else(|| next_kvn(from_kvn));
        if ks.key_set_info(&self.params.label)?.is_none() {
            ks.generate_key_set(&self.params.label, cfg.key_kind, cfg.key_len)?;
        }
        let new_keys = ks.key_set(&self.params.label)?;
        let kcv = new_keys.enc.kcv().to_vec();
        let new = Candidate {
            keys: ks.key_set(&self.params.label)?,
            kvn,
            name: format!("its new keys (KVN {kvn:#04x})"),
        };
        let old = Candidate {
            keys: ks.key_set(&from_label)?,
            kvn: from_kvn,
            name: format!("the keys replaced (KVN {from_kvn:#04x})"),
        };
        let candidates = if was_started {
            vec![new, old]
        } else {
            vec![old]
        };
        let (which, _) = open_with(&mut self.client, self.aid, &candidates, cfg.level)?;
        let already = was_started && which == 0;
        let mut in_scp11 = false;
        if !already {
            if let (Some(s11), false) = (&cfg.scp11, renewal) {
                self.open_scp11(s11)?;
                in_scp11 = true;
            }
            // GP 2.3.1 §11.8.2.2: P1 = the KVN replaced.
            ops::put_key_set(&mut self.client, &new_keys, kvn, Some(from_kvn))?;
        }
        self.params.kvn = Some(kvn);
        let now = self.ap.clock.now_ms();
        let expires = self.ap.store.key_policy()?.expiry_of_new_key(now);
        let card_number = self.card_number.clone();
        let aid = self.aid;
        let label = self.params.label.clone();
        let cause = if renewal {
            self.params.cause.clone().unwrap_or_else(|| "expiry".into())
        } else {
            "handover".into()
        };
        let k2 = kcv.clone();
        Ok((
            json!({"kvn": kvn, "replaced_kvn": from_kvn, "kcv": apdu::hex(&kcv),
                   "already": already, "scp11": in_scp11}),
            Box::new(move |c| {
                rec::add_key_version_in(
                    c,
                    &card_number,
                    aid.as_bytes(),
                    kvn,
                    &label,
                    KeyHolder::Ap,
                    &k2,
                    now,
                    expires,
                )?;
                rec::add_renewal_in(
                    c,
                    &card_number,
                    aid.as_bytes(),
                    &Renewal {
                        from_kvn,
                        to_kvn: kvn,
                        cause,
                        reason: None,
                        at_ms: now,
                    },
                )
            }),
        ))
    }

    /// In the SCP03 session with the initial keys: the SSD's SCP11 key pair generated on
    /// the card, its certificate, the AP's CA as OCE trust anchor (a key version already
    /// there, from an interrupted earlier run, is replaced); then an SCP11a session.
    fn open_scp11(&mut self, s11: &Scp11Rotation) -> Result<()> {
        use gp::scp11::{KeyRef, Scp11StoreData, OCE_KID};
        use gpclient::scp11::{OceKey, Scp11Options, SdTrust};
        let sd_key = KeyRef::new(0x11, s11.kvn);
        let anchor = KeyRef::new(OCE_KID, s11.kvn);
        // GP 2.3.1 §11.3.3.1: which keys the SSD has (an earlier, interrupted run's).
        let info = ops::get_data_raw(&mut self.client, gp::commands::DataObject::KeyInformation)?
            .and_then(|d| gp::commands::KeyInfo::parse(&d).ok())
            .unwrap_or_default();
        let has = |k: KeyRef| {
            info.entries
                .iter()
                .any(|e| e.id == k.kid && e.version == k.kvn)
        };
        let replace = |k: KeyRef| if has(k) { k.kvn } else { 0 };
        let pk_sd = ops::generate_ec_key(
            &mut self.client,
            sd_key,
            replace(sd_key),
            scp::scp11::Curve::P256,
        )?;
        let cert = (s11.certify_sd)(&pk_sd)?;
        ops::store_scp11_data(
            &mut self.client,
            &Scp11StoreData::CertificateBundle {
                key: sd_key,
                certificates: vec![cert],
            },
        )?;
        ops::put_ec_public_key(&mut self.client, anchor, replace(anchor), &s11.ca_public)?;
        let mut opts = Scp11Options::new(
            scp::scp11::Variant::A,
            s11.kvn,
            SdTrust::Key(s11.ca_public.clone()),
        );
        opts.sd = Some(self.aid);
        opts.oce_key = Some(OceKey {
            key: Box::new(SharedOce(s11.oce_key.clone())),
            public: s11.oce_public.clone(),
        });
        opts.oce_chain = s11.oce_chain.clone();
        opts.oce_anchor = anchor;
        self.client.open_scp11(&opts)?;
        Ok(())
    }

    /// The rotation recorded by the previous step.
    fn rotation(&self) -> Result<Rotation> {
        let (k, _) = self
            .ap
            .store
            .with_conn(|c| rec::current_key_label_in(c, &self.card_number, self.aid.as_bytes()))?
            .ok_or_else(|| Error::Invalid("no key set recorded".into()))?;
        Ok(Rotation {
            kvn: k.kvn,
            kcv: k.kcv,
        })
    }

    fn confirm(&mut self) -> Result<(serde_json::Value, Effects<'static>)> {
        let rotation = self.rotation()?;
        let ci = self
            .ap
            .link
            .confirm_rotation(self.params.ci_job, &rotation)?;
        // The CI deleted its initial keys; the AP deletes its copy.
        let _ = self.ap.keys.delete_key_set(&self.params.initial_label)?;
        let card_number = self.card_number.clone();
        let aid = self.aid;
        let at = ci.handed_over_ms.unwrap_or_else(|| self.ap.clock.now_ms());
        let receipt = ci.receipt.clone().unwrap_or_default();
        Ok((
            json!({"kvn": rotation.kvn, "receipt": receipt}),
            Box::new(move |c| {
                rec::set_handed_over_in(c, &card_number, aid.as_bytes(), at, &receipt)
            }),
        ))
    }

    fn report(&mut self) -> Result<(serde_json::Value, Effects<'static>)> {
        let rotation = self.rotation()?;
        let renewal = Renewal {
            from_kvn: self.params.from_kvn.unwrap_or(0),
            to_kvn: rotation.kvn,
            cause: self.params.cause.clone().unwrap_or_else(|| "expiry".into()),
            reason: None,
            at_ms: self.ap.clock.now_ms(),
        };
        self.ap
            .link
            .report_renewal(&self.card_number, &self.params.aid, &renewal, &rotation)?;
        // The replaced key set is of no use any more.
        if let Some(l) = &self.params.from_label {
            let _ = self.ap.keys.delete_key_set(l)?;
        }
        Ok((json!({"kvn": rotation.kvn}), none()))
    }
}
