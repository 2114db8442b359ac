//! The OPEN without secure channels: ATR, selection, GET DATA, channels, refusals.

mod common;

use apdu::{Response, StatusWord};
use card::{CardConfig, VirtualCard};
use common::*;

fn card() -> Host {
    Host::new(VirtualCard::new(CardConfig::default()))
}

#[test]
fn atr_names_the_card_and_checks_out() {
    let c = VirtualCard::new(CardConfig::default());
    let atr = c.atr();
    assert_eq!(atr[0], 0x3B);
    assert_eq!(atr[1..].iter().fold(0, |a, b| a ^ b), 0, "TCK");
    assert!(atr.windows(10).any(|w| w == b"Cardwright"));
}

#[test]
fn isd_is_selected_at_reset_and_by_aid() {
    let mut c = card();
    // The ISD is implicitly selected: GET DATA works right away.
    let r = c.raw(&cmd("80CA9F7F00"));
    assert_eq!(r.sw, StatusWord::SUCCESS);
    assert_eq!(&r.data[..3], &h("9F7F2A")[..]);
    let r = c.select(ISD);
    assert_eq!(r.sw, StatusWord::SUCCESS);
    let fci = gp::commands::Fci::parse(&r.data).unwrap();
    assert_eq!(fci.aid, aid(ISD));
    assert_eq!(fci.max_command_data_length, Some(255));
    // Empty SELECT: the default application; partial AID: the ISD too.
    assert_eq!(c.raw(&cmd("00A4040000")).sw, StatusWord::SUCCESS);
    assert_eq!(
        c.raw(&cmd("00A4040005A00000015100")).sw,
        StatusWord::SUCCESS
    );
    // P2 = 0C: no response data.
    let r = c.raw(&cmd("00A4040C08A000000151000000"));
    assert_eq!(r, Response::ok(vec![]));
}

#[test]
fn unknown_aid_is_6a82_and_keeps_the_selection() {
    let mut c = card();
    assert_eq!(c.select("A0000000031010").sw, StatusWord::FILE_NOT_FOUND);
    assert_eq!(c.select("D27600012401").sw, StatusWord(0x6A82));
    assert_eq!(c.raw(&cmd("80CA006600")).sw, StatusWord::SUCCESS);
}

#[test]
fn get_data_objects() {
    let mut c = card();
    let r = c.raw(&cmd("80CA006600"));
    let cd = gp::commands::CardData::parse(&r.data).unwrap();
    assert_eq!(apdu::hex(&r.data[..4]), "664C734A");
    assert_eq!(cd.gp_version_string().as_deref(), Some("2.3.1"));
    assert_eq!((cd.scp[0].scp, cd.scp[0].i), (0x03, 0x70));
    // The factory SCP11b key set is announced too (OID 1.2.840.114283.4.17.0).
    assert_eq!((cd.scp[1].scp, cd.scp[1].i), (0x11, 0x00));
    assert!(cd.identification_scheme);
    let r = c.raw(&cmd("80CA00E000"));
    // One AES-128 key set, KVN 30: C0 04 id 30 88 10 for ids 1..3; the factory SCP11b
    // key pair KID 13 KVN 01: C0 06 13 01 B1 20 F0 01.
    assert_eq!(
        apdu::hex(&r.data),
        "E01AC00401308810C00402308810C00403308810C0061301B120F001"
    );
    let r = c.raw(&cmd("80CA00CF00"));
    assert_eq!(apdu::hex(&r.data), "CF0A00000000000000000000");
    assert_eq!(c.raw(&cmd("80CA004200")).sw, StatusWord(0x6A88));
    assert_eq!(c.raw(&cmd("80CA00C100")).data, h("C103000001"));
    assert_eq!(c.raw(&cmd("80CAFF2100")).sw, StatusWord::SUCCESS);
    assert_eq!(c.raw(&cmd("80CA123400")).sw, StatusWord(0x6A88));
    // ISO class works too.
    assert_eq!(c.raw(&cmd("00CA9F7F00")).sw, StatusWord::SUCCESS);
}

#[test]
fn management_needs_a_secure_channel() {
    let mut c = card();
    for apdu in [
        "80F28002024F0000",
        "80F0800F",
        "80E602001205F04357445308A00000015100000000000000",
        "80E40000024F00",
        "80E200000101",
    ] {
        assert_eq!(
            c.raw(&cmd(apdu)).sw,
            StatusWord::SECURITY_NOT_SATISFIED,
            "{apdu}"
        );
    }
    // Secure messaging without a session.
    assert_eq!(
        c.raw(&cmd("84F28002024F0000")).sw,
        StatusWord::SECURITY_NOT_SATISFIED
    );
    // EXTERNAL AUTHENTICATE with an unattainable level, then without INITIALIZE UPDATE.
    assert_eq!(
        c.raw(&cmd("848202001000000000000000000000000000000000")).sw,
        StatusWord::INCORRECT_P1P2
    );
    assert_eq!(
        c.raw(&cmd("848201001000000000000000000000000000000000")).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
}

#[test]
fn bad_input_gets_status_words() {
    let mut c = card();
    let t = |c: &mut Host, b: &str| Response::parse(&c.card.transmit(&h(b))).unwrap().sw;
    assert_eq!(t(&mut c, ""), StatusWord::WRONG_LENGTH);
    assert_eq!(t(&mut c, "00A4"), StatusWord::WRONG_LENGTH);
    assert_eq!(t(&mut c, "00A4040005A000"), StatusWord::WRONG_LENGTH);
    assert_eq!(t(&mut c, "FFA40400"), StatusWord::CLA_NOT_SUPPORTED);
    assert_eq!(t(&mut c, "20A40400"), StatusWord::CLA_NOT_SUPPORTED);
    assert_eq!(t(&mut c, "80FE0000"), StatusWord::INS_NOT_SUPPORTED);
    assert_eq!(
        t(&mut c, "81CA9F7F00"),
        StatusWord(0x6881),
        "channel 1 is closed"
    );
    assert_eq!(t(&mut c, "8050000001AA00"), StatusWord::WRONG_LENGTH);
    assert_eq!(
        t(&mut c, "805077000801020304050607 0800"),
        StatusWord(0x6A88),
        "no KVN 77"
    );
}

#[test]
fn logical_channels() {
    let mut c = card();
    let r = c.raw(&cmd("0070000001"));
    assert_eq!(r, Response::ok(vec![0x01]));
    // The new channel has the ISD selected.
    assert_eq!(c.raw(&cmd("81CA9F7F00")).sw, StatusWord::SUCCESS);
    assert_eq!(
        c.raw(&cmd("01A4040008A000000151000000")).sw,
        StatusWord::SUCCESS
    );
    // Open channel 5 explicitly; further interindustry CLA (GP: C1 for channel 5).
    assert_eq!(c.raw(&cmd("00700005")).sw, StatusWord::SUCCESS);
    assert_eq!(c.raw(&cmd("C1CA9F7F00")).sw, StatusWord::SUCCESS);
    assert_eq!(
        c.raw(&cmd("00700005")).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    // Close them.
    assert_eq!(c.raw(&cmd("00708001")).sw, StatusWord::SUCCESS);
    assert_eq!(c.raw(&cmd("81CA9F7F00")).sw, StatusWord(0x6881));
    assert_eq!(c.raw(&cmd("41708000")).sw, StatusWord::SUCCESS);
    assert_eq!(
        c.raw(&cmd("00708000")).sw,
        StatusWord::FUNC_NOT_SUPPORTED,
        "basic channel"
    );
    // Reset closes everything.
    c.raw(&cmd("0070000001"));
    c.card.reset();
    assert_eq!(c.raw(&cmd("81CA9F7F00")).sw, StatusWord(0x6881));
}

#[test]
fn long_responses_use_get_response() {
    let mut c = card();
    let r = c.raw(&cmd("80CA9F7F10"));
    assert_eq!(r.sw, StatusWord::new(0x61, 45 - 16));
    assert_eq!(r.data.len(), 16);
    let r2 = c.raw(&cmd("00C0000000"));
    assert_eq!(r2.sw, StatusWord::SUCCESS);
    assert_eq!([r.data, r2.data].concat(), c.raw(&cmd("80CA9F7F00")).data);
    assert_eq!(
        c.raw(&cmd("00C0000000")).sw,
        StatusWord::INS_NOT_SUPPORTED,
        "nothing pending"
    );
}

#[test]
fn pre_installed_piv_is_selectable() {
    let cfg = CardConfig {
        with_piv: true,
        ..CardConfig::default()
    };
    let mut c = Host::new(VirtualCard::new(cfg));
    let r = c.select("A000000308000010000100");
    assert_eq!(r.sw, StatusWord::SUCCESS, "{r:?}");
    assert_eq!(r.data[0], 0x61, "application property template");
    // Partial selection by the PIX-less AID, as PIV middleware does.
    assert_eq!(c.select("A000000308").sw, StatusWord::SUCCESS);
    // A PIV command: GET DATA of the CHUID.
    let r = c.raw(&cmd("00CB3FFF055C035FC10200"));
    assert!(r.is_success(), "{r:?}");
}

#[test]
fn virtual_card_is_send() {
    fn send<T: Send>() {}
    send::<VirtualCard>();
}

#[test]
fn file_selection_on_a_security_domain() {
    let mut c = card();
    assert_eq!(c.raw(&cmd("00A4000C023F00")).sw, StatusWord::FILE_NOT_FOUND);
    assert_eq!(c.raw(&cmd("00A4400C023F00")).sw, StatusWord::INCORRECT_P1P2);
    // The ISD is still selected.
    assert_eq!(c.raw(&cmd("80CA9F7F00")).sw, StatusWord::SUCCESS);
}
