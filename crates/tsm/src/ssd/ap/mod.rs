//! The application provider's platform: asks the CI for SSDs, relays the CI's commands to
//! its card, takes the SSD over by replacing the initial keys with its own, renews them.
//!
//! # The take-over job (`ssd_rotate`, resumable, audited)
//!
//! 1. `relay`: every command of the CI's job ([`CardIssuerLink::exchange`]) goes to the
//!    card unchanged and its response back. The commands are C-MACed and encrypted in the
//!    CI's secure channel with the ISD (and with the new SSD): the AP can neither read nor
//!    alter them (an altered command fails the card's C-MAC check; the card then closes
//!    the session and changes nothing). A broken exchange leaves both jobs pending:
//!    running this job again restarts the relay (`exchange(job, None)`) and the CI
//!    resumes its job from its journal.
//! 2. `import_keys` (authorized model): the initial key set, wrapped for this AP's
//!    transport key ([`super::keys`]), is imported into the AP's key store; its KCV must
//!    be the one the CI recorded.
//! 3. `rotate`: a secure channel with the SSD using the initial keys, PUT KEY of a key set
//!    generated in the AP's key store replacing them (new KVN); with
//!    [`ApConfig::scp11`], the PUT KEY goes inside an SCP11a session ([`Scp11Rotation`]).
//!    See the [module documentation](super) for what the CI could still learn with SCP03
//!    only.
//! 4. `confirm`: [`CardIssuerLink::confirm_rotation`]; the CI deletes its initial keys and
//!    records the hand-over; the AP deletes its copy of the initial keys.

mod card;
use card::ApRun;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use gp::aid::Aid;
use gpclient::{ops, GpClient};
use scp::{KeyKind, SecurityLevel};
use serde::{Deserialize, Serialize};
use serde_json::json;
use transport::{CardChannel, Traced};

use super::ci::{model_privileges, next_kvn, TokenRequest};
use super::job::{none, ClaimedSsd, Effects, JobRun};
use super::keys::{new_label, KeySetStore, WrappedKeySet};
use super::model::{
    DueRenewal, Exchange, KeyHolder, Renewal, Rotation, SsdModel, SsdRecord, SsdRequest, SsdState,
};
use super::session::{open_with, Candidate};
use super::Clock;
use crate::audit::{append_in, NewEntry};
use crate::error::{Error, Result};
use crate::model::{Job, JobKind, Role, Step};
use crate::store::jobs::{create_job_in, open_job_for_card_in};
use crate::store::ssd as rec;
use crate::store::NewJob;
use crate::Store;

/// The CI platform as the AP sees it (HTTPS with a client certificate in production: the
/// partner's identity is the link's).
pub trait CardIssuerLink: Send + Sync {
    /// Asks for an SSD; returns the CI's job id.
    fn request(&self, req: &SsdRequest) -> Result<i64>;
    /// Delivers the card's response to the last command and gets the next command, or
    /// [`Exchange::Done`] once the CI's job has ended (done or failed: see
    /// [`CardIssuerLink::status`]). `None` starts the relay of the job, or restarts it
    /// after a broken exchange (the CI abandons the command it was waiting for and
    /// resumes its job from its journal).
    fn exchange(&self, job: i64, last_response: Option<&[u8]>) -> Result<Exchange>;
    /// The job's initial key set, wrapped for this AP's transport key.
    fn initial_keys(&self, job: i64) -> Result<WrappedKeySet>;
    /// Tells the CI the initial keys are replaced.
    fn confirm_rotation(&self, job: i64, rotation: &Rotation) -> Result<SsdRecord>;
    /// The SSD as the CI records it.
    fn status(&self, card_number: &str, aid: &str) -> Result<SsdRecord>;
    /// Asks the CI for the job that renews a key set the CI holds, or (the AP's own keys
    /// compromised) replaces the SSD; returns the CI's job id, relayed like a creation.
    fn renew(&self, card_number: &str, aid: &str) -> Result<i64>;
    /// Reports a key version of this AP's SSD compromised (the CI then replaces the SSD).
    fn report_compromised(
        &self,
        card_number: &str,
        aid: &str,
        kvn: u8,
        reason: &str,
    ) -> Result<SsdRecord>;
    /// Reports that the AP renewed its own key set of the SSD (for the CI's records).
    fn report_renewal(
        &self,
        card_number: &str,
        aid: &str,
        renewal: &Renewal,
        rotation: &Rotation,
    ) -> Result<SsdRecord>;
    /// A Delegated Management token for an INSTALL or DELETE.
    fn sign_token(&self, req: &TokenRequest) -> Result<Vec<u8>>;
    /// Hands the CI a receipt the card gave for a delegated operation (`confirmation`:
    /// the confirmation structure as the card answered; `operation`: what it confirms);
    /// the CI verifies it with the card's receipt key and records it.
    fn check_receipt(
        &self,
        card_number: &str,
        aid: &str,
        operation: &gp::dm::ReceiptContext,
        confirmation: &[u8],
    ) -> Result<SsdRecord>;
}

/// What the AP needs to replace the initial keys inside an SCP11a session with the SSD
/// (GP Amendment F), so that knowing the initial keys and recording every byte of the
/// rotation gives nothing: in the SCP03 session opened with the initial keys the AP has the
/// card generate the SSD's SCP11 key pair (KID `11`), stores its certificate (signed by the
/// AP's CA) and loads the AP's CA key as the OCE trust anchor (KID `10`), all public data;
/// it then opens SCP11a (ECDH between the card's key and the AP's OCE key plus ephemeral
/// keys, in which the initial keys play no part) and sends the PUT KEY of its own key set
/// in that session. What remains: a party that knows the initial keys **and** can act on
/// the card before the rotation (not merely record) could load its own trust anchor
/// first; that is the window the hand-over's quick rotation closes.
pub struct Scp11Rotation {
    /// Key version of the SSD's SCP11 keys (SD key pair and OCE trust anchor).
    pub kvn: u8,
    /// The AP's CA public key: the SSD's OCE trust anchor, and what the SSD's certificate
    /// is checked with when the channel opens.
    pub ca_public: scp::scp11::PublicKey,
    /// Certifies the SSD's public key generated on the card (the AP's CA, in its key
    /// store): a GP `7F21` or X.509 certificate.
    pub certify_sd: Box<CertifySd>,
    /// The AP's OCE key agreement key (SK.OCE.ECKA; in its key store).
    pub oce_key: Arc<dyn scp::scp11::OceKeyAgreement + Send + Sync>,
    /// Its public key.
    pub oce_public: scp::scp11::PublicKey,
    /// Its certificate chain, signed by the CA, leaf last.
    pub oce_chain: Vec<Vec<u8>>,
}

/// Certifies a public key generated on the card (see [`Scp11Rotation::certify_sd`]).
pub type CertifySd = dyn Fn(&scp::scp11::PublicKey) -> Result<Vec<u8>> + Send + Sync;

impl fmt::Debug for Scp11Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scp11Rotation")
            .field("kvn", &self.kvn)
            .field("ca_public", &self.ca_public)
            .field("oce_public", &self.oce_public)
            .field("oce_chain", &self.oce_chain.len())
            .finish_non_exhaustive()
    }
}

/// The shared OCE key as gpclient's boxed key agreement.
struct SharedOce(Arc<dyn scp::scp11::OceKeyAgreement + Send + Sync>);

impl scp::scp11::OceKeyAgreement for SharedOce {
    fn curve(&self) -> scp::scp11::Curve {
        self.0.curve()
    }
    fn agree(
        &self,
        peer: &scp::scp11::PublicKey,
    ) -> std::result::Result<zeroize::Zeroizing<Vec<u8>>, scp::Error> {
        self.0.agree(peer)
    }
}

/// How the AP platform runs.
#[derive(Debug, Clone)]
pub struct ApConfig {
    /// This AP's partner id (its tenant on both platforms).
    pub partner_id: String,
    /// Label of its P-256 transport key in its key store.
    pub transport_key_label: String,
    /// Security level of its secure channels with its SSDs.
    pub level: SecurityLevel,
    /// How long a claimed job stays reserved to its worker.
    pub lease: Duration,
    /// Cipher and length of the key sets it generates.
    pub key_kind: KeyKind,
    /// Key length in bytes.
    pub key_len: usize,
    /// Replace the initial keys inside an SCP11a session ([`Scp11Rotation`]); `None`:
    /// in the SCP03 session opened with them (see the module documentation for what the
    /// CI could then still learn).
    pub scp11: Option<Arc<Scp11Rotation>>,
}

impl ApConfig {
    /// Defaults for partner `id`: transport key `transport`, C-MAC + C-DEC + R-MAC,
    /// AES-128, 5-minute lease.
    pub fn new(id: &str) -> ApConfig {
        ApConfig {
            partner_id: id.into(),
            transport_key_label: "transport".into(),
            level: SecurityLevel::MAC_ENC_RMAC,
            lease: Duration::from_secs(300),
            key_kind: KeyKind::Aes,
            key_len: 16,
            scp11: None,
        }
    }
}

/// Parameters of the AP's jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ApParams {
    ci_job: i64,
    aid: String,
    model: SsdModel,
    /// Label of the imported initial keys.
    initial_label: String,
    /// Label of the AP's own new keys.
    label: String,
    /// For a renewal of the AP's own keys: the key set replaced.
    #[serde(default)]
    from_label: Option<String>,
    #[serde(default)]
    from_kvn: Option<u8>,
    #[serde(default)]
    kvn: Option<u8>,
    #[serde(default)]
    cause: Option<String>,
}

/// The application provider's platform.
pub struct ApPlatform {
    store: Store,
    keys: Arc<dyn KeySetStore>,
    link: Arc<dyn CardIssuerLink>,
    config: ApConfig,
    pub(super) clock: Clock,
}

impl fmt::Debug for ApPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApPlatform")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish()
    }
}

fn parse_aid(hex: &str) -> Result<Aid> {
    let b = apdu::parse_hex(hex).map_err(|e| Error::Invalid(format!("AID {hex}: {e}")))?;
    Aid::new(&b).map_err(|e| Error::Invalid(format!("AID {hex}: {e}")))
}

impl ApPlatform {
    /// An AP platform: its store, its key store, the link to the CI.
    pub fn new(
        store: Store,
        keys: Arc<dyn KeySetStore>,
        link: Arc<dyn CardIssuerLink>,
        config: ApConfig,
    ) -> ApPlatform {
        ApPlatform {
            store,
            keys,
            link,
            config,
            clock: Clock::system(),
        }
    }

    /// This platform with another clock.
    pub fn with_clock(mut self, clock: Clock) -> ApPlatform {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Its transport public key (SubjectPublicKeyInfo, DER), generated in its key store on
    /// first use: what the CI registers with the partner.
    pub fn transport_key(&self) -> Result<Vec<u8>> {
        let label = &self.config.transport_key_label;
        let key = match self.keys.transport_public_key(label) {
            Ok(k) => k,
            Err(_) => self.keys.create_transport_key(label)?,
        };
        Ok(key.to_spki_der())
    }

    fn actor(&self) -> String {
        format!("{}/ap-platform", self.config.partner_id)
    }

    fn ensure_tenant(&self) -> Result<()> {
        if self.store.tenant(&self.config.partner_id)?.is_none() {
            self.store.create_tenant(
                &self.actor(),
                &self.config.partner_id,
                &self.config.partner_id,
                Role::ApplicationProvider,
            )?;
        }
        Ok(())
    }

    /// Asks the CI for an SSD and records the AP's job taking it over (`ssd_rotate`);
    /// returns the AP's job id. Run it with [`ApPlatform::run`] on the card.
    pub fn request(&self, req: &SsdRequest) -> Result<i64> {
        let aid = parse_aid(&req.aid)?;
        self.ensure_tenant()?;
        if let Some(s) = self.store.ssd(&req.card_number, aid.as_bytes())? {
            if !matches!(s.state, SsdState::Deleted | SsdState::Failed) {
                return Err(Error::Invalid(format!(
                    "the card already has SSD {aid} ({})",
                    s.state
                )));
            }
        }
        let ci_job = match self.link.request(req) {
            Ok(j) => j,
            Err(e) => {
                // A refusal of the CI is audited here too (and on the CI's side).
                let entry = NewEntry::new(&self.actor(), "ssd.request", "refused")
                    .card(&req.card_number)
                    .detail(json!({"aid": aid.to_hex(), "model": req.model,
                                   "error": e.to_string()}));
                return Err(match self.store.audit_append(&entry) {
                    Ok(_) => e,
                    Err(s) => s.into(),
                });
            }
        };
        self.record_take_over(&req.card_number, &aid, req.model, ci_job, true)
    }

    fn record_take_over(
        &self,
        card_number: &str,
        aid: &Aid,
        model: SsdModel,
        ci_job: i64,
        new: bool,
    ) -> Result<i64> {
        let params = ApParams {
            ci_job,
            aid: aid.to_hex(),
            model,
            initial_label: format!("{}-i", new_label(card_number, aid, 0)),
            label: new_label(card_number, aid, 0),
            from_label: None,
            from_kvn: None,
            kvn: None,
            cause: None,
        };
        let steps: Vec<String> = match model {
            SsdModel::Authorized => ["relay", "import_keys", "rotate", "confirm"]
                .map(String::from)
                .to_vec(),
            SsdModel::Delegated => vec!["relay".into()],
        };
        let job = NewJob {
            tenant: self.config.partner_id.clone(),
            actor: self.actor(),
            kind: JobKind::SsdRotate,
            card_number: card_number.into(),
            params: serde_json::to_value(&params)
                .map_err(|e| Error::Invalid(format!("job parameters: {e}")))?,
            steps,
        };
        let privileges = model_privileges(model);
        self.store.tx(|c| -> Result<i64> {
            if let Some(open) = open_job_for_card_in(c, card_number)? {
                return Err(Error::CardBusy(open.id));
            }
            if new {
                rec::insert_ssd_in(
                    c,
                    card_number,
                    aid.as_bytes(),
                    &self.config.partner_id,
                    model,
                    &privileges.0,
                )?;
            }
            Ok(create_job_in(c, &job, None, &[])?)
        })
    }

    /// Runs (or resumes) one of its jobs on the card in `chan`: [`ApPlatform::claim`], then
    /// [`ApPlatform::run_claimed`].
    pub fn run(&self, job: i64, chan: &mut dyn CardChannel) -> Result<SsdRecord> {
        let claimed = self.claim(job)?;
        self.run_claimed(claimed, chan)
    }

    /// What [`ApPlatform::run`] does before the card: one of its own SSD jobs claimed by
    /// this worker (`running` under its lease, audited). Refusals (unknown job, another
    /// platform's or kind, finished, held by another worker) leave it as it was.
    pub fn claim(&self, job: i64) -> Result<ClaimedSsd> {
        let found = self.own_job(job)?;
        super::job::claim(&self.store, job, &found.actor, self.config.lease)
    }

    /// One of this platform's SSD jobs (the take-over or a renewal, submitted under its
    /// partner id); any other is unknown here.
    fn own_job(&self, job: i64) -> Result<Job> {
        self.store
            .job(job)?
            .filter(|j| {
                j.tenant == self.config.partner_id
                    && matches!(j.kind, JobKind::SsdRotate | JobKind::SsdRenew)
            })
            .ok_or(Error::UnknownJob(job))
    }

    /// One of its jobs and its steps (`GET /api/v1/jobs/{id}` of the AP's API): the AP
    /// platform acts for one partner, and its operators read its jobs; any other job is
    /// unknown here.
    pub fn job_status(&self, job: i64) -> Result<(Job, Vec<Step>)> {
        let found = self.own_job(job)?;
        let steps = self.store.job_steps(job)?;
        Ok((found, steps))
    }

    /// Runs a job claimed by [`ApPlatform::claim`] on the card in `chan`; returns the SSD as
    /// recorded at the end.
    pub fn run_claimed(
        &self,
        claimed: ClaimedSsd,
        chan: &mut dyn CardChannel,
    ) -> Result<SsdRecord> {
        let job = claimed.job().id;
        let mut run = JobRun::start(&self.store, claimed);
        let params: ApParams = serde_json::from_value(run.job.params.clone())
            .map_err(|e| Error::Invalid(format!("job {job} parameters: {e}")))?;
        let aid = parse_aid(&params.aid)?;
        let mut card = ApRun {
            ap: self,
            client: GpClient::new(Traced::new(chan, None)),
            card_number: run.job.card_number.clone(),
            aid,
            params,
        };
        if let Err(e) = card.drive(&mut run) {
            // A creation the CI's run failed (the card refused it): the SSD is not there.
            let card_number = run.job.card_number.clone();
            let effects: Effects<'_> =
                Box::new(move |c| rec::fail_requested_ssd_in(c, &card_number, aid.as_bytes()));
            let _ = run.fail(&e, effects);
            return Err(e);
        }
        self.store
            .ssd(&run.job.card_number, aid.as_bytes())?
            .ok_or(Error::UnknownCard)
    }

    /// Renews at the next contact an SSD key set: its own (PUT KEY in a channel opened
    /// with the current keys, even expired or compromised: their own renewal is the one
    /// use left), or one the CI holds (the CI's renewal job relayed). Records a job and
    /// runs it on the card in `chan`.
    pub fn renew(
        &self,
        card_number: &str,
        aid: &str,
        chan: &mut dyn CardChannel,
    ) -> Result<SsdRecord> {
        let job = self.renewal_job(card_number, aid)?;
        self.run(job, chan)
    }

    /// What [`ApPlatform::renew`] does before the card: the job that renews the SSD's
    /// current key set recorded (the CI's renewal or replacement asked for and its relay
    /// recorded, or the renewal of its own keys); returns its id, to run with
    /// [`ApPlatform::run`] (or [`ApPlatform::claim`] and [`ApPlatform::run_claimed`]).
    pub fn renewal_job(&self, card_number: &str, aid: &str) -> Result<i64> {
        let aid = parse_aid(aid)?;
        let ssd = self
            .store
            .ssd(card_number, aid.as_bytes())?
            .ok_or(Error::UnknownCard)?;
        let (k, label) = self
            .store
            .with_conn(|c| rec::current_key_label_in(c, card_number, aid.as_bytes()))?
            .ok_or_else(|| Error::Invalid("the SSD has no key set".into()))?;
        if k.holder != KeyHolder::Ap || k.state == super::model::KeyState::Compromised {
            // The CI's keys, or ours compromised: the CI renews or replaces; relay it.
            let ci_job = self.link.renew(card_number, &aid.to_hex())?;
            let replace = k.holder == KeyHolder::Ap;
            if replace {
                self.store.tx(|c| {
                    rec::set_ssd_state_in(c, card_number, aid.as_bytes(), SsdState::Requested)
                })?;
            }
            let model = if replace {
                ssd.model
            } else {
                SsdModel::Delegated
            };
            return self.record_take_over(card_number, &aid, model, ci_job, false);
        }
        let kvn = next_kvn(k.kvn);
        let params = ApParams {
            ci_job: 0,
            aid: aid.to_hex(),
            model: ssd.model,
            initial_label: String::new(),
            label: new_label(card_number, &aid, kvn),
            from_label: Some(label),
            from_kvn: Some(k.kvn),
            kvn: Some(kvn),
            cause: Some("expiry".into()),
        };
        let job = NewJob {
            tenant: self.config.partner_id.clone(),
            actor: self.actor(),
            kind: JobKind::SsdRenew,
            card_number: card_number.into(),
            params: serde_json::to_value(&params)
                .map_err(|e| Error::Invalid(format!("job parameters: {e}")))?,
            steps: vec!["renew".into(), "report".into()],
        };
        self.store.tx(|c| -> Result<i64> {
            if let Some(open) = open_job_for_card_in(c, card_number)? {
                return Err(Error::CardBusy(open.id));
            }
            Ok(create_job_in(c, &job, None, &[])?)
        })
    }

    /// Marks one of its key versions compromised: recorded here and reported to the CI,
    /// which replaces the SSD at the next contact ([`ApPlatform::renew`] relays it).
    pub fn mark_compromised(
        &self,
        card_number: &str,
        aid: &str,
        kvn: u8,
        reason: &str,
    ) -> Result<SsdRecord> {
        let aid_b = parse_aid(aid)?;
        let changed = self.store.tx(|c| -> Result<bool> {
            let changed =
                rec::mark_key_compromised_in(c, card_number, aid_b.as_bytes(), kvn, reason)?;
            append_in(
                c,
                &NewEntry::new(
                    &self.actor(),
                    "ssd.compromised",
                    if changed { "ok" } else { "unchanged" },
                )
                .card(card_number)
                .detail(json!({"aid": aid_b.to_hex(), "kvn": kvn, "reason": reason})),
            )?;
            Ok(changed)
        })?;
        if !changed {
            return Err(Error::Invalid(format!(
                "key version {kvn:#04x} of {aid_b} is not the active one"
            )));
        }
        self.link
            .report_compromised(card_number, &aid_b.to_hex(), kvn, reason)?;
        self.store
            .ssd(card_number, aid_b.as_bytes())?
            .ok_or(Error::UnknownCard)
    }

    /// Marks the key version `kvn` of its SSD compromised, or without `kvn` the version
    /// in use ([`Error::UnknownSsd`] when it records no such SSD, [`Error::NoKeyVersion`]
    /// when the SSD has none), then [`ApPlatform::mark_compromised`].
    pub fn mark_current_compromised(
        &self,
        card_number: &str,
        aid: &str,
        kvn: Option<u8>,
        reason: &str,
    ) -> Result<SsdRecord> {
        let ssd = self.status(card_number, aid)?.ok_or(Error::UnknownSsd)?;
        let kvn = kvn
            .or_else(|| ssd.current_key().map(|k| k.kvn))
            .ok_or(Error::NoKeyVersion)?;
        self.mark_compromised(card_number, aid, kvn, reason)
    }

    /// Its SSD as it records it.
    pub fn status(&self, card_number: &str, aid: &str) -> Result<Option<SsdRecord>> {
        let aid = parse_aid(aid)?;
        Ok(self.store.ssd(card_number, aid.as_bytes())?)
    }

    /// What falls due at `at_ms` among the key versions it records (its own, and the
    /// CI's for its delegated SSDs).
    pub fn due(&self, at_ms: i64) -> Result<Vec<DueRenewal>> {
        Ok(self.store.ssds_due(at_ms)?)
    }

    /// A Delegated Management token for a command on its delegated SSD (from the CI).
    pub fn sign_token(&self, req: &TokenRequest) -> Result<Vec<u8>> {
        self.link.sign_token(req)
    }

    /// Forwards to the CI a receipt the card gave for a delegated operation on one of its
    /// SSDs (flow 2: the card's proof of a load, install, extradition or deletion done
    /// with the CI's tokens); once the CI verified it, records it in its own history of
    /// the SSD (if it records the SSD) and its audit log. Returns the CI's record.
    pub fn forward_receipt(
        &self,
        card_number: &str,
        aid: &str,
        operation: &gp::dm::ReceiptContext,
        confirmation: &[u8],
    ) -> Result<SsdRecord> {
        let a = parse_aid(aid)?;
        let ci = match self
            .link
            .check_receipt(card_number, &a.to_hex(), operation, confirmation)
        {
            Ok(r) => r,
            Err(e) => {
                let entry = NewEntry::new(&self.actor(), "ssd.receipt", "refused")
                    .card(card_number)
                    .detail(json!({"aid": a.to_hex(), "operation": operation.name(),
                                   "error": e.to_string()}));
                return Err(match self.store.audit_append(&entry) {
                    Ok(_) => e,
                    Err(s) => s.into(),
                });
            }
        };
        let counter = gp::dm::Confirmation::parse(confirmation)
            .ok()
            .flatten()
            .map(|c| c.counter);
        let verified = ci
            .receipts
            .iter()
            .find(|r| Some(r.counter) == counter)
            .cloned();
        if let (Some(r), true) = (
            verified,
            self.store.ssd(card_number, a.as_bytes())?.is_some(),
        ) {
            self.store.tx(|c| -> Result<()> {
                if rec::last_receipt_counter_in(c, card_number)?.is_some_and(|l| l >= r.counter) {
                    return Ok(());
                }
                rec::add_receipt_in(c, card_number, a.as_bytes(), &r, confirmation)?;
                append_in(
                    c,
                    &NewEntry::new(&self.actor(), "ssd.receipt", "ok")
                        .card(card_number)
                        .detail(json!({"aid": a.to_hex(), "operation": r.operation,
                                       "object": r.object, "counter": r.counter,
                                       "receipt": apdu::hex(&r.receipt)})),
                )?;
                Ok(())
            })?;
        }
        Ok(ci)
    }

    /// Opens a secure channel with one of its SSDs (authorized model) with its current
    /// key set, refused if that key set is expired or compromised (GP commands then go
    /// through the returned client).
    pub fn open<'c>(
        &self,
        card_number: &str,
        aid: &str,
        chan: &'c mut dyn CardChannel,
    ) -> Result<GpClient<&'c mut dyn CardChannel>> {
        let aid = parse_aid(aid)?;
        let (k, label) = self
            .store
            .with_conn(|c| rec::current_key_label_in(c, card_number, aid.as_bytes()))?
            .ok_or_else(|| Error::Invalid("the SSD has no key set".into()))?;
        if k.holder != KeyHolder::Ap {
            return Err(Error::Invalid("the CI holds this SSD's keys".into()));
        }
        super::ci::usable(&k, self.clock.now_ms())?;
        let mut client = GpClient::new(Traced::new(chan, None));
        let c = Candidate {
            keys: self.keys.key_set(&label)?,
            kvn: k.kvn,
            name: format!("its keys (KVN {:#04x})", k.kvn),
        };
        open_with(&mut client, aid, &[c], self.config.level)?;
        Ok(client)
    }
}
