//! Asymmetric keys in the virtual card (GP 2.3.1 §11.8.2.3, Table 11-16; Amendment F): PUT
//! KEY of ECC public/private and RSA public keys through SCP03, as yubikit and
//! GlobalPlatformPro send them; the Key Information Template; DELETE of keys; persistence and
//! old state files.

mod common;

use apdu::{Command, StatusWord};
use card::{CardConfig, VirtualCard};
use common::*;
use gp::commands::KeyInfo;
use scp::put_key::{self, Curve, KeyData};
use scp::SecurityLevel;

/// P-256 generator (a valid public point).
const G256: &str = "046B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C2964FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5";

fn host() -> Host {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.select(ISD);
    host.open(&default_keys(true), 0x30, SecurityLevel(0x33))
        .unwrap();
    host
}

fn key_info(host: &mut Host) -> KeyInfo {
    let r = host.send(&cmd("80CA00E000"));
    assert_eq!(r.sw, StatusWord::SUCCESS);
    KeyInfo::parse(&r.data).unwrap()
}

fn put(host: &mut Host, replace: u8, kid: u8, kvn: u8, keys: &[KeyData]) -> apdu::Response {
    let mut last = None;
    for c in put_key::commands(replace, kid, kvn, keys, 255).unwrap() {
        let r = host.send(&c);
        if !r.is_success() {
            return r;
        }
        last = Some(r);
    }
    last.unwrap()
}

fn comps(info: &KeyInfo, id: u8, kvn: u8) -> Option<Vec<(u8, u16)>> {
    info.entries
        .iter()
        .find(|e| e.id == id && e.version == kvn)
        .map(|e| {
            e.components
                .iter()
                .map(|c| (c.key_type, c.length))
                .collect()
        })
}

#[test]
fn ecc_public_trust_anchor_as_yubikit_loads_it() {
    let mut host = host();
    // yubikit: put_key(KeyRef(0x10, 0x03), ca.public_key()) → 80 D8 00 10 03 B041… F00100 00.
    let mut data = h("03B041");
    data.extend_from_slice(&h(G256));
    data.extend_from_slice(&h("F0010000"));
    let r = host.send(
        &Command::new(0x80, 0xD8, 0x00, 0x10)
            .with_data(data.clone())
            .with_le(256),
    );
    assert_eq!((r.sw, r.data.clone()), (StatusWord::SUCCESS, vec![0x03]));
    let info = key_info(&mut host);
    assert_eq!(comps(&info, 0x10, 0x03), Some(vec![(0xB0, 65), (0xF0, 1)]));
    // The SCP03 key set is untouched and still the default.
    assert_eq!(comps(&info, 0x01, 0x30), Some(vec![(0x88, 16)]));
    // The same (KID, KVN) again: refused.
    let r = host.send(
        &Command::new(0x80, 0xD8, 0x00, 0x10)
            .with_data(data)
            .with_le(256),
    );
    assert_eq!(r.sw, StatusWord::WRONG_DATA);
    // A point not on the curve: refused, nothing stored.
    let mut bad = h(G256);
    bad[64] ^= 1;
    let k = KeyData::EccPublic {
        curve: Curve::P256,
        point: bad,
    };
    assert_eq!(
        put(&mut host, 0, 0x10, 0x04, &[k]).sw,
        StatusWord::WRONG_DATA
    );
    assert_eq!(comps(&key_info(&mut host), 0x10, 0x04), None);
    // brainpool is not computed by this card: 9484.
    let k = KeyData::EccPublic {
        curve: Curve::BrainpoolP256r1,
        point: h(G256),
    };
    assert_eq!(put(&mut host, 0, 0x10, 0x05, &[k]).sw, StatusWord(0x9484));
}

#[test]
fn ecc_private_key_replace_and_delete() {
    let mut host = host();
    let scalar = h("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721");
    let k = KeyData::ecc_private(Curve::P256, &scalar, host.session.as_ref().unwrap()).unwrap();
    let r = put(&mut host, 0, 0x13, 0x02, std::slice::from_ref(&k));
    assert_eq!((r.sw, r.data), (StatusWord::SUCCESS, vec![0x02]));
    assert_eq!(
        comps(&key_info(&mut host), 0x13, 0x02),
        Some(vec![(0xB1, 32), (0xF0, 1)])
    );
    // Replace (KID 13, KVN 02) by KVN 03.
    let s2 = h("0F0E0D0C0B0A09080706050403020100000102030405060708090A0B0C0D0E0F");
    let k2 = KeyData::ecc_private(Curve::P256, &s2, host.session.as_ref().unwrap()).unwrap();
    let r = put(&mut host, 0x02, 0x13, 0x03, &[k2]);
    assert_eq!((r.sw, r.data), (StatusWord::SUCCESS, vec![0x03]));
    let info = key_info(&mut host);
    assert_eq!(comps(&info, 0x13, 0x02), None);
    assert_eq!(comps(&info, 0x13, 0x03), Some(vec![(0xB1, 32), (0xF0, 1)]));
    // Replacing a version that does not exist: 6A88.
    let r = put(&mut host, 0x09, 0x13, 0x04, &[k]);
    assert_eq!(r.sw, StatusWord::REFERENCED_DATA_NOT_FOUND);
    // A zero scalar is not a key.
    let z = KeyData::ecc_private(
        Curve::P256,
        &[0u8; 31].iter().chain(&[0]).copied().collect::<Vec<_>>(),
        host.session.as_ref().unwrap(),
    );
    assert!(z.is_err());
    // DELETE key KID 13 KVN 03 as yubikit sends it (P2 = 01, D0 13 D2 03).
    let r = host.send(&cmd("80E4000106D00113D2010300"));
    assert_eq!(r.sw, StatusWord::SUCCESS);
    assert_eq!(comps(&key_info(&mut host), 0x13, 0x03), None);
    let r = host.send(&cmd("80E4000006D00113D2010300"));
    assert_eq!(r.sw, StatusWord::REFERENCED_DATA_NOT_FOUND);
}

#[test]
fn rsa_public_keys_one_and_several_commands() {
    let mut host = host();
    // GlobalPlatformPro's DAP key layout, RSA-1024, without the final KCV length byte.
    let m1024: Vec<u8> = (0..128u32).map(|i| (i * 7 + 0x81) as u8).collect();
    let mut data = vec![0x70, 0xA1, 0x81, 0x80];
    data.extend_from_slice(&m1024);
    data.extend_from_slice(&h("A003010001"));
    let r = host.send(
        &Command::new(0x80, 0xD8, 0x00, 0x01)
            .with_data(data)
            .with_le(256),
    );
    assert_eq!((r.sw, r.data), (StatusWord::SUCCESS, vec![0x70]));
    // RSA-2048 over two short commands (P1 b8), KVN 71.
    let m2048: Vec<u8> = (0..256u32).map(|i| (i * 13 + 0x80) as u8).collect();
    let k = KeyData::rsa_public(&m2048, &[1, 0, 1]).unwrap();
    let cmds = put_key::commands(0, 0x01, 0x71, &[k], 255).unwrap();
    assert_eq!(cmds.len(), 2);
    let r = host.send(&cmds[0]);
    assert_eq!((r.sw, r.data.len()), (StatusWord::SUCCESS, 0));
    let r = host.send(&cmds[1]);
    assert_eq!((r.sw, r.data), (StatusWord::SUCCESS, vec![0x71]));
    let info = key_info(&mut host);
    assert_eq!(comps(&info, 0x01, 0x70), Some(vec![(0xA1, 128), (0xA0, 3)]));
    assert_eq!(comps(&info, 0x01, 0x71), Some(vec![(0xA1, 256), (0xA0, 3)]));
    // A continuation that does not match the first command is refused.
    let mut second = cmds[1].clone();
    host.send(&cmds[0]);
    second.p2 = 0x02;
    assert_eq!(host.send(&second).sw, StatusWord::WRONG_DATA);
    // INITIALIZE UPDATE with an asymmetric key version: 6A88; the default still works.
    host.session = None;
    host.select(ISD);
    let r = host.raw(&scp::initialize_update(0x70, &h("0102030405060708")));
    assert_eq!(r.sw, StatusWord::REFERENCED_DATA_NOT_FOUND);
    host.open(&default_keys(true), 0x00, SecurityLevel(0x01))
        .unwrap();
}

#[test]
fn without_a_session_put_key_is_refused() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.select(ISD);
    let k = KeyData::ecc_public(Curve::P256, &h(G256)).unwrap();
    let c = &put_key::commands(0, 0x10, 0x03, &[k], 255).unwrap()[0];
    assert_eq!(host.raw(c).sw, StatusWord::SECURITY_NOT_SATISFIED);
}

#[test]
fn asymmetric_keys_persist_and_old_state_files_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    // A state file written before asymmetric keys existed.
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/state-before-scp11.json"
        ),
        &path,
    )
    .unwrap();
    {
        let mut host = Host::new(VirtualCard::open(&path, CardConfig::default()).unwrap());
        host.select(ISD);
        host.open(&default_keys(true), 0x30, SecurityLevel(0x03))
            .unwrap();
        let k = KeyData::ecc_public(Curve::P256, &h(G256)).unwrap();
        assert!(put(&mut host, 0, 0x10, 0x03, &[k]).is_success());
        let k = KeyData::rsa_public(&[0xC5; 128], &[3]).unwrap();
        assert!(put(&mut host, 0, 0x01, 0x70, &[k]).is_success());
    }
    let mut host = Host::new(VirtualCard::open(&path, CardConfig::default()).unwrap());
    host.select(ISD);
    host.open(&default_keys(true), 0x30, SecurityLevel(0x03))
        .unwrap();
    let info = key_info(&mut host);
    assert_eq!(comps(&info, 0x10, 0x03), Some(vec![(0xB0, 65), (0xF0, 1)]));
    assert_eq!(comps(&info, 0x01, 0x70), Some(vec![(0xA1, 128), (0xA0, 1)]));
}
