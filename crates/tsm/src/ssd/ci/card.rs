//! One run of a CI job on a card: the ISD and SSD sessions and each step, checked against
//! the card before it acts again after an interruption.

use super::*;

/// One run of a CI job on a card.
pub(super) struct CardRun<'p, 'c> {
    pub(super) ci: &'p CiPlatform,
    pub(super) client: GpClient<&'c mut dyn CardChannel>,
    pub(super) card_number: String,
    pub(super) aid: Aid,
    pub(super) params: JobParams,
    pub(super) isd_open: bool,
}

impl CardRun<'_, '_> {
    pub(super) fn drive(&mut self, run: &mut JobRun<'_>) -> Result<()> {
        for name in ["lock", "delete", "install", "extradite", "put_key"] {
            let Some(was_started) = run.begin(name)? else {
                continue;
            };
            let (detail, effects) = match name {
                "lock" => self.lock()?,
                "delete" => self.delete()?,
                "install" => self.install(was_started)?,
                "extradite" => self.extradite()?,
                _ => self.put_key(was_started, run.job.kind)?,
            };
            run.done(name, detail, effects)?;
            if name == "put_key" && run.job.kind == JobKind::SsdRenew {
                // Recorded as replaced: the old key set leaves the key store (a crash
                // before this line leaves it there, unused).
                if let Some(l) = &self.params.from_label {
                    let _ = self.ci.keys.delete_key_set(l)?;
                }
            }
        }
        let card_number = self.card_number.clone();
        let aid = self.aid;
        let kind = run.job.kind;
        let model = self.params.model;
        run.finish(
            json!({"aid": self.params.aid, "model": model, "kvn": self.params.kvn}),
            Box::new(move |c| {
                if matches!(kind, JobKind::SsdCreate | JobKind::SsdReplace) {
                    let state = match model {
                        SsdModel::Authorized => SsdState::Created,
                        SsdModel::Delegated => SsdState::Managed,
                    };
                    rec::set_ssd_state_in(c, &card_number, aid.as_bytes(), state)?;
                }
                Ok(())
            }),
        )
    }

    /// A secure channel with the ISD, with the card's keys (derived as issuance does),
    /// after checking the card's number (GET DATA `45`, GP 2.3.1 §H.4).
    fn open_isd(&mut self) -> Result<()> {
        if self.isd_open {
            return Ok(());
        }
        let card = self
            .ci
            .store()
            .card(&self.card_number)?
            .ok_or(Error::UnknownCard)?;
        self.client.select(&ISD_AID)?;
        // A transport failure here is an interruption; an absent CIN is left to the keys.
        let cin = ops::get_data_raw(&mut self.client, DataObject::Cin)?;
        let ours = kms::kdd_for_card_number(&self.card_number)?;
        if let Some(cin) = cin {
            // The value with or without its `45 LL` header, as cards differ.
            if cin != ours && cin.get(2..) != Some(&ours[..]) {
                return Err(Error::WrongCard("it carries another card number".into()));
            }
        }
        let version = card
            .key_version
            .ok_or_else(|| Error::Invalid("the card has no derived keys".into()))?;
        let category = self
            .ci
            .store()
            .category(&card.category)?
            .ok_or_else(|| Error::UnknownCategory(card.category.clone()))?;
        let keys = self.ci.issuer.store().with_conn(|c| {
            self.ci
                .issuer
                .derive(c, &card.category, version, &self.card_number)
        })?;
        let kvn = kvn_for_version(version, category.initial_kvn);
        let candidates = [Candidate {
            keys,
            kvn,
            name: format!("the card's keys (KVN {kvn:#04x})"),
        }];
        open_with(&mut self.client, ISD_AID, &candidates, self.ci.config.level)?;
        self.isd_open = true;
        Ok(())
    }

    /// Deletes the SSD again after a refused creation (in a new ISD session).
    pub(super) fn roll_back(&mut self) -> Result<()> {
        self.isd_open = false;
        self.open_isd()?;
        delete_if_present(&mut self.client, &self.aid, false)
    }

    fn registry_entry(&mut self) -> Result<Option<gp::commands::RegistryEntry>> {
        let reg = ops::registry(&mut self.client)?;
        Ok(reg.find(&self.aid).cloned())
    }

    fn install(&mut self, was_started: bool) -> Result<(serde_json::Value, Effects<'static>)> {
        self.open_isd()?;
        let present = self.registry_entry()?.is_some();
        if present && !was_started {
            return Err(Error::WrongCard(format!(
                "it already has an application or domain {}",
                self.aid
            )));
        }
        if !present {
            let privileges = Privileges::from_bytes(
                &apdu::parse_hex(&self.params.privileges)
                    .map_err(|e| Error::Invalid(format!("privileges: {e}")))?,
            )
            .map_err(|e| Error::Invalid(format!("privileges: {e}")))?;
            ops::create_domain(&mut self.client, self.aid, privileges, &[], None)?;
        }
        Ok((
            json!({"aid": self.params.aid, "privileges": self.params.privileges,
                   "installed": !present}),
            none(),
        ))
    }

    fn extradite(&mut self) -> Result<(serde_json::Value, Effects<'static>)> {
        self.open_isd()?;
        let entry = self
            .registry_entry()?
            .ok_or_else(|| Error::WrongCard(format!("{} is not on the card", self.aid)))?;
        let already = entry.associated_sd == Some(self.aid);
        if !already {
            // GP 2.3.1 §11.5.2.3.5: the SSD associated with itself.
            ops::extradite(&mut self.client, self.aid, self.aid, Some(ISD_AID))?;
        }
        Ok((
            json!({"aid": self.params.aid, "associated_with": "itself", "already": already}),
            none(),
        ))
    }

    fn lock(&mut self) -> Result<(serde_json::Value, Effects<'static>)> {
        self.open_isd()?;
        let entry = self.registry_entry()?;
        let mut locked_now = false;
        if let Some(e) = &entry {
            if e.life_cycle & gp::lifecycle::LOCKED_BIT == 0 {
                // GP 2.3.1 §11.10.2.1: P1 `60` locks the SSD and its applications at once.
                let cmd = gp::commands::SetStatus {
                    scope: gp::commands::SetStatusScope::SecurityDomainAndApplications,
                    state: 0x80,
                    aid: Some(self.aid),
                }
                .to_command()
                .map_err(|e| Error::Invalid(format!("SET STATUS: {e}")))?;
                self.client.send_ok(
                    Operation::SetStatus,
                    &cmd,
                    &format!("(lock {} and its applications)", self.aid),
                )?;
                locked_now = true;
            }
        }
        let card_number = self.card_number.clone();
        let aid = self.aid;
        Ok((
            json!({"aid": self.params.aid, "locked": locked_now, "present": entry.is_some()}),
            Box::new(move |c| {
                rec::set_ssd_state_in(c, &card_number, aid.as_bytes(), SsdState::Locked)
            }),
        ))
    }

    fn delete(&mut self) -> Result<(serde_json::Value, Effects<'static>)> {
        self.open_isd()?;
        let reg = ops::registry(&mut self.client)?;
        let mut deleted = Vec::new();
        // Its load files with their instances, then other instances, then the SSD.
        for lf in reg
            .load_files
            .iter()
            .filter(|l| l.associated_sd == Some(self.aid))
        {
            delete_if_present(&mut self.client, &lf.aid, true)?;
            deleted.push(lf.aid.to_hex());
        }
        for app in reg
            .applications
            .iter()
            .filter(|a| a.associated_sd == Some(self.aid) && a.aid != self.aid)
        {
            delete_if_present(&mut self.client, &app.aid, false)?;
            deleted.push(app.aid.to_hex());
        }
        delete_if_present(&mut self.client, &self.aid, false)?;
        deleted.push(self.aid.to_hex());
        let card_number = self.card_number.clone();
        let aid = self.aid;
        Ok((
            json!({"deleted": deleted}),
            Box::new(move |c| {
                rec::set_ssd_state_in(c, &card_number, aid.as_bytes(), SsdState::Deleted)
            }),
        ))
    }

    fn put_key(
        &mut self,
        was_started: bool,
        kind: JobKind,
    ) -> Result<(serde_json::Value, Effects<'static>)> {
        let ks = &self.ci.keys;
        let cfg = &self.ci.config;
        if ks.key_set_info(&self.params.label)?.is_none() {
            ks.generate_key_set(&self.params.label, cfg.key_kind, cfg.key_len)?;
        }
        let new_keys = ks.key_set(&self.params.label)?;
        let new_kcv = new_keys.enc.kcv().to_vec();
        let new = Candidate {
            keys: ks.key_set(&self.params.label)?,
            kvn: self.params.kvn,
            name: format!("the new keys (KVN {:#04x})", self.params.kvn),
        };
        let old = match (&self.params.from_label, self.params.from_kvn, kind) {
            (Some(label), Some(kvn), JobKind::SsdRenew) => Candidate {
                keys: ks.key_set(label)?,
                kvn,
                name: format!("the current keys (KVN {kvn:#04x})"),
            },
            _ => Candidate {
                keys: gpclient::KeySpec::same(
                    &cfg.ssd_factory_key,
                    scp::Diversification::None,
                    cfg.ssd_factory_kvn,
                )
                .static_keys(0x03)?,
                kvn: cfg.ssd_factory_kvn,
                name: "the SSD's factory keys".into(),
            },
        };
        let candidates = if was_started {
            vec![new, old]
        } else {
            vec![old]
        };
        self.isd_open = false;
        let (which, opened_kvn) = open_with(&mut self.client, self.aid, &candidates, cfg.level)?;
        let already = was_started && which == 0;
        if !already {
            // GP 2.3.1 §11.8.2.2: P1 = the KVN replaced.
            ops::put_key_set(
                &mut self.client,
                &new_keys,
                self.params.kvn,
                Some(opened_kvn),
            )?;
        }
        let now = self.ci.clock.now_ms();
        let expires = self.ci.store().key_policy()?.expiry_of_new_key(now);
        let card_number = self.card_number.clone();
        let aid = self.aid;
        let label = self.params.label.clone();
        let kvn = self.params.kvn;
        let renewal = (kind == JobKind::SsdRenew).then(|| Renewal {
            from_kvn: self.params.from_kvn.unwrap_or(0),
            to_kvn: kvn,
            cause: self.params.cause.clone().unwrap_or_else(|| "expiry".into()),
            reason: self.params.reason.clone(),
            at_ms: now,
        });
        let kcv = new_kcv.clone();
        let detail = json!({"aid": self.params.aid, "kvn": kvn, "replaced_kvn": opened_kvn,
                            "kcv": apdu::hex(&new_kcv), "already": already});
        Ok((
            detail,
            Box::new(move |c| {
                rec::add_key_version_in(
                    c,
                    &card_number,
                    aid.as_bytes(),
                    kvn,
                    &label,
                    KeyHolder::Ci,
                    &kcv,
                    now,
                    expires,
                )?;
                if let Some(r) = &renewal {
                    rec::add_renewal_in(c, &card_number, aid.as_bytes(), r)?;
                }
                Ok(())
            }),
        ))
    }
}

/// DELETE of an object; one already gone counts as done (an interrupted earlier attempt).
fn delete_if_present<C: CardChannel>(
    client: &mut GpClient<C>,
    aid: &Aid,
    related: bool,
) -> Result<()> {
    match ops::delete(client, aid, related) {
        Ok(()) => Ok(()),
        Err(ClientError::Card {
            op: Operation::Delete,
            sw,
            ..
        }) if sw.status() == apdu::Status::ReferencedDataNotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}
