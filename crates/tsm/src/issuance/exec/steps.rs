//! The step executors: what each planned step does on the card, and what it records.

use super::*;

fn aid_of(hex: &str) -> Result<Aid> {
    apdu::parse_hex(hex)
        .ok()
        .and_then(|b| Aid::new(&b).ok())
        .ok_or_else(|| {
            Error::Store(StoreError::Corrupt {
                what: "job parameters".into(),
                detail: format!("bad AID {hex}"),
            })
        })
}

fn tlv(tag: u32, value: &[u8]) -> Vec<u8> {
    apdu::tlv::Tlv::new(apdu::tlv::Tag::new(tag), value.to_vec()).encode()
}

/// Groups encoded data objects into STORE DATA blocks of at most `max` bytes.
fn blocks(objects: Vec<Vec<u8>>, max: usize) -> Result<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for o in objects {
        if o.len() > max {
            return Err(Error::Invalid(format!(
                "a personalisation data object of {} bytes does not fit one STORE DATA ({max})",
                o.len()
            )));
        }
        match out.last_mut() {
            Some(b) if b.len() + o.len() <= max => b.extend_from_slice(&o),
            _ => out.push(o),
        }
    }
    Ok(out)
}
impl<C: CardChannel + ?Sized> Run<'_, '_, C> {
    pub(super) fn store_data(&mut self, objects: Vec<Vec<u8>>) -> Result<()> {
        let blocks = blocks(objects, self.client.max_plain_data())?;
        ops::store_data(&mut self.client, &blocks)?;
        self.changed_in_step = true;
        Ok(())
    }

    pub(super) fn exec(&mut self, kind: &StepKind, was_started: bool) -> Result<Done> {
        match kind {
            StepKind::Check => self.check(),
            StepKind::ProveKeys => Ok(Done {
                detail: json!({
                    "opened_with": self.on_card.map(|k| k.describe(self.kvn(k))),
                }),
                ..Done::default()
            }),
            StepKind::SetKdd => self.set_kdd(),
            StepKind::PutKey => self.put_key(),
            StepKind::VerifyKeys => self.verify_keys(),
            StepKind::Personalize => self.personalize(),
            StepKind::Install(a) => self.install(a, was_started),
            StepKind::Delete(a) => self.delete(a),
            StepKind::ErasePerso => self.erase_perso(),
            StepKind::RestoreKdd => self.restore_kdd(),
            StepKind::Finish => Ok(self.finish()),
        }
    }

    pub(super) fn check(&mut self) -> Result<Done> {
        if self.on_card != Some(KeyRef::Initial) {
            return Err(Error::WrongCard(
                "it does not open with the initial keys".into(),
            ));
        }
        let (_, tgt) = self.transition();
        let tgt_kvn = self.kvn(tgt);
        if self.identity.kvns.contains(&tgt_kvn) {
            return Err(Error::WrongCard(format!(
                "it already has a key set with KVN {tgt_kvn:02X}"
            )));
        }
        let kdd = self.kdd.map(|k| k.to_vec());
        self.card.chip_id = self.identity.chip_id.clone();
        self.card.factory_kdd = kdd.clone();
        self.card.kdd = kdd.clone();
        self.card.kvn = Some(self.category.initial_kvn);
        self.card.initial_key_kind = Some(if self.scp == 0x02 {
            KeyKind::Des3
        } else {
            KeyKind::Aes
        });
        Ok(Done {
            detail: json!({
                "chip_id": self.card.chip_id.as_deref().map(apdu::hex),
                "factory_kdd": kdd.as_deref().map(apdu::hex),
                "scp": format!("{:02X}", self.scp),
            }),
            card: Some(self.card.clone()),
            ..Done::default()
        })
    }

    /// Writes `kdd` as the card's key diversification data: GP 2.3.1 §11.11, STORE DATA to
    /// the security domain itself; `CF` is the KDD the ISD reports in INITIALIZE UPDATE
    /// (§E.5.1.6, Amd D §7.1.1.6). A card that refuses it: [`Error::KddNotSettable`].
    fn store_kdd(&mut self, kdd: &[u8]) -> Result<()> {
        match ops::store_data(&mut self.client, &[tlv(0xCF, kdd)]) {
            Ok(()) => {}
            Err(ClientError::Card {
                op: Operation::StoreData,
                sw,
                ..
            }) => return Err(Error::KddNotSettable(sw.to_string())),
            Err(e) => return Err(e.into()),
        }
        self.changed_in_step = true;
        Ok(())
    }

    pub(super) fn set_kdd(&mut self) -> Result<Done> {
        let target = kms::kdd_for_card_number(&self.job.card_number)?;
        let unchanged = self.kdd == Some(target);
        if !unchanged {
            self.store_kdd(&target)?;
            self.kdd = Some(target);
        }
        self.card.kdd = Some(target.to_vec());
        Ok(Done {
            detail: json!({"kdd": apdu::hex(&target), "unchanged": unchanged}),
            card: Some(self.card.clone()),
            ..Done::default()
        })
    }

    pub(super) fn put_key(&mut self) -> Result<Done> {
        let (src, tgt) = self.transition();
        let new_kvn = self.kvn(tgt);
        let already = self.on_card == Some(tgt) || src == tgt;
        let mut kcvs = Vec::new();
        if !already {
            let old = self.on_card.unwrap_or(src);
            let old_kvn = self.kvn(old);
            let keys = self.typed_keys(tgt)?;
            kcvs = keys.iter().map(|k| apdu::hex(&k.kcv())).collect();
            // GP 2.3.1 §11.8: P1 = the KVN replaced; the card answers the new KVN and the
            // KCVs, which gpclient checks.
            ops::put_key_set(&mut self.client, &keys, new_kvn, Some(old_kvn))?;
            self.changed_in_step = true;
            self.on_card = Some(tgt);
        }
        self.card.key_version = tgt.version();
        self.card.kvn = Some(new_kvn);
        let detail = json!({
            "from": src.describe(self.kvn(src)),
            "to": tgt.describe(new_kvn),
            "kcvs": kcvs,
            "already": already,
        });
        Ok(Done {
            detail: detail.clone(),
            card: Some(self.card.clone()),
            ..Done::default()
        })
    }

    pub(super) fn verify_keys(&mut self) -> Result<Done> {
        let (_, tgt) = self.transition();
        if !self.try_open(tgt)? {
            return Err(Error::KeysDoNotMatch(format!(
                "the card does not open with the {} just written",
                tgt.describe(self.kvn(tgt))
            )));
        }
        self.on_card = Some(tgt);
        Ok(Done {
            detail: json!({"opened_with": tgt.describe(self.kvn(tgt))}),
            ..Done::default()
        })
    }

    pub(super) fn perso_tags(&self) -> Result<Vec<u32>> {
        Ok(apdu::tlv::parse_all(&self.category.perso)
            .map_err(|e| Error::Invalid(format!("category personalisation: {e}")))?
            .iter()
            .map(|t| t.tag.value())
            .collect())
    }

    pub(super) fn personalize(&mut self) -> Result<Done> {
        let cin = kms::kdd_for_card_number(&self.job.card_number)?;
        let mut objects = vec![tlv(0x45, &cin)];
        for t in apdu::tlv::parse_all(&self.category.perso)
            .map_err(|e| Error::Invalid(format!("category personalisation: {e}")))?
        {
            objects.push(t.encode());
        }
        // Then the card's own objects (Request::Write::perso).
        let card_perso = apdu::parse_hex(&self.params.perso)
            .map_err(|e| Error::Invalid(format!("card personalisation: {e}")))?;
        for t in apdu::tlv::parse_all(&card_perso)
            .map_err(|e| Error::Invalid(format!("card personalisation: {e}")))?
        {
            objects.push(t.encode());
        }
        let n = objects.len();
        self.store_data(objects)?;
        Ok(Done {
            detail: json!({"objects": n}),
            ..Done::default()
        })
    }

    pub(super) fn erase_perso(&mut self) -> Result<Done> {
        let mut objects = vec![tlv(0x45, &[])];
        let mut tags = self.perso_tags()?;
        for t in &self.params.erase_tags {
            if !tags.contains(t) {
                tags.push(*t);
            }
        }
        for t in tags {
            objects.push(tlv(t, &[]));
        }
        let n = objects.len();
        self.store_data(objects)?;
        Ok(Done {
            detail: json!({"objects": n}),
            ..Done::default()
        })
    }

    pub(super) fn restore_kdd(&mut self) -> Result<Done> {
        let Some(factory) = self.card.factory_kdd.clone() else {
            return Ok(Done {
                detail: json!({"skipped": "factory KDD unknown"}),
                ..Done::default()
            });
        };
        let unchanged = self.kdd.map(|k| k.to_vec()) == Some(factory.clone());
        if !unchanged {
            self.store_kdd(&factory)?;
            self.kdd = <[u8; 10]>::try_from(factory.as_slice()).ok();
        }
        self.card.kdd = Some(factory.clone());
        Ok(Done {
            detail: json!({"kdd": apdu::hex(&factory), "unchanged": unchanged}),
            card: Some(self.card.clone()),
            ..Done::default()
        })
    }

    pub(super) fn install(&mut self, instance: &Aid, was_started: bool) -> Result<Done> {
        let spec = self
            .params
            .install
            .iter()
            .find(|a| aid_of(&a.instance).ok().as_ref() == Some(instance))
            .ok_or_else(|| Error::Invalid(format!("no parameters for {instance}")))?
            .spec()?;
        let cap_bytes = self
            .issuer
            .store
            .package_cap(&spec.package)?
            .ok_or_else(|| Error::Invalid(format!("package {} is not registered", spec.package)))?;
        let cap = gp::cap::CapFile::from_bytes(&cap_bytes)
            .map_err(|e| Error::Invalid(format!("package {}: {e}", spec.package)))?;
        if cap.package_aid() != spec.package {
            return Err(Error::Invalid(format!(
                "the CAP registered as {} is package {}",
                spec.package,
                cap.package_aid()
            )));
        }
        // What is already there (a step interrupted half-way, or content loaded before).
        let reg = ops::registry(&mut self.client)?;
        let have_file = reg.load_files.iter().any(|e| e.aid == spec.package);
        let have_app = reg.applications.iter().any(|e| e.aid == *instance);
        let mut loaded_now = false;
        if !have_file {
            let opts = ops::InstallOptions {
                load_only: true,
                ..Default::default()
            };
            ops::install_cap(&mut self.client, &cap, &opts)?;
            loaded_now = true;
            self.changed_in_step = true;
        }
        if !have_app {
            let mut c9 = vec![0xC9, spec.params.len() as u8];
            c9.extend_from_slice(&spec.params);
            let r = ops::install_instance(
                &mut self.client,
                spec.package,
                spec.module,
                *instance,
                spec.privileges,
                c9,
                true,
            );
            if let Err(e) = r {
                if loaded_now
                    && matches!(
                        e,
                        ClientError::Card {
                            op: Operation::InstallForInstall,
                            ..
                        }
                    )
                {
                    // Roll back the load of this step so the card is as it was.
                    if ops::delete(&mut self.client, &spec.package, true).is_ok() {
                        self.changed_in_step = false;
                    }
                }
                return Err(e.into());
            }
            self.changed_in_step = true;
        }
        if !spec.perso.is_empty() {
            ops::personalize(
                &mut self.client,
                instance,
                std::slice::from_ref(&spec.perso),
            )?;
            self.changed_in_step = true;
        }
        let detail = json!({
            "instance": instance.to_hex(),
            "package": spec.package.to_hex(),
            "loaded": !have_file,
            "installed": !have_app,
            "resumed": was_started,
        });
        Ok(Done {
            detail: detail.clone(),
            app_added: Some((*instance, spec.package)),
            ..Done::default()
        })
    }

    pub(super) fn delete(&mut self, instance: &Aid) -> Result<Done> {
        let r = self
            .params
            .delete
            .iter()
            .find(|a| aid_of(&a.instance).ok().as_ref() == Some(instance))
            .ok_or_else(|| Error::Invalid(format!("no parameters for {instance}")))?;
        let package = aid_of(&r.package)?;
        let shared = self
            .issuer
            .store
            .with_conn(|c| card_apps_in(c, &self.job.card_number))?
            .iter()
            .any(|a| a.instance != *instance && a.package == package);
        // GP 2.3.1 §11.2: DELETE of the load file with related objects removes its
        // instances too; when another instance uses the file, only this one goes.
        let (target, related) = if shared {
            (*instance, false)
        } else {
            (package, true)
        };
        match ops::delete(&mut self.client, &target, related) {
            Ok(()) => self.changed_in_step = true,
            // Already gone (an interrupted earlier attempt): done.
            Err(ClientError::Card {
                op: Operation::Delete,
                sw,
                ..
            }) if sw.status() == Status::ReferencedDataNotFound => {}
            Err(e) => return Err(e.into()),
        }
        let detail =
            json!({"instance": instance.to_hex(), "deleted": target.to_hex(), "related": related});
        Ok(Done {
            detail: detail.clone(),
            app_removed: Some(*instance),
            ..Done::default()
        })
    }

    pub(super) fn finish(&mut self) -> Done {
        let mut clear_apps = false;
        match self.job.kind {
            JobKind::Write | JobKind::Rewrite => self.card.state = CardState::Written,
            JobKind::Clear => {
                self.card.state = CardState::Blank;
                self.card.key_version = None;
                self.card.kvn = Some(self.category.initial_kvn);
                clear_apps = true;
            }
            JobKind::AppLoad
            | JobKind::AppDelete
            | JobKind::SsdCreate
            | JobKind::SsdRotate
            | JobKind::SsdRenew
            | JobKind::SsdReplace => {}
        }
        Done {
            detail: json!({
                "state": self.card.state.as_str(),
                "key_version": self.card.key_version,
                "kvn": self.card.kvn,
            }),
            card: Some(self.card.clone()),
            clear_apps,
            finish: true,
            ..Done::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_data_blocks() {
        let objs = vec![vec![1; 100], vec![2; 100], vec![3; 100]];
        let b = blocks(objs, 239).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].len(), 200);
        assert!(blocks(vec![vec![0; 300]], 239).is_err());
        assert_eq!(tlv(0xCF, &[1, 2]), vec![0xCF, 0x02, 1, 2]);
        assert_eq!(tlv(0x45, &[]), vec![0x45, 0x00]);
    }
}
