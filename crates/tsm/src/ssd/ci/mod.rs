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

mod card;
mod receipts;
mod renewal;
use card::CardRun;

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
use super::job::{none, ClaimedSsd, Effects, JobRun};
use super::keys::{new_label, KeySetStore, TransportPublicKey, WrappedKeySet};
use super::model::{
    DmReceipt, DueRenewal, KeyHolder, KeyState, Partner, Renewal, Rotation, SsdKeyVersion,
    SsdModel, SsdRecord, SsdRequest, SsdState,
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
    /// The card's Receipt Generation key (KVN 71 of the ISD, which only the card issuer
    /// knows), for the receipts of the delegated model ([`CiPlatform::check_receipt`]).
    pub receipt_key: Option<gp::dm::ReceiptKey>,
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
            .field("receipt_key", &self.receipt_key.is_some())
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
            receipt_key: None,
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
    pub(super) clock: Clock,
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
            Ok(create_job_in(c, &job, None, &[])?)
        })
    }

    /// Runs (or resumes) an SSD job on the card in `chan` (directly, or relayed through the
    /// AP's terminal); returns the SSD as recorded at the end. [`CiPlatform::claim`], then
    /// [`CiPlatform::run_claimed`].
    pub fn run(&self, job: i64, chan: &mut dyn CardChannel) -> Result<SsdRecord> {
        let claimed = self.claim(job)?;
        self.run_claimed(claimed, chan)
    }

    /// What [`CiPlatform::run`] does before the card: the job checked (one of the CI's SSD
    /// jobs) and claimed by this worker (`running` under its lease, audited). Refusals
    /// (unknown job, another kind, finished, held by another worker) leave it as it was.
    pub fn claim(&self, job: i64) -> Result<ClaimedSsd> {
        let found = self.store().job(job)?.ok_or(Error::UnknownJob(job))?;
        if !matches!(
            found.kind,
            JobKind::SsdCreate | JobKind::SsdRenew | JobKind::SsdReplace
        ) {
            return Err(Error::Invalid(format!(
                "job {job} is not an SSD job of the CI"
            )));
        }
        super::job::claim(self.store(), job, &found.actor, self.config.lease)
    }

    /// Runs a job claimed by [`CiPlatform::claim`] on the card in `chan`; returns the SSD as
    /// recorded at the end.
    pub fn run_claimed(
        &self,
        claimed: ClaimedSsd,
        chan: &mut dyn CardChannel,
    ) -> Result<SsdRecord> {
        let mut run = JobRun::start(self.store(), claimed);
        let job = run.job.id;
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
        let expires = self.store().key_policy()?.expiry_of_new_key(now);
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
}
