//! Property tests: the applet answers every command with a status word and never
//! panics. (The BER-TLV codec, `apdu::tlv`, has its own in `crates/apdu/tests`.)

mod common;

use apdu::tlv::{self, Tag};
use apdu::Command;
use common::*;
use proptest::prelude::*;

/// Instructions the applet knows, plus anything else.
fn ins() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(vec![
            0xA4u8, 0xCB, 0xDB, 0x20, 0x24, 0x2C, 0x87, 0x47, 0xC0, 0xF7, 0xF8, 0xFA, 0xFB, 0xFD,
            0xFE, 0xFF,
        ]),
        any::<u8>(),
    ]
}

/// Command data that is often almost right: TLV-shaped bodies with PIV tags.
fn data() -> impl Strategy<Value = Vec<u8>> {
    let tag = prop::sample::select(vec![
        0x5Cu32, 0x53, 0x7C, 0x80, 0x81, 0x82, 0x85, 0xAC, 0xAA, 0xAB, 0x7E, 0x5FC105, 0x01, 0x06,
    ]);
    let leaf = (tag, prop::collection::vec(any::<u8>(), 0..40))
        .prop_map(|(t, v)| tlv::encode(Tag::new(t), &v));
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(leaf.clone(), 0..4).prop_map(|v| v.concat()),
        (
            prop::sample::select(vec![0x7Cu32, 0xAC, 0x53]),
            prop::collection::vec(leaf, 0..4)
        )
            .prop_map(|(t, v)| tlv::encode(Tag::new(t), &v.concat())),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    (
        prop::sample::select(vec![0x00u8, 0x10, 0x80, 0x0C, 0x01]),
        ins(),
        prop_oneof![Just(0x00u8), Just(0x3F), Just(0xFF), any::<u8>()],
        prop_oneof![
            prop::sample::select(vec![0x80u8, 0x81, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0xFF, 0x82]),
            any::<u8>()
        ],
        data(),
        prop::option::of(1u32..=65536),
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
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn process_never_panics_unauthenticated(cmds in prop::collection::vec(command(), 1..12)) {
        let mut h = Host::new();
        for cmd in &cmds {
            let r = h.applet.process(cmd);
            prop_assert!(r.sw.0 >= 0x6100, "a status word is always set");
        }
    }

    #[test]
    fn process_never_panics_authenticated(cmds in prop::collection::vec(command(), 1..12)) {
        // With the PIN verified and the management key authenticated, commands reach
        // the key and object code paths (key generation is excluded to stay fast).
        let mut h = Host::new();
        h.authenticate_default();
        h.verify_pin(b"123456");
        for cmd in cmds.iter().filter(|c| c.ins != 0x47) {
            let r = h.applet.process(cmd);
            prop_assert!(r.sw.0 >= 0x6100);
        }
    }

    #[test]
    fn import_key_never_panics(
        alg in prop::sample::select(vec![0x05u8, 0x06, 0x07, 0x11, 0x14, 0x00]),
        parts in prop::collection::vec((1u32..=8, prop_oneof![
            prop::collection::vec(any::<u8>(), 0..3),
            prop::collection::vec(any::<u8>(), 60..=66),
            prop::collection::vec(any::<u8>(), 126..=130),
        ]), 0..7),
    ) {
        let mut h = Host::new();
        h.authenticate_default();
        let data: Vec<u8> = parts.iter().map(|(t, v)| tlv::encode(Tag::new(*t), v)).collect::<Vec<_>>().concat();
        let r = h.applet.process(&Command::new(0, 0xFE, alg, 0x9A).with_data(data));
        prop_assert!(r.sw.0 == 0x9000 || r.sw.0 >= 0x6A80, "{:04X}", r.sw.0);
    }

    #[test]
    fn raw_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut h = Host::new();
        if let Ok(cmd) = Command::parse(&bytes) {
            let _ = h.applet.process(&cmd);
        }
    }

    #[test]
    fn state_round_trips_after_random_commands(cmds in prop::collection::vec(command(), 0..8)) {
        let mut h = Host::new();
        h.authenticate_default();
        for cmd in cmds.iter().filter(|c| c.ins != 0x47) {
            let _ = h.applet.process(cmd);
        }
        let json = serde_json::to_string(&h.applet).unwrap();
        let back: piv::PivApplet = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }
}
