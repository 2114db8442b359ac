//! Complete card writes per second against in-process virtual cards, with the software key
//! store, on SQLite (and PostgreSQL when reachable), and where the time goes.
//!
//! A "write" is the whole workflow of `Issuer::write` on a new blank SCP03 card (no
//! applications): submit, claim, identity reads, secure channel with the initial keys,
//! STORE DATA `CF`, PUT KEY, secure channel with the derived keys, STORE DATA of the
//! personalisation, every step recorded before and after, audit entries. The breakdown
//! (printed before the measurements) comes from `Outcome::timing`.
//!
//! The platform runs as `serve` does: the issuer's default lease (renewed when half of it
//! has gone by, not at every step) and the audit log anchored by a signing key (a checkpoint
//! signed per seal of the chain). Next to writes/s it prints **commits per write** (every
//! transaction, and every write outside one) and, on PostgreSQL, **WAL flushes (fsyncs) per
//! write** from `pg_stat_wal`; first, the disk's own time for one 4 KiB write + `fdatasync`,
//! so that the figures mean the same on another disk. With several workers, concurrent
//! writes share commits: the audit chain is sealed once for every worker that committed
//! meanwhile ([`tsm::audit`]), and PostgreSQL flushes concurrent commits together.
//!
//! `cargo bench -p tsm --bench issuance`; `CARDWRIGHT_PG_URL` picks the PostgreSQL server;
//! `ISSUANCE_BENCH_QUICK=1` skips the criterion part; `ISSUANCE_BENCH_ONLY=sqlite|sqlite-full|postgres`
//! measures one backend; `ISSUANCE_BENCH_WRITES=N` sets the writes per measurement (2,000 by
//! default); `ISSUANCE_BENCH_WORKERS=1,8,16` the numbers of
//! concurrent workers measured (1 and 8 by default); `ISSUANCE_BENCH_REPEAT=N` measures each
//! worker count N times and prints the median and the range (one run is noisy on a shared
//! machine); `ISSUANCE_BENCH_KEYS=softhsm` keeps the base key and the audit key in
//! a SoftHSM2 token instead of the software key store.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Fixture, SimCard, SimCards as _, TestStore, CATEGORY};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kms::{KeyKind, SigningAlgorithm, SigningKeyStore as _};
use std::sync::Arc;
use tsm::{Issuer, IssuerConfig};

/// The allocator of the `cardwright` binary, so that the figures are those of `serve`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

static NEXT: AtomicU64 = AtomicU64::new(1_000_000_000);

fn next_number() -> String {
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

/// The key store of a SoftHSM2 token holding the category's base key, and its audit key.
type HsmKeys = (Arc<dyn kms::KeyStore>, Arc<dyn kms::SigningKey>);

/// The platform as `serve` runs it: default issuer configuration, audit anchored; with
/// `hsm`, base key and audit key in that SoftHSM2 token.
fn production_issuer(f: &Fixture, hsm: Option<&HsmKeys>) -> Issuer {
    let (keys, anchor): HsmKeys = match hsm {
        Some((keys, anchor)) => (keys.clone(), anchor.clone()),
        None => {
            let (key, _) = f
                .keys
                .signing_key_or_create(tsm::audit::ANCHOR_KEY_LABEL, SigningAlgorithm::P256)
                .expect("audit key");
            (f.keys.clone(), Arc::from(key))
        }
    };
    Issuer::new(
        f.store().clone().with_audit_anchor(anchor),
        keys,
        IssuerConfig::default(),
    )
}

/// `ISSUANCE_BENCH_KEYS=softhsm`: a SoftHSM2 token with the fixture's base key (version 1,
/// the same KCV) and the audit key (P-256, signing in the token).
fn softhsm_keys() -> Option<HsmKeys> {
    use common::softhsm::{make_tokens, softhsm_installed, MODULE};
    if std::env::var("ISSUANCE_BENCH_KEYS").map_or(true, |k| k != "softhsm")
        || !softhsm_installed("the SoftHSM2 figures")
    {
        return None;
    }
    let dir = make_tokens("cw-bench-softhsm", &["cw-bench"], "1234");
    let config = format!(
        "pkcs11:{MODULE}?token=cw-bench&pin-file={}",
        dir.join("pin").display()
    );
    let keys: Arc<dyn kms::KeyStore> = Arc::from(kms::open(&config).expect("SoftHSM2 token"));
    common::import_key(
        keys.as_ref(),
        CATEGORY,
        KeyKind::Aes,
        &apdu::parse_hex(common::BASE_V1).expect("hex"),
    );
    let signing = config
        .parse::<kms::StoreConfig>()
        .and_then(|c| c.open_signing())
        .expect("SoftHSM2 signing keys");
    let (anchor, _) = signing
        .signing_key_or_create(tsm::audit::ANCHOR_KEY_LABEL, SigningAlgorithm::P256)
        .expect("audit key");
    Some((keys, Arc::from(anchor)))
}

/// The median time of one 4 KiB write + `fdatasync` in `dir` (the disk's own commit cost).
fn fsync_time(dir: &std::path::Path) -> Duration {
    use std::io::{Seek, Write};
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("probe file");
    let block = [0x5Au8; 4096];
    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            file.seek(std::io::SeekFrom::Start(0)).expect("seek");
            file.write_all(&block).expect("write");
            file.sync_data().expect("fdatasync");
            t.elapsed()
        })
        .collect();
    let _ = std::fs::remove_file(&path);
    times.sort();
    times[times.len() / 2]
}

/// WAL flushes of the PostgreSQL server so far (`pg_stat_wal.wal_sync`, PostgreSQL 14+),
/// after waiting for the backends to report their statistics.
fn pg_wal_syncs(ts: &TestStore) -> Option<i64> {
    let mut c = ts.pg_client()?;
    std::thread::sleep(Duration::from_millis(1100));
    c.query_one("SELECT wal_sync FROM pg_stat_wal", &[])
        .ok()
        .map(|r| r.get(0))
}

/// Commits (and PostgreSQL WAL flushes) per write over `n` writes.
fn per_write(ts: &TestStore, commits: u64, wal: Option<i64>, n: u32) -> String {
    let c = (tsm::commits_total() - commits) as f64 / f64::from(n);
    match (wal, pg_wal_syncs(ts)) {
        (Some(a), Some(b)) => format!(
            "{c:.2} commits/write, {:.2} WAL fsyncs/write",
            (b - a) as f64 / f64::from(n)
        ),
        _ => format!("{c:.2} commits/write"),
    }
}

/// `n` new blank cards, made before the clock starts: a virtual card's manufacture (its
/// SCP11 key pair and certificate) is the factory's work, not the platform's.
fn blank_cards(n: u32) -> Vec<SimCard> {
    (0..n).map(|_| SimCard::scp03()).collect()
}

/// Runs `n` writes and prints the mean time per write and its parts.
fn breakdown(name: &str, f: &Fixture, issuer: &Issuer, n: u32) {
    let (commits, wal) = (tsm::commits_total(), pg_wal_syncs(&f.ts));
    let statements = tsm::thread_database_use().statements;
    let mut cards = blank_cards(n);
    let start = Instant::now();
    let (t, apdus) = write_cards(f, issuer, &mut cards);
    let wall = start.elapsed();
    let counts = per_write(&f.ts, commits, wal, n);
    let statements = (tsm::thread_database_use().statements - statements) / u64::from(n);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    let total = per(t.total);
    let pct = |d: Duration| 100.0 * per(d) / total;
    eprintln!(
        "\n{name}: {n} writes in {:.2} s = {:.0} writes/s (one thread), {} APDUs and {statements} statements each, {counts}",
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

/// `threads` workers writing cards at the same time (one reader each): prints and returns
/// the total writes/s.
fn parallel(name: &str, f: &Fixture, issuer: &Issuer, threads: u32, per_thread: u32) -> f64 {
    let (commits, wal) = (tsm::commits_total(), pg_wal_syncs(&f.ts));
    let batches: Vec<Vec<SimCard>> = (0..threads).map(|_| blank_cards(per_thread)).collect();
    let start = Instant::now();
    let timings: Vec<tsm::Timing> = std::thread::scope(|s| {
        let workers: Vec<_> = batches
            .into_iter()
            .map(|mut cards| s.spawn(move || write_cards(f, issuer, &mut cards).0))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect()
    });
    let wall = start.elapsed();
    let n = threads * per_thread;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    let (total, database) = timings
        .iter()
        .fold((Duration::ZERO, Duration::ZERO), |(t, d), x| {
            (t + x.total, d + x.database)
        });
    let rate = f64::from(n) / wall.as_secs_f64();
    eprintln!(
        "{name}: {threads} workers: {n} writes in {:.2} s = {rate:.0} writes/s, {}; a write takes {:.0} µs, {:.0} µs of it in the database",
        wall.as_secs_f64(),
        per_write(&f.ts, commits, wal, n),
        per(total),
        per(database)
    );
    rate
}

/// Writes each blank card of `cards` under a new card number; the writes' summed timings and
/// APDUs.
fn write_cards(f: &Fixture, issuer: &Issuer, cards: &mut [SimCard]) -> (tsm::Timing, u64) {
    let mut t = tsm::Timing::default();
    let mut apdus = 0;
    for card in cards {
        let out = issuer
            .write(&f.ci, &next_number(), CATEGORY, card)
            .expect("write");
        t.total += out.timing.total;
        t.card += out.timing.card;
        t.database += out.timing.database;
        t.keys += out.timing.keys;
        apdus += out.apdus;
    }
    (t, apdus)
}

/// The positive number in environment variable `name`, or `default`.
fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// The median, lowest and highest of `rates` (not empty).
fn spread(mut rates: Vec<f64>) -> (f64, f64, f64) {
    rates.sort_by(f64::total_cmp);
    let mid = rates.len() / 2;
    let median = if rates.len().is_multiple_of(2) {
        (rates[mid - 1] + rates[mid]) / 2.0
    } else {
        rates[mid]
    };
    (median, rates[0], rates[rates.len() - 1])
}

fn bench_backend(c: &mut Criterion, ts: TestStore, hsm: Option<&HsmKeys>) {
    if std::env::var("ISSUANCE_BENCH_ONLY").is_ok_and(|only| only != ts.name) {
        return;
    }
    let name: &'static str = match hsm {
        Some(_) => Box::leak(format!("{} (SoftHSM2)", ts.name).into_boxed_str()),
        None => ts.name,
    };
    let f = Fixture::new(ts, KeyKind::Aes, 0x30, false);
    let issuer = production_issuer(&f, hsm);
    let quick = std::env::var("ISSUANCE_BENCH_QUICK").is_ok_and(|v| v == "1");
    let n = env_number("ISSUANCE_BENCH_WRITES", 2000);
    breakdown(name, &f, &issuer, n);
    let workers: Vec<u32> = std::env::var("ISSUANCE_BENCH_WORKERS")
        .ok()
        .map(|v| v.split(',').filter_map(|w| w.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8]);
    let repeat = env_number("ISSUANCE_BENCH_REPEAT", 1);
    for threads in workers {
        let rates: Vec<f64> = (0..repeat)
            .map(|_| parallel(name, &f, &issuer, threads, n / threads))
            .collect();
        if repeat > 1 {
            let (median, low, high) = spread(rates);
            eprintln!(
                "{name}: {threads} workers: median {median:.0} writes/s over {repeat} runs ({low:.0}-{high:.0})"
            );
        }
    }
    let r = issuer.store().audit_verify().expect("audit verify");
    assert!(r.is_ok(), "{name}: audit chain: {:?}", r.first_bad);
    if quick {
        return;
    }
    let mut g = c.benchmark_group("write");
    g.throughput(Throughput::Elements(1));
    g.sample_size(if name.starts_with("sqlite") { 50 } else { 20 });
    g.measurement_time(Duration::from_secs(5));
    g.bench_function(name, |b| {
        b.iter_batched(
            || (SimCard::scp03(), next_number()),
            |(mut card, number)| {
                black_box(
                    issuer
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
    let dir = tempfile::tempdir().expect("tempdir");
    eprintln!(
        "disk: one 4 KiB write + fdatasync takes {:.0} µs (median of 200)",
        fsync_time(dir.path()).as_secs_f64() * 1e6
    );
    let hsm = softhsm_keys();
    bench_backend(c, common::sqlite(), hsm.as_ref());
    bench_backend(c, common::sqlite_full(), hsm.as_ref());
    if let Some(pg) = common::postgres_production() {
        bench_backend(c, pg, hsm.as_ref());
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
