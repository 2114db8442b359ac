//! The registration applet (`card::registration`) and the DGI codec it reads
//! (`gp::commands::dgi`).

use apdu::{Command, StatusWord};
use card::registration::RegistrationFactory;
use card::{AppletContext, AppletFactory};
use gp::commands::dgi::{parse_dgi_prefix, parse_dgis};

/// The registration applet answers any sequence of commands and personalisation blocks
/// with a status word and never panics; its state survives a save and restore after every
/// command; the DGI codec is consistent on every data field. Input: byte 0 b1 = 1
/// generates key pairs in slots 1 and 2 first; then commands, each after a 1-byte length,
/// as `flags, INS, P1, P2, data…`: flags b1 = 1 sends it as STORE DATA from the security
/// domain (`process_data`, INS ignored, P1 as given), b2 = 1 runs it with the instance
/// PERSONALIZED (`0F`) rather than SELECTABLE, b3 = 1 adds Le = 256.
pub fn registration_applet(data: &[u8]) {
    let Some((&setup, commands)) = data.split_first() else {
        return;
    };
    let aid = card::registration::REGISTRATION_MODULE;
    let factory = RegistrationFactory;
    let mut applet = factory.install(aid, aid, &[]).expect("the module installs");
    let ctx = |life_cycle| AppletContext {
        aid,
        channel: 0,
        life_cycle,
    };
    if setup & 1 != 0 {
        for slot in [1, 2] {
            let gen = Command::new(0x80, 0x41, 0x00, slot).with_le(256);
            assert!(applet.process(&ctx(0x07), &gen).is_success());
        }
    }
    let mut rest = commands;
    while let Some((&len, tail)) = rest.split_first() {
        let (c, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
        let [flags, ins, p1, p2, body @ ..] = c else {
            continue;
        };
        dgi_codec(body);
        let r = if flags & 1 != 0 {
            let cmd = Command::new(0x80, 0xE2, *p1, *p2).with_data(body.to_vec());
            applet.process_data(&cmd)
        } else {
            let mut cmd = Command::new(0x80, *ins, *p1, *p2).with_data(body.to_vec());
            if flags & 4 != 0 {
                cmd = cmd.with_le(256);
            }
            let lc = if flags & 2 != 0 { 0x0F } else { 0x07 };
            applet.process(&ctx(lc), &cmd)
        };
        assert!(
            r.sw == StatusWord::SUCCESS || r.data.is_empty(),
            "an error answers no data"
        );
        let state = applet.state();
        let restored = factory
            .restore(aid, &state)
            .expect("a saved state restores");
        assert_eq!(restored.state(), state, "the state survives a restart");
    }
}

/// `parse_dgi_prefix` stops at the first incomplete DGI, `parse_dgis` accepts exactly the
/// inputs that are whole DGIs, and what parses re-encodes to the same groups.
fn dgi_codec(data: &[u8]) {
    let (dgis, used) = parse_dgi_prefix(data);
    assert!(used <= data.len());
    assert_eq!(parse_dgis(data).is_ok(), used == data.len());
    let encoded: Vec<u8> = dgis
        .iter()
        .flat_map(|d| d.to_bytes().expect("parsed DGIs fit the length field"))
        .collect();
    assert_eq!(parse_dgis(&encoded).expect("re-encoding parses"), dgis);
}
