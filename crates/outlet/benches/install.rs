//! Installs per second through the outlet's module against in-process virtual cards, and
//! how many APDUs an install takes: a 10 KB CAP without registration, and the registration
//! applet with its recipe (a card key pair certified by the module's CA and a module AES
//! key), each with the module on the software key store and (when installed) on a SoftHSM2
//! token. The card is written by the issuer's platform before each measured install (not
//! timed). Through pcscd + vpcd each APDU costs about 0.33 ms more (docs/DESIGN.md), so the
//! APDU count printed gives the reader's share; on a real card the card is the limit.
//!
//! `cargo bench -p outlet --bench install`

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::*;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

static NEXT: AtomicU64 = AtomicU64::new(4_100_000_000_000_000);

fn next_number() -> String {
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

/// A module over `config` (the base key imported), its issuer, and the two packages added.
struct Bench {
    module: outlet::Module,
    issuer: Issuer,
    _dir: tempfile::TempDir,
}

fn bench_fixture(config: String, dir: tempfile::TempDir) -> Bench {
    let keys: Arc<dyn kms::KeyStore> = Arc::from(kms::open(&config).unwrap());
    import_base_key(keys.as_ref(), CATEGORY, BASE);
    let issuer = Issuer::new(keys);
    let pki = pkg::Pki::new(pkg::KeyType::P256);
    let module = outlet::Module::init(
        &dir.path().join("outlet"),
        outlet::InitOptions {
            id: "bench".into(),
            module: config,
            trust: vec![package::TrustAnchor {
                certificate_der: pki.root.der.clone(),
                grantable: gp::Privileges::NONE,
            }],
            category: CATEGORY.into(),
            initial_kvn: INITIAL_KVN,
            ca_name: None,
        },
    )
    .unwrap();
    let mut plain = pkg::template(&["plain"]);
    plain.applications[0].title = "10 KB".into();
    let cap = gp::cap::testing::synthetic_cap(10 * 1024);
    let p = pkg::build_signed(
        plain,
        vec![("plain".into(), cap)],
        pki.chain(),
        Vec::new(),
        &pki.signer.key,
    );
    module.add(&p).unwrap();
    let w = pkg::build_signed(
        wallet_manifest(),
        vec![("wallet".into(), REGISTRATION_CAP.to_vec())],
        pki.chain(),
        Vec::new(),
        &pki.signer.key,
    );
    module.add(&w).unwrap();
    Bench {
        module,
        issuer,
        _dir: dir,
    }
}

fn fixtures() -> Vec<(&'static str, Bench)> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.key");
    std::fs::write(&master, "42".repeat(32)).unwrap();
    let config = format!(
        "file:{}?master-key-file={}",
        dir.path().join("keys.json").display(),
        master.display()
    );
    out.push(("software", bench_fixture(config, dir)));
    if let Some(config) = token() {
        out.push(("softhsm2", bench_fixture(config, tempfile::tempdir().unwrap())));
    }
    out
}

fn installs(c: &mut Criterion) {
    for (store, b) in fixtures() {
        for app in ["plain", "wallet"] {
            let card = b.issuer.card(&next_number());
            let mut probe = Recording::new(card);
            let start = Instant::now();
            let o = b.module.install(&mut probe, app, &mut |_| {}).unwrap();
            eprintln!(
                "\n{store} / {app}: {} APDUs per install ({} LOAD blocks), first install {:.1} ms",
                probe.sent().len(),
                o.blocks,
                start.elapsed().as_secs_f64() * 1e3
            );
            c.bench_function(&format!("install/{store}/{app}"), |bench| {
                bench.iter_batched(
                    || b.issuer.card(&next_number()),
                    |mut card| b.module.install(&mut card, app, &mut |_| {}).unwrap(),
                    BatchSize::PerIteration,
                );
            });
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = installs
}
criterion_main!(benches);
