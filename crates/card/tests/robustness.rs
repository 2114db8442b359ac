//! `transmit` never panics and always answers at least SW1 SW2, whatever it is sent, in any
//! state: plain, inside secure channels, in the middle of a LOAD.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use apdu::Command;
use card::{CardConfig, VirtualCard};
use common::*;
use proptest::prelude::*;
use scp::SecurityLevel;

static PANICKED: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// `transmit` turns an internal panic into `6F00`; record panics so the tests see them.
fn watch_panics() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn check(card: &mut VirtualCard, bytes: &[u8]) -> Vec<u8> {
    let r = card.transmit(bytes);
    assert!(
        r.len() >= 2,
        "response {} to {}",
        apdu::hex(&r),
        apdu::hex(bytes)
    );
    assert!(
        !PANICKED.load(Ordering::SeqCst),
        "panic on {}",
        apdu::hex(bytes)
    );
    r
}

const INS: [u8; 20] = [
    0xA4, 0x70, 0xC0, 0xCA, 0xCB, 0x50, 0x82, 0xF2, 0xF0, 0xE6, 0xE8, 0xE4, 0xD8, 0xE2, 0x20, 0x87,
    0xDB, 0x47, 0xFD, 0x00,
];

fn command() -> impl Strategy<Value = Command> {
    (
        prop_oneof![
            Just(0x00u8),
            Just(0x80),
            Just(0x84),
            Just(0x01),
            Just(0x81),
            Just(0xC1),
            Just(0x10),
            any::<u8>()
        ],
        prop_oneof![proptest::sample::select(&INS[..]), any::<u8>()],
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::option::of(1u32..=65536),
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
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(seq in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8)) {
        watch_panics();
        let mut card = VirtualCard::new(CardConfig::default());
        for b in &seq {
            check(&mut card, b);
        }
    }

    #[test]
    fn random_commands(seq in proptest::collection::vec(command(), 1..12)) {
        watch_panics();
        let mut card = VirtualCard::new(CardConfig { with_piv: true, ..CardConfig::default() });
        for c in &seq {
            check(&mut card, &c.to_bytes().unwrap());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Random commands wrapped by a real host session: they reach every handler unwrapped.
    #[test]
    fn random_commands_in_a_session(level in proptest::sample::select(&[0x00u8, 0x01, 0x03, 0x13, 0x33][..]),
                                    seq in proptest::collection::vec(command(), 1..10)) {
        watch_panics();
        let mut host = Host::new(VirtualCard::new(CardConfig::default()));
        host.open(&default_keys(true), 0, SecurityLevel(level)).unwrap();
        // A load in progress, an SSD and an applet, to give the commands something to hit.
        host.install_app(SD_PKG, SD_MODULE, "A000000151000001", [0x80, 0x40, 0]);
        let lf = load_file(STORAGE_PKG, (1, 0), &[STORAGE_MODULE]);
        host.load(STORAGE_PKG, None, &lf, Vec::new());
        host.install_app(STORAGE_PKG, STORAGE_MODULE, "F0435744530101", [0, 0, 0]);
        host.install(gp::commands::Install::for_load(aid("F043574499"), None));
        for c in &seq {
            let mut c = c.clone();
            c.cla = 0x80 | (c.cla & 0x03);
            c.data.truncate(200);
            let bytes = match host.session.as_mut().map(|s| s.wrap(&c)) {
                Some(Ok(w)) => w.to_bytes().unwrap(),
                _ => c.to_bytes().unwrap(),
            };
            check(&mut host.card, &bytes);
        }
    }
}
