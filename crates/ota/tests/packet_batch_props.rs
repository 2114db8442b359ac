//! Property tests of the batch API: `secure_commands` and `open_commands` give, for every
//! packet, exactly what `secure_command` and `open_command` give one at a time — the
//! same bytes, the same opened packet, the same error — for random DES, 2-key and 3-key
//! 3DES keys, data of 0 to 200 bytes, every SPI integrity/ciphering/counter variant,
//! tampered and malformed packets, and batches of 1 to 9 packets of mixed shapes.

use ota::packet::*;
use proptest::prelude::*;

/// A DES-family key: 8 (DES), 16 (2-key 3DES) or 24 bytes (3-key 3DES), with the
/// algorithm that fits it.
fn des_key() -> impl Strategy<Value = (Algorithm, Vec<u8>)> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 8).prop_map(|k| (Algorithm::Des(DesMode::Cbc), k)),
        prop::collection::vec(any::<u8>(), 16).prop_map(|k| (Algorithm::Des(DesMode::Tdes2Key), k)),
        prop::collection::vec(any::<u8>(), 16).prop_map(|k| (Algorithm::Des(DesMode::Tdes2Key), k)),
        prop::collection::vec(any::<u8>(), 24).prop_map(|k| (Algorithm::Des(DesMode::Tdes3Key), k)),
    ]
}

/// One packet of a batch: SPI variant, algorithms (mostly the ones the keys fit; now
/// and then another one, which must fail or fall back exactly as one at a time), TAR,
/// counter, data.
#[derive(Debug, Clone)]
struct Item {
    integrity: u8,
    ciphering: bool,
    counter_mode: u8,
    por: u8,
    odd_kic: Option<u8>,
    odd_kid: Option<u8>,
    tar: [u8; 3],
    counter: u64,
    data: Vec<u8>,
}

fn item() -> impl Strategy<Value = Item> {
    (
        0u8..4,
        any::<bool>(),
        0u8..4,
        any::<u8>(),
        prop::option::weighted(0.1, 0u8..16),
        prop::option::weighted(0.1, 0u8..16),
        any::<[u8; 3]>(),
        1u64..0xFF_FFFF_FFFF,
        prop::collection::vec(any::<u8>(), 0..=200),
    )
        .prop_map(
            |(integrity, ciphering, counter_mode, por, odd_kic, odd_kid, tar, counter, data)| {
                Item {
                    integrity,
                    ciphering,
                    counter_mode,
                    por,
                    odd_kic,
                    odd_kid,
                    tar,
                    counter,
                    data,
                }
            },
        )
}

fn header(it: &Item, kic_alg: Algorithm, kid_alg: Algorithm) -> CommandHeader {
    let mut spi = Spi::from_bytes([0, it.por & 0x3F]);
    if spi.por == PorRequest::Reserved {
        spi.por = PorRequest::OnError;
    }
    spi.ciphering = it.ciphering;
    spi.counter = [
        CounterMode::NoCounter,
        CounterMode::NoReplayCheck,
        CounterMode::Higher,
        CounterMode::OneHigher,
    ][it.counter_mode as usize];
    let (integrity, kid) = match it.integrity {
        0 => (Integrity::None, Kid::for_cc(1, kid_alg)),
        1 => (Integrity::Rc, Kid::for_rc(1, RcAlgorithm::Crc16)),
        2 => (Integrity::Rc, Kid::for_rc(1, RcAlgorithm::Crc32)),
        _ => (Integrity::Cc, Kid::for_cc(1, kid_alg)),
    };
    spi.integrity = integrity;
    let kid = match it.odd_kid {
        Some(n) => Kid::from_byte(0x10 | n),
        None => kid,
    };
    let kic = match it.odd_kic {
        Some(n) => Kic::from_byte(0x10 | n),
        None => Kic::new(1, kic_alg),
    };
    CommandHeader {
        spi,
        kic,
        kid,
        tar: Tar(it.tar),
        counter: Counter::from_u64(it.counter).unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn batch_equals_one_at_a_time(
        (kic_alg, kic_key) in des_key(),
        (kid_alg, kid_key) in des_key(),
        no_kid in prop::bool::weighted(0.05),
        items in prop::collection::vec(item(), 1..=9),
        tamper in prop::collection::vec(prop::option::weighted(0.3, (any::<prop::sample::Index>(), 1u8..=255)), 9),
        stored_delta in prop::collection::vec(0u64..3, 9),
    ) {
        let keys = KeySet {
            kic: Some(Key::new(kic_key)),
            kid: (!no_kid).then(|| Key::new(kid_key)),
        };
        let headers: Vec<CommandHeader> =
            items.iter().map(|it| header(it, kic_alg, kid_alg)).collect();
        let batch_in: Vec<(CommandHeader, &[u8])> = headers
            .iter()
            .zip(&items)
            .map(|(h, it)| (*h, it.data.as_slice()))
            .collect();

        let secured = secure_commands(&batch_in, &keys);
        prop_assert_eq!(secured.len(), items.len());
        for ((h, data), got) in batch_in.iter().zip(&secured) {
            prop_assert_eq!(got, &secure_command(h, &keys, data));
        }

        // Open what was secured, some of it tampered with,
        // against stored counters below, at and above the packet's.
        let mut packets: Vec<(Vec<u8>, Counter)> = Vec::new();
        for (i, p) in secured.iter().enumerate() {
            let Ok(p) = p else { continue };
            let mut p = p.clone();
            if let Some((at, flip)) = tamper[i] {
                let j = at.index(p.len());
                p[j] ^= flip;
            }
            let stored = (items[i].counter + 1).saturating_sub(stored_delta[i]).min(0xFF_FFFF_FFFF);
            packets.push((p, Counter::from_u64(stored).unwrap()));
        }
        let open_in: Vec<(&[u8], Counter)> =
            packets.iter().map(|(p, c)| (p.as_slice(), *c)).collect();
        let opened = open_commands(&open_in, &keys);
        prop_assert_eq!(opened.len(), open_in.len());
        for ((p, stored), got) in open_in.iter().zip(&opened) {
            let one = open_command(p, &keys, *stored);
            prop_assert_eq!(got, &one);
        }
        // Untampered packets open to their data.
        let untampered = secured
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_ok())
            .map(|(i, _)| i);
        for (i, got) in untampered.zip(&opened) {
            if tamper[i].is_none() {
                if let Ok(o) = got {
                    prop_assert_eq!(&o.data, &items[i].data);
                }
            }
        }
    }

    #[test]
    fn open_batch_of_garbage_equals_one_at_a_time(
        (_, kic_key) in des_key(),
        (_, kid_key) in des_key(),
        packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 1..=9),
    ) {
        let keys = KeySet::new(Key::new(kic_key), Key::new(kid_key));
        // Make some of them pass the CPL check so that they reach the ciphering checks.
        let packets: Vec<Vec<u8>> = packets
            .into_iter()
            .enumerate()
            .map(|(i, mut p)| {
                if i % 2 == 0 && p.len() >= 2 {
                    let cpl = (p.len() - 2) as u16;
                    p[..2].copy_from_slice(&cpl.to_be_bytes());
                }
                p
            })
            .collect();
        let open_in: Vec<(&[u8], Counter)> =
            packets.iter().map(|p| (p.as_slice(), Counter::ZERO)).collect();
        let opened = open_commands(&open_in, &keys);
        for ((p, stored), got) in open_in.iter().zip(&opened) {
            prop_assert_eq!(got, &open_command(p, &keys, *stored));
        }
    }
}

/// A download's packets: same keys, consecutive counters, the last one shorter; the
/// batch opens each against the counter of the one before.
#[test]
fn download_batch_round_trip() {
    let keys = KeySet::new(
        Key::new((0..16u8).collect::<Vec<_>>()),
        Key::new((16..32u8).collect::<Vec<_>>()),
    );
    let alg = Algorithm::Des(DesMode::Tdes2Key);
    let scripts: Vec<Vec<u8>> = (0..20u8)
        .map(|i| vec![i; if i == 19 { 17 } else { 96 }])
        .collect();
    let items: Vec<(CommandHeader, &[u8])> = scripts
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                CommandHeader {
                    spi: Spi::from_bytes([0x16, 0x39]),
                    kic: Kic::new(1, alg),
                    kid: Kid::for_cc(1, alg),
                    tar: Tar([0xB0, 0, 0]),
                    counter: Counter::from_u64(100 + i as u64).unwrap(),
                },
                s.as_slice(),
            )
        })
        .collect();
    let secured: Vec<Vec<u8>> = secure_commands(&items, &keys)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let open_in: Vec<(&[u8], Counter)> = secured
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_slice(), Counter::from_u64(99 + i as u64).unwrap()))
        .collect();
    for (o, s) in open_commands(&open_in, &keys).into_iter().zip(&scripts) {
        assert_eq!(&o.unwrap().data, s);
    }
    // A replay of the whole batch is refused packet by packet.
    for o in open_commands(
        &open_in[..3]
            .iter()
            .map(|(p, _)| (*p, Counter::from_u64(200).unwrap()))
            .collect::<Vec<_>>(),
        &keys,
    ) {
        assert!(matches!(o, Err(Error::CounterLow { .. })));
    }
}
