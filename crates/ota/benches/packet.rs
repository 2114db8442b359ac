//! SCP80 speed: `secure_command` then `open_command` of a typical single-SMS command
//! packet (96 bytes of secured data, 122-byte packet, counter "process if higher", PoR required), for
//! 3DES 2-key CBC with a 3DES CBC-MAC and for AES-128-CBC with AES-CMAC. Each iteration
//! builds the key schedules once per packet, as a server or card would. Prints the
//! packets per second of the median after the criterion report.

use criterion::{criterion_group, criterion_main, Criterion};
use ota::packet::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn setup(alg: Algorithm, key_len: usize) -> (CommandHeader, KeySet, Vec<u8>) {
    let header = CommandHeader {
        spi: Spi::from_bytes([0x16, 0x39]),
        kic: Kic::new(1, alg),
        kid: Kid::for_cc(1, alg),
        tar: Tar([0xB0, 0x00, 0x00]),
        counter: Counter::from_u64(42).expect("counter"),
    };
    let keys = KeySet::new(
        Key::new((0..key_len as u8).collect::<Vec<_>>()),
        Key::new((0..key_len as u8).map(|b| b ^ 0x5A).collect::<Vec<_>>()),
    );
    let data: Vec<u8> = (0..96u8).collect();
    (header, keys, data)
}

fn round_trip(header: &CommandHeader, keys: &KeySet, data: &[u8]) -> usize {
    let p = secure_command(header, keys, data).expect("secure");
    assert!(p.len() <= SINGLE_SMS_MAX_PACKET);
    let stored = Counter::from_u64(41).expect("counter");
    open_command(&p, keys, stored).expect("open").data.len()
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("3des2-cbc+cc", Algorithm::Des(DesMode::Tdes2Key), 16),
        ("aes128-cbc+cmac", Algorithm::Aes, 16),
    ];
    let mut g = c.benchmark_group("scp80-secure+open");
    for (name, alg, len) in cases {
        let (h, k, d) = setup(alg, len);
        g.bench_function(name, |b| {
            b.iter(|| round_trip(black_box(&h), black_box(&k), black_box(&d)))
        });
    }
    g.finish();

    // A plain median of 21 one-tenth-second runs, printed as packets per second.
    for (name, alg, len) in cases {
        let (h, k, d) = setup(alg, len);
        let mut rates: Vec<f64> = (0..21)
            .map(|_| {
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < Duration::from_millis(100) {
                    black_box(round_trip(&h, &k, &d));
                    n += 1;
                }
                n as f64 / start.elapsed().as_secs_f64()
            })
            .collect();
        rates.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{name}: median {:.0} packets/s (secure + open, one core)",
            rates[rates.len() / 2]
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
