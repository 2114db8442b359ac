//! `gpclient` against the virtual card (`card` crate): secure channels at each level and in
//! both protocols, the stop before EXTERNAL AUTHENTICATE on wrong keys, GET STATUS paging,
//! PUT KEY, the install of a CAP, and errors that carry the operation and the status word.

use std::sync::{Arc, Mutex};

use apdu::{Status, StatusWord};
use card::{CardConfig, VirtualCard};
use gp::aid::Aid;
use gp::privileges::Privileges;
use gpclient::{ops, ClientError, GpClient, KeySpec, OpenOptions, Operation, DEFAULT_TEST_KEY};
use scp::{Diversification, Key, SecurityLevel, StaticKeys};
use transport::{CardChannel, Traced, TransportError};

/// GlobalPlatformPro's empty test applet (see tests/data/README.md).
const EMPTY_CAP: &[u8] = include_bytes!("data/Empty_0102030405_8d5ac9e2_2.2.1.cap");
const EMPTY_PKG: [u8; 5] = [0x01, 0x02, 0x03, 0x04, 0x05];
const EMPTY_APPLET: [u8; 8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];

/// The virtual card as a channel that also records every C-APDU's INS byte.
#[derive(Clone)]
struct Sim {
    card: Arc<Mutex<VirtualCard>>,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Sim {
    fn new(config: CardConfig) -> Sim {
        Sim {
            card: Arc::new(Mutex::new(VirtualCard::new(config))),
            sent: Arc::default(),
        }
    }
    fn ins_sent(&self) -> Vec<u8> {
        self.sent.lock().unwrap().clone()
    }
    fn client(&self) -> GpClient<Sim> {
        GpClient::new(Traced::new(self.clone(), None))
    }
}

impl CardChannel for Sim {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.sent
            .lock()
            .unwrap()
            .push(capdu.get(1).copied().unwrap_or(0));
        Ok(self.card.lock().unwrap().transmit(capdu))
    }
    fn atr(&self) -> Vec<u8> {
        self.card.lock().unwrap().atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.card.lock().unwrap().reset();
        Ok(())
    }
    fn name(&self) -> String {
        "virtual card (gpclient test)".into()
    }
}

fn opts(key: &[u8], kvn: u8, level: SecurityLevel) -> OpenOptions {
    OpenOptions {
        keys: KeySpec::same(key, Diversification::None, kvn),
        level,
        scp: None,
        sd: None,
    }
}

fn aid(b: &[u8]) -> Aid {
    Aid::new(b).unwrap()
}

const INS_EXTERNAL_AUTHENTICATE: u8 = 0x82;
const INS_INITIALIZE_UPDATE: u8 = 0x50;

#[test]
fn secure_channel_at_each_level_in_both_protocols() {
    for (config, scp) in [(CardConfig::default(), 0x03), (CardConfig::scp02(), 0x02)] {
        let levels = [
            SecurityLevel::MAC,
            SecurityLevel::MAC_ENC,
            SecurityLevel::MAC_ENC_RMAC,
        ];
        for level in levels {
            let sim = Sim::new(config.clone());
            let mut c = sim.client();
            let info = c
                .open_secure_channel(&opts(&DEFAULT_TEST_KEY, 0, level))
                .unwrap_or_else(|e| panic!("SCP{scp:02X} {level:?}: {e}"));
            assert_eq!(info.init_update.scp, scp);
            assert_eq!(info.level, level);
            assert_eq!(info.sd, gp::aid::ISD_AID);
            // A command that needs the channel goes through it at this level.
            let reg = ops::registry(&mut c).unwrap_or_else(|e| panic!("{level:?}: {e}"));
            assert_eq!(reg.isd.len(), 1, "{level:?}");
            assert!(c.max_plain_data() < 255, "{level:?}: wrapping costs room");
        }
    }
}

#[test]
fn wrong_keys_stop_before_external_authenticate() {
    let sim = Sim::new(CardConfig::default());
    let mut c = sim.client();
    let err = c
        .open_secure_channel(&opts(&[0x11; 16], 0, SecurityLevel::MAC))
        .unwrap_err();
    assert!(matches!(err, ClientError::WrongKeys { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("EXTERNAL AUTHENTICATE was not sent"));
    let sent = sim.ins_sent();
    assert!(sent.contains(&INS_INITIALIZE_UPDATE), "{sent:02X?}");
    assert!(!sent.contains(&INS_EXTERNAL_AUTHENTICATE), "{sent:02X?}");
    // Nothing was spent: many wrong attempts later the right keys still open (the card
    // blocks the key set after 10 failed EXTERNAL AUTHENTICATEs).
    for _ in 0..12 {
        assert!(c
            .open_secure_channel(&opts(&[0x11; 16], 0, SecurityLevel::MAC))
            .is_err());
    }
    c.open_secure_channel(&opts(&DEFAULT_TEST_KEY, 0, SecurityLevel::MAC))
        .unwrap();
}

/// `open_secure_channel_with`: the keys chosen from the INITIALIZE UPDATE answer; a refusal
/// of the chooser ends the attempt before EXTERNAL AUTHENTICATE, with the chooser's error.
#[test]
fn keys_chosen_from_the_initialize_update_answer() {
    #[derive(Debug)]
    enum Mine {
        Unknown(u8),
        Client(ClientError),
    }
    impl From<ClientError> for Mine {
        fn from(e: ClientError) -> Self {
            Mine::Client(e)
        }
    }
    let sim = Sim::new(CardConfig::default());
    let mut c = sim.client();
    let err = c
        .open_secure_channel_with(None, 0, SecurityLevel::MAC, |iu| {
            Err::<StaticKeys, _>(Mine::Unknown(iu.key_version))
        })
        .unwrap_err();
    assert!(
        matches!(err, Mine::Unknown(kvn) if kvn == CardConfig::default().key_version),
        "{err:?}"
    );
    let err = c
        .open_secure_channel_with(None, 0, SecurityLevel::MAC, |_| {
            Ok::<_, Mine>(StaticKeys::same(Key::aes(&[0x11; 16]).unwrap()))
        })
        .unwrap_err();
    assert!(
        matches!(err, Mine::Client(ClientError::WrongKeys { .. })),
        "{err:?}"
    );
    assert!(!sim.ins_sent().contains(&INS_EXTERNAL_AUTHENTICATE));
    let info = c
        .open_secure_channel_with(None, 0, SecurityLevel::MAC, |iu| {
            assert_eq!(iu.scp, 0x03);
            Ok::<_, Mine>(StaticKeys::same(Key::aes(&DEFAULT_TEST_KEY).unwrap()))
        })
        .unwrap();
    assert_eq!(
        info.init_update.key_version,
        CardConfig::default().key_version
    );
    assert_eq!(
        sim.ins_sent()
            .iter()
            .filter(|i| **i == INS_EXTERNAL_AUTHENTICATE)
            .count(),
        1
    );
}

#[test]
fn errors_carry_the_operation_and_the_status_word() {
    let sim = Sim::new(CardConfig::default());
    let mut c = sim.client();
    // A key version the card does not have: INITIALIZE UPDATE refused with 6A88.
    match c.open_secure_channel(&opts(&DEFAULT_TEST_KEY, 0x42, SecurityLevel::MAC)) {
        Err(ClientError::Card { op, sw, .. }) => {
            assert_eq!(op, Operation::InitializeUpdate);
            assert_eq!(sw.status(), Status::ReferencedDataNotFound);
        }
        other => panic!("{other:?}"),
    }
    // SELECT of an absent application.
    let absent = aid(&[0xA0, 0x00, 0x00, 0x09, 0x99, 0x99]);
    match c.select(&absent) {
        Err(e @ ClientError::Card { .. }) => {
            let ClientError::Card { op, sw, .. } = &e else {
                unreachable!()
            };
            assert_eq!((*op, *sw), (Operation::Select, StatusWord::FILE_NOT_FOUND));
            assert!(
                e.to_string()
                    .starts_with("SELECT A00000099999 failed: the card answered 6A82"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    // DELETE of something absent, through the channel.
    c.open_secure_channel(&opts(&DEFAULT_TEST_KEY, 0, SecurityLevel::MAC))
        .unwrap();
    let e = ops::delete(&mut c, &absent, false).unwrap_err();
    match &e {
        ClientError::Card { op, sw, .. } => {
            assert_eq!(*op, Operation::Delete);
            assert_eq!(sw.status(), Status::ReferencedDataNotFound);
        }
        other => panic!("{other:?}"),
    }
    assert!(e
        .to_string()
        .starts_with("DELETE A00000099999 failed: the card answered 6A88"));
}

#[test]
fn commands_that_need_a_secure_channel_are_never_sent_in_plain() {
    let sim = Sim::new(CardConfig::default());
    let mut c = sim.client();
    c.select(&gp::aid::ISD_AID).unwrap();
    let before = sim.ins_sent().len();
    let some = aid(&EMPTY_PKG);
    let keys = StaticKeys::same(Key::aes(&[0x22; 16]).unwrap());
    let refusals = [
        ops::delete(&mut c, &some, true).unwrap_err(),
        ops::registry(&mut c).unwrap_err(),
        ops::store_data(&mut c, &[vec![0x45, 0x00]]).unwrap_err(),
        ops::set_application_locked(&mut c, &some, true).unwrap_err(),
        ops::put_key_set(&mut c, &keys, 0x31, None).unwrap_err(),
        ops::install_cap(
            &mut c,
            &gp::cap::CapFile::from_bytes(EMPTY_CAP).unwrap(),
            &ops::InstallOptions::default(),
        )
        .unwrap_err(),
    ];
    let ops_refused: Vec<Operation> = refusals
        .iter()
        .map(|e| match e {
            ClientError::NoSecureChannel(op) => *op,
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(
        ops_refused,
        vec![
            Operation::Delete,
            Operation::GetStatus,
            Operation::StoreData,
            Operation::SetStatus,
            Operation::PutKey,
            Operation::InstallForLoad
        ]
    );
    assert_eq!(sim.ins_sent().len(), before, "nothing reached the card");
    // What needs no channel still works in plain.
    assert!(ops::get_data(&mut c, gp::commands::DataObject::Cplc).is_ok());
}

#[test]
fn install_of_a_cap_and_get_status_paging() {
    let sim = Sim::new(CardConfig::default());
    let mut c = sim.client();
    c.open_secure_channel(&opts(&DEFAULT_TEST_KEY, 0, SecurityLevel::MAC_ENC))
        .unwrap();
    let cap = gp::cap::CapFile::from_bytes(EMPTY_CAP).unwrap();
    let report = ops::install_cap(
        &mut c,
        &cap,
        &ops::InstallOptions {
            hash: Some("sha1".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(report.load_file, aid(&EMPTY_PKG));
    assert_eq!(report.instances, vec![aid(&EMPTY_APPLET)]);
    assert!(report.blocks >= 2, "{report:?}");
    // Enough instances that GET STATUS needs several pages (the card pages at 238 bytes).
    let mut want = vec![aid(&EMPTY_APPLET)];
    for i in 0..14u8 {
        let instance = aid(&[0xA0, 0x00, 0x00, 0x07, 0x77, 0x10, i]);
        ops::install_instance(
            &mut c,
            aid(&EMPTY_PKG),
            aid(&EMPTY_APPLET),
            instance,
            Privileges::default(),
            vec![0xC9, 0x00],
            true,
        )
        .unwrap();
        want.push(instance);
    }
    let before = sim.ins_sent().len();
    let apps = ops::get_status(&mut c, gp::commands::StatusSubset::Applications).unwrap();
    let get_status_commands = sim.ins_sent()[before..]
        .iter()
        .filter(|&&ins| ins == 0xF2)
        .count();
    assert!(get_status_commands >= 2, "{get_status_commands} pages");
    let got: Vec<Aid> = apps.iter().map(|e| e.aid).collect();
    for a in &want {
        assert!(got.contains(a), "{a} missing from {got:?}");
    }
    // Installing the same instance again is refused with the operation named.
    match ops::install_instance(
        &mut c,
        aid(&EMPTY_PKG),
        aid(&EMPTY_APPLET),
        aid(&EMPTY_APPLET),
        Privileges::default(),
        vec![0xC9, 0x00],
        true,
    ) {
        Err(ClientError::Card { op, .. }) => assert_eq!(op, Operation::InstallForInstall),
        other => panic!("{other:?}"),
    }
    // DELETE with related objects removes the file and its instances.
    ops::delete(&mut c, &aid(&EMPTY_PKG), true).unwrap();
    let reg = ops::registry(&mut c).unwrap();
    assert!(reg.find(&aid(&EMPTY_PKG)).is_none());
    assert!(reg.find(&aid(&EMPTY_APPLET)).is_none());
}

#[test]
fn put_key_replaces_the_key_set_and_the_new_keys_open() {
    for config in [CardConfig::default(), CardConfig::scp02()] {
        let scp02 = config.key_version == 0x20;
        let old_kvn = config.key_version;
        let sim = Sim::new(config);
        let mut c = sim.client();
        c.open_secure_channel(&opts(&DEFAULT_TEST_KEY, 0, SecurityLevel::MAC_ENC))
            .unwrap();
        let new = [0x5A; 16];
        let key = if scp02 {
            Key::des3(&new).unwrap()
        } else {
            Key::aes(&new).unwrap()
        };
        ops::put_key_set(&mut c, &StaticKeys::same(key), 0x31, Some(old_kvn)).unwrap();
        // The old keys are gone (stopped before EXTERNAL AUTHENTICATE), the new ones open.
        assert!(matches!(
            c.open_secure_channel(&opts(&DEFAULT_TEST_KEY, 0, SecurityLevel::MAC)),
            Err(ClientError::WrongKeys { .. })
        ));
        let info = c
            .open_secure_channel(&opts(&new, 0x31, SecurityLevel::MAC))
            .unwrap();
        assert_eq!(info.init_update.key_version, 0x31);
        // A key version outside 01-7F is refused before sending.
        let before = sim.ins_sent().len();
        assert!(matches!(
            ops::put_key_set(&mut c, &StaticKeys::same(key_again(scp02)), 0x80, None),
            Err(ClientError::Invalid(_))
        ));
        assert_eq!(sim.ins_sent().len(), before);
    }
}

fn key_again(scp02: bool) -> Key {
    if scp02 {
        Key::des3(&[0x33; 16]).unwrap()
    } else {
        Key::aes(&[0x33; 16]).unwrap()
    }
}
