//! Over-the-air codecs (`ota`, `scp81`): every parser of bytes that arrive from the network
//! or a card — secured command and response packets, SMS TPDUs, toolkit TLVs, remote
//! scripts, the SCP81 HTTP exchange.

use ota::packet::{self, Counter, Key, KeySet, PacketInfo, PorSecurity};
use ota::{cat, script, tpdu};

/// 16-byte keys: AES-128 and 3DES two-key packets get as far as their CC; other
/// algorithms stop at the key length check, which is a path too.
fn keys() -> KeySet {
    KeySet::new(
        Key::new(b"0123456789ABCDEF".to_vec()),
        Key::new(b"FEDCBA9876543210".to_vec()),
    )
}

/// A command packet as a card receives it (after the SMS framing): the header read, the
/// packet opened with the test keys and a stored counter of 0, its script decoded in both
/// formats, everything explained in words.
pub fn ota_command_packet(data: &[u8]) {
    if let Ok(info) = PacketInfo::parse(data) {
        let _ = info.to_string();
    }
    let _ = packet::unframe_command_sms(data);
    match packet::open_command(data, &keys(), Counter::from_u64(0).expect("0 fits")) {
        Ok(opened) => {
            let _ = opened.explain();
            let _ = script::decode_compact_commands(&opened.data);
            let _ = script::CommandScript::parse(&opened.data);
        }
        Err(e) => {
            let _ = e.por_status();
            let _ = e.to_string();
        }
    }
    let _ = script::decode_compact_commands(data);
    if let Ok(s) = script::CommandScript::parse(data) {
        // What decodes encodes again and decodes to the same script.
        if let Ok(bytes) = s.to_bytes() {
            assert_eq!(script::CommandScript::parse(&bytes).ok(), Some(s));
        }
    }
}

/// A response packet (PoR) as the platform receives it: opened as unsecured and as
/// CC-secured with the test keys, its additional data decoded as a script response.
pub fn ota_response_packet(data: &[u8]) {
    let _ = packet::unframe_response_sms(data);
    if let Ok(r) = packet::open_response(data, &PorSecurity::NONE, &keys()) {
        let _ = r.explain();
    }
    let cc = PorSecurity {
        integrity: packet::Integrity::Cc,
        ciphered: true,
        kic: packet::Kic::from_byte(0x12),
        kid: packet::Kid::from_byte(0x12),
    };
    if let Ok(r) = packet::open_response(data, &cc, &keys()) {
        let _ = r.explain();
    }
    let _ = script::parse_response_data(data);
    if let Ok(r) = script::ResponseScript::parse(data) {
        assert_eq!(script::ResponseScript::parse(&r.to_bytes()).ok(), Some(r));
    }
    let _ = script::CompactResponse::parse(data);
}

/// SMS TPDUs from the network or a card: SMS-DELIVER, SMS-SUBMIT, SMS-STATUS-REPORT,
/// SMS-DELIVER-REPORT; what decodes re-encodes to something that decodes the same; a
/// delivered part goes through the reassembler.
pub fn sms_tpdu(data: &[u8]) {
    if let Ok(d) = tpdu::SmsDeliver::decode(data) {
        if let Ok(bytes) = d.encode() {
            assert_eq!(tpdu::SmsDeliver::decode(&bytes).ok().as_ref(), Some(&d));
        }
        let mut r = tpdu::Reassembler::new();
        let _ = r.push(&d.originator, &d.user_data);
    }
    if let Ok(s) = tpdu::SmsSubmit::decode(data) {
        if let Ok(bytes) = s.encode() {
            assert_eq!(tpdu::SmsSubmit::decode(&bytes).ok().as_ref(), Some(&s));
        }
    }
    let _ = tpdu::SmsStatusReport::decode(data);
    let _ = tpdu::SmsDeliverReport::decode(data, false);
    let _ = tpdu::SmsDeliverReport::decode(data, true);
    let _ = tpdu::UserDataHeader::decode_prefix(data);
}

/// Toolkit data between a handset and a card: proactive commands, ENVELOPEs, TERMINAL
/// RESPONSEs, COMPREHENSION-TLV lists; what decodes re-encodes to the same meaning.
pub fn cat_tlv(data: &[u8]) {
    if let Ok(p) = cat::ProactiveCommand::decode(data) {
        if let Ok(bytes) = p.encode() {
            assert_eq!(
                cat::ProactiveCommand::decode(&bytes).ok().as_ref(),
                Some(&p)
            );
        }
    }
    if let Ok(e) = cat::Envelope::decode(data) {
        if let Ok(bytes) = e.encode() {
            assert_eq!(cat::Envelope::decode(&bytes).ok().as_ref(), Some(&e));
        }
    }
    if let Ok(t) = cat::TerminalResponse::decode(data) {
        if let Ok(bytes) = t.encode() {
            assert_eq!(
                cat::TerminalResponse::decode(&bytes).ok().as_ref(),
                Some(&t)
            );
        }
    }
    let _ = cat::parse_ctlvs(data);
    let sw = if data.len() >= 2 {
        u16::from_be_bytes([data[0], data[1]])
    } else {
        0x9000
    };
    let _ = cat::sms_pp_outcome(data, sw);
}
