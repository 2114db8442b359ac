//! Writes the hand-made seeds of every fuzz target into `fuzz/corpus/<target>/seed-*`:
//! inputs that reach the interesting paths (a load and install through a secure channel,
//! a key replacement, personalisation, PIV key use…), which a fuzzer would take long to
//! find. Run `cargo run -p fuzzing --example seeds` after changing an input format; the
//! fuzzer then adds its own finds (see fuzz/README.md).

use apdu::tlv::{self, Tag};
use apdu::{parse_hex, Command};
use gp::commands::{
    load_blocks, CardData, DataObject, Delete, Fci, GetData, GetStatus, Install, InstallParams,
    KeyComponent, KeyInfo, KeyInfoEntry, RegistryEntry, RegistryKind, ScpOption, SetStatus,
    StatusFormat, StatusSubset, StoreData, StoreDataEncryption, StoreDataStructure,
};
use gp::{Aid, Privileges};
use std::path::Path;

fn h(s: &str) -> Vec<u8> {
    parse_hex(s).expect("hex")
}

fn aid(s: &str) -> Aid {
    Aid::new(&h(s)).expect("AID")
}

/// A minimal load file data block (Java Card VM spec §6: Header, Directory, Import,
/// Applet, Method, Static Field components), as the card tests build it.
fn load_file(package: &str, applets: &[&str]) -> Vec<u8> {
    fn comp(tag: u8, info: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(info.len() as u16).to_be_bytes());
        v.extend_from_slice(info);
        v
    }
    let pkg = h(package);
    let mut header = h("DECAFFED0102");
    header.push(if applets.is_empty() { 0x00 } else { 0x04 });
    header.extend_from_slice(&[0, 1, pkg.len() as u8]);
    header.extend_from_slice(&pkg);
    let mut applet = vec![applets.len() as u8];
    for a in applets {
        let a = h(a);
        applet.push(a.len() as u8);
        applet.extend_from_slice(&a);
        applet.extend_from_slice(&[0x00, 0x10]);
    }
    let mut v = comp(1, &header);
    v.extend(comp(2, &[0u8; 31]));
    v.extend(comp(4, &h("01020107A0000000620101")));
    if !applets.is_empty() {
        v.extend(comp(3, &applet));
    }
    v.extend(comp(6, &[0u8; 8]));
    v.extend(comp(7, &h("00188C7A")));
    v
}

/// One command of a session target input.
fn piece(selector: u8, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
    assert!(data.len() <= 252, "a piece holds at most 252 data bytes");
    let mut v = vec![(data.len() + 3) as u8, selector, p1, p2];
    v.extend_from_slice(data);
    v
}

/// The selector of `ins` in `fuzzing::CARD_MANAGER_INS`, with Le when `le`.
fn sel(ins: u8, le: bool) -> u8 {
    let i = fuzzing::CARD_MANAGER_INS
        .iter()
        .position(|&x| x == ins)
        .expect("instruction in the table") as u8;
    i | if le { 0x80 } else { 0 }
}

/// A command built by `gp` as a session target piece.
fn gp_piece(cmd: &Command) -> Vec<u8> {
    piece(sel(cmd.ins, cmd.le.is_some()), cmd.p1, cmd.p2, &cmd.data)
}

fn session_seeds() -> Seeds {
    const STORAGE_PKG: &str = "F043574453";
    const STORAGE_MODULE: &str = "F04357445301";
    const APP: &str = "F0435744530101";
    let lf = load_file(STORAGE_PKG, &[STORAGE_MODULE]);
    let hash = gp::cap::HashAlgorithm::Sha256.digest(&lf);
    let mut install_load = vec![gp_piece(
        &Install::ForLoad {
            load_file: aid(STORAGE_PKG),
            security_domain: None,
            hash,
            params: Vec::new(),
            token: Vec::new(),
        }
        .to_command()
        .expect("INSTALL [for load]"),
    )];
    for c in load_blocks(&lf, 200).expect("LOAD blocks") {
        install_load.push(gp_piece(&c));
    }
    let install = gp_piece(
        &Install::for_install_and_make_selectable(
            aid(STORAGE_PKG),
            aid(STORAGE_MODULE),
            aid(APP),
            Privileges::NONE,
        )
        .to_command()
        .expect("INSTALL [for install]"),
    );
    let status = |subset| {
        gp_piece(
            &GetStatus::new(subset)
                .with_format(StatusFormat::Tlv)
                .to_command()
                .expect("GET STATUS"),
        )
    };
    let mut seeds = Vec::new();
    let mut all = install_load.concat();
    all.extend(&install);
    all.extend(status(StatusSubset::Applications));
    all.extend(status(StatusSubset::LoadFilesAndModules));
    all.extend(gp_piece(
        &SetStatus::lock(aid(APP)).to_command().expect("SET STATUS"),
    ));
    all.extend(gp_piece(
        &SetStatus::unlock(aid(APP))
            .to_command()
            .expect("SET STATUS"),
    ));
    all.extend(gp_piece(
        &Delete::object(aid(STORAGE_PKG), true)
            .to_command()
            .expect("DELETE"),
    ));
    seeds.push(("load-install-lock-delete", all));
    seeds.push((
        "status-all-subsets",
        [
            status(StatusSubset::IssuerSecurityDomain),
            status(StatusSubset::Applications),
            status(StatusSubset::LoadFiles),
            status(StatusSubset::LoadFilesAndModules),
        ]
        .concat(),
    ));
    let get = |o| gp_piece(&GetData::new(o).to_command().expect("GET DATA"));
    seeds.push((
        "get-data",
        [
            get(DataObject::CardData),
            get(DataObject::KeyInformation),
            get(DataObject::Cplc),
            get(DataObject::KeyDiversificationData),
            get(DataObject::SequenceCounter),
            get(DataObject::Other(0xFF21)),
        ]
        .concat(),
    ));
    // Replace the key set in use (version 30 on SCP03, 20 on SCP02: both tried), then
    // add one, then work with the new keys.
    let mut keys = Vec::new();
    for old in [0x30, 0x20] {
        keys.extend(piece(
            sel(fuzzing::HOST_PUT_KEY, true),
            old,
            0x31,
            &[0x11; 16],
        ));
    }
    keys.extend(piece(
        sel(fuzzing::HOST_PUT_KEY, true),
        0x00,
        0x32,
        &[0x22; 16],
    ));
    keys.extend(status(StatusSubset::IssuerSecurityDomain));
    keys.extend(get(DataObject::KeyInformation));
    seeds.push(("put-key-replace-and-add", keys));
    seeds.push((
        "store-data-isd",
        [
            store(StoreDataStructure::BerTlv, &h("4203123456 4503ABCDEF")),
            store(
                StoreDataStructure::Dgi,
                &h("0101 03 AABBCC 0202 FF0003 010203"),
            ),
            store(StoreDataStructure::BerTlv, &h("CF0A00112233445566778899")),
        ]
        .concat(),
    ));
    seeds.push((
        "select-and-channels",
        [
            piece(sel(0x70, true), 0x00, 0x00, &[]),
            piece(sel(0xA4, true), 0x04, 0x00, &h("A000000151000000")),
            piece(sel(0x50, true), 0x00, 0x00, &h("0102030405060708")),
            piece(sel(0x70, false), 0x80, 0x01, &[]),
        ]
        .concat(),
    ));
    seeds
}

/// One STORE DATA (last block 00) as a session piece.
fn store(structure: StoreDataStructure, data: &[u8]) -> Vec<u8> {
    StoreData::blocks(data, 200, StoreDataEncryption::None, structure)
        .expect("STORE DATA")
        .iter()
        .map(gp_piece)
        .collect::<Vec<_>>()
        .concat()
}

/// Pieces for `store_data`, whose only instruction is STORE DATA (selector 0).
fn store_data_seeds() -> Seeds {
    let as_store = |cmds: Vec<Command>| -> Vec<u8> {
        cmds.iter()
            .map(|c| piece(0, c.p1, c.p2, &c.data))
            .collect::<Vec<_>>()
            .concat()
    };
    let blocks = |data: &[u8], s| {
        StoreData::blocks(data, 100, StoreDataEncryption::None, s).expect("STORE DATA")
    };
    let mut seeds = Vec::new();
    for (name, level, data, s) in [
        (
            "tlv-iin-cin",
            0u8,
            h("4203123456 4503ABCDEF"),
            StoreDataStructure::BerTlv,
        ),
        (
            "tlv-kdd",
            1,
            h("CF0A00112233445566778899"),
            StoreDataStructure::BerTlv,
        ),
        (
            "dgi-short-long",
            2,
            h("0101 03 AABBCC 0202 FF0003 010203"),
            StoreDataStructure::Dgi,
        ),
        (
            "dgi-multi-block",
            3,
            [h("8010 FF0096"), vec![0x5A; 150]].concat(),
            StoreDataStructure::Dgi,
        ),
        (
            "tlv-bad-kdd",
            4,
            h("CF03001122"),
            StoreDataStructure::BerTlv,
        ),
    ] {
        seeds.push((name, [vec![level], as_store(blocks(&data, s))].concat()));
    }
    seeds
}

/// Seeds of `registration_applet`: generate, sign, MAC, certificate and key DGIs (a key
/// in an encrypted block, one in a plain block, a certificate split over two blocks).
fn registration_seeds() -> Seeds {
    use gp::commands::dgi::Dgi;
    let cmd = |flags: u8, ins: u8, p1: u8, p2: u8, data: &[u8]| {
        let mut v = vec![(data.len() + 4) as u8, flags, ins, p1, p2];
        v.extend_from_slice(data);
        v
    };
    let dgi = |id: u16, v: &[u8]| Dgi::new(id, v.to_vec()).to_bytes().expect("short DGI");
    let cert = dgi(0x0101, &[0x30; 200]);
    vec![
        (
            "generate-sign-mac",
            [
                vec![1u8],
                cmd(4, 0x41, 0x00, 0x03, &[]),
                cmd(4, 0x2A, 0x00, 0x01, b"message"),
                cmd(4, 0x4C, 0x00, 0x01, b"message"),
                cmd(4, 0xCA, 0x01, 0x01, &[]),
                cmd(6, 0x41, 0x00, 0x01, &[]),
            ]
            .concat(),
        ),
        (
            "keys",
            [
                vec![1u8],
                cmd(1, 0xE2, 0xE8, 0x00, &dgi(0x8102, &[0x11; 16])),
                cmd(1, 0xE2, 0x88, 0x01, &dgi(0x8103, &[0x11; 32])),
                cmd(4, 0x4C, 0x00, 0x02, b"m"),
            ]
            .concat(),
        ),
        (
            "split-certificate",
            [
                vec![1u8],
                cmd(1, 0xE2, 0x08, 0x00, &cert[..120]),
                cmd(1, 0xE2, 0x88, 0x01, &cert[120..]),
                cmd(4, 0xCA, 0x01, 0x01, &[]),
            ]
            .concat(),
        ),
    ]
}

fn piv_seeds() -> Seeds {
    let cmd = |flags: u8, ins: u8, p1: u8, p2: u8, data: &[u8]| {
        let mut v = vec![(data.len() + 4) as u8, flags, ins, p1, p2];
        v.extend_from_slice(data);
        v
    };
    let tag_list = |tag: &[u8]| tlv::encode(Tag::new(0x5C), tag);
    let generate = |alg: u8| tlv::encode(Tag::new(0xAC), &tlv::encode(Tag::new(0x80), &[alg]));
    let sign = |input: &[u8]| {
        let mut inner = tlv::encode(Tag::new(0x82), &[]);
        tlv::encode_into(&mut inner, Tag::new(0x81), input);
        tlv::encode(Tag::new(0x7C), &inner)
    };
    let put_cert = {
        let mut v = tag_list(&h("5FC105"));
        let mut obj = tlv::encode(Tag::new(0x70), &h("3003020101"));
        tlv::encode_into(&mut obj, Tag::new(0x71), &[0]);
        tlv::encode_into(&mut obj, Tag::new(0xFE), &[]);
        tlv::encode_into(&mut v, Tag::new(0x53), &obj);
        v
    };
    vec![
        (
            "read-objects",
            [
                vec![0u8],
                cmd(2, 0xCB, 0x3F, 0xFF, &tag_list(&h("7E"))),
                cmd(2, 0xCB, 0x3F, 0xFF, &tag_list(&h("5FC102"))),
                cmd(2, 0xCB, 0x3F, 0xFF, &tag_list(&h("5FC107"))),
                cmd(2, 0xFD, 0x00, 0x00, &[]),
                cmd(2, 0xF8, 0x00, 0x00, &[]),
                cmd(2, 0xF7, 0x00, 0x80, &[]),
                cmd(2, 0xF7, 0x00, 0x9B, &[]),
            ]
            .concat(),
        ),
        (
            "generate-ecc-and-sign",
            [
                vec![3u8],
                cmd(2, 0x47, 0x00, 0x9A, &generate(0x11)),
                cmd(2, 0x87, 0x11, 0x9A, &sign(&[0x42; 32])),
                cmd(2, 0x47, 0x00, 0x9C, &generate(0x14)),
                cmd(2, 0x87, 0x14, 0x9C, &sign(&[0x42; 48])),
                cmd(2, 0xF7, 0x00, 0x9A, &[]),
                cmd(0, 0xDB, 0x3F, 0xFF, &put_cert),
                cmd(2, 0xCB, 0x3F, 0xFF, &tag_list(&h("5FC105"))),
            ]
            .concat(),
        ),
        (
            "put-data-chained",
            [
                vec![1u8],
                cmd(1, 0xDB, 0x3F, 0xFF, &put_cert[..8]),
                cmd(0, 0xDB, 0x3F, 0xFF, &put_cert[8..]),
                cmd(2, 0xCB, 0x3F, 0xFF, &tag_list(&h("5FC105"))),
            ]
            .concat(),
        ),
        (
            "pin-puk-and-reset",
            [
                vec![0u8],
                cmd(0, 0x20, 0x00, 0x80, b"123456\xFF\xFF"),
                cmd(0, 0x24, 0x00, 0x80, b"123456\xFF\xFF654321\xFF\xFF"),
                cmd(0, 0x20, 0x00, 0x80, b"000000\xFF\xFF"),
                cmd(0, 0x2C, 0x00, 0x80, b"12345678123456\xFF\xFF"),
                cmd(0, 0xFB, 0x00, 0x00, &[]),
            ]
            .concat(),
        ),
        (
            "import-ecc-and-management-key",
            [
                vec![3u8],
                cmd(
                    0,
                    0xFE,
                    0x11,
                    0x9D,
                    &tlv::encode(Tag::new(0x06), &[0x07; 32]),
                ),
                cmd(
                    0,
                    0xFF,
                    0xFF,
                    0xFF,
                    &[&[0x03, 0x9B, 24][..], &[0x11; 24]].concat(),
                ),
                cmd(0, 0xFA, 0x05, 0x05, &[]),
            ]
            .concat(),
        ),
    ]
}

/// Named inputs of one target.
type Seeds = Vec<(&'static str, Vec<u8>)>;

fn parser_seeds() -> Vec<(&'static str, Seeds)> {
    let fci = Fci::new(aid("A000000151000000")).to_bytes();
    let card_data = CardData {
        gp_version: Some(vec![2, 3, 1]),
        identification_scheme: true,
        scp: vec![ScpOption { scp: 3, i: 0x70 }],
        configuration_details: None,
        chip_details: Some(h("06072A864886FC6B04")),
        other: vec![(Tag::new(0x67), vec![1])],
    }
    .to_bytes();
    let key_info = KeyInfo {
        entries: vec![KeyInfoEntry {
            id: 1,
            version: 0x30,
            components: vec![KeyComponent {
                key_type: 0x88,
                length: 16,
            }],
            extended: None,
        }],
    }
    .to_bytes();
    let entry = {
        let mut e = RegistryEntry::new(RegistryKind::Application, aid("F0435744530101"), 0x07);
        e.privileges = Some(Privileges::NONE);
        e.load_file = Some(aid("F043574453"));
        e.encode(StatusSubset::Applications, StatusFormat::Tlv)
    };
    let empty_cap: &[u8] =
        include_bytes!("../../gp/tests/data/Empty_0102030405_8d5ac9e2_2.2.1.cap");
    let hello_cap: &[u8] = include_bytes!("../../gp/tests/data/pysim_test_javacard_HelloSTK.cap");
    let command = |c: Command| c.to_bytes().expect("encodes");
    vec![
        (
            "command_parse",
            vec![
                ("case1", h("00A40400")),
                ("case2", h("80CA9F7F00")),
                ("case3", h("00A4040008A000000151000000")),
                ("case4", h("80F28002024F0000")),
                ("ext-case2", h("00CA00420000FF")),
                ("ext-case4", h("00DB3FFF000003AABBCC0000")),
            ],
        ),
        (
            "response_parse",
            vec![
                ("ok", h("9000")),
                ("data", h("6F108408A000000151000000A5049F6501FF9000")),
                ("more", h("6110")),
                ("warning", h("6310")),
            ],
        ),
        (
            "tlv_parse",
            vec![
                ("fci", fci.clone()),
                ("card-data", card_data.clone()),
                ("ff21", h("FF21098101028202010083 00")),
                ("padded", h("FF004F01000000500AAAFFFF")),
                ("long-length", [h("C4820120"), vec![0; 0x120]].concat()),
                (
                    "emv-fci",
                    h("6F1A840E315041592E5359532E4444463031A5088801025F2D02656E"),
                ),
                ("three-byte-tag", h("DF810102AABB 5FC10500")),
            ],
        ),
        (
            "cap_parse",
            vec![
                ("empty-cap", empty_cap.to_vec()),
                ("hello-stk-cap", hello_cap.to_vec()),
                (
                    "storage-load-file",
                    load_file("F043574453", &["F04357445301"]),
                ),
            ],
        ),
        (
            "gp_responses",
            vec![
                ("fci", fci),
                ("cplc", [h("9F7F2A"), vec![0x47; 42]].concat()),
                ("card-data", card_data),
                ("key-info", key_info),
                ("registry-entry", entry),
                ("legacy-registry", h("08A000000151000000019E")),
                (
                    "install-command",
                    command(
                        Install::for_install_and_make_selectable(
                            aid("F043574453"),
                            aid("F04357445301"),
                            aid("F0435744530101"),
                            Privileges::NONE,
                        )
                        .to_command()
                        .expect("INSTALL"),
                    ),
                ),
                (
                    "install-params",
                    InstallParams::default()
                        .with_volatile_memory(256)
                        .to_bytes(),
                ),
            ],
        ),
        (
            "init_update_parse",
            vec![
                (
                    "scp02",
                    h("000000000000000000002002000D4C5D8A0CFA2E5AD9A8A4B1A0B4AFE54B"),
                ),
                (
                    "scp03",
                    h("0000000000000000000030037000010203040506070811223344556677880000A1"),
                ),
                (
                    "key-set-data",
                    h("318010112233445566778899AABBCCDDEEFF00038899AA"),
                ),
            ],
        ),
        (
            "put_key_parse",
            vec![
                ("ecc-public", h("03B041046B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C2964FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5F0010000")),
                ("ecc-private", h("01B1201111111111111111111111111111111111111111111111111111111111111111F0010000")),
                ("rsa-public", h("70A1818081888F969DA4ABB2B9C0C7CED5DCE3EAF1F8FF060D141B222930373E454C535A61686F767D848B9299A0A7AEB5BCC3CAD1D8DFE6EDF4FB020910171E252C333A41484F565D646B727980878E959CA3AAB1B8BFC6CDD4DBE2E9F0F7FE050C131A21282F363D444B525960676E757C838A91989FA6ADB4BBC2C9D0D7DEE5ECF3FAA003010001")),
                ("rsa-split", h("70A14081888F969DA4ABB2B9C0C7CED5DCE3EAF1F8FF060D141B222930373E454C535A61686F767D848B9299A0A7AEB5BCC3CAD1D8DFE6EDF4FB020910171E252C333AA14041484F565D646B727980878E959CA3AAB1B8BFC6CDD4DBE2E9F0F7FE050C131A21282F363D444B525960676E757C838A91989FA6ADB4BBC2C9D0D7DEE5ECF3FAA00301000100")),
                ("mixed", h("218811102222222222222222222222222222222203AABBCCB041046B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C2964FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5F0010000")),
            ],
        ),
        (
            "card_transmit",
            vec![
                (
                    "select-get-data",
                    [
                        vec![13],
                        h("00A4040008A000000151000000"),
                        vec![5],
                        h("80CA006600"),
                        vec![5],
                        h("80CA9F7F00"),
                    ]
                    .concat(),
                ),
                (
                    "initialize-update",
                    [vec![13], h("8050300008010203040506070800")].concat(),
                ),
                (
                    "manage-channel",
                    [vec![5], h("0070000001"), vec![5], h("01A4040000")].concat(),
                ),
            ],
        ),
    ]
}

/// Real key store files made with the test master key: empty, with base keys, with a
/// signing key.
fn key_store_seeds() -> Seeds {
    use kms::{KeyKind, KeyStore, MasterKey, SigningAlgorithm, SigningKeyStore, SoftwareKeyStore};
    let tmp = tempfile::tempdir().expect("temporary directory");
    let master = || MasterKey::from_bytes(&fuzzing::KEY_STORE_MASTER).expect("master key");
    let mut seeds = Vec::new();
    let path = tmp.path().join("store.json");
    let store = SoftwareKeyStore::create(&path, master()).expect("new key store");
    seeds.push(("empty", std::fs::read(&path).expect("store file")));
    store
        .generate_base_key("acme/gold", KeyKind::Aes, 16, None)
        .expect("AES base key");
    store
        .generate_base_key("acme/gold", KeyKind::Des3, 16, None)
        .expect("3DES base key");
    seeds.push(("two-base-keys", std::fs::read(&path).expect("store file")));
    store
        .create_signing_key("issuer-ca", SigningAlgorithm::P256)
        .expect("signing key");
    seeds.push((
        "with-signing-key",
        std::fs::read(&path).expect("store file"),
    ));
    use kms::{DataObjectStore, SecretKeyKind, SecretKeyStore};
    store
        .generate("outlet/db-mac", SecretKeyKind::HmacSha256)
        .expect("HMAC key");
    store
        .generate("reg/1", SecretKeyKind::Aes128)
        .expect("AES key");
    store
        .put("trust/root", b"0\x82\x01\x00 a certificate")
        .expect("data object");
    seeds.push((
        "with-secret-keys-and-data-objects",
        std::fs::read(&path).expect("store file"),
    ));
    seeds
}

/// Wrapped key sets: real ones for the fuzzed importer's transport key (AES-128, AES-256,
/// 3DES), one for another key, and one with a flipped bit in a wrapped key.
fn key_set_seeds() -> Seeds {
    use kms::{KeyKind, KeySetStore, TransportPublicKey};
    let tmp = tempfile::tempdir().expect("temporary directory");
    let sender = kms::SoftwareKeyStore::create(
        tmp.path().join("ci.json"),
        kms::MasterKey::generate().expect("master key"),
    )
    .expect("sender's key store");
    let recipient = fuzzing::key_set_importer()
        .transport_public_key(fuzzing::KEY_SET_TRANSPORT_LABEL)
        .expect("transport key");
    let other: TransportPublicKey = sender.create_transport_key("other").expect("other key");
    let mut seeds = Vec::new();
    for (name, kind, len) in [
        ("aes128", KeyKind::Aes, 16),
        ("aes256", KeyKind::Aes, 32),
        ("3des", KeyKind::Des3, 24),
    ] {
        let label = format!("ssd-{name}");
        sender.generate_key_set(&label, kind, len).expect("key set");
        let w = sender.wrap_key_set_for(&label, &recipient).expect("wrap");
        seeds.push((name, w.to_json().into_bytes()));
        if kind == KeyKind::Aes && len == 16 {
            let mut bad = w.clone();
            let mut b = parse_hex(&bad.keys[1].wrapped).expect("hex");
            b[5] ^= 1;
            bad.keys[1].wrapped = apdu::hex(&b);
            seeds.push(("flipped-bit", bad.to_json().into_bytes()));
            let for_other = sender.wrap_key_set_for(&label, &other).expect("wrap");
            seeds.push(("other-recipient", for_other.to_json().into_bytes()));
        }
    }
    seeds
}

/// Package archives under a fresh root (written to `crates/fuzzing/src/package_anchor.der`;
/// its private key is dropped): P-256 and RSA-PSS signers, privileges, a CRL that revokes
/// another serial, the parts form of one, and refused ones (revoked, cut, traversal).
fn package_seeds(anchor_path: &Path) -> Seeds {
    use package::{BuildInput, Manifest, SoftwareSigner, FORMAT};
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, RevokedCertParams, SerialNumber,
        SignatureAlgorithm,
    };
    use time::OffsetDateTime;

    struct Spki(Vec<u8>, Vec<u8>, &'static SignatureAlgorithm);
    impl PublicKeyData for Spki {
        fn subject_public_key_info(&self) -> Vec<u8> {
            self.0.clone()
        }
        fn der_bytes(&self) -> &[u8] {
            &self.1
        }
        fn algorithm(&self) -> &'static SignatureAlgorithm {
            self.2
        }
    }
    let at = |y: i32| {
        OffsetDateTime::new_utc(
            time::Date::from_calendar_date(y, time::Month::January, 1).unwrap(),
            time::Time::MIDNIGHT,
        )
    };
    let root_key = KeyPair::generate().expect("key");
    let mut root = CertificateParams::new(Vec::<String>::new()).expect("params");
    root.distinguished_name
        .push(DnType::CommonName, "Fuzz Package Root");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root.not_before = at(2020);
    root.not_after = at(2099);
    let root_der = root.self_signed(&root_key).expect("root").der().to_vec();
    std::fs::write(anchor_path, &root_der).expect("anchor written");
    let issuer = Issuer::new(root, root_key);
    let signer = |rsa: bool, serial: u64| {
        let key = if rsa {
            SoftwareSigner::generate_rsa(2048).expect("RSA")
        } else {
            SoftwareSigner::generate_p256()
        };
        let spki = key.public_key_der();
        use der::Decode;
        let raw = spki::SubjectPublicKeyInfoRef::from_der(&spki)
            .expect("SPKI")
            .subject_public_key
            .raw_bytes()
            .to_vec();
        let alg = if rsa {
            &rcgen::PKCS_RSA_SHA256
        } else {
            &rcgen::PKCS_ECDSA_P256_SHA256
        };
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name
            .push(DnType::CommonName, format!("Fuzz Signer {serial}"));
        p.serial_number = Some(SerialNumber::from(serial));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = at(2020);
        p.not_after = at(2099);
        let der = p
            .signed_by(&Spki(spki, raw, alg), &issuer)
            .expect("cert")
            .der()
            .to_vec();
        (key, der)
    };
    let crl = |serials: &[u64]| {
        CertificateRevocationListParams {
            this_update: at(2025),
            next_update: at(2026),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: at(2025),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .expect("CRL")
        .der()
        .to_vec()
    };
    let manifest = |names: &[&str], privileges: &[&str]| -> Manifest {
        let mut text = format!(
            "format = \"{FORMAT}\"\nprovider = \"Fuzz Provider\"\n\
             not_before = 2020-01-01T00:00:00Z\nnot_after = 2099-01-01T00:00:00Z\n"
        );
        for n in names {
            text.push_str(&format!(
                "[[application]]\nname = \"{n}\"\ntitle = \"{n}\"\nversion = \"1.0\"\n\
                 privileges = {privileges:?}\n"
            ));
        }
        Manifest::parse_template(&text).expect("template")
    };
    let cap = gp::cap::testing::synthetic_cap(200);
    let build = |m: Manifest, crls: Vec<Vec<u8>>, key: &SoftwareSigner, cert: &[u8]| {
        package::build(
            BuildInput {
                load_files: m
                    .applications
                    .iter()
                    .map(|a| (a.name.clone(), cap.clone()))
                    .collect(),
                manifest: m,
                chain_der: vec![cert.to_vec()],
                crls_der: crls,
                signing_time: at(2025),
            },
            key,
        )
        .expect("package")
    };
    let (p256, p256_cert) = signer(false, 1);
    let (rsa, rsa_cert) = signer(true, 2);
    let ecdsa = build(manifest(&["wallet"], &[]), Vec::new(), &p256, &p256_cert);
    let pss = build(
        manifest(&["wallet", "transit"], &["card-lock"]),
        vec![crl(&[99])],
        &rsa,
        &rsa_cert,
    );
    let revoked = build(
        manifest(&["wallet"], &[]),
        vec![crl(&[1])],
        &p256,
        &p256_cert,
    );
    let not_granted = build(
        manifest(&["wallet"], &["global-lock"]),
        Vec::new(),
        &p256,
        &p256_cert,
    );
    let mut policy = fuzzing::package_policy();
    policy.anchors[0].certificate_der = root_der.clone();
    assert!(package::verify(&ecdsa, &policy).is_ok() && package::verify(&pss, &policy).is_ok());
    let parts = {
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(ecdsa.as_slice())).expect("zip");
        let mut read = |name: &str| {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut z.by_name(name).expect("entry"), &mut v).expect("read");
            v
        };
        fuzzing::package_parts_input(&read("manifest.toml"), &read("manifest.p7s"), &cap)
    };
    let whole = |a: &[u8]| [&[0u8][..], a].concat();
    let mut traversal = ecdsa.clone();
    // The load file's name in its local header and in the central directory.
    let at: Vec<usize> = (0..traversal.len() - 15)
        .filter(|&p| &traversal[p..p + 15] == b"load/wallet.cap")
        .collect();
    assert_eq!(at.len(), 2);
    for p in at {
        traversal[p..p + 5].copy_from_slice(b"../..");
    }
    vec![
        ("package-ecdsa", whole(&ecdsa)),
        ("package-rsa-pss-crl", whole(&pss)),
        ("package-revoked", whole(&revoked)),
        ("package-privilege-not-granted", whole(&not_granted)),
        ("package-parts", parts),
        ("package-cut", whole(&ecdsa[..ecdsa.len() / 2])),
        ("package-traversal", whole(&traversal)),
    ]
}

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("corpus directory");
    std::fs::write(d.join(format!("seed-{name}")), data).expect("seed written");
}

/// Uploads of outlet install records: a chain of three, hashed as an outlet does; the same
/// again (already held); its tail with a changed field (hash mismatch); a record under a
/// held number with another content (conflict).
fn outlet_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use outlet::records::{Record, Upload, ZERO_HASH};
    let mut prev = ZERO_HASH;
    let chain: Vec<Record> = (1..=3u64)
        .map(|seq| {
            let mut r = Record {
                seq,
                at_ms: 1_700_000_000_000 + seq as i64,
                outlet: "fuzz-1".into(),
                card: "4111111111111111".into(),
                application: "wallet".into(),
                package_sha256: "ab".repeat(32),
                result: "ok".into(),
                code: "ok".into(),
                detail: format!("{{\"apdus\":{seq}}}"),
                prev_hash: apdu::hex(&prev),
                hash: String::new(),
                synced: false,
            };
            prev = r.expected_hash().expect("hash");
            r.hash = apdu::hex(&prev);
            r
        })
        .collect();
    let upload = |records: Vec<Record>| {
        serde_json::to_vec(&Upload {
            outlet: "fuzz-1".into(),
            records,
        })
        .expect("JSON")
    };
    let mut changed = chain[2].clone();
    changed.card = "4999999999999999".into();
    let mut conflict = chain[1].clone();
    conflict.detail = "{}".into();
    conflict.hash = apdu::hex(&conflict.expected_hash().expect("hash"));
    vec![
        ("chain", upload(chain.clone())),
        ("again", upload(chain[..2].to_vec())),
        ("changed", upload(vec![changed])),
        ("conflict", upload(vec![conflict])),
    ]
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (target, seeds) in parser_seeds() {
        for (name, data) in seeds {
            write(&dir, target, name, &data);
        }
    }
    for (name, data) in session_seeds() {
        // SCP02: levels 0..4 (MAC, MAC+ENC, +R-MAC); SCP03 up to R-ENC.
        for (level, suffix) in [(0u8, "mac"), (1, "mac-enc"), (3, "mac-enc-rmac")] {
            let input = [vec![level], data.clone()].concat();
            write(&dir, "scp02_session", &format!("{name}-{suffix}"), &input);
            write(&dir, "scp03_session", &format!("{name}-{suffix}"), &input);
        }
        let renc = [vec![4u8], data].concat();
        write(
            &dir,
            "scp03_session",
            &format!("{name}-mac-enc-rmac-renc"),
            &renc,
        );
    }
    for (name, data) in store_data_seeds() {
        write(&dir, "store_data", name, &data);
    }
    for (name, data) in registration_seeds() {
        write(&dir, "registration_applet", name, &data);
    }
    for (name, data) in outlet_seeds() {
        write(&dir, "outlet_records", name, &data);
    }
    for (name, data) in piv_seeds() {
        write(&dir, "piv_applet", name, &data);
    }
    for (name, data) in key_store_seeds() {
        write(&dir, "key_store_file", name, &data);
    }
    for (name, data) in key_set_seeds() {
        write(&dir, "wrapped_key_set", name, &data);
    }
    let anchor = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/package_anchor.der");
    for (name, data) in package_seeds(&anchor) {
        write(&dir, "package_archive", name, &data);
    }
    println!("package_archive: new anchor written; rebuild before replaying its seeds");
    for &(target, _) in fuzzing::TARGETS {
        let n = std::fs::read_dir(dir.join(target)).map_or(0, |d| d.count());
        println!("{target}: {n} files");
    }
}
