//! Campaigns across several nodes sharing one database: three workers, each with its own
//! store (its own pool and group commit, as three `serve` processes), write one campaign of
//! in-process virtual cards; a fourth claims a batch and dies. Every card is written exactly
//! once, verifies with an independent secure channel, and the audit chain verifies.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tsm::campaign::{self, ItemState, Worker};
use tsm::issuance::Actor;
use tsm::model::{CardState, JobKind, JobState};
use tsm::{Issuer, IssuerConfig, Store};

fn run(ts: TestStore, cards: u64) {
    let name = ts.name;
    let url = ts.url.clone();
    let f = Fixture::new(ts, kms::KeyKind::Aes, 0x30, false);
    let ci = Actor::new("acme", "operator");
    let numbers = campaign::card_range(
        "4711000000000000",
        &format!("{}", 4_711_000_000_000_000u64 + cards - 1),
        1_000_000,
    )
    .unwrap();
    let id = campaign::create(f.store(), &ci, CATEGORY, &numbers).unwrap();
    // Another tenant may neither steer nor read it.
    let bank = Actor::new("bank", "operator");
    assert!(
        campaign::steer(f.store(), &bank, id, "start").is_err(),
        "{name}"
    );
    assert!(campaign::status(f.store(), &bank, id).is_err(), "{name}");
    // Nothing is claimed before the start.
    let idle = Issuer::new(f.store().clone(), f.keys.clone(), IssuerConfig::default());
    let none = Worker {
        issuer: &idle,
        owner: "idle".into(),
        lease: Duration::from_secs(60),
        batch: 10,
    };
    assert_eq!(
        none.pass(&mut |_| unreachable!("no item")).unwrap().claimed,
        0
    );
    campaign::steer(f.store(), &ci, id, "start").unwrap();

    // A node that claims a batch and dies: its items come back when the lease ends.
    let dead_store = Store::open(&url).unwrap();
    let lost = dead_store
        .claim_campaign_items("dead-node", tsm::model::now_ms() + 1_500, 25)
        .unwrap();
    assert_eq!(lost.len(), 25, "{name}");
    drop(dead_store);

    let sims: Arc<Mutex<HashMap<String, SimCard>>> = Arc::default();
    let stores: Vec<Store> = (0..3).map(|_| Store::open(&url).unwrap()).collect();
    std::thread::scope(|s| {
        for (node, store) in stores.iter().enumerate() {
            let keys = f.keys.clone();
            let sims = sims.clone();
            s.spawn(move || {
                let issuer = Issuer::new(store.clone(), keys, IssuerConfig::default());
                let worker = Worker {
                    issuer: &issuer,
                    owner: format!("node-{node}"),
                    lease: Duration::from_secs(60),
                    batch: 16,
                };
                let mut idle_passes = 0;
                loop {
                    let pass = worker
                        .pass(&mut |number| {
                            let card = SimCard::scp03();
                            let mut all = sims.lock().unwrap();
                            assert!(
                                all.insert(number.to_string(), card.clone()).is_none(),
                                "card {number} handed out twice"
                            );
                            Ok(Box::new(card))
                        })
                        .unwrap();
                    if pass.claimed == 0 {
                        // Wait out the dead node's lease, then stop when all is done.
                        let c = store.campaign_counts(id).unwrap();
                        if c.pending == 0 && c.claimed == 0 {
                            break;
                        }
                        idle_passes += 1;
                        assert!(idle_passes < 400, "campaign stalled: {c:?}");
                        std::thread::sleep(Duration::from_millis(25));
                    }
                }
            });
        }
    });

    let status = campaign::status(f.store(), &ci, id).unwrap();
    assert_eq!(status.counts.done, cards, "{name}: {status:?}");
    assert_eq!(
        status.counts.failed + status.counts.pending + status.counts.claimed,
        0
    );
    let sims = sims.lock().unwrap();
    assert_eq!(
        sims.len() as u64,
        cards,
        "{name}: every card handed out once"
    );
    let kdf = f.diversification();
    for (i, number) in numbers.iter().enumerate() {
        let jobs = f.store().jobs_of_card(number).unwrap();
        assert_eq!(jobs.len(), 1, "{name}: card {number} written once");
        assert_eq!(
            (jobs[0].kind, jobs[0].state),
            (JobKind::Write, JobState::Done)
        );
        let card = f.store().card(number).unwrap().unwrap();
        assert_eq!(card.state, CardState::Written);
        // An independent channel with the derived keys, on a sample of the cards.
        if i % 97 == 0 {
            open(&sims[number], base_spec(BASE_V1, kdf, 0))
                .unwrap_or_else(|e| panic!("{name}: card {number}: {e}"));
        }
    }
    assert!(f.store().audit_verify().unwrap().is_ok(), "{name}");
    // No failure: a retry has nothing to do.
    assert!(campaign::retry(f.store(), &ci, id).is_err());
    let _ = ItemState::Done;
}

#[test]
fn three_nodes_write_a_campaign_and_survive_a_dead_one() {
    for ts in backends() {
        let cards = if ts.is_sqlite() { 300 } else { 2000 };
        run(ts, cards);
    }
}

#[test]
fn campaigns_are_steered_and_failed_cards_retried() {
    let f = Fixture::new(sqlite(), kms::KeyKind::Aes, 0x30, false);
    let ci = Actor::new("acme", "operator");
    let numbers = campaign::card_range("10", "14", 100).unwrap();
    assert_eq!(numbers, ["10", "11", "12", "13", "14"]);
    assert!(campaign::card_range("14", "10", 100).is_err());
    assert!(campaign::card_range("1", "99", 1000).is_err());
    assert!(campaign::card_range("00", "99", 10).is_err());
    let id = campaign::create(f.store(), &ci, CATEGORY, &numbers).unwrap();
    assert!(campaign::steer(f.store(), &ci, id, "pause").is_err());
    campaign::steer(f.store(), &ci, id, "start").unwrap();
    campaign::steer(f.store(), &ci, id, "pause").unwrap();
    let issuer = Issuer::new(f.store().clone(), f.keys.clone(), IssuerConfig::default());
    let worker = Worker {
        issuer: &issuer,
        owner: "w".into(),
        lease: Duration::from_secs(60),
        batch: 10,
    };
    // Paused: nothing is claimed.
    assert_eq!(worker.pass(&mut |_| unreachable!()).unwrap().claimed, 0);
    campaign::steer(f.store(), &ci, id, "resume").unwrap();
    // Cards 11 and 13 are missing from the reader: they fail with a reason.
    let pass = worker
        .pass(&mut |number| {
            if number == "11" || number == "13" {
                Err(tsm::Error::Invalid(format!(
                    "no card {number} in the reader"
                )))
            } else {
                Ok(Box::new(SimCard::scp03()))
            }
        })
        .unwrap();
    assert_eq!((pass.claimed, pass.done, pass.failed), (5, 3, 2));
    let failures = f.store().campaign_failures(id).unwrap();
    assert_eq!(failures.len(), 2);
    assert!(failures[0].reason.contains("no card 11"), "{failures:?}");
    let sub = campaign::retry(f.store(), &ci, id).unwrap();
    campaign::steer(f.store(), &ci, sub, "start").unwrap();
    let pass = worker
        .pass(&mut |_| Ok(Box::new(SimCard::scp03())))
        .unwrap();
    assert_eq!((pass.claimed, pass.done), (2, 2));
    let st = campaign::status(f.store(), &ci, sub).unwrap();
    assert_eq!((st.total, st.counts.done), (2, 2));
    assert_eq!(st.campaign.parent, Some(id));
    campaign::steer(f.store(), &ci, id, "cancel").unwrap();
    assert!(campaign::steer(f.store(), &ci, id, "start").is_err());
}

#[test]
fn items_whose_card_cannot_be_had_are_left_for_later() {
    let f = Fixture::new(sqlite(), kms::KeyKind::Aes, 0x30, false);
    let ci = Actor::new("acme", "operator");
    let numbers = campaign::card_range("20", "23", 100).unwrap();
    let id = campaign::create(f.store(), &ci, CATEGORY, &numbers).unwrap();
    campaign::steer(f.store(), &ci, id, "start").unwrap();
    // Card 21's write was started by a worker that holds its job's lease still.
    let busy = Issuer::new(
        f.store().clone(),
        f.keys.clone(),
        IssuerConfig {
            lease: Duration::from_secs(600),
            ..IssuerConfig::default()
        },
    );
    busy.submit_claimed(
        &ci,
        &tsm::Request::Write {
            card_number: "21".into(),
            category: CATEGORY.into(),
            install_apps: false,
            perso: Vec::new(),
        },
    )
    .unwrap();
    let issuer = Issuer::new(f.store().clone(), f.keys.clone(), IssuerConfig::default());
    let worker = Worker {
        issuer: &issuer,
        owner: "w".into(),
        lease: Duration::from_secs(60),
        batch: 10,
    };
    // No card for 22 now (in use elsewhere): left, like 21 whose job is held.
    let pass = worker
        .pass_with(&mut |number| {
            Ok((number != "22")
                .then(|| Box::new(SimCard::scp03()) as Box<dyn transport::CardChannel>))
        })
        .unwrap();
    assert_eq!(
        (pass.claimed, pass.done, pass.failed, pass.deferred),
        (4, 2, 0, 2),
        "{pass:?}"
    );
    let c = f.store().campaign_counts(id).unwrap();
    assert_eq!((c.done, c.claimed, c.failed), (2, 2, 0));
    // Still this worker's until its lease ends; a worker that stops gives them back now.
    assert_eq!(worker.pass(&mut |_| unreachable!()).unwrap().claimed, 0);
    assert_eq!(f.store().release_campaign_items("someone else").unwrap(), 0);
    assert_eq!(f.store().release_campaign_items("w").unwrap(), 2);
    let c = f.store().campaign_counts(id).unwrap();
    assert_eq!((c.pending, c.claimed), (2, 0));
    // An item whose lease ran out before its turn is not started.
    let late = Worker {
        issuer: &issuer,
        owner: "late".into(),
        lease: Duration::ZERO,
        batch: 10,
    };
    let pass = late.pass(&mut |_| unreachable!("not started")).unwrap();
    assert_eq!((pass.claimed, pass.deferred), (2, 2));
    // A campaign that does not exist is not found; campaigns are listed newest first.
    assert!(matches!(
        campaign::status(f.store(), &ci, 999),
        Err(tsm::Error::Store(tsm::StoreError::NotFound(_)))
    ));
    let mine = campaign::list(f.store(), &ci, None, 10).unwrap();
    assert_eq!(mine.iter().map(|c| c.id).collect::<Vec<_>>(), vec![id]);
    assert!(
        campaign::list(f.store(), &Actor::new("bank", "x"), None, 10)
            .unwrap()
            .is_empty()
    );
    assert!(campaign::create(f.store(), &ci, CATEGORY, &["30".into(), "30".into()]).is_err());
}
