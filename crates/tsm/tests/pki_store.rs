//! The pki storage traits on the platform store, on every backend; the same behaviour as
//! pki's `MemoryStore` (checked side by side).

mod common;

use std::sync::Arc;

use pki::store::{IssuedCertificate, Revocation, RevokeOutcome};
use pki::{
    Authorisation, CertificateStore, ChallengeId, ChallengeState, EnrolmentChallenge,
    EnrolmentStore, MemoryStore, PaymentChallenge, PaymentRequest, PaymentStore, RevocationReason,
    Serial, Subject,
};
use time::OffsetDateTime;

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

fn cert(serial: u8) -> IssuedCertificate {
    IssuedCertificate {
        serial: Serial::from_bytes(&[serial, 1, 2, 3]).unwrap(),
        subject: format!("CN=card {serial}"),
        not_before: at(1_700_000_000),
        not_after: at(1_800_000_000),
        certificate_der: vec![0x30, 0x03, 0x02, 0x01, serial],
    }
}

fn payment(id: u8) -> PaymentChallenge {
    PaymentChallenge {
        id: ChallengeId([id; 16]),
        nonce: [7; 32],
        expires_at: at(1_750_000_000),
        request: PaymentRequest {
            amount_minor: 1250,
            currency: "CNY".into(),
            payee: "Shop".into(),
            order_id: format!("order-{id}"),
        },
        payer: None,
    }
}

/// Runs the same script on a store; returns what it observed, for comparison.
fn script(s: &(impl CertificateStore + EnrolmentStore + PaymentStore)) -> Vec<String> {
    let mut log = Vec::new();
    let c1 = cert(1);
    s.insert_issued(&c1).unwrap();
    s.insert_issued(&cert(2)).unwrap();
    log.push(format!("{:?}", s.insert_issued(&c1)));
    log.push(format!(
        "{:?}",
        s.issued(&c1.serial).unwrap() == Some(c1.clone())
    ));
    log.push(format!("{:?}", s.issued(&cert(9).serial).unwrap()));
    let rev = Revocation {
        revoked_at: at(1_710_000_000),
        reason: RevocationReason::KeyCompromise,
    };
    log.push(format!("{:?}", s.revoke(&c1.serial, &rev).unwrap()));
    let later = Revocation {
        revoked_at: at(1_720_000_000),
        reason: RevocationReason::Superseded,
    };
    log.push(format!("{:?}", s.revoke(&c1.serial, &later).unwrap()));
    log.push(format!("{:?}", s.revoke(&cert(9).serial, &rev).unwrap()));
    log.push(format!("{:?}", s.revocation(&c1.serial).unwrap()));
    log.push(format!("{:?}", s.revocation(&cert(2).serial).unwrap()));
    s.revoke(&cert(2).serial, &later).unwrap();
    log.push(format!("{:?}", s.revocations().unwrap()));
    log.push(format!(
        "{:?}",
        (0..3)
            .map(|_| s.next_crl_number().unwrap())
            .collect::<Vec<_>>()
    ));

    let e = EnrolmentChallenge {
        id: ChallengeId([3; 16]),
        nonce: [9; 32],
        subject: Subject::new("Card holder").with_uid("4000001234"),
        expires_at: at(1_750_000_000),
    };
    s.insert_enrolment_challenge(&e).unwrap();
    log.push(format!("{:?}", s.insert_enrolment_challenge(&e)));
    log.push(format!("{:?}", s.enrolment_challenge(&e.id).unwrap()));
    log.push(format!(
        "{:?}",
        s.consume_enrolment_challenge(&e.id).unwrap()
    ));
    log.push(format!(
        "{:?}",
        s.consume_enrolment_challenge(&e.id).unwrap()
    ));
    log.push(format!(
        "{:?}",
        s.consume_enrolment_challenge(&ChallengeId([4; 16]))
            .unwrap()
    ));
    log.push(format!(
        "{:?}",
        s.enrolment_challenge(&e.id).unwrap().map(|x| x.1)
    ));

    let p = payment(5);
    s.insert_payment_challenge(&p).unwrap();
    log.push(format!("{:?}", s.insert_payment_challenge(&p)));
    let auth = Authorisation {
        challenge_id: p.id,
        request: p.request.clone(),
        certificate_serial: c1.serial.clone(),
        subject: c1.subject.clone(),
        digest: [1; 32],
        signature: vec![2; 64],
        authorised_at: at(1_740_000_000),
    };
    log.push(format!("{:?}", s.record_authorisation(&auth).unwrap()));
    log.push(format!("{:?}", s.record_authorisation(&auth).unwrap()));
    log.push(format!(
        "{:?}",
        s.authorisation(&p.id).unwrap() == Some(auth.clone())
    ));
    log.push(format!(
        "{:?}",
        s.payment_challenge(&p.id).unwrap().map(|x| x.1)
    ));
    log.push(format!(
        "{:?}",
        s.authorisation(&ChallengeId([6; 16])).unwrap()
    ));
    log
}

#[test]
fn behaves_like_the_memory_store() {
    let reference = script(&MemoryStore::new());
    assert!(reference.contains(&"Err(Duplicate)".to_string()));
    for b in common::backends() {
        assert_eq!(script(b.store()), reference, "{}", b.name);
    }
}

#[test]
fn one_time_transitions_are_atomic() {
    for b in common::backends() {
        let s = Arc::new(b.store().clone());
        let p = payment(8);
        s.insert_payment_challenge(&p).unwrap();
        let e = EnrolmentChallenge {
            id: ChallengeId([8; 16]),
            nonce: [1; 32],
            subject: Subject::new("x"),
            expires_at: at(1_750_000_000),
        };
        s.insert_enrolment_challenge(&e).unwrap();
        s.insert_issued(&cert(1)).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let s = Arc::clone(&s);
                let p = p.clone();
                let id = e.id;
                std::thread::spawn(move || {
                    let a = Authorisation {
                        challenge_id: p.id,
                        request: p.request.clone(),
                        certificate_serial: cert(1).serial,
                        subject: format!("thread {i}"),
                        digest: [i; 32],
                        signature: vec![i],
                        authorised_at: at(1_740_000_000),
                    };
                    (
                        s.record_authorisation(&a).unwrap(),
                        s.consume_enrolment_challenge(&id).unwrap(),
                    )
                })
            })
            .collect();
        let results: Vec<(bool, bool)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.0).count(), 1, "{}", b.name);
        assert_eq!(results.iter().filter(|r| r.1).count(), 1, "{}", b.name);
        assert_eq!(
            s.payment_challenge(&p.id).unwrap().unwrap().1,
            ChallengeState::Used
        );
        // CRL numbers stay strictly increasing under concurrency.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    (0..10)
                        .map(|_| s.next_crl_number().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (1..=40).collect::<Vec<_>>(), "{}", b.name);
        assert!(matches!(
            s.revoke(
                &cert(1).serial,
                &Revocation {
                    revoked_at: at(1),
                    reason: RevocationReason::Unspecified
                }
            )
            .unwrap(),
            RevokeOutcome::Revoked
        ));
    }
}

#[test]
fn purge_keeps_used_payment_challenges() {
    for b in common::backends() {
        let s = b.store();
        let p1 = payment(1);
        let p2 = payment(2);
        s.insert_payment_challenge(&p1).unwrap();
        s.insert_payment_challenge(&p2).unwrap();
        let auth = Authorisation {
            challenge_id: p1.id,
            request: p1.request.clone(),
            certificate_serial: cert(1).serial,
            subject: "x".into(),
            digest: [0; 32],
            signature: vec![],
            authorised_at: at(1),
        };
        s.insert_issued(&cert(1)).unwrap();
        assert!(s.record_authorisation(&auth).unwrap());
        let removed = tsm::purge_expired_challenges(s, 1_760_000_000_000).unwrap();
        assert_eq!(removed, 1, "{}", b.name);
        assert!(s.payment_challenge(&p1.id).unwrap().is_some());
        assert!(s.payment_challenge(&p2.id).unwrap().is_none());
    }
}
