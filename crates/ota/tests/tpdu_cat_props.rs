//! Property tests: encode → decode round trips, concatenation in any order with
//! duplicates, and decoders that never panic on arbitrary bytes.

use ota::cat::{
    self, AlphaId, BearerDescription, CatAddress, CatResult, ChannelStatus, CloseChannel,
    CommandBody, ComprehensionTag, Ctlv, Device, DeviceIdentities, Envelope, Event, MenuItem,
    NetworkAccessName, OpenChannel, OtherAddress, ProactiveCommand, ReceiveData, ResultCode,
    SendData, SendShortMessage, SetUpMenu, TerminalResponse, TextString, TransportLevel,
};
use ota::tpdu::{
    self, Address, AddressValue, ConcatRef, Dcs, InformationElement, Npi, PacketKind, Pid,
    Progress, Reassembler, SmsDeliver, SmsDeliverReport, SmsStatusReport, SmsSubmit, Timestamp,
    Ton, UserData, UserDataHeader, ValidityPeriod,
};
use proptest::prelude::*;

const GSM_CHARS: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCXYZÄÖÑÜ§¿abcxyzäöñüà^{}\\[~]|€";

fn gsm_text(max: usize) -> impl Strategy<Value = String> {
    let chars: Vec<char> = GSM_CHARS.chars().collect();
    prop::collection::vec(prop::sample::select(chars), 0..=max)
        .prop_map(|v| v.into_iter().collect())
}

fn digits(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select("0123456789*#abc".chars().collect::<Vec<_>>()),
        0..=max,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn ton_numeric() -> impl Strategy<Value = Ton> {
    (0u8..8).prop_filter_map("not alphanumeric", |b| {
        let t = Ton::from_bits(b);
        (t != Ton::Alphanumeric).then_some(t)
    })
}

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        (ton_numeric(), 0u8..16, digits(20)).prop_map(|(ton, npi, d)| Address::new(
            ton,
            Npi::from_bits(npi),
            &d
        )),
        // At most 11 septets fit 20 semi-octets; extension characters take two.
        gsm_text(5).prop_map(|t| Address::alphanumeric(&t)),
    ]
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (
        0u8..100,
        0u8..100,
        0u8..100,
        0u8..100,
        0u8..100,
        0u8..100,
        -79i8..=79,
    )
        .prop_map(
            |(year, month, day, hour, minute, second, tz_quarters)| Timestamp {
                year,
                month,
                day,
                hour,
                minute,
                second,
                tz_quarters,
            },
        )
}

fn element() -> impl Strategy<Value = InformationElement> {
    prop_oneof![
        (any::<u8>(), 1u8..=255, 1u8..=255).prop_map(|(r, total, seq)| {
            InformationElement::Concat {
                reference: ConcatRef::Eight(r),
                total,
                seq,
            }
        }),
        (any::<u16>(), 1u8..=255, 1u8..=255).prop_map(|(r, total, seq)| {
            InformationElement::Concat {
                reference: ConcatRef::Sixteen(r),
                total,
                seq,
            }
        }),
        Just(InformationElement::CommandPacket),
        Just(InformationElement::ResponsePacket),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..8)).prop_filter_map(
            "typed forms decode as typed",
            |(iei, data)| {
                let typed = matches!(
                    (iei, data.len()),
                    (0x00, 3) | (0x08, 4) | (0x70, 0) | (0x71, 0)
                );
                (!typed).then_some(InformationElement::Other { iei, data })
            }
        ),
    ]
}

fn header() -> impl Strategy<Value = UserDataHeader> {
    prop::collection::vec(element(), 0..4).prop_map(UserDataHeader::new)
}

/// A DCS and user data that fit it.
fn dcs_and_user_data() -> impl Strategy<Value = (Dcs, UserData)> {
    (any::<u8>(), prop::option::of(header())).prop_flat_map(|(dcs, header)| {
        let dcs = Dcs(dcs);
        let h = header.as_ref().map_or(0, |h| h.encoded_len());
        let payload = if dcs.udl_in_septets() {
            let max = 160 - (8 * h).div_ceil(7);
            prop::collection::vec(0u8..0x80, 0..=max).boxed()
        } else {
            prop::collection::vec(any::<u8>(), 0..=140 - h).boxed()
        };
        payload.prop_map(move |payload| {
            (
                dcs,
                UserData {
                    header: header.clone(),
                    payload,
                },
            )
        })
    })
}

fn deliver() -> impl Strategy<Value = SmsDeliver> {
    (
        any::<[bool; 4]>(),
        address(),
        any::<u8>(),
        timestamp(),
        dcs_and_user_data(),
    )
        .prop_map(|(f, originator, pid, scts, (dcs, user_data))| SmsDeliver {
            more_messages: f[0],
            loop_prevention: f[1],
            reply_path: f[2],
            status_report_indication: f[3],
            originator,
            pid: Pid(pid),
            dcs,
            scts,
            user_data,
        })
}

fn validity() -> impl Strategy<Value = Option<ValidityPeriod>> {
    prop_oneof![
        Just(None),
        any::<u8>().prop_map(|v| Some(ValidityPeriod::Relative(v))),
        any::<[u8; 7]>().prop_map(|v| Some(ValidityPeriod::Enhanced(v))),
        timestamp().prop_map(|t| Some(ValidityPeriod::Absolute(t))),
    ]
}

fn submit() -> impl Strategy<Value = SmsSubmit> {
    (
        any::<[bool; 3]>(),
        any::<u8>(),
        address(),
        any::<u8>(),
        validity(),
        dcs_and_user_data(),
    )
        .prop_map(
            |(f, mr, destination, pid, validity, (dcs, user_data))| SmsSubmit {
                reject_duplicates: f[0],
                reply_path: f[1],
                status_report_request: f[2],
                message_reference: mr,
                destination,
                pid: Pid(pid),
                dcs,
                validity,
                user_data,
            },
        )
}

fn report_parameters() -> impl Strategy<Value = tpdu::ReportParameters> {
    (
        prop::option::of(any::<u8>()),
        prop::option::of(dcs_and_user_data()),
        any::<bool>(),
    )
        .prop_map(|(pid, du, with_ud)| {
            let (dcs, user_data) = match du {
                Some((d, u)) => (Some(d), with_ud.then_some(u)),
                None => (None, None),
            };
            tpdu::ReportParameters {
                pid: pid.map(Pid),
                dcs,
                user_data,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn septets_pack_unpack(septets in prop::collection::vec(0u8..0x80, 0..200), fill in 0u8..7) {
        let packed = tpdu::pack_septets(&septets, fill).unwrap();
        prop_assert_eq!(tpdu::unpack_septets(&packed, fill, septets.len()).unwrap(), septets);
    }

    #[test]
    fn gsm7_text_round_trip(text in gsm_text(100)) {
        prop_assert_eq!(tpdu::gsm7_decode(&tpdu::gsm7_encode(&text).unwrap()), text);
    }

    #[test]
    fn address_round_trip(a in address()) {
        let bytes = a.encode().unwrap();
        let (b, used) = Address::decode_prefix(&bytes).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(b, a);
    }

    #[test]
    fn udh_round_trip(h in header(), tail in prop::collection::vec(any::<u8>(), 0..10)) {
        let mut bytes = h.encode().unwrap();
        prop_assert_eq!(bytes.len(), h.encoded_len());
        bytes.extend_from_slice(&tail);
        let (g, rest) = UserDataHeader::decode_prefix(&bytes).unwrap();
        prop_assert_eq!(g, h);
        prop_assert_eq!(rest, &tail[..]);
    }

    #[test]
    fn deliver_round_trip(d in deliver()) {
        let bytes = d.encode().unwrap();
        prop_assert_eq!(SmsDeliver::decode(&bytes).unwrap(), d);
    }

    #[test]
    fn submit_round_trip(s in submit()) {
        let bytes = s.encode().unwrap();
        prop_assert_eq!(SmsSubmit::decode(&bytes).unwrap(), s);
    }

    #[test]
    fn status_report_round_trip(mr in any::<u8>(), ra in address(), t1 in timestamp(), t2 in timestamp(),
                                st in any::<u8>(), f in any::<[bool; 3]>(), parameters in report_parameters()) {
        let r = SmsStatusReport {
            more_messages: f[0], loop_prevention: f[1], status_report_qualifier: f[2],
            message_reference: mr, recipient: ra, scts: t1, discharge_time: t2, status: st, parameters,
        };
        prop_assert_eq!(SmsStatusReport::decode(&r.encode().unwrap()).unwrap(), r);
    }

    #[test]
    fn deliver_report_round_trip(fcs in prop::option::of(any::<u8>()), parameters in report_parameters()) {
        let r = SmsDeliverReport { failure_cause: fcs, parameters };
        prop_assert_eq!(SmsDeliverReport::decode(&r.encode().unwrap(), fcs.is_some()).unwrap(), r);
    }

    #[test]
    fn tpdu_decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = SmsDeliver::decode(&bytes);
        let _ = SmsSubmit::decode(&bytes);
        let _ = SmsStatusReport::decode(&bytes);
        let _ = SmsDeliverReport::decode(&bytes, true);
        let _ = UserDataHeader::decode_prefix(&bytes);
        let _ = Address::decode_prefix(&bytes);
        for dcs in [0x00, 0xF6, 0x08] {
            if let Some((&udl, ud)) = bytes.split_first() {
                let _ = UserData::decode(true, Dcs(dcs), udl, ud);
            }
        }
    }

    #[test]
    fn split_then_reassemble_in_any_order(
        len in 1usize..2000,
        ref16 in any::<bool>(),
        reference in any::<u16>(),
        response in any::<bool>(),
        order_seed in any::<u64>(),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
    ) {
        let packet: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        let reference = if ref16 { ConcatRef::Sixteen(reference) } else { ConcatRef::Eight(reference as u8) };
        let kind = if response { PacketKind::Response } else { PacketKind::Command };
        let parts = tpdu::split_packet(kind, &packet, reference).unwrap();
        prop_assert_eq!(parts.len(), tpdu::sms_count(len, ref16));
        // Fewest: one part fewer could not hold the packet.
        let n = parts.len();
        if n > 1 {
            let (first, later) = if ref16 { (131, 133) } else { (132, 134) };
            prop_assert!(first + later * (n - 2) < len);
        }
        for p in &parts {
            let (udl, ud) = p.encode(Dcs::CLASS2_8BIT).unwrap();
            prop_assert!(ud.len() <= 140);
            prop_assert_eq!(usize::from(udl), ud.len());
        }
        // Shuffle deterministically, then add duplicates.
        let mut order: Vec<usize> = (0..n).collect();
        let mut s = order_seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        for d in &dups {
            let at = d.index(order.len() + 1);
            let which = order[d.index(n)];
            order.insert(at, which);
        }
        let originator = Address::international("4912345678");
        let mut r = Reassembler::new();
        let mut done = None;
        for &i in &order {
            match r.push(&originator, &parts[i]).unwrap() {
                Progress::Complete { kind: k, packet: p } => {
                    prop_assert!(done.is_none());
                    done = Some((k, p));
                }
                Progress::Incomplete { missing, .. } | Progress::Duplicate { missing, .. } => {
                    prop_assert!(!missing.is_empty());
                }
            }
            if done.is_some() { break; }
        }
        prop_assert_eq!(done, Some((kind, packet)));
        prop_assert_eq!(r.pending().count(), 0);
    }
}

// ------------------------------------------------------------------------------------
// CAT
// ------------------------------------------------------------------------------------

/// Tags that no typed field reads, for `other` lists.
fn other_ctlv() -> impl Strategy<Value = Ctlv> {
    (
        prop::sample::select(vec![0x1Eu16, 0x50, 0x51, 0x68, 0x7F, 0x1234, 0x7FFF]),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(value, cr, v)| Ctlv {
            tag: ComprehensionTag {
                value,
                comprehension_required: cr,
            },
            value: v,
        })
}

fn others() -> impl Strategy<Value = Vec<Ctlv>> {
    prop::collection::vec(
        other_ctlv().prop_map(|mut c| {
            c.value.truncate(20);
            c
        }),
        0..3,
    )
}

fn alpha() -> impl Strategy<Value = AlphaId> {
    prop::collection::vec(any::<u8>(), 0..20).prop_map(AlphaId)
}

fn device() -> impl Strategy<Value = Device> {
    any::<u8>().prop_map(Device::from_byte)
}

fn devices() -> impl Strategy<Value = DeviceIdentities> {
    (device(), device()).prop_map(|(s, d)| DeviceIdentities::new(s, d))
}

fn other_address() -> impl Strategy<Value = OtherAddress> {
    prop_oneof![
        Just(OtherAddress::Empty),
        any::<[u8; 4]>().prop_map(|a| OtherAddress::Ipv4(a.into())),
        any::<[u8; 16]>().prop_map(|a| OtherAddress::Ipv6(a.into())),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..20)).prop_filter_map(
            "typed",
            |(kind, address)| {
                let typed = matches!((kind, address.len()), (0x21, 4) | (0x57, 16));
                (!typed).then_some(OtherAddress::Other { kind, address })
            }
        ),
    ]
}

fn text_string() -> impl Strategy<Value = TextString> {
    (any::<u8>(), prop::collection::vec(any::<u8>(), 0..10))
        .prop_map(|(dcs, text)| TextString { dcs, text })
}

fn small_submit() -> impl Strategy<Value = SmsSubmit> {
    submit().prop_map(|mut s| {
        s.user_data.payload.truncate(60);
        s
    })
}

fn body() -> impl Strategy<Value = CommandBody> {
    prop_oneof![
        (
            alpha(),
            prop::collection::vec((any::<u8>(), alpha()), 0..5),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..5)),
            others()
        )
            .prop_map(
                |(alpha, items, next_actions, other)| CommandBody::SetUpMenu(SetUpMenu {
                    alpha,
                    items: items
                        .into_iter()
                        .map(|(id, text)| MenuItem { id, text })
                        .collect(),
                    next_actions,
                    other,
                })
            ),
        (
            prop::option::of(alpha()),
            prop::option::of((ton_numeric(), 0u8..16, digits(10))),
            small_submit(),
            others()
        )
            .prop_map(|(alpha, a, tpdu, other)| CommandBody::SendShortMessage(
                SendShortMessage {
                    alpha,
                    address: a.map(|(ton, npi, digits)| CatAddress {
                        ton,
                        npi: Npi::from_bits(npi),
                        digits
                    }),
                    tpdu,
                    other,
                }
            )),
        (
            prop::option::of(alpha()),
            (any::<u8>(), prop::collection::vec(any::<u8>(), 0..8)),
            any::<u16>(),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..12)),
            prop::option::of(other_address()),
            prop::option::of(text_string()),
            prop::option::of(text_string()),
            prop::option::of((any::<u8>(), prop::option::of(any::<u16>()))),
            prop::option::of(other_address()),
            others()
        )
            .prop_map(
                |(
                    alpha,
                    (t, p),
                    buffer_size,
                    nan,
                    local,
                    login,
                    password,
                    transport,
                    destination,
                    other,
                )| {
                    // A password needs a login before it; a local address needs a transport
                    // level after it (otherwise it reads as the local address); a
                    // destination needs a transport level before it.
                    let login = login.or_else(|| {
                        password.clone().map(|_| TextString {
                            dcs: 4,
                            text: vec![],
                        })
                    });
                    let transport =
                        transport.map(|(protocol, port)| TransportLevel { protocol, port });
                    let (local_address, destination) = match transport {
                        Some(_) => (local, destination),
                        None => (local.or(destination), None),
                    };
                    CommandBody::OpenChannel(Box::new(OpenChannel {
                        alpha,
                        bearer: BearerDescription {
                            bearer_type: t,
                            parameters: p,
                        },
                        buffer_size,
                        network_access_name: nan.map(NetworkAccessName),
                        local_address,
                        login,
                        password,
                        transport,
                        destination,
                        other,
                    }))
                }
            ),
        (
            prop::option::of(alpha()),
            prop::collection::vec(any::<u8>(), 0..200),
            others()
        )
            .prop_map(|(alpha, data, other)| CommandBody::SendData(SendData {
                alpha,
                data,
                other
            })),
        (prop::option::of(alpha()), any::<u8>(), others()).prop_map(|(alpha, length, other)| {
            CommandBody::ReceiveData(ReceiveData {
                alpha,
                length,
                other,
            })
        }),
        (prop::option::of(alpha()), others())
            .prop_map(|(alpha, other)| CommandBody::CloseChannel(CloseChannel { alpha, other })),
        (
            any::<u8>(),
            prop::collection::vec(
                other_ctlv().prop_map(|mut c| {
                    c.value.truncate(30);
                    c
                }),
                0..4
            )
        )
            .prop_filter_map("typed command types", |(t, objects)| {
                use cat::command_type::*;
                (![
                    SET_UP_MENU,
                    SEND_SHORT_MESSAGE,
                    OPEN_CHANNEL,
                    CLOSE_CHANNEL,
                    RECEIVE_DATA,
                    SEND_DATA,
                ]
                .contains(&t))
                .then_some(CommandBody::Unknown {
                    type_of_command: t,
                    objects,
                })
            }),
    ]
}

fn channel_status() -> impl Strategy<Value = ChannelStatus> {
    any::<[u8; 2]>().prop_map(ChannelStatus)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ctlv_round_trip(objects in prop::collection::vec(other_ctlv(), 0..4)) {
        let bytes = cat::encode_ctlvs(&objects).unwrap();
        prop_assert_eq!(cat::parse_ctlvs(&bytes).unwrap(), objects);
    }

    #[test]
    fn proactive_command_round_trip(number in any::<u8>(), qualifier in any::<u8>(), devices in devices(), body in body()) {
        let c = ProactiveCommand { number, qualifier, devices, body };
        match c.encode() {
            Ok(bytes) => prop_assert_eq!(ProactiveCommand::decode(&bytes).unwrap(), c),
            // Only a command above 255 octets may be refused.
            Err(e) => prop_assert!(matches!(e, cat::Error::InvalidLength(_)), "{}", e),
        }
    }

    #[test]
    fn terminal_response_round_trip(
        number in any::<u8>(), t in any::<u8>(), q in any::<u8>(), devices in devices(),
        general in any::<u8>(), additional in prop::collection::vec(any::<u8>(), 0..3),
        channel_status in prop::option::of(channel_status()),
        bearer in prop::option::of((any::<u8>(), prop::collection::vec(any::<u8>(), 0..5))),
        buffer_size in prop::option::of(any::<u16>()),
        channel_data in prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
        channel_data_length in prop::option::of(any::<u8>()),
        other in others(),
    ) {
        let r = TerminalResponse {
            details: cat::CommandDetails { number, type_of_command: t, qualifier: q },
            devices,
            result: CatResult::new(ResultCode(general), additional),
            channel_status,
            bearer: bearer.map(|(bearer_type, parameters)| BearerDescription { bearer_type, parameters }),
            buffer_size,
            channel_data,
            channel_data_length,
            other,
        };
        prop_assert_eq!(TerminalResponse::decode(&r.encode().unwrap()).unwrap(), r);
    }

    #[test]
    fn envelope_round_trip(choice in 0u8..5, d in deliver(), item in any::<u8>(), help in any::<bool>(),
                           status in channel_status(), length in any::<u8>(), other in others(),
                           ev in 0u8..0x09, devices in devices(),
                           sc in prop::option::of(digits(12))) {
        let e = match choice {
            0 => {
                let mut d = d;
                d.user_data.payload.truncate(100);
                Envelope::sms_pp(sc.map(|s| CatAddress::international(&s)), d)
            }
            1 => Envelope::MenuSelection { item, help_request: help },
            2 => Envelope::EventDownload(Event::DataAvailable { status, length }),
            3 => Envelope::EventDownload(Event::ChannelStatus { status, other }),
            _ => Envelope::EventDownload(Event::Other { event: ev, devices, objects: other }),
        };
        match e.encode() {
            Ok(bytes) => prop_assert_eq!(Envelope::decode(&bytes).unwrap(), e),
            Err(err) => prop_assert!(matches!(err, cat::Error::InvalidLength(_)), "{}", err),
        }
    }

    #[test]
    fn cat_decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = cat::parse_ctlvs(&bytes);
        let _ = ProactiveCommand::decode(&bytes);
        let _ = Envelope::decode(&bytes);
        let _ = TerminalResponse::decode(&bytes);
        let _ = AlphaId(bytes.clone()).text();
        let _ = NetworkAccessName(bytes.clone()).to_dotted();
        let _ = cat::sms_pp_outcome(&bytes, u16::from_be_bytes([bytes.first().copied().unwrap_or(0x90), 0]));
    }

    #[test]
    fn proactive_objects_never_panic(t in prop::sample::select(vec![0x25u8, 0x13, 0x40, 0x41, 0x42, 0x43, 0x01]),
                                     objects in prop::collection::vec(
                                         (prop::sample::select(vec![0x05u16, 0x06, 0x0B, 0x0D, 0x0F, 0x18, 0x35, 0x36, 0x37, 0x39, 0x3C, 0x3E, 0x47]),
                                          prop::collection::vec(any::<u8>(), 0..12)), 0..8)) {
        let mut o = vec![Ctlv::required(1, [1, t, 0]), Ctlv::required(2, [0x81, 0x82])];
        o.extend(objects.into_iter().map(|(t, v)| Ctlv::required(t, v)));
        if let Ok(c) = ProactiveCommand::from_ctlvs(o) {
            if let Ok(bytes) = c.encode() {
                prop_assert_eq!(ProactiveCommand::decode(&bytes).unwrap(), c);
            }
        }
    }
}

#[test]
fn terminal_profile_bits() {
    let p = cat::TerminalProfile::ota_handset(1);
    use cat::Facility::*;
    for f in [
        SmsPpDataDownload,
        MenuSelection,
        SetUpMenu,
        SendShortMessage,
        OpenChannel,
        CloseChannel,
        SendData,
        ReceiveData,
        TcpClientRemote,
        EventDataAvailable,
        EventChannelStatus,
        CommandResult,
    ] {
        assert!(p.supports(f), "{f:?}");
    }
    assert!(!p.supports(DisplayText));
    assert_eq!(p.channels(), 1);
    let b = p.bytes();
    assert_eq!(b[0] & 0x1B, 0x1B); // b1 b2 b4 b5
    assert_eq!(b[3] & 0x22, 0x22); // SEND SM, SET UP MENU
    assert_eq!(b[5] & 0x0C, 0x0C); // data available, channel status
    assert_eq!(b[11] & 0x1F, 0x1F); // BIP commands
    assert_eq!(b[12], 0x22); // GPRS, one channel
    assert_eq!(b[16] & 1, 1); // TCP client remote
                              // Short profiles read as zero past their end.
    assert!(!cat::TerminalProfile(vec![0xFF]).supports(OpenChannel));
}

#[test]
fn sms_pp_status_words() {
    use cat::SmsPpOutcome::*;
    let por = [0x02, 0x71, 0x00];
    assert_eq!(
        cat::sms_pp_outcome(&por, 0x9000),
        Acknowledge {
            por: por.to_vec(),
            proactive_pending: None
        }
    );
    assert_eq!(
        cat::sms_pp_outcome(&[], 0x9120),
        Acknowledge {
            por: vec![],
            proactive_pending: Some(0x20)
        }
    );
    assert_eq!(cat::sms_pp_outcome(&[], 0x6115), GetResponse(0x15));
    assert_eq!(cat::sms_pp_outcome(&[], 0x9F15), GetResponse(0x15));
    assert_eq!(cat::sms_pp_outcome(&[], 0x9300), Busy);
    assert_eq!(
        cat::sms_pp_outcome(&por, 0x6200),
        DataDownloadError {
            data: por.to_vec(),
            get_response: None
        }
    );
    assert_eq!(cat::proactive_command_pending(0x911A), Some(0x1A));
    let rep = cat::sms_pp_outcome(&por, 0x9000)
        .deliver_report(Pid::SIM_DATA_DOWNLOAD, Dcs::CLASS2_8BIT)
        .unwrap();
    // RP-ACK: MTI 00 with TP-UDHI (the PoR's header `02 71 00`), TP-PI 07, PID 7F,
    // DCS F6, UDL 03, PoR.
    assert_eq!(
        rep.encode().unwrap(),
        [0x40, 0x07, 0x7F, 0xF6, 0x03, 0x02, 0x71, 0x00]
    );
    let busy = cat::sms_pp_outcome(&[], 0x9300)
        .deliver_report(Pid::SIM_DATA_DOWNLOAD, Dcs::CLASS2_8BIT)
        .unwrap();
    assert_eq!(busy.encode().unwrap(), [0x00, 0xD4, 0x03, 0x7F, 0xF6]);
}

#[test]
fn sms_counts_at_the_boundaries() {
    assert_eq!(tpdu::sms_count(137, false), 1);
    assert_eq!(tpdu::sms_count(138, false), 2);
    assert_eq!(tpdu::sms_count(132 + 134, false), 2);
    assert_eq!(tpdu::sms_count(132 + 134 + 1, false), 3);
    assert_eq!(tpdu::sms_count(131 + 133, true), 2);
    assert_eq!(tpdu::sms_count(131 + 133 + 1, true), 3);
    assert!(tpdu::split_packet(
        PacketKind::Command,
        &vec![0; 132 + 134 * 254 + 1],
        ConcatRef::Eight(1)
    )
    .is_err());
    assert_eq!(
        tpdu::split_packet(
            PacketKind::Command,
            &vec![0; 132 + 134 * 254],
            ConcatRef::Eight(1)
        )
        .unwrap()
        .len(),
        255
    );
}

#[test]
fn reassembler_errors_and_drop() {
    let oa = Address::international("1");
    let parts = tpdu::split_packet(PacketKind::Command, &[7; 300], ConcatRef::Eight(9)).unwrap();
    let mut r = Reassembler::new();
    let Progress::Incomplete { key, missing } = r.push(&oa, &parts[1]).unwrap() else {
        panic!()
    };
    assert_eq!(missing, vec![1, 3]);
    let mut changed = parts[1].clone();
    changed.payload[0] ^= 1;
    assert_eq!(
        r.push(&oa, &changed),
        Err(tpdu::Error::ConflictingDuplicate { seq: 2, total: 3 })
    );
    // A later part that claims to start the packet is inconsistent.
    let mut bad = parts[2].clone();
    bad.header
        .as_mut()
        .unwrap()
        .elements
        .push(InformationElement::CommandPacket);
    assert!(r.push(&oa, &bad).is_err());
    assert_eq!(r.missing(&key), Some(vec![1, 3]));
    assert!(r.drop_message(&key));
    assert_eq!(r.missing(&key), None);
    assert!(r.push(&oa, &UserData::new(vec![1])).is_err());
    // Response packets reassemble the same way.
    let parts =
        tpdu::split_packet(PacketKind::Response, &[3; 140], ConcatRef::Sixteen(0x1234)).unwrap();
    r.push(&oa, &parts[1]).unwrap();
    assert_eq!(
        r.push(&oa, &parts[0]).unwrap(),
        Progress::Complete {
            kind: PacketKind::Response,
            packet: vec![3; 140]
        }
    );
    let _ = AddressValue::Digits(String::new());
}
