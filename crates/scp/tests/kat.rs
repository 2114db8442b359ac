//! Known-answer tests through the public API: key check values, diversification, key
//! encryption for PUT KEY and the SCP03 pseudo-random card challenge.

use apdu::parse_hex;
use scp::*;
use std::collections::HashMap;

struct Rec {
    kind: String,
    f: HashMap<String, String>,
    at: String,
}

impl Rec {
    fn s(&self, k: &str) -> &str {
        self.f
            .get(k)
            .unwrap_or_else(|| panic!("{}: no {k}", self.at))
    }
    fn h(&self, k: &str) -> Vec<u8> {
        parse_hex(self.s(k)).unwrap_or_else(|e| panic!("{}: {k}: {e}", self.at))
    }
    fn opt(&self, k: &str) -> Option<Vec<u8>> {
        (self.s(k) != "-").then(|| self.h(k))
    }
}

fn records(name: &str, text: &str) -> Vec<Rec> {
    let mut source = String::new();
    let mut out = Vec::new();
    for (n, l) in text.lines().enumerate() {
        let l = l.trim();
        if let Some(s) = l.strip_prefix("# source:") {
            source = s.trim().to_string();
        } else if !l.is_empty() && !l.starts_with('#') {
            let mut p = l.split_whitespace();
            let kind = p.next().unwrap_or_default().to_string();
            let f = p
                .filter_map(|x| x.split_once('='))
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            out.push(Rec {
                kind,
                f,
                at: format!("{name}:{} ({source})", n + 1),
            });
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    apdu::hex(b)
}

#[test]
fn key_check_values() {
    let recs = records("kcv.txt", include_str!("vectors/kcv.txt"));
    for r in &recs {
        let key = match r.s("kind") {
            "des3" => Key::des3(&r.h("key")).unwrap(),
            _ => Key::aes(&r.h("key")).unwrap(),
        };
        assert_eq!(hex(&key.kcv()), hex(&r.h("kcv")), "{}", r.at);
    }
    assert_eq!(recs.len(), 6);
}

#[test]
fn diversification() {
    let recs = records(
        "diversification.txt",
        include_str!("vectors/diversification.txt"),
    );
    let mut n = 0;
    for r in &recs {
        let method: Diversification = r.s("method").parse().unwrap();
        let m = r.h("master");
        let master = StaticKeys::same(match method {
            Diversification::Kdf3 => Key::aes(&m).unwrap(),
            _ => Key::des3(&m).unwrap(),
        });
        let card = method
            .apply(&master, &r.h("kdd"))
            .unwrap_or_else(|e| panic!("{}: {e}", r.at));
        for (name, key) in [("enc", &card.enc), ("mac", &card.mac), ("dek", &card.dek)] {
            assert_eq!(key.len(), m.len(), "{}", r.at);
            match r.kind.as_str() {
                "kcv" => assert_eq!(hex(&key.kcv()), hex(&r.h(name)), "{}: {name}", r.at),
                "key" => match r.opt(name) {
                    Some(want) => assert_eq!(hex(key.expose()), hex(&want), "{}: {name}", r.at),
                    None => continue,
                },
                k => panic!("{k}"),
            }
            n += 1;
        }
    }
    assert_eq!(n, 22);
}

#[test]
fn diversification_errors() {
    let des = StaticKeys::same(Key::des3(&[0x40; 16]).unwrap());
    let aes = StaticKeys::same(Key::aes(&[0x40; 16]).unwrap());
    assert!(matches!(
        Diversification::Emv.apply(&des, &[0; 9]),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        Diversification::Kdf3.apply(&des, &[0; 10]),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        Diversification::Visa2.apply(&aes, &[0; 10]),
        Err(Error::Unsupported(_))
    ));
    assert_eq!(Diversification::None.apply(&des, &[]).unwrap(), des);
    for d in ["none", "emv", "visa2", "kdf3"] {
        assert_eq!(d.parse::<Diversification>().unwrap().to_string(), d);
    }
    assert!("visa".parse::<Diversification>().is_err());
}

/// Opens a host session from a recorded INITIALIZE UPDATE response.
fn session(r: &Rec) -> HostSession {
    let kind = if r.s("scp") == "02" {
        KeyKind::Des3
    } else {
        KeyKind::Aes
    };
    let keys = match r.f.get("static") {
        Some(_) => StaticKeys::same(Key::new(kind, &r.h("static")).unwrap()),
        None => StaticKeys {
            enc: Key::new(kind, &r.h("enc")).unwrap(),
            mac: Key::new(kind, &r.h("mac")).unwrap(),
            dek: Key::new(kind, &r.h("dek")).unwrap(),
        },
    };
    let iu = InitUpdateResponse::parse(&r.h("iu")).unwrap();
    let auth = HostAuth::new(&keys, &r.h("host"), &iu, SecurityLevel::MAC, 0x15)
        .unwrap_or_else(|e| panic!("{}: {e}", r.at));
    auth.finish(&apdu::Response::ok(vec![])).unwrap()
}

#[test]
fn key_encryption_under_dek() {
    let recs = records("dek.txt", include_str!("vectors/dek.txt"));
    for r in &recs {
        let s = session(r);
        let kind = match s.protocol() {
            Protocol::Scp02 { .. } => KeyKind::Des3,
            Protocol::Scp03 { .. } => KeyKind::Aes,
        };
        let key = Key::new(kind, &r.h("key")).unwrap();
        assert_eq!(
            hex(&s.encrypt_key(&key).unwrap()),
            hex(&r.h("encrypted")),
            "{}",
            r.at
        );
    }
    assert_eq!(recs.len(), 6);
}

#[test]
fn scp03_pseudo_random_card_challenge() {
    // source: miketlk/omfgp @ 263df7ec773e5438d301f82089ea4e18b11f5b16 : tests/omfgp/scp_test.py
    // (test_derive_card_challenge), also in vectors/scp03_kdf.txt
    let r = &records("scp03_kdf.txt", include_str!("vectors/scp03_kdf.txt"))
        .into_iter()
        .find(|r| r.kind == "challenge")
        .unwrap();
    let keys = StaticKeys::same(Key::aes(&r.h("enc")).unwrap());
    let (_auth, data) = CardAuth::new(
        &keys,
        Protocol::Scp03 { i: 0x70 },
        0x30,
        [0; 10],
        0x2A,
        &[0x11; 8],
        &r.h("aid"),
    )
    .unwrap();
    let iu = InitUpdateResponse::parse(&data).unwrap();
    assert_eq!(hex(&iu.card_challenge), hex(&r.h("card")));
    assert_eq!(iu.sequence_counter, Some(r.h("seq")));
    assert_eq!((iu.key_version, iu.i), (0x30, Some(0x70)));
}
