//! Property tests: every parser is total (never panics) on arbitrary bytes, and every
//! builder round-trips through its parser.

use apdu::tlv::Tag;
use apdu::Command;
use gp::cap::{CapFile, LoadFile};
use gp::commands::{
    CardData, Confirmation, Cplc, DapBlock, DataObject, Delete, Fci, GetData, GetStatus, GpCommand,
    Install, InstallParams, KeyComponent, KeyInfo, KeyInfoEntry, Load, LoadAssembler,
    LoadFileStructure, Occurrence, PutKey, RegistryEntry, RegistryKind, ScpOption, Select,
    SetStatus, SetStatusScope, StatusFormat, StatusPage, StatusSubset, StoreData,
    StoreDataEncryption, StoreDataStructure,
};
use gp::{Aid, Privilege, Privileges};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

const HELLO: &[u8] = include_bytes!("data/pysim_test_javacard_HelloSTK.cap");

fn aid() -> impl Strategy<Value = Aid> {
    vec(any::<u8>(), 5..=16).prop_map(|b| Aid::new(&b).unwrap())
}
fn privileges() -> impl Strategy<Value = Privileges> {
    any::<[u8; 3]>().prop_map(Privileges)
}
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}
fn subset() -> impl Strategy<Value = StatusSubset> {
    prop_oneof![
        Just(StatusSubset::IssuerSecurityDomain),
        Just(StatusSubset::Applications),
        Just(StatusSubset::LoadFiles),
        Just(StatusSubset::LoadFilesAndModules),
    ]
}
fn format() -> impl Strategy<Value = StatusFormat> {
    prop_oneof![Just(StatusFormat::Legacy), Just(StatusFormat::Tlv)]
}

fn install() -> impl Strategy<Value = Install> {
    prop_oneof![
        (aid(), option::of(aid()), bytes(64), bytes(64), bytes(64)).prop_map(
            |(load_file, security_domain, hash, params, token)| Install::ForLoad {
                load_file,
                security_domain,
                hash,
                params,
                token
            }
        ),
        (
            aid(),
            aid(),
            aid(),
            privileges(),
            bytes(64),
            bytes(64),
            any::<bool>()
        )
            .prop_map(
                |(load_file, module, application, privileges, params, token, make_selectable)| {
                    Install::ForInstall {
                        load_file,
                        module,
                        application,
                        privileges,
                        params,
                        token,
                        make_selectable,
                    }
                }
            ),
        (aid(), privileges(), bytes(64), bytes(64)).prop_map(
            |(application, privileges, params, token)| {
                Install::ForMakeSelectable {
                    application,
                    privileges,
                    params,
                    token,
                }
            }
        ),
        (aid(), aid(), bytes(64), bytes(64)).prop_map(
            |(security_domain, application, params, token)| {
                Install::ForExtradition {
                    security_domain,
                    application,
                    params,
                    token,
                }
            }
        ),
        aid().prop_map(|application| Install::ForPersonalization { application }),
        (
            option::of(aid()),
            option::of(aid()),
            option::of(privileges()),
            bytes(64),
            bytes(64)
        )
            .prop_map(
                |(security_domain, application, privileges, params, token)| {
                    Install::ForRegistryUpdate {
                        security_domain,
                        application,
                        privileges,
                        params,
                        token,
                    }
                }
            ),
    ]
}

fn command() -> impl Strategy<Value = GpCommand> {
    prop_oneof![
        (bytes(16), any::<bool>()).prop_map(|(name, next)| GpCommand::Select(Select {
            name,
            occurrence: if next {
                Occurrence::Next
            } else {
                Occurrence::First
            }
        })),
        (1u16..).prop_map(|t| GpCommand::GetData(GetData::new(DataObject::from_tag(t)))),
        (
            subset(),
            format(),
            any::<bool>(),
            bytes(16),
            option::of(bytes(20))
        )
            .prop_map(
                |(subset, format, next, search, tag_list)| GpCommand::GetStatus(GetStatus {
                    subset,
                    format,
                    next,
                    search,
                    tag_list
                })
            ),
        install().prop_map(GpCommand::Install),
        (any::<bool>(), any::<u8>(), vec(any::<u8>(), 1..=255))
            .prop_map(|(last, block, data)| GpCommand::Load(Load { last, block, data })),
        (
            aid(),
            any::<bool>(),
            option::of(bytes(40)),
            option::of(bytes(40))
        )
            .prop_map(
                |(aid, related, control_reference, token)| GpCommand::Delete(Delete::Object {
                    aid,
                    related,
                    control_reference,
                    token
                })
            ),
        (option::of(any::<u8>()), option::of(any::<u8>()))
            .prop_filter("a key id or version", |(i, v)| i.is_some() || v.is_some())
            .prop_map(|(id, version)| GpCommand::Delete(Delete::Key { id, version })),
        (0..3u8, any::<u8>(), option::of(aid())).prop_map(|(s, state, aid)| {
            let scope = [
                SetStatusScope::Card,
                SetStatusScope::Application,
                SetStatusScope::SecurityDomainAndApplications,
            ][usize::from(s)];
            let aid = if scope == SetStatusScope::Card {
                aid
            } else {
                aid.or(Some(gp::ISD_AID))
            };
            GpCommand::SetStatus(SetStatus { scope, state, aid })
        }),
        (
            any::<bool>(),
            0..3u8,
            0..3u8,
            any::<bool>(),
            any::<u8>(),
            bytes(255)
        )
            .prop_map(
                |(last, e, s, response_expected, block, data)| GpCommand::StoreData(StoreData {
                    last,
                    encryption: [
                        StoreDataEncryption::None,
                        StoreDataEncryption::ApplicationDependent,
                        StoreDataEncryption::Encrypted
                    ][usize::from(e)],
                    structure: [
                        StoreDataStructure::None,
                        StoreDataStructure::Dgi,
                        StoreDataStructure::BerTlv
                    ][usize::from(s)],
                    response_expected,
                    block,
                    data
                })
            ),
        (
            0..0x80u8,
            0..0x80u8,
            any::<bool>(),
            any::<bool>(),
            vec(any::<u8>(), 1..=200)
        )
            .prop_map(
                |(old_version, key_id, multiple, more, data)| GpCommand::PutKey(PutKey {
                    old_version,
                    key_id,
                    multiple,
                    more,
                    data
                })
            ),
    ]
}

/// Tags that are valid one- or two-byte BER tags and not given a meaning by the parser
/// of the structure they are put in.
fn other_tag() -> impl Strategy<Value = Tag> {
    tags(&[0x80, 0x81, 0xC0, 0xDF01, 0x9F66, 0x5F50])
}

fn tags(values: &[u32]) -> impl Strategy<Value = Tag> {
    prop::sample::select(values.iter().map(|&v| Tag::new(v)).collect::<Vec<_>>())
}

fn registry_entry(
    subset: StatusSubset,
    format: StatusFormat,
) -> impl Strategy<Value = RegistryEntry> {
    (
        aid(),
        any::<u8>(),
        privileges(),
        bytes(3),
        option::of(aid()),
        option::of(bytes(4)),
        vec(aid(), 0..3),
        option::of(aid()),
    )
        .prop_map(
            move |(aid, life_cycle, p, implicit, load_file, version, modules, sd)| {
                let load_files = matches!(
                    subset,
                    StatusSubset::LoadFiles | StatusSubset::LoadFilesAndModules
                );
                let mut e = RegistryEntry::new(RegistryKind::Application, aid, life_cycle);
                match format {
                    StatusFormat::Tlv => {
                        e.privileges = if load_files { None } else { Some(p) };
                        e.implicit_selection = implicit;
                        e.load_file = load_file;
                        e.version = version;
                        e.modules = modules;
                        e.associated_sd = sd;
                    }
                    StatusFormat::Legacy => {
                        e.privileges = if load_files {
                            None
                        } else {
                            Some(Privileges([p.0[0], 0, 0]))
                        };
                        if subset == StatusSubset::LoadFilesAndModules {
                            e.modules = modules;
                        }
                    }
                }
                e.kind = match subset {
                    StatusSubset::IssuerSecurityDomain => RegistryKind::IssuerSecurityDomain,
                    StatusSubset::Applications
                        if e.privileges
                            .is_some_and(|p| p.contains(Privilege::SecurityDomain)) =>
                    {
                        RegistryKind::SecurityDomain
                    }
                    StatusSubset::Applications => RegistryKind::Application,
                    _ => RegistryKind::LoadFile,
                };
                e
            },
        )
}

fn key_entry() -> impl Strategy<Value = KeyInfoEntry> {
    prop_oneof![
        (any::<u8>(), any::<u8>(), vec((0u8..0xFF, 1u16..=256), 1..4)).prop_map(
            |(id, version, c)| KeyInfoEntry {
                id,
                version,
                components: c
                    .into_iter()
                    .map(|(key_type, length)| KeyComponent { key_type, length })
                    .collect(),
                extended: None,
            }
        ),
        (
            any::<u8>(),
            any::<u8>(),
            vec((any::<u8>(), any::<u16>()), 1..4),
            option::of(any::<u8>()),
            option::of(any::<u8>())
        )
            .prop_map(|(id, version, c, u, a)| KeyInfoEntry {
                id,
                version,
                components: c
                    .into_iter()
                    .map(|(key_type, length)| KeyComponent { key_type, length })
                    .collect(),
                extended: Some((u, a)),
            }),
    ]
}

/// 512 cases, or `PROPTEST_CASES` when set (for longer local runs).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn commands_round_trip(c in command()) {
        let apdu = c.to_command().unwrap();
        let bytes = apdu.to_bytes().unwrap();
        let back = GpCommand::parse(&Command::parse(&bytes).unwrap()).unwrap();
        prop_assert_eq!(back, c);
    }

    #[test]
    fn command_parser_is_total(cla in any::<u8>(), ins in prop::sample::select(vec![0xA4u8, 0xCA, 0xF2, 0xE6, 0xE8, 0xE4, 0xF0, 0xE2, 0xD8, 0x50]),
                               p1 in any::<u8>(), p2 in any::<u8>(), data in bytes(300)) {
        let cmd = Command { cla, ins, p1, p2, data, le: None };
        let _ = GpCommand::parse(&cmd);
    }

    #[test]
    fn response_parsers_are_total(data in bytes(600)) {
        let _ = Fci::parse(&data);
        let _ = Cplc::parse(&data);
        let _ = CardData::parse(&data);
        let _ = KeyInfo::parse(&data);
        let _ = Confirmation::parse(&data);
        let _ = InstallParams::parse(&data);
        let _ = LoadFileStructure::parse(&data);
        let _ = LoadFile::parse(&data);
        let _ = CapFile::from_bytes(&data);
        let _ = GetData::new(DataObject::Iin).value_of(&data);
        for s in [StatusSubset::IssuerSecurityDomain, StatusSubset::Applications, StatusSubset::LoadFiles, StatusSubset::LoadFilesAndModules] {
            for f in [StatusFormat::Legacy, StatusFormat::Tlv] {
                let _ = RegistryEntry::parse_all(s, f, &data);
            }
        }
    }

    #[test]
    fn tlv_shaped_input_does_not_panic(tags in vec((prop::sample::select(vec![0x6Fu32, 0x84, 0xA5, 0x73, 0x9F65, 0x66, 0x06, 0x60, 0x64, 0xE0, 0xC0, 0xE3, 0x4F, 0x9F70, 0xC5, 0xC4, 0x84, 0xCC, 0xCE, 0xCF, 0xC9, 0xEF, 0xE2, 0xC3, 0xC4, 0xD4]), bytes(20)), 0..6)) {
        let mut v = Vec::new();
        for (t, val) in &tags {
            let tb = t.to_be_bytes();
            let skip = tb.iter().take_while(|&&b| b == 0).count();
            v.extend_from_slice(&tb[skip..]);
            v.push(val.len() as u8);
            v.extend_from_slice(val);
        }
        let _ = Fci::parse(&v);
        let _ = CardData::parse(&v);
        let _ = KeyInfo::parse(&v);
        let _ = InstallParams::parse(&v);
        let _ = LoadFileStructure::parse(&v);
        for f in [StatusFormat::Legacy, StatusFormat::Tlv] {
            let _ = RegistryEntry::parse_all(StatusSubset::LoadFilesAndModules, f, &v);
        }
    }

    #[test]
    fn mutated_cap_files_do_not_panic(flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut b = HELLO.to_vec();
        for (i, x) in &flips {
            let i = i.index(b.len());
            b[i] ^= x | 1;
        }
        let _ = CapFile::from_bytes(&b);
        let _ = CapFile::from_bytes(&HELLO[..cut.index(HELLO.len())]);
    }

    #[test]
    fn mutated_load_files_do_not_panic(flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut b = CapFile::from_bytes(HELLO).unwrap().load_file_data_block();
        for (i, x) in &flips {
            let i = i.index(b.len());
            b[i] ^= x | 1;
        }
        let _ = LoadFile::parse(&b);
    }

    #[test]
    fn fci_round_trip(a in aid(), sd in option::of(bytes(30)), pl in option::of(bytes(10)), max in option::of(any::<u32>()), other in vec((other_tag(), bytes(8)), 0..3)) {
        let f = Fci { aid: a, sd_management_data: sd, app_production_life_cycle: pl, max_command_data_length: max, proprietary_other: other };
        prop_assert_eq!(Fci::parse(&f.to_bytes()).unwrap(), f);
    }

    #[test]
    fn cplc_round_trip(v in vec(any::<u8>(), 42)) {
        let c = Cplc::parse(&v).unwrap();
        prop_assert_eq!(c.value(), v.clone());
        prop_assert_eq!(Cplc::parse(&c.to_bytes()).unwrap(), c);
        let _ = c.to_string();
    }

    #[test]
    fn card_data_round_trip(ver in option::of(vec(0u8..0x80, 1..4)), scheme in any::<bool>(), scp in vec((any::<u8>(), any::<u8>()), 0..3),
                            cfg in option::of(bytes(10)), chip in option::of(bytes(10)), other in vec((tags(&[0x67, 0x68]), bytes(8)), 0..2)) {
        let c = CardData { gp_version: ver, identification_scheme: scheme, scp: scp.into_iter().map(|(scp, i)| ScpOption { scp, i }).collect(),
                           configuration_details: cfg, chip_details: chip, other };
        prop_assert_eq!(CardData::parse(&c.to_bytes()).unwrap(), c);
    }

    #[test]
    fn key_info_round_trip(entries in vec(key_entry(), 0..5)) {
        let k = KeyInfo { entries };
        prop_assert_eq!(KeyInfo::parse(&k.to_bytes()).unwrap(), k);
    }

    #[test]
    fn registry_round_trip((s, f, entries) in (subset(), format()).prop_flat_map(|(s, f)| (Just(s), Just(f), vec(registry_entry(s, f), 0..6)))) {
        let data: Vec<u8> = entries.iter().flat_map(|e| e.encode(s, f)).collect();
        prop_assert_eq!(RegistryEntry::parse_all(s, f, &data).unwrap(), entries);
    }

    #[test]
    fn status_pages_cover_all_entries((s, f, entries) in (subset(), format()).prop_flat_map(|(s, f)| (Just(s), Just(f), vec(registry_entry(s, f), 1..20))),
                                      max in 120usize..=256) {
        let req = GetStatus::new(s).with_format(f);
        let mut got = Vec::new();
        let mut start = 0;
        loop {
            let page = StatusPage::build(s, f, &entries, start, max).unwrap();
            prop_assert!(page.response.data.len() <= max);
            let r = gp::commands::GetStatusResponse::parse(&req, &page.response).unwrap();
            got.extend(r.entries);
            match page.next_index {
                Some(n) => { prop_assert!(r.more); prop_assert!(n > start); start = n; }
                None => { prop_assert!(!r.more); break; }
            }
        }
        prop_assert_eq!(got, entries);
    }

    #[test]
    fn install_params_round_trip(app in option::of(bytes(40)), sys in vec((tags(&[0xC6, 0xC7, 0xC8, 0xCA, 0xCB, 0xD7, 0xD8]), bytes(6)), 0..4),
                                 other in vec((tags(&[0xEA, 0xB6, 0xCF]), bytes(6)), 0..3)) {
        let p = InstallParams { application: app, system: sys, other };
        prop_assert_eq!(InstallParams::parse(&p.to_bytes()).unwrap(), p);
    }

    #[test]
    fn confirmation_round_trip(receipt in bytes(40), counter in any::<u16>(), sd_unique_data in bytes(40), token_identifier in option::of(vec(any::<u8>(), 1..20)), token_data_digest in option::of(bytes(32))) {
        let c = Confirmation { receipt, counter, sd_unique_data, token_identifier, token_data_digest };
        prop_assert_eq!(Confirmation::parse(&c.to_bytes().unwrap()).unwrap(), Some(c));
    }

    #[test]
    fn load_blocks_reassemble(lf in bytes(3000), daps in vec((aid(), bytes(64)), 0..3), block in 16usize..=255, ciphered in any::<bool>()) {
        let s = LoadFileStructure { dap_blocks: daps.into_iter().map(|(security_domain, signature)| DapBlock { security_domain, signature }).collect(), data_block: lf, ciphered };
        prop_assert_eq!(LoadFileStructure::parse(&s.to_bytes()).unwrap(), s.clone());
        if !ciphered {
            let cmds = gp::commands::load_blocks_with_dap(&s.data_block, &s.dap_blocks, block).unwrap();
            let mut a = LoadAssembler::new();
            let mut out = None;
            for (i, c) in cmds.iter().enumerate() {
                prop_assert!(c.data.len() <= block);
                out = a.push(&Load::parse(c).unwrap()).unwrap();
                prop_assert_eq!(out.is_some(), i + 1 == cmds.len());
            }
            prop_assert_eq!(out.unwrap(), s);
        }
    }

    #[test]
    fn assembler_is_total(blocks in vec((any::<bool>(), any::<u8>(), bytes(30)), 0..10)) {
        let mut a = LoadAssembler::new();
        for (last, block, data) in blocks {
            let _ = a.push(&Load { last, block, data });
        }
    }

    #[test]
    fn privileges_text_round_trip(b in any::<[u8; 3]>()) {
        let p = Privileges(b);
        prop_assert_eq!(p.to_string().parse::<Privileges>().unwrap(), p);
        prop_assert_eq!(Privileges::from_bytes(&p.to_bytes()).unwrap(), p);
    }

    #[test]
    fn text_parsers_are_total(s in "\\PC{0,40}") {
        let _ = s.parse::<Aid>();
        let _ = s.parse::<Privileges>();
        let _ = s.parse::<Privilege>();
    }

    #[test]
    fn aid_text_round_trip(a in aid()) {
        prop_assert_eq!(a.to_string().parse::<Aid>().unwrap(), a);
    }
}

// Delegated Management (GP 2.3.1 Appendix C.4): the token input is P1 ‖ P2 ‖ Lc ‖ the data
// field without the token, whatever token the command carries, and a token put in comes back
// out of the parsed command.
proptest! {
    #[test]
    fn install_token_input_is_the_command_without_its_token(i in install(), token in bytes(128)) {
        use gp::dm::TokenInput;
        if matches!(i, Install::ForPersonalization { .. }) {
            prop_assert!(i.token_input().is_err());
            return Ok(());
        }
        let input = i.token_input().unwrap();
        let with = i.clone().with_token(token.clone()).unwrap();
        prop_assert_eq!(with.token_input().unwrap(), input.clone());
        let cmd = with.to_command().unwrap();
        prop_assert_eq!(input[0], i.p1());
        prop_assert_eq!(input[1], 0);
        let body_start = if input.len() - 3 > 255 { 5 } else { 3 };
        let len_len = apdu::tlv::encode_length(token.len()).len();
        prop_assert_eq!(&input[body_start..], &cmd.data[..cmd.data.len() - len_len - token.len()]);
        let back = Install::parse(&cmd).unwrap();
        prop_assert_eq!(back.token(), &token[..]);
    }

    #[test]
    fn delete_token_input(a in aid(), related in any::<bool>(), b6 in option::of(bytes(20)), token in vec(any::<u8>(), 1..200)) {
        use gp::dm::TokenInput;
        let d = Delete::Object { aid: a, related, control_reference: b6, token: None };
        let input = d.token_input().unwrap();
        let with = d.clone().with_token(token.clone()).unwrap();
        let cmd = with.to_command().unwrap();
        prop_assert_eq!(&input[..2], &[0, if related { 0x80 } else { 0 }]);
        prop_assert_eq!(&input[3..], &cmd.data[..input.len() - 3]);
        let back = Delete::parse(&cmd).unwrap();
        prop_assert_eq!(back.token(), &token[..]);
        prop_assert_eq!(back.token_input().unwrap(), input);
    }

    #[test]
    fn receipt_input_starts_with_the_confirmation_data(counter in any::<u16>(), uid in bytes(20), a in aid(), b in aid()) {
        let c = Confirmation { receipt: vec![], counter, sd_unique_data: uid, token_identifier: None, token_data_digest: None };
        let ctx = gp::dm::ReceiptContext::Install { load_file: a, application: b };
        let input = ctx.receipt_input(&c).unwrap();
        let conf = c.confirmation_data().unwrap();
        prop_assert_eq!(&input[..conf.len()], &conf[..]);
        prop_assert_eq!(&input[conf.len()..], &ctx.fields().unwrap()[..]);
    }

    #[test]
    fn confirmation_parse_never_panics(data in bytes(300)) {
        let _ = Confirmation::parse(&data);
    }

    #[test]
    fn dgi_parse_never_panics_and_prefix_is_consistent(data in bytes(600)) {
        use gp::commands::dgi::{parse_dgi_prefix, parse_dgis};
        let (dgis, used) = parse_dgi_prefix(&data);
        prop_assert!(used <= data.len());
        let reencoded: Vec<u8> = dgis.iter().flat_map(|d| d.to_bytes().unwrap()).collect();
        // Canonical length forms re-parse to the same groups.
        prop_assert_eq!(parse_dgis(&reencoded).unwrap(), dgis);
        prop_assert_eq!(parse_dgis(&data).is_ok(), used == data.len());
    }

    #[test]
    fn dgi_store_data_round_trips(
        groups in vec((any::<u16>(), bytes(400)), 0..6),
        max in 5usize..=255,
    ) {
        use gp::commands::dgi::{dgi_store_data, is_encrypted_id, parse_dgis, Dgi};
        let dgis: Vec<Dgi> = groups.into_iter().map(|(id, v)| Dgi::new(id, v)).collect();
        let fits = dgis.iter().all(|d| !d.is_encrypted() || d.to_bytes().unwrap().len() <= max);
        // Every command but the last is full unless a DGI closed it (a change between
        // encrypted and plain, or an encrypted DGI that does not fit): at least ⌈total/max⌉
        // commands and at most that plus one per DGI. P2 numbers 256 of them.
        let total: usize = dgis.iter().map(|d| d.to_bytes().unwrap().len()).sum();
        let fewest = total.div_ceil(max);
        let most = fewest + dgis.len();
        match dgi_store_data(&dgis, max) {
            Err(_) => prop_assert!(!fits || most > 256),
            Ok(cmds) => {
                prop_assert!(fits);
                prop_assert!(fewest <= cmds.len() && cmds.len() <= most.min(256));
                let joined: Vec<u8> = cmds.iter().flat_map(|c| c.data.clone()).collect();
                prop_assert_eq!(parse_dgis(&joined).unwrap(), dgis);
                for (i, c) in cmds.iter().enumerate() {
                    prop_assert!(c.data.len() <= max && !c.data.is_empty());
                    prop_assert_eq!(c.block as usize, i);
                    prop_assert_eq!(c.last, i + 1 == cmds.len());
                    let enc = c.encryption == StoreDataEncryption::Encrypted;
                    prop_assert_eq!(c.structure, StoreDataStructure::Dgi);
                    // An encrypted command holds whole encrypted DGIs only.
                    if enc {
                        let inside = parse_dgis(&c.data).unwrap();
                        prop_assert!(inside.iter().all(|d| is_encrypted_id(d.id)));
                    }
                    prop_assert_eq!(StoreData::parse(&c.to_command().unwrap()).unwrap(), c.clone());
                }
            }
        }
    }
}
