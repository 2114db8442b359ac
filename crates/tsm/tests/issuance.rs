//! The issuance workflows against in-process virtual cards, on every backend.

mod common;

use common::*;
use gp::aid::Aid;
use gp::commands::DataObject;
use gpclient::ops;
use kms::KeyKind;
use tsm::model::{CardState, JobState, StepState};
use tsm::{kvn_for_version, Actor, Error, Request};

const NUMBER: &str = "8986001234567890123";

fn bcd(number: &str) -> Vec<u8> {
    kms::kdd_for_card_number(number).unwrap().to_vec()
}

/// Applications, load files, CIN and KDD as the card reports them.
type View = (Vec<Aid>, Vec<Aid>, Option<Vec<u8>>, Option<Vec<u8>>);

/// What the card itself says, read through an independent channel with `spec`.
fn card_view(card: &SimCard, spec: gpclient::KeySpec) -> View {
    let mut c = open(card, spec).expect("independent channel opens");
    let reg = ops::registry(&mut c).unwrap();
    let cin = ops::get_data(&mut c, DataObject::Cin).unwrap();
    let kdd = ops::get_data(&mut c, DataObject::KeyDiversificationData).unwrap();
    (
        reg.applications
            .iter()
            .filter(|e| e.aid != gp::aid::ISD_AID)
            .map(|e| e.aid)
            .collect(),
        reg.load_files.iter().map(|e| e.aid).collect(),
        cin,
        kdd,
    )
}

fn write_then_check(kind: KeyKind, scp02: bool) {
    for ts in backends() {
        let name = ts.name;
        let initial_kvn = if scp02 { 0x20 } else { 0x30 };
        let f = Fixture::new(ts, kind, initial_kvn, true);
        let mut card = if scp02 {
            SimCard::scp02()
        } else {
            SimCard::scp03()
        };
        let out = f.issuer.write(&f.ci, NUMBER, CATEGORY, &mut card).unwrap();
        assert_eq!(out.job.state, JobState::Done, "{name}");
        assert_eq!(out.card.state, CardState::Written);
        assert_eq!(out.card.key_version, Some(1));
        let kvn = kvn_for_version(1, initial_kvn);
        assert_eq!(out.card.kvn, Some(kvn));
        assert_eq!(out.card.kdd.as_deref(), Some(bcd(NUMBER).as_slice()));
        assert_eq!(out.card.factory_kdd.as_deref(), Some(&[0u8; 10][..]));
        // A host that knows only the base key and the card's KDD opens the card with the
        // category's diversification (EMV CPG for 3DES, KDF3 for AES).
        let (apps, files, cin, kdd) =
            card_view(&card, base_spec(BASE_V1, f.diversification(), kvn));
        assert_eq!(cin, Some(bcd(NUMBER)), "{name}: CIN");
        assert_eq!(kdd, Some(bcd(NUMBER)), "{name}: KDD");
        assert_eq!(apps, vec![Aid::new(&STORAGE_INSTANCE).unwrap()]);
        assert!(files.contains(&Aid::new(&STORAGE_PKG).unwrap()));
        // The initial keys are gone.
        assert!(matches!(
            open(&card, test_key_spec(0)),
            Err(gpclient::ClientError::WrongKeys { .. } | gpclient::ClientError::Card { .. })
        ));
        // Database agrees.
        let db_apps = f.store().card_apps(NUMBER).unwrap();
        assert_eq!(db_apps.len(), 1);
        assert_eq!(db_apps[0].instance, Aid::new(&STORAGE_INSTANCE).unwrap());
        let steps = f.store().job_steps(out.job.id).unwrap();
        assert!(steps
            .iter()
            .all(|s| s.state == StepState::Done && s.attempts == 1));
        assert!(f.store().audit_verify().unwrap().is_ok());
        let audit = f.store().audit_for_card(NUMBER).unwrap();
        let actions: Vec<(&str, &str)> = audit
            .iter()
            .map(|e| (e.action.as_str(), e.result.as_str()))
            .collect();
        assert_eq!(actions, [("job.write", "submitted"), ("job.write", "ok")]);
        // The final entry lists what was done to the card, KCVs of the new keys included.
        let last: serde_json::Value = serde_json::from_str(&audit[1].detail).unwrap();
        let steps: Vec<&str> = last["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert!(
            steps.contains(&"put_key") && steps.contains(&"set_kdd"),
            "{steps:?}"
        );
        let put = &last["steps"][2]["detail"];
        assert_eq!(put["kcvs"].as_array().unwrap().len(), 3, "{put}");
    }
}

/// Creates category `id` of tenant acme with the GP test key as initial keys (KVN 30).
fn gp_test_category(f: &Fixture, id: &str) {
    f.store()
        .create_category(
            "admin",
            &tsm::CategorySpec {
                id: id.into(),
                tenant: "acme".into(),
                description: "".into(),
                initial_keys: tsm::model::InitialKeys::GpTestKey,
                initial_kvn: 0x30,
                perso: vec![],
            },
        )
        .unwrap();
}

#[test]
fn write_scp03_card_with_aes_base_key_kdf3() {
    write_then_check(KeyKind::Aes, false);
}

#[test]
fn write_scp02_card_with_3des_base_key_emv() {
    write_then_check(KeyKind::Des3, true);
}

#[test]
fn rewrite_replaces_the_keys() {
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, false);
        let mut card = SimCard::scp03();
        f.issuer.write(&f.ci, NUMBER, CATEGORY, &mut card).unwrap();
        // Nothing to rewrite to yet.
        assert!(matches!(
            f.issuer.rewrite(&f.ci, NUMBER, CATEGORY, &mut card),
            Err(Error::Invalid(_))
        ));
        let v2 = f.rotate();
        let out = f
            .issuer
            .rewrite(&f.ci, NUMBER, CATEGORY, &mut card)
            .unwrap();
        assert_eq!(out.card.key_version, Some(v2), "{name}");
        assert_eq!(out.card.state, CardState::Written);
        let kdf = f.diversification();
        let old = base_spec(BASE_V1, kdf, 0);
        assert!(
            matches!(
                open(&card, old),
                Err(gpclient::ClientError::WrongKeys { .. })
            ),
            "{name}: old keys still open"
        );
        open(&card, base_spec(BASE_V2, kdf, kvn_for_version(v2, 0x30))).expect("new keys open");
        // The personalisation is untouched.
        let (_, _, cin, _) = card_view(&card, base_spec(BASE_V2, kdf, 0));
        assert_eq!(cin, Some(bcd(NUMBER)));
        assert!(f.store().audit_verify().unwrap().is_ok());
    }
}

#[test]
fn clear_returns_the_card_to_blank() {
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, true);
        let mut card = SimCard::scp03();
        f.issuer.write(&f.ci, NUMBER, CATEGORY, &mut card).unwrap();
        // An application provider adds its own application.
        let bank = Actor::new("bank", "ops");
        f.issuer
            .execute(
                &bank,
                &Request::LoadApp {
                    card_number: NUMBER.into(),
                    app: empty_app(),
                },
                &mut card,
            )
            .unwrap();
        assert_eq!(f.store().card_apps(NUMBER).unwrap().len(), 2);
        let out = f.issuer.clear(&f.ci, NUMBER, CATEGORY, &mut card).unwrap();
        assert_eq!(out.card.state, CardState::Blank, "{name}");
        assert_eq!(out.card.key_version, None);
        assert_eq!(out.card.kvn, Some(0x30));
        assert!(f.store().card_apps(NUMBER).unwrap().is_empty());
        // The initial keys open again, with the initial KVN; nothing of ours remains.
        let (apps, files, cin, kdd) = card_view(&card, test_key_spec(0x30));
        assert!(apps.is_empty(), "{name}: {apps:?}");
        assert!(
            !files.contains(&Aid::new(&STORAGE_PKG).unwrap())
                && !files.contains(&Aid::new(&EMPTY_PKG).unwrap()),
            "{files:?}"
        );
        assert_eq!(cin, Some(vec![]), "{name}: CIN erased");
        assert_eq!(kdd, Some(vec![0; 10]), "{name}: factory KDD back");
        let mut c = open(&card, test_key_spec(0x30)).unwrap();
        assert_eq!(
            ops::get_data(&mut c, DataObject::Iin).unwrap(),
            Some(vec![])
        );
        assert!(matches!(
            open(&card, base_spec(BASE_V1, f.diversification(), 0)),
            Err(gpclient::ClientError::WrongKeys { .. })
        ));
        // Clearing a blank card does nothing (and needs no card).
        let mut no_card = Faulty::new(SimCard::scp03(), Cut::Before(0));
        let again = f
            .issuer
            .clear(&f.ci, NUMBER, CATEGORY, &mut no_card)
            .unwrap();
        assert_eq!(again.apdus, 0);
        assert_eq!(again.card.state, CardState::Blank);
        // And the card can be written again.
        f.issuer.write(&f.ci, NUMBER, CATEGORY, &mut card).unwrap();
        assert!(f.store().audit_verify().unwrap().is_ok());
    }
}

#[test]
fn application_management() {
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, false);
        let mut card = SimCard::scp03();
        f.issuer.write(&f.ci, NUMBER, CATEGORY, &mut card).unwrap();
        let load = Request::LoadApp {
            card_number: NUMBER.into(),
            app: storage_app(),
        };
        f.issuer.execute(&f.ci, &load, &mut card).unwrap();
        // The applet runs and holds its personalisation (SELECT + GET DATA DF01).
        {
            let mut c = card.card();
            let r = c.transmit(&apdu::parse_hex("00A4040007F0435744530101").unwrap());
            assert_eq!(&r[r.len() - 2..], &[0x90, 0x00], "{name}");
        }
        assert!(matches!(
            f.issuer.execute(&f.ci, &load, &mut card),
            Err(Error::Invalid(_))
        ));
        let del = Request::DeleteApp {
            card_number: NUMBER.into(),
            instance: Aid::new(&STORAGE_INSTANCE).unwrap(),
        };
        f.issuer.execute(&f.ci, &del, &mut card).unwrap();
        let (apps, files, _, _) = card_view(&card, base_spec(BASE_V1, f.diversification(), 0));
        assert!(apps.is_empty() && !files.contains(&Aid::new(&STORAGE_PKG).unwrap()));
        assert!(f.store().card_apps(NUMBER).unwrap().is_empty());
        // Only the owner of a package (or the card issuer) may install it.
        f.store()
            .create_tenant(
                "admin",
                "other",
                "Other AP",
                tsm::model::Role::ApplicationProvider,
            )
            .unwrap();
        let other = Actor::new("other", "x");
        assert!(matches!(
            f.issuer.execute(&other, &load, &mut card),
            Err(Error::Forbidden { .. })
        ));
        // Another tenant learns nothing about the card's applications.
        assert!(matches!(
            f.issuer.execute(&other, &del, &mut card),
            Err(Error::Forbidden { .. })
        ));
    }
}

#[test]
fn refusals_change_nothing() {
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, false);
        let mut card = SimCard::scp03();
        let audit_before = f.store().audit_entries(0, 10_000).unwrap().len();
        // Unknown card number.
        assert!(matches!(
            f.issuer.rewrite(&f.ci, "123", CATEGORY, &mut card),
            Err(Error::UnknownCard)
        ));
        assert!(matches!(
            f.issuer.clear(&f.ci, "123", CATEGORY, &mut card),
            Err(Error::UnknownCard)
        ));
        // Bad card number, unknown category, wrong tenant.
        assert!(matches!(
            f.issuer.write(&f.ci, "12-3", CATEGORY, &mut card),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            f.issuer.write(&f.ci, NUMBER, "acme/none", &mut card),
            Err(Error::UnknownCategory(_))
        ));
        assert!(matches!(
            f.issuer
                .write(&Actor::new("bank", "x"), NUMBER, CATEGORY, &mut card),
            Err(Error::Forbidden { .. })
        ));
        // Only the refusal of another tenant is recorded, with the actor who tried.
        let audit = f.store().audit_entries(0, 10_000).unwrap();
        assert_eq!(audit.len(), audit_before + 1, "{name}");
        let last = audit.last().unwrap();
        assert_eq!(
            (
                last.actor.as_str(),
                last.action.as_str(),
                last.result.as_str()
            ),
            ("bank/x", "job.write", "forbidden")
        );
        assert!(f.store().card(NUMBER).unwrap().is_none(), "{name}");

        f.issuer.write(&f.ci, NUMBER, CATEGORY, &mut card).unwrap();
        // Writing it again, or another category.
        assert!(matches!(
            f.issuer.write(&f.ci, NUMBER, CATEGORY, &mut card),
            Err(Error::WrongState { .. })
        ));
        gp_test_category(&f, "acme/silver");
        assert!(matches!(
            f.issuer.rewrite(&f.ci, NUMBER, "acme/silver", &mut card),
            Err(Error::WrongCategory { .. })
        ));

        // Wrong card: writing another number onto the card already written as NUMBER.
        let snapshot = |card: &SimCard| format!("{:?}", card.card());
        let before = snapshot(&card);
        let e = f
            .issuer
            .write(&f.ci, "4000", CATEGORY, &mut card)
            .unwrap_err();
        assert!(matches!(e, Error::WrongCard(_)), "{name}: {e}");
        assert_eq!(snapshot(&card), before);
        let c4000 = f.store().card("4000").unwrap().unwrap();
        assert_eq!(c4000.state, CardState::Blank);
        assert_eq!(c4000.key_version, None);
        let job = f.store().jobs_of_card("4000").unwrap().pop().unwrap();
        assert_eq!(job.state, JobState::Failed);

        // Wrong card the other way: rewrite NUMBER with a blank card in the reader.
        f.rotate();
        let mut blank = SimCard::scp03();
        let e = f
            .issuer
            .rewrite(&f.ci, NUMBER, CATEGORY, &mut blank)
            .unwrap_err();
        assert!(matches!(e, Error::WrongCard(_)), "{name}: {e}");
        assert_eq!(
            f.store().card(NUMBER).unwrap().unwrap().key_version,
            Some(1)
        );

        // Keys that do not match: someone changed the card's keys behind the platform's back.
        {
            let mut c = open(&card, base_spec(BASE_V1, f.diversification(), 0)).unwrap();
            let other = scp::StaticKeys::same(scp::Key::aes(&[0x11; 16]).unwrap());
            ops::put_key_set(&mut c, &other, 0x01, Some(0x01)).unwrap();
        }
        let e = f
            .issuer
            .rewrite(&f.ci, NUMBER, CATEGORY, &mut card)
            .unwrap_err();
        assert!(matches!(e, Error::KeysDoNotMatch(_)), "{name}: {e}");
        let c = f.store().card(NUMBER).unwrap().unwrap();
        assert_eq!(c.key_version, Some(1));
        assert_eq!(c.state, CardState::Written, "nothing was changed");
        // The card's failure counter was not spent: the odd keys still open it.
        open(
            &card,
            gpclient::KeySpec::same(&[0x11; 16], scp::Diversification::None, 1),
        )
        .unwrap();
        assert!(f.store().audit_verify().unwrap().is_ok());
    }
}

/// A base key version whose key store key is not the registered one (another KCV) is
/// refused before any authentication with derived keys: the card keeps its initial keys and
/// the job fails with the two KCVs; a good version of another category still derives (the
/// check is cached per category and version, never across them).
#[test]
fn a_key_store_key_that_is_not_the_registered_one_is_refused() {
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, false);
        gp_test_category(&f, "acme/bad");
        f.store()
            .register_key_version(
                "admin",
                "acme/bad",
                1,
                CATEGORY,
                KeyKind::Aes,
                [1, 2, 3],
                true,
            )
            .unwrap();
        let mut card = SimCard::scp03();
        let e = f
            .issuer
            .write(&f.ci, NUMBER, "acme/bad", &mut card)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("is not the registered one (KCV 010203)"),
            "{name}: {e}"
        );
        // The card still opens with the initial keys: nothing was put.
        open(&card, test_key_spec(0x30)).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The good registration of the fixture's category still works, on another card.
        let mut other = SimCard::scp03();
        f.issuer
            .write(&f.ci, "4712", CATEGORY, &mut other)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn busy_card_and_finished_jobs() {
    let f = Fixture::new(sqlite(), KeyKind::Aes, 0x30, false);
    let mut card = SimCard::scp03();
    // The card is pulled out at once: the job stays pending and blocks new ones.
    let mut gone = Faulty::new(card.clone(), Cut::Before(0));
    let e = f
        .issuer
        .write(&f.ci, NUMBER, CATEGORY, &mut gone)
        .unwrap_err();
    assert!(e.is_interruption(), "{e}");
    let job = f.store().open_job_for_card(NUMBER).unwrap().unwrap();
    assert_eq!(job.state, JobState::Pending);
    assert!(job.error.as_deref().unwrap_or("").contains("removed"));
    assert!(matches!(
        f.issuer.write(&f.ci, NUMBER, CATEGORY, &mut card),
        Err(Error::CardBusy(id)) if id == job.id
    ));
    let out = f.issuer.resume(&f.ci, NUMBER, &mut card).unwrap();
    assert_eq!(out.job.id, job.id);
    assert_eq!(out.job.attempts, 2);
    assert!(matches!(
        f.issuer.run(&f.ci, job.id, &mut card),
        Err(Error::JobFinished { .. })
    ));
    assert!(matches!(
        f.issuer.run(&f.ci, 999, &mut card),
        Err(Error::UnknownJob(999))
    ));
}

#[test]
fn leases_keep_two_workers_apart() {
    let ts = sqlite();
    let f = Fixture::new(ts, KeyKind::Aes, 0x30, false);
    let long = tsm::Issuer::new(
        f.store().clone(),
        f.keys.clone() as std::sync::Arc<dyn kms::KeyStore>,
        tsm::IssuerConfig::default(),
    );
    let mut card = SimCard::scp03();
    // A worker with a long lease crashes after the first APDU.
    let id = long
        .submit(
            &f.ci,
            &Request::Write {
                card_number: NUMBER.into(),
                category: CATEGORY.into(),
                install_apps: false,
                perso: Vec::new(),
            },
        )
        .unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut crash = Faulty::new(card.clone(), Cut::CrashAfter(0));
        long.run(&f.ci, id, &mut crash)
    }));
    assert!(r.is_err());
    assert_eq!(f.store().job(id).unwrap().unwrap().state, JobState::Running);
    // Nobody else may take it over while the lease runs; the refusal says who holds the
    // lease and when it expires.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let held = match long.resume(&f.ci, NUMBER, &mut card) {
        Err(Error::JobLeased(held)) => held,
        other => panic!("{other:?}"),
    };
    assert_eq!(held.job, id);
    let until = held.until_ms.expect("the expiry is known");
    assert!(
        until > before + 250_000 && until <= before + 300_000,
        "{until}"
    );
    let holder = held.holder.clone().expect("the holder is known");
    assert!(
        holder.contains(&format!("pid {}", std::process::id())),
        "{holder}"
    );
    let text = Error::JobLeased(held).to_string();
    assert!(text.contains("lease not expired"), "{text}");
    assert!(text.contains(&holder), "{text}");
    assert!(text.contains(" UTC (4 min "), "{text}");
    assert!(text.contains("take it over"), "{text}");
    // The default stays the lease check, also through resume_with.
    assert!(matches!(
        long.resume_with(&f.ci, NUMBER, &tsm::ResumeOptions::default(), &mut card),
        Err(Error::JobLeased(_))
    ));
    assert_eq!(f.store().job(id).unwrap().unwrap().state, JobState::Running);

    // An operator who knows the worker is dead takes the job over: it finishes, and the
    // audit log says who took it over from whom.
    let operator = tsm::Actor::new(&f.ci.tenant, "night-operator");
    let out = long
        .resume_with(
            &operator,
            NUMBER,
            &tsm::ResumeOptions { take_over: true },
            &mut card,
        )
        .unwrap();
    assert_eq!(out.job.state, JobState::Done);
    let audit = f.store().audit_for_card(NUMBER).unwrap();
    let taken: Vec<_> = audit.iter().filter(|e| e.result == "taken-over").collect();
    assert_eq!(taken.len(), 1, "{audit:#?}");
    assert_eq!(taken[0].actor, operator.name());
    let detail: serde_json::Value = serde_json::from_str(&taken[0].detail).unwrap();
    assert_eq!(detail["job"], id);
    assert_eq!(detail["previous_holder"], holder.as_str());
    assert_eq!(detail["lease_until_ms"], until);
    assert!(f.store().audit_verify().unwrap().is_ok());
}

#[test]
fn take_over_of_a_pending_job_is_a_plain_resume() {
    let ts = sqlite();
    let f = Fixture::new(ts, KeyKind::Aes, 0x30, false);
    let mut card = SimCard::scp03();
    f.issuer
        .submit(
            &f.ci,
            &Request::Write {
                card_number: NUMBER.into(),
                category: CATEGORY.into(),
                install_apps: false,
                perso: Vec::new(),
            },
        )
        .unwrap();
    let out = f
        .issuer
        .resume_with(
            &f.ci,
            NUMBER,
            &tsm::ResumeOptions { take_over: true },
            &mut card,
        )
        .unwrap();
    assert_eq!(out.job.state, JobState::Done);
    // Nothing was taken over, so nothing is audited as such.
    assert!(f
        .store()
        .audit_for_card(NUMBER)
        .unwrap()
        .iter()
        .all(|e| e.result != "taken-over"));
}

#[test]
fn transport_keys_from_the_key_store() {
    // Blank cards come with transport keys: a base key diversified with the card's factory
    // KDD (what the manufacturer put in the card and what INITIALIZE UPDATE reports).
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, false);
        let transport = import_key(
            f.keys.as_ref(),
            "acme/transport",
            KeyKind::Aes,
            &apdu::parse_hex("0F0E0D0C0B0A09080706050403020100").unwrap(),
        );
        f.store()
            .create_category(
                "admin",
                &tsm::CategorySpec {
                    id: "acme/transit".into(),
                    tenant: "acme".into(),
                    description: "transport keys".into(),
                    initial_keys: tsm::model::InitialKeys::Kms {
                        category: "acme/transport".into(),
                        version: transport.version,
                    },
                    initial_kvn: 0x01,
                    perso: vec![],
                },
            )
            .unwrap();
        let info = import_key(
            f.keys.as_ref(),
            "acme/transit",
            KeyKind::Aes,
            &apdu::parse_hex(BASE_V1).unwrap(),
        );
        f.store()
            .register_key_version(
                "admin",
                "acme/transit",
                1,
                "acme/transit",
                KeyKind::Aes,
                info.kcv,
                true,
            )
            .unwrap();
        let factory_kdd = [0x47, 0x90, 0x51, 0x67, 0, 0, 0, 0, 0x12, 0x34];
        let transport_keys =
            kms::KeyStore::derive_for_kdd(f.keys.as_ref(), "acme/transport", 1, &factory_kdd)
                .unwrap();
        let mut card = SimCard::with_config(card::CardConfig {
            keys: transport_keys.clone(),
            key_version: 0x01,
            kdd: factory_kdd,
            ..card::CardConfig::default()
        });
        let out = f
            .issuer
            .write(&f.ci, NUMBER, "acme/transit", &mut card)
            .unwrap();
        assert_eq!(
            out.card.factory_kdd.as_deref(),
            Some(&factory_kdd[..]),
            "{name}"
        );
        // KVN 01 is the initial one in this category, so version 1 maps to KVN 02.
        assert_eq!(out.card.kvn, Some(0x02));
        open(&card, base_spec(BASE_V1, scp::Diversification::Kdf3, 0x02)).unwrap();
        let out = f
            .issuer
            .clear(&f.ci, NUMBER, "acme/transit", &mut card)
            .unwrap();
        assert_eq!(out.card.state, CardState::Blank);
        // The transport keys and the factory KDD are back.
        let spec = gpclient::KeySpec {
            enc: zeroize::Zeroizing::new(transport_keys.enc.expose().to_vec()),
            mac: zeroize::Zeroizing::new(transport_keys.mac.expose().to_vec()),
            dek: zeroize::Zeroizing::new(transport_keys.dek.expose().to_vec()),
            kdf: scp::Diversification::None,
            key_version: 0x01,
        };
        let mut c = open(&card, spec).unwrap();
        assert_eq!(
            ops::get_data(&mut c, DataObject::KeyDiversificationData).unwrap(),
            Some(factory_kdd.to_vec())
        );
    }
}

/// What a write's check reads (the card, its open job, the category, its key version and
/// its applications): with two applications both are installed, in the category's order;
/// a second write of the card is refused as written; an open job of the card is found.
#[test]
fn a_write_installs_every_application_of_its_category_in_order() {
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, true);
        let mut second = storage_app();
        second.instance = Aid::new(&[0xF0, 0x43, 0x57, 0x44, 0x53, 0x01, 0x02]).unwrap();
        f.store()
            .add_category_app("admin", CATEGORY, &second)
            .unwrap();
        let mut card = SimCard::scp03();
        let out = f.issuer.write(&f.ci, NUMBER, CATEGORY, &mut card).unwrap();
        let install: Vec<String> = out.job.params["install"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["instance"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(install, ["F0435744530101", "F0435744530102"], "{name}");
        let apps: Vec<Aid> = f
            .store()
            .card_apps(NUMBER)
            .unwrap()
            .into_iter()
            .map(|a| a.instance)
            .collect();
        assert_eq!(apps, [storage_app().instance, second.instance], "{name}");
        assert!(matches!(
            f.issuer.write(&f.ci, NUMBER, CATEGORY, &mut card),
            Err(Error::WrongState { .. })
        ));
        // A card with an open job: the write is refused before the card is touched.
        let other = "5000000001";
        let id = f.issuer.submit(&f.ci, &write_req(other)).unwrap();
        let e = f
            .issuer
            .write(&f.ci, other, CATEGORY, &mut SimCard::scp03())
            .unwrap_err();
        assert!(matches!(e, Error::CardBusy(j) if j == id), "{name}: {e}");
    }
}

#[test]
fn a_refusal_half_way_leaves_a_partial_card_that_clear_recovers() {
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, false);
        // An application whose module is not in its package: the card refuses to install it.
        let mut bad = storage_app();
        bad.module = Aid::new(&[0xF0, 0x43, 0x57, 0x44, 0x53, 0x09]).unwrap();
        f.store().add_category_app("admin", CATEGORY, &bad).unwrap();
        let mut card = SimCard::scp03();
        let e = f
            .issuer
            .write(&f.ci, NUMBER, CATEGORY, &mut card)
            .unwrap_err();
        assert!(matches!(e, Error::Card(_)), "{name}: {e}");
        let row = f.store().card(NUMBER).unwrap().unwrap();
        assert_eq!(row.state, CardState::Partial, "{name}");
        assert_eq!(row.key_version, Some(1));
        let job = f.store().jobs_of_card(NUMBER).unwrap().pop().unwrap();
        assert_eq!(job.state, JobState::Failed);
        // The load of the refused application was rolled back: card and database agree.
        let (apps, files, cin, _) = card_view(&card, base_spec(BASE_V1, f.diversification(), 0));
        assert!(
            apps.is_empty() && !files.contains(&Aid::new(&STORAGE_PKG).unwrap()),
            "{files:?}"
        );
        assert!(f.store().card_apps(NUMBER).unwrap().is_empty());
        assert_eq!(cin, Some(bcd(NUMBER)));
        // Neither write nor rewrite accept a partial card; clear does.
        assert!(matches!(
            f.issuer.write(&f.ci, NUMBER, CATEGORY, &mut card),
            Err(Error::WrongState { .. })
        ));
        let out = f.issuer.clear(&f.ci, NUMBER, CATEGORY, &mut card).unwrap();
        assert_eq!(out.card.state, CardState::Blank);
        open(&card, test_key_spec(0x30)).unwrap();
        let audit = f.store().audit_for_card(NUMBER).unwrap();
        assert!(audit.iter().any(|e| e.result == "failed"));
        assert!(f.store().audit_verify().unwrap().is_ok());
    }
}

/// A card that refuses STORE DATA to its ISD (`6A80`), as a card that keeps its own KDD.
struct NoStoreData(SimCard);

impl transport::CardChannel for NoStoreData {
    fn transmit_raw(&mut self, c: &[u8]) -> Result<Vec<u8>, transport::TransportError> {
        if c.get(1) == Some(&0xE2) {
            return Ok(vec![0x6A, 0x80]);
        }
        self.0.transmit_raw(c)
    }
    fn atr(&self) -> Vec<u8> {
        self.0.atr()
    }
    fn reset(&mut self) -> Result<(), transport::TransportError> {
        self.0.reset()
    }
    fn name(&self) -> String {
        "no STORE DATA".into()
    }
}

#[test]
fn a_card_that_keeps_its_own_kdd() {
    let f = Fixture::new(sqlite(), KeyKind::Aes, 0x30, false);
    // Its KDD is not the card number's: the write stops before changing anything.
    let card = SimCard::scp03();
    let before = format!("{:?}", card.card());
    let e = f
        .issuer
        .write(&f.ci, NUMBER, CATEGORY, &mut NoStoreData(card.clone()))
        .unwrap_err();
    assert!(matches!(e, Error::KddNotSettable(_)), "{e}");
    assert_eq!(format!("{:?}", card.card()), before);
    let row = f.store().card(NUMBER).unwrap().unwrap();
    assert_eq!(row.state, CardState::Blank);
    open(&card, test_key_spec(0x30)).unwrap();
    // A card manufactured with the card number's KDD needs no STORE DATA `CF`; the
    // personalisation STORE DATA is refused by this card, so the write stops there, with
    // the keys already replaced: partial.
    let kdd: [u8; 10] = kms::kdd_for_card_number("77").unwrap();
    let card = SimCard::with_config(card::CardConfig {
        kdd,
        ..card::CardConfig::default()
    });
    let e = f
        .issuer
        .write(&f.ci, "77", CATEGORY, &mut NoStoreData(card.clone()))
        .unwrap_err();
    assert!(matches!(e, Error::Card(_)), "{e}");
    let row = f.store().card("77").unwrap().unwrap();
    assert_eq!(row.state, CardState::Partial);
    assert_eq!(row.key_version, Some(1));
    open(&card, base_spec(BASE_V1, scp::Diversification::Kdf3, 1)).unwrap();
    let steps = f.store().jobs_of_card("77").unwrap().pop().unwrap();
    let steps = f.store().job_steps(steps.id).unwrap();
    let kdd_step = steps.iter().find(|s| s.name == "set_kdd").unwrap();
    assert_eq!(kdd_step.detail.as_ref().unwrap()["unchanged"], true);
}

/// A user of another tenant can neither read nor act on the card, not even resume its
/// interrupted job; each refusal is audited with the actor who tried, and the card and its
/// job are left as they were.
#[test]
fn other_tenants_are_refused_and_audited() {
    let f = Fixture::new(sqlite(), KeyKind::Aes, 0x30, false);
    let mut card = SimCard::scp03();
    f.issuer.write(&f.ci, NUMBER, CATEGORY, &mut card).unwrap();
    // The rewrite is interrupted: a pending job another tenant might try to finish.
    f.rotate();
    let mut gone = Faulty::new(card.clone(), Cut::Before(0));
    assert!(f
        .issuer
        .rewrite(&f.ci, NUMBER, CATEGORY, &mut gone)
        .is_err());
    let job = f.store().open_job_for_card(NUMBER).unwrap().unwrap();
    let snapshot = |card: &SimCard| format!("{:?}", card.card());
    let card_before = snapshot(&card);
    let row_before = f.store().card(NUMBER).unwrap();
    let audit_before = f.store().audit_entries(0, 10_000).unwrap().len();
    let bank = Actor::new("bank", "mallory");
    let forbidden = |r: Result<tsm::Outcome, Error>| {
        assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
    };
    assert!(matches!(
        f.issuer.card_status(&bank, NUMBER),
        Err(Error::Forbidden { .. })
    ));
    forbidden(f.issuer.resume(&bank, NUMBER, &mut card));
    forbidden(f.issuer.run(&bank, job.id, &mut card));
    forbidden(f.issuer.rewrite(&bank, NUMBER, CATEGORY, &mut card));
    forbidden(f.issuer.clear(&bank, NUMBER, CATEGORY, &mut card));
    forbidden(f.issuer.write(&bank, NUMBER, CATEGORY, &mut card));
    assert_eq!(snapshot(&card), card_before, "the card was not touched");
    assert_eq!(f.store().card(NUMBER).unwrap(), row_before);
    assert_eq!(
        f.store()
            .open_job_for_card(NUMBER)
            .unwrap()
            .unwrap()
            .attempts,
        job.attempts
    );
    let refusals: Vec<(String, String)> = f.store().audit_entries(0, 10_000).unwrap()
        [audit_before..]
        .iter()
        .map(|e| {
            assert_eq!(e.actor, "bank/mallory");
            assert_eq!(e.result, "forbidden");
            assert_eq!(e.card_number.as_deref(), Some(NUMBER));
            (e.action.clone(), e.result.clone())
        })
        .collect();
    assert_eq!(refusals.len(), 6, "{refusals:?}");
    // The card's own tenant reads it and resumes the job; the audit names who resumed it.
    let (c, jobs) = f.issuer.card_status(&f.ci, NUMBER).unwrap();
    assert_eq!(c.card_number, NUMBER);
    assert!(jobs.iter().any(|j| j.id == job.id));
    let other_operator = Actor::new("acme", "second");
    let out = f.issuer.resume(&other_operator, NUMBER, &mut card).unwrap();
    assert_eq!(out.job.state, JobState::Done);
    let running = f
        .store()
        .audit_for_card(NUMBER)
        .unwrap()
        .into_iter()
        .find(|e| e.result == "running")
        .expect("the resumed run is audited");
    assert_eq!(running.actor, "acme/second");
    assert!(f.store().audit_verify().unwrap().is_ok());
}

/// A card channel that, right after its APDU number `at` (counted from 0), lets another
/// worker take the job over (`resume --take-over`) and finish it on the same card, while the
/// first one still runs.
struct TakenOverAfter<'a> {
    card: SimCard,
    sent: usize,
    at: usize,
    issuer: &'a tsm::Issuer,
    operator: &'a Actor,
    other: Option<Result<tsm::Outcome, Error>>,
}

impl transport::CardChannel for TakenOverAfter<'_> {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, transport::TransportError> {
        let r = self.card.transmit_raw(capdu)?;
        if self.sent == self.at {
            let mut card = self.card.clone();
            self.other = Some(self.issuer.resume_with(
                self.operator,
                NUMBER,
                &tsm::ResumeOptions { take_over: true },
                &mut card,
            ));
        }
        self.sent += 1;
        Ok(r)
    }
    fn atr(&self) -> Vec<u8> {
        self.card.atr()
    }
    fn reset(&mut self) -> Result<(), transport::TransportError> {
        self.card.reset()
    }
    fn name(&self) -> String {
        self.card.name()
    }
}

/// A worker whose job was taken over before its end (its lease lost) writes nothing more:
/// its end's record — on PostgreSQL left to go with the group's seal and checked when the
/// answer comes — is undone and the worker is told `JobLeased`; the job ends once, done by
/// the worker that took it over, with one audit entry of its end.
#[test]
fn a_worker_whose_job_was_taken_over_records_no_end() {
    for ts in backends() {
        let name = ts.name;
        let f = Fixture::new(ts, KeyKind::Aes, 0x30, false);
        // How many APDUs a write takes, on another card.
        let apdus = f
            .issuer
            .write(
                &f.ci,
                "8986001234567890999",
                CATEGORY,
                &mut SimCard::scp03(),
            )
            .unwrap()
            .apdus as usize;
        let operator = Actor::new(&f.ci.tenant, "night-operator");
        let mut chan = TakenOverAfter {
            card: SimCard::scp03(),
            sent: 0,
            at: apdus - 1,
            issuer: &f.issuer,
            operator: &operator,
            other: None,
        };
        let r = f.issuer.write(&f.ci, NUMBER, CATEGORY, &mut chan);
        let other = chan.other.take().expect("taken over").unwrap();
        assert_eq!(other.job.state, JobState::Done, "{name}");
        assert_eq!(other.job.attempts, 2, "{name}");
        match r {
            Err(Error::JobLeased(held)) => assert_eq!(held.job, other.job.id, "{name}"),
            r => panic!("{name}: {r:?}"),
        }
        let job = f.store().job(other.job.id).unwrap().unwrap();
        assert_eq!(job.state, JobState::Done, "{name}");
        let ends: Vec<_> = f
            .store()
            .audit_for_card(NUMBER)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "job.write" && e.result == "ok")
            .collect();
        assert_eq!(ends.len(), 1, "{name}: {ends:#?}");
        // Written by the second attempt, the one that took the job over.
        let detail: serde_json::Value = serde_json::from_str(&ends[0].detail).unwrap();
        assert_eq!(detail["attempt"], 2, "{name}: {detail}");
        assert!(f.store().audit_verify().unwrap().is_ok(), "{name}");
        // The card is recorded written.
        assert_eq!(
            f.store().card(NUMBER).unwrap().unwrap().state,
            CardState::Written,
            "{name}"
        );
    }
}
