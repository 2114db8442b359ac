//! Payment authorisation end to end, and every rejection reason.

mod common;

use std::{sync::Arc, thread, time::Duration};

use common::{enrol, env, env_with, order, rsa_ca_env, Card, Env};
use pki::{
    PaymentAuthenticator, PaymentChallenge, PaymentError, PaymentRequest, PaymentStore,
    RevocationReason, SoftwareSigner,
};

/// The card signs the challenge digest (after PIN, on the card).
fn pay(
    env: &Env,
    card: &Card,
    cert: &pki::Certificate,
    amount: u64,
) -> Result<pki::Authorisation, PaymentError> {
    let c = env.payments.issue_challenge(order(amount), None)?;
    let sig = card.sign_digest(&c.digest());
    env.payments.verify(&c.id, &order(amount), cert.der(), &sig)
}

fn end_to_end(env: Env, card: Card) {
    let cert = enrol(&env, &card);
    let c = env.payments.issue_challenge(order(12_345), None).unwrap();
    let sig = card.sign_digest(&c.digest());
    let a = env
        .payments
        .verify(&c.id, &order(12_345), cert.der(), &sig)
        .unwrap();
    assert_eq!(a.challenge_id, c.id);
    assert_eq!(a.request, order(12_345));
    assert_eq!(a.certificate_serial, cert.serial().unwrap());
    assert_eq!(a.subject, cert.subject());
    assert_eq!(a.digest, c.digest());
    assert_eq!(a.signature, sig);
    assert_eq!(a.authorised_at, common::start());
    assert_eq!(env.store.authorisation(&c.id).unwrap(), Some(a.clone()));
    // The recorded evidence verifies again from the certificate alone.
    assert_eq!(
        cert.public_key()
            .unwrap()
            .verify_digest(&a.digest, &a.signature),
        Ok(())
    );
    // Serde round trip (the tsm stores these as JSON).
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(
        serde_json::from_str::<pki::Authorisation>(&json).unwrap(),
        a
    );
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<PaymentChallenge>(&json).unwrap(), c);
}

#[test]
fn end_to_end_p256_card() {
    end_to_end(env(), Card::p256());
}

#[test]
fn end_to_end_rsa_card() {
    end_to_end(rsa_ca_env(), Card::rsa(0));
}

#[test]
fn replayed_signature_is_rejected() {
    let env = env();
    let card = Card::p256();
    let cert = enrol(&env, &card);
    let c = env.payments.issue_challenge(order(500), None).unwrap();
    let sig = card.sign_digest(&c.digest());
    env.payments
        .verify(&c.id, &order(500), cert.der(), &sig)
        .unwrap();
    assert_eq!(
        env.payments.verify(&c.id, &order(500), cert.der(), &sig),
        Err(PaymentError::Replayed)
    );
    // The same signature against a new challenge for the same payment does not verify.
    let c2 = env.payments.issue_challenge(order(500), None).unwrap();
    assert_eq!(
        env.payments.verify(&c2.id, &order(500), cert.der(), &sig),
        Err(PaymentError::BadSignature)
    );
}

#[test]
fn changed_amount_is_rejected() {
    let env = env();
    let card = Card::rsa(1);
    let cert = enrol(&env, &card);
    let c = env.payments.issue_challenge(order(1_000), None).unwrap();
    // The client presents another amount than was issued.
    let sig = card.sign_digest(&c.digest());
    assert_eq!(
        env.payments
            .verify(&c.id, &order(100_000), cert.der(), &sig),
        Err(PaymentError::Tampered { field: "amount" })
    );
    let mut other = order(1_000);
    other.payee = "Evil Shop".into();
    assert_eq!(
        env.payments.verify(&c.id, &other, cert.der(), &sig),
        Err(PaymentError::Tampered { field: "payee" })
    );
    let mut other = order(1_000);
    other.currency = "USD".into();
    assert_eq!(
        env.payments.verify(&c.id, &other, cert.der(), &sig),
        Err(PaymentError::Tampered { field: "currency" })
    );
    let mut other = order(1_000);
    other.order_id = "ORD-X".into();
    assert_eq!(
        env.payments.verify(&c.id, &other, cert.der(), &sig),
        Err(PaymentError::Tampered { field: "order_id" })
    );
    // The card was made to sign a changed amount: the signature does not match the issue.
    let mut changed = c.clone();
    changed.request.amount_minor = 100_000;
    let forged = card.sign_digest(&changed.digest());
    assert_eq!(
        env.payments
            .verify(&c.id, &order(1_000), cert.der(), &forged),
        Err(PaymentError::BadSignature)
    );
    // Failed attempts do not consume the challenge.
    env.payments
        .verify(&c.id, &order(1_000), cert.der(), &sig)
        .unwrap();
}

#[test]
fn expired_challenge_is_rejected() {
    let env = env();
    let card = Card::p256();
    let cert = enrol(&env, &card);
    let c = env.payments.issue_challenge(order(42), None).unwrap();
    let sig = card.sign_digest(&c.digest());
    env.clock
        .advance(time::Duration::minutes(3) + time::Duration::seconds(1));
    assert_eq!(
        env.payments.verify(&c.id, &order(42), cert.der(), &sig),
        Err(PaymentError::Expired {
            expired_at: c.expires_at
        })
    );
}

#[test]
fn revoked_certificate_is_rejected() {
    let env = env();
    let card = Card::p256();
    let cert = enrol(&env, &card);
    pay(&env, &card, &cert, 10).unwrap();
    env.ca
        .revoke(&cert.serial().unwrap(), RevocationReason::KeyCompromise)
        .unwrap();
    assert_eq!(
        pay(&env, &card, &cert, 10),
        Err(PaymentError::Revoked {
            revoked_at: common::start(),
            reason: RevocationReason::KeyCompromise
        })
    );
}

#[test]
fn foreign_certificate_is_rejected() {
    let env = env();
    let card = Card::p256();
    // Another CA with the very same name but another key.
    let rogue = env_with(
        Arc::new(SoftwareSigner::generate_p256()),
        "Cardwright Test CA",
    );
    let rogue_cert = enrol(&rogue, &card);
    assert_eq!(rogue_cert.issuer(), env.ca.certificate().subject());
    let e = pay(&env, &card, &rogue_cert, 10);
    assert!(
        matches!(e, Err(PaymentError::ForeignCertificate(m)) if m.contains("signature")),
        "{e:?}"
    );
    // Another CA with another name.
    let other = env_with(Arc::new(SoftwareSigner::generate_p256()), "Other CA");
    let other_cert = enrol(&other, &card);
    let e = pay(&env, &card, &other_cert, 10);
    assert!(
        matches!(e, Err(PaymentError::ForeignCertificate(m)) if m.contains("issuer")),
        "{e:?}"
    );
    // Another CA with the same name and an RSA key: algorithm mismatch.
    let rsa = env_with(
        Arc::new(SoftwareSigner::from_rsa(common::rsa_key(2)).unwrap()),
        "Cardwright Test CA",
    );
    let rsa_cert = enrol(&rsa, &card);
    assert!(matches!(
        pay(&env, &card, &rsa_cert, 10),
        Err(PaymentError::ForeignCertificate(_))
    ));
    // The CA's own certificate is not a client certificate.
    assert!(matches!(
        pay(&env, &card, env.ca.certificate(), 10),
        Err(PaymentError::NotClientCertificate(_))
    ));
    // Not a certificate at all.
    let c = env.payments.issue_challenge(order(10), None).unwrap();
    assert!(matches!(
        env.payments
            .verify(&c.id, &order(10), b"\x30\x03\x02\x01\x01", &[]),
        Err(PaymentError::MalformedCertificate(_))
    ));
}

#[test]
fn certificate_validity_window_is_enforced() {
    let env = env();
    let card = Card::p256();
    let short = pki::Enroller::new(env.ca.clone(), env.store.clone())
        .with_certificate_validity(Duration::from_secs(86400));
    let c = short.issue_challenge(common::alice()).unwrap();
    let key = card.public_key();
    let cert = short
        .complete(&c.id, &key, &card.sign_digest(&c.digest()), None)
        .unwrap();
    pay(&env, &card, &cert, 7).unwrap();
    // Before notBefore (server clock stepped back after the challenge was issued).
    let ch = env.payments.issue_challenge(order(7), None).unwrap();
    let sig = card.sign_digest(&ch.digest());
    env.clock.advance(-time::Duration::minutes(2));
    assert_eq!(
        env.payments.verify(&ch.id, &order(7), cert.der(), &sig),
        Err(PaymentError::CertificateNotYetValid {
            not_before: cert.not_before()
        })
    );
    // After notAfter.
    env.clock.advance(time::Duration::days(2));
    assert_eq!(
        pay(&env, &card, &cert, 7),
        Err(PaymentError::CertificateExpired {
            not_after: cert.not_after()
        })
    );
}

#[test]
fn bad_signatures_are_rejected() {
    let env = env();
    let card = Card::p256();
    let cert = enrol(&env, &card);
    let c = env.payments.issue_challenge(order(99), None).unwrap();
    for sig in [
        Vec::new(),
        vec![0x30, 0x00],
        Card::p256().sign_digest(&c.digest()),
        card.sign_digest(&[0; 32]),
    ] {
        assert_eq!(
            env.payments.verify(&c.id, &order(99), cert.der(), &sig),
            Err(PaymentError::BadSignature)
        );
    }
    assert_eq!(
        env.payments
            .verify(&pki::ChallengeId([1; 16]), &order(99), cert.der(), &[]),
        Err(PaymentError::UnknownChallenge)
    );
}

#[test]
fn challenge_bound_to_a_payer() {
    let env = env();
    let alice = Card::p256();
    let mallory = Card::p256();
    let alice_cert = enrol(&env, &alice);
    let mallory_cert = enrol(&env, &mallory);
    let c = env
        .payments
        .issue_challenge(order(5_000), alice_cert.serial())
        .unwrap();
    assert_eq!(
        env.payments.verify(
            &c.id,
            &order(5_000),
            mallory_cert.der(),
            &mallory.sign_digest(&c.digest())
        ),
        Err(PaymentError::WrongPayer)
    );
    env.payments
        .verify(
            &c.id,
            &order(5_000),
            alice_cert.der(),
            &alice.sign_digest(&c.digest()),
        )
        .unwrap();
}

#[test]
fn concurrent_replays_authorise_exactly_once() {
    let env = env();
    let card = Card::p256();
    let cert = enrol(&env, &card);
    let c = env.payments.issue_challenge(order(3), None).unwrap();
    let sig = card.sign_digest(&c.digest());
    let payments = Arc::new(env.payments);
    let results: Vec<_> = (0..8)
        .map(|_| {
            let (p, id, der, sig) = (payments.clone(), c.id, cert.der().to_vec(), sig.clone());
            thread::spawn(move || p.verify(&id, &order(3), &der, &sig))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .filter(|r| r.is_err())
        .all(|r| r == &Err(PaymentError::Replayed)));
}

#[test]
fn invalid_requests_are_refused_at_issue() {
    let env = env();
    let bad = |f: &dyn Fn(&mut PaymentRequest)| {
        let mut r = order(1);
        f(&mut r);
        env.payments.issue_challenge(r, None)
    };
    for (name, result) in [
        ("zero amount", bad(&|r| r.amount_minor = 0)),
        ("lower-case currency", bad(&|r| r.currency = "cny".into())),
        ("4-letter currency", bad(&|r| r.currency = "CNYY".into())),
        ("empty payee", bad(&|r| r.payee.clear())),
        ("long payee", bad(&|r| r.payee = "x".repeat(129))),
        ("control char", bad(&|r| r.order_id = "A\u{0}B".into())),
        ("long order", bad(&|r| r.order_id = "x".repeat(65))),
    ] {
        assert!(
            matches!(result, Err(PaymentError::InvalidRequest(_))),
            "{name}: {result:?}"
        );
    }
    assert!(bad(&|r| r.amount_minor = u64::MAX).is_ok());
}

#[test]
fn ttl_is_configurable_and_codes_are_distinct() {
    let env = env();
    let p = PaymentAuthenticator::new(env.ca.clone(), env.store.clone())
        .with_challenge_ttl(Duration::from_secs(60));
    let c = p.issue_challenge(order(1), None).unwrap();
    assert_eq!(c.expires_at, common::start() + time::Duration::seconds(60));
    let errors = [
        PaymentError::UnknownChallenge,
        PaymentError::Replayed,
        PaymentError::Expired {
            expired_at: common::start(),
        },
        PaymentError::Tampered { field: "amount" },
        PaymentError::ForeignCertificate("x"),
        PaymentError::CertificateExpired {
            not_after: common::start(),
        },
        PaymentError::Revoked {
            revoked_at: common::start(),
            reason: RevocationReason::Unspecified,
        },
        PaymentError::BadSignature,
        PaymentError::WrongPayer,
    ];
    let mut codes: Vec<_> = errors.iter().map(PaymentError::code).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), errors.len());
    assert_eq!(
        PaymentError::Tampered { field: "amount" }.to_string(),
        "payment request changed after issue: amount differs"
    );
}

#[test]
fn purge_removes_expired_challenges() {
    let env = env();
    env.payments.issue_challenge(order(1), None).unwrap();
    env.enroller.issue_challenge(common::alice()).unwrap();
    assert_eq!(env.store.purge_expired(common::start()), 0);
    assert_eq!(
        env.store
            .purge_expired(common::start() + time::Duration::hours(1)),
        2
    );
}
