//! Issue #10 in process: a CI platform (SQLite) and an AP platform (PostgreSQL when
//! reachable, else SQLite), two key stores, the virtual card, and a `CardIssuerLink` that
//! calls the CI directly through an in-test APDU bridge (`common::ssd`, shared with the
//! `ssd_handover` benchmark).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ssd::*;
use common::*;
use gp::aid::Aid;
use gpclient::{ClientError, GpClient, KeySpec, OpenOptions};
use scp::{KeyKind as ScpKind, SecurityLevel, StaticKeys};
use transport::{CardChannel, TransportError};
use tsm::ssd::*;
use tsm::{Error, Store};

const CARD: &str = "1234";
const OTHER_CARD: &str = "5678";
const SSD: &str = "A000000151BA0001";
const DAY_MS: i64 = 86_400_000;

// ---- the two platforms ------------------------------------------------------------------

/// The CI's key store, keeping a copy of every key set it deletes: the threat of a CI that
/// remembers the initial keys (tests only).
#[derive(Debug)]
struct Remembering {
    inner: Arc<dyn KeySetStore>,
    kept: Mutex<HashMap<String, StaticKeys>>,
}

impl Remembering {
    fn labels(&self) -> Vec<String> {
        self.inner
            .list_key_sets()
            .unwrap()
            .into_iter()
            .map(|i| i.label)
            .collect()
    }
}

impl KeySetStore for Remembering {
    fn generate_key_set(&self, l: &str, k: ScpKind, n: usize) -> Result<KeySetInfo, kms::Error> {
        self.inner.generate_key_set(l, k, n)
    }
    fn key_set(&self, l: &str) -> Result<StaticKeys, kms::Error> {
        self.inner.key_set(l)
    }
    fn key_set_info(&self, l: &str) -> Result<Option<KeySetInfo>, kms::Error> {
        self.inner.key_set_info(l)
    }
    fn list_key_sets(&self) -> Result<Vec<KeySetInfo>, kms::Error> {
        self.inner.list_key_sets()
    }
    fn delete_key_set(&self, l: &str) -> Result<bool, kms::Error> {
        if let Ok(k) = self.inner.key_set(l) {
            self.kept.lock().unwrap().insert(l.into(), k);
        }
        self.inner.delete_key_set(l)
    }
    fn wrap_key_set_for(
        &self,
        l: &str,
        to: &TransportPublicKey,
    ) -> Result<WrappedKeySet, kms::Error> {
        self.inner.wrap_key_set_for(l, to)
    }
    fn import_wrapped_key_set(
        &self,
        l: &str,
        w: &WrappedKeySet,
        t: &str,
    ) -> Result<KeySetInfo, kms::Error> {
        self.inner.import_wrapped_key_set(l, w, t)
    }
    fn create_transport_key(&self, l: &str) -> Result<TransportPublicKey, kms::Error> {
        self.inner.create_transport_key(l)
    }
    fn transport_public_key(&self, l: &str) -> Result<TransportPublicKey, kms::Error> {
        self.inner.transport_public_key(l)
    }
}

struct Platforms {
    fixture: Fixture,
    ci: Arc<CiPlatform>,
    ci_keys: Arc<Remembering>,
    ap: ApPlatform,
    ap_keys: Arc<dyn KeySetStore>,
    ap_store: TestStore,
    link: Arc<DirectLink>,
    card: SimCard,
    clock: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
}

impl Platforms {
    fn new() -> Platforms {
        Platforms::configured(false)
    }

    /// Software key stores; the AP rotating inside SCP11a or SCP03.
    fn configured(scp11: bool) -> Platforms {
        let dir = tempfile::tempdir().unwrap();
        let ci = software_key_sets(&dir, "ci");
        let ap = software_key_sets(&dir, "ap");
        Platforms::with_key_sets(ci, ap, dir, scp11.then(scp11_rotation))
    }

    fn with_key_sets(
        ci_key_sets: Arc<dyn KeySetStore>,
        ap_keys: Arc<dyn KeySetStore>,
        dir: tempfile::TempDir,
        scp11: Option<Arc<Scp11Rotation>>,
    ) -> Platforms {
        let ci_keys = Arc::new(Remembering {
            inner: ci_key_sets,
            kept: Mutex::new(HashMap::new()),
        });
        let SsdPlatforms {
            fixture,
            ci,
            ap,
            ap_store,
            link,
            clock,
        } = SsdPlatforms::new(
            sqlite(),
            postgres().unwrap_or_else(sqlite),
            ci_keys.clone(),
            ap_keys.clone(),
            scp11,
            CardRange::new("1000", "1999").unwrap(),
        );
        let card = SimCard::scp03();
        fixture
            .issuer
            .write(&fixture.ci, CARD, CATEGORY, &mut card.clone())
            .unwrap();
        Platforms {
            fixture,
            ci,
            ci_keys,
            ap,
            ap_keys,
            ap_store,
            link,
            card,
            clock,
            _dir: dir,
        }
    }

    fn ci_store(&self) -> &Store {
        self.ci.store()
    }

    fn ap_store(&self) -> &Store {
        self.ap_store.store()
    }

    fn request(&self, model: SsdModel) -> i64 {
        self.ap
            .request(&SsdRequest {
                card_number: CARD.into(),
                aid: SSD.into(),
                model,
            })
            .unwrap()
    }

    /// The card's ISD keys (issued with base key version 1).
    fn isd_spec(&self) -> KeySpec {
        base_spec(
            BASE_V1,
            self.fixture.diversification(),
            tsm::kvn_for_version(1, 0x30),
        )
    }

    fn isd(&self) -> GpClient<SimCard> {
        open(&self.card, self.isd_spec()).expect("the CI still opens the ISD")
    }

    /// The registry entry of the SSD, read through the ISD.
    fn ssd_on_card(&self) -> Option<gp::commands::RegistryEntry> {
        let mut c = self.isd();
        gpclient::ops::registry(&mut c)
            .unwrap()
            .find(&aid(SSD))
            .cloned()
    }

    fn ap_label(&self) -> String {
        let labels = labels(self.ap_keys.as_ref());
        assert_eq!(labels.len(), 1, "{labels:?}");
        labels[0].clone()
    }

    fn days(&self, n: i64) {
        self.clock.fetch_add(n * DAY_MS, Ordering::SeqCst);
    }
}

fn aid(hex: &str) -> Aid {
    Aid::new(&apdu::parse_hex(hex).unwrap()).unwrap()
}

/// An independent GP host session with an SSD (plain gpclient).
fn open_ssd(card: &SimCard, keys: &StaticKeys, kvn: u8) -> Result<GpClient<SimCard>, ClientError> {
    let mut client = GpClient::new(transport::Traced::new(card.clone(), None));
    client.open_secure_channel(&OpenOptions {
        keys: KeySpec::from_static(keys, kvn),
        level: SecurityLevel::MAC,
        scp: None,
        sd: Some(aid(SSD)),
    })?;
    Ok(client)
}

fn audit_ok(s: &Store) {
    assert!(s.audit_verify().unwrap().is_ok());
}

// ---- flow 1 -----------------------------------------------------------------------------

#[test]
fn flow1_authorized_ssd_through_the_ap_then_handed_over() {
    let p = Platforms::new();
    let job = p.request(SsdModel::Authorized);
    let rec = p.ap.run(job, &mut p.card.clone()).unwrap();
    assert_eq!(rec.state, SsdState::HandedOver);

    // Both platforms' records agree: initial KVN 30 (CI, replaced), AP's KVN 31 active.
    let ci = p
        .ci_store()
        .ssd(CARD, &apdu::parse_hex(SSD).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(ci.state, SsdState::HandedOver);
    assert_eq!(ci.owner, "bank");
    assert_eq!(ci.privileges, vec![0x80, 0x40, 0x00]);
    let kv: Vec<_> = ci.keys.iter().map(|k| (k.kvn, k.holder, k.state)).collect();
    assert_eq!(
        kv,
        vec![
            (0x30, KeyHolder::Ci, KeyState::Replaced),
            (0x31, KeyHolder::Ap, KeyState::Active)
        ]
    );
    assert_eq!(ci.renewals.len(), 1);
    assert_eq!(ci.renewals[0].cause, "handover");
    assert!(ci.handed_over_ms.is_some() && ci.receipt.is_some());
    let ap = p.ap.status(CARD, SSD).unwrap().unwrap();
    assert_eq!(ap.state, SsdState::HandedOver);
    assert_eq!(ap.receipt, ci.receipt);
    assert_eq!(ap.current_key(), ci.current_key());

    // The CI keeps no SSD key; the AP only its own.
    assert!(p.ci_keys.labels().is_empty());
    let label = p.ap_label();

    // The card: the SSD associated with itself, selectable.
    let entry = p.ssd_on_card().expect("the SSD is on the card");
    assert_eq!(entry.associated_sd, Some(aid(SSD)));

    // An independent host opens the SSD with the AP's keys...
    let ap_keys = p.ap_keys.key_set(&label).unwrap();
    open_ssd(&p.card, &ap_keys, 0x31).expect("the AP's keys open the SSD");
    // ... the CI's initial keys (which a dishonest CI might have kept) are refused before
    // EXTERNAL AUTHENTICATE: the card cryptogram does not verify.
    let kept = p.ci_keys.kept.lock().unwrap();
    assert_eq!(kept.len(), 1);
    let initial = kept.values().next().unwrap();
    assert!(matches!(
        open_ssd(&p.card, initial, 0),
        Err(ClientError::WrongKeys { .. })
    ));
    assert!(open_ssd(&p.card, initial, 0x30).is_err(), "KVN 30 is gone");
    // The CI still manages the ISD.
    p.isd();
    audit_ok(p.ci_store());
    audit_ok(p.ap_store());
    // The CI's audit log has the hand-over, with the partner as actor.
    let entries = p.ci_store().audit_entries(0, 1000).unwrap();
    assert!(entries
        .iter()
        .any(|e| e.action == "ssd.handover" && e.actor == "bank/partner-api"));
}

#[test]
fn tampered_relay_is_refused_by_the_card_and_nothing_changes() {
    // INSTALL: refused, nothing on the card. PUT KEY (after the INSTALL and the
    // extradition went through): refused, and the creation is rolled back.
    for ins in [0xE6, 0xD8] {
        let p = Platforms::new();
        let job = p.request(SsdModel::Authorized);
        *p.link.tamper_ins.lock().unwrap() = Some(ins);
        let e = p.ap.run(job, &mut p.card.clone()).unwrap_err();
        assert!(
            e.to_string().contains("must have created"),
            "{ins:02X}: {e}"
        );
        assert!(
            p.link.tamper_ins.lock().unwrap().is_none(),
            "{ins:02X}: tampered"
        );
        assert!(p.ssd_on_card().is_none(), "{ins:02X}: nothing on the card");
        let ci = p
            .ci_store()
            .ssd(CARD, &apdu::parse_hex(SSD).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(ci.state, SsdState::Failed);
        assert!(ci.keys.is_empty());
        let jobs = p.ci_store().jobs_of_card(CARD).unwrap();
        let last = jobs.last().unwrap();
        assert_eq!(last.state, tsm::model::JobState::Failed);
        assert!(
            last.error.as_deref().unwrap_or("").contains("6982"),
            "{ins:02X}: the card refused the MAC: {last:?}"
        );
        assert_eq!(
            p.ap.status(CARD, SSD).unwrap().unwrap().state,
            SsdState::Failed
        );
        audit_ok(p.ci_store());
        // The partner may ask again, and this time it works.
        let job = p.request(SsdModel::Authorized);
        let rec = p.ap.run(job, &mut p.card.clone()).unwrap();
        assert_eq!(rec.state, SsdState::HandedOver);
    }
}

/// The number of APDUs the AP's terminal sends in flow 1.
fn flow1_apdus(scp11: bool) -> usize {
    let p = Platforms::configured(scp11);
    let job = p.request(SsdModel::Authorized);
    let mut counting = Counting {
        inner: p.card.clone(),
        count: 0,
    };
    p.ap.run(job, &mut counting).unwrap();
    counting.count
}

/// Where flow 1 is cut: the card channel (card pulled, terminal gone) before or after an
/// APDU, the AP platform crashing after an APDU, or the CI platform crashing after a
/// response.
#[derive(Debug, Clone, Copy)]
enum FlowCut {
    Card(Cut),
    CiCrash(usize),
}

#[test]
fn fault_loop_over_every_apdu_of_flow1() {
    fault_loop(false);
}

#[test]
fn fault_loop_over_every_apdu_of_flow1_with_the_scp11_rotation() {
    fault_loop(true);
}

fn fault_loop(scp11: bool) {
    let n = flow1_apdus(scp11);
    assert!(n > 10, "{n}");
    eprintln!(
        "flow 1 (SCP11 rotation: {scp11}): {n} APDUs through the AP's terminal; {} cut runs",
        4 * n
    );
    let cuts = (0..n).flat_map(|k| {
        [
            FlowCut::Card(Cut::Before(k)),
            FlowCut::Card(Cut::After(k)),
            FlowCut::Card(Cut::CrashAfter(k)),
            FlowCut::CiCrash(k + 1),
        ]
    });
    for cut in cuts {
        {
            let p = Platforms::configured(scp11);
            let job = p.request(SsdModel::Authorized);
            let first = match cut {
                FlowCut::Card(c) => {
                    let mut faulty = Faulty::new(p.card.clone(), c);
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        p.ap.run(job, &mut faulty)
                    }))
                    .unwrap_or_else(|_| Err(Error::Invalid("the AP platform crashed".into())))
                }
                FlowCut::CiCrash(k) => {
                    *p.link.crash_ci_after.lock().unwrap() = Some(k);
                    p.ap.run(job, &mut p.card.clone())
                }
            };
            let rec = match first {
                // The CI's part has fewer responses than k: nothing was cut.
                Ok(rec) => {
                    assert!(
                        matches!(cut, FlowCut::CiCrash(_)),
                        "{cut:?} of {n}: not cut"
                    );
                    rec
                }
                // Card back in, platforms up again: running the job again finishes it.
                Err(_) => {
                    p.ap.run(job, &mut p.card.clone())
                        .unwrap_or_else(|e| panic!("{cut:?}: {e}"))
                }
            };
            assert_eq!(rec.state, SsdState::HandedOver, "{cut:?}");
            let ci = p
                .ci_store()
                .ssd(CARD, &apdu::parse_hex(SSD).unwrap())
                .unwrap()
                .unwrap();
            assert_eq!(ci.state, SsdState::HandedOver, "{cut:?}");
            assert_eq!(ci.current_key(), rec.current_key(), "{cut:?}");
            // The records agree with the card.
            let label = p.ap_label();
            let keys = p.ap_keys.key_set(&label).unwrap();
            let kvn = rec.current_key().unwrap().kvn;
            open_ssd(&p.card, &keys, kvn).unwrap_or_else(|e| panic!("{cut:?}: {e}"));
            assert_eq!(
                p.ssd_on_card().unwrap().associated_sd,
                Some(aid(SSD)),
                "{cut:?}"
            );
            assert!(p.ci_keys.labels().is_empty(), "{cut:?}");
            audit_ok(p.ci_store());
            audit_ok(p.ap_store());
        }
    }
}

#[test]
fn flow1_between_two_softhsm2_tokens() {
    let Some((ci, ap)) = softhsm_key_sets() else {
        return;
    };
    let p = Platforms::with_key_sets(ci, ap, tempfile::tempdir().unwrap(), None);
    let job = p.request(SsdModel::Authorized);
    let rec = p.ap.run(job, &mut p.card.clone()).unwrap();
    assert_eq!(rec.state, SsdState::HandedOver);
    // The CI's token keeps no SSD key set; the AP's token holds its own only.
    assert!(p.ci_keys.labels().is_empty());
    let label = p.ap_label();
    let keys = p.ap_keys.key_set(&label).unwrap();
    open_ssd(&p.card, &keys, rec.current_key().unwrap().kvn).unwrap();
    let kept = p.ci_keys.kept.lock().unwrap();
    assert!(matches!(
        open_ssd(&p.card, kept.values().next().unwrap(), 0),
        Err(ClientError::WrongKeys { .. })
    ));
}

/// A channel that keeps every command it carries.
struct Recording {
    inner: SimCard,
    commands: Vec<Vec<u8>>,
}

impl CardChannel for Recording {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.commands.push(capdu.to_vec());
        self.inner.transmit_raw(capdu)
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.inner.reset()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

#[test]
fn flow1_rotation_inside_scp11a() {
    let dir = tempfile::tempdir().unwrap();
    let ci = software_key_sets(&dir, "ci");
    let ap = software_key_sets(&dir, "ap");
    let p = Platforms::with_key_sets(ci, ap, dir, Some(scp11_rotation()));
    let job = p.request(SsdModel::Authorized);
    let mut rec_chan = Recording {
        inner: p.card.clone(),
        commands: Vec::new(),
    };
    let rec = p.ap.run(job, &mut rec_chan).unwrap();
    assert_eq!(rec.state, SsdState::HandedOver);
    let steps = p.ap_store().job_steps(job).unwrap();
    let rotate = steps.iter().find(|s| s.name == "rotate").unwrap();
    assert_eq!(rotate.detail.as_ref().unwrap()["scp11"], true);
    // The AP's PUT KEY went after an SCP11a MUTUAL AUTHENTICATE (80 82 KVN 11), the last
    // authentication before it: not in a session of the initial keys.
    let cmds = &rec_chan.commands;
    let put_key = cmds.iter().rposition(|c| c[1] == 0xD8).unwrap();
    let last_auth = cmds[..put_key]
        .iter()
        .rposition(|c| matches!(c[1], 0x82 | 0x50))
        .unwrap();
    assert_eq!(&cmds[last_auth][..4], &[0x80, 0x82, 0x01, 0x11]);
    // Independent host: the AP's keys open (SCP03), the initial keys do not.
    let label = p.ap_label();
    let keys = p.ap_keys.key_set(&label).unwrap();
    open_ssd(&p.card, &keys, rec.current_key().unwrap().kvn).unwrap();
    let kept = p.ci_keys.kept.lock().unwrap();
    assert!(matches!(
        open_ssd(&p.card, kept.values().next().unwrap(), 0),
        Err(ClientError::WrongKeys { .. })
    ));
    audit_ok(p.ap_store());
}

// ---- flow 2 -----------------------------------------------------------------------------

/// The token signer of the delegated model as the AP sees it: every token from the CI.
struct LinkSigner(Arc<DirectLink>);

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner")
    }
}

impl gp::dm::Signer for LinkSigner {
    fn scheme(&self) -> gp::dm::Scheme {
        gp::dm::Scheme::EcdsaP256Sha256
    }
    fn sign(&self, m: &[u8]) -> gp::Result<Vec<u8>> {
        self.0
            .sign_token(&TokenRequest {
                card_number: CARD.into(),
                aid: SSD.into(),
                input: m.to_vec(),
            })
            .map_err(|e| gp::Error::Encoding(e.to_string()))
    }
}

/// Flow 2 up to the AP's application on the card: the issuer's set-up of its card (token
/// key KVN 70 and receipt key KVN 71 in the ISD, which has Token Verification and Receipt
/// Generation), the delegated SSD created (through the CI's terminal, or requested by the
/// AP and relayed through its terminal), the AP's load file and an instance under its
/// prefix installed with tokens the CI signs. Returns the receipts the card gave.
fn flow2_up_to_the_application(p: &Platforms, via_ap: bool) -> Vec<gpclient::dm::VerifiedReceipt> {
    {
        let mut isd = p.isd();
        gpclient::ops::put_public_key(&mut isd, 0x70, 1, 0, &token_key().verifying_key()).unwrap();
        let rk = StaticKeys {
            enc: scp::Key::aes(&RECEIPT_KEY).unwrap(),
            mac: scp::Key::aes(&RECEIPT_KEY).unwrap(),
            dek: scp::Key::aes(&RECEIPT_KEY).unwrap(),
        };
        gpclient::ops::put_key_set(&mut isd, &rk, 0x71, None).unwrap();
    }
    let rec = if via_ap {
        let job = p.request(SsdModel::Delegated);
        let rec = p.ap.run(job, &mut p.card.clone()).unwrap();
        assert_eq!(rec.state, SsdState::Managed);
        p.ci.status("bank", CARD, SSD).unwrap()
    } else {
        // Through the CI's terminal.
        let job =
            p.ci.request(
                "bank",
                &SsdRequest {
                    card_number: CARD.into(),
                    aid: SSD.into(),
                    model: SsdModel::Delegated,
                },
            )
            .unwrap();
        let rec = p.ci.run(job, &mut p.card.clone()).unwrap();
        // No initial keys for the AP: the CI keeps managing it.
        assert!(p.link.initial_keys(job).is_err());
        rec
    };
    assert_eq!(rec.state, SsdState::Managed);
    assert_eq!(rec.privileges, vec![0xA0, 0x00, 0x00]);
    assert_eq!(rec.current_key().unwrap().holder, KeyHolder::Ci);

    // The AP's application goes in with tokens the CI signs; the receipts are its proof.
    let mut chan = p.card.clone();
    let mut client = p.ci.open_managed(CARD, SSD, &mut chan).unwrap();
    client.set_delegation(gpclient::dm::Delegation::new(
        Some(gpclient::dm::TokenSource::Sign(Box::new(LinkSigner(
            p.link.clone(),
        )))),
        Some(gpclient::dm::ReceiptCheck {
            key: gp::dm::ReceiptKey::aes(&RECEIPT_KEY).unwrap(),
            last_counter: None,
        }),
    ));
    let cap = gp::cap::CapFile::from_bytes(EMPTY_CAP).unwrap();
    // The token names the SSD explicitly (the CI signs no load "into the current SD").
    let opts = gpclient::ops::InstallOptions {
        load_only: true,
        to: Some(aid(SSD)),
        ..Default::default()
    };
    gpclient::ops::install_cap(&mut client, &cap, &opts).unwrap();
    // An instance under the AP's prefix: signed; outside it: refused by the CI (audited).
    gpclient::ops::install_instance(
        &mut client,
        aid("0102030405"),
        aid("0102030405060708"),
        aid(INSTANCE),
        Default::default(),
        vec![0xC9, 0x00],
        true,
    )
    .unwrap();
    let outside = gpclient::ops::install_instance(
        &mut client,
        aid("0102030405"),
        aid("0102030405060708"),
        aid("A000000151CC0101"),
        Default::default(),
        vec![0xC9, 0x00],
        true,
    );
    assert!(
        matches!(outside, Err(ClientError::Token { .. })),
        "{outside:?}"
    );
    client.delegation().unwrap().receipts().to_vec()
}

const INSTANCE: &str = "A000000151BA0101";

#[test]
fn flow2_delegated_ssd_managed_by_the_ci_with_tokens_and_receipts() {
    let p = Platforms::new();
    let receipts = flow2_up_to_the_application(&p, false);
    assert!(receipts.len() >= 2, "{} receipts", receipts.len());
    let reg = gpclient::ops::registry(&mut p.isd()).unwrap();
    assert_eq!(
        reg.find(&aid(INSTANCE)).unwrap().associated_sd,
        Some(aid(SSD))
    );
    let entries = p.ci_store().audit_entries(0, 1000).unwrap();
    assert!(entries
        .iter()
        .any(|e| e.action == "ssd.sign_token" && e.result == "ok"));
    assert!(entries
        .iter()
        .any(|e| e.action == "ssd.sign_token" && e.result == "forbidden"));
    // The receipts go to the CI as proof: each verified and recorded with its counter.
    let mut last = None;
    for r in &receipts {
        let bytes = r.confirmation.to_bytes().unwrap();
        let rec = p.ap.forward_receipt(CARD, SSD, &r.context, &bytes).unwrap();
        last = Some(rec);
    }
    let rec = last.unwrap();
    let counters: Vec<u16> = rec.receipts.iter().map(|r| r.counter).collect();
    let want: Vec<u16> = receipts.iter().map(|r| r.confirmation.counter).collect();
    assert_eq!(counters, want);
    assert!(counters.windows(2).all(|w| w[0] < w[1]), "{counters:?}");
    assert_eq!(rec.receipts[0].operation, "load");
    assert!(rec
        .receipts
        .iter()
        .any(|r| r.operation == "install" && r.object.ends_with(INSTANCE)));
    assert_eq!(
        p.ci_store().last_receipt_counter(CARD).unwrap(),
        want.last().copied()
    );
    let entries = p.ci_store().audit_entries(0, 1000).unwrap();
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == "ssd.receipt" && e.result == "ok")
            .count(),
        receipts.len()
    );
    audit_ok(p.ci_store());
}

/// Flow 2 requested by the AP and relayed through its terminal; its receipts are checked
/// by the CI and recorded on both platforms. A forged receipt, a replayed one, one for
/// another operation, one with another card's unique data, one for an object outside the
/// partner's prefix and one brought by another partner are refused, each audited, and
/// nothing is recorded for them.
#[test]
fn flow2_receipts_forged_replayed_or_foreign_are_refused() {
    let p = Platforms::new();
    let receipts = flow2_up_to_the_application(&p, true);
    let load = &receipts[0];
    let install = receipts
        .iter()
        .find(|r| matches!(r.context, gp::dm::ReceiptContext::Install { .. }))
        .unwrap();
    let bytes = |c: &gp::dm::Confirmation| c.to_bytes().unwrap();
    let refused = |r: tsm::Result<SsdRecord>| match r {
        Err(Error::ReceiptRefused(why)) => why,
        other => panic!("expected a refused receipt, got {other:?}"),
    };

    // Forged: one bit of the receipt changed.
    let mut forged = load.confirmation.clone();
    forged.receipt[0] ^= 0x01;
    let why = refused(p.ap.forward_receipt(CARD, SSD, &load.context, &bytes(&forged)));
    assert!(why.contains("does not verify"), "{why}");
    // The receipt of the load presented as the install's.
    let why =
        refused(p.ap.forward_receipt(CARD, SSD, &install.context, &bytes(&load.confirmation)));
    assert!(why.contains("does not verify"), "{why}");
    // No receipt at all.
    let why = refused(p.ap.forward_receipt(CARD, SSD, &load.context, &[0x00]));
    assert!(why.contains("no receipt"), "{why}");

    // The genuine ones verify, once: a replay is refused.
    p.ap.forward_receipt(CARD, SSD, &load.context, &bytes(&load.confirmation))
        .unwrap();
    let rec =
        p.ap.forward_receipt(CARD, SSD, &install.context, &bytes(&install.confirmation))
            .unwrap();
    assert_eq!(rec.receipts.len(), 2);
    let why = refused(p.ap.forward_receipt(CARD, SSD, &load.context, &bytes(&load.confirmation)));
    assert!(why.contains("replayed"), "{why}");
    // The AP records what the CI verified.
    let at_ap = p.ap.status(CARD, SSD).unwrap().unwrap();
    assert_eq!(at_ap.receipts, rec.receipts);

    // A receipt that verifies (made here with the receipt key) but names another card.
    let mut other = install.confirmation.clone();
    other.counter += 10;
    other.sd_unique_data = kms::kdd_for_card_number(OTHER_CARD).unwrap().to_vec();
    let key = gp::dm::ReceiptKey::aes(&RECEIPT_KEY).unwrap();
    other.receipt = key
        .receipt(&install.context.receipt_input(&other).unwrap())
        .unwrap();
    let why = refused(p.ap.forward_receipt(CARD, SSD, &install.context, &bytes(&other)));
    assert!(why.contains("unique data"), "{why}");
    // The card's unique data is its IIN (personalised by its category: 123456) and CIN;
    // the right CIN without the IIN is not it.
    let cin = kms::kdd_for_card_number(CARD).unwrap().to_vec();
    assert_eq!(
        install.confirmation.sd_unique_data,
        [vec![0x12, 0x34, 0x56], cin.clone()].concat()
    );
    let mut no_iin = install.confirmation.clone();
    no_iin.counter += 20;
    no_iin.sd_unique_data = cin;
    no_iin.receipt = key
        .receipt(&install.context.receipt_input(&no_iin).unwrap())
        .unwrap();
    let why = refused(p.ap.forward_receipt(CARD, SSD, &install.context, &bytes(&no_iin)));
    assert!(why.contains("unique data"), "{why}");

    // An object outside the partner's prefix: refused as outside its scope.
    let foreign = gp::dm::ReceiptContext::Delete {
        aid: aid("A000000151CC0101"),
    };
    match p
        .ap
        .forward_receipt(CARD, SSD, &foreign, &bytes(&install.confirmation))
    {
        Err(Error::Refused { reason, .. }) => {
            assert_eq!(reason, auth::Refusal::AidOutsidePrefix)
        }
        other => panic!("{other:?}"),
    }
    // Another partner brings bank's receipt: not its SSD.
    p.ci_store()
        .add_partner(
            "admin",
            &NewPartner {
                id: "bank2".into(),
                name: "Another Bank".into(),
                certificate: vec![0x30, 0x03, 0x02, 0x01, 0x02],
                aid_prefix: apdu::parse_hex("A000000151CC").unwrap(),
                card_ranges: vec![CardRange::new("1000", "1999").unwrap()],
                transport_key: p.ap.transport_key().unwrap(),
            },
        )
        .unwrap();
    match p.ci.check_receipt(
        "bank2",
        CARD,
        SSD,
        &install.context,
        &bytes(&install.confirmation),
    ) {
        Err(Error::Refused { reason, .. }) => assert_ne!(reason, auth::Refusal::UnknownPartner),
        other => panic!("{other:?}"),
    }

    // Nothing more recorded; every refusal audited on the CI (and on the AP).
    let rec = p.ci.status("bank", CARD, SSD).unwrap();
    assert_eq!(rec.receipts.len(), 2);
    let ci_entries = p.ci_store().audit_entries(0, 10_000).unwrap();
    let refusals = ci_entries
        .iter()
        .filter(|e| e.action == "ssd.receipt" && e.result == "refused")
        .count();
    assert_eq!(
        refusals, 6,
        "forged, swapped, empty, replayed, other card, no IIN"
    );
    assert!(ci_entries
        .iter()
        .any(|e| e.action == "ssd.receipt" && e.result == "forbidden"));
    let ap_entries = p.ap_store().audit_entries(0, 10_000).unwrap();
    assert_eq!(
        ap_entries
            .iter()
            .filter(|e| e.action == "ssd.receipt" && e.result == "refused")
            .count(),
        7
    );
    // Every SSD on the CI (the operator's list) and each partner's own.
    assert_eq!(p.ci_store().ssds().unwrap().len(), 1);
    assert!(p.ci_store().ssds_of_owner("bank2").unwrap().is_empty());
    audit_ok(p.ci_store());
    audit_ok(p.ap_store());
}

// ---- flow 3 -----------------------------------------------------------------------------

#[test]
fn flow3_renewal_on_expiry() {
    let p = Platforms::new();
    let policy = KeyPolicy::new(
        Duration::from_secs(10 * 86_400),
        Duration::from_secs(2 * 86_400),
    )
    .unwrap();
    p.ci_store().set_key_policy("admin", &policy).unwrap();
    p.ap_store().set_key_policy("admin", &policy).unwrap();
    let job = p.request(SsdModel::Authorized);
    p.ap.run(job, &mut p.card.clone()).unwrap();
    let now = || p.clock.load(Ordering::SeqCst);
    assert!(p.ap.due(now()).unwrap().is_empty());
    assert!(p.ci.due(now()).unwrap().is_empty());
    p.days(9);
    let due = p.ap.due(now()).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].kvn, due[0].cause.as_str()), (0x31, "expiry"));
    assert_eq!(p.ci.due(now()).unwrap().len(), 1, "the CI sees it too");
    // Still usable in the window; expired, refused for anything but its renewal.
    p.ap.open(CARD, SSD, &mut p.card.clone()).unwrap();
    p.days(2);
    let e = p.ap.open(CARD, SSD, &mut p.card.clone()).unwrap_err();
    assert!(matches!(e, Error::KeyUnusable { kvn: 0x31, .. }), "{e}");
    // Renewal at the next contact.
    let rec = p.ap.renew(CARD, SSD, &mut p.card.clone()).unwrap();
    let k = rec.current_key().unwrap();
    assert_eq!(
        (k.kvn, k.holder, k.state),
        (0x32, KeyHolder::Ap, KeyState::Active)
    );
    assert_eq!(rec.renewals.last().unwrap().cause, "expiry");
    assert!(p.ap.due(now()).unwrap().is_empty());
    let ci = p.ci.status("bank", CARD, SSD).unwrap();
    assert_eq!(ci.current_key().unwrap().kvn, 0x32);
    assert_eq!(ci.current_key().unwrap().kcv, k.kcv);
    p.ap.open(CARD, SSD, &mut p.card.clone()).unwrap();
    audit_ok(p.ci_store());
    audit_ok(p.ap_store());
}

#[test]
fn flow3_renewal_of_a_key_set_the_ci_holds() {
    let p = Platforms::new();
    let policy = KeyPolicy::new(
        Duration::from_secs(10 * 86_400),
        Duration::from_secs(2 * 86_400),
    )
    .unwrap();
    p.ci_store().set_key_policy("admin", &policy).unwrap();
    let job = p.request(SsdModel::Delegated);
    let rec = p.ap.run(job, &mut p.card.clone()).unwrap();
    assert_eq!(rec.state, SsdState::Managed);
    p.days(11);
    let e =
        p.ci.open_managed(CARD, SSD, &mut p.card.clone())
            .unwrap_err();
    assert!(matches!(e, Error::KeyUnusable { .. }), "{e}");
    assert_eq!(p.ci.due(p.clock.load(Ordering::SeqCst)).unwrap().len(), 1);
    let renewal = p.ci.renew(&p.fixture.ci, CARD, SSD).unwrap();
    let rec = p.ci.run(renewal, &mut p.card.clone()).unwrap();
    assert_eq!(rec.current_key().unwrap().kvn, 0x31);
    assert_eq!(rec.renewals.last().unwrap().cause, "expiry");
    p.ci.open_managed(CARD, SSD, &mut p.card.clone()).unwrap();
    // The replaced key set left the CI's key store.
    assert_eq!(p.ci_keys.labels().len(), 1);
}

// ---- flow 4 -----------------------------------------------------------------------------

#[test]
fn flow4_compromised_owner_keys_lock_delete_and_recreate() {
    let p = Platforms::new();
    let job = p.request(SsdModel::Authorized);
    p.ap.run(job, &mut p.card.clone()).unwrap();
    let old_label = p.ap_label();
    let old_keys = p.ap_keys.key_set(&old_label).unwrap();
    // An application of the AP under its SSD (Authorized Management: its own keys).
    {
        let mut chan = p.card.clone();
        let mut c = p.ap.open(CARD, SSD, &mut chan).unwrap();
        let cap = gp::cap::CapFile::from_bytes(EMPTY_CAP).unwrap();
        gpclient::ops::install_cap(&mut c, &cap, &Default::default()).unwrap();
    }
    p.ap.mark_compromised(CARD, SSD, 0x31, "key custodian left")
        .unwrap();
    let ci = p.ci.status("bank", CARD, SSD).unwrap();
    assert_eq!(ci.current_key().unwrap().state, KeyState::Compromised);
    let due = p.ci.due(p.clock.load(Ordering::SeqCst)).unwrap();
    assert_eq!(due[0].cause, "compromised");
    let e = p.ap.open(CARD, SSD, &mut p.card.clone()).unwrap_err();
    assert!(e.to_string().contains("key custodian left"), "{e}");
    // Next contact: the CI locks, deletes, re-creates; the AP takes it over again.
    let rec = p.ap.renew(CARD, SSD, &mut p.card.clone()).unwrap();
    assert_eq!(rec.state, SsdState::HandedOver);
    let ci = p.ci.status("bank", CARD, SSD).unwrap();
    assert_eq!(ci.state, SsdState::HandedOver);
    assert_eq!(ci.current_key(), rec.current_key());
    // The old keys open nothing; the new ones do; the old application is gone.
    assert!(open_ssd(&p.card, &old_keys, 0).is_err());
    p.ap.open(CARD, SSD, &mut p.card.clone()).unwrap();
    let reg = gpclient::ops::registry(&mut p.isd()).unwrap();
    assert!(reg.find(&aid("0102030405060708")).is_none());
    let entries = p.ci_store().audit_entries(0, 1000).unwrap();
    assert!(entries
        .iter()
        .any(|e| e.action == "job.ssd_replace" && e.result == "ok"));
    audit_ok(p.ci_store());
    audit_ok(p.ap_store());
}

// ---- authorisation ----------------------------------------------------------------------

#[test]
fn authorisation_matrix_every_refusal_audited() {
    let p = Platforms::new();
    // A second partner, and a revoked third.
    for (id, prefix) in [("shop", "A000000151CC"), ("gone", "A000000151DD")] {
        let kdir = tempfile::tempdir().unwrap();
        let keys = software_key_sets(&kdir, id);
        p.ci_store()
            .add_partner(
                "admin",
                &NewPartner {
                    id: id.into(),
                    name: id.into(),
                    certificate: vec![0x30, 0x03, 0x02, 0x01, id.as_bytes()[0]],
                    aid_prefix: apdu::parse_hex(prefix).unwrap(),
                    card_ranges: vec![CardRange::new("1000", "1999").unwrap()],
                    transport_key: keys.create_transport_key("t").unwrap().to_spki_der(),
                },
            )
            .unwrap();
    }
    p.ci_store().revoke_partner("admin", "gone").unwrap();
    // bank's SSD exists.
    let ap_job = p.request(SsdModel::Authorized);
    p.ap.run(ap_job, &mut p.card.clone()).unwrap();
    let job = p
        .ci_store()
        .jobs_of_card(CARD)
        .unwrap()
        .iter()
        .find(|j| j.kind == tsm::model::JobKind::SsdCreate)
        .unwrap()
        .id;
    // Another card issued, outside every contract.
    p.fixture
        .issuer
        .write(&p.fixture.ci, OTHER_CARD, CATEGORY, &mut SimCard::scp03())
        .unwrap();

    let isd = "A000000151000000";
    let cases: Vec<(&str, &str, &str, bool)> = vec![
        // (partner, card, aid, allowed for request)
        ("bank", CARD, "A000000151BA0002", true),
        ("bank", OTHER_CARD, "A000000151BA0002", false),
        ("bank", CARD, "A000000151CC0002", false),
        ("bank", CARD, isd, false),
        ("shop", CARD, "A000000151CC0002", true),
        ("shop", CARD, SSD, false),
        ("gone", CARD, "A000000151DD0002", false),
        ("nobody", CARD, "A000000151BA0003", false),
    ];
    for (partner, card, aid_hex, allowed) in &cases {
        let before = p.ci_store().audit_entries(0, 10_000).unwrap().len();
        let r = p.ci.request(
            partner,
            &SsdRequest {
                card_number: card.to_string(),
                aid: aid_hex.to_string(),
                model: SsdModel::Authorized,
            },
        );
        if *allowed {
            r.unwrap_or_else(|e| panic!("{partner} {card} {aid_hex}: {e}"));
            // Run it: the card is free for the next case.
            let open = p.ci_store().open_job_for_card(card).unwrap().unwrap();
            p.ci.run(open.id, &mut p.card.clone()).unwrap();
        } else {
            let e = r.unwrap_err();
            assert!(
                matches!(e, Error::Refused { .. }),
                "{partner} {card} {aid_hex}: {e}"
            );
            let after = p.ci_store().audit_entries(0, 10_000).unwrap();
            assert!(
                after[before..]
                    .iter()
                    .any(|a| a.result == "forbidden" && a.action == "ssd.request"),
                "{partner} {card} {aid_hex}: refusal not audited"
            );
        }
        // Read, renew, keys, token on bank's SSD: only bank (and never when revoked).
        let ops: Vec<(&str, tsm::Result<()>)> = vec![
            ("status", p.ci.status(partner, CARD, SSD).map(|_| ())),
            ("initial_keys", p.ci.initial_keys(partner, job).map(|_| ())),
            (
                "sign_token",
                p.ci.sign_token(
                    partner,
                    &TokenRequest {
                        card_number: CARD.into(),
                        aid: SSD.into(),
                        input: vec![
                            0x00, 0x00, 0x0A, 0x4F, 0x08, 0xA0, 0, 0, 1, 0x51, 0xBA, 0, 1,
                        ],
                    },
                )
                .map(|_| ()),
            ),
        ];
        for (op, r) in ops {
            if *partner == "bank" {
                // Allowed by contract; refused for other reasons (state, model) at most.
                if let Err(e) = r {
                    assert!(!matches!(e, Error::Refused { .. }), "bank {op}: {e}");
                }
            } else {
                let e = r.unwrap_err();
                assert!(matches!(e, Error::Refused { .. }), "{partner} {op}: {e}");
            }
        }
    }
    // Every refusal of a partner is in the log as forbidden, with the partner as actor.
    let entries = p.ci_store().audit_entries(0, 10_000).unwrap();
    for partner in ["shop", "gone", "nobody"] {
        let actor = format!("{partner}/partner-api");
        let n = entries
            .iter()
            .filter(|e| e.actor == actor && e.result == "forbidden")
            .count();
        assert!(n >= 3, "{partner}: {n} refusals audited");
    }
    // Only the owner relays its jobs.
    p.ci.check_job("bank", job).unwrap();
    for other in ["shop", "gone", "nobody"] {
        assert!(matches!(
            p.ci.check_job(other, job),
            Err(Error::Refused { .. })
        ));
    }
    // Refused through the AP platform: audited on the AP's side too.
    let e =
        p.ap.request(&SsdRequest {
            card_number: OTHER_CARD.into(),
            aid: "A000000151BA0009".into(),
            model: SsdModel::Authorized,
        })
        .unwrap_err();
    assert!(matches!(e, Error::Refused { .. }), "{e}");
    let ap_log = p.ap_store().audit_entries(0, 10_000).unwrap();
    assert!(ap_log
        .iter()
        .any(|e| e.action == "ssd.request" && e.result == "refused"));
    // The issuer's engine does not run SSD jobs.
    let e = p
        .fixture
        .issuer
        .run(&p.fixture.ci, job, &mut p.card.clone())
        .unwrap_err();
    assert!(e.to_string().contains("SSD job"), "{e}");
    // A partner sees only its own SSDs; a revoked one nothing.
    assert!(p.ci.ssds("bank").unwrap().iter().all(|s| s.owner == "bank"));
    assert!(p.ci.ssds("shop").unwrap().iter().all(|s| s.owner == "shop"));
    assert!(matches!(p.ci.ssds("gone"), Err(Error::Refused { .. })));
    audit_ok(p.ci_store());
}

// ---- records ----------------------------------------------------------------------------

#[test]
fn partner_records_and_policy_on_every_backend() {
    for ts in backends() {
        let s = ts.store();
        s.create_tenant("admin", "acme", "ACME", tsm::model::Role::CardIssuer)
            .unwrap();
        let kdir = tempfile::tempdir().unwrap();
        let keys = software_key_sets(&kdir, "bank");
        let np = NewPartner {
            id: "bank".into(),
            name: "A Bank".into(),
            certificate: b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n"
                .to_vec(),
            aid_prefix: apdu::parse_hex(PREFIX).unwrap(),
            card_ranges: vec![CardRange::new("1000", "1999").unwrap()],
            transport_key: keys.create_transport_key("t").unwrap().to_spki_der(),
        };
        let p = s.add_partner("admin", &np).unwrap();
        assert_eq!(p.certificate, vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        let sha: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(&p.certificate).into()
        };
        assert_eq!(s.partner_for_certificate(&sha).unwrap().unwrap().id, "bank");
        assert!(s.partner_for_certificate(&[0; 32]).unwrap().is_none());
        assert!(
            s.add_partner("admin", &np).is_err(),
            "{}: duplicate",
            ts.name
        );
        // The ISD's AID cannot be a prefix; an acquirer tenant cannot be a partner.
        let mut bad = np.clone();
        bad.id = "isd".into();
        bad.aid_prefix = apdu::parse_hex("A0000001").unwrap();
        assert!(s.add_partner("admin", &bad).is_err());
        let mut bad = np.clone();
        bad.id = "acme".into();
        bad.certificate = vec![0x30, 0x00];
        assert!(s.add_partner("admin", &bad).is_err());
        assert_eq!(s.partners().unwrap().len(), 1);
        let r = s.revoke_partner("admin", "bank").unwrap();
        assert!(r.revoked && r.revoked_ms.is_some());
        assert_eq!(s.key_policy().unwrap(), KeyPolicy::default());
        let pol = KeyPolicy::new(Duration::from_secs(100), Duration::from_secs(10)).unwrap();
        s.set_key_policy("admin", &pol).unwrap();
        assert_eq!(s.key_policy().unwrap(), pol);
        assert!(KeyPolicy::new(Duration::from_secs(10), Duration::from_secs(10)).is_err());
        // At most 100 years (a lifetime in ms must fit the records).
        assert!(KeyPolicy::new(KeyPolicy::MAX_LIFETIME, Duration::from_secs(1)).is_ok());
        let over = KeyPolicy::MAX_LIFETIME + Duration::from_secs(1);
        assert!(KeyPolicy::new(over, Duration::from_secs(1)).is_err());
        assert!(KeyPolicy::new(Duration::from_secs(u64::MAX), Duration::ZERO).is_err());
        assert!(s.ssd("1234", &[1, 2, 3, 4, 5]).unwrap().is_none());
        assert!(s.ssds_of_owner("bank").unwrap().is_empty());
        assert!(s.ssds().unwrap().is_empty());
        assert_eq!(s.last_receipt_counter("1234").unwrap(), None);
        assert!(s.ssds_due(0).unwrap().is_empty());
        audit_ok(s);
    }
}

// ---- the relay of a card reset ------------------------------------------------------------

/// A card issuer whose flow asks for one card reset, then a command, then is done; it
/// keeps what the AP brought back.
struct ResetLink {
    seen: Mutex<Vec<Option<Vec<u8>>>>,
}

impl CardIssuerLink for ResetLink {
    fn request(&self, _: &SsdRequest) -> tsm::Result<i64> {
        Ok(41)
    }
    fn exchange(&self, job: i64, last: Option<&[u8]>) -> tsm::Result<Exchange> {
        assert_eq!(job, 41);
        let mut seen = self.seen.lock().unwrap();
        seen.push(last.map(<[u8]>::to_vec));
        Ok(match seen.len() {
            1 => Exchange::Reset,
            // SELECT of the ISD.
            2 => Exchange::Command(apdu::parse_hex("00A4040008A000000151000000").unwrap()),
            _ => Exchange::Done,
        })
    }
    fn initial_keys(&self, _: i64) -> tsm::Result<WrappedKeySet> {
        Err(Error::Invalid("none".into()))
    }
    fn confirm_rotation(&self, _: i64, _: &Rotation) -> tsm::Result<SsdRecord> {
        Err(Error::Invalid("none".into()))
    }
    fn status(&self, card_number: &str, aid: &str) -> tsm::Result<SsdRecord> {
        Ok(SsdRecord {
            card_number: card_number.into(),
            aid: aid.into(),
            owner: "bank".into(),
            model: SsdModel::Delegated,
            privileges: vec![0xA0, 0, 0],
            state: SsdState::Managed,
            created_ms: 0,
            handed_over_ms: None,
            receipt: None,
            keys: Vec::new(),
            renewals: Vec::new(),
            receipts: Vec::new(),
        })
    }
    fn renew(&self, _: &str, _: &str) -> tsm::Result<i64> {
        Err(Error::Invalid("none".into()))
    }
    fn report_compromised(&self, _: &str, _: &str, _: u8, _: &str) -> tsm::Result<SsdRecord> {
        Err(Error::Invalid("none".into()))
    }
    fn report_renewal(
        &self,
        _: &str,
        _: &str,
        _: &Renewal,
        _: &Rotation,
    ) -> tsm::Result<SsdRecord> {
        Err(Error::Invalid("none".into()))
    }
    fn sign_token(&self, _: &TokenRequest) -> tsm::Result<Vec<u8>> {
        Err(Error::Invalid("none".into()))
    }
    fn check_receipt(
        &self,
        _: &str,
        _: &str,
        _: &gp::dm::ReceiptContext,
        _: &[u8],
    ) -> tsm::Result<SsdRecord> {
        Err(Error::Invalid("none".into()))
    }
}

/// A card channel that counts its resets.
struct CountingResets {
    card: SimCard,
    resets: Arc<AtomicI64>,
}

impl CardChannel for CountingResets {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.card.transmit_raw(capdu)
    }
    fn atr(&self) -> Vec<u8> {
        self.card.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.resets.fetch_add(1, Ordering::SeqCst);
        self.card.reset()
    }
    fn name(&self) -> String {
        "counting resets".into()
    }
}

/// The CI's flow asks for a card reset: the AP resets its card and brings the ATR back as
/// the next response, then relays the next command as usual.
#[test]
fn a_reset_asked_by_the_ci_is_relayed_to_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite();
    let link = Arc::new(ResetLink {
        seen: Mutex::new(Vec::new()),
    });
    let mut config = ApConfig::new("bank");
    config.lease = Duration::ZERO;
    let ap = ApPlatform::new(
        store.store().clone(),
        software_key_sets(&dir, "ap"),
        link.clone(),
        config,
    );
    let job = ap
        .request(&SsdRequest {
            card_number: CARD.into(),
            aid: SSD.into(),
            model: SsdModel::Delegated,
        })
        .unwrap();
    let card = SimCard::scp03();
    let resets = Arc::new(AtomicI64::new(0));
    let mut chan = CountingResets {
        card: card.clone(),
        resets: resets.clone(),
    };
    let rec = ap.run(job, &mut chan).unwrap();
    assert_eq!(rec.state, SsdState::Managed);
    assert_eq!(resets.load(Ordering::SeqCst), 1);
    let seen = link.seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], None);
    let atr = seen[1].clone().unwrap();
    assert!(!atr.is_empty());
    assert_eq!(atr, card.atr());
    assert_eq!(
        &seen[2].as_ref().unwrap()[seen[2].as_ref().unwrap().len() - 2..],
        [0x90, 0x00]
    );
}
