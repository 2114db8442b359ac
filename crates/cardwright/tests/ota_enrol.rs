//! `cardwright ota enrol --virtual FILE`: a card written by `issue write` gets its SCP80 key
//! set and TLS PSK by PUT KEY, then verifies an SCP80 packet secured with the keys the
//! platform's OTA engine derives and holds the PSK the admin server derives. Refusals (a
//! wrong `--kvn`, another tenant's card) touch nothing; a PUT KEY the card refuses records
//! nothing.

mod common;
use common::*;

use std::sync::Arc;

use apdu::{Command, Response, StatusWord};
use ota::cat::Envelope;
use ota::packet::{self, CommandHeader, Counter, ResponseStatus, Spi, Tar};
use ota::script::CompactResponse;
use ota::tpdu::{self, Address, ConcatRef, PacketKind, SmsDeliver, Timestamp};
use transport::{CardChannel, TransportError};

const MASTER: &str = "4444444444444444444444444444444444444444444444444444444444444444";
const BASE: &str = "0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFFF";
const CARD: &str = "4711000000000001";
const ICCID: &str = "8949000000000000001";
const MSISDN: &str = "+491701234567";
/// SPI: CC, ciphered, counter higher; PoR always, CC, ciphered, in the DELIVER-REPORT.
const SPI: [u8; 2] = [0x16, 0x19];

struct Platform {
    dir: tempfile::TempDir,
}

impl Platform {
    fn new() -> Platform {
        Platform { dir: tempdir() }
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
    fn db(&self) -> String {
        format!("sqlite:{}", self.path("platform.db"))
    }
    fn keystore(&self) -> String {
        format!("file:{}", self.path("keys.json"))
    }
    fn run_as(&self, actor: &str, args: &[&str], input: &str) -> Run {
        let envs = [
            ("CARDWRIGHT_DB".to_string(), self.db()),
            ("CARDWRIGHT_KEYSTORE".to_string(), self.keystore()),
            ("CARDWRIGHT_MASTER_KEY".to_string(), MASTER.to_string()),
            ("CARDWRIGHT_ACTOR".to_string(), actor.to_string()),
        ];
        run_env(args, &envs, input)
    }
    fn ok(&self, args: &[&str]) -> String {
        let r = self.run_as("issuer/operator", args, "");
        assert!(
            r.ok,
            "cardwright {} failed:\n{}{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    }
    fn fails_as(&self, actor: &str, args: &[&str], needle: &str) {
        let r = self.run_as(actor, args, "");
        assert!(
            !r.ok,
            "cardwright {} should fail:\n{}",
            args.join(" "),
            r.stdout
        );
        assert!(
            r.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "{} → {}",
            args.join(" "),
            r.stderr
        );
    }
    fn fails(&self, args: &[&str], needle: &str) {
        self.fails_as("issuer/operator", args, needle)
    }
    /// A written card (`issue write`) of tenant `issuer`, category `gold`, in `card.json`;
    /// tenant `other` exists too.
    fn with_written_card() -> (Platform, String) {
        let p = Platform::new();
        let r = p.run_as(
            "issuer/operator",
            &["keys", "import-base", "--category", "gold"],
            &components_of(BASE),
        );
        assert!(r.ok, "{}", r.stderr);
        p.ok(&[
            "tenant", "create", "--id", "issuer", "--name", "Issuer", "--role", "ci",
        ]);
        p.ok(&[
            "tenant", "create", "--id", "other", "--name", "Other", "--role", "ci",
        ]);
        p.ok(&["category", "create", "--id", "gold", "--tenant", "issuer"]);
        let card = p.path("card.json");
        p.ok(&["sim", "create", "--state", &card, "--no-piv"]);
        let out = p.ok(&[
            "issue",
            "--sim",
            &card,
            "write",
            "--card-number",
            CARD,
            "--category",
            "gold",
            "--no-apps",
        ]);
        assert!(out.contains("is written"), "{out}");
        (p, card)
    }
    fn store(&self) -> tsm::Store {
        tsm::Store::open_existing(&self.db()).unwrap()
    }
    /// The platform's OTA engine (what `serve --ota` derives keys with).
    fn engine(&self) -> tsm::ota::engine::Engine {
        let keys = kms::StoreConfig::Software {
            path: self.path("keys.json").into(),
            master_key_file: None,
        }
        .open_with_master(Some(kms::MasterKey::from_hex(MASTER).unwrap()))
        .unwrap();
        tsm::ota::engine::Engine::new(
            self.store(),
            Arc::from(keys),
            tsm::ota::engine::EngineConfig::default(),
        )
    }
}

fn enrol_args<'a>(card: &'a str, kvn: Option<&'a str>) -> Vec<&'a str> {
    let mut v = vec![
        "ota",
        "enrol",
        "--card",
        CARD,
        "--iccid",
        ICCID,
        "--msisdn",
        MSISDN,
        "--virtual",
        card,
    ];
    if let Some(k) = kvn {
        v.extend(["--kvn", k]);
    }
    v
}

fn send(card: &mut card::VirtualCard, c: &Command) -> Response {
    Response::parse(&card.transmit(&c.to_bytes().unwrap())).unwrap()
}

/// Delivers an SCP80 packet to the card as SMS-PP download ENVELOPEs; the last answer.
fn deliver(card: &mut card::VirtualCard, packet: &[u8]) -> Response {
    let scts = Timestamp {
        year: 26,
        month: 12,
        day: 4,
        hour: 12,
        minute: 0,
        second: 0,
        tz_quarters: 4,
    };
    let mut last = None;
    for ud in tpdu::split_packet(PacketKind::Command, packet, ConcatRef::Eight(1)).unwrap() {
        let deliver = SmsDeliver::ota(Address::international("491700000001"), scts, ud);
        let data = Envelope::sms_pp(None, deliver).encode().unwrap();
        last = Some(send(
            card,
            &Command::new(0x80, 0xC2, 0x00, 0x00)
                .with_data(data)
                .with_le(256),
        ));
    }
    last.unwrap()
}

/// A GET STATUS of the ISD secured with the platform's keys for the card goes through the
/// card's SCP80 layer and comes back as a good, secured PoR.
fn scp80_get_status_works(p: &Platform, card_file: &str, counter: u64) {
    let engine = p.engine();
    let ota_card = p.store().ota_card(CARD).unwrap().expect("enrolled");
    let set = engine.card_keys(&ota_card).unwrap();
    let header = CommandHeader {
        spi: Spi::from_bytes(SPI),
        kic: set.kic,
        kid: set.kid,
        tar: Tar([0x00, 0x00, 0x00]),
        counter: Counter::from_u64(counter).unwrap(),
    };
    // Case 3 in the script (ETSI TS 102 226 §5.1.1: no Le in a command script).
    let get_status = Command::new(0x80, 0xF2, 0x80, 0x02)
        .with_data(vec![0x4F, 0x00])
        .to_bytes()
        .unwrap();
    let secured = packet::secure_command(&header, &set.keys, &get_status).unwrap();
    let mut card =
        card::VirtualCard::open(card_file.as_ref(), card::CardConfig::default()).unwrap();
    let r = deliver(&mut card, &secured);
    assert_eq!(r.sw, StatusWord::SUCCESS);
    let por = packet::unframe_response_sms(&r.data).unwrap();
    let por = packet::open_response(por, &header.por_security(), &set.keys).unwrap();
    assert!(por.secured, "the PoR is secured with the card's KID");
    assert_eq!(por.header.status, ResponseStatus::PorOk);
    let c = CompactResponse::parse(&por.data).unwrap();
    assert_eq!(c.executed, 1, "{por:?} {c:?}");
    assert_eq!(
        c.last.sw,
        StatusWord::SUCCESS,
        "GET STATUS ran: {:?}",
        c.last
    );
}

/// The ISD's key set `kvn` in the card's state file: (key id, key type, value hex).
fn key_set(card_file: &str, kvn: u8) -> Vec<(u64, u64, String)> {
    fn find(v: &serde_json::Value, kvn: u8, out: &mut Vec<(u64, u64, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("kvn").and_then(|k| k.as_u64()) == Some(u64::from(kvn)) {
                    if let Some(keys) = m.get("keys").and_then(|k| k.as_array()) {
                        for k in keys {
                            out.push((
                                k["id"].as_u64().unwrap(),
                                k["key_type"].as_u64().unwrap(),
                                k["value"].as_str().unwrap().to_string(),
                            ));
                        }
                        return;
                    }
                }
                m.values().for_each(|x| find(x, kvn, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| find(x, kvn, out)),
            _ => {}
        }
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(card_file).unwrap()).unwrap();
    let mut out = Vec::new();
    find(&v, kvn, &mut out);
    out
}

fn the_psk_is_on_the_card(p: &Platform, card_file: &str) {
    let ota_card = p.store().ota_card(CARD).unwrap().expect("enrolled");
    let psk = p.engine().card_psk(&ota_card).unwrap();
    assert_eq!(
        key_set(card_file, 0x40),
        vec![(1, 0x85, apdu::hex(&psk))],
        "key set 40: the derived PSK as key 01, type 85"
    );
}

#[test]
fn enrol_puts_the_keys_on_the_card() {
    let (p, card) = Platform::with_written_card();
    // The card's secure channel key set is KVN 01 (base key version 1): an SCP80 key set
    // of the same version would be taken for it; out of 1-15 is refused; nothing touched.
    let before = std::fs::read(&card).unwrap();
    p.fails(&enrol_args(&card, Some("0")), "1 to 15");
    p.fails(&enrol_args(&card, Some("16")), "1 to 15");
    p.fails(&enrol_args(&card, Some("1")), "secure channel key set");
    // Another tenant's card.
    p.fails_as("other/op", &enrol_args(&card, Some("2")), "may not");
    assert_eq!(
        std::fs::read(&card).unwrap(),
        before,
        "the card is untouched"
    );
    assert!(p.store().ota_card(CARD).unwrap().is_none());

    // Without --kvn: the lowest version the card's SCP03 keys leave free (02).
    let out = p.ok(&enrol_args(&card, None));
    assert!(
        out.contains("SCP80 key set 02") && out.contains("put on the card"),
        "{out}"
    );
    let set = key_set(&card, 2);
    assert_eq!(
        set.iter().map(|k| (k.0, k.1)).collect::<Vec<_>>(),
        vec![(1, 0x88), (2, 0x88), (3, 0x88)],
        "KIc, KID, DEK as AES keys"
    );
    scp80_get_status_works(&p, &card, 1);
    the_psk_is_on_the_card(&p, &card);
    // The card still opens with its SCP03 keys (`issue` would otherwise fail).
    let status = p.ok(&["issue", "status", "--card-number", CARD]);
    assert!(status.contains("written"), "{status}");
    let list = p.ok(&[
        "card", "--sim", &card, "--key", BASE, "--kdf", "kdf3", "list",
    ]);
    assert!(!list.is_empty());
    // Enrolled once: a second enrolment is refused before the card is touched.
    p.fails(&enrol_args(&card, Some("3")), "already enrolled");
}

#[test]
fn record_only_without_a_card() {
    let (p, _card) = Platform::with_written_card();
    let out = p.ok(&[
        "ota", "enrol", "--card", CARD, "--iccid", ICCID, "--msisdn", MSISDN,
    ]);
    assert!(
        out.contains("SCP80 key set 02") && out.contains("must already hold"),
        "{out}"
    );
}

/// A channel to the virtual card that answers `6A80` to the `n`th PUT KEY.
struct RefusePutKey {
    inner: card::VirtualChannel,
    n: usize,
    seen: usize,
}

impl CardChannel for RefusePutKey {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if capdu.get(1) == Some(&0xD8) {
            self.seen += 1;
            if self.seen == self.n {
                return Ok(vec![0x6A, 0x80]);
            }
        }
        self.inner.transmit_raw(capdu)
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.inner.reset()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

#[test]
fn a_refused_put_key_records_nothing_and_a_retry_completes() {
    let (p, card_file) = Platform::with_written_card();
    let keys = kms::StoreConfig::Software {
        path: p.path("keys.json").into(),
        master_key_file: None,
    }
    .open_with_master(Some(kms::MasterKey::from_hex(MASTER).unwrap()))
    .unwrap();
    let store = p.store();
    let actor = tsm::Actor::new("issuer", "operator");
    let req = tsm::ota::admin::EnrolRequest {
        card_number: CARD.into(),
        iccid: ICCID.into(),
        msisdn: MSISDN.into(),
        kvn: Some(3),
    };
    for n in [1, 2] {
        // The SCP80 key set refused (n = 1), or the PSK after the key set went on (n = 2).
        let card =
            card::VirtualCard::open(card_file.as_ref(), card::CardConfig::default()).unwrap();
        let mut chan = RefusePutKey {
            inner: card::VirtualChannel::new(card),
            n,
            seen: 0,
        };
        let e = tsm::ota::admin::enrol_on_card(
            &store,
            keys.as_ref(),
            &actor,
            &req,
            &mut chan,
            "mac+enc".parse::<scp::SecurityLevel>().unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("6A80"), "{e}");
        assert!(store.ota_card(CARD).unwrap().is_none(), "nothing recorded");
    }
    p.fails(&["ota", "status", "--iccid", ICCID], "not found");
    // The card holds key set 03 from the second attempt: a retry replaces it and completes.
    assert_eq!(key_set(&card_file, 3).len(), 3);
    let out = p.ok(&enrol_args(&card_file, Some("3")));
    assert!(out.contains("SCP80 key set 03"), "{out}");
    scp80_get_status_works(&p, &card_file, 1);
    the_psk_is_on_the_card(&p, &card_file);
}
