//! SSD key set hand-overs per second: the CI generates a key set, wraps it for the AP's
//! transport key, the AP imports it and reads it once (to open the SSD), both delete it.
//! Software key stores and SoftHSM2 tokens (when installed); also the wrap and the import
//! alone.
//!
//! `cargo bench -p kms --bench keyset`; criterion's "elem/s" = key sets per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kms::{KeyKind, KeySetStore, MasterKey, SoftwareKeyStore};
use std::hint::black_box;
use std::time::Duration;

#[path = "../tests/common/softhsm.rs"]
mod softhsm;
use softhsm::MODULE;

fn run(c: &mut Criterion, name: &str, ci: &dyn KeySetStore, ap: &dyn KeySetStore) {
    let recipient = ap.create_transport_key("bench-transport").unwrap();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    let mut n = 0u64;
    group.bench_function("hand-over AES-128", |b| {
        b.iter(|| {
            n += 1;
            let label = format!("ssd-{n}");
            ci.generate_key_set(&label, KeyKind::Aes, 16).unwrap();
            let w = ci.wrap_key_set_for(&label, &recipient).unwrap();
            ap.import_wrapped_key_set(&label, &w, "bench-transport")
                .unwrap();
            black_box(ap.key_set(&label).unwrap());
            ci.delete_key_set(&label).unwrap();
            ap.delete_key_set(&label).unwrap();
        })
    });
    ci.generate_key_set("fixed", KeyKind::Aes, 16).unwrap();
    group.bench_function("wrap", |b| {
        b.iter(|| black_box(ci.wrap_key_set_for("fixed", &recipient).unwrap()))
    });
    let w = ci.wrap_key_set_for("fixed", &recipient).unwrap();
    group.bench_function("import + delete", |b| {
        b.iter(|| {
            ap.import_wrapped_key_set("imported", &w, "bench-transport")
                .unwrap();
            ap.delete_key_set("imported").unwrap();
        })
    });
    group.finish();
}

fn software(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = |name: &str| {
        SoftwareKeyStore::create(dir.path().join(name), MasterKey::generate().unwrap()).unwrap()
    };
    let (ci, ap) = (store("ci.json"), store("ap.json"));
    run(c, "keyset/software", &ci, &ap);
}

fn softhsm(c: &mut Criterion) {
    if !softhsm::softhsm_installed("the PKCS#11 benchmark") {
        return;
    }
    let dir = softhsm::make_tokens("cw-kms-bench-keyset", &["cw-ci", "cw-ap"], "1234");
    let pin = dir.join("pin");
    let open = |token: &str| {
        kms::open_key_sets(&format!(
            "pkcs11:{MODULE}?token={token}&pin-file={}",
            pin.display()
        ))
        .unwrap()
    };
    let (ci, ap) = (open("cw-ci"), open("cw-ap"));
    run(c, "keyset/softhsm2", ci.as_ref(), ap.as_ref());
    drop((ci, ap));
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, software, softhsm);
criterion_main!(benches);
