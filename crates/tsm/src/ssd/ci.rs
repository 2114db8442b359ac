//! The card issuer's platform: creates SSDs for its partners, hands them over, signs
//! Delegated Management tokens, renews and replaces keys.
//!
//! # Jobs (resumable, audited, over any [`CardChannel`])
//!
//! * `ssd_create` (flow 1 and 2): in a secure channel with the ISD (the card's own keys,
//!   derived in the card key store as issuance does), `install` = INSTALL [for install and
//!   make selectable] of the SSD with the model's privileges; for the authorized model
//!   `extradite` = INSTALL [for extradition] of the SSD to itself (GP 2.3.1 §6.4.1,
//!   §11.5.2.3.5: it leaves the ISD's hierarchy), in the same ISD session; then in a
//!   secure channel with the new SSD (its factory keys), `put_key` = PUT KEY replacing
//!   them with initial keys generated in the CI key store.
//! * `ssd_renew` (flows 3, 4, key sets the CI holds): `put_key` replacing the current key
//!   set with a new one.
//! * `ssd_replace` (flow 4, the owner's keys compromised): `lock` = one SET STATUS
//!   (P1 `60`) locking the SSD and its applications, `delete` = DELETE of its applications
//!   and load files, then of the SSD, then `install`, `extradite`, `put_key` as for a new
//!   SSD. The SSD is handed over again.
//!
//! Every step checks the card before acting again after an interruption (the registry
//! for `install`, `extradite`, `delete`; the new keys tried first for `put_key`), so
//! running a job again finishes it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use gp::aid::{Aid, ISD_AID};
use gp::commands::DataObject;
use gp::privileges::{Privilege, Privileges};
use gpclient::{ops, ClientError, GpClient, Operation};
use scp::{KeyKind, SecurityLevel};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use transport::{CardChannel, Traced};

use super::auth::{self, Refusal};
use super::job::{none, Effects, JobRun};
use super::keys::{new_label, KeySetStore, TransportPublicKey, WrappedKeySet};
use super::model::{
    DueRenewal, KeyHolder, KeyState, Partner, Renewal, Rotation, SsdKeyVersion, SsdModel,
    SsdRecord, SsdRequest, SsdState,
};
use super::session::{open_with, Candidate};
use super::Clock;
use crate::audit::{append_in, NewEntry};
use crate::error::{Error, Result};
use crate::issuance::{kvn_for_version, Actor, Issuer};
use crate::model::{CardState, JobKind, JobState};
use crate::store::jobs::{create_job_in, open_job_for_card_in};
use crate::store::ssd as rec;
use crate::store::NewJob;
use crate::Store;

/// How the CI platform runs SSD jobs.
#[derive(Clone)]
pub struct CiConfig {
    /// Security level of the secure channels (default C-MAC + C-DECRYPTION + R-MAC: every
    /// relayed command is authenticated and its data confidential end to end).
    pub level: SecurityLevel,
    /// How long a claimed job stays reserved to its worker.
    pub lease: Duration,
    /// The keys a new SSD is created with on these cards (the card's factory SSD keys;
    /// the virtual card uses the GP test key `40..4F`), replaced at once by the CI's
    /// initial keys.
    pub ssd_factory_key: Vec<u8>,
    /// Key version number of the factory SSD keys (0: the card's choice).
    pub ssd_factory_kvn: u8,
    /// Key version number of the CI's initial keys in the SSD.
    pub initial_kvn: u8,
    /// Cipher and length of the SSD key sets the CI generates (AES-128 for SCP03 cards).
    pub key_kind: KeyKind,
    /// Key length in bytes.
    pub key_len: usize,
    /// The Delegated Management token key (its public half is KVN 70 on the card), for
    /// the delegated model.
    pub token_signer: Option<Arc<dyn gp::dm::Signer + Send + Sync>>,
}

impl fmt::Debug for CiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CiConfig")
            .field("level", &self.level)
            .field("lease", &self.lease)
            .field("ssd_factory_kvn", &self.ssd_factory_kvn)
            .field("initial_kvn", &self.initial_kvn)
            .field("key_kind", &self.key_kind)
            .field("key_len", &self.key_len)
            .field("token_signer", &self.token_signer.is_some())
            .finish()
    }
}

impl Default for CiConfig {
    fn default() -> Self {
        CiConfig {
            level: SecurityLevel::MAC_ENC_RMAC,
            lease: Duration::from_secs(300),
            ssd_factory_key: gpclient::DEFAULT_TEST_KEY.to_vec(),
            ssd_factory_kvn: 0,
            initial_kvn: 0x30,
            key_kind: KeyKind::Aes,
            key_len: 16,
            token_signer: None,
        }
    }
}

/// What an AP asks the CI to sign: the token input (GP 2.3.1 Tables C-4 … C-9: `P1 ‖ P2 ‖
/// Lc ‖ data without the token`) of an INSTALL or DELETE for its SSD on a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// The card.
    pub card_number: String,
    /// The partner's SSD (hex) the command is for.
    pub aid: String,
    /// The token input.
    pub input: Vec<u8>,
}

/// The privileges of an SSD of each model (GP 2.3.1 §6.6.1, Table 11-7): Security Domain
/// and Authorized Management (the owner manages its content itself), or Delegated
/// Management (`A0`: content changes need the issuer's tokens).
pub fn model_privileges(model: SsdModel) -> Privileges {
    match model {
        SsdModel::Authorized => {
            Privileges::of(&[Privilege::SecurityDomain, Privilege::AuthorizedManagement])
        }
        SsdModel::Delegated => {
            Privileges::of(&[Privilege::SecurityDomain, Privilege::DelegatedManagement])
        }
    }
}

/// Parameters of an SSD job (JSON in the job record).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobParams {
    pub partner: String,
    pub aid: String,
    pub model: SsdModel,
    pub privileges: String,
    /// Key set to put (label in the key store) and its KVN.
    pub label: String,
    pub kvn: u8,
    /// For a renewal: the key set replaced.
    #[serde(default)]
    pub from_label: Option<String>,
    #[serde(default)]
    pub from_kvn: Option<u8>,
    /// For a renewal: `expiry` or `forced`.
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

fn parse_aid(hex: &str) -> Result<Aid> {
    let b = apdu::parse_hex(hex).map_err(|e| Error::Invalid(format!("AID {hex}: {e}")))?;
    Aid::new(&b).map_err(|e| Error::Invalid(format!("AID {hex}: {e}")))
}

/// The next KVN after `kvn` in 01-7F, skipping the token and receipt KVNs' neighbourhood.
pub(crate) fn next_kvn(kvn: u8) -> u8 {
    match kvn {
        0x6F => 0x72,
        0x7F.. => 0x01,
        k => k + 1,
    }
}

/// Whether a key version may be used for anything but its own renewal at `now_ms`.
pub(crate) fn usable(k: &SsdKeyVersion, now_ms: i64) -> Result<()> {
    if k.state == KeyState::Compromised {
        return Err(Error::KeyUnusable {
            kvn: k.kvn,
            why: format!(
                "it is marked compromised ({})",
                k.reason.as_deref().unwrap_or("no reason given")
            ),
        });
    }
    if k.expired(now_ms) {
        return Err(Error::KeyUnusable {
            kvn: k.kvn,
            why: format!("it expired at {}", crate::error::utc_text(k.expires_ms)),
        });
    }
    Ok(())
}

/// The card issuer's platform.
pub struct CiPlatform {
    issuer: Issuer,
    keys: Arc<dyn KeySetStore>,
    config: CiConfig,
    clock: Clock,
}

impl fmt::Debug for CiPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CiPlatform")
            .field("issuer", &self.issuer)
            .field("config", &self.config)
            .finish()
    }
}

/// Who a partner is in the audit log.
fn partner_actor(partner: &str) -> String {
    format!("{partner}/partner-api")
}

impl CiPlatform {
    /// A CI platform over an issuer (its store and the card keys' key store) and the key
    /// store of SSD key sets.
    pub fn new(issuer: Issuer, keys: Arc<dyn KeySetStore>, config: CiConfig) -> CiPlatform {
        CiPlatform {
            issuer,
            keys,
            config,
            clock: Clock::system(),
        }
    }

    /// This platform with another clock (tests move time with [`Clock::manual`]).
    pub fn with_clock(mut self, clock: Clock) -> CiPlatform {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.issuer.store()
    }

    /// The key store of SSD key sets.
    pub fn key_sets(&self) -> &Arc<dyn KeySetStore> {
        &self.keys
    }

    /// Records a refusal of `partner` (audited with the partner as actor) and returns it.
    fn refuse(&self, partner: &str, action: &str, card_number: &str, reason: Refusal) -> Error {
        let e = Error::Refused {
            partner: partner.into(),
            action: action.into(),
            reason,
        };
        let entry = NewEntry::new(
            &partner_actor(partner),
            &format!("ssd.{action}"),
            "forbidden",
        )
        .card(card_number)
        .detail(json!({"reason": reason.to_string()}));
        match self.store().audit_append(&entry) {
            Ok(_) => e,
            Err(s) => s.into(),
        }
    }

    /// The partner if it may act on `aid` of `card_number`; a refusal is audited.
    fn authorise(
        &self,
        partner: &str,
        action: &str,
        card_number: &str,
        aid: &Aid,
    ) -> Result<Partner> {
        let Some(p) = self.store().partner(partner)? else {
            return Err(self.refuse(partner, action, card_number, Refusal::UnknownPartner));
        };
        auth::check_scope(&p, card_number, aid)
            .map_err(|r| self.refuse(partner, action, card_number, r))?;
        Ok(p)
    }

    /// The partner's recorded SSD; refusals (not its own, revoked, out of scope) audited.
    fn owned(
        &self,
        partner: &str,
        action: &str,
        card_number: &str,
        aid: &Aid,
    ) -> Result<(Partner, SsdRecord)> {
        let p = self.authorise(partner, action, card_number, aid)?;
        let ssd = self.store().ssd(card_number, aid.as_bytes())?;
        auth::check_owner(&p, ssd.as_ref())
            .map_err(|r| self.refuse(partner, action, card_number, r))?;
        let ssd = ssd.ok_or(Error::UnknownCard)?;
        Ok((p, ssd))
    }

    /// Checks a partner's request against its contract and records a job creating the
    /// SSD (and the SSD as `requested`); returns the job id. Refusals are audited.
    pub fn request(&self, partner: &str, req: &SsdRequest) -> Result<i64> {
        let aid = parse_aid(&req.aid).map_err(|_| {
            self.refuse(
                partner,
                "request",
                &req.card_number,
                Refusal::AidOutsidePrefix,
            )
        })?;
        self.authorise(partner, "request", &req.card_number, &aid)?;
        let card = self
            .store()
            .card(&req.card_number)?
            .ok_or(Error::UnknownCard)?;
        if card.state != CardState::Written {
            return Err(Error::WrongState {
                state: card.state.to_string(),
                need: "SSDs are created on written cards",
            });
        }
        if let Some(s) = self.store().ssd(&req.card_number, aid.as_bytes())? {
            if !matches!(s.state, SsdState::Deleted | SsdState::Failed) {
                return Err(Error::Invalid(format!(
                    "the card already has SSD {aid} ({})",
                    s.state
                )));
            }
        }
        let privileges = model_privileges(req.model);
        let params = JobParams {
            partner: partner.into(),
            aid: aid.to_hex(),
            model: req.model,
            privileges: apdu::hex(&privileges.0),
            label: new_label(&req.card_number, &aid, self.config.initial_kvn),
            kvn: self.config.initial_kvn,
            from_label: None,
            from_kvn: None,
            cause: None,
            reason: None,
        };
        let mut steps = vec!["install".to_string()];
        if req.model == SsdModel::Authorized {
            steps.push("extradite".into());
        }
        steps.push("put_key".into());
        let job = NewJob {
            tenant: partner.into(),
            actor: partner_actor(partner),
            kind: JobKind::SsdCreate,
            card_number: req.card_number.clone(),
            params: serde_json::to_value(&params)
                .map_err(|e| Error::Invalid(format!("job parameters: {e}")))?,
            steps,
        };
        self.store().tx(|c| -> Result<i64> {
            if let Some(open) = open_job_for_card_in(c, &req.card_number)? {
                return Err(Error::CardBusy(open.id));
            }
            rec::insert_ssd_in(
                c,
                &req.card_number,
                aid.as_bytes(),
                partner,
                req.model,
                &privileges.0,
            )?;
            Ok(create_job_in(c, &job, None)?)
        })
    }

    /// Runs (or resumes) an SSD job on the card in `chan` (directly, or relayed through the
    /// AP's terminal); returns the SSD as recorded at the end.
    pub fn run(&self, job: i64, chan: &mut dyn CardChannel) -> Result<SsdRecord> {
        let found = self.store().job(job)?.ok_or(Error::UnknownJob(job))?;
        if !matches!(
            found.kind,
            JobKind::SsdCreate | JobKind::SsdRenew | JobKind::SsdReplace
        ) {
            return Err(Error::Invalid(format!(
                "job {job} is not an SSD job of the CI"
            )));
        }
        let mut run = JobRun::claim(self.store(), job, &found.actor, self.config.lease)?;
        let params: JobParams = serde_json::from_value(run.job.params.clone())
            .map_err(|e| Error::Invalid(format!("job {job} parameters: {e}")))?;
        let aid = parse_aid(&params.aid)?;
        let mut card = CardRun {
            ci: self,
            client: GpClient::new(Traced::new(chan, None)),
            card_number: run.job.card_number.clone(),
            aid,
            params,
            isd_open: false,
        };
        let result = card.drive(&mut run);
        match result {
            Ok(()) => {}
            Err(e) => {
                let card_number = card.card_number.clone();
                let kind = run.job.kind;
                let resumable = matches!(
                    e,
                    Error::Interrupted(_) | Error::Store(_) | Error::JobLeased(_)
                );
                // A creation the card refused is rolled back: the SSD, if the card has
                // it, is deleted again (best effort; the audit entry says whether).
                let rolled_back = if kind == JobKind::SsdCreate && !resumable {
                    Some(card.roll_back().is_ok())
                } else {
                    None
                };
                let effects: Effects<'_> = Box::new(move |c| {
                    if kind == JobKind::SsdCreate {
                        rec::set_ssd_state_in(c, &card_number, aid.as_bytes(), SsdState::Failed)?;
                    }
                    Ok(())
                });
                let e = match rolled_back {
                    Some(false) => Error::Invalid(format!(
                        "{e}; the SSD could not be deleted again: clear it from the card"
                    )),
                    _ => e,
                };
                let _ = run.fail(&e, effects);
                return Err(e);
            }
        }
        self.store()
            .ssd(&run.job.card_number, aid.as_bytes())?
            .ok_or(Error::UnknownCard)
    }

    /// The initial key set of the job's SSD, wrapped for the partner's registered
    /// transport key (see [`super::keys`]); only once the job is done and until the
    /// hand-over. Audited.
    pub fn initial_keys(&self, partner: &str, job: i64) -> Result<WrappedKeySet> {
        let (p, ssd, params) = self.job_of(partner, "initial_keys", job)?;
        if ssd.state != SsdState::Created || ssd.model != SsdModel::Authorized {
            return Err(Error::WrongState {
                state: ssd.state.to_string(),
                need:
                    "initial keys are given for an authorized SSD created and not yet handed over",
            });
        }
        let aid = parse_aid(&params.aid)?;
        let (k, label) = self
            .store()
            .with_conn(|c| rec::current_key_label_in(c, &ssd.card_number, aid.as_bytes()))?
            .ok_or_else(|| Error::Invalid("the SSD has no key set".into()))?;
        if k.holder != KeyHolder::Ci {
            return Err(Error::Invalid("the CI holds no key set of this SSD".into()));
        }
        let to = TransportPublicKey::from_der_or_pem(&p.transport_key)?;
        let wrapped = self.keys.wrap_key_set_for(&label, &to)?;
        self.store().audit_append(
            &NewEntry::new(&partner_actor(partner), "ssd.initial_keys", "ok")
                .card(&ssd.card_number)
                .detail(json!({"job": job, "aid": params.aid, "kvn": k.kvn,
                               "kcv": apdu::hex(&k.kcv)})),
        )?;
        Ok(wrapped)
    }

    /// Whether `partner` may relay job `job` (its own SSD job, the partner not revoked):
    /// the partner API checks this before it runs the job over its APDU bridge
    /// ([`CardIssuerLink::exchange`](super::CardIssuerLink::exchange)). Refusals audited.
    pub fn check_job(&self, partner: &str, job: i64) -> Result<()> {
        let j = self.store().job(job)?.ok_or(Error::UnknownJob(job))?;
        let params: Option<JobParams> = serde_json::from_value(j.params.clone()).ok();
        let ours = matches!(
            j.kind,
            JobKind::SsdCreate | JobKind::SsdRenew | JobKind::SsdReplace
        );
        let Some(params) = params.filter(|p| ours && p.partner == partner) else {
            return Err(self.refuse(partner, "exchange", &j.card_number, Refusal::NotOwner));
        };
        let aid = parse_aid(&params.aid)?;
        self.authorise(partner, "exchange", &j.card_number, &aid)?;
        Ok(())
    }

    /// The partner's finished SSD job, its SSD and parameters; refusals audited.
    fn job_of(
        &self,
        partner: &str,
        action: &str,
        job: i64,
    ) -> Result<(Partner, SsdRecord, JobParams)> {
        let j = self.store().job(job)?.ok_or(Error::UnknownJob(job))?;
        let params: Option<JobParams> = serde_json::from_value(j.params.clone()).ok();
        let Some(params) = params.filter(|p| p.partner == partner) else {
            return Err(self.refuse(partner, action, &j.card_number, Refusal::NotOwner));
        };
        let aid = parse_aid(&params.aid)?;
        let (p, ssd) = self.owned(partner, action, &j.card_number, &aid)?;
        if j.state != JobState::Done {
            return Err(Error::WrongState {
                state: j.state.to_string(),
                need: "the CI's job must be done first",
            });
        }
        Ok((p, ssd, params))
    }

    /// The AP replaced the initial keys: the CI deletes its copy from its key store, then
    /// records the hand-over (the AP's key version, the receipt). Confirming twice gives
    /// the same record.
    pub fn confirm_rotation(
        &self,
        partner: &str,
        job: i64,
        rotation: &Rotation,
    ) -> Result<SsdRecord> {
        let (_, ssd, params) = self.job_of(partner, "confirm_rotation", job)?;
        let aid = parse_aid(&params.aid)?;
        if ssd.state == SsdState::HandedOver
            && ssd
                .current_key()
                .is_some_and(|k| k.kvn == rotation.kvn && k.kcv == rotation.kcv)
        {
            return Ok(ssd);
        }
        if ssd.state != SsdState::Created || ssd.model != SsdModel::Authorized {
            return Err(Error::WrongState {
                state: ssd.state.to_string(),
                need: "only an authorized SSD created and not handed over is taken over",
            });
        }
        if rotation.kvn == params.kvn
            || !(1..=0x7F).contains(&rotation.kvn)
            || rotation.kcv.len() != 3
        {
            return Err(Error::Invalid(format!(
                "the new key set must have a KVN other than {:#04x} and a 3-byte KCV",
                params.kvn
            )));
        }
        // Key store first: if the database write fails, confirming again deletes nothing
        // more and records the hand-over.
        let _ = self.keys.delete_key_set(&params.label)?;
        let now = self.clock.now_ms();
        let policy = self.store().key_policy()?;
        let expires =
            now.saturating_add(i64::try_from(policy.ssd_lifetime.as_millis()).unwrap_or(i64::MAX));
        let mut h = Sha256::new();
        h.update(job.to_be_bytes());
        h.update(aid.as_bytes());
        h.update([rotation.kvn]);
        h.update(&rotation.kcv);
        let receipt = apdu::hex(&h.finalize());
        let card_number = ssd.card_number.clone();
        self.store().tx(|c| -> Result<()> {
            rec::add_key_version_in(
                c,
                &card_number,
                aid.as_bytes(),
                rotation.kvn,
                "",
                KeyHolder::Ap,
                &rotation.kcv,
                now,
                expires,
            )?;
            rec::add_renewal_in(
                c,
                &card_number,
                aid.as_bytes(),
                &Renewal {
                    from_kvn: params.kvn,
                    to_kvn: rotation.kvn,
                    cause: "handover".into(),
                    reason: None,
                    at_ms: now,
                },
            )?;
            rec::set_handed_over_in(c, &card_number, aid.as_bytes(), now, &receipt)?;
            append_in(
                c,
                &NewEntry::new(&partner_actor(partner), "ssd.handover", "ok")
                    .card(&card_number)
                    .detail(json!({"job": job, "aid": params.aid, "kvn": rotation.kvn,
                                   "kcv": apdu::hex(&rotation.kcv), "receipt": receipt,
                                   "initial_keys_deleted": params.label})),
            )?;
            Ok(())
        })?;
        self.store()
            .ssd(&card_number, aid.as_bytes())?
            .ok_or(Error::UnknownCard)
    }

    /// The partner's SSD as recorded (refusals audited).
    pub fn status(&self, partner: &str, card_number: &str, aid: &str) -> Result<SsdRecord> {
        let aid = parse_aid(aid)
            .map_err(|_| self.refuse(partner, "status", card_number, Refusal::AidOutsidePrefix))?;
        Ok(self.owned(partner, "status", card_number, &aid)?.1)
    }

    /// The partner's SSDs.
    pub fn ssds(&self, partner: &str) -> Result<Vec<SsdRecord>> {
        match self.store().partner(partner)? {
            Some(p) if !p.revoked => Ok(self.store().ssds_of_owner(partner)?),
            Some(_) => Err(self.refuse(partner, "list", "", Refusal::Revoked)),
            None => Err(self.refuse(partner, "list", "", Refusal::UnknownPartner)),
        }
    }

    /// Signs a Delegated Management token for an INSTALL or DELETE on the partner's
    /// delegated SSD: the command must target that SSD, instances and deleted objects must
    /// be under the partner's AID prefix, and the SSD's key set must be usable. Audited.
    pub fn sign_token(&self, partner: &str, req: &TokenRequest) -> Result<Vec<u8>> {
        let aid = parse_aid(&req.aid).map_err(|_| {
            self.refuse(
                partner,
                "sign_token",
                &req.card_number,
                Refusal::AidOutsidePrefix,
            )
        })?;
        let (p, ssd) = self.owned(partner, "sign_token", &req.card_number, &aid)?;
        if ssd.model != SsdModel::Delegated || ssd.state != SsdState::Managed {
            return Err(Error::WrongState {
                state: format!("{} {}", ssd.model, ssd.state),
                need: "tokens are signed for delegated SSDs the CI manages",
            });
        }
        if let Some(k) = ssd.current_key() {
            usable(k, self.clock.now_ms())?;
        }
        let what = super::token::check_input(&req.input, &aid, &p.aid_prefix)
            .map_err(|r| self.refuse(partner, "sign_token", &req.card_number, r))?;
        let signer = self
            .config
            .token_signer
            .as_ref()
            .ok_or_else(|| Error::Invalid("this CI platform has no token key".into()))?;
        let token = signer
            .sign(&req.input)
            .map_err(|e| Error::Invalid(format!("token signature: {e}")))?;
        self.store().audit_append(
            &NewEntry::new(&partner_actor(partner), "ssd.sign_token", "ok")
                .card(&req.card_number)
                .detail(json!({"aid": req.aid, "command": what,
                               "input_sha256": apdu::hex(&Sha256::digest(&req.input))})),
        )?;
        Ok(token)
    }

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
        let policy = self.store().key_policy()?;
        let expires =
            now.saturating_add(i64::try_from(policy.ssd_lifetime.as_millis()).unwrap_or(i64::MAX));
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
            Ok(create_job_in(c, &job, None)?)
        })
    }
}

/// One run of a CI job on a card.
struct CardRun<'p, 'c> {
    ci: &'p CiPlatform,
    client: GpClient<&'c mut dyn CardChannel>,
    card_number: String,
    aid: Aid,
    params: JobParams,
    isd_open: bool,
}

impl CardRun<'_, '_> {
    fn drive(&mut self, run: &mut JobRun<'_>) -> Result<()> {
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
    fn roll_back(&mut self) -> Result<()> {
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
        let policy = self.ci.store().key_policy()?;
        let expires =
            now.saturating_add(i64::try_from(policy.ssd_lifetime.as_millis()).unwrap_or(i64::MAX));
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
