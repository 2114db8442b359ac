//! Issue #10, flows 3 and 4: renewal at the next contact (`tsm::ssd::contact`). Two
//! platforms in process (`common::ssd`), the virtual card, a clock the test moves; each
//! contact is what the server's background task runs when a card appears in a reader.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::ssd::*;
use common::*;
use tsm::ssd::*;
use tsm::Actor;

const CARD: &str = "1234";
const SSD: &str = "A000000151BA0001";
const DAY_MS: i64 = 86_400_000;

struct Setup {
    p: SsdPlatforms,
    ap_keys: Arc<dyn KeySetStore>,
    card: SimCard,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// CI on SQLite, AP on PostgreSQL when reachable; key policy 10 days, renewed in the
    /// last 2; card [`CARD`] issued, SSD [`SSD`] of `model` created and taken over.
    fn new(model: SsdModel) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ci_keys = software_key_sets(&dir, "ci");
        let ap_keys = software_key_sets(&dir, "ap");
        let p = SsdPlatforms::new(
            sqlite(),
            postgres().unwrap_or_else(sqlite),
            ci_keys,
            ap_keys.clone(),
            None,
            CardRange::new("1000", "1999").unwrap(),
        );
        let policy = KeyPolicy::new(
            Duration::from_secs(10 * 86_400),
            Duration::from_secs(2 * 86_400),
        )
        .unwrap();
        p.ci.store().set_key_policy("admin", &policy).unwrap();
        p.ap_store.store().set_key_policy("admin", &policy).unwrap();
        let card = SimCard::scp03();
        p.issue(CARD, &card);
        let job =
            p.ap.request(&SsdRequest {
                card_number: CARD.into(),
                aid: SSD.into(),
                model,
            })
            .unwrap();
        p.ap.run(job, &mut card.clone()).unwrap();
        Setup {
            p,
            ap_keys,
            card,
            _dir: dir,
        }
    }

    fn days(&self, n: i64) {
        self.p.clock.fetch_add(n * DAY_MS, Ordering::SeqCst);
    }

    fn ci_contact(&self) -> CiContact {
        CiContact {
            ci: self.p.ci.clone(),
            actor: Actor::new("acme", "renew-at-contact"),
        }
    }

    /// Presents `card` to `platform`; returns the report and the APDUs sent.
    fn present(&self, platform: &dyn RenewAtContact, card: &SimCard) -> (ContactReport, usize) {
        let mut chan = Counting {
            inner: card.clone(),
            count: 0,
        };
        let report = platform.renew_at_contact(&mut chan).unwrap();
        (report, chan.count)
    }

    fn audit_lengths(&self) -> (usize, usize) {
        (
            self.p.ci.store().audit_entries(0, 10_000).unwrap().len(),
            self.p
                .ap_store
                .store()
                .audit_entries(0, 10_000)
                .unwrap()
                .len(),
        )
    }
}

/// SELECT ISD, GET DATA 9F7F, GET DATA 45.
const IDENTIFICATION_APDUS: usize = 3;

fn only(report: &ContactReport) -> &ContactRenewal {
    assert_eq!(report.renewals.len(), 1, "{report}");
    &report.renewals[0]
}

#[test]
fn a_key_set_falling_due_is_renewed_when_the_card_is_presented() {
    let s = Setup::new(SsdModel::Authorized);
    // Not due yet: identified, nothing else.
    let (r, n) = s.present(&s.p.ap, &s.card);
    assert_eq!(r.card_number.as_deref(), Some(CARD));
    assert_eq!(r.left_alone.as_deref(), Some("nothing due"), "{r}");
    assert_eq!(n, IDENTIFICATION_APDUS);
    // In the renewal window: renewed at this contact, then nothing due again.
    s.days(9);
    let (r, n) = s.present(&s.p.ap, &s.card);
    let one = only(&r);
    assert_eq!(
        (one.aid.as_str(), one.kvn, one.cause.as_str()),
        (SSD, 0x31, "expiry")
    );
    assert_eq!(one.result, ContactResult::Renewed { kvn: 0x32 }, "{r}");
    assert!(n > IDENTIFICATION_APDUS);
    let rec = s.p.ap.status(CARD, SSD).unwrap().unwrap();
    assert_eq!(rec.current_key().unwrap().kvn, 0x32);
    assert_eq!(rec.renewals.last().unwrap().cause, "expiry");
    assert_eq!(
        s.p.ci
            .status("bank", CARD, SSD)
            .unwrap()
            .current_key()
            .unwrap()
            .kvn,
        0x32
    );
    s.p.ap.open(CARD, SSD, &mut s.card.clone()).unwrap();
    let (r, n) = s.present(&s.p.ap, &s.card);
    assert_eq!(r.left_alone.as_deref(), Some("nothing due"), "{r}");
    assert_eq!(n, IDENTIFICATION_APDUS);
    // The job was an ordinary audited one.
    let entries = s.p.ap_store.store().audit_entries(0, 10_000).unwrap();
    assert!(entries
        .iter()
        .any(|e| e.action == "job.ssd_renew" && e.result == "ok"));
    assert!(s.p.ap_store.store().audit_verify().unwrap().is_ok());
}

#[test]
fn a_compromised_key_set_is_replaced_at_the_next_contact() {
    let s = Setup::new(SsdModel::Authorized);
    s.p.ap
        .mark_compromised(CARD, SSD, 0x31, "key custodian left")
        .unwrap();
    let (r, _) = s.present(&s.p.ap, &s.card);
    let one = only(&r);
    assert_eq!(one.cause, "compromised");
    assert!(matches!(one.result, ContactResult::Renewed { .. }), "{r}");
    let rec = s.p.ap.status(CARD, SSD).unwrap().unwrap();
    assert_eq!(rec.state, SsdState::HandedOver);
    assert_eq!(rec.current_key().unwrap().state, KeyState::Active);
    s.p.ap.open(CARD, SSD, &mut s.card.clone()).unwrap();
    // The CI, at its own terminal, leaves the AP's key sets to the AP.
    let (r, n) = s.present(&s.ci_contact(), &s.card);
    assert_eq!(r.left_alone.as_deref(), Some("nothing due"), "{r}");
    assert_eq!(n, IDENTIFICATION_APDUS);
}

#[test]
fn the_ci_renews_at_its_terminal_the_key_sets_it_holds() {
    let s = Setup::new(SsdModel::Delegated);
    let ci = s.ci_contact();
    let (r, n) = s.present(&ci, &s.card);
    assert_eq!(r.left_alone.as_deref(), Some("nothing due"), "{r}");
    assert_eq!(n, IDENTIFICATION_APDUS);
    s.days(11);
    assert!(s.p.ci.open_managed(CARD, SSD, &mut s.card.clone()).is_err());
    let (r, _) = s.present(&ci, &s.card);
    assert_eq!(only(&r).result, ContactResult::Renewed { kvn: 0x31 }, "{r}");
    s.p.ci.open_managed(CARD, SSD, &mut s.card.clone()).unwrap();
    // Compromised: renewed by force at the next contact.
    s.p.ci
        .mark_compromised(
            &Actor::new("acme", "operator"),
            CARD,
            SSD,
            0x31,
            "HSM audit",
        )
        .unwrap();
    let (r, _) = s.present(&ci, &s.card);
    let one = only(&r);
    assert_eq!((one.kvn, one.cause.as_str()), (0x31, "compromised"));
    assert_eq!(one.result, ContactResult::Renewed { kvn: 0x32 }, "{r}");
    let rec = s.p.ci.status("bank", CARD, SSD).unwrap();
    assert_eq!(rec.renewals.last().unwrap().cause, "forced");
    s.p.ci.open_managed(CARD, SSD, &mut s.card.clone()).unwrap();
}

#[test]
fn a_card_with_nothing_due_or_of_another_issuer_is_left_alone() {
    let s = Setup::new(SsdModel::Authorized);
    s.days(9); // CARD's key set is due: the others must not be touched anyway.
    let before = s.audit_lengths();
    // A blank card (no card number), a card of the CI with no SSD, a card numbered
    // like ours but of another issuer (unknown to the CI, no SSD at the AP).
    let blank = SimCard::scp03();
    let no_ssd = SimCard::scp03();
    s.p.issue("5678", &no_ssd);
    let before = (s.audit_lengths().0, before.1);
    let foreign = {
        let other = SsdPlatforms::new(
            sqlite(),
            sqlite(),
            software_key_sets(&s._dir, "other-ci"),
            software_key_sets(&s._dir, "other-ap"),
            None,
            CardRange::new("1000", "1999").unwrap(),
        );
        let c = SimCard::scp03();
        other.issue("1500", &c);
        c
    };
    let ci = s.ci_contact();
    for (card, number) in [
        (&blank, None),
        (&no_ssd, Some("5678")),
        (&foreign, Some("1500")),
    ] {
        for platform in [&s.p.ap as &dyn RenewAtContact, &ci] {
            let (r, n) = s.present(platform, card);
            assert_eq!(r.card_number.as_deref(), number);
            assert!(r.left_alone.is_some() && r.renewals.is_empty(), "{r}");
            assert_eq!(n, IDENTIFICATION_APDUS, "{r}");
        }
    }
    assert_eq!(s.audit_lengths(), before, "no job, no audit entry");
    assert!(s
        .p
        .ap_store
        .store()
        .jobs_of_card("1500")
        .unwrap()
        .is_empty());
}

#[test]
fn a_refused_renewal_is_reported_and_not_tried_again() {
    let s = Setup::new(SsdModel::Authorized);
    // The AP lost its key set (its HSM was reset): the renewal cannot open the SSD.
    for l in labels(s.ap_keys.as_ref()) {
        s.ap_keys.delete_key_set(&l).unwrap();
    }
    s.days(9);
    let (r, _) = s.present(&s.p.ap, &s.card);
    let one = only(&r);
    let ContactResult::Refused { error } = &one.result else {
        panic!("{r}");
    };
    assert!(!error.is_empty());
    // The next contacts hold it for an operator: identified, nothing sent.
    for _ in 0..2 {
        let (r, n) = s.present(&s.p.ap, &s.card);
        assert!(matches!(only(&r).result, ContactResult::Held { .. }), "{r}");
        assert_eq!(n, IDENTIFICATION_APDUS);
    }
    let failed =
        s.p.ap_store
            .store()
            .jobs_of_card(CARD)
            .unwrap()
            .into_iter()
            .filter(|j| j.state == tsm::model::JobState::Failed)
            .count();
    assert_eq!(failed, 1, "one attempt only");
}

#[test]
fn an_interrupted_renewal_is_resumed_at_the_next_contact() {
    let s = Setup::new(SsdModel::Authorized);
    s.days(9);
    // The card is pulled after the identification and two more APDUs.
    let mut cut = Faulty::new(s.card.clone(), Cut::After(IDENTIFICATION_APDUS + 2));
    let r = s.p.ap.renew_at_contact(&mut cut).unwrap();
    assert!(
        matches!(only(&r).result, ContactResult::Interrupted { .. }),
        "{r}"
    );
    let (r, _) = s.present(&s.p.ap, &s.card);
    assert_eq!(only(&r).result, ContactResult::Renewed { kvn: 0x32 }, "{r}");
    s.p.ap.open(CARD, SSD, &mut s.card.clone()).unwrap();
    let jobs = s.p.ap_store.store().jobs_of_card(CARD).unwrap();
    assert_eq!(
        jobs.iter()
            .filter(|j| j.kind == tsm::model::JobKind::SsdRenew)
            .count(),
        1,
        "the same job, resumed"
    );
}
