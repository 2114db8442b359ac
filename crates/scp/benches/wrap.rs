//! Secure messaging throughput: 1,000 LOAD-sized APDUs (the largest plain data whose wrapped
//! form fits a 255-byte short APDU data field) wrapped by the host, unwrapped by the card,
//! answered with an R-MAC'd (and at level 33, R-ENCRYPTED) `9000`, and unwrapped by the host.

use apdu::{Command, Response};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scp::*;
use std::hint::black_box;

fn open(keys: &StaticKeys, protocol: Protocol, level: SecurityLevel) -> (HostSession, CardSession) {
    let host_challenge = [0x5A; 8];
    let (card_auth, data) = CardAuth::new(
        keys,
        protocol,
        1,
        [0; 10],
        1,
        &host_challenge,
        &[0xA0, 0, 0, 1, 0x51, 0, 0, 0],
    )
    .expect("INITIALIZE UPDATE");
    let iu = InitUpdateResponse::parse(&data).expect("response");
    let auth = HostAuth::new(keys, &host_challenge, &iu, level, protocol.i()).expect("host auth");
    let card = card_auth
        .external_authenticate(&auth.external_authenticate())
        .expect("card auth");
    (auth.finish(&Response::ok(vec![])).expect("finish"), card)
}

fn run(c: &mut Criterion, name: &str, keys: &StaticKeys, protocol: Protocol, level: SecurityLevel) {
    let mut group = c.benchmark_group(name);
    let (probe, _) = open(keys, protocol, level);
    let n = probe.max_plain_len(255);
    let cmd = Command::new(0x80, 0xE8, 0x00, 0x00).with_data(vec![0xC4; n]);
    group.throughput(Throughput::Bytes(1000 * n as u64));
    group.bench_function(format!("{level} 1000x{n}B"), |b| {
        b.iter_batched(
            || open(keys, protocol, level),
            |(mut host, mut card)| {
                for _ in 0..1000 {
                    let wire = host.wrap(black_box(&cmd)).expect("wrap");
                    let plain = card.unwrap(&wire).expect("unwrap");
                    let answer = card.wrap(Response::ok(plain.data[..2].to_vec()));
                    black_box(host.unwrap(answer).expect("unwrap response"));
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let aes = StaticKeys::same(Key::aes(&[0x40; 16]).expect("key"));
    for level in [
        SecurityLevel(0x01),
        SecurityLevel(0x03),
        SecurityLevel(0x33),
    ] {
        run(c, "scp03-aes128", &aes, Protocol::Scp03 { i: 0x70 }, level);
    }
    let des = StaticKeys::same(Key::des3(&[0x40; 16]).expect("key"));
    for level in [SecurityLevel(0x01), SecurityLevel(0x13)] {
        run(c, "scp02", &des, Protocol::Scp02 { i: 0x55 }, level);
    }
}

criterion_group! {
    name = wrap;
    config = Criterion::default().sample_size(10);
    targets = benches
}
criterion_main!(wrap);
