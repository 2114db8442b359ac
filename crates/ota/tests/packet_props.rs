//! Property tests: secure → open round trips for every cipher, checksum and counter
//! combination; opening or parsing arbitrary bytes never panics; scripts round-trip.

use apdu::{Command, Response, StatusWord};
use ota::packet::*;
use ota::script::*;
use proptest::prelude::*;

/// A ciphering algorithm with a key of the right size.
fn cipher() -> impl Strategy<Value = (Algorithm, Vec<u8>)> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 8).prop_map(|k| (Algorithm::Des(DesMode::Cbc), k)),
        prop::collection::vec(any::<u8>(), 16).prop_map(|k| (Algorithm::Des(DesMode::Tdes2Key), k)),
        prop::collection::vec(any::<u8>(), 24).prop_map(|k| (Algorithm::Des(DesMode::Tdes3Key), k)),
        prop::collection::vec(any::<u8>(), 16).prop_map(|k| (Algorithm::Aes, k)),
        prop::collection::vec(any::<u8>(), 24).prop_map(|k| (Algorithm::Aes, k)),
        prop::collection::vec(any::<u8>(), 32).prop_map(|k| (Algorithm::Aes, k)),
    ]
}

/// An integrity mechanism, the KID nibble for it and its key (if any).
fn integrity() -> impl Strategy<Value = (Integrity, u8, Option<Vec<u8>>)> {
    prop_oneof![
        Just((Integrity::None, 0u8, None)),
        Just((Integrity::Rc, RcAlgorithm::Crc16.to_nibble(), None)),
        Just((Integrity::Rc, RcAlgorithm::Crc32.to_nibble(), None)),
        cipher().prop_map(|(a, k)| (Integrity::Cc, a.to_nibble(), Some(k))),
    ]
}

fn counter_mode() -> impl Strategy<Value = CounterMode> {
    prop_oneof![
        Just(CounterMode::NoCounter),
        Just(CounterMode::NoReplayCheck),
        Just(CounterMode::Higher),
        Just(CounterMode::OneHigher),
    ]
}

prop_compose! {
    fn setup()(
        ciphering in any::<bool>(),
        (kic_alg, kic_key) in cipher(),
        (integ, kid_nibble, kid_key) in integrity(),
        mode in counter_mode(),
        counter in 1u64..0xFF_FFFF_FFFF,
        kic_ver in 0u8..16,
        kid_ver in 0u8..16,
        tar in any::<[u8; 3]>(),
        por_second in any::<u8>(),
        por_ciphering in any::<bool>(),
        (por_integ, _, _) in integrity(),
    ) -> (CommandHeader, KeySet, Counter, PorSecurity) {
        // The PoR uses the command's KIc and KID; keep its integrity compatible with the
        // KID (a CC with the KID's algorithm, an RC only when the KID codes a CRC).
        let por_integrity = match (integ, por_integ) {
            (Integrity::Cc, Integrity::Cc | Integrity::None) => por_integ,
            (Integrity::Rc, Integrity::Rc | Integrity::None) => por_integ,
            _ => Integrity::None,
        };
        let mut spi = Spi::from_bytes([0, por_second & 0x23]);
        if spi.por == PorRequest::Reserved {
            spi.por = PorRequest::Always;
        }
        spi.integrity = integ;
        spi.ciphering = ciphering;
        spi.counter = mode;
        spi.por_integrity = por_integrity;
        spi.por_ciphered = por_ciphering;
        let header = CommandHeader {
            spi,
            kic: Kic::new(kic_ver, kic_alg),
            kid: Kid { key_version: kid_ver, nibble: kid_nibble },
            tar: Tar(tar),
            counter: Counter::from_u64(counter).unwrap(),
        };
        let keys = KeySet { kic: Some(Key::new(kic_key)), kid: kid_key.map(Key::new) };
        let stored = Counter::from_u64(counter - 1).unwrap();
        let por = header.por_security();
        (header, keys, stored, por)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn command_round_trip(
        (header, keys, stored) in setup().prop_map(|(h, k, s, _)| (h, k, s)),
        data in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let packet = secure_command(&header, &keys, &data).unwrap();
        let info = PacketInfo::parse(&packet).unwrap();
        prop_assert_eq!(info.tar, header.tar);
        prop_assert_eq!(info.cpl as usize, packet.len() - 2);
        let opened = open_command(&packet, &keys, stored).unwrap();
        prop_assert_eq!(&opened.data, &data);
        prop_assert_eq!(opened.header, header);
        // Replays are refused when the mode checks the counter.
        let replay = open_command(&packet, &keys, header.counter);
        match header.spi.counter {
            CounterMode::Higher | CounterMode::OneHigher => {
                let e = replay.unwrap_err();
                prop_assert_eq!(e.por_status(), Some(ResponseStatus::CounterLow));
            }
            _ => prop_assert!(replay.is_ok()),
        }
    }

    #[test]
    fn command_tamper_is_detected(
        (header, keys, stored) in setup().prop_map(|(h, k, s, _)| (h, k, s)),
        data in prop::collection::vec(any::<u8>(), 1..200),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        prop_assume!(header.spi.integrity != Integrity::None);
        let mut packet = secure_command(&header, &keys, &data).unwrap();
        // Tamper after the length fields, which are checked separately.
        let i = 3 + at.index(packet.len() - 3);
        packet[i] ^= flip;
        prop_assert!(open_command(&packet, &keys, stored).is_err());
    }

    #[test]
    fn response_round_trip(
        (header, keys, _, por) in setup(),
        status in any::<u8>(),
        data in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let rh = ResponseHeader {
            tar: header.tar,
            counter: header.counter,
            status: ResponseStatus::from_byte(status),
        };
        let packet = secure_response(&por, &keys, &rh, &data).unwrap();
        let opened = open_response(&packet, &por, &keys).unwrap();
        prop_assert_eq!(&opened.data, &data);
        prop_assert_eq!(opened.header, rh);
        prop_assert!(opened.secured);
        prop_assert!(!opened.explain().is_empty());
    }

    #[test]
    fn unsecured_error_por_is_recognised(
        (header, keys, _, por) in setup(),
        status in prop::sample::select(vec![1u8, 2, 3, 4, 5, 6, 9, 10]),
    ) {
        prop_assume!(por.integrity != Integrity::None || por.ciphered);
        let rh = ResponseHeader {
            tar: header.tar,
            counter: header.counter,
            status: ResponseStatus::from_byte(status),
        };
        let packet = secure_response(&PorSecurity::NONE, &KeySet::default(), &rh, &[]).unwrap();
        let opened = open_response(&packet, &por, &keys).unwrap();
        prop_assert!(!opened.secured);
        prop_assert_eq!(opened.header, rh);
    }

    #[test]
    fn open_arbitrary_bytes_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        (header, keys, stored, por) in setup(),
    ) {
        let _ = PacketInfo::parse(&bytes);
        let _ = open_command(&bytes, &keys, stored);
        let _ = open_response(&bytes, &por, &keys);
        let _ = unframe_command_sms(&bytes);
        let _ = unframe_response_sms(&bytes);
        // Also a well-formed prefix with arbitrary security bytes after it.
        let mut p = vec![0, 0, 0];
        p.extend_from_slice(&header.spi.to_bytes());
        p.extend_from_slice(&bytes);
        let n = p.len() - 2;
        p[0] = (n >> 8) as u8;
        p[1] = n as u8;
        if let Some(b) = bytes.first() { p[2] = *b; }
        let _ = open_command(&p, &keys, stored);
        let _ = open_response(&p, &por, &keys);
    }

    #[test]
    fn parse_scripts_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = CommandScript::parse(&bytes);
        let _ = ResponseScript::parse(&bytes);
        let _ = decode_compact_commands(&bytes);
        let _ = CompactResponse::parse(&bytes);
        // Behind a template tag, so that the inner parsers are reached.
        for tag in [0xAA, 0xAB, 0xAE, 0xAF] {
            let mut b = vec![tag, if tag & 4 != 0 { 0x80 } else { bytes.len().min(0x7F) as u8 }];
            b.extend_from_slice(&bytes);
            let _ = CommandScript::parse(&b);
            let _ = ResponseScript::parse(&b);
        }
    }
}

fn command() -> impl Strategy<Value = Command> {
    (
        any::<[u8; 4]>(),
        prop::collection::vec(any::<u8>(), 0..300),
        prop::option::of(1u32..=65536),
    )
        .prop_map(|(h, data, le)| Command {
            cla: h[0],
            ins: h[1],
            p1: h[2],
            p2: h[3],
            data,
            le,
        })
}

fn response() -> impl Strategy<Value = Response> {
    (prop::collection::vec(any::<u8>(), 0..300), any::<u16>())
        .prop_map(|(d, sw)| Response::new(d, StatusWord(sw)))
}

fn coding() -> impl Strategy<Value = LengthCoding> {
    prop_oneof![Just(LengthCoding::Definite), Just(LengthCoding::Indefinite)]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..20)
}

proptest! {
    #[test]
    fn command_script_round_trip(
        coding in coding(),
        items in prop::collection::vec(prop_oneof![
            4 => command().prop_map(CommandTlv::Apdu),
            1 => bytes().prop_map(CommandTlv::ImmediateAction),
            1 => bytes().prop_map(CommandTlv::ErrorAction),
            1 => bytes().prop_map(CommandTlv::ScriptChaining),
        ], 0..8),
    ) {
        let s = CommandScript { coding, items };
        let b = s.to_bytes().unwrap();
        prop_assert_eq!(CommandScript::parse(&b).unwrap(), s);
    }

    #[test]
    fn response_script_round_trip(
        coding in coding(),
        items in prop::collection::vec(prop_oneof![
            1 => any::<u32>().prop_map(ResponseTlv::Executed),
            4 => response().prop_map(ResponseTlv::Apdu),
            1 => bytes().prop_map(ResponseTlv::ImmediateActionResponse),
            1 => bytes().prop_map(ResponseTlv::ScriptChainingResponse),
            1 => any::<u8>().prop_map(|b| ResponseTlv::BadFormat(BadFormat::from_byte(b))),
        ], 0..8),
    ) {
        let s = ResponseScript { coding, items };
        prop_assert_eq!(ResponseScript::parse(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn compact_round_trip(cmds in prop::collection::vec(
        (any::<[u8; 4]>(), prop::collection::vec(any::<u8>(), 0..=255), 1u32..=256)
            .prop_map(|(h, data, le)| {
                let c = Command::new(h[0], h[1], h[2], h[3]);
                if is_outgoing(&h) { c.with_le(le) } else { c.with_data(data) }
            }),
        0..6,
    )) {
        let b = encode_compact_commands(&cmds).unwrap();
        prop_assert_eq!(decode_compact_commands(&b).unwrap(), cmds);
    }

    #[test]
    fn compact_response_round_trip(n in any::<u8>(), r in response()) {
        let c = CompactResponse { executed: n, last: r };
        prop_assert_eq!(CompactResponse::parse(&c.to_bytes()).unwrap(), c);
    }
}
