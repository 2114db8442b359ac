//! Delegated Management token signing and verification per second per scheme (GP 2.3.1
//! Appendix B/C.4): RSA-1024 PKCS#1 v1.5 SHA-1, RSA-2048 PSS SHA-256, ECDSA P-256, AES-CMAC,
//! over the token input of an INSTALL [for install and make selectable]; and receipts.

use criterion::{criterion_group, criterion_main, Criterion};
use gp::commands::Install;
use gp::dm::{DmSigningKey, ReceiptKey, Signer, TokenInput};
use gp::{Aid, Privileges};
use std::hint::black_box;

fn key(name: &str) -> DmSigningKey {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/dm")
        .join(name);
    DmSigningKey::from_pkcs8(&std::fs::read(p).expect("test key")).expect("PKCS#8")
}

fn bench(c: &mut Criterion) {
    let aid = |s: &str| s.parse::<Aid>().expect("AID");
    let input = Install::for_install_and_make_selectable(
        aid("D07002CA44"),
        aid("D07002CA44900101"),
        aid("D07002CA44900101"),
        Privileges::NONE,
    )
    .token_input()
    .expect("token input");
    let keys = [
        ("rsa1024-pkcs1-sha1", key("token-rsa1024.pem")),
        ("rsa2048-pss-sha256", key("token-rsa2048.pem")),
        ("ecdsa-p256", key("token-p256.pem")),
        ("aes128-cmac", DmSigningKey::aes(&[0x70; 16]).expect("AES")),
    ];
    let mut g = c.benchmark_group("dm_token");
    for (name, k) in &keys {
        g.bench_function(format!("sign/{name}"), |b| {
            b.iter(|| k.sign(black_box(&input)).expect("sign"))
        });
        let sig = k.sign(&input).expect("sign");
        let v = k.verifying_key();
        g.bench_function(format!("verify/{name}"), |b| {
            b.iter(|| {
                v.verify(black_box(&input), black_box(&sig))
                    .expect("verify")
            })
        });
    }
    let rk = ReceiptKey::aes(&[0x71; 16]).expect("AES");
    g.bench_function("receipt/aes128-cmac", |b| {
        b.iter(|| rk.receipt(black_box(&input)).expect("receipt"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
