//! SCP11 speed: handshakes per second on each side (P-256, AES-128, S8), and the cost of
//! secure messaging after an SCP11 handshake against the same after SCP03 (level 33, one
//! LOAD-sized command wrapped, unwrapped, answered and checked).
//!
//! * `scp11-handshake/host 11a|11b`: ephemeral key generation, the command, two ECDH, the
//!   KDF and the receipt check (the card's answer is precomputed; the OCE key is software).
//! * `scp11-handshake/card 11a|11b`: parsing the request, the ephemeral SD key, two ECDH,
//!   the KDF and the receipt.
//! * `messaging/scp11|scp03`: one round trip of a 239-byte command at level 33.

use apdu::{Command, Response, StatusWord};
use criterion::{criterion_group, criterion_main, Criterion};
use scp::scp11::*;
use scp::*;
use std::hint::black_box;

fn key(curve: Curve, seed: u8) -> PrivateKey {
    let mut s = vec![seed; curve.field_len()];
    s[0] = 0x41;
    PrivateKey::from_scalar(curve, &s).expect("scalar")
}

fn scp11_pair(variant: Variant) -> (HostSession, CardSession) {
    let sk_sd = key(Curve::P256, 1);
    let sk_oce = key(Curve::P256, 2);
    let auth = HostAuth::new(Params::new(variant, 1), sk_sd.public_key()).expect("auth");
    let card = CardParams {
        sk_sd: &sk_sd,
        pk_oce: Some(sk_oce.public_key()),
        variant,
        s16: false,
    };
    let (data, card_session) = card_authenticate(&card, &auth.command().data).expect("card");
    let host = auth
        .finish(
            &Response::new(data, StatusWord::SUCCESS),
            sk_sd.public_key(),
            Some(&sk_oce as &dyn OceKeyAgreement),
        )
        .expect("host");
    (host, card_session)
}

fn scp03_pair() -> (HostSession, CardSession) {
    let keys = StaticKeys::same(Key::aes(&[0x40; 16]).expect("key"));
    let host_challenge = [0x5A; 8];
    let (card_auth, data) = CardAuth::new(
        &keys,
        Protocol::Scp03 { i: 0x70 },
        1,
        [0; 10],
        1,
        &host_challenge,
        &[0xA0, 0, 0, 1, 0x51, 0, 0, 0],
    )
    .expect("INITIALIZE UPDATE");
    let iu = InitUpdateResponse::parse(&data).expect("response");
    let auth = HostAuth::new(&keys, &host_challenge, &iu, SecurityLevel(0x33), 0x70).expect("auth");
    let card = card_auth
        .external_authenticate(&auth.external_authenticate())
        .expect("card auth");
    (auth.finish(&Response::ok(vec![])).expect("finish"), card)
}

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("scp11-handshake");
    let sk_sd = key(Curve::P256, 1);
    let sk_oce = key(Curve::P256, 2);
    for variant in [Variant::A, Variant::B] {
        let params = Params::new(variant, 1);
        let card = CardParams {
            sk_sd: &sk_sd,
            pk_oce: Some(sk_oce.public_key()),
            variant,
            s16: false,
        };
        // Host: a fixed ephemeral key so that one precomputed card answer fits every run;
        // the key generation a real run does is timed separately below.
        let esk = key(Curve::P256, 3);
        let request = HostAuth::with_ephemeral(params, esk.clone())
            .expect("auth")
            .command()
            .data;
        let (answer, _) = card_authenticate(&card, &request).expect("card");
        let answer = Response::new(answer, StatusWord::SUCCESS);
        g.bench_function(format!("host {variant}"), |b| {
            b.iter(|| {
                let auth = HostAuth::with_ephemeral(params, esk.clone()).expect("auth");
                black_box(auth.command());
                auth.finish(
                    &answer,
                    sk_sd.public_key(),
                    Some(&sk_oce as &dyn OceKeyAgreement),
                )
                .expect("finish")
            })
        });
        g.bench_function(format!("card {variant}"), |b| {
            b.iter(|| card_authenticate(&card, black_box(&request)).expect("card"))
        });
    }
    g.bench_function("ephemeral P-256 key generation", |b| {
        b.iter(|| PrivateKey::generate(Curve::P256).expect("key"))
    });
    g.finish();
}

fn messaging(c: &mut Criterion) {
    let mut g = c.benchmark_group("messaging");
    for (name, open) in [
        ("scp11", (|| scp11_pair(Variant::A)) as fn() -> (HostSession, CardSession)),
        ("scp03", scp03_pair),
    ] {
        let (mut host, mut card) = open();
        let n = host.max_plain_len(255);
        let cmd = Command::new(0x80, 0xE8, 0x00, 0x00).with_data(vec![0xC4; n]);
        g.bench_function(format!("{name} level 33 {n}B round trip"), |b| {
            b.iter(|| {
                let wire = host.wrap(black_box(&cmd)).expect("wrap");
                let plain = card.unwrap(&wire).expect("unwrap");
                let answer = card.wrap(Response::ok(plain.data[..2].to_vec()));
                black_box(host.unwrap(answer).expect("unwrap response"))
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = scp11;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = handshakes, messaging
}
criterion_main!(scp11);
