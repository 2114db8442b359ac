//! Complete card writes per second against in-process virtual cards, with the software key
//! store, on SQLite (and PostgreSQL when reachable), and where the time goes.
//!
//! A "write" is the whole workflow of `Issuer::write` on a new blank SCP03 card (no
//! applications): submit, claim, identity reads, secure channel with the initial keys,
//! STORE DATA `CF`, PUT KEY, secure channel with the derived keys, STORE DATA of the
//! personalisation, every step recorded before and after, audit entries. The breakdown
//! (printed before the measurements) comes from `Outcome::timing`.
//!
//! `cargo bench -p tsm --bench issuance`; `CARDWRIGHT_PG_URL` picks the PostgreSQL server.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Fixture, SimCard, SimCards as _, TestStore, CATEGORY};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kms::KeyKind;

static NEXT: AtomicU64 = AtomicU64::new(1_000_000_000);

fn next_number() -> String {
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

/// Runs `n` writes and prints the mean time per write and its parts.
fn breakdown(name: &str, f: &Fixture, n: u32) {
    let mut t = tsm::Timing::default();
    let mut apdus = 0;
    let start = Instant::now();
    for _ in 0..n {
        let mut card = SimCard::scp03();
        let out = f
            .issuer
            .write(&f.ci, &next_number(), CATEGORY, &mut card)
            .expect("write");
        t.total += out.timing.total;
        t.card += out.timing.card;
        t.database += out.timing.database;
        t.keys += out.timing.keys;
        apdus += out.apdus;
    }
    let wall = start.elapsed();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    let total = per(t.total);
    let pct = |d: Duration| 100.0 * per(d) / total;
    eprintln!(
        "\n{name}: {n} writes in {:.2} s = {:.0} writes/s (one thread), {} APDUs each",
        wall.as_secs_f64(),
        f64::from(n) / wall.as_secs_f64(),
        apdus / u64::from(n)
    );
    eprintln!("  per write        {total:8.1} µs");
    for (part, d) in [
        ("virtual card", t.card),
        ("database", t.database),
        ("key derivation", t.keys),
        ("host (SCP, codecs)", t.host()),
    ] {
        eprintln!("  {part:<18}{:6.1} µs  {:4.1} %", per(d), pct(d));
    }
}

/// `threads` workers writing cards at the same time (one reader each): total writes/s.
fn parallel(name: &str, f: &Fixture, threads: u32, per_thread: u32) {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per_thread {
                    let mut card = SimCard::scp03();
                    f.issuer
                        .write(&f.ci, &next_number(), CATEGORY, &mut card)
                        .expect("write");
                }
            });
        }
    });
    let n = f64::from(threads * per_thread);
    eprintln!(
        "{name}: {threads} workers: {n} writes in {:.2} s = {:.0} writes/s",
        start.elapsed().as_secs_f64(),
        n / start.elapsed().as_secs_f64()
    );
}

fn bench_backend(c: &mut Criterion, ts: TestStore) {
    let name = ts.name;
    let f = Fixture::new(ts, KeyKind::Aes, 0x30, false);
    breakdown(name, &f, if name == "sqlite" { 2000 } else { 500 });
    parallel(name, &f, 8, if name == "sqlite" { 250 } else { 100 });
    let mut g = c.benchmark_group("write");
    g.throughput(Throughput::Elements(1));
    g.sample_size(if name == "sqlite" { 50 } else { 20 });
    g.measurement_time(Duration::from_secs(5));
    g.bench_function(name, |b| {
        b.iter_batched(
            || (SimCard::scp03(), next_number()),
            |(mut card, number)| {
                black_box(
                    f.issuer
                        .write(&f.ci, &number, CATEGORY, &mut card)
                        .expect("write"),
                )
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn writes(c: &mut Criterion) {
    bench_backend(c, common::sqlite());
    if let Some(pg) = common::postgres() {
        bench_backend(c, pg);
    }
}

fn parts(c: &mut Criterion) {
    // The pieces on their own, for comparison with the breakdown.
    let mut g = c.benchmark_group("part");
    g.bench_function("new virtual card", |b| {
        b.iter(|| black_box(SimCard::scp03()))
    });
    let f = Fixture::new(common::sqlite(), KeyKind::Aes, 0x30, false);
    g.bench_function("derive card keys (software, AES KDF3)", |b| {
        b.iter(|| {
            black_box(
                kms::KeyStore::derive_card_keys(f.keys.as_ref(), CATEGORY, 1, "8986001234567890")
                    .expect("derive"),
            )
        })
    });
    g.bench_function("audit append (sqlite)", |b| {
        let e = tsm::audit::NewEntry::new("bench", "bench.event", "ok").card("1");
        b.iter(|| black_box(f.store().audit_append(&e).expect("append")))
    });
    g.finish();
}

criterion_group!(benches, writes, parts);
criterion_main!(benches);
