//! Host ↔ card round trips at every security level of both protocols, tampering, session
//! closing, PUT KEY, and property tests (random APDUs; parsers never panic).

use apdu::{Command, Response, StatusWord};
use proptest::prelude::*;
use scp::*;

const AID: &[u8] = &[0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00];

fn des_keys() -> StaticKeys {
    StaticKeys {
        enc: Key::des3(&[
            0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F,
        ])
        .unwrap(),
        mac: Key::des3(&[0x51; 16]).unwrap(),
        dek: Key::des3(&[0x62; 16]).unwrap(),
    }
}

fn aes_keys(len: usize) -> StaticKeys {
    StaticKeys {
        enc: Key::aes(&vec![0x11; len]).unwrap(),
        mac: Key::aes(&vec![0x22; len]).unwrap(),
        dek: Key::aes(&vec![0x33; len]).unwrap(),
    }
}

/// Runs INITIALIZE UPDATE and EXTERNAL AUTHENTICATE between the two ends.
fn open(keys: &StaticKeys, protocol: Protocol, level: SecurityLevel) -> (HostSession, CardSession) {
    let n = match protocol {
        Protocol::Scp03 { i } if i & 1 != 0 => 16,
        _ => 8,
    };
    let host_challenge = random_challenge(n).unwrap();
    let init = initialize_update(0x30, &host_challenge);
    assert_eq!(
        init.to_bytes().unwrap()[..5],
        [0x80, 0x50, 0x30, 0x00, n as u8]
    );
    let (card_auth, data) =
        CardAuth::new(keys, protocol, 0x30, [7; 10], 0x2A, &host_challenge, AID).unwrap();
    let iu = InitUpdateResponse::parse(&data).unwrap();
    let auth = HostAuth::new(keys, &host_challenge, &iu, level, protocol.i()).unwrap();
    let ea = auth.external_authenticate();
    assert_eq!(
        (ea.cla, ea.ins, ea.p1, ea.p2, ea.data.len()),
        (0x84, 0x82, level.0, 0, 2 * n)
    );
    let card = card_auth.external_authenticate(&ea).unwrap();
    let host = auth.finish(&Response::ok(vec![])).unwrap();
    assert_eq!((host.level(), card.level()), (level, level));
    assert_eq!((host.protocol(), card.protocol()), (protocol, protocol));
    assert_eq!(host.key_version(), 0x30);
    (host, card)
}

fn commands() -> Vec<Command> {
    vec![
        Command::new(0x80, 0xF2, 0x20, 0x02),
        Command::new(0x80, 0xCA, 0x00, 0x66).with_le(256),
        Command::new(0x80, 0xF2, 0x40, 0x02).with_data(vec![0x4F, 0x00]),
        Command::new(0x81, 0xF2, 0x80, 0x02)
            .with_data(vec![0x4F, 0x00])
            .with_le(256),
        Command::new(0x00, 0xA4, 0x04, 0x00)
            .with_data(AID.to_vec())
            .with_le(256),
        Command::new(0x80, 0xE8, 0x00, 0x00).with_data(vec![0xC4; 16]),
        Command::new(0x80, 0xE8, 0x80, 0x01).with_data(vec![0x5A; 200]),
    ]
}

fn levels(protocol: Protocol) -> Vec<SecurityLevel> {
    let mut l = vec![
        SecurityLevel(0x00),
        SecurityLevel(0x01),
        SecurityLevel(0x03),
        SecurityLevel(0x11),
        SecurityLevel(0x13),
    ];
    if matches!(protocol, Protocol::Scp03 { .. }) {
        l.push(SecurityLevel(0x33));
    }
    l
}

fn setups() -> Vec<(StaticKeys, Protocol)> {
    vec![
        (des_keys(), Protocol::Scp02 { i: 0x15 }),
        (des_keys(), Protocol::Scp02 { i: 0x55 }),
        (des_keys(), Protocol::Scp02 { i: 0x04 }),
        (aes_keys(16), Protocol::Scp03 { i: 0x70 }),
        (aes_keys(24), Protocol::Scp03 { i: 0x60 }),
        (aes_keys(32), Protocol::Scp03 { i: 0x70 }),
        (aes_keys(16), Protocol::Scp03 { i: 0x71 }),
        (aes_keys(32), Protocol::Scp03 { i: 0x61 }),
    ]
}

fn exchange(host: &mut HostSession, card: &mut CardSession, cmd: &Command, answer: Response) {
    let wire = host.wrap(cmd).unwrap();
    // The wire form is a valid APDU whose CLA says "secure messaging" when the level MACs.
    let bytes = wire.to_bytes().unwrap();
    assert_eq!(Command::parse(&bytes).unwrap(), wire);
    if host.level().c_mac() {
        assert_eq!(wire.cla & 0x04, 0x04);
        assert!(wire.data.len() <= 255 || matches!(host.protocol(), Protocol::Scp03 { .. }));
    } else {
        assert_eq!(&wire, cmd);
    }
    if host.level().c_decryption() && cmd.data.len() >= 4 {
        assert!(
            !wire.data.windows(4).any(|w| w == &cmd.data[..4])
                || cmd.data.iter().all(|&b| b == cmd.data[0])
        );
    }
    let plain = card.unwrap(&wire).unwrap();
    assert_eq!(&plain, cmd);
    let wrapped = card.wrap(answer.clone());
    assert_eq!(host.unwrap(wrapped).unwrap(), answer);
}

#[test]
fn every_level_both_protocols() {
    let mut n = 0;
    for (keys, protocol) in setups() {
        for level in levels(protocol) {
            if let Protocol::Scp03 { i } = protocol {
                if (level.r_mac() && i & 0x20 == 0) || (level.r_encryption() && i & 0x40 == 0) {
                    continue;
                }
            }
            let (mut host, mut card) = open(&keys, protocol, level);
            for (k, cmd) in commands().iter().enumerate() {
                let answer = match k % 4 {
                    0 => Response::ok(vec![]),
                    1 => Response::ok(vec![0xE3; 3 + k * 7]),
                    2 => Response::status(StatusWord(0x6A88)),
                    _ => Response::new(vec![0x9F; 20], StatusWord(0x6310)),
                };
                exchange(&mut host, &mut card, cmd, answer);
                n += 1;
            }
        }
    }
    assert!(n > 200, "{n}");
}

#[test]
fn tampered_command_is_rejected_and_closes_the_session() {
    for (keys, protocol) in setups() {
        for level in [SecurityLevel(0x01), SecurityLevel(0x03)] {
            let cmd = Command::new(0x80, 0xE2, 0x90, 0x00)
                .with_data(vec![0x42; 21])
                .with_le(256);
            // Every byte of the data field and of INS/P1/P2.
            let len = {
                let (mut h, _) = open(&keys, protocol, level);
                h.wrap(&cmd).unwrap().data.len()
            };
            for pos in 0..len + 3 {
                let (mut host, mut card) = open(&keys, protocol, level);
                let mut wire = host.wrap(&cmd).unwrap();
                match pos {
                    p if p < len => wire.data[p] ^= 0x01,
                    p if p == len => wire.ins ^= 0x01,
                    p if p == len + 1 => wire.p1 ^= 0x80,
                    _ => wire.p2 ^= 0x01,
                }
                assert_eq!(
                    card.unwrap(&wire),
                    Err(Error::MacMismatch),
                    "{protocol} {level} byte {pos}"
                );
                assert!(card.is_closed());
                // Even the genuine command is refused now.
                assert_eq!(card.unwrap(&host.wrap(&cmd).unwrap()), Err(Error::Closed));
            }
            // Logical channel bits in CLA are MACed too; clearing the SM bit is refused.
            let (mut host, mut card) = open(&keys, protocol, level);
            let mut wire = host.wrap(&cmd).unwrap();
            wire.cla ^= 0x01;
            assert_eq!(card.unwrap(&wire), Err(Error::MacMismatch));
            let (mut host, mut card) = open(&keys, protocol, level);
            let mut wire = host.wrap(&cmd).unwrap();
            wire.cla &= !0x04;
            assert_eq!(card.unwrap(&wire), Err(Error::MissingSecureMessaging));
            // Replaying a command is refused (the MAC chain has moved on).
            let (mut host, mut card) = open(&keys, protocol, level);
            let wire = host.wrap(&cmd).unwrap();
            card.unwrap(&wire).unwrap();
            assert_eq!(card.unwrap(&wire), Err(Error::MacMismatch));
        }
    }
}

#[test]
fn tampered_response_is_rejected() {
    for (keys, protocol) in setups() {
        for level in levels(protocol).into_iter().filter(|l| l.r_mac()) {
            if let Protocol::Scp03 { i } = protocol {
                if i & 0x20 == 0 || (level.r_encryption() && i & 0x40 == 0) {
                    continue;
                }
            }
            let cmd = Command::new(0x80, 0xCA, 0x00, 0x66).with_le(256);
            let answer = Response::ok(vec![0x66; 30]);
            let len = {
                let (mut h, mut c) = open(&keys, protocol, level);
                c.unwrap(&h.wrap(&cmd).unwrap()).unwrap();
                c.wrap(answer.clone()).data.len()
            };
            for pos in 0..=len {
                let (mut host, mut card) = open(&keys, protocol, level);
                card.unwrap(&host.wrap(&cmd).unwrap()).unwrap();
                let mut wire = card.wrap(answer.clone());
                if pos < len {
                    wire.data[pos] ^= 0x10;
                } else {
                    wire.sw = StatusWord(0x6310);
                }
                assert_eq!(
                    host.unwrap(wire),
                    Err(Error::MacMismatch),
                    "{protocol} {level} byte {pos}"
                );
                assert!(host.is_closed());
                assert_eq!(host.wrap(&cmd), Err(Error::Closed));
            }
            // A response cut short of its R-MAC is rejected too.
            let (mut host, mut card) = open(&keys, protocol, level);
            card.unwrap(&host.wrap(&cmd).unwrap()).unwrap();
            let mut wire = card.wrap(answer.clone());
            wire.data.truncate(4);
            assert!(host.unwrap(wire).is_err());
        }
    }
}

#[test]
fn external_authenticate_failures() {
    for (keys, protocol) in setups() {
        let level = SecurityLevel(0x01);
        let n = if protocol.i() & 1 != 0 && protocol.scp() == 3 {
            16
        } else {
            8
        };
        let host_challenge = vec![0x5C; n];
        let fresh =
            || CardAuth::new(&keys, protocol, 0x30, [7; 10], 5, &host_challenge, AID).unwrap();
        let (card_auth, data) = fresh();
        let iu = InitUpdateResponse::parse(&data).unwrap();
        let auth = HostAuth::new(&keys, &host_challenge, &iu, level, protocol.i()).unwrap();
        let good = auth.external_authenticate();
        // Wrong host cryptogram with a MAC the card accepts cannot be forged; flip the MAC.
        let mut bad_mac = good.clone();
        *bad_mac.data.last_mut().unwrap() ^= 1;
        assert_eq!(
            card_auth.external_authenticate(&bad_mac).unwrap_err(),
            Error::MacMismatch
        );
        // A different card challenge (new session) makes the old EXTERNAL AUTHENTICATE fail.
        let pseudo_random = match protocol {
            Protocol::Scp02 { i } => i & 0x40 != 0,
            Protocol::Scp03 { i } => i & 0x10 != 0,
        };
        if !pseudo_random {
            let (other, _) = fresh();
            assert!(other.external_authenticate(&good).is_err());
        }
        // Wrong shape.
        let (card_auth, _) = fresh();
        let mut short = good.clone();
        short.data.pop();
        assert!(matches!(
            card_auth.external_authenticate(&short),
            Err(Error::Malformed { .. })
        ));
        // The card's status word is reported.
        let auth = HostAuth::new(&keys, &host_challenge, &iu, level, protocol.i()).unwrap();
        assert_eq!(
            auth.finish(&Response::status(StatusWord(0x6300)))
                .unwrap_err(),
            Error::Status(StatusWord(0x6300))
        );
        // Wrong keys on the host: the card cryptogram check fails first.
        let wrong = match protocol {
            Protocol::Scp02 { .. } => StaticKeys::same(Key::des3(&[0x01; 16]).unwrap()),
            Protocol::Scp03 { .. } => aes_keys(16 + 16 * usize::from(keys.enc.len() == 16)),
        };
        assert_eq!(
            HostAuth::new(&wrong, &host_challenge, &iu, level, protocol.i()).unwrap_err(),
            Error::CardCryptogramMismatch
        );
    }
}

#[test]
fn scp02_host_cryptogram_mismatch() {
    let keys = des_keys();
    let protocol = Protocol::Scp02 { i: 0x15 };
    let (card_auth, data) = CardAuth::new(&keys, protocol, 0x30, [7; 10], 5, &[1; 8], AID).unwrap();
    let iu = InitUpdateResponse::parse(&data).unwrap();
    // A host that used another host challenge computes another host cryptogram, with a
    // valid MAC over it: the card must report the cryptogram.
    let other = HostAuth::new(&keys, &[1; 8], &iu, SecurityLevel::MAC, 0x15).unwrap();
    let mut ea = other.external_authenticate();
    assert!(card_auth.external_authenticate(&ea).is_ok());
    let (card_auth, data) = CardAuth::new(&keys, protocol, 0x30, [7; 10], 5, &[2; 8], AID).unwrap();
    let iu2 = InitUpdateResponse::parse(&data).unwrap();
    // Same session keys (same counter), different challenges: MAC ok only if recomputed.
    assert_eq!(iu.sequence_counter, iu2.sequence_counter);
    ea.data[0] ^= 1;
    assert!(card_auth.external_authenticate(&ea).is_err());
}

#[test]
fn scp02_pseudo_random_challenge_is_deterministic() {
    let keys = des_keys();
    let a = CardAuth::new(
        &keys,
        Protocol::Scp02 { i: 0x55 },
        1,
        [0; 10],
        9,
        &[1; 8],
        AID,
    )
    .unwrap()
    .1;
    let b = CardAuth::new(
        &keys,
        Protocol::Scp02 { i: 0x55 },
        1,
        [0; 10],
        9,
        &[1; 8],
        AID,
    )
    .unwrap()
    .1;
    let c = CardAuth::new(
        &keys,
        Protocol::Scp02 { i: 0x55 },
        1,
        [0; 10],
        10,
        &[1; 8],
        AID,
    )
    .unwrap()
    .1;
    let challenge = |d: &[u8]| InitUpdateResponse::parse(d).unwrap().card_challenge;
    assert_eq!(challenge(&a), challenge(&b));
    assert_ne!(challenge(&a), challenge(&c));
    assert!(CardAuth::new(
        &keys,
        Protocol::Scp02 { i: 0x55 },
        1,
        [0; 10],
        0x1_0000,
        &[1; 8],
        AID
    )
    .is_err());
    assert!(CardAuth::new(
        &aes_keys(16),
        Protocol::Scp03 { i: 0x70 },
        1,
        [0; 10],
        0x100_0000,
        &[1; 8],
        AID
    )
    .is_err());
    // Random challenges differ.
    let r1 = CardAuth::new(
        &aes_keys(16),
        Protocol::Scp03 { i: 0x60 },
        1,
        [0; 10],
        1,
        &[1; 8],
        AID,
    )
    .unwrap()
    .1;
    let r2 = CardAuth::new(
        &aes_keys(16),
        Protocol::Scp03 { i: 0x60 },
        1,
        [0; 10],
        1,
        &[1; 8],
        AID,
    )
    .unwrap()
    .1;
    assert_ne!(challenge(&r1), challenge(&r2));
    assert_eq!(
        InitUpdateResponse::parse(&r1).unwrap().sequence_counter,
        None
    );
}

#[test]
fn level_and_key_checks() {
    // SCP03 levels the card's i does not offer are refused before anything is sent.
    let keys = aes_keys(16);
    let (_c, data) = CardAuth::new(
        &keys,
        Protocol::Scp03 { i: 0x00 },
        1,
        [0; 10],
        1,
        &[1; 8],
        AID,
    )
    .unwrap();
    let iu = InitUpdateResponse::parse(&data).unwrap();
    assert!(matches!(
        HostAuth::new(&keys, &[1; 8], &iu, SecurityLevel(0x13), 0),
        Err(Error::Unsupported(_))
    ));
    assert!(HostAuth::new(&keys, &[1; 8], &iu, SecurityLevel(0x03), 0).is_ok());
    assert!(HostAuth::new(&keys, &[1; 16], &iu, SecurityLevel(0x03), 0).is_err());
    // R-ENCRYPTION does not exist in SCP02.
    let (_c, data) = CardAuth::new(
        &des_keys(),
        Protocol::Scp02 { i: 0x55 },
        1,
        [0; 10],
        1,
        &[1; 8],
        AID,
    )
    .unwrap();
    let iu = InitUpdateResponse::parse(&data).unwrap();
    assert!(HostAuth::new(&des_keys(), &[1; 8], &iu, SecurityLevel(0x33), 0x55).is_err());
    // Mixed-up key kinds.
    assert!(CardAuth::new(
        &des_keys(),
        Protocol::Scp03 { i: 0x70 },
        1,
        [0; 10],
        1,
        &[1; 8],
        AID
    )
    .is_err());
    assert!(CardAuth::new(
        &aes_keys(16),
        Protocol::Scp02 { i: 0x55 },
        1,
        [0; 10],
        1,
        &[1; 8],
        AID
    )
    .is_err());
}

#[test]
fn wrap_limits_and_max_plain_len() {
    for (keys, protocol) in setups() {
        for level in [
            SecurityLevel(0x00),
            SecurityLevel(0x01),
            SecurityLevel(0x03),
        ] {
            let (mut host, mut card) = open(&keys, protocol, level);
            let max = host.max_plain_len(255);
            let fits = Command::new(0x80, 0xE8, 0, 0).with_data(vec![1; max]);
            let w = host.wrap(&fits).unwrap();
            assert!(
                w.data.len() <= 255,
                "{protocol} {level}: {max} -> {}",
                w.data.len()
            );
            assert_eq!(card.unwrap(&w).unwrap(), fits);
            let too_big = Command::new(0x80, 0xE8, 0, 1).with_data(vec![1; max + 1]);
            match (protocol, host.wrap(&too_big)) {
                (Protocol::Scp02 { .. }, r) if level.c_mac() => {
                    assert!(matches!(r, Err(Error::Wrap(_))))
                }
                (_, r) => assert!(r.unwrap().data.len() > 255),
            }
        }
    }
    // Commands that already carry secure messaging, or use another CLA coding, are refused.
    let (mut host, _) = open(&des_keys(), Protocol::Scp02 { i: 0x15 }, SecurityLevel::MAC);
    assert!(matches!(
        host.wrap(&Command::new(0x84, 0xF2, 0, 0)),
        Err(Error::Wrap(_))
    ));
    assert!(matches!(
        host.wrap(&Command::new(0x40, 0xF2, 0, 0)),
        Err(Error::Wrap(_))
    ));
    // SCP03 goes to extended length when it must; the card follows.
    let (mut host, mut card) = open(
        &aes_keys(16),
        Protocol::Scp03 { i: 0x70 },
        SecurityLevel(0x33),
    );
    let big = Command::new(0x80, 0xE8, 0, 0)
        .with_data(vec![7; 1000])
        .with_le(65536);
    let w = host.wrap(&big).unwrap();
    assert!(w.is_extended());
    assert_eq!(
        card.unwrap(&Command::parse(&w.to_bytes().unwrap()).unwrap())
            .unwrap(),
        big
    );
    let answer = Response::ok(vec![9; 3000]);
    assert_eq!(host.unwrap(card.wrap(answer.clone())).unwrap(), answer);
}

#[test]
fn put_key_round_trip() {
    for (keys, protocol) in setups() {
        let (host, card) = open(&keys, protocol, SecurityLevel(0x03));
        let new_keys = match protocol {
            Protocol::Scp02 { .. } => StaticKeys {
                enc: Key::des3(&[0xA1; 16]).unwrap(),
                mac: Key::des3(&[0xA2; 24]).unwrap(),
                dek: Key::des3(&[0xA3; 16]).unwrap(),
            },
            Protocol::Scp03 { .. } => StaticKeys {
                enc: Key::aes(&[0xB1; 16]).unwrap(),
                mac: Key::aes(&[0xB2; 24]).unwrap(),
                dek: Key::aes(&[0xB3; 32]).unwrap(),
            },
        };
        let data = put_key::key_set_data(0x31, &new_keys, &host).unwrap();
        let cmd = put_key::command(0x30, data.clone());
        assert_eq!(cmd.to_bytes().unwrap()[..4], [0x80, 0xD8, 0x30, 0x81]);
        // No clear key byte appears in the data field.
        for k in new_keys.iter() {
            assert!(!data.windows(8).any(|w| w == &k.expose()[..8]));
        }
        let (kvn, blocks) = put_key::parse_key_set_data(&data).unwrap();
        assert_eq!((kvn, blocks.len()), (0x31, 3));
        let mut kcvs = Vec::new();
        for (b, want) in blocks.iter().zip(new_keys.iter()) {
            let key = card.decrypt_key(b.kind, &b.encrypted, b.key_len).unwrap();
            assert_eq!(&key, want);
            assert_eq!(b.kcv, key.kcv());
            kcvs.push(key.kcv());
        }
        let resp = put_key::response_data(kvn, &kcvs);
        put_key::check_response(&resp, 0x31, &new_keys).unwrap();
        let mut bad = resp.clone();
        bad[4] ^= 1;
        assert_eq!(
            put_key::check_response(&bad, 0x31, &new_keys),
            Err(Error::KcvMismatch)
        );
        assert_eq!(
            put_key::check_response(&resp, 0x32, &new_keys),
            Err(Error::KcvMismatch)
        );
        assert!(put_key::check_response(&resp[..7], 0x31, &new_keys).is_err());
    }
}

#[test]
fn put_key_data_layout() {
    // A 3DES key block is 80 10 <16> 03 <KCV>; an AES-128 block 88 11 10 <16> 03 <KCV>.
    let (host, _) = open(&des_keys(), Protocol::Scp02 { i: 0x55 }, SecurityLevel::MAC);
    let d = put_key::key_set_data(2, &des_keys(), &host).unwrap();
    assert_eq!(d.len(), 1 + 3 * 22);
    assert_eq!((d[0], d[1], d[2], d[19]), (2, 0x80, 0x10, 0x03));
    assert_eq!(d[20..23], des_keys().enc.kcv());
    let (host, _) = open(
        &aes_keys(16),
        Protocol::Scp03 { i: 0x70 },
        SecurityLevel::MAC,
    );
    let d = put_key::key_set_data(3, &aes_keys(16), &host).unwrap();
    assert_eq!(d.len(), 1 + 3 * 23);
    assert_eq!((d[1], d[2], d[3], d[20]), (0x88, 0x11, 0x10, 0x03));
    assert_eq!(d[21..24], aes_keys(16).enc.kcv());
}

#[test]
fn put_key_parser_errors() {
    use put_key::parse_key_set_data as p;
    assert!(p(&[]).is_err());
    assert!(p(&[1]).is_err());
    assert!(p(&[1, 0x80, 0x10, 0, 0]).is_err());
    assert!(matches!(
        p(&[1, 0x99, 0x01, 0, 0]),
        Err(Error::Unsupported(_))
    ));
    assert!(p(&[1, 0x88, 0x00, 0x00]).is_err());
    assert!(p(&[1, 0x88, 0x02, 0x10, 0x00, 0x00]).is_err());
    assert!(p(&[1, 0x80, 0x85]).is_err());
    let ok = p(&[1, 0x80, 0x02, 0xAA, 0xBB, 0x00]).unwrap();
    assert_eq!(ok.1[0].kcv, Vec::<u8>::new());
}

fn arb_command() -> impl Strategy<Value = Command> {
    (
        prop::sample::select(vec![0x00u8, 0x01, 0x02, 0x03, 0x10, 0x80, 0x81, 0x83, 0x90]),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..=239),
        prop::option::of(1u32..=256),
    )
        .prop_map(|(cla, ins, p1, p2, data, le)| Command {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_sequences_round_trip(
        setup in 0usize..8,
        level in prop::sample::select(vec![0x00u8, 0x01, 0x03, 0x11, 0x13, 0x33]),
        cmds in prop::collection::vec((arb_command(), prop::collection::vec(any::<u8>(), 0..=200), any::<u16>()), 1..6),
    ) {
        let (keys, protocol) = setups().swap_remove(setup);
        let level = SecurityLevel(level);
        if let Protocol::Scp03 { i } = protocol {
            prop_assume!(!(level.r_mac() && i & 0x20 == 0 || level.r_encryption() && i & 0x40 == 0));
        } else {
            prop_assume!(!level.r_encryption());
        }
        let (mut host, mut card) = open(&keys, protocol, level);
        for (cmd, data, sw) in cmds {
            let wire = host.wrap(&cmd).unwrap();
            prop_assert_eq!(card.unwrap(&wire).unwrap(), cmd);
            let answer = Response::new(data, StatusWord(sw));
            let sw = answer.sw;
            let error = !(sw.0 == 0x9000 || sw.sw1() == 0x62 || sw.sw1() == 0x63);
            let expected = if protocol.scp() == 3 && level.r_mac() && error {
                Response::status(sw) // Amendment D §6.2.5: only the status word
            } else {
                answer.clone()
            };
            prop_assert_eq!(host.unwrap(card.wrap(answer)).unwrap(), expected);
        }
    }

    #[test]
    fn card_never_panics_on_garbage(setup in 0usize..8, bytes in prop::collection::vec(any::<u8>(), 4..300)) {
        let (keys, protocol) = setups().swap_remove(setup);
        let (_, mut card) = open(&keys, protocol, SecurityLevel(0x03));
        if let Ok(cmd) = Command::parse(&bytes) {
            let _ = card.unwrap(&cmd);
        }
        let (mut host, _) = open(&keys, protocol, SecurityLevel(0x13));
        let _ = host.unwrap(Response::parse(&bytes).unwrap());
        let _ = InitUpdateResponse::parse(&bytes);
        let _ = put_key::parse_key_set_data(&bytes);
        let n = if protocol.i() & 1 != 0 && protocol.scp() == 3 { 16 } else { 8 };
        let (auth, _) = CardAuth::new(&keys, protocol, 1, [0; 10], 1, &vec![0; n], AID).unwrap();
        if let Ok(cmd) = Command::parse(&bytes) {
            let _ = auth.external_authenticate(&cmd);
        }
    }

    #[test]
    fn init_update_response_round_trip(
        kdd in any::<[u8; 10]>(), kvn in any::<u8>(), i in any::<u8>(), s16 in any::<bool>(),
        seq in prop::option::of(any::<[u8; 3]>()), scp02 in any::<bool>(), body in any::<[u8; 32]>(),
    ) {
        let r = if scp02 {
            InitUpdateResponse { kdd, key_version: kvn, scp: 2, i: None, sequence_counter: Some(body[..2].to_vec()),
                card_challenge: body[2..8].to_vec(), card_cryptogram: body[8..16].to_vec() }
        } else {
            let n = if s16 { 16 } else { 8 };
            InitUpdateResponse { kdd, key_version: kvn, scp: 3, i: Some(i), sequence_counter: seq.map(|s| s.to_vec()),
                card_challenge: body[..n].to_vec(), card_cryptogram: body[32 - n..].to_vec() }
        };
        prop_assert_eq!(InitUpdateResponse::parse(&r.to_bytes()).unwrap(), r);
    }
}
