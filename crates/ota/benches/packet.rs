//! SCP80 speed: `secure_command` then `open_command` of a typical single-SMS command
//! packet (96 bytes of secured data, 122-byte packet, counter "process if higher", PoR required), for
//! 3DES 2-key CBC with a 3DES CBC-MAC and for AES-128-CBC with AES-CMAC. Each iteration
//! builds the key schedules once per packet, as a server or card would. The batch cases
//! secure a download's worth of such packets (consecutive counters) with
//! `secure_commands` and open them with `open_commands`, key schedules once per batch.
//! Prints the packets per second of the median after the criterion report.
//!
//! For a load-independent figure, `SCP80_COUNT=<case>:<packets>` runs just that many
//! packets of one case (`3des-single`, `3des-batch8`, `3des-batch64`, `aes-single`, …)
//! and exits, for `valgrind --tool=callgrind`: the difference of the instruction counts
//! of two runs divided by the difference of their packet counts is the count per packet
//! (see docs/OTA.md, "Speed").

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ota::packet::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

const CASES: [(&str, Algorithm, usize); 2] = [
    ("3des", Algorithm::Des(DesMode::Tdes2Key), 16),
    ("aes", Algorithm::Aes, 16),
];
const BATCHES: [usize; 2] = [8, 64];

fn header(alg: Algorithm, counter: u64) -> CommandHeader {
    CommandHeader {
        spi: Spi::from_bytes([0x16, 0x39]),
        kic: Kic::new(1, alg),
        kid: Kid::for_cc(1, alg),
        tar: Tar([0xB0, 0x00, 0x00]),
        counter: Counter::from_u64(counter).expect("counter"),
    }
}

fn setup(alg: Algorithm, key_len: usize) -> (CommandHeader, KeySet, Vec<u8>) {
    let keys = KeySet::new(
        Key::new((0..key_len as u8).collect::<Vec<_>>()),
        Key::new((0..key_len as u8).map(|b| b ^ 0x5A).collect::<Vec<_>>()),
    );
    let data: Vec<u8> = (0..96u8).collect();
    (header(alg, 42), keys, data)
}

fn round_trip(header: &CommandHeader, keys: &KeySet, data: &[u8]) -> usize {
    let p = secure_command(header, keys, data).expect("secure");
    assert!(p.len() <= SINGLE_SMS_MAX_PACKET);
    let stored = Counter::from_u64(41).expect("counter");
    open_command(&p, keys, stored).expect("open").data.len()
}

/// `n` packets of a download (counters 42, 43, …) secured in one batch, then opened in
/// one batch, each against the counter before it. Returns the data bytes opened.
fn batch_round_trip(items: &[(CommandHeader, &[u8])], keys: &KeySet) -> usize {
    let secured = secure_commands(items, keys);
    let packets: Vec<(&[u8], Counter)> = secured
        .iter()
        .zip(items)
        .map(|(p, (h, _))| {
            let p = p.as_ref().expect("secure");
            assert!(p.len() <= SINGLE_SMS_MAX_PACKET);
            let stored = Counter::from_u64(h.counter.value() - 1).expect("counter");
            (p.as_slice(), stored)
        })
        .collect();
    open_commands(&packets, keys)
        .into_iter()
        .map(|o| o.expect("open").data.len())
        .sum()
}

fn batch_items(alg: Algorithm, data: &[u8], n: usize) -> Vec<(CommandHeader, &[u8])> {
    (0..n).map(|i| (header(alg, 42 + i as u64), data)).collect()
}

/// Median packets per second of 21 one-tenth-second runs of `run`, which handles
/// `per_call` packets.
fn median_rate(per_call: usize, mut run: impl FnMut() -> usize) -> f64 {
    let mut rates: Vec<f64> = (0..21)
        .map(|_| {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < Duration::from_millis(100) {
                black_box(run());
                n += per_call as u64;
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[rates.len() / 2]
}

/// `SCP80_COUNT=<case>:<packets>`: run that many packets of one case, for callgrind.
fn count_only(spec: &str) {
    let (case, n) = spec.split_once(':').expect("SCP80_COUNT=<case>:<packets>");
    let n: usize = n.parse().expect("packet count");
    let (alg_name, mode) = case.split_once('-').expect("<alg>-<single|batchN>");
    let (_, alg, len) = CASES
        .iter()
        .find(|c| c.0 == alg_name)
        .expect("case 3des or aes");
    let (h, k, d) = setup(*alg, *len);
    let mut total = 0;
    if mode == "single" {
        for _ in 0..n {
            total += round_trip(&h, &k, &d);
        }
    } else {
        let b: usize = mode
            .strip_prefix("batch")
            .and_then(|b| b.parse().ok())
            .expect("batchN");
        let items = batch_items(*alg, &d, b);
        for _ in 0..n / b {
            total += batch_round_trip(&items, &k);
        }
    }
    println!("{case}: {total} bytes opened");
}

fn bench(c: &mut Criterion) {
    if let Ok(spec) = std::env::var("SCP80_COUNT") {
        count_only(&spec);
        return;
    }
    let mut g = c.benchmark_group("scp80-secure+open");
    for (name, alg, len) in CASES {
        let (h, k, d) = setup(alg, len);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{name}-single"), |b| {
            b.iter(|| round_trip(black_box(&h), black_box(&k), black_box(&d)))
        });
        for n in BATCHES {
            let items = batch_items(alg, &d, n);
            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(format!("{name}-batch{n}"), |b| {
                b.iter(|| batch_round_trip(black_box(&items), black_box(&k)))
            });
        }
    }
    g.finish();

    for (name, alg, len) in CASES {
        let (h, k, d) = setup(alg, len);
        let rate = median_rate(1, || round_trip(&h, &k, &d));
        println!("{name}-single: median {rate:.0} packets/s (secure + open, one core)");
        for n in BATCHES {
            let items = batch_items(alg, &d, n);
            let rate = median_rate(n, || batch_round_trip(&items, &k));
            println!("{name}-batch{n}: median {rate:.0} packets/s (secure + open, one core)");
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
