//! Fault injection: the card is pulled out (or the process crashes) at every APDU of a
//! workflow; running the job again finishes it, and the card and the database agree.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use common::*;
use gp::aid::Aid;
use gp::commands::DataObject;
use gpclient::ops;
use kms::KeyKind;
use tsm::model::{CardState, JobState, StepState};
use tsm::{kvn_for_version, Error, Request};

/// Keeps the simulated crashes out of the test output (other panics still print).
fn quiet_simulated_crashes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or("");
            if !msg.starts_with("simulated crash") {
                default(info);
            }
        }));
    });
}

fn bcd(number: &str) -> Vec<u8> {
    kms::kdd_for_card_number(number).unwrap().to_vec()
}

/// Runs `f` on a channel cut at `cut`; returns whether the run completed.
fn run_cut(
    card: &SimCard,
    cut: Cut,
    f: impl FnOnce(&mut Faulty<SimCard>) -> tsm::Result<tsm::Outcome>,
) -> bool {
    let mut faulty = Faulty::new(card.clone(), cut);
    match catch_unwind(AssertUnwindSafe(|| f(&mut faulty))) {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            assert!(e.is_interruption(), "{cut:?}: unexpected error {e}");
            false
        }
        Err(_) => {
            assert!(matches!(cut, Cut::CrashAfter(_)));
            false
        }
    }
}

/// Runs the card's open job to the end (a second interruption first, when `again` is set).
fn finish(f: &Fixture, number: &str, card: &SimCard, again: Option<Cut>) {
    if let Some(cut) = again {
        if f.store().open_job_for_card(number).unwrap().is_some() {
            run_cut(card, cut, |ch| f.issuer.resume(&f.ci, number, ch));
        }
    }
    if f.store().open_job_for_card(number).unwrap().is_some() {
        let out = f.issuer.resume(&f.ci, number, &mut card.clone()).unwrap();
        assert_eq!(out.job.state, JobState::Done);
    }
    let job = f.store().jobs_of_card(number).unwrap().pop().unwrap();
    assert_eq!(job.state, JobState::Done, "{number}: {:?}", job.error);
    let steps = f.store().job_steps(job.id).unwrap();
    assert!(
        steps.iter().all(|s| s.state == StepState::Done),
        "{steps:?}"
    );
}

/// The card carries base key version `v`, its number, its KDD and exactly the applications
/// the database lists; the database says the same.
fn assert_written(f: &Fixture, card: &SimCard, number: &str, v: u32, what: &str) {
    let kvn = kvn_for_version(v, 0x30);
    let row = f.store().card(number).unwrap().unwrap();
    assert_eq!(row.state, CardState::Written, "{what}");
    assert_eq!(row.key_version, Some(v), "{what}");
    assert_eq!(row.kvn, Some(kvn), "{what}");
    assert_eq!(row.kdd.as_deref(), Some(bcd(number).as_slice()), "{what}");
    let base = if v == 1 { BASE_V1 } else { BASE_V2 };
    let mut c = open(card, base_spec(base, f.diversification(), kvn))
        .unwrap_or_else(|e| panic!("{what}: derived keys do not open: {e}"));
    let reg = ops::registry(&mut c).unwrap();
    let mut on_card: Vec<Aid> = reg
        .applications
        .iter()
        .map(|e| e.aid)
        .filter(|a| *a != gp::aid::ISD_AID)
        .collect();
    let mut in_db: Vec<Aid> = f
        .store()
        .card_apps(number)
        .unwrap()
        .iter()
        .map(|a| a.instance)
        .collect();
    on_card.sort();
    in_db.sort();
    assert_eq!(on_card, in_db, "{what}: applications");
    assert_eq!(
        ops::get_data(&mut c, DataObject::Cin).unwrap(),
        Some(bcd(number)),
        "{what}: CIN"
    );
    assert_eq!(
        ops::get_data(&mut c, DataObject::KeyDiversificationData).unwrap(),
        Some(bcd(number)),
        "{what}: KDD"
    );
    // The key information lists exactly one key set: the new one.
    let ki = gp::commands::KeyInfo::parse(
        &ops::get_data_raw(&mut c, DataObject::KeyInformation)
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(
        ki.entries.iter().all(|e| e.version == kvn),
        "{what}: {ki:?}"
    );
}

fn assert_blank(f: &Fixture, card: &SimCard, number: &str, what: &str) {
    let row = f.store().card(number).unwrap().unwrap();
    assert_eq!(row.state, CardState::Blank, "{what}");
    assert_eq!(row.key_version, None, "{what}");
    assert!(f.store().card_apps(number).unwrap().is_empty(), "{what}");
    let mut c = open(card, test_key_spec(0x30))
        .unwrap_or_else(|e| panic!("{what}: initial keys do not open: {e}"));
    let reg = ops::registry(&mut c).unwrap();
    assert!(
        reg.applications.iter().all(|e| e.aid == gp::aid::ISD_AID),
        "{what}: {:?}",
        reg.applications
    );
    assert_eq!(
        ops::get_data(&mut c, DataObject::Cin).unwrap(),
        Some(vec![])
    );
    assert_eq!(
        ops::get_data(&mut c, DataObject::KeyDiversificationData).unwrap(),
        Some(vec![0; 10])
    );
}

fn clean_apdus(
    f: &Fixture,
    req: impl Fn(&str) -> Request,
    prepare: impl Fn(&str, &SimCard),
) -> usize {
    let number = "99";
    let card = SimCard::scp03();
    prepare(number, &card);
    let mut counting = Counting {
        inner: card.clone(),
        count: 0,
    };
    f.issuer
        .execute(&f.ci, &req(number), &mut counting)
        .unwrap();
    counting.count
}

fn cuts(total: usize) -> Vec<Cut> {
    (0..=total)
        .flat_map(|n| [Cut::Before(n), Cut::After(n), Cut::CrashAfter(n)])
        .collect()
}

#[test]
fn write_survives_a_cut_at_every_apdu() {
    quiet_simulated_crashes();
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, true);
        let total = clean_apdus(&f, write_req, |_, _| {});
        assert!(total > 20, "{total}");
        let mut interrupted = 0;
        for (i, cut) in cuts(total).into_iter().enumerate() {
            let number = format!("{}", 4_000_000 + i);
            let card = SimCard::scp03();
            let id = f.issuer.submit(&f.ci, &write_req(&number)).unwrap();
            if !run_cut(&card, cut, |ch| f.issuer.run(&f.ci, id, ch)) {
                interrupted += 1;
            }
            // Every third case is interrupted once more while resuming.
            let again = (i % 3 == 0).then_some(Cut::After(i % 11));
            finish(&f, &number, &card, again);
            assert_written(&f, &card, &number, 1, &format!("{name} {cut:?}"));
        }
        // Every cut before the last APDU interrupted the job.
        assert_eq!(interrupted, 3 * total, "{name}");
        assert!(f.store().audit_verify().unwrap().is_ok(), "{name}");
    }
}

/// The same through [`tsm::Issuer::write`] (checked, then recorded with the run's first
/// record, as the `issue` commands and campaigns do): what the run learns about the card
/// before changing it (its check: chip, factory KDD) is in the database with the job before
/// the first change, so a resume after any cut finds the card as recorded; a crash before
/// that record leaves no job and the card as it was, and the write is simply made again.
#[test]
fn write_by_the_submitting_worker_survives_a_cut_at_every_apdu() {
    quiet_simulated_crashes();
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, true);
        let total = clean_apdus(&f, write_req, |_, _| {});
        let mut interrupted = 0;
        for (i, cut) in cuts(total).into_iter().enumerate() {
            let number = format!("{}", 4_100_000 + i);
            let card = SimCard::scp03();
            if !run_cut(&card, cut, |ch| {
                f.issuer.write(&f.ci, &number, CATEGORY, ch)
            }) {
                interrupted += 1;
            }
            if f.store().jobs_of_card(&number).unwrap().is_empty() {
                assert!(matches!(cut, Cut::CrashAfter(_)), "{name} {cut:?}");
                f.issuer
                    .write(&f.ci, &number, CATEGORY, &mut card.clone())
                    .unwrap();
            }
            finish(&f, &number, &card, None);
            assert_written(&f, &card, &number, 1, &format!("{name} {cut:?}"));
        }
        assert_eq!(interrupted, 3 * total, "{name}");
        assert!(f.store().audit_verify().unwrap().is_ok(), "{name}");
    }
}

#[test]
fn rewrite_survives_a_cut_at_every_apdu() {
    quiet_simulated_crashes();
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, false);
        let v2 = f.rotate();
        // Cards are written with v2 (current) and rewritten back to v1.
        let req = |n: &str| Request::Rewrite {
            card_number: n.into(),
            category: CATEGORY.into(),
            to_version: Some(1),
        };
        let prepare = |n: &str, card: &SimCard| {
            let out = f
                .issuer
                .write(&f.ci, n, CATEGORY, &mut card.clone())
                .unwrap();
            assert_eq!(out.card.key_version, Some(v2));
        };
        let total = clean_apdus(&f, req, prepare);
        let mut interrupted = 0;
        for (i, cut) in cuts(total).into_iter().enumerate() {
            let number = format!("{}", 5_000_000 + i);
            let card = SimCard::scp03();
            prepare(&number, &card);
            let id = f.issuer.submit(&f.ci, &req(&number)).unwrap();
            if !run_cut(&card, cut, |ch| f.issuer.run(&f.ci, id, ch)) {
                interrupted += 1;
            }
            finish(&f, &number, &card, None);
            assert_written(&f, &card, &number, 1, &format!("{name} {cut:?}"));
        }
        // Every cut before the last APDU interrupted the job.
        assert_eq!(interrupted, 3 * total, "{name}");
        assert!(f.store().audit_verify().unwrap().is_ok(), "{name}");
    }
}

#[test]
fn clear_survives_a_cut_at_every_apdu() {
    quiet_simulated_crashes();
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, true);
        let req = |n: &str| Request::Clear {
            card_number: n.into(),
            category: CATEGORY.into(),
        };
        let prepare = |n: &str, card: &SimCard| {
            f.issuer
                .execute(&f.ci, &write_req(n), &mut card.clone())
                .unwrap();
        };
        let total = clean_apdus(&f, req, prepare);
        let mut interrupted = 0;
        for (i, cut) in cuts(total).into_iter().enumerate() {
            let number = format!("{}", 6_000_000 + i);
            let card = SimCard::scp03();
            prepare(&number, &card);
            let id = f.issuer.submit(&f.ci, &req(&number)).unwrap();
            if !run_cut(&card, cut, |ch| f.issuer.run(&f.ci, id, ch)) {
                interrupted += 1;
            }
            let again = (i % 3 == 1).then_some(Cut::Before(i % 9));
            finish(&f, &number, &card, again);
            assert_blank(&f, &card, &number, &format!("{name} {cut:?}"));
        }
        // Every cut before the last APDU interrupted the job.
        assert_eq!(interrupted, 3 * total, "{name}");
        assert!(f.store().audit_verify().unwrap().is_ok(), "{name}");
    }
}

/// A resume of `number`'s job with `other` in the reader is refused as the wrong card, and
/// `other` is left as it was.
fn assert_resume_refuses(f: &Fixture, number: &str, other: &SimCard, what: &str) {
    let before = format!("{:?}", other.card());
    let e = f
        .issuer
        .resume(&f.ci, number, &mut other.clone())
        .unwrap_err();
    assert!(matches!(e, Error::WrongCard(_)), "{what}: {e}");
    assert_eq!(format!("{:?}", other.card()), before, "{what}");
}

#[test]
fn a_resumed_job_refuses_another_card() {
    let f = Fixture::new(sqlite(), KeyKind::Aes, 0x30, false);
    let number = "31";
    let card = SimCard::scp03();
    // APDU 8 of a write is PUT KEY (see write_apdu_sequence): its answer is lost, so the
    // new keys may or may not be on the card.
    let id = f.issuer.submit(&f.ci, &write_req(number)).unwrap();
    assert!(!run_cut(&card, Cut::After(8), |ch| f
        .issuer
        .run(&f.ci, id, ch)));
    let steps = f.store().job_steps(id).unwrap();
    let state = |n: &str| steps.iter().find(|s| s.name == n).unwrap().state;
    assert_eq!(state("set_kdd"), StepState::Done);
    assert_eq!(state("put_key"), StepState::Started);
    // Another blank card in the reader (same chip model and CPLC as every virtual card):
    // its KDD is not the one this job already wrote, so it is refused, untouched, and the
    // job stays pending.
    assert_resume_refuses(&f, number, &SimCard::scp03(), "sqlite");
    let job = f.store().job(id).unwrap().unwrap();
    assert_eq!(job.state, JobState::Pending, "{:?}", job.error);
    // With the right card it finishes.
    finish(&f, number, &card, None);
    assert_written(&f, &card, number, 1, "right card");
}

/// The same through [`tsm::Issuer::write`], whose first record also inserts the new card's
/// row: that row holds what the check learnt (chip, factory KDD, KVN) before the first
/// change to the card, on every backend, so a resume refuses a card swapped for another.
/// (On PostgreSQL the row was once inserted blank and updated in the same statement, where
/// the update does not see the inserted row: the identity was lost until the job's end.)
#[test]
fn a_write_interrupted_after_its_first_record_refuses_another_card() {
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, true);
        let number = "32";
        let card = SimCard::scp03();
        // APDU 7 is the first change (STORE DATA of the KDD): cut after it, the run's
        // first record is all the database has.
        assert!(!run_cut(&card, Cut::After(7), |ch| f
            .issuer
            .write(&f.ci, number, CATEGORY, ch)));
        let row = f.store().card(number).unwrap().unwrap();
        assert_eq!(row.state, CardState::Blank, "{name}");
        assert!(row.chip_id.is_some(), "{name}: {row:?}");
        assert!(row.factory_kdd.is_some(), "{name}: {row:?}");
        assert_eq!(row.kvn, Some(0x30), "{name}: {row:?}");
        // Another blank card of the same model, with the same factory KDD: only its chip
        // (the IC serial number in its CPLC, GP 2.3.1 §H.6) tells it apart.
        let mut config = card::CardConfig::default();
        config.cplc[15] ^= 0x01;
        assert_resume_refuses(&f, number, &SimCard::with_config(config), name);
        finish(&f, number, &card, None);
        assert_written(&f, &card, number, 1, name);
    }
}

#[test]
fn write_apdu_sequence() {
    // The commands of a write without applications, in order (INS bytes), for review:
    // SELECT, GET DATA ×3 (CPLC, CIN, key information), SELECT + INITIALIZE UPDATE +
    // EXTERNAL AUTHENTICATE (initial keys), STORE DATA (KDD), PUT KEY, SELECT + IU + EA
    // (derived keys), STORE DATA (CIN and category data).
    struct Log(SimCard, Vec<u8>);
    impl transport::CardChannel for Log {
        fn transmit_raw(&mut self, c: &[u8]) -> Result<Vec<u8>, transport::TransportError> {
            self.1.push(c[1]);
            self.0.transmit_raw(c)
        }
        fn atr(&self) -> Vec<u8> {
            self.0.atr()
        }
        fn reset(&mut self) -> Result<(), transport::TransportError> {
            self.0.reset()
        }
        fn name(&self) -> String {
            "log".into()
        }
    }
    let f = Fixture::new(sqlite(), KeyKind::Aes, 0x30, false);
    let mut log = Log(SimCard::scp03(), Vec::new());
    let out = f.issuer.write(&f.ci, "42", CATEGORY, &mut log).unwrap();
    assert_eq!(
        apdu::hex(&log.1),
        "A4CACACAA45082E2D8A45082E2",
        "{:?}",
        out.job
    );
    assert_eq!(out.apdus, 13);
}
