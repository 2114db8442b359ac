//! Rough cost of the card targets' pieces: `cargo run --release -p fuzzing --example timing`.

use std::time::Instant;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("new") {
        for _ in 0..200_000 {
            std::hint::black_box(card::VirtualCard::new(card::CardConfig::default()));
        }
        return;
    }
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(card::VirtualCard::new(card::CardConfig::default()));
    }
    println!("VirtualCard::new: {:?}", t.elapsed() / n);
    let mut card = card::VirtualCard::new(card::CardConfig::default());
    let apdu = apdu::parse_hex("80CA9F7F00").unwrap();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(card.transmit(&apdu));
    }
    println!("transmit GET DATA: {:?}", t.elapsed() / n);
    for (name, target) in fuzzing::TARGETS {
        let dir = format!("{}/../../fuzz/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
        let seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        let t = Instant::now();
        let rounds = 20;
        for _ in 0..rounds {
            for s in &seeds {
                target(s);
            }
        }
        println!(
            "{name}: {:?} per seed",
            t.elapsed() / (rounds * seeds.len() as u32)
        );
    }
}
