//! Prints the time to manufacture a virtual card with and without the SCP11b key set.
fn main() {
    for scp11 in [false, true] {
        let t = std::time::Instant::now();
        for _ in 0..200 {
            let _ = card::VirtualCard::new(card::CardConfig {
                scp11,
                ..card::CardConfig::default()
            });
        }
        println!("scp11 {scp11}: {:?} per card", t.elapsed() / 200);
    }
    let t = std::time::Instant::now();
    let mut k = None;
    for _ in 0..200 {
        k = Some(scp::scp11::PrivateKey::generate(scp::scp11::Curve::P256).unwrap());
    }
    println!("generate: {:?}", t.elapsed() / 200);
    let k = k.unwrap();
    let t = std::time::Instant::now();
    for _ in 0..200 {
        let _ = gp::cert::ecdsa_sign(&k, b"hello");
    }
    println!("sign: {:?}", t.elapsed() / 200);
}
