//! Replays recorded SCP02/SCP03 sessions from public test suites (tests/vectors/*.txt) on
//! both ends: the host must produce the recorded bytes, and the card must accept them and
//! produce the recorded responses.

use apdu::{parse_hex, Command, Response, StatusWord};
use scp::*;
use std::collections::HashMap;

fn h(s: &str) -> Vec<u8> {
    if s == "-" {
        Vec::new()
    } else {
        parse_hex(s).unwrap_or_else(|e| panic!("bad hex {s}: {e}"))
    }
}

/// One non-comment line: its kind, its `name=value` fields, its source and line number.
struct Line<'a> {
    kind: &'a str,
    f: HashMap<&'a str, &'a str>,
    at: String,
}

impl Line<'_> {
    fn get(&self, k: &str) -> &str {
        self.f
            .get(k)
            .unwrap_or_else(|| panic!("{}: no field {k}", self.at))
    }
    fn hex(&self, k: &str) -> Vec<u8> {
        h(self.get(k))
    }
}

fn lines<'a>(name: &str, text: &'a str) -> Vec<Line<'a>> {
    let mut source = String::new();
    let mut out = Vec::new();
    for (n, l) in text.lines().enumerate() {
        let l = l.trim();
        if let Some(s) = l.strip_prefix("# source:") {
            source = s.trim().to_string();
            continue;
        }
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut parts = l.split_whitespace();
        let kind = parts.next().unwrap_or_default();
        let f = parts.filter_map(|p| p.split_once('=')).collect();
        out.push(Line {
            kind,
            f,
            at: format!("{name}:{} ({source})", n + 1),
        });
    }
    out
}

fn keys(l: &Line, kind: KeyKind) -> StaticKeys {
    StaticKeys {
        enc: Key::new(kind, &l.hex("enc")).unwrap(),
        mac: Key::new(kind, &l.hex("mac")).unwrap(),
        dek: Key::new(kind, &l.hex("dek")).unwrap(),
    }
}

fn counter(iu: &InitUpdateResponse) -> u32 {
    iu.sequence_counter
        .as_deref()
        .unwrap_or_default()
        .iter()
        .fold(0u32, |a, &b| (a << 8) | b as u32)
}

fn replay(name: &str, text: &str, kind: KeyKind) -> usize {
    let mut host: Option<HostSession> = None;
    let mut card: Option<CardSession> = None;
    let mut last_session: Option<(StaticKeys, Vec<u8>, SecurityLevel, u8)> = None;
    let mut checked = 0;
    for l in lines(name, text) {
        let at = &l.at;
        match l.kind {
            "session" => {
                let keys = keys(&l, kind);
                let host_challenge = l.hex("host");
                let iu_bytes = l.hex("iu");
                let iu =
                    InitUpdateResponse::parse(&iu_bytes).unwrap_or_else(|e| panic!("{at}: {e}"));
                assert_eq!(
                    iu.to_bytes(),
                    iu_bytes,
                    "{at}: INITIALIZE UPDATE response round trip"
                );
                let level = SecurityLevel(u8::from_str_radix(l.get("level"), 16).unwrap());
                let i = match kind {
                    KeyKind::Des3 => u8::from_str_radix(l.get("i"), 16).unwrap(),
                    KeyKind::Aes => iu.i.unwrap(),
                };
                let protocol = match kind {
                    KeyKind::Des3 => Protocol::Scp02 { i },
                    KeyKind::Aes => Protocol::Scp03 { i },
                };
                let r = HostAuth::new(&keys, &host_challenge, &iu, level, i);
                if l.f.get("expect") == Some(&"CardCryptogramMismatch") {
                    assert_eq!(r.unwrap_err(), Error::CardCryptogramMismatch, "{at}");
                    host = None;
                    card = None;
                    checked += 1;
                    continue;
                }
                let auth = r.unwrap_or_else(|e| panic!("{at}: {e}"));
                let ea = auth.external_authenticate();
                if let Some(want) = l.f.get("ea") {
                    assert_eq!(
                        apdu::hex(&ea.to_bytes().unwrap()),
                        apdu::hex(&h(want)),
                        "{at}: EXTERNAL AUTHENTICATE"
                    );
                }
                if let Some(want) = l.f.get("eadata") {
                    assert_eq!(
                        (ea.cla, ea.ins, ea.p1, ea.p2),
                        (0x84, 0x82, level.0, 0x00),
                        "{at}"
                    );
                    assert_eq!(
                        apdu::hex(&ea.data),
                        apdu::hex(&h(want)),
                        "{at}: EXTERNAL AUTHENTICATE data"
                    );
                }
                if let Some(want) = l.f.get("hostcrypto") {
                    assert_eq!(
                        apdu::hex(&ea.data[..8]),
                        apdu::hex(&h(want)),
                        "{at}: host cryptogram"
                    );
                }
                // The card side, given the recorded card challenge, answers the same bytes
                // and accepts the host's EXTERNAL AUTHENTICATE.
                let (card_auth, answer) = CardAuth::with_card_challenge(
                    &keys,
                    protocol,
                    iu.key_version,
                    iu.kdd,
                    counter(&iu),
                    &host_challenge,
                    &iu.card_challenge,
                )
                .unwrap_or_else(|e| panic!("{at}: card: {e}"));
                assert_eq!(
                    apdu::hex(&answer),
                    apdu::hex(&iu_bytes),
                    "{at}: card's INITIALIZE UPDATE response"
                );
                card = Some(
                    card_auth
                        .external_authenticate(&ea)
                        .unwrap_or_else(|e| panic!("{at}: card EA: {e}")),
                );
                host = Some(auth.finish(&Response::ok(vec![])).unwrap());
                last_session = Some((keys, host_challenge, level, i));
                checked += 1;
            }
            "badiu" => {
                let (keys, host_challenge, level, i) = last_session.as_ref().unwrap();
                let iu = InitUpdateResponse::parse(&l.hex("iu")).unwrap();
                let e = HostAuth::new(keys, host_challenge, &iu, *level, *i).unwrap_err();
                assert_eq!(e, Error::CardCryptogramMismatch, "{at}");
                checked += 1;
            }
            "cmd" => {
                let (hs, cs) = (host.as_mut().unwrap(), card.as_mut().unwrap());
                let wire_bytes = l.hex("wire");
                let wire = Command::parse(&wire_bytes).unwrap_or_else(|e| panic!("{at}: {e}"));
                if l.get("plain") == "?" {
                    let plain = cs
                        .unwrap(&wire)
                        .unwrap_or_else(|e| panic!("{at}: card unwrap: {e}"));
                    let again = hs.wrap(&plain).unwrap();
                    assert_eq!(
                        apdu::hex(&again.to_bytes().unwrap()),
                        apdu::hex(&wire_bytes),
                        "{at}: re-wrap"
                    );
                } else {
                    let plain = Command::parse(&l.hex("plain")).unwrap();
                    let w = hs
                        .wrap(&plain)
                        .unwrap_or_else(|e| panic!("{at}: wrap: {e}"));
                    assert_eq!(
                        apdu::hex(&w.to_bytes().unwrap()),
                        apdu::hex(&wire_bytes),
                        "{at}: wrap"
                    );
                    let p = cs
                        .unwrap(&wire)
                        .unwrap_or_else(|e| panic!("{at}: card unwrap: {e}"));
                    assert_eq!(p, plain, "{at}: card unwrap");
                }
                checked += 1;
            }
            "rsp" => {
                let (hs, cs) = (host.as_mut().unwrap(), card.as_mut().unwrap());
                let sw = StatusWord(u16::from_str_radix(l.get("sw"), 16).unwrap());
                let plain = Response::new(l.hex("plain"), sw);
                let wire = Response::new(l.hex("wire"), sw);
                assert_eq!(cs.wrap(plain.clone()), wire, "{at}: card wrap");
                assert_eq!(
                    hs.unwrap(wire)
                        .unwrap_or_else(|e| panic!("{at}: unwrap: {e}")),
                    plain,
                    "{at}: host unwrap"
                );
                checked += 1;
            }
            other => panic!("{at}: unknown line kind {other}"),
        }
    }
    checked
}

#[test]
fn scp02_recorded_sessions() {
    let n = replay(
        "scp02_sessions.txt",
        include_str!("vectors/scp02_sessions.txt"),
        KeyKind::Des3,
    );
    assert_eq!(n, 17);
}

#[test]
fn scp03_recorded_sessions() {
    let n = replay(
        "scp03_sessions.txt",
        include_str!("vectors/scp03_sessions.txt"),
        KeyKind::Aes,
    );
    assert_eq!(n, 107);
}
