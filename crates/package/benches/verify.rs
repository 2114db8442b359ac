//! Package verification and build speed (issue 11: "package verification per second for a
//! 100 KB package"): a package of one 100 KB CAP file (stored, so the archive is 100 KB),
//! root → intermediate → signer, verified with an ECDSA P-256 and with an RSA-2048
//! RSASSA-PSS signer; and `package::build` of the same. `cargo bench -p package`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use package::BuildInput;

fn cap_100k() -> Vec<u8> {
    gp::cap::testing::cap_archive(
        "com/example/synth",
        &gp::cap::testing::synthetic_components(100 * 1024),
        false,
    )
}

fn input(pki: &Pki, cap: &[u8], crl: &[u8]) -> BuildInput {
    BuildInput {
        manifest: template(&["wallet"]),
        load_files: vec![("wallet".into(), cap.to_vec())],
        chain_der: pki.chain(),
        crls_der: vec![crl.to_vec()],
        signing_time: now(),
    }
}

fn bench(c: &mut Criterion) {
    let cap = cap_100k();
    let mut group = c.benchmark_group("package");
    group.throughput(Throughput::Elements(1));
    for (kind, name) in [
        (KeyType::P256, "ecdsa-p256"),
        (KeyType::Rsa, "rsa-pss-2048"),
    ] {
        let pki = Pki::new(kind);
        let policy = pki.policy("");
        // A CRL of the intermediate (not listing the signer) rides along, as it would.
        let crl = pki.inter.crl(&[1, 2, 3]);
        let archive = package::build(input(&pki, &cap, &crl), &pki.signer.key).expect("build");
        assert!(
            (100 * 1024..110 * 1024).contains(&archive.len()),
            "{}",
            archive.len()
        );
        package::verify(&archive, &policy).expect("verifies");
        group.bench_function(format!("verify-100k-{name}"), |b| {
            b.iter(|| package::verify(&archive, &policy).expect("verifies"))
        });
        group.bench_function(format!("build-100k-{name}"), |b| {
            b.iter(|| package::build(input(&pki, &cap, &crl), &pki.signer.key).expect("build"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
