//! Payment verification throughput: certificate validation (chain to the CA, validity,
//! revocation) plus the card signature, with P-256 and RSA-2048 keys.
//!
//! `warm`: the card's certificate was seen before (the CA caches the signature/profile
//! check, validity and revocation are still checked). `cold`: a certificate never seen
//! (full parse and CA signature check). `2 threads`: warm verifications on two threads,
//! reported as time per verification.

use std::{
    hint::black_box,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use p256::ecdsa::{signature::hazmat::PrehashSigner, DerSignature};
use p256::elliptic_curve::Generate;
use pki::{
    CaSigner, CertificateAuthority, ChallengeId, MemoryStore, PaymentAuthenticator, PaymentRequest,
    SoftwareSigner, Subject, SystemClock,
};

enum Card {
    Rsa(rsa::PrivateKey),
    P256(p256::ecdsa::SigningKey),
}

impl Card {
    fn spki(&self) -> Vec<u8> {
        match self {
            Card::Rsa(k) => pki::PublicKey::from_rsa(k.to_public_key())
                .unwrap()
                .to_spki_der(),
            Card::P256(k) => {
                pki::PublicKey::P256(p256::PublicKey::from(k.verifying_key())).to_spki_der()
            }
        }
    }
    fn sign(&self, digest: &[u8; 32]) -> Vec<u8> {
        match self {
            Card::Rsa(k) => k.pkcs1v15_sign_prehash::<sha2::Sha256>(digest).unwrap(),
            Card::P256(k) => {
                let s: DerSignature = k.sign_prehash(digest).unwrap();
                s.as_bytes().to_vec()
            }
        }
    }
}

struct Setup {
    ca: Arc<CertificateAuthority>,
    payments: Arc<PaymentAuthenticator>,
    card: Card,
    cert: Vec<u8>,
}

fn order() -> PaymentRequest {
    PaymentRequest {
        amount_minor: 12_345,
        currency: "CNY".into(),
        payee: "Shop No. 17".into(),
        order_id: "ORD-2026-0001".into(),
    }
}

fn setup(signer: Arc<dyn CaSigner>, card: Card) -> Setup {
    let store = Arc::new(MemoryStore::new());
    let ca = Arc::new(
        CertificateAuthority::create(
            &Subject::new("Bench CA"),
            Duration::from_secs(3650 * 86400),
            signer,
            store.clone(),
            Arc::new(SystemClock),
        )
        .unwrap(),
    );
    let subject = Subject::new("Alice").with_uid("acct-1");
    let cert = ca
        .issue_client_certificate(&subject, &card.spki(), Duration::from_secs(86400))
        .unwrap()
        .der()
        .to_vec();
    let payments = Arc::new(PaymentAuthenticator::new(ca.clone(), store));
    Setup {
        ca,
        payments,
        card,
        cert,
    }
}

fn prepared(s: &Setup) -> (ChallengeId, Vec<u8>) {
    let c = s.payments.issue_challenge(order(), None).unwrap();
    (c.id, s.card.sign(&c.digest()))
}

fn bench_kind(c: &mut Criterion, name: &str, s: &Setup) {
    let req = order();
    c.bench_function(&format!("verify/{name}/warm"), |b| {
        b.iter_batched(
            || prepared(s),
            |(id, sig)| black_box(s.payments.verify(&id, &req, &s.cert, &sig).unwrap()),
            BatchSize::SmallInput,
        )
    });
    c.bench_function(&format!("verify/{name}/cold"), |b| {
        b.iter_batched(
            || {
                let cert =
                    s.ca.issue_client_certificate(
                        &Subject::new("Bob"),
                        &s.card.spki(),
                        Duration::from_secs(86400),
                    )
                    .unwrap();
                let (id, sig) = prepared(s);
                (id, sig, cert.der().to_vec())
            },
            |(id, sig, cert)| black_box(s.payments.verify(&id, &req, &cert, &sig).unwrap()),
            BatchSize::SmallInput,
        )
    });
    c.bench_function(
        &format!("verify/{name}/warm 2 threads (time per verification)"),
        |b| {
            b.iter_custom(|iters| {
                let items: Vec<_> = (0..iters.max(2)).map(|_| prepared(s)).collect();
                let (left, right) = items.split_at(items.len() / 2);
                let start = Instant::now();
                thread::scope(|scope| {
                    for half in [left, right] {
                        let req = &req;
                        scope.spawn(move || {
                            for (id, sig) in half {
                                black_box(s.payments.verify(id, req, &s.cert, sig).unwrap());
                            }
                        });
                    }
                });
                start.elapsed().mul_f64(iters as f64 / items.len() as f64)
            })
        },
    );
}

fn benches(c: &mut Criterion) {
    let p256 = setup(
        Arc::new(SoftwareSigner::generate_p256()),
        Card::P256(p256::ecdsa::SigningKey::generate_from_rng(&mut rand::rng())),
    );
    bench_kind(c, "p256", &p256);
    let rsa = setup(
        Arc::new(SoftwareSigner::generate_rsa(2048).unwrap()),
        Card::Rsa(rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap()),
    );
    bench_kind(c, "rsa2048", &rsa);
}

criterion_group! {
    name = verify;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = benches
}
criterion_main!(verify);
