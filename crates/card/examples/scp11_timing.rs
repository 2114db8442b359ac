//! Card-side SCP11 costs, in process: manufacturing a card with and without the factory
//! SCP11b key set, and SCP11b handshakes (INTERNAL AUTHENTICATE, host and card in this
//! process) per second. `cargo run --release -p card --example scp11_timing`.

use scp::scp11::{HostAuth, Params, PublicKey, Variant};

fn main() {
    for scp11 in [false, true] {
        let t = std::time::Instant::now();
        for _ in 0..100 {
            let _ = card::VirtualCard::new(card::CardConfig {
                scp11,
                ..card::CardConfig::default()
            });
        }
        println!("new card (scp11 {scp11}): {:?}", t.elapsed() / 100);
    }
    let mut card = card::VirtualCard::new(card::CardConfig::default());
    let chain_cmd = gp::scp11::GetCertificates {
        key: gp::scp11::KeyRef::new(0x13, 0x01),
    }
    .to_command();
    let mut r = apdu::Response::parse(&card.transmit(&chain_cmd.to_bytes().unwrap())).unwrap();
    let mut data = std::mem::take(&mut r.data);
    while r.sw.sw1() == 0x61 {
        r = apdu::Response::parse(&card.transmit(&[0, 0xC0, 0, 0, 0])).unwrap();
        data.extend_from_slice(&r.data);
    }
    let bundle = gp::scp11::CertificateBundle::parse(&data).unwrap();
    let leaf = gp::cert::Certificate::parse(bundle.0.last().unwrap()).unwrap();
    let pk_sd: PublicKey = leaf.public_key().clone();
    let n = 200;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let auth = HostAuth::new(Params::new(Variant::B, 0x01), &pk_sd).unwrap();
        let resp = card.transmit(&auth.command().to_bytes().unwrap());
        let resp = apdu::Response::parse(&resp).unwrap();
        auth.finish(&resp, &pk_sd, None).unwrap();
    }
    let per = t.elapsed() / n;
    println!(
        "SCP11b handshake, host + card: {per:?} ({:.0}/s)",
        1.0 / per.as_secs_f64()
    );
}
