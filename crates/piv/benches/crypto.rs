//! Card-side cost of the operations a host waits for: RSA-2048 key generation,
//! RSA-2048 and P-256 signatures, each through `process` as a host would send them.

use apdu::{Command, StatusWord};
use criterion::{criterion_group, criterion_main, Criterion};
use piv::{PivApplet, PivConfig, PIV_AID};
use std::hint::black_box;

const MGMT: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];

/// Runs a command with chaining and GET RESPONSE; returns the data.
fn run(applet: &mut PivApplet, ins: u8, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(255).collect()
    };
    let mut out = Vec::new();
    let mut r = apdu::Response::status(StatusWord::SUCCESS);
    for (i, c) in chunks.iter().enumerate() {
        let cla = if i + 1 < chunks.len() { 0x10 } else { 0 };
        r = applet.process(
            &Command::new(cla, ins, p1, p2)
                .with_data(c.to_vec())
                .with_le(256),
        );
        out.extend_from_slice(&r.data);
    }
    while r.sw.sw1() == 0x61 {
        r = applet.process(&Command::new(0, 0xC0, 0, 0).with_le(256));
        out.extend_from_slice(&r.data);
    }
    assert_eq!(r.sw, StatusWord::SUCCESS, "INS {ins:02X}");
    out
}

/// A selected applet with the management key authenticated and the PIN verified.
fn ready() -> PivApplet {
    use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
    let mut a = PivApplet::new(PivConfig::default());
    a.select(&Command::new(0, 0xA4, 4, 0).with_data(PIV_AID.to_vec()));
    let tdes = des::TdesEde3::new_from_slice(&MGMT).expect("key");
    let w = run(&mut a, 0x87, 0x03, 0x9B, &[0x7C, 0x02, 0x80, 0x00]);
    let mut witness: [u8; 8] = w[4..12].try_into().expect("witness");
    tdes.decrypt_block((&mut witness).into());
    let mut d = vec![0x7C, 0x14, 0x80, 0x08];
    d.extend(witness);
    d.extend([0x81, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]);
    let r = run(&mut a, 0x87, 0x03, 0x9B, &d);
    let mut expected = [1u8, 2, 3, 4, 5, 6, 7, 8];
    tdes.encrypt_block((&mut expected).into());
    assert_eq!(r[4..12], expected);
    run(&mut a, 0x20, 0x00, 0x80, b"123456\xFF\xFF");
    a
}

fn sign_request(input: &[u8]) -> Vec<u8> {
    let mut inner = vec![0x82, 0x00];
    inner.extend(apdu::tlv::encode(apdu::tlv::Tag::new(0x81), input));
    apdu::tlv::encode(apdu::tlv::Tag::new(0x7C), &inner)
}

fn benches(c: &mut Criterion) {
    let mut a = ready();
    let mut slow = c.benchmark_group("keygen");
    slow.sample_size(10);
    slow.bench_function("rsa2048_generate", |b| {
        b.iter(|| {
            black_box(run(
                &mut a,
                0x47,
                0x00,
                0x9A,
                &[0xAC, 0x03, 0x80, 0x01, 0x07],
            ))
        })
    });
    slow.finish();

    let mut block = vec![0x00, 0x01];
    block.resize(256 - 20, 0xFF);
    block.push(0x00);
    block.resize(256, 0x42);
    let rsa_req = sign_request(&block);
    c.bench_function("rsa2048_sign", |b| {
        b.iter(|| black_box(run(&mut a, 0x87, 0x07, 0x9A, &rsa_req)))
    });

    run(&mut a, 0x47, 0x00, 0x9D, &[0xAC, 0x03, 0x80, 0x01, 0x11]);
    let ec_req = sign_request(&[0x5A; 32]);
    c.bench_function("p256_sign", |b| {
        b.iter(|| black_box(run(&mut a, 0x87, 0x11, 0x9D, &ec_req)))
    });
}

criterion_group!(crypto, benches);
criterion_main!(crypto);
