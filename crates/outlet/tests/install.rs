//! Install and registration through the module (SoftHSM2 token, virtual card written by the
//! issuer's platform): the application installed and registered, seen by an independent
//! GP channel; the applet's signature verifies with the certificate the module's CA
//! issued, its MAC is the module's CMAC; a second install is refused; a package row edited
//! on disk is refused; a card the module has no keys for is refused before EXTERNAL
//! AUTHENTICATE.

mod common;

use common::*;
use gp::aid::Aid;
use outlet::{InstallError, Progress};
use std::str::FromStr;

const CARD: &str = "4111111111111111";

#[test]
fn install_and_registration_work() {
    let Some(f) = Fixture::new() else { return };
    let added = f.module.add(&f.wallet_package()).unwrap();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].name, "wallet");
    assert_eq!(f.module.catalog().unwrap(), added);

    let mut card = f.issuer.card(CARD);
    let state = f.module.card_state(&mut card);
    assert!(state.present && state.known, "{state:?}");
    assert_eq!(state.card.as_deref(), Some(CARD));

    let mut steps = Vec::new();
    let outcome = f
        .module
        .install(&mut card, "wallet", &mut |p| steps.push(p))
        .unwrap();
    assert_eq!(outcome.card, CARD);
    assert_eq!(outcome.instance, REG_INSTANCE);
    assert_eq!(outcome.record, 1);
    assert!(outcome.blocks >= 1);
    assert_eq!(steps[0], Progress::Connecting);
    assert!(steps.contains(&Progress::Loading {
        block: outcome.blocks,
        blocks: outcome.blocks
    }));
    assert!(steps.contains(&Progress::Installing));
    assert!(steps.contains(&Progress::Registering { key: "sign".into() }));
    assert_eq!(outcome.registration.len(), 2);

    // An independent GP channel with the base key sees the instance, registered (0F).
    let mut gp = gp_client(&card);
    let reg = gpclient::ops::registry(&mut gp).unwrap();
    let instance = reg.find(&Aid::from_str(REG_INSTANCE).unwrap()).unwrap();
    assert_eq!(instance.life_cycle, 0x0F);
    assert!(reg.find(&Aid::from_str(REG_PKG).unwrap()).is_some());

    // The applet signs with its key; the certificate the module issued verifies it, and
    // the module's CA signed the certificate.
    let pem = outcome.registration[0].certificate_pem.as_deref().unwrap();
    let (_, der) = pem_rfc7468::decode_vec(pem.as_bytes()).unwrap();
    let cert = pki::Certificate::from_der(&der).unwrap();
    assert!(
        cert.subject().contains("wallet card 1111"),
        "{}",
        cert.subject()
    );
    let (_, ca_der) = pem_rfc7468::decode_vec(f.module.ca_certificate_pem().as_bytes()).unwrap();
    let ca = pki::Certificate::from_der(&ca_der).unwrap();
    assert_eq!(cert.issuer(), ca.subject());
    ca.public_key()
        .unwrap()
        .verify(
            &der::Encode::to_der(cert.x509().tbs_certificate()).unwrap(),
            cert.x509().signature().as_bytes().unwrap(),
        )
        .unwrap();
    let message = b"pay 12.34 to shop-17";
    gp.select(&Aid::from_str(REG_INSTANCE).unwrap()).unwrap();
    let sig = gp
        .send_ok(
            gpclient::Operation::Apdu,
            &apdu::Command::new(0x80, 0x2A, 0x00, 0x01)
                .with_data(message.to_vec())
                .with_le(256),
            "SIGN",
        )
        .unwrap()
        .data;
    cert.public_key().unwrap().verify(message, &sig).unwrap();
    // The applet's MAC is the module's CMAC with the key it keeps.
    let mac = gp
        .send_ok(
            gpclient::Operation::Apdu,
            &apdu::Command::new(0x80, 0x4C, 0x00, 0x02)
                .with_data(message.to_vec())
                .with_le(256),
            "MAC",
        )
        .unwrap()
        .data;
    let secrets = kms::open_secret_keys(&f.config).unwrap();
    let label = outlet::labels::registration_key(CARD, "wallet", 2);
    assert_eq!(mac, secrets.cmac(&label, message).unwrap());
    let kcv = secrets.info(&label).unwrap().unwrap().kcv;
    assert_eq!(
        outcome.registration[1].kcv.as_deref(),
        Some(apdu::hex(&kcv).as_str())
    );

    // One record, ok, with the registration; the chain verifies.
    let records = f.module.records().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].result.as_str(), records[0].card.as_str()),
        ("ok", CARD)
    );
    assert!(records[0].detail.contains("BEGIN CERTIFICATE"));
    assert!(f.module.verify_records().unwrap().ok);
    assert!(f.module.pending().unwrap().is_empty());

    // A second install: already present, recorded, nothing sent that changes the card.
    let e = f
        .module
        .install(&mut card, "wallet", &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, InstallError::AlreadyPresent(_)), "{e}");
    assert_eq!(e.code(), "already_present");
    let records = f.module.records().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[1].result.as_str(), records[1].code.as_str()),
        ("failed", "already_present")
    );

    // The module opens again from its directory and token.
    let again = outlet::Module::open(&f.outlet_dir()).unwrap();
    assert_eq!(again.catalog().unwrap().len(), 1);
    assert!(again.verify_records().unwrap().ok);
}

#[test]
fn a_package_row_edited_on_disk_is_refused_at_install() {
    let Some(f) = Fixture::new() else { return };
    f.module.add(&f.wallet_package()).unwrap();
    let db = raw_db(&f.outlet_dir());
    db.execute(
        "UPDATE applications SET title = 'Free money' WHERE name = 'wallet'",
        [],
    )
    .unwrap();
    let mut card = Recording::new(f.issuer.card(CARD));
    let e = f
        .module
        .install(&mut card, "wallet", &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, InstallError::PackageTampered(_)), "{e}");
    assert!(card.sent().is_empty(), "nothing was sent to the card");
    // The CAP bytes edited: refused too.
    f.module.add(&f.wallet_package()).unwrap();
    db.execute(
        "UPDATE applications SET cap = cast(replace(cast(cap AS TEXT), 'registration', 'Registration') AS BLOB)",
        [],
    )
    .unwrap();
    let e = f
        .module
        .install(&mut card, "wallet", &mut |_| {})
        .unwrap_err();
    assert_eq!(e.code(), "package_tampered");
    let e = f
        .module
        .install(&mut card, "nothing", &mut |_| {})
        .unwrap_err();
    assert_eq!(e.code(), "unknown_application");
    assert!(card.sent().is_empty());
    let codes: Vec<String> = f
        .module
        .records()
        .unwrap()
        .into_iter()
        .map(|r| r.code)
        .collect();
    assert_eq!(
        codes,
        [
            "package_tampered",
            "package_tampered",
            "unknown_application"
        ]
    );
}

#[test]
fn a_card_the_module_has_no_keys_for_is_refused_before_external_authenticate() {
    let Some(f) = Fixture::new() else { return };
    f.module.add(&f.wallet_package()).unwrap();
    // Another issuer's card: same category name and key version, another base key.
    let other_keys = kms::SoftwareKeyStore::create(
        f.dir.path().join("other.json"),
        kms::MasterKey::generate().unwrap(),
    )
    .unwrap();
    import_base_key(&other_keys, CATEGORY, OTHER_BASE);
    let other = Issuer::new(std::sync::Arc::new(other_keys));
    // A blank card (initial keys), and a card of a later base key version the module lacks.
    let later_keys = kms::SoftwareKeyStore::create(
        f.dir.path().join("later.json"),
        kms::MasterKey::generate().unwrap(),
    )
    .unwrap();
    import_base_key(&later_keys, CATEGORY, OTHER_BASE);
    import_base_key(&later_keys, CATEGORY, BASE);
    let later = Issuer::new(std::sync::Arc::new(later_keys));
    let blank = card::VirtualChannel::new(card::VirtualCard::new(card::CardConfig::default()));
    for (what, c) in [
        ("another issuer's card", other.card("5500000000000004")),
        ("a blank card", blank),
        ("a card of key version 2", later.card("5500000000000012")),
    ] {
        let mut card = Recording::new(c);
        let state = f.module.card_state(&mut card);
        assert!(state.present && !state.known, "{what}: {state:?}");
        let e = f
            .module
            .install(&mut card, "wallet", &mut |_| {})
            .unwrap_err();
        assert!(matches!(e, InstallError::WrongCard(_)), "{what}: {e}");
        assert!(
            card.sent().contains(&0x50),
            "{what}: INITIALIZE UPDATE sent"
        );
        assert!(
            !card.sent().contains(&0x82),
            "{what}: no EXTERNAL AUTHENTICATE"
        );
    }
    let records = f.module.records().unwrap();
    assert_eq!(records.len(), 3);
    assert!(records
        .iter()
        .all(|r| r.code == "wrong_card" && r.result == "failed"));
}
