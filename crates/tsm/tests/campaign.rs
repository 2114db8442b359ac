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
