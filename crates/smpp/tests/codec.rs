//! rusmpp as the PDU codec: submit_sm / deliver_sm with binary short_message, message_payload
//! and receipt TLVs decode and re-encode byte for byte.

use smpp::codec::{decode, encode};
use smpp::rusmpp::{Command, CommandStatus, Pdu};
use smpp::{Address, ShortMessage};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn pdu(command_id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((16 + body.len()) as u32).to_be_bytes());
    v.extend_from_slice(&command_id.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// 140 octets: UDH with a concatenation IE and the SCP80 command packet IE, then a payload.
fn user_data_140() -> Vec<u8> {
    let mut ud = hex("07 00 03 5A 01 01 70 00");
    ud.extend((0..132u32).map(|i| (i * 7 + 3) as u8));
    assert_eq!(ud.len(), 140);
    ud
}

fn sm_body(esm: u8, pid: u8, regdel: u8, dcs: u8, sm: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.push(0); // service_type ""
    b.extend_from_slice(&[1, 1]);
    b.extend_from_slice(b"4412345\0");
    b.extend_from_slice(&[1, 1]);
    b.extend_from_slice(b"447700900123\0");
    b.extend_from_slice(&[esm, pid, 0, 0, 0, regdel, 0, dcs, 0, sm.len() as u8]);
    b.extend_from_slice(sm);
    b.extend_from_slice(tlvs);
    b
}

fn roundtrip(octets: &[u8]) -> Command {
    let command = decode(octets).expect("decodes");
    assert_eq!(encode(&command), octets, "re-encodes byte for byte");
    command
}

#[test]
fn submit_sm_binary_udh_round_trips() {
    let ud = user_data_140();
    let octets = pdu(0x04, 7, &sm_body(0x40, 0x7F, 0x01, 0xF6, &ud, &[]));
    let command = roundtrip(&octets);
    let Some(Pdu::SubmitSm(sm)) = command.pdu() else {
        panic!("not a submit_sm: {command:?}")
    };
    let msg = ShortMessage::from_submit_sm(sm);
    assert_eq!(msg.short_message, ud);
    assert_eq!(
        (msg.esm_class, msg.protocol_id, msg.data_coding),
        (0x40, 0x7F, 0xF6)
    );
    assert_eq!(msg.registered_delivery, 1);
    assert_eq!(msg.source, Address::international("4412345"));
    // Built from our plain value, the same octets come out.
    let rebuilt = Command::new(CommandStatus::EsmeRok, 7, msg.to_submit_sm().unwrap());
    assert_eq!(encode(&rebuilt), octets);
}

#[test]
fn message_payload_and_unknown_tlvs_round_trip() {
    let payload: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
    let mut tlvs = vec![0x04, 0x24];
    tlvs.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    tlvs.extend_from_slice(&payload);
    tlvs.extend_from_slice(&hex("1400 0003 AABBCC")); // vendor TLV
    tlvs.extend_from_slice(&hex("0204 0002 1234")); // user_message_reference
    for id in [0x04u32, 0x05] {
        let octets = pdu(id, 9, &sm_body(0x40, 0x7F, 0, 0xF6, &[], &tlvs));
        let command = roundtrip(&octets);
        let msg = match command.pdu() {
            Some(Pdu::SubmitSm(p)) => ShortMessage::from_submit_sm(p),
            Some(Pdu::DeliverSm(p)) => ShortMessage::from_deliver_sm(p),
            other => panic!("{other:?}"),
        };
        assert_eq!(msg.message_payload.as_deref(), Some(&payload[..]));
        assert_eq!(msg.tlv(0x1400), Some(&[0xAA, 0xBB, 0xCC][..]));
        assert_eq!(msg.tlv(0x0204), Some(&[0x12, 0x34][..]));
        let rebuilt = if id == 4 {
            Command::new(CommandStatus::EsmeRok, 9, msg.to_submit_sm().unwrap())
        } else {
            Command::new(CommandStatus::EsmeRok, 9, msg.to_deliver_sm().unwrap())
        };
        assert_eq!(encode(&rebuilt), octets);
    }
}

#[test]
fn every_octet_value_of_the_flag_fields_survives() {
    for v in 0..=255u8 {
        let octets = pdu(0x05, 1, &sm_body(v, v, v, v, &[v, 0, v], &[]));
        let command = roundtrip(&octets);
        let Some(Pdu::DeliverSm(p)) = command.pdu() else {
            panic!()
        };
        let m = ShortMessage::from_deliver_sm(p);
        assert_eq!(
            (
                m.esm_class,
                m.protocol_id,
                m.registered_delivery,
                m.data_coding
            ),
            (v, v, v, v)
        );
        let mut m2 = m.clone();
        (m2.source.ton, m2.source.npi, m2.priority_flag) = (v, v, v);
        let back = decode(&encode(&Command::new(
            CommandStatus::EsmeRok,
            1,
            m2.to_deliver_sm().unwrap(),
        )))
        .unwrap();
        let Some(Pdu::DeliverSm(p2)) = back.pdu() else {
            panic!()
        };
        assert_eq!(ShortMessage::from_deliver_sm(p2), m2);
    }
}

#[test]
fn delivery_receipt_tlvs_round_trip_and_parse() {
    let text = b"id:1234567 sub:001 dlvrd:001 submit date:2612041530 done date:2612041531 stat:DELIVRD err:000 text:";
    let mut tlvs = hex("001E 0008");
    tlvs.extend_from_slice(b"1234567\0");
    tlvs.extend_from_slice(&hex("0427 0001 02"));
    tlvs.extend_from_slice(&hex("0423 0003 030000"));
    let octets = pdu(0x05, 3, &sm_body(0x04, 0, 0, 0, text, &tlvs));
    let command = roundtrip(&octets);
    let Some(Pdu::DeliverSm(p)) = command.pdu() else {
        panic!()
    };
    let smpp::Inbound::Receipt(r) = smpp::Inbound::from_message(ShortMessage::from_deliver_sm(p))
    else {
        panic!("not a receipt")
    };
    assert_eq!(r.receipted_message_id.as_deref(), Some("1234567"));
    assert_eq!(r.message_state, Some(2));
    assert_eq!(r.text.id.as_deref(), Some("1234567"));
    assert_eq!(r.text.stat.as_deref(), Some("DELIVRD"));
    assert!(r.is_delivered());
}

#[test]
fn session_pdus_round_trip() {
    // bind_transceiver (SMPP 3.4), its response, enquire_link, generic_nack, unbind.
    let mut bind = Vec::new();
    bind.extend_from_slice(b"cwesme\0cwpass\0OTA\0");
    bind.extend_from_slice(&[0x34, 1, 1, 0]);
    roundtrip(&pdu(0x09, 1, &bind));
    roundtrip(&pdu(0x8000_0009, 1, b"jasmin\0"));
    roundtrip(&pdu(0x15, 2, &[]));
    roundtrip(&pdu(0x8000_0015, 2, &[]));
    roundtrip(&pdu(0x8000_0000, 3, &[]));
    roundtrip(&pdu(0x06, 4, &[]));
    roundtrip(&pdu(0x8000_0004, 5, b"abc-123\0"));
    roundtrip(&pdu(0x8000_0005, 5, b"\0"));
}

#[test]
fn a_pdu_rusmpp_cannot_decode_is_reported_not_fatal() {
    // submit_sm with sm_length pointing past the end.
    let mut body = sm_body(0x40, 0x7F, 0, 0xF6, &[1, 2, 3], &[]);
    let n = body.len();
    body[n - 4] = 200;
    let err = decode(&pdu(0x04, 11, &body)).unwrap_err();
    assert!(!err.is_empty());
}
