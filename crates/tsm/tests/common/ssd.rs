//! Issue #10 in process, shared by `tests/ssd.rs` and `benches/ssd_handover.rs`: a CI
//! platform and an AP platform with their own stores and key stores, and a
//! `CardIssuerLink` that calls the CI directly through an in-test APDU bridge (a thread
//! runs `CiPlatform::run` over a channel whose `transmit` waits for the response
//! `exchange` brings). The link keeps the time spent on each side of it, for the benchmark.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use transport::{CardChannel, TransportError};
use tsm::ssd::*;
use tsm::{thread_database_use, Actor, DatabaseUse, Error, Issuer, IssuerConfig};

use super::{Fixture, SimCard, TestStore, CATEGORY};

// ---- the APDU bridge and the link ------------------------------------------------------

enum ToAp {
    Command(Vec<u8>),
    Done,
}

/// The CI's side of the bridge: a card channel whose transmit hands the command to the AP
/// and waits for the response.
struct BridgeChannel {
    to_ap: Sender<ToAp>,
    from_ap: Receiver<Vec<u8>>,
    /// The CI platform "crashes" (its thread panics) once it has this many responses.
    crash_after: Option<usize>,
    responses: usize,
    /// Time spent waiting for the AP (its relay and the card).
    waited: Duration,
}

impl CardChannel for BridgeChannel {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let start = Instant::now();
        self.to_ap
            .send(ToAp::Command(capdu.to_vec()))
            .map_err(|_| TransportError::CardRemoved)?;
        let r = self
            .from_ap
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| TransportError::CardRemoved);
        self.waited += start.elapsed();
        let r = r?;
        self.responses += 1;
        if self.crash_after == Some(self.responses) {
            panic!("simulated crash of the CI platform");
        }
        Ok(r)
    }
    fn atr(&self) -> Vec<u8> {
        Vec::new()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    fn name(&self) -> String {
        "bridge to the AP's terminal".into()
    }
}

struct Session {
    to_ci: Sender<Vec<u8>>,
    from_ci: Receiver<ToAp>,
    thread: JoinHandle<()>,
}

/// Where the time of the link's calls went (totals since the link was made).
#[derive(Debug, Default)]
pub struct LinkTiming {
    /// The AP's threads inside the link's calls.
    link_ns: AtomicU64,
    /// The CI platform working for those calls (its relay thread not counting its waits
    /// for the AP, and the direct calls).
    ci_ns: AtomicU64,
    /// The CI's use of its database for those calls.
    ci_db: Mutex<DatabaseUse>,
    /// The part of `ci_db` on the callers' threads (direct calls).
    ci_db_on_caller: Mutex<DatabaseUse>,
}

/// A reading of [`LinkTiming`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkTimes {
    /// The AP's threads inside the link's calls.
    pub link: Duration,
    /// The CI platform working for them.
    pub ci: Duration,
    /// The CI's use of its database (its time is part of `ci`).
    pub ci_db: DatabaseUse,
    /// The part of `ci_db` on the callers' threads (direct calls).
    pub ci_db_on_caller: DatabaseUse,
}

fn add(a: &AtomicU64, d: Duration) {
    a.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
}

impl LinkTiming {
    fn add_ci_db(&self, u: DatabaseUse) {
        let mut db = self.ci_db.lock().unwrap();
        *db = *db + u;
    }

    /// The totals so far.
    pub fn read(&self) -> LinkTimes {
        let get = |a: &AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed));
        LinkTimes {
            link: get(&self.link_ns),
            ci: get(&self.ci_ns),
            ci_db: *self.ci_db.lock().unwrap(),
            ci_db_on_caller: *self.ci_db_on_caller.lock().unwrap(),
        }
    }
}

/// The CI seen from the AP, called directly (the partner-api branch does this over HTTPS).
pub struct DirectLink {
    ci: Arc<CiPlatform>,
    partner: String,
    sessions: Mutex<HashMap<i64, Session>>,
    /// Flip a byte in the first relayed command with this INS (a tampering AP).
    pub tamper_ins: Mutex<Option<u8>>,
    /// Commands relayed so far.
    pub relayed: AtomicI64,
    /// The next CI run crashes after this many responses (once).
    pub crash_ci_after: Mutex<Option<usize>>,
    /// Where the time went.
    pub timing: Arc<LinkTiming>,
}

impl DirectLink {
    pub fn new(ci: Arc<CiPlatform>, partner: &str) -> DirectLink {
        DirectLink {
            ci,
            partner: partner.into(),
            sessions: Mutex::new(HashMap::new()),
            tamper_ins: Mutex::new(None),
            relayed: AtomicI64::new(0),
            crash_ci_after: Mutex::new(None),
            timing: Arc::new(LinkTiming::default()),
        }
    }

    /// A call the CI answers on the caller's thread: all of it is the CI's.
    fn direct<T>(&self, f: impl FnOnce(&CiPlatform) -> T) -> T {
        let start = Instant::now();
        let db = thread_database_use();
        let v = f(&self.ci);
        let spent = start.elapsed();
        add(&self.timing.link_ns, spent);
        add(&self.timing.ci_ns, spent);
        let db = thread_database_use() - db;
        self.timing.add_ci_db(db);
        let mut on_caller = self.timing.ci_db_on_caller.lock().unwrap();
        *on_caller = *on_caller + db;
        v
    }

    fn next(&self, job: i64, s: Session) -> tsm::Result<Exchange> {
        match s.from_ci.recv_timeout(Duration::from_secs(30)) {
            Ok(ToAp::Command(mut c)) => {
                self.relayed.fetch_add(1, Ordering::SeqCst);
                let mut tamper = self.tamper_ins.lock().unwrap();
                if c.len() > 8 && c.get(1).is_some() && c.get(1) == tamper.as_ref() {
                    // A byte of the (encrypted, MACed) data field.
                    c[6] ^= 0x01;
                    *tamper = None;
                }
                drop(tamper);
                self.sessions.lock().unwrap().insert(job, s);
                Ok(Exchange::Command(c))
            }
            Ok(ToAp::Done) => {
                let _ = s.thread.join();
                Ok(Exchange::Done)
            }
            // The CI platform went away without finishing (a crash): for the AP, a broken
            // call; the relay restarts when its job runs again.
            Err(_) => {
                let _ = s.thread.join();
                Err(Error::Interrupted(TransportError::Other(
                    "the CI platform is gone".into(),
                )))
            }
        }
    }

    fn relay(&self, job: i64, last: Option<&[u8]>) -> tsm::Result<Exchange> {
        let existing = self.sessions.lock().unwrap().remove(&job);
        match (existing, last) {
            (Some(s), Some(r)) => {
                s.to_ci.send(r.to_vec()).ok();
                self.next(job, s)
            }
            (existing, _) => {
                // (Re)start: abandon a waiting run (its transmit fails: card gone), then
                // run the job again from its journal.
                if let Some(s) = existing {
                    drop(s.to_ci);
                    drop(s.from_ci);
                    let _ = s.thread.join();
                }
                let (to_ap, from_ci) = channel();
                let (to_ci, from_ap) = channel();
                let ci = self.ci.clone();
                let timing = self.timing.clone();
                let crash_after = self.crash_ci_after.lock().unwrap().take();
                let thread = std::thread::spawn(move || {
                    let start = Instant::now();
                    let db = thread_database_use();
                    let mut bridge = BridgeChannel {
                        to_ap: to_ap.clone(),
                        from_ap,
                        crash_after,
                        responses: 0,
                        waited: Duration::ZERO,
                    };
                    let _ = ci.run(job, &mut bridge);
                    add(&timing.ci_ns, start.elapsed().saturating_sub(bridge.waited));
                    timing.add_ci_db(thread_database_use() - db);
                    let _ = to_ap.send(ToAp::Done);
                });
                self.next(
                    job,
                    Session {
                        to_ci,
                        from_ci,
                        thread,
                    },
                )
            }
        }
    }
}

impl CardIssuerLink for DirectLink {
    fn request(&self, req: &SsdRequest) -> tsm::Result<i64> {
        self.direct(|ci| ci.request(&self.partner, req))
    }
    fn exchange(&self, job: i64, last: Option<&[u8]>) -> tsm::Result<Exchange> {
        let start = Instant::now();
        let r = self.relay(job, last);
        add(&self.timing.link_ns, start.elapsed());
        r
    }
    fn initial_keys(&self, job: i64) -> tsm::Result<WrappedKeySet> {
        self.direct(|ci| ci.initial_keys(&self.partner, job))
    }
    fn confirm_rotation(&self, job: i64, rotation: &Rotation) -> tsm::Result<SsdRecord> {
        self.direct(|ci| ci.confirm_rotation(&self.partner, job, rotation))
    }
    fn status(&self, card_number: &str, aid: &str) -> tsm::Result<SsdRecord> {
        self.direct(|ci| ci.status(&self.partner, card_number, aid))
    }
    fn renew(&self, card_number: &str, aid: &str) -> tsm::Result<i64> {
        self.direct(|ci| ci.renewal_job(&self.partner, card_number, aid))
    }
    fn report_compromised(
        &self,
        card_number: &str,
        aid: &str,
        kvn: u8,
        reason: &str,
    ) -> tsm::Result<SsdRecord> {
        self.direct(|ci| {
            ci.mark_compromised(
                &Actor::new(&self.partner, "partner-api"),
                card_number,
                aid,
                kvn,
                reason,
            )
        })
    }
    fn report_renewal(
        &self,
        card_number: &str,
        aid: &str,
        renewal: &Renewal,
        rotation: &Rotation,
    ) -> tsm::Result<SsdRecord> {
        self.direct(|ci| ci.record_renewal(&self.partner, card_number, aid, renewal, rotation))
    }
    fn sign_token(&self, req: &TokenRequest) -> tsm::Result<Vec<u8>> {
        self.direct(|ci| ci.sign_token(&self.partner, req))
    }
    fn check_receipt(
        &self,
        card_number: &str,
        aid: &str,
        operation: &gp::dm::ReceiptContext,
        confirmation: &[u8],
    ) -> tsm::Result<SsdRecord> {
        self.direct(|ci| ci.check_receipt(&self.partner, card_number, aid, operation, confirmation))
    }
}

// ---- the two platforms ------------------------------------------------------------------

/// The partner's SSD AID prefix.
pub const PREFIX: &str = "A000000151BA";

/// The cards' Receipt Generation key (the ISD's KVN 71), known to the CI.
pub const RECEIPT_KEY: [u8; 16] = [0x71; 16];

/// The CI's Delegated Management token key (a public test vector of the gp crate).
pub fn token_key() -> gp::dm::DmSigningKey {
    gp::dm::DmSigningKey::from_pkcs8(include_bytes!(
        "../../../gp/tests/vectors/dm/token-p256.pem"
    ))
    .unwrap()
}

/// A CI platform (issuance fixture of category [`CATEGORY`], token signer, lease 0) and an
/// AP platform `bank` registered with it for `cards` and [`PREFIX`], linked directly, on a
/// clock the caller moves.
pub struct SsdPlatforms {
    pub fixture: Fixture,
    pub ci: Arc<CiPlatform>,
    pub ap: ApPlatform,
    pub ap_store: TestStore,
    pub link: Arc<DirectLink>,
    pub clock: Arc<AtomicI64>,
}

impl SsdPlatforms {
    pub fn new(
        ci_store: TestStore,
        ap_store: TestStore,
        ci_keys: Arc<dyn KeySetStore>,
        ap_keys: Arc<dyn KeySetStore>,
        scp11: Option<Arc<Scp11Rotation>>,
        cards: CardRange,
    ) -> SsdPlatforms {
        let fixture = Fixture::new(ci_store, kms::KeyKind::Aes, 0x30, false);
        let clock = Arc::new(AtomicI64::new(tsm::model::now_ms()));
        let issuer = Issuer::new(
            fixture.store().clone(),
            fixture.keys.clone() as Arc<dyn kms::KeyStore>,
            IssuerConfig::default(),
        );
        let signer: Arc<dyn gp::dm::Signer + Send + Sync> = Arc::new(token_key());
        let ci = Arc::new(
            CiPlatform::new(
                issuer,
                ci_keys,
                CiConfig {
                    lease: Duration::ZERO,
                    token_signer: Some(signer),
                    receipt_key: Some(gp::dm::ReceiptKey::aes(&RECEIPT_KEY).expect("AES key")),
                    ..CiConfig::default()
                },
            )
            .with_clock(Clock::manual(clock.clone())),
        );
        let link = Arc::new(DirectLink::new(ci.clone(), "bank"));
        let mut config = ApConfig::new("bank");
        config.lease = Duration::ZERO;
        config.scp11 = scp11;
        let ap = ApPlatform::new(ap_store.store().clone(), ap_keys, link.clone(), config)
            .with_clock(Clock::manual(clock.clone()));
        let transport = ap.transport_key().unwrap();
        ci.store()
            .add_partner(
                "admin",
                &NewPartner {
                    id: "bank".into(),
                    name: "A Bank".into(),
                    certificate: vec![0x30, 0x03, 0x02, 0x01, 0x01],
                    aid_prefix: apdu::parse_hex(PREFIX).unwrap(),
                    card_ranges: vec![cards],
                    transport_key: transport,
                },
            )
            .unwrap();
        SsdPlatforms {
            fixture,
            ci,
            ap,
            ap_store,
            link,
            clock,
        }
    }

    /// Issues `card` on the CI platform as `card_number` (category [`CATEGORY`]).
    pub fn issue(&self, card_number: &str, card: &SimCard) {
        self.fixture
            .issuer
            .write(&self.fixture.ci, card_number, CATEGORY, &mut card.clone())
            .unwrap();
    }
}

/// A software key store in a temporary directory.
pub fn software_key_sets(dir: &tempfile::TempDir, name: &str) -> Arc<dyn KeySetStore> {
    Arc::new(
        kms::SoftwareKeyStore::create(
            dir.path().join(format!("{name}.json")),
            kms::MasterKey::generate().unwrap(),
        )
        .unwrap(),
    )
}

/// The labels of a key store's key sets.
pub fn labels(ks: &dyn KeySetStore) -> Vec<String> {
    ks.list_key_sets()
        .unwrap()
        .into_iter()
        .map(|i| i.label)
        .collect()
}

/// The directory of this process's SoftHSM2 tokens, once made.
static SOFTHSM_DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();

/// Removes this process's SoftHSM2 tokens (at its end: the key stores then stop working).
pub fn remove_softhsm_tokens() {
    if let Some(Some(dir)) = SOFTHSM_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Two SoftHSM2 tokens (CI and AP) in a directory of this process, or `None` (skipped)
/// when SoftHSM2 is not installed; with `CARDWRIGHT_HSM_TESTS=1` that fails instead.
pub fn softhsm_key_sets() -> Option<(Arc<dyn KeySetStore>, Arc<dyn KeySetStore>)> {
    use super::softhsm::{make_tokens, softhsm_installed, MODULE};
    let dir = SOFTHSM_DIR.get_or_init(|| {
        if !softhsm_installed("the HSM variant") {
            return None;
        }
        Some(make_tokens("cw-ssd-softhsm", &["cw-ci", "cw-ap"], "1234"))
    });
    let dir = dir.as_ref()?;
    let open = |token: &str| {
        kms::open_key_sets(&format!(
            "pkcs11:{MODULE}?token={token}&pin-file={}",
            dir.join("pin").display()
        ))
        .unwrap()
    };
    Some((open("cw-ci"), open("cw-ap")))
}

/// The AP's SCP11 material: a CA, an OCE key certified by it (GP `7F21` certificates).
pub fn scp11_rotation() -> Arc<Scp11Rotation> {
    use gp::cert::{GpCertificateBody, GpDate};
    use scp::scp11::{Curve, PrivateKey, PublicKey};
    fn cert(issuer: &PrivateKey, subject: &PublicKey) -> Vec<u8> {
        let mut serial = [0u8; 8];
        getrandom::fill(&mut serial).unwrap();
        serial[0] &= 0x7F;
        GpCertificateBody {
            serial: serial.to_vec(),
            ca_id: vec![0xCA],
            subject_id: vec![0x5D],
            key_usage: gp::cert::KEY_USAGE_KEY_AGREEMENT.to_vec(),
            effective: Some(GpDate::new(2020, 1, 1)),
            expiry: GpDate::new(2099, 12, 31),
            discretionary: None,
            restrictions: None,
            public_key: subject.clone(),
        }
        .sign(issuer)
        .unwrap()
        .to_bytes()
        .to_vec()
    }
    let ca = PrivateKey::generate(Curve::P256).unwrap();
    let oce = PrivateKey::generate(Curve::P256).unwrap();
    let oce_chain = vec![cert(&ca, oce.public_key())];
    let ca_public = ca.public_key().clone();
    Arc::new(Scp11Rotation {
        kvn: 0x01,
        ca_public,
        certify_sd: Box::new(move |pk| Ok(cert(&ca, pk))),
        oce_public: oce.public_key().clone(),
        oce_key: Arc::new(oce),
        oce_chain,
    })
}
