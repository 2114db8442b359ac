//! The PIV applet (`piv` crate, SP 800-73-4 with the YubiKey extensions).

use apdu::tlv::{self, Tag};
use apdu::{Command, StatusWord};
use piv::{slot, ManagementKey, PivApplet, PivConfig, PIV_AID};

/// The PIV applet answers any sequence of commands with a status word and never panics;
/// its persistent state survives a save and restore after every command. Input: byte 0
/// b1 = 1 authenticates with the default management key first, b2 = 1 verifies the
/// default PIN; then commands, each after a 1-byte length, as `flags, INS, P1, P2,
/// data…` (flags b1: CLA `10`, command chaining; b2: Le = 256).
///
/// GENERATE ASYMMETRIC KEY PAIR is sent only for ECC keys: an RSA key generation takes
/// seconds, which would make every such input a time-out rather than a finding.
pub fn piv_applet(data: &[u8]) {
    let Some((&setup, commands)) = data.split_first() else {
        return;
    };
    let mut applet = PivApplet::new(PivConfig::default());
    let select = Command::new(0x00, 0xA4, 0x04, 0x00).with_data(PIV_AID[..5].to_vec());
    assert!(applet.select(&select).is_success(), "the applet selects");
    if setup & 1 != 0 {
        authenticate(&mut applet);
    }
    if setup & 2 != 0 {
        let pin = Command::new(0x00, piv::ins::VERIFY, 0x00, slot::PIN)
            .with_data(b"123456\xFF\xFF".to_vec());
        assert!(
            applet.process(&pin).is_success(),
            "the default PIN verifies"
        );
    }
    // FUZZ_TRACE=1 prints each command's header and the applet's status word.
    let trace = std::env::var_os("FUZZ_TRACE").is_some();
    let mut rest = commands;
    while let Some((&len, tail)) = rest.split_first() {
        let (c, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
        let [flags, ins, p1, p2, body @ ..] = c else {
            continue;
        };
        if *ins == piv::ins::GENERATE_ASYMMETRIC_KEY_PAIR && !is_ecc_generation(body) {
            continue;
        }
        let cla = if flags & 1 != 0 { 0x10 } else { 0x00 };
        let mut cmd = Command::new(cla, *ins, *p1, *p2).with_data(body.to_vec());
        if flags & 2 != 0 {
            cmd = cmd.with_le(256);
        }
        let r = applet.process(&cmd);
        if trace {
            eprintln!(
                "{:02X} {:02X} {:02X} {} -> {}",
                cmd.ins,
                cmd.p1,
                cmd.p2,
                cmd.data.len(),
                r.sw
            );
        }
        assert!(
            r.sw != StatusWord::SUCCESS || r.data.len() <= 256,
            "answers are cut to Le with 61xx"
        );
    }
}

/// Whether GENERATE's data asks for an ECC key (`AC { 80 11 | 14 }`).
fn is_ecc_generation(data: &[u8]) -> bool {
    matches!(
        tlv::find_in(data, &[Tag::new(0xAC), Tag::new(0x80)]),
        Ok(Some(alg)) if matches!(alg.value(), [0x11] | [0x14])
    )
}

/// Mutual authentication with the default management key (SP 800-73-4 Part 2 Appendix
/// A.1; the witness/challenge flow of yubico-piv-tool).
fn authenticate(applet: &mut PivApplet) {
    let key = ManagementKey::default();
    let alg = key.algorithm();
    let block = alg.block_len();
    let ga = |data: Vec<u8>| {
        Command::new(
            0x00,
            piv::ins::GENERAL_AUTHENTICATE,
            alg.id(),
            slot::MANAGEMENT,
        )
        .with_data(data)
        .with_le(256)
    };
    let empty_witness = tlv::encode(Tag::new(0x7C), &tlv::encode(Tag::new(0x80), &[]));
    let r = applet.process(&ga(empty_witness));
    assert!(r.is_success(), "the applet sends a witness");
    let witness = tlv::find_in(&r.data, &[Tag::new(0x7C), Tag::new(0x80)])
        .ok()
        .flatten()
        .expect("7C { 80 witness }");
    let mut plain = witness.value().to_vec();
    key.decrypt_block(&mut plain).expect("block-sized witness");
    let mut inner = tlv::encode(Tag::new(0x80), &plain);
    tlv::encode_into(&mut inner, Tag::new(0x81), &vec![0x5A; block]);
    let r = applet.process(&ga(tlv::encode(Tag::new(0x7C), &inner)));
    assert!(r.is_success(), "the default management key authenticates");
}
