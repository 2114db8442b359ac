//! The operators' OTA decisions (`tsm::ota::admin`), shared by `cardwright ota` and the
//! HTTP API: catalog defaults, enrolment and push only for the card's own tenant (refusals
//! audited), unknown ICCIDs and applications refused, a push opening a `pending` session.

mod common;

use common::backends;
use tsm::model::{InitialKeys, Role};
use tsm::ota::admin::{self, CatalogRequest};
use tsm::ota::{Bearer, Direction, Origin, SessionState};
use tsm::{Actor, CategorySpec, Error, StoreError};

const ICCID: &str = "8988211000000000001";
const CARD: &str = "4111111111111111";

#[test]
fn catalog_enrol_push_and_history_for_the_cards_tenant_only() {
    for b in backends() {
        let s = b.store();
        for t in ["acme", "other"] {
            s.create_tenant("admin", t, t, Role::CardIssuer).unwrap();
            s.create_category(
                "admin",
                &CategorySpec {
                    id: format!("{t}/gold"),
                    tenant: t.into(),
                    description: String::new(),
                    initial_keys: InitialKeys::GpTestKey,
                    initial_kvn: 0x30,
                    perso: Vec::new(),
                },
            )
            .unwrap();
        }
        s.add_package(
            "acme/op",
            "acme",
            "wallet",
            &gp::cap::testing::synthetic_cap(2000),
        )
        .unwrap();
        s.register_card("acme/op", CARD, "acme/gold").unwrap();
        let acme = Actor::new("acme", "op");
        let other = Actor::new("other", "op");

        // The catalog's defaults: the CAP's first applet, instance = module, SD = package
        // ‖ FF01, privileges 00, title = name.
        let req = CatalogRequest {
            app: "wallet".into(),
            package: "A00000055501".into(),
            ..Default::default()
        };
        let e = admin::add_to_catalog(s, &acme, &req).unwrap();
        assert_eq!(e.module.to_string(), "A0000005550101", "{}", b.name);
        assert_eq!(e.instance, e.module);
        assert_eq!(e.sd.to_string(), "A00000055501FF01");
        assert_eq!(
            (e.privileges.clone(), e.title.as_str()),
            (vec![0], "wallet")
        );
        // Another tenant's package is not found; bad values are invalid.
        assert!(matches!(
            admin::add_to_catalog(s, &other, &req),
            Err(Error::Store(StoreError::NotFound(_)))
        ));
        for bad in [
            CatalogRequest {
                app: "a b".into(),
                ..req.clone()
            },
            CatalogRequest {
                app: "x".into(),
                privileges: Some("0000".into()),
                ..req.clone()
            },
            CatalogRequest {
                app: "y".into(),
                params: Some("00".repeat(128)),
                ..req.clone()
            },
        ] {
            let r = admin::add_to_catalog(s, &acme, &bad);
            assert!(
                matches!(
                    r,
                    Err(Error::Invalid(_) | Error::Store(StoreError::Invalid { .. }))
                ),
                "{bad:?}: {r:?}"
            );
        }

        // Enrolment: the card's tenant only.
        assert!(matches!(
            admin::enrol_card(s, &other, CARD, ICCID, "+4917012345", 1),
            Err(Error::Forbidden { .. })
        ));
        assert!(matches!(
            admin::enrol_card(s, &acme, "999", ICCID, "+4917012345", 1),
            Err(Error::UnknownCard)
        ));
        admin::enrol_card(s, &acme, CARD, ICCID, "+4917012345", 1).unwrap();

        // Push: refused for another tenant, an unknown ICCID, an unknown application.
        assert!(matches!(
            admin::open_push_session(s, &other, ICCID, "wallet", Bearer::Sms),
            Err(Error::Forbidden { .. })
        ));
        assert!(matches!(
            admin::open_push_session(s, &acme, "8988211000000000002", "wallet", Bearer::Sms),
            Err(Error::Store(StoreError::NotFound(_)))
        ));
        assert!(matches!(
            admin::open_push_session(s, &acme, "12", "wallet", Bearer::Sms),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            admin::open_push_session(s, &acme, ICCID, "nope", Bearer::Sms),
            Err(Error::Store(StoreError::NotFound(_)))
        ));
        assert!(s.ota_sessions(CARD, 10).unwrap().is_empty(), "{}", b.name);
        let session = admin::open_push_session(s, &acme, ICCID, "wallet", Bearer::Https).unwrap();
        assert_eq!(
            (session.state, session.origin, session.bearer),
            (SessionState::Pending, Origin::Server, Bearer::Https)
        );
        assert_eq!(s.ota_open_sessions().unwrap(), vec![session.clone()]);

        // History and one session: the card's tenant only.
        s.log_ota_message(
            Some(session.id),
            CARD,
            Direction::Mt,
            "script",
            Some(1),
            &[1, 2, 3],
            "sent",
        )
        .unwrap();
        let h = admin::card_history(s, &acme, ICCID, 10).unwrap();
        assert_eq!(h.card.iccid, ICCID);
        assert_eq!(h.sessions.len(), 1);
        assert_eq!(h.sessions[0].messages.len(), 1);
        assert!(matches!(
            admin::card_history(s, &other, ICCID, 10),
            Err(Error::Forbidden { .. })
        ));
        assert_eq!(
            admin::session_log(s, &acme, session.id).unwrap().session,
            session
        );
        assert!(matches!(
            admin::session_log(s, &other, session.id),
            Err(Error::Forbidden { .. })
        ));
        assert!(matches!(
            admin::session_log(s, &acme, session.id + 1),
            Err(Error::Store(StoreError::NotFound(_)))
        ));

        // Refusals are audited under the acting actor.
        let refused: Vec<(String, String)> = s
            .audit_entries(0, 1000)
            .unwrap()
            .into_iter()
            .filter(|e| e.result == "forbidden")
            .map(|e| (e.actor, e.action))
            .collect();
        for action in ["ota.enrol", "ota.push", "ota.read"] {
            assert!(
                refused.contains(&("other/op".to_string(), action.to_string())),
                "{action}: {refused:?}"
            );
        }
    }
}
