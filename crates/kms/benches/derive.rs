//! Card key derivations per second: software keystore and SoftHSM2 (when installed).
//!
//! `cargo bench -p kms --bench derive`; criterion reports "elem/s" = derivations (ENC, MAC
//! and DEK of one card) per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kms::{KeyKind, KeyStore, MasterKey, SoftwareKeyStore};
use std::hint::black_box;
use std::path::Path;
use std::process::Command;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

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
    if !Path::new(MODULE).exists()
        || Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!("SoftHSM2 not installed: skipping the PKCS#11 benchmark");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let ok = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "cw-bench",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "softhsm2-util --init-token failed");
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "1234").unwrap();
    let store = kms::open(&format!(
        "pkcs11:{MODULE}?token=cw-bench&pin-file={}",
        pin.display()
    ))
    .unwrap();
    populate(store.as_ref());
    run(c, "derive/softhsm2", store.as_ref());
}

criterion_group!(benches, software, softhsm);
criterion_main!(benches);
