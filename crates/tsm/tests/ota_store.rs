//! Over-the-air records (issue 12) on SQLite and PostgreSQL: the catalog (package ownership,
//! names, duplicates), cards' OTA identities, counters that never repeat and replays that
//! change nothing, sessions that end once, messages, all audited.

mod common;

use common::backends;
use gp::aid::Aid;
use tsm::model::{InitialKeys, Role};
use tsm::ota::{Bearer, CatalogEntry, Direction, Origin, SessionState};
use tsm::{CategorySpec, CounterCheck, StoreError};

fn aid(hex: &str) -> Aid {
    Aid::new(&apdu::parse_hex(hex).unwrap()).unwrap()
}

fn entry(tenant: &str, package: &Aid, app: &str) -> CatalogEntry {
    CatalogEntry {
        tenant: tenant.into(),
        app: app.into(),
        title: "Wallet".into(),
        package: *package,
        module: aid("A000000062010101"),
        instance: aid("A00000006201010101"),
        sd: aid("A000000151535041FF01"),
        privileges: vec![0x00],
        params: Vec::new(),
        created_ms: 0,
    }
}

#[test]
fn catalog_cards_counters_sessions() {
    for b in backends() {
        let s = b.store();
        s.create_tenant("admin", "acme", "ACME Mobile", Role::CardIssuer)
            .unwrap();
        s.create_tenant("admin", "other", "Other", Role::CardIssuer)
            .unwrap();
        s.create_category(
            "admin",
            &CategorySpec {
                id: "acme/gold".into(),
                tenant: "acme".into(),
                description: "gold".into(),
                initial_keys: InitialKeys::GpTestKey,
                initial_kvn: 0x30,
                perso: Vec::new(),
            },
        )
        .unwrap();
        let pkg = s
            .add_package(
                "acme/op",
                "acme",
                "wallet",
                &gp::cap::testing::synthetic_cap(2000),
            )
            .unwrap();

        // The catalog: the tenant's own packages only, names checked, no duplicates.
        let e = s
            .add_ota_catalog_entry("acme/op", &entry("acme", &pkg.aid, "wallet"))
            .unwrap();
        assert!(e.created_ms > 0);
        assert!(
            matches!(
                s.add_ota_catalog_entry("acme/op", &entry("acme", &pkg.aid, "wallet")),
                Err(StoreError::Duplicate(_))
            ),
            "{}",
            b.name
        );
        assert!(matches!(
            s.add_ota_catalog_entry("other/op", &entry("other", &pkg.aid, "wallet")),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            s.add_ota_catalog_entry("acme/op", &entry("acme", &pkg.aid, "a b")),
            Err(StoreError::Invalid { .. })
        ));
        assert_eq!(s.ota_catalog("acme").unwrap(), vec![e.clone()]);
        assert_eq!(s.ota_catalog_entry("acme", "wallet").unwrap(), Some(e));
        assert!(s.ota_catalog("other").unwrap().is_empty());

        // A card's identity on the air.
        s.register_card("acme/op", "4111111111111111", "acme/gold")
            .unwrap();
        assert!(matches!(
            s.enrol_ota_card("acme/op", "999", "8988211000000000001", "+4917012345", 1),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            s.enrol_ota_card("acme/op", "4111111111111111", "12", "+4917012345", 1),
            Err(StoreError::Invalid { .. })
        ));
        let card = s
            .enrol_ota_card(
                "acme/op",
                "4111111111111111",
                "8988211000000000001",
                "+4917012345",
                1,
            )
            .unwrap();
        assert_eq!(card.msisdn, "4917012345");
        assert_eq!(
            s.ota_card_by_iccid("8988211000000000001").unwrap(),
            Some(card.clone())
        );
        assert_eq!(s.ota_cards_by_msisdn("+4917012345").unwrap(), vec![card]);

        // Counters out never repeat; counters in must grow, a replay changes nothing.
        assert_eq!(s.next_ota_counter("4111111111111111").unwrap(), 1);
        assert_eq!(s.next_ota_counter("4111111111111111").unwrap(), 2);
        assert_eq!(
            s.accept_card_counter("4111111111111111", 5).unwrap(),
            CounterCheck::Accepted
        );
        assert_eq!(
            s.accept_card_counter("4111111111111111", 5).unwrap(),
            CounterCheck::Replayed { last: 5 }
        );
        assert_eq!(
            s.accept_card_counter("4111111111111111", 3).unwrap(),
            CounterCheck::Replayed { last: 5 }
        );
        let c = s.ota_card("4111111111111111").unwrap().unwrap();
        assert_eq!((c.counter_out, c.counter_in), (2, 5));
        assert!(s.accept_card_counter("4111111111111111", 1 << 40).is_err());

        // Sessions end once; messages are kept in order.
        let sess = s
            .open_ota_session(
                "card",
                "acme",
                "4111111111111111",
                "wallet",
                Bearer::Sms,
                Origin::Card,
            )
            .unwrap();
        assert_eq!(sess.state, SessionState::Pending);
        s.log_ota_message(
            Some(sess.id),
            "4111111111111111",
            Direction::Mo,
            "request",
            Some(5),
            &[1, 2],
            "ok",
        )
        .unwrap();
        s.log_ota_message(
            Some(sess.id),
            "4111111111111111",
            Direction::Mt,
            "script",
            Some(3),
            &[3],
            "sent",
        )
        .unwrap();
        let run = s
            .update_ota_session(sess.id, SessionState::Running, 1, 3, "")
            .unwrap();
        assert_eq!((run.step, run.steps), (1, 3));
        s.update_ota_session(sess.id, SessionState::Done, 3, 3, "installed")
            .unwrap();
        assert!(matches!(
            s.update_ota_session(sess.id, SessionState::Running, 3, 3, ""),
            Err(StoreError::Invalid { .. })
        ));
        let msgs = s.ota_messages(sess.id).unwrap();
        assert_eq!(
            msgs.iter()
                .map(|m| (m.direction, m.kind.as_str(), m.counter))
                .collect::<Vec<_>>(),
            vec![
                (Direction::Mo, "request", Some(5)),
                (Direction::Mt, "script", Some(3))
            ]
        );
        assert_eq!(
            s.ota_sessions("4111111111111111", 10).unwrap()[0].state,
            SessionState::Done
        );

        // Audited, and the chain verifies.
        let actions: Vec<String> = s
            .audit_entries(0, 1000)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        for a in [
            "ota.catalog.add",
            "ota.card.enrol",
            "ota.session.open",
            "ota.session.done",
        ] {
            assert!(actions.iter().any(|x| x == a), "{a} audited ({})", b.name);
        }
        assert!(s.audit_verify().unwrap().first_bad.is_none(), "{}", b.name);
        s.remove_ota_catalog_entry("acme/op", "acme", "wallet")
            .unwrap();
        assert!(s.ota_catalog("acme").unwrap().is_empty());
    }
}
