//! The virtual card as a UICC for OTA, driven through `transmit` bytes only, as a handset
//! would: TERMINAL PROFILE, FETCH, TERMINAL RESPONSE, ENVELOPE (SMS-PP download, menu
//! selection); SCP80 packets made with `ota::packet::secure_command` and PoRs opened with
//! `ota::packet::open_response`.

mod common;

use apdu::{Command, Response, StatusWord};
use card::{CardConfig, DownloadAgent, MenuEntry, VirtualCard, DEFAULT_KEY};
use common::{h, Host, ISD, SD_MODULE, SD_PKG};
use gp::commands::{Install, InstallParams, StatusFormat, StatusSubset};
use gp::Privileges;
use ota::cat::{CommandBody, Envelope, ProactiveCommand, TerminalProfile, TerminalResponse};
use ota::packet::{
    self, Algorithm, CommandHeader, Counter, DesMode, Key, KeySet, Kic, Kid, PorSecurity,
    ResponseStatus, Spi, Tar,
};
use ota::script::{CommandScript, CompactResponse, ResponseScript};
use ota::tpdu::{
    self, Address, ConcatRef, PacketKind, Progress, Reassembler, SmsDeliver, Timestamp, UserData,
};
use scp::SecurityLevel;

/// The platform's number (the SMS originator).
const PLATFORM: &str = "491700000001";
/// SPI: CC, ciphered, counter higher; PoR always, CC, ciphered, in the DELIVER-REPORT.
const SPI_REPORT: [u8; 2] = [0x16, 0x19];
/// The same with the PoR by SMS-SUBMIT.
const SPI_SUBMIT: [u8; 2] = [0x16, 0x39];
/// CC, not ciphered, counter higher; PoR always with CC, unciphered.
const SPI_PLAIN: [u8; 2] = [0x12, 0x09];

fn aes(k: &[u8]) -> scp::Key {
    scp::Key::aes(k).unwrap()
}

/// A default card with the default key as its SCP80 key set KVN 01 (KIc = KID = `40..4F`).
fn ota_config() -> CardConfig {
    CardConfig::default().with_scp80_keys(1, aes(&DEFAULT_KEY), aes(&DEFAULT_KEY))
}

fn ota_card() -> VirtualCard {
    VirtualCard::new(ota_config())
}

fn keys() -> KeySet {
    KeySet::new(
        Key::new(DEFAULT_KEY.to_vec()),
        Key::new(DEFAULT_KEY.to_vec()),
    )
}

fn header(spi: [u8; 2], kvn: u8, tar: [u8; 3], counter: u64) -> CommandHeader {
    CommandHeader {
        spi: Spi::from_bytes(spi),
        kic: Kic::new(kvn, Algorithm::Aes),
        kid: Kid::for_cc(kvn, Algorithm::Aes),
        tar: Tar(tar),
        counter: Counter::from_u64(counter).unwrap(),
    }
}

fn secure(spi: [u8; 2], tar: [u8; 3], counter: u64, data: &[u8]) -> Vec<u8> {
    packet::secure_command(&header(spi, 1, tar, counter), &keys(), data).unwrap()
}

fn compact(cmds: &[&str]) -> Vec<u8> {
    cmds.iter().flat_map(|c| h(c)).collect()
}

fn platform() -> Address {
    Address::international(PLATFORM)
}

fn scts() -> Timestamp {
    Timestamp {
        year: 26,
        month: 5,
        day: 4,
        hour: 12,
        minute: 0,
        second: 0,
        tz_quarters: 8,
    }
}

/// The ENVELOPE (SMS-PP download) APDU for one SMS's user data.
fn envelope(ud: UserData) -> Vec<u8> {
    envelope_dcs(ud, tpdu::Dcs::CLASS2_8BIT)
}

fn envelope_dcs(ud: UserData, dcs: tpdu::Dcs) -> Vec<u8> {
    let mut deliver = SmsDeliver::ota(platform(), scts(), ud);
    deliver.dcs = dcs;
    let data = Envelope::sms_pp(None, deliver).encode().unwrap();
    Command::new(0x80, 0xC2, 0x00, 0x00)
        .with_data(data)
        .with_le(256)
        .to_bytes()
        .unwrap()
}

/// The SMS user data carrying a packet (one or more SMS).
fn sms(packet: &[u8], reference: u8) -> Vec<UserData> {
    tpdu::split_packet(PacketKind::Command, packet, ConcatRef::Eight(reference)).unwrap()
}

fn send(card: &mut VirtualCard, apdu: &[u8]) -> Response {
    Response::parse(&card.transmit(apdu)).unwrap()
}

/// Sends a packet in as many SMS as it needs; the last answer.
fn deliver(card: &mut VirtualCard, packet: &[u8]) -> Response {
    let mut last = None;
    for ud in sms(packet, 7) {
        last = Some(send(card, &envelope(ud)));
    }
    last.unwrap()
}

/// The response packet in an ENVELOPE's response data (`02 71 00` first).
fn por_in(resp: &Response) -> Vec<u8> {
    packet::unframe_response_sms(&resp.data).unwrap().to_vec()
}

fn open_por(por: &[u8], spi: [u8; 2]) -> packet::OpenedResponse {
    let sec = header(spi, 1, [0; 3], 0).por_security();
    packet::open_response(por, &sec, &keys()).unwrap()
}

/// Opens the unsecured PoR of a security error: recognised as such even where a secured
/// one (CC, ciphered) was asked for.
fn unsecured_por(por: &[u8]) -> packet::OpenedResponse {
    let asked = header(SPI_REPORT, 1, [0; 3], 0).por_security();
    let opened = packet::open_response(por, &asked, &keys()).unwrap();
    assert!(!opened.secured);
    assert_eq!(
        opened.header,
        packet::open_response(por, &PorSecurity::NONE, &KeySet::default())
            .unwrap()
            .header
    );
    opened
}

/// GET DATA `42` through the basic channel (no authentication needed): the value a
/// script stored with STORE DATA, or `6A88`.
fn iin(card: &mut VirtualCard) -> Response {
    send(card, &h("80CA004200"))
}

fn store_iin(v: u8) -> String {
    format!("80E2900003 4201{v:02X}")
}

#[test]
fn single_sms_compact_script_por_in_the_envelope_response() {
    let mut card = ota_card();
    let script = compact(&[&store_iin(0x11), "80CA004200"]);
    let r = deliver(
        &mut card,
        &secure(SPI_REPORT, [0xB2, 0x01, 0x00], 1, &script),
    );
    assert_eq!(r.sw, StatusWord::SUCCESS);
    assert_eq!(
        &r.data[..3],
        &[0x02, 0x71, 0x00],
        "TP-UD of the DELIVER-REPORT"
    );
    let por = open_por(&por_in(&r), SPI_REPORT);
    assert!(por.secured);
    assert_eq!(por.header.status, ResponseStatus::PorOk);
    assert_eq!(por.header.tar, Tar([0xB2, 0x01, 0x00]));
    assert_eq!(por.header.counter.value(), 1);
    let c = CompactResponse::parse(&por.data).unwrap();
    assert_eq!(c.executed, 2);
    assert_eq!(c.last, Response::ok(h("420111")));
    assert_eq!(iin(&mut card).data, h("420111"));
    // DCS 16 (general data coding, 8-bit, class 2) works the same.
    let p = secure(SPI_REPORT, [0xB2, 0x01, 0x00], 2, &compact(&["80CA004200"]));
    let ud = sms(&p, 1).remove(0);
    let r = send(&mut card, &envelope_dcs(ud, tpdu::Dcs::GENERAL_CLASS2_8BIT));
    assert_eq!(open_por(&por_in(&r), SPI_REPORT).header.counter.value(), 2);
}

#[test]
fn expanded_scripts_are_answered_expanded_in_the_same_length_form() {
    let mut card = ota_card();
    for (n, indefinite) in [(1u64, false), (2, true)] {
        let mut s = CommandScript::from_commands([
            Command::parse(&h(&store_iin(n as u8))).unwrap(),
            Command::parse(&h("80CA004200")).unwrap(),
            Command::parse(&h("80CA00FE00")).unwrap(),
            Command::parse(&h("80CA004200")).unwrap(),
        ]);
        if indefinite {
            s.coding = ota::script::LengthCoding::Indefinite;
        }
        let r = deliver(
            &mut card,
            &secure(SPI_PLAIN, [0, 0, 0], n, &s.to_bytes().unwrap()),
        );
        let por = open_por(&por_in(&r), SPI_PLAIN);
        assert_eq!(por.data[0], if indefinite { 0xAF } else { 0xAB });
        let rs = ResponseScript::parse(&por.data).unwrap();
        // Stopped at the failing GET DATA FE: three executed, one R-APDU each.
        assert_eq!(rs.executed(), Some(3));
        let sws: Vec<u16> = rs.responses().map(|r| r.sw.0).collect();
        assert_eq!(sws, [0x9000, 0x9000, 0x6A88]);
    }
}

#[test]
fn concatenated_sms_out_of_order_with_a_duplicate() {
    let mut card = ota_card();
    // 60 GET DATA commands and a STORE DATA: three SMS.
    let mut cmds: Vec<String> = (0..60).map(|_| "80CA004200".to_string()).collect();
    cmds.insert(0, store_iin(0x42));
    let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let packet = secure(SPI_REPORT, [0, 0, 0], 1, &compact(&cmds));
    let parts = sms(&packet, 0x33);
    assert_eq!(parts.len(), 3);
    for i in [2, 0, 2] {
        let r = send(&mut card, &envelope(parts[i].clone()));
        assert_eq!(r, Response::ok(vec![]), "part {} waits", i + 1);
    }
    assert_eq!(iin(&mut card).sw, StatusWord::REFERENCED_DATA_NOT_FOUND);
    let r = send(&mut card, &envelope(parts[1].clone()));
    let por = open_por(&por_in(&r), SPI_REPORT);
    let c = CompactResponse::parse(&por.data).unwrap();
    assert_eq!(c.executed, 61);
    assert_eq!(iin(&mut card).data, h("420142"));
}

#[test]
fn a_missing_part_executes_nothing_and_a_new_message_restarts() {
    let mut card = ota_card();
    let mut cmds: Vec<String> = (0..60).map(|_| "80CA004200".to_string()).collect();
    cmds.insert(0, store_iin(0x01));
    let mut cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let first = sms(&secure(SPI_REPORT, [0, 0, 0], 1, &compact(&cmds)), 9);
    send(&mut card, &envelope(first[0].clone()));
    send(&mut card, &envelope(first[2].clone()));
    assert_eq!(iin(&mut card).sw, StatusWord::REFERENCED_DATA_NOT_FOUND);
    // Another message with the same reference (counter 2, other contents) restarts it.
    cmds[0] = "80E2900003420102";
    let second = sms(&secure(SPI_REPORT, [0, 0, 0], 2, &compact(&cmds)), 9);
    assert_eq!(second.len(), 3);
    send(&mut card, &envelope(second[0].clone()));
    send(&mut card, &envelope(second[1].clone()));
    let r = send(&mut card, &envelope(second[2].clone()));
    assert_eq!(open_por(&por_in(&r), SPI_REPORT).header.counter.value(), 2);
    assert_eq!(iin(&mut card).data, h("420102"));
}

#[test]
fn a_power_loss_mid_concatenation_loses_the_parts() {
    let mut card = ota_card();
    let mut cmds: Vec<String> = (0..40).map(|_| "80CA004200".to_string()).collect();
    cmds.insert(0, store_iin(0x05));
    let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let parts = sms(&secure(SPI_REPORT, [0, 0, 0], 1, &compact(&cmds)), 1);
    assert_eq!(parts.len(), 2);
    send(&mut card, &envelope(parts[0].clone()));
    card.reset();
    assert_eq!(
        send(&mut card, &envelope(parts[1].clone())),
        Response::ok(vec![])
    );
    assert_eq!(iin(&mut card).sw, StatusWord::REFERENCED_DATA_NOT_FOUND);
    // The network sends the first part again: now complete.
    let r = send(&mut card, &envelope(parts[0].clone()));
    assert_eq!(
        open_por(&por_in(&r), SPI_REPORT).header.status,
        ResponseStatus::PorOk
    );
    assert_eq!(iin(&mut card).data, h("420105"));
}

#[test]
fn a_replayed_counter_answers_02_and_executes_nothing() {
    let mut card = ota_card();
    let r = deliver(
        &mut card,
        &secure(SPI_REPORT, [0, 0, 0], 5, &compact(&[&store_iin(1)])),
    );
    assert_eq!(
        open_por(&por_in(&r), SPI_REPORT).header.status,
        ResponseStatus::PorOk
    );
    for counter in [5, 4] {
        let r = deliver(
            &mut card,
            &secure(SPI_REPORT, [0, 0, 0], counter, &compact(&[&store_iin(2)])),
        );
        let por = unsecured_por(&por_in(&r));
        assert!(!por.secured);
        assert_eq!(por.header.status, ResponseStatus::CounterLow);
        assert_eq!(por.header.counter.value(), counter);
        assert!(por.data.is_empty());
    }
    assert_eq!(iin(&mut card).data, h("420101"));
    // "Exactly one higher" (SPI counter 11) refuses a jump with 03.
    let r = deliver(
        &mut card,
        &secure([0x1E, 0x19], [0, 0, 0], 9, &compact(&[&store_iin(3)])),
    );
    assert_eq!(
        unsecured_por(&por_in(&r)).header.status,
        ResponseStatus::CounterHigh
    );
    let r = deliver(
        &mut card,
        &secure([0x1E, 0x19], [0, 0, 0], 6, &compact(&[&store_iin(3)])),
    );
    assert_eq!(
        open_por(&por_in(&r), [0x1E, 0x19]).header.status,
        ResponseStatus::PorOk
    );
    assert_eq!(iin(&mut card).data, h("420103"));
}

#[test]
fn security_errors_answer_unsecured_pors_and_execute_nothing() {
    let mut card = ota_card();
    let script = compact(&[&store_iin(9)]);
    // Wrong CC: a flipped data byte of an unciphered packet.
    let mut p = secure(SPI_PLAIN, [0, 0, 0], 1, &script);
    *p.last_mut().unwrap() ^= 1;
    let r = deliver(&mut card, &p);
    assert_eq!(
        unsecured_por(&por_in(&r)).header.status,
        ResponseStatus::RcCcDsFailed
    );
    // Wrong key (another KID value): CC fails too.
    let other = KeySet::new(Key::new(DEFAULT_KEY.to_vec()), Key::new(vec![0x55; 16]));
    let p = packet::secure_command(&header(SPI_PLAIN, 1, [0, 0, 0], 1), &other, &script).unwrap();
    let r = deliver(&mut card, &p);
    assert_eq!(
        unsecured_por(&por_in(&r)).header.status,
        ResponseStatus::RcCcDsFailed
    );
    // Ciphered part not whole blocks: ciphering error.
    let mut p = secure(SPI_REPORT, [0, 0, 0], 1, &script);
    p.pop();
    let cpl = (p.len() - 2) as u16;
    p[..2].copy_from_slice(&cpl.to_be_bytes());
    let r = deliver(&mut card, &p);
    assert_eq!(
        unsecured_por(&por_in(&r)).header.status,
        ResponseStatus::CipheringError
    );
    // A key version the ISD does not have: unidentified security error.
    let p = packet::secure_command(&header(SPI_REPORT, 2, [0, 0, 0], 1), &keys(), &script).unwrap();
    let r = deliver(&mut card, &p);
    assert_eq!(
        unsecured_por(&por_in(&r)).header.status,
        ResponseStatus::UnidentifiedSecurityError
    );
    // KID says 3DES, the key set is AES: refused the same way.
    let mut hd = header(SPI_PLAIN, 1, [0, 0, 0], 1);
    hd.kid = Kid::for_cc(1, Algorithm::Des(DesMode::Tdes2Key));
    let p = packet::secure_command(&hd, &keys(), &script).unwrap();
    let r = deliver(&mut card, &p);
    assert_eq!(
        unsecured_por(&por_in(&r)).header.status,
        ResponseStatus::UnidentifiedSecurityError
    );
    // Unknown TAR.
    let r = deliver(
        &mut card,
        &secure(SPI_REPORT, [0xB2, 0x77, 0x77], 1, &script),
    );
    let por = unsecured_por(&por_in(&r));
    assert_eq!(por.header.status, ResponseStatus::TarUnknown);
    assert_eq!(por.header.tar, Tar([0xB2, 0x77, 0x77]));
    // No CC (RC only) or no counter: insufficient security level.
    for spi in [[0x11, 0x09], [0x02, 0x09]] {
        let mut hd = header(spi, 1, [0, 0, 0], 1);
        if spi[0] & 3 == 1 {
            hd.kid = Kid::for_rc(1, packet::RcAlgorithm::Crc32);
        }
        let p = packet::secure_command(&hd, &keys(), &script).unwrap();
        let r = deliver(&mut card, &p);
        assert_eq!(
            unsecured_por(&por_in(&r)).header.status,
            ResponseStatus::InsufficientSecurityLevel
        );
    }
    assert_eq!(iin(&mut card).sw, StatusWord::REFERENCED_DATA_NOT_FOUND);
    // None of these moved the counter: counter 1 is still good.
    let r = deliver(&mut card, &secure(SPI_REPORT, [0, 0, 0], 1, &script));
    assert_eq!(
        open_por(&por_in(&r), SPI_REPORT).header.status,
        ResponseStatus::PorOk
    );
}

#[test]
fn por_on_error_and_no_por() {
    let mut card = ota_card();
    // PoR on error (SPI2 b2b1 = 10), script fine: no PoR.
    let r = deliver(
        &mut card,
        &secure([0x16, 0x1A], [0, 0, 0], 1, &compact(&[&store_iin(1)])),
    );
    assert_eq!(r, Response::ok(vec![]));
    // ...script fails: PoR.
    let r = deliver(
        &mut card,
        &secure([0x16, 0x1A], [0, 0, 0], 2, &h("80CA00FE00")),
    );
    let por = open_por(&por_in(&r), [0x16, 0x1A]);
    assert_eq!(CompactResponse::parse(&por.data).unwrap().last.sw.0, 0x6A88);
    // No PoR asked: nothing, even for a replay.
    let r = deliver(
        &mut card,
        &secure([0x16, 0x00], [0, 0, 0], 2, &h("80CA004200")),
    );
    assert_eq!(r, Response::ok(vec![]));
}

/// FETCHes the pending proactive command after an answer `91xx`.
fn fetch(card: &mut VirtualCard, sw: StatusWord) -> ProactiveCommand {
    assert_eq!(sw.sw1(), 0x91, "{sw:?}");
    let r = send(card, &[0x80, 0x12, 0x00, 0x00, sw.sw2()]);
    assert_eq!(r.data.len(), sw.sw2() as usize);
    assert_eq!(r.sw, StatusWord::SUCCESS);
    ProactiveCommand::decode(&r.data).unwrap()
}

fn terminal_response(card: &mut VirtualCard, cmd: &ProactiveCommand) -> Response {
    let tr = TerminalResponse::new(cmd, ota::cat::CatResult::success())
        .encode()
        .unwrap();
    send(
        card,
        &Command::new(0x80, 0x14, 0, 0)
            .with_data(tr)
            .to_bytes()
            .unwrap(),
    )
}

fn submit_of(cmd: &ProactiveCommand) -> tpdu::SmsSubmit {
    match &cmd.body {
        CommandBody::SendShortMessage(s) => s.tpdu.clone(),
        other => panic!("not SEND SHORT MESSAGE: {other:?}"),
    }
}

#[test]
fn por_by_sms_submit_is_a_send_short_message_to_the_originator() {
    let mut card = ota_card();
    let r = deliver(
        &mut card,
        &secure(SPI_SUBMIT, [0, 0, 0], 1, &compact(&["80CA006600"])),
    );
    assert!(r.data.is_empty());
    let cmd = fetch(&mut card, r.sw);
    let sms = submit_of(&cmd);
    assert_eq!(sms.destination, platform());
    assert_eq!(sms.pid, tpdu::Pid::SIM_DATA_DOWNLOAD);
    assert_eq!(sms.dcs, tpdu::Dcs::CLASS2_8BIT);
    let ud = sms.user_data;
    assert_eq!(
        ud.header.as_ref().unwrap().packet_kind(),
        Some(PacketKind::Response)
    );
    let por = open_por(&ud.payload, SPI_SUBMIT);
    let c = CompactResponse::parse(&por.data).unwrap();
    assert_eq!(c.last.sw, StatusWord::SUCCESS);
    assert_eq!(c.last.data[0], 0x66);
    assert_eq!(terminal_response(&mut card, &cmd), Response::ok(vec![]));
    // Nothing more to fetch.
    assert_eq!(
        send(&mut card, &h("8012000010")).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
}

/// Puts the SMS-SUBMITs of the pending SEND SHORT MESSAGEs back together.
fn collect_submits(card: &mut VirtualCard, mut sw: StatusWord) -> Vec<u8> {
    let mut re = Reassembler::new();
    loop {
        let cmd = fetch(card, sw);
        let sms = submit_of(&cmd);
        let progress = re.push(&sms.destination, &sms.user_data).unwrap();
        sw = terminal_response(card, &cmd).sw;
        if let Progress::Complete { kind, packet } = progress {
            assert_eq!(kind, PacketKind::Response);
            assert_eq!(sw, StatusWord::SUCCESS);
            return packet;
        }
    }
}

#[test]
fn long_pors_go_by_concatenated_sms_submit() {
    let mut card = ota_card();
    let s = CommandScript::from_commands((0..5).map(|_| Command::parse(&h("80CA006600")).unwrap()))
        .to_bytes()
        .unwrap();
    // Asked for by SMS-SUBMIT.
    let r = deliver(&mut card, &secure(SPI_SUBMIT, [0, 0, 0], 1, &s));
    let por = open_por(&collect_submits(&mut card, r.sw), SPI_SUBMIT);
    assert_eq!(
        ResponseScript::parse(&por.data).unwrap().executed(),
        Some(5)
    );
    // Asked for in the DELIVER-REPORT but too long: status 0B there, the PoR by SMS.
    let r = deliver(&mut card, &secure(SPI_REPORT, [0, 0, 0], 2, &s));
    let short = open_por(&por_in(&r), SPI_REPORT);
    assert_eq!(short.header.status, ResponseStatus::ResponseViaSmsSubmit);
    let por = open_por(&collect_submits(&mut card, r.sw), SPI_REPORT);
    assert_eq!(por.header.counter.value(), 2);
    assert_eq!(
        ResponseScript::parse(&por.data).unwrap().executed(),
        Some(5)
    );
}

fn agent() -> DownloadAgent {
    let mut wallet = MenuEntry::new("wallet", "Wallet");
    wallet.sd_aid = Some(h("A0000005591010FFFFFFFF8900000100"));
    DownloadAgent::new(
        "+491700000999",
        1,
        "Get apps",
        vec![MenuEntry::new("transit", "Transit pass"), wallet],
    )
}

fn profile() -> Vec<u8> {
    Command::new(0x80, 0x10, 0, 0)
        .with_data(TerminalProfile::ota_handset(1).bytes().to_vec())
        .to_bytes()
        .unwrap()
}

fn menu_selection(item: u8) -> Vec<u8> {
    let data = Envelope::MenuSelection {
        item,
        help_request: false,
    }
    .encode()
    .unwrap();
    Command::new(0x80, 0xC2, 0, 0)
        .with_data(data)
        .to_bytes()
        .unwrap()
}

/// Opens a download request as the platform would.
fn open_request(cmd: &ProactiveCommand, stored: u64) -> packet::OpenedCommand {
    let sms = submit_of(cmd);
    assert_eq!(sms.destination, Address::international("491700000999"));
    assert_eq!(sms.pid, tpdu::Pid::SIM_DATA_DOWNLOAD);
    assert_eq!(sms.dcs, tpdu::Dcs::CLASS2_8BIT);
    let ud = sms.user_data.encode(sms.dcs).unwrap().1;
    let packet = packet::unframe_command_sms(&ud).unwrap();
    packet::open_command(packet, &keys(), Counter::from_u64(stored).unwrap()).unwrap()
}

#[test]
fn menu_then_download_request() {
    let mut card = VirtualCard::new(ota_config().with_download_agent(agent()));
    // A terminal without SET UP MENU gets no menu.
    let r = send(
        &mut card,
        &Command::new(0x80, 0x10, 0, 0)
            .with_data(vec![0x01])
            .to_bytes()
            .unwrap(),
    );
    assert_eq!(r.sw, StatusWord::SUCCESS);
    let r = send(&mut card, &profile());
    let menu = fetch(&mut card, r.sw);
    let CommandBody::SetUpMenu(m) = &menu.body else {
        panic!("{menu:?}")
    };
    assert_eq!(m.alpha.text(), "Get apps");
    let items: Vec<(u8, String)> = m.items.iter().map(|i| (i.id, i.text.text())).collect();
    assert_eq!(items, [(1, "Transit pass".into()), (2, "Wallet".into())]);
    // A wrong TERMINAL RESPONSE (another command number) is refused; the right one ends it.
    let mut wrong = menu.clone();
    wrong.number ^= 0x40;
    assert_eq!(
        terminal_response(&mut card, &wrong).sw,
        StatusWord::WRONG_DATA
    );
    assert_eq!(terminal_response(&mut card, &menu), Response::ok(vec![]));
    assert_eq!(
        terminal_response(&mut card, &menu).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );

    let r = send(&mut card, &menu_selection(2));
    assert!(r.data.is_empty());
    // While it waits, any other command's 9000 is 91xx too, on any channel.
    let sel = send(&mut card, &h("00A4040008A000000151000000"));
    assert_eq!(sel.sw, r.sw);
    // FETCH with a short Le: 6Cxx.
    assert_eq!(
        send(&mut card, &[0x80, 0x12, 0, 0, 0x05]).sw,
        StatusWord::new(0x6C, r.sw.sw2())
    );
    let cmd = fetch(&mut card, r.sw);
    let req = open_request(&cmd, 0);
    assert_eq!(req.header.tar, Tar(card::DOWNLOAD_REQUEST_TAR));
    assert_eq!(req.header.spi.to_bytes(), card::DOWNLOAD_REQUEST_SPI);
    assert_eq!(req.header.counter.value(), 1);
    assert_eq!(req.header.kid.key_version, 1);
    assert_eq!(
        req.data,
        h("E11A 800677616C6C6574 4F10A0000005591010FFFFFFFF8900000100")
    );
    assert_eq!(terminal_response(&mut card, &cmd), Response::ok(vec![]));
    // The next request counts up; the incoming counter is another one.
    let r = send(&mut card, &menu_selection(1));
    let cmd = fetch(&mut card, r.sw);
    let req = open_request(&cmd, 1);
    assert_eq!(req.header.counter.value(), 2);
    assert_eq!(req.data, h("E109 80077472616E736974"));
    terminal_response(&mut card, &cmd);
    let r = deliver(
        &mut card,
        &secure(SPI_REPORT, [0, 0, 0], 1, &h("80CA004200")),
    );
    assert_eq!(
        open_por(&por_in(&r), SPI_REPORT).header.status,
        ResponseStatus::PorOk
    );
    // An unknown item: nothing.
    assert_eq!(send(&mut card, &menu_selection(9)), Response::ok(vec![]));
    // A reset forgets the session: nothing to fetch.
    card.reset();
    assert_eq!(
        send(&mut card, &h("8012000010")).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
}

#[test]
fn counters_survive_reopening_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    {
        let mut card = VirtualCard::open(&path, ota_config().with_download_agent(agent())).unwrap();
        let r = deliver(
            &mut card,
            &secure(SPI_REPORT, [0, 0, 0], 7, &compact(&[&store_iin(7)])),
        );
        assert_eq!(
            open_por(&por_in(&r), SPI_REPORT).header.status,
            ResponseStatus::PorOk
        );
        let r = send(&mut card, &profile());
        let menu = fetch(&mut card, r.sw);
        terminal_response(&mut card, &menu);
        let r = send(&mut card, &menu_selection(1));
        let cmd = fetch(&mut card, r.sw);
        assert_eq!(open_request(&cmd, 0).header.counter.value(), 1);
    }
    let mut card = VirtualCard::open(&path, CardConfig::default()).unwrap();
    let r = deliver(
        &mut card,
        &secure(SPI_REPORT, [0, 0, 0], 7, &compact(&[&store_iin(8)])),
    );
    assert_eq!(
        unsecured_por(&por_in(&r)).header.status,
        ResponseStatus::CounterLow
    );
    assert_eq!(iin(&mut card).data, h("420107"));
    // The agent's configuration and outgoing counter too.
    let r = send(&mut card, &profile());
    let menu = fetch(&mut card, r.sw);
    terminal_response(&mut card, &menu);
    let r = send(&mut card, &menu_selection(1));
    let cmd = fetch(&mut card, r.sw);
    assert_eq!(open_request(&cmd, 1).header.counter.value(), 2);
}

#[test]
fn the_platform_updates_the_menu_over_the_air() {
    let mut card = VirtualCard::new(ota_config().with_download_agent(agent()));
    let r = send(&mut card, &profile());
    let menu = fetch(&mut card, r.sw);
    terminal_response(&mut card, &menu);
    let mut new = agent();
    new.entries = vec![MenuEntry::new("ticket", "Tickets")];
    new.title = "Store".into();
    let store = format!(
        "80E29000{:02X}{}",
        new.to_tlv().len(),
        apdu::hex(&new.to_tlv())
    );
    let r = deliver(&mut card, &secure(SPI_REPORT, [0, 0, 0], 1, &h(&store)));
    let por = open_por(&por_in(&r), SPI_REPORT);
    assert_eq!(
        CompactResponse::parse(&por.data).unwrap().last.sw,
        StatusWord::SUCCESS
    );
    // The new menu is put up at once.
    let cmd = fetch(&mut card, r.sw);
    let CommandBody::SetUpMenu(m) = &cmd.body else {
        panic!()
    };
    assert_eq!(m.alpha.text(), "Store");
    assert_eq!(m.items.len(), 1);
    terminal_response(&mut card, &cmd);
    assert_eq!(send(&mut card, &h("80CABF7000")).data, new.to_tlv());
    // A malformed configuration is refused and changes nothing.
    let r = deliver(
        &mut card,
        &secure(SPI_REPORT, [0, 0, 0], 2, &h("80E2900006BF7003810110")),
    );
    let por = open_por(&por_in(&r), SPI_REPORT);
    assert_eq!(
        CompactResponse::parse(&por.data).unwrap().last.sw,
        StatusWord::WRONG_DATA
    );
    assert_eq!(send(&mut card, &h("80CABF7000")).data, new.to_tlv());
}

/// The create-SD flow of docs/OTA.md: INSTALL of the SD by the ISD, GENERATE EC KEY by
/// the new SD at its own TAR (it got the ISD's SCP80 key set), then LOAD + INSTALL of the
/// application into it by the ISD, and GET STATUS over SCP03.
#[test]
fn create_sd_generate_key_then_load_and_install_into_it() {
    let mut card = ota_card();
    let sd_aid = "A000000559101001020304050A0B0C";
    let install_sd = Install::ForInstall {
        load_file: common::aid(SD_PKG),
        module: common::aid(SD_MODULE),
        application: common::aid(sd_aid),
        privileges: Privileges([0x80, 0, 0]),
        params: InstallParams::default().to_bytes(),
        token: Vec::new(),
        make_selectable: true,
    }
    .to_command()
    .unwrap();
    let install_sd = Command {
        le: None,
        ..install_sd
    };
    let s1 = ota::script::encode_compact_commands(&[install_sd]).unwrap();
    let r = deliver(&mut card, &secure(SPI_REPORT, [0xB2, 0x01, 0x00], 1, &s1));
    let c = CompactResponse::parse(&open_por(&por_in(&r), SPI_REPORT).data).unwrap();
    assert_eq!((c.executed, c.last.sw), (1, StatusWord::SUCCESS));

    // GENERATE EC KEY (SCP11 KID 13, KVN 01) to the new SD at TAR 0A0B0C.
    let r = deliver(
        &mut card,
        &secure(SPI_REPORT, [0x0A, 0x0B, 0x0C], 1, &h("80F100130101")),
    );
    let por = open_por(&por_in(&r), SPI_REPORT);
    assert_eq!(por.header.tar, Tar([0x0A, 0x0B, 0x0C]));
    let c = CompactResponse::parse(&por.data).unwrap();
    assert_eq!(c.last.sw, StatusWord::SUCCESS);
    assert_eq!(
        &c.last.data[..3],
        &[0xB0, 0x41, 0x04],
        "uncompressed P-256 point"
    );
    assert_eq!(c.last.data.len(), 67);

    // LOAD + INSTALL by the ISD into the SD, in one script over several SMS.
    let cap = gp::cap::CapFile::from_bytes(&gp::cap::testing::synthetic_cap(300)).unwrap();
    let block = cap.load_file_data_block();
    let pkg = cap.package_aid();
    let applet = cap.applet_aids()[0];
    let mut cmds = vec![Install::ForLoad {
        load_file: pkg,
        security_domain: Some(common::aid(sd_aid)),
        hash: Vec::new(),
        params: Vec::new(),
        token: Vec::new(),
    }
    .to_command()
    .unwrap()];
    cmds.extend(gp::commands::load_blocks(&block, 200).unwrap());
    cmds.push(
        Install::ForInstall {
            load_file: pkg,
            module: applet,
            application: applet,
            privileges: Privileges([0, 0, 0]),
            params: InstallParams::default().to_bytes(),
            token: Vec::new(),
            make_selectable: true,
        }
        .to_command()
        .unwrap(),
    );
    // The instance goes to the SD too (INSTALL by the ISD associates it with the ISD).
    cmds.push(
        Install::ForExtradition {
            security_domain: common::aid(sd_aid),
            application: applet,
            params: Vec::new(),
            token: Vec::new(),
        }
        .to_command()
        .unwrap(),
    );
    for c in &mut cmds {
        c.le = None;
    }
    let n = cmds.len();
    let s3 = ota::script::encode_compact_commands(&cmds).unwrap();
    let p = secure(SPI_REPORT, [0xB2, 0x01, 0x00], 2, &s3);
    assert!(sms(&p, 1).len() > 1, "several SMS");
    let r = deliver(&mut card, &p);
    let c = CompactResponse::parse(&open_por(&por_in(&r), SPI_REPORT).data).unwrap();
    assert_eq!((c.executed as usize, c.last.sw), (n, StatusWord::SUCCESS));

    // An ordinary SCP03 session lists them.
    let mut host = Host::new(card);
    host.select(ISD);
    host.open(&common::default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    let apps = host.status(StatusSubset::Applications, StatusFormat::Tlv);
    let sd = apps.iter().find(|e| e.aid == common::aid(sd_aid)).unwrap();
    assert_eq!(sd.privileges.unwrap().0[0], 0x80);
    let app = apps.iter().find(|e| e.aid == applet).unwrap();
    assert_eq!(app.associated_sd, Some(common::aid(sd_aid)));
    let files = host.status(StatusSubset::LoadFiles, StatusFormat::Tlv);
    let lf = files.iter().find(|e| e.aid == pkg).unwrap();
    assert_eq!(lf.associated_sd, Some(common::aid(sd_aid)));
}

#[test]
fn the_same_with_3des_keys() {
    let kic = h("0102030405060708090A0B0C0D0E0F10");
    let kid = h("1112131415161718191A1B1C1D1E1F20");
    let mut card = VirtualCard::new(CardConfig::default().with_scp80_keys(
        3,
        scp::Key::des3(&kic).unwrap(),
        scp::Key::des3(&kid).unwrap(),
    ));
    let tdes = Algorithm::Des(DesMode::Tdes2Key);
    let hd = CommandHeader {
        spi: Spi::from_bytes(SPI_REPORT),
        kic: Kic::new(3, tdes),
        kid: Kid::for_cc(3, tdes),
        tar: Tar([0, 0, 0]),
        counter: Counter::from_u64(1).unwrap(),
    };
    let ks = KeySet::new(Key::new(kic), Key::new(kid));
    let p = packet::secure_command(&hd, &ks, &h("80CA004200")).unwrap();
    let r = deliver(&mut card, &p);
    let por = packet::open_response(&por_in(&r), &hd.por_security(), &ks).unwrap();
    assert_eq!(
        CompactResponse::parse(&por.data).unwrap().last.sw,
        StatusWord::REFERENCED_DATA_NOT_FOUND
    );
}

#[test]
fn toolkit_commands_on_other_channels_and_bad_input() {
    let mut card = ota_card();
    // Open channel 1 and send TERMINAL PROFILE there.
    assert_eq!(send(&mut card, &h("0070000001")).data, vec![1]);
    let mut tp = profile();
    tp[0] = 0x81;
    assert_eq!(send(&mut card, &tp).sw, StatusWord::SUCCESS);
    // P1/P2 must be zero; malformed ENVELOPEs are 6A80; FETCH without anything 6985.
    assert_eq!(send(&mut card, &h("80C2010000")).sw, StatusWord::WRONG_P1P2);
    assert_eq!(
        send(&mut card, &h("80C2000003D10100")).sw,
        StatusWord::WRONG_DATA
    );
    assert_eq!(
        send(&mut card, &h("8012000000")).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(
        send(&mut card, &h("801400000101")).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    // An SMS without an OTA header (plain text) is acknowledged and ignored.
    let r = send(&mut card, &envelope(UserData::new(b"hello".to_vec())));
    assert_eq!(r, Response::ok(vec![]));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the ENVELOPE, the packet in the SMS or the toolkit command, the card
        /// answers (`transmit` catches panics as 6F00: that must never be the answer).
        #[test]
        fn never_panics(
            envelope_data in proptest::collection::vec(any::<u8>(), 0..300),
            packet_tail in proptest::collection::vec(any::<u8>(), 0..200),
            spi in any::<[u8; 2]>(),
            kic in any::<u8>(),
            kid in any::<u8>(),
            tar in prop_oneof![Just([0u8, 0, 0]), any::<[u8; 3]>()],
        ) {
            let mut card = ota_card();
            let r = send(&mut card, &Command::new(0x80, 0xC2, 0, 0).with_data(envelope_data.clone()).to_bytes().unwrap());
            prop_assert_ne!(r.sw, StatusWord::UNKNOWN);
            let mut p = vec![0, 0, 0x15, spi[0], spi[1], kic, kid, tar[0], tar[1], tar[2]];
            p.extend_from_slice(&packet_tail);
            let cpl = (p.len() - 2) as u16;
            p[..2].copy_from_slice(&cpl.to_be_bytes());
            for ud in sms(&p, 3) {
                let r = send(&mut card, &envelope(ud));
                prop_assert_ne!(r.sw, StatusWord::UNKNOWN);
            }
            for ins in [0x10u8, 0x12, 0x14] {
                let r = send(&mut card, &Command::new(0x80, ins, 0, 0).with_data(envelope_data.clone()).to_bytes().unwrap());
                prop_assert_ne!(r.sw, StatusWord::UNKNOWN);
            }
        }
    }
}

/// An applet that accepts personalisation and panics on the data: a bug in the middle of a
/// remote script.
struct Crashing;

impl card::Applet for Crashing {
    fn select(&mut self, _: &card::AppletContext<'_>, _: &Command) -> Response {
        Response::ok(vec![])
    }
    fn process(&mut self, _: &card::AppletContext<'_>, _: &Command) -> Response {
        Response::ok(vec![])
    }
    fn accepts_personalization(&self) -> bool {
        true
    }
    fn process_data(&mut self, _: &Command) -> Response {
        panic!("applet bug (expected by the test)")
    }
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

struct CrashingFactory;

impl card::AppletFactory for CrashingFactory {
    fn name(&self) -> &str {
        "crashing"
    }
    fn install(&self, _: &[u8], _: &[u8], _: &[u8]) -> Result<Box<dyn card::Applet>, StatusWord> {
        Ok(Box::new(Crashing))
    }
    fn restore(&self, _: &[u8], _: &serde_json::Value) -> Result<Box<dyn card::Applet>, String> {
        Ok(Box::new(Crashing))
    }
}

/// The counter is saved before the script runs: a script that dies half-way (here an
/// applet panics: the card answers 6F00 and rolls back) cannot be replayed.
#[test]
fn the_counter_is_saved_before_the_script_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    let mut card = VirtualCard::open(&path, ota_config()).unwrap();
    let cap = gp::cap::CapFile::from_bytes(&gp::cap::testing::synthetic_cap(100)).unwrap();
    let (pkg, applet) = (cap.package_aid(), cap.applet_aids()[0]);
    card.register_applet(pkg.as_bytes(), std::sync::Arc::new(CrashingFactory));
    let mut cmds = vec![Install::ForLoad {
        load_file: pkg,
        security_domain: None,
        hash: Vec::new(),
        params: Vec::new(),
        token: Vec::new(),
    }
    .to_command()
    .unwrap()];
    cmds.extend(gp::commands::load_blocks(&cap.load_file_data_block(), 200).unwrap());
    cmds.push(
        Install::ForInstall {
            load_file: pkg,
            module: applet,
            application: applet,
            privileges: Privileges([0, 0, 0]),
            params: InstallParams::default().to_bytes(),
            token: Vec::new(),
            make_selectable: true,
        }
        .to_command()
        .unwrap(),
    );
    cmds.push(
        Install::ForPersonalization {
            application: applet,
        }
        .to_command()
        .unwrap(),
    );
    cmds.push(Command::parse(&h("80E2800001 00")).unwrap());
    for c in &mut cmds {
        c.le = None;
    }
    let script = ota::script::encode_compact_commands(&cmds).unwrap();
    let p = secure(SPI_REPORT, [0, 0, 0], 1, &script);
    let r = deliver(&mut card, &p);
    assert_eq!(r.sw, StatusWord::UNKNOWN, "the panic is caught");
    drop(card);
    let mut card = VirtualCard::open(&path, ota_config()).unwrap();
    card.register_applet(pkg.as_bytes(), std::sync::Arc::new(CrashingFactory));
    let r = deliver(&mut card, &p);
    assert_eq!(
        unsecured_por(&por_in(&r)).header.status,
        ResponseStatus::CounterLow
    );
}

/// STATUS `80 F2 00 0C` (TS 102 221 §11.1.2), a phone's poll: `9000`, or `91xx` while a
/// proactive command waits; GP GET STATUS (P1 `80`…) is still GP's.
#[test]
fn status_polls_for_proactive_commands() {
    let mut card = VirtualCard::new(ota_config().with_download_agent(agent()));
    let poll = [0x80, 0xF2, 0x00, 0x0C, 0x00];
    assert_eq!(send(&mut card, &poll).sw, StatusWord::SUCCESS);
    let r = send(&mut card, &profile());
    assert_eq!(r.sw.sw1(), 0x91);
    assert_eq!(send(&mut card, &poll).sw, r.sw);
    assert_eq!(
        send(&mut card, &[0x80, 0xF2, 0x00, 0x01, 0x00]).sw,
        StatusWord::INCORRECT_P1P2
    );
    // GET STATUS of the ISD without a secure channel: GP's answer, as before.
    assert_eq!(send(&mut card, &h("80F28002024F0000")).sw.sw1(), 0x69);
}

/// GP 2.3.1 §11.8 under SCP03: an AES key set of version 1–15 put by PUT KEY (KIc, KID,
/// DEK as keys 1–3) is an SCP80 key set at once; a TLS PSK (key set `40`, type `85`) goes
/// in the same channel (what `cardwright ota enrol` does).
#[test]
fn an_scp80_key_set_and_a_psk_put_by_put_key_over_scp03() {
    let kic = h("A0A1A2A3A4A5A6A7A8A9AAABACADAEAF");
    let kid = h("B0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF");
    let dek = h("C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF");
    let set = scp::StaticKeys {
        enc: aes(&kic),
        mac: aes(&kid),
        dek: aes(&dek),
    };
    let mut host = common::Host::new(VirtualCard::new(CardConfig::default()));
    host.select(ISD);
    host.open(&common::default_keys(true), 0, SecurityLevel::MAC_ENC)
        .unwrap();
    assert_eq!(host.put_keys(0x00, 0x02, &set).sw, StatusWord::SUCCESS);
    // The PSK: KVN 40, type 85, L, {key length, key under the DEK}, 00; answered 40.
    let psk = h("000102030405060708090A0B0C0D0E0F");
    let dek_key = host
        .session
        .as_ref()
        .unwrap()
        .data_encryption_key()
        .unwrap();
    let enc = scp::encrypt_sensitive_data(&dek_key, &psk).unwrap();
    let mut data = vec![0x40, 0x85, (enc.len() + 1) as u8, psk.len() as u8];
    data.extend_from_slice(&enc);
    data.push(0x00);
    let r = host.send(&Command::new(0x80, 0xD8, 0x00, 0x01).with_data(data));
    assert_eq!(
        (r.sw, r.data.as_slice()),
        (StatusWord::SUCCESS, &[0x40][..])
    );
    let info = host.send(&Command::new(0x80, 0xCA, 0x00, 0xE0).with_le(256));
    let info = gp::commands::KeyInfo::parse(&info.data).unwrap();
    let psk_entry = info.entries.iter().find(|e| e.version == 0x40).unwrap();
    assert_eq!(psk_entry.components[0].key_type, 0x85);
    assert!(info.entries.iter().any(|e| e.version == 0x02 && e.id == 3));

    // A packet under KVN 2 with those keys verifies and runs.
    let mut card = host.card;
    let keys = KeySet::new(Key::new(kic), Key::new(kid));
    let hd = header(SPI_REPORT, 2, [0xB2, 0x01, 0x00], 1);
    let p = packet::secure_command(&hd, &keys, &compact(&["80CA004200"])).unwrap();
    let r = deliver(&mut card, &p);
    let por = packet::open_response(&por_in(&r), &hd.por_security(), &keys).unwrap();
    assert!(por.secured);
    assert_eq!(por.header.status, ResponseStatus::PorOk);
}
