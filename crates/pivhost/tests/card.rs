//! The client against the virtual card's PIV applet, byte for byte.

mod common;

use std::{sync::Arc, time::Duration};

use common::{hex, sent, Sim};
use pivhost::{
    payment::{self, MgmtKeySpec},
    MgmtAlgorithm, MgmtKey, PinStatus, PivAlgorithm, PivClient, PivError, Slot,
};
use pki::{
    CertificateAuthority, Enroller, MemoryStore, PaymentAuthenticator, PaymentError,
    PaymentRequest, SoftwareSigner, Subject, SystemClock,
};
use transport::CardChannel as _;

fn client() -> (PivClient<Sim>, common::Log) {
    let sim = Sim::new();
    let log = sim.log.clone();
    let mut piv = PivClient::new(sim);
    piv.select().unwrap();
    sent(&log);
    (piv, log)
}

fn tdes() -> MgmtKey {
    MgmtKey::default_for(MgmtAlgorithm::Tdes).unwrap()
}

#[test]
fn select_and_serial() {
    let sim = Sim::new();
    let log = sim.log.clone();
    let mut piv = PivClient::new(sim);
    let apt = piv.select().unwrap();
    assert_eq!(&apt[..2], &[0x61, 0x41]);
    // SP 800-73-4 Part 2 §3.1.1: SELECT by the 9-byte AID, Le present.
    assert_eq!(
        sent(&log),
        ["00A4040009A00000030800001000".to_string() + "00"]
    );
    assert!(piv.serial().unwrap().is_some());
}

#[test]
fn no_piv_application() {
    let mut sim = Sim::new();
    sim.card = card::VirtualChannel::with_config(card::CardConfig::default());
    let mut piv = PivClient::new(sim);
    assert!(matches!(piv.select(), Err(PivError::NoPivApplication(_))));
}

#[test]
fn pin_counter_decrements_and_blocks_at_zero() {
    let (mut piv, log) = client();
    assert_eq!(
        piv.pin_status().unwrap(),
        PinStatus::NotVerified { retries_left: 3 }
    );
    assert_eq!(sent(&log), ["00200080"]);
    match piv.verify_pin(b"000000") {
        Err(PivError::WrongPin { retries_left: 2 }) => {}
        other => panic!("{other:?}"),
    }
    // The PIN goes padded with FF to 8 bytes (SP 800-73-4 Part 1 §2.4.3).
    assert_eq!(sent(&log), ["0020008008303030303030FFFF"]);
    let e = piv.verify_pin(b"000000").unwrap_err();
    assert_eq!(
        e.to_string(),
        "wrong PIN: 1 try left before the PIN is blocked"
    );
    assert!(matches!(
        piv.verify_pin(b"000000"),
        Err(PivError::PinBlocked)
    ));
    assert_eq!(piv.pin_status().unwrap(), PinStatus::Blocked);
    assert!(matches!(
        piv.verify_pin(b"123456"),
        Err(PivError::PinBlocked)
    ));
    assert_eq!(piv.pin_status().unwrap().retries_left(), Some(0));
}

#[test]
fn right_pin_resets_the_counter() {
    let (mut piv, _) = client();
    assert!(piv.verify_pin(b"111111").is_err());
    piv.verify_pin(b"123456").unwrap();
    assert_eq!(piv.pin_status().unwrap(), PinStatus::Verified);
    piv.select().unwrap();
    assert_eq!(
        piv.pin_status().unwrap(),
        PinStatus::NotVerified { retries_left: 3 }
    );
}

#[test]
fn malformed_pins_are_not_sent() {
    let (mut piv, log) = client();
    for pin in [&b"12345"[..], b"123456789", b"12345\xFF"] {
        assert!(matches!(piv.verify_pin(pin), Err(PivError::InvalidPin(_))));
    }
    assert!(sent(&log).is_empty());
}

#[test]
fn management_key_3des_mutual_authentication() {
    let (mut piv, log) = client();
    piv.authenticate(&tdes()).unwrap();
    let apdus = sent(&log);
    // Step 1: ask for a witness (Part 2 Appendix A.1).
    assert_eq!(apdus[0], "0087039B047C02800000");
    // Step 2: decrypted witness (8 bytes) and our challenge (8 bytes).
    assert!(apdus[1].starts_with("0087039B167C148008"), "{}", apdus[1]);
    assert_eq!(&apdus[1][34..38], "8108");
    // Management key now authenticated: PUT DATA works.
    piv.put_object(0x5FC109, &hex("8801 41")).unwrap();
}

#[test]
fn wrong_management_key_is_refused() {
    let (mut piv, _) = client();
    let mut bad = MgmtKey::DEFAULT;
    bad[0] ^= 0x02;
    let e = piv
        .authenticate(&MgmtKey::new(MgmtAlgorithm::Tdes, &bad).unwrap())
        .unwrap_err();
    assert!(matches!(e, PivError::ManagementKey(_)), "{e}");
    let e = piv
        .authenticate(&MgmtKey::default_for(MgmtAlgorithm::Aes192).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("not AES-192"), "{e}");
    // Without authentication GENERATE is refused.
    let e = piv
        .generate(Slot::SIGNATURE, PivAlgorithm::EccP256)
        .unwrap_err();
    assert_eq!(
        e.status_word(),
        Some(apdu::StatusWord::SECURITY_NOT_SATISFIED)
    );
}

#[test]
fn aes_management_key_detected_from_metadata() {
    let (mut piv, _) = client();
    piv.authenticate(&tdes()).unwrap();
    // YubiKey SET MANAGEMENT KEY to AES-128 000102..0F.
    let key = hex("000102030405060708090A0B0C0D0E0F");
    let mut data = vec![0x08, 0x9B, 0x10];
    data.extend_from_slice(&key);
    let cmd = apdu::Command::new(0, 0xFF, 0xFF, 0xFF).with_data(data);
    assert!(piv.channel_mut().transmit(&cmd).unwrap().is_success());
    piv.select().unwrap();
    assert_eq!(
        piv.management_key_algorithm().unwrap(),
        Some(MgmtAlgorithm::Aes128)
    );
    piv.authenticate_with(&MgmtKeySpec {
        key: Some(zeroize::Zeroizing::new(key)),
        algorithm: None,
    })
    .unwrap();
    assert!(piv.authenticate_with(&MgmtKeySpec::default()).is_err());
}

#[test]
fn p256_generate_sign_verify() {
    let (mut piv, log) = client();
    piv.authenticate(&tdes()).unwrap();
    sent(&log);
    let key = piv
        .generate(Slot::SIGNATURE, PivAlgorithm::EccP256)
        .unwrap();
    // Part 2 §3.3.2: AC {80 11}.
    assert_eq!(sent(&log), ["004700".to_string() + "9C05AC0380011100"]);
    assert_eq!(&key.template[..3], &[0x7F, 0x49, 0x43]);
    let digest = [0x5A; 32];
    // 9C needs the PIN right before the signature.
    let e = piv
        .sign_digest(Slot::SIGNATURE, PivAlgorithm::EccP256, &digest)
        .unwrap_err();
    assert_eq!(
        e.status_word(),
        Some(apdu::StatusWord::SECURITY_NOT_SATISFIED)
    );
    piv.verify_pin(b"123456").unwrap();
    sent(&log);
    let sig = piv
        .sign_digest(Slot::SIGNATURE, PivAlgorithm::EccP256, &digest)
        .unwrap();
    assert_eq!(
        sent(&log),
        [format!("0087119C267C24820081 20{}00", "5A".repeat(32)).replace(' ', "")]
    );
    key.public_key.verify_digest(&digest, &sig).unwrap();
}

#[test]
fn rsa2048_generate_sign_verify_with_chaining() {
    let (mut piv, log) = client();
    piv.authenticate(&tdes()).unwrap();
    let key = piv
        .generate(Slot::AUTHENTICATION, PivAlgorithm::Rsa2048)
        .unwrap();
    assert!(matches!(
        key.public_key.algorithm(),
        pki::KeyAlgorithm::Rsa { bits: 2048 }
    ));
    piv.verify_pin(b"123456").unwrap();
    sent(&log);
    let digest = [0x33; 32];
    let sig = piv
        .sign_digest(Slot::AUTHENTICATION, PivAlgorithm::Rsa2048, &digest)
        .unwrap();
    assert_eq!(sig.len(), 256);
    key.public_key.verify_digest(&digest, &sig).unwrap();
    let apdus = sent(&log);
    // 266 bytes of data: a chained part of 255 bytes (CLA 10), then the rest, then GET
    // RESPONSE for the 260-byte answer.
    assert!(
        apdus[0].starts_with("1087079AFF7C82010682008182010000"),
        "{}",
        apdus[0]
    );
    assert!(apdus[1].starts_with("0087079A0B"), "{}", apdus[1]);
    assert!(apdus.iter().skip(2).all(|a| a.starts_with("00C00000")));
    // Wrong algorithm for the slot.
    piv.verify_pin(b"123456").unwrap();
    assert!(matches!(
        piv.sign_digest(Slot::AUTHENTICATION, PivAlgorithm::EccP256, &digest),
        Err(PivError::Invalid(_))
    ));
    assert!(matches!(
        piv.sign_digest(Slot::KEY_MANAGEMENT, PivAlgorithm::EccP256, &digest),
        Err(PivError::NotFound(_))
    ));
}

fn test_ca() -> (Arc<CertificateAuthority>, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let ca = CertificateAuthority::create(
        &Subject::new("pivhost test CA"),
        Duration::from_secs(86400),
        Arc::new(SoftwareSigner::generate_p256()),
        store.clone(),
        Arc::new(SystemClock),
    )
    .unwrap();
    (Arc::new(ca), store)
}

#[test]
fn certificate_object_round_trip() {
    let (mut piv, log) = client();
    assert_eq!(piv.read_certificate(Slot::SIGNATURE).unwrap(), None);
    piv.authenticate(&tdes()).unwrap();
    let key = piv
        .generate(Slot::SIGNATURE, PivAlgorithm::EccP256)
        .unwrap();
    let (ca, _) = test_ca();
    let cert = ca
        .issue_client_certificate(
            &Subject::new("Card Holder"),
            &key.public_key.to_spki_der(),
            Duration::from_secs(3600),
        )
        .unwrap();
    sent(&log);
    piv.write_certificate(Slot::SIGNATURE, cert.der()).unwrap();
    let apdus = sent(&log);
    // PUT DATA 5C 03 5FC10A, 53 { 70 cert, 71 01 00, FE 00 }, chained in 255-byte parts.
    assert!(
        apdus[0].starts_with("10DB3FFFFF5C035FC10A53"),
        "{}",
        apdus[0]
    );
    let last = apdus.last().unwrap();
    assert!(last.starts_with("00DB3FFF"), "{last}");
    let tail = apdu::hex(&cert.der()[cert.der().len() - 4..]);
    assert!(last.ends_with(&format!("{tail}710100FE00")), "{last}");
    assert_eq!(
        piv.read_certificate(Slot::SIGNATURE).unwrap().as_deref(),
        Some(cert.der())
    );
    let raw = piv
        .get_object(Slot::SIGNATURE.certificate_object())
        .unwrap()
        .unwrap();
    assert_eq!(raw, pivhost::objects::encode_certificate_object(cert.der()));
}

#[test]
fn enrolment_and_payment_flows_p256_and_rsa2048() {
    for (algorithm, slot) in [
        (PivAlgorithm::EccP256, Slot::SIGNATURE),
        (PivAlgorithm::Rsa2048, Slot::SIGNATURE),
    ] {
        let (mut piv, _) = client();
        let (ca, store) = test_ca();
        let enroller = Enroller::new(ca.clone(), store.clone());
        let challenge = enroller.issue_challenge(Subject::new("Alice")).unwrap();
        let mgmt = MgmtKeySpec::default();
        let card = payment::enrol(&mut piv, &challenge, algorithm, slot, b"123456", &mgmt).unwrap();
        let cert = enroller
            .complete(&challenge.id, &card.public_key, &card.proof, None)
            .unwrap();
        // The server reads the same key from the template the card sent.
        assert_eq!(
            pki::PublicKey::from_piv_template(&card.template, algorithm).unwrap(),
            card.public_key
        );
        payment::install_certificate(&mut piv, slot, cert.der(), Some(&card.public_key), &mgmt)
            .unwrap();
        let status = payment::card_status(&mut piv, slot).unwrap();
        assert_eq!(
            status.certificate.as_ref().map(|c| c.der()),
            Some(cert.der())
        );

        let payments = PaymentAuthenticator::new(ca.clone(), store.clone());
        let request = PaymentRequest {
            amount_minor: 1234,
            currency: "EUR".into(),
            payee: "SHOP".into(),
            order_id: "O-1".into(),
        };
        let pc = payments.issue_challenge(request.clone(), None).unwrap();
        let signed =
            payment::sign_payment(&mut piv, &pc.canonical_bytes(), slot, b"123456").unwrap();
        assert_eq!(signed.challenge, pc);
        let auth = payments
            .verify(&pc.id, &request, &signed.certificate_der, &signed.signature)
            .unwrap();
        assert_eq!(auth.request, request);
        // Replay.
        assert_eq!(
            payments.verify(&pc.id, &request, &signed.certificate_der, &signed.signature),
            Err(PaymentError::Replayed)
        );
        // Wrong PIN: nothing signed, counter reported.
        let pc = payments.issue_challenge(request.clone(), None).unwrap();
        match payment::sign_payment(&mut piv, &pc.canonical_bytes(), slot, b"999999") {
            Err(PivError::WrongPin { retries_left: 2 }) => {}
            other => panic!("{other:?}"),
        }
        // Not a payment challenge: refused before the card is asked anything.
        assert!(matches!(
            payment::sign_payment(&mut piv, &[0u8; 40], slot, b"123456"),
            Err(PivError::Invalid(_))
        ));
    }
}

#[test]
fn wrong_certificate_for_the_key_is_not_installed() {
    let (mut piv, _) = client();
    piv.authenticate(&tdes()).unwrap();
    let key = piv
        .generate(Slot::SIGNATURE, PivAlgorithm::EccP256)
        .unwrap();
    let other = piv
        .generate(Slot::AUTHENTICATION, PivAlgorithm::EccP256)
        .unwrap();
    let (ca, _) = test_ca();
    let cert = ca
        .issue_client_certificate(
            &Subject::new("x"),
            &other.public_key.to_spki_der(),
            Duration::from_secs(60),
        )
        .unwrap();
    let e = payment::install_certificate(
        &mut piv,
        Slot::SIGNATURE,
        cert.der(),
        Some(&key.public_key),
        &MgmtKeySpec::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("another key"), "{e}");
}

#[test]
fn wrong_pin_at_enrolment_keeps_the_existing_key() {
    let (mut piv, _) = client();
    let (ca, store) = test_ca();
    let enroller = Enroller::new(ca, store);
    let mgmt = MgmtKeySpec::default();
    let challenge = enroller.issue_challenge(Subject::new("A")).unwrap();
    let first = payment::enrol(
        &mut piv,
        &challenge,
        PivAlgorithm::EccP256,
        Slot::SIGNATURE,
        b"123456",
        &mgmt,
    )
    .unwrap();
    let challenge = enroller.issue_challenge(Subject::new("A")).unwrap();
    assert!(matches!(
        payment::enrol(
            &mut piv,
            &challenge,
            PivAlgorithm::EccP256,
            Slot::SIGNATURE,
            b"654321",
            &mgmt
        ),
        Err(PivError::WrongPin { retries_left: 2 })
    ));
    // The first key still signs.
    piv.select().unwrap();
    piv.verify_pin(b"123456").unwrap();
    let sig = piv
        .sign_digest(Slot::SIGNATURE, PivAlgorithm::EccP256, &[1; 32])
        .unwrap();
    first.public_key.verify_digest(&[1; 32], &sig).unwrap();
}
