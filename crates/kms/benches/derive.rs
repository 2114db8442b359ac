//! Card key derivations per second: software keystore and SoftHSM2 (when installed).
//!
//! `cargo bench -p kms --bench derive`; criterion reports "elem/s" = derivations (ENC, MAC
//! and DEK of one card) per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kms::{KeyKind, KeyStore, MasterKey, SoftwareKeyStore};
use std::hint::black_box;

#[path = "../tests/common/softhsm.rs"]
mod softhsm;
use softhsm::MODULE;

fn run(c: &mut Criterion, name: &str, store: &dyn KeyStore) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    for (category, label) in [
        ("des", "3DES-128 EMV"),
        ("aes128", "AES-128 KDF3"),
        ("aes256", "AES-256 KDF3"),
    ] {
        let mut n: u64 = 4_111_111_111_111_111;
        group.bench_function(label, |b| {
            b.iter(|| {
                n += 1;
                black_box(store.derive_card_keys(category, 1, &n.to_string()).unwrap())
            })
        });
    }
    group.finish();
}

fn populate(store: &dyn KeyStore) {
    store
        .generate_base_key("des", KeyKind::Des3, 16, None)
        .unwrap();
    store
        .generate_base_key("aes128", KeyKind::Aes, 16, None)
        .unwrap();
    store
        .generate_base_key("aes256", KeyKind::Aes, 32, None)
        .unwrap();
}

fn software(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SoftwareKeyStore::create(dir.path().join("keys.json"), MasterKey::generate().unwrap())
            .unwrap();
    populate(&store);
    run(c, "derive/software", &store);
}

fn softhsm(c: &mut Criterion) {
    if !softhsm::softhsm_installed("the PKCS#11 benchmark") {
        return;
    }
    let dir = softhsm::make_tokens("cw-kms-bench-derive", &["cw-bench"], "1234");
    let pin = dir.join("pin");
    let store = kms::open(&format!(
        "pkcs11:{MODULE}?token=cw-bench&pin-file={}",
        pin.display()
    ))
    .unwrap();
    populate(store.as_ref());
    run(c, "derive/softhsm2", store.as_ref());
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, software, softhsm);
criterion_main!(benches);
