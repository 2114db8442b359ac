//! Known-answer tests: every line of `vectors/*.txt` (see their headers for the sources).

use ota::cat::{self, CommandBody, Envelope, Event, ProactiveCommand, TerminalResponse};
use ota::tpdu::{
    self, Address, AddressValue, ConcatRef, Dcs, InformationElement, MessageClass, Npi, PacketKind,
    Pid, SmsDeliver, SmsSubmit, Timestamp, Ton, UserDataHeader,
};

struct Vector {
    kind: String,
    name: String,
    check: String,
    bytes: Vec<u8>,
}

fn load(text: &str) -> Vec<Vector> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut it = l.split_whitespace();
            let kind = it.next().unwrap().to_owned();
            let name = it.next().unwrap().to_owned();
            let check = it.next().unwrap().to_owned();
            let hex: String = it.collect();
            let bytes = apdu::parse_hex(&hex).unwrap_or_else(|e| panic!("{name}: {e}"));
            Vector {
                kind,
                name,
                check,
                bytes,
            }
        })
        .collect()
}

fn all() -> Vec<Vector> {
    let mut v = load(include_str!("vectors/pysim.txt"));
    v.extend(load(include_str!("vectors/b2g_cat.txt")));
    v
}

fn find(name: &str) -> Vec<u8> {
    all().into_iter().find(|v| v.name == name).unwrap().bytes
}

/// Decodes the vector, and re-encodes it when the check is `exact`.
fn run(v: &Vector) -> Result<Option<Vec<u8>>, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    Ok(match v.kind.as_str() {
        "udh" => {
            let (h, tail) = UserDataHeader::decode_prefix(&v.bytes).map_err(|x| e(&x))?;
            let mut out = h.encode().map_err(|x| e(&x))?;
            out.extend_from_slice(tail);
            Some(out)
        }
        "address" => {
            let (a, used) = Address::decode_prefix(&v.bytes).map_err(|x| e(&x))?;
            let mut out = a.encode().map_err(|x| e(&x))?;
            out.extend_from_slice(&v.bytes[used..]);
            Some(out)
        }
        "submit" => Some(
            SmsSubmit::decode(&v.bytes)
                .map_err(|x| e(&x))?
                .encode()
                .map_err(|x| e(&x))?,
        ),
        "deliver" | "deliver_bad_udl" => Some(
            SmsDeliver::decode(&v.bytes)
                .map_err(|x| e(&x))?
                .encode()
                .map_err(|x| e(&x))?,
        ),
        "ctlv" => {
            let c = cat::parse_ctlvs(&v.bytes).map_err(|x| e(&x))?;
            Some(cat::encode_ctlvs(&c).map_err(|x| e(&x))?)
        }
        "proactive" => Some(
            ProactiveCommand::decode(&v.bytes)
                .map_err(|x| e(&x))?
                .encode()
                .map_err(|x| e(&x))?,
        ),
        "envelope" => Some(
            Envelope::decode(&v.bytes)
                .map_err(|x| e(&x))?
                .encode()
                .map_err(|x| e(&x))?,
        ),
        "terminal_response" => Some(
            TerminalResponse::decode(&v.bytes)
                .map_err(|x| e(&x))?
                .encode()
                .map_err(|x| e(&x))?,
        ),
        k => panic!("unknown kind {k}"),
    })
}

#[test]
fn every_vector() {
    let vectors = all();
    assert!(vectors.len() >= 50, "{} vectors", vectors.len());
    for v in &vectors {
        let r = run(v);
        match v.check.as_str() {
            "reject" => assert!(r.is_err(), "{}: accepted", v.name),
            "decode" => {
                r.unwrap_or_else(|e| panic!("{}: {e}", v.name));
            }
            "exact" => {
                let out = r.unwrap_or_else(|e| panic!("{}: {e}", v.name)).unwrap();
                assert_eq!(
                    apdu::hex(&out),
                    apdu::hex(&v.bytes),
                    "{}: re-encoding differs",
                    v.name
                );
            }
            c => panic!("unknown check {c}"),
        }
    }
}

#[test]
fn pysim_udh_fields() {
    let bytes = find("two_ie_data_tail");
    let (h, tail) = UserDataHeader::decode_prefix(&bytes).unwrap();
    assert_eq!(
        h.elements,
        vec![
            InformationElement::ResponsePacket,
            InformationElement::Other {
                iei: 0x70,
                data: vec![0xFF]
            }
        ]
    );
    assert_eq!(tail, [0xAB, 0xCD]);
    let (h, _) = UserDataHeader::decode_prefix(&find("single_ie_value")).unwrap();
    assert_eq!(
        h.elements,
        vec![InformationElement::Other {
            iei: 0x71,
            data: vec![0x10]
        }]
    );
}

#[test]
fn pysim_addresses() {
    let (a, used) = Address::decode_prefix(&find("from_bytes")).unwrap();
    assert_eq!(
        (a.ton, a.npi, a.digits(), used),
        (Ton::Unknown, Npi::Unknown, Some("1234"), 4)
    );
    let (a, _) = Address::decode_prefix(&find("from_bytes_odd")).unwrap();
    assert_eq!(a.digits(), Some("123"));
    assert_eq!(
        Address::international("12345").encode().unwrap(),
        find("to_bytes_odd")
    );
}

#[test]
fn pysim_submit_fields() {
    let s = SmsSubmit::decode(&find("vcard")).unwrap();
    assert!(s.reject_duplicates && !s.reply_path && !s.status_report_request);
    assert_eq!(s.validity, Some(tpdu::ValidityPeriod::Relative(0xA7)));
    assert_eq!((s.pid, s.dcs), (Pid(0), Dcs(0xF5)));
    assert_eq!(s.destination.digits(), Some("61416271170"));
    let (udl, _) = s.user_data.encode(s.dcs).unwrap();
    assert_eq!(udl, 140);
    let h = s.user_data.header.as_ref().unwrap();
    assert_eq!(h.concat(), Some((ConcatRef::Eight(1), 2, 1)));
    assert!(s.user_data.payload.starts_with(b"BEGIN:VCARD"));
}

#[test]
fn pysim_deliver_alphanumeric_originator() {
    let d = SmsDeliver::decode(&find("alnum_oa")).unwrap();
    assert!(!d.more_messages && !d.loop_prevention && !d.reply_path);
    assert!(!d.status_report_indication && d.user_data.header.is_none());
    assert_eq!(d.originator.ton, Ton::Alphanumeric);
    assert_eq!(
        d.originator.value,
        AddressValue::Alphanumeric("ekit".into())
    );
    assert_eq!((d.pid, d.dcs), (Pid::SIM_DATA_DOWNLOAD, Dcs::CLASS2_8BIT));
    assert_eq!(d.dcs.class(), Some(MessageClass::Class2));
    assert_eq!(d.user_data.payload.len(), 8);
    assert_eq!(d.scts.year, 9);
    assert_eq!(d.scts.tz_quarters, 0);
}

/// pySim's test_ota.py builds these TPDUs from the command packet; so does this crate
/// (with the corrected TP-UDL), byte for byte.
#[test]
fn pysim_ota_tpdus_rebuilt_from_the_packet() {
    for name in [
        "3DES-SJA5-CIPHERED-CC",
        "3DES-SJA5-UNCIPHERED-CC",
        "3DES-SJA5-UNCIPHERED-NOCC",
        "AES128-SJA5-CIPHERED-CC",
    ] {
        let bad = all()
            .into_iter()
            .find(|v| v.name == name && v.kind == "deliver_bad_udl")
            .unwrap()
            .bytes;
        assert_eq!(
            SmsDeliver::decode(&bad),
            Err(tpdu::Error::TrailingBytes(bad.len() - 17 - 3)),
            "{name}"
        );
        let packet = &bad[17 + 3..];
        let parts = tpdu::split_packet(PacketKind::Command, packet, ConcatRef::Eight(0)).unwrap();
        assert_eq!(parts.len(), 1);
        let scts = Timestamp::decode(&[0x22, 0x70, 0x52, 0, 0, 0, 0]).unwrap();
        let mut d = SmsDeliver::ota(
            Address::new(Ton::Unknown, Npi::Isdn, "12345678"),
            scts,
            parts[0].clone(),
        );
        d.more_messages = true; // pySim leaves TP-MMS at 0
        let good = all()
            .into_iter()
            .find(|v| v.name == name && v.kind == "deliver")
            .unwrap()
            .bytes;
        assert_eq!(apdu::hex(&d.encode().unwrap()), apdu::hex(&good), "{name}");
        assert_eq!(good[16] as usize, 3 + packet.len());
    }
}

#[test]
fn pysim_cat_objects() {
    let o = cat::parse_ctlvs(&find("OtherAddress")).unwrap();
    assert!(o[0].tag.comprehension_required);
    assert_eq!(o[0].tag.value, cat::tag::OTHER_ADDRESS);
    let o = cat::parse_ctlvs(&find("UiccTransportLevel")).unwrap();
    assert_eq!(o[0].value, [2, 0x80, 0]);
    let o = cat::parse_ctlvs(&find("TextString")).unwrap();
    assert_eq!(o[0].value[1..], *b"password");
}

#[test]
fn pysim_smpp2sim_envelope() {
    let Envelope::SmsPpDownload(s) = Envelope::decode(&find("smpp2sim_sms_pp")).unwrap() else {
        panic!("not SMS-PP download")
    };
    assert_eq!(s.address.unwrap().digits, "012345");
    assert_eq!(s.tpdu.originator.digits(), Some("12"));
    assert_eq!(s.tpdu.originator.ton, Ton::International);
    let h = s.tpdu.user_data.header.as_ref().unwrap();
    assert_eq!(h.packet_kind(), Some(PacketKind::Command));
    assert_eq!(s.tpdu.user_data.payload.len(), 0x2A);
}

#[test]
fn b2g_setup_menu_fields() {
    let c = ProactiveCommand::decode(&find("setup_menu_cmd_1")).unwrap();
    let CommandBody::SetUpMenu(m) = &c.body else {
        panic!()
    };
    assert_eq!(m.alpha.text(), "Toolkit Menu");
    assert_eq!(m.items.len(), 4);
    assert_eq!(
        (m.items[3].id, m.items[3].text.text()),
        (4, "Item 4".into())
    );
    let c = ProactiveCommand::decode(&find("setup_menu_cmd_7")).unwrap();
    let CommandBody::SetUpMenu(m) = &c.body else {
        panic!()
    };
    assert_eq!(
        m.next_actions.as_deref(),
        Some(&[0x13, 0x10, 0x15, 0x26][..])
    );
    let c = ProactiveCommand::decode(&find("setup_menu_cmd_28")).unwrap();
    let CommandBody::SetUpMenu(m) = &c.body else {
        panic!()
    };
    assert_eq!(m.alpha.text(), "工具箱单");
    assert_eq!(m.items[0].text.text(), "项目一");
    let c = ProactiveCommand::decode(&find("setup_menu_remove")).unwrap();
    let CommandBody::SetUpMenu(m) = &c.body else {
        panic!()
    };
    assert!(m.items.is_empty());
}

#[test]
fn b2g_send_sms_fields() {
    let c = ProactiveCommand::decode(&find("send_sms_2")).unwrap();
    let CommandBody::SendShortMessage(s) = &c.body else {
        panic!()
    };
    assert_eq!(s.alpha.as_ref().unwrap().text(), "Short Message");
    assert_eq!(s.address.as_ref().unwrap().digits, "112233445566778");
    assert_eq!(s.tpdu.destination.digits(), Some("012345678"));
    assert_eq!(s.tpdu.user_data.text(s.tpdu.dcs).unwrap(), "Short Message");
    let c = ProactiveCommand::decode(&find("send_sms_3_packing")).unwrap();
    assert_eq!(c.qualifier, ProactiveCommand::QUALIFIER_PACKING_REQUIRED);
    let CommandBody::SendShortMessage(s) = &c.body else {
        panic!()
    };
    assert_eq!(s.tpdu.user_data.payload.len(), 160);
}

#[test]
fn b2g_bip_fields() {
    let c = ProactiveCommand::decode(&find("open_channel_1")).unwrap();
    assert_eq!(c.qualifier, 1);
    let CommandBody::OpenChannel(o) = &c.body else {
        panic!()
    };
    assert_eq!(o.alpha.as_ref().unwrap().text(), "Open ID");
    assert_eq!(o.bearer.bearer_type, cat::bearer_type::GPRS);
    assert_eq!(o.buffer_size, 1400);
    assert_eq!(
        o.network_access_name.as_ref().unwrap().to_dotted().unwrap(),
        "TestGp.rs"
    );
    assert_eq!(o.login.as_ref().unwrap().text, b"UserLog");
    assert_eq!(o.password.as_ref().unwrap().text, b"UserPwd");
    let t = o.transport.unwrap();
    assert_eq!(
        (t.protocol, t.port),
        (cat::transport_protocol::UDP_CLIENT_REMOTE, Some(44444))
    );
    assert_eq!(
        o.destination,
        Some(cat::OtherAddress::Ipv4("1.1.1.1".parse().unwrap()))
    );
    assert_eq!(o.local_address, None);
    assert_eq!(o.other.len(), 1); // icon identifier
                                  // Re-encoding in spec order with CR set decodes to the same command.
    assert_eq!(ProactiveCommand::decode(&c.encode().unwrap()).unwrap(), c);

    let c = ProactiveCommand::decode(&find("send_data")).unwrap();
    assert_eq!(c.qualifier, ProactiveCommand::QUALIFIER_SEND_IMMEDIATELY);
    assert_eq!(c.devices.destination, cat::Device::Channel(1));
    let CommandBody::SendData(s) = &c.body else {
        panic!()
    };
    assert_eq!(s.data, [0, 1, 2, 3, 4, 5, 6, 7]);
    let CommandBody::ReceiveData(r) = ProactiveCommand::decode(&find("receive_data"))
        .unwrap()
        .body
    else {
        panic!()
    };
    assert_eq!(r.length, 200);
}

#[test]
fn b2g_display_text_is_kept_raw_and_its_text_unpacks() {
    let c = ProactiveCommand::decode(&find("display_text_gsm7")).unwrap();
    let CommandBody::Unknown {
        type_of_command,
        objects,
    } = &c.body
    else {
        panic!()
    };
    assert_eq!(*type_of_command, cat::command_type::DISPLAY_TEXT);
    let text = &objects[0].value;
    assert_eq!(text[0], 0x00); // DCS: packed GSM 7-bit
    let septets = tpdu::unpack_septets(&text[1..], 0, (text.len() - 1) * 8 / 7).unwrap();
    assert_eq!(
        tpdu::gsm7_decode(&septets),
        "Saldo 2.04 E. Validez 20/05/13. "
    );
}

#[test]
fn b2g_envelopes_and_responses() {
    assert_eq!(
        Envelope::decode(&find("menu_selection_help")).unwrap(),
        Envelope::MenuSelection {
            item: 1,
            help_request: true
        }
    );
    let Envelope::EventDownload(Event::Other {
        event,
        devices,
        objects,
    }) = Envelope::decode(&find("event_location_status")).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (event, devices.source, objects.len()),
        (3, cat::Device::Terminal, 2)
    );
    let r = TerminalResponse::decode(&find("display_text_screen_busy")).unwrap();
    assert_eq!(r.result.general, cat::ResultCode::TERMINAL_UNABLE);
    assert_eq!(r.result.additional, [1]);
    assert_eq!(r.details.type_of_command, cat::command_type::DISPLAY_TEXT);
    let r = TerminalResponse::decode(&find("select_item_help")).unwrap();
    assert_eq!(r.other, vec![cat::Ctlv::required(0x10, [5])]);
}
