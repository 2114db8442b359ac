//! The verification primitives under the payment check, alone: raw P-256 prehash
//! verification, and pki's `PublicKey::verify_digest` for P-256 and RSA-2048.

use criterion::{criterion_group, criterion_main, Criterion};
use p256::ecdsa::{
    signature::hazmat::{PrehashSigner, PrehashVerifier},
    DerSignature,
};
use p256::elliptic_curve::Generate;
use std::hint::black_box;

fn benches(c: &mut Criterion) {
    let k = p256::ecdsa::SigningKey::generate_from_rng(&mut rand::rng());
    let d = [7u8; 32];
    let sig: p256::ecdsa::Signature = k.sign_prehash(&d).unwrap();
    let der: DerSignature = sig.to_der();
    let vk = *k.verifying_key();
    c.bench_function("raw p256 verify_prehash", |b| {
        b.iter(|| vk.verify_prehash(black_box(&d), black_box(&sig)).unwrap())
    });
    let pk = pki::PublicKey::P256(p256::PublicKey::from(&vk));
    c.bench_function("pki PublicKey::verify_digest p256", |b| {
        b.iter(|| {
            pk.verify_digest(black_box(&d), black_box(der.as_bytes()))
                .unwrap()
        })
    });
    let r = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
    let s = r.pkcs1v15_sign_prehash::<sha2::Sha256>(&d).unwrap();
    let rp = pki::PublicKey::from_rsa(r.to_public_key()).unwrap();
    c.bench_function("pki PublicKey::verify_digest rsa2048", |b| {
        b.iter(|| rp.verify_digest(black_box(&d), black_box(&s)).unwrap())
    });
}
criterion_group! { name = g; config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3)); targets = benches }
criterion_main!(g);
