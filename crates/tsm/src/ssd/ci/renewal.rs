//! Renewal and replacement of SSD key sets (flows 3 and 4): what falls due, compromise,
//! the CI's renewal and replacement jobs, the partner's own renewals, and the CI terminal's
//! channel with the SSDs whose keys it holds.

use super::*;

impl CiPlatform {
    /// Marks an SSD's key version compromised (an operator, or the partner through the
    /// API for its own SSD): it is renewed at the next contact (the CI's own key sets by
    /// [`CiPlatform::renew`], an AP's by [`CiPlatform::replace`]) and meanwhile refused
    /// for anything else. Audited.
    pub fn mark_compromised(
        &self,
        actor: &Actor,
        card_number: &str,
        aid: &str,
        kvn: u8,
        reason: &str,
    ) -> Result<SsdRecord> {
        let aid = parse_aid(aid)?;
        let ssd = self
            .store()
            .ssd(card_number, aid.as_bytes())?
            .ok_or(Error::UnknownCard)?;
        if let Ok(Some(p)) = self.store().partner(&actor.tenant) {
            // A partner marks only its own SSDs.
            auth::check_owner(&p, Some(&ssd))
                .map_err(|r| self.refuse(&p.id, "mark_compromised", card_number, r))?;
        }
        let changed = self.store().tx(|c| -> Result<bool> {
            let changed =
                rec::mark_key_compromised_in(c, card_number, aid.as_bytes(), kvn, reason)?;
            append_in(
                c,
                &NewEntry::new(
                    &actor.name(),
                    "ssd.compromised",
                    if changed { "ok" } else { "unchanged" },
                )
                .card(card_number)
                .detail(json!({"aid": aid.to_hex(), "kvn": kvn, "reason": reason})),
            )?;
            Ok(changed)
        })?;
        if !changed {
            return Err(Error::Invalid(format!(
                "key version {kvn:#04x} of {aid} is not the active one"
            )));
        }
        self.store()
            .ssd(card_number, aid.as_bytes())?
            .ok_or(Error::UnknownCard)
    }

    /// Marks the key version `kvn` of the partner's own SSD compromised, or without
    /// `kvn` the version in use (flow 4: forced renewal); the partner is `actor.tenant`.
    /// The SSD is checked as the partner's first ([`CiPlatform::status`]); with no key
    /// version in use, [`Error::NoKeyVersion`]. Then [`CiPlatform::mark_compromised`].
    pub fn mark_current_compromised(
        &self,
        actor: &Actor,
        card_number: &str,
        aid: &str,
        kvn: Option<u8>,
        reason: &str,
    ) -> Result<SsdRecord> {
        let ssd = self.status(&actor.tenant, card_number, aid)?;
        let kvn = kvn
            .or_else(|| ssd.current_key().map(|k| k.kvn))
            .ok_or(Error::NoKeyVersion)?;
        self.mark_compromised(actor, card_number, aid, kvn, reason)
    }

    /// What falls due at `at_ms`: compromised key versions, and key versions in their
    /// renewal window or expired (both those the CI holds and those its partners hold).
    pub fn due(&self, at_ms: i64) -> Result<Vec<DueRenewal>> {
        Ok(self.store().ssds_due(at_ms)?)
    }

    /// Records a job renewing a key set the CI holds (delegated SSDs; SSDs not yet handed
    /// over), due or compromised; `actor` is an operator, or the owning partner. Returns
    /// the job id; run it with [`CiPlatform::run`] at the next contact.
    pub fn renew(&self, actor: &Actor, card_number: &str, aid: &str) -> Result<i64> {
        let aid = parse_aid(aid)?;
        let ssd = self.scoped_ssd(actor, "renew", card_number, &aid)?;
        let (k, label) = self
            .store()
            .with_conn(|c| rec::current_key_label_in(c, card_number, aid.as_bytes()))?
            .ok_or_else(|| Error::Invalid("the SSD has no key set".into()))?;
        if k.holder != KeyHolder::Ci {
            return Err(Error::Invalid(
                "its owner holds this key set: the owner renews it (or, compromised, the CI replaces the SSD)".into(),
            ));
        }
        let cause = if k.state == KeyState::Compromised {
            "forced"
        } else {
            "expiry"
        };
        let kvn = next_kvn(k.kvn);
        let params = JobParams {
            partner: ssd.owner.clone(),
            aid: aid.to_hex(),
            model: ssd.model,
            privileges: apdu::hex(&ssd.privileges),
            label: new_label(card_number, &aid, kvn),
            kvn,
            from_label: Some(label),
            from_kvn: Some(k.kvn),
            cause: Some(cause.into()),
            reason: k.reason.clone(),
        };
        self.submit(
            actor,
            JobKind::SsdRenew,
            card_number,
            &params,
            vec!["put_key".into()],
        )
    }

    /// Records a job replacing an SSD whose owner's keys are compromised: one SET STATUS
    /// locks it with its applications, then its content and itself are deleted and it is
    /// created again with new initial keys, to be handed over again. Returns the job id.
    pub fn replace(&self, actor: &Actor, card_number: &str, aid: &str) -> Result<i64> {
        let aid = parse_aid(aid)?;
        let ssd = self.scoped_ssd(actor, "replace", card_number, &aid)?;
        let params = JobParams {
            partner: ssd.owner.clone(),
            aid: aid.to_hex(),
            model: ssd.model,
            privileges: apdu::hex(&ssd.privileges),
            label: new_label(card_number, &aid, self.config.initial_kvn),
            kvn: self.config.initial_kvn,
            from_label: None,
            from_kvn: ssd.current_key().map(|k| k.kvn),
            cause: Some("forced".into()),
            reason: ssd.current_key().and_then(|k| k.reason.clone()),
        };
        let mut steps = vec!["lock".to_string(), "delete".into(), "install".into()];
        if ssd.model == SsdModel::Authorized {
            steps.push("extradite".into());
        }
        steps.push("put_key".into());
        self.submit(actor, JobKind::SsdReplace, card_number, &params, steps)
    }

    /// Opens a secure channel with an SSD whose keys the CI holds (delegated model: the CI
    /// terminal manages it for its owner), refused while its key set is expired or
    /// compromised (then only [`CiPlatform::renew`] may use it). Content changes through
    /// the returned client need the owner's tokens ([`CiPlatform::sign_token`]); the
    /// card's receipts go back to the owner as proof.
    pub fn open_managed<'c>(
        &self,
        card_number: &str,
        aid: &str,
        chan: &'c mut dyn CardChannel,
    ) -> Result<GpClient<&'c mut dyn CardChannel>> {
        let a = parse_aid(aid)?;
        let (k, label) = self
            .store()
            .with_conn(|c| rec::current_key_label_in(c, card_number, a.as_bytes()))?
            .ok_or_else(|| Error::Invalid("the SSD has no key set".into()))?;
        if k.holder != KeyHolder::Ci {
            return Err(Error::Invalid("its owner holds this SSD's keys".into()));
        }
        usable(&k, self.clock.now_ms())?;
        let mut client = GpClient::new(Traced::new(chan, None));
        let c = Candidate {
            keys: self.keys.key_set(&label)?,
            kvn: k.kvn,
            name: format!("the CI's keys (KVN {:#04x})", k.kvn),
        };
        open_with(&mut client, a, &[c], self.config.level)?;
        Ok(client)
    }

    /// For the partner API: the job that brings an SSD's keys back to usable at the next
    /// contact, relayed by the partner like a creation: a renewal of a key set the CI
    /// holds, or (the partner's own keys compromised) the replacement of the SSD.
    pub fn renewal_job(&self, partner: &str, card_number: &str, aid: &str) -> Result<i64> {
        let actor = Actor::new(partner, "partner-api");
        let a = parse_aid(aid)?;
        let ssd = self.scoped_ssd(&actor, "renew", card_number, &a)?;
        match ssd.current_key() {
            Some(k) if k.holder == KeyHolder::Ap && k.state == KeyState::Compromised => {
                self.replace(&actor, card_number, aid)
            }
            Some(k) if k.holder == KeyHolder::Ap => Err(Error::Invalid(
                "the partner holds this key set: it renews it itself".into(),
            )),
            _ => self.renew(&actor, card_number, aid),
        }
    }

    /// For the partner API: the partner renewed its own key set of its SSD; recorded (the
    /// CI cannot check it: it knows none of the partner's keys).
    pub fn record_renewal(
        &self,
        partner: &str,
        card_number: &str,
        aid: &str,
        renewal: &Renewal,
        rotation: &Rotation,
    ) -> Result<SsdRecord> {
        let a = parse_aid(aid)
            .map_err(|_| self.refuse(partner, "renewal", card_number, Refusal::AidOutsidePrefix))?;
        let (_, ssd) = self.owned(partner, "renewal", card_number, &a)?;
        if ssd
            .current_key()
            .is_some_and(|k| k.kvn == rotation.kvn && k.kcv == rotation.kcv)
        {
            return Ok(ssd);
        }
        if ssd.current_key().map(|k| k.holder) != Some(KeyHolder::Ap) {
            return Err(Error::Invalid(
                "the partner holds no key set of this SSD".into(),
            ));
        }
        let now = self.clock.now_ms();
        let expires = self.store().key_policy()?.expiry_of_new_key(now);
        self.store().tx(|c| -> Result<()> {
            rec::add_key_version_in(
                c,
                card_number,
                a.as_bytes(),
                rotation.kvn,
                "",
                KeyHolder::Ap,
                &rotation.kcv,
                now,
                expires,
            )?;
            rec::add_renewal_in(
                c,
                card_number,
                a.as_bytes(),
                &Renewal {
                    at_ms: now,
                    ..renewal.clone()
                },
            )?;
            append_in(
                c,
                &NewEntry::new(&partner_actor(partner), "ssd.renewal", "ok")
                    .card(card_number)
                    .detail(json!({"aid": a.to_hex(), "from_kvn": renewal.from_kvn,
                                   "kvn": rotation.kvn, "kcv": apdu::hex(&rotation.kcv),
                                   "cause": renewal.cause})),
            )?;
            Ok(())
        })?;
        self.store()
            .ssd(card_number, a.as_bytes())?
            .ok_or(Error::UnknownCard)
    }

    /// The SSD for an operator of the CI (any), or for its owning partner.
    fn scoped_ssd(
        &self,
        actor: &Actor,
        action: &str,
        card_number: &str,
        aid: &Aid,
    ) -> Result<SsdRecord> {
        if self.store().partner(&actor.tenant)?.is_some() {
            return Ok(self.owned(&actor.tenant, action, card_number, aid)?.1);
        }
        self.store()
            .ssd(card_number, aid.as_bytes())?
            .ok_or(Error::UnknownCard)
    }

    fn submit(
        &self,
        actor: &Actor,
        kind: JobKind,
        card_number: &str,
        params: &JobParams,
        steps: Vec<String>,
    ) -> Result<i64> {
        let job = NewJob {
            tenant: params.partner.clone(),
            actor: actor.name(),
            kind,
            card_number: card_number.into(),
            params: serde_json::to_value(params)
                .map_err(|e| Error::Invalid(format!("job parameters: {e}")))?,
            steps,
        };
        self.store().tx(|c| -> Result<i64> {
            if let Some(open) = open_job_for_card_in(c, card_number)? {
                return Err(Error::CardBusy(open.id));
            }
            Ok(create_job_in(c, &job, None, &[])?)
        })
    }
}
