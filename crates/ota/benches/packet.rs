//! SCP80 speed: `secure_command` then `open_command` of a typical single-SMS command
//! packet (96 bytes of secured data, 122-byte packet, counter "process if higher", PoR required), for
//! 3DES 2-key CBC with a 3DES CBC-MAC and for AES-128-CBC with AES-CMAC. Each iteration
//! builds the key schedules once per packet, as a server or card would. The batch cases
//! secure a download's worth of such packets (consecutive counters) with
//! `secure_commands` and open them with `open_commands`, key schedules once per batch.
//! Prints the median packets per second (wall clock, and per CPU-second of the benchmark
//! thread) after the criterion report.
//!
//! For a load-independent figure, `SCP80_COUNT=<case>:<packets>` runs just that many
//! packets of one case (`3des2-cbc+cc`, `3des2-cbc+cc-batch8`, `3des2-cbc+cc-batch64`,
//! `aes128-cbc+cmac`, …)
//! and exits, for `valgrind --tool=callgrind`: the difference of the instruction counts
//! of two runs divided by the difference of their packet counts is the count per packet
//! (see docs/OTA.md, "Speed").

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ota::packet::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

const CASES: [(&str, Algorithm, usize); 2] = [
    ("3des2-cbc+cc", Algorithm::Des(DesMode::Tdes2Key), 16),
    ("aes128-cbc+cmac", Algorithm::Aes, 16),
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

/// The time this thread has run on a CPU, in nanoseconds (Linux:
/// `/proc/thread-self/schedstat`, first field), or `None` elsewhere. On a machine shared
/// with other work, packets per second of CPU time is the figure that does not depend on
/// how often the scheduler lets the benchmark run.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Medians of 21 one-tenth-second runs of `run`, which handles `per_call` packets:
/// packets per second of wall-clock time, and per second of this thread's CPU time.
fn median_rate(per_call: usize, mut run: impl FnMut() -> usize) -> (f64, Option<f64>) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..21 {
        let cpu0 = cpu_ns();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(100) {
            black_box(run());
            n += per_call as u64;
        }
        wall.push(n as f64 / start.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (cpu0, cpu_ns()) {
            cpu.push(n as f64 * 1e9 / (b - a).max(1) as f64);
        }
    }
    let cpu = (cpu.len() == wall.len()).then(|| median(cpu));
    (median(wall), cpu)
}

fn report(name: &str, (wall, cpu): (f64, Option<f64>)) {
    print!("{name}: median {wall:.0} packets/s");
    if let Some(cpu) = cpu {
        print!(", {cpu:.0} packets per CPU-second");
    }
    println!(" (secure + open, one core)");
}

/// `SCP80_COUNT=<case>:<packets>`: run that many packets of one case, for callgrind.
fn count_only(spec: &str) {
    let (case, n) = spec.split_once(':').expect("SCP80_COUNT=<case>:<packets>");
    let n: usize = n.parse().expect("packet count");
    let (alg_name, batch) = match case.rsplit_once("-batch") {
        Some((a, b)) => (a, Some(b.parse::<usize>().expect("-batchN"))),
        None => (case, None),
    };
    let (_, alg, len) = CASES
        .iter()
        .find(|c| c.0 == alg_name)
        .expect("case 3des2-cbc+cc or aes128-cbc+cmac, optionally -batchN");
    let (h, k, d) = setup(*alg, *len);
    let mut total = 0;
    if let Some(b) = batch {
        let items = batch_items(*alg, &d, b);
        for _ in 0..n / b {
            total += batch_round_trip(&items, &k);
        }
    } else {
        for _ in 0..n {
            total += round_trip(&h, &k, &d);
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
        g.bench_function(name, |b| {
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
        report(name, median_rate(1, || round_trip(&h, &k, &d)));
        for n in BATCHES {
            let items = batch_items(alg, &d, n);
            report(
                &format!("{name}-batch{n}"),
                median_rate(n, || batch_round_trip(&items, &k)),
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
