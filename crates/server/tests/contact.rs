//! Renewal at the next contact (server::contact): the card issuer's platform manages a
//! delegated SSD whose key set falls due; a terminal agent (relay::agent) connects with the
//! card in its reader, and the background task renews the key set without any request.
//! Meanwhile the reader is the task's alone (an API request for it would get 409).

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay::hub::{Hub, StaticTokens};
use server::contact::ContactConfig;
use transport::CardChannel;
use tsm::ssd::{
    CardRange, CiConfig, CiContact, CiPlatform, Clock, KeyPolicy, KeySetStore, NewPartner,
    SsdModel, SsdRequest,
};
use tsm::{Actor, Store};

const BASE: &str = "00112233445566778899AABBCCDDEEFF";
const CARD: &str = "1000000001";
const AID: &str = "A000000151BA0101";
const READER: &str = "CI desk reader 0";
const DAY_MS: i64 = 86_400_000;

/// The CI's desk: one reader; the card can be taken out and put back.
struct Desk {
    card: card::VirtualChannel,
    present: Arc<AtomicBool>,
}

impl relay::agent::Readers for Desk {
    fn list(&mut self) -> Vec<relay::protocol::ReaderReport> {
        let present = self.present.load(Ordering::SeqCst);
        vec![relay::protocol::ReaderReport {
            name: READER.into(),
            card_present: present,
            atr: present.then(|| apdu::hex(&self.card.atr())),
        }]
    }
    fn transmit(
        &mut self,
        _reader: &str,
        capdu: &[u8],
    ) -> Result<Vec<u8>, relay::protocol::RelayFault> {
        if !self.present.load(Ordering::SeqCst) {
            return Err(relay::protocol::RelayFault::CardRemoved);
        }
        self.card
            .transmit_raw(capdu)
            .map_err(|e| relay::protocol::RelayFault::Other {
                message: e.to_string(),
            })
    }
    fn reset(&mut self, _reader: &str) -> Result<Vec<u8>, relay::protocol::RelayFault> {
        self.card
            .reset()
            .map_err(|e| relay::protocol::RelayFault::Other {
                message: e.to_string(),
            })?;
        Ok(self.card.atr())
    }
}

/// A CI platform (SQLite, software key store) on a movable clock with one written card,
/// partner bank1 and a delegated SSD of bank1 on the card (key policy: 10 days, renewed
/// in the last 2).
fn ci_with_delegated_ssd(
    dir: &std::path::Path,
) -> (Arc<CiPlatform>, Store, card::VirtualChannel, Arc<AtomicI64>) {
    let common::issuer::WrittenCard {
        store,
        keys,
        issuer,
        card: sim,
    } = common::issuer::issuer_with_written_card(dir, BASE, CARD);
    let clock = Arc::new(AtomicI64::new(tsm::model::now_ms()));
    let ci = Arc::new(
        CiPlatform::new(
            issuer,
            keys.clone() as Arc<dyn KeySetStore>,
            CiConfig::default(),
        )
        .with_clock(Clock::manual(clock.clone())),
    );
    let transport = keys
        .create_transport_key("bank1-transport")
        .unwrap()
        .to_spki_der();
    store
        .add_partner(
            "admin",
            &NewPartner {
                id: "bank1".into(),
                name: "Bank 1".into(),
                certificate: vec![0x30, 0x03, 0x02, 0x01, 0x01],
                aid_prefix: apdu::parse_hex("A000000151BA01").unwrap(),
                card_ranges: vec![CardRange::new("1000000000", "1000000999").unwrap()],
                transport_key: transport,
            },
        )
        .unwrap();
    let policy = KeyPolicy::new(
        Duration::from_secs(10 * 86_400),
        Duration::from_secs(2 * 86_400),
    )
    .unwrap();
    store.set_key_policy("admin", &policy).unwrap();
    // The delegated SSD, made at the CI's desk (the CI runs the job on the card itself).
    let job = ci
        .request(
            "bank1",
            &SsdRequest {
                card_number: CARD.into(),
                aid: AID.into(),
                model: SsdModel::Delegated,
            },
        )
        .unwrap();
    let rec = ci.run(job, &mut sim.clone()).unwrap();
    assert_eq!(rec.current_key().unwrap().kvn, 0x30);
    (ci, store, sim, clock)
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_background_task_renews_a_due_ssd_when_the_card_is_presented() {
    let dir = tempfile::tempdir().unwrap();
    let (ci, store, card, clock) = ci_with_delegated_ssd(dir.path());
    let aid = apdu::parse_hex(AID).unwrap();
    let kvn = || {
        store
            .ssd(CARD, &aid)
            .unwrap()
            .unwrap()
            .current_key()
            .unwrap()
            .kvn
    };
    let rt = common::runtime();
    let hub = Hub::new(
        Arc::new(StaticTokens::new().with("desk-token-0123456789", "desk")),
        Duration::from_secs(10),
    );
    let url = common::serve_on(&rt, hub.router());
    let platform = Arc::new(CiContact {
        ci: ci.clone(),
        actor: Actor::new("issuer", "renew-at-contact"),
    });
    let task = {
        let _guard = rt.enter();
        server::contact::spawn(
            hub.clone(),
            platform,
            ContactConfig {
                scan_every: Duration::from_secs(3600),
                poll: Duration::from_millis(50),
            },
        )
    };

    // The key set falls due while the card is away from the desk.
    clock.fetch_add(9 * DAY_MS, Ordering::SeqCst);
    assert_eq!(ci.due(clock.load(Ordering::SeqCst)).unwrap().len(), 1);
    let present = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let agent = {
        let (stop, present, card) = (stop.clone(), present.clone(), card.clone());
        let cfg = relay::agent::AgentConfig {
            server: url,
            token: Some("desk-token-0123456789".into()),
            terminal: "desk".into(),
            poll: Duration::from_millis(20),
            retry: Duration::from_millis(50),
            tls: None,
        };
        std::thread::spawn(move || relay::agent::run(&cfg, &mut Desk { card, present }, &stop))
    };
    // The terminal connects with the card in its reader: renewed, no one asked.
    wait_until("the renewal at contact", Duration::from_secs(20), || {
        kvn() == 0x31
    });
    let rec = store.ssd(CARD, &aid).unwrap().unwrap();
    assert_eq!(rec.renewals.last().unwrap().cause, "expiry");
    assert!(ci.due(clock.load(Ordering::SeqCst)).unwrap().is_empty());
    ci.open_managed(CARD, AID, &mut card.clone()).unwrap();
    let entries = store.audit_entries(0, 10_000).unwrap();
    assert!(entries.iter().any(|e| e.action == "job.ssd_renew"
        && e.result == "ok"
        && e.actor == "issuer/renew-at-contact"));

    // Compromised while the card stays: nothing until the card is presented again.
    ci.mark_compromised(&Actor::new("issuer", "alice"), CARD, AID, 0x31, "HSM audit")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        kvn(),
        0x31,
        "a card that stays is looked at every scan_every"
    );
    present.store(false, Ordering::SeqCst);
    wait_until("the card out", Duration::from_secs(10), || {
        hub.terminals()
            .first()
            .is_some_and(|t| !t.readers[0].card_present)
    });
    std::thread::sleep(Duration::from_millis(200));
    present.store(true, Ordering::SeqCst);
    wait_until("the forced renewal", Duration::from_secs(20), || {
        kvn() == 0x32
    });
    let rec = store.ssd(CARD, &aid).unwrap().unwrap();
    assert_eq!(rec.renewals.last().unwrap().cause, "forced");
    assert!(store.audit_verify().unwrap().is_ok());

    task.abort();
    stop.store(true, Ordering::SeqCst);
    let _ = agent.join();
}
